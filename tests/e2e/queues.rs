//! Flow control in `durable serve`: queues admit runs under their limits
//! (concurrency, per-key concurrency, rate) in priority order, across the
//! hosts of one database. What ran when is read from the runs' step
//! records (each run is one step of real time), never from the server's
//! own account.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::server::Server;
use crate::util::Env;

/// Registers the family guest as workflow "family" on `server`.
fn register(server: &Server) {
    let digest = server.upload("family");
    let (status, body) = server.json(
        "POST",
        "/v1/workflows",
        &json!({"name": "family", "component": digest}),
    );
    assert!(status == 201 || status == 200, "{status} {body}");
}

fn put_queue(server: &Server, name: &str, limits: Value) {
    let (status, body) = server.json("PUT", &format!("/v1/queues/{name}"), &limits);
    assert!(status == 201 || status == 200, "{status} {body}");
}

/// Starts run `id` of "family" in `queue`; its summary.
fn start(server: &Server, id: &str, queue: &str, input: Value, extra: Value) -> Value {
    let mut body = json!({"workflow": "family", "id": id, "queue": queue, "input": input});
    if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        b.extend(e.clone());
    }
    let (status, answer) = server.json("POST", "/v1/runs", &body);
    assert_eq!(status, 201, "{answer}");
    answer
}

fn nap(ms: u64, extra: Value) -> Value {
    let mut input = json!({"mode": "nap", "delay_ms": ms});
    if let (Some(i), Some(e)) = (input.as_object_mut(), extra.as_object()) {
        i.extend(e.clone());
    }
    input
}

/// When run `id`'s steps started and ended: (first start, last end).
fn span(server: &Server, id: &str) -> (i64, i64) {
    let (status, run) = server.call("GET", &format!("/v1/runs/{id}"), b"");
    assert_eq!(status, 200, "{run}");
    assert_eq!(run["status"], "succeeded", "{run}");
    let steps = run["steps"].as_array().expect("steps");
    assert!(!steps.is_empty(), "{run}");
    let start = steps
        .iter()
        .filter_map(|s| s["started_at_ms"].as_i64())
        .min();
    let end = steps
        .iter()
        .filter_map(|s| s["finished_at_ms"].as_i64())
        .max();
    (start.expect("a start"), end.expect("an end"))
}

/// Most spans open at once (one that ends when another starts does not
/// overlap it).
fn most_at_once(spans: &[(i64, i64)]) -> usize {
    let mut edges: Vec<(i64, i32)> = spans.iter().flat_map(|&(s, e)| [(s, 1), (e, -1)]).collect();
    // Ends before starts at the same time.
    edges.sort();
    let (mut now, mut most) = (0i32, 0i32);
    for (_, d) in edges {
        now += d;
        most = most.max(now);
    }
    most as usize
}

