//! The same promises on PostgreSQL (`--db postgres://...`): crash and
//! resume, events and timers across a kill, replayed errors, divergence,
//! the verbs that read and change runs, and the server. Each test gets a
//! new database on the server of `DURABLE_TEST_POSTGRES`
//! (`scripts/with-postgres.sh`).

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::server::Server;
use crate::util::{Env, postgres_rows, wasm};

const HIRE: &str = r#"{"name":"Ada Lovelace","email":"ada@example.com"}"#;

fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `durable show RUN --json`, or null before the run exists.
fn shown(env: &Env, run: &str) -> Value {
    let out = env.run(&["show", run, "--json"]);
    if out.out.status.success() {
        out.success()
    } else {
        Value::Null
    }
}

fn keys(shown: &Value) -> Vec<String> {
    shown["steps"]
        .as_array()
        .map(|s| {
            s.iter()
                .filter_map(|s| s["key"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn postgres_crash_after_a_step_then_resume_does_not_run_it_again() {
    let clean = Env::postgres();
    let expected = clean
        .run(&["run", &wasm("onboarding"), "--input", HIRE, "--id", "ada"])
        .success();

    let env = Env::postgres();
    let crashed = env.crash_after(&wasm("onboarding"), HIRE, "ada", "create_record#1");
    assert_eq!(crashed.stderr().matches("create_record#1 | ").count(), 1);
    assert_eq!(
        env.committed("ada"),
        BTreeSet::from(["create_record#1".to_string()])
    );
    let resumed = env.run(&["resume", "ada"]);
    assert_eq!(resumed.success(), expected);
    let err = resumed.stderr();
    assert!(!err.contains("create_record#1 | "), "ran again: {err}");
    let run = shown(&env, "ada");
    assert_eq!(run["drives"], 2, "{run}");
    assert_eq!(run["steps"][0]["source"], "recovered", "{run}");
    assert_eq!(
        run["drive_starts"].as_array().map(Vec::len),
        Some(2),
        "{run}"
    );
    // Finished: running it again answers the stored output, runs nothing.
    let again = env.run(&["run", &wasm("onboarding"), "--input", HIRE, "--id", "ada"]);
    assert_eq!(again.success(), expected);
    assert!(!again.stderr().contains(" | "), "{}", again.stderr());
}

#[test]
fn postgres_events_are_delivered_once_in_order_across_a_kill() {
    let env = Env::postgres();
    let input = r#"{"mode":"events","n":3,"delay_ms":500}"#;
    let mut child = env.spawn(&["run", &wasm("testbed"), "--input", input, "--id", "e"]);
    wait_for("the run to wait for ping", || {
        shown(&env, "e")["status"] == "waiting"
    });
    for n in [1, 2] {
        env.run(&["event", "e", "ping", "--data", &format!(r#"{{"n":{n}}}"#)])
            .expect_code(Some(0));
    }
    wait_for("the third wait", || {
        // A drive that ended early says why (else this would only time out).
        if let Ok(Some(status)) = child.try_wait() {
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                let _ = std::io::Read::read_to_string(&mut e, &mut err);
            }
            panic!("durable run exited ({status}) before the third wait:\n{err}");
        }
        let run = shown(&env, "e");
        run["status"] == "waiting"
            && keys(&run)
                .iter()
                .filter(|k| k.starts_with("$event:ping"))
                .count()
                == 2
    });
    let _ = child.kill();
    let _ = child.wait();
    env.run(&[
        "event",
        "e",
        "ping",
        "--data",
        r#"{"n":3}"#,
        "--id",
        "third",
    ])
    .expect_code(Some(0));
    // The same event id again is stored once.
    env.run(&[
        "event",
        "e",
        "ping",
        "--data",
        r#"{"n":3}"#,
        "--id",
        "third",
    ])
    .expect_code(Some(0));
    let out = env.run(&["resume", "e"]).success();
    assert_eq!(
        out,
        json!({"pings": [{"n":1},{"n":2},{"n":3}], "pong": {"timed_out": 500}, "after": {"echo": "after"}})
    );
    assert_eq!(
        postgres_rows(
            &env.db().to_string_lossy(),
            "SELECT payload, consumed_by FROM events WHERE run_id = 'e' ORDER BY seq"
        ),
        [
            [r#"{"n":1}"#, "$event:ping#1"],
            [r#"{"n":2}"#, "$event:ping#2"],
            [r#"{"n":3}"#, "$event:ping#3"]
        ]
    );
}

#[test]
fn postgres_replays_errors_and_refuses_a_divergent_component_without_a_change() {
    let env = Env::postgres();
    let input = r#"{"mode":"seq3"}"#;
    env.crash_after(&wasm("testbed"), input, "d", "step_b#1");
    let before = shown(&env, "d");
    let diverged = env.run(&["run", &wasm("diverge"), "--input", input, "--id", "d"]);
    diverged.expect_code(Some(5));
    assert!(
        diverged.stderr().contains("diverged"),
        "{}",
        diverged.stderr()
    );
    assert_eq!(keys(&shown(&env, "d")), keys(&before), "the store changed");
    let resumed = env.run(&["resume", "d"]);
    assert_eq!(resumed.success(), json!([{"a": 1}, {"b": 2}, {"c": 3}]));
    assert_eq!(resumed.executed(), ["step_c#1"]);

    // A step that fails for good is recorded, and replayed as the same error.
    let failing = env.run(&[
        "run",
        &wasm("testbed"),
        "--input",
        r#"{"mode":"always-fails"}"#,
        "--id",
        "f",
    ]);
    let first = failing.success();
    let run = shown(&env, "f");
    assert_eq!(run["steps"][0]["attempts"], 3, "{run}");
    assert_eq!(
        run["steps"][0]["failed_attempts"].as_array().map(Vec::len),
        Some(3),
        "{run}"
    );
    let again = env.run(&[
        "run",
        &wasm("testbed"),
        "--input",
        r#"{"mode":"always-fails"}"#,
        "--id",
        "f",
    ]);
    assert_eq!(again.success(), first);
    assert!(again.executed().is_empty(), "{}", again.stderr());

    // Retries, with a directory grant of the working directory (where a
    // SQLite database would be refused; a PostgreSQL one is no file there).
    let flaky = env.run(&[
        "run",
        &wasm("testbed"),
        "--input",
        r#"{"mode":"flaky","n":2}"#,
        "--id",
        "r",
        "--allow-dir",
        ".::/state",
    ]);
    assert_eq!(
        flaky.success(),
        json!({"ok": {"succeeded_on_attempt": 2}}),
        "{}",
        flaky.stderr()
    );
    assert_eq!(shown(&env, "r")["steps"][0]["attempts"], 2);
}

#[test]
fn postgres_lists_cancels_and_forks_runs() {
    let env = Env::postgres();
    env.run(&["run", &wasm("onboarding"), "--input", HIRE, "--id", "o1"])
        .success();
    let mut waiting = env.spawn(&[
        "run",
        &wasm("testbed"),
        "--input",
        r#"{"mode":"events","n":1,"delay_ms":500}"#,
        "--id",
        "w1",
    ]);
    wait_for("the run to wait", || {
        shown(&env, "w1")["status"] == "waiting"
    });
    let _ = waiting.kill();
    let _ = waiting.wait();
    let listed = env.run(&["list", "--json"]).success();
    let ids: Vec<&str> = listed
        .as_array()
        .expect("runs")
        .iter()
        .filter_map(|r| r["id"].as_str())
        .collect();
    assert_eq!(ids, ["w1", "o1"]);
    let only = env.run(&["list", "--json", "--prefix", "o"]).success();
    assert_eq!(only.as_array().map(Vec::len), Some(1));
    env.run(&["cancel", "w1"]).expect_code(Some(0));
    assert_eq!(shown(&env, "w1")["status"], "cancelled");
    let forked = env.run(&[
        "fork",
        "o1",
        "--from-step",
        "provision_laptop#1",
        "--id",
        "o2",
    ]);
    forked.expect_code(Some(0));
    let run = shown(&env, "o2");
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(run["forked_from"], "o1/provision_laptop#1");
    assert_eq!(run["steps"][0]["drive"], 0, "copied: {run}");
}

#[test]
fn postgres_server_finishes_every_run_after_a_sigkill() {
    let env = Env::postgres();
    let mut server = Server::start(&env, &[]);
    let digest = server.upload("onboarding");
    for i in 0..20 {
        let (status, body) = server.json(
            "POST",
            "/v1/runs",
            &json!({"component": digest, "id": format!("r{i}"),
                    "input": {"name": format!("N{i}"), "email": format!("n{i}@example.com")}}),
        );
        assert_eq!(status, 201, "{body}");
    }
    std::thread::sleep(Duration::from_millis(200));
    server.kill();
    let server = Server::start(&env, &[]);
    for i in 0..20 {
        let done = server.result(&format!("r{i}"));
        assert_eq!(done["status"], "succeeded", "{done}");
    }
    let rows = postgres_rows(
        &env.db().to_string_lossy(),
        "SELECT count(*) FROM steps WHERE key NOT LIKE '$%'",
    );
    assert_eq!(rows, [["60"]]);
}

/// `(run, key)` of every line a step body printed, as the servers show it
/// (`[RUN]  KEY | text`), for the lines whose text starts with `said`.
fn bodies_ran(stderr: &str, said: &[&str]) -> Vec<(String, String)> {
    stderr
        .lines()
        .filter_map(|l| {
            let rest = l.strip_prefix('[')?;
            let (run, rest) = rest.split_once(']')?;
            let (key, text) = rest.split_once(" | ")?;
            said.iter()
                .any(|s| text.trim_start().starts_with(s))
                .then(|| (run.to_string(), key.trim().to_string()))
        })
        .collect()
}

/// `run/key` of every committed step.
fn committed_steps(env: &Env) -> BTreeSet<String> {
    postgres_rows(
        &env.db().to_string_lossy(),
        "SELECT run_id || '/' || key FROM steps WHERE key NOT LIKE '$%'",
    )
    .into_iter()
    .map(|mut r| r.remove(0))
    .collect()
}

fn signal(server: &Server, signal: i32) {
    // SAFETY: kill(2) on the pid of a child this test spawned.
    unsafe { libc::kill(server.pid() as i32, signal) };
}

/// Three servers on one database share 300 onboarding runs; one is
/// SIGKILLed early on and the other two finish its runs without running a
/// committed step again. Then one is paused (SIGSTOP) past its lease while
/// it drives runs: the last one takes them over and finishes them, and
/// when the paused one wakes (SIGCONT) it writes nothing for them.
#[test]
fn postgres_three_servers_share_the_runs_and_outlive_a_killed_and_a_paused_one() {
    const RUNS: usize = 300;
    let env = Env::postgres();
    let lease = ["--lease-ms", "2000"];
    let mut hosts: Vec<Server> = (0..3).map(|_| Server::start(&env, &lease)).collect();
    let digest = hosts[0].upload("onboarding");
    let killed_pid = hosts[0].pid();
    let mut before_kill = BTreeSet::new();
    let mut orphans: Vec<String> = Vec::new();
    for i in 0..RUNS {
        // Half-way through the starts, host 0 dies with runs in flight;
        // the rest are started on the other two.
        if i == RUNS / 2 {
            hosts[0].kill();
            before_kill = committed_steps(&env);
            orphans = postgres_rows(
                &env.db().to_string_lossy(),
                &format!(
                    "SELECT id FROM runs WHERE status = 'running' AND owner LIKE '%:{killed_pid}:%'"
                ),
            )
            .into_iter()
            .map(|mut r| r.remove(0))
            .collect();
        }
        let host = if i < RUNS / 2 { i % 3 } else { 1 + i % 2 };
        let (status, body) = hosts[host].json(
            "POST",
            "/v1/runs",
            &json!({"component": digest, "id": format!("r{i}"),
                    "input": {"name": format!("N{i}"), "email": format!("n{i}@example.com")}}),
        );
        assert_eq!(status, 201, "{body}");
    }
    assert!(
        !orphans.is_empty(),
        "host 0 drove no run when it was killed"
    );
    // Every host answers for every run; all of them end well.
    for i in 0..RUNS {
        let done = hosts[1 + i % 2].result(&format!("r{i}"));
        assert_eq!(done["status"], "succeeded", "{done}");
    }
    for id in &orphans {
        let (_, run) = hosts[2].call("GET", &format!("/v1/runs/{id}"), b"");
        assert!(run["drives"].as_u64() >= Some(2), "{run}");
    }
    // Each step committed once, and no committed step ran again.
    let committed = committed_steps(&env);
    assert_eq!(committed.len(), RUNS * 3);
    let stderr: String = hosts.iter().map(Server::stderr).collect();
    let ran = bodies_ran(&stderr, &["created", "assigned", "granted"]);
    for step in &before_kill {
        let (run, key) = step.split_once('/').expect("run/key");
        let times = ran.iter().filter(|(r, k)| r == run && k == key).count();
        assert_eq!(
            times, 1,
            "{step} was committed before the kill and ran {times} times"
        );
    }

    // Host 1 is paused past its lease while it drives runs.
    for i in 0..30 {
        let (status, body) = hosts[1].json(
            "POST",
            "/v1/runs",
            &json!({"component": digest, "id": format!("p{i}"),
                    "input": {"name": format!("P{i}"), "email": format!("p{i}@example.com")}}),
        );
        assert_eq!(status, 201, "{body}");
    }
    signal(&hosts[1], libc::SIGSTOP);
    for i in 0..30 {
        let done = hosts[2].result(&format!("p{i}"));
        assert_eq!(done["status"], "succeeded", "{done}");
    }
    let paused_rows = |env: &Env| {
        postgres_rows(
            &env.db().to_string_lossy(),
            "SELECT run_id, key, drive, finished_at_ms FROM steps WHERE run_id LIKE 'p%'
             ORDER BY run_id, key",
        )
    };
    let taken_over = paused_rows(&env);
    let moved = postgres_rows(
        &env.db().to_string_lossy(),
        "SELECT count(*) FROM runs WHERE id LIKE 'p%' AND drives >= 2",
    );
    assert_ne!(moved, [["0"]], "no run of the paused host was taken over");
    eprintln!(
        "killed host: {} runs taken over, {} steps committed before the kill; paused host: {:?} runs taken over",
        orphans.len(),
        before_kill.len(),
        moved
    );
    signal(&hosts[1], libc::SIGCONT);
    // Its step attempts finish now, and find they lost the runs.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        paused_rows(&env),
        taken_over,
        "the paused host wrote after waking"
    );
    let (status, _) = hosts[1].call("GET", "/v1/health", b"");
    assert_eq!(status, 200, "the paused host lives on");
}
