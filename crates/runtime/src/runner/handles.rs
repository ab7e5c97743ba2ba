//! Handles (WIT 0.2.0): durable operations a context starts and awaits
//! later. A handle is the position of its `start-*` call in its context,
//! so it is the same on every replay.
//!
//! How each kind is recorded, at the position of its start call:
//! - a step: its outcome, when it ends (as `step`'s record; `parallel`'s
//!   calls are step handles with the batch's first position);
//! - a timer (`$timer#n`): its time, when started;
//! - an event wait (`$event:<name>#n`): the event consumed, or the
//!   timeout, when an await first sees it complete (the wait's deadline is
//!   fixed when started, in the store's `waits`);
//! - a child workflow (`$child:<workflow>#n`): how the child ended, when an
//!   await first sees it ended (the child's run is created when started,
//!   with an id derived from the parent's, so it is never started twice).
//!
//! `await-any` records the winner's index (`$select#n`) in the transaction
//! that records the winner's completion, if the store decides it (an event,
//! a child); `await-all` records nothing of its own, since its answer
//! follows from the handles' records. `cancel` is recorded (`$cancel#n`)
//! with its effect on a child or an event wait. A step handle's body starts
//! only when the context next waits (a replay that starts a step and
//! cancels it runs nothing), and steps still running when the context ends
//! are stopped.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tracing::Instrument;

use super::RunError;
use super::bindings::HandleError;
use super::drive::Drive;
use super::limits::StepPolicy;
use crate::clock::now_ms;
use crate::history::{ChildEnd, Divergence, Planned, Recorded, Requested, input_digest};
use crate::store::{
    ChildStart, ChildStarted, HandleWait, HandlesParked, NewRun, Outcome, Settle, StoreHandle,
};

/// How a handle's operation ended, as the context sees it.
#[derive(Debug, Clone)]
pub(crate) enum Resolved {
    /// A step's, a timer's or an event wait's outcome.
    Outcome(Outcome),
    /// A child workflow's end.
    Child(ChildEnd),
    /// Cancelled by the context (`cancel`).
    Cancelled(String),
    /// Refused at its start (a guest's mistake, answered the same way on
    /// every replay, not recorded).
    Refused(String),
}

impl Resolved {
    /// What `await-any` / `await-all` return for it.
    pub(crate) fn to_wit(&self) -> Result<String, HandleError> {
        match self {
            Resolved::Outcome(Outcome::Ok(v)) => Ok(v.clone()),
            Resolved::Outcome(Outcome::Failed(m)) => Err(HandleError::Failed(m.clone())),
            Resolved::Outcome(Outcome::Trapped(m)) => Err(HandleError::Trapped(m.clone())),
            Resolved::Outcome(Outcome::TimedOut(t)) => Err(HandleError::TimedOut(*t)),
            Resolved::Child(ChildEnd::Succeeded(out)) => Ok(out.clone()),
            Resolved::Child(ChildEnd::Failed(e)) => Err(HandleError::Failed(e.clone())),
            Resolved::Child(ChildEnd::Cancelled(e)) => Err(HandleError::Cancelled(e.clone())),
            Resolved::Child(ChildEnd::TimedOut(t)) => Err(HandleError::TimedOut(*t)),
            Resolved::Cancelled(m) => Err(HandleError::Cancelled(m.clone())),
            Resolved::Refused(m) => Err(HandleError::Failed(m.clone())),
        }
    }
}

enum Op {
    Step(StepState),
    /// A child run; with a timeout, the timeout and when it runs out.
    Child {
        id: String,
        deadline: Option<(u64, i64)>,
    },
    Timer {
        wake_at: i64,
    },
    Event {
        name: String,
        timeout_ms: Option<u64>,
    },
    Refused,
}

enum StepState {
    Unspawned { input: String, policy: StepPolicy },
    Running(JoinHandle<()>),
    Done,
}

struct Entry {
    call: Planned,
    op: Op,
    resolved: Option<Resolved>,
    /// An await returned its outcome: a cancel no longer changes it.
    observed: bool,
}

/// What a step task reports when it ends.
type Finished = Vec<(u32, Result<Outcome, RunError>)>;

