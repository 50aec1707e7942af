//! The receiver's plan for the chunks a delta lacks: they are asked for in the delta's order,
//! each run of consecutive missing chunks of a file with the base chunks it replaces, so the
//! sender can send the run compressed against them, as it compresses a literal. A change too
//! large for the delta's literal budget then costs about what its literals would have (a
//! release of a source tree: ~4× less than chunks compressed one by one).

use std::collections::HashSet;

use super::apply::{Prepared, Resolved};
use super::limits::MAX_DICTIONARY_CHUNKS;
use super::locate::{BaseLocator, Run};
use crate::Error;
use crate::ids::ChunkId;
use crate::manifest::ChunkRef;
use crate::store::ChunkStore;

/// Chunks to fetch together, and chunks this node holds that they replace (none known: empty).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchRun {
    pub ids: Vec<ChunkId>,
    pub dictionary: Vec<ChunkId>,
}

impl Prepared {
    /// Orders `missing` (what [`finish`](Prepared::finish) named) for fetching: the missing
    /// chunks of each changed file in path and file order, each run of them with the base
    /// chunks it replaces (at most `max_dictionary` bytes, only those `store` holds), then any
    /// other missing chunk. Consecutive runs without a dictionary are one. Every id of
    /// `missing` is in exactly one run.
    pub fn fetch_runs(
        &self,
        missing: Vec<ChunkId>,
        store: &dyn ChunkStore,
        max_dictionary: usize,
    ) -> Result<Vec<FetchRun>, Error> {
        if self.base.is_empty() || missing.is_empty() {
            // Nothing to be compressed against (a first sync): one run, as named.
            return Ok(vec![FetchRun {
                ids: missing,
                dictionary: Vec::new(),
            }]);
        }
        let mut left: HashSet<ChunkId> = missing.iter().copied().collect();
        let mut order: Vec<ChunkId> = Vec::with_capacity(missing.len());
        drop(missing);
        // Each run of missing chunks: where it lies, and its ids' place in `order`.
        let mut runs: Vec<(Run, std::ops::Range<usize>)> = Vec::new();
        let n_known = self.known.len() as u64;
        let mut file: Vec<Option<ChunkRef>> = Vec::new();
        for (path, r) in &self.resolved {
            let Resolved::File {
                runs: table_runs, ..
            } = r
            else {
                continue;
            };
            // The file's chunks; a literal's id is known only once it is decompressed.
            file.clear();
            file.extend(
                table_runs
                    .iter()
                    .flat_map(std::ops::Range::clone)
                    .map(|i| (i < n_known).then(|| self.known[i as usize])),
            );
            let mut start = None;
            for pos in 0..=file.len() {
                let take = file
                    .get(pos)
                    .copied()
                    .flatten()
                    .is_some_and(|c| left.remove(&c.id));
                if take {
                    start.get_or_insert((pos, order.len()));
                    order.push(file[pos].expect("taken chunks are known").id);
                } else if let Some((s, first)) = start.take() {
                    let len = pos - s;
                    runs.push((
                        Run {
                            path,
                            start: s,
                            len,
                            before: s.checked_sub(1).and_then(|i| file[i]).map(|c| c.id),
                            after: file.get(pos).copied().flatten().map(|c| c.id),
                        },
                        first..first + len,
                    ));
                }
            }
        }

        let locator = BaseLocator::new(&self.base, runs.iter().map(|(r, _)| r));
        let mut dictionaries: Vec<Vec<ChunkId>> = Vec::with_capacity(runs.len());
        let mut named: HashSet<ChunkId> = HashSet::new();
        for (run, _) in &runs {
            let mut seen = HashSet::new();
            let d: Vec<ChunkId> = locator
                .replaced(run, max_dictionary)
                .iter()
                .map(|c| c.id)
                .filter(|id| seen.insert(*id))
                .take(MAX_DICTIONARY_CHUNKS)
                .collect();
            named.extend(d.iter().copied());
            dictionaries.push(d);
        }
        // A chunk this node lacks (lost, or itself being fetched) cannot prime anything.
        let named: Vec<ChunkId> = named.into_iter().collect();
        let lost: HashSet<ChunkId> = store.missing(&named)?.into_iter().collect();

        let mut out: Vec<FetchRun> = Vec::new();
        let mut push = |ids: &[ChunkId], dictionary: Vec<ChunkId>| match out.last_mut() {
            Some(last) if dictionary.is_empty() && last.dictionary.is_empty() => {
                last.ids.extend_from_slice(ids);
            }
            _ if ids.is_empty() => {}
            _ => out.push(FetchRun {
                ids: ids.to_vec(),
                dictionary,
            }),
        };
        for ((_, at), mut d) in runs.into_iter().zip(dictionaries) {
            d.retain(|id| !lost.contains(id));
            push(&order[at], d);
        }
        // What no file names (a literal's dictionary, the chunks of a base that was sent).
        let mut rest: Vec<ChunkId> = left.into_iter().collect();
        rest.sort();
        push(&rest, Vec::new());
        Ok(out)
    }
}
