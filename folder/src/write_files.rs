//! Writing files: content into an exclusive temp file beside the target (all-zero chunks as
//! holes, so sparse files stay sparse), made with its mode, made durable (one by one for a few
//! files, one `syncfs` for a batch of many, run while the next batches are written: see
//! [`crate::syncer`]), and renamed into place unless the target changed
//! since the scan. A temp file never renamed is removed. Contents are written on every core;
//! renames happen in path order, a full batch's once the batches after it have been written
//! for a timestamp tick (so that the next scan believes its files' stamps) and its flush is
//! done, on the writer's thread while the other cores write the next files.
//!
//! A large file that replaces one with the stamp the last scan read it under takes the chunks
//! the two share from the old file, and only the others from the chunk store: a small edit in
//! a big file costs a copy, not a read, check and write of every chunk. When the stamp vouches
//! for the content (read well after its last change: the trust a scan gives a file it does not
//! read again) the kernel copies them (`copy_file_range`); otherwise each is read and checked
//! against its id, and one that fails comes from the store.
//! A big file's written pages are handed to the disk as they are written, so the `fsync`
//! before its rename has little left to do. A file of [`DIRECT_MIN`] or more is written past
//! the page cache instead, and its old file read the same way ([`crate::direct`]): the chunks
//! it shares with the old file are copied through our buffer, not by the kernel.

use std::collections::HashMap;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::fs::FileExt;
use std::time::Instant;

use chorus_chunking::{ChunkId, ChunkStore, FileManifest, Mode, RelPath};
use rustix::fs::FileType;

use crate::batch::{Batch, FileJob, Pending, Queue};
use crate::cache::{FINE_TICK, OnDisk, Stamp, settled, settles_after};
use crate::confined as c;
use crate::direct::{DIRECT_MIN, DirectReader, DirectWriter, PushError};
use crate::failure::DISK_FULL;
use crate::write::{Ctx, Stop, Writer, WrittenFile, parent_str};

/// A batch of at most this many files is made durable file by file (a `syncfs` flushes the
/// whole file system, other programs' writes included: worth it only for many files).
const FSYNC_EACH_UP_TO: usize = 8;
/// All-zero chunks at least this long are written as holes.
const HOLE_MIN: usize = 4096;
/// Files at least this big take the chunks they share with the file they replace from it.
const BASE_MIN: u64 = 1 << 20;
/// A file's written pages are handed to the disk every this many bytes.
const WRITEBACK_EVERY: u64 = 8 << 20;
/// A file with at least this many chunks to take from the store has them read and checked
/// ahead of its writes, on a thread of its own (within [`READ_AHEAD_BYTES`]): a 1 GiB file's
/// 16k reads and BLAKE3 checks overlap its writes instead of coming between them.
pub(crate) const READ_AHEAD_MIN: usize = 64;
/// Bytes of chunks waiting to be written at most, by the lengths the manifest gives (at least
/// one chunk; the reader and the writer hold one more each) ...
const READ_AHEAD_BYTES: usize = 2 << 20;
/// ... and chunks at most.
const READ_AHEAD_MAX: usize = 64;

/// Full batches waiting for their renames at most (see [`Writer::age`]): enough to go on
/// writing through a long flush (the first of a write flushes whatever else the file system
/// holds; it took 1.1 s after a join of 100k files, the next ones 4-9 ms each) ...
const AGING_MAX: usize = 64;
/// ... holding at most this many bytes ...
const AGING_BYTES: u64 = 1 << 30;
/// ... and this many directory handles together (at least a batch's `BATCH_DIRS`, so a
/// batch is never committed at once for its own directories).
const AGING_DIRS: usize = 192;
/// A temp file written: its name, and its `stat` right after.
struct Temp {
    file: std::fs::File,
    name: String,
    stat: rustix::fs::Stat,
    at: Instant,
}

