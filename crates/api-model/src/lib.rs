//! # durable-api-model
//!
//! The JSON shapes of runs that people and programs read: `durable list
//! --json` and `durable show --json`, and the same shapes in the server's
//! `/v1` API (`GET /v1/runs`, `GET /v1/runs/{id}`). One crate, so that the
//! CLI and the server cannot drift apart, and the CLI needs no server to
//! print them. Documented field by field in docs/json.md and docs/api.md;
//! fields are only ever added.

mod tree;

pub use tree::{build as step_tree, shown_run};

use serde::Serialize;
use serde_json::Value;

use durable_core::records::{AttemptRecord, Outcome, OutputLine, RunRecord, StepRecord};
use durable_core::views::{EventRecord, RunSummary};

/// A run in `durable list --json`.
#[derive(Serialize)]
pub struct ListedRun {
    /// The run id.
    pub id: String,
    /// The workflow name it was started under.
    pub workflow: String,
    /// Its status (`running`, `waiting`, `succeeded`, ...) or outcome (`ok`, `failed`, ...).
    pub status: &'static str,
    /// When it was created, ms since the epoch.
    pub created_at_ms: i64,
    /// When it finished, ms since the epoch.
    pub finished_at_ms: Option<i64>,
    /// How long it took, in ms.
    pub duration_ms: Option<i64>,
    /// Its steps.
    pub steps: u32,
    /// Steps its last drive executed.
    pub executed: u32,
    /// Steps its last drive answered from the record.
    pub recovered: u32,
    /// How many drives it has had.
    pub drives: u32,
    /// The run it was forked from.
    pub forked_from: Option<String>,
    /// What a waiting run waits for (`until <ms>`, `event NAME`).
    pub waiting_for: Option<String>,
    /// When a waiting run is due (null: when its event comes).
    pub wake_at_ms: Option<i64>,
    /// The run that started it as a child workflow (null: a top-level run).
    pub parent: Option<String>,
    /// The queue it was started in (null: none).
    pub queue: Option<String>,
}

impl ListedRun {
    /// The listing of `s`.
    pub fn new(s: &RunSummary) -> Self {
        ListedRun {
            id: s.run.id.clone(),
            workflow: s.run.workflow.clone(),
            status: s.run.status.as_str(),
            created_at_ms: s.run.created_at_ms,
            finished_at_ms: s.run.finished_at_ms,
            duration_ms: s.run.finished_at_ms.map(|f| f - s.run.created_at_ms),
            steps: s.steps,
            executed: s.executed,
            recovered: s.recovered,
            drives: s.run.drives,
            forked_from: s.run.forked_from.clone(),
            waiting_for: s.run.waiting_for.clone(),
            wake_at_ms: s.run.wake_at_ms,
            parent: s.run.parent.clone(),
            queue: s.run.queue.clone(),
        }
    }
}

/// A child workflow as its parent shows it.
#[derive(Serialize, Clone)]
pub struct ShownChild {
    /// The child run's id.
    pub id: String,
    /// Its workflow.
    pub workflow: String,
    /// Its status.
    pub status: &'static str,
    /// The key of the parent's call that started it (`$child:NAME#n`).
    pub parent_key: Option<String>,
    /// When it was created, ms since the epoch.
    pub created_at_ms: i64,
    /// When it finished, ms since the epoch.
    pub finished_at_ms: Option<i64>,
}

impl ShownChild {
    /// The shape of child run `r`.
    pub fn new(r: &RunRecord) -> ShownChild {
        ShownChild {
            id: r.id.clone(),
            workflow: r.workflow.clone(),
            status: r.status.as_str(),
            parent_key: r.parent_key.clone(),
            created_at_ms: r.created_at_ms,
            finished_at_ms: r.finished_at_ms,
        }
    }
}