fn wait_until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_queue_admits_runs_under_its_limits_in_priority_then_start_order() {
    let env = Env::new();
    let server = Server::start(&env, &[]);
    register(&server);

    // Concurrency 3: 24 runs of 150 ms never run 4 at once, and do run 3.
    put_queue(&server, "three", json!({"concurrency": 3}));
    let ids: Vec<String> = (0..24).map(|i| format!("c{i}")).collect();
    for id in &ids {
        let answer = start(&server, id, "three", nap(150, json!({})), json!({}));
        assert_eq!(answer["queue"], "three", "{answer}");
    }
    let spans: Vec<_> = ids
        .iter()
        .map(|id| {
            server.result(id);
            span(&server, id)
        })
        .collect();
    assert_eq!(most_at_once(&spans), 3, "{spans:?}");

    // A queue of one held by a run that waits (its slot is kept while it
    // waits): the runs behind it are queued, and say why.
    put_queue(&server, "one", json!({"concurrency": 1}));
    start(&server, "holder", "one", json!({"mode": "slow"}), json!({}));
    wait_until("the holder to wait", Duration::from_secs(30), || {
        server.call("GET", "/v1/runs/holder", b"").1["status"] == "waiting"
    });
    start(&server, "low1", "one", nap(0, json!({})), json!({}));
    start(
        &server,
        "low2",
        "one",
        nap(0, json!({})),
        json!({"priority": 0}),
    );
    start(
        &server,
        "high",
        "one",
        nap(0, json!({})),
        json!({"priority": 9}),
    );
    let (_, low2) = server.call("GET", "/v1/runs/low2", b"");
    assert_eq!(low2["status"], "queued", "{low2}");
    assert_eq!(low2["queue"], "one");
    assert_eq!(
        low2["queued"],
        json!({"key": null, "priority": 0, "position": 2, "held_by": "concurrency", "not_before_ms": null}),
        "{low2}"
    );
    let (_, listed) = server.call("GET", "/v1/runs?status=queued&counts=true", b"");
    let queued: Vec<&str> = listed["runs"]
        .as_array()
        .expect("runs")
        .iter()
        .filter_map(|r| r["id"].as_str())
        .collect();
    assert_eq!(queued.len(), 3, "{listed}");
    assert_eq!(listed["counts"]["queued"], 3, "{listed}");
    let (status, queues) = server.call("GET", "/v1/queues/one", b"");
    assert_eq!(status, 200, "{queues}");
    assert_eq!(
        (queues["queued"].as_u64(), queues["active"].as_u64()),
        (Some(3), Some(1))
    );
    let (_, _, metrics) = server.raw("GET", "/metrics", &[], b"");
    for line in [
        "durable_queue_runs{queue=\"one\",state=\"queued\"} 3",
        "durable_queue_runs{queue=\"one\",state=\"running\"} 1",
        "durable_queue_throttled{queue=\"one\"} 0",
        "durable_runs{status=\"queued\"} 3",
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "{line} not in {metrics}"
        );
    }
    let (status, body) = server.call("POST", "/v1/runs/holder/cancel", b"");
    assert_eq!(status, 200, "{body}");
    let order: Vec<(i64, &str)> = ["low1", "low2", "high"]
        .into_iter()
        .map(|id| {
            server.result(id);
            (span(&server, id).0, id)
        })
        .collect();
    let mut by_start = order.clone();
    by_start.sort();
    let ran: Vec<&str> = by_start.iter().map(|(_, id)| *id).collect();
    assert_eq!(ran, ["high", "low1", "low2"], "{order:?}");

    // One run per key at a time, in start order; keys side by side.
    put_queue(
        &server,
        "keyed",
        json!({"concurrency": 10, "concurrency_key": "/customer", "per_key_concurrency": 1}),
    );
    for i in 0..5 {
        for c in ["a", "b"] {
            start(
                &server,
                &format!("{c}{i}"),
                "keyed",
                nap(60, json!({"customer": c})),
                json!({}),
            );
        }
    }
    for c in ["a", "b"] {
        let spans: Vec<_> = (0..5)
            .map(|i| {
                let id = format!("{c}{i}");
                server.result(&id);
                span(&server, &id)
            })
            .collect();
        for w in spans.windows(2) {
            assert!(
                w[1].0 >= w[0].1,
                "key {c}: a run started before the one before it ended: {spans:?}"
            );
        }
    }

    // A rate of 10 a second (a bucket of 1): 12 runs are admitted over at
    // least 1.1 s, one every 100 ms.
    put_queue(&server, "rated", json!({"rate": "10/1s"}));
    let ids: Vec<String> = (0..12).map(|i| format!("r{i}")).collect();
    for id in &ids {
        start(&server, id, "rated", nap(0, json!({})), json!({}));
    }
    let starts: Vec<i64> = ids
        .iter()
        .map(|id| {
            server.result(id);
            span(&server, id).0
        })
        .collect();
    let (first, last) = (starts.iter().min().copied(), starts.iter().max().copied());
    let spread = last.zip(first).map(|(l, f)| l - f).expect("starts");
    assert!(
        spread >= 1_050,
        "12 runs at 10/s started within {spread} ms: {starts:?}"
    );

    // Debounce: 50 starts of one key within the window are one run, with
    // the last input, started when the window (from the first) ends.
    let mut pending = None;
    let first = Instant::now();
    for i in 0..50 {
        let (status, answer) = server.json(
            "POST",
            "/v1/runs",
            &json!({"workflow": "family", "input": {"mode": "nap", "i": i},
                    "debounce": {"key": "cart-7", "ms": 1500}}),
        );
        assert_eq!(status, if i == 0 { 201 } else { 200 }, "{i}: {answer}");
        let id = answer["id"].as_str().expect("an id").to_string();
        assert_eq!(pending.get_or_insert_with(|| id.clone()), &id);
    }
    let pending = pending.expect("a run");
    if first.elapsed() < Duration::from_millis(1400) {
        let (_, run) = server.call("GET", &format!("/v1/runs/{pending}"), b"");
        assert_eq!(run["status"], "queued", "{run}");
        assert_eq!(run["queued"]["held_by"], "debounce", "{run}");
    }
    let ended = server.result(&pending);
    assert_eq!(ended["output"], json!({"napped": 0, "i": 49}), "{ended}");
    let (_, listed) = server.call("GET", "/v1/runs?workflow=family&limit=1000", b"");
    let debounced = listed["runs"]
        .as_array()
        .expect("runs")
        .iter()
        .filter(|r| {
            r["queue"].is_null() && r["id"].as_str().is_some_and(|id| id.starts_with("family-"))
        })
        .count();
    assert_eq!(debounced, 1, "{listed}");
    // After the window, the key starts a new run; "first" keeps its input.
    for i in 0..3 {
        server.json(
            "POST",
            "/v1/runs",
            &json!({"workflow": "family", "id": format!("f{i}"), "input": {"mode": "nap", "i": i},
                    "debounce": {"key": "cart-7", "ms": 300, "mode": "first"}}),
        );
    }
    let ended = server.result("f0");
    assert_eq!(ended["output"], json!({"napped": 0, "i": 0}), "{ended}");

    // Bad queues and starts are refused, naming what is wrong.
    let long = "k".repeat(5000);
    for bad in [
        json!({"workflow": "family", "queue": "one", "key": long, "input": {}}),
        json!({"workflow": "family", "queue": "one", "key": "a\u{0}b", "input": {}}),
        json!({"workflow": "family", "queue": "k\u{0}", "input": {}}),
        json!({"workflow": "family", "input": {}, "debounce": {"key": long, "ms": 10}}),
    ] {
        let (status, body) = server.json("POST", "/v1/runs", &bad);
        assert_eq!(status, 400, "{body}");
    }
    put_queue(
        &server,
        "by-name",
        json!({"concurrency": 1, "concurrency_key": "/name"}),
    );
    let (status, body) = server.json(
        "POST",
        "/v1/runs",
        &json!({"workflow": "family", "queue": "by-name", "input": {"name": long}}),
    );
    assert_eq!(status, 400, "{body}");
    let (status, _, body) = server.raw(
        "PUT",
        "/v1/queues/plain",
        &["content-type: text/plain"],
        br#"{"concurrency": 1}"#,
    );
    assert_eq!(status, 415, "{body}");
    let (status, body) = server.json(
        "PUT",
        "/v1/queues/huge",
        &json!({"rate": "1/106751991167d"}),
    );
    assert_eq!(status, 400, "{body}");
    let (status, body) = server.json("PUT", "/v1/queues/bad", &json!({"rate": "fast"}));
    assert_eq!(status, 400, "{body}");
    let (status, body) = server.json("PUT", "/v1/queues/bad", &json!({"concurrency": 0}));
    assert_eq!(status, 400, "{body}");
    let (status, body) = server.json(
        "POST",
        "/v1/runs",
        &json!({"workflow": "family", "queue": "nowhere", "input": {}}),
    );
    assert_eq!(status, 404, "{body}");
    let (status, body) = server.json(
        "POST",
        "/v1/runs",
        &json!({"workflow": "family", "priority": 3, "input": {}}),
    );
    assert_eq!(status, 400, "{body}");
    let (status, body) = server.json(
        "POST",
        "/v1/runs",
        &json!({"workflow": "family", "queue": "one", "priority": 10, "input": {}}),
    );
    assert_eq!(status, 400, "{body}");
}

