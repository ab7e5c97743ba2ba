//! `durable.toml`: the workflows a server knows by name, each with its
//! component, its own grants and limits, and maybe a schedule.
//!
//! ```toml
//! [workflows.onboarding]
//! component = "onboarding.wasm"          # relative to this file
//! allow_http = ["https://hr.example.com"] # added to the command line's grants
//! max_attempts = 5                       # instead of the command line's
//!
//! [workflows.nightly-report]
//! component = "report.wasm"
//! schedule = "0 0 2 * * *"               # sec min hour day month weekday (UTC)
//! input = { region = "eu" }
//! missed = "start"                       # or "skip"
//!
//! [workflows.charge]
//! component = "charge.wasm"
//! queue = "payments"                     # every run of it waits its turn there
//!
//! [queues.payments]
//! concurrency = 10                       # across every host on the database
//! concurrency_key = "/customer"          # a JSON pointer into the input
//! per_key_concurrency = 1                # one run per customer at a time
//! rate = "100/1m"                        # admissions, as a token bucket
//! burst = 10                             # of 10 (1 unless given)
//!
//! [limits.steps.charge]
//! concurrency = 5                        # attempts of step `charge` at once, all hosts
//! ```
//!
//! Tracing: a top-level `otlp_endpoint = "http://localhost:4318"` sends
//! spans there (`--otlp-endpoint` wins).
//!
//! Retention: a top-level `retention = "90d"` (before the first table) is
//! the default for every workflow's finished runs; `retention = "30d"` in a
//! `[workflows.NAME]` table is that workflow's own.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::Deserialize;

use durable::settings::DriveSettings;
use durable::store::{QueueConfig, Rate};

/// The file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    /// How long finished runs are kept, unless their workflow says.
    retention: Option<String>,
    /// Where spans go (an OTLP/HTTP base URL), unless the command line says.
    otlp_endpoint: Option<String>,
    #[serde(default)]
    workflows: BTreeMap<String, Entry>,
    #[serde(default)]
    queues: BTreeMap<String, QueueEntry>,
    #[serde(default)]
    limits: LimitsEntry,
}

/// The `[limits]` table.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct LimitsEntry {
    #[serde(default)]
    steps: BTreeMap<String, StepLimitEntry>,
}

/// One `[limits.steps.NAME]` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StepLimitEntry {
    concurrency: u32,
}

/// One `[queues.NAME]` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct QueueEntry {
    concurrency: Option<u32>,
    concurrency_key: Option<String>,
    per_key_concurrency: Option<u32>,
    rate: Option<String>,
    burst: Option<u32>,
}

/// What `durable.toml` defines.
#[derive(Debug, Default)]
pub struct Config {
    /// The workflows, by name.
    pub workflows: Vec<Workflow>,
    /// The queues (set in the database on every start).
    pub queues: Vec<QueueConfig>,
    /// Most attempts of a step name at once, across every host.
    pub step_limits: Vec<(String, u32)>,
    /// The default retention of finished runs, in ms.
    pub retention_ms: Option<i64>,
    /// Where spans go.
    pub otlp_endpoint: Option<durable_otlp::Endpoint>,
}

/// One `[workflows.NAME]` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    /// The component, relative to the file.
    pub component: PathBuf,
    #[serde(default)]
    allow_env: Vec<String>,
    #[serde(default)]
    allow_dir: Vec<String>,
    #[serde(default)]
    allow_dir_ro: Vec<String>,
    #[serde(default)]
    allow_tcp: Vec<String>,
    #[serde(default)]
    allow_http: Vec<String>,
    #[serde(default)]
    allow_http_ca: Vec<PathBuf>,
    max_attempts: Option<u32>,
    step_timeout_ms: Option<u64>,
    max_memory_mb: Option<usize>,
    max_result_bytes: Option<usize>,
    workflow_timeout_ms: Option<u64>,
    max_http_body_mb: Option<u64>,
    /// A cron expression with seconds: `sec min hour day month weekday`.
    schedule: Option<String>,
    /// The input of scheduled runs.
    input: Option<toml::Value>,
    /// What to do with ticks missed while the server was down.
    #[serde(default)]
    missed: Missed,
    /// The queue every run of the workflow is started in.
    queue: Option<String>,
    /// How long its finished runs are kept (`30d`).
    retention: Option<String>,
}

/// Ticks missed while no server ran.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Missed {
    /// Start them on the next start (at most [`MAX_CATCH_UP`], the latest).
    #[default]
    Start,
    /// Skip them: only ticks from the start on run.
    Skip,
}

/// Most missed ticks started on a start.
pub const MAX_CATCH_UP: usize = 100;

