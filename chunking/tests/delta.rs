//! Delta encode/apply: round trips over random trees and edits, the NeedBase and NeedChunks
//! repairs, and hostile deltas that must fail cleanly and change nothing.

mod common;

use chorus_chunking::delta::{
    ApplyError, ApplyLimits, ApplyOutcome, EncodeOptions, Finish, Prepare, apply, encode, prepare,
};
use chorus_chunking::fetch::{MAX_RUN_DICTIONARY, chunks_messages, receive_chunks, runs_messages};
use chorus_chunking::{ChunkStore, MemStore, TreeManifest};
use chorus_proto::{self as proto, Body, Limits, decode_frame, encode_frame};
use common::*;
use proptest::prelude::*;

/// Sends a delta through a real frame, as a peer would.
fn wire(delta: proto::Delta) -> proto::Delta {
    let frame = encode_frame(Body::Push(proto::Push {
        number: Some(proto::VersionNumber { major: 1, minor: 0 }),
        delta: Some(delta),
        pushed_before: Vec::new(),
        displaced: Vec::new(),
    }));
    match decode_frame(&frame, &Limits::default()).unwrap().body {
        Some(Body::Push(p)) => p.delta.unwrap(),
        other => panic!("{other:?}"),
    }
}

/// The receiver holds exactly the base and its chunks.
fn receiver(base_spec: &Spec) -> (MemStore, TreeManifest) {
    let store = MemStore::new();
    let base = build(base_spec, &store);
    (store, base)
}

fn assert_holds(tree: &TreeManifest, spec: &Spec, store: &dyn ChunkStore) {
    for (p, n) in spec {
        if let Node::File { bytes, .. } = n {
            assert_eq!(&read(tree, p, store), bytes, "{p}");
        }
    }
}

/// The sample base, and a target that adds the file `path` of `lines` lines of text.
fn sample_with_new_file(path: &str, lines: usize, seed: u64) -> (Spec, Spec) {
    let base_spec = sample_base();
    let mut target_spec = base_spec.clone();
    target_spec.insert(
        path.into(),
        Node::File {
            mode: 0o644,
            bytes: text(lines, seed),
        },
    );
    (base_spec, target_spec)
}

/// `delta` through a frame to a receiver that holds exactly `base_spec`, applied there in one
/// call (nothing missing): what was built, the receiver's store and its base.
fn applied_on_receiver(
    base_spec: &Spec,
    delta: proto::Delta,
) -> (chorus_chunking::delta::Applied, MemStore, TreeManifest) {
    let (rstore, rbase) = receiver(base_spec);
    let applied = apply(&wire(delta), Some(&rbase), &rstore, &ApplyLimits::default())
        .unwrap()
        .applied()
        .unwrap();
    (applied, rstore, rbase)
}

/// `delta` through a frame to a receiver holding `base`, prepared there.
fn prepared_on(base: &TreeManifest, delta: proto::Delta) -> chorus_chunking::delta::Prepared {
    let Prepare::Ready(p) = prepare(wire(delta), Some(base), &ApplyLimits::default()).unwrap()
    else {
        panic!("the base is held");
    };
    p
}

/// Both trees built in a sender's store.
fn built(base_spec: &Spec, target_spec: &Spec) -> (MemStore, TreeManifest, TreeManifest) {
    let sender = MemStore::new();
    let base = build(base_spec, &sender);
    let target = build(target_spec, &sender);
    (sender, base, target)
}

fn sample_base() -> Spec {
    let mut s = Spec::new();
    s.insert("docs".into(), Node::Dir);
    s.insert(
        "docs/notes.txt".into(),
        Node::File {
            mode: 0o644,
            bytes: text(400, 1),
        },
    );
    s.insert(
        "bin".into(),
        Node::File {
            mode: 0o755,
            bytes: pseudo_random(20_000, 2),
        },
    );
    s.insert(
        "empty".into(),
        Node::File {
            mode: 0o644,
            bytes: vec![],
        },
    );
    s.insert("link".into(), Node::Link("docs/notes.txt".into()));
    s
}

#[test]
fn a_small_edit_costs_little_and_round_trips() {
    let base_spec = sample_base();
    let mut target_spec = base_spec.clone();
    if let Some(Node::File { bytes, .. }) = target_spec.get_mut("docs/notes.txt") {
        let at = bytes.len() / 2;
        bytes.splice(at..at, b"one new line of text\n".iter().copied());
    }
    let sender = MemStore::new();
    let base = build(&base_spec, &sender);
    let target = build(&target_spec, &sender);
    let (delta, stats) = encode(&base, &target, &sender, &EncodeOptions::default()).unwrap();
    assert_eq!(stats.files_changed, 1);
    let frame_len = encode_frame(Body::Push(proto::Push {
        number: None,
        delta: Some(delta.clone()),
        pushed_before: Vec::new(),
        displaced: Vec::new(),
    }))
    .len();
    assert!(
        frame_len < 300 + 2 * 21,
        "a 21-byte edit cost {frame_len} bytes"
    );

    let (applied, rstore, _) = applied_on_receiver(&base_spec, delta);
    assert_eq!(applied.tree, target);
    assert_holds(&applied.tree, &target_spec, &rstore);
}

