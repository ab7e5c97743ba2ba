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

    let missing = env.run(&["resume", "no-such-run"]);
    missing.expect_code(Some(3));
    assert!(
        missing.stderr().contains("no run with id \"no-such-run\""),
        "{}",
        missing.stderr()
    );

    let usage = env.run(&["run"]);
    usage.expect_code(Some(2));

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
    let entries: Vec<_> = std::fs::read_dir(&cache).expect("cache dir").collect();
    assert_eq!(entries.len(), 1, "one compiled component in the cache");
    let second = start("two");
    second.success();
    assert!(
        second.stderr().contains("component loaded source=Cache"),
        "{}",
        second.stderr()
    );
}
