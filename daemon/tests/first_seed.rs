//! The first seed's worked example, letter for letter, through two sync engines and no
//! sockets: Alice (leader) and Bob share `AaBbCcDd`, one chunk per letter as in the seed. They
//! lose contact; Alice makes `AaBbEeDd`, Bob `AaBbCcDdFf`. On reconnect Bob says "I think you
//! have AaBbCcDd; add Ff after the d"; Alice merges and answers "up to b, then Ee, then from D".
//! If Bob misses that answer, edits again (`AaBbCGcDdFf`) and pushes with the old base, Alice,
//! who forgot `AaBbCcDd`, asks for it and for the chunks C and c; then answers "up to b, then
//! Ee, then G, then from D". Both end with identical bytes.
//!
//! Every message is delivered (or lost) by hand, and Raft's commit is played by the test: the
//! engines are sans IO, so the whole exchange is deterministic.

mod support;

use support::{Node, Out, node};

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chorus_chunking::{ChunkId, ChunkStore, Entry, TreeManifest, VersionId};
use chorus_election::{AcceptedHeader, NodeId};
use chorus_proto::message::Message;
use chorus_proto::{Body, Delta};
use chorus_sync::{ClusterInfo, Event, Retention};

const ALICE: NodeId = 1;
const BOB: NodeId = 2;

fn cluster() -> ClusterInfo {
    ClusterInfo {
        leader: Some(ALICE),
        voters: BTreeSet::from([ALICE, BOB]),
        learners: BTreeSet::new(),
        ranks: BTreeMap::from([(ALICE, 0), (BOB, 1)]),
        peer_ids: BTreeMap::from([(ALICE, b"alice".to_vec()), (BOB, b"bob".to_vec())]),
    }
}

fn letter(c: char) -> ChunkId {
    ChunkId::of(&[c as u8])
}

