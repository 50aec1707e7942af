//! Reaching members behind NATs: every connection's path (direct, hole-punched or relayed),
//! relays run by the group, and which members are connected now.
//!
//! - **Relays run by the group.** Every member serves as a circuit relay v2 (unless configured
//!   `relay = false`). Its TCP listener is behind the share's private-network key and its QUIC
//!   one admits members only (`gate`), so only peers holding the share secret ever reach the
//!   relay; the limits in [`relay_config`] bound what one member can make it carry.
//! - **Reservations.** A node reserves a slot (listens on `/p2p-circuit`) at up to
//!   [`MAX_RELAYS`] members it reached by dialling them (asked again every few seconds while
//!   refused): a member it could dial is one others can likely dial too. A member behind a NAT that nobody can dial is then reachable at
//!   `<relay address>/p2p/<relay>/p2p-circuit/p2p/<member>`.
//! - **Dialling a member through the others.** A member that is not connected is dialled at
//!   its known addresses and through every connected member whose address is known
//!   ([`Task::circuit_addrs`]); the relay forwards only to a member holding a reservation.
//! - **Hole punching.** DCUtR upgrades a relayed connection to a direct one when both NATs allow
//!   it (each side tries the addresses other members observed it at, as identify reports them;
//!   dials leave from the listening port, so a NAT that keeps ports maps them back). Once a
//!   direct connection to a peer exists its relayed ones are closed, so sync and chunk traffic
//!   never goes through the relay when a direct path exists; a member still relayed is
//!   dialled directly now and then (`better_path`).
//! - **Knowing its own reachability.** AutoNAT v2 among the members: a node asks a member it
//!   dialled to dial it back, from a fresh port, at an address others observed it at; a
//!   success confirms that address as external. With who dialled it directly, this gives
//!   [`Reachability`] (`chorus status`).
//! - **One connection per member, as far as dialling goes.** A peer's addresses are dialled
//!   as one dial (`book`); relayed and QUIC connections give way to a direct TCP one, and
//!   only two relayed connections per member are kept (`better_path`).
//!   Duplicates that still open (two members dialling each other at once, AutoNAT's
//!   dial-backs) are left to libp2p's idle timeout (which spares one a lane landed on):
//!   closing one could lose a chunk message on its way.
//! - **Who is connected.** The set of members with at least one connection, published on a
//!   watch channel ([`super::NetHandle::links`]); the node campaigns only while it reaches a
//!   majority of the voters.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use libp2p::core::ConnectedPoint;
use libp2p::core::transport::ListenerId;
use libp2p::multiaddr::Protocol;
use libp2p::relay;
use libp2p::swarm::ConnectionId;
use libp2p::{Multiaddr, PeerId, autonat, dcutr};

use super::handle::{PathKind, PeerPath, Reachability, with_stats};
use super::link::{Link, Reservation, is_direct_off_loopback, is_relayed};
use super::task::Task;

/// Members this node holds a relay reservation at, at most.
pub const MAX_RELAYS: usize = 2;

/// How long one circuit lives at most.
const MAX_CIRCUIT_DURATION: Duration = Duration::from_secs(60 * 60);
/// Circuits through this node at once, and per member.
const MAX_CIRCUITS: usize = 32;
const MAX_CIRCUITS_PER_PEER: usize = 8;
/// Reservations held at this node, and per member.
const MAX_RESERVATIONS: usize = 64;
const MAX_RESERVATIONS_PER_PEER: usize = 2;

/// The relay server's limits. `max_circuit_bytes` of 0 would be unlimited; chorus always bounds
/// it.
/// The rate limits are libp2p's (per peer and per IP address: a burst of 30 reservations and
/// of 30 circuits, then one every two minutes).
pub fn relay_config(max_circuit_bytes: u64) -> relay::Config {
    relay::Config {
        max_reservations: MAX_RESERVATIONS,
        max_reservations_per_peer: MAX_RESERVATIONS_PER_PEER,
        reservation_duration: Duration::from_secs(60 * 60),
        max_circuits: MAX_CIRCUITS,
        max_circuits_per_peer: MAX_CIRCUITS_PER_PEER,
        max_circuit_duration: MAX_CIRCUIT_DURATION,
        max_circuit_bytes: max_circuit_bytes.max(1),
        ..relay::Config::default()
    }
}

