//! The wasmtime side of loading a workflow: one wasmtime engine per host
//! process (its configuration, the instance pool, the epoch ticker) and the
//! on-disk compile cache. Linking a compiled component against durable's
//! world is the runner's (`runner/loader.rs`), which owns the host state the
//! linker is typed with: this module knows nothing of runs.
//!
//! **Invariant:** a component is compiled at most once per content digest
//! and engine configuration on a machine; later starts deserialize it.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::component::Component;

use crate::history::sha256_hex;

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
            pool_instances: Some(DEFAULT_POOL_INSTANCES),
            memory_bytes: 256 << 20,
        }
    }
}

/// The wasmtime engine and compile cache of one host process.
pub struct Compiler {
    engine: wasmtime::Engine,
    cache_dir: Option<PathBuf>,
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
            cache_dir: options.cache_dir,
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
        let cached = self
            .cache_dir
            .as_ref()
            .filter(|d| private_dir(d))
            .map(|d| d.join(format!("{digest}-{:016x}.cwasm", self.config_key)));
        if let Some(path) = &cached
            && path.exists()
        {
            match verify(path) {
                // SAFETY: the file is what `serialize` of this same wasmtime
                // version and configuration (both are in its name) wrote: its
                // SHA-256 matches the one recorded when it was written, in a
                // directory only this user can write (checked above), which
                // no grant may expose. wasmtime checks the header again; we
                // recompile if it refuses.
                Ok(()) => match unsafe { Component::deserialize_file(&self.engine, path) } {
                    Ok(c) => return Ok((c, CompileSource::Cache)),
                    Err(e) => {
                        tracing::warn!(path = %path.display(), error = %e, "ignoring unusable compile cache entry")
                    }
                },
                Err(why) => {
                    tracing::warn!(path = %path.display(), "ignoring compile cache entry: {why}; compiling again")
                }
            }
        }
        let component =
            Component::new(&self.engine, bytes).map_err(|source| LoadError::Compile {
                name: name.to_string(),
                source,
            })?;
        if let Some(path) = &cached
            && let Err(e) = write_atomically(path, &component)
        {
            tracing::warn!(path = %path.display(), error = %e, "could not write the compile cache");
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

/// The file next to a cache entry that records the entry's SHA-256.
fn digest_path(path: &Path) -> PathBuf {
    path.with_extension("cwasm.sha256")
}

/// Checks a cache entry against its recorded SHA-256 (streamed, so a large
/// entry is not held in memory), so a corrupted or tampered entry is never
/// handed to `deserialize`.
fn verify(path: &Path) -> Result<(), String> {
    use sha2::{Digest, Sha256};
    use std::io::Read;
    let expected = std::fs::read_to_string(digest_path(path))
        .map_err(|e| format!("its digest cannot be read ({e})"))?;
    let mut file = std::fs::File::open(path).map_err(|e| format!("it cannot be read ({e})"))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 256 << 10];
    loop {
        let n = file
            .read(&mut buf)
            .map_err(|e| format!("it cannot be read ({e})"))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    let actual: String = hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    if actual != expected.trim() {
        return Err("its content does not match its recorded digest".into());
    }
    Ok(())
}

/// Creates the cache directory private to this user (mode 0700), or checks
/// that an existing one is: owned by this user, writable by nobody else.
/// A directory that is not is not used (every load compiles).
fn private_dir(dir: &Path) -> bool {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
    if !dir.exists()
        && let Err(e) = std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
    {
        tracing::warn!(dir = %dir.display(), error = %e, "cannot create the compile cache; compiling every time");
        return false;
    }
    let Ok(meta) = std::fs::metadata(dir) else {
        return false;
    };
    // SAFETY: geteuid cannot fail.
    let me = unsafe { libc::geteuid() };
    if meta.uid() != me {
        tracing::warn!(dir = %dir.display(), "the compile cache belongs to another user; compiling every time");
        return false;
    }
    if meta.mode() & 0o077 != 0
        && let Err(e) = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
    {
        tracing::warn!(dir = %dir.display(), error = %e, "cannot make the compile cache private; compiling every time");
        return false;
    }
    true
}

fn write_atomically(path: &Path, component: &Component) -> anyhow::Result<()> {
    let bytes = component.serialize()?;
    let dir = path
        .parent()
        .ok_or_else(|| anyhow::anyhow!("cache path {} has no directory", path.display()))?;
    // A unique temporary name, then rename: concurrent hosts never see a
    // half-written file. The digest goes last: an entry without its digest
    // is compiled again.
    let put = |target: &Path, content: &[u8]| -> anyhow::Result<()> {
        let tmp = dir.join(format!(
            ".{}.{}.{:08x}.tmp",
            std::process::id(),
            crate::store::now_ms(),
            rand_u32()
        ));
        std::fs::write(&tmp, content)?;
        std::fs::rename(&tmp, target).inspect_err(|_| {
            let _ = std::fs::remove_file(&tmp);
        })?;
        Ok(())
    };
    put(path, &bytes)?;
    put(&digest_path(path), sha256_hex(&bytes).as_bytes())?;
    Ok(())
}

fn rand_u32() -> u32 {
    let mut b = [0u8; 4];
    let _ = getrandom::fill(&mut b);
    u32::from_le_bytes(b)
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
