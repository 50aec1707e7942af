//! Writing a version into the share: only the paths that differ, each confined to the share
//! ([`confined`](crate::confined)), each failure confined to its path.
//!
//! Removals go first, deepest first (a directory goes only once empty; one kept non-empty by
//! files that are not synced stays). Then, in path order, directories are made, links made
//! under a temp name and renamed into place, and files written to an exclusive temp file in
//! their directory (all-zero chunks as holes, so sparse files stay sparse), given their
//! permission bits, made durable and renamed over the old file. Directory modes are applied
//! last, deepest first, so a read-only directory is filled before it is closed. Every
//! directory that gained or lost an entry, and every new one, is fsynced before the write
//! counts as done.
//!
//! A file is replaced or removed only if it is still what the last scan saw, checked right
//! before the rename or the removal ([`ScanCache::check`]): a save that lands meanwhile stops
//! the writing ([`Stop::Changed`]) rather than be overwritten. Any other error is the path's
//! own: it is reported with what to do, the rest of the version is written. A full disk stops
//! the writing of everything after it (reported as such), not the caller.

use std::collections::{BTreeMap, BTreeSet};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::rc::Rc;

use chorus_chunking::{
    ChunkStore, ChunkerParams, Difference, Entry, FileManifest, Mode, RelPath, TreeManifest,
};
use rustix::fs::FileType;

use crate::batch::{Batch, FileJob, Queue};
use crate::cache::{OnDisk, ScanCache, Stamp, Verdict};
use crate::confined as c;
use crate::failure::{DISK_FULL, is_disk_full, reason};
use crate::moves::{Moves, Target};
use crate::syncer::Syncer;

/// What the writing needs besides the trees.
pub(crate) struct Ctx<'a> {
    pub root: BorrowedFd<'a>,
    pub chunks: &'a dyn ChunkStore,
    pub params: ChunkerParams,
    /// Temp names of this run start with it.
    pub session: &'a str,
    pub cache: &'a ScanCache,
    /// The path the cache knows every written path by (a document share's one file is
    /// [`DOCUMENT_PATH`](crate::DOCUMENT_PATH) to the cache, its own name on disk).
    pub cache_key: Option<&'a RelPath>,
}

/// A file written, as it is on disk now.
#[derive(Debug)]
pub(crate) struct WrittenFile {
    pub path: RelPath,
    pub stamp: Stamp,
    pub manifest: FileManifest,
    /// Its stamp vouches for its content ([`ScanCache::remember`]).
    pub settled: bool,
}

/// What a write did.
#[derive(Debug, Default)]
pub(crate) struct Written {
    /// The files written, as the scan's table will know them (by their cache key), for the
    /// folder to [`absorb`](ScanCache::absorb).
    pub files: ScanCache,
    /// Paths left as they were, with one line saying why and what to do.
    pub failed: Vec<(RelPath, String)>,
}

/// Why the writing stopped before the end.
#[derive(Debug)]
pub(crate) enum Stop {
    /// This path changed on disk since the last scan.
    Changed(RelPath),
    /// The chunk store failed.
    Chunks(chorus_chunking::Error),
}

/// Turns the share from `old` (what is on disk, as of the last scan) into `new`. What was
/// done is returned also when the writing stopped.
pub(crate) fn write_tree(
    ctx: &Ctx<'_>,
    old: &TreeManifest,
    new: &TreeManifest,
) -> (Written, Option<Stop>) {
    let mut w = Writer {
        ctx,
        out: Written::default(),
        dirs: BTreeMap::new(),
        dirty: BTreeSet::new(),
        failed_dirs: Vec::new(),
        failed_set: std::collections::HashSet::new(),
        full: false,
        aging: std::collections::VecDeque::new(),
        syncer: flusher(ctx.root),
        sync_failed: None,
    };
    // Another share's state (a share made inside this one, which a tree of an earlier build
    // may hold) is never created, replaced or removed here.
    let mut differences = old.differences(new);
    differences.retain(|d| !d.path.is_share_state());
    // Room for every file to write, made now: its pages are taken as files are written.
    let files = differences
        .iter()
        .filter(|d| matches!(d.new, Some(Entry::File { .. })))
        .count();
    w.out.files.reserve(files);
    let stop = w.run(&differences).err();
    if stop.is_none() {
        w.dir_modes(new, &differences);
    }
    // Batches still waiting for their renames when a stop came are removed before the
    // directories are made durable.
    w.aging.clear();
    w.sync_dirs();
    (w.out, stop)
}

