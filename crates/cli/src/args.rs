//! The command line's grammar: the verbs and their flags (clap). What the
//! flags mean to drives is `durable::settings::DriveSettings`, which
//! [`DriveArgs::settings`] converts them into.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Durable execution of WebAssembly workflows.
///
/// Runs workflow components so that every step's result is committed to a
/// SQLite database before the workflow continues; an interrupted run is
/// resumed without executing its committed steps again.
#[derive(Debug, Parser)]
#[command(name = "durable", version, about, long_about = None)]
#[command(after_help = crate::exit::HELP)]
pub struct Cli {
    /// The database file [default: durable.db in the working directory],
    /// or a PostgreSQL URL (`postgres://USER@HOST/DB?sslmode=verify-full`);
    /// a password in it is better given in DURABLE_DB than here, where
    /// `ps` shows it.
    #[arg(
        long,
        global = true,
        value_name = "PATH",
        env = "DURABLE_DB",
        hide_env_values = true
    )]
    pub db: Option<PathBuf>,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The verbs.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start a run (or resume it, if --id names an unfinished one).
    ///
    /// Prints one line per step on stderr as it finishes, and the run's
    /// output JSON on stdout. The same --id again resumes an unfinished run
    /// or prints the stored output of a finished one.
    Run(RunArgs),
    /// Continue interrupted runs (all of them when no id is given).
    ///
    /// With one id, prints that run's output JSON on stdout. Otherwise
    /// prints one JSON object per run: {"id", "status", "output", "error"}.
    Resume(ResumeArgs),
    /// List runs, newest first.
    List(ListArgs),
    /// Show a run: its input, status, output or error, and its step tree.
    Show(ShowArgs),
    /// Cancel a run: at once if no process drives it, else at its next
    /// durable call (steps already running finish and are recorded).
    Cancel(CancelArgs),
    /// Start a new run from a copy of a run's history before a step, so that
    /// the step and everything after it run again.
    Fork(ForkArgs),
    /// Send an event to a run: its workflow receives it from `await-event`.
    ///
    /// The event is committed before this exits 0. A run waiting for it is
    /// woken (the process that waits on it notices within 100 ms).
    Event(EventArgs),
    /// Crash a workflow at every point (after each step commits, and
    /// between each step's return and its commit), resume it, and report
    /// anything that breaks a promise: an output that differs, a committed
    /// step that ran again, a step that is not idempotent, a step body whose
    /// nested calls changed when it ran again, a replay that diverges.
    ///
    /// Every run happens in a scratch database; the steps really run (with
    /// the grants given), so grant test directories and services. Exit 0
    /// when everything holds, 1 when something does not, 2 on bad usage.
    Check(CheckArgs),
    /// Replay the history of unfinished runs (or the runs named) against a
    /// new component, executing nothing, and report each as compatible
    /// (and how far it replayed) or divergent (where, and which calls).
    /// Exit 0 when every run is compatible, 1 when one is not.
    UpgradeCheck(UpgradeCheckArgs),
    /// List the components stored in the database, or delete one that no
    /// run uses.
    #[command(subcommand)]
    Components(ComponentsCommand),
    /// Delete finished runs older than a duration, with everything they
    /// recorded (steps, attempts, output, events), in small transactions
    /// that let running drives commit in between.
    Prune(PruneArgs),
    /// Copy the SQLite database to a new file, online: a consistent
    /// snapshot while runs go on, synced before this exits 0.
    Backup(BackupArgs),
    /// Write runs with their whole history (and their components) as JSON
    /// lines on stdout, for `durable import` (docs/export.md).
    Export(ExportArgs),
    /// Load runs written by `durable export` into this database (SQLite or
    /// PostgreSQL); runs it has already are skipped.
    Import(ImportArgs),
    /// Write the WIT package this durable implements (durable:workflow and
    /// its deps/) into a folder, for guest tools and bindings.
    Wit(WitArgs),
    /// Create a workflow project that builds and runs as it is: Rust,
    /// Python or JavaScript, from a template, with this durable's SDK
    /// vendored in vendor/durable-sdk and a test you can run.
    New(NewArgs),
    /// Build a project folder into build/NAME.wasm with its language's tool
    /// (cargo, componentize-py, rolldown + componentize-js) and this
    /// durable's WIT. Installs nothing: a missing tool is named with the
    /// command that installs it. Prints the component's path on stdout.
    Build(BuildArgs),
    #[cfg(feature = "serve")]
    /// Serve an HTTP API and own every run in the database: resume the
    /// interrupted ones, drive new ones, wake sleeping runs at their time
    /// and runs whose event arrived, until SIGTERM or SIGINT.
    Serve(ServeArgs),
}

