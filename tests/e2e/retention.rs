//! Retention and backups: `durable prune` deletes old finished runs with
//! their records and nothing else (and unused components); a server
//! deletes them by its retention settings; `durable backup` is an online
//! copy of a SQLite database, taken while another process drives a run,
//! consistent and usable on its own.

use std::time::{Duration, Instant};

use crate::server::Server;
use crate::util::{Env, guest, wasm};

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
    assert_eq!(pruned(&["--older-than", "0s", "--workflow", "other"]), 0);
    assert_eq!(runs(env), 3, "a dry run and the filters deleted nothing");
    // A component no run uses is deleted with --components; approval's
    // stays (the open run uses it).
    env.run(&[
        "run",
        &wasm("testbed"),
        "--input",
        r#"{"mode":"repeat"}"#,
        "--id",
        "h",
    ])
    .expect_code(Some(0));
    let out = env.run(&["prune", "--older-than", "0s", "--components"]);
    let v = out.success();
    assert_eq!(v["runs"], 4, "{v}");
    assert_eq!(v["components"], 1, "{v}");
    assert_eq!(runs(env), 0);
    let components = env.run(&["components", "list", "--json"]).stdout();
    assert!(components.contains("approval"), "{components}");
    assert!(!components.contains("testbed"), "{components}");
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

/// `durable serve` with a durable.toml that keeps one workflow's runs 1 s
/// and the others a year: the server's own passes delete the first ones
/// (with their records) and keep the rest; open runs are never touched.
fn serve_prunes_by_retention(env: &Env) {
    let toml = format!(
        "retention = \"365d\"\n\n[workflows.brief]\ncomponent = {:?}\nretention = \"1s\"\n\n\
         [workflows.kept]\ncomponent = {:?}\n",
        guest("testbed").display().to_string(),
        guest("approval").display().to_string(),
    );
    let path = env.dir.path().join("durable.toml");
    std::fs::write(&path, toml).expect("write the config");
    let server = Server::start(
        env,
        &[
            "--config",
            path.to_str().expect("utf-8"),
            "--retention-every",
            "1s",
        ],
    );
    let start = |workflow: &str, id: &str, input: serde_json::Value| {
        let (status, body) = server.json(
            "POST",
            "/v1/runs",
            &serde_json::json!({"workflow": workflow, "id": id, "input": input}),
        );
        assert_eq!(status, 201, "{body}");
    };
    start("brief", "b1", serde_json::json!({"mode": "repeat"}));
    start("brief", "b2", serde_json::json!({"mode": "repeat"}));
    start(
        "kept",
        "k1",
        serde_json::json!({"report":"R","amount":1,"approval_timeout_ms":1}),
    );
    start(
        "kept",
        "k-open",
        serde_json::json!({"report":"R","amount":1,"approval_timeout_ms":600000}),
    );
    for id in ["b1", "b2", "k1"] {
        server.result(id);
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let gone = ["b1", "b2"]
            .iter()
            .all(|id| server.call("GET", &format!("/v1/runs/{id}"), b"").0 == 404);
        if gone {
            break;
        }
        assert!(Instant::now() < deadline, "the brief runs were not pruned");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(server.call("GET", "/v1/runs/k1", b"").0, 200);
    assert_eq!(server.call("GET", "/v1/runs/k-open", b"").0, 200);
    let left = env.rows("SELECT count(*) FROM steps WHERE run_id IN ('b1', 'b2')");
    assert_eq!(left[0][0], "0");
}

#[test]
fn serve_deletes_runs_by_each_workflows_retention() {
    serve_prunes_by_retention(&Env::new());
}

#[test]
fn postgres_serve_deletes_runs_by_each_workflows_retention() {
    serve_prunes_by_retention(&Env::postgres());
}

#[test]
fn serve_refuses_a_bad_retention() {
    let env = Env::new();
    let path = env.dir.path().join("durable.toml");
    std::fs::write(&path, "retention = \"30\"\n").expect("write the config");
    let run = env.run(&["serve", "--config", path.to_str().expect("utf-8")]);
    run.expect_code(Some(2));
    assert!(
        run.stderr().contains("retention \"30\""),
        "{}",
        run.stderr()
    );
    env.run(&["serve", "--retention", "0s"])
        .expect_code(Some(2));
}
