//! `--trace-file`: what a drive does, as JSON lines appended to a file, for
//! `durable check`, which reads them from its child processes. Each line is
//! written with one `write` on a file opened for appending, so a line is
//! whole even when the process is killed right after.

use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use durable::runner::{Level, Observer, Source, Waiting};
use durable::store::Outcome;
use serde::{Deserialize, Serialize};

use super::ExitCode;

/// One line of a trace file.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct TraceLine {
    /// `executed` (committed now), `recovered` (from the history), or
    /// `uncommitted` (returned, then thrown away by the crash).
    pub event: String,
    /// The step's key.
    pub key: String,
    /// The outcome's kind (`ok`, `failed`, `trapped`, `timed-out`).
    pub kind: String,
    /// Its value or error text.
    pub value: String,
}

impl TraceLine {
    /// The outcome the line carries.
    pub fn outcome(&self) -> Option<Outcome> {
        Outcome::from_parts(&self.kind, self.value.clone())
    }
}

/// Reads a trace file; a missing file is an empty trace, and a line cut
/// short (it cannot be, see the module doc) is skipped.
pub fn read(path: &Path) -> Vec<TraceLine> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// `inner`, also writing to `path` when given.
pub(super) fn wrap(
    inner: Arc<dyn Observer>,
    path: Option<&Path>,
) -> Result<Arc<dyn Observer>, ExitCode> {
    let Some(path) = path else {
        return Ok(inner);
    };
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| {
            eprintln!("durable: cannot open {}: {e}", path.display());
            ExitCode::Usage
        })?;
    Ok(Arc::new(Tracing {
        inner,
        file: Mutex::new(file),
    }))
}

struct Tracing {
    inner: Arc<dyn Observer>,
    file: Mutex<std::fs::File>,
}

impl Tracing {
    fn write(&self, event: &str, key: &str, outcome: &Outcome) {
        let line = TraceLine {
            event: event.into(),
            key: key.into(),
            kind: outcome.kind().into(),
            value: outcome.payload(),
        };
        let Ok(mut text) = serde_json::to_string(&line) else {
            return;
        };
        text.push('\n');
        if let Ok(mut f) = self.file.lock()
            && let Err(e) = f.write_all(text.as_bytes())
        {
            tracing::warn!(error = %e, "could not write the trace file");
        }
    }
}

impl Observer for Tracing {
    fn step(&self, run_id: &str, key: &str, source: Source, outcome: &Outcome, elapsed: Duration) {
        self.write(source.as_str(), key, outcome);
        self.inner.step(run_id, key, source, outcome, elapsed);
    }

    fn log(&self, run_id: &str, key: &str, level: Level, message: &str) {
        self.inner.log(run_id, key, level, message);
    }

    fn step_started(&self, run_id: &str, key: &str) {
        self.inner.step_started(run_id, key);
    }

    fn output(&self, run_id: &str, key: &str, line: &str) {
        self.inner.output(run_id, key, line);
    }

    fn attempt_failed(
        &self,
        run_id: &str,
        key: &str,
        attempt: u32,
        outcome: &Outcome,
        retry_in: Duration,
    ) {
        self.inner
            .attempt_failed(run_id, key, attempt, outcome, retry_in);
    }

    fn uncommitted(&self, run_id: &str, key: &str, outcome: &Outcome) {
        self.write("uncommitted", key, outcome);
        self.inner.uncommitted(run_id, key, outcome);
    }

    fn waiting(&self, run_id: &str, what: &Waiting) {
        self.inner.waiting(run_id, what);
    }

    fn waited(&self, run_id: &str, key: &str, outcome: &Outcome) {
        self.inner.waited(run_id, key, outcome);
    }
}
