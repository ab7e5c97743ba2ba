//! `durable build`: builds a project folder into `build/NAME.wasm` with its
//! language's tool, and the WIT from this binary. It installs nothing: a
//! missing tool is an error that names the command that installs it.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::embedded::{SDK_PYTHON, WIT, write_tree};
use crate::project::{BUILD_DIR, Project};
use crate::scaffold::VENDORED_SDK;
use crate::wit::durable_interface;
use crate::{KitError, Lang};

/// The componentize-py this repository builds Python guests with.
const COMPONENTIZE_PY: &str = "componentize-py==0.25.1";

/// A finished build.
#[derive(Debug)]
pub struct Built {
    /// The component: `build/NAME.wasm` in the project.
    pub component: PathBuf,
    /// The tool that built it, for the message.
    pub tool: &'static str,
}

/// Builds the project in `dir`. The tools' own messages go to this
/// process's stderr as they come.
///
/// # Errors
/// Not a project, a missing tool (with the command that installs it), or a
/// tool that failed.
pub fn build(dir: &Path) -> Result<Built, KitError> {
    let project = Project::open(dir)?;
    let before = modified(&project.component());
    let tool = match project.lang {
        Lang::Rust => rust(&project)?,
        Lang::Python => python(&project)?,
        Lang::Js => js(&project)?,
    };
    // A tool can exit 0 without writing anything (a usage message): the
    // component must exist and be new, or the build did not happen.
    let after = modified(&project.component());
    if after.is_none() || after == before {
        return Err(KitError::ToolFailed {
            tool: tool.to_string(),
            status: format!("it wrote no new {}", project.component().display()),
        });
    }
    Ok(Built {
        component: project.component(),
        tool,
    })
}

/// When `path` was last written, if it exists.
fn modified(path: &Path) -> Option<std::time::SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// A scratch folder inside `build/`, emptied first: the WIT and copies of
/// the sources the tools read.
fn work_dir(project: &Project) -> Result<PathBuf, KitError> {
    let work = project.dir.join(BUILD_DIR).join(".work");
    if work.exists() {
        std::fs::remove_dir_all(&work).map_err(|e| KitError::io(&work, e))?;
    }
    std::fs::create_dir_all(&work).map_err(|e| KitError::io(&work, e))?;
    Ok(work)
}

/// Runs `cmd`, all its output to our stderr (our stdout is the
/// component's path alone); fails unless it exits 0.
fn run(mut cmd: Command, tool: &str) -> Result<(), KitError> {
    let status = cmd
        // componentize-py is Rust inside: its backtraces are not the author's.
        .env_remove("RUST_BACKTRACE")
        .stdin(Stdio::null())
        .stdout(std::io::stderr())
        .stderr(Stdio::inherit())
        .status()
        .map_err(|e| KitError::ToolFailed {
            tool: tool.to_string(),
            status: e.to_string(),
        })?;
    if status.success() {
        Ok(())
    } else {
        Err(KitError::ToolFailed {
            tool: tool.to_string(),
            status: status.to_string(),
        })
    }
}

