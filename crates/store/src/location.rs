//! Where a store's database is: a SQLite file or a PostgreSQL server, and
//! how messages show it (never with a password).

use std::ffi::OsStr;
use std::fmt;
use std::path::{Path, PathBuf};

/// Where a store's database is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A SQLite database file (created when it does not exist).
    File(PathBuf),
    /// A PostgreSQL database: a `postgres://` or `postgresql://` URL, with
    /// its libpq parameters (`sslmode`, `sslrootcert`, ...).
    Postgres(String),
}

impl Location {
    /// The location `text` names: a PostgreSQL URL when it starts with
    /// `postgres://` or `postgresql://`, a file otherwise.
    pub fn parse(text: impl AsRef<OsStr>) -> Location {
        let text = text.as_ref();
        match text.to_str() {
            Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
                Location::Postgres(url.to_string())
            }
            _ => Location::File(PathBuf::from(text)),
        }
    }

    /// Whether this is a PostgreSQL database.
    pub fn is_postgres(&self) -> bool {
        matches!(self, Location::Postgres(_))
    }

    /// Whether the database may hold runs already: a PostgreSQL URL (the
    /// server decides), or a file that exists.
    pub fn may_exist(&self) -> bool {
        match self {
            Location::Postgres(_) => true,
            Location::File(path) => path.exists(),
        }
    }

    /// The file, for a SQLite database.
    pub fn file(&self) -> Option<&Path> {
        match self {
            Location::File(path) => Some(path),
            Location::Postgres(_) => None,
        }
    }
}

/// As messages show it: a file's path, or the URL without its password.
impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::File(path) => write!(f, "{}", path.display()),
            Location::Postgres(url) => f.write_str(&redact(url)),
        }
    }
}

impl From<&Path> for Location {
    fn from(path: &Path) -> Location {
        Location::parse(path)
    }
}

impl From<PathBuf> for Location {
    fn from(path: PathBuf) -> Location {
        Location::parse(path)
    }
}

impl From<&PathBuf> for Location {
    fn from(path: &PathBuf) -> Location {
        Location::parse(path)
    }
}

impl From<&str> for Location {
    fn from(text: &str) -> Location {
        Location::parse(text)
    }
}

impl From<&Location> for Location {
    fn from(location: &Location) -> Location {
        location.clone()
    }
}

/// `url` without its password, for messages: the password of the user
/// part (`postgres://user:SECRET@host`) and the values of `password` and
/// `sslpassword` parameters (`?password=SECRET`) are left out. Anything
/// that is not such a URL (a file path) is returned as it is.
pub fn redact(url: &str) -> String {
    let Some(scheme) = url.find("://") else {
        // Not a URL: a file name, or something that was meant to be a
        // connection string; no `password=` value shows either way.
        return url
            .split(' ')
            .map(|w| match w.split_once('=') {
                Some((k, _)) if is_secret_key(k) => format!("{k}=***"),
                _ => w.to_string(),
            })
            .collect::<Vec<_>>()
            .join(" ");
    };
    let rest = &url[scheme + 3..];
    // The user part, read as the client reads it and then some: the client
    // takes everything before the *first* `@` as `user:password` (so a
    // password may hold an unescaped `/`, `?` or `#`); a password holding
    // an `@` itself ends at the last `@` before the host's end. Everything
    // from the first `:` of the user part to that `@` is left out.
    let body = match (rest.find([':', '@']), rest.find('@')) {
        (Some(colon), Some(first_at)) if colon < first_at => {
            let after = &rest[first_at..];
            let host_end = first_at + after.find(['/', '?', '#']).unwrap_or(after.len());
            let last_at = rest[..host_end].rfind('@').unwrap_or(first_at);
            format!("{}{}", &rest[..colon], &rest[last_at..])
        }
        _ => rest.to_string(),
    };
    let mut out = url[..scheme + 3].to_string();
    out.push_str(&without_secret_params(&body));
    out
}

/// `text` with the values of its `password` and `sslpassword` query
/// parameters left out (`?` or `#` starts them, `&` or `#` ends one: to be
/// safe, more than the client reads).
fn without_secret_params(text: &str) -> String {
    let Some(q) = text.find(['?', '#']) else {
        return text.to_string();
    };
    let mut out = text[..=q].to_string();
    let mut rest = &text[q + 1..];
    loop {
        let end = rest.find(['&', '#']).unwrap_or(rest.len());
        let param = &rest[..end];
        match param.split_once('=') {
            Some((k, _)) if is_secret_key(k) => {
                out.push_str(k);
                out.push_str("=***");
            }
            _ => out.push_str(param),
        }
        let Some(sep) = rest[end..].chars().next() else {
            return out;
        };
        out.push(sep);
        rest = &rest[end + sep.len_utf8()..];
    }
}

/// Whether a parameter named `key` (percent-encoded or not, any case)
/// holds a secret.
fn is_secret_key(key: &str) -> bool {
    let mut decoded = Vec::with_capacity(key.len());
    let bytes = key.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (
            bytes[i],
            bytes.get(i + 1).copied(),
            bytes.get(i + 2).copied(),
        ) {
            (b'%', Some(h), Some(l)) if hex(h).is_some() && hex(l).is_some() => {
                let value = hex(h).unwrap_or(0) * 16 + hex(l).unwrap_or(0);
                decoded.push(value as u8);
                i += 3;
            }
            (b, _, _) => {
                decoded.push(b);
                i += 1;
            }
        }
    }
    let key = String::from_utf8_lossy(&decoded)
        .trim()
        .to_ascii_lowercase();
    key == "password" || key == "sslpassword"
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn passwords_never_show() {
        assert_eq!(
            redact("postgres://u:s3cret@db.example:5432/d"),
            "postgres://u@db.example:5432/d"
        );
        assert_eq!(redact("postgres://u@h/d"), "postgres://u@h/d");
        assert_eq!(redact("postgres://h/d"), "postgres://h/d");
        assert_eq!(
            redact("postgresql://u:p%40ss@h/d?sslmode=verify-full&sslrootcert=/a@b/ca.pem"),
            "postgresql://u@h/d?sslmode=verify-full&sslrootcert=/a@b/ca.pem"
        );
        assert_eq!(
            redact("postgres://h/d?user=u&password=s3cret&sslpassword=k3y#frag"),
            "postgres://h/d?user=u&password=***&sslpassword=***#frag"
        );
        assert_eq!(redact("/var/lib/durable.db"), "/var/lib/durable.db");
        assert_eq!(
            redact("host=h user=u password=s3cret dbname=d"),
            "host=h user=u password=*** dbname=d"
        );
        // The client reads the password up to the first `@`, `/`, `?` and
        // `#` included.
        assert_eq!(
            redact("postgres://dur:pw/with#odd?chars@127.0.0.1:59861/postgres?sslmode=disable"),
            "postgres://dur@127.0.0.1:59861/postgres?sslmode=disable"
        );
        for url in [
            "postgres://u:s3cret@h",
            "postgres://u:s3cret@h?password=s3cret",
            "x://:s3cret@",
            "postgres://u:s3/cret@h/d",
            "postgres://u:s3?cret@h/d",
            "postgres://u:s3#cret@h/d",
            "postgres://u:s3@cret@h/d",
            "postgres://h/d?pass%77ord=s3cret",
            "postgres://h/d?PASSWORD=s3cret",
            "postgres://h/d?password=s3cret@x",
            "postgres://h/d#&password=s3cret",
        ] {
            assert!(!redact(url).contains("s3cret"), "{url}: {}", redact(url));
        }
    }
}
