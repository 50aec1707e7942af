//! Rules of the engine that the worked example does not reach, sans IO: a materialization that
//! meets local edits never overwrites them nor rebases them onto the new version (they are
//! pushed on the old base and merged by the leader); a retried push that was already merged is
//! answered without merging it twice; a push whose predecessor's answer was lost is merged on
//! that predecessor, not against it, and going back to a tree it pushed before is a change, not
//! a retry; a message from a non-member is ignored.

mod support;

use support::{Node, Out, doc, node};

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use chorus_chunking::{
    ChunkId, ChunkStore, ChunkerParams, Entry, RelPath, TreeManifest, VersionId,
};
use chorus_election::{AcceptedHeader, NodeId};
use chorus_merge::ModeRules;
use chorus_proto::Body;
use chorus_proto::message::Message;
use chorus_sync::{ClusterInfo, Engine, EngineConfig, Event, SyncStore};

const A: NodeId = 1;
const B: NodeId = 2;

fn cluster() -> ClusterInfo {
    ClusterInfo {
        leader: Some(A),
        voters: BTreeSet::from([A, B]),
        learners: BTreeSet::new(),
        ranks: BTreeMap::from([(A, 0), (B, 1)]),
        peer_ids: BTreeMap::new(),
    }
}

fn text(tree: &TreeManifest, store: &dyn ChunkStore) -> String {
    let Some(Entry::File { manifest, .. }) = tree.get_str("doc") else {
        return String::new();
    };
    manifest
        .chunks
        .iter()
        .map(|c| String::from_utf8(store.get(&c.id).unwrap().unwrap()).unwrap())
        .collect()
}

impl Node {
    fn text(&self) -> String {
        text(&self.folder, &*self.chunks)
    }
}

struct World {
    a: Node,
    b: Node,
    out: Out,
    log: Vec<AcceptedHeader>,
    /// Commits B has not heard of (it was cut off); it hears them before the next one.
    missed: Vec<AcceptedHeader>,
}

impl World {
    fn new() -> World {
        let mut w = World {
            a: node(A),
            b: node(B),
            out: Out::default(),
            log: Vec::new(),
            missed: Vec::new(),
        };
        w.a.feed(Event::Cluster(cluster()), &mut w.out);
        w.a.feed(Event::LeaderConfirmed, &mut w.out);
        w.b.feed(Event::Cluster(cluster()), &mut w.out);
        w
    }

    /// Delivers every queued message, and commits proposals as Raft would (to both nodes),
    /// until nothing is left.
    fn run(&mut self) {
        self.deliver(false);
    }

    /// As `run`, but nothing reaches B: its pushes arrive and are committed, and every answer
    /// and commit is lost on the way back (B restarting, or a link dropping them).
    fn run_b_deaf(&mut self) {
        self.deliver(true);
    }

    fn deliver(&mut self, b_deaf: bool) {
        loop {
            if b_deaf {
                self.out.sent.retain(|(_, to, _)| *to != B);
            }
            if !self.out.sent.is_empty() {
                let (from, to, body) = self.out.sent.remove(0);
                let ev = Event::Message {
                    from,
                    message: Message::parse(body).expect("a well-formed message"),
                };
                match to {
                    A => self.a.feed(ev, &mut self.out),
                    _ => self.b.feed(ev, &mut self.out),
                }
            } else if !self.out.proposals.is_empty() {
                let p = self.out.proposals.remove(0);
                let h = support::accept(&mut self.log, p, &cluster().ranks);
                self.a
                    .feed(Event::Committed(vec![h.clone()]), &mut self.out);
                // B hears the commits it missed before this one, unless it is deaf still.
                self.missed.push(h);
                if !b_deaf {
                    let heard = std::mem::take(&mut self.missed);
                    self.b.feed(Event::Committed(heard), &mut self.out);
                }
            } else {
                return;
            }
        }
    }

    /// B's retry timer fires.
    fn b_retries(&mut self) {
        self.b.now += 600_000;
        self.b.feed(Event::Tick, &mut self.out);
    }
}

