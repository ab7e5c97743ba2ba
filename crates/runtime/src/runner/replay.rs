//! Runs and new code: replaying a run's history against a component without
//! executing anything (`durable check`, `durable upgrade-check`), and
//! driving a run with another component than the one it started with
//! (`durable resume --component`).

use std::collections::HashMap;
use std::sync::Arc;

use super::drive::{Drive, DriveSetup};
use super::workflow::{WorkflowFailure, end_of, run_workflow};
use super::{Faults, Finished, LoadedWorkflow, RunError, Runtime, Silent};
use crate::history::History;
use crate::store::ComponentSwitch;

/// How far a replay got: the workflow's own calls answered from the record,
/// of those the history holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Calls of the workflow answered from the record.
    pub replayed: u32,
    /// Calls of the workflow the history holds.
    pub recorded: u32,
}

/// What [`Runtime::replay`] found.
#[derive(Debug)]
pub enum Replay {
    /// The workflow ended having made every recorded call again, with this
    /// output (`Err`: the run's error).
    Ended {
        /// The output, or the run's error message.
        result: Result<String, String>,
        /// How far it got.
        progress: Progress,
    },
    /// The workflow reached call `key`, which has no record (or is a wait
    /// that is not over): everything before it matched.
    Reached {
        /// The first call without a record.
        key: String,
        /// How far it got.
        progress: Progress,
    },
    /// The workflow trapped (a panic, an out-of-bounds access...) on the
    /// recorded history: a run driven by it would fail.
    Trapped {
        /// The trap, with what the workflow said.
        message: String,
        /// How far it got.
        progress: Progress,
    },
    /// The workflow made another call than the history holds.
    Diverged {
        /// Where and how.
        divergence: Box<crate::history::Divergence>,
        /// How far it got.
        progress: Progress,
    },
}

impl Runtime {
    /// Resumes run `run_id` with `workflow`, which may be another component
    /// than the one that drove it so far: the run switches to it (recorded
    /// with its first new commit, so a divergence changes nothing). With
    /// `forced_from`, the workflow's records from that position on are
    /// superseded first (moved aside, kept for inspection), so that code
    /// which diverges there runs on from there; the steps they held run
    /// again.
    ///
    /// Check with [`Runtime::replay`] first: without `forced_from`, a
    /// divergent run stops with [`RunError::Divergence`].
    ///
    /// # Errors
    /// See [`RunError`]; [`StoreError::RunNotFound`] when there is no such run.
    pub async fn resume_with(
        &self,
        run_id: &str,
        workflow: &LoadedWorkflow,
        forced_from: Option<u32>,
    ) -> Result<Finished, RunError> {
        self.fit_pool(workflow);
        let _slot = self.workflow_slot().await?;
        let _active = self.activate(run_id)?;
        let (run, start) = match self.claim_for_drive(run_id).await? {
            Ok(claimed) => claimed,
            Err(finished) => return Ok(finished),
        };
        let switch = (run.component_digest != workflow.digest).then(|| ComponentSwitch {
            digest: workflow.digest.clone(),
            bytes: workflow.bytes.clone(),
            forced_from,
        });
        self.drive(run, workflow, switch, start).await
    }

    /// Replays run `run_id`'s recorded history against `workflow` without
    /// executing or writing anything: every durable call is answered from
    /// the record, and the replay stops at the first call that has none (or
    /// at a wait that is not over). Whether `workflow` can take the run
    /// over (`durable upgrade-check`), or reproduces a finished run's output
    /// exactly (`durable check`). Works on a run that another process drives.
    ///
    /// # Errors
    /// [`StoreError::RunNotFound`]; a failure to instantiate the workflow
    /// or of the store.
    pub async fn replay(
        &self,
        workflow: &LoadedWorkflow,
        run_id: &str,
    ) -> Result<Replay, RunError> {
        let detail = self.store.detail(run_id, false).await?;
        let run = detail.run;
        let recorded = detail.steps.iter().filter(|s| s.parent.is_empty()).count() as u32;
        self.fit_pool(workflow);
        let _slot = self.workflow_slot().await?;
        let (limits, grants) = self.policy(&workflow.digest);
        let drive = Arc::new(Drive::new(DriveSetup {
            run_id: run.id.clone(),
            instances: Arc::new(super::step::Instances(workflow.pre.clone())),
            store: self.store.clone(),
            owner: self.owner.clone(),
            history: History::new(detail.steps),
            recorded_bytes: 0,
            prior_attempts: HashMap::new(),
            permits: self.permits.clone(),
            slots: self.step_slots.clone(),
            interrupted: self.interrupted.clone(),
            observer: Arc::new(Silent),
            faults: Faults::default(),
            replay_only: true,
            limits,
            grants,
            switch: None,
            number: run.drives,
            family: self.family.clone(),
            component: workflow.as_child(&run.workflow),
            step_limits: Arc::default(),
            // A replay reads; it is nobody's trace.
            trace: None,
        }));
        let (outcome, _) = run_workflow(&drive, &workflow.pre, &run).await;
        let made = |n: u32| Progress {
            replayed: n,
            recorded,
        };
        match drive.take_fatal() {
            Some(RunError::ReplayEnd { key, position, .. }) => {
                return Ok(Replay::Reached {
                    key,
                    progress: made(position),
                });
            }
            Some(RunError::Divergence(d)) => {
                let replayed = d.position;
                return Ok(Replay::Diverged {
                    divergence: d,
                    progress: made(replayed),
                });
            }
            Some(other) => return Err(other),
            None => {}
        }
        match outcome {
            Ok((result, calls)) => {
                if let Err(RunError::Divergence(d)) = drive.check_end(calls) {
                    return Ok(Replay::Diverged {
                        divergence: d,
                        progress: made(calls),
                    });
                }
                Ok(Replay::Ended {
                    result: end_of(result, &drive.limits),
                    progress: made(calls),
                })
            }
            Err(WorkflowFailure::Trap(message, calls)) => Ok(Replay::Trapped {
                message,
                progress: made(calls),
            }),
            Err(WorkflowFailure::Instantiate(message)) => Err(RunError::Instantiate(message)),
        }
    }
}
