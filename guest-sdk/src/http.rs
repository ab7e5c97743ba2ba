//! HTTP requests from step bodies, over `wasi:http`.
//!
//! ```ignore
//! use durable_sdk::{http, Failure};
//!
//! fn create_account(user: User) -> Result<Account, Failure> {
//!     let account = http::post("https://crm.example.com/accounts")
//!         .header("authorization", &token)
//!         .json(&user)
//!         .send()?           // transport errors: retryable
//!         .error_for_status()? // 4xx: permanent; 5xx: retryable
//!         .json()?;
//!     Ok(account)
//! }
//! ```
//!
//! - The host sends a request only if its operator allowed the destination
//!   (`durable run --allow-http api.example.com`); anything else is refused,
//!   and the step fails with a message naming the flag.
//! - Only steps may send requests: the workflow runs again on every replay,
//!   so a request there would be repeated and unrecorded. The host fails a
//!   run whose workflow code tries.
//! - Every request carries `Idempotency-Key: <idempotency_key()>` (the run
//!   and step, the same on every attempt and after a crash), so a service
//!   that honours the header does the work once however often the step
//!   runs. Turn it off with [`Request::no_idempotency_key`].
//! - Redirects are followed (at most 5); each hop is a request the host
//!   checks against its allow-list.
//! - Calls block until the whole response has arrived; the host bounds
//!   bodies (`--max-http-body-mb`) and waits (`--http-connect-timeout-ms`,
//!   the step's timeout).

use std::fmt;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::__internal::wasi::http::outgoing_handler;
use crate::__internal::wasi::http::types::{
    ErrorCode, Fields, IncomingBody, Method, OutgoingBody, OutgoingRequest, RequestOptions, Scheme,
};
use crate::__internal::wasi::io::streams::StreamError;
use crate::Failure;

/// Most redirects followed for one request.
const MAX_REDIRECTS: usize = 5;
/// Largest write into an output stream at once.
const WRITE_CHUNK: usize = 4096;

/// A GET request of `url`.
pub fn get(url: &str) -> Request {
    request("GET", url)
}

/// A POST request to `url`.
pub fn post(url: &str) -> Request {
    request("POST", url)
}

/// A PUT request to `url`.
pub fn put(url: &str) -> Request {
    request("PUT", url)
}

/// A PATCH request to `url`.
pub fn patch(url: &str) -> Request {
    request("PATCH", url)
}

/// A DELETE request of `url`.
pub fn delete(url: &str) -> Request {
    request("DELETE", url)
}

/// A request with any method.
pub fn request(method: &str, url: &str) -> Request {
    Request {
        method: method.to_ascii_uppercase(),
        url: url.to_string(),
        headers: Vec::new(),
        body: Vec::new(),
        idempotency_key: Key::Step,
        follow_redirects: true,
        timeout: None,
        error: None,
    }
}

enum Key {
    Step,
    Given(String),
    None,
}

/// A request being built; [`Request::send`] sends it.
pub struct Request {
    method: String,
    url: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    idempotency_key: Key,
    follow_redirects: bool,
    timeout: Option<Duration>,
    /// A mistake found while building, reported by `send`.
    error: Option<String>,
}

impl Request {
    /// Adds a header (names are case-insensitive; repeats are kept).
    pub fn header(mut self, name: &str, value: &str) -> Request {
        self.headers
            .push((name.to_ascii_lowercase(), value.to_string()));
        self
    }

    /// Sends `value` as a JSON body with `Content-Type: application/json`.
    pub fn json<T: Serialize + ?Sized>(mut self, value: &T) -> Request {
        match serde_json::to_vec(value) {
            Ok(body) => {
                self.body = body;
                if !self.has_header("content-type") {
                    self = self.header("content-type", "application/json");
                }
            }
            Err(e) => self.error = Some(format!("cannot encode the JSON body: {e}")),
        }
        self
    }

