//! [`DiskFolder`]: the share on this machine's disk as a [`Folder`], honest and confined.
//!
//! - Scans and writes are confined to the share ([`confined`](crate::confined)).
//! - A folder share without its marker ([`marker`](crate::marker)), or whose folder (or, for
//!   a document, whose directory) is missing, is [`FolderError::Unavailable`].
//! - What cannot be read keeps what the folder last knew there; a path that cannot be written
//!   is reported, remembered, retried by the next write, and reported by the next scan as
//!   the version has it while the disk still shows what it showed: a failure never travels.
//! - Temp files of a run that crashed are removed on the first scan or write, by the session
//!   tag their names carry (recorded in the state dir before any was made), so no file of a
//!   user or a peer, whatever its name, is ever taken for one.

use std::borrow::Cow;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chorus_chunking::manifest::fits;
use chorus_chunking::{ChunkStore, ChunkerParams, Entry, RelPath, TreeManifest, VersionId};
use chorus_sync::folder::{Folder, FolderError, PathFailure, WriteReport};

use crate::cache::ScanCache;
use crate::confined as c;
use crate::focus::Focus;
use crate::heard::Heard;
use crate::scan::{Exclude, ScanError, ScanReport, scan_root, with_unknown_kept};
use crate::share::{DOCUMENT_PATH, Share};
use crate::state::{Failed, Files, KnownSaver, State};
use crate::told::Told;
use crate::watcher::Change;
use crate::write::{Ctx, Stop, write_tree};

/// The share on disk.
pub struct DiskFolder {
    pub(crate) share: Share,
    pub(crate) chunks: Arc<dyn ChunkStore>,
    pub(crate) params: ChunkerParams,
    pub(crate) cache: ScanCache,
    pub(crate) files: Files,
    pub(crate) state: State,
    /// The last tree the folder was known to hold.
    pub(crate) known: Arc<TreeManifest>,
    /// Records `known` in the state dir.
    pub(crate) known_saver: KnownSaver,
    /// This run's temp-name tag.
    pub(crate) session: String,
    /// The state dir's (device, inode) and, when it lies inside the share, its path there.
    pub(crate) state_dir_id: Option<(u64, u64)>,
    pub(crate) state_dir_rel: Option<RelPath>,
    pub(crate) leftovers_removed: bool,
    pub(crate) last_report: ScanReport,
    /// What the log has said about the paths scans could not take.
    pub(crate) told: Told,
    /// What the file watcher heard and no scan has taken, when one watches the share: the
    /// check before a write then looks at those paths alone ([`Folder::scan_before_write`]).
    pub(crate) heard: Option<Arc<Heard>>,
    /// A whole scan worked in this run: until then the last known tree may predate changes
    /// made while no watcher was running.
    pub(crate) scanned_whole: bool,
}

impl std::fmt::Debug for DiskFolder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DiskFolder")
            .field("share", &self.share)
            .field("failed", &self.state.failed.len())
            .finish_non_exhaustive()
    }
}

pub(crate) fn unavailable(what: String) -> FolderError {
    FolderError::Unavailable(what)
}

impl DiskFolder {
    /// The share `share`, whose state is kept in `state_dir` (which must exist), chunks in
    /// `chunks`, cut with `params`. Fails only for the state dir, never for the folder's
    /// content (that is for [`scan`](Folder::scan) and [`write`](Folder::write) to say).
    pub fn new(
        share: Share,
        state_dir: &Path,
        chunks: Arc<dyn ChunkStore>,
        params: ChunkerParams,
    ) -> Result<DiskFolder, FolderError> {
        let state_err = |e: std::io::Error| {
            unavailable(format!(
                "the state dir {}: {e}; check its permissions and free space",
                state_dir.display()
            ))
        };
        let files = Files::open(state_dir).map_err(state_err)?;
        let mut state = files.load().map_err(state_err)?;
        let session = c::random_tag(c::SESSION_LEN);
        state.sessions.push(session.clone());
        // Recorded before any temp file of this run exists.
        files.save(&state).map_err(state_err)?;
        let md = std::fs::metadata(state_dir).map_err(state_err)?;
        let state_dir_rel = match (state_dir.canonicalize(), share.watch_root().canonicalize()) {
            (Ok(s), Ok(r)) => s
                .strip_prefix(&r)
                .ok()
                .and_then(|p| p.to_str())
                .and_then(|p| RelPath::new(p).ok()),
            _ => None,
        };
        Ok(DiskFolder {
            known: Arc::new(files.known()),
            known_saver: files.known_saver().map_err(|e| {
                unavailable(format!(
                    "cannot start the thread that records the folder's last known tree: {e}; \
                     the system is out of threads or memory"
                ))
            })?,
            share,
            chunks,
            params,
            cache: ScanCache::new(),
            files,
            state,
            session,
            state_dir_id: Some((md.dev(), md.ino())),
            state_dir_rel,
            leftovers_removed: false,
            last_report: ScanReport::default(),
            told: Told::default(),
            heard: None,
            scanned_whole: false,
        })
    }

