//! `--trace-file`: what a drive does, as JSON lines appended to a file, for
//! `durable check`, which reads them from its child processes. Each line is
//! written with one `write` on a file opened for appending, so a line is
//! whole even when the process is killed right after.

use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use durable::runner::{Level, Observer, Source, Tee};
use durable::store::Outcome;
use serde::{Deserialize, Serialize};

use crate::exit::ExitCode;

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
    let tracing = Tracing {
        file: Mutex::new(file),
    };
    Ok(Arc::new(Tee(inner, Arc::new(tracing))))
}

struct Tracing {
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
    fn step(&self, _: &str, key: &str, source: Source, outcome: &Outcome, _: Duration) {
        self.write(source.as_str(), key, outcome);
    }

    fn log(&self, _: &str, _: &str, _: Level, _: &str) {}

    fn uncommitted(&self, _: &str, key: &str, outcome: &Outcome) {
        self.write("uncommitted", key, outcome);
    }
}
