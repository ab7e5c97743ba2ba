//! `durable check`: a workflow crashed at every point, resumed, and compared
//! with its uninterrupted run; the promises it must catch broken.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::polyglot::{HIRE, LANGUAGES, component};
use crate::util::{Env, Run, wasm};

/// `durable check ... --json`: the exit code and the report.
fn check(env: &Env, args: &[&str]) -> (Option<i32>, Value, Run) {
    let mut all = vec!["check"];
    all.extend_from_slice(args);
    all.push("--json");
    let run = env.run(&all);
    let report: Value = serde_json::from_str(run.stdout().trim()).unwrap_or_else(|e| {
        panic!(
            "the report is not JSON ({e}):\n{}\n--- stderr\n{}",
            run.stdout(),
            run.stderr()
        )
    });
    (run.out.status.code(), report, run)
}

fn points<'a>(report: &'a Value, kind: &str) -> Vec<&'a Value> {
    report["points"]
        .as_array()
        .expect("points")
        .iter()
        .filter(|p| p["kind"] == kind)
        .collect()
}

/// Every (point kind, step, problem kind) the report lists.
fn problems(report: &Value) -> BTreeSet<(String, String, String)> {
    let mut out = BTreeSet::new();
    for p in report["points"].as_array().expect("points") {
        for problem in p["problems"].as_array().expect("problems") {
            out.insert((
                p["kind"].as_str().unwrap_or("").to_string(),
                p["step"].as_str().unwrap_or("").to_string(),
                problem["kind"].as_str().unwrap_or("").to_string(),
            ));
        }
    }
    out
}

#[test]
fn check_passes_the_onboarding_example_in_every_language_crashing_at_every_point() {
    for (lang, name) in LANGUAGES {
        let wasm = component(name);
        let env = Env::new();
        let (code, report, run) = check(&env, &[&wasm, "--input", HIRE]);
        assert_eq!(code, Some(0), "{lang}: {report:#}\n{}", run.stderr());
        assert_eq!(report["ok"], true, "{lang}: {report:#}");
        let steps: BTreeSet<&str> = report["steps"]
            .as_array()
            .expect("steps")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        assert_eq!(
            steps,
            BTreeSet::from(["create_record#1", "provision_laptop#1", "grant_access#1"]),
            "{lang}"
        );
        assert_eq!(report["points_total"], 6, "{lang}");
        assert_eq!(report["points_checked"], 6, "{lang}");
        for kind in ["after_commit", "before_commit"] {
            let at = points(&report, kind);
            let keys: BTreeSet<&str> = at.iter().filter_map(|p| p["step"].as_str()).collect();
            assert_eq!(keys, steps, "{lang}: {kind}");
            for p in at {
                // Each child was really killed where the point says.
                let notes = p["notes"].to_string();
                assert!(!notes.contains("did not reach"), "{lang}: {p:#}");
            }
        }
        assert_eq!(points(&report, "crash_twice").len(), 1, "{lang}");
        assert_eq!(points(&report, "replay").len(), 1, "{lang}");
        // The baseline is what a plain run gives.
        let plain = env.run(&["run", &wasm, "--input", HIRE]).success();
        assert_eq!(report["baseline"]["output"], plain, "{lang}");
    }
    // For people: every point, and the verdict.
    let env = Env::new();
    let run = env.run(&["check", &component("onboarding"), "--input", HIRE]);
    run.expect_code(Some(0));
    let text = run.stdout();
    for needle in [
        "killed right after create_record#1 committed, then resumed",
        "killed after grant_access#1 returned, before its outcome was committed",
        "replayed the finished history, executing nothing",
        "every promise held",
    ] {
        assert!(text.contains(needle), "{needle:?} missing in:\n{text}");
    }
}

#[test]
fn check_finds_a_step_that_is_not_idempotent_and_names_it() {
    let env = Env::new();
    let state = env.dir.path().join("state");
    std::fs::create_dir(&state).expect("mkdir");
    let grant = format!("{}::/state", state.display());
    let args = [
        wasm("testbed"),
        "--input".into(),
        r#"{"mode":"append"}"#.into(),
        "--allow-dir".into(),
        grant,
    ];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, report, run) = check(&env, &args);
    assert_eq!(code, Some(1), "{report:#}\n{}", run.stderr());
    assert_eq!(report["ok"], false);
    // Only the crash between append_line's return and its commit shows it.
    assert_eq!(
        problems(&report),
        BTreeSet::from([(
            "before_commit".to_string(),
            "append_line#1".to_string(),
            "not_idempotent".to_string()
        )]),
        "{report:#}"
    );
    let point = points(&report, "before_commit")
        .into_iter()
        .find(|p| p["step"] == "append_line#1")
        .expect("the point");
    let problem = &point["problems"][0];
    assert_eq!(problem["step"], "append_line#1");
    let (first, second) = (
        problem["first"]["ok"].as_u64().expect("a count"),
        problem["second"]["ok"].as_u64().expect("a count"),
    );
    // The body ran twice: the second run saw the first one's line (and
    // maybe those of other points, checked at the same time).
    assert!(second > first, "{problem:#}");
    // The two uninterrupted runs appended too: their outputs differ, which
    // the report says instead of calling every crash a failure.
    assert!(
        report["notes"].to_string().contains("ended differently"),
        "{report:#}"
    );

    // For people: the step, both results, and what to do.
    let mut all = vec!["check"];
    all.extend_from_slice(&args);
    let run = env.run(&all);
    run.expect_code(Some(1));
    let text = run.stdout();
    for needle in [
        "FAIL killed after append_line#1 returned",
        "step append_line#1 is not idempotent",
        "idempotency",
        "steps involved: append_line#1",
    ] {
        assert!(
            text.replace('\n', " ").contains(needle),
            "{needle:?} missing in:\n{text}"
        );
    }
}

