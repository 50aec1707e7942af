//! Which base chunks a run of new chunks replaces: the encoder's dictionary for a literal, and
//! the receiver's for chunks it fetches (so a fetched run is compressed against them too).

use std::cell::OnceCell;
use std::collections::{HashMap, HashSet};

use crate::ids::ChunkId;
use crate::manifest::{ChunkRef, Entry, TreeManifest};
use crate::path::RelPath;

/// A run of new chunks: `len` of them from `start` in the target file at `path`, and the
/// ids of the chunks right before and after it there (when known).
pub(crate) struct Run<'a> {
    pub path: &'a RelPath,
    pub start: usize,
    pub len: usize,
    pub before: Option<ChunkId>,
    pub after: Option<ChunkId>,
}

impl<'a> Run<'a> {
    /// The run of `len` chunks at `start` of `file`.
    pub fn within(path: &'a RelPath, file: &[ChunkRef], start: usize, len: usize) -> Self {
        Run {
            path,
            start,
            len,
            before: start.checked_sub(1).map(|i| file[i].id),
            after: file.get(start + len).map(|c| c.id),
        }
    }

    fn neighbours(&self) -> [Option<ChunkId>; 2] {
        [self.before, self.after]
    }
}

/// Where each base chunk that surrounds a run first appears: (file, position).
pub(crate) struct BaseLocator<'a> {
    base: &'a TreeManifest,
    at: HashMap<ChunkId, (&'a RelPath, usize)>,
    /// The base's files by [`tail_key`]: built the first time a run's file is not in the base.
    tails: OnceCell<HashMap<&'a str, Vec<&'a RelPath>>>,
}

/// Namesakes compared per run at most.
const MAX_NAMESAKES: usize = 256;

/// What a path's namesakes share: its last two components (`src/a.c` of `v1/src/a.c`); for a
/// path of two, a marker of that depth and its name (`/README` of `v1/README`, which no deeper
/// path's key equals); none for a file at the top.
fn tail_key(p: &RelPath) -> Option<&str> {
    let s = p.as_str();
    let last = s.rfind('/')?;
    Some(match s[..last].rfind('/') {
        Some(i) => &s[i + 1..],
        None => &s[last..],
    })
}

