//! Undo, redo and restore mean what they say, sans IO through the test World: repeated undo
//! walks back one accepted version at a time and redo walks forward again (any sequence of k
//! undos then k redos returns to the start); a new edit ends the walk; redoing a displaced
//! change re-applies only what that change changed, and what it displaces in turn goes on the
//! redo stack (for any concurrent line edits, redone in any order); ignored paths are never
//! taken from or written by history operations (over any history), and `.chorusignore` files
//! stay as they are, so going back never switches a rule off.

use chorus_chunking::ChunkerParams;
use chorus_merge::ModeRules;
use chorus_proto::header::NodeId;
use chorus_sync::EngineConfig;
use chorus_sync::testing::World;
use proptest::prelude::*;

const A: NodeId = 1;
const B: NodeId = 2;

fn cfg() -> EngineConfig {
    EngineConfig::new(ModeRules::new(false), ChunkerParams::default())
}

fn text(w: &World, id: NodeId, path: &str) -> Option<String> {
    w.folder(id)
        .read(path)
        .map(|b| String::from_utf8(b).expect("text"))
}

fn settle(w: &mut World) {
    assert!(w.run(10_000), "the world settles");
}

fn undo(w: &mut World, id: NodeId) -> Result<(), String> {
    w.request(id, |r, now| r.undo(now))
        .map(drop)
        .map_err(|e| e.message)
}

fn redo(w: &mut World, id: NodeId) -> Result<(), String> {
    w.request(id, |r, now| r.redo_undo(now))
        .map(drop)
        .map_err(|e| e.message)
}

#[test]
fn repeated_undo_goes_further_back_and_redo_comes_forward_again() {
    let mut w = World::new(&[A, B], cfg());
    for word in ["one", "two", "three"] {
        w.edit(A, "f.txt", word.as_bytes());
        settle(&mut w);
    }
    let mut seen = Vec::new();
    for i in 0..3 {
        undo(&mut w, A).unwrap();
        settle(&mut w);
        seen.push(text(&w, B, "f.txt"));
        if i == 0 {
            // A restart in the middle does not end the walk.
            w.restart(A);
            settle(&mut w);
        }
    }
    assert_eq!(
        seen,
        [Some("two".into()), Some("one".into()), None],
        "each undo steps one further back, on every node"
    );
    assert!(undo(&mut w, A).is_err(), "nothing before the first version");
    for _ in 0..3 {
        redo(&mut w, A).unwrap();
        settle(&mut w);
    }
    assert_eq!(text(&w, B, "f.txt").as_deref(), Some("three"));
    assert!(redo(&mut w, A).is_err(), "every undo taken back");

    // A new edit ends the walk: redo is refused, undo starts again from the newest version.
    undo(&mut w, A).unwrap();
    settle(&mut w);
    w.edit(B, "f.txt", b"four");
    settle(&mut w);
    assert!(redo(&mut w, A).is_err(), "the share changed since the undo");
    undo(&mut w, A).unwrap();
    settle(&mut w);
    assert_eq!(text(&w, A, "f.txt").as_deref(), Some("two"));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Any history of edits; undo k times, then redo k times: the share is back where it was.
    #[test]
    fn undo_k_then_redo_k_returns_to_the_start(
        edits in prop::collection::vec((0usize..3, 0u8..4, any::<bool>()), 1..8),
        k in 1usize..6,
    ) {
        let mut w = World::new(&[A, B], cfg());
        for (i, (file, word, on_b)) in edits.iter().enumerate() {
            let id = if *on_b { B } else { A };
            w.edit(id, &format!("f{file}"), format!("edit {i} word {word}\n").as_bytes());
            settle(&mut w);
        }
        let start = w.folder(A).contents();
        let k = k.min(edits.len());
        for _ in 0..k {
            undo(&mut w, A).unwrap();
            settle(&mut w);
        }
        for _ in 0..k {
            redo(&mut w, A).unwrap();
            settle(&mut w);
        }
        prop_assert_eq!(&w.folder(A).contents(), &start);
        prop_assert_eq!(&w.folder(B).contents(), &start);
    }
}

/// Lines of `s`.
fn lines(s: &str) -> Vec<&str> {
    s.lines().collect()
}

