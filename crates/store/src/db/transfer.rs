//! Export and import of runs: every row a run has, in every table keyed by
//! its id, as typed fields, so that another database (SQLite or
//! PostgreSQL) gets the same history. The file format (JSON lines) is the
//! CLI's (`durable export`, `durable import`); this module knows the
//! tables.
//!
//! Left out: who drives a run (`owner`, `lease_until_ms`: an imported run
//! is nobody's), step slots (held only while an attempt runs), and the
//! database's own sequence numbers (`output.id`, `events.seq`: rows are
//! written in their order and numbered by the database that imports them).

use crate::sql::{Arg, Tx, args};

use super::rows::insert_component;
use super::{Store, StoreError};

/// A column's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// An integer.
    Int,
    /// Text.
    Text,
}

/// A value of a column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Field {
    /// NULL.
    Null,
    /// An integer.
    Int(i64),
    /// Text.
    Text(String),
}

impl Arg for Field {
    fn value(&self) -> crate::sql::Value<'_> {
        match self {
            Field::Null => crate::sql::Value::Null,
            Field::Int(i) => crate::sql::Value::Int(*i),
            Field::Text(t) => crate::sql::Value::Text(t),
        }
    }
}

/// A row: its columns' names and values.
pub type Row = Vec<(String, Field)>;

/// A table a run's records are in, and the columns that are exported.
#[derive(Debug)]
pub struct Table {
    /// The table's name.
    pub name: &'static str,
    /// The exported columns, in order.
    pub columns: &'static [(&'static str, Kind)],
    /// The order rows are read and written in.
    order: &'static str,
}

use Kind::{Int as I, Text as T};

/// The run's own row (`runs`), its id first.
pub const RUNS: Table = Table {
    name: "runs",
    columns: &[
        ("id", T),
        ("workflow", T),
        ("component_digest", T),
        ("input", T),
        ("status", T),
        ("output", T),
        ("error", T),
        ("seed", I),
        ("created_at_ms", I),
        ("finished_at_ms", I),
        ("clock_ms", I),
        ("drives", I),
        ("cancel_requested_at_ms", I),
        ("forked_from", T),
        ("waiting_for", T),
        ("wake_at_ms", I),
        ("wait_event", T),
        ("parent_id", T),
        ("parent_key", T),
        ("queue", T),
        ("queue_key", T),
        ("priority", I),
        ("queue_seq", I),
        ("debounce_key", T),
        ("not_before_ms", I),
        ("trace_parent", T),
    ],
    order: "id",
};

/// The tables of a run's records, each with a `run_id` column (not
/// exported: it is the run's), in the order they are imported.
pub const RECORDS: &[Table] = &[
    Table {
        name: "steps",
        columns: &[
            ("key", T),
            ("parent", T),
            ("position", I),
            ("name", T),
            ("input_digest", T),
            ("outcome", T),
            ("value", T),
            ("attempts", I),
            ("started_at_ms", I),
            ("finished_at_ms", I),
            ("drive", I),
            ("batch", I),
            ("input", T),
        ],
        order: "parent, position",
    },
    Table {
        name: "attempts",
        columns: &[
            ("key", T),
            ("attempt", I),
            ("outcome", T),
            ("value", T),
            ("started_at_ms", I),
            ("finished_at_ms", I),
        ],
        order: "key, attempt",
    },
    Table {
        name: "output",
        columns: &[
            ("key", T),
            ("drive", I),
            ("at_ms", I),
            ("kind", T),
            ("line", T),
        ],
        order: "id",
    },
    Table {
        name: "superseded_steps",
        columns: &[
            ("key", T),
            ("parent", T),
            ("position", I),
            ("name", T),
            ("input_digest", T),
            ("outcome", T),
            ("value", T),
            ("attempts", I),
            ("started_at_ms", I),
            ("finished_at_ms", I),
            ("drive", I),
            ("batch", I),
            ("superseded_at_ms", I),
            ("superseded_in", I),
            ("input", T),
        ],
        order: "superseded_at_ms, key",
    },
    Table {
        name: "superseded_attempts",
        columns: &[
            ("key", T),
            ("attempt", I),
            ("outcome", T),
            ("value", T),
            ("started_at_ms", I),
            ("finished_at_ms", I),
            ("superseded_at_ms", I),
        ],
        order: "superseded_at_ms, key, attempt",
    },
    Table {
        name: "events",
        columns: &[
            ("name", T),
            ("event_id", T),
            ("payload", T),
            ("sent_at_ms", I),
            ("consumed_by", T),
        ],
        order: "seq",
    },
    Table {
        name: "waits",
        columns: &[("key", T), ("deadline_ms", I), ("since_ms", I), ("name", T)],
        order: "key",
    },
    Table {
        name: "drive_starts",
        columns: &[("drive", I), ("started_at_ms", I)],
        order: "drive",
    },
    Table {
        name: "component_switches",
        columns: &[
            ("drive", I),
            ("at_ms", I),
            ("from_digest", T),
            ("to_digest", T),
            ("forced_from", I),
        ],
        order: "drive",
    },
    Table {
        name: "run_tags",
        columns: &[("key", T), ("value", T)],
        order: "key",
    },
];

