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

pub use config::parse_retention;
mod dispatch;
mod metrics;
mod retention;
mod schedule;
mod ui;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use durable::errors::chain;
use durable::runner::{Engine, LoadedWorkflow, Observer, Runtime, RuntimeConfig};
use durable::settings::DriveSettings;
use durable::store::{Location, StoreError};

use dispatch::Dispatcher;

fn error(message: impl std::fmt::Display) {
    eprintln!("durable: {message}");
}

/// What `durable serve` runs with: its command-line flags of the same
/// names (see `durable serve --help`).
#[derive(Debug, Clone)]
pub struct ServeSettings {
    /// The address to listen on (port 0: any free one).
    pub listen: SocketAddr,
    /// The bearer token every request must carry.
    pub token: Option<String>,
    /// A file holding the token (instead of `token`).
    pub token_file: Option<PathBuf>,
    /// More names the server answers to (`Host`), beyond its own.
    pub allow_hosts: Vec<String>,
    /// Largest component upload, in MiB.
    pub max_body_mb: usize,
    /// Most uploads received at once.
    pub max_uploads: u32,
    /// Memory for compiled components kept loaded, in MiB.
    pub max_loaded_mb: usize,
    /// Most long polls open at once.
    pub max_long_polls: usize,
    /// How long running steps get to finish after a stop, in ms.
    pub shutdown_grace_ms: u64,
    /// `durable.toml`: the registered workflows.
    pub config: Option<PathBuf>,
    /// How long finished runs are kept, in ms, unless their workflow's
    /// `retention` in durable.toml says (this wins over the file's
    /// default). `None`: kept for ever.
    pub retention_ms: Option<i64>,
    /// How often retention looks for runs to delete.
    pub retention_every: Duration,
    /// Where spans go (`--otlp-endpoint`, else durable.toml's
    /// `otlp_endpoint`), with the exporter's `service.name`.
    pub otlp: Option<durable_otlp::Config>,
    /// The grants and limits of drives (each registered workflow adjusts
    /// a copy).
    pub drive: DriveSettings,
}

/// Why the server did not start, or stopped on an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The settings are refused: a token, an address, `durable.toml`, a
    /// registered component. The message names what and why.
    #[error("{0}")]
    Settings(String),
    /// The engine could not start.
    #[error("{0}")]
    Engine(String),
    /// The database could not be opened or written.
    #[error("{}", chain(.0))]
    Store(#[from] StoreError),
}

/// Runs `durable serve` on database `db` until `shutdown` resolves (the
/// CLI passes SIGTERM or SIGINT): then no new requests are taken, running
/// steps get `shutdown_grace_ms` to finish and be recorded, and the runs
/// are released. Step output and progress go to `observer`.
///
/// # Errors
/// [`ServeError`], before the server answers its first request.
pub async fn serve(
    db: &Location,
    mut args: ServeSettings,
    observer: Arc<dyn Observer>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServeError> {
    args.token = token(&args).map_err(ServeError::Settings)?;
    if !args.listen.ip().is_loopback() && args.token.is_none() {
        return Err(ServeError::Settings(format!(
            "refusing to listen on {} without a token: anyone who can reach it could start runs; \
             set --token-file (or DURABLE_TOKEN), or listen on 127.0.0.1",
            args.listen
        )));
    }
    if args.allow_hosts.iter().any(|h| h.trim() == "*") && args.token.is_none() {
        return Err(ServeError::Settings(
            "--allow-host '*' turns off the check that stops DNS rebinding: any web page could \
             then drive this server; give it a token too (--token-file)"
                .into(),
        ));
    }
    // The names are checked before anything is opened (the listen address
    // they are matched with comes later, once bound).
    api::Hosts::new(args.listen, &args.allow_hosts).map_err(ServeError::Settings)?;
    let mut config = args
        .drive
        .runtime_config(db)
        .map_err(ServeError::Settings)?;
    config.observer = observer;
    config.max_loaded_bytes = args.max_loaded_mb.saturating_mul(1 << 20);
    let engine = Engine::with_options(config.engine_options())
        .map_err(|e| ServeError::Engine(format!("could not start the engine: {e:#}")))?;
    let (registered, queues, default_retention, file_otlp) =
        load_registered(db, &args, &engine, &mut config)?;
    let otlp = match (&args.otlp, file_otlp) {
        (Some(c), _) => Some(c.clone()),
        (None, Some(endpoint)) => Some(durable_otlp::Config {
            endpoint,
            service_name: "durable".into(),
            service_version: env!("CARGO_PKG_VERSION").into(),
        }),
        (None, None) => None,
    };
    let exporter = otlp.map(durable_otlp::Exporter::start);
    config.spans = exporter
        .clone()
        .map(|e| e as Arc<dyn durable::trace::SpanSink>);
    let retention = retention::Policy {
        default_ms: args.retention_ms.or(default_retention),
        workflows: registered
            .iter()
            .filter_map(|(entry, _)| Some((entry.name.clone(), entry.retention_ms?)))
            .collect(),
        every: args.retention_every,
    };
    let store = args.drive.open_store(db).await?;
    for (entry, wf) in &registered {
        store
            .put_component(&wf.digest, wf.bytes.clone(), Some(&entry.name))
            .await?;
    }
    // durable.toml's queues are what it says on every start; a queue a
    // workflow names may also be one defined over the API before.
    for queue in queues {
        store.put_queue(queue).await?;
    }
    let defined = store.queues().await?;
    for (entry, _) in &registered {
        if let Some(q) = &entry.queue
            && !defined.iter().any(|d| &d.config.name == q)
        {
            return Err(ServeError::Settings(format!(
                "[workflows.{}]: queue {q:?} is not defined: add [queues.{q}] to durable.toml \
                 (or define it with PUT /v1/queues/{q})",
                entry.name
            )));
        }
    }
    let listener = listen(args.listen)
        .map_err(|e| ServeError::Settings(format!("cannot listen on {}: {e}", args.listen)))?;
    let address = listener.local_addr().map_or(args.listen, |a| a);
    let hosts = api::Hosts::new(address, &args.allow_hosts).map_err(ServeError::Settings)?;
    let metrics = Arc::new(metrics::Metrics::with_exporter(exporter.clone()));
    config.observer = Arc::new(durable::runner::Tee(
        config.observer.clone(),
        Arc::new(metrics::Counting {
            metrics: metrics.clone(),
        }),
    ));
    // The address goes out first, before any drive or tick can print a
    // step's output: scripts read it from the first line.
    eprintln!("durable: serving on http://{address} (database {})", db);
    // A child workflow is a registered workflow's name, nothing else.
    config.links_only = true;
    let rt = Arc::new(Runtime::with_engine(engine, store.clone(), config));
    for (entry, wf) in &registered {
        rt.link(&entry.name, wf);
    }
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
                    queue: entry.queue.clone(),
                    from_config: true,
                },
            );
        }
    }
    for (entry, wf) in registered {
        if let Some(s) = entry.schedule {
            schedule::spawn(dispatcher.clone(), wf, s, entry.queue);
        }
    }
    let pruning = retention::spawn(store.clone(), retention);
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
        // `into_make_service`: the routes are made ready for requests
        // once. Given the router itself, axum rebuilds its whole route
        // table for every connection (half a millisecond each here).
        axum::serve(listener, app.into_make_service())
            .with_graceful_shutdown(async move {
                let _ = stop_rx.wait_for(|s| *s).await;
            })
            .await
    });
    shutdown.await;
    let grace = Duration::from_millis(args.shutdown_grace_ms);
    error(format_args!(
        "stopping: no new requests; steps already running get {} ms to finish and be recorded",
        grace.as_millis()
    ));
    stopping.store(true, std::sync::atomic::Ordering::SeqCst);
    let _ = stop_tx.send(true);
    dispatcher.stop();
    if let Some(pruning) = pruning {
        // Between two batches or in one: a batch is one transaction.
        pruning.abort();
    }
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
    if let Some(exporter) = &exporter {
        exporter.shutdown(Duration::from_secs(5)).await;
    }
    drop(rt);
    store.close().await;
    error("stopped");
    Ok(())
}

