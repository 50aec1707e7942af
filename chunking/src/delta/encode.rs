//! The sender's side: a [`Delta`](chorus_proto::Delta) from a base tree to a target tree.

use chorus_proto as proto;

use super::locate::{BaseLocator, Run};
use super::table::{BaseTable, ChunkIndex, push_run};
use crate::Error;
use crate::manifest::{ChunkRef, Entry, TreeManifest};
use crate::path::RelPath;
use crate::store::ChunkStore;

/// How a delta is built.
#[derive(Debug, Clone)]
pub struct EncodeOptions {
    /// Carry the base manifest (the answer to NeedBase).
    pub include_base_manifest: bool,
    /// Raw bytes of new chunks carried as literals; new chunks beyond it are named in
    /// `external` and fetched with NeedChunks, so one message stays well under the frame limit.
    pub literal_budget: u64,
    /// zstd level; `None` picks by literal size (19 up to 32 KiB, then 3), so small edits get
    /// the strongest compression and large transfers stay fast.
    pub level: Option<i32>,
    /// Largest dictionary per literal, in bytes.
    pub max_dictionary: usize,
    /// Largest literal (raw bytes) before a new one is started.
    pub max_literal: usize,
}

impl Default for EncodeOptions {
    fn default() -> Self {
        EncodeOptions {
            include_base_manifest: false,
            literal_budget: 8 << 20,
            level: None,
            max_dictionary: 4 << 20,
            max_literal: 4 << 20,
        }
    }
}

/// What a delta holds, for reports.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EncodeStats {
    /// Paths added, changed or removed.
    pub files_changed: u64,
    /// New chunks carried.
    pub literal_chunks: u64,
    /// Raw bytes of those chunks.
    pub literal_raw_bytes: u64,
    /// Their bytes on the wire, after compression.
    pub literal_bytes: u64,
    /// New chunks named but not carried.
    pub external_chunks: u64,
}

/// A run of consecutive new chunks of one file, carried as literal bytes.
struct Group<'a> {
    path: &'a RelPath,
    /// Position of its first chunk in the target file.
    start: usize,
    /// Its chunks, where they lie in the target file's list.
    chunks: &'a [ChunkRef],
    /// Base-table indices of the base chunks it replaces.
    dictionary: Vec<u64>,
}

