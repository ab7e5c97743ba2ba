//! A step's request as a span of its attempt, and the W3C `traceparent`
//! header that lets the called service join the trace.

use durable_core::trace::{AttrValue, Span, SpanKind, TraceContext, now_ns};
use wasmtime_wasi_http::WasiBody;

use std::sync::Arc;

use durable_core::trace::SpanSink;

/// Where a step attempt's request spans go.
#[derive(Clone)]
pub struct RequestTrace {
    /// The attempt's span.
    pub parent: TraceContext,
    /// Takes the finished spans.
    pub sink: Arc<dyn SpanSink>,
}

/// A request being sent.
pub(crate) struct RequestSpan {
    trace: RequestTrace,
    context: TraceContext,
    start_ns: u64,
    method: String,
    url: String,
}

impl RequestSpan {
    /// Starts the span of the attempt's `n`-th request and sets its
    /// `traceparent` (unless the guest set one: then the guest is
    /// propagating a context of its own, and it is left alone).
    pub(crate) fn start(
        trace: &RequestTrace,
        n: u32,
        request: &mut http::Request<WasiBody>,
        url: &str,
    ) -> RequestSpan {
        let context = trace.parent.derived(&[b"http", &n.to_le_bytes()]);
        if !request.headers().contains_key("traceparent")
            && let Ok(value) = http::HeaderValue::from_str(&context.traceparent())
        {
            request.headers_mut().insert("traceparent", value);
        }
        RequestSpan {
            trace: trace.clone(),
            context,
            start_ns: now_ns(),
            method: request.method().as_str().to_string(),
            url: url.to_string(),
        }
    }

    /// The response's head came (its status) or the request failed.
    pub(crate) fn end(self, result: Result<u16, String>) {
        let mut attributes = vec![
            ("http.request.method", AttrValue::Str(self.method.clone())),
            // Without user info or query values (they may hold secrets).
            ("url.full", AttrValue::Str(self.url)),
        ];
        let error = match &result {
            Ok(status) => {
                attributes.push((
                    "http.response.status_code",
                    AttrValue::Int(i64::from(*status)),
                ));
                (*status >= 500).then(|| format!("status {status}"))
            }
            Err(e) => Some(e.clone()),
        };
        self.trace.sink.export(Span {
            context: self.context,
            parent: Some(self.trace.parent.span_id),
            name: self.method,
            kind: SpanKind::Client,
            start_ns: self.start_ns,
            end_ns: now_ns(),
            attributes,
            error,
        });
    }
}
