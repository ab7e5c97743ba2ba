//! Traces: a real OTLP/HTTP receiver (a stub server here, decoding with
//! the OpenTelemetry project's protobuf types) gets the onboarding
//! example's drive, step and HTTP spans with their parent links, across a
//! crash; the HR service the steps call gets a `traceparent` naming the
//! request's span; a `traceparent` on `POST /v1/runs` becomes the run's
//! parent; with the receiver down the run still finishes.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use serde_json::json;

use crate::server::Server;
use crate::stub::{Reply, Stub};
use crate::util::{Env, wasm};

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Every span the receiver got.
fn spans(collector: &Stub) -> Vec<Span> {
    collector
        .seen_at("/v1/traces")
        .iter()
        .inspect(|s| {
            assert_eq!(s.method, "POST");
            assert_eq!(s.header("content-type"), Some("application/x-protobuf"));
        })
        .flat_map(|s| {
            ExportTraceServiceRequest::decode(s.body.as_slice())
                .expect("an OTLP protobuf body")
                .resource_spans
        })
        .flat_map(|r| r.scope_spans)
        .flat_map(|s| s.spans)
        .collect()
}

fn attr(span: &Span, key: &str) -> Option<String> {
    span.attributes.iter().find(|a| a.key == key).and_then(|a| {
        match a.value.as_ref()?.value.as_ref()? {
            any_value::Value::StringValue(s) => Some(s.clone()),
            any_value::Value::IntValue(i) => Some(i.to_string()),
            any_value::Value::BoolValue(b) => Some(b.to_string()),
            _ => None,
        }
    })
}

fn collector() -> Stub {
    Stub::http(|_, _| Reply {
        status: 200,
        headers: vec![("content-type".into(), "application/x-protobuf".into())],
        body: Vec::new(),
    })
}

