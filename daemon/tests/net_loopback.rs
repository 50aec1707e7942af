//! The libp2p network on loopback: members exchange sync messages and run Raft over it; a node
//! with the wrong share key, or with the right key but outside the membership, gets nothing
//! through. Waits are liveness bounds (a stuck network fails the test), never speed assertions.

mod support;

use std::sync::Arc;
use std::time::Duration;

use chorus::net::{Inbound, NetConfig, NetHandle, RaftTransport, spawn};
use chorus_election::{ElectionConfig, ElectionNode, Member, Proposal, node_id_of};
use chorus_proto::{Body, Stored, VersionId};
use libp2p::identity::Keypair;
use libp2p::{Multiaddr, PeerId};
use tokio::sync::mpsc::Receiver;

const LIVENESS: Duration = Duration::from_secs(20);

struct Node {
    net: NetHandle,
    inbound: Receiver<Inbound>,
    peer: PeerId,
    /// Its TCP address.
    addr: Multiaddr,
    /// Its QUIC address.
    quic: Multiaddr,
}

async fn node(secret: [u8; 32], keypair: Keypair, allowed: Vec<PeerId>) -> Node {
    let peer = keypair.public().to_peer_id();
    let (net, inbound) = spawn(NetConfig {
        quic: true,
        ..support::net::loopback(secret, keypair, allowed)
    })
    .unwrap();
    let (addr, quic) = tokio::time::timeout(LIVENESS, async {
        loop {
            let addrs = net.listen_addrs().await.unwrap();
            let quic = addrs.iter().find(|a| a.to_string().contains("/quic-v1"));
            let tcp = addrs.iter().find(|a| a.to_string().contains("/tcp/"));
            if let (Some(t), Some(q)) = (tcp, quic) {
                return (t.clone(), q.clone());
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the node listens on TCP and QUIC");
    Node {
        net,
        inbound,
        peer,
        addr,
        quic,
    }
}

fn stored(n: u8) -> Body {
    Body::Stored(Stored {
        version: Some(VersionId::from_bytes([n; 32])),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_talk_and_outsiders_get_nothing_through() {
    let secret = [7u8; 32];
    let [ka, kb, kc, kd] = std::array::from_fn(|_| Keypair::generate_ed25519());
    let (pa, pb) = (ka.public().to_peer_id(), kb.public().to_peer_id());
    let mut a = node(secret, ka, vec![pb]).await;
    let mut b = node(secret, kb, vec![pa]).await;
    // C has the wrong key; D has the right key but is not a member.
    let c = node([8u8; 32], kc, vec![pa]).await;
    let d = node(secret, kd, vec![pa]).await;

    // A member's message arrives, decoded, from the right peer.
    a.net.add_address(b.peer, b.addr.clone());
    a.net.send(b.peer, stored(1));
    let got = tokio::time::timeout(LIVENESS, b.inbound.recv())
        .await
        .expect("delivered")
        .unwrap();
    match got {
        Inbound::Sync { from, body } => {
            assert_eq!(from, a.peer);
            assert_eq!(body, stored(1));
        }
        other => panic!("expected a sync message, got {other:?}"),
    }
    // And back.
    b.net.send(a.peer, stored(2));
    let got = tokio::time::timeout(LIVENESS, a.inbound.recv())
        .await
        .expect("delivered")
        .unwrap();
    assert!(matches!(got, Inbound::Sync { from, .. } if from == b.peer));
    let (sent, received) = a.net.bytes();
    assert!(
        sent > 0 && received > 0,
        "bytes are counted at the transport"
    );

    // Outsiders: their requests fail, and A receives nothing from them.
    let rpc_of = |n| chorus_election::RaftRpc::Vote(openraft_vote(n));
    for (outsider, what) in [(&c, "wrong key"), (&d, "not a member")] {
        outsider.net.add_address(a.peer, a.addr.clone());
        outsider.net.send(a.peer, stored(9));
        let r = tokio::time::timeout(
            LIVENESS,
            outsider
                .net
                .raft_call(a.peer, vec![a.addr.clone()], &rpc_of(1)),
        )
        .await
        .expect("the call ends");
        assert!(r.is_err(), "{what}: the raft call must fail");
        // A closes the outsider's connection; the outsider's side may hear of it a moment
        // after its call failed (a busy machine), so it is given the liveness bound to go.
        let gone = tokio::time::timeout(LIVENESS, async {
            while outsider.net.connected().await.unwrap().contains(&a.peer) {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await;
        assert!(gone.is_ok(), "{what}: no connection stays up");
    }
    assert!(
        a.inbound.try_recv().is_err(),
        "nothing from outsiders arrived"
    );
}

/// QUIC has no private-network key: a QUIC connection is admitted by the PeerId its TLS
/// handshake proves, members only. Members talk over QUIC alone; a peer with the share's
/// secret that is not a member, and one with neither, get nothing through it, not even a join
/// with a valid invite (joiners come in over TCP, behind the share's key).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_talk_over_quic_and_strangers_are_denied() {
    let secret = [5u8; 32];
    let [ka, kb, kc, kd] = std::array::from_fn(|_| Keypair::generate_ed25519());
    let (pa, pb) = (ka.public().to_peer_id(), kb.public().to_peer_id());
    let a = node(secret, ka, vec![pb]).await;
    let mut b = node(secret, kb, vec![pa]).await;
    let c = node([9u8; 32], kc, vec![pa]).await;
    let d = node(secret, kd, vec![pa]).await;
    a.net.set_quic_members(vec![pb]);
    b.net.set_quic_members(vec![pa]);
    // The outsiders take A for a member they talk QUIC with (so they dial its QUIC address).
    c.net.set_quic_members(vec![pa]);
    d.net.set_quic_members(vec![pa]);

    a.net.add_address(b.peer, b.quic.clone());
    a.net.send(b.peer, stored(1));
    let got = tokio::time::timeout(LIVENESS, b.inbound.recv())
        .await
        .expect("delivered over QUIC")
        .unwrap();
    assert!(matches!(got, Inbound::Sync { from, .. } if from == a.peer));
    let path = a.net.peer_stats().get(&b.peer).and_then(|s| s.path.clone());
    assert!(
        path.as_ref()
            .is_some_and(|p| p.addr.to_string().contains("/quic-v1")),
        "the connection runs on QUIC: {path:?}"
    );

    let (code, _) = a
        .net
        .issue_invite(Duration::from_secs(3600), 1)
        .await
        .unwrap();
    d.net.add_address(a.peer, a.quic.clone());
    let joined = tokio::time::timeout(
        LIVENESS,
        d.net.join(a.peer, Some(code), None, vec![d.quic.clone()]),
    )
    .await
    .expect("the join ends")
    .unwrap();
    assert!(joined.is_none(), "a join over QUIC is not even heard");

    let rpc = chorus_election::RaftRpc::Vote(openraft_vote(1));
    for (outsider, what) in [(&c, "wrong key"), (&d, "not a member")] {
        let r = tokio::time::timeout(
            LIVENESS,
            outsider.net.raft_call(a.peer, vec![a.quic.clone()], &rpc),
        )
        .await
        .expect("the call ends");
        assert!(r.is_err(), "{what}: a raft call over QUIC must fail");
        // The denial closes the connection; the close reaches the dialer a moment later.
        tokio::time::timeout(LIVENESS, async {
            while outsider.net.connected().await.unwrap().contains(&a.peer) {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("{what}: a QUIC connection stays up"));
    }
}

fn openraft_vote(term: u64) -> openraft::raft::VoteRequest<u64> {
    openraft::raft::VoteRequest::new(openraft::Vote::new(term, 1), None)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raft_elects_and_commits_over_libp2p() {
    let secret = [3u8; 32];
    let (ka, kb) = (Keypair::generate_ed25519(), Keypair::generate_ed25519());
    let (pa, pb) = (ka.public().to_peer_id(), kb.public().to_peer_id());
    let a = node(secret, ka, vec![pb]).await;
    let b = node(secret, kb, vec![pa]).await;
    let dir = tempfile::tempdir().unwrap();
    let mut nodes = Vec::new();
    for (n, name) in [(a, "a"), (b, "b")] {
        let id = node_id_of(&n.peer.to_bytes());
        let raft = Arc::new(
            ElectionNode::open(
                &dir.path().join(name),
                id,
                ElectionConfig::lan(),
                Arc::new(RaftTransport::new(n.net.clone())),
            )
            .await
            .unwrap(),
        );
        let serving = raft.clone();
        let mut inbound = n.inbound;
        tokio::spawn(async move {
            while let Some(msg) = inbound.recv().await {
                if let Inbound::Raft { from, rpc, reply } = msg
                    && let Ok(r) = serving.handle(node_id_of(&from.to_bytes()), *rpc).await
                {
                    let _ = reply.send(r);
                }
            }
        });
        let member = Member {
            peer_id: n.peer.to_bytes(),
            addresses: vec![n.addr.to_string()],
        };
        nodes.push((raft, id, member, n.net));
    }
    let (ra, _, ma, _) = &nodes[0];
    let (rb, idb, mb, _) = &nodes[1];
    ra.initialize(ma.clone()).await.unwrap();
    tokio::time::timeout(LIVENESS, async {
        while ra.view().leader != Some(ra.id()) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("a leads its one-node cluster");
    tokio::time::timeout(LIVENESS, ra.add_member(*idb, mb.clone()))
        .await
        .expect("b joins")
        .unwrap();
    let p = Proposal {
        version: chorus_chunking::VersionId([5; 32]),
        parents: vec![],
        origin: ra.id(),
        created_at_ms: 1,
        redo: vec![],
    };
    let n = tokio::time::timeout(LIVENESS, ra.propose(p))
        .await
        .expect("committed")
        .unwrap();
    assert_eq!(n.major, 1);
    tokio::time::timeout(LIVENESS, async {
        while rb.local_head().map(|h| h.version) != Some(chorus_chunking::VersionId([5; 32])) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("b applies the header it received over libp2p");
    assert!(rb.view().voters.contains(&ra.id()));
}

/// Presents `code` and/or `voucher` from `from` to `to`; what `to` answered.
async fn present(
    from: &Node,
    to: &Node,
    code: Option<chorus::net::Code>,
    voucher: Option<chorus::net::Voucher>,
) -> Option<chorus::net::JoinAccepted> {
    from.net.add_address(to.peer, to.addr.clone());
    tokio::time::timeout(
        LIVENESS,
        from.net
            .join(to.peer, code, voucher, vec![from.addr.clone()]),
    )
    .await
    .expect("the join ends")
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_joiner_with_a_valid_invite_is_let_in_and_a_forged_one_is_not() {
    let secret = [4u8; 32];
    let [ka, kb, ke, kf, kg] = std::array::from_fn(|_| Keypair::generate_ed25519());
    let (pa, pb) = (ka.public().to_peer_id(), kb.public().to_peer_id());
    let mut a = node(secret, ka, vec![pb]).await;
    let b = node(secret, kb, vec![pa]).await;
    let e = node(secret, ke, vec![pa, pb]).await;
    let f = node(secret, kf, vec![pa, pb]).await;
    let g = node(secret, kg, vec![pa]).await;
    // A issues a single-use invite.
    let (code, _) = a
        .net
        .issue_invite(Duration::from_secs(3600), 1)
        .await
        .unwrap();

    // F shows a code A never issued: refused, and nothing of F's arrives.
    assert!(present(&f, &a, Some([9; 16]), None).await.is_none());
    let r = tokio::time::timeout(
        LIVENESS,
        f.net.raft_call(
            a.peer,
            vec![a.addr.clone()],
            &chorus_election::RaftRpc::Vote(openraft_vote(1)),
        ),
    )
    .await
    .expect("the call ends");
    assert!(r.is_err(), "a refused joiner gets no answer");

    // E shows the code: accepted, with A's voucher; B, which never saw the code, takes the
    // voucher from E, and only from E.
    let accepted = present(&e, &a, Some(code), None)
        .await
        .expect("the code A issued is good");
    let voucher = accepted.voucher.expect("the issuer vouches for the joiner");
    assert!(
        present(&g, &b, Some(code), None).await.is_none(),
        "B did not issue it"
    );
    assert!(
        present(&f, &b, None, Some(voucher.clone())).await.is_none(),
        "E's voucher"
    );
    assert!(present(&e, &b, None, Some(voucher)).await.is_some());

    // The code was for one machine: G is refused; E may present it again.
    assert!(present(&g, &a, Some(code), None).await.is_none(), "used up");
    assert!(present(&e, &a, Some(code), None).await.is_some());
    match tokio::time::timeout(LIVENESS, a.inbound.recv())
        .await
        .expect("announced")
        .unwrap()
    {
        Inbound::Join { from, addrs } => {
            assert_eq!(from, e.peer);
            assert_eq!(addrs, vec![e.addr.clone()]);
        }
        other => panic!("expected the join, got {other:?}"),
    }
    while let Ok(Some(Inbound::Join { .. })) =
        tokio::time::timeout(Duration::from_millis(200), a.inbound.recv()).await
    {}
    e.net.send(a.peer, stored(3));
    match tokio::time::timeout(LIVENESS, a.inbound.recv())
        .await
        .expect("delivered")
        .unwrap()
    {
        Inbound::Sync { from, body } => {
            assert_eq!(from, e.peer);
            assert_eq!(body, stored(3));
        }
        other => panic!("expected E's message, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_invite_is_refused_by_the_member_that_issued_it() {
    let secret = [5u8; 32];
    let (ka, kj) = (Keypair::generate_ed25519(), Keypair::generate_ed25519());
    let pa = ka.public().to_peer_id();
    let a = node(secret, ka, vec![]).await;
    let j = node(secret, kj, vec![pa]).await;
    let (code, _) = a.net.issue_invite(Duration::from_secs(1), 5).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert!(present(&j, &a, Some(code), None).await.is_none());
}
