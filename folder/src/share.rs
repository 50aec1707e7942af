//! What a node keeps in sync: a folder, or one file (a document share).
//!
//! Both are trees to the engine. A document share's tree holds its file under the fixed path
//! [`DOCUMENT_PATH`], so each machine may call the file what it likes; scanning and
//! materializing translate between that path and the file's own name.

use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use chorus_chunking::{ChunkStore, ChunkerParams, Entry, Mode, RelPath, TreeManifest};

use crate::cache::Stamp;
use crate::confined as c;
use crate::materialize::MaterializeError;
use crate::read::ReadError;
use crate::scan::{ScanCache, ScanReport, read_one, scan_dir};
use crate::write::{Ctx, Stop, write_tree};

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

    /// Scans the share into a tree; chunks go into `store`. What cannot be read is left
    /// out: this is the driver's old entry point, [`DiskFolder`](crate::DiskFolder) (which
    /// keeps what it last knew there) replaces it.
    pub fn scan(
        &self,
        params: ChunkerParams,
        cache: &mut ScanCache,
        store: &dyn ChunkStore,
    ) -> Result<(TreeManifest, ScanReport), chorus_chunking::Error> {
        match self {
            Share::Folder(dir) => scan_dir(dir, params, cache, store),
            Share::Document(file) => {
                let name = Self::file_name(file)?;
                let dir =
                    c::open_root(self.watch_root()).map_err(chorus_chunking::Error::io(file))?;
                let doc = document_path();
                let mut report = ScanReport::default();
                let st = match c::stat_at(dir.as_fd(), name.as_str()) {
                    Ok(None) => return Ok((TreeManifest::empty(), report)),
                    Ok(Some(st)) if c::kind(&st) == rustix::fs::FileType::RegularFile => st,
                    Ok(Some(_)) => {
                        return Err(chorus_chunking::Error::Invalid(format!(
                            "{} is not a regular file; a document share is one file",
                            file.display()
                        )));
                    }
                    Err(e) => return Err(chorus_chunking::Error::io(file)(e)),
                };
                cache.use_params(params);
                let stamp = Stamp::of(&st);
                let manifest = match cache.reuse(&doc, &stamp) {
                    Some(m) => m.clone(),
                    None => match read_one(
                        dir.as_fd(),
                        name.as_str(),
                        stamp,
                        params,
                        store,
                        crate::read::hint(cache, &doc, &stamp).as_ref(),
                    ) {
                        Ok((seen, m, at)) => {
                            report.files_read += 1;
                            match seen {
                                Some(s) => cache.read(doc.clone(), s, m.clone(), at),
                                None => cache.forget(&doc),
                            }
                            m
                        }
                        Err(ReadError::Store(e)) => return Err(e),
                        Err(ReadError::File(e)) => return Err(chorus_chunking::Error::io(file)(e)),
                    },
                };
                let mode = Mode::from_st_mode(st.st_mode);
                let tree = TreeManifest::from_entries([(doc, Entry::File { mode, manifest })])?;
                Ok((tree, report))
            }
        }
    }

    /// Turns what is on disk from `old` into `new`, confined to the share, leaving alone (and
    /// stopping at) a file changed since the scan `seen` remembers; the files written, by tree
    /// path, with their stamps. The first path that could not be written is an error: this is
    /// the driver's old entry point, [`DiskFolder`](crate::DiskFolder) (which reports each
    /// failed path and writes the rest) replaces it.
    pub fn materialize(
        &self,
        old: &TreeManifest,
        new: &TreeManifest,
        chunks: &dyn ChunkStore,
        seen: &ScanCache,
    ) -> Result<Vec<(RelPath, Stamp)>, MaterializeError> {
        let root = c::open_root(self.watch_root()).map_err(|source| MaterializeError::Io {
            path: self.watch_root().to_path_buf(),
            source,
        })?;
        let session = c::random_tag(c::SESSION_LEN);
        let doc_path = document_path();
        let (old, new, doc) = match self {
            Share::Folder(_) => (old.clone(), new.clone(), false),
            Share::Document(file) => {
                let name = Self::file_name(file)?;
                (as_named(old, &name)?, as_named(new, &name)?, true)
            }
        };
        let ctx = Ctx {
            root: root.as_fd(),
            chunks,
            params: seen.params().unwrap_or_default(),
            session: &session,
            cache: seen,
            cache_key: doc.then_some(&doc_path),
        };
        let (written, stop) = write_tree(&ctx, &old, &new);
        let tree_path = |p: RelPath| if doc { document_path() } else { p };
        match stop {
            Some(Stop::Changed(p)) => return Err(MaterializeError::Changed(tree_path(p))),
            Some(Stop::Chunks(e)) => return Err(MaterializeError::Chunks(e)),
            None => {}
        }
        if let Some((p, reason)) = written.failed.into_iter().next() {
            return Err(MaterializeError::Failed(tree_path(p), reason));
        }
        // Known by their tree paths already (the write's cache key).
        Ok(written
            .files
            .stamps()
            .map(|(p, stamp)| (p.clone(), *stamp))
            .collect())
    }

    /// Temp files a crash left are removed by [`DiskFolder`](crate::DiskFolder), which
    /// knows their session tags; the old entry point has nothing to remove.
    pub fn remove_leftovers(&self) -> Result<usize, MaterializeError> {
        Ok(0)
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
