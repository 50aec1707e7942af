//! The receiver's side: rebuild the target tree from the base and a delta, verifying every
//! literal chunk (its id is computed from its bytes) and the result (its VersionId must be the
//! one the sender named). Nothing is written unless the whole delta checks out; what is missing
//! is reported precisely, as NeedBase or NeedChunks, so one round trip repairs it.
//!
//! The sender may be hostile, so a few bytes of delta must not make the receiver allocate or
//! work without bound: [`ApplyLimits`] bounds the literal bytes, each literal's dictionary,
//! the chunk references, each file's size and the whole version's size, all checked from the
//! lengths in the chunk table before a byte is read or the store is asked anything, and
//! literals decompress into buffers that grow only as output is produced.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ops::Range;

use chorus_proto as proto;

use super::encode::zstd_decompress;
use super::limits::{decompress_bounded, ratio_cap, window_log};
use super::table::BaseTable;
use crate::Error;
use crate::ids::{ChunkId, VersionId};
use crate::manifest::{ChunkRef, Entry, FileManifest, Mode, TreeManifest};
use crate::path::RelPath;
use crate::store::ChunkStore;

/// The largest file a version may hold: what [`ApplyLimits`] lets a delta describe by default,
/// and what a scan takes in (a larger file stays out, reported, never sent to be refused).
pub const MAX_FILE_BYTES: u64 = 64 << 30;

/// Bounds on what one delta may make the receiver do. Every one is checked before the memory
/// it bounds is allocated; a delta beyond one is refused as [`ApplyError::Invalid`], naming
/// the limit. The defaults are far above what an honest sender produces; a receiver that
/// needs more sets them in its configuration.
#[derive(Debug, Clone, Copy)]
pub struct ApplyLimits {
    /// Total decompressed literal bytes (a zstd bomb stops here).
    pub max_literal_bytes: u64,
    /// Total chunk references in the changed files (runs expand to this many). Each costs the
    /// receiver ~40 bytes of manifest, so the default 4 Mi refs (~160 MiB) is what a run of a
    /// few bytes can make it allocate at most. The default is `max_file_bytes` at the default
    /// minimum chunk size (chunker.rs): 64 GiB / 16 KiB = 2^36 / 2^14 = 2^22, and a file's
    /// chunks are all at least the minimum but its last, so a 64 GiB file never needs more.
    /// (A share chunked with a smaller minimum, or a delta moving more than that at once,
    /// needs it raised.)
    pub max_chunk_refs: u64,
    /// Largest dictionary of one literal, in bytes: the sum of the lengths of the distinct
    /// base chunks it names. The default is the encoder's `EncodeOptions::max_dictionary`
    /// (4 MiB), which the encoder never exceeds.
    pub max_dictionary_bytes: u64,
    /// Largest file a delta may describe (64 GiB by default).
    pub max_file_bytes: u64,
    /// Largest resulting version: the bytes of all its files, changed or kept (1 PiB by
    /// default). Kept files cost the receiver nothing (they are on its disk already); what
    /// a delta makes it write is bounded by `max_file_bytes` and `max_chunk_refs`. A bound as
    /// low as 1 TiB stopped every version of an honest share larger than that (a media
    /// library), refused at every push.
    pub max_version_bytes: u64,
    /// Most bytes a delta's packed path lists may decompress to (64 MiB by default: a
    /// million changed paths of ~60 bytes).
    pub max_packed_bytes: u64,
}

impl Default for ApplyLimits {
    fn default() -> Self {
        ApplyLimits {
            max_literal_bytes: 256 << 20,
            max_chunk_refs: 1 << 22,
            max_dictionary_bytes: 4 << 20,
            max_file_bytes: MAX_FILE_BYTES,
            max_version_bytes: 1 << 50,
            max_packed_bytes: 64 << 20,
        }
    }
}

/// Why a delta could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// The delta contradicts itself or the base; the sender is broken or hostile.
    #[error("invalid delta: {0}")]
    Invalid(String),
    /// The carried base manifest does not hash to the base id.
    #[error("the base manifest sent hashes to {got}, not to the base {expected}")]
    BaseMismatch { expected: VersionId, got: VersionId },
    /// The rebuilt tree does not hash to the target id.
    #[error("the rebuilt tree hashes to {got}, not to the target {expected}")]
    TargetMismatch { expected: VersionId, got: VersionId },
    /// The local store failed.
    #[error(transparent)]
    Store(Error),
}

