//! The guarantees a demanding user relies on, each tried the way that used
//! to break it: nested steps under retries and crashes, replay
//! completeness, host capacity, double drives, runaway workflows and
//! guest-chosen limits.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::util::{Env, finish, wasm};

/// Starts a run of testbed's `busy` mode (a workflow that loops without
/// durable calls after its first step) and waits for that step's commit.
fn start_busy(env: &Env, id: &str) -> std::process::Child {
    let child = env.spawn(&[
        "run",
        &wasm("testbed"),
        "--input",
        r#"{"mode":"busy"}"#,
        "--id",
        id,
    ]);
    let deadline = Instant::now() + Duration::from_secs(60);
    while !env.committed(id).contains("echo#1") {
        assert!(Instant::now() < deadline, "the first step never committed");
        std::thread::sleep(Duration::from_millis(50));
    }
    child
}

fn count(keys: &[String], key: &str) -> usize {
    keys.iter().filter(|k| *k == key).count()
}

/// A directory `state` in the test's directory, granted as `/state`.
fn state_grant(env: &Env) -> String {
    let dir = env.dir.path().join("state");
    std::fs::create_dir_all(&dir).expect("state dir");
    format!("{}::/state", dir.display())
}

#[test]
fn a_retried_parent_recovers_what_its_first_attempt_committed() {
    let env = Env::new();
    let grant = state_grant(&env);
    let input = r#"{"mode":"retried-parent"}"#;
    let run = env.run(&[
        "run",
        &wasm("testbed"),
        "--input",
        input,
        "--id",
        "r",
        "--allow-dir",
        &grant,
    ]);
    let out = run.success();
    let ran = run.executed();
    assert_eq!(count(&ran, "retried_parent#1"), 2, "{ran:?}");
    assert_eq!(count(&ran, "retried_parent#1/echo#1"), 1, "{ran:?}");
    // The clock read in the body is the one the first attempt recorded.
    let recorded = env.query("SELECT value FROM steps WHERE key = 'retried_parent#1/$now#1'");
    assert_eq!(out["now"].to_string(), recorded[0][0]);
    let attempts = env.query("SELECT attempts FROM steps WHERE key = 'retried_parent#1'");
    assert_eq!(attempts, [["2"]]);
}

#[test]
fn a_nested_step_that_failed_for_good_is_recovered_by_its_parents_retry() {
    let env = Env::new();
    let grant = state_grant(&env);
    let run = env.run(&[
        "run",
        &wasm("testbed"),
        "--input",
        r#"{"mode":"child-refused"}"#,
        "--id",
        "r",
        "--allow-dir",
        &grant,
    ]);
    let out = run.success();
    assert!(
        out["child"]["failed"]
            .as_str()
            .unwrap_or_default()
            .contains("never acceptable"),
        "{out}"
    );
    let ran = run.executed();
    assert_eq!(count(&ran, "parent_of_refusal#1/refuse#1"), 1, "{ran:?}");
    assert_eq!(count(&ran, "parent_of_refusal#1"), 2, "{ran:?}");
}

#[test]
fn steps_nested_past_the_limit_are_refused_as_the_guests_error() {
    let env = Env::new();
    let ok = env.run(&[
        "run",
        &wasm("testbed"),
        "--input",
        r#"{"mode":"deep","n":20}"#,
        "--id",
        "shallow",
    ]);
    assert_eq!(ok.success()["depth"], json!(20));
    let deep = env.run(&[
        "run",
        &wasm("testbed"),
        "--input",
        r#"{"mode":"deep","n":2000}"#,
        "--id",
        "deep",
    ]);
    deep.expect_code(Some(1));
    assert!(
        deep.stderr().contains("nested 33 levels deep"),
        "{}",
        deep.stderr()
    );
}

