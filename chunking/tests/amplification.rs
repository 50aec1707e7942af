//! Amplification: a hostile peer holding the share secret sends a few bytes of delta or of
//! `Chunks` that would make the receiver allocate or work far beyond what it sent. Each such
//! input is refused as invalid, before the allocation, and without touching the store; honest
//! inputs right at the limits still go through.
//!
//! On the code before these bounds, the cases fail visibly: the million-fold dictionary asks
//! for a 256 GiB buffer (an allocation failure aborts the test binary), the 320 MiB `Chunks`
//! message is accepted, and the others are refused with another error than the limit named
//! here (or not at all: the huge-file and huge-version deltas got as far as the target check).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use chorus_chunking::chunker::chunk_bytes;
use chorus_chunking::delta::{ApplyError, ApplyLimits, EncodeOptions, apply, encode};
use chorus_chunking::fetch::{MAX_MESSAGE_BYTES, receive_chunks, receive_chunks_within};
use chorus_chunking::{
    ChunkId, ChunkRef, ChunkStore, ChunkerParams, Entry, Error, FileManifest, MemStore, Mode,
    RelPath, TreeManifest,
};
use chorus_proto as proto;

/// A store that counts what the applier asks of it, to show a refusal came before any access.
#[derive(Default)]
struct Counting {
    inner: MemStore,
    asked: AtomicUsize,
}

impl Counting {
    fn asked(&self) -> usize {
        self.asked.load(Ordering::SeqCst)
    }
    fn ask(&self) {
        self.asked.fetch_add(1, Ordering::SeqCst);
    }
}

impl ChunkStore for Counting {
    fn contains(&self, id: &ChunkId) -> Result<bool, Error> {
        self.ask();
        self.inner.contains(id)
    }
    fn get(&self, id: &ChunkId) -> Result<Option<Vec<u8>>, Error> {
        self.ask();
        self.inner.get(id)
    }
    fn put(&self, id: &ChunkId, bytes: &[u8]) -> Result<(), Error> {
        self.ask();
        self.inner.put(id, bytes)
    }
    fn sync(&self) -> Result<(), Error> {
        self.inner.sync()
    }
    fn remove(&self, id: &ChunkId) -> Result<(), Error> {
        self.inner.remove(id)
    }
    fn ids(&self) -> Result<Vec<ChunkId>, Error> {
        self.inner.ids()
    }
    fn missing(&self, ids: &[ChunkId]) -> Result<Vec<ChunkId>, Error> {
        self.ask();
        self.inner.missing(ids)
    }
}

/// Stores `chunks` and returns a tree of one file, `path`, made of them.
fn tree_of(path: &str, chunks: &[Vec<u8>], store: &dyn ChunkStore) -> TreeManifest {
    let refs = chunks
        .iter()
        .map(|b| {
            let id = ChunkId::of(b);
            store.put(&id, b).unwrap();
            ChunkRef {
                id,
                len: b.len() as u32,
            }
        })
        .collect();
    file_tree(&[(path, FileManifest { chunks: refs })])
}

fn file_tree(files: &[(&str, FileManifest)]) -> TreeManifest {
    TreeManifest::from_entries(files.iter().map(|(p, m)| {
        (
            RelPath::new(p.to_string()).unwrap(),
            Entry::File {
                mode: Mode::new(0o644).unwrap(),
                manifest: m.clone(),
            },
        )
    }))
    .unwrap()
}

/// A hand-made delta from `base`: `changes` and `literals`, to an arbitrary target.
fn delta(
    base: &TreeManifest,
    changes: Vec<proto::FileChange>,
    literals: Vec<proto::Literal>,
) -> proto::Delta {
    proto::Delta {
        base: Some(base.version_id().to_proto()),
        target: Some(proto::VersionId::from_bytes([7; 32])),
        base_manifest: None,
        external: vec![],
        literals,
        changes,
        removed: vec![],
        packed: vec![],
    }
}

