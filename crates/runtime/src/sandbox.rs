//! The WASI contexts that workflow and step instances get.
//!
//! Deny by default. Neither kind of instance gets a file system, network,
//! environment variables, arguments or stdin unless granted, and only steps
//! can be granted anything.
//!
//! - The **workflow** instance must be deterministic: its wall clock is
//!   frozen at the run's recorded start, its monotonic clock is frozen at
//!   zero, and its random streams are seeded from the run's recorded seed,
//!   so a replay reads exactly what the first drive read. Real time and
//!   fresh randomness reach it only through `now-ms` and `random-u64`, which
//!   are recorded. It never gets grants.
//! - A **step** instance does real work: it gets the host's clocks and
//!   random, plus exactly what [`Grants`] lists: environment variables,
//!   preopened directories (read-write or read-only), TCP connections
//!   to listed addresses, and HTTP requests to allowed hosts
//!   ([`crate::http`]). Nothing else: no other files, no name lookup of
//!   its own, no UDP, no listening sockets.
//!
//! Both kinds of instance have their stdout and stderr captured line by line
//! ([`Output`]) and handed to the host's observer with the run and step they
//! came from.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use wasmtime_wasi::sockets::SocketAddrUse;
use wasmtime_wasi::{FsPerms, HostMonotonicClock, HostWallClock, WasiCtx, WasiCtxBuilder};

use crate::http::HttpAccess;
use crate::observer::Observer;
use crate::store::OutputLine;

/// A directory a step may use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirGrant {
    /// The directory on the host.
    pub host: PathBuf,
    /// Where the guest sees it.
    pub guest: String,
    /// Whether the guest may only read.
    pub read_only: bool,
}

/// What step instances may use beyond computing; nothing by default.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Grants {
    /// Environment variables, with their values.
    pub env: Vec<(String, String)>,
    /// Preopened directories.
    pub dirs: Vec<DirGrant>,
    /// Addresses steps may open TCP connections to.
    pub tcp_connect: Vec<SocketAddr>,
    /// Hosts steps may send HTTP requests to, and the limits of those.
    pub http: Arc<HttpAccess>,
}

/// Builds the context of a workflow instance for a run that started at
/// `start_ms` with `seed`. Its output goes to `output`.
pub fn workflow_ctx(start_ms: i64, seed: u64, output: &Output) -> WasiCtx {
    let mut b = WasiCtxBuilder::new();
    b.wall_clock(FrozenWall(Duration::from_millis(start_ms.max(0) as u64)))
        .monotonic_clock(FrozenMonotonic)
        .secure_random(wasmtime_wasi::Deterministic::new(seeded_bytes(seed, 4096)))
        .insecure_random(wasmtime_wasi::Deterministic::new(seeded_bytes(
            seed ^ 0x5eed,
            4096,
        )))
        .insecure_random_seed(u128::from(seed))
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false)
        // Guest prints are for debugging; they repeat on replay.
        .stdout(output.clone())
        .stderr(output.clone());
    b.build()
}

/// Builds the context of a step instance with `grants`.
///
/// # Errors
/// When a granted directory cannot be opened.
pub fn step_ctx(grants: &Grants, output: &Output) -> anyhow::Result<WasiCtx> {
    let mut b = WasiCtxBuilder::new();
    b.allow_udp(false)
        .allow_ip_name_lookup(false)
        // File operations other than writes (open, stat, read, sync) stay
        // on tokio's blocking pool (wasmtime-wasi's default): an open can
        // block for as long as others like (a FIFO nobody reads, a lease
        // being broken), and on a runtime worker it would hold the server,
        // the step's timeout and shutdown with it. Writes of regular files
        // are done on the step's thread by `runner::file_writes`.
        // Stdout belongs to the run's output JSON: guest output is captured.
        .stdout(output.clone())
        .stderr(output.clone());
    for (k, v) in &grants.env {
        b.env(k, v);
    }
    for d in &grants.dirs {
        let perms = if d.read_only {
            FsPerms::ReadOnly
        } else {
            FsPerms::ReadWrite
        };
        b.preopened_dir(&d.host, &d.guest, perms).map_err(|e| {
            anyhow::anyhow!("cannot open granted directory {}: {e}", d.host.display())
        })?;
    }
    if grants.tcp_connect.is_empty() {
        b.allow_tcp(false);
    } else {
        let allowed = Arc::new(grants.tcp_connect.clone());
        b.allow_tcp(true).socket_addr_check(move |addr, usage| {
            let ok = match usage {
                SocketAddrUse::TcpConnect => allowed.contains(&addr),
                // The implicit bind that precedes a connect: the wildcard
                // address with an OS-chosen port. Listening stays denied.
                SocketAddrUse::TcpBind => addr.ip().is_unspecified() && addr.port() == 0,
                _ => false,
            };
            Box::pin(async move { ok })
        });
    }
    Ok(b.build())
}

