//! Flow control: queues that admit runs under limits (how many at once, how
//! many per key, how many starts per interval), in priority order.
//!
//! A queued run holds nothing until it is admitted; the store decides
//! admission in one transaction per queue (see `durable-store`'s
//! `queues.rs`), so every host sharing a database sees the same limits.

use std::fmt;

/// Highest priority a start may carry (0 is the default and the lowest).
pub const MAX_PRIORITY: u8 = 9;

/// Longest rate interval (366 days).
pub const MAX_RATE_INTERVAL_MS: i64 = 366 * 86_400_000;

/// Most admissions per rate interval.
pub const MAX_RATE_COUNT: u32 = 1_000_000;

/// Longest concurrency or debounce key, in bytes.
pub const MAX_KEY_BYTES: usize = 1024;

/// Checks a concurrency or debounce key: 1 to [`MAX_KEY_BYTES`] bytes, no
/// NUL (PostgreSQL's text cannot hold one).
///
/// # Errors
/// A message naming `what` and what is wrong.
pub fn validate_key(what: &str, key: &str) -> Result<(), String> {
    if key.is_empty() || key.len() > MAX_KEY_BYTES {
        return Err(format!(
            "{what}: 1 to {MAX_KEY_BYTES} bytes, not {}",
            key.len()
        ));
    }
    if key.contains('\0') {
        return Err(format!("{what}: a NUL byte is not allowed"));
    }
    Ok(())
}

/// At most `count` admissions per `per_ms`, as a token bucket of `burst`
/// tokens that refills continuously.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Admissions per interval.
    pub count: u32,
    /// The interval, in ms.
    pub per_ms: i64,
}

impl Rate {
    /// Parses `"N/INTERVAL"`: `"100/1m"`, `"20/1s"`, `"5/500ms"`, `"1000/1h"`
    /// (an interval without a number is one of its unit: `"20/s"`).
    ///
    /// # Errors
    /// A message saying what is wrong with `text`.
    pub fn parse(text: &str) -> Result<Rate, String> {
        let bad = || format!("rate {text:?} is not N/INTERVAL (such as \"100/1m\" or \"20/1s\")");
        let (count, interval) = text.trim().split_once('/').ok_or_else(bad)?;
        let count: u32 = count.trim().parse().map_err(|_| bad())?;
        let interval = interval.trim();
        // An interval without a number is one of its unit: "20/s".
        let interval = if interval.starts_with(|c: char| c.is_ascii_digit()) {
            interval.to_string()
        } else {
            format!("1{interval}")
        };
        let per_ms = crate::clock::parse_duration_ms(&interval).ok_or_else(bad)?;
        if count == 0 || per_ms <= 0 {
            return Err(format!(
                "rate {text:?} admits nothing: give at least 1 per interval of at least 1 ms"
            ));
        }
        if per_ms > MAX_RATE_INTERVAL_MS || count > MAX_RATE_COUNT {
            return Err(format!(
                "rate {text:?} is out of range: at most {MAX_RATE_COUNT} per interval, \
                 intervals of at most 366 days"
            ));
        }
        Ok(Rate { count, per_ms })
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (n, unit) = [
            (86_400_000, "d"),
            (3_600_000, "h"),
            (60_000, "m"),
            (1_000, "s"),
        ]
        .into_iter()
        .find(|(u, _)| self.per_ms % u == 0)
        .map_or((self.per_ms, "ms"), |(u, name)| (self.per_ms / u, name));
        write!(f, "{}/{n}{unit}", self.count)
    }
}

/// A queue's limits, as `durable.toml` (`[queues.NAME]`) or
/// `PUT /v1/queues/NAME` give them. A limit left out does not hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueConfig {
    /// The queue's name.
    pub name: String,
    /// Most runs of the queue admitted and not ended at once (running or
    /// waiting), across every host sharing the database.
    pub concurrency: Option<u32>,
    /// A JSON pointer into a run's input (`/customer`) whose value is the
    /// run's key when its start gives none.
    pub concurrency_key: Option<String>,
    /// Most runs with the same key admitted and not ended at once; 1 runs
    /// them one after another, in start order.
    pub per_key_concurrency: Option<u32>,
    /// Most admissions per interval.
    pub rate: Option<Rate>,
    /// How many admissions the rate lets through at once after a quiet
    /// time (the bucket's size); 1 unless given.
    pub burst: u32,
}

impl QueueConfig {
    /// A queue named `name` without limits.
    pub fn unlimited(name: impl Into<String>) -> QueueConfig {
        QueueConfig {
            name: name.into(),
            concurrency: None,
            concurrency_key: None,
            per_key_concurrency: None,
            rate: None,
            burst: 1,
        }
    }

    /// Checks the limits make sense (a limit of 0 would admit nothing).
    ///
    /// # Errors
    /// A message naming the queue and what is wrong.
    pub fn validate(&self) -> Result<(), String> {
        let name = &self.name;
        crate::names::validate_step_name(name)
            .map_err(|e| format!("invalid queue name {name:?}: {}", e.reason))?;
        if name == "." || name == ".." {
            return Err(format!("invalid queue name {name:?}: it is a path segment"));
        }
        if self.burst > MAX_RATE_COUNT {
            return Err(format!("queue {name:?}: burst is at most {MAX_RATE_COUNT}"));
        }
        if self.concurrency == Some(0) || self.per_key_concurrency == Some(0) {
            return Err(format!(
                "queue {name:?}: a concurrency of 0 admits nothing (leave it out for no limit)"
            ));
        }
        if self.burst == 0 {
            return Err(format!("queue {name:?}: burst must be at least 1"));
        }
        if let Some(p) = &self.concurrency_key {
            if !p.is_empty() && !p.starts_with('/') {
                return Err(format!(
                    "queue {name:?}: concurrency_key {p:?} is not a JSON pointer (such as \"/customer\")"
                ));
            }
            if p.len() > MAX_KEY_BYTES || p.contains('\0') {
                return Err(format!(
                    "queue {name:?}: concurrency_key is at most {MAX_KEY_BYTES} bytes, without NUL"
                ));
            }
        }
        Ok(())
    }

