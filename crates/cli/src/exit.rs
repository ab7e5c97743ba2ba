//! Exit codes: one table, used by every verb.

use durable::runner::RunError;
use durable::store::StoreError;

/// The help text's table of exit codes.
pub const HELP: &str = "\
Exit codes:
  0  success: the run succeeded (or every resumed run did)
  1  a run failed: its workflow returned an error or trapped
  2  bad usage or bad input: arguments, input JSON, component, database file
  3  no run with that id
  4  the run is driven by another process right now
  5  divergence: the workflow no longer matches the run's history
  6  the database or the host failed (locked, I/O, internal error)
  7  the run was cancelled (or is being cancelled)
  8  interrupted by SIGINT or SIGTERM: the run is left resumable (durable resume ID)";

/// The process's exit status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub enum ExitCode {
    /// Everything succeeded.
    Success = 0,
    /// A run failed.
    RunFailed = 1,
    /// Bad usage or input.
    Usage = 2,
    /// No such run.
    NotFound = 3,
    /// Another process drives the run.
    Busy = 4,
    /// The workflow diverged from its history.
    Divergence = 5,
    /// Store or host failure.
    Failure = 6,
    /// The run was cancelled.
    Cancelled = 7,
    /// SIGINT or SIGTERM stopped the process; the run is resumable.
    Interrupted = 8,
}

impl ExitCode {
    /// The code for an error that stopped a verb.
    pub fn of(e: &RunError) -> ExitCode {
        match e {
            RunError::Divergence(_) => ExitCode::Divergence,
            RunError::Load(_)
            | RunError::BadInput(_)
            | RunError::InputMismatch { .. }
            | RunError::InvalidRunId { .. }
            | RunError::InputTooLarge { .. }
            | RunError::UnknownChildWorkflow { .. } => ExitCode::Usage,
            RunError::Store(s) => ExitCode::of_store(s),
            RunError::AlreadyDriving { .. } => ExitCode::Busy,
            RunError::HistoryLimit { .. }
            | RunError::WorkflowBusy { .. }
            | RunError::HttpInWorkflow { .. } => ExitCode::RunFailed,
            RunError::Cancelled { .. } => ExitCode::Cancelled,
            RunError::Interrupted { .. } => ExitCode::Interrupted,
            RunError::Parked { .. } | RunError::ReplayEnd { .. } => ExitCode::Success,
            RunError::Instantiate(_) | RunError::Internal(_) | RunError::Stopped => {
                ExitCode::Failure
            }
        }
    }

    /// The code for a store error.
    pub fn of_store(e: &StoreError) -> ExitCode {
        match e {
            StoreError::NotDurable { .. }
            | StoreError::NewerSchema { .. }
            | StoreError::OlderSchema { .. }
            | StoreError::Corrupt(_)
            | StoreError::Config(_) => ExitCode::Usage,
            StoreError::RunNotFound(_)
            | StoreError::StepNotFound { .. }
            | StoreError::ComponentNotFound(_) => ExitCode::NotFound,
            StoreError::ComponentInUse { .. } => ExitCode::Busy,
            StoreError::RunExists(_) | StoreError::EventIdTaken { .. } => ExitCode::Usage,
            StoreError::AlreadyFinished { .. } => ExitCode::Usage,
            StoreError::Owned { .. } | StoreError::LeaseLost { .. } => ExitCode::Busy,
            _ => ExitCode::Failure,
        }
    }
}

impl From<ExitCode> for std::process::ExitCode {
    fn from(c: ExitCode) -> Self {
        std::process::ExitCode::from(c as u8)
    }
}
