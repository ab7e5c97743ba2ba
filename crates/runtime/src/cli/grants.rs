//! Turning the `--allow-*` flags into [`Grants`], with the checks that can
//! be made before anything runs.

use std::net::ToSocketAddrs;
use std::path::{Path, PathBuf};

use std::sync::Arc;
use std::time::Duration;

use durable::http::{HttpAccess, HttpLimits, HttpPattern};
use durable::sandbox::{DirGrant, Grants};

use super::DriveArgs;

/// The host's own files, which no grant may expose: a step that could write
/// the database could forge its history, and one that could write the
/// compile cache could make the host run machine code of its choosing.
pub struct Protected<'a> {
    /// The database file (its `-wal`, `-shm` and `-journal` go with it).
    pub db: &'a Path,
    /// The compile cache directory, if any.
    pub cache_dir: Option<&'a Path>,
}

/// The grants the flags ask for.
///
/// # Errors
/// A message for the user: an unset variable, a missing directory, an
/// address that does not resolve, a directory that holds the host's own
/// files.
pub fn parse(args: &DriveArgs, protected: &Protected<'_>) -> Result<Grants, String> {
    let mut grants = Grants::default();
    for spec in &args.allow_env {
        let (name, value) = match spec.split_once('=') {
            Some((n, v)) => (n.to_string(), v.to_string()),
            None => {
                let v = std::env::var(spec)
                    .map_err(|_| format!("--allow-env {spec}: {spec} is not set in this environment (use {spec}=VALUE)"))?;
                (spec.clone(), v)
            }
        };
        if name.is_empty() {
            return Err(format!("--allow-env {spec}: empty variable name"));
        }
        grants.env.push((name, value));
    }
    for (specs, read_only) in [(&args.allow_dir, false), (&args.allow_dir_ro, true)] {
        for spec in specs {
            let grant = dir(spec, read_only)?;
            refuse_host_files(spec, read_only, &grant.host, protected)?;
            grants.dirs.push(grant);
        }
    }
    for spec in &args.allow_tcp {
        let addrs: Vec<_> = spec
            .to_socket_addrs()
            .map_err(|e| format!("--allow-tcp {spec}: {e} (expected HOST:PORT)"))?
            .collect();
        if addrs.is_empty() {
            return Err(format!("--allow-tcp {spec}: no address"));
        }
        grants.tcp_connect.extend(addrs);
    }
    grants.http = Arc::new(http(args)?);
    Ok(grants)
}

/// The HTTP access `--allow-http`, `--allow-http-ca` and the HTTP limits
/// ask for.
fn http(args: &DriveArgs) -> Result<HttpAccess, String> {
    let allow = args
        .allow_http
        .iter()
        .map(|p| HttpPattern::parse(p).map_err(|e| format!("--allow-http {e}")))
        .collect::<Result<Vec<_>, _>>()?;
    let mut cas = Vec::new();
    for file in &args.allow_http_ca {
        let pem =
            std::fs::read(file).map_err(|e| format!("--allow-http-ca {}: {e}", file.display()))?;
        cas.push((format!("--allow-http-ca {}", file.display()), pem));
    }
    if args.max_http_body_mb == 0 {
        return Err("--max-http-body-mb must be at least 1".into());
    }
    let limits = HttpLimits {
        max_body_bytes: args.max_http_body_mb.saturating_mul(1 << 20),
        connect_timeout: Duration::from_millis(args.http_connect_timeout_ms.max(1)),
        first_byte_timeout: args.http_first_byte_timeout_ms.map(Duration::from_millis),
    };
    HttpAccess::new(allow, &cas, limits)
}

fn dir(spec: &str, read_only: bool) -> Result<DirGrant, String> {
    let flag = if read_only {
        "--allow-dir-ro"
    } else {
        "--allow-dir"
    };
    let (host, guest) = match spec.split_once("::") {
        Some((h, g)) => (h, g.to_string()),
        None => (spec, spec.to_string()),
    };
    let host = PathBuf::from(host);
    if !host.is_dir() {
        return Err(format!(
            "{flag} {spec}: {} is not a directory",
            host.display()
        ));
    }
    if guest.is_empty() {
        return Err(format!("{flag} {spec}: empty guest path"));
    }
    Ok(DirGrant {
        host,
        guest,
        read_only,
    })
}

/// An absolute, symlink-free form of `path`, also when its last part does
/// not exist yet (a database about to be created).
fn resolve(path: &Path) -> PathBuf {
    if let Ok(p) = path.canonicalize() {
        return p;
    }
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    match (absolute.parent(), absolute.file_name()) {
        (Some(dir), Some(name)) => dir
            .canonicalize()
            .map(|d| d.join(name))
            .unwrap_or(absolute.clone()),
        _ => absolute,
    }
}

fn refuse_host_files(
    spec: &str,
    read_only: bool,
    granted: &Path,
    protected: &Protected<'_>,
) -> Result<(), String> {
    let flag = if read_only {
        "--allow-dir-ro"
    } else {
        "--allow-dir"
    };
    let granted = resolve(granted);
    let db = resolve(protected.db);
    let db_name = db
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let db_files = ["", "-wal", "-shm", "-journal"]
        .map(|suffix| db.with_file_name(format!("{db_name}{suffix}")));
    // A PostgreSQL database is no file a directory grant could reach.
    let is_file = !durable::store::is_postgres(protected.db);
    if is_file && db_files.iter().any(|f| f.starts_with(&granted)) {
        return Err(format!(
            "{flag} {spec}: the directory holds the database {} (a step could rewrite its own \
             history); grant a directory that does not contain it, or keep the database elsewhere (--db)",
            crate::cli::shown_db(&db)
        ));
    }
    if let Some(cache) = protected.cache_dir {
        let cache = resolve(cache);
        if cache.starts_with(&granted) || granted.starts_with(&cache) {
            return Err(format!(
                "{flag} {spec}: the directory overlaps the compile cache {} (a step could plant \
                 machine code the host would run); grant another directory, or move the cache (--cache-dir)",
                cache.display()
            ));
        }
    }
    Ok(())
}
