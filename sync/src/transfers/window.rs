//! [`Windows`]: the chunks an incoming delta lacks, asked for a window at a time with the next
//! window already asked while the one before it arrives, so the sender is never idle waiting
//! for the receiver's next request. The delta is applied once more only when every window has
//! arrived, not once per window (a 1 GiB file is 128 windows of 8 MiB; applying its delta again
//! after each one looked up all 16,000 of its chunks 128 times).

use std::collections::{HashSet, VecDeque};

use chorus_chunking::delta::FetchRun;
use chorus_chunking::{ChunkId, VersionId};
use chorus_proto::message::ChunkRun;

/// Windows asked for and not yet arrived, at most: one arriving while the next is on its way.
pub(super) const IN_FLIGHT: usize = 2;
/// Dictionary chunks one window names at most (~560 KB of ids); runs past it are asked for
/// without theirs, as the sender would send them past its allowance anyway.
const WINDOW_DICTIONARY_CHUNKS: usize = 16_384;

/// The missing chunks of one incoming delta, in the delta's order.
#[derive(Debug)]
pub(super) struct Windows {
    /// The version they are for.
    pub target: VersionId,
    /// Chunks per window.
    len: usize,
    /// Not asked for yet.
    next: VecDeque<ChunkId>,
    /// How many of `next`, in order, go with each dictionary (empty: none).
    dictionaries: VecDeque<(usize, Vec<ChunkId>)>,
    /// Asked for and not arrived, a set per window, oldest first.
    asked: VecDeque<HashSet<ChunkId>>,
}

impl Windows {
    /// `runs` (the missing chunks as the delta's plan ordered them), `len` chunks a window.
    pub fn new(target: VersionId, runs: Vec<FetchRun>, len: usize) -> Self {
        let mut next = VecDeque::new();
        let mut dictionaries = VecDeque::new();
        for r in runs {
            dictionaries.push_back((r.ids.len(), r.dictionary));
            next.extend(r.ids);
        }
        Windows {
            target,
            len: len.max(1),
            next,
            dictionaries,
            asked: VecDeque::new(),
        }
    }

    /// The windows to ask for now, so that [`IN_FLIGHT`] are on their way (none while they
    /// are): each its ids and the runs of them that come with a dictionary. A run split
    /// between two windows has its dictionary in the first only.
    pub fn ask(&mut self) -> Vec<(Vec<ChunkId>, Vec<ChunkRun>)> {
        let mut out = Vec::new();
        while self.asked.len() < IN_FLIGHT && !self.next.is_empty() {
            let mut n = 0;
            let mut runs = Vec::new();
            let mut named = 0;
            while n < self.len {
                let Some((count, dictionary)) = self.dictionaries.front_mut() else {
                    break;
                };
                let room = self.len - n;
                // A run that fits in a window is not cut: it starts the next one.
                if *count > room && *count <= self.len && n > 0 && !dictionary.is_empty() {
                    break;
                }
                let take = (*count).min(room);
                if !dictionary.is_empty()
                    && take > 0
                    && named + dictionary.len() <= WINDOW_DICTIONARY_CHUNKS
                {
                    named += dictionary.len();
                    runs.push(ChunkRun {
                        first: n as u32,
                        count: take as u32,
                        dictionary: dictionary.clone(),
                    });
                }
                n += take;
                *count -= take;
                if *count == 0 {
                    self.dictionaries.pop_front();
                } else {
                    // A run longer than a window is a file rewritten at length: its dictionary
                    // is the start of what it replaces (at most 4 MiB), no help to the windows
                    // after the first, which come as the sender stores them.
                    *dictionary = Vec::new();
                }
            }
            if n == 0 {
                n = self.len.min(self.next.len());
            }
            let window: Vec<ChunkId> = self.next.drain(..n.min(self.next.len())).collect();
            self.asked.push_back(window.iter().copied().collect());
            out.push((window, runs));
        }
        out
    }

    /// Takes note of chunks that arrived; returns how many of them were asked for.
    pub fn arrived(&mut self, got: &[ChunkId]) -> Vec<ChunkId> {
        let mut taken = Vec::new();
        for id in got {
            if let Some(w) = self.asked.iter_mut().find(|w| w.contains(id)) {
                w.remove(id);
                taken.push(*id);
            }
        }
        self.asked.retain(|w| !w.is_empty());
        taken
    }