impl From<Error> for ApplyError {
    fn from(e: Error) -> Self {
        match e {
            Error::Path(p) => ApplyError::Invalid(p.to_string()),
            Error::Invalid(s) => ApplyError::Invalid(s),
            Error::Id(e) => ApplyError::Invalid(e.to_string()),
            e => ApplyError::Store(e),
        }
    }
}

impl From<chorus_proto::ids::IdError> for ApplyError {
    fn from(e: chorus_proto::ids::IdError) -> Self {
        ApplyError::Invalid(e.to_string())
    }
}

/// What applying a delta came to: the tree, or exactly what is missing for it. Missing
/// pieces are a normal outcome (one round trip repairs them), not an error.
#[derive(Debug)]
pub enum ApplyOutcome {
    Applied(Applied),
    /// The receiver does not hold the base and the delta does not carry it.
    NeedBase {
        base: VersionId,
        target: VersionId,
    },
    /// These chunks are referenced but neither stored here nor carried.
    NeedChunks {
        target: VersionId,
        ids: Vec<ChunkId>,
        /// Their total length, so a receiver can ask for them in windows of bounded bytes.
        bytes: u64,
    },
}

impl ApplyOutcome {
    /// The applied tree, if it was.
    pub fn applied(self) -> Option<Applied> {
        match self {
            ApplyOutcome::Applied(a) => Some(a),
            _ => None,
        }
    }
}

/// A delta applied: the verified target and what it brought.
#[derive(Debug)]
pub struct Applied {
    pub tree: TreeManifest,
    pub target: VersionId,
    /// Literal chunks stored by this apply.
    pub new_chunks: u64,
    /// The base, when the delta carried it (the receiver did not hold it).
    pub sent_base: Option<TreeManifest>,
}

/// Applies `delta`. `held_base` is the receiver's copy of the base version when it has one
/// (the empty tree is always held). On success the literal chunks are in `store`, synced.
/// One call does what [`prepare`] and [`Prepared::finish`] do; a receiver that fetches the
/// missing chunks keeps the [`Prepared`] instead, so the delta is checked once.
pub fn apply(
    delta: &proto::Delta,
    held_base: Option<&TreeManifest>,
    store: &dyn ChunkStore,
    limits: &ApplyLimits,
) -> Result<ApplyOutcome, ApplyError> {
    match prepare(delta.clone(), held_base, limits)? {
        Prepare::NeedBase { base, target } => Ok(ApplyOutcome::NeedBase { base, target }),
        Prepare::Ready(p) => Ok(match p.finish(store)? {
            Finish::Applied(a) => ApplyOutcome::Applied(a),
            Finish::NeedChunks {
                prepared,
                ids,
                bytes,
            } => ApplyOutcome::NeedChunks {
                target: prepared.target,
                ids,
                bytes,
            },
        }),
    }
}

/// What [`prepare`] came to.
#[derive(Debug)]
pub enum Prepare {
    Ready(Prepared),
    /// The receiver does not hold the base and the delta does not carry it.
    NeedBase {
        base: VersionId,
        target: VersionId,
    },
}

/// What [`Prepared::finish`] came to.
#[derive(Debug)]
pub enum Finish {
    Applied(Applied),
    /// These chunks are referenced but neither stored here nor carried: fetch them and
    /// finish again.
    NeedChunks {
        prepared: Prepared,
        ids: Vec<ChunkId>,
        /// Their total length, so a receiver can ask for them in windows of bounded bytes.
        bytes: u64,
    },
}

/// A delta checked against its base and every limit, its paths and chunk runs resolved:
/// all but the chunks it needs from the store. The wire form is gone (a version of 100k new
/// files was ~24 MB decoded, held while its chunks were fetched), and finishing does not check
/// or resolve it again.
#[derive(Debug)]
pub struct Prepared {
    pub(super) base: TreeManifest,
    base_was_sent: bool,
    target: VersionId,
    /// The chunk table below the literals: the base's distinct chunks, then the external ones.
    pub(super) known: Vec<ChunkRef>,
    /// Where the external chunks begin in `known` (their lengths are the sender's word).
    external_from: usize,
    literals: Vec<proto::Literal>,
    literal_lens: Vec<u32>,
    removed: Vec<RelPath>,
    /// The changed paths, sorted, with what each becomes.
    pub(super) resolved: Vec<(RelPath, Resolved)>,
}

