//! The error of the driver's old entry point, [`Share::materialize`](crate::Share::materialize),
//! kept until the driver uses [`DiskFolder`](crate::DiskFolder). The writing itself is
//! [`write`](crate::write)'s, confined to the share.

use std::path::PathBuf;

use chorus_chunking::RelPath;

/// Why a version could not be written.
#[derive(Debug, thiserror::Error)]
pub enum MaterializeError {
    #[error("{path}: {source}; check the folder's permissions and free space")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// One path could not be written: the reason says what to do.
    #[error("{0}: {1}")]
    Failed(RelPath, String),
    #[error("chunk store: {0}")]
    Chunks(#[from] chorus_chunking::Error),
    #[error("{0}: changed on disk while a version was being written; it is scanned first")]
    Changed(RelPath),
}
