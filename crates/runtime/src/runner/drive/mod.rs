//! One drive of one run: the state every instance of the run shares, the
//! history lookup, executing a step (attempts, timeouts, retries) in fresh
//! instances, and committing its outcome before anyone sees it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use std::future::Future;
use std::pin::Pin;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tracing::Instrument;

use super::RunError;
use super::bindings::durable::workflow::types::Failure;
use super::family::{ChildComponent, Family};
use super::faults::Faults;
use super::limits::{Limits, StepPolicy};
use super::slots::{AttemptClock, InstanceSlots};
use crate::observer::{Observer, Source};

mod messages;
pub(crate) mod spans;
mod step_limit;
mod waits;
use crate::clock::now_ms;
use crate::history::{History, Planned};
use crate::owner::Owner;
use crate::sandbox::{Grants, Output};
use crate::store::{
    AttemptRecord, ComponentSwitch, Outcome, OutputLine, StepCommit, StepRecord, Store,
};
pub use messages::human;
use messages::{Attempt, with_notes};
pub(crate) use messages::{cap_message, trap_message};

/// What all instances of one drive of a run share.
pub(crate) struct Drive {
    pub(crate) run_id: String,
    pub(crate) instances: Arc<dyn StepInstances>,
    pub(crate) store: Store,
    pub(crate) owner: Owner,
    /// The committed history as loaded, plus what this drive commits that a
    /// retried step body may ask for again (see `Drive::remember`).
    history: Mutex<History>,
    pub(crate) permits: Arc<Semaphore>,
    /// Live step instances (waiting parents included), deepest first.
    slots: Arc<InstanceSlots>,
    pub(crate) observer: Arc<dyn Observer>,
    pub(crate) faults: Faults,
    /// Set for a replay ([`super::Runtime::replay`]): nothing executes and
    /// nothing is written; the first call without a record ends it.
    pub(crate) replay_only: bool,
    pub(crate) limits: Limits,
    pub(crate) grants: Arc<Grants>,
    /// This drive's number (the run's `drives` after the claim): the fence
    /// token of every commit.
    pub(crate) number: u32,
    /// Set when the store reports that `durable cancel` asked to stop.
    cancel_requested: AtomicBool,
    /// The runtime's interrupt flag (SIGINT, SIGTERM).
    interrupted: Arc<AtomicBool>,
    /// Set while the workflow parks the run (and after): the run has no
    /// owner then, which the lease renewal must not take for a takeover.
    parking: AtomicBool,
    /// Failed attempts recorded by earlier drives, per step key.
    prior_attempts: HashMap<String, u32>,
    /// Bytes of recorded outcomes, checked against the history limit.
    history_bytes: AtomicU64,
    /// Set when the run must stop (divergence, store failure, a limit): the
    /// trap that unwinds the guest then is ours, not the guest's.
    fatal: Mutex<Option<RunError>>,
    /// A new component's switch, written with the first new commit.
    switch: Mutex<Option<ComponentSwitch>>,
    /// Child workflows: components by name, who drives them.
    pub(crate) family: Arc<Family>,
    /// The run's own component, which children run unless linked otherwise.
    pub(crate) component: ChildComponent,
    /// Step names with a concurrency limit across every host.
    step_limits: Arc<HashMap<String, u32>>,
    /// Its spans, when the runtime exports them.
    pub(crate) trace: Option<Arc<spans::DriveTrace>>,
}

/// What the runtime hands a new drive.
pub(crate) struct DriveSetup {
    pub(crate) run_id: String,
    pub(crate) instances: Arc<dyn StepInstances>,
    pub(crate) store: Store,
    pub(crate) owner: Owner,
    pub(crate) history: History,
    pub(crate) recorded_bytes: u64,
    pub(crate) prior_attempts: HashMap<String, u32>,
    pub(crate) permits: Arc<Semaphore>,
    pub(crate) slots: Arc<InstanceSlots>,
    pub(crate) interrupted: Arc<AtomicBool>,
    pub(crate) observer: Arc<dyn Observer>,
    pub(crate) faults: Faults,
    pub(crate) replay_only: bool,
    pub(crate) limits: Limits,
    pub(crate) grants: Arc<Grants>,
    pub(crate) switch: Option<ComponentSwitch>,
    pub(crate) number: u32,
    pub(crate) family: Arc<Family>,
    pub(crate) component: ChildComponent,
    pub(crate) step_limits: Arc<HashMap<String, u32>>,
    pub(crate) trace: Option<Arc<spans::DriveTrace>>,
}

