//! Exports durable's spans ([`durable_core::trace::Span`]) to an
//! OpenTelemetry collector over OTLP/HTTP with protobuf bodies.
//!
//! [`Exporter::export`] never blocks and never fails: a span goes into a
//! bounded queue ([`QUEUE`] spans), or is dropped and counted when the
//! queue is full (the collector is down or slower than the runs). A task
//! sends the queue in batches of up to [`BATCH`] spans, at least once per
//! [`INTERVAL`]; a batch that cannot be sent is dropped and counted too.
//! Memory is bounded by the queue and one batch in flight, whatever the
//! collector does.

mod encode;
mod send;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use durable_core::trace::{Span, SpanSink};
use tokio::sync::{Notify, mpsc};

pub use send::Endpoint;

/// Spans queued at most; more are dropped (and counted).
pub const QUEUE: usize = 8192;

/// Spans per request at most.
pub const BATCH: usize = 512;

/// Longest time a span waits in the queue while the collector answers.
pub const INTERVAL: Duration = Duration::from_secs(1);

/// What is sent, and where.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where the spans go: the collector's `/v1/traces` URL.
    pub endpoint: Endpoint,
    /// `service.name` of the spans' resource.
    pub service_name: String,
    /// `service.version`.
    pub service_version: String,
}

/// Counts, for `/metrics` and the CLI's last line.
#[derive(Debug, Default)]
struct Counts {
    exported: AtomicU64,
    dropped: AtomicU64,
    /// Spans of the batch being sent now.
    in_flight: AtomicU64,
}

/// The exporter: a queue and the task that empties it.
pub struct Exporter {
    queue: mpsc::Sender<Span>,
    counts: Arc<Counts>,
    closing: Arc<AtomicBool>,
    wake: Arc<Notify>,
    task: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Exporter {
    /// Starts the exporter's task on the current tokio runtime.
    pub fn start(config: Config) -> Arc<Exporter> {
        let (queue, rx) = mpsc::channel(QUEUE);
        let counts = Arc::new(Counts::default());
        let closing = Arc::new(AtomicBool::new(false));
        let wake = Arc::new(Notify::new());
        let task = tokio::spawn(run(
            config,
            rx,
            counts.clone(),
            closing.clone(),
            wake.clone(),
        ));
        Arc::new(Exporter {
            queue,
            counts,
            closing,
            wake,
            task: std::sync::Mutex::new(Some(task)),
        })
    }

    /// Spans the collector accepted.
    pub fn exported(&self) -> u64 {
        self.counts.exported.load(Ordering::Relaxed)
    }

    /// Spans dropped: the queue was full, or their batch could not be
    /// sent.
    pub fn dropped(&self) -> u64 {
        self.counts.dropped.load(Ordering::Relaxed)
    }

    /// Sends what is queued and stops, waiting at most `grace`; spans still
    /// queued then are dropped (and counted).
    pub async fn shutdown(&self, grace: Duration) {
        self.closing.store(true, Ordering::SeqCst);
        self.wake.notify_one();
        let task = self.task.lock().ok().and_then(|mut t| t.take());
        if let Some(task) = task {
            let abort = task.abort_handle();
            if tokio::time::timeout(grace, task).await.is_err() {
                abort.abort();
                let left = (QUEUE - self.queue.capacity()) as u64
                    + self.counts.in_flight.swap(0, Ordering::Relaxed);
                self.counts.dropped.fetch_add(left, Ordering::Relaxed);
            }
        }
    }
}

impl SpanSink for Exporter {
    fn export(&self, span: Span) {
        if self.closing.load(Ordering::Relaxed) || self.queue.try_send(span).is_err() {
            self.counts.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Empties the queue: a batch when it is full, when [`INTERVAL`] has
/// passed since its first span, or when closing.
async fn run(
    config: Config,
    mut rx: mpsc::Receiver<Span>,
    counts: Arc<Counts>,
    closing: Arc<AtomicBool>,
    wake: Arc<Notify>,
) {
    let resource = encode::resource(&config.service_name, &config.service_version);
    let client = send::Client::new(config.endpoint.clone());
    let mut batch: Vec<Span> = Vec::with_capacity(BATCH);
    let mut warned_at: Option<tokio::time::Instant> = None;
    loop {
        let done = closing.load(Ordering::SeqCst);
        if batch.is_empty() && !done {
            tokio::select! {
                span = rx.recv() => match span {
                    Some(s) => batch.push(s),
                    None => return,
                },
                () = wake.notified() => {}
            }
        }
        // Fill the batch for at most INTERVAL (at once when closing).
        let until = tokio::time::Instant::now() + INTERVAL;
        while batch.len() < BATCH {
            match rx.try_recv() {
                Ok(s) => batch.push(s),
                Err(_) if closing.load(Ordering::SeqCst) => break,
                Err(mpsc::error::TryRecvError::Disconnected) => break,
                Err(mpsc::error::TryRecvError::Empty) => {
                    tokio::select! {
                        span = rx.recv() => match span {
                            Some(s) => batch.push(s),
                            None => break,
                        },
                        () = tokio::time::sleep_until(until) => break,
                        () = wake.notified() => {}
                    }
                }
            }
        }
        if !batch.is_empty() {
            let n = batch.len() as u64;
            let body = encode::request(&resource, &batch);
            batch.clear();
            counts.in_flight.store(n, Ordering::Relaxed);
            let sent = client.post(body).await;
            counts.in_flight.store(0, Ordering::Relaxed);
            match sent {
                Ok(()) => {
                    counts.exported.fetch_add(n, Ordering::Relaxed);
                }
                Err(e) => {
                    counts.dropped.fetch_add(n, Ordering::Relaxed);
                    // Once a minute at most: a collector that is down
                    // must not flood the log.
                    let now = tokio::time::Instant::now();
                    if warned_at.is_none_or(|t| now - t > Duration::from_secs(60)) {
                        warned_at = Some(now);
                        tracing::warn!(
                            endpoint = %config.endpoint,
                            error = %e,
                            spans = n,
                            "OTLP export failed; spans dropped (counted)"
                        );
                    }
                }
            }
        }
        if closing.load(Ordering::SeqCst) && rx.is_empty() {
            return;
        }
    }
}
