//! Writing a version into the working folder: only the paths that differ from what the folder
//! held, each file replaced atomically (temp file in the same directory, made durable, renamed
//! over the old one, the rename made durable), never through a symlink: a path whose ancestor
//! on disk is a symlink or a file is refused rather than followed out of the share.
//!
//! Durability is per file (fsync of the file and of its directory) when a version writes a few
//! files, and per batch when it writes many: a batch's temp files are written, one `syncfs`
//! makes them durable, they are renamed, and a second `syncfs` makes the renames durable. The
//! guarantee is the same (no file is ever replaced by one that is not on disk whole, and the
//! version is durable before it is confirmed); 100,000 small files cost two calls per batch
//! instead of 200,000 fsyncs.
//!
//! A file is replaced or removed only if it is still what the last scan saw, checked right
//! before the rename or the removal: a save that lands while a version is being written stops
//! the writing ([`MaterializeError::Changed`]) instead of being overwritten, so the driver can
//! scan it and push it as a local edit. What was written before the stop is a consistent part
//! of the version, and the push's three-way merge takes it as such.

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use chorus_chunking::{ChunkStore, Entry, RelPath, TreeManifest};

/// Why a version could not be written.
#[derive(Debug, thiserror::Error)]
pub enum MaterializeError {
    #[error("{path}: {source}; check the folder's permissions and free space")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}: an ancestor on disk is a symlink or a file; refusing to write through it")]
    Unsafe(RelPath),
    #[error("chunk store: {0}")]
    Chunks(#[from] chorus_chunking::Error),
    #[error("{0}: changed on disk while a version was being written; it is scanned first")]
    Changed(RelPath),
}

/// Answers whether a path on disk still holds what the last scan saw (`None`: nothing there);
/// see [`ScanCache::unchanged`](crate::scan::ScanCache::unchanged).
pub type Unchanged<'a> = &'a dyn Fn(&RelPath, Option<&fs::Metadata>) -> bool;

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> MaterializeError + '_ {
    move |source| MaterializeError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Turns the folder from `old` (what it holds) into `new`, replacing or removing only files
/// `unchanged` vouches for. Returns the files it wrote, with their metadata right after the
/// rename (so the scan cache need not read them back).
pub fn materialize(
    root: &Path,
    old: &TreeManifest,
    new: &TreeManifest,
    chunks: &dyn ChunkStore,
    unchanged: Unchanged<'_>,
) -> Result<Vec<(RelPath, fs::Metadata)>, MaterializeError> {
    let mut written = Vec::new();
    // Removals first, deepest paths first, so directories empty out before they go.
    let mut gone: Vec<&RelPath> = old
        .iter()
        .filter(|(p, e)| new.get(p).is_none_or(|n| n.kind() != e.kind()))
        .map(|(p, _)| p)
        .collect();
    gone.sort_by(|a, b| b.cmp(a));
    for path in gone {
        check_ancestors(root, path)?;
        let full = path.to_fs_path(root);
        match fs::symlink_metadata(&full) {
            Ok(m) if m.is_dir() => {
                // Only an empty directory goes; anything left in it is not ours to delete.
                let _ = fs::remove_dir(&full);
            }
            Ok(m) if !unchanged(path, Some(&m)) => {
                return Err(MaterializeError::Changed(path.clone()));
            }
            Ok(_) => fs::remove_file(&full).map_err(io(&full))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(&full)(e)),
        }
    }
    let mut batch = Batch::default();
    for (path, entry) in new.iter() {
        if old.get(path) == Some(entry) && path.to_fs_path(root).symlink_metadata().is_ok() {
            continue;
        }
        check_ancestors(root, path)?;
        let full = path.to_fs_path(root);
        match entry {
            Entry::Dir => {
                if !full.is_dir() {
                    fs::create_dir_all(&full).map_err(io(&full))?;
                }
            }
            Entry::File { exec, manifest } => {
                let dir = full.parent().unwrap_or(root);
                fs::create_dir_all(dir).map_err(io(dir))?;
                let tmp = dir.join(temp_name(path.file_name()));
                {
                    let mut f = fs::File::create(&tmp).map_err(io(&tmp))?;
                    for c in &manifest.chunks {
                        f.write_all(&chunks.require(&c.id)?).map_err(io(&tmp))?;
                    }
                    let mode = if *exec { 0o755 } else { 0o644 };
                    f.set_permissions(fs::Permissions::from_mode(mode))
                        .map_err(io(&tmp))?;
                }
                batch.bytes += manifest.size();
                batch.files.push((path.clone(), tmp, full));
                if batch.files.len() >= BATCH_FILES || batch.bytes >= BATCH_BYTES {
                    batch.commit(root, unchanged, &mut written)?;
                }
            }
            Entry::Symlink { target } => {
                let dir = full.parent().unwrap_or(root);
                fs::create_dir_all(dir).map_err(io(dir))?;
                if let Ok(md) = full.symlink_metadata() {
                    if !unchanged(path, Some(&md)) {
                        return Err(MaterializeError::Changed(path.clone()));
                    }
                    fs::remove_file(&full).map_err(io(&full))?;
                }
                std::os::unix::fs::symlink(target, &full).map_err(io(&full))?;
            }
        }
    }
    batch.commit(root, unchanged, &mut written)?;
    Ok(written)
}

