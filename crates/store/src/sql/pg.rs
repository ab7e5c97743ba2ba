//! The PostgreSQL side of the driver seam (feature `postgres`): binding
//! values, reading integer columns of any width, and [`PgConn`], the async
//! client driven from a plain thread.

use std::cell::RefCell;
use std::collections::HashMap;

use tokio_postgres::types::{IsNull, ToSql, Type};

use super::value::{Arg, Bound, Value, bind};
use crate::StoreError;

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

/// An integer column of PostgreSQL, whatever its width.
pub(super) fn pg_int(row: &tokio_postgres::Row, i: usize) -> Result<Option<i64>, String> {
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
    pub(super) tx: tokio_postgres::Transaction<'a>,
    pub(super) runtime: &'a tokio::runtime::Runtime,
    statements: &'a RefCell<HashMap<String, tokio_postgres::Statement>>,
    /// See [`PgConn::clock`].
    pub(super) clock_offset_ms: i64,
}

impl PgTx<'_> {
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

    pub(super) fn query(
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

    pub(super) fn execute(
        &self,
        sql: &str,
        args: &[&dyn Arg],
    ) -> Result<u64, tokio_postgres::Error> {
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