fn file_change(path: &str, runs: Vec<u64>) -> proto::FileChange {
    proto::FileChange {
        path: path.into(),
        kind: proto::EntryKind::File as i32,
        mode: 0o644,
        runs,
        ..Default::default()
    }
}

/// Applies a hostile delta: it must be refused as Invalid with a message containing `says`,
/// quickly, and (unless `store_ok`) without the store being asked anything.
fn refused(
    d: &proto::Delta,
    base: &TreeManifest,
    store: &Counting,
    limits: &ApplyLimits,
    says: &str,
) {
    let before = store.asked();
    let t = Instant::now();
    let r = apply(d, Some(base), store, limits);
    let took = t.elapsed();
    match r {
        Err(ApplyError::Invalid(msg)) => assert!(msg.contains(says), "{says:?} not in {msg:?}"),
        other => panic!("expected Invalid({says:?}), got {other:?}"),
    }
    assert_eq!(
        store.asked(),
        before,
        "the store was asked before the refusal"
    );
    assert!(took < Duration::from_secs(5), "took {took:?}");
}

/// Compresses like the delta encoder (`zstd_compress` in encode.rs): `raw` primed with `prefix`.
fn compress_with_prefix(raw: &[u8], prefix: &[u8], level: i32) -> Vec<u8> {
    let span = (raw.len() + prefix.len()).max(1 << 10);
    let window_log = (usize::BITS - (span - 1).leading_zeros()).clamp(10, 27);
    compress_frame(raw, prefix, level, window_log)
}

/// One zstd frame with the delta encoder's parameters and the given window.
fn compress_frame(raw: &[u8], prefix: &[u8], level: i32, window_log: u32) -> Vec<u8> {
    use zstd::zstd_safe::{CCtx, CParameter};
    let mut c = CCtx::create();
    for p in [
        CParameter::CompressionLevel(level),
        CParameter::WindowLog(window_log),
        CParameter::EnableLongDistanceMatching(true),
        CParameter::ContentSizeFlag(false),
        CParameter::ChecksumFlag(false),
        CParameter::DictIdFlag(false),
    ] {
        c.set_parameter(p).unwrap();
    }
    if !prefix.is_empty() {
        c.ref_prefix(prefix).unwrap();
    }
    let mut out = Vec::with_capacity(zstd::zstd_safe::compress_bound(raw.len()));
    c.compress2(&mut out, raw).unwrap();
    out
}

const K256: usize = 256 << 10;

/// `n` distinct chunks of `len` bytes: zeros but for their number in the first 8 bytes, so
/// they compress almost as well as zeros.
fn sparse_chunks(n: usize, len: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| {
            let mut b = vec![0u8; len];
            b[..8].copy_from_slice(&(i as u64 + 1).to_le_bytes());
            b
        })
        .collect()
}

// ---- Dictionaries ----

#[test]
fn a_dictionary_naming_one_chunk_a_million_times_is_refused_before_reading_it() {
    // Old code: 1,000,000 x 256 KiB = 256 GiB of dictionary, built before decompressing.
    let store = Counting::default();
    let base = tree_of(
        "big",
        &[chorus_chunking::testdata::pseudo_random(K256, 1)],
        &store,
    );
    let lit = proto::Literal {
        compression: proto::Compression::ZstdDict as i32,
        chunk_lens: vec![100],
        dictionary: vec![0; 1_000_000],
        data: vec![0x28, 0xb5, 0x2f, 0xfd, 0, 0, 0, 0, 0, 0],
    };
    let d = delta(&base, vec![file_change("x", vec![1, 1])], vec![lit]);
    refused(
        &d,
        &base,
        &store,
        &ApplyLimits::default(),
        "appears more than once",
    );
}

