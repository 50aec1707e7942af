//! Both sides of every conflict survive, whatever their size, on every node: a whole-file
//! conflict on a large binary file puts the losing side on the redo stack by reference to a
//! stored tree (the header stays small), that tree reaches every member before the header
//! commits, history retention keeps it, and `redo` brings the loser back on any node, a node
//! that lacks the tree fetching it from the others first.

use std::collections::BTreeSet;

use chorus_chunking::ChunkerParams;
use chorus_merge::Displaced;
use chorus_merge::redo::WholeContent;
use chorus_proto::header::{NodeId, Proposal};
use chorus_sync::testing::{Log, World, small_chunks};
use chorus_sync::{EngineConfig, Event, Retention};

const A: NodeId = 1;
const B: NodeId = 2;
const C: NodeId = 3;

/// Small chunks, so a file of a few hundred KiB has hundreds of them.
fn cfg() -> EngineConfig {
    small_chunks()
}

/// Bytes that sniff as binary (whole-file merges), different per seed.
fn binary(seed: u32, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761).max(1);
    (0..len)
        .map(|i| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            if i % 97 == 0 { 0 } else { x as u8 }
        })
        .collect()
}

#[test]
fn the_losing_side_of_a_large_binary_conflict_is_restorable_on_every_node() {
    let mut w = World::new(&[A, B, C], cfg());
    w.edit(A, "photo.raw", &binary(1, 300_000));
    assert!(w.run(10_000));
    // A and B change the file at once: B's change wins (the higher number), A's is displaced.
    w.cut_off(B);
    let ours = binary(2, 300_000);
    let theirs = binary(3, 320_000);
    w.edit(A, "photo.raw", &ours);
    w.run(10_000);
    w.edit(B, "photo.raw", &theirs);
    w.heal(B);
    assert!(w.run(10_000), "the group settles");
    for id in [A, B, C] {
        assert_eq!(w.folder(id).read("photo.raw").unwrap(), theirs);
    }
    // The header carries a reference, not hundreds of chunk ids.
    let headers = w.log.headers().to_vec();
    let last = headers.last().unwrap();
    assert!(!last.redo.is_empty(), "the merge displaced A's file");
    assert!(
        last.redo.len() < 2048,
        "a header's redo stays small: {} bytes",
        last.redo.len()
    );
    let rec = w.node(C).engine().redo().unwrap().pop().unwrap();
    let trees = rec.entry.stored_trees();
    assert!(
        matches!(
            &rec.entry.what,
            Displaced::Whole {
                content: WholeContent::Stored { .. },
                ..
            }
        ),
        "{:?}",
        rec.entry.what
    );
    // Every node holds the stored tree, and keeps it through history retention.
    for id in [A, B, C] {
        w.node_mut(id)
            .engine_mut()
            .collect_garbage(
                u64::MAX / 2,
                &Retention {
                    keep_last: 1,
                    keep_ms: 0,
                },
            )
            .unwrap();
        for t in &trees {
            assert!(
                w.node(id).engine().manifest(t).unwrap().is_some(),
                "node {id} holds the displaced side"
            );
        }
    }
    // Redo on C (neither side's author) brings A's file back.
    let files = redo_on(&mut w, C, rec.seq, A);
    assert!(
        files.contains(&ours),
        "A's displaced file is back on every node"
    );
}

