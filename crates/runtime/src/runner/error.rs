//! Why a run could not be driven to an end, and the checks of what a caller
//! hands the runtime (run ids).

use crate::compiler::LoadError;
use crate::history::Divergence;
use crate::store::StoreError;

/// Why a run could not be driven to an end. A run that *failed* (its
/// workflow returned an error or trapped) is not a `RunError`: it is a
/// [`Finished`] with status `failed`.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// Replay asked for something the history does not have; nothing was
    /// written, the run stays resumable.
    #[error(transparent)]
    Divergence(Box<Divergence>),
    /// The store failed or refused (not found, owned elsewhere, locked...).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The component could not be loaded.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// The run exists with another input than the one given.
    #[error(
        "run {run:?} already exists with a different input; resume it without --input, or choose another --id"
    )]
    InputMismatch {
        /// The run id.
        run: String,
    },
    /// The run input is not valid JSON.
    #[error("the run input is not valid JSON: {0}")]
    BadInput(String),
    /// Instantiating the component failed.
    #[error("could not instantiate the workflow: {0}")]
    Instantiate(String),
    /// `durable cancel` stopped the run (reported as a finished run with
    /// status `cancelled`; this value only travels inside a drive).
    #[error("run {run:?} was cancelled")]
    Cancelled {
        /// The run id.
        run: String,
    },
    /// Recording one more outcome would take the run's history over the
    /// limit; the run fails with this message.
    #[error(
        "run {run:?} stopped at step {key}: its history would exceed the history size limit of {limit} bytes (--max-history-bytes)"
    )]
    HistoryLimit {
        /// The run id.
        run: String,
        /// The step whose outcome did not fit.
        key: String,
        /// The limit.
        limit: u64,
    },
    /// The workflow instance ran past its CPU budget without a durable
    /// call; the run fails with this message.
    #[error(
        "run {run:?}: the workflow ran for more than {limit_ms} ms without a durable call \
         (--workflow-timeout-ms) and was stopped; it may be in an endless loop. Workflow clocks \
         are frozen between durable calls, so a loop that waits for time to pass never ends: \
         wait in a step instead"
    )]
    WorkflowBusy {
        /// The run id.
        run: String,
        /// The budget.
        limit_ms: u64,
    },
    /// The workflow started a child of a workflow name this host does not
    /// know (a server's registered workflows): a setting of the host, not
    /// the guest's failure, so nothing is recorded and the run stays
    /// resumable (a server tries it again later, backing off).
    #[error("run {run:?}: {message}")]
    UnknownChildWorkflow {
        /// The run id.
        run: String,
        /// Which name, and how to register it.
        message: String,
    },
    /// The workflow instance sent an HTTP request; the run fails with
    /// this message.
    #[error("run {run:?}: {message}")]
    HttpInWorkflow {
        /// The run id.
        run: String,
        /// What was sent, and where to send it from.
        message: String,
    },
    /// This process already drives the run (a second claim of the same run
    /// by one process is refused).
    #[error("run {run:?} is already being driven by this process")]
    AlreadyDriving {
        /// The run id.
        run: String,
    },
    /// The run id cannot be used.
    #[error(transparent)]
    InvalidRunId(#[from] crate::names::InvalidRunId),
    /// The run input is larger than the limit.
    #[error(
        "the run input is {bytes} bytes, over the input size limit of {limit} bytes (--max-input-bytes)"
    )]
    InputTooLarge {
        /// Its size.
        bytes: usize,
        /// The limit.
        limit: usize,
    },
    /// The run waits (a sleep, an event) and was parked: it holds nothing
    /// until it is due. Only travels inside a drive: the drive ends with
    /// the run's record, status `waiting`.
    #[error("run {run:?} is waiting")]
    Parked {
        /// The run id.
        run: String,
    },
    /// The process was asked to stop (SIGINT, SIGTERM): the run was left
    /// resumable between durable calls.
    #[error("run {run:?} was interrupted; continue it with `durable resume {run}`")]
    Interrupted {
        /// The run id.
        run: String,
    },
    /// A replay ([`super::Runtime::replay`]) reached a call its history has
    /// no record for, or a wait that is not over: it stops there, having
    /// executed nothing. Only travels inside a replay.
    #[error("run {run:?}: the replay reached {key}, which the history has no outcome for")]
    ReplayEnd {
        /// The run id.
        run: String,
        /// The call's key.
        key: String,
        /// Its position among the workflow's calls: how many were replayed.
        position: u32,
    },
    /// The drive was stopped by an error reported elsewhere (the drive's
    /// first fatal error is what the run reports, never this).
    #[error("the drive was stopped")]
    Stopped,
    /// A bug in the host.
    #[error("internal error: {0}")]
    Internal(String),
}

/// Checks a run id (see [`crate::names::validate_run_id`]).
///
/// # Errors
/// [`RunError::InvalidRunId`] saying why.
pub fn validate_run_id(id: &str) -> Result<(), RunError> {
    Ok(crate::names::validate_run_id(id)?)
}

/// A new run id for a run of `workflow`: `WORKFLOW-MS-RANDOM`, unique in
/// practice (the time in ms and 32 random bits).
pub fn new_run_id(workflow: &str) -> String {
    let mut b = [0u8; 4];
    let _ = getrandom::fill(&mut b);
    format!(
        "{workflow}-{}-{:08x}",
        crate::clock::now_ms(),
        u32::from_le_bytes(b)
    )
}
