//! The durable store: runs, their step histories, their waits and their
//! components, behind one type ([`Store`]) whichever database holds them.
//!
//! The runner, the CLI and the server talk to [`Store`] only; it hands each
//! call to its backend. `sqlite/` is the embedded default (one file, one
//! writer thread with group commit). Every backend keeps the same promise:
//! an `async fn` resolves only after its change is committed and synced, and
//! a step record is never overwritten. This module and its backends are the
//! only code that writes SQL, and they know nothing of wasmtime.

mod db;
mod error;
mod histogram;
mod pg_tls;
mod sql;

use std::path::Path;
use std::sync::Arc;

use crate::owner::Owner;
pub use durable_core::records::{
    AttemptRecord, Claim, ComponentSwitch, NewRun, Outcome, OutputLine, RunEnd, RunRecord,
    RunStatus, StepCommit, StepRecord,
};
pub use durable_core::views::{
    AwaitCall, AwaitOutcome, Busy, Cancelled, DriveStart, Durability, EventRecord, RunDetail,
    RunFilter, RunSummary, Sent, SleepOutcome, StoreStats, StoredComponent, Superseded,
    SwitchRecord, Unfinished, Wait,
};
pub use error::StoreError;
pub use histogram::{Histogram, HistogramSnapshot};
pub use sql::redact;

/// Whether `location` is a PostgreSQL URL (`postgres://...`) rather than a
/// SQLite file.
pub fn is_postgres(location: &Path) -> bool {
    db::postgres_url(location).is_some()
}

/// Whether `location` names a database that may hold runs: a PostgreSQL
/// URL (`postgres://...`; the server decides), or a file that exists.
pub fn may_exist(location: &Path) -> bool {
    db::postgres_url(location).is_some() || location.exists()
}

/// A handle to an open store. Cheap to clone; all clones share the
/// backend's connections (for SQLite, its writer thread).
#[derive(Clone)]
pub struct Store(Backend);

/// The database behind a [`Store`].
#[derive(Clone)]
enum Backend {
    Sql(db::SqlStore),
}

impl Store {
    /// Opens the SQLite database at `path`, creating it if it does not
    /// exist, and starts its writer thread.
    ///
    /// # Errors
    /// See [`StoreError`]: a file of another kind or a newer schema is
    /// refused and left untouched.
    pub async fn open(path: &Path) -> Result<Store, StoreError> {
        Store::open_with(path, Durability::default()).await
    }

    /// [`Store::open`] with a choice of what commits survive.
    ///
    /// # Errors
    /// As [`Store::open`].
    pub async fn open_with(path: &Path, durability: Durability) -> Result<Store, StoreError> {
        Ok(Store(Backend::Sql(
            db::SqlStore::open_with(path, durability).await?,
        )))
    }

    /// [`Store::open`] for a command that must change nothing, not even the
    /// schema: a database of an older version is refused
    /// ([`StoreError::OlderSchema`]), not upgraded.
    ///
    /// # Errors
    /// As [`Store::open`], and [`StoreError::OlderSchema`].
    pub async fn open_unchanged(path: &Path) -> Result<Store, StoreError> {
        Ok(Store(Backend::Sql(
            db::SqlStore::open_unchanged(path).await?,
        )))
    }

    /// What the writer has done so far.
    pub fn stats(&self) -> StoreStats {
        match &self.0 {
            Backend::Sql(s) => s.stats(),
        }
    }

    /// Seconds per committed batch, and jobs per committed batch.
    pub fn commit_histograms(&self) -> (HistogramSnapshot, HistogramSnapshot) {
        match &self.0 {
            Backend::Sql(s) => s.commit_histograms(),
        }
    }

    /// How long a commit waits out a write lock that another process holds
    /// before it fails with "locked by another process" (default 2 minutes;
    /// each try itself waits up to the 5 s busy timeout).
    pub fn set_lock_wait(&self, wait: std::time::Duration) {
        match &self.0 {
            Backend::Sql(s) => s.set_lock_wait(wait),
        }
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        match &self.0 {
            Backend::Sql(s) => s.path(),
        }
    }

