//! Progress lines on stderr.

use std::io::Write;
use std::time::Duration;

use durable::runner::{Level, Observer, Source, human};
use durable::store::Outcome;

/// Prints a line per finished step and per guest log line, on stderr.
pub struct Lines {
    /// Prefix lines with the run id (when several runs are driven).
    pub with_run: bool,
}

impl Lines {
    fn prefix(&self, run_id: &str) -> String {
        if self.with_run {
            format!("[{run_id}] ")
        } else {
            String::new()
        }
    }
}

impl Observer for Lines {
    fn step(&self, run_id: &str, key: &str, source: Source, outcome: &Outcome, elapsed: Duration) {
        let tail = match outcome {
            Outcome::Ok(_) => String::new(),
            failed => format!("  {}", failed.describe()),
        };
        let line = format!(
            "{}step {key:<24} {:<9} {:>9}{tail}\n",
            self.prefix(run_id),
            source.as_str(),
            human(elapsed)
        );
        // One write per line, so lines of parallel steps do not interleave.
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }

    fn output(&self, run_id: &str, key: &str, line: &str) {
        let at = if key.is_empty() { "workflow" } else { key };
        let line = format!("{}  {at} | {line}\n", self.prefix(run_id));
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }

    fn attempt_failed(
        &self,
        run_id: &str,
        key: &str,
        attempt: u32,
        outcome: &Outcome,
        retry_in: Duration,
    ) {
        let line = format!(
            "{}step {key:<24} attempt {attempt} {}; retrying in {}\n",
            self.prefix(run_id),
            outcome.describe(),
            human(retry_in)
        );
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }

    fn log(&self, run_id: &str, key: &str, level: Level, message: &str) {
        let at = if key.is_empty() {
            "workflow".to_string()
        } else {
            key.to_string()
        };
        let line = format!("{}log  {at} {level:?}: {message}\n", self.prefix(run_id));
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }
}
