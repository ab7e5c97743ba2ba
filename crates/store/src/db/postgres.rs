//! The PostgreSQL database: its schema, created and checked on open.
//!
//! The tables are SQLite's (`sqlite.rs`, schema version 12) in PostgreSQL's
//! types: integers are `BIGINT`, text keys compare byte-wise (`COLLATE
//! "C"`, as SQLite does), and the row ids SQLite gives `events.seq` and
//! `output.id` are identity columns. The version is kept in
//! `durable_schema`; a newer one is refused, like SQLite's `user_version`,
//! and an older one upgraded (PostgreSQL's first schema was version 6: a
//! new database is created at 6 and upgraded like an old one).

use crate::StoreError;
use crate::location::redact;
use crate::schema::SCHEMA_VERSION;
use crate::sql::PgConn;

/// Any number, the same for every host: serializes schema creation.
const SCHEMA_LOCK: i64 = 0x4455_5241_0001;

/// The tables, as of [`FIRST_VERSION`]; [`UPGRADES`] take them on to
/// [`SCHEMA_VERSION`].
const TABLES: &str = r#"
CREATE TABLE components (
    digest      TEXT COLLATE "C" PRIMARY KEY,
    bytes       BYTEA NOT NULL,
    added_at_ms BIGINT NOT NULL
);

CREATE TABLE runs (
    id                     TEXT COLLATE "C" PRIMARY KEY,
    workflow               TEXT COLLATE "C" NOT NULL,
    component_digest       TEXT COLLATE "C" NOT NULL REFERENCES components(digest),
    input                  TEXT NOT NULL,
    status                 TEXT NOT NULL
                           CHECK (status IN ('running', 'waiting', 'succeeded', 'failed', 'cancelled')),
    output                 TEXT,
    error                  TEXT,
    seed                   BIGINT NOT NULL,
    created_at_ms          BIGINT NOT NULL,
    finished_at_ms         BIGINT,
    owner                  TEXT,
    lease_until_ms         BIGINT,
    clock_ms               BIGINT NOT NULL,
    drives                 BIGINT NOT NULL DEFAULT 0,
    cancel_requested_at_ms BIGINT,
    forked_from            TEXT,
    waiting_for            TEXT,
    wake_at_ms             BIGINT,
    wait_event             TEXT
);
CREATE INDEX runs_by_status ON runs(status, created_at_ms);
CREATE INDEX runs_by_created ON runs(created_at_ms);
CREATE INDEX runs_by_wake ON runs(status, wake_at_ms);

CREATE TABLE steps (
    run_id         TEXT COLLATE "C" NOT NULL REFERENCES runs(id),
    key            TEXT COLLATE "C" NOT NULL,
    parent         TEXT COLLATE "C" NOT NULL,
    position       BIGINT NOT NULL,
    name           TEXT NOT NULL,
    input_digest   TEXT NOT NULL,
    outcome        TEXT NOT NULL CHECK (outcome IN ('ok', 'failed', 'trapped', 'timed-out')),
    value          TEXT NOT NULL,
    attempts       BIGINT NOT NULL,
    started_at_ms  BIGINT NOT NULL,
    finished_at_ms BIGINT NOT NULL,
    drive          BIGINT NOT NULL DEFAULT 1,
    batch          BIGINT,
    input          TEXT,
    PRIMARY KEY (run_id, key),
    UNIQUE (run_id, parent, position)
);

CREATE TABLE attempts (
    run_id         TEXT COLLATE "C" NOT NULL REFERENCES runs(id),
    key            TEXT COLLATE "C" NOT NULL,
    attempt        BIGINT NOT NULL,
    outcome        TEXT NOT NULL CHECK (outcome IN ('failed', 'trapped', 'timed-out')),
    value          TEXT NOT NULL,
    started_at_ms  BIGINT NOT NULL,
    finished_at_ms BIGINT NOT NULL,
    PRIMARY KEY (run_id, key, attempt)
);

CREATE TABLE output (
    id     BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    run_id TEXT COLLATE "C" NOT NULL REFERENCES runs(id),
    key    TEXT COLLATE "C" NOT NULL,
    drive  BIGINT NOT NULL,
    at_ms  BIGINT NOT NULL,
    kind   TEXT NOT NULL,
    line   TEXT NOT NULL
);
CREATE INDEX output_by_step ON output(run_id, key, id);

CREATE TABLE superseded_steps (
    run_id           TEXT COLLATE "C" NOT NULL REFERENCES runs(id),
    key              TEXT COLLATE "C" NOT NULL,
    parent           TEXT COLLATE "C" NOT NULL,
    position         BIGINT NOT NULL,
    name             TEXT NOT NULL,
    input_digest     TEXT NOT NULL,
    outcome          TEXT NOT NULL,
    value            TEXT NOT NULL,
    attempts         BIGINT NOT NULL,
    started_at_ms    BIGINT NOT NULL,
    finished_at_ms   BIGINT NOT NULL,
    drive            BIGINT NOT NULL,
    batch            BIGINT,
    superseded_at_ms BIGINT NOT NULL,
    superseded_in    BIGINT NOT NULL
);
CREATE INDEX superseded_steps_by_run ON superseded_steps(run_id, key);

