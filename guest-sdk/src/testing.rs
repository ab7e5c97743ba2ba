//! Test workflows without a host: step bodies are plain functions (call
//! them in `#[test]`s), and [`Fake`] runs a workflow function in process
//! against recorded answers, so that its orchestration (which steps it calls
//! with what, how it handles a failure, a timeout, a race) is tested with
//! `cargo test` on the build machine.
//!
//! ```ignore
//! use durable_sdk::testing::Fake;
//!
//! #[test]
//! fn an_approved_report_is_paid() {
//!     let mut fake = Fake::new(DURABLE_STEPS)      // the steps workflow! registered
//!         .answer("submit", "S-1")                 // recorded: the body does not run
//!         .event("approval", serde_json::json!({"approved": true}));
//!     let out = fake.run(|| approval(report())).unwrap();
//!     assert_eq!(out.status, "paid");
//!     assert_eq!(fake.calls_of("step"), ["submit", "pay"]); // `pay` ran its body
//! }
//! ```
//!
//! What the fake does, call by call (the Python and JavaScript SDKs' fakes
//! do the same):
//! - a step with a recorded answer gets it (one per call from
//!   [`Fake::answers`] and [`Fake::fail_once`], a call after the last being
//!   an error; else the one of [`Fake::answer`] or [`Fake::fail`]); any
//!   other step runs its body in process, its input and output going
//!   through JSON as with the host; an `Err` is a failed step (no retries),
//!   a panic a trapped one; answers for a step the workflow does not
//!   declare are an error (a typo would run the real body);
//! - a child workflow needs a recorded answer ([`Fake::child`]) once its
//!   value is awaited (one cancelled first needs none);
//! - events are consumed first in, first out; a wait with none left times
//!   out if it has a timeout, and panics (the test fails) if it has none;
//! - time is virtual: [`crate::now_ms`] starts at [`Fake::now_ms`], sleeps
//!   and timers advance it; steps, children and available events complete
//!   at once, a timer at its time, an event wait without an event at its
//!   timeout (or never). [`crate::any`] takes the earliest (of those
//!   already complete, the first in list order) and moves the clock there;
//!   a cancelled event wait gives its event back;
//! - randomness comes from [`Fake::seed`] (SplitMix64); `idempotency_key()`
//!   is `fake-run` in workflow code and `fake-run/<step key>` in a body;
//!   logs are kept ([`Fake::logs`]); [`Fake::calls`] records steps,
//!   children, events, sleeps (`sleep`, `sleep_until`), timers, cancels and
//!   tags;
//! - [`crate::set_tag`] checks its key, its value and the number of keys as
//!   the host does, with the host's error texts, and is an error in a step
//!   body; the tags set are in [`Fake::tags`] (a refused call sets and
//!   records nothing, as with the host).
//!
//! On a wasm32 target (inside the host) the fake is never consulted.

// Inside the host (wasm32) the SDK calls the WIT imports and none of this.
#![cfg_attr(target_arch = "wasm32", allow(dead_code))]

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap, VecDeque};

use serde::Serialize;

use crate::__internal::StepFailure;
use crate::__internal::durable::workflow::types;

/// The steps a workflow registered, by name: `workflow!` defines
/// `DURABLE_STEPS` of this type next to the workflow.
pub type StepTable = &'static [(&'static str, fn(&str) -> Result<String, StepFailure>)];

/// One durable call the workflow made.
#[derive(Debug, Clone, PartialEq)]
pub struct FakeCall {
    /// `step`, `child`, `event`, `sleep`, `sleep_until`, `timer`, `cancel`
    /// or `tag`.
    pub kind: &'static str,
    /// The step, child workflow or event name, or the tag's key (empty for
    /// sleeps and timers).
    pub name: String,
    /// The input (a step's or child's), the timeout (an event's, or null),
    /// the duration in ms (sleeps and timers), or the tag's value (a string).
    pub input: serde_json::Value,
}

/// Recorded answers for one step or child workflow name.
#[derive(Debug, Default, Clone)]
struct Answers {
    queue: VecDeque<Result<String, String>>,
    every: Option<Result<String, String>>,
    /// Given one per call ([`Fake::answers`]): a call after the last is an
    /// error of the test, not a reason to run the body.
    sequence: bool,
}

