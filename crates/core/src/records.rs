//! The records the store reads and writes. They are the storage boundary:
//! these types map to SQL rows, nothing else in the host does.

use std::fmt;

/// Where a run stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunStatus {
    /// Started in a queue and not admitted yet: a server admits it when the
    /// queue's limits allow (it holds nothing meanwhile).
    Queued,
    /// Started and not finished: a host drives it, or it waits for `resume`.
    Running,
    /// Waiting for a time or an event, holding nothing; due when
    /// `wake_at_ms` has come (an awaited event makes it due at once).
    Waiting,
    /// The workflow returned `Ok`; the output is stored.
    Succeeded,
    /// The workflow returned `Err` or trapped; the error is stored.
    Failed,
    /// `durable cancel` stopped it; it will not run again.
    Cancelled,
}

impl RunStatus {
    /// The name stored in the database and shown to users.
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Queued => "queued",
            RunStatus::Running => "running",
            RunStatus::Waiting => "waiting",
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
            RunStatus::Cancelled => "cancelled",
        }
    }

    /// The status named `s` (as [`RunStatus::as_str`] writes it).
    pub fn parse_name(s: &str) -> Option<Self> {
        Some(match s {
            "queued" => RunStatus::Queued,
            "running" => RunStatus::Running,
            "waiting" => RunStatus::Waiting,
            "succeeded" => RunStatus::Succeeded,
            "failed" => RunStatus::Failed,
            "cancelled" => RunStatus::Cancelled,
            _ => return None,
        })
    }
}

impl RunStatus {
    /// True while the run has not ended (queued, running or waiting).
    pub fn is_open(self) -> bool {
        matches!(
            self,
            RunStatus::Queued | RunStatus::Running | RunStatus::Waiting
        )
    }
}

impl fmt::Display for RunStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One run as stored.
#[derive(Debug, Clone)]
pub struct RunRecord {
    /// The run id, unique in the database.
    pub id: String,
    /// The workflow's name (the component file's stem when it was started).
    pub workflow: String,
    /// SHA-256 of the component the run is driven with.
    pub component_digest: String,
    /// The run's input JSON.
    pub input: String,
    /// Where the run stands.
    pub status: RunStatus,
    /// The output JSON, when succeeded.
    pub output: Option<String>,
    /// The error message, when failed.
    pub error: Option<String>,
    /// Seed recorded at start, for the workflow instance's WASI random.
    pub seed: u64,
    /// When the run was created, in ms since the Unix epoch.
    pub created_at_ms: i64,
    /// When the run finished, in ms since the Unix epoch.
    pub finished_at_ms: Option<i64>,
    /// The workflow instance's frozen WASI wall clock, in ms (the start of
    /// the run, or of the run it was forked from).
    pub clock_ms: i64,
    /// How many times a process has taken the run up (this one included,
    /// when returned by a claim).
    pub drives: u32,
    /// Whether `durable cancel` asked for the run to stop.
    pub cancel_requested: bool,
    /// `run-id/step-key` this run was forked from, if it was.
    pub forked_from: Option<String>,
    /// What a waiting run waits for, for people (`until <ms>`, `event NAME`).
    pub waiting_for: Option<String>,
    /// When a waiting run is due (its timer or its event's deadline); `None`
    /// when only an event wakes it.
    pub wake_at_ms: Option<i64>,
    /// The event name a waiting run waits for.
    pub wait_event: Option<String>,
    /// The run that started this one as its child workflow, if one did.
    pub parent: Option<String>,
    /// The key of the parent's call that started it (`$child:NAME#n`).
    pub parent_key: Option<String>,
    /// The queue it was started in (flow control), if any.
    pub queue: Option<String>,
    /// The W3C `traceparent` its drives' spans are children of.
    pub trace_parent: Option<String>,
}

/// What a step produced: the value the workflow sees, forever.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The step returned this JSON.
    Ok(String),
    /// The step body returned this error.
    Failed(String),
    /// The step's instance trapped with this message.
    Trapped(String),
    /// The last attempt ran out of time; the payload is the timeout in ms.
    TimedOut(u64),
}

impl Outcome {
    /// `ok`, `failed`, `trapped` or `timed-out`.
    pub fn kind(&self) -> &'static str {
        match self {
            Outcome::Ok(_) => "ok",
            Outcome::Failed(_) => "failed",
            Outcome::Trapped(_) => "trapped",
            Outcome::TimedOut(_) => "timed-out",
        }
    }

    /// The value (`ok`), the message (`failed`, `trapped`) or the timeout
    /// in ms (`timed-out`), as stored.
    pub fn payload(&self) -> String {
        match self {
            Outcome::Ok(s) | Outcome::Failed(s) | Outcome::Trapped(s) => s.clone(),
            Outcome::TimedOut(ms) => ms.to_string(),
        }
    }

    /// Bytes this outcome adds to the history.
    pub fn size(&self) -> usize {
        match self {
            Outcome::Ok(s) | Outcome::Failed(s) | Outcome::Trapped(s) => s.len(),
            Outcome::TimedOut(_) => 8,
        }
    }

    /// A one-line description of a failure (empty for `Ok`).
    pub fn describe(&self) -> String {
        match self {
            Outcome::Ok(_) => String::new(),
            Outcome::Failed(m) => format!("error: {m}"),
            Outcome::Trapped(m) => format!("trapped: {m}"),
            Outcome::TimedOut(ms) => format!("timed out after {ms} ms"),
        }
    }

    /// The outcome of a [`Outcome::kind`] and a [`Outcome::payload`];
    /// `None` for an unknown kind.
    pub fn from_parts(kind: &str, payload: String) -> Option<Self> {
        Some(match kind {
            "ok" => Outcome::Ok(payload),
            "failed" => Outcome::Failed(payload),
            "trapped" => Outcome::Trapped(payload),
            "timed-out" => Outcome::TimedOut(payload.parse().ok()?),
            _ => return None,
        })
    }
}