impl<'a> BaseLocator<'a> {
    /// Only the chunks right before and after each run in its target file are looked for
    /// (those are all [`replaced`](Self::replaced) asks about): a map of every base chunk
    /// was a tenth of the sender's work for a one-line change in a share of 100k files.
    pub fn new<'r>(base: &'a TreeManifest, runs: impl IntoIterator<Item = &'r Run<'r>>) -> Self {
        let wanted: HashSet<ChunkId, foldhash::fast::RandomState> = runs
            .into_iter()
            .flat_map(Run::neighbours)
            .flatten()
            .collect();
        let mut at = HashMap::with_capacity(wanted.len());
        if wanted.is_empty() {
            return BaseLocator {
                base,
                at,
                tails: OnceCell::new(),
            };
        }
        'walk: for (path, e) in base.iter() {
            if let Some(m) = e.manifest() {
                for (i, c) in m.chunks.iter().enumerate() {
                    if wanted.contains(&c.id) {
                        at.entry(c.id).or_insert((path, i));
                        if at.len() == wanted.len() {
                            break 'walk;
                        }
                    }
                }
            }
        }
        BaseLocator {
            base,
            at,
            tails: OnceCell::new(),
        }
    }

    /// The base file that `path` most likely was, when the base has nothing there (a moved or
    /// renamed directory: `linux-6.1/kernel/fork.c` for `linux-6.2/kernel/fork.c`): of the
    /// base files whose path ends with the same last two components, the one that ends with
    /// the most of the same (the first in path order among equals); for a path of two
    /// components, a base file of two with the same name (`v1/README` for `v2/README`). A
    /// file at the top has none.
    fn namesake(&self, path: &RelPath) -> Option<&'a RelPath> {
        let tails = self.tails.get_or_init(|| {
            let mut m: HashMap<&'a str, Vec<&'a RelPath>> = HashMap::new();
            for (p, e) in self.base.iter() {
                if let (Some(_), Some(key)) = (e.manifest(), tail_key(p)) {
                    m.entry(key).or_default().push(p);
                }
            }
            m
        });
        let common = |p: &RelPath| {
            path.as_str()
                .rsplit('/')
                .zip(p.as_str().rsplit('/'))
                .take_while(|(a, b)| a == b)
                .count()
        };
        tails
            .get(tail_key(path)?)?
            .iter()
            .take(MAX_NAMESAKES)
            // The first of the longest (the base is walked in path order).
            .fold(None, |best: Option<(usize, &'a RelPath)>, &p| {
                let n = common(p);
                match best {
                    Some((m, _)) if m >= n => best,
                    _ => Some((n, p)),
                }
            })
            .map(|(_, p)| p)
    }

    /// The base chunks that `run` replaces, at most `max_bytes` of them: those between the
    /// base chunks that surround it, or, for a pure insertion, those surrounding chunks
    /// themselves; failing that, the same positions of the same path in the base, or of its
    /// [namesake](Self::namesake) when the base has no file there.
    pub fn replaced(&self, run: &Run, max_bytes: usize) -> &'a [ChunkRef] {
        let len = run.len;
        let prev = run.before.and_then(|id| self.at.get(&id));
        let next = run.after.and_then(|id| self.at.get(&id));
        let chunks_of = |p: &RelPath| -> &'a [ChunkRef] {
            self.base
                .get(p)
                .and_then(Entry::manifest)
                .map_or(&[][..], |m| &m.chunks[..])
        };
        let picked: &'a [ChunkRef] = match (prev, next) {
            (Some(&(x, i)), Some(&(y, j))) if x == y && i < j => {
                let b = chunks_of(x);
                if j > i + 1 { &b[i + 1..j] } else { &b[i..=j] }
            }
            (Some(&(x, i)), _) => {
                let b = chunks_of(x);
                let after = &b[(i + 1).min(b.len())..(i + 1 + len).min(b.len())];
                if after.is_empty() { &b[i..=i] } else { after }
            }
            (None, Some(&(y, j))) => {
                let b = chunks_of(y);
                let before = &b[j.saturating_sub(len)..j];
                if before.is_empty() { &b[j..=j] } else { before }
            }
            (None, None) => {
                let b = match self.base.get(run.path) {
                    Some(_) => chunks_of(run.path),
                    None => self.namesake(run.path).map_or(&[][..], chunks_of),
                };
                let from = run.start.min(b.len());
                &b[from..(from + len.max(1)).min(b.len())]
            }
        };
        let mut bytes = 0usize;
        let n = picked
            .iter()
            .take_while(|c| {
                bytes += c.len as usize;
                bytes <= max_bytes
            })
            .count();
        &picked[..n]
    }
}

#[cfg(test)]
mod locator_tests {
    use super::{BaseLocator, Run};
    use crate::{ChunkId, ChunkRef, Entry, FileManifest, RelPath, TreeManifest};
    use proptest::prelude::*;

    fn chunk(n: u8) -> ChunkRef {
        ChunkRef {
            id: ChunkId::of(&[n]),
            len: 1,
        }
    }

    fn tree(files: &[Vec<u8>]) -> TreeManifest {
        TreeManifest::from_entries(files.iter().enumerate().map(|(i, f)| {
            (
                RelPath::new(format!("f{i:02}")).unwrap(),
                Entry::file(FileManifest {
                    chunks: f.iter().map(|&n| chunk(n)).collect(),
                }),
            )
        }))
        .unwrap()
    }

