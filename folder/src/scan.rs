//! Scanning the share into a tree, confined to it.
//!
//! The walk goes directory handle by directory handle ([`confined`](crate::confined)): a
//! symlink is recorded as a link and never followed, a directory is entered with
//! `O_NOFOLLOW`. Paths are validated ([`RelPath`]). Skipped, and reported in
//! [`ScanReport::skipped`]: the state dir (by name at the root, and by identity wherever it
//! is placed inside the share), the share marker, what `.chorusignore` files exclude (gitignore
//! syntax), names that are not UTF-8, special files. A file, directory or link that cannot be
//! read (permissions, an I/O error) is reported in [`ScanReport::unknown`]: the caller keeps
//! what it last knew there, so an unreadable subtree is never taken for a deleted one. A
//! [`ScanCache`] means an unchanged file is not read again.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use ignore::gitignore::{Gitignore, GitignoreBuilder};
use rustix::fs::FileType;

use chorus_chunking::chunker::ChunkerParams;
use chorus_chunking::{
    ChunkStore, Entry, Error, FileManifest, Mode, RelPath, STATE_DIR, TreeManifest,
};

pub use crate::cache::ScanCache;
use crate::cache::Stamp;
use crate::confined as c;
use crate::marker::MARKER;
use crate::read::{ReadError, read_file};

pub use crate::ignore_file::IGNORE_FILE;

/// Largest ignore file read.
const IGNORE_FILE_MAX: u64 = 1 << 20;

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
    /// Paths left out on purpose, with the reason.
    pub skipped: Vec<Skipped>,
    /// Paths that could not be read: what is there (and below) is unknown.
    pub unknown: Vec<(RelPath, String)>,
    /// The `.chorusignore` rules found, by the directory that holds them ("" for the root).
    pub ignore_rules: IgnoreRules,
    /// A focused scan: the directories it listed on the way to the changed paths (found as
    /// directories), and the rest of the tree it did not look at.
    pub routes: Vec<RelPath>,
    /// Directories another disk is mounted on.
    pub mounts: Vec<RelPath>,
    /// Directories that had a disk mounted on them and have none now (also in `unknown`).
    pub unmounted: Vec<RelPath>,
}

/// The ignore rules of a share, by the directory whose `.chorusignore` holds them.
#[derive(Debug, Clone, Default)]
pub struct IgnoreRules(std::collections::BTreeMap<String, Arc<Gitignore>>);

impl IgnoreRules {
    /// True when no directory has rules: nothing is excluded.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// These rules, with those of the directories `looked_at` (a focused scan's listed or
    /// walked directories) replaced by what `fresh` found there.
    pub fn updated(&self, fresh: &IgnoreRules, looked_at: impl Fn(&str) -> bool) -> IgnoreRules {
        let mut all: std::collections::BTreeMap<String, Arc<Gitignore>> = self
            .0
            .iter()
            .filter(|(dir, _)| !looked_at(dir))
            .map(|(d, g)| (d.clone(), g.clone()))
            .collect();
        all.extend(fresh.0.iter().map(|(d, g)| (d.clone(), g.clone())));
        IgnoreRules(all)
    }

    /// True when these rules exclude `path` (as a file, or as a directory, or below an
    /// excluded directory), whether or not it exists on disk now.
    pub fn excludes(&self, path: &RelPath) -> bool {
        if self.0.is_empty() {
            return false;
        }
        // Each ancestor directory (and the path itself) against the rules above it, root first.
        let mut dirs: Vec<&str> = path.ancestors().collect();
        dirs.reverse();
        let mut rules: Vec<Arc<Gitignore>> = self.0.get("").into_iter().cloned().collect();
        for d in dirs {
            let Ok(dir) = RelPath::new(d) else {
                continue;
            };
            if is_ignored(&rules, &dir, true) {
                return true;
            }
            rules.extend(self.0.get(d).cloned());
        }
        is_ignored(&rules, path, false) || is_ignored(&rules, path, true)
    }
}

