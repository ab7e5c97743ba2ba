//! The per-instance host state and the implementation of the `durable`
//! interface: every durable call of a guest lands here.

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::OwnedSemaphorePermit;
use wasmtime::UpdateDeadline;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use super::RunError;
use super::bindings::durable::workflow::{durable, types};
use super::bindings::v1::durable::workflow::durable as durable_v1;
use super::bindings::{
    Call, ChildOptions, HandleError, LogLevel, StepError, StepOptions, WaitError,
};
use super::drive::Drive;
use super::handles::{Handles, Resolved};
use super::limits::{MemoryLimit, StepPolicy};
use super::slots::{AttemptClock, MAX_NESTING};
use crate::history::{self, Context, Planned};
use crate::http::{Caller, HttpHooks};
use crate::observer::Level;
use crate::sandbox;
use crate::store::Outcome;
use durable_core::tags;

/// The data of one wasmtime store: one workflow or step instance.
pub struct HostState {
    wasi: WasiCtx,
    table: ResourceTable,
    drive: Arc<Drive>,
    context: Context,
    /// The step-limit permit a step instance holds while its code runs; it
    /// is given back while the step waits on steps of its own, so nested
    /// steps can never starve their parents of permits.
    permit: Option<OwnedSemaphorePermit>,
    memory: MemoryLimit,
    output: sandbox::Output,
    /// A step attempt's clock, stopped while the step waits on its own
    /// steps; `None` for the workflow instance.
    clock: Option<Arc<AttemptClock>>,
    /// When the guest last got control back from a durable call (or
    /// started): the workflow's CPU budget counts from here.
    busy_since: Instant,
    /// Set when a step body made a call only the workflow may make: the
    /// attempt then fails for good with this message.
    refusal: Option<String>,
    http_ctx: WasiHttpCtx,
    /// Decides and sends the instance's HTTP requests.
    http: HttpHooks,
    /// The handles this context started (WIT 0.2.0), and `parallel`'s.
    handles: Handles,
    /// The tag keys the workflow set so far in this drive (replayed calls
    /// included), for the limit of [`tags::MAX_KEYS`].
    tag_keys: std::collections::BTreeSet<String>,
}

impl HostState {
    pub(crate) fn for_workflow(
        drive: Arc<Drive>,
        start_ms: i64,
        seed: u64,
        output: &sandbox::Output,
    ) -> HostState {
        HostState {
            wasi: sandbox::workflow_ctx(start_ms, seed, output),
            http_ctx: WasiHttpCtx::new(),
            http: HttpHooks::new(
                drive.grants.http.clone(),
                Caller::Workflow,
                http_sink(output),
            ),
            output: output.clone(),
            table: ResourceTable::new(),
            memory: MemoryLimit::new(drive.limits.memory_bytes),
            drive,
            context: Context::root(),
            permit: None,
            clock: None,
            busy_since: Instant::now(),
            refusal: None,
            handles: Handles::new(false),
            tag_keys: Default::default(),
        }
    }

    /// Why the step's attempt must fail for good, if a call of its body was
    /// refused (a call only the workflow may make, an HTTP request the
    /// host does not allow).
    pub(crate) fn refusal(&self) -> Option<String> {
        self.refusal.clone().or_else(|| self.http.refusal())
    }

    /// Why the workflow instance must stop: it sent an HTTP request.
    pub(crate) fn workflow_http_refusal(&self) -> Option<String> {
        self.http.refusal()
    }

    /// HTTP limits the instance's requests ran into, each naming its flag.
    pub(crate) fn http_notes(&self) -> Vec<String> {
        self.http.notes()
    }

    /// Ends the lines of HTTP responses the instance did not read to the
    /// end; call before the instance's output is taken.
    pub(crate) fn flush_http(&mut self) {
        self.http.flush();
    }

    /// Starts the workflow's CPU budget afresh.
    pub(crate) fn reset_busy(&mut self) {
        self.busy_since = Instant::now();
    }

    /// How many durable calls this instance's context has made.
    pub(crate) fn calls_made(&self) -> u32 {
        self.context.next_position()
    }