/// A registered workflow, ready to load.
#[derive(Debug)]
pub struct Workflow {
    pub name: String,
    pub component: PathBuf,
    /// The command line's grants and limits with this workflow's grants
    /// added and its limits put in.
    pub drive: DriveSettings,
    pub schedule: Option<Schedule>,
    /// The queue its runs are started in.
    pub queue: Option<String>,
    /// How long its finished runs are kept, in ms.
    pub retention_ms: Option<i64>,
}

/// A workflow's schedule.
#[derive(Debug, Clone)]
pub struct Schedule {
    pub expression: String,
    pub cron: cron::Schedule,
    /// The input, as JSON.
    pub input: serde_json::Value,
    pub missed: Missed,
}

/// Parses a retention (`30d`, `12h`): a duration of at least a second.
///
/// # Errors
/// A message naming the value.
pub fn parse_retention(text: &str) -> Result<i64, String> {
    match durable::clock::parse_duration_ms(text) {
        Some(ms) if ms >= 1000 => Ok(ms),
        Some(_) => Err(format!(
            "retention {text:?}: at least 1s (runs are pruned by the second)"
        )),
        None => Err(format!(
            "retention {text:?}: a whole number and a unit (ms, s, m, h, d), such as 30d"
        )),
    }
}

/// Reads `path`; `base` is the command line's options.
///
/// # Errors
/// A message for the user, naming the file, and the line or the workflow.
pub fn read(path: &Path, base: &DriveSettings) -> Result<Config, String> {
    let text =
        std::fs::read_to_string(path).map_err(|e| format!("--config {}: {e}", path.display()))?;
    let file: File = toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    let dir = path.parent().unwrap_or(Path::new("."));
    let retention_ms = file
        .retention
        .as_deref()
        .map(|r| parse_retention(r).map_err(|e| format!("{}: {e}", path.display())))
        .transpose()?;
    let otlp_endpoint = file
        .otlp_endpoint
        .as_deref()
        .map(|u| durable_otlp::Endpoint::parse(u).map_err(|e| format!("{}: {e}", path.display())))
        .transpose()?;
    let mut queues = Vec::new();
    for (name, q) in file.queues {
        let at = |what: String| format!("{}: [queues.{name}]: {what}", path.display());
        let config = QueueConfig {
            name: name.clone(),
            concurrency: q.concurrency,
            concurrency_key: q.concurrency_key,
            per_key_concurrency: q.per_key_concurrency,
            rate: q.rate.as_deref().map(Rate::parse).transpose().map_err(at)?,
            burst: q.burst.unwrap_or(1),
        };
        config.validate().map_err(at)?;
        queues.push(config);
    }
    let mut step_limits = Vec::new();
    for (name, l) in file.limits.steps {
        let at = |what: String| format!("{}: [limits.steps.{name}]: {what}", path.display());
        durable::runner::validate_step_name(&name).map_err(|e| at(e.to_string()))?;
        if l.concurrency == 0 {
            return Err(at("a concurrency of 0 would run nothing".into()));
        }
        step_limits.push((name, l.concurrency));
    }
    let mut out = Vec::new();
    for (name, e) in file.workflows {
        let at = |what: String| format!("{}: [workflows.{name}]: {what}", path.display());
        durable::runner::validate_workflow_name(&name).map_err(at)?;
        let retention_ms = e
            .retention
            .as_deref()
            .map(parse_retention)
            .transpose()
            .map_err(at)?;
        let mut drive = base.clone();
        drive.allow_env.extend(e.allow_env);
        // Host paths are relative to the file, as `component` is.
        let rooted = |spec: String| match spec.split_once("::") {
            Some((host, guest)) => format!("{}::{guest}", dir.join(host).display()),
            None => {
                let host = dir.join(&spec).display().to_string();
                // Seen by the guest where it was written.
                format!("{host}::{spec}")
            }
        };
        drive.allow_dir.extend(e.allow_dir.into_iter().map(rooted));
        drive
            .allow_dir_ro
            .extend(e.allow_dir_ro.into_iter().map(rooted));
        drive.allow_tcp.extend(e.allow_tcp);
        drive.allow_http.extend(e.allow_http);
        drive
            .allow_http_ca
            .extend(e.allow_http_ca.into_iter().map(|p| dir.join(p)));
        if let Some(v) = e.max_attempts {
            drive.max_attempts = v;
        }
        if let Some(v) = e.step_timeout_ms {
            drive.step_timeout_ms = v;
        }
        if let Some(v) = e.max_memory_mb {
            drive.max_memory_mb = v.min(base.max_memory_mb);
        }
        if let Some(v) = e.max_result_bytes {
            drive.max_result_bytes = v;
        }
        if let Some(v) = e.workflow_timeout_ms {
            drive.workflow_timeout_ms = v;
        }
        if let Some(v) = e.max_http_body_mb {
            drive.max_http_body_mb = v;
        }
        let schedule = match e.schedule {
            None if e.input.is_some() => {
                return Err(at("`input` is for scheduled runs: add `schedule`".into()));
            }
            None => None,
            Some(expression) => {
                let cron = cron::Schedule::from_str(&expression).map_err(|err| {
                    at(format!(
                        "schedule {expression:?}: {err} (expected `sec min hour day month weekday`, \
                         such as \"0 */5 * * * *\")"
                    ))
                })?;
                let input = match e.input {
                    Some(v) => serde_json::to_value(v).map_err(|err| at(err.to_string()))?,
                    None => serde_json::Value::Null,
                };
                Some(Schedule {
                    expression,
                    cron,
                    input,
                    missed: e.missed,
                })
            }
        };
        out.push(Workflow {
            component: dir.join(&e.component),
            name,
            drive,
            schedule,
            queue: e.queue,
            retention_ms,
        });
    }
    Ok(Config {
        workflows: out,
        queues,
        step_limits,
        retention_ms,
        otlp_endpoint,
    })
}

