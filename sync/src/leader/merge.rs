//! How the leader folds a pushed version into its tip: a three-way tree merge (chorus-merge)
//! whose merged bytes are cut into chunks and stored, and whose displaced changes become redo
//! entries small enough for a header.

use chorus_chunking::{
    ChunkId, ChunkRef, ChunkStore, Entry, FileManifest, TreeManifest, VersionId, VersionNumber,
};
use chorus_merge::redo::{Displaced, WholeContent};
use chorus_merge::tree::{LoadError, TreeMergeError};
use chorus_merge::{ContentLoader, Order, RedoEntry, Side, merge_trees_ordered};

use crate::config::EngineConfig;
use crate::step::EngineError;

/// The chunk store as a merge's content loader.
pub struct Loader<'a>(pub &'a dyn ChunkStore);

impl ContentLoader for Loader<'_> {
    fn load(&self, manifest: &FileManifest) -> Result<Vec<u8>, LoadError> {
        self.0.load(manifest)
    }
}

/// The result of merging a push into the tip.
pub(crate) struct Merged {
    pub tree: TreeManifest,
    pub redo: Vec<RedoEntry>,
    /// Trees stored to hold displaced files (see [`store_sides`]); they must reach the
    /// members before the header that names them commits.
    pub extras: Vec<VersionId>,
}

/// Merges `theirs` (the push, numbered `theirs_number`) and `ours` (the tip, `ours_number`)
/// from `base`; merged bytes are cut and stored in `chunks`, which is synced.
///
/// The higher number wins a conflict. Equal numbers mean the tip's number came from this
/// pusher (a number's MINOR is a node's rank: the tip's number is that of a push it took in,
/// or of the head, whose MINOR names the node whose push that header took in last): the push
/// is this node's newer change, made after that one, so it wins the tie. Whichever side wins,
/// one order decides every path and every file's content, so a redo entry always holds the
/// side the merge did not keep.
pub(crate) fn merge(
    ctx: &crate::ctx::Ctx<'_>,
    base: &TreeManifest,
    ours: &TreeManifest,
    ours_number: VersionNumber,
    theirs: &TreeManifest,
    theirs_number: VersionNumber,
) -> Result<Merged, EngineError> {
    let (cfg, chunks) = (ctx.cfg, ctx.chunks);
    let order = Order::favouring(ours_number, theirs_number, Side::Theirs);
    let mut m = merge_trees_ordered(base, ours, theirs, order, &cfg.rules, &Loader(chunks))
        .map_err(EngineError::Merge)?;
    let loser = match m.order.loser() {
        Side::Ours => ours,
        Side::Theirs => theirs,
    };
    let mut extras = Vec::new();
    let displaced = std::mem::take(&mut m.redo);
    let mut redo = Vec::with_capacity(displaced.len());
    for e in chorus_merge::redo::compact(displaced, loser, usize::MAX) {
        redo.push(store_sides(ctx, e, false, &mut extras)?);
    }
    let tree = m
        .into_manifest(|_, bytes| cut_and_store(cfg, chunks, bytes))
        .map_err(EngineError::Merge)?;
    chunks.sync()?;
    Ok(Merged { tree, redo, extras })
}

/// Merged bytes above this size travel as a stored tree, not inline in the header.
const MAX_INLINE_BYTES: usize = 1 << 10;

/// What the winner kept at a path travels by chunk list up to this many chunks (its chunks are
/// in the candidate, which reaches every member), beyond by reference to a stored tree: a
/// header stays a few hundred bytes whatever the size of the files a conflict involved.
const INLINE_KEPT_CHUNKS: usize = 32;