#[test]
fn a_dictionary_of_more_entries_or_bytes_than_the_limit_is_refused() {
    let store = Counting::default();
    // 17 distinct chunks of 256 KiB: 4.25 MiB, over the 4 MiB default.
    let chunks: Vec<Vec<u8>> = (0..17)
        .map(|i| chorus_chunking::testdata::pseudo_random(K256, 100 + i))
        .collect();
    let base = tree_of("big", &chunks, &store);
    let lit = |dictionary: Vec<u64>| proto::Literal {
        compression: proto::Compression::ZstdDict as i32,
        chunk_lens: vec![100],
        dictionary,
        data: vec![1; 10],
    };
    let limits = ApplyLimits::default();
    let d = delta(&base, vec![], vec![lit((0..17).collect())]);
    refused(&d, &base, &store, &limits, "max_dictionary_bytes");
    // More entries than bytes allowed: refused on the count alone, before the loop.
    let small = ApplyLimits {
        max_dictionary_bytes: 16,
        ..Default::default()
    };
    let d = delta(&base, vec![], vec![lit((0..17).collect())]);
    refused(&d, &base, &store, &small, "17 chunks");
}

#[test]
fn a_dictionary_of_exactly_the_limit_applies() {
    let store = MemStore::new();
    // 16 distinct incompressible chunks of 256 KiB: exactly 4 MiB.
    let chunks: Vec<Vec<u8>> = (0..16)
        .map(|i| chorus_chunking::testdata::pseudo_random(K256, 200 + i))
        .collect();
    let base = tree_of("big", &chunks, &store);
    let prefix = chunks.concat();
    assert_eq!(
        prefix.len() as u64,
        ApplyLimits::default().max_dictionary_bytes
    );
    let mut raw = chunks[9].clone();
    raw[1000] ^= 0xff;
    let data = compress_with_prefix(&raw, &prefix, 3);
    assert!(
        data.len() < 1000,
        "the prefix is used: {} bytes",
        data.len()
    );

    let new = ChunkRef {
        id: ChunkId::of(&raw),
        len: raw.len() as u32,
    };
    let mut entries = base.entries().clone();
    entries.insert(
        RelPath::new("edited").unwrap(),
        Entry::file(FileManifest {
            chunks: vec![new].into(),
        }),
    );
    let target = TreeManifest::from_entries(entries).unwrap();
    let mut d = delta(
        &base,
        vec![file_change("edited", vec![16, 1])],
        vec![proto::Literal {
            compression: proto::Compression::ZstdDict as i32,
            chunk_lens: vec![raw.len() as u32],
            dictionary: (0..16).collect(),
            data,
        }],
    );
    d.target = Some(target.version_id().to_proto());
    let applied = apply(&d, Some(&base), &store, &ApplyLimits::default())
        .unwrap()
        .applied()
        .unwrap();
    assert_eq!(applied.tree, target);
    assert_eq!(store.get(&new.id).unwrap().unwrap(), raw);
}

// ---- Runs ----

#[test]
fn runs_describing_a_huge_file_are_refused() {
    // One base chunk of 16 MiB, named 4,097 times: a 64 GiB + 16 MiB file from ~12 KB of runs.
    let store = Counting::default();
    let base = tree_of("zeros", &[vec![0u8; 16 << 20]], &store);
    let runs: Vec<u64> = (0..4097).flat_map(|_| [0, 1]).collect();
    let d = delta(&base, vec![file_change("huge", runs)], vec![]);
    refused(&d, &base, &store, &ApplyLimits::default(), "max_file_bytes");
}

#[test]
fn files_adding_up_to_a_huge_version_are_refused() {
    // 17 files of 62.5 GiB each (under max_file_bytes): 1062 GiB, over the 1 TiB version.
    let store = Counting::default();
    let base = tree_of("zeros", &[vec![0u8; 16 << 20]], &store);
    let runs: Vec<u64> = (0..4000).flat_map(|_| [0, 1]).collect();
    let changes = (0..17)
        .map(|i| file_change(&format!("f{i:02}"), runs.clone()))
        .collect();
    let d = delta(&base, changes, vec![]);
    // Against a bound of 1 TiB (the default is 1 PiB, which runs from one base chunk cannot
    // reach under max_chunk_refs).
    refused(
        &d,
        &base,
        &store,
        &ApplyLimits {
            max_version_bytes: 1 << 40,
            ..ApplyLimits::default()
        },
        "max_version_bytes",
    );
}