    proptest! {
        /// For every chunk right before or after a group in its target file, the locator
        /// gives where it first appears in the base, as a map of every base chunk did; and
        /// nothing else is asked of it.
        #[test]
        fn the_locator_finds_the_first_place_of_each_chunk_around_a_group(
            base in proptest::collection::vec(proptest::collection::vec(0u8..40, 0..12), 0..8),
            target in proptest::collection::vec(proptest::collection::vec(0u8..60, 1..12), 1..6),
            cuts in proptest::collection::vec((0usize..12, 1usize..4), 1..6),
        ) {
            let (base, target) = (tree(&base), tree(&target));
            let paths: Vec<&RelPath> = target.iter().map(|(p, _)| p).collect();
            let runs: Vec<Run> = cuts
                .iter()
                .enumerate()
                .filter_map(|(k, &(start, len))| {
                    let path = paths[k % paths.len()];
                    let m = target.get(path)?.manifest()?;
                    let start = start.min(m.chunks.len() - 1);
                    let end = (start + len).min(m.chunks.len());
                    Some(Run::within(path, &m.chunks, start, end - start))
                })
                .collect();
            let locator = BaseLocator::new(&base, &runs);
            let first = |id: &ChunkId| {
                base.iter().find_map(|(p, e)| {
                    let i = e.manifest()?.chunks.iter().position(|c| c.id == *id)?;
                    Some((p, i))
                })
            };
            for r in &runs {
                let m = target.get(r.path).unwrap().manifest().unwrap();
                let around = [
                    r.start.checked_sub(1).and_then(|i| m.chunks.get(i)),
                    m.chunks.get(r.start + r.len),
                ];
                for c in around.into_iter().flatten() {
                    prop_assert_eq!(locator.at.get(&c.id).copied(), first(&c.id));
                }
            }
        }
    }

    fn named(files: &[(&str, &[u8])]) -> TreeManifest {
        TreeManifest::from_entries_fitting(files.iter().map(|(p, f)| {
            (
                RelPath::new(*p).unwrap(),
                Entry::file(FileManifest {
                    chunks: f.iter().map(|&n| chunk(n)).collect(),
                }),
            )
        }))
    }

    /// A file the base has not at its path (its directory renamed or moved) is compressed
    /// against the base file of its name whose path ends the most like its own, when at
    /// least its last two components (or, for a path of two, its name) agree; else nothing.
    #[test]
    fn a_file_in_a_renamed_directory_is_compressed_against_its_namesake() {
        let base = named(&[
            ("other/src/a.c", &[1]),
            ("v1/README", &[2]),
            ("v1/lib/src/a.c", &[3, 4]),
            ("v1/src/a.c", &[5, 6]),
        ]);
        let loc = BaseLocator::new(&base, std::iter::empty());
        let replaced = |path: &str, len: usize| -> Vec<ChunkRef> {
            let path = RelPath::new(path).unwrap();
            let run = Run {
                path: &path,
                start: 0,
                len,
                before: None,
                after: None,
            };
            loc.replaced(&run, 1 << 20).to_vec()
        };
        // The longest agreeing end: lib/src/a.c, not src/a.c.
        assert_eq!(replaced("v2/lib/src/a.c", 2), vec![chunk(3), chunk(4)]);
        // Two agree in src/a.c: the first in path order.
        assert_eq!(replaced("v2/src/a.c", 1), vec![chunk(1)]);
        assert_eq!(replaced("v2/README", 1), vec![chunk(2)]);
        // Only the name agrees: nothing.
        assert!(replaced("v2/docs/a.c", 1).is_empty());
        assert!(replaced("v2/missing.c", 1).is_empty());
        // A file at the top has none; a path of two takes only a path of two.
        assert!(replaced("a.c", 1).is_empty());
        assert!(replaced("v2/a.c", 1).is_empty());
        // A path the base has is never given another's chunks.
        let with_dir = named(&[("v1/src/a.c", &[5]), ("v2/src/a.c", &[])]);
        let loc = BaseLocator::new(&with_dir, std::iter::empty());
        let path = RelPath::new("v2/src/a.c").unwrap();
        let run = Run {
            path: &path,
            start: 0,
            len: 1,
            before: None,
            after: None,
        };
        assert!(loc.replaced(&run, 1 << 20).is_empty());
    }
}
