//! testbed's `seq3` scenario after a code change: the second step is now
//! `step_x`. Resuming a `seq3` run with this component must diverge.

use durable_sdk::{Error, step};
use serde_json::{Value, json};

fn step_a(v: Value) -> Result<Value, String> {
    Ok(json!({ "a": v }))
}

fn step_x(v: Value) -> Result<Value, String> {
    Ok(json!({ "x": v }))
}

fn step_c(v: Value) -> Result<Value, String> {
    Ok(json!({ "c": v }))
}

fn run(_input: Value) -> Result<Value, Error> {
    let a = step!(step_a).call(&json!(1))?;
    let x = step!(step_x).call(&json!(2))?;
    let c = step!(step_c).call(&json!(3))?;
    Ok(json!([a, x, c]))
}

durable_sdk::workflow!(run: run, steps: [step_a, step_x, step_c]);
