//! `durable serve` against what an attacker's page, a careless client and
//! a busy operator do: foreign `Host`, `Origin` and body types, tokens from
//! files, ids and names that cannot be reached, absurd queries and limits,
//! concurrent identical starts, components kept with their names and
//! deleted, events resent with another payload, bounded long polls. Each
//! talks to a real server process over a real socket.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::server::Server;
use crate::util::{Env, guest};

fn runs(server: &Server) -> usize {
    let (status, body) = server.call("GET", "/v1/runs", b"");
    assert_eq!(status, 200, "{body}");
    body["runs"].as_array().map_or(0, Vec::len)
}

fn code(body: &str) -> String {
    serde_json::from_str::<Value>(body).unwrap_or(Value::Null)["error"]["code"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[test]
fn pages_of_other_sites_cannot_drive_the_server_nor_read_it_by_rebinding() {
    let env = Env::new();
    let server = Server::start(&env, &["--allow-host", "durable.internal"]);
    let digest = server.upload("testbed");
    let port = server.port;
    let start = json!({"component": digest, "input": {"mode": "repeat"}, "id": "mine"});
    let body = start.to_string();
    let body = body.as_bytes();

    // DNS rebinding: the attacker's name, pointed at 127.0.0.1.
    for path in ["/v1/runs", "/", "/v1/health", "/metrics"] {
        let (status, _, answer) = server.raw(
            "GET",
            path,
            &[&format!("host: rebind.attacker.example:{port}")],
            b"",
        );
        assert_eq!(status, 403, "{path}: {answer}");
        assert_eq!(code(&answer), "forbidden_host");
    }
    let (status, _, _) = server.raw(
        "GET",
        "/v1/runs",
        &[&format!("host: 127.0.0.1.nip.io:{port}")],
        b"",
    );
    assert_eq!(status, 403);
    // Two Host headers, or a request line that names another host.
    let (status, _, _) = server.raw(
        "GET",
        "/v1/runs",
        &[&format!("host: 127.0.0.1:{port}"), "host: evil.example"],
        b"",
    );
    assert_eq!(status, 403);
    let (status, _, _) = server.raw(
        "GET",
        "http://evil.example/v1/runs",
        &[&format!("host: 127.0.0.1:{port}")],
        b"",
    );
    assert_eq!(status, 403);
    // The server's own names, and the operator's.
    for host in [
        format!("127.0.0.1:{port}"),
        format!("localhost:{port}"),
        "durable.internal".to_string(),
        "DURABLE.internal:443".to_string(),
    ] {
        let (status, _, answer) = server.raw("GET", "/v1/runs", &[&format!("host: {host}")], b"");
        assert_eq!(status, 200, "{host}: {answer}");
    }

    // Cross-site writes: a foreign Origin, a body a form or a no-cors
    // fetch can send, no type at all, a site marked cross-site.
    let attempts: Vec<(Vec<String>, u16, &str)> = vec![
        (
            vec![
                "origin: http://evil.example".into(),
                "content-type: application/json".into(),
            ],
            403,
            "cross_origin",
        ),
        (
            vec![
                format!("origin: http://127.0.0.1:{}", port + 1),
                "content-type: application/json".into(),
            ],
            403,
            "cross_origin",
        ),
        (
            vec![
                "origin: null".into(),
                "content-type: application/json".into(),
            ],
            403,
            "cross_origin",
        ),
        (
            vec!["content-type: text/plain".into()],
            415,
            "unsupported_media_type",
        ),
        (
            vec!["content-type: application/x-www-form-urlencoded".into()],
            415,
            "unsupported_media_type",
        ),
        (vec![], 415, "unsupported_media_type"),
        (
            vec![
                "sec-fetch-site: cross-site".into(),
                "content-type: application/json".into(),
            ],
            403,
            "cross_origin",
        ),
        (
            vec![
                "sec-fetch-site: same-site".into(),
                "content-type: application/json".into(),
            ],
            403,
            "cross_origin",
        ),
        // A second header does not hide a cross-site one.
        (
            vec![
                "sec-fetch-site: none".into(),
                "sec-fetch-site: cross-site".into(),
                "content-type: application/json".into(),
            ],
            403,
            "cross_origin",
        ),
    ];
    for (headers, want, want_code) in &attempts {
        let headers: Vec<&str> = headers.iter().map(String::as_str).collect();
        let (status, _, answer) = server.raw("POST", "/v1/runs", &headers, body);
        assert_eq!(status, *want, "{headers:?}: {answer}");
        assert_eq!(code(&answer), *want_code, "{headers:?}");
    }
    assert_eq!(runs(&server), 0, "a refused request started a run");
    // Uploads must say they are wasm.
    let wasm = std::fs::read(guest("onboarding")).expect("guest");
    let (status, _, answer) = server.raw(
        "POST",
        "/v1/components?name=onboarding",
        &["content-type: text/plain"],
        &wasm,
    );
    assert_eq!(status, 415, "{answer}");
    let (status, _, answer) = server.raw(
        "POST",
        "/v1/components?name=onboarding",
        &["content-type: application/octet-stream"],
        &wasm,
    );
    assert_eq!(status, 201, "{answer}");
    // A preflight is refused: no page may send what needs one.
    let (status, head, _) = server.raw(
        "OPTIONS",
        "/v1/runs",
        &[
            "origin: http://evil.example",
            "access-control-request-method: POST",
        ],
        b"",
    );
    assert_ne!(status / 100, 2, "{head}");
    assert!(
        !head.to_ascii_lowercase().contains("access-control-allow"),
        "{head}"
    );

    // The server's own page (same origin) may.
    let (status, _, answer) = server.raw(
        "POST",
        "/v1/runs",
        &[
            &format!("origin: http://127.0.0.1:{port}"),
            "sec-fetch-site: same-origin",
            "content-type: application/json; charset=utf-8",
        ],
        body,
    );
    assert_eq!(status, 201, "{answer}");
    assert_eq!(server.result("mine")["status"], "succeeded");
    // Behind a proxy: its name, and the origin of its https pages.
    let (status, _, answer) = server.raw(
        "GET",
        "/v1/runs",
        &[
            "host: durable.internal:443",
            "origin: https://durable.internal",
        ],
        b"",
    );
    assert_eq!(status, 200, "{answer}");
    // A cancel from another origin is refused too; one without a body and
    // type from a plain client is fine.
    let waiting = json!({"component": digest, "input": {"mode": "events", "n": 1, "delay_ms": 60000}, "id": "w"});
    assert_eq!(server.json("POST", "/v1/runs", &waiting).0, 201);
    let (status, _, _) = server.raw(
        "POST",
        "/v1/runs/w/cancel",
        &["origin: http://evil.example"],
        b"",
    );
    assert_eq!(status, 403);
    let (status, _, _) = server.raw(
        "POST",
        "/v1/runs/w/events/ping",
        &["content-type: text/plain"],
        br#"{"data": 1}"#,
    );
    assert_eq!(status, 415);
    let (_, run) = server.call("GET", "/v1/runs/w", b"");
    assert_eq!(run["cancel_requested"], false, "{run}");
    assert_eq!(run["events"], json!([]), "{run}");
    let (status, _, _) = server.raw("POST", "/v1/runs/w/cancel", &[], b"");
    assert_eq!(status, 200);
}

#[test]
fn a_token_comes_from_a_file_without_its_whitespace_and_is_never_on_the_command_line() {
    let env = Env::new();
    let file = env.dir.path().join("token");
    std::fs::write(&file, "  s3cret-token\n").expect("write");
    let path = file.to_str().expect("utf-8");
    let server = Server::start(&env, &["--token-file", path]);
    let anonymous = server.without_token();
    let (status, _) = anonymous.call("GET", "/v1/runs", b"");
    assert_eq!(status, 401);
    for (header, want) in [
        ("authorization: Bearer s3cret-token", 200),
        ("authorization: bearer   s3cret-token  ", 200),
        ("authorization: Bearer s3cret-toke", 401),
        ("authorization: Bearer s3cret-token-", 401),
        ("authorization: Basic s3cret-token", 401),
    ] {
        let (status, _, _) = anonymous.raw("GET", "/v1/runs", &[header], b"");
        assert_eq!(status, want, "{header}");
    }
    // Two credentials are none: neither is taken.
    let (status, _, _) = anonymous.raw(
        "GET",
        "/v1/runs",
        &[
            "authorization: Bearer s3cret-token",
            "authorization: Bearer wrong",
        ],
        b"",
    );
    assert_eq!(status, 401);
    let cmdline = std::fs::read(format!("/proc/{}/cmdline", server.pid())).expect("cmdline");
    assert!(
        !String::from_utf8_lossy(&cmdline).contains("s3cret"),
        "the token is visible in ps"
    );
    assert!(!server.stderr().contains("s3cret"));
    // A token given with spaces around it is the token without them.
    let spaced = Server::start(&env, &["--token", "  t0ken "]);
    let (status, _, _) =
        spaced
            .without_token()
            .raw("GET", "/v1/runs", &["authorization: Bearer t0ken"], b"");
    assert_eq!(status, 200);
    // Both, an empty file, a missing one, a token no header can carry.
    std::fs::write(env.dir.path().join("empty"), "\n").expect("write");
    std::fs::write(env.dir.path().join("spaced"), "two words").expect("write");
    for args in [
        vec!["--token", ""],
        vec!["--token", "   "],
        vec!["--allow-host", "*"],
        // A port would never match: names are answered on any port.
        vec!["--allow-host", "durable.example:8080"],
        vec!["--token", "a", "--token-file", path],
        vec![
            "--token-file",
            env.dir.path().join("empty").to_str().expect("utf-8"),
        ],
        vec![
            "--token-file",
            env.dir.path().join("missing").to_str().expect("utf-8"),
        ],
        vec![
            "--token-file",
            env.dir.path().join("spaced").to_str().expect("utf-8"),
        ],
    ] {
        let mut all = vec!["serve", "--listen", "127.0.0.1:0"];
        all.extend(&args);
        let out = env.run(&all);
        out.expect_code(Some(2));
        assert!(!out.stderr().contains("s3cret"), "{}", out.stderr());
    }
}

#[test]
fn ids_and_names_that_cannot_be_reached_are_refused() {
    let env = Env::new();
    let server = Server::start(&env, &[]);
    let digest = server.upload("testbed");
    for id in [".", ".."] {
        let (status, body) = server.json(
            "POST",
            "/v1/runs",
            &json!({"component": digest, "input": {"mode": "repeat"}, "id": id}),
        );
        assert_eq!(status, 400, "{id}: {body}");
        let (status, body) = server.json(
            "POST",
            "/v1/runs/x/fork",
            &json!({"from_step": "echo#1", "id": id}),
        );
        assert!(status == 400 || status == 404, "{id}: {status} {body}");
    }
    let out = env.run(&[
        "run",
        &crate::util::wasm("testbed"),
        "--input",
        r#"{"mode":"repeat"}"#,
        "--id",
        "..",
    ]);
    out.expect_code(Some(2));
    // A NUL byte names nothing (PostgreSQL's text cannot hold one): 400,
    // never a database error.
    for path in [
        "/v1/runs?parent=%00",
        "/v1/runs?prefix=a%00",
        "/v1/runs/a%00b",
        "/v1/runs/a%00b/result",
        "/v1/queues/q%00",
    ] {
        let (status, body) = server.call("GET", path, b"");
        assert_eq!(status, 400, "{path}: {body}");
    }
    // A name so long that the run ids made from it would not fit.
    let long = "n".repeat(234);
    for name in ["nightly report", "a\tb", "x/y", "$x", "", long.as_str()] {
        let (status, body) = server.json(
            "POST",
            "/v1/workflows",
            &json!({"name": name, "component": digest}),
        );
        assert_eq!(status, 400, "{name:?}: {body}");
        let encoded: String = name.bytes().map(|b| format!("%{b:02X}")).collect();
        let wasm = std::fs::read(guest("testbed")).expect("guest");
        let (status, body) = server.call("POST", &format!("/v1/components?name={encoded}"), &wasm);
        assert_eq!(status, 400, "{name:?}: {body}");
    }
    let (_, listed) = server.call("GET", "/v1/workflows", b"");
    assert_eq!(listed["workflows"], json!([]));
    // Any integer limit is brought into range; anything else is refused.
    for (limit, want) in [("-1", 200), ("99999999999999999999999", 200), ("x", 400)] {
        let (status, body) = server.call("GET", &format!("/v1/runs?limit={limit}"), b"");
        assert_eq!(status, want, "limit={limit}: {body}");
    }
    // A path segment that is not UTF-8 is refused in the API's one error
    // shape, like every other bad request.
    for path in [
        "/v1/runs/%FF",
        "/v1/runs/%FF/result",
        "/v1/runs/x/events/%FF",
    ] {
        let method = if path.contains("/events/") {
            "POST"
        } else {
            "GET"
        };
        let (status, body) = server.call(method, path, b"{}");
        assert_eq!(status, 400, "{path}: {body}");
        assert_eq!(body["error"]["code"], "bad_request", "{path}: {body}");
    }
    // No run has an id that is not one: forking it is forking nothing.
    let (status, body) = server.json("POST", "/v1/runs/a%2Fb/fork", &json!({"from_step": "x#1"}));
    assert_eq!(status, 404, "{body}");
}

#[test]
fn absurd_waits_and_a_zero_upload_limit_get_answers_not_panics() {
    let env = Env::new();
    let mut uploader = Server::start(&env, &[]);
    let digest = uploader.upload("testbed");
    uploader.terminate();
    // JSON bodies do not depend on the upload limit.
    let server = Server::start(&env, &["--max-body-mb", "0"]);
    let wasm = std::fs::read(guest("testbed")).expect("guest");
    let (status, _) = server.call("POST", "/v1/components?name=testbed", &wasm);
    assert_eq!(status, 413);
    let (status, body) = server.json(
        "POST",
        "/v1/runs",
        &json!({"component": digest, "input": {"mode": "repeat"}, "id": "r"}),
    );
    assert_eq!(status, 201, "{body}");
    assert_eq!(server.result("r")["status"], "succeeded");
    let (status, body) = server.json("POST", "/v1/runs/r/events/x", &json!({"data": 1}));
    assert_eq!(status, 409, "a finished run takes no events: {body}");
    for wait in [
        "1e20s",
        "100000000000000000000000000000s",
        "99999999999999999999999ms",
        "-1s",
        "NaNs",
        "infs",
        "%FF",
        "1.5.5s",
        "",
    ] {
        let (status, body) = server.call("GET", &format!("/v1/runs/r/result?wait={wait}"), b"");
        assert!(status == 200 || status == 400, "{wait}: {status} {body}");
        if status == 200 {
            assert_eq!(body["status"], "succeeded", "{wait}");
        }
    }
    let (status, _) = server.call("GET", "/v1/health", b"");
    assert_eq!(status, 200, "the server died");
    assert!(!server.stderr().contains("panicked"), "{}", server.stderr());
}

#[test]
fn two_identical_starts_at_once_make_one_run_and_answer_201_then_200() {
    let env = Env::new();
    let server = Server::start(&env, &[]);
    let digest = server.upload("testbed");
    for pair in 0..30 {
        let start =
            json!({"component": digest, "input": {"mode": "repeat"}, "id": format!("p{pair}")});
        let statuses: Vec<u16> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..2)
                .map(|_| s.spawn(|| server.json("POST", "/v1/runs", &start).0))
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("thread"))
                .collect()
        });
        let mut sorted = statuses.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, [200, 201], "pair {pair}: {statuses:?}");
    }
    for pair in 0..30 {
        assert_eq!(server.result(&format!("p{pair}"))["status"], "succeeded");
    }
}

