//! Items the macros expand to. Not a public API.

use std::fmt::Display;

use serde::Serialize;
use serde::de::DeserializeOwned;

wit_bindgen::generate!({
    world: "workflow",
    path: "wit",
    pub_export_macro: true,
    export_macro_name: "__export_workflow",
    default_bindings_module: "durable_sdk::__internal",
    // The world imports wasi:http for steps; `crate::http` uses these
    // bindings. Only what a guest calls ends up imported by its component.
    generate_all,
});

/// The error half of `run-step`.
pub use self::durable::workflow::types::Failure as StepFailure;

/// Runs a step body: decodes `input` (a bad input is a permanent failure),
/// calls `f`, encodes its result.
pub fn invoke_step<I, O, E, F>(input: &str, f: F) -> Result<String, StepFailure>
where
    I: DeserializeOwned,
    O: Serialize,
    E: crate::IntoFailure,
    F: FnOnce(I) -> Result<O, E>,
{
    use StepFailure as Wire;
    let permanent = |message: String| Wire {
        message,
        retryable: false,
    };
    let input: I = serde_json::from_str(input)
        .map_err(|e| permanent(format!("cannot decode the input: {e}")))?;
    let output = f(input).map_err(|e| {
        let f = e.into_failure();
        Wire {
            message: f.message,
            retryable: f.retryable,
        }
    })?;
    serde_json::to_string(&output).map_err(|e| permanent(format!("cannot encode the result: {e}")))
}

/// The error for a step name that is not registered (permanent).
pub fn unknown_step_failure(name: &str, known: &[&str]) -> StepFailure {
    StepFailure {
        message: unknown_step(name, known),
        retryable: false,
    }
}

/// Decodes `input`, calls `f`, encodes its result: the workflow entry point.
pub fn invoke<I, O, E, F>(input: &str, f: F) -> Result<String, String>
where
    I: DeserializeOwned,
    O: Serialize,
    E: Display,
    F: FnOnce(I) -> Result<O, E>,
{
    let input: I =
        serde_json::from_str(input).map_err(|e| format!("cannot decode the input: {e}"))?;
    let output = f(input).map_err(|e| e.to_string())?;
    serde_json::to_string(&output).map_err(|e| format!("cannot encode the result: {e}"))
}

/// The error for a step name that is not registered.
pub fn unknown_step(name: &str, known: &[&str]) -> String {
    format!(
        "this workflow has no step named {name:?} (registered: {}); list it in durable_sdk::workflow!",
        known.join(", ")
    )
}
