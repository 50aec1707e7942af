//! A hostile member on the wire, against real daemons: a group formed the README's way
//! (`init`, `run`, `invite`, `join`, `run`), then a libp2p node holding a genuine invite
//! token joins it (so it has the share secret and is in the membership) and sends Raft RPCs
//! no honest node sends: a vote with term `u64::MAX` (openraft's `term + 1` would wrap and,
//! the vote being durable, panic the node at every start), a heartbeat in another member's
//! name that would depose the leader, and a snapshot chunk at a terabyte offset. Each is
//! refused by the daemon's admission check; every daemon keeps running, the group keeps its
//! leader and its term, syncs on, and restarts cleanly. Pre-votes (the question a member asks
//! before it campaigns) are held to a vote's rules, and a flood of them changes nothing.

mod support;

use std::time::Duration;

use chorus::config::token::JoinToken;
use chorus::net::{NetConfig, NetHandle, spawn};
use chorus_election::types::PreVoteRequest;
use chorus_election::{NodeId, RaftReply, RaftRpc, node_id_of};
use libp2p::identity::Keypair;
use libp2p::{Multiaddr, PeerId};
use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest};
use openraft::{CommittedLeaderId, LeaderId, LogId, SnapshotMeta, StoredMembership, Vote};
use support::group::{Group, wait_until};

/// The hostile member: a real network node with the share secret and a valid invite.
struct Hostile {
    rt: tokio::runtime::Runtime,
    net: NetHandle,
    id: NodeId,
    /// The members it learned from the join: (PeerId, address).
    members: Vec<(PeerId, Multiaddr)>,
}

