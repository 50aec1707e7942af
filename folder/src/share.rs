//! What a node keeps in sync: a folder, or one file (a document share).
//!
//! Both are trees to the engine. A document share's tree holds its file under the fixed path
//! [`DOCUMENT_PATH`], so each machine may call the file what it likes; scanning and
//! materializing translate between that path and the file's own name.

use std::path::{Path, PathBuf};

use crate::scan::{ScanCache, ScanReport, scan_dir, scan_file};
use chorus_chunking::{ChunkStore, ChunkerParams, RelPath, TreeManifest};

use crate::materialize::{self, MaterializeError};

/// Where a document share's one file sits in its tree, whatever the file is called on each
/// machine.
pub const DOCUMENT_PATH: &str = "document";

/// A share on this machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Share {
    /// Every file under this directory (but the state dir and what `.chorusignore` excludes).
    Folder(PathBuf),
    /// This one file.
    Document(PathBuf),
}

impl Share {
    /// The directory whose changes matter: the folder, or the document's directory.
    pub fn watch_root(&self) -> &Path {
        match self {
            Share::Folder(dir) => dir,
            Share::Document(file) => file.parent().unwrap_or(Path::new(".")),
        }
    }

    /// The path shown to the user.
    pub fn path(&self) -> &Path {
        match self {
            Share::Folder(p) | Share::Document(p) => p,
        }
    }

    /// The document's name in its directory, as a tree path.
    fn file_name(file: &Path) -> Result<RelPath, chorus_chunking::Error> {
        let name = file.file_name().and_then(|n| n.to_str()).ok_or_else(|| {
            chorus_chunking::Error::Invalid(format!("{} has no usable file name", file.display()))
        })?;
        RelPath::new(name).map_err(|e| chorus_chunking::Error::Invalid(e.to_string()))
    }

    /// Scans the share into a tree; chunks go into `store`.
    pub fn scan(
        &self,
        params: ChunkerParams,
        cache: &mut ScanCache,
        store: &dyn ChunkStore,
    ) -> Result<(TreeManifest, ScanReport), chorus_chunking::Error> {
        match self {
            Share::Folder(dir) => scan_dir(dir, params, cache, store),
            Share::Document(file) => scan_file(file, &document_path(), params, cache, store),
        }
    }

    /// Turns what is on disk from `old` into `new`, leaving alone (and stopping at) a file
    /// changed since the scan `seen` remembers; the files written, by tree path, with their
    /// metadata.
    pub fn materialize(
        &self,
        old: &TreeManifest,
        new: &TreeManifest,
        chunks: &dyn ChunkStore,
        seen: &ScanCache,
    ) -> Result<Vec<(RelPath, std::fs::Metadata)>, MaterializeError> {
        match self {
            Share::Folder(dir) => {
                materialize::materialize(dir, old, new, chunks, &|p, md| seen.unchanged(p, md))
            }
            Share::Document(file) => {
                let name = Self::file_name(file)?;
                let dir = self.watch_root();
                let doc = document_path();
                let written = materialize::materialize(
                    dir,
                    &as_named(old, &name)?,
                    &as_named(new, &name)?,
                    chunks,
                    &|_, md| seen.unchanged(&doc, md),
                )
                .map_err(|e| match e {
                    MaterializeError::Changed(_) => MaterializeError::Changed(doc.clone()),
                    e => e,
                })?;
                Ok(written
                    .into_iter()
                    .map(|(_, md)| (document_path(), md))
                    .collect())
            }
        }
    }

    /// Removes the temporary files a crash left half written.
    pub fn remove_leftovers(&self) -> Result<usize, MaterializeError> {
        match self {
            Share::Folder(dir) => materialize::remove_leftovers(dir),
            Share::Document(file) => {
                let name = Self::file_name(file)?;
                let tmp = self
                    .watch_root()
                    .join(materialize::temp_name(name.file_name()));
                match std::fs::remove_file(&tmp) {
                    Ok(()) => Ok(1),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
                    Err(source) => Err(MaterializeError::Io { path: tmp, source }),
                }
            }
        }
    }

    /// True when a change at `path` (from the watcher) may change the share.
    pub fn concerns(&self, path: &Path, state_dir: &Path) -> bool {
        if path.starts_with(state_dir) {
            return false;
        }
        match self {
            Share::Folder(dir) => path.starts_with(dir),
            Share::Document(file) => path == file,
        }
    }
}

fn document_path() -> RelPath {
    RelPath::new(DOCUMENT_PATH).expect("the document path is a valid path")
}

/// A document tree with its file under `name` instead of [`DOCUMENT_PATH`]; anything else a
/// peer put in the tree is not for this machine's disk.
fn as_named(tree: &TreeManifest, name: &RelPath) -> Result<TreeManifest, chorus_chunking::Error> {
    TreeManifest::from_entries(
        tree.get(&document_path())
            .map(|e| (name.clone(), e.clone())),
    )
}

#[cfg(test)]
mod tests {
    use chorus_chunking::MemStore;

    use super::*;

    #[test]
    fn a_document_is_one_file_under_the_fixed_path_whatever_its_name() {
        let dir = tempfile::tempdir().unwrap();
        let a = Share::Document(dir.path().join("notes.md"));
        let b = Share::Document(dir.path().join("copy.md"));
        let store = MemStore::new();
        let mut cache = ScanCache::new();
        let p = ChunkerParams::default();
        assert!(a.scan(p, &mut cache, &store).unwrap().0.is_empty());
        std::fs::write(dir.path().join("notes.md"), b"hello").unwrap();
        std::fs::write(dir.path().join("other.txt"), b"not shared").unwrap();
        let (tree, _) = a.scan(p, &mut cache, &store).unwrap();
        assert_eq!(tree.len(), 1);
        assert!(tree.get_str(DOCUMENT_PATH).is_some());
        // copy.md is new to b, whose last scan saw nothing.
        b.materialize(&TreeManifest::empty(), &tree, &store, &ScanCache::new())
            .unwrap();
        assert_eq!(std::fs::read(dir.path().join("copy.md")).unwrap(), b"hello");
        assert!(!dir.path().join(DOCUMENT_PATH).exists());
        let state = dir.path().join(".notes.md.chorus");
        assert!(a.concerns(&dir.path().join("notes.md"), &state));
        assert!(!a.concerns(&dir.path().join("other.txt"), &state));
    }
}
