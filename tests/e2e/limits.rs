//! Limits and retries: timeouts, memory, result and history sizes, backoff.

use serde_json::json;

use crate::util::{Env, wasm};

#[test]
fn an_infinite_loop_is_interrupted_at_its_timeout_retried_and_the_host_goes_on() {
    let env = Env::new();
    let run = env.run(&[
        "run",
        &wasm("testbed"),
        "--input",
        r#"{"mode":"loop","delay_ms":200}"#,
        "--id",
        "l",
    ]);
    let out = run.success();
    assert_eq!(out["loop"], json!({"timed_out": 200}));
    // Two attempts (its policy), each interrupted; then the run went on.
    assert_eq!(run.executed(), ["spin#1", "spin#1", "echo#1"]);
    assert_eq!(out["after"], json!({"echo": "still alive"}));
    assert!(
        run.stderr()
            .contains("attempt 1 timed out after 200 ms; retrying"),
        "{}",
        run.stderr()
    );
    let attempts = env.query(
        "SELECT attempt, outcome, value FROM attempts WHERE key = 'spin#1' ORDER BY attempt",
    );
    assert_eq!(
        attempts,
        [["1", "timed-out", "200"], ["2", "timed-out", "200"]]
    );
    let step = env.query("SELECT outcome, attempts FROM steps WHERE key = 'spin#1'");
    assert_eq!(step, [["timed-out", "2"]]);
}

#[test]
fn a_memory_bomb_fails_its_attempt_with_the_limit_named_and_the_host_goes_on() {
    let env = Env::new();
    let run = env.run(&[
        "run",
        &wasm("testbed"),
        "--input",
        r#"{"mode":"bomb"}"#,
        "--id",
        "b",
        "--max-memory-mb",
        "64",
    ]);
    let out = run.success();
    let trapped = out["bomb"]["trapped"].as_str().unwrap_or_default();
    assert!(trapped.contains("memory limit exceeded"), "{out}");
    assert!(trapped.contains("limit of 64 MiB"), "{out}");
    assert_eq!(out["after"], json!({"echo": "still alive"}));
}

#[test]
fn an_oversized_result_fails_with_a_message_that_names_the_limit_and_is_not_retried() {
    let env = Env::new();
    let run = env.run(&[
        "run",
        &wasm("testbed"),
        "--input",
        r#"{"mode":"big","n":5000}"#,
        "--id",
        "g",
        "--max-result-bytes",
        "1000",
    ]);
    let out = run.success();
    let failed = out["failed"].as_str().unwrap_or_default();
    assert!(
        failed.contains("over the result size limit of 1000 bytes"),
        "{out}"
    );
    assert_eq!(
        run.executed(),
        ["big#1"],
        "a permanent failure is not retried"
    );
    // Within the limit it works.
    let small = env.run(&[
        "run",
        &wasm("testbed"),
        "--input",
        r#"{"mode":"big","n":500}"#,
        "--id",
        "s",
    ]);
    assert_eq!(small.success()["ok"].as_str().map(str::len), Some(500));
}

#[test]
fn a_run_whose_history_outgrows_its_limit_fails_with_a_clear_message() {
    let env = Env::new();
    let run = env.run(&[
        "run",
        &wasm("testbed"),
        "--input",
        r#"{"mode":"history","n":30}"#,
        "--id",
        "h",
        "--max-history-bytes",
        "10000",
    ]);
    run.expect_code(Some(1));
    assert!(
        run.stderr().contains("history size limit of 10000 bytes"),
        "{}",
        run.stderr()
    );
    let status = env.query("SELECT status FROM runs WHERE id = 'h'");
    assert_eq!(status, [["failed"]]);
    let recorded: i64 = env.query("SELECT sum(length(value)) FROM steps WHERE run_id = 'h'")[0][0]
        .parse()
        .expect("a number");
    assert!(recorded <= 10000, "{recorded}");
}

#[test]
fn a_step_that_fails_twice_then_succeeds_is_retried_with_every_attempt_recorded() {
    let env = Env::new();
    let state = env.dir.path().join("state");
    std::fs::create_dir(&state).expect("mkdir");
    let dir = format!("{}::/state", state.display());
    let run = env.run(&[
        "run",
        &wasm("testbed"),
        "--input",
        r#"{"mode":"flaky","n":3}"#,
        "--id",
        "f",
        "--allow-dir",
        &dir,
    ]);
    assert_eq!(run.success(), json!({"ok": {"succeeded_on_attempt": 3}}));
    assert_eq!(run.executed(), ["flaky#1", "flaky#1", "flaky#1"]);
    let attempts = env
        .query("SELECT attempt, outcome, value FROM attempts WHERE run_id = 'f' ORDER BY attempt");
    assert_eq!(
        attempts,
        [
            ["1", "failed", "attempt 1 fails"],
            ["2", "failed", "attempt 2 fails"]
        ]
    );
    assert_eq!(
        env.query("SELECT outcome, attempts FROM steps WHERE run_id = 'f'"),
        [["ok", "3"]]
    );
    // Waits were recorded in the timings: the second attempt started at
    // least the jittered backoff (>= 5 ms) after the first ended.
    let gaps = env.query(
        "SELECT b.started_at_ms - a.finished_at_ms FROM attempts a JOIN attempts b
         ON a.run_id = b.run_id AND a.key = b.key AND b.attempt = a.attempt + 1",
    );
    assert!(
        gaps.iter().all(|g| g[0].parse::<i64>().expect("ms") >= 5),
        "{gaps:?}"
    );
}

#[test]
fn a_step_that_always_fails_ends_with_its_last_error_which_is_replayed() {
    let env = Env::new();
    let input = r#"{"mode":"always-fails"}"#;
    let first = env.crash_after(&wasm("testbed"), input, "a", "fail#1");
    assert_eq!(first.executed(), ["fail#1", "fail#1", "fail#1"]);
    assert_eq!(
        env.query("SELECT count(*) FROM attempts WHERE run_id = 'a'"),
        [["3"]]
    );
    let resumed = env.run(&["resume", "a"]);
    assert_eq!(resumed.success(), json!({"failed": "boom: \"again\""}));
    assert!(
        resumed.executed().is_empty(),
        "the final error is replayed, not retried"
    );
}

#[test]
fn a_permanent_error_stops_the_retries_at_once() {
    let env = Env::new();
    let run = env.run(&[
        "run",
        &wasm("testbed"),
        "--input",
        r#"{"mode":"permanent"}"#,
        "--id",
        "p",
    ]);
    assert_eq!(run.success(), json!({"failed": "7 is never acceptable"}));
    assert_eq!(run.executed(), ["refuse#1"]);
}