/// A run in `durable show --json`.
#[derive(Serialize)]
pub struct ShownRun {
    /// The run id.
    pub id: String,
    /// The workflow name it was started under.
    pub workflow: String,
    /// Its status (`running`, `waiting`, `succeeded`, ...) or outcome (`ok`, `failed`, ...).
    pub status: &'static str,
    /// Its input.
    pub input: Value,
    /// Its output, once it succeeded.
    pub output: Option<Value>,
    /// Why it failed.
    pub error: Option<String>,
    /// When it was created, ms since the epoch.
    pub created_at_ms: i64,
    /// When it finished, ms since the epoch.
    pub finished_at_ms: Option<i64>,
    /// How long it took, in ms.
    pub duration_ms: Option<i64>,
    /// How many drives it has had.
    pub drives: u32,
    /// The SHA-256 of the component driving it.
    pub component_digest: String,
    /// The run it was forked from.
    pub forked_from: Option<String>,
    /// The run that started it as a child workflow (null: a top-level run).
    pub parent: Option<String>,
    /// The key of the parent's call that started it.
    pub parent_key: Option<String>,
    /// The queue it was started in (null: none).
    pub queue: Option<String>,
    /// Where it stands in its queue, while it is queued.
    pub queued: Option<ShownQueued>,
    /// Its tags (given at its start or set by `set-tag`), by key.
    pub tags: std::collections::BTreeMap<String, String>,
    /// The child workflows it started, oldest first (also under the step
    /// that recorded each one's end, once recorded).
    pub children: Vec<ShownChild>,
    /// Whether a cancel was requested.
    pub cancel_requested: bool,
    /// What a waiting run waits for (`until <ms>`, `event NAME`).
    pub waiting_for: Option<String>,
    /// When a waiting run is due (null: when its event comes).
    pub wake_at_ms: Option<i64>,
    /// Its steps.
    pub steps: Vec<ShownStep>,
    /// Records moved aside: step bodies that ran again and did something
    /// else there.
    pub superseded: Vec<ShownSuperseded>,
    /// Events sent to the run, in arrival order.
    pub events: Vec<ShownEvent>,
    /// When each drive began.
    pub drive_starts: Vec<ShownDriveStart>,
    /// The components the run was switched to (`durable resume
    /// --component`), oldest first; empty when one component drove it all.
    pub component_switches: Vec<ShownSwitch>,
    /// What the workflow itself printed (with --logs).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workflow_output: Option<Vec<ShownLine>>,
}

/// Where a queued run stands.
#[derive(Serialize)]
pub struct ShownQueued {
    /// Its concurrency key.
    pub key: Option<String>,
    /// Its priority (0-9, higher first).
    pub priority: u8,
    /// How many runs of the queue go before it (0: it is next).
    pub position: u64,
    /// What holds it back now: `concurrency` (the queue's limit),
    /// `key` (its key's limit), `rate`, `debounce` (its window has not
    /// ended), `behind` (runs ahead of it) or `nothing` (a server admits
    /// it at its next look).
    pub held_by: &'static str,
    /// When its debounce window ends (ms since the epoch), if it was
    /// started with one.
    pub not_before_ms: Option<i64>,
}

/// When a drive began.
#[derive(Serialize)]
pub struct ShownDriveStart {
    /// The drive.
    pub drive: u32,
    /// When it started, ms since the epoch.
    pub started_at_ms: i64,
}

/// A switch of the run to another component.
#[derive(Serialize)]
pub struct ShownSwitch {
    /// The first drive on the new component.
    pub drive: u32,
    /// When, ms since the epoch.
    pub at_ms: i64,
    /// The component before.
    pub from_digest: String,
    /// The component after.
    pub to_digest: String,
    /// Set when the switch was forced over a divergence: the workflow's
    /// records from this position on were superseded.
    pub forced_from_position: Option<u32>,
}

/// A record moved aside (see `durable show`).
#[derive(Serialize)]
pub struct ShownSuperseded {
    /// Its key (`name#n`, a parent's key and `/` before it).
    pub key: String,
    /// Its name.
    pub name: String,
    /// The step whose body made the call (empty: the workflow itself).
    pub parent: String,
    /// Its position among its context's calls.
    pub position: u32,
    /// What it was called with (null when recorded before inputs were kept).
    pub input: Option<Value>,
    /// ok, failed, trapped or timed-out.
    pub status: &'static str,
    /// The drive that committed it.
    pub drive: u32,
    /// The drive that moved it aside.
    pub superseded_in_drive: u32,
    /// When it was moved aside, ms since the epoch.
    pub superseded_at_ms: i64,
}

/// A node of the step tree.
#[derive(Serialize)]
pub struct ShownStep {
    /// Its key (`name#n`, a parent's key and `/` before it).
    pub key: String,
    /// Its name.
    pub name: String,
    /// ok, failed, trapped or timed-out.
    pub status: &'static str,
    /// What it was called with (null when recorded before inputs were kept).
    pub input: Option<Value>,
    /// What `idempotency-key()` answered in its body.
    pub idempotency_key: String,
    /// Its value, when it succeeded.
    pub value: Option<Value>,
    /// Why it failed.
    pub error: Option<String>,
    /// How many attempts it took.
    pub attempts: u32,
    /// When it started, ms since the epoch.
    pub started_at_ms: i64,
    /// When it finished, ms since the epoch.
    pub finished_at_ms: i64,
    /// How long it took, in ms.
    pub duration_ms: i64,
    /// executed (by the run's last drive) or recovered (committed earlier).
    pub source: &'static str,
    /// The drive.
    pub drive: u32,
    /// Position of the first call of its `parallel` batch, if any.
    pub parallel: Option<u32>,
    /// Its failed attempts, oldest first.
    pub failed_attempts: Vec<ShownAttempt>,
    /// What its body printed (with --logs).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output: Option<Vec<ShownLine>>,
    /// For an event wait: the event it consumed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event: Option<ShownEvent>,
    /// For a child workflow (`$child:NAME#n`): the child run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub child: Option<ShownChild>,
    /// The steps its body called.
    pub children: Vec<ShownStep>,
}

