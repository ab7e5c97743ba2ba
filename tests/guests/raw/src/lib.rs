//! A guest that skips the SDK and breaks the contract: its step returns
//! text that is not JSON, and with input `"bad-output"` so does `run`.

// The world also imports wasi:http (for steps): generate its bindings too.
wit_bindgen::generate!({ world: "workflow", path: "../../../wit", generate_all });

use durable::workflow::durable::step;
use durable::workflow::types::{Failure, StepError};

struct Raw;

impl Guest for Raw {
    fn run(input: String) -> Result<String, String> {
        if input.trim() == "\"bad-output\"" {
            return Ok("this is {not JSON".to_string());
        }
        let message = match step("garbage", "null", None) {
            Ok(v) => format!("unexpected value {v}"),
            Err(StepError::Failed(m)) => m,
            Err(other) => format!("{other:?}"),
        };
        Ok(format!("{{\"step_error\": {message:?}}}"))
    }
}

impl exports::durable::workflow::steps::Guest for Raw {
    fn run_step(_name: String, _input: String) -> Result<String, Failure> {
        Ok("{\"unterminated\": ".to_string())
    }
}

export!(Raw);
