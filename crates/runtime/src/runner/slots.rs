//! Bounds on what a drive holds while steps run: instance slots for step
//! instances (waiting parents included), and the clock of one attempt.
//!
//! A step instance lives from its instantiation to its end, including the
//! time it waits for its nested steps. Slots bound how many live at once,
//! so that no batch size can exhaust the instance pool. A parent waiting
//! on a child holds its slot while the child needs one, so slots are
//! handed out with a reserve for deeper levels (the banker's rule): a step
//! at nesting depth `d` gets a slot only if `MAX_NESTING - d` slots stay
//! free after it. The most recently granted slot therefore always leaves
//! enough for its own children, so the deepest waiting chain can always
//! go on, and there is no deadlock whatever the batch sizes.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

/// Deepest nesting of steps in step bodies: a top-level step is at depth 1,
/// a step called from its body at depth 2, and so on. A call deeper than
/// this is refused as the guest's error.
pub const MAX_NESTING: u32 = 32;

/// Slots for step instances, granted deepest first.
pub(crate) struct InstanceSlots {
    state: Mutex<SlotState>,
}

struct SlotState {
    free: usize,
    /// Waiters per depth, each queue first come first served.
    waiters: BTreeMap<u32, VecDeque<oneshot::Sender<SlotGuard>>>,
}

/// One granted slot; dropping it gives it back.
pub(crate) struct SlotGuard {
    slots: Arc<InstanceSlots>,
    /// False for a guard whose hand-off failed: `release` takes its slot
    /// back itself (no recursion through `Drop`).
    armed: bool,
}

impl Drop for SlotGuard {
    fn drop(&mut self) {
        if self.armed {
            self.slots.release();
        }
    }
}

fn reserve(depth: u32) -> usize {
    MAX_NESTING.saturating_sub(depth) as usize
}

impl InstanceSlots {
    /// `total` slots; at least `MAX_NESTING + 1` are kept so that the
    /// deepest allowed chain always fits.
    pub(crate) fn new(total: usize) -> Arc<InstanceSlots> {
        Arc::new(InstanceSlots {
            state: Mutex::new(SlotState {
                free: total.max(MAX_NESTING as usize + 1),
                waiters: BTreeMap::new(),
            }),
        })
    }

    /// Waits for a slot for a step instance at nesting depth `depth`.
    pub(crate) async fn acquire(self: &Arc<Self>, depth: u32) -> SlotGuard {
        loop {
            let rx = {
                let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
                let queued_ahead = st.waiters.range(depth..).any(|(_, q)| !q.is_empty());
                if !queued_ahead && st.free > reserve(depth) {
                    st.free -= 1;
                    return SlotGuard {
                        slots: self.clone(),
                        armed: true,
                    };
                }
                let (tx, rx) = oneshot::channel();
                st.waiters.entry(depth).or_default().push_back(tx);
                rx
            };
            if let Ok(guard) = rx.await {
                return guard;
            }
        }
    }

    fn release(self: &Arc<Self>) {
        let mut returned = 1;
        // A hand-off to a waiter that gave up in the meantime fails; its
        // slot comes back here and goes to the next waiter, in this loop.
        while returned > 0 {
            let mut handoff = Vec::new();
            {
                let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
                st.free += returned;
                returned = 0;
                // Deepest first: its reserve is the smallest, so if it cannot
                // go, nobody can. Waiters that gave up are dropped unserved.
                loop {
                    for q in st.waiters.values_mut() {
                        while q.front().is_some_and(|tx| tx.is_closed()) {
                            q.pop_front();
                        }
                    }
                    let free = st.free;
                    let Some((&depth, queue)) =
                        st.waiters.iter_mut().rev().find(|(_, q)| !q.is_empty())
                    else {
                        break;
                    };
                    if free <= reserve(depth) {
                        break;
                    }
                    if let Some(tx) = queue.pop_front() {
                        handoff.push(tx);
                        st.free -= 1;
                    }
                }
                st.waiters.retain(|_, q| !q.is_empty());
            }
            for tx in handoff {
                if let Err(mut guard) = tx.send(SlotGuard {
                    slots: self.clone(),
                    armed: true,
                }) {
                    guard.armed = false;
                    returned += 1;
                }
            }
        }
    }

    /// Takes up to `n` free slots away for good (keeping the deepest
    /// chain's `MAX_NESTING + 1`), for a component whose instances need more
    /// of the pool than one slot's share. Returns how many were taken.
    pub(crate) fn shrink(&self, n: usize) -> usize {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let take = n.min(st.free.saturating_sub(MAX_NESTING as usize + 1));
        st.free -= take;
        take
    }

    #[cfg(test)]
    fn free(&self) -> usize {
        self.state.lock().map(|s| s.free).unwrap_or(0)
    }
}

/// The clock of one step attempt: its timeout counts the time the step's
/// own code runs, not the time it waits for its nested steps (which have
/// timeouts of their own) or for host capacity.
pub(crate) struct AttemptClock {
    state: Mutex<ClockState>,
}

