//! `durable check`: crashes a workflow at every point and shows that it
//! still ends the same.
//!
//! The check first drives the run twice without interruption, each in a
//! scratch database, to learn its steps and whether its output is the same
//! every time. Then, for every step, in a fresh scratch database and child
//! processes of this binary (`child.rs`):
//!
//! - *after commit*: the child is killed right after the step commits,
//!   and another resumes the run;
//! - *before commit*: the child is killed after the step returned, before
//!   its outcome is committed (the first outcome is kept from the child's
//!   trace), and the resume runs the step again;
//!
//! plus a run killed twice (two resumes in a row, the second also killed)
//! followed by a resume of the finished run, and a replay of the finished
//! history in this process, which must reproduce the output exactly. Each
//! point is compared with what the uninterrupted run did (`report.rs` says
//! what can break).

mod child;
mod report;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use serde_json::{Value, json};

use durable::json::same_json;
use durable::owner::Owner;
use durable::runner::LoadedWorkflow;
use durable::runner::{Replay, Runtime, Silent};
use durable::store::{Durability, NewRun, Outcome, RunDetail, RunStatus, Store};

use crate::args::{CheckArgs, FaultArgs};
use crate::common::{chain, error};
use crate::exit::ExitCode;
use crate::trace::{self, TraceLine};
use child::{Crash, Ended, Launcher, RUN_ID};
use report::{Call, PointReport, Problem, Report, outcome_json};

/// `durable check`.
pub async fn check(args: CheckArgs) -> ExitCode {
    match check_inner(args).await {
        Ok(code) | Err(code) => code,
    }
}

/// How to make and drive a scratch run.
struct Setup {
    dir: PathBuf,
    launcher: Arc<Launcher>,
    workflow: LoadedWorkflow,
    input: String,
    seed: u64,
    events: Vec<(String, String)>,
}

/// What every point shares.
struct Ctx {
    setup: Setup,
    /// The uninterrupted run.
    base: RunDetail,
    /// Its steps, in commit order.
    steps: Vec<String>,
    /// Whether two uninterrupted runs ended the same: only then is a
    /// crashed run's end compared with theirs.
    reproducible: bool,
}

/// One place (or two) to crash a run.
#[derive(Debug, Clone)]
enum Point {
    AfterCommit(String),
    BeforeCommit(String),
    /// Killed after this step commits, then the resume killed after the
    /// next step that had not committed.
    Twice(String),
}

impl Point {
    fn report(&self) -> PointReport {
        match self {
            Point::AfterCommit(k) => PointReport::new(
                "after_commit",
                Some(k.clone()),
                format!("killed right after {k} committed, then resumed"),
            ),
            Point::BeforeCommit(k) => PointReport::new(
                "before_commit",
                Some(k.clone()),
                format!(
                    "killed after {k} returned, before its outcome was committed, then resumed"
                ),
            ),
            Point::Twice(a) => PointReport::new(
                "crash_twice",
                Some(a.clone()),
                format!(
                    "killed after {a} committed, resumed, then resumed once more when finished"
                ),
            ),
        }
    }
}

