//! What a step may use and how often it is tried: memory per instance,
//! time per attempt, result and history sizes, and retry policies.

use std::time::Duration;

use super::bindings;

/// Longest wait between two attempts that a guest's policy may ask for.
pub const MAX_BACKOFF: Duration = Duration::from_secs(3600);

/// A retry policy: how many attempts, and how long to wait between them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (at least 1).
    pub max_attempts: u32,
    /// Wait before the second attempt.
    pub initial_backoff: Duration,
    /// Each further wait is this many times the previous one.
    pub backoff_factor: f64,
    /// No wait is longer than this.
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    /// 3 attempts; waits of 100 ms then 200 ms (doubling, capped at 10 s),
    /// each less up to half of it at random.
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 3,
            initial_backoff: Duration::from_millis(100),
            backoff_factor: 2.0,
            max_backoff: Duration::from_secs(10),
        }
    }
}

impl RetryPolicy {
    /// The wait after failed attempt `attempt` (1-based), before jitter.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let factor = self
            .backoff_factor
            .max(1.0)
            .powi(attempt.saturating_sub(1).min(64) as i32);
        let ms = (self.initial_backoff.as_millis() as f64 * factor)
            .min(self.max_backoff.as_millis() as f64);
        Duration::from_millis(ms.max(0.0) as u64)
    }

    /// The wait after failed attempt `attempt` with "equal jitter": between
    /// half of [`RetryPolicy::backoff`] and all of it, so that many steps
    /// failing together do not retry together.
    pub fn backoff_with_jitter(&self, attempt: u32, random: u64) -> Duration {
        let full = self.backoff(attempt);
        let half = full / 2;
        let span = (full - half).as_millis() as u64;
        half + Duration::from_millis(if span == 0 { 0 } else { random % (span + 1) })
    }

    pub(crate) fn from_wit(p: &bindings::RetryPolicy) -> RetryPolicy {
        RetryPolicy {
            max_attempts: p.max_attempts.max(1),
            // A guest's waits are capped: a drive does not hold a run for
            // longer than an hour between attempts.
            initial_backoff: Duration::from_millis(p.initial_backoff_ms).min(MAX_BACKOFF),
            backoff_factor: if p.backoff_factor.is_finite() {
                p.backoff_factor
            } else {
                1.0
            },
            max_backoff: Duration::from_millis(p.max_backoff_ms).min(MAX_BACKOFF),
        }
    }
}

/// The host's limits and defaults for steps and runs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    /// Most linear memory one instance may have, in bytes (default 256 MiB).
    pub memory_bytes: usize,
    /// Time one attempt of a step may take unless its options say otherwise
    /// (default 5 minutes).
    pub step_timeout: Duration,
    /// Largest step result or workflow output, in bytes (default 16 MiB).
    pub max_result_bytes: usize,
    /// Largest total of recorded results in one run, in bytes (default
    /// 256 MiB); a run that would exceed it fails.
    pub max_history_bytes: u64,
    /// Retries of steps whose options give none.
    pub retry: RetryPolicy,
    /// Most attempts a step's own retry policy may ask for (default 100);
    /// more are cut to this.
    pub max_attempts_cap: u32,
    /// Longest the workflow instance may run between two durable calls
    /// (default 60 s); past it the run fails. Its clocks are frozen between
    /// durable calls, so a loop waiting for time to pass would never end.
    pub workflow_timeout: Duration,
    /// Largest run input, in bytes (default 1 MiB).
    pub max_input_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory_bytes: 256 << 20,
            step_timeout: Duration::from_secs(300),
            max_result_bytes: 16 << 20,
            max_history_bytes: 256 << 20,
            retry: RetryPolicy::default(),
            max_attempts_cap: 100,
            workflow_timeout: Duration::from_secs(60),
            max_input_bytes: 1 << 20,
        }
    }
}

/// What one step call uses: its options over the host's defaults.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct StepPolicy {
    pub(crate) retry: RetryPolicy,
    pub(crate) timeout: Duration,
}

impl StepPolicy {
    pub(crate) fn resolve(limits: &Limits, options: Option<&bindings::StepOptions>) -> StepPolicy {
        let mut retry = options
            .and_then(|o| o.retry.as_ref())
            .map(RetryPolicy::from_wit)
            .unwrap_or(limits.retry);
        // The guest chooses its policy, the operator its bounds.
        retry.max_attempts = retry.max_attempts.min(limits.max_attempts_cap.max(1));
        StepPolicy {
            retry,
            timeout: options
                .and_then(|o| o.timeout_ms)
                .map(Duration::from_millis)
                .unwrap_or(limits.step_timeout),
        }
    }
}

/// Refuses memory growth past the limit with an error that names it (the
/// instance traps; the attempt fails with this message). The limit holds
/// for all linear memories of the instance together: a component may
/// define several.
pub(crate) struct MemoryLimit {
    pub(crate) bytes: usize,
    /// Bytes of all memories of the instance so far.
    used: usize,
}

impl MemoryLimit {
    pub(crate) fn new(bytes: usize) -> MemoryLimit {
        MemoryLimit { bytes, used: 0 }
    }
}

impl wasmtime::ResourceLimiter for MemoryLimit {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let total = self.used.saturating_sub(current).saturating_add(desired);
        if total > self.bytes {
            return Err(wasmtime::Error::msg(format!(
                "memory limit exceeded: the instance asked to grow its memory from {} MiB to {} MiB \
                 ({} MiB in all its memories), over the limit of {} MiB (--max-memory-mb)",
                current >> 20,
                desired.div_ceil(1 << 20),
                total.div_ceil(1 << 20),
                self.bytes >> 20
            )));
        }
        self.used = total;
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        // Tables hold function references; a million is far beyond any
        // real guest and keeps a runaway table from eating host memory.
        Ok(desired <= 1_000_000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap_and_jitter_stays_in_the_upper_half() {
        let p = RetryPolicy {
            max_attempts: 10,
            initial_backoff: Duration::from_millis(100),
            backoff_factor: 2.0,
            max_backoff: Duration::from_millis(1000),
        };
        let waits: Vec<u128> = (1..=6).map(|a| p.backoff(a).as_millis()).collect();
        assert_eq!(waits, [100, 200, 400, 800, 1000, 1000]);
        for r in [0, 1, 49, 50, 51, u64::MAX] {
            let w = p.backoff_with_jitter(2, r).as_millis();
            assert!((100..=200).contains(&w), "{w}");
        }
    }

    #[test]
    fn the_memory_limit_names_itself() {
        use wasmtime::ResourceLimiter;
        let mut l = MemoryLimit::new(64 << 20);
        assert!(l.memory_growing(0, 64 << 20, None).expect("within"));
        let e = l
            .memory_growing(64 << 20, (64 << 20) + 1, None)
            .expect_err("over");
        assert!(e.to_string().contains("limit of 64 MiB"), "{e}");
    }

    #[test]
    fn the_memory_limit_counts_every_memory_of_the_instance() {
        use wasmtime::ResourceLimiter;
        let mut l = MemoryLimit::new(64 << 20);
        assert!(l.memory_growing(0, 40 << 20, None).expect("first memory"));
        let e = l
            .memory_growing(0, 30 << 20, None)
            .expect_err("a second memory over the total");
        assert!(e.to_string().contains("in all its memories"), "{e}");
        assert!(l.memory_growing(0, 24 << 20, None).expect("what is left"));
    }
}
