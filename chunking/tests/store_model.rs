//! The disk store against a model: random sequences of puts, gets, removes, syncs, compactions
//! and reopenings (a clean restart) behave exactly like a map from id to bytes.

use std::collections::HashMap;

use chorus_chunking::{ChunkId, ChunkStore, DiskStore};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    Put(u8, usize),
    Get(u8),
    Remove(u8),
    Sync,
    Compact,
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (any::<u8>(), 0usize..200_000).prop_map(|(k, n)| Op::Put(k % 32, n)),
        4 => any::<u8>().prop_map(|k| Op::Get(k % 32)),
        3 => any::<u8>().prop_map(|k| Op::Remove(k % 32)),
        1 => Just(Op::Sync),
        1 => Just(Op::Compact),
        1 => Just(Op::Reopen),
    ]
}

/// Chunk bytes for key `k` of length `n`: half compressible, half not.
fn bytes(k: u8, n: usize) -> Vec<u8> {
    if k.is_multiple_of(2) {
        (0..n).map(|i| (i % 7) as u8 ^ k).collect()
    } else {
        chorus_chunking::testdata::pseudo_random(n, u64::from(k))
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn behaves_like_a_map(ops in proptest::collection::vec(op(), 1..60)) {
        let dir = tempfile::tempdir().unwrap();
        let mut store = DiskStore::open(dir.path()).unwrap();
        // Key -> (id, bytes) of the chunk last put under it.
        let mut model: HashMap<ChunkId, Vec<u8>> = HashMap::new();
        let mut keys: HashMap<u8, ChunkId> = HashMap::new();
        for op in ops {
            match op {
                Op::Put(k, n) => {
                    let b = bytes(k, n);
                    let id = ChunkId::of(&b);
                    store.put(&id, &b).unwrap();
                    keys.insert(k, id);
                    model.insert(id, b);
                }
                Op::Get(k) => {
                    if let Some(id) = keys.get(&k) {
                        prop_assert_eq!(store.get(id).unwrap(), model.get(id).cloned());
                    }
                }
                Op::Remove(k) => {
                    if let Some(id) = keys.get(&k) {
                        store.remove(id).unwrap();
                        model.remove(id);
                    }
                }
                Op::Sync => store.sync().unwrap(),
                Op::Compact => {
                    store.compact().unwrap();
                }
                Op::Reopen => {
                    // A clean restart: what was put is kept once synced.
                    store.sync().unwrap();
                    drop(store);
                    store = DiskStore::open(dir.path()).unwrap();
                }
            }
            let mut ids = store.ids().unwrap();
            ids.sort();
            let mut expected: Vec<ChunkId> = model.keys().copied().collect();
            expected.sort();
            prop_assert_eq!(ids, expected);
        }
        for (id, b) in &model {
            let got = store.get(id).unwrap();
            prop_assert_eq!(got.as_ref(), Some(b));
        }
        let all: Vec<ChunkId> = model.keys().copied().collect();
        prop_assert!(store.missing(&all).unwrap().is_empty());
    }
}
