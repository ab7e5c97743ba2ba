//! The drive's side of the waits of the workflow: a sleep and an event wait
//! commit (or replay) their record and park the run when it must wait.

use std::sync::atomic::Ordering;

use super::Drive;
use crate::clock::now_ms;
use crate::history::Planned;
use crate::runner::RunError;
use crate::store::{
    AwaitCall, AwaitOutcome, HandleWait, HandlesParked, Outcome, Settle, Settled, SleepOutcome,
};

impl Drive {
    /// A sleep of the workflow until `wake_at_ms`: records the wake-up time
    /// on the first call (`first`), and parks the run if the time has not
    /// come. Returns whether the run was parked.
    pub(crate) async fn sleep(
        &self,
        call: &Planned,
        first: bool,
        wake_at_ms: i64,
    ) -> Result<bool, RunError> {
        let record =
            first.then(|| self.record_for(call, Outcome::Ok(wake_at_ms.to_string()), 1, now_ms()));
        if let Some(r) = &record {
            self.count_bytes(&call.key, r.outcome.size())?;
        }
        // The park gives the run up: from then on the lease renewal's
        // "lease lost" is the park, not another owner.
        self.parking.store(true, Ordering::SeqCst);
        let answer = self
            .store
            .sleep(
                &self.run_id,
                &self.owner,
                self.number,
                record,
                wake_at_ms,
                self.take_switch(),
            )
            .await;
        let parked = matches!(answer, Ok(SleepOutcome::Parked));
        self.parking.store(parked, Ordering::SeqCst);
        if answer? == SleepOutcome::Cancelled {
            self.note_cancel(true);
            return Err(RunError::Cancelled {
                run: self.run_id.clone(),
            });
        }
        if !parked && first {
            self.observer.waited(
                &self.run_id,
                &call.key,
                &Outcome::Ok(wake_at_ms.to_string()),
            );
        }
        Ok(parked)
    }

    /// An `await-event` call without a record: consumes an event, records
    /// a timeout, or parks the run (`None`).
    pub(crate) async fn await_event(
        &self,
        call: &Planned,
        name: &str,
        timeout_ms: Option<u64>,
    ) -> Result<Option<Outcome>, RunError> {
        let record = self.record_for(call, Outcome::Ok(String::new()), 1, now_ms());
        self.parking.store(true, Ordering::SeqCst);
        let answer = self
            .store
            .await_event(
                &self.run_id,
                &self.owner,
                self.number,
                AwaitCall {
                    record,
                    name: name.to_string(),
                    timeout_ms,
                    switch: self.take_switch(),
                },
            )
            .await;
        self.parking
            .store(matches!(answer, Ok(AwaitOutcome::Parked)), Ordering::SeqCst);
        let outcome = match answer? {
            AwaitOutcome::Event(payload) => Outcome::Ok(payload),
            AwaitOutcome::TimedOut => Outcome::TimedOut(timeout_ms.unwrap_or(0)),
            AwaitOutcome::Parked => return Ok(None),
            AwaitOutcome::Cancelled => {
                self.note_cancel(true);
                return Err(RunError::Cancelled {
                    run: self.run_id.clone(),
                });
            }
        };
        self.count_bytes(&call.key, outcome.size())?;
        self.observer.waited(&self.run_id, &call.key, &outcome);
        Ok(Some(outcome))
    }

    /// Fixes the deadline of event wait `key` (a handle's) at its start.
    pub(crate) async fn start_event_wait(
        &self,
        key: &str,
        name: &str,
        timeout_ms: Option<u64>,
    ) -> Result<(), RunError> {
        self.store
            .start_event_wait(
                &self.run_id,
                &self.owner,
                self.number,
                key,
                name,
                timeout_ms,
                self.take_switch(),
            )
            .await?;
        Ok(())
    }

    /// Settles an await over handles (see the store's `settle`).
    pub(crate) async fn settle(&self, mut settle: Settle) -> Result<Settled, RunError> {
        settle.switch = self.take_switch();
        let settled = self
            .store
            .settle(&self.run_id, &self.owner, self.number, settle)
            .await?;
        self.note_cancel(settled.cancel);
        for (_, outcome) in &settled.completed {
            self.count_bytes("an awaited handle", outcome.size())?;
        }
        Ok(settled)
    }

    /// Parks the run on handles (see the store's `park_on_handles`).
    pub(crate) async fn park_on_handles(
        &self,
        mut wait: HandleWait,
    ) -> Result<HandlesParked, RunError> {
        wait.switch = self.take_switch();
        // The park gives the run up: from then on the lease renewal's
        // "lease lost" is the park, not another owner.
        self.parking.store(true, Ordering::SeqCst);
        let answer = self
            .store
            .park_on_handles(&self.run_id, &self.owner, self.number, wait)
            .await;
        self.parking.store(
            matches!(answer, Ok(HandlesParked::Parked)),
            Ordering::SeqCst,
        );
        Ok(answer?)
    }

    /// Records a cancel of a handle (`call`) with its effect on child run
    /// `child` or event wait `event_key`.
    pub(crate) async fn cancel_handle(
        &self,
        call: &Planned,
        child: Option<String>,
        event_key: Option<String>,
    ) -> Result<(), RunError> {
        let record = self.record_for(call, Outcome::Ok("null".into()), 1, now_ms());
        let cancel = self
            .store
            .cancel_handle(
                &self.run_id,
                &self.owner,
                self.number,
                record,
                child,
                event_key,
                self.take_switch(),
            )
            .await?;
        self.note_cancel(cancel);
        Ok(())
    }
}
