//! Opening a database file: connection settings, identification and
//! numbered migrations.
//!
//! A durable database is marked with SQLite's `application_id` so that a
//! file of some other program is refused instead of being written to, and
//! carries its schema version in `user_version` so that a file written by a
//! newer `durable` is refused instead of being misread.

use std::path::Path;

use rusqlite::{Connection, OpenFlags};

use super::StoreError;

use crate::error::BUSY_TIMEOUT_MS;
pub(crate) use crate::schema::{APPLICATION_ID, SCHEMA_VERSION};

/// The page size of a new database, in bytes (see `open_conn`).
pub(crate) const PAGE_SIZE: u32 = 1024;

/// The migrations, in order; `user_version` is the number applied.
pub(crate) const MIGRATIONS: &[&str] = &[
    // 1: runs, their steps, and the components that drive them.
    r#"
    CREATE TABLE components (
        digest      TEXT PRIMARY KEY,
        bytes       BLOB NOT NULL,
        added_at_ms INTEGER NOT NULL
    ) STRICT;

    CREATE TABLE runs (
        id               TEXT PRIMARY KEY,
        workflow         TEXT NOT NULL,
        component_digest TEXT NOT NULL REFERENCES components(digest),
        input            TEXT NOT NULL,
        status           TEXT NOT NULL CHECK (status IN ('running', 'succeeded', 'failed')),
        output           TEXT,
        error            TEXT,
        seed             INTEGER NOT NULL,
        created_at_ms    INTEGER NOT NULL,
        finished_at_ms   INTEGER,
        owner            TEXT,
        lease_until_ms   INTEGER
    ) STRICT;
    CREATE INDEX runs_by_status ON runs(status, created_at_ms);

    CREATE TABLE steps (
        run_id         TEXT NOT NULL REFERENCES runs(id),
        key            TEXT NOT NULL,
        parent         TEXT NOT NULL,
        position       INTEGER NOT NULL,
        name           TEXT NOT NULL,
        input_digest   TEXT NOT NULL,
        outcome        TEXT NOT NULL CHECK (outcome IN ('ok', 'failed', 'trapped')),
        value          TEXT NOT NULL,
        attempts       INTEGER NOT NULL,
        started_at_ms  INTEGER NOT NULL,
        finished_at_ms INTEGER NOT NULL,
        PRIMARY KEY (run_id, key),
        UNIQUE (run_id, parent, position)
    ) STRICT, WITHOUT ROWID;

    "#,
    // 2: steps may time out; failed attempts are kept.
    r#"
    CREATE TABLE steps_v2 (
        run_id         TEXT NOT NULL REFERENCES runs(id),
        key            TEXT NOT NULL,
        parent         TEXT NOT NULL,
        position       INTEGER NOT NULL,
        name           TEXT NOT NULL,
        input_digest   TEXT NOT NULL,
        outcome        TEXT NOT NULL CHECK (outcome IN ('ok', 'failed', 'trapped', 'timed-out')),
        value          TEXT NOT NULL,
        attempts       INTEGER NOT NULL,
        started_at_ms  INTEGER NOT NULL,
        finished_at_ms INTEGER NOT NULL,
        PRIMARY KEY (run_id, key),
        UNIQUE (run_id, parent, position)
    ) STRICT, WITHOUT ROWID;
    INSERT INTO steps_v2 SELECT * FROM steps;
    DROP TABLE steps;
    ALTER TABLE steps_v2 RENAME TO steps;

    CREATE TABLE attempts (
        run_id         TEXT NOT NULL REFERENCES runs(id),
        key            TEXT NOT NULL,
        attempt        INTEGER NOT NULL,
        outcome        TEXT NOT NULL CHECK (outcome IN ('failed', 'trapped', 'timed-out')),
        value          TEXT NOT NULL,
        started_at_ms  INTEGER NOT NULL,
        finished_at_ms INTEGER NOT NULL,
        PRIMARY KEY (run_id, key, attempt)
    ) STRICT, WITHOUT ROWID;
    "#,
    // 3: cancelled runs, drive numbers, parallel batches, forks, and the
    // output guests print, kept per step.
    r#"
    CREATE TABLE runs_v3 (
        id                     TEXT PRIMARY KEY,
        workflow               TEXT NOT NULL,
        component_digest       TEXT NOT NULL REFERENCES components(digest),
        input                  TEXT NOT NULL,
        status                 TEXT NOT NULL
                               CHECK (status IN ('running', 'succeeded', 'failed', 'cancelled')),
        output                 TEXT,
        error                  TEXT,
        seed                   INTEGER NOT NULL,
        created_at_ms          INTEGER NOT NULL,
        finished_at_ms         INTEGER,
        owner                  TEXT,
        lease_until_ms         INTEGER,
        clock_ms               INTEGER NOT NULL,
        drives                 INTEGER NOT NULL DEFAULT 0,
        cancel_requested_at_ms INTEGER,
        forked_from            TEXT
    ) STRICT;
    INSERT INTO runs_v3
        SELECT id, workflow, component_digest, input, status, output, error, seed,
               created_at_ms, finished_at_ms, owner, lease_until_ms, created_at_ms, 1, NULL, NULL
        FROM runs;
    DROP TABLE runs;
    ALTER TABLE runs_v3 RENAME TO runs;
    CREATE INDEX runs_by_status ON runs(status, created_at_ms);
    CREATE INDEX runs_by_created ON runs(created_at_ms);

    ALTER TABLE steps ADD COLUMN drive INTEGER NOT NULL DEFAULT 1;
    ALTER TABLE steps ADD COLUMN batch INTEGER;

    CREATE TABLE output (
        id      INTEGER PRIMARY KEY,
        run_id  TEXT NOT NULL REFERENCES runs(id),
        key     TEXT NOT NULL,
        drive   INTEGER NOT NULL,
        at_ms   INTEGER NOT NULL,
        kind    TEXT NOT NULL,
        line    TEXT NOT NULL
    ) STRICT;
    CREATE INDEX output_by_step ON output(run_id, key, id);
    "#,
    // 4: records of step bodies that ran again and did something else
    // (they are moved here, kept for inspection, never replayed).
    r#"
    CREATE TABLE superseded_steps (
        run_id           TEXT NOT NULL REFERENCES runs(id),
        key              TEXT NOT NULL,
        parent           TEXT NOT NULL,
        position         INTEGER NOT NULL,
        name             TEXT NOT NULL,
        input_digest     TEXT NOT NULL,
        outcome          TEXT NOT NULL,
        value            TEXT NOT NULL,
        attempts         INTEGER NOT NULL,
        started_at_ms    INTEGER NOT NULL,
        finished_at_ms   INTEGER NOT NULL,
        drive            INTEGER NOT NULL,
        batch            INTEGER,
        superseded_at_ms INTEGER NOT NULL,
        superseded_in    INTEGER NOT NULL
    ) STRICT;
    CREATE INDEX superseded_steps_by_run ON superseded_steps(run_id, key);
    CREATE TABLE superseded_attempts (
        run_id           TEXT NOT NULL REFERENCES runs(id),
        key              TEXT NOT NULL,
        attempt          INTEGER NOT NULL,
        outcome          TEXT NOT NULL,
        value            TEXT NOT NULL,
        started_at_ms    INTEGER NOT NULL,
        finished_at_ms   INTEGER NOT NULL,
        superseded_at_ms INTEGER NOT NULL
    ) STRICT;
    CREATE INDEX superseded_attempts_by_run ON superseded_attempts(run_id, key);
    "#,
    // 5: runs that wait (for a time or an event) hold nothing; the events
    // sent to runs; the deadlines of event waits.
    r#"
    CREATE TABLE runs_v5 (
        id                     TEXT PRIMARY KEY,
        workflow               TEXT NOT NULL,
        component_digest       TEXT NOT NULL REFERENCES components(digest),
        input                  TEXT NOT NULL,
        status                 TEXT NOT NULL
                               CHECK (status IN ('running', 'waiting', 'succeeded', 'failed', 'cancelled')),
        output                 TEXT,
        error                  TEXT,
        seed                   INTEGER NOT NULL,
        created_at_ms          INTEGER NOT NULL,
        finished_at_ms         INTEGER,
        owner                  TEXT,
        lease_until_ms         INTEGER,
        clock_ms               INTEGER NOT NULL,
        drives                 INTEGER NOT NULL DEFAULT 0,
        cancel_requested_at_ms INTEGER,
        forked_from            TEXT,
        waiting_for            TEXT,
        wake_at_ms             INTEGER,
        wait_event             TEXT
    ) STRICT;
    INSERT INTO runs_v5
        SELECT id, workflow, component_digest, input, status, output, error, seed,
               created_at_ms, finished_at_ms, owner, lease_until_ms, clock_ms, drives,
               cancel_requested_at_ms, forked_from, NULL, NULL, NULL
        FROM runs;
    DROP TABLE runs;
    ALTER TABLE runs_v5 RENAME TO runs;
    CREATE INDEX runs_by_status ON runs(status, created_at_ms);
    CREATE INDEX runs_by_created ON runs(created_at_ms);
    CREATE INDEX runs_by_wake ON runs(status, wake_at_ms);

    CREATE TABLE events (
        seq         INTEGER PRIMARY KEY,
        run_id      TEXT NOT NULL REFERENCES runs(id),
        name        TEXT NOT NULL,
        event_id    TEXT,
        payload     TEXT NOT NULL,
        sent_at_ms  INTEGER NOT NULL,
        consumed_by TEXT,
        UNIQUE (run_id, event_id)
    ) STRICT;
    CREATE INDEX events_by_name ON events(run_id, name, seq);

    CREATE TABLE waits (
        run_id      TEXT NOT NULL REFERENCES runs(id),
        key         TEXT NOT NULL,
        deadline_ms INTEGER,
        PRIMARY KEY (run_id, key)
    ) STRICT, WITHOUT ROWID;
    "#,
    // 6: what each step was called with, when each drive began, and when
    // an event wait began (for people reading a run: `show`, the UI).
    r#"
    ALTER TABLE steps ADD COLUMN input TEXT;
    ALTER TABLE waits ADD COLUMN since_ms INTEGER;

    CREATE TABLE drive_starts (
        run_id        TEXT NOT NULL REFERENCES runs(id),
        drive         INTEGER NOT NULL,
        started_at_ms INTEGER NOT NULL,
        PRIMARY KEY (run_id, drive)
    ) STRICT, WITHOUT ROWID;
    "#,
    // 7: what a superseded step was called with, and the components a run
    // was switched to (`durable resume --component`).
    r#"
    ALTER TABLE superseded_steps ADD COLUMN input TEXT;

    CREATE TABLE component_switches (
        run_id         TEXT NOT NULL REFERENCES runs(id),
        drive          INTEGER NOT NULL,
        at_ms          INTEGER NOT NULL,
        from_digest    TEXT NOT NULL,
        to_digest      TEXT NOT NULL,
        forced_from    INTEGER,
        PRIMARY KEY (run_id, drive)
    ) STRICT, WITHOUT ROWID;
    "#,
    // 8: steps keyed by where they were called: (run, parent, position).
    // A commit then writes one B-tree instead of two (the table, keyed by
    // step key, and the unique index on the position): half the WAL pages
    // per step. A key stays unique without an index of its own: it names
    // the n-th call of a name among its parent's calls, so two positions
    // cannot have the same key.
    r#"
    CREATE TABLE steps_v8 (
        run_id         TEXT NOT NULL REFERENCES runs(id),
        key            TEXT NOT NULL,
        parent         TEXT NOT NULL,
        position       INTEGER NOT NULL,
        name           TEXT NOT NULL,
        input_digest   TEXT NOT NULL,
        outcome        TEXT NOT NULL CHECK (outcome IN ('ok', 'failed', 'trapped', 'timed-out')),
        value          TEXT NOT NULL,
        attempts       INTEGER NOT NULL,
        started_at_ms  INTEGER NOT NULL,
        finished_at_ms INTEGER NOT NULL,
        drive          INTEGER NOT NULL DEFAULT 1,
        batch          INTEGER,
        input          TEXT,
        PRIMARY KEY (run_id, parent, position)
    ) STRICT, WITHOUT ROWID;
    INSERT INTO steps_v8 (run_id, key, parent, position, name, input_digest, outcome, value,
                          attempts, started_at_ms, finished_at_ms, drive, batch, input)
        SELECT run_id, key, parent, position, name, input_digest, outcome, value,
               attempts, started_at_ms, finished_at_ms, drive, batch, input
        FROM steps;
    DROP TABLE steps;
    ALTER TABLE steps_v8 RENAME TO steps;
    "#,
    // 9: a component keeps the workflow name it was first stored with (a
    // run started by digest is named by it, on any server, after any
    // restart), and runs are found by component (a component may be
    // deleted only while no run uses it).
    r#"
    ALTER TABLE components ADD COLUMN name TEXT;
    CREATE INDEX runs_by_component ON runs(component_digest);
    "#,
    // 10: child workflows: a run started by another run knows its parent
    // and the key of the call that started it, and a parent's children are
    // found by index (to cancel them with it, to list them); an event wait
    // keeps its event's name, so an event wakes a run that waits on
    // several handles.
    r#"
    ALTER TABLE runs ADD COLUMN parent_id TEXT;
    ALTER TABLE runs ADD COLUMN parent_key TEXT;
    CREATE INDEX runs_by_parent ON runs(parent_id, created_at_ms) WHERE parent_id IS NOT NULL;
    ALTER TABLE waits ADD COLUMN name TEXT;
    "#,
    // 11: flow control. A run may be `queued` (started in a queue, not
    // admitted yet: a new status, so the table is made again with its
    // check); it knows its queue, key, priority and place in start order,
    // and, started with a debounce, its key and the end of its window (one
    // pending run per workflow and key); the queues keep their limits,
    // their rate's bucket and the next place.
    r#"
    CREATE TABLE runs_v11 (
        id                     TEXT PRIMARY KEY,
        workflow               TEXT NOT NULL,
        component_digest       TEXT NOT NULL REFERENCES components(digest),
        input                  TEXT NOT NULL,
        status                 TEXT NOT NULL
                               CHECK (status IN ('queued', 'running', 'waiting', 'succeeded', 'failed', 'cancelled')),
        output                 TEXT,
        error                  TEXT,
        seed                   INTEGER NOT NULL,
        created_at_ms          INTEGER NOT NULL,
        finished_at_ms         INTEGER,
        owner                  TEXT,
        lease_until_ms         INTEGER,
        clock_ms               INTEGER NOT NULL,
        drives                 INTEGER NOT NULL DEFAULT 0,
        cancel_requested_at_ms INTEGER,
        forked_from            TEXT,
        waiting_for            TEXT,
        wake_at_ms             INTEGER,
        wait_event             TEXT,
        parent_id              TEXT,
        parent_key             TEXT,
        queue                  TEXT,
        queue_key              TEXT,
        priority               INTEGER NOT NULL DEFAULT 0,
        queue_seq              INTEGER,
        debounce_key           TEXT,
        not_before_ms          INTEGER
    ) STRICT;
    INSERT INTO runs_v11
        SELECT id, workflow, component_digest, input, status, output, error, seed,
               created_at_ms, finished_at_ms, owner, lease_until_ms, clock_ms, drives,
               cancel_requested_at_ms, forked_from, waiting_for, wake_at_ms, wait_event,
               parent_id, parent_key, NULL, NULL, 0, NULL, NULL, NULL
        FROM runs;
    DROP TABLE runs;
    ALTER TABLE runs_v11 RENAME TO runs;
    CREATE INDEX runs_by_status ON runs(status, created_at_ms);
    CREATE INDEX runs_by_created ON runs(created_at_ms);
    CREATE INDEX runs_by_wake ON runs(status, wake_at_ms);
    CREATE INDEX runs_by_component ON runs(component_digest);
    CREATE INDEX runs_by_parent ON runs(parent_id, created_at_ms) WHERE parent_id IS NOT NULL;
    CREATE INDEX runs_queued ON runs(queue, priority DESC, queue_seq) WHERE status = 'queued';
    CREATE INDEX runs_by_queue ON runs(queue, status, queue_key) WHERE queue IS NOT NULL;
    CREATE UNIQUE INDEX runs_debouncing ON runs(workflow, debounce_key)
        WHERE status = 'queued' AND debounce_key IS NOT NULL;

    CREATE TABLE queues (
        name                TEXT PRIMARY KEY,
        concurrency         INTEGER,
        concurrency_key     TEXT,
        per_key_concurrency INTEGER,
        rate_count          INTEGER,
        rate_per_ms         INTEGER,
        burst               INTEGER NOT NULL DEFAULT 1,
        milli_tokens        INTEGER,
        refilled_at_ms      INTEGER,
        next_seq            INTEGER NOT NULL DEFAULT 0,
        updated_at_ms       INTEGER NOT NULL
    ) STRICT;

    CREATE TABLE step_limits (
        name        TEXT PRIMARY KEY,
        concurrency INTEGER NOT NULL
    ) STRICT;
    CREATE TABLE step_slots (
        name     TEXT NOT NULL,
        run_id   TEXT NOT NULL,
        key      TEXT NOT NULL,
        owner    TEXT NOT NULL,
        since_ms INTEGER NOT NULL,
        PRIMARY KEY (name, run_id, key)
    ) STRICT, WITHOUT ROWID;
    "#,
    // 12: tags, to find runs by (`set-tag`, a start's tags), and finished
    // runs by their end (retention).
    r#"
    CREATE TABLE run_tags (
        run_id TEXT NOT NULL,
        key    TEXT NOT NULL,
        value  TEXT NOT NULL,
        PRIMARY KEY (run_id, key)
    ) STRICT, WITHOUT ROWID;
    CREATE INDEX run_tags_by_value ON run_tags(key, value, run_id);
    -- A traceparent given at the start: its drives' spans are its children.
    ALTER TABLE runs ADD COLUMN trace_parent TEXT;
    -- Retention takes finished runs oldest first.
    CREATE INDEX runs_by_finished ON runs(finished_at_ms, id) WHERE finished_at_ms IS NOT NULL;
    "#,
];

