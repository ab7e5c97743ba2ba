//! The end-to-end tests' workflow. `{"mode": ...}` picks a scenario.
//!
//! Every step body prints `EXEC <idempotency-key>` on stderr when it runs,
//! which is how the tests see, from outside the engine, which bodies ran.

use std::io::Write;
use std::time::Duration;

use durable_sdk::{Error, StepError, idempotency_key, parallel, step};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

#[derive(Deserialize)]
struct Input {
    mode: String,
    #[serde(default)]
    n: u32,
    #[serde(default)]
    delay_ms: u64,
}

#[derive(Serialize, Deserialize)]
struct Work {
    i: u32,
    delay_ms: u64,
}

/// One write per line, so lines of parallel steps never interleave.
fn mark() {
    let line = format!("EXEC {}\n", idempotency_key());
    let _ = std::io::stderr().write_all(line.as_bytes());
}

fn work(w: Work) -> Result<Value, String> {
    mark();
    if w.delay_ms > 0 {
        std::thread::sleep(Duration::from_millis(w.delay_ms));
    }
    Ok(json!({ "i": w.i, "square": w.i * w.i }))
}

fn echo(v: Value) -> Result<Value, String> {
    mark();
    Ok(json!({ "echo": v }))
}

fn fail(v: Value) -> Result<Value, String> {
    mark();
    Err(format!("boom: {v}"))
}

fn explode(_: Value) -> Result<Value, String> {
    mark();
    panic!("step exploded on purpose")
}

fn step_a(v: Value) -> Result<Value, String> {
    mark();
    Ok(json!({ "a": v }))
}

fn step_b(v: Value) -> Result<Value, String> {
    mark();
    Ok(json!({ "b": v }))
}

fn step_c(v: Value) -> Result<Value, String> {
    mark();
    Ok(json!({ "c": v }))
}

/// A step whose body calls steps of its own (a nested context).
fn fan(w: Work) -> Result<Value, String> {
    mark();
    let inner = step!(work)
        .map(&[
            Work {
                i: w.i * 10,
                delay_ms: w.delay_ms,
            },
            Work {
                i: w.i * 10 + 1,
                delay_ms: w.delay_ms,
            },
        ])
        .into_iter()
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    Ok(json!({ "fan": w.i, "inner": inner }))
}

fn describe(r: Result<Value, StepError>) -> Value {
    match r {
        Ok(v) => json!({ "ok": v }),
        Err(StepError::Failed(m)) => json!({ "failed": m }),
        Err(StepError::Trapped(m)) => json!({ "trapped": m }),
        Err(StepError::Encoding(m)) => json!({ "encoding": m }),
    }
}

fn run(input: Input) -> Result<Value, Error> {
    match input.mode.as_str() {
        // n steps, every fifth one a parallel batch of three, every seventh
        // one a step with nested steps.
        "long" => {
            let mut out = Vec::new();
            for i in 0..input.n {
                let w = Work {
                    i,
                    delay_ms: input.delay_ms,
                };
                if i % 5 == 4 {
                    let batch = [
                        Work { i: 1000 + i, ..w },
                        Work { i: 2000 + i, ..w },
                        Work { i: 3000 + i, ..w },
                    ];
                    for r in step!(work).map(&batch) {
                        out.push(r?);
                    }
                } else if i % 7 == 6 {
                    out.push(step!(fan).call(&w)?);
                } else {
                    out.push(step!(work).call(&w)?);
                }
            }
            Ok(json!({ "results": out }))
        }
        "repeat" => {
            let a = step!(echo).call(&json!("first"))?;
            let b = step!(echo).call(&json!("second"))?;
            let c = step!(echo).call(&json!("third"))?;
            Ok(json!([a, b, c]))
        }
        "error" => {
            let failed = describe(step!(fail).call(&json!(1)));
            let after = step!(echo).call(&json!("after"))?;
            Ok(json!({ "fail": failed, "after": after }))
        }
        "trap" => {
            let trapped = describe(step!(explode).call(&json!(1)));
            let (a, b) = parallel!(
                step!(echo).with(&json!("x")),
                step!(explode).with(&json!(2))
            );
            Ok(json!({ "trap": trapped, "parallel": [describe(a), describe(b)] }))
        }
        "workflow-panic" => {
            step!(echo).call(&json!("before"))?;
            panic!("the workflow itself panicked")
        }
        "workflow-error" => Err(Error("the workflow gave up".into())),
        "seq3" => {
            let a = step!(step_a).call(&json!(1))?;
            let b = step!(step_b).call(&json!(2))?;
            let c = step!(step_c).call(&json!(3))?;
            Ok(json!([a, b, c]))
        }
        other => Err(Error(format!("unknown mode {other:?}"))),
    }
}

durable_sdk::workflow!(run: run, steps: [work, echo, fail, explode, step_a, step_b, step_c, fan]);