impl Writer<'_, '_> {
    fn run(&mut self, differences: &[Difference<'_>]) -> Result<(), Stop> {
        let moved = self.remove_gone(differences)?;
        let mut batch = Batch::default();
        let mut queue = Queue::default();
        for d in differences {
            let (path, old) = (d.path, d.old);
            let Some(entry) = d.new else { continue };
            if self.failed(path) || moved.contains(path) {
                continue;
            }
            if self.full {
                self.fail(path, DISK_FULL.into());
                continue;
            }
            if let Some(d) = self.failed_dirs.iter().find(|d| path.starts_with(d)) {
                let why = format!("not written: its directory {d} could not be written");
                self.fail(path, why);
                continue;
            }
            match entry {
                Entry::Dir { .. } => self.dir(path),
                Entry::Symlink { target } => self.symlink(path, target)?,
                Entry::File { mode, manifest } => {
                    let job = FileJob {
                        path,
                        mode: *mode,
                        manifest,
                        was_file: matches!(old, Some(Entry::File { .. })),
                    };
                    match self.open_dir(&parent_str(path), true) {
                        Ok(dir) => queue.push(job, dir),
                        Err(e) => self.io_fail(path, &e),
                    }
                    if queue.full() {
                        self.write_queued(&mut queue, &mut batch)?;
                    }
                }
            }
        }
        self.write_queued(&mut queue, &mut batch)?;
        self.rename_aged(true)?;
        self.commit(&mut batch)
    }
}

/// Directory handles kept open for reuse at most. With the queue's (128 files, their temp
/// files open while they are written), the batch's (`BATCH_DIRS`, 8 files kept open), the
/// waiting batches' (`AGING_DIRS`, and the files of those full by bytes: 8 each, 5 such
/// batches at most by `AGING_BYTES`) and the flusher's handle on the share, a write holds
/// under 700 descriptors whatever the number of directories in the share: one handle per
/// directory ran out of open files in a share of tens of thousands of directories.
const DIRS_KEPT: usize = 32;

pub(crate) struct Writer<'a, 'b> {
    pub(crate) ctx: &'a Ctx<'b>,
    pub(crate) out: Written,
    /// Directory handles opened during this write, by path ("" for the root).
    pub(crate) dirs: BTreeMap<String, Rc<OwnedFd>>,
    /// Directories that gained or lost an entry, or are new: fsynced at the end.
    pub(crate) dirty: BTreeSet<String>,
    pub(crate) failed_dirs: Vec<RelPath>,
    /// The paths of `out.failed`, to look them up.
    pub(crate) failed_set: std::collections::HashSet<RelPath>,
    /// The disk filled up: nothing more is tried.
    pub(crate) full: bool,
    /// Full batches written and waiting for their renames, oldest first
    /// ([`age`](Self::age)).
    pub(crate) aging: std::collections::VecDeque<Batch>,
    /// Makes full batches durable while the next ones are written; `None` when it has no
    /// handle of its own on the share (out of descriptors): then `syncfs` runs here.
    pub(crate) syncer: Option<Syncer>,
    /// A `syncfs` of this write failed: it reports a write-back error once, so a later one
    /// succeeding does not vouch for files written before it, and no batch is committed on
    /// it again.
    pub(crate) sync_failed: Option<(std::io::ErrorKind, String)>,
}

/// The write's flusher: `syncfs` on its own handle of the share's root (the flushes run on a
/// thread of their own). `None` when no handle can be had (out of descriptors).
fn flusher(root: BorrowedFd<'_>) -> Option<Syncer> {
    match root.try_clone_to_owned() {
        Ok(fd) => Some(Syncer::new(move || c::syncfs(fd.as_fd()))),
        Err(e) => {
            tracing::debug!(error = %e, "no handle of the share for the flushes: they run on the writer");
            None
        }
    }
}

pub(crate) fn parent_str(path: &RelPath) -> String {
    path.parent().map(String::from).unwrap_or_default()
}

impl Writer<'_, '_> {
    pub(crate) fn fail(&mut self, path: &RelPath, why: String) {
        tracing::warn!(path = %chorus_proto::shown(path.as_str()), "not written: {}", chorus_proto::shown(&why));
        if self.failed_set.insert(path.clone()) {
            self.out.failed.push((path.clone(), why));
        }
    }