    /// The epoch callback: stops the instance when the drive was stopped,
    /// a workflow instance when its run was cancelled or it has run past
    /// its CPU budget without a durable call; else yields to tokio.
    pub(crate) fn on_epoch(&mut self) -> wasmtime::Result<UpdateDeadline> {
        if self.drive.is_stopped() {
            return Err(wasmtime::Error::msg("run stopped by the host"));
        }
        if self.clock.is_none() {
            self.drive.check_cancel()?;
            if let Some(message) = self.http.refusal() {
                return Err(self.drive.stop(RunError::HttpInWorkflow {
                    run: self.drive.run_id.clone(),
                    message,
                }));
            }
            let busy = self.busy_since.elapsed();
            if busy > self.drive.limits.workflow_timeout {
                return Err(self.drive.stop(RunError::WorkflowBusy {
                    run: self.drive.run_id.clone(),
                    limit_ms: self.drive.limits.workflow_timeout.as_millis() as u64,
                }));
            }
        }
        Ok(UpdateDeadline::Yield(1))
    }

    /// The store's resource limiter.
    pub(crate) fn limiter(&mut self) -> &mut dyn wasmtime::ResourceLimiter {
        &mut self.memory
    }

    pub(crate) fn for_step(
        drive: Arc<Drive>,
        key: &str,
        permit: OwnedSemaphorePermit,
        output: &sandbox::Output,
        clock: Arc<AttemptClock>,
        (timeout, attempt): (std::time::Duration, u32),
    ) -> anyhow::Result<HostState> {
        let remaining = {
            let clock = clock.clone();
            Arc::new(move || clock.remaining(timeout))
        };
        let trace = drive.trace.as_ref().map(|t| t.request_trace(key, attempt));
        let caller = Caller::Step {
            key: key.to_string(),
            attempt,
            remaining,
            trace,
        };
        Ok(HostState {
            wasi: sandbox::step_ctx(&drive.grants, output)?,
            http_ctx: WasiHttpCtx::new(),
            http: HttpHooks::new(drive.grants.http.clone(), caller, http_sink(output)),
            output: output.clone(),
            table: ResourceTable::new(),
            memory: MemoryLimit::new(drive.limits.memory_bytes),
            drive,
            context: Context::child_of(key),
            permit: Some(permit),
            clock: Some(clock),
            busy_since: Instant::now(),
            refusal: None,
            handles: Handles::new(true),
            tag_keys: Default::default(),
        })
    }

    /// Gives back the permit while `wait` runs, then takes one again; the
    /// step's clock stands still meanwhile.
    async fn without_permit<T>(&mut self, wait: impl Future<Output = T>) -> T {
        let _paused = self.clock.as_ref().map(|c| c.pause());
        let held = self.permit.take().is_some();
        let out = wait.await;
        if held && let Ok(p) = self.drive.permits.clone().acquire_owned().await {
            self.permit = Some(p);
        }
        out
    }

    /// Awaits handles of this context, holding no permit meanwhile (see
    /// [`HostState::without_permit`]): all of them, or (with `select`) the
    /// first to complete.
    async fn await_handles(
        &mut self,
        list: &[u32],
        select: Option<Planned>,
    ) -> wasmtime::Result<Result<Vec<Resolved>, (u32, Resolved)>> {
        let _paused = self.clock.as_ref().map(|c| c.pause());
        let held = self.permit.take().is_some();
        let drive = self.drive.clone();
        let out = match select {
            Some(select) => self.handles.await_any(&drive, select, list).await.map(Err),
            None => self.handles.await_all(&drive, list).await.map(Ok),
        };
        if held && let Ok(p) = self.drive.permits.clone().acquire_owned().await {
            self.permit = Some(p);
        }
        out
    }

