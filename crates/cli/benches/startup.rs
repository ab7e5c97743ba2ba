//! `cargo bench`: how long the `durable` binary takes to start and answer
//! a read (`durable list` on an empty database): the floor under every
//! scripted call of the CLI. Being a bench of this package also makes
//! `cargo bench` build the release `durable` that durable-bench's workloads
//! drive (crates/bench/benches/workloads.rs).

use std::process::Command;
use std::time::{Duration, Instant};

fn main() {
    let durable = env!("CARGO_BIN_EXE_durable");
    let dir = std::env::temp_dir().join(format!("durable-startup-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a scratch directory");
    let db = dir.join("empty.db");
    let mut times: Vec<Duration> = Vec::new();
    for _ in 0..21 {
        let started = Instant::now();
        let out = Command::new(durable)
            .args(["list", "--db"])
            .arg(&db)
            .output()
            .expect("durable runs");
        times.push(started.elapsed());
        assert!(out.status.success(), "{out:?}");
    }
    let _ = std::fs::remove_dir_all(&dir);
    times.sort();
    println!(
        "durable list (empty database): median {:.1} ms, range {:.1}-{:.1} ms over {} runs",
        times[times.len() / 2].as_secs_f64() * 1e3,
        times[0].as_secs_f64() * 1e3,
        times[times.len() - 1].as_secs_f64() * 1e3,
        times.len()
    );
}
