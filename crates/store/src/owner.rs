//! Who drives a run: an identity for this process, and a liveness test for
//! the identity another process recorded.
//!
//! A run is owned by one process at a time. The owner writes its identity and
//! a lease expiry into the run's row and renews the lease while it drives the
//! run. Another process may take the run over when the lease has expired, or
//! at once when the owner is provably gone: it ran on this same machine
//! (host name *and* boot id), in this same pid namespace, and its pid no
//! longer exists, belongs to a process that started at another time, or is
//! a zombie (exited, not yet reaped). Anything short of that proof (another
//! machine, another container's pid namespace, an unreadable `/proc`, an
//! identity written by an older version) waits for the lease. That rule is
//! what lets `resume` continue right after a `kill -9` without waiting.

use std::fmt;

/// How long a lease lasts without renewal, by default (a store's lease is
/// set when it is opened: `StoreOptions::lease_ms`).
pub const DEFAULT_LEASE_MS: i64 = 15_000;

/// The identity of one host process:
/// `host:boot-id:pid-namespace:pid:start-ticks:nonce` (`-` for a part that
/// could not be read).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    host: String,
    boot_id: Option<String>,
    pid_ns: Option<u64>,
    pid: u32,
    start_ticks: Option<u64>,
    nonce: u64,
}

impl Owner {
    /// The identity of the current process.
    pub fn current() -> Owner {
        let pid = std::process::id();
        let mut nonce = [0u8; 8];
        // A failed getrandom leaves a zero nonce; the other parts still
        // tell processes apart.
        let _ = getrandom::fill(&mut nonce);
        let me = this_process();
        Owner {
            host: me.host.clone(),
            boot_id: me.boot_id.clone(),
            pid_ns: me.pid_ns,
            pid,
            start_ticks: me.start_ticks,
            nonce: u64::from_le_bytes(nonce),
        }
    }

    /// The text every owner of this process starts with (its identity
    /// without the nonce): rows whose owner starts so are this process's,
    /// alive by definition.
    pub fn this_process_prefix() -> &'static str {
        static PREFIX: std::sync::OnceLock<String> = std::sync::OnceLock::new();
        PREFIX.get_or_init(|| {
            let me = Owner {
                nonce: 0,
                ..Owner::current()
            }
            .to_string();
            // Everything up to the nonce, and the ':' before it.
            match me.rfind(':') {
                Some(i) => me[..=i].to_string(),
                None => me,
            }
        })
    }

    /// Parses an identity written by [`Owner::to_string`] (or the older
    /// `host:pid:start-ticks:nonce`, which can never be proven dead).
    pub fn parse(s: &str) -> Option<Owner> {
        let parts: Vec<&str> = s.rsplitn(6, ':').collect();
        let opt = |p: &str| (p != "-").then(|| p.to_string());
        let ticks = |p: &str| -> Option<Option<u64>> {
            if p == "-" {
                Some(None)
            } else {
                Some(Some(p.parse().ok()?))
            }
        };
        match parts.as_slice() {
            [nonce, start, pid, ns, boot, host] => Some(Owner {
                host: host.to_string(),
                boot_id: opt(boot),
                pid_ns: match *ns {
                    "-" => None,
                    n => Some(n.parse().ok()?),
                },
                pid: pid.parse().ok()?,
                start_ticks: ticks(start)?,
                nonce: u64::from_str_radix(nonce, 16).ok()?,
            }),
            // The format before boot ids and namespaces were recorded
            // (with a host name that held no ':').
            [nonce, start, pid, host] => Some(Owner {
                host: host.to_string(),
                boot_id: None,
                pid_ns: None,
                pid: pid.parse().ok()?,
                start_ticks: ticks(start)?,
                nonce: u64::from_str_radix(nonce, 16).ok()?,
            }),
            _ => None,
        }
    }

    /// The owner's process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The owner's host name.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// True when the owner is provably gone (see the module docs), so its
    /// lease can be broken without waiting for it to expire.
    pub fn is_provably_dead(&self) -> bool {
        let (Some(boot), Some(ns), Some(then)) = (&self.boot_id, self.pid_ns, self.start_ticks)
        else {
            return false;
        };
        let me = this_process();
        if self.host != me.host
            || me.boot_id.as_deref() != Some(boot.as_str())
            || me.pid_ns != Some(ns)
        {
            return false;
        }
        // This process: alive, without asking /proc (a server asks this of
        // every run it drives, at every look for due runs).
        if self.pid == std::process::id() && me.start_ticks == Some(then) {
            return false;
        }
        match std::fs::read_to_string(format!("/proc/{}/stat", self.pid)) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                // Gone, if /proc itself answers (an unmounted /proc proves
                // nothing).
                std::path::Path::new("/proc/self/stat").exists()
            }
            Err(_) => false,
            Ok(text) => match parse_stat(&text) {
                Some(now) => now.start_ticks != then || now.state == 'Z',
                None => false,
            },
        }
    }
}

