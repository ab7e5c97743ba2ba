//! Flow control: queues' limits, runs started in a queue, and their
//! admission.
//!
//! Admission is the database's. A queue's row is locked (`FOR UPDATE` on
//! PostgreSQL; SQLite has one writer) by every transaction that starts a
//! run in it or admits runs from it, and the admission counts what it
//! admits against in that transaction: several hosts never overshoot a
//! limit. A limit counts the runs admitted and not ended (running or
//! waiting): a run keeps its slot while it sleeps or awaits, so runs with
//! one key never interleave, and a dead host's runs keep theirs until
//! another host has taken them over (after the lease) and ended them.

use std::collections::HashMap;

use durable_core::queues::{
    Admission, Debounce, Held, QueueConfig, QueuePosition, QueueState, QueuedStart, Rate,
};

use super::rows::{ComponentToStore, insert_component, read_run};
use super::{Creation, NewRun, RunRecord, Store, StoreError};
use crate::owner::Owner;
use crate::sql::{ColumnError, Row, Tx, args};

/// The columns [`queue_row`] reads.
const QUEUE_COLUMNS: &str = "name, concurrency, concurrency_key, per_key_concurrency, \
     rate_count, rate_per_ms, burst, milli_tokens, refilled_at_ms";

/// Runs admitted and not ended: what the limits count.
const ACTIVE: &str = "status IN ('running', 'waiting')";

/// A queue as stored: its limits and its rate's bucket.
struct QueueRow {
    config: QueueConfig,
    /// Thousandths of a token in the bucket at `refilled_at_ms` (`None`:
    /// never drawn from, so full).
    milli_tokens: Option<i64>,
    refilled_at_ms: Option<i64>,
}

impl QueueRow {
    /// The bucket now: thousandths of a token, and the time from which
    /// what is not a whole thousandth yet keeps refilling. `None` without
    /// a rate.
    fn bucket(&self, now: i64) -> Option<(i64, i64)> {
        let rate = self.config.rate?;
        let full = i64::from(self.config.burst) * 1000;
        let (have, since) = match (self.milli_tokens, self.refilled_at_ms) {
            (Some(t), Some(at)) => (t.min(full), at.min(now)),
            _ => return Some((full, now)),
        };
        let per_token_ms = rate.per_ms as i128;
        let elapsed = i128::from(now - since);
        let gained = elapsed * i128::from(rate.count) * 1000 / per_token_ms;
        if i128::from(have) + gained >= i128::from(full) {
            return Some((full, now));
        }
        // Only the time the gain used up moves on: no fraction is lost by
        // looking often.
        let used = gained * per_token_ms / (i128::from(rate.count) * 1000);
        Some((have + gained as i64, since + used as i64))
    }

    /// When the bucket, holding `milli` thousandths at `at`, has a whole
    /// token.
    fn token_at(&self, milli: i64, at: i64) -> Option<i64> {
        let rate = self.config.rate?;
        let missing = i128::from((1000 - milli).max(0));
        let per = i128::from(rate.count) * 1000;
        let ms = (missing * rate.per_ms as i128 + per - 1) / per;
        Some(at.saturating_add(ms.min(i128::from(i64::MAX)) as i64))
    }
}

fn queue_row(r: &Row<'_>) -> Result<QueueRow, ColumnError> {
    let count = |v: Option<i64>| v.map(|n| n.clamp(0, i64::from(u32::MAX)) as u32);
    let rate = match (r.get::<Option<i64>>(4)?, r.get::<Option<i64>>(5)?) {
        (Some(count), Some(per_ms)) if count > 0 && per_ms > 0 => Some(Rate {
            count: count.min(i64::from(u32::MAX)) as u32,
            per_ms,
        }),
        _ => None,
    };
    Ok(QueueRow {
        config: QueueConfig {
            name: r.get(0)?,
            concurrency: count(r.get(1)?),
            concurrency_key: r.get(2)?,
            per_key_concurrency: count(r.get(3)?),
            rate,
            burst: count(Some(r.get::<i64>(6)?)).unwrap_or(1).max(1),
        },
        milli_tokens: r.get(7)?,
        refilled_at_ms: r.get(8)?,
    })
}

