//! What a check found: per point, the promises that did not hold; printed
//! for people or as the JSON of docs/json.md.

use serde::Serialize;
use serde_json::{Value, json};

use durable::store::Outcome;

/// A call as a report shows it: a step's key and what it was called with.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub(super) struct Call {
    pub key: String,
    pub input: Option<Value>,
}

/// A broken promise.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub(super) enum Problem {
    /// The run ended otherwise than the uninterrupted run.
    OutputDiffers { expected: Value, got: Value },
    /// A step committed before the crash ran again.
    RanAgain { step: String },
    /// A step that ran again (its first outcome was never committed)
    /// returned something else.
    NotIdempotent {
        step: String,
        first: Value,
        second: Value,
    },
    /// A step body that ran again made other nested calls than before.
    NestedCallsChanged {
        step: String,
        position: u32,
        recorded: Call,
        now: Option<Call>,
    },
    /// The resume did not finish the run.
    ResumeFailed {
        exit_code: Option<i32>,
        message: String,
    },
    /// Replaying the finished history diverged.
    ReplayDiverged { position: u32, message: String },
    /// Replaying the finished history ended otherwise than the run.
    ReplayOutputDiffers { expected: Value, got: Value },
    /// Replaying the finished history reached a call it has no record of.
    ReplayIncomplete { stopped_at: String },
}

impl Problem {
    /// The step a problem is about, if it is about one.
    fn step(&self) -> Option<&str> {
        match self {
            Problem::RanAgain { step }
            | Problem::NotIdempotent { step, .. }
            | Problem::NestedCallsChanged { step, .. } => Some(step),
            _ => None,
        }
    }

    /// One paragraph for people.
    fn describe(&self) -> String {
        match self {
            Problem::OutputDiffers { expected, got } => {
                format!("the run ended with {got}, the uninterrupted run with {expected}")
            }
            Problem::RanAgain { step } => {
                format!("step {step} was committed before the crash and ran again after it")
            }
            Problem::NotIdempotent {
                step,
                first,
                second,
            } => format!(
                "step {step} is not idempotent: it ran again after the crash (its first outcome \
                 was never committed) and returned {second}, where it first returned {first}. \
                 A step can always run twice this way: make its effect idempotent, e.g. by \
                 passing the step's idempotency key (`idempotency-key`, `<run-id>/<step-key>`, \
                 the same on every attempt) to the service it changes, or by checking for its \
                 own earlier effect first"
            ),
            Problem::NestedCallsChanged {
                step,
                position,
                recorded,
                now,
            } => {
                let now = match now {
                    Some(c) => format!("step {} with {}", c.key, shown_input(&c.input)),
                    None => "nothing".into(),
                };
                format!(
                    "the body of step {step} made other nested calls when it ran again: as its \
                     nested call #{} it had called step {} with {}, and now called {now}. The \
                     first call's record was superseded and the new call executed; a body \
                     that passes a clock reading, a random number or outside data to its \
                     nested steps does this. Make the nested calls depend on the step's \
                     input only, or read such values in a step of their own",
                    position + 1,
                    recorded.key,
                    shown_input(&recorded.input)
                )
            }
            Problem::ResumeFailed { exit_code, message } => format!(
                "the resume failed (exit code {}): {message}",
                exit_code.map_or("none".into(), |c| c.to_string())
            ),
            Problem::ReplayDiverged { position, message } => {
                format!("replaying the finished history diverged at position {position}: {message}")
            }
            Problem::ReplayOutputDiffers { expected, got } => {
                format!("replaying the finished history ended with {got}, the run with {expected}")
            }
            Problem::ReplayIncomplete { stopped_at } => format!(
                "replaying the finished history stopped at {stopped_at}, which the history has no record of"
            ),
        }
    }
}

fn shown_input(input: &Option<Value>) -> String {
    match input {
        Some(v) => v.to_string(),
        None => "an input that was not kept".into(),
    }
}

