//! Reading and writing rows: the SQL behind [`super::Store`]'s methods,
//! each run inside the writer's transaction.

use crate::sql::{ColumnError, Row, Tx, args};

use super::{
    AttemptRecord, ComponentSwitch, NewRun, Outcome, OutputLine, RunRecord, RunStatus, StepRecord,
    StoreError,
};
use crate::owner::Owner;

pub(super) fn owner_is_gone(owner: Option<&str>, lease_until: Option<i64>, now: i64) -> bool {
    let Some(owner) = owner else { return true };
    if lease_until.is_none_or(|l| l < now) {
        return true;
    }
    Owner::parse(owner).is_some_and(|o| o.is_provably_dead())
}

/// Who owns a run whose row another transaction holds (PostgreSQL).
pub(super) const LOCKED_NOW: &str = "another host, which is writing to it now";

/// Whether `e` says only that another transaction held the run's row: an
/// event being sent, another host's claim. Worth trying again at once.
pub(super) fn locked_now(e: &StoreError) -> bool {
    matches!(e, StoreError::Owned { pid: 0, host, .. } if host == LOCKED_NOW)
}

/// Takes run `run_id` over for `owner` (see [`claim_existing_run`]);
/// `false` when it has ended since the caller read it (nothing is taken).
pub(super) fn take_over(
    tx: &Tx<'_>,
    run_id: &str,
    owner: &str,
    now: i64,
    lease_ms: i64,
) -> Result<bool, StoreError> {
    // On PostgreSQL a run another host is claiming or committing to right
    // now is passed over at once (no row), not waited for: that host is
    // alive and has it.
    type Locked = (Option<String>, Option<i64>, String);
    let Some((current, lease, status)): Option<Locked> = tx.opt(
        "reading the run's owner",
        "SELECT owner, lease_until_ms, status FROM runs WHERE id = ?1 /*FOR UPDATE*/ /*SKIP LOCKED*/",
        args![run_id],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )?
    else {
        return Err(StoreError::Owned {
            run: run_id.to_string(),
            pid: 0,
            host: LOCKED_NOW.into(),
        });
    };
    if !RunStatus::parse_name(&status).is_some_and(RunStatus::is_open) {
        return Ok(false);
    }
    if status == RunStatus::Queued.as_str() {
        let queue: Option<String> = tx
            .opt(
                "reading the run's queue",
                "SELECT queue FROM runs WHERE id = ?1",
                args![run_id],
                |r| r.get(0),
            )?
            .flatten();
        return Err(StoreError::Queued {
            run: run_id.to_string(),
            queue: queue.unwrap_or_default(),
        });
    }
    if current.as_deref() != Some(owner) && !owner_is_gone(current.as_deref(), lease, now) {
        let other = current.as_deref().and_then(Owner::parse);
        return Err(StoreError::Owned {
            run: run_id.to_string(),
            pid: other.as_ref().map_or(0, |o| o.pid()),
            host: other.map_or_else(|| "an unknown host".into(), |o| o.host().to_string()),
        });
    }
    tx.exec(
        "taking ownership of the run",
        "UPDATE runs SET owner = ?2, lease_until_ms = ?3, drives = drives + 1 WHERE id = ?1",
        args![run_id, owner, now + lease_ms],
    )?;
    tx.exec(
        "recording the drive's start",
        "INSERT INTO drive_starts (run_id, drive, started_at_ms)
         SELECT id, drives, CAST(?2 AS BIGINT) FROM runs WHERE id = ?1
         ON CONFLICT (run_id, drive) DO UPDATE SET started_at_ms = excluded.started_at_ms",
        args![run_id, now],
    )?;
    Ok(true)
}

