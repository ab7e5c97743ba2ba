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

use std::time::Duration;

use wasmtime_wasi::{HostMonotonicClock, HostWallClock, WasiCtx, WasiCtxBuilder};

/// Builds the context of a workflow instance for a run that started at
/// `start_ms` with `seed`.
pub fn workflow_ctx(start_ms: i64, seed: u64) -> WasiCtx {
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
        .stdout(wasmtime_wasi::cli::stderr())
        .stderr(wasmtime_wasi::cli::stderr());
    b.build()
}

/// Builds the context of a step instance.
pub fn step_ctx() -> WasiCtx {
    let mut b = WasiCtxBuilder::new();
    b.allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false)
        // Stdout belongs to the run's output JSON: guest output goes to stderr.
        .stdout(wasmtime_wasi::cli::stderr())
        .stderr(wasmtime_wasi::cli::stderr());
    b.build()
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
    fn seeded_bytes_depend_on_the_seed_only() {
        assert_eq!(super::seeded_bytes(7, 64), super::seeded_bytes(7, 64));
        assert_ne!(super::seeded_bytes(7, 64), super::seeded_bytes(8, 64));
    }
}