impl Writer<'_, '_> {
    /// Writes the queued files' contents to temp files beside them, with their modes, on
    /// every core ([`parallel::map_beside`](crate::parallel::map_beside); a file is a few
    /// system calls, most of them the kernel's work: one core leaves the others idle), and
    /// adds them to the batch; a full batch waits for its renames ([`age`](Self::age)). The
    /// batches written before that are due are renamed meanwhile, on this thread. A chunk
    /// missing from the store stops the writing, and so does a rename that finds its target
    /// changed; any other failure is its file's.
    pub(crate) fn write_queued(
        &mut self,
        queue: &mut Queue<'_>,
        batch: &mut Batch,
    ) -> Result<(), Stop> {
        let (jobs, dirs) = queue.take();
        let ctx = self.ctx;
        // The waiting batches are within their bounds before this queue's temp files open,
        // so a write's descriptors stay as counted (see `DIRS_KEPT`); those due by time are
        // renamed beside the writes.
        self.rename_over_bounds()?;
        let (written, renamed) = {
            let fds: Vec<BorrowedFd<'_>> = dirs.iter().map(|d| d.as_fd()).collect();
            crate::parallel::map_beside(
                jobs.len(),
                |i| write_temp(ctx, fds[i], &jobs[i]),
                || self.rename_aged(false),
            )
        };
        let mut stop = renamed.err();
        for ((job, dir), result) in jobs.iter().zip(dirs).zip(written) {
            if stop.is_some() {
                // Nothing is renamed after a stop: no batch (and no flush) for these.
                if let Ok(t) = result {
                    let _ = c::unlink_at(dir.as_fd(), &t.name);
                }
                continue;
            }
            if self.full {
                // As if written one by one: nothing after a full disk is, whatever fitted.
                if let Ok(t) = result {
                    let _ = c::unlink_at(dir.as_fd(), &t.name);
                }
                self.fail(job.path, DISK_FULL.into());
                continue;
            }
            match result {
                Ok(t) => {
                    batch.push(Pending {
                        path: job.path.clone(),
                        dir,
                        temp: t.name,
                        wrote: Some((Stamp::of(&t.stat), t.at)),
                        file: Some(t.file),
                        manifest: job.manifest.clone(),
                    });
                    // Made durable by one `syncfs` past a few files: they need not stay open.
                    if batch.files.len() > FSYNC_EACH_UP_TO {
                        batch.close_files();
                    }
                    // Full by files, bytes or directories: it waits for its renames, and the
                    // rest of the queue starts the next one.
                    if batch.full() {
                        let full = std::mem::take(batch);
                        self.age(full);
                    }
                }
                Err(ContentError::Io(e)) => self.io_fail(job.path, &e),
                // The files written before it are in the batch: removed when it is dropped.
                Err(ContentError::Chunks(e)) => {
                    stop.get_or_insert(Stop::Chunks(e));
                }
            }
        }
        stop.map_or(Ok(()), Err)
    }

    /// A full batch waits for its renames while the next ones are written, until its last
    /// file was written a timestamp tick ago ([`FINE_TICK`]) and its flush is done: renamed
    /// then, its files are
    /// believed on their stamps ([`settled`]) and the next scan does not read them again
    /// (after a join of 100k files it read nearly all of them). No batch waits for its own
    /// sake: those left when the writing ends are renamed at once.
    /// Its files are closed already when it holds more than [`FSYNC_EACH_UP_TO`] (made durable
    /// by one `syncfs`); a few (a batch full by bytes) stay open to be fsynced one by one.
    /// A batch made durable by one `syncfs` asks for it now, and the next batches are written
    /// while the file system flushes ([`Syncer`](crate::syncer::Syncer)).
    fn age(&mut self, mut batch: Batch) {
        if by_syncfs(&batch)
            && self.sync_failed.is_none()
            && let Some(syncer) = self.syncer.as_mut()
        {
            batch.flush = Some(syncer.ask());
        }
        self.aging.push_back(batch);
    }

    /// Commits the waiting batches whose last write is a tick old and whose flush is done, the
    /// oldest when more than [`AGING_MAX`] wait (or they hold too many bytes or directories),
    /// and all of them with `all`.
    pub(crate) fn rename_aged(&mut self, all: bool) -> Result<(), Stop> {
        while let Some(front) = self.aging.front() {
            let due = all
                || self.over_bounds()
                || (front.last_write().is_none_or(|t| t.elapsed() >= FINE_TICK)
                    && front
                        .flush
                        .is_none_or(|t| self.syncer.as_ref().is_none_or(|s| s.is_done(t))));
            if !due {
                break;
            }
            let mut oldest = self.aging.pop_front().expect("a batch is waiting");
            self.commit(&mut oldest)?;
        }
        Ok(())
    }