/// An event sent to a run (see `durable show`).
#[derive(Serialize, Clone)]
pub struct ShownEvent {
    /// Its sequence number among the run's events.
    pub seq: i64,
    /// Its name.
    pub name: String,
    /// The id it was sent with, if any.
    pub id: Option<String>,
    /// Its payload.
    pub payload: Value,
    /// When it was sent, ms since the epoch.
    pub sent_at_ms: i64,
    /// The wait that consumed it, if one did.
    pub consumed_by: Option<String>,
}

impl ShownEvent {
    /// The shape of `e`.
    pub fn new(e: &EventRecord) -> ShownEvent {
        ShownEvent {
            seq: e.seq,
            name: e.name.clone(),
            id: e.event_id.clone(),
            payload: parse_json(&e.payload),
            sent_at_ms: e.sent_at_ms,
            consumed_by: e.consumed_by.clone(),
        }
    }
}

/// A failed attempt of a step.
#[derive(Serialize)]
pub struct ShownAttempt {
    /// The attempt's number (1-based).
    pub attempt: u32,
    /// failed, trapped or timed-out.
    pub status: &'static str,
    /// Why it failed.
    pub error: String,
    /// When it started, ms since the epoch.
    pub started_at_ms: i64,
    /// When it finished, ms since the epoch.
    pub finished_at_ms: i64,
}

/// A line a guest printed or logged.
#[derive(Serialize)]
pub struct ShownLine {
    /// The drive.
    pub drive: u32,
    /// When, ms since the epoch.
    pub at_ms: i64,
    /// out (stdout/stderr) or log:<level>.
    pub kind: String,
    /// The line.
    pub line: String,
}

/// An outcome's status word: ok, failed, trapped or timed-out.
pub fn status(o: &Outcome) -> &'static str {
    match o {
        Outcome::Ok(_) => "ok",
        Outcome::Failed(_) => "failed",
        Outcome::Trapped(_) => "trapped",
        Outcome::TimedOut(_) => "timed-out",
    }
}

/// An outcome as a JSON value (when ok) and an error message (otherwise).
pub fn value_and_error(o: &Outcome) -> (Option<Value>, Option<String>) {
    match o {
        Outcome::Ok(v) => (
            Some(serde_json::from_str(v).unwrap_or(Value::String(v.clone()))),
            None,
        ),
        other => (None, Some(other.describe())),
    }
}

/// The shape of a failed attempt.
pub fn attempt(a: &AttemptRecord) -> ShownAttempt {
    ShownAttempt {
        attempt: a.attempt,
        status: status(&a.outcome),
        error: a.outcome.describe(),
        started_at_ms: a.started_at_ms,
        finished_at_ms: a.finished_at_ms,
    }
}

/// The shape of an output line.
pub fn line(l: &OutputLine) -> ShownLine {
    ShownLine {
        drive: l.drive,
        at_ms: l.at_ms,
        kind: l.kind.clone(),
        line: l.line.clone(),
    }
}

/// The node of step `s` of `run`, without children, attempts or output.
/// A child workflow's record shows how the child ended: `ok` with its
/// output, or `failed` / `cancelled` with its error.
pub fn step_node(s: &StepRecord, run: &RunRecord) -> ShownStep {
    let (mut value, mut error) = value_and_error(&s.outcome);
    let mut status = status(&s.outcome);
    if s.name.starts_with(durable_core::history::CHILD_PREFIX)
        && let Outcome::Ok(v) = &s.outcome
        && let Some(end) = durable_core::history::ChildEnd::parse(v)
    {
        use durable_core::history::ChildEnd;
        (status, value, error) = match end {
            ChildEnd::Succeeded(out) => ("ok", Some(parse_json(&out)), None),
            ChildEnd::Failed(e) => ("failed", None, Some(e)),
            ChildEnd::Cancelled(e) => ("cancelled", None, Some(e)),
            ChildEnd::TimedOut(t) => ("timed-out", None, Some(format!("timed out after {t} ms"))),
        };
    }
    ShownStep {
        key: s.key.clone(),
        name: s.name.clone(),
        status,
        input: s.input.as_deref().map(parse_json),
        idempotency_key: format!("{}/{}", run.id, s.key),
        value,
        error,
        attempts: s.attempts,
        started_at_ms: s.started_at_ms,
        finished_at_ms: s.finished_at_ms,
        duration_ms: s.finished_at_ms - s.started_at_ms,
        source: if s.drive == run.drives {
            "executed"
        } else {
            "recovered"
        },
        drive: s.drive,
        parallel: s.batch,
        failed_attempts: Vec::new(),
        output: None,
        event: None,
        child: None,
        children: Vec::new(),
    }
}

/// `s` as JSON; text that is not JSON becomes a JSON string.
pub fn parse_json(s: &str) -> Value {
    serde_json::from_str(s).unwrap_or_else(|_| Value::String(s.to_string()))
}
