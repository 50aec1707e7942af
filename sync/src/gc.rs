//! History retention and garbage collection: which versions stay, and removing the manifests
//! of the others and every chunk that no kept version and no redo entry references.
//!
//! Kept: the versions of the last `keep_last` headers, of every header younger than
//! `keep_ms`, and every version the protocol still needs (the engine names them: adopted,
//! head, folder, work, the push base and lineage, last-shared versions, the leader's tip and
//! candidate). A version forgotten here is repaired by the protocol if a peer still names it:
//! NeedBase, then NeedChunks.

use std::collections::{BTreeSet, HashSet};

use chorus_chunking::{ChunkId, ChunkStore, VersionId};
use chorus_merge::redo::{Displaced, WholeContent};

use crate::step::EngineError;
use crate::store::SyncStore;

/// What history to keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Versions of at least the last this many accepted headers.
    pub keep_last: usize,
    /// And every accepted version younger than this.
    pub keep_ms: u64,
}

impl Default for Retention {
    /// Every version of the last 30 days and at least the last 100.
    fn default() -> Self {
        Retention {
            keep_last: 100,
            keep_ms: 30 * 24 * 3600 * 1000,
        }
    }
}

/// What a collection removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GcReport {
    pub versions_removed: usize,
    pub chunks_removed: usize,
    /// Disk space the chunk store reclaimed.
    pub bytes_freed: u64,
}

/// Removes what `retention` does not keep, besides the versions in `needed`.
pub(crate) fn collect(
    store: &SyncStore,
    chunks: &dyn ChunkStore,
    needed: Vec<VersionId>,
    fetching: &HashSet<ChunkId>,
    now_ms: u64,
    retention: &Retention,
) -> Result<GcReport, EngineError> {
    let mut keep: BTreeSet<VersionId> = needed.into_iter().collect();
    let headers = store.headers()?;
    let n = headers.len();
    for (i, h) in headers.iter().enumerate() {
        if i + retention.keep_last >= n
            || now_ms.saturating_sub(h.created_at_ms) < retention.keep_ms
        {
            keep.insert(h.version);
        }
    }
    // The trees holding displaced files stay as long as their redo entries.
    let redo = store.redo()?;
    for rec in &redo {
        keep.extend(rec.entry.stored_trees());
    }
    let all: BTreeSet<VersionId> = store.version_ids()?.into_iter().collect();
    let drop: BTreeSet<VersionId> = all.difference(&keep).copied().collect();
    store.remove_manifests(&drop)?;

    let mut live: HashSet<ChunkId> = fetching.clone();
    for id in all.intersection(&keep) {
        if let Some(tree) = store.manifest(id)? {
            live.extend(tree.chunks().map(|c| c.id));
        }
    }
    for rec in redo {
        let files: Vec<&WholeContent> = match &rec.entry.what {
            Displaced::Whole { content, kept } => {
                std::iter::once(content).chain(kept.as_ref()).collect()
            }
            Displaced::Deletion { kept } => vec![kept],
            Displaced::Hunk(_) | Displaced::Mode { .. } => Vec::new(),
        };
        for f in files {
            if let WholeContent::File { manifest, .. } = f {
                live.extend(manifest.chunks.iter().map(|c| c.id));
            }
        }
    }
    let mut chunks_removed = 0;
    for id in chunks.ids()? {
        if !live.contains(&id) {
            chunks.remove(&id)?;
            chunks_removed += 1;
        }
    }
    chunks.sync()?;
    let bytes_freed = if chunks_removed > 0 {
        chunks.compact()?
    } else {
        0
    };
    Ok(GcReport {
        versions_removed: drop.len(),
        chunks_removed,
        bytes_freed,
    })
}