/// Claims a run that exists: a finished run is returned as it is; a run
/// whose cancel was requested while nobody drove it becomes cancelled;
/// otherwise `owner` takes it over (see [`take_over`]) for a new drive.
pub(super) fn claim_existing_run(
    tx: &Tx<'_>,
    run: RunRecord,
    owner: &str,
    now: i64,
    lease_ms: i64,
) -> Result<super::Claim, StoreError> {
    if !run.status.is_open() {
        return Ok(super::Claim::Finished(run));
    }
    let taken = take_over(tx, &run.id, owner, now, lease_ms)?;
    // Read again under the row's lock: another host may have parked the
    // run, or ended it, since `run` was read without one.
    let run = read_run(tx, &run.id)?.ok_or_else(|| StoreError::RunNotFound(run.id.clone()))?;
    if !taken {
        return Ok(super::Claim::Finished(run));
    }
    if run.status == RunStatus::Waiting {
        // Woken (due or not: the replay finds out and waits again if not).
        tx.exec(
            "waking the run",
            "UPDATE runs SET status = 'running', waiting_for = NULL, wake_at_ms = NULL,
                             wait_event = NULL
             WHERE id = ?1",
            args![run.id],
        )?;
    }
    if run.cancel_requested {
        mark_cancelled(tx, &run.id, now)?;
    }
    let run = read_run(tx, &run.id)?.ok_or_else(|| StoreError::RunNotFound(run.id.clone()))?;
    Ok(if run.status == RunStatus::Running {
        super::Claim::Resumed(run)
    } else {
        super::Claim::Finished(run)
    })
}

/// Whether a run's component must be looked at before the run is
/// inserted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ComponentToStore {
    /// Committed with a name already, as this process saw.
    Known,
    /// Maybe not stored, or stored without a name.
    Unknown,
}

/// Inserts run `new`, owned by `owner` (its component too, if new or
/// nameless, unless `component` says it is known): the run as stored.
pub(super) fn insert_run(
    tx: &Tx<'_>,
    new: &NewRun,
    component: ComponentToStore,
    owner: &str,
    now: i64,
    lease_ms: i64,
) -> Result<RunRecord, StoreError> {
    if component == ComponentToStore::Unknown {
        insert_component(
            tx,
            &new.component_digest,
            &new.component,
            Some(&new.workflow),
            now,
        )?;
    }
    tx.exec(
        "creating the run",
        "INSERT INTO runs (id, workflow, component_digest, input, status, seed,
                           created_at_ms, owner, lease_until_ms, clock_ms, drives, trace_parent)
         VALUES (?1, ?2, ?3, ?4, 'running', ?5, ?6, ?7, ?8, ?6, 1, ?9)",
        args![
            new.id,
            new.workflow,
            new.component_digest,
            new.input,
            new.seed as i64,
            now,
            owner,
            now + lease_ms,
            new.trace_parent
        ],
    )?;
    set_tags(tx, &new.id, &new.tags)?;
    read_run(tx, &new.id)?.ok_or_else(|| StoreError::Corrupt(format!("run {} vanished", new.id)))
}

/// Sets tags of run `run_id`, each replacing the key's earlier value.
pub(super) fn set_tags<'a>(
    tx: &Tx<'_>,
    run_id: &str,
    tags: impl IntoIterator<Item = (&'a String, &'a String)>,
) -> Result<(), StoreError> {
    for (key, value) in tags {
        tx.exec(
            "tagging the run",
            "INSERT INTO run_tags (run_id, key, value) VALUES (?1, ?2, ?3)
             ON CONFLICT (run_id, key) DO UPDATE SET value = excluded.value",
            args![run_id, key, value],
        )?;
    }
    Ok(())
}

/// The tags of run `run_id`.
pub(super) fn read_tags(tx: &Tx<'_>, run_id: &str) -> Result<durable_core::tags::Tags, StoreError> {
    Ok(tx
        .all(
            "reading the run's tags",
            "SELECT key, value FROM run_tags WHERE run_id = ?1",
            args![run_id],
            |r| Ok((r.get::<String>(0)?, r.get::<String>(1)?)),
        )?
        .into_iter()
        .collect())
}