impl Prepared {
    /// The version this delta builds.
    pub fn target(&self) -> VersionId {
        self.target
    }

    /// The version it is built on.
    pub fn base(&self) -> VersionId {
        self.base.version_id()
    }
}

/// Checks `delta` against its base (held, or carried) and `limits`, and resolves it, before a
/// byte of it is decompressed or the store is asked anything.
pub fn prepare(
    mut delta: proto::Delta,
    held_base: Option<&TreeManifest>,
    limits: &ApplyLimits,
) -> Result<Prepare, ApplyError> {
    let base_id = VersionId::from_proto(need(delta.base.as_ref(), "base")?)?;
    let target_id = VersionId::from_proto(need(delta.target.as_ref(), "target")?)?;

    let (base, base_was_sent) = match (held_base, delta.base_manifest.take()) {
        (Some(b), _) => (b.clone(), false),
        (None, Some(m)) => {
            let sent = TreeManifest::from_proto(&m)?;
            let got = sent.version_id();
            if got != base_id {
                return Err(ApplyError::BaseMismatch {
                    expected: base_id,
                    got,
                });
            }
            (sent, true)
        }
        (None, None) if base_id == TreeManifest::empty().version_id() => {
            (TreeManifest::empty(), false)
        }
        (None, None) => {
            return Ok(Prepare::NeedBase {
                base: base_id,
                target: target_id,
            });
        }
    };

    let mut known = BaseTable::of(&base).refs;
    let external_from = known.len();
    for c in std::mem::take(&mut delta.external) {
        known.push(ChunkRef::from_proto(&c)?);
    }
    let n_known = known.len() as u64;

    // Literal chunk lengths are known before decompression; ids only after.
    let mut literal_lens = Vec::new();
    let mut literal_total = 0u64;
    for lit in &delta.literals {
        for &len in &lit.chunk_lens {
            literal_total += u64::from(len);
            literal_lens.push(len);
        }
        if lit.compression == proto::Compression::ZstdDict as i32 {
            if lit.dictionary.is_empty() {
                return Err(invalid("a dictionary literal names no dictionary"));
            }
            // Bounded from the table's lengths before any chunk is read: every chunk is at
            // least a byte, so more entries than bytes cannot fit; each may appear once.
            let too_big = |what: String| {
                invalid(format!(
                    "a literal's dictionary of {what} exceeds max_dictionary_bytes ({} bytes; the \
                     receiver's configuration can raise it)",
                    limits.max_dictionary_bytes
                ))
            };
            if lit.dictionary.len() as u64 > limits.max_dictionary_bytes {
                return Err(too_big(format!("{} chunks", lit.dictionary.len())));
            }
            let mut seen = HashSet::with_capacity(lit.dictionary.len());
            let mut dict_bytes = 0u64;
            for &i in &lit.dictionary {
                if i >= n_known {
                    return Err(invalid(format!(
                        "dictionary index {i} is outside the known chunks"
                    )));
                }
                if !seen.insert(i) {
                    return Err(invalid(format!(
                        "dictionary index {i} appears more than once"
                    )));
                }
                dict_bytes += u64::from(known[i as usize].len);
                if dict_bytes > limits.max_dictionary_bytes {
                    return Err(too_big(format!("{dict_bytes}+ bytes")));
                }
            }
        } else if !lit.dictionary.is_empty() {
            return Err(invalid(
                "a literal without dictionary compression names a dictionary",
            ));
        }
    }
    if literal_total > limits.max_literal_bytes {
        return Err(invalid(format!(
            "literals of {literal_total} bytes exceed the limit of {}",
            limits.max_literal_bytes
        )));
    }
    let table_len = n_known + literal_lens.len() as u64;

    if !delta.packed.is_empty() {
        unpack_paths(&mut delta, limits)?;
    }
    // Resolve the structure: which paths go, which come, which table entries they use.
    let removed = sorted_paths(std::mem::take(&mut delta.removed), "removed")?;
    for p in &removed {
        if base.get(p).is_none() {
            return Err(invalid(format!(
                "removes {p}, which the base does not have"
            )));
        }
    }
    // The length of table entry `i` (< table_len), from the lengths alone.
    let len_at = |i: u64| -> u64 {
        match known.get(i as usize) {
            Some(c) => u64::from(c.len),
            None => u64::from(literal_lens[(i - n_known) as usize]),
        }
    };
    let version_too_big = |bytes: u64| {
        invalid(format!(
            "the version would hold {bytes}+ bytes, over max_version_bytes ({} bytes; the \
             receiver's configuration can raise it)",
            limits.max_version_bytes
        ))
    };
    // What the base keeps counts against the version's bound first; each changed file is
    // added as it is resolved. The changes are taken apart as they go, so the wire form and
    // the resolved one are not both held whole.
    let changes = std::mem::take(&mut delta.changes);
    let mut resolved: Vec<(RelPath, Resolved)> = Vec::with_capacity(changes.len());
    let mut version_bytes = {
        let mut changed_paths = Vec::with_capacity(changes.len());
        for c in &changes {
            changed_paths.push(c.path.as_str());
        }
        base.entries()
            .iter()
            .filter(|(p, _)| {
                removed.binary_search(p).is_err()
                    && changed_paths.binary_search(&p.as_str()).is_err()
            })
            .map(|(_, e)| e.size())
            .fold(0u64, u64::saturating_add)
    };
    if version_bytes > limits.max_version_bytes {
        return Err(version_too_big(version_bytes));
    }
    let mut refs = 0u64;
    for c in changes {
        let path = RelPath::new(c.path).map_err(|e| invalid(format!("changes: {e}")))?;
        if resolved.last().is_some_and(|(last, _)| *last >= path) {
            return Err(invalid(format!(
                "changes are not strictly sorted at {path}"
            )));
        }
        if removed.binary_search(&path).is_ok() {
            return Err(invalid(format!("{path} is both removed and changed")));
        }
        let kind = proto::EntryKind::try_from(c.kind).map_err(|_| invalid("unknown entry kind"))?;
        let mode = Mode::new(c.mode).map_err(|e| invalid(format!("{path}: {e}")))?;
        let r = match kind {
            proto::EntryKind::File if c.link_target.is_empty() => {
                // Kept as ranges (bounded by the bytes received); expanded once all is checked.
                let mut runs = Vec::with_capacity(c.runs.len() / 2);
                let mut file_bytes = 0u64;
                for pair in c.runs.chunks(2) {
                    let &[start, count] = pair else {
                        return Err(invalid("runs must be (start, count) pairs"));
                    };
                    let end = start
                        .checked_add(count)
                        .filter(|&e| count > 0 && e <= table_len);
                    let Some(end) = end else {
                        return Err(invalid(format!(
                            "{path}: run {start}+{count} is outside the chunk table of {table_len}"
                        )));
                    };
                    refs += count;
                    if refs > limits.max_chunk_refs {
                        return Err(invalid(format!(
                            "more than max_chunk_refs ({}) chunk references; the receiver's \
                             configuration can raise it",
                            limits.max_chunk_refs
                        )));
                    }
                    // At most max_chunk_refs lengths summed over the whole delta, u32 each.
                    let run_bytes: u64 = (start..end).map(len_at).sum();
                    file_bytes += run_bytes;
                    if file_bytes > limits.max_file_bytes {
                        return Err(invalid(format!(
                            "{path}: the file would be {file_bytes}+ bytes, over max_file_bytes \
                             ({} bytes; the receiver's configuration can raise it)",
                            limits.max_file_bytes
                        )));
                    }
                    version_bytes = version_bytes.saturating_add(run_bytes);
                    if version_bytes > limits.max_version_bytes {
                        return Err(version_too_big(version_bytes));
                    }
                    runs.push(start..end);
                }
                Resolved::File { mode, runs }
            }
            proto::EntryKind::Dir if c.runs.is_empty() && c.link_target.is_empty() => {
                Resolved::Dir(mode)
            }
            proto::EntryKind::Symlink if c.runs.is_empty() && c.mode == 0 => {
                Resolved::Symlink(Entry::symlink(c.link_target)?)
            }
            _ => {
                return Err(invalid(format!(
                    "{path}: entry kind does not match its content"
                )));
            }
        };
        resolved.push((path, r));
    }

    Ok(Prepare::Ready(Prepared {
        base,
        base_was_sent,
        target: target_id,
        known,
        external_from,
        literals: delta.literals,
        literal_lens,
        removed,
        resolved,
    }))
}