#[test]
fn unknown_base_asks_for_it_then_succeeds_with_it() {
    let (base_spec, target_spec) = sample_with_new_file("new.txt", 50, 9);
    let (sender, base, target) = built(&base_spec, &target_spec);

    // The receiver has the chunks (from elsewhere) but not the version.
    let (rstore, _) = receiver(&base_spec);
    let (delta, _) = encode(&base, &target, &sender, &EncodeOptions::default()).unwrap();
    match apply(&wire(delta), None, &rstore, &ApplyLimits::default()) {
        Ok(ApplyOutcome::NeedBase { base: b, target: t }) => {
            assert_eq!((b, t), (base.version_id(), target.version_id()));
        }
        other => panic!("{other:?}"),
    }
    let opts = EncodeOptions {
        include_base_manifest: true,
        ..Default::default()
    };
    let (delta, _) = encode(&base, &target, &sender, &opts).unwrap();
    let applied = apply(&wire(delta), None, &rstore, &ApplyLimits::default())
        .unwrap()
        .applied()
        .unwrap();
    assert_eq!(applied.tree, target);
}

#[test]
fn missing_chunks_are_named_exactly_and_then_suffice() {
    let base_spec = sample_base();
    let mut target_spec = base_spec.clone();
    target_spec.insert(
        "big".into(),
        Node::File {
            mode: 0o644,
            bytes: pseudo_random(30_000, 5),
        },
    );
    let sender = MemStore::new();
    let base = build(&base_spec, &sender);
    let target = build(&target_spec, &sender);
    // A tiny literal budget: most new chunks travel as external references.
    let opts = EncodeOptions {
        literal_budget: 2000,
        ..Default::default()
    };
    let (delta, stats) = encode(&base, &target, &sender, &opts).unwrap();
    assert!(stats.external_chunks > 0);
    let delta = wire(delta);

    let (rstore, rbase) = receiver(&base_spec);
    // And the receiver lost one chunk of the (unchanged) binary it still references? No: only
    // chunks the delta uses are checked, so drop one of the external ones' would-be sources.
    let before = rstore.len();
    let ids = match apply(&delta, Some(&rbase), &rstore, &ApplyLimits::default()) {
        Ok(ApplyOutcome::NeedChunks { ids, .. }) => ids,
        other => panic!("{other:?}"),
    };
    assert_eq!(ids.len() as u64, stats.external_chunks);
    assert_eq!(rstore.len(), before, "a failed apply writes nothing");
    for id in &ids {
        rstore.put(id, &sender.get(id).unwrap().unwrap()).unwrap();
    }
    let applied = apply(&delta, Some(&rbase), &rstore, &ApplyLimits::default())
        .unwrap()
        .applied()
        .unwrap();
    assert_eq!(applied.tree, target);
    assert_holds(&applied.tree, &target_spec, &rstore);
}

#[test]
fn a_missing_base_chunk_is_reported_not_guessed() {
    let base_spec = sample_base();
    let mut target_spec = base_spec.clone();
    // Copy the binary: its chunks are base chunks the receiver should have.
    let bin = base_spec["bin"].clone();
    target_spec.insert("bin-copy".into(), bin);
    let sender = MemStore::new();
    let base = build(&base_spec, &sender);
    let target = build(&target_spec, &sender);
    let (delta, stats) = encode(&base, &target, &sender, &EncodeOptions::default()).unwrap();
    assert_eq!(stats.literal_chunks, 0, "a copy costs no literal");

    let (rstore, rbase) = receiver(&base_spec);
    let lost = rbase.get_str("bin").unwrap().manifest().unwrap().chunks[1].id;
    rstore.remove(&lost).unwrap();
    match apply(&wire(delta), Some(&rbase), &rstore, &ApplyLimits::default()) {
        Ok(ApplyOutcome::NeedChunks { ids, .. }) => assert_eq!(ids, vec![lost]),
        other => panic!("{other:?}"),
    }
}

/// Hostile or broken deltas: each is refused with a specific error and the store is untouched.
#[test]
fn permission_changes_alone_travel_in_a_delta() {
    let base_spec = sample_base();
    let mut target_spec = base_spec.clone();
    target_spec.insert("docs".into(), Node::DirMode(0o700));
    if let Some(Node::File { mode, .. }) = target_spec.get_mut("docs/notes.txt") {
        *mode = 0o600;
    }
    let sender = MemStore::new();
    let base = build(&base_spec, &sender);
    let target = build(&target_spec, &sender);
    let (delta, stats) = encode(&base, &target, &sender, &EncodeOptions::default()).unwrap();
    assert_eq!(stats.files_changed, 2);
    assert!(delta.literals.is_empty(), "no content travels for a chmod");
    let (applied, rstore, rbase) = applied_on_receiver(&base_spec, delta.clone());
    assert_eq!(applied.tree, target);
    assert_eq!(
        applied
            .tree
            .get_str("docs/notes.txt")
            .and_then(|e| e.mode())
            .map(|m| m.bits()),
        Some(0o600)
    );

    // A symlink with a mode, or a mode with bits beyond rwx, is refused.
    let mut bad = delta;
    bad.changes[0].mode = 0o2700;
    assert!(apply(&bad, Some(&rbase), &rstore, &ApplyLimits::default()).is_err());
}