async fn check_inner(args: CheckArgs) -> Result<ExitCode, ExitCode> {
    let input = crate::driving::input_text(
        args.input.as_deref(),
        args.input_file.as_deref(),
        args.drive.max_input_bytes,
    )?;
    let events = parse_events(&args.event)?;
    let scratch = tempfile::Builder::new()
        .prefix("durable-check-")
        .tempdir()
        .map_err(|e| {
            error(format_args!("cannot make a scratch directory: {e}"));
            ExitCode::Failure
        })?;
    let dir = scratch.path().to_path_buf();
    let mut config = crate::driving::config(
        &durable::store::Location::File(dir.join("base-1.db")),
        &args.drive,
        &FaultArgs::default(),
        false,
    )?;
    config.observer = Arc::new(Silent);
    let engine = crate::driving::engine(&config)?;
    let workflow = crate::common::load(&engine, &args.component)?;
    let launcher = Launcher::new(&args.drive, config.cache_dir.as_deref()).map_err(|e| {
        error(format_args!("cannot find the durable binary: {e}"));
        ExitCode::Failure
    })?;
    let launcher = Arc::new(launcher);
    let started = Instant::now();
    let seed = {
        let mut b = [0u8; 8];
        let _ = getrandom::fill(&mut b);
        u64::from_le_bytes(b) >> 1
    };
    let setup = Setup {
        dir,
        launcher,
        workflow,
        input,
        seed,
        events,
    };

    // The uninterrupted run, twice, one after the other: the second sees
    // what the first left in granted directories and services, as a resume
    // would. (Run at once, both could see the same state and end alike,
    // hiding an output that depends on it.)
    let (base, base_trace) = setup.uninterrupted("base-1").await?;
    let (again, _) = setup.uninterrupted("base-2").await?;
    let reproducible = same_end(&base, &again);
    let steps: Vec<String> = executed(&base_trace);
    let mut notes = Vec::new();
    if !reproducible {
        notes.push(format!(
            "two uninterrupted runs ended differently ({} and {}): the output depends on the clock, randomness or the outside world, so the ends of crashed runs are not compared with it (everything else is)",
            end_of(&base),
            end_of(&again)
        ));
    }
    let ctx = Ctx {
        setup,
        base,
        steps: steps.clone(),
        reproducible,
    };

    let mut points: Vec<Point> = Vec::new();
    for k in &steps {
        points.push(Point::AfterCommit(k.clone()));
        points.push(Point::BeforeCommit(k.clone()));
    }
    // A child workflow is checked like a step: a kill right after its run
    // was created (before the parent records anything of it), and right
    // after the parent recorded its end. (Its own steps are among `steps`:
    // the process that drives the parent drives its children.)
    for s in &ctx.base.steps {
        if s.parent.is_empty() && s.name.starts_with(durable::history::CHILD_PREFIX) {
            points.push(Point::AfterCommit(format!("{}@started", s.key)));
            points.push(Point::AfterCommit(s.key.clone()));
        }
    }
    let total = points.len();
    let points = sample(points, args.max_points);
    let checked = points.len();
    let mut all = points;
    if steps.len() >= 2 {
        all.push(Point::Twice(steps[(steps.len() - 1) / 3].clone()));
    }

    let jobs = args
        .jobs
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()))
        .max(1);
    let bar = progress(all.len() as u64 + 1, args.json);
    let ctx = Arc::new(ctx);
    let limit = Arc::new(tokio::sync::Semaphore::new(jobs));
    let mut set = tokio::task::JoinSet::new();
    for (i, point) in all.into_iter().enumerate() {
        let (ctx, limit, bar) = (ctx.clone(), limit.clone(), bar.clone());
        set.spawn(async move {
            let _permit = limit.acquire_owned().await;
            let report = ctx.check_point(i, &point).await;
            if let Some(bar) = &bar {
                bar.inc(1);
            }
            (i, report)
        });
    }
    let mut reports: Vec<(usize, PointReport)> = Vec::new();
    while let Some(joined) = set.join_next().await {
        match joined {
            Ok(r) => reports.push(r),
            Err(e) => {
                error(format_args!("internal error: a check panicked: {e}"));
                return Err(ExitCode::Failure);
            }
        }
    }
    reports.sort_by_key(|(i, _)| *i);
    let mut reports: Vec<PointReport> = reports.into_iter().map(|(_, r)| r).collect();
    let replay = ctx.replay(config, engine).await;
    if let Some(bar) = &bar {
        bar.inc(1);
        bar.finish_and_clear();
    }
    reports.push(replay?);

    let problems = reports.iter().map(|r| r.problems.len()).sum();
    let report = Report {
        component: args.component.display().to_string(),
        digest: ctx.setup.workflow.digest.clone(),
        ok: problems == 0,
        baseline: end_of(&ctx.base),
        steps,
        points_total: total,
        points_checked: checked,
        points: reports,
        problems,
        notes,
        elapsed_ms: started.elapsed().as_millis() as u64,
    };
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).unwrap_or_default()
        );
    } else {
        print!("{}", report.text());
    }
    Ok(if report.ok {
        ExitCode::Success
    } else {
        ExitCode::RunFailed
    })
}