#[test]
fn more_references_than_the_limit_are_refused() {
    // 1024 tiny base chunks named 4,097 times over: 4,195,328 references, over 2^22. The old
    // default (2^24) let a few KB of runs build a 16 Mi-entry manifest (~640 MiB).
    let store = Counting::default();
    let chunks: Vec<Vec<u8>> = (0..1024u32).map(|i| i.to_le_bytes().to_vec()).collect();
    let base = tree_of("tiny", &chunks, &store);
    let runs: Vec<u64> = (0..4097).flat_map(|_| [0, 1024]).collect();
    let d = delta(&base, vec![file_change("many", runs)], vec![]);
    refused(&d, &base, &store, &ApplyLimits::default(), "max_chunk_refs");
}

// ---- Literals ----

#[test]
fn a_literal_declaring_256_mib_from_10_bytes_is_refused() {
    let store = Counting::default();
    let base = tree_of("a", &[b"hello".to_vec()], &store);
    // A valid frame of 100 bytes, 10 bytes long or so; its chunks claim 256 MiB.
    let data = zstd::bulk::compress(&[b'a'; 100], 19).unwrap();
    assert!(data.len() <= 20);
    let lit = proto::Literal {
        compression: proto::Compression::Zstd as i32,
        chunk_lens: vec![16 << 20; 16],
        dictionary: vec![],
        data,
    };
    let d = delta(&base, vec![], vec![lit]);
    let before = store.asked();
    let t = Instant::now();
    match apply(&d, Some(&base), &store, &ApplyLimits::default()) {
        Err(ApplyError::Invalid(m)) => assert!(m.contains("cannot hold"), "{m}"),
        other => panic!("{other:?}"),
    }
    assert!(t.elapsed() < Duration::from_secs(5));
    // Only the (empty) NeedChunks check ran; nothing was stored.
    assert!(store.asked() <= before + 1);
    assert_eq!(store.inner.len(), 1);
}