#[test]
fn a_step_body_that_calls_its_child_differently_after_a_crash_supersedes_the_old_record() {
    let env = Env::new();
    let testbed = wasm("testbed");
    let input = r#"{"mode":"unsteady"}"#;
    env.crash_after(&testbed, input, "u", "unsteady#1/echo#1");
    let before = env.query("SELECT input_digest FROM steps WHERE key = 'unsteady#1/echo#1'");
    let resumed = env.run(&["resume", "u"]);
    let out = resumed.success();
    assert_eq!(out["after"], json!({"echo": "after"}));
    // The old record is kept aside, the new one replaced it.
    let superseded = env.query("SELECT key, input_digest FROM superseded_steps WHERE run_id = 'u'");
    assert_eq!(
        superseded,
        [vec!["unsteady#1/echo#1".to_string(), before[0][0].clone()]]
    );
    let after = env.query("SELECT input_digest FROM steps WHERE key = 'unsteady#1/echo#1'");
    assert_ne!(after, before);
    let shown = env.run(&["show", "u", "--json"]).success();
    assert_eq!(shown["superseded"][0]["key"], json!("unsteady#1/echo#1"));
    assert_eq!(shown["superseded"][0]["drive"], json!(1));
    assert_eq!(shown["superseded"][0]["superseded_in_drive"], json!(2));
    // A replay of the finished run changes nothing and gives the same output.
    let again = env.run(&["resume", "u"]);
    assert_eq!(again.success(), out);
}

#[test]
fn new_code_that_no_longer_makes_a_committed_call_diverges() {
    let env = Env::new();
    let input = r#"{"mode":"seq3","variant":"drop-last"}"#;
    env.crash_after(&wasm("testbed"), input, "d", "step_c#1");
    let before = env.dump();
    let run = env.run(&["run", &wasm("diverge"), "--input", input, "--id", "d"]);
    run.expect_code(Some(5));
    assert!(
        run.stderr()
            .contains("the history has step step_c#1 there, but the code ended without calling it"),
        "{}",
        run.stderr()
    );
    assert_eq!(env.dump(), before, "a divergence writes nothing");
}

#[test]
fn a_call_made_in_a_batch_where_it_was_made_alone_diverges() {
    let env = Env::new();
    let input = r#"{"mode":"seq3","variant":"batch"}"#;
    env.crash_after(&wasm("testbed"), input, "b", "step_b#1");
    let run = env.run(&["run", &wasm("diverge"), "--input", input, "--id", "b"]);
    run.expect_code(Some(5));
    assert!(
        run.stderr()
            .contains("step step_b#1 was called alone but is now called in a parallel batch"),
        "{}",
        run.stderr()
    );
}

#[test]
fn ten_thousand_parallel_steps_with_nested_steps_all_succeed_at_their_first_attempt() {
    let env = Env::new();
    let run = env.run(&[
        "run",
        &wasm("testbed"),
        "--input",
        r#"{"mode":"wide","n":10000}"#,
        "--id",
        "w",
        "--max-attempts",
        "1",
    ]);
    assert_eq!(run.success(), json!({"ok": 10000, "failed": 0}));
    assert_eq!(env.query("SELECT count(*) FROM attempts"), [["0"]]);
    assert_eq!(
        env.query("SELECT count(*), max(attempts) FROM steps WHERE run_id = 'w'"),
        [["20000", "1"]]
    );
}