impl Setup {
    /// A fresh scratch database holding the run, not started, with the
    /// events already sent.
    async fn prepare(&self, name: &str) -> Result<PathBuf, String> {
        let db = self.dir.join(format!("{name}.db"));
        let store = Store::open_with(&db, Durability::ProcessCrash)
            .await
            .map_err(|e| chain(&e))?;
        let owner = Owner::current();
        let made = async {
            store
                .claim_run(
                    NewRun {
                        id: RUN_ID.into(),
                        workflow: self.workflow.name.clone(),
                        component_digest: self.workflow.digest.clone(),
                        component: self.workflow.bytes.clone(),
                        input: self.input.clone(),
                        seed: self.seed,
                        tags: Default::default(),
                        trace_parent: None,
                    },
                    &owner,
                )
                .await?;
            store.release(RUN_ID, &owner).await?;
            for (event, payload) in &self.events {
                store.send_event(RUN_ID, event, None, payload).await?;
            }
            Ok::<(), durable::store::StoreError>(())
        }
        .await;
        store.close().await;
        made.map_err(|e| chain(&e))?;
        Ok(db)
    }

    /// Runs a child on `db`, waited for on a blocking thread.
    async fn child(&self, db: &Path, trace: &Path, crash: Crash) -> Result<Ended, String> {
        let (launcher, db, trace) = (self.launcher.clone(), db.to_path_buf(), trace.to_path_buf());
        tokio::task::spawn_blocking(move || launcher.resume(&db, &trace, &crash))
            .await
            .map_err(|e| format!("a check panicked: {e}"))?
            .map_err(|e| format!("cannot start durable: {e}"))
    }

    /// The uninterrupted run in scratch database `name`: its detail and
    /// trace. A run that cannot finish here makes the whole check
    /// impossible (exit 2).
    async fn uninterrupted(&self, name: &str) -> Result<(RunDetail, Vec<TraceLine>), ExitCode> {
        let fail = |m: String| {
            error(m);
            ExitCode::Usage
        };
        let db = self.prepare(name).await.map_err(fail)?;
        let trace_path = self.dir.join(format!("{name}.trace"));
        let ended = self
            .child(&db, &trace_path, Crash::Never)
            .await
            .map_err(fail)?;
        let detail = read(&db).await.map_err(fail)?;
        if let Some(why) = unfinished(&detail) {
            return Err(fail(format!(
                "the uninterrupted run did not finish, so there is nothing to compare with: {why}\n{}",
                ended.said()
            )));
        }
        Ok((detail, trace::read(&trace_path)))
    }
}

impl Ctx {
    /// Crashes a run at `point`, resumes it, and compares.
    async fn check_point(&self, i: usize, point: &Point) -> PointReport {
        let started = Instant::now();
        let mut report = point.report();
        if let Err(message) = self.crash_and_resume(i, point, &mut report).await {
            report.problem(Problem::ResumeFailed {
                exit_code: None,
                message,
            });
        }
        report.elapsed_ms = started.elapsed().as_millis() as u64;
        report
    }

