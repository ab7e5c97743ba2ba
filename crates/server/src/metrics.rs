//! `GET /metrics`: the server's numbers in Prometheus' text format.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use durable::runner::{Level, Observer, Source};
use durable::store::{Histogram, HistogramSnapshot, Outcome, Store, StoreError};

/// Bounds of the wake-up lag histogram, in seconds.
static LAG_BOUNDS: [f64; 10] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];

/// What the server counts itself (the rest is read from the store).
pub struct Metrics {
    executed: AtomicU64,
    recovered: AtomicU64,
    /// From a waiting run's due time to the server taking it up.
    wakeup_lag: Histogram,
    /// Requests by route template and status.
    http: Mutex<BTreeMap<(String, u16), u64>>,
    /// The span exporter, when there is one.
    otlp: Option<Arc<durable_otlp::Exporter>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            executed: AtomicU64::new(0),
            recovered: AtomicU64::new(0),
            wakeup_lag: Histogram::new(&LAG_BOUNDS),
            http: Mutex::new(BTreeMap::new()),
            otlp: None,
        }
    }
}

impl Metrics {
    /// Metrics that also count `exporter`'s spans.
    pub fn with_exporter(exporter: Option<Arc<durable_otlp::Exporter>>) -> Metrics {
        Metrics {
            otlp: exporter,
            ..Metrics::default()
        }
    }

    /// A due run was taken up `lag` after its time.
    pub fn woke(&self, lag: Duration) {
        self.wakeup_lag.observe(lag.as_secs_f64());
    }

    /// An API request to `route` was answered with `status`.
    pub fn request(&self, route: &str, status: u16) {
        if let Ok(mut m) = self.http.lock() {
            *m.entry((route.to_string(), status)).or_default() += 1;
        }
    }

