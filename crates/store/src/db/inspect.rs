//! Reading runs for people and scripts (`list`, `show`) and acting on them
//! (`cancel`, `fork`).

use std::collections::HashMap;

use crate::sql::{Arg, Tx, args};

use super::rows::{
    RUN_COLUMN_COUNT, RUN_COLUMNS, insert_step, mark_cancelled, owner_is_gone, read_history,
    read_run, run_from_row,
};
use super::{AttemptRecord, Outcome, OutputLine, RunRecord, StepRecord, Store, StoreError};
#[allow(unused_imports)]
use durable_core::views::*;

/// The `FROM` of a query on runs with `tags` (each `(key, value)`), and
/// the conditions to add, their values pushed on `params`. With tags the
/// query starts from the tag index (`run_tags_by_value`) and reads only
/// the runs that have the first tag (`CROSS JOIN` keeps SQLite from
/// walking all runs in time order and testing each); the others are
/// `EXISTS` on the same index.
pub(super) fn tag_filter<'a>(
    tags: &'a [(String, String)],
    params: &mut Vec<&'a dyn Arg>,
) -> (&'static str, String) {
    let mut conditions = String::new();
    for (i, (key, value)) in tags.iter().enumerate() {
        let n = params.len();
        params.push(key);
        params.push(value);
        conditions.push_str(&if i == 0 {
            format!(
                " AND runs.id = t0.run_id AND t0.key = CAST(?{} AS TEXT) AND t0.value = CAST(?{} AS TEXT)",
                n + 1,
                n + 2
            )
        } else {
            format!(
                " AND EXISTS (SELECT 1 FROM run_tags t WHERE t.run_id = runs.id
                              AND t.key = CAST(?{} AS TEXT) AND t.value = CAST(?{} AS TEXT))",
                n + 1,
                n + 2
            )
        });
    }
    let from = if tags.is_empty() {
        "runs"
    } else {
        "run_tags t0 CROSS JOIN runs"
    };
    (from, conditions)
}

impl Store {
    /// Runs matching `filter`, newest first.
    pub async fn list(&self, filter: RunFilter) -> Result<Vec<RunSummary>, StoreError> {
        self
            .read(move |tx| {
                let limit = if filter.limit == 0 { i64::MAX } else { filter.limit as i64 };
                let status = filter.status.map(|s| s.as_str());
                let mut params: Vec<&dyn Arg> =
                    vec![&status, &filter.workflow, &limit, &filter.after, &filter.prefix, &filter.parent];
                let (from, tagged) = tag_filter(&filter.tags, &mut params);
                let rows = tx.all(
                    "listing runs",
                    &format!(
                        "SELECT {RUN_COLUMNS},
                            (SELECT count(*) FROM steps s WHERE s.run_id = runs.id AND s.name NOT LIKE '$%'),
                            (SELECT count(*) FROM steps s WHERE s.run_id = runs.id AND s.name NOT LIKE '$%'
                                                          AND s.drive = runs.drives)
                         FROM {from}
                         WHERE (CAST(?1 AS TEXT) IS NULL OR status = CAST(?1 AS TEXT))
                           AND (CAST(?2 AS TEXT) IS NULL OR workflow = CAST(?2 AS TEXT))
                           AND (CAST(?4 AS TEXT) IS NULL OR (created_at_ms, id) <
                                (SELECT created_at_ms, id FROM runs WHERE id = CAST(?4 AS TEXT)))
                           AND (CAST(?5 AS TEXT) IS NULL
                                OR substr(id, 1, length(CAST(?5 AS TEXT))) = CAST(?5 AS TEXT))
                           AND (CAST(?6 AS TEXT) IS NULL OR parent_id = CAST(?6 AS TEXT))
                           {tagged}
                         ORDER BY created_at_ms DESC, id DESC LIMIT ?3"
                    ),
                    &params,
                    |r| Ok((run_from_row(r)?, r.get::<u32>(RUN_COLUMN_COUNT)?, r.get::<u32>(RUN_COLUMN_COUNT + 1)?)),
                )?;
                let mut out = Vec::new();
                for (run, steps, executed) in rows {
                    out.push(RunSummary {
                        run: run?,
                        steps,
                        executed,
                        recovered: steps - executed,
                    });
                }
                Ok(out)
            })
            .await
    }