    /// More batches wait, or they hold more bytes or directory handles, than
    /// [`AGING_MAX`], [`AGING_BYTES`] and [`AGING_DIRS`] allow.
    fn over_bounds(&self) -> bool {
        self.aging.len() > AGING_MAX
            || self.aging.iter().map(|b| b.dirs).sum::<usize>() > AGING_DIRS
            || self.aging.iter().map(|b| b.bytes).sum::<u64>() > AGING_BYTES
    }

    /// Commits the oldest waiting batches while they are over their bounds.
    fn rename_over_bounds(&mut self) -> Result<(), Stop> {
        while self.over_bounds() {
            let mut oldest = self.aging.pop_front().expect("a batch is waiting");
            self.commit(&mut oldest)?;
        }
        Ok(())
    }

    /// Makes a batch's temp files durable and renames each into place unless its target
    /// changed since the scan.
    pub(crate) fn commit(&mut self, batch: &mut Batch) -> Result<(), Stop> {
        if batch.files.is_empty() {
            return Ok(());
        }
        if by_syncfs(batch) {
            let synced = match &self.sync_failed {
                Some((kind, why)) => Err(std::io::Error::new(*kind, why.clone())),
                None => match self.syncer.as_mut() {
                    Some(syncer) => {
                        let ticket = match batch.flush.take() {
                            Some(t) => t,
                            None => syncer.ask(),
                        };
                        syncer.wait(ticket)
                    }
                    None => c::syncfs(self.ctx.root),
                },
            };
            if let Err(e) = synced {
                // The batches waiting behind this one were written before the failed flush
                // too, and the next `syncfs` would not tell of the same error again.
                self.sync_failed = Some((e.kind(), e.to_string()));
                let waiting: Vec<Batch> = self.aging.drain(..).collect();
                for mut b in std::iter::once(std::mem::take(batch)).chain(waiting) {
                    for p in std::mem::take(&mut b.files) {
                        let _ = c::unlink_at(p.dir.as_fd(), &p.temp);
                        self.io_fail(&p.path, &e);
                    }
                }
                return Ok(());
            }
        } else {
            let mut durable = Vec::with_capacity(batch.files.len());
            for p in std::mem::take(&mut batch.files) {
                match p.file.as_ref().map_or(Ok(()), std::fs::File::sync_all) {
                    Ok(()) => durable.push(p),
                    Err(e) => {
                        let _ = c::unlink_at(p.dir.as_fd(), &p.temp);
                        self.io_fail(&p.path, &e);
                    }
                }
            }
            batch.files = durable;
        }
        settle_big_files(batch);
        // Last first, so a stop leaves the rest in the batch for its drop to clean up.
        batch.files.reverse();
        while let Some(p) = batch.files.pop() {
            let name = p.path.file_name();
            // Nothing was there at the scan: the rename refuses to replace what came since
            // (`RENAME_NOREPLACE`), and only then is it looked at as below. Most files of a
            // join are new: a `stat` each saved.
            if self
                .ctx
                .cache
                .saw_no_file(self.ctx.cache_key.unwrap_or(&p.path))
            {
                let renaming_at = Instant::now();
                match c::rename_at(p.dir.as_fd(), &p.temp, name, true) {
                    Ok(()) => {
                        self.placed(&p, renaming_at);
                        continue;
                    }
                    Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {}
                    Err(e) => {
                        let _ = c::unlink_at(p.dir.as_fd(), &p.temp);
                        self.io_fail(&p.path, &e);
                        continue;
                    }
                }
            }
            let now = match self.on_disk(p.dir.as_fd(), &p.path) {
                Ok(n) => n,
                Err(e) => {
                    let _ = c::unlink_at(p.dir.as_fd(), &p.temp);
                    self.io_fail(&p.path, &e);
                    continue;
                }
            };
            if matches!(now, Some(OnDisk::Other))
                && c::stat_at(p.dir.as_fd(), name)
                    .ok()
                    .flatten()
                    .is_some_and(|st| c::kind(&st) == FileType::Directory)
            {
                let _ = c::unlink_at(p.dir.as_fd(), &p.temp);
                self.fail(&p.path, "a directory is where the version has a file, kept by files that are not synced (ignored or unreadable): move them away".into());
                continue;
            }
            if !self.unchanged(p.dir.as_fd(), &p.path, now.as_ref()) {
                let _ = c::unlink_at(p.dir.as_fd(), &p.temp);
                if let Some(why) = self.never_versioned(p.dir.as_fd(), &p.path, now.as_ref()) {
                    self.fail(&p.path, why);
                    continue;
                }
                return Err(Stop::Changed(p.path.clone()));
            }
            // A big file replaced keeps its blocks while this handle lives: they are freed
            // on another thread after the rename, not by it (a quarter-second per GiB on
            // ext4, between a big edit and its file in place).
            let old = matches!(now, Some(OnDisk::File(st)) if st.size >= DIRECT_MIN)
                .then(|| c::open_file_at(p.dir.as_fd(), name).ok())
                .flatten();
            let renaming_at = Instant::now();
            let renamed = c::rename_at(p.dir.as_fd(), &p.temp, name, now.is_none());
            if let Some(old) = old {
                crate::direct::close_later(old);
            }
            if let Err(e) = renamed {
                let _ = c::unlink_at(p.dir.as_fd(), &p.temp);
                if e.raw_os_error() == Some(libc::EEXIST) {
                    return Err(Stop::Changed(p.path.clone()));
                }
                self.io_fail(&p.path, &e);
                continue;
            }
            self.placed(&p, renaming_at);
        }
        batch.bytes = 0;
        batch.dirs = 0;
        Ok(())
    }