#[test]
fn the_onboarding_example_sends_its_drive_step_and_http_spans_linked_across_a_crash() {
    let env = Env::new();
    let collector = collector();
    let hr = Stub::http(|_, _| Reply::json(200, &json!({"ok": true})));
    let input = json!({"name": "Ada Lovelace", "email": "ada@example.com", "hr_url": hr.origin()})
        .to_string();
    let otlp = collector.origin();
    let onboarding = wasm("onboarding");
    let common = ["--allow-http", &hr.origin(), "--otlp-endpoint", &otlp];
    let mut first = vec!["run", &onboarding, "--input", &input, "--id", "o1"];
    first.extend_from_slice(&common);
    first.extend_from_slice(&["--crash-after", "create_record#1"]);
    env.run(&first).expect_code(None);
    let mut again = vec!["resume", "o1"];
    again.extend_from_slice(&common);
    env.run(&again).expect_code(Some(0));

    let spans = spans(&collector);
    let by_id: HashMap<Vec<u8>, &Span> = spans.iter().map(|s| (s.span_id.clone(), s)).collect();
    // The drive spans: one per drive, each the root of its own trace. The
    // killed drive never ended, so only the second one is there.
    let drives: Vec<&Span> = spans
        .iter()
        .filter(|s| s.name == "run onboarding")
        .collect();
    assert_eq!(
        drives.len(),
        1,
        "{:?}",
        spans.iter().map(|s| &s.name).collect::<Vec<_>>()
    );
    let drive = drives[0];
    assert!(drive.parent_span_id.is_empty());
    assert_eq!(attr(drive, "durable.run.id").as_deref(), Some("o1"));
    assert_eq!(attr(drive, "durable.drive").as_deref(), Some("2"));
    assert_eq!(
        attr(drive, "durable.run.status").as_deref(),
        Some("succeeded")
    );
    // The first drive's create_record attempt was sent before the kill
    // (spans go out at least every second... or not: the kill may come
    // first). The second drive's steps: create_record recovered, the
    // others executed, all children of the drive.
    let steps: Vec<&Span> = spans
        .iter()
        .filter(|s| s.name.starts_with("step ") && s.trace_id == drive.trace_id)
        .collect();
    let mut seen: Vec<(String, String)> = steps
        .iter()
        .map(|s| {
            assert_eq!(s.parent_span_id, drive.span_id, "{}", s.name);
            (
                attr(s, "durable.step.key").unwrap_or_default(),
                attr(s, "durable.step.source").unwrap_or_default(),
            )
        })
        .collect();
    seen.sort();
    let expected: Vec<(String, String)> = [
        ("create_record#1", "recovered"),
        ("grant_access#1", "executed"),
        ("provision_laptop#1", "executed"),
    ]
    .iter()
    .map(|(k, s)| (k.to_string(), s.to_string()))
    .collect();
    assert_eq!(seen, expected);
    for s in &steps {
        if attr(s, "durable.step.source").as_deref() == Some("executed") {
            assert_eq!(attr(s, "durable.step.attempt").as_deref(), Some("1"));
            assert_eq!(attr(s, "durable.step.outcome").as_deref(), Some("ok"));
            assert!(s.end_time_unix_nano >= s.start_time_unix_nano);
        }
    }
    // HTTP spans: children of their step's attempt, client kind; the HR
    // service got each one's traceparent.
    let http: Vec<&Span> = spans
        .iter()
        .filter(|s| s.name == "POST" && s.trace_id == drive.trace_id)
        .collect();
    assert_eq!(
        http.len(),
        2,
        "provision_laptop's and grant_access's requests"
    );
    for h in &http {
        assert_eq!(h.kind, 3, "client");
        let parent = by_id
            .get(&h.parent_span_id)
            .expect("the step span is there");
        assert!(parent.name == "step provision_laptop" || parent.name == "step grant_access");
        assert_eq!(attr(h, "http.response.status_code").as_deref(), Some("200"));
    }
    let sent: Vec<String> = hr
        .seen()
        .iter()
        .filter_map(|s| s.header("traceparent").map(str::to_string))
        .collect();
    assert_eq!(
        sent.len(),
        3,
        "every request carries a traceparent: {sent:?}"
    );
    for h in &http {
        let expected = format!("00-{}-{}-01", hex(&h.trace_id), hex(&h.span_id));
        assert!(sent.contains(&expected), "{expected} not in {sent:?}");
    }
}

#[test]
fn a_wait_is_a_span_of_its_drive() {
    let env = Env::new();
    let collector = collector();
    let input = r#"{"report":"R","amount":1,"approval_timeout_ms":300,"pay_delay_ms":0}"#;
    env.run(&[
        "run",
        &wasm("approval"),
        "--input",
        input,
        "--otlp-endpoint",
        &collector.origin(),
    ])
    .expect_code(Some(0));
    // The run parks on the event (its drive ends there), and the next
    // drive, when the timeout is due, records it and goes on.
    let spans = spans(&collector);
    let wait = spans
        .iter()
        .find(|s| s.name == "wait event approval")
        .expect("the wait's span");
    assert_eq!(attr(wait, "durable.wait.parked").as_deref(), Some("true"));
    let drive = spans
        .iter()
        .find(|s| s.name == "run approval" && s.trace_id == wait.trace_id)
        .expect("its drive's span");
    assert_eq!(wait.parent_span_id, drive.span_id);
    assert_eq!(
        attr(drive, "durable.run.status").as_deref(),
        Some("waiting")
    );
    let drives = spans.iter().filter(|s| s.name == "run approval").count();
    assert_eq!(drives, 2, "the parked drive and the one after the timeout");
}