    fn failed(&self, path: &RelPath) -> bool {
        self.failed_set.contains(path)
    }

    /// Records an I/O error of `path`; a full disk stops everything after it.
    pub(crate) fn io_fail(&mut self, path: &RelPath, e: &std::io::Error) {
        if is_disk_full(e) {
            self.full = true;
        }
        self.fail(path, reason(e));
    }

    /// The directory `rel` ("" for the root), opened beneath the root with no symlink on the
    /// way; with `create`, missing directories are made (they were implied by the tree).
    pub(crate) fn open_dir(&mut self, rel: &str, create: bool) -> std::io::Result<Rc<OwnedFd>> {
        if let Some(fd) = self.dirs.get(rel) {
            return Ok(fd.clone());
        }
        let fd = match c::open_dir_beneath(self.ctx.root, rel) {
            Err(e) if create && e.raw_os_error() == Some(libc::ENOENT) => {
                let mut at = c::open_dir_beneath(self.ctx.root, "")?;
                let mut sofar = String::new();
                for name in rel.split('/') {
                    let parent = sofar.clone();
                    if !sofar.is_empty() {
                        sofar.push('/');
                    }
                    sofar.push_str(name);
                    at = match c::open_dir_at(at.as_fd(), name) {
                        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                            c::mkdir_at(at.as_fd(), name)?;
                            c::chmod(c::open_dir_at(at.as_fd(), name)?.as_fd(), 0o755)?;
                            self.dirty.insert(parent);
                            self.dirty.insert(sofar.clone());
                            c::open_dir_at(at.as_fd(), name)?
                        }
                        other => other?,
                    };
                }
                at
            }
            other => other?,
        };
        let fd = Rc::new(fd);
        if self.dirs.len() >= DIRS_KEPT {
            // Files are written in path order: the directories wanted next are mostly new.
            // Those still queued or waiting for renames keep their handles open until then.
            self.dirs.clear();
        }
        self.dirs.insert(rel.to_owned(), fd.clone());
        Ok(fd)
    }

    /// What is at `path` now, for the changed-since-scan check.
    pub(crate) fn on_disk(
        &self,
        dir: BorrowedFd<'_>,
        path: &RelPath,
    ) -> std::io::Result<Option<OnDisk>> {
        Ok(
            c::stat_at(dir, path.file_name())?.map(|st| match c::kind(&st) {
                FileType::RegularFile => OnDisk::File(Stamp::of(&st)),
                _ => OnDisk::Other,
            }),
        )
    }

    /// Why what is at `path` (found changed since the last scan) is one the writing must leave
    /// alone for good rather than wait for a scan to version it: a file this daemon cannot read,
    /// or one larger than a version may hold (no scan will ever take it in). `None`: a change
    /// a scan will pick up, which stops the writing until it has.
    pub(crate) fn never_versioned(
        &self,
        dir: BorrowedFd<'_>,
        path: &RelPath,
        now: Option<&OnDisk>,
    ) -> Option<String> {
        let name = path.file_name();
        if let Some(OnDisk::File(stamp)) = now
            && stamp.size > chorus_chunking::delta::MAX_FILE_BYTES
        {
            return Some(format!(
                "the file there is larger ({} bytes) than a file may be to be synced, so it is neither replaced nor removed: move it out of the share",
                stamp.size
            ));
        }
        if let Some(OnDisk::File(_)) = now
            && let Err(e) = c::open_file_at(dir, name)
            && matches!(e.raw_os_error(), Some(libc::EACCES | libc::EPERM))
        {
            return Some(format!(
                "the file there cannot be read by this daemon ({e}), so it is neither replaced nor removed: give it read permission (or move it away)"
            ));
        }
        None
    }