/// `durable components ...`.
#[derive(Debug, clap::Subcommand)]
pub enum ComponentsCommand {
    /// Every stored component, newest first: digest, name, size, when it
    /// was stored, and how many runs use it (open ones in brackets).
    List {
        /// Print JSON lines instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Delete a stored component. Refused (exit 4) while any run, finished
    /// or not, uses it: a fork or a resume needs its code; exit 3 when no
    /// component has the digest.
    Delete {
        /// The component's digest (`durable components list` shows them).
        #[arg(value_name = "DIGEST")]
        digest: String,
    },
}

/// Arguments of `durable check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The workflow component (.wasm), or a project folder that `durable
    /// build` built (its build/NAME.wasm).
    #[arg(value_name = "COMPONENT")]
    pub component: PathBuf,

    /// The run's input as JSON [default: null].
    #[arg(long, value_name = "JSON", conflicts_with = "input_file")]
    pub input: Option<String>,

    /// Read the run's input JSON from a file ("-" for stdin).
    #[arg(long, value_name = "PATH")]
    pub input_file: Option<PathBuf>,

    /// An event the workflow awaits, sent before the run starts (events of
    /// one name are received in the order given). Repeatable.
    #[arg(long, value_name = "NAME=JSON")]
    pub event: Vec<String>,

    /// Check at most this many crash points, evenly spread over the run
    /// [default: all].
    #[arg(long, value_name = "NUM")]
    pub max_points: Option<usize>,

    /// Crash points checked at once [default: the number of CPUs].
    #[arg(long, value_name = "NUM")]
    pub jobs: Option<usize>,

    /// Print the report as JSON (see docs/json.md).
    #[arg(long)]
    pub json: bool,

    #[command(flatten)]
    pub drive: DriveArgs,
}

/// Arguments of `durable upgrade-check`.
#[derive(Debug, Args)]
pub struct UpgradeCheckArgs {
    /// The new workflow component (.wasm).
    #[arg(value_name = "NEW_COMPONENT")]
    pub component: PathBuf,

    /// Check this run (repeatable) [default: every unfinished run].
    #[arg(long = "run", value_name = "RUN_ID")]
    pub runs: Vec<String>,

    /// Print the report as JSON (see docs/json.md).
    #[arg(long)]
    pub json: bool,

    /// Directory of compiled components [default: as for run].
    #[arg(long, value_name = "PATH")]
    pub cache_dir: Option<PathBuf>,
}

/// Arguments of `durable prune`.
#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Runs that finished more than this long ago: a whole number and a
    /// unit (ms, s, m, h, d): 30d, 12h, 0s.
    #[arg(long, value_name = "DURATION")]
    pub older_than: String,
    /// Only runs that ended so: succeeded, failed or cancelled.
    #[arg(long, value_name = "STATUS")]
    pub status: Option<String>,
    /// Only runs of this workflow.
    #[arg(long, value_name = "NAME")]
    pub workflow: Option<String>,
    /// Then delete the components no run uses any longer.
    #[arg(long)]
    pub components: bool,
    /// Count what would be deleted; delete nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// Arguments of `durable export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// The runs to export.
    #[arg(value_name = "RUN_ID", required_unless_present = "all")]
    pub ids: Vec<String>,
    /// Every run of the database, oldest first.
    #[arg(long, conflicts_with = "ids")]
    pub all: bool,
    /// Leave the components out (the database that imports has them).
    #[arg(long)]
    pub no_components: bool,
}