#[test]
fn a_queued_run_is_not_driven_by_the_cli_and_run_refuses_queue() {
    let env = Env::new();
    let server = Server::start(&env, &[]);
    register(&server);
    put_queue(&server, "one", json!({"concurrency": 1}));
    start(&server, "holder", "one", json!({"mode": "slow"}), json!({}));
    start(&server, "behind", "one", nap(0, json!({})), json!({}));
    let out = env.cmd(&["resume", "behind"]).output().expect("runs");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("queued in queue \"one\""), "{stderr}");
    let shown = env.cmd(&["show", "behind"]).output().expect("runs");
    let text = String::from_utf8_lossy(&shown.stdout);
    assert!(
        text.contains("queue      one: position 0 (0 is next), priority 0, held by concurrency"),
        "{text}"
    );
    let out = env
        .cmd(&["run", &crate::util::wasm("family"), "--queue", "one"])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("queues are a server's feature"));
}

#[test]
fn postgres_two_hosts_share_a_queues_limit_exactly_and_a_killed_hosts_slots_come_back() {
    const RUNS: usize = 1000;
    let env = Env::postgres();
    let mut a = Server::start(&env, &["--lease-ms", "3000"]);
    let b = Server::start(&env, &["--lease-ms", "3000"]);
    register(&a);
    register(&b);
    put_queue(&a, "ten", json!({"concurrency": 10}));
    // Started through both hosts at once; each admits and drives.
    let ids: Vec<String> = (0..RUNS).map(|i| format!("t{i}")).collect();
    std::thread::scope(|s| {
        for (host, half) in [(&a, 0), (&b, 1)] {
            let ids = &ids;
            s.spawn(move || {
                for id in ids.iter().skip(half).step_by(2) {
                    start(host, id, "ten", nap(100, json!({})), json!({}));
                }
            });
        }
    });
    let spans: Vec<_> = ids
        .iter()
        .map(|id| {
            b.result(id);
            span(&b, id)
        })
        .collect();
    assert_eq!(most_at_once(&spans), 10, "{spans:?}");

    // Host a drives the 3 runs a queue of 3 admits (runs of 4 s) and is
    // killed: the runs behind them wait until b has taken a's over (after
    // the lease) and ended them; never more than 3 at once.
    put_queue(&a, "three", json!({"concurrency": 3}));
    let ids: Vec<String> = (0..8).map(|i| format!("k{i}")).collect();
    for id in &ids[..3] {
        start(&a, id, "three", nap(4_000, json!({})), json!({}));
    }
    wait_until("a to drive three runs", Duration::from_secs(30), || {
        ids[..3].iter().all(|id| {
            let (_, run) = a.call("GET", &format!("/v1/runs/{id}"), b"");
            run["status"] == "running" && run["drives"].as_u64() == Some(1)
        })
    });
    a.kill();
    for id in &ids[3..] {
        start(&b, id, "three", nap(100, json!({})), json!({}));
    }
    let spans: Vec<_> = ids
        .iter()
        .map(|id| {
            b.result(id);
            span(&b, id)
        })
        .collect();
    assert!(most_at_once(&spans) <= 3, "{spans:?}");
    // The killed host's runs were driven again, by b.
    for id in &ids[..3] {
        let (_, run) = b.call("GET", &format!("/v1/runs/{id}"), b"");
        assert!(run["drives"].as_u64() >= Some(2), "{run}");
    }
}

