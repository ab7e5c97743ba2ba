//! testbed's `seq3` scenario after a code change. The input's `variant`
//! says which change: none, the second step renamed to `step_x`;
//! `drop-last`, the third step no longer called; `batch`, the second and
//! third steps called together in a `parallel` batch; `sleep`, a sleep
//! where the second step was. Resuming a `seq3`
//! run with this component must diverge.

use durable_sdk::{Error, parallel, step};
use serde_json::{Value, json};

fn step_a(v: Value) -> Result<Value, String> {
    Ok(json!({ "a": v }))
}

fn step_b(v: Value) -> Result<Value, String> {
    Ok(json!({ "b": v }))
}

fn step_x(v: Value) -> Result<Value, String> {
    Ok(json!({ "x": v }))
}

fn step_c(v: Value) -> Result<Value, String> {
    Ok(json!({ "c": v }))
}

fn run(input: Value) -> Result<Value, Error> {
    let a = step!(step_a).call(&json!(1))?;
    match input["variant"].as_str() {
        Some("drop-last") => {
            let b = step!(step_b).call(&json!(2))?;
            Ok(json!([a, b]))
        }
        Some("sleep") => {
            // A sleep where the history has step_b.
            durable_sdk::sleep(std::time::Duration::from_millis(10));
            Ok(json!([a]))
        }
        Some("batch") => {
            let (b, c) = parallel!(step!(step_b).with(&json!(2)), step!(step_c).with(&json!(3)));
            Ok(json!([a, b?, c?]))
        }
        _ => {
            let x = step!(step_x).call(&json!(2))?;
            let c = step!(step_c).call(&json!(3))?;
            Ok(json!([a, x, c]))
        }
    }
}

durable_sdk::workflow!(run: run, steps: [step_a, step_b, step_x, step_c]);
