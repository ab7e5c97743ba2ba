//! The `--json` shapes of the read verbs: the CLI's serialization boundary.
//! Documented in docs/json.md; fields are only ever added.

use serde::Serialize;
use serde_json::Value;

use durable::store::{AttemptRecord, Outcome, OutputLine, RunRecord, RunSummary, StepRecord};

/// A run in `durable list --json`.
#[derive(Serialize)]
pub struct ListedRun {
    pub id: String,
    pub workflow: String,
    pub status: &'static str,
    pub created_at_ms: i64,
    pub finished_at_ms: Option<i64>,
    pub duration_ms: Option<i64>,
    pub steps: u32,
    pub executed: u32,
    pub recovered: u32,
    pub drives: u32,
    pub forked_from: Option<String>,
    /// What a waiting run waits for (`until <ms>`, `event NAME`).
    pub waiting_for: Option<String>,
    /// When a waiting run is due (null: when its event comes).
    pub wake_at_ms: Option<i64>,
}

impl ListedRun {
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
        }
    }
}

/// A run in `durable show --json`.
#[derive(Serialize)]
pub struct ShownRun {
    pub id: String,
    pub workflow: String,
    pub status: &'static str,
    pub input: Value,
    pub output: Option<Value>,
    pub error: Option<String>,
    pub created_at_ms: i64,
    pub finished_at_ms: Option<i64>,
    pub duration_ms: Option<i64>,
    pub drives: u32,
    pub component_digest: String,
    pub forked_from: Option<String>,
    pub cancel_requested: bool,
    /// What a waiting run waits for (`until <ms>`, `event NAME`).
    pub waiting_for: Option<String>,
    /// When a waiting run is due (null: when its event comes).
    pub wake_at_ms: Option<i64>,
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

/// When a drive began.
#[derive(Serialize)]
pub struct ShownDriveStart {
    pub drive: u32,
    pub started_at_ms: i64,
}

/// A switch of the run to another component.
#[derive(Serialize)]
pub struct ShownSwitch {
    /// The first drive on the new component.
    pub drive: u32,
    pub at_ms: i64,
    pub from_digest: String,
    pub to_digest: String,
    /// Set when the switch was forced over a divergence: the workflow's
    /// records from this position on were superseded.
    pub forced_from_position: Option<u32>,
}

/// A record moved aside (see `durable show`).
#[derive(Serialize)]
pub struct ShownSuperseded {
    pub key: String,
    pub name: String,
    /// The step whose body made the call (empty: the workflow itself).
    pub parent: String,
    pub position: u32,
    /// What it was called with (null when recorded before inputs were kept).
    pub input: Option<Value>,
    /// ok, failed, trapped or timed-out.
    pub status: &'static str,
    /// The drive that committed it.
    pub drive: u32,
    /// The drive that moved it aside.
    pub superseded_in_drive: u32,
    pub superseded_at_ms: i64,
}

/// A node of the step tree.
#[derive(Serialize)]
pub struct ShownStep {
    pub key: String,
    pub name: String,
    /// ok, failed, trapped or timed-out.
    pub status: &'static str,
    /// What it was called with (null when recorded before inputs were kept).
    pub input: Option<Value>,
    /// What `idempotency-key()` answered in its body.
    pub idempotency_key: String,
    pub value: Option<Value>,
    pub error: Option<String>,
    pub attempts: u32,
    pub started_at_ms: i64,
    pub finished_at_ms: i64,
    pub duration_ms: i64,
    /// executed (by the run's last drive) or recovered (committed earlier).
    pub source: &'static str,
    pub drive: u32,
    /// Position of the first call of its `parallel` batch, if any.
    pub parallel: Option<u32>,
    pub failed_attempts: Vec<ShownAttempt>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output: Option<Vec<ShownLine>>,
    /// For an event wait: the event it consumed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event: Option<ShownEvent>,
    pub children: Vec<ShownStep>,
}

/// An event sent to a run (see `durable show`).
#[derive(Serialize, Clone)]
pub struct ShownEvent {
    pub seq: i64,
    pub name: String,
    pub id: Option<String>,
    pub payload: Value,
    pub sent_at_ms: i64,
    /// The wait that consumed it, if one did.
    pub consumed_by: Option<String>,
}

impl ShownEvent {
    pub fn new(e: &durable::store::EventRecord) -> ShownEvent {
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

#[derive(Serialize)]
pub struct ShownAttempt {
    pub attempt: u32,
    pub status: &'static str,
    pub error: String,
    pub started_at_ms: i64,
    pub finished_at_ms: i64,
}

#[derive(Serialize)]
pub struct ShownLine {
    pub drive: u32,
    pub at_ms: i64,
    /// out (stdout/stderr) or log:<level>.
    pub kind: String,
    pub line: String,
}

pub fn status(o: &Outcome) -> &'static str {
    match o {
        Outcome::Ok(_) => "ok",
        Outcome::Failed(_) => "failed",
        Outcome::Trapped(_) => "trapped",
        Outcome::TimedOut(_) => "timed-out",
    }
}

pub fn value_and_error(o: &Outcome) -> (Option<Value>, Option<String>) {
    match o {
        Outcome::Ok(v) => (
            Some(serde_json::from_str(v).unwrap_or(Value::String(v.clone()))),
            None,
        ),
        other => (None, Some(other.describe())),
    }
}

pub fn attempt(a: &AttemptRecord) -> ShownAttempt {
    ShownAttempt {
        attempt: a.attempt,
        status: status(&a.outcome),
        error: a.outcome.describe(),
        started_at_ms: a.started_at_ms,
        finished_at_ms: a.finished_at_ms,
    }
}

pub fn line(l: &OutputLine) -> ShownLine {
    ShownLine {
        drive: l.drive,
        at_ms: l.at_ms,
        kind: l.kind.clone(),
        line: l.line.clone(),
    }
}

pub fn step_node(s: &StepRecord, run: &RunRecord) -> ShownStep {
    let (value, error) = value_and_error(&s.outcome);
    ShownStep {
        key: s.key.clone(),
        name: s.name.clone(),
        status: status(&s.outcome),
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
        children: Vec::new(),
    }
}

pub fn parse_json(s: &str) -> Value {
    serde_json::from_str(s).unwrap_or_else(|_| Value::String(s.to_string()))
}

/// The `show --json` shape of a run (also what the server's
/// `GET /v1/runs/{id}` answers); with `logs`, guest output and HTTP lines.
pub fn shown_run(detail: &durable::store::RunDetail, logs: bool) -> ShownRun {
    let steps = super::tree::build(detail, logs);
    let r = &detail.run;
    let workflow_output = logs.then(|| {
        detail
            .output
            .iter()
            .filter(|l| l.key.is_empty())
            .map(line)
            .collect::<Vec<_>>()
    });
    ShownRun {
        id: r.id.clone(),
        workflow: r.workflow.clone(),
        status: r.status.as_str(),
        input: parse_json(&r.input),
        output: r.output.as_deref().map(parse_json),
        error: r.error.clone(),
        created_at_ms: r.created_at_ms,
        finished_at_ms: r.finished_at_ms,
        duration_ms: r.finished_at_ms.map(|f| f - r.created_at_ms),
        drives: r.drives,
        component_digest: r.component_digest.clone(),
        forked_from: r.forked_from.clone(),
        cancel_requested: r.cancel_requested,
        waiting_for: r.waiting_for.clone(),
        wake_at_ms: r.wake_at_ms,
        steps,
        superseded: detail
            .superseded
            .iter()
            .map(|r| ShownSuperseded {
                key: r.key.clone(),
                name: r.name.clone(),
                parent: r.parent.clone(),
                position: r.position,
                input: r.input.as_deref().map(parse_json),
                status: r.outcome.kind(),
                drive: r.drive,
                superseded_in_drive: r.superseded_in,
                superseded_at_ms: r.superseded_at_ms,
            })
            .collect(),
        events: detail.events.iter().map(ShownEvent::new).collect(),
        drive_starts: detail
            .drive_starts
            .iter()
            .map(|&(drive, started_at_ms)| ShownDriveStart {
                drive,
                started_at_ms,
            })
            .collect(),
        component_switches: detail
            .switches
            .iter()
            .map(|w| ShownSwitch {
                drive: w.drive,
                at_ms: w.at_ms,
                from_digest: w.from_digest.clone(),
                to_digest: w.to_digest.clone(),
                forced_from_position: w.forced_from,
            })
            .collect(),
        workflow_output,
    }
}
