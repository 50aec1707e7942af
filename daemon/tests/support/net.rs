//! The network alone, on loopback, for the tests that drive `chorus::net` directly (members
//! and hostile peers without a daemon around them).

use std::time::Duration;

use chorus::net::NetConfig;
use chorus_proto::Limits;
use libp2p::PeerId;
use libp2p::identity::Keypair;

/// A node listening on a free loopback TCP port, with the daemon's default limits, relaying for
/// the members, without mDNS or QUIC; tests change what they need with struct update syntax.
pub fn loopback(secret: [u8; 32], keypair: Keypair, allowed: Vec<PeerId>) -> NetConfig {
    NetConfig {
        keypair,
        secret,
        invites: None,
        listen: vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()],
        explicit_peers: vec![],
        allowed,
        mdns: false,
        limits: Limits::default(),
        request_timeout: Duration::from_secs(5),
        bandwidth_limit: None,
        relay: true,
        relay_circuit_bytes: 1 << 30,
        quic: false,
    }
}
