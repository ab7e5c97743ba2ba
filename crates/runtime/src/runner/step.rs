//! A step attempt's instance: instantiated from the run's component with a
//! step [`HostState`], its `run-step` export called against the attempt's
//! clock. The drive ([`super::drive`]) decides when an attempt runs and
//! what its end means; this module is how one runs, behind the drive's
//! [`StepInstances`] seam.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::OwnedSemaphorePermit;

use super::RunError;
use super::drive::{Drive, StepInstances, StepRun, is_capacity};
use super::engine::Pre;
use super::slots::AttemptClock;
use super::state::HostState;
use crate::compiler::EPOCH_TICK;
use crate::history::Planned;
use crate::sandbox::Output;

/// How long an instantiation waits before trying again when the instance
/// pool is full.
const CAPACITY_WAIT: Duration = Duration::from_millis(5);

/// Step instances of one loaded component.
pub(crate) struct Instances(pub(crate) Pre);

impl StepInstances for Instances {
    fn run<'a>(
        &'a self,
        drive: &'a Arc<Drive>,
        call: &'a Planned,
        input: &'a str,
        permit: OwnedSemaphorePermit,
        output: &'a Output,
        clock: Arc<AttemptClock>,
        budget: (Duration, u32),
    ) -> Pin<Box<dyn Future<Output = Result<StepRun, RunError>> + Send + 'a>> {
        Box::pin(run_attempt(
            &self.0, drive, call, input, permit, output, clock, budget,
        ))
    }
}

#[allow(clippy::too_many_arguments)]
async fn run_attempt(
    pre: &Pre,
    drive: &Arc<Drive>,
    call: &Planned,
    input: &str,
    permit: OwnedSemaphorePermit,
    output: &Output,
    clock: Arc<AttemptClock>,
    (timeout, number): (Duration, u32),
) -> Result<StepRun, RunError> {
    let state = HostState::for_step(
        drive.clone(),
        &call.key,
        permit,
        output,
        clock.clone(),
        (timeout, number),
    )
    .map_err(|e| RunError::Internal(format!("{e:#}")))?;
    let mut store = wasmtime::Store::new(pre.engine(), state);
    store.limiter(|s| s.limiter());
    // At every epoch tick: yield to tokio (a busy guest neither blocks a
    // worker thread nor escapes the timeout below), and stop at once if the
    // drive was stopped.
    store.epoch_deadline_callback(|mut cx| cx.data_mut().on_epoch());
    store.set_epoch_deadline(1);
    let result = {
        let work = async {
            let started = Instant::now();
            let instance = loop {
                match pre.instantiate_async(&mut store).await {
                    Ok(instance) => break instance,
                    Err(e) if is_capacity(&e) => {
                        // The pool is full: the host's problem, not the
                        // step's. Wait, with the clock stopped, unless the
                        // run may not go on.
                        if let Some(why) = drive.no_new_attempt() {
                            return Err(drive.stop(why));
                        }
                        let _paused = clock.pause();
                        tokio::time::sleep(CAPACITY_WAIT).await;
                    }
                    Err(e) => return Err(e),
                }
            };
            tracing::debug!(
                instantiate_us = started.elapsed().as_micros() as u64,
                "instance ready"
            );
            instance.call_run_step(&mut store, &call.name, input).await
        };
        tokio::pin!(work);
        loop {
            let wait = clock.remaining(timeout).unwrap_or(EPOCH_TICK);
            tokio::select! {
                r = &mut work => break Some(r),
                _ = tokio::time::sleep(wait) => {
                    if clock.remaining(timeout) == Some(Duration::ZERO) {
                        break None;
                    }
                }
            }
        }
    };
    let calls = store.data().calls_made();
    store.data_mut().flush_http();
    let refusal = store.data().refusal();
    let http_notes = store.data().http_notes();
    Ok(StepRun {
        result,
        calls,
        refusal,
        http_notes,
    })
}