/// Ends run `run_id` with `status` and its output or error; releases it.
pub(super) fn finish(
    tx: &Tx<'_>,
    run_id: &str,
    status: &str,
    output: Option<&String>,
    error: Option<&String>,
    now: i64,
) -> Result<(), StoreError> {
    tx.exec(
        "finishing the run",
        "UPDATE runs SET status = ?2, output = ?3, error = ?4, finished_at_ms = ?5,
                         owner = NULL, lease_until_ms = NULL
         WHERE id = ?1",
        args![run_id, status, output, error, now],
    )?;
    end_family(tx, run_id, now)
}

pub(super) fn mark_cancelled(tx: &Tx<'_>, run_id: &str, now: i64) -> Result<(), StoreError> {
    if cancel_row(tx, run_id, now)? {
        end_family(tx, run_id, now)?;
    }
    Ok(())
}

/// Marks run `run_id` cancelled if it is open; whether it was.
fn cancel_row(tx: &Tx<'_>, run_id: &str, now: i64) -> Result<bool, StoreError> {
    let changed = tx.exec(
        "cancelling the run",
        "UPDATE runs SET status = 'cancelled', error = 'cancelled', finished_at_ms = ?2,
                         owner = NULL, lease_until_ms = NULL, waiting_for = NULL,
                         wake_at_ms = NULL, wait_event = NULL
         WHERE id = ?1 AND status IN ('queued', 'running', 'waiting')",
        args![run_id, now],
    )?;
    Ok(changed > 0)
}

/// What the end of run `run_id` does to its family: its parent, if it
/// waits, is due (it may be waiting for this child); its children still
/// open are cancelled, with theirs (nothing outlives its parent).
fn end_family(tx: &Tx<'_>, run_id: &str, now: i64) -> Result<(), StoreError> {
    let parent: Option<String> = tx
        .opt(
            "reading the run's parent",
            "SELECT parent_id FROM runs WHERE id = ?1",
            args![run_id],
            |r| r.get::<Option<String>>(0),
        )?
        .flatten();
    if let Some(parent) = parent {
        // The parent's row is locked first: a parent parking on its
        // children right now (which locks it) either sees this end, or has
        // parked when this looks, never neither (PostgreSQL reads without
        // waiting for a transaction that has not committed).
        let status: Option<String> = tx.opt(
            "reading the parent",
            "SELECT status FROM runs WHERE id = ?1 /*FOR UPDATE*/",
            args![parent],
            |r| r.get(0),
        )?;
        if status.as_deref() == Some("waiting") {
            tx.exec(
                "waking the parent",
                "UPDATE runs SET wake_at_ms = ?2 WHERE id = ?1",
                args![parent, now],
            )?;
            tx.notify(&parent)?;
        }
    }
    cancel_descendants(tx, run_id, now)
}

/// Asks run `run_id` and its open descendants to stop: a run nobody drives
/// is cancelled at once, a driven one at its driver's next durable call
/// (whose end then cancels its own children).
pub(super) fn cancel_tree(tx: &Tx<'_>, run_id: &str, now: i64) -> Result<(), StoreError> {
    if request_cancel(tx, run_id, now)? {
        mark_cancelled(tx, run_id, now)?;
    }
    Ok(())
}

