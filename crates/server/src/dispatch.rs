//! Which runs the server drives, and when: one task per run being driven,
//! none per waiting run. The store is the queue: a run that parks leaves
//! `waiting` with its wake-up time (an event sent to it, by this server or
//! by `durable event` in another process, makes it due at once), and a poll
//! of one indexed query every [`POLL`] takes up what is due.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use std::time::Instant;

use durable::runner::LoadedWorkflow;
use durable::runner::{Finished, RunError, Runtime};
use durable::store::{Creation, RunRecord, StoreError};
use tokio::sync::Notify;

/// How often a SQLite store is asked what is due: a write of another
/// process (an event, a run left behind by a killed process) is noticed
/// within it.
pub const POLL: Duration = Duration::from_millis(50);

/// On PostgreSQL, which wakes the hosts itself, the safety net: how often
/// the store is asked what is due when nothing woke this host (and so the
/// bound, with the lease, on taking over the runs of a host that died).
pub const SLOW_POLL: Duration = Duration::from_secs(1);

/// Most runs taken up per poll (the rest wait for the next one).
const BATCH: usize = 1000;

/// Longest wait before a run whose drives keep failing is tried again.
const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// Drives runs in tasks; cheap to clone.
#[derive(Clone)]
pub struct Dispatcher {
    inner: Arc<Inner>,
}

struct Inner {
    rt: Arc<Runtime>,
    metrics: Arc<super::metrics::Metrics>,
    /// Runs a task of this server drives (or is about to).
    driving: Mutex<HashSet<String>>,
    /// Runs whose last drives failed (a divergence, a component that does
    /// not instantiate): not taken up again before their time, so that a
    /// run that fails the same way every time is not retried every poll.
    failing: Mutex<HashMap<String, (u32, Instant)>>,
    stopped: AtomicBool,
    /// Signalled when a drive task ends.
    ended: Notify,
    /// Signalled when a queue may admit a run now (a run was queued, a
    /// queue changed, a run of a queue ended): the poll looks at once.
    admit: Notify,
    /// Long polls waiting on a run, by run id, and how many wait: woken
    /// when a drive of that run by this server ends (which hands them the
    /// run as it ended), or when the look at runs driven elsewhere
    /// ([`Dispatcher::watch_others`]) finds it ended. Nothing reads the
    /// database per waiter while it waits.
    watchers: Mutex<HashMap<String, (Arc<Watched>, usize)>>,
}

/// What the long polls on one run share.
#[derive(Default)]
struct Watched {
    notify: Notify,
    /// How many drives of the run by this server ended since the entry
    /// was made, and the run as the last one left it (`None` when that
    /// drive failed: look at the database).
    ended: Mutex<(u64, Option<Arc<RunRecord>>)>,
}

impl Watched {
    /// A drive of the run ended, leaving it as `run`: wakes the waiters.
    fn publish(&self, run: Option<Arc<RunRecord>>) {
        if let Ok(mut ended) = self.ended.lock() {
            ended.0 += 1;
            ended.1 = run;
        }
        self.notify.notify_waiters();
    }
}

/// How often the runs that long polls wait on and that no drive of this
/// server holds are looked at (one read for all of them): a run finished
/// by another process (`durable cancel`, another host) answers its long
/// polls within this.
pub const OTHERS_POLL: Duration = Duration::from_secs(1);

/// Takes a run out of the driving set when its task ends, however it ends,
/// and hands the long polls on it the run as the drive left it.
struct Driving {
    inner: Arc<Inner>,
    id: String,
    /// The run as the drive left it, when it ended without an error.
    left: std::sync::OnceLock<Arc<RunRecord>>,
}

impl Driving {
    /// The drive ended so: its waiters get the run as it left it. A run
    /// of a queue that ended leaves a slot: the queue may admit another.
    fn ended(self, result: Result<Finished, RunError>) {
        if let Ok(f) = result {
            if f.run.queue.is_some() && !f.run.status.is_open() {
                self.inner.admit.notify_one();
            }
            let _ = self.left.set(Arc::new(f.run));
        }
    }
}