impl Answers {
    fn next(&mut self, what: &str) -> Option<Result<String, String>> {
        if let Some(answer) = self.queue.pop_front().or_else(|| self.every.clone()) {
            return Some(answer);
        }
        if self.sequence {
            panic!("{what} was called more times than the fake has answers for it");
        }
        None
    }
}

/// A workflow run in process against recorded answers: see the module.
#[derive(Debug, Clone)]
pub struct Fake {
    steps: StepTable,
    answers: HashMap<String, Answers>,
    children: HashMap<String, Answers>,
    events: HashMap<String, VecDeque<String>>,
    now: u64,
    random: u64,
    handles: Vec<Pending>,
    /// Keys of the step bodies running (nested calls), for idempotency keys.
    running: Vec<String>,
    /// Calls so far per parent key and step name, for step keys.
    counts: HashMap<String, u32>,
    calls: Vec<FakeCall>,
    logs: Vec<String>,
    tags: BTreeMap<String, String>,
}

/// A started handle: when it completes (None: never) and with what.
#[derive(Debug, Clone)]
struct Pending {
    /// The step, child or event name ("" for a timer).
    name: String,
    at: Option<u64>,
    outcome: Result<String, types::HandleError>,
    /// A child without a recorded answer: an error once its value is needed.
    missing: bool,
    /// An event payload it took, given back if it is cancelled unawaited.
    taken: Option<String>,
    /// An await returned its value: a cancel changes nothing.
    observed: bool,
}

thread_local! {
    static ACTIVE: RefCell<Option<Fake>> = const { RefCell::new(None) };
}

fn to_json<T: Serialize>(value: T) -> String {
    serde_json::to_string(&value).expect("a recorded answer serializes to JSON")
}

impl Fake {
    /// A fake that runs the bodies of `steps` (the workflow's
    /// `DURABLE_STEPS`) for steps without a recorded answer.
    pub fn new(steps: StepTable) -> Fake {
        Fake {
            steps,
            answers: HashMap::new(),
            children: HashMap::new(),
            events: HashMap::new(),
            now: 1_700_000_000_000,
            random: 0,
            handles: Vec::new(),
            running: Vec::new(),
            counts: HashMap::new(),
            calls: Vec::new(),
            logs: Vec::new(),
            tags: BTreeMap::new(),
        }
    }

    /// Every call of step `name` returns `value` (its body does not run).
    pub fn answer<T: Serialize>(mut self, name: &str, value: T) -> Fake {
        self.answers.entry(name.into()).or_default().every = Some(Ok(to_json(value)));
        self
    }

    /// The next calls of step `name` return `values`, one per call, in
    /// order; a call after the last is an error of the test (a panic).
    pub fn answers<T: Serialize>(
        mut self,
        name: &str,
        values: impl IntoIterator<Item = T>,
    ) -> Fake {
        let entry = self.answers.entry(name.into()).or_default();
        entry
            .queue
            .extend(values.into_iter().map(|v| Ok(to_json(v))));
        entry.sequence = true;
        self
    }

    /// The next call of step `name` (after those already queued with
    /// [`Fake::answers`] or `fail_once`) fails with `message`.
    pub fn fail_once(mut self, name: &str, message: &str) -> Fake {
        let entry = self.answers.entry(name.into()).or_default();
        entry.queue.push_back(Err(message.into()));
        entry.sequence = true;
        self
    }

    /// Every call of step `name` fails with `message` (after its last
    /// attempt, as the host reports it).
    pub fn fail(mut self, name: &str, message: &str) -> Fake {
        self.answers.entry(name.into()).or_default().every = Some(Err(message.into()));
        self
    }

    /// Every child workflow named `name` ends with output `value`.
    pub fn child<T: Serialize>(mut self, name: &str, value: T) -> Fake {
        self.children.entry(name.into()).or_default().every = Some(Ok(to_json(value)));
        self
    }

    /// Every child workflow named `name` fails with `message`.
    pub fn child_fails(mut self, name: &str, message: &str) -> Fake {
        self.children.entry(name.into()).or_default().every = Some(Err(message.into()));
        self
    }

    /// Queues an event named `name` with `payload` (first in, first out).
    pub fn event<T: Serialize>(mut self, name: &str, payload: T) -> Fake {
        self.events
            .entry(name.into())
            .or_default()
            .push_back(to_json(payload));
        self
    }