CREATE TABLE superseded_attempts (
    run_id           TEXT COLLATE "C" NOT NULL REFERENCES runs(id),
    key              TEXT COLLATE "C" NOT NULL,
    attempt          BIGINT NOT NULL,
    outcome          TEXT NOT NULL,
    value            TEXT NOT NULL,
    started_at_ms    BIGINT NOT NULL,
    finished_at_ms   BIGINT NOT NULL,
    superseded_at_ms BIGINT NOT NULL
);
CREATE INDEX superseded_attempts_by_run ON superseded_attempts(run_id, key);

CREATE TABLE events (
    seq         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    run_id      TEXT COLLATE "C" NOT NULL REFERENCES runs(id),
    name        TEXT COLLATE "C" NOT NULL,
    event_id    TEXT COLLATE "C",
    payload     TEXT NOT NULL,
    sent_at_ms  BIGINT NOT NULL,
    consumed_by TEXT COLLATE "C",
    UNIQUE (run_id, event_id)
);
CREATE INDEX events_by_name ON events(run_id, name, seq);

CREATE TABLE waits (
    run_id      TEXT COLLATE "C" NOT NULL REFERENCES runs(id),
    key         TEXT COLLATE "C" NOT NULL,
    deadline_ms BIGINT,
    since_ms    BIGINT,
    PRIMARY KEY (run_id, key)
);

CREATE TABLE drive_starts (
    run_id        TEXT COLLATE "C" NOT NULL REFERENCES runs(id),
    drive         BIGINT NOT NULL,
    started_at_ms BIGINT NOT NULL,
    PRIMARY KEY (run_id, drive)
);
"#;

/// What takes a database of an older version to the next one: `UPGRADES[i]`
/// goes from version `FIRST_VERSION + i` to the next, as SQLite's
/// migrations of the same number do.
const UPGRADES: &[&str] = &[
    r#"
ALTER TABLE superseded_steps ADD COLUMN input TEXT;
CREATE TABLE component_switches (
    run_id      TEXT COLLATE "C" NOT NULL REFERENCES runs(id),
    drive       BIGINT NOT NULL,
    at_ms       BIGINT NOT NULL,
    from_digest TEXT COLLATE "C" NOT NULL,
    to_digest   TEXT COLLATE "C" NOT NULL,
    forced_from BIGINT,
    PRIMARY KEY (run_id, drive)
)
"#,
    r#"
ALTER TABLE steps DROP CONSTRAINT steps_run_id_parent_position_key;
ALTER TABLE steps DROP CONSTRAINT steps_pkey;
ALTER TABLE steps ADD PRIMARY KEY (run_id, parent, position)
"#,
    r#"
ALTER TABLE components ADD COLUMN name TEXT;
CREATE INDEX runs_by_component ON runs(component_digest)
"#,
    r#"
ALTER TABLE runs ADD COLUMN parent_id TEXT COLLATE "C";
ALTER TABLE runs ADD COLUMN parent_key TEXT COLLATE "C";
CREATE INDEX runs_by_parent ON runs(parent_id, created_at_ms) WHERE parent_id IS NOT NULL;
ALTER TABLE waits ADD COLUMN name TEXT COLLATE "C"
"#,
    r#"
ALTER TABLE runs DROP CONSTRAINT runs_status_check;
ALTER TABLE runs ADD CONSTRAINT runs_status_check
    CHECK (status IN ('queued', 'running', 'waiting', 'succeeded', 'failed', 'cancelled'));
ALTER TABLE runs ADD COLUMN queue TEXT COLLATE "C";
ALTER TABLE runs ADD COLUMN queue_key TEXT COLLATE "C";
ALTER TABLE runs ADD COLUMN priority BIGINT NOT NULL DEFAULT 0;
ALTER TABLE runs ADD COLUMN queue_seq BIGINT;
ALTER TABLE runs ADD COLUMN debounce_key TEXT COLLATE "C";
ALTER TABLE runs ADD COLUMN not_before_ms BIGINT;
CREATE UNIQUE INDEX runs_debouncing ON runs(workflow, debounce_key)
    WHERE status = 'queued' AND debounce_key IS NOT NULL;
CREATE INDEX runs_queued ON runs(queue, priority DESC, queue_seq) WHERE status = 'queued';
CREATE INDEX runs_by_queue ON runs(queue, status, queue_key) WHERE queue IS NOT NULL;
CREATE TABLE queues (
    name                TEXT COLLATE "C" PRIMARY KEY,
    concurrency         BIGINT,
    concurrency_key     TEXT,
    per_key_concurrency BIGINT,
    rate_count          BIGINT,
    rate_per_ms         BIGINT,
    burst               BIGINT NOT NULL DEFAULT 1,
    milli_tokens        BIGINT,
    refilled_at_ms      BIGINT,
    next_seq            BIGINT NOT NULL DEFAULT 0,
    updated_at_ms       BIGINT NOT NULL
);
CREATE TABLE step_limits (
    name        TEXT COLLATE "C" PRIMARY KEY,
    concurrency BIGINT NOT NULL
);
CREATE TABLE step_slots (
    name     TEXT COLLATE "C" NOT NULL,
    run_id   TEXT COLLATE "C" NOT NULL,
    key      TEXT COLLATE "C" NOT NULL,
    owner    TEXT COLLATE "C" NOT NULL,
    since_ms BIGINT NOT NULL,
    PRIMARY KEY (name, run_id, key)
)
"#,
    r#"
CREATE TABLE run_tags (
    run_id TEXT COLLATE "C" NOT NULL,
    key    TEXT COLLATE "C" NOT NULL,
    value  TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (run_id, key)
);
CREATE INDEX run_tags_by_value ON run_tags(key, value, run_id);
CREATE INDEX runs_by_finished ON runs(finished_at_ms, id) WHERE finished_at_ms IS NOT NULL;
ALTER TABLE runs ADD COLUMN trace_parent TEXT COLLATE "C"
"#,
];