/// A guest's stdout and stderr: split into lines, each handed to the
/// observer with the run and step; the last few KiB are kept so that a trap
/// can be explained with what the guest printed (a Rust panic prints its
/// message before it traps).
#[derive(Clone)]
pub struct Output {
    inner: Arc<Mutex<OutputInner>>,
}

struct OutputInner {
    run_id: String,
    key: String,
    drive: u32,
    observer: Arc<dyn Observer>,
    pending: Vec<u8>,
    tail: Vec<u8>,
    lines: Vec<OutputLine>,
    kept_bytes: usize,
}

/// Most bytes of output kept per instance for the store; the rest is still
/// shown, and a marker line says how much was dropped.
const KEEP_BYTES: usize = 256 * 1024;

/// How much of an instance's output is kept for trap messages.
const TAIL_BYTES: usize = 4096;
/// A line longer than this is passed on in pieces.
const MAX_LINE: usize = 16 * 1024;

impl Output {
    /// Output of the instance running `key` (empty for the workflow) of
    /// `run_id`, in drive `drive`.
    pub fn new(run_id: &str, key: &str, drive: u32, observer: Arc<dyn Observer>) -> Output {
        Output {
            inner: Arc::new(Mutex::new(OutputInner {
                run_id: run_id.to_string(),
                key: key.to_string(),
                drive,
                observer,
                pending: Vec::new(),
                tail: Vec::new(),
                lines: Vec::new(),
                kept_bytes: 0,
            })),
        }
    }

    /// Records a `log` call of the guest (already shown by the caller).
    pub fn log(&self, level: &str, message: &str) {
        if let Ok(mut inner) = self.inner.lock() {
            inner.keep(&format!("log:{level}"), message);
        }
    }

    /// Shows and records the line of an HTTP request the instance sent.
    pub fn http(&self, line: &str) {
        if let Ok(mut inner) = self.inner.lock() {
            inner
                .observer
                .output(&inner.run_id, &inner.key, &format!("[http] {line}"));
            inner.keep("http", line);
        }
    }

    /// The lines printed and logged so far, to be stored; later lines
    /// start a new batch.
    pub fn take_lines(&self) -> Vec<OutputLine> {
        self.inner
            .lock()
            .map(|mut i| std::mem::take(&mut i.lines))
            .unwrap_or_default()
    }

    /// Passes on a last line that had no newline. Call when the instance is done.
    pub fn finish(&self) {
        if let Ok(mut inner) = self.inner.lock()
            && !inner.pending.is_empty()
        {
            let line = std::mem::take(&mut inner.pending);
            inner.emit(&line);
        }
    }

    /// A Rust guest's panic message, from `panicked at <place>:\n<message>`.
    pub fn explanation(&self) -> Option<String> {
        let inner = self.inner.lock().ok()?;
        let mut bytes = inner.tail.clone();
        bytes.extend_from_slice(&inner.pending);
        let text = String::from_utf8_lossy(&bytes);
        if let Some(at) = text.rfind("panicked at ") {
            let rest = &text[at..];
            let mut lines = rest.lines();
            let place = lines.next()?.trim_end_matches(':');
            let message: Vec<&str> = lines.take_while(|l| !l.starts_with("note: ")).collect();
            return Some(format!("{place}: {}", message.join(" ").trim()));
        }
        None
    }

