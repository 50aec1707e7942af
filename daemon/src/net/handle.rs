//! The handle the rest of the daemon talks to the network task through ([`NetHandle`]): the
//! commands it sends the task, what arrives from peers ([`Inbound`]), and the bytes and round
//! trips kept per peer ([`PeerStats`]).
//!
//! Sync messages are one-way: a frame on the lane to the peer (chunk requests and chunks: a
//! request whose response is an empty acknowledgement), and the sync protocol answers with its
//! own messages and retries what matters. Raft RPCs are calls answered on their lane.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use chorus_election::{RaftReply, RaftRpc, TransportError};
use chorus_proto::{Body, encode_frame};
use libp2p::{Multiaddr, PeerId};
use tokio::sync::{mpsc, oneshot};

use super::codec::Counters;
use super::invite::{Code, Voucher};

/// Why the network could not start or act.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("identity key {}: {advice}: {source}", path.display())]
    Identity {
        path: std::path::PathBuf,
        advice: &'static str,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("cannot build the network: {0}")]
    Build(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("cannot listen on {addr}: {detail}; is the port in use?")]
    Listen { addr: Multiaddr, detail: String },
    #[error("the network task has stopped")]
    Stopped,
}

/// A member accepted a join: the addresses (`.../p2p/<id>`) of the members it knows, for
/// reaching the leader, and, from the member that issued the code, a voucher the others take.
#[derive(Debug, Clone, Default)]
pub struct JoinAccepted {
    pub members: Vec<Multiaddr>,
    pub voucher: Option<Voucher>,
}

/// How a peer is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathKind {
    /// A connection one of the two dialled.
    Direct,
    /// A direct connection made by hole punching (DCUtR) from a relayed one.
    HolePunched,
    /// Through a member's relay.
    Relayed,
}

impl PathKind {
    pub fn as_str(self) -> &'static str {
        match self {
            PathKind::Direct => "direct",
            PathKind::HolePunched => "hole-punched",
            PathKind::Relayed => "relayed",
        }
    }
}

/// The connection a peer is reached on now.
#[derive(Debug, Clone, PartialEq)]
pub struct PeerPath {
    pub kind: PathKind,
    /// The peer's address on that connection.
    pub addr: Multiaddr,
}

/// What this node exchanged with one peer, and how far away it is.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PeerStats {
    /// Sync and chunk frames, length prefixes included.
    pub sent: u64,
    pub received: u64,
    /// The last ping's round trip.
    pub rtt: Option<Duration>,
    /// When a connection to it was last known to work (Unix ms): opened, answering a ping,
    /// or closing. `None`: not since the daemon started.
    pub last_seen_ms: Option<u64>,
    /// How it is reached now (`None`: not connected).
    pub path: Option<PeerPath>,
    /// Connections open to it now, of any kind.
    pub connections: usize,
}

pub(super) type SharedStats = Arc<std::sync::Mutex<HashMap<PeerId, PeerStats>>>;

/// Whether members can dial this node, as far as it knows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Reachability {
    /// Not known yet: no member has tested it, nor dialled it.
    #[default]
    Unknown,
    /// A member dialled it back at these addresses when asked to (AutoNAT v2).
    Public(Vec<Multiaddr>),
    /// Members dialled it directly (not through a relay, not by a hole punch), but no dial-back
    /// test has confirmed an address: reachable by them, publicly or on their network.
    Reachable,
    /// Members could not dial it back at the addresses they see it at, and none dialled it:
    /// behind a NAT or a firewall, reached through relays and hole punches.
    BehindNat,
}

impl Reachability {
    /// The word `chorus status --json` gives.
    pub fn as_str(&self) -> &'static str {
        match self {
            Reachability::Unknown => "unknown",
            Reachability::Public(_) => "public",
            Reachability::Reachable => "reachable",
            Reachability::BehindNat => "behind-nat",
        }
    }
}

pub(super) type SharedReach = Arc<std::sync::Mutex<Reachability>>;