/// Whether `program ARGS` runs and exits 0 (a probe for a tool).
fn works(program: &Path, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// `name` in one of `dirs`, else on the PATH.
fn find_tool(name: &str, dirs: &[PathBuf]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    dirs.iter()
        .cloned()
        .chain(std::env::split_paths(&path))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

fn rust(project: &Project) -> Result<&'static str, KitError> {
    let what = format!("the Rust project {}", project.dir.display());
    let cargo = PathBuf::from(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    if !works(&cargo, &["--version"]) {
        return Err(KitError::MissingTool {
            tool: "cargo".into(),
            what,
            install: "curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh".into(),
        });
    }
    // The Rust toolchain emits a component for wasm32-wasip2 by itself;
    // cargo component (wasm32-wasip1 and an adapter) is the other way.
    let (args, tool): (&[&str], _) = if has_target("wasm32-wasip2") {
        (
            &["build", "--release", "--target", "wasm32-wasip2"],
            "cargo",
        )
    } else if works(&cargo, &["component", "--version"]) {
        (&["component", "build", "--release"], "cargo component")
    } else {
        return Err(KitError::MissingTool {
            tool: "the wasm32-wasip2 target".into(),
            what,
            install: "rustup target add wasm32-wasip2".into(),
        });
    };
    let mut cmd = Command::new(&cargo);
    cmd.current_dir(&project.dir)
        .args(args)
        .arg("--message-format=json-render-diagnostics");
    let output = cmd
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| KitError::ToolFailed {
            tool: tool.into(),
            status: e.to_string(),
        })?;
    if !output.status.success() {
        return Err(KitError::ToolFailed {
            tool: tool.into(),
            status: output.status.to_string(),
        });
    }
    let built =
        cdylib_artifact(&output.stdout, &project.dir.join("Cargo.toml")).ok_or_else(|| {
            KitError::Project(format!(
                "{tool} built no .wasm for {}: is [lib] crate-type = [\"cdylib\"] set?",
                project.dir.display()
            ))
        })?;
    let dest = project.component();
    let out = project.dir.join(BUILD_DIR);
    std::fs::create_dir_all(&out).map_err(|e| KitError::io(&out, e))?;
    std::fs::copy(&built, &dest).map_err(|e| KitError::io(&dest, e))?;
    Ok(tool)
}

/// Whether rustup lists `target` as installed (true when there is no
/// rustup to ask: cargo will say so itself).
fn has_target(target: &str) -> bool {
    match Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
    {
        Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout)
            .lines()
            .any(|l| l.trim() == target),
        _ => true,
    }
}

/// The `.wasm` cargo's JSON messages report for the package of `manifest`.
fn cdylib_artifact(messages: &[u8], manifest: &Path) -> Option<PathBuf> {
    let manifest = manifest.canonicalize().ok()?;
    String::from_utf8_lossy(messages)
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|m| m["reason"] == "compiler-artifact")
        .filter(|m| {
            m["manifest_path"]
                .as_str()
                .and_then(|p| Path::new(p).canonicalize().ok())
                .is_some_and(|p| p == manifest)
        })
        .flat_map(|m| {
            m["filenames"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .filter_map(|f| f.as_str().map(PathBuf::from))
                .collect::<Vec<_>>()
        })
        .rfind(|f| f.extension().is_some_and(|e| e == "wasm"))
}

fn python(project: &Project) -> Result<&'static str, KitError> {
    let tool = find_tool("componentize-py", &[project.dir.join(".venv/bin")]).ok_or_else(|| {
        KitError::MissingTool {
            tool: "componentize-py".into(),
            what: format!("the Python project {}", project.dir.display()),
            install: format!("python3 -m pip install {COMPONENTIZE_PY}"),
        }
    })?;
    let module = python_module(project)?;
    let work = work_dir(project)?;
    // componentize-py writes __pycache__ next to what it reads: it reads
    // copies. Tests and the vendored SDK stay out of the app's folder.
    let app = work.join("app");
    copy_python_sources(&project.dir, &app)?;
    let sdk = work.join("sdk");
    let vendored = project.dir.join(VENDORED_SDK).join("durable_sdk");
    if vendored.is_dir() {
        copy_dir(&vendored, &sdk.join("durable_sdk"))?;
    } else {
        write_tree(SDK_PYTHON, &sdk, |rel| rel.starts_with("durable_sdk/"))?;
    }
    write_tree(WIT, &work.join("wit"), |_| true)?;
    let mut cmd = Command::new(tool);
    cmd.current_dir(&project.dir)
        .arg("-d")
        .arg(work.join("wit"))
        .args(["-w", "workflow", "componentize", &module, "-p"])
        .arg(&app)
        .arg("-p")
        .arg(&sdk)
        .arg("-o")
        .arg(project.component());
    run(cmd, "componentize-py")?;
    Ok("componentize-py")
}