#[test]
fn hostile_deltas_are_refused_and_change_nothing() {
    let (base_spec, mut target_spec) = sample_with_new_file("docs/new.txt", 30, 3);
    target_spec.remove("empty");
    let (sender, base, target) = built(&base_spec, &target_spec);
    let (good, _) = encode(&base, &target, &sender, &EncodeOptions::default()).unwrap();
    let (rstore, rbase) = receiver(&base_spec);
    let before = rstore.len();

    type Mutate = fn(&mut proto::Delta);
    let cases: Vec<(&str, Mutate)> = vec![
        ("traversal in a change", |d| {
            d.changes[0].path = "../../etc/passwd".into()
        }),
        ("absolute path", |d| {
            d.changes[0].path = "/etc/passwd".into()
        }),
        ("state dir", |d| {
            d.changes[0].path = ".chorus/api.sock".into()
        }),
        ("traversal in removed", |d| {
            d.removed[0] = "a/../../x".into()
        }),
        ("removing what the base lacks", |d| {
            d.removed[0] = "nope".into()
        }),
        ("unsorted changes", |d| {
            let c = d.changes[0].clone();
            d.changes.push(c);
        }),
        ("run beyond the table", |d| {
            d.changes[0].runs = vec![0, 1_000_000]
        }),
        ("zero-length run", |d| d.changes[0].runs = vec![0, 0]),
        ("overflowing run", |d| d.changes[0].runs = vec![u64::MAX, 2]),
        ("wrong target id", |d| {
            d.target = Some(proto::VersionId::from_bytes([7; 32]))
        }),
        ("tampered literal", |d| {
            let data = &mut d.literals[0].data;
            let n = data.len() / 2;
            data[n] ^= 0x55;
        }),
        ("lying chunk lengths", |d| d.literals[0].chunk_lens[0] += 1),
        ("dictionary beyond the table", |d| {
            d.literals[0].compression = proto::Compression::ZstdDict as i32;
            d.literals[0].dictionary = vec![1 << 40];
        }),
        ("symlink with runs", |d| {
            d.changes[0].kind = proto::EntryKind::Symlink as i32;
            d.changes[0].link_target = "x".into();
        }),
        ("unknown external chunk", |d| {
            d.external.push(proto::ChunkRef {
                id: Some(proto::ChunkId::from_bytes([9; 32])),
                len: 10,
            });
            let n = d.changes[0].runs.len();
            d.changes[0].runs[n - 2] = 0;
        }),
    ];
    for (name, mutate) in cases {
        let mut d = good.clone();
        mutate(&mut d);
        let r = apply(&d, Some(&rbase), &rstore, &ApplyLimits::default());
        assert!(
            !matches!(r, Ok(ApplyOutcome::Applied(_))),
            "{name}: accepted"
        );
        assert_eq!(rstore.len(), before, "{name}: wrote to the store");
    }
    // The untouched delta still applies.
    assert_eq!(
        apply(&good, Some(&rbase), &rstore, &ApplyLimits::default())
            .unwrap()
            .applied()
            .unwrap()
            .tree,
        target
    );
}

#[test]
fn a_sent_base_that_lies_about_its_id_is_refused() {
    let base_spec = sample_base();
    let sender = MemStore::new();
    let base = build(&base_spec, &sender);
    let mut t = base_spec.clone();
    t.insert("x".into(), Node::Dir);
    let target = build(&t, &sender);
    let opts = EncodeOptions {
        include_base_manifest: true,
        ..Default::default()
    };
    let (mut d, _) = encode(&base, &target, &sender, &opts).unwrap();
    d.base_manifest.as_mut().unwrap().entries.pop();
    assert!(matches!(
        apply(&d, None, &MemStore::new(), &ApplyLimits::default()),
        Err(ApplyError::BaseMismatch { .. })
    ));
}

// ---- property tests ------------------------------------------------------------------------

#[derive(Debug, Clone)]
enum Edit {
    Insert {
        file: usize,
        at: f64,
        bytes: Vec<u8>,
    },
    Delete {
        file: usize,
        at: f64,
        len: usize,
    },
    Rename {
        file: usize,
        to: String,
    },
    Copy {
        file: usize,
        to: String,
    },
    Chmod {
        file: usize,
    },
    Remove {
        file: usize,
    },
    ToSymlink {
        file: usize,
        target: String,
    },
    AddFile {
        path: String,
        len: usize,
        seed: u64,
    },
    AddEmpty {
        path: String,
    },
    AddDir {
        path: String,
    },
}

fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-c]{1,3}",
        "[a-c]{1,2}/[a-c]{1,2}",
        "d/[a-c]{1,2}/[x-z]{1,2}"
    ]
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (
            any::<usize>(),
            0.0..1.0f64,
            proptest::collection::vec(any::<u8>(), 1..200)
        )
            .prop_map(|(file, at, bytes)| Edit::Insert { file, at, bytes }),
        (any::<usize>(), 0.0..1.0f64, 1usize..3000).prop_map(|(file, at, len)| Edit::Delete {
            file,
            at,
            len
        }),
        (any::<usize>(), name()).prop_map(|(file, to)| Edit::Rename { file, to }),
        (any::<usize>(), name()).prop_map(|(file, to)| Edit::Copy { file, to }),
        any::<usize>().prop_map(|file| Edit::Chmod { file }),
        any::<usize>().prop_map(|file| Edit::Remove { file }),
        (any::<usize>(), name()).prop_map(|(file, target)| Edit::ToSymlink { file, target }),
        (name(), 0usize..6000, any::<u64>()).prop_map(|(path, len, seed)| Edit::AddFile {
            path,
            len,
            seed
        }),
        name().prop_map(|path| Edit::AddEmpty { path }),
        name().prop_map(|path| Edit::AddDir { path }),
    ]
}

fn tree_spec() -> impl Strategy<Value = Spec> {
    proptest::collection::vec((name(), 0usize..8000, any::<u64>(), any::<bool>()), 0..8).prop_map(
        |files| {
            let mut s = Spec::new();
            for (p, len, seed, exec) in files {
                insert_file(
                    &mut s,
                    &p,
                    Node::File {
                        mode: if exec { 0o755 } else { 0o600 },
                        bytes: if seed % 2 == 0 {
                            text(len / 40, seed)
                        } else {
                            pseudo_random(len, seed)
                        },
                    },
                );
            }
            s
        },
    )
}

/// Inserts a node, making parents directories and dropping whatever is in the way, so the
/// spec stays a valid tree.
fn insert_file(s: &mut Spec, path: &str, node: Node) {
    let parts: Vec<&str> = path.split('/').collect();
    for i in 1..parts.len() {
        let anc = parts[..i].join("/");
        if !matches!(s.get(&anc), Some(Node::Dir | Node::DirMode(_))) {
            s.retain(|k, _| !(k == &anc || k.starts_with(&format!("{anc}/"))));
            s.insert(anc, Node::Dir);
        }
    }
    s.retain(|k, _| !k.starts_with(&format!("{path}/")));
    s.insert(path.to_owned(), node);
}

fn files(s: &Spec) -> Vec<String> {
    s.iter()
        .filter(|(_, n)| matches!(n, Node::File { .. }))
        .map(|(p, _)| p.clone())
        .collect()
}

fn apply_edit(s: &mut Spec, e: &Edit) {
    let fs = files(s);
    let pick = |i: usize| (!fs.is_empty()).then(|| fs[i % fs.len()].clone());
    match e {
        Edit::Insert {
            file,
            at,
            bytes: ins,
        } => {
            if let Some(p) = pick(*file)
                && let Some(Node::File { bytes, .. }) = s.get_mut(&p)
            {
                let i = (bytes.len() as f64 * at) as usize;
                bytes.splice(i..i, ins.iter().copied());
            }
        }
        Edit::Delete { file, at, len } => {
            if let Some(p) = pick(*file)
                && let Some(Node::File { bytes, .. }) = s.get_mut(&p)
            {
                let i = (bytes.len() as f64 * at) as usize;
                let j = (i + len).min(bytes.len());
                bytes.drain(i..j);
            }
        }
        Edit::Rename { file, to } | Edit::Copy { file, to } => {
            if let Some(p) = pick(*file)
                && p != *to
                && !to.starts_with(&format!("{p}/"))
            {
                let n = if matches!(e, Edit::Rename { .. }) {
                    s.remove(&p).unwrap()
                } else {
                    s[&p].clone()
                };
                insert_file(s, to, n);
            }
        }
        Edit::Chmod { file } => {
            if let Some(p) = pick(*file)
                && let Some(Node::File { mode, .. }) = s.get_mut(&p)
            {
                *mode = match *mode {
                    0o644 => 0o600,
                    0o600 => 0o755,
                    _ => 0o644,
                };
            }
        }
        Edit::Remove { file } => {
            if let Some(p) = pick(*file) {
                s.remove(&p);
            }
        }
        Edit::ToSymlink { file, target } => {
            if let Some(p) = pick(*file) {
                s.insert(p, Node::Link(target.clone()));
            }
        }
        Edit::AddFile { path, len, seed } => insert_file(
            s,
            path,
            Node::File {
                mode: 0o644,
                bytes: text(len / 40 + 1, *seed),
            },
        ),
        Edit::AddEmpty { path } => insert_file(
            s,
            path,
            Node::File {
                mode: 0o644,
                bytes: vec![],
            },
        ),
        Edit::AddDir { path } => {
            if !s.contains_key(path) {
                insert_file(s, path, Node::Dir);
            }
        }
    }
}

/// A delta of `edits` to `base_spec` (with `budget` and the base `send_base`), sent through a
/// frame to a receiver that holds the base and prepared there.
struct Sent {
    target_spec: Spec,
    sender: MemStore,
    base: TreeManifest,
    target: TreeManifest,
    rstore: MemStore,
    prepared: chorus_chunking::delta::Prepared,
}