/// Arguments of `durable import`.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The file `durable export` wrote ("-" for stdin).
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
}

/// Arguments of `durable backup`.
#[derive(Debug, Args)]
pub struct BackupArgs {
    /// The copy to write (a new file).
    #[arg(value_name = "PATH")]
    pub dest: PathBuf,
}

/// Arguments of `durable wit`.
#[derive(Debug, Args)]
pub struct WitArgs {
    /// The folder to write durable.wit and deps/ into.
    #[arg(long, value_name = "DIR", default_value = "wit")]
    pub out: PathBuf,
}

/// Arguments of `durable new`.
#[derive(Debug, Args)]
pub struct NewArgs {
    /// The project's folder; its last part is the project's name
    /// (lowercase letters, digits, '-' and '_').
    #[arg(value_name = "NAME")]
    pub name: PathBuf,

    /// The language: rust, python or js.
    #[arg(long, value_name = "LANG")]
    pub lang: durable_kit::Lang,

    /// What the workflow starts as: hello (two steps), onboarding (steps
    /// in parallel) or approval (waits for an event, with a timeout).
    #[arg(long, value_name = "TEMPLATE", default_value = "hello")]
    pub template: durable_kit::scaffold::Template,
}

/// Arguments of `durable build`.
#[derive(Debug, Args)]
pub struct BuildArgs {
    /// The project folder.
    #[arg(value_name = "DIR", default_value = ".")]
    pub dir: PathBuf,
}

/// Arguments of `durable event`.
#[derive(Debug, Args)]
pub struct EventArgs {
    /// The run.
    #[arg(value_name = "RUN_ID")]
    pub run: String,
    /// The event's name, as the workflow awaits it.
    #[arg(value_name = "NAME")]
    pub name: String,
    /// The payload as JSON [default: null].
    #[arg(long, value_name = "JSON", conflicts_with = "data_file")]
    pub data: Option<String>,
    /// Read the payload JSON from a file ("-" for stdin).
    #[arg(long, value_name = "PATH")]
    pub data_file: Option<PathBuf>,
    /// An id for the event: sending the same id to the run again stores
    /// nothing (for senders that retry).
    #[arg(long = "id", value_name = "EVENT_ID")]
    pub event_id: Option<String>,
    /// Largest payload, in bytes.
    #[arg(long, value_name = "BYTES", default_value_t = 1 << 20)]
    pub max_input_bytes: usize,
}

/// Arguments of `durable list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only runs with this status (queued, running, waiting, succeeded, failed,
    /// cancelled).
    #[arg(long, value_name = "STATUS")]
    pub status: Option<String>,
    /// Only runs of this workflow.
    #[arg(long, value_name = "NAME")]
    pub workflow: Option<String>,
    /// Only runs whose id starts with this.
    #[arg(long, value_name = "ID_PREFIX")]
    pub prefix: Option<String>,
    /// Only the child workflows of this run.
    #[arg(long, value_name = "RUN_ID")]
    pub parent: Option<String>,
    /// Only runs with this tag (repeatable: all of them).
    #[arg(long = "tag", value_name = "KEY=VALUE", value_parser = parse_tag)]
    pub tags: Vec<(String, String)>,
    /// At most this many runs (0: all).
    #[arg(long, value_name = "NUM", default_value_t = 50)]
    pub limit: usize,
    /// Print JSON (one array; see docs/json.md).
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `durable show`.
#[derive(Debug, Args)]
pub struct ShowArgs {
    /// The run.
    #[arg(value_name = "RUN_ID")]
    pub id: String,
    /// Add each step's log lines and captured stdout/stderr.
    #[arg(long)]
    pub logs: bool,
    /// Print JSON (one object; see docs/json.md).
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `durable cancel`.
#[derive(Debug, Args)]
pub struct CancelArgs {
    /// The run.
    #[arg(value_name = "RUN_ID")]
    pub id: String,
}

/// Arguments of `durable fork`.
#[derive(Debug, Args)]
pub struct ForkArgs {
    /// The run to fork.
    #[arg(value_name = "RUN_ID")]
    pub id: String,
    /// The first step to run again (a key as `durable show` prints it).
    #[arg(long, value_name = "STEP_KEY")]
    pub from_step: String,
    /// The new run's id [default: <RUN_ID>-fork-<time>].
    #[arg(long = "id", value_name = "NEW_ID")]
    pub new_id: Option<String>,
    /// Only create the new run; start it later with `durable resume`.
    #[arg(long)]
    pub no_start: bool,