    /// The virtual clock's start (ms since the Unix epoch).
    pub fn now_ms(mut self, ms: u64) -> Fake {
        self.now = ms;
        self
    }

    /// The seed of `random_u64`.
    pub fn seed(mut self, seed: u64) -> Fake {
        self.random = seed;
        self
    }

    /// Runs `workflow` (usually a closure calling the workflow function)
    /// with this fake as its host and returns what it returns.
    ///
    /// # Panics
    /// When `workflow` panics, or waits for something that never comes.
    pub fn run<R>(&mut self, workflow: impl FnOnce() -> R) -> R {
        // A typo in a recorded name would silently run the real body.
        for name in self.answers.keys() {
            assert!(
                self.steps.iter().any(|(n, _)| n == name),
                "the fake has answers for step {name:?}, which the workflow does not declare (steps: {:?})",
                self.steps.iter().map(|(n, _)| *n).collect::<Vec<_>>()
            );
        }
        let previous = ACTIVE.with(|a| a.replace(Some(self.clone())));
        struct Restore(Option<Option<Fake>>);
        impl Drop for Restore {
            fn drop(&mut self) {
                if let Some(previous) = self.0.take() {
                    ACTIVE.with(|a| *a.borrow_mut() = previous);
                }
            }
        }
        let mut restore = Restore(Some(previous));
        let result = workflow();
        let finished = ACTIVE.with(|a| a.borrow_mut().take());
        ACTIVE.with(|a| *a.borrow_mut() = restore.0.take().flatten());
        if let Some(finished) = finished {
            *self = finished;
        }
        result
    }

    /// Every durable call the workflow made, in order.
    pub fn calls(&self) -> &[FakeCall] {
        &self.calls
    }

    /// The names of the calls of `kind` (`step`, `child`, `event`), in order.
    pub fn calls_of(&self, kind: &str) -> Vec<&str> {
        self.calls
            .iter()
            .filter(|c| c.kind == kind)
            .map(|c| c.name.as_str())
            .collect()
    }

    /// The lines the workflow and its steps logged (`LEVEL message`).
    pub fn logs(&self) -> &[String] {
        &self.logs
    }

    /// The tags the workflow set on its run ([`crate::set_tag`]), by key:
    /// the last value of each.
    pub fn tags(&self) -> &BTreeMap<String, String> {
        &self.tags
    }

    /// The virtual clock now (ms since the Unix epoch).
    pub fn clock(&self) -> u64 {
        self.now
    }
}

/// Runs `f` on the active fake. The borrow ends before `f`'s caller runs
/// step bodies, which may make durable calls themselves.
fn with<R>(f: impl FnOnce(&mut Fake) -> R) -> R {
    ACTIVE.with(|a| {
        let mut active = a.borrow_mut();
        let fake = active.as_mut().unwrap_or_else(|| {
            panic!(
                "a durable call outside the durable host: run the workflow with \
                 durable_sdk::testing::Fake, or call the step body directly"
            )
        });
        f(fake)
    })
}

fn record(kind: &'static str, name: &str, input: &str) {
    let input = serde_json::from_str(input).unwrap_or(serde_json::Value::Null);
    with(|f| {
        f.calls.push(FakeCall {
            kind,
            name: name.into(),
            input,
        })
    });
}

/// A step's outcome: the recorded answer, else its body run here.
fn step_outcome(name: &str, input: &str) -> Result<String, types::StepError> {
    record("step", name, input);
    let (answer, body) = with(|f| {
        let answer = f
            .answers
            .get_mut(name)
            .and_then(|a| a.next(&format!("step {name:?}")));
        let body = f.steps.iter().find(|(n, _)| *n == name).map(|(_, b)| *b);
        (answer, body)
    });
    if let Some(answer) = answer {
        return answer.map_err(types::StepError::Failed);
    }
    let Some(body) = body else {
        return Err(types::StepError::Failed(format!(
            "this workflow has no step named {name:?} and the fake has no answer for it"
        )));
    };
    with(|f| {
        let parent = f.running.join("/");
        let n = f.counts.entry(format!("{parent}/{name}")).or_insert(0);
        *n += 1;
        let key = format!("{name}#{n}");
        f.running.push(key);
    });
    let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| body(input)));
    with(|f| f.running.pop());
    match ran {
        Ok(Ok(output)) => Ok(output),
        Ok(Err(failure)) => Err(types::StepError::Failed(failure.message)),
        Err(panic) => Err(types::StepError::Trapped(panic_message(&panic))),
    }
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "the step body panicked".into())
}

