//! The host's wall clock, in the one unit the store records.

/// Milliseconds since the Unix epoch, by this machine's clock.
///
/// `DURABLE_TEST_CLOCK_SKEW_MS` (read once) moves it by that many ms: the
/// tests of hosts whose clocks disagree set it. Leases on PostgreSQL do not
/// depend on it (they use the database's clock: the store's `Tx::now_ms`).
pub fn now_ms() -> i64 {
    static SKEW: std::sync::OnceLock<i64> = std::sync::OnceLock::new();
    let skew = *SKEW.get_or_init(|| {
        std::env::var("DURABLE_TEST_CLOCK_SKEW_MS")
            .ok()
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    });
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
        .saturating_add(skew)
}