/// The handles of one context (the workflow, or one step body).
pub(crate) struct Handles {
    entries: BTreeMap<u32, Entry>,
    /// In a step body: only step handles, never parked, and a mismatch with
    /// the record supersedes it instead of diverging.
    nested: bool,
    finished: Arc<Mutex<Finished>>,
    /// Told when a step task ends.
    step_ended: Arc<Notify>,
}

impl Drop for Handles {
    fn drop(&mut self) {
        // Nothing outlives its context: steps still running are stopped.
        for entry in self.entries.values() {
            if let Op::Step(StepState::Running(task)) = &entry.op {
                task.abort();
            }
        }
    }
}

/// How often a context waiting here (not parked) looks at handles the
/// store decides (events, children driven elsewhere), and at its run's
/// cancel.
const LOOK_EVERY: Duration = Duration::from_millis(200);
/// How long it waits without looking when only its own steps and children
/// can wake it (each tells it).
const IDLE_LOOK: Duration = Duration::from_secs(1);

impl Handles {
    pub(crate) fn new(nested: bool) -> Handles {
        Handles {
            entries: BTreeMap::new(),
            nested,
            finished: Arc::new(Mutex::new(Vec::new())),
            step_ended: Arc::new(Notify::new()),
        }
    }

    /// Traps unless every handle of `list` was started in this context.
    pub(crate) fn check(&self, list: &[u32], what: &str) -> Result<(), wasmtime::Error> {
        if let Some(bad) = list.iter().find(|h| !self.entries.contains_key(h)) {
            return Err(wasmtime::Error::msg(format!(
                "{what}: {bad} is not a handle: handles are what start-step, start-child, \
                 start-timer and start-event returned in this context"
            )));
        }
        Ok(())
    }

    fn insert(&mut self, call: Planned, op: Op, resolved: Option<Resolved>) -> u32 {
        let position = call.position;
        self.entries.insert(
            position,
            Entry {
                call,
                op,
                resolved,
                observed: false,
            },
        );
        position
    }

    /// A start refused for a guest's mistake: resolved at once, with
    /// `message`, under `call` (planned under a reserved name).
    pub(crate) fn refused(&mut self, call: Planned, message: String) -> u32 {
        self.insert(call, Op::Refused, Some(Resolved::Refused(message)))
    }

    /// Forgets handles (a `parallel` batch's, which the guest never sees).
    pub(crate) fn forget(&mut self, list: &[u32]) {
        for h in list {
            self.entries.remove(h);
        }
    }

    /// Starts step `call`, or answers it from its record. Its body runs
    /// from the context's next wait on.
    pub(crate) async fn start_step(
        &mut self,
        drive: &Arc<Drive>,
        call: Planned,
        input: String,
        policy: StepPolicy,
    ) -> Result<u32, wasmtime::Error> {
        match drive.lookup_in(self.nested, &call).await {
            Ok(Some(outcome)) => Ok(self.insert(
                call,
                Op::Step(StepState::Done),
                Some(Resolved::Outcome(outcome)),
            )),
            Ok(None) => {
                Ok(self.insert(call, Op::Step(StepState::Unspawned { input, policy }), None))
            }
            Err(e) => Err(drive.stop(e)),
        }
    }

    /// Starts a timer of `duration_ms`, recording its time.
    pub(crate) async fn start_timer(
        &mut self,
        drive: &Arc<Drive>,
        call: Planned,
        duration_ms: u64,
    ) -> Result<u32, wasmtime::Error> {
        let wake_at = match drive.lookup(&call) {
            Ok(Some(Outcome::Ok(v))) => v.parse::<i64>().map_err(|_| {
                drive.stop(RunError::Internal(format!(
                    "recorded {} is not a time: {v:?}",
                    call.key
                )))
            })?,
            Ok(Some(other)) => {
                return Err(drive.stop(RunError::Internal(format!(
                    "recorded {} is not a time: {other:?}",
                    call.key
                ))));
            }
            Ok(None) => {
                if let Some(end) = drive.replay_end(&call) {
                    return Err(end);
                }
                let now = now_ms();
                // A checked run does not wait out its timers.
                let wake_at = if drive.faults.skip_sleeps {
                    now
                } else {
                    now.saturating_add(duration_ms.min(i64::MAX as u64) as i64)
                };
                drive
                    .record(&call, Outcome::Ok(wake_at.to_string()))
                    .await
                    .map_err(|e| drive.stop(e))?;
                wake_at
            }
            Err(e) => return Err(drive.stop(e)),
        };
        Ok(self.insert(call, Op::Timer { wake_at }, None))
    }