/// One committed entry of a run's history: a step, or a recorded `now-ms`
/// or `random-u64` answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepRecord {
    /// Full key, `name#n` with the parent's key as prefix (`a#1/b#2`).
    pub key: String,
    /// The parent's full key; empty for calls made by the workflow itself.
    pub parent: String,
    /// The call's position among all durable calls of its context.
    pub position: u32,
    /// The step's name.
    pub name: String,
    /// Digest of the step's input, checked on replay.
    pub input_digest: String,
    /// The step's input JSON; `None` in records written before inputs were
    /// kept (schema 6).
    pub input: Option<String>,
    /// What the step produced.
    pub outcome: Outcome,
    /// How many times the body ran before this outcome was committed.
    pub attempts: u32,
    /// When the committed attempt started, in ms since the Unix epoch.
    pub started_at_ms: i64,
    /// When it finished.
    pub finished_at_ms: i64,
    /// The drive (see [`RunRecord::drives`]) that committed it.
    pub drive: u32,
    /// For a call of a `parallel` batch, the position of the batch's first
    /// call; `None` for a call made alone.
    pub batch: Option<u32>,
}

/// A line a guest printed or logged, kept with the step it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputLine {
    /// The step's key; empty for the workflow itself.
    pub key: String,
    /// The drive it was printed in.
    pub drive: u32,
    /// When, in ms since the Unix epoch.
    pub at_ms: i64,
    /// `out` for stdout/stderr, `log:<level>` for `log` calls.
    pub kind: String,
    /// The line.
    pub line: String,
}

/// A run to create, if its id is not taken yet.
#[derive(Debug, Clone)]
pub struct NewRun {
    /// The run id.
    pub id: String,
    /// The workflow's name.
    pub workflow: String,
    /// SHA-256 of the component.
    pub component_digest: String,
    /// The component's bytes, stored once per digest so that `resume` does not
    /// depend on the file still being where it was.
    pub component: std::sync::Arc<Vec<u8>>,
    /// The run's input JSON.
    pub input: String,
    /// Seed for the workflow instance's WASI random.
    pub seed: u64,
    /// Tags the start gives the run (checked by the caller).
    pub tags: crate::tags::Tags,
    /// The W3C `traceparent` its drives' spans are children of (checked
    /// by the caller).
    pub trace_parent: Option<String>,
}

/// What a start gives a new run beyond its input.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StartOptions {
    /// Tags to find it by.
    pub tags: crate::tags::Tags,
    /// A W3C `traceparent` its drives' spans are children of (a valid one:
    /// see [`crate::trace::TraceContext::parse`]).
    pub trace_parent: Option<String>,
}

/// What claiming a run found.
#[derive(Debug, Clone)]
pub enum Claim {
    /// The run did not exist; it is created and owned by the caller.
    Created(RunRecord),
    /// The run existed unfinished; the caller owns it now.
    Resumed(RunRecord),
    /// The run had already finished; nothing was changed.
    Finished(RunRecord),
}

/// What [`Store::create_run`](../../durable_store/struct.Store.html#method.create_run)
/// found: the run it created, or the run that had the id already (left as
/// it was).
#[derive(Debug, Clone)]
pub enum Creation {
    /// The run did not exist; it is created and owned by the caller.
    Created(RunRecord),
    /// A run with that id exists; nothing was changed.
    Existing(RunRecord),
}

/// The component a run switches to when a new component drives it (recorded
/// with the first new commit, so a replay that diverges changes nothing).
#[derive(Debug, Clone)]
pub struct ComponentSwitch {
    /// SHA-256 of the new component.
    pub digest: String,
    /// Its bytes.
    pub bytes: std::sync::Arc<Vec<u8>>,
    /// Set when the switch was forced over a divergence: the workflow's
    /// records from this position on were superseded.
    pub forced_from: Option<u32>,
}

/// One failed attempt of a step, kept for inspection: the step's final
/// outcome is its [`StepRecord`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptRecord {
    /// The step's full key.
    pub key: String,
    /// 1 for the first attempt.
    pub attempt: u32,
    /// How it failed.
    pub outcome: Outcome,
    /// When it started, in ms since the Unix epoch.
    pub started_at_ms: i64,
    /// When it ended.
    pub finished_at_ms: i64,
}

/// What the store's `commit_step` writes in one transaction.
#[derive(Debug, Clone)]
pub struct StepCommit {
    /// The step's final record.
    pub record: StepRecord,
    /// Its last failed attempt, when it ended in failure.
    pub last_attempt: Option<AttemptRecord>,
    /// What its body printed or logged in its last attempt.
    pub output: Vec<OutputLine>,
    /// A new component for the run, switched with this first new commit.
    pub switch: Option<ComponentSwitch>,
    /// A tag the record sets on the run (`set-tag`), stored with it.
    pub tag: Option<(String, String)>,
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunEnd {
    /// The workflow returned this output.
    Succeeded(String),
    /// The workflow failed with this message.
    Failed(String),
    /// The run was cancelled.
    Cancelled,
}
