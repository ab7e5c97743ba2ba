//! HTTP from steps (`wasi:http`), in Rust, Python and JavaScript: a real
//! server on loopback (tests/e2e/stub.rs), over http and https with a
//! throwaway CA; the allow-list, redirects, the workflow's refusal, the
//! body limit, and the Idempotency-Key across a retry and a SIGKILL.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::polyglot::{HIRE, LANGUAGES, component};
use crate::stub::{Reply, Seen, Stub, TestCa};
use crate::util::{Env, Run, finish, wasm};

/// (language, its testbed component), each with a `fetch` mode that POSTs
/// `value.body` as JSON to `value.url` from a step named `fetch`.
fn testbeds() -> [(&'static str, String); 3] {
    [
        ("rust", wasm("testbed")),
        ("python", component("testbed-py")),
        ("javascript", component("testbed-js")),
    ]
}

fn fetch_input(url: &str) -> String {
    json!({"mode": "fetch", "value": {"url": url, "body": {"hello": "world"}}}).to_string()
}

/// Echoes the request's Idempotency-Key.
fn echo(seen: &Seen, _: usize) -> Reply {
    Reply::json(200, &json!({"key": seen.header("idempotency-key")}))
}

/// `durable run WASM --input INPUT --id ID FLAGS...`
fn run(env: &Env, wasm: &str, input: &str, id: &str, flags: &[&str]) -> Run {
    let mut args = vec!["run", wasm, "--input", input, "--id", id];
    args.extend_from_slice(flags);
    env.run(&args)
}

/// The "failed" message of a run that must have failed (exit 1).
#[track_caller]
fn failure(run: &Run, lang: &str) -> String {
    run.expect_code(Some(1));
    let stderr = run.stderr();
    assert!(stderr.contains("failed"), "{lang}: {stderr}");
    stderr
}

#[test]
fn steps_reach_only_the_hosts_the_operator_allowed_over_http_and_https_in_every_language() {
    let ca = TestCa::new();
    for (lang, wasm) in testbeds() {
        // Fresh servers: each language's requests are counted from zero.
        let plain = Stub::http(echo);
        let secure = Stub::https(&ca, echo);
        let env = Env::new();
        let url = format!("{}/hello", plain.origin());
        let input = fetch_input(&url);

        // No grant: refused before anything leaves the host, for good.
        let denied = run(&env, &wasm, &input, "denied", &[]);
        let stderr = failure(&denied, lang);
        let allow = format!("--allow-http {}", plain.origin());
        assert!(
            stderr.contains("no --allow-http pattern allows it") && stderr.contains(&allow),
            "{lang}: {stderr}"
        );
        assert!(plain.seen().is_empty(), "{lang}: the server saw a request");
        assert_eq!(
            env.query("SELECT attempts FROM steps WHERE run_id = 'denied'"),
            [["1"]],
            "{lang}: a refusal is not retried"
        );

        // Granted: sent, with the step's idempotency key and the JSON body.
        let ok = run(
            &env,
            &wasm,
            &input,
            "ok",
            &["--allow-http", &plain.origin()],
        );
        let out = ok.success();
        assert_eq!(out["status"], 200, "{lang}: {out}");
        let body: Value = serde_json::from_str(out["body"].as_str().expect("text")).expect("JSON");
        assert_eq!(body["key"], "ok/fetch#1", "{lang}");
        let seen = plain.seen_at("/hello");
        assert_eq!(seen.len(), 1, "{lang}");
        assert_eq!(seen[0].method, "POST", "{lang}");
        let sent: Value = serde_json::from_slice(&seen[0].body).expect("a JSON body");
        assert_eq!(sent, json!({"hello": "world"}), "{lang}");

        // HTTPS against a private CA: refused without --allow-http-ca ...
        let ca_file = env.dir.path().join("ca.pem");
        std::fs::write(&ca_file, &ca.ca_pem).expect("write CA");
        let https = fetch_input(&format!("{}/secure", secure.origin()));
        let grant = ["--allow-http", "https://localhost", "--max-attempts", "1"];
        let untrusted = run(&env, &wasm, &https, "untrusted", &grant);
        let stderr = failure(&untrusted, lang);
        assert!(stderr.contains("--allow-http-ca"), "{lang}: {stderr}");
        assert!(secure.seen().is_empty(), "{lang}: sent over unverified TLS");
        // ... and sent with it.
        let ca_arg = ca_file.to_str().expect("utf-8");
        let mut trusted_flags = grant.to_vec();
        trusted_flags.extend(["--allow-http-ca", ca_arg]);
        let trusted = run(&env, &wasm, &https, "trusted", &trusted_flags);
        assert_eq!(trusted.success()["status"], 200, "{lang}");
        assert_eq!(secure.seen_at("/secure").len(), 1, "{lang}");
        assert_eq!(
            secure.seen_at("/secure")[0].header("idempotency-key"),
            Some("trusted/fetch#1"),
            "{lang}"
        );

        // The workflow itself may not send requests, granted or not.
        let input = json!({"mode": "fetch_in_workflow", "value": {"url": url}}).to_string();
        let from_workflow = run(
            &env,
            &wasm,
            &input,
            "wf",
            &["--allow-http", &plain.origin()],
        );
        let stderr = failure(&from_workflow, lang);
        assert!(
            stderr.contains("only steps may call other services") && stderr.contains("in a step"),
            "{lang}: {stderr}"
        );
        assert_eq!(
            plain.seen_at("/hello").len(),
            1,
            "{lang}: the workflow's request was sent"
        );
    }
}

#[test]
fn a_redirect_is_followed_only_to_allowed_hosts_in_every_language() {
    // Only 127.0.0.1:PORT is allowed; localhost:PORT is the same server
    // under a name the allow-list does not hold.
    let stub = Arc::new(std::sync::OnceLock::<u16>::new());
    let port = stub.clone();
    let server = Stub::http(move |seen, _| {
        let port = port.get().copied().unwrap_or_default();
        match seen.path.as_str() {
            "/inside" => Reply::redirect(&format!("http://127.0.0.1:{port}/landed")),
            "/outside" => Reply::redirect(&format!("http://localhost:{port}/landed")),
            _ => echo(seen, 0),
        }
    });
    stub.set(server.port()).expect("set once");
    for (lang, wasm) in testbeds() {
        let env = Env::new();
        let grant = ["--allow-http", &server.origin()];
        let before = server.seen_at("/landed").len();
        let inside = run(
            &env,
            &wasm,
            &fetch_input(&format!("{}/inside", server.origin())),
            "inside",
            &grant,
        );
        assert_eq!(inside.success()["status"], 200, "{lang}");
        assert_eq!(server.seen_at("/landed").len(), before + 1, "{lang}");

        let outside = run(
            &env,
            &wasm,
            &fetch_input(&format!("{}/outside", server.origin())),
            "outside",
            &grant,
        );
        let stderr = failure(&outside, lang);
        assert!(
            stderr.contains(&format!(
                "may not send HTTP requests to http://localhost:{}",
                server.port()
            )),
            "{lang}: {stderr}"
        );
        assert_eq!(
            server.seen_at("/landed").len(),
            before + 1,
            "{lang}: the redirect's target was reached"
        );
    }
}

#[test]
fn a_retry_and_a_resume_after_sigkill_send_the_same_idempotency_key_in_every_language() {
    for (lang, wasm) in testbeds() {
        // A fresh server per language: its first requests are this one's.
        // /flaky fails once with 503, then answers; /kill gets the host killed
        // while its first request is in flight, then answers.
        let victim = Arc::new(AtomicU32::new(0));
        let to_kill = victim.clone();
        let server = Stub::http(move |seen, before| match (seen.path.as_str(), before) {
            ("/flaky", 0) => Reply::json(503, &json!({"error": "busy"})),
            ("/kill", 0) => {
                let deadline = Instant::now() + Duration::from_secs(10);
                while to_kill.load(Ordering::SeqCst) == 0 && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(5));
                }
                let pid = to_kill.swap(0, Ordering::SeqCst);
                if pid != 0 {
                    // SAFETY: kill(2) on the pid of a child this test spawned.
                    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
                }
                std::thread::sleep(Duration::from_millis(200));
                echo(seen, 0)
            }
            _ => echo(seen, 0),
        });
        let env = Env::new();
        let grant = ["--allow-http", &server.origin()];

        // A retried attempt: two requests, one key; both in `show --logs`.
        let flaky_url = format!("{}/flaky", server.origin());
        let flaky = run(&env, &wasm, &fetch_input(&flaky_url), "flaky", &grant);
        assert_eq!(flaky.success()["status"], 200, "{lang}");
        let seen = server.seen_at("/flaky");
        assert_eq!(seen.len(), 2, "{lang}: {seen:?}");
        for s in &seen {
            assert_eq!(s.header("idempotency-key"), Some("flaky/fetch#1"), "{lang}");
        }
        let show = env.run(&["show", "flaky", "--logs"]);
        let logs = show.stdout();
        let line = |attempt: u32, status: u16| {
            format!("[http] attempt {attempt}: POST {flaky_url} → {status}")
        };
        assert!(
            logs.contains(&line(1, 503)) && logs.contains(&line(2, 200)),
            "{lang}: {logs}"
        );

        // A SIGKILL while the request is in flight: the resumed run sends
        // the same key again.
        let kill_url = format!("{}/kill", server.origin());
        let input = fetch_input(&kill_url);
        let mut args = vec!["run", wasm.as_str(), "--input", &input, "--id", "k"];
        args.extend_from_slice(&grant);
        let child = env.spawn(&args);
        victim.store(child.id(), Ordering::SeqCst);
        let killed = finish(child, "run k", &env.db());
        killed.expect_code(None);
        let resumed = env.run(&["resume", "k", "--allow-http", &server.origin()]);
        assert_eq!(resumed.success()["status"], 200, "{lang}");
        let seen = server.seen_at("/kill");
        assert_eq!(seen.len(), 2, "{lang}: {seen:?}");
        for s in &seen {
            assert_eq!(s.header("idempotency-key"), Some("k/fetch#1"), "{lang}");
        }
    }
}

