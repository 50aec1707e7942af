//! The local socket: HTTP/1.1 with JSON on `<state dir>/api.sock` (mode 0600), in the manner of
//! Docker's socket, and the client the `chorus` subcommands use to query it.
//!
//! The node's driver publishes a [`Snapshot`] of its state through a `watch` channel a few times
//! a second; the server only reads the latest snapshot, so an HTTP request never touches the
//! engine, Raft or the network task.

pub mod client;
pub mod conflict;
pub mod diff;
pub mod routes;
pub mod server;
pub mod ui;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

pub use conflict::ConflictDetail;

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
    /// Members this node cannot reach now (PeerIds): if the others are gone too, the group
    /// cannot elect a leader without them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unreachable: Vec<String>,
    /// Whether members can dial this node: `public` (a member dialled it back at
    /// `public_addrs`, AutoNAT v2), `reachable` (members dialled it directly), `behind-nat`
    /// (none could: it is reached through relays and hole punches) or `unknown`.
    #[serde(default = "unknown")]
    pub reachability: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub public_addrs: Vec<String>,
    pub traffic: Traffic,
    /// The folder or document this node keeps in sync.
    #[serde(default)]
    pub share: String,
    /// Paused by `chorus pause`: the share is neither scanned nor written.
    #[serde(default)]
    pub paused: bool,
    /// Versions arriving in pieces: chunks asked of a peer, and how many have come.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub transfers: Vec<Transfer>,
    /// A version waiting to be written (while paused, or held by the mass-delete guard).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held: Option<HeldVersion>,
    /// How much history this node keeps (config.toml `keep_versions`, `keep_days`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention: Option<RetentionView>,
    /// Redo entries (SEQ) of changes made on this node that a merge displaced, not yet looked
    /// at with `chorus conflicts`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub displaced_here: Vec<u64>,
}

fn unknown() -> String {
    "unknown".into()
}

/// History retention as configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetentionView {
    pub keep_versions: usize,
    pub keep_days: u64,
}

/// A version whose chunks are being fetched from a peer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transfer {
    /// The peer sending them.
    pub peer: String,
    pub version: String,
    /// Chunks the version lacked here, and how many of them have arrived.
    pub chunks: usize,
    pub received: usize,
}

/// A version the node has not written into the share yet, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeldVersion {
    pub version: String,
    /// `paused`, or `mass-delete` (released by `chorus resume --confirm`).
    pub reason: String,
    /// For a mass delete: how many files it deletes, of how many here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deleting: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub files: Option<usize>,
}

/// One entry of `GET /v1/peers`: another member of the share.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
    /// Sync and chunk bytes sent to and received from this peer since the daemon started.
    #[serde(default)]
    pub bytes_sent: u64,
    #[serde(default)]
    pub bytes_received: u64,
    /// The last measured round trip, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rtt_ms: Option<f64>,
    /// When this node last had a working connection to it (Unix ms; now while connected);
    /// absent when not since this daemon started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_seen_ms: Option<u64>,
    /// How it is reached now: `direct`, `hole-punched` (a direct connection made from a relayed
    /// one) or `relayed` (through another member's relay); absent while not connected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Its address on that connection (for a relayed one, the circuit through the relay).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_addr: Option<String>,
    /// Connections open to it now (one once the group has settled; more for a few seconds
    /// after a reconnection, or while a relayed one gives way to a direct one).
    #[serde(default)]
    pub connections: usize,
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
    /// `hunk`, `whole`, `deletion` or `mode`.
    pub what: String,
    /// The displaced text, when it is text and short (at most 64 KiB): the hunk's lines, or
    /// the whole file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preview: Option<String>,
    /// What won (`kept`), a hunk's context, sizes and kinds: see [`ConflictDetail`].
    #[serde(flatten)]
    pub detail: ConflictDetail,
}

/// Everything the socket serves, as the driver last published it.
#[derive(Debug, Clone, PartialEq)]
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

/// A request that changes something: the body of a `POST /v1/...` (the path names it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// Stop scanning the folder and writing versions into it (Raft and storage go on).
    Pause,
    /// Scan and write again; `confirm` also releases a version the mass-delete guard holds.
    Resume { confirm: bool },
    /// Make the folder what it was before the newest accepted version, as a new version.
    Undo,
    /// With an entry: bring back that change a merge displaced (in place when it fits,
    /// always next to its file with `beside`). Without: take back the last undo.
    Redo { entry: Option<u64>, beside: bool },
    /// Make the folder (or one path in it) what it was in an accepted version.
    Restore {
        version: String,
        path: Option<String>,
    },
    /// A join token for new machines, good for `expires_secs` (24 h when `None`) and for
    /// `uses` machines (any number when `None`).
    Invite {
        expires_secs: Option<u64>,
        uses: Option<u32>,
    },
    /// Take a member out of the share for good (`peer`: its PeerId or the end of it).
    Remove { peer: String },
    /// The first half of `chorus rekey`, on the leader: every other member leaves the
    /// membership and every invite this node issued is void (the CLI then writes the new
    /// secret).
    EvictAll,
    /// The user has seen the redo entries up to `upto` (`chorus conflicts` shows them).
    ConflictsSeen { upto: u64 },
    /// A file as it was in an accepted version.
    Show { version: String, path: String },
    /// The paths an accepted version added, changed or removed against the one before it.
    Changes { version: String },
    /// One file's text in two accepted versions (`GET /v1/diff` diffs them).
    Texts {
        path: String,
        from: String,
        to: String,
    },
    /// What an accepted version holds at a path (the root when empty): a directory's entries,
    /// everything below it with `recursive`, or one file's entry.
    List {
        version: String,
        path: String,
        recursive: bool,
    },
}

/// The body `POST /v1/redo` takes: `{"entry": SEQ}` or nothing.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedoBody {
    #[serde(default)]
    pub entry: Option<u64>,
    /// Put the displaced content next to its file (`NAME.redo-MAJOR.MINOR`) even where it
    /// would fit in place, leaving what won as it is.
    #[serde(default)]
    pub beside: bool,
}

/// The body `POST /v1/conflicts/seen` takes: the newest redo entry the user was shown.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeenBody {
    pub upto: u64,
}

/// The body `POST /v1/members/remove` takes: the member's PeerId (or its last characters).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoveBody {
    pub peer: String,
}

/// The body `POST /v1/restore` takes.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestoreBody {
    /// `MAJOR.MINOR` as `chorus log` shows it, or a version id (a unique hex prefix will do).
    pub version: String,
    /// Restore only this path (a file, or a directory and everything under it).
    #[serde(default)]
    pub path: Option<String>,
}

/// The body `POST /v1/resume` takes: `{"confirm": true}` releases a held mass delete.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResumeBody {
    #[serde(default)]
    pub confirm: bool,
}

/// Why a request was refused: an HTTP status and a message for the user.
pub use chorus_sync::Refusal;

/// A request on its way to the node's loop, with where the answer goes.
#[derive(Debug)]
pub struct Command {
    pub request: Request,
    pub reply: tokio::sync::oneshot::Sender<Result<serde_json::Value, Refusal>>,
}

/// One entry of `GET /v1/events` (server-sent events: `event: KIND`, `data: JSON`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// What happened: `scanned`, `accepted`, `materialized`, `held`, `paused`, `resumed`,
    /// `conflict`, `leader`, `peer`, `restored`, `error`.
    pub kind: String,
    /// Unix milliseconds.
    pub at_ms: u64,
    /// The details, different for each kind.
    pub detail: serde_json::Value,
}