/// What a step attempt's instance did: its result (`None` when the
/// attempt's time ran out; `Err` a trap), how many durable calls it made,
/// and what its host state noted (a refused call, HTTP notes).
pub(crate) struct StepRun {
    pub(crate) result: Option<wasmtime::Result<Result<String, Failure>>>,
    pub(crate) calls: u32,
    pub(crate) refusal: Option<String>,
    pub(crate) http_notes: Vec<String>,
}

/// Runs one step attempt in a fresh instance of the run's component. The
/// runner's host state implements it (`runner/step.rs`): the drive decides
/// when and how often a step runs, and needs no host state type for that,
/// so the host state can depend on the drive and not the reverse.
pub(crate) trait StepInstances: Send + Sync {
    /// Instantiates the component for `call` with `permit` (given back while
    /// the body waits on steps of its own) and calls its `run-step` with
    /// `input`, within `budget` (the attempt's timeout and number) on
    /// `clock`.
    #[allow(clippy::too_many_arguments)]
    fn run<'a>(
        &'a self,
        drive: &'a Arc<Drive>,
        call: &'a Planned,
        input: &'a str,
        permit: OwnedSemaphorePermit,
        output: &'a Output,
        clock: Arc<AttemptClock>,
        budget: (Duration, u32),
    ) -> Pin<Box<dyn Future<Output = Result<StepRun, RunError>> + Send + 'a>>;
}

