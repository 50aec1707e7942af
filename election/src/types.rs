//! The openraft type configuration of chorus: node ids derived from libp2p PeerIds, members
//! with their addresses, and the one thing the log orders, accepted-version headers.

use std::fmt;
use std::io::Cursor;

use serde::{Deserialize, Serialize};

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

/// What the membership records about a node.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// libp2p PeerId bytes.
    pub peer_id: Vec<u8>,
    /// Multiaddrs where it was last reachable.
    pub addresses: Vec<String>,
}

impl fmt::Display for Member {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", hex(&self.peer_id[..self.peer_id.len().min(8)]))?;
        if let Some(a) = self.addresses.first() {
            write!(f, "@{a}")?;
        }
        Ok(())
    }
}

/// MAJOR.MINOR of an accepted version (DESIGN.md §5).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct VersionNumber {
    pub major: u64,
    pub minor: u32,
}

impl fmt::Display for VersionNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

/// A 32-byte version id (BLAKE3 of a tree manifest), as the log carries it.
pub type VersionHash = [u8; 32];

/// Largest opaque redo payload a header may carry: headers must stay small, because openraft
/// times AppendEntries out after one heartbeat interval.
pub const MAX_REDO_BYTES: usize = 64 << 10;

/// Largest number of parents a header may name.
pub const MAX_PARENTS: usize = 16;

/// What the leader proposes: a version it holds on a majority, not yet numbered.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proposal {
    pub version: VersionHash,
    pub parents: Vec<VersionHash>,
    /// The node whose change this is; its rank becomes the MINOR.
    pub origin: NodeId,
    /// Unix milliseconds at the origin.
    pub created_at_ms: u64,
    /// What the merge displaced, encoded by the daemon (redo entries); opaque here.
    pub redo: Vec<u8>,
}

/// A committed header: a proposal with the number the log gave it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AcceptedHeader {
    pub version: VersionHash,
    pub parents: Vec<VersionHash>,
    pub number: VersionNumber,
    pub origin: NodeId,
    pub created_at_ms: u64,
    pub redo: Vec<u8>,
}

/// An application entry of the log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// Accept this version as the next in the chain.
    Accept(Proposal),
}

/// What applying an entry returned.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Response {
    /// The number assigned, for an `Accept`.
    pub number: Option<VersionNumber>,
}

openraft::declare_raft_types!(
    /// The type configuration chorus runs openraft with.
    pub TypeConfig:
        D = Request,
        R = Response,
        NodeId = NodeId,
        Node = Member,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

pub(crate) fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
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
