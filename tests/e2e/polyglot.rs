//! The same end-to-end scenarios for the onboarding workflow (and the
//! approval workflow, for timers and events) written in Rust, Python and
//! JavaScript against the same WIT: one test per scenario, looping over the
//! languages.

use std::path::PathBuf;
use std::process::{Child, Command};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::util::{Env, Run, finish, root};

/// (language, component name in the build script's output).
pub(crate) const LANGUAGES: [(&str, &str); 3] = [
    ("rust", "onboarding"),
    ("python", "onboarding-py"),
    ("javascript", "onboarding-js"),
];

/// (language, its approval example in the build script's output).
const APPROVAL: [(&str, &str); 3] = [
    ("rust", "approval"),
    ("python", "approval-py"),
    ("javascript", "approval-js"),
];

pub(crate) const HIRE: &str = r#"{"name":"Ada Lovelace","email":"ada@example.com"}"#;
const BAD_HIRE: &str = r#"{"name":"Bob","email":"not-an-address"}"#;

/// Builds every language's guests once (scripts/setup-guest-tools.sh, then
/// scripts/build-guests.sh) and returns the path of `name`.wasm.
pub(crate) fn component(name: &str) -> String {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    let dir = BUILT.get_or_init(|| {
        let scratch = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
        let out = scratch.join("polyglot-guests");
        for script in ["scripts/setup-guest-tools.sh", "scripts/build-guests.sh"] {
            let run = Command::new("bash")
                .arg(root().join(script))
                .env("CARGO_TARGET_DIR", scratch.join("guests"))
                .env("GUESTS_DIR", &out)
                .output()
                .expect("bash runs");
            assert!(
                run.status.success(),
                "{script} failed:\n{}\n{}",
                String::from_utf8_lossy(&run.stdout),
                String::from_utf8_lossy(&run.stderr)
            );
        }
        out
    });
    dir.join(format!("{name}.wasm"))
        .to_str()
        .expect("utf-8 path")
        .to_string()
}

/// `(start, end)` from a step's "... from <ms> to <ms>" line.
fn interval(stderr: &str, step: &str) -> (u128, u128) {
    let line = stderr
        .lines()
        .find(|l| l.contains(&format!("{step}#1 | ")))
        .unwrap_or_else(|| panic!("no line of {step} in:\n{stderr}"));
    let words: Vec<&str> = line.split_whitespace().collect();
    let after = |w: &str| {
        let i = words
            .iter()
            .rposition(|x| *x == w)
            .expect("from/to in the line");
        words[i + 1].parse::<u128>().expect("a time")
    };
    (after("from"), after("to"))
}

#[test]
fn every_language_survives_a_crash_after_create_record_with_the_same_output() {
    let mut outputs: Vec<(&str, Value)> = Vec::new();
    for (lang, name) in LANGUAGES {
        let wasm = component(name);
        let clean = Env::new();
        let expected = clean
            .run(&["run", &wasm, "--input", HIRE, "--id", "ada"])
            .success();

        let env = Env::new();
        let crashed = env.crash_after(&wasm, HIRE, "ada", "create_record#1");
        assert_eq!(
            crashed.stderr().matches("create_record#1 | ").count(),
            1,
            "{lang}"
        );
        let resumed = env.run(&["resume", "ada"]);
        assert_eq!(resumed.success(), expected, "{lang}");
        let err = resumed.stderr();
        assert!(
            !err.contains("create_record#1 | "),
            "{lang}: create_record ran again:\n{err}"
        );
        let (p0, p1) = interval(&err, "provision_laptop");
        let (g0, g1) = interval(&err, "grant_access");
        assert!(
            p0 < g1 && g0 < p1,
            "{lang}: provision {p0}..{p1} and grant {g0}..{g1} do not overlap"
        );
        outputs.push((lang, expected));
    }
    // One contract, one answer: the three implementations agree.
    for (lang, out) in &outputs[1..] {
        assert_eq!(out, &outputs[0].1, "{lang} differs from {}", outputs[0].0);
    }
}

