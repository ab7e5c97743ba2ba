//! What every verb shares: messages on stderr, output on stdout, the
//! database argument, opening the store and loading a component.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

pub(crate) use durable::errors::chain;
use durable::runner::{Engine, LoadedWorkflow};
use durable::store::{Location, Store};

use crate::args::DriveArgs;
use crate::exit::ExitCode;

/// Prints `durable: <message>` on stderr.
pub(crate) fn error(message: impl std::fmt::Display) {
    // Not eprintln!: a closed stderr must not turn an error into a panic.
    let _ = writeln!(std::io::stderr(), "durable: {message}");
}

/// Prints a line on stdout. A closed stdout (`| head`) is not an error
/// worth reporting.
pub(crate) fn print_stdout(s: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{s}");
    let _ = out.flush();
}

/// Prints `text` on stdout as it is (a closed pipe is fine).
pub(crate) fn print(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
}

/// Reads and loads the component at `path` (a bad one is bad usage).
/// Compiling takes seconds for a large guest: off the async workers.
pub(crate) fn load(engine: &Engine, path: &Path) -> Result<LoadedWorkflow, ExitCode> {
    let component;
    let path = if path.is_dir() {
        component = project_component(path)?;
        component.as_path()
    } else {
        path
    };
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

/// The component `durable build` left in project folder `dir`; warns when
/// a source changed after that build.
fn project_component(dir: &Path) -> Result<std::path::PathBuf, ExitCode> {
    let project = durable_kit::project::Project::open(dir).map_err(|e| {
        error(&e);
        ExitCode::Usage
    })?;
    let component = project.built_component().map_err(|e| {
        error(&e);
        ExitCode::Usage
    })?;
    if let Some(changed) = project.changed_since_build() {
        eprintln!(
            "durable: warning: {} changed after the last build; running {} (durable build {} builds it again)",
            changed.display(),
            component.display(),
            dir.display()
        );
    }
    Ok(component)
}

/// Loads the components of `--link NAME=PATH`, to link into the runtime.
pub(crate) fn load_links(
    engine: &Engine,
    links: &[(String, std::path::PathBuf)],
) -> Result<Vec<(String, LoadedWorkflow)>, ExitCode> {
    links
        .iter()
        .map(|(name, path)| Ok((name.clone(), load(engine, path)?)))
        .collect()
}

pub(crate) async fn open(db: &Location, drive: &DriveArgs) -> Result<Store, ExitCode> {
    drive.settings().open_store(db).await.map_err(|e| {
        error(chain(&e));
        ExitCode::of_store(&e)
    })
}

/// Opens a database that must exist (a verb that acts on one creates
/// none): a missing one is a usage error.
pub(crate) async fn open_required(db: &Location) -> Result<Store, ExitCode> {
    match open_existing(db).await? {
        Some(store) => Ok(store),
        None => {
            error(format_args!("{db}: no such database"));
            Err(ExitCode::Usage)
        }
    }
}

/// Opens an existing database; reading never creates one.
pub(crate) async fn open_existing(db: &Location) -> Result<Option<Store>, ExitCode> {
    if !db.may_exist() {
        return Ok(None);
    }
    Store::open(db).await.map(Some).map_err(|e| {
        error(chain(&e));
        ExitCode::of_store(&e)
    })
}

/// Resolves when the process gets SIGINT or SIGTERM.
pub(crate) async fn signalled() {
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

/// Refuses a database location that means PostgreSQL but would be taken
/// for a file name (and so printed, password and all, and created empty):
/// a scheme in capitals, `postgres:` without `//`, a libpq `key=value`
/// string. Never repeats the value (it may hold a password).
pub(crate) fn check_db(db: &std::path::Path) -> Result<(), String> {
    let text = db.to_string_lossy();
    if text.trim() != text {
        // ` postgres://...` would be a file named so, printed whole.
        return Err("the database location has spaces around it; remove them".into());
    }
    let lower = text.to_ascii_lowercase();
    let url = text.starts_with("postgres://") || text.starts_with("postgresql://");
    if !url && lower.contains("://") {
        return Err(
            "a database is a file path or a postgres:// (postgresql://) URL in lower case; \
             this is a URL of another kind"
                .into(),
        );
    }
    if !url
        && (lower.starts_with("postgres") || lower.starts_with("pg:") || lower.starts_with("pg//"))
        && (lower.contains('@') || lower.contains("//"))
    {
        return Err(
            "this looks like a PostgreSQL URL written wrong; it starts with postgres:// or \
             postgresql:// (in lower case)"
                .into(),
        );
    }
    if !url && (lower.starts_with("postgres:") || lower.starts_with("postgresql:")) {
        return Err(
            "a PostgreSQL database is given as a URL that starts with postgres:// \
             or postgresql:// (in lower case)"
                .into(),
        );
    }
    let keywords = [
        "host=",
        "hostaddr=",
        "dbname=",
        "user=",
        "password=",
        "port=",
    ];
    if !url
        && keywords
            .iter()
            .any(|k| lower.starts_with(k) || lower.contains(&format!(" {k}")))
    {
        return Err(
            "this looks like a libpq connection string (key=value ...); give a \
             postgres://USER@HOST/DB URL instead"
                .into(),
        );
    }
    Ok(())
}
