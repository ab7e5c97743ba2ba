//! `durable serve` driven by a real Node.js client (`client/client.mjs`,
//! the global `fetch`: one connection per concurrent request), as users'
//! services and the peers' benchmark clients drive a server. The server's
//! CPU time and peak memory come from `/proc`, its commits from
//! `/metrics`.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::{Value, json};

use crate::serve::Server;

/// The client, written next to the scratch data at run time.
const CLIENT: &str = include_str!("../client/client.mjs");

/// How a server is started for these workloads.
pub struct Setup<'a> {
    pub durable: &'a Path,
    pub guest: &'a Path,
    pub dir: &'a Path,
}

impl Setup<'_> {
    fn client_path(&self) -> anyhow::Result<PathBuf> {
        let path = self.dir.join("client.mjs");
        std::fs::write(&path, CLIENT)?;
        Ok(path)
    }

    /// A server on `dir`'s database, steps granted `dir/out` as `/out`,
    /// the bench guest registered as workflow `bench`, one run driven to
    /// warm it up.
    fn server(&self) -> anyhow::Result<Server> {
        let out = self.dir.join("out");
        std::fs::create_dir_all(&out)?;
        let server = Server::start_with(
            self.durable,
            self.dir,
            &self.dir.join("durable.db"),
            &[
                "--allow-dir".into(),
                format!("{}::/out", out.display()),
                "--max-long-polls".into(),
                "20000".into(),
            ],
        )?;
        let digest = crate::serve::upload(&server, self.guest)?;
        let mut client = server.client()?;
        let (status, body) = client.json(
            "POST",
            "/v1/workflows",
            &json!({"name": "bench", "component": digest}),
        )?;
        anyhow::ensure!(status == 201 || status == 200, "register: {status} {body}");
        let (status, body) = client.json(
            "POST",
            "/v1/runs",
            &json!({"workflow": "bench", "id": "warm", "input": {"mode": "seq", "n": 2}}),
        )?;
        anyhow::ensure!(status == 201, "warm-up: {status} {body}");
        let (_, body) = client.call("GET", "/v1/runs/warm/result?wait=60s", b"")?;
        anyhow::ensure!(body["status"] == "succeeded", "warm-up: {body}");
        Ok(server)
    }

    /// Starts the client with `args`, its stdout piped: for the modes
    /// that speak before they end (`polls`, `noop`).
    fn spawn(&self, args: &[String]) -> anyhow::Result<std::process::Child> {
        Command::new("node")
            .arg(self.client_path()?)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| anyhow::anyhow!("node: {e} (the Node.js workloads need node on PATH)"))
    }

    /// Runs the client to its end: its JSON line.
    fn client(&self, args: &[String]) -> anyhow::Result<Value> {
        let out = Command::new("node")
            .arg(self.client_path()?)
            .args(args)
            .stderr(Stdio::inherit())
            .output()
            .map_err(|e| anyhow::anyhow!("node: {e} (the Node.js workloads need node on PATH)"))?;
        anyhow::ensure!(
            out.status.success(),
            "the Node.js client failed: {}",
            out.status
        );
        let text = String::from_utf8_lossy(&out.stdout);
        let last = text.lines().last().unwrap_or_default();
        Ok(serde_json::from_str(last)?)
    }
}

/// The figures of one W4 or starts sample.
pub struct Sample {
    /// Workflows (or starts) per second, first request to last answer.
    pub per_s: f64,
    /// First request to the last `POST /v1/runs` answered, ms.
    pub starts_answered_ms: f64,
    /// Server CPU (user + system) per run, ms.
    pub cpu_ms_per_run: f64,
    /// The server's peak RSS, MiB.
    pub peak_rss_mib: f64,
    /// Commits (fsyncs) per run.
    pub commits_per_run: f64,
}