impl Prepared {
    /// Builds the target from the base, the literals and the chunks in `store`, and checks it
    /// is the version the sender named; the literal chunks are stored and synced only then.
    /// Everything needed that is neither carried nor stored is reported at once.
    pub fn finish(self, store: &dyn ChunkStore) -> Result<Finish, ApplyError> {
        let n_known = self.known.len() as u64;
        let mut needed: HashMap<ChunkId, u32> = HashMap::new();
        let mut need = |r: ChunkRef| {
            needed.insert(r.id, r.len);
        };
        for (_, r) in &self.resolved {
            if let Resolved::File { runs, .. } = r {
                for i in runs.iter().flat_map(Range::clone).filter(|&i| i < n_known) {
                    need(self.known[i as usize]);
                }
            }
        }
        for lit in &self.literals {
            for &i in &lit.dictionary {
                need(self.known[i as usize]);
            }
        }
        if self.base_was_sent {
            // The base came from the sender, so its chunks are not known to be here.
            for m in self.base.entries().values().filter_map(Entry::manifest) {
                m.chunks.iter().for_each(|&c| need(c));
            }
        }
        let ids: Vec<ChunkId> = needed.keys().copied().collect();
        let mut missing = store.missing(&ids)?;
        drop(ids);
        if !missing.is_empty() {
            missing.sort();
            let bytes = missing.iter().map(|id| u64::from(needed[id])).sum();
            return Ok(Finish::NeedChunks {
                prepared: self,
                ids: missing,
                bytes,
            });
        }
        self.check_stated_lens(&needed, store)?;
        drop(needed);

        // The literals' chunk references. Each literal is decompressed and hashed; the bytes
        // of one without a dictionary are let go and decompressed again to be stored once the
        // target checks out, so a delta that carries its literal budget in them (a join's new
        // files: 8 MiB) does not hold it while the tree is built, the largest moment of a
        // 100k-file join. One compressed against a dictionary keeps its bytes: assembling its
        // dictionary again (up to max_dictionary_bytes read from the store) could cost more
        // than the bytes themselves.
        let mut literal_refs: Vec<ChunkRef> = Vec::with_capacity(self.literal_lens.len());
        // The bytes of the literals with a dictionary, in their order.
        let mut kept: Vec<Vec<u8>> = Vec::new();
        for lit in &self.literals {
            let dictionary: Vec<ChunkRef> = lit
                .dictionary
                .iter()
                .map(|&i| self.known[i as usize])
                .collect();
            let raw = decompress(lit, &dictionary, store)?;
            literal_refs.extend(literal_chunks(lit, &raw).map(|(r, _)| r));
            if !dictionary.is_empty() {
                kept.push(raw);
            }
        }

        // Build and verify the target. The base was a valid tree: only what changed needs
        // checking.
        let Prepared {
            base,
            base_was_sent,
            target,
            known,
            resolved,
            removed,
            literals,
            ..
        } = self;
        let lookup = |i: u64| -> ChunkRef {
            match known.get(i as usize) {
                Some(c) => *c,
                None => literal_refs[(i - n_known) as usize],
            }
        };
        let mut entries: BTreeMap<RelPath, Entry> = base.entries().clone();
        for p in &removed {
            entries.remove(p);
        }
        let changed: Vec<RelPath> = resolved.iter().map(|(p, _)| p.clone()).collect();
        for (path, r) in resolved {
            let entry = match r {
                Resolved::File { mode, runs } => {
                    let n: u64 = runs.iter().map(|r| r.end - r.start).sum();
                    let mut chunks = Vec::with_capacity(n as usize);
                    chunks.extend(runs.into_iter().flatten().map(lookup));
                    Entry::File {
                        mode,
                        manifest: FileManifest {
                            chunks: chunks.into(),
                        },
                    }
                }
                Resolved::Dir(mode) => Entry::Dir { mode },
                Resolved::Symlink(e) => e,
            };
            entries.insert(path, entry);
        }
        drop(known);
        let tree = TreeManifest::from_changed(entries, changed.iter().map(RelPath::as_str))?;
        drop(changed);
        let got = tree.version_id();
        if got != target {
            return Err(ApplyError::TargetMismatch {
                expected: target,
                got,
            });
        }

        let mut expected = literal_refs.iter();
        let mut kept = kept.into_iter();
        for lit in &literals {
            let raw = if lit.dictionary.is_empty() {
                decompress(lit, &[], store)?
            } else {
                kept.next()
                    .ok_or_else(|| invalid("a literal's bytes were not kept"))?
            };
            for (r, bytes) in literal_chunks(lit, &raw) {
                if expected.next() != Some(&r) {
                    return Err(invalid(format!(
                        "a literal decompressed to other bytes the second time (chunk {})",
                        r.id
                    )));
                }
                store.put(&r.id, bytes)?;
            }
        }
        store.sync()?;
        Ok(Finish::Applied(Applied {
            tree,
            target,
            new_chunks: literal_refs.len() as u64,
            sent_base: base_was_sent.then_some(base),
        }))
    }
}