/// A and B share `f.txt` = `base`, then change it concurrently to `ours` and `theirs` (B's
/// push reaches the leader after A's own); settled.
fn concurrent(base: &str, ours: &str, theirs: &str) -> World {
    let mut w = World::new(&[A, B], cfg());
    w.edit(A, "f.txt", base.as_bytes());
    settle(&mut w);
    w.cut_off(B);
    w.edit(A, "f.txt", ours.as_bytes());
    w.edit(B, "f.txt", theirs.as_bytes());
    w.run(1000);
    w.heal(B);
    settle(&mut w);
    w
}

#[test]
fn a_redo_reapplies_only_what_the_displaced_change_changed() {
    let base = "l1\nl2\nl3\nl4\nl5\nl6\n";
    let ours = "l1\nA2\nl3\nA4\nl5\nl6\n";
    let theirs = "l1\nB2\nl3\nl4\nB5\nl6\n";
    let mut w = concurrent(base, ours, theirs);
    let merged = text(&w, A, "f.txt").unwrap();
    assert_eq!(text(&w, B, "f.txt").unwrap(), merged);
    let entries = w.node(A).engine().redo().unwrap();
    assert!(!entries.is_empty(), "the merge displaced something");
    let before_redo = entries.len();
    // B (not the leader: what its redo displaces travels with its push) redoes every
    // displaced hunk; each must leave alone every line its change
    // did not change (relative to the base).
    // The region of lines 4 and 5 first (changes to adjacent lines meet there), then line 2.
    let mut seqs: Vec<(std::cmp::Reverse<usize>, u64)> = entries
        .iter()
        .map(|r| match &r.entry.what {
            chorus_merge::Displaced::Hunk(h) => (std::cmp::Reverse(h.line), r.seq),
            other => panic!("a line merge displaces hunks, not {other:?}"),
        })
        .collect();
    seqs.sort();
    for (_, seq) in seqs {
        let now_text = text(&w, B, "f.txt").unwrap();
        let rec = w
            .node(A)
            .engine()
            .redo()
            .unwrap()
            .into_iter()
            .find(|r| r.seq == seq)
            .unwrap();
        let loser = if rec.entry.displaced_from.minor == 0 {
            ours
        } else {
            theirs
        };
        w.request(B, |r, now| {
            r.redo_entry(now, seq, false, ChunkerParams::default())
        })
        .unwrap();
        settle(&mut w);
        let after = text(&w, B, "f.txt").unwrap();
        for (i, (b, l)) in lines(base).iter().zip(lines(loser)).enumerate() {
            if b == &l {
                assert_eq!(
                    lines(&after)[i],
                    lines(&now_text)[i],
                    "line {} was not changed by the redone side, yet the redo changed it:\nbefore:\n{now_text}after:\n{after}",
                    i + 1
                );
            }
        }
    }
    let after = text(&w, B, "f.txt").unwrap();
    // Every change of both sides is now either in the file or on the redo stack.
    let stack = w.node(B).engine().redo().unwrap();
    for line in ["A2", "A4", "B2", "B5"] {
        let on_stack = stack
            .iter()
            .any(|r| format!("{:?}", r.entry.what).contains(line));
        assert!(
            after.contains(line) || on_stack,
            "{line} is lost: file\n{after}stack {stack:#?}"
        );
    }
    assert!(
        stack.len() > before_redo,
        "what the redo displaced (line 2 of the side that won) went on the redo stack"
    );
    assert_eq!(
        text(&w, A, "f.txt").unwrap(),
        after,
        "every node gets the redo"
    );
}

#[test]
fn a_redo_beside_leaves_the_winner_and_puts_the_displaced_text_next_to_it() {
    let base = "l1\nl2\nl3\n";
    let mut w = concurrent(base, "l1\nA2\nl3\n", "l1\nB2\nl3\n");
    let merged = text(&w, A, "f.txt").unwrap();
    let rec = w
        .node(B)
        .engine()
        .redo()
        .unwrap()
        .pop()
        .expect("a displaced hunk");
    w.request(B, |r, now| {
        r.redo_entry(now, rec.seq, true, ChunkerParams::default())
    })
    .unwrap();
    settle(&mut w);
    for id in [A, B] {
        assert_eq!(text(&w, id, "f.txt").unwrap(), merged, "what won stays");
        let aside = format!("f.txt.redo-{}", rec.entry.displaced_from);
        let back = text(&w, id, &aside).unwrap_or_else(|| panic!("{aside} on node {id}"));
        let lost = if merged.contains("A2") { "B2" } else { "A2" };
        assert!(back.contains(lost), "the displaced line is beside: {back}");
    }
}