    /// True when `path` still holds what the last scan saw (reading it when its stamp alone
    /// cannot tell).
    pub(crate) fn unchanged(
        &self,
        dir: BorrowedFd<'_>,
        path: &RelPath,
        now: Option<&OnDisk>,
    ) -> bool {
        match self
            .ctx
            .cache
            .check(self.ctx.cache_key.unwrap_or(path), now)
        {
            Verdict::Unchanged => true,
            Verdict::Changed => false,
            Verdict::CompareContent(expected) => {
                let Some(OnDisk::File(stamp)) = now else {
                    return false;
                };
                c::open_file_at(dir, path.file_name())
                    .ok()
                    .and_then(|f| {
                        crate::read::read_file(f, *stamp, self.ctx.params, None, Some(&expected))
                            .ok()
                    })
                    .is_some_and(|(seen, m)| seen == Some(*stamp) && m == expected)
            }
        }
    }

    /// Removes what `new` no longer has (or has as another kind), deepest first. A file removed
    /// whose content a file of the version has is moved there instead ([`Moves`]); the paths
    /// so written are returned.
    fn remove_gone(
        &mut self,
        differences: &[Difference<'_>],
    ) -> Result<std::collections::HashSet<RelPath>, Stop> {
        // A document share is one file: nothing to move.
        let mut moves = match self.ctx.cache_key {
            Some(_) => Moves::default(),
            None => Moves::of(differences),
        };
        let mut moved = std::collections::HashSet::new();
        let mut gone: Vec<(&RelPath, Option<&Entry>)> = differences
            .iter()
            .filter(|d| {
                d.old
                    .is_some_and(|e| d.new.is_none_or(|n| n.kind() != e.kind()))
            })
            .map(|d| (d.path, d.new))
            .collect();
        gone.sort_by(|a, b| b.0.cmp(a.0));
        for (path, replacement) in gone {
            let parent = parent_str(path);
            let dir = match c::open_dir_beneath(self.ctx.root, &parent) {
                Ok(d) => d,
                // Gone already, or its directory replaced by a link or a file since: nothing
                // of the share's is there to remove (the next scan sees what is).
                Err(e)
                    if matches!(
                        e.raw_os_error(),
                        Some(libc::ENOENT | libc::ELOOP | libc::ENOTDIR)
                    ) =>
                {
                    continue;
                }
                Err(e) => {
                    self.io_fail(path, &e);
                    continue;
                }
            };
            let st = match c::stat_at(dir.as_fd(), path.file_name()) {
                Ok(Some(st)) => st,
                Ok(None) => continue,
                Err(e) => {
                    self.io_fail(path, &e);
                    continue;
                }
            };
            if c::kind(&st) == FileType::Directory {
                match c::rmdir_at(dir.as_fd(), path.file_name()) {
                    Ok(()) => {
                        self.dirty.insert(parent);
                    }
                    // Only an empty directory goes; what is left in it is not ours to delete.
                    Err(e) if matches!(e.raw_os_error(), Some(libc::ENOTEMPTY | libc::EEXIST)) => {
                        if replacement.is_some() {
                            self.fail(path, format!("a directory is where the version has a {}, kept by files that are not synced (ignored or unreadable): move them away", kind_name(replacement)));
                        }
                    }
                    Err(e) => self.io_fail(path, &e),
                }
                continue;
            }
            let now = self.on_disk(dir.as_fd(), path).ok().flatten();
            if !self.unchanged(dir.as_fd(), path, now.as_ref()) {
                if let Some(why) = self.never_versioned(dir.as_fd(), path, now.as_ref()) {
                    self.fail(path, why);
                    continue;
                }
                return Err(Stop::Changed(path.clone()));
            }
            if let Some(OnDisk::File(stamp)) = now
                && let Some((seen, trusted)) = self.ctx.cache.seen(path, &stamp)
                && let Some(to) = moves.take(path, seen)
            {
                match self.move_file(dir.as_fd(), path, &stamp, trusted, &to) {
                    Ok(true) => {
                        self.dirty.insert(parent);
                        moved.insert(to.path.clone());
                        continue;
                    }
                    // Not moved: the target stays for another file with its content.
                    Ok(false) => moves.put_back(to),
                    Err(e) => {
                        tracing::debug!(from = %path, to = %to.path, "not moved: {e}");
                        moves.put_back(to);
                    }
                }
            }
            match c::unlink_at(dir.as_fd(), path.file_name()) {
                Ok(()) => {
                    self.dirty.insert(parent);
                }
                Err(e) => self.io_fail(path, &e),
            }
        }
        Ok(moved)
    }

    /// Moves the file `from` (in `dir`, checked unchanged since the scan, its stamp `stamp`,
    /// `trusted` when that stamp alone vouched for its content) to the version's file `to`, if
    /// what is at `to` is still what the scan saw (or nothing). False: not moved, for the usual
    /// removal and writing to happen (which report anything changed meanwhile).
    fn move_file(
        &mut self,
        dir: BorrowedFd<'_>,
        from: &RelPath,
        stamp: &Stamp,
        trusted: bool,
        to: &Target<'_>,
    ) -> std::io::Result<bool> {
        // Only a file of this daemon's own with no other name, no special bits: a removal
        // and a write would leave every other name of the file as it is and make a fresh one
        // of this daemon's with the version's mode, so moving must not chmod another name's
        // inode, keep another owner's file, or keep setuid bits. Held open from here, so the
        // mode is given to this very file whatever lands at either name meanwhile.
        let f = c::open_file_at(dir, from.file_name())?;
        let st = rustix::fs::fstat(&f)?;
        if st.st_ino != stamp.ino
            || st.st_nlink != 1
            || st.st_uid != rustix::process::geteuid().as_raw()
            || st.st_mode & 0o7000 != 0
        {
            return Ok(false);
        }
        let to_dir = self.open_dir(&parent_str(to.path), true)?;
        let name = to.path.file_name();
        let now = self.on_disk(to_dir.as_fd(), to.path)?;
        if matches!(now, Some(OnDisk::Other))
            || !self.unchanged(to_dir.as_fd(), to.path, now.as_ref())
        {
            return Ok(false);
        }
        // A big file replaced frees its blocks on another thread, as when written.
        let old = matches!(now, Some(OnDisk::File(st)) if st.size >= crate::direct::DIRECT_MIN)
            .then(|| c::open_file_at(to_dir.as_fd(), name).ok())
            .flatten();
        let renamed = c::rename_between(dir, from.file_name(), to_dir.as_fd(), name, now.is_none());
        if let Some(old) = old {
            crate::direct::close_later(old);
        }
        match renamed {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => return Ok(false),
            Err(e) => return Err(e),
        }
        self.dirty.insert(parent_str(to.path));
        tracing::debug!(from = %from, to = %to.path, "moved");
        // Moved: what fails from here on is the new path's, as a write's would be.
        let stat = (|| {
            if Mode::from_st_mode(st.st_mode) != to.mode {
                c::chmod(f.as_fd(), to.mode.bits())?;
            }
            Ok::<_, std::io::Error>(rustix::fs::fstat(&f)?)
        })();
        let after = match stat {
            Ok(st) => Stamp::of(&st),
            Err(e) => {
                self.io_fail(to.path, &e);
                return Ok(true);
            }
        };
        self.wrote(WrittenFile {
            path: to.path.clone(),
            stamp: after,
            manifest: to.manifest.clone(),
            // The content is the one checked under `stamp`: its mtime, size and inode vouch
            // for it as they did there (a rename and a chmod change only the ctime).
            settled: trusted
                && (after.size, after.mtime_ns, after.ino)
                    == (stamp.size, stamp.mtime_ns, stamp.ino),
        });
        Ok(true)
    }

    fn dir(&mut self, path: &RelPath) {
        let made = (|| {
            let parent = self.open_dir(&parent_str(path), true)?;
            match c::stat_at(parent.as_fd(), path.file_name())? {
                Some(st) if c::kind(&st) == FileType::Directory => Ok(None),
                Some(_) => Ok(Some(
                    "a file or link is where the version has a directory: move it away".to_owned(),
                )),
                None => {
                    c::mkdir_at(parent.as_fd(), path.file_name())?;
                    self.dirty.insert(parent_str(path));
                    self.dirty.insert(path.as_str().to_owned());
                    Ok(None)
                }
            }
        })();
        let why = match made {
            Ok(None) => return,
            Ok(Some(why)) => why,
            Err(e) => {
                if is_disk_full(&e) {
                    self.full = true;
                }
                reason(&e)
            }
        };
        self.fail(path, why);
        self.failed_dirs.push(path.clone());
    }

    fn symlink(&mut self, path: &RelPath, target: &str) -> Result<(), Stop> {
        let done = (|| -> std::io::Result<Result<(), Stop>> {
            let parent = self.open_dir(&parent_str(path), true)?;
            let now = self.on_disk(parent.as_fd(), path)?;
            if let Some(st) = c::stat_at(parent.as_fd(), path.file_name())?
                && c::kind(&st) == FileType::Directory
            {
                return Err(std::io::Error::from_raw_os_error(libc::EISDIR));
            }
            if !self.unchanged(parent.as_fd(), path, now.as_ref()) {
                if let Some(why) = self.never_versioned(parent.as_fd(), path, now.as_ref()) {
                    self.fail(path, why);
                    return Ok(Ok(()));
                }
                return Ok(Err(Stop::Changed(path.clone())));
            }
            let temp = c::symlink_temp(parent.as_fd(), target, self.ctx.session)?;
            if let Err(e) = c::rename_at(parent.as_fd(), &temp, path.file_name(), now.is_none()) {
                let _ = c::unlink_at(parent.as_fd(), &temp);
                if e.raw_os_error() == Some(libc::EEXIST) {
                    return Ok(Err(Stop::Changed(path.clone())));
                }
                return Err(e);
            }
            self.dirty.insert(parent_str(path));
            Ok(Ok(()))
        })();
        match done {
            Ok(r) => r,
            Err(e) => {
                self.io_fail(path, &e);
                Ok(())
            }
        }
    }

    /// Applies the modes of directories the version changed or made, deepest first.
    fn dir_modes(&mut self, new: &TreeManifest, differences: &[Difference<'_>]) {
        // Those the version changed or made, and those that gained or lost an entry.
        let changed = differences.iter().filter_map(|d| Some((d.path, d.new?)));
        let dirty = self
            .dirty
            .iter()
            .filter_map(|p| new.entries().get_key_value(p.as_str()));
        let mut dirs: Vec<(&RelPath, Mode)> = changed
            .chain(dirty)
            .filter_map(|(p, e)| match e {
                Entry::Dir { mode } => Some((p, *mode)),
                _ => None,
            })
            .filter(|(p, _)| !self.failed(p))
            .collect();
        dirs.sort_by(|a, b| b.0.cmp(a.0));
        dirs.dedup_by(|a, b| a.0 == b.0);
        for (path, mode) in dirs {
            let set = c::open_dir_beneath(self.ctx.root, path.as_str()).and_then(|fd| {
                let st = rustix::fs::fstat(&fd)?;
                if Mode::from_st_mode(st.st_mode) != mode {
                    c::chmod(fd.as_fd(), mode.bits())?;
                }
                Ok(())
            });
            if let Err(e) = set {
                self.io_fail(path, &e);
            }
        }
    }

    /// fsyncs every directory that gained or lost an entry, or is new.
    /// Remembers a file written, by the path the scan's table knows it by.
    pub(crate) fn wrote(&mut self, f: WrittenFile) {
        let key = self.ctx.cache_key.cloned().unwrap_or(f.path);
        self.out
            .files
            .remember(key, &f.stamp, f.manifest, f.settled);
    }

    fn sync_dirs(&mut self) {
        let dirty = std::mem::take(&mut self.dirty);
        let mut failed = None;
        for rel in dirty {
            let r = c::open_dir_beneath(self.ctx.root, &rel).and_then(|d| c::fsync(d.as_fd()));
            if let Err(e) = r
                && e.raw_os_error() != Some(libc::ENOENT)
            {
                failed = Some((rel, e));
            }
        }
        if let Some((rel, e)) = failed {
            // The renames may not be durable: say so on a path of that directory.
            let in_dir = self
                .out
                .files
                .stamps()
                .find(|(p, _)| parent_str(p) == rel)
                .map(|(p, _)| p.clone());
            if let Some(p) = in_dir {
                self.io_fail(&p, &e);
            }
        }
    }
}

fn kind_name(e: Option<&Entry>) -> &'static str {
    match e {
        Some(Entry::File { .. }) => "file",
        Some(Entry::Symlink { .. }) => "link",
        _ => "directory",
    }
}
