//! `durable run` and `durable resume`.

use std::io::{Read, Write};
use std::path::Path;
use std::sync::Arc;

use std::time::Duration;

use durable::runner::Engine;
use durable::runner::{Faults, Finished, LoadedWorkflow, RunError, Runtime, RuntimeConfig};
use durable::store::{RunStatus, Store};

use super::print::Lines;
use super::trace;
use super::{DriveArgs, ExitCode, ForkArgs, ResumeArgs, RunArgs};

/// Prints `durable: <message>` on stderr.
fn error(message: impl std::fmt::Display) {
    eprintln!("durable: {message}");
}

/// The live view on a terminal, plain lines otherwise.
fn observer(many_runs: bool) -> Arc<dyn durable::runner::Observer> {
    let lines = Lines {
        with_run: many_runs,
    };
    if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        Arc::new(super::progress::Live::new(lines))
    } else {
        Arc::new(lines)
    }
}

pub(super) fn config(
    db: &Path,
    drive: &DriveArgs,
    many_runs: bool,
) -> Result<RuntimeConfig, ExitCode> {
    let mut config = drive.settings().runtime_config(db).map_err(|e| {
        error(e);
        ExitCode::Usage
    })?;
    config.faults = Faults {
        crash_after: drive.crash_after.clone(),
        crash_before_commit: drive.crash_before_commit.clone(),
        skip_sleeps: drive.skip_sleeps,
    };
    config.observer = trace::wrap(observer(many_runs), drive.trace_file.as_deref())?;
    Ok(config)
}

pub(super) fn engine(config: &RuntimeConfig) -> Result<Engine, ExitCode> {
    Engine::with_options(config.engine_options()).map_err(|e| {
        error(format_args!("could not start the engine: {e:#}"));
        ExitCode::Failure
    })
}

/// Reads and loads the component at `path` (a bad one is bad usage).
/// Compiling takes seconds for a large guest: off the async workers.
pub(super) fn load(engine: &Engine, path: &Path) -> Result<LoadedWorkflow, ExitCode> {
    let bytes = std::fs::read(path).map_err(|e| {
        error(format_args!("cannot read {}: {e}", path.display()));
        ExitCode::Usage
    })?;
    let name = path.display().to_string();
    tokio::task::block_in_place(|| engine.load(&name, Arc::new(bytes))).map_err(|e| {
        error(chain(&e));
        ExitCode::Usage
    })
}

pub(super) async fn open(db: &Path, drive: &DriveArgs) -> Result<Store, ExitCode> {
    drive.settings().open_store(db).await.map_err(|e| {
        error(chain(&e));
        ExitCode::of_store(&e)
    })
}

/// `durable run`.
pub async fn run(db: &Path, args: RunArgs) -> ExitCode {
    match run_inner(db, args).await {
        Ok(code) | Err(code) => code,
    }
}