#[test]
fn history_operations_never_touch_ignored_paths() {
    let mut w = World::new(&[A, B], cfg());
    w.edit(A, "secret.env", b"v1");
    w.edit(A, "f.txt", b"one");
    settle(&mut w);
    let first = w.head(A);
    w.edit(A, "f.txt", b"two");
    settle(&mut w);
    // The secret becomes ignored on A and is removed there; it stays in history.
    w.node_mut(A).folder_mut().ignore("secret.env");
    w.node_mut(A).folder_mut().remove("secret.env");
    w.edit(A, "build.log", b"local output");
    w.node_mut(A).folder_mut().ignore("build.log");
    w.edit(A, ".chorusignore", b"secret.env\nbuild.log\n");
    w.scan(A);
    settle(&mut w);
    let rules = Some("secret.env\nbuild.log\n");
    assert_eq!(
        text(&w, B, "secret.env").as_deref(),
        Some("v1"),
        "an ignore rule stops syncing a path; it deletes it nowhere"
    );

    w.request(A, |r, now| r.restore(now, &first.to_string(), None, false))
        .unwrap();
    settle(&mut w);
    assert_eq!(text(&w, A, "f.txt").as_deref(), Some("one"));
    assert_eq!(
        text(&w, A, "secret.env"),
        None,
        "restore never brings an ignored path back"
    );
    assert_eq!(
        text(&w, A, "build.log").as_deref(),
        Some("local output"),
        "restore never removes an ignored path"
    );
    for n in [A, B] {
        assert_eq!(
            text(&w, n, ".chorusignore").as_deref(),
            rules,
            "going back to a version from before the rules keeps the rules (node {n:?})"
        );
    }
    undo(&mut w, A).unwrap();
    settle(&mut w);
    assert_eq!(text(&w, A, "f.txt").as_deref(), Some("two"));
    assert_eq!(text(&w, A, "secret.env"), None);
    assert_eq!(text(&w, A, "build.log").as_deref(), Some("local output"));
    assert_eq!(text(&w, A, ".chorusignore").as_deref(), rules);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Concurrent line edits of one file on both sides (replacements, overlapping or not); then
    /// every displaced hunk is redone, in a random order: no redo changes a line that the
    /// redone side left as it was in the base.
    #[test]
    fn a_redo_never_changes_a_line_its_change_left_alone(
        n in 3usize..9,
        ours_at in prop::collection::btree_set(0usize..9, 1..4),
        theirs_at in prop::collection::btree_set(0usize..9, 1..4),
        order in any::<u64>(),
    ) {
        let base: Vec<String> = (0..n).map(|i| format!("l{i}")).collect();
        let side = |at: &std::collections::BTreeSet<usize>, tag: &str| -> String {
            base.iter()
                .enumerate()
                .map(|(i, l)| if at.contains(&i) { format!("{tag}{i}\n") } else { format!("{l}\n") })
                .collect()
        };
        let (base_text, ours, theirs) = (side(&Default::default(), ""), side(&ours_at, "A"), side(&theirs_at, "B"));
        let mut w = concurrent(&base_text, &ours, &theirs);
        let mut seqs: Vec<u64> = w.node(A).engine().redo().unwrap().iter().map(|r| r.seq).collect();
        // A random order, from the seed.
        let mut state = order | 1;
        for i in (1..seqs.len()).rev() {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            seqs.swap(i, (state % (i as u64 + 1)) as usize);
        }
        for seq in seqs {
            let Some(rec) = w.node(B).engine().redo().unwrap().into_iter().find(|r| r.seq == seq) else {
                continue;
            };
            let loser = if rec.entry.displaced_from.minor == 0 { &ours } else { &theirs };
            let before = text(&w, B, "f.txt").unwrap();
            if w.request(B, |r, now| r.redo_entry(now, seq, false, ChunkerParams::default())).is_err() {
                continue;
            }
            settle(&mut w);
            let after = text(&w, B, "f.txt").unwrap();
            prop_assert_eq!(lines(&after).len(), n, "replacements keep the line count:\n{}", after);
            for (i, (b, l)) in lines(&base_text).iter().zip(lines(loser)).enumerate() {
                if b == &l {
                    prop_assert_eq!(
                        lines(&after)[i], lines(&before)[i],
                        "line {} was left alone by the redone side, yet the redo changed it:\nbefore:\n{}after:\n{}",
                        i + 1, before, after
                    );
                }
            }
            prop_assert_eq!(text(&w, A, "f.txt").unwrap(), after, "every node gets the redo");
        }
    }

    /// Any history, then any undo, redo and restore: a path ignored here from the start never
    /// leaves this machine, and a path that became ignored after it was shared keeps its local
    /// content here and its shared content on the other machine.
    #[test]
    fn history_operations_never_create_change_or_remove_an_ignored_path(
        edits in prop::collection::vec((0usize..3, 0u8..4), 1..6),
        ops in prop::collection::vec((0u8..3, 0usize..8), 1..6),
    ) {
        let mut w = World::new(&[A, B], cfg());
        w.node_mut(A).folder_mut().ignore("private");
        w.edit(A, "private/key", b"mine only");
        w.edit(A, "late.txt", b"shared");
        settle(&mut w);
        let mut versions = vec![w.head(A)];
        w.node_mut(A).folder_mut().ignore("late.txt");
        w.edit(A, "late.txt", b"local");
        for (i, (file, word)) in edits.iter().enumerate() {
            w.edit(A, &format!("f{file}"), format!("edit {i} word {word}\n").as_bytes());
            settle(&mut w);
            versions.push(w.head(A));
        }
        for (op, pick) in ops {
            let _ = match op {
                0 => undo(&mut w, A),
                1 => redo(&mut w, A),
                _ => {
                    let v = versions[pick % versions.len()].to_string();
                    w.request(A, |r, now| r.restore(now, &v, None, false)).map(drop).map_err(|e| e.message)
                }
            };
            settle(&mut w);
            prop_assert_eq!(text(&w, A, "private/key"), Some("mine only".to_owned()));
            prop_assert_eq!(text(&w, B, "private/key"), None);
            prop_assert_eq!(text(&w, A, "late.txt"), Some("local".to_owned()));
            prop_assert_eq!(text(&w, B, "late.txt"), Some("shared".to_owned()));
        }
    }
}

