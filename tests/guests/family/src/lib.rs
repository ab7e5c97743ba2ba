//! The end-to-end tests' workflow for handles (WIT 0.2.0): child
//! workflows, races between steps, timers and events, cancels. Its own
//! children run this component too (`durable run` runs an unlinked child
//! name with the parent's component), `{"mode": ...}` picking what each
//! does.
//!
//! Every step body prints `EXEC <idempotency-key>` on stderr when it runs,
//! which is how the tests see, from outside the engine, which bodies ran.

use std::time::Duration;

use durable_sdk::{Child, Error, HandleError, any, event, idempotency_key, map_limit, step, timer};
use serde::Deserialize;
use serde_json::{Value, json};

#[derive(Deserialize)]
struct Input {
    /// No mode (another workflow's input, such as a payment's): `slow`.
    #[serde(default)]
    mode: String,
    #[serde(default)]
    n: u32,
    #[serde(default)]
    limit: usize,
    #[serde(default)]
    i: u64,
    #[serde(default)]
    delay_ms: u64,
    #[serde(default)]
    timeout_ms: u64,
}

fn mark() {
    eprintln!("EXEC {}", idempotency_key());
}

fn double(i: u64) -> Result<u64, String> {
    mark();
    Ok(i * 2)
}

fn inc(i: u64) -> Result<u64, String> {
    mark();
    Ok(i + 1)
}

/// Sleeps `ms` in the step (real time), then answers it.
fn nap(ms: u64) -> Result<u64, String> {
    mark();
    std::thread::sleep(Duration::from_millis(ms));
    Ok(ms)
}

fn after(winner: String) -> Result<String, String> {
    mark();
    Ok(winner)
}

/// The child workflow: this component again, with a mode.
fn family() -> Child<Value, Value> {
    Child::named("family")
}

fn describe(r: Result<Value, HandleError>) -> Value {
    match r {
        Ok(v) => json!({ "ok": v }),
        Err(HandleError::Failed(m)) => json!({ "failed": m }),
        Err(HandleError::Cancelled(m)) => json!({ "cancelled": m }),
        Err(HandleError::TimedOut(t)) => json!({ "timed_out": t }),
        Err(e) => json!({ "error": e.to_string() }),
    }
}

fn run(input: Input) -> Result<Value, Error> {
    match input.mode.as_str() {
        // A child: two steps.
        "leaf" => {
            let d = step!(double).call(&input.i)?;
            Ok(json!(step!(inc).call(&d)?))
        }
        // n children, at most `limit` at once: the sum of theirs.
        "fanout" => {
            let results = map_limit(0..input.n as u64, input.limit, |i| {
                family().start(&json!({"mode": "leaf", "i": i}))
            });
            let mut sum = 0;
            for r in results {
                sum += r?.as_u64().unwrap_or(0);
            }
            Ok(json!({ "children": input.n, "sum": sum }))
        }
        // One child that fails: its error reaches the parent as a value.
        "child_fails" => Ok(describe(family().call(&json!({"mode": "fail"})))),
        "fail" => Err(Error("the child failed on purpose".into())),
        // A child of workflow `nowhere` (not registered, under `durable
        // serve`, until the test registers it): a leaf.
        "stranger" => Ok(describe(
            Child::<Value, Value>::named("nowhere").call(&json!({"mode": "leaf", "i": 2})),
        )),
        // A child that waits for an event that never comes.
        "slow" | "" => {
            let never: Result<Value, _> = durable_sdk::await_event("never", None);
            Ok(json!({ "woke": never.is_ok() }))
        }
        // Starts a slow child, cancels it, awaits it: cancelled.
        "cancel_child" => {
            let child = family().start(&json!({"mode": "slow"}));
            child.cancel();
            Ok(describe(child.wait()))
        }
        // n slow children, awaited all: only a cancel ends it.
        "tree" => {
            let children: Vec<_> = (0..input.n.max(1))
                .map(|_| family().start(&json!({"mode": "slow"})))
                .collect();
            let all = durable_sdk::all(&children);
            Ok(json!(all.into_iter().map(describe).collect::<Vec<_>>()))
        }
        // A slow child with a timeout of `timeout_ms`: it times out.
        "child_timeout" => Ok(describe(
            family()
                .timeout(Duration::from_millis(input.timeout_ms))
                .call(&json!({"mode": "slow"})),
        )),
        // A child whose end the parent records: for the crash points.
        "one_child" => {
            let out = family().call(&json!({"mode": "leaf", "i": input.i}))?;
            Ok(json!({ "child": out }))
        }
        // A timer of `timeout_ms` raced against a step of `delay_ms`, the
        // timer first in the list: the step wins if it is quicker, and a
        // replay keeps the winner whatever has completed since.
        "race_step" => {
            let t = timer(Duration::from_millis(input.timeout_ms));
            let s = step!(nap).start(&input.delay_ms);
            let winner = match any(&[&t, &s]) {
                0 => "timer",
                _ => "step",
            };
            let after = step!(after).call(&winner.to_string())?;
            Ok(json!({ "winner": after }))
        }
        // Event "go" raced against a timer of `timeout_ms`.
        "race_event" => {
            let go = event::<Value>("go", None);
            let t = timer(Duration::from_millis(input.timeout_ms));
            Ok(match any(&[&go, &t]) {
                0 => json!({ "winner": "event", "payload": go.wait()? }),
                _ => {
                    go.cancel();
                    json!({ "winner": "timer" })
                }
            })
        }
        // One step of `delay_ms` (real time): a run that takes a while,
        // for the queues' tests (which read its start and end).
        "nap" => Ok(json!({ "napped": step!(nap).call(&input.delay_ms)?, "i": input.i })),
        // Three steps at once, the results in order.
        "steps" => {
            let hs: Vec<_> = (1..=3u64).map(|i| step!(double).start(&i)).collect();
            let all: Result<Vec<u64>, _> = durable_sdk::all(&hs).into_iter().collect();
            Ok(json!(all?))
        }
        other => Err(Error(format!("unknown mode {other:?}"))),
    }
}

durable_sdk::workflow!(run: run, steps: [double, inc, nap, after]);