impl Hostile {
    fn join(token: &str) -> Hostile {
        let token = JoinToken::decode(token).expect("a valid token");
        let rt = tokio::runtime::Runtime::new().unwrap();
        let keypair = Keypair::generate_ed25519();
        let me = keypair.public().to_peer_id();
        let (net, mut inbound) = rt.block_on(async {
            spawn(NetConfig {
                explicit_peers: token.addresses.clone(),
                ..support::net::loopback(token.secret, keypair, vec![token.inviter])
            })
            .unwrap()
        });
        // It answers nothing; it only drains what arrives.
        rt.spawn(async move { while inbound.recv().await.is_some() {} });
        let addrs = rt.block_on(async {
            loop {
                let a = net.listen_addrs().await.unwrap();
                if !a.is_empty() {
                    return a;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        });
        for a in &token.addresses {
            net.add_address(token.inviter, a.clone());
        }
        let code = Some(token.invite);
        let answer = rt
            .block_on(net.join(token.inviter, code, None, addrs.clone()))
            .unwrap()
            .expect("a genuine invite is accepted");
        let voucher = answer.voucher;
        let mut members = Vec::new();
        for a in answer.members {
            let Some(libp2p::multiaddr::Protocol::P2p(p)) = a.iter().last() else {
                continue;
            };
            net.allow(vec![p]);
            net.add_address(p, a.clone());
            if !members.iter().any(|(q, _)| *q == p) {
                // Present the invite to every member, so the leader, whoever it is, adds it.
                let _ = rt.block_on(net.join(p, code, voucher.clone(), addrs.clone()));
            }
            members.push((p, a));
        }
        Hostile {
            rt,
            net,
            id: node_id_of(&me.to_bytes()),
            members,
        }
    }

    /// The addresses the join gave for `to`.
    fn addrs(&self, to: PeerId) -> Vec<Multiaddr> {
        self.members
            .iter()
            .filter(|(p, _)| *p == to)
            .map(|(_, a)| a.clone())
            .collect()
    }

    /// Sends `rpc` to `to`; true when it was answered.
    fn send(&self, to: PeerId, rpc: RaftRpc) -> bool {
        self.rt
            .block_on(async {
                tokio::time::timeout(
                    Duration::from_secs(10),
                    self.net.raft_call(to, self.addrs(to), &rpc),
                )
                .await
            })
            .is_ok_and(|r| r.is_ok())
    }

    /// Sends every one of `rpcs` to `to` at once; the replies that came (a refusal is none).
    fn flood(&self, to: PeerId, rpcs: &[RaftRpc]) -> Vec<RaftReply> {
        let addrs = self.addrs(to);
        self.rt.block_on(async {
            let calls = rpcs.iter().map(|rpc| {
                tokio::time::timeout(
                    Duration::from_secs(10),
                    self.net.raft_call(to, addrs.clone(), rpc),
                )
            });
            futures::future::join_all(calls)
                .await
                .into_iter()
                .filter_map(|r| r.ok()?.ok())
                .collect()
        })
    }
}

fn vote(term: u64, node: NodeId) -> Vote<NodeId> {
    Vote {
        leader_id: LeaderId::new(term, node),
        committed: false,
    }
}

/// Two daemons formed the README's way, in sync, and a hostile node that joined them with a
/// genuine invite: the group, its two members, the hostile node, and the members' peer ids.
fn a_group_and_a_hostile_member() -> (Group, [usize; 2], Hostile, Vec<PeerId>) {
    let mut g = Group::new();
    let a = g.init(g.at("a"));
    let b = g.join(a, g.at("b"));
    std::fs::write(g.file(a, "before.txt"), "before\n").unwrap();
    g.wait_everywhere("before.txt", b"before\n");

    let h = Hostile::join(&g.invite(a));
    wait_until("the hostile node is in the membership", || {
        (0..2).all(|i| g.status(i)["peers"] == 2)
    });
    let mut peers: Vec<PeerId> = h.members.iter().map(|(p, _)| *p).collect();
    peers.dedup();
    assert_eq!(peers.len(), 2, "the join names both members");
    (g, [a, b], h, peers)
}

#[test]
fn forged_raft_rpcs_from_a_member_are_refused_and_the_group_syncs_on() {
    let (mut g, [a, b], h, peers) = a_group_and_a_hostile_member();
    let term_before = g.status(a)["term"].as_u64().unwrap();
    let ids: Vec<NodeId> = peers.iter().map(|p| node_id_of(&p.to_bytes())).collect();

    for (i, &to) in peers.iter().enumerate() {
        // 1. A vote at the largest term, with a log that looks newest.
        let huge = LogId::new(CommittedLeaderId::new(u64::MAX - 1, h.id), u64::MAX - 1);
        let answered = h.send(
            to,
            RaftRpc::Vote(VoteRequest {
                vote: vote(u64::MAX, h.id),
                last_log_id: Some(huge),
            }),
        );
        assert!(!answered, "a vote at term u64::MAX is answered by silence");
        // 2. A heartbeat in the other member's name, a term above the current one.
        let other = ids[1 - i];
        let answered = h.send(
            to,
            RaftRpc::AppendEntries(AppendEntriesRequest {
                vote: Vote::new_committed(term_before + 5, other),
                prev_log_id: None,
                entries: vec![],
                leader_commit: None,
            }),
        );
        assert!(!answered, "a heartbeat in another member's name is refused");
        // 3. A snapshot chunk at a terabyte offset, in its own name.
        let answered = h.send(
            to,
            RaftRpc::InstallSnapshot(InstallSnapshotRequest {
                vote: Vote::new_committed(term_before, h.id),
                meta: SnapshotMeta {
                    last_log_id: None,
                    last_membership: StoredMembership::default(),
                    snapshot_id: "x".into(),
                },
                offset: 1 << 40,
                data: vec![0; 16],
                done: false,
            }),
        );
        assert!(
            !answered,
            "a snapshot chunk at a terabyte offset is refused"
        );
    }

    // Past several election timeouts: nobody has died, the term did not leap, one leader.
    std::thread::sleep(Duration::from_secs(3));
    for i in [a, b] {
        assert!(g.running(i), "node {i} is still running");
        let s = g.status(i);
        assert!(
            s["term"].as_u64().unwrap() < 1 << 20,
            "node {i}'s term stayed small: {s}"
        );
    }
    std::fs::write(g.file(b, "after.txt"), "after\n").unwrap();
    g.wait_everywhere("after.txt", b"after\n");
    // The refusals are in the log, so an operator sees the attack.
    assert!(g.log(a).contains("refused a raft rpc"), "{}", g.log(a));

    // A restart finds nothing poisoned in the stored vote.
    g.stop(a);
    g.restart(a);
    std::fs::write(g.file(a, "restarted.txt"), "restarted\n").unwrap();
    g.wait_everywhere("restarted.txt", b"restarted\n");
    for i in [a, b] {
        assert!(g.running(i), "node {i} is still running after the restart");
    }
}

/// A pre-vote asks whether a campaign could win and changes nothing on the node asked: one at
/// the largest term is refused like such a vote, and a flood of well-formed ones at the next
/// term, each claiming the newest log, is not granted by members that follow a live leader.
/// Through it all the group keeps its leader and its term, and syncs on.
#[test]
fn pre_votes_from_a_member_change_nothing_however_many() {
    let (mut g, [a, b], h, peers) = a_group_and_a_hostile_member();
    let before = g.status(a);
    let term = before["term"].as_u64().unwrap();
    let leader = before["leader"].clone();

    let pre = |term: u64| {
        RaftRpc::PreVote(PreVoteRequest {
            vote: vote(term, h.id),
            last_log_id: Some(LogId::new(CommittedLeaderId::new(term, h.id), 1 << 40)),
        })
    };
    for &to in &peers {
        assert!(
            !h.send(to, pre(u64::MAX)),
            "a pre-vote at term u64::MAX is answered by silence"
        );
    }
    // 2 × 10 × 50 pre-votes, fifty in flight at a time, while a file goes round.
    std::fs::write(g.file(b, "during.txt"), "during\n").unwrap();
    let mut answered = 0;
    for round in 0..10 {
        for &to in &peers {
            let rpcs: Vec<RaftRpc> = (0..50).map(|_| pre(term + 1 + round)).collect();
            for reply in h.flood(to, &rpcs) {
                answered += 1;
                assert!(
                    matches!(reply, RaftReply::PreVote(false)),
                    "a pre-vote is not granted by a member that follows a live leader: {reply:?}"
                );
            }
        }
    }
    assert!(answered > 0, "the pre-votes reached the members");
    g.wait_everywhere("during.txt", b"during\n");

    for i in [a, b] {
        assert!(g.running(i), "node {i} is still running");
        let s = g.status(i);
        assert_eq!(
            (s["term"].as_u64().unwrap(), s["leader"].clone()),
            (term, leader.clone()),
            "node {i} kept the group's term and leader: {s}"
        );
    }
    std::fs::write(g.file(a, "after.txt"), "after\n").unwrap();
    g.wait_everywhere("after.txt", b"after\n");
}
