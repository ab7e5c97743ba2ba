//! The durable store: runs, their step histories and their components, in
//! one SQLite file.
//!
//! All writes go through one writer thread ([`writer`]) that commits in
//! batches; every `async fn` here resolves only after its change is
//! committed (WAL, `synchronous=FULL`). This module is the only one that
//! writes SQL, and it knows nothing of wasmtime.
//!
//! **Invariant:** a step record is immutable once committed: the
//! `(run_id, key)` primary key makes a second commit of the same key an
//! error instead of an overwrite.

mod schema;
mod types;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rusqlite::{OptionalExtension, Row, Transaction, params};

use crate::owner::{LEASE_MS, Owner};
pub use types::{
    AttemptRecord, Claim, ComponentSwitch, NewRun, Outcome, RunRecord, RunStatus, StepRecord,
};
use writer::Writer;

/// Errors of the store. Messages name the run or the file concerned.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The file exists but is not a durable database; it was not modified.
    #[error("{} cannot be used as a durable database: {reason}", path.display())]
    NotDurable {
        /// The database path.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The database was written by a newer `durable`.
    #[error(
        "{} has schema version {found}, this durable supports up to {supported}: upgrade durable",
        path.display()
    )]
    NewerSchema {
        /// The database path.
        path: PathBuf,
        /// The version in the file.
        found: i64,
        /// The newest version this build knows.
        supported: i64,
    },
    /// Another process held the database's write lock for longer than the
    /// busy timeout.
    #[error(
        "the database is locked by another process (waited {} s while {context}); retry when it is done",
        schema::BUSY_TIMEOUT_MS / 1000
    )]
    Locked {
        /// What we were doing.
        context: String,
    },
    /// No run has this id.
    #[error("no run with id {0:?}")]
    RunNotFound(String),
    /// Another live process drives the run.
    #[error(
        "run {run:?} is being driven by another process (pid {pid} on {host}); \
         wait for it to finish, or stop it and run `durable resume {run}`"
    )]
    Owned {
        /// The run id.
        run: String,
        /// The owner's pid.
        pid: u32,
        /// The owner's host.
        host: String,
    },
    /// This process's ownership of the run was taken by another process
    /// (its lease had expired).
    #[error("run {run:?} was taken over by another process; stopping here")]
    LeaseLost {
        /// The run id.
        run: String,
    },
    /// A row holds a value this build cannot read.
    #[error("corrupt record in the database: {0}")]
    Corrupt(String),
    /// Any other SQLite failure.
    #[error("database error while {context}")]
    Sqlite {
        /// What we were doing.
        context: String,
        /// The SQLite error.
        #[source]
        source: rusqlite::Error,
    },
    /// A failure the same batch shared, given to every caller in it.
    #[error("{0}")]
    Shared(String),
    /// An I/O failure outside SQLite.
    #[error("{context}")]
    Io {
        /// What we were doing.
        context: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The writer thread has stopped.
    #[error("the database writer has stopped")]
    Closed,
}

impl StoreError {
    fn from_sqlite(context: String, e: rusqlite::Error) -> Self {
        match &e {
            rusqlite::Error::SqliteFailure(f, _)
                if matches!(
                    f.code,
                    rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
                ) =>
            {
                StoreError::Locked { context }
            }
            rusqlite::Error::SqliteFailure(f, _)
                if matches!(
                    f.code,
                    rusqlite::ErrorCode::DatabaseCorrupt | rusqlite::ErrorCode::NotADatabase
                ) =>
            {
                StoreError::Corrupt(format!(
                    "the database file is damaged (found while {context}: {e}); it was not modified, restore it from a backup"
                ))
            }
            _ => StoreError::Sqlite { context, source: e },
        }
    }

    /// A copy for the other callers of a batch that failed as a whole.
    fn duplicate(&self) -> StoreError {
        match self {
            StoreError::Locked { context } => StoreError::Locked {
                context: context.clone(),
            },
            other => StoreError::Shared(format!("{:#}", DisplayChain(other))),
        }
    }
}

/// Formats an error with its sources, `a: b: c`.
struct DisplayChain<'a>(&'a (dyn std::error::Error + 'static));

impl std::fmt::Display for DisplayChain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(s) = source {
            write!(f, ": {s}")?;
            source = s.source();
        }
        Ok(())
    }
}

