//! Scanning a directory into a [`TreeManifest`].
//!
//! Paths are validated ([`RelPath`]), sorted by the manifest, and symlinks are recorded as
//! links and never followed. The state dir at the root and whatever `.chorusignore` files
//! exclude (gitignore syntax) are skipped, as are names that are not UTF-8 and special files
//! (sockets, fifos, devices); each skip is reported in [`ScanReport::skipped`] rather than
//! silently dropped. A [`ScanCache`] keyed by (size, mtime, ctime, inode) means an unchanged
//! file is not read again on the next scan.

use std::collections::HashMap;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use chorus_chunking::chunker::{
    ChunkerParams, chunk_bytes, chunk_bytes_parallel, file_manifest_pipelined,
};
use chorus_chunking::{ChunkStore, Entry, Error, FileManifest, RelPath, STATE_DIR, TreeManifest};

/// The per-directory ignore file, in gitignore syntax.
pub const IGNORE_FILE: &str = ".chorusignore";

/// Files up to this size are read whole and chunked in memory (the cut and the hashing split
/// over two cores from 4 MiB on: 4.1 GiB/s here); larger ones stream through a reader thread
/// and a hashing thread (2.9 GiB/s) in a few blocks of memory.
const WHOLE_READ_MAX: u64 = 64 << 20;
const PARALLEL_ABOVE: usize = 4 << 20;

/// A file whose mtime is this close to the scan's start may still be written within the same
/// timestamp tick, so it is not trusted from the cache next time ("racy" entries, as git does).
const RACY_WINDOW: Duration = Duration::from_secs(2);

/// What a file looked like when it was last read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Stamp {
    size: u64,
    mtime_ns: i128,
    ctime_ns: i128,
    ino: u64,
}

impl Stamp {
    fn of(md: &fs::Metadata) -> Stamp {
        Stamp {
            size: md.len(),
            mtime_ns: i128::from(md.mtime()) * 1_000_000_000 + i128::from(md.mtime_nsec()),
            ctime_ns: i128::from(md.ctime()) * 1_000_000_000 + i128::from(md.ctime_nsec()),
            ino: md.ino(),
        }
    }
}

/// A file as the last scan saw it.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Seen {
    stamp: Stamp,
    manifest: FileManifest,
    /// False for a file changed so recently that a write within the same timestamp tick could
    /// leave its stamp as it is: its manifest is not reused, it is read again next time.
    trusted: bool,
}

/// Remembers file manifests by path and stamp, so a rescan reads only what changed, and what
/// the last scan saw, so a writer can tell whether a file changed since.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ScanCache {
    params: Option<ChunkerParams>,
    files: HashMap<RelPath, Seen>,
}

impl ScanCache {
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of files known (as the last scan saw them, or as written since).
    pub fn len(&self) -> usize {
        self.files.len()
    }

    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// Forgets every file when the chunk sizes changed: their manifests were cut otherwise.
    fn use_params(&mut self, params: ChunkerParams) {
        if self.params != Some(params) {
            self.files.clear();
            self.params = Some(params);
        }
    }

    /// Records a file this process just wrote (the materializer), as it is on disk now, so the
    /// next scan does not read it back. Only for content whose manifest is known to be what
    /// was written; a later change of the file changes its stamp and it is read again.
    pub fn remember(&mut self, path: RelPath, md: &fs::Metadata, manifest: FileManifest) {
        if md.len() == manifest.size() {
            self.files.insert(
                path,
                Seen {
                    stamp: Stamp::of(md),
                    manifest,
                    trusted: true,
                },
            );
        }
    }

    /// True when `path` holds what the last scan (or [`remember`](Self::remember)) saw there:
    /// the same regular file, unchanged (`md` is its metadata now), or nothing (`md` is `None`)
    /// where the scan saw no file. A writer about to replace or remove a file asks this right
    /// before doing so, and leaves alone a file changed since, so that change is scanned rather
    /// than overwritten.
    pub fn unchanged(&self, path: &RelPath, md: Option<&fs::Metadata>) -> bool {
        match (self.files.get(path), md) {
            (None, None) => true,
            (Some(seen), Some(md)) => md.file_type().is_file() && seen.stamp == Stamp::of(md),
            (None, Some(md)) => !md.file_type().is_file(),
            (Some(_), None) => false,
        }
    }
}

