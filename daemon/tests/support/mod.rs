//! What the in-process engine tests share: the traffic engines emit, an engine on in-memory
//! stores, and Raft's numbering of a committed proposal.

#![allow(dead_code)]

pub mod procs;

use std::collections::BTreeMap;
use std::sync::Arc;

use chorus::sync::{Engine, EngineConfig, SyncStore};
use chorus_chunking::{ChunkStore, ChunkerParams, MemStore};
use chorus_election::{AcceptedHeader, NodeId, Proposal, VersionNumber};
use chorus_merge::ModeRules;
use chorus_proto::Body;

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
