//! Relayed connections never crowd out a direct one. Two members that dial each other through
//! a relay at once, and again while those circuits open, hold four relayed connections: the
//! whole per-peer connection limit. Every direct connection after that (the hole punch's, each
//! direct redial) was refused at both ends and they stayed relayed for good (seen in CI as two
//! followers relayed through the leader 100 s after their direct path came up).
//!
//! Here the honest node B (the daemon's network) holds a reservation at a relay R; a peer M in
//! B's membership opens four circuits to B through R, then dials B directly. B must keep no
//! more relayed connections than its bound and take the direct one. (Of two ends, the one
//! with the lower PeerId closes the surplus; B is made the lower.) R and M are plain libp2p
//! nodes with the share's key (R serves as a relay with a loopback address it calls external,
//! which the daemon's own relay would not do on loopback). Waits are liveness bounds, never
//! speed assertions.

mod support;

use std::time::Duration;

use chorus::net::{NetHandle, PathKind, ShareKey, private_net, spawn};
use futures::StreamExt;
use libp2p::core::muxing::StreamMuxerBox;
use libp2p::core::transport::upgrade::Version;
use libp2p::identity::Keypair;
use libp2p::multiaddr::Protocol;
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::swarm::{NetworkBehaviour, Swarm, SwarmEvent};
use libp2p::{Multiaddr, PeerId, Transport, noise, ping, relay, tcp, yamux};

const LIVENESS: Duration = Duration::from_secs(20);

/// TCP behind the share's key, Noise, yamux: what the daemon's TCP connections are.
fn share_tcp(
    secret: [u8; 32],
    key: &Keypair,
) -> libp2p::core::transport::Boxed<(PeerId, StreamMuxerBox)> {
    let share_key = ShareKey::of_secret(&secret);
    tcp::tokio::Transport::new(tcp::Config::default())
        .and_then(move |socket, _| private_net::handshake(share_key, socket))
        .upgrade(Version::V1Lazy)
        .authenticate(noise::Config::new(key).unwrap())
        .multiplex(yamux::Config::default())
        .map(|(peer, muxer), _| (peer, StreamMuxerBox::new(muxer)))
        .boxed()
}

#[derive(NetworkBehaviour)]
struct RelayBehaviour {
    ping: ping::Behaviour,
    relay: relay::Behaviour,
}

/// R: a relay on loopback, its listen address confirmed as external (libp2p's relay serves
/// only then). Returns its address, `/p2p/` included.
async fn relay_node(secret: [u8; 32]) -> Multiaddr {
    let keypair = Keypair::generate_ed25519();
    let id = keypair.public().to_peer_id();
    let mut swarm: Swarm<RelayBehaviour> = libp2p::SwarmBuilder::with_existing_identity(keypair)
        .with_tokio()
        .with_other_transport(|key| {
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(share_tcp(secret, key))
        })
        .unwrap()
        .with_behaviour(|key| RelayBehaviour {
            ping: ping::Behaviour::default(),
            // Circuits from one peer are not what is tested here: R allows more than B keeps.
            relay: relay::Behaviour::new(
                key.public().to_peer_id(),
                relay::Config {
                    max_circuits_per_peer: 16,
                    ..relay::Config::default()
                },
            ),
        })
        .unwrap()
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
        .build();
    swarm
        .listen_on("/ip4/127.0.0.1/tcp/0".parse().unwrap())
        .unwrap();
    let addr = loop {
        if let SwarmEvent::NewListenAddr { address, .. } = swarm.select_next_some().await {
            break address;
        }
    };
    swarm.add_external_address(addr.clone());
    tokio::spawn(async move {
        loop {
            swarm.select_next_some().await;
        }
    });
    addr.with(Protocol::P2p(id))
}

#[derive(NetworkBehaviour)]
struct MemberBehaviour {
    ping: ping::Behaviour,
    relay_client: relay::client::Behaviour,
}

enum Dial {
    /// Through R to B, however many connections to B exist.
    Circuit,
    /// B at its own address.
    Direct,
}

