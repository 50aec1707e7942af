//! The local socket: HTTP/1.1 with JSON on `<state dir>/api.sock` (mode 0600), in the manner of
//! Docker's socket, and the client the `chorus` subcommands use to query it.
//!
//! The node's driver publishes a [`Snapshot`] of its state through a `watch` channel a few times
//! a second; the server only reads the latest snapshot, so an HTTP request never touches the
//! engine, Raft or the network task.

pub mod client;
pub mod routes;
pub mod server;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// The socket's file name inside the state dir.
pub const SOCKET: &str = "api.sock";

/// Where the socket of the daemon using `state_dir` lives.
pub fn socket_path(state_dir: &Path) -> PathBuf {
    state_dir.join(SOCKET)
}

/// A version as `GET /v1/status` names it: its number and id (hex).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionRef {
    pub number: String,
    pub version: String,
}

/// Bytes on the wire so far, per protocol, length prefixes included.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Traffic {
    /// Sync and chunk frames.
    pub sync_sent: u64,
    pub sync_received: u64,
    /// Raft frames (heartbeats, headers, votes).
    pub raft_sent: u64,
    pub raft_received: u64,
}

/// `GET /v1/status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    /// This node's PeerId.
    pub peer_id: String,
    /// `leader`, `candidate`, `follower` or `learner`.
    pub role: String,
    pub term: u64,
    /// The leader's PeerId, when one is known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub leader: Option<String>,
    /// The newest accepted version this node knows of.
    pub head: VersionRef,
    /// The accepted version the folder was last synced to.
    pub adopted: VersionRef,
    /// The local version whose changes the leader has not answered yet, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pending_local: Option<String>,
    /// No local change unanswered and the newest accepted version is in the folder.
    pub settled: bool,
    /// Other members of the share, and how many of them are connected now.
    pub peers: usize,
    pub peers_connected: usize,
    pub traffic: Traffic,
}

/// One entry of `GET /v1/peers`: another member of the share.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Peer {
    pub peer_id: String,
    pub addresses: Vec<String>,
    pub connected: bool,
    /// `leader`, `voter` or `learner`.
    pub role: String,
    /// The version this node believes both it and that peer hold, and its number when it is
    /// in the history kept here.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_shared: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_shared_number: Option<String>,
}

/// One entry of `GET /v1/versions`: an accepted version in the history kept here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Version {
    pub number: String,
    pub version: String,
    /// The PeerId of the member whose change it is (the leader's own when it merged), when
    /// that member is known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
    /// Raft id of the origin (always known).
    pub origin_node: u64,
    /// Creation time, Unix milliseconds (the leader's clock).
    pub created_at_ms: u64,
    /// `merge` when it merged concurrent changes (it has more than one parent, or its merge
    /// displaced something), `fast-forward` otherwise.
    pub kind: String,
    /// The versions it was built from: the previous head first, then the merged pushes.
    pub parents: Vec<String>,
    /// How many changes its merge displaced onto the redo stack.
    pub displaced: usize,
}

/// One entry of `GET /v1/conflicts`: a change a merge displaced, restorable later.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Conflict {
    /// Position on the redo stack (grows with every entry).
    pub seq: u64,
    /// The file, when the merge knew it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// MAJOR of the accepted version whose merge displaced it.
    pub accepted_major: u64,
    /// The numbers of the changes that met: the one that won, and the one displaced.
    pub displaced_by: String,
    pub displaced_from: String,
    /// `hunk`, `whole`, `deletion` or `exec`.
    pub what: String,
}

/// Everything the socket serves, as the driver last published it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub status: Status,
    pub peers: Vec<Peer>,
    /// Oldest first. Shared: it is rebuilt only when the history changes.
    pub versions: Arc<Vec<Version>>,
    /// Oldest first.
    pub conflicts: Arc<Vec<Conflict>>,
    /// MAJOR of the newest accepted version (a count of accepted versions).
    pub accepted: u64,
}

/// An error body: `{"error": "..."}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: String,
}
