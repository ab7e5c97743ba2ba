//! # durable-http
//!
//! HTTP from step instances: `wasi:http/outgoing-handler`, answered only
//! for destinations the operator allowed.
//!
//! The guest builds requests with the `wasi:http` types that
//! `wasmtime-wasi-http` implements; every request then comes to
//! [`HttpHooks::send_request`], which decides and sends:
//!
//! - **Who may ask.** Only step instances. A request from the workflow
//!   instance is refused (it would run again on every replay, unrecorded);
//!   the runner then fails the run with a message that says to move the
//!   call into a step.
//! - **Where to.** Deny by default: the request's scheme, host and port must
//!   match an [`HttpPattern`] (`--allow-http`). The host resolves the name
//!   itself, and only after the check (guests get no name lookup). A
//!   redirect is a new request from the guest, checked the same way.
//! - **How much.** Request and response bodies are cut at
//!   [`HttpLimits::max_body_bytes`]; connecting and the first response byte
//!   have timeouts, never beyond what is left of the step's own timeout.
//! - **What is remembered.** Every request leaves one line in the step's
//!   output (method, URL without its query, status, bytes, duration), kept
//!   with the attempt that made it.
//!
//! Refusals and limits are also kept on the hooks ([`HttpHooks::refusal`],
//! [`HttpHooks::notes`]) so that the runner can name the flag in the step's
//! error, whatever the guest's HTTP client made of the error code.
//!
//! **Architecture invariant:** knows nothing of runs, steps or the store;
//! the runner hands in a line sink and the attempt's remaining time.

mod allow;
mod config;
mod send;
mod trace;

pub use trace::RequestTrace;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::uri::Scheme as UriScheme;
use wasmtime_wasi_http::{Error, RequestOptions, WasiBody, WasiHttpHooks};

pub use allow::{HttpPattern, Scheme};
pub use config::{HttpLimits, LineSink};
use send::{Findings, RequestLog, Target};

/// What the operator allows step instances to reach over HTTP; the same
/// for every step of a host process. The default allows nothing.
#[derive(Clone, Default)]
pub struct HttpAccess {
    allow: Vec<HttpPattern>,
    limits: HttpLimits,
    /// Roots for HTTPS: webpki-roots plus the operator's CAs; `None` when
    /// nothing is allowed.
    tls: Option<Arc<rustls::ClientConfig>>,
    extra_roots: usize,
}

impl std::fmt::Debug for HttpAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpAccess")
            .field("allow", &self.allow)
            .field("limits", &self.limits)
            .field("extra_roots", &self.extra_roots)
            .finish()
    }
}

impl PartialEq for HttpAccess {
    fn eq(&self, other: &Self) -> bool {
        self.allow == other.allow
            && self.limits == other.limits
            && self.extra_roots == other.extra_roots
    }
}

impl Eq for HttpAccess {}

impl HttpAccess {
    /// Access to the hosts `allow` names, HTTPS verified against the
    /// well-known roots plus the certificates in `ca_pems` (PEM files'
    /// contents, with their names for errors).
    ///
    /// # Errors
    /// A message for the user when a CA file holds no certificate or one
    /// rustls refuses.
    pub fn new(
        allow: Vec<HttpPattern>,
        ca_pems: &[(String, Vec<u8>)],
        limits: HttpLimits,
    ) -> Result<HttpAccess, String> {
        use rustls::pki_types::CertificateDer;
        use rustls::pki_types::pem::PemObject;
        if allow.is_empty() && ca_pems.is_empty() {
            // Nothing can be sent: no TLS set-up to pay for at every start.
            return Ok(HttpAccess {
                limits,
                ..HttpAccess::default()
            });
        }
        let mut roots = rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        let mut extra_roots = 0;
        for (name, pem) in ca_pems {
            let mut found = 0;
            for cert in CertificateDer::pem_slice_iter(pem) {
                let cert = cert.map_err(|e| format!("{name}: not a PEM certificate file: {e}"))?;
                roots
                    .add(cert)
                    .map_err(|e| format!("{name}: the certificate cannot be a root: {e}"))?;
                found += 1;
            }
            if found == 0 {
                return Err(format!(
                    "{name}: no PEM certificate (BEGIN CERTIFICATE) in it"
                ));
            }
            extra_roots += found;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS set-up: {e}"))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(HttpAccess {
            allow,
            limits,
            tls: Some(Arc::new(tls)),
            extra_roots,
        })
    }

    /// The limits requests are held to.
    pub fn limits(&self) -> HttpLimits {
        self.limits
    }

    fn allows(&self, target: &Target) -> bool {
        self.allow
            .iter()
            .any(|p| p.allows(target.scheme, &target.host, target.port))
    }
}

/// What is left of the step attempt's time (`None`: no limit known).
pub type Remaining = Arc<dyn Fn() -> Option<Duration> + Send + Sync>;

/// Who makes the requests of one instance.
pub enum Caller {
    /// The workflow instance: every request is refused.
    Workflow,
    /// The instance of step `key`, with what is left of its attempt's time.
    Step {
        /// The step's key, for messages.
        key: String,
        /// Which attempt of the step this is (1-based), for the lines.
        attempt: u32,
        /// Its attempt's remaining time.
        remaining: Remaining,
        /// The attempt's span, when spans are exported: each request gets
        /// a span under it and sends its `traceparent`.
        trace: Option<RequestTrace>,
    },
}

