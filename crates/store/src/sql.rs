//! Statements without a driver's types: the store's logic runs its SQL
//! through [`Tx`] and reads results through [`Row`], binding [`Arg`]s, so
//! that the logic does not depend on one database client's API. Each
//! statement is prepared once per connection (cached by its text).
//!
//! SQL is written once, in the subset both SQLite and PostgreSQL read
//! (`INSERT ... ON CONFLICT`, `octet_length`, `CAST(? AS BIGINT)` where a
//! parameter's type would be unknown), with `?N` parameters, which become
//! `$N` for PostgreSQL. Where the two must differ, [`Tx::dialect`] says
//! which one runs; `/*FOR UPDATE*/` marks the reads that must lock their
//! row on PostgreSQL, where several hosts write at once, and `/*SKIP
//! LOCKED*/` the claims that pass over a row another host is locking
//! (SQLite has one writer at a time, so these are just comments there).

use std::cell::RefCell;
use std::collections::HashMap;

use rusqlite::types::{ToSqlOutput, ValueRef};
use tokio_postgres::types::{IsNull, ToSql, Type};

use crate::StoreError;

/// Which database a statement runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    Sqlite,
    Postgres,
}

/// A value bound to a statement parameter.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Value<'a> {
    Null,
    Int(i64),
    Text(&'a str),
    Blob(&'a [u8]),
}

/// What can be bound to a parameter.
pub(crate) trait Arg {
    fn value(&self) -> Value<'_>;
}

macro_rules! int_arg {
    ($($t:ty),*) => {$(
        impl Arg for $t {
            fn value(&self) -> Value<'_> {
                Value::Int(*self as i64)
            }
        }
    )*};
}
int_arg!(i64, i32, u32, u64, usize);

impl Arg for bool {
    fn value(&self) -> Value<'_> {
        Value::Int(i64::from(*self))
    }
}

impl Arg for str {
    fn value(&self) -> Value<'_> {
        Value::Text(self)
    }
}

impl Arg for String {
    fn value(&self) -> Value<'_> {
        Value::Text(self)
    }
}

impl Arg for [u8] {
    fn value(&self) -> Value<'_> {
        Value::Blob(self)
    }
}

impl Arg for Vec<u8> {
    fn value(&self) -> Value<'_> {
        Value::Blob(self)
    }
}

impl<T: Arg + ?Sized> Arg for &T {
    fn value(&self) -> Value<'_> {
        (**self).value()
    }
}

impl<T: Arg> Arg for Option<T> {
    fn value(&self) -> Value<'_> {
        self.as_ref().map_or(Value::Null, Arg::value)
    }
}

/// The parameters of a statement: `args![a, b]` is `&[&a, &b]` as
/// `&[&dyn Arg]`.
macro_rules! args {
    ($($a:expr),* $(,)?) => {
        &[$(&$a as &dyn $crate::sql::Arg),*]
    };
}
pub(crate) use args;

#[derive(Debug)]
struct Bound<'a>(Value<'a>);

impl rusqlite::ToSql for Bound<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Borrowed(match self.0 {
            Value::Null => ValueRef::Null,
            Value::Int(i) => ValueRef::Integer(i),
            Value::Text(s) => ValueRef::Text(s.as_bytes()),
            Value::Blob(b) => ValueRef::Blob(b),
        }))
    }
}

fn bind<'a>(args: &'a [&'a dyn Arg]) -> impl Iterator<Item = Bound<'a>> {
    args.iter().map(|a| Bound(a.value()))
}

impl ToSql for Bound<'_> {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut bytes::BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match self.0 {
            Value::Null => Ok(IsNull::Yes),
            Value::Int(i) => match *ty {
                Type::INT8 => i.to_sql(ty, out),
                Type::INT4 => i32::try_from(i)?.to_sql(ty, out),
                Type::INT2 => i16::try_from(i)?.to_sql(ty, out),
                Type::BOOL => (i != 0).to_sql(ty, out),
                _ => Err(format!("an integer cannot be bound to a parameter of type {ty}").into()),
            },
            Value::Text(t) => t.to_sql(ty, out),
            Value::Blob(b) => b.to_sql(ty, out),
        }
    }

    fn accepts(_: &Type) -> bool {
        // Checked per value in to_sql: the parameter's type is the server's.
        true
    }

    tokio_postgres::types::to_sql_checked!();
}

