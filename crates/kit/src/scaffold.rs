//! `durable new`: a project folder that builds and runs as it is, from a
//! template, with the SDK this binary carries vendored into `vendor/`.
//!
//! The templates are this repository's examples (`guest-examples/`), which
//! its tests build and run; only the manifests, the README and the
//! `.gitignore` are written here.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use crate::embedded::{SDK_JS, SDK_PYTHON, SDK_RUST, TEMPLATES, WIT, file, write_file, write_tree};
use crate::wit::VERSION;
use crate::{KitError, Lang};

/// Where the SDK goes inside a new project.
pub const VENDORED_SDK: &str = "vendor/durable-sdk";

/// The tool versions a JavaScript project's `npm install` brings (the ones
/// this repository builds its JS guests with: its package.json).
const COMPONENTIZE_JS: &str = "0.23.0";
const ROLLDOWN: &str = "1.3.2";
const PREVIEW2_SHIM: &str = "0.25.0";

/// What a new project starts as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Template {
    /// Two steps and a workflow that calls them.
    Hello,
    /// The README's demo: a record, then a laptop and access in parallel.
    Onboarding,
    /// Waits for a person's decision (an event) with a timeout, then sleeps.
    Approval,
}

impl Template {
    fn folder(self) -> &'static str {
        match self {
            Template::Hello => "hello",
            Template::Onboarding => "onboarding",
            Template::Approval => "approval",
        }
    }

    /// An input the template's workflow accepts, for the README.
    pub fn example_input(self) -> &'static str {
        match self {
            Template::Hello => r#"{"name":"Ada"}"#,
            Template::Onboarding => r#"{"name":"Ada","email":"ada@example.com"}"#,
            Template::Approval => r#"{"report":"R-1","amount":120}"#,
        }
    }
}

impl fmt::Display for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.folder())
    }
}

impl FromStr for Template {
    type Err = String;

    fn from_str(s: &str) -> Result<Template, String> {
        match s {
            "hello" => Ok(Template::Hello),
            "onboarding" => Ok(Template::Onboarding),
            "approval" => Ok(Template::Approval),
            _ => Err(format!(
                "unknown template {s:?}: hello, onboarding or approval"
            )),
        }
    }
}

