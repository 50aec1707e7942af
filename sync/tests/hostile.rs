//! A hostile member, sans IO through the test World: a node that is in the membership (so its
//! messages are read) sends what an honest node never would: paths that climb out of the share
//! (`../`, absolute paths, a path under a symlink), chunks that do not match their ids, deltas
//! naming chunks nobody has, a version id that does not match its manifest, and (as a leader
//! could) a committed header for a version it never sent. Each is refused (a `Rejected` with
//! the reason where the protocol has one), nothing of it is stored or written into a folder,
//! and the honest nodes keep syncing.
//!
//! The hostile member is a puppet of the World: a voter with a rank and no replica, whose
//! messages the test writes and whose mail it reads. Outsiders (valid Noise keys, no
//! membership) and forged invites are refused at the network layer; the daemon's
//! `three_processes.rs` tests those with real processes. Oversized frames are refused before
//! they are read (the daemon's `net::codec` tests) and before they are decoded (chorus-proto's
//! frame tests).

use chorus_chunking::delta::encode;
use chorus_chunking::{ChunkId, ChunkStore, Entry, RelPath, TreeManifest, VersionId};
use chorus_proto::header::{AcceptedHeader, NodeId};
use chorus_proto::ids::VersionNumber;
use chorus_proto::message::Message;
use chorus_proto::{self as proto, Body, RejectReason};
use chorus_sync::testing::{Envelope, Log, World, letters};
use chorus_sync::{Event, Notice};

const A: NodeId = 1;
const B: NodeId = 2;
/// The hostile member.
const H: NodeId = 3;
/// The share's one file.
const DOC: &str = "doc";

/// Two honest nodes (A leads) and the hostile member H, a voter ranked third.
fn world() -> World {
    let mut w = World::new(&[A, B, H], letters());
    w.puppet(H);
    w
}

/// H sends `body` to `to`; what follows runs until nothing is in flight. H's mailbox then
/// holds what the honest nodes sent it meanwhile.
fn hostile_sends(w: &mut World, to: NodeId, body: Body) {
    w.take_mail(H);
    w.deliver(Envelope {
        from: H,
        to,
        message: Message::parse(body).expect("a well-formed message"),
    });
    w.quiesce();
}

/// What the honest nodes sent H since it last spoke.
fn to_h(w: &World) -> impl Iterator<Item = &Message> {
    w.mail(H).iter().map(|e| &e.message)
}

/// The reasons the honest nodes gave H for refusing it.
fn rejections(w: &World) -> Vec<(RejectReason, String)> {
    to_h(w)
        .filter_map(|m| match m {
            Message::Rejected { reason, detail } => Some((*reason, detail.clone())),
            _ => None,
        })
        .collect()
}

/// An honest edit on A still reaches B, and nothing else changed on either.
fn still_syncing(w: &mut World, text: &str) {
    w.edit(A, DOC, text.as_bytes());
    w.quiesce();
    assert_eq!(w.tree(B), w.tree(A), "B has A's edit");
    assert_eq!(w.node(A).engine().head(), w.node(B).engine().head());
}

/// Node `id`'s folder as it is now, with what it was told since the last call taken away.
fn folder_now(w: &mut World, id: NodeId) -> TreeManifest {
    w.node_mut(id).take_notices();
    w.tree(id)
}

/// Node `id` wrote nothing into its folder since `folder_now` gave `before`: no version
/// written, none waiting to be.
fn wrote_nothing(w: &mut World, id: NodeId, before: &TreeManifest) {
    let notices = w.node_mut(id).take_notices();
    assert!(
        !notices
            .iter()
            .any(|n| matches!(n, Notice::Materialized { .. })),
        "{notices:?}"
    );
    assert!(w.node(id).held().is_none());
    assert_eq!(&w.tree(id), before, "the folder is as it was");
}

/// A delta from `base` to a tree holding `text` in `doc`, built as an honest sender would.
fn delta(w: &World, base: &TreeManifest, text: &str) -> (proto::Delta, TreeManifest) {
    let target = w.one_file(A, DOC, text.as_bytes());
    let d = encode(base, &target, &*w.nodes[&A].chunks, &Default::default())
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
    let mut w = world();
    still_syncing(&mut w, "base");
    let base = w.tree(A);
    for bad in ["../escape", "/etc/passwd", "a/../../b", "./x", "a//b", ""] {
        let (mut d, _) = delta(&w, &base, "evil");
        d.changes[0].path = bad.into();
        for (to, body) in [(A, push(d.clone())), (B, offer(d.clone()))] {
            let head = w.node(A).engine().head();
            hostile_sends(&mut w, to, body);
            let why = rejections(&w);
            assert_eq!(why.len(), 1, "{bad:?} to {to}: one refusal, got {why:?}");
            assert_eq!(why[0].0, RejectReason::Malformed, "{bad:?}: {why:?}");
            assert!(w.log.pending().is_empty());
            assert_eq!(w.node(A).engine().head(), head, "{bad:?}: nothing accepted");
        }
    }
    still_syncing(&mut w, "base, still");
}

