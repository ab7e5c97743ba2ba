//! What the store answers and takes, whichever database it is on: the
//! views of runs for people (`list`, `show`), the waits, and the store's
//! own counters and settings.

use crate::records::{
    AttemptRecord, ComponentSwitch, NewRun, Outcome, OutputLine, RunRecord, RunStatus, StepRecord,
};

/// What the store's `drive_start` reads.
#[derive(Debug, Clone)]
pub struct DriveStart {
    /// The committed history.
    pub history: Vec<StepRecord>,
    /// For each step with failed attempts, the number of the last one.
    pub attempt_counts: Vec<(String, u32)>,
    /// Bytes recorded so far (outcomes, failed attempts, guest output).
    pub recorded_bytes: u64,
}

impl DriveStart {
    /// What a run that was just created starts from: nothing.
    pub fn empty() -> DriveStart {
        DriveStart {
            history: Vec::new(),
            attempt_counts: Vec::new(),
            recorded_bytes: 0,
        }
    }
}

/// An unfinished run, as `resume` with no ids sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unfinished {
    /// The run id.
    pub id: String,
    /// Who drives it, if a live process does.
    pub busy: Option<Busy>,
}

/// A live process that drives a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Busy {
    /// Its pid (0 when its identity cannot be read).
    pub pid: u32,
    /// Its host name.
    pub host: String,
    /// Time left on its lease, in ms.
    pub lease_left_ms: i64,
}

/// Counts of the single writer's work.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StoreStats {
    /// Transactions committed: one WAL fsync each under
    /// [`Durability::PowerLoss`].
    pub commits: u64,
    /// Changes applied in them (claims, step commits, attempts, ends...).
    pub jobs: u64,
}

/// What a committed change survives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// The default: every commit fsyncs the WAL (`synchronous=FULL`), so a
    /// committed step survives power loss and OS crashes.
    #[default]
    PowerLoss,
    /// Commits reach the OS but the WAL is fsynced only at checkpoints
    /// (`synchronous=NORMAL`): a committed step survives a crash of the
    /// process, but the last commits may be lost on power loss or an OS
    /// crash (never corrupted: the database stays consistent).
    ProcessCrash,
}

/// Which runs `list` shows.
#[derive(Debug, Clone, Default)]
pub struct RunFilter {
    /// Only runs with this status.
    pub status: Option<RunStatus>,
    /// Only runs of this workflow.
    pub workflow: Option<String>,
    /// At most this many, newest first.
    pub limit: usize,
    /// Only runs listed after this one (older, in the list's order): the
    /// next page. An id that does not exist matches nothing.
    pub after: Option<String>,
    /// Only runs whose id starts with this.
    pub prefix: Option<String>,
    /// Only the child workflows of this run.
    pub parent: Option<String>,
    /// Only runs with all these tags (key, value).
    pub tags: Vec<(String, String)>,
}

/// A run with counts of its steps.
#[derive(Debug, Clone)]
pub struct RunSummary {
    /// The run.
    pub run: RunRecord,
    /// Steps committed (recorded `now-ms` / `random-u64` answers excluded).
    pub steps: u32,
    /// Of those, the ones the last drive executed.
    pub executed: u32,
    /// The ones committed by earlier drives (or copied by a fork).
    pub recovered: u32,
}

/// Everything recorded about a run.
#[derive(Debug, Clone)]
pub struct RunDetail {
    /// The run.
    pub run: RunRecord,
    /// Its history, ordered by parent and position.
    pub steps: Vec<StepRecord>,
    /// Failed attempts, by key and number.
    pub attempts: Vec<AttemptRecord>,
    /// What guests printed and logged (only when asked for).
    pub output: Vec<OutputLine>,
    /// Records moved aside because a step body ran again and did something
    /// else, oldest first.
    pub superseded: Vec<Superseded>,
    /// Events sent to the run, in arrival order.
    pub events: Vec<EventRecord>,
    /// When each drive began, by drive number: `(drive, started_at_ms)`.
    /// Drive 1 of a run started by `run` began when it was created; drives
    /// before schema 6 are missing.
    pub drive_starts: Vec<(u32, i64)>,
    /// The components the run was switched to, oldest first.
    pub switches: Vec<SwitchRecord>,
    /// The child workflows it started, oldest first.
    pub children: Vec<RunRecord>,
    /// Where it stands in its queue, while it is queued.
    pub queued: Option<crate::queues::QueuePosition>,
    /// Its tags.
    pub tags: crate::tags::Tags,
}

