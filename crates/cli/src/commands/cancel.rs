//! `durable cancel`: ask for a run to stop (it ends at its next durable
//! call, or at once when nobody drives it).

use crate::args::CancelArgs;
use crate::common::{chain, error, open_existing};
use crate::exit::ExitCode;
use durable::store::{Cancelled, Location, RunStatus, StoreError};

/// `durable cancel`.
pub(crate) async fn cancel(db: &Location, args: CancelArgs) -> ExitCode {
    let store = match open_existing(db).await {
        Ok(Some(s)) => s,
        Ok(None) => {
            error(StoreError::RunNotFound(args.id.clone()));
            return ExitCode::NotFound;
        }
        Err(code) => return code,
    };
    let result = store.cancel(&args.id).await;
    store.close().await;
    match result {
        Ok(Cancelled::Now) => {
            eprintln!("durable: run {} is cancelled", args.id);
            ExitCode::Success
        }
        Ok(Cancelled::Requested) => {
            eprintln!(
                "durable: run {} is being driven by another process; it stops at its next durable call",
                args.id
            );
            ExitCode::Success
        }
        // Cancelling twice is fine.
        Err(StoreError::AlreadyFinished {
            status: RunStatus::Cancelled,
            ..
        }) => {
            eprintln!("durable: run {} is cancelled", args.id);
            ExitCode::Success
        }
        Err(e) => {
            error(chain(&e));
            ExitCode::of_store(&e)
        }
    }
}
