//! `cargo bench`: builds the bench guest and runs `durable-bench` (release
//! build, real guest, real store on disk). Arguments after `--` go to
//! `durable-bench` (for example `cargo bench -- --repeats 9`).

use std::path::Path;
use std::process::Command;

fn main() {
    let root = &Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    // The guest gets its own target directory: the outer cargo may still
    // hold the lock on the main one.
    let target = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/bench-guest");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let built = Command::new(cargo)
        .current_dir(root)
        .args([
            "build",
            "--release",
            "--target",
            "wasm32-wasip2",
            "-p",
            "bench",
            "--target-dir",
        ])
        .arg(&target)
        .env_remove("CARGO_TARGET_DIR")
        .status()
        .expect("cargo runs");
    assert!(built.success(), "building the bench guest failed");
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    // The release `durable` is built by the same `cargo bench` (the CLI's
    // package has a bench of its own), beside durable-bench.
    let durable = Path::new(env!("CARGO_BIN_EXE_durable-bench")).with_file_name("durable");
    assert!(
        durable.is_file(),
        "{} is not built: run `cargo bench` from the workspace root (it builds the CLI too), \
         or `cargo build --release -p durable-cli` first",
        durable.display()
    );
    let status = Command::new(env!("CARGO_BIN_EXE_durable-bench"))
        .arg("--guest")
        .arg(target.join("wasm32-wasip2/release/bench.wasm"))
        .arg("--durable")
        .arg(&durable)
        .args(args)
        .status()
        .expect("durable-bench runs");
    std::process::exit(status.code().unwrap_or(1));
}