    fn write(&self, buf: &[u8]) {
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        inner.tail.extend_from_slice(buf);
        if inner.tail.len() > TAIL_BYTES {
            let cut = inner.tail.len() - TAIL_BYTES;
            inner.tail.drain(..cut);
        }
        inner.pending.extend_from_slice(buf);
        while let Some(nl) = inner.pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = inner.pending.drain(..=nl).collect();
            inner.emit(&line[..line.len() - 1]);
        }
        if inner.pending.len() > MAX_LINE {
            let line = std::mem::take(&mut inner.pending);
            inner.emit(&line);
        }
    }
}

impl OutputInner {
    fn emit(&mut self, line: &[u8]) {
        let line = String::from_utf8_lossy(line)
            .trim_end_matches('\r')
            .to_string();
        self.observer.output(&self.run_id, &self.key, &line);
        self.keep("out", &line);
    }

    fn keep(&mut self, kind: &str, line: &str) {
        if self.kept_bytes > KEEP_BYTES {
            return;
        }
        self.kept_bytes += line.len();
        let line = if self.kept_bytes > KEEP_BYTES {
            format!("[durable: output beyond {KEEP_BYTES} bytes is not stored]")
        } else {
            line.to_string()
        };
        self.lines.push(OutputLine {
            key: self.key.clone(),
            drive: self.drive,
            at_ms: crate::clock::now_ms(),
            kind: kind.to_string(),
            line,
        });
    }
}

impl wasmtime_wasi::cli::IsTerminal for Output {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl wasmtime_wasi::cli::StdoutStream for Output {
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

impl tokio::io::AsyncWrite for Output {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.write(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

struct FrozenWall(Duration);

impl HostWallClock for FrozenWall {
    fn resolution(&self) -> Duration {
        Duration::from_millis(1)
    }
    fn now(&self) -> Duration {
        self.0
    }
}

struct FrozenMonotonic;

impl HostMonotonicClock for FrozenMonotonic {
    fn resolution(&self) -> u64 {
        1_000_000
    }
    fn now(&self) -> u64 {
        0
    }
}

/// `len` pseudo-random bytes from `seed` (splitmix64): deterministic, and
/// long enough that the cycle `Deterministic` makes of them is not visible
/// to ordinary use.
fn seeded_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed;
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        out.extend_from_slice(&z.to_le_bytes());
    }
    out.truncate(len);
    out
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use crate::observer::{Level, Observer, Source};
    use crate::store::Outcome;

    #[derive(Default)]
    struct Lines(Mutex<Vec<String>>);

    impl Observer for Lines {
        fn step(&self, _: &str, _: &str, _: Source, _: &Outcome, _: std::time::Duration) {}
        fn log(&self, _: &str, _: &str, _: Level, _: &str) {}
        fn output(&self, run: &str, key: &str, line: &str) {
            self.0
                .lock()
                .expect("lock")
                .push(format!("{run}/{key}: {line}"));
        }
    }

    #[test]
    fn output_is_split_into_lines_with_context_and_panics_are_explained() {
        let lines = Arc::new(Lines::default());
        let out = super::Output::new("r", "x#1", 1, lines.clone());
        out.write(b"EXEC r/x#1\n\nthread '<unnamed>' (1) panicked at src/lib.rs:51:5:\nstep ");
        out.write(b"exploded\nnote: run with `RUST_BACKTRACE=1`\nno newline");
        out.finish();
        assert_eq!(
            *lines.0.lock().expect("lock"),
            [
                "r/x#1: EXEC r/x#1",
                "r/x#1: ",
                "r/x#1: thread '<unnamed>' (1) panicked at src/lib.rs:51:5:",
                "r/x#1: step exploded",
                "r/x#1: note: run with `RUST_BACKTRACE=1`",
                "r/x#1: no newline",
            ]
        );
        assert_eq!(
            out.explanation().as_deref(),
            Some("panicked at src/lib.rs:51:5: step exploded")
        );
        assert_eq!(out.take_lines().len(), 6);
        assert!(out.take_lines().is_empty());
        let plain = super::Output::new("r", "", 1, lines);
        plain.write(b"first\nlast words\n\n");
        assert_eq!(plain.explanation(), None);
    }

    #[test]
    fn seeded_bytes_depend_on_the_seed_only() {
        assert_eq!(super::seeded_bytes(7, 64), super::seeded_bytes(7, 64));
        assert_ne!(super::seeded_bytes(7, 64), super::seeded_bytes(8, 64));
    }
}
