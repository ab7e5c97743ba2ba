//! The lease of a drive: renewed while the drive lasts, so that no other
//! process takes the run over, and the way a drive hears of a cancel request
//! while none of its steps commits.

use std::sync::Arc;

use super::RunError;
use super::drive::Drive;
use crate::store::StoreError;

/// Keeps the lease alive while a drive lasts (aborted when it ends), and
/// notices a cancel request even while no step commits.
pub(super) async fn renew_lease(drive: Arc<Drive>) {
    let period =
        std::time::Duration::from_millis((drive.store.lease_ms() / 3) as u64).min(CANCEL_POLL);
    loop {
        tokio::time::sleep(period).await;
        match drive
            .store
            .renew_lease(&drive.run_id, &drive.owner, drive.number)
            .await
        {
            Ok(cancel) => drive.note_cancel(cancel),
            // Another process drives the run now: stop at once (the epoch
            // callback traps every instance of this drive).
            // The workflow parked the run: it gave the lease up itself.
            Err(StoreError::LeaseLost { .. }) if drive.is_parking() => return,
            Err(e @ StoreError::LeaseLost { .. }) => {
                tracing::warn!(run = %drive.run_id, "the lease was lost; stopping the drive");
                let _ = drive.stop(RunError::Store(e));
                return;
            }
            Err(e) => tracing::warn!(run = %drive.run_id, error = %e, "could not renew the lease"),
        }
    }
}

/// How often a drive with no commits checks for a cancel request.
const CANCEL_POLL: std::time::Duration = std::time::Duration::from_secs(1);
