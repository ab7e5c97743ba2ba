//! The SQLite store: runs, their step histories and their components, in
//! one file.
//!
//! All writes go through one writer thread ([`writer`]) that commits in
//! batches; every `async fn` here resolves only after its change is
//! committed (WAL, `synchronous=FULL`).
//!
//! **Invariant:** a step record is immutable once committed: the
//! `(run_id, key)` primary key makes a second commit of the same key an
//! error instead of an overwrite.

mod backup;
mod prune;
pub use prune::{PRUNE_BATCH, PruneFilter};
mod components;
mod handles;
mod inspect;
#[cfg(feature = "postgres")]
mod listen;
#[cfg(feature = "postgres")]
mod postgres;
mod queues;
mod rows;
mod server;
pub(crate) mod sqlite;
mod starts;
mod step_slots;
pub mod transfer;
use sqlite as schema;
mod waits;
mod writer;

use std::sync::Arc;

use crate::location::Location;
use crate::owner::{DEFAULT_LEASE_MS, Owner};
// The store's shared types, for this module and its children (`super::X`).
use super::error::{StoreError, sql};
use super::histogram::{self, HistogramSnapshot};
use crate::sql::{Row, Tx, args};
#[allow(unused_imports)]
use durable_core::records::{
    AttemptRecord, Claim, ComponentSwitch, Creation, NewRun, Outcome, OutputLine, RunEnd,
    RunRecord, RunStatus, StepCommit, StepRecord,
};
#[allow(unused_imports)]
use durable_core::views::{
    AwaitCall, AwaitOutcome, Busy, Cancelled, ChildStart, ChildStarted, DriveStart, Durability,
    EventRecord, HandleWait, HandlesParked, RunDetail, RunFilter, RunSummary, Sent, Settle,
    Settled, SleepOutcome, StoreHandle, StoreStats, Superseded, Unfinished, Wait,
};
use rows::*;
use writer::{Conn, Writer};

/// Writer connections (and threads) of a PostgreSQL store.
#[cfg(feature = "postgres")]
const POSTGRES_WRITERS: usize = 4;

/// What opening a PostgreSQL database says in a build without it.
#[cfg(not(feature = "postgres"))]
fn without_postgres() -> StoreError {
    StoreError::Config(
        "this durable was built without PostgreSQL support (the store's `postgres` feature); \
         use a SQLite file, or a build with it"
            .into(),
    )
}

fn read_drive_start(tx: &Tx<'_>, run_id: &str) -> Result<DriveStart, StoreError> {
    Ok(DriveStart {
        history: read_history(tx, run_id)?,
        attempt_counts: read_attempt_counts(tx, run_id)?,
        recorded_bytes: read_recorded_bytes(tx, run_id)?,
    })
}

/// A handle to an open database. Cheap to clone; all clones share the
/// writer thread.
#[derive(Clone)]
pub struct Store {
    /// One on SQLite (one writer at a time is all it takes); on PostgreSQL
    /// [`POSTGRES_WRITERS`], each run's writes going to the same one (so
    /// that two batches never wait on each other's rows).
    writers: Arc<[Writer]>,
    /// A read-only connection for the reads of people and scripts (`list`,
    /// `show`, `resume`'s choice of runs): deferred transactions that never
    /// take the write lock, so a long read in one process never stalls the
    /// writers of others. The drive's own short reads go through the writer,
    /// batched with its commits.
    reader: Arc<std::sync::Mutex<Option<Conn>>>,
    threads: Arc<std::sync::Mutex<Vec<std::thread::JoinHandle<()>>>>,
    /// On PostgreSQL, signalled by the listener of `durable_due`
    /// notifications (started by the first [`Store::wake_ups`]).
    #[cfg(feature = "postgres")]
    wake: Arc<std::sync::OnceLock<Arc<tokio::sync::Notify>>>,
    /// How long a lease this store writes lasts, in ms.
    lease_ms: i64,
    /// Where the database is.
    location: Location,
    /// The components this store has committed with a name (see
    /// [`starts::NamedComponents`]).
    named_components: starts::NamedComponents,
}