/// Updates the stats of `peer` (a poisoned lock still holds usable counters).
pub(super) fn with_stats(stats: &SharedStats, peer: PeerId, f: impl FnOnce(&mut PeerStats)) {
    let mut map = stats.lock().unwrap_or_else(|e| e.into_inner());
    f(map.entry(peer).or_default());
}

/// Something that arrived from a peer.
// Each value crosses the inbound queue once; boxing `Body` would change the public API.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Inbound {
    /// A peer presented a valid invite; it may talk to this node from now on, and the leader
    /// adds it to the membership.
    Join { from: PeerId, addrs: Vec<Multiaddr> },
    /// A sync message, decoded under the frame limits.
    Sync { from: PeerId, body: Body },
    /// A Raft RPC; send the reply through `reply`.
    Raft {
        from: PeerId,
        rpc: Box<RaftRpc>,
        reply: oneshot::Sender<RaftReply>,
    },
    /// A member's last connection closed and a redial failed: it is gone (for now).
    Gone { peer: PeerId },
}

/// What a [`NetHandle`] asks of the network task.
pub(super) enum Command {
    Send {
        to: PeerId,
        frame: Vec<u8>,
        chunks: bool,
    },
    Raft {
        to: PeerId,
        addrs: Vec<Multiaddr>,
        request: Vec<u8>,
        reply: oneshot::Sender<Result<Vec<u8>, String>>,
    },
    Allow(Vec<PeerId>),
    QuicMembers(Vec<PeerId>),
    Join {
        to: PeerId,
        code: Option<Code>,
        voucher: Option<Voucher>,
        addrs: Vec<Multiaddr>,
        reply: oneshot::Sender<Option<JoinAccepted>>,
    },
    ClearInvites,
    Invite {
        ttl: Duration,
        uses: u32,
        reply: oneshot::Sender<Result<(Code, u64), String>>,
    },
    Disallow(Vec<PeerId>),
    AddAddress(PeerId, Multiaddr),
    ListenAddrs(oneshot::Sender<Vec<Multiaddr>>),
    Connected(oneshot::Sender<Vec<PeerId>>),
    Reported(oneshot::Sender<HashMap<PeerId, Vec<Multiaddr>>>),
}

/// Talks to the network task. Cheap to clone.
#[derive(Clone)]
pub struct NetHandle {
    pub(super) tx: mpsc::UnboundedSender<Command>,
    pub(super) local: PeerId,
    pub(super) counters: Arc<Counters>,
    pub(super) raft_counters: Arc<Counters>,
    pub(super) stats: SharedStats,
    pub(super) reach: SharedReach,
    pub(super) members_up: tokio::sync::watch::Receiver<std::collections::BTreeSet<PeerId>>,
    /// How long a Raft call waits for its reply.
    pub(super) request_timeout: Duration,
}

impl NetHandle {
    /// The members with at least one open connection (direct or relayed), updated as
    /// connections open and close.
    pub fn links(&self) -> tokio::sync::watch::Receiver<std::collections::BTreeSet<PeerId>> {
        self.members_up.clone()
    }

    /// Bytes and round trip per peer, for every peer seen so far.
    pub fn peer_stats(&self) -> HashMap<PeerId, PeerStats> {
        self.stats.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn local_peer_id(&self) -> PeerId {
        self.local
    }

    /// Sends a sync message (best effort; the protocol retries).
    pub fn send(&self, to: PeerId, body: Body) {
        let chunks = matches!(body, Body::Chunks(_) | Body::NeedChunks(_));
        let _ = self.tx.send(Command::Send {
            to,
            frame: encode_frame(body),
            chunks,
        });
    }

    /// One Raft RPC and its reply.
    pub async fn raft_call(
        &self,
        to: PeerId,
        addrs: Vec<Multiaddr>,
        rpc: &RaftRpc,
    ) -> Result<RaftReply, TransportError> {
        let request = rpc.to_bytes().map_err(|e| TransportError(e.to_string()))?;
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Command::Raft {
                to,
                addrs,
                request,
                reply,
            })
            .map_err(|_| TransportError("the network task has stopped".into()))?;
        let bytes = tokio::time::timeout(self.request_timeout, rx)
            .await
            .map_err(|_| TransportError(format!("no reply within {:?}", self.request_timeout)))?
            .map_err(|_| TransportError("the network task has stopped".into()))?
            .map_err(TransportError)?;
        RaftReply::from_bytes(&bytes).map_err(|e| TransportError(format!("bad raft reply: {e}")))
    }