impl Prepared {
    /// Lengths the sender stated (its external references, a base it sent) must be the
    /// chunks' own: a reference of 1 byte to a 16 MiB chunk, named half a million times,
    /// declares a 512 KiB file that loads or writes 8 TiB. Checked for the chunks the delta
    /// uses (`needed`); the lists it takes (as long as the external references, ~7 MB for a
    /// version of 100k new files) are gone before the tree is built.
    fn check_stated_lens(
        &self,
        needed: &HashMap<ChunkId, u32>,
        store: &dyn ChunkStore,
    ) -> Result<(), ApplyError> {
        let stated = self.known[self.external_from..].iter().chain(
            self.base_was_sent
                .then(|| self.base.entries().values().filter_map(Entry::manifest))
                .into_iter()
                .flatten()
                .flat_map(|m| m.chunks.iter()),
        );
        let mut checked: HashSet<ChunkRef> = HashSet::new();
        let stated: Vec<ChunkRef> = stated
            .filter(|r| needed.contains_key(&r.id) && checked.insert(**r))
            .copied()
            .collect();
        drop(checked);
        let ids: Vec<ChunkId> = stated.iter().map(|r| r.id).collect();
        for (r, len) in stated.iter().zip(store.lens_of(&ids)?) {
            match len {
                Some(len) if len == r.len => {}
                Some(len) => {
                    return Err(invalid(format!(
                        "a reference says chunk {} is {} bytes; it is {len}",
                        r.id, r.len
                    )));
                }
                None => return Err(invalid(format!("chunk {} vanished", r.id))),
            }
        }
        Ok(())
    }
}