impl fmt::Display for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let dash = |o: Option<String>| o.unwrap_or_else(|| "-".into());
        write!(
            f,
            "{}:{}:{}:{}:{}:{:016x}",
            self.host,
            dash(self.boot_id.clone()),
            dash(self.pid_ns.map(|n| n.to_string())),
            self.pid,
            dash(self.start_ticks.map(|t| t.to_string())),
            self.nonce
        )
    }
}

/// This process's identity, read once: none of it changes while the
/// process lives (a host renamed meanwhile keeps the name its owners
/// were written with).
struct ThisProcess {
    host: String,
    boot_id: Option<String>,
    pid_ns: Option<u64>,
    start_ticks: Option<u64>,
}

fn this_process() -> &'static ThisProcess {
    static ME: std::sync::OnceLock<ThisProcess> = std::sync::OnceLock::new();
    ME.get_or_init(|| ThisProcess {
        host: hostname(),
        boot_id: boot_id(),
        pid_ns: pid_namespace("self"),
        start_ticks: process_stat(std::process::id()).map(|s| s.start_ticks),
    })
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".to_string())
        .replace(':', "_")
}

/// This boot of the kernel: changes at every reboot, shared by the
/// containers of one machine.
fn boot_id() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .ok()
        .map(|s| s.trim().replace(':', "_"))
        .filter(|s| !s.is_empty())
}

/// The inode of a process's pid namespace (`pid:[4026531836]`): pids are
/// only comparable inside one.
fn pid_namespace(pid: &str) -> Option<u64> {
    let link = std::fs::read_link(format!("/proc/{pid}/ns/pid")).ok()?;
    let link = link.to_str()?;
    link.strip_prefix("pid:[")?.strip_suffix(']')?.parse().ok()
}

/// What `/proc/PID/stat` says of a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stat {
    /// Field 3: R, S, D, Z (zombie), ...
    state: char,
    /// Field 22: start time in clock ticks since boot, which tells a live
    /// process from a later one that reused its pid.
    start_ticks: u64,
}

fn process_stat(pid: u32) -> Option<Stat> {
    parse_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

fn parse_stat(stat: &str) -> Option<Stat> {
    // The command name (field 2) is in parentheses and may contain spaces.
    let mut fields = stat[stat.rfind(')')? + 1..].split_whitespace();
    let state = fields.next()?.chars().next()?;
    let start_ticks = fields.nth(18)?.parse().ok()?;
    Some(Stat { state, start_ticks })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_round_trips_through_its_text_form() {
        let me = Owner::current();
        assert!(me.boot_id.is_some() && me.pid_ns.is_some(), "needs /proc");
        assert_eq!(Owner::parse(&me.to_string()), Some(me));
    }

    #[test]
    fn every_owner_of_this_process_starts_with_its_prefix() {
        let prefix = Owner::this_process_prefix();
        assert!(prefix.ends_with(':'), "{prefix}");
        assert!(
            prefix.contains(&format!(":{}:", std::process::id())),
            "{prefix}"
        );
        for _ in 0..3 {
            assert!(Owner::current().to_string().starts_with(prefix));
        }
    }

    #[test]
    fn the_current_process_is_alive_and_a_missing_or_reused_pid_is_dead() {
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
    fn a_zombie_is_dead() {
        let child = std::process::Command::new("true")
            .spawn()
            .expect("spawn true");
        let pid = child.id();
        // Not reaped: it stays a zombie until `wait`.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let stat = loop {
            let s = process_stat(pid).expect("the zombie is still listed");
            if s.state == 'Z' || std::time::Instant::now() > deadline {
                break s;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        };
        assert_eq!(stat.state, 'Z');
        let zombie = Owner {
            pid,
            start_ticks: Some(stat.start_ticks),
            ..Owner::current()
        };
        assert!(zombie.is_provably_dead());
        let mut child = child;
        let _ = child.wait();
    }

    #[test]
    fn without_proof_an_owner_is_never_dead() {
        let me = Owner::current();
        let gone = Owner {
            pid: u32::MAX - 7,
            ..me.clone()
        };
        for other in [
            Owner {
                host: "elsewhere.invalid".into(),
                ..gone.clone()
            },
            // Same host name, another machine (or a boot before a reboot).
            Owner {
                boot_id: Some("another-boot".into()),
                ..gone.clone()
            },
            // Same machine, another container's pid namespace.
            Owner {
                pid_ns: gone.pid_ns.map(|n| n + 1),
                ..gone.clone()
            },
            Owner {
                boot_id: None,
                ..gone.clone()
            },
        ] {
            assert!(!other.is_provably_dead(), "{other}");
        }
        // An identity in the older format carries no boot id: no proof.
        let legacy = Owner::parse(&format!("{}:{}:-:00000000000000ff", me.host, u32::MAX - 7))
            .expect("the older format parses");
        assert_eq!(legacy.pid(), u32::MAX - 7);
        assert!(!legacy.is_provably_dead());
    }
}