fn started(name: &str, at: Option<u64>, outcome: Result<String, types::HandleError>) -> u32 {
    start(Pending {
        name: name.into(),
        at,
        outcome,
        missing: false,
        taken: None,
        observed: false,
    })
}

fn start(pending: Pending) -> u32 {
    with(|f| {
        f.handles.push(pending);
        (f.handles.len() - 1) as u32
    })
}

fn event_outcome(name: &str, timeout_ms: Option<u64>) -> (Option<u64>, Result<String, u64>) {
    let input = timeout_ms.map_or(serde_json::Value::Null, serde_json::Value::from);
    with(|f| {
        f.calls.push(FakeCall {
            kind: "event",
            name: name.into(),
            input,
        });
        match f.events.get_mut(name).and_then(VecDeque::pop_front) {
            Some(payload) => (Some(f.now), Ok(payload)),
            None => (
                timeout_ms.map(|t| f.now.saturating_add(t)),
                Err(timeout_ms.unwrap_or(0)),
            ),
        }
    })
}

/// The host's limits on tags and its errors for them.
const MAX_TAG_KEY: usize = 64;
const MAX_TAG_VALUE: usize = 256;
const MAX_TAGS: usize = 16;

/// Why the host refuses to set tag `key` to `value` on a run that has
/// `tags` (set by the workflow), if it does.
fn tag_refusal(tags: &BTreeMap<String, String>, key: &str, value: &str) -> Option<String> {
    let key_ok = (1..=MAX_TAG_KEY).contains(&key.len())
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if !key_ok {
        return Some(format!(
            "tag key \"{key}\" must be 1 to {MAX_TAG_KEY} characters of a-z, A-Z, 0-9, '_', '.', '-'"
        ));
    }
    if value.chars().any(char::is_control) {
        return Some(format!(
            "tag \"{key}\": the value contains a control character (a newline, NUL, ...)"
        ));
    }
    if value.len() > MAX_TAG_VALUE {
        return Some(format!(
            "tag \"{key}\": value is {} bytes, more than {MAX_TAG_VALUE}",
            value.len()
        ));
    }
    if !tags.contains_key(key) && tags.len() >= MAX_TAGS {
        return Some(format!(
            "a workflow sets at most {MAX_TAGS} tag keys on its run; \"{key}\" would be the {}th",
            MAX_TAGS + 1
        ));
    }
    None
}

/// The functions the SDK calls instead of the host's off wasm32: the same
/// signatures as the WIT bindings.
pub(crate) mod host {
    use super::*;

    pub fn step(
        name: &str,
        input: &str,
        _options: Option<types::StepOptions>,
    ) -> Result<String, types::StepError> {
        step_outcome(name, input)
    }

    pub fn parallel(calls: &[types::Call]) -> Vec<Result<String, types::StepError>> {
        calls
            .iter()
            .map(|c| step_outcome(&c.name, &c.input))
            .collect()
    }

    pub fn now_ms() -> u64 {
        with(|f| f.now)
    }

    pub fn random_u64() -> u64 {
        // splitmix64: a fixed sequence per seed.
        with(|f| {
            f.random = f.random.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = f.random;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        })
    }

    pub fn idempotency_key() -> String {
        with(|f| {
            if f.running.is_empty() {
                "fake-run".to_string()
            } else {
                format!("fake-run/{}", f.running.join("/"))
            }
        })
    }

    pub fn log(level: types::LogLevel, message: &str) {
        with(|f| f.logs.push(format!("{level:?} {message}").to_lowercase()));
    }

    pub fn set_tag(key: &str, value: &str) -> Result<(), String> {
        with(|f| {
            if !f.running.is_empty() {
                return Err("set-tag is a workflow call: a step body cannot set tags".to_string());
            }
            if let Some(refusal) = tag_refusal(&f.tags, key, value) {
                return Err(refusal);
            }
            f.calls.push(FakeCall {
                kind: "tag",
                name: key.into(),
                input: serde_json::Value::String(value.into()),
            });
            f.tags.insert(key.into(), value.into());
            Ok(())
        })
    }

    pub fn sleep(duration_ms: u64) {
        record("sleep", "", &duration_ms.to_string());
        with(|f| f.now = f.now.saturating_add(duration_ms));
    }

