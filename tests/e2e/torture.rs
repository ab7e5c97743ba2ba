//! The SIGKILL torture test: a long workflow mixing sequential, parallel and
//! nested steps and durable sleeps is killed at random moments (seeded) and
//! resumed until it finishes.
//!
//! `DURABLE_TORTURE_KILLS` sets the number of kills (default 20),
//! `DURABLE_TORTURE_LENGTH` the workflow's iterations (default 80, about 130
//! steps; a long run needs more so that it outlasts its kills), and
//! `DURABLE_TEST_SEED` replays a failing sequence. The figures are printed
//! at the end (`cargo test torture -- --nocapture`).

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use crate::util::{Env, finish, wasm};

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

fn xorshift(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

/// Every committed step of `run`: key -> (outcome, value).
fn steps(env: &Env, run: &str) -> BTreeMap<String, (String, String)> {
    // Before the first drive created the schema there is nothing to read.
    if !env.db().exists()
        || env.query("SELECT count(*) FROM sqlite_schema WHERE name = 'steps'") == [["0"]]
    {
        return BTreeMap::new();
    }
    env.query(&format!(
        "SELECT key, outcome, value FROM steps WHERE run_id = '{run}' AND key NOT LIKE '$%'"
    ))
    .into_iter()
    .map(|r| (r[0].clone(), (r[1].clone(), r[2].clone())))
    .collect()
}

/// The keys in the execution log the step bodies append to, from line `from`.
fn executions(log: &std::path::Path, from: usize) -> Vec<String> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .skip(from)
        .filter_map(|l| l.strip_prefix("EXEC "))
        .map(|k| k.split_once('/').map_or(k, |(_, key)| key).to_string())
        .collect()
}

#[test]
fn sigkill_torture_loses_nothing_and_reruns_only_what_was_in_flight() {
    let testbed = wasm("testbed");
    let kills_wanted: u32 = std::env::var("DURABLE_TORTURE_KILLS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    let length: u32 = std::env::var("DURABLE_TORTURE_LENGTH")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(80);
    // Durable sleeps every 9 iterations: kills land while runs are parked
    // too, and drives take parked runs up again.
    let input = format!(r#"{{"mode":"long","n":{length},"delay_ms":20,"sleep_every":9}}"#);
    let input = input.as_str();

    let clean = Env::new();
    let expected = clean
        .run(&["run", &testbed, "--input", input, "--id", "t"])
        .success();
    let expected_steps = steps(&clean, "t");
    assert!(
        expected_steps.len() >= 50,
        "the workflow has {} steps",
        expected_steps.len()
    );

    let seed = seed();
    eprintln!("torture seed: {seed} (DURABLE_TEST_SEED={seed} reproduces it)");
    let mut rng = seed | 1;
    let env = Env::new();
    let exec_dir = env.dir.path().join("exec");
    std::fs::create_dir(&exec_dir).expect("mkdir");
    let log = exec_dir.join("log");
    let grant = format!("{}::/exec", exec_dir.display());

    let (mut kills, mut drives, mut seen) = (0u32, 0u32, 0usize);
    let mut all_runs: Vec<String> = Vec::new();
    let started = Instant::now();
    let last = loop {
        drives += 1;
        let committed_before = steps(&env, "t");
        // Alternate the two ways of continuing a run (`resume` only once the
        // run exists: a kill may land before the first drive created it).
        let exists = env.has_table("runs")
            && env.query("SELECT count(*) FROM runs WHERE id = 't'") == [["1"]];
        let args: Vec<&str> = if drives % 2 == 1 || !exists {
            vec![
                "run",
                &testbed,
                "--input",
                input,
                "--id",
                "t",
                "--allow-dir",
                &grant,
            ]
        } else {
            vec!["resume", "t", "--allow-dir", &grant]
        };
        let mut child = env.spawn(&args);
        let spawned = Instant::now();
        let mut killed = false;
        if kills < kills_wanted {
            let kill_at = Duration::from_millis(30 + xorshift(&mut rng) % 400);
            while spawned.elapsed() < kill_at && child.try_wait().expect("try_wait").is_none() {
                std::thread::sleep(Duration::from_millis(2));
            }
            if child.try_wait().expect("try_wait").is_none() {
                child.kill().expect("SIGKILL");
                killed = true;
                kills += 1;
            }
        }
        let run = finish(child, "durable (torture drive)", &env.db());
        let ran = executions(&log, seen);
        seen += ran.len();
        for key in &ran {
            assert!(
                !committed_before.contains_key(key),
                "{key} had been committed before drive {drives} and ran again (seed {seed})"
            );
        }
        // Nothing committed is ever changed or removed by a later drive.
        let committed_after = steps(&env, "t");
        for (key, value) in &committed_before {
            assert_eq!(
                committed_after.get(key),
                Some(value),
                "{key} changed (seed {seed})"
            );
        }
        all_runs.extend(ran);
        if killed {
            assert!(
                run.out.status.code().is_none(),
                "the drive was killed by a signal"
            );
        } else {
            break run;
        }
        assert!(
            drives < kills_wanted + 50,
            "the run does not finish (seed {seed})"
        );
    };

    assert_eq!(last.success(), expected, "seed {seed}");
    assert_eq!(
        steps(&env, "t"),
        expected_steps,
        "the store lost or changed a step (seed {seed})"
    );
    assert_eq!(env.query("SELECT count(*) FROM attempts"), [["0"]]);
    let distinct: BTreeSet<&String> = all_runs.iter().collect();
    assert_eq!(
        distinct.len(),
        expected_steps.len(),
        "every step ran at least once"
    );
    let reruns = all_runs.len() - distinct.len();
    eprintln!(
        "torture: {kills} kills, {drives} drives, {} steps, {} executions, {reruns} re-executions \
         (each of a step in flight at a kill), 0 runs lost, {:.1} s",
        expected_steps.len(),
        all_runs.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(kills >= 1, "no kill landed mid-run (seed {seed})");
}
