//! Cutting a file again with the chunks it held when last read: where an old chunk's bytes are
//! found again at a chunk boundary, hashing them proves the cut FastCDC would make there, so a
//! large file changed in a few places is hashed almost everywhere and cut (the slow part of a
//! scan: ~1.3 GB/s against BLAKE3's several GB/s) only around its changes.
//!
//! # Why a verified old chunk is the cut FastCDC would make
//! FastCDC decides a chunk starting at `s` from the bytes after `s` alone: with at least `max`
//! bytes left (so the window is the same `max` bytes and the normalization's centre is `avg`),
//! it cuts at the first position `L` in `[min, max)` whose gear hash, which takes in the byte
//! at `s + L`, matches the mask, or at `max`. An old chunk `j` of length `L` that was cut with
//! at least `max` bytes after its start is therefore the cut at a new boundary `p` when
//! - the new file has at least `max` bytes after `p`,
//! - its bytes `p..p + L` hash to chunk `j`'s id, and
//! - `L == max`, or the byte at `p + L` equals the old one at `L` (checked by verifying chunk
//!   `j + 1` right after, whose first byte it is, or else by cutting `j` again).
//!
//! Everything else is cut as before. When the old chunks were cut with these sizes (every
//! manifest a scan made, and every honest member's), the result is the very list a cut from
//! scratch gives (`file_manifest_pipelined`). Whatever the hint holds, every chunk taken from
//! it is one whose bytes hash to its id, between `min` and `max` long, where the file has
//! those bytes: a wrong hint (or a hostile member's boundaries, which the scan cache already
//! keeps for a file written from them) costs time and shapes the cut, never the content.
//!
//! # Finding the old chunks again
//! After a cut, the next old chunk is expected where the last one found ended (the shift
//! between old and new offsets holds until the next change). Past a change, each chunk cut
//! is hashed here and looked up among the old ids, which finds the new shift after an
//! insertion or deletion. After [`HUNT_LIMIT`] chunks cut in a row (a file rewritten), the
//! rest of each block is cut on two threads as without a hint, with a couple of chunks looked
//! up at the start of every block; a block less than three quarters found again (changes
//! every few chunks) has the next ones cut that way too (1, 2, 4 … up to 16 blocks while the
//! changes go on).

use std::collections::HashMap;

use super::Cutter;
use crate::ids::ChunkId;
use crate::manifest::{ChunkRef, FileManifest};

/// Chunks cut in a row (not found among the old ones) before the rest of a block is cut on two
/// threads.
const HUNT_LIMIT: u32 = 64;
/// Chunks looked up at the start of each block once the hunt has stopped.
const HUNT_PER_BLOCK: u32 = 2;

/// The old chunks of a file and where the cut has got to in them.
pub(super) struct Resync<'a> {
    cutter: Cutter,
    chunks: &'a [ChunkRef],
    /// `starts[i]`: the old offset of chunk `i`; `starts[n]` the old size.
    starts: Vec<u64>,
    /// The first index of each old id, by its first eight bytes.
    by_id: HashMap<u64, u32>,
    /// New offset minus old offset of the last chunk found again.
    shift: i64,
    /// The old chunk expected at the position reached.
    expect: Option<usize>,
    /// Chunks cut in a row since an old one was last found where expected.
    misses: u32,
    /// Blocks to cut as without a hint, on two threads (faster where changes come every few
    /// chunks): after a block less than three quarters found again, 1, then 2, 4 … up to 16
    /// while that goes on.
    skip: u32,
    /// The next `skip`.
    backoff: u32,
    /// Old chunks found where expected.
    #[cfg(test)]
    found: usize,
}

fn key(id: &ChunkId) -> u64 {
    let b = id.as_bytes();
    u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]])
}

