//! A delta from a peer, applied to a base the receiver holds: a typed error that leaves the
//! store untouched, or exactly the tree the delta names (its VersionId checked). Never a panic,
//! and, at the daemon's real limits, no allocation beyond what the input's bytes allow (run with
//! `-rss_limit_mb`).
#![no_main]

use std::sync::OnceLock;

use chorus_chunking::chunker::chunk_bytes;
use chorus_chunking::delta::{ApplyLimits, apply};
use chorus_chunking::{ChunkStore, ChunkerParams, Entry, MemStore, RelPath, TreeManifest};
use libfuzzer_sys::fuzz_target;
use prost::Message;

/// A small base tree and the store holding its chunks.
fn base() -> &'static (TreeManifest, Vec<(chorus_chunking::ChunkId, Vec<u8>)>) {
    static BASE: OnceLock<(TreeManifest, Vec<(chorus_chunking::ChunkId, Vec<u8>)>)> = OnceLock::new();
    BASE.get_or_init(|| {
        let params = ChunkerParams::new(64, 256, 1024).expect("valid sizes");
        let mut chunks = Vec::new();
        let mut entries = vec![(RelPath::new("d").expect("path"), Entry::dir())];
        for (name, len) in [("d/a.txt", 3000usize), ("b.bin", 5000), ("c", 10)] {
            let bytes: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
            let m = chunk_bytes(&bytes, params);
            let mut pos = 0;
            for c in m.chunks.iter() {
                chunks.push((c.id, bytes[pos..pos + c.len as usize].to_vec()));
                pos += c.len as usize;
            }
            entries.push((RelPath::new(name).expect("path"), Entry::file(m)));
        }
        (TreeManifest::from_entries(entries).expect("valid tree"), chunks)
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(mut delta) = chorus_proto::Delta::decode(data) else { return };
    let (tree, chunks) = base();
    // Aim at the held base half of the time, so apply gets past NeedBase.
    if data.first().is_some_and(|b| b & 1 == 1) {
        delta.base = Some(tree.version_id().to_proto());
    }
    let store = MemStore::new();
    for (id, bytes) in chunks {
        store.put(id, bytes).expect("memory store");
    }
    let before = store.len();
    // The daemon's own limits (256 MiB of literals, 4 MiB dictionaries, 64 GiB files, 4M chunk
    // references): what they let through must still be bounded by the bytes received.
    match apply(&delta, Some(tree), &store, &ApplyLimits::default()) {
        Ok(outcome) => {
            let Some(applied) = outcome.applied() else {
                assert_eq!(store.len(), before, "a delta that needs more wrote to the store");
                return;
            };
            let target = delta.target.as_ref().expect("an applied delta has a target");
            assert_eq!(applied.tree.version_id().to_proto(), *target);
        }
        Err(_) => assert_eq!(store.len(), before, "a refused delta wrote to the store"),
    }
});