/// How long after a refused or lost reservation it is asked for again, the first time; each
/// refusal in a row doubles it, up to [`RESERVE_RETRY_MAX`].
const RESERVE_RETRY: Duration = Duration::from_secs(5);
const RESERVE_RETRY_MAX: Duration = Duration::from_secs(600);

/// `addr` without a trailing `/p2p/...`.
fn without_peer(addr: &Multiaddr) -> Multiaddr {
    addr.iter()
        .filter(|p| !matches!(p, Protocol::P2p(_)))
        .collect()
}

impl Task {
    /// A connection opened: its path is recorded, a direct one replaces relayed ones, and a
    /// member dialled directly is asked for a relay reservation.
    pub(super) fn link_opened(&mut self, peer: PeerId, id: ConnectionId, at: &ConnectedPoint) {
        let (addr, dialed) = match at {
            ConnectedPoint::Dialer { address, .. } => (address.clone(), true),
            // An inbound circuit's remote address is only `/p2p/<peer>`: the relay it came
            // through is in the local one.
            ConnectedPoint::Listener { local_addr, .. } if at.is_relayed() => {
                (local_addr.clone().with(Protocol::P2p(peer)), false)
            }
            ConnectedPoint::Listener { send_back_addr, .. } => (send_back_addr.clone(), false),
        };
        let relayed = is_relayed(&addr) || at.is_relayed();
        let kind = if relayed {
            PathKind::Relayed
        } else if self.punched.remove(&id) {
            PathKind::HolePunched
        } else {
            PathKind::Direct
        };
        if kind == PathKind::Relayed && self.allowed.contains(&peer) {
            self.relayed_last.insert(peer);
        } else {
            self.relayed_last.remove(&peer);
        }
        self.links.entry(peer).or_default().push(Link {
            id,
            addr,
            kind,
            dialed: dialed && !relayed,
        });
        // A direct connection makes relayed ones redundant, whichever opened first.
        self.close_worse(peer);
        if !relayed {
            self.seek_better_path(peer, Instant::now());
        }
        self.publish_path(peer);
        self.publish_links();
        self.reserve_relays();
    }

    /// A connection closed.
    pub(super) fn link_closed(&mut self, peer: PeerId, id: ConnectionId) {
        if let Some(links) = self.links.get_mut(&peer) {
            links.retain(|l| l.id != id);
            if links.is_empty() {
                self.links.remove(&peer);
                // Asked again when it is connected again.
                self.relays.remove(&peer);
                // Its path is looked at afresh when it is.
                self.better_tried.remove(&peer);
            }
        }
        self.publish_path(peer);
        self.publish_links();
    }

    /// A listener closed: if it was a relay reservation, that relay is asked again after a
    /// wait that doubles with each failure in a row.
    pub(super) fn listener_closed(&mut self, listener: ListenerId, reason: Option<String>) {
        let Some((&peer, _)) = self
            .relays
            .iter()
            .find(|(_, r)| **r == Reservation::Listening(listener))
        else {
            return;
        };
        tracing::debug!(%peer, ?reason, "a relay reservation ended");
        self.reservation_failed(peer);
    }

    /// When to ask `peer` for a reservation again.
    fn reservation_failed(&mut self, peer: PeerId) {
        let wait = self
            .relay_waits
            .get(&peer)
            .map_or(RESERVE_RETRY, |w| (*w * 2).min(RESERVE_RETRY_MAX));
        self.relay_waits.insert(peer, wait);
        self.relays
            .insert(peer, Reservation::Failed(Instant::now() + wait));
    }

    /// Holds reservations at up to [`MAX_RELAYS`] members this node dialled directly (run at
    /// every tick and when connections change).
    pub(super) fn reserve_relays(&mut self) {
        let held = self
            .relays
            .values()
            .filter(|r| matches!(r, Reservation::Listening(_)))
            .count();
        if held >= MAX_RELAYS {
            return;
        }
        let candidates: Vec<(PeerId, Multiaddr)> = self
            .links
            .iter()
            .filter(|(p, _)| {
                self.allowed.contains(p)
                    && match self.relays.get(p) {
                        None => true,
                        Some(Reservation::Listening(_)) => false,
                        Some(Reservation::Failed(at)) => Instant::now() >= *at,
                    }
            })
            .filter_map(|(p, links)| {
                links
                    .iter()
                    .find(|l| l.dialed)
                    .map(|l| (*p, l.addr.clone()))
            })
            .take(MAX_RELAYS - held)
            .collect();
        for (peer, addr) in candidates {
            let circuit = without_peer(&addr)
                .with(Protocol::P2p(peer))
                .with(Protocol::P2pCircuit);
            match self.swarm.listen_on(circuit.clone()) {
                Ok(listener) => {
                    tracing::debug!(%peer, %circuit, "asking a member for a relay reservation");
                    self.relays.insert(peer, Reservation::Listening(listener));
                }
                Err(e) => {
                    tracing::debug!(%peer, "cannot listen through a member's relay: {e}");
                    self.reservation_failed(peer);
                }
            }
        }
    }

