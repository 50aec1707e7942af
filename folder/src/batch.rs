//! A batch of files written to temp files and not yet renamed into place: what the writer
//! makes durable together, and removes when the writing stops before the renames.

use std::os::fd::{AsFd, OwnedFd};
use std::rc::Rc;

use std::time::Instant;

use chorus_chunking::{FileManifest, RelPath};

use crate::cache::Stamp;

use crate::confined as c;

/// Up to this many files are made durable together (and their directories kept open).
const BATCH_FILES: usize = 256;
const BATCH_BYTES: u64 = 256 << 20;
/// A temp file written and not yet renamed into place.
pub(crate) struct Pending {
    pub(crate) path: RelPath,
    pub(crate) dir: Rc<OwnedFd>,
    pub(crate) temp: String,
    /// Still open, to be fsynced when the batch is small (a full batch is made durable by one
    /// `syncfs`, and closes its files while it waits for its renames).
    pub(crate) file: Option<std::fs::File>,
    pub(crate) manifest: FileManifest,
    /// Its stamp right after its content and mode were written, and when that was.
    pub(crate) wrote: Option<(Stamp, Instant)>,
}

/// Temp files not yet renamed; those still here when it is dropped (the writing stopped) are
/// removed.
#[derive(Default)]
pub(crate) struct Batch {
    pub(crate) files: Vec<Pending>,
    pub(crate) bytes: u64,
}

impl Drop for Batch {
    fn drop(&mut self) {
        for p in &self.files {
            let _ = c::unlink_at(p.dir.as_fd(), &p.temp);
        }
    }
}

impl Batch {
    /// Time to commit.
    pub(crate) fn full(&self) -> bool {
        self.files.len() >= BATCH_FILES || self.bytes >= BATCH_BYTES
    }

    /// When its last file was written.
    pub(crate) fn last_write(&self) -> Option<Instant> {
        self.files.iter().filter_map(|p| p.wrote.map(|w| w.1)).max()
    }

    /// Closes its files (it is made durable by one `syncfs`).
    pub(crate) fn close_files(&mut self) {
        for p in &mut self.files {
            p.file = None;
        }
    }
}
