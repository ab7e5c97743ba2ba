//! Measuring and reporting: the fsync bound, medians and ranges, the table.

use std::fmt;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::Instant;

use serde_json::Value;

/// Small write + fdatasync per operation, `n` times: the most sequential
/// durable commits per second this file system allows.
pub fn fsync_rate(dir: &Path, n: u32) -> anyhow::Result<f64> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(dir.join("fsync.bin"))?;
    let record = [7u8; 128];
    let started = Instant::now();
    for i in 0..n {
        // Append like a WAL does, so each sync has new data to make durable.
        file.write_all_at(&record, u64::from(i) * record.len() as u64)?;
        file.sync_data()?;
    }
    Ok(f64::from(n) / started.elapsed().as_secs_f64())
}

/// Hard-links (or copies) the warm compile cache into `dir/cache`.
pub fn link_cache(warm: &Path, dir: &Path) -> anyhow::Result<()> {
    let to = dir.join("cache");
    std::fs::create_dir_all(&to)?;
    for entry in std::fs::read_dir(warm.join("cache"))? {
        let entry = entry?;
        let dest = to.join(entry.file_name());
        if std::fs::hard_link(entry.path(), &dest).is_err() {
            std::fs::copy(entry.path(), &dest)?;
        }
    }
    Ok(())
}

/// Copies a database with its WAL, as a killed process left it.
pub fn copy_db(from: &Path, to: &Path) -> anyhow::Result<()> {
    for suffix in ["", "-wal", "-shm"] {
        let name = format!("durable.db{suffix}");
        if from.join(&name).exists() {
            std::fs::copy(from.join(&name), to.join(&name))?;
        }
    }
    Ok(())
}

/// Median and range of some numbers.
#[derive(Debug, Clone, Copy, Default)]
pub struct Summary {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

impl Summary {
    pub fn of(values: &[f64]) -> Summary {
        let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
        if v.is_empty() {
            return Summary::default();
        }
        v.sort_by(f64::total_cmp);
        let median = if v.len() % 2 == 1 {
            v[v.len() / 2]
        } else {
            (v[v.len() / 2 - 1] + v[v.len() / 2]) / 2.0
        };
        Summary {
            median,
            min: v[0],
            max: v[v.len() - 1],
        }
    }

    fn map(self, f: impl Fn(f64) -> f64) -> Summary {
        let (a, b) = (f(self.min), f(self.max));
        Summary {
            median: f(self.median),
            min: a.min(b),
            max: a.max(b),
        }
    }
}

/// The metrics of several children of one workload.
#[derive(Default)]
pub struct Samples(Vec<Value>);

impl Samples {
    pub fn push(&mut self, v: &Value) {
        self.0.push(v.clone());
    }

    fn field(&self, name: &str) -> Summary {
        let v: Vec<f64> = self.0.iter().filter_map(|m| m[name].as_f64()).collect();
        Summary::of(&v)
    }
}

struct Row {
    name: String,
    value: Summary,
    unit: &'static str,
    note: String,
}

/// The table `durable-bench` prints.
#[derive(Default)]
pub struct Report {
    pub fsync: Summary,
    pub repeats: usize,
    rows: Vec<Row>,
}

impl Report {
    /// A row of its own: `name`, `value` in `unit`, and a note.
    pub fn add(
        &mut self,
        name: impl Into<String>,
        value: Summary,
        unit: &'static str,
        note: impl Into<String>,
    ) {
        self.row(name, value, unit, note);
    }

    fn row(
        &mut self,
        name: impl Into<String>,
        value: Summary,
        unit: &'static str,
        note: impl Into<String>,
    ) {
        self.rows.push(Row {
            name: name.into(),
            value,
            unit,
            note: note.into(),
        });
    }

    pub fn add_w1(&mut self, label: &str, s: &Samples, steps: u32, fsync: f64) {
        let wall = s.field("wall_ms");
        let rate = wall.map(|ms| f64::from(steps) / (ms / 1000.0));
        self.row(
            format!("W1 {steps} sequential steps{label}"),
            wall,
            "ms",
            "",
        );
        self.row(
            format!("W1 steps/s{label}"),
            rate,
            "/s",
            format!(
                "{:.0}% of the fsync bound (target >= 70%)",
                100.0 * rate.median / fsync
            ),
        );
        let per_step = |field: &str| s.field(field).map(|v| v / f64::from(steps));
        self.row(
            format!("W1 bytes written per step{label}"),
            per_step("write_bytes"),
            "B",
            "",
        );
        self.row(
            format!("W1 commits (fsyncs) per step{label}"),
            per_step("commits"),
            "",
            "",
        );
        self.row(
            format!("W1 peak RSS{label}"),
            s.field("peak_rss_kib").map(|k| k / 1024.0),
            "MiB",
            "target <= 50 MiB",
        );
    }

    pub fn add_w2(&mut self, label: &str, s: &Samples, n: u32) {
        self.row(
            format!("W2 one parallel of {n} steps{label}"),
            s.field("wall_ms"),
            "ms",
            "target <= 50 ms",
        );
    }

