//! Spans to an OpenTelemetry collector for `run`, `resume` and `fork`
//! (`--otlp-endpoint`, `OTEL_EXPORTER_OTLP_ENDPOINT`,
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`): one exporter per process, flushed
//! when the command ends. `serve` makes its own (durable-server).

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use durable::trace::SpanSink;
use durable_otlp::{Config, Endpoint, Exporter};

use crate::args::DriveArgs;
use crate::common::error;
use crate::exit::ExitCode;

static EXPORTER: OnceLock<Arc<Exporter>> = OnceLock::new();

/// How long the end of a command waits for its spans to be sent (its
/// output is printed before): a collector that hangs delays the exit by
/// this much, no more.
const FLUSH_GRACE: Duration = Duration::from_secs(2);

/// The endpoint the flags and environment name, if any.
///
/// # Errors
/// A URL that is not http(s): a usage error, with the message printed.
pub(crate) fn endpoint(flag: Option<&str>) -> Result<Option<Endpoint>, ExitCode> {
    let parsed = match flag.filter(|s| !s.is_empty()) {
        Some(base) => Some(Endpoint::parse(base)),
        None => std::env::var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
            .ok()
            .filter(|s| !s.is_empty())
            .map(|url| Endpoint::exact(&url)),
    };
    parsed.transpose().map_err(|e| {
        error(format_args!(
            "--otlp-endpoint (or OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_EXPORTER_OTLP_TRACES_ENDPOINT): {e}"
        ));
        ExitCode::Usage
    })
}

/// The exporter's config: `service.name` from `OTEL_SERVICE_NAME`, else
/// `durable`.
pub(crate) fn config(endpoint: Endpoint) -> Config {
    Config {
        endpoint,
        service_name: std::env::var("OTEL_SERVICE_NAME")
            .ok()
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "durable".into()),
        service_version: env!("CARGO_PKG_VERSION").into(),
    }
}

/// Starts this process's exporter if an endpoint is set: the sink drives
/// report to.
///
/// # Errors
/// A bad endpoint (printed).
pub(crate) fn start(drive: &DriveArgs) -> Result<Option<Arc<dyn SpanSink>>, ExitCode> {
    let Some(endpoint) = endpoint(drive.otlp_endpoint.as_deref())? else {
        return Ok(None);
    };
    let exporter = EXPORTER.get_or_init(|| Exporter::start(config(endpoint)));
    Ok(Some(exporter.clone() as Arc<dyn SpanSink>))
}

/// Sends the spans still queued (at most [`FLUSH_GRACE`]) and says on
/// stderr how many could not be sent.
pub(crate) async fn finish() {
    let Some(exporter) = EXPORTER.get() else {
        return;
    };
    exporter.shutdown(FLUSH_GRACE).await;
    let dropped = exporter.dropped();
    if dropped > 0 {
        error(format_args!(
            "{dropped} span(s) could not be sent to the OTLP collector ({} sent); the runs are not affected",
            exporter.exported()
        ));
    }
}
