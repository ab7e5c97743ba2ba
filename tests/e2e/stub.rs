//! A real HTTP/1.1 server on loopback for the HTTP tests, over plain TCP or
//! TLS with a throwaway CA: it records every request it gets and answers
//! what the test's handler says. It stops (and joins its threads) when
//! dropped.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// A request as the server read it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Seen {
    /// The value of header `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// What the server answers.
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn json(status: u16, value: &serde_json::Value) -> Reply {
        Reply {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: value.to_string().into_bytes(),
        }
    }

    pub fn redirect(to: &str) -> Reply {
        Reply {
            status: 302,
            headers: vec![("location".into(), to.into())],
            body: Vec::new(),
        }
    }
}

type Handler = dyn Fn(&Seen, usize) -> Reply + Send + Sync;

/// The running server.
pub struct Stub {
    addr: SocketAddr,
    tls: bool,
    seen: Arc<Mutex<Vec<Seen>>>,
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
}

impl Stub {
    /// A plain HTTP server. `handler` gets each request and how many
    /// requests for the same path came before it.
    pub fn http(handler: impl Fn(&Seen, usize) -> Reply + Send + Sync + 'static) -> Stub {
        Stub::start(Arc::new(handler), None)
    }

    /// An HTTPS server with a certificate of `ca` for localhost and
    /// 127.0.0.1.
    pub fn https(
        ca: &TestCa,
        handler: impl Fn(&Seen, usize) -> Reply + Send + Sync + 'static,
    ) -> Stub {
        Stub::start(Arc::new(handler), Some(ca.server.clone()))
    }

    fn start(handler: Arc<Handler>, tls: Option<Arc<rustls::ServerConfig>>) -> Stub {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind on loopback");
        let addr = listener.local_addr().expect("local address");
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let is_tls = tls.is_some();
        let accept = {
            let (seen, stop) = (seen.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut workers = Vec::new();
                for conn in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(conn) = conn else { continue };
                    let (seen, handler, tls) = (seen.clone(), handler.clone(), tls.clone());
                    workers.push(std::thread::spawn(move || {
                        let _ = serve(conn, tls, &seen, &*handler);
                    }));
                }
                for w in workers {
                    let _ = w.join();
                }
            })
        };
        Stub {
            addr,
            tls: is_tls,
            seen,
            stop,
            accept: Some(accept),
        }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// `http://127.0.0.1:PORT` (or `https://localhost:PORT`).
    pub fn origin(&self) -> String {
        if self.tls {
            format!("https://localhost:{}", self.port())
        } else {
            format!("http://127.0.0.1:{}", self.port())
        }
    }

    /// Every request so far, in arrival order.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().expect("lock").clone()
    }

    /// The requests for `path`.
    pub fn seen_at(&self, path: &str) -> Vec<Seen> {
        self.seen().into_iter().filter(|s| s.path == path).collect()
    }
}

impl Drop for Stub {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accept loop, which then sees the flag.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
    }
}

fn serve(
    conn: TcpStream,
    tls: Option<Arc<rustls::ServerConfig>>,
    seen: &Mutex<Vec<Seen>>,
    handler: &Handler,
) -> std::io::Result<()> {
    // No test waits on a stuck connection for long.
    conn.set_read_timeout(Some(Duration::from_secs(10)))?;
    conn.set_write_timeout(Some(Duration::from_secs(10)))?;
    match tls {
        None => exchange(conn, seen, handler),
        Some(config) => {
            let server = rustls::ServerConnection::new(config).map_err(std::io::Error::other)?;
            exchange(rustls::StreamOwned::new(server, conn), seen, handler)
        }
    }
}

fn exchange(
    stream: impl Read + Write,
    seen: &Mutex<Vec<Seen>>,
    handler: &Handler,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let (Some(method), Some(path)) = (parts.next(), parts.next()) else {
        return Ok(());
    };
    let (method, path) = (method.to_string(), path.to_string());
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        reader.read_line(&mut h)?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((n, v)) = h.split_once(':') {
            headers.push((n.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    let header = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    };
    let mut body = Vec::new();
    if header("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        loop {
            let mut size = String::new();
            reader.read_line(&mut size)?;
            let size = usize::from_str_radix(size.trim().split(';').next().unwrap_or("0"), 16)
                .map_err(std::io::Error::other)?;
            let mut chunk = vec![0; size + 2];
            reader.read_exact(&mut chunk)?;
            if size == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..size]);
        }
    } else if let Some(n) = header("content-length").and_then(|v| v.parse::<usize>().ok()) {
        body.resize(n, 0);
        reader.read_exact(&mut body)?;
    }
    let request = Seen {
        method,
        path,
        headers,
        body,
    };
    let before = {
        let mut all = seen.lock().expect("lock");
        let before = all.iter().filter(|s| s.path == request.path).count();
        all.push(request.clone());
        before
    };
    let reply = handler(&request, before);
    let mut out = format!(
        "HTTP/1.1 {} Stub\r\ncontent-length: {}\r\nconnection: close\r\n",
        reply.status,
        reply.body.len()
    );
    for (n, v) in &reply.headers {
        out.push_str(&format!("{n}: {v}\r\n"));
    }
    out.push_str("\r\n");
    let stream = reader.get_mut();
    stream.write_all(out.as_bytes())?;
    stream.write_all(&reply.body)?;
    stream.flush()
}

/// A throwaway certificate authority and a server certificate it signed
/// for `localhost` and `127.0.0.1`.
pub struct TestCa {
    /// The CA's certificate, PEM: what `--allow-http-ca` takes.
    pub ca_pem: String,
    server: Arc<rustls::ServerConfig>,
}

impl TestCa {
    pub fn new() -> TestCa {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
        let ca_key = KeyPair::generate().expect("CA key");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "durable test CA");
        let ca_cert = ca_params.self_signed(&ca_key).expect("CA certificate");
        let issuer = Issuer::new(ca_params, ca_key);
        let key = KeyPair::generate().expect("server key");
        let params = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .expect("server params");
        let cert = params.signed_by(&key, &issuer).expect("server certificate");
        let chain = vec![CertificateDer::from_pem_slice(cert.pem().as_bytes()).expect("cert PEM")];
        let key = PrivateKeyDer::from_pem_slice(key.serialize_pem().as_bytes()).expect("key PEM");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let server = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .expect("server TLS config");
        TestCa {
            ca_pem: ca_cert.pem(),
            server: Arc::new(server),
        }
    }
}