#[test]
fn a_component_keeps_its_name_across_uploads_and_restarts_and_is_deleted_when_unused() {
    let env = Env::new();
    let mut server = Server::start(&env, &[]);
    let wasm = std::fs::read(guest("testbed")).expect("guest");
    let (status, first) = server.call("POST", "/v1/components?name=alpha", &wasm);
    assert_eq!(status, 201, "{first}");
    let digest = first["digest"].as_str().expect("digest").to_string();
    let (status, again) = server.call("POST", "/v1/components?name=beta", &wasm);
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["name"], "alpha", "the first name stays");
    let start = |server: &Server, id: &str| {
        let (status, body) = server.json(
            "POST",
            "/v1/runs",
            &json!({"component": digest, "input": {"mode": "repeat"}, "id": id}),
        );
        assert_eq!(status, 201, "{body}");
        assert_eq!(body["workflow"], "alpha", "{body}");
    };
    start(&server, "a1");
    server.kill();
    let mut server = Server::start(&env, &[]);
    start(&server, "a2");
    assert_eq!(server.result("a2")["status"], "succeeded");

    // In use: refused, over HTTP and from the CLI.
    let (status, body) = server.call("DELETE", &format!("/v1/components/{digest}"), b"");
    assert_eq!(status, 409, "{body}");
    let (_, listed) = server.call("GET", "/v1/components", b"");
    let entry = listed["components"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["digest"] == digest.as_str()))
        .cloned()
        .unwrap_or(Value::Null);
    assert_eq!(entry["name"], "alpha", "{listed}");
    assert_eq!(entry["runs"], 2, "{listed}");
    server.terminate();
    env.run(&["components", "delete", &digest])
        .expect_code(Some(4));
    let listed = env.run(&["components", "list", "--json"]);
    assert!(listed.stdout().contains(&digest), "{}", listed.stdout());

    // Unused: deleted, then gone.
    let server = Server::start(&env, &[]);
    let hello = server.upload("approval");
    let (status, body) = server.call("DELETE", &format!("/v1/components/{hello}"), b"");
    assert_eq!(status, 200, "{body}");
    let (status, _) = server.call("DELETE", &format!("/v1/components/{hello}"), b"");
    assert_eq!(status, 404);
    let (status, _) = server.json(
        "POST",
        "/v1/runs",
        &json!({"component": hello, "input": null}),
    );
    assert_eq!(status, 404);
    // Registered under a name: refused until the name points elsewhere.
    let other = server.upload("diverge");
    let (status, _) = server.json(
        "POST",
        "/v1/workflows",
        &json!({"name": "greet", "component": other}),
    );
    assert_eq!(status, 201);
    let (status, _) = server.call("DELETE", &format!("/v1/components/{other}"), b"");
    assert_eq!(status, 409);
    drop(server);
    env.run(&["components", "delete", &other])
        .expect_code(Some(0));
    env.run(&["components", "delete", &other])
        .expect_code(Some(3));
}

