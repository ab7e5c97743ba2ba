//! The end-to-end tests' workflow. `{"mode": ...}` picks a scenario.
//!
//! Every step body prints `EXEC <idempotency-key>` on stderr when it runs,
//! which is how the tests see, from outside the engine, which bodies ran.

use std::io::Write;
use std::time::Duration;

use std::hash::{BuildHasher, Hasher};

use durable_sdk::{
    Error, Failure, Retry, StepError, idempotency_key, now_ms, parallel, random_u64, step,
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

#[derive(Deserialize)]
struct Input {
    mode: String,
    #[serde(default)]
    n: u32,
    #[serde(default)]
    delay_ms: u64,
    #[serde(default)]
    probes: Vec<Value>,
    /// In `long` mode: a durable sleep of `delay_ms` after every this many
    /// iterations (0: none).
    #[serde(default)]
    sleep_every: u32,
    /// In `fetch` modes: `{"url": ..., "body": ...}`, as the Python and
    /// JavaScript testbeds take it.
    #[serde(default)]
    value: Value,
}

#[derive(Serialize, Deserialize)]
struct Fetch {
    url: String,
    #[serde(default)]
    body: Value,
}

/// POSTs the body as JSON with the SDK's client (the step's idempotency
/// key, redirects followed): 4xx fails for good, 5xx is retried.
fn fetch(f: Fetch) -> Result<Value, Failure> {
    mark();
    let response = durable_sdk::http::post(&f.url)
        .json(&f.body)
        .send()?
        .error_for_status()?;
    Ok(json!({ "status": response.status(), "body": response.text() }))
}

#[derive(Serialize, Deserialize)]
struct Work {
    i: u32,
    delay_ms: u64,
}

/// Says that this body runs: on stderr, and as a line appended to
/// `/exec/log` when the host granted the directory `/exec`.
fn mark() {
    let line = format!("EXEC {}\n", idempotency_key());
    let _ = std::io::stderr().write_all(line.as_bytes());
    if let Ok(mut log) = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open("/exec/log")
    {
        let _ = log.write_all(line.as_bytes());
    }
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

/// Fails until it has been attempted `n` times, counting attempts in a
/// file of the granted directory `/state`.
fn flaky(n: u32) -> Result<Value, String> {
    mark();
    let seen = count_run()?;
    if seen < n {
        return Err(format!("attempt {seen} fails"));
    }
    Ok(json!({ "succeeded_on_attempt": seen }))
}

fn refuse(v: Value) -> Result<Value, Failure> {
    mark();
    Err(Failure::permanent(format!("{v} is never acceptable")))
}

fn spin(_: Value) -> Result<Value, String> {
    mark();
    let mut x: u64 = 0;
    loop {
        x = std::hint::black_box(x.wrapping_add(1));
    }
}

fn bomb(_: Value) -> Result<Value, String> {
    mark();
    let mut hoard: Vec<Vec<u8>> = Vec::new();
    loop {
        hoard.push(vec![1u8; 1 << 20]);
        std::hint::black_box(&hoard);
    }
}

fn big(bytes: usize) -> Result<Value, String> {
    mark();
    Ok(Value::String("x".repeat(bytes)))
}

/// Tries one thing the sandbox may deny, and says what happened.
fn probe(what: Value) -> Result<Value, String> {
    mark();
    let kind = what["kind"].as_str().unwrap_or_default();
    let arg = what["arg"].as_str().unwrap_or_default();
    let result: Result<String, String> = match kind {
        "read" => std::fs::read_to_string(arg).map_err(|e| e.to_string()),
        "list" => std::fs::read_dir(arg)
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .map_err(|e| e.to_string()),
        "write" => std::fs::write(arg, "written by a step")
            .map(|_| "written".to_string())
            .map_err(|e| e.to_string()),
        "env" => std::env::var(arg).map_err(|e| e.to_string()),
        "tcp" => std::net::TcpStream::connect(arg)
            .and_then(|mut s| {
                use std::io::Read;
                let mut buf = String::new();
                s.read_to_string(&mut buf).map(|_| buf)
            })
            .map_err(|e| e.to_string()),
        other => Err(format!("unknown probe {other}")),
    };
    Ok(match result {
        Ok(v) => json!({ "ok": v }),
        Err(e) => json!({ "err": e }),
    })
}

/// What the workflow instance reads from WASI and from the host's recorded
/// sources, in one value.
fn readings() -> Value {
    let wall = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    // RandomState is keyed from WASI random.
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(1);
    json!({ "wall_ms": wall, "wasi_random": h.finish(), "now_ms": now_ms(), "random_u64": random_u64() })
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

/// Counts this body's runs in the granted directory `/state` (one file per
/// idempotency key) and returns the count, this run included.
fn count_run() -> Result<u32, String> {
    let path = format!("/state/{}", idempotency_key().replace('/', "_"));
    let seen: u32 = std::fs::read_to_string(&path)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
        + 1;
    std::fs::write(&path, seen.to_string()).map_err(|e| format!("cannot write {path}: {e}"))?;
    Ok(seen)
}

/// Calls a nested step and reads the recorded clock, then fails (retryably)
/// on its first attempt: the second must recover both from the record.
fn retried_parent(_: Value) -> Result<Value, String> {
    mark();
    let child = step!(echo)
        .call(&json!("child"))
        .map_err(|e| e.to_string())?;
    let now = now_ms();
    if count_run()? < 2 {
        return Err("the first attempt fails after its nested step".into());
    }
    Ok(json!({ "child": child, "now": now }))
}

/// A nested step that fails for good, then a retryable failure of the
/// parent's first attempt.
fn parent_of_refusal(_: Value) -> Result<Value, String> {
    mark();
    let child = describe(step!(refuse).call(&json!("no")));
    if count_run()? < 2 {
        return Err("the first attempt fails after its nested step".into());
    }
    Ok(json!({ "child": child }))
}

/// Steps nested `n` deep.
fn dive(n: u32) -> Result<Value, String> {
    if n == 0 {
        return Ok(json!("bottom"));
    }
    let below = step!(dive)
        .retry(Retry::none())
        .call(&(n - 1))
        .map_err(|e| e.to_string())?;
    Ok(json!({ "depth": n, "below": below }))
}

/// Calls a nested step with an input that differs on every run of the
/// body (real randomness, as step bodies get).
fn unsteady(_: Value) -> Result<Value, String> {
    mark();
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(7);
    let child = step!(echo)
        .call(&json!(h.finish()))
        .map_err(|e| e.to_string())?;
    Ok(json!({ "child": child }))
}

/// One nested step.
fn fan1(i: u32) -> Result<Value, String> {
    let inner = step!(echo).call(&json!(i)).map_err(|e| e.to_string())?;
    Ok(json!({ "i": i, "inner": inner }))
}

/// Tries to sleep in a step body, which only the workflow may do.
fn napper(_: Value) -> Result<Value, String> {
    mark();
    durable_sdk::sleep(Duration::from_millis(10));
    Ok(json!("slept"))
}

/// Fails with a message of `n` bytes.
fn shout(n: usize) -> Result<Value, String> {
    mark();
    Err("x".repeat(n))
}

/// Appends a line to `/state/lines.txt` (a granted directory) and returns
/// how many lines the file has: not idempotent, as `durable check` must
/// find.
fn append_line(_: Value) -> Result<Value, String> {
    mark();
    let path = "/state/lines.txt";
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| format!("cannot open {path}: {e}"))?;
    writeln!(f, "appended").map_err(|e| e.to_string())?;
    let lines = std::fs::read_to_string(path)
        .map_err(|e| e.to_string())?
        .lines()
        .count();
    Ok(json!(lines))
}

/// Passes its own wall-clock reading to a nested step: its nested calls
/// change when it runs again, as `durable check` must find.
fn stamp_parent(_: Value) -> Result<Value, String> {
    mark();
    let wall = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    step!(stamp).call(&wall).map_err(|e| e.to_string())?;
    Ok(json!("stamped"))
}

/// Takes a reading and returns the same every time.
fn stamp(_: u64) -> Result<Value, String> {
    mark();
    Ok(json!("ok"))
}

fn describe(r: Result<Value, StepError>) -> Value {
    match r {
        Ok(v) => json!({ "ok": v }),
        Err(StepError::Failed(m)) => json!({ "failed": m }),
        Err(StepError::Trapped(m)) => json!({ "trapped": m }),
        Err(StepError::TimedOut(ms)) => json!({ "timed_out": ms }),
        Err(StepError::Encoding(m)) => json!({ "encoding": m }),
    }
}

fn run(input: Input) -> Result<Value, Error> {
    match input.mode.as_str() {
        "fetch" => {
            let f: Fetch = serde_json::from_value(input.value)?;
            Ok(step!(fetch).call(&f)?)
        }
        // Workflow code may not send requests: the host fails the run.
        "fetch_in_workflow" => {
            let f: Fetch = serde_json::from_value(input.value)?;
            let response = durable_sdk::http::get(&f.url)
                .send()
                .map_err(|e| Error(e.to_string()))?;
            Ok(json!({ "status": response.status() }))
        }
        // n steps, every fifth one a parallel batch of three, every seventh
        // one a step with nested steps; with `sleep_every`, durable sleeps
        // between them.
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
                if input.sleep_every > 0 && i % input.sleep_every == input.sleep_every - 1 {
                    durable_sdk::sleep(Duration::from_millis(input.delay_ms));
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
            let failed = describe(step!(fail).retry(Retry::none()).call(&json!(1)));
            let after = step!(echo).call(&json!("after"))?;
            Ok(json!({ "fail": failed, "after": after }))
        }
        "trap" => {
            let trapped = describe(step!(explode).retry(Retry::none()).call(&json!(1)));
            let (a, b) = parallel!(
                step!(echo).with(&json!("x")),
                step!(explode).retry(Retry::none()).with(&json!(2))
            );
            Ok(json!({ "trap": trapped, "parallel": [describe(a), describe(b)] }))
        }
        "workflow-panic" => {
            step!(echo).call(&json!("before"))?;
            panic!("the workflow itself panicked")
        }
        "workflow-error" => Err(Error("the workflow gave up".into())),
        "flaky" => {
            let r = step!(flaky)
                .retry(Retry::attempts(5).initial_backoff_ms(10))
                .call(&input.n);
            Ok(describe(r))
        }
        "always-fails" => {
            let r = step!(fail)
                .retry(Retry::attempts(3).initial_backoff_ms(10))
                .call(&json!("again"));
            Ok(describe(r))
        }
        "permanent" => Ok(describe(
            step!(refuse).retry(Retry::attempts(5)).call(&json!(7)),
        )),
        "loop" => {
            let spun = step!(spin)
                .timeout(Duration::from_millis(input.delay_ms))
                .retry(Retry::attempts(2).initial_backoff_ms(10))
                .call(&json!(null));
            let after = step!(echo).call(&json!("still alive"))?;
            Ok(json!({ "loop": describe(spun), "after": after }))
        }
        "bomb" => {
            let r = step!(bomb).retry(Retry::none()).call(&json!(null));
            let after = step!(echo).call(&json!("still alive"))?;
            Ok(json!({ "bomb": describe(r), "after": after }))
        }
        "big" => Ok(describe(step!(big).call(&(input.n as usize)))),
        "history" => {
            for i in 0..input.n {
                step!(big)
                    .retry(Retry::none())
                    .call(&(1000 + i as usize % 2))?;
            }
            Ok(json!("done"))
        }
        "probe" => {
            let results: Vec<Value> = input
                .probes
                .iter()
                .map(|p| {
                    step!(probe)
                        .retry(Retry::none())
                        .call(p)
                        .unwrap_or_else(|e| json!({ "step": e.to_string() }))
                })
                .collect();
            Ok(json!(results))
        }
        "deterministic" => {
            let before = readings();
            println!("READINGS {before}");
            step!(echo).call(&json!("a"))?;
            let after = readings();
            step!(echo).call(&json!("b"))?;
            Ok(json!({ "before": before, "after": after }))
        }
        "seq3" => {
            let a = step!(step_a).call(&json!(1))?;
            let b = step!(step_b).call(&json!(2))?;
            let c = step!(step_c).call(&json!(3))?;
            Ok(json!([a, b, c]))
        }
        "retried-parent" => Ok(step!(retried_parent)
            .retry(Retry::attempts(3).initial_backoff_ms(10))
            .call(&json!(null))?),
        "child-refused" => Ok(step!(parent_of_refusal)
            .retry(Retry::attempts(3).initial_backoff_ms(10))
            .call(&json!(null))?),
        "deep" => Ok(step!(dive).retry(Retry::none()).call(&input.n)?),
        "unsteady" => {
            let u = step!(unsteady).call(&json!(null))?;
            let after = step!(echo).call(&json!("after"))?;
            Ok(json!({ "unsteady": u, "after": after }))
        }
        "wide" => {
            let inputs: Vec<u32> = (0..input.n).collect();
            let results = step!(fan1).retry(Retry::none()).map(&inputs);
            let ok = results.iter().filter(|r| r.is_ok()).count();
            Ok(json!({ "ok": ok, "failed": results.len() - ok }))
        }
        "busy" => {
            step!(echo).call(&json!("before the loop"))?;
            let mut x: u64 = 0;
            loop {
                x = std::hint::black_box(x.wrapping_add(1));
            }
        }
        "slow-retry" => Ok(describe(
            step!(fail)
                .retry(Retry::attempts(5).initial_backoff_ms(20_000))
                .call(&json!("slowly")),
        )),
        "greedy-retry" => Ok(describe(
            step!(fail)
                .retry(Retry::attempts(u32::MAX).initial_backoff_ms(0))
                .call(&json!("again")),
        )),
        "shout" => Ok(describe(
            step!(shout).retry(Retry::none()).call(&(input.n as usize)),
        )),
        "sleep" => {
            let before = step!(echo).call(&json!("before"))?;
            durable_sdk::sleep(Duration::from_millis(input.delay_ms));
            let after = step!(echo).call(&json!("after"))?;
            Ok(json!({ "before": before, "after": after }))
        }
        "events" => {
            // Waits for n events named "ping", then one "pong" with a timeout.
            let mut got = Vec::new();
            for _ in 0..input.n {
                got.push(durable_sdk::await_event::<Value>("ping", None)?);
                step!(echo).call(&json!(got.len()))?;
            }
            let pong = match durable_sdk::await_event::<Value>(
                "pong",
                Some(Duration::from_millis(input.delay_ms)),
            ) {
                Ok(v) => json!({ "pong": v }),
                Err(durable_sdk::WaitError::TimedOut(ms)) => json!({ "timed_out": ms }),
                Err(e) => return Err(e.into()),
            };
            let after = step!(echo).call(&json!("after"))?;
            Ok(json!({ "pings": got, "pong": pong, "after": after }))
        }
        "sleep-in-step" => Ok(describe(
            step!(napper).retry(Retry::attempts(3)).call(&json!(null)),
        )),
        // For `durable check`: a step that is not idempotent between two
        // that are.
        "append" => {
            let before = step!(echo).call(&json!("before"))?;
            let lines = step!(append_line).call(&json!(null))?;
            let after = step!(echo).call(&json!("after"))?;
            Ok(json!({ "before": before, "lines": lines, "after": after }))
        }
        // For `durable check`: a step body whose nested call depends on
        // the wall clock.
        "clock-parent" => {
            let first = step!(echo).call(&json!("first"))?;
            let stamped = step!(stamp_parent).call(&json!(null))?;
            Ok(json!({ "first": first, "stamped": stamped }))
        }
        // Sets each tag of `value` (an object of strings); the host's
        // refusals are returned.
        "tag" => {
            let mut refused = Vec::new();
            for (key, value) in input.value.as_object().into_iter().flatten() {
                if let Err(e) = durable_sdk::set_tag(key, value.as_str().unwrap_or_default()) {
                    refused.push(e);
                }
            }
            let after = step!(echo).call(&json!("tagged"))?;
            Ok(json!({ "refused": refused, "after": after }))
        }
        other => Err(Error(format!("unknown mode {other:?}"))),
    }
}

durable_sdk::workflow!(
    run: run,
    steps: [
        work, echo, fail, explode, step_a, step_b, step_c, fan, flaky, refuse, spin, bomb, big,
        probe, retried_parent, parent_of_refusal, dive, unsteady, fan1, shout, napper, fetch,
        append_line, stamp_parent, stamp
    ]
);