#[test]
fn a_path_under_a_symlink_is_refused() {
    let mut w = world();
    still_syncing(&mut w, "base");
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
    let before = folder_now(&mut w, B);
    hostile_sends(&mut w, B, offer(d));
    let why = rejections(&w);
    assert_eq!(why.len(), 1, "{why:?}");
    assert!(why[0].1.contains("link"), "{why:?}");
    wrote_nothing(&mut w, B, &before);
    still_syncing(&mut w, "base, still");
}

#[test]
fn chunks_that_do_not_match_their_ids_are_refused_and_not_stored() {
    let mut w = world();
    still_syncing(&mut w, "base");
    let id = ChunkId::of(b"what the id says");
    hostile_sends(
        &mut w,
        B,
        Body::Chunks(proto::Chunks {
            chunks: vec![proto::ChunkData {
                id: Some(id.to_proto()),
                compression: proto::Compression::None as i32,
                data: b"something else".to_vec(),
            }],
            groups: Vec::new(),
        }),
    );
    let why = rejections(&w);
    assert_eq!(why.len(), 1, "{why:?}");
    assert_eq!(why[0].0, RejectReason::HashMismatch);
    assert!(!w.nodes[&B].chunks.contains(&id).unwrap());
    still_syncing(&mut w, "base, still");
}

/// A group of chunks compressed against a dictionary: one whose bytes are not what its ids
/// say is refused and stores nothing (the plain chunk beside it neither); one naming a
/// dictionary the node does not hold is left out, and the node syncs on.
#[test]
fn chunk_groups_that_lie_or_name_unknown_dictionaries_store_nothing() {
    let mut w = world();
    still_syncing(&mut w, "base");
    let plain = b"a plain chunk beside the group";
    let said = ChunkId::of(b"what the group's id says");
    let group = |dictionary: ChunkId, data: &[u8]| proto::ChunkGroup {
        ids: vec![said.to_proto()],
        lens: vec![data.len() as u32],
        dictionary: vec![dictionary.to_proto()],
        data: zstd::encode_all(data, 3).unwrap(),
    };
    // Its dictionary: a chunk B holds (the base's file).
    let held = w.tree(B).chunks().next().expect("the base has a chunk").id;
    hostile_sends(
        &mut w,
        B,
        Body::Chunks(proto::Chunks {
            chunks: vec![proto::ChunkData {
                id: Some(ChunkId::of(plain).to_proto()),
                compression: proto::Compression::None as i32,
                data: plain.to_vec(),
            }],
            groups: vec![group(held, b"something else")],
        }),
    );
    let why = rejections(&w);
    assert_eq!(why.len(), 1, "{why:?}");
    assert_eq!(why[0].0, RejectReason::HashMismatch);
    assert!(!w.nodes[&B].chunks.contains(&said).unwrap());
    assert!(!w.nodes[&B].chunks.contains(&ChunkId::of(plain)).unwrap());

    let unknown = ChunkId::of(b"a dictionary nobody holds");
    let honest = b"what the group's id says";
    hostile_sends(
        &mut w,
        B,
        Body::Chunks(proto::Chunks {
            chunks: Vec::new(),
            groups: vec![group(unknown, honest)],
        }),
    );
    assert!(rejections(&w).is_empty(), "{:?}", rejections(&w));
    assert!(!w.nodes[&B].chunks.contains(&said).unwrap());
    still_syncing(&mut w, "base, still");
}

#[test]
fn deltas_naming_chunks_nobody_has_store_and_accept_nothing() {
    let mut w = world();
    still_syncing(&mut w, "base");
    let base = w.tree(A);
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
                chunks: vec![chorus_chunking::ChunkRef { id: ghost, len: 3 }].into(),
            },
        },
    )])
    .unwrap();
    d.target = Some(target.version_id().to_proto());
    let head = w.node(A).engine().head();
    let before = folder_now(&mut w, B);
    hostile_sends(&mut w, A, push(d.clone()));
    hostile_sends(&mut w, B, offer(d));
    // Each asks H for the chunk (it never comes); nothing is accepted or stored as a version.
    let asked = to_h(&w)
        .filter(|m| matches!(m, Message::NeedChunks { .. }))
        .count();
    assert!(
        asked >= 1,
        "{:?}",
        to_h(&w).map(|m| m.name()).collect::<Vec<_>>()
    );
    assert_eq!(w.node(A).engine().head(), head);
    assert!(
        w.node(B)
            .engine()
            .manifest(&target.version_id())
            .unwrap()
            .is_none()
    );
    wrote_nothing(&mut w, B, &before);
    still_syncing(&mut w, "base, still");
}