    /// True when every chunk asked for has arrived and none is left to ask for.
    pub fn done(&self) -> bool {
        self.next.is_empty() && self.asked.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(i: u8) -> ChunkId {
        ChunkId([i; 32])
    }

    fn target() -> VersionId {
        chorus_chunking::TreeManifest::empty().version_id()
    }

    fn plain(ids: Vec<ChunkId>) -> Vec<FetchRun> {
        vec![FetchRun {
            ids,
            dictionary: Vec::new(),
        }]
    }

    fn ids_of(asked: Vec<(Vec<ChunkId>, Vec<ChunkRun>)>) -> Vec<Vec<ChunkId>> {
        asked.into_iter().map(|(ids, _)| ids).collect()
    }

    #[test]
    fn two_windows_are_asked_and_the_next_as_each_arrives() {
        let mut w = Windows::new(target(), plain((0..7).map(id).collect()), 3);
        assert_eq!(
            ids_of(w.ask()),
            vec![vec![id(0), id(1), id(2)], vec![id(3), id(4), id(5)]]
        );
        assert!(w.ask().is_empty(), "two are on their way");
        // Part of the first window, and a chunk nobody asked for.
        assert_eq!(w.arrived(&[id(0), id(1), id(9)]).len(), 2);
        assert!(w.ask().is_empty());
        // The second window completes before the first: the next may go.
        assert_eq!(w.arrived(&[id(3), id(4), id(5)]).len(), 3);
        assert_eq!(ids_of(w.ask()), vec![vec![id(6)]]);
        assert!(!w.done());
        assert_eq!(w.arrived(&[id(2), id(6)]).len(), 2);
        assert!(w.ask().is_empty());
        assert!(w.done());
    }

    #[test]
    fn a_chunk_arriving_twice_counts_once_and_nothing_missing_is_done_at_once() {
        let mut w = Windows::new(target(), plain(vec![id(1)]), 8);
        assert_eq!(ids_of(w.ask()), vec![vec![id(1)]]);
        assert_eq!(w.arrived(&[id(1), id(1)]).len(), 1);
        assert!(w.done());
        let empty = Windows::new(target(), Vec::new(), 0);
        assert!(empty.done());
    }

    /// Each window names the runs of its ids that have a dictionary, at their place in the
    /// window. A run that fits in a window is not cut (it starts the next); one longer than a
    /// window has its dictionary in its first window only.
    #[test]
    fn a_run_is_cut_only_when_longer_than_a_window() {
        let run = |ids: std::ops::Range<u8>, d: &[u8]| FetchRun {
            ids: ids.map(id).collect(),
            dictionary: d.iter().map(|&b| id(b)).collect(),
        };
        let r = |first: u32, count: u32, d: &[u8]| ChunkRun {
            first,
            count,
            dictionary: d.iter().map(|&b| id(b)).collect(),
        };
        let ids = |ids: std::ops::Range<u8>| ids.map(id).collect::<Vec<_>>();
        let runs = vec![run(0..2, &[]), run(2..6, &[100, 101]), run(6..7, &[102])];
        let mut w = Windows::new(target(), runs, 4);
        assert_eq!(
            w.ask(),
            vec![(ids(0..2), vec![]), (ids(2..6), vec![r(0, 4, &[100, 101])]),]
        );
        w.arrived(&ids(0..2));
        assert_eq!(w.ask(), vec![(ids(6..7), vec![r(0, 1, &[102])])]);

        let runs = vec![run(0..1, &[]), run(1..11, &[100])];
        let mut w = Windows::new(target(), runs, 4);
        assert_eq!(
            w.ask(),
            vec![(ids(0..4), vec![r(1, 3, &[100])]), (ids(4..8), vec![])]
        );
        w.arrived(&ids(0..8));
        assert_eq!(w.ask(), vec![(ids(8..11), vec![])]);
        assert_eq!(w.arrived(&ids(8..11)).len(), 3);
        assert!(w.done());
    }

    /// A window names at most so many dictionary chunks; a run past that is asked for
    /// without its dictionary.
    #[test]
    fn a_window_names_a_bounded_number_of_dictionary_chunks() {
        let dictionary: Vec<ChunkId> = (0..10_000u32)
            .map(|i| ChunkId::of(&i.to_le_bytes()))
            .collect();
        let runs = vec![
            FetchRun {
                ids: vec![id(1)],
                dictionary: dictionary.clone(),
            },
            FetchRun {
                ids: vec![id(2)],
                dictionary,
            },
        ];
        let mut w = Windows::new(target(), runs, 8);
        let asked = w.ask();
        assert_eq!(asked.len(), 1);
        assert_eq!(asked[0].0, vec![id(1), id(2)]);
        assert_eq!(
            asked[0].1.len(),
            1,
            "the second run's dictionary is left out"
        );
        assert_eq!(asked[0].1[0].first, 0);
    }
}
