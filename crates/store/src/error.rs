//! The store's errors.

use std::path::PathBuf;

/// How long a SQLite statement waits for another process's write lock
/// before it fails with a "database is locked" error, which becomes
/// [`StoreError::Locked`].
pub(crate) const BUSY_TIMEOUT_MS: u64 = 5_000;

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
    /// The database is of an older schema version, and the caller asked
    /// not to upgrade it ([`crate::Store::open_unchanged`]).
    #[error(
        "{} has schema version {found}, older than this durable's {supported}; it was left as it is \
         (this command does not upgrade a database: use the durable that serves it, or upgrade \
         the database by opening it with this one, e.g. `durable list`)",
        path.display()
    )]
    OlderSchema {
        /// The database path.
        path: PathBuf,
        /// The version in the file.
        found: i64,
        /// The version this build writes.
        supported: i64,
    },
    /// Another process held the database's write lock for longer than the
    /// busy timeout.
    #[error(
        "the database is locked by another process (waited {} s while {context}); retry when it is done",
        BUSY_TIMEOUT_MS / 1000
    )]
    Locked {
        /// What we were doing.
        context: String,
    },
    /// No run has this id.
    #[error("no run with id {0:?}")]
    RunNotFound(String),
    /// An exported run or component could not be imported.
    #[error("cannot import: {0}")]
    Import(String),
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
    /// The run has no step with this key.
    #[error("run {run:?} has no step {key:?} (see durable show {run})")]
    StepNotFound {
        /// The run id.
        run: String,
        /// The key asked for.
        key: String,
    },
    /// A run with this id exists already.
    #[error("a run with id {0:?} exists already; choose another id")]
    RunExists(String),
    /// No queue has this name.
    #[error(
        "no queue named {0:?} (define it in durable.toml, [queues.NAME], or with PUT /v1/queues/NAME)"
    )]
    QueueNotFound(String),
    /// The run waits in a queue: only its admission starts it.
    #[error(
        "run {run:?} is queued in queue {queue:?}: a server (`durable serve`) on this database \
         starts it when the queue's limits allow"
    )]
    Queued {
        /// The run id.
        run: String,
        /// Its queue.
        queue: String,
    },
    /// The database location asks for something this build cannot do (a
    /// TLS setting, say).
    #[error("{0}")]
    Config(String),
    /// No component has this digest.
    #[error("no component with digest {0}")]
    ComponentNotFound(String),
    /// Runs refer to the component: it stays.
    #[error(
        "component {digest} is used by {runs} run(s); it can be deleted once no run refers to it"
    )]
    ComponentInUse {
        /// The component's digest.
        digest: String,
        /// How many runs use it.
        runs: u64,
    },
    /// The run has an event with this id and another payload: an event id
    /// names one event, so a resend must carry the same payload.
    #[error(
        "run {run:?} already has an event with id {event_id:?} and another name or payload; \
         an event id names one event (send a new event with a new id)"
    )]
    EventIdTaken {
        /// The run id.
        run: String,
        /// The event id.
        event_id: String,
    },
    /// The run has finished; there is nothing to cancel.
    #[error("run {run:?} has already finished ({status})")]
    AlreadyFinished {
        /// The run id.
        run: String,
        /// How it finished.
        status: crate::RunStatus,
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
    /// Any other PostgreSQL failure.
    #[cfg(feature = "postgres")]
    #[error("database error while {context}")]
    Postgres {
        /// What we were doing.
        context: String,
        /// The PostgreSQL error.
        #[source]
        source: tokio_postgres::Error,
    },
    /// A failure the same batch shared, given to every caller in it.
    #[error("{0}")]
    Shared(String),
    /// A failure that trying again later may not meet (see
    /// [`StoreError::is_transient`]), shared by the callers of a batch.
    #[error("{0}")]
    Transient(String),
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
    pub(crate) fn from_sqlite(context: String, e: rusqlite::Error) -> Self {
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

    /// A PostgreSQL error while `context`.
    #[cfg(feature = "postgres")]
    pub(crate) fn from_postgres(context: String, e: tokio_postgres::Error) -> Self {
        StoreError::Postgres { context, source: e }
    }

    /// A copy for the other callers of a batch that failed as a whole.
    pub(crate) fn duplicate(&self) -> StoreError {
        match self {
            StoreError::Locked { context } => StoreError::Locked {
                context: context.clone(),
            },
            other if other.is_transient() => {
                StoreError::Transient(format!("{:#}", DisplayChain(other)))
            }
            other => StoreError::Shared(format!("{:#}", DisplayChain(other))),
        }
    }

    /// Whether the same work may succeed if tried again: another process's
    /// write lock, a PostgreSQL deadlock or serialization failure (the
    /// writer retries those itself, a few times, before giving up), a lock
    /// not available, or a lost connection. A server answers these with
    /// `503` and `Retry-After`.
    pub fn is_transient(&self) -> bool {
        match self {
            StoreError::Locked { .. } | StoreError::Transient(_) => true,
            #[cfg(feature = "postgres")]
            StoreError::Postgres { source, .. } => is_transient_postgres(source),
            _ => false,
        }
    }

    /// A foreign key refused the change (a row still refers to the one
    /// being deleted).
    pub(crate) fn is_foreign_key_violation(&self) -> bool {
        match self {
            #[cfg(feature = "postgres")]
            StoreError::Postgres { source, .. } => source
                .code()
                .is_some_and(|c| *c == tokio_postgres::error::SqlState::FOREIGN_KEY_VIOLATION),
            StoreError::Sqlite { source, .. } => matches!(
                source,
                rusqlite::Error::SqliteFailure(f, _)
                    if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_FOREIGNKEY
            ),
            _ => false,
        }
    }

    /// A deadlock or serialization failure: the transaction lost a race
    /// with another one and nothing of it happened; the writer tries the
    /// job again.
    pub(crate) fn is_conflict(&self) -> bool {
        match self {
            #[cfg(feature = "postgres")]
            StoreError::Postgres { source, .. } => {
                use tokio_postgres::error::SqlState;
                source.code().is_some_and(|c| {
                    *c == SqlState::T_R_DEADLOCK_DETECTED
                        || *c == SqlState::T_R_SERIALIZATION_FAILURE
                })
            }
            _ => false,
        }
    }
}

#[cfg(feature = "postgres")]
fn is_transient_postgres(e: &tokio_postgres::Error) -> bool {
    use tokio_postgres::error::SqlState;
    if e.is_closed() {
        return true;
    }
    e.code().is_some_and(|c| {
        *c == SqlState::T_R_DEADLOCK_DETECTED
            || *c == SqlState::T_R_SERIALIZATION_FAILURE
            || *c == SqlState::LOCK_NOT_AVAILABLE
            || *c == SqlState::ADMIN_SHUTDOWN
            || *c == SqlState::CANNOT_CONNECT_NOW
            || *c == SqlState::TOO_MANY_CONNECTIONS
            || c.code().starts_with("08")
    })
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

pub(crate) fn sql(context: &str) -> impl FnOnce(rusqlite::Error) -> StoreError + '_ {
    move |e| StoreError::from_sqlite(context.to_string(), e)
}