impl<'a> Resync<'a> {
    pub(super) fn new(cutter: Cutter, before: &'a FileManifest) -> Self {
        let chunks: &[ChunkRef] = &before.chunks;
        let mut starts = Vec::with_capacity(chunks.len() + 1);
        let mut at = 0u64;
        let mut by_id = HashMap::with_capacity(chunks.len());
        for (i, c) in chunks.iter().enumerate() {
            starts.push(at);
            at += u64::from(c.len);
            by_id.entry(key(&c.id)).or_insert(i as u32);
        }
        starts.push(at);
        Resync {
            cutter,
            chunks,
            starts,
            by_id,
            shift: 0,
            expect: (!chunks.is_empty()).then_some(0),
            misses: 0,
            skip: 0,
            backoff: 1,
            #[cfg(test)]
            found: 0,
        }
    }

    fn max(&self) -> usize {
        self.cutter.params.max as usize
    }

    /// Whether old chunk `j` may be found at the start of `data`: it was cut with `max` bytes
    /// after it, its length is one a cut gives, and `data` holds `max` bytes.
    fn may_be_here(&self, j: usize, data: &[u8]) -> bool {
        let c = &self.chunks[j];
        let p = self.cutter.params;
        let old_left = self.starts[self.chunks.len()] - self.starts[j];
        old_left >= u64::from(p.max)
            && (p.min..=p.max).contains(&c.len)
            && data.len() >= p.max as usize
    }

    /// How many old chunks from `j` on are at the start of `data`, one after the other, each
    /// with `max` bytes after its start. The first is hashed alone (after a change it is
    /// usually not there), the next ones in batches that double while every chunk is found
    /// (from four average chunks up to the rest of the block, on two threads from 1 MiB): a
    /// batch hashed past a change is wasted, and at most twice what was found before it plus
    /// the first batch, so edits every few chunks cost about what a cut would.
    fn run_here(&self, j: usize, data: &[u8]) -> usize {
        if !self.may_be_here(j, data) {
            return 0;
        }
        let first = self.chunks[j];
        if ChunkId::of(&data[..first.len as usize]) != first.id {
            return 0;
        }
        let mut found = 1;
        let mut at = first.len as usize;
        let mut budget = 4 * self.cutter.params.avg as usize;
        let mut lens = Vec::new();
        loop {
            let i = j + found;
            lens.clear();
            let mut end = at;
            while end - at < budget
                && i + lens.len() < self.chunks.len()
                && self.may_be_here(i + lens.len(), &data[end..])
            {
                let len = self.chunks[i + lens.len()].len;
                lens.push(len);
                end += len as usize;
            }
            if lens.is_empty() {
                return found;
            }
            let hashed = super::hash_chunks(&data[at..], &lens);
            let same = hashed
                .iter()
                .zip(&self.chunks[i..])
                .take_while(|(new, old)| new.id == old.id)
                .count();
            found += same;
            if same < lens.len() {
                return found;
            }
            at = end;
            budget *= 2;
        }
    }

    /// The old chunk starting where new offset `at` is under the current shift.
    fn at_shift(&self, at: u64) -> Option<usize> {
        let old = i64::try_from(at).ok()?.checked_sub(self.shift)?;
        let old = u64::try_from(old).ok()?;
        let j = self.starts.binary_search(&old).ok()?;
        (j < self.chunks.len()).then_some(j)
    }