    async fn crash_and_resume(
        &self,
        i: usize,
        point: &Point,
        report: &mut PointReport,
    ) -> Result<(), String> {
        let setup = &self.setup;
        let db = setup.prepare(&format!("p{i}")).await?;
        let trace_at = |n: usize| setup.dir.join(format!("p{i}-{n}.trace"));
        let mut crashes = match point {
            Point::AfterCommit(k) => vec![Crash::AfterCommit(k.clone())],
            Point::BeforeCommit(k) => vec![Crash::BeforeCommit(k.clone())],
            Point::Twice(a) => vec![Crash::AfterCommit(a.clone())],
        };
        // What had committed before each resume.
        let mut committed_before: Vec<BTreeSet<String>> = Vec::new();
        let mut n = 0;
        while let Some(crash) = crashes.get(n).cloned() {
            n += 1;
            let ended = setup.child(&db, &trace_at(n), crash.clone()).await?;
            if !ended.killed && ended.code != Some(0) {
                // Not a crash of ours: the child failed.
                report.problem(Problem::ResumeFailed {
                    exit_code: ended.code,
                    message: ended.said(),
                });
                return Ok(());
            }
            if !ended.killed {
                let key = match &crash {
                    Crash::AfterCommit(k) | Crash::BeforeCommit(k) => k.clone(),
                    Crash::Never => String::new(),
                };
                report.notes.push(format!(
                    "the run did not reach {key} this time (it ended without executing it), so there was no crash"
                ));
                committed_before.push(BTreeSet::new());
                break;
            }
            let detail = read(&db).await?;
            if let Crash::AfterCommit(k) = crash
                && let Some(note) = self.batch_note(&detail, &k)
            {
                report.notes.push(note);
            }
            let committed: BTreeSet<String> = detail.steps.iter().map(|s| s.key.clone()).collect();
            // The second crash of a double crash: after the next step the
            // first left uncommitted.
            if let Point::Twice(a) = point
                && n == 1
            {
                let next = self
                    .steps
                    .iter()
                    .skip_while(|k| *k != a)
                    .find(|k| !committed.contains(*k));
                match next {
                    Some(b) => {
                        report.label = format!(
                            "killed after {a} committed, the resume killed after {b} committed, resumed again, then resumed once more when finished"
                        );
                        crashes.push(Crash::AfterCommit(b.clone()));
                    }
                    None => report
                        .notes
                        .push("every step had committed at the first kill: no second crash".into()),
                }
            }
            committed_before.push(committed);
        }
        // Resume to the end.
        let last = n + 1;
        let ended = setup.child(&db, &trace_at(last), Crash::Never).await?;
        let detail = read(&db).await?;
        if let Some(why) = unfinished(&detail) {
            report.problem(Problem::ResumeFailed {
                exit_code: ended.code,
                message: format!("{why}\n{}", ended.said()),
            });
            return Ok(());
        }
        if self.reproducible && !same_end(&detail, &self.base) {
            report.problem(Problem::OutputDiffers {
                expected: end_of(&self.base),
                got: end_of(&detail),
            });
        }
        // A step committed before a crash must not run after it (unless
        // its record was provisional, under a parent that had not
        // committed, and was superseded: that is reported below).
        let superseded: BTreeSet<&str> = detail.superseded.iter().map(|s| s.key.as_str()).collect();
        for (j, committed) in committed_before.iter().enumerate() {
            for later in (j + 2)..=last {
                for key in executed(&trace::read(&trace_at(later))) {
                    if committed.contains(&key) && !superseded.contains(key.as_str()) {
                        report.problem(Problem::RanAgain { step: key });
                    }
                }
            }
        }
        // A step whose outcome was thrown away must return the same again.
        if let Point::BeforeCommit(k) = point {
            let first = trace::read(&trace_at(1))
                .into_iter()
                .find(|l| l.event == "uncommitted" && &l.key == k)
                .and_then(|l| l.outcome());
            let second = trace::read(&trace_at(last))
                .into_iter()
                .find(|l| l.event == "executed" && &l.key == k)
                .and_then(|l| l.outcome());
            if let (Some(first), Some(second)) = (first, second)
                && !same_outcome(&first, &second)
            {
                report.problem(Problem::NotIdempotent {
                    step: k.clone(),
                    first: outcome_json(&first),
                    second: outcome_json(&second),
                });
            }
        }
        // A step body that ran again must make the same nested calls (what
        // the uninterrupted run itself moved aside, a retried body's, is
        // not the crash's doing).
        let moved_anyway: BTreeSet<(&str, u32)> = self
            .base
            .superseded
            .iter()
            .map(|s| (s.parent.as_str(), s.position))
            .collect();
        for old in detail.superseded.iter().filter(|s| {
            !s.parent.is_empty() && !moved_anyway.contains(&(s.parent.as_str(), s.position))
        }) {
            let now = detail
                .steps
                .iter()
                .find(|s| s.parent == old.parent && s.position == old.position)
                .map(|s| Call {
                    key: s.key.clone(),
                    input: s.input.as_deref().map(durable_api_model::parse_json),
                });
            report.problem(Problem::NestedCallsChanged {
                step: old.parent.clone(),
                position: old.position,
                recorded: Call {
                    key: old.key.clone(),
                    input: old.input.as_deref().map(durable_api_model::parse_json),
                },
                now,
            });
        }
        // A finished run resumed again runs nothing and ends the same.
        if let Point::Twice(_) = point {
            let trace_path = trace_at(last + 1);
            let ended = setup.child(&db, &trace_path, Crash::Never).await?;
            let again = read(&db).await?;
            for key in executed(&trace::read(&trace_path)) {
                report.problem(Problem::RanAgain { step: key });
            }
            if ended.code != Some(0) && detail.run.status == RunStatus::Succeeded
                || !same_end(&again, &detail)
            {
                report.problem(Problem::ResumeFailed {
                    exit_code: ended.code,
                    message: format!(
                        "resuming the finished run did not report its end as it was: {}",
                        ended.said()
                    ),
                });
            }
        }
        Ok(())
    }