#[test]
fn check_finds_a_parent_step_that_passes_its_clock_to_a_nested_step() {
    let env = Env::new();
    let (code, report, run) = check(
        &env,
        &[&wasm("testbed"), "--input", r#"{"mode":"clock-parent"}"#],
    );
    assert_eq!(code, Some(1), "{report:#}\n{}", run.stderr());
    let found = problems(&report);
    // The reason is the parent's changed nested call, every time; nothing
    // is called a re-run of a committed step or a non-idempotent step.
    assert!(!found.is_empty());
    for (_, _, kind) in &found {
        assert_eq!(kind, "nested_calls_changed", "{report:#}");
    }
    // Re-running the parent after its child committed shows it.
    assert!(
        found.contains(&(
            "before_commit".to_string(),
            "stamp_parent#1".to_string(),
            "nested_calls_changed".to_string()
        )),
        "{found:?}"
    );
    for p in report["points"].as_array().expect("points") {
        for problem in p["problems"].as_array().expect("problems") {
            assert_eq!(problem["step"], "stamp_parent#1", "{problem:#}");
            assert_eq!(problem["recorded"]["key"], "stamp_parent#1/stamp#1");
            assert_eq!(problem["now"]["key"], "stamp_parent#1/stamp#1");
            assert_ne!(problem["recorded"]["input"], problem["now"]["input"]);
        }
    }
    // The output never depended on the clock: the ends are compared.
    assert_eq!(report["notes"], Value::Array(Vec::new()), "{report:#}");
}

#[test]
fn check_sends_the_events_given_skips_sleeps_and_samples_long_workflows() {
    let env = Env::new();
    let testbed = wasm("testbed");
    // An event it was not given: not checkable, and the flag to add.
    let events = r#"{"mode":"events","n":2,"delay_ms":600000}"#;
    let run = env.run(&[
        "check", &testbed, "--input", events, "--event", "ping=1", "--event", "ping=2",
    ]);
    run.expect_code(Some(2));
    assert!(
        run.stderr().contains("--event \"pong\"=JSON")
            || run.stderr().contains("--event pong=JSON"),
        "{}",
        run.stderr()
    );
    // Given all, in order: checked.
    let (code, report, run) = check(
        &env,
        &[
            &testbed,
            "--input",
            events,
            "--event",
            "ping=1",
            "--event",
            "ping=2",
            "--event",
            r#"pong="p""#,
        ],
    );
    assert_eq!(code, Some(0), "{report:#}\n{}", run.stderr());
    assert_eq!(
        report["baseline"]["output"]["pings"],
        serde_json::json!([1, 2])
    );
    assert_eq!(report["baseline"]["output"]["pong"]["pong"], "p");

    // A ten-minute sleep does not hold the check up.
    let started = std::time::Instant::now();
    let (code, report, _) = check(
        &env,
        &[&testbed, "--input", r#"{"mode":"sleep","delay_ms":600000}"#],
    );
    assert_eq!(code, Some(0), "{report:#}");
    assert!(started.elapsed() < std::time::Duration::from_secs(300));

    // Two crash points per step, 5 of them checked, spread from the
    // first to the last.
    let (code, report, _) = check(
        &env,
        &[
            &testbed,
            "--input",
            r#"{"mode":"long","n":6}"#,
            "--max-points",
            "5",
        ],
    );
    assert_eq!(code, Some(0), "{report:#}");
    let steps = report["steps"].as_array().expect("steps").len();
    assert!(steps >= 6, "{report:#}");
    assert_eq!(report["points_total"], 2 * steps);
    assert_eq!(report["points_checked"], 5);
    let crash_points: Vec<&Value> = report["points"]
        .as_array()
        .expect("points")
        .iter()
        .filter(|p| p["kind"] == "after_commit" || p["kind"] == "before_commit")
        .collect();
    assert_eq!(crash_points.len(), 5);
    assert_eq!(crash_points[0]["step"], report["steps"][0]);
    assert_eq!(crash_points[4]["step"], report["steps"][steps - 1]);

    // Bad usage.
    env.run(&["check", &testbed, "--event", "no-equals"])
        .expect_code(Some(2));
    env.run(&["check", &testbed, "--event", "x={"])
        .expect_code(Some(2));
    let junk = env.dir.path().join("junk.wasm");
    std::fs::write(&junk, b"not wasm").expect("write");
    env.run(&["check", junk.to_str().expect("utf-8")])
        .expect_code(Some(2));
}
