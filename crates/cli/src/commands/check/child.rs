//! The child processes of a check: `durable resume` on a scratch database,
//! killed where the point says, with the grants and limits of the check.

use std::ffi::OsString;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::args::DriveArgs;

/// The run id every scratch database holds.
pub(super) const RUN_ID: &str = "check";

/// Where a child kills itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Crash {
    /// Nowhere: the child drives the run as far as it goes.
    Never,
    /// Right after this step commits.
    AfterCommit(String),
    /// After this step returns, before its outcome is committed.
    BeforeCommit(String),
}

/// How a child ended.
#[derive(Debug)]
pub(super) struct Ended {
    /// Killed by SIGKILL (its own crash).
    pub killed: bool,
    /// Its exit code, when it exited.
    pub code: Option<i32>,
    /// What it printed on stderr.
    pub stderr: String,
}

impl Ended {
    /// The last lines of its stderr, for a report.
    pub(super) fn said(&self) -> String {
        let lines: Vec<&str> = self.stderr.lines().collect();
        let from = lines.len().saturating_sub(6);
        lines[from..].join("\n")
    }
}

/// Starts children of this very `durable` binary.
pub(super) struct Launcher {
    exe: PathBuf,
    /// The grants and limits, as options of `resume`.
    options: Vec<OsString>,
    /// `--max-parallel` of a child that does not crash.
    max_parallel: usize,
}

impl Launcher {
    pub(super) fn new(drive: &DriveArgs, cache_dir: Option<&Path>) -> std::io::Result<Launcher> {
        Ok(Launcher {
            exe: std::env::current_exe()?,
            options: forwarded(drive, cache_dir),
            max_parallel: drive.max_parallel,
        })
    }

    /// `durable --db DB resume check`, tracing to `trace`, crashing as
    /// `crash` says. A child that crashes runs one step at a time, so that
    /// a kill inside a `parallel` batch leaves some branches committed and
    /// the others not, the same way every time.
    pub(super) fn resume(&self, db: &Path, trace: &Path, crash: &Crash) -> std::io::Result<Ended> {
        let mut cmd = Command::new(&self.exe);
        cmd.arg("--db")
            .arg(db)
            .args([
                "resume",
                RUN_ID,
                "--skip-sleeps",
                "--durability",
                "process-crash",
            ])
            .arg("--trace-file")
            .arg(trace)
            .args(&self.options)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .env_remove("DURABLE_DB")
            .env_remove("RUST_LOG");
        match crash {
            Crash::Never => {
                cmd.arg("--max-parallel").arg(self.max_parallel.to_string());
            }
            // `--flag=KEY`: a key may start with '-'.
            Crash::AfterCommit(key) => {
                cmd.arg(format!("--crash-after={key}"))
                    .args(["--max-parallel", "1"]);
            }
            Crash::BeforeCommit(key) => {
                cmd.arg(format!("--crash-before-commit={key}"))
                    .args(["--max-parallel", "1"]);
            }
        }
        let out = cmd.output()?;
        Ok(Ended {
            killed: out.status.signal() == Some(libc::SIGKILL),
            code: out.status.code(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }
}

/// The options of `drive` that a child needs: grants and limits (a crash
/// point, the durability and the trace are the check's to set).
fn forwarded(d: &DriveArgs, cache_dir: Option<&Path>) -> Vec<OsString> {
    let mut out: Vec<OsString> = Vec::new();
    let mut opt = |name: &str, value: String| {
        out.push(format!("--{name}").into());
        out.push(value.into());
    };
    for v in &d.allow_env {
        opt("allow-env", v.clone());
    }
    for v in &d.allow_dir {
        opt("allow-dir", v.clone());
    }
    for v in &d.allow_dir_ro {
        opt("allow-dir-ro", v.clone());
    }
    for v in &d.allow_tcp {
        opt("allow-tcp", v.clone());
    }
    for v in &d.allow_http {
        opt("allow-http", v.clone());
    }
    for v in &d.allow_http_ca {
        opt("allow-http-ca", v.display().to_string());
    }
    opt("max-memory-mb", d.max_memory_mb.to_string());
    opt("step-timeout-ms", d.step_timeout_ms.to_string());
    opt("max-attempts", d.max_attempts.to_string());
    opt("max-result-bytes", d.max_result_bytes.to_string());
    opt("max-history-bytes", d.max_history_bytes.to_string());
    opt("max-attempts-cap", d.max_attempts_cap.to_string());
    opt("workflow-timeout-ms", d.workflow_timeout_ms.to_string());
    opt("max-input-bytes", d.max_input_bytes.to_string());
    opt("max-http-body-mb", d.max_http_body_mb.to_string());
    opt(
        "http-connect-timeout-ms",
        d.http_connect_timeout_ms.to_string(),
    );
    if let Some(ms) = d.http_first_byte_timeout_ms {
        opt("http-first-byte-timeout-ms", ms.to_string());
    }
    opt("lock-wait-ms", d.lock_wait_ms.to_string());
    opt("lease-ms", d.lease_ms.to_string());
    if let Some(dir) = cache_dir {
        opt("cache-dir", dir.display().to_string());
    }
    out
}