    /// Records a file renamed into place (its rename began at `renaming_at`) as it is now.
    fn placed(&mut self, p: &Pending, renaming_at: Instant) {
        self.dirty.insert(parent_str(&p.path));
        if let Ok(Some(st)) = c::stat_at(p.dir.as_fd(), p.path.file_name()) {
            let stamp = Stamp::of(&st);
            let settled = p
                .wrote
                .is_some_and(|(wrote, at)| settled(&wrote, at, renaming_at, &stamp));
            tracing::trace!(path = %p.path, settled, "written");
            self.wrote(WrittenFile {
                path: p.path.clone(),
                stamp,
                manifest: p.manifest.clone(),
                settled,
            });
        }
    }
}

/// The batch is made durable by one `syncfs` (it has too many files to fsync one by one, or
/// closed them already), not file by file.
fn by_syncfs(batch: &Batch) -> bool {
    batch.files.len() > FSYNC_EACH_UP_TO || batch.files.iter().any(|p| p.file.is_none())
}

/// Gives `f` the permission bits of `mode` unless it has them already (a file is made with
/// them, less the umask's); its `stat` after.
fn with_mode(f: &std::fs::File, mode: Mode) -> std::io::Result<rustix::fs::Stat> {
    let st = rustix::fs::fstat(f)?;
    if Mode::from_st_mode(st.st_mode) == mode {
        return Ok(st);
    }
    c::chmod(f.as_fd(), mode.bits())?;
    Ok(rustix::fs::fstat(f)?)
}

enum ContentError {
    Io(std::io::Error),
    Chunks(chorus_chunking::Error),
}

impl From<std::io::Error> for ContentError {
    fn from(e: std::io::Error) -> Self {
        ContentError::Io(e)
    }
}

/// Waits, when the batch has a big file, until each of its files was last written a tick ago
/// (at most [`FINE_TICK`]): renamed after that, a file is believed on its stamp
/// ([`settled`]) and is not read again by the next scan. A big file whose pages went to the
/// disk as it was written has a short `fsync`, and a re-read of it costs far more than the
/// wait. Small files are renamed at once.
fn settle_big_files(batch: &Batch) {
    let until = batch
        .files
        .iter()
        .filter_map(|p| p.wrote)
        .filter(|(wrote, _)| wrote.size >= BASE_MIN && settles_after(wrote) <= FINE_TICK)
        .map(|(_, at)| at + FINE_TICK)
        .max();
    if let Some(wait) = until.and_then(|u| u.checked_duration_since(Instant::now())) {
        std::thread::sleep(wait);
    }
}

