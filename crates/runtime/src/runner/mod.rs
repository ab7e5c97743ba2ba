//! Drives runs: claims a run in the store, loads its history once, runs the
//! workflow's `run` export in a deterministic instance, and answers every
//! durable call from the history or by executing the step in a fresh
//! instance and committing its outcome first.
//!
//! **Invariant:** a step's outcome is committed before the guest that asked
//! for it sees it. **Invariant:** only this module decides whether a failure
//! is the guest's (a step error, returned to the workflow) or the host's (a
//! trap that stops the run and is never shown to the guest as a value).

pub(crate) mod bindings;
mod drive;
mod engine;
mod error;
mod family;
mod faults;
mod file_writes;
mod handles;
mod lease;
mod limits;
mod loaded;
mod replay;
mod slots;
mod state;
mod step;
mod workflow;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use tokio::sync::Semaphore;
use tracing::Instrument;

pub use crate::names::{validate_step_name, validate_workflow_name};
pub use crate::observer::{Level, Observer, Silent, Source, Tee, Waiting};
pub use drive::human;
pub use engine::{Engine, LoadedWorkflow};
pub use error::{RunError, new_run_id, validate_run_id};
pub use family::ChildComponent;
pub use faults::Faults;
pub use limits::{Limits, RetryPolicy};
pub use loaded::release_freed_memory;
pub use replay::{Progress, Replay};
pub use slots::MAX_NESTING;
pub use state::HostState;

use crate::compiler::{EngineOptions, LoadError};
use crate::history::History;
use crate::owner::Owner;
use crate::sandbox::Grants;
use crate::store::{
    Claim, ComponentSwitch, Creation, DriveStart, NewRun, RunEnd, RunRecord, RunStatus, Store,
    StoreError,
};
use drive::{Drive, DriveSetup, cap_message};
use durable_core::records::StartOptions;
use lease::renew_lease;
use workflow::{WorkflowFailure, end_of, run_workflow};

/// A run that reached its end (now or earlier).
#[derive(Debug, Clone)]
pub struct Finished {
    /// The run's final record.
    pub run: RunRecord,
    /// True when the run had already finished before this call.
    pub already: bool,
}

/// Settings of a [`Runtime`].
pub struct RuntimeConfig {
    /// Most step instances running at once in this process; more wait.
    pub max_concurrent_steps: usize,
    /// Where to kill the process (fault injection; none by default).
    pub faults: Faults,
    /// Compile cache directory; `None` compiles every time.
    pub cache_dir: Option<PathBuf>,
    /// Most bytes the compile cache keeps (least recently used entries go
    /// first); by default `DURABLE_CACHE_MAX_MB`, else 1 GiB.
    pub cache_max_bytes: u64,
    /// Receives progress.
    pub observer: Arc<dyn Observer>,
    /// Limits and retry defaults.
    pub limits: Limits,
    /// What step instances may use.
    pub grants: Grants,
    /// Size of the instance pool (`None`: allocate on demand).
    pub pool_instances: Option<u32>,
    /// Limits and grants of particular components (by digest), instead of
    /// `limits` and `grants`: what an operator configured for a registered
    /// workflow. Their memory limit is capped by the engine's.
    pub per_component: HashMap<String, (Limits, Grants)>,
    /// Memory for components kept loaded (compiled code and bytes); the
    /// least recently used are dropped beyond it and loaded again when a
    /// run needs them.
    pub max_loaded_bytes: usize,
    /// Whether a child workflow's name must be linked ([`Runtime::link`]):
    /// a server's registered workflows. Otherwise an unlinked name runs the
    /// parent's own component (`durable run`).
    pub links_only: bool,
    /// Most attempts of a step name running at once, across every run and
    /// every process on the database (the store keeps the slots): what
    /// protects a downstream service. A step waiting for a slot holds no
    /// instance.
    pub step_limits: HashMap<String, u32>,
    /// Where the spans of drives go (`--otlp-endpoint`); `None`: no spans
    /// are made at all.
    pub spans: Option<Arc<dyn durable_core::trace::SpanSink>>,
}

