//! The base chunk table shared by encoder and applier: the distinct chunks of a tree, in order
//! of first appearance walking its sorted entries. Both sides derive it from the same manifest,
//! so it never travels.

use std::collections::HashMap;

use crate::ids::ChunkId;
use crate::manifest::{ChunkRef, TreeManifest};

/// Chunk ids are hashes already; a seeded fast hash of them (foldhash) is enough, and the table
/// of a 100k-file base is built for every delta made or applied.
pub(crate) type ChunkIndex = HashMap<ChunkId, u64, foldhash::fast::RandomState>;

pub(crate) struct BaseTable {
    pub refs: Vec<ChunkRef>,
    pub index: ChunkIndex,
}

impl BaseTable {
    pub fn of(tree: &TreeManifest) -> Self {
        let mut refs = Vec::with_capacity(tree.len());
        let mut index = ChunkIndex::with_capacity_and_hasher(tree.len(), Default::default());
        for c in tree.chunks() {
            index.entry(c.id).or_insert_with(|| {
                refs.push(*c);
                (refs.len() - 1) as u64
            });
        }
        BaseTable { refs, index }
    }

    pub fn len(&self) -> u64 {
        self.refs.len() as u64
    }
}

/// Appends index `i` to `runs` as (start, count) pairs, extending the last run when `i`
/// follows it.
pub(crate) fn push_run(runs: &mut Vec<u64>, i: u64) {
    let n = runs.len();
    if n >= 2 && runs[n - 2] + runs[n - 1] == i {
        runs[n - 1] += 1;
    } else {
        // Most files are one run: two numbers, not the four a first push would reserve
        // (a longer list grows as usual).
        if runs.is_empty() {
            runs.reserve_exact(2);
        }
        runs.extend([i, 1]);
    }
}
