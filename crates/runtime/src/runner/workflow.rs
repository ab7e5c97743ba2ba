//! The workflow instance of one drive: instantiated once, its `run` export
//! called with the run's input, and how what it returns becomes the run's
//! end. (Its durable calls land in `state.rs`; steps run in `drive/`.)

use std::sync::Arc;

use super::drive::{self, Drive, cap_message, trap_message};
use super::engine::Pre;
use super::limits::Limits;
use super::{HostState, RunError};
use crate::sandbox::Output;
use crate::store::{OutputLine, RunRecord};

/// Why the workflow instance did not return.
pub(super) enum WorkflowFailure {
    Instantiate(String),
    /// The workflow trapped, with its message, after this many calls.
    Trap(String, u32),
}

/// How a workflow's end is recorded: its output, if it is JSON within the
/// result size limit, or why the run failed.
pub(super) fn end_of(result: Result<String, String>, limits: &Limits) -> Result<String, String> {
    match result {
        Ok(output) if output.len() > limits.max_result_bytes => Err(format!(
            "the workflow's output is {} bytes, over the result size limit of {} bytes (--max-result-bytes)",
            output.len(),
            limits.max_result_bytes
        )),
        Ok(output) => match serde_json::from_str::<serde::de::IgnoredAny>(&output) {
            Ok(_) => Ok(output),
            Err(e) => Err(format!("the workflow returned invalid JSON: {e}")),
        },
        Err(message) => Err(cap_message(message)),
    }
}

/// What the workflow's `run` returned, with how many durable calls it made.
pub(super) type WorkflowResult = Result<(Result<String, String>, u32), WorkflowFailure>;

pub(super) async fn run_workflow(
    drive: &Arc<Drive>,
    pre: &Pre,
    run: &RunRecord,
) -> (WorkflowResult, Vec<OutputLine>) {
    let output = Output::new(&run.id, "", drive.number, drive.observer.clone());
    let result = call_workflow(drive, pre, run, &output).await;
    (result, output.take_lines())
}

async fn call_workflow(
    drive: &Arc<Drive>,
    pre: &Pre,
    run: &RunRecord,
    output: &Output,
) -> WorkflowResult {
    let state = HostState::for_workflow(drive.clone(), run.clock_ms, run.seed, output);
    let mut store = wasmtime::Store::new(pre.engine(), state);
    store.limiter(|s| s.limiter());
    // At every epoch tick: yield, so that a busy workflow does not hold a
    // worker thread that its own parallel steps need; and stop it when it
    // was cancelled or has run too long without a durable call.
    store.epoch_deadline_callback(|mut cx| cx.data_mut().on_epoch());
    store.set_epoch_deadline(1);
    let instance = loop {
        match pre.instantiate_async(&mut store).await {
            Ok(instance) => break instance,
            // The pool is full: wait for an instance to end, unless the run
            // may not go on (the drive's fatal error says why).
            Err(e) if drive::is_capacity(&e) => {
                if drive.check_cancel().is_err() {
                    return Ok((Err(String::new()), 0));
                }
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
            Err(e) => return Err(WorkflowFailure::Instantiate(format!("{e:#}"))),
        }
    };
    // The CPU budget counts the workflow's own code, not the wait for an
    // instance.
    store.data_mut().reset_busy();
    let result = instance.call_run(&mut store, &run.input).await;
    let calls = store.data().calls_made();
    store.data_mut().flush_http();
    // A request the workflow sent fails the run, also when the workflow
    // went on (or ended) before the epoch callback saw it.
    if let Some(message) = store.data().workflow_http_refusal() {
        let _ = drive.stop(RunError::HttpInWorkflow {
            run: run.id.clone(),
            message,
        });
    }
    drop(store);
    output.finish();
    match result {
        Ok(result) => Ok((result, calls)),
        // A trap after the host stopped the run is the host's; the caller
        // reports the fatal error instead.
        Err(_) if drive.is_stopped() => Ok((Err(String::new()), calls)),
        Err(trap) => {
            let message = trap_message(&trap);
            Err(WorkflowFailure::Trap(
                match output.explanation() {
                    Some(said) => format!("{said} ({message})"),
                    None => message,
                },
                calls,
            ))
        }
    }
}
