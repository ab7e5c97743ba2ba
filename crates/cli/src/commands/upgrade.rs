//! New code for runs in flight: `durable upgrade-check NEW.wasm` replays
//! their histories against a new component without executing anything, and
//! `durable resume --component NEW.wasm RUN...` switches the compatible ones
//! to it (the divergent ones only with `--force`).

use std::path::Path;
use std::sync::Arc;

use serde::Serialize;

use durable::runner::LoadedWorkflow;
use durable::runner::{Replay, Runtime, RuntimeConfig, Silent};
use durable::store::{Location, Store};

use crate::args::{ResumeArgs, UpgradeCheckArgs};
use crate::common::{chain, error};
use crate::driving::{abandoned, interruptible, report_line, report_one, to_end};
use crate::exit::ExitCode;

/// What replaying one run against the new component found.
#[derive(Debug, Serialize)]
struct Checked {
    id: String,
    /// The run's status.
    status: String,
    compatible: bool,
    /// Calls of the workflow answered from the record.
    replayed: u32,
    /// Calls of the workflow the history holds.
    recorded: u32,
    /// The first call the new code makes that has no record (null: it
    /// replays to its end).
    next: Option<String>,
    divergence: Option<Diverged>,
    /// Why the run could not be replayed at all, or the trap of the new
    /// code on its history.
    error: Option<String>,
    /// True when there is no such run.
    #[serde(skip)]
    missing: bool,
}

/// Where the new code leaves the history.
#[derive(Debug, Serialize)]
struct Diverged {
    /// The position among the workflow's calls.
    position: u32,
    /// The recorded call there (null: none).
    recorded: Option<String>,
    /// The call the new code makes there (null: it ended without one).
    now: Option<String>,
    /// What differs, in words.
    what: String,
    /// The whole divergence message, as a resume would report it.
    message: String,
}

/// The report of `upgrade-check --json`.
#[derive(Debug, Serialize)]
struct Report {
    component: String,
    digest: String,
    compatible: bool,
    runs: Vec<Checked>,
}

/// Replays `run_id` against `workflow`.
async fn check_run(rt: &Runtime, workflow: &LoadedWorkflow, run_id: &str) -> Checked {
    let mut c = Checked {
        id: run_id.to_string(),
        status: String::new(),
        compatible: false,
        replayed: 0,
        recorded: 0,
        next: None,
        divergence: None,
        error: None,
        missing: false,
    };
    match rt.store().run(run_id).await {
        Ok(Some(run)) => c.status = run.status.as_str().into(),
        Ok(None) => {
            c.error = Some(format!("there is no run {run_id:?}"));
            c.missing = true;
            return c;
        }
        Err(e) => {
            c.error = Some(chain(&e));
            return c;
        }
    }
    match rt.replay(workflow, run_id).await {
        Ok(Replay::Ended { progress, .. }) => {
            c.compatible = true;
            (c.replayed, c.recorded) = (progress.replayed, progress.recorded);
        }
        Ok(Replay::Reached { key, progress }) => {
            c.compatible = true;
            (c.replayed, c.recorded) = (progress.replayed, progress.recorded);
            c.next = Some(key);
        }
        Ok(Replay::Trapped { message, progress }) => {
            (c.replayed, c.recorded) = (progress.replayed, progress.recorded);
            c.error = Some(format!(
                "the new code trapped after replaying {} of {} recorded calls: {message}",
                progress.replayed, progress.recorded
            ));
        }
        Ok(Replay::Diverged {
            divergence,
            progress,
        }) => {
            (c.replayed, c.recorded) = (progress.replayed, progress.recorded);
            c.divergence = Some(Diverged {
                position: divergence.position,
                recorded: divergence.recorded.as_ref().map(|r| r.key.clone()),
                now: divergence.requested.as_ref().map(|r| r.key.clone()),
                what: divergence.what(),
                message: divergence.to_string(),
            });
        }
        Err(e) => c.error = Some(chain(&e)),
    }
    c
}

impl Checked {
    fn line(&self) -> String {
        if let Some(e) = &self.error {
            return format!("{}: could not be checked: {e}", self.id);
        }
        if let Some(d) = &self.divergence {
            return format!(
                "{} ({}): DIVERGENT at position {} of the workflow: {}",
                self.id, self.status, d.position, d.what
            );
        }
        match &self.next {
            Some(next) => format!(
                "{} ({}): compatible: replayed {} of {} recorded calls; the new code goes on with {next}",
                self.id, self.status, self.replayed, self.recorded
            ),
            None => format!(
                "{} ({}): compatible: replayed all {} recorded calls to the workflow's end",
                self.id, self.status, self.recorded
            ),
        }
    }
}

/// Loads component `path` and makes a runtime on `store` for it.
fn runtime(
    path: &Path,
    store: &Store,
    config: RuntimeConfig,
) -> Result<(Runtime, LoadedWorkflow), ExitCode> {
    let engine = crate::driving::engine(&config)?;
    let workflow = crate::common::load(&engine, path)?;
    Ok((
        Runtime::with_engine(engine, store.clone(), config),
        workflow,
    ))
}

/// Opens the database as it is: an older schema is refused, not upgraded
/// (upgrade-check writes nothing).
async fn open_unchanged(db: &Location) -> Result<Store, ExitCode> {
    if !db.may_exist() {
        error(format_args!("there is no database at {}", db));
        return Err(ExitCode::NotFound);
    }
    Store::open_unchanged(db).await.map_err(|e| {
        error(chain(&e));
        ExitCode::of_store(&e)
    })
}

