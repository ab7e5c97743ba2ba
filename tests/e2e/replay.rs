//! Replay: numbered keys, replayed errors and traps, divergence.

use std::collections::BTreeSet;

use serde_json::json;

use crate::util::{Env, guest};

fn testbed() -> String {
    guest("testbed").to_str().expect("utf-8 path").to_string()
}

#[test]
fn repeated_step_names_get_numbered_keys_and_replay_returns_each_call_its_own_result() {
    let wasm = testbed();
    let env = Env::new();
    let input = r#"{"mode":"repeat"}"#;
    env.crash_after(&wasm, input, "r", "echo#2");
    assert_eq!(
        env.committed("r"),
        BTreeSet::from(["echo#1".to_string(), "echo#2".to_string()])
    );
    let resumed = env.run(&["resume", "r"]);
    assert_eq!(
        resumed.success(),
        json!([{"echo": "first"}, {"echo": "second"}, {"echo": "third"}])
    );
    assert_eq!(resumed.executed(), ["echo#3"]);
    let keys: Vec<String> = env.committed("r").into_iter().collect();
    assert_eq!(keys, ["echo#1", "echo#2", "echo#3"]);
}

#[test]
fn a_step_error_is_recorded_and_replayed_as_the_same_error() {
    let wasm = testbed();
    let env = Env::new();
    let input = r#"{"mode":"error"}"#;
    let first = env.crash_after(&wasm, input, "e", "fail#1"); // killed by SIGKILL
    assert_eq!(first.executed(), ["fail#1"]);
    assert!(
        first.stderr().contains("error: boom: 1"),
        "{}",
        first.stderr()
    );

    let resumed = env.run(&["resume", "e"]);
    let out = resumed.success();
    // The workflow saw the same error again, without the body running.
    assert_eq!(out["fail"], json!({"failed": "boom: 1"}));
    assert_eq!(resumed.executed(), ["echo#1"]);

    // An uninterrupted run gives the same output.
    let clean = Env::new();
    assert_eq!(
        clean
            .run(&["run", &wasm, "--input", input, "--id", "e"])
            .success(),
        out
    );
}

#[test]
fn a_trapping_step_fails_with_the_trap_message_and_the_host_keeps_going() {
    let wasm = testbed();
    let env = Env::new();
    let run = env.run(&["run", &wasm, "--input", r#"{"mode":"trap"}"#, "--id", "t"]);
    let out = run.success();
    let trapped = out["trap"]["trapped"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    // The message says what the guest said when it panicked, and what trap followed.
    assert!(trapped.contains("step exploded on purpose"), "{out}");
    assert!(trapped.contains("unreachable"), "{out}");
    // After the trap, the same process ran more steps, in parallel with
    // another trapping one.
    assert_eq!(out["parallel"][0], json!({"ok": {"echo": "x"}}));
    assert!(out["parallel"][1]["trapped"].is_string(), "{out}");
    assert!(run.stderr().contains("trapped:"), "{}", run.stderr());
    // The trap is recorded: replaying the finished run's steps is not
    // needed, but resuming a copy that crashed after it gives the same.
    let env2 = Env::new();
    env2.crash_after(&wasm, r#"{"mode":"trap"}"#, "t", "explode#1");
    let resumed = env2.run(&["resume", "t"]);
    assert_eq!(resumed.success(), out);
    assert!(!resumed.executed().contains(&"explode#1".to_string()));
}

#[test]
fn a_workflow_that_traps_or_errs_fails_the_run_with_its_message() {
    let wasm = testbed();
    let env = Env::new();
    let failing = |mode: &str, id: &str, message: &str| {
        let input = format!(r#"{{"mode":"{mode}"}}"#);
        let run = env.run(&["run", &wasm, "--input", &input, "--id", id]);
        run.expect_code(Some(1));
        assert!(
            run.stderr().contains(message),
            "{message:?} missing in: {}",
            run.stderr()
        );
        run
    };
    let panicked = failing("workflow-panic", "p", "run p failed: the workflow trapped");
    // The message carries what the guest said when it panicked.
    assert!(
        panicked.stderr().contains("the workflow itself panicked"),
        "{}",
        panicked.stderr()
    );
    failing("workflow-error", "q", "run q failed: the workflow gave up");
    // A failed run is final: running it again reports the stored failure.
    let again = failing("workflow-error", "q", "already finished (failed)");
    assert!(again.executed().is_empty());
}

#[test]
fn resuming_with_a_changed_component_is_divergence_and_changes_nothing() {
    let wasm = testbed();
    let changed = guest("diverge");
    let changed = changed.to_str().expect("utf-8 path");
    let env = Env::new();
    let input = r#"{"mode":"seq3"}"#;
    env.crash_after(&wasm, input, "d", "step_b#1");
    let before = env.dump();

    let diverged = env.run(&["run", changed, "--input", input, "--id", "d"]);
    diverged.expect_code(Some(5));
    let err = diverged.stderr();
    for needle in [
        "run \"d\" diverged",
        "position 1",
        "step_b#1",
        "step_x#1",
        "left untouched",
    ] {
        assert!(err.contains(needle), "{needle:?} missing in: {err}");
    }
    assert_eq!(env.dump(), before, "the store changed");

    // The original component still resumes the run to its end.
    let resumed = env.run(&["resume", "d"]);
    assert_eq!(resumed.success(), json!([{"a": 1}, {"b": 2}, {"c": 3}]));
    assert_eq!(resumed.executed(), ["step_c#1"]);
}

#[test]
fn nested_steps_are_keyed_under_their_parent_and_recovered_inside_a_rerun_parent() {
    let wasm = testbed();
    let env = Env::new();
    // Step 6 is `fan`, whose body runs work#1 and work#2 of its own.
    let input = r#"{"mode":"long","n":7}"#;
    env.crash_after(&wasm, input, "n", "fan#1/work#2");
    let committed = env.committed("n");
    assert!(committed.contains("fan#1/work#2"), "{committed:?}");
    assert!(!committed.contains("fan#1"), "{committed:?}");
    let resumed = env.run(&["resume", "n"]);
    resumed.success();
    // The parent ran again (it was in flight), and so did its sibling child
    // if that was still in flight at the kill (the two run in parallel); the
    // committed child did not.
    let mut expected: BTreeSet<String> = BTreeSet::from(["fan#1".to_string()]);
    if !committed.contains("fan#1/work#1") {
        expected.insert("fan#1/work#1".to_string());
    }
    let executed: BTreeSet<String> = resumed.executed().into_iter().collect();
    assert_eq!(executed, expected);
}