#[test]
fn a_literal_bomb_stops_at_its_declared_size() {
    // 64 MiB of zeros in ~2 KB, declared as 1 MiB, in a frame whose window (1 MiB) the
    // receiver accepts: decompression stops one byte past 1 MiB.
    let store = Counting::default();
    let base = tree_of("a", &[b"hello".to_vec()], &store);
    let data = compress_frame(&vec![0u8; 64 << 20], &[], 3, 20);
    let lit = proto::Literal {
        compression: proto::Compression::Zstd as i32,
        chunk_lens: vec![1 << 20],
        dictionary: vec![],
        data,
    };
    let d = delta(&base, vec![], vec![lit]);
    match apply(&d, Some(&base), &store, &ApplyLimits::default()) {
        Err(ApplyError::Invalid(m)) => assert!(m.contains("more than 1048576 bytes"), "{m}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(store.inner.len(), 1);
}

#[test]
fn a_literal_at_max_literal_bytes_applies() {
    // 64 MiB of distinct, almost-zero chunks in one literal, with max_literal_bytes at exactly
    // 64 MiB: compressed ~14,500x (4.6 KB), it passes the ratio bound and the streaming
    // decompression.
    let limits = ApplyLimits {
        max_literal_bytes: 64 << 20,
        ..Default::default()
    };
    let chunks = sparse_chunks(256, K256);
    let sender = MemStore::new();
    let target = tree_of("sparse", &chunks, &sender);
    drop(chunks);
    let opts = EncodeOptions {
        literal_budget: 64 << 20,
        max_literal: 64 << 20,
        ..Default::default()
    };
    let (d, stats) = encode(&TreeManifest::empty(), &target, &sender, &opts).unwrap();
    assert_eq!(stats.literal_raw_bytes, 64 << 20);
    assert_eq!(d.literals.len(), 1);
    println!("64 MiB literal: {} bytes on the wire", stats.literal_bytes);
    let receiver = MemStore::new();
    let applied = apply(&d, None, &receiver, &limits)
        .unwrap()
        .applied()
        .unwrap();
    assert_eq!(applied.tree, target);
    assert_eq!(receiver.len(), 256);
    // One byte less allowed, and it is refused before decompressing.
    let under = ApplyLimits {
        max_literal_bytes: (64 << 20) - 1,
        ..Default::default()
    };
    assert!(matches!(
        apply(&d, None, &MemStore::new(), &under),
        Err(ApplyError::Invalid(_))
    ));
}

#[test]
fn a_16_mib_file_of_zeros_changed_slightly_round_trips() {
    let params = ChunkerParams::default();
    let build = |bytes: &[u8], store: &MemStore| {
        let m = chunk_bytes(bytes, params);
        let mut pos = 0;
        for c in m.chunks.iter() {
            store.put(&c.id, &bytes[pos..pos + c.len as usize]).unwrap();
            pos += c.len as usize;
        }
        file_tree(&[("disk.img", m)])
    };
    let old = vec![0u8; 16 << 20];
    let mut new = old.clone();
    for at in [1usize << 20, 7 << 20, (16 << 20) - 5] {
        new[at..at + 4].copy_from_slice(b"edit");
    }
    let sender = MemStore::new();
    let base = build(&old, &sender);
    let target = build(&new, &sender);
    let (d, _) = encode(&base, &target, &sender, &EncodeOptions::default()).unwrap();
    let receiver = MemStore::new();
    let rbase = build(&old, &receiver);
    let applied = apply(&d, Some(&rbase), &receiver, &ApplyLimits::default())
        .unwrap()
        .applied()
        .unwrap();
    assert_eq!(applied.tree, target);
    let back: Vec<u8> = target
        .get_str("disk.img")
        .and_then(Entry::manifest)
        .unwrap()
        .chunks
        .iter()
        .flat_map(|c| receiver.get(&c.id).unwrap().unwrap())
        .collect();
    assert!(back == new);
}

// ---- Chunks messages ----

fn zstd_chunk(raw: &[u8], id: ChunkId) -> proto::ChunkData {
    proto::ChunkData {
        id: Some(id.to_proto()),
        compression: proto::Compression::Zstd as i32,
        data: zstd::bulk::compress(raw, 3).unwrap(),
    }
}

#[test]
fn a_chunks_message_decompressing_beyond_the_message_bound_is_refused() {
    // 20 valid, distinct 16 MiB chunks of almost zeros: ~11 KB on the wire, 320 MiB once
    // decompressed. Old code kept all 320 MiB (and 1,000 of them would be 16 GiB).
    let n = MAX_MESSAGE_BYTES / (16 << 20) + 4;
    let mut raw = vec![0u8; 16 << 20];
    let msg = proto::Chunks {
        chunks: (0..n as u64)
            .map(|i| {
                raw[..8].copy_from_slice(&i.to_le_bytes());
                zstd_chunk(&raw, ChunkId::of(&raw))
            })
            .collect(),
        groups: Vec::new(),
    };
    drop(raw);
    let wire: usize = msg.chunks.iter().map(|c| c.data.len()).sum();
    assert!(wire < 64 << 10, "{wire} bytes on the wire");
    let store = MemStore::new();
    match receive_chunks(&msg, &store, 16 << 20) {
        Err(Error::Invalid(m)) => assert!(m.contains("more than 268435456 bytes"), "{m}"),
        other => panic!("{other:?}"),
    }
    assert!(store.is_empty());
    // The same chunks in messages of at most MAX_MESSAGE_BYTES go through.
    let half = proto::Chunks {
        chunks: msg.chunks[..MAX_MESSAGE_BYTES / (16 << 20)].to_vec(),
        groups: Vec::new(),
    };
    assert_eq!(receive_chunks(&half, &store, 16 << 20).unwrap().len(), 16);
}

#[test]
fn a_zstd_bomb_chunk_is_refused_at_the_chunk_bound() {
    // 256 MiB of zeros in ~8 KB; the receiver allows 16 MiB chunks.
    let zeros = vec![0u8; 256 << 20];
    let bomb = zstd_chunk(&zeros, ChunkId::of(&zeros));
    drop(zeros);
    let store = MemStore::new();
    let t = Instant::now();
    match receive_chunks(
        &proto::Chunks {
            chunks: vec![bomb],
            groups: Vec::new(),
        },
        &store,
        16 << 20,
    ) {
        Err(Error::Invalid(m)) => assert!(m.contains("longer than"), "{m}"),
        other => panic!("{other:?}"),
    }
    assert!(t.elapsed() < Duration::from_secs(5));
    assert!(store.is_empty());
}

#[test]
fn many_tiny_chunks_declaring_large_sizes_are_refused() {
    // Frames cut after their header, which asks for a window of megabytes (the frame of
    // 16 MiB of zeros): 24 bytes of zstd cannot yield more than 768 KiB, so that window is
    // refused before the decoder allocates it. Old code reserved 16 MiB per chunk.
    let header = zstd::bulk::compress(&vec![0u8; 16 << 20], 3).unwrap();
    let chunks: Vec<proto::ChunkData> = (0..1000u32)
        .map(|i| proto::ChunkData {
            id: Some(ChunkId::of(&i.to_le_bytes()).to_proto()),
            compression: proto::Compression::Zstd as i32,
            data: header[..24].to_vec(),
        })
        .collect();
    let store = MemStore::new();
    match receive_chunks(
        &proto::Chunks {
            chunks,
            groups: Vec::new(),
        },
        &store,
        16 << 20,
    ) {
        Err(Error::Invalid(m)) => assert!(m.contains("does not decompress"), "{m}"),
        other => panic!("{other:?}"),
    }
    assert!(store.is_empty());

    // Tiny honest chunks, many of them, go through: they cost what they are.
    let raws: Vec<Vec<u8>> = (0..1000u32)
        .map(|i| format!("chunk number {i} ").repeat(20).into_bytes())
        .collect();
    let msg = proto::Chunks {
        chunks: raws.iter().map(|r| zstd_chunk(r, ChunkId::of(r))).collect(),
        groups: Vec::new(),
    };
    assert_eq!(receive_chunks(&msg, &store, 16 << 20).unwrap().len(), 1000);
    // And a smaller message bound is enforced on their total.
    let small = MemStore::new();
    assert!(matches!(
        receive_chunks_within(&msg, &small, 16 << 20, 10_000),
        Err(Error::Invalid(_))
    ));
    assert!(small.is_empty());
}

// ---- References whose lengths lie ----

/// A target of one file naming `chunk` (stored here) `times` times, each reference saying it
/// is `says` bytes long: the delta that builds it from `base` through an external reference.
fn lying_delta(base: &TreeManifest, chunk: &[u8], says: u32, times: usize) -> proto::Delta {
    let id = ChunkId::of(chunk);
    let lie = ChunkRef { id, len: says };
    let target = TreeManifest::from_entries(base.entries().clone().into_iter().chain([(
        RelPath::new("p".to_string()).unwrap(),
        Entry::File {
            mode: Mode::new(0o644).unwrap(),
            manifest: FileManifest {
                chunks: vec![lie; times].into(),
            },
        },
    )]))
    .unwrap();
    let n_base = base
        .entries()
        .values()
        .filter_map(Entry::manifest)
        .flat_map(|m| m.chunks.iter().map(|c| c.id))
        .collect::<std::collections::BTreeSet<_>>()
        .len() as u64;
    let mut d = delta(
        base,
        vec![file_change(
            "p",
            (0..times).flat_map(|_| [n_base, 1]).collect(),
        )],
        vec![],
    );
    d.target = Some(target.version_id().to_proto());
    d.external = vec![lie.to_proto()];
    d
}

#[test]
fn external_references_whose_lengths_lie_are_refused() {
    // A 1 MiB chunk the receiver holds, named 4,096 times by 1-byte references: a 4 KiB file
    // by its manifest that loads or writes 4 GiB. Also one reference longer than the chunk.
    for (says, times) in [(1u32, 4096usize), ((1 << 20) + 1, 1)] {
        let store = Counting::default();
        let big = vec![0x5au8; 1 << 20];
        store.put(&ChunkId::of(&big), &big).unwrap();
        let base = tree_of("a", &[b"hello".to_vec()], &store);
        let d = lying_delta(&base, &big, says, times);
        match apply(&d, Some(&base), &store, &ApplyLimits::default()) {
            Err(ApplyError::Invalid(m)) => assert!(m.contains("it is 1048576"), "{m}"),
            Err(e) => panic!("refused for another reason: {e}"),
            Ok(_) => panic!("a lying length must be refused; it applied"),
        }
    }
    // The honest length applies.
    let store = Counting::default();
    let big = vec![0x5au8; 1 << 20];
    store.put(&ChunkId::of(&big), &big).unwrap();
    let base = tree_of("a", &[b"hello".to_vec()], &store);
    let d = lying_delta(&base, &big, 1 << 20, 3);
    apply(&d, Some(&base), &store, &ApplyLimits::default()).expect("honest references apply");
}

#[test]
fn a_sent_base_whose_lengths_lie_is_refused() {
    // The base comes with the delta (the receiver lacks it) and names a held 1 MiB chunk as
    // 1 byte; the target names that base chunk 4,096 times.
    let store = Counting::default();
    let big = vec![0x5au8; 1 << 20];
    let id = ChunkId::of(&big);
    store.put(&id, &big).unwrap();
    let lie = ChunkRef { id, len: 1 };
    let base = file_tree(&[(
        "b",
        FileManifest {
            chunks: vec![lie].into(),
        },
    )]);
    let target = file_tree(&[
        (
            "b",
            FileManifest {
                chunks: vec![lie].into(),
            },
        ),
        (
            "p",
            FileManifest {
                chunks: vec![lie; 4096].into(),
            },
        ),
    ]);
    let mut d = delta(
        &base,
        vec![file_change("p", (0..4096).flat_map(|_| [0, 1]).collect())],
        vec![],
    );
    d.target = Some(target.version_id().to_proto());
    d.base_manifest = Some(base.to_proto());
    match apply(&d, None, &store, &ApplyLimits::default()) {
        Err(ApplyError::Invalid(m)) => assert!(m.contains("it is 1048576"), "{m}"),
        Err(e) => panic!("refused for another reason: {e}"),
        Ok(_) => panic!("a lying length must be refused; it applied"),
    }
}

/// An honest share larger than a tebibyte (a media library; here twenty 62.5 GiB files the
/// receiver holds): a small change to it applies. The files it keeps cost the receiver
/// nothing, and a bound of 1 TiB on the whole version refused every version of such a share.
#[test]
fn a_share_larger_than_a_tebibyte_takes_a_small_change() {
    let store = Counting::default();
    let zeros = vec![0u8; 16 << 20];
    let id = ChunkId::of(&zeros);
    store.put(&id, &zeros).unwrap();
    let big = FileManifest {
        chunks: vec![ChunkRef { id, len: 16 << 20 }; 4000].into(),
    };
    let names: Vec<String> = (0..20).map(|i| format!("film{i:02}.mkv")).collect();
    let files: Vec<(&str, FileManifest)> =
        names.iter().map(|n| (n.as_str(), big.clone())).collect();
    let base = file_tree(&files);
    let mut with_new = files.clone();
    with_new.push((
        "notes.txt",
        FileManifest {
            chunks: vec![ChunkRef { id, len: 16 << 20 }].into(),
        },
    ));
    let target = file_tree(&with_new);
    let mut d = delta(&base, vec![file_change("notes.txt", vec![0, 1])], vec![]);
    d.target = Some(target.version_id().to_proto());
    match apply(&d, Some(&base), &store, &ApplyLimits::default()) {
        Ok(chorus_chunking::delta::ApplyOutcome::Applied(a)) => assert_eq!(a.tree, target),
        Ok(other) => panic!("not applied: {other:?}"),
        Err(e) => panic!("refused: {e}"),
    }
}
