//! The languages a guest can be written in.

use std::fmt;
use std::str::FromStr;

/// A guest language, each with its SDK and build tool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    /// Rust: cargo (wasm32-wasip2) or cargo component.
    Rust,
    /// Python: componentize-py.
    Python,
    /// JavaScript: rolldown and componentize-js.
    Js,
}

impl Lang {
    /// The manifest file that marks a project of this language.
    pub fn manifest(self) -> &'static str {
        match self {
            Lang::Rust => "Cargo.toml",
            Lang::Python => "pyproject.toml",
            Lang::Js => "package.json",
        }
    }

    /// Every language, in the order folders are recognised.
    pub const ALL: [Lang; 3] = [Lang::Rust, Lang::Js, Lang::Python];
}

impl fmt::Display for Lang {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Lang::Rust => "rust",
            Lang::Python => "python",
            Lang::Js => "js",
        })
    }
}

impl FromStr for Lang {
    type Err = String;

    fn from_str(s: &str) -> Result<Lang, String> {
        match s.to_ascii_lowercase().as_str() {
            "rust" | "rs" => Ok(Lang::Rust),
            "python" | "py" => Ok(Lang::Python),
            "js" | "javascript" | "node" => Ok(Lang::Js),
            _ => Err(format!("unknown language {s:?}: rust, python or js")),
        }
    }
}
