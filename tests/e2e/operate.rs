//! Inspecting and operating runs: list, show, cancel, fork, exit codes.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::util::{Env, finish, wasm};

const HIRE: &str = r#"{"name":"Ada Lovelace","email":"ada@example.com"}"#;

#[test]
fn list_shows_runs_newest_first_with_filters_and_step_counts() {
    let env = Env::new();
    let testbed = wasm("testbed");
    let onboarding = wasm("onboarding");
    env.run(&[
        "run",
        &testbed,
        "--input",
        r#"{"mode":"seq3"}"#,
        "--id",
        "a",
    ])
    .success();
    std::thread::sleep(Duration::from_millis(5));
    env.run(&[
        "run",
        &testbed,
        "--input",
        r#"{"mode":"workflow-error"}"#,
        "--id",
        "b",
    ])
    .expect_code(Some(1));
    std::thread::sleep(Duration::from_millis(5));
    env.crash_after(&onboarding, HIRE, "c", "create_record#1");
    env.run(&["resume", "c"]).success();

    let all: Value = serde_json::from_str(&env.run(&["list", "--json"]).stdout()).expect("JSON");
    let ids: Vec<&str> = all
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|r| r["id"].as_str())
        .collect();
    assert_eq!(ids, ["c", "b", "a"]);
    // c: 3 steps, create_record committed by the first drive, 2 by the second.
    assert_eq!(all[0]["steps"], json!(3));
    assert_eq!(all[0]["executed"], json!(2));
    assert_eq!(all[0]["recovered"], json!(1));
    assert_eq!(all[0]["drives"], json!(2));
    assert_eq!(all[0]["workflow"], json!("onboarding"));
    assert!(all[0]["duration_ms"].as_i64().is_some());

    let failed: Value =
        serde_json::from_str(&env.run(&["list", "--json", "--status", "failed"]).stdout())
            .expect("JSON");
    assert_eq!(failed.as_array().map(Vec::len), Some(1));
    assert_eq!(failed[0]["id"], json!("b"));
    let testbed_runs: Value = serde_json::from_str(
        &env.run(&["list", "--json", "--workflow", "testbed", "--limit", "1"])
            .stdout(),
    )
    .expect("JSON");
    assert_eq!(testbed_runs.as_array().map(Vec::len), Some(1));
    assert_eq!(testbed_runs[0]["id"], json!("b"));

    let text = env.run(&["list"]);
    text.expect_code(Some(0));
    let lines: Vec<&str> = text
        .out
        .stdout
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| std::str::from_utf8(l).expect("utf-8"))
        .collect();
    assert_eq!(lines.len(), 4, "header and three runs");
    assert!(
        lines[1].starts_with("c ") && lines[1].contains("succeeded") && lines[1].contains("2/1"),
        "{}",
        lines[1]
    );

    env.run(&["list", "--status", "weird"]).expect_code(Some(2));
}

#[test]
fn show_draws_the_step_tree_with_sources_attempts_and_logs() {
    let env = Env::new();
    env.crash_after(&wasm("onboarding"), HIRE, "ada", "create_record#1");
    env.run(&["resume", "ada"]).success();

    let shown: Value =
        serde_json::from_str(&env.run(&["show", "ada", "--json", "--logs"]).stdout())
            .expect("JSON");
    assert_eq!(shown["status"], json!("succeeded"));
    assert_eq!(shown["input"]["email"], json!("ada@example.com"));
    assert_eq!(shown["output"]["status"], json!("onboarded"));
    let steps = shown["steps"].as_array().expect("steps");
    assert_eq!(steps.len(), 3);
    assert_eq!(steps[0]["key"], json!("create_record#1"));
    assert_eq!(steps[0]["source"], json!("recovered"));
    assert_eq!(steps[0]["parallel"], json!(null));
    for s in &steps[1..] {
        assert_eq!(s["source"], json!("executed"), "{s}");
        assert_eq!(s["parallel"], json!(1), "both calls of the batch: {s}");
        assert_eq!(s["attempts"], json!(1));
        assert!(s["duration_ms"].as_i64().unwrap_or(0) >= 300, "{s}");
    }
    // Guest output is kept per step, with the drive that printed it.
    let out = &steps[0]["output"][0];
    assert!(
        out["line"]
            .as_str()
            .unwrap_or("")
            .starts_with("created EMP-"),
        "{out}"
    );
    assert_eq!(out["drive"], json!(1));

    let text = env.run(&["show", "ada", "--logs"]).stdout();
    assert!(text.contains("parallel (2 calls)"), "{text}");
    assert!(
        text.contains("create_record#1") && text.contains("recovered"),
        "{text}"
    );
    assert!(text.contains("| assigned laptop"), "{text}");

    env.run(&["show", "nope"]).expect_code(Some(3));
}

