//! The task that owns the Swarm, and the handle the rest of the daemon talks to it through.
//!
//! Sync messages are one-way: a request carries one chorus-proto frame and the response is an
//! empty acknowledgement (the sync protocol answers with its own messages and retries what
//! matters). Raft RPCs are request and response. Requests to a peer that is not connected dial
//! it at the addresses known for it; explicit peers are redialled with a backoff.

use std::collections::{HashMap, HashSet};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use chorus_election::{RaftReply, RaftRpc, TransportError};
use chorus_proto::{Body, Limits, decode_frame, encode_frame};
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use libp2p::core::muxing::StreamMuxerBox;
use libp2p::core::transport::upgrade::Version;
use libp2p::identity::Keypair;
use libp2p::pnet::PnetConfig;
use libp2p::request_response::{self, OutboundRequestId, ProtocolSupport, ResponseChannel};
use libp2p::swarm::behaviour::toggle::Toggle;
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{
    Multiaddr, PeerId, StreamProtocol, Swarm, Transport, allow_block_list, connection_limits,
    identify, mdns, noise, ping, tcp, yamux,
};
use tokio::sync::{mpsc, oneshot};

use super::codec::{Counters, FrameCodec};
use super::throttle::Throttle;

const SYNC: StreamProtocol = StreamProtocol::new("/chorus/sync/1");
const CHUNKS: StreamProtocol = StreamProtocol::new("/chorus/chunks/1");
const RAFT: StreamProtocol = StreamProtocol::new("/chorus/raft/1");
const JOIN: StreamProtocol = StreamProtocol::new("/chorus/join/1");
/// A join request: an invite and a few addresses.
const MAX_JOIN_FRAME: usize = 4 << 10;
/// How long a peer that is not a member may stay connected without a valid invite.
const JOIN_GRACE: Duration = Duration::from_secs(10);
/// Raft frames are small (headers only); this bounds a hostile one.
const MAX_RAFT_FRAME: usize = 4 << 20;
/// Connections still in their handshake (private-network key, Noise) at once: a stranger
/// without the key holding idle TCP connections is turned away past this, so it cannot use up
/// the daemon's file descriptors.
const MAX_PENDING_INCOMING: u32 = 64;
/// Established incoming connections at once, and per peer.
const MAX_ESTABLISHED_INCOMING: u32 = 256;
const MAX_ESTABLISHED_PER_PEER: u32 = 4;
/// A handshake that has not finished in this long is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// What arrived and waits for the node: past this, more is dropped (the sync protocol
/// retries what matters; a dropped Raft RPC is a timeout to its sender).
pub const INBOUND_QUEUE: usize = 1024;
/// Raft RPCs being served at once.
const MAX_RAFT_IN_FLIGHT: usize = 256;
/// Longest wait between two dials of an explicit peer.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Why the network could not start or act.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("identity: {0}")]
    Identity(String),
    #[error("cannot build the network: {0}")]
    Build(String),
    #[error("cannot listen on {addr}: {detail}; is the port in use?")]
    Listen { addr: Multiaddr, detail: String },
    #[error("the network task has stopped")]
    Stopped,
}

/// How the network starts.
pub struct NetConfig {
    pub keypair: Keypair,
    /// The share secret: the private network's key derives from it ([`super::psk_of_secret`]),
    /// and invites are checked with it.
    pub secret: [u8; 32],
    pub listen: Vec<Multiaddr>,
    /// Peers dialled at start and redialled with a backoff while disconnected.
    pub explicit_peers: Vec<Multiaddr>,
    /// Peers allowed to connect (the membership); more with [`NetHandle::allow`].
    pub allowed: Vec<PeerId>,
    /// mDNS discovery (a LAN; it ignores loopback).
    pub mdns: bool,
    pub limits: Limits,
    pub request_timeout: Duration,
    /// Sync and chunk bytes sent per second, all peers together; `None` for no limit.
    pub bandwidth_limit: Option<u64>,
}

/// What this node exchanged with one peer, and how far away it is.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct PeerStats {
    /// Sync and chunk frames, length prefixes included.
    pub sent: u64,
    pub received: u64,
    /// The last ping's round trip.
    pub rtt: Option<Duration>,
}

