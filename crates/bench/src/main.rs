//! `durable-bench`: the benchmark suite of BENCHMARKS.md.
//!
//! The parent process runs every workload several times, each in a fresh
//! child process (so peak memory is the workload's own), and prints a table
//! of medians and ranges with ratios against the machine's fsync bound,
//! measured in the same run on the same file system. `cargo bench` builds
//! what it needs and runs this; `--quick` runs tiny sizes (a smoke test).

mod child;
mod measure;
mod node;
mod noop;
mod serve;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use clap::Parser;
use serde_json::Value;

use measure::Summary;

/// Benchmarks of the durable engine on fixed workloads.
#[derive(Debug, Parser)]
#[command(name = "durable-bench")]
struct Args {
    /// The bench guest component [default: target/wasm32-wasip2/release/bench.wasm].
    #[arg(long, value_name = "PATH")]
    guest: Option<PathBuf>,
    /// The durable binary [default: next to this one].
    #[arg(long, value_name = "PATH")]
    durable: Option<PathBuf>,
    /// Scratch directory (databases, compile caches) [default: a new one
    /// under the system temp dir].
    #[arg(long, value_name = "PATH")]
    dir: Option<PathBuf>,
    /// Repeats per workload.
    #[arg(long, value_name = "NUM", default_value_t = 5)]
    repeats: usize,
    /// Tiny sizes and one repeat: checks that everything runs.
    #[arg(long)]
    quick: bool,
    /// Also measure W1, W2 and W4 with instances allocated on demand
    /// instead of from the pool (the before/after of pooling).
    #[arg(long)]
    compare_pooling: bool,
    /// Also measure on PostgreSQL: a server URL whose user may create
    /// databases (one per sample) [env: DURABLE_TEST_POSTGRES, as
    /// scripts/with-postgres.sh sets it].
    #[arg(long, value_name = "URL", env = "DURABLE_TEST_POSTGRES")]
    postgres: Option<String>,
    /// Only these sections (comma-separated): w1w4, w2, w5, w3, w6, queue,
    /// serve, node, cold [default: all]. The fsync bound is always measured.
    #[arg(long, value_name = "SECTIONS", value_delimiter = ',')]
    only: Vec<String>,
    /// Internal: run one workload in this process and print its metrics.
    #[arg(long, hide = true, num_args = 1.., value_name = "WORKLOAD")]
    child: Option<Vec<String>>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if let Some(child) = &args.child {
        return child::main(child);
    }
    let exe = std::env::current_exe()?;
    let bin_dir = exe.parent().unwrap_or(Path::new(".")).to_path_buf();
    let durable = args
        .durable
        .clone()
        .unwrap_or_else(|| bin_dir.join("durable"));
    let guest = args.guest.clone().unwrap_or_else(|| {
        // target/<profile>/durable-bench -> target/wasm32-wasip2/release/bench.wasm
        bin_dir
            .parent()
            .unwrap_or(Path::new("."))
            .join("wasm32-wasip2/release/bench.wasm")
    });
    anyhow::ensure!(
        guest.exists(),
        "no bench guest at {} (build it: cargo build --release --target wasm32-wasip2 -p bench)",
        guest.display()
    );
    anyhow::ensure!(
        durable.exists(),
        "no durable binary at {}",
        durable.display()
    );
    let scratch = match &args.dir {
        Some(d) => d.clone(),
        None => std::env::temp_dir().join(format!("durable-bench-{}", std::process::id())),
    };
    std::fs::create_dir_all(&scratch)?;
    let sizes = Sizes::new(args.quick);
    let repeats = if args.quick { 1 } else { args.repeats.max(1) };
    let bench = Bench {
        exe,
        durable,
        guest,
        scratch: scratch.clone(),
        sizes,
        repeats,
        compare_pooling: args.compare_pooling,
        postgres: args.postgres.clone(),
        only: args.only.clone(),
    };
    let report = bench.run_all()?;
    println!("{report}");
    if args.dir.is_none() {
        let _ = std::fs::remove_dir_all(&scratch);
    }
    Ok(())
}

