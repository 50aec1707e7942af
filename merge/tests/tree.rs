//! Tree merges over manifests whose chunks live in an in-memory chunk store, and reapplying
//! what they displaced.

use chorus_chunking::chunker::chunk_bytes;
use chorus_chunking::{
    ChunkId, ChunkStore, ChunkerParams, Entry, MemStore, Mode, RelPath, TreeManifest, VersionNumber,
};
use chorus_merge::reapply::{Aside, Change, NewContent};
use chorus_merge::redo::WholeContent;
use chorus_merge::tree::LoadError;
use chorus_merge::{
    ContentLoader, Displaced, MergeMode, MergedContent, MergedEntry, ModeRules, Numbers, Order,
    RedoStack, Side, TreeMerge, merge_trees, merge_trees_ordered,
};

const OURS: VersionNumber = VersionNumber::new(7, 1);
const THEIRS: VersionNumber = VersionNumber::new(7, 2);

fn p(s: &str) -> RelPath {
    RelPath::new(s).unwrap()
}

/// Stores bytes as a file entry, executable (0755) or not (0644).
fn file(store: &MemStore, bytes: &[u8], exec: bool) -> Entry {
    file_mode(store, bytes, if exec { 0o755 } else { 0o644 })
}

/// Stores bytes as a file entry with these permission bits.
fn file_mode(store: &MemStore, bytes: &[u8], mode: u32) -> Entry {
    let manifest = chunk_bytes(bytes, ChunkerParams::default());
    let mut at = 0;
    for c in manifest.chunks.iter() {
        let piece = &bytes[at..at + c.len as usize];
        store.put(&ChunkId::of(piece), piece).unwrap();
        at += c.len as usize;
    }
    Entry::File {
        mode: Mode::new(mode).unwrap(),
        manifest,
    }
}

fn dir(mode: u32) -> Entry {
    Entry::Dir {
        mode: Mode::new(mode).unwrap(),
    }
}

fn tree(entries: Vec<(&str, Entry)>) -> TreeManifest {
    TreeManifest::from_entries(entries.into_iter().map(|(k, v)| (p(k), v))).unwrap()
}

fn merged(
    store: &MemStore,
    base: &TreeManifest,
    ours: &TreeManifest,
    theirs: &TreeManifest,
) -> TreeMerge {
    let m = merge_trees(
        base,
        ours,
        theirs,
        Numbers {
            ours: OURS,
            theirs: THEIRS,
        },
        &ModeRules::new(false),
        store,
    )
    .unwrap();
    // The same merge with the sides swapped, each keeping its number, is identical.
    let swapped = merge_trees(
        base,
        theirs,
        ours,
        Numbers {
            ours: THEIRS,
            theirs: OURS,
        },
        &ModeRules::new(false),
        store,
    )
    .unwrap();
    assert_eq!(m.entries, swapped.entries);
    assert_eq!(m.redo, swapped.redo);
    m
}

fn bytes_of(store: &MemStore, e: &MergedEntry) -> Vec<u8> {
    match e {
        MergedEntry::File {
            content: MergedContent::Bytes(b),
            ..
        } => b.clone(),
        MergedEntry::File {
            content: MergedContent::Manifest(m),
            ..
        } => store.load(m).unwrap(),
        other => panic!("not a file: {other:?}"),
    }
}

fn into_tree(store: &MemStore, m: TreeMerge) -> TreeManifest {
    m.into_manifest(|_, bytes| {
        let Entry::File { manifest, .. } = file(store, bytes, false) else {
            unreachable!()
        };
        Ok::<_, LoadError>(manifest)
    })
    .unwrap()
}

