//! TLS to PostgreSQL, with rustls, as libpq's `sslmode` and `sslrootcert`
//! ask for it in the database URL:
//!
//! | `sslmode`          | TLS                          | the server's certificate        |
//! |--------------------|------------------------------|---------------------------------|
//! | `disable`          | never                        | -                               |
//! | `prefer` (default) | if the server offers it      | not checked                     |
//! | `require`          | always                       | not checked (checked as `verify-ca` when `sslrootcert` is given, as libpq does) |
//! | `verify-ca`        | always                       | signed by a root of `sslrootcert` |
//! | `verify-full`      | always                       | that, and issued for the host name |
//!
//! `sslrootcert` is a PEM file of root certificates (default
//! `~/.postgresql/root.crt`, as libpq), or `system` for the well-known
//! roots (webpki-roots). The PostgreSQL client reads neither parameter: they
//! are taken out of the URL it is given. Client certificates (`sslcert`,
//! `sslkey`) are refused by name rather than ignored.

use std::path::PathBuf;
use std::sync::Arc;

use rustls::DigitallySignedStruct;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::StoreError;

/// How a URL asks to reach its server.
pub(crate) struct PgTarget {
    /// The URL as the PostgreSQL client takes it (`sslmode` one of its
    /// three; `sslrootcert` out).
    pub(crate) url: String,
    /// The TLS set-up.
    pub(crate) tls: Tls,
}

/// Whether a connection may use TLS.
pub(crate) enum Tls {
    /// `sslmode=disable`, or a Unix socket (where libpq ignores
    /// `sslmode`, and a path is no name to give a TLS client).
    Off,
    /// As `sslmode` says.
    Rustls(MakeRustlsConnect),
}

impl PgTarget {
    /// Connects (on the current tokio runtime) and spawns the
    /// connection's task; the client.
    pub(crate) async fn connect(self) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
        match self.tls {
            Tls::Off => start(&self.url, tokio_postgres::NoTls).await,
            Tls::Rustls(tls) => start(&self.url, tls).await,
        }
    }
}

async fn start<T>(url: &str, tls: T) -> Result<tokio_postgres::Client, tokio_postgres::Error>
where
    T: tokio_postgres::tls::MakeTlsConnect<tokio_postgres::Socket>,
    T::Stream: Send + 'static,
{
    let (client, connection) = tokio_postgres::connect(url, tls).await?;
    // The connection does its I/O whenever the runtime runs, that is while
    // a statement is awaited.
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::warn!(error = %e, "the PostgreSQL connection ended");
        }
    });
    Ok(client)
}

/// What `sslmode` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

/// Reads `sslmode` and `sslrootcert` from `url`.
///
/// # Errors
/// An unknown `sslmode`, client certificate parameters, or a root
/// certificate file that cannot be read or holds no certificate.
pub(crate) fn target(url: &str) -> Result<PgTarget, StoreError> {
    let bad =
        |what: String| StoreError::Config(format!("{}: {what}", crate::location::redact(url)));
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, q),
        None => (url, ""),
    };
    let mut mode = Mode::Prefer;
    let mut root: Option<String> = None;
    let mut kept: Vec<&str> = Vec::new();
    for param in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = param.split_once('=').unwrap_or((param, ""));
        match key {
            "sslmode" => {
                mode = match value {
                    "disable" => Mode::Disable,
                    // libpq's `allow` tries without TLS first: plain
                    // unless the server insists, which `prefer` covers.
                    "allow" | "prefer" => Mode::Prefer,
                    "require" => Mode::Require,
                    "verify-ca" => Mode::VerifyCa,
                    "verify-full" => Mode::VerifyFull,
                    other => {
                        return Err(bad(format!(
                            "sslmode={other}: expected disable, prefer, require, verify-ca or \
                             verify-full"
                        )));
                    }
                };
            }
            "sslrootcert" => root = Some(percent_decode(value)),
            "sslcert" | "sslkey" | "sslpassword" => {
                return Err(bad(format!(
                    "{key}: client certificates are not supported; authenticate with a \
                     password (over TLS: sslmode=verify-full)"
                )));
            }
            _ => kept.push(param),
        }
    }
    if mode == Mode::Require && root.is_some() {
        mode = Mode::VerifyCa;
    }
    let client_mode = match mode {
        Mode::Disable => "disable",
        Mode::Prefer => "prefer",
        Mode::Require | Mode::VerifyCa | Mode::VerifyFull => "require",
    };
    kept.push(match client_mode {
        "disable" => "sslmode=disable",
        "prefer" => "sslmode=prefer",
        _ => "sslmode=require",
    });
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier: Arc<dyn ServerCertVerifier> = match mode {
        Mode::Disable | Mode::Prefer | Mode::Require => Arc::new(Unchecked(provider.clone())),
        Mode::VerifyCa | Mode::VerifyFull => {
            let roots = roots(root.as_deref()).map_err(bad)?;
            let webpki = rustls::client::WebPkiServerVerifier::builder_with_provider(
                Arc::new(roots),
                provider.clone(),
            )
            .build()
            .map_err(|e| bad(format!("sslrootcert: {e}")))?;
            match mode {
                Mode::VerifyFull => webpki,
                _ => Arc::new(AnyName(webpki)),
            }
        }
    };
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| bad(format!("TLS set-up: {e}")))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    // A host that is a path (`%2Ftmp`, or `host=/tmp`) is a Unix socket.
    let socket = base.contains("%2F")
        || base.contains("%2f")
        || query.contains("host=%2F")
        || query.contains("host=/");
    Ok(PgTarget {
        url: format!("{base}?{}", kept.join("&")),
        tls: match mode == Mode::Disable || socket {
            true => Tls::Off,
            false => Tls::Rustls(MakeRustlsConnect::new(config)),
        },
    })
}