/// An outcome as reports show it: `{"ok": value}`, `{"failed": message}`,
/// `{"trapped": message}` or `{"timed_out_ms": n}`.
pub(super) fn outcome_json(o: &Outcome) -> Value {
    match o {
        Outcome::Ok(v) => {
            json!({ "ok": serde_json::from_str::<Value>(v).unwrap_or(Value::String(v.clone())) })
        }
        Outcome::Failed(m) => json!({ "failed": m }),
        Outcome::Trapped(m) => json!({ "trapped": m }),
        Outcome::TimedOut(ms) => json!({ "timed_out_ms": ms }),
    }
}

/// One checked point.
#[derive(Debug, Clone, Serialize)]
pub(super) struct PointReport {
    /// `after_commit`, `before_commit`, `crash_twice` or `replay`.
    pub kind: &'static str,
    /// The step it is about (for `crash_twice`, the first crash).
    pub step: Option<String>,
    /// What was done, in words.
    pub label: String,
    pub ok: bool,
    pub problems: Vec<Problem>,
    /// What is worth knowing but breaks nothing.
    pub notes: Vec<String>,
    pub elapsed_ms: u64,
}

impl PointReport {
    pub(super) fn new(kind: &'static str, step: Option<String>, label: String) -> PointReport {
        PointReport {
            kind,
            step,
            label,
            ok: true,
            problems: Vec::new(),
            notes: Vec::new(),
            elapsed_ms: 0,
        }
    }

    pub(super) fn problem(&mut self, p: Problem) {
        if !self.problems.contains(&p) {
            self.problems.push(p);
        }
        self.ok = false;
    }
}

/// The whole report (`durable check --json`).
#[derive(Debug, Serialize)]
pub(super) struct Report {
    pub component: String,
    pub digest: String,
    pub ok: bool,
    /// The uninterrupted run: its status and output (or error).
    pub baseline: Value,
    /// The steps of the uninterrupted run, in commit order.
    pub steps: Vec<String>,
    /// Crash points there are (two per step).
    pub points_total: usize,
    /// Crash points checked (fewer with --max-points).
    pub points_checked: usize,
    pub points: Vec<PointReport>,
    /// The number of problems over all points.
    pub problems: usize,
    pub notes: Vec<String>,
    pub elapsed_ms: u64,
}

impl Report {
    /// The report for people.
    pub(super) fn text(&self) -> String {
        let mut t = format!(
            "checked {} (component {}): {} step(s), {} of {} crash point(s), plus a double crash and a replay, in {:.1} s\n",
            self.component,
            self.digest.get(..12).unwrap_or(&self.digest),
            self.steps.len(),
            self.points_checked,
            self.points_total,
            self.elapsed_ms as f64 / 1000.0
        );
        for p in &self.points {
            t.push_str(&format!(
                "{} {}\n",
                if p.ok { "  ok  " } else { "  FAIL" },
                p.label
            ));
            for problem in &p.problems {
                t.push_str(&indent(&problem.describe()));
            }
            for note in &p.notes {
                t.push_str(&indent(&format!("note: {note}")));
            }
        }
        for note in &self.notes {
            t.push_str(&format!("note: {note}\n"));
        }
        if self.ok {
            t.push_str(
                "every promise held: each crash and resume ended as the uninterrupted run did\n",
            );
        } else {
            let mut steps: Vec<&str> = self
                .points
                .iter()
                .flat_map(|p| p.problems.iter().filter_map(Problem::step))
                .collect();
            steps.sort_unstable();
            steps.dedup();
            t.push_str(&format!(
                "{} problem(s) at {} point(s){}\n",
                self.problems,
                self.points.iter().filter(|p| !p.ok).count(),
                if steps.is_empty() {
                    String::new()
                } else {
                    format!("; steps involved: {}", steps.join(", "))
                }
            ));
        }
        t
    }
}

/// `text` wrapped at about 96 columns, indented under its point.
fn indent(text: &str) -> String {
    let mut out = String::new();
    let mut line = String::from("         ");
    for word in text.split(' ') {
        if line.len() + word.len() > 96 && !line.trim().is_empty() {
            out.push_str(line.trim_end());
            out.push('\n');
            line = String::from("         ");
        }
        line.push_str(word);
        line.push(' ');
    }
    out.push_str(line.trim_end());
    out.push('\n');
    out
}