    /// Like [`Cutter::cut_block`] for the block `data` that starts at new offset `base`:
    /// pushes each chunk's length to `lens` and, where it is already known, its id to `ids`
    /// (`None` for the hashing thread to compute). Returns the bytes consumed.
    pub(super) fn cut_block(
        &mut self,
        data: &[u8],
        base: u64,
        eof: bool,
        lens: &mut Vec<u32>,
        ids: &mut Vec<Option<ChunkId>>,
        threshold: usize,
    ) -> usize {
        let max = self.max();
        if self.skip > 0 {
            self.skip -= 1;
            let used = self.cutter.cut_block_parallel(data, eof, lens, threshold);
            ids.resize(lens.len(), None);
            self.expect = self.at_shift(base + used as u64);
            return used;
        }
        if self.misses >= HUNT_LIMIT {
            self.misses = HUNT_LIMIT - HUNT_PER_BLOCK;
        }
        let mut found_bytes = 0usize;
        let mut pos = 0;
        // An old chunk found at `.0` shorter than `max`: its cut also needs the byte after it
        // to be the old one, which the next chunk found proves.
        let mut pending: Option<(usize, usize)> = None;
        while pos < data.len() && (eof || data.len() - pos >= max) {
            let run = self.expect.map_or(0, |j| self.run_here(j, &data[pos..]));
            if run > 0 {
                let j = self.expect.unwrap_or_default();
                // Each chunk of the run but the last is followed by the next one found.
                if let Some((_, pj)) = pending.take() {
                    lens.push(self.chunks[pj].len);
                    ids.push(Some(self.chunks[pj].id));
                }
                for c in &self.chunks[j..j + run - 1] {
                    lens.push(c.len);
                    ids.push(Some(c.id));
                    pos += c.len as usize;
                }
                let last = j + run - 1;
                let c = self.chunks[last];
                if c.len as usize == max {
                    lens.push(c.len);
                    ids.push(Some(c.id));
                } else {
                    pending = Some((pos, last));
                }
                pos += c.len as usize;
                found_bytes += self.starts[last + 1] as usize - self.starts[j] as usize;
                self.expect = (last + 1 < self.chunks.len()).then_some(last + 1);
                self.misses = 0;
                #[cfg(test)]
                {
                    self.found += run;
                }
                continue;
            }
            if let Some((at, pj)) = pending.take() {
                // Cut it again: the same length settles it.
                let n = self.cutter.next_len(&data[at..]);
                if n == self.chunks[pj].len as usize {
                    lens.push(n as u32);
                    ids.push(Some(self.chunks[pj].id));
                } else {
                    lens.push(n as u32);
                    ids.push(None);
                    pos = at + n;
                    self.expect = self.at_shift(base + pos as u64);
                    continue;
                }
            }
            if self.misses >= HUNT_LIMIT {
                // A rewritten stretch: the rest of the block as without a hint.
                let start = lens.len();
                let used = self
                    .cutter
                    .cut_block_parallel(&data[pos..], eof, lens, threshold);
                ids.resize(ids.len() + (lens.len() - start), None);
                pos += used;
                self.expect = None;
                break;
            }
            let n = self.cutter.next_len(&data[pos..]);
            if n == 0 {
                break;
            }
            self.misses += 1;
            let end = base + (pos + n) as u64;
            if let Some(j) = self.at_shift(end) {
                lens.push(n as u32);
                ids.push(None);
                self.expect = Some(j);
            } else {
                let id = ChunkId::of(&data[pos..pos + n]);
                lens.push(n as u32);
                ids.push(Some(id));
                let old = self
                    .by_id
                    .get(&key(&id))
                    .map(|&j| j as usize)
                    .filter(|&j| self.chunks[j].id == id);
                match old {
                    Some(j) => {
                        self.shift = (base + pos as u64) as i64 - self.starts[j] as i64;
                        self.expect = (j + 1 < self.chunks.len()).then_some(j + 1);
                    }
                    None => self.expect = None,
                }
            }
            pos += n;
        }
        if let Some((at, pj)) = pending {
            // Not settled within this block: found again at the start of the next one.
            pos = at;
            self.expect = Some(pj);
        }
        if found_bytes * 4 < pos * 3 {
            self.skip = self.backoff;
            self.backoff = (self.backoff * 2).min(16);
        } else {
            self.backoff = 1;
        }
        pos
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chunker::{ChunkerParams, chunk_bytes, file_manifest_resynced};
    use crate::testdata::pseudo_random;
    use proptest::prelude::*;

    fn small() -> ChunkerParams {
        ChunkerParams::new(256, 1024, 4096).unwrap()
    }

    /// Cuts `data` with `before` as the hint in blocks of `block` bytes, as the pipeline does;
    /// returns the chunks (ids computed where not known) and how many were found again.
    fn cut(
        data: &[u8],
        before: &FileManifest,
        p: ChunkerParams,
        block: usize,
    ) -> (Vec<ChunkRef>, usize) {
        let mut r = Resync::new(Cutter::new(p), before);
        let mut out = Vec::new();
        let mut at = 0usize;
        loop {
            let end = (at + block).min(data.len());
            let eof = end == data.len();
            let (mut lens, mut ids) = (Vec::new(), Vec::new());
            let used = r.cut_block(
                &data[at..end],
                at as u64,
                eof,
                &mut lens,
                &mut ids,
                64 << 10,
            );
            assert_eq!(lens.len(), ids.len());
            let mut pos = at;
            for (len, id) in lens.into_iter().zip(ids) {
                let bytes = &data[pos..pos + len as usize];
                let real = ChunkId::of(bytes);
                assert!(
                    id.is_none_or(|id| id == real),
                    "a known id is the bytes' own"
                );
                out.push(ChunkRef { id: real, len });
                pos += len as usize;
            }
            assert_eq!(pos, at + used);
            at += used;
            if eof && at == data.len() {
                return (out, r.found);
            }
        }
    }

    /// `data` with the edits applied, each at a fraction of the length: bytes deleted there,
    /// then bytes inserted.
    fn edited(data: &[u8], edits: &[(f64, usize, Vec<u8>)]) -> Vec<u8> {
        edited_at(data, edits, None)
    }

    /// Like [`edited`]; with `cuts`, each edit moves to the nearest of these chunk boundaries,
    /// where the byte after a chunk that is kept changes.
    fn edited_at(
        data: &[u8],
        edits: &[(f64, usize, Vec<u8>)],
        cuts: Option<&FileManifest>,
    ) -> Vec<u8> {
        let mut out = data.to_vec();
        for (at, del, ins) in edits {
            let mut pos = ((out.len() as f64) * at) as usize;
            if let Some(m) = cuts {
                let mut b = 0;
                for c in m.chunks.iter() {
                    if b + c.len as usize > pos || b + c.len as usize > out.len() {
                        break;
                    }
                    b += c.len as usize;
                }
                pos = b;
            }
            let del = (*del).min(out.len() - pos);
            out.splice(pos..pos + del, ins.iter().copied());
        }
        out
    }

    #[test]
    fn an_unchanged_file_is_found_again_whole() {
        let data = pseudo_random(3 << 20, 7);
        let p = small();
        let before = chunk_bytes(&data, p);
        let (cut, found) = cut(&data, &before, p, 1 << 20);
        assert_eq!(&cut[..], &before.chunks[..]);
        // All but the chunks within `max` of the end.
        assert!(
            found + 4 >= before.chunks.len(),
            "{found} of {}",
            before.chunks.len()
        );
    }

    #[test]
    fn an_insertion_in_the_middle_is_cut_around_and_the_rest_found_again() {
        let data = pseudo_random(4 << 20, 8);
        let p = small();
        let before = chunk_bytes(&data, p);
        let new = edited(
            &data,
            &[(0.5, 0, b"an inserted line of 35 bytes here!\n".to_vec())],
        );
        let (cut, found) = cut(&new, &before, p, 1 << 20);
        let scratch = chunk_bytes(&new, p);
        assert_eq!(&cut[..], &scratch.chunks[..]);
        assert!(
            found * 100 >= scratch.chunks.len() * 98,
            "{found} of {}",
            scratch.chunks.len()
        );
    }

    /// Boundaries from other chunk sizes (real ids, other cuts: what a hostile member may
    /// name) still give chunks whose ids are their bytes', tiling the file, within the bounds.
    #[test]
    fn a_hint_cut_otherwise_never_gives_a_wrong_chunk() {
        let data = pseudo_random(2 << 20, 9);
        let p = small();
        for other in [
            ChunkerParams::new(512, 2048, 4096).unwrap(),
            ChunkerParams::new(256, 512, 1024).unwrap(),
            ChunkerParams::new(1024, 4096, 16384).unwrap(),
        ] {
            let before = chunk_bytes(&data, other);
            let new = edited(&data, &[(0.3, 10, vec![1, 2, 3])]);
            let (cut, _) = cut(&new, &before, p, 1 << 20);
            assert_eq!(cut.iter().map(|c| c.len as usize).sum::<usize>(), new.len());
            for (i, c) in cut.iter().enumerate() {
                assert!(c.len <= p.max() && (i + 1 == cut.len() || c.len >= p.min()));
            }
        }
    }

    /// Chunks cut near the old end saw fewer than `max` bytes after them (and from `avg` on,
    /// a smaller centre): after an append they are not taken as they were.
    #[test]
    fn chunks_cut_near_the_old_end_are_cut_again_after_an_append() {
        let p = small();
        for seed in 0..400u64 {
            let data = pseudo_random(6_000 + (seed as usize * 37) % 9_000, seed);
            let before = chunk_bytes(&data, p);
            let mut new = data.clone();
            new.extend_from_slice(&pseudo_random(9_000, seed + 1000));
            let (cut, _) = cut(&new, &before, p, 1 << 20);
            assert_eq!(&cut[..], &chunk_bytes(&new, p).chunks[..], "seed {seed}");
        }
    }

    /// Changes every few chunks: blocks are cut as without a hint for a while (1, 2, 4 …), then
    /// the hint is tried again where the file is unchanged once more; the same cut throughout.
    #[test]
    fn dense_changes_then_none_give_the_cut_from_scratch() {
        let p = small();
        let data = pseudo_random(6 << 20, 13);
        let before = chunk_bytes(&data, p);
        let mut new = data.clone();
        let mut at = 1000;
        while at < 4 << 20 {
            new[at] ^= 0x5a;
            at += 1500;
        }
        new.splice(5 << 20..5 << 20, [1, 2, 3]);
        let (cut, found) = cut(&new, &before, p, 64 << 10);
        let scratch = chunk_bytes(&new, p);
        assert_eq!(&cut[..], &scratch.chunks[..]);
        // The unchanged last 2 MiB are found again (about 2,000 chunks).
        assert!(found > 1500, "{found}");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        /// Any edits (insertions, deletions, overwrites, at the start, the end or anywhere),
        /// over data with repeats and zero runs, in blocks of any size: exactly the cut from
        /// scratch, through the pipeline too.
        #[test]
        fn resynced_is_the_cut_from_scratch(
            len in 0usize..400_000,
            seed: u64,
            repeats: bool,
            edits in proptest::collection::vec(
                (0f64..=1.0, 0usize..20_000, proptest::collection::vec(any::<u8>(), 0..3000)),
                0..5,
            ),
            block in 8192usize..300_000,
            at_cuts: bool,
        ) {
            let mut data = pseudo_random(len, seed);
            if repeats && len > 40_000 {
                let (a, b) = (len / 4, len / 2);
                data.copy_within(a..a + 10_000, b);
                data[len - 20_000..len - 5_000].fill(0);
            }
            let p = small();
            let before = chunk_bytes(&data, p);
            let new = edited_at(&data, &edits, at_cuts.then_some(&before));
            let scratch = chunk_bytes(&new, p);
            let (cut, _) = cut(&new, &before, p, block.max(4 * p.max() as usize));
            prop_assert_eq!(&cut[..], &scratch.chunks[..]);
            let piped = file_manifest_resynced(&new[..], p, Some(&before), |_, _| Ok(())).unwrap();
            prop_assert_eq!(&piped, &scratch);
        }
    }
}