impl RuntimeConfig {
    /// The engine these settings call for.
    pub fn engine_options(&self) -> EngineOptions {
        EngineOptions {
            cache_dir: self.cache_dir.clone(),
            cache_max_bytes: self.cache_max_bytes,
            pool_instances: self.pool_instances,
            memory_bytes: self.limits.memory_bytes,
        }
    }
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            max_concurrent_steps: 64,
            faults: Faults::default(),
            cache_dir: Engine::default_cache_dir(),
            cache_max_bytes: crate::compile_cache::configured_max_bytes(),
            observer: Arc::new(Silent),
            limits: Limits::default(),
            grants: Grants::default(),
            pool_instances: Some(crate::compiler::DEFAULT_POOL_INSTANCES),
            per_component: HashMap::new(),
            max_loaded_bytes: 128 << 20,
            links_only: false,
            step_limits: HashMap::new(),
            spans: None,
        }
    }
}

/// Workflow instances alive at once per step that may run at once: more
/// runs wait (holding no instance) for one to end or park. Enough to keep
/// every step permit busy while the other runs are between steps; more
/// only adds memory (each live instance holds its pages) and contention.
/// W4 in process, 1,000 runs at once: 146 MiB peak and 650 ms with every
/// pool slot usable, 44 MiB and 463 ms with 2 per step (BENCHMARKS.md).
const RUNS_PER_STEP: usize = 2;

/// A host process's runtime: engine, store, identity, step limit.
pub struct Runtime {
    engine: Arc<Engine>,
    store: Store,
    owner: Owner,
    permits: Arc<Semaphore>,
    faults: Faults,
    observer: Arc<dyn Observer>,
    limits: Limits,
    grants: Arc<Grants>,
    /// Limits and grants by component digest (see [`RuntimeConfig`]).
    per_component: HashMap<String, (Limits, Arc<Grants>)>,
    /// Workflow instances alive at once: with a pooled engine, what the
    /// pool holds beyond room for steps; more runs wait for a slot.
    workflow_slots: Arc<Semaphore>,
    /// Live step instances, waiting parents included.
    step_slots: Arc<slots::InstanceSlots>,
    /// Workflow and step instances the slots allow at once, shrunk to what
    /// the pool holds of the components this runtime has seen.
    budget: Mutex<usize>,
    /// Runs this process drives right now: a second drive of one of them
    /// is refused.
    active: Arc<Mutex<HashSet<String>>>,
    /// Set by [`Runtime::interrupt`]: drives stop at their next durable call.
    interrupted: Arc<std::sync::atomic::AtomicBool>,
    loaded: loaded::Loaded,
    /// Child workflows: components by name, who drives them.
    family: Arc<family::Family>,
    /// Step names with a concurrency limit across every host.
    step_limits: Arc<HashMap<String, u32>>,
    spans: Option<Arc<dyn durable_core::trace::SpanSink>>,
}

/// Marks a run as driven by this process while alive.
struct Active {
    set: Arc<Mutex<HashSet<String>>>,
    run: String,
    family: Arc<family::Family>,
}

impl Drop for Active {
    fn drop(&mut self) {
        let idle = self
            .set
            .lock()
            .map(|mut s| {
                s.remove(&self.run);
                s.is_empty()
            })
            .unwrap_or(false);
        self.family.drive_ended();
        if idle {
            give_back_free_heap();
        }
    }
}

/// Returns the heap that a burst of drives freed to the OS: the process
/// (a CLI waiting on parked runs, a server between bursts) then holds what
/// it uses, not its high-water mark.
fn give_back_free_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free memory of glibc's heap.
    unsafe {
        libc::malloc_trim(0);
    }
}

impl Runtime {
    /// Builds a runtime on an open store.
    ///
    /// # Errors
    /// When the wasmtime engine cannot be built.
    pub fn new(store: Store, config: RuntimeConfig) -> anyhow::Result<Runtime> {
        let engine = Engine::with_options(config.engine_options())?;
        Ok(Runtime::with_engine(engine, store, config))
    }

