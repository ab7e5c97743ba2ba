//! `durable serve`: a real server process on an ephemeral loopback port,
//! talked to over a real socket; killed and restarted for real.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::server::Server;
use crate::util::{Env, executed_in, guest};

const HIRE: &str = r#"{"name":"Ada Lovelace","email":"ada@example.com"}"#;

#[test]
fn serve_starts_runs_over_http_idempotently_and_answers_their_results() {
    let env = Env::new();
    let expected = env
        .run(&[
            "run",
            &guest("onboarding").display().to_string(),
            "--input",
            HIRE,
        ])
        .success();
    let server = Server::start(&env, &[]);
    let digest = server.upload("onboarding");
    let hire: Value = serde_json::from_str(HIRE).expect("JSON");
    let start = json!({"component": digest, "input": hire, "id": "h1"});
    let (status, body) = server.json("POST", "/v1/runs", &start);
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["id"], "h1");
    let done = server.result("h1");
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(done["output"], expected);
    // The same id and input: the run as it is; another input: a conflict.
    let (status, again) = server.json("POST", "/v1/runs", &start);
    assert_eq!((status, &again["status"]), (200, &json!("succeeded")));
    let other = json!({"component": digest, "input": {"name": "Bob", "email": "b@x"}, "id": "h1"});
    let (status, body) = server.json("POST", "/v1/runs", &other);
    assert_eq!((status, &body["error"]["code"]), (409, &json!("conflict")));
    // `show --json`'s shape, and the list.
    let (status, shown) = server.call("GET", "/v1/runs/h1", b"");
    assert_eq!(status, 200);
    let keys: Vec<&str> = shown["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .filter_map(|s| s["key"].as_str())
        .collect();
    assert_eq!(
        keys,
        ["create_record#1", "provision_laptop#1", "grant_access#1"]
    );
    let (status, list) = server.call("GET", "/v1/runs?status=succeeded", b"");
    assert_eq!(status, 200);
    assert!(
        list["runs"].as_array().is_some_and(|r| r.len() == 2),
        "{list}"
    );
}

