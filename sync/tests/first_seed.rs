//! The first seed's worked example, letter for letter, through two replicas of the test World
//! and no sockets: Alice (leader) and Bob share `AaBbCcDd`, one chunk per letter as in the
//! seed. They lose contact; Alice makes `AaBbEeDd`, Bob `AaBbCcDdFf`. On reconnect Bob says "I
//! think you have AaBbCcDd; add Ff after the d"; Alice merges and answers "up to b, then Ee,
//! then from D". If Bob misses that answer, edits again (`AaBbCGcDdFf`) and pushes with the old
//! base, Alice, who forgot `AaBbCcDd`, asks for it and for the chunks C and c; then answers "up
//! to b, then Ee, then G, then from D". Both end with identical bytes.
//!
//! Every message is taken (and delivered, or lost) by hand, and Raft's commit is played by the
//! test, which says who hears of it: the replicas are sans IO, so the whole exchange is
//! deterministic. Versions are written into in-memory folders, so the rule that a folder is
//! never written over a change runs too.

use std::collections::{BTreeSet, HashMap};

use chorus_chunking::{ChunkId, ChunkStore, Entry, TreeManifest, VersionId};
use chorus_proto::header::{AcceptedHeader, NodeId};
use chorus_proto::message::Message;
use chorus_proto::{Body, Delta};
use chorus_sync::testing::{Envelope, World, letters};
use chorus_sync::{Event, Retention};

const ALICE: NodeId = 1;
const BOB: NodeId = 2;
/// The share's one file.
const DOC: &str = "doc";

fn letter(c: char) -> ChunkId {
    ChunkId::of(&[c as u8])
}

/// A delta in the seed's words: `[..]` copies chunks of the base, `+..+` carries new ones.
fn describe(delta: &Delta, base: &TreeManifest, target: &TreeManifest) -> String {
    let letters: HashMap<ChunkId, char> = ('A'..='z').map(|c| (letter(c), c)).collect();
    let mut seen = BTreeSet::new();
    let n_base = base.chunks().filter(|c| seen.insert(c.id)).count() as u64;
    let change = delta
        .changes
        .iter()
        .find(|c| c.path == "doc")
        .expect("the delta changes doc");
    let Some(Entry::File { manifest, .. }) = target.get_str("doc") else {
        panic!("no doc in the target")
    };
    let mut pos = 0usize;
    let mut out = String::new();
    // A run may cross from the base's chunks into the carried ones (the encoder joins
    // adjacent table ranges): split it there.
    let mut pieces = Vec::new();
    for pair in change.runs.chunks(2) {
        let (start, count) = (pair[0], pair[1]);
        if start < n_base && start + count > n_base {
            pieces.push((start, n_base - start));
            pieces.push((n_base, start + count - n_base));
        } else {
            pieces.push((start, count));
        }
    }
    for (start, count) in pieces {
        let count = count as usize;
        let text: String = manifest.chunks[pos..pos + count]
            .iter()
            .map(|c| letters[&c.id])
            .collect();
        pos += count;
        if start < n_base {
            out += &format!("[{text}]");
        } else {
            out += &format!("+{text}+");
        }
    }
    assert_eq!(pos, manifest.chunks.len(), "the runs cover the file");
    out
}

/// Alice (leading) and Bob on the single-document share, one chunk per letter.
fn world() -> World {
    World::new(&[ALICE, BOB], letters())
}

/// The user of `id` saves `text`, and the node scans; returns the tree its folder holds.
fn edit(w: &mut World, id: NodeId, text: &str) -> TreeManifest {
    w.edit(id, DOC, text.as_bytes());
    w.tree(id)
}

/// The next message in flight, as on the wire; it must go from `from` to `to`.
fn take(w: &mut World, from: NodeId, to: NodeId) -> Body {
    w.take(from, to).into_body()
}

/// Delivers `body` from `from` to the other node.
fn deliver(w: &mut World, from: NodeId, body: Body) {
    let to = if from == ALICE { BOB } else { ALICE };
    w.deliver(Envelope {
        from,
        to,
        message: Message::parse(body).expect("a well-formed message"),
    });
}

