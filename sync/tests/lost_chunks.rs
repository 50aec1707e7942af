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
    }
}
