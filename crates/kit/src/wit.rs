//! The WIT package this host implements, as the binary carries it.

use std::path::{Path, PathBuf};

use crate::KitError;
use crate::embedded::{WIT, write_tree};

/// The WIT package's name.
pub const PACKAGE: &str = "durable:workflow";

/// The WIT package's version; the SDKs' versions follow it.
pub const VERSION: &str = "0.2.0";

/// The interface a guest imports, as componentize-js and the bundler see it.
pub fn durable_interface() -> String {
    format!("{PACKAGE}/durable@{VERSION}")
}

/// Writes the WIT package (`durable.wit`) and its dependencies (`deps/`)
/// into `dir`; returns the files written.
pub fn write(dir: &Path) -> Result<Vec<PathBuf>, KitError> {
    write_tree(WIT, dir, |_| true)?;
    Ok(WIT.iter().map(|(rel, _)| dir.join(rel)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::embedded::file;

    #[test]
    fn the_embedded_wit_is_the_version_the_kit_names() {
        let wit = std::str::from_utf8(file(WIT, "durable.wit").expect("durable.wit")).unwrap();
        assert!(
            wit.contains(&format!("package {PACKAGE}@{VERSION};")),
            "{}",
            &wit[..200]
        );
        assert!(file(WIT, "deps/http/http.wit").is_some());
        assert!(WIT.iter().all(|(rel, _)| !rel.starts_with("v0.1.0")));
    }

    #[test]
    fn write_puts_the_package_and_its_deps_in_the_folder() {
        let dir = tempfile::tempdir().unwrap();
        let files = write(dir.path()).unwrap();
        assert!(files.len() > 5);
        for f in files {
            assert!(f.is_file(), "{}", f.display());
        }
    }
}