fn sent(base_spec: &Spec, edits: &[Edit], budget: u64, send_base: bool) -> Sent {
    let (target_spec, sender, base, target) = edited(base_spec, edits);
    let opts = EncodeOptions {
        literal_budget: budget,
        include_base_manifest: send_base,
        ..Default::default()
    };
    let (delta, _) = encode(&base, &target, &sender, &opts).unwrap();
    let (rstore, rbase) = receiver(base_spec);
    let held = (!send_base).then_some(&rbase);
    let Prepare::Ready(prepared) = prepare(wire(delta), held, &ApplyLimits::default()).unwrap()
    else {
        panic!("the base is held or carried");
    };
    Sent {
        target_spec,
        sender,
        base,
        target,
        rstore,
        prepared,
    }
}

/// `base_spec` with `edits` made, and both trees built in a sender's store.
fn edited(base_spec: &Spec, edits: &[Edit]) -> (Spec, MemStore, TreeManifest, TreeManifest) {
    let mut target_spec = base_spec.clone();
    for e in edits {
        apply_edit(&mut target_spec, e);
    }
    let (sender, base, target) = built(base_spec, &target_spec);
    (target_spec, sender, base, target)
}

/// Fetches what `prepared` lacks from `sender` the way the daemon does (the plan's runs, each
/// compressed against its dictionary, through real frames) until it is built; returns the
/// tree and the bytes of the Chunks frames.
fn fetched_by_runs(
    mut prepared: chorus_chunking::delta::Prepared,
    sender: &MemStore,
    rstore: &MemStore,
) -> (chorus_chunking::delta::Applied, usize) {
    let mut bytes = 0;
    loop {
        match prepared.finish(rstore).unwrap() {
            Finish::Applied(a) => return (a, bytes),
            Finish::NeedChunks {
                prepared: again,
                ids,
                ..
            } => {
                let mut sorted = ids.clone();
                sorted.sort();
                let runs = again.fetch_runs(ids, rstore, MAX_RUN_DICTIONARY).unwrap();
                // Every missing chunk is in exactly one run; a dictionary names only chunks
                // the receiver holds.
                let mut planned: Vec<_> = runs.iter().flat_map(|r| r.ids.clone()).collect();
                planned.sort();
                assert_eq!(planned, sorted);
                for r in &runs {
                    for d in &r.dictionary {
                        assert!(rstore.contains(d).unwrap(), "a dictionary chunk not held");
                    }
                }
                for m in runs_messages(&runs, sender, Limits::default().max_frame).unwrap() {
                    let frame = encode_frame(Body::Chunks(m));
                    bytes += frame.len();
                    let Some(Body::Chunks(c)) =
                        decode_frame(&frame, &Limits::default()).unwrap().body
                    else {
                        panic!("a Chunks frame");
                    };
                    receive_chunks(&c, rstore, 1 << 24).unwrap();
                }
                prepared = again;
            }
        }
    }
}

/// Text files edited in a few places, with no literal budget: every new chunk is fetched.
/// Fetched in runs, each compressed against the chunks it replaces, they cost a small part of
/// what the same chunks cost compressed one by one (the daemon's chunk sizes).
#[test]
fn fetched_runs_cost_about_what_literals_cost() {
    let mut base_spec = Spec::new();
    for i in 0..16 {
        base_spec.insert(
            format!("src/f{i:02}.txt"),
            Node::File {
                mode: 0o644,
                bytes: text(6000, 40 + i),
            },
        );
    }
    let mut target_spec = base_spec.clone();
    for (i, n) in target_spec.values_mut().enumerate() {
        if let Node::File { bytes, .. } = n {
            for k in 1..6 {
                let at = bytes.len() * k / 6;
                bytes.splice(at..at, format!("edit {k} of {i}\n").bytes());
            }
        }
    }
    let sender = MemStore::new();
    let params = chorus_chunking::ChunkerParams::default();
    let base = build_with(&base_spec, &sender, params);
    let target = build_with(&target_spec, &sender, params);
    let opts = EncodeOptions {
        literal_budget: 0,
        ..Default::default()
    };
    let (delta, stats) = encode(&base, &target, &sender, &opts).unwrap();
    assert!(stats.external_chunks >= 16, "{stats:?}");
    let rstore = MemStore::new();
    let rbase = build_with(&base_spec, &rstore, params);
    let prepared = prepared_on(&rbase, delta);
    // One by one, as the chunks were fetched before.
    let Finish::NeedChunks { ids, .. } = prepared.finish(&rstore).unwrap() else {
        panic!("chunks are missing");
    };
    let one_by_one: usize = chunks_messages(&ids, &sender, Limits::default().max_frame)
        .unwrap()
        .into_iter()
        .map(|m| encode_frame(Body::Chunks(m)).len())
        .sum();
    let Prepare::Ready(prepared) = prepare(
        wire(encode(&base, &target, &sender, &opts).unwrap().0),
        Some(&rbase),
        &ApplyLimits::default(),
    )
    .unwrap() else {
        panic!("the base is held");
    };
    let (applied, in_runs) = fetched_by_runs(prepared, &sender, &rstore);
    assert_eq!(applied.tree, target);
    assert_holds(&applied.tree, &target_spec, &rstore);
    assert!(
        in_runs * 10 < one_by_one,
        "runs {in_runs} bytes, one by one {one_by_one}"
    );
}

