//! Sending one allowed request: name lookup, TCP, TLS, HTTP/1.1 with
//! hyper, bodies metered against the limit, and the request's line.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Uri;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use wasmtime_wasi_http::io::TokioIo;
use wasmtime_wasi_http::{Error, WasiBody};

use crate::allow::Scheme;
use crate::config::{HttpLimits, LineSink};

/// What the host found while the instance sent requests.
#[derive(Default)]
pub(crate) struct Findings {
    pub(crate) refusal: Option<String>,
    pub(crate) notes: Vec<String>,
}

/// Where a request goes, from its URI.
pub(super) struct Target {
    pub(super) scheme: Scheme,
    /// The host as in the URL (IPv6 in brackets).
    pub(super) host: String,
    pub(super) port: u16,
    /// The URL to show: no user, no query values.
    pub(super) display: String,
    /// Why the URI cannot be sent, if it cannot.
    pub(super) invalid: Option<String>,
}

impl Target {
    pub(super) fn of(uri: &Uri) -> Target {
        let scheme = match uri.scheme_str() {
            Some("http") => Ok(Scheme::Http),
            Some("https") => Ok(Scheme::Https),
            Some(other) => Err(format!("unsupported scheme {other:?}")),
            None => Err("no scheme".to_string()),
        };
        let host = uri.host().unwrap_or_default().to_string();
        let scheme_or_http = *scheme.as_ref().unwrap_or(&Scheme::Http);
        let port = uri
            .port_u16()
            .unwrap_or_else(|| scheme_or_http.default_port());
        let mut display = format!("{}://{host}", uri.scheme_str().unwrap_or("?"));
        if let Some(p) = uri.port_u16() {
            display.push_str(&format!(":{p}"));
        }
        display.push_str(uri.path());
        if uri.query().is_some() {
            // Query strings often carry tokens: the line says there was one.
            display.push_str("?…");
        }
        let invalid = match (&scheme, host.is_empty()) {
            (Err(e), _) => Some(e.clone()),
            (_, true) => Some("no host".to_string()),
            _ => None,
        };
        Target {
            scheme: scheme_or_http,
            host,
            port,
            display,
            invalid,
        }
    }

    /// `scheme://host:port`, what a pattern allowing it would say.
    pub(super) fn origin(&self) -> String {
        format!("{}://{}:{}", self.scheme, self.host, self.port)
    }

    /// The host as name lookup wants it (no brackets).
    fn lookup_host(&self) -> &str {
        self.host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(&self.host)
    }
}

/// How long each phase of a request may take.
pub(super) struct Timeouts {
    pub(super) connect: Duration,
    pub(super) first_byte: Option<Duration>,
    pub(super) between_bytes: Option<Duration>,
}

/// Everything needed to send one request.
pub(super) struct Connection {
    pub(super) target: Target,
    pub(super) tls: Arc<rustls::ClientConfig>,
    pub(super) limits: HttpLimits,
    pub(super) timeouts: Timeouts,
}

/// One request's line in the step's output, written once: when the
/// response body ends, fails, or is dropped, or when the request fails.
pub(crate) struct RequestLog {
    /// `attempt N: ` in a step.
    prefix: String,
    method: String,
    url: String,
    sink: LineSink,
    findings: Arc<Mutex<Findings>>,
    started: Instant,
    state: Mutex<LogState>,
}

#[derive(Default)]
struct LogState {
    status: Option<u16>,
    sent: u64,
    received: u64,
    done: bool,
}

impl RequestLog {
    pub(super) fn new(
        prefix: &str,
        method: &str,
        url: &str,
        sink: LineSink,
        findings: Arc<Mutex<Findings>>,
    ) -> RequestLog {
        RequestLog {
            prefix: prefix.to_string(),
            method: method.to_string(),
            url: url.to_string(),
            sink,
            findings,
            started: Instant::now(),
            state: Mutex::default(),
        }
    }

    fn count(&self, side: Side, bytes: u64) -> u64 {
        let Ok(mut s) = self.state.lock() else {
            return 0;
        };
        let total = match side {
            Side::Request => &mut s.sent,
            Side::Response => &mut s.received,
        };
        *total += bytes;
        *total
    }

    fn status(&self, status: u16) {
        if let Ok(mut s) = self.state.lock() {
            s.status = Some(status);
        }
    }

    /// A limit was hit: the step's error will say so.
    fn note(&self, note: String) {
        if let Ok(mut f) = self.findings.lock() {
            f.notes.push(note);
        }
    }

    /// Writes the line of a request the host refused to send.
    pub(super) fn refused(&self, why: &str) {
        if let Ok(mut s) = self.state.lock() {
            if s.done {
                return;
            }
            s.done = true;
        }
        (self.sink)(&format!(
            "{}{} {} → refused: {why}",
            self.prefix, self.method, self.url
        ));
    }