/// Takes `Delta.packed` apart into the delta's change and removal lists, bounded: it may
/// decompress to no more than `max_packed_bytes` (nor than its bytes can hold, before anything
/// is allocated), and the lists are held to the bounds of lists sent plainly.
fn unpack_paths(delta: &mut proto::Delta, limits: &ApplyLimits) -> Result<(), ApplyError> {
    use prost::Message;
    if !delta.changes.is_empty() || !delta.removed.is_empty() {
        return Err(invalid("paths both packed and listed"));
    }
    let packed = std::mem::take(&mut delta.packed);
    let cap = usize::try_from(limits.max_packed_bytes)
        .unwrap_or(usize::MAX)
        .min(ratio_cap(packed.len()));
    let raw = decompress_bounded(&packed, &[], cap, window_log(cap)).map_err(|e| {
        invalid(format!(
            "the packed paths do not decompress within {cap} bytes: {e}"
        ))
    })?;
    drop(packed);
    let paths = proto::DeltaPaths::decode(&raw[..])
        .map_err(|e| invalid(format!("the packed paths do not decode: {e}")))?;
    drop(raw);
    proto::validate_delta_paths(&paths, &proto::Limits::default())
        .map_err(|e| invalid(format!("the packed paths: {e}")))?;
    delta.changes = paths.changes;
    delta.removed = paths.removed;
    Ok(())
}

