//! Structural bounds on a decoded envelope: counts, lengths, hash sizes and enum values.
//! Semantic checks (path syntax, chunk hashes, version ids) belong to chorus-chunking, which
//! turns these messages into validated domain types.

use crate::limits::{DecodeError, Limits};
use crate::{
    Body, ChunkData, ChunkGroup, ChunkId, ChunkRef, ChunkRun, Compression, Delta, DeltaPaths,
    EntryKind, FileChange, Literal, RejectReason, TreeEntry, TreeManifest, VersionId, tree_entry,
};

/// Most versions a push may name as pushed before it (a follower keeps fewer).
pub const MAX_PUSHED_BEFORE: usize = 16;

pub(crate) fn body(body: &Body, l: &Limits) -> Result<(), DecodeError> {
    match body {
        Body::Push(p) => {
            required(p.number.as_ref(), "Push.number")?;
            if p.pushed_before.len() > MAX_PUSHED_BEFORE {
                return Err(DecodeError::Invalid {
                    field: "Push.pushed_before",
                    detail: format!(
                        "{} versions; at most {MAX_PUSHED_BEFORE}",
                        p.pushed_before.len()
                    ),
                });
            }
            p.pushed_before
                .iter()
                .try_for_each(|v| version_id(v, "Push.pushed_before"))?;
            if p.displaced.len() > crate::header::MAX_REDO_BYTES {
                return Err(DecodeError::Invalid {
                    field: "Push.displaced",
                    detail: format!(
                        "{} bytes; at most {}",
                        p.displaced.len(),
                        crate::header::MAX_REDO_BYTES
                    ),
                });
            }
            delta(required(p.delta.as_ref(), "Push.delta")?, l)
        }
        Body::Accepted(a) => {
            version_id(
                required(a.version.as_ref(), "Accepted.version")?,
                "Accepted.version",
            )?;
            required(a.number.as_ref(), "Accepted.number").map(drop)
        }
        Body::Merged(m) => {
            version_id(
                required(m.pushed.as_ref(), "Merged.pushed")?,
                "Merged.pushed",
            )?;
            required(m.number.as_ref(), "Merged.number")?;
            delta(required(m.delta.as_ref(), "Merged.delta")?, l)
        }
        Body::NeedBase(n) => {
            version_id(required(n.base.as_ref(), "NeedBase.base")?, "NeedBase.base")?;
            version_id(
                required(n.target.as_ref(), "NeedBase.target")?,
                "NeedBase.target",
            )
        }
        Body::NeedChunks(n) => {
            version_id(
                required(n.target.as_ref(), "NeedChunks.target")?,
                "NeedChunks.target",
            )?;
            count("NeedChunks.ids", n.ids.len(), l)?;
            n.ids
                .iter()
                .try_for_each(|id| chunk_id(id, "NeedChunks.ids"))?;
            chunk_runs(&n.runs, n.ids.len(), l)
        }
        Body::Chunks(c) => {
            count("Chunks.chunks", c.chunks.len(), l)?;
            c.chunks.iter().try_for_each(|c| chunk_data(c, l))?;
            count("Chunks.groups", c.groups.len(), l)?;
            c.groups.iter().try_for_each(|g| chunk_group(g, l))
        }
        Body::NotLeader(n) => {
            count("NotLeader.leader_addrs", n.leader_addrs.len(), l)?;
            if n.leader_peer_id.len() > 128 {
                return Err(DecodeError::Invalid {
                    field: "NotLeader.leader_peer_id",
                    detail: format!("{} bytes is longer than any PeerId", n.leader_peer_id.len()),
                });
            }
            n.leader_addrs
                .iter()
                .try_for_each(|a| path_len("NotLeader.leader_addrs", a, l))
        }
        Body::Rejected(r) => {
            known_enum::<RejectReason>(r.reason, "Rejected.reason")?;
            path_len("Rejected.detail", &r.detail, l)
        }
        Body::Offer(o) => delta(required(o.delta.as_ref(), "Offer.delta")?, l),
        Body::Stored(s) => version_id(
            required(s.version.as_ref(), "Stored.version")?,
            "Stored.version",
        ),
        Body::Want(w) => {
            version_id(required(w.want.as_ref(), "Want.want")?, "Want.want")?;
            version_id(required(w.have.as_ref(), "Want.have")?, "Want.have")
        }
    }
}

