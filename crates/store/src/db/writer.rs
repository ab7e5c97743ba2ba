//! The single writer: one OS thread owns the database connection and applies
//! what callers send it in batches, one transaction and one fsync per batch
//! (group commit).
//!
//! **Invariant:** a caller's reply is sent only after the transaction that
//! holds its change has committed, so "the future resolved `Ok`" means "the
//! change is on disk per `synchronous=FULL`".
//!
//! Each job runs inside its own savepoint: a job that fails is rolled back
//! alone and gets its error, the rest of the batch commits.
//!
//! A job sent while the writer is idle (nothing queued, no batch being
//! applied, and the last commit held one job) on SQLite is committed on the
//! caller's thread instead, when the database's write lock is free at once:
//! a lone sequential step then pays no thread hand-off to the writer and
//! back (two wake-ups and two context switches, more than the commit's own
//! CPU). When callers come at once, the thread's batches hold several jobs
//! and group commit takes over again. The connection is shared behind a
//! mutex, so the two never run at once and the invariant holds.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rusqlite::TransactionBehavior;
use tokio::sync::{mpsc, oneshot};

use super::StoreError;
#[cfg(feature = "postgres")]
use crate::sql::PgConn;
use crate::sql::Tx;

/// The writer's connection.
pub(crate) enum Conn {
    Sqlite(rusqlite::Connection),
    #[cfg(feature = "postgres")]
    Postgres(Box<PgConn>),
}

/// Most jobs applied in one transaction; bounds the latency of the first.
const MAX_BATCH: usize = 512;

/// Queue length before senders wait (backpressure on the writer).
const QUEUE: usize = 4096;

/// What a job hands back after running in the transaction: whether it
/// failed (so its savepoint is rolled back), and how to reply once the
/// commit outcome is known; no reply when it lost a race with another
/// transaction (a PostgreSQL deadlock or serialization failure) and is to
/// be tried again in a later one.
struct Applied {
    failed: bool,
    reply: Option<Reply>,
}

/// Sends a job's result, given the commit error if the commit failed.
type Reply = Box<dyn FnOnce(Option<&StoreError>) + Send>;

/// A job gets the open transaction, or the reason there is none (then it
/// replies with that reason and its `Applied` is ignored), and whether
/// this is its last try (then it replies whatever happened).
type Job = Box<dyn FnMut(Result<&Tx<'_>, &StoreError>, bool) -> Applied + Send>;

/// A job as it waits in the queue: the run it writes (a batch applies its
/// jobs in the order of their runs on PostgreSQL, so that two hosts' batches
/// lock runs in one order and cannot deadlock each other) and how often it
/// lost a race already.
pub(crate) struct Queued {
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    run: Option<String>,
    tries: u32,
    job: Job,
}

/// Most tries of a job that keeps losing races (deadlocks, serialization
/// failures) before its caller gets the error.
const MAX_TRIES: u32 = 8;

/// A handle to the writer thread. Cloning it is cheap; the thread ends when
/// the last handle is dropped or [`Writer::close`] is called.
/// Counts of the writer's work, for benchmarks, tests and metrics.
#[derive(Debug)]
pub(crate) struct WriterStats {
    /// Transactions committed (each one fsync of the WAL at `synchronous=FULL`).
    pub(crate) commits: AtomicU64,
    /// Jobs applied in them.
    pub(crate) jobs: AtomicU64,
    /// Of the commits, those made on the caller's thread (the writer idle).
    pub(crate) inline_commits: AtomicU64,
    /// Whether the last commit held one job: commits look sequential, and
    /// a caller may commit its job itself. When callers come at once, the
    /// thread's batches hold several and group commit takes over again.
    lone: AtomicBool,
    /// Set while the thread waits for jobs with none in hand: cleared as it
    /// takes one, before it holds the connection, so that a caller never
    /// overtakes a job the thread has taken and not applied yet.
    waiting: AtomicBool,
    /// How long to wait out another process's write lock, in ms (0: the
    /// default, [`MAX_BUSY_WAIT`]).
    pub(crate) lock_wait_ms: AtomicU64,
    /// Seconds per committed batch (applying its jobs and the commit).
    pub(crate) commit_seconds: super::histogram::Histogram,
    /// Jobs per committed batch.
    pub(crate) batch_size: super::histogram::Histogram,
}

/// Bounds of the commit latency histogram, in seconds.
static COMMIT_BOUNDS: [f64; 12] = [
    0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 2.5,
];
/// Bounds of the batch size histogram.
static BATCH_BOUNDS: [f64; 9] = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0];