    #[command(flatten)]
    pub drive: DriveArgs,

    #[command(flatten)]
    pub faults: FaultArgs,
}

/// Arguments of `durable run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The workflow component (.wasm).
    #[arg(value_name = "COMPONENT")]
    pub component: PathBuf,

    /// The run's input as JSON [default: null].
    #[arg(long, value_name = "JSON", conflicts_with = "input_file")]
    pub input: Option<String>,

    /// Read the run's input JSON from a file ("-" for stdin).
    #[arg(long, value_name = "PATH")]
    pub input_file: Option<PathBuf>,

    /// The run id [default: a new one, printed on stderr].
    #[arg(long, value_name = "RUN_ID")]
    pub id: Option<String>,

    /// Child workflows named NAME run this component (repeatable); a child
    /// of a name not linked runs COMPONENT itself.
    #[arg(long = "link", value_name = "NAME=PATH", value_parser = parse_link)]
    pub links: Vec<(String, PathBuf)>,

    /// Tags the run starts with, to find it by (`list --tag`; repeatable).
    #[arg(long = "tag", value_name = "KEY=VALUE", value_parser = parse_tag)]
    pub tags: Vec<(String, String)>,

    /// Refused: queues are a server's (a run started here is driven here,
    /// at once). Start queued runs with `POST /v1/runs {"queue": ...}` on
    /// `durable serve`.
    #[arg(long, value_name = "NAME")]
    pub queue: Option<String>,

    #[command(flatten)]
    pub drive: DriveArgs,

    #[command(flatten)]
    pub faults: FaultArgs,
}

/// Arguments of `durable resume`.
#[derive(Debug, Args)]
pub struct ResumeArgs {
    /// Runs to resume [default: every unfinished run no process drives].
    #[arg(value_name = "RUN_ID")]
    pub ids: Vec<String>,

    /// Switch the runs to this component: each run's history is replayed
    /// against it first (as upgrade-check does), and a run that diverges is
    /// refused unless --force. The switch is recorded in the run.
    #[arg(long, value_name = "NEW_COMPONENT", requires = "ids")]
    pub component: Option<PathBuf>,

    /// With --component: switch runs that diverge too. Their workflow's
    /// records from the divergence on are superseded (kept aside for
    /// inspection), and the new code runs from there: steps it calls
    /// there run again, even those that ran before.
    #[arg(long, requires = "component")]
    pub force: bool,

    /// Child workflows named NAME that the runs start from now on run this
    /// component (repeatable); a child of a name not linked runs its
    /// parent's component. Children started earlier keep theirs.
    #[arg(long = "link", value_name = "NAME=PATH", value_parser = parse_link)]
    pub links: Vec<(String, PathBuf)>,

    #[command(flatten)]
    pub drive: DriveArgs,

    #[command(flatten)]
    pub faults: FaultArgs,
}