    /// Sends `body` as it is.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Request {
        self.body = body.into();
        self
    }

    /// Sends this `Idempotency-Key` instead of the step's.
    pub fn idempotency_key(mut self, key: &str) -> Request {
        self.idempotency_key = Key::Given(key.to_string());
        self
    }

    /// Sends no `Idempotency-Key` header.
    pub fn no_idempotency_key(mut self) -> Request {
        self.idempotency_key = Key::None;
        self
    }

    /// Returns a redirect response as it is instead of following it.
    pub fn no_redirects(mut self) -> Request {
        self.follow_redirects = false;
        self
    }

    /// Gives up connecting, and waiting for the response to start, after
    /// `timeout` each (the host's limits and the step's timeout still
    /// apply).
    pub fn timeout(mut self, timeout: Duration) -> Request {
        self.timeout = Some(timeout);
        self
    }

    fn has_header(&self, name: &str) -> bool {
        self.headers.iter().any(|(n, _)| n == name)
    }

    /// Sends the request and reads the whole response.
    ///
    /// # Errors
    /// When the request could not be sent or the response not read: a
    /// refused destination, a connection or TLS failure, a timeout, a body
    /// over the host's limit, a malformed URL. A response with an error
    /// status is not an error here; see [`Response::error_for_status`].
    pub fn send(mut self) -> Result<Response, HttpError> {
        if let Some(e) = self.error.take() {
            return Err(HttpError::new(&self.method, &self.url, e));
        }
        let key = match std::mem::replace(&mut self.idempotency_key, Key::None) {
            Key::Step => Some(crate::idempotency_key()),
            Key::Given(k) => Some(k),
            Key::None => None,
        };
        if let Some(key) = key
            && !self.has_header("idempotency-key")
        {
            self = self.header("idempotency-key", &key);
        }
        let mut method = self.method.clone();
        let mut url = self.url.clone();
        let mut body = std::mem::take(&mut self.body);
        for _ in 0..=MAX_REDIRECTS {
            let response = self.send_once(&method, &url, &body)?;
            let location = response.header("location").map(str::to_string);
            let redirect = matches!(response.status, 301 | 302 | 303 | 307 | 308);
            let (Some(location), true, true) = (location, redirect, self.follow_redirects) else {
                return Ok(response);
            };
            let here = Url::parse(&url)
                .map_err(|e| HttpError::new(&method, &url, format!("bad URL: {e}")))?;
            let next = here
                .join(&location)
                .map_err(|e| HttpError::new(&method, &url, format!("bad redirect: {e}")))?;
            if !next.same_origin(&here) {
                // Credentials are for the origin that was asked.
                self.headers
                    .retain(|(n, _)| n != "authorization" && n != "cookie");
            }
            url = next.to_string();
            let keeps_method =
                matches!(response.status, 307 | 308) || matches!(method.as_str(), "GET" | "HEAD");
            if !keeps_method {
                method = "GET".into();
                body.clear();
                self.headers
                    .retain(|(n, _)| n != "content-type" && n != "content-length");
            }
        }
        Err(HttpError::new(
            &self.method,
            &self.url,
            format!("more than {MAX_REDIRECTS} redirects"),
        ))
    }

    fn send_once(&self, method: &str, url: &str, body: &[u8]) -> Result<Response, HttpError> {
        let fail = |m: String| HttpError::new(method, url, m);
        let parsed = Url::parse(url).map_err(&fail)?;
        let mut entries: Vec<(String, Vec<u8>)> = self
            .headers
            .iter()
            .filter(|(n, _)| n != "content-length")
            .map(|(n, v)| (n.clone(), v.clone().into_bytes()))
            .collect();
        // A length, not chunks: many servers read bodies by Content-Length.
        if !body.is_empty() || matches!(method, "POST" | "PUT" | "PATCH") {
            entries.push(("content-length".into(), body.len().to_string().into_bytes()));
        }
        let headers = Fields::from_list(&entries)
            .map_err(|e| fail(format!("a header is not allowed or malformed: {e:?}")))?;
        let request = OutgoingRequest::new(headers);
        request
            .set_method(&method_of(method))
            .map_err(|()| fail("invalid method".into()))?;
        request
            .set_scheme(Some(&parsed.scheme))
            .map_err(|()| fail("invalid scheme".into()))?;
        request
            .set_authority(Some(&parsed.authority))
            .map_err(|()| fail("invalid host".into()))?;
        request
            .set_path_with_query(Some(&parsed.path_and_query))
            .map_err(|()| fail("invalid path".into()))?;
        let outgoing = request
            .body()
            .map_err(|()| fail("the request body was taken twice".into()))?;
        let options = self.timeout.map(|t| {
            let o = RequestOptions::new();
            let nanos = u64::try_from(t.as_nanos()).unwrap_or(u64::MAX);
            let _ = o.set_connect_timeout(Some(nanos));
            let _ = o.set_first_byte_timeout(Some(nanos));
            o
        });
        let pending = outgoing_handler::handle(request, options).map_err(|c| fail(describe(&c)))?;
        write_body(outgoing, body).map_err(&fail)?;
        let incoming = loop {
            match pending.get() {
                Some(Ok(Ok(response))) => break response,
                Some(Ok(Err(code))) => return Err(fail(describe(&code))),
                Some(Err(())) => return Err(fail("the response was taken twice".into())),
                None => pending.subscribe().block(),
            }
        };
        let status = incoming.status();
        let headers = incoming
            .headers()
            .entries()
            .into_iter()
            .map(|(n, v)| {
                (
                    n.to_ascii_lowercase(),
                    String::from_utf8_lossy(&v).into_owned(),
                )
            })
            .collect();
        let body = incoming
            .consume()
            .map_err(|()| fail("the response body was taken twice".into()))?;
        let bytes = read_body(body).map_err(&fail)?;
        drop(incoming);
        Ok(Response {
            status,
            headers,
            body: bytes,
            url: url.to_string(),
        })
    }
}

