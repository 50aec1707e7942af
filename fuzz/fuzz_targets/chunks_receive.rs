//! A Chunks message from a peer: every chunk is verified before anything is stored; a bad one
//! stores nothing. (Groups name their dictionary in a store that holds nothing here, so
//! they are left out after their bounds are checked.)
#![no_main]

use chorus_chunking::fetch::receive_chunks;
use chorus_chunking::{ChunkId, ChunkStore, MemStore};
use libfuzzer_sys::fuzz_target;
use prost::Message;

fuzz_target!(|data: &[u8]| {
    let Ok(msg) = chorus_proto::Chunks::decode(data) else { return };
    let store = MemStore::new();
    // The daemon's own bound on a chunk (chorus-proto's Limits::max_chunk_len, 16 MiB).
    match receive_chunks(&msg, &store, 16 << 20) {
        Ok(got) => {
            let groups: usize = msg.groups.iter().map(|g| g.ids.len()).sum();
            assert!(got.len() <= msg.chunks.len() + groups);
            for id in store.ids().expect("memory store") {
                let bytes = store.get(&id).expect("memory store").expect("stored");
                assert_eq!(ChunkId::of(&bytes), id);
            }
        }
        Err(_) => assert!(store.is_empty(), "a refused message stored chunks"),
    }
});
