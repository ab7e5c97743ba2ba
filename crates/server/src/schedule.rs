//! Schedules: a registered workflow with a cron expression gets one run
//! per tick. The run's id is the workflow's name and the tick's time
//! (`nightly@20261127T020000Z`), so a tick is started once however often
//! the server restarts: starting an id that exists changes nothing.

use chrono::{DateTime, TimeZone, Utc};
use durable::runner::LoadedWorkflow;

use super::config::{MAX_CATCH_UP, Missed, Schedule};
use super::dispatch::Dispatcher;

/// The id of the run of `name` for the tick at `at`.
pub fn run_id(name: &str, at: DateTime<Utc>) -> String {
    format!("{name}@{}", at.format("%Y%m%dT%H%M%SZ"))
}

/// The tick a scheduled run's id names.
fn tick_of(name: &str, id: &str) -> Option<DateTime<Utc>> {
    let stamp = id.strip_prefix(name)?.strip_prefix('@')?;
    chrono::NaiveDateTime::parse_from_str(stamp, "%Y%m%dT%H%M%SZ")
        .ok()
        .map(|t| Utc.from_utc_datetime(&t))
}

/// Starts the runs of `workflow`'s schedule, from now until the server
/// stops; first the ticks missed since the last scheduled run, if
/// `missed` says so.
pub fn spawn(
    dispatcher: Dispatcher,
    workflow: LoadedWorkflow,
    schedule: Schedule,
    queue: Option<String>,
) {
    tokio::spawn(async move {
        let name = workflow.name.clone();
        let input = schedule.input.to_string();
        let start = |at: DateTime<Utc>| {
            let (dispatcher, workflow, input, queue) = (
                dispatcher.clone(),
                workflow.clone(),
                input.clone(),
                queue.clone(),
            );
            let id = run_id(&name, at);
            async move {
                // A run with this id that is not of this component is not
                // taken over (its history would be replayed with this
                // workflow's grants): the tick is skipped, loudly.
                match dispatcher.store().run(&id).await {
                    Ok(Some(run)) if run.component_digest != workflow.digest => {
                        tracing::warn!(run = %id, "a run of another component has this tick's id; tick skipped");
                        return;
                    }
                    Ok(Some(_)) => return,
                    Ok(None) => {}
                    Err(e) => {
                        tracing::warn!(run = %id, error = %durable::errors::chain(&e), "tick skipped");
                        return;
                    }
                }
                tracing::info!(run = %id, "scheduled run");
                // A workflow with a queue waits its turn there, ticks too.
                if let Some(queue) = queue {
                    let start = durable::store::QueuedStart {
                        queue,
                        key: None,
                        priority: 0,
                    };
                    match dispatcher
                        .enqueue(&workflow, &id, &input, &Default::default(), start)
                        .await
                    {
                        Ok(_) => dispatcher.admit_soon(),
                        Err(e) => {
                            tracing::warn!(run = %id, error = %durable::errors::chain(&e), "tick skipped")
                        }
                    }
                    return;
                }
                // Whether the tick created it is only for the log: the id
                // makes a tick's run unique.
                let (created, _) = tokio::sync::oneshot::channel();
                dispatcher.start_run(workflow, id, input, Default::default(), created);
            }
        };
        let now = Utc::now();
        if schedule.missed == Missed::Start {
            let last = dispatcher
                .store()
                .last_tick_id(&format!("{name}@"), &run_id(&name, now))
                .await
                .ok()
                .flatten()
                .and_then(|id| tick_of(&name, &id));
            if let Some(last) = last {
                let missed: Vec<DateTime<Utc>> = schedule
                    .cron
                    .after(&last)
                    .take_while(|t| *t <= now)
                    .collect();
                for at in missed.iter().rev().take(MAX_CATCH_UP).rev() {
                    start(*at).await;
                }
            }
        }
        for at in schedule.cron.after(&now) {
            let wait = (at - Utc::now()).to_std().unwrap_or_default();
            tokio::time::sleep(wait).await;
            if dispatcher.is_stopped() {
                return;
            }
            start(at).await;
        }
    });
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};

    #[test]
    fn a_ticks_run_id_names_the_tick_and_reads_back() {
        let at = Utc
            .with_ymd_and_hms(2026, 11, 27, 2, 0, 4)
            .single()
            .expect("a time");
        let id = super::run_id("nightly", at);
        assert_eq!(id, "nightly@20261127T020004Z");
        assert_eq!(super::tick_of("nightly", &id), Some(at));
        assert_eq!(super::tick_of("night", &id), None);
        durable::runner::validate_run_id(&id).expect("a valid run id");
    }
}
