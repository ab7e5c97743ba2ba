use std::sync::Arc;

use super::*;

fn new_run(id: &str) -> NewRun {
    NewRun {
        id: id.into(),
        workflow: "wf".into(),
        component_digest: "d1".into(),
        component: Arc::new(b"\0asm".to_vec()),
        input: "{}".into(),
        seed: 7,
    }
}

fn only(record: StepRecord) -> StepCommit {
    StepCommit {
        record,
        last_attempt: None,
        output: Vec::new(),
        switch: None,
    }
}

fn step(key: &str, position: u32) -> StepRecord {
    StepRecord {
        key: key.into(),
        parent: String::new(),
        position,
        name: key.split('#').next().unwrap_or(key).into(),
        input_digest: "x".into(),
        input: Some(format!("{{\"in\":{position}}}")),
        outcome: Outcome::Ok(format!("{{\"p\":{position}}}")),
        attempts: 1,
        started_at_ms: 1,
        finished_at_ms: 2,
        drive: 1,
        batch: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_commits_are_all_durable_and_visible_to_another_connection() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("d.db");
    let store = crate::store::Store::open(&path).await.expect("open");
    let me = Owner::current();
    assert!(matches!(
        store.claim_run(new_run("r"), &me).await,
        Ok(Claim::Created(_))
    ));
    let mut tasks = Vec::new();
    for i in 0..200u32 {
        let store = store.clone();
        let me = me.clone();
        tasks.push(tokio::spawn(async move {
            store
                .commit_step("r", &me, 1, only(step(&format!("s#{}", i + 1), i)))
                .await
        }));
    }
    for t in tasks {
        t.await.expect("join").expect("commit");
    }
    // Every commit that returned is visible to an independent connection.
    let other = rusqlite::Connection::open(&path).expect("second connection");
    let n: i64 = other
        .query_row("SELECT count(*) FROM steps WHERE run_id = 'r'", [], |r| {
            r.get(0)
        })
        .expect("count");
    assert_eq!(n, 200);
    assert_eq!(store.history("r").await.expect("history").len(), 200);
    store.close().await;
}

#[tokio::test]
async fn a_committed_step_cannot_be_overwritten() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = crate::store::Store::open(&dir.path().join("d.db"))
        .await
        .expect("open");
    let me = Owner::current();
    store.claim_run(new_run("r"), &me).await.expect("claim");
    store
        .commit_step("r", &me, 1, only(step("a#1", 0)))
        .await
        .expect("first");
    let mut again = step("a#1", 0);
    again.outcome = Outcome::Failed("other".into());
    assert!(store.commit_step("r", &me, 1, only(again)).await.is_err());
    // The failed job did not disturb the writer or the record.
    let h = store.history("r").await.expect("history");
    assert_eq!(h, vec![step("a#1", 0)]);
    store.close().await;
}

#[tokio::test]
async fn a_live_owner_keeps_the_run_and_a_release_hands_it_over() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = crate::store::Store::open(&dir.path().join("d.db"))
        .await
        .expect("open");
    let me = Owner::current();
    store.claim_run(new_run("r"), &me).await.expect("claim");
    // Another identity in this same (live) process is refused.
    let text = me.to_string();
    let (same_process, _nonce) = text.rsplit_once(':').expect("owner text has a nonce");
    let other = Owner::parse(&format!("{same_process}:1")).expect("parse");
    let err = store
        .claim_existing("r", &other)
        .await
        .expect_err("refused");
    assert!(matches!(err, StoreError::Owned { .. }), "{err}");
    assert!(err.to_string().contains("another process"), "{err}");
    // A commit by the non-owner is refused too.
    assert!(matches!(
        store
            .commit_step("r", &other, 1, only(step("a#1", 0)))
            .await,
        Err(StoreError::LeaseLost { .. })
    ));
    store.release("r", &me).await.expect("release");
    assert!(matches!(
        store.claim_existing("r", &other).await,
        Ok(Claim::Resumed(_))
    ));
    store.close().await;
}

