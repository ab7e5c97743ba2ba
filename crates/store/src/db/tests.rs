use std::path::PathBuf;
use std::sync::Arc;
#[cfg(feature = "postgres")]
use std::sync::atomic::{AtomicU32, Ordering};

use super::*;
use crate::{Store, SwitchRecord};
use durable_core::now_ms;

/// The databases the store runs on.
#[derive(Clone, Copy)]
enum Kind {
    Sqlite,
    #[cfg(feature = "postgres")]
    Postgres,
}

/// An empty database of `kind`: a new SQLite file, or a new database on
/// the PostgreSQL server of `DURABLE_TEST_POSTGRES`
/// (`scripts/with-postgres.sh` starts one).
struct Fresh {
    location: PathBuf,
    _dir: tempfile::TempDir,
}

async fn fresh(kind: Kind) -> Fresh {
    let dir = tempfile::tempdir().expect("tempdir");
    let location = match kind {
        Kind::Sqlite => dir.path().join("d.db"),
        #[cfg(feature = "postgres")]
        Kind::Postgres => PathBuf::from(postgres_database().await),
    };
    Fresh {
        location,
        _dir: dir,
    }
}

/// The URL of a new, empty database on the test server.
#[cfg(feature = "postgres")]
pub(crate) async fn postgres_database() -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let base = std::env::var("DURABLE_TEST_POSTGRES").expect(
        "the PostgreSQL tests need a server: run them under scripts/with-postgres.sh \
         (scripts/test.sh does), or leave them out with `cargo test -- --skip postgres`",
    );
    let (client, connection) = tokio_postgres::connect(&base, tokio_postgres::NoTls)
        .await
        .expect("the test server answers");
    tokio::spawn(connection);
    let name = format!(
        "t{}_{}_{}",
        std::process::id(),
        now_ms(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    client
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .expect("a new database");
    let (server, _) = base.rsplit_once('/').expect("a URL with a database");
    format!("{server}/{name}")
}

/// Runs the test `$name(kind)` once per database: `$name::sqlite` and
/// `$name::postgres`.
macro_rules! on_both {
    ($($name:ident),*) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name(super::Kind::Sqlite).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            #[cfg(feature = "postgres")]
            async fn postgres() {
                super::$name(super::Kind::Postgres).await
            }
        }
    )*};
}

mod retention;
mod tags;
mod transfer;

on_both!(
    concurrent_commits_are_all_durable_and_visible_to_another_connection,
    a_committed_step_cannot_be_overwritten,
    a_live_owner_keeps_the_run_and_a_release_hands_it_over,
    runs_are_listed_cancelled_forked_and_counted,
    waits_park_runs_and_events_are_stored_once,
    a_component_switch_and_superseded_records_are_kept_for_people,
    a_version_6_database_is_upgraded_on_open_and_keeps_its_runs,
    a_start_creates_once_and_this_process_runs_are_not_runnable,
    a_start_stores_its_component_once_and_again_if_another_host_deleted_it,
    children_start_once_wake_their_parent_and_end_with_it,
    handles_settle_in_one_transaction_and_an_event_wakes_a_run_parked_on_them,
    queues_admit_under_their_limits_in_priority_then_start_order,
    step_slots_hold_a_limit_and_come_back_with_the_lease,
    prune_deletes_old_finished_runs_in_batches_and_keeps_open_families
);

/// More runs than a batch are pruned in several transactions; a finished
/// child of an open parent, open runs and recent ones stay.
async fn prune_deletes_old_finished_runs_in_batches_and_keeps_open_families(kind: Kind) {
    let db = fresh(kind).await;
    let store = Store::open(&db.location).await.expect("open");
    let me = Owner::current();
    let old = PRUNE_BATCH as usize * 2 + 17;
    for i in 0..old {
        store
            .create_run(new_run(&format!("old-{i}")), &me)
            .await
            .expect("create");
    }
    for id in ["parent", "child", "recent", "open"] {
        store.create_run(new_run(id), &me).await.expect("create");
    }
    let sql = |sql: &'static str| {
        let store = store.clone();
        async move {
            store
                .writer()
                .transact(move |tx| tx.exec("test setup", sql, args![]))
                .await
                .expect("setup")
        }
    };
    sql("UPDATE runs SET status = 'succeeded', finished_at_ms = 1000 WHERE id LIKE 'old-%' OR id = 'child'").await;
    sql("UPDATE runs SET parent_id = 'parent' WHERE id = 'child'").await;
    sql("UPDATE runs SET status = 'failed', finished_at_ms = 5000 WHERE id = 'recent'").await;
    let filter = |before: i64, status: Option<RunStatus>| PruneFilter {
        status,
        ..PruneFilter::finished_before(before)
    };
    assert_eq!(
        store.prune_count(filter(2000, None)).await.unwrap(),
        old as u64
    );
    assert_eq!(
        store
            .prune(filter(2000, Some(RunStatus::Failed)))
            .await
            .unwrap(),
        0
    );
    assert_eq!(store.prune(filter(2000, None)).await.unwrap(), old as u64);
    let left: Vec<String> = store
        .list(RunFilter::default())
        .await
        .expect("list")
        .into_iter()
        .map(|r| r.run.id)
        .collect();
    let mut left_sorted = left.clone();
    left_sorted.sort();
    assert_eq!(
        left_sorted,
        ["child", "open", "parent", "recent"],
        "the open parent keeps its child"
    );
    // The parent ends: its child goes with the next prune.
    sql("UPDATE runs SET status = 'succeeded', finished_at_ms = 1500 WHERE id = 'parent'").await;
    assert_eq!(store.prune(filter(2000, None)).await.unwrap(), 2);
    assert_eq!(
        store.prune(filter(6000, None)).await.unwrap(),
        1,
        "recent, once old enough"
    );
    assert!(store.run("open").await.expect("read").is_some());
}

