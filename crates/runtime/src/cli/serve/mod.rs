//! `durable serve`: one long-running process that owns every run in the
//! database and answers an HTTP API.
//!
//! - [`dispatch`] finds the runs to drive (at start, the interrupted ones;
//!   then, every 50 ms, waiting runs that became due, by their time or by an
//!   event, and running runs whose owner died) and drives each in a task of
//!   its own; a run that parks ends its task and holds nothing until it is
//!   due again. Runs started over the API are driven the same way.
//! - [`api`] is the HTTP API under `/v1` (axum).
//!
//! Grants and limits are the operator's (the command line), never an API
//! caller's. SIGTERM or SIGINT: stop accepting requests, let running steps
//! finish within `--shutdown-grace-ms`, release the runs, exit 0.

mod api;
mod config;
mod dispatch;
mod metrics;
mod schedule;
mod ui;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use durable::runner::Runtime;

use super::run::{config, engine, open, signalled};
use super::{ExitCode, ServeArgs};
use dispatch::Dispatcher;

fn error(message: impl std::fmt::Display) {
    eprintln!("durable: {message}");
}

/// `durable serve`.
pub async fn serve(db: &Path, mut args: ServeArgs) -> ExitCode {
    args.token = match token(&args) {
        Ok(t) => t,
        Err(e) => {
            error(e);
            return ExitCode::Usage;
        }
    };
    if !args.listen.ip().is_loopback() && args.token.is_none() {
        error(format_args!(
            "refusing to listen on {} without a token: anyone who can reach it could start runs; \
             set --token-file (or DURABLE_TOKEN), or listen on 127.0.0.1",
            args.listen
        ));
        return ExitCode::Usage;
    }
    let mut config = match config(db, &args.drive, true) {
        Ok(c) => c,
        Err(code) => return code,
    };
    config.max_loaded_bytes = args.max_loaded_mb.saturating_mul(1 << 20);
    let engine = match engine(&config) {
        Ok(e) => e,
        Err(code) => return code,
    };
    let registered = match load_registered(db, &args, &engine, &mut config) {
        Ok(r) => r,
        Err(code) => return code,
    };
    let store = match open(db, &args.drive).await {
        Ok(s) => s,
        Err(code) => return code,
    };
    for (entry, wf) in &registered {
        if let Err(e) = store
            .put_component(&wf.digest, wf.bytes.clone(), Some(&entry.name))
            .await
        {
            error(super::run::chain(&e));
            return ExitCode::of_store(&e);
        }
    }
    let listener = match tokio::net::TcpListener::bind(args.listen).await {
        Ok(l) => l,
        Err(e) => {
            error(format_args!("cannot listen on {}: {e}", args.listen));
            return ExitCode::Usage;
        }
    };
    let address = listener.local_addr().map_or(args.listen, |a| a);
    if args.allow_hosts.iter().any(|h| h.trim() == "*") && args.token.is_none() {
        error(
            "--allow-host '*' turns off the check that stops DNS rebinding: any web page could \
             then drive this server; give it a token too (--token-file)",
        );
        return ExitCode::Usage;
    }
    let hosts = match api::Hosts::new(address, &args.allow_hosts) {
        Ok(h) => h,
        Err(e) => {
            error(e);
            return ExitCode::Usage;
        }
    };
    let metrics = Arc::new(metrics::Metrics::default());
    config.observer = Arc::new(durable::runner::Tee(
        config.observer.clone(),
        Arc::new(metrics::Counting {
            metrics: metrics.clone(),
        }),
    ));
    // The address goes out first, before any drive or tick can print a
    // step's output: scripts read it from the first line.
    eprintln!(
        "durable: serving on http://{address} (database {})",
        crate::cli::shown_db(db)
    );
    let rt = Arc::new(Runtime::with_engine(engine, store.clone(), config));
    let dispatcher = Dispatcher::start(rt.clone(), metrics.clone());
    let workflows: api::Workflows = Arc::default();
    if let Ok(mut w) = workflows.lock() {
        for (entry, wf) in &registered {
            w.insert(
                entry.name.clone(),
                api::Registered {
                    digest: wf.digest.clone(),
                    schedule: entry.schedule.as_ref().map(|s| s.expression.clone()),
                    input: entry.schedule.as_ref().map(|s| s.input.clone()),
                    from_config: true,
                },
            );
        }
    }
    for (entry, wf) in registered {
        if let Some(s) = entry.schedule {
            schedule::spawn(dispatcher.clone(), wf, s);
        }
    }
    let stopping = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let app = api::router(api::State {
        rt: rt.clone(),
        dispatcher: dispatcher.clone(),
        token: args.token.clone(),
        max_input_bytes: args.drive.max_input_bytes,
        max_body_bytes: args.max_body_mb.saturating_mul(1 << 20),
        workflows: workflows.clone(),
        stopping: stopping.clone(),
        metrics,
        hosts,
        max_long_polls: args.max_long_polls,
        max_uploads: args.max_uploads as usize,
    });
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let server = tokio::spawn(async move {
        let mut stop_rx = stop_rx;
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = stop_rx.wait_for(|s| *s).await;
            })
            .await
    });
    signalled().await;
    let grace = Duration::from_millis(args.shutdown_grace_ms);
    error(format_args!(
        "stopping: no new requests; steps already running get {} ms to finish and be recorded",
        grace.as_millis()
    ));
    stopping.store(true, std::sync::atomic::Ordering::SeqCst);
    let _ = stop_tx.send(true);
    dispatcher.stop();
    rt.interrupt();
    // Requests in flight (a long poll) and drives get the same grace.
    let deadline = tokio::time::Instant::now() + grace;
    if tokio::time::timeout_at(deadline, dispatcher.drained())
        .await
        .is_err()
    {
        let left = rt.active_runs();
        error(format_args!(
            "{} run(s) did not stop in time; their running steps were abandoned and run again on \
             the next start",
            left.len()
        ));
        rt.release(&left).await;
    }
    let _ = tokio::time::timeout_at(deadline, server).await;
    drop(rt);
    store.close().await;
    error("stopped");
    ExitCode::Success
}