    /// The text of `GET /metrics`.
    ///
    /// # Errors
    /// When the store cannot be read.
    pub async fn render(&self, rt: &durable::runner::Runtime) -> Result<String, StoreError> {
        let store: &Store = rt.store();
        let mut out = String::new();
        let (loaded, loaded_bytes) = rt.loaded_usage();
        let _ = writeln!(
            out,
            "# HELP durable_loaded_components Components kept compiled in memory (--max-loaded-mb)."
        );
        let _ = writeln!(out, "# TYPE durable_loaded_components gauge");
        let _ = writeln!(out, "durable_loaded_components {loaded}");
        let _ = writeln!(
            out,
            "# HELP durable_loaded_component_bytes Memory they hold: their bytes and compiled code."
        );
        let _ = writeln!(out, "# TYPE durable_loaded_component_bytes gauge");
        let _ = writeln!(out, "durable_loaded_component_bytes {loaded_bytes}");
        let counts = store.count_by_status(None, None, None, None).await?;
        let _ = writeln!(out, "# HELP durable_runs Runs in the database, by status.");
        let _ = writeln!(out, "# TYPE durable_runs gauge");
        let mut waiting = 0;
        for status in [
            "queued",
            "running",
            "waiting",
            "succeeded",
            "failed",
            "cancelled",
        ] {
            let n = counts
                .iter()
                .find(|(s, _)| s == status)
                .map_or(0, |(_, n)| *n);
            if status == "waiting" {
                waiting = n;
            }
            let _ = writeln!(out, "durable_runs{{status=\"{status}\"}} {n}");
        }
        let queues = store.queues().await?;
        if !queues.is_empty() {
            let _ = writeln!(
                out,
                "# HELP durable_queue_runs Runs of each queue: queued (not admitted yet) and running (admitted and not ended: running or waiting)."
            );
            let _ = writeln!(out, "# TYPE durable_queue_runs gauge");
            for q in &queues {
                let name = label(&q.config.name);
                let _ = writeln!(
                    out,
                    "durable_queue_runs{{queue=\"{name}\",state=\"queued\"}} {}",
                    q.queued
                );
                let _ = writeln!(
                    out,
                    "durable_queue_runs{{queue=\"{name}\",state=\"running\"}} {}",
                    q.active
                );
            }
            let _ = writeln!(
                out,
                "# HELP durable_queue_throttled Queued runs of each queue that its rate holds back now (its bucket has no whole token)."
            );
            let _ = writeln!(out, "# TYPE durable_queue_throttled gauge");
            for q in &queues {
                let throttled = match q.tokens {
                    Some(t) if t < 1.0 => q.queued,
                    _ => 0,
                };
                let _ = writeln!(
                    out,
                    "durable_queue_throttled{{queue=\"{}\"}} {throttled}",
                    label(&q.config.name)
                );
            }
        }
        let _ = writeln!(
            out,
            "# HELP durable_waiting_runs Runs parked on a sleep or an event."
        );
        let _ = writeln!(out, "# TYPE durable_waiting_runs gauge");
        let _ = writeln!(out, "durable_waiting_runs {waiting}");
        let _ = writeln!(
            out,
            "# HELP durable_steps_total Steps this server executed, or recovered from the history."
        );
        let _ = writeln!(out, "# TYPE durable_steps_total counter");
        let _ = writeln!(
            out,
            "durable_steps_total{{source=\"executed\"}} {}",
            self.executed.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "durable_steps_total{{source=\"recovered\"}} {}",
            self.recovered.load(Ordering::Relaxed)
        );
        if let Some(e) = &self.otlp {
            let _ = writeln!(
                out,
                "# HELP durable_otlp_spans_total Spans sent to the OTLP collector, or dropped (queue full, collector down)."
            );
            let _ = writeln!(out, "# TYPE durable_otlp_spans_total counter");
            let _ = writeln!(
                out,
                "durable_otlp_spans_total{{result=\"exported\"}} {}",
                e.exported()
            );
            let _ = writeln!(
                out,
                "durable_otlp_spans_total{{result=\"dropped\"}} {}",
                e.dropped()
            );
        }
        let (commit, batch) = store.commit_histograms();
        histogram(
            &mut out,
            "durable_commit_seconds",
            "Time to apply and commit one batch of changes (one fsync).",
            &commit,
        );
        histogram(
            &mut out,
            "durable_commit_batch_size",
            "Changes committed together in one transaction.",
            &batch,
        );
        histogram(
            &mut out,
            "durable_wakeup_lag_seconds",
            "From a waiting run's due time to this server taking it up.",
            &self.wakeup_lag.snapshot(),
        );
        let _ = writeln!(
            out,
            "# HELP durable_http_requests_total API requests, by route and status."
        );
        let _ = writeln!(out, "# TYPE durable_http_requests_total counter");
        if let Ok(m) = self.http.lock() {
            for ((route, status), n) in m.iter() {
                let _ = writeln!(
                    out,
                    "durable_http_requests_total{{route=\"{route}\",status=\"{status}\"}} {n}"
                );
            }
        }
        Ok(out)
    }
}

fn histogram(out: &mut String, name: &str, help: &str, h: &HistogramSnapshot) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} histogram");
    for (bound, n) in &h.buckets {
        let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {n}");
    }
    let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {}", h.count);
    let _ = writeln!(out, "{name}_sum {}", h.sum);
    let _ = writeln!(out, "{name}_count {}", h.count);
}

/// Counts steps (joined to the printing observer with [`durable::runner::Tee`]).
pub struct Counting {
    pub metrics: Arc<Metrics>,
}

impl Observer for Counting {
    fn step(&self, _: &str, _: &str, source: Source, _: &Outcome, _: Duration) {
        match source {
            Source::Executed => &self.metrics.executed,
            Source::Recovered => &self.metrics.recovered,
        }
        .fetch_add(1, Ordering::Relaxed);
    }

    fn log(&self, _: &str, _: &str, _: Level, _: &str) {}
}

/// `text` as a Prometheus label value (backslash, quote and newline
/// escaped).
fn label(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