    pub fn sleep_until(epoch_ms: u64) {
        record("sleep_until", "", &epoch_ms.to_string());
        with(|f| f.now = f.now.max(epoch_ms));
    }

    pub fn await_event(name: &str, timeout_ms: Option<u64>) -> Result<String, types::WaitError> {
        match event_outcome(name, timeout_ms) {
            (_, Ok(payload)) => Ok(payload),
            (Some(at), Err(timeout)) => {
                with(|f| f.now = at);
                Err(types::WaitError::TimedOut(timeout))
            }
            (None, Err(_)) => panic!(
                "the workflow would wait for event {name:?} forever: give the fake one with .event()"
            ),
        }
    }

    pub fn start_step(name: &str, input: &str, options: Option<types::StepOptions>) -> u32 {
        let outcome = step(name, input, options).map_err(|e| match e {
            types::StepError::Failed(m) => types::HandleError::Failed(m),
            types::StepError::Trapped(m) => types::HandleError::Trapped(m),
            types::StepError::TimedOut(ms) => types::HandleError::TimedOut(ms),
        });
        started(name, Some(now_ms()), outcome)
    }

    pub fn start_child(workflow: &str, input: &str, _options: Option<&types::ChildOptions>) -> u32 {
        record("child", workflow, input);
        let answer = with(|f| {
            f.children
                .get_mut(workflow)
                .and_then(|a| a.next(&format!("child workflow {workflow:?}")))
        });
        // No answer is an error only once its value is needed: a child
        // cancelled first needs none.
        start(Pending {
            name: workflow.into(),
            at: Some(now_ms()),
            missing: answer.is_none(),
            outcome: answer
                .unwrap_or(Ok("null".into()))
                .map_err(types::HandleError::Failed),
            taken: None,
            observed: false,
        })
    }

    pub fn start_timer(duration_ms: u64) -> u32 {
        record("timer", "", &duration_ms.to_string());
        let at = now_ms().saturating_add(duration_ms);
        started("", Some(at), Ok(at.to_string()))
    }

    pub fn start_event(name: &str, timeout_ms: Option<u64>) -> u32 {
        let (at, outcome) = event_outcome(name, timeout_ms);
        start(Pending {
            name: name.into(),
            at,
            taken: outcome.as_ref().ok().cloned(),
            outcome: outcome.map_err(types::HandleError::TimedOut),
            missing: false,
            observed: false,
        })
    }

    fn pending(id: u32) -> Pending {
        with(|f| f.handles.get(id as usize).cloned())
            .unwrap_or_else(|| panic!("handle {id} was not started by this fake"))
    }

    /// Its value, now that an await returns it.
    fn observe(id: u32) -> Result<String, types::HandleError> {
        let p = pending(id);
        if p.missing {
            panic!(
                "the fake has no answer for child workflow {:?}: give it one with .child()",
                p.name
            );
        }
        with(|f| {
            if let Some(h) = f.handles.get_mut(id as usize) {
                h.observed = true;
            }
        });
        p.outcome
    }

    pub fn await_any(handles: &[u32]) -> (u32, Result<String, types::HandleError>) {
        let winner = handles
            .iter()
            .enumerate()
            // Whatever has completed by now did so "now": of those, the
            // first in list order wins, as with the host.
            .filter_map(|(i, id)| pending(*id).at.map(|at| (at.max(now_ms()), i)))
            .min()
            .unwrap_or_else(|| {
                panic!("await-any would wait forever: none of its handles can complete in the fake")
            });
        let (at, index) = winner;
        with(|f| f.now = f.now.max(at));
        (index as u32, observe(handles[index]))
    }

    pub fn await_all(handles: &[u32]) -> Vec<Result<String, types::HandleError>> {
        handles
            .iter()
            .map(|id| {
                let p = pending(*id);
                let at = p.at.unwrap_or_else(|| {
                    panic!("await-all would wait forever for handle {id} in the fake")
                });
                with(|f| f.now = f.now.max(at));
                observe(*id)
            })
            .collect()
    }

