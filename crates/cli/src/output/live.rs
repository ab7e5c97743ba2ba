//! The live view of `run` and `resume` on a terminal: one spinner per
//! running step with its elapsed time, finished steps printed above them.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use durable::runner::{Level, Observer, Source, Waiting};
use durable::store::Outcome;

use super::Lines;

/// Draws running steps live on stderr; everything else as [`Lines`] does.
pub struct Live {
    lines: Lines,
    bars: MultiProgress,
    running: Mutex<HashMap<(String, String), ProgressBar>>,
    style: ProgressStyle,
}

impl Live {
    pub fn new(lines: Lines) -> Live {
        let style = ProgressStyle::with_template("{spinner} {msg} {elapsed:>4}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner());
        Live {
            lines,
            bars: MultiProgress::with_draw_target(ProgressDrawTarget::stderr()),
            running: Mutex::new(HashMap::new()),
            style,
        }
    }

    fn above(&self, line: String) {
        // Printed above the bars, so the two never tangle.
        let _ = self.bars.println(line.trim_end());
    }

    fn stop(&self, run_id: &str, key: &str) {
        if let Ok(mut running) = self.running.lock()
            && let Some(bar) = running.remove(&(run_id.to_string(), key.to_string()))
        {
            bar.finish_and_clear();
            self.bars.remove(&bar);
        }
    }
}

/// The spinner key of a parked run's wait.
const WAIT: &str = "$wait";

impl Observer for Live {
    fn waiting(&self, run_id: &str, what: &Waiting) {
        let bar = self.bars.add(ProgressBar::new_spinner());
        bar.set_style(self.style.clone());
        bar.set_message(self.lines.waiting_line(run_id, what).trim_end().to_string());
        bar.enable_steady_tick(Duration::from_millis(100));
        if let Ok(mut running) = self.running.lock()
            && let Some(old) = running.insert((run_id.to_string(), WAIT.to_string()), bar)
        {
            old.finish_and_clear();
        }
    }

    fn waited(&self, run_id: &str, key: &str, outcome: &Outcome) {
        self.stop(run_id, WAIT);
        self.above(self.lines.waited_line(run_id, key, outcome));
    }

    fn step_started(&self, run_id: &str, key: &str) {
        self.stop(run_id, WAIT);
        let bar = self.bars.add(ProgressBar::new_spinner());
        bar.set_style(self.style.clone());
        bar.set_message(format!("{}step {key} running", self.lines.prefix(run_id)));
        bar.enable_steady_tick(Duration::from_millis(100));
        if let Ok(mut running) = self.running.lock()
            && let Some(old) = running.insert((run_id.to_string(), key.to_string()), bar)
        {
            old.finish_and_clear();
        }
    }

    fn step(&self, run_id: &str, key: &str, source: Source, outcome: &Outcome, elapsed: Duration) {
        self.stop(run_id, key);
        self.above(self.lines.step_line(run_id, key, source, outcome, elapsed));
    }

    fn attempt_failed(
        &self,
        run_id: &str,
        key: &str,
        attempt: u32,
        outcome: &Outcome,
        retry_in: Duration,
    ) {
        self.stop(run_id, key);
        self.above(
            self.lines
                .attempt_line(run_id, key, attempt, outcome, retry_in),
        );
    }

    fn output(&self, run_id: &str, key: &str, line: &str) {
        self.above(self.lines.output_line(run_id, key, line));
    }

    fn log(&self, run_id: &str, key: &str, level: Level, message: &str) {
        self.above(self.lines.log_line(run_id, key, level, message));
    }
}