/// Why a column could not be read.
#[derive(Debug)]
pub(crate) enum ColumnError {
    Sqlite(rusqlite::Error),
    Postgres(String),
}

/// A column type the store reads.
pub(crate) trait Column: Sized {
    fn sqlite(row: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<Self>;
    fn postgres(row: &tokio_postgres::Row, i: usize) -> Result<Self, String>;
}

/// An integer column of PostgreSQL, whatever its width.
fn pg_int(row: &tokio_postgres::Row, i: usize) -> Result<Option<i64>, String> {
    let ty = row
        .columns()
        .get(i)
        .map(|c| c.type_().clone())
        .ok_or_else(|| format!("no column {i}"))?;
    let read = match ty {
        Type::INT8 => row.try_get::<_, Option<i64>>(i),
        Type::INT4 => row.try_get::<_, Option<i32>>(i).map(|v| v.map(i64::from)),
        Type::INT2 => row.try_get::<_, Option<i16>>(i).map(|v| v.map(i64::from)),
        other => return Err(format!("column {i} is {other}, not an integer")),
    };
    read.map_err(|e| e.to_string())
}

macro_rules! int_column {
    ($($t:ty),*) => {$(
        impl Column for Option<$t> {
            fn sqlite(row: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<Self> {
                row.get(i)
            }
            fn postgres(row: &tokio_postgres::Row, i: usize) -> Result<Self, String> {
                pg_int(row, i)?
                    .map(|v| <$t>::try_from(v).map_err(|e| format!("column {i}: {e}")))
                    .transpose()
            }
        }
        impl Column for $t {
            fn sqlite(row: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<Self> {
                row.get(i)
            }
            fn postgres(row: &tokio_postgres::Row, i: usize) -> Result<Self, String> {
                Option::<$t>::postgres(row, i)?.ok_or_else(|| format!("column {i} is null"))
            }
        }
    )*};
}
int_column!(i64, u32);

macro_rules! column {
    ($($t:ty),*) => {$(
        impl Column for $t {
            fn sqlite(row: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<Self> {
                row.get(i)
            }
            fn postgres(row: &tokio_postgres::Row, i: usize) -> Result<Self, String> {
                row.try_get(i).map_err(|e| e.to_string())
            }
        }
        impl Column for Option<$t> {
            fn sqlite(row: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<Self> {
                row.get(i)
            }
            fn postgres(row: &tokio_postgres::Row, i: usize) -> Result<Self, String> {
                row.try_get(i).map_err(|e| e.to_string())
            }
        }
    )*};
}
column!(String, Vec<u8>);

/// A result row.
pub(crate) enum Row<'a> {
    Sqlite(&'a rusqlite::Row<'a>),
    Postgres(&'a tokio_postgres::Row),
}

impl Row<'_> {
    /// Column `i` (from 0).
    pub(crate) fn get<T: Column>(&self, i: usize) -> Result<T, ColumnError> {
        match self {
            Row::Sqlite(r) => T::sqlite(r, i).map_err(ColumnError::Sqlite),
            Row::Postgres(r) => T::postgres(r, i).map_err(ColumnError::Postgres),
        }
    }
}

/// A PostgreSQL connection driven from a plain thread: the async client on
/// a runtime of its own, and its prepared statements.
pub(crate) struct PgConn {
    /// Always `Some` but in `drop`.
    runtime: Option<tokio::runtime::Runtime>,
    client: tokio_postgres::Client,
    statements: RefCell<HashMap<String, tokio_postgres::Statement>>,
    /// Where it connected, and the settings it made: to connect again.
    url: String,
    setup: Vec<String>,
    /// The database's clock minus this machine's, in ms, and when it was
    /// last measured (again every [`CLOCK_REFRESH`]).
    clock: std::cell::Cell<(i64, Option<std::time::Instant>)>,
}

/// How often a connection measures the database's clock against this
/// machine's.
const CLOCK_REFRESH: std::time::Duration = std::time::Duration::from_secs(30);

impl Drop for PgConn {
    fn drop(&mut self) {
        // A handle may be dropped inside the application's runtime, where
        // a runtime must not wait for its threads: let it go without.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl PgConn {
    /// Connects to `url` (a `postgres://` URL) and runs `setup` (session
    /// settings), again after each reconnection.
    pub(crate) fn connect_with(url: &str, setup: Vec<String>) -> Result<PgConn, StoreError> {
        let mut conn = PgConn::connect(url)?;
        for statement in &setup {
            conn.batch("setting up the connection", statement)?;
        }
        conn.setup = setup;
        Ok(conn)
    }

    /// Connects to `url` (a `postgres://` URL).
    pub(crate) fn connect(url: &str) -> Result<PgConn, StoreError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| StoreError::Io {
                context: "starting the PostgreSQL client's runtime".into(),
                source: e,
            })?;
        let target = crate::pg_tls::target(url)?;
        let client = runtime.block_on(target.connect()).map_err(|e| {
            StoreError::from_postgres(format!("connecting to {}", crate::location::redact(url)), e)
        })?;
        Ok(PgConn {
            runtime: Some(runtime),
            client,
            statements: RefCell::new(HashMap::new()),
            url: url.to_string(),
            setup: Vec::new(),
            clock: std::cell::Cell::new((0, None)),
        })
    }

    /// Runs `sql` (no parameters, several statements allowed) outside a
    /// transaction.
    pub(crate) fn batch(&self, context: &str, sql: &str) -> Result<(), StoreError> {
        self.runtime()?
            .block_on(self.client.batch_execute(sql))
            .map_err(|e| StoreError::from_postgres(context.to_string(), e))
    }

    fn runtime(&self) -> Result<&tokio::runtime::Runtime, StoreError> {
        self.runtime.as_ref().ok_or(StoreError::Closed)
    }

    /// Begins a transaction, on a new connection if the server closed this
    /// one (a restart, or the idle-in-transaction timeout that freed the
    /// rows of a host that was paused).
    pub(crate) fn begin(&mut self, context: &str) -> Result<PgTx<'_>, StoreError> {
        if self.client.is_closed() {
            tracing::warn!("the connection to PostgreSQL was closed; connecting again");
            *self = PgConn::connect_with(&self.url, self.setup.clone())?;
        }
        let PgConn {
            runtime,
            client,
            statements,
            clock,
            ..
        } = self;
        let runtime = runtime.as_ref().ok_or(StoreError::Closed)?;
        let tx = runtime
            .block_on(client.transaction())
            .map_err(|e| StoreError::from_postgres(context.to_string(), e))?;
        let (mut offset, measured) = clock.get();
        if measured.is_none_or(|at| at.elapsed() >= CLOCK_REFRESH) {
            // The middle of the round trip is when the database read its
            // clock, within half of it (well under a millisecond nearby).
            let before = durable_core::now_ms();
            let db: i64 = runtime
                .block_on(tx.query_one(
                    "SELECT CAST(floor(extract(epoch FROM clock_timestamp()) * 1000) AS BIGINT)",
                    &[],
                ))
                .and_then(|row| row.try_get(0))
                .map_err(|e| StoreError::from_postgres("reading the database's clock".into(), e))?;
            let after = durable_core::now_ms();
            offset = db - (before + (after - before) / 2);
            clock.set((offset, Some(std::time::Instant::now())));
        }
        Ok(PgTx {
            tx,
            runtime,
            statements,
            clock_offset_ms: offset,
        })
    }
}

/// An open transaction of a [`PgConn`].
pub(crate) struct PgTx<'a> {
    tx: tokio_postgres::Transaction<'a>,
    runtime: &'a tokio::runtime::Runtime,
    statements: &'a RefCell<HashMap<String, tokio_postgres::Statement>>,
    /// See [`PgConn::clock`].
    clock_offset_ms: i64,
}

impl PgTx<'_> {
    /// The statements' [`Tx`].
    pub(crate) fn tx(&self) -> Tx<'_> {
        Tx::Postgres(self)
    }

    /// Commits.
    pub(crate) fn commit(self) -> Result<(), StoreError> {
        self.runtime
            .block_on(self.tx.commit())
            .map_err(|e| StoreError::from_postgres("committing".into(), e))
    }

    fn statement(&self, sql: &str) -> Result<tokio_postgres::Statement, tokio_postgres::Error> {
        if let Some(s) = self.statements.borrow().get(sql) {
            return Ok(s.clone());
        }
        let prepared = self.runtime.block_on(self.tx.prepare(&postgres_sql(sql)))?;
        self.statements
            .borrow_mut()
            .insert(sql.to_string(), prepared.clone());
        Ok(prepared)
    }

    fn query(
        &self,
        sql: &str,
        args: &[&dyn Arg],
    ) -> Result<Vec<tokio_postgres::Row>, tokio_postgres::Error> {
        let statement = self.statement(sql)?;
        let bound: Vec<Bound<'_>> = bind(args).collect();
        let params: Vec<&(dyn ToSql + Sync)> =
            bound.iter().map(|b| b as &(dyn ToSql + Sync)).collect();
        self.runtime.block_on(self.tx.query(&statement, &params))
    }

    fn execute(&self, sql: &str, args: &[&dyn Arg]) -> Result<u64, tokio_postgres::Error> {
        let statement = self.statement(sql)?;
        let bound: Vec<Bound<'_>> = bind(args).collect();
        let params: Vec<&(dyn ToSql + Sync)> =
            bound.iter().map(|b| b as &(dyn ToSql + Sync)).collect();
        self.runtime.block_on(self.tx.execute(&statement, &params))
    }
}