#[test]
fn a_version_id_that_does_not_match_its_manifest_is_refused() {
    let mut w = world();
    still_syncing(&mut w, "base");
    let base = w.tree(A);
    let (mut d, target) = delta(&w, &base, "evil");
    let lie = VersionId([7; 32]);
    d.target = Some(lie.to_proto());
    for (to, body) in [(A, push(d.clone())), (B, offer(d))] {
        hostile_sends(&mut w, to, body);
        let why = rejections(&w);
        assert_eq!(why.len(), 1, "{why:?}");
        assert_eq!(why[0].0, RejectReason::HashMismatch, "{why:?}");
    }
    assert!(w.node(B).engine().manifest(&lie).unwrap().is_none());
    assert!(
        w.node(B)
            .engine()
            .manifest(&target.version_id())
            .unwrap()
            .is_none()
    );
    still_syncing(&mut w, "base, still");
}

#[test]
fn a_committed_header_for_a_version_never_sent_is_not_materialized_and_does_not_stall_sync() {
    let mut w = world();
    still_syncing(&mut w, "base");
    let head = w.node(A).engine().head();
    // As a hostile leader could: a header committed for content nobody holds.
    let ghost = VersionId([9; 32]);
    let h = AcceptedHeader {
        version: ghost,
        parents: vec![head.0],
        number: VersionNumber::new(w.log.headers().len() as u64 + 1, 2),
        origin: H,
        created_at_ms: 1,
        redo: Vec::new(),
    };
    w.log.append(h.clone());
    let before = folder_now(&mut w, B);
    w.feed(B, Event::Committed(vec![h]));
    w.quiesce();
    wrote_nothing(&mut w, B, &before);
    assert_ne!(
        w.node(B).engine().adopted().0,
        ghost,
        "nothing adopted without its content"
    );
    // The next honest version is adopted over it.
    still_syncing(&mut w, "base, and after the ghost");
}

#[test]
fn a_forged_answer_to_a_push_is_ignored() {
    let mut w = world();
    still_syncing(&mut w, "base");
    // B saves a change; before the leader answers, H answers in its stead, with the largest
    // number there is (taken, it would stop B from ever adopting a version again).
    w.edit(B, DOC, b"from b");
    let mine = w.tree(B);
    let forged = Body::Accepted(proto::Accepted {
        version: Some(mine.version_id().to_proto()),
        number: Some(proto::VersionNumber {
            major: u64::MAX,
            minor: 0,
        }),
    });
    hostile_sends(&mut w, B, forged);
    assert_eq!(w.tree(A), w.tree(B), "B's change went through the leader");
    assert!(
        w.node(B).engine().adopted().1.major < 1 << 20,
        "B adopted {}",
        w.node(B).engine().adopted().1
    );
    still_syncing(&mut w, "base, still");
}

