//! The spans of one drive, for a tracing system (`--otlp-endpoint`): the
//! drive itself, each step attempt it ran (and each step it recovered),
//! the waits it made. Made only when the runtime has a span sink; a drive
//! without one carries `None` and pays nothing.
//!
//! One trace per drive: its root is the drive's span, a child of the run's
//! `trace_parent` when the start gave one (then every drive of the run is
//! in the caller's trace). A step attempt's span id is derived from the
//! drive's and the attempt's key and number, so the instance that runs it
//! (its HTTP requests' parent) and the drive that reports it agree without
//! passing anything between them.

use std::sync::Arc;

use durable_core::trace::{AttrValue, Span, SpanKind, SpanSink, TraceContext, ms_to_ns, now_ns};

use crate::store::{Outcome, RunRecord};

/// A drive's trace.
pub(crate) struct DriveTrace {
    sink: Arc<dyn SpanSink>,
    /// The drive's span.
    context: TraceContext,
    parent: Option<[u8; 8]>,
    start_ns: u64,
    run_id: String,
    workflow: String,
    drive: u32,
}

fn random<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    // getrandom only fails where the OS has no entropy source at all; a
    // span id of zeros is then made valid below.
    let _ = getrandom::fill(&mut b);
    if b.iter().all(|x| *x == 0) {
        b[N - 1] = 1;
    }
    b
}

impl DriveTrace {
    /// The trace of `run`'s drive number `run.drives`, starting now.
    pub(crate) fn start(sink: Arc<dyn SpanSink>, run: &RunRecord) -> DriveTrace {
        let parent = run.trace_parent.as_deref().and_then(TraceContext::parse);
        DriveTrace {
            sink,
            context: TraceContext {
                trace_id: parent.map_or_else(random, |p| p.trace_id),
                span_id: random(),
            },
            parent: parent.map(|p| p.span_id),
            start_ns: now_ns(),
            run_id: run.id.clone(),
            workflow: run.workflow.clone(),
            drive: run.drives,
        }
    }

    /// The `traceparent` a child workflow started in this drive gets: its
    /// drives join this trace, under this drive.
    pub(crate) fn traceparent(&self) -> String {
        self.context.traceparent()
    }

    /// The span of attempt `attempt` of step `key`.
    pub(crate) fn step_context(&self, key: &str, attempt: u32) -> TraceContext {
        self.context
            .derived(&[b"step", key.as_bytes(), &attempt.to_le_bytes()])
    }

    /// Where attempt `attempt` of step `key` reports its HTTP requests.
    pub(crate) fn request_trace(&self, key: &str, attempt: u32) -> crate::http::RequestTrace {
        crate::http::RequestTrace {
            parent: self.step_context(key, attempt),
            sink: self.sink.clone(),
        }
    }

    fn common(&self) -> Vec<(&'static str, AttrValue)> {
        vec![
            ("durable.run.id", AttrValue::Str(self.run_id.clone())),
            ("durable.drive", AttrValue::Int(i64::from(self.drive))),
        ]
    }

    /// An attempt of step `key` (named `name`) that ran from
    /// `started_at_ms` until now and ended with `outcome`.
    pub(crate) fn attempt(
        &self,
        key: &str,
        name: &str,
        attempt: u32,
        started_at_ms: i64,
        outcome: &Outcome,
    ) {
        let mut attributes = self.common();
        attributes.extend([
            ("durable.step.key", AttrValue::Str(key.to_string())),
            ("durable.step.name", AttrValue::Str(name.to_string())),
            ("durable.step.attempt", AttrValue::Int(i64::from(attempt))),
            (
                "durable.step.outcome",
                AttrValue::Str(outcome_name(outcome).into()),
            ),
            ("durable.step.source", AttrValue::Str("executed".into())),
        ]);
        self.sink.export(Span {
            context: self.step_context(key, attempt),
            parent: Some(self.context.span_id),
            name: format!("step {name}"),
            kind: SpanKind::Internal,
            start_ns: ms_to_ns(started_at_ms),
            end_ns: now_ns(),
            attributes,
            error: outcome_error(outcome),
        });
    }

    /// Step `key` answered from its record (recovered): an instant span.
    pub(crate) fn recovered(&self, key: &str, name: &str, outcome: &Outcome) {
        let now = now_ns();
        let mut attributes = self.common();
        attributes.extend([
            ("durable.step.key", AttrValue::Str(key.to_string())),
            ("durable.step.name", AttrValue::Str(name.to_string())),
            (
                "durable.step.outcome",
                AttrValue::Str(outcome_name(outcome).into()),
            ),
            ("durable.step.source", AttrValue::Str("recovered".into())),
        ]);
        self.sink.export(Span {
            context: self.context.derived(&[b"recovered", key.as_bytes()]),
            parent: Some(self.context.span_id),
            name: format!("step {name}"),
            kind: SpanKind::Internal,
            start_ns: now,
            end_ns: now,
            attributes,
            error: None,
        });
    }

    /// A wait of the workflow (`sleep`, `await-event NAME`, an await on
    /// handles) from `start_ns` until now; `parked` when the run was
    /// parked on it (the drive ends there).
    pub(crate) fn wait(&self, what: &str, start_ns: u64, parked: bool) {
        let mut attributes = self.common();
        attributes.extend([
            ("durable.wait", AttrValue::Str(what.to_string())),
            ("durable.wait.parked", AttrValue::Bool(parked)),
        ]);
        let n = random::<8>();
        self.sink.export(Span {
            context: self.context.derived(&[b"wait", &n]),
            parent: Some(self.context.span_id),
            name: format!("wait {what}"),
            kind: SpanKind::Internal,
            start_ns,
            end_ns: now_ns(),
            attributes,
            error: None,
        });
    }

    /// The drive ended: `status` is the run's afterwards (`succeeded`,
    /// `waiting`, ...), `error` why the drive failed, if it did.
    pub(crate) fn end(&self, status: &str, error: Option<String>) {
        let mut attributes = self.common();
        attributes.extend([
            ("durable.workflow", AttrValue::Str(self.workflow.clone())),
            ("durable.run.status", AttrValue::Str(status.to_string())),
        ]);
        self.sink.export(Span {
            context: self.context,
            parent: self.parent,
            name: format!("run {}", self.workflow),
            kind: SpanKind::Internal,
            start_ns: self.start_ns,
            end_ns: now_ns(),
            attributes,
            error,
        });
    }
}

fn outcome_name(outcome: &Outcome) -> &'static str {
    match outcome {
        Outcome::Ok(_) => "ok",
        Outcome::Failed(_) => "failed",
        Outcome::Trapped(_) => "trapped",
        Outcome::TimedOut(_) => "timed-out",
    }
}

fn outcome_error(outcome: &Outcome) -> Option<String> {
    match outcome {
        Outcome::Ok(_) => None,
        Outcome::Failed(m) | Outcome::Trapped(m) => Some(m.clone()),
        Outcome::TimedOut(ms) => Some(format!("timed out after {ms} ms")),
    }
}
