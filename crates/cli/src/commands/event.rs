//! `durable event`: send an event to a run (the only verb besides the
//! driving ones that writes a run).

use crate::args::EventArgs;
use crate::common::{chain, error, open_existing};
use crate::exit::ExitCode;
use durable::store::{Location, Sent, StoreError};

/// `durable event`.
pub(crate) async fn event(db: &Location, args: EventArgs) -> ExitCode {
    if let Err(e) = durable::names::validate_step_name(&args.name) {
        error(format_args!("invalid event name: {e}"));
        return ExitCode::Usage;
    }
    if let Some(id) = &args.event_id
        && (id.is_empty() || id.len() > 256)
    {
        error("--id: an event id is 1 to 256 bytes");
        return ExitCode::Usage;
    }
    let payload = match (&args.data, &args.data_file) {
        (Some(d), _) => d.clone(),
        (None, Some(p)) if p.as_os_str() == "-" => {
            let mut s = String::new();
            if let Err(e) = std::io::Read::read_to_string(&mut std::io::stdin(), &mut s) {
                error(format_args!("cannot read the payload from stdin: {e}"));
                return ExitCode::Usage;
            }
            s
        }
        (None, Some(p)) => match std::fs::read_to_string(p) {
            Ok(s) => s,
            Err(e) => {
                error(format_args!("cannot read {}: {e}", p.display()));
                return ExitCode::Usage;
            }
        },
        (None, None) => "null".to_string(),
    };
    if payload.len() > args.max_input_bytes {
        error(format_args!(
            "the payload is {} bytes, over the limit of {} bytes (--max-input-bytes)",
            payload.len(),
            args.max_input_bytes
        ));
        return ExitCode::Usage;
    }
    if let Err(e) = serde_json::from_str::<serde::de::IgnoredAny>(&payload) {
        error(format_args!("the payload is not valid JSON: {e}"));
        return ExitCode::Usage;
    }
    let store = match open_existing(db).await {
        Ok(Some(s)) => s,
        Ok(None) => {
            error(StoreError::RunNotFound(args.run.clone()));
            return ExitCode::NotFound;
        }
        Err(code) => return code,
    };
    let sent = store
        .send_event(&args.run, &args.name, args.event_id.as_deref(), &payload)
        .await;
    store.close().await;
    match sent {
        Ok(Sent::Stored { seq }) => {
            eprintln!(
                "durable: event {} stored for run {} (event #{seq})",
                args.name, args.run
            );
            ExitCode::Success
        }
        Ok(Sent::Duplicate) => {
            eprintln!(
                "durable: run {} already has an event with id {}; nothing stored",
                args.run,
                args.event_id.as_deref().unwrap_or_default()
            );
            ExitCode::Success
        }
        Err(e) => {
            error(chain(&e));
            ExitCode::of_store(&e)
        }
    }
}
