//! Export and import: a run with steps, output, events, tags exported from
//! SQLite and imported into each database reads back the same; the
//! exported columns are every column of the tables, but those left out on
//! purpose.

use std::sync::Arc;

use super::{Kind, fresh, new_run, only, step};
use crate::owner::Owner;
use crate::sql::args;
use crate::transfer::{ComponentExport, Imported, RECORDS, RUNS};
use crate::{OutputLine, RunEnd, Store, StoreError};

on_both!(an_exported_run_imports_into_another_database_with_the_same_records);

async fn an_exported_run_imports_into_another_database_with_the_same_records(kind: Kind) {
    let from_db = fresh(Kind::Sqlite).await;
    let from = Store::open(&from_db.location).await.expect("open");
    let me = Owner::current();
    let bytes = b"\0asm component".to_vec();
    let digest = durable_core::sha256_hex(&bytes);
    let mut new = new_run("r1");
    new.component_digest = digest.clone();
    new.component = Arc::new(bytes.clone());
    new.tags.insert("customer".into(), "42".into());
    from.create_run(new, &me).await.expect("create");
    let mut commit = only(step("a#1", 0));
    commit.output = vec![OutputLine {
        key: "a#1".into(),
        drive: 1,
        at_ms: 5,
        kind: "out".into(),
        line: "hello".into(),
    }];
    from.commit_step("r1", &me, 1, commit)
        .await
        .expect("commit");
    from.commit_step("r1", &me, 1, only(step("b#1", 1)))
        .await
        .expect("commit");
    from.send_event("r1", "ping", Some("e1"), "{\"n\":1}")
        .await
        .expect("event");
    from.finish_run(
        "r1",
        &me,
        1,
        RunEnd::Succeeded("\"done\"".into()),
        None,
        Vec::new(),
    )
    .await
    .expect("finish");
    let exported = from.export_run("r1").await.expect("export");
    let component = from
        .export_component(&digest)
        .await
        .expect("read")
        .expect("stored");
    assert_eq!(component.bytes, bytes);

    let to_db = fresh(kind).await;
    let to = Store::open(&to_db.location).await.expect("open");
    // No component yet: refused, nothing written.
    let refused = to.import_run(exported.clone()).await;
    assert!(matches!(refused, Err(StoreError::Import(_))), "{refused:?}");
    // A component whose bytes are not its digest's is refused.
    let forged = ComponentExport {
        bytes: b"other".to_vec(),
        ..component.clone()
    };
    assert!(to.import_component(forged).await.is_err());
    to.import_component(component).await.expect("component");
    assert_eq!(
        to.import_run(exported.clone()).await.expect("import"),
        Imported::Created
    );
    assert_eq!(
        to.import_run(exported.clone()).await.expect("again"),
        Imported::Exists
    );
    assert_eq!(to.export_run("r1").await.expect("export"), exported);
    let detail = to.detail("r1", true).await.expect("detail");
    assert_eq!(detail.steps.len(), 2);
    assert_eq!(detail.output.len(), 1);
    assert_eq!(detail.events.len(), 1);
    assert_eq!(detail.tags.get("customer").map(String::as_str), Some("42"));
    assert_eq!(detail.run.status, crate::RunStatus::Succeeded);

    // A row with a column the tables do not have is refused whole.
    let mut newer = exported.clone();
    newer.run[0].1 = crate::transfer::Field::Text("r2".into());
    newer.records[0].1[0].push(("flavour".into(), crate::transfer::Field::Null));
    assert!(matches!(
        to.import_run(newer).await,
        Err(StoreError::Import(m)) if m.contains("flavour")
    ));
    assert!(to.run("r2").await.expect("read").is_none());
    from.close().await;
    to.close().await;
}

/// Every column is exported but those left out on purpose: a new column
/// fails this test until the export takes it (and its format version).
#[tokio::test]
async fn the_export_covers_every_column() {
    let db = fresh(Kind::Sqlite).await;
    let store = Store::open(&db.location).await.expect("open");
    let left_out: &[(&str, &str)] = &[
        ("runs", "owner"),
        ("runs", "lease_until_ms"),
        ("output", "id"),
        ("events", "seq"),
    ];
    for table in std::iter::once(&RUNS).chain(RECORDS) {
        let name = table.name;
        let columns: Vec<String> = store
            .read(move |tx| {
                tx.all(
                    "columns",
                    "SELECT name FROM pragma_table_info(?1)",
                    args![name],
                    |r| r.get::<String>(0),
                )
            })
            .await
            .expect("columns");
        for column in columns {
            let exported = column == "run_id" && name != "runs"
                || table.columns.iter().any(|(c, _)| *c == column)
                || left_out.contains(&(name, column.as_str()));
            assert!(exported, "{name}.{column} is not exported");
        }
    }
    store.close().await;
}