#[tokio::test]
async fn files_that_are_not_durable_databases_are_refused_untouched() {
    let dir = tempfile::tempdir().expect("tempdir");
    let text = dir.path().join("notes.db");
    std::fs::write(
        &text,
        b"this is not a database, it is a long enough text file to have a header",
    )
    .expect("write");
    let before = std::fs::read(&text).expect("read");
    let err = crate::store::Store::open(&text)
        .await
        .err()
        .expect("refused");
    assert!(err.to_string().contains("not a SQLite database"), "{err}");
    assert_eq!(std::fs::read(&text).expect("read"), before);

    let foreign = dir.path().join("other.db");
    rusqlite::Connection::open(&foreign)
        .and_then(|c| c.execute_batch("CREATE TABLE t (x)"))
        .expect("foreign db");
    let err = crate::store::Store::open(&foreign)
        .await
        .err()
        .expect("refused");
    assert!(err.to_string().contains("another program"), "{err}");

    let newer = dir.path().join("newer.db");
    crate::store::Store::open(&newer)
        .await
        .expect("create")
        .close()
        .await;
    rusqlite::Connection::open(&newer)
        .and_then(|c| c.execute_batch("PRAGMA user_version = 99"))
        .expect("bump");
    let err = crate::store::Store::open(&newer)
        .await
        .err()
        .expect("refused");
    assert!(
        matches!(err, StoreError::NewerSchema { found: 99, .. }),
        "{err}"
    );
}

#[tokio::test]
async fn a_version_2_database_migrates_to_the_current_schema_and_keeps_its_runs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("old.db");
    {
        // A database exactly as schema version 2 left it, with foreign keys
        // on (as the bundled SQLite has them by default).
        let conn = rusqlite::Connection::open(&path).expect("open");
        conn.execute_batch("PRAGMA journal_mode = WAL; PRAGMA foreign_keys = ON;")
            .expect("pragmas");
        for m in &schema::MIGRATIONS[..2] {
            conn.execute_batch(m).expect("old migration");
        }
        conn.execute_batch(&format!(
            "PRAGMA user_version = 2; PRAGMA application_id = {};
             INSERT INTO components VALUES ('d1', x'0061736d', 1);
             INSERT INTO runs (id, workflow, component_digest, input, status, seed, created_at_ms)
                 VALUES ('old', 'wf', 'd1', '{{}}', 'running', 7, 1000);
             INSERT INTO steps VALUES ('old', 'a#1', '', 0, 'a', 'x', 'ok', '1', 1, 1, 2);
             INSERT INTO attempts VALUES ('old', 'a#1', 1, 'failed', 'boom', 1, 1);",
            schema::APPLICATION_ID
        ))
        .expect("old rows");
    }
    let store = crate::store::Store::open(&path).await.expect("migrates");
    let run = store.run("old").await.expect("read").expect("kept");
    assert_eq!(
        (run.status, run.clock_ms, run.drives),
        (RunStatus::Running, 1000, 1)
    );
    let history = store.history("old").await.expect("history");
    assert_eq!(history.len(), 1);
    assert_eq!(
        (history[0].drive, history[0].batch, &history[0].input),
        (1, None, &None)
    );
    // Drive 1 began with the run; later drives were not recorded then.
    let detail = store.detail("old", false).await.expect("detail");
    assert_eq!(detail.drive_starts, [(1, 1000)]);
    assert_eq!(
        store.attempt_counts("old").await.expect("attempts"),
        [("a#1".to_string(), 1)]
    );
    // The new status is allowed now.
    assert_eq!(store.cancel("old").await.expect("cancel"), Cancelled::Now);
    assert_eq!(
        store.run("old").await.expect("read").map(|r| r.status),
        Some(RunStatus::Cancelled)
    );
    store.close().await;
    let version: i64 = rusqlite::Connection::open(&path)
        .and_then(|c| c.query_row("PRAGMA user_version", [], |r| r.get(0)))
        .expect("version");
    assert_eq!(version, schema::SCHEMA_VERSION);
}

#[test]
fn the_run_column_count_matches_the_column_list() {
    assert_eq!(
        super::rows::RUN_COLUMNS.split(',').count(),
        super::rows::RUN_COLUMN_COUNT
    );
}