    pub fn add_w3(&mut self, restart: &Summary, replay: &Samples, n: u32) {
        self.row(
            format!("W3 restart -> done ({n} replayed + 1 new)"),
            *restart,
            "ms",
            "process start to exit; target <= 100 ms",
        );
        self.row(
            format!("W3 replay of {n} steps only"),
            replay.field("replay_ms"),
            "ms",
            "in process, until step n+1 starts",
        );
    }

    pub fn add_w4(&mut self, label: &str, s: &Samples, runs: u32) {
        let wall = s.field("wall_ms");
        self.row(
            format!("W4 {runs} onboarding runs at once{label}"),
            wall.map(|ms| f64::from(runs) / (ms / 1000.0)),
            "wf/s",
            "target >= 1500",
        );
        let steps = f64::from(runs) * 4.0;
        self.row(
            format!("W4 commits (fsyncs) per step{label}"),
            s.field("commits").map(|c| c / steps),
            "",
            "group commit",
        );
        self.row(
            format!("W4 peak RSS{label}"),
            s.field("peak_rss_kib").map(|k| k / 1024.0),
            "MiB",
            "VmHWM; target <= 64 MiB",
        );
    }

    pub fn add_w5(
        &mut self,
        park: &Samples,
        parked_runs: u32,
        wake: &Samples,
        burst: &Samples,
        woken_runs: u32,
    ) {
        self.row(
            format!("W5 {parked_runs} runs sleeping 1 h: RSS once parked"),
            park.field("parked_rss_kib").map(|k| k / 1024.0),
            "MiB",
            "the driving process; target <= 64 MiB",
        );
        self.row(
            format!("W5 {parked_runs} runs sleeping 1 h: database"),
            park.field("parked_db_bytes").map(|b| b / (1024.0 * 1024.0)),
            "MiB",
            "with its WAL",
        );
        self.row(
            format!("W5 {parked_runs} runs started and parked"),
            park.field("wall_ms")
                .map(|ms| f64::from(parked_runs) / (ms / 1000.0)),
            "runs/s",
            "",
        );
        self.row(
            format!("W5 wake-up lag p50 ({woken_runs} runs sleeping 1 s, started 500/s)"),
            wake.field("wake_lag_p50_ms"),
            "ms",
            "due time to the next step starting",
        );
        self.row(
            format!("W5 wake-up lag p99 ({woken_runs} runs sleeping 1 s, started 500/s)"),
            wake.field("wake_lag_p99_ms"),
            "ms",
            "target <= 50 ms",
        );
        self.row(
            format!("W5 wake-up lag p99 ({woken_runs} runs sleeping 1 s, started at once)"),
            burst.field("wake_lag_p99_ms"),
            "ms",
            "all due within the start burst: bound by resume throughput",
        );
    }

    pub fn add_w6(&mut self, inproc: &Samples, http: &Summary, http_rss: &Summary, n: u32) {
        self.row(
            format!("W6 a parent awaiting {n} child workflows (2 steps each)"),
            inproc
                .field("wall_ms")
                .map(|ms| f64::from(n) / (ms / 1000.0)),
            "children/s",
            "in process, every child started at once",
        );
        self.row(
            format!("W6 peak RSS, {n} children"),
            inproc.field("peak_rss_kib").map(|k| k / 1024.0),
            "MiB",
            "in process",
        );
        self.row(
            format!("W6 over HTTP, {n} children"),
            *http,
            "children/s",
            "`durable serve`: start the parent, long-poll its result",
        );
        self.row(
            format!("W6 over HTTP, server peak RSS, {n} children"),
            *http_rss,
            "MiB",
            "",
        );
    }

    /// Queues: `[plain wf/s, queued wf/s, plain CPU ms/run, queued CPU
    /// ms/run, seconds for the rated runs]`.
    pub fn add_queue(&mut self, s: [&Summary; 5], runs: u32, rated: u32) {
        self.row(
            format!("queue: W4 over HTTP, {runs} runs, no queue"),
            *s[0],
            "wf/s",
            "32 keep-alive clients",
        );
        self.row(
            format!("queue: W4 over HTTP, {runs} runs, queue of concurrency 64"),
            *s[1],
            "wf/s",
            "the same, every run admitted by the queue",
        );
        self.row(
            "queue: server CPU per run, no queue".to_string(),
            *s[2],
            "ms",
            "user + system, /proc",
        );
        self.row(
            "queue: server CPU per run, queued".to_string(),
            *s[3],
            "ms",
            "the difference is admission's cost",
        );
        self.row(
            format!("queue: {rated} runs at rate 20/1s"),
            *s[4],
            "s",
            "first start to last result (ideal: (n-1)/20)",
        );
    }

