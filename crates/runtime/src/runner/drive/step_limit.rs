//! A step name's concurrency limit (`[limits.steps.NAME]`,
//! `--step-limit NAME=N`): an attempt takes one of the name's slots in the
//! store before its instance is made, waiting without one (holding no
//! instance, no permit, its clock not running), and gives it back when it
//! has ended, whichever way.

use std::sync::Arc;
use std::time::Duration;

use super::Drive;
use crate::history::Planned;
use crate::runner::RunError;
use crate::store::Store;

/// First wait before looking for a free slot again; doubled up to
/// [`MAX_WAIT`].
const FIRST_WAIT: Duration = Duration::from_millis(5);

/// Longest wait between two looks for a free slot.
const MAX_WAIT: Duration = Duration::from_millis(100);

/// A slot of a limited step: [`StepSlot::give_back`] when the attempt
/// has ended; dropped without that (the drive stopped), it is given back
/// in the background.
pub(super) struct StepSlot(Option<Held>);

struct Held {
    store: Store,
    name: String,
    run_id: String,
    key: String,
}

impl Held {
    async fn give_back(self) {
        if let Err(e) = self
            .store
            .give_back_step_slot(&self.name, &self.run_id, &self.key)
            .await
        {
            // It stops counting when the run's lease runs out or the run
            // ends.
            tracing::warn!(step = %self.name, error = %crate::errors::chain(&e), "could not give back a step slot");
        }
    }
}

impl StepSlot {
    /// Gives the slot back (before the step's next attempt takes one: the
    /// two are the same row).
    pub(super) async fn give_back(mut self) {
        if let Some(held) = self.0.take() {
            held.give_back().await;
        }
    }
}

impl Drop for StepSlot {
    fn drop(&mut self) {
        if let Some(held) = self.0.take()
            && let Ok(handle) = tokio::runtime::Handle::try_current()
        {
            handle.spawn(held.give_back());
        }
    }
}

impl Drive {
    /// Takes a slot of `call`'s step name if the name is limited (else
    /// `None`), waiting until one is free or the run may not go on.
    pub(super) async fn step_slot(
        self: &Arc<Self>,
        call: &Planned,
    ) -> Result<Option<StepSlot>, RunError> {
        let Some(&limit) = self.step_limits.get(&call.name) else {
            return Ok(None);
        };
        let mut wait = FIRST_WAIT;
        loop {
            if let Some(e) = self.no_new_attempt() {
                return Err(e);
            }
            if self
                .store
                .take_step_slot(&call.name, limit, &self.run_id, &call.key, &self.owner)
                .await?
            {
                return Ok(Some(StepSlot(Some(Held {
                    store: self.store.clone(),
                    name: call.name.clone(),
                    run_id: self.run_id.clone(),
                    key: call.key.clone(),
                }))));
            }
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(MAX_WAIT);
        }
    }
}
