//! # durable-sdk
//!
//! Write durable workflows in Rust. A workflow is ordinary code that calls
//! *steps*; the `durable` host commits every step's result before your code
//! sees it, and after a crash replays your workflow from the top, answering
//! completed steps from its record instead of running them again.
//!
//! ```ignore
//! use durable_sdk::{step, Error};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Serialize, Deserialize)]
//! struct Order { id: u32 }
//!
//! // A step: any function from one serde value to a Result of another.
//! fn charge(order: Order) -> Result<String, String> {
//!     Ok(format!("receipt-{}", order.id))
//! }
//!
//! // The workflow: deterministic orchestration of steps.
//! fn checkout(order: Order) -> Result<String, Error> {
//!     let receipt = step!(charge).call(&order)?;
//!     Ok(receipt)
//! }
//!
//! durable_sdk::workflow!(run: checkout, steps: [charge]);
//! ```
//!
//! Build with `cargo build --release --target wasm32-wasip2` and run the
//! `.wasm` with `durable run`.
//!
//! ## Rules for workflow code
//! The workflow function must make the same durable calls in the same order
//! every time it runs with the same input and the same step results. Read
//! time and randomness with [`now_ms`] and [`random_u64`] (recorded), not
//! from the OS (frozen in the workflow instance); wait with [`sleep`] and
//! [`await_event`] (durable, and the run holds nothing while it waits). Step bodies are free to do
//! anything the host grants; they run at least once, so give external
//! services the [`idempotency_key`].

#![warn(missing_docs)]

use std::fmt;
use std::marker::PhantomData;

use serde::Serialize;
use serde::de::DeserializeOwned;

#[doc(hidden)]
pub mod __internal;
mod handles;
pub mod http;
pub mod testing;

pub use handles::{Awaitable, Child, Handle, HandleError, all, any, event, map_limit, timer};

use __internal::durable::workflow::types;
// Inside the host the WIT imports; elsewhere (`cargo test`) the fake.
#[cfg(target_arch = "wasm32")]
use __internal::durable::workflow::durable as host;
#[cfg(not(target_arch = "wasm32"))]
use testing::host;

/// Why a step gave no value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepError {
    /// The step body returned an error with this message.
    Failed(String),
    /// The step's instance trapped (for example, it panicked or hit the
    /// memory limit).
    Trapped(String),
    /// The last attempt ran longer than its timeout (in ms).
    TimedOut(u64),
    /// The input could not be encoded, or the result decoded, as the types
    /// at the call site say.
    Encoding(String),
}

impl fmt::Display for StepError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StepError::Failed(m) => write!(f, "step failed: {m}"),
            StepError::Trapped(m) => write!(f, "step trapped: {m}"),
            StepError::TimedOut(ms) => write!(f, "step timed out after {ms} ms"),
            StepError::Encoding(m) => write!(f, "step value encoding: {m}"),
        }
    }
}

impl std::error::Error for StepError {}

/// A step body's error. Any `Display` error a step returns is retryable;
/// return `Failure::permanent(..)` for one that no retry can fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    message: String,
    retryable: bool,
}

impl Failure {
    /// An error that another attempt will not fix: retries stop at once.
    pub fn permanent(message: impl std::fmt::Display) -> Self {
        Failure {
            message: message.to_string(),
            retryable: false,
        }
    }

    /// An error that another attempt may fix (the default for any error).
    pub fn retryable(message: impl std::fmt::Display) -> Self {
        Failure {
            message: message.to_string(),
            retryable: true,
        }
    }

    /// What went wrong.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Whether another attempt may fix it (in tests of step bodies).
    pub fn is_retryable(&self) -> bool {
        self.retryable
    }
}

/// What a step body's error type turns into: any `Display` type is a
/// retryable failure; [`Failure`] says for itself.
pub trait IntoFailure {
    #[doc(hidden)]
    fn into_failure(self) -> Failure;
}

impl IntoFailure for Failure {
    fn into_failure(self) -> Failure {
        self
    }
}

impl<E: std::fmt::Display> IntoFailure for E {
    fn into_failure(self) -> Failure {
        Failure::retryable(self)
    }
}

/// A workflow's error: a message that ends the run as failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error(pub String);

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<StepError> for Error {
    fn from(e: StepError) -> Self {
        Error(e.to_string())
    }
}

impl From<WaitError> for Error {
    fn from(e: WaitError) -> Self {
        Error(e.to_string())
    }
}

impl From<serde_json::Error> for Error {
    fn from(e: serde_json::Error) -> Self {
        Error(format!("JSON: {e}"))
    }
}

impl From<String> for Error {
    fn from(s: String) -> Self {
        Error(s)
    }
}