/// `[tool.durable] module` of pyproject.toml, else `app`.
fn python_module(project: &Project) -> Result<String, KitError> {
    let path = project.dir.join("pyproject.toml");
    let text = std::fs::read_to_string(&path).map_err(|e| KitError::io(&path, e))?;
    let doc: toml::Table =
        toml::from_str(&text).map_err(|e| KitError::Project(format!("{}: {e}", path.display())))?;
    let module = doc
        .get("tool")
        .and_then(|t| t.get("durable"))
        .and_then(|t| t.get("module"))
        .and_then(|m| m.as_str())
        .unwrap_or("app");
    // A dotted Python name, never something a tool could read as an option.
    let identifier = |part: &str| {
        part.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
            && part.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    };
    if module.split('.').all(identifier) {
        Ok(module.to_string())
    } else {
        Err(KitError::Project(format!(
            "{}: [tool.durable] module = {module:?} is not a Python module name",
            path.display()
        )))
    }
}

/// Copies the project's Python modules and packages (not its tests, its
/// vendored SDK, or build outputs) into `to`.
fn copy_python_sources(from: &Path, to: &Path) -> Result<(), KitError> {
    std::fs::create_dir_all(to).map_err(|e| KitError::io(to, e))?;
    for entry in std::fs::read_dir(from)
        .map_err(|e| KitError::io(from, e))?
        .flatten()
    {
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        let is_test =
            name.starts_with("test_") || name.ends_with("_test.py") || name == "conftest.py";
        if path.is_file() && name.ends_with(".py") && !is_test {
            std::fs::copy(&path, to.join(&name)).map_err(|e| KitError::io(&path, e))?;
        } else if path.is_dir()
            && path.join("__init__.py").is_file()
            && !["vendor", "build", "tests", ".venv"].contains(&name.as_str())
        {
            copy_dir(&path, &to.join(&name))?;
        }
    }
    Ok(())
}

/// Copies the files of `from` into `to`, recursively (no `__pycache__`).
fn copy_dir(from: &Path, to: &Path) -> Result<(), KitError> {
    std::fs::create_dir_all(to).map_err(|e| KitError::io(to, e))?;
    for entry in std::fs::read_dir(from)
        .map_err(|e| KitError::io(from, e))?
        .flatten()
    {
        let path = entry.path();
        let dest = to.join(entry.file_name());
        if path.is_dir() {
            if entry.file_name() != "__pycache__" {
                copy_dir(&path, &dest)?;
            }
        } else {
            std::fs::copy(&path, &dest).map_err(|e| KitError::io(&path, e))?;
        }
    }
    Ok(())
}

fn js(project: &Project) -> Result<&'static str, KitError> {
    let what = format!("the JavaScript project {}", project.dir.display());
    if !works(Path::new("node"), &["--version"]) {
        return Err(KitError::MissingTool {
            tool: "node".into(),
            what,
            install: "Node.js 20 or newer from https://nodejs.org (Debian: apt-get install -y nodejs npm)"
                .into(),
        });
    }
    let bin = project.dir.join("node_modules/.bin");
    let (Some(rolldown), Some(componentize)) = (
        find_tool("rolldown", std::slice::from_ref(&bin)),
        find_tool("componentize-js", std::slice::from_ref(&bin)),
    ) else {
        return Err(KitError::MissingTool {
            tool: "the bundler and componentize-js (the project's devDependencies)".into(),
            what,
            install: format!("npm install --prefix {}", project.dir.display()),
        });
    };
    let entry = js_entry(project)?;
    let work = work_dir(project)?;
    let bundle = work.join("bundle.js");
    let mut cmd = Command::new(rolldown);
    cmd.current_dir(&project.dir)
        .arg(&entry)
        .args(["--format", "esm", "--external", &durable_interface(), "-o"])
        .arg(&bundle);
    run(cmd, "rolldown")?;
    // componentize-js wants the WIT folder under its working directory.
    write_tree(WIT, &work.join("wit"), |_| true)?;
    let mut cmd = Command::new(componentize);
    cmd.current_dir(&project.dir)
        .arg(relative(&bundle, &project.dir))
        .arg("--wit")
        .arg(relative(&work.join("wit"), &project.dir))
        .args(["--world-name", "workflow", "-d", "fetch-event", "-o"])
        .arg(project.component());
    run(cmd, "componentize-js")?;
    Ok("rolldown + componentize-js")
}

