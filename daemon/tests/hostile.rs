//! A hostile member, sans IO: a node that is in the membership (so its messages are read)
//! sends what an honest node never would: paths that climb out of the share (`../`, absolute
//! paths, a path under a symlink), chunks that do not match their ids, deltas naming chunks
//! nobody has, a version id that does not match its manifest, and (as a leader could) a
//! committed header for a version it never sent. Each is refused (a `Rejected` with the reason
//! where the protocol has one), nothing of it is stored or materialized, and the honest nodes
//! keep syncing.
//!
//! Outsiders (valid Noise keys, no membership) and forged invites are refused at the network
//! layer; `three_processes.rs` tests those with real processes. Oversized frames are refused
//! before they are read (`net::codec`'s tests) and before they are decoded (chorus-proto's
//! frame tests).

mod support;

use support::{Node, Out, doc, node};

use std::collections::{BTreeMap, BTreeSet};

use chorus_chunking::delta::encode;
use chorus_chunking::{ChunkId, ChunkStore, Entry, RelPath, TreeManifest, VersionId};
use chorus_election::{AcceptedHeader, NodeId, VersionNumber};
use chorus_proto::message::Message;
use chorus_proto::{self as proto, Body, RejectReason};
use chorus_sync::{ClusterInfo, Event};

const A: NodeId = 1;
const B: NodeId = 2;
/// The hostile member.
const H: NodeId = 3;

fn cluster() -> ClusterInfo {
    ClusterInfo {
        leader: Some(A),
        voters: BTreeSet::from([A, B, H]),
        learners: BTreeSet::new(),
        ranks: BTreeMap::from([(A, 0), (B, 1), (H, 2)]),
        peer_ids: BTreeMap::new(),
    }
}

/// Two honest nodes (A leads) and what they send the hostile one.
struct World {
    a: Node,
    b: Node,
    out: Out,
    log: Vec<AcceptedHeader>,
    to_h: Vec<(NodeId, Body)>,
}

impl World {
    fn new() -> World {
        let mut w = World {
            a: node(A),
            b: node(B),
            out: Out::default(),
            log: Vec::new(),
            to_h: Vec::new(),
        };
        w.a.feed(Event::Cluster(cluster()), &mut w.out);
        w.a.feed(Event::LeaderConfirmed, &mut w.out);
        w.b.feed(Event::Cluster(cluster()), &mut w.out);
        w
    }

    fn run(&mut self) {
        loop {
            if !self.out.sent.is_empty() {
                let (from, to, body) = self.out.sent.remove(0);
                match to {
                    A => self.a.feed(
                        Event::Message {
                            from,
                            message: Message::parse(body).expect("a well-formed message"),
                        },
                        &mut self.out,
                    ),
                    B => self.b.feed(
                        Event::Message {
                            from,
                            message: Message::parse(body).expect("a well-formed message"),
                        },
                        &mut self.out,
                    ),
                    _ => self.to_h.push((from, body)),
                }
            } else if !self.out.proposals.is_empty() {
                let p = self.out.proposals.remove(0);
                let h = support::accept(&mut self.log, p, &cluster().ranks);
                self.commit(h);
            } else {
                return;
            }
        }
    }

    fn commit(&mut self, h: AcceptedHeader) {
        self.a
            .feed(Event::Committed(vec![h.clone()]), &mut self.out);
        self.b.feed(Event::Committed(vec![h]), &mut self.out);
    }

    /// H sends `body` to `to`; what follows runs to quiescence.
    fn hostile_sends(&mut self, to: NodeId, body: Body) {
        self.to_h.clear();
        let ev = Event::Message {
            from: H,
            message: Message::parse(body).expect("a well-formed message"),
        };
        match to {
            A => self.a.feed(ev, &mut self.out),
            _ => self.b.feed(ev, &mut self.out),
        }
        self.run();
    }

    /// The reasons the honest nodes gave H for refusing it.
    fn rejections(&self) -> Vec<(RejectReason, String)> {
        self.to_h
            .iter()
            .filter_map(|(_, b)| match b {
                Body::Rejected(r) => Some((
                    RejectReason::try_from(r.reason).unwrap_or(RejectReason::Unspecified),
                    r.detail.clone(),
                )),
                _ => None,
            })
            .collect()
    }

    /// An honest edit on A still reaches B, and nothing else changed on either.
    fn still_syncing(&mut self, text: &str) {
        self.a.edit(text, &mut self.out);
        self.run();
        assert_eq!(self.b.folder, self.a.folder, "B has A's edit");
        assert_eq!(self.a.engine.head(), self.b.engine.head());
    }
}

/// A delta from `base` to a tree holding `text` in `doc`, built as an honest sender would.
fn delta(w: &World, base: &TreeManifest, text: &str) -> (proto::Delta, TreeManifest) {
    let target = doc(text, &*w.a.chunks);
    let d = encode(base, &target, &*w.a.chunks, &Default::default())
        .expect("a delta")
        .0;
    (d, target)
}

fn push(d: proto::Delta) -> Body {
    Body::Push(proto::Push {
        number: Some(proto::VersionNumber { major: 9, minor: 2 }),
        delta: Some(d),
        pushed_before: Vec::new(),
        displaced: Vec::new(),
    })
}

