//! What a drive reports as it goes: the seam between the runner and
//! whoever shows progress (the CLI prints lines; tests and embedders may
//! collect events).

use std::time::Duration;

use crate::store::Outcome;

/// How a step's outcome was obtained on this drive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The body ran now and its outcome was committed.
    Executed,
    /// The outcome came from the history; nothing ran.
    Recovered,
}

impl Source {
    /// `executed` or `recovered`.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Executed => "executed",
            Source::Recovered => "recovered",
        }
    }
}

/// Severity of a guest log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// Trace.
    Trace,
    /// Debug.
    Debug,
    /// Info.
    Info,
    /// Warn.
    Warn,
    /// Error.
    Error,
}

/// Receives progress of runs. Called from tokio tasks: keep it quick.
pub trait Observer: Send + Sync {
    /// A step's outcome is committed (executed) or was found in the history
    /// (recovered). `elapsed` is the time the body ran, or the lookup took.
    fn step(&self, run_id: &str, key: &str, source: Source, outcome: &Outcome, elapsed: Duration);

    /// A guest wrote a log line; `key` is the step whose body logged, or
    /// empty for the workflow itself.
    fn log(&self, run_id: &str, key: &str, level: Level, message: &str);

    /// An attempt of step `key` starts running (a fresh instance).
    fn step_started(&self, run_id: &str, key: &str) {
        let _ = (run_id, key);
    }

    /// A guest printed a line on its stdout or stderr; `key` as for `log`.
    fn output(&self, run_id: &str, key: &str, line: &str) {
        let _ = (run_id, key, line);
    }

    /// Attempt `attempt` of a step failed and the step will be tried again
    /// after `retry_in`.
    fn attempt_failed(
        &self,
        run_id: &str,
        key: &str,
        attempt: u32,
        outcome: &Outcome,
        retry_in: Duration,
    ) {
        let _ = (run_id, key, attempt, outcome, retry_in);
    }

    /// Step `key` returned `outcome`, which is about to be thrown away
    /// uncommitted: `--crash-before-commit` kills the process next.
    fn uncommitted(&self, run_id: &str, key: &str, outcome: &Outcome) {
        let _ = (run_id, key, outcome);
    }

    /// The run is parked: it holds nothing until what it waits for comes.
    fn waiting(&self, run_id: &str, what: &Waiting) {
        let _ = (run_id, what);
    }

    /// A wait of the workflow ended now (not on replay): a sleep's time
    /// came, or an event was consumed (`Ok` with its payload), or the wait
    /// timed out (`Err` with the timeout in ms).
    fn waited(&self, run_id: &str, key: &str, outcome: &Outcome) {
        let _ = (run_id, key, outcome);
    }
}

/// What a parked run waits for, for [`Observer::waiting`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Waiting {
    /// A sleep until this time (ms since the Unix epoch).
    Until(i64),
    /// An event, until an optional deadline (ms since the Unix epoch).
    Event {
        /// The event's name.
        name: String,
        /// When the wait times out.
        deadline_ms: Option<i64>,
    },
    /// Any of several handles (`await-any`, `await-all`): timers, events,
    /// child workflows.
    Handles {
        /// What it waits for, in words.
        what: String,
        /// The earliest time among them, if any.
        wake_at_ms: Option<i64>,
    },
}

/// An observer that drops everything.
pub struct Silent;

impl Observer for Silent {
    fn step(&self, _: &str, _: &str, _: Source, _: &Outcome, _: Duration) {}
    fn log(&self, _: &str, _: &str, _: Level, _: &str) {}
}

/// Two observers as one: every event goes to the first, then the second.
/// How an observer that cares about a few events (counting steps, tracing
/// them) joins the one that prints.
pub struct Tee(
    pub std::sync::Arc<dyn Observer>,
    pub std::sync::Arc<dyn Observer>,
);

impl Observer for Tee {
    fn step(&self, run_id: &str, key: &str, source: Source, outcome: &Outcome, elapsed: Duration) {
        self.0.step(run_id, key, source, outcome, elapsed);
        self.1.step(run_id, key, source, outcome, elapsed);
    }

    fn log(&self, run_id: &str, key: &str, level: Level, message: &str) {
        self.0.log(run_id, key, level, message);
        self.1.log(run_id, key, level, message);
    }

    fn step_started(&self, run_id: &str, key: &str) {
        self.0.step_started(run_id, key);
        self.1.step_started(run_id, key);
    }

    fn output(&self, run_id: &str, key: &str, line: &str) {
        self.0.output(run_id, key, line);
        self.1.output(run_id, key, line);
    }

    fn attempt_failed(
        &self,
        run_id: &str,
        key: &str,
        attempt: u32,
        outcome: &Outcome,
        retry_in: Duration,
    ) {
        self.0
            .attempt_failed(run_id, key, attempt, outcome, retry_in);
        self.1
            .attempt_failed(run_id, key, attempt, outcome, retry_in);
    }

    fn uncommitted(&self, run_id: &str, key: &str, outcome: &Outcome) {
        self.0.uncommitted(run_id, key, outcome);
        self.1.uncommitted(run_id, key, outcome);
    }

    fn waiting(&self, run_id: &str, what: &Waiting) {
        self.0.waiting(run_id, what);
        self.1.waiting(run_id, what);
    }

    fn waited(&self, run_id: &str, key: &str, outcome: &Outcome) {
        self.0.waited(run_id, key, outcome);
        self.1.waited(run_id, key, outcome);
    }
}