#[test]
fn a_node_that_lacks_the_displaced_side_fetches_it_for_a_redo() {
    let mut w = World::new(&[A, B, C], cfg());
    w.edit(A, "blob.bin", &binary(7, 200_000));
    assert!(w.run(10_000));
    w.cut_off(B);
    let ours = binary(8, 200_000);
    w.edit(A, "blob.bin", &ours);
    w.run(10_000);
    w.edit(B, "blob.bin", &binary(9, 210_000));
    w.heal(B);
    assert!(w.run(10_000));
    let rec = w.node(C).engine().redo().unwrap().pop().unwrap();
    let tree = rec.entry.stored_trees()[0];
    // C loses the tree (as if it had joined later).
    w.node_mut(C).engine_mut().forget_for_tests(&tree).unwrap();
    assert!(w.node(C).engine().manifest(&tree).unwrap().is_none());
    let first = w.request(C, |r, now| {
        r.redo_entry(
            now,
            rec.seq,
            false,
            ChunkerParams::new(256, 1024, 4096).unwrap(),
        )
    });
    assert!(first.is_err(), "not here yet: it is fetched");
    assert!(w.run(10_000));
    assert!(w.node(C).engine().manifest(&tree).unwrap().is_some());
    w.request(C, |r, now| {
        r.redo_entry(
            now,
            rec.seq,
            false,
            ChunkerParams::new(256, 1024, 4096).unwrap(),
        )
    })
    .expect("once fetched, the redo works");
    assert!(w.run(10_000));
    let files: BTreeSet<Vec<u8>> = w.folder(B).contents().into_values().collect();
    assert!(files.contains(&ours));
}

/// A leader's proposal times out for it while Raft still carries it; meanwhile a push that
/// loses a conflict is merged into the same tree, and the leader proposes that tree again with
/// the push's displaced side; only the first proposal commits (the second is lost with the
/// leader's term). The first header carries neither the push nor its displaced side, so it
/// must not answer the pusher: the push is merged again, and its side reaches the redo stack.
#[test]
fn a_push_merged_while_a_timed_out_proposal_commits_keeps_its_displaced_side() {
    let mut w = World::new(&[A, B, C], cfg());
    w.edit(A, "photo.raw", &binary(1, 20_000));
    assert!(w.run(10_000));
    // C's change reaches the leader, which proposes it.
    let c_side = binary(2, 20_000);
    w.edit(C, "photo.raw", &c_side);
    while w.log.pending().is_empty() {
        assert!(w.deliver_one(), "the leader proposes C's change");
    }
    let first = w.log.pending()[0].clone();
    // B changes the file too, numbered below C's change (B ranks below C): its push reaches
    // the leader, which merges it into the tip (B's side loses) while the proposal is out.
    let b_side = binary(3, 20_000);
    w.edit(B, "photo.raw", &b_side);
    let b_pushed = w.tree(B).version_id();
    while w.deliver_one() {}
    // Then the proposer's timeout fires; Raft goes on with the proposal.
    times_out(&mut w, &first);
    // (Its tree is offered again once the offers' retry time has passed.)
    let second = until_proposed(
        &mut w,
        false,
        |p| p.parents.contains(&b_pushed),
        "the leader proposes B's push",
    );
    assert_eq!(second.version, first.version, "C's side won: the same tree");
    assert!(!second.redo.is_empty(), "with B's side displaced");
    w.log.lose(|p| p.parents.contains(&b_pushed));
    assert!(w.run(10_000), "the group settles");
    for id in [A, B, C] {
        assert_eq!(w.folder(id).read("photo.raw").unwrap(), c_side);
    }
    // B's side is on the redo stack, and redo brings it back.
    let rec = w
        .node(A)
        .engine()
        .redo()
        .unwrap()
        .pop()
        .expect("B's displaced side is on the redo stack");
    let files = redo_on(&mut w, A, rec.seq, C);
    assert!(files.contains(&b_side), "B's side is back on every node");
}

