//! The harness of the server tests: a real `durable serve` of a test's
//! database on an ephemeral loopback port, talked to over a real socket,
//! killed (or signalled) by its pid.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::util::{Env, guest};

/// A running `durable serve` of a test's database.
pub(crate) struct Server {
    child: Option<Child>,
    pub(crate) port: u16,
    token: Option<String>,
    stderr: std::sync::Arc<std::sync::Mutex<String>>,
}

impl Server {
    pub(crate) fn start(env: &Env, extra: &[&str]) -> Server {
        Server::start_with(env, extra, &[])
    }

    /// [`Server::start`] with environment variables.
    pub(crate) fn start_with(env: &Env, extra: &[&str], vars: &[(&str, &str)]) -> Server {
        let mut args = vec!["serve", "--listen", "127.0.0.1:0"];
        args.extend_from_slice(extra);
        let token = extra
            .iter()
            .position(|a| *a == "--token")
            .map(|i| extra[i + 1].to_string());
        let mut cmd = env.cmd(&args);
        cmd.envs(vars.iter().copied());
        let mut child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("durable serve starts");
        let mut lines = BufReader::new(child.stderr.take().expect("stderr"));
        // The address is on the first line; read on to be sure of it.
        let mut first = String::new();
        let port = loop {
            let before = first.len();
            let n = lines.read_line(&mut first).expect("a line");
            let line = &first[before..];
            if let Some(p) = line
                .split("http://127.0.0.1:")
                .nth(1)
                .and_then(|r| r.split_whitespace().next())
                .and_then(|p| p.parse().ok())
            {
                break p;
            }
            assert!(n > 0, "no address in {first:?}");
        };
        // Keep reading stderr (so the server never blocks on it) for the
        // tests that look at which step bodies ran.
        let stderr = std::sync::Arc::new(std::sync::Mutex::new(first));
        let sink = stderr.clone();
        std::thread::spawn(move || {
            let mut line = String::new();
            while lines.read_line(&mut line).is_ok_and(|n| n > 0) {
                sink.lock().expect("lock").push_str(&line);
                line.clear();
            }
        });
        Server {
            child: Some(child),
            port,
            token,
            stderr,
        }
    }

    /// `METHOD path` with `body`, as a well-behaved client sends it (the
    /// body's media type: wasm for uploads, JSON otherwise): (status, JSON
    /// body).
    pub(crate) fn call(&self, method: &str, path: &str, body: &[u8]) -> (u16, Value) {
        let kind = if path.starts_with("/v1/components") {
            "application/wasm"
        } else {
            "application/json"
        };
        let typed = format!("content-type: {kind}");
        let headers: &[&str] = if body.is_empty() { &[] } else { &[&typed] };
        let (status, _, body) = self.raw(method, path, headers, body);
        (status, serde_json::from_str(&body).unwrap_or(Value::Null))
    }

    /// `METHOD path` with exactly these extra `headers` (and `Host:
    /// 127.0.0.1:PORT` unless one is given): (status, head, body).
    pub(crate) fn raw(
        &self,
        method: &str,
        path: &str,
        headers: &[&str],
        body: &[u8],
    ) -> (u16, String, String) {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(60)))
            .expect("timeout");
        let mut head = format!("{method} {path} HTTP/1.1\r\n");
        if !headers
            .iter()
            .any(|h| h.to_ascii_lowercase().starts_with("host:"))
        {
            head.push_str(&format!("host: 127.0.0.1:{}\r\n", self.port));
        }
        if let Some(t) = &self.token {
            head.push_str(&format!("authorization: Bearer {t}\r\n"));
        }
        for h in headers {
            head.push_str(h);
            head.push_str("\r\n");
        }
        if !headers
            .iter()
            .any(|h| h.to_ascii_lowercase().starts_with("content-length:"))
        {
            head.push_str(&format!("content-length: {}\r\n", body.len()));
        }
        // A large body waits for the server's go (as curl does): a server
        // that refuses a request before reading its body (a bad name, a
        // foreign page) answers at once, and the body is never sent into a
        // closed connection.
        let ask = body.len() > 16 << 10;
        if ask {
            head.push_str("expect: 100-continue\r\n");
        }
        head.push_str("connection: close\r\n\r\n");
        s.write_all(head.as_bytes()).expect("send");
        let mut raw = Vec::new();
        if ask {
            let mut byte = [0u8; 1];
            while !raw.ends_with(b"\r\n\r\n") && s.read(&mut byte).expect("read") == 1 {
                raw.push(byte[0]);
            }
            if raw.starts_with(b"HTTP/1.1 100") {
                raw.clear();
                s.write_all(body).expect("send body");
            }
        } else {
            s.write_all(body).expect("send body");
        }
        s.read_to_end(&mut raw).expect("read");
        let text = String::from_utf8_lossy(&raw);
        let status = text
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or_else(|| panic!("no status in {text}"));
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        (status, head.to_string(), body.to_string())
    }

    pub(crate) fn json(&self, method: &str, path: &str, body: &Value) -> (u16, Value) {
        self.call(method, path, body.to_string().as_bytes())
    }

    /// Uploads guest `name`; its digest.
    pub(crate) fn upload(&self, name: &str) -> String {
        let bytes = std::fs::read(guest(name)).expect("the guest");
        let (status, body) = self.call("POST", &format!("/v1/components?name={name}"), &bytes);
        // 200: the database has it already (a server before this one).
        assert!(status == 201 || status == 200, "{status} {body}");
        body["digest"].as_str().expect("digest").to_string()
    }

    /// Waits for run `id` to end (long polls); its summary.
    pub(crate) fn result(&self, id: &str) -> Value {
        let (status, body) = self.call("GET", &format!("/v1/runs/{id}/result?wait=60s"), b"");
        assert_eq!(status, 200, "{body}");
        body
    }

    pub(crate) fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Sends SIGTERM and waits for the exit code.
    pub(crate) fn terminate(&mut self) -> Option<i32> {
        let mut c = self.child.take().expect("running");
        // SAFETY: kill(2) on the pid of a child this test spawned.
        unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
        c.wait().expect("wait").code()
    }

    /// The same server seen by a client that has no token (it does not own
    /// the process).
    pub(crate) fn without_token(&self) -> Server {
        Server {
            child: None,
            port: self.port,
            token: None,
            stderr: Default::default(),
        }
    }

    /// The server's pid.
    pub(crate) fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    pub(crate) fn stderr(&self) -> String {
        self.stderr.lock().expect("lock").clone()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}