/// Connections waiting to be accepted: a burst of clients (a thousand
/// opened at once, as `fetch` does for a thousand concurrent requests)
/// waits in the kernel's queue rather than having its SYNs dropped and
/// retried a second later (the kernel caps it at `net.core.somaxconn`).
const LISTEN_BACKLOG: u32 = 4096;

/// A listening socket on `address` with [`LISTEN_BACKLOG`].
fn listen(address: std::net::SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket = match address {
        std::net::SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        std::net::SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    // As std's bind does: a restarted server takes its port back at once.
    socket.set_reuseaddr(true)?;
    socket.bind(address)?;
    socket.listen(LISTEN_BACKLOG)
}

/// The server's token: `--token` (or `DURABLE_TOKEN`) or the contents of
/// `--token-file`, without surrounding whitespace; `None` when not given or
/// empty.
///
/// # Errors
/// Both given, an unreadable file, or a token that a header cannot carry.
fn token(args: &ServeSettings) -> Result<Option<String>, String> {
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
    db: &Location,
    args: &ServeSettings,
    engine: &Engine,
    runtime: &mut RuntimeConfig,
) -> Result<Registrations, ServeError> {
    let Some(path) = &args.config else {
        return Ok((Vec::new(), Vec::new(), None, None));
    };
    let config = config::read(path, &args.drive).map_err(ServeError::Settings)?;
    let mut out: Vec<(config::Workflow, LoadedWorkflow)> = Vec::new();
    for w in config.workflows {
        let at = format!("{}: [workflows.{}]", path.display(), w.name);
        let refused = |e: String| ServeError::Settings(format!("{at}: {e}"));
        let own = w.drive.runtime_config(db).map_err(refused)?;
        let bytes = std::fs::read(&w.component)
            .map_err(|e| refused(format!("component {}: {e}", w.component.display())))?;
        let wf = tokio::task::block_in_place(|| engine.load(&w.name, Arc::new(bytes)))
            .map_err(|e| refused(chain(&e)))?;
        if let Some((other, _)) = out.iter().find(|(_, o)| o.digest == wf.digest) {
            return Err(refused(format!(
                "the same component as [workflows.{}]; limits and grants go with a \
                 component, so give each workflow its own",
                other.name
            )));
        }
        runtime
            .per_component
            .insert(wf.digest.clone(), (own.limits, own.grants));
        out.push((w, wf));
    }
    // Step limits hold for every workflow's steps.
    runtime.step_limits.extend(config.step_limits);
    Ok((
        out,
        config.queues,
        config.retention_ms,
        config.otlp_endpoint,
    ))
}

/// durable.toml's workflows, loaded, its queues, its default retention and
/// its OTLP endpoint.
type Registrations = (
    Vec<(config::Workflow, LoadedWorkflow)>,
    Vec<durable::store::QueueConfig>,
    Option<i64>,
    Option<durable_otlp::Endpoint>,
);