/// A push that loses its whole change merges into the head's own tree: the header that
/// records it keeps its predecessor's tree. Its proposal times out for the leader while Raft
/// carries it; the leader merges another push and proposes again, on the same head. Both
/// commit in turn: the second names the same tree first as one built on the new header would.
/// Built on the header before, it must be refused (the leader merges again on the new head):
/// taken, it recorded the lost push, and its displaced side, a second time.
#[test]
fn a_proposal_built_on_the_header_before_a_same_tree_one_is_refused() {
    let (mut w, b_side, c_side) = b_changes_while_cut_off_and_c_commits_first();
    let head = w.head(A);
    // B is back: its push loses to the head everywhere, and the leader proposes the head's
    // tree recording it.
    let b_pushed = w.tree(B).version_id();
    w.heal(B);
    let first = until_proposed(
        &mut w,
        false,
        |p| p.parents.contains(&b_pushed),
        "the leader proposes B's push",
    );
    assert_eq!(
        first.parents.first(),
        Some(&first.version),
        "the head's tree"
    );
    assert!(!first.redo.is_empty(), "with B's side displaced");
    // C changes another file: its push merges into the leader's tip while the proposal is
    // out. Then the proposal times out for the leader, which proposes again, on the same head.
    w.edit(C, "other.txt", b"c's new file\n");
    let c_pushed = w.tree(C).version_id();
    while w.deliver_one() {}
    times_out(&mut w, &first);
    let second = until_proposed(
        &mut w,
        false,
        // C's push was built on the head: the tip is its tree.
        |p| p.version == c_pushed,
        "the leader proposes C's push",
    );
    assert_eq!(second.parents.first(), Some(&first.version));
    assert_eq!(w.head(A), head, "nothing committed meanwhile");
    assert!(w.run(10_000), "the group settles");
    for id in [A, B, C] {
        assert_eq!(w.folder(id).read("photo.raw").unwrap(), c_side);
        assert_eq!(w.folder(id).read("other.txt").unwrap(), b"c's new file\n");
    }
    let stack = w.node(C).engine().redo().unwrap();
    assert_eq!(
        stack.len(),
        1,
        "B's displaced side is on the redo stack once: {:?}",
        w.log.headers()
    );
    let files = redo_on(&mut w, C, stack[0].seq, A);
    assert!(files.contains(&b_side), "B's side is back");
}

/// Two saves of one node reach the leader as two pushes with one number: the first waits in
/// the leader's tip for its commit when the second comes (B's answer is late, so B pushes
/// again, its newest change, built on the first). Meanwhile A changed the binary file the
/// second save changes. The second push is B's newest change: it wins the file, A's side goes
/// on the redo stack naming A, and redo brings A's bytes back. The contents vary, so that the
/// trees' order and the files' byte order disagree in some runs: the file and the redo entry
/// must follow one order (on the build before, in some runs both held A's bytes and B's
/// change was gone).
#[test]
fn a_second_push_numbered_like_the_first_keeps_both_sides_of_a_binary_conflict() {
    for seed in 0..6 {
        let mut w = World::new(&[A, B, C], cfg());
        w.edit(A, "data.bin", &binary(100 + seed, 1500));
        w.edit(A, "notes.txt", b"plan\n");
        assert!(w.run(10_000));
        w.cut_off(B);
        let a_side = binary(200 + seed, 1000);
        w.edit(A, "data.bin", &a_side);
        w.run(10_000);
        let a_change = w.head(A);
        // B saves the notes: once it is back, its push reaches the leader, which proposes it.
        w.edit(B, "notes.txt", b"plan\nb's line\n");
        let first = w.tree(B).version_id();
        w.heal(B);
        until_proposed(
            &mut w,
            false,
            |p| p.parents.contains(&first),
            "the leader proposes B's first save",
        );
        // B saves the binary file; the first save's commit is late, and B pushes again.
        let b_side = binary(300 + seed, 2000);
        w.edit(B, "data.bin", &b_side);
        for _ in 0..40 {
            while w.deliver_one() {}
            w.tick(100);
        }
        assert!(w.run(10_000), "the group settles");
        for id in [A, B, C] {
            assert!(
                w.folder(id).read("data.bin").unwrap() == b_side,
                "run {seed}: B's newest change wins on node {id}"
            );
        }
        let stack = w.node(C).engine().redo().unwrap();
        let entries: Vec<_> = stack
            .iter()
            .filter(|r| {
                r.entry
                    .path
                    .as_ref()
                    .is_some_and(|p| p.as_str() == "data.bin")
            })
            .collect();
        assert_eq!(entries.len(), 1, "run {seed}: one conflict on data.bin");
        let entry = &entries[0].entry;
        assert!(entry.displaced_by > entry.displaced_from, "run {seed}");
        assert_eq!(
            entry.displaced_from.minor, a_change.minor,
            "run {seed}: the entry names A, whose change it displaced: {entry:?}"
        );
        let files = redo_on(&mut w, C, entries[0].seq, A);
        assert!(files.contains(&a_side), "run {seed}: A's side is back");
    }
}