/// A release of `n` text files of `lines` lines under `pkg-1.0/` and the next under
/// `pkg-1.1/`, `edits` lines inserted in each file; `path(i)` is file `i`'s place below the top
/// directory. The two trees, the new files' bytes and their paths' bytes (old and new).
fn renamed_release(
    n: u64,
    lines: usize,
    edits: usize,
    path: impl Fn(u64) -> String,
) -> (Spec, Spec, usize, usize) {
    let (mut base_spec, mut target_spec) = (Spec::new(), Spec::new());
    let (mut raw, mut paths) = (0, 0);
    for i in 0..n {
        let mut bytes = text(lines, 70 + i);
        let (old, new) = (
            format!("pkg-1.0/{}", path(i)),
            format!("pkg-1.1/{}", path(i)),
        );
        paths += old.len() + new.len();
        base_spec.insert(
            old,
            Node::File {
                mode: 0o644,
                bytes: bytes.clone(),
            },
        );
        for k in 1..=edits {
            let at = bytes.len() * k / (edits + 1);
            bytes.splice(at..at, format!("edit {k} of {i}\n").bytes());
        }
        raw += bytes.len();
        target_spec.insert(new, Node::File { mode: 0o644, bytes });
    }
    (base_spec, target_spec, raw, paths)
}

/// A release whose top directory carries its version (`v1/` becomes `v2/`): every path is
/// new, yet each edited file is compressed against the file of the same name and place in the
/// old directory, whether it travels as a literal or is fetched. (Compressed on its own, as
/// before, each file cost about a third of its size.)
#[test]
fn a_renamed_directorys_edited_files_cost_about_their_edits() {
    let (base_spec, target_spec, raw, _) =
        renamed_release(12, 4000, 3, |i| format!("src/f{i:02}.txt"));
    let params = chorus_chunking::ChunkerParams::default();
    let sender = MemStore::new();
    let base = build_with(&base_spec, &sender, params);
    let target = build_with(&target_spec, &sender, params);
    for budget in [u64::MAX, raw as u64 / 2] {
        let opts = EncodeOptions {
            literal_budget: budget,
            ..Default::default()
        };
        let (delta, _) = encode(&base, &target, &sender, &opts).unwrap();
        let literals: usize = delta.literals.iter().map(|l| l.data.len()).sum();
        let rstore = MemStore::new();
        let rbase = build_with(&base_spec, &rstore, params);
        let prepared = prepared_on(&rbase, delta);
        let (applied, fetched) = fetched_by_runs(prepared, &sender, &rstore);
        assert_eq!(applied.tree, target);
        assert!(
            (literals + fetched) * 40 < raw,
            "budget {budget}: {literals} bytes of literals and {fetched} fetched for {raw} bytes"
        );
    }
}

