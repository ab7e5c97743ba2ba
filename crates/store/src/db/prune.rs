//! Retention: deleting finished runs with everything they recorded, in
//! small transactions so that no drive waits long for the write lock.

use crate::location::Location;
use crate::sql::{Arg, Dialect, Tx};

use super::{RunStatus, Store, StoreError};

/// Runs in the first transaction. Later ones grow or shrink (between
/// [`MIN_BATCH`] and [`MAX_BATCH`]) so that one takes about
/// [`BATCH_TARGET`]: a drive's commit, queued behind a batch on the same
/// writer, waits that long at most, on a quiet database or a busy one.
pub const PRUNE_BATCH: u32 = 50;

/// Fewest runs per transaction.
const MIN_BATCH: u32 = 10;

/// Most runs per transaction.
const MAX_BATCH: u32 = 500;

/// How long one transaction should take, its commit included.
const BATCH_TARGET: std::time::Duration = std::time::Duration::from_millis(25);

/// The pause between two batches on SQLite (see [`Store::prune`]).
const SQLITE_PAUSE: std::time::Duration = std::time::Duration::from_millis(120);

/// The tables that hold a run's records, children of `runs`: deleted first.
const RUN_TABLES: &[&str] = &[
    "output",
    "attempts",
    "superseded_attempts",
    "superseded_steps",
    "steps",
    "events",
    "waits",
    "drive_starts",
    "component_switches",
    "step_slots",
    "run_tags",
];

/// Which finished runs to delete. Never an open run, a finished child of
/// an open parent, nor the newest run whose id is `WORKFLOW@...` of its
/// workflow: a schedule's ticks are such runs, and a server that starts
/// again catches up from the newest one (`Store::last_tick_id`); without
/// it, ticks would run twice or be skipped.
#[derive(Debug, Clone)]
pub struct PruneFilter {
    /// Runs that finished before this time (ms since the Unix epoch).
    pub finished_before_ms: i64,
    /// Only runs that ended with this status (succeeded, failed or
    /// cancelled); any finished run when `None`.
    pub status: Option<RunStatus>,
    /// Only runs of this workflow.
    pub workflow: Option<String>,
    /// Not the runs of these workflows (a server's default retention
    /// leaves out the workflows that have their own).
    pub except_workflows: Vec<String>,
}

impl PruneFilter {
    /// Runs that finished before `finished_before_ms`, whatever their
    /// status or workflow.
    pub fn finished_before(finished_before_ms: i64) -> PruneFilter {
        PruneFilter {
            finished_before_ms,
            status: None,
            workflow: None,
            except_workflows: Vec::new(),
        }
    }

    /// The condition on `runs r` and its arguments (`status` is
    /// `self.status`'s name, kept by the caller).
    fn condition<'a>(&'a self, status: &'a Option<&'static str>) -> (String, Vec<&'a dyn Arg>) {
        let mut sql = String::from(
            "r.status IN ('succeeded', 'failed', 'cancelled')
             AND r.finished_at_ms < ?1
             AND (CAST(?2 AS TEXT) IS NULL OR r.status = CAST(?2 AS TEXT))
             AND (CAST(?3 AS TEXT) IS NULL OR r.workflow = CAST(?3 AS TEXT))
             AND NOT EXISTS (SELECT 1 FROM runs p WHERE p.id = r.parent_id
                             AND p.status IN ('queued', 'running', 'waiting'))
             AND NOT (substr(r.id, 1, length(r.workflow) + 1) = r.workflow || '@'
                      AND NOT EXISTS (SELECT 1 FROM runs x WHERE x.id > r.id
                          AND substr(x.id, 1, length(r.workflow) + 1) = r.workflow || '@'))",
        );
        let mut params: Vec<&dyn Arg> = vec![&self.finished_before_ms, status, &self.workflow];
        for name in &self.except_workflows {
            params.push(name);
            sql.push_str(&format!(
                " AND r.workflow <> CAST(?{} AS TEXT)",
                params.len()
            ));
        }
        (sql, params)
    }
}

