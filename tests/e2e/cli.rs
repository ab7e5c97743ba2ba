//! The command line: ownership, bad input, exit codes.

use std::time::{Duration, Instant};

use crate::util::{Env, finish, guest};

#[test]
fn a_second_process_driving_the_same_run_is_refused() {
    let wasm = guest("testbed");
    let wasm = wasm.to_str().expect("utf-8 path");
    let env = Env::new();
    let input = r#"{"mode":"long","n":12,"delay_ms":250}"#;
    let first = env.spawn(&["run", wasm, "--input", input, "--id", "busy"]);
    // Wait until the first process has committed a step: it owns the run.
    let deadline = Instant::now() + Duration::from_secs(60);
    while env.committed("busy").is_empty() {
        assert!(
            Instant::now() < deadline,
            "the first process never committed a step"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    for args in [
        vec!["resume", "busy"],
        vec!["run", wasm, "--input", input, "--id", "busy"],
    ] {
        let second = env.run(&args);
        second.expect_code(Some(4));
        assert!(
            second.stderr().contains("being driven by another process"),
            "{}",
            second.stderr()
        );
        assert!(second.executed().is_empty(), "{}", second.stderr());
    }
    // `resume` with no ids skips a run that is being driven.
    let all = env.run(&["resume"]);
    all.expect_code(Some(0));
    assert!(
        all.stderr().contains("no interrupted runs"),
        "{}",
        all.stderr()
    );

    let first = finish(first, "first durable run", &env.db());
    first.success();
}

#[test]
fn bad_input_gets_a_clear_error_and_exit_code() {
    let env = Env::new();
    let wasm = guest("testbed");
    let wasm = wasm.to_str().expect("utf-8 path");

    let bad_json = env.run(&["run", wasm, "--input", "{not json"]);
    bad_json.expect_code(Some(2));
    assert!(
        bad_json.stderr().contains("not valid JSON"),
        "{}",
        bad_json.stderr()
    );

    let text = env.dir.path().join("notes.wasm");
    std::fs::write(&text, "hello").expect("write");
    let not_wasm = env.run(&["run", text.to_str().expect("utf-8")]);
    not_wasm.expect_code(Some(2));
    assert!(
        not_wasm.stderr().contains("is not a WebAssembly file"),
        "{}",
        not_wasm.stderr()
    );

    let core = env.dir.path().join("core.wasm");
    std::fs::write(&core, b"\0asm\x01\0\0\0").expect("write");
    let core_module = env.run(&["run", core.to_str().expect("utf-8")]);
    core_module.expect_code(Some(2));
    assert!(
        core_module
            .stderr()
            .contains("core WebAssembly module, not a component"),
        "{}",
        core_module.stderr()
    );

    let no_db = env.run(&["resume", "no-such-run"]);
    no_db.expect_code(Some(3));
    assert!(
        no_db.stderr().contains("there is no database"),
        "{}",
        no_db.stderr()
    );
    assert!(!env.db().exists(), "resume does not create a database");
    env.run(&[
        "run",
        wasm,
        "--input",
        r#"{"mode":"seq3"}"#,
        "--id",
        "exists",
    ])
    .success();
    let missing = env.run(&["resume", "no-such-run"]);
    missing.expect_code(Some(3));
    assert!(
        missing.stderr().contains("no run with id \"no-such-run\""),
        "{}",
        missing.stderr()
    );

    let usage = env.run(&["run"]);
    usage.expect_code(Some(2));

    let budget = env
        .cmd(&["list"])
        .env("DURABLE_CACHE_MAX_MB", "lots")
        .output()
        .expect("durable starts");
    assert_eq!(budget.status.code(), Some(2));
    let said = String::from_utf8_lossy(&budget.stderr);
    assert!(
        said.contains("DURABLE_CACHE_MAX_MB must be a number of MiB"),
        "{said}"
    );

    // Same id, other input: refused, the run untouched.
    env.crash_after(wasm, r#"{"mode":"seq3"}"#, "x", "step_a#1");
    let other = env.run(&["run", wasm, "--input", r#"{"mode":"repeat"}"#, "--id", "x"]);
    other.expect_code(Some(2));
    assert!(
        other.stderr().contains("different input"),
        "{}",
        other.stderr()
    );
}

#[test]
fn a_database_file_of_another_kind_is_refused_and_left_as_it_was() {
    let env = Env::new();
    std::fs::write(
        env.db(),
        "precious notes, not a database at all, long enough",
    )
    .expect("write");
    let wasm = guest("testbed");
    let run = env.run(&[
        "run",
        wasm.to_str().expect("utf-8"),
        "--input",
        r#"{"mode":"seq3"}"#,
    ]);
    run.expect_code(Some(2));
    assert!(
        run.stderr()
            .contains("cannot be used as a durable database"),
        "{}",
        run.stderr()
    );
    assert_eq!(
        std::fs::read_to_string(env.db()).expect("read"),
        "precious notes, not a database at all, long enough"
    );
}

#[test]
fn a_second_start_loads_the_compiled_component_from_the_cache() {
    let env = Env::new();
    let wasm = guest("testbed");
    let cache = env.dir.path().join("cache");
    let start = |id: &str| {
        let mut c = env.cmd(&[
            "run",
            wasm.to_str().expect("utf-8"),
            "--input",
            r#"{"mode":"seq3"}"#,
            "--id",
            id,
        ]);
        c.arg("--cache-dir")
            .arg(&cache)
            .env("RUST_LOG", "durable=debug");
        let out = c.output().expect("durable starts");
        crate::util::Run::new(format!("{c:?}"), out, env.db())
    };
    let first = start("one");
    first.success();
    assert!(
        first.stderr().contains("component loaded source=Compiled"),
        "{}",
        first.stderr()
    );
    let names: Vec<String> = std::fs::read_dir(&cache)
        .expect("cache dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    // One compiled component, with the digest it is checked against.
    assert_eq!(names.len(), 2, "{names:?}");
    assert_eq!(
        names.iter().filter(|n| n.ends_with(".cwasm")).count(),
        1,
        "{names:?}"
    );
    assert_eq!(
        names
            .iter()
            .filter(|n| n.ends_with(".cwasm.sha256"))
            .count(),
        1,
        "{names:?}"
    );
    let second = start("two");
    second.success();
    assert!(
        second.stderr().contains("component loaded source=Cache"),
        "{}",
        second.stderr()
    );
}

#[test]
fn a_component_of_another_world_is_refused_naming_what_is_missing() {
    let env = Env::new();
    let run = env.run(&["run", &crate::util::wasm("hello")]);
    run.expect_code(Some(2));
    let err = run.stderr();
    assert!(err.contains("is not a durable workflow component"), "{err}");
    assert!(err.contains("durable:workflow/steps"), "{err}");
    assert!(
        !env.db().exists(),
        "a refused component creates no database"
    );
}

#[test]
fn a_guest_that_returns_invalid_json_gets_a_clear_error() {
    let env = Env::new();
    let raw = crate::util::wasm("raw");
    // From a step: the step fails (permanently), the workflow sees why.
    let run = env.run(&["run", &raw, "--id", "s"]);
    let out = run.success();
    let msg = out["step_error"].as_str().unwrap_or_default();
    assert!(
        msg.contains("step garbage#1 returned invalid JSON"),
        "{out}"
    );
    // From the workflow itself: the run fails.
    let bad = env.run(&["run", &raw, "--input", r#""bad-output""#, "--id", "w"]);
    bad.expect_code(Some(1));
    assert!(
        bad.stderr().contains("the workflow returned invalid JSON"),
        "{}",
        bad.stderr()
    );
}

#[test]
fn a_truncated_database_is_refused_and_not_overwritten() {
    let env = Env::new();
    env.run(&[
        "run",
        &crate::util::wasm("testbed"),
        "--input",
        r#"{"mode":"long","n":40}"#,
        "--id",
        "t",
    ])
    .success();
    // Fold the WAL into the main file, then cut the file in the middle.
    rusqlite::Connection::open(env.db())
        .and_then(|c| c.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)"))
        .expect("checkpoint");
    let bytes = std::fs::read(env.db()).expect("read");
    assert!(bytes.len() > 8192, "the database is large enough to cut");
    std::fs::write(env.db(), &bytes[..bytes.len() / 2]).expect("truncate");
    let cut = std::fs::read(env.db()).expect("read");
    let run = env.run(&["resume", "t"]);
    assert_ne!(run.out.status.code(), Some(0), "{}", run.stderr());
    let err = run.stderr();
    assert!(
        err.contains("corrupt") || err.contains("malformed"),
        "{err}"
    );
    assert_eq!(
        std::fs::read(env.db()).expect("read"),
        cut,
        "the file was changed"
    );
}

#[test]
fn a_database_of_a_newer_schema_is_refused() {
    let env = Env::new();
    env.run(&[
        "run",
        &crate::util::wasm("testbed"),
        "--input",
        r#"{"mode":"seq3"}"#,
        "--id",
        "n",
    ])
    .success();
    rusqlite::Connection::open(env.db())
        .and_then(|c| c.execute_batch("PRAGMA user_version = 99"))
        .expect("bump");
    let run = env.run(&["resume", "n"]);
    run.expect_code(Some(2));
    assert!(
        run.stderr().contains("schema version 99"),
        "{}",
        run.stderr()
    );
    assert!(run.stderr().contains("upgrade durable"), "{}", run.stderr());
}

#[test]
fn a_database_locked_by_another_process_gets_a_clear_message_after_a_wait() {
    let env = Env::new();
    let testbed = crate::util::wasm("testbed");
    env.run(&[
        "run",
        &testbed,
        "--input",
        r#"{"mode":"seq3"}"#,
        "--id",
        "first",
    ])
    .success();
    let holder = rusqlite::Connection::open(env.db()).expect("open");
    holder
        .execute_batch("BEGIN IMMEDIATE")
        .expect("take the write lock");
    let started = std::time::Instant::now();
    let run = env.run(&[
        "run",
        &testbed,
        "--input",
        r#"{"mode":"seq3"}"#,
        "--id",
        "second",
        "--lock-wait-ms",
        "6000",
    ]);
    run.expect_code(Some(6));
    let err = run.stderr();
    assert!(err.contains("locked by another process"), "{err}");
    assert!(!err.to_lowercase().contains("sqlite_busy"), "{err}");
    assert!(
        started.elapsed() >= std::time::Duration::from_secs(4),
        "it waited for the lock first"
    );
    holder.execute_batch("ROLLBACK").expect("release");
    // Once the lock is gone, the same command works and nothing was lost.
    env.run(&[
        "run",
        &testbed,
        "--input",
        r#"{"mode":"seq3"}"#,
        "--id",
        "second",
    ])
    .success();
    assert_eq!(env.query("SELECT count(*) FROM runs"), [["2"]]);
}

#[test]
fn the_durability_mode_is_chosen_by_flag_or_environment() {
    let env = Env::new();
    let testbed = crate::util::wasm("testbed");
    let fast = env.run(&[
        "run",
        &testbed,
        "--input",
        r#"{"mode":"seq3"}"#,
        "--id",
        "f",
        "--durability",
        "process-crash",
    ]);
    fast.success();
    let mut c = env.cmd(&[
        "run",
        &testbed,
        "--input",
        r#"{"mode":"seq3"}"#,
        "--id",
        "g",
    ]);
    c.env("DURABLE_DURABILITY", "process-crash");
    assert!(c.output().expect("durable starts").status.success());
    let bad = env.run(&["run", &testbed, "--durability", "sometimes"]);
    bad.expect_code(Some(2));
    assert!(
        bad.stderr().contains("power-loss") && bad.stderr().contains("process-crash"),
        "{}",
        bad.stderr()
    );
}
