//! Garbage collection never breaks a transfer: a version of many chunks arrives in windows
//! (NeedChunks, Chunks, and the next window), and a collection that runs between two windows
//! (every ten minutes on a daemon, so an hour-long initial sync meets several) keeps what has
//! arrived: the transfer completes without asking any chunk twice. And a NeedBase for a version
//! collected since it was sent is answered with a clean refusal, never an error. The receiver
//! asks for the next window while the one before it arrives, so the sender is never idle, and a
//! transfer whose answers were lost starts over when the offer is retried.

use std::collections::HashSet;

use chorus_proto::header::NodeId;
use chorus_proto::message::Message;
use chorus_sync::testing::{Envelope, World, noise, small_chunks};
use chorus_sync::{EngineConfig, Retention};

const A: NodeId = 1;
const B: NodeId = 2;

/// Small chunks and lean deltas: the receiver fetches everything in windows.
fn cfg() -> EngineConfig {
    let mut c = small_chunks();
    c.encode.literal_budget = 0;
    c
}

/// Everything kept only as retention's minimum: the harshest collection.
fn harsh() -> Retention {
    Retention {
        keep_last: 1,
        keep_ms: 0,
    }
}

/// Fails when a chunk was asked for more than once.
fn asked_once(asked: &[chorus_chunking::ChunkId]) {
    let distinct: HashSet<_> = asked.iter().collect();
    assert_eq!(
        asked.len(),
        distinct.len(),
        "no chunk was asked twice ({} asks, {} distinct)",
        asked.len(),
        distinct.len()
    );
}

/// What becomes of a message `run` showed.
enum Then {
    Deliver,
    /// Lost on the way.
    Drop,
    /// The run ends here.
    Stop,
}

/// Runs `w` until it settles (ticking the retry timers whenever nothing is on its way), showing
/// each message to `look` before it is delivered.
fn run(w: &mut World, steps: usize, mut look: impl FnMut(&mut World, &Envelope) -> Then) {
    for _ in 0..steps {
        let Some(e) = w.net.pop_front() else {
            if w.commit() > 0 {
                continue;
            }
            if w.settled() {
                break;
            }
            w.tick(cfg().push_retry_ms.max(cfg().offer_retry_ms));
            continue;
        };
        match look(w, &e) {
            Then::Deliver => w.deliver(e),
            Then::Drop => {}
            Then::Stop => break,
        }
    }
}

#[test]
fn a_collection_between_fetch_windows_keeps_what_arrived() {
    let mut w = World::new(&[A, B], cfg());
    // About 20,000 chunks of ~1 KiB: three windows of at most 8 MiB.
    let big = noise(7, 20 << 20);
    w.edit(A, "big.bin", &big);
    let mut asked: Vec<chorus_chunking::ChunkId> = Vec::new();
    let mut collections = 0;
    let mut windows_seen = 0;
    run(&mut w, 200_000, |w, e| {
        if let (B, Message::NeedChunks { ids, .. }) = (e.from, &e.message) {
            asked.extend(ids.iter().copied());
            windows_seen += 1;
            if asked.len() > 100_000 {
                // Five times the chunks there are: fetching what it already had, forever.
                return Then::Stop;
            }
            // Between windows: B has stored what came so far; collect as harshly as possible.
            if windows_seen > 1 {
                w.node_mut(B)
                    .engine_mut()
                    .collect_garbage(u64::MAX / 2, &harsh())
                    .unwrap();
                collections += 1;
            }
        }
        Then::Deliver
    });
    assert!(w.settled(), "the transfer completes");
    assert_eq!(w.folder(B).read("big.bin").unwrap(), big);
    assert!(
        collections >= 2,
        "collections ran between windows: {collections}"
    );
    asked_once(&asked);
}

#[test]
fn the_next_window_is_asked_while_the_one_before_it_arrives() {
    let mut w = World::new(&[A, B], cfg());
    // About 40,000 chunks of ~1 KiB: five windows of at most 8,192 chunks.
    let big = noise(8, 40 << 20);
    w.edit(A, "big.bin", &big);
    let mut asked: Vec<chorus_chunking::ChunkId> = Vec::new();
    // B's asks and A's answers to B, in the order they were delivered: 'N' and 'C'.
    let mut order = String::new();
    run(&mut w, 400_000, |_, e| {
        match (e.from, e.to, &e.message) {
            (B, _, Message::NeedChunks { ids, .. }) => {
                asked.extend(ids.iter().copied());
                order.push('N');
            }
            (A, B, Message::Chunks(_)) => order.push('C'),
            _ => {}
        }
        Then::Deliver
    });
    assert!(w.settled(), "the transfer completes");
    assert_eq!(w.folder(B).read("big.bin").unwrap(), big);
    asked_once(&asked);
    let windows = order.matches('N').count();
    assert!(windows >= 4, "the version came in windows: {order}");
    // Two windows asked before any chunk came: the sender always has the next one to send.
    assert!(order.starts_with("NN"), "{order}");
}

#[test]
fn a_transfer_whose_chunks_were_lost_starts_over_on_a_retry() {
    let mut w = World::new(&[A, B], cfg());
    let big = noise(10, 20 << 20);
    w.edit(A, "big.bin", &big);
    let mut lost = 0;
    run(&mut w, 400_000, |_, e| match (e.from, e.to, &e.message) {
        // The first answers are lost: the windows they belong to never complete.
        (A, B, Message::Chunks(_)) if lost < 3 => {
            lost += 1;
            Then::Drop
        }
        _ => Then::Deliver,
    });
    assert_eq!(lost, 3);
    assert!(w.settled(), "the transfer completes");
    assert_eq!(w.folder(B).read("big.bin").unwrap(), big);
}

/// A transfer that takes a while (a slow link, or 100,000 files) is offered once: neither the
/// leader's offer retry (to a member it needs for the commit) nor the Want of a member
/// catching up with the committed head has the whole delta sent again while the member is
/// fetching its chunks (each copy made it decode and apply the delta again and ask for its
/// windows from the start).
#[test]
fn a_slow_transfer_is_offered_once() {
    const C: NodeId = 3;
    let mut w = World::new(&[A, B, C], cfg());
    let big = noise(11, 20 << 20);
    let mut offers = Vec::new();
    let mut delivered = 0u32;
    let mut slowly = |w: &mut World, e: &Envelope| {
        if let (A, Message::Offer { .. }) = (e.from, &e.message) {
            offers.push(e.to);
        }
        // Time passes while messages travel: 250 ms every two, so the transfer takes seconds.
        delivered += 1;
        if delivered.is_multiple_of(2) {
            w.tick(250);
        }
        Then::Deliver
    };
    // C is away: the commit waits for B, offered the version while A's retry timer runs.
    w.cut_off(C);
    w.edit(A, "big.bin", &big);
    run(&mut w, 400_000, &mut slowly);
    assert_eq!(w.folder(B).read("big.bin").unwrap(), big);
    // C comes back behind the head: it asks for it while A's catch-up offers it.
    w.heal(C);
    run(&mut w, 400_000, &mut slowly);
    assert!(w.settled(), "the transfers complete");
    assert_eq!(w.folder(C).read("big.bin").unwrap(), big);
    for id in [B, C] {
        let n = offers.iter().filter(|&&to| to == id).count();
        assert_eq!(n, 1, "node {id} was offered the version {n} times");
    }
}
