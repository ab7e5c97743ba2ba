//! The wasmtime side of loading a workflow: one wasmtime engine per host
//! process (its configuration, the instance pool, the epoch ticker) and the
//! on-disk compile cache. Linking a compiled component against durable's
//! world is the runner's (`runner/engine.rs`), which owns the host state the
//! linker is typed with: this module knows nothing of runs.
//!
//! **Invariant:** a component is compiled at most once per content digest
//! and engine configuration on a machine; later starts deserialize it.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::component::Component;

use crate::compile_cache::{self, CompileCache};
use crate::hash::sha256_hex;

/// Why a component could not be loaded. Nothing is written to the store
/// before a component loads.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The bytes are not WebAssembly at all.
    #[error("{name} is not a WebAssembly file (it does not start with \\0asm)")]
    NotWasm {
        /// What was loaded.
        name: String,
    },
    /// A core module where a component is needed.
    #[error(
        "{name} is a core WebAssembly module, not a component; build the guest for \
         wasm32-wasip2 (cargo build --target wasm32-wasip2) or wrap it with wasm-tools component new"
    )]
    CoreModule {
        /// What was loaded.
        name: String,
    },
    /// The component did not validate or compile.
    #[error("{name} could not be compiled")]
    Compile {
        /// What was loaded.
        name: String,
        /// Wasmtime's reason.
        #[source]
        source: wasmtime::Error,
    },
    /// The component was built against a version of the WIT package
    /// `durable:workflow` that this host does not implement (a newer one).
    #[error(
        "{name} was built against durable:workflow@{found}, but this durable implements \
         {supported}: upgrade durable, or build the guest with the SDK and WIT of this \
         durable (`durable wit`)"
    )]
    Version {
        /// What was loaded.
        name: String,
        /// The version the component imports or exports.
        found: String,
        /// The versions this host implements, comma separated.
        supported: String,
    },
    /// The component is not of world `durable:workflow/workflow`.
    #[error("{name} is not a durable workflow component (world durable:workflow/workflow)")]
    World {
        /// What was loaded.
        name: String,
        /// Wasmtime's reason, naming the import or export.
        #[source]
        source: wasmtime::Error,
    },
}

/// How a component was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompileSource {
    /// Deserialized from the compile cache.
    Cache,
    /// Compiled now (and stored in the cache if there is one).
    Compiled,
}

/// A compiled component, not linked yet.
#[derive(Clone)]
pub struct Compiled {
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
    /// The compiled component.
    pub component: Component,
}

/// How a [`Compiler`] (and the runner's `Engine`) is built.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// Compile cache directory; `None` compiles every time.
    pub cache_dir: Option<PathBuf>,
    /// Most bytes the compile cache keeps (least recently used entries are
    /// removed past it); see [`crate::compile_cache::max_bytes_from_env`].
    pub cache_max_bytes: u64,
    /// Pool this many component instances (workflow and step instances
    /// alive at once); `None` allocates each instance on demand.
    pub pool_instances: Option<u32>,
    /// Most linear memory an instance may have (the pool's slot size).
    pub memory_bytes: usize,
}

/// Default size of the instance pool.
pub const DEFAULT_POOL_INSTANCES: u32 = 1024;

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            cache_dir: Compiler::default_cache_dir(),
            cache_max_bytes: compile_cache::configured_max_bytes(),
            pool_instances: Some(DEFAULT_POOL_INSTANCES),
            memory_bytes: 256 << 20,
        }
    }
}

/// The wasmtime engine and compile cache of one host process.
pub struct Compiler {
    engine: wasmtime::Engine,
    cache: Option<CompileCache>,
    config_key: u64,
    pool: Option<PoolTotals>,
}

/// What the instance pool holds in all.
#[derive(Debug, Clone, Copy)]
struct PoolTotals {
    instances: usize,
    tables: usize,
    memories: usize,
}

/// Tables and memories a pooled component may have at most (its
/// instances' needs, when wasmtime cannot tell them statically).
const MAX_TABLES_PER_COMPONENT: u32 = 8;
const MAX_MEMORIES_PER_COMPONENT: u32 = 4;