    /// Addresses that reach `target` through each connected member whose address this node
    /// dialled (the relay forwards only if `target` holds a reservation there).
    pub(super) fn circuit_addrs(&self, target: PeerId) -> Vec<Multiaddr> {
        self.links
            .iter()
            .filter(|(p, _)| **p != target && self.allowed.contains(p))
            .filter_map(|(p, links)| {
                let l = links.iter().find(|l| l.dialed)?;
                Some(
                    without_peer(&l.addr)
                        .with(Protocol::P2p(*p))
                        .with(Protocol::P2pCircuit)
                        .with(Protocol::P2p(target)),
                )
            })
            .collect()
    }

    /// A new listen address: a node serving as a relay takes it as an external address, for
    /// libp2p's relay offers its service only on a node that says it is reachable (members
    /// learn it through identify anyway).
    pub(super) fn listening_on(&mut self, addr: Multiaddr) {
        if self.swarm.behaviour().relay.is_enabled() && is_direct_off_loopback(&addr) {
            self.swarm.add_external_address(addr);
        }
    }

    /// libp2p's relay client confirms this node's circuit addresses as external; they are
    /// withdrawn at once: this node's relay would hand them out as its own addresses in its
    /// reservations, and a member reserving there would listen on a circuit through a circuit.
    /// Members find circuits to this node without them ([`Task::circuit_addrs`], identify).
    pub(super) fn external_confirmed(&mut self, addr: Multiaddr) {
        if is_relayed(&addr) {
            self.swarm.remove_external_address(&addr);
        }
    }

    /// The relay server's events. Its limits are enforced by libp2p; who may use it, here and
    /// by the share's key: only a peer holding the key reaches the relay at all; a circuit must
    /// lead to a member (else both ends that are not members are refused, which drops it); its
    /// source may be a joiner still in its grace to present an invite (a machine joining with
    /// the token of a member behind a NAT reaches it this way), which this node disconnects
    /// when the grace ends unless it has become a member.
    pub(super) fn relay_event(&mut self, e: relay::Event) {
        match e {
            relay::Event::CircuitReqAccepted {
                src_peer_id,
                dst_peer_id,
            } if !self.allowed.contains(&dst_peer_id)
                || !(self.allowed.contains(&src_peer_id)
                    || self.strangers.contains_key(&src_peer_id)) =>
            {
                tracing::warn!(from = %src_peer_id, to = %dst_peer_id, "a relayed circuit not to a member, or from a peer that is neither a member nor joining; refused");
                for p in [src_peer_id, dst_peer_id] {
                    if !self.allowed.contains(&p) {
                        self.refuse(p);
                    }
                }
            }
            relay::Event::ReservationReqAccepted { src_peer_id, .. } => {
                tracing::debug!(peer = %src_peer_id, "holding a relay reservation for a member");
            }
            relay::Event::CircuitReqAccepted {
                src_peer_id,
                dst_peer_id,
            } => {
                tracing::info!(from = %src_peer_id, to = %dst_peer_id, "relaying between two members");
            }
            relay::Event::CircuitClosed {
                src_peer_id,
                dst_peer_id,
                error,
            } => {
                // libp2p tells the byte limit only in the error's text.
                match error {
                    Some(e) if e.to_string().contains("circuit bytes") => tracing::info!(
                        from = %src_peer_id,
                        to = %dst_peer_id,
                        "a relayed circuit reached its byte limit (relay_circuit_mib); closed"
                    ),
                    error => {
                        tracing::debug!(from = %src_peer_id, to = %dst_peer_id, ?error, "a relayed circuit closed")
                    }
                }
            }
            other => tracing::debug!(?other, "relay"),
        }
    }

    /// The relay client's events.
    pub(super) fn relay_client_event(&mut self, e: relay::client::Event) {
        match e {
            relay::client::Event::ReservationReqAccepted { relay_peer_id, .. } => {
                self.relay_waits.remove(&relay_peer_id);
                tracing::info!(relay = %relay_peer_id, "reachable through a member's relay");
            }
            other => tracing::debug!(?other, "relay client"),
        }
    }