/// Raft commits the pending proposal: it returns the header, which only Alice hears of.
fn commit(w: &mut World) -> AcceptedHeader {
    assert_eq!(w.log.pending().len(), 1, "one proposal is pending");
    let mut headers = w.commit_to(&[ALICE]);
    assert_eq!(headers.len(), 1);
    headers.remove(0)
}

/// The tree of version `id` as node `node` stores it.
fn stored(w: &World, node: NodeId, id: &VersionId) -> TreeManifest {
    w.node(node)
        .engine()
        .manifest(id)
        .unwrap()
        .map(std::sync::Arc::unwrap_or_clone)
        .expect("version stored")
}

fn push_of(body: Body) -> chorus_proto::Push {
    match body {
        Body::Push(p) => p,
        other => panic!("expected Push, got {}", other.name()),
    }
}

fn offer_of(body: Body) -> Delta {
    match body {
        Body::Offer(o) => o.delta.unwrap(),
        other => panic!("expected Offer, got {}", other.name()),
    }
}

/// Up to the point where Alice answers Bob's first push: both shared AaBbCcDd, edited apart,
/// Bob pushed, Alice merged, replicated to Bob and committed. Returns the world and the
/// versions (B0 = AaBbCcDd, L1 = Bob's AaBbCcDdFf, M = the merge).
fn until_the_answer() -> (World, TreeManifest, TreeManifest, TreeManifest) {
    let mut w = world();

    // Alice starts the share with AaBbCcDd; it is offered to Bob, stored, and committed.
    let b0 = edit(&mut w, ALICE, "AaBbCcDd");
    let offer = offer_of(take(&mut w, ALICE, BOB));
    deliver(
        &mut w,
        ALICE,
        Body::Offer(chorus_proto::Offer {
            delta: Some(offer),
            extra: false,
        }),
    );
    let stored_b0 = take(&mut w, BOB, ALICE);
    assert!(matches!(stored_b0, Body::Stored(_)));
    deliver(&mut w, BOB, stored_b0);
    let h1 = commit(&mut w);
    w.feed(BOB, Event::Committed(vec![h1]));
    assert_eq!(w.text(ALICE, DOC), "AaBbCcDd");
    assert_eq!(
        w.text(BOB, DOC),
        "AaBbCcDd",
        "Bob materialized the shared version"
    );
    assert_eq!(w.node(BOB).engine().adopted().1.to_string(), "1.0");

    // They lose contact. Alice makes AaBbEeDd (her offer of it is lost); Bob makes AaBbCcDdFf.
    edit(&mut w, ALICE, "AaBbEeDd");
    let lost = offer_of(take(&mut w, ALICE, BOB));
    assert_eq!(
        describe(
            &lost,
            &b0,
            &stored(
                &w,
                ALICE,
                &VersionId::from_proto(lost.target.as_ref().unwrap()).unwrap()
            )
        ),
        "[AaBb]+Ee+[Dd]"
    );
    let l1 = edit(&mut w, BOB, "AaBbCcDdFf");

    // Contact is back. Bob: "I think you have AaBbCcDd; I want you to add Ff after the d."
    let push = push_of(take(&mut w, BOB, ALICE));
    let delta = push.delta.clone().unwrap();
    assert_eq!(
        VersionId::from_proto(delta.base.as_ref().unwrap()).unwrap(),
        b0.version_id()
    );
    assert_eq!(describe(&delta, &b0, &l1), "[AaBbCcDd]+Ff+");
    assert_eq!(
        push.number.unwrap().major,
        2,
        "built on accepted 1: numbered 2.1"
    );
    assert_eq!(push.number.unwrap().minor, 1);
    deliver(&mut w, BOB, Body::Push(push));

    // Alice merges (her 2.0 with Bob's 2.1) and replicates the result to Bob before
    // proposing it: as a delta against the version Bob pushed.
    let offer = offer_of(take(&mut w, ALICE, BOB));
    let m_id = VersionId::from_proto(offer.target.as_ref().unwrap()).unwrap();
    let m = stored(&w, ALICE, &m_id);
    assert_eq!(w.text_in(ALICE, &m, DOC), "AaBbEeDdFf");
    assert_eq!(describe(&offer, &l1, &m), "[AaBb]+Ee+[DdFf]");
    assert!(
        w.log.pending().is_empty(),
        "nothing is proposed before a majority holds it"
    );
    deliver(
        &mut w,
        ALICE,
        Body::Offer(chorus_proto::Offer {
            delta: Some(offer),
            extra: false,
        }),
    );
    // Bob holds M now, but his change is unanswered: he does not fast-forward over it.
    assert_eq!(w.text(BOB, DOC), "AaBbCcDdFf");
    assert_eq!(w.node(BOB).engine().work(), Some(l1.version_id()));
    let stored_m = take(&mut w, BOB, ALICE);
    assert!(matches!(stored_m, Body::Stored(_)));
    deliver(&mut w, BOB, stored_m);
    (w, b0, l1, m)
}

