//! # durable-store
//!
//! The durable store: runs, their step histories, their waits and their
//! components, behind one type ([`Store`]) whichever database holds them:
//! an embedded SQLite file (the default) or a PostgreSQL server shared by
//! several hosts (a `postgres://` URL).
//!
//! The runtime, the CLI and the server talk to [`Store`] only. Its logic is
//! written once: it runs its statements through the driver seam (`sql.rs`:
//! `Tx`, `Arg`, `Row`), which speaks to `rusqlite` or `tokio-postgres`; the
//! single writer thread (`db/writer.rs`) group-commits either. Every `async
//! fn` resolves only after its change is committed and synced, and a step
//! record is never overwritten. This crate and its backends are the only
//! code that writes SQL. [`owner`] is who holds a run: a process's identity,
//! the proof that it died, and the lease (a [`StoreOptions`] setting).
//!
//! **Invariant:** knows nothing of wasmtime, of workflows' code, of HTTP.

mod db;
mod error;
mod histogram;
mod location;
pub mod owner;
#[cfg(feature = "postgres")]
mod pg_tls;
mod schema;
mod sql;

pub use db::transfer;
pub use db::{MIN_LEASE_MS, PRUNE_BATCH, PruneFilter, Store, StoreOptions};
pub use owner::DEFAULT_LEASE_MS;

pub use durable_core::queues::{
    Admission, Debounce, Held, MAX_PRIORITY, QueueConfig, QueuePosition, QueueState, QueuedStart,
    Rate, validate_key,
};
pub use durable_core::records::{
    AttemptRecord, Claim, ComponentSwitch, Creation, NewRun, Outcome, OutputLine, RunEnd,
    RunRecord, RunStatus, StartOptions, StepCommit, StepRecord,
};
pub use durable_core::views::{
    AwaitCall, AwaitOutcome, Busy, Cancelled, ChildStart, ChildStarted, DriveStart, Durability,
    EventRecord, HandleWait, HandlesParked, RunDetail, RunFilter, RunSummary, Sent, Settle,
    Settled, SleepOutcome, StoreHandle, StoreStats, StoredComponent, Superseded, SwitchRecord,
    Unfinished, Wait,
};
pub use error::StoreError;
pub use histogram::{Histogram, HistogramSnapshot};
pub use location::{Location, redact};