/// M: a member that dials B as it is told, through R's relay or directly; `opened` counts
/// the connections to B that opened at M.
fn member(
    secret: [u8; 32],
    keypair: Keypair,
    relay: Multiaddr,
    b: PeerId,
    b_addr: Multiaddr,
    opened: std::sync::Arc<std::sync::atomic::AtomicUsize>,
) -> tokio::sync::mpsc::UnboundedSender<Dial> {
    let mut swarm: Swarm<MemberBehaviour> = libp2p::SwarmBuilder::with_existing_identity(keypair)
        .with_tokio()
        .with_other_transport(|key| {
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(share_tcp(secret, key))
        })
        .unwrap()
        .with_relay_client(noise::Config::new, yamux::Config::default)
        .unwrap()
        .with_behaviour(|_, relay_client| MemberBehaviour {
            ping: ping::Behaviour::default(),
            relay_client,
        })
        .unwrap()
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
        .build();
    let circuit = relay
        .clone()
        .with(Protocol::P2pCircuit)
        .with(Protocol::P2p(b));
    swarm.dial(relay).unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                e = swarm.select_next_some() => {
                    if let SwarmEvent::ConnectionEstablished { peer_id, .. } = e
                        && peer_id == b
                    {
                        opened.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    }
                }
                cmd = rx.recv() => {
                    let addr = match cmd {
                        Some(Dial::Circuit) => circuit.clone(),
                        Some(Dial::Direct) => b_addr.clone(),
                        None => return,
                    };
                    let _ = swarm.dial(
                        DialOpts::peer_id(b)
                            .condition(PeerCondition::Always)
                            .addresses(vec![addr])
                            .build(),
                    );
                }
            }
        }
    });
    tx
}

/// How B reaches `peer` now and over how many connections.
fn seen(b: &NetHandle, peer: PeerId) -> (Option<PathKind>, usize) {
    b.peer_stats().get(&peer).map_or((None, 0), |s| {
        (s.path.as_ref().map(|p| p.kind), s.connections)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_reached_over_many_relayed_connections_still_connects_directly() {
    let secret = [7u8; 32];
    let relay = relay_node(secret).await;
    let relay_id = match relay.iter().last() {
        Some(Protocol::P2p(id)) => id,
        _ => unreachable!("the relay's address ends in its /p2p/"),
    };
    // B's PeerId the lower of the two: B is the end that closes the surplus.
    let (b_key, m_key) = loop {
        let (x, y) = (Keypair::generate_ed25519(), Keypair::generate_ed25519());
        if x.public().to_peer_id() < y.public().to_peer_id() {
            break (x, y);
        }
    };
    let m = m_key.public().to_peer_id();
    let b_id = b_key.public().to_peer_id();
    let (b, _inbound) = spawn(chorus::net::NetConfig {
        explicit_peers: vec![relay.clone()],
        ..support::net::loopback(secret, b_key, vec![relay_id, m])
    })
    .unwrap();
    let b_addr = tokio::time::timeout(LIVENESS, async {
        loop {
            if let Some(a) = b.listen_addrs().await.unwrap().into_iter().next() {
                return a.with(Protocol::P2p(b_id));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("B listens");

    // B dials R (a member named by its address) and holds a reservation there: M's circuit
    // dials fail until it does.
    let opened = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let dial = member(secret, m_key, relay, b_id, b_addr, opened.clone());
    tokio::time::timeout(LIVENESS, async {
        while seen(&b, m).0 != Some(PathKind::Relayed) {
            dial.send(Dial::Circuit).unwrap();
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    })
    .await
    .expect("M reaches B through R's relay");

    // Four more relayed connections opened from M's side (two members crossing dials twice),
    // each relayed by R: M sees every one open.
    let before = opened.load(std::sync::atomic::Ordering::SeqCst);
    for _ in 0..4 {
        dial.send(Dial::Circuit).unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    tokio::time::timeout(LIVENESS, async {
        while opened.load(std::sync::atomic::Ordering::SeqCst) < before + 4 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("R relays M's four circuits to B");
    // B's closes of the surplus are reported a moment after they open (a liveness bound).
    let _ = tokio::time::timeout(LIVENESS, async {
        while seen(&b, m).1 > 2 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    let (path, connections) = seen(&b, m);
    assert_eq!(path, Some(PathKind::Relayed), "M still reaches B through R");
    assert!(
        connections <= 2,
        "B keeps at most two relayed connections to one member, so a direct one has room: {connections}"
    );

    // A direct dial now has room at B, and replaces the relayed connections.
    tokio::time::timeout(LIVENESS, async {
        while seen(&b, m).0 != Some(PathKind::Direct) {
            dial.send(Dial::Direct).unwrap();
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    })
    .await
    .unwrap_or_else(|_| {
        panic!(
            "B never took M's direct connection; B reaches M {:?}",
            seen(&b, m)
        )
    });
}
