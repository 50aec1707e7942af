//! The gate of QUIC connections. TCP connections are behind the share's key (the private
//! network's handshake, before anything else runs); QUIC cannot be wrapped that way, so a QUIC
//! connection is admitted by who it is instead: its TLS handshake proves the remote holds the
//! key of its PeerId, and [`QuicGate`] denies the connection, before any protocol runs on it,
//! unless that PeerId is a member. Strangers, joiners with an invite among them, come in over
//! TCP only (and this node dials QUIC addresses of members only, see [`dialable`]).

use std::collections::HashSet;
use std::convert::Infallible;
use std::task::{Context, Poll};

use libp2p::PeerId;
use libp2p::core::transport::PortUse;
use libp2p::core::{Endpoint, Multiaddr};
use libp2p::multiaddr::Protocol;
use libp2p::swarm::{
    ConnectionDenied, ConnectionId, FromSwarm, NetworkBehaviour, THandler, THandlerInEvent,
    THandlerOutEvent, ToSwarm, dummy,
};

/// True when a connection on `addr` runs on QUIC itself (not a circuit through a relay,
/// whatever the relay's own connection runs on).
pub(super) fn is_quic(addr: &Multiaddr) -> bool {
    addr.iter().any(|p| matches!(p, Protocol::QuicV1))
        && !addr.iter().any(|p| matches!(p, Protocol::P2pCircuit))
}

/// True when this node may dial `addr` of `peer`: any TCP address or circuit, and QUIC only to
/// members (a stranger's QUIC connection would be denied at the other end).
pub(super) fn dialable(members: &HashSet<PeerId>, peer: Option<PeerId>, addr: &Multiaddr) -> bool {
    !is_quic(addr) || peer.is_some_and(|p| members.contains(&p))
}

/// The QUIC listen address beside a TCP one (the same IP and port number, on UDP), if `tcp`
/// is a TCP address at an IP.
pub(super) fn quic_beside(tcp: &Multiaddr) -> Option<Multiaddr> {
    let mut it = tcp.iter();
    let ip = match it.next()? {
        p @ (Protocol::Ip4(_) | Protocol::Ip6(_)) => p,
        _ => return None,
    };
    let Protocol::Tcp(port) = it.next()? else {
        return None;
    };
    if it.next().is_some() {
        return None;
    }
    Some(
        Multiaddr::empty()
            .with(ip)
            .with(Protocol::Udp(port))
            .with(Protocol::QuicV1),
    )
}

/// Denies QUIC connections of peers that are not members.
#[derive(Default)]
pub struct QuicGate {
    members: HashSet<PeerId>,
}

impl QuicGate {
    pub fn set_members(&mut self, members: &HashSet<PeerId>) {
        self.members = members.clone();
    }

    fn check(&self, peer: PeerId, addr: &Multiaddr) -> Result<(), ConnectionDenied> {
        if is_quic(addr) && !self.members.contains(&peer) {
            return Err(ConnectionDenied::new(NotAMember));
        }
        Ok(())
    }
}

/// Why a QUIC connection was denied.
#[derive(Debug, thiserror::Error)]
#[error("a QUIC connection from a peer that is not a member of the share")]
pub struct NotAMember;

impl NetworkBehaviour for QuicGate {
    type ConnectionHandler = dummy::ConnectionHandler;
    type ToSwarm = Infallible;

    fn handle_established_inbound_connection(
        &mut self,
        _: ConnectionId,
        peer: PeerId,
        _local: &Multiaddr,
        remote: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        self.check(peer, remote)?;
        Ok(dummy::ConnectionHandler)
    }

    fn handle_established_outbound_connection(
        &mut self,
        _: ConnectionId,
        _: PeerId,
        _: &Multiaddr,
        _: Endpoint,
        _: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        // Dials are filtered where addresses are handed to the swarm ([`dialable`]): denying
        // here would end the whole dial, its TCP attempts too.
        Ok(dummy::ConnectionHandler)
    }

    fn on_swarm_event(&mut self, _: FromSwarm) {}

    fn on_connection_handler_event(
        &mut self,
        _: PeerId,
        _: ConnectionId,
        event: THandlerOutEvent<Self>,
    ) {
        match event {}
    }

    fn poll(&mut self, _: &mut Context<'_>) -> Poll<ToSwarm<Self::ToSwarm, THandlerInEvent<Self>>> {
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quic_is_told_from_tcp_and_circuits() {
        let q: Multiaddr = "/ip4/10.0.0.1/udp/7000/quic-v1".parse().unwrap();
        let t: Multiaddr = "/ip4/10.0.0.1/tcp/7000".parse().unwrap();
        let c: Multiaddr = "/ip4/10.0.0.1/udp/7000/quic-v1/p2p/12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN/p2p-circuit"
            .parse()
            .unwrap();
        assert!(is_quic(&q));
        assert!(!is_quic(&t));
        assert!(!is_quic(&c), "a circuit is admitted as a circuit");
        assert_eq!(quic_beside(&t), Some(q.clone()));
        assert_eq!(
            quic_beside(&"/ip6/::/tcp/0".parse().unwrap()),
            Some("/ip6/::/udp/0/quic-v1".parse().unwrap())
        );
        assert_eq!(
            quic_beside(&"/dns4/example.com/tcp/1".parse().unwrap()),
            None
        );
        let stranger = PeerId::random();
        let members = HashSet::new();
        assert!(!dialable(&members, Some(stranger), &q));
        assert!(dialable(&members, Some(stranger), &t));
        assert!(dialable(&HashSet::from([stranger]), Some(stranger), &q));
    }
}