/// Many changed paths travel packed: the change and removal lists as one zstd frame, a
/// fraction of their plain size (a release under a renamed directory names every path
/// twice); the receiver unpacks them within its bounds, and a delta that packs too much, packs
/// and lists at once, or packs garbage is refused.
#[test]
fn many_paths_travel_packed_and_unpack_within_bounds() {
    let (base_spec, target_spec, _, plain) =
        renamed_release(300, 3, 0, |i| format!("src/module_{i:03}/file.txt"));
    let (sender, base, target) = built(&base_spec, &target_spec);
    let (delta, stats) = encode(&base, &target, &sender, &EncodeOptions::default()).unwrap();
    assert_eq!(stats.files_changed, 600);
    assert!(delta.changes.is_empty() && delta.removed.is_empty());
    assert!(
        delta.packed.len() * 5 < plain,
        "{} bytes packed for {plain} bytes of paths",
        delta.packed.len()
    );
    let (applied, rstore, rbase) = applied_on_receiver(&base_spec, delta.clone());
    assert_eq!(applied.tree, target);

    let refused = |d: &proto::Delta, limits: &ApplyLimits, what: &str| match apply(
        d,
        Some(&rbase),
        &rstore,
        limits,
    ) {
        Err(ApplyError::Invalid(m)) => assert!(m.contains(what), "{m}"),
        other => panic!("{other:?}"),
    };
    let small = ApplyLimits {
        max_packed_bytes: 1000,
        ..Default::default()
    };
    refused(&delta, &small, "within 1000 bytes");
    let mut both = delta.clone();
    both.removed = vec!["pkg-1.0/src/module_000/file.txt".into()];
    refused(&both, &ApplyLimits::default(), "both packed and listed");
    let mut garbage = delta.clone();
    garbage.packed = vec![0x28, 0xb5, 0x2f, 0xfd, 1, 2, 3];
    refused(&garbage, &ApplyLimits::default(), "packed paths");
    let mut lie = delta;
    lie.packed = zstd::encode_all(&[0x0a, 0x05, 0x0a, 0x03, b'.', b'.', b'/'][..], 3).unwrap();
    refused(&lie, &ApplyLimits::default(), "");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// apply(base, encode(base, new)) == new, whatever the trees and edits.
    #[test]
    fn apply_inverts_encode(base_spec in tree_spec(), edits in proptest::collection::vec(edit(), 0..8), budget in prop_oneof![Just(u64::MAX), 0u64..20_000]) {
        let (target_spec, sender, base, target) = edited(&base_spec, &edits);
        let opts = EncodeOptions { literal_budget: budget, ..Default::default() };
        let (delta, _) = encode(&base, &target, &sender, &opts).unwrap();
        let delta = wire(delta);
        let (rstore, rbase) = receiver(&base_spec);
        let applied = match apply(&delta, Some(&rbase), &rstore, &ApplyLimits::default()) {
            Ok(ApplyOutcome::NeedChunks { ids, .. }) => {
                prop_assert!(budget != u64::MAX, "all chunks were carried, yet {} missing", ids.len());
                for id in &ids {
                    rstore.put(id, &sender.get(id).unwrap().unwrap()).unwrap();
                }
                apply(&delta, Some(&rbase), &rstore, &ApplyLimits::default()).unwrap().applied().unwrap()
            }
            other => other.unwrap().applied().unwrap(),
        };
        prop_assert_eq!(&applied.tree, &target);
        assert_holds(&applied.tree, &target_spec, &rstore);
        // And an unchanged tree costs an empty delta.
        let (same, stats) = encode(&target, &target, &sender, &EncodeOptions::default()).unwrap();
        prop_assert!(same.changes.is_empty() && same.removed.is_empty() && same.literals.is_empty());
        prop_assert_eq!(stats.files_changed, 0);
    }

    /// A delta prepared once (checked and resolved, its wire form gone) and finished after
    /// the chunks it named arrived builds the target; every missing chunk is named in the first
    /// answer, and a base the delta carried comes back with the tree.
    #[test]
    fn a_prepared_delta_finishes_once_its_chunks_arrive(base_spec in tree_spec(), edits in proptest::collection::vec(edit(), 0..8), budget in 0u64..20_000, send_base in any::<bool>()) {
        let Sent { target_spec, sender, base, target, rstore, mut prepared } = sent(&base_spec, &edits, budget, send_base);
        prop_assert_eq!(prepared.base(), base.version_id());
        prop_assert_eq!(prepared.target(), target.version_id());
        let mut asked = 0;
        let applied = loop {
            match prepared.finish(&rstore).unwrap() {
                Finish::Applied(a) => break a,
                Finish::NeedChunks { prepared: again, ids, bytes } => {
                    asked += 1;
                    prop_assert_eq!(asked, 1, "every missing chunk is named at once");
                    prop_assert!(!ids.is_empty());
                    let mut sum = 0;
                    for id in &ids {
                        let b = sender.get(id).unwrap().unwrap();
                        sum += b.len() as u64;
                        rstore.put(id, &b).unwrap();
                    }
                    prop_assert_eq!(sum, bytes);
                    prepared = again;
                }
            }
        };
        prop_assert_eq!(&applied.tree, &target);
        prop_assert_eq!(applied.target, target.version_id());
        prop_assert_eq!(applied.sent_base.as_ref(), send_base.then_some(&base));
        assert_holds(&applied.tree, &target_spec, &rstore);
    }

    /// The one-walk difference of two trees is what looking every path up in both gives.
    #[test]
    fn differences_are_what_lookups_give(base_spec in tree_spec(), edits in proptest::collection::vec(edit(), 0..8)) {
        let mut target_spec = base_spec.clone();
        for e in &edits {
            apply_edit(&mut target_spec, e);
        }
        let store = MemStore::new();
        let (a, b) = (build(&base_spec, &store), build(&target_spec, &store));
        let mut want: Vec<_> = a
            .iter()
            .map(|(p, e)| (p, Some(e), b.get(p)))
            .chain(b.iter().filter(|(p, _)| a.get(p).is_none()).map(|(p, e)| (p, None, Some(e))))
            .filter(|(_, x, y)| x != y)
            .collect();
        want.sort_by(|x, y| x.0.cmp(y.0));
        let got: Vec<_> = a.differences(&b).into_iter().map(|d| (d.path, d.old, d.new)).collect();
        prop_assert_eq!(got, want);
        prop_assert!(b.differences(&b).is_empty());
        // The store's encoding, written entry by entry, is the bytes prost gives the wire type.
        for t in [&a, &b] {
            prop_assert_eq!(t.encode_proto(), prost::Message::encode_to_vec(&t.to_proto()));
        }
    }

    /// Random corruption of a delta frame: refused by the decoder or by apply, or, if it gets
    /// through, it still yields exactly the target (the hashes leave no other way). Never a
    /// panic.
    #[test]
    fn corrupted_frames_never_panic_or_mislead(flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6)) {
        let base_spec = sample_base();
        let mut target_spec = base_spec.clone();
        apply_edit(&mut target_spec, &Edit::Insert { file: 1, at: 0.5, bytes: b"hello".to_vec() });
        apply_edit(&mut target_spec, &Edit::AddFile { path: "z/new".into(), len: 3000, seed: 4 });
        let sender = MemStore::new();
        let base = build(&base_spec, &sender);
        let target = build(&target_spec, &sender);
        let (delta, _) = encode(&base, &target, &sender, &EncodeOptions::default()).unwrap();
        let mut frame = encode_frame(Body::Push(proto::Push { number: None, delta: Some(delta), pushed_before: Vec::new(), displaced: Vec::new() }));
        for (i, b) in flips {
            let i = i.index(frame.len());
            frame[i] ^= b.max(1);
        }
        let (rstore, rbase) = receiver(&base_spec);
        if let Ok(proto::Envelope { body: Some(Body::Push(p)), .. }) = decode_frame(&frame, &Limits::default())
            && let Some(d) = p.delta
            && let Ok(ApplyOutcome::Applied(applied)) = apply(&d, Some(&rbase), &rstore, &ApplyLimits::default())
        {
            // Only flips that do not change meaning (e.g. in the version number) get here.
            prop_assert_eq!(applied.tree, target);
        }
    }
}