impl From<&str> for Error {
    fn from(s: &str) -> Self {
        Error(s.to_string())
    }
}

/// A typed handle to a step: its registered name and its input and output
/// types. Make one with [`step!`].
pub struct Step<I, O> {
    name: &'static str,
    options: Option<types::StepOptions>,
    types: PhantomData<fn(I) -> O>,
}

impl<I, O> Clone for Step<I, O> {
    fn clone(&self) -> Self {
        Step {
            name: self.name,
            options: self.options,
            types: PhantomData,
        }
    }
}

/// How a step's failed attempts are retried: `Retry::attempts(5)` and so on.
/// Attempt n+1 waits `initial * factor^(n-1)` (capped), less up to half.
pub type Retry = types::RetryPolicy;

impl types::RetryPolicy {
    /// `n` attempts in all, with waits of 100 ms doubling up to 10 s.
    pub fn attempts(n: u32) -> Self {
        types::RetryPolicy {
            max_attempts: n,
            initial_backoff_ms: 100,
            backoff_factor: 2.0,
            max_backoff_ms: 10_000,
        }
    }

    /// One attempt only.
    pub fn none() -> Self {
        Self::attempts(1)
    }

    /// The same, waiting `ms` before the first retry.
    pub fn initial_backoff_ms(self, ms: u64) -> Self {
        types::RetryPolicy {
            initial_backoff_ms: ms,
            ..self
        }
    }
}

impl<I: Serialize, O: DeserializeOwned> Step<I, O> {
    /// A handle to the step registered as `name`. Prefer [`step!`], which
    /// takes the name and the types from the function itself.
    pub const fn named(name: &'static str) -> Self {
        Step {
            name,
            options: None,
            types: PhantomData,
        }
    }

    /// The same step with its own retry policy instead of the host's.
    pub fn retry(mut self, policy: Retry) -> Self {
        self.options
            .get_or_insert(types::StepOptions {
                retry: None,
                timeout_ms: None,
            })
            .retry = Some(policy);
        self
    }

    /// The same step with its own timeout per attempt instead of the host's.
    pub fn timeout(mut self, timeout: std::time::Duration) -> Self {
        self.options
            .get_or_insert(types::StepOptions {
                retry: None,
                timeout_ms: None,
            })
            .timeout_ms = Some(timeout.as_millis() as u64);
        self
    }

    /// The handle of step function `body`, registered as `name`.
    #[doc(hidden)]
    pub fn of<E>(name: &'static str, _body: fn(I) -> Result<O, E>) -> Self {
        Step::named(name)
    }

    /// The step's name.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Runs the step durably and returns its result: from the record when
    /// it has one, else by running the body (in its own instance) and
    /// committing the result first.
    pub fn call(&self, input: &I) -> Result<O, StepError> {
        let input = encode(input)?;
        decode(host::step(self.name, &input, self.options))
    }

    /// Prepares a call for [`parallel!`].
    pub fn with(&self, input: &I) -> Call<O> {
        Call {
            name: self.name,
            input: encode(input),
            options: self.options,
            output: PhantomData,
        }
    }

    /// Runs the step once per input, all concurrently, and returns the
    /// results in input order.
    pub fn map<'a>(&self, inputs: impl IntoIterator<Item = &'a I>) -> Vec<Result<O, StepError>>
    where
        I: 'a,
    {
        let calls: Vec<Call<O>> = inputs.into_iter().map(|i| self.with(i)).collect();
        run_parallel(calls.iter().map(Call::erase).collect())
            .into_iter()
            .zip(calls)
            .map(|(raw, call)| call.finish(raw))
            .collect()
    }
}

/// A prepared step call, for [`parallel!`].
pub struct Call<O> {
    name: &'static str,
    input: Result<String, StepError>,
    options: Option<types::StepOptions>,
    output: PhantomData<fn() -> O>,
}

/// What a call's slot in a batch holds: the host's answer, or the reason
/// the call was not sent.
#[doc(hidden)]
pub type Raw = Result<Result<String, types::StepError>, StepError>;

impl<O: DeserializeOwned> Call<O> {
    #[doc(hidden)]
    pub fn erase(&self) -> Option<types::Call> {
        let input = self.input.as_ref().ok()?;
        Some(types::Call {
            name: self.name.to_string(),
            input: input.clone(),
            options: self.options,
        })
    }

    #[doc(hidden)]
    pub fn finish(self, raw: Raw) -> Result<O, StepError> {
        decode(raw?)
    }
}

