//! The guest author's kit from outside the repository: in a scratch folder
//! (not under the repository), `durable new`, `durable build` and `durable
//! run DIR` for each language, with a crash and a resume, and the test the
//! template comes with; `durable wit`; the errors an author meets (a tool
//! missing, a folder not built, a component of a newer WIT).

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use crate::polyglot::component;
use crate::util::{Env, bin, root};

const ADA: &str = r#"{"name":"Ada"}"#;

/// What every language's hello template answers for [`ADA`].
fn expected() -> serde_json::Value {
    serde_json::json!({"greeting": "Hello, Ada!", "letters": 8})
}

/// The repository's guest tools (componentize-py and pytest in .venv,
/// node_modules for npm's cache) are set up by the polyglot build, which
/// also builds the examples; the Python and JS tests reuse them.
fn tools() -> PathBuf {
    component("hello-py");
    root()
}

/// A PATH with the repository's .venv/bin first: componentize-py and
/// pytest as an author would have them installed.
fn path_with_venv() -> String {
    let venv = tools().join(".venv/bin");
    format!(
        "{}:{}",
        venv.display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

/// `program ARGS` in `dir`; panics with its output unless it exits 0.
fn ok(mut cmd: Command, what: &str) -> Output {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// `durable ARGS` in `dir`, with the test's extra environment.
fn durable(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut c = Command::new(bin("durable"));
    c.current_dir(dir).args(args).env_remove("RUST_LOG");
    for (k, v) in env {
        c.env(k, v);
    }
    c
}

/// new, build, crash after `greet`, resume: the second step alone runs
/// again and the output is the template's; returns the project folder.
fn new_build_crash_resume(env: &Env, lang: &str, tool_env: &[(&str, &str)]) -> PathBuf {
    let name = format!("hello-{lang}");
    let home = env.dir.path();
    ok(
        durable(home, &["new", &name, "--lang", lang], tool_env),
        "durable new",
    );
    let project = home.join(&name);
    if lang == "js" {
        let mut npm = Command::new("npm");
        npm.current_dir(&project).args([
            "install",
            "--prefer-offline",
            "--no-audit",
            "--no-fund",
            "--silent",
        ]);
        ok(npm, "npm install");
    }
    let built = ok(durable(home, &["build", &name], tool_env), "durable build");
    let printed = String::from_utf8_lossy(&built.stdout).trim().to_string();
    assert!(
        printed.ends_with(&format!("build/{name}.wasm")),
        "{printed}"
    );
    assert!(
        home.join(&printed).is_file() || Path::new(&printed).is_file(),
        "{printed}"
    );

    // `durable run DIR` runs the folder's component; killed after greet.
    let dir = project.to_str().expect("utf-8 path");
    let crashed = env.crash_after(dir, ADA, "h", "greet#1");
    assert_eq!(
        executed(&crashed.stderr()),
        ["greet#1"],
        "{lang}: {}",
        crashed.stderr()
    );
    let resumed = env.run(&["resume", "h"]);
    assert_eq!(resumed.success(), expected(), "{lang}");
    assert_eq!(
        executed(&resumed.stderr()),
        ["count_letters#1"],
        "{lang}: greet ran again"
    );
    project
}

/// The keys of the steps whose bodies ran, from the progress lines
/// (`step KEY executed 1.2 ms`; a step answered from the record says
/// `recovered`).
fn executed(stderr: &str) -> Vec<String> {
    stderr
        .lines()
        .filter_map(|l| {
            let words: Vec<&str> = l.split_whitespace().collect();
            (words.len() >= 3 && words[0] == "step" && words[2] == "executed")
                .then(|| words[1].to_string())
        })
        .collect()
}

#[test]
fn a_rust_project_from_durable_new_builds_runs_survives_a_crash_and_passes_its_tests() {
    let env = Env::new();
    // One target folder for every run of this test: the SDK's dependencies
    // compile once per machine, not once per project.
    let target = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("kit-rust-target");
    let target = target.to_str().expect("utf-8 path");
    let tool_env = [("CARGO_TARGET_DIR", target)];
    let project = new_build_crash_resume(&env, "rust", &tool_env);
    let mut test = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    test.current_dir(&project)
        .arg("test")
        .env("CARGO_TARGET_DIR", target);
    let out = ok(test, "cargo test");
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(report.contains("test result: ok. 3 passed"), "{report}");
}

#[test]
fn a_python_project_from_durable_new_builds_runs_survives_a_crash_and_passes_its_tests() {
    let env = Env::new();
    let path = path_with_venv();
    let project = new_build_crash_resume(&env, "python", &[("PATH", &path)]);
    let mut test = Command::new(tools().join(".venv/bin/pytest"));
    test.current_dir(&project).arg("-q").env("PATH", &path);
    let out = ok(test, "pytest");
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        report.contains("passed") && !report.contains("failed"),
        "{report}"
    );
}

#[test]
fn a_js_project_from_durable_new_builds_runs_survives_a_crash_and_passes_its_tests() {
    let env = Env::new();
    tools();
    let project = new_build_crash_resume(&env, "js", &[]);
    let mut test = Command::new("node");
    test.current_dir(&project).arg("--test");
    let out = ok(test, "node --test");
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        report.contains("# fail 0") && !report.contains("# pass 0"),
        "{report}"
    );
}

#[test]
fn every_template_in_every_language_is_written_and_recognised() {
    let env = Env::new();
    for lang in ["rust", "python", "js"] {
        for template in ["hello", "onboarding", "approval"] {
            let name = format!("{template}-{lang}");
            let out = durable(
                env.dir.path(),
                &["new", &name, "--lang", lang, "--template", template],
                &[],
            )
            .output()
            .expect("durable runs");
            assert!(
                out.status.success(),
                "{name}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            // Not built yet: `durable run DIR` says how to build it.
            let run = env.run(&["run", &env.dir.path().join(&name).display().to_string()]);
            run.expect_code(Some(2));
            assert!(run.stderr().contains("durable build"), "{}", run.stderr());
        }
    }
    // A name that cannot be a package, and a folder that is not empty.
    let bad = durable(env.dir.path(), &["new", "Bad Name", "--lang", "rust"], &[])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    let again = durable(env.dir.path(), &["new", "hello-rust", "--lang", "js"], &[])
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&again.stderr).contains("not empty"));
}