#[cfg(test)]
mod tests {
    fn base() -> durable::settings::DriveSettings {
        durable::settings::DriveSettings::default()
    }

    fn read(text: &str) -> Result<Vec<super::Workflow>, String> {
        read_all(text).map(|c| c.workflows)
    }

    fn read_all(text: &str) -> Result<super::Config, String> {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("durable.toml");
        std::fs::write(&path, text).expect("write");
        super::read(&path, &base())
    }

    #[test]
    fn queues_are_read_with_their_limits_and_bad_ones_refused() {
        let c = read_all(
            r#"
            [workflows.charge]
            component = "charge.wasm"
            queue = "payments"

            [queues.payments]
            concurrency = 10
            concurrency_key = "/customer"
            per_key_concurrency = 1
            rate = "100/1m"
            burst = 5
            "#,
        )
        .expect("a valid file");
        assert_eq!(c.workflows[0].queue.as_deref(), Some("payments"));
        let q = &c.queues[0];
        assert_eq!(q.name, "payments");
        assert_eq!(q.concurrency, Some(10));
        assert_eq!(q.per_key_concurrency, Some(1));
        assert_eq!(q.rate.map(|r| (r.count, r.per_ms)), Some((100, 60_000)));
        assert_eq!(q.burst, 5);
        let c = read_all("[limits.steps.charge]\nconcurrency = 3\n").expect("a step limit");
        assert_eq!(c.step_limits, [("charge".to_string(), 3)]);
        let e = read_all("[limits.steps.charge]\nconcurrency = 0\n").expect_err("zero");
        assert!(e.contains("[limits.steps.charge]"), "{e}");
        let e = read_all("[queues.q]\nrate = \"fast\"\n").expect_err("bad rate");
        assert!(e.contains("[queues.q]") && e.contains("N/INTERVAL"), "{e}");
        let e = read_all("[queues.q]\nconcurrency = 0\n").expect_err("zero");
        assert!(e.contains("admits nothing"), "{e}");
        let e = read_all("[queues.q]\nconcurency = 3\n").expect_err("typo");
        assert!(e.contains("concurency"), "{e}");
    }

    #[test]
    fn workflows_get_their_grants_limits_and_schedules() {
        let w = read(
            r#"
            [workflows.report]
            component = "report.wasm"
            allow_http = ["api.example.com"]
            max_attempts = 7
            schedule = "*/2 * * * * *"
            input = { region = "eu" }
            missed = "skip"
            "#,
        )
        .expect("a valid file");
        assert_eq!(w.len(), 1);
        assert_eq!(w[0].name, "report");
        assert!(w[0].component.ends_with("report.wasm"));
        assert_eq!(w[0].drive.allow_http, ["api.example.com"]);
        assert_eq!(w[0].drive.max_attempts, 7);
        let s = w[0].schedule.as_ref().expect("a schedule");
        assert_eq!(s.input, serde_json::json!({"region": "eu"}));
        assert_eq!(s.missed, super::Missed::Skip);
    }

    #[test]
    fn a_bad_file_is_refused_naming_the_line_or_the_workflow() {
        let e = read("[workflows.a]\ncomponent = \"a.wasm\"\nmax_atempts = 3\n").expect_err("typo");
        assert!(e.contains("line 3") && e.contains("max_atempts"), "{e}");
        let e = read("[workflows.a]\ncomponent = \"a.wasm\"\nschedule = \"every day\"\n")
            .expect_err("bad cron");
        assert!(e.contains("[workflows.a]") && e.contains("schedule"), "{e}");
        let e =
            read("[workflows.a]\ncomponent = \"a.wasm\"\ninput = 1\n").expect_err("input alone");
        assert!(e.contains("add `schedule`"), "{e}");
        let e = read("[workflows.a]\n").expect_err("no component");
        assert!(e.contains("component"), "{e}");
    }
}