/// Creates project `name` of `lang` from `template` in `parent/name` and
/// returns its folder. Nothing is left behind when it fails.
///
/// # Errors
/// A name that is not a lowercase identifier (it names a crate, a Python
/// project and an npm package), a folder that exists and is not empty, or
/// a write that fails.
pub fn create(
    parent: &Path,
    name: &str,
    lang: Lang,
    template: Template,
) -> Result<PathBuf, KitError> {
    check_name(name)?;
    let dir = parent.join(name);
    // Not through a link, not over a file: only a missing or empty folder.
    if let Ok(meta) = std::fs::symlink_metadata(&dir)
        && !meta.is_dir()
    {
        return Err(KitError::Usage(format!(
            "{} exists and is not a folder: pick another name",
            dir.display()
        )));
    }
    let existed = dir.exists();
    if existed
        && std::fs::read_dir(&dir)
            .map_err(|e| KitError::io(&dir, e))?
            .next()
            .is_some()
    {
        return Err(KitError::Usage(format!(
            "{} exists and is not empty: pick another name or folder",
            dir.display()
        )));
    }
    let written = write_project(&dir, name, lang, template);
    if written.is_err() {
        // Best effort: the error being reported matters more.
        if existed {
            let _ = std::fs::remove_dir_all(&dir).and_then(|()| std::fs::create_dir(&dir));
        } else {
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
    written.map(|()| dir)
}

fn check_name(name: &str) -> Result<(), KitError> {
    let ok = name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        Err(KitError::Usage(format!(
            "{name:?} cannot name a project: use lowercase letters, digits, '-' and '_', starting \
             with a letter (at most 64)"
        )))
    }
}

fn write_project(dir: &Path, name: &str, lang: Lang, template: Template) -> Result<(), KitError> {
    let sdk = dir.join(VENDORED_SDK);
    match lang {
        Lang::Rust => {
            write_file(&dir.join("Cargo.toml"), rust_manifest(name).as_bytes())?;
            write_template(dir, template, "", "src/lib.rs", "src/lib.rs")?;
            write_tree(SDK_RUST, &sdk, |_| true)?;
            write_tree(WIT, &sdk.join("wit"), |_| true)?;
            write_file(&dir.join(".gitignore"), b"/target\n/build\n")?;
        }
        Lang::Python => {
            write_file(
                &dir.join("pyproject.toml"),
                python_manifest(name).as_bytes(),
            )?;
            write_template(dir, template, "-py", "app.py", "app.py")?;
            write_template(dir, template, "-py", "test_app.py", "test_app.py")?;
            write_tree(SDK_PYTHON, &sdk, |_| true)?;
            write_file(&dir.join(".gitignore"), b"/build\n__pycache__/\n/.venv\n")?;
        }
        Lang::Js => {
            write_file(&dir.join("package.json"), js_manifest(name).as_bytes())?;
            write_template(dir, template, "-js", "app.js", "app.js")?;
            write_template(dir, template, "-js", "app.test.js", "app.test.js")?;
            write_tree(SDK_JS, &sdk, |_| true)?;
            write_file(&dir.join(".gitignore"), b"/build\n/node_modules\n")?;
        }
    }
    write_file(
        &dir.join("README.md"),
        readme(name, lang, template).as_bytes(),
    )
}

fn write_template(
    dir: &Path,
    template: Template,
    suffix: &str,
    from: &str,
    to: &str,
) -> Result<(), KitError> {
    let rel = format!("{}{suffix}/{from}", template.folder());
    let bytes = file(TEMPLATES, &rel).ok_or_else(|| {
        KitError::Usage(format!(
            "this durable has no {rel} template (a build without it)"
        ))
    })?;
    write_file(&dir.join(to), bytes)
}

fn rust_manifest(name: &str) -> String {
    format!(
        r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2024"
publish = false

[lib]
# A component is a cdylib; `cargo test` still tests the step bodies natively.
crate-type = ["cdylib"]

[dependencies]
# The SDK of the durable that made this project, vendored (durable:workflow@{VERSION}).
durable-sdk = {{ version = "{VERSION}", path = "{VENDORED_SDK}" }}
serde = {{ version = "1", features = ["derive"] }}
serde_json = "1"

# `durable build` runs `cargo build --release --target wasm32-wasip2`;
# `cargo component build --release` builds the same workflow (wasm32-wasip1
# and an adapter): the bindings come from the SDK, so nothing is generated.
[package.metadata.component]
package = "local:{name}"

# A project of its own, even inside another workspace's folder.
[workspace]
"#
    )
}

fn python_manifest(name: &str) -> String {
    format!(
        r#"[project]
name = "{name}"
version = "0.1.0"
requires-python = ">=3.10"
# The SDK of the durable that made this project is vendored in {VENDORED_SDK}
# (durable:workflow@{VERSION}); `durable build` bundles it with componentize-py.
dependencies = ["durable-sdk=={VERSION}"]

[tool.durable]
# The module that declares the workflow.
module = "app"

[tool.pytest.ini_options]
# pytest finds the app and the vendored SDK without installing anything.
pythonpath = [".", "{VENDORED_SDK}"]
"#
    )
}

fn js_manifest(name: &str) -> String {
    let manifest = serde_json::json!({
        "name": name,
        "version": "0.1.0",
        "private": true,
        "type": "module",
        "main": "app.js",
        "scripts": { "build": "durable build .", "test": "node --test" },
        "dependencies": { "durable-sdk": format!("file:{VENDORED_SDK}") },
        "devDependencies": {
            "@bytecodealliance/componentize-js": COMPONENTIZE_JS,
            "@bytecodealliance/preview2-shim": PREVIEW2_SHIM,
            "rolldown": ROLLDOWN,
        },
    });
    let mut text = serde_json::to_string_pretty(&manifest).unwrap_or_default();
    text.push('\n');
    text
}

/// The commands that take a new project from its folder to a run and its
/// tests, each with what it does: the README's block and `durable new`'s
/// "next" list.
pub fn next_steps(name: &str, lang: Lang, template: Template) -> String {
    let (setup, test) = match lang {
        Lang::Rust => ("rustup target add wasm32-wasip2", "cargo test"),
        Lang::Python => (
            "python3 -m pip install componentize-py==0.25.1 pytest",
            "pytest",
        ),
        Lang::Js => ("npm install", "node --test"),
    };
    let mut steps = format!(
        "{setup}   # once: the build tools\n\
         durable build .   # -> build/{name}.wasm\n\
         durable run . --input '{}'\n",
        template.example_input()
    );
    if template == Template::Approval {
        steps.push_str(
            "durable event RUN_ID approval --data '{\"approved\":true}'   # the run waits for it\n",
        );
    }
    steps.push_str(&format!(
        "{test}   # the step bodies, and the workflow against a fake host\n"
    ));
    steps
}

fn readme(name: &str, lang: Lang, template: Template) -> String {
    let (language, file) = match lang {
        Lang::Rust => ("Rust", "src/lib.rs"),
        Lang::Python => ("Python", "app.py"),
        Lang::Js => ("JavaScript", "app.js"),
    };
    format!(
        "# {name}\n\n\
         A durable workflow in {language} ({template} template), made by `durable new`.\n\n\
         ```sh\n{}```\n\n\
         The workflow is in `{file}`; `{VENDORED_SDK}` is the SDK of the durable that made\n\
         this project (durable:workflow@{VERSION}); `durable wit` writes the contract itself.\n",
        next_steps(name, lang, template)
    )
}

/// The files a template needs, by language: for the tests of this crate.
#[cfg(test)]
fn template_files(lang: Lang) -> (&'static str, &'static [&'static str]) {
    match lang {
        Lang::Rust => ("", &["src/lib.rs"]),
        Lang::Python => ("-py", &["app.py", "test_app.py"]),
        Lang::Js => ("-js", &["app.js", "app.test.js"]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEMPLATES_ALL: [Template; 3] =
        [Template::Hello, Template::Onboarding, Template::Approval];

    #[test]
    fn every_template_exists_in_every_language() {
        for lang in Lang::ALL {
            let (suffix, files) = template_files(lang);
            for t in TEMPLATES_ALL {
                for f in files {
                    let rel = format!("{}{suffix}/{f}", t.folder());
                    assert!(file(TEMPLATES, &rel).is_some(), "missing template {rel}");
                }
            }
        }
    }

    #[test]
    fn the_sdks_versions_follow_the_wit() {
        let cargo = std::str::from_utf8(file(SDK_RUST, "Cargo.toml").unwrap()).unwrap();
        assert!(
            cargo.contains(&format!("version = \"{VERSION}\"")),
            "{cargo}"
        );
        let py = std::str::from_utf8(file(SDK_PYTHON, "pyproject.toml").unwrap()).unwrap();
        assert!(py.contains(&format!("version = \"{VERSION}\"")), "{py}");
        let js: serde_json::Value =
            serde_json::from_slice(file(SDK_JS, "package.json").unwrap()).unwrap();
        assert_eq!(js["version"], VERSION);
    }

    #[test]
    fn the_js_tools_are_the_ones_this_repository_builds_with() {
        let root: serde_json::Value =
            serde_json::from_str(include_str!("../../../package.json")).unwrap();
        let dev = &root["devDependencies"];
        assert_eq!(dev["@bytecodealliance/componentize-js"], COMPONENTIZE_JS);
        assert_eq!(dev["rolldown"], ROLLDOWN);
        assert_eq!(dev["@bytecodealliance/preview2-shim"], PREVIEW2_SHIM);
    }

    #[test]
    fn a_project_has_its_manifest_sources_and_sdk() {
        let parent = tempfile::tempdir().unwrap();
        for (lang, marker) in [
            (Lang::Rust, "vendor/durable-sdk/wit/durable.wit"),
            (Lang::Python, "vendor/durable-sdk/durable_sdk/__init__.py"),
            (Lang::Js, "vendor/durable-sdk/package.json"),
        ] {
            let name = format!("p-{lang}");
            let dir = create(parent.path(), &name, lang, Template::Hello).unwrap();
            assert!(dir.join(lang.manifest()).is_file());
            assert!(dir.join(marker).is_file(), "{lang}: {marker}");
            assert!(dir.join("README.md").is_file());
            let project = crate::project::Project::open(&dir).unwrap();
            assert_eq!((project.lang, project.name.as_str()), (lang, name.as_str()));
        }
    }

    #[test]
    fn bad_names_and_full_folders_are_refused_and_leave_nothing() {
        let parent = tempfile::tempdir().unwrap();
        for bad in ["", "Caps", "1st", "a/b", "..", "a b"] {
            assert!(
                create(parent.path(), bad, Lang::Rust, Template::Hello).is_err(),
                "{bad:?}"
            );
        }
        std::fs::create_dir(parent.path().join("full")).unwrap();
        std::fs::write(parent.path().join("full/x"), "keep").unwrap();
        let err = create(parent.path(), "full", Lang::Js, Template::Hello).unwrap_err();
        assert!(err.to_string().contains("not empty"), "{err}");
        assert_eq!(
            std::fs::read_to_string(parent.path().join("full/x")).unwrap(),
            "keep"
        );
    }
}