#[test]
fn one_sided_and_separate_changes_combine() {
    let s = MemStore::new();
    let base = tree(vec![
        ("a.txt", file(&s, b"1\n2\n3\n4\n5\n", false)),
        ("b.txt", file(&s, b"b\n", false)),
    ]);
    let ours = tree(vec![
        ("a.txt", file(&s, b"one\n2\n3\n4\n5\n", false)),
        ("b.txt", file(&s, b"b\n", false)),
    ]);
    let theirs = tree(vec![
        ("a.txt", file(&s, b"1\n2\n3\n4\nfive\n", false)),
        ("b.txt", file(&s, b"B\n", false)),
        ("c.txt", file(&s, b"new\n", false)),
    ]);
    let m = merged(&s, &base, &ours, &theirs);
    assert!(m.redo.is_empty());
    assert_eq!(
        bytes_of(&s, &m.entries[&p("a.txt")]),
        b"one\n2\n3\n4\nfive\n"
    );
    assert_eq!(bytes_of(&s, &m.entries[&p("b.txt")]), b"B\n");
    assert_eq!(bytes_of(&s, &m.entries[&p("c.txt")]), b"new\n");
    assert_eq!(m.modes[&p("a.txt")], MergeMode::Lines);
    let t = into_tree(&s, m);
    assert_eq!(t.len(), 3);
}

#[test]
fn modify_beats_delete_and_the_deletion_can_be_redone() {
    let s = MemStore::new();
    let base = tree(vec![("notes.md", file(&s, b"x\n", false))]);
    let ours = tree(vec![]);
    let theirs = tree(vec![("notes.md", file(&s, b"x\ny\n", false))]);
    let m = merged(&s, &base, &ours, &theirs);
    assert_eq!(bytes_of(&s, &m.entries[&p("notes.md")]), b"x\ny\n");
    assert_eq!(m.redo.len(), 1);
    assert!(matches!(m.redo[0].what, Displaced::Deletion { .. }));
    assert_eq!(
        (m.redo[0].displaced_by, m.redo[0].displaced_from),
        (THEIRS, OURS)
    );
    let mut stack = RedoStack::new();
    stack.extend(m.redo.clone());
    let now = into_tree(&s, m);
    let r = stack.reapply(0, &now, &s).unwrap();
    assert_eq!(
        r.change,
        Change::Remove {
            path: p("notes.md")
        }
    );
}

#[test]
fn a_conflict_keeps_the_higher_number_and_the_hunk_reapplies_later() {
    let s = MemStore::new();
    let base = tree(vec![("notes.md", file(&s, b"a\nb\nc\n", false))]);
    let ours = tree(vec![("notes.md", file(&s, b"a\nours\nc\n", false))]);
    let theirs = tree(vec![("notes.md", file(&s, b"a\ntheirs\nc\n", false))]);
    let m = merged(&s, &base, &ours, &theirs);
    assert_eq!(bytes_of(&s, &m.entries[&p("notes.md")]), b"a\ntheirs\nc\n");
    assert_eq!(m.redo.len(), 1);
    assert_eq!(m.redo[0].path, Some(p("notes.md")));
    let mut stack = RedoStack::new();
    stack.extend(m.redo);
    // A later edit elsewhere in the file: the context still matches, the hunk goes back in.
    let later = tree(vec![(
        "notes.md",
        file(&s, b"top\na\ntheirs\nc\nend\n", false),
    )]);
    let r = stack.reapply(0, &later, &s).unwrap();
    assert!(r.in_place);
    assert_eq!(
        r.change,
        Change::Write {
            path: p("notes.md"),
            content: NewContent::Bytes {
                bytes: b"top\na\nours\nc\nend\n".to_vec(),
                mode: Mode::FILE
            }
        }
    );
    // The context is gone: the displaced text is restored beside the file.
    let rewritten = tree(vec![("notes.md", file(&s, b"something else\n", false))]);
    let r = stack.reapply(0, &rewritten, &s).unwrap();
    assert!(!r.in_place);
    assert_eq!(
        r.change,
        Change::Write {
            path: p("notes.md.redo-7.1"),
            content: NewContent::Bytes {
                bytes: b"a\nours\nc\n".to_vec(),
                mode: Mode::FILE
            }
        }
    );
    // And never over an existing file.
    let taken = tree(vec![
        ("notes.md", file(&s, b"x\n", false)),
        ("notes.md.redo-7.1", file(&s, b"y\n", false)),
    ]);
    let Change::Write { path, .. } = stack.reapply(0, &taken, &s).unwrap().change else {
        panic!()
    };
    assert_eq!(path, p("notes.md.redo-7.1-2"));
}

