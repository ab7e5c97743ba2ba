//! `--allow-http` patterns: which hosts steps may send HTTP requests to.

use std::fmt;
use std::net::IpAddr;

/// One allowed destination: `[scheme://]host[:port]`, where host is a name,
/// `*.name` (any subdomain of name, not name itself), an IPv4 address, an
/// IPv6 address in brackets, or `*` (any host). No scheme allows http and
/// https; no port allows any port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpPattern {
    scheme: Option<Scheme>,
    host: HostPattern,
    port: Option<u16>,
    text: String,
}

/// A request's scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// Plain HTTP.
    Http,
    /// HTTP over TLS.
    Https,
}

impl Scheme {
    /// The port a URL without one means.
    pub fn default_port(self) -> u16 {
        match self {
            Scheme::Http => 80,
            Scheme::Https => 443,
        }
    }
}

impl fmt::Display for Scheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum HostPattern {
    Any,
    Name(String),
    Subdomains(String),
    Ip(IpAddr),
}

impl HttpPattern {
    /// Parses a pattern as given on the command line.
    ///
    /// # Errors
    /// A message saying what is wrong with it (for the user).
    pub fn parse(text: &str) -> Result<HttpPattern, String> {
        let bad = |why: &str| {
            format!(
                "{text:?}: {why} (expected [http://|https://]HOST[:PORT], where HOST is a name, \
                 *.name, an IP address, [IPv6] or *)"
            )
        };
        let (scheme, rest) = match text.split_once("://") {
            Some(("http", rest)) => (Some(Scheme::Http), rest),
            Some(("https", rest)) => (Some(Scheme::Https), rest),
            Some((other, _)) => return Err(bad(&format!("unsupported scheme {other:?}"))),
            None => (None, text),
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains(['/', '?', '#', '@']) {
            return Err(bad("a pattern names a host, not a path, query or user"));
        }
        let (host, port) = if let Some(inner) = rest.strip_prefix('[') {
            let Some((ip, after)) = inner.split_once(']') else {
                return Err(bad("unclosed ["));
            };
            let port = match after {
                "" => None,
                p => match p.strip_prefix(':') {
                    Some(p) => Some(p),
                    None => return Err(bad("junk after ]")),
                },
            };
            match ip.parse::<std::net::Ipv6Addr>() {
                Ok(ip) => (HostPattern::Ip(IpAddr::V6(ip)), port),
                Err(_) => return Err(bad("not an IPv6 address in [ ]")),
            }
        } else {
            let (host, port) = match rest.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (rest, None),
            };
            (host_pattern(host).map_err(|e| bad(&e))?, port)
        };
        let port = match port {
            None => None,
            Some(p) => match p.parse::<u16>() {
                Ok(p) if p > 0 => Some(p),
                _ => return Err(bad(&format!("{p:?} is not a port"))),
            },
        };
        Ok(HttpPattern {
            scheme,
            host,
            port,
            text: text.to_string(),
        })
    }

    /// Whether a request to `host` on `port` over `scheme` is allowed.
    /// `host` is as in the URL (a name, an IPv4 address, or an IPv6
    /// address with or without brackets).
    pub fn allows(&self, scheme: Scheme, host: &str, port: u16) -> bool {
        if self.scheme.is_some_and(|s| s != scheme) || self.port.is_some_and(|p| p != port) {
            return false;
        }
        let host = normalize(host);
        match &self.host {
            HostPattern::Any => true,
            HostPattern::Ip(ip) => host.parse::<IpAddr>().is_ok_and(|h| h == *ip),
            HostPattern::Name(name) => host == *name,
            HostPattern::Subdomains(parent) => host
                .strip_suffix(parent.as_str())
                .is_some_and(|sub| !sub.is_empty()),
        }
    }
}

impl fmt::Display for HttpPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// A URL's host as the patterns compare it: lower case, no brackets around
/// an IPv6 address, no final dot.
fn normalize(host: &str) -> String {
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase()
}

fn host_pattern(host: &str) -> Result<HostPattern, String> {
    if host == "*" {
        return Ok(HostPattern::Any);
    }
    if let Ok(ip) = host.parse::<std::net::Ipv4Addr>() {
        return Ok(HostPattern::Ip(IpAddr::V4(ip)));
    }
    let (subdomains, name) = match host.strip_prefix("*.") {
        Some(name) => (true, name),
        None => (false, host),
    };
    let name = normalize(name);
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    };
    if name.is_empty() || name.len() > 253 || !name.split('.').all(label_ok) {
        return Err(format!("{host:?} is not a host name"));
    }
    Ok(if subdomains {
        HostPattern::Subdomains(format!(".{name}"))
    } else {
        HostPattern::Name(name)
    })
}

#[cfg(test)]
mod tests {
    use super::{HttpPattern, Scheme};

    fn allows(pattern: &str, scheme: Scheme, host: &str, port: u16) -> bool {
        HttpPattern::parse(pattern)
            .expect("a valid pattern")
            .allows(scheme, host, port)
    }

    #[test]
    fn names_match_exactly_and_wildcards_match_subdomains_only() {
        use Scheme::{Http, Https};
        assert!(allows("api.example.com", Https, "api.example.com", 443));
        assert!(allows("api.example.com", Http, "API.Example.com.", 8080));
        assert!(!allows("api.example.com", Https, "example.com", 443));
        assert!(!allows(
            "api.example.com",
            Https,
            "evil-api.example.com",
            443
        ));
        assert!(!allows(
            "api.example.com",
            Https,
            "api.example.com.evil.org",
            443
        ));
        assert!(allows("*.example.com", Https, "a.example.com", 443));
        assert!(allows("*.example.com", Https, "a.b.example.com", 443));
        assert!(!allows("*.example.com", Https, "example.com", 443));
        assert!(!allows("*.example.com", Https, "badexample.com", 443));
        assert!(allows("*", Http, "anything.org", 1));
    }

    #[test]
    fn schemes_ports_and_addresses_narrow_a_pattern() {
        use Scheme::{Http, Https};
        assert!(allows("http://127.0.0.1:8080", Http, "127.0.0.1", 8080));
        assert!(!allows("http://127.0.0.1:8080", Https, "127.0.0.1", 8080));
        assert!(!allows("http://127.0.0.1:8080", Http, "127.0.0.1", 8081));
        assert!(!allows("http://127.0.0.1:8080", Http, "localhost", 8080));
        assert!(allows("https://[::1]:8443", Https, "[::1]", 8443));
        assert!(allows("[::1]", Http, "::1", 80));
        assert!(allows(
            "https://api.example.com/",
            Https,
            "api.example.com",
            443
        ));
    }

    #[test]
    fn malformed_patterns_are_refused_with_the_expected_shape() {
        for bad in [
            "",
            "ftp://x.org",
            "x.org/path",
            "user@x.org",
            "x.org:0",
            "x.org:http",
            "[::1",
            "[nope]:80",
            "*.",
            "a..b",
            "sp ace.org",
        ] {
            let e = HttpPattern::parse(bad).expect_err(bad);
            assert!(e.contains("expected [http://|https://]HOST[:PORT]"), "{e}");
        }
    }
}