    /// For a step of a `parallel` batch: how many of the batch's branches
    /// had committed when the child was killed.
    fn batch_note(&self, after_kill: &RunDetail, key: &str) -> Option<String> {
        let rec = self.base.steps.iter().find(|s| s.key == key)?;
        let batch = rec.batch?;
        let of = |d: &RunDetail| {
            d.steps
                .iter()
                .filter(|s| s.parent == rec.parent && s.batch == Some(batch))
                .count()
        };
        Some(format!(
            "{} of the {} steps of its parallel batch had committed at the kill",
            of(after_kill),
            of(&self.base)
        ))
    }

    /// Replays the uninterrupted run's finished history in this process:
    /// every call answered from the record, nothing executed.
    async fn replay(
        &self,
        config: durable::runner::RuntimeConfig,
        engine: durable::runner::Engine,
    ) -> Result<PointReport, ExitCode> {
        let started = Instant::now();
        let mut report = PointReport::new(
            "replay",
            None,
            "replayed the finished history, executing nothing".into(),
        );
        let store = Store::open_with(&self.setup.dir.join("base-1.db"), Durability::ProcessCrash)
            .await
            .map_err(|e| {
                error(chain(&e));
                ExitCode::Failure
            })?;
        let rt = Runtime::with_engine(engine, store.clone(), config);
        let replayed = rt.replay(&self.setup.workflow, RUN_ID).await;
        drop(rt);
        store.close().await;
        let expected = end_of(&self.base);
        match replayed {
            Ok(Replay::Ended { result, .. }) => {
                let exact = match (&result, &self.base.run.status) {
                    (Ok(out), RunStatus::Succeeded) => Some(out) == self.base.run.output.as_ref(),
                    (Err(e), RunStatus::Failed) => Some(e) == self.base.run.error.as_ref(),
                    _ => false,
                };
                if !exact {
                    report.problem(Problem::ReplayOutputDiffers {
                        expected,
                        got: match result {
                            Ok(out) => json!({"status": "succeeded", "output": durable_api_model::parse_json(&out)}),
                            Err(e) => json!({"status": "failed", "error": e}),
                        },
                    });
                }
            }
            Ok(Replay::Trapped { message, .. }) => {
                let got = format!("the workflow trapped: {message}");
                if self.base.run.status != RunStatus::Failed
                    || self.base.run.error.as_deref() != Some(got.as_str())
                {
                    report.problem(Problem::ReplayOutputDiffers {
                        expected,
                        got: json!({"status": "failed", "error": got}),
                    });
                }
            }
            Ok(Replay::Reached { key, .. }) => {
                report.problem(Problem::ReplayIncomplete { stopped_at: key })
            }
            Ok(Replay::Diverged { divergence, .. }) => report.problem(Problem::ReplayDiverged {
                position: divergence.position,
                message: divergence.to_string(),
            }),
            Err(e) => report.problem(Problem::ResumeFailed {
                exit_code: None,
                message: format!("the replay failed: {}", chain(&e)),
            }),
        }
        report.elapsed_ms = started.elapsed().as_millis() as u64;
        Ok(report)
    }
}

