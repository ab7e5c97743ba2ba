//! `durable serve` measured from outside, as a client sees it: a real
//! server process on a loopback port, HTTP/1.1 keep-alive connections.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// A `durable serve` on a scratch directory; killed when dropped.
pub struct Server {
    child: Child,
    port: u16,
}

impl Server {
    pub fn start(durable: &Path, dir: &Path) -> anyhow::Result<Server> {
        Server::start_on(durable, dir, &dir.join("durable.db"))
    }

    /// [`Server::start`] on database `db` (a file or a PostgreSQL URL).
    pub fn start_on(durable: &Path, dir: &Path, db: &Path) -> anyhow::Result<Server> {
        Server::start_with(durable, dir, db, &[])
    }

    /// [`Server::start_on`] with more `durable serve` arguments.
    pub fn start_with(
        durable: &Path,
        dir: &Path,
        db: &Path,
        args: &[String],
    ) -> anyhow::Result<Server> {
        let mut child = Command::new(durable)
            .args(["serve", "--listen", "127.0.0.1:0"])
            .args(args)
            .env("DURABLE_DB", db)
            .env("DURABLE_CACHE_DIR", dir.join("cache"))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()?;
        let stderr = child
            .stderr
            .take()
            .ok_or_else(|| anyhow::anyhow!("no stderr"))?;
        let mut lines = BufReader::new(stderr);
        let mut first = String::new();
        lines.read_line(&mut first)?;
        let port = first
            .split("http://127.0.0.1:")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .and_then(|p| p.parse().ok())
            .ok_or_else(|| anyhow::anyhow!("no address in {first:?}"))?;
        // Drain the rest, so the server never blocks on a full pipe.
        std::thread::spawn(move || std::io::copy(&mut lines, &mut std::io::sink()));
        Ok(Server { child, port })
    }

    pub fn client(&self) -> anyhow::Result<Client> {
        let stream = TcpStream::connect(("127.0.0.1", self.port))?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(Duration::from_secs(120)))?;
        Ok(Client {
            reader: BufReader::new(stream.try_clone()?),
            stream,
        })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The server's resident memory, in KiB.
    pub fn rss_kib(&self) -> u64 {
        self.status_kib("VmRSS:")
    }

    /// The server's peak resident memory so far, in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        self.status_kib("VmHWM:")
    }

    fn status_kib(&self, field: &str) -> u64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with(field))
                    .and_then(|l| l.split_whitespace().nth(1))
                    .and_then(|v| v.parse().ok())
            })
            .unwrap_or(0)
    }

    /// CPU time the server has used so far (user and system), in seconds.
    pub fn cpu_seconds(&self) -> anyhow::Result<f64> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id()))?;
        // The fields after the command name, which is in parentheses and
        // may hold spaces: utime and stime are the 14th and 15th fields.
        let after = stat
            .rsplit_once(')')
            .map(|(_, rest)| rest)
            .ok_or_else(|| anyhow::anyhow!("odd /proc stat {stat:?}"))?;
        let fields: Vec<&str> = after.split_whitespace().collect();
        let ticks = |i: usize| -> anyhow::Result<f64> {
            Ok(fields
                .get(i)
                .ok_or_else(|| anyhow::anyhow!("short /proc stat {stat:?}"))?
                .parse::<f64>()?)
        };
        // Fields 14 and 15 of the whole line are 12 and 13 after `)`.
        Ok((ticks(11)? + ticks(12)?) / clock_ticks_per_second())
    }

    /// The server's `/metrics` value `name` (the first sample of it).
    pub fn metric(&self, name: &str) -> anyhow::Result<f64> {
        let (status, text) = self.client()?.call_raw("GET", "/metrics", b"")?;
        anyhow::ensure!(status == 200, "/metrics: {status}");
        let text = String::from_utf8_lossy(&text);
        text.lines()
            .find_map(|l| {
                let (n, v) = l.split_once(' ')?;
                (n == name).then(|| v.trim().parse().ok())?
            })
            .ok_or_else(|| anyhow::anyhow!("no {name} in /metrics"))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One keep-alive connection.
pub struct Client {
    stream: TcpStream,
    reader: BufReader<TcpStream>,
}

impl Client {
    /// `METHOD path` with `body`: (status, JSON body).
    pub fn call(&mut self, method: &str, path: &str, body: &[u8]) -> anyhow::Result<(u16, Value)> {
        let (status, body) = self.call_raw(method, path, body)?;
        Ok((status, serde_json::from_slice(&body).unwrap_or(Value::Null)))
    }

    /// `METHOD path` with `body`: (status, body bytes).
    pub fn call_raw(
        &mut self,
        method: &str,
        path: &str,
        body: &[u8],
    ) -> anyhow::Result<(u16, Vec<u8>)> {
        let kind = if path.starts_with("/v1/components") {
            "application/wasm"
        } else {
            "application/json"
        };
        let head = format!(
            "{method} {path} HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: {kind}\r\ncontent-length: {}\r\n\r\n",
            body.len()
        );
        self.stream.write_all(head.as_bytes())?;
        self.stream.write_all(body)?;
        let mut line = String::new();
        self.reader.read_line(&mut line)?;
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| anyhow::anyhow!("bad status line {line:?}"))?;
        let mut length = 0;
        loop {
            let mut h = String::new();
            self.reader.read_line(&mut h)?;
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((n, v)) = h.split_once(':')
                && n.eq_ignore_ascii_case("content-length")
            {
                length = v.trim().parse()?;
            }
        }
        let mut buf = vec![0; length];
        self.reader.read_exact(&mut buf)?;
        Ok((status, buf))
    }

    pub fn json(&mut self, method: &str, path: &str, body: &Value) -> anyhow::Result<(u16, Value)> {
        self.call(method, path, body.to_string().as_bytes())
    }
}

