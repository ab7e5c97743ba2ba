//! The files embedded by `build.rs`, and writing a tree of them to disk.

use std::path::Path;

use crate::KitError;

include!(concat!(env!("OUT_DIR"), "/embedded.rs"));

/// A list of embedded files: path relative to its tree, contents.
pub type Tree = &'static [(&'static str, &'static [u8])];

/// The contents of `rel` in `tree`.
pub fn file(tree: Tree, rel: &str) -> Option<&'static [u8]> {
    tree.iter()
        .find(|(p, _)| *p == rel)
        .map(|(_, bytes)| *bytes)
}

/// Writes the files of `tree` under `dir` whose path `keep` accepts (and
/// the folders they need); returns how many it wrote.
pub fn write_tree(tree: Tree, dir: &Path, keep: impl Fn(&str) -> bool) -> Result<usize, KitError> {
    let mut written = 0;
    for (rel, bytes) in tree.iter().filter(|(rel, _)| keep(rel)) {
        write_file(&dir.join(rel), bytes)?;
        written += 1;
    }
    Ok(written)
}

/// Writes `bytes` to `path`, creating its folder.
pub fn write_file(path: &Path, bytes: &[u8]) -> Result<(), KitError> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| KitError::io(parent, e))?;
    }
    std::fs::write(path, bytes).map_err(|e| KitError::io(path, e))
}
