//! Step keys, the replay check, and divergence. Pure: no IO, no wasmtime.
//!
//! Every durable call a context makes (a step, a `now-ms`, a `random-u64`)
//! takes the context's next *position*; a step named `n` also takes the key
//! `n#k` for its k-th call of that name in the context. A step called from a
//! step body lives in a child context whose keys are prefixed with the
//! parent's key and a `/`. On replay, the recorded entry at the same
//! context and position must have the same key and input digest; anything
//! else is a [`Divergence`].

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use crate::hash::sha256_hex;
use crate::records::StepRecord;

/// Reserved name under which `now-ms` answers are recorded.
pub const NOW: &str = "$now";
/// Reserved name under which `random-u64` answers are recorded.
pub const RANDOM: &str = "$random";
/// Reserved name under which sleeps record their wake-up time.
pub const SLEEP: &str = "$sleep";
/// Prefix of the reserved names under which `await-event` records what it
/// consumed: `$event:<name>`.
pub const EVENT_PREFIX: &str = "$event:";
/// Reserved name under which `start-timer` records its time.
pub const TIMER: &str = "$timer";
/// Prefix of the reserved names under which a child workflow's end is
/// recorded in its parent: `$child:<workflow>`.
pub const CHILD_PREFIX: &str = "$child:";
/// Reserved name under which `await-any` records which handle won.
pub const SELECT: &str = "$select";
/// Reserved name under which `cancel` of a handle is recorded.
pub const CANCEL: &str = "$cancel";
/// Prefix of the reserved names under which `set-tag` is recorded
/// (`$tag:<key>`).
pub const TAG_PREFIX: &str = "$tag:";

/// How a child workflow ended, as its parent records it (the value of its
/// `$child:<workflow>#n` record: `{"status": ..., "output": ...}` or
/// `{"status": ..., "error": ...}`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChildEnd {
    /// It succeeded with this output (JSON).
    Succeeded(String),
    /// It failed with this error.
    Failed(String),
    /// It was cancelled; why.
    Cancelled(String),
    /// It ran past its parent's timeout (ms) and was cancelled.
    TimedOut(u64),
}

impl ChildEnd {
    /// The record's value.
    pub fn to_json(&self) -> String {
        let v = match self {
            ChildEnd::Succeeded(out) => serde_json::json!({
                "status": "succeeded",
                "output": serde_json::from_str::<serde_json::Value>(out)
                    .unwrap_or(serde_json::Value::Null),
            }),
            ChildEnd::Failed(e) => serde_json::json!({"status": "failed", "error": e}),
            ChildEnd::Cancelled(e) => serde_json::json!({"status": "cancelled", "error": e}),
            ChildEnd::TimedOut(t) => serde_json::json!({"status": "timed-out", "timeout_ms": t}),
        };
        v.to_string()
    }

    /// Reads a record's value back; `None` if it is not one.
    pub fn parse(value: &str) -> Option<ChildEnd> {
        let v: serde_json::Value = serde_json::from_str(value).ok()?;
        let error = || {
            v.get("error")
                .and_then(|e| e.as_str())
                .unwrap_or("")
                .to_string()
        };
        Some(match v.get("status")?.as_str()? {
            "succeeded" => ChildEnd::Succeeded(v.get("output")?.to_string()),
            "failed" => ChildEnd::Failed(error()),
            "cancelled" => ChildEnd::Cancelled(error()),
            "timed-out" => ChildEnd::TimedOut(v.get("timeout_ms")?.as_u64()?),
            _ => return None,
        })
    }
}

/// Digest of a step input as recorded in the history (first 16 bytes of its
/// SHA-256, which is plenty to tell two inputs apart).
pub fn input_digest(input: &str) -> String {
    let mut d = sha256_hex(input.as_bytes());
    d.truncate(32);
    d
}

/// One context of durable calls: the workflow itself, or one step body.
#[derive(Debug, Clone)]
pub struct Context {
    parent: String,
    counts: HashMap<String, u32>,
    position: u32,
}

