//! A hostile member on the lanes (the long-lived streams that carry sync messages and Raft
//! calls): a libp2p node with the share's key, in A's membership, that speaks the lane
//! protocols byte by byte. Frames that declare a gigabyte, frames of a kind the lane does not
//! carry, unknown tags and a flood of lanes each close the offending lane (or the older lane)
//! and nothing else: A keeps serving a well-formed lane from the same peer and an honest member
//! B throughout. Waits are liveness bounds, never speed assertions.

mod support;

use std::time::Duration;

use chorus::net::{Inbound, NetConfig, NetHandle, ShareKey, private_net, spawn};
use chorus_proto::{Body, Stored, VersionId, encode_frame};
use futures::{AsyncReadExt, AsyncWriteExt, StreamExt};
use libp2p::core::muxing::StreamMuxerBox;
use libp2p::core::transport::upgrade::Version;
use libp2p::identity::Keypair;
use libp2p::swarm::NetworkBehaviour;
use libp2p::{Multiaddr, PeerId, Stream, StreamProtocol, Transport, noise, ping, tcp, yamux};
use tokio::sync::mpsc::Receiver;

const LIVENESS: Duration = Duration::from_secs(20);
const SYNC: StreamProtocol = StreamProtocol::new("/chorus/sync/2");
const RAFT: StreamProtocol = StreamProtocol::new("/chorus/raft/5");

