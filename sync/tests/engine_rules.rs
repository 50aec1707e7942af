//! Rules of the engine that the worked example does not reach, sans IO through the test
//! World (replicas on in-memory folders, so the folder's never-overwrite rule runs too): a
//! materialization that meets local edits never overwrites them nor rebases them onto the new
//! version (they are pushed on the old base and merged by the leader); a retried push that was
//! already merged is answered without merging it twice; a push whose predecessor's answer was
//! lost is merged on that predecessor, not against it, and going back to a tree it pushed
//! before is a change, not a retry; a message from a non-member is ignored.

use std::collections::BTreeSet;

use chorus_chunking::{ChunkId, ChunkStore, ChunkerParams, TreeManifest};
use chorus_merge::ModeRules;
use chorus_proto::Body;
use chorus_proto::header::NodeId;
use chorus_proto::message::Message;
use chorus_sync::EngineConfig;
use chorus_sync::testing::{Envelope, Log, World, letters};

const A: NodeId = 1;
const B: NodeId = 2;
const C: NodeId = 3;
/// The share's one file.
const DOC: &str = "doc";

/// A and B (A leads) on the single-document share, one chunk per letter.
fn world() -> World {
    World::new(&[A, B], letters())
}

/// The user of `id` saves `text`, and the node scans; returns the tree its folder holds.
fn edit(w: &mut World, id: NodeId, text: &str) -> TreeManifest {
    w.edit(id, DOC, text.as_bytes());
    w.tree(id)
}

/// A message to deliver by hand.
fn envelope(from: NodeId, to: NodeId, body: Body) -> Envelope {
    Envelope {
        from,
        to,
        message: Message::parse(body).expect("a well-formed message"),
    }
}

#[test]
fn local_edits_met_by_a_materialization_are_pushed_on_the_old_base() {
    let mut w = world();
    let b0 = edit(&mut w, A, "AaBb");
    w.quiesce();
    assert_eq!(w.text(B, DOC), "AaBb");
    assert_eq!(w.node(B).engine().adopted().0, b0.version_id());

    // A commits AaBbXx; B is asked to materialize it, but holds it unwritten (paused), and
    // B's folder changes meanwhile.
    w.node_mut(B).pause();
    edit(&mut w, A, "AaBbXx");
    w.quiesce();
    let held = w.node(B).held().expect("a version waits to be written");
    assert_eq!(
        held.version,
        w.node(A).engine().head().0,
        "B was asked to materialize the new version"
    );
    assert_eq!(
        w.node(B).engine().adopted().0,
        b0.version_id(),
        "nothing is adopted before the folder holds it"
    );
    // B's user edits; at resume the replica rescans before writing, finds B's edit, writes
    // nothing and reports it.
    w.edit(B, DOC, b"YyAaBb");
    w.request(B, |r, now| r.resume(now, false))
        .expect("resumed");
    assert_eq!(w.text(B, DOC), "YyAaBb", "the edit is not overwritten");
    let push = match w
        .net
        .front()
        .map(|e| (e.from, e.to, e.message.clone().into_body()))
    {
        Some((B, A, Body::Push(p))) => p,
        Some((f, t, body)) => panic!("expected B's push, got {} {f} -> {t}", body.name()),
        None => panic!("expected B's push, nothing is in flight"),
    };
    let base =
        chorus_chunking::VersionId::from_proto(push.delta.as_ref().unwrap().base.as_ref().unwrap())
            .unwrap();
    assert_eq!(base, b0.version_id(), "pushed on the base it was made on");
    w.quiesce();
    assert_eq!(w.text(A, DOC), "YyAaBbXx");
    assert_eq!(w.text(B, DOC), "YyAaBbXx", "both edits survive");
    assert_eq!(w.node(A).engine().adopted(), w.node(B).engine().adopted());
}