fn method_of(method: &str) -> Method {
    match method {
        "GET" => Method::Get,
        "HEAD" => Method::Head,
        "POST" => Method::Post,
        "PUT" => Method::Put,
        "DELETE" => Method::Delete,
        "PATCH" => Method::Patch,
        "OPTIONS" => Method::Options,
        other => Method::Other(other.to_string()),
    }
}

fn write_body(outgoing: OutgoingBody, body: &[u8]) -> Result<(), String> {
    {
        let stream = outgoing
            .write()
            .map_err(|()| "the request body stream was taken twice".to_string())?;
        for chunk in body.chunks(WRITE_CHUNK) {
            stream
                .blocking_write_and_flush(chunk)
                .map_err(|e| format!("sending the body failed: {}", stream_error(e)))?;
        }
        // The stream must be dropped before the body is finished.
    }
    OutgoingBody::finish(outgoing, None).map_err(|c| describe(&c))
}

fn read_body(body: IncomingBody) -> Result<Vec<u8>, String> {
    let mut bytes = Vec::new();
    {
        let stream = body
            .stream()
            .map_err(|()| "the response body stream was taken twice".to_string())?;
        loop {
            match stream.blocking_read(64 * 1024) {
                Ok(chunk) => bytes.extend_from_slice(&chunk),
                Err(StreamError::Closed) => break,
                Err(e) => return Err(format!("reading the response failed: {}", stream_error(e))),
            }
        }
    }
    drop(IncomingBody::finish(body));
    Ok(bytes)
}

fn stream_error(e: StreamError) -> String {
    match e {
        StreamError::Closed => "the stream was closed".into(),
        StreamError::LastOperationFailed(err) => {
            // The host's error behind an I/O failure, when it is an HTTP one.
            match crate::__internal::wasi::http::types::http_error_code(&err) {
                Some(code) => describe(&code),
                None => err.to_debug_string(),
            }
        }
    }
}

/// A short text for an error code, with what to do when the host refused.
fn describe(code: &ErrorCode) -> String {
    match code {
        ErrorCode::HttpRequestDenied => {
            "the host refused the request (not allowed by its --allow-http patterns)".into()
        }
        ErrorCode::HttpResponseBodySize(limit) => format!(
            "the response body is larger than the host allows{} (--max-http-body-mb)",
            limit.map(|l| format!(" ({l} bytes)")).unwrap_or_default()
        ),
        ErrorCode::HttpRequestBodySize(limit) => format!(
            "the request body is larger than the host allows{} (--max-http-body-mb)",
            limit.map(|l| format!(" ({l} bytes)")).unwrap_or_default()
        ),
        other => format!("{other:?}"),
    }
}

/// A response, read to its end.
#[derive(Debug, Clone)]
pub struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    url: String,
}

