//! Builds trees from in-memory content for the delta tests.

#![allow(dead_code)]

use std::collections::BTreeMap;

use chorus_chunking::chunker::chunk_bytes;
use chorus_chunking::{ChunkStore, ChunkerParams, Entry, Mode, RelPath, TreeManifest};

/// Small chunks so that small test files still have many of them.
pub fn params() -> ChunkerParams {
    ChunkerParams::new(64, 256, 1024).unwrap()
}

/// What a test tree holds, path by path.
#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    /// A file with its permission bits.
    File {
        mode: u32,
        bytes: Vec<u8>,
    },
    Dir,
    /// A directory with other permission bits than the default 0755.
    DirMode(u32),
    Link(String),
}

pub type Spec = BTreeMap<String, Node>;

/// Chunks every file of `spec` into `store` and returns the manifest.
pub fn build(spec: &Spec, store: &dyn ChunkStore) -> TreeManifest {
    build_with(spec, store, params())
}

/// [`build`] with other chunk sizes.
pub fn build_with(spec: &Spec, store: &dyn ChunkStore, params: ChunkerParams) -> TreeManifest {
    let entries = spec.iter().map(|(p, n)| {
        let entry = match n {
            Node::File { mode, bytes } => {
                let manifest = chunk_bytes(bytes, params);
                let mut pos = 0;
                for c in manifest.chunks.iter() {
                    store.put(&c.id, &bytes[pos..pos + c.len as usize]).unwrap();
                    pos += c.len as usize;
                }
                Entry::File {
                    mode: Mode::new(*mode).unwrap(),
                    manifest,
                }
            }
            Node::Dir => Entry::dir(),
            Node::DirMode(mode) => Entry::Dir {
                mode: Mode::new(*mode).unwrap(),
            },
            Node::Link(t) => Entry::symlink(t.clone()).unwrap(),
        };
        (RelPath::new(p.clone()).unwrap(), entry)
    });
    TreeManifest::from_entries(entries).unwrap()
}

/// Reads a file's bytes back out of a store.
pub fn read(tree: &TreeManifest, path: &str, store: &dyn ChunkStore) -> Vec<u8> {
    let m = tree
        .get_str(path)
        .and_then(Entry::manifest)
        .expect("a file");
    m.chunks
        .iter()
        .flat_map(|c| store.get(&c.id).unwrap().expect("chunk present"))
        .collect()
}

pub use chorus_chunking::testdata::pseudo_random;

/// Lines of plausible text.
pub fn text(lines: usize, seed: u64) -> Vec<u8> {
    let words = [
        "sync", "chunk", "leader", "merge", "the", "a", "version", "peer", "delta", "of", "and",
        "redo",
    ];
    let r = pseudo_random(lines * 12, seed);
    let mut out = Vec::new();
    for l in 0..lines {
        for w in 0..(r[l * 12] % 10 + 1) as usize {
            out.extend_from_slice(words[r[l * 12 + w % 12] as usize % words.len()].as_bytes());
            out.push(b' ');
        }
        out.extend_from_slice(format!("{l}\n").as_bytes());
    }
    out
}
