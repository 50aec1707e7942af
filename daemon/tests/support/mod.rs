//! What the in-process engine tests share: a node (an engine on in-memory stores and the
//! folder it materializes), the traffic engines emit, a one-file share with one chunk per
//! letter, and Raft's numbering of a committed proposal.

#![allow(dead_code)]

pub mod group;
pub mod procs;

use std::collections::BTreeMap;
use std::sync::Arc;

use chorus_chunking::{
    ChunkId, ChunkRef, ChunkStore, ChunkerParams, Entry, FileManifest, MemStore, RelPath,
    TreeManifest, VersionId,
};
use chorus_election::{AcceptedHeader, NodeId, Proposal, VersionNumber};
use chorus_merge::ModeRules;
use chorus_proto::Body;
use chorus_sync::{Action, Engine, EngineConfig, Event, SyncStore};

/// Outgoing messages and proposals, in order.
#[derive(Default)]
pub struct Out {
    pub sent: Vec<(NodeId, NodeId, Body)>,
    pub proposals: Vec<Proposal>,
}

/// A single-document share (characters merge) cut into one chunk per byte, so the tests can
/// speak of chunks as letters, as the first seed does.
pub fn letters_config() -> EngineConfig {
    let mut cfg = EngineConfig::new(ModeRules::new(true), ChunkerParams::default());
    cfg.cutter = Arc::new(|b: &[u8]| vec![1; b.len()]);
    cfg
}

/// An engine with its sync state and chunks in memory.
pub fn engine(id: NodeId, cfg: EngineConfig) -> (Engine, Arc<MemStore>) {
    let chunks = Arc::new(MemStore::new());
    let engine = Engine::open(
        id,
        cfg,
        SyncStore::in_memory().expect("an in-memory sync store"),
        chunks.clone() as Arc<dyn ChunkStore>,
    )
    .expect("an engine");
    (engine, chunks)
}

/// What Raft commits for `p` after the headers of `log` (appended to it): the next MAJOR, the
/// origin's rank as MINOR.
pub fn accept(
    log: &mut Vec<AcceptedHeader>,
    p: Proposal,
    ranks: &BTreeMap<NodeId, u32>,
) -> AcceptedHeader {
    let h = AcceptedHeader {
        version: p.version,
        parents: p.parents,
        number: VersionNumber {
            major: log.len() as u64 + 1,
            minor: ranks[&p.origin],
        },
        origin: p.origin,
        created_at_ms: p.created_at_ms,
        redo: p.redo,
    };
    log.push(h.clone());
    h
}

/// A node: its engine, its chunks and its working folder.
pub struct Node {
    pub engine: Engine,
    pub chunks: Arc<MemStore>,
    /// The working folder, as materialized or edited.
    pub folder: TreeManifest,
    /// Materializations asked for and not yet confirmed (when `auto_confirm` is off).
    pub asked: Vec<(VersionId, TreeManifest)>,
    /// Confirm every materialization at once, as a folder nobody touches would.
    pub auto_confirm: bool,
    pub now: u64,
}

/// Node `id` of a single-document share, one chunk per letter.
pub fn node(id: NodeId) -> Node {
    let (engine, chunks) = engine(id, letters_config());
    Node {
        engine,
        chunks,
        folder: TreeManifest::empty(),
        asked: Vec::new(),
        auto_confirm: true,
        now: 1,
    }
}

impl Node {
    /// Feeds one event; what it sends or proposes goes to `out`, what it materializes is
    /// written to the folder (and confirmed, with `auto_confirm`).
    pub fn feed(&mut self, event: Event, out: &mut Out) {
        self.now += 1;
        let me = self.engine.id();
        let mut confirm = Vec::new();
        for a in self
            .engine
            .handle(self.now, event)
            .expect("the engine handles the event")
        {
            match a {
                Action::Send { to, message } => out.sent.push((me, to, message.into_body())),
                Action::Propose(p) => out.proposals.push(p),
                Action::Materialize { version, tree } => {
                    if self.auto_confirm {
                        self.folder = tree;
                        confirm.push(version);
                    } else {
                        self.asked.push((version, tree));
                    }
                }
            }
        }
        for version in confirm {
            self.feed(Event::Materialized { version }, out);
        }
    }

    /// The user saves `text`: the folder holds it and the engine hears of it.
    pub fn edit(&mut self, text: &str, out: &mut Out) -> TreeManifest {
        let tree = doc(text, &*self.chunks);
        self.folder = tree.clone();
        self.feed(Event::Local(tree.clone()), out);
        tree
    }
}

/// The one-file share holding `text`, one chunk per letter, its chunks put in `store`.
pub fn doc(text: &str, store: &dyn ChunkStore) -> TreeManifest {
    let chunks = text
        .bytes()
        .map(|b| {
            let id = ChunkId::of(&[b]);
            store.put(&id, &[b]).expect("a memory store");
            ChunkRef { id, len: 1 }
        })
        .collect();
    TreeManifest::from_entries([(
        RelPath::new("doc").expect("a valid path"),
        Entry::File {
            mode: chorus_chunking::Mode::FILE,
            manifest: FileManifest { chunks },
        },
    )])
    .expect("a valid tree")
}