    /// Everything about run `run_id`; its guest output too if `with_output`.
    ///
    /// # Errors
    /// [`StoreError::RunNotFound`].
    pub async fn detail(&self, run_id: &str, with_output: bool) -> Result<RunDetail, StoreError> {
        let run_id = run_id.to_string();
        self.read(move |tx| {
            let run =
                read_run(tx, &run_id)?.ok_or_else(|| StoreError::RunNotFound(run_id.clone()))?;
            let mut steps = read_history(tx, &run_id)?;
            steps.sort_by(|a, b| (&a.parent, a.position).cmp(&(&b.parent, b.position)));
            let attempts = read_attempts(tx, &run_id)?;
            let superseded = read_superseded(tx, &run_id)?;
            let events = read_events(tx, &run_id)?;
            let drive_starts = read_drive_starts(tx, &run)?;
            let switches = read_switches(tx, &run_id)?;
            let children = tx
                .all(
                    "reading the run's children",
                    &format!(
                        "SELECT {RUN_COLUMNS} FROM runs WHERE parent_id = ?1
                         ORDER BY created_at_ms, id"
                    ),
                    args![run_id],
                    run_from_row,
                )?
                .into_iter()
                .collect::<Result<Vec<_>, _>>()?;
            let output = if with_output {
                read_output(tx, &run_id)?
            } else {
                Vec::new()
            };
            let queued = match run.status {
                durable_core::records::RunStatus::Queued => super::queues::position(tx, &run_id)?,
                _ => None,
            };
            let tags = super::rows::read_tags(tx, &run_id)?;
            Ok(RunDetail {
                run,
                steps,
                attempts,
                output,
                superseded,
                events,
                drive_starts,
                switches,
                children,
                queued,
                tags,
            })
        })
        .await
    }

    /// Cancels run `run_id`: at once if no live process drives it, else at
    /// its driver's next durable call. A later resume refuses it.
    ///
    /// # Errors
    /// [`StoreError::RunNotFound`]; [`StoreError::AlreadyFinished`].
    pub async fn cancel(&self, run_id: &str) -> Result<Cancelled, StoreError> {
        let run_id = run_id.to_string();
        self.writer_for(&run_id)
            .transact(move |tx| {
                let run = read_run(tx, &run_id)?.ok_or_else(|| StoreError::RunNotFound(run_id.clone()))?;
                if !run.status.is_open() {
                    return Err(StoreError::AlreadyFinished {
                        run: run_id.clone(),
                        status: run.status,
                    });
                }
                let now = tx.now_ms();
                tx.exec(
                    "requesting the cancel",
                    "UPDATE runs SET cancel_requested_at_ms = coalesce(cancel_requested_at_ms, ?2) WHERE id = ?1",
                    args![run_id, now],
                )?;
                let (owner, lease): (Option<String>, Option<i64>) = tx.one(
                    "reading the run's owner",
                    "SELECT owner, lease_until_ms FROM runs WHERE id = ?1 /*FOR UPDATE*/",
                    args![run_id],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )?;
                if owner_is_gone(owner.as_deref(), lease, now) {
                    mark_cancelled(tx, &run_id, now)?;
                    Ok(Cancelled::Now)
                } else {
                    Ok(Cancelled::Requested)
                }
            })
            .await
    }

