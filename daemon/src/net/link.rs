//! What the network task keeps per connection and per relay: [`Link`] (one open connection
//! and how it goes), [`Reservation`] (a relay slot asked of a member), [`Lacks`] (the better
//! path a connected member lacks) and how many connections one peer may hold. A leaf: the
//! task holds these, and `reach` and `better_path` (which add to the task) fill them.

use std::collections::HashMap;
use std::time::Instant;

use libp2p::core::transport::ListenerId;
use libp2p::multiaddr::Protocol;
use libp2p::swarm::ConnectionId;
use libp2p::{Multiaddr, PeerId};

use super::handle::PathKind;

/// Established connections per peer, of any kind (libp2p's connection limits).
pub(super) const MAX_ESTABLISHED_PER_PEER: u32 = 4;

/// Relayed connections kept per member: half of [`MAX_ESTABLISHED_PER_PEER`], so a direct
/// connection always has room.
pub(super) const MAX_RELAYED_PER_PEER: usize = MAX_ESTABLISHED_PER_PEER as usize / 2;

/// The better path a connected member lacks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Lacks {
    /// Reached only through relays.
    Direct,
    /// Reached directly over QUIC alone.
    Tcp,
}

/// One open connection to a peer.
#[derive(Debug, Clone)]
pub(super) struct Link {
    pub(super) id: ConnectionId,
    /// The peer's address on it (for a relayed one, the circuit address).
    pub(super) addr: Multiaddr,
    pub(super) kind: PathKind,
    /// This node dialled it (not relayed): the address is one this node can reach.
    pub(super) dialed: bool,
}

/// Every open connection, by peer.
pub(super) type Links = HashMap<PeerId, Vec<Link>>;

/// A relay reservation at a member.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Reservation {
    /// Asked for or held, on this listener.
    Listening(ListenerId),
    /// Refused or closed: asked again when the instant has come (a relay offers its service
    /// only once it has an address to offer, moments after it starts; one that never does, or
    /// whose owner turned it off, is asked ever less often).
    Failed(Instant),
}

/// True when `addr` goes through a relay.
pub(super) fn is_relayed(addr: &Multiaddr) -> bool {
    addr.iter().any(|p| matches!(p, Protocol::P2pCircuit))
}

/// True for a direct address on an interface other than loopback (public or private): one
/// a peer elsewhere might reach, and one a dial leaves from with the listening port.
pub(super) fn is_direct_off_loopback(addr: &Multiaddr) -> bool {
    !is_relayed(addr)
        && addr.iter().any(|p| match p {
            Protocol::Ip4(ip) => !ip.is_loopback() && !ip.is_unspecified(),
            Protocol::Ip6(ip) => !ip.is_loopback() && !ip.is_unspecified(),
            _ => false,
        })
}