/// The roots `sslrootcert` names.
fn roots(file: Option<&str>) -> Result<rustls::RootCertStore, String> {
    use rustls::pki_types::pem::PemObject;
    if file == Some("system") {
        return Ok(rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        });
    }
    let path = match file {
        Some(f) => PathBuf::from(f),
        None => std::env::var_os("HOME")
            .map(|h| PathBuf::from(h).join(".postgresql/root.crt"))
            .ok_or("sslmode=verify-ca and verify-full need sslrootcert=FILE (or system)")?,
    };
    let pem = std::fs::read(&path).map_err(|e| {
        format!(
            "sslrootcert {}: {e} (verify-ca and verify-full check the server's certificate \
             against the root certificates in this PEM file)",
            path.display()
        )
    })?;
    let mut store = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|e| format!("sslrootcert {}: {e}", path.display()))?;
        store.add(cert).map_err(|e| {
            format!(
                "sslrootcert {}: a certificate cannot be a root: {e}",
                path.display()
            )
        })?;
    }
    if store.is_empty() {
        return Err(format!(
            "sslrootcert {}: no PEM certificate (BEGIN CERTIFICATE) in it",
            path.display()
        ));
    }
    Ok(store)
}

/// `%XX` escapes of a URL parameter (a path with spaces, say).
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%'
            && let (Some(h), Some(l)) = (
                bytes.get(i + 1).copied().and_then(hex),
                bytes.get(i + 2).copied().and_then(hex),
            )
        {
            out.push((h * 16 + l) as u8);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `prefer` and `require` without roots: encrypted, the certificate not
/// checked (libpq's meaning). The handshake's signatures still are.
#[derive(Debug)]
struct Unchecked(Arc<CryptoProvider>);

impl ServerCertVerifier for Unchecked {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// `verify-ca`: the chain must lead to a root, the name may be any.
#[derive(Debug)]
struct AnyName(Arc<rustls::client::WebPkiServerVerifier>);

impl ServerCertVerifier for AnyName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        use rustls::{CertificateError, Error};
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            Err(Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::target;

    #[test]
    fn the_client_gets_its_own_sslmode_and_no_sslrootcert() {
        let t = target("postgres://u:p@h:5/d").expect("target");
        assert_eq!(t.url, "postgres://u:p@h:5/d?sslmode=prefer");
        let t = target("postgres://h/d?sslmode=disable&application_name=x").expect("target");
        assert_eq!(t.url, "postgres://h/d?application_name=x&sslmode=disable");
        let t = target("postgres://h/d?sslmode=require").expect("target");
        assert_eq!(t.url, "postgres://h/d?sslmode=require");
        let t = target("postgres://h/d?sslmode=verify-full&sslrootcert=system").expect("target");
        assert_eq!(t.url, "postgres://h/d?sslmode=require");
    }

    #[test]
    fn bad_tls_parameters_are_refused_by_name() {
        let e = |url: &str| target(url).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(e("postgres://u:s3cret@h/d?sslmode=verify").contains("sslmode=verify: expected"));
        assert!(!e("postgres://u:s3cret@h/d?sslmode=verify").contains("s3cret"));
        assert!(
            e("postgres://h/d?sslmode=verify-ca&sslrootcert=/nonexistent/ca.pem")
                .contains("/nonexistent/ca.pem")
        );
        assert!(e("postgres://h/d?sslcert=c.pem").contains("client certificates"));
        let dir = tempfile::tempdir().expect("dir");
        let junk = dir.path().join("junk.pem");
        std::fs::write(&junk, "not a certificate").expect("write");
        let url = format!(
            "postgres://h/d?sslmode=verify-full&sslrootcert={}",
            junk.display()
        );
        assert!(e(&url).contains("no PEM certificate"), "{}", e(&url));
    }
}
