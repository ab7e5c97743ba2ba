//! The benchmark suite runs (tiny sizes; numbers are not checked here:
//! timing assertions do not belong in tests on noisy machines).

use std::process::Command;

use crate::util::{bin, guest};

#[test]
fn the_benchmark_suite_runs_end_to_end() {
    let scratch = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("temp dir");
    let out = Command::new(bin("durable-bench"))
        .arg("--quick")
        .arg("--guest")
        .arg(guest("bench"))
        .arg("--durable")
        .arg(bin("durable"))
        .arg("--dir")
        .arg(scratch.path())
        .output()
        .expect("durable-bench starts");
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{table}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for row in [
        "fsync bound",
        "W1 steps/s",
        "W2 one parallel",
        "W3 restart",
        "W3 replay",
        "W4 20 onboarding runs",
        "warm compile cache",
    ] {
        assert!(table.contains(row), "{row:?} missing in:\n{table}");
    }
}