/// The server's token: `--token` (or `DURABLE_TOKEN`) or the contents of
/// `--token-file`, without surrounding whitespace; `None` when not given or
/// empty.
///
/// # Errors
/// Both given, an unreadable file, or a token that a header cannot carry.
fn token(args: &ServeArgs) -> Result<Option<String>, String> {
    let (token, from) = match (&args.token, &args.token_file) {
        (Some(t), None) => (t.clone(), "--token (or DURABLE_TOKEN)".to_string()),
        (None, Some(path)) => (
            std::fs::read_to_string(path)
                .map_err(|e| format!("--token-file {}: {e}", path.display()))?,
            format!("--token-file {}", path.display()),
        ),
        (None, None) => return Ok(None),
        (Some(_), Some(_)) => {
            return Err(
                "give the token once: --token-file, or --token (DURABLE_TOKEN), not both".into(),
            );
        }
    };
    // A token pasted with a newline or spaces around it could never match
    // what a client sends: those are not part of it.
    let token = token.trim();
    if token.is_empty() {
        // An empty token is a mistake (a variable left blank, a file not
        // written yet), not a wish to run without one: say so, start not.
        return Err(match args.token_file {
            Some(_) => format!("{from}: the file is empty"),
            None => format!(
                "{from} is empty; unset it to run without a token (on loopback only), or \
                 give one"
            ),
        });
    }
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(format!(
            "{from}: the token must be printable ASCII without spaces (an HTTP header carries it)"
        ));
    }
    Ok(Some(token.to_string()))
}

/// Reads `--config` and loads (compiles) each registered workflow's
/// component; puts each one's limits and grants into `runtime`.
fn load_registered(
    db: &Path,
    args: &ServeArgs,
    engine: &durable::runner::Engine,
    runtime: &mut durable::runner::RuntimeConfig,
) -> Result<Vec<(config::Workflow, durable::runner::LoadedWorkflow)>, ExitCode> {
    let Some(path) = &args.config else {
        return Ok(Vec::new());
    };
    let workflows = config::read(path, &args.drive).map_err(|e| {
        error(e);
        ExitCode::Usage
    })?;
    let mut out: Vec<(config::Workflow, durable::runner::LoadedWorkflow)> = Vec::new();
    for w in workflows {
        let at = format!("{}: [workflows.{}]", path.display(), w.name);
        let own = config(db, &w.drive, true).inspect_err(|_| {
            error(format_args!(
                "{at}: its grants or limits are refused (above)"
            ));
        })?;
        let bytes = std::fs::read(&w.component).map_err(|e| {
            error(format_args!(
                "{at}: component {}: {e}",
                w.component.display()
            ));
            ExitCode::Usage
        })?;
        let wf =
            tokio::task::block_in_place(|| engine.load(&w.name, Arc::new(bytes))).map_err(|e| {
                error(format_args!("{at}: {}", super::run::chain(&e)));
                ExitCode::Usage
            })?;
        if let Some((other, _)) = out.iter().find(|(_, o)| o.digest == wf.digest) {
            error(format_args!(
                "{at}: the same component as [workflows.{}]; limits and grants go with a \
                 component, so give each workflow its own",
                other.name
            ));
            return Err(ExitCode::Usage);
        }
        runtime
            .per_component
            .insert(wf.digest.clone(), (own.limits, own.grants));
        out.push((w, wf));
    }
    Ok(out)
}