/// `durable upgrade-check`.
pub async fn upgrade_check(db: &Location, args: UpgradeCheckArgs) -> ExitCode {
    match upgrade_check_inner(db, args).await {
        Ok(code) | Err(code) => code,
    }
}

async fn upgrade_check_inner(db: &Location, args: UpgradeCheckArgs) -> Result<ExitCode, ExitCode> {
    let store = open_unchanged(db).await?;
    let config = RuntimeConfig {
        cache_dir: args
            .cache_dir
            .clone()
            .or_else(durable::runner::Engine::default_cache_dir),
        observer: Arc::new(Silent),
        ..RuntimeConfig::default()
    };
    let (rt, workflow) = runtime(&args.component, &store, config)?;
    let ids = if args.runs.is_empty() {
        store
            .unfinished_runs()
            .await
            .map_err(|e| {
                error(chain(&e));
                ExitCode::of_store(&e)
            })?
            .into_iter()
            .map(|r| r.id)
            .collect()
    } else {
        args.runs.clone()
    };
    let mut runs = Vec::new();
    for id in &ids {
        runs.push(check_run(&rt, &workflow, id).await);
    }
    drop(rt);
    store.close().await;
    let report = Report {
        component: args.component.display().to_string(),
        digest: workflow.digest.clone(),
        compatible: runs.iter().all(|r| r.compatible),
        runs,
    };
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).unwrap_or_default()
        );
    } else {
        println!(
            "upgrade-check {} (component {}) against {} run(s)",
            report.component,
            report.digest.get(..12).unwrap_or(&report.digest),
            report.runs.len()
        );
        for r in &report.runs {
            println!("  {}", r.line());
        }
        let bad = report.runs.iter().filter(|r| !r.compatible).count();
        if bad == 0 {
            println!(
                "every run can be resumed with the new component: durable resume --component {} RUN_ID",
                report.component
            );
        } else {
            println!(
                "{bad} run(s) cannot: they would stop with a divergence (durable resume --component ... --force supersedes their history from the divergence on)"
            );
        }
    }
    Ok(if report.compatible {
        ExitCode::Success
    } else if report.runs.iter().any(|r| r.missing) {
        ExitCode::NotFound
    } else {
        ExitCode::RunFailed
    })
}

/// `durable resume --component NEW RUN_ID...`: switches runs to NEW.
pub async fn resume_switching(db: &Location, args: ResumeArgs, new: &Path) -> ExitCode {
    if !db.may_exist() {
        error(format_args!("there is no database at {}", db));
        return ExitCode::NotFound;
    }
    let store = match crate::common::open(db, &args.drive).await {
        Ok(s) => s,
        Err(code) => return code,
    };
    let single = args.ids.len() == 1;
    let config = match crate::driving::config(db, &args.drive, &args.faults, !single) {
        Ok(c) => c,
        Err(code) => return code,
    };
    // A replay prints nothing, whatever the observer.
    let (rt, workflow) = match runtime(new, &store, config) {
        Ok(r) => r,
        Err(code) => return code,
    };
    let mut worst = ExitCode::Success;
    for id in &args.ids {
        let checked = check_run(&rt, &workflow, id).await;
        let forced_from = match (&checked.divergence, &checked.error) {
            (_, Some(e)) => {
                error(format_args!("run {id} was not switched: {e}"));
                worst = worst.max(if checked.missing {
                    ExitCode::NotFound
                } else {
                    ExitCode::RunFailed
                });
                continue;
            }
            (Some(d), None) => {
                let superseded = recorded_from(&store, id, d.position).await;
                if !args.force {
                    error(format_args!(
                        "run {id} was not switched: it diverges from the new component at position {} of the workflow: {}. With --force, the workflow's records from position {} on ({superseded}) would be superseded (kept aside, listed by `durable show`) and the new code would run from there: the steps it calls there run again, even those that had run",
                        d.position, d.what, d.position
                    ));
                    worst = worst.max(ExitCode::Divergence);
                    continue;
                }
                error(format_args!(
                    "run {id}: forcing the switch to component {} over a divergence at position {} ({}): superseding the workflow's records from position {} on ({superseded}), so that the new code runs from there",
                    workflow.digest.get(..12).unwrap_or(&workflow.digest),
                    d.position,
                    d.what,
                    d.position
                ));
                Some(d.position)
            }
            (None, None) => {
                eprintln!(
                    "durable: run {id}: switching to component {} (its history replays: {} of {} calls)",
                    workflow.digest.get(..12).unwrap_or(&workflow.digest),
                    checked.replayed,
                    checked.recorded
                );
                None
            }
        };
        let work =
            async { to_end(&rt, id, rt.resume_with(id, &workflow, forced_from).await).await };
        let Some(result) = interruptible(&rt, work).await else {
            drop(rt);
            store.close().await;
            return abandoned(std::slice::from_ref(id));
        };
        let code = if single {
            report_one(id, result)
        } else {
            report_line(id, result)
        };
        worst = worst.max(code);
    }
    drop(rt);
    store.close().await;
    worst
}

/// The keys of the workflow's records from `position` on, for a message.
async fn recorded_from(store: &Store, run_id: &str, position: u32) -> String {
    match store.detail(run_id, false).await {
        Ok(d) => {
            let keys: Vec<String> = d
                .steps
                .iter()
                .filter(|s| s.parent.is_empty() && s.position >= position)
                .map(|s| s.key.clone())
                .collect();
            if keys.is_empty() {
                "none".into()
            } else {
                keys.join(", ")
            }
        }
        Err(e) => format!("unknown: {}", chain(&e)),
    }
}
