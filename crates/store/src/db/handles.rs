//! Handles of a workflow (WIT 0.2.0): child workflows, event waits started
//! as handles, awaits over several handles, cancels, and parking a run
//! until one of its handles can complete.
//!
//! A child workflow is a run with `parent_id` and `parent_key`, created
//! (due at once, owned by nobody) in the transaction that renews the
//! parent's lease, so a parent never starts one twice: its id is
//! deterministic, and the start of an existing child reports it. The end of
//! a child makes its waiting parent due; the end of a parent cancels the
//! children still open (`rows::end_family`), so nothing outlives its parent.

use std::sync::Arc;

use crate::sql::{Tx, args};
use durable_core::history::ChildEnd;

use super::rows::{
    ComponentToStore, cancel_tree, insert_component, insert_step, read_run, renew_and_switch,
};
use super::{ComponentSwitch, Outcome, RunRecord, RunStatus, StepRecord, Store, StoreError};
use crate::owner::Owner;
#[allow(unused_imports)]
use durable_core::views::*;

impl Store {
    /// Starts child workflow `child.run` of run `run_id`: creates it (due
    /// at once) unless a run has its id, in the transaction that renews
    /// the parent's lease.
    ///
    /// # Errors
    /// [`StoreError::LeaseLost`] when another drive owns the parent now.
    pub async fn start_child(
        &self,
        run_id: &str,
        owner: &Owner,
        drive: u32,
        child: ChildStart,
    ) -> Result<ChildStarted, StoreError> {
        let lease_ms = self.lease_ms;
        let (run_id, owner) = (run_id.to_string(), owner.to_string());
        let child = Arc::new(child);
        let digest = child.run.component_digest.clone();
        let mut component = self.named_components.to_store(&digest);
        loop {
            let (job, run_id, owner) = (Arc::clone(&child), run_id.clone(), owner.clone());
            let outcome = self
                .writer_for(&run_id)
                .transact(move |tx| {
                    let now = tx.now_ms();
                    renew_and_switch(
                        tx,
                        &run_id,
                        &owner,
                        drive,
                        job.switch.as_ref(),
                        now,
                        lease_ms,
                    )?;
                    if let Some(existing) = read_run(tx, &job.run.id)? {
                        let ours = existing.parent.as_deref() == Some(run_id.as_str())
                            && existing.parent_key.as_deref() == Some(job.parent_key.as_str());
                        return Ok(if ours {
                            ChildStarted::Existing(existing)
                        } else {
                            ChildStarted::Taken(existing)
                        });
                    }
                    insert_child(tx, &run_id, &job, component, now).map(ChildStarted::Created)
                })
                .await;
            let settled = self
                .named_components
                .settle(&digest, component, outcome, |c| {
                    matches!(c, ChildStarted::Created(_))
                })?;
            match settled {
                Some(done) => return Ok(done),
                None => component = ComponentToStore::Unknown,
            }
        }
    }

    /// Starts an event wait of run `run_id` as a handle: its deadline
    /// (`timeout_ms` from now) is fixed by the first call, across crashes.
    ///
    /// # Errors
    /// [`StoreError::LeaseLost`] when another drive owns the run now.
    #[allow(clippy::too_many_arguments)]
    pub async fn start_event_wait(
        &self,
        run_id: &str,
        owner: &Owner,
        drive: u32,
        key: &str,
        name: &str,
        timeout_ms: Option<u64>,
        switch: Option<ComponentSwitch>,
    ) -> Result<(), StoreError> {
        let lease_ms = self.lease_ms;
        let (run_id, owner) = (run_id.to_string(), owner.to_string());
        let (key, name) = (key.to_string(), name.to_string());
        self.writer_for(&run_id)
            .transact(move |tx| {
                let now = tx.now_ms();
                renew_and_switch(tx, &run_id, &owner, drive, switch.as_ref(), now, lease_ms)?;
                let deadline =
                    timeout_ms.map(|t| now.saturating_add(t.min(i64::MAX as u64) as i64));
                tx.exec(
                    "recording a wait",
                    "INSERT INTO waits (run_id, key, deadline_ms, since_ms, name)
                     VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT DO NOTHING",
                    args![run_id, key, deadline, now, name],
                )?;
                Ok(())
            })
            .await
    }

