//! `durable backup`: an online copy of a SQLite database.
//!
//! `VACUUM INTO` from a read-only connection writes a consistent snapshot
//! (one read transaction) while writers go on: WAL readers do not block
//! them. SQLite does not sync what it writes there, so the copy is written
//! under a temporary name, synced, renamed into place and its folder synced:
//! once this returns, the copy survives a power loss, and a crash before
//! leaves no half-written file under the name asked for.

use std::path::{Path, PathBuf};

use super::sqlite::open_reader;
use super::{Store, StoreError};
use crate::location::Location;

impl Store {
    /// Copies this SQLite database to a new file `dest`, online.
    ///
    /// # Errors
    /// [`StoreError::Config`] for a PostgreSQL store (use `pg_dump`) or a
    /// `dest` that exists; [`StoreError::Io`] or [`StoreError::Sqlite`] when
    /// the copy cannot be written.
    pub async fn backup_to(&self, dest: &Path) -> Result<(), StoreError> {
        let Location::File(source) = self.location().clone() else {
            return Err(StoreError::Config(
                "durable backup copies a SQLite database; for PostgreSQL use pg_dump (or the \
                 provider's snapshots)"
                    .into(),
            ));
        };
        let dest = dest.to_path_buf();
        tokio::task::spawn_blocking(move || backup(&source, &dest))
            .await
            .map_err(|e| StoreError::Config(format!("the backup task failed: {e}")))?
    }
}

fn backup(source: &Path, dest: &Path) -> Result<(), StoreError> {
    let io = |context: String| move |source| StoreError::Io { context, source };
    if dest.exists() {
        return Err(StoreError::Config(format!(
            "{} exists: a backup writes a new file",
            dest.display()
        )));
    }
    let mut partial = dest.as_os_str().to_owned();
    partial.push(".partial");
    let partial = PathBuf::from(partial);
    // A leftover of a backup that crashed.
    let _ = std::fs::remove_file(&partial);
    let conn = open_reader(source)?;
    let text = partial
        .to_str()
        .ok_or_else(|| StoreError::Config(format!("{} is not a UTF-8 path", partial.display())))?;
    let copied = conn
        .execute("VACUUM INTO ?1", [text])
        .map_err(|source| StoreError::Sqlite {
            context: format!("copying into {}", partial.display()),
            source,
        });
    if let Err(e) = copied {
        let _ = std::fs::remove_file(&partial);
        return Err(e);
    }
    std::fs::File::open(&partial)
        .and_then(|f| f.sync_all())
        .map_err(io(format!("syncing {}", partial.display())))?;
    std::fs::rename(&partial, dest).map_err(io(format!("renaming into {}", dest.display())))?;
    let folder = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::File::open(&folder)
        .and_then(|f| f.sync_all())
        .map_err(io(format!("syncing {}", folder.display())))
}
