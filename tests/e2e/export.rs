//! `durable export` / `durable import`: runs written from SQLite, with
//! their components, and loaded into PostgreSQL (and SQLite) read back the
//! same in `show --json`; an open run goes on there from where it was.

use serde_json::Value;

use crate::polyglot::HIRE;
use crate::util::{Env, wasm};

const REPORT: &str =
    r#"{"report":"R-7","amount":70,"approval_timeout_ms":600000,"pay_delay_ms":0}"#;

/// `show RUN --json` without the numbers the importing database assigns.
fn shown(env: &Env, id: &str) -> Value {
    let mut v = env.run(&["show", id, "--json", "--logs"]).success();
    if let Some(events) = v["events"].as_array_mut() {
        for e in events {
            e.as_object_mut().map(|o| o.remove("seq"));
        }
    }
    v
}

fn export_then_import(to: &Env) {
    let from = Env::new();
    // A finished run that crashed once (two drives), and one that waits
    // for its approval (killed after submitting), with tags.
    from.crash_after(&wasm("onboarding"), HIRE, "o1", "create_record#1");
    from.run(&["resume", "o1"]).success();
    from.run(&[
        "run",
        &wasm("approval"),
        "--input",
        REPORT,
        "--id",
        "a1",
        "--tag",
        "team=ops",
        "--crash-after",
        "submit#1",
    ])
    .expect_code(None);
    from.run(&["event", "a1", "unrelated", "--data", "1"])
        .expect_code(Some(0));

    let exported = from.run(&["export", "--all"]);
    exported.expect_code(Some(0));
    let file = to.dir.path().join("runs.jsonl");
    std::fs::write(&file, exported.stdout()).expect("write the export");
    let lines: Vec<Value> = exported
        .stdout()
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON lines"))
        .collect();
    let kinds: Vec<&str> = lines.iter().filter_map(|l| l["kind"].as_str()).collect();
    assert_eq!(kinds, ["header", "component", "run", "component", "run"]);
    assert!(lines.iter().all(|l| l["durable_export"] == 1));

    let file = file.to_str().expect("utf-8");
    let imported = to.run(&["import", file]).success();
    assert_eq!(imported["runs"], 2, "{imported}");
    assert_eq!(imported["components"], 2, "{imported}");
    for id in ["o1", "a1"] {
        assert_eq!(shown(to, id), shown(&from, id), "run {id}");
    }
    // Again: nothing new.
    let again = to.run(&["import", file]).success();
    assert_eq!(
        (again["runs"].as_u64(), again["existing"].as_u64()),
        (Some(0), Some(2))
    );
    let listed = to.run(&["list", "--tag", "team=ops", "--json"]).stdout();
    assert!(listed.contains("\"a1\""), "{listed}");

    // The waiting run goes on in its new database: submit is recovered.
    to.run(&["event", "a1", "approval", "--data", r#"{"approved":false}"#])
        .expect_code(Some(0));
    let resumed = to.run(&["resume", "a1"]);
    assert_eq!(resumed.success()["status"], "rejected");
    assert!(
        !resumed.stderr().contains("submitting"),
        "{}",
        resumed.stderr()
    );
}

#[test]
fn runs_exported_from_sqlite_import_into_sqlite_with_the_same_history() {
    export_then_import(&Env::new());
}

#[test]
fn postgres_runs_exported_from_sqlite_import_into_postgres_with_the_same_history() {
    export_then_import(&Env::postgres());
}

#[test]
fn a_bad_export_file_is_refused_with_its_line() {
    let env = Env::new();
    let file = env.dir.path().join("bad.jsonl");
    std::fs::write(
        &file,
        "{\"durable_export\":1,\"kind\":\"header\"}\n{\"durable_export\":7,\"kind\":\"run\"}\n",
    )
    .expect("write");
    let run = env.run(&["import", file.to_str().expect("utf-8")]);
    run.expect_code(Some(2));
    assert!(
        run.stderr().contains("line 2: format version 7"),
        "{}",
        run.stderr()
    );
    env.run(&["export", "nope"]).expect_code(Some(3));
    env.run(&["import", "missing.jsonl"]).expect_code(Some(2));
}
