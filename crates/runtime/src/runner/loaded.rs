//! The components a runtime keeps loaded (compiled and linked), by digest,
//! within a memory budget: a server that receives many distinct uploads
//! keeps the ones runs use lately and drops the others, which load again
//! from the compile cache (a deserialize, milliseconds) when a run needs
//! them.

use std::collections::HashMap;
use std::sync::Mutex;

use super::LoadedWorkflow;

/// Loaded components, least recently used dropped first beyond the budget.
pub(crate) struct Loaded {
    budget: usize,
    inner: Mutex<Entries>,
}

#[derive(Default)]
struct Entries {
    by_digest: HashMap<String, (LoadedWorkflow, u64)>,
    /// A counter: the higher an entry's, the more recently it was used.
    clock: u64,
    bytes: usize,
}

impl Loaded {
    /// Keeps at most `budget` bytes loaded (and always the last one put).
    pub(crate) fn new(budget: usize) -> Loaded {
        Loaded {
            budget,
            inner: Mutex::new(Entries::default()),
        }
    }

    /// The component with `digest`, if loaded; marks it used.
    pub(crate) fn get(&self, digest: &str) -> Option<LoadedWorkflow> {
        let mut inner = self.inner.lock().ok()?;
        inner.clock += 1;
        let now = inner.clock;
        let (wf, used) = inner.by_digest.get_mut(digest)?;
        *used = now;
        Some(wf.clone())
    }

    /// Keeps `wf`, dropping the least recently used others while over the
    /// budget. A drive that holds a dropped one keeps it alive until it
    /// ends.
    pub(crate) fn put(&self, wf: &LoadedWorkflow) {
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        inner.clock += 1;
        let now = inner.clock;
        if let Some((old, _)) = inner.by_digest.insert(wf.digest.clone(), (wf.clone(), now)) {
            inner.bytes -= old.memory_bytes;
        }
        inner.bytes += wf.memory_bytes;
        while inner.bytes > self.budget && inner.by_digest.len() > 1 {
            let Some(oldest) = inner
                .by_digest
                .iter()
                .filter(|(d, _)| **d != wf.digest)
                .min_by_key(|(_, (_, used))| *used)
                .map(|(d, _)| d.clone())
            else {
                break;
            };
            if let Some((gone, _)) = inner.by_digest.remove(&oldest) {
                inner.bytes -= gone.memory_bytes;
            }
        }
    }

    /// Drops the component with `digest`, if loaded.
    pub(crate) fn remove(&self, digest: &str) {
        if let Ok(mut inner) = self.inner.lock()
            && let Some((gone, _)) = inner.by_digest.remove(digest)
        {
            inner.bytes -= gone.memory_bytes;
        }
    }

    /// How many are loaded, and their bytes.
    pub(crate) fn usage(&self) -> (usize, usize) {
        self.inner
            .lock()
            .map(|i| (i.by_digest.len(), i.bytes))
            .unwrap_or_default()
    }
}

/// Gives memory the allocator holds but no longer uses back to the system
/// (glibc keeps freed memory in its arenas: after a compile, which
/// allocates hundreds of MiB for a moment, or after components are
/// dropped, a server's RSS would otherwise stay at its peak). Elsewhere, a
/// no-op.
pub fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free pages of the allocator's own
    // heaps to the kernel; it touches no memory in use.
    unsafe {
        libc::malloc_trim(0);
    }
}