    /// Creates run `new.id` owned by `owner`, or takes ownership of it if it
    /// exists unfinished and its owner is gone, or reports it finished.
    ///
    /// # Errors
    /// [`StoreError::Owned`] when a live process drives the run.
    pub async fn claim_run(&self, new: NewRun, owner: &Owner) -> Result<Claim, StoreError> {
        match &self.0 {
            Backend::Sql(s) => s.claim_run(new, owner).await,
        }
    }

    /// Takes ownership of an existing unfinished run.
    ///
    /// # Errors
    /// [`StoreError::RunNotFound`], or [`StoreError::Owned`] when a live
    /// process drives it. A finished run is returned as [`Claim::Finished`].
    pub async fn claim_existing(&self, run_id: &str, owner: &Owner) -> Result<Claim, StoreError> {
        match &self.0 {
            Backend::Sql(s) => s.claim_existing(run_id, owner).await,
        }
    }

    /// [`Store::claim_existing`], and for a run it took, what its drive
    /// starts from ([`Store::drive_start`]), in one job: one round trip to
    /// the writer where a resume used to make two.
    pub async fn claim_existing_for_drive(
        &self,
        run_id: &str,
        owner: &Owner,
    ) -> Result<(Claim, Option<DriveStart>), StoreError> {
        match &self.0 {
            Backend::Sql(s) => s.claim_existing_for_drive(run_id, owner).await,
        }
    }

    /// The run's committed history, in no particular order.
    pub async fn history(&self, run_id: &str) -> Result<Vec<StepRecord>, StoreError> {
        match &self.0 {
            Backend::Sql(s) => s.history(run_id).await,
        }
    }

    /// Commits one step's outcome (with its last failed attempt, the output
    /// its body printed and a pending component switch) and renews the
    /// owner's lease, in one transaction. Returns whether a cancel of the
    /// run was requested.
    ///
    /// # Errors
    /// [`StoreError::LeaseLost`] when another process owns the run now (the
    /// record is then not written).
    ///
    /// # Cancel safety
    /// Dropping the future may still commit the record.
    pub async fn commit_step(
        &self,
        run_id: &str,
        owner: &Owner,
        drive: u32,
        commit: StepCommit,
    ) -> Result<bool, StoreError> {
        match &self.0 {
            Backend::Sql(s) => s.commit_step(run_id, owner, drive, commit).await,
        }
    }

    /// Records a failed attempt of a step that will be tried again, with
    /// what it printed. Returns whether a cancel of the run was requested.
    ///
    /// # Errors
    /// [`StoreError::LeaseLost`] when another process owns the run now.
    pub async fn commit_attempt(
        &self,
        run_id: &str,
        owner: &Owner,
        drive: u32,
        attempt: AttemptRecord,
        output: Vec<OutputLine>,
    ) -> Result<bool, StoreError> {
        match &self.0 {
            Backend::Sql(s) => {
                s.commit_attempt(run_id, owner, drive, attempt, output)
                    .await
            }
        }
    }

    /// Moves the records of steps `keys` (and their failed attempts) aside:
    /// a step body that ran again made other calls than the run that
    /// recorded them. They stay in the database for inspection.
    ///
    /// # Errors
    /// [`StoreError::LeaseLost`] when another drive owns the run now.
    pub async fn supersede(
        &self,
        run_id: &str,
        owner: &Owner,
        drive: u32,
        keys: Vec<String>,
        switch: Option<ComponentSwitch>,
    ) -> Result<(), StoreError> {
        match &self.0 {
            Backend::Sql(s) => s.supersede(run_id, owner, drive, keys, switch).await,
        }
    }

    /// Bytes the run has recorded so far: step outcomes, failed attempts
    /// and guest output (what the history size limit counts).
    pub async fn recorded_bytes(&self, run_id: &str) -> Result<u64, StoreError> {
        match &self.0 {
            Backend::Sql(s) => s.recorded_bytes(run_id).await,
        }
    }

    /// What a new drive of the run starts from, read in one job of the
    /// writer's batch: the history, the failed attempts per step, and the
    /// bytes recorded so far.
    pub async fn drive_start(&self, run_id: &str) -> Result<DriveStart, StoreError> {
        match &self.0 {
            Backend::Sql(s) => s.drive_start(run_id).await,
        }
    }

