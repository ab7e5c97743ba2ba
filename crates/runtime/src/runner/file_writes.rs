//! Steps' writes to files in granted directories, done on the step's own
//! thread.
//!
//! wasmtime-wasi runs every `output-stream.write` of a file on tokio's
//! blocking pool, whatever `WasiCtxBuilder::allow_blocking_current_thread`
//! says (that setting covers its other file operations only). A guest built
//! with Rust's `std` writes through that call, so each `write` was a
//! hand-off to a pool thread and back: two wake-ups and two context
//! switches for a few bytes. Under W4 over HTTP (each step appending one
//! line) that was 1.2 of the server's 3 ms of CPU per workflow.
//!
//! This module replaces `descriptor.write-via-stream` and
//! `descriptor.append-via-stream` in the linker with streams whose `write`
//! goes straight to the file, for regular files: a write is at most
//! [`WRITE_CAPACITY`] bytes (what `check-write` grants), so a call blocks
//! its thread for one bounded write to the page cache; a guest that writes
//! more calls again, and the epoch ticks in between let other tasks run.
//! Anything else (a FIFO, a device) gets wasmtime-wasi's own stream, since
//! a write to it may wait for a reader. Opening a file, where a FIFO or a
//! lease can make a call wait for good, stays on the blocking pool, as does
//! everything else of `wasi:filesystem` (sandboxed path resolution,
//! permissions, reads).

use std::io::IoSlice;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use wasmtime::component::{Linker, Resource};
use wasmtime_wasi::WasiView;
use wasmtime_wasi::async_trait;
use wasmtime_wasi::filesystem::Descriptor;
use wasmtime_wasi::filesystem::WasiFilesystemView;
use wasmtime_wasi::p2::bindings::filesystem::types::{ErrorCode, HostDescriptor};
use wasmtime_wasi::p2::{DynOutputStream, OutputStream, Pollable, StreamError, StreamResult};

use super::HostState;

/// The `wasi:filesystem/types` interface of the wasmtime-wasi this host
/// links: the functions below replace two of its own. Checked when the
/// linker is built (see [`add_to_linker`]), so a wasmtime upgrade that moves
/// the interface fails at start-up, not silently.
const FILESYSTEM_TYPES: &str = "wasi:filesystem/types@0.2.12";

/// The most bytes one `write` takes (wasmtime-wasi grants the same).
pub const WRITE_CAPACITY: usize = 64 * 1024;

/// Replaces wasmtime-wasi's `write-via-stream` and `append-via-stream` in
/// `linker` (which must already hold wasmtime-wasi's filesystem).
///
/// # Errors
/// When the linker has no such functions to replace: wasmtime-wasi's
/// interface version changed and [`FILESYSTEM_TYPES`] must follow it.
pub(super) fn add_to_linker(linker: &mut Linker<HostState>) -> anyhow::Result<()> {
    const NAMES: [&str; 2] = [
        "[method]descriptor.write-via-stream",
        "[method]descriptor.append-via-stream",
    ];
    // Without shadowing, defining a name that exists fails: that failure is
    // the proof that the functions being replaced are there.
    linker.allow_shadowing(false);
    for name in NAMES {
        let mut probe = linker.clone();
        let defined = probe
            .instance(FILESYSTEM_TYPES)?
            .func_wrap(name, |_, (): ()| Ok(()));
        anyhow::ensure!(
            defined.is_err(),
            "the linker has no {FILESYSTEM_TYPES}#{name} to replace; \
             update FILESYSTEM_TYPES to the wasmtime-wasi in use"
        );
    }
    linker.allow_shadowing(true);
    let mut types = linker.instance(FILESYSTEM_TYPES)?;
    types.func_wrap(
        NAMES[0],
        |mut store, (fd, offset): (Resource<Descriptor>, u64)| {
            Ok((stream_for(store.data_mut(), fd, Cursor::At(offset))?,))
        },
    )?;
    types.func_wrap(NAMES[1], |mut store, (fd,): (Resource<Descriptor>,)| {
        Ok((stream_for(store.data_mut(), fd, Cursor::End)?,))
    })?;
    linker.allow_shadowing(false);
    Ok(())
}