    /// Starts an event wait for `name`, or answers it from its record.
    pub(crate) async fn start_event(
        &mut self,
        drive: &Arc<Drive>,
        call: Planned,
        name: String,
        timeout_ms: Option<u64>,
    ) -> Result<u32, wasmtime::Error> {
        let resolved = match drive.lookup(&call) {
            Ok(Some(outcome)) => Some(Resolved::Outcome(outcome)),
            Ok(None) => {
                if let Some(end) = drive.replay_end(&call) {
                    return Err(end);
                }
                drive
                    .start_event_wait(&call.key, &name, timeout_ms)
                    .await
                    .map_err(|e| drive.stop(e))?;
                None
            }
            Err(e) => return Err(drive.stop(e)),
        };
        Ok(self.insert(call, Op::Event { name, timeout_ms }, resolved))
    }

    /// Starts child workflow `workflow` with `input` (id `id`, or derived
    /// from the parent's), or answers it from its record. A child this call
    /// started on an earlier drive is found, not started again.
    pub(crate) async fn start_child(
        &mut self,
        drive: &Arc<Drive>,
        call: Planned,
        workflow: String,
        input: String,
        (id, timeout_ms): (Option<String>, Option<u64>),
    ) -> Result<u32, wasmtime::Error> {
        let n = call.key.rsplit('#').next().unwrap_or("1").to_string();
        // A chosen id may not take a scheduled run's (`NAME@TICK`).
        let chosen_tick = id.as_deref().is_some_and(|i| i.contains('@'));
        let id = id.unwrap_or_else(|| format!("{}:{workflow}-{n}", drive.run_id));
        match drive.lookup(&call) {
            Ok(Some(Outcome::Ok(v))) => {
                let end = ChildEnd::parse(&v).ok_or_else(|| {
                    drive.stop(RunError::Internal(format!(
                        "recorded {} is not a child's end: {v:?}",
                        call.key
                    )))
                })?;
                let op = Op::Child { id, deadline: None };
                return Ok(self.insert(call, op, Some(Resolved::Child(end))));
            }
            Ok(Some(other)) => {
                return Err(drive.stop(RunError::Internal(format!(
                    "recorded {} is not a child's end: {other:?}",
                    call.key
                ))));
            }
            Ok(None) => {}
            Err(e) => return Err(drive.stop(e)),
        }
        if let Some(end) = drive.replay_end(&call) {
            return Err(end);
        }
        let created = if chosen_tick {
            Ok(Err(format!(
                "child workflow {workflow:?} cannot start: its id {id:?} has '@', which marks the ids of scheduled runs; choose another"
            )))
        } else {
            self.create_child(drive, &call, &workflow, &input, &id)
                .await
        };
        match created {
            Ok(Ok(created_at)) => {
                // Its time runs from its start, whichever drive started it.
                let deadline = timeout_ms
                    .map(|t| (t, created_at.saturating_add(t.min(i64::MAX as u64) as i64)));
                Ok(self.insert(call, Op::Child { id, deadline }, None))
            }
            // It cannot start, for good: recorded, so every replay agrees.
            Ok(Err(why)) => {
                let end = ChildEnd::Failed(why);
                drive
                    .record(&call, Outcome::Ok(end.to_json()))
                    .await
                    .map_err(|e| drive.stop(e))?;
                let op = Op::Child { id, deadline: None };
                Ok(self.insert(call, op, Some(Resolved::Child(end))))
            }
            Err(e) => Err(drive.stop(e)),
        }
    }