/// Requests the cancel of open run `run_id`; whether nobody drives it (so
/// it can be cancelled at once).
fn request_cancel(tx: &Tx<'_>, run_id: &str, now: i64) -> Result<bool, StoreError> {
    tx.exec(
        "requesting the cancel",
        "UPDATE runs SET cancel_requested_at_ms = coalesce(cancel_requested_at_ms, ?2)
         WHERE id = ?1 AND status IN ('queued', 'running', 'waiting')",
        args![run_id, now],
    )?;
    let row: Option<(Option<String>, Option<i64>)> = tx.opt(
        "reading the run's owner",
        "SELECT owner, lease_until_ms FROM runs
         WHERE id = ?1 AND status IN ('queued', 'running', 'waiting')",
        args![run_id],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    Ok(row.is_some_and(|(owner, lease)| owner_is_gone(owner.as_deref(), lease, now)))
}

fn cancel_descendants(tx: &Tx<'_>, run_id: &str, now: i64) -> Result<(), StoreError> {
    let mut todo = vec![run_id.to_string()];
    while let Some(id) = todo.pop() {
        let children: Vec<String> = tx.all(
            "listing the run's children",
            "SELECT id FROM runs
             WHERE parent_id = ?1 AND status IN ('queued', 'running', 'waiting')",
            args![id],
            |r| r.get(0),
        )?;
        for child in children {
            if request_cancel(tx, &child, now)? && cancel_row(tx, &child, now)? {
                todo.push(child);
            }
        }
    }
    Ok(())
}

/// Checks that `owner` still owns the run in drive `drive` (the fence
/// token: a later claim, even by the same owner, makes an older drive's
/// writes fail) and extends its lease when half of it has passed (most
/// commits then write no run row at all); returns whether a cancel was
/// requested.
pub(super) fn renew(
    tx: &Tx<'_>,
    run_id: &str,
    owner: &str,
    drive: u32,
    now: i64,
    lease_ms: i64,
) -> Result<bool, StoreError> {
    /// Owner, lease expiry, cancel request, drive count.
    type LeaseRow = (Option<String>, Option<i64>, Option<i64>, u32);
    let row: Option<LeaseRow> = tx.opt(
        "checking the lease",
        "SELECT owner, lease_until_ms, cancel_requested_at_ms, drives FROM runs
         WHERE id = ?1 /*FOR UPDATE*/",
        args![run_id],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
    )?;
    let lost = || StoreError::LeaseLost {
        run: run_id.to_string(),
    };
    let Some((current, lease, cancel, drives)) = row else {
        return Err(lost());
    };
    if current.as_deref() != Some(owner) || drives != drive {
        return Err(lost());
    }
    if lease.is_none_or(|l| l - now < lease_ms / 2) {
        tx.exec(
            "renewing the lease",
            "UPDATE runs SET lease_until_ms = ?2 WHERE id = ?1",
            args![run_id, now + lease_ms],
        )?;
    }
    Ok(cancel.is_some())
}

/// [`renew`], then the run's switch to a new component if one is pending:
/// how every write of a drive begins. Returns whether a cancel was requested.
pub(super) fn renew_and_switch(
    tx: &Tx<'_>,
    run_id: &str,
    owner: &str,
    drive: u32,
    switch: Option<&ComponentSwitch>,
    now: i64,
    lease_ms: i64,
) -> Result<bool, StoreError> {
    let cancel = renew(tx, run_id, owner, drive, now, lease_ms)?;
    if let Some(switch) = switch {
        switch_component(tx, run_id, switch, drive, now)?;
    }
    Ok(cancel)
}

pub(super) fn insert_step(
    tx: &Tx<'_>,
    run_id: &str,
    record: &StepRecord,
) -> Result<(), StoreError> {
    tx.exec(
        "committing a step",
        "INSERT INTO steps (run_id, key, parent, position, name, input_digest, outcome, value,
                            attempts, started_at_ms, finished_at_ms, drive, batch, input)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
        args![
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
            record.finished_at_ms,
            record.drive,
            record.batch,
            record.input
        ],
    )?;
    Ok(())
}

pub(super) fn insert_output(
    tx: &Tx<'_>,
    run_id: &str,
    lines: &[OutputLine],
) -> Result<(), StoreError> {
    for l in lines {
        tx.exec(
            "storing guest output",
            "INSERT INTO output (run_id, key, drive, at_ms, kind, line) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            args![run_id, l.key, l.drive, l.at_ms, l.kind, l.line],
        )?;
    }
    Ok(())
}

