//! The task that owns the Swarm: [`Task`] holds all of the network's state, and its loop
//! serves the handle's commands, the swarm's events, the Raft replies the node gives, the
//! bandwidth limit and a tick for redial. Requests to a peer that is not connected dial it at
//! the addresses known for it.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use futures::StreamExt;
use libp2p::request_response::OutboundRequestId;
use libp2p::swarm::behaviour::toggle::Toggle;
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{
    Multiaddr, PeerId, Stream, Swarm, allow_block_list, autonat, connection_limits, dcutr,
    identify, mdns, ping, relay, request_response,
};
use tokio::sync::{mpsc, oneshot};

use super::codec::FrameCodec;
use super::handle::{Command, JoinAccepted, SharedStats, with_stats};
use super::invite::InviteBook;
use super::lanes::{Lane, LaneCtx, LaneSender, Out};
use super::throttle::Throttle;

/// The protocols the swarm runs.
#[derive(NetworkBehaviour)]
pub(super) struct Behaviour {
    pub(super) limits: connection_limits::Behaviour,
    pub(super) block: allow_block_list::Behaviour<allow_block_list::BlockedPeers>,
    /// QUIC connections of members only (see [`super::gate`]).
    pub(super) gate: super::gate::QuicGate,
    pub(super) join: request_response::Behaviour<FrameCodec>,
    pub(super) chunks: request_response::Behaviour<FrameCodec>,
    /// Long-lived streams to and from members (see [`super::lanes`]).
    pub(super) lanes: libp2p_stream::Behaviour,
    pub(super) identify: identify::Behaviour,
    pub(super) ping: ping::Behaviour,
    pub(super) mdns: Toggle<mdns::tokio::Behaviour>,
    /// The relay this node runs for the members (see [`super::reach`]).
    pub(super) relay: Toggle<relay::Behaviour>,
    pub(super) relay_client: relay::client::Behaviour,
    pub(super) dcutr: dcutr::Behaviour,
    /// Asks members to dial this node back at the addresses they see it at (AutoNAT v2)...
    pub(super) autonat: autonat::v2::client::Behaviour,
    /// ...and does the same for them.
    pub(super) autonat_server: autonat::v2::server::Behaviour,
}

/// The network's state, owned by the one task that runs the swarm.
pub(super) struct Task {
    pub(super) swarm: Swarm<Behaviour>,
    /// Opens lanes to members.
    pub(super) control: libp2p_stream::Control,
    /// What lanes share with the task: the node's inbound queue, the counters, the limits.
    pub(super) lane_ctx: LaneCtx,
    /// This node's lanes to members: what each is given to send.
    pub(super) lanes_out: HashMap<(PeerId, Lane), LaneSender>,
    /// The lanes members opened to this node, being served.
    pub(super) lanes_in: HashMap<(PeerId, Lane), tokio::task::AbortHandle>,
    /// Lanes members opened, not yet checked.
    pub(super) opened: mpsc::Receiver<(PeerId, Lane, Stream)>,
    pub(super) allowed: HashSet<PeerId>,
    /// The members QUIC connections are admitted from and dialled to (see `gate`).
    pub(super) quic_members: HashSet<PeerId>,
    /// Where each member last said (identify) it can be reached.
    pub(super) reported: HashMap<PeerId, Vec<Multiaddr>>,
    /// The `--peer` addresses: members dialled there like anywhere else, but never dropped
    /// from the book (the only address that works from here may be one of them).
    pub(super) explicit: Vec<Multiaddr>,
    pub(super) secret: [u8; 32],
    /// Connected peers that are not members, and until when they may present an invite.
    pub(super) strangers: HashMap<PeerId, Instant>,
    pub(super) joins: HashMap<OutboundRequestId, oneshot::Sender<Option<JoinAccepted>>>,
    /// This node's identity, which signs the vouchers it gives.
    pub(super) keypair: libp2p::identity::Keypair,
    /// The invites this node issued.
    pub(super) invites: InviteBook,
    /// Every address learnt per peer (libp2p forgets one after a failed dial; this does not):
    /// handed to the swarm again before each request to a peer that is not connected.
    pub(super) book: HashMap<PeerId, Vec<Multiaddr>>,
    /// Where mDNS heard peers that were not members then (bounded): a member's are put in the
    /// book when it is allowed, for mDNS names a peer once, when first heard.
    pub(super) heard: HashMap<PeerId, Vec<Multiaddr>>,
    /// Sync and chunk frames waiting for the bandwidth limit: (to, frame, on /chorus/chunks).
    pub(super) throttle: Throttle<(PeerId, Vec<u8>, bool)>,
    pub(super) stats: SharedStats,
    /// Whether members can dial this node, published for the handle.
    pub(super) reach: super::handle::SharedReach,
    /// Addresses of this node a member dialled back (AutoNAT), and those none could.
    pub(super) dialled_back: Vec<Multiaddr>,
    /// Members on a worse path than they could have (`better_path`): what they lack, and
    /// when they were first found so or last dialled at their better addresses.
    pub(super) better_tried: HashMap<PeerId, (super::link::Lacks, Instant)>,
    pub(super) not_dialled_back: Vec<Multiaddr>,
    /// Members not connected: when to dial them next, and the backoff. Every member is
    /// kept connected, so a joiner reaches the others before the node that let it in is gone.
    pub(super) member_dials: HashMap<PeerId, (Instant, Duration)>,
    /// Members whose last connection closed and that were not reached since: a failed dial
    /// to one is reported to the node as [`Inbound::Gone`].
    pub(super) lost: HashSet<PeerId>,
    /// Open connections per peer and how each goes (direct, hole-punched, relayed).
    pub(super) links: super::link::Links,
    /// Relay reservations asked of members.
    pub(super) relays: HashMap<PeerId, super::link::Reservation>,
    /// How long to wait before asking a member that refused again (doubling).
    pub(super) relay_waits: HashMap<PeerId, Duration>,
    /// Connections a hole punch made, reported before the connection itself.
    pub(super) punched: HashSet<libp2p::swarm::ConnectionId>,
    /// Members whose newest connection went through a relay (until a direct one opens).
    pub(super) relayed_last: HashSet<PeerId>,
    /// The members connected now, for the node.
    pub(super) members_up: tokio::sync::watch::Sender<std::collections::BTreeSet<PeerId>>,
    /// When the task started.
    pub(super) started: Instant,
}

