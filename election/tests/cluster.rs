//! Raft over the in-memory network: election, failover, partitions, restarts, learners and
//! numbering. Every test prints its seed; rerun a failure with CHORUS_SEED=<seed>.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use chorus_election::memnet::LinkFaults;
use chorus_election::testing::{Cluster, proposal, seed};
use chorus_election::{ElectionConfig, NodeId, ProposeError, Role};

const SECS: Duration = Duration::from_secs(1);

async fn cluster(n: u64, test: &str) -> (Cluster, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let c = Cluster::start(
        n,
        seed(test),
        ElectionConfig::eager(),
        dir.path().to_path_buf(),
    )
    .await;
    (c, dir)
}

/// Majors on every running node's recent headers: gap-free from 1 and identical everywhere.
fn assert_one_chain(c: &Cluster, expected_len: u64) {
    let mut chains = BTreeMap::new();
    for id in c.running() {
        let h: Vec<_> = c
            .node(id)
            .recent_headers()
            .into_iter()
            .map(|h| (h.number, h.version))
            .collect();
        let majors: Vec<u64> = h.iter().map(|(n, _)| n.major).collect();
        assert_eq!(
            majors,
            (1..=expected_len).collect::<Vec<_>>(),
            "node {id}: numbers are not gap-free"
        );
        chains.insert(id, h);
    }
    let first = chains.values().next().unwrap();
    for (id, ch) in &chains {
        assert_eq!(ch, first, "node {id} disagrees on the chain");
    }
}

/// A header built on a head that another header replaced since is refused: it appends
/// nothing, the head stays, and the same change built on the new head commits. (Committed, it
/// would have become the head with a tree that lacks what the header before it brought.) The
/// head proposed again is answered with its number only when proposed as it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_header_built_on_an_older_head_is_refused() {
    let (c, _d) = cluster(3, "a_header_built_on_an_older_head_is_refused").await;
    let on = |n: u64, parent: &chorus_election::Proposal| {
        let mut p = proposal(n, 1);
        p.parents = vec![parent.version];
        p
    };
    let first = proposal(1, 1);
    assert_eq!(c.propose(first.clone(), 5 * SECS).await.unwrap().major, 1);
    let a = on(2, &first);
    assert_eq!(c.propose(a.clone(), 5 * SECS).await.unwrap().major, 2);
    // Built on `first` too, as a proposal still in flight when `a` committed would be.
    let stale = on(3, &first);
    // (Asked of whoever leads; a leadership changing meanwhile is asked again.)
    let deadline = Instant::now() + 10 * SECS;
    let leader = loop {
        let leader = c.wait_leader(5 * SECS).await.unwrap();
        match c.node(leader).propose(stale.clone()).await {
            Err(ProposeError::Superseded) => break leader,
            Err(ProposeError::NotLeader { .. }) if Instant::now() < deadline => continue,
            other => panic!("a header built on an older head: {other:?}"),
        }
    };
    let head = c.node(leader).read_head().await.unwrap().unwrap();
    assert_eq!((head.version, head.number.major), (a.version, 2));
    // Its change merged on the head commits next, gap-free.
    assert_eq!(c.propose(on(3, &a), 5 * SECS).await.unwrap().major, 3);
    // Re-proposing the head as it was proposed is still answered with its number.
    assert_eq!(c.propose(on(3, &a), 5 * SECS).await.unwrap().major, 3);
    // Headers that keep the head's tree and name the head alone, carrying what one header
    // could not (redo entries): each is a new header; each again as proposed is not.
    let third = on(3, &a);
    let carrying = |redo: &[u8]| {
        let mut p = on(3, &third);
        p.redo = redo.to_vec();
        p
    };
    assert_eq!(c.propose(carrying(b"r1"), 5 * SECS).await.unwrap().major, 4);
    assert_eq!(c.propose(carrying(b"r1"), 5 * SECS).await.unwrap().major, 4);
    assert_eq!(c.propose(carrying(b"r2"), 5 * SECS).await.unwrap().major, 5);
    assert!(c.wait_applied(5, 5 * SECS).await);
    assert_one_chain(&c, 5);
    c.shutdown().await;
}