#[derive(Debug)]
pub(super) enum Resolved {
    /// Table ranges, already checked against the table and the limits.
    File {
        mode: Mode,
        runs: Vec<Range<u64>>,
    },
    Dir(Mode),
    Symlink(Entry),
}

/// A literal's bytes, decompressed (against `dictionary`, the chunks its entries name) and
/// checked to be as long as its chunks add up to.
fn decompress(
    lit: &proto::Literal,
    dictionary: &[ChunkRef],
    store: &dyn ChunkStore,
) -> Result<Vec<u8>, ApplyError> {
    let want: u64 = lit.chunk_lens.iter().map(|&l| u64::from(l)).sum();
    let raw = decompress_raw(lit, want as usize, dictionary, store)?;
    if raw.len() as u64 != want {
        return Err(invalid(format!(
            "a literal holds {} bytes, its chunks add up to {want}",
            raw.len()
        )));
    }
    Ok(raw)
}

/// A decompressed literal cut into its chunks, each with its reference (hashed here).
fn literal_chunks<'a>(
    lit: &'a proto::Literal,
    raw: &'a [u8],
) -> impl Iterator<Item = (ChunkRef, &'a [u8])> + 'a {
    lit.chunk_lens.iter().scan(0usize, move |pos, &len| {
        let bytes = &raw[*pos..*pos + len as usize];
        *pos += len as usize;
        Some((
            ChunkRef {
                id: ChunkId::of(bytes),
                len,
            },
            bytes,
        ))
    })
}

fn decompress_raw(
    lit: &proto::Literal,
    want: usize,
    dictionary: &[ChunkRef],
    store: &dyn ChunkStore,
) -> Result<Vec<u8>, ApplyError> {
    match proto::Compression::try_from(lit.compression) {
        Ok(proto::Compression::None) => Ok(lit.data.clone()),
        Ok(proto::Compression::Zstd) => zstd_decompress(&lit.data, &[], want)
            .map_err(|e| invalid(format!("a literal does not decompress: {e}"))),
        Ok(proto::Compression::ZstdDict) => {
            // The entries were checked (distinct, within max_dictionary_bytes by their table
            // lengths); a stored chunk of another length than the table says (a sent base
            // manifest can lie about lengths) is refused, so the bound holds for the bytes.
            let mut dict = Vec::with_capacity(dictionary.iter().map(|r| r.len as usize).sum());
            for r in dictionary {
                let bytes = store
                    .get(&r.id)?
                    .ok_or_else(|| invalid(format!("dictionary chunk {} vanished", r.id)))?;
                if bytes.len() != r.len as usize {
                    return Err(invalid(format!(
                        "dictionary chunk {} is {} bytes, not the {} its reference says",
                        r.id,
                        bytes.len(),
                        r.len
                    )));
                }
                dict.extend_from_slice(&bytes);
            }
            zstd_decompress(&lit.data, &dict, want).map_err(|e| {
                invalid(format!(
                    "a literal does not decompress with its dictionary: {e}"
                ))
            })
        }
        Err(_) => Err(invalid("unknown compression")),
    }
}

/// Validates paths and checks they are strictly sorted (so each appears once).
fn sorted_paths(
    paths: impl IntoIterator<Item = String>,
    what: &str,
) -> Result<Vec<RelPath>, ApplyError> {
    let mut out: Vec<RelPath> = Vec::new();
    for p in paths {
        let p = RelPath::new(p).map_err(|e| invalid(format!("{what}: {e}")))?;
        if out.last().is_some_and(|last| *last >= p) {
            return Err(invalid(format!("{what} are not strictly sorted at {p}")));
        }
        out.push(p);
    }
    Ok(out)
}

fn need<'a, T>(v: Option<&'a T>, what: &str) -> Result<&'a T, ApplyError> {
    v.ok_or_else(|| invalid(format!("delta has no {what}")))
}

fn invalid(s: impl Into<String>) -> ApplyError {
    ApplyError::Invalid(s.into())
}