/// Opens a read-only connection to a database that [`open`] prepared.
///
/// # Errors
/// [`StoreError::Sqlite`] when the file cannot be opened.
pub(crate) fn open_reader(path: &Path) -> Result<Connection, StoreError> {
    let sql = |source| StoreError::Sqlite {
        context: format!("opening {} for reading", path.display()),
        source,
    };
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(sql)?;
    conn.busy_timeout(std::time::Duration::from_millis(BUSY_TIMEOUT_MS))
        .map_err(sql)?;
    Ok(conn)
}

// Every migration brings the file one version up, to the store's.
const _: () = assert!(MIGRATIONS.len() as i64 == SCHEMA_VERSION);

/// Opens (creating if needed) and prepares the database at `path`.
///
/// # Errors
/// [`StoreError::NotDurable`] when the file is not a SQLite database or is
/// one of another program; [`StoreError::NewerSchema`] when a newer
/// `durable` wrote it; [`StoreError::Sqlite`] for anything else.
pub(crate) fn open(
    path: &Path,
    durability: super::Durability,
    upgrade: bool,
) -> Result<Connection, StoreError> {
    let sql = |source| StoreError::Sqlite {
        context: format!("opening {}", path.display()),
        source,
    };
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(sql)?;
    conn.busy_timeout(std::time::Duration::from_millis(BUSY_TIMEOUT_MS))
        .map_err(sql)?;

    // The first read tells a SQLite file from anything else.
    let (app_id, version, tables) = identify(&conn).map_err(|e| match e {
        rusqlite::Error::SqliteFailure(f, _)
            if matches!(
                f.code,
                rusqlite::ErrorCode::NotADatabase | rusqlite::ErrorCode::DatabaseCorrupt
            ) =>
        {
            StoreError::NotDurable {
                path: path.to_path_buf(),
                reason: "it is not a SQLite database (or it is corrupt)".into(),
            }
        }
        other => StoreError::from_sqlite(format!("reading {}", path.display()), other),
    })?;
    if app_id != APPLICATION_ID && (app_id != 0 || tables > 0) {
        return Err(StoreError::NotDurable {
            path: path.to_path_buf(),
            reason: "it is a SQLite database of another program".into(),
        });
    }
    if version > SCHEMA_VERSION {
        return Err(StoreError::NewerSchema {
            path: path.to_path_buf(),
            found: version,
            supported: SCHEMA_VERSION,
        });
    }
    // (A new, empty file has version 0 and no tables: it is created.)
    if !upgrade && version > 0 && version < SCHEMA_VERSION {
        return Err(StoreError::OlderSchema {
            path: path.to_path_buf(),
            found: version,
            supported: SCHEMA_VERSION,
        });
    }

    // A new database gets pages of 1 KiB instead of SQLite's 4 KiB. A step's
    // commit changes a few small rows, and every page it changes is written
    // whole to the WAL: a sequential step writes 6.4 KB instead of 10 KB
    // (W1, with an fsync per commit), and runs about 15% faster. The size
    // can only be set before the first table exists; older databases keep
    // theirs.
    if version == 0 {
        conn.execute_batch(&format!("PRAGMA page_size = {PAGE_SIZE}"))
            .map_err(sql)?;
    }
    // WAL lets readers run beside the writer; FULL syncs the WAL on every
    // commit, which is what makes a committed step survive power loss.
    let mode: String = conn
        .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
        .map_err(sql)?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::Sqlite {
            context: format!(
                "{}: journal_mode is {mode}, WAL is required",
                path.display()
            ),
            source: rusqlite::Error::InvalidQuery,
        });
    }
    // Migrations rebuild tables, which SQLite allows only with foreign keys
    // off (the bundled SQLite turns them on by default); they are checked
    // once the migration is done.
    let synchronous = match durability {
        super::Durability::PowerLoss => "FULL",
        super::Durability::ProcessCrash => "NORMAL",
    };
    conn.execute_batch(&format!(
        "PRAGMA synchronous = {synchronous}; PRAGMA foreign_keys = OFF;"
    ))
    .map_err(sql)?;
    migrate(&conn, version)
        .map_err(|e| StoreError::from_sqlite("migrating the schema".into(), e))?;
    conn.execute_batch("PRAGMA foreign_keys = ON;")
        .map_err(sql)?;
    Ok(conn)
}