/// Everything a run has.
#[derive(Debug, Clone, PartialEq)]
pub struct RunExport {
    /// Its row of `runs` ([`RUNS`]'s columns).
    pub run: Row,
    /// Its rows in each of [`RECORDS`], by table name.
    pub records: Vec<(String, Vec<Row>)>,
}

impl RunExport {
    /// The run's id.
    pub fn id(&self) -> Option<&str> {
        self.text("id")
    }

    /// The digest of the component the run is on.
    pub fn component_digest(&self) -> Option<&str> {
        self.text("component_digest")
    }

    fn text(&self, column: &str) -> Option<&str> {
        self.run.iter().find_map(|(c, v)| match v {
            Field::Text(t) if c == column => Some(t.as_str()),
            _ => None,
        })
    }
}

/// A stored component.
#[derive(Debug, Clone, PartialEq)]
pub struct ComponentExport {
    /// SHA-256 of its bytes.
    pub digest: String,
    /// The workflow name it was first stored with.
    pub name: Option<String>,
    /// The component.
    pub bytes: Vec<u8>,
}

/// What importing a run did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Imported {
    /// The run was created with its records.
    Created,
    /// A run with its id exists; nothing was written.
    Exists,
}

fn read_rows(tx: &Tx<'_>, table: &Table, key: &str, run_id: &str) -> Result<Vec<Row>, StoreError> {
    let columns: Vec<&str> = table.columns.iter().map(|(c, _)| *c).collect();
    tx.all(
        "exporting a run",
        &format!(
            "SELECT {} FROM {} WHERE {key} = ?1 ORDER BY {}",
            columns.join(", "),
            table.name,
            table.order
        ),
        args![run_id],
        |r| {
            let mut row = Row::with_capacity(table.columns.len());
            for (i, (column, kind)) in table.columns.iter().enumerate() {
                let field = match kind {
                    Kind::Int => r.get::<Option<i64>>(i)?.map_or(Field::Null, Field::Int),
                    Kind::Text => r.get::<Option<String>>(i)?.map_or(Field::Null, Field::Text),
                };
                row.push((column.to_string(), field));
            }
            Ok(row)
        },
    )
}

/// Inserts `row` into `table` (with `run_id` first for a record table):
/// only the table's known columns, by name; a column of the row that the
/// table does not have is refused (an export of a newer durable).
fn insert_row(
    tx: &Tx<'_>,
    table: &Table,
    run_id: Option<&str>,
    row: &Row,
) -> Result<(), StoreError> {
    let mut names: Vec<&str> = Vec::new();
    let mut values: Vec<&dyn Arg> = Vec::new();
    let run_id = run_id.map(str::to_string);
    if let Some(id) = &run_id {
        names.push("run_id");
        values.push(id);
    }
    for (column, field) in row {
        let Some((name, kind)) = table.columns.iter().find(|(c, _)| c == column) else {
            return Err(StoreError::Import(format!(
                "table {} has no column {column:?} (exported by a newer durable?)",
                table.name
            )));
        };
        let fits = matches!(
            (kind, field),
            (_, Field::Null) | (Kind::Int, Field::Int(_)) | (Kind::Text, Field::Text(_))
        );
        if !fits {
            return Err(StoreError::Import(format!(
                "{}.{name}: expected {}",
                table.name,
                if *kind == Kind::Int {
                    "an integer"
                } else {
                    "text"
                }
            )));
        }
        names.push(name);
        values.push(field);
    }
    let marks: Vec<String> = (1..=names.len()).map(|i| format!("?{i}")).collect();
    tx.exec(
        "importing a run",
        &format!(
            "INSERT INTO {} ({}) VALUES ({})",
            table.name,
            names.join(", "),
            marks.join(", ")
        ),
        &values,
    )?;
    Ok(())
}

