//! The on-disk compile cache: compiled components (`.cwasm`) keyed by the
//! component's digest and the engine's configuration, so that a later start
//! deserializes instead of compiling.
//!
//! **Invariants:**
//! - an entry is handed to wasmtime only if its SHA-256 matches the one
//!   recorded beside it, in a directory owned by this user and writable by
//!   nobody else (deserializing runs the machine code inside);
//! - the directory holds at most its byte budget (`DURABLE_CACHE_MAX_MB`,
//!   1024 MiB by default) after every write: the least recently used entries
//!   go first. Every new component digest (each rebuild of a guest) and every
//!   new engine configuration (each durable version) adds an entry, so a cache
//!   without a bound fills the disk of anyone who builds often.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use wasmtime::component::Component;

use crate::hash::sha256_hex;

/// The byte budget when `DURABLE_CACHE_MAX_MB` is not set: 1 GiB, about
/// 25 compiled Python components or hundreds of Rust ones.
pub const DEFAULT_MAX_BYTES: u64 = 1 << 30;

/// A temporary file older than this was left by a writer that died.
const STALE_TEMP: Duration = Duration::from_secs(3600);

/// The byte budget of the cache: `DURABLE_CACHE_MAX_MB` (mebibytes), else
/// [`DEFAULT_MAX_BYTES`].
///
/// # Errors
/// When the variable is set but is not a whole number of mebibytes.
pub fn max_bytes_from_env() -> Result<u64, String> {
    parse_max_mb(std::env::var_os("DURABLE_CACHE_MAX_MB").as_deref())
}

fn parse_max_mb(value: Option<&std::ffi::OsStr>) -> Result<u64, String> {
    let Some(value) = value else {
        return Ok(DEFAULT_MAX_BYTES);
    };
    value
        .to_str()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(|mb| mb.saturating_mul(1 << 20))
        .ok_or_else(|| format!("DURABLE_CACHE_MAX_MB must be a number of MiB, not {value:?}"))
}

/// The byte budget the environment asks for, or [`DEFAULT_MAX_BYTES`] when
/// it asks for nothing valid (the CLI refuses an invalid value at start).
pub fn configured_max_bytes() -> u64 {
    max_bytes_from_env().unwrap_or_else(|e| {
        tracing::warn!("{e}; keeping the compile cache under the default 1024 MiB");
        DEFAULT_MAX_BYTES
    })
}

/// A compile cache directory and its byte budget.
#[derive(Debug, Clone)]
pub struct CompileCache {
    dir: PathBuf,
    max_bytes: u64,
}

impl CompileCache {
    /// The cache in `dir`, kept under `max_bytes` (the entry just written is
    /// kept even if it alone is larger).
    pub fn new(dir: PathBuf, max_bytes: u64) -> CompileCache {
        CompileCache { dir, max_bytes }
    }

    /// The entry of a component with `digest` under engine configuration
    /// `config_key`; `None` when the directory cannot be trusted.
    fn entry(&self, digest: &str, config_key: u64) -> Option<PathBuf> {
        private_dir(&self.dir).then(|| self.dir.join(format!("{digest}-{config_key:016x}.cwasm")))
    }