    /// Tells the folder that a watcher watches the share and gathers what it hears in
    /// `heard`: the check before writing a version then scans just the paths heard since the
    /// last scan, instead of the whole share (0.5 s for 100k files). Only for a watcher that
    /// reports [`Change::Unknown`](crate::watcher::Change::Unknown) whenever it may have
    /// missed something.
    pub fn hear(&mut self, heard: Arc<Heard>) {
        self.heard = Some(heard);
    }

    /// The share.
    pub fn share(&self) -> &Share {
        &self.share
    }

    /// What the last scan skipped or could not read.
    pub fn last_report(&self) -> &ScanReport {
        &self.last_report
    }

    /// Paths not written (yet), with the reason.
    pub fn failed(&self) -> Vec<PathFailure> {
        self.state
            .failed
            .iter()
            .map(|(p, f)| PathFailure {
                path: p.clone(),
                reason: f.reason.clone(),
            })
            .collect()
    }

    pub(crate) fn save(&self) -> Result<(), FolderError> {
        self.files.save(&self.state).map_err(|e| {
            unavailable(format!(
                "cannot record the folder's state: {e}; check the state dir's free space"
            ))
        })
    }

    fn set_known(&mut self, tree: &TreeManifest) {
        if tree.version_id() != self.known.version_id() {
            self.known = Arc::new(tree.clone());
            self.known_saver.save(self.known.clone());
        }
    }

    /// The directory to work in (the folder, or the document's directory), checked.
    fn open(&mut self) -> Result<OwnedFd, FolderError> {
        let root = self.share.watch_root().to_path_buf();
        let fd = c::open_root(&root).map_err(|e| {
            unavailable(format!(
                "{} cannot be opened ({e}): if it is on a disk that is not mounted, mount it; \
                 nothing is scanned or written until it is back",
                root.display()
            ))
        })?;
        if let Share::Folder(_) = self.share {
            self.check_marker(&root, &fd)?;
        }
        if !self.leftovers_removed {
            self.remove_leftovers(&fd)?;
        }
        Ok(fd)
    }