    /// Presents an invite `code` (good at the member that issued it) and/or a `voucher` (good
    /// at every member) to `to`. `Some` when it was accepted; `None` when refused or
    /// unreachable.
    pub async fn join(
        &self,
        to: PeerId,
        code: Option<Code>,
        voucher: Option<Voucher>,
        addrs: Vec<Multiaddr>,
    ) -> Result<Option<JoinAccepted>, NetError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Command::Join {
                to,
                code,
                voucher,
                addrs,
                reply,
            })
            .map_err(|_| NetError::Stopped)?;
        rx.await.map_err(|_| NetError::Stopped)
    }

    /// Voids every invite this node issued (`chorus rekey`).
    pub fn clear_invites(&self) {
        let _ = self.tx.send(Command::ClearInvites);
    }

    /// Issues an invite good for `ttl`, for `uses` machines: its code and when it expires
    /// (Unix ms).
    pub async fn issue_invite(&self, ttl: Duration, uses: u32) -> Result<(Code, u64), String> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Command::Invite { ttl, uses, reply })
            .map_err(|_| NetError::Stopped.to_string())?;
        rx.await.map_err(|_| NetError::Stopped.to_string())?
    }

    /// Lets these peers connect (they joined the membership).
    pub fn allow(&self, peers: Vec<PeerId>) {
        let _ = self.tx.send(Command::Allow(peers));
    }

    /// The members that this node, itself a member, talks QUIC with: their QUIC connections
    /// are admitted and their QUIC addresses dialled (replacing the last set). Everyone else
    /// uses TCP, behind the share's key: a joiner's QUIC connection would be denied by members
    /// that do not know it yet.
    pub fn set_quic_members(&self, peers: Vec<PeerId>) {
        let _ = self.tx.send(Command::QuicMembers(peers));
    }

    /// Refuses these peers from now on, and drops their connections.
    pub fn disallow(&self, peers: Vec<PeerId>) {
        let _ = self.tx.send(Command::Disallow(peers));
    }

    /// Remembers an address of a peer.
    pub fn add_address(&self, peer: PeerId, addr: Multiaddr) {
        let _ = self.tx.send(Command::AddAddress(peer, addr));
    }

    /// The addresses this node listens on.
    pub async fn listen_addrs(&self) -> Result<Vec<Multiaddr>, NetError> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Command::ListenAddrs(tx))
            .map_err(|_| NetError::Stopped)?;
        rx.await.map_err(|_| NetError::Stopped)
    }

    /// The peers connected now.
    /// Where each member says it can be reached (its listen and external addresses, as its
    /// last identify told them), and this node's own: what the membership records.
    pub async fn reported_addresses(&self) -> Result<HashMap<PeerId, Vec<Multiaddr>>, NetError> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Command::Reported(tx))
            .map_err(|_| NetError::Stopped)?;
        rx.await.map_err(|_| NetError::Stopped)
    }

    /// Whether members can dial this node (AutoNAT v2 among the members, and who dialled it).
    pub fn reachability(&self) -> Reachability {
        self.reach.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub async fn connected(&self) -> Result<Vec<PeerId>, NetError> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Command::Connected(tx))
            .map_err(|_| NetError::Stopped)?;
        rx.await.map_err(|_| NetError::Stopped)
    }

    /// (sent, received) bytes of sync and chunk frames so far, length prefixes included.
    pub fn bytes(&self) -> (u64, u64) {
        (
            self.counters.sent.load(Ordering::Relaxed),
            self.counters.received.load(Ordering::Relaxed),
        )
    }

    /// (sent, received) bytes of Raft frames so far (heartbeats and headers).
    pub fn raft_bytes(&self) -> (u64, u64) {
        (
            self.raft_counters.sent.load(Ordering::Relaxed),
            self.raft_counters.received.load(Ordering::Relaxed),
        )
    }
}