/// Bounds of a delta.
pub(crate) fn delta(d: &Delta, l: &Limits) -> Result<(), DecodeError> {
    version_id(required(d.base.as_ref(), "Delta.base")?, "Delta.base")?;
    version_id(required(d.target.as_ref(), "Delta.target")?, "Delta.target")?;
    if let Some(m) = &d.base_manifest {
        tree_manifest(m, l)?;
    }
    count("Delta.external", d.external.len(), l)?;
    d.external
        .iter()
        .try_for_each(|c| chunk_ref(c, "Delta.external", l))?;
    count("Delta.literals", d.literals.len(), l)?;
    d.literals.iter().try_for_each(|lit| literal(lit, l))?;
    let listed = !d.changes.is_empty() || !d.removed.is_empty();
    if !d.packed.is_empty() && listed {
        return Err(DecodeError::Invalid {
            field: "Delta.packed",
            detail: "paths both packed and listed".into(),
        });
    }
    paths(&d.changes, &d.removed, l)
}

/// Bounds of a delta's path lists, unpacked from `Delta.packed`.
pub fn delta_paths(p: &DeltaPaths, l: &Limits) -> Result<(), DecodeError> {
    paths(&p.changes, &p.removed, l)
}

fn paths(changes: &[FileChange], removed: &[String], l: &Limits) -> Result<(), DecodeError> {
    count("Delta.changes", changes.len(), l)?;
    changes.iter().try_for_each(|c| file_change(c, l))?;
    count("Delta.removed", removed.len(), l)?;
    removed
        .iter()
        .try_for_each(|p| path_len("Delta.removed", p, l))
}

/// Bounds of a tree manifest.
pub(crate) fn tree_manifest(m: &TreeManifest, l: &Limits) -> Result<(), DecodeError> {
    count("TreeManifest.entries", m.entries.len(), l)?;
    m.entries.iter().try_for_each(|e| tree_entry(e, l))
}

fn tree_entry(e: &TreeEntry, l: &Limits) -> Result<(), DecodeError> {
    path_len("TreeEntry.path", &e.path, l)?;
    known_enum::<EntryKind>(e.kind, "TreeEntry.kind")?;
    mode(e.mode, "TreeEntry.mode")?;
    match &e.content {
        Some(tree_entry::Content::Manifest(fm)) => {
            count("FileManifest.chunks", fm.chunks.len(), l)?;
            fm.chunks
                .iter()
                .try_for_each(|c| chunk_ref(c, "FileManifest.chunks", l))
        }
        Some(tree_entry::Content::LinkTarget(t)) => path_len("TreeEntry.link_target", t, l),
        None => Ok(()),
    }
}

/// Permission bits: the rwx bits of user, group and other, nothing more.
fn mode(bits: u32, field: &'static str) -> Result<(), DecodeError> {
    if bits & !0o777 != 0 {
        return Err(DecodeError::Invalid {
            field,
            detail: format!("mode {bits:#o} has bits beyond 0o777"),
        });
    }
    Ok(())
}

fn literal(lit: &Literal, l: &Limits) -> Result<(), DecodeError> {
    known_enum::<Compression>(lit.compression, "Literal.compression")?;
    count("Literal.chunk_lens", lit.chunk_lens.len(), l)?;
    count("Literal.dictionary", lit.dictionary.len(), l)?;
    if let Some(&len) = lit
        .chunk_lens
        .iter()
        .find(|&&n| n == 0 || n > l.max_chunk_len)
    {
        return Err(DecodeError::Invalid {
            field: "Literal.chunk_lens",
            detail: format!("chunk length {len} is outside 1..={}", l.max_chunk_len),
        });
    }
    Ok(())
}

fn file_change(c: &FileChange, l: &Limits) -> Result<(), DecodeError> {
    path_len("FileChange.path", &c.path, l)?;
    path_len("FileChange.link_target", &c.link_target, l)?;
    known_enum::<EntryKind>(c.kind, "FileChange.kind")?;
    mode(c.mode, "FileChange.mode")?;
    count("FileChange.runs", c.runs.len(), l)?;
    if !c.runs.len().is_multiple_of(2) {
        return Err(DecodeError::Invalid {
            field: "FileChange.runs",
            detail: "runs must be (start, count) pairs".into(),
        });
    }
    Ok(())
}