impl Store {
    /// Everything run `run_id` has, for [`Store::import_run`].
    ///
    /// # Errors
    /// [`StoreError::RunNotFound`].
    pub async fn export_run(&self, run_id: &str) -> Result<RunExport, StoreError> {
        let run_id = run_id.to_string();
        self.read(move |tx| {
            let run = read_rows(tx, &RUNS, "id", &run_id)?
                .pop()
                .ok_or_else(|| StoreError::RunNotFound(run_id.clone()))?;
            let mut records = Vec::new();
            for table in RECORDS {
                records.push((
                    table.name.to_string(),
                    read_rows(tx, table, "run_id", &run_id)?,
                ));
            }
            Ok(RunExport { run, records })
        })
        .await
    }

    /// The component of digest `digest`, if stored.
    ///
    /// # Errors
    /// [`StoreError`] when the read fails.
    pub async fn export_component(
        &self,
        digest: &str,
    ) -> Result<Option<ComponentExport>, StoreError> {
        let digest = digest.to_string();
        self.read(move |tx| {
            tx.opt(
                "exporting a component",
                "SELECT digest, name, bytes FROM components WHERE digest = ?1",
                args![digest],
                |r| {
                    Ok(ComponentExport {
                        digest: r.get(0)?,
                        name: r.get(1)?,
                        bytes: r.get(2)?,
                    })
                },
            )
        })
        .await
    }

    /// Stores an exported component (once per digest), after checking that
    /// its bytes are the digest's.
    ///
    /// # Errors
    /// [`StoreError::Import`] when the bytes do not match the digest.
    pub async fn import_component(&self, component: ComponentExport) -> Result<(), StoreError> {
        let actual = durable_core::sha256_hex(&component.bytes);
        if actual != component.digest {
            return Err(StoreError::Import(format!(
                "component {}: its bytes have digest {actual}",
                component.digest
            )));
        }
        self.writer()
            .transact(move |tx| {
                let now = tx.now_ms();
                insert_component(
                    tx,
                    &component.digest,
                    &component.bytes,
                    component.name.as_deref(),
                    now,
                )?;
                Ok(())
            })
            .await
    }

    /// Creates an exported run with all its records, in one transaction;
    /// nobody owns it (an open one is taken up like any orphaned run). A
    /// run with its id is left as it is. Its component must be stored
    /// ([`Store::import_component`]).
    ///
    /// # Errors
    /// [`StoreError::Import`] for a row the tables cannot take (unknown
    /// columns or tables, a missing component, a wrong type); the
    /// database's own errors for a value its constraints refuse.
    pub async fn import_run(&self, export: RunExport) -> Result<Imported, StoreError> {
        let id = export
            .id()
            .ok_or_else(|| StoreError::Import("a run without an id".into()))?
            .to_string();
        durable_core::names::validate_run_id(&id).map_err(|e| StoreError::Import(e.to_string()))?;
        // Tags as a start or `set-tag` would take them: a file is not
        // trusted more than an API caller.
        for (name, rows) in &export.records {
            if name != "run_tags" {
                continue;
            }
            if rows.len() > 2 * durable_core::tags::MAX_KEYS {
                return Err(StoreError::Import(format!("run {id}: {} tags", rows.len())));
            }
            for row in rows {
                let text = |c: &str| {
                    row.iter().find_map(|(k, v)| match v {
                        Field::Text(t) if k == c => Some(t.as_str()),
                        _ => None,
                    })
                };
                durable_core::tags::validate(
                    text("key").unwrap_or(""),
                    text("value").unwrap_or(""),
                )
                .map_err(|e| StoreError::Import(format!("run {id}: {e}")))?;
            }
        }
        let digest = export
            .component_digest()
            .ok_or_else(|| StoreError::Import(format!("run {id}: no component_digest")))?
            .to_string();
        self.writer()
            .transact(move |tx| {
                let exists = tx
                    .opt(
                        "looking up the run",
                        "SELECT 1 FROM runs WHERE id = ?1",
                        args![id],
                        |r| r.get::<i64>(0),
                    )?
                    .is_some();
                if exists {
                    return Ok(Imported::Exists);
                }
                let stored = tx
                    .opt(
                        "looking up the component",
                        "SELECT 1 FROM components WHERE digest = ?1",
                        args![digest],
                        |r| r.get::<i64>(0),
                    )?
                    .is_some();
                if !stored {
                    return Err(StoreError::Import(format!(
                        "run {id}: component {digest} is neither in the file nor in the database"
                    )));
                }
                insert_row(tx, &RUNS, None, &export.run)?;
                for (name, rows) in &export.records {
                    let table = RECORDS.iter().find(|t| t.name == name).ok_or_else(|| {
                        StoreError::Import(format!(
                            "run {id}: unknown table {name:?} (exported by a newer durable?)"
                        ))
                    })?;
                    for row in rows {
                        insert_row(tx, table, Some(&id), row)?;
                    }
                }
                Ok(Imported::Created)
            })
            .await
    }
}
