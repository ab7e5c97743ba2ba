//! How the verbs that drive runs (`run`, `resume`, `fork`, `upgrade-check`,
//! `check`) set up a runtime, drive to the end, stop on a signal and report.

use std::io::Read;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use durable::runner::{Engine, Faults, Finished, RunError, Runtime, RuntimeConfig};
use durable::store::{Location, RunStatus};

use crate::args::{DriveArgs, FaultArgs};
use crate::common::{chain, error, print_stdout, signalled};
use crate::exit::ExitCode;
use crate::output::{Lines, Live};
use crate::trace;

/// The live view on a terminal, plain lines otherwise.
pub(crate) fn observer(many_runs: bool) -> Arc<dyn durable::runner::Observer> {
    let lines = Lines::new(many_runs);
    if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        Arc::new(Live::new(lines))
    } else {
        Arc::new(lines)
    }
}

pub(crate) fn config(
    db: &Location,
    drive: &DriveArgs,
    faults: &FaultArgs,
    many_runs: bool,
) -> Result<RuntimeConfig, ExitCode> {
    let mut config = drive.settings().runtime_config(db).map_err(|e| {
        error(e);
        ExitCode::Usage
    })?;
    config.faults = Faults {
        crash_after: faults.crash_after.clone(),
        crash_before_commit: faults.crash_before_commit.clone(),
        skip_sleeps: faults.skip_sleeps,
    };
    config.observer = trace::wrap(observer(many_runs), faults.trace_file.as_deref())?;
    config.spans = crate::otlp::start(drive)?;
    Ok(config)
}

pub(crate) fn engine(config: &RuntimeConfig) -> Result<Engine, ExitCode> {
    Engine::with_options(config.engine_options()).map_err(|e| {
        error(format_args!("could not start the engine: {e:#}"));
        ExitCode::Failure
    })
}

/// How long running steps get to finish and be recorded after SIGINT or
/// SIGTERM, before they are abandoned (and run again on resume).
const GRACE: Duration = Duration::from_secs(5);

/// How often a process that waits for a parked run looks whether it is due
/// (an event sent by another process is noticed within this).
const DUE_POLL: Duration = Duration::from_millis(50);

/// Drives run `run_id` to its end from `first`, its first drive's result:
/// a run that parks (a sleep, an event) is waited for here, holding no
/// instance, and resumed when it is due.
pub(crate) async fn to_end(
    rt: &Runtime,
    run_id: &str,
    first: Result<Finished, RunError>,
) -> Result<Finished, RunError> {
    let mut result = first;
    loop {
        match &result {
            // Running: parked, then taken up by another process since; the
            // resume below says so (it is driven elsewhere).
            // Under `durable check`, a run that parks is left parked.
            Ok(f) if !f.already && f.run.status.is_open() && !rt.faults().skip_sleeps => {}
            _ => return result,
        }
        wait_until_due(rt, run_id).await?;
        result = rt.resume(run_id).await;
    }
}

/// Resumes run `run_id` once it is due (a parked run that is not due yet is
/// waited for, not replayed early), and drives it to its end.
pub(crate) async fn resume_when_due(rt: &Runtime, run_id: &str) -> Result<Finished, RunError> {
    if let Some(Some(_)) = rt.store().due(run_id).await?
        && let Some(run) = rt.store().run(run_id).await?
    {
        rt.announce_waiting(&run);
    }
    if rt.faults().skip_sleeps
        && let Some(Some(_)) = rt.store().due(run_id).await?
        && let Some(run) = rt.store().run(run_id).await?
    {
        // Under `durable check`: not due now, not waited for.
        return Ok(Finished {
            run,
            already: false,
        });
    }
    wait_until_due(rt, run_id).await?;
    to_end(rt, run_id, rt.resume(run_id).await).await
}

/// Returns once run `run_id` is due (or has ended, or another process took
/// it: the resume that follows says which).
async fn wait_until_due(rt: &Runtime, run_id: &str) -> Result<(), RunError> {
    loop {
        if rt.is_interrupted() {
            return Err(RunError::Interrupted {
                run: run_id.to_string(),
            });
        }
        match rt.store().due(run_id).await? {
            Some(Some(at)) => {
                let left = at.saturating_sub(durable::clock::now_ms()).max(0) as u64;
                tokio::time::sleep(Duration::from_millis(left).min(DUE_POLL)).await;
            }
            _ => return Ok(()),
        }
    }
}

/// Runs `work` while driving the child workflows its runs start (each from
/// when it is due to its end, like `durable resume`). When `work` ends, the
/// children still driven get [`GRACE`] to end (a parent's end cancels the
/// children it leaves, and they stop at their next durable call); any left
/// then are abandoned, resumable.
async fn with_children<T>(rt: &Runtime, work: impl std::future::Future<Output = T>) -> T {
    use futures_util::StreamExt;
    let Some(mut starts) = rt.child_starts() else {
        return work.await;
    };
    let mut children = futures_util::stream::FuturesUnordered::new();
    let drive_child = |id: String| async move {
        let result = resume_when_due(rt, &id).await;
        (id, result)
    };
    let ended = |(id, result): (String, Result<Finished, RunError>)| match result {
        Ok(_) | Err(RunError::AlreadyDriving { .. }) => {}
        Err(e) => {
            rt.child_not_driven(&id);
            error(format_args!("child workflow {id}: {}", chain(&e)));
        }
    };
    tokio::pin!(work);
    let out = loop {
        tokio::select! {
            out = &mut work => break out,
            Some(id) = starts.recv() => children.push(drive_child(id)),
            Some(done) = children.next(), if !children.is_empty() => ended(done),
        }
    };
    let _ = tokio::time::timeout(GRACE, async {
        while let Some(done) = children.next().await {
            ended(done);
        }
    })
    .await;
    out
}

