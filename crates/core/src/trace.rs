//! Spans of runs for a tracing system (OpenTelemetry): what the runtime and
//! the HTTP hooks report, and the W3C `traceparent` they read and send.
//! Exporting them is the `durable-otlp` crate's; with no exporter nothing
//! here is made.

use std::time::{SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};

/// A span's place: its trace and its own id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceContext {
    /// The trace's id (never all zeros).
    pub trace_id: [u8; 16],
    /// The span's id (never all zeros).
    pub span_id: [u8; 8],
}

impl TraceContext {
    /// Parses a W3C `traceparent` (`00-<32 hex>-<16 hex>-<2 hex>`); other
    /// versions' first four fields are read the same, as the spec asks.
    /// All-zero ids and malformed text give `None`.
    pub fn parse(traceparent: &str) -> Option<TraceContext> {
        let t = traceparent.trim();
        let mut parts = t.split('-');
        let version = parts.next()?;
        let (trace, span, flags) = (parts.next()?, parts.next()?, parts.next()?);
        let extra = parts.next();
        if version.len() != 2 || version == "ff" || !is_lower_hex(version) {
            return None;
        }
        if version == "00" && extra.is_some() || flags.len() != 2 || !is_lower_hex(flags) {
            return None;
        }
        let trace_id: [u8; 16] = hex(trace)?.try_into().ok()?;
        let span_id: [u8; 8] = hex(span)?.try_into().ok()?;
        if trace_id == [0; 16] || span_id == [0; 8] {
            return None;
        }
        Some(TraceContext { trace_id, span_id })
    }

    /// The `traceparent` of this span (sampled: durable exports every span
    /// it makes).
    pub fn traceparent(&self) -> String {
        format!("00-{}-{}-01", to_hex(&self.trace_id), to_hex(&self.span_id))
    }

    /// A span of the same trace whose id is derived from this one's and
    /// `parts`: the same parts give the same id, so a step attempt's span
    /// is known to whoever knows its key and number.
    pub fn derived(&self, parts: &[&[u8]]) -> TraceContext {
        let mut h = Sha256::new();
        h.update(self.span_id);
        for p in parts {
            h.update((p.len() as u64).to_le_bytes());
            h.update(p);
        }
        let digest = h.finalize();
        let mut span_id = [0u8; 8];
        span_id.copy_from_slice(&digest[..8]);
        if span_id == [0; 8] {
            span_id[7] = 1;
        }
        TraceContext {
            trace_id: self.trace_id,
            span_id,
        }
    }
}

fn is_lower_hex(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) || !is_lower_hex(s) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok())
        .collect()
}

/// Lower-case hex of `bytes`.
pub fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// What a span is to its trace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpanKind {
    /// Work inside durable (a drive, a step attempt, a wait).
    Internal,
    /// A request to another service (a step's HTTP request).
    Client,
}

/// A value of a span attribute.
#[derive(Debug, Clone, PartialEq)]
pub enum AttrValue {
    /// Text.
    Str(String),
    /// An integer.
    Int(i64),
    /// A flag.
    Bool(bool),
}

/// One finished span.
#[derive(Debug, Clone, PartialEq)]
pub struct Span {
    /// Its trace and id.
    pub context: TraceContext,
    /// Its parent's span id (`None`: the trace's root).
    pub parent: Option<[u8; 8]>,
    /// Its name (`run onboarding`, `step create_record`, `POST`).
    pub name: String,
    /// What it is to the trace.
    pub kind: SpanKind,
    /// When it started, ns since the Unix epoch.
    pub start_ns: u64,
    /// When it ended, ns since the Unix epoch.
    pub end_ns: u64,
    /// Its attributes (`durable.run.id`, ...).
    pub attributes: Vec<(&'static str, AttrValue)>,
    /// Why it failed, if it did (an error status).
    pub error: Option<String>,
}

/// Takes finished spans; must never block (an exporter queues them, and
/// drops them when its queue is full).
pub trait SpanSink: Send + Sync {
    /// One finished span.
    fn export(&self, span: Span);
}

/// Now, in ns since the Unix epoch.
pub fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// `ms` since the Unix epoch, in ns.
pub fn ms_to_ns(ms: i64) -> u64 {
    (ms.max(0) as u64).saturating_mul(1_000_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparents_are_read_and_written_and_ids_derived() {
        let t = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let c = TraceContext::parse(t).expect("valid");
        assert_eq!(c.traceparent(), t);
        assert_eq!(TraceContext::parse(&t.replace("-01", "-00")), Some(c));
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x",
        ] {
            assert_eq!(TraceContext::parse(bad), None, "{bad}");
        }
        // A later version may add fields.
        assert!(TraceContext::parse(&format!("01{}-what", &t[2..])).is_some());
        let a = c.derived(&[b"step", b"a#1", &1u32.to_le_bytes()]);
        assert_eq!(a, c.derived(&[b"step", b"a#1", &1u32.to_le_bytes()]));
        assert_ne!(a, c.derived(&[b"step", b"a#1", &2u32.to_le_bytes()]));
        assert_eq!(a.trace_id, c.trace_id);
    }
}