/// A redo that goes beside its file says why, as the user is told: the lines around a hunk
/// changed, the file changed or is gone, a folder took its path.
#[test]
fn a_redo_beside_its_file_says_why() {
    let s = MemStore::new();
    // A hunk displaced from notes.md.
    let base = tree(vec![("notes.md", file(&s, b"a\nb\nc\n", false))]);
    let ours = tree(vec![("notes.md", file(&s, b"a\nours\nc\n", false))]);
    let theirs = tree(vec![("notes.md", file(&s, b"a\ntheirs\nc\n", false))]);
    let mut hunk = RedoStack::new();
    hunk.extend(merged(&s, &base, &ours, &theirs).redo);
    // A whole file displaced from x (it lost to a directory).
    let ours = tree(vec![("x", file(&s, b"file\n", false))]);
    let theirs = tree(vec![
        ("x", Entry::dir()),
        ("x/y", file(&s, b"inside\n", false)),
    ]);
    let mut whole = RedoStack::new();
    whole.extend(merged(&s, &tree(vec![]), &ours, &theirs).redo);
    let why = |stack: &RedoStack, now: TreeManifest| {
        let r = stack.reapply(0, &now, &s).unwrap();
        assert_eq!(r.in_place, r.aside.is_none());
        r.aside
    };
    let cases = [
        (
            &hunk,
            tree(vec![("notes.md", file(&s, b"a\ntheirs\nc\nd\n", false))]),
            None,
        ),
        (
            &hunk,
            tree(vec![("notes.md", file(&s, b"rewritten\n", false))]),
            Some(Aside::ContextChanged),
        ),
        (&hunk, tree(vec![]), Some(Aside::FileGone)),
        (
            &hunk,
            tree(vec![("notes.md", Entry::dir())]),
            Some(Aside::NotAFile),
        ),
        (
            &hunk,
            tree(vec![(
                "notes.md",
                Entry::Symlink {
                    target: "elsewhere".into(),
                },
            )]),
            Some(Aside::FileChanged),
        ),
        (&whole, tree(vec![]), None),
        (
            &whole,
            tree(vec![("x", file(&s, b"another file\n", false))]),
            Some(Aside::FileChanged),
        ),
        (
            &whole,
            tree(vec![
                ("x", Entry::dir()),
                ("x/y", file(&s, b"inside\n", false)),
            ]),
            Some(Aside::NotAFile),
        ),
    ];
    for (i, (stack, now, expected)) in cases.into_iter().enumerate() {
        assert_eq!(why(stack, now), expected, "case {i}");
    }
    // Below what is now a file it can go neither in place nor beside: an error that says so.
    let base = tree(vec![("d/notes.md", file(&s, b"a\nb\nc\n", false))]);
    let ours = tree(vec![("d/notes.md", file(&s, b"a\nours\nc\n", false))]);
    let theirs = tree(vec![("d/notes.md", file(&s, b"a\ntheirs\nc\n", false))]);
    let mut nested = RedoStack::new();
    nested.extend(merged(&s, &base, &ours, &theirs).redo);
    let blocked = tree(vec![("d", file(&s, b"a file now\n", false))]);
    assert!(matches!(
        nested.reapply(0, &blocked, &s),
        Err(chorus_merge::reapply::RedoError::UnderAFile { .. })
    ));
    assert!(matches!(
        chorus_merge::reapply_beside(&nested.list()[0], &blocked),
        Err(chorus_merge::reapply::RedoError::UnderAFile { .. })
    ));
    assert_eq!(
        chorus_merge::reapply_beside(&hunk.list()[0], &tree(vec![]))
            .unwrap()
            .aside,
        Some(Aside::Asked)
    );
}

