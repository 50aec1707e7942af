//! The address book and redial: every address learnt per peer (libp2p forgets one after a
//! failed dial; the book does not), handed to the swarm again before a request to a peer that
//! is not connected; members that are not connected are redialled with a backoff at every
//! address known for them (a `--peer` address, those the leader recorded, those mDNS heard,
//! also before the peer was a member); a member whose last connection closed is reported gone
//! when the next dial fails.

use std::time::{Duration, Instant};

use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::{Multiaddr, PeerId};

use super::handle::Inbound;
use super::task::Task;

/// The wait before a member is dialled again after a first failed dial.
const FIRST_BACKOFF: Duration = Duration::from_millis(250);

/// How long dials wait at most for this node's listen addresses.
const LISTEN_WAIT: Duration = Duration::from_secs(1);

/// Longest wait between two dials of a member.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Addresses kept per peer, in the book and in what mDNS heard.
const MAX_ADDRS_PER_PEER: usize = 16;

/// Peers that are not members kept with what mDNS heard of them (anyone on the LAN can
/// announce names).
const MAX_HEARD_PEERS: usize = 64;

/// The peer an address leads to: its last `/p2p/` (a circuit, `.../p2p/RELAY/p2p-circuit/p2p/PEER`,
/// leads to PEER, not to the relay), if any.
pub fn peer_of(addr: &Multiaddr) -> Option<PeerId> {
    addr.iter()
        .filter_map(|p| match p {
            libp2p::multiaddr::Protocol::P2p(id) => Some(id),
            _ => None,
        })
        .last()
}

impl Task {
    /// Remembers an address of a peer (bounded per peer: the oldest goes first, but never an
    /// address the user gave with `--peer`, which may be the only one that works from here,
    /// a forwarded port, say) and tells the swarm.
    pub(super) fn learn(&mut self, peer: PeerId, addr: Multiaddr) {
        let explicit = &self.explicit;
        let known = self.book.entry(peer).or_default();
        if !known.contains(&addr) {
            if known.len() >= MAX_ADDRS_PER_PEER {
                match known.iter().position(|a| !explicit.contains(a)) {
                    Some(i) => {
                        known.remove(i);
                    }
                    None => return,
                }
            }
            known.push(addr.clone());
        }
        if super::gate::dialable(&self.quic_members, Some(peer), &addr) {
            self.swarm.add_peer_address(peer, addr);
        }
    }

    /// mDNS heard a peer that is not a member at `addr`: kept (bounded) for when it is one.
    pub(super) fn heard_on_lan(&mut self, peer: PeerId, addr: Multiaddr) {
        if !self.heard.contains_key(&peer) && self.heard.len() >= MAX_HEARD_PEERS {
            return;
        }
        let addrs = self.heard.entry(peer).or_default();
        if !addrs.contains(&addr) && addrs.len() < MAX_ADDRS_PER_PEER {
            addrs.push(addr);
        }
    }

    /// Before a request to a peer that is not connected: every address ever learnt for it,
    /// and, for a member, the circuits to it through the connected members' relays.
    pub(super) fn remind(&mut self, peer: PeerId) {
        if self.swarm.is_connected(&peer) {
            return;
        }
        if let Some(addrs) = self.book.get(&peer) {
            for a in addrs.clone() {
                if super::gate::dialable(&self.quic_members, Some(peer), &a) {
                    self.swarm.add_peer_address(peer, a);
                }
            }
        }
        if self.through_relays(peer) {
            for a in self.circuit_addrs(peer) {
                self.swarm.add_peer_address(peer, a);
            }
        }
    }

    /// Dials wait until this node listens on an address other than loopback (at most
    /// [`LISTEN_WAIT`]): a dial then leaves from the listening port (libp2p's port reuse), so
    /// what the dialled member observes is an address a NAT maps back to this node, which hole
    /// punching needs; a dial made before that leaves from a random port.
    fn may_dial(&self, now: Instant) -> bool {
        now.duration_since(self.started) >= LISTEN_WAIT
            || self
                .swarm
                .listeners()
                .any(super::link::is_direct_off_loopback)
    }

    /// A member is dialled through the other members' relays when no direct address is known
    /// for it, once a direct dial of it has failed, or when a relay is how it was last reached
    /// (a circuit closed at its byte limit, or with its relay, is replaced at once, not after a
    /// direct dial that cannot work has failed and Raft has heard the member is gone): a member
    /// on the same network as this one is reached directly rather than through a third machine.
    fn through_relays(&self, peer: PeerId) -> bool {
        self.allowed.contains(&peer)
            && (self.book.get(&peer).is_none_or(|a| a.is_empty())
                || self.relayed_last.contains(&peer)
                || self
                    .member_dials
                    .get(&peer)
                    .is_some_and(|(_, backoff)| *backoff > FIRST_BACKOFF))
    }

