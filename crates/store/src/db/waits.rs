//! Runs that wait: durable sleeps, events sent to runs and consumed by
//! `await-event`, and parking a run so that it holds nothing until it is
//! due.
//!
//! A parked run has status `waiting`, no owner, and `wake_at_ms` (its
//! timer, or its event wait's deadline; `NULL` when only an event wakes
//! it). `send_event` makes a run waiting for that event due at once. Due
//! runs are claimed like interrupted ones and replayed.

use crate::sql::{Tx, args};
use durable_core::same_json;

use super::rows::{insert_step, renew_and_switch};
use super::{ComponentSwitch, Outcome, RunStatus, StepRecord, Store, StoreError};
use crate::owner::Owner;
#[allow(unused_imports)]
use durable_core::views::*;

impl Store {
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
        let lease_ms = self.lease_ms;
        let (run_id, owner) = (run_id.to_string(), owner.to_string());
        self.writer_for(&run_id)
            .transact(move |tx| {
                let now = tx.now_ms();
                let cancel =
                    renew_and_switch(tx, &run_id, &owner, drive, switch.as_ref(), now, lease_ms)?;
                if let Some(record) = &record {
                    insert_step(tx, &run_id, record)?;
                }
                if wake_at_ms <= now {
                    return Ok(SleepOutcome::Over);
                }
                if cancel {
                    return Ok(SleepOutcome::Cancelled);
                }
                park(tx, &run_id, &Wait::Until(wake_at_ms), now)?;
                Ok(SleepOutcome::Parked)
            })
            .await
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
        let lease_ms = self.lease_ms;
        let (run_id, owner) = (run_id.to_string(), owner.to_string());
        let AwaitCall {
            mut record,
            name,
            timeout_ms,
            switch,
        } = call;
        self.writer_for(&run_id)
            .transact(move |tx| {
                let now = tx.now_ms();
                let cancel =
                    renew_and_switch(tx, &run_id, &owner, drive, switch.as_ref(), now, lease_ms)?;
                let event: Option<(i64, String)> = tx.opt(
                    "looking for an event",
                    "SELECT seq, payload FROM events
                     WHERE run_id = ?1 AND name = ?2 AND consumed_by IS NULL
                     ORDER BY seq LIMIT 1",
                    args![run_id, name],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )?;
                // The wait ends: its record starts when the wait began (a
                // parked wait's first call), not when this drive took it up.
                let end_wait = |tx: &Tx<'_>, record: &mut StepRecord| {
                    let since: Option<i64> = tx
                        .opt(
                            "reading a wait",
                            "SELECT since_ms FROM waits WHERE run_id = ?1 AND key = ?2",
                            args![run_id, record.key],
                            |r| r.get::<Option<i64>>(0),
                        )?
                        .flatten();
                    record.started_at_ms = since.unwrap_or(record.started_at_ms);
                    tx.exec(
                        "ending a wait",
                        "DELETE FROM waits WHERE run_id = ?1 AND key = ?2",
                        args![run_id, record.key],
                    )
                };
                if let Some((seq, payload)) = event {
                    tx.exec(
                        "consuming an event",
                        "UPDATE events SET consumed_by = ?2 WHERE seq = ?1",
                        args![seq, record.key],
                    )?;
                    end_wait(tx, &mut record)?;
                    record.outcome = Outcome::Ok(payload.clone());
                    record.finished_at_ms = now;
                    insert_step(tx, &run_id, &record)?;
                    return Ok(AwaitOutcome::Event(payload));
                }
                // The deadline is fixed by the first call, across crashes.
                let first = timeout_ms.map(|t| now.saturating_add(t.min(i64::MAX as u64) as i64));
                tx.exec(
                    "recording a wait",
                    "INSERT INTO waits (run_id, key, deadline_ms, since_ms)
                     VALUES (?1, ?2, ?3, ?4) ON CONFLICT DO NOTHING",
                    args![run_id, record.key, first, now],
                )?;
                let deadline: Option<i64> = tx.one(
                    "reading a wait",
                    "SELECT deadline_ms FROM waits WHERE run_id = ?1 AND key = ?2",
                    args![run_id, record.key],
                    |r| r.get(0),
                )?;
                if let (Some(d), Some(t)) = (deadline, timeout_ms)
                    && d <= now
                {
                    end_wait(tx, &mut record)?;
                    record.outcome = Outcome::TimedOut(t);
                    record.finished_at_ms = now;
                    insert_step(tx, &run_id, &record)?;
                    return Ok(AwaitOutcome::TimedOut);
                }
                if cancel {
                    return Ok(AwaitOutcome::Cancelled);
                }
                park(
                    tx,
                    &run_id,
                    &Wait::Event {
                        name: name.clone(),
                        deadline_ms: deadline,
                    },
                    now,
                )?;
                Ok(AwaitOutcome::Parked)
            })
            .await
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
        let (run_id, name) = (run_id.to_string(), name.to_string());
        let (event_id, payload) = (event_id.map(str::to_string), payload.to_string());
        self.writer_for(&run_id)
            .transact(move |tx| {
                // The run's row is locked first, as every write of a run
                // does (see the writer): the event's insert and the wake-up
                // then wait for nothing another transaction could hold
                // while it waits for this one.
                let status: String = tx
                    .opt(
                        "reading the run",
                        "SELECT status FROM runs WHERE id = ?1 /*FOR UPDATE*/",
                        args![run_id],
                        |r| r.get(0),
                    )?
                    .ok_or_else(|| StoreError::RunNotFound(run_id.clone()))?;
                let status = RunStatus::parse_name(&status).ok_or_else(|| {
                    StoreError::Corrupt(format!("run {run_id} has status {status:?}"))
                })?;
                // An event id names one event: its name and payload. The
                // same event again (a retried send, even after the run
                // ended) changes nothing; anything else under its id is a
                // mistake, refused rather than dropped.
                if let Some(eid) = &event_id {
                    let stored: Option<(String, String)> = tx.opt(
                        "reading the event",
                        "SELECT name, payload FROM events WHERE run_id = ?1 AND event_id = ?2",
                        args![run_id, eid],
                        |r| Ok((r.get(0)?, r.get(1)?)),
                    )?;
                    if let Some((stored_name, stored_payload)) = stored {
                        if stored_name != name || !same_json(&stored_payload, &payload) {
                            return Err(StoreError::EventIdTaken {
                                run: run_id.clone(),
                                event_id: eid.clone(),
                            });
                        }
                        return Ok(Sent::Duplicate);
                    }
                }
                if !status.is_open() {
                    return Err(StoreError::AlreadyFinished {
                        run: run_id.clone(),
                        status,
                    });
                }
                let now = tx.now_ms();
                // The run's row is locked: no other send of this id can
                // come between the look above and this insert.
                let seq: i64 = tx.one(
                    "storing the event",
                    "INSERT INTO events (run_id, name, event_id, payload, sent_at_ms)
                     VALUES (?1, ?2, ?3, ?4, ?5) RETURNING seq",
                    args![run_id, name, event_id, payload, now],
                    |r| r.get::<i64>(0),
                )?;
                tx.exec(
                    "waking the run",
                    // A run waits for the event by itself (`await-event`)
                    // or among handles (a wait with the event's name).
                    "UPDATE runs SET wake_at_ms = ?3
                     WHERE id = ?1 AND status = 'waiting'
                       AND (wait_event = ?2
                            OR EXISTS (SELECT 1 FROM waits w WHERE w.run_id = ?1 AND w.name = ?2))",
                    args![run_id, name, now],
                )?;
                tx.notify(&run_id)?;
                Ok(Sent::Stored { seq })
            })
            .await
    }

    /// Whether run `run_id` can be taken up now: `Some(None)` when it is
    /// due (or running and unowned), `Some(Some(t))` when it waits until
    /// `t` (`i64::MAX`: for an event only), `None` when it has ended or a
    /// live process drives it.
    pub async fn due(&self, run_id: &str) -> Result<Option<Option<i64>>, StoreError> {
        let run_id = run_id.to_string();
        self.read(move |tx| {
            /// Status, wake-up time, owner, lease expiry.
            type DueRow = (String, Option<i64>, Option<String>, Option<i64>);
            let row: Option<DueRow> = tx.opt(
                "reading the run",
                "SELECT status, wake_at_ms, owner, lease_until_ms FROM runs WHERE id = ?1",
                args![run_id],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )?;
            let now = tx.now_ms();
            Ok(match row {
                Some((status, wake, _, _)) if status == "waiting" => match wake {
                    Some(t) if t <= now => Some(None),
                    Some(t) => Some(Some(t)),
                    None => Some(Some(i64::MAX)),
                },
                Some((status, _, owner, lease)) if status == "running" => {
                    super::rows::owner_is_gone(owner.as_deref(), lease, now).then_some(None)
                }
                _ => None,
            })
        })
        .await
    }
}

/// Parks the run: waiting, unowned, due at the wait's time (at once if an
/// awaited event is already there).
fn park(tx: &Tx<'_>, run_id: &str, wait: &Wait, now: i64) -> Result<(), StoreError> {
    let mut wake = wait.wake_at();
    if let Some(name) = wait.event() {
        let waiting = tx
            .opt(
                "looking for an event",
                "SELECT 1 FROM events WHERE run_id = ?1 AND name = ?2 AND consumed_by IS NULL LIMIT 1",
                args![run_id, name],
                |_| Ok(()),
            )?
            .is_some();
        if waiting {
            wake = Some(now);
        }
    }
    tx.exec(
        "parking the run",
        "UPDATE runs SET status = 'waiting', waiting_for = ?2, wake_at_ms = ?3, wait_event = ?4,
                         owner = NULL, lease_until_ms = NULL
         WHERE id = ?1",
        args![run_id, wait.describe(), wake, wait.event()],
    )?;
    // Its time (or its event) may come before any other host's next look.
    tx.notify(run_id)?;
    Ok(())
}
