//! One drive of one run: the state every instance of the run shares, the
//! history lookup, executing a step in a fresh instance, and committing its
//! outcome before anyone sees it.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;

use super::RunError;
use super::bindings::WorkflowPre;
use super::observer::{Observer, Source};
use super::state::HostState;
use crate::history::{History, Planned};
use crate::owner::Owner;
use crate::sandbox::StderrTail;
use crate::store::{ComponentSwitch, Outcome, StepRecord, Store, now_ms};

/// What all instances of one drive of a run share.
pub(crate) struct Drive {
    pub(crate) run_id: String,
    pub(crate) pre: WorkflowPre<HostState>,
    pub(crate) store: Store,
    pub(crate) owner: Owner,
    pub(crate) history: History,
    pub(crate) permits: Arc<Semaphore>,
    pub(crate) observer: Arc<dyn Observer>,
    pub(crate) crash_after: Option<String>,
    /// Set when the run must stop (divergence, store failure): the trap
    /// that unwinds the guest then is ours, not the guest's.
    fatal: Mutex<Option<RunError>>,
    /// A new component's switch, written with the first new commit.
    switch: Mutex<Option<ComponentSwitch>>,
}

impl Drive {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        run_id: String,
        pre: WorkflowPre<HostState>,
        store: Store,
        owner: Owner,
        history: History,
        permits: Arc<Semaphore>,
        observer: Arc<dyn Observer>,
        crash_after: Option<String>,
        switch: Option<ComponentSwitch>,
    ) -> Drive {
        Drive {
            run_id,
            pre,
            store,
            owner,
            history,
            permits,
            observer,
            crash_after,
            fatal: Mutex::new(None),
            switch: Mutex::new(switch),
        }
    }

    /// Records the first fatal error of the drive and returns the trap to
    /// unwind the guest with.
    pub(crate) fn stop(&self, error: RunError) -> wasmtime::Error {
        let message = error.to_string();
        if let Ok(mut slot) = self.fatal.lock()
            && slot.is_none()
        {
            *slot = Some(error);
        }
        wasmtime::Error::msg(format!("run stopped by the host: {message}"))
    }

    /// The fatal error, if the drive was stopped.
    pub(crate) fn take_fatal(&self) -> Option<RunError> {
        self.fatal.lock().ok().and_then(|mut f| f.take())
    }

    pub(crate) fn is_stopped(&self) -> bool {
        self.fatal.lock().map(|f| f.is_some()).unwrap_or(true)
    }

    /// The pending component switch, for the run's final record.
    pub(crate) fn take_switch(&self) -> Option<ComponentSwitch> {
        self.switch.lock().ok().and_then(|mut s| s.take())
    }

    /// The recorded outcome of `call`, reported as recovered, or `None`.
    pub(crate) fn lookup(&self, call: &Planned) -> Result<Option<Outcome>, RunError> {
        let started = Instant::now();
        match self.history.check(&self.run_id, call) {
            Ok(Some(rec)) => {
                if !call.name.starts_with('$') {
                    self.observer.step(
                        &self.run_id,
                        &call.key,
                        Source::Recovered,
                        &rec.outcome,
                        started.elapsed(),
                    );
                }
                Ok(Some(rec.outcome.clone()))
            }
            Ok(None) => Ok(None),
            Err(d) => Err(RunError::Divergence(d)),
        }
    }

    /// Runs step `call` in a fresh instance and commits its outcome.
    ///
    /// Waits for a permit of the host-wide step limit first.
    pub(crate) async fn execute(
        self: Arc<Self>,
        call: Planned,
        input: String,
    ) -> Result<Outcome, RunError> {
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| RunError::Internal("the step limiter was closed".into()))?;
        let started_at = now_ms();
        let started = Instant::now();
        let output = StderrTail::default();
        let state = HostState::for_step(self.clone(), &call.key, permit, &output);
        let mut store = wasmtime::Store::new(self.pre.engine(), state);
        let instance = self
            .pre
            .instantiate_async(&mut store)
            .await
            .map_err(|e| RunError::Instantiate(format!("{e:#}")))?;
        let result = instance
            .durable_workflow_steps()
            .call_run_step(&mut store, &call.name, &input)
            .await;
        drop(store);
        let outcome = match result {
            Ok(Ok(json)) => match serde_json::from_str::<serde::de::IgnoredAny>(&json) {
                Ok(_) => Outcome::Ok(json),
                Err(e) => Outcome::Failed(format!("step {} returned invalid JSON: {e}", call.key)),
            },
            Ok(Err(message)) => Outcome::Failed(message),
            Err(trap) => {
                if let Some(fatal) = self.take_fatal() {
                    return Err(fatal);
                }
                let mut message = trap_message(&trap);
                if let Some(said) = output.explanation() {
                    message = format!("{said} ({message})");
                }
                Outcome::Trapped(message)
            }
        };
        let elapsed = started.elapsed();
        self.commit(&call, outcome.clone(), started_at).await?;
        self.observer
            .step(&self.run_id, &call.key, Source::Executed, &outcome, elapsed);
        self.crash_if_asked(&call.key);
        Ok(outcome)
    }

    /// Commits an outcome the host produced itself (`now-ms`, `random-u64`).
    pub(crate) async fn record(
        &self,
        call: &Planned,
        outcome: Outcome,
    ) -> Result<Outcome, RunError> {
        self.commit(call, outcome.clone(), now_ms()).await?;
        Ok(outcome)
    }

    async fn commit(
        &self,
        call: &Planned,
        outcome: Outcome,
        started_at_ms: i64,
    ) -> Result<(), RunError> {
        let record = StepRecord {
            key: call.key.clone(),
            parent: call.parent.clone(),
            position: call.position,
            name: call.name.clone(),
            input_digest: call.input_digest.clone(),
            outcome,
            attempts: 1,
            started_at_ms,
            finished_at_ms: now_ms(),
        };
        let switch = self.take_switch();
        self.store
            .commit_step(&self.run_id, &self.owner, record, switch)
            .await
            .map_err(RunError::Store)
    }

    /// `--crash-after`: die like a power cut right after `key` committed.
    fn crash_if_asked(&self, key: &str) {
        if self.crash_after.as_deref() == Some(key) {
            eprintln!("durable: --crash-after {key}: step committed, killing this process now");
            crash_now();
        }
    }
}

/// Ends the process at once with SIGKILL: no destructors, no flushing, no
/// orderly shutdown of the database; what is committed is all that is left.
pub(crate) fn crash_now() -> ! {
    // SAFETY: kill(2) on our own pid with a valid signal number.
    unsafe {
        libc::kill(libc::getpid(), libc::SIGKILL);
    }
    std::process::abort()
}

/// A one-line description of a guest trap: its reason, then the innermost
/// guest frame when wasmtime captured one.
pub(crate) fn trap_message(e: &wasmtime::Error) -> String {
    let mut msg = e.root_cause().to_string();
    if let Some(bt) = e.downcast_ref::<wasmtime::WasmBacktrace>()
        && let Some(frame) = bt.frames().first()
        && let Some(name) = frame.func_name()
    {
        msg.push_str(&format!(" (in {name})"));
    }
    msg
}

/// Elapsed time as a short human string.
pub fn human(d: Duration) -> String {
    if d < Duration::from_millis(10) {
        format!("{:.1} ms", d.as_secs_f64() * 1000.0)
    } else {
        format!("{} ms", d.as_millis())
    }
}
