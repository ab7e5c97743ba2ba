//! `durable backup`: an online copy of a SQLite database, taken while
//! another process drives a run, is consistent and usable on its own.

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