    /// Writes the line, once. `problem` says how the request went wrong.
    fn finish(&self, problem: Option<&str>) {
        let line = {
            let Ok(mut s) = self.state.lock() else {
                return;
            };
            if s.done {
                return;
            }
            s.done = true;
            let ms = self.started.elapsed().as_millis();
            let mut line = format!("{}{} {} → ", self.prefix, self.method, self.url);
            match s.status {
                Some(status) => line.push_str(&format!(
                    "{status}, sent {} B, received {} B in {ms} ms",
                    s.sent, s.received
                )),
                None => line.push_str(&format!("no response after {ms} ms, sent {} B", s.sent)),
            }
            if let Some(problem) = problem {
                line.push_str(&format!(": {problem}"));
            }
            line
        };
        (self.sink)(&line);
    }

    /// The request failed (or was refused) before or while its response came.
    pub(super) fn fail(&self, why: &str) {
        self.finish(Some(why));
    }

    /// The instance ended without reading the whole response.
    pub(super) fn finish_unread(&self) {
        self.finish(Some("the response was not read to its end"));
    }
}

/// The result of [`send`]: the response, and the task that drives the
/// connection while the guest reads it.
type Sent = (
    http::Response<WasiBody>,
    Box<dyn Future<Output = Result<(), Error>> + Send>,
);

/// Sends `request` over a new connection; its line is written when it ends.
pub(super) async fn send(
    conn: Connection,
    request: http::Request<WasiBody>,
    log: Arc<RequestLog>,
) -> Result<Sent, Error> {
    let result = exchange(conn, request, log.clone()).await;
    if let Err(e) = &result {
        log.fail(&e.to_string());
    }
    result
}

trait Io: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Io for T {}

