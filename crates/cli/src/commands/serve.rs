//! `durable serve`: the server (the `durable-server` crate) with the
//! command line's settings, printing drives' progress as `run` does and
//! stopping on SIGTERM or SIGINT.

use durable::store::Location;

use durable_server::{ServeError, ServeSettings};

use crate::args::ServeArgs;
use crate::common::{error, signalled};
use crate::driving::observer;
use crate::exit::ExitCode;

/// `durable serve`.
pub(crate) async fn serve(db: &Location, args: ServeArgs) -> ExitCode {
    let settings = ServeSettings {
        listen: args.listen,
        token: args.token,
        token_file: args.token_file,
        allow_hosts: args.allow_hosts,
        max_body_mb: args.max_body_mb,
        max_uploads: args.max_uploads,
        max_loaded_mb: args.max_loaded_mb,
        max_long_polls: args.max_long_polls,
        shutdown_grace_ms: args.shutdown_grace_ms,
        config: args.config,
        retention_ms: args.retention,
        otlp: match crate::otlp::endpoint(args.drive.otlp_endpoint.as_deref()) {
            Ok(e) => e.map(crate::otlp::config),
            Err(code) => return code,
        },
        retention_every: std::time::Duration::from_millis(args.retention_every.max(1000) as u64),
        drive: args.drive.settings(),
    };
    match durable_server::serve(db, settings, observer(true), signalled()).await {
        Ok(()) => ExitCode::Success,
        Err(e) => {
            error(&e);
            match e {
                ServeError::Settings(_) => ExitCode::Usage,
                ServeError::Engine(_) => ExitCode::Failure,
                ServeError::Store(e) => ExitCode::of_store(&e),
            }
        }
    }
}