    /// The document's name in its directory, as a tree path.
    fn document_name(&self) -> Result<RelPath, FolderError> {
        let file = self.share.path();
        file.file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| RelPath::new(n).ok())
            .ok_or_else(|| unavailable(format!("{} has no usable file name", file.display())))
    }

    /// Puts the versions' entries over paths not written, while the disk still shows there
    /// what it showed when the write failed.
    fn overlay(&mut self, scanned: TreeManifest) -> TreeManifest {
        if self.state.failed.is_empty() {
            return scanned;
        }
        let mut entries = scanned.clone().into_entries();
        let mut dropped = Vec::new();
        // Removals first, so what the version removes below a path does not stand in its way.
        let mut failed: Vec<(&RelPath, &Failed)> = self.state.failed.iter().collect();
        failed.sort_by_key(|(_, f)| f.want.is_some());
        for (path, f) in failed {
            if scanned.get(path) != f.disk.as_ref() {
                dropped.push(path.clone()); // changed on disk since: what is there counts
                continue;
            }
            match &f.want {
                Some(e) if fits(&entries, path, e) => {
                    entries.insert(path.clone(), e.clone());
                }
                // What is on disk below it (local files) cannot be hidden: the disk counts.
                Some(_) => dropped.push(path.clone()),
                None => {
                    entries.remove(path);
                }
            }
        }
        let changed = !dropped.is_empty();
        for p in dropped {
            self.state.failed.remove(&p);
        }
        if changed && let Err(e) = self.save() {
            tracing::warn!("{e}");
        }
        TreeManifest::from_entries(entries).unwrap_or(scanned)
    }

    fn scan_folder(
        &mut self,
        root: &OwnedFd,
        focus: Option<&Focus>,
    ) -> Result<TreeManifest, FolderError> {
        let exclude = Exclude {
            state_dir: self.state_dir_id,
        };
        let started = std::time::Instant::now();
        let (entries, report) = scan_root(
            root.as_fd(),
            self.params,
            exclude,
            &mut self.cache,
            &*self.chunks,
            focus,
            &self.state.mounts,
        )
        .map_err(|e| match e {
            ScanError::Share(e) => unavailable(format!(
                "{} cannot be read ({e}): check its permissions, or mount its disk",
                self.share.path().display()
            )),
            ScanError::Chunks(e) => FolderError::Chunks(e),
        })?;
        self.told.unreadable(&report.unknown, focus);
        tracing::debug!(
            focused = focus.is_some(),
            read = report.files_read,
            cached = report.files_cached,
            ms = started.elapsed().as_millis() as u64,
            "scanned"
        );
        let (entries, report) = match focus {
            Some(f) => self.with_unfocused(f, entries, report),
            None => (entries, report),
        };
        // What no scan will take is said once, when first found: saying nothing left a user
        // believing it synced.
        Told::skipped(&report.skipped, &self.last_report.skipped);
        // Mount points as found: a full scan knows them all; a focused one only adds.
        let mut mounts = match focus {
            None => std::collections::BTreeSet::new(),
            Some(_) => self.state.mounts.clone(),
        };
        mounts.extend(report.mounts.iter().chain(&report.unmounted).cloned());
        if mounts != self.state.mounts {
            self.state.mounts = mounts;
            self.save()?;
        }
        let tree = with_unknown_kept(entries, &report.unknown, &self.known);
        // A path an ignore rule now excludes keeps what was last known of it: the rule stops
        // syncing it, it does not delete it anywhere.
        // Without rules nothing is excluded; with them, the known paths the scan left out are
        // found by one walk of both sorted trees, not a lookup per known path.
        let carried: Vec<(RelPath, chorus_chunking::Entry)> = if report.ignore_rules.is_empty() {
            Vec::new()
        } else {
            self.known
                .differences(&tree)
                .into_iter()
                .filter(|d| d.new.is_none())
                .filter_map(|d| Some((d.path, d.old?)))
                .filter(|(p, _)| report.ignore_rules.excludes(p))
                // ... where it still fits: below what is now a file or a link it cannot be.
                .filter(|(p, _)| {
                    p.ancestors()
                        .all(|a| tree.get_str(a).is_none_or(chorus_chunking::Entry::is_dir))
                })
                .map(|(p, e)| (p.clone(), e.clone()))
                .collect()
        };
        let tree = if carried.is_empty() {
            tree
        } else {
            let mut all = tree.into_entries();
            all.extend(carried);
            TreeManifest::from_entries(all)?
        };
        self.last_report = report;
        Ok(tree)
    }

    /// A focused scan's entries completed with what the folder last knew where it did not
    /// look, as the disk showed it (a path whose write failed holds what the disk held then,
    /// not the version's entry).
    fn with_unfocused(
        &self,
        focus: &Focus,
        entries: Vec<(RelPath, Entry)>,
        report: ScanReport,
    ) -> (Vec<(RelPath, Entry)>, ScanReport) {
        // Borrowed, not copied: at 100k files every copy of the tree is tens of MB.
        let failed = &self.state.failed;
        let disk = self
            .known
            .iter()
            .filter(|(p, _)| !failed.contains_key(*p))
            .chain(
                failed
                    .iter()
                    .filter_map(|(p, f)| f.disk.as_ref().map(|e| (p, e))),
            );
        crate::focused_scan::complete(focus, entries, report, disk, &self.last_report)
    }

    fn scan_document(&mut self, dir: &OwnedFd) -> Result<TreeManifest, FolderError> {
        let name = self.document_name()?;
        let doc = RelPath::new(DOCUMENT_PATH).expect("a valid path");
        let mut report = ScanReport::default();
        let keep = |known: &TreeManifest| {
            TreeManifest::from_entries(known.get(&doc).map(|e| (doc.clone(), e.clone())))
                .unwrap_or_default()
        };
        let st = match c::stat_at(dir.as_fd(), name.as_str()) {
            Ok(None) => return Ok(TreeManifest::empty()), // its directory is here: deleted
            Ok(Some(st)) => st,
            Err(e) => {
                report.unknown.push((doc.clone(), e.to_string()));
                self.last_report = report;
                return Ok(keep(&self.known));
            }
        };
        if c::kind(&st) != rustix::fs::FileType::RegularFile {
            report.unknown.push((
                doc.clone(),
                "not a regular file; a document share is one file".into(),
            ));
            self.last_report = report;
            return Ok(keep(&self.known));
        }
        let stamp = crate::cache::Stamp::of(&st);
        let mode = chorus_chunking::Mode::from_st_mode(st.st_mode);
        self.cache.use_params(self.params);
        let manifest = match self.cache.reuse(&doc, &stamp) {
            Some(m) => m.clone(),
            None => match crate::scan::read_one(
                dir.as_fd(),
                name.as_str(),
                stamp,
                self.params,
                &*self.chunks,
                crate::read::hint(&self.cache, &doc, &stamp).as_ref(),
            ) {
                Ok((seen, m, at)) => {
                    match seen {
                        Some(s) => self.cache.read(doc.clone(), s, m.clone(), at),
                        None => self.cache.forget(&doc),
                    }
                    m
                }
                Err(crate::read::ReadError::Store(e)) => return Err(e.into()),
                Err(crate::read::ReadError::File(e)) => {
                    report.unknown.push((doc.clone(), e.to_string()));
                    self.last_report = report;
                    return Ok(keep(&self.known));
                }
            },
        };
        self.last_report = report;
        Ok(TreeManifest::from_entries([(
            doc,
            Entry::File { mode, manifest },
        )])?)
    }
}

