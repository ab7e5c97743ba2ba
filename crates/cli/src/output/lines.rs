//! Progress lines on stderr, one per event (what `run` and `resume` print
//! when stderr is not a terminal, and what the live view prints above its
//! spinners).

use std::io::Write;
use std::time::Duration;

use durable::runner::{Level, Observer, Source, Waiting, human};
use durable::store::Outcome;

/// Prints a line per finished step, failed attempt, guest output line and
/// guest log line, on stderr.
pub struct Lines {
    /// Prefix lines with the run id (when several runs are driven).
    pub with_run: bool,
    /// The first run heard of: without `with_run`, the lines of other runs
    /// (its child workflows) are prefixed with their id.
    pub first: std::sync::OnceLock<String>,
}

impl Lines {
    /// Lines for one run (`with_run`: for several).
    pub fn new(with_run: bool) -> Lines {
        Lines {
            with_run,
            first: std::sync::OnceLock::new(),
        }
    }

    pub fn prefix(&self, run_id: &str) -> String {
        if self.with_run || self.first.get_or_init(|| run_id.to_string()) != run_id {
            format!("[{run_id}] ")
        } else {
            String::new()
        }
    }

    pub fn step_line(
        &self,
        run_id: &str,
        key: &str,
        source: Source,
        outcome: &Outcome,
        elapsed: Duration,
    ) -> String {
        let tail = match outcome {
            Outcome::Ok(_) => String::new(),
            failed => format!("  {}", failed.describe()),
        };
        format!(
            "{}step {key:<24} {:<9} {:>9}{tail}\n",
            self.prefix(run_id),
            source.as_str(),
            human(elapsed)
        )
    }

    pub fn attempt_line(
        &self,
        run_id: &str,
        key: &str,
        attempt: u32,
        outcome: &Outcome,
        retry_in: Duration,
    ) -> String {
        format!(
            "{}step {key:<24} attempt {attempt} {}; retrying in {}\n",
            self.prefix(run_id),
            outcome.describe(),
            human(retry_in)
        )
    }

    pub fn output_line(&self, run_id: &str, key: &str, line: &str) -> String {
        let at = if key.is_empty() { "workflow" } else { key };
        format!("{}  {at} | {line}\n", self.prefix(run_id))
    }

    pub fn waiting_line(&self, run_id: &str, what: &Waiting) -> String {
        let now = durable::clock::now_ms();
        let when = |t: i64| {
            format!(
                "{} UTC (in {})",
                super::format_time(t),
                human(Duration::from_millis(t.saturating_sub(now).max(0) as u64))
            )
        };
        let text = match what {
            Waiting::Until(t) => format!("sleeping until {}", when(*t)),
            Waiting::Event {
                name,
                deadline_ms: Some(t),
            } => format!("waiting for event {name} (times out at {})", when(*t)),
            Waiting::Event { name, .. } => format!("waiting for event {name}"),
            Waiting::Handles {
                what,
                wake_at_ms: Some(t),
            } => format!("waiting for {what} (due at {})", when(*t)),
            Waiting::Handles { what, .. } => format!("waiting for {what}"),
        };
        format!("{}run  {text}\n", self.prefix(run_id))
    }

    pub fn waited_line(&self, run_id: &str, key: &str, outcome: &Outcome) -> String {
        let text = if let Some(n) = key.strip_prefix("$sleep") {
            format!("sleep{n} done")
        } else {
            let event = key.strip_prefix("$event:").unwrap_or(key);
            match outcome {
                Outcome::TimedOut(ms) => format!("event {event} timed out after {ms} ms"),
                _ => format!("event {event} received"),
            }
        };
        format!("{}wait {text}\n", self.prefix(run_id))
    }

    pub fn log_line(&self, run_id: &str, key: &str, level: Level, message: &str) -> String {
        let at = if key.is_empty() { "workflow" } else { key };
        format!("{}log  {at} {level:?}: {message}\n", self.prefix(run_id))
    }
}

/// One write per line, so lines of parallel steps do not interleave.
fn emit(line: String) {
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
}

impl Observer for Lines {
    fn step(&self, run_id: &str, key: &str, source: Source, outcome: &Outcome, elapsed: Duration) {
        emit(self.step_line(run_id, key, source, outcome, elapsed));
    }

    fn attempt_failed(
        &self,
        run_id: &str,
        key: &str,
        attempt: u32,
        outcome: &Outcome,
        retry_in: Duration,
    ) {
        emit(self.attempt_line(run_id, key, attempt, outcome, retry_in));
    }

    fn output(&self, run_id: &str, key: &str, line: &str) {
        emit(self.output_line(run_id, key, line));
    }

    fn log(&self, run_id: &str, key: &str, level: Level, message: &str) {
        emit(self.log_line(run_id, key, level, message));
    }

    fn waiting(&self, run_id: &str, what: &Waiting) {
        emit(self.waiting_line(run_id, what));
    }

    fn waited(&self, run_id: &str, key: &str, outcome: &Outcome) {
        emit(self.waited_line(run_id, key, outcome));
    }
}
