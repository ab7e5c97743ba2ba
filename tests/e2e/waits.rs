//! Durable timers and events: runs that wait holding nothing, woken by
//! their time or by `durable event` from another process, across SIGKILLs,
//! and stopped cleanly by SIGINT and SIGTERM.

use std::process::Child;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::util::{Env, finish, wasm};

/// Polls `cond` every 20 ms for at most 60 s.
#[track_caller]
fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The run's status, or "" before it exists.
fn status(env: &Env, run: &str) -> String {
    if !env.has_table("runs") {
        return String::new();
    }
    env.query(&format!("SELECT status FROM runs WHERE id = '{run}'"))
        .first()
        .map(|r| r[0].clone())
        .unwrap_or_default()
}

/// Keys of the run's committed waits (`$sleep#n`, `$event:NAME#n`).
fn waits(env: &Env, run: &str) -> Vec<String> {
    env.query(&format!(
        "SELECT key FROM steps WHERE run_id = '{run}' AND (key LIKE '$sleep%' OR key LIKE '$event%') ORDER BY key"
    ))
    .into_iter()
    .map(|r| r[0].clone())
    .collect()
}

fn signal(child: &Child, sig: i32) {
    // SAFETY: kill(2) on a child we started and have not reaped.
    unsafe {
        libc::kill(child.id() as i32, sig);
    }
}

fn event(env: &Env, run: &str, name: &str, data: &str) {
    env.run(&["event", run, name, "--data", data])
        .expect_code(Some(0));
}

fn started_at(env: &Env, run: &str, key: &str) -> i64 {
    env.query(&format!(
        "SELECT started_at_ms FROM steps WHERE run_id = '{run}' AND key = '{key}'"
    ))[0][0]
        .parse()
        .expect("a time")
}

fn wake_at(env: &Env, run: &str) -> i64 {
    env.query(&format!(
        "SELECT value FROM steps WHERE run_id = '{run}' AND key = '$sleep#1'"
    ))[0][0]
        .parse()
        .expect("a time")
}

#[test]
fn a_sleep_killed_and_resumed_after_its_time_does_not_sleep_again() {
    let env = Env::new();
    let input = r#"{"mode":"sleep","delay_ms":2000}"#;
    let child = env.spawn(&["run", &wasm("testbed"), "--input", input, "--id", "s"]);
    wait_for("the run to park", || status(&env, "s") == "waiting");
    let wake = wake_at(&env, "s");
    let mut child = child;
    let _ = child.kill();
    let _ = child.wait();
    // Resume after the wake-up time: no second sleep.
    let left = wake - durable::clock::now_ms();
    if left > 0 {
        std::thread::sleep(Duration::from_millis(left as u64 + 100));
    }
    let started = Instant::now();
    let resumed = env.run(&["resume", "s"]);
    assert_eq!(
        resumed.success(),
        json!({"before": {"echo": "before"}, "after": {"echo": "after"}})
    );
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(resumed.executed(), ["echo#2"]);
    assert_eq!(
        wake_at(&env, "s"),
        wake,
        "the wake-up time is the first call's"
    );
    assert!(started_at(&env, "s", "echo#2") >= wake);
}

#[test]
fn a_sleep_killed_and_resumed_before_its_time_waits_only_the_rest() {
    let env = Env::new();
    let input = r#"{"mode":"sleep","delay_ms":2500}"#;
    let child = env.spawn(&["run", &wasm("testbed"), "--input", input, "--id", "s"]);
    wait_for("the run to park", || status(&env, "s") == "waiting");
    let wake = wake_at(&env, "s");
    let first_call = started_at(&env, "s", "$sleep#1");
    let mut child = child;
    let _ = child.kill();
    let _ = child.wait();
    let resumed = env.run(&["resume", "s"]);
    resumed.success();
    assert!(
        resumed.stderr().contains("sleeping until"),
        "{}",
        resumed.stderr()
    );
    let after = started_at(&env, "s", "echo#2");
    assert!(after >= wake, "the step after the sleep ran early");
    assert!(after - first_call >= 2500, "{} ms", after - first_call);
    // Only the rest: not a fresh 2.5 s from the resume.
    assert!(after - wake < 2000, "{} ms late", after - wake);
}