impl Default for WriterStats {
    fn default() -> Self {
        WriterStats {
            commits: AtomicU64::new(0),
            jobs: AtomicU64::new(0),
            inline_commits: AtomicU64::new(0),
            lone: AtomicBool::new(true),
            waiting: AtomicBool::new(false),
            lock_wait_ms: AtomicU64::new(0),
            commit_seconds: super::histogram::Histogram::new(&COMMIT_BOUNDS),
            batch_size: super::histogram::Histogram::new(&BATCH_BOUNDS),
        }
    }
}

#[derive(Clone)]
pub(crate) struct Writer {
    pub(crate) stats: Arc<WriterStats>,
    /// `None` asks the thread to stop after what is queued before it.
    jobs: mpsc::Sender<Option<Queued>>,
    /// The connection, held by the thread while it applies a batch, or by
    /// a caller committing its job itself.
    conn: Arc<Mutex<Conn>>,
    /// Set by [`Writer::shutdown`]: no job runs on a caller's thread then.
    closing: Arc<AtomicBool>,
}

impl Writer {
    /// Starts the writer thread on an already opened connection.
    pub(crate) fn spawn(
        conn: Conn,
        stats: Arc<WriterStats>,
    ) -> Result<(Writer, std::thread::JoinHandle<()>), StoreError> {
        let (tx, rx) = mpsc::channel(QUEUE);
        let thread_stats = stats.clone();
        let conn = Arc::new(Mutex::new(conn));
        let thread_conn = conn.clone();
        let handle = std::thread::Builder::new()
            .name("durable-writer".into())
            .spawn(move || run(&thread_conn, rx, &thread_stats))
            .map_err(|e| StoreError::Io {
                context: "starting the database writer thread".into(),
                source: e,
            })?;
        Ok((
            Writer {
                stats,
                jobs: tx,
                conn,
                closing: Arc::new(AtomicBool::new(false)),
            },
            handle,
        ))
    }

    /// Runs `f` in the writer's next transaction and returns its value once
    /// that transaction has committed.
    ///
    /// # Errors
    /// `f`'s own error (its changes are rolled back, the batch goes on), a
    /// failed commit, or [`StoreError::Closed`] when the writer is gone.
    ///
    /// # Cancel safety
    /// Dropping the future does not withdraw the job: once sent, it may still
    /// be applied and committed. Callers that care re-read the state.
    pub(crate) async fn transact<T, F>(&self, run: Option<String>, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnMut(&Tx<'_>) -> Result<T, StoreError> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel::<Result<T, StoreError>>();
        let mut f = f;
        let mut tx = Some(tx);
        let job: Job = Box::new(move |txn, last| {
            let out = match txn {
                // A job that panics fails alone (its savepoint is rolled
                // back): the writer, and the other jobs of its batch, go
                // on.
                Ok(txn) => std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(txn)))
                    .unwrap_or_else(|panic| {
                        let why = panic
                            .downcast_ref::<&str>()
                            .map(|s| s.to_string())
                            .or_else(|| panic.downcast_ref::<String>().cloned())
                            .unwrap_or_else(|| "a panic".into());
                        Err(StoreError::Shared(format!(
                            "a database transaction failed in the host: {why}"
                        )))
                    }),
                Err(e) => Err(e.duplicate()),
            };
            // Rolled back to its savepoint, it is tried again once this
            // transaction has ended and released its locks.
            if !last && out.as_ref().err().is_some_and(StoreError::is_conflict) {
                return Applied {
                    failed: true,
                    reply: None,
                };
            }
            let failed = out.is_err();
            let tx = tx.take();
            Applied {
                failed,
                reply: Some(Box::new(move |commit_error| {
                    let result = match (commit_error, out) {
                        (Some(e), Ok(_)) => Err(e.duplicate()),
                        (_, out) => out,
                    };
                    if let Some(tx) = tx {
                        let _ = tx.send(result);
                    }
                })),
            }
        });
        let job = Queued { run, tries: 0, job };
        let job = match self.idle() {
            true => match try_inline(&self.conn, job, &self.stats, &self.closing) {
                None => return rx.await.map_err(|_| StoreError::Closed)?,
                Some(job) => job,
            },
            false => job,
        };
        self.jobs
            .send(Some(job))
            .await
            .map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    /// True when nothing is queued for the thread (it may still be applying
    /// a batch: the connection's lock tells) and the writer is not closing.
    fn idle(&self) -> bool {
        self.stats.lone.load(Ordering::Relaxed)
            && self.stats.waiting.load(Ordering::SeqCst)
            && self.jobs.capacity() == self.jobs.max_capacity()
            && !self.closing.load(Ordering::SeqCst)
    }