/// A durable call with its place in the history decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Planned {
    /// Full key, `parent/name#n` (no prefix at the root).
    pub key: String,
    /// Key of the step whose body made the call; empty at the root.
    pub parent: String,
    /// Position in the context.
    pub position: u32,
    /// The step's name.
    pub name: String,
    /// Digest of the input.
    pub input_digest: String,
    /// The input (JSON), recorded with the outcome so that people can see
    /// what a step was called with.
    pub input: String,
    /// For a call of a `parallel` batch, the position of its first call.
    pub batch: Option<u32>,
}

impl Planned {
    /// How deep the call is nested: 1 for a call of the workflow, 2 for a
    /// call from the body of one of its steps, and so on.
    pub fn depth(&self) -> u32 {
        self.key.matches('/').count() as u32 + 1
    }
}

impl Context {
    /// The workflow's own context.
    pub fn root() -> Context {
        Context::child_of("")
    }

    /// The context of the body of the step with key `parent`.
    pub fn child_of(parent: &str) -> Context {
        Context {
            parent: parent.to_string(),
            counts: HashMap::new(),
            position: 0,
        }
    }

    /// The key of the step whose body this is; empty at the root.
    pub fn parent(&self) -> &str {
        &self.parent
    }

    /// How deep the context is nested: 0 for the workflow, 1 for the body
    /// of one of its steps, and so on.
    pub fn depth(&self) -> u32 {
        if self.parent.is_empty() {
            0
        } else {
            self.parent.matches('/').count() as u32 + 1
        }
    }

    /// The position the next call will take.
    pub fn next_position(&self) -> u32 {
        self.position
    }

    /// Assigns the next position and key to a call of `name` with `input`.
    pub fn plan(&mut self, name: &str, input: &str) -> Planned {
        let n = self.counts.entry(name.to_string()).or_insert(0);
        *n += 1;
        let key = if self.parent.is_empty() {
            format!("{name}#{n}")
        } else {
            format!("{}/{name}#{n}", self.parent)
        };
        let position = self.position;
        self.position += 1;
        Planned {
            key,
            parent: self.parent.clone(),
            position,
            name: name.to_string(),
            input_digest: input_digest(input),
            input: input.to_string(),
            batch: None,
        }
    }
}

/// A run's committed history, indexed for replay. Loaded once per drive
/// and kept current by the drive: every commit of the drive is added, so a
/// step body run again (a retry) finds what its earlier attempt committed.
#[derive(Debug, Default)]
pub struct History {
    by_key: HashMap<String, StepRecord>,
    /// Context (parent key) to position to key.
    by_parent: HashMap<String, BTreeMap<u32, String>>,
}

impl History {
    /// Indexes `records`.
    pub fn new(records: Vec<StepRecord>) -> History {
        let mut h = History::default();
        for r in records {
            h.insert(r);
        }
        h
    }

    /// Adds a record just committed.
    pub fn insert(&mut self, record: StepRecord) {
        self.by_parent
            .entry(record.parent.clone())
            .or_default()
            .insert(record.position, record.key.clone());
        self.by_key.insert(record.key.clone(), record);
    }

    /// Bytes of all recorded outcomes (what the history size limit counts).
    pub fn total_bytes(&self) -> u64 {
        self.by_key.values().map(|r| r.outcome.size() as u64).sum()
    }