/// A document tree with its file under `name` instead of [`DOCUMENT_PATH`]; anything else a
/// peer put in the tree is not for this machine's disk.
fn as_named(tree: &TreeManifest, name: &RelPath) -> TreeManifest {
    TreeManifest::from_entries(
        tree.get_str(DOCUMENT_PATH)
            .map(|e| (name.clone(), e.clone())),
    )
    .unwrap_or_default()
}

impl DiskFolder {
    /// `tree` without the paths the share's ignore rules (as the last scan read them) exclude.
    fn without_ignored<'t>(&self, tree: Cow<'t, TreeManifest>) -> Cow<'t, TreeManifest> {
        let rules = &self.last_report.ignore_rules;
        if !tree.iter().any(|(p, _)| rules.excludes(p)) {
            return tree;
        }
        let kept: Vec<_> = tree
            .iter()
            .filter(|(p, _)| !rules.excludes(p))
            .map(|(p, e)| (p.clone(), e.clone()))
            .collect();
        match TreeManifest::from_entries(kept) {
            Ok(t) => Cow::Owned(t),
            Err(_) => tree,
        }
    }
}

impl Folder for DiskFolder {
    fn is_ignored(&self, path: &RelPath) -> bool {
        matches!(self.share, Share::Folder(_)) && self.last_report.ignore_rules.excludes(path)
    }

    fn holds_ignore_rules(&self, path: &RelPath) -> bool {
        matches!(self.share, Share::Folder(_)) && path.file_name() == crate::scan::IGNORE_FILE
    }

    fn scan(&mut self) -> Result<TreeManifest, FolderError> {
        let root = self.open()?;
        let tree = match self.share {
            Share::Folder(_) => self.scan_folder(&root, None)?,
            Share::Document(_) => self.scan_document(&root)?,
        };
        self.chunks.sync()?;
        let tree = self.overlay(tree);
        self.set_known(&tree);
        self.scanned_whole = true;
        Ok(tree)
    }

    fn scan_paths(&mut self, changed: &[PathBuf]) -> Result<TreeManifest, FolderError> {
        let focus = match &self.share {
            Share::Folder(dir) => Focus::of(dir, changed).filter(|f| !f.is_empty()),
            Share::Document(_) => None,
        };
        let Some(focus) = focus else {
            return self.scan();
        };
        let root = self.open()?;
        let tree = self.scan_folder(&root, Some(&focus))?;
        self.chunks.sync()?;
        let tree = self.overlay(tree);
        self.set_known(&tree);
        Ok(tree)
    }

    fn scan_before_write(
        &mut self,
        expected: VersionId,
    ) -> Result<Option<TreeManifest>, FolderError> {
        let Some(heard) = self.heard.clone() else {
            return self.scan().map(Some);
        };
        let change = heard.take();
        let read = match &change {
            Change::Paths(paths) if paths.is_empty() => {
                if self.scanned_whole && self.known.version_id() == expected {
                    return Ok(None);
                }
                self.scan()
            }
            Change::Paths(paths) => self.scan_paths(paths),
            Change::Unknown => self.scan(),
        };
        if read.is_err() {
            // Not looked at: the next scan takes it again.
            heard.requeue(change);
        }
        read.map(Some)
    }

