//! Starting the network: its configuration ([`NetConfig`]) and errors ([`NetError`]), the
//! protocols and the limits on frames and connections, and [`spawn`], which builds the
//! transport (TCP, the private network, Noise, yamux; QUIC; circuits through a member's
//! relay),
//! the [`Behaviour`] and the
//! [`Task`] that owns the Swarm.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chorus_proto::Limits;
use futures::StreamExt;
use libp2p::core::muxing::StreamMuxerBox;
use libp2p::core::transport::upgrade::Version;
use libp2p::identity::Keypair;
use libp2p::request_response::{self, ProtocolSupport};
use libp2p::swarm::behaviour::toggle::Toggle;
use libp2p::{
    Multiaddr, PeerId, StreamProtocol, Transport, allow_block_list, autonat, connection_limits,
    dcutr, identify, mdns, noise, ping, relay, tcp, yamux,
};
use tokio::sync::mpsc;

use super::book::peer_of;
use super::codec::{Counters, FrameCodec};
use super::handle::{Inbound, NetError, NetHandle, SharedStats};
use super::lanes::{Lane, LaneCtx};
use super::link::MAX_ESTABLISHED_PER_PEER;
use super::task::{Behaviour, Task};
use super::throttle::Throttle;

const CHUNKS: StreamProtocol = StreamProtocol::new("/chorus/chunks/1");
const JOIN: StreamProtocol = StreamProtocol::new("/chorus/join/1");
/// A join request: an invite and a few addresses.
const MAX_JOIN_FRAME: usize = 4 << 10;
/// Connections still in their handshake (private-network key, Noise) at once: a stranger
/// without the key holding idle TCP connections is turned away past this, so it cannot use up
/// the daemon's file descriptors.
const MAX_PENDING_INCOMING: u32 = 64;
/// Established incoming connections at once (per peer: [`MAX_ESTABLISHED_PER_PEER`]).
const MAX_ESTABLISHED_INCOMING: u32 = 256;
/// A handshake that has not finished in this long is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// What arrived and waits for the node: past this, more is dropped (the sync protocol
/// retries what matters; a dropped Raft RPC is a timeout to its sender).
pub const INBOUND_QUEUE: usize = 1024;
/// Pings on every connection: the round trip `chorus peers` shows, and how a dead connection
/// (a NAT that forgot it, a machine that moved networks) is found out and closed within about
/// 25 s (see the task's ping handling).
const PING_EVERY: Duration = Duration::from_secs(15);
const PING_TIMEOUT: Duration = Duration::from_secs(10);
/// How often mDNS asks the LAN who is there.
const MDNS_QUERY_EVERY: Duration = Duration::from_secs(20);

/// How the network starts.
pub struct NetConfig {
    pub keypair: Keypair,
    /// The share secret: the private network's key derives from it ([`super::ShareKey`]),
    /// and vouchers are bound to it.
    pub secret: [u8; 32],
    /// Where the invites this node issues are kept (`None`: in memory only).
    pub invites: Option<std::path::PathBuf>,
    pub listen: Vec<Multiaddr>,
    /// Peers given by address (`--peer`, a join token's), each ending in `/p2p/<peer>`: allowed,
    /// dialled at start and redialled with a backoff while disconnected, as every member is.
    pub explicit_peers: Vec<Multiaddr>,
    /// Peers allowed to connect (the membership); more with [`NetHandle::allow`].
    pub allowed: Vec<PeerId>,
    /// mDNS discovery (a LAN; it ignores loopback).
    pub mdns: bool,
    pub limits: Limits,
    pub request_timeout: Duration,
    /// Sync and chunk bytes sent per second, all peers together; `None` for no limit.
    pub bandwidth_limit: Option<u64>,
    /// Serve as a relay for the members (see `reach`).
    pub relay: bool,
    /// What the relay carries per circuit at most before closing it.
    pub relay_circuit_bytes: u64,
    /// Listen on QUIC (UDP) beside every TCP address, at the same port number.
    pub quic: bool,
}

