//! The share on this machine's disk as the replica's [`Folder`]: scans through the share's
//! cache (unchanged files are not read again), writes through chorus-folder's materializer
//! (never over a file changed since the scan), and remembers what it wrote so the next scan
//! does not read it back.

use std::sync::Arc;

use chorus_chunking::{ChunkStore, ChunkerParams, TreeManifest};
use chorus_folder::Share;
use chorus_folder::materialize::MaterializeError;
use chorus_folder::scan::ScanCache;
use chorus_sync::folder::{Folder, FolderError, PathFailure, WriteReport};

/// A share on disk.
pub struct ShareFolder {
    share: Share,
    chunks: Arc<dyn ChunkStore>,
    params: ChunkerParams,
    cache: ScanCache,
}

impl ShareFolder {
    pub fn new(share: Share, chunks: Arc<dyn ChunkStore>, params: ChunkerParams) -> Self {
        ShareFolder {
            share,
            chunks,
            params,
            cache: ScanCache::new(),
        }
    }
}

impl Folder for ShareFolder {
    fn scan(&mut self) -> Result<TreeManifest, FolderError> {
        let (tree, _) = self
            .share
            .scan(self.params, &mut self.cache, &*self.chunks)
            .map_err(|e| match e {
                chorus_chunking::Error::Io { .. } => FolderError::Unavailable(format!(
                    "cannot read the share: {e}; check that it is there and readable"
                )),
                e => FolderError::Chunks(e),
            })?;
        self.chunks.sync()?;
        Ok(tree)
    }

    fn write(
        &mut self,
        old: &TreeManifest,
        new: &TreeManifest,
    ) -> Result<WriteReport, FolderError> {
        match self.share.materialize(old, new, &*self.chunks, &self.cache) {
            Ok(written) => {
                for (path, md) in written {
                    if let Some(chorus_chunking::Entry::File { manifest, .. }) = new.get(&path) {
                        self.cache.remember(path, &md, manifest.clone());
                    }
                }
                Ok(WriteReport::default())
            }
            Err(MaterializeError::Changed(path)) => Err(FolderError::Changed(path)),
            Err(MaterializeError::Chunks(e)) => Err(FolderError::Chunks(e)),
            Err(MaterializeError::Unsafe(path)) => Ok(WriteReport {
                failed: vec![PathFailure {
                    reason: format!(
                        "{path}: an ancestor on disk is a symlink or a file; refusing to write through it"
                    ),
                    path,
                }],
            }),
            Err(e @ MaterializeError::Io { .. }) => Err(FolderError::Unavailable(format!(
                "cannot write the share: {e}"
            ))),
        }
    }
}