#[test]
fn local_edits_met_by_a_materialization_are_pushed_on_the_old_base() {
    let mut w = World::new();
    let b0 = w.a.edit("AaBb", &mut w.out);
    w.run();
    assert_eq!(w.b.text(), "AaBb");
    assert_eq!(w.b.engine.adopted().0, b0.version_id());

    // A commits AaBbXx; B is asked to materialize it, but B's folder changed meanwhile.
    w.b.auto_confirm = false;
    w.a.edit("AaBbXx", &mut w.out);
    w.run();
    assert_eq!(
        w.b.asked.len(),
        1,
        "B was asked to materialize the new version"
    );
    assert_eq!(
        w.b.engine.adopted().0,
        b0.version_id(),
        "nothing is adopted before the folder holds it"
    );
    // The driver rescans, finds B's edit, writes nothing and reports it.
    w.b.asked.clear();
    w.b.auto_confirm = true;
    w.b.edit("YyAaBb", &mut w.out);
    let push = match &w.out.sent[0] {
        (B, A, Body::Push(p)) => p.clone(),
        (f, t, body) => panic!("expected B's push, got {} {f} -> {t}", body.name()),
    };
    let base = VersionId::from_proto(push.delta.as_ref().unwrap().base.as_ref().unwrap()).unwrap();
    assert_eq!(base, b0.version_id(), "pushed on the base it was made on");
    w.run();
    assert_eq!(w.a.text(), "YyAaBbXx");
    assert_eq!(w.b.text(), "YyAaBbXx", "both edits survive");
    assert_eq!(w.a.engine.adopted(), w.b.engine.adopted());
}

#[test]
fn a_retried_push_is_not_merged_twice() {
    let mut w = World::new();
    w.a.edit("AaBb", &mut w.out);
    w.run();
    w.a.edit("AaBbXx", &mut w.out);
    w.b.edit("AaBbYy", &mut w.out);
    // B's push is duplicated on the wire (a retry crossing the answer).
    let dup = w
        .out
        .sent
        .iter()
        .find(|(f, _, _)| *f == B)
        .cloned()
        .unwrap();
    w.out.sent.push(dup.clone());
    w.run();
    let t = w.a.text();
    assert_eq!(t.matches("Yy").count(), 1, "B's change is in once: {t}");
    assert_eq!(t.matches("Xx").count(), 1, "A's change is in once: {t}");
    assert_eq!(w.b.text(), t);
    // The same push again, long after it was committed: answered from the log, not merged
    // and committed a second time.
    let headers = w.log.len();
    w.out.sent.push(dup);
    w.run();
    assert_eq!(w.log.len(), headers, "no new header for a push already in");
    assert_eq!(w.a.text(), t);
    assert_eq!(w.b.text(), t);
}

