//! Handles: steps, child workflows, timers and event waits that run while
//! the workflow goes on, and the ways to await them.
//!
//! ```ignore
//! use durable_sdk::{any, child, step, timer, event, Error};
//! use std::time::Duration;
//!
//! fn order(o: Order) -> Result<Status, Error> {
//!     let payment = child!(payment).start(&o);          // a run of its own
//!     let stock = step!(reserve_stock).start(&o);       // a step, running now
//!     let approved = event::<Approval>("approved", None);
//!     let expiry = timer(Duration::from_secs(48 * 3600));
//!     if any(&[&approved, &expiry]) == 1 {
//!         payment.cancel();                              // cancelled durably
//!         return Ok(Status::Expired);
//!     }
//!     let (receipt, _) = (payment.wait()?, stock.wait()?);
//!     Ok(Status::Shipped(receipt))
//! }
//! ```
//!
//! Every handle is recorded where it was started, so a replay gets the same
//! handles, and `any` records which one won, so a replay gets the same
//! winner even when the others have completed meanwhile. A handle still
//! pending when the workflow returns is cancelled: nothing outlives it.

use std::fmt;
use std::marker::PhantomData;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

#[cfg(target_arch = "wasm32")]
use crate::__internal::durable::workflow::durable as host;
use crate::__internal::durable::workflow::types;
use crate::Step;
#[cfg(not(target_arch = "wasm32"))]
use crate::testing::host;

/// Why a handle produced no value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HandleError {
    /// A step's body, or a child workflow, failed (or the child could not
    /// start); the message says why.
    Failed(String),
    /// A step's instance trapped.
    Trapped(String),
    /// A step's last attempt, or an event wait, ran out of time (ms).
    TimedOut(u64),
    /// It was cancelled: by [`Handle::cancel`], or a child by someone else.
    Cancelled(String),
    /// The value did not decode into the handle's type (or its input did
    /// not encode).
    Encoding(String),
}

impl fmt::Display for HandleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HandleError::Failed(m) => write!(f, "failed: {m}"),
            HandleError::Trapped(m) => write!(f, "trapped: {m}"),
            HandleError::TimedOut(ms) => write!(f, "timed out after {ms} ms"),
            HandleError::Cancelled(m) => write!(f, "cancelled: {m}"),
            HandleError::Encoding(m) => write!(f, "value encoding: {m}"),
        }
    }
}

impl std::error::Error for HandleError {}

impl From<HandleError> for crate::Error {
    fn from(e: HandleError) -> Self {
        crate::Error(e.to_string())
    }
}

/// A durable operation the workflow started and may await: its value is a
/// `T`.
#[must_use = "a handle that is never awaited is cancelled when the workflow returns"]
pub struct Handle<T> {
    id: u32,
    /// Set when the input could not be encoded: nothing was started.
    broken: Option<String>,
    value: PhantomData<fn() -> T>,
}

/// Anything [`any`] can await: a [`Handle`] of any type.
pub trait Awaitable {
    /// The host's handle (`None` when nothing was started).
    fn handle_id(&self) -> Option<u32>;
}

impl<T> Awaitable for Handle<T> {
    fn handle_id(&self) -> Option<u32> {
        self.broken.is_none().then_some(self.id)
    }
}

impl<T: DeserializeOwned> Handle<T> {
    fn started(id: u32) -> Self {
        Handle {
            id,
            broken: None,
            value: PhantomData,
        }
    }

    fn broken(message: String) -> Self {
        Handle {
            id: u32::MAX,
            broken: Some(message),
            value: PhantomData,
        }
    }

    /// Waits for its value (at once if it has completed).
    pub fn wait(&self) -> Result<T, HandleError> {
        if let Some(m) = &self.broken {
            return Err(HandleError::Encoding(m.clone()));
        }
        let mut all = host::await_all(&[self.id]);
        decode(all.pop().unwrap_or_else(|| {
            Err(types::HandleError::Failed(
                "the host answered no outcome".into(),
            ))
        }))
    }

    /// Cancels it unless an await returned its value already: a running
    /// step is stopped, a child workflow cancelled (durably, with its own
    /// children), an event wait consumes nothing. Waiting on it then gives
    /// [`HandleError::Cancelled`].
    pub fn cancel(&self) {
        if self.broken.is_none() {
            host::cancel(self.id);
        }
    }
}

fn decode<T: DeserializeOwned>(raw: Result<String, types::HandleError>) -> Result<T, HandleError> {
    match raw {
        Ok(json) => serde_json::from_str(&json).map_err(|e| HandleError::Encoding(e.to_string())),
        Err(types::HandleError::Failed(m)) => Err(HandleError::Failed(m)),
        Err(types::HandleError::Trapped(m)) => Err(HandleError::Trapped(m)),
        Err(types::HandleError::TimedOut(ms)) => Err(HandleError::TimedOut(ms)),
        Err(types::HandleError::Cancelled(m)) => Err(HandleError::Cancelled(m)),
    }
}

/// Waits until one of `handles` has completed and returns its index; its
/// value is then [`Handle::wait`]'s at once. The first in list order wins
/// when several have; which one won is recorded, so a replay gets the same.
///
/// # Panics
/// On an empty list (it would wait forever) or a handle whose input could
/// not be encoded (fix the input type).
pub fn any(handles: &[&dyn Awaitable]) -> usize {
    let ids: Vec<u32> = handles
        .iter()
        .map(|h| {
            h.handle_id()
                .expect("any: a handle whose input could not be encoded was started")
        })
        .collect();
    let (index, _) = host::await_any(&ids);
    index as usize
}