/// W4 over HTTP: `runs` onboarding runs started at once by the Node.js
/// client, each awaited by long polls; each step appends a line to a file
/// in a granted directory. `starts_only`: runs that park at once, only
/// started (how quickly 1,000 concurrent starts are answered).
pub fn runs(setup: &Setup<'_>, runs: u32, starts_only: bool) -> anyhow::Result<Sample> {
    let server = setup.server()?;
    let (mode, input) = match starts_only {
        false => ("w4", json!({"mode": "onboarding", "file": "/out/w4.log"})),
        true => ("starts", json!({"mode": "park"})),
    };
    let (cpu0, commits0) = (
        server.cpu_seconds()?,
        server.metric("durable_commit_seconds_count")?,
    );
    let result = setup.client(&[
        mode.into(),
        server.base(),
        runs.to_string(),
        "bench".into(),
        input.to_string(),
        "r".into(),
    ])?;
    if starts_only {
        // Every run parks; a poll of the counts sees them all waiting.
        wait_for_waiting(&server, runs)?;
    }
    let (cpu1, commits1) = (
        server.cpu_seconds()?,
        server.metric("durable_commit_seconds_count")?,
    );
    if !starts_only {
        anyhow::ensure!(
            result["statuses"]["succeeded"] == runs,
            "not every run succeeded: {result}"
        );
        // Every step ran and appended its line, once, whole.
        let text = std::fs::read_to_string(setup.dir.join("out/w4.log"))?;
        let lines = text.lines().count();
        anyhow::ensure!(
            lines == 4 * runs as usize,
            "{lines} lines appended, expected {}",
            4 * runs
        );
        let steps = [
            "create_record",
            "provision_laptop",
            "grant_access",
            "finish",
        ];
        let torn = text.lines().find(|line| {
            !line.split_once(' ').is_some_and(|(name, i)| {
                steps.contains(&name) && i.parse::<u32>().is_ok_and(|i| i < runs)
            })
        });
        anyhow::ensure!(torn.is_none(), "a torn line: {torn:?}");
    }
    let number = |k: &str| {
        result[k]
            .as_f64()
            .ok_or_else(|| anyhow::anyhow!("no {k} in {result}"))
    };
    Ok(Sample {
        per_s: number("per_s")?,
        starts_answered_ms: number("starts_answered_ms")?,
        cpu_ms_per_run: (cpu1 - cpu0) * 1000.0 / f64::from(runs),
        peak_rss_mib: server.peak_rss_kib() as f64 / 1024.0,
        commits_per_run: (commits1 - commits0) / f64::from(runs),
    })
}

/// The Node.js client's own ceiling: W4's requests against a server that
/// answers at once and costs nothing (Node's `http`, in another process on
/// the same cores): workflows/s.
pub fn client_ceiling(setup: &Setup<'_>, runs: u32) -> anyhow::Result<f64> {
    let mut server = setup.spawn(&["noop".into(), "-".into(), "1".into()])?;
    let base = server
        .stdout
        .take()
        .map(|out| BufReader::new(out).lines().next())
        .and_then(|line| line.and_then(Result::ok));
    let result = match base {
        Some(base) => setup.client(&[
            "w4".into(),
            base,
            runs.to_string(),
            "bench".into(),
            json!({"mode": "onboarding"}).to_string(),
            "r".into(),
        ]),
        None => Err(anyhow::anyhow!("the no-op server did not start")),
    };
    let _ = server.kill();
    let _ = server.wait();
    result?["per_s"]
        .as_f64()
        .ok_or_else(|| anyhow::anyhow!("no per_s from the client"))
}

/// The same client against [`crate::noop::NoopServer`], a Rust server that
/// answers at once on one core at most: the client's ceiling with as
/// little as possible of the machine taken by the server. Workflows/s.
pub fn client_alone(setup: &Setup<'_>, runs: u32) -> anyhow::Result<f64> {
    let server = crate::noop::NoopServer::start()?;
    let result = setup.client(&[
        "w4".into(),
        server.base(),
        runs.to_string(),
        "bench".into(),
        json!({"mode": "onboarding"}).to_string(),
        "r".into(),
    ])?;
    drop(server);
    result["per_s"]
        .as_f64()
        .ok_or_else(|| anyhow::anyhow!("no per_s from the client"))
}

