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
                Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
                _ => w.to_string(),
            })
            .collect::<Vec<_>>()
            .join(" ");
    };
    let rest = &url[scheme + 3..];
    // The authority ends at the path, the query or the fragment; an `@`
    // after it belongs to them.
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let mut out = url[..scheme + 3].to_string();
    match rest[..end].rfind('@') {
        Some(at) => {
            let user = rest[..at].split(':').next().unwrap_or("");
            out.push_str(user);
            out.push_str(&rest[at..end]);
        }
        None => out.push_str(&rest[..end]),
    }
    let tail = &rest[end..];
    let Some(q) = tail.find('?') else {
        out.push_str(tail);
        return out;
    };
    out.push_str(&tail[..=q]);
    let (query, fragment) = match tail[q + 1..].find('#') {
        Some(h) => (&tail[q + 1..q + 1 + h], &tail[q + 1 + h..]),
        None => (&tail[q + 1..], ""),
    };
    let params: Vec<String> = query
        .split('&')
        .map(|p| match p.split_once('=') {
            Some((k, _))
                if k.eq_ignore_ascii_case("password") || k.eq_ignore_ascii_case("sslpassword") =>
            {
                format!("{k}=***")
            }
            _ => p.to_string(),
        })
        .collect();
    out.push_str(&params.join("&"));
    out.push_str(fragment);
    out
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
        for url in [
            "postgres://u:s3cret@h",
            "postgres://u:s3cret@h?password=s3cret",
            "x://:s3cret@",
        ] {
            assert!(!redact(url).contains("s3cret"), "{url}: {}", redact(url));
        }
    }
}