/// Writes one file's content to a temp file in `dir`, with its mode; the temp file is removed
/// when that fails.
fn write_temp(ctx: &Ctx<'_>, dir: BorrowedFd<'_>, job: &FileJob<'_>) -> Result<Temp, ContentError> {
    // Made with its mode (the umask may take bits away: they are set again after).
    let (f, name) = c::create_temp(dir, ctx.session, job.mode.bits())?;
    let base = if job.was_file && job.manifest.size() >= BASE_MIN {
        base(ctx, dir, job.path)
    } else {
        None
    };
    let written = write_content(&f, job.manifest, ctx.chunks, base.as_ref())
        .and_then(|()| with_mode(&f, job.mode).map_err(Into::into));
    match written {
        Ok(stat) => Ok(Temp {
            file: f,
            name,
            stat,
            at: Instant::now(),
        }),
        Err(e) => {
            let _ = c::unlink_at(dir, &name);
            Err(e)
        }
    }
}

/// The file at `path` as a source of chunks, when it has the stamp the last scan read it
/// under.
fn base(ctx: &Ctx<'_>, dir: BorrowedFd<'_>, path: &RelPath) -> Option<Base> {
    let file = c::open_file_at(dir, path.file_name()).ok()?;
    let stamp = Stamp::of(&rustix::fs::fstat(&file).ok()?);
    let (known, trusted) = ctx.cache.seen(ctx.cache_key.unwrap_or(path), &stamp)?;
    let mut at = HashMap::with_capacity(known.chunks.len());
    let mut offset = 0u64;
    for ch in known.chunks.iter() {
        at.entry(ch.id).or_insert(offset);
        offset += u64::from(ch.len);
    }
    tracing::debug!(%path, trusted, "chunks shared with the old file are taken from it");
    Some(Base {
        file,
        stamp,
        at,
        trusted,
    })
}

/// A file being replaced, whose content the last scan read: where each of its chunks starts.
struct Base {
    file: std::fs::File,
    /// Its stamp when opened; the copies count only if it still has it after them.
    stamp: Stamp,
    at: HashMap<ChunkId, u64>,
    /// The stamp vouches for the content (read well after its last change): chunks are
    /// copied unchecked (by the kernel, or through the direct writer's buffer). Otherwise each
    /// is read and checked against its id first.
    trusted: bool,
}

/// Writes the chunks of `manifest` into `f`, all-zero chunks as holes, those `base` holds
/// copied from it. The store's chunks of a file with many of them are read and checked on a
/// thread of their own, ahead of the writes ([`READ_AHEAD_MIN`]).
fn write_content(
    f: &std::fs::File,
    manifest: &FileManifest,
    chunks: &dyn ChunkStore,
    base: Option<&Base>,
) -> Result<(), ContentError> {
    let from_store = manifest
        .chunks
        .iter()
        .filter(|ch| base.is_none_or(|b| !b.at.contains_key(&ch.id)))
        .map(|ch| ch.id);
    // Counted before anything is allocated: most files have a chunk or two.
    if from_store.clone().take(READ_AHEAD_MIN).count() < READ_AHEAD_MIN {
        return write_chunks(f, manifest, chunks, base, &mut |id| chunks.require(id));
    }
    let from_store: Vec<ChunkId> = from_store.collect();
    // The budget is in the lengths the manifest gives, so the reader stops at the first chunk
    // that is not the length its reference says (a member can send a manifest that lies):
    // what it holds ahead is then within the budget, and the writer reads the rest itself.
    let lens: HashMap<ChunkId, u32> = manifest.chunks.iter().map(|ch| (ch.id, ch.len)).collect();
    let largest = lens.values().copied().max().unwrap_or(1);
    let ahead = (READ_AHEAD_BYTES / largest.max(1) as usize).clamp(1, READ_AHEAD_MAX);
    std::thread::scope(|s| {
        let (tx, rx) = std::sync::mpsc::sync_channel(ahead);
        let reader = std::thread::Builder::new()
            .name("chorus-read-ahead".into())
            .spawn_scoped(s, move || {
                for id in from_store {
                    let got = chunks.require(&id);
                    let stop = match &got {
                        Ok(bytes) => lens.get(&id).is_none_or(|&l| bytes.len() != l as usize),
                        Err(_) => true,
                    };
                    // The writer stopped (its own error), or this chunk ends the read-ahead.
                    if tx.send((id, got)).is_err() || stop {
                        break;
                    }
                }
            });
        if reader.is_err() {
            // No thread to be had: read as the writes go.
            return write_chunks(f, manifest, chunks, base, &mut |id| chunks.require(id));
        }
        write_chunks(f, manifest, chunks, base, &mut |id| match rx.recv() {
            Ok((read, got)) => {
                debug_assert_eq!(read, *id, "the read-ahead follows the manifest's order");
                if read == *id { got } else { chunks.require(id) }
            }
            // The read-ahead ended early (a failed read, a chunk of another length).
            Err(_) => chunks.require(id),
        })
    })
}