fn chunk_data(c: &ChunkData, l: &Limits) -> Result<(), DecodeError> {
    chunk_id(required(c.id.as_ref(), "ChunkData.id")?, "ChunkData.id")?;
    known_enum::<Compression>(c.compression, "ChunkData.compression")?;
    if c.compression == Compression::ZstdDict as i32 {
        return Err(DecodeError::Invalid {
            field: "ChunkData.compression",
            detail: "a fetched chunk carries no dictionary".into(),
        });
    }
    if c.data.len() > l.max_frame {
        return Err(DecodeError::TooLarge {
            len: c.data.len(),
            max: l.max_frame,
        });
    }
    Ok(())
}

/// The runs of a NeedChunks: each within `ids`, in order, none overlapping the one before.
fn chunk_runs(runs: &[ChunkRun], ids: usize, l: &Limits) -> Result<(), DecodeError> {
    count("NeedChunks.runs", runs.len(), l)?;
    let mut next = 0u64;
    let mut dictionary = 0usize;
    for r in runs {
        let end = u64::from(r.first) + u64::from(r.count);
        if r.count == 0 || u64::from(r.first) < next || end > ids as u64 {
            return Err(DecodeError::Invalid {
                field: "NeedChunks.runs",
                detail: format!(
                    "run of {} ids from {} is empty, overlaps the one before or ends past the {ids} ids",
                    r.count, r.first
                ),
            });
        }
        next = end;
        dictionary += r.dictionary.len();
        r.dictionary
            .iter()
            .try_for_each(|id| chunk_id(id, "ChunkRun.dictionary"))?;
    }
    count("ChunkRun.dictionary", dictionary, l)
}

fn chunk_group(g: &ChunkGroup, l: &Limits) -> Result<(), DecodeError> {
    count("ChunkGroup.ids", g.ids.len(), l)?;
    count("ChunkGroup.dictionary", g.dictionary.len(), l)?;
    if g.ids.is_empty() || g.ids.len() != g.lens.len() {
        return Err(DecodeError::Invalid {
            field: "ChunkGroup.lens",
            detail: format!("{} ids with {} lengths", g.ids.len(), g.lens.len()),
        });
    }
    if let Some(&len) = g.lens.iter().find(|&&n| n == 0 || n > l.max_chunk_len) {
        return Err(DecodeError::Invalid {
            field: "ChunkGroup.lens",
            detail: format!("chunk length {len} is outside 1..={}", l.max_chunk_len),
        });
    }
    g.ids
        .iter()
        .try_for_each(|id| chunk_id(id, "ChunkGroup.ids"))?;
    g.dictionary
        .iter()
        .try_for_each(|id| chunk_id(id, "ChunkGroup.dictionary"))
}

fn chunk_ref(c: &ChunkRef, field: &'static str, l: &Limits) -> Result<(), DecodeError> {
    chunk_id(required(c.id.as_ref(), field)?, field)?;
    if c.len == 0 || c.len > l.max_chunk_len {
        return Err(DecodeError::Invalid {
            field,
            detail: format!("chunk length {} is outside 1..={}", c.len, l.max_chunk_len),
        });
    }
    Ok(())
}

fn chunk_id(id: &ChunkId, field: &'static str) -> Result<(), DecodeError> {
    hash_len(&id.hash, field)
}

fn version_id(id: &VersionId, field: &'static str) -> Result<(), DecodeError> {
    hash_len(&id.hash, field)
}

fn hash_len(h: &[u8], field: &'static str) -> Result<(), DecodeError> {
    if h.len() != crate::HASH_LEN {
        return Err(DecodeError::BadHash {
            field,
            len: h.len(),
        });
    }
    Ok(())
}

fn required<'a, T>(v: Option<&'a T>, field: &'static str) -> Result<&'a T, DecodeError> {
    v.ok_or(DecodeError::Invalid {
        field,
        detail: "missing".into(),
    })
}

fn count(field: &'static str, len: usize, l: &Limits) -> Result<(), DecodeError> {
    if len > l.max_entries {
        return Err(DecodeError::TooManyEntries {
            field,
            len,
            max: l.max_entries,
        });
    }
    Ok(())
}

fn path_len(field: &'static str, p: &str, l: &Limits) -> Result<(), DecodeError> {
    if p.len() > l.max_path_len {
        return Err(DecodeError::PathTooLong {
            field,
            len: p.len(),
            max: l.max_path_len,
        });
    }
    Ok(())
}

fn known_enum<E: TryFrom<i32>>(v: i32, field: &'static str) -> Result<(), DecodeError> {
    E::try_from(v).map(drop).map_err(|_| DecodeError::Invalid {
        field,
        detail: format!("unknown enum value {v}"),
    })
}