/// The `wasi:http` hooks of one instance.
pub struct HttpHooks {
    access: Arc<HttpAccess>,
    caller: Caller,
    sink: LineSink,
    state: Arc<Mutex<Findings>>,
    logs: Vec<Arc<RequestLog>>,
    /// Requests sent so far (their spans' ids are derived from it).
    sent: u32,
}

impl HttpHooks {
    /// Hooks for one instance.
    pub fn new(access: Arc<HttpAccess>, caller: Caller, sink: LineSink) -> HttpHooks {
        HttpHooks {
            access,
            caller,
            sink,
            state: Arc::default(),
            logs: Vec::new(),
            sent: 0,
        }
    }

    /// Why a request of this instance was refused (the first one).
    pub fn refusal(&self) -> Option<String> {
        self.state.lock().ok().and_then(|s| s.refusal.clone())
    }

    /// Limits the instance's requests ran into, each naming its flag.
    pub fn notes(&self) -> Vec<String> {
        self.state
            .lock()
            .map(|s| s.notes.clone())
            .unwrap_or_default()
    }

    /// Writes the line of every request whose response was not read to
    /// its end. Call when the instance is done, before its output is taken.
    pub fn flush(&mut self) {
        for log in self.logs.drain(..) {
            log.finish_unread();
        }
    }

    fn refuse(&mut self, log: &RequestLog, message: String) -> SendFuture {
        log.refused(&message);
        if let Ok(mut s) = self.state.lock()
            && s.refusal.is_none()
        {
            s.refusal = Some(message);
        }
        Box::new(async { Err(Error::HttpRequestDenied) })
    }
}

/// What `send_request` returns: the response and the connection's driver.
type SendFuture = Box<
    dyn Future<
            Output = Result<
                (
                    http::Response<WasiBody>,
                    Box<dyn Future<Output = Result<(), Error>> + Send>,
                ),
                Error,
            >,
        > + Send,
>;

impl WasiHttpHooks for HttpHooks {
    fn is_supported_scheme(&mut self, scheme: &UriScheme) -> bool {
        *scheme == UriScheme::HTTP || *scheme == UriScheme::HTTPS
    }

    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        _response_done: Box<dyn Future<Output = Result<(), Error>> + Send>,
    ) -> SendFuture {
        let target = Target::of(request.uri());
        let prefix = match &self.caller {
            Caller::Step { attempt, .. } => format!("attempt {attempt}: "),
            Caller::Workflow => String::new(),
        };
        let log = Arc::new(RequestLog::new(
            &prefix,
            request.method().as_str(),
            &target.display,
            self.sink.clone(),
            self.state.clone(),
        ));
        let remaining = match &self.caller {
            Caller::Workflow => {
                return self.refuse(
                    &log,
                    format!(
                        "the workflow sent an HTTP request ({} {}); only steps may call other \
                         services, since workflow code runs again on every replay: make the call \
                         in a step",
                        request.method(),
                        target.display
                    ),
                );
            }
            Caller::Step { remaining, .. } => remaining(),
        };
        if let Some(why) = &target.invalid {
            return self.refuse(
                &log,
                format!(
                    "{} is not a URL the host can send to: {why}",
                    target.display
                ),
            );
        }
        if !self.access.allows(&target) {
            let key = match &self.caller {
                Caller::Step { key, .. } => key.as_str(),
                Caller::Workflow => "",
            };
            return self.refuse(
                &log,
                format!(
                    "step {key} may not send HTTP requests to {}: no --allow-http pattern allows it \
                     (to allow it, start the host with --allow-http {})",
                    target.origin(),
                    target.origin()
                ),
            );
        }
        let Some(tls) = self.access.tls.clone() else {
            return self.refuse(&log, "HTTP is not set up in this host".to_string());
        };
        let limits = self.access.limits;
        let within = |d: Option<Duration>| match (d, remaining) {
            (Some(d), Some(r)) => Some(d.min(r)),
            (d, r) => d.or(r),
        };
        let timeouts = send::Timeouts {
            connect: within(Some(
                options
                    .and_then(|o| o.connect_timeout)
                    .map_or(limits.connect_timeout, |d| d.min(limits.connect_timeout)),
            ))
            .unwrap_or(limits.connect_timeout),
            first_byte: within(
                match (
                    options.and_then(|o| o.first_byte_timeout),
                    limits.first_byte_timeout,
                ) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                },
            ),
            between_bytes: options.and_then(|o| o.between_bytes_timeout),
        };
        self.logs.push(log.clone());
        let mut request = request;
        self.sent += 1;
        let span = match &self.caller {
            Caller::Step {
                trace: Some(trace), ..
            } => Some(trace::RequestSpan::start(
                trace,
                self.sent,
                &mut request,
                &target.display,
            )),
            _ => None,
        };
        let sending = send::send(
            send::Connection {
                target,
                tls,
                limits,
                timeouts,
            },
            request,
            log,
        );
        match span {
            None => Box::new(sending),
            Some(span) => Box::new(async move {
                let result = sending.await;
                span.end(
                    result
                        .as_ref()
                        .map(|(r, _)| r.status().as_u16())
                        .map_err(|e| e.to_string()),
                );
                result
            }),
        }
    }
}