/// Why a scan failed as a whole.
#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    /// The share's own directory could not be read.
    #[error("the share cannot be read: {0}")]
    Share(#[source] std::io::Error),
    /// The chunk store failed.
    #[error(transparent)]
    Chunks(#[from] Error),
}

/// What a scan must leave out besides ignored paths.
#[derive(Debug, Clone, Copy, Default)]
pub struct Exclude {
    /// The state dir's (device, inode), wherever it sits inside the share.
    pub state_dir: Option<(u64, u64)>,
}

/// A directory still to walk: its path (None at the root), handle and ignore rules, and
/// whether all of it is walked (false: a focused scan's route, where only the names on the way
/// to a changed path are looked at).
struct Pending {
    rel: Option<RelPath>,
    /// Opened when it is listed (the root is open from the start): a directory of 10,000
    /// subdirectories would otherwise hold 10,000 handles while they wait, over a desktop's
    /// usual limit of 1,024 open files.
    fd: Option<OwnedFd>,
    ignores: Vec<Arc<Gitignore>>,
    whole: bool,
}

/// Files smaller than this are read several at a time.
const READ_TOGETHER_BELOW: u64 = 1 << 20;

/// A file a directory's listing found to read.
struct ToRead {
    path: RelPath,
    name: String,
    stamp: Stamp,
    mode: Mode,
    /// What it held when last read ([`crate::read::hint`]).
    hint: Option<FileManifest>,
}

impl ToRead {
    fn read(
        &self,
        dir: BorrowedFd<'_>,
        params: ChunkerParams,
        store: &dyn ChunkStore,
    ) -> Result<(Option<Stamp>, FileManifest, SystemTime), ReadError> {
        read_one(
            dir,
            &self.name,
            self.stamp,
            params,
            store,
            self.hint.as_ref(),
        )
    }
}

/// Scans the share below `root` into entries. Every chunk of every file read is put in
/// `store`; a cached file's chunks are there already. With a `focus`, only the changed paths
/// (and below) are walked and the directories on the way to them listed; the entries returned
/// are those alone, and [`ScanReport::routes`] names the route directories found.
///
/// `mounts` names the directories another disk was mounted on when last scanned: one found
/// without it (on its parent's device again) is not walked, and is reported unknown, so what
/// was known below it is kept rather than taken for deleted (an unplugged drive).
pub fn scan_root(
    root: BorrowedFd<'_>,
    params: ChunkerParams,
    exclude: Exclude,
    cache: &mut ScanCache,
    store: &dyn ChunkStore,
    focus: Option<&crate::focus::Focus>,
    mounts: &std::collections::BTreeSet<RelPath>,
) -> Result<(Vec<(RelPath, Entry)>, ScanReport), ScanError> {
    cache.use_params(params);
    let mut report = ScanReport::default();
    let mut entries = Vec::new();
    let fd = c::open_dir_beneath(root, "").map_err(ScanError::Share)?;
    let mut stack = vec![Pending {
        rel: None,
        fd: Some(fd),
        ignores: Vec::new(),
        whole: focus.is_none(),
    }];
    while let Some(mut dir) = stack.pop() {
        // Beneath the root, never through a symlink: one swapped in since its parent was
        // listed is refused, as `open_dir_at` refused it then.
        let opened = match dir.fd.take() {
            Some(fd) => Ok(fd),
            None => c::open_dir_beneath(root, dir.rel.as_ref().map_or("", |r| r.as_str())),
        };
        let fd = match opened {
            Ok(fd) => fd,
            // Removed since its parent was listed: nothing below it is there to scan.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && dir.rel.is_some() => continue,
            Err(e) => {
                match &dir.rel {
                    Some(rel) => report.unknown.push((rel.clone(), e.to_string())),
                    None => return Err(ScanError::Share(e)),
                }
                continue;
            }
        };
        let names = match c::list(fd.as_fd()) {
            Ok(n) => n,
            Err(e) => {
                match &dir.rel {
                    Some(rel) => report.unknown.push((rel.clone(), e.to_string())),
                    None => return Err(ScanError::Share(e)),
                }
                continue;
            }
        };
        let dir_dev = rustix::fs::fstat(&fd).ok().map(|st| st.st_dev);
        let mut ignores = dir.ignores.clone();
        if names.iter().any(|n| n == IGNORE_FILE.as_bytes())
            && let Some(g) = load_ignore(fd.as_fd(), dir.rel.as_ref(), &mut report)
        {
            let g = Arc::new(g);
            let key = dir.rel.as_ref().map_or(String::new(), |r| r.to_string());
            report.ignore_rules.0.insert(key, g.clone());
            ignores.push(g);
        }
        // Files whose content must be read, read together once the directory is listed.
        let mut to_read: Vec<ToRead> = Vec::new();
        for name in names {
            let at_root = dir.rel.is_none();
            if at_root && (name == STATE_DIR.as_bytes() || name == MARKER.as_bytes()) {
                continue;
            }
            let rel_str = match (&dir.rel, c::utf8(&name)) {
                (_, None) => {
                    report.skipped.push(Skipped {
                        path: display_path(dir.rel.as_ref(), &name),
                        reason: "name is not valid UTF-8".into(),
                    });
                    continue;
                }
                (None, Some(n)) => n.to_owned(),
                (Some(d), Some(n)) => format!("{d}/{n}"),
            };
            let name = c::utf8(&name).unwrap_or_default().to_owned();
            let path = match RelPath::new(rel_str.clone()) {
                Ok(p) => p,
                Err(e) => {
                    report.skipped.push(Skipped {
                        path: rel_str.into(),
                        reason: e.to_string(),
                    });
                    continue;
                }
            };
            // Another share's state (a share made inside this one) is that share's alone.
            if path.is_share_state() {
                continue;
            }
            // On a route, a name neither changed nor on the way to a change is not looked at.
            let (walked, route) = match focus {
                Some(f) if !dir.whole => (f.covers(&path), f.leads_to(&path)),
                _ => (true, false),
            };
            if !walked && !route {
                continue;
            }
            let st = match c::stat_at(fd.as_fd(), &name) {
                Ok(Some(st)) => st,
                Ok(None) => continue, // deleted while scanning: not in this version
                Err(e) => {
                    report.unknown.push((path, e.to_string()));
                    continue;
                }
            };
            let kind = c::kind(&st);
            if exclude.state_dir == Some((st.st_dev, st.st_ino)) {
                continue;
            }
            if is_ignored(&ignores, &path, kind == FileType::Directory) {
                continue;
            }
            let mode = Mode::from_st_mode(st.st_mode);
            match kind {
                FileType::Directory => {
                    let mounted = dir_dev.is_some_and(|d| d != st.st_dev);
                    if mounted {
                        report.mounts.push(path.clone());
                    } else if mounts.contains(&path) {
                        report.unmounted.push(path.clone());
                        report.unknown.push((
                            path,
                            "a disk was mounted here and is not now: what was known below it is kept as it was; mount it again (or, to stop syncing what was on it, move this folder away)".into(),
                        ));
                        continue;
                    }
                    entries.push((path.clone(), Entry::Dir { mode }));
                    if !walked {
                        report.routes.push(path.clone());
                    }
                    stack.push(Pending {
                        rel: Some(path),
                        fd: None,
                        ignores: ignores.clone(),
                        whole: walked,
                    });
                }
                FileType::Symlink => match c::read_link_at(fd.as_fd(), &name) {
                    Ok(t) => match String::from_utf8(t).map_err(|_| "not UTF-8".to_owned()) {
                        Ok(t) => match Entry::symlink(t) {
                            Ok(e) => entries.push((path, e)),
                            Err(e) => report.skipped.push(Skipped {
                                path: path.as_str().into(),
                                reason: e.to_string(),
                            }),
                        },
                        Err(why) => report.skipped.push(Skipped {
                            path: path.as_str().into(),
                            reason: format!("symlink target is {why}"),
                        }),
                    },
                    Err(e) => report.unknown.push((path, e.to_string())),
                },
                FileType::RegularFile => {
                    let stamp = Stamp::of(&st);
                    // Larger than any member takes in one file (a sparse disk image counts at
                    // its full size): kept out of the version as unknown (what was known of it
                    // stays), rather than sent for every member to refuse at every try.
                    if stamp.size > chorus_chunking::delta::MAX_FILE_BYTES {
                        report.unknown.push((
                            path,
                            format!(
                                "{} bytes, more than the {} a file may have to be synced: not synced (move it out of the share, or add it to .chorusignore)",
                                stamp.size,
                                chorus_chunking::delta::MAX_FILE_BYTES
                            ),
                        ));
                        continue;
                    }
                    if let Some(m) = cache.reuse(&path, &stamp) {
                        report.files_cached += 1;
                        entries.push((
                            path,
                            Entry::File {
                                mode,
                                manifest: m.clone(),
                            },
                        ));
                        continue;
                    }
                    let hint = crate::read::hint(cache, &path, &stamp);
                    to_read.push(ToRead {
                        path,
                        name,
                        stamp,
                        mode,
                        hint,
                    });
                }
                _ => report.skipped.push(Skipped {
                    path: path.as_str().into(),
                    reason: "not a regular file, directory or symlink".into(),
                }),
            }
        }
        // Small files are read, cut, hashed and stored on every core; a big one is read alone
        // (it may be held whole in memory, and its hashing has a thread of its own).
        let (small, big): (Vec<_>, Vec<_>) = to_read
            .into_iter()
            .partition(|f| f.stamp.size < READ_TOGETHER_BELOW);
        let read_small =
            crate::parallel::map(small.len(), |i| small[i].read(fd.as_fd(), params, store));
        let read = small
            .into_iter()
            .zip(read_small)
            .chain(big.into_iter().map(|f| {
                let read = f.read(fd.as_fd(), params, store);
                (f, read)
            }));
        for (ToRead { path, mode, .. }, read) in read {
            match read {
                Ok((seen, manifest, read_at)) => {
                    report.files_read += 1;
                    report.bytes_read += manifest.size();
                    match seen {
                        Some(s) => cache.read(path.clone(), s, manifest.clone(), read_at),
                        None => cache.forget(&path),
                    }
                    entries.push((path, Entry::File { mode, manifest }));
                }
                Err(ReadError::File(e)) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(ReadError::File(e)) => report.unknown.push((path, e.to_string())),
                Err(ReadError::Store(e)) => return Err(ScanError::Chunks(e)),
            }
        }
    }
    let live: std::collections::HashSet<&RelPath> = entries.iter().map(|(p, _)| p).collect();
    let unknown: Vec<&RelPath> = report.unknown.iter().map(|(p, _)| p).collect();
    cache.retain(|p| {
        focus.is_some_and(|f| !f.covers(p))
            || live.contains(p)
            || unknown.iter().any(|u| p.starts_with(u))
    });
    Ok((entries, report))
}

/// Opens and reads one file; the stamp its content matches and when the reading started.
/// `hint`: what it held when last read ([`ScanCache::hint`]).
pub(crate) fn read_one(
    dir: BorrowedFd<'_>,
    name: &str,
    stamp: Stamp,
    params: ChunkerParams,
    store: &dyn ChunkStore,
    hint: Option<&FileManifest>,
) -> Result<(Option<Stamp>, FileManifest, SystemTime), ReadError> {
    let read_at = SystemTime::now();
    let f = c::open_file_at(dir, name).map_err(ReadError::File)?;
    let (seen, m) = read_file(f, stamp, params, Some(store), hint)?;
    Ok((seen, m, read_at))
}

/// Entries scanned, with what `known` held at and below each unknown path: a subtree that
/// cannot be read keeps what the folder last knew of it.
pub fn with_unknown_kept(
    mut entries: Vec<(RelPath, Entry)>,
    unknown: &[(RelPath, String)],
    known: &TreeManifest,
) -> TreeManifest {
    let mut have: std::collections::HashSet<RelPath> = if unknown.is_empty() {
        Default::default()
    } else {
        entries.iter().map(|(p, _)| p.clone()).collect()
    };
    let known = known.entries();
    for (u, _) in unknown {
        // The path itself, then every path below it.
        let below = chorus_chunking::manifest::entries_below(known, u.as_str());
        for (p, e) in known.get_key_value(u).into_iter().chain(below) {
            if have.insert(p.clone()) {
                entries.push((p.clone(), e.clone()));
            }
        }
    }
    // What was known may no longer fit what is on disk (a file became a directory): the
    // disk's entries win, what was known below them is dropped.
    TreeManifest::from_entries_fitting(entries)
}

/// Reads a directory's `.chorusignore` (confined) into rules.
fn load_ignore(
    dir: BorrowedFd<'_>,
    rel: Option<&RelPath>,
    report: &mut ScanReport,
) -> Option<Gitignore> {
    use std::io::Read;
    let base = rule_root(rel);
    let mut text = String::new();
    let read = c::open_file_at(dir, IGNORE_FILE)
        .and_then(|f| f.take(IGNORE_FILE_MAX).read_to_string(&mut text).map(drop));
    if let Err(e) = read {
        report.skipped.push(Skipped {
            path: base.join(IGNORE_FILE),
            reason: format!("cannot read it, its rules are not applied: {e}"),
        });
        return None;
    }
    let mut b = GitignoreBuilder::new(&base);
    for line in text.lines() {
        let _ = b.add_line(None, line);
    }
    b.build().ok()
}

/// Ignore rules are matched against `/`-rooted paths of the share.
fn rule_root(rel: Option<&RelPath>) -> PathBuf {
    match rel {
        Some(r) => Path::new("/").join(r.as_str()),
        None => PathBuf::from("/"),
    }
}

/// The deepest rule that matches decides.
fn is_ignored(rules: &[Arc<Gitignore>], path: &RelPath, is_dir: bool) -> bool {
    let abs = Path::new("/").join(path.as_str());
    for g in rules.iter().rev() {
        let m = g.matched(&abs, is_dir);
        if m.is_ignore() {
            return true;
        }
        if m.is_whitelist() {
            return false;
        }
    }
    false
}

fn display_path(dir: Option<&RelPath>, name: &[u8]) -> PathBuf {
    let name = c::display(name).into_owned();
    match dir {
        Some(d) => Path::new(d.as_str()).join(name),
        None => PathBuf::from(name),
    }
}

/// Scans the directory `root` into a tree (the state dir `.chorus` at its root left out);
/// what cannot be read is reported in [`ScanReport::unknown`] and left out.
pub fn scan_dir(
    root: &Path,
    params: ChunkerParams,
    cache: &mut ScanCache,
    store: &dyn ChunkStore,
) -> Result<(TreeManifest, ScanReport), Error> {
    let fd = c::open_root(root).map_err(Error::io(root))?;
    let (entries, report) = scan_root(
        fd.as_fd(),
        params,
        Exclude::default(),
        cache,
        store,
        None,
        &Default::default(),
    )
    .map_err(|e| match e {
        ScanError::Share(source) => Error::Io {
            path: root.to_path_buf(),
            source,
        },
        ScanError::Chunks(e) => e,
    })?;
    Ok((TreeManifest::from_entries(entries)?, report))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chorus_chunking::MemStore;
    use rustix::fs::{Mode as FsMode, OFlags};

    /// A scan of a share of many small files keeps one copy of each path and chunk list: the
    /// scan's table and the tree share them (100k files held them twice, ~7 MB).
    #[test]
    fn the_scan_table_and_the_tree_share_each_files_path_and_chunk_list() {
        let dir = tempfile::tempdir().unwrap();
        for i in 0..20 {
            let sub = dir.path().join(format!("d{}", i % 3));
            std::fs::create_dir_all(&sub).unwrap();
            std::fs::write(sub.join(format!("f{i}.txt")), format!("file {i}\n")).unwrap();
        }
        let root = rustix::fs::open(
            dir.path(),
            OFlags::DIRECTORY | OFlags::RDONLY,
            FsMode::empty(),
        )
        .unwrap();
        let store = MemStore::new();
        let mut cache = ScanCache::new();
        let params = ChunkerParams::default();
        let exclude = Exclude { state_dir: None };
        let (entries, _) = scan_root(
            root.as_fd(),
            params,
            exclude,
            &mut cache,
            &store,
            None,
            &Default::default(),
        )
        .unwrap();
        let mut files = 0;
        for (path, entry) in &entries {
            let Entry::File { manifest, .. } = entry else {
                continue;
            };
            files += 1;
            let (key, held) = cache.held(path).expect("the scan's table has it");
            assert_eq!(
                key.as_str().as_ptr(),
                path.as_str().as_ptr(),
                "{path}: one path"
            );
            assert!(
                Arc::ptr_eq(&held.chunks, &manifest.chunks),
                "{path}: one chunk list"
            );
        }
        assert_eq!(files, 20);
    }
}