async fn exchange(
    conn: Connection,
    request: http::Request<WasiBody>,
    log: Arc<RequestLog>,
) -> Result<Sent, Error> {
    let Connection {
        target,
        tls,
        limits,
        timeouts,
    } = conn;
    let limit = limits.max_body_bytes;
    let over = |side: Side| {
        format!(
            "the {side} body of {} {} is larger than the host's limit of {} (--max-http-body-mb)",
            log.method,
            log.url,
            human_bytes(limit)
        )
    };
    let (mut parts, body) = request.into_parts();
    if content_length(&parts.headers).is_some_and(|n| n > limit) {
        log.note(over(Side::Request));
        return Err(Error::HttpRequestBodySize(Some(limit)));
    }
    let connect = async {
        let stream = connect(&target, &tls, &log).await?;
        hyper::client::conn::http1::handshake::<_, Metered<WasiBody>>(TokioIo::new(stream))
            .await
            .map_err(Error::from)
    };
    let (mut sender, connection) = match tokio::time::timeout(timeouts.connect, connect).await {
        Ok(r) => r?,
        Err(_) => {
            log.note(format!(
                "connecting to {} took longer than {} ms (--http-connect-timeout-ms, or what was \
                 left of the step's timeout)",
                target.origin(),
                timeouts.connect.as_millis()
            ));
            return Err(Error::ConnectionTimeout);
        }
    };
    // The request line carries the path only; the host is in `Host`.
    parts.uri = parts
        .uri
        .path_and_query()
        .map_or_else(|| Uri::from_static("/"), |p| Uri::from(p.clone()));
    let body = Metered::new(
        body,
        Side::Request,
        limit,
        None,
        log.clone(),
        over(Side::Request),
    );
    let request = http::Request::from_parts(parts, body);
    let mut connection = Box::pin(connection);
    let mut ended: Option<Result<(), hyper::Error>> = None;
    let response = {
        let exchange = sender.send_request(request);
        tokio::pin!(exchange);
        let first_byte = async {
            match timeouts.first_byte {
                Some(d) => tokio::time::sleep(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::pin!(first_byte);
        loop {
            tokio::select! {
                r = &mut exchange => break r.map_err(Error::from)?,
                r = &mut connection, if ended.is_none() => ended = Some(r),
                () = &mut first_byte => {
                    log.note(format!(
                        "{} {} had no response after {} ms (--http-first-byte-timeout-ms, or what \
                         was left of the step's timeout)",
                        log.method,
                        log.url,
                        timeouts.first_byte.unwrap_or_default().as_millis()
                    ));
                    return Err(Error::ConnectionReadTimeout);
                }
            }
        }
    };
    log.status(response.status().as_u16());
    if content_length(response.headers()).is_some_and(|n| n > limit) {
        log.note(over(Side::Response));
        return Err(Error::HttpResponseBodySize(Some(limit)));
    }
    let response = response.map(|incoming| {
        Metered::new(
            incoming.map_err(Error::from),
            Side::Response,
            limit,
            timeouts.between_bytes,
            log.clone(),
            over(Side::Response),
        )
        .boxed_unsync()
    });
    let driver = async move {
        match ended {
            Some(r) => r.map_err(Error::from),
            None => connection.await.map_err(Error::from),
        }
    };
    Ok((response, Box::new(driver)))
}

/// Looks the name up (only now that it is allowed), connects to the first
/// address that answers, and wraps the stream in TLS for https.
async fn connect(
    target: &Target,
    tls: &Arc<rustls::ClientConfig>,
    log: &RequestLog,
) -> Result<Box<dyn Io>, Error> {
    let addrs = tokio::net::lookup_host((target.lookup_host(), target.port))
        .await
        .map_err(|e| Error::DnsError {
            rcode: Some(e.to_string()),
            info_code: None,
        })?;
    let mut last = None;
    let mut tcp = None;
    for addr in addrs {
        match TcpStream::connect(addr).await {
            Ok(s) => {
                tcp = Some(s);
                break;
            }
            Err(e) => last = Some(e),
        }
    }
    let tcp = match (tcp, last) {
        (Some(s), _) => s,
        (None, Some(e)) => return Err(Error::Connect(e)),
        (None, None) => return Err(Error::DestinationNotFound),
    };
    let _ = tcp.set_nodelay(true);
    match target.scheme {
        Scheme::Http => Ok(Box::new(tcp)),
        Scheme::Https => {
            let name = rustls::pki_types::ServerName::try_from(target.lookup_host().to_string())
                .map_err(|_| Error::HttpRequestUriInvalid)?;
            let stream = tokio_rustls::TlsConnector::from(tls.clone())
                .connect(name, tcp)
                .await
                .map_err(|e| {
                    log.note(format!(
                        "TLS with {} failed: {e} (a server with a certificate of a private CA \
                         needs that CA: --allow-http-ca FILE)",
                        target.origin()
                    ));
                    Error::Tls(e)
                })?;
            Ok(Box::new(stream))
        }
    }
}

fn content_length(headers: &http::HeaderMap) -> Option<u64> {
    headers
        .get(http::header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

/// `1 MiB`, `512 KiB`, `100 B`.
fn human_bytes(n: u64) -> String {
    if n >= 1 << 20 && n.is_multiple_of(1 << 20) {
        format!("{} MiB", n >> 20)
    } else if n >= 1 << 10 && n.is_multiple_of(1 << 10) {
        format!("{} KiB", n >> 10)
    } else {
        format!("{n} B")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Request,
    Response,
}

impl std::fmt::Display for Side {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Side::Request => "request",
            Side::Response => "response",
        })
    }
}

/// A body counted into the request's line and cut at the size limit; a
/// response body also ends the line when it ends, and may have a timeout
/// between frames.
struct Metered<B> {
    inner: B,
    side: Side,
    limit: u64,
    log: Arc<RequestLog>,
    over: String,
    idle: Option<(Duration, Pin<Box<tokio::time::Sleep>>)>,
}

impl<B> Metered<B> {
    fn new(
        inner: B,
        side: Side,
        limit: u64,
        idle: Option<Duration>,
        log: Arc<RequestLog>,
        over: String,
    ) -> Metered<B> {
        Metered {
            inner,
            side,
            limit,
            log,
            over,
            idle: idle.map(|d| (d, Box::pin(tokio::time::sleep(d)))),
        }
    }
}

impl<B> Body for Metered<B>
where
    B: Body<Data = Bytes, Error = Error> + Unpin,
{
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some((d, sleep)) = &mut this.idle {
                    sleep.as_mut().reset(tokio::time::Instant::now() + *d);
                }
                let len = frame.data_ref().map_or(0, |d| d.len() as u64);
                if this.log.count(this.side, len) > this.limit {
                    this.log.note(this.over.clone());
                    this.log.fail("over the body limit (--max-http-body-mb)");
                    return Poll::Ready(Some(Err(match this.side {
                        Side::Request => Error::HttpRequestBodySize(Some(this.limit)),
                        Side::Response => Error::HttpResponseBodySize(Some(this.limit)),
                    })));
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                this.log.fail(&e.to_string());
                Poll::Ready(Some(Err(e)))
            }
            Poll::Ready(None) => {
                if this.side == Side::Response {
                    this.log.finish(None);
                }
                Poll::Ready(None)
            }
            Poll::Pending => {
                if let Some((d, sleep)) = &mut this.idle
                    && sleep.as_mut().poll(cx).is_ready()
                {
                    let message = format!(
                        "no data for {} ms (the request's between-bytes timeout)",
                        d.as_millis()
                    );
                    this.log.fail(&message);
                    return Poll::Ready(Some(Err(Error::ConnectionReadTimeout)));
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl<B> Drop for Metered<B> {
    fn drop(&mut self) {
        if self.side == Side::Response {
            self.log.finish_unread();
        }
    }
}