/// Up to this many files (or bytes) are made durable together.
const BATCH_FILES: usize = 1024;
const BATCH_BYTES: u64 = 256 << 20;
/// A batch of at most this many files is made durable file by file (a `syncfs` flushes the
/// whole filesystem, other programs' writes included: worth it only for many files).
const FSYNC_EACH_UP_TO: usize = 8;

/// Temp files written and not yet renamed into place: (tree path, temp, final). Those still
/// here when it is dropped (the writing stopped) are removed.
#[derive(Default)]
struct Batch {
    files: Vec<(RelPath, PathBuf, PathBuf)>,
    bytes: u64,
}

impl Drop for Batch {
    fn drop(&mut self) {
        for (_, tmp, _) in &self.files {
            let _ = fs::remove_file(tmp);
        }
    }
}

impl Batch {
    /// Makes the temp files durable, renames each into place unless its target changed since
    /// the scan, makes the renames durable.
    fn commit(
        &mut self,
        root: &Path,
        unchanged: Unchanged<'_>,
        written: &mut Vec<(RelPath, fs::Metadata)>,
    ) -> Result<(), MaterializeError> {
        if self.files.is_empty() {
            return Ok(());
        }
        let each = self.files.len() <= FSYNC_EACH_UP_TO;
        if each {
            for (_, tmp, _) in &self.files {
                fs::File::open(tmp)
                    .and_then(|f| f.sync_all())
                    .map_err(io(tmp))?;
            }
        } else {
            syncfs(root)?;
        }
        let mut dirs = std::collections::BTreeSet::new();
        // Last first, so a stop leaves the rest in `files` for `drop` to clean up.
        self.files.reverse();
        while let Some((path, tmp, full)) = self.files.pop() {
            if !unchanged(&path, fs::symlink_metadata(&full).ok().as_ref()) {
                let _ = fs::remove_file(&tmp);
                return Err(MaterializeError::Changed(path));
            }
            if let Err(e) = fs::rename(&tmp, &full) {
                let _ = fs::remove_file(&tmp);
                return Err(io(&full)(e));
            }
            if let Ok(md) = fs::symlink_metadata(&full) {
                written.push((path, md));
            }
            if let Some(dir) = full.parent() {
                dirs.insert(dir.to_path_buf());
            }
        }
        if each {
            for dir in dirs {
                fs::File::open(&dir)
                    .and_then(|d| d.sync_all())
                    .map_err(io(&dir))?;
            }
        } else {
            syncfs(root)?;
        }
        self.bytes = 0;
        Ok(())
    }
}

/// Flushes the filesystem that holds `root` (Linux `syncfs`, which reports write-back errors).
fn syncfs(root: &Path) -> Result<(), MaterializeError> {
    use std::os::fd::AsRawFd;
    let dir = fs::File::open(root).map_err(io(root))?;
    // SAFETY: `dir` is an open file descriptor for the duration of the call.
    if unsafe { libc::syncfs(dir.as_raw_fd()) } != 0 {
        return Err(io(root)(std::io::Error::last_os_error()));
    }
    Ok(())
}