    /// Records (or replays) a value the host produces itself.
    async fn recorded_u64(
        &mut self,
        name: &str,
        fresh: impl FnOnce() -> u64,
    ) -> wasmtime::Result<u64> {
        self.drive.check_cancel()?;
        let call = self.context.plan(name, "");
        let drive = self.drive.clone();
        let nested = self.nested();
        let outcome = match drive.lookup_in(nested, &call).await {
            Ok(Some(o)) => o,
            Ok(None) if drive.replay_only => {
                return Err(drive.replay_end(&call).unwrap_or_else(stopped));
            }
            Ok(None) => match drive.record(&call, Outcome::Ok(fresh().to_string())).await {
                Ok(o) => o,
                Err(e) => return Err(drive.stop(e)),
            },
            Err(e) => return Err(drive.stop(e)),
        };
        match outcome {
            Outcome::Ok(v) => v.parse().map_err(|_| {
                drive.stop(RunError::Internal(format!(
                    "recorded {} is not a number: {v:?}",
                    call.key
                )))
            }),
            other => Err(drive.stop(RunError::Internal(format!(
                "recorded {} is not a value: {other:?}",
                call.key
            )))),
        }
    }
}

impl HostState {
    /// True in a step body (where a mismatch with the record supersedes
    /// it), false in the workflow (where it is a divergence).
    fn nested(&self) -> bool {
        !self.context.parent().is_empty()
    }

    /// Refuses a call only the workflow may make when a step body makes it
    /// (a step would hold its instance while it waits): the attempt fails
    /// for good.
    fn workflow_only(&mut self, what: &str) -> Result<(), wasmtime::Error> {
        if self.clock.is_none() {
            return Ok(());
        }
        let message = format!(
            "{what} may only be called from the workflow, not from the body of step {} \
             (a step would hold its instance while it waits): call it in the workflow, between steps",
            self.context.parent()
        );
        self.refusal = Some(message.clone());
        Err(wasmtime::Error::msg(message))
    }

    /// A durable sleep until `wake_at` (computed from the first call;
    /// `input` is what the divergence check compares).
    async fn sleep_until_ms(
        &mut self,
        input: String,
        wake_at: impl FnOnce() -> i64,
    ) -> wasmtime::Result<()> {
        self.drive.check_cancel()?;
        self.workflow_only("sleep")?;
        let call = self.context.plan(history::SLEEP, &input);
        let drive = self.drive.clone();
        let (first, wake_at) = match drive.lookup(&call) {
            Ok(Some(Outcome::Ok(v))) => match v.parse::<i64>() {
                Ok(t) => (false, t),
                Err(_) => {
                    return Err(drive.stop(RunError::Internal(format!(
                        "recorded {} is not a time: {v:?}",
                        call.key
                    ))));
                }
            },
            Ok(Some(other)) => {
                return Err(drive.stop(RunError::Internal(format!(
                    "recorded {} is not a time: {other:?}",
                    call.key
                ))));
            }
            Ok(None) if drive.replay_only => {
                return Err(drive.replay_end(&call).unwrap_or_else(stopped));
            }
            // A checked run does not wait out its timers.
            Ok(None) if drive.faults.skip_sleeps => (true, crate::clock::now_ms()),
            Ok(None) => (true, wake_at()),
            Err(e) => return Err(drive.stop(e)),
        };
        if !first && wake_at <= crate::clock::now_ms() {
            // The sleep the run was parked on (nothing recorded after it)
            // ends now; older ones only replay.
            if drive.is_last_recorded(&call) {
                drive
                    .observer
                    .waited(&drive.run_id, &call.key, &Outcome::Ok(wake_at.to_string()));
            }
            return Ok(());
        }
        // A replay ends at a wait that is not over.
        if let Some(end) = drive.replay_end(&call) {
            return Err(end);
        }
        match drive.sleep(&call, first, wake_at).await {
            Ok(false) => Ok(()),
            Ok(true) => Err(drive.stop(RunError::Parked {
                run: drive.run_id.clone(),
            })),
            Err(e) => Err(drive.stop(e)),
        }
    }