/// An event sent to a run.
#[derive(Debug, Clone)]
pub struct EventRecord {
    /// Its place in arrival order (unique in the database).
    pub seq: i64,
    /// Its name.
    pub name: String,
    /// The sender's id, if it gave one.
    pub event_id: Option<String>,
    /// Its payload JSON.
    pub payload: String,
    /// When it was stored.
    pub sent_at_ms: i64,
    /// The key of the wait that consumed it (`$event:NAME#n`), if one did.
    pub consumed_by: Option<String>,
}

/// A run's switch to another component (`durable resume --component`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SwitchRecord {
    /// The drive that first ran the new component.
    pub drive: u32,
    /// When the switch was committed, in ms since the Unix epoch.
    pub at_ms: i64,
    /// The component's digest before.
    pub from_digest: String,
    /// The new component's digest.
    pub to_digest: String,
    /// Set when the switch was forced over a divergence: the workflow's
    /// records from this position on were superseded.
    pub forced_from: Option<u32>,
}

/// A record moved aside: what an earlier run of a step body committed
/// before the body ran again and made another call there.
#[derive(Debug, Clone)]
pub struct Superseded {
    /// Its key.
    pub key: String,
    /// The key of the step whose body made the call (empty: the workflow).
    pub parent: String,
    /// Its position among the calls of `parent`.
    pub position: u32,
    /// The step's name.
    pub name: String,
    /// What it was called with (absent in records from before schema 7).
    pub input: Option<String>,
    /// Its outcome.
    pub outcome: Outcome,
    /// The drive that committed it.
    pub drive: u32,
    /// The drive that moved it aside.
    pub superseded_in: u32,
    /// When it was moved aside.
    pub superseded_at_ms: i64,
}

/// What `cancel` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cancelled {
    /// Nobody drove the run: it is cancelled now.
    Now,
    /// A live process drives it: it stops at the workflow's next durable
    /// call (steps already running finish and are recorded).
    Requested,
}

/// What a run waits for once parked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Wait {
    /// A sleep until this time (ms since the Unix epoch).
    Until(i64),
    /// The next event of this name, until an optional deadline.
    Event {
        /// The event name.
        name: String,
        /// When the wait times out, if it does.
        deadline_ms: Option<i64>,
    },
}

impl Wait {
    /// The wait in a few words, for error messages: `until T`, `event NAME`.
    pub fn describe(&self) -> String {
        match self {
            Wait::Until(t) => format!("until {t}"),
            Wait::Event { name, .. } => format!("event {name}"),
        }
    }

    /// When the run is due without anything arriving: its time, or its
    /// event wait's deadline.
    pub fn wake_at(&self) -> Option<i64> {
        match self {
            Wait::Until(t) => Some(*t),
            Wait::Event { deadline_ms, .. } => *deadline_ms,
        }
    }

    /// The event it waits for, if any.
    pub fn event(&self) -> Option<&str> {
        match self {
            Wait::Until(_) => None,
            Wait::Event { name, .. } => Some(name),
        }
    }
}

/// An `await-event` call to settle: see the store's `await_event`.
#[derive(Debug, Clone)]
pub struct AwaitCall {
    /// The record to commit (its outcome is filled in).
    pub record: StepRecord,
    /// The event name.
    pub name: String,
    /// The timeout, from the first call.
    pub timeout_ms: Option<u64>,
    /// A component switch to write with the first new commit.
    pub switch: Option<ComponentSwitch>,
}

/// How an `await-event` call stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AwaitOutcome {
    /// An event was consumed (and recorded): its payload.
    Event(String),
    /// The deadline passed (recorded as a timeout).
    TimedOut,
    /// Nothing yet: the run was parked until its deadline, if any.
    Parked,
    /// Nothing yet, and a cancel of the run was requested: not parked (the
    /// drive ends the run as cancelled).
    Cancelled,
}

/// How a sleep stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SleepOutcome {
    /// Its time has come.
    Over,
    /// The run was parked until then.
    Parked,
    /// Its time has not come and a cancel of the run was requested: not
    /// parked (the drive ends the run as cancelled).
    Cancelled,
}

