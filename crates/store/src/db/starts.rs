//! Runs come into being: [`Store::claim_run`] (a drive's start: create the
//! run, or take it over) and [`Store::create_run`] (a server's start: create
//! it, or report the run that has the id), and the memory of components
//! that spares a start from looking at its component again.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use super::rows::{ComponentToStore, claim_existing_run, insert_run, read_run};
use super::{Claim, Creation, NewRun, RunRecord, Store, StoreError};
use crate::owner::Owner;
use crate::sql::Tx;

/// Digests of components a store has seen committed with a workflow name:
/// a start looks at its component only the first time. Looking was a walk
/// of the whole blob's overflow pages on SQLite (the `name` column comes
/// after the bytes), 4% of a server's CPU per start.
///
/// Sound because a stored component keeps its first name and cannot be
/// deleted while a run uses it. Should another process delete it once its
/// runs are gone, the run's insert fails on the foreign key and is done
/// again, looking at the component.
#[derive(Clone, Default)]
pub(super) struct NamedComponents(Arc<Mutex<HashSet<String>>>);

impl NamedComponents {
    /// What the insert of a run with `digest` is to do with its component.
    pub(super) fn to_store(&self, digest: &str) -> ComponentToStore {
        match self.0.lock().is_ok_and(|named| named.contains(digest)) {
            true => ComponentToStore::Known,
            false => ComponentToStore::Unknown,
        }
    }

    /// Keeps the memory true after a transaction that inserted a run with
    /// `digest` (or tried to; `created` tells whether it did): `None` when
    /// the component was taken for known but is gone.
    pub(super) fn settle<T>(
        &self,
        digest: &str,
        component: ComponentToStore,
        outcome: Result<T, StoreError>,
        created: fn(&T) -> bool,
    ) -> Result<Option<T>, StoreError> {
        let Ok(mut named) = self.0.lock() else {
            return outcome.map(Some);
        };
        match outcome {
            Err(e) if component == ComponentToStore::Known && e.is_foreign_key_violation() => {
                named.remove(digest);
                Ok(None)
            }
            Err(e) => Err(e),
            Ok(done) => {
                // The insert of a run stores its component with a name.
                if created(&done) && !named.contains(digest) {
                    named.insert(digest.to_string());
                }
                Ok(Some(done))
            }
        }
    }

    /// Forgets `digest` (it was deleted).
    pub(super) fn forget(&self, digest: &str) {
        if let Ok(mut named) = self.0.lock() {
            named.remove(digest);
        }
    }
}

/// What a start makes of a run that has the id already: `(tx, run, owner,
/// now, lease_ms)`.
type OnExisting<T> = fn(&Tx<'_>, RunRecord, &str, i64, i64) -> Result<T, StoreError>;

impl Store {
    /// Creates run `new.id` owned by `owner`, or takes ownership of it if it
    /// exists unfinished and its owner is gone, or reports it finished.
    ///
    /// # Errors
    /// [`StoreError::Owned`] when a live process drives the run.
    pub async fn claim_run(&self, new: NewRun, owner: &Owner) -> Result<Claim, StoreError> {
        self.start(
            new,
            owner,
            insert_run,
            claim_existing_run,
            Claim::Created,
            |c| matches!(c, Claim::Created(_)),
        )
        .await
    }

    /// Creates run `new.id` owned by `owner`; a run that has the id
    /// already is left as it is (a server's start: the run is driven by
    /// whoever drives it, or when it is due).
    ///
    /// # Errors
    /// [`StoreError`] when the transaction fails.
    pub async fn create_run(&self, new: NewRun, owner: &Owner) -> Result<Creation, StoreError> {
        self.start(
            new,
            owner,
            insert_run,
            |_, run, _, _, _| Ok(Creation::Existing(run)),
            Creation::Created,
            |c| matches!(c, Creation::Created(_)),
        )
        .await
    }

    /// One transaction that inserts run `new` with `insert` (`created`
    /// makes the answer of it) unless a run has the id (`existing` answers
    /// then), done again if the component this store took for stored is
    /// gone.
    pub(super) async fn start<T: Send + 'static, I>(
        &self,
        new: NewRun,
        owner: &Owner,
        insert: I,
        existing: OnExisting<T>,
        created: fn(RunRecord) -> T,
        was_created: fn(&T) -> bool,
    ) -> Result<T, StoreError>
    where
        I: Fn(&Tx<'_>, &NewRun, ComponentToStore, &str, i64, i64) -> Result<RunRecord, StoreError>
            + Clone
            + Send
            + 'static,
    {
        let lease_ms = self.lease_ms;
        let owner = owner.to_string();
        let new = Arc::new(new);
        let mut component = self.named_components.to_store(&new.component_digest);
        loop {
            let (job, owner, insert) = (Arc::clone(&new), owner.clone(), insert.clone());
            let outcome = self
                .writer_for(&new.id)
                .transact(move |tx| {
                    let now = tx.now_ms();
                    match read_run(tx, &job.id)? {
                        Some(run) => existing(tx, run, &owner, now, lease_ms),
                        None => insert(tx, &job, component, &owner, now, lease_ms).map(created),
                    }
                })
                .await;
            let settled = self.named_components.settle(
                &new.component_digest,
                component,
                outcome,
                was_created,
            )?;
            match settled {
                Some(done) => return Ok(done),
                None => component = ComponentToStore::Unknown,
            }
        }
    }
}