/// Queue `name`'s row, locked for this transaction on PostgreSQL.
fn lock_queue(tx: &Tx<'_>, name: &str) -> Result<Option<QueueRow>, StoreError> {
    tx.opt(
        "reading the queue",
        &format!("SELECT {QUEUE_COLUMNS} FROM queues WHERE name = ?1 /*FOR UPDATE*/"),
        args![name],
        queue_row,
    )
}

/// Runs of `queue` admitted and not ended.
fn active(tx: &Tx<'_>, queue: &str) -> Result<u64, StoreError> {
    let n: i64 = tx.one(
        "counting the queue's runs",
        &format!("SELECT count(*) FROM runs WHERE queue = ?1 AND {ACTIVE}"),
        args![queue],
        |r| r.get(0),
    )?;
    Ok(n.max(0) as u64)
}

/// Runs of `queue` admitted and not ended, by key.
fn active_by_key(tx: &Tx<'_>, queue: &str) -> Result<HashMap<String, u64>, StoreError> {
    let rows = tx.all(
        "counting the queue's runs by key",
        &format!(
            "SELECT queue_key, count(*) FROM runs
             WHERE queue = ?1 AND {ACTIVE} AND queue_key IS NOT NULL GROUP BY queue_key"
        ),
        args![queue],
        |r| Ok((r.get::<String>(0)?, r.get::<i64>(1)?)),
    )?;
    Ok(rows
        .into_iter()
        .map(|(k, n)| (k, n.max(0) as u64))
        .collect())
}

/// Inserts run `new` queued: in `start.queue` (which must exist; its key,
/// priority and place in start order are fixed now), and/or held until
/// `debounce`'s window ends. With a debounce, `None` when the workflow has
/// a pending run with that key already (nothing is inserted).
fn insert_queued_run(
    tx: &Tx<'_>,
    new: &NewRun,
    start: Option<&QueuedStart>,
    debounce: Option<&Debounce>,
    component: ComponentToStore,
    now: i64,
) -> Result<Option<RunRecord>, StoreError> {
    let (mut key, mut seq) = (None, None);
    if let Some(start) = start {
        let queue = lock_queue(tx, &start.queue)?
            .ok_or_else(|| StoreError::QueueNotFound(start.queue.clone()))?;
        key = start
            .key
            .clone()
            .or_else(|| queue.config.key_of(&new.input));
        if let Some(k) = &key {
            durable_core::queues::validate_key("the run's concurrency key", k)
                .map_err(StoreError::Config)?;
        }
        seq = Some(tx.one(
            "taking a place in the queue",
            "UPDATE queues SET next_seq = next_seq + 1 WHERE name = ?1 RETURNING next_seq",
            args![start.queue],
            |r| r.get::<i64>(0),
        )?);
    }
    if component == ComponentToStore::Unknown {
        insert_component(
            tx,
            &new.component_digest,
            &new.component,
            Some(&new.workflow),
            now,
        )?;
    }
    let inserted = tx.exec(
        "creating the queued run",
        "INSERT INTO runs (id, workflow, component_digest, input, status, seed, created_at_ms,
                           clock_ms, drives, queue, queue_key, priority, queue_seq,
                           debounce_key, not_before_ms, trace_parent)
         VALUES (?1, ?2, ?3, ?4, 'queued', ?5, ?6, ?6, 0, ?7, ?8, ?9, ?10, ?11, ?12, ?13)
         ON CONFLICT (workflow, debounce_key)
             WHERE status = 'queued' AND debounce_key IS NOT NULL DO NOTHING",
        args![
            new.id,
            new.workflow,
            new.component_digest,
            new.input,
            new.seed as i64,
            now,
            start.map(|s| s.queue.clone()),
            key,
            start.map_or(0, |s| i64::from(s.priority)),
            seq,
            debounce.map(|d| d.key.clone()),
            debounce.map(|d| now + d.ms),
            new.trace_parent
        ],
    )?;
    if inserted == 0 {
        return Ok(None);
    }
    super::rows::set_tags(tx, &new.id, &new.tags)?;
    read_run(tx, &new.id)?
        .map(Some)
        .ok_or_else(|| StoreError::Corrupt(format!("run {} vanished", new.id)))
}

