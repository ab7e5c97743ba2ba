//! The same end-to-end scenarios for the onboarding workflow written in
//! Rust, Python and JavaScript against the same WIT: one test per scenario,
//! looping over the languages.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::util::{Env, finish, root};

/// (language, component name in the build script's output).
const LANGUAGES: [(&str, &str); 3] = [
    ("rust", "onboarding"),
    ("python", "onboarding-py"),
    ("javascript", "onboarding-js"),
];

const HIRE: &str = r#"{"name":"Ada Lovelace","email":"ada@example.com"}"#;
const BAD_HIRE: &str = r#"{"name":"Bob","email":"not-an-address"}"#;

/// Builds every language's guests once (scripts/setup-guest-tools.sh, then
/// scripts/build-guests.sh) and returns the path of `name`.wasm.
fn component(name: &str) -> String {
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