    /// The cached component, if there is a sound entry for it. An entry that
    /// is used is marked as used now, so that pruning keeps it longest.
    pub(crate) fn load(
        &self,
        engine: &wasmtime::Engine,
        digest: &str,
        config_key: u64,
    ) -> Option<Component> {
        let path = self.entry(digest, config_key)?;
        if !path.exists() {
            return None;
        }
        if let Err(why) = verify(&path) {
            if path.exists() && digest_path(&path).exists() {
                tracing::warn!(path = %path.display(), "ignoring compile cache entry: {why}; compiling again");
            } else {
                // Another process pruned it meanwhile: nothing is wrong.
                tracing::debug!(path = %path.display(), "compile cache entry removed meanwhile; compiling");
            }
            return None;
        }
        // SAFETY: the file is what `serialize` of this same wasmtime version
        // and configuration (both are in its name) wrote: its SHA-256 matches
        // the one recorded when it was written, in a directory only this
        // user can write (checked by `entry`), which no grant may expose.
        // wasmtime checks the header again; we recompile if it refuses.
        match unsafe { Component::deserialize_file(engine, &path) } {
            Ok(component) => {
                touch(&path);
                Some(component)
            }
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "ignoring unusable compile cache entry");
                None
            }
        }
    }

    /// Writes `component` as the entry for `digest` and `config_key`, then
    /// brings the directory back under its budget. Failures are logged: a
    /// cache that cannot be written only costs a compile next time.
    pub(crate) fn store(&self, digest: &str, config_key: u64, component: &Component) {
        let Some(path) = self.entry(digest, config_key) else {
            return;
        };
        if let Err(e) = write_atomically(&path, component) {
            tracing::warn!(path = %path.display(), error = %e, "could not write the compile cache");
            return;
        }
        if let Err(e) = self.prune(&path) {
            tracing::warn!(dir = %self.dir.display(), error = %e, "could not prune the compile cache");
        }
    }

    /// Removes the least recently used entries until the directory is under
    /// its budget, never `keep`; also temporary files that dead writers left
    /// and digest files whose entry is gone. Only regular files named as
    /// this module names them are touched: the directory is the user's
    /// choice, and may hold other files.
    ///
    /// Another process may be loading an entry removed here: an entry that
    /// is already open stays readable (Linux keeps an unlinked file until it
    /// is closed), and one removed before it is opened is compiled again.
    fn prune(&self, keep: &Path) -> std::io::Result<()> {
        let now = SystemTime::now();
        let mut entries = Vec::new();
        let mut total = 0u64;
        for item in std::fs::read_dir(&self.dir)?.flatten() {
            // `DirEntry::metadata` does not follow symbolic links.
            let Ok(meta) = item.metadata() else { continue };
            if !meta.is_file() {
                continue;
            }
            let path = item.path();
            let modified = meta.modified().unwrap_or(now);
            match kind_of(&item.file_name().to_string_lossy()) {
                Some(Kind::Temporary)
                    if now.duration_since(modified).unwrap_or_default() > STALE_TEMP =>
                {
                    remove(&path);
                }
                Some(Kind::Digest) if !path.with_extension("").exists() => {
                    remove(&path);
                }
                Some(Kind::Entry) => {
                    total += meta.len();
                    entries.push((modified, meta.len(), path));
                }
                _ => {}
            }
        }
        entries.sort();
        for (_, len, path) in entries {
            if total <= self.max_bytes {
                break;
            }
            if path == keep {
                continue;
            }
            // Gone already (another process pruned it) counts as removed; a
            // file that cannot be removed is passed over, not a reason to
            // stop keeping the cache in bounds.
            if remove(&path) {
                total -= len;
                remove(&digest_path(&path));
            }
        }
        Ok(())
    }
}

/// The files of a cache directory that this module writes.
enum Kind {
    /// `<sha256>-<config key>.cwasm`
    Entry,
    /// `<sha256>-<config key>.cwasm.sha256`
    Digest,
    /// `.<pid>.<ms>.<random>.tmp`, renamed into place when complete.
    Temporary,
}

/// What a file named `name` is to the cache; `None` for anything it did not
/// write, which it never removes.
fn kind_of(name: &str) -> Option<Kind> {
    let hex = |s: &str, len: usize| s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit());
    let entry = |stem: &str| {
        stem.split_once('-')
            .is_some_and(|(digest, key)| hex(digest, 64) && hex(key, 16))
    };
    if let Some(stem) = name.strip_suffix(".cwasm.sha256") {
        return entry(stem).then_some(Kind::Digest);
    }
    if let Some(stem) = name.strip_suffix(".cwasm") {
        return entry(stem).then_some(Kind::Entry);
    }
    let parts: Vec<&str> = name
        .strip_prefix('.')?
        .strip_suffix(".tmp")?
        .split('.')
        .collect();
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    match parts[..] {
        [pid, ms, random] if digits(pid) && digits(ms) && hex(random, 8) => Some(Kind::Temporary),
        _ => None,
    }
}

