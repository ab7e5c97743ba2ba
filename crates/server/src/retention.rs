//! Retention: the server deletes finished runs older than their workflow's
//! `retention` (durable.toml) or the default (`--retention`, or the file's
//! top-level `retention`), every `--retention-every`, with the store's
//! batched prune (one short transaction per 200 runs, so drives commit in
//! between). Off, and no task at all, when nothing is configured.
//!
//! Several servers on one database may all prune: a run deleted by one is
//! simply not found by the others.

use std::time::Duration;

use durable::clock::now_ms;
use durable::store::{PruneFilter, Store};

/// What to keep.
#[derive(Debug, Clone)]
pub(crate) struct Policy {
    /// How long finished runs of workflows without their own are kept, in
    /// ms (`None`: for ever).
    pub default_ms: Option<i64>,
    /// Workflows with their own retention, in ms.
    pub workflows: Vec<(String, i64)>,
    /// Time between passes.
    pub every: Duration,
}

/// How long after the server's start the first pass runs: the server is
/// answering by then, and a restart loop does not prune on every start.
const FIRST_PASS: Duration = Duration::from_secs(1);

/// Starts the passes, if the policy deletes anything.
pub(crate) fn spawn(store: Store, policy: Policy) -> Option<tokio::task::JoinHandle<()>> {
    if policy.default_ms.is_none() && policy.workflows.is_empty() {
        return None;
    }
    Some(tokio::spawn(async move {
        tokio::time::sleep(FIRST_PASS.min(policy.every)).await;
        loop {
            match pass(&store, &policy).await {
                Ok(0) => tracing::debug!("retention: nothing to delete"),
                Ok(runs) => tracing::info!(runs, "retention: deleted finished runs"),
                Err(e) => {
                    tracing::warn!(error = %durable::errors::chain(&e), "retention pass failed")
                }
            }
            tokio::time::sleep(policy.every).await;
        }
    }))
}

/// One pass: each workflow's own retention, then the default for the
/// others. Returns how many runs were deleted.
async fn pass(store: &Store, policy: &Policy) -> Result<u64, durable::store::StoreError> {
    let now = now_ms();
    let mut deleted = 0;
    for (workflow, ms) in &policy.workflows {
        deleted += store
            .prune(PruneFilter {
                workflow: Some(workflow.clone()),
                ..PruneFilter::finished_before(now.saturating_sub(*ms))
            })
            .await?;
    }
    if let Some(ms) = policy.default_ms {
        deleted += store
            .prune(PruneFilter {
                except_workflows: policy.workflows.iter().map(|(w, _)| w.clone()).collect(),
                ..PruneFilter::finished_before(now.saturating_sub(ms))
            })
            .await?;
    }
    Ok(deleted)
}