#[test]
fn a_scheduled_workflow_with_a_queue_waits_its_turn_there() {
    let env = Env::new();
    let family = crate::util::guest("family");
    let toml = format!(
        "[workflows.ticking]\ncomponent = {:?}\nschedule = \"* * * * * *\"\n\
         input = {{ mode = \"slow\" }}\nqueue = \"one\"\n\n[queues.one]\nconcurrency = 1\n",
        family.display().to_string()
    );
    let path = env.dir.path().join("durable.toml");
    std::fs::write(&path, toml).expect("write the config");
    let server = Server::start(&env, &["--config", path.to_str().expect("utf-8")]);
    // Every tick is a run of the queue; one runs (it waits for ever), the
    // others are queued behind it.
    wait_until("three ticks", Duration::from_secs(30), || {
        let (_, listed) = server.call("GET", "/v1/runs?workflow=ticking&counts=true", b"");
        listed["counts"]["queued"].as_u64().is_some_and(|n| n >= 2)
    });
    let (_, listed) = server.call("GET", "/v1/runs?workflow=ticking&limit=1000", b"");
    let runs = listed["runs"].as_array().expect("runs");
    assert!(runs.iter().all(|r| r["queue"] == "one"), "{listed}");
    let open = runs
        .iter()
        .filter(|r| r["status"] == "running" || r["status"] == "waiting")
        .count();
    assert_eq!(open, 1, "{listed}");
}

/// 100 runs whose one step is limited to 3 at once (`--step-limit`): from
/// the step records, never 4 at once, and 3 at some point; on `hosts`
/// servers of one database, runs started through each in turn.
fn step_limit_holds(env: &Env, hosts: usize, runs: usize) {
    let servers: Vec<Server> = (0..hosts)
        .map(|_| Server::start(env, &["--step-limit", "nap=3", "--lease-ms", "3000"]))
        .collect();
    for s in &servers {
        register(s);
    }
    let ids: Vec<String> = (0..runs).map(|i| format!("l{i}")).collect();
    for (i, id) in ids.iter().enumerate() {
        let (status, body) = servers[i % hosts].json(
            "POST",
            "/v1/runs",
            &json!({"workflow": "family", "id": id, "input": nap(60, json!({}))}),
        );
        assert_eq!(status, 201, "{body}");
    }
    let spans: Vec<_> = ids
        .iter()
        .map(|id| {
            servers[0].result(id);
            span(&servers[0], id)
        })
        .collect();
    assert_eq!(most_at_once(&spans), 3, "{spans:?}");
}

#[test]
fn a_step_limit_of_three_never_runs_four_attempts_at_once() {
    step_limit_holds(&Env::new(), 1, 100);
}

#[test]
fn postgres_a_step_limit_holds_across_two_hosts() {
    step_limit_holds(&Env::postgres(), 2, 100);
}