    /// Creates child run `id` (or finds the one this call created before)
    /// and hands it to whoever drives children: when it was created, or
    /// why it cannot start.
    async fn create_child(
        &self,
        drive: &Arc<Drive>,
        call: &Planned,
        workflow: &str,
        input: &str,
        id: &str,
    ) -> Result<Result<i64, String>, RunError> {
        if let Err(e) = crate::names::validate_run_id(id) {
            return Ok(Err(format!(
                "child workflow {workflow:?} cannot start: {e}"
            )));
        }
        let component = match drive.family.resolve(workflow, &drive.component) {
            Ok(c) => c,
            Err(why) => {
                // A child this call started on another host (or before a
                // restart) needs no component here: it runs on.
                if let Some(run) = drive.store.run(id).await?
                    && run.parent.as_deref() == Some(drive.run_id.as_str())
                    && run.parent_key.as_deref() == Some(call.key.as_str())
                {
                    if run.status.is_open() {
                        drive.family.hand_over(id);
                    }
                    return Ok(Ok(run.created_at_ms));
                }
                // Registering the name lets the run go on: not recorded.
                return Err(RunError::UnknownChildWorkflow {
                    run: drive.run_id.clone(),
                    message: format!("{why}; register it, and the run goes on"),
                });
            }
        };
        let mut seed = [0u8; 8];
        getrandom::fill(&mut seed)
            .map_err(|e| RunError::Internal(format!("no OS randomness: {e}")))?;
        let start = ChildStart {
            run: NewRun {
                id: id.to_string(),
                workflow: component.workflow.clone(),
                component_digest: component.digest.clone(),
                component: component.bytes.clone(),
                input: input.to_string(),
                seed: u64::from_le_bytes(seed) >> 1,
                tags: Default::default(),
                trace_parent: drive.trace_parent_for_children(),
            },
            parent_key: call.key.clone(),
            switch: drive.take_switch(),
        };
        let started = drive
            .store
            .start_child(&drive.run_id, &drive.owner, drive.number, start)
            .await?;
        match started {
            ChildStarted::Created(run) => {
                drive.crash_if_asked(&format!("{}@started", call.key));
                drive.family.hand_over(id);
                Ok(Ok(run.created_at_ms))
            }
            ChildStarted::Existing(run) => {
                if run.workflow != component.workflow || !crate::json::same_json(&run.input, input)
                {
                    return Err(RunError::Divergence(Box::new(Divergence {
                        run_id: drive.run_id.clone(),
                        parent: call.parent.clone(),
                        position: call.position,
                        recorded: Some(Recorded {
                            key: call.key.clone(),
                            position: call.position,
                            input_digest: input_digest(&run.input),
                            input: Some(run.input.clone()),
                            in_batch: false,
                        }),
                        requested: Some(Requested {
                            key: call.key.clone(),
                            input_digest: call.input_digest.clone(),
                            input: call.input.clone(),
                            in_batch: false,
                        }),
                    })));
                }
                if run.status.is_open() {
                    drive.family.hand_over(id);
                }
                Ok(Ok(run.created_at_ms))
            }
            ChildStarted::Taken(run) => Ok(Err(format!(
                "child workflow {workflow:?} cannot start: run id {id} is taken by another run \
                 (of workflow {}); give the child another id",
                run.workflow
            ))),
        }
    }

