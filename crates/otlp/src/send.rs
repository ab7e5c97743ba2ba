//! One POST of an export request to the collector (HTTP/1.1, http or
//! https with the well-known roots).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// How long connecting (and the TLS handshake) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The most of a collector's answer that is read.
const MAX_ANSWER: usize = 64 << 10;

/// How long the collector may take to answer a request.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

/// The collector's traces URL.
#[derive(Clone, PartialEq, Eq)]
pub struct Endpoint {
    uri: http::Uri,
    https: bool,
    host: String,
    port: u16,
}

impl Endpoint {
    /// An OTLP base URL (`http://collector:4318`, as
    /// `OTEL_EXPORTER_OTLP_ENDPOINT` is): `/v1/traces` is added to its
    /// path, unless the path ends so already.
    ///
    /// # Errors
    /// Why it is not an http(s) URL.
    pub fn parse(url: &str) -> Result<Endpoint, String> {
        let mut e = Endpoint::exact(url)?;
        let path = e.uri.path().trim_end_matches('/');
        if !path.ends_with("/v1/traces") {
            let path = format!("{path}/v1/traces");
            let path_and_query = match e.uri.query() {
                Some(q) => format!("{path}?{q}"),
                None => path,
            };
            let mut parts = e.uri.clone().into_parts();
            parts.path_and_query =
                Some(path_and_query.parse().map_err(|_| {
                    "an OTLP endpoint whose path cannot take /v1/traces".to_string()
                })?);
            e.uri = http::Uri::from_parts(parts)
                .map_err(|_| "an OTLP endpoint whose path cannot take /v1/traces".to_string())?;
        }
        Ok(e)
    }

    /// A URL used as it is (as `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` is).
    ///
    /// # Errors
    /// Why it is not an http(s) URL.
    ///
    /// Messages never repeat the URL: it may hold a token.
    pub fn exact(url: &str) -> Result<Endpoint, String> {
        if url.contains('@') {
            return Err(
                "the OTLP endpoint has user info (`user:password@`), which durable does not send; \
                 put a collector without authentication on a private network or loopback"
                    .into(),
            );
        }
        let uri: http::Uri = url
            .trim()
            .parse()
            .map_err(|e| format!("the OTLP endpoint is not a URL: {e}"))?;
        let https = match uri.scheme_str() {
            Some("http") => false,
            Some("https") => true,
            _ => {
                return Err(
                    "the OTLP endpoint must be an http:// or https:// URL (OTLP over HTTP, \
                     port 4318 by default)"
                        .into(),
                );
            }
        };
        let host = uri
            .host()
            .filter(|h| !h.is_empty())
            .ok_or("the OTLP endpoint has no host")?
            .to_string();
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        Ok(Endpoint {
            uri,
            https,
            host,
            port,
        })
    }
}

/// Shown without user info or query (they may hold secrets).
impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.https { "https" } else { "http" };
        write!(
            f,
            "{scheme}://{}:{}{}",
            self.host,
            self.port,
            self.uri.path()
        )
    }
}

impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Sends requests to one endpoint.
pub(crate) struct Client {
    endpoint: Endpoint,
    tls: Option<tokio_rustls::TlsConnector>,
}

impl Client {
    pub(crate) fn new(endpoint: Endpoint) -> Client {
        let tls = endpoint.https.then(|| {
            let mut roots = rustls::RootCertStore::empty();
            roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
            let config = rustls::ClientConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .map(|b| b.with_root_certificates(roots).with_no_client_auth());
            config
                .ok()
                .map(|c| tokio_rustls::TlsConnector::from(Arc::new(c)))
        });
        Client {
            endpoint,
            tls: tls.flatten(),
        }
    }

    /// POSTs `body` (an `ExportTraceServiceRequest`) and reads the answer.
    pub(crate) async fn post(&self, body: Vec<u8>) -> Result<(), String> {
        let e = &self.endpoint;
        let tcp = tokio::time::timeout(
            CONNECT_TIMEOUT,
            TcpStream::connect((e.host.as_str(), e.port)),
        )
        .await
        .map_err(|_| "connecting timed out".to_string())?
        .map_err(|err| format!("cannot connect: {err}"))?;
        let _ = tcp.set_nodelay(true);
        let path = e
            .uri
            .path_and_query()
            .map_or("/v1/traces".to_string(), |p| p.as_str().to_string());
        let request = http::Request::post(path)
            .header(http::header::HOST, format!("{}:{}", e.host, e.port))
            .header(http::header::CONTENT_TYPE, "application/x-protobuf")
            .body(Full::new(Bytes::from(body)))
            .map_err(|err| err.to_string())?;
        let status = if e.https {
            let tls = self.tls.as_ref().ok_or("TLS is not available")?;
            let name = rustls::pki_types::ServerName::try_from(e.host.clone())
                .map_err(|err| format!("{}: {err}", e.host))?;
            let stream = tokio::time::timeout(CONNECT_TIMEOUT, tls.connect(name, tcp))
                .await
                .map_err(|_| "the TLS handshake timed out".to_string())?
                .map_err(|err| format!("TLS: {err}"))?;
            exchange(TokioIo::new(stream), request).await?
        } else {
            exchange(TokioIo::new(tcp), request).await?
        };
        if status.is_success() {
            Ok(())
        } else {
            Err(format!("the collector answered {status}"))
        }
    }
}

async fn exchange<I>(io: I, request: http::Request<Full<Bytes>>) -> Result<http::StatusCode, String>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let answer = async {
        let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
            .await
            .map_err(|err| err.to_string())?;
        let driver = tokio::spawn(conn);
        let response = sender
            .send_request(request)
            .await
            .map_err(|err| err.to_string())?;
        let status = response.status();
        // Read the (small) answer so the connection ends cleanly; a
        // collector that sends more is not read further.
        let _ = http_body_util::Limited::new(response.into_body(), MAX_ANSWER)
            .collect()
            .await;
        driver.abort();
        Ok::<_, String>(status)
    };
    tokio::time::timeout(ANSWER_TIMEOUT, answer)
        .await
        .map_err(|_| "the collector did not answer in time".to_string())?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_get_their_path_and_hide_secrets() {
        let e = Endpoint::parse("http://collector:4318").expect("url");
        assert_eq!(e.to_string(), "http://collector:4318/v1/traces");
        let e = Endpoint::parse("https://otel.example.com/v1/traces?token=x").expect("url");
        assert_eq!(e.to_string(), "https://otel.example.com:443/v1/traces");
        let e = Endpoint::parse("http://c:4318/base?token=abc").expect("url");
        assert_eq!(e.uri.to_string(), "http://c:4318/base/v1/traces?token=abc");
        for secret in [
            "http://u:SECRET@c:4318",
            "http://u:SEC/RET@c:1/",
            "ftp://u:SECRET@h/",
        ] {
            let err = Endpoint::parse(secret).expect_err("refused");
            assert!(!err.contains("SECRET") && !err.contains("RET"), "{err}");
        }
        assert!(
            !Endpoint::parse("http://c/ ?token=SECRET")
                .unwrap_err()
                .contains("SECRET")
        );
        let e = Endpoint::parse("http://c:4318/custom/").expect("url");
        assert_eq!(e.to_string(), "http://c:4318/custom/v1/traces");
        assert!(Endpoint::parse("grpc://c:4317").is_err());
        assert!(Endpoint::parse("collector:4318").is_err());
    }
}