    /// Asks the thread to stop once the jobs queued before this call are
    /// done. Jobs sent later fail with [`StoreError::Closed`].
    pub(crate) async fn shutdown(&self) {
        self.closing.store(true, Ordering::SeqCst);
        let _ = self.jobs.send(None).await;
    }
}

/// Commits `job` alone on this thread if the connection is SQLite's, no
/// batch holds it, and the database's write lock is free now; else gives
/// the job back, untouched, for the thread. Never waits: not for the
/// connection, not for another process's lock (the busy timeout is off
/// while the transaction begins).
fn try_inline(
    conn: &Mutex<Conn>,
    job: Queued,
    stats: &WriterStats,
    closing: &AtomicBool,
) -> Option<Queued> {
    let Ok(mut guard) = conn.try_lock() else {
        return Some(job);
    };
    // Closing since the caller looked: the thread answers it (`Closed`).
    if closing.load(Ordering::SeqCst) || !stats.waiting.load(Ordering::SeqCst) {
        return Some(job);
    }
    // Only SQLite commits on the caller's thread (without PostgreSQL
    // support, every connection is SQLite's).
    #[cfg_attr(not(feature = "postgres"), allow(irrefutable_let_patterns))]
    let Conn::Sqlite(conn) = &mut *guard else {
        return Some(job);
    };
    if conn.busy_timeout(Duration::ZERO).is_err() {
        return Some(job);
    }
    let left = commit_alone(conn, job, stats);
    let _ = conn.busy_timeout(Duration::from_millis(crate::error::BUSY_TIMEOUT_MS));
    left
}

/// [`try_inline`]'s transaction: begun at once or not at all.
fn commit_alone(
    conn: &mut rusqlite::Connection,
    job: Queued,
    stats: &WriterStats,
) -> Option<Queued> {
    let txn = match conn.transaction_with_behavior(TransactionBehavior::Immediate) {
        Ok(txn) => txn,
        // Another process writes: the thread waits that out, not a caller.
        Err(_) => return Some(job),
    };
    let _ = txn.busy_timeout(Duration::from_millis(crate::error::BUSY_TIMEOUT_MS));
    let started = Instant::now();
    let mut batch = vec![job];
    // SQLite has no deadlocks to lose: nothing is left to try again.
    let (replies, _) = run_jobs(&Tx::sqlite(&txn), &mut batch)?;
    let commit = txn
        .commit()
        .err()
        .map(|e| StoreError::from_sqlite("committing".into(), e));
    if reply_all(replies, commit) {
        stats.commits.fetch_add(1, Ordering::Relaxed);
        stats.inline_commits.fetch_add(1, Ordering::Relaxed);
        stats.jobs.fetch_add(1, Ordering::Relaxed);
        stats
            .commit_seconds
            .observe(started.elapsed().as_secs_f64());
        stats.batch_size.observe(1.0);
    }
    None
}