/// Uploads the guest; its digest.
pub fn upload(server: &Server, guest: &Path) -> anyhow::Result<String> {
    let (status, body) =
        server
            .client()?
            .call("POST", "/v1/components?name=bench", &std::fs::read(guest)?)?;
    anyhow::ensure!(status == 201 || status == 200, "upload: {status} {body}");
    Ok(body["digest"].as_str().unwrap_or_default().to_string())
}

/// W4 over HTTP: `runs` onboarding-shaped runs started by `clients`
/// keep-alive connections at once, then each awaited through the API.
/// Workflows per second, first request to last answer.
pub fn w4_http(server: &Server, digest: &str, runs: u32, clients: u32) -> anyhow::Result<f64> {
    w4_http_over(&[server], digest, runs, clients)
}

/// [`w4_http`] with `extra` fields in every start (a queue, say).
pub fn w4_http_with(
    server: &Server,
    digest: &str,
    runs: u32,
    clients: u32,
    extra: &Value,
) -> anyhow::Result<f64> {
    w4_http_starting(&[server], digest, runs, clients, extra)
}

/// Queues: `runs` runs of one step (the `seq` mode with n = 1) started at
/// once into a queue of `rate` (`"20/1s"`), each awaited: seconds from
/// the first start to the last result.
pub fn rated(server: &Server, digest: &str, runs: u32, rate: &str) -> anyhow::Result<f64> {
    let mut client = server.client()?;
    let (status, body) = client.json("PUT", "/v1/queues/rated", &json!({"rate": rate}))?;
    anyhow::ensure!(status == 201 || status == 200, "queue: {status} {body}");
    let started = Instant::now();
    for i in 0..runs {
        let (status, body) = client.json(
            "POST",
            "/v1/runs",
            &json!({"component": digest, "input": {"mode": "seq", "n": 1}, "id": format!("r{i}"), "queue": "rated"}),
        )?;
        anyhow::ensure!(status == 201, "start: {status} {body}");
    }
    for i in 0..runs {
        let (_, body) = client.call("GET", &format!("/v1/runs/r{i}/result?wait=120s"), b"")?;
        anyhow::ensure!(body["status"] == "succeeded", "r{i}: {body}");
    }
    Ok(started.elapsed().as_secs_f64())
}

/// [`w4_http`] over several servers of one database: client `c` talks to
/// server `c % servers.len()`.
pub fn w4_http_over(
    servers: &[&Server],
    digest: &str,
    runs: u32,
    clients: u32,
) -> anyhow::Result<f64> {
    w4_http_starting(servers, digest, runs, clients, &json!({}))
}

