//! Retention and backups: `durable prune` deletes old finished runs with
//! their records and nothing else; `durable backup` is an online copy of a
//! SQLite database, taken while another process drives a run, consistent
//! and usable on its own.

use std::time::{Duration, Instant};

use crate::util::{Env, wasm};

const REPORT: &str =
    r#"{"report":"R-7","amount":70,"approval_timeout_ms":600000,"pay_delay_ms":0}"#;

#[test]
fn a_backup_taken_while_a_run_waits_resumes_on_its_own() {
    let env = Env::new();
    let approval = wasm("approval");
    // A run that submits, then waits for its approval, driven by a process
    // that stays alive while the backup is taken.
    let mut driver = env.spawn(&["run", &approval, "--input", REPORT, "--id", "r7"]);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let parked = env.has_table("runs")
            && env
                .query("SELECT status FROM runs WHERE id = 'r7'")
                .first()
                .is_some_and(|r| r[0] == "waiting");
        if parked {
            break;
        }
        assert!(Instant::now() < deadline, "the run did not park");
        std::thread::sleep(Duration::from_millis(20));
    }
    let copy = env.dir.path().join("copy.db");
    let copy_db = copy.to_str().expect("utf-8 path");
    env.run(&["backup", copy_db]).expect_code(Some(0));
    assert!(!env.dir.path().join("copy.db.partial").exists());

    // A second backup to the same name is refused and changes nothing.
    let before = std::fs::read(&copy).unwrap();
    let again = env.run(&["backup", copy_db]);
    again.expect_code(Some(2));
    assert!(again.stderr().contains("exists"), "{}", again.stderr());
    assert_eq!(std::fs::read(&copy).unwrap(), before);

    let _ = driver.kill();
    let _ = driver.wait();

    // The copy has the run as it was: submitted, waiting. Approve and
    // resume it there: `submit` is not run again.
    let listed = env.run(&["--db", copy_db, "list", "--json"]);
    assert!(listed.stdout().contains("\"r7\""), "{}", listed.stdout());
    env.run(&[
        "--db",
        copy_db,
        "event",
        "r7",
        "approval",
        "--data",
        r#"{"approved":true,"by":"ana"}"#,
    ])
    .expect_code(Some(0));
    let resumed = env.run(&["--db", copy_db, "resume", "r7"]);
    let out = resumed.success();
    assert_eq!(out["status"], "paid", "{out}");
    assert!(
        !resumed.stderr().contains("submitting"),
        "submit ran again:\n{}",
        resumed.stderr()
    );
}

#[test]
fn a_backup_of_a_missing_database_is_refused_and_writes_nothing() {
    let env = Env::new();
    let run = env.run(&["backup", "copy.db"]);
    run.expect_code(Some(2));
    assert!(!env.dir.path().join("copy.db").exists());
}

#[test]
fn postgres_backup_points_at_pg_dump() {
    let env = Env::postgres();
    env.run(&[
        "run",
        &wasm("approval"),
        "--input",
        r#"{"report":"R","amount":1,"approval_timeout_ms":1}"#,
    ])
    .expect_code(Some(0));
    let run = env.run(&["backup", "copy.db"]);
    run.expect_code(Some(2));
    assert!(run.stderr().contains("pg_dump"), "{}", run.stderr());
}

/// Three finished runs and one open one (killed after its first step);
/// `prune` counts, filters, deletes the finished ones with every record,
/// and the open one still resumes to its end.
fn prune_keeps_what_is_open(env: &Env) {
    let approval = wasm("approval");
    for id in ["a", "b", "c"] {
        let input = r#"{"report":"R","amount":1,"approval_timeout_ms":1}"#;
        env.run(&["run", &approval, "--input", input, "--id", id])
            .expect_code(Some(0));
    }
    env.crash_after(&approval, REPORT, "open", "submit#1");
    let runs = |env: &Env| -> u64 {
        let out = env.run(&["prune", "--older-than", "0s", "--dry-run"]);
        out.expect_code(Some(0));
        let v: serde_json::Value = serde_json::from_str(out.stdout().trim()).unwrap();
        assert_eq!(v["dry_run"], true);
        v["runs"].as_u64().unwrap()
    };
    assert_eq!(runs(env), 3);
    let pruned = |args: &[&str]| -> u64 {
        let out = env.run(&[&["prune"], args].concat());
        out.expect_code(Some(0));
        let v: serde_json::Value = serde_json::from_str(out.stdout().trim()).unwrap();
        v["runs"].as_u64().unwrap()
    };
    assert_eq!(pruned(&["--older-than", "1d"]), 0, "nothing is a day old");
    assert_eq!(pruned(&["--older-than", "0s", "--status", "failed"]), 0);
    assert_eq!(runs(env), 3, "a dry run and the filters deleted nothing");
    assert_eq!(pruned(&["--older-than", "0s"]), 3);
    assert_eq!(runs(env), 0);
    for table in [
        "steps",
        "attempts",
        "output",
        "events",
        "waits",
        "drive_starts",
    ] {
        let left = env.rows(&format!(
            "SELECT count(*) FROM {table} WHERE run_id IN ('a', 'b', 'c')"
        ));
        assert_eq!(left[0][0], "0", "{table} kept records of pruned runs");
    }
    let listed = env.run(&["list", "--json"]);
    assert!(listed.stdout().contains("\"open\""), "{}", listed.stdout());
    assert!(!listed.stdout().contains("\"a\""), "{}", listed.stdout());
    env.run(&[
        "event",
        "open",
        "approval",
        "--data",
        r#"{"approved":false}"#,
    ])
    .expect_code(Some(0));
    let resumed = env.run(&["resume", "open"]);
    assert_eq!(resumed.success()["status"], "rejected");

    for bad in [
        &["--older-than", "30"][..],
        &["--older-than", "-1d"],
        &["--older-than", "1d", "--status", "running"],
    ] {
        env.run(&[&["prune"], bad].concat()).expect_code(Some(2));
    }
}

#[test]
fn prune_deletes_old_finished_runs_with_their_records_and_keeps_open_ones() {
    prune_keeps_what_is_open(&Env::new());
}

#[test]
fn postgres_prune_deletes_old_finished_runs_with_their_records_and_keeps_open_ones() {
    prune_keeps_what_is_open(&Env::postgres());
}