    /// For each step of the run with failed attempts, the number of the
    /// last one recorded (so a resumed step continues the count).
    pub async fn attempt_counts(&self, run_id: &str) -> Result<Vec<(String, u32)>, StoreError> {
        match &self.0 {
            Backend::Sql(s) => s.attempt_counts(run_id).await,
        }
    }

    /// The failed attempts of one step, oldest first.
    pub async fn attempts(
        &self,
        run_id: &str,
        key: &str,
    ) -> Result<Vec<AttemptRecord>, StoreError> {
        match &self.0 {
            Backend::Sql(s) => s.attempts(run_id, key).await,
        }
    }

    /// Records the run's end (with what the workflow printed) and releases it.
    pub async fn finish_run(
        &self,
        run_id: &str,
        owner: &Owner,
        drive: u32,
        end: RunEnd,
        switch: Option<ComponentSwitch>,
        output: Vec<OutputLine>,
    ) -> Result<(), StoreError> {
        match &self.0 {
            Backend::Sql(s) => {
                s.finish_run(run_id, owner, drive, end, switch, output)
                    .await
            }
        }
    }

    /// Gives up ownership of an unfinished run, so that another process may
    /// resume it at once. Does nothing if `owner` no longer owns it.
    pub async fn release(&self, run_id: &str, owner: &Owner) -> Result<(), StoreError> {
        match &self.0 {
            Backend::Sql(s) => s.release(run_id, owner).await,
        }
    }

    /// Extends `owner`'s lease on the run; returns whether a cancel of the
    /// run was requested.
    ///
    /// # Errors
    /// [`StoreError::LeaseLost`] when another process owns it now.
    pub async fn renew_lease(
        &self,
        run_id: &str,
        owner: &Owner,
        drive: u32,
    ) -> Result<bool, StoreError> {
        match &self.0 {
            Backend::Sql(s) => s.renew_lease(run_id, owner, drive).await,
        }
    }

    /// Ids of unfinished runs that no live process drives, oldest first.
    pub async fn resumable_runs(&self) -> Result<Vec<String>, StoreError> {
        match &self.0 {
            Backend::Sql(s) => s.resumable_runs().await,
        }
    }

    /// Every unfinished run, oldest first, with who drives it if anyone
    /// provably alive does.
    pub async fn unfinished_runs(&self) -> Result<Vec<Unfinished>, StoreError> {
        match &self.0 {
            Backend::Sql(s) => s.unfinished_runs().await,
        }
    }

    /// The run with this id, if any.
    pub async fn run(&self, run_id: &str) -> Result<Option<RunRecord>, StoreError> {
        match &self.0 {
            Backend::Sql(s) => s.run(run_id).await,
        }
    }

    /// [`Store::run`] through the read-only connection: for readers that
    /// look often (a long poll), which must not queue behind commits.
    ///
    /// # Errors
    /// [`StoreError`] when the read fails.
    pub async fn run_for_reading(&self, run_id: &str) -> Result<Option<RunRecord>, StoreError> {
        match &self.0 {
            Backend::Sql(s) => s.run_for_reading(run_id).await,
        }
    }

    /// The bytes of the component with this digest.
    pub async fn component(&self, digest: &str) -> Result<Option<Vec<u8>>, StoreError> {
        match &self.0 {
            Backend::Sql(s) => s.component(digest).await,
        }
    }

    /// Stores a component's bytes under its digest (once per digest), so
    /// that runs can be started from it later by digest alone. It keeps
    /// the first workflow `name` it is given (runs started by its digest
    /// are named by it); returns the name it has.
    ///
    /// # Errors
    /// [`StoreError`] when the write fails.
    pub async fn put_component(
        &self,
        digest: &str,
        bytes: Arc<Vec<u8>>,
        name: Option<&str>,
    ) -> Result<Option<String>, StoreError> {
        match &self.0 {
            Backend::Sql(s) => s.put_component(digest, bytes, name).await,
        }
    }