/// `durable serve`.
#[cfg(feature = "serve")]
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on; port 0 picks a free port (the address is
    /// printed on stderr).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:7070")]
    pub listen: std::net::SocketAddr,

    /// Bearer token every API request must carry (`Authorization: Bearer
    /// TOKEN`). Required to listen on an address other than loopback.
    /// Other users of the machine see a command line (`ps`): prefer
    /// --token-file or DURABLE_TOKEN.
    #[arg(
        long,
        value_name = "TOKEN",
        env = "DURABLE_TOKEN",
        hide_env_values = true
    )]
    pub token: Option<String>,

    /// Read the bearer token from this file (surrounding whitespace, such
    /// as the final newline, is not part of it). Keep the file private.
    #[arg(long, value_name = "PATH")]
    pub token_file: Option<PathBuf>,

    /// Also answer requests whose `Host` is NAME (any port): the name a
    /// reverse proxy or other machines reach the server by. Requests for
    /// other names are refused (DNS rebinding); the listen address,
    /// localhost, 127.0.0.1 and [::1] are always answered. Repeatable; `*`
    /// answers any name.
    #[arg(long = "allow-host", value_name = "NAME")]
    pub allow_hosts: Vec<String>,

    /// Largest component upload, in MiB (JSON bodies are capped at
    /// --max-input-bytes and 64 KiB more, whatever this says).
    #[arg(long, value_name = "NUM", default_value_t = 64)]
    pub max_body_mb: usize,

    /// Most uploads received at once; more wait their turn before their
    /// bodies are read, so memory for upload bodies stays under this many
    /// times --max-body-mb.
    #[arg(long, value_name = "NUM", default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_uploads: u32,

    /// Memory for compiled components kept loaded, in MiB: the least
    /// recently used are dropped beyond it (and loaded again, from the
    /// compile cache, when a run needs them).
    #[arg(long, value_name = "NUM", default_value_t = 128)]
    pub max_loaded_mb: usize,

    /// Most long polls (`GET /v1/runs/{id}/result?wait=...`) open at once;
    /// more are answered 503 with Retry-After.
    #[arg(long, value_name = "NUM", default_value_t = 10_000)]
    pub max_long_polls: usize,

    /// How long running steps get to finish and be recorded after SIGTERM
    /// or SIGINT, in ms; then they are abandoned (and run again on the next
    /// start).
    #[arg(long, value_name = "MS", default_value_t = 10_000)]
    pub shutdown_grace_ms: u64,

    /// durable.toml: registered workflows (name, component, grants, limits,
    /// schedule); see docs/api.md.
    #[arg(long, value_name = "PATH")]
    pub config: Option<PathBuf>,

    /// Delete finished runs older than this (30d, 12h), unless their
    /// workflow has its own `retention` in durable.toml; wins over the
    /// file's top-level `retention` [default: kept for ever].
    #[arg(long, value_name = "DURATION", value_parser = parse_retention)]
    pub retention: Option<i64>,

    /// How often retention looks for runs to delete.
    #[arg(long, value_name = "DURATION", default_value = "10m", value_parser = parse_every)]
    pub retention_every: i64,

    #[command(flatten)]
    pub drive: DriveArgs,
}

/// The defaults of [`DriveArgs`]: the runtime's, one source for the flags
/// and for everything else that makes [`DriveSettings`].
///
/// [`DriveSettings`]: durable::settings::DriveSettings
fn defaults() -> durable::settings::DriveSettings {
    durable::settings::DriveSettings::default()
}

/// Options of every verb that drives runs.
#[derive(Debug, Clone, Args)]
pub struct DriveArgs {
    /// Most step instances running at once; more wait their turn.
    #[arg(long, value_name = "NUM", default_value_t = defaults().max_parallel)]
    pub max_parallel: usize,

    /// Directory of compiled components [default: $DURABLE_CACHE_DIR, else
    /// $XDG_CACHE_HOME/durable, else ~/.cache/durable].
    #[arg(long, value_name = "PATH")]
    pub cache_dir: Option<PathBuf>,

