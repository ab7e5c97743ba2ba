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
use super::bindings::WorkflowPre;
use super::bindings::durable::workflow as durable_bindings;
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
    pub(crate) pre: WorkflowPre<HostState>,
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
        Ok(Engine { compiler, linker })
    }

    /// The default compile cache: `$DURABLE_CACHE_DIR`, else
    /// `$XDG_CACHE_HOME/durable`, else `~/.cache/durable`.
    pub fn default_cache_dir() -> Option<PathBuf> {
        Compiler::default_cache_dir()
    }

    /// Loads a component from `bytes`, named `name` in messages: compiled
    /// (or taken from the cache) and linked.
    ///
    /// # Errors
    /// See [`LoadError`].
    pub fn load(&self, name: &str, bytes: Arc<Vec<u8>>) -> Result<LoadedWorkflow, LoadError> {
        let compiled = self.compiler.compile(name, bytes)?;
        let world = |source| LoadError::World {
            name: name.to_string(),
            source,
        };
        let instance_pre = self
            .linker
            .instantiate_pre(&compiled.component)
            .map_err(world)?;
        let pre = WorkflowPre::new(instance_pre).map_err(world)?;
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
