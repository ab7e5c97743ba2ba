//! The benchmark workloads' workflow. Every step does trivial work and
//! returns `{"i": i}`, so what is measured is the engine.

use durable_sdk::{Error, parallel, step};
use serde::Deserialize;
use serde_json::{Value, json};

#[derive(Deserialize)]
struct Input {
    mode: String,
    #[serde(default)]
    n: u32,
}

fn step(i: u32) -> Result<Value, String> {
    Ok(json!({ "i": i }))
}

fn create_record(i: u32) -> Result<Value, String> {
    Ok(json!({ "i": i }))
}

fn provision_laptop(i: u32) -> Result<Value, String> {
    Ok(json!({ "i": i }))
}

fn grant_access(i: u32) -> Result<Value, String> {
    Ok(json!({ "i": i }))
}

fn finish(i: u32) -> Result<Value, String> {
    Ok(json!({ "i": i }))
}

fn run(input: Input) -> Result<Value, Error> {
    match input.mode.as_str() {
        // W1 / W3: n sequential steps.
        "seq" => {
            let mut last = json!(null);
            for i in 0..input.n {
                last = step!(step).call(&i)?;
            }
            Ok(json!({ "steps": input.n, "last": last }))
        }
        // W2: one parallel batch of n steps.
        "fanout" => {
            let inputs: Vec<u32> = (0..input.n).collect();
            let results = step!(step).map(&inputs);
            let ok = results.iter().filter(|r| r.is_ok()).count();
            Ok(json!({ "ok": ok }))
        }
        // W4: shaped like onboarding.
        "onboarding" => {
            let record = step!(create_record).call(&input.n)?;
            let (a, b) = parallel!(
                step!(provision_laptop).with(&input.n),
                step!(grant_access).with(&input.n)
            );
            let done = step!(finish).call(&input.n)?;
            Ok(json!({ "record": record, "laptop": a?, "access": b?, "done": done }))
        }
        // W5: a step, a durable sleep of n ms, a step.
        "sleep" => {
            step!(step).call(&0)?;
            durable_sdk::sleep(std::time::Duration::from_millis(u64::from(input.n)));
            let after = step!(step).call(&1)?;
            Ok(json!({ "after": after }))
        }
        // Serve's parked runs: a step, a wait for event `go`, a step.
        "await" => {
            step!(step).call(&0)?;
            let go: Value = durable_sdk::await_event("go", None)?;
            let after = step!(step).call(&1)?;
            Ok(json!({ "go": go, "after": after }))
        }
        other => Err(Error(format!("unknown mode {other:?}"))),
    }
}

durable_sdk::workflow!(run: run, steps: [step, create_record, provision_laptop, grant_access, finish]);