/// What the daemon writes: proposals that name the head they were built on by its number. A
/// header that keeps its predecessor's tree (a merge that kept the head everywhere: the same
/// tree, one more parent) has the same version as the header before it, so a proposal built on
/// that one names the same tree first; by its number it is refused. The head proposed again as
/// it was, on the header before it, is answered with its number.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proposal_built_on_the_header_before_a_same_tree_one_is_refused_by_its_number() {
    let (c, _d) = cluster(
        3,
        "a_proposal_built_on_the_header_before_a_same_tree_one_is_refused_by_its_number",
    )
    .await;
    let on = |n: u64, parent: &chorus_election::Proposal| {
        let mut p = proposal(n, 1);
        p.parents = vec![parent.version];
        p
    };
    let first = proposal(1, 1);
    assert_eq!(
        c.propose_on(first.clone(), 0, 5 * SECS)
            .await
            .unwrap()
            .major,
        1
    );
    let a = on(2, &first);
    assert_eq!(c.propose_on(a.clone(), 1, 5 * SECS).await.unwrap().major, 2);
    let mut keeps = a.clone();
    keeps.parents = vec![a.version, proposal(9, 2).version];
    assert_eq!(
        c.propose_on(keeps.clone(), 2, 5 * SECS)
            .await
            .unwrap()
            .major,
        3
    );
    // Built on header 2, as a proposal still in flight when header 3 committed would be.
    let stale = on(4, &a);
    let deadline = Instant::now() + 10 * SECS;
    let leader = loop {
        let leader = c.wait_leader(5 * SECS).await.unwrap();
        match c.node(leader).propose_on(stale.clone(), 2).await {
            Err(ProposeError::Superseded) => break leader,
            Err(ProposeError::NotLeader { .. }) if Instant::now() < deadline => continue,
            other => panic!("a proposal built on the header before the head: {other:?}"),
        }
    };
    let head = c.node(leader).read_head().await.unwrap().unwrap();
    assert_eq!((head.version, head.number.major), (a.version, 3));
    assert_eq!(c.propose_on(keeps, 2, 5 * SECS).await.unwrap().major, 3);
    assert_eq!(c.propose_on(stale, 3, 5 * SECS).await.unwrap().major, 4);
    assert!(c.wait_applied(4, 5 * SECS).await);
    assert_one_chain(&c, 4);
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_elect_commit_and_number_gap_free() {
    let (c, _d) = cluster(3, "three_nodes_elect_commit_and_number_gap_free").await;
    for i in 1..=20 {
        let n = c.propose(proposal(i, (i % 3) + 1), 5 * SECS).await.unwrap();
        assert_eq!(n.major, i);
    }
    assert!(c.wait_applied(20, 5 * SECS).await);
    assert_one_chain(&c, 20);
    // Re-proposing the head's version is idempotent: same number, no new entry.
    let again = c.propose(proposal(20, 3), 5 * SECS).await.unwrap();
    assert_eq!(again.major, 20);
    // Ranks follow join order, so MINOR identifies the origin.
    let h = c
        .node(c.wait_leader(SECS).await.unwrap())
        .read_head()
        .await
        .unwrap()
        .unwrap();
    assert_eq!(h.number.minor, 2, "origin 3 joined third");
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_that_keeps_sending_heartbeats_keeps_its_term() {
    // The followers' lookout campaigns when the leader goes silent for its whole lease; a
    // leader heard all along (here for ten leases) must never be replaced, whichever
    // transport carried its heartbeats.
    let (c, _dir) = cluster(3, "a_leader_that_keeps_sending_heartbeats_keeps_its_term").await;
    let leader = c.wait_leader(5 * SECS).await.expect("a leader");
    let term = c.node(leader).view().term;
    let lease = Duration::from_millis(ElectionConfig::eager().election_timeout_max_ms);
    tokio::time::sleep(lease * 10).await;
    for id in c.running() {
        let v = c.node(id).view();
        assert_eq!((v.term, v.leader), (term, Some(leader)), "node {id}");
    }
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_leader_is_replaced_and_the_new_one_commits() {
    for n in [3, 5] {
        let (mut c, _d) = cluster(n, &format!("killed_leader_is_replaced ({n} nodes)")).await;
        c.propose(proposal(1, 1), 5 * SECS).await.unwrap();
        for round in 0..2 {
            let old = c.wait_leader(5 * SECS).await.unwrap();
            c.kill(old).await;
            let new = c.wait_leader(5 * SECS).await.expect("a new leader");
            assert_ne!(new, old);
            let num = c
                .propose(proposal(10 + round, new), 5 * SECS)
                .await
                .unwrap();
            assert_eq!(num.major, 2 + round);
            c.restart(old).await;
        }
        assert!(c.wait_applied(3, 5 * SECS).await);
        assert_one_chain(&c, 3);
        c.shutdown().await;
    }
}

/// Leaders come and go under loss, delay and kills, and what they commit stays one chain.
///
/// openraft's default ("advanced") leader ids are `(term, node id)`, totally ordered: a term
/// may see more than one leader, each superseding the one with a lower id (the Raft paper's
/// "one leader per term" holds only with its `single-term-leader` feature). So the invariant
/// checked is the one that matters: every node holds the same gap-free chain of numbers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leaders_under_faults_keep_one_chain() {
    let (mut c, _d) = cluster(5, "leaders_under_faults_keep_one_chain").await;
    c.net.set_default_faults(LinkFaults {
        drop: 0.1,
        delay_ms: (0, 30),
    });
    let mut leaderships: BTreeSet<(u64, NodeId)> = BTreeSet::new();
    let end = Instant::now() + 4 * SECS;
    let mut next_kill = Instant::now() + SECS;
    let mut killed = None;
    let mut proposed = 0;
    while Instant::now() < end {
        for id in c.running() {
            let v = c.node(id).view();
            if v.role == Role::Leader {
                leaderships.insert((v.term, id));
            }
        }
        if Instant::now() >= next_kill {
            if let Some(k) = killed.take() {
                c.restart(k).await;
            } else if let Some(l) = c.wait_leader(SECS).await {
                // Something to commit under this leader (it may or may not make it).
                proposed += 1;
                let _ = c.propose(proposal(proposed, l), SECS).await;
                c.kill(l).await;
                killed = Some(l);
            }
            next_kill = Instant::now() + SECS;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    assert!(
        leaderships.len() >= 2,
        "the test should see several leaderships: {leaderships:?}"
    );
    c.net.set_default_faults(LinkFaults::default());
    if let Some(k) = killed.take() {
        c.restart(k).await;
    }
    let last = c
        .propose(proposal(100, 1), 10 * SECS)
        .await
        .expect("a healed cluster commits");
    assert!(c.wait_applied(last.major, 10 * SECS).await);
    assert_one_chain(&c, last.major);
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitioned_minority_cannot_commit_and_heals_into_one_log() {
    let (c, _d) = cluster(5, "partitioned_minority_cannot_commit").await;
    c.propose(proposal(1, 1), 5 * SECS).await.unwrap();
    let old = c.wait_leader(5 * SECS).await.unwrap();
    let others: Vec<NodeId> = c.running().into_iter().filter(|&i| i != old).collect();
    let minority = [old, others[0]];
    let majority = &others[1..];
    c.net.partition(&[&minority, majority]);

    // The deposed leader's proposal is never reported committed.
    let stale = tokio::time::timeout(2 * SECS, c.node(old).propose(proposal(99, old))).await;
    assert!(
        !matches!(stale, Ok(Ok(_))),
        "a minority leader reported a commit: {stale:?}"
    );

    // The majority elects its own leader and commits.
    let deadline = Instant::now() + 5 * SECS;
    let new = loop {
        let l = majority
            .iter()
            .find(|&&id| c.node(id).view().role == Role::Leader);
        if let Some(&l) = l {
            break l;
        }
        assert!(Instant::now() < deadline, "the majority elected no leader");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let num = c.node(new).propose(proposal(2, new)).await.unwrap();
    assert_eq!(num.major, 2);

    c.net.heal();
    let num = c.propose(proposal(3, new), 5 * SECS).await.unwrap();
    assert_eq!(num.major, 3);
    assert!(c.wait_applied(3, 5 * SECS).await);
    assert_one_chain(&c, 3);
    // Version 99 was never accepted anywhere.
    for id in c.running() {
        assert!(
            c.node(id)
                .recent_headers()
                .iter()
                .all(|h| h.created_at_ms != 99)
        );
    }
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_from_disk_keeps_vote_and_log() {
    let (mut c, _d) = cluster(3, "restart_from_disk_keeps_vote_and_log").await;
    for i in 1..=5 {
        c.propose(proposal(i, 1), 5 * SECS).await.unwrap();
    }
    assert!(c.wait_applied(5, 5 * SECS).await);
    let before: BTreeMap<NodeId, (u64, openraft::Vote<NodeId>)> = c
        .running()
        .into_iter()
        .map(|id| {
            let m = c.node(id).raft().metrics().borrow().clone();
            (id, (m.current_term, m.vote))
        })
        .collect();
    for id in c.running() {
        c.kill(id).await;
    }
    for id in [1, 2, 3] {
        // Read what the killed node left on disk: the vote it acknowledged is there.
        {
            use openraft::storage::RaftLogStorage;
            let (mut log, _sm) =
                chorus_election::log_store::open(&_d.path().join(format!("node-{id}")))
                    .await
                    .unwrap();
            let vote = log.read_vote().await.unwrap().expect("a persisted vote");
            let (_, before_vote) = before[&id];
            assert!(
                vote >= before_vote,
                "node {id}: vote {vote:?} on disk, {before_vote:?} before the crash"
            );
            let state = log.get_log_state().await.unwrap();
            assert!(
                state.last_log_id.is_some_and(|l| l.index >= 5),
                "node {id}: log lost: {state:?}"
            );
        }
        c.restart(id).await;
    }
    // A restarted node is never initialized again.
    assert!(
        c.node(1)
            .initialize(chorus_election::testing::member(1))
            .await
            .is_err()
    );
    let num = c.propose(proposal(6, 2), 10 * SECS).await.unwrap();
    assert_eq!(num.major, 6, "the log survived the restart");
    assert!(c.wait_applied(6, 5 * SECS).await);
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn learners_catch_up_and_are_promoted_up_to_max_voters() {
    let dir = tempfile::tempdir().unwrap();
    let config = ElectionConfig {
        max_voters: 3,
        ..ElectionConfig::eager()
    };
    let mut c = Cluster::start(
        2,
        seed("learners_catch_up"),
        config,
        dir.path().to_path_buf(),
    )
    .await;
    for i in 1..=30 {
        c.propose(proposal(i, 1), 5 * SECS).await.unwrap();
    }
    assert_eq!(
        c.join(3).await,
        Role::Follower,
        "below max_voters a joiner becomes a voter"
    );
    assert_eq!(
        c.join(4).await,
        Role::Learner,
        "at max_voters a joiner stays a learner"
    );
    assert!(c.wait_applied(30, 5 * SECS).await, "the learner caught up");
    let v = c.node(1).view();
    assert_eq!(v.voters, BTreeSet::from([1, 2, 3]));
    assert_eq!(v.learners, BTreeSet::from([4]));
    assert_eq!(c.node(4).view().role, Role::Learner);
    // A learner cannot propose.
    assert!(matches!(
        c.node(4).propose(proposal(77, 4)).await,
        Err(ProposeError::NotLeader { .. })
    ));
    c.propose(proposal(31, 4), 5 * SECS).await.unwrap();
    assert!(c.wait_applied(31, 5 * SECS).await);
    assert_one_chain(&c, 31);
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_proposals_get_distinct_gap_free_numbers() {
    let (c, _d) = cluster(3, "concurrent_proposals").await;
    let c = std::sync::Arc::new(c);
    let mut tasks = Vec::new();
    for t in 0..4u64 {
        let c = c.clone();
        tasks.push(tokio::spawn(async move {
            let mut got = Vec::new();
            for i in 0..10 {
                got.push(
                    c.propose(proposal(100 * t + i, 1 + t % 3), 5 * SECS)
                        .await
                        .unwrap()
                        .major,
                );
            }
            got
        }));
    }
    let mut all: Vec<u64> = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all.sort_unstable();
    assert_eq!(all, (1..=40).collect::<Vec<_>>());
    assert!(c.wait_applied(40, 5 * SECS).await);
    assert_one_chain(&c, 40);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_learner_catches_up_from_a_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    // Snapshot every 10 entries and keep few logs, so a late joiner must install a snapshot.
    let config = ElectionConfig {
        snapshot_every: 10,
        ..ElectionConfig::eager()
    };
    let mut c = Cluster::start(
        3,
        seed("a_late_learner_catches_up_from_a_snapshot"),
        config,
        dir.path().to_path_buf(),
    )
    .await;
    for i in 1..=60 {
        c.propose(proposal(i, 1), 5 * SECS).await.unwrap();
    }
    let leader = c.wait_leader(SECS).await.unwrap();
    let snap = c.node(leader).raft().metrics().borrow().snapshot;
    assert!(
        snap.is_some_and(|s| s.index >= 10),
        "the leader built a snapshot: {snap:?}"
    );
    c.join(4).await;
    assert!(
        c.wait_applied(60, 10 * SECS).await,
        "the new node caught up"
    );
    let head = c.node(4).local_head().unwrap();
    assert_eq!(head, c.node(leader).local_head().unwrap());
    let installed = c.node(4).raft().metrics().borrow().snapshot;
    assert!(
        installed.is_some(),
        "node 4 caught up through a snapshot, not the purged log"
    );
    // The chain goes on with the same numbering on the newcomer.
    let n = c.propose(proposal(61, 4), 5 * SECS).await.unwrap();
    assert_eq!(n.major, 61);
    assert_eq!(n.minor, 3, "node 4 joined fourth");
    assert!(c.wait_applied(61, 5 * SECS).await);
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removed_nodes_leave_the_membership_and_the_rest_commit() {
    let (c, _d) = cluster(3, "removed_nodes_leave_the_membership").await;
    c.propose(proposal(1, 1), 5 * SECS).await.unwrap();
    let leader = c.wait_leader(SECS).await.unwrap();
    let gone = c.running().into_iter().find(|&id| id != leader).unwrap();
    c.node(leader).remove_member(gone).await.unwrap();
    let v = c.node(leader).view();
    assert!(
        !v.voters.contains(&gone) && !v.learners.contains(&gone),
        "{v:?}"
    );
    let n = c.propose(proposal(2, leader), 5 * SECS).await.unwrap();
    assert_eq!(n.major, 2);
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_id_already_taken_by_another_peer_is_refused() {
    let (c, _d) = cluster(2, "a_node_id_already_taken").await;
    let leader = c.wait_leader(SECS).await.unwrap();
    let other = c.running().into_iter().find(|&id| id != leader).unwrap();
    let impostor = chorus_election::Member {
        peer_id: b"someone else".to_vec(),
        addresses: vec![],
    };
    let err = c
        .node(leader)
        .add_member(other, impostor)
        .await
        .unwrap_err();
    assert!(
        matches!(err, chorus_election::ElectionError::IdCollision(id) if id == other),
        "{err}"
    );
    c.shutdown().await;
}

/// A member that never answers does not hold the leader's membership changes: adding it
/// returns (as a learner that has not caught up) within the bound, and the next member joins.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_that_never_answers_does_not_hold_the_next_join() {
    let (mut c, _d) = cluster(1, "a_member_that_never_answers").await;
    let leader = c.wait_leader(5 * SECS).await.unwrap();
    let ghost: NodeId = 77;
    let added = tokio::time::timeout(
        chorus_election::CATCH_UP_WITHIN + 10 * SECS,
        c.node(leader).add_member(
            ghost,
            chorus_election::Member {
                peer_id: b"a machine that is off".to_vec(),
                addresses: vec![],
            },
        ),
    )
    .await
    .expect("add_member returns while the new member is silent");
    assert!(added.is_err(), "a silent member cannot have caught up");
    assert!(c.node(leader).view().learners.contains(&ghost));
    let role = c.join(2).await;
    assert_eq!(role, Role::Follower);
    assert!(c.node(leader).view().voters.contains(&2));
    c.shutdown().await;
}

/// Each member picks its Raft timing from the round trips it measured before it started, so
/// members can run with different timings: after a restart under loss, two members measured a
/// slow path (a heartbeat every 10 s) and the third a fast one (an election timeout of 4–5 s).
/// That third member, behind in the log, times out between two heartbeats, campaigns, cannot
/// win (its log is behind), and its higher term makes the leader step down when it answers a
/// heartbeat; the other two wait their long timeout while it raises its term again: no
/// leader for good (a chaos run stalled five minutes so). Scaled down here: the fast member's
/// election timeout is below the others' heartbeat. It must catch up, and the group keep one
/// leader.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_with_faster_timing_and_an_old_log_does_not_keep_the_group_leaderless() {
    let test = "a_member_with_faster_timing_and_an_old_log_does_not_keep_the_group_leaderless";
    let slow = ElectionConfig {
        heartbeat_ms: 600,
        election_timeout_min_ms: 1500,
        election_timeout_max_ms: 1700,
        ..ElectionConfig::eager()
    };
    let fast = ElectionConfig {
        heartbeat_ms: 100,
        election_timeout_min_ms: 250,
        election_timeout_max_ms: 300,
        ..ElectionConfig::eager()
    };
    let dir = tempfile::tempdir().unwrap();
    let mut c = Cluster::start(3, seed(test), slow, dir.path().to_path_buf()).await;
    c.propose(proposal(1, 1), 10 * SECS).await.unwrap();
    assert!(c.wait_applied(1, 10 * SECS).await);
    // Node 3 goes down while the others move on, then comes back with the fast timing.
    c.kill(3).await;
    for i in 2..=5 {
        c.propose(proposal(i, 1), 10 * SECS).await.unwrap();
    }
    c.config = fast;
    c.restart(3).await;
    assert!(
        c.wait_applied(5, 20 * SECS).await,
        "node 3 never caught up: {:?}",
        c.running()
            .iter()
            .map(|&id| (id, c.node(id).view()))
            .collect::<Vec<_>>()
    );
    // And the group keeps committing.
    let n = c.propose(proposal(6, 2), 20 * SECS).await.unwrap();
    assert_eq!(n.major, 6);
    c.shutdown().await;
}

/// A member cut off for a while (a laptop suspended, a link down) keeps timing out while it
/// hears no one; were it to campaign, its term would climb, and when it is back its answer to
/// the next heartbeat would make the live leader step down for nothing. It asks first: cut
/// off, it hears no grant, and its term stays where it was. Back, it follows the same leader
/// in the same term.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_cut_off_for_a_while_does_not_depose_the_leader_when_it_is_back() {
    let (c, _d) = cluster(
        3,
        "a_member_cut_off_for_a_while_does_not_depose_the_leader_when_it_is_back",
    )
    .await;
    c.propose(proposal(1, 1), 5 * SECS).await.unwrap();
    let leader = c.wait_leader(5 * SECS).await.expect("a leader");
    let term = c.node(leader).view().term;
    let away = c.running().into_iter().find(|&id| id != leader).unwrap();
    let others: Vec<NodeId> = c.running().into_iter().filter(|&id| id != away).collect();
    c.net.partition(&[&[away], &others]);
    // Ten election timeouts away.
    let timeout = Duration::from_millis(ElectionConfig::eager().election_timeout_max_ms);
    tokio::time::sleep(timeout * 10).await;
    assert_eq!(
        c.node(away).view().term,
        term,
        "cut off, it raised its term"
    );
    c.net.heal();
    c.propose(proposal(2, 1), 5 * SECS).await.unwrap();
    assert!(c.wait_applied(2, 5 * SECS).await);
    for id in c.running() {
        let v = c.node(id).view();
        assert_eq!((v.term, v.leader), (term, Some(leader)), "node {id}");
    }
    c.shutdown().await;
}
