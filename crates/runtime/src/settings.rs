//! What drives run with, as the operator states it: [`DriveSettings`],
//! the grants and limits of the command line's `--allow-*` and `--max-*`
//! flags (the CLI's arguments convert into it; `durable.toml` entries of the
//! server adjust a copy of it), and how they become the runtime's
//! [`Grants`], [`Limits`] and [`RuntimeConfig`], with the checks that can be
//! made before anything runs.

use std::net::ToSocketAddrs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::http::{HttpAccess, HttpLimits, HttpPattern};
use crate::runner::{Engine, Limits, RetryPolicy, RuntimeConfig};
use crate::sandbox::{DirGrant, Grants};
use crate::store::{Durability, Location, Store, StoreError, StoreOptions};

/// The grants and limits of drives, and how their store is opened. Each
/// field is the command-line flag of the same name (`max_parallel` is
/// `--max-parallel`); [`DriveSettings::default`] holds the flags' defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DriveSettings {
    /// Most step instances running at once.
    pub max_parallel: usize,
    /// Directory of compiled components (`None`: [`Engine::default_cache_dir`]).
    pub cache_dir: Option<PathBuf>,
    /// What a committed step survives.
    pub durability: Durability,
    /// Environment variables steps see: `NAME` (its value here) or `NAME=VALUE`.
    pub allow_env: Vec<String>,
    /// Directories steps read and write: `HOST_PATH[::GUEST_PATH]`.
    pub allow_dir: Vec<String>,
    /// Directories steps read only: `HOST_PATH[::GUEST_PATH]`.
    pub allow_dir_ro: Vec<String>,
    /// TCP addresses steps connect to: `HOST:PORT`.
    pub allow_tcp: Vec<String>,
    /// HTTP destinations steps reach (see [`HttpPattern`]).
    pub allow_http: Vec<String>,
    /// PEM files of CAs trusted for HTTPS besides the well-known roots.
    pub allow_http_ca: Vec<PathBuf>,
    /// Most memory of one instance, in MiB.
    pub max_memory_mb: usize,
    /// Time one attempt of a step may take unless its options say otherwise, in ms.
    pub step_timeout_ms: u64,
    /// Attempts per step unless its options say otherwise.
    pub max_attempts: u32,
    /// Largest step result or workflow output, in bytes.
    pub max_result_bytes: usize,
    /// Largest total a run records, in bytes.
    pub max_history_bytes: u64,
    /// Most attempts a step's own retry policy may ask for.
    pub max_attempts_cap: u32,
    /// Longest the workflow code runs between two durable calls, in ms.
    pub workflow_timeout_ms: u64,
    /// Largest run input, in bytes.
    pub max_input_bytes: usize,
    /// Largest HTTP body a step sends or receives, in MiB.
    pub max_http_body_mb: u64,
    /// Longest an HTTP request of a step takes to connect, in ms.
    pub http_connect_timeout_ms: u64,
    /// Longest an HTTP request waits for its response to start, in ms.
    pub http_first_byte_timeout_ms: Option<u64>,
    /// How long a commit waits out another process's write lock, in ms.
    pub lock_wait_ms: u64,
    /// How long a run's lease lasts without renewal, in ms.
    pub lease_ms: u64,
    /// Most attempts of a step name running at once, across every run and
    /// every process on the database: `(name, limit)`.
    pub step_limits: Vec<(String, u32)>,
}

impl Default for DriveSettings {
    fn default() -> Self {
        let limits = Limits::default();
        DriveSettings {
            max_parallel: 64,
            cache_dir: None,
            durability: Durability::default(),
            allow_env: Vec::new(),
            allow_dir: Vec::new(),
            allow_dir_ro: Vec::new(),
            allow_tcp: Vec::new(),
            allow_http: Vec::new(),
            allow_http_ca: Vec::new(),
            max_memory_mb: limits.memory_bytes >> 20,
            step_timeout_ms: limits.step_timeout.as_millis() as u64,
            max_attempts: limits.retry.max_attempts,
            max_result_bytes: limits.max_result_bytes,
            max_history_bytes: limits.max_history_bytes,
            max_attempts_cap: limits.max_attempts_cap,
            workflow_timeout_ms: limits.workflow_timeout.as_millis() as u64,
            max_input_bytes: limits.max_input_bytes,
            max_http_body_mb: 16,
            http_connect_timeout_ms: 10_000,
            http_first_byte_timeout_ms: None,
            lock_wait_ms: 120_000,
            lease_ms: crate::store::DEFAULT_LEASE_MS as u64,
            step_limits: Vec::new(),
        }
    }
}