/// Removes a file; true if it is gone (removed now, or by someone else).
fn remove(path: &Path) -> bool {
    match std::fs::remove_file(path) {
        Ok(()) => {
            tracing::debug!(path = %path.display(), "removed from the compile cache");
            true
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => true,
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "could not remove from the compile cache");
            false
        }
    }
}

/// Marks an entry as used now (its modification time is what pruning
/// orders by; access times are often not kept).
fn touch(path: &Path) {
    let result = std::fs::File::options()
        .write(true)
        .open(path)
        .and_then(|f| f.set_modified(SystemTime::now()));
    if let Err(e) = result {
        tracing::debug!(path = %path.display(), error = %e, "could not mark a compile cache entry as used");
    }
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
            crate::clock::now_ms(),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compiler::{CompileSource, Compiler, EngineOptions};
    use std::sync::Arc;

    /// An empty component (version 0x0d, layer 1) with a custom section
    /// holding `tag`, so that each tag has its own digest.
    fn component(tag: u8) -> Arc<Vec<u8>> {
        let mut b = b"\0asm\x0d\x00\x01\x00".to_vec();
        b.extend_from_slice(&[0, 3, 1, b't', tag]);
        Arc::new(b)
    }

    fn compiler(dir: &Path, max_bytes: u64) -> Compiler {
        Compiler::with_options(EngineOptions {
            cache_dir: Some(dir.to_path_buf()),
            cache_max_bytes: max_bytes,
            pool_instances: None,
            memory_bytes: 1 << 20,
        })
        .expect("engine")
    }

    fn entries(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .expect("cache dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    fn has_entry(dir: &Path, digest: &str) -> bool {
        let names = entries(dir);
        names
            .iter()
            .any(|n| n.starts_with(digest) && n.ends_with(".cwasm"))
            && names
                .iter()
                .any(|n| n.starts_with(digest) && n.ends_with(".sha256"))
    }

    /// Sets the modification time of `path` to `secs` seconds ago.
    fn age(path: &Path, secs: u64) {
        std::fs::File::options()
            .write(true)
            .open(path)
            .and_then(|f| f.set_modified(SystemTime::now() - Duration::from_secs(secs)))
            .expect("age the file");
    }

    /// The entry file of the component with `digest`.
    fn entry_of(dir: &Path, digest: &str) -> PathBuf {
        let name = entries(dir)
            .into_iter()
            .find(|n| n.starts_with(digest) && n.ends_with(".cwasm"))
            .expect("an entry");
        dir.join(name)
    }

    #[test]
    fn the_cache_stays_under_its_budget_removing_the_least_recently_used() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = dir.path().join("cache");
        let (a, b, c) = (component(1), component(2), component(3));
        // One entry's size, from a cache with no real bound.
        let first = compiler(&cache, u64::MAX)
            .compile("a", a.clone())
            .expect("compile a");
        assert_eq!(first.source, CompileSource::Compiled);
        let entry_len = std::fs::metadata(entry_of(&cache, &first.digest))
            .expect("metadata")
            .len();
        age(&entry_of(&cache, &first.digest), 300);

        // Room for two entries, not three. The times are set, not waited
        // for: file systems keep them with different precision.
        let two = compiler(&cache, entry_len * 5 / 2);
        let b_digest = two.compile("b", b).expect("compile b").digest;
        age(&entry_of(&cache, &b_digest), 200);
        // A is used again (from the cache): it is the most recent now, and
        // B the least.
        let again = two.compile("a", a.clone()).expect("load a");
        assert_eq!(again.source, CompileSource::Cache);
        let c_digest = two.compile("c", c).expect("compile c").digest;

        assert!(has_entry(&cache, &first.digest), "{:?}", entries(&cache));
        assert!(has_entry(&cache, &c_digest), "{:?}", entries(&cache));
        assert!(
            !entries(&cache).iter().any(|n| n.starts_with(&b_digest)),
            "the least recently used entry and its digest are removed: {:?}",
            entries(&cache)
        );
        assert_eq!(entries(&cache).len(), 4);

        // A budget smaller than one entry keeps just the newest.
        let tiny = compiler(&cache, 1);
        assert_eq!(
            tiny.compile("b", component(2)).expect("b").source,
            CompileSource::Compiled
        );
        assert_eq!(entries(&cache).len(), 2, "{:?}", entries(&cache));
        assert!(has_entry(&cache, &b_digest));
    }

    #[test]
    fn pruning_removes_what_dead_writers_left_and_nothing_it_did_not_write() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = dir.path().join("cache");
        let unbounded = compiler(&cache, u64::MAX);
        unbounded.compile("a", component(1)).expect("compile a");
        let orphan = format!("{}-{}.cwasm.sha256", "ab".repeat(32), "0".repeat(16));
        std::fs::write(cache.join(&orphan), "00").expect("write");
        let stale = cache.join(".1.2.0000abcd.tmp");
        let fresh = cache.join(".4.5.0000abcd.tmp");
        // Files of other programs, old and over any budget: never touched.
        let foreign = ["notes.tmp", "tool.cwasm", "tool.cwasm.sha256", ".x.y.z.tmp"];
        for f in [&stale, &fresh] {
            std::fs::write(f, "half").expect("write");
        }
        for f in foreign {
            std::fs::write(cache.join(f), "someone else's").expect("write");
            age(&cache.join(f), 7200);
        }
        // A directory named like an entry is not a file to remove.
        let lookalike = format!("{}-{}.cwasm", "cd".repeat(32), "0".repeat(16));
        std::fs::create_dir(cache.join(&lookalike)).expect("mkdir");
        age(&stale, 7200);

        unbounded.compile("b", component(2)).expect("compile b");
        let names = entries(&cache);
        assert!(!names.contains(&orphan), "{names:?}");
        assert!(!stale.exists(), "a writer's file an hour old is removed");
        assert!(fresh.exists(), "a live writer's file is left alone");
        assert_eq!(
            names.iter().filter(|n| n.ends_with(".cwasm")).count(),
            4,
            "two entries, the lookalike and tool.cwasm: {names:?}"
        );

        // Over budget: only this cache's own older entries go.
        let c = compiler(&cache, 1)
            .compile("c", component(3))
            .expect("compile c");
        assert_eq!(c.source, CompileSource::Compiled);
        let names = entries(&cache);
        for f in foreign {
            assert!(names.iter().any(|n| n == f), "{f} is kept: {names:?}");
        }
        assert!(cache.join(&lookalike).is_dir());
        assert_eq!(
            names
                .iter()
                .filter(|n| n.ends_with(".cwasm.sha256"))
                .count(),
            2,
            "the newest entry's digest and tool's: {names:?}"
        );
    }

    #[test]
    fn the_budget_is_read_in_mib_and_junk_is_refused_by_name() {
        use std::ffi::OsStr;
        assert_eq!(parse_max_mb(None), Ok(DEFAULT_MAX_BYTES));
        assert_eq!(parse_max_mb(Some(OsStr::new("3"))), Ok(3 << 20));
        assert_eq!(parse_max_mb(Some(OsStr::new(" 0 "))), Ok(0));
        let err = parse_max_mb(Some(OsStr::new("lots"))).expect_err("not a number");
        assert!(
            err.contains("DURABLE_CACHE_MAX_MB") && err.contains("lots"),
            "{err}"
        );
        assert!(parse_max_mb(Some(OsStr::new("-1"))).is_err());
    }
}
