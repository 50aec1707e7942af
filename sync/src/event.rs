//! What goes into the engine ([`Event`]) and what comes out of it ([`Action`]).

use std::collections::{BTreeMap, BTreeSet};

use chorus_chunking::{TreeManifest, VersionId};
use chorus_proto::header::{AcceptedHeader, NodeId, Proposal};
use chorus_proto::message::Message;

/// Who leads and who is in, as Raft reports it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterInfo {
    /// The leader, when one is known.
    pub leader: Option<NodeId>,
    pub voters: BTreeSet<NodeId>,
    pub learners: BTreeSet<NodeId>,
    /// MINOR of every node that has ever been a member.
    pub ranks: BTreeMap<NodeId, u32>,
    /// libp2p PeerId bytes of the members (named in NotLeader answers).
    pub peer_ids: BTreeMap<NodeId, Vec<u8>>,
}

impl ClusterInfo {
    /// True for a voter or a learner.
    pub fn is_member(&self, id: NodeId) -> bool {
        self.voters.contains(&id) || self.learners.contains(&id)
    }

    /// Every member but `me`.
    pub fn others(&self, me: NodeId) -> impl Iterator<Item = NodeId> + '_ {
        self.voters
            .iter()
            .chain(self.learners.iter())
            .copied()
            .filter(move |&id| id != me)
    }
}

/// Something that happened, fed to [`Engine::handle`](super::Engine::handle).
#[derive(Debug, Clone)]
pub enum Event {
    /// The working folder was scanned into this tree; its chunks are in the chunk store.
    Local(TreeManifest),
    /// The driver wrote the version an [`Action::Materialize`] asked for into the working
    /// folder. (If it found local edits instead, it sends [`Event::Local`] and writes nothing.)
    Materialized { version: VersionId },
    /// A sync message from a peer (decoded under the frame limits and parsed).
    Message { from: NodeId, message: Message },
    /// Time passed; retries and replication are driven from here. Due at
    /// [`Engine::poll_timeout`](super::Engine::poll_timeout).
    Tick,
    /// Leader, voters, learners or ranks changed.
    Cluster(ClusterInfo),
    /// This node leads and has applied everything committed before its leadership (the driver
    /// sends it after a linearizable read of the head succeeded and its headers were fed).
    LeaderConfirmed,
    /// Headers committed by Raft and applied on this node, in log order.
    Committed(Vec<AcceptedHeader>),
    /// A proposal did not commit, or is not known to have (not the leader any more, Raft
    /// stopped, or the proposer's timeout: Raft may still commit it, at most once and only on
    /// the head it names). A proposal refused as built on an older head is not reported: the
    /// newer header that refused it starts the leader over.
    ProposeFailed { version: VersionId },
}

/// Something the driver must do.
// A message is the common case and is moved once, to the network; boxing it would cost an
// allocation per message to shrink the rare other variants.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum Action {
    /// Send a message to a peer (best effort: the protocol retries what matters).
    Send { to: NodeId, message: Message },
    /// Propose this header, built on the head numbered `head` (its MAJOR; 0 before any
    /// header), through Raft (`ElectionNode::propose_on`); a failure comes back as
    /// [`Event::ProposeFailed`], a success as [`Event::Committed`].
    Propose { proposal: Proposal, head: u64 },
    /// Make the working folder hold this version (its chunks are in the chunk store), then
    /// confirm with [`Event::Materialized`]. A folder that changed since it was last scanned
    /// is never overwritten: scan it and send [`Event::Local`] instead.
    Materialize {
        version: VersionId,
        tree: std::sync::Arc<TreeManifest>,
    },
}