fn run(conn: &Mutex<Conn>, mut rx: mpsc::Receiver<Option<Queued>>, stats: &WriterStats) {
    let mut batch: Vec<Queued> = Vec::with_capacity(MAX_BATCH);
    // Jobs that lost a race in the last batch: they go first in the next.
    let mut again: Vec<Queued> = Vec::new();
    let mut stopping = false;
    while !stopping || !again.is_empty() {
        if again.is_empty() {
            stats.waiting.store(true, Ordering::SeqCst);
            let received = rx.blocking_recv();
            stats.waiting.store(false, Ordering::SeqCst);
            match received {
                Some(Some(first)) => batch.push(first),
                Some(None) | None => break,
            }
        } else {
            batch.append(&mut again);
        }
        while batch.len() < MAX_BATCH && !stopping {
            match rx.try_recv() {
                Ok(Some(job)) => batch.push(job),
                Ok(None) => {
                    stopping = true;
                    break;
                }
                Err(_) => break,
            }
        }
        let jobs = batch.len() as u64;
        let wait = match stats.lock_wait_ms.load(Ordering::Relaxed) {
            0 => MAX_BUSY_WAIT,
            ms => Duration::from_millis(ms),
        };
        let started = std::time::Instant::now();
        // A caller committing its own job holds the connection for one
        // transaction at most.
        // (A job that panicked left its transaction rolled back by the
        // drop: the connection is usable.)
        let mut conn = conn.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if apply_batch(&mut conn, &mut batch, wait, &mut again) {
            stats.commits.fetch_add(1, Ordering::Relaxed);
            stats.jobs.fetch_add(jobs, Ordering::Relaxed);
            stats.lone.store(jobs == 1, Ordering::Relaxed);
            stats
                .commit_seconds
                .observe(started.elapsed().as_secs_f64());
            stats.batch_size.observe(jobs as f64);
        }
    }
    // Refuse what arrives from now on: senders see `Closed`. The
    // connection closes with the last handle (dropping it checkpoints
    // nothing on its own; SQLite finishes the WAL on the next open).
    rx.close();
}

/// How long the writer keeps trying, by default, to get the write lock
/// that another process holds before it fails the batch.
pub(crate) const MAX_BUSY_WAIT: Duration = Duration::from_secs(120);

fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _)
        if matches!(f.code, rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked))
}

/// Applies and commits one batch; true if it committed. Jobs that lost a
/// race with another transaction go to `again` (PostgreSQL's only).
#[cfg_attr(not(feature = "postgres"), allow(unused_variables, clippy::ptr_arg))]
fn apply_batch(
    conn: &mut Conn,
    batch: &mut Vec<Queued>,
    max_wait: Duration,
    again: &mut Vec<Queued>,
) -> bool {
    match conn {
        Conn::Sqlite(conn) => {
            // Another process holding the write lock past the busy timeout
            // is waited out (with a warning) rather than failing every job
            // queued.
            let started = Instant::now();
            let mut pause = Duration::from_millis(10);
            let txn = loop {
                match conn.transaction_with_behavior(TransactionBehavior::Immediate) {
                    Ok(t) => break t,
                    Err(e) if is_busy(&e) && started.elapsed() < max_wait => {
                        tracing::warn!(waited = ?started.elapsed(), "the database is locked by another process; waiting");
                        std::thread::sleep(pause);
                        pause = (pause * 2).min(Duration::from_secs(1));
                    }
                    Err(e) => {
                        let err = StoreError::from_sqlite("starting a write transaction".into(), e);
                        return fail_batch(batch, &err);
                    }
                }
            };
            let Some((replies, _)) = run_jobs(&Tx::sqlite(&txn), batch) else {
                return false;
            };
            let commit = txn
                .commit()
                .err()
                .map(|e| StoreError::from_sqlite("committing".into(), e));
            reply_all(replies, commit)
        }
        #[cfg(feature = "postgres")]
        Conn::Postgres(conn) => {
            // Every job locks its own run's row first: in the order of the
            // runs, every host's batches take their locks in one order.
            // (Stable: a run's jobs keep the order they were sent in.)
            batch.sort_by(|a, b| a.run.cmp(&b.run));
            let txn = match conn.begin("starting a write transaction") {
                Ok(t) => t,
                Err(err) => return fail_batch(batch, &err),
            };
            let Some((replies, lost)) = run_jobs(&Tx::postgres(&txn), batch) else {
                return false;
            };
            let committed = reply_all(replies, txn.commit().err());
            for mut job in lost {
                job.tries += 1;
                again.push(job);
            }
            committed
        }
    }
}