    /// Dials the members that are not connected and whose backoff is over (the `--peer` ones
    /// among them: every explicit peer is allowed), and now and then a connected member on a
    /// worse path (relayed only, QUIC alone) at its better addresses (`better_path`).
    pub(super) fn redial(&mut self, now: Instant) {
        if !self.may_dial(now) {
            return;
        }
        let local = *self.swarm.local_peer_id();
        let members: Vec<PeerId> = self.allowed.iter().copied().collect();
        for p in members {
            if p == local || self.swarm.is_connected(&p) {
                self.member_dials.remove(&p);
                if p != local {
                    self.seek_better_path(p, now);
                }
                continue;
            }
            let mut addrs = self.book.get(&p).cloned().unwrap_or_default();
            addrs.retain(|a| super::gate::dialable(&self.quic_members, Some(p), a));
            // Through the relays of the members connected now: a member behind a NAT is
            // reached this way when nobody can dial it.
            if self.through_relays(p) {
                addrs.extend(self.circuit_addrs(p));
            }
            if addrs.is_empty() {
                continue;
            }
            // A member whose connection just closed is dialled at its direct TCP addresses
            // alone when it has any: a machine whose daemon died refuses a TCP dial at once,
            // while a QUIC dial waits out its handshake timeout, and a dial fails (telling the
            // node the member is gone, for a failover within a second) only once every
            // address has.
            // That dial goes whatever other dial of the member is under way (a lane opening
            // dials every address known).
            let lost = self.lost.contains(&p);
            if lost {
                let tcp: Vec<Multiaddr> = addrs
                    .iter()
                    .filter(|a| !super::gate::is_quic(a) && !super::link::is_relayed(a))
                    .cloned()
                    .collect();
                if !tcp.is_empty() {
                    addrs = tcp;
                }
            }
            let (next, backoff) = self.member_dials.entry(p).or_insert((now, FIRST_BACKOFF));
            if *next > now {
                continue;
            }
            let condition = if lost {
                PeerCondition::Always
            } else {
                PeerCondition::DisconnectedAndNotDialing
            };
            let opts = DialOpts::peer_id(p)
                .condition(condition)
                .addresses(addrs.clone())
                .build();
            match self.swarm.dial(opts) {
                // Another dial of it is under way (a lane opening, mDNS): this one goes at the
                // next tick after that, its backoff kept, rather than wait a doubled backoff
                // behind a dial of fewer addresses.
                Err(libp2p::swarm::DialError::DialPeerConditionFalse(_)) => continue,
                _ => tracing::debug!(peer = %p, ?addrs, lost, "dialled a member"),
            }
            *next = now + *backoff;
            *backoff = (*backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// Dials `peer` at `addrs` (all at once, the first connection kept) unless it is
    /// connected or being dialled already. A dial under way to an address that no longer
    /// answers holds these back until it fails (the handshake timeout, 10 s); the members'
    /// redial then tries every address in the book.
    pub(super) fn dial_once(&mut self, peer: PeerId, addrs: Vec<Multiaddr>) {
        let opts = DialOpts::peer_id(peer)
            .condition(PeerCondition::DisconnectedAndNotDialing)
            .addresses(addrs)
            .build();
        let _ = self.swarm.dial(opts);
    }

    /// A member's last connection closed: it is dialled again at the next tick (within 250 ms),
    /// and if that dial fails the node hears the member is gone ([`Inbound::Gone`]), so a
    /// leader that died is replaced without waiting for its heartbeats to be missed.
    pub(super) fn member_closed(&mut self, peer: PeerId) {
        if !self.allowed.contains(&peer) || self.swarm.is_connected(&peer) {
            return;
        }
        if self.book.get(&peer).is_some_and(|a| !a.is_empty()) {
            self.lost.insert(peer);
        }
        tracing::debug!(%peer, lost = self.lost.contains(&peer), "a member's last connection closed");
    }

    /// A dial failed: a member lost a moment ago and still not connected is gone.
    pub(super) fn dial_failed(&mut self, peer: PeerId) {
        if self.lost.remove(&peer) && !self.swarm.is_connected(&peer) {
            tracing::debug!(%peer, "a member's connection closed and a redial failed");
            self.deliver(Inbound::Gone { peer });
        }
    }
}