/// Builds the delta that turns `base` into `target`. `store` must hold the chunks of both.
pub fn encode(
    base: &TreeManifest,
    target: &TreeManifest,
    store: &dyn ChunkStore,
    opts: &EncodeOptions,
) -> Result<(proto::Delta, EncodeStats), Error> {
    let table = BaseTable::of(base);
    let mut stats = EncodeStats::default();

    let differences = base.differences(target);
    // Walked again, not collected: the differences are the list (~3 MB for 100k new files).
    let changed = || differences.iter().filter_map(|d| Some((d.path, d.new?)));
    let removed: Vec<String> = differences
        .iter()
        .filter(|d| d.new.is_none())
        .map(|d| d.path.as_str().to_owned())
        .collect();
    let n_changed = differences.len() - removed.len();
    stats.files_changed = differences.len() as u64;

    // Classify every new chunk (first occurrence) as literal, grouped by file, or external.
    // One map holds every new chunk's table index: an external one's at once, a literal's
    // once the batches have fixed the literals' order (100k new files make this map and the
    // externals list the encoder's largest parts, so neither is held twice).
    let mut new_chunks = ChunkIndex::default();
    let mut groups: Vec<Group> = Vec::new();
    let mut external: Vec<proto::ChunkRef> = Vec::new();
    let mut budget = opts.literal_budget;
    let n_base = table.len();
    for (path, entry) in changed() {
        let Some(m) = entry.manifest() else { continue };
        let mut open: Option<Group> = None;
        for (pos, c) in m.chunks.iter().enumerate() {
            let fresh = !table.index.contains_key(&c.id) && !new_chunks.contains_key(&c.id);
            if fresh && budget >= u64::from(c.len) {
                budget -= u64::from(c.len);
                new_chunks.insert(c.id, LITERAL_UNNUMBERED);
                let g = open.get_or_insert_with(|| Group {
                    path,
                    start: pos,
                    chunks: &[],
                    dictionary: Vec::new(),
                });
                g.chunks = &m.chunks[g.start..=pos];
                continue;
            }
            if fresh {
                new_chunks.insert(c.id, n_base + external.len() as u64);
                external.push(c.to_proto());
            }
            groups.extend(open.take());
        }
        groups.extend(open.take());
    }
    // Grown by doubling: up to half of it unused (1.4 MB with 100k new files).
    external.shrink_to_fit();

    // Dictionaries: the base chunks each group replaces.
    let runs: Vec<Run> = groups
        .iter()
        .map(|g| {
            let m = target
                .get(g.path)
                .and_then(Entry::manifest)
                .expect("groups are built from target files");
            Run::within(g.path, &m.chunks, g.start, g.chunks.len())
        })
        .collect();
    let locator = BaseLocator::new(base, &runs);
    for (g, run) in groups.iter_mut().zip(&runs) {
        g.dictionary = locator
            .replaced(run, opts.max_dictionary)
            .iter()
            .map(|c| table.index[&c.id])
            .collect();
    }
    drop(runs);

    // Batch groups into literals, then number the literal chunks in literal order.
    let batches = batch(groups, opts);
    let mut next = n_base + external.len() as u64;
    for b in &batches {
        for c in b.iter().flat_map(|g| g.chunks) {
            *new_chunks
                .get_mut(&c.id)
                .expect("every literal chunk was classified") = next;
            next += 1;
        }
    }

    let change = |(path, entry): (&RelPath, &Entry)| {
        let mut change = proto::FileChange {
            path: path.as_str().to_owned(),
            kind: entry.kind() as i32,
            ..Default::default()
        };
        match entry {
            Entry::File { mode, manifest } => {
                change.mode = mode.bits();
                for c in manifest.chunks.iter() {
                    let i = table.index.get(&c.id).or_else(|| new_chunks.get(&c.id));
                    push_run(&mut change.runs, *i.expect("every chunk was indexed"));
                }
            }
            Entry::Dir { mode } => change.mode = mode.bits(),
            Entry::Symlink { target } => change.link_target.clone_from(target),
        }
        change
    };
    // Many paths go packed: each change written as it is made (never a list of them all:
    // 100k new files made one of ~14 MB), the whole compressed.
    let (changes, removed, packed) = if n_changed + removed.len() >= PACK_FROM {
        let packed = pack_paths(changed().map(change), &removed)?;
        (Vec::new(), Vec::new(), packed)
    } else {
        (changed().map(change).collect(), removed, Vec::new())
    };
    // Neither is read again: freed before the literals are compressed, when the delta is at
    // its largest (with 100k new files, 8.5 MB of the sender's peak).
    drop(new_chunks);
    drop(differences);

    let mut literals = Vec::with_capacity(batches.len());
    for b in &batches {
        let lit = compress_batch(b, &table, store, opts)?;
        stats.literal_chunks += lit.chunk_lens.len() as u64;
        stats.literal_raw_bytes += lit.chunk_lens.iter().map(|&l| u64::from(l)).sum::<u64>();
        stats.literal_bytes += lit.data.len() as u64;
        literals.push(lit);
    }
    stats.external_chunks = external.len() as u64;

    let delta = proto::Delta {
        base: Some(base.version_id().to_proto()),
        target: Some(target.version_id().to_proto()),
        base_manifest: opts.include_base_manifest.then(|| base.to_proto()),
        external,
        literals,
        changes,
        removed,
        packed,
    };
    Ok((delta, stats))
}

/// Paths from which a delta's path lists go packed (`Delta.packed`): below it the frame
/// header and the message around them cost more than compression saves.
const PACK_FROM: usize = 64;

/// `changes` and `removed` as the zstd frame of one `DeltaPaths` message, each change encoded
/// as it comes.
fn pack_paths(
    changes: impl Iterator<Item = proto::FileChange>,
    removed: &[String],
) -> Result<Vec<u8>, Error> {
    use prost::Message;
    use prost::encoding::{WireType, encode_key, encode_varint};
    let mut raw = Vec::new();
    for c in changes {
        encode_key(1, WireType::LengthDelimited, &mut raw);
        c.encode_length_delimited(&mut raw)
            .expect("a Vec grows as needed");
    }
    for p in removed {
        encode_key(2, WireType::LengthDelimited, &mut raw);
        encode_varint(p.len() as u64, &mut raw);
        raw.extend_from_slice(p.as_bytes());
    }
    zstd_compress(&raw, &[], 3).map_err(Error::io("<zstd>"))
}

/// A literal chunk's place in [`encode`]'s map until the batches number it.
const LITERAL_UNNUMBERED: u64 = u64::MAX;