#[test]
fn an_event_id_names_one_payload() {
    let env = Env::new();
    let server = Server::start(&env, &[]);
    let digest = server.upload("testbed");
    let (status, _) = server.json(
        "POST",
        "/v1/runs",
        &json!({"component": digest, "input": {"mode": "events", "n": 2, "delay_ms": 60000}, "id": "e"}),
    );
    assert_eq!(status, 201);
    let send = |data: Value| {
        server.json(
            "POST",
            "/v1/runs/e/events/ping",
            &json!({"data": data, "id": "once"}),
        )
    };
    assert_eq!(send(json!({"a": 1, "b": 2})).0, 201);
    let (status, body) = send(json!({"b": 2, "a": 1}));
    assert_eq!((status, &body["stored"]), (200, &json!(false)), "{body}");
    let (status, body) = send(json!({"a": 2}));
    assert_eq!(status, 409, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("once"),
        "{body}"
    );
    // The id names the event's name too: not a way to drop another event.
    let (status, body) = server.json(
        "POST",
        "/v1/runs/e/events/pong",
        &json!({"data": {"a": 1, "b": 2}, "id": "once"}),
    );
    assert_eq!(status, 409, "{body}");
    // From the CLI too.
    let out = env.run(&["event", "e", "ping", "--id", "once", "--data", r#"{"a":3}"#]);
    out.expect_code(Some(2));
    // A retried send of a delivered event is answered as delivered, even
    // once the run has ended.
    assert_eq!(send(json!({"a": 2})).0, 409);
    let (status, _) = server.json(
        "POST",
        "/v1/runs/e/events/ping",
        &json!({"data": 2, "id": "second"}),
    );
    assert_eq!(status, 201);
    let (status, _) = server.json("POST", "/v1/runs/e/events/pong", &json!({"data": 0}));
    assert_eq!(status, 201);
    assert_eq!(server.result("e")["status"], "succeeded");
    let (status, body) = send(json!({"a": 1, "b": 2}));
    assert_eq!((status, &body["stored"]), (200, &json!(false)), "{body}");
    let (status, _) = server.json(
        "POST",
        "/v1/runs/e/events/ping",
        &json!({"data": 3, "id": "third"}),
    );
    assert_eq!(status, 409, "a new event to an ended run");
}

#[test]
fn components_beyond_the_loaded_budget_are_dropped_and_loaded_again() {
    let env = Env::new();
    let server = Server::start(&env, &["--max-loaded-mb", "1"]);
    let base = std::fs::read(guest("testbed")).expect("guest");
    // The same component with a custom section of its own: a new digest.
    let distinct = |i: u32| {
        let mut bytes = base.clone();
        let name = format!("copy-{i}");
        let payload = name.len() + 1;
        bytes.push(0);
        bytes.push(payload as u8);
        bytes.push(name.len() as u8);
        bytes.extend(name.as_bytes());
        bytes
    };
    let mut digests = Vec::new();
    for i in 0..6 {
        let (status, body) =
            server.call("POST", &format!("/v1/components?name=c{i}"), &distinct(i));
        assert_eq!(status, 201, "{body}");
        digests.push(body["digest"].as_str().expect("digest").to_string());
    }
    // A MiB holds one of them (the last one loaded always stays).
    let loaded = |server: &Server| -> u64 {
        let (_, _, text) = server.raw("GET", "/metrics", &[], b"");
        text.lines()
            .find_map(|l| l.strip_prefix("durable_loaded_components "))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or_else(|| panic!("no durable_loaded_components in {text}"))
    };
    assert_eq!(loaded(&server), 1);
    // The first was dropped long ago: a run of it loads it again.
    for (i, d) in digests.iter().enumerate() {
        let id = format!("run{i}");
        let (status, body) = server.json(
            "POST",
            "/v1/runs",
            &json!({"component": d, "input": {"mode": "repeat"}, "id": id}),
        );
        assert_eq!(status, 201, "{body}");
        assert_eq!(body["workflow"], format!("c{i}"));
        assert_eq!(server.result(&id)["status"], "succeeded");
    }
    assert_eq!(loaded(&server), 1);
}

#[test]
fn long_polls_are_bounded_and_hear_of_runs_ended_by_another_process() {
    let env = Env::new();
    let server = Server::start(&env, &["--max-long-polls", "2"]);
    let digest = server.upload("testbed");
    let (status, _) = server.json(
        "POST",
        "/v1/runs",
        &json!({"component": digest, "input": {"mode": "events", "n": 1, "delay_ms": 60000}, "id": "w"}),
    );
    assert_eq!(status, 201);
    std::thread::scope(|s| {
        let polls: Vec<_> = (0..2)
            .map(|_| {
                s.spawn(|| {
                    // Refused while the probe below holds a permit: again.
                    loop {
                        let started = Instant::now();
                        let (status, body) = server.call("GET", "/v1/runs/w/result?wait=60s", b"");
                        if status != 503 {
                            return (status, body, started.elapsed());
                        }
                        std::thread::sleep(Duration::from_millis(20));
                    }
                })
            })
            .collect();
        // Both are open: a third is refused, at once, with Retry-After.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            // (Short: until both polls are open, this one gets a permit.)
            let (status, head, body) = server.raw("GET", "/v1/runs/w/result?wait=1s", &[], b"");
            if status == 503 {
                assert!(
                    head.to_ascii_lowercase().contains("retry-after: 1"),
                    "{head}"
                );
                assert_eq!(code(&body), "busy");
                break;
            }
            assert!(
                Instant::now() < deadline,
                "a third long poll was never refused: {status} {body}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        // A poll without wait needs no permit.
        assert_eq!(server.call("GET", "/v1/runs/w/result", b"").0, 200);
        // Another process ends the run: the polls answer within about the
        // server's look at runs driven elsewhere (1 s).
        env.run(&["cancel", "w"]).expect_code(Some(0));
        for poll in polls {
            let (status, body, took) = poll.join().expect("poll");
            assert_eq!(status, 200);
            assert_eq!(body["status"], "cancelled", "{body}");
            assert!(
                took < Duration::from_secs(50),
                "the poll waited out its time"
            );
        }
    });
}

#[test]
fn a_database_password_is_never_printed_whatever_the_location_looks_like() {
    let env = Env::new();
    for db in [
        "POSTGRES://durable:Pw-S3cr3t@127.0.0.1:1/durable",
        "Postgresql://durable:Pw-S3cr3t@127.0.0.1:1/durable",
        "postgres:durable:Pw-S3cr3t@127.0.0.1",
        "host=127.0.0.1 port=1 user=durable password=Pw-S3cr3t dbname=durable",
        "postgres://durable:Pw-S3cr3t@127.0.0.1:1/durable",
        "postgres://durable@127.0.0.1:1/durable?password=Pw-S3cr3t&sslmode=bogus",
        // The client reads a password up to the first `@`, so these are
        // passwords too; and a URL that misses a character or has a space
        // before it would otherwise be a file, printed whole.
        "postgres://durable:Pw/S3cr3t@127.0.0.1:1/durable",
        "postgres://durable:Pw#S3cr3t?@127.0.0.1:1/durable",
        "postgres://durable@127.0.0.1:1/durable?pass%77ord=Pw-S3cr3t",
        " postgres://durable:Pw-S3cr3t@127.0.0.1:1/durable",
        "pg://durable:Pw-S3cr3t@127.0.0.1:1/durable",
        "postgres//durable:Pw-S3cr3t@127.0.0.1:1/durable",
    ] {
        for args in [vec!["list"], vec!["serve", "--listen", "127.0.0.1:0"]] {
            let mut all = args.clone();
            all.extend(["--db", db]);
            let out = env.run(&all);
            assert_ne!(out.out.status.code(), Some(0), "{db}");
            assert!(!out.stderr().contains("S3cr3t"), "{db}: {}", out.stderr());
            assert!(!out.stdout().contains("S3cr3t"), "{db}");
        }
    }
    // No file was made of a connection string.
    let made: Vec<_> = std::fs::read_dir(env.dir.path())
        .expect("dir")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|n| n.contains("S3cr3t"))
        .collect();
    assert!(made.is_empty(), "{made:?}");
    // Nor by --help, when the variable holds it.
    let mut help = env.cmd(&["serve", "--help"]);
    help.env(
        "DURABLE_DB",
        "postgres://durable:Pw-S3cr3t@127.0.0.1:1/durable",
    );
    let out = help.output().expect("help");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("S3cr3t"));
}

#[test]
fn an_upload_larger_than_the_limit_is_refused_before_it_is_read() {
    let env = Env::new();
    let server = Server::start(&env, &["--max-body-mb", "1", "--max-uploads", "1"]);
    // Announced too large: refused at once, without waiting for a turn or
    // reading the body (none is sent).
    let (status, _, body) = server.raw(
        "POST",
        "/v1/components?name=big",
        &["content-type: application/wasm", "content-length: 60000000"],
        b"",
    );
    assert_eq!(status, 413, "{body}");
}