    pub fn cancel(handle: u32) {
        let name = pending(handle).name;
        record("cancel", &name, "null");
        with(|f| {
            let now = f.now;
            let Some(p) = f.handles.get_mut(handle as usize) else {
                return;
            };
            if p.observed {
                return;
            }
            // An event wait consumes nothing when cancelled.
            if let Some(payload) = p.taken.take() {
                f.events
                    .entry(p.name.clone())
                    .or_default()
                    .push_front(payload);
            }
            p.at = Some(now);
            p.missing = false;
            p.outcome = Err(types::HandleError::Cancelled(
                "cancelled by the workflow".into(),
            ));
        });
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::{
        Child, HandleError, Step, StepError, any, await_event, event, now_ms, sleep, timer,
    };

    fn double(x: u32) -> Result<u32, String> {
        if x == 0 {
            Err("zero".into())
        } else {
            Ok(x * 2)
        }
    }

    const STEPS: StepTable = &[("double", |input: &str| {
        crate::__internal::invoke_step(input, double)
    })];
    const DOUBLE: Step<u32, u32> = Step::named("double");

    #[test]
    fn unrecorded_steps_run_their_body_and_recorded_ones_do_not() {
        let mut fake = Fake::new(STEPS);
        assert_eq!(fake.run(|| DOUBLE.call(&21)), Ok(42));
        assert_eq!(
            fake.run(|| DOUBLE.call(&0)),
            Err(StepError::Failed("zero".into()))
        );
        let mut fake = Fake::new(STEPS)
            .answers("double", [1, 2])
            .fail("double", "down");
        let got: Vec<_> = (0..3).map(|_| fake.run(|| DOUBLE.call(&5))).collect();
        assert_eq!(got, [Ok(1), Ok(2), Err(StepError::Failed("down".into()))]);
        assert_eq!(fake.calls_of("step"), ["double"; 3]);
        assert_eq!(fake.calls()[0].input, serde_json::json!(5));
    }

    #[test]
    fn time_is_virtual_and_a_race_takes_the_earliest() {
        let mut fake = Fake::new(STEPS).now_ms(1_000);
        let (winner, clock) = fake.run(|| {
            sleep(Duration::from_millis(500));
            let t = timer(Duration::from_secs(60));
            let e = event::<bool>("approved", None);
            (any(&[&e, &t]), now_ms())
        });
        assert_eq!((winner, clock), (1, 61_500));
        let mut fake = Fake::new(STEPS).event("approved", true);
        let winner = fake.run(|| {
            let t = timer(Duration::from_secs(60));
            let e = event::<bool>("approved", None);
            let i = any(&[&t, &e]);
            assert_eq!(e.wait(), Ok(true));
            i
        });
        assert_eq!(winner, 1);
    }

    #[test]
    fn waits_without_an_event_time_out_and_children_take_their_answer() {
        let mut fake = Fake::new(STEPS).child("payment", "paid");
        let (wait, child) = fake.run(|| {
            let wait = await_event::<bool>("approved", Some(Duration::from_secs(5)));
            let child = Child::<u32, String>::named("payment").call(&7);
            (wait.is_err(), child)
        });
        assert!(wait);
        assert_eq!(child, Ok("paid".to_string()));
        let mut fake = Fake::new(STEPS).child_fails("payment", "declined");
        let child = fake.run(|| Child::<u32, String>::named("payment").call(&7));
        assert_eq!(child, Err(HandleError::Failed("declined".into())));
    }

    #[test]
    fn sequences_may_fail_and_are_used_up() {
        let mut fake = Fake::new(STEPS)
            .answers("double", [1])
            .fail_once("double", "x");
        assert_eq!(fake.run(|| DOUBLE.call(&5)), Ok(1));
        assert_eq!(
            fake.run(|| DOUBLE.call(&5)),
            Err(StepError::Failed("x".into()))
        );
        let third = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            fake.run(|| DOUBLE.call(&5))
        }));
        assert!(third.is_err(), "a call after the last answer is an error");
    }

    #[test]
    #[should_panic(expected = "does not declare")]
    fn answers_for_an_undeclared_step_are_refused() {
        let mut fake = Fake::new(STEPS).answer("dubble", 1);
        let _ = fake.run(|| DOUBLE.call(&1));
    }

    #[test]
    fn a_cancelled_child_needs_no_answer_and_a_cancelled_wait_gives_its_event_back() {
        let mut fake = Fake::new(STEPS).event("approved", true);
        let (again, calls) = fake.run(|| {
            let child = Child::<u32, String>::named("payment").start(&1);
            child.cancel();
            let wait = event::<bool>("approved", None);
            wait.cancel();
            (await_event::<bool>("approved", None), child.wait())
        });
        assert_eq!(again, Ok(true));
        assert!(matches!(calls, Err(HandleError::Cancelled(_))));
        assert_eq!(fake.calls_of("cancel"), ["payment", "approved"]);
    }

    #[test]
    fn of_handles_already_complete_the_first_in_list_order_wins() {
        let mut fake = Fake::new(STEPS).event("ok", true);
        let winner = fake.run(|| {
            let s = DOUBLE.start(&1);
            sleep(Duration::from_millis(5));
            let e = event::<bool>("ok", None);
            any(&[&e, &s])
        });
        assert_eq!(winner, 0);
    }

    fn tagger(key: String) -> Result<u32, String> {
        crate::set_tag(&key, "from a step")?;
        Ok(1)
    }

    #[test]
    fn tags_are_set_replaced_and_recorded() {
        let mut fake = Fake::new(STEPS);
        let set = fake.run(|| -> Result<(), String> {
            crate::set_tag("customer", "42")?;
            crate::set_tag("region.eu-west_1", "")?;
            crate::set_tag("customer", "43")
        });
        assert_eq!(set, Ok(()));
        let want: BTreeMap<String, String> = [("customer", "43"), ("region.eu-west_1", "")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(fake.tags(), &want);
        assert_eq!(
            fake.calls_of("tag"),
            ["customer", "region.eu-west_1", "customer"]
        );
        assert_eq!(fake.calls()[2].input, serde_json::json!("43"));
    }

    #[test]
    fn invalid_tags_get_the_hosts_errors_and_set_nothing() {
        let mut fake = Fake::new(STEPS);
        let long_key = "k".repeat(65);
        let errors = fake.run(|| {
            [
                crate::set_tag("", "v"),
                crate::set_tag("has space", "v"),
                crate::set_tag("naïve", "v"),
                crate::set_tag(&long_key, "v"),
                crate::set_tag("note", &"é".repeat(129)),
            ]
        });
        let key_error = |k: &str| -> Result<(), String> {
            Err(format!(
                "tag key \"{k}\" must be 1 to 64 characters of a-z, A-Z, 0-9, '_', '.', '-'"
            ))
        };
        assert_eq!(
            errors,
            [
                key_error(""),
                key_error("has space"),
                key_error("naïve"),
                key_error(&long_key),
                Err("tag \"note\": value is 258 bytes, more than 256".to_string()),
            ]
        );
        assert!(fake.tags().is_empty());
        assert!(fake.calls().is_empty());
        // The limits themselves are allowed.
        let ok = fake.run(|| crate::set_tag(&"k".repeat(64), &"v".repeat(256)));
        assert_eq!(ok, Ok(()));
    }

    #[test]
    fn a_workflow_sets_at_most_16_keys_and_may_set_them_again() {
        let mut fake = Fake::new(STEPS);
        let (again, seventeenth) = fake.run(|| {
            for i in 0..16 {
                crate::set_tag(&format!("k{i}"), "v").unwrap();
            }
            (crate::set_tag("k3", "w"), crate::set_tag("k16", "v"))
        });
        assert_eq!(again, Ok(()));
        assert_eq!(
            seventeenth,
            Err(
                "a workflow sets at most 16 tag keys on its run; \"k16\" would be the 17th"
                    .to_string()
            )
        );
        assert_eq!(fake.tags().len(), 16);
        assert_eq!(fake.tags()["k3"], "w");
        assert!(!fake.tags().contains_key("k16"));
    }

    #[test]
    fn a_step_body_cannot_set_tags() {
        const TAG_STEPS: StepTable = &[("tagger", |input: &str| {
            crate::__internal::invoke_step(input, tagger)
        })];
        let mut fake = Fake::new(TAG_STEPS);
        let got = fake.run(|| Step::<String, u32>::named("tagger").call(&"customer".to_string()));
        assert_eq!(
            got,
            Err(StepError::Failed(
                "set-tag is a workflow call: a step body cannot set tags".into()
            ))
        );
        assert!(fake.tags().is_empty());
        assert_eq!(fake.calls_of("tag"), Vec::<&str>::new());
    }

    #[test]
    #[should_panic(expected = "outside the durable host")]
    fn a_durable_call_outside_the_fake_says_what_to_do() {
        let _ = DOUBLE.call(&1);
    }
}