    /// The key of a run of this queue with `input` (JSON text) whose start
    /// gave none: the value at [`QueueConfig::concurrency_key`] (a string
    /// as it is, anything else as JSON); `None` without a pointer or a
    /// value there.
    pub fn key_of(&self, input: &str) -> Option<String> {
        let pointer = self.concurrency_key.as_deref()?;
        let value: serde_json::Value = serde_json::from_str(input).ok()?;
        match value.pointer(pointer)? {
            serde_json::Value::String(s) => Some(s.clone()),
            serde_json::Value::Null => None,
            other => Some(other.to_string()),
        }
    }
}

/// How a run enters a queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedStart {
    /// The queue's name (it must exist).
    pub queue: String,
    /// The run's concurrency key; `None` takes the queue's pointer into
    /// the input.
    pub key: Option<String>,
    /// 0 to [`MAX_PRIORITY`]: higher is admitted first, in start order
    /// within a priority.
    pub priority: u8,
}

/// A queue and where its runs stand.
#[derive(Debug, Clone, PartialEq)]
pub struct QueueState {
    /// The queue's limits.
    pub config: QueueConfig,
    /// Runs started and not admitted yet.
    pub queued: u64,
    /// Runs admitted and not ended (running or waiting).
    pub active: u64,
    /// Tokens in the rate's bucket as of now (with a rate).
    pub tokens: Option<f64>,
}

/// Starts of one workflow with one key within a window make one run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Debounce {
    /// The key: starts of the same workflow with the same key while a run
    /// of theirs is pending are that run.
    pub key: String,
    /// The window, from the first start: the run is admitted when it ends.
    pub ms: i64,
    /// Later starts' input replaces the pending run's (`last`); `false`
    /// keeps the first one's (`first`).
    pub last_wins: bool,
}

/// What holds a queued run back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Held {
    /// Runs ahead of it (higher priority, or started before it) go first.
    Behind,
    /// The queue's `concurrency` is reached.
    Concurrency,
    /// Its key's `per_key_concurrency` is reached.
    Key,
    /// The queue's rate has no token now.
    Rate,
    /// Its debounce window has not ended.
    Debounce,
    /// Nothing: a server admits it at its next look.
    Nothing,
}

impl Held {
    /// The name shown to users (`durable show`, the API).
    pub fn as_str(self) -> &'static str {
        match self {
            Held::Behind => "behind",
            Held::Concurrency => "concurrency",
            Held::Key => "key",
            Held::Rate => "rate",
            Held::Debounce => "debounce",
            Held::Nothing => "nothing",
        }
    }
}

/// Where a queued run stands in its queue.
#[derive(Debug, Clone, PartialEq)]
pub struct QueuePosition {
    /// The queue (`None`: a debounced run in none).
    pub queue: Option<String>,
    /// When its debounce window ends, if it has one.
    pub not_before_ms: Option<i64>,
    /// The run's key, if any.
    pub key: Option<String>,
    /// Its priority.
    pub priority: u8,
    /// Runs of the queue admitted before it would be (0: next).
    pub position: u64,
    /// What holds it back now.
    pub held_by: Held,
}

/// What one look at the queues admitted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Admission {
    /// The runs admitted (now `running`, owned by nobody: for the taking).
    pub admitted: Vec<String>,
    /// When a queue held back by its rate has its next token (ms since the
    /// epoch, the database's clock): the next look worth making for it.
    pub next_at_ms: Option<i64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse_and_print_back() {
        for (text, count, per_ms, shown) in [
            ("100/1m", 100, 60_000, "100/1m"),
            ("20/1s", 20, 1_000, "20/1s"),
            ("20/s", 20, 1_000, "20/1s"),
            ("5/500ms", 5, 500, "5/500ms"),
            (" 7 / 2h ", 7, 7_200_000, "7/2h"),
        ] {
            let r = Rate::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!((r.count, r.per_ms), (count, per_ms), "{text}");
            assert_eq!(r.to_string(), shown);
        }
        for bad in [
            "",
            "10",
            "10/",
            "x/1s",
            "10/1y",
            "0/1s",
            "10/0s",
            "-1/1s",
            "1/106751991167d",
            "1/9223372036854775807ms",
            "1/367d",
            "2000000/1s",
        ] {
            assert!(Rate::parse(bad).is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn keys_come_from_the_pointer_and_limits_of_zero_are_refused() {
        let mut q = QueueConfig::unlimited("payments");
        assert_eq!(q.key_of(r#"{"customer":"c-1"}"#), None);
        q.concurrency_key = Some("/customer".into());
        assert_eq!(q.key_of(r#"{"customer":"c-1"}"#).as_deref(), Some("c-1"));
        assert_eq!(q.key_of(r#"{"customer":42}"#).as_deref(), Some("42"));
        assert_eq!(q.key_of(r#"{"other":1}"#), None);
        assert_eq!(q.key_of("not json"), None);
        assert!(q.validate().is_ok());
        q.concurrency = Some(0);
        assert!(q.validate().is_err());
        q.concurrency = Some(1);
        q.concurrency_key = Some("customer".into());
        assert!(q.validate().is_err());
    }
}