    /// Settles an await of run `run_id` over handles in one transaction:
    /// the candidates that can complete now do (an event is consumed, a
    /// deadline passed, a child ended) and their records are committed;
    /// for `await-any`, the first to complete (or the host's first, if it
    /// comes before) wins, and the select record says which.
    ///
    /// # Errors
    /// [`StoreError::LeaseLost`] when another drive owns the run now.
    pub async fn settle(
        &self,
        run_id: &str,
        owner: &Owner,
        drive: u32,
        settle: Settle,
    ) -> Result<Settled, StoreError> {
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
                    settle.switch.as_ref(),
                    now,
                    lease_ms,
                )?;
                let mut settled = Settled {
                    cancel,
                    ..Settled::default()
                };
                for (index, handle) in &settle.candidates {
                    if let Some(outcome) = complete(tx, &run_id, handle, now)? {
                        settled.completed.push((*index, outcome));
                        if settle.select.is_some() {
                            break;
                        }
                    }
                }
                if let Some((record, known)) = &settle.select {
                    let first = settled.completed.first().map(|(i, _)| *i);
                    let winner = match (first, known) {
                        (Some(a), Some(b)) => Some(a.min(*b)),
                        (a, b) => a.or(*b),
                    };
                    if let Some(w) = winner {
                        let mut record = record.clone();
                        record.outcome = Outcome::Ok(w.to_string());
                        record.finished_at_ms = now;
                        insert_step(tx, &run_id, &record)?;
                    }
                    settled.winner = winner;
                }
                Ok(settled)
            })
            .await
    }

    /// Parks run `run_id`, which waits on handles, until the earliest of
    /// their times, an event for one of them, or a child's end, unless one
    /// of those has come already ([`HandlesParked::Ready`]) or a cancel
    /// was requested.
    ///
    /// # Errors
    /// [`StoreError::LeaseLost`] when another drive owns the run now.
    pub async fn park_on_handles(
        &self,
        run_id: &str,
        owner: &Owner,
        drive: u32,
        wait: HandleWait,
    ) -> Result<HandlesParked, StoreError> {
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
                    wait.switch.as_ref(),
                    now,
                    lease_ms,
                )?;
                let mut wake = wait.wake_at_ms;
                for (key, name) in &wait.events {
                    if has_event(tx, &run_id, name)? {
                        return Ok(HandlesParked::Ready);
                    }
                    let deadline: Option<i64> = tx
                        .opt(
                            "reading a wait",
                            "SELECT deadline_ms FROM waits WHERE run_id = ?1 AND key = ?2",
                            args![run_id, key],
                            |r| r.get::<Option<i64>>(0),
                        )?
                        .flatten();
                    wake = match (wake, deadline) {
                        (Some(a), Some(b)) => Some(a.min(b)),
                        (a, b) => a.or(b),
                    };
                }
                for child in &wait.children {
                    if child_end(tx, child)?.is_some() {
                        return Ok(HandlesParked::Ready);
                    }
                }
                if wake.is_some_and(|w| w <= now) {
                    return Ok(HandlesParked::Ready);
                }
                if cancel {
                    return Ok(HandlesParked::Cancelled);
                }
                tx.exec(
                    "parking the run",
                    "UPDATE runs SET status = 'waiting', waiting_for = ?2, wake_at_ms = ?3,
                                     wait_event = NULL, owner = NULL, lease_until_ms = NULL
                     WHERE id = ?1",
                    args![run_id, wait.describe, wake],
                )?;
                tx.notify(&run_id)?;
                Ok(HandlesParked::Parked)
            })
            .await
    }

    /// Records `record` (a cancel of a handle) and cancels what the handle
    /// started: child run `child` with its own children, or the event wait
    /// `event_key` (which then consumes nothing).
    ///
    /// # Errors
    /// [`StoreError::LeaseLost`] when another drive owns the run now.
    #[allow(clippy::too_many_arguments)]
    pub async fn cancel_handle(
        &self,
        run_id: &str,
        owner: &Owner,
        drive: u32,
        record: StepRecord,
        child: Option<String>,
        event_key: Option<String>,
        switch: Option<ComponentSwitch>,
    ) -> Result<bool, StoreError> {
        let lease_ms = self.lease_ms;
        let (run_id, owner) = (run_id.to_string(), owner.to_string());
        self.writer_for(&run_id)
            .transact(move |tx| {
                let now = tx.now_ms();
                let cancel =
                    renew_and_switch(tx, &run_id, &owner, drive, switch.as_ref(), now, lease_ms)?;
                insert_step(tx, &run_id, &record)?;
                if let Some(child) = &child {
                    cancel_tree(tx, child, now)?;
                }
                if let Some(key) = &event_key {
                    tx.exec(
                        "ending a wait",
                        "DELETE FROM waits WHERE run_id = ?1 AND key = ?2",
                        args![run_id, key],
                    )?;
                }
                Ok(cancel)
            })
            .await
    }
}

