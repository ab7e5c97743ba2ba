//! Several `durable serve` hosts on one PostgreSQL database, as operators
//! run them: an event storm across hosts (no deadlock reaches a client or a
//! drive), a host whose clock is off (it takes no live host's runs), and a
//! new host taking up due runs while it compiles (no busy polling).

use std::time::{Duration, Instant};

use serde_json::json;

use crate::server::Server;
use crate::util::{Env, executed_in, postgres_rows};

/// Transactions the server has counted for the test's database.
fn transactions(env: &Env) -> u64 {
    // Statistics reach the view within a second of a transaction.
    std::thread::sleep(Duration::from_millis(1500));
    let rows = postgres_rows(
        &env.db().to_string_lossy(),
        "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = current_database()",
    );
    rows[0][0].parse().expect("a count")
}

#[test]
fn postgres_an_event_storm_through_another_host_answers_no_500_and_delivers_every_event_once() {
    const RUNS: usize = 100;
    const EVENTS: usize = 5;
    let env = Env::postgres();
    let a = Server::start(&env, &[]);
    let b = Server::start(&env, &[]);
    let digest = a.upload("testbed");
    for i in 0..RUNS {
        let (status, body) = a.json(
            "POST",
            "/v1/runs",
            &json!({"component": digest, "id": format!("e{i}"),
                    "input": {"mode": "events", "n": EVENTS, "delay_ms": 1}}),
        );
        assert_eq!(status, 201, "{body}");
    }
    // A client per run sends its events, in order, through host B, all
    // runs at once, while host A drives the runs they wake.
    let answers: Vec<(u16, String)> = std::thread::scope(|s| {
        let clients: Vec<_> = (0..RUNS)
            .map(|i| {
                let b = &b;
                s.spawn(move || {
                    (0..EVENTS)
                        .map(|k| {
                            let (status, body) = b.json(
                                "POST",
                                &format!("/v1/runs/e{i}/events/ping"),
                                &json!({"data": {"run": i, "k": k}, "id": format!("e{i}-{k}")}),
                            );
                            (status, body.to_string())
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        clients
            .into_iter()
            .flat_map(|c| c.join().expect("client"))
            .collect()
    });
    let refused: Vec<&(u16, String)> = answers.iter().filter(|(s, _)| *s != 201).collect();
    assert!(
        refused.is_empty(),
        "{} of {} event POSTs: {:?}",
        refused.len(),
        answers.len(),
        &refused[..refused.len().min(5)]
    );
    for i in 0..RUNS {
        let done = a.result(&format!("e{i}"));
        assert_eq!(done["status"], "succeeded", "{done}");
        // Each of the run's events, once, in the order sent.
        let pings: Vec<_> = (0..EVENTS).map(|k| json!({"run": i, "k": k})).collect();
        assert_eq!(done["output"]["pings"], json!(pings), "{done}");
    }
    let db = env.db();
    let db = db.to_string_lossy();
    assert_eq!(
        postgres_rows(&db, "SELECT count(*), count(consumed_by) FROM events"),
        [[format!("{}", RUNS * EVENTS), format!("{}", RUNS * EVENTS)]],
        "every event stored once and consumed once"
    );
    assert_eq!(
        postgres_rows(
            &db,
            "SELECT count(*) FROM (SELECT consumed_by, run_id FROM events GROUP BY 1, 2 HAVING count(*) > 1) d"
        ),
        [["0"]],
        "an await consumed two events"
    );
    for host in [&a, &b] {
        let stderr = host.stderr();
        assert!(!stderr.contains("drive failed"), "{stderr}");
        assert!(!stderr.contains("deadlock"), "{stderr}");
    }
}

#[test]
fn postgres_a_host_whose_clock_is_ahead_takes_no_live_hosts_runs() {
    let env = Env::postgres();
    let lease = ["--lease-ms", "2000"];
    // Host B's clock is a minute ahead: by it, every lease host A writes
    // has long run out.
    let b = Server::start_with(&env, &lease, &[("DURABLE_TEST_CLOCK_SKEW_MS", "60000")]);
    let a = Server::start(&env, &lease);
    let digest = a.upload("testbed");
    let (status, body) = a.json(
        "POST",
        "/v1/runs",
        &json!({"component": digest, "id": "slow",
                "input": {"mode": "long", "n": 2, "delay_ms": 4000}}),
    );
    assert_eq!(status, 201, "{body}");
    let done = a.result("slow");
    assert_eq!(done["status"], "succeeded", "{done}");
    let (_, run) = a.call("GET", "/v1/runs/slow", b"");
    assert_eq!(run["drives"], 1, "host B took the run over: {run}");
    let ran = executed_in(&format!("{}{}", a.stderr(), b.stderr()));
    assert_eq!(ran.len(), 2, "{ran:?}");
    drop(b);
}

#[test]
fn postgres_a_new_host_compiling_due_runs_does_not_poll_the_database_in_a_loop() {
    let env = Env::postgres();
    let mut first = Server::start(&env, &[]);
    let digest = first.upload("testbed");
    for i in 0..3 {
        let (status, body) = first.json(
            "POST",
            "/v1/runs",
            &json!({"component": digest, "id": format!("s{i}"),
                    "input": {"mode": "sleep", "delay_ms": 2000}}),
        );
        assert_eq!(status, 201, "{body}");
    }
    let db = env.db();
    let db = db.to_string_lossy().to_string();
    let deadline = Instant::now() + Duration::from_secs(60);
    while postgres_rows(&db, "SELECT count(*) FROM runs WHERE status = 'waiting'") != [["3"]] {
        assert!(Instant::now() < deadline, "the runs never parked");
        std::thread::sleep(Duration::from_millis(50));
    }
    first.kill();
    // They are due when a host with an empty compile cache starts: it
    // compiles the component before it can take any of them up.
    std::thread::sleep(Duration::from_secs(3));
    let before = transactions(&env);
    let cache = env.dir.path().join("empty-cache");
    let cache = cache.to_str().expect("utf-8");
    let second = Server::start_with(&env, &[], &[("DURABLE_CACHE_DIR", cache)]);
    for i in 0..3 {
        assert_eq!(second.result(&format!("s{i}"))["status"], "succeeded");
    }
    let spent = transactions(&env) - before;
    eprintln!("taking up 3 due runs on a new host cost {spent} transactions");
    // Each run needs a claim, its commits, its end and the server's looks
    // (a few dozen in all); a poll that does not wait costs hundreds.
    assert!(spent < 150, "{spent} transactions");
}