impl Compiler {
    /// Builds the wasmtime engine with `options`.
    ///
    /// # Errors
    /// When wasmtime rejects the configuration (for example, a pool larger
    /// than the address space allows).
    pub fn with_options(options: EngineOptions) -> anyhow::Result<Compiler> {
        let mut config = wasmtime::Config::new();
        config.wasm_component_model(true);
        if let Some(instances) = options.pool_instances {
            // Instances come from a pool of preallocated slots: no mmap and
            // munmap (and no TLB shootdowns across cores) per instance.
            let mut pool = wasmtime::PoolingAllocationConfig::new();
            pool.total_component_instances(instances)
                .total_core_instances(instances.saturating_mul(8))
                .total_memories(instances)
                // Components have several core instances with tables each
                // (two per instance measured too few: a full table pool
                // under live slots).
                .total_tables(instances.saturating_mul(4))
                .total_stacks(instances)
                .max_memory_size(options.memory_bytes)
                .max_core_instances_per_component(32)
                .max_memories_per_component(MAX_MEMORIES_PER_COMPONENT)
                .max_tables_per_component(MAX_TABLES_PER_COMPONENT)
                // Keep nothing of a freed memory resident: a burst of
                // instances would otherwise leave 64 KiB resident in each
                // slot it touched (W5: 60 MiB for 10,000 runs that then
                // sleep), and faulting a few pages in again costs less.
                .linear_memory_keep_resident(0)
                // Return freed memory to the OS in batches: one madvise for
                // many instances instead of one each.
                .decommit_batch_size(64);
            config.allocation_strategy(wasmtime::InstanceAllocationStrategy::Pooling(pool));
        }
        config.cranelift_opt_level(wasmtime::OptLevel::Speed);
        // Epochs let a running guest be interrupted: stores yield to tokio
        // at every tick, which is what makes step timeouts and fairness
        // between parallel steps work for guests that never call the host.
        config.epoch_interruption(true);
        let engine = wasmtime::Engine::new(&config)?;
        start_epoch_ticker(&engine)?;
        let mut h = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut h);
        env!("CARGO_PKG_VERSION").hash(&mut h);
        Ok(Compiler {
            engine,
            cache: options
                .cache_dir
                .map(|dir| CompileCache::new(dir, options.cache_max_bytes)),
            config_key: h.finish(),
            pool: options.pool_instances.map(|i| PoolTotals {
                instances: i as usize,
                tables: i as usize * 4,
                memories: i as usize,
            }),
        })
    }

    /// The default compile cache: `$DURABLE_CACHE_DIR`, else
    /// `$XDG_CACHE_HOME/durable`, else `~/.cache/durable`.
    pub fn default_cache_dir() -> Option<PathBuf> {
        if let Some(d) = std::env::var_os("DURABLE_CACHE_DIR") {
            return Some(PathBuf::from(d));
        }
        if let Some(d) = std::env::var_os("XDG_CACHE_HOME") {
            return Some(PathBuf::from(d).join("durable"));
        }
        std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache").join("durable"))
    }

    /// The wasmtime engine.
    pub fn wasmtime(&self) -> &wasmtime::Engine {
        &self.engine
    }

    /// Compiles a component from `bytes` (or takes it from the cache),
    /// named `name` in messages.
    ///
    /// # Errors
    /// See [`LoadError`].
    pub fn compile(&self, name: &str, bytes: Arc<Vec<u8>>) -> Result<Compiled, LoadError> {
        check_header(name, &bytes)?;
        let digest = sha256_hex(&bytes);
        let started = Instant::now();
        let (component, source) = self.compile_cached(name, &digest, &bytes)?;
        let load_time = started.elapsed();
        let pool_capacity = self.pool.map(|p| {
            let (tables, memories) = component.resources_required().map_or(
                (MAX_TABLES_PER_COMPONENT, MAX_MEMORIES_PER_COMPONENT),
                |r| (r.num_tables, r.num_memories),
            );
            p.instances
                .min(p.tables / tables.max(1) as usize)
                .min(p.memories / memories.max(1) as usize)
        });
        Ok(Compiled {
            name: workflow_name(name),
            digest,
            bytes,
            source,
            load_time,
            pool_capacity,
            component,
        })
    }

    fn compile_cached(
        &self,
        name: &str,
        digest: &str,
        bytes: &[u8],
    ) -> Result<(Component, CompileSource), LoadError> {
        if let Some(component) = self
            .cache
            .as_ref()
            .and_then(|c| c.load(&self.engine, digest, self.config_key))
        {
            return Ok((component, CompileSource::Cache));
        }
        let component =
            Component::new(&self.engine, bytes).map_err(|source| LoadError::Compile {
                name: name.to_string(),
                source,
            })?;
        if let Some(cache) = &self.cache {
            cache.store(digest, self.config_key, &component);
        }
        Ok((component, CompileSource::Compiled))
    }
}

/// How often the epoch advances; the granularity of timeouts and yields.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Advances the engine's epoch every [`EPOCH_TICK`] on a thread that ends
/// when the engine is dropped.
fn start_epoch_ticker(engine: &wasmtime::Engine) -> anyhow::Result<()> {
    let weak = engine.weak();
    std::thread::Builder::new()
        .name("durable-epoch".into())
        .spawn(move || {
            loop {
                std::thread::sleep(EPOCH_TICK);
                match weak.upgrade() {
                    Some(engine) => engine.increment_epoch(),
                    None => return,
                }
            }
        })?;
    Ok(())
}

fn check_header(name: &str, bytes: &[u8]) -> Result<(), LoadError> {
    if bytes.len() < 8 || &bytes[..4] != b"\0asm" {
        return Err(LoadError::NotWasm {
            name: name.to_string(),
        });
    }
    // Bytes 4..8: version 1 and layer 0 for a core module; the component
    // encoding uses layer 1.
    if bytes[4..8] == [1, 0, 0, 0] {
        return Err(LoadError::CoreModule {
            name: name.to_string(),
        });
    }
    Ok(())
}

/// The workflow name for a component loaded from `name`: the file stem.
fn workflow_name(name: &str) -> String {
    Path::new(name)
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| name.to_string())
}