struct ClockState {
    started: Instant,
    paused_total: Duration,
    paused_since: Option<Instant>,
    pauses: u32,
}

/// While alive, the clock it came from is stopped.
pub(crate) struct Paused {
    clock: Arc<AttemptClock>,
}

impl Drop for Paused {
    fn drop(&mut self) {
        let mut st = self.clock.state.lock().unwrap_or_else(|p| p.into_inner());
        st.pauses = st.pauses.saturating_sub(1);
        if st.pauses == 0
            && let Some(since) = st.paused_since.take()
        {
            st.paused_total += since.elapsed();
        }
    }
}

impl AttemptClock {
    pub(crate) fn start() -> Arc<AttemptClock> {
        Arc::new(AttemptClock {
            state: Mutex::new(ClockState {
                started: Instant::now(),
                paused_total: Duration::ZERO,
                paused_since: None,
                pauses: 0,
            }),
        })
    }

    /// Stops the clock until the returned guard is dropped.
    pub(crate) fn pause(self: &Arc<Self>) -> Paused {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if st.pauses == 0 {
            st.paused_since = Some(Instant::now());
        }
        st.pauses += 1;
        Paused {
            clock: self.clone(),
        }
    }

    /// Time left of `timeout`; `None` while the clock is stopped.
    pub(crate) fn remaining(&self, timeout: Duration) -> Option<Duration> {
        let st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if st.pauses > 0 {
            return None;
        }
        let counted = st.started.elapsed().saturating_sub(st.paused_total);
        Some(timeout.saturating_sub(counted))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_full_chain_of_waiting_parents_still_gets_slots_for_the_deepest_child() {
        let slots = InstanceSlots::new(MAX_NESTING as usize + 1);
        // Top-level steps may take only the slots beyond the reserve of
        // MAX_NESTING - 1 for the levels below them.
        let top = slots.acquire(1).await;
        let other = slots.acquire(1).await;
        assert_eq!(slots.free(), MAX_NESTING as usize - 1);
        let blocked = tokio::time::timeout(Duration::from_millis(50), slots.acquire(1)).await;
        assert!(blocked.is_err(), "a third top-level step must wait");
        // But a chain of children down to the deepest level fits.
        let mut chain = vec![top, other];
        for depth in 2..=MAX_NESTING {
            chain.push(slots.acquire(depth).await);
        }
        assert_eq!(slots.free(), 0);
        drop(chain);
        assert_eq!(slots.free(), MAX_NESTING as usize + 1);
    }

    #[tokio::test]
    async fn released_slots_go_to_the_deepest_waiter_and_abandoned_waits_give_them_back() {
        let slots = InstanceSlots::new(MAX_NESTING as usize + 2);
        let a = slots.acquire(1).await;
        let b = slots.acquire(1).await;
        let shallow = tokio::spawn({
            let s = slots.clone();
            async move { s.acquire(1).await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        // A waiter that gives up must not keep a slot.
        let gave_up = tokio::time::timeout(Duration::from_millis(10), slots.acquire(1)).await;
        assert!(gave_up.is_err());
        drop(a);
        let got = tokio::time::timeout(Duration::from_secs(5), shallow)
            .await
            .expect("the waiter is served")
            .expect("no panic");
        drop(got);
        drop(b);
        assert_eq!(slots.free(), MAX_NESTING as usize + 2);
    }

    #[tokio::test]
    async fn many_waiters_that_gave_up_neither_keep_slots_nor_recurse() {
        let slots = InstanceSlots::new(MAX_NESTING as usize + 1);
        let held: Vec<_> = vec![slots.acquire(1).await, slots.acquire(1).await];
        // 20,000 waiters queue, then give up (as when a batch is aborted).
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..20_000 {
            let s = slots.clone();
            set.spawn(async move { s.acquire(1).await });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        set.abort_all();
        while set.join_next().await.is_some() {}
        drop(held);
        assert_eq!(slots.free(), MAX_NESTING as usize + 1);
        let again = tokio::time::timeout(Duration::from_secs(5), slots.acquire(1)).await;
        assert!(again.is_ok(), "a new waiter is served");
    }

    #[test]
    fn shrinking_keeps_the_deepest_chains_reserve() {
        let slots = InstanceSlots::new(100);
        assert_eq!(slots.shrink(10), 10);
        assert_eq!(slots.free(), 90);
        assert_eq!(slots.shrink(1000), 90 - (MAX_NESTING as usize + 1));
        assert_eq!(slots.free(), MAX_NESTING as usize + 1);
    }

    #[tokio::test]
    async fn a_paused_clock_does_not_run_out() {
        let clock = AttemptClock::start();
        let p = clock.pause();
        tokio::time::sleep(Duration::from_millis(30)).await;
        assert_eq!(clock.remaining(Duration::from_millis(10)), None);
        drop(p);
        let left = clock
            .remaining(Duration::from_millis(1000))
            .expect("running");
        assert!(left > Duration::from_millis(950), "{left:?}");
    }
}