    pub fn add_serve(
        &mut self,
        w4: &Summary,
        runs: u32,
        latency: &[f64],
        rss: &Summary,
        deliver: &Summary,
        parked: u32,
    ) {
        self.row(
            format!("serve: W4 over HTTP, {runs} runs, 32 keep-alive clients"),
            *w4,
            "wf/s",
            "started and awaited through the API; target >= 1500",
        );
        let mut sorted: Vec<f64> = latency.to_vec();
        sorted.sort_by(f64::total_cmp);
        let at = |q: f64| {
            sorted
                .get(((sorted.len() as f64 - 1.0) * q).round() as usize)
                .copied()
                .unwrap_or(0.0)
        };
        let single = |v: f64| Summary {
            median: v,
            min: v,
            max: v,
        };
        self.row(
            "serve: start latency p50 (POST /v1/runs to the first step starting)",
            single(at(0.5)),
            "ms",
            format!("{} starts, one at a time", sorted.len()),
        );
        self.row(
            "serve: start latency p99",
            single(at(0.99)),
            "ms",
            "target <= 10 ms",
        );
        self.row(
            format!("serve: RSS with {parked} runs waiting on an event"),
            *rss,
            "MiB",
            "target <= 256 MiB",
        );
        self.row(
            format!("serve: one event delivered to one of {parked} waiting runs"),
            *deliver,
            "ms",
            "POST event to the run ended; target <= 20 ms",
        );
    }

    /// The Node.js client's workloads (`node.rs`).
    pub fn add_node(
        &mut self,
        w4: &[crate::node::Sample],
        starts: &[crate::node::Sample],
        polls: &Summary,
        runs: u32,
        open: u32,
    ) {
        let of = |v: &[crate::node::Sample], f: fn(&crate::node::Sample) -> f64| {
            Summary::of(&v.iter().map(f).collect::<Vec<_>>())
        };
        self.row(
            format!("node: W4 over HTTP, {runs} runs, fetch from Node.js"),
            of(w4, |s| s.per_s),
            "wf/s",
            "a connection per concurrent request; target >= 1000",
        );
        self.row(
            "node: W4 server CPU per workflow",
            of(w4, |s| s.cpu_ms_per_run),
            "ms",
            "user + system, /proc; target <= 1.5 ms",
        );
        self.row(
            "node: W4 server peak RSS",
            of(w4, |s| s.peak_rss_mib),
            "MiB",
            "VmHWM; target <= 96 MiB",
        );
        self.row(
            "node: W4 commits (fsyncs) per workflow",
            of(w4, |s| s.commits_per_run),
            "",
            "4 steps, a start and an end each",
        );
        self.row(
            "node: W4 all starts answered",
            of(w4, |s| s.starts_answered_ms),
            "ms",
            "first POST to the last POST answered, while runs execute",
        );
        self.row(
            format!("node: {runs} concurrent starts, all answered"),
            of(starts, |s| s.starts_answered_ms),
            "ms",
            "runs that park at once; target <= 300 ms",
        );
        self.row(
            format!("node: {runs} concurrent starts, commits (fsyncs) per run"),
            of(starts, |s| s.commits_per_run),
            "",
            "a start and a park each; group commit",
        );
        self.row(
            format!("node: server CPU with {open} long polls waiting"),
            *polls,
            "% of a core",
            "target < 5%",
        );
    }

    /// The client's ceiling and a burst of starts on ready connections.
    pub fn add_burst(
        &mut self,
        ceiling: &Summary,
        alone: &Summary,
        burst: &Summary,
        commits: &Summary,
        runs: u32,
    ) {
        self.row(
            format!("node: the client's ceiling, W4's {runs} runs against a no-op server"),
            *ceiling,
            "wf/s",
            "Node's http answering at once, on the same cores",
        );
        self.row(
            format!("node: the client's ceiling, W4's {runs} runs against a Rust no-op server"),
            *alone,
            "wf/s",
            "one thread answering at once: the client nearly alone",
        );
        self.row(
            format!("serve: {runs} starts at once on open connections, all answered"),
            *burst,
            "ms",
            "a thread and a connection each; target <= 300 ms",
        );
        self.row(
            format!("serve: {runs} starts at once, commits (fsyncs) per run"),
            *commits,
            "",
            "a start and a park each; group commit",
        );
    }

    pub fn add_start(&mut self, cold: &Summary, warm: &Summary) {
        self.row(
            "durable run, empty compile cache",
            *cold,
            "ms",
            "3-step workflow, whole process",
        );
        self.row(
            "durable run, warm compile cache",
            *warm,
            "ms",
            format!("{:.1}x faster", cold.median / warm.median.max(0.001)),
        );
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "| workload | median | range | unit | note |")?;
        writeln!(f, "|---|---:|---:|---|---|")?;
        writeln!(
            f,
            "| fsync bound: 128 B write + fdatasync | {:.0} | {:.0}-{:.0} | /s | same file system, same run |",
            self.fsync.median, self.fsync.min, self.fsync.max
        )?;
        for r in &self.rows {
            let p = if r.value.median.abs() >= 100.0 {
                0
            } else if r.value.median.abs() >= 1.0 {
                1
            } else {
                3
            };
            writeln!(
                f,
                "| {} | {:.p$} | {:.p$}-{:.p$} | {} | {} |",
                r.name, r.value.median, r.value.min, r.value.max, r.unit, r.note
            )?;
        }
        write!(
            f,
            "\n{} repeat(s) per workload; each in a fresh process.",
            self.repeats
        )?;
        let _ = std::io::stdout().flush();
        Ok(())
    }
}