/// Starts the network task; returns its handle and the stream of what arrives.
pub fn spawn(cfg: NetConfig) -> Result<(NetHandle, mpsc::Receiver<Inbound>), NetError> {
    let counters = Arc::new(Counters::default());
    let raft_counters = Arc::new(Counters::default());
    let limits = cfg.limits;
    let timeout = cfg.request_timeout;
    let share_key = super::ShareKey::of_secret(&cfg.secret);
    let secret = cfg.secret;
    let local = cfg.keypair.public().to_peer_id();
    let mdns_on = cfg.mdns;
    let relay_on = cfg.relay;
    let relay_circuit_bytes = cfg.relay_circuit_bytes;
    let rr = |proto: StreamProtocol, max: usize, counters: &Arc<Counters>| {
        request_response::Behaviour::with_codec(
            FrameCodec::new(max, counters.clone()),
            [(proto, ProtocolSupport::Full)],
            request_response::Config::default().with_request_timeout(timeout),
        )
    };
    let keypair = cfg.keypair.clone();
    let invites = super::invite::InviteBook::open(cfg.invites);
    let mut swarm = libp2p::SwarmBuilder::with_existing_identity(cfg.keypair)
        .with_tokio()
        // QUIC: built always (a member may dial another's QUIC address); listened on when
        // `quic` is on. Admission is by membership, see `gate`.
        .with_quic()
        .with_other_transport(|key| {
            let noise = noise::Config::new(key)?;
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(
                tcp::tokio::Transport::new(tcp::Config::default().nodelay(true))
                    .and_then(move |socket, _| super::private_net::handshake(share_key, socket))
                    .upgrade(Version::V1Lazy)
                    .authenticate(noise)
                    .multiplex(yamux::Config::default())
                    .timeout(HANDSHAKE_TIMEOUT)
                    .map(|(peer, muxer), _| (peer, StreamMuxerBox::new(muxer))),
            )
        })
        .map_err(|e| NetError::Build(e.into()))?
        // Connections through a member's relay: Noise and yamux inside a circuit, which itself
        // runs on a connection behind the share's key.
        .with_relay_client(noise::Config::new, yamux::Config::default)
        .map_err(|e| NetError::Build(e.into()))?
        .with_behaviour(|key, relay_client| {
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
                gate: super::gate::QuicGate::default(),
                join: rr(JOIN, MAX_JOIN_FRAME, &raft_counters),
                chunks: rr(CHUNKS, limits.max_frame, &counters),
                lanes: libp2p_stream::Behaviour::new(),
                identify: identify::Behaviour::new(identify::Config::new(
                    "/chorus/1".into(),
                    key.public(),
                )),
                ping: ping::Behaviour::new(
                    ping::Config::new()
                        .with_interval(PING_EVERY)
                        .with_timeout(PING_TIMEOUT),
                ),
                mdns: Toggle::from(mdns),
                relay: Toggle::from(relay_on.then(|| {
                    relay::Behaviour::new(
                        key.public().to_peer_id(),
                        super::reach::relay_config(relay_circuit_bytes),
                    )
                })),
                relay_client,
                dcutr: dcutr::Behaviour::new(key.public().to_peer_id()),
                // It tests each address once (a new one when the NAT maps this node anew),
                // looking for untested ones every 5 s.
                autonat: autonat::v2::client::Behaviour::default(),
                autonat_server: autonat::v2::server::Behaviour::default(),
            })
        })
        .map_err(|e| NetError::Build(e.into()))?
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
        .build();
    for addr in cfg.listen {
        swarm
            .listen_on(addr.clone())
            .map_err(|e| NetError::Listen {
                addr: addr.clone(),
                detail: e.to_string(),
            })?;
        // QUIC on the same port number, over UDP. TCP alone still works, so a UDP port that
        // is taken costs only QUIC.
        if let Some(quic) = cfg.quic.then(|| super::gate::quic_beside(&addr)).flatten()
            && let Err(e) = swarm.listen_on(quic.clone())
        {
            tracing::warn!(addr = %quic, "cannot listen on QUIC ({e}); TCP only");
        }
    }
    let mut allowed: HashSet<PeerId> = cfg.allowed.into_iter().collect();
    let mut book: HashMap<PeerId, Vec<Multiaddr>> = HashMap::new();
    for a in &cfg.explicit_peers {
        if let Some(p) = peer_of(a) {
            allowed.insert(p);
            book.entry(p).or_default().push(a.clone());
        }
    }
    let explicit = cfg.explicit_peers;
    let (tx, rx) = mpsc::unbounded_channel();
    let (in_tx, in_rx) = mpsc::channel(INBOUND_QUEUE);
    let stats = SharedStats::default();
    let mut control = swarm.behaviour().lanes.new_control();
    // Lanes members open to this node, handed to the task, which checks who opened them.
    let (opened_tx, opened) = mpsc::channel(64);
    for lane in Lane::ALL {
        let mut incoming = control
            .accept(lane.protocol())
            .map_err(|e| NetError::Build(e.into()))?;
        let opened_tx = opened_tx.clone();
        tokio::spawn(async move {
            while let Some((peer, stream)) = incoming.next().await {
                if opened_tx.send((peer, lane, stream)).await.is_err() {
                    break;
                }
            }
        });
    }
    let lane_ctx = LaneCtx {
        inbound: in_tx,
        dropped: Arc::default(),
        limits,
        counters: counters.clone(),
        raft_counters: raft_counters.clone(),
        stats: stats.clone(),
        open_timeout: timeout,
    };
    let reach = super::handle::SharedReach::default();
    let (members_up, members_up_rx) = tokio::sync::watch::channel(Default::default());
    let task = Task {
        swarm,
        control,
        lane_ctx,
        lanes_out: HashMap::new(),
        lanes_in: HashMap::new(),
        opened,
        allowed,
        quic_members: HashSet::new(),
        reported: HashMap::new(),
        explicit,
        secret,
        strangers: HashMap::new(),
        joins: HashMap::new(),
        keypair,
        invites,
        book,
        throttle: Throttle::new(cfg.bandwidth_limit, Instant::now()),
        stats: stats.clone(),
        reach: reach.clone(),
        dialled_back: Vec::new(),
        better_tried: HashMap::new(),
        not_dialled_back: Vec::new(),
        member_dials: HashMap::new(),
        heard: HashMap::new(),
        lost: HashSet::new(),
        links: HashMap::new(),
        relays: HashMap::new(),
        relay_waits: HashMap::new(),
        punched: HashSet::new(),
        relayed_last: HashSet::new(),
        members_up,
        started: Instant::now(),
    };
    tokio::spawn(task.run(rx));
    Ok((
        NetHandle {
            tx,
            local,
            counters,
            raft_counters,
            stats,
            reach,
            members_up: members_up_rx,
            request_timeout: timeout,
        },
        in_rx,
    ))
}