#[test]
fn a_missing_tool_is_named_with_the_command_that_installs_it() {
    let env = Env::new();
    let home = env.dir.path();
    // An empty PATH: no componentize-py, no node.
    let empty = home.join("empty-path");
    std::fs::create_dir(&empty).unwrap();
    let no_tools = [("PATH", empty.to_str().unwrap())];
    ok(
        durable(home, &["new", "py", "--lang", "python"], &[]),
        "durable new",
    );
    let out = durable(home, &["build", "py"], &no_tools).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("componentize-py: not found") && err.contains("pip install componentize-py"),
        "{err}"
    );

    // A tool that exits 0 but writes nothing (as componentize-py does when
    // it prints its usage): not a successful build.
    let fake_tool = home.join("fake-tools");
    std::fs::create_dir(&fake_tool).unwrap();
    std::fs::write(fake_tool.join("componentize-py"), "#!/bin/sh\nexit 0\n").unwrap();
    let chmod = Command::new("chmod")
        .arg("+x")
        .arg(fake_tool.join("componentize-py"))
        .status()
        .unwrap();
    assert!(chmod.success());
    let quiet_tool = [("PATH", fake_tool.to_str().unwrap())];
    let out = durable(home, &["build", "py"], &quiet_tool)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("wrote no new"));
    assert!(out.stdout.is_empty(), "no component path printed");

    ok(
        durable(home, &["new", "js", "--lang", "js"], &[]),
        "durable new",
    );
    let out = durable(home, &["build", "js"], &[]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("npm install"), "{err}");
    assert!(
        !home.join("js/node_modules").exists(),
        "nothing installed silently"
    );

    let out = durable(home, &["build", "."], &[]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("durable new"));
}

#[test]
fn durable_wit_writes_the_package_the_host_implements() {
    let env = Env::new();
    ok(
        durable(env.dir.path(), &["wit", "--out", "contract"], &[]),
        "durable wit",
    );
    let wit = std::fs::read_to_string(env.dir.path().join("contract/durable.wit")).unwrap();
    assert!(wit.contains("package durable:workflow@0.2.0;"));
    assert_eq!(
        wit,
        std::fs::read_to_string(root().join("wit/durable.wit")).unwrap()
    );
    assert!(env.dir.path().join("contract/deps/http/http.wit").is_file());
}

#[test]
fn a_component_of_a_newer_wit_is_refused_naming_both_versions() {
    let env = Env::new();
    let mut bytes = std::fs::read(crate::util::guest("testbed")).unwrap();
    // The same component, as if built against durable:workflow@0.9.0.
    let mut patched = 0;
    for interface in ["durable", "types", "steps"] {
        let from = format!("durable:workflow/{interface}@0.2.0");
        let to = format!("durable:workflow/{interface}@0.9.0");
        let mut i = 0;
        while let Some(at) = find(&bytes[i..], from.as_bytes()) {
            bytes[i + at..i + at + to.len()].copy_from_slice(to.as_bytes());
            i += at + to.len();
            patched += 1;
        }
    }
    assert!(patched >= 2, "the component names durable:workflow@0.2.0");
    let newer = env.dir.path().join("newer.wasm");
    std::fs::write(&newer, bytes).unwrap();
    let run = env.run(&["run", newer.to_str().unwrap(), "--input", "{}"]);
    run.expect_code(Some(2));
    let err = run.stderr();
    assert!(
        err.contains("durable:workflow@0.9.0")
            && err.contains("0.1.0 and 0.2.0")
            && err.contains("upgrade durable"),
        "{err}"
    );
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[test]
fn the_sdk_packages_build_install_and_pass_their_tests() {
    tools();
    let scratch = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let out = tempfile::Builder::new()
        .prefix("sdk-packages-")
        .tempdir_in(&scratch)
        .unwrap();
    for script in ["rust.sh", "python.sh", "js.sh"] {
        let mut cmd = Command::new("bash");
        cmd.arg(root().join("scripts/sdk-packages").join(script))
            .arg(out.path())
            // Not the outer cargo's target folder: it holds that one's lock.
            .env("CARGO_TARGET_DIR", scratch.join("sdk-package-target"));
        ok(cmd, script);
    }
    for file in [
        "durable-sdk-0.2.0.crate",
        "durable_sdk-0.2.0-py3-none-any.whl",
        "durable-sdk-0.2.0.tgz",
    ] {
        assert!(out.path().join(file).is_file(), "{file} was not built");
    }
}