async fn run_inner(db: &Path, args: RunArgs) -> Result<ExitCode, ExitCode> {
    if let Some(id) = &args.id
        && let Err(e) = durable::runner::validate_run_id(id)
    {
        error(e);
        return Err(ExitCode::Usage);
    }
    let input = read_input(&args)?;
    let config = config(db, &args.drive, false)?;
    let engine = engine(&config)?;
    // Load before opening the database: a bad component changes nothing.
    let workflow = load(&engine, &args.component)?;
    let store = open(db, &args.drive).await?;
    let rt = Runtime::with_engine(engine, store.clone(), config);
    tracing::debug!(source = ?workflow.source, time = ?workflow.load_time, "component loaded");
    let run_id = args
        .id
        .clone()
        .unwrap_or_else(|| new_run_id(&workflow.name));
    if args.id.is_none() {
        eprintln!("run {run_id}");
    }
    let work = async { to_end(&rt, &run_id, rt.start(&workflow, &run_id, &input).await).await };
    let code = match interruptible(&rt, work).await {
        Some(result) => report_one(&run_id, result),
        None => abandoned(std::slice::from_ref(&run_id)),
    };
    drop(rt);
    store.close().await;
    Ok(code)
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
pub(super) async fn to_end(
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
async fn resume_when_due(rt: &Runtime, run_id: &str) -> Result<Finished, RunError> {
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

/// Resolves when the process gets SIGINT or SIGTERM.
pub(super) async fn signalled() {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) {
        (Ok(mut int), Ok(mut term)) => {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
        }
        // Without handlers the signals keep their default action.
        _ => std::future::pending().await,
    }
}

/// Runs `work` to its end, unless SIGINT or SIGTERM comes first: then the
/// runtime's drives stop at their next durable call, running steps get
/// [`GRACE`] to finish and be recorded, and `None` means they did not and
/// were abandoned (their runs released, resumable).
pub(super) async fn interruptible<T>(
    rt: &Runtime,
    work: impl std::future::Future<Output = T>,
) -> Option<T> {
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
pub(super) fn abandoned(run_ids: &[String]) -> ExitCode {
    for id in run_ids {
        error(format_args!(
            "run {id} was interrupted; its running steps were abandoned and run again on resume: durable resume {id}"
        ));
    }
    ExitCode::Interrupted
}

/// `durable resume`.
pub async fn resume(db: &Path, args: ResumeArgs) -> ExitCode {
    if let Some(new) = args.component.clone() {
        return super::upgrade::resume_switching(db, args, &new).await;
    }
    if !durable::store::may_exist(db) {
        // Opening would create an empty database; there is nothing to resume.
        error(format_args!(
            "there is no database at {}: nothing to resume",
            crate::cli::shown_db(db)
        ));
        return if args.ids.is_empty() {
            ExitCode::Success
        } else {
            ExitCode::NotFound
        };
    }
    let store = match open(db, &args.drive).await {
        Ok(s) => s,
        Err(code) => return code,
    };
    let single = args.ids.len() == 1;
    let rt = match config(db, &args.drive, !single).and_then(|c| Ok((engine(&c)?, c))) {
        Ok((engine, config)) => Runtime::with_engine(engine, store.clone(), config),
        Err(code) => return code,
    };
    let ids = if args.ids.is_empty() {
        match store.unfinished_runs().await {
            Ok(runs) => {
                let mut ids = Vec::new();
                for run in runs {
                    match run.busy {
                        None => ids.push(run.id),
                        Some(b) => error(format_args!(
                            "skipping run {}: process {} on {} drives it (its lease runs {} s more)",
                            run.id,
                            b.pid,
                            b.host,
                            (b.lease_left_ms.max(0) as u64).div_ceil(1000)
                        )),
                    }
                }
                ids
            }
            Err(e) => {
                error(chain(&e));
                return ExitCode::of_store(&e);
            }
        }
    } else {
        args.ids.clone()
    };
    if ids.is_empty() {
        eprintln!("durable: no interrupted runs to resume");
    }
    let code = if single {
        let work = resume_when_due(&rt, &ids[0]);
        match interruptible(&rt, work).await {
            Some(result) => report_one(&ids[0], result),
            None => abandoned(&ids),
        }
    } else {
        // All runs at once: their steps share the host's step limit; runs
        // that wait are waited for, the due ones driven meanwhile.
        let rt = Arc::new(rt);
        let mut set = tokio::task::JoinSet::new();
        for (i, id) in ids.iter().enumerate() {
            let (rt, id) = (rt.clone(), id.clone());
            set.spawn(async move { (i, resume_when_due(&rt, &id).await) });
        }
        let mut results: Vec<Option<Result<Finished, RunError>>> =
            ids.iter().map(|_| None).collect();
        let joined_all = interruptible(&rt, async {
            while let Some(joined) = set.join_next().await {
                match joined {
                    Ok((i, r)) => results[i] = Some(r),
                    Err(e) => error(format_args!("internal error: {e}")),
                }
            }
        })
        .await;
        if joined_all.is_none() {
            let left: Vec<String> = ids
                .iter()
                .zip(&results)
                .filter(|(_, r)| r.is_none())
                .map(|(id, _)| id.clone())
                .collect();
            drop(set);
            store.close().await;
            return abandoned(&left);
        }
        let mut worst = ExitCode::Success;
        for (id, result) in ids.iter().zip(results) {
            let code = match result {
                Some(r) => report_line(id, r),
                None => ExitCode::Failure,
            };
            worst = worst.max(code);
        }
        worst
    };
    store.close().await;
    code
}

/// `durable fork`.
pub async fn fork(db: &Path, args: ForkArgs) -> ExitCode {
    if !durable::store::may_exist(db) {
        error(format_args!(
            "there is no database at {}",
            crate::cli::shown_db(db)
        ));
        return ExitCode::NotFound;
    }
    let config = match config(db, &args.drive, false) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let store = match open(db, &args.drive).await {
        Ok(s) => s,
        Err(code) => return code,
    };
    let new_id = args
        .new_id
        .clone()
        .unwrap_or_else(|| format!("{}-fork-{}", args.id, durable::clock::now_ms()));
    let forked = match store.fork(&args.id, &args.from_step, &new_id).await {
        Ok(run) => run,
        Err(e) => {
            error(&e);
            store.close().await;
            return ExitCode::of_store(&e);
        }
    };
    eprintln!(
        "run {new_id}: forked from {} before step {}",
        args.id, args.from_step
    );
    if args.no_start {
        print_stdout(&forked.id);
        store.close().await;
        return ExitCode::Success;
    }
    let rt = match engine(&config) {
        Ok(engine) => Runtime::with_engine(engine, store.clone(), config),
        Err(code) => return code,
    };
    let work = async { to_end(&rt, &new_id, rt.resume(&new_id).await).await };
    let code = match interruptible(&rt, work).await {
        Some(result) => report_one(&new_id, result),
        None => abandoned(std::slice::from_ref(&new_id)),
    };
    drop(rt);
    store.close().await;
    code
}

/// Reports a single run: output JSON on stdout, errors on stderr.
pub(super) fn report_one(run_id: &str, result: Result<Finished, RunError>) -> ExitCode {
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
                RunStatus::Waiting | RunStatus::Running => {
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
pub(super) fn report_line(run_id: &str, result: Result<Finished, RunError>) -> ExitCode {
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

fn print_stdout(s: &str) {
    let mut out = std::io::stdout().lock();
    // A closed stdout (`| head`) is not an error worth reporting.
    let _ = writeln!(out, "{s}");
    let _ = out.flush();
}

fn read_input(args: &RunArgs) -> Result<String, ExitCode> {
    input_text(
        args.input.as_deref(),
        args.input_file.as_deref(),
        args.drive.max_input_bytes,
    )
}

/// A run's input from `--input JSON` or `--input-file PATH` ("-": stdin),
/// checked: JSON, at most `max_bytes`.
pub(super) fn input_text(
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

pub(super) fn new_run_id(workflow: &str) -> String {
    let mut b = [0u8; 4];
    let _ = getrandom::fill(&mut b);
    format!(
        "{workflow}-{}-{:08x}",
        durable::clock::now_ms(),
        u32::from_le_bytes(b)
    )
}

/// An error with its causes, `a: b: c`.
pub fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let c = cause.to_string();
        if !s.contains(&c) {
            s.push_str(": ");
            s.push_str(&c);
        }
        source = cause.source();
    }
    s
}