/// Why a path was left out of the manifest.
#[derive(Debug, Clone)]
pub struct Skipped {
    pub path: PathBuf,
    pub reason: String,
}

/// Counters of one scan.
#[derive(Debug, Clone, Default)]
pub struct ScanReport {
    /// Files read and chunked.
    pub files_read: u64,
    /// Bytes read from those files.
    pub bytes_read: u64,
    /// Files taken from the cache without reading.
    pub files_cached: u64,
    /// Paths left out, with the reason.
    pub skipped: Vec<Skipped>,
}

/// Scans `root`. Every chunk of every file read is put in `store`; a cached file's chunks are
/// assumed to be there already (they were put when it was read).
pub fn scan_dir(
    root: &Path,
    params: ChunkerParams,
    cache: &mut ScanCache,
    store: &dyn ChunkStore,
) -> Result<(TreeManifest, ScanReport), Error> {
    cache.use_params(params);
    let started = SystemTime::now();
    let mut report = ScanReport::default();
    let mut entries = Vec::new();
    let mut seen = HashMap::with_capacity(cache.files.len());

    let walker = ignore::WalkBuilder::new(root)
        .standard_filters(false)
        .follow_links(false)
        .add_custom_ignore_filename(IGNORE_FILE)
        .filter_entry({
            let state = root.join(STATE_DIR);
            move |e| e.path() != state
        })
        .build();
    for item in walker {
        let dent = match item {
            Ok(d) => d,
            Err(e) => {
                report.skipped.push(Skipped {
                    path: root.to_path_buf(),
                    reason: e.to_string(),
                });
                continue;
            }
        };
        let abs = dent.path();
        let Ok(rel) = abs.strip_prefix(root) else {
            continue;
        };
        if rel.as_os_str().is_empty() {
            continue;
        }
        let skip = |report: &mut ScanReport, reason: String| {
            report.skipped.push(Skipped {
                path: rel.to_path_buf(),
                reason,
            })
        };
        let Some(rel_str) = rel.to_str() else {
            skip(&mut report, "name is not valid UTF-8".into());
            continue;
        };
        let path = match RelPath::new(rel_str) {
            Ok(p) => p,
            Err(e) => {
                skip(&mut report, e.to_string());
                continue;
            }
        };
        let md = match fs::symlink_metadata(abs) {
            Ok(md) => md,
            // Deleted while scanning: it is simply not in this version.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => {
                return Err(Error::Io {
                    path: abs.into(),
                    source: e,
                });
            }
        };
        let ft = md.file_type();
        let entry = if ft.is_dir() {
            Entry::Dir
        } else if ft.is_symlink() {
            let target = fs::read_link(abs).map_err(Error::io(abs))?;
            let Some(t) = target.to_str() else {
                skip(&mut report, "symlink target is not valid UTF-8".into());
                continue;
            };
            match Entry::symlink(t) {
                Ok(e) => e,
                Err(e) => {
                    skip(&mut report, e.to_string());
                    continue;
                }
            }
        } else if ft.is_file() {
            let exec = md.permissions().mode() & 0o111 != 0;
            let stamp = Stamp::of(&md);
            let manifest = match cache.files.remove(&path) {
                Some(cached) if cached.trusted && cached.stamp == stamp => {
                    report.files_cached += 1;
                    let m = cached.manifest.clone();
                    seen.insert(path.clone(), cached);
                    m
                }
                _ => match read_file(abs, &md, params, store, &mut report)? {
                    Some((stamp, m)) => {
                        seen.insert(path.clone(), Seen::read(stamp, m.clone(), started));
                        m
                    }
                    None => continue,
                },
            };
            Entry::File { exec, manifest }
        } else {
            skip(
                &mut report,
                "not a regular file, directory or symlink".into(),
            );
            continue;
        };
        entries.push((path, entry));
    }
    cache.files = seen;
    Ok((TreeManifest::from_entries(entries)?, report))
}

