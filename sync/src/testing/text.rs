//! Text shares in the [`World`]: the first seed's share ([`letters`]: one document, merged by
//! characters, one chunk per byte, so a test speaks of chunks as letters), the text of a file
//! in a node's folder or in any tree it stores, and a one-file tree built as a sender would
//! build it without touching the folder.

use chorus_chunking::{ChunkStore, Entry, RelPath, TreeManifest};
use chorus_proto::header::NodeId;

use super::world::{Log, World};
use crate::EngineConfig;

/// A single-document share (characters merge) cut into one chunk per byte, as in the first
/// seed: `AaBb` is the four chunks A, a, B and b.
pub fn letters() -> EngineConfig {
    let mut cfg = EngineConfig::new(
        chorus_merge::ModeRules::new(true),
        chorus_chunking::ChunkerParams::default(),
    );
    cfg.cutter = std::sync::Arc::new(|b: &[u8]| vec![1; b.len()]);
    cfg
}

impl<L: Log> World<L> {
    /// The text of the file at `path` in node `id`'s folder; empty when there is none there.
    pub fn text(&self, id: NodeId, path: &str) -> String {
        self.text_in(id, &self.tree(id), path)
    }

    /// The text of the file at `path` in `tree`, read from node `id`'s chunks; empty when the
    /// tree has no file there. Fails if a chunk is missing or the bytes are not UTF-8.
    pub fn text_in(&self, id: NodeId, tree: &TreeManifest, path: &str) -> String {
        let Some(Entry::File { manifest, .. }) = tree.get_str(path) else {
            return String::new();
        };
        let store = &*self.nodes[&id].chunks;
        let bytes: Vec<u8> = manifest
            .chunks
            .iter()
            .flat_map(|c| {
                store
                    .get(&c.id)
                    .expect("the chunk store answers")
                    .unwrap_or_else(|| panic!("node {id} holds chunk {}", c.id))
            })
            .collect();
        String::from_utf8(bytes).expect("the file holds text")
    }

    /// The tree of one file, `bytes` at `path`, cut as node `id` cuts and its chunks stored on
    /// `id`: what a sender builds (a hostile one, or one outside the world). The folder is not
    /// touched.
    pub fn one_file(&self, id: NodeId, path: &str, bytes: &[u8]) -> TreeManifest {
        let entry = self.folder(id).file(bytes);
        TreeManifest::from_entries([(RelPath::new(path).expect("a valid path"), entry)])
            .expect("a one-file tree")
    }
}