/// Fails every job of a batch that could not begin; false (nothing
/// committed).
fn fail_batch(batch: &mut Vec<Queued>, err: &StoreError) -> bool {
    // The jobs never ran: each caller gets the reason.
    for job in batch.drain(..) {
        fail_unapplied(job, err);
    }
    false
}

/// Runs each job of the batch in a savepoint of its own, so that a job
/// that fails is undone alone; the replies to send once the commit is
/// known and the jobs to try again in a later transaction, or `None` when
/// the transaction broke (everyone was answered).
fn run_jobs(txn: &Tx<'_>, batch: &mut Vec<Queued>) -> Option<(Vec<Reply>, Vec<Queued>)> {
    let mut replies: Vec<Reply> = Vec::with_capacity(batch.len());
    let mut lost: Vec<Queued> = Vec::new();
    let mut jobs = batch.drain(..);
    // The end of one job's savepoint and the start of the next go in one
    // round trip: on PostgreSQL, round trips bound the writer.
    let mut step = "SAVEPOINT job";
    while let Some(mut job) = jobs.next() {
        if let Err(err) = txn.batch("opening a savepoint", step) {
            // The transaction is in an unknown state: abandon it whole.
            fail_unapplied(job, &err);
            jobs.for_each(|job| fail_unapplied(job, &err));
            lost.into_iter().for_each(|job| fail_unapplied(job, &err));
            replies.into_iter().for_each(|reply| reply(Some(&err)));
            return None;
        }
        step = "RELEASE SAVEPOINT job; SAVEPOINT job";
        let applied = (job.job)(Ok(txn), job.tries + 1 >= MAX_TRIES);
        if applied.failed
            && let Err(err) = txn.batch("rolling back a failed job", "ROLLBACK TO SAVEPOINT job")
        {
            match applied.reply {
                Some(reply) => reply(Some(&err)),
                None => fail_unapplied(job, &err),
            }
            jobs.for_each(|job| fail_unapplied(job, &err));
            lost.into_iter().for_each(|job| fail_unapplied(job, &err));
            replies.into_iter().for_each(|reply| reply(Some(&err)));
            return None;
        }
        match applied.reply {
            Some(reply) => replies.push(reply),
            None => lost.push(job),
        }
    }
    if let Err(err) = txn.batch("closing a savepoint", "RELEASE SAVEPOINT job") {
        lost.into_iter().for_each(|job| fail_unapplied(job, &err));
        replies.into_iter().for_each(|reply| reply(Some(&err)));
        return None;
    }
    Some((replies, lost))
}

/// Sends every reply with the commit's outcome; true if it committed.
fn reply_all(replies: Vec<Reply>, commit: Option<StoreError>) -> bool {
    let committed = commit.is_none();
    for reply in replies {
        reply(commit.as_ref());
    }
    committed
}

/// Answers a job that cannot run with the reason.
fn fail_unapplied(mut job: Queued, err: &StoreError) {
    let applied = (job.job)(Err(err), true);
    if let Some(reply) = applied.reply {
        reply(None);
    }
}