pub(super) fn switch_component(
    tx: &Tx<'_>,
    run_id: &str,
    switch: &ComponentSwitch,
    drive: u32,
    now: i64,
) -> Result<(), StoreError> {
    const WHAT: &str = "switching the run's component";
    insert_component(tx, &switch.digest, &switch.bytes, None, now)?;
    // The switch is kept for people reading the run: which code drove it
    // when, and whether history was superseded to make it fit.
    tx.exec(
        WHAT,
        "INSERT INTO component_switches (run_id, drive, at_ms, from_digest, to_digest, forced_from)
             SELECT id, ?2, ?3, component_digest, ?4, ?5 FROM runs WHERE id = ?1
         ON CONFLICT (run_id, drive) DO NOTHING",
        args![run_id, drive, now, switch.digest, switch.forced_from],
    )?;
    tx.exec(
        WHAT,
        "UPDATE runs SET component_digest = ?2 WHERE id = ?1",
        args![run_id, switch.digest],
    )?;
    Ok(())
}

pub(super) fn insert_attempt(
    tx: &Tx<'_>,
    run_id: &str,
    a: &AttemptRecord,
) -> Result<(), StoreError> {
    tx.exec(
        "recording an attempt",
        "INSERT INTO attempts (run_id, key, attempt, outcome, value, started_at_ms, finished_at_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        args![
            run_id,
            a.key,
            a.attempt,
            a.outcome.kind(),
            a.outcome.payload(),
            a.started_at_ms,
            a.finished_at_ms
        ],
    )?;
    Ok(())
}

/// Stores a component once per digest; it keeps the first workflow name
/// it is stored with (`name`). Returns the name it has.
pub(super) fn insert_component(
    tx: &Tx<'_>,
    digest: &str,
    bytes: &[u8],
    name: Option<&str>,
    now: i64,
) -> Result<Option<String>, StoreError> {
    // Stored once per digest: look before binding megabytes for nothing.
    let known: Option<Option<String>> = tx.opt(
        "looking up the component",
        "SELECT name FROM components WHERE digest = ?1",
        args![digest],
        |r| r.get(0),
    )?;
    match known {
        Some(Some(kept)) => return Ok(Some(kept)),
        Some(None) if name.is_some() => {
            tx.exec(
                "naming the component",
                "UPDATE components SET name = ?2 WHERE digest = ?1 AND name IS NULL",
                args![digest, name],
            )?;
        }
        Some(None) => {}
        None => {
            tx.exec(
                "storing the component",
                // Another writer or host may store the same component meanwhile.
                "INSERT INTO components (digest, bytes, added_at_ms, name) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT DO NOTHING",
                args![digest, bytes, now, name],
            )?;
        }
    }
    tx.one(
        "reading the component's name",
        "SELECT name FROM components WHERE digest = ?1",
        args![digest],
        |r| r.get(0),
    )
}

pub(super) fn read_run(tx: &Tx<'_>, run_id: &str) -> Result<Option<RunRecord>, StoreError> {
    tx.opt(
        "reading the run",
        &format!("SELECT {RUN_COLUMNS} FROM runs WHERE id = ?1"),
        args![run_id],
        run_from_row,
    )?
    .transpose()
}

/// The columns [`run_from_row`] reads, in order.
/// How many columns [`RUN_COLUMNS`] has: a query may select more after them.
pub(super) const RUN_COLUMN_COUNT: usize = 21;

pub(super) const RUN_COLUMNS: &str = "id, workflow, component_digest, input, status, output, error, seed, \
     created_at_ms, finished_at_ms, clock_ms, drives, cancel_requested_at_ms, forked_from, \
     waiting_for, wake_at_ms, wait_event, parent_id, parent_key, queue, trace_parent";

pub(super) fn run_from_row(r: &Row<'_>) -> Result<Result<RunRecord, StoreError>, ColumnError> {
    let status: String = r.get(4)?;
    let Some(status) = RunStatus::parse_name(&status) else {
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
        seed: r.get::<i64>(7)? as u64,
        created_at_ms: r.get(8)?,
        finished_at_ms: r.get(9)?,
        clock_ms: r.get(10)?,
        drives: r.get(11)?,
        cancel_requested: r.get::<Option<i64>>(12)?.is_some(),
        forked_from: r.get(13)?,
        waiting_for: r.get(14)?,
        wake_at_ms: r.get(15)?,
        wait_event: r.get(16)?,
        parent: r.get(17)?,
        parent_key: r.get(18)?,
        queue: r.get(19)?,
        trace_parent: r.get(20)?,
    }))
}

