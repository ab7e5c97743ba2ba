//! Embeds the files the kit hands out (the WIT, the three SDKs, the project
//! templates) into the binary: one `include_bytes!` per file, listed in
//! `$OUT_DIR/embedded.rs`. Cargo re-runs this when anything under the listed
//! folders changes, so the binary never carries a stale SDK.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// A tree: its name in the generated code, its folder under the repository
/// root, and the file names it keeps (by suffix).
const TREES: &[(&str, &str, &[&str])] = &[
    ("WIT", "wit", &[".wit"]),
    ("SDK_RUST", "guest-sdk", &["Cargo.toml", "README.md", ".rs"]),
    (
        "SDK_PYTHON",
        "guest-sdk/python",
        &["pyproject.toml", "README.md", ".py"],
    ),
    (
        "SDK_JS",
        "guest-sdk/js",
        &["package.json", "README.md", ".js"],
    ),
    ("TEMPLATES", "guest-examples", &[".rs", ".py", ".js"]),
];

/// Folders never embedded: the frozen older WIT, tests, build outputs, the
/// other SDKs under the Rust one, and its `wit` link (the WIT tree has it).
const SKIP: &[&str] = &[
    "v0.1.0",
    "tests",
    "test",
    "target",
    "node_modules",
    "__pycache__",
    "python",
    "js",
    "wit",
];

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut out = String::new();
    for (name, dir, keep) in TREES {
        let base = root.join(dir);
        println!("cargo:rerun-if-changed={}", base.display());
        let mut files = Vec::new();
        collect(&base, &base, keep, &mut files);
        files.sort();
        writeln!(out, "/// Embedded from `{dir}/`.").unwrap();
        writeln!(out, "pub static {name}: &[(&str, &[u8])] = &[").unwrap();
        for (rel, abs) in files {
            writeln!(
                out,
                "    ({rel:?}, include_bytes!({:?})),",
                abs.display().to_string()
            )
            .unwrap();
        }
        writeln!(out, "];").unwrap();
    }
    let dest = PathBuf::from(std::env::var("OUT_DIR").unwrap()).join("embedded.rs");
    std::fs::write(dest, out).unwrap();
}

fn collect(base: &Path, dir: &Path, keep: &[&str], out: &mut Vec<(String, PathBuf)>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if path.is_dir() {
            if name.starts_with('.') || SKIP.contains(&name.as_str()) {
                continue;
            }
            collect(base, &path, keep, out);
        } else if keep.iter().any(|k| name.ends_with(k)) {
            let rel = path
                .strip_prefix(base)
                .unwrap()
                .to_string_lossy()
                .replace('\\', "/");
            out.push((rel, path.canonicalize().unwrap()));
        }
    }
}