/// The shortest lease a store writes: renewals every third of it must fit
/// between commits and round trips.
pub const MIN_LEASE_MS: i64 = 1_000;

/// How a [`Store`] is opened.
#[derive(Debug, Clone, Copy)]
pub struct StoreOptions {
    /// What a commit survives.
    pub durability: Durability,
    /// How long a run's lease lasts without renewal, in ms (at least
    /// [`MIN_LEASE_MS`]; default [`DEFAULT_LEASE_MS`]): how long another
    /// process waits to take over the runs of one that stopped without
    /// proof of its death. Each claim writes its own expiry, so processes
    /// with different leases share a database.
    pub lease_ms: i64,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            durability: Durability::default(),
            lease_ms: DEFAULT_LEASE_MS,
        }
    }
}

/// How often a claim is tried again while another transaction holds the
/// run's row (20 ms apart).
const CLAIM_TRIES: u32 = 25;

impl Store {
    /// Opens the database at `path` (a SQLite file, created if it does not
    /// exist, or a `postgres://` URL) with the default [`StoreOptions`], and
    /// starts its writer thread.
    ///
    /// # Errors
    /// See [`StoreError`]: a file of another kind or a newer schema is
    /// refused and left untouched.
    pub async fn open(location: impl Into<Location>) -> Result<Store, StoreError> {
        Store::open_with_options(location, StoreOptions::default()).await
    }

    /// [`Store::open`] with a choice of what commits survive.
    ///
    /// # Errors
    /// As [`Store::open`].
    pub async fn open_with(
        location: impl Into<Location>,
        durability: Durability,
    ) -> Result<Store, StoreError> {
        Store::open_with_options(
            location,
            StoreOptions {
                durability,
                ..StoreOptions::default()
            },
        )
        .await
    }

    /// [`Store::open`] with every option.
    ///
    /// # Errors
    /// As [`Store::open`].
    pub async fn open_with_options(
        location: impl Into<Location>,
        options: StoreOptions,
    ) -> Result<Store, StoreError> {
        Store::open_opts(location.into(), options, true).await
    }

    /// How long the leases this store writes last (see [`StoreOptions`]).
    pub fn lease_ms(&self) -> i64 {
        self.lease_ms
    }

    /// [`Store::open`] for a command that must change nothing, not even the
    /// schema: a database of an older version is refused
    /// ([`StoreError::OlderSchema`]), not upgraded.
    ///
    /// # Errors
    /// As [`Store::open`], and [`StoreError::OlderSchema`].
    pub async fn open_unchanged(location: impl Into<Location>) -> Result<Store, StoreError> {
        Store::open_opts(location.into(), StoreOptions::default(), false).await
    }

    async fn open_opts(
        location: Location,
        options: StoreOptions,
        upgrade: bool,
    ) -> Result<Store, StoreError> {
        let StoreOptions {
            durability,
            lease_ms,
        } = options;
        let lease_ms = lease_ms.max(MIN_LEASE_MS);
        let opened = tokio::task::spawn_blocking({
            let location = location.clone();
            move || -> Result<Vec<Conn>, StoreError> {
                match &location {
                    #[cfg(not(feature = "postgres"))]
                    Location::Postgres(_) => Err(without_postgres()),
                    #[cfg(feature = "postgres")]
                    Location::Postgres(url) => {
                        // PostgreSQL takes writes from many connections at
                        // once; a round trip, not the disk, bounds each.
                        let synchronous = durability == Durability::PowerLoss;
                        let mut conns = vec![Conn::Postgres(Box::new(postgres::open(
                            url,
                            synchronous,
                            lease_ms,
                            upgrade,
                        )?))];
                        for _ in 1..POSTGRES_WRITERS {
                            conns.push(Conn::Postgres(Box::new(postgres::connect(
                                url,
                                synchronous,
                                lease_ms,
                            )?)));
                        }
                        Ok(conns)
                    }
                    Location::File(path) => {
                        Ok(vec![Conn::Sqlite(schema::open(path, durability, upgrade)?)])
                    }
                }
            }
        })
        .await
        .map_err(|e| StoreError::Shared(format!("opening the database panicked: {e}")))??;
        let stats = Arc::new(writer::WriterStats::default());
        let (mut writers, mut threads) = (Vec::new(), Vec::new());
        for conn in opened {
            let (writer, thread) = Writer::spawn(conn, stats.clone())?;
            writers.push(writer);
            threads.push(thread);
        }
        Ok(Store {
            writers: writers.into(),
            reader: Arc::new(std::sync::Mutex::new(None)),
            threads: Arc::new(std::sync::Mutex::new(threads)),
            #[cfg(feature = "postgres")]
            wake: Arc::default(),
            lease_ms,
            location,
            named_components: starts::NamedComponents::default(),
        })
    }

