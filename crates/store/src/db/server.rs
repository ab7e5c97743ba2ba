//! What a server asks of the store beyond driving runs: which runs are due
//! (`runnable`, `next_wake_at`), wake-ups from other hosts on PostgreSQL
//! (`wake_ups`), counts for `/metrics` and the UI, and the last tick of a
//! schedule.

use std::sync::Arc;

use super::rows::owner_is_gone;
use super::{Store, owner_row};
use crate::StoreError;
#[cfg(feature = "postgres")]
use crate::location::Location;
use crate::sql::{Dialect, args};

impl Store {
    /// Runs that may be taken up now, at most `limit`, oldest due first:
    /// waiting runs whose time has come (an event sent to a run waiting for
    /// it makes it due at once), and running runs whose owner is gone.
    /// Runs that a live process drives are not among them.
    ///
    /// # Errors
    /// [`StoreError`] when the read fails.
    /// Each with the time it became due, for waiting runs.
    pub async fn runnable(&self, limit: usize) -> Result<Vec<(String, Option<i64>)>, StoreError> {
        self.read(move |tx| {
            let now = tx.now_ms();
            let mut ids = tx.all(
                "listing due runs",
                "SELECT id, wake_at_ms FROM runs WHERE status = 'waiting' AND wake_at_ms <= ?1
                 ORDER BY wake_at_ms LIMIT ?2",
                args![now, limit],
                |r| Ok((r.get::<String>(0)?, r.get::<Option<i64>>(1)?)),
            )?;
            // Not the runs this process drives (alive, however many):
            // only those whose owner may be gone.
            let running = tx.all(
                "listing running runs",
                "SELECT id, owner, lease_until_ms FROM runs
                 WHERE status = 'running'
                   AND (owner IS NULL OR lease_until_ms IS NULL OR lease_until_ms < ?1
                        OR substr(owner, 1, length(CAST(?2 AS TEXT))) <> ?2)",
                args![now, crate::owner::Owner::this_process_prefix()],
                owner_row,
            )?;
            for (id, owner, lease) in running {
                if ids.len() < limit && owner_is_gone(owner.as_deref(), lease, now) {
                    ids.push((id, None));
                }
            }
            Ok(ids)
        })
        .await
    }

    /// Which of `ids` have ended (succeeded, failed or cancelled), in one
    /// read of their rows (by primary key, in chunks): how a server learns
    /// of runs other processes finished.
    ///
    /// # Errors
    /// [`StoreError`] when the read fails.
    pub async fn ended_among(&self, ids: Vec<String>) -> Result<Vec<String>, StoreError> {
        /// Ids per statement: one statement text (a short chunk is padded
        /// with its last id), prepared once.
        const CHUNK: usize = 256;
        static SQL: std::sync::OnceLock<String> = std::sync::OnceLock::new();
        let sql = SQL.get_or_init(|| {
            let marks: Vec<String> = (1..=CHUNK).map(|i| format!("?{i}")).collect();
            format!(
                "SELECT id FROM runs WHERE id IN ({}) AND status IN ('succeeded', 'failed', 'cancelled')",
                marks.join(", ")
            )
        });
        self.read(move |tx| {
            let mut ended = Vec::new();
            for chunk in ids.chunks(CHUNK) {
                let mut padded: Vec<&String> = chunk.iter().collect();
                let last = padded[padded.len() - 1];
                padded.resize(CHUNK, last);
                let args: Vec<&dyn crate::sql::Arg> = padded
                    .iter()
                    .map(|id| *id as &dyn crate::sql::Arg)
                    .collect();
                ended.extend(tx.all("looking for ended runs", sql, &args, |r| r.get::<String>(0))?);
            }
            Ok(ended)
        })
        .await
    }

    /// When the earliest waiting run is due (`None`: no run waits for a
    /// time).
    ///
    /// # Errors
    /// [`StoreError`] when the read fails.
    pub async fn next_wake_at(&self) -> Result<Option<i64>, StoreError> {
        self.read(|tx| {
            tx.one(
                "looking for the next wake-up",
                "SELECT min(wake_at_ms) FROM runs WHERE status = 'waiting'",
                args![],
                |r| r.get::<Option<i64>>(0),
            )
        })
        .await
    }

