//! The sandbox: what steps may touch without and with grants, and the
//! determinism of the workflow instance.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::util::{Env, wasm};

/// Runs the testbed's probes and returns one result per probe.
fn probe(env: &Env, id: &str, probes: Value, grants: &[&str]) -> Vec<Value> {
    let input = json!({"mode": "probe", "probes": probes}).to_string();
    let testbed = wasm("testbed");
    let mut args = vec!["run", &testbed, "--input", &input, "--id", id];
    args.extend_from_slice(grants);
    let out = env.run(&args).success();
    out.as_array().expect("a list").clone()
}

fn ok(v: &Value) -> Option<&str> {
    v["ok"].as_str()
}

#[test]
fn steps_get_no_files_environment_or_network_unless_granted() {
    let env = Env::new();
    let data = env.dir.path().join("data");
    std::fs::create_dir(&data).expect("mkdir");
    std::fs::write(data.join("f.txt"), "granted contents").expect("write");
    let listener = TcpListener::bind("127.0.0.1:0").expect("listen");
    let addr = listener.local_addr().expect("addr").to_string();
    let server = std::thread::spawn(move || {
        // Only the granted run connects; the denied one never reaches us.
        let (mut s, _) = listener.accept().expect("accept");
        s.write_all(b"hello over tcp").expect("send");
    });
    let probes = json!([
        {"kind": "read", "arg": "/etc/passwd"},
        {"kind": "list", "arg": "/"},
        {"kind": "env", "arg": "DURABLE_TEST_SECRET"},
        {"kind": "tcp", "arg": addr},
        {"kind": "read", "arg": "/data/f.txt"},
        {"kind": "write", "arg": "/data/new.txt"},
        {"kind": "list", "arg": "/data"},
    ]);

    let denied = probe(&env, "denied", probes.clone(), &[]);
    for (i, r) in denied.iter().enumerate() {
        assert!(
            r["err"].is_string(),
            "probe {i} should fail without grants: {r}"
        );
    }

    let ro = format!("{}::/data", data.display());
    let granted = probe(
        &env,
        "granted",
        probes,
        &[
            "--allow-dir-ro",
            &ro,
            "--allow-env",
            "DURABLE_TEST_SECRET=s3cret",
            "--allow-tcp",
            &addr,
        ],
    );
    // Still no /etc/passwd and no root to list: only /data exists for it.
    assert!(granted[0]["err"].is_string(), "{}", granted[0]);
    assert!(granted[1]["err"].is_string(), "{}", granted[1]);
    assert_eq!(ok(&granted[2]), Some("s3cret"));
    assert_eq!(ok(&granted[3]), Some("hello over tcp"));
    assert_eq!(ok(&granted[4]), Some("granted contents"));
    // Read-only means read-only.
    assert!(granted[5]["err"].is_string(), "{}", granted[5]);
    assert!(!data.join("new.txt").exists());
    assert_eq!(ok(&granted[6]), Some("f.txt"));
    server.join().expect("server");

    // A read-write grant lets the step write.
    let rw = format!("{}::/data", data.display());
    let wrote = probe(
        &env,
        "rw",
        json!([{"kind": "write", "arg": "/data/new.txt"}]),
        &["--allow-dir", &rw],
    );
    assert_eq!(ok(&wrote[0]), Some("written"));
    assert_eq!(
        std::fs::read_to_string(data.join("new.txt")).expect("read"),
        "written by a step"
    );
}

/// A step whose open of a file waits for good (a FIFO in a granted
/// directory that nobody opens for reading) times out like any step, and
/// the process still ends: the open waits on a helper thread, not on one of
/// the runtime's, and nothing waits for that thread at exit.
#[test]
fn a_step_stuck_opening_a_fifo_times_out_and_the_process_still_ends() {
    let env = Env::new();
    let data = env.dir.path().join("data");
    std::fs::create_dir(&data).expect("mkdir");
    let made = std::process::Command::new("mkfifo")
        .arg(data.join("fifo"))
        .status()
        .expect("mkfifo");
    assert!(made.success(), "mkfifo: {made}");
    let input =
        json!({"mode": "probe", "probes": [{"kind": "write", "arg": "/data/fifo"}]}).to_string();
    let (testbed, rw) = (wasm("testbed"), format!("{}::/data", data.display()));
    let mut child = env
        .cmd(&[
            "run",
            &testbed,
            "--input",
            &input,
            "--allow-dir",
            &rw,
            "--step-timeout-ms",
            "300",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("durable starts");
    // Bounded: a process that does not end is killed and the test fails.
    let deadline = Instant::now() + Duration::from_secs(60);
    let ended = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let status = ended.expect("durable run did not end within 60 s of its step timing out");
    assert!(status.success(), "{status}");
    let mut out = String::new();
    child
        .stdout
        .take()
        .expect("stdout")
        .read_to_string(&mut out)
        .expect("read");
    let results: Value = serde_json::from_str(&out).expect("JSON output");
    let said = results[0]["step"].as_str().unwrap_or_default();
    assert!(said.contains("timed out"), "{out}");
}

#[test]
fn a_granted_env_var_that_is_not_set_is_a_usage_error() {
    let env = Env::new();
    let run = env.run(&[
        "run",
        &wasm("testbed"),
        "--input",
        r#"{"mode":"seq3"}"#,
        "--allow-env",
        "DURABLE_SURELY_UNSET_VAR",
    ]);
    run.expect_code(Some(2));
    assert!(
        run.stderr().contains("DURABLE_SURELY_UNSET_VAR is not set"),
        "{}",
        run.stderr()
    );
    let missing = env.run(&[
        "run",
        &wasm("testbed"),
        "--input",
        r#"{"mode":"seq3"}"#,
        "--allow-dir",
        "/no/such/dir",
    ]);
    missing.expect_code(Some(2));
    assert!(
        missing.stderr().contains("is not a directory"),
        "{}",
        missing.stderr()
    );
}

#[test]
fn wasi_clock_and_random_of_the_workflow_replay_exactly_after_a_kill() {
    let env = Env::new();
    let first = env.crash_after(
        &wasm("testbed"),
        r#"{"mode":"deterministic"}"#,
        "d",
        "echo#1",
    );
    // What the workflow read before the kill, as it printed it.
    let printed: Value = first
        .stderr()
        .lines()
        .find_map(|l| l.split_once("READINGS ").map(|(_, j)| j.to_string()))
        .map(|j| serde_json::from_str(&j).expect("JSON readings"))
        .expect("the workflow printed its readings");
    let resumed = env.run(&["resume", "d"]);
    let out = resumed.success();
    // The replay read exactly the same WASI clock, WASI random, now-ms and
    // random-u64 as the first drive did.
    assert_eq!(out["before"], printed);
    // The workflow's WASI clock is frozen at the run's recorded start...
    let created: u64 = env.query("SELECT created_at_ms FROM runs WHERE id = 'd'")[0][0]
        .parse()
        .expect("ms");
    assert_eq!(out["before"]["wall_ms"], json!(created));
    assert_eq!(out["after"]["wall_ms"], json!(created));
    // ...while now-ms is real, recorded time.
    assert!(out["after"]["now_ms"].as_u64() >= out["before"]["now_ms"].as_u64());
    // A fresh run reads another seed: the values are not constants.
    let other = env.run(&[
        "run",
        &wasm("testbed"),
        "--input",
        r#"{"mode":"deterministic"}"#,
        "--id",
        "d2",
    ]);
    let other = other.success();
    assert_ne!(other["before"]["wasi_random"], out["before"]["wasi_random"]);
    assert_ne!(other["before"]["random_u64"], out["before"]["random_u64"]);
}