/// Scans one file as the only entry, `as_path`, of a tree (a document share): the empty tree
/// when the file does not exist. Chunks go into `store` and the cache works as in [`scan_dir`].
pub fn scan_file(
    file: &Path,
    as_path: &RelPath,
    params: ChunkerParams,
    cache: &mut ScanCache,
    store: &dyn ChunkStore,
) -> Result<(TreeManifest, ScanReport), Error> {
    cache.use_params(params);
    let started = SystemTime::now();
    let mut report = ScanReport::default();
    let md = match fs::symlink_metadata(file) {
        Ok(md) => md,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            cache.files.clear();
            return Ok((TreeManifest::empty(), report));
        }
        Err(e) => return Err(Error::io(file)(e)),
    };
    if !md.file_type().is_file() {
        return Err(Error::Invalid(format!(
            "{} is not a regular file; a document share is one file",
            file.display()
        )));
    }
    let exec = md.permissions().mode() & 0o111 != 0;
    let stamp = Stamp::of(&md);
    let manifest = match cache.files.get(as_path) {
        Some(cached) if cached.trusted && cached.stamp == stamp => {
            report.files_cached += 1;
            cached.manifest.clone()
        }
        _ => {
            cache.files.clear();
            match read_file(file, &md, params, store, &mut report)? {
                Some((stamp, m)) => {
                    cache
                        .files
                        .insert(as_path.clone(), Seen::read(stamp, m.clone(), started));
                    m
                }
                None => return Ok((TreeManifest::empty(), report)),
            }
        }
    };
    let tree = TreeManifest::from_entries([(as_path.clone(), Entry::File { exec, manifest })])?;
    Ok((tree, report))
}

/// Reads and chunks one file. If it changes while being read, it is read again (a few times);
/// if it vanishes, `None`.
fn read_file(
    abs: &Path,
    md: &fs::Metadata,
    params: ChunkerParams,
    store: &dyn ChunkStore,
    report: &mut ScanReport,
) -> Result<Option<(Stamp, FileManifest)>, Error> {
    let mut before = Stamp::of(md);
    for _ in 0..3 {
        let f = match fs::File::open(abs) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(Error::Io {
                    path: abs.into(),
                    source: e,
                });
            }
        };
        let m = chunk_file(f, before.size, params, store).map_err(|e| match e {
            Error::Io { source, .. } => Error::Io {
                path: abs.into(),
                source,
            },
            e => e,
        })?;
        report.files_read += 1;
        report.bytes_read += m.size();
        let after = match fs::symlink_metadata(abs) {
            Ok(md) => Stamp::of(&md),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(Error::Io {
                    path: abs.into(),
                    source: e,
                });
            }
        };
        if after == before && m.size() == after.size {
            return Ok(Some((after, m)));
        }
        before = after;
    }
    // Still being written: take the last read, but never trust it from the cache.
    let f = fs::File::open(abs).map_err(Error::io(abs))?;
    let m = chunk_file(f, before.size, params, store)?;
    Ok(Some((
        Stamp {
            size: u64::MAX,
            ..before
        },
        m,
    )))
}

/// Chunks an open file of (about) `size` bytes into `store`.
fn chunk_file(
    f: fs::File,
    size: u64,
    params: ChunkerParams,
    store: &dyn ChunkStore,
) -> Result<FileManifest, Error> {
    chunk_file_within(f, size, WHOLE_READ_MAX, params, store)
}

/// [`chunk_file`] with the largest file read whole as a parameter. `size` is what a `stat`
/// said; a file still being written may hold more by the time it is read, so the whole read
/// stops at `whole_max` and, past it, the file is streamed from its start instead: memory
/// stays bounded by `whole_max` whatever the file grows to.
fn chunk_file_within(
    mut f: fs::File,
    size: u64,
    whole_max: u64,
    params: ChunkerParams,
    store: &dyn ChunkStore,
) -> Result<FileManifest, Error> {
    use std::io::{Read, Seek, SeekFrom};
    let sink = |r: chorus_chunking::ChunkRef, bytes: &[u8]| store.put(&r.id, bytes);
    if size > whole_max {
        return file_manifest_pipelined(f, params, sink);
    }
    let mut data = Vec::with_capacity(size as usize);
    (&mut f)
        .take(whole_max + 1)
        .read_to_end(&mut data)
        .map_err(Error::io("<file>"))?;
    if data.len() as u64 > whole_max {
        drop(data);
        f.seek(SeekFrom::Start(0)).map_err(Error::io("<file>"))?;
        return file_manifest_pipelined(f, params, sink);
    }
    let m = if data.len() >= PARALLEL_ABOVE {
        chunk_bytes_parallel(&data, params)
    } else {
        chunk_bytes(&data, params)
    };
    let mut pos = 0;
    for c in &m.chunks {
        store.put(&c.id, &data[pos..pos + c.len as usize])?;
        pos += c.len as usize;
    }
    Ok(m)
}