/// A group of three holding a small binary `photo.raw` (a few chunks): B, cut off, changes it,
/// and C changes it too, which commits (C ranks above B: B's change will lose). Returns the
/// group, still without B, and B's and C's sides.
fn b_changes_while_cut_off_and_c_commits_first() -> (World, Vec<u8>, Vec<u8>) {
    let mut w = World::new(&[A, B, C], cfg());
    w.edit(A, "photo.raw", &binary(1, 20_000));
    assert!(w.run(10_000));
    w.cut_off(B);
    let b_side = binary(3, 20_000);
    w.edit(B, "photo.raw", &b_side);
    let c_side = binary(2, 20_000);
    w.edit(C, "photo.raw", &c_side);
    assert!(w.run(10_000));
    (w, b_side, c_side)
}

/// The leader's timeout for proposal `p` fires (it is told the proposal failed); Raft goes on
/// with it.
fn times_out(w: &mut World, p: &Proposal) {
    w.feed(A, Event::ProposeFailed { version: p.version });
}

/// The user of node `on` redoes entry `seq`; once the group settles, the files node `seen`
/// holds.
fn redo_on(w: &mut World, on: NodeId, seq: u64, seen: NodeId) -> BTreeSet<Vec<u8>> {
    w.request(on, |r, now| {
        r.redo_entry(
            now,
            seq,
            false,
            ChunkerParams::new(256, 1024, 4096).unwrap(),
        )
    })
    .unwrap();
    assert!(w.run(10_000));
    w.folder(seen).contents().into_values().collect()
}

/// Runs the group (delivering, committing when `commit`, letting time pass when nothing
/// moves) until a pending proposal is `what`; returns it.
fn until_proposed(
    w: &mut World,
    commit: bool,
    what: impl Fn(&Proposal) -> bool,
    expect: &str,
) -> Proposal {
    for _ in 0..1000 {
        if let Some(p) = w.log.pending().iter().find(|p| what(p)) {
            return p.clone();
        }
        let moved = w.deliver_one() || (commit && w.commit() > 0);
        if !moved {
            w.tick(100);
        }
    }
    panic!("{expect}");
}

/// Conflicting files in [`many_conflicts`]: what their losing lines displace takes four
/// headers (64 KiB of redo entries each).
const FILES: usize = 60;

fn note(i: usize) -> String {
    format!("notes/{i:02}.txt")
}

fn b_line(i: usize) -> String {
    format!("b{i:02} {}\n", "b".repeat(1500))
}

/// A group whose members B and C have each changed every line of [`FILES`] files at once
/// (scanned, nothing delivered yet): C's number is higher, so all of B's lines lose.
fn many_conflicts() -> World {
    let mut w = World::new(&[A, B, C], cfg());
    for i in 0..FILES {
        w.node_mut(A)
            .folder_mut()
            .write_file(&note(i), format!("base {i}\n").as_bytes());
    }
    w.scan(A);
    assert!(w.run(10_000));
    for i in 0..FILES {
        w.node_mut(B)
            .folder_mut()
            .write_file(&note(i), b_line(i).as_bytes());
        w.node_mut(C).folder_mut().write_file(
            &note(i),
            format!("c{i:02} {}\n", "c".repeat(1500)).as_bytes(),
        );
    }
    w.scan(B);
    w.scan(C);
    w
}

/// Every one of B's lines is on A's redo stack, once.
fn every_losing_line_is_on_the_redo_stack(w: &World) {
    let stack: String = w
        .node(A)
        .engine()
        .redo()
        .unwrap()
        .iter()
        .map(|r| serde_json::to_string(&r.entry).unwrap())
        .collect();
    for i in 0..FILES {
        assert_eq!(
            stack.matches(b_line(i).trim_end()).count(),
            1,
            "B's line in {} is on the redo stack once",
            note(i)
        );
    }
}