    async fn do_await_event(
        &mut self,
        name: String,
        timeout_ms: Option<u64>,
    ) -> wasmtime::Result<Result<String, WaitError>> {
        self.drive.check_cancel()?;
        self.workflow_only("await-event")?;
        if let Err(e) = crate::names::validate_step_name(&name) {
            return Err(wasmtime::Error::msg(format!("invalid event name: {e}")));
        }
        let input = timeout_ms.map_or_else(|| "no timeout".to_string(), |t| format!("timeout {t}"));
        let call = self
            .context
            .plan(&format!("{}{name}", history::EVENT_PREFIX), &input);
        let drive = self.drive.clone();
        let outcome = match drive.lookup(&call) {
            Ok(Some(o)) => o,
            Ok(None) if drive.replay_only => {
                return Err(drive.replay_end(&call).unwrap_or_else(stopped));
            }
            Ok(None) => match drive.await_event(&call, &name, timeout_ms).await {
                Ok(Some(o)) => o,
                Ok(None) => {
                    return Err(drive.stop(RunError::Parked {
                        run: drive.run_id.clone(),
                    }));
                }
                Err(e) => return Err(drive.stop(e)),
            },
            Err(e) => return Err(drive.stop(e)),
        };
        match outcome {
            Outcome::Ok(payload) => Ok(Ok(payload)),
            Outcome::TimedOut(t) => Ok(Err(WaitError::TimedOut(t))),
            other => Err(drive.stop(RunError::Internal(format!(
                "recorded {} is not an event: {other:?}",
                call.key
            )))),
        }
    }

    /// A step call nested deeper than [`MAX_NESTING`], refused.
    fn too_deep(&self, name: &str) -> Option<StepError> {
        let depth = self.context.depth() + 1;
        (depth > MAX_NESTING).then(|| {
            StepError::Failed(format!(
                "step {name:?} would be nested {depth} levels deep, deeper than the host's limit of {MAX_NESTING}; \
                 call it from the workflow instead of from a step body"
            ))
        })
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for HostState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http_ctx,
            table: &mut self.table,
            hooks: &mut self.http,
        }
    }
}

/// Lines about HTTP requests go to the instance's output.
fn http_sink(output: &sandbox::Output) -> crate::http::LineSink {
    let output = output.clone();
    Arc::new(move |line: &str| output.http(line))
}

impl types::Host for HostState {}

/// A guest's mistake in a call, answered as a step error without recording
/// anything (it is answered the same way on every replay).
fn refuse(name: &str, input: &str) -> Option<StepError> {
    if let Err(e) = crate::names::validate_step_name(name) {
        return Some(StepError::Failed(e.to_string()));
    }
    if let Err(e) = serde_json::from_str::<serde::de::IgnoredAny>(input) {
        return Some(StepError::Failed(format!(
            "input of step {name:?} is not valid JSON: {e}"
        )));
    }
    None
}

fn to_wit(outcome: Outcome) -> Result<String, StepError> {
    match outcome {
        Outcome::Ok(v) => Ok(v),
        Outcome::Failed(m) => Err(StepError::Failed(m)),
        Outcome::Trapped(m) => Err(StepError::Trapped(m)),
        Outcome::TimedOut(ms) => Err(StepError::TimedOut(ms)),
    }
}

/// The durable calls that may wait; the trait impl below resets the
/// workflow's CPU budget when each returns.
impl HostState {
    async fn do_step(
        &mut self,
        name: String,
        input: String,
        options: Option<StepOptions>,
    ) -> wasmtime::Result<Result<String, StepError>> {
        self.drive.check_cancel()?;
        if let Some(refused) = refuse(&name, &input).or_else(|| self.too_deep(&name)) {
            return Ok(Err(refused));
        }
        let call = self.context.plan(&name, &input);
        let drive = self.drive.clone();
        let nested = self.nested();
        match drive.lookup_in(nested, &call).await {
            Ok(Some(outcome)) => return Ok(to_wit(outcome)),
            Ok(None) => {}
            Err(e) => return Err(drive.stop(e)),
        }
        if let Some(end) = drive.replay_end(&call) {
            return Err(end);
        }
        let policy = StepPolicy::resolve(&drive.limits, options.as_ref());
        match self
            .without_permit(drive.clone().execute(call, input, policy))
            .await
        {
            Ok(outcome) => Ok(to_wit(outcome)),
            Err(e) => Err(drive.stop(e)),
        }
    }

