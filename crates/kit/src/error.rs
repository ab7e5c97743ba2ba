//! The kit's errors: each says what to do about it.

use std::path::{Path, PathBuf};

/// Why a kit command failed.
#[derive(Debug, thiserror::Error)]
pub enum KitError {
    /// Reading or writing a file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The system's reason.
        #[source]
        source: std::io::Error,
    },
    /// The request itself is wrong (a bad name, a folder that exists).
    #[error("{0}")]
    Usage(String),
    /// The folder is not a project this kit can build, or its manifest is
    /// not readable.
    #[error("{0}")]
    Project(String),
    /// A tool the build needs is not installed. Nothing is installed
    /// silently: the message names the command that installs it.
    #[error("{tool}: not found (needed to build {what}); to install:\n    {install}")]
    MissingTool {
        /// The tool.
        tool: String,
        /// What needs it.
        what: String,
        /// The one command that installs it.
        install: String,
    },
    /// A build tool ran and failed; its own output has been shown.
    #[error("{tool} failed ({status}); its messages are above")]
    ToolFailed {
        /// The command that failed.
        tool: String,
        /// How it ended.
        status: String,
    },
}

impl KitError {
    /// An I/O error on `path`.
    pub fn io(path: &Path, source: std::io::Error) -> KitError {
        KitError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}
