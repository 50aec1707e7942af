//! [`MemFolder`]: a working folder in memory, for the [`World`](super::World). Files are
//! trees entries whose chunks sit in the node's chunk store; a test edits them as a user would
//! (`write`, `remove`), can make a save land while a version is being written (`race`), can
//! make paths unwritable (`refuse`), and can ignore paths as `.chorusignore` would (`ignore`).
//! It keeps the folder contract: a write never replaces or removes a path that differs from
//! what the writer believed was there, and never touches an ignored path.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use chorus_chunking::{ChunkRef, ChunkStore, Entry, FileManifest, MemStore, RelPath, TreeManifest};

use crate::config::Cutter;
use crate::folder::{Folder, FolderError, PathFailure, WriteReport};

/// A folder in memory.
pub struct MemFolder {
    files: BTreeMap<RelPath, Entry>,
    chunks: Arc<MemStore>,
    cutter: Cutter,
    /// A save that lands during the next write, before it reaches that path.
    race: Option<(RelPath, Vec<u8>)>,
    /// Paths every write fails on, with the reason.
    refused: BTreeMap<RelPath, String>,
    /// Path prefixes the scan and the writes leave alone.
    ignored: BTreeSet<String>,
    /// Failed paths of the last write, retried by the next.
    failed: BTreeMap<RelPath, Entry>,
    /// What the last scan reported: a path that becomes ignored keeps its entry, so an ignore
    /// rule stops syncing a path without deleting it anywhere.
    last: BTreeMap<RelPath, Entry>,
}

impl MemFolder {
    pub fn new(chunks: Arc<MemStore>, cutter: Cutter) -> Self {
        MemFolder {
            files: BTreeMap::new(),
            chunks,
            cutter,
            race: None,
            refused: BTreeMap::new(),
            ignored: BTreeSet::new(),
            failed: BTreeMap::new(),
            last: BTreeMap::new(),
        }
    }

    /// The file entry of `bytes`, cut the way the engine cuts merged bytes, its chunks stored.
    pub fn file(&self, bytes: &[u8]) -> Entry {
        let mut chunks = Vec::new();
        let mut pos = 0usize;
        for len in (self.cutter)(bytes) {
            let piece = &bytes[pos..pos + len as usize];
            pos += len as usize;
            let id = chorus_chunking::ChunkId::of(piece);
            self.chunks
                .put(&id, piece)
                .expect("a memory store takes it");
            chunks.push(ChunkRef { id, len });
        }
        Entry::File {
            mode: chorus_chunking::Mode::FILE,
            manifest: FileManifest {
                chunks: chunks.into(),
            },
        }
    }

    /// The user writes `bytes` at `path` (its parent directories are implied).
    pub fn write_file(&mut self, path: &str, bytes: &[u8]) {
        let entry = self.file(bytes);
        self.files
            .insert(RelPath::new(path).expect("a valid path"), entry);
    }

    /// The user removes `path`.
    pub fn remove(&mut self, path: &str) {
        self.files.remove(path);
    }

    /// The bytes of the file at `path`, if there is one.
    pub fn read(&self, path: &str) -> Option<Vec<u8>> {
        match self.files.get(path)? {
            Entry::File { manifest, .. } => Some(
                chorus_merge::ContentLoader::load(&crate::leader::Loader(&*self.chunks), manifest)
                    .expect("chunks held"),
            ),
            _ => None,
        }
    }

    /// Every file's bytes, by path.
    pub fn contents(&self) -> BTreeMap<String, Vec<u8>> {
        self.files
            .keys()
            .filter_map(|p| Some((p.to_string(), self.read(p.as_str())?)))
            .collect()
    }

    /// The next write meets a save of `bytes` at `path` landing just before it gets there.
    pub fn race(&mut self, path: &str, bytes: &[u8]) {
        self.race = Some((RelPath::new(path).expect("a valid path"), bytes.to_vec()));
    }