/// A merge that displaces more than two headers hold: the leader commits its tree with what
/// one header holds, then headers that keep that tree and carry the rest. The group settles
/// with C's lines everywhere and every one of B's on the redo stack.
#[test]
fn a_merge_displacing_more_than_two_headers_hold_commits_them_all() {
    let mut w = many_conflicts();
    assert!(w.run(10_000), "the group settles");
    for id in [A, B, C] {
        assert!(w.text(id, &note(7)).starts_with("c07 "));
    }
    every_losing_line_is_on_the_redo_stack(&w);
    let carrying = w
        .log
        .headers()
        .iter()
        .filter(|h| !h.redo.is_empty())
        .count();
    assert!(
        carrying >= 3,
        "{carrying} headers carry the displaced lines"
    );
}

/// As above, with more displaced than one header holds: the leader proposes part of what a
/// candidate displaced and keeps the rest for the next header; its proposal times out, more is
/// merged, and the earlier proposal commits. The rest belongs to pushes that header includes
/// (their pushers are answered), so it still goes with the next header: every displaced side
/// reaches the redo stack.
#[test]
fn displaced_sides_beyond_one_header_survive_an_earlier_proposal_committing_late() {
    let mut w = many_conflicts();
    // The later of the two pushes is merged over the earlier one, displacing B's lines: the
    // leader proposes that merge (what it displaced, as far as one header holds).
    let first = until_proposed(
        &mut w,
        true,
        |p| !p.redo.is_empty(),
        "the leader proposes the merge",
    );
    let carried = chorus_sync::header::decode_redo(&first.redo).unwrap().len();
    assert!(
        carried > 0 && carried < FILES,
        "one header carries part of the {FILES} displaced lines: {carried}"
    );
    // B saves one more file, merged into the tip while the proposal is out; then the
    // proposal times out for the leader, which proposes the new tip (and what it still owes).
    w.edit(B, "later.txt", b"later\n");
    let later = w.tree(B).version_id();
    while w.deliver_one() {}
    times_out(&mut w, &first);
    until_proposed(
        &mut w,
        false,
        |p| p.parents.contains(&later),
        "the leader proposes the new tip",
    );
    // Only the first proposal commits.
    w.log.lose(|p| p.parents.contains(&later));
    assert!(w.run(10_000), "the group settles");
    every_losing_line_is_on_the_redo_stack(&w);
    assert_eq!(w.folder(B).read("later.txt").unwrap(), b"later\n");
}

/// As above, the proposal that times out being a header that only carries what the first
/// could not (the head's tree, naming the head alone): it is proposed again as it is (renewed
/// to a tree that merged a later save, it would pass for a header built on the head after it
/// committed late, and carry its entries twice), and what it could not carry either still goes
/// with a later header though the push that displaced it was answered long before.
#[test]
fn displaced_sides_survive_a_follow_up_header_timing_out() {
    let mut w = many_conflicts();
    let first = until_proposed(
        &mut w,
        true,
        |p| !p.redo.is_empty() && p.parents == [p.version],
        "the leader proposes a header of what the first could not carry",
    );
    w.edit(B, "later.txt", b"later\n");
    while w.deliver_one() {}
    times_out(&mut w, &first);
    assert!(w.run(10_000), "the group settles");
    every_losing_line_is_on_the_redo_stack(&w);
    assert_eq!(w.folder(C).read("later.txt").unwrap(), b"later\n");
}