/// Inserts child run `child` of `parent`: due at once, owned by nobody.
fn insert_child(
    tx: &Tx<'_>,
    parent: &str,
    child: &ChildStart,
    component: ComponentToStore,
    now: i64,
) -> Result<RunRecord, StoreError> {
    let new = &child.run;
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
        "starting a child workflow",
        "INSERT INTO runs (id, workflow, component_digest, input, status, seed, created_at_ms,
                           clock_ms, drives, waiting_for, wake_at_ms, parent_id, parent_key,
                           trace_parent)
         VALUES (?1, ?2, ?3, ?4, 'waiting', ?5, ?6, ?6, 0, 'its start', ?6, ?7, ?8, ?9)",
        args![
            new.id,
            new.workflow,
            new.component_digest,
            new.input,
            new.seed as i64,
            now,
            parent,
            child.parent_key,
            new.trace_parent
        ],
    )?;
    tx.notify(&new.id)?;
    read_run(tx, &new.id)?.ok_or_else(|| StoreError::Corrupt(format!("run {} vanished", new.id)))
}

/// Whether run `run_id` has an unconsumed event named `name`.
fn has_event(tx: &Tx<'_>, run_id: &str, name: &str) -> Result<bool, StoreError> {
    Ok(tx
        .opt(
            "looking for an event",
            "SELECT 1 FROM events WHERE run_id = ?1 AND name = ?2 AND consumed_by IS NULL LIMIT 1",
            args![run_id, name],
            |_| Ok(()),
        )?
        .is_some())
}

/// How child run `child` ended, if it has.
fn child_end(tx: &Tx<'_>, child: &str) -> Result<Option<ChildEnd>, StoreError> {
    Ok(ended_child(tx, child)?.map(|(end, _)| end))
}

/// How child run `child` ended, if it has, with its run (`None` if gone).
fn ended_child(
    tx: &Tx<'_>,
    child: &str,
) -> Result<Option<(ChildEnd, Option<RunRecord>)>, StoreError> {
    let Some(run) = read_run(tx, child)? else {
        let gone = format!("child workflow {child} is gone from the database");
        return Ok(Some((ChildEnd::Failed(gone), None)));
    };
    let error = || run.error.clone().unwrap_or_default();
    let end = match run.status {
        RunStatus::Queued | RunStatus::Running | RunStatus::Waiting => return Ok(None),
        RunStatus::Succeeded => {
            ChildEnd::Succeeded(run.output.clone().unwrap_or_else(|| "null".into()))
        }
        RunStatus::Failed => ChildEnd::Failed(error()),
        RunStatus::Cancelled => ChildEnd::Cancelled(error()),
    };
    Ok(Some((end, Some(run))))
}

/// Completes `handle` if it can complete now, committing its record.
fn complete(
    tx: &Tx<'_>,
    run_id: &str,
    handle: &StoreHandle,
    now: i64,
) -> Result<Option<Outcome>, StoreError> {
    match handle {
        StoreHandle::Child {
            record,
            child,
            deadline,
        } => {
            let (end, run) = match (ended_child(tx, child)?, deadline) {
                (Some(ended), _) => ended,
                // Past its time and still running: cancelled, timed out.
                (None, Some((timeout, at))) if *at <= now => {
                    cancel_tree(tx, child, now)?;
                    (ChildEnd::TimedOut(*timeout), read_run(tx, child)?)
                }
                (None, _) => return Ok(None),
            };
            let mut record = record.clone();
            record.outcome = Outcome::Ok(end.to_json());
            // The record spans the child's life (or its time, if it ran out).
            record.started_at_ms = run.as_ref().map_or(now, |r| r.created_at_ms);
            record.finished_at_ms = run.and_then(|r| r.finished_at_ms).unwrap_or(now);
            insert_step(tx, run_id, &record)?;
            Ok(Some(record.outcome))
        }
        StoreHandle::Event {
            record,
            name,
            timeout_ms,
        } => {
            let mut record = record.clone();
            let wait: Option<(Option<i64>, Option<i64>)> = tx.opt(
                "reading a wait",
                "SELECT deadline_ms, since_ms FROM waits WHERE run_id = ?1 AND key = ?2",
                args![run_id, record.key],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?;
            let (deadline, since) = wait.unwrap_or((None, None));
            record.started_at_ms = since.unwrap_or(record.started_at_ms);
            record.finished_at_ms = now;
            let event: Option<(i64, String)> = tx.opt(
                "looking for an event",
                "SELECT seq, payload FROM events
                 WHERE run_id = ?1 AND name = ?2 AND consumed_by IS NULL
                 ORDER BY seq LIMIT 1",
                args![run_id, name],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?;
            record.outcome = match (event, deadline, timeout_ms) {
                (Some((seq, payload)), _, _) => {
                    tx.exec(
                        "consuming an event",
                        "UPDATE events SET consumed_by = ?2 WHERE seq = ?1",
                        args![seq, record.key],
                    )?;
                    Outcome::Ok(payload)
                }
                (None, Some(d), Some(t)) if d <= now => Outcome::TimedOut(*t),
                _ => return Ok(None),
            };
            tx.exec(
                "ending a wait",
                "DELETE FROM waits WHERE run_id = ?1 AND key = ?2",
                args![run_id, record.key],
            )?;
            insert_step(tx, run_id, &record)?;
            Ok(Some(record.outcome))
        }
    }
}