/// The pending run of `workflow` with debounce key `key`, locked; its
/// input replaced by `input` when `last_wins`.
fn debounced(
    tx: &Tx<'_>,
    workflow: &str,
    debounce: &Debounce,
    input: &str,
) -> Result<Option<RunRecord>, StoreError> {
    let pending: Option<String> = tx.opt(
        "finding the pending run",
        "SELECT id FROM runs WHERE workflow = ?1 AND debounce_key = ?2 AND status = 'queued'
         /*FOR UPDATE*/",
        args![workflow, debounce.key],
        |r| r.get(0),
    )?;
    let Some(id) = pending else {
        return Ok(None);
    };
    if debounce.last_wins {
        tx.exec(
            "replacing the pending run's input",
            "UPDATE runs SET input = ?2 WHERE id = ?1",
            args![id, input],
        )?;
    }
    read_run(tx, &id)
}

/// Admits at most `max` runs of queue `name`; adds them to `out`.
fn admit_from(
    tx: &Tx<'_>,
    name: &str,
    max: usize,
    now: i64,
    out: &mut Admission,
) -> Result<(), StoreError> {
    let Some(queue) = lock_queue(tx, name)? else {
        return Ok(());
    };
    let mut room = max as u64;
    if let Some(limit) = queue.config.concurrency {
        room = room.min(u64::from(limit).saturating_sub(active(tx, name)?));
    }
    let bucket = queue.bucket(now);
    if let Some((milli, _)) = bucket {
        room = room.min((milli / 1000).max(0) as u64);
    }
    if room == 0 {
        if let Some((milli, at)) = bucket
            && milli < 1000
        {
            note_next(out, queue.token_at(milli, at));
        }
        return Ok(());
    }
    let per_key = queue.config.per_key_concurrency;
    let mut by_key = match per_key {
        Some(_) => active_by_key(tx, name)?,
        None => HashMap::new(),
    };
    // Runs whose key is full are passed over: look further than `room`
    // (bounded; runs further back wait for a later look).
    let scan = if per_key.is_some() {
        room.saturating_mul(4).saturating_add(100)
    } else {
        room
    };
    // Runs whose key is full now are left out by the query (one key's
    // backlog never hides another key's runs); those whose key fills up
    // within this admission are passed over below.
    let candidates = tx.all(
        "listing the queue's runs",
        "SELECT id, queue_key FROM runs WHERE queue = ?1 AND status = 'queued'
           AND (not_before_ms IS NULL OR not_before_ms <= ?3)
           AND (CAST(?4 AS BIGINT) IS NULL OR queue_key IS NULL OR queue_key NOT IN (
                 SELECT queue_key FROM runs
                 WHERE queue = ?1 AND status IN ('running', 'waiting') AND queue_key IS NOT NULL
                 GROUP BY queue_key HAVING count(*) >= CAST(?4 AS BIGINT)))
         ORDER BY priority DESC, queue_seq LIMIT ?2",
        args![name, scan as i64, now, per_key.map(i64::from)],
        |r| Ok((r.get::<String>(0)?, r.get::<Option<String>>(1)?)),
    )?;
    let mut admitted = 0u64;
    for (id, key) in candidates {
        if admitted == room {
            break;
        }
        if let (Some(limit), Some(key)) = (per_key, &key) {
            let n = by_key.entry(key.clone()).or_insert(0);
            if *n >= u64::from(limit) {
                continue;
            }
            *n += 1;
        }
        let changed = tx.exec(
            "admitting the run",
            "UPDATE runs SET status = 'running', owner = NULL, lease_until_ms = NULL
             WHERE id = ?1 AND status = 'queued'",
            args![id],
        )?;
        if changed > 0 {
            admitted += 1;
            out.admitted.push(id);
        }
    }
    if let Some((milli, at)) = bucket {
        let left = milli - (admitted as i64) * 1000;
        tx.exec(
            "drawing from the queue's rate",
            "UPDATE queues SET milli_tokens = ?2, refilled_at_ms = ?3 WHERE name = ?1",
            args![name, left, at],
        )?;
        if left < 1000 {
            note_next(out, queue.token_at(left, at));
        }
    }
    Ok(())
}