#[test]
fn one_process_asked_to_resume_a_run_twice_drives_it_once() {
    let env = Env::new();
    env.crash_after(&wasm("testbed"), r#"{"mode":"seq3"}"#, "r", "step_a#1");
    let run = env.run(&["resume", "r", "r"]);
    run.expect_code(Some(4));
    let lines: Vec<serde_json::Value> = run
        .stdout()
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert_eq!(lines.len(), 2, "{}", run.stdout());
    let statuses: Vec<&str> = lines.iter().filter_map(|l| l["status"].as_str()).collect();
    assert!(statuses.contains(&"succeeded"), "{statuses:?}");
    assert!(
        run.stdout()
            .contains("already being driven by this process"),
        "{}",
        run.stdout()
    );
    assert!(!run.stderr().contains("UNIQUE"), "{}", run.stderr());
}

#[test]
fn a_workflow_that_loops_without_durable_calls_fails_with_the_reason() {
    let env = Env::new();
    let run = env.run(&[
        "run",
        &wasm("testbed"),
        "--input",
        r#"{"mode":"busy"}"#,
        "--id",
        "busy",
        "--workflow-timeout-ms",
        "300",
    ]);
    run.expect_code(Some(1));
    let err = run.stderr();
    assert!(err.contains("without a durable call"), "{err}");
    assert!(err.contains("frozen"), "{err}");
    assert_eq!(
        env.query("SELECT status FROM runs WHERE id = 'busy'"),
        [["failed"]]
    );
}

#[test]
fn cancel_interrupts_a_workflow_that_makes_no_durable_calls() {
    let env = Env::new();
    let child = start_busy(&env, "busy");
    let cancelled_at = Instant::now();
    env.run(&["cancel", "busy"]).expect_code(Some(0));
    let run = finish(child, "durable run busy", &env.db());
    run.expect_code(Some(7));
    // Stopped by the epoch callback, long before the 60 s budget.
    assert!(
        cancelled_at.elapsed() < Duration::from_secs(30),
        "{:?}",
        cancelled_at.elapsed()
    );
    assert_eq!(
        env.query("SELECT status FROM runs WHERE id = 'busy'"),
        [["cancelled"]]
    );
}

#[test]
fn a_guests_retry_policy_is_capped_by_the_operator() {
    let env = Env::new();
    let run = env.run(&[
        "run",
        &wasm("testbed"),
        "--input",
        r#"{"mode":"greedy-retry"}"#,
        "--id",
        "g",
        "--max-attempts-cap",
        "3",
    ]);
    let out = run.success();
    assert!(out["failed"].is_string(), "{out}");
    assert_eq!(count(&run.executed(), "fail#1"), 3);
}

#[test]
fn a_huge_error_message_is_cut_with_a_marker() {
    let env = Env::new();
    let run = env.run(&[
        "run",
        &wasm("testbed"),
        "--input",
        r#"{"mode":"shout","n":1000000}"#,
        "--id",
        "s",
    ]);
    let out = run.success();
    let message = out["failed"].as_str().unwrap_or_default();
    assert!(message.len() < 9 << 10, "{} bytes", message.len());
    assert!(
        message.ends_with("more bytes cut by the host]"),
        "{message:.100}"
    );
    let stored = env.query("SELECT length(value) FROM steps WHERE key = 'shout#1'");
    let stored: usize = stored[0][0].parse().expect("a length");
    assert!(stored < 9 << 10, "{stored}");
}

#[test]
fn run_ids_that_would_break_keys_or_listings_are_refused() {
    let env = Env::new();
    for id in ["a/b#1", "two\nlines", "", "has space"] {
        let run = env.run(&[
            "run",
            &wasm("testbed"),
            "--input",
            r#"{"mode":"seq3"}"#,
            "--id",
            id,
        ]);
        run.expect_code(Some(2));
        assert!(run.stderr().contains("invalid run id"), "{}", run.stderr());
    }
    assert!(!env.has_table("runs") || env.query("SELECT count(*) FROM runs") == [["0"]]);
}

#[test]
fn a_finished_run_asked_for_with_another_input_is_refused() {
    let env = Env::new();
    let testbed = wasm("testbed");
    env.run(&[
        "run",
        &testbed,
        "--input",
        r#"{"mode":"seq3"}"#,
        "--id",
        "f",
    ])
    .success();
    let other = env.run(&[
        "run",
        &testbed,
        "--input",
        r#"{"mode":"repeat"}"#,
        "--id",
        "f",
    ]);
    other.expect_code(Some(2));
    assert!(
        other.stderr().contains("different input"),
        "{}",
        other.stderr()
    );
    assert!(other.stdout().is_empty(), "{}", other.stdout());
}

#[test]
fn a_run_input_over_the_limit_is_refused_before_anything_is_stored() {
    let env = Env::new();
    let path = env.dir.path().join("big.json");
    std::fs::write(&path, format!("\"{}\"", "x".repeat(2 << 20))).expect("write input");
    let run = env.run(&[
        "run",
        &wasm("testbed"),
        "--input-file",
        path.to_str().expect("utf-8"),
        "--id",
        "big",
    ]);
    run.expect_code(Some(2));
    assert!(
        run.stderr().contains("--max-input-bytes"),
        "{}",
        run.stderr()
    );
    assert!(!env.has_table("runs") || env.query("SELECT count(*) FROM runs") == [["0"]]);
}

#[test]
fn readers_in_another_process_do_not_stall_a_driving_run() {
    let env = Env::new();
    // Output to files: a pipe nobody reads would stall the run instead.
    let out_path = env.dir.path().join("run.out");
    let err_path = env.dir.path().join("run.err");
    let mut child = env
        .cmd(&[
            "run",
            &wasm("testbed"),
            "--input",
            r#"{"mode":"long","n":2000}"#,
            "--id",
            "long",
        ])
        .stdout(std::fs::File::create(&out_path).expect("create"))
        .stderr(std::fs::File::create(&err_path).expect("create"))
        .spawn()
        .expect("durable starts");
    let deadline = Instant::now() + Duration::from_secs(600);
    let mut reads = 0;
    // Read as hard as one process can until the run ends (bounded).
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the run did not end");
        }
        if !env.has_table("runs") {
            std::thread::sleep(Duration::from_millis(20));
            continue;
        }
        for args in [&["show", "long", "--logs"][..], &["list"][..]] {
            let r = env.run(args);
            // The run may not exist yet (3); anything else must succeed.
            assert!(
                matches!(r.out.status.code(), Some(0) | Some(3)),
                "{}\n{}",
                r.cmd,
                r.stderr()
            );
            reads += 1;
        }
    };
    let stderr = std::fs::read_to_string(&err_path).unwrap_or_default();
    assert!(status.success(), "{status:?}\n{stderr}");
    let out: serde_json::Value =
        serde_json::from_str(std::fs::read_to_string(&out_path).expect("output").trim())
            .expect("output JSON");
    assert!(out["results"].as_array().is_some_and(|r| r.len() > 2000));
    assert!(reads > 2, "only {reads} reads happened during the run");
}

