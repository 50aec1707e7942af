//! A batch of files written to temp files and not yet renamed into place: what the writer
//! makes durable together, and removes when the writing stops before the renames; and the
//! queue of files whose contents are still to be written (together, on every core).

use std::os::fd::{AsFd, OwnedFd};
use std::rc::Rc;

use std::time::Instant;

use chorus_chunking::{FileManifest, Mode, RelPath};

use crate::cache::Stamp;

use crate::confined as c;
use crate::syncer::Ticket;

/// Up to this many files are made durable together (and their directories kept open) ...
const BATCH_FILES: usize = 256;
const BATCH_BYTES: u64 = 256 << 20;
/// ... in at most this many directories: the handles a write holds stay well under a
/// desktop's usual limit of 1,024 open files whatever the share's shape (see
/// `Writer::open_dir`).
const BATCH_DIRS: usize = 64;
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
    /// Directory handles its files hold (one per run of files in the same directory).
    pub(crate) dirs: usize,
    /// The flush asked for when it started to wait for its renames.
    pub(crate) flush: Option<Ticket>,
}

impl Drop for Batch {
    fn drop(&mut self) {
        for p in &self.files {
            let _ = c::unlink_at(p.dir.as_fd(), &p.temp);
        }
    }
}

impl Batch {
    /// Adds a written file.
    pub(crate) fn push(&mut self, p: Pending) {
        if self
            .files
            .last()
            .is_none_or(|last| !Rc::ptr_eq(&last.dir, &p.dir))
        {
            self.dirs += 1;
        }
        self.bytes += p.manifest.size();
        self.files.push(p);
    }

    /// Time to commit.
    pub(crate) fn full(&self) -> bool {
        self.files.len() >= BATCH_FILES || self.bytes >= BATCH_BYTES || self.dirs >= BATCH_DIRS
    }

    /// When its last file was written.
    pub(crate) fn last_write(&self) -> Option<Instant> {
        self.files.iter().filter_map(|p| p.wrote.map(|w| w.1)).max()
    }

    /// Closes its files (it is made durable by one `syncfs`).
    pub(crate) fn close_files(&mut self) {
        for p in self.files.iter_mut().rev() {
            if p.file.take().is_none() {
                break; // those before were closed already
            }
        }
    }
}

/// Files written together, at most this many ...
const QUEUED_FILES: usize = 128;
/// ... or this many bytes of content.
const QUEUED_BYTES: u64 = 64 << 20;

/// A file whose content is to be written to a temp file beside it.
pub(crate) struct FileJob<'t> {
    pub(crate) path: &'t RelPath,
    pub(crate) mode: Mode,
    pub(crate) manifest: &'t FileManifest,
    /// The last scan saw a file at `path`, whose chunks this one may share.
    pub(crate) was_file: bool,
}

/// Files waiting to be written, with their directories (opened, made if missing).
#[derive(Default)]
pub(crate) struct Queue<'t> {
    jobs: Vec<FileJob<'t>>,
    dirs: Vec<Rc<OwnedFd>>,
    bytes: u64,
}

impl<'t> Queue<'t> {
    pub(crate) fn push(&mut self, job: FileJob<'t>, dir: Rc<OwnedFd>) {
        self.bytes += job.manifest.size();
        self.jobs.push(job);
        self.dirs.push(dir);
    }

    /// Time to write them.
    pub(crate) fn full(&self) -> bool {
        self.jobs.len() >= QUEUED_FILES || self.bytes >= QUEUED_BYTES
    }

    /// The files queued and their directories, in the same order; the queue is left empty.
    pub(crate) fn take(&mut self) -> (Vec<FileJob<'t>>, Vec<Rc<OwnedFd>>) {
        self.bytes = 0;
        (
            std::mem::take(&mut self.jobs),
            std::mem::take(&mut self.dirs),
        )
    }
}
