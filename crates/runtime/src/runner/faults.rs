//! Fault injection: where a drive kills its own process, and the settings
//! `durable check` drives its runs with. Off unless asked for.

/// Where to crash, and how a checked run waits.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    /// Kill the process (SIGKILL) right after the step with this key has
    /// been committed; also after a child's start (`$child:NAME#n@started`),
    /// a child's end recorded in its parent (`$child:NAME#n`), an
    /// await-any's winner (`$select#n`), or the end of a run (`$end`).
    pub crash_after: Option<String>,
    /// Kill the process after the step with this key has returned, before
    /// its outcome is committed: the window in which a crash makes a step
    /// run twice (at least once). The observer hears the uncommitted outcome
    /// first ([`super::Observer::uncommitted`]).
    pub crash_before_commit: Option<String>,
    /// End durable sleeps at once (the recorded wake-up time is the time of
    /// the call): a check does not wait out a workflow's timers.
    pub skip_sleeps: bool,
}

impl Faults {
    /// True when the process must die after `key` commits.
    pub(crate) fn crash_after(&self, key: &str) -> bool {
        self.crash_after.as_deref() == Some(key)
    }

    /// True when the process must die before `key` commits.
    pub(crate) fn crash_before_commit(&self, key: &str) -> bool {
        self.crash_before_commit.as_deref() == Some(key)
    }
}
