//! A chunk that fails its hash is fetched again: the chunk store drops a chunk whose bytes no
//! longer hash to its id (a bad sector, a torn pack), and the next version that needs it
//! (here, an edit of the file it belongs to) cannot be written from what is stored. The node
//! asks the leader for the chunks it lacks, stores them as they come and then writes the
//! version; it never stops on it and never leaves the version unwritable.

use chorus_chunking::ChunkStore;
use chorus_proto::header::NodeId;
use chorus_sync::EngineConfig;
use chorus_sync::testing::{World, noise, small_chunks};

const A: NodeId = 1;
const B: NodeId = 2;
const C: NodeId = 3;

fn cfg() -> EngineConfig {
    small_chunks()
}

#[test]
fn a_chunk_dropped_as_corrupt_is_fetched_again_and_the_version_written() {
    for lose_on in [B, A] {
        // On a follower (it asks the leader) and on the leader itself (it asks the others).
        let mut w = World::new(&[A, B, C], cfg());
        let original = noise(1, 200_000);
        w.edit(A, "data.bin", &original);
        assert!(w.run(10_000));
        // Paused, the node takes in the next version without writing it...
        w.node_mut(lose_on).pause();
        let mut edited = original.clone();
        edited.extend_from_slice(b"one more line\n");
        let editor = if lose_on == B { C } else { B };
        w.edit(editor, "data.bin", &edited);
        w.run(10_000);
        // ...and meanwhile its store drops some of the version's chunks, as it drops one that
        // fails its hash.
        let ids: Vec<_> = w
            .node(lose_on)
            .engine()
            .manifest(&w.node(lose_on).engine().head().0)
            .unwrap()
            .unwrap()
            .chunks()
            .map(|c| c.id)
            .collect();
        let store = w.nodes[&lose_on].chunks.clone();
        for id in ids.iter().step_by(7) {
            store.remove(id).unwrap();
        }
        assert!(!store.missing(&ids).unwrap().is_empty());
        // Resumed, writing the version needs them: they are fetched again, then it is written.
        w.request(lose_on, |r, now| r.resume(now, false)).unwrap();
        assert!(
            w.run(10_000),
            "the group settles (losing on node {lose_on})"
        );
        for id in [A, B, C] {
            assert_eq!(
                w.folder(id).read("data.bin").as_deref(),
                Some(&edited[..]),
                "node {id} holds the edit (losing on node {lose_on})"
            );
        }
        assert!(
            store.missing(&ids).unwrap().is_empty(),
            "every lost chunk came back"
        );
        // And durably: a crash now loses none of them.
        store.crash();
        assert!(
            store.missing(&ids).unwrap().is_empty(),
            "the chunks fetched again were synced (losing on node {lose_on})"
        );
    }
}

/// Delivers until nothing moves, as [`World::run`] does, counting the `Chunks` messages `to`
/// is sent; `stop` is asked after each and ends the run early when true.
fn run_counting(w: &mut World, to: NodeId, stop: impl FnMut(&World, usize) -> bool) -> usize {
    run_losing(w, to, None, stop).0
}

/// As [`run_counting`], the `lose`-th `Chunks` message to `to` (from 1) dropped on its way;
/// also returns when it was.
fn run_losing(
    w: &mut World,
    to: NodeId,
    lose: Option<usize>,
    mut stop: impl FnMut(&World, usize) -> bool,
) -> (usize, Option<u64>) {
    let mut chunk_messages = 0;
    let mut lost_at = None;
    for _ in 0..100_000 {
        if let Some(e) = w.net.front() {
            if e.to == to && matches!(e.message, chorus_proto::message::Message::Chunks(_)) {
                chunk_messages += 1;
                if lose == Some(chunk_messages) {
                    w.net.pop_front();
                    lost_at = Some(w.now);
                    continue;
                }
            }
            w.deliver_one();
            if stop(w, chunk_messages) {
                return (chunk_messages, lost_at);
            }
            continue;
        }
        if w.commit() > 0 {
            continue;
        }
        if w.settled() {
            break;
        }
        w.tick(w.cfg.push_retry_ms.max(w.cfg.offer_retry_ms));
    }
    (chunk_messages, lost_at)
}