    /// `parallel`: start a step handle per call, await them all. Keys and
    /// positions are assigned in list order, and every recorded call is
    /// checked before anything runs (bodies start at the await), so a
    /// divergence is reported at the first differing call and nothing new
    /// is committed.
    async fn do_parallel(
        &mut self,
        calls: Vec<Call>,
    ) -> wasmtime::Result<Vec<Result<String, StepError>>> {
        self.drive.check_cancel()?;
        let drive = self.drive.clone();
        let first = self.context.next_position();
        let mut results: Vec<Option<Result<String, StepError>>> = Vec::with_capacity(calls.len());
        let mut started: Vec<(usize, u32)> = Vec::new();
        for (
            i,
            Call {
                name,
                input,
                options,
            },
        ) in calls.into_iter().enumerate()
        {
            if let Some(refused) = refuse(&name, &input).or_else(|| self.too_deep(&name)) {
                results.push(Some(Err(refused)));
                continue;
            }
            let mut call = self.context.plan(&name, &input);
            call.batch = Some(first);
            let policy = StepPolicy::resolve(&drive.limits, options.as_ref());
            let h = self.handles.start_step(&drive, call, input, policy).await?;
            results.push(None);
            started.push((i, h));
        }
        let list: Vec<u32> = started.iter().map(|(_, h)| *h).collect();
        let done = self.await_handles(&list, None).await;
        self.handles.forget(&list);
        let Ok(done) = done? else {
            return Err(drive.stop(RunError::Internal("await-all answered as await-any".into())));
        };
        for ((i, _), resolved) in started.into_iter().zip(done) {
            results[i] = Some(match resolved {
                Resolved::Outcome(outcome) => to_wit(outcome),
                other => Err(StepError::Failed(format!("{other:?}"))),
            });
        }
        Ok(results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(StepError::Failed("not run".into()))))
            .collect())
    }

    async fn do_now_ms(&mut self) -> wasmtime::Result<u64> {
        self.recorded_u64(history::NOW, || crate::clock::now_ms().max(0) as u64)
            .await
    }

    /// When a wait of the workflow began, if its drive makes spans.
    fn wait_started(&self) -> Option<(u64, Instant)> {
        self.drive
            .trace
            .as_ref()
            .map(|_| (durable_core::trace::now_ns(), Instant::now()))
    }

    /// A wait that began at `started` ended (`failed`: it returned an
    /// error, which is how a park unwinds): a span, unless it was answered
    /// at once from the record.
    fn wait_ended(
        &self,
        started: Option<(u64, Instant)>,
        what: impl FnOnce() -> String,
        failed: bool,
    ) {
        let (Some((start_ns, at)), Some(trace)) = (started, &self.drive.trace) else {
            return;
        };
        let parked = failed && self.drive.is_parking();
        if parked || at.elapsed() >= std::time::Duration::from_millis(1) {
            trace.wait(&what(), start_ns, parked);
        }
    }

    /// `set-tag`: refused (nothing recorded) from a step body, for an
    /// invalid tag or a key beyond the limit; else recorded under
    /// `$tag:<key>` with the value as input (a replay with another value
    /// diverges) and stored with its record.
    async fn do_set_tag(
        &mut self,
        key: String,
        value: String,
    ) -> wasmtime::Result<Result<(), String>> {
        self.drive.check_cancel()?;
        if self.nested() || self.clock.is_some() {
            return Ok(Err(
                "set-tag is a workflow call: a step body cannot set tags".into(),
            ));
        }
        if let Err(e) = tags::validate(&key, &value) {
            return Ok(Err(e));
        }
        if !self.tag_keys.contains(&key) && self.tag_keys.len() >= tags::MAX_KEYS {
            return Ok(Err(tags::too_many(&key)));
        }
        let call = self
            .context
            .plan(&format!("{}{key}", history::TAG_PREFIX), &value);
        let drive = self.drive.clone();
        match drive.lookup(&call) {
            // Recorded: the tag was stored with the record.
            Ok(Some(_)) => {}
            Ok(None) if drive.replay_only => {
                return Err(drive.replay_end(&call).unwrap_or_else(stopped));
            }
            Ok(None) => {
                if let Err(e) = drive.record_tag(&call, key.clone(), value).await {
                    return Err(drive.stop(e));
                }
            }
            Err(e) => return Err(drive.stop(e)),
        }
        self.tag_keys.insert(key);
        Ok(Ok(()))
    }

    async fn do_random_u64(&mut self) -> wasmtime::Result<u64> {
        self.recorded_u64(history::RANDOM, || {
            let mut b = [0u8; 8];
            // getrandom only fails where the OS has no entropy source at all.
            getrandom::fill(&mut b).expect("the OS random source is available");
            u64::from_le_bytes(b)
        })
        .await
    }
}