    /// The names the components with these digests were stored with
    /// (`None`: stored without one); digests not stored are left out.
    ///
    /// # Errors
    /// [`StoreError`] when the read fails.
    pub async fn component_names(
        &self,
        digests: &[String],
    ) -> Result<Vec<(String, Option<String>)>, StoreError> {
        match &self.0 {
            Backend::Sql(s) => s.component_names(digests).await,
        }
    }

    /// The stored components, newest first, with how many runs use each.
    ///
    /// # Errors
    /// [`StoreError`] when the read fails.
    pub async fn components(&self) -> Result<Vec<StoredComponent>, StoreError> {
        match &self.0 {
            Backend::Sql(s) => s.components().await,
        }
    }

    /// Deletes a component no run refers to.
    ///
    /// # Errors
    /// [`StoreError::ComponentNotFound`], [`StoreError::ComponentInUse`].
    pub async fn delete_component(&self, digest: &str) -> Result<(), StoreError> {
        match &self.0 {
            Backend::Sql(s) => s.delete_component(digest).await,
        }
    }

    /// Runs that may be taken up now, at most `limit`, oldest due first:
    /// waiting runs whose time has come (an event sent to a run waiting for
    /// it makes it due at once), and running runs whose owner is gone.
    /// Runs that a live process drives are not among them.
    ///
    /// # Errors
    /// [`StoreError`] when the read fails.
    /// Each with the time it became due, for waiting runs.
    pub async fn runnable(&self, limit: usize) -> Result<Vec<(String, Option<i64>)>, StoreError> {
        match &self.0 {
            Backend::Sql(s) => s.runnable(limit).await,
        }
    }

    /// How many runs there are of each status; only of `workflow`, and
    /// only those whose id starts with `prefix`, when given.
    ///
    /// # Errors
    /// [`StoreError`] when the read fails.
    pub async fn count_by_status(
        &self,
        workflow: Option<String>,
        prefix: Option<String>,
    ) -> Result<Vec<(String, u64)>, StoreError> {
        match &self.0 {
            Backend::Sql(s) => s.count_by_status(workflow, prefix).await,
        }
    }

    /// The greatest run id that starts with `prefix` (ids sort as text).
    ///
    /// # Errors
    /// [`StoreError`] when the read fails.
    /// Only ids of the form `PREFIX<digits>T<digits>Z` count, and none
    /// greater than `not_after`.
    pub async fn last_tick_id(
        &self,
        prefix: &str,
        not_after: &str,
    ) -> Result<Option<String>, StoreError> {
        match &self.0 {
            Backend::Sql(s) => s.last_tick_id(prefix, not_after).await,
        }
    }

    /// Which of `ids` have ended (succeeded, failed or cancelled), in one
    /// read of their rows (by primary key, in chunks): how a server learns
    /// of runs other processes finished.
    ///
    /// # Errors
    /// [`StoreError`] when the read fails.
    pub async fn ended_among(&self, ids: Vec<String>) -> Result<Vec<String>, StoreError> {
        match &self.0 {
            Backend::Sql(s) => s.ended_among(ids).await,
        }
    }

    /// When the earliest waiting run is due (`None`: no run waits for a
    /// time).
    ///
    /// # Errors
    /// [`StoreError`] when the read fails.
    pub async fn next_wake_at(&self) -> Result<Option<i64>, StoreError> {
        match &self.0 {
            Backend::Sql(s) => s.next_wake_at().await,
        }
    }

    /// On PostgreSQL, a signal for when another process may have made a
    /// run runnable; `None` on SQLite (poll instead). Call it in a tokio
    /// runtime.
    pub fn wake_ups(&self) -> Option<Arc<tokio::sync::Notify>> {
        match &self.0 {
            Backend::Sql(s) => s.wake_ups(),
        }
    }

    /// Stops the writer once the jobs already queued are committed, and
    /// waits for it; other clones of this handle get
    /// [`StoreError::Closed`] from then on.
    ///
    /// Dropping every handle also stops the writer, without waiting.
    pub async fn close(self) {
        match self.0 {
            Backend::Sql(s) => s.close().await,
        }
    }

    /// Runs matching `filter`, newest first.
    pub async fn list(&self, filter: RunFilter) -> Result<Vec<RunSummary>, StoreError> {
        match &self.0 {
            Backend::Sql(s) => s.list(filter).await,
        }
    }

