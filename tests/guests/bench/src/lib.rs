//! The benchmark workloads' workflow. Every step does trivial work and
//! returns `{"i": i}`, so what is measured is the engine.

use durable_sdk::{Child, Error, parallel, step};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

#[derive(Deserialize)]
struct Input {
    mode: String,
    #[serde(default)]
    n: u32,
    /// W4 over HTTP: the file each onboarding step appends a line to.
    #[serde(default)]
    file: Option<String>,
}

fn step(i: u32) -> Result<Value, String> {
    Ok(json!({ "i": i }))
}

/// An onboarding step's input: which run, and where to append its line
/// (a file in a granted directory, as the peers' benchmark steps do).
#[derive(Serialize, Deserialize)]
struct Job {
    i: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    file: Option<String>,
}

/// Appends `name i` to the job's file, if it has one; `{"i": i}`.
fn work(name: &str, job: &Job) -> Result<Value, String> {
    if let Some(file) = &job.file {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(file)
            .map_err(|e| format!("{file}: {e}"))?;
        // One write per line: appends of concurrent steps never tear it
        // (`writeln!` on a `File` writes each piece on its own).
        f.write_all(format!("{name} {}\n", job.i).as_bytes())
            .map_err(|e| format!("{file}: {e}"))?;
    }
    Ok(json!({ "i": job.i }))
}

fn create_record(job: Job) -> Result<Value, String> {
    work("create_record", &job)
}

fn provision_laptop(job: Job) -> Result<Value, String> {
    work("provision_laptop", &job)
}

fn grant_access(job: Job) -> Result<Value, String> {
    work("grant_access", &job)
}

fn finish(job: Job) -> Result<Value, String> {
    work("finish", &job)
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
            let job = Job {
                i: input.n,
                file: input.file,
            };
            let record = step!(create_record).call(&job)?;
            let (a, b) = parallel!(
                step!(provision_laptop).with(&job),
                step!(grant_access).with(&job)
            );
            let done = step!(finish).call(&job)?;
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
        // W6: n child workflows (`bench` again, two steps each) started at
        // once and awaited all.
        "parent" => {
            let children: Vec<_> = (0..input.n)
                .map(|i| {
                    Child::<Value, Value>::named("bench").start(&json!({"mode": "leaf", "n": i}))
                })
                .collect();
            let mut sum = 0;
            for r in durable_sdk::all(&children) {
                sum += r?["i"].as_u64().unwrap_or(0);
            }
            Ok(json!({ "children": input.n, "sum": sum }))
        }
        // W6's child: two steps.
        "leaf" => {
            step!(step).call(&input.n)?;
            Ok(step!(step).call(&input.n)?)
        }
        // Serve's concurrent starts: runs that park at once on event `go`.
        "park" => {
            let go: Value = durable_sdk::await_event("go", None)?;
            Ok(json!({ "go": go }))
        }
        other => Err(Error(format!("unknown mode {other:?}"))),
    }
}

durable_sdk::workflow!(run: run, steps: [step, create_record, provision_laptop, grant_access, finish]);