#[test]
fn grants_that_expose_the_database_or_the_compile_cache_are_refused() {
    let env = Env::new();
    let dir = env.dir.path().to_str().expect("utf-8").to_string();
    let cache = env.dir.path().join("cache");
    let cache_arg = cache.to_str().expect("utf-8").to_string();
    for (flag, grant, says) in [
        ("--allow-dir", dir.clone(), "holds the database"),
        (
            "--allow-dir-ro",
            format!("{dir}::/data"),
            "holds the database",
        ),
    ] {
        let run = env.run(&[
            "run",
            &wasm("testbed"),
            "--input",
            r#"{"mode":"seq3"}"#,
            flag,
            &grant,
        ]);
        run.expect_code(Some(2));
        assert!(run.stderr().contains(says), "{}", run.stderr());
    }
    // The database elsewhere: the same directory now holds only the cache.
    std::fs::create_dir_all(&cache).expect("cache dir");
    let elsewhere = tempfile::tempdir().expect("tempdir");
    let db = elsewhere.path().join("d.db");
    let run = env.run(&[
        "--db",
        db.to_str().expect("utf-8"),
        "run",
        &wasm("testbed"),
        "--input",
        r#"{"mode":"seq3"}"#,
        "--cache-dir",
        &cache_arg,
        "--allow-dir",
        &dir,
    ]);
    run.expect_code(Some(2));
    assert!(
        run.stderr().contains("overlaps the compile cache"),
        "{}",
        run.stderr()
    );
    assert!(!db.exists(), "a refused grant opens no database");
}