    /// Builds a runtime around an engine that already loaded components
    /// (so that a bad component is refused before any database is opened).
    /// `config.cache_dir` is ignored: the engine has its own.
    pub fn with_engine(engine: Engine, store: Store, config: RuntimeConfig) -> Runtime {
        let steps = config.max_concurrent_steps.max(1);
        // Step instances alive at once: twice the running limit (room for
        // parents waiting on their nested steps) plus the reserve for the
        // deepest nesting. The rest of the pool is for workflow instances.
        let mut step_slots = 2 * steps + MAX_NESTING as usize;
        let workflows = match config.pool_instances {
            Some(pool) => {
                let pool = pool as usize;
                step_slots = step_slots.min(pool.saturating_sub(1));
                pool.saturating_sub(step_slots).max(1)
            }
            None => Semaphore::MAX_PERMITS,
        }
        .min(RUNS_PER_STEP * steps);
        let active = Arc::new(Mutex::new(HashSet::new()));
        let workflow_slots = Arc::new(Semaphore::new(workflows));
        Runtime {
            family: Arc::new(family::Family::new(
                active.clone(),
                workflow_slots.clone(),
                config.links_only,
            )),
            workflow_slots,
            step_slots: slots::InstanceSlots::new(step_slots),
            budget: Mutex::new(workflows.saturating_add(step_slots)),
            active,
            interrupted: Arc::new(std::sync::atomic::AtomicBool::new(false)),
            engine: Arc::new(engine),
            store,
            owner: Owner::current(),
            permits: Arc::new(Semaphore::new(steps)),
            faults: config.faults,
            observer: config.observer,
            per_component: config
                .per_component
                .into_iter()
                .map(|(digest, (mut limits, grants))| {
                    // Instances come from one pool: its slot size is the
                    // most any component may have.
                    limits.memory_bytes = limits.memory_bytes.min(config.limits.memory_bytes);
                    (digest, (limits, Arc::new(grants)))
                })
                .collect(),
            limits: config.limits,
            grants: Arc::new(config.grants),
            loaded: loaded::Loaded::new(config.max_loaded_bytes),
            step_limits: Arc::new(config.step_limits),
            spans: config.spans,
        }
    }