    /// `await-any`: the index (in `list`) of the first handle to complete,
    /// with its outcome; recorded under `select`.
    pub(crate) async fn await_any(
        &mut self,
        drive: &Arc<Drive>,
        select: Planned,
        list: &[u32],
    ) -> Result<(u32, Resolved), wasmtime::Error> {
        let winner = match drive.lookup_in(self.nested, &select).await {
            Ok(Some(Outcome::Ok(v))) => v
                .parse::<u32>()
                .ok()
                .filter(|i| (*i as usize) < list.len())
                .ok_or_else(|| {
                    drive.stop(RunError::Internal(format!(
                        "recorded {} is not an index of its list: {v:?}",
                        select.key
                    )))
                })?,
            Ok(Some(other)) => {
                return Err(drive.stop(RunError::Internal(format!(
                    "recorded {} is not an index: {other:?}",
                    select.key
                ))));
            }
            Ok(None) => {
                if let Some(end) = drive.replay_end(&select) {
                    return Err(end);
                }
                match self.wait(drive, list, Some(&select)).await? {
                    Some(w) => w,
                    None => {
                        return Err(drive.stop(RunError::Internal(
                            "an await-any ended without a winner".into(),
                        )));
                    }
                }
            }
            Err(e) => return Err(drive.stop(e)),
        };
        let h = list[winner as usize];
        let entry = self
            .entries
            .get_mut(&h)
            .ok_or_else(|| drive.stop(RunError::Internal(format!("handle {h} vanished"))))?;
        if entry.resolved.is_none()
            && let Op::Timer { wake_at } = entry.op
        {
            // A timer won on an earlier drive: its time had come.
            entry.resolved = Some(Resolved::Outcome(Outcome::Ok(wake_at.to_string())));
        }
        entry.observed = true;
        match &entry.resolved {
            Some(r) => Ok((winner, r.clone())),
            None => Err(drive.stop(RunError::Internal(format!(
                "{} records {} as the winner, which has not completed",
                select.key, entry.call.key
            )))),
        }
    }

    /// `await-all`: every handle's outcome, in list order.
    pub(crate) async fn await_all(
        &mut self,
        drive: &Arc<Drive>,
        list: &[u32],
    ) -> Result<Vec<Resolved>, wasmtime::Error> {
        self.wait(drive, list, None).await?;
        let mut out = Vec::with_capacity(list.len());
        for h in list {
            let entry = self
                .entries
                .get_mut(h)
                .ok_or_else(|| drive.stop(RunError::Internal(format!("handle {h} vanished"))))?;
            entry.observed = true;
            out.push(entry.resolved.clone().ok_or_else(|| {
                drive.stop(RunError::Internal(format!(
                    "handle {h} was awaited but has not completed"
                )))
            })?);
        }
        Ok(out)
    }

    /// `cancel`: recorded under `call`, with its effect on a child or an
    /// event wait; the handle then resolves as cancelled unless an await
    /// returned its outcome already.
    pub(crate) async fn cancel(
        &mut self,
        drive: &Arc<Drive>,
        call: Planned,
        h: u32,
    ) -> Result<(), wasmtime::Error> {
        self.check(&[h], "cancel")?;
        let recorded = drive
            .lookup_in(self.nested, &call)
            .await
            .map_err(|e| drive.stop(e))?;
        let Some(entry) = self.entries.get_mut(&h) else {
            return Ok(());
        };
        if recorded.is_none() {
            if let Some(end) = drive.replay_end(&call) {
                return Err(end);
            }
            let pending = entry.resolved.is_none();
            let (child, event_key) = match &entry.op {
                Op::Child { id, .. } if pending => (Some(id.clone()), None),
                Op::Event { .. } if pending => (None, Some(entry.call.key.clone())),
                _ => (None, None),
            };
            let done = if self.nested {
                drive
                    .record(&call, Outcome::Ok("null".into()))
                    .await
                    .map(|_| ())
            } else {
                drive.cancel_handle(&call, child, event_key).await
            };
            done.map_err(|e| drive.stop(e))?;
        }
        if let Op::Step(state) = &mut entry.op {
            if let StepState::Running(task) = state {
                task.abort();
            }
            *state = StepState::Done;
        }
        if !entry.observed {
            entry.resolved = Some(Resolved::Cancelled(format!(
                "{} was cancelled by the workflow",
                entry.call.key
            )));
        }
        Ok(())
    }

    /// Starts the bodies of the steps started since the last wait.
    fn spawn(&mut self, drive: &Arc<Drive>) -> Result<(), wasmtime::Error> {
        for (&position, entry) in self.entries.iter_mut() {
            let Op::Step(state) = &mut entry.op else {
                continue;
            };
            if !matches!(state, StepState::Unspawned { .. }) || entry.resolved.is_some() {
                continue;
            }
            if let Some(end) = drive.replay_end(&entry.call) {
                return Err(end);
            }
            let StepState::Unspawned { input, policy } = std::mem::replace(state, StepState::Done)
            else {
                continue;
            };
            let (drive, call) = (drive.clone(), entry.call.clone());
            let (finished, ended) = (self.finished.clone(), self.step_ended.clone());
            // Spawned tasks do not inherit the span: carry it over.
            let span = tracing::Span::current();
            let task = tokio::spawn(
                async move {
                    let outcome = drive.execute(call, input, policy).await;
                    if let Ok(mut f) = finished.lock() {
                        f.push((position, outcome));
                    }
                    ended.notify_one();
                }
                .instrument(span),
            );
            *state = StepState::Running(task);
        }
        Ok(())
    }

