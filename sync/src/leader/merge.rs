//! How the leader folds a pushed version into its tip: a three-way tree merge (chorus-merge)
//! whose merged bytes are cut into chunks and stored, and whose displaced changes become redo
//! entries small enough for a header.

use chorus_chunking::{
    ChunkId, ChunkRef, ChunkStore, Entry, FileManifest, TreeManifest, VersionId, VersionNumber,
};
use chorus_merge::redo::{Displaced, WholeContent};
use chorus_merge::tree::LoadError;
use chorus_merge::{ContentLoader, Order, RedoEntry, Side, merge_trees_ordered};

use crate::config::EngineConfig;
use crate::step::EngineError;
use crate::store::SyncStore;

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
    /// Trees stored to hold large displaced files (see [`store_large`]); they must reach the
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
    let (cfg, store, chunks) = (ctx.cfg, ctx.store, ctx.chunks);
    let order = Order::favouring(ours_number, theirs_number, Side::Theirs);
    let m = merge_trees_ordered(base, ours, theirs, order, &cfg.rules, &Loader(chunks))
        .map_err(EngineError::Merge)?;
    let loser = match m.order.loser() {
        Side::Ours => ours,
        Side::Theirs => theirs,
    };
    let mut extras = Vec::new();
    let mut redo = Vec::with_capacity(m.redo.len());
    for e in &m.redo {
        redo.push(store_large(store, compact(e, loser), &mut extras)?);
    }
    let tree = m
        .into_manifest(|_, bytes| cut_and_store(cfg, chunks, bytes))
        .map_err(EngineError::Merge)?;
    chunks.sync()?;
    Ok(Merged { tree, redo, extras })
}

/// Files of more chunks than this travel in a header by reference to a stored tree: a header
/// stays a few hundred bytes whatever the size of the files a conflict displaced.
const INLINE_CHUNKS: usize = 32;

/// Replaces each large file an entry carries by chunk list with a reference to a one-entry
/// tree holding it, stored here (and named in `extras`, to be offered to every member): both
/// sides of a conflict stay restorable, on every node, whatever their size.
fn store_large(
    store: &SyncStore,
    e: RedoEntry,
    extras: &mut Vec<VersionId>,
) -> Result<RedoEntry, EngineError> {
    let Some(path) = e.path.clone() else {
        return Ok(e);
    };
    let mut hold = |c: WholeContent| -> Result<WholeContent, EngineError> {
        match c {
            WholeContent::File { mode, manifest } if manifest.chunks.len() > INLINE_CHUNKS => {
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
            content: hold(content)?,
            kept: kept.map(&mut hold).transpose()?,
        },
        Displaced::Deletion { kept } => Displaced::Deletion { kept: hold(kept)? },
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

/// Displaced hunks above this size travel in the header as the loser's whole file (its chunk
/// ids), not as text: headers stay far below their bound, and the chunks are kept by history
/// retention as long as the redo entry exists.
const MAX_INLINE_HUNK: usize = 2 << 10;

/// A redo entry small enough for a header: a large displaced hunk becomes the whole file of
/// `loser` (the side whose hunks the merge displaced) by manifest.
fn compact(e: &RedoEntry, loser: &TreeManifest) -> RedoEntry {
    let Displaced::Hunk(h) = &e.what else {
        return e.clone();
    };
    if h.displaced.0.len() + h.before.0.len() + h.after.0.len() <= MAX_INLINE_HUNK {
        return e.clone();
    }
    match e.path.as_ref().and_then(|p| loser.get(p)) {
        Some(Entry::File { mode, manifest }) => RedoEntry {
            path: e.path.clone(),
            displaced_by: e.displaced_by,
            displaced_from: e.displaced_from,
            what: Displaced::Whole {
                content: WholeContent::File {
                    mode: *mode,
                    manifest: manifest.clone(),
                },
                kept: None,
            },
        },
        _ => e.clone(),
    }
}