/// Replaces the displaced file an entry carries by chunk list with a reference to a one-entry
/// tree holding it, stored here (and named in `extras`, offered to every member and held by a
/// majority before the header is proposed), whatever its size: both sides of a conflict stay
/// restorable on every node. A chunk list alone names chunks that only the pusher and this
/// leader may hold (a side no version took in): a redo on any other node found them missing.
/// What the winner kept goes so only when large. With `verify` (an entry a member pushed),
/// a file this leader lacks chunks of stays a chunk list: a tree nobody can send would hold
/// every later header back. (A merge's entries name the tip's and the push's files, whose
/// chunks are here.) Merged bytes an entry carries (a merged file a directory displaced) are cut
/// and stored first, unless small enough to travel inline.
pub(crate) fn store_sides(
    ctx: &crate::ctx::Ctx<'_>,
    e: RedoEntry,
    verify: bool,
    extras: &mut Vec<VersionId>,
) -> Result<RedoEntry, EngineError> {
    let (cfg, store, chunks) = (ctx.cfg, ctx.store, ctx.chunks);
    let Some(path) = e.path.clone() else {
        return Ok(e);
    };
    let mut hold = |c: WholeContent, displaced: bool| -> Result<WholeContent, EngineError> {
        // Merged bytes are in no version: they go as a stored tree (offered to every member
        // before the header commits), unless small enough to travel as they are.
        if let WholeContent::Bytes(b) = &c
            && b.0.len() > MAX_INLINE_BYTES
        {
            let manifest = cut_and_store(cfg, chunks, &b.0).map_err(|e| {
                EngineError::Merge(TreeMergeError::Load {
                    path: path.clone(),
                    source: e,
                })
            })?;
            let tree = TreeManifest::from_entries([(
                path.clone(),
                Entry::File {
                    mode: chorus_chunking::Mode::FILE,
                    manifest,
                },
            )])?;
            let id = store.put_manifest(&tree)?;
            if !extras.contains(&id) {
                extras.push(id);
            }
            return Ok(WholeContent::Stored {
                tree: id,
                path: path.clone(),
            });
        }
        let by_reference = |m: &FileManifest| -> Result<bool, EngineError> {
            let wanted = if displaced {
                !m.chunks.is_empty()
            } else {
                m.chunks.len() > INLINE_KEPT_CHUNKS
            };
            if !wanted || !verify {
                return Ok(wanted);
            }
            let ids: Vec<_> = m.chunks.iter().map(|c| c.id).collect();
            if !chunks.missing(&ids)?.is_empty() {
                tracing::info!(%path, "a file a pushed redo entry names has chunks this leader lacks; it stays a chunk list");
                return Ok(false);
            }
            Ok(true)
        };
        match c {
            WholeContent::File { mode, manifest } if by_reference(&manifest)? => {
                let tree =
                    TreeManifest::from_entries([(path.clone(), Entry::File { mode, manifest })])?;
                let id = store.put_manifest(&tree)?;
                if !extras.contains(&id) {
                    extras.push(id);
                }
                Ok(WholeContent::Stored {
                    tree: id,
                    path: path.clone(),
                })
            }
            other => Ok(other),
        }
    };
    let what = match e.what {
        Displaced::Whole { content, kept } => Displaced::Whole {
            content: hold(content, true)?,
            kept: kept.map(|k| hold(k, false)).transpose()?,
        },
        Displaced::Deletion { kept } => Displaced::Deletion {
            kept: hold(kept, false)?,
        },
        other => other,
    };
    Ok(RedoEntry { what, ..e })
}

/// Cuts merged bytes into chunks and stores them.
fn cut_and_store(
    cfg: &EngineConfig,
    chunks: &dyn ChunkStore,
    bytes: &[u8],
) -> Result<FileManifest, LoadError> {
    let lens = (cfg.cutter)(bytes);
    let total: u64 = lens.iter().map(|&l| u64::from(l)).sum();
    if total != bytes.len() as u64 || lens.contains(&0) {
        return Err(LoadError(
            format!(
                "the chunker cut {} bytes into pieces adding up to {total}",
                bytes.len()
            )
            .into(),
        ));
    }
    let mut refs = Vec::with_capacity(lens.len());
    let mut pos = 0usize;
    for len in lens {
        let piece = &bytes[pos..pos + len as usize];
        pos += len as usize;
        let id = ChunkId::of(piece);
        chunks.put(&id, piece).map_err(|e| LoadError(Box::new(e)))?;
        refs.push(ChunkRef { id, len });
    }
    Ok(FileManifest {
        chunks: refs.into(),
    })
}