/// Waits until all `handles` have completed: their values in order.
pub fn all<T: DeserializeOwned>(handles: &[Handle<T>]) -> Vec<Result<T, HandleError>> {
    let ids: Vec<u32> = handles.iter().filter_map(|h| h.handle_id()).collect();
    let mut answers = host::await_all(&ids).into_iter();
    handles
        .iter()
        .map(|h| match &h.broken {
            Some(m) => Err(HandleError::Encoding(m.clone())),
            None => decode(answers.next().unwrap_or_else(|| {
                Err(types::HandleError::Failed(
                    "the host answered too few outcomes".into(),
                ))
            })),
        })
        .collect()
}

/// Runs `start` on every input with at most `limit` handles pending at
/// once, starting the next as soon as one completes: the values in input
/// order. For fanning out many children (or steps) without running them
/// all at once.
pub fn map_limit<I, T: DeserializeOwned>(
    inputs: impl IntoIterator<Item = I>,
    limit: usize,
    mut start: impl FnMut(I) -> Handle<T>,
) -> Vec<Result<T, HandleError>> {
    let limit = limit.max(1);
    let mut inputs = inputs.into_iter().enumerate();
    let mut results: Vec<Option<Result<T, HandleError>>> = Vec::new();
    let mut pending: Vec<(usize, Handle<T>)> = Vec::new();
    loop {
        while pending.len() < limit {
            let Some((i, input)) = inputs.next() else {
                break;
            };
            results.push(None);
            let h = start(input);
            if h.broken.is_some() {
                results[i] = Some(h.wait());
            } else {
                pending.push((i, h));
            }
        }
        if pending.is_empty() {
            break;
        }
        let ids: Vec<&dyn Awaitable> = pending.iter().map(|(_, h)| h as &dyn Awaitable).collect();
        let won = any(&ids);
        let (i, h) = pending.swap_remove(won);
        results[i] = Some(h.wait());
    }
    results
        .into_iter()
        .map(|r| r.unwrap_or_else(|| Err(HandleError::Failed("not started".into()))))
        .collect()
}

impl<I: Serialize, O: DeserializeOwned> Step<I, O> {
    /// Starts this step with `input` and returns at once: it runs in its
    /// own instance while the workflow goes on (from the workflow's next
    /// wait on). Keyed like [`Step::call`].
    pub fn start(&self, input: &I) -> Handle<O> {
        match serde_json::to_string(input) {
            Ok(json) => Handle::started(host::start_step(self.name(), &json, self.options)),
            Err(e) => Handle::broken(format!("input: {e}")),
        }
    }
}

/// A child workflow: a run of its own, started by this one. Under `durable
/// serve` its name is a registered workflow's; under `durable run`, the same
/// component runs it unless `--link NAME=PATH.wasm` names another.
pub struct Child<I, O> {
    name: &'static str,
    id: Option<String>,
    timeout: Option<Duration>,
    types: PhantomData<fn(I) -> O>,
}

impl<I: Serialize, O: DeserializeOwned> Child<I, O> {
    /// The child workflow named `name`.
    pub const fn named(name: &'static str) -> Self {
        Child {
            name,
            id: None,
            timeout: None,
            types: PhantomData,
        }
    }

    /// Gives the child run this id instead of `<parent-id>:<name>-<n>`.
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(id.into());
        self
    }

    /// Gives the child `timeout` from its start: an await that finds it
    /// still running after that cancels it and gives
    /// [`HandleError::TimedOut`].
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Starts it with `input`; its run is committed before this returns.
    pub fn start(&self, input: &I) -> Handle<O> {
        match serde_json::to_string(input) {
            Ok(json) => {
                let options =
                    (self.id.is_some() || self.timeout.is_some()).then(|| types::ChildOptions {
                        id: self.id.clone(),
                        timeout_ms: self
                            .timeout
                            .map(|d| d.as_millis().min(u64::MAX as u128) as u64),
                    });
                Handle::started(host::start_child(self.name, &json, options.as_ref()))
            }
            Err(e) => Handle::broken(format!("input: {e}")),
        }
    }

    /// Starts it and waits for its output.
    pub fn call(&self, input: &I) -> Result<O, HandleError> {
        self.start(input).wait()
    }
}

/// The child workflow named like the identifier: `child!(payment)`.
#[macro_export]
macro_rules! child {
    ($name:ident) => {
        $crate::Child::named(::core::stringify!($name))
    };
}

/// A durable timer of `duration`: its value is the time it fires (ms since
/// the Unix epoch).
pub fn timer(duration: Duration) -> Handle<u64> {
    Handle::started(host::start_timer(
        duration.as_millis().min(u64::MAX as u128) as u64,
    ))
}

/// A wait for the next event named `name` (see [`crate::await_event`]), as a
/// handle; the timeout counts from now.
pub fn event<T: DeserializeOwned>(name: &str, timeout: Option<Duration>) -> Handle<T> {
    let timeout_ms = timeout.map(|d| d.as_millis().min(u64::MAX as u128) as u64);
    Handle::started(host::start_event(name, timeout_ms))
}