/// The stream for `fd`, as wasmtime-wasi's would be: a trap for an unknown
/// handle, `bad-descriptor` for a directory, `not-permitted` when the
/// granted directory is read-only.
fn stream_for(
    state: &mut HostState,
    fd: Resource<Descriptor>,
    cursor: Cursor,
) -> wasmtime::Result<Result<Resource<DynOutputStream>, ErrorCode>> {
    let view = state.ctx();
    let file = match view.table.get(&fd)? {
        Descriptor::File(f) if f.perms.write_not_permitted() => {
            return Ok(Err(ErrorCode::NotPermitted));
        }
        Descriptor::File(f) if f.file.metadata().is_ok_and(|m| m.is_file()) => Arc::clone(&f.file),
        Descriptor::File(_) => {
            // Not a regular file: wasmtime-wasi's stream, on the pool.
            let mut fs = state.filesystem();
            let stream = match cursor {
                Cursor::At(offset) => HostDescriptor::write_via_stream(&mut fs, fd, offset),
                Cursor::End => HostDescriptor::append_via_stream(&mut fs, fd),
            };
            return match stream {
                Ok(stream) => Ok(Ok(stream)),
                Err(e) => e.downcast().map(Err),
            };
        }
        Descriptor::Dir(_) => return Ok(Err(ErrorCode::BadDescriptor)),
    };
    let stream: DynOutputStream = Box::new(FileWriter::new(file, cursor));
    Ok(Ok(view.table.push(stream)?))
}

/// Where a stream's next write lands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cursor {
    /// At this offset, which moves on by what was written.
    At(u64),
    /// At the end of the file, whoever else writes to it.
    End,
}

/// An output stream that writes to its file on the calling thread.
pub struct FileWriter {
    file: Arc<std::fs::File>,
    cursor: Cursor,
    /// The error of the last write, reported by the next call (as
    /// wasmtime-wasi does); after it, the stream is closed.
    failed: Option<std::io::Error>,
    closed: bool,
}

impl FileWriter {
    /// A stream writing to `file` from `cursor`.
    pub fn new(file: Arc<std::fs::File>, cursor: Cursor) -> FileWriter {
        FileWriter {
            file,
            cursor,
            failed: None,
            closed: false,
        }
    }

    /// Reports the last write's failure, once, then a closed stream.
    fn usable(&mut self) -> StreamResult<()> {
        if let Some(e) = self.failed.take() {
            self.closed = true;
            return Err(StreamError::LastOperationFailed(e.into()));
        }
        if self.closed {
            return Err(StreamError::Closed);
        }
        Ok(())
    }

    /// Writes all of `bytes` at the cursor.
    fn write_all(&mut self, mut bytes: &[u8]) -> std::io::Result<()> {
        while !bytes.is_empty() {
            let n = match self.cursor {
                Cursor::At(offset) => {
                    let n = self.file.write_at(bytes, offset)?;
                    self.cursor = Cursor::At(offset + n as u64);
                    n
                }
                Cursor::End => append(&self.file, bytes)?,
            };
            if n == 0 {
                return Err(std::io::ErrorKind::WriteZero.into());
            }
            bytes = &bytes[n..];
        }
        Ok(())
    }
}

