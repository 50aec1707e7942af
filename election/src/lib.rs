//! chorus-election: the group elects one leader with Raft (openraft 0.9), and the Raft log
//! orders accepted versions and gives them their MAJOR number (DESIGN.md §5, §7).
//!
//! - [`types`]: the openraft type config; node ids from PeerIds; headers and proposals.
//! - [`log_store`]: the durable log and vote in redb (fsync before acknowledging).
//! - [`state_machine`]: the accepted-version chain, its numbering and snapshots.
//! - [`admission`]: who may send which Raft RPC, and the bounds on its terms and sizes.
//! - [`network`]: the [`Transport`] trait the daemon implements over libp2p.
//! - [`wire`]: RPCs and replies as compact binary (postcard) bytes.
//! - [`memnet`]: an in-memory transport with seeded faults, for tests and benchmarks.
//! - [`node`]: [`ElectionNode`], the API the daemon drives; [`view`]: who leads, as it sees it.
//! - `heard`: when a follower last heard its leader, and its answer to a pre-vote.
//! - `lookout`: the election timer: a follower campaigns as soon as its leader is known gone,
//!   and after an election timeout without one only if a majority grants it a pre-vote.
//! - [`config`]: LAN and WAN timings.
//!
//! Only small headers ride in the log; version content moves over the sync protocol.

// openraft's storage traits fix the error type (`StorageError`, over 200 bytes); our helpers
// return it too rather than converting at every call.
#![allow(clippy::result_large_err)]

pub mod admission;
pub mod config;
mod heard;
pub mod log_store;
mod lookout;
#[cfg(any(test, feature = "test-util"))]
pub mod memnet;
pub mod network;
pub mod node;
pub mod state_machine;
#[cfg(any(test, feature = "test-util"))]
pub mod testing;
pub mod types;
pub mod view;
pub mod wire;

pub use admission::Refused;
pub use config::ElectionConfig;
pub use network::{RaftReply, RaftRpc, Transport, TransportError};
pub use node::{CATCH_UP_WITHIN, ClusterView, ElectionNode, ProposeError, Role};
pub use types::{AcceptedHeader, Member, NodeId, Proposal, TypeConfig, VersionNumber, node_id_of};
pub use wire::WireError;

/// The error underneath another: openraft's, the disk's, the log store's.
pub type Source = Box<dyn std::error::Error + Send + Sync>;

/// Errors of node management. Each keeps the error underneath as its source.
#[derive(Debug, thiserror::Error)]
pub enum ElectionError {
    #[error("Raft state in {}: {source}; check that disk (space, permissions)", path.display())]
    Storage {
        path: std::path::PathBuf,
        #[source]
        source: Source,
    },
    #[error("invalid election config: {0}")]
    Config(#[source] Source),
    #[error("this node already has cluster state; it is never initialized twice")]
    AlreadyInitialized,
    #[error("node id {0} is already used by another peer; that peer cannot join")]
    IdCollision(NodeId),
    #[error("not the leader (leader: {0:?}); membership changes go to the leader")]
    NotLeader(Option<NodeId>),
    #[error("membership change failed: {0}")]
    Membership(#[source] Source),
    #[error("raft stopped: {0}")]
    Fatal(#[source] Source),
}
