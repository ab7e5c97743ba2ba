//! What keeps web pages from driving the server through the browsers of
//! the people who run it: the `Host`, `Origin` and `Content-Type` checks,
//! on every request, before the token.
//!
//! - **DNS rebinding.** A page on `rebind.attacker.example`, whose name
//!   the attacker points at 127.0.0.1 after the page loaded, talks to the
//!   server as its own origin: the browser lets it read the answers. Its
//!   requests carry `Host: rebind.attacker.example:PORT`, so a server that
//!   answers only the names it is reached by (its listen address,
//!   `localhost`, a loopback address such as `127.0.0.1` or `[::1]`, and the
//!   operator's `--allow-host`) refuses them. Two `Host` headers, or an
//!   absolute request line naming another host, are refused too.
//! - **Cross-site requests.** A page on any other origin can send requests
//!   it cannot read the answers of (a form, `fetch` in `no-cors` mode).
//!   Browsers mark them with `Origin` (and `Sec-Fetch-Site`): the API
//!   refuses a foreign one. Their bodies can only be "simple" content types
//!   (`text/plain`, forms); the API takes JSON only as `application/json`
//!   and uploads only as `application/wasm` or `application/octet-stream`,
//!   which a page cannot send without a CORS preflight, and preflights
//!   (`OPTIONS`) are refused.
//!
//! The UI's pages and assets hold no data and change nothing: a link from
//! elsewhere may open them (the `Host` check still applies).

use std::net::SocketAddr;

use axum::extract::{Request, State as Extract};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::ApiError;

/// The names a request may reach this server by.
#[derive(Clone, Debug)]
pub struct Hosts {
    /// The address the server listens on (its port is the one names
    /// without a port of their own must come with).
    listen: SocketAddr,
    /// `--allow-host` names (lowercase, without a port): any port.
    extra: Vec<String>,
    /// `--allow-host '*'`: every `Host` is taken (behind a proxy that
    /// checks it).
    any: bool,
}

impl Hosts {
    /// The names of a server on `listen`, plus `allowed` (`--allow-host`:
    /// a name, `*` for any).
    ///
    /// # Errors
    /// A name that is not a host name.
    pub fn new(listen: SocketAddr, allowed: &[String]) -> Result<Hosts, String> {
        let mut extra = Vec::new();
        let mut any = false;
        for name in allowed {
            let name = name.trim().to_ascii_lowercase();
            if name == "*" {
                any = true;
                continue;
            }
            let valid = !name.is_empty()
                && name.len() <= 253
                && name.chars().all(|c| {
                    c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':' | '[' | ']')
                });
            if !valid {
                return Err(format!(
                    "--allow-host {name:?}: expected a host name such as durable.example.com \
                     (no scheme, no port), or * for any"
                ));
            }
            // A `:` is an IPv6 literal's, in brackets as a Host header has
            // it; anywhere else it is a port, which would never match (a
            // name is allowed with any port).
            if name.contains(':') && !(name.starts_with('[') && name.ends_with(']')) {
                return Err(format!(
                    "--allow-host {name:?}: give the name without a port (it is answered on any \
                     port), and an IPv6 address in brackets ([::1])"
                ));
            }
            extra.push(name);
        }
        Ok(Hosts { listen, extra, any })
    }

    /// Whether a request with this `Host` header is for this server.
    fn allows(&self, host: &str) -> bool {
        if self.any {
            return true;
        }
        let host = host.trim().to_ascii_lowercase();
        let (name, port) = split_host(&host);
        if self.extra.iter().any(|n| n == name) {
            return true;
        }
        // Loopback names and the listen address come with the listen port
        // (or none, as a client that drops it sends them).
        if port.is_some_and(|p| p != self.listen.port()) {
            return false;
        }
        let listen_ip = self.listen.ip();
        match name
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
        {
            // An address can be rebound by no one: any address of this
            // machine is fine when the server listens on all of them.
            Ok(ip) => ip.is_loopback() || ip == listen_ip || listen_ip.is_unspecified(),
            Err(_) => name == "localhost",
        }
    }
}

/// `name[:port]` or `[v6]:port`.
fn split_host(host: &str) -> (&str, Option<u16>) {
    // Only plain digits make a port (`+80` and `080` parse as numbers but
    // are no port a browser writes); anything else is no port of ours.
    let port = |p: &str| {
        let plain = !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) && !p.starts_with('0');
        Some(if plain { p.parse().unwrap_or(0) } else { 0 })
    };
    if host.starts_with('[') {
        return match host.rsplit_once("]:") {
            Some((name, p)) => (&host[..name.len() + 1], port(p)),
            None => (host, None),
        };
    }
    match host.rsplit_once(':') {
        Some((name, p)) => (name, port(p)),
        None => (host, None),
    }
}

/// `host[:port]` without the port its scheme implies (`:80` for http,
/// `:443` for https), lowercase: how a browser's `Origin` and a proxy's
/// `Host` are compared.
fn without_default_port(scheme: &str, host: &str) -> String {
    let host = host.to_ascii_lowercase();
    let default = if scheme == "https" { ":443" } else { ":80" };
    host.strip_suffix(default)
        .map_or_else(|| host.clone(), str::to_string)
}

/// Refuses requests for another host, from a foreign origin, or with a
/// body of a type a cross-site page could send without asking.
pub async fn guard(Extract(hosts): Extract<Hosts>, request: Request, next: Next) -> Response {
    match check(&hosts, &request) {
        Ok(()) => next.run(request).await,
        Err(e) => e.into_response(),
    }
}