    /// Creates run `new_id`: the same component, input, seed and frozen
    /// clock as `run_id`, with a copy of its history before step `from_key`
    /// (everything that precedes it in the step tree; not the step itself,
    /// not what follows, not its ancestors, which must run again to reach
    /// it). Driving the new run recovers the copy and executes the rest.
    ///
    /// # Errors
    /// [`StoreError::RunNotFound`], [`StoreError::StepNotFound`],
    /// [`StoreError::RunExists`].
    pub async fn fork(
        &self,
        run_id: &str,
        from_key: &str,
        new_id: &str,
    ) -> Result<RunRecord, StoreError> {
        let (run_id, from_key, new_id) =
            (run_id.to_string(), from_key.to_string(), new_id.to_string());
        self.writer_for(&run_id)
            .transact(move |tx| {
                let run = read_run(tx, &run_id)?.ok_or_else(|| StoreError::RunNotFound(run_id.clone()))?;
                if read_run(tx, &new_id)?.is_some() {
                    return Err(StoreError::RunExists(new_id.clone()));
                }
                let history = read_history(tx, &run_id)?;
                let keep = steps_before(&history, &from_key).ok_or_else(|| StoreError::StepNotFound {
                    run: run_id.clone(),
                    key: from_key.clone(),
                })?;
                tx.exec(
                    "creating the forked run",
                    "INSERT INTO runs (id, workflow, component_digest, input, status, seed, created_at_ms,
                                       clock_ms, drives, forked_from)
                     VALUES (?1, ?2, ?3, ?4, 'running', ?5, ?6, ?7, 0, ?8)",
                    args![
                        new_id,
                        run.workflow,
                        run.component_digest,
                        run.input,
                        run.seed as i64,
                        tx.now_ms(),
                        run.clock_ms,
                        format!("{run_id}/{from_key}")
                    ],
                )?;
                // The fork is found by its source's tags; a `set-tag` it
                // executes again replaces a value.
                let tags = super::rows::read_tags(tx, &run_id)?;
                super::rows::set_tags(tx, &new_id, &tags)?;
                for mut step in keep {
                    // Drive 0: committed before the fork's first drive.
                    step.drive = 0;
                    insert_step(tx, &new_id, &step)?;
                }
                read_run(tx, &new_id)?.ok_or_else(|| StoreError::RunNotFound(new_id.clone()))
            })
            .await
    }
}

/// The records that precede step `key` in the step tree, or `None` when
/// there is no such step. A step's place is the path of positions from the
/// workflow down to it; a record precedes `key` if its path is smaller and
/// is not a prefix of `key`'s (an ancestor runs again to reach the step).
fn steps_before(history: &[StepRecord], key: &str) -> Option<Vec<StepRecord>> {
    let by_key: HashMap<&str, &StepRecord> = history.iter().map(|s| (s.key.as_str(), s)).collect();
    by_key.get(key)?;
    // A key's ancestors come from the key itself (`a#1/b#2/c#1`), not from
    // records: an ancestor that was in flight has none.
    fn chain(key: &str) -> Vec<&str> {
        let mut c: Vec<&str> = key.match_indices('/').map(|(i, _)| &key[..i]).collect();
        c.push(key);
        c
    }
    let position = |k: &str| by_key.get(k).map(|r| r.position);
    let taken: std::collections::HashSet<(&str, u32)> = history
        .iter()
        .map(|r| (r.parent.as_str(), r.position))
        .collect();
    let target = chain(key);
    // An ancestor of the step that was in flight has no record: its place
    // is taken to be the first free position of its context (exact for a
    // sequential workflow; for a batch it keeps no more than is certain).
    let target_position = |i: usize| {
        position(target[i]).or_else(|| {
            let context = if i == 0 { "" } else { target[i - 1] };
            (0..).find(|p| !taken.contains(&(context, *p)))
        })
    };
    let precedes = |other: &str| -> bool {
        let mine = chain(other);
        match mine.iter().zip(&target).position(|(a, b)| a != b) {
            // Siblings in one context at the first difference: keep what
            // came first, if both places are known (the children of a step
            // that was in flight and is not an ancestor of the fork point
            // are not kept: that step runs again).
            Some(i) => matches!(
                (position(mine[i]), target_position(i)),
                (Some(a), Some(b)) if a < b
            ),
            // The step itself, an ancestor (runs again to reach it) or a
            // descendant (runs again with it).
            None => false,
        }
    };
    Some(
        history
            .iter()
            .filter(|s| precedes(&s.key))
            .cloned()
            .collect(),
    )
}