    /// Runs `f` in a read transaction of the reader connection, on a
    /// blocking thread. It sees everything committed before it began.
    pub(crate) async fn read<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Tx<'_>) -> Result<T, StoreError> + Send + 'static,
    {
        let reader = self.reader.clone();
        let location = self.location.clone();
        tokio::task::spawn_blocking(move || {
            let mut slot = reader
                .lock()
                .map_err(|_| StoreError::Shared("the reader connection was poisoned".into()))?;
            // Opened on first use: a process that only drives runs never
            // pays for it.
            let conn = match &mut *slot {
                Some(conn) => conn,
                empty => empty.insert(match &location {
                    #[cfg(not(feature = "postgres"))]
                    Location::Postgres(_) => return Err(without_postgres()),
                    #[cfg(feature = "postgres")]
                    Location::Postgres(url) => {
                        Conn::Postgres(Box::new(crate::sql::PgConn::connect(url)?))
                    }
                    Location::File(path) => Conn::Sqlite(schema::open_reader(path)?),
                }),
            };
            // Dropping the transaction ends it; a read has nothing to commit.
            match conn {
                Conn::Sqlite(conn) => {
                    let tx = conn
                        .transaction_with_behavior(rusqlite::TransactionBehavior::Deferred)
                        .map_err(sql("starting a read"))?;
                    f(&Tx::sqlite(&tx))
                }
                #[cfg(feature = "postgres")]
                Conn::Postgres(conn) => {
                    let tx = conn.begin("starting a read")?;
                    f(&crate::sql::Tx::postgres(&tx))
                }
            }
        })
        .await
        .map_err(|e| StoreError::Shared(format!("a read panicked: {e}")))?
    }

    /// What the writer has done so far.
    pub fn stats(&self) -> StoreStats {
        StoreStats {
            commits: self
                .writer()
                .stats
                .commits
                .load(std::sync::atomic::Ordering::Relaxed),
            jobs: self
                .writer()
                .stats
                .jobs
                .load(std::sync::atomic::Ordering::Relaxed),
        }
    }

    /// Seconds per committed batch, and jobs per committed batch.
    pub fn commit_histograms(&self) -> (HistogramSnapshot, HistogramSnapshot) {
        (
            self.writer().stats.commit_seconds.snapshot(),
            self.writer().stats.batch_size.snapshot(),
        )
    }

    /// How long a commit waits out a write lock that another process holds
    /// before it fails with "locked by another process" (default 2 minutes;
    /// each try itself waits up to the 5 s busy timeout).
    pub fn set_lock_wait(&self, wait: std::time::Duration) {
        self.writer().stats.lock_wait_ms.store(
            (wait.as_millis() as u64).max(1),
            std::sync::atomic::Ordering::Relaxed,
        );
    }

    /// Where the database is (shown without its password by `Display`).
    pub fn location(&self) -> &Location {
        &self.location
    }

    /// Takes ownership of an existing unfinished run.
    ///
    /// # Errors
    /// [`StoreError::RunNotFound`], or [`StoreError::Owned`] when a live
    /// process drives it. A finished run is returned as [`Claim::Finished`].
    pub async fn claim_existing(&self, run_id: &str, owner: &Owner) -> Result<Claim, StoreError> {
        Ok(self.claim_existing_for_drive(run_id, owner).await?.0)
    }