    /// Asks every drive of this runtime to stop at its workflow's next
    /// durable call (or at once while its workflow code runs): steps
    /// already running finish and are recorded, the run is released and
    /// stays resumable. For SIGINT and SIGTERM.
    pub fn interrupt(&self) {
        self.interrupted
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// Tells the observer what `run` waits for, if it is waiting (for a
    /// caller that waits on a parked run it did not park itself).
    pub fn announce_waiting(&self, run: &RunRecord) {
        if let Some(what) = waiting_of(run) {
            self.observer.waiting(&run.id, &what);
        }
    }

    /// The ids of the child workflows this runtime's drives start (and, on
    /// a replay, find still open), for whoever drives them: `durable run`
    /// and `durable serve` take this once and drive each id as it comes
    /// ([`Runtime::resume`] when it is due). `None` once taken. While
    /// nobody has taken it, children are left to whoever polls the store
    /// for due runs, and a parent awaiting one parks.
    pub fn child_starts(&self) -> Option<tokio::sync::mpsc::UnboundedReceiver<String>> {
        self.family.take_receiver()
    }

    /// Runs children named `name` with `workflow` (`durable run --link`, a
    /// server's registered workflows).
    pub fn link(&self, name: &str, workflow: &LoadedWorkflow) {
        self.loaded.put(workflow);
        self.fit_pool(workflow);
        self.family.link(name, workflow.as_child(name));
    }

    /// Forgets child `id` handed over by [`Runtime::child_starts`], when its
    /// driver will not take it up (a parent awaiting it then parks).
    pub fn child_not_driven(&self, id: &str) {
        self.family.not_driven(id);
    }

    /// True once [`Runtime::interrupt`] was called.
    pub fn is_interrupted(&self) -> bool {
        self.interrupted.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Gives up runs this process was driving when it abandoned their
    /// drives (after an interrupt's grace), so that a resume takes them at
    /// once.
    pub async fn release(&self, run_ids: &[String]) {
        for id in run_ids {
            if let Err(e) = self.store.release(id, &self.owner).await {
                tracing::warn!(run = %id, error = %e, "could not release the run");
            }
        }
    }

    /// The ids of the runs this process drives right now.
    pub fn active_runs(&self) -> Vec<String> {
        self.active
            .lock()
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Where this runtime's drives crash themselves, and whether they
    /// skip sleeps.
    pub fn faults(&self) -> &Faults {
        &self.faults
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The limits and grants of runs of component `digest`.
    fn policy(&self, digest: &str) -> (Limits, Arc<Grants>) {
        match self.per_component.get(digest) {
            Some((limits, grants)) => (*limits, grants.clone()),
            None => (self.limits, self.grants.clone()),
        }
    }

    /// Loads a component (through the compile cache).
    ///
    /// # Errors
    /// See [`LoadError`].
    pub fn load(&self, name: &str, bytes: Vec<u8>) -> Result<LoadedWorkflow, LoadError> {
        let wf = self.engine.load(name, Arc::new(bytes))?;
        self.loaded.put(&wf);
        self.fit_pool(&wf);
        Ok(wf)
    }

    /// The component with `digest` if this runtime has it loaded (see
    /// [`RuntimeConfig::max_loaded_bytes`]).
    pub fn loaded(&self, digest: &str) -> Option<LoadedWorkflow> {
        self.loaded.get(digest)
    }

    /// Unloads the component with `digest` (drives that hold it keep it
    /// until they end).
    pub fn unload(&self, digest: &str) {
        self.loaded.remove(digest);
    }

    /// How many components are loaded, and the memory they hold in bytes.
    pub fn loaded_usage(&self) -> (usize, usize) {
        self.loaded.usage()
    }

    /// Starts run `run_id` of `workflow` with `input` and drives it to its
    /// end; if the run exists unfinished, resumes it (driven by this
    /// component); if it has finished, returns it as it is.
    ///
    /// # Errors
    /// See [`RunError`]. On any error the run stays resumable.
    ///
    /// # Cancel safety
    /// Dropping the future stops the drive between durable calls; committed
    /// steps stay committed, and the run is resumable once the lease lapses.
    pub async fn start(
        &self,
        workflow: &LoadedWorkflow,
        run_id: &str,
        input: &str,
    ) -> Result<Finished, RunError> {
        self.start_with(workflow, run_id, input, &StartOptions::default())
            .await
    }

    /// [`Runtime::start`] of a run with tags or a trace parent (set when
    /// the run is created; a run that exists keeps its own).
    ///
    /// # Errors
    /// See [`RunError`]; [`RunError::BadInput`] for invalid tags.
    pub async fn start_with(
        &self,
        workflow: &LoadedWorkflow,
        run_id: &str,
        input: &str,
        start_options: &StartOptions,
    ) -> Result<Finished, RunError> {
        let new = self.new_run(workflow, run_id, input, start_options)?;
        let _slot = self.workflow_slot().await?;
        let _active = self.activate(run_id)?;
        match self.store.claim_run(new, &self.owner).await? {
            Claim::Finished(run) if !crate::json::same_json(&run.input, input) => {
                Err(RunError::InputMismatch {
                    run: run_id.to_string(),
                })
            }
            Claim::Finished(run) => Ok(Finished { run, already: true }),
            Claim::Created(run) => {
                self.drive(run, workflow, None, Some(DriveStart::empty()))
                    .await
            }
            Claim::Resumed(run) => {
                if !crate::json::same_json(&run.input, input) {
                    self.store.release(run_id, &self.owner).await?;
                    return Err(RunError::InputMismatch {
                        run: run_id.to_string(),
                    });
                }
                let switch = (run.component_digest != workflow.digest).then(|| ComponentSwitch {
                    digest: workflow.digest.clone(),
                    bytes: workflow.bytes.clone(),
                    forced_from: None,
                });
                self.drive(run, workflow, switch, None).await
            }
        }
    }

    /// A server's start: creates run `run_id` of `workflow` with `input`
    /// and tells `told` as soon as its record is committed (a start is
    /// durable before anyone hears of it), then drives it to its end.
    /// A run that has the id already is told as [`Creation::Existing`] and
    /// left as it is (`Ok(None)`): whoever drives it goes on, and a waiting
    /// run is taken up when due.
    ///
    /// The start is committed before the run waits for room for its
    /// workflow instance, so a burst of starts is answered at the speed of
    /// group commit, not of the runs ahead of it. An error before the
    /// commit drops `told` unsent.
    ///
    /// # Errors
    /// See [`RunError`]. On any error the run stays resumable.
    pub async fn start_new(
        &self,
        workflow: &LoadedWorkflow,
        run_id: &str,
        input: &str,
        start_options: &StartOptions,
        told: tokio::sync::oneshot::Sender<Creation>,
    ) -> Result<Option<Finished>, RunError> {
        let new = self.new_run(workflow, run_id, input, start_options)?;
        let _active = self.activate(run_id)?;
        let creation = self.store.create_run(new, &self.owner).await?;
        let _ = told.send(creation.clone());
        let Creation::Created(run) = creation else {
            return Ok(None);
        };
        let _slot = self.workflow_slot().await?;
        self.drive(run, workflow, None, Some(DriveStart::empty()))
            .await
            .map(Some)
    }

    /// Starts run `run_id` queued in `start.queue`: checked like any start,
    /// and stored; nobody drives it until the queue admits it
    /// ([`Store::admit`](crate::store::Store::admit), which `durable serve`
    /// does). A run that has the id is reported as it is.
    ///
    /// # Errors
    /// See [`RunError`]; [`StoreError::QueueNotFound`] when the queue is
    /// not defined.
    pub async fn enqueue(
        &self,
        workflow: &LoadedWorkflow,
        run_id: &str,
        input: &str,
        start_options: &StartOptions,
        start: crate::store::QueuedStart,
    ) -> Result<crate::store::Creation, RunError> {
        let new = self.new_run(workflow, run_id, input, start_options)?;
        Ok(self.store.create_queued_run(new, start).await?)
    }

    /// Starts run `run_id` debounced (see
    /// [`Store::create_debounced_run`](crate::store::Store::create_debounced_run)):
    /// the workflow's pending run with the same key, if any, is the answer.
    ///
    /// # Errors
    /// See [`RunError`].
    pub async fn debounce(
        &self,
        workflow: &LoadedWorkflow,
        run_id: &str,
        input: &str,
        start_options: &StartOptions,
        debounce: crate::store::Debounce,
        start: Option<crate::store::QueuedStart>,
    ) -> Result<crate::store::Creation, RunError> {
        let new = self.new_run(workflow, run_id, input, start_options)?;
        Ok(self
            .store
            .create_debounced_run(new, debounce, start)
            .await?)
    }

    /// Checks a start's id and input and makes its record (with a fresh
    /// seed).
    fn new_run(
        &self,
        workflow: &LoadedWorkflow,
        run_id: &str,
        input: &str,
        start_options: &StartOptions,
    ) -> Result<NewRun, RunError> {
        validate_run_id(run_id)?;
        durable_core::tags::validate_start(&start_options.tags).map_err(RunError::BadInput)?;
        if let Some(t) = &start_options.trace_parent
            && durable_core::trace::TraceContext::parse(t).is_none()
        {
            return Err(RunError::BadInput(format!(
                "traceparent {t:?} is not a W3C traceparent"
            )));
        }
        if input.len() > self.limits.max_input_bytes {
            return Err(RunError::InputTooLarge {
                bytes: input.len(),
                limit: self.limits.max_input_bytes,
            });
        }
        serde_json::from_str::<serde::de::IgnoredAny>(input)
            .map_err(|e| RunError::BadInput(e.to_string()))?;
        self.fit_pool(workflow);
        let seed = {
            let mut b = [0u8; 8];
            getrandom::fill(&mut b)
                .map_err(|e| RunError::Internal(format!("no OS randomness: {e}")))?;
            u64::from_le_bytes(b) >> 1
        };
        Ok(NewRun {
            id: run_id.to_string(),
            workflow: workflow.name.clone(),
            component_digest: workflow.digest.clone(),
            component: workflow.bytes.clone(),
            input: input.to_string(),
            seed,
            tags: start_options.tags.clone(),
            trace_parent: start_options.trace_parent.clone(),
        })
    }

    /// Resumes run `run_id` with the component it was last driven with.
    ///
    /// # Errors
    /// See [`RunError`]; [`StoreError::RunNotFound`] when there is no such run.
    pub async fn resume(&self, run_id: &str) -> Result<Finished, RunError> {
        let _slot = self.workflow_slot().await?;
        let _active = self.activate(run_id)?;
        // Load (maybe compile, seconds for a large guest) before claiming,
        // so that the lease is not running out meanwhile.
        let seen = self
            .store
            .run(run_id)
            .await?
            .ok_or_else(|| StoreError::RunNotFound(run_id.to_string()))?;
        if !seen.status.is_open() {
            return Ok(Finished {
                run: seen,
                already: true,
            });
        }
        let mut workflow = self.workflow_for(&seen).await?;
        let (run, start) = match self.claim_for_drive(run_id).await? {
            Ok(claimed) => claimed,
            Err(finished) => return Ok(finished),
        };
        if run.component_digest != workflow.digest {
            // Switched by another process between our read and the claim.
            workflow = match self.workflow_for(&run).await {
                Ok(w) => w,
                Err(e) => {
                    self.store.release(run_id, &self.owner).await?;
                    return Err(e);
                }
            };
        }
        self.drive(run, &workflow, None, start).await
    }

    /// Claims unfinished run `run_id` for a drive of this process: the run
    /// and what its drive starts from, or (`Err`) the run as it ended.
    async fn claim_for_drive(
        &self,
        run_id: &str,
    ) -> Result<Result<(RunRecord, Option<DriveStart>), Finished>, RunError> {
        let (claim, start) = self
            .store
            .claim_existing_for_drive(run_id, &self.owner)
            .await?;
        Ok(match claim {
            Claim::Finished(run) => Err(Finished { run, already: true }),
            Claim::Created(run) | Claim::Resumed(run) => Ok((run, start)),
        })
    }

    /// The loaded component of `run`, compiled on a blocking thread if no
    /// drive of this process loaded it yet.
    async fn workflow_for(&self, run: &RunRecord) -> Result<LoadedWorkflow, RunError> {
        if let Some(w) = self.loaded.get(&run.component_digest) {
            return Ok(w);
        }
        let bytes = self
            .store
            .component(&run.component_digest)
            .await?
            .ok_or_else(|| {
                StoreError::Corrupt(format!(
                    "component {} of run {} is missing",
                    run.component_digest, run.id
                ))
            })?;
        let (engine, name) = (self.engine.clone(), run.workflow.clone());
        let wf = tokio::task::spawn_blocking(move || engine.load(&name, Arc::new(bytes)))
            .await
            .map_err(|e| RunError::Internal(format!("compiling panicked: {e}")))??;
        self.loaded.put(&wf);
        release_freed_memory();
        Ok(wf)
    }

    /// Makes the slots fit what the pool holds of `workflow`'s instances:
    /// a component with more tables or memories than one slot's share
    /// would otherwise exhaust the pool with slots to spare, and waiting
    /// parents could then hold what their children need.
    fn fit_pool(&self, workflow: &LoadedWorkflow) {
        let Some(capacity) = workflow.pool_capacity else {
            return;
        };
        let Ok(mut budget) = self.budget.lock() else {
            return;
        };
        if capacity >= *budget {
            return;
        }
        let mut shortfall = *budget - capacity;
        // Workflow instances first (one is enough to make progress), then
        // step slots down to the deepest chain's reserve.
        let spare = self.workflow_slots.available_permits().saturating_sub(1);
        let forgotten = self.workflow_slots.forget_permits(shortfall.min(spare));
        shortfall -= forgotten;
        let shrunk = self.step_slots.shrink(shortfall);
        shortfall -= shrunk;
        *budget -= forgotten + shrunk;
        tracing::debug!(
            component = %workflow.name,
            capacity,
            workflows_less = forgotten,
            steps_less = shrunk,
            "fitted instance slots to the pool"
        );
        if shortfall > 0 {
            tracing::warn!(
                component = %workflow.name,
                capacity,
                "the instance pool holds fewer instances of this component than the slots allow; \
                 instantiations may wait for capacity"
            );
        }
    }

    /// Registers `run_id` as driven by this process.
    fn activate(&self, run_id: &str) -> Result<Active, RunError> {
        let mut set = self
            .active
            .lock()
            .map_err(|_| RunError::Internal("the drive registry was poisoned".into()))?;
        if !set.insert(run_id.to_string()) {
            return Err(RunError::AlreadyDriving {
                run: run_id.to_string(),
            });
        }
        drop(set);
        self.family.drive_started(run_id);
        Ok(Active {
            set: self.active.clone(),
            run: run_id.to_string(),
            family: self.family.clone(),
        })
    }

    /// Waits for room for one more workflow instance.
    async fn workflow_slot(&self) -> Result<tokio::sync::OwnedSemaphorePermit, RunError> {
        self.workflow_slots
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| RunError::Internal("the workflow limiter was closed".into()))
    }

    /// Ids of the runs that `resume` with no arguments would take.
    pub async fn resumable(&self) -> Result<Vec<String>, RunError> {
        Ok(self.store.resumable_runs().await?)
    }

    /// Drives a claimed run; `start` is what it starts from, if the claim
    /// read it already.
    async fn drive(
        &self,
        run: RunRecord,
        workflow: &LoadedWorkflow,
        switch: Option<ComponentSwitch>,
        start: Option<DriveStart>,
    ) -> Result<Finished, RunError> {
        let run_id = run.id.clone();
        let span = tracing::info_span!("run", run = %run_id, drive = run.drives);
        let trace = self
            .spans
            .as_ref()
            .map(|sink| Arc::new(drive::spans::DriveTrace::start(sink.clone(), &run)));
        let result = self
            .drive_owned(run, workflow, switch, start, trace.clone())
            .instrument(span)
            .await;
        if let Some(trace) = trace {
            match &result {
                Ok(done) => trace.end(done.run.status.as_str(), done.run.error.clone()),
                Err(e) => trace.end("error", Some(crate::errors::chain(e))),
            }
        }
        if result.is_err() {
            // Leave the run for `resume` at once rather than when the lease
            // lapses. A failure to release only delays that.
            let _ = self.store.release(&run_id, &self.owner).await;
        }
        result
    }

    async fn drive_owned(
        &self,
        run: RunRecord,
        workflow: &LoadedWorkflow,
        switch: Option<ComponentSwitch>,
        start: Option<DriveStart>,
        trace: Option<Arc<drive::spans::DriveTrace>>,
    ) -> Result<Finished, RunError> {
        let start = match start {
            Some(s) => s,
            None => self.store.drive_start(&run.id).await?,
        };
        let history = History::new(start.history);
        let recorded_bytes = start.recorded_bytes;
        let (limits, grants) = self.policy(&workflow.digest);
        let prior_attempts = start.attempt_counts.into_iter().collect();
        let drive = Arc::new(Drive::new(DriveSetup {
            run_id: run.id.clone(),
            instances: Arc::new(step::Instances(workflow.pre.clone())),
            store: self.store.clone(),
            owner: self.owner.clone(),
            history,
            recorded_bytes,
            prior_attempts,
            permits: self.permits.clone(),
            slots: self.step_slots.clone(),
            interrupted: self.interrupted.clone(),
            observer: self.observer.clone(),
            faults: self.faults.clone(),
            replay_only: false,
            limits,
            grants,
            switch,
            number: run.drives,
            family: self.family.clone(),
            component: workflow.as_child(&run.workflow),
            step_limits: self.step_limits.clone(),
            trace,
        }));
        tracing::debug!(run = %run.id, drive = run.drives, "drive starts");
        let lease = tokio::spawn(renew_lease(drive.clone()));
        // A switch forced over a divergence: the workflow's records from
        // the divergence on are moved aside, so the new code runs from there.
        if let Some(from) = drive.pending_forced_from()
            && let Err(e) = drive.supersede_for_switch(from).await
        {
            lease.abort();
            return Err(e);
        }
        let (outcome, output) = run_workflow(&drive, &workflow.pre, &run).await;
        lease.abort();
        let outcome = match drive.take_fatal() {
            // A limit ends the run for good: it would be hit again.
            Some(
                e @ (RunError::HistoryLimit { .. }
                | RunError::WorkflowBusy { .. }
                | RunError::HttpInWorkflow { .. }),
            ) => Ok((Err(cap_message(e.to_string())), None)),
            Some(RunError::Parked { .. }) => {
                // Parked in the transaction that recorded the wait; what
                // the workflow printed on this drive is dropped with the
                // instance (it prints again on the replay).
                return self.finished(&run.id).await;
            }
            Some(RunError::Cancelled { .. }) => {
                let run = self
                    .store
                    .finish_run(
                        &run.id,
                        &self.owner,
                        drive.number,
                        RunEnd::Cancelled,
                        drive.take_switch(),
                        output,
                    )
                    .await?;
                return Ok(Finished {
                    run,
                    already: false,
                });
            }
            Some(fatal) => return Err(fatal),
            None => outcome.map(|(result, calls)| (result, Some(calls))),
        };
        if let Ok((_, Some(calls))) = &outcome {
            // The workflow ended: every call its history holds must have
            // been made again, else the code changed under the run.
            drive.check_end(*calls)?;
        }
        let outcome = outcome.map(|(result, _)| result);
        let result = match outcome {
            Ok(result) => end_of(result, &drive.limits),
            Err(WorkflowFailure::Trap(message, _)) => {
                Err(format!("the workflow trapped: {message}"))
            }
            Err(WorkflowFailure::Instantiate(message)) => {
                return Err(RunError::Instantiate(message));
            }
        };
        let end = match result {
            Ok(out) => RunEnd::Succeeded(out),
            Err(e) => RunEnd::Failed(e),
        };
        let run = self
            .store
            .finish_run(
                &run.id,
                &self.owner,
                drive.number,
                end,
                drive.take_switch(),
                output,
            )
            .await?;
        drive.crash_if_asked("$end");
        Ok(Finished {
            run,
            already: false,
        })
    }

    async fn finished(&self, run_id: &str) -> Result<Finished, RunError> {
        let run = self
            .store
            .run(run_id)
            .await?
            .ok_or_else(|| StoreError::RunNotFound(run_id.to_string()))?;
        // A parked run may be running again already, taken up by another
        // process between the park and this read: the caller sees that.
        if let Some(what) = waiting_of(&run) {
            self.observer.waiting(run_id, &what);
        }
        Ok(Finished {
            run,
            already: false,
        })
    }
}

/// What a waiting run waits for, from its record.
fn waiting_of(run: &RunRecord) -> Option<Waiting> {
    if run.status != RunStatus::Waiting {
        return None;
    }
    Some(match (&run.wait_event, run.wake_at_ms) {
        (Some(name), _) => Waiting::Event {
            name: name.clone(),
            deadline_ms: run.wake_at_ms,
        },
        // A wait on handles says what it waits for in words.
        (None, wake_at_ms)
            if run
                .waiting_for
                .as_deref()
                .is_some_and(|w| w.starts_with("any of")) =>
        {
            Waiting::Handles {
                what: run.waiting_for.clone().unwrap_or_default(),
                wake_at_ms,
            }
        }
        (None, wake_at) => Waiting::Until(wake_at.unwrap_or(0)),
    })
}