fn w4_http_starting(
    servers: &[&Server],
    digest: &str,
    runs: u32,
    clients: u32,
    extra: &Value,
) -> anyhow::Result<f64> {
    let started = Instant::now();
    std::thread::scope(|s| -> anyhow::Result<()> {
        let mut handles = Vec::new();
        for c in 0..clients {
            let server = servers[c as usize % servers.len()];
            handles.push(s.spawn(move || -> anyhow::Result<()> {
                let mut client = server.client()?;
                let mine: Vec<u32> = (0..runs).filter(|i| i % clients == c).collect();
                for i in &mine {
                    let mut start = json!({"component": digest, "input": {"mode": "onboarding", "n": i}, "id": format!("h{i}")});
                    if let (Some(s), Some(e)) = (start.as_object_mut(), extra.as_object()) {
                        s.extend(e.clone());
                    }
                    let (status, body) = client.json("POST", "/v1/runs", &start)?;
                    anyhow::ensure!(status == 201, "start: {status} {body}");
                }
                for i in &mine {
                    let (_, body) = client.call("GET", &format!("/v1/runs/h{i}/result?wait=120s"), b"")?;
                    anyhow::ensure!(body["status"] == "succeeded", "h{i}: {body}");
                }
                Ok(())
            }));
        }
        for h in handles {
            h.join()
                .map_err(|_| anyhow::anyhow!("a client panicked"))??;
        }
        Ok(())
    })?;
    Ok(f64::from(runs) / started.elapsed().as_secs_f64())
}

/// W6 over HTTP: the guest registered as workflow `bench`, a parent run
/// starting `children` children of it and awaiting all; children per
/// second, from the start to the parent's result.
pub fn w6_http(server: &Server, digest: &str, children: u32) -> anyhow::Result<f64> {
    let mut client = server.client()?;
    let (status, body) = client.json(
        "POST",
        "/v1/workflows",
        &json!({"name": "bench", "component": digest}),
    )?;
    anyhow::ensure!(status == 201 || status == 200, "register: {status} {body}");
    let started = Instant::now();
    let (status, body) = client.json(
        "POST",
        "/v1/runs",
        &json!({"workflow": "bench", "input": {"mode": "parent", "n": children}, "id": "w6"}),
    )?;
    anyhow::ensure!(status == 201, "start: {status} {body}");
    let (_, done) = client.call("GET", "/v1/runs/w6/result?wait=300s", b"")?;
    anyhow::ensure!(done["status"] == "succeeded", "w6: {done}");
    Ok(f64::from(children) / started.elapsed().as_secs_f64())
}

/// Start latency, unloaded: `POST /v1/runs` sent to the run's first step
/// starting (its first attempt's recorded start), one run at a time. In ms.
pub fn start_latency(server: &Server, digest: &str, n: u32) -> anyhow::Result<Vec<f64>> {
    let mut client = server.client()?;
    let mut out = Vec::new();
    for i in 0..n {
        let id = format!("l{i}");
        let sent = now_ms_f64();
        let (status, body) = client.json(
            "POST",
            "/v1/runs",
            &json!({"component": digest, "input": {"mode": "seq", "n": 1}, "id": id}),
        )?;
        anyhow::ensure!(status == 201, "start: {status} {body}");
        let (_, done) = client.call("GET", &format!("/v1/runs/{id}/result?wait=60s"), b"")?;
        anyhow::ensure!(done["status"] == "succeeded", "{id}: {done}");
        let (_, shown) = client.call("GET", &format!("/v1/runs/{id}"), b"")?;
        let first = shown["steps"][0]["started_at_ms"]
            .as_f64()
            .ok_or_else(|| anyhow::anyhow!("no step start in {shown}"))?;
        out.push((first - sent).max(0.0));
    }
    Ok(out)
}

/// Delivers event `go` to run `id` (parked on it) and waits until the run
/// has ended: ms.
pub fn deliver(server: &Server, id: &str) -> anyhow::Result<f64> {
    let mut client = server.client()?;
    let t = Instant::now();
    let (status, body) = client.json(
        "POST",
        &format!("/v1/runs/{id}/events/go"),
        &json!({"data": true}),
    )?;
    anyhow::ensure!(status == 201, "event: {status} {body}");
    let (_, done) = client.call("GET", &format!("/v1/runs/{id}/result?wait=60s"), b"")?;
    anyhow::ensure!(done["status"] == "succeeded", "{id}: {done}");
    Ok(t.elapsed().as_secs_f64() * 1000.0)
}

/// `USER_HZ`, the unit of `/proc/PID/stat` times.
fn clock_ticks_per_second() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or(100.0)
}

fn now_ms_f64() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64() * 1000.0)
        .unwrap_or(0.0)
}