fn read_drive_starts(tx: &Tx<'_>, run: &RunRecord) -> Result<Vec<(u32, i64)>, StoreError> {
    let mut out = tx.all(
        "reading the drives",
        "SELECT drive, started_at_ms FROM drive_starts WHERE run_id = ?1 ORDER BY drive",
        args![run.id],
        |r| Ok((r.get::<u32>(0)?, r.get::<i64>(1)?)),
    )?;
    // A run's first drive is recorded only when it was not the creating
    // one (a fork, an interrupted start): the creating drive began with it.
    if run.drives >= 1 && out.first().is_none_or(|(d, _)| *d > 1) && run.forked_from.is_none() {
        out.insert(0, (1, run.created_at_ms));
    }
    Ok(out)
}

fn read_events(tx: &Tx<'_>, run_id: &str) -> Result<Vec<EventRecord>, StoreError> {
    tx.all(
        "reading events",
        "SELECT seq, name, event_id, payload, sent_at_ms, consumed_by FROM events
         WHERE run_id = ?1 ORDER BY seq",
        args![run_id],
        |r| {
            Ok(EventRecord {
                seq: r.get(0)?,
                name: r.get(1)?,
                event_id: r.get(2)?,
                payload: r.get(3)?,
                sent_at_ms: r.get(4)?,
                consumed_by: r.get(5)?,
            })
        },
    )
}

fn read_switches(tx: &Tx<'_>, run_id: &str) -> Result<Vec<SwitchRecord>, StoreError> {
    tx.all(
        "reading the run's component switches",
        "SELECT drive, at_ms, from_digest, to_digest, forced_from
         FROM component_switches WHERE run_id = ?1 ORDER BY drive",
        args![run_id],
        |r| {
            Ok(SwitchRecord {
                drive: r.get(0)?,
                at_ms: r.get(1)?,
                from_digest: r.get(2)?,
                to_digest: r.get(3)?,
                forced_from: r.get(4)?,
            })
        },
    )
}

fn read_superseded(tx: &Tx<'_>, run_id: &str) -> Result<Vec<Superseded>, StoreError> {
    let rows = tx.all(
        "reading superseded records",
        "SELECT key, outcome, value, drive, superseded_in, superseded_at_ms,
                parent, position, name, input
         FROM superseded_steps WHERE run_id = ?1 ORDER BY superseded_at_ms, key",
        args![run_id],
        |r| {
            Ok((
                (
                    r.get::<String>(0)?,
                    r.get::<String>(1)?,
                    r.get::<String>(2)?,
                    r.get::<u32>(3)?,
                    r.get::<u32>(4)?,
                    r.get::<i64>(5)?,
                ),
                (
                    r.get::<String>(6)?,
                    r.get::<u32>(7)?,
                    r.get::<String>(8)?,
                    r.get::<Option<String>>(9)?,
                ),
            ))
        },
    )?;
    let mut out = Vec::new();
    for (
        (key, kind, value, drive, superseded_in, superseded_at_ms),
        (parent, position, name, input),
    ) in rows
    {
        let outcome = Outcome::from_parts(&kind, value).ok_or_else(|| {
            StoreError::Corrupt(format!("superseded record {key} has outcome {kind:?}"))
        })?;
        out.push(Superseded {
            key,
            parent,
            position,
            name,
            input,
            outcome,
            drive,
            superseded_in,
            superseded_at_ms,
        });
    }
    Ok(out)
}