#[test]
fn add_add_merges_against_an_empty_base() {
    let s = MemStore::new();
    let base = tree(vec![]);
    let ours = tree(vec![("new.txt", file(&s, b"same\nours\n", false))]);
    let theirs = tree(vec![("new.txt", file(&s, b"same\ntheirs\n", false))]);
    let m = merged(&s, &base, &ours, &theirs);
    assert_eq!(bytes_of(&s, &m.entries[&p("new.txt")]), b"same\ntheirs\n");
    assert_eq!(m.redo.len(), 1);
    let Displaced::Hunk(h) = &m.redo[0].what else {
        panic!("{:?}", m.redo)
    };
    assert_eq!(h.displaced.0, b"same\nours\n");
}

#[test]
fn a_file_against_a_directory_keeps_the_directory() {
    let s = MemStore::new();
    let base = tree(vec![]);
    let ours = tree(vec![("x", file(&s, b"file\n", false))]);
    let theirs = tree(vec![
        ("x", Entry::dir()),
        ("x/y", file(&s, b"inside\n", false)),
    ]);
    let m = merged(&s, &base, &ours, &theirs);
    assert_eq!(m.entries[&p("x")], MergedEntry::Dir { mode: Mode::DIR });
    assert_eq!(bytes_of(&s, &m.entries[&p("x/y")]), b"inside\n");
    assert_eq!(m.redo.len(), 1);
    assert!(matches!(
        &m.redo[0].what,
        Displaced::Whole {
            content: WholeContent::File { .. },
            kept: None
        }
    ));
    // Without a directory entry: the file clashes with a path below it.
    let theirs = tree(vec![("x/y", file(&s, b"inside\n", false))]);
    let m = merged(&s, &base, &ours, &theirs);
    assert_eq!(m.entries[&p("x")], MergedEntry::Dir { mode: Mode::DIR });
    assert_eq!(m.redo.len(), 1);
    assert_eq!(m.redo[0].displaced_by, THEIRS);
    let t = into_tree(&s, m);
    assert_eq!(t.get(&p("x")), Some(&Entry::dir()));
}

#[test]
fn exec_bits_and_symlinks_merge_like_content() {
    let s = MemStore::new();
    let base = tree(vec![
        ("run.sh", file(&s, b"echo 1\n", false)),
        ("link", Entry::symlink("a").unwrap()),
    ]);
    let ours = tree(vec![
        ("run.sh", file(&s, b"echo 1\n", true)),
        ("link", Entry::symlink("b").unwrap()),
    ]);
    let theirs = tree(vec![
        ("run.sh", file(&s, b"echo 2\n", false)),
        ("link", Entry::symlink("c").unwrap()),
    ]);
    let m = merged(&s, &base, &ours, &theirs);
    let MergedEntry::File { mode, .. } = &m.entries[&p("run.sh")] else {
        panic!()
    };
    assert_eq!(
        *mode,
        Mode::EXEC,
        "ours set the exec bit, theirs did not touch it"
    );
    assert_eq!(bytes_of(&s, &m.entries[&p("run.sh")]), b"echo 2\n");
    assert_eq!(
        m.entries[&p("link")],
        MergedEntry::Symlink { target: "c".into() }
    );
    assert_eq!(m.redo.len(), 1);
    assert_eq!(
        m.redo[0].what,
        Displaced::Whole {
            content: WholeContent::Symlink { target: "b".into() },
            kept: Some(WholeContent::Symlink { target: "c".into() })
        }
    );
}