impl Drop for Driving {
    fn drop(&mut self) {
        // Out of the driving set before the waiters hear of it: a watch
        // made after this sees no drive, and looks at the database.
        if let Ok(mut d) = self.inner.driving.lock() {
            d.remove(&self.id);
        }
        self.inner.ended.notify_waiters();
        if let Some((w, _)) = self
            .inner
            .watchers
            .lock()
            .ok()
            .and_then(|w| w.get(&self.id).cloned())
        {
            w.publish(self.left.take());
        }
    }
}

impl Dispatcher {
    /// Starts the poll loop (which also takes up, at once, every run left
    /// interrupted by an earlier process).
    pub fn start(rt: Arc<Runtime>, metrics: Arc<super::metrics::Metrics>) -> Dispatcher {
        let d = Dispatcher {
            inner: Arc::new(Inner {
                rt,
                metrics,
                driving: Mutex::new(HashSet::new()),
                failing: Mutex::new(HashMap::new()),
                stopped: AtomicBool::new(false),
                ended: Notify::new(),
                admit: Notify::new(),
                watchers: Mutex::new(HashMap::new()),
            }),
        };
        let poller = d.clone();
        tokio::spawn(async move { poller.poll().await });
        let watcher = d.clone();
        tokio::spawn(async move { watcher.watch_others().await });
        if let Some(starts) = d.inner.rt.child_starts() {
            let driver = d.clone();
            tokio::spawn(async move { driver.drive_children(starts).await });
        }
        d
    }

    /// Takes up each child workflow the drives of this server start, at
    /// once (the poll would find it too, a moment later).
    async fn drive_children(self, mut starts: tokio::sync::mpsc::UnboundedReceiver<String>) {
        while let Some(id) = starts.recv().await {
            if !self.resume(id.clone()) {
                // Driven by a task already, backing off, or stopping.
                self.inner.rt.child_not_driven(&id);
            }
        }
    }