#[test]
fn an_oversized_response_fails_the_attempt_naming_the_limit_in_every_language() {
    let server = Stub::http(|_, _| Reply {
        status: 200,
        headers: Vec::new(),
        body: vec![b'x'; 2 << 20],
    });
    for (lang, wasm) in testbeds() {
        let env = Env::new();
        let input = fetch_input(&format!("{}/big", server.origin()));
        let flags = [
            "--allow-http",
            &server.origin(),
            "--max-http-body-mb",
            "1",
            "--max-attempts",
            "1",
        ];
        let big = run(&env, &wasm, &input, "big", &flags);
        let stderr = failure(&big, lang);
        assert!(stderr.contains("--max-http-body-mb"), "{lang}: {stderr}");
    }
}

#[test]
fn the_onboarding_example_tells_the_hr_service_once_per_step_across_a_crash_in_every_language() {
    let hr = Stub::http(|_, _| Reply::json(201, &json!({"ok": true})));
    let refusing = Stub::http(|_, _| Reply::json(422, &json!({"error": "no such team"})));
    for (lang, name) in LANGUAGES {
        let wasm = component(name);
        let env = Env::new();
        let offline = env.run(&["run", &wasm, "--input", HIRE, "--id", "offline"]);
        let expected = offline.success();

        // Killed right after create_record committed, then resumed: every
        // step told the service exactly once, with its own key.
        let mut hire: Value = serde_json::from_str(HIRE).expect("JSON");
        hire["hr_url"] = json!(hr.origin());
        let input = hire.to_string();
        let id = format!("hr-{lang}");
        let grant = ["--allow-http", &hr.origin()];
        let mut args = vec!["run", &wasm, "--input", &input, "--id", &id];
        args.extend_from_slice(&grant);
        args.extend(["--crash-after", "create_record#1"]);
        env.run(&args).expect_code(None);
        let resumed = env.run(&["resume", &id, "--allow-http", &hr.origin()]);
        assert_eq!(resumed.success(), expected, "{lang}: the summary changed");
        for (path, step) in [
            ("/employees", "create_record"),
            ("/laptops", "provision_laptop"),
            ("/access", "grant_access"),
        ] {
            let mine: Vec<Seen> = hr
                .seen_at(path)
                .into_iter()
                .filter(|s| {
                    s.header("idempotency-key")
                        .is_some_and(|k| k.starts_with(&id))
                })
                .collect();
            assert_eq!(mine.len(), 1, "{lang}: {path}: {mine:?}");
            assert_eq!(
                mine[0].header("idempotency-key"),
                Some(format!("{id}/{step}#1").as_str()),
                "{lang}"
            );
            let body: Value = serde_json::from_slice(&mine[0].body).expect("a JSON body");
            assert_eq!(body["email"], "ada@example.com", "{lang}: {path}");
        }

        // A 4xx from the service fails the step for good: one attempt.
        hire["hr_url"] = json!(refusing.origin());
        let input = hire.to_string();
        let refused = run(
            &env,
            &wasm,
            &input,
            "refused",
            &["--allow-http", &refusing.origin()],
        );
        let stderr = failure(&refused, lang);
        assert!(stderr.contains("422"), "{lang}: {stderr}");
        assert_eq!(
            env.query("SELECT attempts FROM steps WHERE run_id = 'refused'"),
            [["1"]],
            "{lang}"
        );
    }
}

#[test]
fn a_response_that_does_not_start_in_time_fails_naming_the_flag() {
    let server = Stub::http(|seen, _| {
        std::thread::sleep(Duration::from_millis(1500));
        echo(seen, 0)
    });
    let env = Env::new();
    let input = fetch_input(&format!("{}/slow", server.origin()));
    let flags = [
        "--allow-http",
        &server.origin(),
        "--http-first-byte-timeout-ms",
        "200",
        "--max-attempts",
        "1",
    ];
    // Had the timeout not fired, the late answer would have been a success.
    let slow = run(&env, &wasm("testbed"), &input, "slow", &flags);
    let stderr = failure(&slow, "rust");
    assert!(
        stderr.contains("had no response after 200 ms (--http-first-byte-timeout-ms"),
        "{stderr}"
    );
}