#[test]
fn a_retried_push_is_not_merged_twice() {
    let mut w = world();
    edit(&mut w, A, "AaBb");
    w.quiesce();
    edit(&mut w, A, "AaBbXx");
    edit(&mut w, B, "AaBbYy");
    // B's push is duplicated on the wire (a retry crossing the answer).
    let dup = w.net.iter().find(|e| e.from == B).cloned().unwrap();
    w.net.push_back(dup.clone());
    w.quiesce();
    let t = w.text(A, DOC);
    assert_eq!(t.matches("Yy").count(), 1, "B's change is in once: {t}");
    assert_eq!(t.matches("Xx").count(), 1, "A's change is in once: {t}");
    assert_eq!(w.text(B, DOC), t);
    // The same push again, long after it was committed: answered from the log, not merged
    // and committed a second time.
    let headers = w.log.headers().len();
    w.net.push_back(dup);
    w.quiesce();
    assert_eq!(
        w.log.headers().len(),
        headers,
        "no new header for a push already in"
    );
    assert_eq!(w.text(A, DOC), t);
    assert_eq!(w.text(B, DOC), t);
}

#[test]
fn messages_from_non_members_are_ignored() {
    let mut w = world();
    edit(&mut w, A, "AaBb");
    w.quiesce();
    let before = w.node(A).engine().head();
    let stranger = w.one_file(B, DOC, b"evil");
    let delta = chorus_chunking::delta::encode(
        &TreeManifest::empty(),
        &stranger,
        &*w.nodes[&B].chunks,
        &Default::default(),
    )
    .unwrap()
    .0;
    w.deliver(envelope(
        99,
        A,
        Body::Push(chorus_proto::Push {
            number: Some(chorus_proto::VersionNumber { major: 9, minor: 9 }),
            delta: Some(delta),
            pushed_before: Vec::new(),
            displaced: Vec::new(),
        }),
    ));
    assert!(w.net.is_empty() && w.log.pending().is_empty());
    assert_eq!(w.node(A).engine().head(), before);
    assert!(
        w.node(A)
            .engine()
            .manifest(&stranger.version_id())
            .unwrap()
            .is_none()
    );
}

/// A NeedChunks message and the set of chunks it asks for.
fn need_chunks(body: Body) -> (chorus_proto::NeedChunks, BTreeSet<ChunkId>) {
    let Body::NeedChunks(need) = body else {
        panic!("expected NeedChunks, got {}", body.name())
    };
    let ids = need
        .ids
        .iter()
        .map(|i| ChunkId::from_proto(i).unwrap())
        .collect();
    (need, ids)
}