    /// What a committed step survives: power-loss (fsync at every commit,
    /// the default) or process-crash (fsync at checkpoints only; faster,
    /// but the last commits can be lost if the machine loses power).
    #[arg(long, value_enum, value_name = "MODE", default_value_t = DurabilityArg::PowerLoss, env = "DURABLE_DURABILITY")]
    pub durability: DurabilityArg,

    /// Let steps read environment variable NAME (its value here), or see
    /// NAME=VALUE. Repeatable. Steps get no environment otherwise.
    #[arg(long, value_name = "NAME[=VALUE]", help_heading = "Step capabilities")]
    pub allow_env: Vec<String>,

    /// Let steps read and write directory HOST_PATH, seen by the guest at
    /// GUEST_PATH (default: the same path). Repeatable.
    #[arg(
        long,
        value_name = "HOST_PATH[::GUEST_PATH]",
        help_heading = "Step capabilities"
    )]
    pub allow_dir: Vec<String>,

    /// Let steps read (only) directory HOST_PATH, seen at GUEST_PATH.
    /// Repeatable.
    #[arg(
        long,
        value_name = "HOST_PATH[::GUEST_PATH]",
        help_heading = "Step capabilities"
    )]
    pub allow_dir_ro: Vec<String>,

    /// Let steps open TCP connections to HOST:PORT (resolved at start).
    /// Repeatable. Steps get no network otherwise.
    #[arg(long, value_name = "HOST:PORT", help_heading = "Step capabilities")]
    pub allow_tcp: Vec<String>,

    /// Let steps send HTTP requests to hosts that match PATTERN:
    /// `api.example.com`, `*.example.com` (its subdomains), an IP address,
    /// optionally with a scheme and a port (`http://127.0.0.1:8080`); no
    /// scheme allows http and https, no port any port. Repeatable. The
    /// workflow instance never may.
    #[arg(long, value_name = "PATTERN", help_heading = "Step capabilities")]
    pub allow_http: Vec<String>,

    /// Trust the CA certificates in this PEM file for HTTPS, besides the
    /// well-known roots built into durable. Repeatable.
    #[arg(long, value_name = "FILE", help_heading = "Step capabilities")]
    pub allow_http_ca: Vec<PathBuf>,

    /// Most memory one workflow or step instance may use, in MiB.
    #[arg(
        long,
        value_name = "NUM",
        default_value_t = defaults().max_memory_mb,
        help_heading = "Limits"
    )]
    pub max_memory_mb: usize,

    /// Time one attempt of a step may take unless its options say
    /// otherwise, in ms.
    #[arg(
        long,
        value_name = "MS",
        default_value_t = defaults().step_timeout_ms,
        help_heading = "Limits"
    )]
    pub step_timeout_ms: u64,

    /// Attempts per step unless its options say otherwise (1: no retries).
    /// Retries wait 100 ms, then twice as long each time (at most 10 s),
    /// less up to half at random.
    #[arg(long, value_name = "NUM", default_value_t = defaults().max_attempts, help_heading = "Limits")]
    pub max_attempts: u32,

    /// Largest step result or workflow output, in bytes.
    #[arg(long, value_name = "BYTES", default_value_t = defaults().max_result_bytes, help_heading = "Limits")]
    pub max_result_bytes: usize,

    /// Largest total of recorded results, failed attempts and guest output
    /// in one run, in bytes; a run that would exceed it fails.
    #[arg(long, value_name = "BYTES", default_value_t = defaults().max_history_bytes, help_heading = "Limits")]
    pub max_history_bytes: u64,

    /// Most attempts a step's own retry policy may ask for; more are cut
    /// to this.
    #[arg(
        long,
        value_name = "NUM",
        default_value_t = defaults().max_attempts_cap,
        help_heading = "Limits"
    )]
    pub max_attempts_cap: u32,

    /// Longest the workflow code may run between two durable calls, in ms;
    /// past it the run fails (its clocks are frozen, so a loop waiting for
    /// time to pass never ends). `durable cancel` interrupts it too.
    #[arg(
        long,
        value_name = "MS",
        default_value_t = defaults().workflow_timeout_ms,
        help_heading = "Limits"
    )]
    pub workflow_timeout_ms: u64,

    /// Largest run input, in bytes.
    #[arg(long, value_name = "BYTES", default_value_t = defaults().max_input_bytes, help_heading = "Limits")]
    pub max_input_bytes: usize,

    /// Largest body of one HTTP request a step sends, and of one response
    /// it receives, in MiB.
    #[arg(
        long,
        value_name = "NUM",
        default_value_t = defaults().max_http_body_mb,
        help_heading = "Limits"
    )]
    pub max_http_body_mb: u64,

    /// Longest a step's HTTP request may take to connect (name lookup, TCP,
    /// TLS), in ms; never longer than what is left of the step's timeout.
    #[arg(
        long,
        value_name = "MS",
        default_value_t = defaults().http_connect_timeout_ms,
        help_heading = "Limits"
    )]
    pub http_connect_timeout_ms: u64,

    /// Longest a step's HTTP request may wait for its response to start,
    /// in ms (default: only the step's timeout bounds it).
    #[arg(long, value_name = "MS", help_heading = "Limits")]
    pub http_first_byte_timeout_ms: Option<u64>,

    /// How long a commit waits out another process's write lock on the
    /// database before it fails (exit code 6), in ms.
    #[arg(long, value_name = "MS", default_value_t = defaults().lock_wait_ms)]
    pub lock_wait_ms: u64,

    /// How long a run's lease lasts without renewal, in ms (renewed every
    /// third of it): how long another process waits to take over the runs
    /// of one that stopped without proof of its death (another machine, a
    /// paused process).
    #[arg(
        long,
        value_name = "MS",
        env = "DURABLE_LEASE_MS",
        default_value_t = defaults().lease_ms
    )]
    pub lease_ms: u64,

    /// Export spans of every drive, step attempt, wait and step HTTP
    /// request to this OpenTelemetry collector (OTLP over HTTP/protobuf, a
    /// base URL such as http://localhost:4318; `/v1/traces` is added).
    /// Also OTEL_EXPORTER_OTLP_TRACES_ENDPOINT (used as it is) [default:
    /// none, no spans are made].
    #[arg(
        long,
        value_name = "URL",
        env = "OTEL_EXPORTER_OTLP_ENDPOINT",
        hide_env_values = true
    )]
    pub otlp_endpoint: Option<String>,

    /// At most N attempts of step NAME at once, across every run and every
    /// process on the database (repeatable): what protects a downstream
    /// service. Attempts beyond it wait, holding no instance.
    #[arg(
        long = "step-limit",
        value_name = "NAME=N",
        value_parser = parse_step_limit,
        help_heading = "Limits"
    )]
    pub step_limits: Vec<(String, u32)>,
}