/// Appends `bytes` at the end of `file` in one call (`pwritev2` with
/// `RWF_APPEND`: atomic against other appenders, like `O_APPEND`, without
/// changing the file description's flags).
fn append(file: &std::fs::File, bytes: &[u8]) -> std::io::Result<usize> {
    use rustix::io::{Errno, ReadWriteFlags, pwritev2};
    match pwritev2(file, &[IoSlice::new(bytes)], 0, ReadWriteFlags::APPEND) {
        Ok(n) => Ok(n),
        // Kernels before 4.16: set O_APPEND around a plain write.
        Err(Errno::NOSYS | Errno::NOTSUP) => {
            use rustix::fs::{OFlags, fcntl_getfl, fcntl_setfl};
            let flags = fcntl_getfl(file)?;
            fcntl_setfl(file, flags | OFlags::APPEND)?;
            let written = rustix::io::write(file, bytes);
            fcntl_setfl(file, flags)?;
            Ok(written?)
        }
        Err(e) => Err(e.into()),
    }
}

impl OutputStream for FileWriter {
    fn write(&mut self, bytes: bytes::Bytes) -> StreamResult<()> {
        self.usable()?;
        if bytes.len() > WRITE_CAPACITY {
            return Err(StreamError::Trap(wasmtime::format_err!(
                "write of {} bytes exceeds the {WRITE_CAPACITY} that check-write permitted",
                bytes.len()
            )));
        }
        if let Err(e) = self.write_all(&bytes) {
            self.failed = Some(e);
        }
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        // Nothing is buffered here: a write is in the page cache when it
        // returns, as with wasmtime-wasi's streams.
        self.usable()
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        self.usable()?;
        Ok(WRITE_CAPACITY)
    }
}

#[async_trait]
impl Pollable for FileWriter {
    /// Always ready: writes finish before `write` returns.
    async fn ready(&mut self) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    fn writer(dir: &tempfile::TempDir, name: &str, cursor: Cursor) -> FileWriter {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .read(true)
            .write(true)
            .truncate(false)
            .open(dir.path().join(name))
            .expect("open");
        FileWriter::new(Arc::new(file), cursor)
    }

    #[test]
    fn writes_land_at_the_cursor_and_it_moves_on() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("f"), "0123456789").expect("seed");
        let mut w = writer(&dir, "f", Cursor::At(2));
        assert_eq!(w.check_write().expect("check"), WRITE_CAPACITY);
        w.write(bytes::Bytes::from_static(b"ab")).expect("write");
        w.write(bytes::Bytes::from_static(b"cd")).expect("write");
        w.flush().expect("flush");
        let text = std::fs::read_to_string(dir.path().join("f")).expect("read");
        assert_eq!(text, "01abcd6789");
    }

    #[test]
    fn appends_land_at_the_end_whoever_else_writes() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("f"), "a\n").expect("seed");
        let mut one = writer(&dir, "f", Cursor::End);
        let mut two = writer(&dir, "f", Cursor::End);
        one.write(bytes::Bytes::from_static(b"b\n")).expect("write");
        two.write(bytes::Bytes::from_static(b"c\n")).expect("write");
        one.write(bytes::Bytes::from_static(b"d\n")).expect("write");
        let text = std::fs::read_to_string(dir.path().join("f")).expect("read");
        assert_eq!(text, "a\nb\nc\nd\n");
    }

    #[test]
    fn a_failed_write_is_reported_once_then_the_stream_is_closed() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("f"), "x").expect("seed");
        // Read-only: every write fails with EBADF.
        let file = std::fs::File::open(dir.path().join("f")).expect("open");
        let mut w = FileWriter::new(Arc::new(file), Cursor::End);
        w.write(bytes::Bytes::from_static(b"y")).expect("accepted");
        assert!(matches!(
            w.check_write(),
            Err(StreamError::LastOperationFailed(_))
        ));
        assert!(matches!(w.check_write(), Err(StreamError::Closed)));
        assert!(matches!(
            w.write(bytes::Bytes::from_static(b"z")),
            Err(StreamError::Closed)
        ));
    }

    #[test]
    fn a_write_larger_than_permitted_traps() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut w = writer(&dir, "f", Cursor::At(0));
        let big = bytes::Bytes::from(vec![0u8; WRITE_CAPACITY + 1]);
        assert!(matches!(w.write(big), Err(StreamError::Trap(_))));
    }
}