    /// Every [`OTHERS_POLL`], one read of the runs long polls wait on that
    /// this server does not drive: those that ended wake their waiters.
    async fn watch_others(self) {
        while !self.inner.stopped.load(Ordering::SeqCst) {
            tokio::time::sleep(OTHERS_POLL).await;
            let ids: Vec<String> = {
                let (Ok(watchers), Ok(driving)) =
                    (self.inner.watchers.lock(), self.inner.driving.lock())
                else {
                    continue;
                };
                watchers
                    .keys()
                    .filter(|id| !driving.contains(*id))
                    .cloned()
                    .collect()
            };
            if ids.is_empty() {
                continue;
            }
            match self.inner.rt.store().ended_among(ids).await {
                Ok(ended) => {
                    let Ok(watchers) = self.inner.watchers.lock() else {
                        continue;
                    };
                    for id in ended {
                        if let Some((w, _)) = watchers.get(&id) {
                            w.notify.notify_waiters();
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %durable::errors::chain(&e), "could not look at the runs long polls wait on");
                }
            }
        }
    }

    async fn poll(self) {
        // PostgreSQL tells the hosts sharing it when a run may be taken up:
        // they look at every wake-up, at the next waiting run's time, and
        // otherwise once a second. SQLite cannot tell other processes: poll.
        let wake_ups = self.inner.rt.store().wake_ups();
        while !self.inner.stopped.load(Ordering::SeqCst) {
            // A full batch leaves more to take up at once.
            let mut more = false;
            // Queued runs the queues' limits let in now: this host drives
            // them (another may, should this one stop first).
            let mut next_admission = None;
            match self.inner.rt.store().admit(BATCH).await {
                Ok(admission) => {
                    more = admission.admitted.len() >= BATCH;
                    next_admission = admission.next_at_ms;
                    for id in admission.admitted {
                        self.resume(id);
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %durable::errors::chain(&e), "could not admit queued runs")
                }
            }
            let until_admission = next_admission.map(|t| {
                Duration::from_millis(t.saturating_sub(durable::clock::now_ms()).max(0) as u64)
            });
            match self.inner.rt.store().runnable(BATCH).await {
                Ok(ids) => {
                    more = ids.len() >= BATCH;
                    let now = durable::clock::now_ms();
                    for (id, due_at) in ids {
                        if self.resume(id)
                            && let Some(due_at) = due_at
                        {
                            let lag = now.saturating_sub(due_at).max(0) as u64;
                            self.inner.metrics.woke(Duration::from_millis(lag));
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %durable::errors::chain(&e), "could not list the runs that are due")
                }
            }
            match &wake_ups {
                None => {
                    // A rate's next token may come before the next poll:
                    // waking then keeps the rate (a bucket of 1 loses what
                    // comes while it is full).
                    let wait = until_admission.map_or(POLL, |a| POLL.min(a));
                    tokio::select! {
                        () = self.inner.admit.notified() => {}
                        () = tokio::time::sleep(wait) => {}
                    }
                }
                Some(_) if more => {}
                Some(woken) => {
                    let next = self.inner.rt.store().next_wake_at().await.ok().flatten();
                    let wait = match next {
                        None => SLOW_POLL,
                        Some(t) => match t.saturating_sub(durable::clock::now_ms()) {
                            ms if ms > 0 => Duration::from_millis(ms as u64).min(SLOW_POLL),
                            // Due already, and left by the look just made:
                            // this host drives it (or compiles its
                            // component), or it backs off after failures.
                            // A drive that ends parks (which notifies) or
                            // backs off; so nothing changes before a
                            // back-off is over or a commit wakes this
                            // host: never look again at once.
                            _ => self
                                .next_retry()
                                .unwrap_or(SLOW_POLL)
                                .clamp(POLL, SLOW_POLL),
                        },
                    };
                    let wait = until_admission.map_or(wait, |a| wait.min(a));
                    tokio::select! {
                        () = woken.notified() => {}
                        () = self.inner.admit.notified() => {}
                        () = tokio::time::sleep(wait) => {}
                    }
                }
            }
        }
    }

    /// Claims `id` for a task of this server; `None` if one drives it.
    fn claim(&self, id: &str) -> Option<Driving> {
        let mut driving = self.inner.driving.lock().ok()?;
        // Checked under the lock: no claim after `drained` saw none.
        if self.inner.stopped.load(Ordering::SeqCst) {
            return None;
        }
        driving.insert(id.to_string()).then(|| Driving {
            inner: self.inner.clone(),
            id: id.to_string(),
            left: std::sync::OnceLock::new(),
        })
    }

    /// How long until the first run that backs off may be tried again.
    fn next_retry(&self) -> Option<Duration> {
        let failing = self.inner.failing.lock().ok()?;
        let now = Instant::now();
        failing
            .values()
            .map(|(_, at)| at.saturating_duration_since(now))
            .min()
    }

    /// Whether run `id` failed lately and its time to try again has not
    /// come.
    fn backing_off(&self, id: &str) -> bool {
        self.inner
            .failing
            .lock()
            .map(|f| f.get(id).is_some_and(|(_, next)| *next > Instant::now()))
            .unwrap_or(false)
    }

    /// Remembers how a drive of `id` ended: a failure that leaves the run
    /// open is tried again after 1 s, 2 s, 4 s... at most 5 minutes.
    fn note(inner: &Inner, id: &str, result: &Result<Finished, RunError>) {
        let Ok(mut failing) = inner.failing.lock() else {
            return;
        };
        match result {
            Ok(_) | Err(RunError::Interrupted { .. } | RunError::AlreadyDriving { .. }) => {
                failing.remove(id);
            }
            // Another host has it: nothing failed here.
            Err(e) if another_host_has_it(e) => {
                failing.remove(id);
            }
            Err(_) => {
                let entry = failing.entry(id.to_string()).or_insert((0, Instant::now()));
                entry.0 = entry.0.saturating_add(1);
                let wait = Duration::from_secs(1 << entry.0.min(9)).min(MAX_BACKOFF);
                entry.1 = Instant::now() + wait;
            }
        }
    }

    /// Drives run `id` (resumed from its history) in a task, unless one
    /// already does or it is backing off after failures (then `false`).
    pub fn resume(&self, id: String) -> bool {
        if self.backing_off(&id) {
            return false;
        }
        let Some(guard) = self.claim(&id) else {
            return false;
        };
        let rt = self.inner.rt.clone();
        tokio::spawn(async move {
            let result = rt.resume(&guard.id).await;
            report(&guard.id, &result);
            Dispatcher::note(&guard.inner, &guard.id, &result);
            guard.ended(result);
        });
        true
    }

    /// Starts run `id` of `workflow` with `input` in a task (see
    /// [`Runtime::start_new`]); `told` hears, once the start is committed,
    /// whether it created the run or found one with that id. `false` if a
    /// task of this server already drives a run with that id.
    pub fn start_run(
        &self,
        workflow: LoadedWorkflow,
        id: String,
        input: String,
        start_options: durable::store::StartOptions,
        told: tokio::sync::oneshot::Sender<Creation>,
    ) -> bool {
        let Some(guard) = self.claim(&id) else {
            return false;
        };
        let rt = self.inner.rt.clone();
        tokio::spawn(async move {
            // `None`: the id was taken, nothing was driven.
            if let Some(result) = rt
                .start_new(&workflow, &guard.id, &input, &start_options, told)
                .await
                .transpose()
            {
                report(&guard.id, &result);
                Dispatcher::note(&guard.inner, &guard.id, &result);
                guard.ended(result);
            }
        });
        true
    }

    /// Forgets the back-off of every run whose drives failed (something
    /// changed that may make them work: a workflow was registered), and
    /// looks for due runs at once.
    pub fn forget_failures(&self) {
        if let Ok(mut failing) = self.inner.failing.lock() {
            failing.clear();
        }
        self.inner.admit.notify_one();
    }

    /// Starts run `id` queued (see [`Runtime::enqueue`]).
    ///
    /// # Errors
    /// As [`Runtime::enqueue`].
    pub async fn enqueue(
        &self,
        workflow: &LoadedWorkflow,
        id: &str,
        input: &str,
        start_options: &durable::store::StartOptions,
        start: durable::store::QueuedStart,
    ) -> Result<Creation, RunError> {
        self.inner
            .rt
            .enqueue(workflow, id, input, start_options, start)
            .await
    }

    /// A run was queued or a queue changed: the poll admits what it can
    /// now instead of at its next look.
    pub fn admit_soon(&self) {
        self.inner.admit.notify_one();
    }

    /// The runtime's store.
    pub fn store(&self) -> &durable::store::Store {
        self.inner.rt.store()
    }

    /// Whether [`Dispatcher::stop`] was called.
    pub fn is_stopped(&self) -> bool {
        self.inner.stopped.load(Ordering::SeqCst)
    }

    /// Takes up no more runs; long polls answer at once.
    pub fn stop(&self) {
        self.inner.stopped.store(true, Ordering::SeqCst);
        if let Ok(watchers) = self.inner.watchers.lock() {
            for (w, _) in watchers.values() {
                w.notify.notify_waiters();
            }
        }
    }

    /// A watch on run `id`: woken whenever a drive of it by this server
    /// ends (it finished, parked or stopped), when another process is seen
    /// to have ended it, and when the server stops. Dropping the last one
    /// forgets the run.
    pub fn watch(&self, id: &str) -> Watch {
        // The watchers' lock, then the driving set's: a drive that ends
        // after this look publishes to this watch (see `Driving::drop`).
        let (state, seen, driven_here) = match self.inner.watchers.lock() {
            Ok(mut w) => {
                let entry = w.entry(id.to_string()).or_default();
                entry.1 += 1;
                let state = entry.0.clone();
                let seen = state.ended.lock().map(|e| e.0).unwrap_or(0);
                let driven_here = self
                    .inner
                    .driving
                    .lock()
                    .map(|d| d.contains(id))
                    .unwrap_or(false);
                (state, seen, driven_here)
            }
            Err(_) => (Arc::default(), 0, false),
        };
        Watch {
            inner: self.inner.clone(),
            id: id.to_string(),
            state,
            seen: AtomicU64::new(seen),
            driven_here: AtomicBool::new(driven_here),
        }
    }

    /// Resolves once no run is being driven.
    pub async fn drained(&self) {
        loop {
            let ended = self.inner.ended.notified();
            if self
                .inner
                .driving
                .lock()
                .map(|d| d.is_empty())
                .unwrap_or(true)
            {
                return;
            }
            ended.await;
        }
    }
}

/// See [`Dispatcher::watch`].
pub struct Watch {
    inner: Arc<Inner>,
    id: String,
    state: Arc<Watched>,
    /// Drive ends already looked at.
    seen: AtomicU64,
    /// A drive of this server held the run when the watch was made, and
    /// [`Watch::look`] has not said so yet.
    driven_here: AtomicBool,
}

/// What a watch knows of its run without reading the database.
pub enum Look {
    /// A drive of this server ended, leaving the run so.
    Ended(Arc<RunRecord>),
    /// A drive of this server holds the run: its end will wake the watch.
    Driven,
    /// Nothing: look at the database.
    Unknown,
}

impl Watch {
    /// The next wake-up of this watch. Pin it and `enable` it before
    /// [`Watch::look`], so that a wake-up in between is not missed.
    pub fn next(&self) -> tokio::sync::futures::Notified<'_> {
        self.state.notify.notified()
    }

    /// What is known of the run since the last look.
    pub fn look(&self) -> Look {
        let seen = self.seen.load(Ordering::SeqCst);
        let latest = match self.state.ended.lock() {
            Ok(ended) => (ended.0 > seen).then(|| (ended.0, ended.1.clone())),
            Err(_) => return Look::Unknown,
        };
        match latest {
            Some((count, run)) => {
                self.seen.store(count, Ordering::SeqCst);
                self.driven_here.store(false, Ordering::SeqCst);
                run.map_or(Look::Unknown, Look::Ended)
            }
            None if self.driven_here.swap(false, Ordering::SeqCst) => Look::Driven,
            None => Look::Unknown,
        }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        if let Ok(mut w) = self.inner.watchers.lock()
            && let Some(entry) = w.get_mut(&self.id)
        {
            entry.1 -= 1;
            if entry.1 == 0 {
                w.remove(&self.id);
            }
        }
    }
}

/// Logs how a drive ended (the run's record has the rest).
/// Whether a drive ended because another process drives the run (it took
/// it first, or took it over from this one).
fn another_host_has_it(e: &RunError) -> bool {
    matches!(
        e,
        RunError::Store(StoreError::Owned { .. } | StoreError::LeaseLost { .. })
    )
}

fn report(id: &str, result: &Result<Finished, RunError>) {
    match result {
        Ok(f) => tracing::info!(run = %id, status = %f.run.status, "drive ended"),
        Err(RunError::Interrupted { .. }) => tracing::info!(run = %id, "drive interrupted"),
        Err(RunError::AlreadyDriving { .. }) => {}
        Err(e) if another_host_has_it(e) => {
            tracing::debug!(run = %id, "another host drives the run");
        }
        Err(e) => tracing::warn!(run = %id, error = %durable::errors::chain(e), "drive failed"),
    }
}
