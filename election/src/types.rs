//! The openraft type configuration of chorus: node ids derived from libp2p PeerIds, members
//! with their addresses, the one thing the log orders (accepted-version headers), and the
//! RPCs and replies on the wire.

use std::fmt;
use std::io::Cursor;

use openraft::error::{InstallSnapshotError, RaftError};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{LogId, Vote};
use serde::{Deserialize, Serialize};

pub use chorus_proto::header::{
    AcceptedHeader, MAX_PARENTS, MAX_REDO_BYTES, NodeId, Proposal, Rule, node_id_of,
};
pub use chorus_proto::ids::{VersionId, VersionNumber};

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

/// An application entry of the log. Variants are only ever added (at the end), and each keeps
/// its meaning: a log written by an earlier build replays to the same chain.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// Accept this version as the next in the chain, whatever the head (what builds before
    /// [`AcceptOnHead`](Self::AcceptOnHead) proposed; kept so their logs replay as written).
    Accept(Proposal),
    /// Accept this version as the next in the chain if it is built on the head: its first
    /// parent is the head's version (or there is no head yet, or it names no parent). Refused
    /// otherwise, numberless: committed, a proposal built on an older head (one a timeout
    /// reported failed while Raft carried it on) would drop what the headers since brought.
    AcceptOnHead(Proposal),
    /// Accept this version as the next in the chain if it is built on the head numbered
    /// `head` (MAJOR; 0: no head yet), its first parent that head's version. What current
    /// builds propose: a header that keeps its predecessor's tree (a merge that kept the head
    /// everywhere, or one that only carries redo entries) has the same version as it, so a
    /// proposal built on the header before it passed the first-parent rule of
    /// [`AcceptOnHead`](Self::AcceptOnHead) and recorded its pushes and redo entries again.
    AcceptOnNumber { proposal: Proposal, head: u64 },
}

/// What applying an entry returned.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Response {
    /// The number assigned, for an `Accept`; none for a header refused because it was not
    /// built on the head.
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

/// A pre-vote (the Raft thesis, §9.6): a voter asks it of the others before it campaigns.
/// Would the receiver vote for this candidate, were it to campaign now? The receiver's state
/// does not change, so a member that cannot win (its log is behind, or the others hear their
/// leader) never raises the group's term: only a campaign a majority would grant is run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreVoteRequest {
    /// The vote the candidate would ask for: its next term, and itself.
    pub vote: Vote<NodeId>,
    /// Where the candidate's log ends.
    pub last_log_id: Option<LogId<NodeId>>,
}

/// A Raft RPC on the wire.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum RaftRpc {
    AppendEntries(AppendEntriesRequest<TypeConfig>),
    Vote(VoteRequest<NodeId>),
    InstallSnapshot(InstallSnapshotRequest<TypeConfig>),
    PreVote(PreVoteRequest),
}

/// Its answer.
#[derive(Debug, Serialize, Deserialize)]
pub enum RaftReply {
    AppendEntries(Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>>),
    Vote(Result<VoteResponse<NodeId>, RaftError<NodeId>>),
    InstallSnapshot(
        Result<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>>,
    ),
    /// Whether the receiver would vote for the candidate now.
    PreVote(bool),
}