#[test]
fn events_are_delivered_once_in_order_before_during_and_after_a_kill() {
    let env = Env::new();
    let input = r#"{"mode":"events","n":3,"delay_ms":500}"#;
    let child = env.spawn(&["run", &wasm("testbed"), "--input", input, "--id", "e"]);
    wait_for("the run to wait for ping", || {
        status(&env, "e") == "waiting"
    });
    // During the wait (from another process), and one before the next wait.
    event(&env, "e", "ping", r#"{"n":1}"#);
    event(&env, "e", "ping", r#"{"n":2}"#);
    wait_for("the third wait", || {
        waits(&env, "e").len() == 2 && status(&env, "e") == "waiting"
    });
    // The driver dies while the run waits; the event comes meanwhile.
    let mut child = child;
    let _ = child.kill();
    let _ = child.wait();
    event(&env, "e", "ping", r#"{"n":3}"#);
    let resumed = env.run(&["resume", "e"]);
    let out = resumed.success();
    assert_eq!(
        out,
        json!({"pings": [{"n":1},{"n":2},{"n":3}], "pong": {"timed_out": 500}, "after": {"echo": "after"}})
    );
    // Each consumed once, by the wait it answered, in order.
    assert_eq!(
        env.query("SELECT payload, consumed_by FROM events WHERE run_id = 'e' ORDER BY seq"),
        [
            [r#"{"n":1}"#, "$event:ping#1"],
            [r#"{"n":2}"#, "$event:ping#2"],
            [r#"{"n":3}"#, "$event:ping#3"]
        ]
    );
    // A replay of the finished run gives the same payloads.
    let shown = env.run(&["show", "e", "--json"]).success();
    let payloads: Vec<Value> = shown["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .filter(|s| {
            s["key"]
                .as_str()
                .is_some_and(|k| k.starts_with("$event:ping"))
        })
        .map(|s| s["value"].clone())
        .collect();
    assert_eq!(payloads, [json!({"n":1}), json!({"n":2}), json!({"n":3})]);
    assert_eq!(shown["events"].as_array().map(Vec::len), Some(3));
    assert_eq!(shown["events"][2]["consumed_by"], json!("$event:ping#3"));
    let tree = env.run(&["show", "e"]).stdout();
    assert!(tree.contains("event ping#2 <- event #"), "{tree}");
}

#[test]
fn a_timeout_is_recorded_and_replayed_as_the_same_timeout_after_a_crash() {
    let env = Env::new();
    let input = r#"{"mode":"events","n":0,"delay_ms":300}"#;
    env.crash_after(&wasm("testbed"), input, "t", "echo#1");
    // The pong that arrives now is not the one the run timed out on.
    event(&env, "t", "pong", r#""late""#);
    let started = Instant::now();
    let resumed = env.run(&["resume", "t"]);
    assert_eq!(
        resumed.success(),
        json!({"pings": [], "pong": {"timed_out": 300}, "after": {"echo": "after"}})
    );
    assert!(resumed.executed().is_empty(), "{:?}", resumed.executed());
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(
        env.query("SELECT outcome FROM steps WHERE key = '$event:pong#1'"),
        [["timed-out"]]
    );
    assert_eq!(
        env.query("SELECT count(*) FROM events WHERE consumed_by IS NULL"),
        [["1"]]
    );
}

#[test]
fn an_event_sent_twice_with_one_id_is_stored_once() {
    let env = Env::new();
    let input = r#"{"mode":"events","n":1,"delay_ms":100}"#;
    let child = env.spawn(&["run", &wasm("testbed"), "--input", input, "--id", "d"]);
    wait_for("the run to wait", || status(&env, "d") == "waiting");
    for _ in 0..2 {
        let sent = env.run(&["event", "d", "ping", "--data", "1", "--id", "once"]);
        sent.expect_code(Some(0));
    }
    let run = finish(child, "durable run d", &env.db());
    assert_eq!(run.success()["pings"], json!([1]));
    assert_eq!(env.query("SELECT count(*) FROM events"), [["1"]]);
}

#[test]
fn a_sleep_where_a_step_was_recorded_diverges() {
    let env = Env::new();
    let input = r#"{"mode":"seq3","variant":"sleep"}"#;
    env.crash_after(&wasm("testbed"), input, "v", "step_b#1");
    let before = env.dump();
    let run = env.run(&["run", &wasm("diverge"), "--input", input, "--id", "v"]);
    run.expect_code(Some(5));
    assert!(
        run.stderr()
            .contains("the history has step step_b#1 there, the code now calls step $sleep#1"),
        "{}",
        run.stderr()
    );
    assert_eq!(env.dump(), before);
}

#[test]
fn bad_input_to_durable_event_gets_a_clear_error() {
    let env = Env::new();
    env.run(&["event", "nobody", "ping"]).expect_code(Some(3));
    env.run(&[
        "run",
        &wasm("testbed"),
        "--input",
        r#"{"mode":"seq3"}"#,
        "--id",
        "done",
    ])
    .success();
    let cases: [(&[&str], i32, &str); 4] = [
        (&["event", "nobody", "ping"], 3, "no run"),
        (
            &["event", "done", "ping", "--data", "{bad"],
            2,
            "not valid JSON",
        ),
        (&["event", "done", "a/b"], 2, "invalid event name"),
        (&["event", "done", "ping"], 2, "already finished"),
    ];
    for (args, code, says) in cases {
        let run = env.run(args);
        run.expect_code(Some(code));
        assert!(run.stderr().contains(says), "{args:?}: {}", run.stderr());
    }
    assert_eq!(env.query("SELECT count(*) FROM events"), [["0"]]);
}

#[test]
fn sleeping_in_a_step_body_fails_the_step_for_good() {
    let env = Env::new();
    let run = env.run(&[
        "run",
        &wasm("testbed"),
        "--input",
        r#"{"mode":"sleep-in-step"}"#,
        "--id",
        "n",
    ]);
    let out = run.success();
    assert!(
        out["failed"]
            .as_str()
            .unwrap_or_default()
            .contains("may only be called from the workflow"),
        "{out}"
    );
    assert_eq!(run.executed(), ["napper#1"], "not retried");
}

#[test]
fn a_waiting_run_is_listed_as_waiting_and_cancelled_at_once() {
    let env = Env::new();
    let input = r#"{"mode":"events","n":1,"delay_ms":100}"#;
    let child = env.spawn(&["run", &wasm("testbed"), "--input", input, "--id", "c"]);
    wait_for("the run to wait", || status(&env, "c") == "waiting");
    let listed = env.run(&["list", "--json"]).success();
    assert_eq!(listed[0]["status"], json!("waiting"));
    assert_eq!(listed[0]["waiting_for"], json!("event ping"));
    let shown = env.run(&["show", "c"]);
    assert!(
        shown.stdout().contains("waiting for event ping"),
        "{}",
        shown.stdout()
    );
    env.run(&["cancel", "c"]).expect_code(Some(0));
    let run = finish(child, "durable run c", &env.db());
    run.expect_code(Some(7));
    assert_eq!(status(&env, "c"), "cancelled");
}

#[test]
fn sigint_while_waiting_stops_cleanly_and_the_run_resumes() {
    let env = Env::new();
    let input = r#"{"mode":"events","n":1,"delay_ms":100}"#;
    let child = env.spawn(&["run", &wasm("testbed"), "--input", input, "--id", "i"]);
    wait_for("the run to wait", || status(&env, "i") == "waiting");
    signal(&child, libc::SIGINT);
    let run = finish(child, "durable run i", &env.db());
    run.expect_code(Some(8));
    assert!(
        run.stderr().contains("durable resume i"),
        "{}",
        run.stderr()
    );
    assert_eq!(status(&env, "i"), "waiting");
    event(&env, "i", "ping", "7");
    assert_eq!(env.run(&["resume", "i"]).success()["pings"], json!([7]));
}

#[test]
fn sigterm_while_a_step_runs_lets_it_finish_and_be_recorded() {
    let env = Env::new();
    // Two steps of 1.5 s each: the signal comes during the first.
    let input = r#"{"mode":"long","n":2,"delay_ms":1500}"#;
    let child = env.spawn(&["run", &wasm("testbed"), "--input", input, "--id", "t"]);
    wait_for("the run to start", || status(&env, "t") == "running");
    std::thread::sleep(Duration::from_millis(500));
    signal(&child, libc::SIGTERM);
    let run = finish(child, "durable run t", &env.db());
    run.expect_code(Some(8));
    assert!(
        run.stderr().contains("durable resume t"),
        "{}",
        run.stderr()
    );
    // The step that was running finished and was recorded; the next did not start.
    assert_eq!(
        env.committed("t").into_iter().collect::<Vec<_>>(),
        ["work#1"]
    );
    let resumed = env.run(&["resume", "t"]);
    resumed.success();
    assert_eq!(resumed.executed(), ["work#2"]);
}
