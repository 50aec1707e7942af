//! The accepted-version header: the one thing the Raft log orders (DESIGN.md §7). A leader
//! proposes a [`Proposal`] (a version it holds on a majority, not yet numbered); applying it
//! gives an [`AcceptedHeader`] with its number. Content never rides here, only ids, so a header
//! stays far below the size openraft can ship within one heartbeat.

use serde::{Deserialize, Serialize};

use crate::ids::{VersionId, VersionNumber};

/// A node's Raft id: the first 8 bytes of BLAKE3 of its libp2p PeerId bytes.
pub type NodeId = u64;

/// Derives a node's Raft id from its PeerId bytes. Deterministic on every machine; two peers
/// whose ids collide cannot both be members (a join is refused).
pub fn node_id_of(peer_id: &[u8]) -> NodeId {
    let h = blake3::hash(peer_id);
    let mut b = [0u8; 8];
    b.copy_from_slice(&h.as_bytes()[..8]);
    u64::from_le_bytes(b)
}

/// Largest opaque redo payload a header may carry: headers must stay small, because openraft
/// times AppendEntries out after one heartbeat interval.
pub const MAX_REDO_BYTES: usize = 64 << 10;

/// Largest number of parents a header may name.
pub const MAX_PARENTS: usize = 16;

/// What the leader proposes: a version it holds on a majority, not yet numbered.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proposal {
    pub version: VersionId,
    /// The previous head first, then the pushed versions merged into this one.
    pub parents: Vec<VersionId>,
    /// The node whose change this is; its rank becomes the MINOR.
    pub origin: NodeId,
    /// Unix milliseconds at the origin.
    pub created_at_ms: u64,
    /// What the merge displaced, encoded by the sync engine (redo entries); opaque here.
    pub redo: Vec<u8>,
}

/// A committed header: a proposal with the number the log gave it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AcceptedHeader {
    pub version: VersionId,
    pub parents: Vec<VersionId>,
    pub number: VersionNumber,
    pub origin: NodeId,
    pub created_at_ms: u64,
    pub redo: Vec<u8>,
}

impl AcceptedHeader {
    /// True when `version` is this header's version or one it merged.
    pub fn includes(&self, version: &VersionId) -> bool {
        self.version == *version || self.parents.contains(version)
    }
}

/// Where the log puts a proposal, given its head: the rule chorus-election's state machine
/// applies (and the sync engine's test log with it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placement {
    /// The head proposed again: answered with the head's number, nothing appended.
    Again(VersionNumber),
    /// Appended as the next header.
    Next,
    /// Refused: built on a head that another header has replaced since.
    Refused,
}

/// Where a proposal goes on top of `head`. The head again (same tree and parents) is answered
/// with its number. With `on_head` (the rule of what current builds propose) the head again
/// must carry the same redo entries too (a header that carries only the redo entries one
/// header could not hold keeps the head's tree and names the head alone, as the head may), and
/// a proposal whose first parent is not the head is refused: committed, it would drop what the
/// headers since it was built brought. Without `on_head` (what earlier builds wrote into their
/// logs) every other proposal is appended. A proposal that names no parent is appended.
pub fn placement(head: Option<&AcceptedHeader>, p: &Proposal, on_head: bool) -> Placement {
    let Some(h) = head else {
        return Placement::Next;
    };
    if h.version == p.version && h.parents == p.parents && (!on_head || h.redo == p.redo) {
        return Placement::Again(h.number);
    }
    match p.parents.first() {
        Some(first) if on_head && *first != h.version => Placement::Refused,
        _ => Placement::Next,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_ids_are_deterministic_and_spread() {
        assert_eq!(node_id_of(b"peer-a"), node_id_of(b"peer-a"));
        assert_ne!(node_id_of(b"peer-a"), node_id_of(b"peer-b"));
    }
}