    /// Takes in the outcomes of step tasks that ended.
    fn collect(&mut self, drive: &Arc<Drive>) -> Result<(), wasmtime::Error> {
        let ended = self
            .finished
            .lock()
            .map(|mut f| std::mem::take(&mut *f))
            .unwrap_or_default();
        for (position, outcome) in ended {
            let outcome = outcome.map_err(|e| drive.stop(e))?;
            if let Some(entry) = self.entries.get_mut(&position) {
                entry.op = Op::Step(StepState::Done);
                if entry.resolved.is_none() {
                    entry.resolved = Some(Resolved::Outcome(outcome));
                }
            }
        }
        Ok(())
    }

    /// Waits until the handles of `list` have completed (all of them), or,
    /// with `select`, until one has and its win is recorded (its index).
    /// Waits here while something of this process can complete them (its
    /// steps, children it drives); otherwise parks the run.
    async fn wait(
        &mut self,
        drive: &Arc<Drive>,
        list: &[u32],
        select: Option<&Planned>,
    ) -> Result<Option<u32>, wasmtime::Error> {
        self.spawn(drive)?;
        let mut changes = drive.family.watch();
        loop {
            drive.check_cancel()?;
            self.collect(drive)?;
            let now = now_ms();
            for h in list {
                if let Some(entry) = self.entries.get_mut(h)
                    && entry.resolved.is_none()
                    && let Op::Timer { wake_at } = entry.op
                    && wake_at <= now
                {
                    entry.resolved = Some(Resolved::Outcome(Outcome::Ok(wake_at.to_string())));
                }
            }
            let first_ready = list
                .iter()
                .position(|h| self.entries.get(h).is_some_and(|e| e.resolved.is_some()));
            let upto = match select {
                Some(_) => first_ready.unwrap_or(list.len()),
                None => list.len(),
            };
            let candidates: Vec<(u32, StoreHandle)> = list[..upto]
                .iter()
                .enumerate()
                .filter_map(|(i, h)| self.store_handle(drive, *h).map(|s| (i as u32, s)))
                .collect();
            if let (Some(select), Some(first), true) = (select, first_ready, self.nested) {
                // A step body's handles are all steps: nothing for the store.
                drive
                    .record(select, Outcome::Ok(first.to_string()))
                    .await
                    .map_err(|e| drive.stop(e))?;
                return Ok(Some(first as u32));
            }
            if !candidates.is_empty() || (select.is_some() && first_ready.is_some()) {
                let settle = Settle {
                    candidates,
                    select: select.map(|s| {
                        (
                            drive.record_for(s, Outcome::Ok(String::new()), 1, now),
                            first_ready.map(|i| i as u32),
                        )
                    }),
                    switch: None,
                };
                let settled = drive.settle(settle).await.map_err(|e| drive.stop(e))?;
                for (i, outcome) in settled.completed {
                    let Some(entry) = self.entries.get_mut(&list[i as usize]) else {
                        continue;
                    };
                    drive.crash_if_asked(&entry.call.key);
                    entry.resolved = Some(match (&entry.op, outcome) {
                        (Op::Child { .. }, Outcome::Ok(v)) => Resolved::Child(
                            ChildEnd::parse(&v).unwrap_or(ChildEnd::Failed(v.clone())),
                        ),
                        (_, outcome) => Resolved::Outcome(outcome),
                    });
                }
                if let (Some(select), Some(_)) = (select, settled.winner) {
                    drive.crash_if_asked(&select.key);
                    return Ok(settled.winner);
                }
            }
            let pending: Vec<u32> = list
                .iter()
                .copied()
                .filter(|h| self.entries.get(h).is_some_and(|e| e.resolved.is_none()))
                .collect();
            if select.is_none() && pending.is_empty() {
                return Ok(None);
            }
            if let Some(first) = pending.first().and_then(|h| self.entries.get(h))
                && let Some(end) = drive.replay_end(select.unwrap_or(&first.call))
            {
                return Err(end);
            }
            let steps_running = self
                .entries
                .values()
                .any(|e| matches!(e.op, Op::Step(StepState::Running(_))));
            let local_children = pending.iter().any(|h| {
                matches!(self.entries.get(h), Some(Entry { op: Op::Child { id, .. }, .. }) if drive.family.is_local(id))
            });
            // Timers, and children's timeouts.
            let next_timer = pending
                .iter()
                .filter_map(|h| match self.entries.get(h).map(|e| &e.op) {
                    Some(Op::Timer { wake_at }) => Some(*wake_at),
                    Some(Op::Child {
                        deadline: Some((_, at)),
                        ..
                    }) => Some(*at),
                    _ => None,
                })
                .min();
            if steps_running || local_children || self.nested {
                let store_decides = pending.iter().any(|h| {
                    matches!(
                        self.entries.get(h).map(|e| &e.op),
                        Some(Op::Event { .. } | Op::Child { .. })
                    )
                });
                let mut wait = if store_decides { LOOK_EVERY } else { IDLE_LOOK };
                if let Some(t) = next_timer {
                    wait = wait.min(Duration::from_millis(t.saturating_sub(now).max(0) as u64));
                }
                tokio::select! {
                    _ = self.step_ended.notified() => {}
                    _ = changes.changed() => {}
                    _ = tokio::time::sleep(wait) => {}
                }
                continue;
            }
            let wait = self.parking_for(&pending, next_timer);
            match drive
                .park_on_handles(wait)
                .await
                .map_err(|e| drive.stop(e))?
            {
                HandlesParked::Parked => {
                    return Err(drive.stop(RunError::Parked {
                        run: drive.run_id.clone(),
                    }));
                }
                HandlesParked::Ready => continue,
                HandlesParked::Cancelled => {
                    drive.note_cancel(true);
                    return Err(drive.stop(RunError::Cancelled {
                        run: drive.run_id.clone(),
                    }));
                }
            }
        }
    }