fn note_next(out: &mut Admission, at: Option<i64>) {
    if let Some(at) = at {
        out.next_at_ms = Some(out.next_at_ms.map_or(at, |t| t.min(at)));
    }
}

impl Store {
    /// Creates queue `config.name`, or changes its limits (its queued runs,
    /// its order and its rate's bucket stay).
    ///
    /// # Errors
    /// [`StoreError::Config`] when the limits are invalid; [`StoreError`]
    /// when the transaction fails.
    pub async fn put_queue(&self, config: QueueConfig) -> Result<(), StoreError> {
        config.validate().map_err(StoreError::Config)?;
        self.writer_for("$queues")
            .transact(move |tx| {
                let now = tx.now_ms();
                let c = &config;
                let rate_count = c.rate.map(|r| i64::from(r.count));
                let rate_per_ms = c.rate.map(|r| r.per_ms);
                tx.exec(
                    "saving the queue",
                    "INSERT INTO queues (name, concurrency, concurrency_key, per_key_concurrency,
                                         rate_count, rate_per_ms, burst, updated_at_ms)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                     ON CONFLICT (name) DO UPDATE SET
                         concurrency = excluded.concurrency,
                         concurrency_key = excluded.concurrency_key,
                         per_key_concurrency = excluded.per_key_concurrency,
                         rate_count = excluded.rate_count,
                         rate_per_ms = excluded.rate_per_ms,
                         burst = excluded.burst,
                         updated_at_ms = excluded.updated_at_ms",
                    args![
                        c.name,
                        c.concurrency.map(i64::from),
                        c.concurrency_key,
                        c.per_key_concurrency.map(i64::from),
                        rate_count,
                        rate_per_ms,
                        i64::from(c.burst),
                        now
                    ],
                )?;
                Ok(())
            })
            .await
    }

    /// Every queue with its counts, by name.
    ///
    /// # Errors
    /// [`StoreError`] when the read fails.
    pub async fn queues(&self) -> Result<Vec<QueueState>, StoreError> {
        self.read(|tx| {
            let now = tx.now_ms();
            let rows = tx.all(
                "listing the queues",
                &format!("SELECT {QUEUE_COLUMNS} FROM queues ORDER BY name"),
                args![],
                queue_row,
            )?;
            let counts = tx.all(
                "counting the queues' runs",
                "SELECT queue, status, count(*) FROM runs
                 WHERE queue IS NOT NULL AND status IN ('queued', 'running', 'waiting')
                 GROUP BY queue, status",
                args![],
                |r| Ok((r.get::<String>(0)?, r.get::<String>(1)?, r.get::<i64>(2)?)),
            )?;
            Ok(rows
                .into_iter()
                .map(|q| {
                    let (mut queued, mut active) = (0, 0);
                    for (name, status, n) in &counts {
                        if *name == q.config.name {
                            match status.as_str() {
                                "queued" => queued += (*n).max(0) as u64,
                                _ => active += (*n).max(0) as u64,
                            }
                        }
                    }
                    QueueState {
                        tokens: q.bucket(now).map(|(m, _)| m as f64 / 1000.0),
                        config: q.config,
                        queued,
                        active,
                    }
                })
                .collect())
        })
        .await
    }

    /// Creates run `new.id` queued in `start.queue`: nobody drives it
    /// until an admission ([`Store::admit`]) lets it run. A run that has
    /// the id already is left as it is.
    ///
    /// # Errors
    /// [`StoreError::QueueNotFound`]; [`StoreError::Config`] for a
    /// priority above 9; [`StoreError`] when the transaction fails.
    pub async fn create_queued_run(
        &self,
        new: NewRun,
        start: QueuedStart,
    ) -> Result<Creation, StoreError> {
        if start.priority > durable_core::queues::MAX_PRIORITY {
            return Err(StoreError::Config(format!(
                "priority {} is out of range: 0 (the default) to {}",
                start.priority,
                durable_core::queues::MAX_PRIORITY
            )));
        }
        // Nobody owns a queued run: the owner is not written.
        let owner = Owner::current();
        self.start(
            new,
            &owner,
            move |tx, new, component, _owner, now, _lease| {
                insert_queued_run(tx, new, Some(&start), None, component, now)?
                    .ok_or_else(|| StoreError::Corrupt("a queued run was not inserted".into()))
            },
            |_, run, _, _, _| Ok(Creation::Existing(run)),
            Creation::Created,
            |c| matches!(c, Creation::Created(_)),
        )
        .await
    }

    /// Starts run `new.id` debounced: if `new.workflow` has a pending run
    /// with `debounce.key`, that run is the answer (`Existing`; its input
    /// replaced when the last start wins); otherwise `new` is created
    /// queued (in `start.queue`, if given) and held until `debounce.ms`
    /// have passed.
    ///
    /// # Errors
    /// [`StoreError::QueueNotFound`]; [`StoreError`] when the transaction
    /// fails.
    pub async fn create_debounced_run(
        &self,
        new: NewRun,
        debounce: Debounce,
        start: Option<QueuedStart>,
    ) -> Result<Creation, StoreError> {
        if debounce.ms < 0 {
            return Err(StoreError::Config(format!(
                "debounce ms {} is negative",
                debounce.ms
            )));
        }
        let workflow = new.workflow.clone();
        let input = new.input.clone();
        let id = new.id.clone();
        let owner = Owner::current();
        let made = self
            .start(
                new,
                &owner,
                move |tx, new, component, _owner, now, _lease| {
                    // Two starts at once on two hosts: one inserts, the other
                    // finds its run (the unique index makes it wait for it).
                    for _ in 0..2 {
                        if let Some(run) = debounced(tx, &workflow, &debounce, &input)? {
                            return Ok(run);
                        }
                        if let Some(run) = insert_queued_run(
                            tx,
                            new,
                            start.as_ref(),
                            Some(&debounce),
                            component,
                            now,
                        )? {
                            return Ok(run);
                        }
                    }
                    Err(StoreError::Transient(
                        "the pending debounced run changed while starting; try again".into(),
                    ))
                },
                |_, run, _, _, _| Ok(Creation::Existing(run)),
                Creation::Created,
                |c| matches!(c, Creation::Created(_)),
            )
            .await?;
        // The pending run the start joined is not one it created.
        Ok(match made {
            Creation::Created(run) if run.id != id => Creation::Existing(run),
            other => other,
        })
    }

    /// Admits what the queues' limits allow now, at most `max` runs, in
    /// priority order (start order within a priority): they become
    /// `running`, owned by nobody, for whoever takes them up (the caller
    /// at once). One transaction; each queue's row is locked while its
    /// runs are counted and admitted.
    ///
    /// # Errors
    /// [`StoreError`] when the transaction fails (nothing is admitted).
    pub async fn admit(&self, max: usize) -> Result<Admission, StoreError> {
        // Most looks find nothing queued: a read says so without taking
        // the writer (a server looks every poll).
        let any = self
            .read(|tx| {
                tx.opt(
                    "looking for queued runs",
                    "SELECT 1 FROM runs WHERE status = 'queued' LIMIT 1",
                    args![],
                    |_| Ok(()),
                )
            })
            .await?;
        if any.is_none() {
            return Ok(Admission::default());
        }
        self.writer_for("$queues")
            .transact(move |tx| {
                let now = tx.now_ms();
                let names = tx.all(
                    "listing the queues with queued runs",
                    "SELECT DISTINCT queue FROM runs WHERE status = 'queued' AND queue IS NOT NULL",
                    args![],
                    |r| r.get::<String>(0),
                )?;
                let mut out = Admission::default();
                for name in names {
                    let left = max.saturating_sub(out.admitted.len());
                    if left == 0 {
                        break;
                    }
                    admit_from(tx, &name, left, now, &mut out)?;
                }
                // Debounced runs in no queue: admitted when their window ends.
                let left = max.saturating_sub(out.admitted.len());
                let due = tx.all(
                    "listing the debounced runs that are due",
                    "SELECT id FROM runs WHERE status = 'queued' AND queue IS NULL
                       AND not_before_ms <= ?1 ORDER BY not_before_ms LIMIT ?2",
                    args![now, left as i64],
                    |r| r.get::<String>(0),
                )?;
                for id in due {
                    tx.exec(
                        "admitting the run",
                        "UPDATE runs SET status = 'running', owner = NULL, lease_until_ms = NULL
                         WHERE id = ?1 AND status = 'queued'",
                        args![id],
                    )?;
                    out.admitted.push(id);
                }
                let next: Option<i64> = tx
                    .opt(
                        "finding the next debounce window's end",
                        "SELECT min(not_before_ms) FROM runs WHERE status = 'queued'
                           AND not_before_ms > ?1",
                        args![now],
                        |r| r.get::<Option<i64>>(0),
                    )?
                    .flatten();
                note_next(&mut out, next);
                Ok(out)
            })
            .await
    }

    /// Where queued run `run_id` stands: `None` if it is not queued.
    ///
    /// # Errors
    /// [`StoreError`] when the read fails.
    pub async fn queue_position(&self, run_id: &str) -> Result<Option<QueuePosition>, StoreError> {
        let run_id = run_id.to_string();
        self.read(move |tx| position(tx, &run_id)).await
    }
}