/// `sql` as PostgreSQL reads it: `?N` parameters become `$N`, and the
/// `/*FOR UPDATE*/` marks become row locks (`FOR NO KEY UPDATE`).
pub(crate) fn postgres_sql(sql: &str) -> String {
    let sql = sql
        // Not FOR UPDATE: that lock also blocks the key-share locks that
        // inserts of rows referring to the run (events, steps) take, which
        // a lease check never needs to stop.
        .replace("/*FOR UPDATE*/", "FOR NO KEY UPDATE")
        .replace("/*SKIP LOCKED*/", "SKIP LOCKED");
    let mut out = String::with_capacity(sql.len());
    let mut chars = sql.chars().peekable();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        if c == '\'' {
            quoted = !quoted;
        }
        if c == '?' && !quoted && chars.peek().is_some_and(char::is_ascii_digit) {
            out.push('$');
        } else {
            out.push(c);
        }
    }
    out
}

/// An open transaction.
pub(crate) enum Tx<'a> {
    Sqlite(&'a rusqlite::Transaction<'a>),
    Postgres(&'a PgTx<'a>),
}

impl<'a> Tx<'a> {
    /// A transaction of SQLite.
    pub(crate) fn sqlite(tx: &'a rusqlite::Transaction<'a>) -> Tx<'a> {
        Tx::Sqlite(tx)
    }

    /// Now, in ms since the Unix epoch, by the clock every host of this
    /// database agrees on: this machine's for SQLite (one machine), the
    /// database server's for PostgreSQL (measured every 30 s). Leases are
    /// written and judged by it, so a host whose clock is off by more than
    /// a lease neither loses its runs nor takes another's.
    pub(crate) fn now_ms(&self) -> i64 {
        match self {
            Tx::Sqlite(_) => durable_core::now_ms(),
            Tx::Postgres(tx) => durable_core::now_ms().saturating_add(tx.clock_offset_ms),
        }
    }

    /// Which database this is.
    pub(crate) fn dialect(&self) -> Dialect {
        match self {
            Tx::Sqlite(_) => Dialect::Sqlite,
            Tx::Postgres(_) => Dialect::Postgres,
        }
    }

    /// Tells the other hosts of a PostgreSQL database that run `run_id` may
    /// be taken up (a notification on `durable_due`, sent at commit);
    /// nothing on SQLite, whose processes poll.
    pub(crate) fn notify(&self, run_id: &str) -> Result<(), StoreError> {
        if self.dialect() == Dialect::Postgres {
            self.one(
                "waking the other hosts",
                "SELECT pg_notify('durable_due', CAST(?1 AS TEXT))",
                args![run_id],
                |_| Ok(()),
            )?;
        }
        Ok(())
    }

    /// Runs `sql`, one or more statements without parameters, in one round
    /// trip.
    pub(crate) fn batch(&self, context: &str, sql: &str) -> Result<(), StoreError> {
        match self {
            // SQLite has no round trip to save: each statement is prepared
            // once and kept, as on the hot path it is.
            Tx::Sqlite(tx) => sql
                .split(';')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .try_for_each(|statement| {
                    tx.prepare_cached(statement)
                        .and_then(|mut s| s.execute([]))
                        .map(drop)
                })
                .map_err(|e| StoreError::from_sqlite(context.to_string(), e)),
            Tx::Postgres(tx) => tx
                .runtime
                .block_on(tx.tx.batch_execute(sql))
                .map_err(|e| StoreError::from_postgres(context.to_string(), e)),
        }
    }

    /// Runs `sql`; how many rows it changed. `context` names what it does
    /// in the error.
    pub(crate) fn exec(
        &self,
        context: &str,
        sql: &str,
        args: &[&dyn Arg],
    ) -> Result<usize, StoreError> {
        match self {
            Tx::Sqlite(tx) => tx
                .prepare_cached(sql)
                .and_then(|mut s| s.execute(rusqlite::params_from_iter(bind(args))))
                .map_err(|e| StoreError::from_sqlite(context.to_string(), e)),
            Tx::Postgres(tx) => tx
                .execute(sql, args)
                .map(|n| n as usize)
                .map_err(|e| StoreError::from_postgres(context.to_string(), e)),
        }
    }

    /// The first row of `sql` through `f`, if there is one.
    pub(crate) fn opt<T>(
        &self,
        context: &str,
        sql: &str,
        args: &[&dyn Arg],
        f: impl FnMut(&Row<'_>) -> Result<T, ColumnError>,
    ) -> Result<Option<T>, StoreError> {
        Ok(self.rows(context, sql, args, Some(1), f)?.pop())
    }

    /// The first row of `sql` through `f`; an error if there is none.
    pub(crate) fn one<T>(
        &self,
        context: &str,
        sql: &str,
        args: &[&dyn Arg],
        f: impl FnMut(&Row<'_>) -> Result<T, ColumnError>,
    ) -> Result<T, StoreError> {
        self.opt(context, sql, args, f)?
            .ok_or_else(|| StoreError::Corrupt(format!("no row while {context}")))
    }

    /// Every row of `sql` through `f`.
    pub(crate) fn all<T>(
        &self,
        context: &str,
        sql: &str,
        args: &[&dyn Arg],
        f: impl FnMut(&Row<'_>) -> Result<T, ColumnError>,
    ) -> Result<Vec<T>, StoreError> {
        self.rows(context, sql, args, None, f)
    }

    /// The rows of `sql` through `f`, at most `limit`.
    fn rows<T>(
        &self,
        context: &str,
        sql: &str,
        args: &[&dyn Arg],
        limit: Option<usize>,
        mut f: impl FnMut(&Row<'_>) -> Result<T, ColumnError>,
    ) -> Result<Vec<T>, StoreError> {
        let column = |e| column_error(context, e);
        let limit = limit.unwrap_or(usize::MAX);
        match self {
            Tx::Sqlite(tx) => {
                let sqlite = |e| StoreError::from_sqlite(context.to_string(), e);
                let mut stmt = tx.prepare_cached(sql).map_err(sqlite)?;
                let mut rows = stmt
                    .query(rusqlite::params_from_iter(bind(args)))
                    .map_err(sqlite)?;
                let mut out = Vec::new();
                while out.len() < limit
                    && let Some(row) = rows.next().map_err(sqlite)?
                {
                    out.push(f(&Row::Sqlite(row)).map_err(column)?);
                }
                Ok(out)
            }
            Tx::Postgres(tx) => tx
                .query(sql, args)
                .map_err(|e| StoreError::from_postgres(context.to_string(), e))?
                .iter()
                .take(limit)
                .map(|row| f(&Row::Postgres(row)).map_err(column))
                .collect(),
        }
    }
}

fn column_error(context: &str, e: ColumnError) -> StoreError {
    match e {
        ColumnError::Sqlite(e) => StoreError::from_sqlite(context.to_string(), e),
        ColumnError::Postgres(e) => StoreError::Corrupt(format!("{context}: {e}")),
    }
}