#[test]
fn permission_bits_of_files_and_directories_merge_three_way() {
    let s = MemStore::new();
    let base = tree(vec![
        ("d", dir(0o755)),
        ("d/key", file_mode(&s, b"secret\n", 0o644)),
        ("e", dir(0o755)),
        ("f", file_mode(&s, b"f\n", 0o644)),
    ]);
    // d and d/key: only ours changed them, so ours wins (theirs edited the content).
    // e: both changed it differently: the higher number (theirs, 7.2) wins, ours is displaced.
    // f: both made it private the same way: they agree.
    let ours = tree(vec![
        ("d", dir(0o700)),
        ("d/key", file_mode(&s, b"secret\n", 0o600)),
        ("e", dir(0o750)),
        ("f", file_mode(&s, b"f\n", 0o600)),
    ]);
    let theirs = tree(vec![
        ("d", dir(0o755)),
        ("d/key", file_mode(&s, b"secret 2\n", 0o644)),
        ("e", dir(0o711)),
        ("f", file_mode(&s, b"f\n", 0o600)),
    ]);
    let m = merged(&s, &base, &ours, &theirs);
    let t = into_tree(&s, m.clone());
    let mode = |path: &str| t.get_str(path).and_then(Entry::mode).map(Mode::bits);
    assert_eq!(mode("d"), Some(0o700));
    assert_eq!(
        mode("d/key"),
        Some(0o600),
        "a 0600 file stays 0600 through a merge"
    );
    assert_eq!(bytes_of(&s, &m.entries[&p("d/key")]), b"secret 2\n");
    assert_eq!(mode("e"), Some(0o711));
    assert_eq!(mode("f"), Some(0o600));
    assert_eq!(m.redo.len(), 1, "{:?}", m.redo);
    assert_eq!(m.redo[0].path, Some(p("e")));
    assert_eq!(m.redo[0].displaced_by, THEIRS);
    assert_eq!(
        m.redo[0].what,
        Displaced::Mode {
            mode: Mode::new(0o750).unwrap()
        }
    );
    // Redo puts the loser's bits back on what is there now.
    let stack = {
        let mut r = RedoStack::new();
        r.extend(m.redo.clone());
        r
    };
    let again = stack.reapply(0, &t, &s).unwrap();
    assert_eq!(
        again.change,
        Change::Write {
            path: p("e"),
            content: NewContent::Entry(dir(0o750)),
        }
    );
    // Both changed a file's bits differently: the same rule.
    let base = tree(vec![("x", file_mode(&s, b"x\n", 0o644))]);
    let ours = tree(vec![("x", file_mode(&s, b"x\n", 0o600))]);
    let theirs = tree(vec![("x", file_mode(&s, b"x\n", 0o640))]);
    let m = merged(&s, &base, &ours, &theirs);
    assert_eq!(
        m.entries[&p("x")],
        MergedEntry::File {
            mode: Mode::new(0o640).unwrap(),
            content: MergedContent::Manifest(
                file_mode(&s, b"x\n", 0o644).manifest().unwrap().clone()
            ),
        }
    );
    assert_eq!(
        m.redo[0].what,
        Displaced::Mode {
            mode: Mode::new(0o600).unwrap()
        }
    );
}

#[test]
fn a_rename_is_a_delete_plus_an_add() {
    let s = MemStore::new();
    let base = tree(vec![("old.txt", file(&s, b"1\n2\n", false))]);
    let ours = tree(vec![("new.txt", file(&s, b"1\n2\n", false))]);
    let theirs = tree(vec![("old.txt", file(&s, b"1\n2\n3\n", false))]);
    let m = merged(&s, &base, &ours, &theirs);
    // The edit survives at the old name (modify beats delete); the new name exists too.
    assert_eq!(bytes_of(&s, &m.entries[&p("old.txt")]), b"1\n2\n3\n");
    assert_eq!(bytes_of(&s, &m.entries[&p("new.txt")]), b"1\n2\n");
    assert!(matches!(m.redo[0].what, Displaced::Deletion { .. }));
}