impl Task {
    pub(super) async fn run(mut self, mut commands: mpsc::UnboundedReceiver<Command>) {
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
                Some((peer, lane, stream)) = self.opened.recv() => self.lane_opened(peer, lane, stream),
                _ = tick.tick() => self.tick(),
            }
        }
    }

    /// A member's connection was working just now.
    fn seen(&mut self, peer: PeerId) {
        if self.allowed.contains(&peer) {
            let now = super::invite::now_ms();
            with_stats(&self.stats, peer, |s| s.last_seen_ms = Some(now));
        }
    }

    /// Every 250 ms: strangers past their grace are refused, who is due is redialled, and
    /// relays are asked for reservations.
    fn tick(&mut self) {
        let now = Instant::now();
        self.expire_strangers(now);
        self.redial(now);
        self.reserve_relays();
    }

    fn command(&mut self, cmd: Command) {
        match cmd {
            Command::Send { to, frame, chunks } => {
                if !self.throttle.push(frame.len() + 4, (to, frame, chunks)) {
                    tracing::debug!(%to, "the bandwidth limit's queue is full; a frame was dropped (it is asked for again)");
                }
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
                self.send_on_lane(to, Lane::Raft, Out::Call { request, reply });
            }
            Command::Allow(peers) => self.allow(peers),
            Command::QuicMembers(peers) => {
                self.quic_members = peers.into_iter().collect();
                self.swarm
                    .behaviour_mut()
                    .gate
                    .set_members(&self.quic_members);
            }
            Command::Disallow(peers) => self.disallow(peers),
            Command::Join {
                to,
                code,
                voucher,
                addrs,
                reply,
            } => self.send_join(to, code, voucher, addrs, reply),
            Command::ClearInvites => {
                if let Err(e) = self.invites.clear() {
                    tracing::warn!("{e}");
                }
            }
            Command::Invite { ttl, uses, reply } => {
                let issued = self
                    .invites
                    .issue(ttl, uses, super::invite::now_ms())
                    .map_err(|e| e.to_string());
                let _ = reply.send(issued);
            }
            Command::AddAddress(peer, addr) => self.learn(peer, addr),
            Command::ListenAddrs(tx) => {
                // Where it listens, where members see it, and its circuits through members'
                // relays: what an invite carries.
                let mut addrs: Vec<Multiaddr> = self.swarm.listeners().cloned().collect();
                for a in self.swarm.external_addresses() {
                    if !addrs.contains(a) {
                        addrs.push(a.clone());
                    }
                }
                let _ = tx.send(addrs);
            }
            Command::Reported(tx) => {
                let mut all = self.reported.clone();
                all.retain(|p, _| self.allowed.contains(p));
                let mut own: Vec<Multiaddr> = self.swarm.listeners().cloned().collect();
                own.extend(self.swarm.external_addresses().cloned());
                all.insert(*self.swarm.local_peer_id(), own);
                let _ = tx.send(all);
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
            if chunks {
                self.swarm.behaviour_mut().chunks.send_request(&to, frame);
            } else {
                self.send_on_lane(to, Lane::Sync, Out::Message(frame));
            }
            with_stats(&self.stats, to, |s| s.sent += len);
        }
    }

    fn event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        match event {
            SwarmEvent::Behaviour(BehaviourEvent::Chunks(e)) => self.chunks_event(e),
            SwarmEvent::Behaviour(BehaviourEvent::Identify(identify::Event::Received {
                peer_id,
                info,
                ..
            })) if self.allowed.contains(&peer_id) => {
                self.reported.insert(peer_id, info.listen_addrs.clone());
                for a in info.listen_addrs {
                    self.learn(peer_id, a);
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Relay(e)) => self.relay_event(e),
            SwarmEvent::Behaviour(BehaviourEvent::RelayClient(e)) => self.relay_client_event(e),
            SwarmEvent::Behaviour(BehaviourEvent::Dcutr(e)) => self.dcutr_event(e),
            SwarmEvent::Behaviour(BehaviourEvent::Autonat(e)) => self.autonat_event(e),
            SwarmEvent::Behaviour(BehaviourEvent::AutonatServer(e)) => {
                tracing::debug!(client = %e.client, addr = %e.tested_addr, ok = e.result.is_ok(), "dialled a member back");
            }
            SwarmEvent::Behaviour(BehaviourEvent::Mdns(mdns::Event::Discovered(found))) => {
                // One dial per member found, at every address it announced.
                let mut per_peer: HashMap<PeerId, Vec<Multiaddr>> = HashMap::new();
                for (peer, addr) in found {
                    if self.allowed.contains(&peer) {
                        self.learn(peer, addr.clone());
                        if super::gate::dialable(&self.quic_members, Some(peer), &addr) {
                            per_peer.entry(peer).or_default().push(addr);
                        }
                    } else {
                        self.heard_on_lan(peer, addr);
                    }
                }
                for (peer, addrs) in per_peer {
                    self.dial_once(peer, addrs);
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Mdns(mdns::Event::Expired(gone))) => {
                for (peer, addr) in gone {
                    if let Some(addrs) = self.heard.get_mut(&peer) {
                        addrs.retain(|a| *a != addr);
                        if addrs.is_empty() {
                            self.heard.remove(&peer);
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
                let now = super::invite::now_ms();
                with_stats(&self.stats, peer, |s| {
                    s.rtt = Some(rtt);
                    s.last_seen_ms = Some(now);
                });
            }
            // A connection whose pings go unanswered is dead (a NAT that forgot it, a machine
            // that moved networks or vanished): libp2p keeps it open, and TCP would not notice
            // for many minutes, so requests would wait on it; it is closed, and the peer
            // dialled again.
            SwarmEvent::Behaviour(BehaviourEvent::Ping(ping::Event {
                peer,
                connection,
                result: Err(e),
            })) => {
                tracing::debug!(%peer, "a connection stopped answering pings ({e}); closing it");
                self.swarm.close_connection(connection);
            }
            SwarmEvent::ConnectionEstablished {
                peer_id,
                connection_id,
                endpoint,
                num_established,
                ..
            } => {
                tracing::debug!(
                    peer = %peer_id,
                    addr = %endpoint.get_remote_address(),
                    open = num_established.get(),
                    "a connection opened"
                );
                self.lost.remove(&peer_id);
                self.link_opened(peer_id, connection_id, &endpoint);
                self.admit_connection(peer_id);
                self.seen(peer_id);
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                connection_id,
                num_established,
                endpoint,
                cause,
                ..
            } => {
                tracing::debug!(
                    peer = %peer_id,
                    addr = %endpoint.get_remote_address(),
                    left = num_established,
                    cause = ?cause.map(|c| c.to_string()),
                    "a connection closed"
                );
                self.link_closed(peer_id, connection_id);
                self.seen(peer_id);
                if num_established == 0 {
                    self.member_closed(peer_id);
                }
            }
            SwarmEvent::OutgoingConnectionError {
                peer_id: Some(peer),
                error,
                ..
            } => {
                tracing::debug!(%peer, "a dial failed: {error}");
                self.dial_failed(peer);
            }
            SwarmEvent::NewListenAddr { address, .. } => self.listening_on(address),
            SwarmEvent::ExternalAddrConfirmed { address } => self.external_confirmed(address),
            SwarmEvent::NewExternalAddrCandidate { address } => {
                tracing::debug!(%address, "an address others may reach this node at (for hole punching)");
            }
            SwarmEvent::ListenerClosed {
                listener_id,
                reason,
                ..
            } => self.listener_closed(listener_id, reason.err().map(|e| e.to_string())),
            SwarmEvent::ListenerError { listener_id, error } => {
                self.listener_closed(listener_id, Some(error.to_string()))
            }
            _ => {}
        }
    }
}
