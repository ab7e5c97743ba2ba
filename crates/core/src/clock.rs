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

/// Parses a duration written as a whole number and a unit: `500ms`, `30s`,
/// `15m`, `12h`, `30d` (`0s` too). `None` for anything else or an overflow.
pub fn parse_duration_ms(text: &str) -> Option<i64> {
    let text = text.trim();
    let digits = text.find(|c: char| !c.is_ascii_digit())?;
    let (n, unit) = text.split_at(digits);
    let n: i64 = n.parse().ok()?;
    let unit_ms = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return None,
    };
    n.checked_mul(unit_ms)
}

#[cfg(test)]
mod duration_tests {
    use super::parse_duration_ms;

    #[test]
    fn durations_are_a_number_and_a_unit() {
        assert_eq!(parse_duration_ms("30d"), Some(30 * 86_400_000));
        assert_eq!(parse_duration_ms("12h"), Some(12 * 3_600_000));
        assert_eq!(parse_duration_ms("0s"), Some(0));
        assert_eq!(parse_duration_ms("500ms"), Some(500));
        for bad in [
            "",
            "d",
            "5",
            "-1s",
            "1.5h",
            "5 s",
            "5w",
            "99999999999999999999d",
        ] {
            assert_eq!(parse_duration_ms(bad), None, "{bad:?}");
        }
    }
}