impl Drive {
    pub(crate) fn new(s: DriveSetup) -> Drive {
        Drive {
            run_id: s.run_id,
            instances: s.instances,
            store: s.store,
            owner: s.owner,
            history: Mutex::new(s.history),
            permits: s.permits,
            slots: s.slots,
            observer: s.observer,
            faults: s.faults,
            replay_only: s.replay_only,
            limits: s.limits,
            grants: s.grants,
            prior_attempts: s.prior_attempts,
            number: s.number,
            cancel_requested: AtomicBool::new(false),
            interrupted: s.interrupted,
            parking: AtomicBool::new(false),
            history_bytes: AtomicU64::new(s.recorded_bytes),
            fatal: Mutex::new(None),
            switch: Mutex::new(s.switch),
            family: s.family,
            component: s.component,
            step_limits: s.step_limits,
            trace: s.trace,
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

    /// The fatal error, if the drive was stopped. Taken once, by the drive
    /// at its end: a branch that finds the drive stopped reports
    /// [`RunError::Stopped`] instead, so no branch takes another's error.
    pub(crate) fn take_fatal(&self) -> Option<RunError> {
        self.fatal.lock().ok().and_then(|mut f| f.take())
    }

    pub(crate) fn is_stopped(&self) -> bool {
        self.fatal.lock().map(|f| f.is_some()).unwrap_or(true)
    }

    /// Notes what the store said about a cancel request.
    pub(crate) fn note_cancel(&self, requested: bool) {
        if requested {
            self.cancel_requested.store(true, Ordering::SeqCst);
        }
    }

    /// True while (and after) the workflow parks the run.
    pub(crate) fn is_parking(&self) -> bool {
        self.parking.load(Ordering::SeqCst)
    }

    /// True once the runtime was interrupted (SIGINT, SIGTERM).
    pub(crate) fn is_interrupted(&self) -> bool {
        self.interrupted.load(Ordering::SeqCst)
    }

    /// True once a cancel of the run was requested.
    pub(crate) fn cancel_requested(&self) -> bool {
        self.cancel_requested.load(Ordering::SeqCst)
    }

    /// Stops the guest if the run was cancelled or the drive stopped:
    /// called at every durable call, so running steps finish and the
    /// workflow stops at its next one (the epoch callback stops a workflow
    /// that makes none).
    pub(crate) fn check_cancel(&self) -> Result<(), wasmtime::Error> {
        if self.is_stopped() {
            return Err(wasmtime::Error::msg("run stopped by the host"));
        }
        if self.cancel_requested() {
            return Err(self.stop(RunError::Cancelled {
                run: self.run_id.clone(),
            }));
        }
        if self.interrupted.load(Ordering::SeqCst) {
            return Err(self.stop(RunError::Interrupted {
                run: self.run_id.clone(),
            }));
        }
        Ok(())
    }

    /// The position from which a pending switch, forced over a divergence,
    /// supersedes the workflow's records.
    pub(crate) fn pending_forced_from(&self) -> Option<u32> {
        self.switch
            .lock()
            .ok()
            .and_then(|s| s.as_ref().and_then(|s| s.forced_from))
    }

    /// The pending component switch, for the run's final record.
    pub(crate) fn take_switch(&self) -> Option<ComponentSwitch> {
        self.switch.lock().ok().and_then(|mut s| s.take())
    }

    /// The recorded outcome of `call`, reported as recovered, or `None`.
    pub(crate) fn lookup(&self, call: &Planned) -> Result<Option<Outcome>, RunError> {
        let started = Instant::now();
        let found = {
            let history = self.history.lock().map_err(|_| poisoned())?;
            match history.check(&self.run_id, call) {
                Ok(found) => found.map(|rec| rec.outcome.clone()),
                Err(d) => return Err(RunError::Divergence(d)),
            }
        };
        if let Some(outcome) = &found
            && !call.name.starts_with('$')
        {
            if let Some(trace) = &self.trace {
                trace.recovered(&call.key, &call.name, outcome);
            }
            self.observer.step(
                &self.run_id,
                &call.key,
                Source::Recovered,
                outcome,
                started.elapsed(),
            );
        }
        Ok(found)
    }

    /// Like [`Drive::lookup`], for a call made from a step body: there a
    /// mismatch is not a divergence. The body runs again because its step
    /// never committed, and a body may do something else the second time
    /// (real clocks, random, I/O); what its earlier run recorded from this
    /// position on is superseded (moved aside, kept for inspection) and the
    /// call executes.
    pub(crate) async fn lookup_nested(&self, call: &Planned) -> Result<Option<Outcome>, RunError> {
        match self.lookup(call) {
            Err(RunError::Divergence(d)) => {
                let from = d
                    .recorded
                    .as_ref()
                    .map_or(call.position, |r| r.position.min(call.position));
                tracing::info!(key = %call.key, "superseding records of an earlier run of the step body: {d}");
                self.supersede(&call.parent, from).await?;
                Ok(None)
            }
            other => other,
        }
    }

    /// [`Drive::lookup_nested`] for a call from a step body, else
    /// [`Drive::lookup`].
    pub(crate) async fn lookup_in(
        &self,
        nested: bool,
        call: &Planned,
    ) -> Result<Option<Outcome>, RunError> {
        if nested {
            self.lookup_nested(call).await
        } else {
            self.lookup(call)
        }
    }

    /// In a replay, the end at `call`, which has no record (or is a wait
    /// that is not over): the workflow is stopped there and nothing runs.
    /// Outside a replay, `None`: the call executes.
    pub(crate) fn replay_end(&self, call: &Planned) -> Option<wasmtime::Error> {
        self.replay_only.then(|| {
            self.stop(RunError::ReplayEnd {
                run: self.run_id.clone(),
                key: call.key.clone(),
                position: call.position,
            })
        })
    }

    /// Moves aside the records of context `parent` from position `from` on
    /// (with their subtrees).
    pub(crate) async fn supersede(&self, parent: &str, from: u32) -> Result<(), RunError> {
        self.supersede_switching(parent, from, false).await
    }

    /// [`Drive::supersede`] of the workflow's records for a switch forced
    /// over a divergence: the pending switch is committed with it, so a run
    /// is never left on its old component with part of its history moved.
    pub(crate) async fn supersede_for_switch(&self, from: u32) -> Result<(), RunError> {
        self.supersede_switching("", from, true).await
    }

    async fn supersede_switching(
        &self,
        parent: &str,
        from: u32,
        switching: bool,
    ) -> Result<(), RunError> {
        let stale = self
            .history
            .lock()
            .map_err(|_| poisoned())?
            .stale_from(parent, from);
        if stale.is_empty() {
            return Ok(());
        }
        let switch = if switching { self.take_switch() } else { None };
        self.store
            .supersede(
                &self.run_id,
                &self.owner,
                self.number,
                stale.clone(),
                switch,
            )
            .await?;
        self.history.lock().map_err(|_| poisoned())?.remove(&stale);
        Ok(())
    }

    /// True when the history holds nothing of the workflow after `call`
    /// (the call the run was parked on, when it is a wait).
    pub(crate) fn is_last_recorded(&self, call: &Planned) -> bool {
        call.parent.is_empty()
            && self
                .history
                .lock()
                .map(|h| h.first_unmade(call.position + 1).is_none())
                .unwrap_or(false)
    }

    /// The divergence of a workflow that ended after `next` calls while the
    /// history holds more.
    pub(crate) fn check_end(&self, next: u32) -> Result<(), RunError> {
        self.history
            .lock()
            .map_err(|_| poisoned())?
            .check_end(&self.run_id, next)
            .map_err(RunError::Divergence)
    }

    /// Runs step `call` until an attempt succeeds, fails permanently, or
    /// its retry policy gives up; commits the outcome and returns it.
    ///
    /// Each attempt is a fresh instance holding a permit of the host-wide
    /// step limit; backoff waits hold none.
    pub(crate) async fn execute(
        self: Arc<Self>,
        call: Planned,
        input: String,
        policy: StepPolicy,
    ) -> Result<Outcome, RunError> {
        let span = tracing::debug_span!("step", key = %call.key);
        self.clone()
            .execute_in_span(call, input, policy)
            .instrument(span)
            .await
    }

    async fn execute_in_span(
        self: Arc<Self>,
        call: Planned,
        input: String,
        policy: StepPolicy,
    ) -> Result<Outcome, RunError> {
        let mut attempt = self.prior_attempts.get(&call.key).copied().unwrap_or(0);
        loop {
            attempt += 1;
            // A limited step's slot first: waiting for it holds nothing
            // else, and the attempt's record starts once it has one.
            let limited = self.step_slot(&call).await?;
            let started_at = now_ms();
            let started = Instant::now();
            let (Attempt { outcome, retryable }, output, calls) =
                self.attempt(&call, &input, policy.timeout, attempt).await?;
            let elapsed = started.elapsed();
            if let Some(trace) = &self.trace {
                trace.attempt(&call.key, &call.name, attempt, started_at, &outcome);
            }
            let failed = (!matches!(outcome, Outcome::Ok(_))).then(|| AttemptRecord {
                key: call.key.clone(),
                attempt,
                outcome: outcome.clone(),
                started_at_ms: started_at,
                finished_at_ms: now_ms(),
            });
            let last = failed.is_none() || !retryable || attempt >= policy.retry.max_attempts;
            if last && self.faults.crash_before_commit(&call.key) {
                self.observer.uncommitted(&self.run_id, &call.key, &outcome);
                eprintln!(
                    "durable: --crash-before-commit {}: step returned, killing this process before its outcome is committed",
                    call.key
                );
                crash_now();
            }
            if last {
                // What an earlier attempt's body recorded beyond the calls
                // of this one is no longer the step's: move it aside.
                self.supersede(&call.key, calls).await?;
                self.commit(&call, outcome.clone(), attempt, started_at, failed, output)
                    .await?;
                // A limited step holds its slot until its record is
                // committed: the records never show more than the limit.
                if let Some(slot) = limited {
                    slot.give_back().await;
                }
                self.observer
                    .step(&self.run_id, &call.key, Source::Executed, &outcome, elapsed);
                self.crash_if_asked(&call.key);
                return Ok(outcome);
            }
            let wait = policy.retry.backoff_with_jitter(attempt, random_u64());
            let Some(failed) = failed else {
                return Err(RunError::Internal(
                    "a failed attempt is not last only if it failed".into(),
                ));
            };
            self.count_bytes(&call.key, failed.outcome.size() + output_size(&output))?;
            let cancel = self
                .store
                .commit_attempt(&self.run_id, &self.owner, self.number, failed, output)
                .await?;
            self.note_cancel(cancel);
            // Not held through the back-off.
            if let Some(slot) = limited {
                slot.give_back().await;
            }
            self.observer
                .attempt_failed(&self.run_id, &call.key, attempt, &outcome, wait);
            // The wait ends early when the run may not go on: a cancelled,
            // stopped or interrupted run starts no other attempt.
            let until = Instant::now() + wait;
            loop {
                if let Some(e) = self.no_new_attempt() {
                    return Err(e);
                }
                let left = until.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                tokio::time::sleep(left.min(STOP_POLL)).await;
            }
        }
    }

    /// Why no attempt may start now, if one may not: the drive was stopped,
    /// the run cancelled, or the process interrupted.
    pub(crate) fn no_new_attempt(&self) -> Option<RunError> {
        if self.is_stopped() {
            Some(RunError::Stopped)
        } else if self.cancel_requested() {
            Some(RunError::Cancelled {
                run: self.run_id.clone(),
            })
        } else if self.is_interrupted() {
            Some(RunError::Interrupted {
                run: self.run_id.clone(),
            })
        } else {
            None
        }
    }

    /// One attempt: a slot and a permit, a fresh instance, the timeout and
    /// the limits. Returns how it ended, what it printed, and how many
    /// durable calls its body made.
    ///
    /// Host capacity (a slot, a permit, a free instance in the pool) is
    /// waited for and never counts against the step: not as an attempt,
    /// not on its clock.
    async fn attempt(
        self: &Arc<Self>,
        call: &Planned,
        input: &str,
        timeout: Duration,
        number: u32,
    ) -> Result<(Attempt, Vec<OutputLine>, u32), RunError> {
        let slot = self.slots.acquire(call.depth()).await;
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| RunError::Internal("the step limiter was closed".into()))?;
        // A step queued for capacity does not start once the run may not
        // go on.
        if let Some(e) = self.no_new_attempt() {
            return Err(e);
        }
        let output = Output::new(&self.run_id, &call.key, self.number, self.observer.clone());
        self.observer.step_started(&self.run_id, &call.key);
        tracing::debug!("attempt started");
        let clock = AttemptClock::start();
        let StepRun {
            result,
            calls,
            refusal,
            http_notes,
        } = self
            .instances
            .run(self, call, input, permit, &output, clock, (timeout, number))
            .await?;
        drop(slot);
        output.finish();
        if self.is_stopped() {
            return Err(RunError::Stopped);
        }
        let timeout_ms = timeout.as_millis() as u64;
        let succeeded = matches!(result, Some(Ok(Ok(_))));
        let attempt = match result {
            // The body made a call only the workflow may make, or sent an
            // HTTP request the host does not allow, and did not get over
            // it: no retry helps.
            _ if !succeeded && refusal.is_some() => Attempt {
                outcome: Outcome::Failed(cap_message(refusal.unwrap_or_default())),
                retryable: false,
            },
            None => Attempt {
                outcome: Outcome::TimedOut(timeout_ms),
                retryable: true,
            },
            Some(Ok(Ok(json))) => self.check_result(call, json),
            Some(Ok(Err(failure))) => Attempt {
                outcome: Outcome::Failed(cap_message(failure.message)),
                retryable: failure.retryable,
            },
            Some(Err(trap)) => {
                let mut message = trap_message(&trap);
                if let Some(said) = output.explanation()
                    && !message.contains(&said)
                {
                    message = format!("{said} ({message})");
                }
                Attempt {
                    outcome: Outcome::Trapped(cap_message(message)),
                    retryable: true,
                }
            }
        };
        Ok((with_notes(attempt, &http_notes), output.take_lines(), calls))
    }

    /// A step's value must be JSON and within the result size limit; if it
    /// is not, the step failed, and trying again would not change that.
    fn check_result(&self, call: &Planned, json: String) -> Attempt {
        let permanent = |m: String| Attempt {
            outcome: Outcome::Failed(m),
            retryable: false,
        };
        if json.len() > self.limits.max_result_bytes {
            return permanent(format!(
                "step {} returned {} bytes, over the result size limit of {} bytes (--max-result-bytes)",
                call.key,
                json.len(),
                self.limits.max_result_bytes
            ));
        }
        match serde_json::from_str::<serde::de::IgnoredAny>(&json) {
            Ok(_) => Attempt {
                outcome: Outcome::Ok(json),
                retryable: false,
            },
            Err(e) => permanent(format!("step {} returned invalid JSON: {e}", call.key)),
        }
    }

    /// The record of `call` with `outcome`, as this drive commits it.
    pub(crate) fn record_for(
        &self,
        call: &Planned,
        outcome: Outcome,
        attempts: u32,
        started_at_ms: i64,
    ) -> StepRecord {
        StepRecord {
            key: call.key.clone(),
            parent: call.parent.clone(),
            position: call.position,
            name: call.name.clone(),
            input_digest: call.input_digest.clone(),
            input: Some(call.input.clone()),
            outcome,
            attempts,
            started_at_ms,
            finished_at_ms: now_ms(),
            drive: self.number,
            batch: call.batch,
        }
    }

    /// Commits an outcome the host produced itself (`now-ms`, `random-u64`).
    pub(crate) async fn record(
        &self,
        call: &Planned,
        outcome: Outcome,
    ) -> Result<Outcome, RunError> {
        self.commit(call, outcome.clone(), 1, now_ms(), None, Vec::new())
            .await?;
        Ok(outcome)
    }

    async fn commit(
        &self,
        call: &Planned,
        outcome: Outcome,
        attempts: u32,
        started_at_ms: i64,
        last_attempt: Option<AttemptRecord>,
        output: Vec<OutputLine>,
    ) -> Result<(), RunError> {
        self.count_bytes(
            &call.key,
            outcome.size()
                + last_attempt.as_ref().map_or(0, |a| a.outcome.size())
                + output_size(&output),
        )?;
        let record = self.record_for(call, outcome, attempts, started_at_ms);
        let commit = StepCommit {
            record,
            last_attempt,
            output,
            switch: self.take_switch(),
            tag: None,
        };
        self.send(commit).await
    }

    /// Records `set-tag`'s call: its record and the tag, in one commit.
    pub(crate) async fn record_tag(
        &self,
        call: &Planned,
        key: String,
        value: String,
    ) -> Result<(), RunError> {
        let outcome = Outcome::Ok("null".into());
        self.count_bytes(&call.key, outcome.size() + key.len() + value.len())?;
        let commit = StepCommit {
            record: self.record_for(call, outcome, 1, now_ms()),
            last_attempt: None,
            output: Vec::new(),
            switch: self.take_switch(),
            tag: Some((key, value)),
        };
        self.send(commit).await?;
        self.crash_if_asked(&call.key);
        Ok(())
    }

    /// Commits `commit` through the store and keeps what this drive must
    /// remember of it.
    async fn send(&self, commit: StepCommit) -> Result<(), RunError> {
        let record = commit.record.clone();
        let cancel = self
            .store
            .commit_step(&self.run_id, &self.owner, self.number, commit)
            .await?;
        self.remember(record)?;
        self.note_cancel(cancel);
        Ok(())
    }

    /// Keeps what a retried step body may ask for again in this drive: the
    /// records of nested calls, until their step commits. A call of the
    /// workflow itself is made once per drive, and a committed step's body
    /// never runs again, so neither is kept (the drive's memory does not
    /// grow with the steps it executes).
    fn remember(&self, record: StepRecord) -> Result<(), RunError> {
        let mut history = self.history.lock().map_err(|_| poisoned())?;
        let below = history.stale_from(&record.key, 0);
        history.remove(&below);
        if !record.parent.is_empty() {
            history.insert(record);
        }
        Ok(())
    }

    /// Counts `bytes` more of recorded history (outcomes, failed attempts,
    /// guest output) against the run's history limit.
    pub(crate) fn count_bytes(&self, key: &str, bytes: usize) -> Result<(), RunError> {
        let size = bytes as u64;
        let total = self.history_bytes.fetch_add(size, Ordering::SeqCst) + size;
        if total > self.limits.max_history_bytes {
            return Err(RunError::HistoryLimit {
                run: self.run_id.clone(),
                key: key.to_string(),
                limit: self.limits.max_history_bytes,
            });
        }
        Ok(())
    }

    /// The `traceparent` of a child workflow started now.
    pub(crate) fn trace_parent_for_children(&self) -> Option<String> {
        self.trace.as_ref().map(|t| t.traceparent())
    }

    /// `--crash-after`: die like a power cut right after `key` committed.
    pub(crate) fn crash_if_asked(&self, key: &str) {
        if self.faults.crash_after(key) {
            eprintln!("durable: --crash-after {key}: committed, killing this process now");
            crash_now();
        }
    }
}

/// How often a wait of the drive (a retry's backoff) looks whether the run
/// may still go on.
const STOP_POLL: Duration = Duration::from_millis(100);

/// True when wasmtime refused an instance because the pool is full: a
/// limit of this host, never the guest's failure.
pub(crate) fn is_capacity(e: &wasmtime::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<wasmtime::PoolConcurrencyLimitError>()
            .is_some()
    })
}

fn output_size(lines: &[OutputLine]) -> usize {
    lines.iter().map(|l| l.line.len()).sum()
}

fn poisoned() -> RunError {
    RunError::Internal("a drive lock was poisoned by a panic".into())
}

fn random_u64() -> u64 {
    let mut b = [0u8; 8];
    // Jitter only; without OS randomness it is simply zero.
    let _ = getrandom::fill(&mut b);
    u64::from_le_bytes(b)
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