    /// On PostgreSQL, a signal for when another process may have made a
    /// run runnable; `None` on SQLite (poll instead). Call it in a tokio
    /// runtime.
    #[cfg(feature = "postgres")]
    pub fn wake_ups(&self) -> Option<Arc<tokio::sync::Notify>> {
        let Location::Postgres(url) = self.location().clone() else {
            return None;
        };
        Some(
            self.wake
                .get_or_init(|| {
                    let notify = Arc::new(tokio::sync::Notify::new());
                    tokio::spawn(super::listen::listen(url, notify.clone()));
                    notify
                })
                .clone(),
        )
    }

    /// Without PostgreSQL support every database is SQLite's: no wake-ups.
    #[cfg(not(feature = "postgres"))]
    pub fn wake_ups(&self) -> Option<Arc<tokio::sync::Notify>> {
        None
    }

    /// How many runs there are of each status; only of `workflow`, and
    /// only those whose id starts with `prefix`, when given.
    ///
    /// # Errors
    /// [`StoreError`] when the read fails.
    pub async fn count_by_status(
        &self,
        workflow: Option<String>,
        prefix: Option<String>,
        parent: Option<String>,
        tag: Option<(String, String)>,
    ) -> Result<Vec<(String, u64)>, StoreError> {
        let tags: Vec<(String, String)> = tag.into_iter().collect();
        self.read(move |tx| {
            let mut params: Vec<&dyn crate::sql::Arg> = vec![&workflow, &prefix, &parent];
            let (from, tagged) = super::inspect::tag_filter(&tags, &mut params);
            let rows = tx.all(
                "counting runs",
                &format!(
                    "SELECT status, count(*) FROM {from}
                     WHERE (CAST(?1 AS TEXT) IS NULL OR workflow = CAST(?1 AS TEXT))
                       AND (CAST(?2 AS TEXT) IS NULL
                            OR substr(id, 1, length(CAST(?2 AS TEXT))) = CAST(?2 AS TEXT))
                       AND (CAST(?3 AS TEXT) IS NULL OR parent_id = CAST(?3 AS TEXT))
                       {tagged}
                     GROUP BY status"
                ),
                &params,
                |r| Ok((r.get::<String>(0)?, r.get::<i64>(1)?)),
            )?;
            Ok(rows
                .into_iter()
                .map(|(status, n)| (status, n.max(0) as u64))
                .collect())
        })
        .await
    }

    /// The greatest run id that starts with `prefix` (ids sort as text).
    ///
    /// # Errors
    /// [`StoreError`] when the read fails.
    /// Only ids of the form `PREFIX<digits>T<digits>Z` count, and none
    /// greater than `not_after`.
    pub async fn last_tick_id(
        &self,
        prefix: &str,
        not_after: &str,
    ) -> Result<Option<String>, StoreError> {
        let (prefix, not_after) = (prefix.to_string(), not_after.to_string());
        self.read(move |tx| {
            // [prefix, prefix + U+10FFFF): every id with the prefix, on the
            // primary key's index.
            // Only ids of the tick form, and none from the future.
            let end = format!("{prefix}\u{10FFFF}");
            let (sql, pattern) = match tx.dialect() {
                Dialect::Sqlite => (
                    "SELECT id FROM runs WHERE id >= ?1 AND id < ?2 AND id GLOB ?3 AND id <= ?4
                     ORDER BY id DESC LIMIT 1",
                    format!("{}[0-9]*T[0-9]*Z", glob_escape(&prefix)),
                ),
                Dialect::Postgres => (
                    "SELECT id FROM runs WHERE id >= ?1 AND id < ?2 AND id ~ ?3 AND id <= ?4
                     ORDER BY id DESC LIMIT 1",
                    format!("^{}[0-9].*T[0-9].*Z$", regex_escape(&prefix)),
                ),
            };
            tx.opt(
                "looking up the last scheduled run",
                sql,
                args![prefix, end, pattern, not_after],
                |r| r.get(0),
            )
        })
        .await
    }
}

/// `s` with the special characters of a POSIX regular expression escaped.
fn regex_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if "\\^$.|?*+()[]{}".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// `s` with GLOB's special characters taken literally.
fn glob_escape(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '*' | '?' | '[' => format!("[{c}]"),
            c => c.to_string(),
        })
        .collect()
}
