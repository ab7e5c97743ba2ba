//! The per-instance host state and the implementation of the `durable`
//! interface: every durable call of a guest lands here.

use std::sync::Arc;

use tokio::sync::OwnedSemaphorePermit;
use tokio::task::JoinSet;
use tracing::Instrument;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::RunError;
use super::bindings::durable::workflow::{durable, types};
use super::bindings::{Call, LogLevel, StepError, StepOptions};
use super::drive::Drive;
use super::limits::{MemoryLimit, StepPolicy};
use super::observer::Level;
use crate::history::{self, Context, Planned};
use crate::sandbox;
use crate::store::Outcome;

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
            output: output.clone(),
            table: ResourceTable::new(),
            memory: MemoryLimit {
                bytes: drive.limits.memory_bytes,
            },
            drive,
            context: Context::root(),
            permit: None,
        }
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
    ) -> anyhow::Result<HostState> {
        Ok(HostState {
            wasi: sandbox::step_ctx(&drive.grants, output)?,
            output: output.clone(),
            table: ResourceTable::new(),
            memory: MemoryLimit {
                bytes: drive.limits.memory_bytes,
            },
            drive,
            context: Context::child_of(key),
            permit: Some(permit),
        })
    }

    /// Gives back the permit while `wait` runs, then takes one again.
    async fn without_permit<T>(&mut self, wait: impl Future<Output = T>) -> T {
        let held = self.permit.take().is_some();
        let out = wait.await;
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
        let outcome = match drive.lookup(&call) {
            Ok(Some(o)) => o,
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

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl types::Host for HostState {}

/// A guest's mistake in a call, answered as a step error without recording
/// anything (it is answered the same way on every replay).
fn refuse(name: &str, input: &str) -> Option<StepError> {
    if let Err(e) = history::validate_name(name) {
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

impl durable::Host for HostState {
    async fn step(
        &mut self,
        name: String,
        input: String,
        options: Option<StepOptions>,
    ) -> wasmtime::Result<Result<String, StepError>> {
        self.drive.check_cancel()?;
        if let Some(refused) = refuse(&name, &input) {
            return Ok(Err(refused));
        }
        let call = self.context.plan(&name, &input);
        let drive = self.drive.clone();
        match drive.lookup(&call) {
            Ok(Some(outcome)) => return Ok(to_wit(outcome)),
            Ok(None) => {}
            Err(e) => return Err(drive.stop(e)),
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

    async fn parallel(
        &mut self,
        calls: Vec<Call>,
    ) -> wasmtime::Result<Vec<Result<String, StepError>>> {
        self.drive.check_cancel()?;
        let drive = self.drive.clone();
        let first = self.context.next_position();
        // Keys and positions are assigned in list order, and every recorded
        // call is checked before anything runs, so a divergence is reported
        // at the first differing call and nothing new is committed.
        let mut results: Vec<Option<Result<String, StepError>>> = Vec::with_capacity(calls.len());
        let mut pending: Vec<(usize, Planned, String, StepPolicy)> = Vec::new();
        for (
            i,
            Call {
                name,
                input,
                options,
            },
        ) in calls.into_iter().enumerate()
        {
            if let Some(refused) = refuse(&name, &input) {
                results.push(Some(Err(refused)));
                continue;
            }
            let mut call = self.context.plan(&name, &input);
            call.batch = Some(first);
            match drive.lookup(&call) {
                Ok(Some(outcome)) => results.push(Some(to_wit(outcome))),
                Ok(None) => {
                    results.push(None);
                    let policy = StepPolicy::resolve(&drive.limits, options.as_ref());
                    pending.push((i, call, input, policy));
                }
                Err(e) => return Err(drive.stop(e)),
            }
        }
        if pending.is_empty() {
            return Ok(results.into_iter().flatten().collect());
        }
        // Structured concurrency: the JoinSet aborts every branch still
        // running if this future is dropped, and we return only after all
        // branches have finished.
        let joined = self
            .without_permit(async {
                let mut set = JoinSet::new();
                for (i, call, input, policy) in pending {
                    let drive = drive.clone();
                    // Spawned tasks do not inherit the span: carry it over.
                    let span = tracing::Span::current();
                    set.spawn(
                        async move { (i, drive.execute(call, input, policy).await) }
                            .instrument(span),
                    );
                }
                let mut done = Vec::with_capacity(set.len());
                while let Some(joined) = set.join_next().await {
                    match joined {
                        Ok((i, Ok(outcome))) => done.push((i, outcome)),
                        Ok((_, Err(e))) => return Err(e),
                        Err(e) => {
                            return Err(RunError::Internal(format!(
                                "a parallel branch failed: {e}"
                            )));
                        }
                    }
                }
                Ok(done)
            })
            .await;
        match joined {
            Ok(done) => {
                for (i, outcome) in done {
                    results[i] = Some(to_wit(outcome));
                }
                Ok(results
                    .into_iter()
                    .map(|r| r.expect("every call is recovered, refused or executed"))
                    .collect())
            }
            Err(e) => Err(drive.stop(e)),
        }
    }

    async fn now_ms(&mut self) -> wasmtime::Result<u64> {
        self.recorded_u64(history::NOW, || crate::store::now_ms().max(0) as u64)
            .await
    }

    async fn random_u64(&mut self) -> wasmtime::Result<u64> {
        self.recorded_u64(history::RANDOM, || {
            let mut b = [0u8; 8];
            // getrandom only fails where the OS has no entropy source at all.
            getrandom::fill(&mut b).expect("the OS random source is available");
            u64::from_le_bytes(b)
        })
        .await
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