    /// Number of recorded entries.
    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    /// True when nothing is recorded.
    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }

    /// The keys of the records of context `parent` at `from` or later, and
    /// of everything nested under them: what a re-executed step body that
    /// now calls something else at position `from` leaves behind.
    pub fn stale_from(&self, parent: &str, from: u32) -> Vec<String> {
        let mut todo: Vec<String> = self
            .by_parent
            .get(parent)
            .map(|m| m.range(from..).map(|(_, k)| k.clone()).collect())
            .unwrap_or_default();
        let mut keys = Vec::new();
        while let Some(key) = todo.pop() {
            if let Some(children) = self.by_parent.get(&key) {
                todo.extend(children.values().cloned());
            }
            keys.push(key);
        }
        keys.sort();
        keys
    }

    /// Forgets the records with these keys (moved aside by the store).
    pub fn remove(&mut self, keys: &[String]) {
        for k in keys {
            if let Some(r) = self.by_key.remove(k)
                && let Some(slots) = self.by_parent.get_mut(&r.parent)
            {
                slots.remove(&r.position);
                if slots.is_empty() {
                    self.by_parent.remove(&r.parent);
                }
            }
        }
    }

    /// The first record of the workflow's own context at position `next`
    /// or later: a call the history has that the code, which has ended
    /// after `next` calls, no longer made.
    pub fn first_unmade(&self, next: u32) -> Option<&StepRecord> {
        self.by_parent
            .get("")
            .and_then(|m| m.range(next..).next())
            .and_then(|(_, k)| self.by_key.get(k))
    }

    /// The recorded entry for `call`, `None` if it has none yet.
    ///
    /// # Errors
    /// A [`Divergence`] when the history holds a different call at this
    /// position, this call at a different position, or this call made
    /// alone where it was in a `parallel` batch (or the other way round).
    pub fn check(
        &self,
        run_id: &str,
        call: &Planned,
    ) -> Result<Option<&StepRecord>, Box<Divergence>> {
        let at_slot = self
            .by_parent
            .get(&call.parent)
            .and_then(|m| m.get(&call.position))
            .and_then(|k| self.by_key.get(k));
        let diverged = |recorded: &StepRecord| {
            Box::new(Divergence {
                run_id: run_id.to_string(),
                parent: call.parent.clone(),
                position: call.position,
                recorded: Some(Recorded::of(recorded)),
                requested: Some(Requested::of(call)),
            })
        };
        match at_slot {
            Some(rec)
                if rec.key == call.key
                    && rec.input_digest == call.input_digest
                    && rec.batch.is_some() == call.batch.is_some() =>
            {
                Ok(Some(rec))
            }
            Some(rec) => Err(diverged(rec)),
            None => match self.by_key.get(&call.key) {
                Some(rec) => Err(diverged(rec)),
                None => Ok(None),
            },
        }
    }

    /// The divergence of a run whose workflow ended after `next` calls of
    /// its own while the history holds more.
    pub fn check_end(&self, run_id: &str, next: u32) -> Result<(), Box<Divergence>> {
        match self.first_unmade(next) {
            None => Ok(()),
            Some(rec) => Err(Box::new(Divergence {
                run_id: run_id.to_string(),
                parent: String::new(),
                position: rec.position,
                recorded: Some(Recorded::of(rec)),
                requested: None,
            })),
        }
    }
}

/// What the history holds where a replay asked for something else.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    /// Its key.
    pub key: String,
    /// Its position.
    pub position: u32,
    /// Its input digest.
    pub input_digest: String,
    /// Its input (`None` in records from before inputs were kept).
    pub input: Option<String>,
    /// Whether it was made in a `parallel` batch.
    pub in_batch: bool,
}

impl Recorded {
    fn of(r: &StepRecord) -> Recorded {
        Recorded {
            key: r.key.clone(),
            position: r.position,
            input_digest: r.input_digest.clone(),
            input: r.input.clone(),
            in_batch: r.batch.is_some(),
        }
    }
}

/// The call the code made where the history holds something else.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requested {
    /// Its key.
    pub key: String,
    /// Its input digest.
    pub input_digest: String,
    /// Its input.
    pub input: String,
    /// Whether it is made in a `parallel` batch.
    pub in_batch: bool,
}

impl Requested {
    fn of(c: &Planned) -> Requested {
        Requested {
            key: c.key.clone(),
            input_digest: c.input_digest.clone(),
            input: c.input.clone(),
            in_batch: c.batch.is_some(),
        }
    }
}

/// Replay asked for a call that the history does not have where it asked,
/// or the workflow ended without a call the history has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Divergence {
    /// The run.
    pub run_id: String,
    /// The context (parent key; empty for the workflow itself).
    pub parent: String,
    /// The position asked for.
    pub position: u32,
    /// What the history holds there (or holds under the key asked for).
    pub recorded: Option<Recorded>,
    /// The call the code made; `None` when the code ended without it.
    pub requested: Option<Requested>,
}