#[test]
fn a_tampered_compile_cache_entry_is_compiled_again_not_run() {
    use std::io::{Seek, SeekFrom, Write};
    use std::os::unix::fs::PermissionsExt;
    let env = Env::new();
    let cache = env.dir.path().join("private-cache");
    let cache_arg = cache.to_str().expect("utf-8").to_string();
    let testbed = wasm("testbed");
    let input = r#"{"mode":"seq3"}"#;
    env.run(&[
        "run",
        &testbed,
        "--input",
        input,
        "--id",
        "a",
        "--cache-dir",
        &cache_arg,
    ])
    .success();
    let mode = std::fs::metadata(&cache)
        .expect("cache")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o700, "{mode:o}");
    let entry = std::fs::read_dir(&cache)
        .expect("read cache")
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "cwasm"))
        .expect("a compiled entry");
    let original = std::fs::read(&entry).expect("read entry");
    // Overwrite the middle (machine code) with breakpoint instructions.
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .open(&entry)
        .expect("open entry");
    f.seek(SeekFrom::Start(original.len() as u64 / 2))
        .expect("seek");
    f.write_all(&[0xCC; 4096]).expect("tamper");
    drop(f);
    let run = env.run(&[
        "run",
        &testbed,
        "--input",
        input,
        "--id",
        "b",
        "--cache-dir",
        &cache_arg,
    ]);
    let first = env.run(&["run", &testbed, "--input", input, "--id", "a"]);
    assert_eq!(run.success(), first.success());
    assert!(
        run.stderr().contains("does not match its recorded digest"),
        "{}",
        run.stderr()
    );
    assert_eq!(
        std::fs::read(&entry).expect("read entry"),
        original,
        "the entry was compiled again and rewritten"
    );
}

#[test]
fn resume_without_ids_names_the_runs_it_skips_and_why() {
    let env = Env::new();
    let child = start_busy(&env, "held");
    let resume = env.run(&["resume"]);
    resume.expect_code(Some(0));
    assert!(
        resume.stderr().contains("skipping run held: process"),
        "{}",
        resume.stderr()
    );
    env.run(&["cancel", "held"]).expect_code(Some(0));
    finish(child, "durable run held", &env.db()).expect_code(Some(7));
}

#[test]
fn a_drive_that_finds_its_lease_taken_stops_at_once() {
    let env = Env::new();
    let child = start_busy(&env, "taken");
    // Another host takes the run over (as after a lapsed lease).
    env.query(
        "UPDATE runs SET owner = 'elsewhere.invalid:-:-:1:-:0000000000000001',
                         lease_until_ms = 99999999999999, drives = drives + 1
         WHERE id = 'taken'",
    );
    let taken_at = Instant::now();
    let run = finish(child, "durable run taken", &env.db());
    run.expect_code(Some(4));
    assert!(
        taken_at.elapsed() < Duration::from_secs(30),
        "{:?}",
        taken_at.elapsed()
    );
    assert!(run.stderr().contains("taken"), "{}", run.stderr());
    // The drive wrote nothing after it lost the run.
    assert_eq!(
        env.query("SELECT status, owner FROM runs WHERE id = 'taken'"),
        [[
            "running".to_string(),
            "elsewhere.invalid:-:-:1:-:0000000000000001".to_string()
        ]]
    );
}

#[test]
fn cancel_ends_a_retry_backoff_and_no_other_attempt_starts() {
    let env = Env::new();
    let child = env.spawn(&[
        "run",
        &wasm("testbed"),
        "--input",
        r#"{"mode":"slow-retry"}"#,
        "--id",
        "slow",
    ]);
    let deadline = Instant::now() + Duration::from_secs(60);
    while !(env.has_table("attempts")
        && env.query("SELECT count(*) FROM attempts WHERE run_id = 'slow'") == [["1"]])
    {
        assert!(Instant::now() < deadline, "the first attempt never failed");
        std::thread::sleep(Duration::from_millis(50));
    }
    let cancelled_at = Instant::now();
    env.run(&["cancel", "slow"]).expect_code(Some(0));
    let run = finish(child, "durable run slow", &env.db());
    run.expect_code(Some(7));
    // Within the 20 s backoff, and the step ran once.
    assert!(
        cancelled_at.elapsed() < Duration::from_secs(10),
        "{:?}",
        cancelled_at.elapsed()
    );
    assert_eq!(count(&run.executed(), "fail#1"), 1);
}
