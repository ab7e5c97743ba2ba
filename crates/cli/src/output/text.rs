//! Text for people: times, durations, clipped values, what a run waits for.

use durable::store::RunStatus;

/// At most a line's worth of a long JSON value (`--json` has all of it).
pub(crate) fn clip(s: &str) -> String {
    const MAX: usize = 240;
    if s.len() <= MAX {
        return s.to_string();
    }
    let mut end = MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}... ({} bytes; --json shows all)", &s[..end], s.len())
}

/// `YYYY-MM-DD HH:MM:SS` (UTC) for ms since the Unix epoch.
pub(crate) fn format_time(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// `850 ms`, `12.3 s`, `4 min 5 s`.
pub(crate) fn format_duration(ms: i64) -> String {
    if ms < 1000 {
        format!("{ms} ms")
    } else if ms < 60_000 {
        format!("{:.1} s", ms as f64 / 1000.0)
    } else {
        format!("{} min {} s", ms / 60_000, ms % 60_000 / 1000)
    }
}

/// What a waiting run waits for, for people: `sleeping until T`,
/// `waiting for event NAME (until T)`.
pub(crate) fn waiting_text(r: &durable::store::RunRecord) -> Option<String> {
    if r.status != RunStatus::Waiting {
        return None;
    }
    let until = r
        .wake_at_ms
        .map(|t| format!(" until {} UTC", format_time(t)))
        .unwrap_or_default();
    Some(match (&r.wait_event, &r.waiting_for) {
        (Some(name), _) => format!("waiting for event {name}{until}"),
        // A wait on handles (await-any, await-all) says what it waits for.
        (None, Some(what)) if what.starts_with("any of") => format!("waiting for {what}{until}"),
        (None, _) => format!("sleeping{until}"),
    })
}

/// The first 12 characters of a digest, as `show` prints components.
pub(crate) fn short(digest: &str) -> &str {
    digest.get(..12).unwrap_or(digest)
}

#[cfg(test)]
mod tests {
    #[test]
    fn times_and_durations_read_well() {
        assert_eq!(super::format_time(0), "1970-01-01 00:00:00");
        assert_eq!(super::format_time(1_795_693_143_988), "2026-11-26 11:39:03");
        assert_eq!(super::format_duration(850), "850 ms");
        assert_eq!(super::format_duration(12_345), "12.3 s");
        assert_eq!(super::format_duration(245_000), "4 min 5 s");
    }
}