/// The name a component is stored with, if it is stored.
async fn stored_component(store: &Store, digest: &str) -> Option<Option<String>> {
    let names = store
        .component_names(&[digest.to_string()])
        .await
        .expect("read");
    names.into_iter().next().map(|(_, name)| name)
}

/// A start looks at its component only until this store has committed it
/// with a name; when another host deleted it meanwhile (its runs gone), the
/// start stores it again instead of failing.
async fn a_start_stores_its_component_once_and_again_if_another_host_deleted_it(kind: Kind) {
    let db = fresh(kind).await;
    let store = Store::open(&db.location).await.expect("open");
    let me = Owner::current();
    // Uploaded without a name: the first run names it.
    store
        .put_component("d1", Arc::new(b"\0asm".to_vec()), None)
        .await
        .expect("upload");
    assert_eq!(stored_component(&store, "d1").await, Some(None));
    store.create_run(new_run("a"), &me).await.expect("create");
    assert_eq!(
        stored_component(&store, "d1").await,
        Some(Some("wf".into()))
    );
    let mut renamed = new_run("b");
    renamed.workflow = "other".into();
    store.create_run(renamed, &me).await.expect("create");
    // The first name stays.
    assert_eq!(
        stored_component(&store, "d1").await,
        Some(Some("wf".into()))
    );
    // Another host removes the runs and the component (as retention
    // would), behind this store's back.
    let other = Store::open(&db.location).await.expect("open");
    other
        .writer()
        .transact(|tx| {
            tx.exec(
                "removing the runs",
                "DELETE FROM runs WHERE component_digest = ?1",
                args!["d1"],
            )
        })
        .await
        .expect("delete runs");
    other
        .delete_component("d1")
        .await
        .expect("delete component");
    other.close().await;
    assert_eq!(stored_component(&store, "d1").await, None);
    // This store took d1 for stored: the insert fails on the foreign key,
    // and is done again with the component.
    match store.create_run(new_run("c"), &me).await.expect("create") {
        Creation::Created(r) => assert_eq!(r.component_digest, "d1"),
        c => panic!("{c:?}"),
    }
    assert_eq!(
        stored_component(&store, "d1").await,
        Some(Some("wf".into()))
    );
    match store.claim_run(new_run("d"), &me).await.expect("claim") {
        Claim::Created(r) => assert_eq!(r.component_digest, "d1"),
        c => panic!("{c:?}"),
    }
    store.close().await;
}

/// The ids of the runs `runnable` lists.
async fn runnable_ids(store: &Store) -> Vec<String> {
    let due = store.runnable(10).await.expect("runnable");
    due.into_iter().map(|(id, _)| id).collect()
}

/// `create_run` creates a run once and reports the run it finds after; the
/// look for due runs passes over the runs this process drives, and finds
/// them once their lease has lapsed, or when their owner is gone.
async fn a_start_creates_once_and_this_process_runs_are_not_runnable(kind: Kind) {
    let db = fresh(kind).await;
    let store = Store::open(&db.location).await.expect("open");
    let me = Owner::current();
    let created = store.create_run(new_run("c"), &me).await.expect("create");
    assert!(
        matches!(&created, Creation::Created(r) if r.id == "c" && r.status == RunStatus::Running)
    );
    let mut other = new_run("c");
    other.input = "{\"other\":1}".into();
    match store.create_run(other, &me).await.expect("create again") {
        // Left as it was: the first input, the first drive.
        Creation::Existing(r) => {
            assert_eq!(r.input, "{}");
            assert_eq!(r.drives, 1);
        }
        c => panic!("{c:?}"),
    }
    // Driven by this process, with a live lease: not for the taking.
    assert!(store.runnable(10).await.expect("runnable").is_empty());
    // Another identity of this process (another runtime in it) is alive
    // too; a process that is gone is not.
    store
        .claim_run(new_run("mine"), &Owner::current())
        .await
        .expect("claim");
    let dead = Owner::parse(&format!("{}0000000000000001", Owner::this_process_prefix()))
        .expect("parse")
        .to_string()
        .replace(
            &format!(":{}:", std::process::id()),
            &format!(":{}:", u32::MAX - 7),
        );
    let dead = Owner::parse(&dead).expect("a dead owner");
    store
        .claim_run(new_run("gone"), &dead)
        .await
        .expect("claim");
    let ids = runnable_ids(&store).await;
    assert_eq!(ids, ["gone"]);
    store.close().await;
    // With no lease left, this process's runs are for the taking too.
    let store = Store::open_with_options(
        &db.location,
        crate::StoreOptions {
            lease_ms: crate::MIN_LEASE_MS,
            ..crate::StoreOptions::default()
        },
    )
    .await
    .expect("open");
    store
        .claim_run(new_run("lapsed"), &me)
        .await
        .expect("claim");
    tokio::time::sleep(std::time::Duration::from_millis(
        crate::MIN_LEASE_MS as u64 + 100,
    ))
    .await;
    let ids = runnable_ids(&store).await;
    assert!(ids.contains(&"lapsed".to_string()), "{ids:?}");
    store.close().await;
}

