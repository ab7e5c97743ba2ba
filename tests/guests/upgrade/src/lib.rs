//! One workflow in five versions, for `durable upgrade-check` and
//! `durable resume --component`. Each package in this directory builds this
//! file with its own feature:
//!
//! - `v1`: `fetch`, `enrich`, `save`;
//! - `append`: v1 and a step `notify` at the end (compatible);
//! - `rename`: `enrich` renamed `enrich_more` (divergent at position 1);
//! - `input`: `enrich` called with another input (divergent at position 1);
//! - `body`: v1's calls, other step bodies (compatible: bodies are not
//!   replayed);
//! - `trap`: v1's first call, then a panic (not compatible: it would fail
//!   the runs it took over).

use durable_sdk::{Error, step};
use serde_json::{Value, json};

fn version() -> &'static str {
    if cfg!(feature = "append") {
        "append"
    } else if cfg!(feature = "rename") {
        "rename"
    } else if cfg!(feature = "input") {
        "input"
    } else if cfg!(feature = "body") {
        "body"
    } else if cfg!(feature = "trap") {
        "trap"
    } else {
        "v1"
    }
}

fn fetch(v: Value) -> Result<Value, String> {
    Ok(json!({ "fetched": v, "by": version() }))
}

fn enrich(v: Value) -> Result<Value, String> {
    Ok(json!({ "enriched": v, "by": version() }))
}

#[cfg_attr(not(feature = "rename"), allow(dead_code))]
fn enrich_more(v: Value) -> Result<Value, String> {
    Ok(json!({ "enriched_more": v, "by": version() }))
}

fn save(v: Value) -> Result<Value, String> {
    Ok(json!({ "saved": v, "by": version() }))
}

#[cfg_attr(not(feature = "append"), allow(dead_code))]
fn notify(v: Value) -> Result<Value, String> {
    Ok(json!({ "notified": v, "by": version() }))
}

fn run(input: Value) -> Result<Value, Error> {
    let fetched = step!(fetch).call(&input)?;
    if cfg!(feature = "trap") {
        panic!("version trap cannot go on after fetch");
    }
    let enriched = if cfg!(feature = "rename") {
        step!(enrich_more).call(&json!(1))?
    } else if cfg!(feature = "input") {
        step!(enrich).call(&json!(2))?
    } else {
        step!(enrich).call(&json!(1))?
    };
    let saved = step!(save).call(&json!(3))?;
    let mut out = json!({ "fetched": fetched, "enriched": enriched, "saved": saved });
    if cfg!(feature = "append") {
        out["notified"] = step!(notify).call(&json!(4))?;
    }
    Ok(out)
}

durable_sdk::workflow!(run: run, steps: [fetch, enrich, enrich_more, save, notify]);