    /// Everything about run `run_id`; its guest output too if `with_output`.
    ///
    /// # Errors
    /// [`StoreError::RunNotFound`].
    pub async fn detail(&self, run_id: &str, with_output: bool) -> Result<RunDetail, StoreError> {
        match &self.0 {
            Backend::Sql(s) => s.detail(run_id, with_output).await,
        }
    }

    /// Cancels run `run_id`: at once if no live process drives it, else at
    /// its driver's next durable call. A later resume refuses it.
    ///
    /// # Errors
    /// [`StoreError::RunNotFound`]; [`StoreError::AlreadyFinished`].
    pub async fn cancel(&self, run_id: &str) -> Result<Cancelled, StoreError> {
        match &self.0 {
            Backend::Sql(s) => s.cancel(run_id).await,
        }
    }

    /// Creates run `new_id`: the same component, input, seed and frozen
    /// clock as `run_id`, with a copy of its history before step `from_key`
    /// (everything that precedes it in the step tree; not the step itself,
    /// not what follows, not its ancestors, which must run again to reach
    /// it). Driving the new run recovers the copy and executes the rest.
    ///
    /// # Errors
    /// [`StoreError::RunNotFound`], [`StoreError::StepNotFound`],
    /// [`StoreError::RunExists`].
    pub async fn fork(
        &self,
        run_id: &str,
        from_key: &str,
        new_id: &str,
    ) -> Result<RunRecord, StoreError> {
        match &self.0 {
            Backend::Sql(s) => s.fork(run_id, from_key, new_id).await,
        }
    }

    /// A sleep of the workflow: commits `record` (the first call's wake-up
    /// time; `None` on replay) and, if `wake_at_ms` has not come, parks the
    /// run until then (unless a cancel was requested).
    ///
    /// # Errors
    /// [`StoreError::LeaseLost`] when another drive owns the run now.
    pub async fn sleep(
        &self,
        run_id: &str,
        owner: &Owner,
        drive: u32,
        record: Option<StepRecord>,
        wake_at_ms: i64,
        switch: Option<ComponentSwitch>,
    ) -> Result<SleepOutcome, StoreError> {
        match &self.0 {
            Backend::Sql(s) => {
                s.sleep(run_id, owner, drive, record, wake_at_ms, switch)
                    .await
            }
        }
    }

    /// An `await-event` call that has no record yet: consumes the oldest
    /// unconsumed event named `name` (recording `record` with its payload),
    /// or records a timeout if the wait's deadline (fixed at the first
    /// call, `timeout_ms` after it) has passed, or parks the run until an
    /// event comes or the deadline passes.
    ///
    /// # Errors
    /// [`StoreError::LeaseLost`] when another drive owns the run now.
    pub async fn await_event(
        &self,
        run_id: &str,
        owner: &Owner,
        drive: u32,
        call: AwaitCall,
    ) -> Result<AwaitOutcome, StoreError> {
        match &self.0 {
            Backend::Sql(s) => s.await_event(run_id, owner, drive, call).await,
        }
    }

    /// Stores event `name` with `payload` for run `run_id` (once per
    /// `event_id`, when given) and makes the run due if it waits for it.
    ///
    /// # Errors
    /// [`StoreError::RunNotFound`]; [`StoreError::AlreadyFinished`] for a
    /// run that has ended.
    pub async fn send_event(
        &self,
        run_id: &str,
        name: &str,
        event_id: Option<&str>,
        payload: &str,
    ) -> Result<Sent, StoreError> {
        match &self.0 {
            Backend::Sql(s) => s.send_event(run_id, name, event_id, payload).await,
        }
    }

    /// Whether run `run_id` can be taken up now: `Some(None)` when it is
    /// due (or running and unowned), `Some(Some(t))` when it waits until
    /// `t` (`i64::MAX`: for an event only), `None` when it has ended or a
    /// live process drives it.
    pub async fn due(&self, run_id: &str) -> Result<Option<Option<i64>>, StoreError> {
        match &self.0 {
            Backend::Sql(s) => s.due(run_id).await,
        }
    }
}