#[test]
fn a_rust_guest_built_with_cargo_component_survives_a_crash_and_resume() {
    let plain = component("onboarding");
    let built = component("onboarding-cc");
    // Another build path, another component, the same workflow.
    assert_ne!(
        std::fs::read(&plain).expect("read"),
        std::fs::read(&built).expect("read")
    );
    let env = Env::new();
    let expected = env.run(&["run", &plain, "--input", HIRE]).success();
    let crashed = env.crash_after(&built, HIRE, "cc", "create_record#1");
    assert!(
        crashed.stderr().contains("step create_record#1"),
        "{}",
        crashed.stderr()
    );
    let resumed = env.run(&["resume", "cc"]);
    assert_eq!(resumed.success(), expected);
    let lines = resumed.stderr();
    assert!(
        lines.contains("create_record#1") && lines.contains("recovered"),
        "{lines}"
    );
    assert!(
        !lines
            .lines()
            .any(|l| l.contains("create_record#1") && l.contains("executed")),
        "create_record ran again: {lines}"
    );
}

#[test]
fn every_language_survives_sigkill_while_its_parallel_steps_run() {
    for (lang, name) in LANGUAGES {
        let wasm = component(name);
        let clean = Env::new();
        let expected = clean
            .run(&["run", &wasm, "--input", HIRE, "--id", "k"])
            .success();
        let env = Env::new();
        let mut child = env.spawn(&["run", &wasm, "--input", HIRE, "--id", "k"]);
        // Kill as soon as create_record is committed: the parallel steps
        // (300 ms each) are then in flight.
        let deadline = Instant::now() + Duration::from_secs(120);
        while !env.committed("k").contains("create_record#1") {
            assert!(
                Instant::now() < deadline,
                "{lang}: create_record never committed"
            );
            assert!(
                child.try_wait().expect("try_wait").is_none(),
                "{lang}: the run ended before the kill"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        child.kill().expect("SIGKILL");
        let killed = finish(child, "durable run (killed)", &env.db());
        assert!(
            killed.out.status.code().is_none(),
            "{lang}: killed by a signal"
        );
        assert!(
            !env.committed("k").contains("grant_access#1"),
            "{lang}: the kill came too late to test anything"
        );
        let resumed = env.run(&["resume", "k"]);
        assert_eq!(resumed.success(), expected, "{lang}");
        assert!(
            !resumed.stderr().contains("create_record#1 | "),
            "{lang}: create_record ran again"
        );
    }
}

#[test]
fn every_language_replays_a_step_error_as_the_same_error() {
    for (lang, name) in LANGUAGES {
        let wasm = component(name);
        let clean = Env::new();
        let uninterrupted = clean.run(&["run", &wasm, "--input", BAD_HIRE, "--id", "b"]);
        uninterrupted.expect_code(Some(1));
        let message = uninterrupted
            .stderr()
            .lines()
            .find(|l| l.contains("run b failed"))
            .map(str::to_string)
            .unwrap_or_else(|| panic!("{lang}: no failure line in {}", uninterrupted.stderr()));
        assert!(
            message.contains("is not an e-mail address"),
            "{lang}: {message}"
        );

        let env = Env::new();
        env.crash_after(&wasm, BAD_HIRE, "b", "create_record#1");
        let resumed = env.run(&["resume", "b"]);
        resumed.expect_code(Some(1));
        assert!(
            resumed.stderr().contains(&message),
            "{lang}: {}",
            resumed.stderr()
        );
        assert!(
            resumed.stderr().contains("create_record#1") && resumed.stderr().contains("recovered"),
            "{lang}"
        );
        // A permanent error: one attempt, replayed rather than retried.
        assert_eq!(
            env.query("SELECT attempts FROM steps WHERE key = 'create_record#1'"),
            [["1"]],
            "{lang}"
        );
    }
}

#[test]
fn every_language_reports_divergence_when_its_code_changed_and_changes_nothing() {
    for (lang, name) in LANGUAGES {
        let (wasm, changed) = (component(name), component(&format!("{name}-changed")));
        let env = Env::new();
        env.crash_after(&wasm, HIRE, "d", "grant_access#1");
        let before = env.dump();
        let diverged = env.run(&["run", &changed, "--input", HIRE, "--id", "d"]);
        diverged.expect_code(Some(5));
        let err = diverged.stderr();
        for needle in [
            "run \"d\" diverged",
            "grant_access#1",
            "grant_access_v2#1",
            "left untouched",
        ] {
            assert!(err.contains(needle), "{lang}: {needle:?} missing in: {err}");
        }
        assert_eq!(env.dump(), before, "{lang}: the store changed");
        env.run(&["resume", "d"]).success();
    }
}

/// Waits (bounded) until run `id`, driven by `child`, is parked waiting,
/// and hands the child back; panics with its output if it ended first.
fn parked(env: &Env, mut child: Child, id: &str, lang: &str) -> Child {
    // The first start of a Python or JS component compiles it (seconds,
    // more on a busy machine); the compile cache serves the later ones.
    let deadline = Instant::now() + Duration::from_secs(240);
    let status = format!("SELECT status FROM runs WHERE id = '{id}'");
    loop {
        if env.has_table("runs") && env.query(&status) == [["waiting"]] {
            return child;
        }
        if child.try_wait().expect("try_wait").is_some() {
            let run = finish(child, "durable run", &env.db());
            panic!(
                "{lang}: run {id} ended before it waited ({:?}):\n{}\n{}",
                run.out.status,
                run.stdout(),
                run.stderr()
            );
        }
        if Instant::now() > deadline {
            child.kill().expect("kill");
            let run = finish(child, "durable run", &env.db());
            panic!("{lang}: run {id} never waited:\n{}", run.stderr());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits for `child` to end within `limit`, else kills it and panics.
fn ended_within(env: &Env, mut child: Child, limit: Duration, what: &str) -> Run {
    let deadline = Instant::now() + limit;
    while child.try_wait().expect("try_wait").is_none() {
        if Instant::now() > deadline {
            child.kill().expect("kill");
            let run = finish(child, what, &env.db());
            panic!("{what} did not end within {limit:?}:\n{}", run.stderr());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    finish(child, what, &env.db())
}

/// `started_at_ms` and `finished_at_ms` of history entry `key` of run `id`.
fn times(env: &Env, id: &str, key: &str) -> (i64, i64) {
    let rows = env.query(&format!(
        "SELECT started_at_ms, finished_at_ms FROM steps WHERE run_id = '{id}' AND key = '{key}'"
    ));
    assert_eq!(rows.len(), 1, "{key} of run {id}: {rows:?}");
    let ms = |i: usize| rows[0][i].parse::<i64>().expect("a time in ms");
    (ms(0), ms(1))
}

#[test]
fn every_language_waits_for_an_approval_event_and_sleeps_durably() {
    const APPROVE: &str =
        r#"{"report":"R-1","amount":120,"approval_timeout_ms":60000,"pay_delay_ms":1000}"#;
    const NO_ANSWER: &str =
        r#"{"report":"R-1","amount":120,"approval_timeout_ms":300,"pay_delay_ms":1000}"#;
    let pay_delay_ms = 1000;
    let mut outputs: Vec<(&str, Value, Value)> = Vec::new();
    for (lang, name) in APPROVAL {
        let wasm = component(name);

        // Approved: the run parks on the event, holding nothing; another
        // process sends the event; the run wakes, sleeps pay_delay_ms
        // (parked again), then pays.
        let env = Env::new();
        let child = env.spawn(&["run", &wasm, "--input", APPROVE, "--id", "a"]);
        let child = parked(&env, child, "a", lang);
        let sent = Instant::now();
        env.run(&["event", "a", "approval", "--data", r#"{"approved":true}"#])
            .expect_code(Some(0));
        let run = ended_within(
            &env,
            child,
            Duration::from_secs(30),
            &format!("{lang}: durable run a"),
        );
        let paid = run.success();
        let took = sent.elapsed();
        assert_eq!(paid["status"], "paid", "{lang}: {paid}");
        assert_eq!(
            paid["payment"],
            serde_json::json!({ "paid": 120 }),
            "{lang}"
        );
        assert!(
            took >= Duration::from_millis(pay_delay_ms),
            "{lang}: the run ended {took:?} after the event, within its {pay_delay_ms} ms sleep"
        );
        // The sleep is between the event's consumption and the payment, as
        // recorded: at least pay_delay_ms, and not much more.
        let (_, received) = times(&env, "a", "$event:approval#1");
        let (paying, _) = times(&env, "a", "pay#1");
        let (gap, least) = (paying - received, pay_delay_ms as i64);
        assert!(
            gap >= least && gap < least + 10_000,
            "{lang}: pay#1 started {gap} ms after the event was received"
        );
        // Each step body ran once, though the workflow was replayed after
        // each wait; each printed its idempotency key.
        let err = run.stderr();
        for line in ["(key a/submit#1)", "(key a/pay#1)"] {
            assert_eq!(err.matches(line).count(), 1, "{lang}: {line} in:\n{err}");
        }
        assert_eq!(
            env.committed("a").into_iter().collect::<Vec<_>>(),
            ["pay#1", "submit#1"],
            "{lang}"
        );
        assert_eq!(
            env.query("SELECT status FROM runs WHERE id = 'a'"),
            [["succeeded"]],
            "{lang}"
        );

        // No answer in time: the wait times out and the report is escalated.
        let env = Env::new();
        let run = env.run(&["run", &wasm, "--input", NO_ANSWER, "--id", "t"]);
        let escalated = run.success();
        assert_eq!(escalated["status"], "escalated", "{lang}: {escalated}");
        assert_eq!(escalated["after_ms"], 300, "{lang}: {escalated}");
        assert_eq!(
            escalated["escalation"],
            serde_json::json!({ "escalated_to": "finance" }),
            "{lang}"
        );
        assert_eq!(
            run.stderr().matches("escalate#1 | ").count(),
            1,
            "{lang}: {}",
            run.stderr()
        );
        assert_eq!(
            env.committed("t").into_iter().collect::<Vec<_>>(),
            ["escalate#1", "submit#1"],
            "{lang}"
        );
        assert_eq!(
            env.query(
                "SELECT outcome, value FROM steps WHERE run_id = 't' AND key = '$event:approval#1'"
            ),
            [["timed-out", "300"]],
            "{lang}"
        );
        let (_, submitted) = times(&env, "t", "submit#1");
        let (_, timed_out) = times(&env, "t", "$event:approval#1");
        assert!(
            timed_out - submitted >= 300,
            "{lang}: timed out {} ms after the wait began",
            timed_out - submitted
        );
        outputs.push((lang, paid, escalated));
    }
    // One contract, one answer: the three implementations agree.
    for (lang, paid, escalated) in &outputs[1..] {
        assert_eq!(paid, &outputs[0].1, "{lang} differs from {}", outputs[0].0);
        assert_eq!(
            escalated, &outputs[0].2,
            "{lang} differs from {}",
            outputs[0].0
        );
    }
}

/// `durable run` of scenario `mode` of an SDK testbed (tests/guests/
/// testbed-py, testbed-js) as run `r`, with `value` as the step input.
fn run_mode(env: &Env, wasm: &str, mode: &str) -> Run {
    let input = format!(r#"{{"mode":"{mode}","value":{{"x":1}}}}"#);
    env.run(&["run", wasm, "--input", &input, "--id", "r"])
}

/// The "run r failed" line of a run that must have failed (exit 1).
#[track_caller]
fn failure_line(run: &Run, what: &str) -> String {
    run.expect_code(Some(1));
    run.stderr()
        .lines()
        .find(|l| l.contains("run r failed"))
        .map(str::to_string)
        .unwrap_or_else(|| panic!("{what}: no failure line in:\n{}", run.stderr()))
}

/// A step's committed outcome and attempts, as the database has them.
fn outcome(env: &Env, key: &str) -> Vec<Vec<String>> {
    env.query(&format!(
        "SELECT outcome, attempts FROM steps WHERE run_id = 'r' AND key = '{key}'"
    ))
}

#[test]
fn python_and_javascript_fail_a_step_whose_result_is_not_json_at_its_first_attempt() {
    // (testbed, mode, step key, what the message must also say)
    let cases = [
        (
            "testbed-py",
            "unencodable",
            "unencodable#1",
            "Object of type set is not JSON serializable",
        ),
        (
            "testbed-py",
            "cyclic",
            "cyclic#1",
            "Circular reference detected",
        ),
        ("testbed-js", "bigint", "bigint#1", "BigInt"),
        ("testbed-js", "async_bigint", "async_bigint#1", "BigInt"),
        ("testbed-js", "cyclic", "cyclic#1", "cyclic object value"),
    ];
    for (testbed, mode, key, detail) in cases {
        let what = format!("{testbed} {mode}");
        let env = Env::new();
        let run = run_mode(&env, &component(testbed), mode);
        let line = failure_line(&run, &what);
        for needle in ["cannot encode the result", detail] {
            assert!(
                line.contains(needle),
                "{what}: {needle:?} missing in: {line}"
            );
        }
        // Permanent: the body ran once, no retry was scheduled.
        assert_eq!(run.executed(), [key], "{what}: {}", run.stderr());
        assert!(
            !run.stderr().contains("retrying"),
            "{what}: {}",
            run.stderr()
        );
        assert_eq!(outcome(&env, key), [["failed", "1"]], "{what}");
    }
}

#[test]
fn python_fails_a_step_whose_input_cannot_be_decoded_at_its_first_attempt() {
    // The input is JSON (the host checks that), but it holds an integer of
    // 5,000 digits, which Python's json.loads refuses.
    let env = Env::new();
    let run = run_mode(&env, &component("testbed-py"), "undecodable");
    let line = failure_line(&run, "undecodable");
    for needle in ["cannot decode the input", "4300 digits"] {
        assert!(line.contains(needle), "{needle:?} missing in: {line}");
    }
    assert!(run.executed().is_empty(), "the body ran: {}", run.stderr());
    assert!(!run.stderr().contains("retrying"), "{}", run.stderr());
    assert_eq!(outcome(&env, "echo#1"), [["failed", "1"]]);
}

#[test]
fn python_refuses_an_async_step_or_workflow_at_once_and_says_why() {
    let wasm = component("testbed-py");
    // (mode, step key, the bodies that ran): an `async def` body never
    // starts; a plain def that returns a coroutine runs once.
    let steps: [(&str, &str, &[&str]); 2] = [
        ("async_step", "async_step#1", &[]),
        (
            "returns_awaitable",
            "returns_awaitable#1",
            &["returns_awaitable#1"],
        ),
    ];
    for (mode, key, ran) in steps {
        let env = Env::new();
        let run = run_mode(&env, &wasm, mode);
        let line = failure_line(&run, mode);
        let refused = format!("step '{mode}' returned a coroutine");
        for needle in [refused.as_str(), "async def"] {
            assert!(
                line.contains(needle),
                "{mode}: {needle:?} missing in: {line}"
            );
        }
        assert_eq!(run.executed(), ran, "{mode}: {}", run.stderr());
        assert!(
            !run.stderr().contains("retrying"),
            "{mode}: {}",
            run.stderr()
        );
        // The coroutine was closed, not left to warn.
        assert!(
            !run.stderr().contains("never awaited"),
            "{mode}: {}",
            run.stderr()
        );
        assert_eq!(outcome(&env, key), [["failed", "1"]], "{mode}");
    }

    let env = Env::new();
    let run = run_mode(&env, &wasm, "async_workflow");
    let line = failure_line(&run, "async_workflow");
    for needle in ["the workflow function returned a coroutine", "async def"] {
        assert!(line.contains(needle), "{needle:?} missing in: {line}");
    }
    assert!(!run.stderr().contains("never awaited"), "{}", run.stderr());
    assert!(env.committed("r").is_empty(), "a step ran");
}

#[test]
fn javascript_awaits_async_steps_and_workflows_and_keeps_their_rejections() {
    let wasm = component("testbed-js");

    // An async workflow awaiting an async step: the awaited value is
    // committed (not the promise's `{}`), and a step that returns nothing
    // gives null.
    let env = Env::new();
    let out = run_mode(&env, &wasm, "async").success();
    assert_eq!(
        out,
        serde_json::json!({ "awaited": { "x": 1 }, "nothing": null })
    );
    assert_eq!(
        env.query("SELECT value FROM steps WHERE run_id = 'r' ORDER BY position"),
        [[r#"{"awaited":{"x":1}}"#], ["null"]]
    );
    // And that value is what a replay answers.
    let crashed = Env::new();
    let input = r#"{"mode":"async","value":{"x":1}}"#;
    crashed.crash_after(&wasm, input, "r", "async_echo#1");
    let resumed = crashed.run(&["resume", "r"]);
    assert_eq!(resumed.success(), out);
    assert_eq!(resumed.executed(), ["nothing#1"], "{}", resumed.stderr());

    // A rejection is the step's failure: permanent for a Permanent...
    let env = Env::new();
    let run = run_mode(&env, &wasm, "async_permanent");
    let line = failure_line(&run, "async_permanent");
    assert!(line.contains(r#"rejected for good: {"x":1}"#), "{line}");
    assert_eq!(run.executed(), ["async_permanent#1"], "{}", run.stderr());
    assert_eq!(outcome(&env, "async_permanent#1"), [["failed", "1"]]);

    // ...and retried for any other error (this step allows 2 attempts).
    let env = Env::new();
    let run = run_mode(&env, &wasm, "async_retryable");
    let line = failure_line(&run, "async_retryable");
    assert!(line.contains(r#"rejected on purpose: {"x":1}"#), "{line}");
    assert_eq!(
        run.executed(),
        ["async_retryable#1", "async_retryable#1"],
        "{}",
        run.stderr()
    );
    assert_eq!(outcome(&env, "async_retryable#1"), [["failed", "2"]]);
}

/// (language, its order example in the build script's output).
const ORDER: [(&str, &str); 3] = [
    ("rust", "order"),
    ("python", "order-py"),
    ("javascript", "order-js"),
];

#[test]
fn every_language_composes_an_order_of_a_payment_workflow_a_step_and_a_race() {
    let payment = format!("payment={}", component("payment"));
    for (lang, name) in ORDER {
        let wasm = component(name);
        // Approved in time: shipped, with the payment child's receipt.
        let env = Env::new();
        let input = r#"{"order_id":"O-1","items":3,"approval_timeout_ms":120000}"#;
        let child = env.spawn(&[
            "run", &wasm, "--link", &payment, "--id", "O-1", "--input", input,
        ]);
        let child = parked(&env, child, "O-1", lang);
        env.run(&["event", "O-1", "approved", "--data", r#"{"by":"ada"}"#])
            .expect_code(Some(0));
        let done = ended_within(&env, child, Duration::from_secs(120), lang);
        let out = done.success();
        assert_eq!(out["status"], "shipped", "{lang}: {out}");
        assert_eq!(out["approved_by"]["by"], "ada", "{lang}: {out}");
        assert_eq!(
            out["receipt"],
            serde_json::json!({"receipt": "RCPT-O-1", "amount_cents": 3750}),
            "{lang}: {out}"
        );
        assert_eq!(out["tracking"], "TRACK-O-1", "{lang}: {out}");
        assert_eq!(
            env.query(
                "SELECT id, workflow, status, parent_id FROM runs WHERE parent_id IS NOT NULL"
            ),
            [["O-1:payment-1", "payment", "succeeded", "O-1"]],
            "{lang}"
        );

        // No approval in time: the payment is cancelled, the stock released.
        // (A payment that never ends, so that it is surely cancelled: the
        // family guest without a mode waits for ever.)
        let slow = format!("payment={}", crate::util::wasm("family"));
        let input = r#"{"order_id":"O-2","items":1,"approval_timeout_ms":300}"#;
        let expired = env.run(&[
            "run", &wasm, "--link", &slow, "--id", "O-2", "--input", input,
        ]);
        let out = expired.success();
        assert_eq!(out["status"], "expired", "{lang}: {out}");
        assert_eq!(
            out["released"],
            serde_json::json!({"released": 1}),
            "{lang}: {out}"
        );
        assert_eq!(
            env.query("SELECT status FROM runs WHERE id = 'O-2:payment-1'"),
            [["cancelled"]],
            "{lang}"
        );
    }
}