#[test]
fn binary_and_globbed_files_merge_whole() {
    let s = MemStore::new();
    let base = tree(vec![
        ("img.bin", file(&s, b"\0base", false)),
        ("data.lock", file(&s, b"a\n", false)),
    ]);
    let ours = tree(vec![
        ("img.bin", file(&s, b"\0ours", false)),
        ("data.lock", file(&s, b"a\nb\n", false)),
    ]);
    let theirs = tree(vec![
        ("img.bin", file(&s, b"\0theirs", false)),
        ("data.lock", file(&s, b"c\na\n", false)),
    ]);
    let rules = ModeRules::new(false)
        .with("*.lock", MergeMode::Whole)
        .unwrap();
    let m = merge_trees(
        &base,
        &ours,
        &theirs,
        Numbers {
            ours: OURS,
            theirs: THEIRS,
        },
        &rules,
        &s,
    )
    .unwrap();
    assert_eq!(bytes_of(&s, &m.entries[&p("img.bin")]), b"\0theirs");
    assert_eq!(bytes_of(&s, &m.entries[&p("data.lock")]), b"c\na\n");
    assert_eq!(
        (m.modes[&p("img.bin")], m.modes[&p("data.lock")]),
        (MergeMode::Whole, MergeMode::Whole)
    );
    assert_eq!(m.redo.len(), 2);
    for e in &m.redo {
        assert!(
            matches!(
                &e.what,
                Displaced::Whole {
                    content: WholeContent::File { .. },
                    kept: Some(_)
                }
            ),
            "{e:?}"
        );
    }
    // The displaced file is restored in place while the winner's content is unchanged.
    let mut stack = RedoStack::new();
    stack.extend(m.redo.clone());
    let now = into_tree(&s, m);
    let r = stack.reapply(0, &now, &s).unwrap();
    assert!(r.in_place);
}

#[test]
fn chars_mode_for_a_single_document_share() {
    let s = MemStore::new();
    let base = tree(vec![("doc.txt", file(&s, b"hello world", false))]);
    let ours = tree(vec![("doc.txt", file(&s, b"hello brave world", false))]);
    let theirs = tree(vec![("doc.txt", file(&s, b"hello world!", false))]);
    let m = merge_trees(
        &base,
        &ours,
        &theirs,
        Numbers {
            ours: OURS,
            theirs: THEIRS,
        },
        &ModeRules::new(true),
        &s,
    )
    .unwrap();
    assert_eq!(
        bytes_of(&s, &m.entries[&p("doc.txt")]),
        b"hello brave world!"
    );
    assert_eq!(m.modes[&p("doc.txt")], MergeMode::Chars);
    assert!(m.redo.is_empty());
}

mod random_trees {
    //! Random small trees: every merge is symmetric and yields a valid tree.

    use super::*;
    use proptest::prelude::*;

    const PATHS: [&str; 6] = ["a", "b", "d", "d/x", "d/y", "d/x/z"];
    const TEXTS: [&[u8]; 4] = [b"1\n2\n3\n", b"1\n2\n3\n4\n", b"0\n2\n3\n", b"\0bin"];

    /// An entry: 0 absent, 1 dir, 2 symlink, 3 private dir, 4.. a file with one of the texts
    /// and one of three modes.
    fn entry(s: &MemStore, kind: u8) -> Option<Entry> {
        match kind {
            0 => None,
            1 => Some(Entry::dir()),
            2 => Some(Entry::symlink("target").unwrap()),
            3 => Some(dir(0o700)),
            k => Some(file_mode(
                s,
                TEXTS[(k as usize) % TEXTS.len()],
                [0o644, 0o755, 0o600][(k as usize) % 3],
            )),
        }
    }