    /// Every write to `path` fails with `reason` (until [`allow`](Self::allow)).
    pub fn refuse(&mut self, path: &str, reason: &str) {
        self.refused
            .insert(RelPath::new(path).expect("a valid path"), reason.into());
    }

    pub fn allow(&mut self, path: &str) {
        self.refused.remove(path);
    }

    /// Paths under `prefix` are ignored from now on, as a `.chorusignore` line would.
    pub fn ignore(&mut self, prefix: &str) {
        self.ignored.insert(prefix.to_owned());
    }

    fn is_ignored_str(&self, path: &str) -> bool {
        self.ignored
            .iter()
            .any(|p| path == p || path.starts_with(&format!("{p}/")))
    }

    /// What the disk holds, ignored paths included (what a user would see).
    pub fn disk(&self) -> TreeManifest {
        TreeManifest::from_entries(self.files.clone()).expect("a consistent folder")
    }
}

impl Folder for MemFolder {
    fn scan(&mut self) -> Result<TreeManifest, FolderError> {
        let mut entries: BTreeMap<RelPath, Entry> = self
            .files
            .iter()
            .filter(|(p, _)| !self.is_ignored_str(p.as_str()))
            .map(|(p, e)| (p.clone(), e.clone()))
            .collect();
        // A path that could not be written still holds the version's entry as far as anyone
        // else is concerned.
        for (p, e) in &self.failed {
            entries.insert(p.clone(), e.clone());
        }
        for (p, e) in &self.last {
            if self.is_ignored_str(p.as_str()) {
                entries.insert(p.clone(), e.clone());
            }
        }
        self.last = entries.clone();
        TreeManifest::from_entries(entries).map_err(FolderError::Chunks)
    }

    fn write(
        &mut self,
        old: &TreeManifest,
        new: &TreeManifest,
    ) -> Result<WriteReport, FolderError> {
        let retry = std::mem::take(&mut self.failed);
        let mut paths: BTreeSet<&RelPath> = old.iter().map(|(p, _)| p).collect();
        paths.extend(new.iter().map(|(p, _)| p));
        paths.extend(retry.keys());
        let mut report = WriteReport::default();
        for path in paths {
            if self.is_ignored_str(path.as_str()) {
                continue;
            }
            let want = new.get(path);
            if old.get(path) == want && !retry.contains_key(path) {
                continue;
            }
            if let Some((at, bytes)) = self.race.take() {
                let entry = self.file(&bytes);
                self.files.insert(at, entry);
            }
            // Never over a change made since the writer's view of the folder (a path whose
            // last write failed holds what it held before; it is written over).
            if !retry.contains_key(path) && self.files.get(path) != old.get(path) {
                return Err(FolderError::Changed(path.clone()));
            }
            if let Some(reason) = self.refused.get(path) {
                report.failed.push(PathFailure {
                    path: path.clone(),
                    reason: reason.clone(),
                });
                if let Some(e) = want {
                    self.failed.insert(path.clone(), e.clone());
                }
                continue;
            }
            match want {
                Some(e) => {
                    // As on a disk, writing a file takes its bytes: every chunk must be held.
                    if let Some(m) = e.manifest() {
                        let ids: Vec<_> = m.chunks.iter().map(|c| c.id).collect();
                        if let Some(&id) = self.chunks.missing(&ids)?.first() {
                            return Err(FolderError::Chunks(chorus_chunking::Error::Missing {
                                id,
                            }));
                        }
                    }
                    self.files.insert(path.clone(), e.clone());
                }
                None => {
                    self.files.remove(path);
                }
            }
        }
        self.last = new.entries().clone();
        Ok(report)
    }

    fn is_ignored(&self, path: &RelPath) -> bool {
        self.is_ignored_str(path.as_str())
    }

    fn holds_ignore_rules(&self, path: &RelPath) -> bool {
        path.file_name() == ".chorusignore"
    }
}