/// The temporary name a file is written under before it is renamed into place.
pub(crate) fn temp_name(file_name: &str) -> String {
    format!(".{file_name}{TEMP_SUFFIX}")
}

const TEMP_SUFFIX: &str = ".chorus-tmp";

/// Removes temporary files a crash left half written (before the first scan, so they are never
/// taken for local edits). Does not enter the state dir or follow symlinks.
pub fn remove_leftovers(root: &Path) -> Result<usize, MaterializeError> {
    let mut removed = 0;
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in fs::read_dir(&dir).map_err(io(&dir))? {
            let e = e.map_err(io(&dir))?;
            let ft = e.file_type().map_err(io(&dir))?;
            let name = e.file_name();
            let name = name.to_string_lossy();
            if ft.is_dir() && !(dir == root && name == chorus_chunking::STATE_DIR) {
                stack.push(e.path());
            } else if ft.is_file() && name.starts_with('.') && name.ends_with(TEMP_SUFFIX) {
                fs::remove_file(e.path()).map_err(io(&e.path()))?;
                removed += 1;
            }
        }
    }
    Ok(removed)
}

/// Refuses a path whose existing ancestors are not all real directories.
fn check_ancestors(root: &Path, path: &RelPath) -> Result<(), MaterializeError> {
    for anc in path.ancestors() {
        let full = root.join(anc);
        match fs::symlink_metadata(&full) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => return Err(MaterializeError::Unsafe(path.clone())),
            Err(_) => return Ok(()), // created below as a directory
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use chorus_chunking::chunker::chunk_bytes;
    use chorus_chunking::{ChunkerParams, MemStore};

    use super::*;

    fn tree(files: &[(&str, &[u8])], store: &MemStore) -> TreeManifest {
        TreeManifest::from_entries(files.iter().map(|(p, bytes)| {
            let m = chunk_bytes(bytes, ChunkerParams::default());
            let mut pos = 0;
            for c in &m.chunks {
                store.put(&c.id, &bytes[pos..pos + c.len as usize]).unwrap();
                pos += c.len as usize;
            }
            (
                RelPath::new(*p).unwrap(),
                Entry::File {
                    exec: false,
                    manifest: m,
                },
            )
        }))
        .unwrap()
    }

    #[test]
    fn writes_changes_removes_what_went_and_refuses_symlinked_ancestors() {
        let dir = tempfile::tempdir().unwrap();
        let store = MemStore::new();
        let a = tree(&[("x.txt", b"one"), ("d/y.txt", b"two")], &store);
        materialize(dir.path(), &TreeManifest::empty(), &a, &store, ANY).unwrap();
        assert_eq!(fs::read(dir.path().join("d/y.txt")).unwrap(), b"two");
        let b = tree(&[("x.txt", b"ONE")], &store);
        materialize(dir.path(), &a, &b, &store, ANY).unwrap();
        assert_eq!(fs::read(dir.path().join("x.txt")).unwrap(), b"ONE");
        assert!(!dir.path().join("d/y.txt").exists());

        let outside = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(outside.path(), dir.path().join("e")).unwrap();
        let c = tree(&[("x.txt", b"ONE"), ("e/z.txt", b"escape")], &store);
        assert!(matches!(
            materialize(dir.path(), &b, &c, &store, ANY),
            Err(MaterializeError::Unsafe(_))
        ));
        assert!(!outside.path().join("z.txt").exists());
    }

    /// Trusts the disk blindly (tests that are not about the changed-since-scan check).
    const ANY: Unchanged<'static> = &|_, _| true;

    #[test]
    fn a_file_saved_after_the_scan_is_neither_overwritten_nor_removed() {
        use crate::scan::{ScanCache, scan_dir};
        let dir = tempfile::tempdir().unwrap();
        let store = MemStore::new();
        let params = chorus_chunking::ChunkerParams::default();
        let a = tree(
            &[("a.txt", b"one"), ("b.txt", b"two"), ("c.txt", b"3")],
            &store,
        );
        materialize(dir.path(), &TreeManifest::empty(), &a, &store, ANY).unwrap();
        let mut seen = ScanCache::new();
        scan_dir(dir.path(), params, &mut seen, &store).unwrap();
        let check = |p: &RelPath, md: Option<&fs::Metadata>| seen.unchanged(p, md);

        // A save after the scan: the version that changes the file stops there.
        fs::write(dir.path().join("b.txt"), b"saved by the user").unwrap();
        let b = tree(
            &[("a.txt", b"one"), ("b.txt", b"TWO"), ("c.txt", b"3")],
            &store,
        );
        match materialize(dir.path(), &a, &b, &store, &check) {
            Err(MaterializeError::Changed(p)) => assert_eq!(p.as_str(), "b.txt"),
            other => panic!("expected a stop at b.txt, got {other:?}"),
        }
        assert_eq!(
            fs::read(dir.path().join("b.txt")).unwrap(),
            b"saved by the user"
        );
        assert_eq!(
            remove_leftovers(dir.path()).unwrap(),
            0,
            "no temp file left"
        );

        // Nor removed by a version that deletes it.
        let without_b = tree(&[("a.txt", b"one"), ("c.txt", b"3")], &store);
        assert!(matches!(
            materialize(dir.path(), &a, &without_b, &store, &check),
            Err(MaterializeError::Changed(_))
        ));
        assert!(dir.path().join("b.txt").exists());

        // A file deleted after the scan is not brought back by a version that changes it.
        fs::remove_file(dir.path().join("c.txt")).unwrap();
        let c = tree(
            &[("a.txt", b"one"), ("b.txt", b"two"), ("c.txt", b"three")],
            &store,
        );
        assert!(matches!(
            materialize(dir.path(), &a, &c, &store, &check),
            Err(MaterializeError::Changed(_))
        ));
        assert!(!dir.path().join("c.txt").exists());

        // Once scanned again, the version is written over what the scan saw.
        scan_dir(dir.path(), params, &mut seen, &store).unwrap();
        let check = |p: &RelPath, md: Option<&fs::Metadata>| seen.unchanged(p, md);
        let now = tree(
            &[("a.txt", b"one"), ("b.txt", b"saved by the user")],
            &store,
        );
        let d = tree(
            &[("a.txt", b"ONE"), ("b.txt", b"saved by the user")],
            &store,
        );
        materialize(dir.path(), &now, &d, &store, &check).unwrap();
        assert_eq!(fs::read(dir.path().join("a.txt")).unwrap(), b"ONE");
    }

    #[test]
    fn many_files_are_written_in_batches_and_no_temp_file_stays() {
        let dir = tempfile::tempdir().unwrap();
        let store = MemStore::new();
        let texts: Vec<(String, Vec<u8>)> = (0..2500)
            .map(|i| {
                (
                    format!("d{}/f{i}.txt", i % 7),
                    format!("file {i}\n").into_bytes(),
                )
            })
            .collect();
        let files: Vec<(&str, &[u8])> = texts
            .iter()
            .map(|(p, b)| (p.as_str(), b.as_slice()))
            .collect();
        let a = tree(&files, &store);
        let written = materialize(dir.path(), &TreeManifest::empty(), &a, &store, ANY).unwrap();
        assert_eq!(written.len(), 2500, "every file reported with its metadata");
        for (p, b) in &texts {
            assert_eq!(&fs::read(dir.path().join(p)).unwrap(), b);
        }
        assert_eq!(remove_leftovers(dir.path()).unwrap(), 0);
    }

    #[test]
    fn leftover_temp_files_are_removed_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("d/.chorus")).unwrap();
        fs::write(dir.path().join(".a.txt.chorus-tmp"), b"half").unwrap();
        fs::write(dir.path().join("d/.b.chorus-tmp"), b"half").unwrap();
        fs::write(dir.path().join("d/keep.txt"), b"mine").unwrap();
        fs::write(dir.path().join("d/.hidden"), b"mine").unwrap();
        assert_eq!(remove_leftovers(dir.path()).unwrap(), 2);
        assert!(dir.path().join("d/keep.txt").exists());
        assert!(dir.path().join("d/.hidden").exists());
        assert!(!dir.path().join(".a.txt.chorus-tmp").exists());
    }
}
