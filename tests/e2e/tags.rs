//! Tags: set by a workflow (`set-tag`) in Rust, Python and JavaScript and
//! at a start (`run --tag`, `POST /v1/runs {"tags"}`), recorded like any
//! durable call (a crash right after one does not lose or repeat it), and
//! found with `durable list --tag` and `GET /v1/runs?tag=`.

use serde_json::{Value, json};

use crate::polyglot::component;
use crate::server::Server;
use crate::util::{Env, wasm};

fn testbeds() -> [(&'static str, String); 3] {
    [
        ("rust", wasm("testbed")),
        ("python", component("testbed-py")),
        ("javascript", component("testbed-js")),
    ]
}

fn tag_input(tags: Value) -> String {
    json!({"mode": "tag", "value": tags}).to_string()
}

/// The ids `durable list --json ARGS` prints, sorted.
fn listed(env: &Env, args: &[&str]) -> Vec<String> {
    let mut all = vec!["list", "--json"];
    all.extend_from_slice(args);
    let out = env.run(&all).success();
    let mut ids: Vec<String> = out
        .as_array()
        .expect("an array")
        .iter()
        .map(|r| r["id"].as_str().unwrap_or_default().to_string())
        .collect();
    ids.sort();
    ids
}

#[test]
fn a_workflow_tags_its_run_in_every_language_and_list_finds_it_after_a_crash() {
    let env = Env::new();
    for (lang, wasm) in testbeds() {
        let id = format!("t-{lang}");
        let input = tag_input(json!({"customer": "42", "bad key": "x", "lang": lang}));
        // Killed right after the first tag's commit, started with a tag.
        env.run(&[
            "run",
            &wasm,
            "--input",
            &input,
            "--id",
            &id,
            "--tag",
            "team=ops",
            "--crash-after",
            "$tag:customer#1",
        ])
        .expect_code(None);
        let resumed = env.run(&["resume", &id]);
        let out = resumed.success();
        assert_eq!(
            out["refused"],
            json!([
                "tag key \"bad key\" must be 1 to 64 characters of a-z, A-Z, 0-9, '_', '.', '-'"
            ]),
            "{lang}: {out}"
        );
        let shown = env.run(&["show", &id, "--json"]).success();
        assert_eq!(
            shown["tags"],
            json!({"customer": "42", "lang": lang, "team": "ops"}),
            "{lang}"
        );
        // Each tag recorded once, across the crash; the refused one not at all.
        let keys: Vec<&str> = shown["steps"]
            .as_array()
            .expect("steps")
            .iter()
            .filter_map(|s| s["key"].as_str())
            .filter(|k| k.starts_with("$tag:"))
            .collect();
        assert_eq!(keys, ["$tag:customer#1", "$tag:lang#1"], "{lang}");
        let text = env.run(&["show", &id]).stdout();
        assert!(text.contains("tags       customer=42 lang="), "{text}");
    }
    assert_eq!(
        listed(&env, &["--tag", "customer=42"]),
        ["t-javascript", "t-python", "t-rust"]
    );
    assert_eq!(
        listed(&env, &["--tag", "customer=42", "--tag", "lang=python"]),
        ["t-python"]
    );
    assert!(listed(&env, &["--tag", "customer=43"]).is_empty());
    assert_eq!(listed(&env, &["--tag", "team=ops"]).len(), 3);

    // A bad --tag is refused before anything starts.
    let bad = env.run(&[
        "--db",
        "x.db",
        "run",
        &wasm("testbed"),
        "--tag",
        "bad key=1",
    ]);
    bad.expect_code(Some(2));
    assert!(
        bad.stderr().contains("must be 1 to 64 characters"),
        "{}",
        bad.stderr()
    );
}

#[test]
fn a_workflow_sets_at_most_16_keys_and_long_values_are_refused() {
    let env = Env::new();
    let mut tags: serde_json::Map<String, Value> =
        (0..17).map(|i| (format!("k{i:02}"), json!("v"))).collect();
    tags.insert("long".into(), json!("x".repeat(257)));
    let out = env
        .run(&[
            "run",
            &wasm("testbed"),
            "--input",
            &tag_input(Value::Object(tags)),
        ])
        .success();
    // Keys in order: k00..k16, then long.
    assert_eq!(
        out["refused"],
        json!([
            "a workflow sets at most 16 tag keys on its run; \"k16\" would be the 17th",
            "tag \"long\": value is 257 bytes, more than 256"
        ]),
        "{out}"
    );
}

#[test]
fn a_server_start_carries_tags_and_the_api_finds_runs_by_tag() {
    let env = Env::new();
    let server = Server::start(&env, &[]);
    let digest = server.upload("testbed");
    for (id, customer) in [("s1", "42"), ("s2", "42"), ("s3", "7")] {
        let (status, body) = server.json(
            "POST",
            "/v1/runs",
            &json!({
                "component": digest,
                "id": id,
                "input": {"mode": "tag", "value": {"plan": "pro"}},
                "tags": {"customer": customer},
            }),
        );
        assert_eq!(status, 201, "{body}");
        server.result(id);
    }
    let ids = |query: &str| {
        let (status, body) = server.call("GET", &format!("/v1/runs?{query}"), b"");
        assert_eq!(status, 200, "{body}");
        let mut ids: Vec<String> = body["runs"]
            .as_array()
            .expect("runs")
            .iter()
            .map(|r| r["id"].as_str().unwrap_or_default().to_string())
            .collect();
        ids.sort();
        (ids, body["counts"].clone())
    };
    let (found, counts) = ids("tag=customer:42&counts=true");
    assert_eq!(found, ["s1", "s2"]);
    assert_eq!(counts["succeeded"], 2, "{counts}");
    assert_eq!(ids("tag=plan:pro").0.len(), 3);
    assert!(ids("tag=customer:nobody").0.is_empty());
    let (_, shown) = server.call("GET", "/v1/runs/s3", b"");
    assert_eq!(shown["tags"], json!({"customer": "7", "plan": "pro"}));

    // Bad tags are a 400 with the reason, and nothing is started.
    let (status, body) = server.call("GET", "/v1/runs?tag=nocolon", b"");
    assert_eq!(status, 400, "{body}");
    let (status, body) = server.json(
        "POST",
        "/v1/runs",
        &json!({"component": digest, "id": "s4", "input": null, "tags": {"a b": "1"}}),
    );
    assert_eq!(status, 400, "{body}");
    assert!(body.to_string().contains("must be 1 to 64"), "{body}");
    let (status, body) = server.json(
        "POST",
        "/v1/runs",
        &json!({"component": digest, "id": "s4", "input": null, "tags": {"n": 1}}),
    );
    assert_eq!(status, 400, "{body}");
    let (status, _) = server.call("GET", "/v1/runs/s4", b"");
    assert_eq!(status, 404);
}