/// Reads a scratch database's run.
async fn read(db: &Path) -> Result<RunDetail, String> {
    let store = Store::open_with(db, Durability::ProcessCrash)
        .await
        .map_err(|e| chain(&e))?;
    let detail = store.detail(RUN_ID, false).await;
    store.close().await;
    detail.map_err(|e| chain(&e))
}

/// Why a run has not finished, if it has not.
fn unfinished(d: &RunDetail) -> Option<String> {
    match d.run.status {
        RunStatus::Succeeded | RunStatus::Failed => None,
        RunStatus::Waiting => Some(match &d.run.wait_event {
            Some(name) => format!(
                "it waits for event {name:?}, which the check was not given: pass it with --event {name}=JSON (once per await)"
            ),
            None => "it waits".into(),
        }),
        RunStatus::Cancelled => Some("it was cancelled".into()),
        RunStatus::Running => Some("it stopped unfinished".into()),
        RunStatus::Queued => Some("it is queued".into()),
    }
}

/// How a run ended, as reports show it.
fn end_of(d: &RunDetail) -> Value {
    let r = &d.run;
    match r.status {
        RunStatus::Succeeded => json!({
            "status": "succeeded",
            "output": r.output.as_deref().map(durable_api_model::parse_json),
        }),
        _ => json!({ "status": r.status.as_str(), "error": r.error }),
    }
}

/// Whether two runs ended the same (output JSON compared as values).
fn same_end(a: &RunDetail, b: &RunDetail) -> bool {
    a.run.status == b.run.status
        && match (&a.run.output, &b.run.output) {
            (Some(x), Some(y)) => same_json(x, y),
            (x, y) => x == y,
        }
        && a.run.error == b.run.error
}

fn same_outcome(a: &Outcome, b: &Outcome) -> bool {
    match (a, b) {
        (Outcome::Ok(x), Outcome::Ok(y)) => same_json(x, y),
        _ => a == b,
    }
}

/// The steps a trace says were executed, in commit order.
fn executed(trace: &[TraceLine]) -> Vec<String> {
    trace
        .iter()
        .filter(|l| l.event == "executed")
        .map(|l| l.key.clone())
        .collect()
}

/// At most `max` of `points`, spread evenly (first and last kept).
fn sample<T>(points: Vec<T>, max: Option<usize>) -> Vec<T> {
    let n = points.len();
    let Some(max) = max.filter(|&m| m < n) else {
        return points;
    };
    if max == 0 {
        return Vec::new();
    }
    let keep: BTreeSet<usize> = (0..max)
        .map(|i| if max == 1 { 0 } else { i * (n - 1) / (max - 1) })
        .collect();
    points
        .into_iter()
        .enumerate()
        .filter(|(i, _)| keep.contains(i))
        .map(|(_, p)| p)
        .collect()
}

/// A progress bar on a terminal, none otherwise.
fn progress(len: u64, json: bool) -> Option<indicatif::ProgressBar> {
    if json || !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        return None;
    }
    let bar = indicatif::ProgressBar::new(len);
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "checking {bar:30} {pos}/{len} crash points, {elapsed}",
    ) {
        bar.set_style(style);
    }
    Some(bar)
}

/// `--event NAME=JSON`, in the order given.
fn parse_events(given: &[String]) -> Result<Vec<(String, String)>, ExitCode> {
    let mut out = Vec::new();
    for e in given {
        let Some((name, payload)) = e.split_once('=') else {
            error(format_args!("--event {e:?}: expected NAME=JSON"));
            return Err(ExitCode::Usage);
        };
        if let Err(err) = serde_json::from_str::<serde::de::IgnoredAny>(payload) {
            error(format_args!(
                "--event {name}: the payload is not valid JSON: {err}"
            ));
            return Err(ExitCode::Usage);
        }
        out.push((name.to_string(), payload.to_string()));
    }
    Ok(out)
}
