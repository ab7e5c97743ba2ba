//! Components built against `durable:workflow@0.1.0` (kept as built in
//! `tests/guests/v0.1.0/`) run unchanged on a host of 0.2.0: steps,
//! parallel batches, crashes and resumes, sleeps and events.

use serde_json::json;

use crate::util::{Env, finish, root};

fn old(name: &str) -> String {
    root()
        .join("tests/guests/v0.1.0")
        .join(format!("{name}.wasm"))
        .to_str()
        .expect("utf-8 path")
        .to_string()
}

#[test]
fn a_0_1_0_component_crashes_resumes_and_runs_parallel_batches_as_before() {
    let testbed = old("testbed");
    let env = Env::new();
    let crashed = env.crash_after(&testbed, r#"{"mode":"seq3"}"#, "s", "step_b#1");
    assert_eq!(crashed.executed(), ["step_a#1", "step_b#1"]);
    let resumed = env.run(&["resume", "s"]);
    let out = resumed.success();
    assert_eq!(resumed.executed(), ["step_c#1"], "{out}");

    let wide = env.run(&[
        "run",
        &testbed,
        "--id",
        "w",
        "--input",
        r#"{"mode":"wide","n":5}"#,
    ]);
    assert_eq!(wide.success(), json!({"ok": 5, "failed": 0}));
}

#[test]
fn a_0_1_0_component_sleeps_and_waits_for_events() {
    let testbed = old("testbed");
    let env = Env::new();
    let slept = env.run(&[
        "run",
        &testbed,
        "--id",
        "z",
        "--input",
        r#"{"mode":"sleep","delay_ms":200}"#,
    ]);
    assert_eq!(
        slept.success(),
        json!({"before": {"echo": "before"}, "after": {"echo": "after"}})
    );
    let child = env.spawn(&[
        "run",
        &testbed,
        "--id",
        "e",
        "--input",
        r#"{"mode":"events","n":1,"delay_ms":200}"#,
    ]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !(env.has_table("runs")
        && env.query("SELECT status FROM runs WHERE id = 'e'") == [["waiting"]])
    {
        assert!(std::time::Instant::now() < deadline, "the run never waited");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    env.run(&["event", "e", "ping", "--data", "7"])
        .expect_code(Some(0));
    let done = finish(child, "run e", &env.db());
    let out = done.success();
    assert_eq!(out["pings"], json!([7]), "{out}");
    assert_eq!(out["pong"], json!({"timed_out": 200}), "{out}");
}