    /// A tree from entry kinds; a path below a file or symlink is left out, so it is valid.
    fn random_tree(s: &MemStore, kinds: &[u8]) -> Option<TreeManifest> {
        let mut entries: Vec<(RelPath, Entry)> = Vec::new();
        for (path, &k) in PATHS.iter().zip(kinds) {
            let path = p(path);
            let blocked = path
                .ancestors()
                .any(|a| entries.iter().any(|(q, e)| q.as_str() == a && !e.is_dir()));
            if let (false, Some(e)) = (blocked, entry(s, k)) {
                entries.push((path, e));
            }
        }
        TreeManifest::from_entries(entries).ok()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        #[test]
        fn tree_merges_are_symmetric_and_valid(
            b in prop::collection::vec(0u8..11, 6),
            o in prop::collection::vec(0u8..11, 6),
            t in prop::collection::vec(0u8..11, 6),
            swap in any::<bool>(),
        ) {
            let s = MemStore::new();
            let (Some(base), Some(ours), Some(theirs)) = (random_tree(&s, &b), random_tree(&s, &o), random_tree(&s, &t)) else {
                return Ok(());
            };
            let (n1, n2) = if swap { (THEIRS, OURS) } else { (OURS, THEIRS) };
            let rules = ModeRules::new(false);
            let m = merge_trees(&base, &ours, &theirs, Numbers { ours: n1, theirs: n2 }, &rules, &s).unwrap();
            let back = merge_trees(&base, &theirs, &ours, Numbers { ours: n2, theirs: n1 }, &rules, &s).unwrap();
            prop_assert_eq!(&m.entries, &back.entries);
            prop_assert_eq!(&m.redo, &back.redo);
            // Every path of either side is in the result or has a redo entry.
            for side in [&ours, &theirs] {
                for (path, _) in side.iter() {
                    let kept = m.entries.contains_key(path) || m.redo.iter().any(|e| e.path.as_ref() == Some(path));
                    let dropped_by_the_other_side_unchanged = base.get(path) == side.get(path);
                    prop_assert!(kept || dropped_by_the_other_side_unchanged, "{path} lost");
                }
            }
            prop_assert!(into_tree(&s, m).len() <= PATHS.len());
        }

        /// Equal numbers (two pushes of one node before it heard of a newer head): whichever
        /// side wins, the file keeps one side and the redo entry holds the other, never the
        /// winner twice. The contents and a second path vary so that the trees' order and the
        /// files' own byte order disagree in some cases.
        #[test]
        fn with_equal_numbers_the_displaced_side_is_the_one_not_kept(
            o in prop::collection::vec(any::<u8>(), 1..48),
            t in prop::collection::vec(any::<u8>(), 1..48),
            other in 0u8..4,
            tie in prop::sample::select(vec![None, Some(Side::Ours), Some(Side::Theirs)]),
        ) {
            let s = MemStore::new();
            // A NUL keeps every side binary: a whole-file merge.
            let bin = |b: &[u8]| [&[0u8][..], b].concat();
            let (ob, tb) = (bin(&o), bin(&t));
            prop_assume!(ob != tb);
            let base = tree(vec![("data.bin", file(&s, b"\0base", false)), ("other", file(&s, b"x", false))]);
            let ours = tree(vec![("data.bin", file(&s, &ob, false)), ("other", file(&s, &[other], false))]);
            let theirs = tree(vec![("data.bin", file(&s, &tb, false)), ("other", file(&s, b"x", false))]);
            let n = VersionNumber::new(4, 1);
            let rules = ModeRules::new(false);
            let m = match tie {
                None => merge_trees(&base, &ours, &theirs, Numbers { ours: n, theirs: n }, &rules, &s),
                Some(side) => merge_trees_ordered(&base, &ours, &theirs, Order::favouring(n, n, side), &rules, &s),
            }.unwrap();
            if let Some(side) = tie {
                prop_assert_eq!(m.order.winner, side);
            }
            let kept = bytes_of(&s, &m.entries[&p("data.bin")]);
            let entry = m.redo.iter().find(|e| e.path == Some(p("data.bin"))).expect("a redo entry");
            let Displaced::Whole { content: WholeContent::File { manifest, .. }, kept: Some(WholeContent::File { manifest: kept_manifest, .. }) } = &entry.what else {
                panic!("a whole-file entry: {:?}", entry.what);
            };
            let displaced = s.load(manifest).unwrap();
            prop_assert_eq!(&s.load(kept_manifest).unwrap(), &kept, "the entry's kept side is the file");
            prop_assert_ne!(&displaced, &kept, "the displaced side is not what the file kept");
            let winner = if m.order.winner == Side::Ours { &ob } else { &tb };
            prop_assert_eq!(&kept, winner);
            prop_assert!(displaced == ob || displaced == tb);
        }
    }
}
