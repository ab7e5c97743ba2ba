//! durable's spans as an OTLP `ExportTraceServiceRequest`, protobuf.

use durable_core::trace::{AttrValue, Span, SpanKind};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Status, span, status};
use prost::Message;

/// The resource every span of this process belongs to.
pub(crate) fn resource(service_name: &str, service_version: &str) -> Resource {
    Resource {
        attributes: vec![
            kv("service.name", AttrValue::Str(service_name.to_string())),
            kv(
                "service.version",
                AttrValue::Str(service_version.to_string()),
            ),
            kv("telemetry.sdk.name", AttrValue::Str("durable".into())),
        ],
        ..Default::default()
    }
}

fn kv(key: &str, value: AttrValue) -> KeyValue {
    let value = match value {
        AttrValue::Str(s) => any_value::Value::StringValue(s),
        AttrValue::Int(i) => any_value::Value::IntValue(i),
        AttrValue::Bool(b) => any_value::Value::BoolValue(b),
    };
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

fn span(s: &Span) -> opentelemetry_proto::tonic::trace::v1::Span {
    opentelemetry_proto::tonic::trace::v1::Span {
        trace_id: s.context.trace_id.to_vec(),
        span_id: s.context.span_id.to_vec(),
        parent_span_id: s.parent.map(|p| p.to_vec()).unwrap_or_default(),
        // Sampled (W3C flags 01).
        flags: 0x01,
        name: s.name.clone(),
        kind: match s.kind {
            SpanKind::Internal => span::SpanKind::Internal,
            SpanKind::Client => span::SpanKind::Client,
        } as i32,
        start_time_unix_nano: s.start_ns,
        end_time_unix_nano: s.end_ns.max(s.start_ns),
        attributes: s.attributes.iter().map(|(k, v)| kv(k, v.clone())).collect(),
        status: s.error.as_ref().map(|m| Status {
            message: m.clone(),
            code: status::StatusCode::Error as i32,
        }),
        ..Default::default()
    }
}

/// The body of one export request.
pub(crate) fn request(resource: &Resource, spans: &[Span]) -> Vec<u8> {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(resource.clone()),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: "durable".into(),
                    version: env!("CARGO_PKG_VERSION").into(),
                    ..Default::default()
                }),
                spans: spans.iter().map(span).collect(),
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
    .encode_to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;
    use durable_core::trace::TraceContext;

    #[test]
    fn a_span_decodes_as_it_was_given() {
        let parent = TraceContext::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
            .expect("valid");
        let child = parent.derived(&[b"x"]);
        let s = Span {
            context: child,
            parent: Some(parent.span_id),
            name: "step create_record".into(),
            kind: SpanKind::Internal,
            start_ns: 10,
            end_ns: 20,
            attributes: vec![("durable.step.attempt", AttrValue::Int(2))],
            error: Some("trapped".into()),
        };
        let body = request(&resource("durable", "0"), std::slice::from_ref(&s));
        let back = ExportTraceServiceRequest::decode(body.as_slice()).expect("decodes");
        let got = &back.resource_spans[0].scope_spans[0].spans[0];
        assert_eq!(got.trace_id, parent.trace_id.to_vec());
        assert_eq!(got.parent_span_id, parent.span_id.to_vec());
        assert_eq!(got.name, "step create_record");
        assert_eq!(got.attributes[0].key, "durable.step.attempt");
        assert_eq!(got.status.as_ref().map(|s| s.code), Some(2));
    }
}
