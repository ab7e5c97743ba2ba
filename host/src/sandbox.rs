//! The WASI contexts that workflow and step instances get.
//!
//! Deny by default. Neither kind of instance gets a file system, network,
//! environment variables, arguments or stdin.
//!
//! - The **workflow** instance must be deterministic: its wall clock is
//!   frozen at the run's recorded start, its monotonic clock is frozen at
//!   zero, and its random streams are seeded from the run's recorded seed,
//!   so a replay reads exactly what the first drive read. Real time and
//!   fresh randomness reach it only through `now-ms` and `random-u64`, which
//!   are recorded.
//! - A **step** instance does real work: it gets the host's clocks and
//!   random, and its stdout and stderr go to the host's stderr.

use std::io::Write;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use wasmtime_wasi::{HostMonotonicClock, HostWallClock, WasiCtx, WasiCtxBuilder};

/// Builds the context of a workflow instance for a run that started at
/// `start_ms` with `seed`.
/// Its output goes to the host's stderr through `tail`.
pub fn workflow_ctx(start_ms: i64, seed: u64, tail: &StderrTail) -> WasiCtx {
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
        .stdout(tail.clone())
        .stderr(tail.clone());
    b.build()
}

/// Builds the context of a step instance. The guest's stdout and stderr go
/// to the host's stderr, and the last few KiB are kept in `tail` so that a
/// trap can be explained with what the guest printed (a Rust panic prints
/// its message before it traps).
pub fn step_ctx(tail: &StderrTail) -> WasiCtx {
    let mut b = WasiCtxBuilder::new();
    b.allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false)
        // Stdout belongs to the run's output JSON: guest output goes to stderr.
        .stdout(tail.clone())
        .stderr(tail.clone());
    b.build()
}

/// Keeps the end of what a step instance printed, and passes it all on to
/// the host's stderr.
#[derive(Clone, Default)]
pub struct StderrTail {
    kept: Arc<Mutex<Vec<u8>>>,
}

/// How much of a step's output is kept for trap messages.
const TAIL_BYTES: usize = 4096;

impl StderrTail {
    /// A Rust guest's panic message, from `panicked at <place>:\n<message>`,
    /// or else the last line the guest printed.
    pub fn explanation(&self) -> Option<String> {
        let kept = self.kept.lock().ok()?;
        let text = String::from_utf8_lossy(&kept);
        if let Some(at) = text.rfind("panicked at ") {
            let rest = &text[at..];
            let mut lines = rest.lines();
            let place = lines.next()?.trim_end_matches(':');
            let message: Vec<&str> = lines.take_while(|l| !l.starts_with("note: ")).collect();
            return Some(format!("{place}: {}", message.join(" ").trim()));
        }
        text.lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .map(str::to_string)
    }

    fn keep(&self, bytes: &[u8]) {
        if let Ok(mut kept) = self.kept.lock() {
            kept.extend_from_slice(bytes);
            if kept.len() > TAIL_BYTES {
                let cut = kept.len() - TAIL_BYTES;
                kept.drain(..cut);
            }
        }
    }
}

impl wasmtime_wasi::cli::IsTerminal for StderrTail {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl wasmtime_wasi::cli::StdoutStream for StderrTail {
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

impl tokio::io::AsyncWrite for StderrTail {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        // Guest output is small and line-sized; one locked write per call
        // keeps lines of concurrent steps apart.
        let _ = std::io::stderr().lock().write_all(buf);
        self.keep(buf);
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
    #[test]
    fn a_panic_message_is_found_in_the_tail() {
        let tail = super::StderrTail::default();
        tail.keep(b"EXEC r/x#1\n\nthread '<unnamed>' (1) panicked at src/lib.rs:51:5:\nstep exploded\nnote: run with `RUST_BACKTRACE=1`\n");
        assert_eq!(
            tail.explanation().as_deref(),
            Some("panicked at src/lib.rs:51:5: step exploded")
        );
        let plain = super::StderrTail::default();
        plain.keep(b"first\nlast words\n\n");
        assert_eq!(plain.explanation().as_deref(), Some("last words"));
    }

    #[test]
    fn seeded_bytes_depend_on_the_seed_only() {
        assert_eq!(super::seeded_bytes(7, 64), super::seeded_bytes(7, 64));
        assert_ne!(super::seeded_bytes(7, 64), super::seeded_bytes(8, 64));
    }
}