async fn member(
    secret: [u8; 32],
    keypair: Keypair,
    allowed: Vec<PeerId>,
) -> (NetHandle, Receiver<Inbound>, Multiaddr) {
    let (net, inbound) = spawn(NetConfig {
        relay: false,
        ..support::net::loopback(secret, keypair, allowed)
    })
    .unwrap();
    let addr = tokio::time::timeout(LIVENESS, async {
        loop {
            if let Some(a) = net.listen_addrs().await.unwrap().into_iter().next() {
                return a;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the member listens");
    (net, inbound, addr)
}

#[derive(NetworkBehaviour)]
struct Behaviour {
    ping: ping::Behaviour,
    lanes: libp2p_stream::Behaviour,
}

/// The hostile node: TCP, the share's key, Noise, yamux, and raw streams.
fn hostile(secret: [u8; 32], keypair: Keypair, dial: Multiaddr) -> libp2p_stream::Control {
    let share_key = ShareKey::of_secret(&secret);
    let mut swarm = libp2p::SwarmBuilder::with_existing_identity(keypair)
        .with_tokio()
        .with_other_transport(|key| {
            let noise = noise::Config::new(key)?;
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(
                tcp::tokio::Transport::new(tcp::Config::default())
                    .and_then(move |socket, _| private_net::handshake(share_key, socket))
                    .upgrade(Version::V1Lazy)
                    .authenticate(noise)
                    .multiplex(yamux::Config::default())
                    .map(|(peer, muxer), _| (peer, StreamMuxerBox::new(muxer))),
            )
        })
        .unwrap()
        .with_behaviour(|_| Behaviour {
            // Members ping each other; a connection without ping is closed as dead.
            ping: ping::Behaviour::default(),
            lanes: libp2p_stream::Behaviour::new(),
        })
        .unwrap()
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
        .build();
    let control = swarm.behaviour().lanes.new_control();
    swarm.dial(dial).unwrap();
    tokio::spawn(async move {
        loop {
            swarm.select_next_some().await;
        }
    });
    control
}

fn frame(tag: u8, id: Option<u64>, bytes: &[u8]) -> Vec<u8> {
    let len = 1 + id.map_or(0, |_| 8) + bytes.len();
    let mut out = (len as u32).to_be_bytes().to_vec();
    out.push(tag);
    if let Some(id) = id {
        out.extend_from_slice(&id.to_be_bytes());
    }
    out.extend_from_slice(bytes);
    out
}

fn stored(n: u8) -> Body {
    Body::Stored(Stored {
        version: Some(VersionId::from_bytes([n; 32])),
    })
}

async fn open(control: &mut libp2p_stream::Control, to: PeerId, p: StreamProtocol) -> Stream {
    tokio::time::timeout(LIVENESS, async {
        loop {
            match control.open_stream(to, p.clone()).await {
                Ok(s) => return s,
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    })
    .await
    .expect("a lane opens")
}

/// True once A closed the lane (its end of the stream reads as ended or broken).
async fn closed_by_a(s: &mut Stream) -> bool {
    let mut buf = [0u8; 64];
    tokio::time::timeout(LIVENESS, async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return true,
                Ok(_) => {}
            }
        }
    })
    .await
    .unwrap_or(false)
}

/// The next sync message A's node is handed, skipping anything else.
async fn next_sync(inbound: &mut Receiver<Inbound>) -> (PeerId, Body) {
    tokio::time::timeout(LIVENESS, async {
        loop {
            if let Some(Inbound::Sync { from, body }) = inbound.recv().await {
                return (from, body);
            }
        }
    })
    .await
    .expect("a sync message arrives")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_members_frames_close_its_lane_and_nothing_else() {
    let secret = [3u8; 32];
    let [ka, kb, kh] = std::array::from_fn(|_| Keypair::generate_ed25519());
    let (pa, pb, ph) = (
        ka.public().to_peer_id(),
        kb.public().to_peer_id(),
        kh.public().to_peer_id(),
    );
    let (_a, mut a_in, a_addr) = member(secret, ka, vec![pb, ph]).await;
    let (b, _b_in, _) = member(secret, kb, vec![pa]).await;
    b.add_address(pa, a_addr.clone());
    let mut h = hostile(secret, kh, a_addr);

    // A well-formed message on a sync lane arrives, from the hostile member.
    let mut lane = open(&mut h, pa, SYNC).await;
    lane.write_all(&frame(0, None, &encode_frame(stored(1))))
        .await
        .unwrap();
    lane.flush().await.unwrap();
    assert_eq!(next_sync(&mut a_in).await, (ph, stored(1)));
    // A message that does not decode is dropped, and the lane goes on.
    lane.write_all(&frame(0, None, b"\x00\xff not an envelope"))
        .await
        .unwrap();
    lane.write_all(&frame(0, None, &encode_frame(stored(4))))
        .await
        .unwrap();
    lane.flush().await.unwrap();
    assert_eq!(next_sync(&mut a_in).await, (ph, stored(4)));

    // Each of these closes the lane it arrives on, without A allocating what it declares.
    let gigabyte = (1u32 << 30).to_be_bytes().to_vec();
    let cases: [(&str, StreamProtocol, Vec<u8>); 5] = [
        ("a frame declaring 1 GiB", SYNC, gigabyte.clone()),
        (
            "a Raft call on a sync lane",
            SYNC,
            frame(1, Some(1), b"vote"),
        ),
        ("a reply nobody asked for", RAFT, frame(2, Some(9), b"ok")),
        ("an unknown tag", RAFT, frame(7, Some(1), b"")),
        ("a 1 GiB Raft frame", RAFT, gigabyte),
    ];
    for (what, p, bytes) in cases {
        let mut s = open(&mut h, pa, p).await;
        s.write_all(&bytes).await.unwrap();
        s.flush().await.unwrap();
        assert!(closed_by_a(&mut s).await, "{what}: A closes the lane");
    }

    // A Raft call that does not decode is dropped unanswered; the lane stays open.
    let mut raft = open(&mut h, pa, RAFT).await;
    raft.write_all(&frame(1, Some(1), b"\xff\xff\xff not postcard"))
        .await
        .unwrap();
    raft.flush().await.unwrap();
    let mut buf = [0u8; 16];
    let answered = tokio::time::timeout(Duration::from_millis(500), raft.read(&mut buf)).await;
    assert!(answered.is_err(), "no answer and no close: {answered:?}");

    // A flood of lanes: each new one replaces the peer's older one, so it holds one of each.
    let mut older = open(&mut h, pa, SYNC).await;
    for _ in 0..50 {
        let mut newer = open(&mut h, pa, SYNC).await;
        assert!(closed_by_a(&mut older).await, "the older lane is closed");
        newer.write_all(&[]).await.unwrap();
        older = newer;
    }
    older
        .write_all(&frame(0, None, &encode_frame(stored(2))))
        .await
        .unwrap();
    older.flush().await.unwrap();
    assert_eq!(next_sync(&mut a_in).await, (ph, stored(2)));

    // The honest member still gets through.
    b.send(pa, stored(3));
    assert_eq!(next_sync(&mut a_in).await, (pb, stored(3)));
}