impl Store {
    /// How many runs [`Store::prune`] would delete now.
    pub async fn prune_count(&self, filter: PruneFilter) -> Result<u64, StoreError> {
        self.read(move |tx| {
            let status = filter.status.map(|s| s.as_str());
            let (condition, params) = filter.condition(&status);
            let n: i64 = tx.one(
                "counting the runs to prune",
                &format!("SELECT count(*) FROM runs r WHERE {condition}"),
                &params,
                |r| r.get(0),
            )?;
            Ok(n as u64)
        })
        .await
    }

    /// Deletes the finished runs `filter` selects (oldest first) with their
    /// steps, attempts, output, events and waits, in transactions of about
    /// [`BATCH_TARGET`] each (see [`PRUNE_BATCH`]); returns how many. A run whose parent is still open is
    /// kept (the parent's page lists it). On SQLite it pauses between
    /// batches so that other processes' commits get the file lock.
    pub async fn prune(&self, filter: PruneFilter) -> Result<u64, StoreError> {
        let mut total = 0;
        let mut batch = PRUNE_BATCH;
        loop {
            let filter = filter.clone();
            // The whole transaction, its commit included (a large delete's
            // commit is most of its cost on PostgreSQL).
            let started = std::time::Instant::now();
            let deleted = self
                .writer()
                .transact(move |tx| prune_batch(tx, &filter, batch))
                .await?;
            let took = started.elapsed();
            total += deleted;
            if deleted < u64::from(batch) {
                return Ok(total);
            }
            batch = if took < BATCH_TARGET / 2 {
                (batch * 2).min(MAX_BATCH)
            } else if took > BATCH_TARGET * 2 {
                (batch / 2).max(MIN_BATCH)
            } else {
                batch
            };
            // On SQLite another process's writer waits for the file lock in
            // SQLite's busy handler, which retries at most every 100 ms:
            // back-to-back batches would starve it (measured: a 0.3 s run
            // took 11 s while 100,000 runs were pruned). A pause longer than
            // that lets every waiting commit in between two batches.
            if matches!(self.location(), Location::File(_)) {
                tokio::time::sleep(SQLITE_PAUSE).await;
            }
        }
    }
}

fn prune_batch(tx: &Tx<'_>, filter: &PruneFilter, batch: u32) -> Result<u64, StoreError> {
    let status = filter.status.map(|s| s.as_str());
    let (condition, params) = filter.condition(&status);
    // Oldest first, through the index on finished runs' end times: SQLite
    // would rather walk `status` and sort every finished run for each batch
    // (measured: 36 runs/s at 200,000), so it is told which index to use.
    let runs = match tx.dialect() {
        Dialect::Sqlite => "runs r INDEXED BY runs_by_finished",
        Dialect::Postgres => "runs r",
    };
    let ids: Vec<String> = tx.all(
        "choosing runs to prune",
        &format!(
            "SELECT r.id FROM {runs} WHERE {condition}
             ORDER BY r.finished_at_ms, r.id LIMIT {batch} /*FOR UPDATE*/"
        ),
        &params,
        |r| r.get(0),
    )?;
    if ids.is_empty() {
        return Ok(0);
    }
    // One statement per table for the whole batch (a round trip each on
    // PostgreSQL), the runs last: their records refer to them.
    let marks: Vec<String> = (1..=ids.len()).map(|i| format!("?{i}")).collect();
    let marks = marks.join(", ");
    let params: Vec<&dyn Arg> = ids.iter().map(|id| id as &dyn Arg).collect();
    for table in RUN_TABLES {
        tx.exec(
            "pruning runs' records",
            &format!("DELETE FROM {table} WHERE run_id IN ({marks})"),
            &params,
        )?;
    }
    tx.exec(
        "pruning runs",
        &format!("DELETE FROM runs WHERE id IN ({marks})"),
        &params,
    )?;
    Ok(ids.len() as u64)
}