/// [`write_content`]'s writes: each chunk from the old file when `base` holds it (and it
/// checks out there), otherwise from the store: through `from_store`, asked in the
/// manifest's order for exactly the chunks `base` does not hold, and straight from `chunks`
/// for any whose copy from `base` failed.
fn write_chunks(
    f: &std::fs::File,
    manifest: &FileManifest,
    chunks: &dyn ChunkStore,
    base: Option<&Base>,
    from_store: &mut dyn FnMut(&ChunkId) -> Result<Vec<u8>, chorus_chunking::Error>,
) -> Result<(), ContentError> {
    let mut out = if manifest.size() >= DIRECT_MIN {
        DirectWriter::new(f).map_or(Out::Cached(Cached::default()), Out::Direct)
    } else {
        Out::Cached(Cached::default())
    };
    // A file written past the page cache reads its old one past it too (its pages are likely
    // not cached: this process wrote it the same way).
    let mut old = match (&out, base) {
        (Out::Direct(_), Some(b)) => Some(DirectReader::new(&b.file)),
        _ => None,
    };
    let mut end = 0u64;
    // Chunks taken unchecked: they count only if the old file kept its stamp.
    let mut unseen = false;
    // A copy from the old file failed part way.
    let mut changed = false;
    let mut buf = Vec::new();
    for ch in manifest.chunks.iter() {
        let len = u64::from(ch.len);
        let from_base = base.and_then(|b| b.at.get(&ch.id).map(|&off| (b, off)));
        // True: written (or a hole left); false: still to do.
        let done = match (from_base, &mut out) {
            (Some((b, off)), Out::Direct(w)) if b.trusted => {
                unseen = true;
                let r = old
                    .as_mut()
                    .expect("a direct writer reads its base directly");
                match w.push_from(r, off, len) {
                    Ok(()) => true,
                    // Part of it may be in the buffer: the old file changed (it is shorter),
                    // so every chunk comes from the store, as when its stamp changes.
                    Err(PushError::Read(e)) => {
                        tracing::debug!(error = %e, "the old file changed as it was read: the file comes from the store");
                        changed = true;
                        break;
                    }
                    Err(PushError::Write(e)) => return Err(e.into()),
                }
            }
            (Some((b, off)), Out::Cached(c)) if b.trusted => {
                unseen = true;
                copy_from_base(&b.file, off, f, end, len).is_ok_and(|wrote| {
                    c.wrote(wrote, end + len);
                    true
                })
            }
            // Checked against its id: whatever the old file does meanwhile, these bytes are it.
            (Some((b, off)), out) => {
                buf.resize(ch.len as usize, 0);
                let read = match &mut old {
                    Some(r) => r.read_exact_at(&mut buf, off),
                    None => b.file.read_exact_at(&mut buf, off),
                };
                if read.is_ok() && ChunkId::of(&buf) == ch.id {
                    out.put(f, &buf, end)?;
                    true
                } else {
                    false
                }
            }
            (None, _) => false,
        };
        if !done {
            let bytes = match from_base {
                None => from_store(&ch.id),
                // Its copy from the old file failed: read here (the read-ahead skipped it).
                Some(_) => chunks.require(&ch.id),
            }
            .map_err(ContentError::Chunks)?;
            // A manifest whose length for a chunk is not the chunk's own is refused when
            // its delta is applied; one that got here anyway fails alone, having written
            // nothing past its declared size.
            if bytes.len() as u64 != len {
                return Err(ContentError::Io(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!(
                        "chunk {} is {} bytes, not the {len} the manifest says",
                        ch.id,
                        bytes.len()
                    ),
                )));
            }
            out.put(f, &bytes, end)?;
        }
        end += len;
        if let Out::Cached(c) = &mut out
            && end - c.handed >= WRITEBACK_EVERY
        {
            chorus_chunking::store::start_writeback(f, c.handed, end - c.handed);
            c.handed = end;
        }
    }
    if changed {
        // Its thread done with the file (and `O_DIRECT` off) before the file starts over.
        drop(out);
        drop(old);
    } else {
        match out {
            Out::Direct(w) => w.finish()?,
            // A trailing hole becomes part of the file.
            Out::Cached(c) if c.written_to < end => f.set_len(end)?,
            Out::Cached(_) => {}
        }
    }
    if unseen {
        let b = base.expect("copies come from a base");
        let still = rustix::fs::fstat(&b.file).map(|st| Stamp::of(&st));
        if changed || still.ok() != Some(b.stamp) {
            // The old file changed while it was copied from: every chunk from the store.
            f.set_len(0)?;
            return write_content(f, manifest, chunks, None);
        }
    }
    Ok(())
}