    /// [`Store::claim_existing`], and for a run it took, what its drive
    /// starts from ([`Store::drive_start`]), in one job: one round trip to
    /// the writer where a resume used to make two.
    pub async fn claim_existing_for_drive(
        &self,
        run_id: &str,
        owner: &Owner,
    ) -> Result<(Claim, Option<DriveStart>), StoreError> {
        // A row held by another transaction for a moment (an event being
        // sent wakes the run in the same row) is tried again shortly; a
        // host that really took it answers with its own pid by then.
        let mut tries = 0;
        loop {
            let lease_ms = self.lease_ms;
            let (id, me) = (run_id.to_string(), owner.to_string());
            let claimed = self
                .writer_for(&id)
                .transact(move |tx| {
                    let run = read_run(tx, &id)?.ok_or(StoreError::RunNotFound(id.clone()))?;
                    let claim = claim_existing_run(tx, run, &me, tx.now_ms(), lease_ms)?;
                    let start = match &claim {
                        Claim::Finished(_) => None,
                        Claim::Created(_) | Claim::Resumed(_) => Some(read_drive_start(tx, &id)?),
                    };
                    Ok((claim, start))
                })
                .await;
            match claimed {
                Err(e) if rows::locked_now(&e) && tries < CLAIM_TRIES => {
                    tries += 1;
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                }
                other => return other,
            }
        }
    }

    /// The run's committed history, in no particular order.
    pub async fn history(&self, run_id: &str) -> Result<Vec<StepRecord>, StoreError> {
        let run_id = run_id.to_string();
        self.writer_for(&run_id)
            .transact(move |tx| read_history(tx, &run_id))
            .await
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
        let lease_ms = self.lease_ms;
        let (run_id, owner) = (run_id.to_string(), owner.to_string());
        self.writer_for(&run_id)
            .transact(move |tx| {
                let now = tx.now_ms();
                let cancel = renew_and_switch(
                    tx,
                    &run_id,
                    &owner,
                    drive,
                    commit.switch.as_ref(),
                    now,
                    lease_ms,
                )?;
                if let Some(attempt) = &commit.last_attempt {
                    insert_attempt(tx, &run_id, attempt)?;
                }
                insert_step(tx, &run_id, &commit.record)?;
                insert_output(tx, &run_id, &commit.output)?;
                if let Some((key, value)) = &commit.tag {
                    rows::set_tags(tx, &run_id, [(key, value)])?;
                }
                Ok(cancel)
            })
            .await
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
        let lease_ms = self.lease_ms;
        let (run_id, owner) = (run_id.to_string(), owner.to_string());
        self.writer_for(&run_id)
            .transact(move |tx| {
                let cancel = renew(tx, &run_id, &owner, drive, tx.now_ms(), lease_ms)?;
                insert_attempt(tx, &run_id, &attempt)?;
                insert_output(tx, &run_id, &output)?;
                Ok(cancel)
            })
            .await
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
        let lease_ms = self.lease_ms;
        let (run_id, owner) = (run_id.to_string(), owner.to_string());
        self.writer_for(&run_id)
            .transact(move |tx| {
                let now = tx.now_ms();
                renew_and_switch(tx, &run_id, &owner, drive, switch.as_ref(), now, lease_ms)?;
                supersede_steps(tx, &run_id, &keys, drive, now)
            })
            .await
    }

    /// Bytes the run has recorded so far: step outcomes, failed attempts
    /// and guest output (what the history size limit counts).
    pub async fn recorded_bytes(&self, run_id: &str) -> Result<u64, StoreError> {
        let run_id = run_id.to_string();
        self.writer_for(&run_id)
            .transact(move |tx| read_recorded_bytes(tx, &run_id))
            .await
    }

    /// What a new drive of the run starts from, read in one job of the
    /// writer's batch: the history, the failed attempts per step, and the
    /// bytes recorded so far.
    pub async fn drive_start(&self, run_id: &str) -> Result<DriveStart, StoreError> {
        let run_id = run_id.to_string();
        self.writer_for(&run_id)
            .transact(move |tx| read_drive_start(tx, &run_id))
            .await
    }