/// Where queued run `run_id` stands: `None` if it is not queued.
pub(super) fn position(tx: &Tx<'_>, run_id: &str) -> Result<Option<QueuePosition>, StoreError> {
    let now = tx.now_ms();
    type Place = (Option<String>, Option<String>, i64, i64, Option<i64>);
    let place: Option<Place> = tx.opt(
        "reading the run's place",
        "SELECT queue, queue_key, priority, queue_seq, not_before_ms FROM runs
         WHERE id = ?1 AND status = 'queued'",
        args![run_id],
        |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get::<Option<i64>>(3)?.unwrap_or(0),
                r.get(4)?,
            ))
        },
    )?;
    let Some((queue, key, priority, seq, not_before_ms)) = place else {
        return Ok(None);
    };
    let debouncing = not_before_ms.is_some_and(|t| t > now);
    let Some(name) = queue.clone() else {
        return Ok(Some(QueuePosition {
            queue,
            not_before_ms,
            key,
            priority: 0,
            position: 0,
            held_by: if debouncing {
                Held::Debounce
            } else {
                Held::Nothing
            },
        }));
    };
    let ahead: i64 = tx.one(
        "counting the runs ahead",
        "SELECT count(*) FROM runs WHERE queue = ?1 AND status = 'queued'
           AND (priority > ?2 OR (priority = ?2 AND queue_seq < ?3))",
        args![name, priority, seq],
        |r| r.get(0),
    )?;
    let row = tx.opt(
        "reading the queue",
        &format!("SELECT {QUEUE_COLUMNS} FROM queues WHERE name = ?1"),
        args![name],
        queue_row,
    )?;
    let held_by = match &row {
        _ if debouncing => Held::Debounce,
        None => Held::Nothing,
        Some(q) => {
            let full = |limit: Option<u32>, n: u64| limit.is_some_and(|l| n >= u64::from(l));
            if full(q.config.concurrency, active(tx, &name)?) {
                Held::Concurrency
            } else if let (Some(_), Some(k)) = (q.config.per_key_concurrency, &key)
                && full(
                    q.config.per_key_concurrency,
                    active_by_key(tx, &name)?.get(k).copied().unwrap_or(0),
                )
            {
                Held::Key
            } else if q.bucket(now).is_some_and(|(m, _)| m < 1000) {
                Held::Rate
            } else if ahead > 0 {
                Held::Behind
            } else {
                Held::Nothing
            }
        }
    };
    Ok(Some(QueuePosition {
        queue,
        not_before_ms,
        key,
        priority: priority.clamp(0, 9) as u8,
        position: ahead.max(0) as u64,
        held_by,
    }))
}