type SharedStats = Arc<std::sync::Mutex<HashMap<PeerId, PeerStats>>>;

/// Updates the stats of `peer` (a poisoned lock still holds usable counters).
fn with_stats(stats: &SharedStats, peer: PeerId, f: impl FnOnce(&mut PeerStats)) {
    let mut map = stats.lock().unwrap_or_else(|e| e.into_inner());
    f(map.entry(peer).or_default());
}

/// A join request on the wire.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct JoinRequest {
    /// The invite, hex.
    invite: String,
    /// Where the joiner listens.
    addrs: Vec<String>,
}

/// The answer to a join: the members this node knows, so the joiner can present its invite
/// to whichever of them leads.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct JoinAnswer {
    members: Vec<String>,
}

/// Something that arrived from a peer.
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
}

enum Command {
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
    Join {
        to: PeerId,
        invite: [u8; 32],
        addrs: Vec<Multiaddr>,
        reply: oneshot::Sender<Option<Vec<Multiaddr>>>,
    },
    Disallow(Vec<PeerId>),
    AddAddress(PeerId, Multiaddr),
    ListenAddrs(oneshot::Sender<Vec<Multiaddr>>),
    Connected(oneshot::Sender<Vec<PeerId>>),
}

/// Talks to the network task. Cheap to clone.
#[derive(Clone)]
pub struct NetHandle {
    tx: mpsc::UnboundedSender<Command>,
    local: PeerId,
    counters: Arc<Counters>,
    raft_counters: Arc<Counters>,
    stats: SharedStats,
}