#[test]
fn show_lists_failed_attempts_and_nested_steps() {
    let env = Env::new();
    let testbed = wasm("testbed");
    env.run(&[
        "run",
        &testbed,
        "--input",
        r#"{"mode":"always-fails"}"#,
        "--id",
        "f",
    ])
    .success();
    let shown: Value =
        serde_json::from_str(&env.run(&["show", "f", "--json"]).stdout()).expect("JSON");
    let step = &shown["steps"][0];
    assert_eq!(step["status"], json!("failed"));
    assert_eq!(step["attempts"], json!(3));
    assert_eq!(step["failed_attempts"].as_array().map(Vec::len), Some(3));
    assert_eq!(
        step["failed_attempts"][0]["error"],
        json!("error: boom: \"again\"")
    );

    env.run(&[
        "run",
        &testbed,
        "--input",
        r#"{"mode":"long","n":7}"#,
        "--id",
        "n",
    ])
    .success();
    let shown: Value =
        serde_json::from_str(&env.run(&["show", "n", "--json"]).stdout()).expect("JSON");
    let fan = shown["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .find(|s| s["key"] == json!("fan#1"))
        .expect("fan#1");
    let children: Vec<&str> = fan["children"]
        .as_array()
        .expect("children")
        .iter()
        .filter_map(|c| c["key"].as_str())
        .collect();
    assert_eq!(children, ["fan#1/work#1", "fan#1/work#2"]);
}

#[test]
fn cancel_stops_a_run_driven_by_another_process_and_resume_refuses_it() {
    let env = Env::new();
    let testbed = wasm("testbed");
    let first = env.spawn(&[
        "run",
        &testbed,
        "--input",
        r#"{"mode":"long","n":40,"delay_ms":150}"#,
        "--id",
        "x",
    ]);
    let deadline = Instant::now() + Duration::from_secs(60);
    while env.committed("x").len() < 2 {
        assert!(Instant::now() < deadline, "no progress");
        std::thread::sleep(Duration::from_millis(20));
    }
    let cancel = env.run(&["cancel", "x"]);
    cancel.expect_code(Some(0));
    assert!(
        cancel.stderr().contains("stops at its next durable call"),
        "{}",
        cancel.stderr()
    );
    let asked = Instant::now();
    let first = finish(first, "the cancelled durable run", &env.db());
    first.expect_code(Some(7));
    assert!(
        asked.elapsed() < Duration::from_secs(10),
        "it stopped promptly"
    );
    assert!(
        first.stderr().contains("run x was cancelled"),
        "{}",
        first.stderr()
    );
    assert_eq!(
        env.query("SELECT status FROM runs WHERE id = 'x'"),
        [["cancelled"]]
    );
    // A step that was running when the cancel came finished and was recorded.
    let ran: std::collections::BTreeSet<String> = first.executed().into_iter().collect();
    assert_eq!(ran, env.committed("x"));
    assert!(env.committed("x").len() < 50, "it did not run to the end");

    let resumed = env.run(&["resume", "x"]);
    resumed.expect_code(Some(7));
    assert!(resumed.executed().is_empty());
    env.run(&[
        "run",
        &testbed,
        "--input",
        r#"{"mode":"long","n":40,"delay_ms":150}"#,
        "--id",
        "x",
    ])
    .expect_code(Some(7));
    // Cancelling again is fine; cancelling a finished run is not.
    env.run(&["cancel", "x"]).expect_code(Some(0));
    env.run(&[
        "run",
        &testbed,
        "--input",
        r#"{"mode":"seq3"}"#,
        "--id",
        "done",
    ])
    .success();
    let finished = env.run(&["cancel", "done"]);
    finished.expect_code(Some(2));
    assert!(
        finished.stderr().contains("already finished (succeeded)"),
        "{}",
        finished.stderr()
    );
    env.run(&["cancel", "nope"]).expect_code(Some(3));
}

#[test]
fn cancelling_an_interrupted_run_is_immediate() {
    let env = Env::new();
    env.crash_after(&wasm("testbed"), r#"{"mode":"seq3"}"#, "i", "step_a#1");
    let cancel = env.run(&["cancel", "i"]);
    cancel.expect_code(Some(0));
    assert!(
        cancel.stderr().contains("run i is cancelled"),
        "{}",
        cancel.stderr()
    );
    assert_eq!(
        env.query("SELECT status FROM runs WHERE id = 'i'"),
        [["cancelled"]]
    );
    let all = env.run(&["resume"]);
    all.expect_code(Some(0));
    assert!(all.executed().is_empty());
}

#[test]
fn fork_from_a_step_recovers_what_came_before_and_runs_the_rest_again() {
    let env = Env::new();
    let testbed = wasm("testbed");
    let original = env
        .run(&[
            "run",
            &testbed,
            "--input",
            r#"{"mode":"seq3"}"#,
            "--id",
            "o",
        ])
        .success();

    let fork = env.run(&["fork", "o", "--from-step", "step_b#1", "--id", "o2"]);
    assert_eq!(fork.success(), original);
    assert_eq!(fork.executed(), ["step_b#1", "step_c#1"]);
    assert!(
        fork.stderr().contains("step_a#1") && fork.stderr().contains("recovered"),
        "{}",
        fork.stderr()
    );
    assert_eq!(
        env.query("SELECT forked_from, status FROM runs WHERE id = 'o2'"),
        [["o/step_b#1", "succeeded"]]
    );
    // The original is untouched.
    assert_eq!(
        env.query("SELECT count(*) FROM steps WHERE run_id = 'o'"),
        [["3"]]
    );

    // From a nested step: its parent runs again, its earlier sibling is recovered.
    env.run(&[
        "run",
        &testbed,
        "--input",
        r#"{"mode":"long","n":7}"#,
        "--id",
        "n",
    ])
    .success();
    let nested = env.run(&[
        "fork",
        "n",
        "--from-step",
        "fan#1/work#2",
        "--id",
        "n2",
        "--no-start",
    ]);
    nested.expect_code(Some(0));
    assert_eq!(nested.stdout().trim(), "n2");
    let resumed = env.run(&["resume", "n2"]);
    resumed.success();
    assert_eq!(resumed.executed(), ["fan#1", "fan#1/work#2"]);

    env.run(&["fork", "o", "--from-step", "nope#1"])
        .expect_code(Some(3));
    env.run(&["fork", "o", "--from-step", "step_b#1", "--id", "o2"])
        .expect_code(Some(2));
}

#[test]
fn host_logs_carry_the_run_and_step_as_span_fields() {
    let env = Env::new();
    let mut c = env.cmd(&[
        "run",
        &wasm("testbed"),
        "--input",
        r#"{"mode":"repeat"}"#,
        "--id",
        "traced",
    ]);
    c.env("RUST_LOG", "durable=debug");
    let out = c.output().expect("durable starts");
    let run = crate::util::Run::new(format!("{c:?}"), out, env.db());
    run.success();
    let err = run.stderr();
    assert!(err.contains("run{run=traced drive=1}"), "{err}");
    assert!(err.contains("step{key=echo#2}"), "{err}");
}

#[test]
fn on_a_terminal_run_shows_running_parallel_steps_live() {
    // `script` gives the child a pseudo-terminal, as a user's shell would.
    let env = Env::new();
    let durable = crate::util::bin("durable");
    let command = format!(
        "{} run {} --input '{HIRE}' --id live",
        durable.display(),
        wasm("onboarding")
    );
    let out = std::process::Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .current_dir(env.dir.path())
        .env("DURABLE_DB", env.db())
        .env(
            "DURABLE_CACHE_DIR",
            std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("compile-cache"),
        )
        .output()
        .expect("script (util-linux) runs");
    assert!(out.status.success(), "{out:?}");
    let screen = String::from_utf8_lossy(&out.stdout);
    // Both parallel steps have a live line, with elapsed time...
    assert!(
        screen.contains("step provision_laptop#1 running"),
        "{screen}"
    );
    assert!(screen.contains("step grant_access#1 running"), "{screen}");
    // ...drawn together: the view moves the cursor up over several lines.
    assert!(screen.contains("\u{1b}[1A"), "{screen}");
    // Finished steps are printed for good, and the output still comes.
    assert!(
        screen.contains("step grant_access#1") && screen.contains("executed"),
        "{screen}"
    );
    assert!(screen.contains("\"status\":\"onboarded\""), "{screen}");
}
