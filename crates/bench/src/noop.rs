//! An HTTP/1.1 server that answers every request at once and costs next to
//! nothing: every `POST` gets 201 `{"id":"x","status":"running"}`, every
//! other request 200 `{"id":"x","status":"succeeded"}`, on keep-alive
//! connections. Against it, the Node.js client's rate is the client's own
//! ceiling on this machine (Node's `http` server, the other no-op, takes
//! CPU from the same cores).
//!
//! It runs on a current-thread tokio runtime in a thread of its own: one
//! core at most, and no more work per request than finding the end of the
//! head and the body.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The server's most bytes of one request head.
const MAX_HEAD: usize = 16 * 1024;

/// A running no-op server; stopped when dropped.
pub struct NoopServer {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl NoopServer {
    /// Starts one on a loopback port of the system's choosing.
    pub fn start() -> anyhow::Result<NoopServer> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()?;
        let listener = runtime.block_on(TcpListener::bind("127.0.0.1:0"))?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            runtime.block_on(async move {
                tokio::select! {
                    _ = stopped => {}
                    _ = accept_all(listener) => {}
                }
            });
        });
        Ok(NoopServer {
            addr,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for NoopServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn accept_all(listener: TcpListener) {
    while let Ok((stream, _)) = listener.accept().await {
        tokio::spawn(serve(stream));
    }
}

/// Answers the requests of one connection until it closes or sends
/// something that is not HTTP/1.1 as this server knows it.
async fn serve(mut stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    loop {
        let Some(head_end) = find(&buf, b"\r\n\r\n") else {
            if buf.len() > MAX_HEAD || !read_more(&mut stream, &mut buf).await {
                return;
            }
            continue;
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
        let body_len = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse::<usize>().ok())
            .unwrap_or(0);
        let total = head_end + 4 + body_len;
        while buf.len() < total {
            if !read_more(&mut stream, &mut buf).await {
                return;
            }
        }
        let (status, body) = match head.starts_with("post ") {
            true => ("201 Created", r#"{"id":"x","status":"running"}"#),
            false => ("200 OK", r#"{"id":"x","status":"succeeded"}"#),
        };
        let response = format!(
            "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        if stream.write_all(response.as_bytes()).await.is_err() {
            return;
        }
        buf.drain(..total);
    }
}

/// Reads what the connection has into `buf`; `false` at its end.
async fn read_more(stream: &mut TcpStream, buf: &mut Vec<u8>) -> bool {
    let mut chunk = [0u8; 4096];
    match stream.read(&mut chunk).await {
        Ok(0) | Err(_) => false,
        Ok(n) => {
            buf.extend_from_slice(&chunk[..n]);
            true
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}