/// A version fetched in many windows is made durable once, before it is applied, not once per
/// message; a receiver killed midway loses the chunks it had buffered, fetches them again and
/// writes the version.
#[test]
fn a_transfer_syncs_once_and_a_crash_midway_fetches_again() {
    // 24 MB of 1 KiB chunks: three windows of 8 MiB, some fifty messages.
    let big = noise(7, 24 << 20);
    let mut w = World::new(&[A, B], cfg());
    w.edit(A, "big.bin", b"small at first\n");
    assert!(w.run(10_000));
    let store = w.nodes[&B].chunks.clone();
    let before = store.syncs();
    w.edit(A, "big.bin", &big);
    let messages = run_counting(&mut w, B, |_, _| false);
    assert!(w.settled());
    assert_eq!(w.folder(B).read("big.bin").as_deref(), Some(&big[..]));
    let syncs = store.syncs() - before;
    assert!(messages >= 8, "{messages} chunk messages");
    assert!(
        syncs * 4 <= messages,
        "{syncs} syncs of the receiver's store for {messages} chunk messages"
    );

    // Again, with B killed after a few messages of the next version: half of it new bytes
    // (fetched chunks are compressed against the ones they replace, so a version only
    // slightly changed would arrive in a message or two).
    let mut edited = big.clone();
    let fresh = noise(8, big.len() / 2);
    for (i, piece) in fresh.chunks(4096).enumerate() {
        edited[i * 8192..i * 8192 + piece.len()].copy_from_slice(piece);
    }
    w.edit(A, "big.bin", &edited);
    let before_crash = store.len();
    run_counting(&mut w, B, |_, n| n >= 3);
    assert!(
        store.len() > before_crash,
        "chunks arrived before the crash"
    );
    store.crash();
    assert_eq!(store.len(), before_crash, "the buffered chunks are lost");
    w.restart(B);
    assert!(w.run(100_000), "the group settles after the crash");
    assert_eq!(w.folder(B).read("big.bin").as_deref(), Some(&edited[..]));
}

/// A chunk message lost on its way while the peers stay connected (a second connection closed
/// under it, QUIC giving way to TCP) costs the transfer about a resend period, not the time
/// its bytes would take at 1 MB/s: the sender takes the receiver to be fetching for at most
/// 15 s after its last answer, then the leader's offer retry has the receiver ask for what it
/// lacks (24 s here). Before, every answer added its size at 1 MB/s to that wait: 72 s for
/// these 64 MiB, 18 minutes for a 1 GiB file. The times are the simulation's clock.
#[test]
fn a_chunk_message_lost_midway_is_asked_again_within_a_resend_period() {
    let big = noise(11, 64 << 20);
    let mut w = World::new(&[A, B], cfg());
    w.edit(A, "big.bin", b"small at first\n");
    assert!(w.run(10_000));
    w.edit(A, "big.bin", &big);
    let start = w.now;
    let (seen, lost_at) = run_losing(&mut w, B, Some(10), |_, _| false);
    let lost_at = lost_at.expect("a chunk message was lost");
    assert!(
        seen > 30,
        "the other window kept coming ({seen} chunk messages)"
    );
    assert!(w.settled(), "the group settles");
    assert_eq!(w.folder(B).read("big.bin").as_deref(), Some(&big[..]));
    let waited = w.now - lost_at;
    eprintln!(
        "lost {} ms after the edit; settled {waited} ms after the loss",
        lost_at - start
    );
    assert!(
        waited <= 30_000,
        "the lost answer was asked again {waited} ms after it was lost"
    );
}