/// Where [`write_chunks`] writes: through the page cache, or past it for a big file.
enum Out<'f> {
    Cached(Cached),
    Direct(DirectWriter<'f>),
}

/// A file written through the page cache: what was written, and handed to the disk.
#[derive(Default)]
struct Cached {
    /// Where the bytes written so far end: short of the end after a trailing hole.
    written_to: u64,
    /// Bytes handed to the disk so far.
    handed: u64,
}

impl Cached {
    fn wrote(&mut self, wrote: bool, to: u64) {
        if wrote {
            self.written_to = to;
        }
    }
}

impl Out<'_> {
    /// Writes `bytes` at `at`, the end so far (an all-zero chunk as a hole).
    fn put(&mut self, f: &std::fs::File, bytes: &[u8], at: u64) -> std::io::Result<()> {
        match self {
            Out::Direct(w) => w.push(bytes),
            Out::Cached(c) => {
                let wrote = write_unless_zero(f, bytes, at)?;
                c.wrote(wrote, at + bytes.len() as u64);
                Ok(())
            }
        }
    }
}

/// Writes `bytes` at `at`, unless they are a long run of zeros: a hole is left by not
/// writing (the next write, or the size set at the end, is past it). True when written.
fn write_unless_zero(f: &std::fs::File, bytes: &[u8], at: u64) -> std::io::Result<bool> {
    if bytes.len() < HOLE_MIN || !crate::direct::is_zero(bytes) {
        f.write_all_at(bytes, at)?;
        return Ok(true);
    }
    Ok(false)
}

/// Copies `len` bytes at `from_at` in `from` to `to_at` in `to`, in the kernel. A hole in
/// `from` stays a hole (false: nothing written). Fails when `from` is shorter than that (it
/// changed).
fn copy_from_base(
    from: &std::fs::File,
    mut from_at: u64,
    to: &std::fs::File,
    mut to_at: u64,
    len: u64,
) -> std::io::Result<bool> {
    let end = from_at + len;
    if is_hole(from, from_at, end) {
        return Ok(false);
    }
    while from_at < end {
        let want = usize::try_from(end - from_at).unwrap_or(usize::MAX);
        let n = rustix::fs::copy_file_range(from, Some(&mut from_at), to, Some(&mut to_at), want)?;
        if n == 0 {
            return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof));
        }
    }
    Ok(true)
}

/// True when `from..end` of `f` is one hole (no data up to `end`, or none at all after it
/// while the file reaches `end`).
fn is_hole(f: &std::fs::File, from: u64, end: u64) -> bool {
    if end - from < HOLE_MIN as u64 {
        return false;
    }
    match rustix::fs::seek(f, rustix::fs::SeekFrom::Data(from)) {
        Ok(data) => data >= end,
        // No data past `from`: a hole to the end of the file, if the file is that long.
        Err(rustix::io::Errno::NXIO) => {
            rustix::fs::fstat(f).is_ok_and(|st| st.st_size as u64 >= end)
        }
        Err(_) => false,
    }
}
