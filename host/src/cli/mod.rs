//! The `durable` command line: arguments, verbs, output and exit codes.
//! Everything user-facing about the CLI is here; the work is in the library.

mod exit;
mod print;
mod run;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

pub use exit::ExitCode;

/// Durable execution of WebAssembly workflows.
///
/// Runs workflow components so that every step's result is committed to a
/// SQLite database before the workflow continues; an interrupted run is
/// resumed without executing its committed steps again.
#[derive(Debug, Parser)]
#[command(name = "durable", version, about, long_about = None)]
#[command(after_help = exit::HELP)]
pub struct Cli {
    /// The database file [default: durable.db in the working directory].
    #[arg(long, global = true, value_name = "PATH", env = "DURABLE_DB")]
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

    #[command(flatten)]
    pub drive: DriveArgs,
}

/// Arguments of `durable resume`.
#[derive(Debug, Args)]
pub struct ResumeArgs {
    /// Runs to resume [default: every unfinished run no process drives].
    #[arg(value_name = "RUN_ID")]
    pub ids: Vec<String>,

    #[command(flatten)]
    pub drive: DriveArgs,
}

/// Options of every verb that drives runs.
#[derive(Debug, Args)]
pub struct DriveArgs {
    /// Kill this process (SIGKILL) right after the step with this key has
    /// been committed, like a power cut. For demos and tests.
    #[arg(long, value_name = "STEP_KEY")]
    pub crash_after: Option<String>,

    /// Most step instances running at once; more wait their turn.
    #[arg(long, value_name = "NUM", default_value_t = 64)]
    pub max_parallel: usize,

    /// Directory of compiled components [default: $DURABLE_CACHE_DIR, else
    /// $XDG_CACHE_HOME/durable, else ~/.cache/durable].
    #[arg(long, value_name = "PATH")]
    pub cache_dir: Option<PathBuf>,
}

/// Runs the parsed command line.
pub async fn main(cli: Cli) -> ExitCode {
    let db = cli.db.unwrap_or_else(|| PathBuf::from("durable.db"));
    match cli.command {
        Command::Run(args) => run::run(&db, args).await,
        Command::Resume(args) => run::resume(&db, args).await,
    }
}