/// Reserved name of a `start-*` call refused for a guest's mistake: it
/// takes a position (its handle) and is never recorded.
const REFUSED: &str = "$refused";

/// The handle calls of WIT 0.2.0 (see `handles.rs`).
impl HostState {
    async fn do_start_step(
        &mut self,
        name: String,
        input: String,
        options: Option<StepOptions>,
    ) -> wasmtime::Result<u32> {
        self.drive.check_cancel()?;
        if let Some(refused) = refuse(&name, &input).or_else(|| self.too_deep(&name)) {
            let call = self.context.plan(REFUSED, "");
            let message = match refused {
                StepError::Failed(m) | StepError::Trapped(m) => m,
                StepError::TimedOut(t) => format!("timed out after {t} ms"),
            };
            return Ok(self.handles.refused(call, message));
        }
        let call = self.context.plan(&name, &input);
        let drive = self.drive.clone();
        let policy = StepPolicy::resolve(&drive.limits, options.as_ref());
        self.handles.start_step(&drive, call, input, policy).await
    }

    async fn do_start_child(
        &mut self,
        workflow: String,
        input: String,
        options: Option<ChildOptions>,
    ) -> wasmtime::Result<u32> {
        self.drive.check_cancel()?;
        self.workflow_only("start-child")?;
        let refused = crate::names::validate_workflow_name(&workflow)
            .err()
            .or_else(|| {
                (input.len() > self.drive.limits.max_input_bytes).then(|| {
                    format!(
                        "the input of child workflow {workflow:?} is {} bytes, over the input size limit of {} bytes (--max-input-bytes)",
                        input.len(),
                        self.drive.limits.max_input_bytes
                    )
                })
            })
            .or_else(|| {
                serde_json::from_str::<serde::de::IgnoredAny>(&input)
                    .err()
                    .map(|e| format!("input of child workflow {workflow:?} is not valid JSON: {e}"))
            });
        if let Some(message) = refused {
            let call = self.context.plan(REFUSED, "");
            return Ok(self.handles.refused(call, message));
        }
        let call = self
            .context
            .plan(&format!("{}{workflow}", history::CHILD_PREFIX), &input);
        let drive = self.drive.clone();
        let (id, timeout_ms) = options.map_or((None, None), |o| (o.id, o.timeout_ms));
        self.handles
            .start_child(&drive, call, workflow, input, (id, timeout_ms))
            .await
    }

    async fn do_start_timer(&mut self, duration_ms: u64) -> wasmtime::Result<u32> {
        self.drive.check_cancel()?;
        self.workflow_only("start-timer")?;
        let call = self
            .context
            .plan(history::TIMER, &format!("for {duration_ms}"));
        let drive = self.drive.clone();
        self.handles.start_timer(&drive, call, duration_ms).await
    }

    async fn do_start_event(
        &mut self,
        name: String,
        timeout_ms: Option<u64>,
    ) -> wasmtime::Result<u32> {
        self.drive.check_cancel()?;
        self.workflow_only("start-event")?;
        if let Err(e) = crate::names::validate_step_name(&name) {
            let call = self.context.plan(REFUSED, "");
            return Ok(self
                .handles
                .refused(call, format!("invalid event name: {e}")));
        }
        let input = timeout_ms.map_or_else(|| "no timeout".to_string(), |t| format!("timeout {t}"));
        let call = self
            .context
            .plan(&format!("{}{name}", history::EVENT_PREFIX), &input);
        let drive = self.drive.clone();
        self.handles
            .start_event(&drive, call, name, timeout_ms)
            .await
    }

    async fn do_await_any(
        &mut self,
        handles: Vec<u32>,
    ) -> wasmtime::Result<(u32, Result<String, HandleError>)> {
        self.drive.check_cancel()?;
        if handles.is_empty() {
            return Err(wasmtime::Error::msg(
                "await-any of no handles would wait forever",
            ));
        }
        self.handles.check(&handles, "await-any")?;
        let input = serde_json::to_string(&handles).unwrap_or_default();
        let select = self.context.plan(history::SELECT, &input);
        match self.await_handles(&handles, Some(select)).await? {
            Err((index, resolved)) => Ok((index, resolved.to_wit())),
            Ok(_) => Err(self
                .drive
                .stop(RunError::Internal("await-any answered as await-all".into()))),
        }
    }