    /// A hole punch's outcome: the direct connection replaces the relayed one.
    pub(super) fn dcutr_event(&mut self, e: dcutr::Event) {
        match e.result {
            Ok(id) => {
                let peer = e.remote_peer_id;
                tracing::info!(%peer, "a hole punch made a direct connection");
                let mut found = false;
                if let Some(links) = self.links.get_mut(&peer) {
                    for l in links.iter_mut().filter(|l| l.id == id) {
                        l.kind = PathKind::HolePunched;
                        found = true;
                    }
                }
                if !found {
                    // The connection's event comes after this one.
                    self.punched.insert(id);
                }
                self.close_worse(peer);
                self.publish_path(peer);
            }
            Err(err) => {
                tracing::info!(peer = %e.remote_peer_id, "no hole punch; staying relayed: {err}");
            }
        }
    }

    /// The path `peer`'s stats show: the best open connection (direct over relayed), the
    /// newest of equals (an older one may be dead and not yet found out).
    fn publish_path(&mut self, peer: PeerId) {
        let rank = |k: PathKind| match k {
            PathKind::Direct | PathKind::HolePunched => 1,
            PathKind::Relayed => 0,
        };
        let path = self.links.get(&peer).and_then(|links| {
            links
                .iter()
                .rev()
                .max_by_key(|l| rank(l.kind))
                .map(|l| PeerPath {
                    kind: l.kind,
                    addr: l.addr.clone(),
                })
        });
        let connections = self.links.get(&peer).map_or(0, Vec::len);
        if self.allowed.contains(&peer) {
            with_stats(&self.stats, peer, |s| {
                s.path = path;
                s.connections = connections;
            });
        }
    }

    /// Publishes the members connected now, when that set changed.
    fn publish_links(&mut self) {
        self.publish_reach();
        let up: BTreeSet<PeerId> = self
            .links
            .keys()
            .filter(|p| self.allowed.contains(p))
            .copied()
            .collect();
        self.members_up.send_if_modified(|old| {
            if *old == up {
                false
            } else {
                *old = up;
                true
            }
        });
    }

    /// The allow list changed: who counts as a connected member may have too, and a joiner
    /// connected before it was a member has its path and connections published now.
    pub(super) fn links_allowed_changed(&mut self) {
        let connected: Vec<PeerId> = self.links.keys().copied().collect();
        for peer in connected {
            self.publish_path(peer);
        }
        self.publish_links();
        self.reserve_relays();
    }

    /// A member answered an AutoNAT probe: it dialled this node back at `tested_addr` (the
    /// address it sees this node at), or could not. A success also confirms the address as
    /// external (libp2p does that), so members learn it through identify.
    pub(super) fn autonat_event(&mut self, e: autonat::v2::client::Event) {
        let addr = e.tested_addr;
        tracing::debug!(server = %e.server, %addr, ok = e.result.is_ok(), "AutoNAT probe");
        let (to, from) = if e.result.is_ok() {
            (&mut self.dialled_back, &mut self.not_dialled_back)
        } else {
            (&mut self.not_dialled_back, &mut self.dialled_back)
        };
        from.retain(|a| *a != addr);
        if !to.contains(&addr) {
            // Bounded: one entry per address tested, the oldest dropped past 16.
            if to.len() >= 16 {
                to.remove(0);
            }
            to.push(addr);
        }
        self.publish_reach();
    }

    /// Whether members can dial this node: a dial-back confirmed an address; else a member
    /// dialled it directly (a connection it accepted that is neither relayed nor hole-punched);
    /// else every dial-back failed; else nobody knows yet.
    pub(super) fn publish_reach(&mut self) {
        let dialled_in = self.links.iter().any(|(p, links)| {
            self.allowed.contains(p)
                && links
                    .iter()
                    .any(|l| !l.dialed && l.kind == PathKind::Direct && !is_relayed(&l.addr))
        });
        let now = if !self.dialled_back.is_empty() {
            Reachability::Public(self.dialled_back.clone())
        } else if dialled_in {
            Reachability::Reachable
        } else if !self.not_dialled_back.is_empty() {
            Reachability::BehindNat
        } else {
            Reachability::Unknown
        };
        *self.reach.lock().unwrap_or_else(|e| e.into_inner()) = now;
    }
}