    /// For each step of the run with failed attempts, the number of the
    /// last one recorded (so a resumed step continues the count).
    pub async fn attempt_counts(&self, run_id: &str) -> Result<Vec<(String, u32)>, StoreError> {
        let run_id = run_id.to_string();
        self.writer_for(&run_id)
            .transact(move |tx| read_attempt_counts(tx, &run_id))
            .await
    }

    /// The failed attempts of one step, oldest first.
    pub async fn attempts(
        &self,
        run_id: &str,
        key: &str,
    ) -> Result<Vec<AttemptRecord>, StoreError> {
        let (run_id, key) = (run_id.to_string(), key.to_string());
        self.read(move |tx| {
            let rows = tx.all(
                "reading attempts",
                "SELECT attempt, outcome, value, started_at_ms, finished_at_ms FROM attempts
                     WHERE run_id = ?1 AND key = ?2 ORDER BY attempt",
                args![run_id, key],
                |r| {
                    Ok((
                        r.get::<u32>(0)?,
                        r.get::<String>(1)?,
                        r.get::<String>(2)?,
                        r.get::<i64>(3)?,
                        r.get::<i64>(4)?,
                    ))
                },
            )?;
            let mut out = Vec::new();
            for (attempt, kind, value, started_at_ms, finished_at_ms) in rows {
                let outcome = Outcome::from_parts(&kind, value).ok_or_else(|| {
                    StoreError::Corrupt(format!("attempt {attempt} of {key} has outcome {kind:?}"))
                })?;
                out.push(AttemptRecord {
                    key: key.clone(),
                    attempt,
                    outcome,
                    started_at_ms,
                    finished_at_ms,
                });
            }
            Ok(out)
        })
        .await
    }

    /// Records the run's end (with what the workflow printed) and releases
    /// it: the run as it is then, read in the same transaction (so that
    /// whoever reports the end needs no second trip to the writer).
    pub async fn finish_run(
        &self,
        run_id: &str,
        owner: &Owner,
        drive: u32,
        end: RunEnd,
        switch: Option<ComponentSwitch>,
        output: Vec<OutputLine>,
    ) -> Result<RunRecord, StoreError> {
        let lease_ms = self.lease_ms;
        let (run_id, owner) = (run_id.to_string(), owner.to_string());
        self.writer_for(&run_id)
            .transact(move |tx| {
                let now = tx.now_ms();
                renew_and_switch(tx, &run_id, &owner, drive, switch.as_ref(), now, lease_ms)?;
                insert_output(tx, &run_id, &output)?;
                match &end {
                    RunEnd::Cancelled => mark_cancelled(tx, &run_id, now)?,
                    RunEnd::Succeeded(out) => {
                        finish(tx, &run_id, "succeeded", Some(out), None, now)?
                    }
                    RunEnd::Failed(e) => finish(tx, &run_id, "failed", None, Some(e), now)?,
                }
                read_run(tx, &run_id)?.ok_or_else(|| StoreError::RunNotFound(run_id.clone()))
            })
            .await
    }

    /// Gives up ownership of an unfinished run, so that another process may
    /// resume it at once. Does nothing if `owner` no longer owns it.
    pub async fn release(&self, run_id: &str, owner: &Owner) -> Result<(), StoreError> {
        let (run_id, owner) = (run_id.to_string(), owner.to_string());
        self.writer_for(&run_id)
            .transact(move |tx| {
                tx.exec(
                    "releasing the run",
                    "UPDATE runs SET owner = NULL, lease_until_ms = NULL WHERE id = ?1 AND owner = ?2",
                    args![run_id, owner],
                )?;
                tx.notify(&run_id)?;
                Ok(())
            })
            .await
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
        let lease_ms = self.lease_ms;
        let (run_id, owner) = (run_id.to_string(), owner.to_string());
        self.writer_for(&run_id)
            .transact(move |tx| renew(tx, &run_id, &owner, drive, tx.now_ms(), lease_ms))
            .await
    }

    /// Ids of unfinished runs that no live process drives, oldest first.
    pub async fn resumable_runs(&self) -> Result<Vec<String>, StoreError> {
        Ok(self
            .unfinished_runs()
            .await?
            .into_iter()
            .filter(|u| u.busy.is_none())
            .map(|u| u.id)
            .collect())
    }