/// The version of PostgreSQL's first schema.
const FIRST_VERSION: i64 = 6;

/// Connects to `url`, committing per `synchronous`: `synchronous_commit`
/// on (the server's default) or off (see `Durability`).
///
/// A transaction left idle longer than half a lease is ended by the server:
/// a host paused in the middle of one (SIGSTOP, a VM frozen, a long GC
/// elsewhere) would otherwise keep its runs' rows locked, and no other host
/// could take them over when its lease runs out.
pub(crate) fn connect(url: &str, synchronous: bool, lease_ms: i64) -> Result<PgConn, StoreError> {
    let idle = (lease_ms / 2).max(500);
    let mut setup = vec![format!("SET idle_in_transaction_session_timeout = {idle}")];
    if !synchronous {
        setup.push("SET synchronous_commit = off".into());
    }
    PgConn::connect_with(url, setup)
}

/// Connects to `url` and makes sure its database holds durable's tables at
/// this build's version: created in an empty database (one host at a time),
/// refused when the database belongs to another program or to a newer
/// durable.
///
/// # Errors
/// [`StoreError::Postgres`] when the server cannot be reached;
/// [`StoreError::NotDurable`] or [`StoreError::NewerSchema`].
pub(crate) fn open(
    url: &str,
    synchronous: bool,
    lease_ms: i64,
    upgrade: bool,
) -> Result<PgConn, StoreError> {
    let mut conn = connect(url, synchronous, lease_ms)?;
    let where_ = redact(url);
    let txn = conn.begin("preparing the schema")?;
    let tx = crate::sql::Tx::postgres(&txn);
    tx.one(
        "preparing the schema",
        "SELECT 1 FROM (SELECT pg_advisory_xact_lock(?1)) AS locked",
        crate::sql::args![SCHEMA_LOCK],
        |_| Ok(()),
    )?;
    let table = |name: &str| -> Result<bool, StoreError> {
        Ok(tx
            .opt(
                "reading the schema",
                "SELECT 1 FROM information_schema.tables
                 WHERE table_schema = current_schema() AND table_name = ?1",
                crate::sql::args![name],
                |_| Ok(()),
            )?
            .is_some())
    };
    let found = if table("durable_schema")? {
        let found: i64 = tx.one(
            "reading the schema version",
            "SELECT version FROM durable_schema",
            crate::sql::args![],
            |r| r.get(0),
        )?;
        if found > SCHEMA_VERSION {
            return Err(StoreError::NewerSchema {
                path: where_.into(),
                found,
                supported: SCHEMA_VERSION,
            });
        }
        if !upgrade && found < SCHEMA_VERSION {
            return Err(StoreError::OlderSchema {
                path: where_.into(),
                found,
                supported: SCHEMA_VERSION,
            });
        }
        found
    } else if table("runs")? {
        return Err(StoreError::NotDurable {
            path: where_.into(),
            reason: "it has a table `runs` but no `durable_schema`: it belongs to another \
                     program; give durable a database of its own"
                .into(),
        });
    } else {
        for statement in TABLES.split(';').filter(|s| !s.trim().is_empty()) {
            tx.exec("creating the schema", statement, crate::sql::args![])?;
        }
        tx.exec(
            "creating the schema",
            "CREATE TABLE durable_schema (version BIGINT NOT NULL)",
            crate::sql::args![],
        )?;
        tx.exec(
            "creating the schema",
            "INSERT INTO durable_schema (version) VALUES (?1)",
            crate::sql::args![FIRST_VERSION],
        )?;
        FIRST_VERSION
    };
    for version in found.max(FIRST_VERSION)..SCHEMA_VERSION {
        let upgrade = UPGRADES
            .get((version - FIRST_VERSION) as usize)
            .ok_or_else(|| {
                StoreError::Corrupt(format!("no upgrade from schema version {version}"))
            })?;
        for statement in upgrade.split(';').filter(|s| !s.trim().is_empty()) {
            tx.exec("upgrading the schema", statement, crate::sql::args![])?;
        }
        tx.exec(
            "upgrading the schema",
            "UPDATE durable_schema SET version = ?1",
            crate::sql::args![version + 1],
        )?;
    }
    txn.commit()?;
    Ok(conn)
}