fn read_attempts(tx: &Tx<'_>, run_id: &str) -> Result<Vec<AttemptRecord>, StoreError> {
    let rows = tx.all(
        "reading attempts",
        "SELECT key, attempt, outcome, value, started_at_ms, finished_at_ms FROM attempts
         WHERE run_id = ?1 ORDER BY key, attempt",
        args![run_id],
        |r| {
            Ok((
                r.get::<String>(0)?,
                r.get::<u32>(1)?,
                r.get::<String>(2)?,
                r.get::<String>(3)?,
                r.get::<i64>(4)?,
                r.get::<i64>(5)?,
            ))
        },
    )?;
    let mut out = Vec::new();
    for (key, attempt, kind, value, started_at_ms, finished_at_ms) in rows {
        let outcome = Outcome::from_parts(&kind, value).ok_or_else(|| {
            StoreError::Corrupt(format!("attempt {attempt} of {key} has outcome {kind:?}"))
        })?;
        out.push(AttemptRecord {
            key,
            attempt,
            outcome,
            started_at_ms,
            finished_at_ms,
        });
    }
    Ok(out)
}

fn read_output(tx: &Tx<'_>, run_id: &str) -> Result<Vec<OutputLine>, StoreError> {
    tx.all(
        "reading guest output",
        "SELECT key, drive, at_ms, kind, line FROM output WHERE run_id = ?1 ORDER BY id",
        args![run_id],
        |r| {
            Ok(OutputLine {
                key: r.get(0)?,
                drive: r.get(1)?,
                at_ms: r.get(2)?,
                kind: r.get(3)?,
                line: r.get(4)?,
            })
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(key: &str, parent: &str, position: u32) -> StepRecord {
        StepRecord {
            key: key.into(),
            parent: parent.into(),
            position,
            name: "n".into(),
            input_digest: "d".into(),
            input: None,
            outcome: Outcome::Ok("1".into()),
            attempts: 1,
            started_at_ms: 0,
            finished_at_ms: 0,
            drive: 1,
            batch: None,
        }
    }

    #[test]
    fn a_fork_keeps_what_precedes_the_step_in_the_tree() {
        let h = vec![
            rec("a#1", "", 0),
            rec("b#1", "", 1),
            rec("b#1/x#1", "b#1", 0),
            rec("b#1/y#1", "b#1", 1),
            rec("b#1/y#1/z#1", "b#1/y#1", 0),
            rec("c#1", "", 2),
        ];
        let keys = |k: &str| -> Vec<String> {
            let mut v: Vec<String> = steps_before(&h, k)
                .expect("found")
                .into_iter()
                .map(|s| s.key)
                .collect();
            v.sort();
            v
        };
        assert!(keys("a#1").is_empty());
        assert_eq!(keys("b#1"), ["a#1"]);
        assert_eq!(keys("b#1/y#1"), ["a#1", "b#1/x#1"]);
        assert_eq!(
            keys("c#1"),
            ["a#1", "b#1", "b#1/x#1", "b#1/y#1", "b#1/y#1/z#1"]
        );
        assert!(steps_before(&h, "nope#1").is_none());
    }

    #[test]
    fn a_fork_under_a_parent_that_was_in_flight_keeps_only_earlier_siblings() {
        // p#1 never committed: its children have records, it has none.
        let h = vec![
            rec("a#1", "", 0),
            rec("p#1/x#1", "p#1", 0),
            rec("p#1/y#1", "p#1", 1),
            rec("p#1/z#1", "p#1", 2),
            rec("c#1", "", 2),
        ];
        let mut keep: Vec<String> = steps_before(&h, "p#1/y#1")
            .expect("found")
            .into_iter()
            .map(|s| s.key)
            .collect();
        keep.sort();
        assert_eq!(keep, ["a#1", "p#1/x#1"]);
        // Forking at a later top-level step cannot place p#1's children
        // (p#1's position is unknown): they are not kept, p#1 runs again.
        let mut keep: Vec<String> = steps_before(&h, "c#1")
            .expect("found")
            .into_iter()
            .map(|s| s.key)
            .collect();
        keep.sort();
        assert_eq!(keep, ["a#1"]);
    }
}
