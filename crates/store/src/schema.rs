//! What makes a database durable's, and which version of its tables it
//! holds, whichever backend it is on.

/// The version of the tables this build writes. A database of a newer
/// version is refused; an older one is upgraded (SQLite: the migrations in
/// `db/sqlite.rs`; PostgreSQL: the upgrades in `db/postgres.rs`), each
/// backend checked to reach exactly this.
pub(crate) const SCHEMA_VERSION: i64 = 12;

/// `application_id` of a durable SQLite file: "DURA" in ASCII.
pub(crate) const APPLICATION_ID: i32 = 0x4455_5241;
