//! A connected member on a worse path than it could have, and the one mechanism that moves it
//! to the better one.
//!
//! Worse paths, worst first: **relayed only** (every byte through a third machine's link), and
//! **QUIC alone** (a daemon that dies resets its TCP connections at once, so the others notice
//! within milliseconds and a new leader is elected within a second; a QUIC connection only
//! times out). A member on either is dialled at its better addresses (direct ones; TCP ones)
//! every [`RETRY`] for as long as it stays so, not only when its connection opened: a hole
//! punch is tried once, and the TCP dial went once, when the connection opened, so a member
//! whose better path was down a moment (a firewall, a network coming up) stayed on the worse
//! one for good. Behind NATs and firewalls the dial fails and nothing changes.
//!
//! A better connection that opens closes the worse ones ([`Task::close_worse`]): relayed ones
//! once a direct one exists, QUIC ones once a TCP one does. Relayed connections are kept to
//! [`MAX_RELAYED_PER_PEER`], half the per-peer connection limit, so a direct one has room as
//! soon as the surplus's close goes through: two members that dialled each other through
//! relays at once, twice, held four relayed connections, the whole limit, and every direct
//! connection after that (the hole punch's, each direct redial) was refused at both ends. Of
//! the two ends, the one with the lower PeerId closes the surplus: each end orders the
//! connections by when it saw them open, so two that both closed their newest could close
//! every one between them.

use std::time::{Duration, Instant};

use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::swarm::{ConnectionId, DialError};
use libp2p::{Multiaddr, PeerId};

use super::gate::{dialable, is_quic};
use super::handle::PathKind;
use super::link::{Lacks, Link, MAX_RELAYED_PER_PEER, is_relayed};
use super::task::Task;

/// How often a member on a worse path is dialled at its better addresses.
const RETRY: Duration = Duration::from_secs(30);

/// What `links` (one member's open connections) lack, if anything.
fn lacks(links: &[Link]) -> Option<Lacks> {
    let direct = links.iter().filter(|l| l.kind != PathKind::Relayed);
    if links.is_empty() {
        None
    } else if direct.clone().next().is_none() {
        Some(Lacks::Direct)
    } else if direct.clone().all(|l| is_quic(&l.addr)) {
        Some(Lacks::Tcp)
    } else {
        None
    }
}

impl Task {
    /// Dials a connected member on a worse path at its better addresses, at most every
    /// [`RETRY`] (run at every tick and when a connection opens). A member found relayed only
    /// is dialled directly after a first wait, while the hole punch tries; one found on QUIC
    /// alone is dialled over TCP at once.
    pub(super) fn seek_better_path(&mut self, peer: PeerId, now: Instant) {
        let Some(lacks) = self.links.get(&peer).and_then(|l| lacks(l)) else {
            self.better_tried.remove(&peer);
            return;
        };
        match self.better_tried.get(&peer) {
            Some((l, at)) if *l == lacks && now.duration_since(*at) < RETRY => return,
            Some((l, _)) if *l == lacks => {}
            _ if lacks == Lacks::Direct => {
                self.better_tried.insert(peer, (lacks, now));
                return;
            }
            _ => {}
        }
        let addrs: Vec<Multiaddr> = self
            .book
            .get(&peer)
            .into_iter()
            .flatten()
            .filter(|a| !is_relayed(a) && dialable(&self.quic_members, Some(peer), a))
            .filter(|a| lacks == Lacks::Direct || !is_quic(a))
            .cloned()
            .collect();
        // None known yet (identify tells them a moment after a connection opens): looked for
        // again at the next tick, without a dial to count.
        if addrs.is_empty() {
            return;
        }
        // A TCP dial goes beside the member's open QUIC connection whatever else is under way;
        // a direct one waits for a hole punch's dials to end.
        let condition = match lacks {
            Lacks::Direct => PeerCondition::NotDialing,
            Lacks::Tcp => PeerCondition::Always,
        };
        let opts = DialOpts::peer_id(peer)
            .condition(condition)
            .addresses(addrs.clone())
            .build();
        match self.swarm.dial(opts) {
            // Another dial of it is under way: this one goes at a later tick.
            Err(DialError::DialPeerConditionFalse(_)) => {}
            Ok(()) => {
                tracing::debug!(%peer, ?lacks, ?addrs, "a member on a worse path; dialled it at its better addresses");
                self.better_tried.insert(peer, (lacks, now));
            }
            Err(e) => {
                tracing::debug!(%peer, ?lacks, "a member on a worse path; its better addresses could not be dialled: {e}");
                self.better_tried.insert(peer, (lacks, now));
            }
        }
    }

    /// A connection to `peer` opened: the worse ones a better one makes redundant are closed,
    /// whichever opened first (relayed ones once a direct one exists, QUIC ones once a TCP one
    /// does), and, when this node's PeerId is the lower of the two, relayed ones past
    /// [`MAX_RELAYED_PER_PEER`] (the newest: one closing is still counted until its close is
    /// reported, so it is closed again rather than an older one).
    pub(super) fn close_worse(&mut self, peer: PeerId) {
        let trims = *self.swarm.local_peer_id() < peer;
        let Some(links) = self.links.get(&peer) else {
            return;
        };
        let relayed = links.iter().filter(|l| l.kind == PathKind::Relayed);
        let direct = links.iter().filter(|l| l.kind != PathKind::Relayed);
        let has_tcp = direct.clone().any(|l| !is_quic(&l.addr));
        let close: Vec<(ConnectionId, &str)> = if direct.clone().next().is_some() {
            relayed
                .map(|l| (l.id, "a direct connection exists; closing the relayed one"))
                .chain(
                    direct
                        .filter(|l| has_tcp && is_quic(&l.addr))
                        .map(|l| (l.id, "a TCP connection exists; closing the QUIC one")),
                )
                .collect()
        } else if trims {
            relayed
                .skip(MAX_RELAYED_PER_PEER)
                .map(|l| {
                    (
                        l.id,
                        "more relayed connections than kept; closing the newest",
                    )
                })
                .collect()
        } else {
            Vec::new()
        };
        for (id, why) in close {
            tracing::debug!(%peer, "{why}");
            self.swarm.close_connection(id);
        }
    }
}