fn identify(conn: &Connection) -> rusqlite::Result<(i32, i64, i64)> {
    let app_id = conn.query_row("PRAGMA application_id", [], |r| r.get(0))?;
    let version = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    let tables = conn.query_row("SELECT count(*) FROM sqlite_schema", [], |r| r.get(0))?;
    Ok((app_id, version, tables))
}

fn migrate(conn: &Connection, from: i64) -> rusqlite::Result<()> {
    if from == SCHEMA_VERSION {
        return Ok(());
    }
    let tx = rusqlite::Transaction::new_unchecked(conn, rusqlite::TransactionBehavior::Immediate)?;
    // Another process may have migrated while we waited for the lock.
    let now: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    for (i, step) in MIGRATIONS.iter().enumerate().skip(now as usize) {
        tx.execute_batch(step)?;
        tx.execute_batch(&format!("PRAGMA user_version = {}", i + 1))?;
    }
    let broken: i64 = tx.query_row("SELECT count(*) FROM pragma_foreign_key_check", [], |r| {
        r.get(0)
    })?;
    if broken > 0 {
        return Err(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CONSTRAINT_FOREIGNKEY),
            Some(format!(
                "the migration left {broken} dangling references; nothing was changed"
            )),
        ));
    }
    tx.execute_batch(&format!("PRAGMA application_id = {APPLICATION_ID}"))?;
    tx.commit()
}
