//! Crashes: `--crash-after` (a kill right after a commit), then `resume`;
//! and what a step line on stderr promises about the database.

use std::collections::BTreeSet;

use crate::util::{Env, guest};

const HIRE: &str = r#"{"name":"Ada Lovelace","email":"ada@example.com"}"#;

/// `(start, end)` of a parallel step, from the onboarding guest's own line.
fn interval(stderr: &str, step: &str) -> (u128, u128) {
    let line = stderr
        .lines()
        .find(|l| l.contains(&format!("{step}#1 | ")))
        .unwrap_or_else(|| panic!("no line of {step} in:\n{stderr}"));
    let words: Vec<&str> = line.split_whitespace().collect();
    let at = |w: &str| {
        // The line ends "... from <ms> to <ms>".
        let i = words
            .iter()
            .rposition(|x| *x == w)
            .expect("from/to in the line");
        words[i + 1].parse::<u128>().expect("a time")
    };
    (at("from"), at("to"))
}

#[test]
fn crash_after_create_record_then_resume_does_not_rerun_it_and_matches_an_uninterrupted_run() {
    let wasm = guest("onboarding");
    let wasm = wasm.to_str().expect("utf-8 path");

    let clean = Env::new();
    let expected = clean
        .run(&["run", wasm, "--input", HIRE, "--id", "ada"])
        .success();

    let env = Env::new();
    let crashed = env.crash_after(wasm, HIRE, "ada", "create_record#1"); // killed by SIGKILL
    assert_eq!(crashed.stderr().matches("create_record#1 | ").count(), 1);
    assert!(
        !crashed.stderr().contains("provision_laptop#1 | "),
        "{}",
        crashed.stderr()
    );
    assert_eq!(
        env.committed("ada"),
        BTreeSet::from(["create_record#1".to_string()])
    );

    let resumed = env.run(&["resume", "ada"]);
    assert_eq!(resumed.success(), expected);
    let err = resumed.stderr();
    // The body of create_record did not run again: its own line is absent.
    assert!(!err.contains("create_record#1 | "), "{err}");
    assert!(
        err.contains("create_record#1") && err.contains("recovered"),
        "{err}"
    );
    // The two parallel steps overlapped in time (each takes ~300 ms).
    let (p0, p1) = interval(&err, "provision_laptop");
    let (g0, g1) = interval(&err, "grant_access");
    assert!(
        p0 < g1 && g0 < p1,
        "provision {p0}..{p1} and grant {g0}..{g1} do not overlap"
    );
    assert!(p1 - p0 >= 300 && g1 - g0 >= 300);
}

#[test]
fn a_step_printed_as_executed_is_already_committed_for_another_connection() {
    use std::io::{BufRead, BufReader};

    let env = Env::new();
    let testbed = guest("testbed");
    let mut child = env
        .cmd(&[
            "run",
            testbed.to_str().expect("utf-8"),
            "--input",
            r#"{"mode":"long","n":12,"delay_ms":30}"#,
            "--id",
            "p",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("durable starts");
    let stderr = child.stderr.take().expect("piped");
    let mut checked = 0;
    for line in BufReader::new(stderr).lines() {
        let line = line.expect("utf-8 line");
        let Some(rest) = line.strip_prefix("step ") else {
            continue;
        };
        let mut words = rest.split_whitespace();
        let (Some(key), Some("executed")) = (words.next(), words.next()) else {
            continue;
        };
        // The moment the line appears, an independent connection sees the row.
        let seen = env.query(&format!(
            "SELECT count(*) FROM steps WHERE run_id = 'p' AND key = '{key}'"
        ));
        assert_eq!(seen, [["1"]], "{key} was printed before it was committed");
        checked += 1;
    }
    assert!(child.wait().expect("wait").success());
    assert!(checked >= 12, "checked {checked} lines");
}