/// A save made while no leader can be reached, then `restore` or `undo`: written over at once,
/// the save would be in no version the group ever sees (the version holding it superseded
/// before it was sent). The command is refused, saying why, until the save is accepted; the
/// save reaches every node, and the command then works.
#[test]
fn history_operations_wait_for_saves_the_group_has_not_accepted() {
    for restore in [true, false] {
        let mut w = World::new(&[A, B], cfg());
        w.edit(A, "f.txt", b"one");
        settle(&mut w);
        let first = w.head(A);
        w.edit(A, "f.txt", b"two");
        settle(&mut w);
        w.cut_off(B);
        w.edit(B, "g.txt", b"saved while cut off");
        let op = |w: &mut World| {
            if restore {
                w.request(B, |r, now| r.restore(now, &first.to_string(), None, false))
                    .map(drop)
                    .map_err(|e| e.message)
            } else {
                undo(w, B).map(drop)
            }
        };
        let refused = op(&mut w).expect_err("refused while the save is not accepted");
        assert!(refused.contains("not accepted"), "{refused}");
        assert_eq!(text(&w, B, "g.txt").as_deref(), Some("saved while cut off"));
        w.heal(B);
        settle(&mut w);
        assert_eq!(text(&w, A, "g.txt").as_deref(), Some("saved while cut off"));
        op(&mut w).expect("once accepted, the command works");
        settle(&mut w);
        if restore {
            assert_eq!(text(&w, A, "f.txt").as_deref(), Some("one"));
        }
    }
}