/// A conflict whose displaced change is small but whose context is large: B (numbered below
/// C) deletes a 40 KiB block of lines while C changes one line inside it. C's change wins; the
/// redo entry for B's deletion holds the region as C kept it and as it was, far more than a
/// header holds. It must still reach the redo stack (as B's whole file, by reference), and the
/// group must go on committing: before, the entry could not fit any header, the leader
/// proposed the same header-less follow-up forever, and nothing committed for anyone again.
#[test]
fn a_small_displaced_change_with_a_large_context_reaches_the_redo_stack_and_the_group_goes_on() {
    let mut w = World::new(&[A, B, C], cfg());
    let line = |i: usize| format!("line {i:04} {}\n", "x".repeat(40));
    let block: String = (0..1000).map(line).collect();
    let base = format!("top\n{block}bottom\n");
    w.edit(A, "doc.txt", base.as_bytes());
    assert!(w.run(10_000));
    let deleted = "top\nbottom\n";
    let changed = base.replace(&line(500), "line 0500 changed by C\n");
    w.node_mut(B)
        .folder_mut()
        .write_file("doc.txt", deleted.as_bytes());
    w.node_mut(C)
        .folder_mut()
        .write_file("doc.txt", changed.as_bytes());
    w.scan(B);
    w.scan(C);
    assert!(w.run(10_000), "the group settles");
    for id in [A, B, C] {
        assert_eq!(
            w.text(id, "doc.txt"),
            changed,
            "C's change wins on node {id}"
        );
    }
    // The group goes on: a later save commits.
    w.edit(A, "later.txt", b"later\n");
    assert!(w.run(10_000), "the group settles again");
    for id in [A, B, C] {
        assert_eq!(w.folder(id).read("later.txt").unwrap(), b"later\n");
    }
    for h in w.log.headers() {
        assert!(
            h.redo.len() <= chorus_proto::header::MAX_REDO_BYTES,
            "a header within its bound"
        );
    }
    let rec = w
        .node(C)
        .engine()
        .redo()
        .unwrap()
        .into_iter()
        .find(|r| {
            r.entry
                .path
                .as_ref()
                .is_some_and(|p| p.as_str() == "doc.txt")
        })
        .expect("B's deletion is on the redo stack");
    let files = redo_on(&mut w, A, rec.seq, C);
    assert!(
        files.iter().any(|f| f == deleted.as_bytes()),
        "redo brings B's side back"
    );
}

/// The losing side of a conflict on a small binary file (a few chunks) is restorable on a node
/// that neither made it nor led the merge: it goes in the redo entry as a stored tree, which
/// reaches the members before the header commits, as a large file's does. (In this order of
/// events C can hold B's chunks anyway, from the offer of a tip that took B's push in first;
/// the test after this one is the order in which C never held them.)
#[test]
fn the_losing_side_of_a_small_binary_conflict_is_restorable_on_a_third_node() {
    let mut w = World::new(&[A, B, C], cfg());
    w.edit(A, "small.bin", &binary(11, 3_000));
    assert!(w.run(10_000));
    let b_side = binary(12, 2_000);
    let c_side = binary(13, 2_500);
    w.node_mut(B).folder_mut().write_file("small.bin", &b_side);
    w.node_mut(C).folder_mut().write_file("small.bin", &c_side);
    w.scan(B);
    w.scan(C);
    assert!(w.run(10_000), "the group settles");
    for id in [A, B, C] {
        assert_eq!(
            w.folder(id).read("small.bin").unwrap(),
            c_side,
            "C's side wins"
        );
    }
    let rec = w
        .node(C)
        .engine()
        .redo()
        .unwrap()
        .pop()
        .expect("B's side is on the redo stack");
    // C brings B's side back: C never held it, and A (the leader) merged it.
    let files = redo_on(&mut w, C, rec.seq, A);
    assert!(files.contains(&b_side), "B's side is back on every node");
}

/// A small binary file (a few chunks) loses a conflict: B's change, made while cut off, meets
/// C's, which committed first and numbers higher. Only B and the leader hold B's chunks. A
/// redo on C, which never held them, brings B's side back on every node. Before, the entry
/// named B's chunks by list alone and the redo on C failed ("chunk … is not in the store"),
/// however long C waited.
#[test]
fn the_losing_side_of_a_small_binary_conflict_is_restorable_on_a_node_that_never_held_it() {
    let (mut w, b_side, c_side) = b_changes_while_cut_off_and_c_commits_first();
    w.heal(B);
    assert!(w.run(10_000), "the group settles");
    for id in [A, B, C] {
        assert_eq!(w.folder(id).read("photo.raw").unwrap(), c_side);
    }
    let stack = w.node(C).engine().redo().unwrap();
    assert_eq!(stack.len(), 1, "B's side is on the redo stack");
    let files = redo_on(&mut w, C, stack[0].seq, A);
    assert!(files.contains(&b_side), "B's side is back on every node");
}
