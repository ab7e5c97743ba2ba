//! Linking compiled components against durable's world: the `Engine` of a
//! host process is the [`Compiler`] (wasmtime engine, compile cache) plus a
//! `Linker` typed with the runner's [`HostState`], and a [`LoadedWorkflow`]
//! is a compiled component with the pre-linked `InstancePre` that every
//! workflow and step instance is made from.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use wasmtime::component::{HasSelf, Linker};

use super::HostState;
use super::bindings::durable::workflow as durable_bindings;
use super::bindings::durable::workflow::types::Failure;
use super::bindings::v1::durable::workflow as durable_bindings_v1;
use super::bindings::{Workflow, WorkflowPre, v1};
use crate::compiler::{CompileSource, Compiler, EngineOptions, LoadError};

/// The wasmtime engine, linker and compile cache of one host process.
pub struct Engine {
    compiler: Compiler,
    linker: Linker<HostState>,
}

/// A component ready to instantiate.
#[derive(Clone)]
pub struct LoadedWorkflow {
    /// The workflow's name (the file stem it was loaded from).
    pub name: String,
    /// SHA-256 of the component bytes.
    pub digest: String,
    /// The component bytes (stored with runs so `resume` needs no file).
    pub bytes: Arc<Vec<u8>>,
    /// Whether the cache answered.
    pub source: CompileSource,
    /// How long compiling or deserializing took.
    pub load_time: Duration,
    /// How many instances of this component the instance pool holds at
    /// once (its tables and memories counted); `None` without a pool.
    pub pool_capacity: Option<usize>,
    /// Memory it holds while loaded: its bytes and its compiled code.
    pub memory_bytes: usize,
    pub(crate) pre: Pre,
}

/// A component pre-linked against the version of the contract it was built
/// for.
#[derive(Clone)]
pub(crate) enum Pre {
    /// `durable:workflow@0.2.0`.
    Current(WorkflowPre<HostState>),
    /// `durable:workflow@0.1.0`.
    V1(v1::WorkflowPre<HostState>),
}

/// An instance of a [`Pre`].
pub(crate) enum Instance {
    Current(Workflow),
    V1(v1::Workflow),
}

impl Pre {
    /// The wasmtime engine it belongs to.
    pub(crate) fn engine(&self) -> &wasmtime::Engine {
        match self {
            Pre::Current(p) => p.engine(),
            Pre::V1(p) => p.engine(),
        }
    }

    /// Instantiates it in `store`.
    pub(crate) async fn instantiate_async(
        &self,
        store: &mut wasmtime::Store<HostState>,
    ) -> wasmtime::Result<Instance> {
        Ok(match self {
            Pre::Current(p) => Instance::Current(p.instantiate_async(store).await?),
            Pre::V1(p) => Instance::V1(p.instantiate_async(store).await?),
        })
    }
}

impl Instance {
    /// Calls the workflow's `run`.
    pub(crate) async fn call_run(
        &self,
        store: &mut wasmtime::Store<HostState>,
        input: &str,
    ) -> wasmtime::Result<Result<String, String>> {
        // The bindings take `&String`.
        let input = input.to_string();
        match self {
            Instance::Current(i) => i.call_run(store, &input).await,
            Instance::V1(i) => i.call_run(store, &input).await,
        }
    }

    /// Calls `steps.run-step`.
    pub(crate) async fn call_run_step(
        &self,
        store: &mut wasmtime::Store<HostState>,
        name: &str,
        input: &str,
    ) -> wasmtime::Result<Result<String, Failure>> {
        let (name, input) = (name.to_string(), input.to_string());
        match self {
            Instance::Current(i) => {
                i.durable_workflow_steps()
                    .call_run_step(store, &name, &input)
                    .await
            }
            Instance::V1(i) => {
                i.durable_workflow_steps()
                    .call_run_step(store, &name, &input)
                    .await
            }
        }
    }
}

impl LoadedWorkflow {
    /// This component as what a child workflow named `workflow` runs.
    pub(crate) fn as_child(&self, workflow: &str) -> super::ChildComponent {
        super::ChildComponent {
            workflow: workflow.to_string(),
            digest: self.digest.clone(),
            bytes: self.bytes.clone(),
        }
    }
}

