//! Writing files: content into an exclusive temp file beside the target (all-zero chunks as
//! holes, so sparse files stay sparse), its mode set, made durable (one by one for a few
//! files, one `syncfs` for a batch of many), and renamed into place unless the target changed
//! since the scan. A temp file never renamed is removed.

use std::io::{Seek, SeekFrom, Write};
use std::os::fd::AsFd;

use chorus_chunking::{ChunkStore, FileManifest, Mode, RelPath};
use rustix::fs::FileType;

use crate::batch::{Batch, Pending};
use crate::cache::{OnDisk, Stamp};
use crate::confined as c;
use crate::write::{Stop, Writer, parent_str};

/// A batch of at most this many files is made durable file by file (a `syncfs` flushes the
/// whole file system, other programs' writes included: worth it only for many files).
const FSYNC_EACH_UP_TO: usize = 8;
/// All-zero chunks at least this long are written as holes.
const HOLE_MIN: usize = 4096;

impl Writer<'_, '_> {
    /// Writes a file's content to a temp file beside it, with its mode.
    pub(crate) fn temp_file(
        &mut self,
        path: &RelPath,
        mode: Mode,
        manifest: &FileManifest,
    ) -> Result<Option<Pending>, Stop> {
        let dir = match self.open_dir(&parent_str(path), true) {
            Ok(d) => d,
            Err(e) => {
                self.io_fail(path, &e);
                return Ok(None);
            }
        };
        let (mut f, temp) = match c::create_temp(dir.as_fd(), self.ctx.session) {
            Ok(t) => t,
            Err(e) => {
                self.io_fail(path, &e);
                return Ok(None);
            }
        };
        let written = write_content(&mut f, manifest, self.ctx.chunks)
            .and_then(|()| c::chmod(f.as_fd(), mode.bits()).map_err(Into::into));
        match written {
            Ok(()) => Ok(Some(Pending {
                path: path.clone(),
                dir,
                temp,
                file: f,
                manifest: manifest.clone(),
            })),
            Err(e) => {
                let _ = c::unlink_at(dir.as_fd(), &temp);
                match e {
                    ContentError::Io(e) => {
                        self.io_fail(path, &e);
                        Ok(None)
                    }
                    ContentError::Chunks(e) => Err(Stop::Chunks(e)),
                }
            }
        }
    }

    /// Makes a batch's temp files durable and renames each into place unless its target
    /// changed since the scan.
    pub(crate) fn commit(&mut self, batch: &mut Batch) -> Result<(), Stop> {
        if batch.files.is_empty() {
            return Ok(());
        }
        if batch.files.len() > FSYNC_EACH_UP_TO {
            if let Err(e) = c::syncfs(self.ctx.root) {
                for p in std::mem::take(&mut batch.files) {
                    let _ = c::unlink_at(p.dir.as_fd(), &p.temp);
                    self.io_fail(&p.path, &e);
                }
                return Ok(());
            }
        } else {
            let mut durable = Vec::with_capacity(batch.files.len());
            for p in std::mem::take(&mut batch.files) {
                match p.file.sync_all() {
                    Ok(()) => durable.push(p),
                    Err(e) => {
                        let _ = c::unlink_at(p.dir.as_fd(), &p.temp);
                        self.io_fail(&p.path, &e);
                    }
                }
            }
            batch.files = durable;
        }
        // Last first, so a stop leaves the rest in the batch for its drop to clean up.
        batch.files.reverse();
        while let Some(p) = batch.files.pop() {
            let name = p.path.file_name();
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
                return Err(Stop::Changed(p.path.clone()));
            }
            if let Err(e) = c::rename_at(p.dir.as_fd(), &p.temp, name, now.is_none()) {
                let _ = c::unlink_at(p.dir.as_fd(), &p.temp);
                if e.raw_os_error() == Some(libc::EEXIST) {
                    return Err(Stop::Changed(p.path.clone()));
                }
                self.io_fail(&p.path, &e);
                continue;
            }
            self.dirty.insert(parent_str(&p.path));
            if let Ok(Some(st)) = c::stat_at(p.dir.as_fd(), name) {
                self.out
                    .files
                    .push((p.path.clone(), Stamp::of(&st), p.manifest.clone()));
            }
        }
        batch.bytes = 0;
        Ok(())
    }
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

/// Writes the chunks of `manifest` into `f`, all-zero chunks as holes.
fn write_content(
    f: &mut std::fs::File,
    manifest: &FileManifest,
    chunks: &dyn ChunkStore,
) -> Result<(), ContentError> {
    let mut end = 0u64;
    for c in &manifest.chunks {
        let bytes = chunks.require(&c.id).map_err(ContentError::Chunks)?;
        if bytes.len() >= HOLE_MIN && bytes.iter().all(|&b| b == 0) {
            f.seek(SeekFrom::Current(bytes.len() as i64))?;
        } else {
            f.write_all(&bytes)?;
        }
        end += bytes.len() as u64;
    }
    // Sets the size: a trailing hole becomes part of the file.
    f.set_len(end)?;
    Ok(())
}