/// Groups into literals. A group with a dictionary is a literal of its own, so that its
/// dictionary is exactly the base chunks it replaces: a zstd match finder given one small,
/// aligned dictionary finds the long matches every time, whereas a concatenation of many
/// groups' dictionaries overflows its hash tables and window. Groups without a dictionary (new
/// files) are batched, bounded in size, so one zstd frame exploits redundancy across files and
/// saves a frame header per file.
fn batch<'a>(groups: Vec<Group<'a>>, opts: &EncodeOptions) -> Vec<Vec<Group<'a>>> {
    let raw_len = |g: &Group| -> usize { g.chunks.iter().map(|c| c.len as usize).sum() };
    let mut with_dict: Vec<Vec<Group>> = vec![];
    let mut without: Vec<Vec<Group>> = vec![];
    let mut without_len = 0usize;
    for g in groups {
        if !g.dictionary.is_empty() {
            with_dict.push(vec![g]);
            continue;
        }
        let len = raw_len(&g);
        match without.last_mut() {
            Some(b) if without_len + len <= opts.max_literal => {
                without_len += len;
                b.push(g);
            }
            _ => {
                without_len = len;
                without.push(vec![g]);
            }
        }
    }
    with_dict.extend(without);
    with_dict
}

fn compress_batch(
    batch: &[Group],
    table: &BaseTable,
    store: &dyn ChunkStore,
    opts: &EncodeOptions,
) -> Result<proto::Literal, Error> {
    let mut raw = Vec::with_capacity(
        batch
            .iter()
            .flat_map(|g| g.chunks)
            .map(|c| c.len as usize)
            .sum(),
    );
    let mut chunk_lens = Vec::new();
    for c in batch.iter().flat_map(|g| g.chunks) {
        raw.extend_from_slice(&store.require(&c.id)?);
        chunk_lens.push(c.len);
    }
    // The dictionary: each group's replaced chunks, deduplicated, bounded overall.
    let mut dictionary: Vec<u64> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let mut dict_bytes = Vec::new();
    for &i in batch.iter().flat_map(|g| &g.dictionary) {
        let c = table.refs[i as usize];
        if !seen.insert(i) || dict_bytes.len() + c.len as usize > opts.max_dictionary {
            continue;
        }
        dict_bytes.extend_from_slice(&store.require(&c.id)?);
        dictionary.push(i);
    }
    // Small literals (a typical edited source file) get zstd's strongest level, which costs
    // little at that size; larger ones level 3: with the replaced chunks as prefix and
    // long-distance matching, 19 saves ~2% of bytes at 10x the time (docs/benchmarks.md).
    let level = opts.level.unwrap_or(level_for(raw.len()));
    let compressed = zstd_compress(&raw, &dict_bytes, level).map_err(Error::io("<zstd>"))?;
    let (compression, data, dictionary) = if compressed.len() >= raw.len() {
        (proto::Compression::None, raw, vec![])
    } else if dictionary.is_empty() {
        (proto::Compression::Zstd, compressed, vec![])
    } else {
        (proto::Compression::ZstdDict, compressed, dictionary)
    };
    Ok(proto::Literal {
        compression: compression as i32,
        chunk_lens,
        dictionary,
        data,
    })
}

/// The zstd level for `len` raw bytes compressed against what they replace: the strongest up
/// to 32 KiB, 3 above.
fn level_for(len: usize) -> i32 {
    if len <= 32 << 10 { 19 } else { 3 }
}

/// One zstd frame whose history is primed with `prefix` (the base chunks a literal replaces;
/// the technique of `zstd --patch-from`). The window covers prefix and data, and long-distance
/// matching finds the long matches even when a large random prefix would swamp the regular
/// match finder's tables (measured: 8 MiB with 7 small edits, 1.6 KB with it, 7 MB without).
/// The optional header fields the receiver does not need are left out: the chunk lengths give
/// the size and the chunk ids the check.
pub(crate) fn zstd_compress(raw: &[u8], prefix: &[u8], level: i32) -> std::io::Result<Vec<u8>> {
    if prefix.is_empty() {
        return crate::squeeze::with_cctx(|c| compress_with(c, raw, &[], level));
    }
    crate::squeeze::with_cctx_prefixed(prefix, |c, prefix| compress_with(c, raw, prefix, level))
}

/// [`zstd_compress`] with a given context (fresh, or reset).
fn compress_with<'a>(
    c: &mut zstd::zstd_safe::CCtx<'a>,
    raw: &[u8],
    prefix: &'a [u8],
    level: i32,
) -> std::io::Result<Vec<u8>> {
    use zstd::zstd_safe::CParameter;
    let err = |code: usize| std::io::Error::other(zstd::zstd_safe::get_error_name(code));
    let window_log = super::limits::window_log(raw.len() + prefix.len());
    for p in [
        CParameter::CompressionLevel(level),
        CParameter::WindowLog(window_log),
        CParameter::EnableLongDistanceMatching(true),
        CParameter::ContentSizeFlag(false),
        CParameter::ChecksumFlag(false),
        CParameter::DictIdFlag(false),
    ] {
        c.set_parameter(p).map_err(err)?;
    }
    if !prefix.is_empty() {
        c.ref_prefix(prefix).map_err(err)?;
    }
    let mut out = Vec::with_capacity(zstd::zstd_safe::compress_bound(raw.len()));
    c.compress2(&mut out, raw).map_err(err)?;
    // The bound is the raw size; a literal of text is a third of it, and a delta of many
    // files holds its literals (up to the budget) until it is sent.
    out.shrink_to_fit();
    Ok(out)
}