pub(super) fn read_history(tx: &Tx<'_>, run_id: &str) -> Result<Vec<StepRecord>, StoreError> {
    let rows = tx.all(
        "reading the history",
        "SELECT key, parent, position, name, input_digest, outcome, value, attempts,
                started_at_ms, finished_at_ms, drive, batch, input
         FROM steps WHERE run_id = ?1",
        args![run_id],
        |r| {
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
                    drive: r.get(10)?,
                    batch: r.get(11)?,
                    input: r.get(12)?,
                },
                kind,
                value,
            ))
        },
    )?;
    let mut out = Vec::new();
    for (mut rec, kind, value) in rows {
        rec.outcome = Outcome::from_parts(&kind, value)
            .ok_or_else(|| StoreError::Corrupt(format!("step {} has outcome {kind:?}", rec.key)))?;
        out.push(rec);
    }
    Ok(out)
}

/// Moves the records (and failed attempts) of these steps to the
/// superseded tables.
pub(super) fn supersede_steps(
    tx: &Tx<'_>,
    run_id: &str,
    keys: &[String],
    drive: u32,
    now: i64,
) -> Result<(), StoreError> {
    const WHAT: &str = "superseding a step record";
    for key in keys {
        tx.exec(
            WHAT,
            "INSERT INTO superseded_steps (run_id, key, parent, position, name, input_digest,
                        outcome, value, attempts, started_at_ms, finished_at_ms, drive, batch,
                        superseded_at_ms, superseded_in, input)
                 SELECT run_id, key, parent, position, name, input_digest, outcome, value, attempts,
                        started_at_ms, finished_at_ms, drive, batch,
                        CAST(?3 AS BIGINT), CAST(?4 AS BIGINT), input
                 FROM steps WHERE run_id = ?1 AND key = ?2",
            args![run_id, key, now, drive],
        )?;
        tx.exec(
            WHAT,
            "DELETE FROM steps WHERE run_id = ?1 AND key = ?2",
            args![run_id, key],
        )?;
        tx.exec(
            WHAT,
            "INSERT INTO superseded_attempts
                 SELECT run_id, key, attempt, outcome, value, started_at_ms, finished_at_ms,
                        CAST(?3 AS BIGINT)
                 FROM attempts WHERE run_id = ?1 AND key = ?2",
            args![run_id, key, now],
        )?;
        tx.exec(
            WHAT,
            "DELETE FROM attempts WHERE run_id = ?1 AND key = ?2",
            args![run_id, key],
        )?;
    }
    Ok(())
}

/// For each step of the run with failed attempts, the number of the last.
pub(super) fn read_attempt_counts(
    tx: &Tx<'_>,
    run_id: &str,
) -> Result<Vec<(String, u32)>, StoreError> {
    tx.all(
        "reading attempts",
        "SELECT key, max(attempt) FROM attempts WHERE run_id = ?1 GROUP BY key",
        args![run_id],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
}

/// Bytes the run has recorded: outcomes, failed attempts, guest output.
pub(super) fn read_recorded_bytes(tx: &Tx<'_>, run_id: &str) -> Result<u64, StoreError> {
    tx.one(
        "measuring the run's history",
        "SELECT (SELECT coalesce(sum(octet_length(value)), 0) FROM steps WHERE run_id = ?1)
              + (SELECT coalesce(sum(octet_length(value)), 0) FROM attempts WHERE run_id = ?1)
              + (SELECT coalesce(sum(octet_length(line)), 0) FROM output WHERE run_id = ?1)",
        args![run_id],
        |r| r.get::<i64>(0),
    )
    .map(|n| n.max(0) as u64)
}