/// Workload sizes.
#[derive(Clone, Copy)]
struct Sizes {
    w1_steps: u32,
    w2_fanout: u32,
    w3_steps: u32,
    w4_runs: u32,
    w5_parked: u32,
    w5_woken: u32,
    w6_children: u32,
    rated_runs: u32,
    fsync_ops: u32,
    serve_runs: u32,
    serve_parked: u32,
    serve_starts: u32,
    node_polls: u32,
    node_hold_ms: u64,
}

impl Sizes {
    fn new(quick: bool) -> Sizes {
        if quick {
            Sizes {
                w1_steps: 50,
                w2_fanout: 10,
                w3_steps: 50,
                w4_runs: 20,
                w5_parked: 50,
                w5_woken: 20,
                w6_children: 20,
                rated_runs: 10,
                fsync_ops: 100,
                serve_runs: 20,
                serve_parked: 50,
                serve_starts: 10,
                node_polls: 50,
                node_hold_ms: 1000,
            }
        } else {
            Sizes {
                w1_steps: 1000,
                w2_fanout: 100,
                w3_steps: 1000,
                w4_runs: 1000,
                w5_parked: 10_000,
                w5_woken: 1000,
                w6_children: 1000,
                rated_runs: 200,
                fsync_ops: 2000,
                serve_runs: 1000,
                serve_parked: 100_000,
                serve_starts: 200,
                node_polls: 10_000,
                node_hold_ms: 5000,
            }
        }
    }
}

struct Bench {
    exe: PathBuf,
    durable: PathBuf,
    guest: PathBuf,
    scratch: PathBuf,
    sizes: Sizes,
    repeats: usize,
    compare_pooling: bool,
    postgres: Option<String>,
    only: Vec<String>,
}