    /// Every unfinished run, oldest first, with who drives it if anyone
    /// provably alive does.
    pub async fn unfinished_runs(&self) -> Result<Vec<Unfinished>, StoreError> {
        self.read(|tx| {
            let now = tx.now_ms();
            let rows = tx.all(
                "listing runs",
                "SELECT id, owner, lease_until_ms FROM runs
                 WHERE status IN ('running', 'waiting') ORDER BY created_at_ms, id",
                args![],
                owner_row,
            )?;
            let mut runs = Vec::new();
            for (id, owner, lease) in rows {
                let busy = match (&owner, lease) {
                    (Some(o), Some(l)) if !owner_is_gone(Some(o), Some(l), now) => {
                        let parsed = Owner::parse(o);
                        Some(Busy {
                            pid: parsed.as_ref().map_or(0, |p| p.pid()),
                            host: parsed.map_or_else(|| o.clone(), |p| p.host().to_string()),
                            lease_left_ms: l - now,
                        })
                    }
                    _ => None,
                };
                runs.push(Unfinished { id, busy });
            }
            Ok(runs)
        })
        .await
    }

    /// The run with this id, if any.
    pub async fn run(&self, run_id: &str) -> Result<Option<RunRecord>, StoreError> {
        let run_id = run_id.to_string();
        self.writer_for(&run_id)
            .transact(move |tx| read_run(tx, &run_id))
            .await
    }

    /// [`Store::run`] through the read-only connection: for readers that
    /// look often (a long poll), which must not queue behind commits.
    ///
    /// # Errors
    /// [`StoreError`] when the read fails.
    pub async fn run_for_reading(&self, run_id: &str) -> Result<Option<RunRecord>, StoreError> {
        let run_id = run_id.to_string();
        self.read(move |tx| read_run(tx, &run_id)).await
    }

    /// Stops the writer once the jobs already queued are committed, and
    /// waits for it; other clones of this handle get
    /// [`StoreError::Closed`] from then on.
    ///
    /// Dropping every handle also stops the writer, without waiting.
    pub async fn close(self) {
        for writer in self.writers.iter() {
            writer.shutdown().await;
        }
        let threads = self
            .threads
            .lock()
            .map(|mut t| std::mem::take(&mut *t))
            .unwrap_or_default();
        for thread in threads {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
    }

    /// The writer of run `run_id`'s writes.
    fn writer_for(&self, run_id: &str) -> RunWriter<'_> {
        // FNV-1a: cheap, and the same run always lands on the same writer.
        let h = run_id.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
        });
        RunWriter {
            writer: &self.writers[(h % self.writers.len() as u64) as usize],
            run: Some(run_id.to_string()),
        }
    }

    /// The writer of writes that belong to no run (components).
    fn writer(&self) -> RunWriter<'_> {
        RunWriter {
            writer: &self.writers[0],
            run: None,
        }
    }
}

/// A writer and the run a job writes (see [`writer::Queued`]).
struct RunWriter<'a> {
    writer: &'a Writer,
    run: Option<String>,
}

impl std::ops::Deref for RunWriter<'_> {
    type Target = Writer;
    fn deref(&self) -> &Writer {
        self.writer
    }
}

impl RunWriter<'_> {
    /// [`Writer::transact`] for this run. On PostgreSQL, `f` locks the
    /// run's row before any other row (the lease check does), and may be
    /// run again, in a later transaction, when it loses a race with another
    /// transaction (a deadlock): nothing it did in the lost one stays.
    async fn transact<T, F>(self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnMut(&Tx<'_>) -> Result<T, StoreError> + Send + 'static,
    {
        self.writer.transact(self.run, f).await
    }
}

#[cfg(all(test, feature = "postgres"))]
mod pg_tests;
#[cfg(test)]
mod tests;

/// A run's id, owner and lease expiry.
fn owner_row(
    r: &Row<'_>,
) -> Result<(String, Option<String>, Option<i64>), crate::sql::ColumnError> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
}