/// Runs prepared calls as one `parallel` batch. Calls whose input could not
/// be encoded are left out of the batch and answered with their error.
#[doc(hidden)]
pub fn run_parallel(calls: Vec<Option<types::Call>>) -> Vec<Raw> {
    let batch: Vec<types::Call> = calls.iter().flatten().cloned().collect();
    let mut answers = host::parallel(&batch).into_iter();
    calls
        .into_iter()
        .map(|c| match c {
            Some(_) => Ok(answers.next().unwrap_or_else(|| {
                Err(types::StepError::Failed(
                    "the host answered too few calls".into(),
                ))
            })),
            None => Err(StepError::Encoding("input could not be encoded".into())),
        })
        .collect()
}

fn encode<I: Serialize>(input: &I) -> Result<String, StepError> {
    serde_json::to_string(input).map_err(|e| StepError::Encoding(format!("input: {e}")))
}

fn decode<O: DeserializeOwned>(raw: Result<String, types::StepError>) -> Result<O, StepError> {
    match raw {
        Ok(json) => {
            serde_json::from_str(&json).map_err(|e| StepError::Encoding(format!("result: {e}")))
        }
        Err(types::StepError::Failed(m)) => Err(StepError::Failed(m)),
        Err(types::StepError::Trapped(m)) => Err(StepError::Trapped(m)),
        Err(types::StepError::TimedOut(ms)) => Err(StepError::TimedOut(ms)),
    }
}

/// The typed handle of a step function: `step!(create_record)`.
///
/// The function's name is the step's registered name; list the function
/// in [`workflow!`] so that the host can dispatch to it.
#[macro_export]
macro_rules! step {
    ($f:ident) => {
        $crate::Step::of(::core::stringify!($f), $f)
    };
}

/// Runs prepared calls concurrently and returns their results as a tuple,
/// in call order: `let (a, b) = parallel!(s1.with(&x), s2.with(&y));`.
#[macro_export]
macro_rules! parallel {
    ($($call:expr),+ $(,)?) => {{
        let calls = ($($call,)+);
        $crate::__parallel_tuple!(calls; $($call),+)
    }};
}

#[doc(hidden)]
#[macro_export]
macro_rules! __parallel_tuple {
    ($c:ident; $a:expr) => {{
        let mut raw = $crate::run_parallel(vec![$c.0.erase()]).into_iter();
        ($c.0.finish(raw.next().expect("one answer per call")),)
    }};
    ($c:ident; $a:expr, $b:expr) => {{
        let mut raw = $crate::run_parallel(vec![$c.0.erase(), $c.1.erase()]).into_iter();
        (
            $c.0.finish(raw.next().expect("one answer per call")),
            $c.1.finish(raw.next().expect("one answer per call")),
        )
    }};
    ($c:ident; $a:expr, $b:expr, $d:expr) => {{
        let mut raw =
            $crate::run_parallel(vec![$c.0.erase(), $c.1.erase(), $c.2.erase()]).into_iter();
        (
            $c.0.finish(raw.next().expect("one answer per call")),
            $c.1.finish(raw.next().expect("one answer per call")),
            $c.2.finish(raw.next().expect("one answer per call")),
        )
    }};
    ($c:ident; $a:expr, $b:expr, $d:expr, $e:expr) => {{
        let mut raw =
            $crate::run_parallel(vec![$c.0.erase(), $c.1.erase(), $c.2.erase(), $c.3.erase()])
                .into_iter();
        (
            $c.0.finish(raw.next().expect("one answer per call")),
            $c.1.finish(raw.next().expect("one answer per call")),
            $c.2.finish(raw.next().expect("one answer per call")),
            $c.3.finish(raw.next().expect("one answer per call")),
        )
    }};
}

/// Wall-clock time in ms since the Unix epoch: recorded the first time,
/// the same value on every replay.
pub fn now_ms() -> u64 {
    host::now_ms()
}

/// A random number: recorded the first time, the same on every replay.
pub fn random_u64() -> u64 {
    host::random_u64()
}

/// Why [`await_event`] returned no event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WaitError {
    /// No event came within the timeout (in ms); replayed as the same.
    TimedOut(u64),
    /// The event's payload did not decode as the type asked for.
    Decode(String),
}

impl fmt::Display for WaitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WaitError::TimedOut(ms) => write!(f, "no event came within {ms} ms"),
            WaitError::Decode(m) => write!(f, "the event's payload did not decode: {m}"),
        }
    }
}

impl std::error::Error for WaitError {}

/// Waits `duration`, durably: the wake-up time is recorded before the run
/// waits, so a run resumed after it does not sleep again and one resumed
/// before it waits only the rest. The run holds nothing meanwhile (the host
/// replays the workflow when it is due). Workflow code only: in a step body
/// it fails the step.
pub fn sleep(duration: std::time::Duration) {
    host::sleep(duration.as_millis().min(u64::MAX as u128) as u64)
}