#[test]
fn a_traceparent_on_a_start_is_the_runs_parent_and_children_join_the_trace() {
    let env = Env::new();
    let collector = collector();
    let server = Server::start(&env, &["--otlp-endpoint", &collector.origin()]);
    let digest = server.upload("family");
    // Children are registered workflows' runs on a server.
    let (status, body) = server.json(
        "POST",
        "/v1/workflows",
        &json!({"name": "family", "component": digest}),
    );
    assert!(status == 201 || status == 200, "{status} {body}");
    let parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let body = json!({"workflow": "family", "id": "f1", "input": {"mode": "fanout", "n": 2}});
    let (status, _, answer) = server.raw(
        "POST",
        "/v1/runs",
        &[
            "content-type: application/json",
            &format!("traceparent: {parent}"),
        ],
        body.to_string().as_bytes(),
    );
    assert_eq!(status, 201, "{answer}");
    assert_eq!(server.result("f1")["status"], "succeeded");
    let deadline = Instant::now() + Duration::from_secs(30);
    let (root, children) = loop {
        let spans = spans(&collector);
        let root = spans
            .iter()
            .find(|s| {
                s.name.starts_with("run ") && attr(s, "durable.run.id").as_deref() == Some("f1")
            })
            .cloned();
        let children: Vec<Span> = spans
            .iter()
            .filter(|s| {
                s.name.starts_with("run ")
                    && attr(s, "durable.run.id").is_some_and(|id| id.starts_with("f1:"))
            })
            .cloned()
            .collect();
        if let Some(root) = root
            && children.len() >= 2
        {
            break (root, children);
        }
        assert!(Instant::now() < deadline, "the spans did not come");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(hex(&root.trace_id), "0af7651916cd43dd8448eb211c80319c");
    assert_eq!(hex(&root.parent_span_id), "b7ad6b7169203331");
    for child in &children {
        assert_eq!(
            child.trace_id, root.trace_id,
            "a child's drive is in its parent's trace"
        );
        assert_eq!(child.parent_span_id, root.span_id);
    }
}

#[test]
fn with_the_receiver_down_runs_finish_and_the_dropped_spans_are_counted() {
    let env = Env::new();
    // A port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port");
    let run = env.run(&[
        "run",
        &wasm("onboarding"),
        "--input",
        crate::polyglot::HIRE,
        "--otlp-endpoint",
        &format!("http://127.0.0.1:{port}"),
    ]);
    assert_eq!(run.success()["status"], "onboarded");
    assert!(
        run.stderr()
            .contains("span(s) could not be sent to the OTLP collector"),
        "{}",
        run.stderr()
    );
    // A collector that takes the connection and never answers: the run's
    // output comes at once, the exit waits the flush's grace (2 s) at most,
    // and the spans in flight are counted.
    let hang = std::net::TcpListener::bind("127.0.0.1:0").expect("a listener");
    let started = Instant::now();
    let run = env.run(&[
        "run",
        &wasm("onboarding"),
        "--input",
        crate::polyglot::HIRE,
        "--otlp-endpoint",
        &format!("http://{}", hang.local_addr().expect("address")),
    ]);
    assert_eq!(run.success()["status"], "onboarded");
    assert!(started.elapsed() < Duration::from_secs(30));
    assert!(
        run.stderr()
            .contains("span(s) could not be sent to the OTLP collector"),
        "{}",
        run.stderr()
    );
    drop(hang);
    // A bad endpoint is a usage error before anything runs, and its
    // secrets are not repeated.
    let bad = env.run(&[
        "run",
        &wasm("onboarding"),
        "--otlp-endpoint",
        "grpc://x:4317/?token=SECRET",
    ]);
    bad.expect_code(Some(2));
    assert!(
        bad.stderr().contains("http:// or https://"),
        "{}",
        bad.stderr()
    );
    assert!(!bad.stderr().contains("SECRET"), "{}", bad.stderr());
    let bad = env.run(&[
        "run",
        &wasm("onboarding"),
        "--otlp-endpoint",
        "http://u:SECRET@x:4318",
    ]);
    bad.expect_code(Some(2));
    assert!(!bad.stderr().contains("SECRET"), "{}", bad.stderr());
}
