//! Workflows that compose (WIT 0.2.0): child workflows started, awaited and
//! cancelled with their parent, races whose winner survives a crash, and
//! fan-outs bounded by the SDK. Parent and children run in real `durable`
//! processes, killed for real at every point between a child's start and
//! the parent's record of its end.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::server::Server;
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

/// Full idempotency keys (`run/step#n`) of the step bodies that ran.
fn bodies(stderr: &str) -> Vec<String> {
    stderr
        .lines()
        .filter_map(|l| l.split_once("EXEC ").map(|(_, k)| k.trim().to_string()))
        .collect()
}

/// `durable list --parent PARENT --json --limit 0`.
fn children(env: &Env, parent: &str) -> Vec<Value> {
    let listed = env
        .run(&["list", "--parent", parent, "--json", "--limit", "0"])
        .success();
    listed.as_array().cloned().unwrap_or_default()
}

#[test]
fn a_child_runs_once_and_its_parent_sees_one_result_whatever_point_the_process_is_killed_at() {
    let family = wasm("family");
    let input = r#"{"mode":"one_child","i":5}"#;
    // From the child's start to the parent's record of its end: the child
    // created; its first step committed; its last; its end committed; the
    // parent's record of that end.
    for point in [
        "$child:family#1@started",
        "double#1",
        "inc#1",
        "$end",
        "$child:family#1",
    ] {
        let env = Env::new();
        let crashed = env.crash_after(&family, input, "p", point);
        let resumed = env.run(&["resume", "p"]);
        assert_eq!(
            resumed.success(),
            json!({"child": 11}),
            "killed after {point}:\n{}",
            resumed.stderr()
        );
        let mut ran = bodies(&crashed.stderr());
        ran.extend(bodies(&resumed.stderr()));
        ran.sort();
        assert_eq!(
            ran,
            ["p:family-1/double#1", "p:family-1/inc#1"],
            "killed after {point}: each body of the child ran once\n--- crashed\n{}\n--- resumed\n{}",
            crashed.stderr(),
            resumed.stderr()
        );
        let kids = children(&env, "p");
        assert_eq!(kids.len(), 1, "killed after {point}: {kids:?}");
        assert_eq!(kids[0]["id"], "p:family-1");
        assert_eq!(kids[0]["status"], "succeeded");
        assert_eq!(kids[0]["parent"], "p");
        // The parent recorded the child's end once.
        let recorded =
            env.query("SELECT value FROM steps WHERE run_id = 'p' AND key = '$child:family#1'");
        assert_eq!(recorded.len(), 1, "killed after {point}");
        let end: Value = serde_json::from_str(&recorded[0][0]).expect("JSON");
        assert_eq!(end, json!({"status": "succeeded", "output": 11}));
    }
}

#[test]
fn a_race_keeps_its_recorded_winner_after_a_crash_even_when_the_loser_completed_meanwhile() {
    let family = wasm("family");
    // The timer is first in the list and fires after 400 ms; the step wins
    // at once. Killed right after the win is recorded, resumed after the
    // timer's time: both have completed then, and the first in list order
    // would be the timer, but the record says the step.
    let input = r#"{"mode":"race_step","timeout_ms":400,"delay_ms":10}"#;
    let env = Env::new();
    let crashed = env.crash_after(&family, input, "r", "$select#1");
    assert_eq!(bodies(&crashed.stderr()), ["r/nap#1"]);
    std::thread::sleep(Duration::from_millis(600));
    let resumed = env.run(&["resume", "r"]);
    assert_eq!(resumed.success(), json!({"winner": "step"}));
    // The step did not run again; what follows the race ran once.
    assert_eq!(bodies(&resumed.stderr()), ["r/after#1"]);
    assert_eq!(
        env.query("SELECT value FROM steps WHERE run_id = 'r' AND key = '$select#1'"),
        [["1"]]
    );

    // The same race with the timer quicker: the timer wins.
    let env = Env::new();
    let input = r#"{"mode":"race_step","timeout_ms":10,"delay_ms":400}"#;
    let won = env.run(&["run", &family, "--id", "t", "--input", input]);
    assert_eq!(won.success(), json!({"winner": "timer"}));
}

