//! Crashes: `--crash-after` (a kill right after a commit) and SIGKILL at
//! random moments, each followed by `resume`.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use crate::util::{Env, executed_in, finish, guest};

const HIRE: &str = r#"{"name":"Ada Lovelace","email":"ada@example.com"}"#;

/// `(start, end)` of a parallel step, from the onboarding guest's own line.
fn interval(stderr: &str, step: &str) -> (u128, u128) {
    let line = stderr
        .lines()
        .find(|l| l.contains(&format!("{step}#1 | ")))
        .unwrap_or_else(|| panic!("no line of {step} in:\n{stderr}"));
    let words: Vec<&str> = line.split_whitespace().collect();
    let at = |w: &str| {
        let i = words
            .iter()
            .position(|x| *x == w)
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

/// Parses `seed` from the environment for reproducing a failure.
fn seed() -> u64 {
    std::env::var("DURABLE_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
        })
}

fn next(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

#[test]
fn sigkill_at_random_moments_then_resume_matches_an_uninterrupted_run_and_reruns_nothing_committed()
{
    let wasm = guest("testbed");
    let wasm = wasm.to_str().expect("utf-8 path");
    let input = r#"{"mode":"long","n":40,"delay_ms":15}"#;

    let clean = Env::new();
    let expected = clean
        .run(&["run", wasm, "--input", input, "--id", "long"])
        .success();
    let all_steps = clean.committed("long");

    let seed = seed();
    eprintln!("sigkill test seed: {seed} (set DURABLE_TEST_SEED to reproduce)");
    let mut rng = seed | 1;
    let env = Env::new();
    let mut kills = 0;
    let mut executions: Vec<String> = Vec::new();
    let mut args = vec!["run", wasm, "--input", input, "--id", "long"];
    let output = loop {
        // What is committed before this drive starts must not run in it.
        let committed_before_drive = env.committed("long");
        let child = env.spawn(&args);
        let started = Instant::now();
        // Kill somewhere in the first 600 ms of this drive (the whole run
        // takes longer), or let it finish once we have killed three times.
        let kill_at = Duration::from_millis(100 + next(&mut rng) % 500);
        let mut child = child;
        let mut killed = false;
        if kills < 3 {
            while started.elapsed() < kill_at && child.try_wait().expect("try_wait").is_none() {
                std::thread::sleep(Duration::from_millis(5));
            }
            killed = child.try_wait().expect("try_wait").is_none();
            if killed {
                child.kill().expect("SIGKILL");
            }
        }
        let run = finish(child, "durable run", &env.db());
        let ran = executed_in(&run.stderr());
        for key in &ran {
            assert!(
                !committed_before_drive.contains(key),
                "{key} was committed before drive {} and ran again (seed {seed})",
                kills + 1
            );
        }
        executions.extend(ran);
        let finished = if killed {
            kills += 1;
            assert!(run.out.status.code().is_none(), "the child was killed");
            None
        } else {
            Some(run)
        };
        if let Some(run) = finished {
            break run;
        }
        // Resume through `resume` and `run --id` alike.
        args = if kills % 2 == 0 {
            vec!["resume", "long"]
        } else {
            vec!["run", wasm, "--input", input, "--id", "long"]
        };
    };
    assert_eq!(output.success(), expected, "seed {seed}");
    assert_eq!(env.committed("long"), all_steps);
    // Every step ran at least once; one that ran twice was in flight at a kill,
    // which the per-drive check above already established.
    let ran: BTreeSet<String> = executions.iter().cloned().collect();
    assert_eq!(ran, all_steps, "seed {seed}");
    assert!(kills >= 1, "no kill landed mid-run (seed {seed})");
}