#[test]
fn serve_wakes_waiting_runs_for_events_from_http_and_from_another_process() {
    let env = Env::new();
    let server = Server::start(&env, &[]);
    let digest = server.upload("approval");
    let input = |report: &str| json!({"report": report, "amount": 120, "approval_timeout_ms": 60_000, "pay_delay_ms": 200});
    for id in ["by-http", "by-cli"] {
        let (status, body) = server.json(
            "POST",
            "/v1/runs",
            &json!({"component": digest, "input": input(id), "id": id}),
        );
        assert_eq!(status, 201, "{body}");
    }
    // Both park on the event; nothing holds them.
    let deadline = Instant::now() + Duration::from_secs(30);
    for id in ["by-http", "by-cli"] {
        loop {
            let (_, run) = server.call("GET", &format!("/v1/runs/{id}/result"), b"");
            if run["status"] == "waiting" {
                break;
            }
            assert!(Instant::now() < deadline, "{id} never waited: {run}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let (status, body) = server.json(
        "POST",
        "/v1/runs/by-http/events/approval",
        &json!({"data": {"approved": true, "by": "grace"}}),
    );
    assert_eq!(status, 201, "{body}");
    let sent = env.run(&[
        "event",
        "by-cli",
        "approval",
        "--data",
        r#"{"approved":true,"by":"cli"}"#,
    ]);
    sent.expect_code(Some(0));
    for (id, by) in [("by-http", "grace"), ("by-cli", "cli")] {
        let done = server.result(id);
        assert_eq!(done["status"], "succeeded", "{done}");
        assert_eq!(done["output"]["by"], by);
        assert_eq!(done["output"]["status"], "paid");
    }
    // Cancel over HTTP: a waiting run ends at once.
    let (status, _) = server.json(
        "POST",
        "/v1/runs",
        &json!({"component": digest, "input": input("c"), "id": "c"}),
    );
    assert_eq!(status, 201);
    let (status, body) = server.call("POST", "/v1/runs/c/cancel", b"");
    assert_eq!(status, 200, "{body}");
    assert_eq!(server.result("c")["status"], "cancelled");
}

#[test]
fn a_killed_server_is_restarted_and_finishes_its_runs_without_running_committed_steps_again() {
    let env = Env::new();
    let mut first = Server::start(&env, &[]);
    let digest = first.upload("testbed");
    // Ten steps of 100 ms each, and a durable sleep after every third.
    let input = json!({"mode": "long", "n": 10, "delay_ms": 100, "sleep_every": 3});
    let (status, body) = first.json(
        "POST",
        "/v1/runs",
        &json!({"component": digest, "input": input, "id": "long"}),
    );
    assert_eq!(status, 201, "{body}");
    std::thread::sleep(Duration::from_millis(600));
    first.kill();
    let before = executed_in(&first.stderr());
    assert!(!before.is_empty(), "nothing ran before the kill");
    let committed = env.committed("long");

    let second = Server::start(&env, &[]);
    let done = second.result("long");
    assert_eq!(done["status"], "succeeded", "{done}");
    let after = executed_in(&second.stderr());
    for key in &committed {
        assert!(
            !after.contains(key),
            "{key} was committed before the kill and ran again"
        );
    }
    let results = done["output"]["results"].as_array().expect("results");
    // Ten iterations; the fifth and tenth are batches of three.
    assert_eq!(results.len(), 14, "{done}");
}

#[test]
fn serve_answers_errors_in_one_shape_and_checks_its_token() {
    let env = Env::new();
    // Beyond loopback without a token: refused at start.
    let open = env.run(&["serve", "--listen", "0.0.0.0:0"]);
    open.expect_code(Some(2));
    assert!(
        open.stderr().contains("without a token"),
        "{}",
        open.stderr()
    );

    let server = Server::start(&env, &["--token", "s3cret", "--max-body-mb", "1"]);
    let error = |(status, body): (u16, Value)| (status, body["error"]["code"].clone());
    assert_eq!(
        error(server.call("GET", "/v1/runs/nope", b"")),
        (404, json!("not_found"))
    );
    assert_eq!(
        error(server.call("POST", "/v1/runs", b"{nope")),
        (400, json!("bad_request"))
    );
    assert_eq!(
        error(server.call("POST", "/v1/components", b"not wasm")),
        (422, json!("invalid"))
    );
    assert_eq!(
        error(server.call("POST", "/v1/components", &vec![0u8; 2 << 20])),
        (413, json!("too_large"))
    );
    let unknown = json!({"component": "0".repeat(64), "input": null});
    assert_eq!(
        error(server.json("POST", "/v1/runs", &unknown)),
        (404, json!("not_found"))
    );
    // Without the token.
    let anonymous = server.without_token();
    assert_eq!(
        error(anonymous.call("GET", "/v1/runs", b"")),
        (401, json!("unauthorized"))
    );
    let start = json!({"component": "0".repeat(64), "input": null, "id": "nope"});
    assert_eq!(
        error(anonymous.json("POST", "/v1/runs", &start)),
        (401, json!("unauthorized"))
    );
    assert_eq!(env.query("SELECT count(*) FROM runs"), [["0"]]);
    assert_eq!(
        error(anonymous.call("GET", "/metrics", b"")),
        (401, json!("unauthorized"))
    );
    assert_eq!(anonymous.call("GET", "/v1/health", b"").0, 200);
    // Anything else malformed gets the same shape too.
    assert_eq!(
        error(server.call("DELETE", "/v1/runs", b"")),
        (405, json!("method_not_allowed"))
    );
    assert_eq!(
        error(server.call("GET", "/v1/runs?limit=many", b"")),
        (400, json!("bad_request"))
    );
    assert_eq!(
        error(server.call("GET", "/v2/nothing", b"")),
        (404, json!("not_found"))
    );
    // The API describes itself.
    let (status, doc) = anonymous.call("GET", "/v1/openapi.json", b"");
    assert_eq!(status, 200);
    assert!(doc["paths"]["/v1/runs"].is_object(), "{doc}");
}

#[test]
fn metrics_count_runs_steps_commits_and_requests() {
    let env = Env::new();
    let server = Server::start(&env, &[]);
    let digest = server.upload("testbed");
    let (status, _) = server.json(
        "POST",
        "/v1/runs",
        &json!({"component": digest, "input": {"mode": "repeat"}, "id": "m"}),
    );
    assert_eq!(status, 201);
    assert_eq!(server.result("m")["status"], "succeeded");
    let mut s = TcpStream::connect(("127.0.0.1", server.port)).expect("connect");
    s.write_all(b"GET /metrics HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n")
        .expect("send");
    let mut text = String::new();
    s.read_to_string(&mut text).expect("read");
    for line in [
        "durable_runs{status=\"succeeded\"} 1",
        "durable_steps_total{source=\"executed\"} 3",
        "durable_waiting_runs 0",
        "durable_commit_seconds_bucket{le=\"+Inf\"}",
        "durable_commit_batch_size_count",
        "durable_wakeup_lag_seconds_count",
        "durable_http_requests_total{route=\"/v1/runs\",status=\"201\"} 1",
    ] {
        assert!(text.contains(line), "no {line:?} in:\n{text}");
    }
}

#[test]
fn sigterm_lets_the_running_step_finish_and_be_recorded_then_exits_0() {
    let env = Env::new();
    let mut server = Server::start(&env, &[]);
    let digest = server.upload("testbed");
    let input = json!({"mode": "long", "n": 3, "delay_ms": 700});
    let (status, _) = server.json(
        "POST",
        "/v1/runs",
        &json!({"component": digest, "input": input, "id": "t"}),
    );
    assert_eq!(status, 201);
    // Once the first step runs, stop the server.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !server.stderr().contains("EXEC t/work#1") {
        assert!(Instant::now() < deadline, "the step never started");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(server.terminate(), Some(0));
    assert!(
        env.committed("t").contains("work#1"),
        "the step in flight was not recorded"
    );
    // The run is left to the next start, which finishes it.
    let next = Server::start(&env, &[]);
    assert_eq!(next.result("t")["status"], "succeeded");
}

/// Writes `durable.toml` into the test's directory.
fn config(env: &Env, text: &str) -> String {
    let path = env.dir.path().join("durable.toml");
    std::fs::write(&path, text).expect("write the config");
    path.display().to_string()
}

#[test]
fn registered_workflows_get_their_own_grants_and_api_callers_get_none() {
    let env = Env::new();
    let stub = crate::stub::Stub::http(|seen, _| {
        crate::stub::Reply::json(200, &json!({"key": seen.header("idempotency-key")}))
    });
    let toml = format!(
        "[workflows.fetcher]\ncomponent = \"{}\"\nallow_http = [\"{}\"]\n",
        guest("testbed").display(),
        stub.origin()
    );
    let server = Server::start(&env, &["--config", &config(&env, &toml)]);
    let (status, list) = server.call("GET", "/v1/workflows", b"");
    assert_eq!(status, 200);
    assert_eq!(list["workflows"][0]["name"], "fetcher", "{list}");
    let input =
        json!({"mode": "fetch", "value": {"url": format!("{}/x", stub.origin()), "body": 1}});
    // By name: the workflow's grant applies.
    let (status, body) = server.json(
        "POST",
        "/v1/runs",
        &json!({"workflow": "fetcher", "input": input, "id": "named"}),
    );
    assert_eq!(status, 201, "{body}");
    let done = server.result("named");
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(done["workflow"], "fetcher");
    // The same program uploaded by a caller, under another build: no grant.
    let mut bytes = std::fs::read(guest("testbed")).expect("guest");
    // A custom section at the end changes the digest, not the program.
    bytes.extend_from_slice(&[0, 6, 5, b'o', b't', b'h', b'e', b'r']);
    let (status, up) = server.call("POST", "/v1/components?name=fetcher", &bytes);
    assert_eq!(status, 201, "{up}");
    let digest = up["digest"].as_str().expect("digest");
    let (status, _) = server.json(
        "POST",
        "/v1/runs",
        &json!({"component": digest, "input": input, "id": "uploaded"}),
    );
    assert_eq!(status, 201);
    let refused = server.result("uploaded");
    assert_eq!(refused["status"], "failed", "{refused}");
    assert!(
        refused["error"]
            .as_str()
            .is_some_and(|e| e.contains("--allow-http")),
        "{refused}"
    );
    // Names from durable.toml cannot be re-pointed over the API.
    let (status, _) = server.json(
        "POST",
        "/v1/workflows",
        &json!({"name": "fetcher", "component": digest}),
    );
    assert_eq!(status, 409);
    let (status, _) = server.json(
        "POST",
        "/v1/workflows",
        &json!({"name": "mine", "component": digest}),
    );
    assert_eq!(status, 201);
    assert_eq!(
        stub.seen().len(),
        1,
        "only the registered workflow reached the service"
    );
}

#[test]
fn a_schedule_starts_exactly_one_run_per_tick_across_a_sigkill_and_restart() {
    let env = Env::new();
    let toml = format!(
        "[workflows.tick]\ncomponent = \"{}\"\nschedule = \"*/2 * * * * *\"\ninput = {{ mode = \"repeat\" }}\n",
        guest("testbed").display()
    );
    let path = config(&env, &toml);
    let mut first = Server::start(&env, &["--config", &path]);
    std::thread::sleep(Duration::from_millis(4500));
    first.kill();
    // Down for a tick or two: the restart starts what was missed.
    std::thread::sleep(Duration::from_millis(3000));
    let second = Server::start(&env, &["--config", &path]);
    std::thread::sleep(Duration::from_millis(4500));
    let (_, page) = second.call("GET", "/v1/runs?workflow=tick&limit=1000", b"");
    let mut ids: Vec<String> = page["runs"]
        .as_array()
        .expect("runs")
        .iter()
        .filter_map(|r| r["id"].as_str().map(str::to_string))
        .collect();
    ids.sort();
    let ticks: Vec<i64> = ids
        .iter()
        .map(|id| {
            let t = chrono::NaiveDateTime::parse_from_str(
                id.strip_prefix("tick@").expect("a tick id"),
                "%Y%m%dT%H%M%SZ",
            )
            .expect("a tick time");
            t.and_utc().timestamp()
        })
        .collect();
    assert!(ticks.len() >= 5, "{ids:?}");
    for pair in ticks.windows(2) {
        assert_eq!(
            pair[1] - pair[0],
            2,
            "a tick was missed or doubled: {ids:?}"
        );
    }
    // Every tick's run ends (the last one may still be running).
    for id in &ids[..ids.len() - 1] {
        assert_eq!(second.result(id)["status"], "succeeded", "{id}");
    }
}

#[test]
fn fork_and_paging_over_http() {
    let env = Env::new();
    let server = Server::start(&env, &[]);
    let digest = server.upload("testbed");
    for i in 0..5 {
        let (status, _) = server.json(
            "POST",
            "/v1/runs",
            &json!({"component": digest, "input": {"mode": "repeat"}, "id": format!("p{i}")}),
        );
        assert_eq!(status, 201);
        assert_eq!(server.result(&format!("p{i}"))["status"], "succeeded");
    }
    // Pages of two, newest first, until `next` is null.
    let mut seen = Vec::new();
    let mut after = String::new();
    loop {
        let (status, page) = server.call("GET", &format!("/v1/runs?limit=2{after}"), b"");
        assert_eq!(status, 200, "{page}");
        for r in page["runs"].as_array().expect("runs") {
            seen.push(r["id"].as_str().expect("id").to_string());
        }
        match page["next"].as_str() {
            Some(next) => after = format!("&after={next}"),
            None => break,
        }
    }
    assert_eq!(seen, ["p4", "p3", "p2", "p1", "p0"]);
    // Fork p0 before its second step: a new run that runs it again.
    let (status, forked) = server.json(
        "POST",
        "/v1/runs/p0/fork",
        &json!({"from_step": "echo#2", "id": "p0-again"}),
    );
    assert_eq!(status, 201, "{forked}");
    let done = server.result("p0-again");
    assert_eq!(done["status"], "succeeded", "{done}");
    let (_, original) = server.call("GET", "/v1/runs/p0/result", b"");
    assert_eq!(done["output"], original["output"]);
    let (status, body) = server.json("POST", "/v1/runs/p0/fork", &json!({"from_step": "nope#1"}));
    assert_eq!((status, &body["error"]["code"]), (404, &json!("not_found")));

    // An id prefix, with counts per status under the same filter.
    let (status, page) = server.call("GET", "/v1/runs?prefix=p0&counts=true&status=", b"");
    assert_eq!(status, 200, "{page}");
    let ids: Vec<&str> = page["runs"]
        .as_array()
        .expect("runs")
        .iter()
        .filter_map(|r| r["id"].as_str())
        .collect();
    assert_eq!(ids, ["p0-again", "p0"]);
    assert_eq!(
        page["counts"],
        json!({"queued": 0, "running": 0, "waiting": 0, "succeeded": 2, "failed": 0, "cancelled": 0})
    );
    let (_, all) = server.call("GET", "/v1/runs?counts=true&limit=1", b"");
    assert_eq!(all["counts"]["succeeded"], 6, "{all}");
    assert_eq!(all["runs"].as_array().map(Vec::len), Some(1));

    // What each step was called with, its idempotency key, and when each
    // drive began.
    let (_, shown) = server.call("GET", "/v1/runs/p0", b"");
    let steps = shown["steps"].as_array().expect("steps");
    assert_eq!(steps[1]["input"], "second", "{shown}");
    assert_eq!(steps[1]["idempotency_key"], "p0/echo#2");
    let starts = shown["drive_starts"].as_array().expect("drive_starts");
    assert_eq!(starts.len(), 1, "{shown}");
    assert_eq!(starts[0]["drive"], 1);
    assert_eq!(starts[0]["started_at_ms"], shown["created_at_ms"]);
    let (_, shown) = server.call("GET", "/v1/runs/p0-again", b"");
    assert_eq!(shown["steps"][0]["input"], "first", "{shown}");
    assert_eq!(shown["steps"][0]["drive"], 0, "copied by the fork: {shown}");
    assert_eq!(shown["steps"][1]["idempotency_key"], "p0-again/echo#2");
    let starts = shown["drive_starts"].as_array().expect("drive_starts");
    assert_eq!(starts.len(), 1, "{shown}");
    assert!(starts[0]["started_at_ms"].as_i64() >= shown["created_at_ms"].as_i64());
}

#[test]
fn two_hundred_runs_started_over_http_survive_a_sigkill_of_the_server() {
    let env = Env::new();
    let exec = env.dir.path().join("exec");
    std::fs::create_dir(&exec).expect("exec dir");
    let grant = format!("{}::/exec", exec.display());
    // Ten iterations of 100 ms steps (two batches of three, one step with
    // nested steps): a few seconds for 200 runs sharing 64 step slots.
    let input = json!({"mode": "long", "n": 10, "delay_ms": 100});
    let expected = env
        .run(&[
            "run",
            &guest("testbed").display().to_string(),
            "--input",
            &input.to_string(),
            "--id",
            "reference",
        ])
        .success();
    let mut first = Server::start(&env, &["--allow-dir", &grant]);
    let digest = first.upload("testbed");
    // 200 starts from 8 client threads at once.
    std::thread::scope(|s| {
        for t in 0..8 {
            let (first, digest, input) = (&first, &digest, &input);
            s.spawn(move || {
                for i in 0..25 {
                    let id = format!("r{}", t * 25 + i);
                    let (status, body) = first.json(
                        "POST",
                        "/v1/runs",
                        &json!({"component": digest, "input": input, "id": id}),
                    );
                    assert_eq!(status, 201, "{body}");
                }
            });
        }
    });
    std::thread::sleep(Duration::from_millis(300));
    first.kill();
    let committed = env.query(
        "SELECT run_id || '/' || key FROM steps WHERE run_id GLOB 'r[0-9]*' AND name NOT LIKE '$%'",
    );
    let unfinished = env.query("SELECT count(*) FROM runs WHERE status = 'running'");
    assert_ne!(unfinished, [["0"]], "every run had ended before the kill");

    let second = Server::start(&env, &["--allow-dir", &grant]);
    for i in 0..200 {
        let done = second.result(&format!("r{i}"));
        assert_eq!(done["status"], "succeeded", "{done}");
        assert_eq!(done["output"], expected, "r{i}");
    }
    let log = std::fs::read_to_string(exec.join("log")).expect("the execution log");
    let mut runs = std::collections::HashMap::<&str, usize>::new();
    for line in log.lines() {
        if let Some(key) = line.strip_prefix("EXEC ") {
            *runs.entry(key).or_default() += 1;
        }
    }
    assert!(
        !committed.is_empty(),
        "nothing was committed before the kill"
    );
    for row in &committed {
        let key = row[0].as_str();
        assert_eq!(
            runs.get(key).copied(),
            Some(1),
            "{key} was committed before the kill and ran again"
        );
    }
}

#[test]
fn a_run_sleeping_when_the_server_is_killed_wakes_at_its_time_on_the_next_server() {
    let env = Env::new();
    let mut first = Server::start(&env, &[]);
    let digest = first.upload("testbed");
    // work#1, a 2 s durable sleep, work#2 (and a last sleep).
    let input = json!({"mode": "long", "n": 2, "delay_ms": 2000, "sleep_every": 1});
    let (status, _) = first.json(
        "POST",
        "/v1/runs",
        &json!({"component": digest, "input": input, "id": "s"}),
    );
    assert_eq!(status, 201);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, run) = first.call("GET", "/v1/runs/s/result", b"");
        if run["status"] == "waiting" {
            break;
        }
        assert!(Instant::now() < deadline, "never slept: {run}");
        std::thread::sleep(Duration::from_millis(20));
    }
    let wake_at: i64 = env.query("SELECT wake_at_ms FROM runs WHERE id = 's'")[0][0]
        .parse()
        .expect("a wake-up time");
    first.kill();
    let second = Server::start(&env, &[]);
    let done = second.result("s");
    assert_eq!(done["status"], "succeeded", "{done}");
    let (_, shown) = second.call("GET", "/v1/runs/s", b"");
    let work2 = shown["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .find(|s| s["key"] == "work#2")
        .expect("work#2 ran");
    let started = work2["started_at_ms"].as_i64().expect("a start");
    assert!(
        started >= wake_at,
        "work#2 started at {started}, before the wake-up at {wake_at}"
    );
    assert!(
        !executed_in(&second.stderr()).contains(&"work#1".to_string()),
        "work#1 ran again"
    );
}

#[test]
fn a_run_that_fails_at_every_drive_is_tried_again_with_backoff_not_every_poll() {
    let env = Env::new();
    let wasm = guest("testbed").display().to_string();
    env.crash_after(&wasm, r#"{"mode":"seq3"}"#, "stuck", "step_a#1");
    // A memory limit the component cannot be loaded under: every drive of
    // the run fails, and the run stays open for a person to look at.
    let server = Server::start_with(
        &env,
        &["--max-memory-mb", "1"],
        &[("RUST_LOG", "durable_server=warn")],
    );
    // The first try fails once the component's load does (seconds on a
    // loaded machine); then the tries are counted for 5 s.
    let tries = || server.stderr().matches("drive failed run=stuck").count();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while tries() == 0 {
        assert!(std::time::Instant::now() < deadline, "no drive was tried");
        std::thread::sleep(Duration::from_millis(50));
    }
    let first = tries();
    std::thread::sleep(Duration::from_millis(5000));
    let tried = tries() - first;
    // Without backoff: one try per poll after each failed load (about
    // eight in 5 s here); with it: after 1+ and 3+ s.
    assert!(
        tried <= 3,
        "{tried} more tries in 5 s:\n{}",
        server.stderr()
    );
    let (_, run) = server.call("GET", "/v1/runs/stuck/result", b"");
    assert_eq!(run["status"], "running", "{run}");
}

#[test]
fn the_cli_keeps_working_on_the_servers_database_and_the_server_sees_its_writes() {
    let env = Env::new();
    let server = Server::start(&env, &[]);
    // `durable run` in another process: driven there, not taken over.
    let testbed = guest("testbed").display().to_string();
    let run = env.run(&[
        "run",
        &testbed,
        "--input",
        r#"{"mode":"seq3"}"#,
        "--id",
        "cli",
    ]);
    assert_eq!(run.success(), json!([{"a": 1}, {"b": 2}, {"c": 3}]));
    assert_eq!(
        env.query("SELECT drives FROM runs WHERE id = 'cli'"),
        [["1"]]
    );
    // A run the server parked, cancelled by `durable cancel`.
    let digest = server.upload("approval");
    let input =
        json!({"report": "R", "amount": 1, "approval_timeout_ms": 60_000, "pay_delay_ms": 1});
    let (status, _) = server.json(
        "POST",
        "/v1/runs",
        &json!({"component": digest, "input": input, "id": "w"}),
    );
    assert_eq!(status, 201);
    let deadline = Instant::now() + Duration::from_secs(30);
    while server.call("GET", "/v1/runs/w/result", b"").1["status"] != "waiting" {
        assert!(Instant::now() < deadline, "never waited");
        std::thread::sleep(Duration::from_millis(20));
    }
    env.run(&["cancel", "w"]).expect_code(Some(0));
    assert_eq!(server.result("w")["status"], "cancelled");
    // A run left behind by a killed `durable run` is finished by the server.
    env.crash_after(&testbed, r#"{"mode":"seq3"}"#, "left", "step_a#1");
    let done = server.result("left");
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(done["output"], json!([{"a": 1}, {"b": 2}, {"c": 3}]));
}

/// Runs driven at once are bounded (2 x `--max-parallel`): a burst of
/// starts is answered at once, the rest of the runs wait their turn
/// holding nothing, and at no time do more than two runs have their steps
/// under way with `--max-parallel 1` (from the recorded step times).
#[test]
fn a_burst_of_starts_is_answered_and_driven_a_bounded_number_at_a_time() {
    let env = Env::new();
    let server = Server::start(&env, &["--max-parallel", "1"]);
    let digest = server.upload("testbed");
    let ids: Vec<String> = (0..12).map(|i| format!("b{i}")).collect();
    std::thread::scope(|s| {
        for id in &ids {
            let (server, digest) = (&server, &digest);
            s.spawn(move || {
                let start = json!({"component": digest, "id": id,
                                   "input": {"mode": "long", "n": 4, "delay_ms": 20}});
                let (status, body) = server.json("POST", "/v1/runs", &start);
                assert_eq!(status, 201, "{body}");
            });
        }
    });
    // Each run's span: its first step's start to its last step's end.
    let mut edges = Vec::new();
    for id in &ids {
        assert_eq!(server.result(id)["status"], "succeeded", "{id}");
        let (_, shown) = server.call("GET", &format!("/v1/runs/{id}"), b"");
        let steps = shown["steps"].as_array().expect("steps");
        assert_eq!(steps.len(), 4, "{shown}");
        let at = |field: &'static str| -> Vec<i64> {
            steps.iter().filter_map(|s| s[field].as_i64()).collect()
        };
        let first = at("started_at_ms").into_iter().min().expect("a start");
        let last = at("finished_at_ms").into_iter().max().expect("an end");
        // Ends sort before starts at the same ms: touching spans do not
        // overlap.
        edges.push((first, 1i32));
        edges.push((last, -1i32));
    }
    edges.sort_by_key(|&(t, d)| (t, d));
    let (mut now, mut most) = (0, 0);
    for (_, d) in edges {
        now += d;
        most = most.max(now);
    }
    assert!(most <= 2, "{most} runs had steps under way at once");
}