/// `--step-limit NAME=N`.
fn parse_step_limit(s: &str) -> Result<(String, u32), String> {
    let (name, n) = s
        .rsplit_once('=')
        .ok_or_else(|| format!("{s:?}: expected NAME=N"))?;
    durable::runner::validate_step_name(name).map_err(|e| e.to_string())?;
    let n: u32 = n
        .parse()
        .map_err(|_| format!("{s:?}: N must be a whole number from 1"))?;
    if n == 0 {
        return Err(format!("{s:?}: a limit of 0 would run nothing"));
    }
    Ok((name.to_string(), n))
}

impl DriveArgs {
    /// The grants and limits these flags state.
    pub fn settings(&self) -> durable::settings::DriveSettings {
        durable::settings::DriveSettings {
            max_parallel: self.max_parallel,
            cache_dir: self.cache_dir.clone(),
            durability: self.durability.into(),
            allow_env: self.allow_env.clone(),
            allow_dir: self.allow_dir.clone(),
            allow_dir_ro: self.allow_dir_ro.clone(),
            allow_tcp: self.allow_tcp.clone(),
            allow_http: self.allow_http.clone(),
            allow_http_ca: self.allow_http_ca.clone(),
            max_memory_mb: self.max_memory_mb,
            step_timeout_ms: self.step_timeout_ms,
            max_attempts: self.max_attempts,
            max_result_bytes: self.max_result_bytes,
            max_history_bytes: self.max_history_bytes,
            max_attempts_cap: self.max_attempts_cap,
            workflow_timeout_ms: self.workflow_timeout_ms,
            max_input_bytes: self.max_input_bytes,
            max_http_body_mb: self.max_http_body_mb,
            http_connect_timeout_ms: self.http_connect_timeout_ms,
            http_first_byte_timeout_ms: self.http_first_byte_timeout_ms,
            lock_wait_ms: self.lock_wait_ms,
            lease_ms: self.lease_ms,
            step_limits: self.step_limits.clone(),
        }
    }
}