impl Response {
    /// The status code.
    pub fn status(&self) -> u16 {
        self.status
    }

    /// Whether the status is 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    /// All headers, names in lower case, in the order received.
    pub fn headers(&self) -> &[(String, String)] {
        &self.headers
    }

    /// The body's bytes.
    pub fn body(&self) -> &[u8] {
        &self.body
    }

    /// The body as text (invalid UTF-8 replaced).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body decoded from JSON.
    ///
    /// # Errors
    /// When the body is not JSON of type `T`.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, HttpError> {
        serde_json::from_slice(&self.body).map_err(|e| HttpError {
            message: format!("the response of {} is not the JSON expected: {e}", self.url),
        })
    }

    /// The response if its status is 2xx (or 1xx/3xx); else a step
    /// [`Failure`]: permanent for 4xx (the request itself is wrong: no retry
    /// fixes it) except 408 and 429, retryable for the rest (5xx: the
    /// service may recover).
    ///
    /// # Errors
    /// The failure, with the status and the start of the body.
    pub fn error_for_status(self) -> Result<Response, Failure> {
        if self.status < 400 {
            return Ok(self);
        }
        let mut text = self.text();
        if text.len() > 500 {
            let mut end = 500;
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            text.truncate(end);
            text.push('…');
        }
        let message = format!("{} answered {}: {}", self.url, self.status, text.trim());
        let permanent = (400..500).contains(&self.status) && !matches!(self.status, 408 | 429);
        Err(if permanent {
            Failure::permanent(message)
        } else {
            Failure::retryable(message)
        })
    }
}

/// A request that could not be sent or whose response could not be read.
/// As a step's error it is retryable (the host makes a refusal permanent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpError {
    message: String,
}

impl HttpError {
    fn new(method: &str, url: &str, why: String) -> HttpError {
        HttpError {
            message: format!("{method} {url} failed: {why}"),
        }
    }
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for HttpError {}

impl From<HttpError> for Failure {
    fn from(e: HttpError) -> Failure {
        Failure::retryable(e)
    }
}

/// The parts of an absolute http(s) URL that `wasi:http` wants.
struct Url {
    scheme: Scheme,
    authority: String,
    path_and_query: String,
}

impl Url {
    fn parse(url: &str) -> Result<Url, String> {
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| format!("{url:?} is not an absolute URL"))?;
        let scheme = match scheme.to_ascii_lowercase().as_str() {
            "http" => Scheme::Http,
            "https" => Scheme::Https,
            other => return Err(format!("unsupported scheme {other:?}")),
        };
        let rest = rest.split('#').next().unwrap_or_default();
        let split = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, path) = rest.split_at(split);
        if authority.is_empty() {
            return Err(format!("{url:?} has no host"));
        }
        let path_and_query = if path.starts_with('?') {
            format!("/{path}")
        } else if path.is_empty() {
            "/".to_string()
        } else {
            path.to_string()
        };
        Ok(Url {
            scheme,
            authority: authority.to_string(),
            path_and_query,
        })
    }

    fn scheme_name(&self) -> &'static str {
        match self.scheme {
            Scheme::Https => "https",
            _ => "http",
        }
    }

    fn same_origin(&self, other: &Url) -> bool {
        self.scheme_name() == other.scheme_name()
            && self.authority.eq_ignore_ascii_case(&other.authority)
    }

    /// `location` (absolute, or relative to this URL's origin or path).
    fn join(&self, location: &str) -> Result<Url, String> {
        if location.contains("://") {
            return Url::parse(location);
        }
        let scheme = self.scheme_name();
        if let Some(rest) = location.strip_prefix("//") {
            return Url::parse(&format!("{scheme}://{rest}"));
        }
        let path = if location.starts_with('/') {
            location.to_string()
        } else {
            let base = self.path_and_query.split('?').next().unwrap_or("/");
            let dir = &base[..base.rfind('/').map_or(0, |i| i + 1)];
            format!("{dir}{location}")
        };
        Url::parse(&format!("{scheme}://{}{path}", self.authority))
    }
}

impl fmt::Display for Url {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = self.scheme_name();
        write!(f, "{scheme}://{}{}", self.authority, self.path_and_query)
    }
}