fn check(hosts: &Hosts, request: &Request) -> Result<(), ApiError> {
    let headers = request.headers();
    // HTTP/1.1 requires one Host; an absolute request line's authority
    // overrides it, so it must be one of ours too.
    let mut given = headers.get_all(header::HOST).iter();
    let host = given
        .next()
        .and_then(|h| h.to_str().ok())
        .map(str::to_string);
    let second = given.next().is_some();
    let authority = request.uri().authority().map(|a| a.as_str().to_string());
    let host = match (host, authority) {
        (Some(h), Some(a)) if !h.eq_ignore_ascii_case(&a) => None,
        (h, a) => h.or(a),
    };
    let Some(host) = host.filter(|h| !second && hosts.allows(h)) else {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden_host",
            "this server does not answer to that Host name (a page may be trying DNS \
             rebinding); reach it by its address or localhost, or start it with \
             --allow-host NAME",
        ));
    };
    let path = request.uri().path();
    let api = path.starts_with("/v1/") || path == "/metrics";
    if !api {
        return Ok(());
    }
    // A NUL byte names nothing here (no id, name or filter may hold one;
    // PostgreSQL's text cannot): refused, not carried to the database.
    let nul = |text: &str| {
        text.as_bytes()
            .windows(3)
            .any(|w| w.eq_ignore_ascii_case(b"%00"))
    };
    if nul(path) || request.uri().query().is_some_and(nul) {
        return Err(ApiError::bad_request(
            "a NUL byte (%00) is not allowed in a path or query",
        ));
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let own = origin
            .to_str()
            .ok()
            .and_then(|o| o.split_once("://"))
            .filter(|(scheme, _)| matches!(*scheme, "http" | "https"))
            .is_some_and(|(scheme, o)| {
                without_default_port(scheme, o) == without_default_port(scheme, &host)
            });
        if !own || headers.get_all(header::ORIGIN).iter().count() > 1 {
            return Err(cross_origin());
        }
    }
    // Sent by browsers on every request: anything but the server's own
    // pages ("same-origin") or the user's own action ("none").
    // Every value counts: a second header must not hide a cross-site one.
    if headers
        .get_all("sec-fetch-site")
        .iter()
        .any(|site| !matches!(site.to_str(), Ok("same-origin" | "none")))
    {
        return Err(cross_origin());
    }
    if request.method() == Method::POST || request.method() == Method::PUT {
        content_type(path, headers)?;
    }
    Ok(())
}

fn cross_origin() -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        "cross_origin",
        "requests from another origin's pages are refused (the server's own UI is the only \
         web page that may use it)",
    )
}

/// The body's media type must be one a page cannot send cross-site
/// without a preflight.
fn content_type(path: &str, headers: &HeaderMap) -> Result<(), ApiError> {
    if headers.get_all(header::CONTENT_TYPE).iter().count() > 1 {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "one Content-Type, please",
        ));
    }
    let given = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        });
    let upload = path == "/v1/components";
    let wanted: &[&str] = if upload {
        &["application/wasm", "application/octet-stream"]
    } else {
        &["application/json"]
    };
    let ok = match &given {
        Some(t) => wanted.contains(&t.as_str()),
        // A cancel has no body, and no type to give.
        None => path.ends_with("/cancel") && body_is_empty(headers),
    };
    if ok {
        return Ok(());
    }
    Err(ApiError::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
        format!(
            "the body must be sent with Content-Type: {} (it was {})",
            wanted.join(" or "),
            given.map_or_else(|| "not given".to_string(), |t| format!("{t:?}"))
        ),
    ))
}

fn body_is_empty(headers: &HeaderMap) -> bool {
    let length = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .map(str::trim);
    headers.get(header::TRANSFER_ENCODING).is_none() && length.is_none_or(|l| l == "0")
}

#[cfg(test)]
mod tests {
    use super::Hosts;

    #[test]
    fn only_the_servers_own_names_are_answered() {
        let hosts = Hosts::new("127.0.0.1:7070".parse().expect("addr"), &[]).expect("hosts");
        for ok in [
            "127.0.0.1:7070",
            "localhost:7070",
            "LOCALHOST:7070",
            "[::1]:7070",
            "127.0.0.1",
            "localhost",
        ] {
            assert!(hosts.allows(ok), "{ok}");
        }
        for refused in [
            "rebind.attacker.example:7070",
            "rebind.attacker.example",
            "127.0.0.1:7071",
            "localhost:80",
            "localhost:x",
            "localhost:07070",
            "localhost:+7070",
            "localhost.:7070",
            "127.0.0.1.nip.io:7070",
            "10.0.0.1:7070",
            "",
            "[::1]:1",
        ] {
            assert!(!hosts.allows(refused), "{refused}");
        }
        let named = Hosts::new(
            "0.0.0.0:7070".parse().expect("addr"),
            &["Durable.Example.com".into()],
        )
        .expect("hosts");
        assert!(named.allows("durable.example.com"));
        assert!(named.allows("durable.example.com:443"));
        assert!(named.allows("192.168.1.20:7070"));
        assert!(!named.allows("attacker.example:7070"));
        assert!(
            Hosts::new("127.0.0.1:1".parse().expect("addr"), &["*".into()])
                .expect("hosts")
                .allows("anything:9")
        );
        assert!(Hosts::new("127.0.0.1:1".parse().expect("addr"), &["http://x".into()]).is_err());
        // A port never matches (names are answered on any port): refused
        // at start rather than silently useless. IPv6 goes in brackets.
        for bad in ["x.example:8080", "::1", "[::1]:7070"] {
            let e = Hosts::new("127.0.0.1:1".parse().expect("addr"), &[bad.into()]).expect_err(bad);
            assert!(e.contains("without a port"), "{bad}: {e}");
        }
        let v6 = Hosts::new("127.0.0.1:1".parse().expect("addr"), &["[fd00::1]".into()])
            .expect("a bracketed IPv6 address");
        assert!(v6.allows("[fd00::1]:8443"));
    }
}