#[test]
fn a_member_cannot_choose_its_versions_number() {
    let mut w = world();
    still_syncing(&mut w, "base");
    let before = w.node(A).engine().head().1;
    let base = w.tree(A);
    let (d, target) = delta(&w, &base, "from h");
    // H claims a number far ahead, and another node's rank, to win every conflict.
    hostile_sends(
        &mut w,
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
    let (head, number) = w.node(A).engine().head();
    assert_eq!(head, target.version_id(), "H's version was accepted");
    assert_eq!(
        number.major,
        before.major + 1,
        "numbered from the chain: {number}"
    );
    assert_eq!(number.minor, 2, "MINOR is H's rank: {number}");
    still_syncing(&mut w, "base, still");
}

/// How many offers H got since it last spoke.
fn offers_to_h(w: &World) -> usize {
    to_h(w)
        .filter(|m| matches!(m, Message::Offer { .. }))
        .count()
}

#[test]
fn wants_for_ever_different_versions_meet_a_per_peer_budget() {
    let mut w = world();
    let mut versions = Vec::new();
    for i in 0..60 {
        still_syncing(&mut w, &format!("version {i}"));
        versions.push(w.node(A).engine().head().0);
    }
    // Each answer encodes a delta; varying the version asked for defeats the per-Want limit,
    // not the peer's budget.
    let offers_for = |w: &mut World, versions: &[VersionId]| {
        let mut offers = 0;
        for v in versions {
            hostile_sends(
                w,
                A,
                Body::Want(proto::Want {
                    want: Some(v.to_proto()),
                    have: Some(TreeManifest::empty().version_id().to_proto()),
                }),
            );
            offers += offers_to_h(w);
        }
        offers
    };
    // Past the time the sync's own offers to H are given to arrive (a Want meanwhile is
    // answered by the offer on its way).
    w.now += 60_000;
    let offers = offers_for(&mut w, &versions);
    assert!(
        (30..=34).contains(&offers),
        "a burst of about 32 answers, then about eight a second: {offers}"
    );
    still_syncing(&mut w, "the honest members are not held up");
    // Later, the budget is back: versions that went unanswered are answered now.
    w.now += 60_000;
    let later = offers_for(&mut w, &versions[56..]);
    assert!(later >= 4, "{later}");
}

#[test]
fn a_want_repeated_at_once_is_answered_once() {
    let mut w = world();
    still_syncing(&mut w, "base");
    let (head, _) = w.node(A).engine().head();
    let want = Body::Want(proto::Want {
        want: Some(head.to_proto()),
        have: Some(TreeManifest::empty().version_id().to_proto()),
    });
    // H says it stored the head the sync offered it (a Want while that offer is on its way
    // is answered by the offer itself), then asks for it again and again.
    hostile_sends(
        &mut w,
        A,
        Body::Stored(proto::Stored {
            version: Some(head.to_proto()),
        }),
    );
    // A hundred identical Wants at one instant: each answer would encode a delta.
    let mut offers = 0;
    for _ in 0..100 {
        hostile_sends(&mut w, A, want.clone());
        offers += offers_to_h(&w);
    }
    assert_eq!(offers, 1, "one answer within the retry period");
    still_syncing(&mut w, "base, still");
}

/// A push whose redo entries (what it says it displaced on purpose) name a stored tree nobody
/// holds, behind entries that grow past a header's bound once the leader re-encodes them (raw
/// byte arrays of control characters become escaped strings, three times longer). Before, the
/// entry that did not fit went to the next header with its tree as one a majority must hold
/// first: nobody ever did, and nothing committed for anyone again. Entries naming trees the
/// leader lacks are left out; the group syncs on.
#[test]
fn redo_entries_naming_trees_nobody_holds_do_not_hold_the_group() {
    let mut w = world();
    still_syncing(&mut w, "base");
    let base = w.tree(A);
    let (d, _) = delta(&w, &base, "from h");
    use chorus_merge::redo::{Bytes, Displaced, RedoEntry, WholeContent};
    let number = chorus_chunking::VersionNumber::new(1, 2);
    let entry = |content: WholeContent| RedoEntry {
        path: Some(chorus_chunking::RelPath::new(DOC.to_string()).unwrap()),
        displaced_by: number,
        displaced_from: number,
        what: Displaced::Whole {
            content,
            kept: None,
        },
    };
    let ghost = VersionId([0xab; 32]);
    let mut entries = serde_json::to_value([
        entry(WholeContent::Bytes(Bytes(vec![1; 6000]))),
        entry(WholeContent::Bytes(Bytes(vec![1; 6000]))),
        entry(WholeContent::Stored {
            tree: ghost,
            path: chorus_chunking::RelPath::new(DOC.to_string()).unwrap(),
        }),
    ])
    .unwrap();
    // The bytes as a raw array, as a sender may write them: 2 bytes each on the wire.
    for i in 0..2 {
        entries[i]["what"]["whole"]["content"]["bytes"] = serde_json::json!(vec![1u8; 6000]);
    }
    let displaced = serde_json::to_string(&entries).unwrap();
    let parsed = chorus_sync::header::decode_redo(displaced.as_bytes())
        .expect("entries an honest node would decode");
    assert_eq!(parsed.len(), 3);
    assert!(parsed[2].stored_trees().len() == 1);
    assert!(displaced.len() < chorus_proto::header::MAX_REDO_BYTES);
    let Body::Push(mut p) = push(d) else {
        unreachable!()
    };
    p.displaced = displaced.into_bytes();
    hostile_sends(&mut w, A, Body::Push(p));
    w.run(10_000);
    still_syncing(&mut w, "base, and after");
    still_syncing(&mut w, "base, and after, again");
}