#[test]
fn an_empty_node_catches_up_chunk_by_chunk_and_resumes_without_resending() {
    // Small literal budget and frames: most chunks travel as NeedChunks answers, in many frames.
    let mut cfg = EngineConfig::new(ModeRules::new(false), ChunkerParams::default());
    cfg.encode.literal_budget = 64 << 10;
    cfg.limits.max_frame = 256 << 10;
    let mut w = World::new(&[A, B], cfg);
    for i in 0..24u64 {
        let bytes = chorus_sync::testing::noise(i, 100_000);
        w.node_mut(A)
            .folder_mut()
            .write_file(&format!("f{i:02}"), &bytes);
    }
    w.scan(A);
    let tree = w.tree(A);

    // The offer names most chunks without carrying them; B asks for exactly those.
    let offer = w.take(A, B);
    assert!(matches!(offer, Message::Offer { .. }));
    w.deliver(Envelope {
        from: A,
        to: B,
        message: offer,
    });
    let (need, asked_first) = need_chunks(w.take(B, A).into_body());
    assert!(asked_first.len() > 10, "{} chunks asked", asked_first.len());
    w.deliver(envelope(B, A, Body::NeedChunks(need)));
    let answers: Vec<Envelope> = w.take_sent();
    assert!(
        answers.len() > 3,
        "the chunks travel in several bounded frames"
    );
    // The connection drops after half of them.
    let half = answers.len() / 2;
    let mut received = BTreeSet::new();
    for e in answers.into_iter().take(half) {
        if let Message::Chunks(c) = &e.message {
            received.extend(
                c.chunks
                    .iter()
                    .map(|d| ChunkId::from_proto(d.id.as_ref().unwrap()).unwrap()),
            );
        }
        w.deliver(e);
    }
    assert!(
        w.net.is_empty(),
        "B waits for the rest without asking again"
    );

    // A minute later (no chunk came since: the rest was lost), A offers again (its retry
    // timer), leanly: no literals, which may still be on their way over a slow link. B asks
    // for every chunk it lacks, and none that arrived.
    w.tick_one(B, 60_000);
    assert!(w.net.is_empty(), "B waits for an offer");
    w.tick_one(A, 60_000);
    let offer = w.take(A, B);
    w.deliver(Envelope {
        from: A,
        to: B,
        message: offer,
    });
    let (need, asked) = need_chunks(w.take(B, A).into_body());
    assert!(
        asked.is_disjoint(&received),
        "nothing that arrived is asked twice"
    );
    assert!(
        asked_first
            .difference(&received)
            .all(|id| asked.contains(id)),
        "what never arrived is asked again"
    );
    w.net.push_back(envelope(B, A, Body::NeedChunks(need)));
    w.quiesce();
    assert_eq!(w.tree(B), tree, "B holds everything");
    assert_eq!(w.node(A).engine().adopted(), w.node(B).engine().adopted());
}

#[test]
fn a_large_displaced_hunk_travels_as_the_losers_file_and_stays_loadable() {
    let cfg = EngineConfig::new(ModeRules::new(false), ChunkerParams::default());
    let mut w = World::new(&[A, B], cfg);
    w.edit(A, DOC, b"head\nx\ntail\n");
    w.quiesce();
    // Both replace the middle line with 100 KB of their own: a conflict in lines mode.
    let big = |who: &str| {
        let body: String = (0..2000)
            .map(|i| format!("{who} line {i:05} of a long rewrite\n"))
            .collect();
        format!("head\n{body}tail\n")
    };
    let (mine, theirs) = (big("alice"), big("bob"));
    w.edit(A, DOC, mine.as_bytes());
    w.edit(B, DOC, theirs.as_bytes());
    w.quiesce();
    let merged = w.text(A, DOC);
    assert_eq!(merged, w.text(B, DOC));
    assert_eq!(
        merged, theirs,
        "the higher number (B's 2.1) wins the conflict"
    );
    for h in w.log.headers() {
        assert!(
            h.redo.len() < 8 << 10,
            "a header carries {} redo bytes",
            h.redo.len()
        );
    }
    // The displaced rewrite is on B's redo stack too, as A's file in a stored tree that B
    // holds, chunks and all.
    let redo = w.node(B).engine().redo().unwrap();
    let (tree, path) = redo
        .iter()
        .find_map(|r| match &r.entry.what {
            chorus_merge::Displaced::Whole {
                content: chorus_merge::redo::WholeContent::Stored { tree, path },
                ..
            } => Some((*tree, path.clone())),
            _ => None,
        })
        .expect("a whole-file redo entry");
    let stored = w
        .node(B)
        .engine()
        .manifest(&tree)
        .unwrap()
        .expect("B holds the tree");
    let Some(chorus_chunking::Entry::File { manifest, .. }) = stored.get(&path) else {
        panic!("the stored tree holds the file");
    };
    let bytes: Vec<u8> = manifest
        .chunks
        .iter()
        .flat_map(|c| w.nodes[&B].chunks.get(&c.id).unwrap().unwrap())
        .collect();
    assert_eq!(
        String::from_utf8(bytes).unwrap(),
        mine,
        "nothing displaced is lost"
    );
}