#[test]
fn bob_hears_the_answer_and_both_are_synchronized() {
    let (mut w, _b0, l1, m) = until_the_answer();
    let h2 = commit(&mut w);
    assert_eq!(h2.number.major, 2);
    // Alice: "I think you have AaBbCcDdFf; take the part up to b, then add Ee, then the part
    // starting with D."
    let merged = match take(&mut w, ALICE, BOB) {
        Body::Merged(m) => m,
        other => panic!("expected Merged, got {}", other.name()),
    };
    assert_eq!(
        VersionId::from_proto(merged.pushed.as_ref().unwrap()).unwrap(),
        l1.version_id()
    );
    assert_eq!(
        describe(merged.delta.as_ref().unwrap(), &l1, &m),
        "[AaBb]+Ee+[DdFf]"
    );
    deliver(&mut w, ALICE, Body::Merged(merged));
    w.feed(BOB, Event::Committed(vec![h2]));
    assert_eq!(w.text(ALICE, DOC), "AaBbEeDdFf");
    assert_eq!(w.text(BOB, DOC), "AaBbEeDdFf");
    assert_eq!(
        w.node(ALICE).engine().adopted(),
        w.node(BOB).engine().adopted()
    );
    assert_eq!(w.node(BOB).engine().adopted().1.to_string(), "2.1");
    assert!(w.node(ALICE).engine().is_settled() && w.node(BOB).engine().is_settled());
    assert!(
        w.net.is_empty(),
        "nothing else round-trips: {:?}",
        w.net.len()
    );
}

