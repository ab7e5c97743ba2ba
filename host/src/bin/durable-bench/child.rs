//! One workload, run inside a child process of the benchmark.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use durable::runner::{Level, Observer, Runtime, RuntimeConfig, Source};
use durable::store::{Durability, Outcome, Store};
use serde_json::json;

/// Remembers when each step started (W3 needs the first new one).
#[derive(Default)]
struct Starts(Mutex<Vec<(String, Instant)>>);

impl Observer for Starts {
    fn step_started(&self, _: &str, key: &str) {
        if let Ok(mut v) = self.0.lock() {
            v.push((key.to_string(), Instant::now()));
        }
    }
    fn step(&self, _: &str, _: &str, _: Source, _: &Outcome, _: Duration) {}
    fn log(&self, _: &str, _: &str, _: Level, _: &str) {}
}

/// `[what, dir, guest, n, durability, allocation]`: runs the workload and
/// prints its metrics as one JSON object.
pub fn main(args: &[String]) -> anyhow::Result<()> {
    let [what, dir, guest, n, durability, allocation] = args else {
        anyhow::bail!("usage: --child WHAT DIR GUEST N DURABILITY pool|on-demand");
    };
    let (dir, guest, n): (PathBuf, PathBuf, u32) = (dir.into(), guest.into(), n.parse()?);
    let durability = match durability.as_str() {
        "power-loss" => Durability::PowerLoss,
        "process-crash" => Durability::ProcessCrash,
        other => anyhow::bail!("unknown durability {other}"),
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let store = Store::open_with(&dir.join("durable.db"), durability).await?;
        let starts = Arc::new(Starts::default());
        let mut config = RuntimeConfig {
            cache_dir: Some(dir.join("cache")),
            observer: starts.clone(),
            ..RuntimeConfig::default()
        };
        if allocation == "on-demand" {
            config.pool_instances = None;
        }
        let runtime = Arc::new(Runtime::new(store.clone(), config)?);
        let workflow = runtime.load("bench.wasm", std::fs::read(&guest)?)?;
        let (io0, stats0) = (write_bytes(), store.stats());
        let t0 = Instant::now();
        let mut steps = u64::from(n);
        match what.as_str() {
            "warmup" => {
                runtime
                    .start(&workflow, "warmup", r#"{"mode":"seq","n":1}"#)
                    .await?;
            }
            "w1" => {
                runtime
                    .start(&workflow, "w1", &format!(r#"{{"mode":"seq","n":{n}}}"#))
                    .await?;
            }
            "w2" => {
                runtime
                    .start(&workflow, "w2", &format!(r#"{{"mode":"fanout","n":{n}}}"#))
                    .await?;
            }
            "w3" => {
                runtime.resume("w3").await?;
                steps = 1;
            }
            "w4" => {
                let mut set = tokio::task::JoinSet::new();
                for i in 0..n {
                    let (runtime, workflow) = (runtime.clone(), workflow.clone());
                    set.spawn(async move {
                        runtime
                            .start(
                                &workflow,
                                &format!("w4-{i}"),
                                &format!(r#"{{"mode":"onboarding","n":{i}}}"#),
                            )
                            .await
                    });
                }
                while let Some(done) = set.join_next().await {
                    done??;
                }
                steps = u64::from(n) * 4;
            }
            other => anyhow::bail!("unknown workload {other}"),
        }
        let wall = t0.elapsed();
        let stats = store.stats();
        // W3: how long the replay of the recorded steps took before the
        // first new step started.
        let first_new = format!("step#{}", n + 1);
        let replay_ms = starts.0.lock().ok().and_then(|v| {
            v.iter()
                .find(|(k, _)| *k == first_new)
                .map(|(_, at)| (*at - t0).as_secs_f64() * 1000.0)
        });
        let metrics = json!({
            "wall_ms": wall.as_secs_f64() * 1000.0,
            "steps": steps,
            "write_bytes": write_bytes().saturating_sub(io0),
            "commits": stats.commits - stats0.commits,
            "jobs": stats.jobs - stats0.jobs,
            "peak_rss_kib": peak_rss_kib(),
            "replay_ms": replay_ms,
            "load_ms": workflow.load_time.as_secs_f64() * 1000.0,
        });
        println!("{metrics}");
        drop(runtime);
        store.close().await;
        Ok(())
    })
}

/// Bytes this process caused to be written to storage (`/proc/self/io`).
fn write_bytes() -> u64 {
    proc_field("/proc/self/io", "write_bytes:")
}

/// Peak resident set size in KiB (`VmHWM`).
fn peak_rss_kib() -> u64 {
    proc_field("/proc/self/status", "VmHWM:")
}

fn proc_field(path: &str, name: &str) -> u64 {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}
