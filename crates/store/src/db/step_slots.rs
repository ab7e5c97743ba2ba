//! Step concurrency limits: at most N attempts of step NAME at once,
//! across every run and every host sharing the database.
//!
//! An attempt takes a slot (a row) before its instance is made and gives
//! it back when it has ended. The limit's row is locked while the slots
//! are counted and one is taken, so hosts never overshoot it. A slot
//! counts only while its run is owned, with a live lease, by the process
//! that took it: a killed host's slots come back when its leases run out,
//! without anyone cleaning up first (stale slots are removed by the next
//! taker that finds the limit reached).

use super::{Store, StoreError};
use crate::owner::Owner;
use crate::sql::{Tx, args};

/// Slots of step `name` that still count: their run is owned by the
/// process that took them, with a live lease.
fn live(tx: &Tx<'_>, name: &str, now: i64) -> Result<i64, StoreError> {
    tx.one(
        "counting the step's slots",
        "SELECT count(*) FROM step_slots s JOIN runs r ON r.id = s.run_id
         WHERE s.name = ?1 AND r.owner = s.owner AND r.lease_until_ms >= ?2
           AND r.status = 'running'",
        args![name, now],
        |r| r.get(0),
    )
}

impl Store {
    /// Takes a slot of step `name` (limited to `limit` at once) for the
    /// attempt of step `key` of run `run_id` by `owner`: `false` when the
    /// limit is reached (nothing is taken; try again later).
    ///
    /// # Errors
    /// [`StoreError`] when the transaction fails.
    pub async fn take_step_slot(
        &self,
        name: &str,
        limit: u32,
        run_id: &str,
        key: &str,
        owner: &Owner,
    ) -> Result<bool, StoreError> {
        let (name, run_id, key, owner) = (
            name.to_string(),
            run_id.to_string(),
            key.to_string(),
            owner.to_string(),
        );
        self.writer_for("$step-slots")
            .transact(move |tx| {
                let now = tx.now_ms();
                // Locks the limit's row (PostgreSQL) for the count and the
                // take: two hosts never both see the last free slot.
                tx.exec(
                    "locking the step's limit",
                    "INSERT INTO step_limits (name, concurrency) VALUES (?1, ?2)
                     ON CONFLICT (name) DO UPDATE SET concurrency = excluded.concurrency",
                    args![name, i64::from(limit)],
                )?;
                let mut taken = live(tx, &name, now)?;
                if taken >= i64::from(limit) {
                    tx.exec(
                        "removing the step's stale slots",
                        "DELETE FROM step_slots WHERE name = ?1 AND NOT EXISTS (
                             SELECT 1 FROM runs r WHERE r.id = step_slots.run_id
                               AND r.owner = step_slots.owner AND r.lease_until_ms >= ?2
                               AND r.status = 'running')",
                        args![name, now],
                    )?;
                    taken = live(tx, &name, now)?;
                    if taken >= i64::from(limit) {
                        return Ok(false);
                    }
                }
                tx.exec(
                    "taking a slot of the step",
                    "INSERT INTO step_slots (name, run_id, key, owner, since_ms)
                     VALUES (?1, ?2, ?3, ?4, ?5)
                     ON CONFLICT (name, run_id, key)
                     DO UPDATE SET owner = excluded.owner, since_ms = excluded.since_ms",
                    args![name, run_id, key, owner, now],
                )?;
                Ok(true)
            })
            .await
    }

    /// Gives back the slot of step `name` the attempt of `key` of run
    /// `run_id` took.
    ///
    /// # Errors
    /// [`StoreError`] when the transaction fails (the slot then stops
    /// counting when the run's lease runs out or the run ends).
    pub async fn give_back_step_slot(
        &self,
        name: &str,
        run_id: &str,
        key: &str,
    ) -> Result<(), StoreError> {
        let (name, run_id, key) = (name.to_string(), run_id.to_string(), key.to_string());
        self.writer_for("$step-slots")
            .transact(move |tx| {
                tx.exec(
                    "giving back the step's slot",
                    "DELETE FROM step_slots WHERE name = ?1 AND run_id = ?2 AND key = ?3",
                    args![name, run_id, key],
                )?;
                Ok(())
            })
            .await
    }
}
