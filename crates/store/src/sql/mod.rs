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

#[cfg(feature = "postgres")]
mod pg;

mod value;

#[cfg(feature = "postgres")]
pub(crate) use pg::{PgConn, PgTx};
use value::bind;
pub(crate) use value::{Arg, Value};

use crate::StoreError;

/// Which database a statement runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(not(feature = "postgres"), allow(dead_code))]
pub(crate) enum Dialect {
    Sqlite,
    Postgres,
}

/// The parameters of a statement: `args![a, b]` is `&[&a, &b]` as
/// `&[&dyn Arg]`.
macro_rules! args {
    ($($a:expr),* $(,)?) => {
        &[$(&$a as &dyn $crate::sql::Arg),*]
    };
}
pub(crate) use args;

/// Why a column could not be read.
#[derive(Debug)]
pub(crate) enum ColumnError {
    Sqlite(rusqlite::Error),
    #[cfg(feature = "postgres")]
    Postgres(String),
}

/// A column type the store reads.
pub(crate) trait Column: Sized {
    fn sqlite(row: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<Self>;
    #[cfg(feature = "postgres")]
    fn postgres(row: &tokio_postgres::Row, i: usize) -> Result<Self, String>;
}

macro_rules! int_column {
    ($($t:ty),*) => {$(
        impl Column for Option<$t> {
            fn sqlite(row: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<Self> {
                row.get(i)
            }
            #[cfg(feature = "postgres")]
            fn postgres(row: &tokio_postgres::Row, i: usize) -> Result<Self, String> {
                pg::pg_int(row, i)?
                    .map(|v| <$t>::try_from(v).map_err(|e| format!("column {i}: {e}")))
                    .transpose()
            }
        }
        impl Column for $t {
            fn sqlite(row: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<Self> {
                row.get(i)
            }
            #[cfg(feature = "postgres")]
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
            #[cfg(feature = "postgres")]
            fn postgres(row: &tokio_postgres::Row, i: usize) -> Result<Self, String> {
                row.try_get(i).map_err(|e| e.to_string())
            }
        }
        impl Column for Option<$t> {
            fn sqlite(row: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<Self> {
                row.get(i)
            }
            #[cfg(feature = "postgres")]
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
    #[cfg(feature = "postgres")]
    Postgres(&'a tokio_postgres::Row),
}

impl Row<'_> {
    /// Column `i` (from 0).
    pub(crate) fn get<T: Column>(&self, i: usize) -> Result<T, ColumnError> {
        match self {
            Row::Sqlite(r) => T::sqlite(r, i).map_err(ColumnError::Sqlite),
            #[cfg(feature = "postgres")]
            Row::Postgres(r) => T::postgres(r, i).map_err(ColumnError::Postgres),
        }
    }
}

/// An open transaction.
pub(crate) enum Tx<'a> {
    Sqlite(&'a rusqlite::Transaction<'a>),
    #[cfg(feature = "postgres")]
    Postgres(&'a PgTx<'a>),
}

impl<'a> Tx<'a> {
    /// A transaction of SQLite.
    pub(crate) fn sqlite(tx: &'a rusqlite::Transaction<'a>) -> Tx<'a> {
        Tx::Sqlite(tx)
    }

    /// A transaction of PostgreSQL.
    #[cfg(feature = "postgres")]
    pub(crate) fn postgres(tx: &'a PgTx<'a>) -> Tx<'a> {
        Tx::Postgres(tx)
    }

    /// Now, in ms since the Unix epoch, by the clock every host of this
    /// database agrees on: this machine's for SQLite (one machine), the
    /// database server's for PostgreSQL (measured every 30 s). Leases are
    /// written and judged by it, so a host whose clock is off by more than
    /// a lease neither loses its runs nor takes another's.
    pub(crate) fn now_ms(&self) -> i64 {
        match self {
            Tx::Sqlite(_) => durable_core::now_ms(),
            #[cfg(feature = "postgres")]
            Tx::Postgres(tx) => durable_core::now_ms().saturating_add(tx.clock_offset_ms),
        }
    }

    /// Which database this is.
    pub(crate) fn dialect(&self) -> Dialect {
        match self {
            Tx::Sqlite(_) => Dialect::Sqlite,
            #[cfg(feature = "postgres")]
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
            #[cfg(feature = "postgres")]
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
            #[cfg(feature = "postgres")]
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
            #[cfg(feature = "postgres")]
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
        #[cfg(feature = "postgres")]
        ColumnError::Postgres(e) => StoreError::Corrupt(format!("{context}: {e}")),
    }
}