fn offer(d: proto::Delta) -> Body {
    Body::Offer(proto::Offer {
        delta: Some(d),
        extra: false,
    })
}

#[test]
fn paths_out_of_the_share_are_refused_and_nothing_is_taken() {
    let mut w = World::new();
    w.still_syncing("base");
    let base = w.a.folder.clone();
    for bad in ["../escape", "/etc/passwd", "a/../../b", "./x", "a//b", ""] {
        let (mut d, _) = delta(&w, &base, "evil");
        d.changes[0].path = bad.into();
        for (to, body) in [(A, push(d.clone())), (B, offer(d.clone()))] {
            let head = w.a.engine.head();
            w.hostile_sends(to, body);
            let why = w.rejections();
            assert_eq!(why.len(), 1, "{bad:?} to {to}: one refusal, got {why:?}");
            assert_eq!(why[0].0, RejectReason::Malformed, "{bad:?}: {why:?}");
            assert!(w.out.proposals.is_empty());
            assert_eq!(w.a.engine.head(), head, "{bad:?}: nothing accepted");
        }
    }
    w.still_syncing("base, still");
}

#[test]
fn a_path_under_a_symlink_is_refused() {
    let mut w = World::new();
    w.still_syncing("base");
    // A tree where `link` is a symlink out of the share, and a delta that writes under it.
    let link = TreeManifest::from_entries([(
        RelPath::new("link").unwrap(),
        Entry::symlink("/etc").unwrap(),
    )])
    .unwrap();
    let (mut d, _) = delta(&w, &link, "evil");
    // Keep the link, and write through it.
    d.changes[0].path = "link/passwd".into();
    d.removed.clear();
    d.base = Some(link.version_id().to_proto());
    d.base_manifest = Some(link.to_proto());
    w.hostile_sends(B, offer(d));
    let why = w.rejections();
    assert_eq!(why.len(), 1, "{why:?}");
    assert!(why[0].1.contains("link"), "{why:?}");
    assert!(w.b.asked.is_empty());
    w.still_syncing("base, still");
}

#[test]
fn chunks_that_do_not_match_their_ids_are_refused_and_not_stored() {
    let mut w = World::new();
    w.still_syncing("base");
    let id = ChunkId::of(b"what the id says");
    w.hostile_sends(
        B,
        Body::Chunks(proto::Chunks {
            chunks: vec![proto::ChunkData {
                id: Some(id.to_proto()),
                compression: proto::Compression::None as i32,
                data: b"something else".to_vec(),
            }],
        }),
    );
    let why = w.rejections();
    assert_eq!(why.len(), 1, "{why:?}");
    assert_eq!(why[0].0, RejectReason::HashMismatch);
    assert!(!w.b.chunks.contains(&id).unwrap());
    w.still_syncing("base, still");
}

#[test]
fn deltas_naming_chunks_nobody_has_store_and_accept_nothing() {
    let mut w = World::new();
    w.still_syncing("base");
    let base = w.a.folder.clone();
    let (mut d, _) = delta(&w, &base, "x");
    // The file becomes one chunk that exists nowhere, named instead of carried: it follows
    // the base's distinct chunks (b, a, s, e) in the chunk table.
    let ghost = ChunkId::of(b"a chunk nobody has");
    d.literals.clear();
    d.external = vec![proto::ChunkRef {
        id: Some(ghost.to_proto()),
        len: 3,
    }];
    d.changes[0].runs = vec![4, 1];
    let target = TreeManifest::from_entries([(
        RelPath::new("doc").unwrap(),
        Entry::File {
            mode: chorus_chunking::Mode::FILE,
            manifest: chorus_chunking::FileManifest {
                chunks: vec![chorus_chunking::ChunkRef { id: ghost, len: 3 }],
            },
        },
    )])
    .unwrap();
    d.target = Some(target.version_id().to_proto());
    let head = w.a.engine.head();
    w.hostile_sends(A, push(d.clone()));
    w.hostile_sends(B, offer(d));
    // Each asks H for the chunk (it never comes); nothing is accepted or stored as a version.
    let asked = w
        .to_h
        .iter()
        .filter(|(_, b)| matches!(b, Body::NeedChunks(_)))
        .count();
    assert!(
        asked >= 1,
        "{:?}",
        w.to_h.iter().map(|(_, b)| b.name()).collect::<Vec<_>>()
    );
    assert_eq!(w.a.engine.head(), head);
    assert!(w.b.engine.manifest(&target.version_id()).unwrap().is_none());
    assert!(w.b.asked.is_empty());
    w.still_syncing("base, still");
}

#[test]
fn a_version_id_that_does_not_match_its_manifest_is_refused() {
    let mut w = World::new();
    w.still_syncing("base");
    let base = w.a.folder.clone();
    let (mut d, target) = delta(&w, &base, "evil");
    let lie = VersionId([7; 32]);
    d.target = Some(lie.to_proto());
    for (to, body) in [(A, push(d.clone())), (B, offer(d))] {
        w.hostile_sends(to, body);
        let why = w.rejections();
        assert_eq!(why.len(), 1, "{why:?}");
        assert_eq!(why[0].0, RejectReason::HashMismatch, "{why:?}");
    }
    assert!(w.b.engine.manifest(&lie).unwrap().is_none());
    assert!(w.b.engine.manifest(&target.version_id()).unwrap().is_none());
    w.still_syncing("base, still");
}