#[test]
fn a_change_back_to_an_earlier_tree_is_a_new_version_not_a_retry() {
    // An undo or a restore pushes a tree that history already holds; it must be accepted
    // again, not answered as if it were a retry of the push that first brought it.
    let mut w = world();
    edit(&mut w, B, "AaBb");
    w.quiesce();
    edit(&mut w, B, "AaBbCc");
    w.quiesce();
    let headers = w.log.headers().len();
    edit(&mut w, B, "AaBb");
    w.quiesce();
    assert_eq!(
        w.log.headers().len(),
        headers + 1,
        "going back is a new version"
    );
    assert_eq!(w.text(A, DOC), "AaBb");
    assert_eq!(w.text(B, DOC), "AaBb");
    edit(&mut w, B, "AaBbCc");
    w.quiesce();
    assert_eq!(
        w.log.headers().len(),
        headers + 2,
        "and so is going forward again"
    );
    assert_eq!(w.text(A, DOC), "AaBbCc");
}

#[test]
fn a_save_pushed_before_the_answer_to_the_previous_push_keeps_that_save() {
    // B's push is merged and committed, but B hears neither the answer nor the commit (it was
    // restarting, or the link dropped them). Its next save is pushed on the base it still
    // has; the leader must not take the earlier push's changes for a rival of the newer save.
    let mut w = world();
    edit(&mut w, A, "AaBb");
    w.quiesce();
    edit(&mut w, B, "AaBbXx");
    w.deafen(B);
    w.quiesce();
    w.hear(B);
    assert_eq!(w.text(A, DOC), "AaBbXx");
    edit(&mut w, A, "ZzAaBbXx"); // and the others go on editing
    edit(&mut w, B, "AaBbXxYy");
    w.tick_one(B, 600_000); // B's retry timer fires
    w.quiesce(); // B hears the commits it missed, then the rest
    assert_eq!(w.text(A, DOC), "ZzAaBbXxYy");
    assert_eq!(w.text(B, DOC), "ZzAaBbXxYy");
}

#[test]
fn going_back_after_lost_answers_is_a_change_not_a_retry() {
    // B saves T1, then T2, and both are taken while B hears nothing; then B's user goes back to
    // T1. History holds T1 already, but this push comes after T2: it is a change, not a retry.
    let mut w = world();
    edit(&mut w, A, "AaBb");
    w.quiesce();
    edit(&mut w, B, "AaBbXx");
    w.deafen(B);
    w.quiesce();
    edit(&mut w, B, "AaBbXxYy");
    w.tick_one(B, 600_000);
    w.quiesce();
    w.hear(B);
    assert_eq!(w.text(A, DOC), "AaBbXxYy");
    edit(&mut w, B, "AaBbXx");
    w.tick_one(B, 600_000);
    w.quiesce();
    assert_eq!(w.text(A, DOC), "AaBbXx", "going back is kept");
    assert_eq!(w.text(B, DOC), "AaBbXx");
}

#[test]
fn a_change_whose_scan_took_long_is_not_offered_again_at_once() {
    // Reading a large share takes seconds. The change it found was timed from the scan's
    // start, so the leader's retry period had all but passed when its first offer went out,
    // and the next tick offered the whole change again (a second 100k-file delta).
    let retry = letters().offer_retry_ms;
    let mut w = world();
    w.node_mut(A).folder_mut().write_file(DOC, b"a long scan\n");
    w.scan_taking(A, 5 * retry);
    assert!(matches!(w.take(A, B), Message::Offer { .. }));
    assert!(w.net.is_empty());
    w.tick_one(A, retry / 2);
    assert!(
        w.net.is_empty(),
        "offered again {} ms after the first offer",
        retry / 2
    );
    // Unanswered for the whole period, it is offered again.
    w.tick_one(A, retry);
    assert!(matches!(w.take(A, B), Message::Offer { .. }));
}