impl Seen {
    /// A file just read by a scan that started at `started`.
    fn read(stamp: Stamp, manifest: FileManifest, started: SystemTime) -> Seen {
        Seen {
            trusted: !is_racy(&stamp, started),
            stamp,
            manifest,
        }
    }
}

fn is_racy(stamp: &Stamp, started: SystemTime) -> bool {
    let start_ns = started
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i128);
    stamp.size == u64::MAX || stamp.mtime_ns >= start_ns - RACY_WINDOW.as_nanos() as i128
}

#[cfg(test)]
mod tests {
    use super::*;
    use chorus_chunking::MemStore;
    use std::os::unix::fs::symlink;

    fn params() -> ChunkerParams {
        ChunkerParams::new(256, 1024, 4096).unwrap()
    }

    /// Sets a file's mtime into the past so the cache trusts it.
    fn age(path: &Path) {
        let old = SystemTime::now() - Duration::from_secs(3600);
        fs::File::options()
            .write(true)
            .open(path)
            .unwrap()
            .set_modified(old)
            .unwrap();
    }

    #[test]
    fn scans_files_dirs_symlinks_and_skips_state_and_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        fs::create_dir_all(r.join("src/deep")).unwrap();
        fs::create_dir_all(r.join(".chorus/chunks")).unwrap();
        fs::write(r.join(".chorus/chunks/x"), b"state").unwrap();
        fs::write(r.join("src/deep/a.txt"), b"hello").unwrap();
        fs::write(r.join("run.sh"), b"#!/bin/sh\n").unwrap();
        fs::set_permissions(r.join("run.sh"), fs::Permissions::from_mode(0o755)).unwrap();
        fs::write(r.join("empty"), b"").unwrap();
        fs::write(r.join("build.log"), b"noise").unwrap();
        fs::write(r.join(IGNORE_FILE), b"*.log\n").unwrap();
        symlink("../../etc/passwd", r.join("escape")).unwrap();
        symlink("src", r.join("srclink")).unwrap();

