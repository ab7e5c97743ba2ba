//! The binary's own contract with scripts: help on stdout with success,
//! bad usage on stderr with exit code 2. (Everything else is in the
//! workspace's end-to-end tests, tests/e2e, which drive this binary; having
//! a test here also makes `cargo test` build it for them.)

use std::process::Command;

fn durable(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_durable"))
        .args(args)
        .env_remove("DURABLE_DB")
        .output()
        .expect("the durable binary runs")
}

#[test]
fn help_lists_the_verbs_and_exits_0() {
    let out = durable(&["--help"]);
    assert!(out.status.success(), "{out:?}");
    let help = String::from_utf8_lossy(&out.stdout);
    for verb in [
        "run", "resume", "list", "show", "cancel", "fork", "event", "check",
    ] {
        assert!(help.contains(verb), "{verb} missing from:\n{help}");
    }
    #[cfg(feature = "serve")]
    assert!(help.contains("serve"), "{help}");
}

#[test]
fn an_unknown_verb_or_flag_is_usage_exit_2() {
    for args in [&["frobnicate"][..], &["run", "--no-such-flag"][..]] {
        let out = durable(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {out:?}");
        assert!(out.stdout.is_empty(), "{args:?}: {out:?}");
        assert!(!out.stderr.is_empty(), "{args:?}: {out:?}");
    }
}

#[test]
fn crash_points_are_not_flags_of_serve() {
    // A server's drives are never crashed on purpose: the demo flags are
    // run/resume/fork's.
    let out = durable(&["serve", "--crash-after", "x#1"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
}