/// The letters of a tree's one file, read from `store`.
fn text_of(tree: &TreeManifest, store: &dyn ChunkStore) -> String {
    let Some(Entry::File { manifest, .. }) = tree.get_str("doc") else {
        panic!("no doc in {tree:?}")
    };
    manifest
        .chunks
        .iter()
        .map(|c| String::from_utf8(store.get(&c.id).unwrap().unwrap()).unwrap())
        .collect()
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

impl Node {
    fn text(&self) -> String {
        text_of(&self.folder, &*self.chunks)
    }
}

struct World {
    alice: Node,
    bob: Node,
    out: Out,
    log: Vec<AcceptedHeader>,
}

impl World {
    fn new() -> World {
        let mut w = World {
            alice: node(ALICE),
            bob: node(BOB),
            out: Out::default(),
            log: Vec::new(),
        };
        w.alice.feed(Event::Cluster(cluster()), &mut w.out);
        w.alice.feed(Event::LeaderConfirmed, &mut w.out);
        w.bob.feed(Event::Cluster(cluster()), &mut w.out);
        w
    }

    /// The next message; it must go from `from` to `to`.
    fn take(&mut self, from: NodeId, to: NodeId) -> Body {
        assert!(
            !self.out.sent.is_empty(),
            "expected a message {from} -> {to}, none is queued"
        );
        let (f, t, body) = self.out.sent.remove(0);
        assert_eq!((f, t), (from, to), "unexpected {} {f} -> {t}", body.name());
        body
    }

    fn deliver(&mut self, from: NodeId, body: Body) {
        let event = Event::Message {
            from,
            message: Message::parse(body).expect("a well-formed message"),
        };
        match from {
            ALICE => self.bob.feed(event, &mut self.out),
            _ => self.alice.feed(event, &mut self.out),
        }
    }

    /// Raft commits the pending proposal: it returns the header, fed to Alice only.
    fn commit(&mut self) -> AcceptedHeader {
        assert_eq!(self.out.proposals.len(), 1, "one proposal is pending");
        let p = self.out.proposals.remove(0);
        let h = support::accept(&mut self.log, p, &cluster().ranks);
        self.alice
            .feed(Event::Committed(vec![h.clone()]), &mut self.out);
        h
    }

    fn tree(&self, node: &Node, id: &VersionId) -> TreeManifest {
        node.engine.manifest(id).unwrap().expect("version stored")
    }
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
    let mut w = World::new();

    // Alice starts the share with AaBbCcDd; it is offered to Bob, stored, and committed.
    let b0 = w.alice.edit("AaBbCcDd", &mut w.out);
    let offer = offer_of(w.take(ALICE, BOB));
    w.deliver(
        ALICE,
        Body::Offer(chorus_proto::Offer {
            delta: Some(offer),
            extra: false,
        }),
    );
    let stored = w.take(BOB, ALICE);
    assert!(matches!(stored, Body::Stored(_)));
    w.deliver(BOB, stored);
    let h1 = w.commit();
    w.bob.feed(Event::Committed(vec![h1]), &mut w.out);
    assert_eq!(w.alice.text(), "AaBbCcDd");
    assert_eq!(
        w.bob.text(),
        "AaBbCcDd",
        "Bob materialized the shared version"
    );
    assert_eq!(w.bob.engine.adopted().1.to_string(), "1.0");

    // They lose contact. Alice makes AaBbEeDd (her offer of it is lost); Bob makes AaBbCcDdFf.
    w.alice.edit("AaBbEeDd", &mut w.out);
    let lost = offer_of(w.take(ALICE, BOB));
    assert_eq!(
        describe(
            &lost,
            &b0,
            &w.tree(
                &w.alice,
                &VersionId::from_proto(lost.target.as_ref().unwrap()).unwrap()
            )
        ),
        "[AaBb]+Ee+[Dd]"
    );
    let l1 = w.bob.edit("AaBbCcDdFf", &mut w.out);

    // Contact is back. Bob: "I think you have AaBbCcDd; I want you to add Ff after the d."
    let push = push_of(w.take(BOB, ALICE));
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
    w.deliver(BOB, Body::Push(push));

    // Alice merges (her 2.0 with Bob's 2.1) and replicates the result to Bob before
    // proposing it: as a delta against the version Bob pushed.
    let offer = offer_of(w.take(ALICE, BOB));
    let m_id = VersionId::from_proto(offer.target.as_ref().unwrap()).unwrap();
    let m = w.tree(&w.alice, &m_id);
    assert_eq!(text_of(&m, &*w.alice.chunks), "AaBbEeDdFf");
    assert_eq!(describe(&offer, &l1, &m), "[AaBb]+Ee+[DdFf]");
    assert!(
        w.out.proposals.is_empty(),
        "nothing is proposed before a majority holds it"
    );
    w.deliver(
        ALICE,
        Body::Offer(chorus_proto::Offer {
            delta: Some(offer),
            extra: false,
        }),
    );
    // Bob holds M now, but his change is unanswered: he does not fast-forward over it.
    assert_eq!(w.bob.text(), "AaBbCcDdFf");
    assert_eq!(w.bob.engine.work(), Some(l1.version_id()));
    let stored = w.take(BOB, ALICE);
    assert!(matches!(stored, Body::Stored(_)));
    w.deliver(BOB, stored);
    (w, b0, l1, m)
}

#[test]
fn bob_hears_the_answer_and_both_are_synchronized() {
    let (mut w, _b0, l1, m) = until_the_answer();
    let h2 = w.commit();
    assert_eq!(h2.number.major, 2);
    // Alice: "I think you have AaBbCcDdFf; take the part up to b, then add Ee, then the part
    // starting with D."
    let merged = match w.take(ALICE, BOB) {
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
    w.deliver(ALICE, Body::Merged(merged));
    w.bob.feed(Event::Committed(vec![h2]), &mut w.out);
    assert_eq!(w.alice.text(), "AaBbEeDdFf");
    assert_eq!(w.bob.text(), "AaBbEeDdFf");
    assert_eq!(w.alice.engine.adopted(), w.bob.engine.adopted());
    assert_eq!(w.bob.engine.adopted().1.to_string(), "2.1");
    assert!(w.alice.engine.is_settled() && w.bob.engine.is_settled());
    assert!(
        w.out.sent.is_empty(),
        "nothing else round-trips: {:?}",
        w.out.sent.len()
    );
}

#[test]
fn bob_misses_the_answer_pushes_on_the_old_base_and_both_end_identical() {
    let (mut w, b0, _l1, m) = until_the_answer();
    let h2 = w.commit();
    // Alice's answer is lost, and Raft has not told Bob about the commit yet.
    assert!(matches!(w.take(ALICE, BOB), Body::Merged(_)));
    assert_eq!(w.alice.text(), "AaBbEeDdFf");

    // Alice takes the opportunity to forget AaBbCcDd (and with it the chunks C and c).
    let report = w
        .alice
        .engine
        .collect_garbage(
            u64::MAX,
            &Retention {
                keep_last: 1,
                keep_ms: 0,
            },
        )
        .unwrap();
    assert!(report.versions_removed >= 2, "{report:?}");
    assert!(w.alice.engine.manifest(&b0.version_id()).unwrap().is_none());
    for c in ['C', 'c'] {
        assert!(
            !w.alice.chunks.contains(&letter(c)).unwrap(),
            "{c} is forgotten"
        );
    }
    assert!(w.alice.chunks.contains(&letter('E')).unwrap());

    // Bob changes AaBbCcDdFf to AaBbCGcDdFf. His push is unanswered, so when it times out he
    // pushes his newest version with the same base: "I think you have AaBbCcDd; add G between
    // C and c, and Ff after the d."
    let l2 = w.bob.edit("AaBbCGcDdFf", &mut w.out);
    assert!(w.out.sent.is_empty(), "one push in flight at a time");
    w.bob.now += 10_000;
    w.bob.feed(Event::Tick, &mut w.out);
    let push = push_of(w.take(BOB, ALICE));
    let delta = push.delta.clone().unwrap();
    assert_eq!(
        VersionId::from_proto(delta.base.as_ref().unwrap()).unwrap(),
        b0.version_id()
    );
    assert_eq!(describe(&delta, &b0, &l2), "[AaBbC]+G+[cDd]+Ff+");
    w.deliver(BOB, Body::Push(push));

    // Alice lacks the base: she asks for it; Bob resends with the base's chunk list.
    let need = w.take(ALICE, BOB);
    assert!(matches!(need, Body::NeedBase(_)), "got {}", need.name());
    w.deliver(ALICE, need);
    let push = push_of(w.take(BOB, ALICE));
    assert!(push.delta.as_ref().unwrap().base_manifest.is_some());
    w.deliver(BOB, Body::Push(push));

    // "What are the contents of C and c?" — and Bob replies.
    let need = match w.take(ALICE, BOB) {
        Body::NeedChunks(n) => n,
        other => panic!("expected NeedChunks, got {}", other.name()),
    };
    let asked: BTreeSet<ChunkId> = need
        .ids
        .iter()
        .map(|i| ChunkId::from_proto(i).unwrap())
        .collect();
    assert_eq!(asked, BTreeSet::from([letter('C'), letter('c')]));
    w.deliver(ALICE, Body::NeedChunks(need));
    let chunks = w.take(BOB, ALICE);
    assert!(matches!(chunks, Body::Chunks(_)));
    w.deliver(BOB, chunks);

    // Alice merges AaBbCGcDdFf into AaBbEeDdFf on the base AaBbCcDd, replicates, commits,
    // and answers: "up to b, then Ee, then G, then starting from D".
    let offer = offer_of(w.take(ALICE, BOB));
    let m2_id = VersionId::from_proto(offer.target.as_ref().unwrap()).unwrap();
    let m2 = w.tree(&w.alice, &m2_id);
    assert_eq!(text_of(&m2, &*w.alice.chunks), "AaBbEeGDdFf");
    assert_eq!(describe(&offer, &l2, &m2), "[AaBb]+Ee+[G][DdFf]");
    w.deliver(
        ALICE,
        Body::Offer(chorus_proto::Offer {
            delta: Some(offer),
            extra: false,
        }),
    );
    assert_eq!(
        w.bob.text(),
        "AaBbCGcDdFf",
        "Bob still does not fast-forward"
    );
    let stored = w.take(BOB, ALICE);
    w.deliver(BOB, stored);
    let h3 = w.commit();
    let merged = match w.take(ALICE, BOB) {
        Body::Merged(m) => m,
        other => panic!("expected Merged, got {}", other.name()),
    };
    assert_eq!(
        describe(merged.delta.as_ref().unwrap(), &l2, &m2),
        "[AaBb]+Ee+[G][DdFf]"
    );
    // If Bob can hear that, they are synchronized.
    w.deliver(ALICE, Body::Merged(merged));
    w.bob.feed(Event::Committed(vec![h2, h3]), &mut w.out);
    assert_eq!(w.bob.text(), "AaBbEeGDdFf");
    assert_eq!(w.alice.text(), "AaBbEeGDdFf");
    assert_eq!(w.alice.folder, w.bob.folder, "identical trees");
    assert_eq!(w.alice.engine.adopted(), w.bob.engine.adopted());
    assert_eq!(w.bob.engine.adopted().0, m2.version_id());
    assert_ne!(m2.version_id(), m.version_id());
    assert!(w.alice.engine.is_settled() && w.bob.engine.is_settled());
    assert!(w.out.sent.is_empty());
}
