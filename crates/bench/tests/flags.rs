//! `durable-bench` parses its flags (the suite itself runs in the
//! workspace's end-to-end tests, tests/e2e/bench.rs, with a built guest;
//! having a test here also makes `cargo test` build the binary for them).

use std::process::Command;

#[test]
fn the_bench_names_its_flags_and_refuses_unknown_ones() {
    let bench = env!("CARGO_BIN_EXE_durable-bench");
    let out = Command::new(bench).arg("--help").output().expect("runs");
    assert!(out.status.success(), "{out:?}");
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in ["--quick", "--guest", "--durable", "--dir"] {
        assert!(help.contains(flag), "{flag} missing from:\n{help}");
    }
    let out = Command::new(bench)
        .arg("--no-such-flag")
        .output()
        .expect("runs");
    assert!(!out.status.success(), "{out:?}");
}