impl DriveSettings {
    /// The limits these settings state.
    pub fn limits(&self) -> Limits {
        Limits {
            memory_bytes: self.max_memory_mb.saturating_mul(1 << 20),
            step_timeout: Duration::from_millis(self.step_timeout_ms),
            max_result_bytes: self.max_result_bytes,
            max_history_bytes: self.max_history_bytes,
            retry: RetryPolicy {
                max_attempts: self.max_attempts.max(1),
                ..RetryPolicy::default()
            },
            max_attempts_cap: self.max_attempts_cap.max(1),
            workflow_timeout: Duration::from_millis(self.workflow_timeout_ms),
            max_input_bytes: self.max_input_bytes,
        }
    }

    /// The compile cache these settings name, or the default one.
    pub fn cache_dir(&self) -> Option<PathBuf> {
        self.cache_dir.clone().or_else(Engine::default_cache_dir)
    }

    /// A runtime configuration for drives of runs in database `db`: these
    /// grants (checked: see [`DriveSettings::grants`]) and limits, the step
    /// limit and the compile cache; the rest as
    /// [`RuntimeConfig::default`].
    ///
    /// # Errors
    /// As [`DriveSettings::grants`].
    pub fn runtime_config(&self, db: &Location) -> Result<RuntimeConfig, String> {
        let cache_dir = self.cache_dir();
        let grants = self.grants(&Protected {
            db,
            cache_dir: cache_dir.as_deref(),
        })?;
        Ok(RuntimeConfig {
            max_concurrent_steps: self.max_parallel,
            limits: self.limits(),
            grants,
            cache_dir,
            step_limits: self.step_limits.iter().cloned().collect(),
            ..RuntimeConfig::default()
        })
    }

    /// How the store is opened.
    pub fn store_options(&self) -> StoreOptions {
        StoreOptions {
            durability: self.durability,
            lease_ms: i64::try_from(self.lease_ms).unwrap_or(i64::MAX),
        }
    }

    /// Opens the store at `db` as these settings say (durability, lease,
    /// lock wait).
    ///
    /// # Errors
    /// As [`Store::open_with_options`].
    pub async fn open_store(&self, db: &Location) -> Result<Store, StoreError> {
        let store = Store::open_with_options(db, self.store_options()).await?;
        store.set_lock_wait(Duration::from_millis(self.lock_wait_ms));
        Ok(store)
    }
}

/// The host's own files, which no grant may expose: a step that could write
/// the database could forge its history, and one that could write the
/// compile cache could make the host run machine code of its choosing.
pub struct Protected<'a> {
    /// The database (a file's `-wal`, `-shm` and `-journal` go with it).
    pub db: &'a Location,
    /// The compile cache directory, if any.
    pub cache_dir: Option<&'a Path>,
}

impl DriveSettings {
    /// The grants these settings ask for.
    ///
    /// # Errors
    /// A message for the user: an unset variable, a missing directory, an
    /// address that does not resolve, a directory that holds the host's own
    /// files.
    pub fn grants(&self, protected: &Protected<'_>) -> Result<Grants, String> {
        let args = self;
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
}

/// The HTTP access `--allow-http`, `--allow-http-ca` and the HTTP limits
/// ask for.
fn http(args: &DriveSettings) -> Result<HttpAccess, String> {
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
    // A PostgreSQL database is no file a directory grant could reach.
    if let Some(file) = protected.db.file() {
        let db = resolve(file);
        let db_name = db
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let db_files = ["", "-wal", "-shm", "-journal"]
            .map(|suffix| db.with_file_name(format!("{db_name}{suffix}")));
        if db_files.iter().any(|f| f.starts_with(&granted)) {
            return Err(format!(
                "{flag} {spec}: the directory holds the database {} (a step could rewrite its own \
                 history); grant a directory that does not contain it, or keep the database elsewhere (--db)",
                db.display()
            ));
        }
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
