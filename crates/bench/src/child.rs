//! One workload, run inside a child process of the benchmark.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use durable::runner::{Level, Observer, Runtime, RuntimeConfig, Source};
use durable::store::{Durability, Outcome, RunStatus, Store};
use serde_json::json;

/// Remembers when each step started (W3 needs the first new one), and
/// when (ms since the epoch) each run's `step#2` started (W5's wake-up lag).
#[derive(Default)]
struct Starts(Mutex<Vec<(String, Instant)>>, Mutex<Vec<(String, i64)>>);

impl Observer for Starts {
    fn step_started(&self, run_id: &str, key: &str) {
        if let Ok(mut v) = self.0.lock() {
            v.push((key.to_string(), Instant::now()));
        }
        if key == "step#2"
            && let Ok(mut v) = self.1.lock()
        {
            v.push((run_id.to_string(), durable::clock::now_ms()));
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
        // The PostgreSQL section hands a database URL down.
        let db = std::env::var_os("DURABLE_BENCH_DB")
            .map_or_else(|| dir.join("durable.db"), PathBuf::from);
        let store = Store::open_with(&db, durability).await?;
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
        let mut parked: Option<(u64, u64)> = None;
        let mut wake_lag: Option<(Option<f64>, Option<f64>, usize)> = None;
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
            // W6: a parent starting n children (two steps each) and awaiting
            // them all; this process drives the children as they come.
            "w6" => {
                let mut handed = runtime
                    .child_starts()
                    .ok_or_else(|| anyhow::anyhow!("the child starts were taken"))?;
                let driver = runtime.clone();
                let children = tokio::spawn(async move {
                    let mut set = tokio::task::JoinSet::new();
                    while let Some(id) = handed.recv().await {
                        let runtime = driver.clone();
                        set.spawn(async move { runtime.resume(&id).await });
                    }
                    while let Some(done) = set.join_next().await {
                        done??;
                    }
                    anyhow::Ok(())
                });
                let done = runtime
                    .start(&workflow, "w6", &format!(r#"{{"mode":"parent","n":{n}}}"#))
                    .await?;
                anyhow::ensure!(
                    done.run.status == RunStatus::Succeeded,
                    "the parent ended {}: {:?}",
                    done.run.status,
                    done.run.error
                );
                children.abort();
                steps = u64::from(n) * 2;
            }
            // Serve's parked runs: n runs waiting for an event, left in the
            // database for a server to take over.
            "eventpark" => {
                park(&runtime, &workflow, n, "e", r#"{"mode":"await"}"#).await?;
                steps = u64::from(n);
            }
            // W5, parking: n runs that each sleep an hour, started at once
            // and parked; what the process and the database hold then.
            "w5park" => {
                park(
                    &runtime,
                    &workflow,
                    n,
                    "w5-",
                    r#"{"mode":"sleep","n":3600000}"#,
                )
                .await?;
                steps = u64::from(n);
                parked = Some((rss_kib(), db_bytes(&dir)));
            }
            // W5, waking: n runs that each sleep 1 s; each is resumed when
            // due (a timer per run, as a daemon's timer wheel would); the
            // lag is from the wake-up time to the next step starting.
            "w5wake" | "w5burst" => {
                let pace_ms: u64 = if what == "w5wake" { 2 } else { 0 };
                let mut set = tokio::task::JoinSet::new();
                for i in 0..n {
                    let (runtime, workflow) = (runtime.clone(), workflow.clone());
                    set.spawn(async move {
                        // Started at 500 runs/s, so they come due at that
                        // rate too (a burst of wake-ups measures throughput,
                        // not timer lag; BENCHMARKS.md has both).
                        tokio::time::sleep(Duration::from_millis(u64::from(i) * pace_ms)).await;
                        let id = format!("w5-{i}");
                        let parked = runtime
                            .start(&workflow, &id, r#"{"mode":"sleep","n":1000}"#)
                            .await?;
                        let wake = parked.run.wake_at_ms.unwrap_or(0);
                        let left = wake.saturating_sub(durable::clock::now_ms()).max(0);
                        tokio::time::sleep(Duration::from_millis(left as u64)).await;
                        let done = runtime.resume(&id).await?;
                        anyhow::ensure!(
                            done.run.status == RunStatus::Succeeded,
                            "run {id} ended {}",
                            done.run.status
                        );
                        Ok((id, wake))
                    });
                }
                let mut wakes = std::collections::HashMap::new();
                while let Some(done) = set.join_next().await {
                    let (id, wake) = done??;
                    wakes.insert(id, wake);
                }
                let starts = starts.1.lock().map(|v| v.clone()).unwrap_or_default();
                let mut lag: Vec<f64> = starts
                    .iter()
                    .filter_map(|(id, at)| wakes.get(id).map(|w| (at - w) as f64))
                    .collect();
                lag.sort_by(f64::total_cmp);
                let pct = |p: f64| {
                    lag.get(((lag.len() as f64 - 1.0) * p).round() as usize)
                        .copied()
                };
                wake_lag = Some((pct(0.5), pct(0.99), lag.len()));
                steps = u64::from(n) * 2;
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
            "parked_rss_kib": parked.map(|p| p.0),
            "parked_db_bytes": parked.map(|p| p.1),
            "wake_lag_p50_ms": wake_lag.and_then(|l| l.0),
            "wake_lag_p99_ms": wake_lag.and_then(|l| l.1),
            "woken": wake_lag.map(|l| l.2),
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

/// Resident set size now, in KiB (`VmRSS`).
fn rss_kib() -> u64 {
    proc_field("/proc/self/status", "VmRSS:")
}

/// Bytes of the database with its WAL.
fn db_bytes(dir: &std::path::Path) -> u64 {
    ["durable.db", "durable.db-wal"]
        .iter()
        .filter_map(|f| std::fs::metadata(dir.join(f)).ok())
        .map(|m| m.len())
        .sum()
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

/// Starts runs `{prefix}0..n` with `input` all at once, and checks that
/// every one of them parked.
async fn park(
    runtime: &Arc<Runtime>,
    workflow: &durable::runner::LoadedWorkflow,
    n: u32,
    prefix: &str,
    input: &'static str,
) -> anyhow::Result<()> {
    let mut set = tokio::task::JoinSet::new();
    for i in 0..n {
        let (runtime, workflow, id) = (runtime.clone(), workflow.clone(), format!("{prefix}{i}"));
        set.spawn(async move { runtime.start(&workflow, &id, input).await });
    }
    while let Some(done) = set.join_next().await {
        let finished = done??;
        anyhow::ensure!(
            finished.run.status == RunStatus::Waiting,
            "run {} is {}, not waiting",
            finished.run.id,
            finished.run.status
        );
    }
    Ok(())
}