/// Decompresses a literal of exactly `want` bytes primed with `prefix`. `want` is only the
/// peer's word, so nothing is allocated from it: a `want` beyond what `data` can possibly
/// decompress to ([`MAX_RATIO`](super::limits::MAX_RATIO) per byte) is refused at once, the
/// window may be no larger than the encoder would pick for `want` plus the prefix, and the
/// output grows only as it is produced, failing one byte past `want`.
pub(crate) fn zstd_decompress(data: &[u8], prefix: &[u8], want: usize) -> Result<Vec<u8>, String> {
    use super::limits::{MAX_RATIO, decompress_bounded, ratio_cap, window_log};
    if want > ratio_cap(data.len()) {
        return Err(format!(
            "{} bytes of zstd cannot hold the {want} bytes declared (at most {MAX_RATIO} per byte)",
            data.len()
        ));
    }
    let window = window_log(want.saturating_add(prefix.len()));
    decompress_bounded(data, prefix, want, window).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::{compress_with, zstd_compress, zstd_decompress};
    use zstd::zstd_safe::CCtx;

    /// The contexts kept per thread (literals without a prefix) give the bytes a fresh context
    /// gives, whatever they compressed before, at whatever level; and they read back.
    #[test]
    fn kept_contexts_give_what_fresh_ones_give() {
        let a: Vec<u8> = (0..100_000u32)
            .flat_map(|i| (i % 13).to_le_bytes())
            .collect();
        let b: Vec<u8> = (0..50_000u32)
            .flat_map(|i| (i.wrapping_mul(2_654_435_761) >> 7).to_le_bytes())
            .collect();
        let fresh = compress_with(&mut CCtx::create(), &a, &[], 3).unwrap();
        assert_eq!(zstd_compress(&a, &[], 3).unwrap(), fresh);
        let other = zstd_compress(&b, &[], 19).unwrap();
        assert_eq!(zstd_compress(&a, &[], 3).unwrap(), fresh);
        assert_eq!(zstd_decompress(&fresh, &[], a.len()).unwrap(), a);
        // A failed read leaves nothing behind for the next one.
        assert!(zstd_decompress(&other[..other.len() / 2], &[], b.len()).is_err());
        assert_eq!(zstd_decompress(&other, &[], b.len()).unwrap(), b);
        assert_eq!(zstd_decompress(&fresh, &[], a.len()).unwrap(), a);
    }

    /// With a prefix too (a fetched group and its dictionary): the kept contexts give what
    /// fresh ones give, whatever prefix they were given before, and keep none of it for the
    /// next frame.
    #[test]
    fn kept_contexts_with_a_prefix_give_what_fresh_ones_give_and_forget_it() {
        let base: Vec<u8> = (0..60_000u32)
            .flat_map(|i| (i.wrapping_mul(2_654_435_761) >> 9).to_le_bytes())
            .collect();
        let mut edited = base.clone();
        edited[1000..1010].copy_from_slice(b"0123456789");
        edited.extend_from_slice(b"appended");
        let other: Vec<u8> = (0..30_000u32).flat_map(|i| (i % 7).to_le_bytes()).collect();
        for (raw, prefix) in [
            (&edited, &base),
            (&edited, &other),
            (&other, &base),
            (&edited, &base),
        ] {
            let fresh = compress_with(&mut CCtx::create(), raw, prefix, 3).unwrap();
            assert_eq!(zstd_compress(raw, prefix, 3).unwrap(), fresh);
            assert_eq!(zstd_decompress(&fresh, prefix, raw.len()).unwrap(), *raw);
        }
        let against_base = zstd_compress(&edited, &base, 3).unwrap();
        assert!(against_base.len() < 1000, "{} bytes", against_base.len());
        // The prefix is gone from both kept contexts: a frame made next without one is what a
        // fresh context makes, and the frame that needs it does not read without it.
        let plain = compress_with(&mut CCtx::create(), &edited, &[], 3).unwrap();
        assert_eq!(zstd_compress(&edited, &[], 3).unwrap(), plain);
        assert!(zstd_decompress(&against_base, &[], edited.len()).is_err());
        assert_eq!(zstd_decompress(&plain, &[], edited.len()).unwrap(), edited);
        // A failed read with a prefix leaves nothing behind either.
        assert!(
            zstd_decompress(&against_base[..against_base.len() / 2], &base, edited.len()).is_err()
        );
        assert_eq!(
            zstd_decompress(&against_base, &base, edited.len()).unwrap(),
            edited
        );
    }
}