/// A and B (A leads) on a folder share with the default chunk sizes and delta budget.
fn folder_world() -> World {
    World::new(
        &[A, B],
        EngineConfig::new(ModeRules::new(false), ChunkerParams::default()),
    )
}

/// `from` saves 2 MB that do not compress (they travel as literals) and sends them to `to`
/// (`is_it` tells its message); a retry after the bare `retry` interval sent them again while
/// the first copy was still on its way over a slow link, or still being read. Given a second
/// per MiB on top of the interval and still unanswered, they are sent again.
fn a_large_delta_waits_to_arrive(
    from: NodeId,
    to: NodeId,
    retry: u64,
    is_it: fn(&Message) -> bool,
) {
    let mut w = folder_world();
    w.node_mut(from)
        .folder_mut()
        .write_file("big", &chorus_sync::testing::noise(from, 2_000_000));
    w.scan(from);
    assert!(is_it(&w.take(from, to)));
    w.tick_one(from, retry + 1_000);
    assert!(w.net.is_empty(), "sent again before 2 MB could arrive");
    w.tick_one(from, 1_000);
    assert!(is_it(&w.take(from, to)));
}

#[test]
fn a_large_offer_is_given_time_to_arrive_before_it_is_sent_again() {
    let retry = folder_world().cfg.offer_retry_ms;
    a_large_delta_waits_to_arrive(A, B, retry, |m| matches!(m, Message::Offer { .. }));
}

#[test]
fn a_large_push_is_given_time_to_arrive_before_it_is_sent_again() {
    let retry = folder_world().cfg.push_retry_ms;
    a_large_delta_waits_to_arrive(B, A, retry, |m| matches!(m, Message::Push { .. }));
}

#[test]
fn a_want_while_its_offer_is_on_its_way_does_not_send_the_delta_again() {
    // A member that joins learns the head before the leader's offer of it has arrived (a
    // version of 100k files is megabytes, and read for a while), and asks for it. The leader
    // answered each such Want with the whole delta again: three offers of one 100k-file
    // version in 0.6 s on a join.
    let mut w = folder_world();
    w.node_mut(A)
        .folder_mut()
        .write_file("big", &chorus_sync::testing::noise(A, 2_000_000));
    w.scan(A);
    let Message::Offer { delta, .. } = w.take(A, B) else {
        panic!("A offers its change to B");
    };
    let want = Envelope {
        from: B,
        to: A,
        message: Message::Want {
            want: delta.target,
            have: TreeManifest::empty().version_id(),
        },
    };
    w.deliver(want.clone());
    assert!(w.net.is_empty(), "the delta sent again while on its way");
    // 2 MB are given ~1.9 s to arrive, and a Want half its retry period on top.
    w.tick_one(A, 1_000);
    w.deliver(want.clone());
    assert!(w.net.is_empty(), "the delta sent again while on its way");
    // Past that, the offer is taken to be lost: a Want has it sent again.
    w.tick_one(A, 1_500);
    assert!(w.net.is_empty(), "the leader's own retry is not due yet");
    w.deliver(want);
    assert!(matches!(w.take(A, B), Message::Offer { .. }));
}

/// A, B and C (A leads) on a folder share: A saves 2 MB, and A and C commit them while every
/// message to B is held back (B's offer of the version still on its way). The world, and how
/// many offers went to B meanwhile.
fn committed_while_b_waits() -> (World, usize) {
    let mut w = World::new(
        &[A, B, C],
        EngineConfig::new(ModeRules::new(false), ChunkerParams::default()),
    );
    w.node_mut(A)
        .folder_mut()
        .write_file("big", &chorus_sync::testing::noise(A, 2_000_000));
    w.scan(A);
    let mut offers_to_b = 0;
    let mut committed = 0;
    for _ in 0..100 {
        let sent = w.take_sent();
        if sent.is_empty() {
            committed += w.commit();
            if w.net.is_empty() {
                break;
            }
            continue;
        }
        for e in sent {
            if e.to == B {
                offers_to_b += usize::from(matches!(e.message, Message::Offer { .. }));
            } else {
                w.deliver(e);
            }
        }
    }
    assert!(committed > 0, "A and C hold the version: it is committed");
    (w, offers_to_b)
}