/// package.json's `main`, else `app.js`.
fn js_entry(project: &Project) -> Result<String, KitError> {
    let path = project.dir.join("package.json");
    let text = std::fs::read_to_string(&path).map_err(|e| KitError::io(&path, e))?;
    let doc: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| KitError::Project(format!("{}: {e}", path.display())))?;
    let main = doc["main"].as_str().unwrap_or("app.js");
    // The entry is a file of the project: no absolute path, no `..`, and
    // never something the bundler could read as an option.
    let inside = Path::new(main).components().all(|c| {
        matches!(
            c,
            std::path::Component::Normal(_) | std::path::Component::CurDir
        )
    });
    if main.is_empty() || main.starts_with('-') || !inside {
        return Err(KitError::Project(format!(
            "{}: \"main\": {main:?} must be a file inside the project (a relative path without ..)",
            path.display()
        )));
    }
    let entry = project.dir.join(main);
    if !entry.is_file() {
        return Err(KitError::Project(format!(
            "{}: \"main\" names {}, which does not exist",
            path.display(),
            entry.display()
        )));
    }
    Ok(format!("./{}", main.trim_start_matches("./")))
}

fn relative(path: &Path, base: &Path) -> PathBuf {
    path.strip_prefix(base)
        .map(Path::to_path_buf)
        .unwrap_or_else(|_| path.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_artifact_is_the_projects_wasm() {
        let dir = tempfile::tempdir().unwrap();
        let manifest = dir.path().join("Cargo.toml");
        std::fs::write(&manifest, "").unwrap();
        let messages = format!(
            "{}\n{}\nnot json\n",
            serde_json::json!({"reason": "compiler-artifact", "manifest_path": "/elsewhere/Cargo.toml",
                "filenames": ["/t/dep.wasm"]}),
            serde_json::json!({"reason": "compiler-artifact", "manifest_path": manifest,
                "filenames": ["/t/x.rlib", "/t/x.wasm"]}),
        );
        assert_eq!(
            cdylib_artifact(messages.as_bytes(), &manifest),
            Some(PathBuf::from("/t/x.wasm"))
        );
        assert_eq!(cdylib_artifact(b"", &manifest), None);
    }

    #[test]
    fn entries_and_modules_never_leave_the_project_or_become_options() {
        use crate::scaffold::{Template, create};
        let parent = tempfile::tempdir().unwrap();
        let js =
            Project::open(&create(parent.path(), "j", Lang::Js, Template::Hello).unwrap()).unwrap();
        assert_eq!(js_entry(&js).unwrap(), "./app.js");
        let manifest = js.dir.join("package.json");
        let original = std::fs::read_to_string(&manifest).unwrap();
        for bad in [
            "--config=evil.mjs",
            "../outside.js",
            "/etc/passwd",
            "",
            "missing.js",
        ] {
            let text = original.replace("\"main\": \"app.js\"", &format!("\"main\": {bad:?}"));
            std::fs::write(&manifest, text).unwrap();
            assert!(js_entry(&js).is_err(), "{bad:?} was accepted");
        }
        let py = Project::open(&create(parent.path(), "p", Lang::Python, Template::Hello).unwrap())
            .unwrap();
        assert_eq!(python_module(&py).unwrap(), "app");
        let manifest = py.dir.join("pyproject.toml");
        let original = std::fs::read_to_string(&manifest).unwrap();
        for bad in ["--help", "../x", "a-b", "1app", ""] {
            let text = original.replace("module = \"app\"", &format!("module = {bad:?}"));
            std::fs::write(&manifest, text).unwrap();
            assert!(python_module(&py).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn a_python_project_needs_componentize_py_and_says_how_to_get_it() {
        let parent = tempfile::tempdir().unwrap();
        let dir = crate::scaffold::create(
            parent.path(),
            "p",
            Lang::Python,
            crate::scaffold::Template::Hello,
        )
        .unwrap();
        // An empty PATH and no .venv: nothing to find.
        let found = find_tool("componentize-py", &[dir.join(".venv/bin")]);
        if found.is_none() {
            let err = build(&dir).unwrap_err().to_string();
            assert!(err.contains("pip install componentize-py"), "{err}");
        }
    }
}