/// Like [`sleep`], until `epoch_ms` (ms since the Unix epoch); returns at
/// once if that time has passed.
pub fn sleep_until(epoch_ms: u64) {
    host::sleep_until(epoch_ms)
}

/// Waits for the next event named `name` sent to this run (`durable event
/// RUN NAME --data JSON`) and decodes its payload. Events are consumed first
/// in, first out per name, whether they came before or after this call; what
/// was consumed (or a timeout, counted from the first call, across crashes)
/// is recorded and replayed. Workflow code only.
pub fn await_event<T: DeserializeOwned>(
    name: &str,
    timeout: Option<std::time::Duration>,
) -> Result<T, WaitError> {
    let timeout_ms = timeout.map(|d| d.as_millis().min(u64::MAX as u128) as u64);
    match host::await_event(name, timeout_ms) {
        Ok(json) => serde_json::from_str(&json).map_err(|e| WaitError::Decode(e.to_string())),
        Err(types::WaitError::TimedOut(ms)) => Err(WaitError::TimedOut(ms)),
    }
}

/// The same string on every attempt and replay of the current step
/// (`<run-id>/<step-key>`), or `<run-id>` in the workflow itself. Send it
/// to external services so that they can drop duplicates.
pub fn idempotency_key() -> String {
    host::idempotency_key()
}

/// Sets this run's tag `key` to `value` (replacing an earlier value of that
/// key), so that the run can be found by it: `durable list --tag KEY=VALUE`,
/// `GET /v1/runs?tag=KEY:VALUE`. Recorded and replayed like any durable
/// call. A key is 1 to 64 characters of `a-z A-Z 0-9 _ . -`, a value at most
/// 256 bytes, and a workflow sets at most 16 keys on its run (setting a key
/// again does not count). Workflow code only: an invalid tag, a 17th key or
/// a call from a step body returns the host's error and sets nothing.
///
/// ```ignore
/// durable_sdk::set_tag("customer", &order.customer_id.to_string())?;
/// ```
pub fn set_tag(key: &str, value: &str) -> Result<(), String> {
    host::set_tag(key, value)
}

/// Log lines, shown by the host with the run and step they came from.
pub mod log {
    use super::types::LogLevel;

    /// Logs at debug level.
    pub fn debug(message: &str) {
        super::host::log(LogLevel::Debug, message);
    }
    /// Logs at info level.
    pub fn info(message: &str) {
        super::host::log(LogLevel::Info, message);
    }
    /// Logs at warn level.
    pub fn warn(message: &str) {
        super::host::log(LogLevel::Warn, message);
    }
    /// Logs at error level.
    pub fn error(message: &str) {
        super::host::log(LogLevel::Error, message);
    }
}

/// Declares the workflow's entry point and its steps, and exports them.
///
/// ```ignore
/// durable_sdk::workflow!(run: onboarding, steps: [create_record, provision_laptop]);
/// ```
/// `run` names a function `fn(I) -> Result<O, E>` with serde types `I` and
/// `O` and `E: Display`; each step is such a function too. The host calls
/// a step by its function's name.
#[macro_export]
macro_rules! workflow {
    (run: $run:path, steps: [$($step:ident),* $(,)?] $(,)?) => {
        struct __DurableWorkflow;

        impl $crate::__internal::Guest for __DurableWorkflow {
            fn run(input: ::std::string::String) -> ::core::result::Result<::std::string::String, ::std::string::String> {
                $crate::__internal::invoke(&input, $run)
            }
        }

        impl $crate::__internal::exports::durable::workflow::steps::Guest for __DurableWorkflow {
            fn run_step(
                name: ::std::string::String,
                input: ::std::string::String,
            ) -> ::core::result::Result<::std::string::String, $crate::__internal::StepFailure> {
                $(
                    if name == ::core::stringify!($step) {
                        return $crate::__internal::invoke_step(&input, $step);
                    }
                )*
                ::core::result::Result::Err($crate::__internal::unknown_step_failure(
                    &name,
                    &[$(::core::stringify!($step)),*],
                ))
            }
        }

        $crate::__internal::__export_workflow!(__DurableWorkflow with_types_in $crate::__internal);

        /// This workflow's steps by name, for `durable_sdk::testing::Fake::new`.
        #[allow(dead_code)]
        pub(crate) const DURABLE_STEPS: $crate::testing::StepTable = &[$(
            (::core::stringify!($step), |input: &str| $crate::__internal::invoke_step(input, $step)),
        )*];
    };
}
