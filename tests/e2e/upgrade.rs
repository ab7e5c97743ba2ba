//! New code for runs in flight: `durable upgrade-check` replays their
//! histories against a new component, executing nothing; `durable resume
//! --component` switches the compatible ones (the divergent ones with
//! --force) and the switch is recorded in the run.

use serde_json::{Value, json};

use crate::server::Server;
use crate::util::{Env, Run, wasm};

/// A v1 run killed after `fetch` and `enrich` committed.
fn half_done(env: &Env, id: &str) {
    env.crash_after(&wasm("upgrade_v1"), r#""x""#, id, "enrich#1");
}

fn upgrade_check(env: &Env, version: &str, extra: &[&str]) -> (Option<i32>, Value) {
    let component = wasm(&format!("upgrade_{version}"));
    let mut args = vec!["upgrade-check", &component, "--json"];
    args.extend_from_slice(extra);
    let run = env.run(&args);
    let report = serde_json::from_str(run.stdout().trim())
        .unwrap_or_else(|e| panic!("not JSON ({e}):\n{}\n{}", run.stdout(), run.stderr()));
    (run.out.status.code(), report)
}

/// The step keys a drive printed as executed.
fn executed_lines(run: &Run) -> Vec<String> {
    run.stderr()
        .lines()
        .filter(|l| l.starts_with("step ") && l.contains(" executed "))
        .filter_map(|l| l.split_whitespace().nth(1).map(str::to_string))
        .collect()
}

fn shown(env: &Env, id: &str) -> Value {
    let run = env.run(&["show", id, "--json"]);
    run.expect_code(Some(0));
    serde_json::from_str(&run.stdout()).expect("show --json is JSON")
}

#[test]
fn upgrade_check_tells_compatible_new_code_from_divergent_and_changes_nothing() {
    let env = Env::new();
    half_done(&env, "a");
    half_done(&env, "b");
    // A finished run is not an unfinished one: not checked by default.
    env.run(&["run", &wasm("upgrade_v1"), "--id", "done", "--input", "1"])
        .success();
    let before = env.dump();

    for version in ["append", "body"] {
        let (code, report) = upgrade_check(&env, version, &[]);
        assert_eq!(code, Some(0), "{version}: {report:#}");
        assert_eq!(report["compatible"], true);
        let runs = report["runs"].as_array().expect("runs");
        let ids: Vec<&str> = runs.iter().filter_map(|r| r["id"].as_str()).collect();
        assert_eq!(ids.len(), 2, "{report:#}");
        assert!(ids.contains(&"a") && ids.contains(&"b"), "{report:#}");
        for r in runs {
            assert_eq!(r["compatible"], true, "{version}: {r:#}");
            assert_eq!(r["replayed"], 2);
            assert_eq!(r["recorded"], 2);
            assert_eq!(r["next"], "save#1");
        }
    }

    let (code, report) = upgrade_check(&env, "rename", &["--run", "a"]);
    assert_eq!(code, Some(1), "{report:#}");
    let run = &report["runs"][0];
    assert_eq!(run["compatible"], false);
    assert_eq!(run["divergence"]["position"], 1);
    assert_eq!(run["divergence"]["recorded"], "enrich#1");
    assert_eq!(run["divergence"]["now"], "enrich_more#1");

    let (code, report) = upgrade_check(&env, "input", &["--run", "b"]);
    assert_eq!(code, Some(1), "{report:#}");
    let d = &report["runs"][0]["divergence"];
    assert_eq!(d["position"], 1);
    assert_eq!(d["recorded"], "enrich#1");
    assert_eq!(d["now"], "enrich#1");
    let what = d["what"].as_str().expect("what");
    assert!(
        what.contains("input 1") && what.contains("input 2"),
        "{what}"
    );

    // For people: one line per run.
    let text = env.run(&["upgrade-check", &wasm("upgrade_rename")]);
    text.expect_code(Some(1));
    let out = text.stdout();
    assert!(
        out.contains("DIVERGENT at position 1 of the workflow: the history has step enrich#1 there, the code now calls step enrich_more#1"),
        "{out}"
    );
    // A finished run replays to its end; an unknown one is named.
    let (code, report) = upgrade_check(&env, "body", &["--run", "done"]);
    assert_eq!(code, Some(0), "{report:#}");
    assert_eq!(report["runs"][0]["next"], Value::Null);
    assert_eq!(report["runs"][0]["replayed"], 3);
    let (code, report) = upgrade_check(&env, "body", &["--run", "nope"]);
    assert_eq!(code, Some(3), "{report:#}");

    // New code that traps on a run's history is not compatible, and a
    // switch to it is refused.
    let (code, report) = upgrade_check(&env, "trap", &["--run", "a"]);
    assert_eq!(code, Some(1), "{report:#}");
    let run = &report["runs"][0];
    assert_eq!(run["compatible"], false);
    assert!(
        run["error"].as_str().is_some_and(|e| e.contains("trapped")),
        "{run:#}"
    );
    let refused = env.run(&["resume", "--component", &wasm("upgrade_trap"), "a"]);
    refused.expect_code(Some(1));
    assert!(
        refused.stderr().contains("was not switched"),
        "{}",
        refused.stderr()
    );

    // Nothing was executed or written.
    assert_eq!(env.dump(), before, "upgrade-check changed the database");

    // A database of an older schema is refused, not upgraded.
    let old = Env::new();
    half_done(&old, "o");
    {
        let conn = rusqlite::Connection::open(old.db()).expect("open");
        conn.execute_batch("PRAGMA user_version = 6")
            .expect("version");
    }
    let refused = old.run(&["upgrade-check", &wasm("upgrade_append")]);
    refused.expect_code(Some(2));
    assert!(refused.stderr().contains("older"), "{}", refused.stderr());
    let conn = rusqlite::Connection::open(old.db()).expect("open");
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .expect("version");
    assert_eq!(version, 6, "upgrade-check upgraded the database");
}

#[test]
fn resume_with_a_new_component_switches_compatible_runs_and_forces_divergent_ones_only_when_asked()
{
    let env = Env::new();
    half_done(&env, "a");
    let v1 = shown(&env, "a")["component_digest"].clone();

    // Compatible: the recorded steps are recovered, the rest runs on v2.
    let switched = env.run(&["resume", "--component", &wasm("upgrade_append"), "a"]);
    let out = switched.success();
    assert_eq!(executed_lines(&switched), ["save#1", "notify#1"]);
    assert_eq!(out["fetched"]["by"], "v1");
    assert_eq!(out["enriched"]["by"], "v1");
    assert_eq!(out["saved"]["by"], "append");
    assert_eq!(out["notified"], json!({"notified": 4, "by": "append"}));
    let run = shown(&env, "a");
    let switches = run["component_switches"].as_array().expect("switches");
    assert_eq!(switches.len(), 1, "{run:#}");
    assert_eq!(switches[0]["from_digest"], v1);
    assert_eq!(switches[0]["to_digest"], run["component_digest"]);
    assert_ne!(run["component_digest"], v1);
    assert_eq!(switches[0]["drive"], 2);
    assert_eq!(switches[0]["forced_from_position"], Value::Null);
    let text = env.run(&["show", "a"]).stdout();
    assert!(text.contains("switched   from component"), "{text}");
    // The HTTP API shows it too.
    let server = Server::start(&env, &[]);
    let (status, body) = server.call("GET", "/v1/runs/a", b"");
    assert_eq!(status, 200, "{body:#}");
    assert_eq!(body["component_switches"], run["component_switches"]);
    drop(server);

    // Divergent: refused, with what --force would do, and nothing changed.
    half_done(&env, "b");
    let before = env.dump();
    let refused = env.run(&["resume", "--component", &wasm("upgrade_rename"), "b"]);
    refused.expect_code(Some(5));
    let err = refused.stderr();
    for needle in [
        "run b was not switched",
        "position 1",
        "enrich_more#1",
        "--force",
        "(enrich#1)",
    ] {
        assert!(err.contains(needle), "{needle:?} missing in: {err}");
    }
    assert_eq!(env.dump(), before);

    // Forced: the workflow's records from the divergence on are moved
    // aside, and the new code runs from there.
    let forced = env.run(&[
        "resume",
        "--component",
        &wasm("upgrade_rename"),
        "--force",
        "b",
    ]);
    let out = forced.success();
    assert!(
        forced.stderr().contains("forcing the switch"),
        "{}",
        forced.stderr()
    );
    assert_eq!(executed_lines(&forced), ["enrich_more#1", "save#1"]);
    assert_eq!(out["enriched"]["by"], "rename");
    let run = shown(&env, "b");
    assert_eq!(run["component_switches"][0]["forced_from_position"], 1);
    let superseded = run["superseded"].as_array().expect("superseded");
    assert_eq!(superseded.len(), 1, "{run:#}");
    assert_eq!(superseded[0]["key"], "enrich#1");
    assert_eq!(superseded[0]["input"], 1);

    // The switch is durable: recorded with the first new commit, so a
    // crash after it leaves the run on the new component for a plain
    // resume.
    half_done(&env, "c");
    let killed = env.run(&[
        "resume",
        "--component",
        &wasm("upgrade_append"),
        "c",
        "--crash-after",
        "save#1",
    ]);
    killed.expect_code(None);
    let resumed = env.run(&["resume", "c"]);
    let out = resumed.success();
    assert_eq!(executed_lines(&resumed), ["notify#1"]);
    assert_eq!(out["notified"]["by"], "append");

    // A component that does not load is refused before anything happens.
    let junk = env.dir.path().join("junk.wasm");
    std::fs::write(&junk, b"junk").expect("write");
    half_done(&env, "d");
    env.run(&["resume", "--component", junk.to_str().expect("utf-8"), "d"])
        .expect_code(Some(2));
    // --component needs run ids; --force needs --component.
    env.run(&["resume", "--component", &wasm("upgrade_append")])
        .expect_code(Some(2));
    env.run(&["resume", "--force", "d"]).expect_code(Some(2));
}