#[test]
fn a_committed_header_for_a_version_never_sent_is_not_materialized_and_does_not_stall_sync() {
    let mut w = World::new();
    w.still_syncing("base");
    let head = w.a.engine.head();
    // As a hostile leader could: a header committed for content nobody holds.
    let ghost = VersionId([9; 32]);
    let h = AcceptedHeader {
        version: ghost,
        parents: vec![head.0],
        number: VersionNumber {
            major: w.log.len() as u64 + 1,
            minor: 2,
        },
        origin: H,
        created_at_ms: 1,
        redo: Vec::new(),
    };
    w.log.push(h.clone());
    w.b.feed(Event::Committed(vec![h]), &mut w.out);
    w.run();
    assert!(w.b.asked.is_empty());
    assert_ne!(
        w.b.engine.adopted().0,
        ghost,
        "nothing adopted without its content"
    );
    // The next honest version is adopted over it.
    w.still_syncing("base, and after the ghost");
}

#[test]
fn a_forged_answer_to_a_push_is_ignored() {
    let mut w = World::new();
    w.still_syncing("base");
    // B saves a change; before the leader answers, H answers in its stead, with the largest
    // number there is (taken, it would stop B from ever adopting a version again).
    let mine = w.b.edit("from b", &mut w.out);
    let forged = Body::Accepted(proto::Accepted {
        version: Some(mine.version_id().to_proto()),
        number: Some(proto::VersionNumber {
            major: u64::MAX,
            minor: 0,
        }),
    });
    w.hostile_sends(B, forged);
    assert_eq!(w.a.folder, w.b.folder, "B's change went through the leader");
    assert!(
        w.b.engine.adopted().1.major < 1 << 20,
        "B adopted {}",
        w.b.engine.adopted().1
    );
    w.still_syncing("base, still");
}

#[test]
fn a_member_cannot_choose_its_versions_number() {
    let mut w = World::new();
    w.still_syncing("base");
    let before = w.a.engine.head().1;
    let base = w.a.folder.clone();
    let (d, target) = delta(&w, &base, "from h");
    // H claims a number far ahead, and another node's rank, to win every conflict.
    w.hostile_sends(
        A,
        Body::Push(proto::Push {
            number: Some(proto::VersionNumber {
                major: 1 << 40,
                minor: 0,
            }),
            delta: Some(d),
            pushed_before: Vec::new(),
            displaced: Vec::new(),
        }),
    );
    let (head, number) = w.a.engine.head();
    assert_eq!(head, target.version_id(), "H's version was accepted");
    assert_eq!(
        number.major,
        before.major + 1,
        "numbered from the chain: {number}"
    );
    assert_eq!(number.minor, 2, "MINOR is H's rank: {number}");
    w.still_syncing("base, still");
}

#[test]
fn wants_for_ever_different_versions_meet_a_per_peer_budget() {
    let mut w = World::new();
    let mut versions = Vec::new();
    for i in 0..60 {
        w.still_syncing(&format!("version {i}"));
        versions.push(w.a.engine.head().0);
    }
    // Each answer encodes a delta; varying the version asked for defeats the per-Want limit,
    // not the peer's budget.
    let offers_for = |w: &mut World, versions: &[VersionId]| {
        let mut offers = 0;
        for v in versions {
            w.hostile_sends(
                A,
                Body::Want(proto::Want {
                    want: Some(v.to_proto()),
                    have: Some(TreeManifest::empty().version_id().to_proto()),
                }),
            );
            offers += w
                .to_h
                .iter()
                .filter(|(_, b)| matches!(b, Body::Offer(_)))
                .count();
        }
        offers
    };
    let offers = offers_for(&mut w, &versions);
    assert!(
        (30..=34).contains(&offers),
        "a burst of about 32 answers, then about eight a second: {offers}"
    );
    w.still_syncing("the honest members are not held up");
    // Later, the budget is back: versions that went unanswered are answered now.
    w.a.now += 60_000;
    let later = offers_for(&mut w, &versions[56..]);
    assert!(later >= 4, "{later}");
}

#[test]
fn a_want_repeated_at_once_is_answered_once() {
    let mut w = World::new();
    w.still_syncing("base");
    let (head, _) = w.a.engine.head();
    let want = Body::Want(proto::Want {
        want: Some(head.to_proto()),
        have: Some(TreeManifest::empty().version_id().to_proto()),
    });
    // A hundred identical Wants at one instant: each answer would encode a delta.
    let mut offers = 0;
    for _ in 0..100 {
        w.hostile_sends(A, want.clone());
        offers += w
            .to_h
            .iter()
            .filter(|(_, b)| matches!(b, Body::Offer(_)))
            .count();
    }
    assert_eq!(offers, 1, "one answer within the retry period");
    w.still_syncing("base, still");
}