impl std::error::Error for Divergence {}

fn alone_or_batch(in_batch: bool) -> &'static str {
    if in_batch {
        "in a parallel batch"
    } else {
        "alone"
    }
}

impl Divergence {
    /// What differs, in words, without the run and position: "the history
    /// has step a#1 there, the code now calls step b#1".
    pub fn what(&self) -> String {
        match (&self.recorded, &self.requested) {
            (Some(r), None) => format!(
                "the history has step {} there, but the code ended without calling it",
                r.key
            ),
            (Some(r), Some(q))
                if r.key == q.key
                    && r.position == self.position
                    && r.input_digest == q.input_digest =>
            {
                format!(
                    "step {} was called {} but is now called {}",
                    r.key,
                    alone_or_batch(r.in_batch),
                    alone_or_batch(q.in_batch)
                )
            }
            (Some(r), Some(q)) if r.key == q.key && r.position == self.position => match &r.input {
                Some(was) => format!(
                    "step {} was recorded with input {} but is now called with input {}",
                    r.key,
                    clip(was),
                    clip(&q.input)
                ),
                None => format!(
                    "step {} was recorded with input digest {} but is now called with input digest {}",
                    r.key, r.input_digest, q.input_digest
                ),
            },
            (Some(r), Some(q)) if r.position == self.position => format!(
                "the history has step {} there, the code now calls step {}",
                r.key, q.key
            ),
            (Some(r), Some(q)) => format!(
                "the code now calls step {} here, but the history has it at position {}",
                q.key, r.position
            ),
            (None, Some(q)) => format!("the code now calls step {}", q.key),
            (None, None) => "no call".into(),
        }
    }
}

/// An input as a divergence message shows it: at most 120 bytes.
fn clip(input: &str) -> String {
    if input.len() <= 120 {
        return input.to_string();
    }
    let mut end = 120;
    while !input.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &input[..end])
}