#[test]
fn an_event_raced_against_a_timer_wins_when_it_comes_first_and_the_run_waits_holding_nothing() {
    let family = wasm("family");
    let env = Env::new();
    let input = r#"{"mode":"race_event","timeout_ms":60000}"#;
    let child = env.spawn(&["run", &family, "--id", "e", "--input", input]);
    wait_for("the run to park", || {
        env.has_table("runs")
            && env.query("SELECT status FROM runs WHERE id = 'e'") == [["waiting"]]
    });
    env.run(&["event", "e", "go", "--data", r#"{"ok":true}"#])
        .expect_code(Some(0));
    let done = finish(child, "run e", &env.db());
    assert_eq!(
        done.success(),
        json!({"winner": "event", "payload": {"ok": true}})
    );
    // The event was consumed once, by the handle's record.
    assert_eq!(
        env.query("SELECT consumed_by FROM events WHERE run_id = 'e'"),
        [["$event:go#1"]]
    );
}

#[test]
fn a_childs_failure_and_cancel_reach_the_parent_as_values_and_step_handles_join_in_order() {
    let family = wasm("family");
    let env = Env::new();
    let failed = env.run(&[
        "run",
        &family,
        "--id",
        "f",
        "--input",
        r#"{"mode":"child_fails"}"#,
    ]);
    assert_eq!(
        failed.success(),
        json!({"failed": "the child failed on purpose"})
    );
    assert_eq!(children(&env, "f")[0]["status"], "failed");

    let cancelled = env.run(&[
        "run",
        &family,
        "--id",
        "c",
        "--input",
        r#"{"mode":"cancel_child"}"#,
    ]);
    let out = cancelled.success();
    assert!(out["cancelled"].is_string(), "{out}");
    assert_eq!(children(&env, "c")[0]["status"], "cancelled");

    // A child past its timeout is cancelled, and the parent sees timed-out.
    let timed = env.run(&[
        "run",
        &family,
        "--id",
        "t",
        "--input",
        r#"{"mode":"child_timeout","timeout_ms":300}"#,
    ]);
    assert_eq!(timed.success(), json!({"timed_out": 300}));
    assert_eq!(children(&env, "t")[0]["status"], "cancelled");
    let recorded =
        env.query("SELECT value FROM steps WHERE run_id = 't' AND key = '$child:family#1'");
    assert_eq!(recorded, [[r#"{"status":"timed-out","timeout_ms":300}"#]]);

    let steps = env.run(&[
        "run",
        &family,
        "--id",
        "s",
        "--input",
        r#"{"mode":"steps"}"#,
    ]);
    assert_eq!(steps.success(), json!([2, 4, 6]));
    let mut ran = bodies(&steps.stderr());
    ran.sort();
    assert_eq!(ran, ["s/double#1", "s/double#2", "s/double#3"]);
}

#[test]
fn cancelling_a_parent_cancels_its_children_and_leaves_nothing_running() {
    let family = wasm("family");
    let env = Env::new();
    let child = env.spawn(&[
        "run",
        &family,
        "--id",
        "t",
        "--input",
        r#"{"mode":"tree","n":3}"#,
    ]);
    wait_for("three waiting children", || {
        env.has_table("runs")
            && env.query("SELECT count(*) FROM runs WHERE parent_id = 't' AND status = 'waiting'")
                == [["3"]]
    });
    env.run(&["cancel", "t"]).expect_code(Some(0));
    let done = finish(child, "run t", &env.db());
    assert_eq!(done.out.status.code(), Some(7), "{}", done.stderr());
    assert_eq!(
        env.query("SELECT id, status FROM runs ORDER BY id"),
        [
            ["t", "cancelled"],
            ["t:family-1", "cancelled"],
            ["t:family-2", "cancelled"],
            ["t:family-3", "cancelled"]
        ]
    );
}

#[test]
fn a_thousand_children_run_with_at_most_twenty_at_once() {
    let family = wasm("family");
    let env = Env::new();
    let input = r#"{"mode":"fanout","n":1000,"limit":20}"#;
    let out = env.run(&["run", &family, "--id", "fan", "--input", input]);
    // Child i returns 2i + 1.
    assert_eq!(out.success(), json!({"children": 1000, "sum": 1_000_000}));
    let rows =
        env.query("SELECT status, created_at_ms, finished_at_ms FROM runs WHERE parent_id = 'fan'");
    assert_eq!(rows.len(), 1000);
    assert!(rows.iter().all(|r| r[0] == "succeeded"), "{rows:?}");
    // The most children alive at one time: a start after an end at the
    // same millisecond does not overlap it.
    let mut changes: BTreeMap<(i64, i32), i32> = BTreeMap::new();
    for r in &rows {
        let (start, end): (i64, i64) = (r[1].parse().expect("ms"), r[2].parse().expect("ms"));
        *changes.entry((start, 1)).or_default() += 1;
        *changes.entry((end, 0)).or_default() -= 1;
    }
    let (mut alive, mut most) = (0, 0);
    for delta in changes.values() {
        alive += delta;
        most = most.max(alive);
    }
    assert!(most <= 20, "{most} children alive at once");
    assert!(most >= 2, "the children ran one at a time");
}

#[test]
fn parent_and_children_are_linked_in_list_and_show() {
    let family = wasm("family");
    let env = Env::new();
    env.run(&[
        "run",
        &family,
        "--id",
        "p",
        "--input",
        r#"{"mode":"one_child","i":1}"#,
    ])
    .success();
    let shown = env.run(&["show", "p:family-1", "--json"]).success();
    assert_eq!(shown["parent"], "p");
    let parent = env.run(&["show", "p", "--json"]).success();
    assert_eq!(parent["parent"], Value::Null);
    let text = env.run(&["show", "p"]).stdout();
    assert!(text.contains("p:family-1"), "{text}");
    let listed = env.run(&["list", "--json"]).success();
    let ids: Vec<&str> = listed
        .as_array()
        .expect("an array")
        .iter()
        .filter_map(|r| r["id"].as_str())
        .collect();
    assert!(ids.contains(&"p") && ids.contains(&"p:family-1"), "{ids:?}");
}

#[test]
fn serve_runs_children_of_registered_workflows_and_lists_them_by_parent() {
    let env = Env::new();
    let server = Server::start(&env, &[]);
    let digest = server.upload("family");
    let (status, body) = server.json(
        "POST",
        "/v1/workflows",
        &json!({"name": "family", "component": digest}),
    );
    assert!(status == 201 || status == 200, "{status} {body}");
    let start =
        json!({"workflow": "family", "id": "p", "input": {"mode": "fanout", "n": 20, "limit": 5}});
    let (status, body) = server.json("POST", "/v1/runs", &start);
    assert_eq!(status, 201, "{body}");
    let result = server.result("p");
    assert_eq!(
        result["output"],
        json!({"children": 20, "sum": 400}),
        "{result}"
    );
    let (status, listed) = server.call("GET", "/v1/runs?parent=p&limit=100", b"");
    assert_eq!(status, 200, "{listed}");
    let runs = listed["runs"].as_array().expect("runs");
    assert_eq!(runs.len(), 20, "{listed}");
    assert!(
        runs.iter()
            .all(|r| r["parent"] == "p" && r["status"] == "succeeded")
    );
    let (status, child) = server.call("GET", "/v1/runs/p:family-1", b"");
    assert_eq!(status, 200, "{child}");
    assert_eq!(child["parent"], "p");
    let (_, parent) = server.call("GET", "/v1/runs/p", b"");
    assert_eq!(parent["parent"], Value::Null);
    assert_eq!(parent["children"].as_array().map(Vec::len), Some(20));

    // A child of a name the server does not know is a setting of the
    // server, not the guest's failure: nothing is recorded, the run waits
    // (tried again, backing off) until the name is registered.
    let start = json!({"workflow": "family", "id": "s", "input": {"mode": "stranger"}});
    assert_eq!(server.json("POST", "/v1/runs", &start).0, 201);
    let deadline = Instant::now() + Duration::from_secs(60);
    while !server.stderr().contains("no workflow named \"nowhere\"") {
        assert!(Instant::now() < deadline, "{}", server.stderr());
        std::thread::sleep(Duration::from_millis(50));
    }
    let (_, shown) = server.call("GET", "/v1/runs/s", b"");
    assert!(
        shown["status"] == "running" || shown["status"] == "waiting",
        "{shown}"
    );
    assert_eq!(shown["children"], json!([]), "{shown}");
    let (status, body) = server.json(
        "POST",
        "/v1/workflows",
        &json!({"name": "nowhere", "component": digest}),
    );
    assert_eq!(status, 201, "{body}");
    let result = server.result("s");
    assert_eq!(result["output"], json!({"ok": 5}), "{result}");
}

#[test]
fn postgres_children_fan_out_and_one_runs_once_across_a_kill() {
    let family = wasm("family");
    let env = Env::postgres();
    let fan = env.run(&[
        "run",
        &family,
        "--id",
        "fan",
        "--input",
        r#"{"mode":"fanout","n":30,"limit":4}"#,
    ]);
    assert_eq!(fan.success(), json!({"children": 30, "sum": 900}));
    assert_eq!(children(&env, "fan").len(), 30);

    let crashed = env.crash_after(&family, r#"{"mode":"one_child","i":5}"#, "p", "$end");
    let resumed = env.run(&["resume", "p"]);
    assert_eq!(resumed.success(), json!({"child": 11}));
    let mut ran = bodies(&crashed.stderr());
    ran.extend(bodies(&resumed.stderr()));
    ran.sort();
    assert_eq!(ran, ["p:family-1/double#1", "p:family-1/inc#1"]);
}

#[test]
fn check_kills_a_parent_at_its_childs_start_and_end_and_every_promise_holds() {
    let family = wasm("family");
    let env = Env::new();
    let report = env
        .run(&[
            "check",
            &family,
            "--input",
            r#"{"mode":"one_child","i":3}"#,
            "--json",
        ])
        .success();
    assert_eq!(report["ok"], true, "{report}");
    let labels: Vec<String> = report["points"]
        .as_array()
        .expect("points")
        .iter()
        .filter_map(|p| p["label"].as_str().map(str::to_string))
        .collect();
    for key in [
        "$child:family#1@started",
        "$child:family#1 ",
        "double#1",
        "inc#1",
    ] {
        assert!(
            labels.iter().any(|l| l.contains(key)),
            "no point at {key}: {labels:?}"
        );
    }
}