/// Flags of the verbs that drive runs in this process (`run`, `resume`,
/// `fork`): crash points for demos and tests, and what `durable check`
/// gives its children. Not for `serve`, whose drives are never crashed on
/// purpose.
#[derive(Debug, Clone, Default, Args)]
pub struct FaultArgs {
    /// Kill this process (SIGKILL) right after the step with this key has
    /// been committed, like a power cut. Also: a child workflow's start
    /// (`$child:NAME#n@started`) or its end recorded in the parent
    /// (`$child:NAME#n`), an await-any's winner (`$select#n`), and the end
    /// of the first run to end (`$end`). For demos and tests.
    #[arg(long, value_name = "STEP_KEY")]
    pub crash_after: Option<String>,

    /// Kill this process (SIGKILL) after the step with this key has
    /// returned, before its outcome is committed: the step runs again on
    /// resume (at least once). For tests of a step's idempotency.
    #[arg(long, value_name = "STEP_KEY")]
    pub crash_before_commit: Option<String>,

    /// `durable check`: end durable sleeps at once.
    #[arg(long, hide = true)]
    pub skip_sleeps: bool,

    /// `durable check`: append what the drive does (steps executed and
    /// recovered, outcomes thrown away by --crash-before-commit) to this
    /// file as JSON lines.
    #[arg(long, hide = true, value_name = "PATH")]
    pub trace_file: Option<PathBuf>,
}

/// `--durability`: what a committed step survives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DurabilityArg {
    /// Survives power loss and OS crashes (synchronous=FULL).
    PowerLoss,
    /// Survives a crash of the process only (synchronous=NORMAL).
    ProcessCrash,
}

impl From<DurabilityArg> for durable::store::Durability {
    fn from(d: DurabilityArg) -> Self {
        match d {
            DurabilityArg::PowerLoss => durable::store::Durability::PowerLoss,
            DurabilityArg::ProcessCrash => durable::store::Durability::ProcessCrash,
        }
    }
}

/// `--link NAME=PATH`: a workflow name (as a child is started by) and a
/// component file.
/// `--retention DURATION`, in ms.
fn parse_retention(s: &str) -> Result<i64, String> {
    durable_server::parse_retention(s)
}

/// `--retention-every DURATION`, in ms (at least 1 s).
fn parse_every(s: &str) -> Result<i64, String> {
    match durable::clock::parse_duration_ms(s) {
        Some(ms) if ms >= 1000 => Ok(ms),
        _ => Err(format!("{s:?}: a duration of at least 1s, such as 10m")),
    }
}

/// `--tag KEY=VALUE`.
fn parse_tag(s: &str) -> Result<(String, String), String> {
    durable::tags::parse(s, '=')
}

fn parse_link(s: &str) -> Result<(String, PathBuf), String> {
    let (name, path) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?}: expected NAME=PATH.wasm"))?;
    durable::runner::validate_workflow_name(name)?;
    if path.is_empty() {
        return Err(format!("{s:?}: no component path after '='"));
    }
    Ok((name.to_string(), PathBuf::from(path)))
}
