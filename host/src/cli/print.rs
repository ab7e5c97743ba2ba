//! Progress lines on stderr, one per event (what `run` and `resume` print
//! when stderr is not a terminal, and what the live view prints above its
//! spinners).

use std::io::Write;
use std::time::Duration;

use durable::runner::{Level, Observer, Source, human};
use durable::store::Outcome;

/// Prints a line per finished step, failed attempt, guest output line and
/// guest log line, on stderr.
pub struct Lines {
    /// Prefix lines with the run id (when several runs are driven).
    pub with_run: bool,
}

impl Lines {
    pub fn prefix(&self, run_id: &str) -> String {
        if self.with_run {
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
}