pub(super) fn new_run(id: &str) -> NewRun {
    NewRun {
        id: id.into(),
        workflow: "wf".into(),
        component_digest: "d1".into(),
        component: Arc::new(b"\0asm".to_vec()),
        input: "{}".into(),
        seed: 7,
        tags: Default::default(),
        trace_parent: None,
    }
}

fn only(record: StepRecord) -> StepCommit {
    StepCommit {
        record,
        last_attempt: None,
        output: Vec::new(),
        switch: None,
        tag: None,
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

async fn concurrent_commits_are_all_durable_and_visible_to_another_connection(kind: Kind) {
    let db = fresh(kind).await;
    let store = Store::open(&db.location).await.expect("open");
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
    let other = Store::open(&db.location).await.expect("second connection");
    assert_eq!(other.history("r").await.expect("history").len(), 200);
    assert_eq!(store.history("r").await.expect("history").len(), 200);
    other.close().await;
    store.close().await;
}

async fn a_committed_step_cannot_be_overwritten(kind: Kind) {
    let db = fresh(kind).await;
    let store = Store::open(&db.location).await.expect("open");
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

async fn a_live_owner_keeps_the_run_and_a_release_hands_it_over(kind: Kind) {
    let db = fresh(kind).await;
    let store = Store::open(&db.location).await.expect("open");
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

async fn runs_are_listed_cancelled_forked_and_counted(kind: Kind) {
    let db = fresh(kind).await;
    let store = Store::open(&db.location).await.expect("open");
    let me = Owner::current();
    for id in ["a1", "a2", "b1"] {
        store.claim_run(new_run(id), &me).await.expect("claim");
        store
            .commit_step(id, &me, 1, only(step("s#1", 0)))
            .await
            .expect("commit");
        store
            .commit_step(id, &me, 1, only(step("s#2", 1)))
            .await
            .expect("commit");
    }
    let ended = store
        .finish_run(
            "a1",
            &me,
            1,
            RunEnd::Succeeded("1".into()),
            None,
            Vec::new(),
        )
        .await
        .expect("finish");
    // The end is answered with the run as it is once ended.
    assert_eq!(ended.status, RunStatus::Succeeded);
    assert_eq!(ended.output.as_deref(), Some("1"));
    assert!(ended.finished_at_ms.is_some());
    let ids = |runs: Vec<RunSummary>| runs.into_iter().map(|r| r.run.id).collect::<Vec<_>>();
    let all = store
        .list(RunFilter {
            limit: 0,
            ..RunFilter::default()
        })
        .await
        .expect("list");
    assert_eq!(all.len(), 3);
    assert!(all.iter().all(|r| r.steps == 2 && r.executed == 2));
    let a = store
        .list(RunFilter {
            prefix: Some("a".into()),
            status: Some(RunStatus::Running),
            limit: 10,
            ..RunFilter::default()
        })
        .await
        .expect("list");
    assert_eq!(ids(a), ["a2"]);
    let mut counts = store
        .count_by_status(None, Some("a".into()), None, None)
        .await
        .expect("count");
    counts.sort();
    assert_eq!(
        counts,
        [("running".to_string(), 1), ("succeeded".to_string(), 1)]
    );
    // A cancel of a run a live owner drives is a request.
    assert_eq!(
        store.cancel("a2").await.expect("cancel"),
        Cancelled::Requested
    );
    store.release("a2", &me).await.expect("release");
    assert_eq!(
        store.cancel("b1").await.expect("cancel"),
        Cancelled::Requested
    );
    // Fork before s#2: a new run with s#1 copied (drive 0).
    let forked = store.fork("a1", "s#2", "a1-again").await.expect("fork");
    assert_eq!(forked.forked_from.as_deref(), Some("a1/s#2"));
    let copied = store.history("a1-again").await.expect("history");
    assert_eq!(copied.len(), 1);
    assert_eq!((copied[0].key.as_str(), copied[0].drive), ("s#1", 0));
    let detail = store.detail("a1", true).await.expect("detail");
    assert_eq!(detail.steps.len(), 2);
    assert_eq!(detail.steps[1].input.as_deref(), Some("{\"in\":1}"));
    assert_eq!(detail.drive_starts.len(), 1);
    assert!(
        store
            .last_tick_id("a", "zzz")
            .await
            .expect("ticks")
            .is_none()
    );
    store.close().await;
}

async fn waits_park_runs_and_events_are_stored_once(kind: Kind) {
    let db = fresh(kind).await;
    let store = Store::open(&db.location).await.expect("open");
    let me = Owner::current();
    store.claim_run(new_run("w"), &me).await.expect("claim");
    let mut wait = step("$event:go#1", 0);
    wait.name = "$event:go".into();
    let parked = store
        .await_event(
            "w",
            &me,
            1,
            AwaitCall {
                record: wait.clone(),
                name: "go".into(),
                timeout_ms: Some(60_000),
                switch: None,
            },
        )
        .await
        .expect("await");
    assert_eq!(parked, AwaitOutcome::Parked);
    // Parked until its deadline, a minute from now.
    let due = store.due("w").await.expect("due");
    assert!(matches!(due, Some(Some(t)) if t > now_ms()), "{due:?}");
    let sent = store
        .send_event("w", "go", Some("e1"), "{\"ok\":true}")
        .await
        .expect("send");
    assert!(matches!(sent, Sent::Stored { .. }), "{sent:?}");
    let again = store
        .send_event("w", "go", Some("e1"), "{\"ok\":true}")
        .await
        .expect("send again");
    assert_eq!(again, Sent::Duplicate);
    // The same value written otherwise is the same event...
    let spaced = store
        .send_event("w", "go", Some("e1"), "{ \"ok\" : true }")
        .await
        .expect("send again, spaced");
    assert_eq!(spaced, Sent::Duplicate);
    // ...another payload under its id is refused, and nothing is stored.
    let other = store
        .send_event("w", "go", Some("e1"), "{\"ok\":false}")
        .await;
    assert!(
        matches!(&other, Err(StoreError::EventIdTaken { run, event_id }) if run == "w" && event_id == "e1"),
        "{other:?}"
    );
    // The event made the run due at once.
    assert_eq!(store.due("w").await.expect("due"), Some(None));
    let runnable = store.runnable(10).await.expect("runnable");
    assert_eq!(runnable.len(), 1);
    assert_eq!(runnable[0].0, "w");
    // Taken up again, the wait consumes the event.
    assert!(matches!(
        store.claim_existing("w", &me).await,
        Ok(Claim::Resumed(_))
    ));
    let got = store
        .await_event(
            "w",
            &me,
            2,
            AwaitCall {
                record: wait,
                name: "go".into(),
                timeout_ms: Some(60_000),
                switch: None,
            },
        )
        .await
        .expect("await");
    assert_eq!(got, AwaitOutcome::Event("{\"ok\":true}".into()));
    let detail = store.detail("w", false).await.expect("detail");
    assert_eq!(detail.events.len(), 1);
    assert_eq!(detail.events[0].consumed_by.as_deref(), Some("$event:go#1"));
    assert_eq!(
        detail.drive_starts.iter().map(|d| d.0).collect::<Vec<_>>(),
        [1, 2]
    );
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
    let err = crate::Store::open(&text).await.err().expect("refused");
    assert!(err.to_string().contains("not a SQLite database"), "{err}");
    assert_eq!(std::fs::read(&text).expect("read"), before);

    let foreign = dir.path().join("other.db");
    rusqlite::Connection::open(&foreign)
        .and_then(|c| c.execute_batch("CREATE TABLE t (x)"))
        .expect("foreign db");
    let err = crate::Store::open(&foreign).await.err().expect("refused");
    assert!(err.to_string().contains("another program"), "{err}");

    let newer = dir.path().join("newer.db");
    crate::Store::open(&newer)
        .await
        .expect("create")
        .close()
        .await;
    rusqlite::Connection::open(&newer)
        .and_then(|c| c.execute_batch("PRAGMA user_version = 99"))
        .expect("bump");
    let err = crate::Store::open(&newer).await.err().expect("refused");
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
    let store = crate::Store::open(&path).await.expect("migrates");
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

#[tokio::test]
async fn a_new_database_gets_small_pages() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("new.db");
    let store = crate::Store::open(&path).await.expect("creates");
    assert!(matches!(
        store.claim_run(new_run("r"), &Owner::current()).await,
        Ok(Claim::Created(_))
    ));
    store.close().await;
    let page_size: u32 = rusqlite::Connection::open(&path)
        .and_then(|c| c.query_row("PRAGMA page_size", [], |r| r.get(0)))
        .expect("page size");
    assert_eq!(page_size, schema::PAGE_SIZE);
}

#[test]
fn the_run_column_count_matches_the_column_list() {
    assert_eq!(
        super::rows::RUN_COLUMNS.split(',').count(),
        super::rows::RUN_COLUMN_COUNT
    );
}

async fn a_component_switch_and_superseded_records_are_kept_for_people(kind: Kind) {
    let db = fresh(kind).await;
    let store = Store::open(&db.location).await.expect("open");
    let me = Owner::current();
    store.claim_run(new_run("r"), &me).await.expect("claim");
    store
        .commit_step("r", &me, 1, only(step("a#1", 0)))
        .await
        .expect("commit");
    store
        .commit_step("r", &me, 1, only(step("b#1", 1)))
        .await
        .expect("commit");
    // A forced switch: b#1 moved aside, the new component's first commit
    // records the switch.
    store
        .supersede("r", &me, 1, vec!["b#1".into()], None)
        .await
        .expect("supersede");
    let mut commit = only(step("c#1", 1));
    commit.switch = Some(ComponentSwitch {
        digest: "d2".into(),
        bytes: Arc::new(b"\0asm2".to_vec()),
        forced_from: Some(1),
    });
    store
        .commit_step("r", &me, 1, commit)
        .await
        .expect("commit");
    let detail = store.detail("r", false).await.expect("detail");
    assert_eq!(detail.run.component_digest, "d2");
    assert_eq!(
        detail.switches,
        [SwitchRecord {
            drive: 1,
            at_ms: detail.switches[0].at_ms,
            from_digest: "d1".into(),
            to_digest: "d2".into(),
            forced_from: Some(1),
        }]
    );
    assert_eq!(detail.superseded.len(), 1);
    let old = &detail.superseded[0];
    assert_eq!(
        (
            old.key.as_str(),
            old.parent.as_str(),
            old.position,
            old.name.as_str()
        ),
        ("b#1", "", 1, "b")
    );
    assert_eq!(old.input.as_deref(), Some("{\"in\":1}"));
    store.close().await;
}

/// A database as durable at schema version 6 left it, with one run.
async fn version_6(kind: Kind) -> Fresh {
    let db = fresh(kind).await;
    match kind {
        Kind::Sqlite => {
            let conn = rusqlite::Connection::open(&db.location).expect("open");
            for step in &super::sqlite::MIGRATIONS[..6] {
                conn.execute_batch(step).expect("migration");
            }
            conn.execute_batch(&format!(
                "PRAGMA user_version = 6; PRAGMA application_id = {};",
                super::sqlite::APPLICATION_ID
            ))
            .expect("version");
        }
        #[cfg(feature = "postgres")]
        Kind::Postgres => {
            // Made at the current version, then taken back to what version 6 had.
            let store = Store::open(&db.location).await.expect("open");
            store.close().await;
            let url = db.location.to_str().expect("utf-8").to_string();
            let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                .await
                .expect("connect");
            tokio::spawn(connection);
            client
                .batch_execute(
                    "DROP TABLE run_tags;
                     DROP INDEX runs_by_finished;
                     ALTER TABLE runs DROP COLUMN trace_parent;
                     DROP TABLE queues;
                     DROP TABLE step_limits;
                     DROP TABLE step_slots;
                     DROP INDEX runs_debouncing;
                     ALTER TABLE runs DROP COLUMN debounce_key;
                     ALTER TABLE runs DROP COLUMN not_before_ms;
                     DROP INDEX runs_queued;
                     DROP INDEX runs_by_queue;
                     ALTER TABLE runs DROP COLUMN queue;
                     ALTER TABLE runs DROP COLUMN queue_key;
                     ALTER TABLE runs DROP COLUMN priority;
                     ALTER TABLE runs DROP COLUMN queue_seq;
                     ALTER TABLE runs DROP CONSTRAINT runs_status_check;
                     ALTER TABLE runs ADD CONSTRAINT runs_status_check
                         CHECK (status IN ('running', 'waiting', 'succeeded', 'failed', 'cancelled'));
                     DROP INDEX runs_by_parent;
                     ALTER TABLE runs DROP COLUMN parent_id;
                     ALTER TABLE runs DROP COLUMN parent_key;
                     ALTER TABLE waits DROP COLUMN name;
                     DROP INDEX runs_by_component;
                     ALTER TABLE components DROP COLUMN name;
                     DROP TABLE component_switches;
                     ALTER TABLE superseded_steps DROP COLUMN input;
                     ALTER TABLE steps DROP CONSTRAINT steps_pkey;
                     ALTER TABLE steps ADD PRIMARY KEY (run_id, key);
                     ALTER TABLE steps ADD CONSTRAINT steps_run_id_parent_position_key
                         UNIQUE (run_id, parent, position);
                     UPDATE durable_schema SET version = 6;",
                )
                .await
                .expect("back to 6");
        }
    }
    db
}

async fn a_version_6_database_is_upgraded_on_open_and_keeps_its_runs(kind: Kind) {
    let db = version_6(kind).await;
    let store = Store::open(&db.location).await.expect("open and upgrade");
    let me = Owner::current();
    store.claim_run(new_run("r"), &me).await.expect("claim");
    store
        .commit_step("r", &me, 1, only(step("a#1", 0)))
        .await
        .expect("commit");
    store
        .supersede("r", &me, 1, vec!["a#1".into()], None)
        .await
        .expect("supersede, into the new column");
    let mut commit = only(step("b#1", 0));
    commit.switch = Some(ComponentSwitch {
        digest: "d2".into(),
        bytes: Arc::new(b"\0asm2".to_vec()),
        forced_from: None,
    });
    store
        .commit_step("r", &me, 1, commit)
        .await
        .expect("commit");
    let detail = store.detail("r", false).await.expect("detail");
    assert_eq!(detail.switches.len(), 1);
    assert_eq!(detail.superseded[0].input.as_deref(), Some("{\"in\":0}"));
    store.close().await;
    // Opened again: nothing left to upgrade.
    let store = Store::open(&db.location).await.expect("open again");
    assert_eq!(
        store
            .detail("r", false)
            .await
            .expect("detail")
            .switches
            .len(),
        1
    );
    store.close().await;
}

fn child_start(id: &str, key: &str) -> ChildStart {
    ChildStart {
        run: new_run(id),
        parent_key: key.into(),
        switch: None,
    }
}

fn status_of(run: Option<RunRecord>) -> RunStatus {
    run.expect("the run").status
}

/// A child is created once (a second start finds it), due at once and
/// owned by nobody; its end makes its waiting parent due; the end of a
/// parent cancels the children it leaves open, and a cancel of the parent
/// reaches the grandchildren.
async fn children_start_once_wake_their_parent_and_end_with_it(kind: Kind) {
    let db = fresh(kind).await;
    let store = Store::open(&db.location).await.expect("open");
    let me = Owner::current();
    store.claim_run(new_run("p"), &me).await.expect("claim");
    let started = store
        .start_child("p", &me, 1, child_start("p:c-1", "$child:c#1"))
        .await
        .expect("start");
    let ChildStarted::Created(child) = started else {
        panic!("{started:?}");
    };
    assert_eq!(child.status, RunStatus::Waiting);
    assert_eq!(child.parent.as_deref(), Some("p"));
    assert_eq!(child.parent_key.as_deref(), Some("$child:c#1"));
    assert!(runnable_ids(&store).await.contains(&"p:c-1".to_string()));
    // Started again (a replay): found, not created.
    let again = store
        .start_child("p", &me, 1, child_start("p:c-1", "$child:c#1"))
        .await
        .expect("start again");
    assert!(matches!(again, ChildStarted::Existing(_)), "{again:?}");
    // The id of a run that is not this call's child is taken.
    store.claim_run(new_run("other"), &me).await.expect("claim");
    let taken = store
        .start_child("p", &me, 1, child_start("other", "$child:c#2"))
        .await
        .expect("start");
    assert!(matches!(taken, ChildStarted::Taken(_)), "{taken:?}");
    let listed = store
        .list(RunFilter {
            parent: Some("p".into()),
            ..RunFilter::default()
        })
        .await
        .expect("list");
    assert_eq!(listed.len(), 1);
    let counted = store
        .count_by_status(None, None, Some("p".into()), None)
        .await
        .expect("count");
    assert_eq!(counted, [("waiting".to_string(), 1)]);

    // The parent parks on its child; the child's end makes it due.
    let parked = store
        .park_on_handles(
            "p",
            &me,
            1,
            HandleWait {
                children: vec!["p:c-1".into()],
                describe: "any of: child p:c-1".into(),
                ..HandleWait::default()
            },
        )
        .await
        .expect("park");
    assert_eq!(parked, HandlesParked::Parked);
    assert_eq!(store.due("p").await.expect("due"), Some(Some(i64::MAX)));
    let Claim::Resumed(c) = store.claim_existing("p:c-1", &me).await.expect("claim") else {
        panic!("the child is claimed");
    };
    store
        .finish_run(
            &c.id,
            &me,
            c.drives,
            RunEnd::Succeeded("3".into()),
            None,
            Vec::new(),
        )
        .await
        .expect("finish");
    assert_eq!(store.due("p").await.expect("due"), Some(None));

    // Settled: the child's end is recorded in the parent, with the winner.
    let Claim::Resumed(p) = store.claim_existing("p", &me).await.expect("claim") else {
        panic!("the parent is claimed");
    };
    let mut record = step("$child:c#1", 0);
    record.name = "$child:c".into();
    let settled = store
        .settle(
            "p",
            &me,
            p.drives,
            Settle {
                candidates: vec![(
                    0,
                    StoreHandle::Child {
                        record,
                        child: "p:c-1".into(),
                        deadline: None,
                    },
                )],
                select: Some((step("$select#1", 1), None)),
                switch: None,
            },
        )
        .await
        .expect("settle");
    assert_eq!(settled.winner, Some(0));
    let value = match &settled.completed[..] {
        [(0, Outcome::Ok(v))] => v.clone(),
        other => panic!("{other:?}"),
    };
    assert_eq!(
        durable_core::history::ChildEnd::parse(&value),
        Some(durable_core::history::ChildEnd::Succeeded("3".into()))
    );
    let history = store.history("p").await.expect("history");
    assert_eq!(history.len(), 2);

    // Two more children, one with a child of its own; the parent ends:
    // what it left open is cancelled, grandchildren too.
    for (id, key) in [("p:c-2", "$child:c#2"), ("p:c-3", "$child:c#3")] {
        store
            .start_child("p", &me, p.drives, child_start(id, key))
            .await
            .expect("start");
    }
    let Claim::Resumed(c3) = store.claim_existing("p:c-3", &me).await.expect("claim") else {
        panic!("claimed");
    };
    store
        .start_child(
            "p:c-3",
            &me,
            c3.drives,
            child_start("p:c-3:g-1", "$child:g#1"),
        )
        .await
        .expect("start");
    store.release("p:c-3", &me).await.expect("release");
    store
        .finish_run(
            "p",
            &me,
            p.drives,
            RunEnd::Succeeded("1".into()),
            None,
            Vec::new(),
        )
        .await
        .expect("finish");
    for id in ["p:c-2", "p:c-3", "p:c-3:g-1"] {
        assert_eq!(
            status_of(store.run(id).await.expect("read")),
            RunStatus::Cancelled,
            "{id}"
        );
    }
    assert_eq!(
        status_of(store.run("p:c-1").await.expect("read")),
        RunStatus::Succeeded
    );

    // A cancel of a parent nobody drives reaches its whole tree.
    store.claim_run(new_run("q"), &me).await.expect("claim");
    store
        .start_child("q", &me, 1, child_start("q:c-1", "$child:c#1"))
        .await
        .expect("start");
    store.release("q", &me).await.expect("release");
    store.cancel("q").await.expect("cancel");
    assert_eq!(
        status_of(store.run("q:c-1").await.expect("read")),
        RunStatus::Cancelled
    );
    store.close().await;
}

/// An event wait started as a handle keeps its deadline; an event for it
/// wakes a run parked on handles; a settle consumes it once, in list order,
/// with the await's record.
async fn handles_settle_in_one_transaction_and_an_event_wakes_a_run_parked_on_them(kind: Kind) {
    let db = fresh(kind).await;
    let store = Store::open(&db.location).await.expect("open");
    let me = Owner::current();
    store.claim_run(new_run("h"), &me).await.expect("claim");
    for (key, name) in [("$event:go#1", "go"), ("$event:go#2", "go")] {
        store
            .start_event_wait("h", &me, 1, key, name, Some(60_000), None)
            .await
            .expect("start");
    }
    let wait = HandleWait {
        wake_at_ms: Some(now_ms() + 600_000),
        events: vec![
            ("$event:go#1".into(), "go".into()),
            ("$event:go#2".into(), "go".into()),
        ],
        describe: "any of: event go".into(),
        ..HandleWait::default()
    };
    let parked = store
        .park_on_handles("h", &me, 1, wait.clone())
        .await
        .expect("park");
    assert_eq!(parked, HandlesParked::Parked);
    // Due at the earliest deadline (the events'), not the later timer.
    let due = store.due("h").await.expect("due");
    assert!(
        matches!(due, Some(Some(t)) if t <= now_ms() + 60_000),
        "{due:?}"
    );
    store.send_event("h", "go", None, "1").await.expect("send");
    assert_eq!(store.due("h").await.expect("due"), Some(None));
    let Claim::Resumed(h) = store.claim_existing("h", &me).await.expect("claim") else {
        panic!("claimed");
    };
    let event = |key: &str, position| {
        let mut record = step(key, position);
        record.name = "$event:go".into();
        StoreHandle::Event {
            record,
            name: "go".into(),
            timeout_ms: Some(60_000),
        }
    };
    // await-all of both: one event, so one completes (the first in list order).
    let settled = store
        .settle(
            "h",
            &me,
            h.drives,
            Settle {
                candidates: vec![(0, event("$event:go#2", 1)), (1, event("$event:go#1", 0))],
                select: None,
                switch: None,
            },
        )
        .await
        .expect("settle");
    assert_eq!(settled.completed, [(0, Outcome::Ok("1".into()))]);
    // With the other still waiting and nothing sent, parking parks.
    let parked = store
        .park_on_handles(
            "h",
            &me,
            h.drives,
            HandleWait {
                events: vec![("$event:go#1".into(), "go".into())],
                ..wait
            },
        )
        .await
        .expect("park");
    assert_eq!(parked, HandlesParked::Parked);
    store.close().await;
}

/// A queued run is driven by nobody until an admission lets it run; the
/// admission follows priority, then start order, and holds the queue's
/// concurrency, its per-key limit and its rate.
async fn queues_admit_under_their_limits_in_priority_then_start_order(kind: Kind) {
    use crate::{Held, QueueConfig, QueuedStart, Rate};
    let db = fresh(kind).await;
    let store = Store::open(&db.location).await.expect("open");
    let me = Owner::current();
    let mut q = QueueConfig::unlimited("q");
    q.concurrency = Some(2);
    q.concurrency_key = Some("/k".into());
    q.per_key_concurrency = Some(1);
    store.put_queue(q).await.expect("put");
    let start = |priority: u8| QueuedStart {
        queue: "q".into(),
        key: None,
        priority,
    };
    let queued = |id: &str, key: &str| {
        let mut run = new_run(id);
        run.input = format!("{{\"k\":\"{key}\"}}");
        run
    };
    for (id, key, priority) in [
        ("r1", "a", 0),
        ("r2", "a", 0),
        ("r3", "b", 0),
        ("r4", "c", 5),
    ] {
        let made = store
            .create_queued_run(queued(id, key), start(priority))
            .await
            .expect("queued");
        assert!(matches!(made, Creation::Created(r) if r.status == RunStatus::Queued));
    }
    // Not for the taking, nor for a claim, until admitted.
    assert!(runnable_ids(&store).await.is_empty());
    assert!(matches!(
        store.claim_existing("r1", &me).await,
        Err(StoreError::Queued { .. })
    ));
    let mut elsewhere = start(0);
    elsewhere.queue = "nowhere".into();
    assert!(matches!(
        store.create_queued_run(new_run("x"), elsewhere).await,
        Err(StoreError::QueueNotFound(_))
    ));
    // Priority first, then start order; two at once.
    let first = store.admit(100).await.expect("admit");
    assert_eq!(first.admitted, ["r4", "r1"]);
    assert!(store.admit(100).await.expect("admit").admitted.is_empty());
    let place = store
        .queue_position("r3")
        .await
        .expect("read")
        .expect("queued");
    assert_eq!((place.position, place.held_by), (1, Held::Concurrency));
    assert_eq!(place.key.as_deref(), Some("b"));
    let mut admitted = runnable_ids(&store).await;
    admitted.sort();
    assert_eq!(admitted, ["r1", "r4"]);
    let end = |id: &'static str| {
        let store = &store;
        let me = &me;
        async move {
            let Claim::Resumed(run) = store.claim_existing(id, me).await.expect("claim") else {
                panic!("{id} is claimed");
            };
            store
                .finish_run(
                    id,
                    me,
                    run.drives,
                    RunEnd::Succeeded("1".into()),
                    None,
                    Vec::new(),
                )
                .await
                .expect("finish");
        }
    };
    // r4 ends: r2 is next in order but its key is taken by r1; r3 goes.
    end("r4").await;
    assert_eq!(store.admit(100).await.expect("admit").admitted, ["r3"]);
    let place = store
        .queue_position("r2")
        .await
        .expect("read")
        .expect("queued");
    assert_eq!((place.position, place.held_by), (0, Held::Concurrency));
    end("r3").await;
    let place = store
        .queue_position("r2")
        .await
        .expect("read")
        .expect("queued");
    assert_eq!(place.held_by, Held::Key);
    assert!(store.admit(100).await.expect("admit").admitted.is_empty());
    end("r1").await;
    assert_eq!(store.admit(100).await.expect("admit").admitted, ["r2"]);
    // A long backlog of one key (its run holding the key) does not hide a
    // run of another key behind it.
    for i in 0..150 {
        store
            .create_queued_run(queued(&format!("a{i}"), "a"), start(0))
            .await
            .expect("queued");
    }
    store
        .create_queued_run(queued("b-last", "b"), start(0))
        .await
        .expect("queued");
    assert_eq!(store.admit(100).await.expect("admit").admitted, ["b-last"]);

    // A rate of 1 an hour with a burst of 2: two now, the third in an hour.
    let mut slow = QueueConfig::unlimited("slow");
    slow.rate = Some(Rate::parse("1/1h").expect("rate"));
    slow.burst = 2;
    store.put_queue(slow).await.expect("put");
    for id in ["s1", "s2", "s3", "s4"] {
        let mut st = start(0);
        st.queue = "slow".into();
        store
            .create_queued_run(new_run(id), st)
            .await
            .expect("queued");
    }
    let before = now_ms();
    let admitted = store.admit(100).await.expect("admit");
    assert_eq!(admitted.admitted, ["s1", "s2"]);
    let next = admitted.next_at_ms.expect("a next token");
    assert!(
        next >= before + 3_500_000 && next <= now_ms() + 3_600_000,
        "{next}"
    );
    assert!(store.admit(100).await.expect("admit").admitted.is_empty());
    let place = store
        .queue_position("s3")
        .await
        .expect("read")
        .expect("queued");
    assert_eq!(place.held_by, Held::Rate);
    // A queued run is cancelled at once (nobody drives it).
    store.cancel("s4").await.expect("cancel");
    let s4 = store.run("s4").await.expect("read").expect("run");
    assert_eq!(s4.status, RunStatus::Cancelled);
    assert_eq!(s4.queue.as_deref(), Some("slow"));
    let queues = store.queues().await.expect("queues");
    let counts: Vec<_> = queues
        .iter()
        .map(|q| (q.config.name.as_str(), q.queued, q.active))
        .collect();
    assert_eq!(counts, [("q", 150, 2), ("slow", 1, 2)]);

    // Debounced starts of one workflow and key within the window are one
    // run: the last input wins (or the first), admitted when it ends.
    use crate::Debounce;
    let debounce = |ms: i64, last_wins: bool| Debounce {
        key: "k".into(),
        ms,
        last_wins,
    };
    let with_input = |id: &str, n: u32| {
        let mut run = new_run(id);
        run.input = format!("{{\"n\":{n}}}");
        run
    };
    let made = store
        .create_debounced_run(with_input("d1", 1), debounce(3_600_000, true), None)
        .await
        .expect("debounced");
    assert!(matches!(&made, Creation::Created(r) if r.id == "d1" && r.status == RunStatus::Queued));
    let joined = store
        .create_debounced_run(with_input("d2", 2), debounce(3_600_000, true), None)
        .await
        .expect("debounced");
    assert!(matches!(&joined, Creation::Existing(r) if r.id == "d1" && r.input == "{\"n\":2}"));
    let kept = store
        .create_debounced_run(with_input("d3", 3), debounce(3_600_000, false), None)
        .await
        .expect("debounced");
    assert!(matches!(&kept, Creation::Existing(r) if r.id == "d1" && r.input == "{\"n\":2}"));
    assert!(store.run("d2").await.expect("read").is_none());
    let place = store
        .queue_position("d1")
        .await
        .expect("read")
        .expect("queued");
    assert_eq!(
        (place.queue.as_deref(), place.held_by),
        (None, Held::Debounce)
    );
    let admission = store.admit(100).await.expect("admit");
    assert!(admission.admitted.is_empty());
    assert!(
        admission
            .next_at_ms
            .is_some_and(|t| t > now_ms() + 3_000_000)
    );
    // A window of 0 ends at once; another key is another run.
    let mut other = debounce(0, true);
    other.key = "other".into();
    store
        .create_debounced_run(with_input("e1", 1), other, None)
        .await
        .expect("debounced");
    assert_eq!(store.admit(100).await.expect("admit").admitted, ["e1"]);
    store.close().await;
}

/// At most `limit` attempts of a step hold a slot at once; a slot given
/// back, or held by a process whose lease ran out, is free again.
async fn step_slots_hold_a_limit_and_come_back_with_the_lease(kind: Kind) {
    let db = fresh(kind).await;
    let store = Store::open(&db.location).await.expect("open");
    let me = Owner::current();
    for id in ["s1", "s2", "s3"] {
        store.claim_run(new_run(id), &me).await.expect("claim");
    }
    let take = |run: &'static str, key: &'static str| {
        let (store, me) = (&store, &me);
        async move {
            store
                .take_step_slot("charge", 2, run, key, me)
                .await
                .expect("take")
        }
    };
    assert!(take("s1", "charge#1").await);
    assert!(take("s2", "charge#1").await);
    assert!(!take("s3", "charge#1").await, "a third slot of two");
    store
        .give_back_step_slot("charge", "s1", "charge#1")
        .await
        .expect("give back");
    assert!(take("s3", "charge#1").await);
    // Another step's limit is its own.
    assert!(
        store
            .take_step_slot("other", 1, "s1", "other#1", &me)
            .await
            .expect("take")
    );
    // s2's owner dies (its lease runs out): its slot stops counting.
    store.release("s2", &me).await.expect("release");
    assert!(take("s1", "charge#2").await);
    store.close().await;
}
