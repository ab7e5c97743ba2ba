//! What a project folder is: its language (from its manifest), its name,
//! and where `durable build` leaves its component.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::{KitError, Lang};

/// Where `durable build` writes components, inside the project.
pub const BUILD_DIR: &str = "build";

/// Folders that hold no sources: build outputs and installed packages.
const NOT_SOURCES: &[&str] = &[
    BUILD_DIR,
    "target",
    "node_modules",
    "__pycache__",
    ".venv",
    ".git",
];

/// Files that are not sources: databases and their journals, components.
const NOT_SOURCE_FILES: &[&str] = &[".db", ".db-wal", ".db-shm", ".db-journal", ".wasm"];

/// A guest project folder.
#[derive(Debug, Clone)]
pub struct Project {
    /// The folder.
    pub dir: PathBuf,
    /// Its language, from its manifest.
    pub lang: Lang,
    /// Its name, from its manifest (the component is `build/NAME.wasm`).
    pub name: String,
}

impl Project {
    /// Reads the project in `dir`: the first of `Cargo.toml`,
    /// `package.json` and `pyproject.toml` that it has names its language.
    ///
    /// # Errors
    /// When `dir` has none of them, or the manifest has no name.
    pub fn open(dir: &Path) -> Result<Project, KitError> {
        if !dir.is_dir() {
            return Err(KitError::Project(format!(
                "{} is not a folder",
                dir.display()
            )));
        }
        let Some(lang) = Lang::ALL
            .into_iter()
            .find(|l| dir.join(l.manifest()).is_file())
        else {
            return Err(KitError::Project(format!(
                "{} is not a guest project: it has no Cargo.toml, package.json or pyproject.toml \
                 (`durable new NAME --lang rust|python|js` makes one)",
                dir.display()
            )));
        };
        let manifest = dir.join(lang.manifest());
        let text = std::fs::read_to_string(&manifest).map_err(|e| KitError::io(&manifest, e))?;
        let name = manifest_name(lang, &text)
            .map_err(|why| KitError::Project(format!("{}: {why}", manifest.display())))?;
        // Absolute: the tools run in the project folder, and the paths
        // given to them must not depend on where `durable` was started.
        let dir = dir.canonicalize().map_err(|e| KitError::io(dir, e))?;
        Ok(Project { dir, lang, name })
    }

    /// Where `durable build` leaves the component.
    pub fn component(&self) -> PathBuf {
        self.dir.join(BUILD_DIR).join(format!("{}.wasm", self.name))
    }

    /// The built component, for `durable run DIR`.
    ///
    /// # Errors
    /// When it has not been built.
    pub fn built_component(&self) -> Result<PathBuf, KitError> {
        let path = self.component();
        if path.is_file() {
            Ok(path)
        } else {
            Err(KitError::Project(format!(
                "{} has no component yet ({} is missing): run `durable build {}` first",
                self.dir.display(),
                path.display(),
                self.dir.display()
            )))
        }
    }

    /// A source file changed after the component was built (the newest
    /// one), if any: `durable run DIR` warns that it runs the old build.
    pub fn changed_since_build(&self) -> Option<PathBuf> {
        let built = std::fs::metadata(self.component())
            .and_then(|m| m.modified())
            .ok()?;
        newest_source(&self.dir)
            .filter(|(_, time)| *time > built)
            .map(|(path, _)| path)
    }
}

/// The newest file under `dir`, build outputs and installed packages aside.
fn newest_source(dir: &Path) -> Option<(PathBuf, SystemTime)> {
    let mut newest: Option<(PathBuf, SystemTime)> = None;
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            let name = entry.file_name();
            let name = name.to_string_lossy();
            // Hidden entries (.pytest_cache, .git), outputs and the default
            // database a run leaves in the folder are not sources.
            if name.starts_with('.') || NOT_SOURCES.contains(&name.as_ref()) {
                continue;
            }
            if kind.is_dir() {
                todo.push(entry.path());
            } else if NOT_SOURCE_FILES.iter().any(|suffix| name.ends_with(suffix)) {
                continue;
            } else if let Ok(time) = entry.metadata().and_then(|m| m.modified())
                && newest.as_ref().is_none_or(|(_, t)| time > *t)
            {
                newest = Some((entry.path(), time));
            }
        }
    }
    newest
}

/// The project's name in its manifest.
fn manifest_name(lang: Lang, text: &str) -> Result<String, String> {
    let name = match lang {
        Lang::Rust | Lang::Python => {
            let doc: toml::Table = toml::from_str(text).map_err(|e| e.to_string())?;
            let table = if lang == Lang::Rust {
                "package"
            } else {
                "project"
            };
            doc.get(table)
                .and_then(|t| t.get("name"))
                .and_then(|n| n.as_str())
                .map(str::to_string)
                .ok_or_else(|| format!("no [{table}] name"))?
        }
        Lang::Js => {
            let doc: serde_json::Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
            doc.get("name")
                .and_then(|n| n.as_str())
                .map(str::to_string)
                .ok_or("no \"name\"")?
        }
    };
    // The name becomes a file name under build/.
    let simple = name.rsplit('/').next().unwrap_or(&name).to_string();
    if simple.is_empty() || simple.starts_with('.') || simple.contains(['\\', '\0']) {
        return Err(format!("the name {name:?} cannot name a file"));
    }
    Ok(simple)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_come_from_each_manifest() {
        assert_eq!(
            manifest_name(Lang::Rust, "[package]\nname = \"a-b\"\n").unwrap(),
            "a-b"
        );
        assert_eq!(
            manifest_name(Lang::Python, "[project]\nname = \"p\"\n").unwrap(),
            "p"
        );
        assert_eq!(
            manifest_name(Lang::Js, r#"{"name": "@scope/j"}"#).unwrap(),
            "j"
        );
        assert!(manifest_name(Lang::Js, r#"{"version": "1"}"#).is_err());
        assert!(manifest_name(Lang::Rust, "[package\n").is_err());
    }

    #[test]
    fn only_a_newer_source_makes_a_build_stale() {
        use crate::scaffold::{Template, create};
        let parent = tempfile::tempdir().unwrap();
        let dir = create(parent.path(), "s", Lang::Js, Template::Hello).unwrap();
        let project = Project::open(&dir).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::create_dir_all(dir.join("build")).unwrap();
        std::fs::write(project.component(), b"\0asm").unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        // What running and testing leave in the folder.
        std::fs::write(dir.join("durable.db"), b"").unwrap();
        std::fs::write(dir.join("durable.db-wal"), b"").unwrap();
        std::fs::create_dir_all(dir.join(".pytest_cache/v")).unwrap();
        std::fs::write(dir.join(".pytest_cache/v/x"), b"").unwrap();
        assert_eq!(project.changed_since_build(), None);
        std::fs::write(dir.join("app.js"), b"// edited").unwrap();
        assert_eq!(project.changed_since_build(), Some(dir.join("app.js")));
    }

    #[test]
    fn a_folder_without_a_manifest_says_how_to_make_one() {
        let dir = tempfile::tempdir().unwrap();
        let err = Project::open(dir.path()).unwrap_err().to_string();
        assert!(err.contains("durable new"), "{err}");
    }
}