/// What `durable event` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sent {
    /// Stored as the run's event number `seq`.
    Stored {
        /// Its place among all events (arrival order).
        seq: i64,
    },
    /// An event with the same id was stored before; nothing changed.
    Duplicate,
}

/// A stored component, as `durable components list` and
/// `GET /v1/components` show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredComponent {
    /// SHA-256 of its bytes.
    pub digest: String,
    /// The workflow name it was first stored with.
    pub name: Option<String>,
    /// Its size.
    pub bytes: u64,
    /// When it was stored.
    pub added_at_ms: i64,
    /// Runs that use it (any status).
    pub runs: u64,
    /// Of them, those running or waiting.
    pub open_runs: u64,
}

/// A child workflow for the store to start: see the store's `start_child`.
#[derive(Debug, Clone)]
pub struct ChildStart {
    /// The child run (its id is deterministic from the parent's call).
    pub run: NewRun,
    /// The key of the parent's call that starts it.
    pub parent_key: String,
    /// A component switch of the parent to write with this commit.
    pub switch: Option<ComponentSwitch>,
}

/// What starting a child workflow found.
#[derive(Debug, Clone)]
pub enum ChildStarted {
    /// The child run was created (due at once, owned by nobody).
    Created(RunRecord),
    /// This call started it before (an earlier drive): the run as it is.
    Existing(RunRecord),
    /// Another run has the id: not a child of this call.
    Taken(RunRecord),
}

/// A handle whose completion the store decides: an event wait (an event
/// to consume, or its deadline) or a child workflow (its end).
#[derive(Debug, Clone)]
pub enum StoreHandle {
    /// An event wait started by `start-event`: its record (the outcome is
    /// filled in), the event's name, and its timeout.
    Event {
        /// The record to commit when it completes.
        record: StepRecord,
        /// The event's name.
        name: String,
        /// Its timeout, from its start.
        timeout_ms: Option<u64>,
    },
    /// A child workflow: its record (the outcome is filled in) and its id.
    Child {
        /// The record to commit when it completes.
        record: StepRecord,
        /// The child run's id.
        child: String,
        /// Its timeout and the time it runs out, if it has one: past it,
        /// a child still running is cancelled and times out.
        deadline: Option<(u64, i64)>,
    },
}

/// An await over handles, for the store to settle in one transaction: see
/// the store's `settle`.
#[derive(Debug, Clone, Default)]
pub struct Settle {
    /// Handles whose completion the store decides, by their index in the
    /// awaited list, in list order.
    pub candidates: Vec<(u32, StoreHandle)>,
    /// For `await-any`: its record (the outcome is filled in with the
    /// winner's index) and the first index the host knows complete, if any.
    /// The first candidate that completes wins if it comes before it.
    pub select: Option<(StepRecord, Option<u32>)>,
    /// A component switch to write with the first new commit.
    pub switch: Option<ComponentSwitch>,
}

/// What [`Settle`] committed.
#[derive(Debug, Clone, Default)]
pub struct Settled {
    /// Candidates that completed (their records committed), by index.
    pub completed: Vec<(u32, Outcome)>,
    /// For `await-any`: the winner's index, if one was found (its record
    /// committed).
    pub winner: Option<u32>,
    /// Whether a cancel of the run was requested.
    pub cancel: bool,
}

/// What a run that waits on handles waits for, to park it: see the
/// store's `park_on_handles`.
#[derive(Debug, Clone, Default)]
pub struct HandleWait {
    /// The earliest timer among them.
    pub wake_at_ms: Option<i64>,
    /// Event waits among them: (key, event name).
    pub events: Vec<(String, String)>,
    /// Child runs among them.
    pub children: Vec<String>,
    /// What it waits for, for people.
    pub describe: String,
    /// A component switch to write with the first new commit.
    pub switch: Option<ComponentSwitch>,
}

/// How a wait on handles stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandlesParked {
    /// Nothing is ready: the run was parked.
    Parked,
    /// Something is ready (an event, a child's end, a time): not parked.
    Ready,
    /// Nothing is ready and a cancel of the run was requested: not parked.
    Cancelled,
}