#[test]
fn a_version_committed_while_its_offer_is_on_its_way_is_not_offered_again_at_once() {
    // The commit made the leader forget its offers, and B was sent the whole delta again at
    // once.
    let (mut w, offers_to_b) = committed_while_b_waits();
    assert_eq!(offers_to_b, 1, "B's offer was sent again at the commit");
    // Unanswered past its retry period (and the time 2 MB are given), it goes again.
    w.tick_one(A, 3_000);
    assert!(
        w.take_sent()
            .iter()
            .any(|e| e.to == B && matches!(e.message, Message::Offer { .. }))
    );
}

#[test]
fn a_leader_keeps_no_retry_time_for_an_offer_it_no_longer_makes() {
    // After the commit A makes v2: the offer of v to B is no longer made, but its retry time
    // was kept. Past and never renewed, it made the node's next deadline "now" for ever (a
    // busy loop).
    let (mut w, _) = committed_while_b_waits();
    w.node_mut(A).folder_mut().write_file("next", b"v2\n");
    w.scan(A);
    w.take_sent();
    w.tick_one(A, 10_000);
    w.take_sent();
    let now = w.now + 10_000;
    let next = w.node(A).poll_timeout();
    assert!(
        next.is_none_or(|at| at > now),
        "the next deadline ({next:?}) is not after now ({now})"
    );
}

/// B's push waits for a header (C's) to commit first; then it is taken in the next one. B
/// hears that header's answer before its commit (the answer came first; Raft's append is
/// late): it writes the newer version while the head it knows is the older one. It must not
/// then write the older one over it, see its folder hold the newer one, and push that back as
/// a change of its own (on the build before, the newer version went back to the leader as B's
/// work, numbered from B's old adoption, and was merged again: an extra header, and in the
/// seeded simulation the same conflicts displaced a second time).
#[test]
fn an_answer_heard_before_the_commit_before_it_is_not_pushed_back() {
    let mut w = World::new(&[A, B, C], letters());
    edit(&mut w, A, "AaBb");
    w.quiesce();
    // C's change is proposed; B's arrives while it is out, so it waits for the next header.
    edit(&mut w, C, "AaBbCc");
    while w.log.pending().is_empty() {
        assert!(w.deliver_one(), "the leader proposes C's change");
    }
    edit(&mut w, B, "XxAaBb");
    while w.deliver_one() {}
    assert_eq!(w.commit(), 1, "C's header");
    assert!(
        w.node(B).engine().work().is_some(),
        "B's change still waits"
    );
    // The leader proposes B's change; it commits while B hears nothing, so B misses both the
    // commit and the answer.
    for _ in 0..100 {
        if !w.log.pending().is_empty() {
            break;
        }
        if !w.deliver_one() {
            w.tick(100);
        }
    }
    assert!(
        !w.log.pending().is_empty(),
        "the leader proposes B's change"
    );
    w.deafen(B);
    assert_eq!(w.commit(), 1, "B's header");
    w.hear(B);
    // B pushes again and is answered at once, before it hears the commit.
    w.tick_one(B, 600_000);
    assert!(w.run(10_000), "the group settles");
    for id in [A, B, C] {
        assert_eq!(w.text(id, DOC), "XxAaBbCc", "node {id}");
    }
    let headers = w.log.headers().to_vec();
    for (i, h) in headers.iter().enumerate() {
        for p in h.parents.iter().skip(1) {
            assert!(
                !headers[..i].iter().any(|e| e.version == *p),
                "header {} takes in an accepted version as a push: {headers:?}",
                h.number
            );
        }
    }
    assert_eq!(headers.len(), 3, "{headers:?}");
}