    async fn do_await_all(
        &mut self,
        handles: Vec<u32>,
    ) -> wasmtime::Result<Vec<Result<String, HandleError>>> {
        self.drive.check_cancel()?;
        self.handles.check(&handles, "await-all")?;
        match self.await_handles(&handles, None).await? {
            Ok(all) => Ok(all.iter().map(Resolved::to_wit).collect()),
            Err(_) => Err(self
                .drive
                .stop(RunError::Internal("await-all answered as await-any".into()))),
        }
    }

    async fn do_cancel(&mut self, handle: u32) -> wasmtime::Result<()> {
        self.drive.check_cancel()?;
        self.handles.check(&[handle], "cancel")?;
        let call = self.context.plan(history::CANCEL, &handle.to_string());
        let drive = self.drive.clone();
        self.handles.cancel(&drive, call, handle).await
    }
}

/// Version 0.1.0 of the interface: the same calls as 0.2.0's, without
/// handles.
impl durable_v1::Host for HostState {
    async fn step(
        &mut self,
        name: String,
        input: String,
        options: Option<StepOptions>,
    ) -> wasmtime::Result<Result<String, StepError>> {
        <Self as durable::Host>::step(self, name, input, options).await
    }

    async fn parallel(
        &mut self,
        calls: Vec<Call>,
    ) -> wasmtime::Result<Vec<Result<String, StepError>>> {
        <Self as durable::Host>::parallel(self, calls).await
    }

    async fn now_ms(&mut self) -> wasmtime::Result<u64> {
        <Self as durable::Host>::now_ms(self).await
    }

    async fn random_u64(&mut self) -> wasmtime::Result<u64> {
        <Self as durable::Host>::random_u64(self).await
    }

    async fn idempotency_key(&mut self) -> wasmtime::Result<String> {
        <Self as durable::Host>::idempotency_key(self).await
    }

    async fn log(&mut self, level: LogLevel, message: String) -> wasmtime::Result<()> {
        <Self as durable::Host>::log(self, level, message).await
    }

    async fn sleep(&mut self, duration_ms: u64) -> wasmtime::Result<()> {
        <Self as durable::Host>::sleep(self, duration_ms).await
    }

    async fn sleep_until(&mut self, epoch_ms: u64) -> wasmtime::Result<()> {
        <Self as durable::Host>::sleep_until(self, epoch_ms).await
    }

    async fn await_event(
        &mut self,
        name: String,
        timeout_ms: Option<u64>,
    ) -> wasmtime::Result<Result<String, WaitError>> {
        <Self as durable::Host>::await_event(self, name, timeout_ms).await
    }
}

impl durable::Host for HostState {
    async fn start_step(
        &mut self,
        name: String,
        input: String,
        options: Option<StepOptions>,
    ) -> wasmtime::Result<u32> {
        let r = self.do_start_step(name, input, options).await;
        self.busy_since = Instant::now();
        r
    }

    async fn start_child(
        &mut self,
        workflow: String,
        input: String,
        options: Option<ChildOptions>,
    ) -> wasmtime::Result<u32> {
        let r = self.do_start_child(workflow, input, options).await;
        self.busy_since = Instant::now();
        r
    }

    async fn start_timer(&mut self, duration_ms: u64) -> wasmtime::Result<u32> {
        let r = self.do_start_timer(duration_ms).await;
        self.busy_since = Instant::now();
        r
    }

    async fn start_event(
        &mut self,
        name: String,
        timeout_ms: Option<u64>,
    ) -> wasmtime::Result<u32> {
        let r = self.do_start_event(name, timeout_ms).await;
        self.busy_since = Instant::now();
        r
    }

