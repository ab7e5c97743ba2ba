//! What the host sets for steps' HTTP: the limits of a request, and where
//! the line about each request goes.

use std::sync::Arc;
use std::time::Duration;

/// HTTP limits of step requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    /// Largest request body and largest response body, each, in bytes.
    pub max_body_bytes: u64,
    /// Longest wait for a connection (name lookup, TCP and TLS).
    pub connect_timeout: Duration,
    /// Longest wait for the response's first byte once the request is
    /// sent; `None`: only the step's timeout bounds it.
    pub first_byte_timeout: Option<Duration>,
}

impl Default for HttpLimits {
    /// 16 MiB bodies, 10 s to connect, no first-byte timeout of its own.
    fn default() -> Self {
        HttpLimits {
            max_body_bytes: 16 << 20,
            connect_timeout: Duration::from_secs(10),
            first_byte_timeout: None,
        }
    }
}

/// Where a line about a request goes: the instance's output, kept with the
/// attempt.
pub type LineSink = Arc<dyn Fn(&str) + Send + Sync>;