impl Bench {
    /// Whether section `name` is measured (`--only`).
    fn wants(&self, name: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|o| o == name)
    }

    fn fresh(&self, name: &str) -> anyhow::Result<PathBuf> {
        let d = self.scratch.join(name);
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d)?;
        Ok(d)
    }

    /// Runs workload `what` in a child process and returns its metrics.
    fn child(&self, what: &str, dir: &Path, n: u32, durability: &str) -> anyhow::Result<Value> {
        self.child_with(what, dir, n, durability, "pool")
    }

    /// A new, empty database on the PostgreSQL server at `server`.
    fn postgres_db(server: &str) -> anyhow::Result<String> {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let name = format!(
            "bench{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(async {
                let (client, connection) =
                    tokio_postgres::connect(server, tokio_postgres::NoTls).await?;
                tokio::spawn(connection);
                client
                    .batch_execute(&format!("CREATE DATABASE {name}"))
                    .await
            })?;
        let (base, _) = server
            .rsplit_once('/')
            .ok_or_else(|| anyhow::anyhow!("{server}: a URL with a database"))?;
        Ok(format!("{base}/{name}"))
    }

    /// W1 and W4 in-process on PostgreSQL, and W4 over HTTP with one and
    /// with three servers sharing the database.
    fn run_postgres(
        &self,
        server: &str,
        warm: &Path,
        fsync: f64,
        report: &mut measure::Report,
    ) -> anyhow::Result<()> {
        let s = self.sizes;
        let label = " (PostgreSQL)";
        let (mut w1, mut w4) = (measure::Samples::default(), measure::Samples::default());
        let (mut one, mut three) = (Vec::new(), Vec::new());
        for r in 0..self.repeats {
            for (what, n, samples) in [("w1", s.w1_steps, &mut w1), ("w4", s.w4_runs, &mut w4)] {
                let dir = self.fresh(&format!("pg-{what}-{r}"))?;
                measure::link_cache(warm, &dir)?;
                let db = Self::postgres_db(server)?;
                samples.push(&self.child_on(what, &dir, n, "power-loss", "pool", Some(&db))?);
            }
            for (hosts, rates) in [(1usize, &mut one), (3, &mut three)] {
                let dir = self.fresh(&format!("pg-serve{hosts}-{r}"))?;
                measure::link_cache(warm, &dir)?;
                let db = PathBuf::from(Self::postgres_db(server)?);
                let servers = (0..hosts)
                    .map(|_| serve::Server::start_on(&self.durable, &dir, &db))
                    .collect::<anyhow::Result<Vec<_>>>()?;
                let digest = serve::upload(&servers[0], &self.guest)?;
                let refs: Vec<&serve::Server> = servers.iter().collect();
                rates.push(serve::w4_http_over(&refs, &digest, s.serve_runs, 32)?);
            }
        }
        report.add_w1(label, &w1, s.w1_steps, fsync);
        report.add_w4(label, &w4, s.w4_runs);
        report.add(
            format!("W4 over HTTP, {} runs, 1 server{label}", s.serve_runs),
            Summary::of(&one),
            "wf/s",
            "target >= 1000",
        );
        report.add(
            format!(
                "W4 over HTTP, {} runs, 3 servers on one database{label}",
                s.serve_runs
            ),
            Summary::of(&three),
            "wf/s",
            "clients spread over the servers",
        );
        Ok(())
    }

    /// `durable serve` driven by the Node.js client: W4 over HTTP, 1,000
    /// concurrent starts, and long polls held open on waiting runs.
    fn run_node(&self, warm: &Path, report: &mut measure::Report) -> anyhow::Result<()> {
        let s = self.sizes;
        let (mut w4, mut starts, mut polls) = (Vec::new(), Vec::new(), Vec::new());
        let (mut ceiling, mut burst, mut burst_commits) = (Vec::new(), Vec::new(), Vec::new());
        let mut alone = Vec::new();
        for r in 0..self.repeats {
            let dir = self.fresh(&format!("node-w4-{r}"))?;
            measure::link_cache(warm, &dir)?;
            let setup = node::Setup {
                durable: &self.durable,
                guest: &self.guest,
                dir: &dir,
            };
            w4.push(node::runs(&setup, s.serve_runs, false)?);
            let dir = self.fresh(&format!("node-starts-{r}"))?;
            measure::link_cache(warm, &dir)?;
            let setup = node::Setup { dir: &dir, ..setup };
            starts.push(node::runs(&setup, s.serve_runs, true)?);
            ceiling.push(node::client_ceiling(&setup, s.serve_runs)?);
            alone.push(node::client_alone(&setup, s.serve_runs)?);
            let dir = self.fresh(&format!("node-burst-{r}"))?;
            measure::link_cache(warm, &dir)?;
            let setup = node::Setup { dir: &dir, ..setup };
            let (took, commits) = node::burst_of_starts(&setup, s.serve_runs)?;
            burst.push(took);
            burst_commits.push(commits);
            let dir = self.fresh(&format!("node-polls-{r}"))?;
            measure::link_cache(warm, &dir)?;
            let setup = node::Setup { dir: &dir, ..setup };
            polls.push(node::idle_polls(
                &setup,
                s.node_polls,
                s.node_hold_ms,
                |dir| {
                    self.child("eventpark", dir, s.node_polls, "power-loss")
                        .map(drop)
                },
            )?);
        }
        report.add_node(
            &w4,
            &starts,
            &Summary::of(&polls),
            s.serve_runs,
            s.node_polls,
        );
        report.add_burst(
            &Summary::of(&ceiling),
            &Summary::of(&alone),
            &Summary::of(&burst),
            &Summary::of(&burst_commits),
            s.serve_runs,
        );
        Ok(())
    }

    /// [`Bench::child`] with a choice of instance allocation.
    fn child_with(
        &self,
        what: &str,
        dir: &Path,
        n: u32,
        durability: &str,
        allocation: &str,
    ) -> anyhow::Result<Value> {
        self.child_on(what, dir, n, durability, allocation, None)
    }

    /// [`Bench::child_with`] on database `db` (a PostgreSQL URL) instead
    /// of a file in `dir`.
    fn child_on(
        &self,
        what: &str,
        dir: &Path,
        n: u32,
        durability: &str,
        allocation: &str,
        db: Option<&str>,
    ) -> anyhow::Result<Value> {
        let mut cmd = Command::new(&self.exe);
        cmd.arg("--child").args([
            what,
            &dir.display().to_string(),
            &self.guest.display().to_string(),
            &n.to_string(),
            durability,
            allocation,
        ]);
        if let Some(db) = db {
            cmd.env("DURABLE_BENCH_DB", db);
        }
        let out = cmd.output()?;
        anyhow::ensure!(
            out.status.success(),
            "workload {what} failed: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(serde_json::from_slice(&out.stdout)?)
    }

    fn durable(
        &self,
        dir: &Path,
        args: &[&str],
    ) -> anyhow::Result<(std::process::ExitStatus, Duration)> {
        let started = Instant::now();
        let status = Command::new(&self.durable)
            .args(args)
            .env("DURABLE_DB", dir.join("durable.db"))
            .env("DURABLE_CACHE_DIR", dir.join("cache"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()?;
        Ok((status, started.elapsed()))
    }

    fn run_all(&self) -> anyhow::Result<measure::Report> {
        let mut report = measure::Report::default();
        let s = self.sizes;
        let guest = self.guest.display().to_string();

        // fsync bound, on the scratch file system.
        let mut fsync = Vec::new();
        for r in 0..self.repeats {
            fsync.push(measure::fsync_rate(
                &self.fresh(&format!("fsync{r}"))?,
                s.fsync_ops,
            )?);
        }
        let fsync = Summary::of(&fsync);
        report.fsync = fsync;

        // A warm compile cache shared by the in-process workloads.
        let warm = self.fresh("warm")?;
        self.child("warmup", &warm, 1, "power-loss")?;

        let engine = match self.wants("w1w4") {
            true => &[("power-loss", ""), ("process-crash", " (process-crash)")][..],
            false => &[],
        };
        for &(durability, label) in engine {
            let mut w1 = measure::Samples::default();
            for r in 0..self.repeats {
                let dir = self.fresh(&format!("w1-{durability}-{r}"))?;
                measure::link_cache(&warm, &dir)?;
                w1.push(&self.child("w1", &dir, s.w1_steps, durability)?);
            }
            report.add_w1(label, &w1, s.w1_steps, fsync.median);

            let mut w4 = measure::Samples::default();
            for r in 0..self.repeats {
                let dir = self.fresh(&format!("w4-{durability}-{r}"))?;
                measure::link_cache(&warm, &dir)?;
                w4.push(&self.child("w4", &dir, s.w4_runs, durability)?);
            }
            report.add_w4(label, &w4, s.w4_runs);
        }

        let mut w2 = measure::Samples::default();
        for r in 0..self.repeats * usize::from(self.wants("w2")) {
            let dir = self.fresh(&format!("w2-{r}"))?;
            measure::link_cache(&warm, &dir)?;
            w2.push(&self.child("w2", &dir, s.w2_fanout, "power-loss")?);
        }
        if self.wants("w2") {
            report.add_w2("", &w2, s.w2_fanout);
        }

        if self.compare_pooling {
            let label = " (on-demand instances)";
            let (mut w1, mut w2, mut w4) = (
                measure::Samples::default(),
                measure::Samples::default(),
                measure::Samples::default(),
            );
            for r in 0..self.repeats {
                for (what, n, samples) in [
                    ("w1", s.w1_steps, &mut w1),
                    ("w2", s.w2_fanout, &mut w2),
                    ("w4", s.w4_runs, &mut w4),
                ] {
                    let dir = self.fresh(&format!("{what}-ondemand-{r}"))?;
                    measure::link_cache(&warm, &dir)?;
                    samples.push(&self.child_with(what, &dir, n, "power-loss", "on-demand")?);
                }
            }
            report.add_w1(label, &w1, s.w1_steps, fsync.median);
            report.add_w2(label, &w2, s.w2_fanout);
            report.add_w4(label, &w4, s.w4_runs);
        }

        if self.wants("w5") {
            // W5: runs that wait hold (almost) nothing; waking them is quick.
            let (mut park, mut wake, mut burst) = (
                measure::Samples::default(),
                measure::Samples::default(),
                measure::Samples::default(),
            );
            for r in 0..self.repeats {
                let dir = self.fresh(&format!("w5park-{r}"))?;
                measure::link_cache(&warm, &dir)?;
                park.push(&self.child("w5park", &dir, s.w5_parked, "power-loss")?);
                let dir = self.fresh(&format!("w5wake-{r}"))?;
                measure::link_cache(&warm, &dir)?;
                wake.push(&self.child("w5wake", &dir, s.w5_woken, "power-loss")?);
                let dir = self.fresh(&format!("w5burst-{r}"))?;
                measure::link_cache(&warm, &dir)?;
                burst.push(&self.child("w5burst", &dir, s.w5_woken, "power-loss")?);
            }
            report.add_w5(&park, s.w5_parked, &wake, &burst, s.w5_woken);
        }
        if self.wants("w6") {
            // W6: a parent starting n child workflows (two steps each) and
            // awaiting them all, in process and over `durable serve`.
            let (mut inproc, mut http, mut http_rss) =
                (measure::Samples::default(), Vec::new(), Vec::new());
            for r in 0..self.repeats {
                let dir = self.fresh(&format!("w6-{r}"))?;
                measure::link_cache(&warm, &dir)?;
                inproc.push(&self.child("w6", &dir, s.w6_children, "power-loss")?);
                let dir = self.fresh(&format!("w6-serve-{r}"))?;
                measure::link_cache(&warm, &dir)?;
                let server = serve::Server::start(&self.durable, &dir)?;
                let digest = serve::upload(&server, &self.guest)?;
                http.push(serve::w6_http(&server, &digest, s.w6_children)?);
                http_rss.push(server.peak_rss_kib() as f64 / 1024.0);
            }
            report.add_w6(
                &inproc,
                &Summary::of(&http),
                &Summary::of(&http_rss),
                s.w6_children,
            );
        }
        if self.wants("queue") {
            // Queues over HTTP: W4 started plainly and into a queue of
            // concurrency 64 (throughput, the server's CPU per run: the
            // admission's cost), and runs admitted at 20/s.
            let (mut plain, mut queued, mut plain_cpu, mut queued_cpu, mut rated) =
                (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
            let runs = s.serve_runs;
            for r in 0..self.repeats {
                for (into, cpu, extra) in [
                    (&mut plain, &mut plain_cpu, serde_json::json!({})),
                    (
                        &mut queued,
                        &mut queued_cpu,
                        serde_json::json!({"queue": "q64"}),
                    ),
                ] {
                    let dir = self.fresh(&format!("queue-{r}"))?;
                    measure::link_cache(&warm, &dir)?;
                    let server = serve::Server::start(&self.durable, &dir)?;
                    let digest = serve::upload(&server, &self.guest)?;
                    let mut client = server.client()?;
                    let (status, body) = client.json(
                        "PUT",
                        "/v1/queues/q64",
                        &serde_json::json!({"concurrency": 64}),
                    )?;
                    anyhow::ensure!(status == 201, "queue: {status} {body}");
                    let before = server.cpu_seconds()?;
                    into.push(serve::w4_http_with(&server, &digest, runs, 32, &extra)?);
                    cpu.push((server.cpu_seconds()? - before) * 1000.0 / f64::from(runs));
                }
                let dir = self.fresh(&format!("queue-rated-{r}"))?;
                measure::link_cache(&warm, &dir)?;
                let server = serve::Server::start(&self.durable, &dir)?;
                let digest = serve::upload(&server, &self.guest)?;
                rated.push(serve::rated(&server, &digest, s.rated_runs, "20/1s")?);
            }
            report.add_queue(
                [
                    &Summary::of(&plain),
                    &Summary::of(&queued),
                    &Summary::of(&plain_cpu),
                    &Summary::of(&queued_cpu),
                    &Summary::of(&rated),
                ],
                runs,
                s.rated_runs,
            );
        }
        if self.wants("w3") {
            // W3: the first process dies after step n commits; a new one
            // replays n and runs step n+1.
            let (mut restart, mut replay) = (Vec::new(), measure::Samples::default());
            let input = format!(r#"{{"mode":"seq","n":{}}}"#, s.w3_steps + 1);
            let crash_key = format!("step#{}", s.w3_steps);
            for r in 0..self.repeats {
                let dir = self.fresh(&format!("w3-{r}"))?;
                measure::link_cache(&warm, &dir)?;
                let (status, _) = self.durable(
                    &dir,
                    &[
                        "run",
                        &guest,
                        "--input",
                        &input,
                        "--id",
                        "w3",
                        "--crash-after",
                        &crash_key,
                    ],
                )?;
                anyhow::ensure!(
                    status.code().is_none(),
                    "the first W3 process was not killed: {status}"
                );
                let copy = self.fresh(&format!("w3-copy-{r}"))?;
                measure::copy_db(&dir, &copy)?;
                measure::link_cache(&warm, &copy)?;
                let (status, took) = self.durable(&dir, &["resume", "w3"])?;
                anyhow::ensure!(status.success(), "W3 resume failed: {status}");
                restart.push(took.as_secs_f64() * 1000.0);
                replay.push(&self.child("w3", &copy, s.w3_steps, "power-loss")?);
            }
            report.add_w3(&Summary::of(&restart), &replay, s.w3_steps);
        }
        if self.wants("serve") {
            // `durable serve`, from a client: W4 over HTTP, start latency, and
            // a server with many runs parked on an event.
            let (mut w4http, mut latency, mut parked_rss, mut deliver) =
                (Vec::new(), Vec::new(), Vec::new(), Vec::new());
            for r in 0..self.repeats {
                let dir = self.fresh(&format!("serve-{r}"))?;
                measure::link_cache(&warm, &dir)?;
                let server = serve::Server::start(&self.durable, &dir)?;
                let digest = serve::upload(&server, &self.guest)?;
                w4http.push(serve::w4_http(&server, &digest, s.serve_runs, 32)?);
                latency.extend(serve::start_latency(&server, &digest, s.serve_starts)?);
                drop(server);
                let dir = self.fresh(&format!("serve-parked-{r}"))?;
                measure::link_cache(&warm, &dir)?;
                self.child("eventpark", &dir, s.serve_parked, "power-loss")?;
                let server = serve::Server::start(&self.durable, &dir)?;
                // Up, and past its first look at what is due.
                std::thread::sleep(Duration::from_millis(500));
                parked_rss.push(server.rss_kib() as f64 / 1024.0);
                deliver.push(serve::deliver(
                    &server,
                    &format!("e{}", s.serve_parked / 2),
                )?);
            }
            report.add_serve(
                &Summary::of(&w4http),
                s.serve_runs,
                &latency,
                &Summary::of(&parked_rss),
                &Summary::of(&deliver),
                s.serve_parked,
            );
        }
        if self.wants("node") {
            self.run_node(&warm, &mut report)?;
        }

        if let Some(server) = &self.postgres {
            self.run_postgres(server, &warm, fsync.median, &mut report)?;
        }

        if self.wants("cold") {
            // Cold start: an empty compile cache, then the same cache again.
            let (mut cold, mut warm_start) = (Vec::new(), Vec::new());
            for r in 0..self.repeats {
                let dir = self.fresh(&format!("cold-{r}"))?;
                let args = ["run", guest.as_str(), "--input", r#"{"mode":"seq","n":3}"#];
                let (status, took) = self.durable(&dir, &args)?;
                anyhow::ensure!(status.success(), "cold start failed: {status}");
                cold.push(took.as_secs_f64() * 1000.0);
                let (status, took) = self.durable(&dir, &args)?;
                anyhow::ensure!(status.success(), "warm start failed: {status}");
                warm_start.push(took.as_secs_f64() * 1000.0);
            }
            report.add_start(&Summary::of(&cold), &Summary::of(&warm_start));
        }
        report.repeats = self.repeats;
        Ok(report)
    }
}