impl NetHandle {
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
        let request = serde_json::to_vec(rpc).map_err(|e| TransportError(e.to_string()))?;
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Command::Raft {
                to,
                addrs,
                request,
                reply,
            })
            .map_err(|_| TransportError("the network task has stopped".into()))?;
        let bytes = rx
            .await
            .map_err(|_| TransportError("the network task has stopped".into()))?
            .map_err(TransportError)?;
        serde_json::from_slice(&bytes).map_err(|e| TransportError(format!("bad raft reply: {e}")))
    }

    /// Presents `invite` to `to`. `Some(members)` when it was accepted: the addresses
    /// (`.../p2p/<id>`) of the members `to` knows, for reaching the leader; `None` when refused
    /// or unreachable.
    pub async fn join(
        &self,
        to: PeerId,
        invite: [u8; 32],
        addrs: Vec<Multiaddr>,
    ) -> Result<Option<Vec<Multiaddr>>, NetError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Command::Join {
                to,
                invite,
                addrs,
                reply,
            })
            .map_err(|_| NetError::Stopped)?;
        rx.await.map_err(|_| NetError::Stopped)
    }

    /// Lets these peers connect (they joined the membership).
    pub fn allow(&self, peers: Vec<PeerId>) {
        let _ = self.tx.send(Command::Allow(peers));
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

#[derive(NetworkBehaviour)]
struct Behaviour {
    limits: connection_limits::Behaviour,
    block: allow_block_list::Behaviour<allow_block_list::BlockedPeers>,
    join: request_response::Behaviour<FrameCodec>,
    sync: request_response::Behaviour<FrameCodec>,
    chunks: request_response::Behaviour<FrameCodec>,
    raft: request_response::Behaviour<FrameCodec>,
    identify: identify::Behaviour,
    ping: ping::Behaviour,
    mdns: Toggle<mdns::tokio::Behaviour>,
}

type PendingReply =
    Pin<Box<dyn futures::Future<Output = (ResponseChannel<Vec<u8>>, Option<Vec<u8>>)> + Send>>;

/// The peer id an address ends with (`/p2p/...`), if any.
fn peer_of(addr: &Multiaddr) -> Option<PeerId> {
    addr.iter().find_map(|p| match p {
        libp2p::multiaddr::Protocol::P2p(id) => Some(id),
        _ => None,
    })
}

/// An explicit peer and when to dial it next (addresses without `/p2p/` are dialled with the
/// backoff whether or not their peer is connected).
struct Redial {
    addr: Multiaddr,
    next: Instant,
    backoff: Duration,
}

struct Task {
    swarm: Swarm<Behaviour>,
    inbound: mpsc::Sender<Inbound>,
    /// What was dropped because the node was behind.
    inbound_dropped: u64,
    limits: Limits,
    raft_calls: HashMap<OutboundRequestId, oneshot::Sender<Result<Vec<u8>, String>>>,
    replies: FuturesUnordered<PendingReply>,
    allowed: HashSet<PeerId>,
    redial: Vec<Redial>,
    secret: [u8; 32],
    /// Connected peers that are not members, and until when they may present an invite.
    strangers: HashMap<PeerId, Instant>,
    joins: HashMap<OutboundRequestId, oneshot::Sender<Option<Vec<Multiaddr>>>>,
    /// Every address learnt per peer (libp2p forgets one after a failed dial; this does not):
    /// handed to the swarm again before each request to a peer that is not connected.
    book: HashMap<PeerId, Vec<Multiaddr>>,
    /// Sync and chunk frames waiting for the bandwidth limit: (to, frame, on /chorus/chunks).
    throttle: Throttle<(PeerId, Vec<u8>, bool)>,
    stats: SharedStats,
    /// Members not connected: when to dial them next, and the backoff. Every member is
    /// kept connected, so a joiner reaches the others before the node that let it in is gone.
    member_dials: HashMap<PeerId, (Instant, Duration)>,
}

/// How often mDNS asks the LAN who is there.
const MDNS_QUERY_EVERY: Duration = Duration::from_secs(20);

/// Starts the network task; returns its handle and the stream of what arrives.
pub fn spawn(cfg: NetConfig) -> Result<(NetHandle, mpsc::Receiver<Inbound>), NetError> {
    let counters = Arc::new(Counters::default());
    let raft_counters = Arc::new(Counters::default());
    let limits = cfg.limits;
    let timeout = cfg.request_timeout;
    let psk = super::psk_of_secret(&cfg.secret);
    let secret = cfg.secret;
    let local = cfg.keypair.public().to_peer_id();
    let mdns_on = cfg.mdns;
    let rr = |proto: StreamProtocol, max: usize, counters: &Arc<Counters>| {
        request_response::Behaviour::with_codec(
            FrameCodec::new(max, counters.clone()),
            [(proto, ProtocolSupport::Full)],
            request_response::Config::default().with_request_timeout(timeout),
        )
    };
    let build = |e: &dyn std::fmt::Display| NetError::Build(e.to_string());
    let mut swarm = libp2p::SwarmBuilder::with_existing_identity(cfg.keypair)
        .with_tokio()
        .with_other_transport(|key| {
            let noise = noise::Config::new(key)?;
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(
                tcp::tokio::Transport::new(tcp::Config::default().nodelay(true))
                    .and_then(move |socket, _| PnetConfig::new(psk).handshake(socket))
                    .upgrade(Version::V1Lazy)
                    .authenticate(noise)
                    .multiplex(yamux::Config::default())
                    .timeout(HANDSHAKE_TIMEOUT)
                    .map(|(peer, muxer), _| (peer, StreamMuxerBox::new(muxer))),
            )
        })
        .map_err(|e| build(&e))?
        .with_behaviour(|key| {
            let mdns = if mdns_on {
                // Ask again every 20 s rather than libp2p's 5 min: a node that missed the first
                // answers (started first, or a lost packet) finds the others soon.
                Some(mdns::tokio::Behaviour::new(
                    mdns::Config {
                        query_interval: MDNS_QUERY_EVERY,
                        ..mdns::Config::default()
                    },
                    key.public().to_peer_id(),
                )?)
            } else {
                None
            };
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(Behaviour {
                limits: connection_limits::Behaviour::new(
                    connection_limits::ConnectionLimits::default()
                        .with_max_pending_incoming(Some(MAX_PENDING_INCOMING))
                        .with_max_established_incoming(Some(MAX_ESTABLISHED_INCOMING))
                        .with_max_established_per_peer(Some(MAX_ESTABLISHED_PER_PEER)),
                ),
                block: allow_block_list::Behaviour::default(),
                join: rr(JOIN, MAX_JOIN_FRAME, &raft_counters),
                sync: rr(SYNC, limits.max_frame, &counters),
                chunks: rr(CHUNKS, limits.max_frame, &counters),
                raft: rr(RAFT, MAX_RAFT_FRAME, &raft_counters),
                identify: identify::Behaviour::new(identify::Config::new(
                    "/chorus/1".into(),
                    key.public(),
                )),
                ping: ping::Behaviour::new(ping::Config::new()),
                mdns: Toggle::from(mdns),
            })
        })
        .map_err(|e| build(&e))?
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
        .build();
    for addr in cfg.listen {
        swarm
            .listen_on(addr.clone())
            .map_err(|e| NetError::Listen {
                addr,
                detail: e.to_string(),
            })?;
    }
    let allowed: HashSet<PeerId> = cfg.allowed.into_iter().collect();
    let mut book: HashMap<PeerId, Vec<Multiaddr>> = HashMap::new();
    for a in &cfg.explicit_peers {
        if let Some(p) = peer_of(a) {
            book.entry(p).or_default().push(a.clone());
        }
    }
    let now = Instant::now();
    let redial = cfg
        .explicit_peers
        .into_iter()
        .map(|addr| Redial {
            addr,
            next: now,
            backoff: Duration::from_millis(250),
        })
        .collect();
    let (tx, rx) = mpsc::unbounded_channel();
    let (in_tx, in_rx) = mpsc::channel(INBOUND_QUEUE);
    let stats = SharedStats::default();
    let task = Task {
        swarm,
        inbound: in_tx,
        inbound_dropped: 0,
        limits,
        raft_calls: HashMap::new(),
        replies: FuturesUnordered::new(),
        allowed,
        redial,
        secret,
        strangers: HashMap::new(),
        joins: HashMap::new(),
        book,
        throttle: Throttle::new(cfg.bandwidth_limit, Instant::now()),
        stats: stats.clone(),
        member_dials: HashMap::new(),
    };
    tokio::spawn(task.run(rx));
    Ok((
        NetHandle {
            tx,
            local,
            counters,
            raft_counters,
            stats,
        },
        in_rx,
    ))
}

impl Task {
    async fn run(mut self, mut commands: mpsc::UnboundedReceiver<Command>) {
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        loop {
            let throttled = self.throttle.next_at().map(tokio::time::Instant::from_std);
            tokio::select! {
                () = async { if let Some(at) = throttled { tokio::time::sleep_until(at).await } }, if throttled.is_some() => self.pump(),
                cmd = commands.recv() => match cmd {
                    Some(cmd) => self.command(cmd),
                    None => break,
                },
                event = self.swarm.select_next_some() => self.event(event),
                Some((channel, reply)) = self.replies.next(), if !self.replies.is_empty() => {
                    // A dropped reply (the node stopped) closes the stream without an answer.
                    if let Some(bytes) = reply {
                        let _ = self.swarm.behaviour_mut().raft.send_response(channel, bytes);
                    }
                }
                _ = tick.tick() => self.redial(),
            }
        }
    }

    fn command(&mut self, cmd: Command) {
        match cmd {
            Command::Send { to, frame, chunks } => {
                self.throttle.push(frame.len() + 4, (to, frame, chunks));
                self.pump();
            }
            Command::Raft {
                to,
                addrs,
                request,
                reply,
            } => {
                for a in addrs {
                    self.learn(to, a);
                }
                self.remind(to);
                let id = self.swarm.behaviour_mut().raft.send_request(&to, request);
                self.raft_calls.insert(id, reply);
            }
            Command::Allow(peers) => {
                for p in peers {
                    self.swarm.behaviour_mut().block.unblock_peer(p);
                    self.strangers.remove(&p);
                    self.allowed.insert(p);
                }
            }
            Command::Disallow(peers) => {
                for p in peers {
                    self.allowed.remove(&p);
                    self.refuse(p);
                }
            }
            Command::Join {
                to,
                invite,
                addrs,
                reply,
            } => {
                let req = JoinRequest {
                    invite: hex::encode(invite),
                    addrs: addrs.iter().map(|a| a.to_string()).collect(),
                };
                match serde_json::to_vec(&req) {
                    Ok(bytes) => {
                        let id = self.swarm.behaviour_mut().join.send_request(&to, bytes);
                        self.joins.insert(id, reply);
                    }
                    Err(_) => {
                        let _ = reply.send(None);
                    }
                }
            }
            Command::AddAddress(peer, addr) => self.learn(peer, addr),
            Command::ListenAddrs(tx) => {
                let _ = tx.send(self.swarm.listeners().cloned().collect());
            }
            Command::Connected(tx) => {
                let _ = tx.send(self.swarm.connected_peers().copied().collect());
            }
        }
    }

    /// Sends the sync and chunk frames the bandwidth limit lets go now.
    fn pump(&mut self) {
        for (to, frame, chunks) in self.throttle.ready(Instant::now()) {
            self.remind(to);
            let len = frame.len() as u64 + 4;
            let b = self.swarm.behaviour_mut();
            if chunks {
                b.chunks.send_request(&to, frame);
            } else {
                b.sync.send_request(&to, frame);
            }
            with_stats(&self.stats, to, |s| s.sent += len);
        }
    }

    /// Remembers an address of a peer (bounded per peer) and tells the swarm.
    fn learn(&mut self, peer: PeerId, addr: Multiaddr) {
        let known = self.book.entry(peer).or_default();
        if !known.contains(&addr) {
            if known.len() >= 16 {
                known.remove(0);
            }
            known.push(addr.clone());
        }
        self.swarm.add_peer_address(peer, addr);
    }

    /// Before a request to a peer that is not connected: every address ever learnt for it.
    fn remind(&mut self, peer: PeerId) {
        if self.swarm.is_connected(&peer) {
            return;
        }
        if let Some(addrs) = self.book.get(&peer) {
            for a in addrs.clone() {
                self.swarm.add_peer_address(peer, a);
            }
        }
    }

    /// Disconnects and blocks a peer that may not talk to this node.
    fn refuse(&mut self, peer: PeerId) {
        self.strangers.remove(&peer);
        self.swarm.behaviour_mut().block.block_peer(peer);
        let _ = self.swarm.disconnect_peer_id(peer);
    }

    fn redial(&mut self) {
        let now = Instant::now();
        let expired: Vec<PeerId> = self
            .strangers
            .iter()
            .filter(|(_, until)| **until <= now)
            .map(|(p, _)| *p)
            .collect();
        for p in expired {
            tracing::info!(%p, "disconnected a peer that is not a member and showed no invite");
            self.refuse(p);
        }
        for r in &mut self.redial {
            if r.next > now {
                continue;
            }
            let connected = peer_of(&r.addr).is_some_and(|p| self.swarm.is_connected(&p));
            if !connected {
                let _ = self.swarm.dial(r.addr.clone());
            }
            r.next = now + r.backoff;
            r.backoff = (r.backoff * 2).min(MAX_BACKOFF);
        }
        let local = *self.swarm.local_peer_id();
        let members: Vec<PeerId> = self.allowed.iter().copied().collect();
        for p in members {
            if p == local || self.swarm.is_connected(&p) {
                self.member_dials.remove(&p);
                continue;
            }
            let Some(addrs) = self.book.get(&p).filter(|a| !a.is_empty()) else {
                continue;
            };
            let (next, backoff) = self
                .member_dials
                .entry(p)
                .or_insert((now, Duration::from_millis(250)));
            if *next > now {
                continue;
            }
            let opts = libp2p::swarm::dial_opts::DialOpts::peer_id(p)
                .addresses(addrs.clone())
                .build();
            let _ = self.swarm.dial(opts);
            *next = now + *backoff;
            *backoff = (*backoff * 2).min(MAX_BACKOFF);
        }
    }

    fn event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        match event {
            SwarmEvent::Behaviour(BehaviourEvent::Sync(e))
            | SwarmEvent::Behaviour(BehaviourEvent::Chunks(e)) => self.sync_event(e),
            SwarmEvent::Behaviour(BehaviourEvent::Raft(e)) => self.raft_event(e),
            SwarmEvent::Behaviour(BehaviourEvent::Identify(identify::Event::Received {
                peer_id,
                info,
                ..
            })) if self.allowed.contains(&peer_id) => {
                for a in info.listen_addrs {
                    self.learn(peer_id, a);
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Mdns(mdns::Event::Discovered(found))) => {
                for (peer, addr) in found {
                    if self.allowed.contains(&peer) {
                        self.learn(peer, addr.clone());
                        if !self.swarm.is_connected(&peer) {
                            let _ = self.swarm.dial(addr);
                        }
                    }
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Join(e)) => self.join_event(e),
            SwarmEvent::Behaviour(BehaviourEvent::Ping(ping::Event {
                peer,
                result: Ok(rtt),
                ..
            })) if self.allowed.contains(&peer) => {
                with_stats(&self.stats, peer, |s| s.rtt = Some(rtt));
            }
            SwarmEvent::ConnectionEstablished { peer_id, .. } => {
                if !self.allowed.contains(&peer_id) {
                    self.strangers
                        .entry(peer_id)
                        .or_insert_with(|| Instant::now() + JOIN_GRACE);
                }
                // A connected explicit peer is not redialled until it goes away again.
                for r in &mut self.redial {
                    if peer_of(&r.addr) == Some(peer_id) {
                        r.backoff = Duration::from_millis(250);
                        r.next = Instant::now() + MAX_BACKOFF;
                    }
                }
            }
            SwarmEvent::ConnectionClosed { peer_id, .. } => {
                for r in &mut self.redial {
                    if peer_of(&r.addr) == Some(peer_id) {
                        r.next = Instant::now();
                    }
                }
            }
            _ => {}
        }
    }

    /// True when `peer` may send requests; otherwise it is refused: disconnected, blocked, and
    /// its request left unanswered (dropping the channel closes the stream).
    /// Hands what arrived to the node; false when its queue is full (then it is dropped) or
    /// the node stopped.
    fn deliver(&mut self, what: Inbound) -> bool {
        match self.inbound.try_send(what) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.inbound_dropped += 1;
                if self.inbound_dropped.is_power_of_two() {
                    tracing::warn!(
                        dropped = self.inbound_dropped,
                        "the node is behind; messages from peers were dropped"
                    );
                }
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }

    fn authorize(&mut self, peer: PeerId) -> bool {
        if self.allowed.contains(&peer) {
            return true;
        }
        self.refuse(peer);
        false
    }

    /// Sync and chunk requests: acknowledged at once (the protocol answers with messages of
    /// its own), decoded and handed to the node.
    fn sync_event(&mut self, e: request_response::Event<Vec<u8>, Vec<u8>>) {
        match Rr::from(e) {
            Rr::Request {
                peer,
                request,
                channel,
            } => {
                if !self.authorize(peer) {
                    return;
                }
                let len = request.len() as u64 + 4;
                with_stats(&self.stats, peer, |s| s.received += len);
                let b = self.swarm.behaviour_mut();
                if b.sync.send_response(channel, Vec::new()).is_err() {
                    tracing::debug!(%peer, "a sync request's stream closed before the ack");
                }
                match decode_frame(&request, &self.limits) {
                    Ok(env) => {
                        if let Some(body) = env.body {
                            self.deliver(Inbound::Sync { from: peer, body });
                        }
                    }
                    Err(e) => tracing::warn!(%peer, "dropped a sync frame: {e}"),
                }
            }
            Rr::Failed { peer, error, .. } => {
                tracing::debug!(%peer, "a sync message was not delivered: {error}");
            }
            Rr::Response { .. } | Rr::Other => {}
        }
    }

    /// Join requests (from anyone, checked against the invite) and the answers to ours.
    fn join_event(&mut self, e: request_response::Event<Vec<u8>, Vec<u8>>) {
        match Rr::from(e) {
            Rr::Request {
                peer,
                request,
                channel,
            } => {
                let req: Option<JoinRequest> = serde_json::from_slice(&request).ok();
                let valid = req.as_ref().is_some_and(|r| {
                    hex::decode(&r.invite)
                        .is_ok_and(|inv| super::check_invite(&self.secret, &peer, &inv))
                });
                let Some(req) = req.filter(|_| valid) else {
                    tracing::info!(%peer, "refused a join without a valid invite");
                    self.refuse(peer);
                    return;
                };
                self.allowed.insert(peer);
                self.strangers.remove(&peer);
                let addrs: Vec<Multiaddr> = req
                    .addrs
                    .iter()
                    .take(8)
                    .filter_map(|a| a.parse().ok())
                    .collect();
                for a in &addrs {
                    self.learn(peer, a.clone());
                }
                let members: Vec<String> = self
                    .allowed
                    .iter()
                    .filter(|p| **p != peer)
                    .flat_map(|p| {
                        self.book.get(p).into_iter().flatten().map(move |a| {
                            if peer_of(a).is_some() {
                                a.to_string()
                            } else {
                                format!("{a}/p2p/{p}")
                            }
                        })
                    })
                    .take(64)
                    .collect();
                let answer = serde_json::to_vec(&JoinAnswer { members }).unwrap_or_default();
                let _ = self
                    .swarm
                    .behaviour_mut()
                    .join
                    .send_response(channel, answer);
                self.deliver(Inbound::Join { from: peer, addrs });
            }
            Rr::Response {
                request_id,
                response,
            } => {
                if let Some(tx) = self.joins.remove(&request_id) {
                    let members = serde_json::from_slice::<JoinAnswer>(&response)
                        .ok()
                        .map(|a| {
                            a.members
                                .iter()
                                .take(64)
                                .filter_map(|m| m.parse().ok())
                                .collect()
                        });
                    let _ = tx.send(members);
                }
            }
            Rr::Failed { request_id, .. } => {
                if let Some(tx) = self.joins.remove(&request_id) {
                    let _ = tx.send(None);
                }
            }
            Rr::Other => {}
        }
    }

    /// Raft RPCs from members, answered when the node replies; and the answers to ours.
    fn raft_event(&mut self, e: request_response::Event<Vec<u8>, Vec<u8>>) {
        match Rr::from(e) {
            Rr::Request {
                peer,
                request,
                channel,
            } => {
                if !self.authorize(peer) {
                    return;
                }
                if self.replies.len() >= MAX_RAFT_IN_FLIGHT {
                    // Dropped unanswered: the sender times out, as on a lost frame.
                    tracing::debug!(%peer, "too many raft rpcs in flight; one was dropped");
                    return;
                }
                let rpc: RaftRpc = match serde_json::from_slice(&request) {
                    Ok(r) => r,
                    Err(e) => {
                        tracing::warn!(%peer, "dropped a raft frame: {e}");
                        return;
                    }
                };
                let (reply, rx) = oneshot::channel();
                if !self.deliver(Inbound::Raft {
                    from: peer,
                    rpc: Box::new(rpc),
                    reply,
                }) {
                    return;
                }
                self.replies.push(Box::pin(async move {
                    let bytes = rx
                        .await
                        .ok()
                        .and_then(|r: RaftReply| serde_json::to_vec(&r).ok());
                    (channel, bytes)
                }));
            }
            Rr::Response {
                request_id,
                response,
            } => {
                if let Some(tx) = self.raft_calls.remove(&request_id) {
                    let _ = tx.send(Ok(response));
                }
            }
            Rr::Failed {
                request_id, error, ..
            } => {
                if let Some(tx) = self.raft_calls.remove(&request_id) {
                    let _ = tx.send(Err(error));
                }
            }
            Rr::Other => {}
        }
    }
}

/// A request-response event reduced to what the handlers act on.
enum Rr {
    Request {
        peer: PeerId,
        request: Vec<u8>,
        channel: ResponseChannel<Vec<u8>>,
    },
    Response {
        request_id: OutboundRequestId,
        response: Vec<u8>,
    },
    Failed {
        peer: PeerId,
        request_id: OutboundRequestId,
        error: String,
    },
    Other,
}

impl From<request_response::Event<Vec<u8>, Vec<u8>>> for Rr {
    fn from(e: request_response::Event<Vec<u8>, Vec<u8>>) -> Self {
        use request_response::{Event, Message};
        match e {
            Event::Message {
                peer,
                message:
                    Message::Request {
                        request, channel, ..
                    },
                ..
            } => Rr::Request {
                peer,
                request,
                channel,
            },
            Event::Message {
                message:
                    Message::Response {
                        request_id,
                        response,
                    },
                ..
            } => Rr::Response {
                request_id,
                response,
            },
            Event::OutboundFailure {
                peer,
                request_id,
                error,
                ..
            } => Rr::Failed {
                peer,
                request_id,
                error: error.to_string(),
            },
            _ => Rr::Other,
        }
    }
}