/// `runs` starts sent at once on `runs` connections opened beforehand (a
/// thread each, released together): ms from the release to the last 201,
/// and the server's commits (fsyncs) per start. What the server does with
/// a burst, without a client's cost of opening connections in the way.
pub fn burst_of_starts(setup: &Setup<'_>, runs: u32) -> anyhow::Result<(f64, f64)> {
    let server = setup.server()?;
    let mut clients = (0..runs)
        .map(|_| server.client())
        .collect::<anyhow::Result<Vec<_>>>()?;
    let commits0 = server.metric("durable_commit_seconds_count")?;
    let gate = std::sync::Barrier::new(runs as usize + 1);
    let took = std::thread::scope(|s| -> anyhow::Result<f64> {
        let mut threads = Vec::new();
        for (i, mut client) in clients.drain(..).enumerate() {
            let gate = &gate;
            let thread = std::thread::Builder::new()
                .stack_size(256 << 10)
                .spawn_scoped(s, move || -> anyhow::Result<std::time::Instant> {
                    let body = json!({"workflow": "bench", "id": format!("b{i}"), "input": {"mode": "park"}});
                    gate.wait();
                    let (status, answer) = client.json("POST", "/v1/runs", &body)?;
                    anyhow::ensure!(status == 201, "start: {status} {answer}");
                    Ok(std::time::Instant::now())
                })?;
            threads.push(thread);
        }
        gate.wait();
        let released = std::time::Instant::now();
        let mut last = released;
        for t in threads {
            let done = t
                .join()
                .map_err(|_| anyhow::anyhow!("a client thread panicked"))??;
            last = last.max(done);
        }
        Ok((last - released).as_secs_f64() * 1000.0)
    })?;
    wait_for_waiting(&server, runs)?;
    let commits = server.metric("durable_commit_seconds_count")? - commits0;
    Ok((took, commits / f64::from(runs)))
}

/// Waits (bounded) until `n` runs are waiting.
fn wait_for_waiting(server: &Server, n: u32) -> anyhow::Result<()> {
    let mut client = server.client()?;
    for _ in 0..600 {
        let (_, body) = client.call("GET", "/v1/runs?limit=1&counts=true", b"")?;
        if body["counts"]["waiting"].as_u64() >= Some(u64::from(n)) {
            return Ok(());
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    anyhow::bail!("the started runs did not all park within 30 s")
}

/// Long polls that wait: `polls` open `GET /v1/runs/{id}/result?wait=300s`
/// on runs parked on an event (made by `park`, ids `e0`...), held for
/// `hold_ms`: the server's CPU meanwhile, as a share of one core.
pub fn idle_polls(
    setup: &Setup<'_>,
    polls: u32,
    hold_ms: u64,
    park: impl FnOnce(&Path) -> anyhow::Result<()>,
) -> anyhow::Result<f64> {
    park(setup.dir)?;
    let server = setup.server()?;
    let mut child = setup.spawn(&[
        "polls".to_string(),
        server.base(),
        polls.to_string(),
        "e".into(),
        "3000".into(),
        hold_ms.to_string(),
    ])?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| anyhow::anyhow!("no stdout"))?;
    let mut lines = BufReader::new(stdout).lines();
    let ready = lines.next().transpose()?;
    anyhow::ensure!(ready.as_deref() == Some("ready"), "client: {ready:?}");
    let (cpu0, t0) = (server.cpu_seconds()?, std::time::Instant::now());
    let summary = lines.next().transpose()?.unwrap_or_default();
    let (cpu1, held) = (server.cpu_seconds()?, t0.elapsed());
    let _ = child.wait();
    let summary: Value = serde_json::from_str(&summary)?;
    anyhow::ensure!(
        summary["answered"] == 0 && summary["failed"] == 0,
        "the long polls did not all wait: {summary}"
    );
    Ok((cpu1 - cpu0) / held.as_secs_f64() * 100.0)
}