    async fn await_any(
        &mut self,
        handles: Vec<u32>,
    ) -> wasmtime::Result<(u32, Result<String, HandleError>)> {
        let waiting = self.wait_started();
        let n = handles.len();
        let r = self.do_await_any(handles).await;
        self.wait_ended(waiting, || format!("await-any of {n}"), r.is_err());
        self.busy_since = Instant::now();
        r
    }

    async fn await_all(
        &mut self,
        handles: Vec<u32>,
    ) -> wasmtime::Result<Vec<Result<String, HandleError>>> {
        let waiting = self.wait_started();
        let n = handles.len();
        let r = self.do_await_all(handles).await;
        self.wait_ended(waiting, || format!("await-all of {n}"), r.is_err());
        self.busy_since = Instant::now();
        r
    }

    async fn cancel(&mut self, handle: u32) -> wasmtime::Result<()> {
        let r = self.do_cancel(handle).await;
        self.busy_since = Instant::now();
        r
    }

    async fn step(
        &mut self,
        name: String,
        input: String,
        options: Option<StepOptions>,
    ) -> wasmtime::Result<Result<String, StepError>> {
        let r = self.do_step(name, input, options).await;
        self.busy_since = Instant::now();
        r
    }

    async fn parallel(
        &mut self,
        calls: Vec<Call>,
    ) -> wasmtime::Result<Vec<Result<String, StepError>>> {
        let r = self.do_parallel(calls).await;
        self.busy_since = Instant::now();
        r
    }

    async fn now_ms(&mut self) -> wasmtime::Result<u64> {
        let r = self.do_now_ms().await;
        self.busy_since = Instant::now();
        r
    }

    async fn set_tag(
        &mut self,
        key: String,
        value: String,
    ) -> wasmtime::Result<Result<(), String>> {
        let r = self.do_set_tag(key, value).await;
        self.busy_since = Instant::now();
        r
    }

    async fn random_u64(&mut self) -> wasmtime::Result<u64> {
        let r = self.do_random_u64().await;
        self.busy_since = Instant::now();
        r
    }

    async fn sleep(&mut self, duration_ms: u64) -> wasmtime::Result<()> {
        let waiting = self.wait_started();
        let r = self
            .sleep_until_ms(format!("for {duration_ms}"), || {
                crate::clock::now_ms().saturating_add(duration_ms.min(i64::MAX as u64) as i64)
            })
            .await;
        self.wait_ended(waiting, || format!("sleep {duration_ms} ms"), r.is_err());
        self.busy_since = Instant::now();
        r
    }

    async fn sleep_until(&mut self, epoch_ms: u64) -> wasmtime::Result<()> {
        let until = epoch_ms.min(i64::MAX as u64) as i64;
        let waiting = self.wait_started();
        let r = self
            .sleep_until_ms(format!("until {until}"), || until)
            .await;
        self.wait_ended(waiting, || format!("sleep until {until}"), r.is_err());
        self.busy_since = Instant::now();
        r
    }

    async fn await_event(
        &mut self,
        name: String,
        timeout_ms: Option<u64>,
    ) -> wasmtime::Result<Result<String, WaitError>> {
        let waiting = self.wait_started();
        let what = format!("event {name}");
        let r = self.do_await_event(name, timeout_ms).await;
        self.wait_ended(waiting, || what, r.is_err());
        self.busy_since = Instant::now();
        r
    }

    async fn idempotency_key(&mut self) -> wasmtime::Result<String> {
        let parent = self.context.parent();
        Ok(if parent.is_empty() {
            self.drive.run_id.clone()
        } else {
            format!("{}/{parent}", self.drive.run_id)
        })
    }

    async fn log(&mut self, level: LogLevel, message: String) -> wasmtime::Result<()> {
        let level = match level {
            LogLevel::Trace => Level::Trace,
            LogLevel::Debug => Level::Debug,
            LogLevel::Info => Level::Info,
            LogLevel::Warn => Level::Warn,
            LogLevel::Error => Level::Error,
        };
        self.drive
            .observer
            .log(&self.drive.run_id, self.context.parent(), level, &message);
        self.output
            .log(&format!("{level:?}").to_lowercase(), &message);
        Ok(())
    }
}

/// The trap of a drive that was stopped already.
fn stopped() -> wasmtime::Error {
    wasmtime::Error::msg("run stopped by the host")
}