/// The canonical encoding of a tree given as sorted entries, computed by hand (as a hostile
/// member can): the VersionId of a tree that `TreeManifest` itself refuses to build.
fn canonical_id(entries: &[(String, chorus_chunking::Entry)]) -> [u8; 32] {
    use chorus_chunking::Entry;
    let mut b = b"chorus tree manifest v2\n".to_vec();
    b.extend((entries.len() as u64).to_le_bytes());
    for (path, e) in entries {
        b.extend((path.len() as u32).to_le_bytes());
        b.extend(path.as_bytes());
        match e {
            Entry::File { mode, manifest } => {
                b.push(1);
                b.extend((mode.bits() as u16).to_le_bytes());
                b.extend((manifest.chunks.len() as u64).to_le_bytes());
                for c in manifest.chunks.iter() {
                    b.extend(c.id.0);
                    b.extend(c.len.to_le_bytes());
                }
            }
            Entry::Dir { mode } => {
                b.push(2);
                b.extend((mode.bits() as u16).to_le_bytes());
            }
            Entry::Symlink { target } => {
                b.push(3);
                b.extend((target.len() as u32).to_le_bytes());
                b.extend(target.as_bytes());
            }
        }
    }
    *blake3::hash(&b).as_bytes()
}

/// A member that sends a delta whose target puts a file below another file, with the target
/// id of exactly that tree (so the id check alone passes it): the receiver checks the paths
/// the delta changed and refuses it, whatever the base held.
#[test]
fn a_delta_that_puts_a_path_below_a_file_is_refused_even_with_its_true_id() {
    let (base_spec, target_spec) = sample_with_new_file("docs/new.txt", 30, 3);
    let (sender, base, target) = built(&base_spec, &target_spec);
    let (good, _) = encode(&base, &target, &sender, &EncodeOptions::default()).unwrap();
    let (rstore, rbase) = receiver(&base_spec);
    assert_eq!(good.changes.len(), 1);

    // Two forgeries: a file below the file "bin", and "docs" (which holds docs/notes.txt)
    // turned into a file.
    for (from, to) in [("docs/new.txt", "bin/new.txt"), ("docs/new.txt", "docs")] {
        let mut forged = good.clone();
        forged.changes[0].path = to.into();
        let mut entries: Vec<(String, chorus_chunking::Entry)> = target
            .iter()
            .filter(|(p, _)| p.as_str() != to)
            .map(|(p, e)| {
                let p = if p.as_str() == from { to } else { p.as_str() };
                (p.to_owned(), e.clone())
            })
            .collect();
        entries.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
        forged.target = Some(proto::VersionId::from_bytes(canonical_id(&entries)));
        let r = apply(
            &wire(forged),
            Some(&rbase),
            &rstore,
            &ApplyLimits::default(),
        );
        match r {
            Err(ApplyError::Invalid(why)) => assert!(why.contains(to), "{to}: {why}"),
            other => panic!("{to}: not refused as invalid: {other:?}"),
        }
    }
    // Unforged, the same delta applies.
    let tree = apply(&good, Some(&rbase), &rstore, &ApplyLimits::default())
        .unwrap()
        .applied()
        .unwrap()
        .tree;
    assert_eq!(tree, target);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(100))]

    /// Whatever the trees, edits, budget and whether the base was carried: the plan covers
    /// every missing chunk once, its dictionaries name only chunks held, and the runs fetched
    /// compressed against them build the target.
    #[test]
    fn chunks_fetched_in_runs_build_the_target(base_spec in tree_spec(), edits in proptest::collection::vec(edit(), 0..8), budget in 0u64..20_000, send_base in any::<bool>()) {
        let Sent { target_spec, sender, target, rstore, prepared, .. } = sent(&base_spec, &edits, budget, send_base);
        let (applied, _) = fetched_by_runs(prepared, &sender, &rstore);
        prop_assert_eq!(&applied.tree, &target);
        assert_holds(&applied.tree, &target_spec, &rstore);
    }
}