#[test]
fn messages_from_non_members_are_ignored() {
    let mut w = World::new();
    w.a.edit("AaBb", &mut w.out);
    w.run();
    let before = w.a.engine.head();
    let stranger = doc("evil", &*w.b.chunks);
    let delta = chorus_chunking::delta::encode(
        &TreeManifest::empty(),
        &stranger,
        &*w.b.chunks,
        &Default::default(),
    )
    .unwrap()
    .0;
    w.a.feed(
        Event::Message {
            from: 99,
            message: Message::parse(Body::Push(chorus_proto::Push {
                number: Some(chorus_proto::VersionNumber { major: 9, minor: 9 }),
                delta: Some(delta),
                pushed_before: Vec::new(),
                displaced: Vec::new(),
            }))
            .expect("a well-formed message"),
        },
        &mut w.out,
    );
    assert!(w.out.sent.is_empty() && w.out.proposals.is_empty());
    assert_eq!(w.a.engine.head(), before);
    assert!(
        w.a.engine
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
    let mut w = World::new();
    // Small literal budget and frames: most chunks travel as NeedChunks answers, in many frames.
    for n in [&mut w.a, &mut w.b] {
        let mut cfg = EngineConfig::new(ModeRules::new(false), ChunkerParams::default());
        cfg.encode.literal_budget = 64 << 10;
        cfg.limits.max_frame = 256 << 10;
        let id = n.engine.id();
        let chunks = n.chunks.clone();
        n.engine = Engine::open(
            id,
            cfg,
            SyncStore::in_memory().unwrap(),
            chunks as Arc<dyn ChunkStore>,
        )
        .unwrap();
        n.feed(Event::Cluster(cluster()), &mut w.out);
    }
    w.a.feed(Event::LeaderConfirmed, &mut w.out);
    let files: Vec<(RelPath, Entry)> = (0..24u64)
        .map(|i| {
            let bytes = chorus_sync::testing::noise(i, 100_000);
            let manifest = chorus_chunking::chunker::chunk_bytes(&bytes, ChunkerParams::default());
            let mut pos = 0;
            for c in &manifest.chunks {
                w.a.chunks
                    .put(&c.id, &bytes[pos..pos + c.len as usize])
                    .unwrap();
                pos += c.len as usize;
            }
            (
                RelPath::new(format!("f{i:02}")).unwrap(),
                Entry::File {
                    mode: chorus_chunking::Mode::FILE,
                    manifest,
                },
            )
        })
        .collect();
    let tree = TreeManifest::from_entries(files).unwrap();
    w.a.folder = tree.clone();
    w.a.feed(Event::Local(tree.clone()), &mut w.out);

    // The offer names most chunks without carrying them; B asks for exactly those.
    let (_, _, offer) = w.out.sent.remove(0);
    assert!(matches!(offer, Body::Offer(_)));
    w.b.feed(
        Event::Message {
            from: A,
            message: Message::parse(offer).expect("a well-formed message"),
        },
        &mut w.out,
    );
    let (need, asked_first) = need_chunks(w.out.sent.remove(0).2);
    assert!(asked_first.len() > 10, "{} chunks asked", asked_first.len());
    w.a.feed(
        Event::Message {
            from: B,
            message: Message::parse(Body::NeedChunks(need)).expect("a well-formed message"),
        },
        &mut w.out,
    );
    let answers: Vec<Body> = w.out.sent.drain(..).map(|(_, _, b)| b).collect();
    assert!(
        answers.len() > 3,
        "the chunks travel in several bounded frames"
    );
    // The connection drops after half of them.
    let half = answers.len() / 2;
    let mut received = BTreeSet::new();
    for body in answers.into_iter().take(half) {
        if let Body::Chunks(c) = &body {
            received.extend(
                c.chunks
                    .iter()
                    .map(|d| ChunkId::from_proto(d.id.as_ref().unwrap()).unwrap()),
            );
        }
        w.b.feed(
            Event::Message {
                from: A,
                message: Message::parse(body).expect("a well-formed message"),
            },
            &mut w.out,
        );
    }
    assert!(
        w.out.sent.is_empty(),
        "B waits for the rest without asking again"
    );

    // A offers again (its retry timer), leanly: no literals, which may still be on their way
    // over a slow link. B asks for every chunk it lacks, and none that arrived.
    w.a.now += 60_000;
    w.a.feed(Event::Tick, &mut w.out);
    let (_, _, offer) = w.out.sent.remove(0);
    w.b.feed(
        Event::Message {
            from: A,
            message: Message::parse(offer).expect("a well-formed message"),
        },
        &mut w.out,
    );
    let (need, asked) = need_chunks(w.out.sent.remove(0).2);
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
    w.out.sent.push((B, A, Body::NeedChunks(need)));
    w.run();
    assert_eq!(w.b.folder, tree, "B holds everything");
    assert_eq!(w.a.engine.adopted(), w.b.engine.adopted());
}

/// A one-file tree `doc` holding `text`, chunked as a scan would, its chunks put in `store`.
fn scanned(text: &str, store: &dyn ChunkStore) -> TreeManifest {
    let manifest = chorus_chunking::chunker::chunk_bytes(text.as_bytes(), ChunkerParams::default());
    let mut pos = 0;
    for c in &manifest.chunks {
        store
            .put(&c.id, &text.as_bytes()[pos..pos + c.len as usize])
            .unwrap();
        pos += c.len as usize;
    }
    TreeManifest::from_entries([(
        RelPath::new("doc").unwrap(),
        Entry::File {
            mode: chorus_chunking::Mode::FILE,
            manifest,
        },
    )])
    .unwrap()
}

#[test]
fn a_large_displaced_hunk_travels_as_the_losers_file_and_stays_loadable() {
    let mut w = World::new();
    for n in [&mut w.a, &mut w.b] {
        let cfg = EngineConfig::new(ModeRules::new(false), ChunkerParams::default());
        let id = n.engine.id();
        let chunks = n.chunks.clone();
        n.engine = Engine::open(
            id,
            cfg,
            SyncStore::in_memory().unwrap(),
            chunks as Arc<dyn ChunkStore>,
        )
        .unwrap();
        n.feed(Event::Cluster(cluster()), &mut w.out);
    }
    w.a.feed(Event::LeaderConfirmed, &mut w.out);
    let base = scanned("head\nx\ntail\n", &*w.a.chunks);
    w.a.folder = base.clone();
    w.a.feed(Event::Local(base), &mut w.out);
    w.run();
    // Both replace the middle line with 100 KB of their own: a conflict in lines mode.
    let big = |who: &str| {
        let body: String = (0..2000)
            .map(|i| format!("{who} line {i:05} of a long rewrite\n"))
            .collect();
        format!("head\n{body}tail\n")
    };
    let (mine, theirs) = (big("alice"), big("bob"));
    let t = scanned(&mine, &*w.a.chunks);
    w.a.folder = t.clone();
    w.a.feed(Event::Local(t), &mut w.out);
    let t = scanned(&theirs, &*w.b.chunks);
    w.b.folder = t.clone();
    w.b.feed(Event::Local(t), &mut w.out);
    w.run();
    let merged = text_of_scanned(&w.a.folder, &*w.a.chunks);
    assert_eq!(merged, text_of_scanned(&w.b.folder, &*w.b.chunks));
    assert_eq!(
        merged, theirs,
        "the higher number (B's 2.1) wins the conflict"
    );
    for h in &w.log {
        assert!(
            h.redo.len() < 8 << 10,
            "a header carries {} redo bytes",
            h.redo.len()
        );
    }
    // The displaced rewrite is on B's redo stack too, as A's file by its chunks.
    let redo = w.b.engine.redo().unwrap();
    let displaced = redo
        .iter()
        .find_map(|r| match &r.entry.what {
            chorus_merge::Displaced::Whole {
                content: chorus_merge::redo::WholeContent::File { manifest, .. },
                ..
            } => Some(manifest.clone()),
            _ => None,
        })
        .expect("a whole-file redo entry");
    let bytes: Vec<u8> = displaced
        .chunks
        .iter()
        .flat_map(|c| w.a.chunks.get(&c.id).unwrap().unwrap())
        .collect();
    assert_eq!(
        String::from_utf8(bytes).unwrap(),
        mine,
        "nothing displaced is lost"
    );
}

fn text_of_scanned(tree: &TreeManifest, store: &dyn ChunkStore) -> String {
    let Some(Entry::File { manifest, .. }) = tree.get_str("doc") else {
        return String::new();
    };
    let bytes: Vec<u8> = manifest
        .chunks
        .iter()
        .flat_map(|c| store.get(&c.id).unwrap().unwrap())
        .collect();
    String::from_utf8(bytes).unwrap()
}

#[test]
fn a_change_back_to_an_earlier_tree_is_a_new_version_not_a_retry() {
    // An undo or a restore pushes a tree that history already holds; it must be accepted
    // again, not answered as if it were a retry of the push that first brought it.
    let mut w = World::new();
    w.b.edit("AaBb", &mut w.out);
    w.run();
    w.b.edit("AaBbCc", &mut w.out);
    w.run();
    let headers = w.log.len();
    w.b.edit("AaBb", &mut w.out);
    w.run();
    assert_eq!(w.log.len(), headers + 1, "going back is a new version");
    assert_eq!(w.a.text(), "AaBb");
    assert_eq!(w.b.text(), "AaBb");
    w.b.edit("AaBbCc", &mut w.out);
    w.run();
    assert_eq!(w.log.len(), headers + 2, "and so is going forward again");
    assert_eq!(w.a.text(), "AaBbCc");
}

#[test]
fn a_save_pushed_before_the_answer_to_the_previous_push_keeps_that_save() {
    // B's push is merged and committed, but B hears neither the answer nor the commit (it was
    // restarting, or the link dropped them). Its next save is pushed on the base it still
    // has; the leader must not take the earlier push's changes for a rival of the newer save.
    let mut w = World::new();
    w.a.edit("AaBb", &mut w.out);
    w.run();
    w.b.edit("AaBbXx", &mut w.out);
    w.run_b_deaf();
    assert_eq!(w.a.text(), "AaBbXx");
    w.a.edit("ZzAaBbXx", &mut w.out); // and the others go on editing
    w.b.edit("AaBbXxYy", &mut w.out);
    w.b_retries();
    w.run(); // B hears the commits it missed, then the rest
    assert_eq!(w.a.text(), "ZzAaBbXxYy");
    assert_eq!(w.b.text(), "ZzAaBbXxYy");
}

#[test]
fn going_back_after_lost_answers_is_a_change_not_a_retry() {
    // B saves T1, then T2, and both are taken while B hears nothing; then B's user goes back to
    // T1. History holds T1 already, but this push comes after T2: it is a change, not a retry.
    let mut w = World::new();
    w.a.edit("AaBb", &mut w.out);
    w.run();
    w.b.edit("AaBbXx", &mut w.out);
    w.run_b_deaf();
    w.b.edit("AaBbXxYy", &mut w.out);
    w.b_retries();
    w.run_b_deaf();
    assert_eq!(w.a.text(), "AaBbXxYy");
    w.b.edit("AaBbXx", &mut w.out);
    w.b_retries();
    w.run();
    assert_eq!(w.a.text(), "AaBbXx", "going back is kept");
    assert_eq!(w.b.text(), "AaBbXx");
}