        let store = MemStore::new();
        let (tree, report) = scan_dir(r, params(), &mut ScanCache::new(), &store).unwrap();
        let paths: Vec<_> = tree.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(
            paths,
            [
                ".chorusignore",
                "empty",
                "escape",
                "run.sh",
                "src",
                "src/deep",
                "src/deep/a.txt",
                "srclink"
            ]
        );
        assert!(matches!(
            tree.get_str("run.sh"),
            Some(Entry::File { exec: true, .. })
        ));
        assert!(matches!(
            tree.get_str("src/deep/a.txt"),
            Some(Entry::File { exec: false, .. })
        ));
        assert_eq!(
            tree.get_str("escape"),
            Some(&Entry::Symlink {
                target: "../../etc/passwd".into()
            })
        );
        assert_eq!(
            tree.get_str("srclink"),
            Some(&Entry::Symlink {
                target: "src".into()
            })
        );
        assert_eq!(tree.get_str("empty").unwrap().size(), 0);
        assert!(report.skipped.is_empty(), "{:?}", report.skipped);
        // Every chunk read is in the store.
        for c in tree.chunks() {
            assert!(store.contains(&c.id).unwrap());
        }
    }

    #[test]
    fn unchanged_files_are_not_read_again() {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        for i in 0..10 {
            fs::write(r.join(format!("f{i}")), vec![i as u8; 5000]).unwrap();
            age(&r.join(format!("f{i}")));
        }
        let store = MemStore::new();
        let mut cache = ScanCache::new();
        let (t1, rep1) = scan_dir(r, params(), &mut cache, &store).unwrap();
        assert_eq!((rep1.files_read, rep1.files_cached), (10, 0));
        let (t2, rep2) = scan_dir(r, params(), &mut cache, &store).unwrap();
        assert_eq!((rep2.files_read, rep2.files_cached), (0, 10));
        assert_eq!(t1.version_id(), t2.version_id());

        fs::write(r.join("f3"), b"changed").unwrap();
        fs::remove_file(r.join("f4")).unwrap();
        let (t3, rep3) = scan_dir(r, params(), &mut cache, &store).unwrap();
        assert_eq!((rep3.files_read, rep3.files_cached), (1, 8));
        assert_eq!(t3.get_str("f3").unwrap().size(), 7);
        assert!(t3.get_str("f4").is_none());
        // f3 was just written: it is racy, so it is read again next time, the others not.
        let (_, rep4) = scan_dir(r, params(), &mut cache, &store).unwrap();
        assert_eq!((rep4.files_read, rep4.files_cached), (1, 8));

        // Other chunk sizes invalidate the cache.
        let (_, rep5) = scan_dir(r, ChunkerParams::default(), &mut cache, &store).unwrap();
        assert_eq!(rep5.files_read, 9);
    }

    #[test]
    fn a_file_grown_past_the_whole_read_bound_since_its_stat_is_streamed_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("growing");
        let bytes: Vec<u8> = (0..300_000u32).map(|i| (i * 7 + i / 251) as u8).collect();
        fs::write(&path, &bytes).unwrap();
        let store = MemStore::new();
        // The stat said 100 bytes; the file holds far more than the 4 KiB read whole.
        let f = fs::File::open(&path).unwrap();
        let m = chunk_file_within(f, 100, 4096, params(), &store).unwrap();
        assert_eq!(
            m,
            chunk_bytes(&bytes, params()),
            "the whole file, not its first 4 KiB"
        );
        assert_eq!(m.size(), bytes.len() as u64);
        for c in &m.chunks {
            assert!(store.get(&c.id).unwrap().is_some());
        }
    }

    #[test]
    fn a_recently_modified_file_is_read_again_yet_known_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        let hot = dir.path().join("hot");
        fs::write(&hot, b"v1").unwrap();
        let store = MemStore::new();
        let mut cache = ScanCache::new();
        scan_dir(dir.path(), params(), &mut cache, &store).unwrap();
        let (_, again) = scan_dir(dir.path(), params(), &mut cache, &store).unwrap();
        assert_eq!((again.files_read, again.files_cached), (1, 0));

        let path = RelPath::new("hot").unwrap();
        let md = |p: &Path| fs::symlink_metadata(p).unwrap();
        assert!(cache.unchanged(&path, Some(&md(&hot))));
        fs::write(&hot, b"v2 is longer").unwrap();
        assert!(!cache.unchanged(&path, Some(&md(&hot))));
        fs::remove_file(&hot).unwrap();
        assert!(!cache.unchanged(&path, None), "deleted since the scan");

        let fresh = RelPath::new("fresh").unwrap();
        assert!(cache.unchanged(&fresh, None));
        fs::write(dir.path().join("fresh"), b"x").unwrap();
        assert!(
            !cache.unchanged(&fresh, Some(&md(&dir.path().join("fresh")))),
            "created since the scan"
        );
    }

    #[test]
    fn non_utf8_names_and_fifos_are_reported_not_synced() {
        use std::ffi::OsStr;
        use std::os::unix::ffi::OsStrExt;
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(OsStr::from_bytes(b"bad\xffname")), b"x").unwrap();
        let fifo = dir.path().join("pipe");
        let status = std::process::Command::new("mkfifo").arg(&fifo).status();
        let (tree, report) = scan_dir(
            dir.path(),
            params(),
            &mut ScanCache::new(),
            &MemStore::new(),
        )
        .unwrap();
        assert!(tree.is_empty());
        let expected = if status.is_ok_and(|s| s.success()) {
            2
        } else {
            1
        };
        assert_eq!(report.skipped.len(), expected, "{:?}", report.skipped);
    }
}