    /// What the store decides of handle `h`, if it is pending and the
    /// store decides it (an event wait, a child).
    fn store_handle(&self, drive: &Drive, h: u32) -> Option<StoreHandle> {
        let entry = self.entries.get(&h)?;
        if entry.resolved.is_some() {
            return None;
        }
        let record = || drive.record_for(&entry.call, Outcome::Ok(String::new()), 1, now_ms());
        match &entry.op {
            Op::Event { name, timeout_ms } => Some(StoreHandle::Event {
                record: record(),
                name: name.clone(),
                timeout_ms: *timeout_ms,
            }),
            Op::Child { id, deadline } => Some(StoreHandle::Child {
                record: record(),
                child: id.clone(),
                deadline: *deadline,
            }),
            _ => None,
        }
    }

    /// What a run that parks on `pending` waits for.
    fn parking_for(&self, pending: &[u32], wake_at_ms: Option<i64>) -> HandleWait {
        let mut wait = HandleWait {
            wake_at_ms,
            ..HandleWait::default()
        };
        let mut parts = Vec::new();
        for h in pending {
            let Some(entry) = self.entries.get(h) else {
                continue;
            };
            match &entry.op {
                Op::Event { name, .. } => {
                    wait.events.push((entry.call.key.clone(), name.clone()));
                    parts.push(format!("event {name}"));
                }
                Op::Child { id, .. } => {
                    wait.children.push(id.clone());
                    parts.push(format!("child {id}"));
                }
                Op::Timer { .. } => parts.push("a timer".to_string()),
                _ => {}
            }
        }
        if parts.is_empty() {
            parts.push("handles".to_string());
        }
        let shown = parts.len().min(3);
        wait.describe = format!("any of: {}", parts[..shown].join(", "));
        if parts.len() > shown {
            wait.describe
                .push_str(&format!(" and {} more", parts.len() - shown));
        }
        wait
    }
}