impl Engine {
    /// Builds the engine. `cache_dir` holds compiled components; `None`
    /// compiles every time.
    ///
    /// # Errors
    /// When wasmtime rejects the configuration or linking WASI fails.
    pub fn new(cache_dir: Option<PathBuf>) -> anyhow::Result<Engine> {
        Engine::with_options(EngineOptions {
            cache_dir,
            ..EngineOptions::default()
        })
    }

    /// Builds the engine with `options`.
    ///
    /// # Errors
    /// When wasmtime rejects the configuration (for example, a pool larger
    /// than the address space allows) or linking WASI fails.
    pub fn with_options(options: EngineOptions) -> anyhow::Result<Engine> {
        let compiler = Compiler::with_options(options)?;
        let mut linker = Linker::new(compiler.wasmtime());
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        super::file_writes::add_to_linker(&mut linker)?;
        // Every component may import wasi:http; who may use it is decided
        // per request (`crate::http`): only steps, only allowed hosts.
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
        durable_bindings::types::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s)?;
        durable_bindings::durable::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s)?;
        // Components built against 0.1.0 import its interface.
        durable_bindings_v1::durable::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s)?;
        Ok(Engine { compiler, linker })
    }

    /// The default compile cache: `$DURABLE_CACHE_DIR`, else
    /// `$XDG_CACHE_HOME/durable`, else `~/.cache/durable`.
    pub fn default_cache_dir() -> Option<PathBuf> {
        Compiler::default_cache_dir()
    }

    /// The versions of `durable:workflow` this host implements, oldest first.
    pub const WIT_VERSIONS: [&str; 2] = ["0.1.0", "0.2.0"];

    /// Loads a component from `bytes`, named `name` in messages: compiled
    /// (or taken from the cache) and linked.
    ///
    /// # Errors
    /// See [`LoadError`].
    pub fn load(&self, name: &str, bytes: Arc<Vec<u8>>) -> Result<LoadedWorkflow, LoadError> {
        let compiled = self.compiler.compile(name, bytes)?;
        check_version(name, &compiled.component, self.compiler.wasmtime())?;
        let world = |source| LoadError::World {
            name: name.to_string(),
            source,
        };
        let instance_pre = self
            .linker
            .instantiate_pre(&compiled.component)
            .map_err(world)?;
        // The current contract first; a component of 0.1.0 exports that
        // version's `steps`, which is all that tells them apart.
        let pre = match WorkflowPre::new(instance_pre.clone()) {
            Ok(pre) => Pre::Current(pre),
            Err(current) => match v1::WorkflowPre::new(instance_pre) {
                Ok(pre) => Pre::V1(pre),
                Err(_) => return Err(world(current)),
            },
        };
        let code = compiled.component.image_range();
        let memory_bytes = compiled.bytes.len() + (code.end as usize - code.start as usize);
        Ok(LoadedWorkflow {
            memory_bytes,
            name: compiled.name,
            digest: compiled.digest,
            bytes: compiled.bytes,
            source: compiled.source,
            load_time: compiled.load_time,
            pool_capacity: compiled.pool_capacity,
            pre,
        })
    }
}

/// Fails with [`LoadError::Version`] when `component` imports or exports an
/// interface of `durable:workflow` at a version this host does not
/// implement: otherwise linking would only say that an import is missing.
fn check_version(
    name: &str,
    component: &wasmtime::component::Component,
    engine: &wasmtime::Engine,
) -> Result<(), LoadError> {
    let ty = component.component_type();
    let names = ty
        .imports(engine)
        .map(|(n, _)| n)
        .chain(ty.exports(engine).map(|(n, _)| n));
    for item in names {
        let Some(version) = durable_version(item) else {
            continue;
        };
        if !Engine::WIT_VERSIONS.contains(&version) {
            return Err(LoadError::Version {
                name: name.to_string(),
                found: version.to_string(),
                supported: Engine::WIT_VERSIONS.join(" and "),
            });
        }
    }
    Ok(())
}

/// `X` of an item named `durable:workflow/INTERFACE@X`.
fn durable_version(item: &str) -> Option<&str> {
    let rest = item.strip_prefix("durable:workflow/")?;
    rest.split_once('@').map(|(_, version)| version)
}
