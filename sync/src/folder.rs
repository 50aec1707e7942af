//! The working folder as the engine's driver sees it: something that can be read into a tree
//! and written from one. chorus-folder implements it on the disk (confined to the share,
//! atomic, durable); tests implement it in memory. The rules that keep a user's edits safe
//! (scan before writing, never overwrite what changed since the scan, hold a mass delete, stay
//! out while paused) are the [`Replica`](crate::replica::Replica)'s, on top of this.

use chorus_chunking::{RelPath, TreeManifest, VersionId};

/// One path that could not be written, and why: it stays as it was on disk, the rest of the
/// version is written, and it is tried again by the next write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathFailure {
    pub path: RelPath,
    /// One line that says what went wrong and what the user can do about it.
    pub reason: String,
}

/// What a write did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriteReport {
    /// Paths left as they were, with the reason; every other path now holds the new version.
    pub failed: Vec<PathFailure>,
}

/// Why a folder could not be read or written as a whole.
#[derive(Debug, thiserror::Error)]
pub enum FolderError {
    /// A file changed on disk since the last scan, so the writing stopped there rather than
    /// overwrite it. What was written before is a consistent part of the version; the change
    /// must be scanned (and pushed) first.
    #[error("{0}: changed on disk while a version was being written; it is scanned first")]
    Changed(RelPath),
    /// The folder cannot be used now (missing, not mounted, not a directory, its marker gone):
    /// nothing is scanned or written until it is back. The text says what to do.
    #[error("{0}")]
    Unavailable(String),
    /// The chunk store failed: the state dir's disk.
    #[error("chunk store: {0}")]
    Chunks(#[from] chorus_chunking::Error),
}

/// A working folder.
pub trait Folder {
    /// What the folder holds now. The chunks of every file read are in the chunk store, and
    /// synced, when this returns. A path that cannot be read is never reported as deleted: it
    /// keeps what the folder last knew of it.
    fn scan(&mut self) -> Result<TreeManifest, FolderError>;

    /// As [`scan`](Self::scan), told which paths changed since the last scan (absolute paths,
    /// as the file watcher names them): a folder may look at those alone and take the rest
    /// from what it last knew. The periodic full scan catches what a watcher missed.
    fn scan_paths(&mut self, changed: &[std::path::PathBuf]) -> Result<TreeManifest, FolderError> {
        let _ = changed;
        self.scan()
    }

    /// The folder as it is now, for the check right before a version is written over it:
    /// `None` when the folder can tell that it still holds `expected` (what it last scanned or
    /// wrote) without reading it all: a watcher that heard nothing since. A scan by default.
    /// Either way [`write`](Self::write) still checks each path it replaces or removes.
    fn scan_before_write(
        &mut self,
        expected: VersionId,
    ) -> Result<Option<TreeManifest>, FolderError> {
        let _ = expected;
        self.scan().map(Some)
    }

    /// Turns the folder from `old` (what it held as of the last scan or write) into `new`,
    /// leaving alone, and stopping at, a file changed since the last scan
    /// ([`FolderError::Changed`]). Paths that cannot be written are reported in the
    /// [`WriteReport`]; the next scan still reports what `new` holds there, so a failure never
    /// travels to other machines as a change.
    fn write(&mut self, old: &TreeManifest, new: &TreeManifest)
    -> Result<WriteReport, FolderError>;

    /// True when `path` is excluded from syncing here (`.chorusignore`): scans leave it out,
    /// writes leave it alone, and history operations never take it from an old version.
    fn is_ignored(&self, path: &RelPath) -> bool {
        let _ = path;
        false
    }

    /// True when `path` holds ignore rules (a `.chorusignore`): history operations leave such
    /// a file as it is now, so going back to a version from before a rule never switches the
    /// rule off (which would start syncing what it kept private).
    fn holds_ignore_rules(&self, path: &RelPath) -> bool {
        let _ = path;
        false
    }
}