    fn write(
        &mut self,
        old: &TreeManifest,
        new: &TreeManifest,
    ) -> Result<WriteReport, FolderError> {
        let root = self.open()?;
        let mut refused: Vec<(RelPath, String)> = Vec::new();
        // The trees are copied only when something must be taken out or put back (at 100k
        // files each copy costs tens of ms and MB).
        let in_state_dir = |t: &TreeManifest| {
            self.state_dir_rel
                .as_ref()
                .is_some_and(|s| t.iter().any(|(p, _)| p.starts_with(s)))
        };
        // What the disk holds: the version, but what failed is as the disk showed it.
        let disk: Cow<'_, TreeManifest> = if self.state.failed.is_empty() && !in_state_dir(old) {
            Cow::Borrowed(old)
        } else {
            let mut disk = old.clone().into_entries();
            for (p, f) in &self.state.failed {
                match &f.disk {
                    Some(e) => disk.insert(p.clone(), e.clone()),
                    None => disk.remove(p),
                };
            }
            if let Some(s) = &self.state_dir_rel {
                disk.retain(|p, _| !p.starts_with(s));
            }
            // Should what failed not fit the version any more, the version is taken as the
            // disk.
            Cow::Owned(TreeManifest::from_entries(disk).unwrap_or_else(|_| old.clone()))
        };
        // This machine's state dir, inside the share under another name, is never written.
        let want_tree: Cow<'_, TreeManifest> = match &self.state_dir_rel {
            Some(s) if in_state_dir(new) => {
                let mut want = new.clone().into_entries();
                for p in want.keys().filter(|p| p.starts_with(s)) {
                    refused.push((p.clone(), format!(
                        "this machine keeps its chorus state in {s} (--state-dir): move the state dir out of the share"
                    )));
                }
                want.retain(|p, _| !p.starts_with(s));
                Cow::Owned(TreeManifest::from_entries(want)?)
            }
            _ => Cow::Borrowed(new),
        };
        let (old_w, new_w, doc) = match &self.share {
            // Ignored paths are never written, removed or created, whatever a version holds.
            Share::Folder(_) => (
                self.without_ignored(Cow::Borrowed(&*disk)),
                self.without_ignored(want_tree),
                None,
            ),
            Share::Document(_) => {
                let name = self.document_name()?;
                let doc = RelPath::new(DOCUMENT_PATH).expect("a valid path");
                if let Some(e) = new.get(&doc).filter(|e| e.manifest().is_none()) {
                    refused.push((doc.clone(), format!(
                        "the version's document is a {} and not a file: it is not written over yours; restore a good version (chorus restore)",
                        if e.is_dir() { "directory" } else { "link" }
                    )));
                    (
                        Cow::Owned(TreeManifest::empty()),
                        Cow::Owned(TreeManifest::empty()),
                        Some((name, doc)),
                    )
                } else {
                    (
                        Cow::Owned(as_named(&disk, &name)),
                        Cow::Owned(as_named(&want_tree, &name)),
                        Some((name, doc)),
                    )
                }
            }
        };
        let ctx = Ctx {
            root: root.as_fd(),
            chunks: &*self.chunks,
            params: self.params,
            session: &self.session,
            cache: &self.cache,
            cache_key: doc.as_ref().map(|(_, d)| d),
        };
        let (written, stop) = write_tree(&ctx, &old_w, &new_w);
        let to_tree = |p: RelPath| match &doc {
            Some((_, d)) => d.clone(),
            None => p,
        };
        self.cache.absorb(written.files);
        let mut failed: Vec<(RelPath, String)> = written
            .failed
            .into_iter()
            .map(|(p, r)| (to_tree(p), r))
            .collect();
        failed.extend(refused);
        if stop.is_none() {
            // Everything was tried: what did not fail now holds the version.
            self.state.failed.clear();
        }
        for (p, reason) in &failed {
            let disk_now = disk.get(p).cloned();
            let e = self.state.failed.entry(p.clone()).or_insert(Failed {
                want: None,
                disk: disk_now,
                reason: String::new(),
            });
            e.want = new.get(p).cloned();
            e.reason.clone_from(reason);
        }
        // Remembered in memory whatever happens; on disk when the state dir has room (a full
        // disk that holds the state dir too must not turn the report into an error).
        if let Err(e) = self.save() {
            tracing::warn!("{e}");
        }
        match stop {
            Some(Stop::Changed(p)) => Err(FolderError::Changed(to_tree(p))),
            Some(Stop::Chunks(e)) => Err(FolderError::Chunks(e)),
            None => {
                self.set_known(new);
                Ok(WriteReport {
                    failed: failed
                        .into_iter()
                        .map(|(path, reason)| PathFailure { path, reason })
                        .collect(),
                })
            }
        }
    }
}