/// Runs `work` to its end (with the child workflows its runs start),
/// unless SIGINT or SIGTERM comes first: then the runtime's drives stop at
/// their next durable call, running steps get [`GRACE`] to finish and be
/// recorded, and `None` means they did not and were abandoned (their runs
/// released, resumable).
pub(crate) async fn interruptible<T>(
    rt: &Runtime,
    work: impl std::future::Future<Output = T>,
) -> Option<T> {
    let work = with_children(rt, work);
    tokio::pin!(work);
    tokio::select! {
        r = &mut work => return Some(r),
        _ = signalled() => {}
    }
    error(format_args!(
        "stopping: steps already running get {} s to finish and be recorded",
        GRACE.as_secs()
    ));
    rt.interrupt();
    let driven = rt.active_runs();
    match tokio::time::timeout(GRACE, &mut work).await {
        Ok(r) => Some(r),
        Err(_) => {
            rt.release(&driven).await;
            None
        }
    }
}

/// Reports runs abandoned after an interrupt's grace.
pub(crate) fn abandoned(run_ids: &[String]) -> ExitCode {
    for id in run_ids {
        error(format_args!(
            "run {id} was interrupted; its running steps were abandoned and run again on resume: durable resume {id}"
        ));
    }
    ExitCode::Interrupted
}

/// Reports a single run: output JSON on stdout, errors on stderr.
pub(crate) fn report_one(run_id: &str, result: Result<Finished, RunError>) -> ExitCode {
    match result {
        Ok(Finished { run, already }) => {
            if already {
                eprintln!(
                    "durable: run {run_id} had already finished ({}); showing its stored result",
                    run.status
                );
            }
            match run.status {
                RunStatus::Succeeded => {
                    print_stdout(run.output.as_deref().unwrap_or("null"));
                    ExitCode::Success
                }
                RunStatus::Cancelled => {
                    error(format_args!("run {run_id} was cancelled"));
                    ExitCode::Cancelled
                }
                // Only under `durable check`, which does not wait.
                RunStatus::Queued | RunStatus::Waiting | RunStatus::Running => {
                    error(format_args!(
                        "run {run_id} is {} and was not waited for",
                        run.status
                    ));
                    ExitCode::Success
                }
                RunStatus::Failed => {
                    error(format_args!(
                        "run {run_id} failed: {}",
                        run.error.as_deref().unwrap_or("no error recorded")
                    ));
                    ExitCode::RunFailed
                }
            }
        }
        Err(e) => {
            error(chain(&e));
            ExitCode::of(&e)
        }
    }
}

/// Reports one of several runs as a JSON line on stdout.
pub(crate) fn report_line(run_id: &str, result: Result<Finished, RunError>) -> ExitCode {
    let (line, code) = match result {
        Ok(Finished { run, .. }) => {
            let output = run
                .output
                .as_deref()
                .and_then(|o| serde_json::from_str::<serde_json::Value>(o).ok());
            let code = match run.status {
                RunStatus::Succeeded => ExitCode::Success,
                RunStatus::Cancelled => ExitCode::Cancelled,
                _ => ExitCode::RunFailed,
            };
            (
                serde_json::json!({"id": run_id, "status": run.status.as_str(), "output": output, "error": run.error}),
                code,
            )
        }
        Err(e) => {
            let message = chain(&e);
            error(&message);
            (
                serde_json::json!({"id": run_id, "status": "error", "output": null, "error": message}),
                ExitCode::of(&e),
            )
        }
    };
    print_stdout(&line.to_string());
    code
}

/// A run's input from `--input JSON` or `--input-file PATH` ("-": stdin),
/// checked: JSON, at most `max_bytes`.
pub(crate) fn input_text(
    input: Option<&str>,
    file: Option<&Path>,
    max_bytes: usize,
) -> Result<String, ExitCode> {
    let text = match (input, file) {
        (Some(s), _) => s.to_string(),
        (None, Some(p)) if p.as_os_str() == "-" => {
            let mut s = String::new();
            std::io::stdin().read_to_string(&mut s).map_err(|e| {
                error(format_args!("cannot read the input from stdin: {e}"));
                ExitCode::Usage
            })?;
            s
        }
        (None, Some(p)) => std::fs::read_to_string(p).map_err(|e| {
            error(format_args!("cannot read {}: {e}", p.display()));
            ExitCode::Usage
        })?,
        (None, None) => "null".to_string(),
    };
    if text.len() > max_bytes {
        error(format_args!(
            "the run input is {} bytes, over the input size limit of {max_bytes} bytes (--max-input-bytes)",
            text.len(),
        ));
        return Err(ExitCode::Usage);
    }
    if let Err(e) = serde_json::from_str::<serde::de::IgnoredAny>(&text) {
        error(format_args!("the run input is not valid JSON: {e}"));
        return Err(ExitCode::Usage);
    }
    Ok(text)
}