#[test]
fn bob_misses_the_answer_pushes_on_the_old_base_and_both_end_identical() {
    let (mut w, b0, _l1, m) = until_the_answer();
    let h2 = commit(&mut w);
    // Alice's answer is lost, and Raft has not told Bob about the commit yet.
    assert!(matches!(take(&mut w, ALICE, BOB), Body::Merged(_)));
    assert_eq!(w.text(ALICE, DOC), "AaBbEeDdFf");

    // Alice takes the opportunity to forget AaBbCcDd (and with it the chunks C and c).
    let report = w
        .node_mut(ALICE)
        .engine_mut()
        .collect_garbage(
            u64::MAX,
            &Retention {
                keep_last: 1,
                keep_ms: 0,
            },
        )
        .unwrap();
    assert!(report.versions_removed >= 2, "{report:?}");
    assert!(
        w.node(ALICE)
            .engine()
            .manifest(&b0.version_id())
            .unwrap()
            .is_none()
    );
    let alice_chunks = w.nodes[&ALICE].chunks.clone();
    for c in ['C', 'c'] {
        assert!(
            !alice_chunks.contains(&letter(c)).unwrap(),
            "{c} is forgotten"
        );
    }
    assert!(alice_chunks.contains(&letter('E')).unwrap());

    // Bob changes AaBbCcDdFf to AaBbCGcDdFf. His push is unanswered, so when it times out he
    // pushes his newest version with the same base: "I think you have AaBbCcDd; add G between
    // C and c, and Ff after the d."
    let l2 = edit(&mut w, BOB, "AaBbCGcDdFf");
    assert!(w.net.is_empty(), "one push in flight at a time");
    w.tick_one(BOB, 10_000);
    let push = push_of(take(&mut w, BOB, ALICE));
    let delta = push.delta.clone().unwrap();
    assert_eq!(
        VersionId::from_proto(delta.base.as_ref().unwrap()).unwrap(),
        b0.version_id()
    );
    assert_eq!(describe(&delta, &b0, &l2), "[AaBbC]+G+[cDd]+Ff+");
    deliver(&mut w, BOB, Body::Push(push));

    // Alice lacks the base: she asks for it; Bob resends with the base's chunk list.
    let need = take(&mut w, ALICE, BOB);
    assert!(matches!(need, Body::NeedBase(_)), "got {}", need.name());
    deliver(&mut w, ALICE, need);
    let push = push_of(take(&mut w, BOB, ALICE));
    assert!(push.delta.as_ref().unwrap().base_manifest.is_some());
    deliver(&mut w, BOB, Body::Push(push));

    // "What are the contents of C and c?" — and Bob replies.
    let need = match take(&mut w, ALICE, BOB) {
        Body::NeedChunks(n) => n,
        other => panic!("expected NeedChunks, got {}", other.name()),
    };
    let asked: BTreeSet<ChunkId> = need
        .ids
        .iter()
        .map(|i| ChunkId::from_proto(i).unwrap())
        .collect();
    assert_eq!(asked, BTreeSet::from([letter('C'), letter('c')]));
    deliver(&mut w, ALICE, Body::NeedChunks(need));
    let chunks = take(&mut w, BOB, ALICE);
    assert!(matches!(chunks, Body::Chunks(_)));
    deliver(&mut w, BOB, chunks);

    // Alice merges AaBbCGcDdFf into AaBbEeDdFf on the base AaBbCcDd, replicates, commits,
    // and answers: "up to b, then Ee, then G, then starting from D".
    let offer = offer_of(take(&mut w, ALICE, BOB));
    let m2_id = VersionId::from_proto(offer.target.as_ref().unwrap()).unwrap();
    let m2 = stored(&w, ALICE, &m2_id);
    assert_eq!(w.text_in(ALICE, &m2, DOC), "AaBbEeGDdFf");
    assert_eq!(describe(&offer, &l2, &m2), "[AaBb]+Ee+[G][DdFf]");
    deliver(
        &mut w,
        ALICE,
        Body::Offer(chorus_proto::Offer {
            delta: Some(offer),
            extra: false,
        }),
    );
    assert_eq!(
        w.text(BOB, DOC),
        "AaBbCGcDdFf",
        "Bob still does not fast-forward"
    );
    let stored_m2 = take(&mut w, BOB, ALICE);
    deliver(&mut w, BOB, stored_m2);
    let h3 = commit(&mut w);
    let merged = match take(&mut w, ALICE, BOB) {
        Body::Merged(m) => m,
        other => panic!("expected Merged, got {}", other.name()),
    };
    assert_eq!(
        describe(merged.delta.as_ref().unwrap(), &l2, &m2),
        "[AaBb]+Ee+[G][DdFf]"
    );
    // If Bob can hear that, they are synchronized.
    deliver(&mut w, ALICE, Body::Merged(merged));
    w.feed(BOB, Event::Committed(vec![h2, h3]));
    assert_eq!(w.text(BOB, DOC), "AaBbEeGDdFf");
    assert_eq!(w.text(ALICE, DOC), "AaBbEeGDdFf");
    assert_eq!(w.tree(ALICE), w.tree(BOB), "identical trees");
    assert_eq!(
        w.node(ALICE).engine().adopted(),
        w.node(BOB).engine().adopted()
    );
    assert_eq!(w.node(BOB).engine().adopted().0, m2.version_id());
    assert_ne!(m2.version_id(), m.version_id());
    assert!(w.node(ALICE).engine().is_settled() && w.node(BOB).engine().is_settled());
    assert!(w.net.is_empty());
}