fn sql(context: &str) -> impl FnOnce(rusqlite::Error) -> StoreError + '_ {
    move |e| StoreError::from_sqlite(context.to_string(), e)
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A handle to an open database. Cheap to clone; all clones share the
/// writer thread.
#[derive(Clone)]
pub struct Store {
    writer: Writer,
    thread: Arc<std::sync::Mutex<Option<std::thread::JoinHandle<()>>>>,
}

impl Store {
    /// Opens the database at `path`, creating it if it does not exist, and
    /// starts its writer thread.
    ///
    /// # Errors
    /// See [`StoreError`]: a file of another kind or a newer schema is
    /// refused and left untouched.
    pub async fn open(path: &Path) -> Result<Store, StoreError> {
        let path = path.to_path_buf();
        let opened = tokio::task::spawn_blocking({
            let path = path.clone();
            move || schema::open(&path)
        })
        .await
        .map_err(|e| StoreError::Shared(format!("opening the database panicked: {e}")))??;
        let (writer, thread) = Writer::spawn(opened, path)?;
        Ok(Store {
            writer,
            thread: Arc::new(std::sync::Mutex::new(Some(thread))),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        self.writer.path()
    }

    /// Creates run `new.id` owned by `owner`, or takes ownership of it if it
    /// exists unfinished and its owner is gone, or reports it finished.
    ///
    /// # Errors
    /// [`StoreError::Owned`] when a live process drives the run.
    pub async fn claim_run(&self, new: NewRun, owner: &Owner) -> Result<Claim, StoreError> {
        let owner = owner.to_string();
        self.writer
            .transact(move |tx| {
                let now = now_ms();
                if let Some(existing) = read_run(tx, &new.id)? {
                    if existing.status != RunStatus::Running {
                        return Ok(Claim::Finished(existing));
                    }
                    take_over(tx, &new.id, &owner, now)?;
                    return Ok(Claim::Resumed(existing));
                }
                insert_component(tx, &new.component_digest, &new.component, now)?;
                tx.execute(
                    "INSERT INTO runs (id, workflow, component_digest, input, status, seed,
                                       created_at_ms, owner, lease_until_ms)
                     VALUES (?1, ?2, ?3, ?4, 'running', ?5, ?6, ?7, ?8)",
                    params![
                        new.id,
                        new.workflow,
                        new.component_digest,
                        new.input,
                        new.seed as i64,
                        now,
                        owner,
                        now + LEASE_MS
                    ],
                )
                .map_err(sql("creating the run"))?;
                let run = read_run(tx, &new.id)?
                    .ok_or_else(|| StoreError::Corrupt(format!("run {} vanished", new.id)))?;
                Ok(Claim::Created(run))
            })
            .await
    }

    /// Takes ownership of an existing unfinished run.
    ///
    /// # Errors
    /// [`StoreError::RunNotFound`], or [`StoreError::Owned`] when a live
    /// process drives it. A finished run is returned as [`Claim::Finished`].
    pub async fn claim_existing(&self, run_id: &str, owner: &Owner) -> Result<Claim, StoreError> {
        let (run_id, owner) = (run_id.to_string(), owner.to_string());
        self.writer
            .transact(move |tx| {
                let run = read_run(tx, &run_id)?.ok_or(StoreError::RunNotFound(run_id.clone()))?;
                if run.status != RunStatus::Running {
                    return Ok(Claim::Finished(run));
                }
                take_over(tx, &run_id, &owner, now_ms())?;
                Ok(Claim::Resumed(run))
            })
            .await
    }

    /// The run's committed history, in no particular order.
    pub async fn history(&self, run_id: &str) -> Result<Vec<StepRecord>, StoreError> {
        let run_id = run_id.to_string();
        self.writer
            .transact(move |tx| read_history(tx, &run_id))
            .await
    }

    /// Commits one step's outcome and renews the owner's lease; optionally
    /// switches the run to a new component in the same transaction.
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
        record: StepRecord,
        last_attempt: Option<AttemptRecord>,
        switch: Option<ComponentSwitch>,
    ) -> Result<(), StoreError> {
        let (run_id, owner) = (run_id.to_string(), owner.to_string());
        self.writer
            .transact(move |tx| {
                let now = now_ms();
                renew(tx, &run_id, &owner, now)?;
                if let Some(switch) = switch {
                    switch_component(tx, &run_id, &switch, now)?;
                }
                if let Some(attempt) = &last_attempt {
                    insert_attempt(tx, &run_id, attempt)?;
                }
                tx.execute(
                    "INSERT INTO steps (run_id, key, parent, position, name, input_digest,
                                        outcome, value, attempts, started_at_ms, finished_at_ms)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
                    params![
                        run_id,
                        record.key,
                        record.parent,
                        record.position,
                        record.name,
                        record.input_digest,
                        record.outcome.kind(),
                        record.outcome.payload(),
                        record.attempts,
                        record.started_at_ms,
                        record.finished_at_ms
                    ],
                )
                .map_err(sql("committing a step"))?;
                Ok(())
            })
            .await
    }

    /// Records a failed attempt of a step that will be tried again.
    ///
    /// # Errors
    /// [`StoreError::LeaseLost`] when another process owns the run now.
    pub async fn commit_attempt(
        &self,
        run_id: &str,
        owner: &Owner,
        attempt: AttemptRecord,
    ) -> Result<(), StoreError> {
        let (run_id, owner) = (run_id.to_string(), owner.to_string());
        self.writer
            .transact(move |tx| {
                renew(tx, &run_id, &owner, now_ms())?;
                insert_attempt(tx, &run_id, &attempt)
            })
            .await
    }

    /// For each step of the run with failed attempts, the number of the
    /// last one recorded (so a resumed step continues the count).
    pub async fn attempt_counts(&self, run_id: &str) -> Result<Vec<(String, u32)>, StoreError> {
        let run_id = run_id.to_string();
        self.writer
            .transact(move |tx| {
                let mut stmt = tx
                    .prepare_cached(
                        "SELECT key, max(attempt) FROM attempts WHERE run_id = ?1 GROUP BY key",
                    )
                    .map_err(sql("reading attempts"))?;
                let rows = stmt
                    .query_map([&run_id], |r| Ok((r.get(0)?, r.get(1)?)))
                    .map_err(sql("reading attempts"))?;
                rows.collect::<Result<Vec<_>, _>>()
                    .map_err(sql("reading attempts"))
            })
            .await
    }

    /// The failed attempts of one step, oldest first.
    pub async fn attempts(
        &self,
        run_id: &str,
        key: &str,
    ) -> Result<Vec<AttemptRecord>, StoreError> {
        let (run_id, key) = (run_id.to_string(), key.to_string());
        self.writer
            .transact(move |tx| {
                let mut stmt = tx
                    .prepare_cached(
                        "SELECT attempt, outcome, value, started_at_ms, finished_at_ms FROM attempts
                         WHERE run_id = ?1 AND key = ?2 ORDER BY attempt",
                    )
                    .map_err(sql("reading attempts"))?;
                let rows = stmt
                    .query_map([&run_id, &key], |r| {
                        Ok((
                            r.get(0)?,
                            r.get::<_, String>(1)?,
                            r.get::<_, String>(2)?,
                            r.get(3)?,
                            r.get(4)?,
                        ))
                    })
                    .map_err(sql("reading attempts"))?;
                let mut out = Vec::new();
                for row in rows {
                    let (attempt, kind, value, started_at_ms, finished_at_ms) =
                        row.map_err(sql("reading attempts"))?;
                    let outcome = Outcome::from_parts(&kind, value).ok_or_else(|| {
                        StoreError::Corrupt(format!(
                            "attempt {attempt} of {key} has outcome {kind:?}"
                        ))
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

    /// Records the run's end and releases it.
    pub async fn finish_run(
        &self,
        run_id: &str,
        owner: &Owner,
        result: Result<String, String>,
        switch: Option<ComponentSwitch>,
    ) -> Result<(), StoreError> {
        let (run_id, owner) = (run_id.to_string(), owner.to_string());
        self.writer
            .transact(move |tx| {
                let now = now_ms();
                renew(tx, &run_id, &owner, now)?;
                if let Some(switch) = switch {
                    switch_component(tx, &run_id, &switch, now)?;
                }
                let (status, output, error) = match result {
                    Ok(out) => ("succeeded", Some(out), None),
                    Err(e) => ("failed", None, Some(e)),
                };
                tx.execute(
                    "UPDATE runs SET status = ?2, output = ?3, error = ?4, finished_at_ms = ?5,
                                     owner = NULL, lease_until_ms = NULL
                     WHERE id = ?1",
                    params![run_id, status, output, error, now],
                )
                .map_err(sql("finishing the run"))?;
                Ok(())
            })
            .await
    }

    /// Gives up ownership of an unfinished run, so that another process may
    /// resume it at once. Does nothing if `owner` no longer owns it.
    pub async fn release(&self, run_id: &str, owner: &Owner) -> Result<(), StoreError> {
        let (run_id, owner) = (run_id.to_string(), owner.to_string());
        self.writer
            .transact(move |tx| {
                tx.execute(
                    "UPDATE runs SET owner = NULL, lease_until_ms = NULL WHERE id = ?1 AND owner = ?2",
                    params![run_id, owner],
                )
                .map_err(sql("releasing the run"))?;
                Ok(())
            })
            .await
    }

    /// Extends `owner`'s lease on the run.
    ///
    /// # Errors
    /// [`StoreError::LeaseLost`] when another process owns it now.
    pub async fn renew_lease(&self, run_id: &str, owner: &Owner) -> Result<(), StoreError> {
        let (run_id, owner) = (run_id.to_string(), owner.to_string());
        self.writer
            .transact(move |tx| renew(tx, &run_id, &owner, now_ms()))
            .await
    }

    /// Ids of unfinished runs that no live process drives, oldest first.
    pub async fn resumable_runs(&self) -> Result<Vec<String>, StoreError> {
        self.writer
            .transact(|tx| {
                let now = now_ms();
                let mut stmt = tx
                    .prepare(
                        "SELECT id, owner, lease_until_ms FROM runs
                         WHERE status = 'running' ORDER BY created_at_ms, id",
                    )
                    .map_err(sql("listing runs"))?;
                let rows = stmt
                    .query_map([], |r| {
                        Ok((
                            r.get::<_, String>(0)?,
                            r.get::<_, Option<String>>(1)?,
                            r.get::<_, Option<i64>>(2)?,
                        ))
                    })
                    .map_err(sql("listing runs"))?;
                let mut ids = Vec::new();
                for row in rows {
                    let (id, owner, lease) = row.map_err(sql("listing runs"))?;
                    if owner_is_gone(owner.as_deref(), lease, now) {
                        ids.push(id);
                    }
                }
                Ok(ids)
            })
            .await
    }

    /// The run with this id, if any.
    pub async fn run(&self, run_id: &str) -> Result<Option<RunRecord>, StoreError> {
        let run_id = run_id.to_string();
        self.writer.transact(move |tx| read_run(tx, &run_id)).await
    }

    /// The bytes of the component with this digest.
    pub async fn component(&self, digest: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let digest = digest.to_string();
        self.writer
            .transact(move |tx| {
                tx.query_row(
                    "SELECT bytes FROM components WHERE digest = ?1",
                    [&digest],
                    |r| r.get(0),
                )
                .optional()
                .map_err(sql("reading a component"))
            })
            .await
    }

    /// Stops the writer once the jobs already queued are committed, and
    /// waits for it; other clones of this handle get
    /// [`StoreError::Closed`] from then on.
    ///
    /// Dropping every handle also stops the writer, without waiting.
    pub async fn close(self) {
        self.writer.shutdown().await;
        let thread = self.thread.lock().ok().and_then(|mut t| t.take());
        if let Some(thread) = thread {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
    }
}

fn owner_is_gone(owner: Option<&str>, lease_until: Option<i64>, now: i64) -> bool {
    let Some(owner) = owner else { return true };
    if lease_until.is_none_or(|l| l < now) {
        return true;
    }
    Owner::parse(owner).is_some_and(|o| o.is_provably_dead())
}

fn take_over(tx: &Transaction<'_>, run_id: &str, owner: &str, now: i64) -> Result<(), StoreError> {
    let (current, lease): (Option<String>, Option<i64>) = tx
        .query_row(
            "SELECT owner, lease_until_ms FROM runs WHERE id = ?1",
            [run_id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .map_err(sql("reading the run's owner"))?;
    if current.as_deref() != Some(owner) && !owner_is_gone(current.as_deref(), lease, now) {
        let other = current.as_deref().and_then(Owner::parse);
        return Err(StoreError::Owned {
            run: run_id.to_string(),
            pid: other.as_ref().map_or(0, |o| o.pid()),
            host: other.map_or_else(|| "an unknown host".into(), |o| o.host().to_string()),
        });
    }
    tx.execute(
        "UPDATE runs SET owner = ?2, lease_until_ms = ?3 WHERE id = ?1",
        params![run_id, owner, now + LEASE_MS],
    )
    .map_err(sql("taking ownership of the run"))?;
    Ok(())
}

fn renew(tx: &Transaction<'_>, run_id: &str, owner: &str, now: i64) -> Result<(), StoreError> {
    let changed = tx
        .execute(
            "UPDATE runs SET lease_until_ms = ?3 WHERE id = ?1 AND owner = ?2",
            params![run_id, owner, now + LEASE_MS],
        )
        .map_err(sql("renewing the lease"))?;
    if changed == 0 {
        return Err(StoreError::LeaseLost {
            run: run_id.to_string(),
        });
    }
    Ok(())
}

fn switch_component(
    tx: &Transaction<'_>,
    run_id: &str,
    switch: &ComponentSwitch,
    now: i64,
) -> Result<(), StoreError> {
    insert_component(tx, &switch.digest, &switch.bytes, now)?;
    tx.execute(
        "UPDATE runs SET component_digest = ?2 WHERE id = ?1",
        params![run_id, switch.digest],
    )
    .map_err(sql("switching the run's component"))?;
    Ok(())
}

fn insert_attempt(tx: &Transaction<'_>, run_id: &str, a: &AttemptRecord) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO attempts (run_id, key, attempt, outcome, value, started_at_ms, finished_at_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![
            run_id,
            a.key,
            a.attempt,
            a.outcome.kind(),
            a.outcome.payload(),
            a.started_at_ms,
            a.finished_at_ms
        ],
    )
    .map_err(sql("recording an attempt"))?;
    Ok(())
}

fn insert_component(
    tx: &Transaction<'_>,
    digest: &str,
    bytes: &[u8],
    now: i64,
) -> Result<(), StoreError> {
    tx.execute(
        "INSERT OR IGNORE INTO components (digest, bytes, added_at_ms) VALUES (?1, ?2, ?3)",
        params![digest, bytes, now],
    )
    .map_err(sql("storing the component"))?;
    Ok(())
}

fn read_run(tx: &Transaction<'_>, run_id: &str) -> Result<Option<RunRecord>, StoreError> {
    tx.query_row(
        "SELECT id, workflow, component_digest, input, status, output, error, seed,
                created_at_ms, finished_at_ms
         FROM runs WHERE id = ?1",
        [run_id],
        run_from_row,
    )
    .optional()
    .map_err(sql("reading the run"))?
    .transpose()
}

fn run_from_row(r: &Row<'_>) -> rusqlite::Result<Result<RunRecord, StoreError>> {
    let status: String = r.get(4)?;
    let Some(status) = RunStatus::parse(&status) else {
        return Ok(Err(StoreError::Corrupt(format!("run status {status:?}"))));
    };
    Ok(Ok(RunRecord {
        id: r.get(0)?,
        workflow: r.get(1)?,
        component_digest: r.get(2)?,
        input: r.get(3)?,
        status,
        output: r.get(5)?,
        error: r.get(6)?,
        seed: r.get::<_, i64>(7)? as u64,
        created_at_ms: r.get(8)?,
        finished_at_ms: r.get(9)?,
    }))
}

fn read_history(tx: &Transaction<'_>, run_id: &str) -> Result<Vec<StepRecord>, StoreError> {
    let mut stmt = tx
        .prepare_cached(
            "SELECT key, parent, position, name, input_digest, outcome, value, attempts,
                    started_at_ms, finished_at_ms
             FROM steps WHERE run_id = ?1",
        )
        .map_err(sql("reading the history"))?;
    let rows = stmt
        .query_map([run_id], |r| {
            let kind: String = r.get(5)?;
            let value: String = r.get(6)?;
            Ok((
                StepRecord {
                    key: r.get(0)?,
                    parent: r.get(1)?,
                    position: r.get(2)?,
                    name: r.get(3)?,
                    input_digest: r.get(4)?,
                    outcome: Outcome::Ok(String::new()),
                    attempts: r.get(7)?,
                    started_at_ms: r.get(8)?,
                    finished_at_ms: r.get(9)?,
                },
                kind,
                value,
            ))
        })
        .map_err(sql("reading the history"))?;
    let mut out = Vec::new();
    for row in rows {
        let (mut rec, kind, value) = row.map_err(sql("reading the history"))?;
        rec.outcome = Outcome::from_parts(&kind, value)
            .ok_or_else(|| StoreError::Corrupt(format!("step {} has outcome {kind:?}", rec.key)))?;
        out.push(rec);
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
