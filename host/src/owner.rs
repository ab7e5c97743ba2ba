//! Who drives a run: an identity for this process, and a liveness test for
//! the identity another process recorded.
//!
//! A run is owned by one process at a time. The owner writes its identity and
//! a lease expiry into the run's row and renews the lease while it drives the
//! run. Another process may take the run over when the lease has expired, or
//! at once when the owner is on this same machine and provably gone (its pid
//! no longer exists, or now belongs to a process that started at another
//! time). That second rule is what lets `resume` continue right after a
//! `kill -9` without waiting for the lease to run out.

use std::fmt;

/// How long a lease lasts without renewal.
pub const LEASE_MS: i64 = 15_000;

/// The identity of one host process: `host:pid:start-ticks:nonce`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    host: String,
    pid: u32,
    start_ticks: Option<u64>,
    nonce: u64,
}

impl Owner {
    /// The identity of the current process.
    pub fn current() -> Owner {
        let pid = std::process::id();
        let mut nonce = [0u8; 8];
        // A failed getrandom leaves a zero nonce; pid and start time still
        // tell processes apart, the nonce only guards against pid reuse
        // races across containers sharing a hostname.
        let _ = getrandom::fill(&mut nonce);
        Owner {
            host: hostname(),
            pid,
            start_ticks: process_start_ticks(pid),
            nonce: u64::from_le_bytes(nonce),
        }
    }

    /// Parses an identity written by [`Owner::to_string`].
    pub fn parse(s: &str) -> Option<Owner> {
        let mut parts = s.rsplitn(4, ':');
        let nonce = u64::from_str_radix(parts.next()?, 16).ok()?;
        let start = parts.next()?;
        let pid = parts.next()?.parse().ok()?;
        let host = parts.next()?.to_string();
        let start_ticks = if start == "-" {
            None
        } else {
            Some(start.parse().ok()?)
        };
        Some(Owner {
            host,
            pid,
            start_ticks,
            nonce,
        })
    }

    /// The owner's process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The owner's host name.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// True when the owner is on this machine and its process is gone, so
    /// its lease can be broken without waiting for it to expire.
    pub fn is_provably_dead(&self) -> bool {
        if self.host != hostname() {
            return false;
        }
        match (process_start_ticks(self.pid), self.start_ticks) {
            // No such process: it is gone.
            (None, _) if !std::path::Path::new(&format!("/proc/{}", self.pid)).exists() => true,
            // The pid was reused by a process that started at another time.
            (Some(now), Some(then)) => now != then,
            _ => false,
        }
    }
}

impl fmt::Display for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.start_ticks {
            Some(t) => write!(f, "{}:{}:{}:{:016x}", self.host, self.pid, t, self.nonce),
            None => write!(f, "{}:{}:-:{:016x}", self.host, self.pid, self.nonce),
        }
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".to_string())
}

/// The process's start time in clock ticks since boot (field 22 of
/// `/proc/PID/stat`), which tells a live process from a later one that
/// reused its pid. `None` where `/proc` is not available.
fn process_start_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may contain spaces.
    let after_name = &stat[stat.rfind(')')? + 1..];
    after_name.split_whitespace().nth(19)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_round_trips_through_its_text_form() {
        let me = Owner::current();
        assert_eq!(Owner::parse(&me.to_string()), Some(me));
    }

    #[test]
    fn the_current_process_is_alive_and_a_missing_pid_is_dead() {
        let me = Owner::current();
        assert!(me.start_ticks.is_some(), "needs /proc");
        assert!(!me.is_provably_dead());
        let gone = Owner {
            pid: u32::MAX - 7,
            ..me.clone()
        };
        assert!(gone.is_provably_dead());
        let reused = Owner {
            start_ticks: me.start_ticks.map(|t| t + 1),
            ..me
        };
        assert!(reused.is_provably_dead());
    }

    #[test]
    fn an_owner_on_another_host_is_never_provably_dead() {
        let other = Owner {
            host: "elsewhere.invalid".into(),
            ..Owner::current()
        };
        assert!(!other.is_provably_dead());
    }
}