impl fmt::Display for Divergence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let context = if self.parent.is_empty() {
            "the workflow".to_string()
        } else {
            format!("step {}", self.parent)
        };
        write!(
            f,
            "run {:?} diverged from its history at position {} of {context}: {}. The workflow \
             code changed or is not deterministic; the history was left untouched",
            self.run_id,
            self.position,
            self.what()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::Outcome;

    fn record(call: &Planned) -> StepRecord {
        StepRecord {
            key: call.key.clone(),
            parent: call.parent.clone(),
            position: call.position,
            name: call.name.clone(),
            input_digest: call.input_digest.clone(),
            input: Some(call.input.clone()),
            outcome: Outcome::Ok("null".into()),
            attempts: 1,
            started_at_ms: 0,
            finished_at_ms: 0,
            drive: 1,
            batch: call.batch,
        }
    }

    #[test]
    fn repeated_names_get_sequence_numbers_and_nesting_prefixes_keys() {
        let mut root = Context::root();
        let keys: Vec<_> = ["send", "send", "other", "send"]
            .iter()
            .map(|n| root.plan(n, "{}"))
            .map(|p| (p.key, p.position))
            .collect();
        assert_eq!(
            keys,
            [
                ("send#1".into(), 0),
                ("send#2".into(), 1),
                ("other#1".into(), 2),
                ("send#3".into(), 3)
            ]
        );
        let mut child = Context::child_of("grant_access#1");
        let p = child.plan("notify", "1");
        assert_eq!(
            (p.key.as_str(), p.parent.as_str(), p.position),
            ("grant_access#1/notify#1", "grant_access#1", 0)
        );
    }

    #[test]
    fn replay_check_table() {
        let mut ctx = Context::root();
        let a = ctx.plan("a", "1");
        let b = ctx.plan("b", "2");
        let history = History::new(vec![record(&a), record(&b)]);

        struct Case {
            calls: &'static [(&'static str, &'static str)],
            expect: Result<&'static [bool], &'static str>,
        }
        let cases = [
            // Same calls: both recovered.
            Case {
                calls: &[("a", "1"), ("b", "2")],
                expect: Ok(&[true, true]),
            },
            // One more call at the end: new.
            Case {
                calls: &[("a", "1"), ("b", "2"), ("c", "3")],
                expect: Ok(&[true, true, false]),
            },
            // Renamed step at position 1.
            Case {
                calls: &[("a", "1"), ("x", "2")],
                expect: Err("the history has step b#1 there, the code now calls step x#1"),
            },
            // Same name, other input.
            Case {
                calls: &[("a", "1"), ("b", "9")],
                expect: Err("step b#1 was recorded with input 2 but is now called with input 9"),
            },
            // Reordered.
            Case {
                calls: &[("b", "2")],
                expect: Err("the history has step a#1 there, the code now calls step b#1"),
            },
        ];
        for case in cases {
            let mut ctx = Context::root();
            let got: Result<Vec<bool>, String> = case
                .calls
                .iter()
                .map(|(n, i)| {
                    history
                        .check("r1", &ctx.plan(n, i))
                        .map(|r| r.is_some())
                        .map_err(|d| d.to_string())
                })
                .collect();
            match (case.expect, got) {
                (Ok(want), Ok(got)) => assert_eq!(want, got.as_slice(), "{:?}", case.calls),
                (Err(want), Err(got)) => {
                    assert!(got.contains(want), "{got}");
                    assert!(got.contains("run \"r1\""), "{got}");
                }
                (want, got) => panic!("{:?}: wanted {want:?}, got {got:?}", case.calls),
            }
        }
    }

    #[test]
    fn a_recorded_key_at_another_position_is_divergence() {
        let mut ctx = Context::root();
        let _ = ctx.plan("a", "1");
        let b = ctx.plan("b", "2");
        // History has b#1 at position 1 but nothing at position 0 (a was in
        // flight at a crash); now the code calls b first.
        let history = History::new(vec![record(&b)]);
        let mut ctx = Context::root();
        let err = history.check("r", &ctx.plan("b", "2")).unwrap_err();
        assert!(err.to_string().contains("has it at position 1"), "{err}");
    }

    #[test]
    fn a_call_made_alone_where_it_was_in_a_batch_is_divergence() {
        let mut ctx = Context::root();
        let mut a = ctx.plan("a", "1");
        a.batch = Some(0);
        let history = History::new(vec![record(&a)]);
        let mut ctx = Context::root();
        let err = history.check("r", &ctx.plan("a", "1")).unwrap_err();
        assert!(
            err.to_string()
                .contains("a#1 was called in a parallel batch but is now called alone"),
            "{err}"
        );
    }

    #[test]
    fn an_ended_workflow_that_skipped_a_recorded_call_is_divergence() {
        let mut ctx = Context::root();
        let a = ctx.plan("a", "1");
        let b = ctx.plan("b", "2");
        let history = History::new(vec![record(&a), record(&b)]);
        assert!(history.check_end("r", 2).is_ok());
        let err = history.check_end("r", 1).unwrap_err();
        assert!(
            err.to_string()
                .contains("the history has step b#1 there, but the code ended without calling it"),
            "{err}"
        );
    }

    #[test]
    fn stale_records_are_the_later_siblings_and_their_subtrees() {
        let mut parent = Context::child_of("p#1");
        let c1 = parent.plan("c", "1");
        let c2 = parent.plan("c", "2");
        let mut inner = Context::child_of(&c2.key);
        let g = inner.plan("g", "3");
        let mut other = Context::child_of("p#10");
        let o = other.plan("c", "1");
        let mut history = History::new(vec![record(&c1), record(&c2), record(&g), record(&o)]);
        let stale = history.stale_from("p#1", 1);
        assert_eq!(stale, ["p#1/c#2", "p#1/c#2/g#1"]);
        history.remove(&stale);
        assert_eq!(history.len(), 2);
        let mut again = Context::child_of("p#1");
        let _ = again.plan("c", "1");
        assert!(history.check("r", &again.plan("x", "9")).unwrap().is_none());
    }
}
