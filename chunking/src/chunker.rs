//! Streaming content-defined chunking: FastCDC v2020 with normalization level 1, over any
//! `Read`, and BLAKE3 chunk ids.
//!
//! Memory is bounded by the block size (a small multiple of the maximum chunk size), never by
//! the file: a 4 GiB file is read block by block, cut, hashed and handed to a sink chunk by
//! chunk. [`file_manifest_pipelined`] overlaps reading and cutting (one thread) with hashing
//! and the sink (the caller's thread), which is how a scan uses both cores.
//!
//! # Default sizes
//! `min 16 KiB / avg 64 KiB / max 256 KiB`, chosen by measurement (`cargo bench -p
//! chorus-chunking --bench chunking`, figures in docs/benchmarks.md). Because a literal is
//! compressed against the base chunks it replaces, the bytes an edit costs on the wire hardly
//! depend on the chunk size (100 scattered edits in 64 MiB: 11–15 KB for averages from 16 to
//! 256 KiB). What does depend on it: below 64 KiB the per-chunk costs grow (32 bytes of id per
//! chunk in every manifest, one store object and one hash finalization per chunk: 16 KiB
//! chunks mean 4x the manifest and a 20% slower scan); above it every edit stores a larger new
//! chunk, which history keeps for every version of a frequently edited file. 64 KiB balances
//! the two. Small text files are one chunk.

use std::io::Read;
use std::sync::mpsc;

use fastcdc::v2020::{Normalization, cut, select_masks};

use crate::Error;
use crate::ids::ChunkId;
use crate::manifest::{ChunkRef, FileManifest};

mod resync;

/// FastCDC chunk-size bounds. Construct with [`ChunkerParams::new`], which enforces what the
/// fastcdc crate needs (even sizes, `min <= avg <= max`, within its limits).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "RawParams", into = "RawParams")]
pub struct ChunkerParams {
    min: u32,
    avg: u32,
    max: u32,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct RawParams {
    min: u32,
    avg: u32,
    max: u32,
}

impl TryFrom<RawParams> for ChunkerParams {
    type Error = Error;
    fn try_from(r: RawParams) -> Result<Self, Error> {
        ChunkerParams::new(r.min, r.avg, r.max)
    }
}

impl From<ChunkerParams> for RawParams {
    fn from(p: ChunkerParams) -> Self {
        RawParams {
            min: p.min,
            avg: p.avg,
            max: p.max,
        }
    }
}

impl Default for ChunkerParams {
    fn default() -> Self {
        ChunkerParams {
            min: 16 << 10,
            avg: 64 << 10,
            max: 256 << 10,
        }
    }
}

impl ChunkerParams {
    /// Validates chunk-size bounds in bytes.
    pub fn new(min: u32, avg: u32, max: u32) -> Result<Self, Error> {
        use fastcdc::v2020 as f;
        let (mn, av, mx) = (min as usize, avg as usize, max as usize);
        let ok = [min, avg, max].iter().all(|v| v % 2 == 0)
            && (f::MINIMUM_MIN..=f::MINIMUM_MAX).contains(&mn)
            && (f::AVERAGE_MIN..=f::AVERAGE_MAX).contains(&av)
            && (f::MAXIMUM_MIN..=f::MAXIMUM_MAX).contains(&mx)
            && mn <= av
            && av <= mx;
        if !ok {
            return Err(Error::Invalid(format!(
                "chunk sizes min {min} / avg {avg} / max {max}: they must be even, ordered \
                 min <= avg <= max, with min in {}..={}, avg in {}..={}, max in {}..={}",
                f::MINIMUM_MIN,
                f::MINIMUM_MAX,
                f::AVERAGE_MIN,
                f::AVERAGE_MAX,
                f::MAXIMUM_MIN,
                f::MAXIMUM_MAX
            )));
        }
        Ok(ChunkerParams { min, avg, max })
    }

    pub fn min(&self) -> u32 {
        self.min
    }
    pub fn avg(&self) -> u32 {
        self.avg
    }
    pub fn max(&self) -> u32 {
        self.max
    }

    /// Bytes read per block: large enough to amortize the tail copy, a small multiple of max.
    fn block_len(&self) -> usize {
        (self.max as usize * 4).max(1 << 20)
    }
}

/// Finds cut points with fixed masks; shared by every entry point so they agree exactly.
#[derive(Clone, Copy)]
struct Cutter {
    params: ChunkerParams,
    mask_s: u64,
    mask_l: u64,
}

impl Cutter {
    fn new(params: ChunkerParams) -> Self {
        let (mask_s, mask_l) = select_masks(params.avg as usize, Normalization::Level1);
        Cutter {
            params,
            mask_s,
            mask_l,
        }
    }

    /// Length of the next chunk at the start of `data`. When `data` is not the end of the
    /// input and shorter than `max`, the answer would depend on bytes not yet read: callers
    /// only ask with at least `max` bytes or at end of input.
    fn next_len(&self, data: &[u8]) -> usize {
        let p = self.params;
        let (_, n) = cut(
            data,
            p.min as usize,
            p.avg as usize,
            p.max as usize,
            self.mask_s,
            self.mask_l,
            self.mask_s << 1,
            self.mask_l << 1,
        );
        n
    }

    /// Cuts `data` (whose first byte starts a chunk) into chunk lengths. Returns how many
    /// bytes were consumed; the rest is a tail that needs more input, unless `eof`.
    fn cut_block(&self, data: &[u8], eof: bool, out: &mut Vec<u32>) -> usize {
        let max = self.params.max as usize;
        let mut pos = 0;
        while pos < data.len() && (eof || data.len() - pos >= max) {
            let n = self.next_len(&data[pos..]);
            if n == 0 {
                break;
            }
            out.push(n as u32);
            pos += n;
        }
        pos
    }
}

impl Cutter {
    /// Smallest block worth a second thread: the split needs several chunks on each side.
    fn parallel_threshold(&self) -> usize {
        (self.params.max as usize * 8).max(4 << 20)
    }

    /// Like [`Cutter::cut_block`], on two threads, with exactly the same result. A second
    /// thread cuts from the middle as if a chunk started there; this thread cuts from the
    /// start until it lands on one of the second thread's boundaries. From a shared boundary
    /// on, both agree (a cut depends only on the bytes after the previous cut), so the rest of
    /// the second thread's cuts are taken as they are. Content-defined boundaries resynchronise
    /// within a chunk or two; if they never do, this thread simply cuts on to the end.
    fn cut_block_parallel(
        &self,
        data: &[u8],
        eof: bool,
        out: &mut Vec<u32>,
        threshold: usize,
    ) -> usize {
        let max = self.params.max as usize;
        if data.len() < threshold.max(4 * max) {
            return self.cut_block(data, eof, out);
        }
        let mid = data.len() / 2;
        let mut a: Vec<u32> = Vec::new();
        let mut pos = 0;
        let (b, b_used) = std::thread::scope(|s| {
            let second = s.spawn(|| {
                let mut b = Vec::new();
                let used = self.cut_block(&data[mid..], eof, &mut b);
                (b, used)
            });
            // At least `max` bytes follow every position before `mid`, so these cuts are final.
            while pos < mid {
                let n = self.next_len(&data[pos..]);
                a.push(n as u32);
                pos += n;
            }
            second
                .join()
                .unwrap_or_else(|p| std::panic::resume_unwind(p))
        });
        let b_end = mid + b_used;
        let (mut bi, mut bpos) = (0, mid);
        loop {
            while bi < b.len() && bpos < pos {
                bpos += b[bi] as usize;
                bi += 1;
            }
            if bpos == pos {
                out.extend_from_slice(&a);
                out.extend_from_slice(&b[bi..]);
                return b_end;
            }
            if pos >= data.len() || !(eof || data.len() - pos >= max) {
                break;
            }
            let n = self.next_len(&data[pos..]);
            a.push(n as u32);
            pos += n;
        }
        out.extend_from_slice(&a);
        pos
    }
}

/// Hashes the chunks `lens` that tile the start of `data`, on two threads for large inputs.
fn hash_chunks(data: &[u8], lens: &[u32]) -> Vec<ChunkRef> {
    let hash_run = |mut pos: usize, lens: &[u32]| -> Vec<ChunkRef> {
        lens.iter()
            .map(|&len| {
                let bytes = &data[pos..pos + len as usize];
                pos += len as usize;
                ChunkRef {
                    id: ChunkId::of(bytes),
                    len,
                }
            })
            .collect()
    };
    let total: usize = lens.iter().map(|&l| l as usize).sum();
    if total < 1 << 20 || lens.len() < 2 {
        return hash_run(0, lens);
    }
    // Split where half the bytes are done.
    let (mut split, mut acc) = (0, 0usize);
    while split < lens.len() && acc < total / 2 {
        acc += lens[split] as usize;
        split += 1;
    }
    std::thread::scope(|s| {
        let second = s.spawn(|| hash_run(acc, &lens[split..]));
        let mut first = hash_run(0, &lens[..split]);
        first.extend(
            second
                .join()
                .unwrap_or_else(|p| std::panic::resume_unwind(p)),
        );
        first
    })
}

/// Chunk boundaries of an in-memory buffer, as lengths.
pub fn chunk_lengths(data: &[u8], params: ChunkerParams) -> Vec<u32> {
    let mut out = Vec::new();
    Cutter::new(params).cut_block(data, true, &mut out);
    out
}

/// Chunks and hashes an in-memory buffer on this thread.
pub fn chunk_bytes(data: &[u8], params: ChunkerParams) -> FileManifest {
    let lens = chunk_lengths(data, params);
    let mut pos = 0;
    let chunks = lens
        .into_iter()
        .map(|len| {
            let bytes = &data[pos..pos + len as usize];
            pos += len as usize;
            ChunkRef {
                id: ChunkId::of(bytes),
                len,
            }
        })
        .collect();
    FileManifest { chunks }
}

/// Chunks and hashes an in-memory buffer using two cores (same result as [`chunk_bytes`]).
pub fn chunk_bytes_parallel(data: &[u8], params: ChunkerParams) -> FileManifest {
    let cutter = Cutter::new(params);
    let mut lens = Vec::new();
    cutter.cut_block_parallel(data, true, &mut lens, cutter.parallel_threshold());
    FileManifest {
        chunks: hash_chunks(data, &lens).into(),
    }
}

/// Reads `reader` to its end block by block and calls `f(offset, chunk)` for every chunk, in
/// order. Memory is one block. Returns the number of bytes read.
pub fn for_each_chunk<R: Read>(
    mut reader: R,
    params: ChunkerParams,
    mut f: impl FnMut(u64, &[u8]) -> Result<(), Error>,
) -> Result<u64, std::io::Error> {
    let cutter = Cutter::new(params);
    let mut buf = vec![0u8; params.block_len()];
    let mut lens = Vec::new();
    let mut filled = 0;
    let mut offset = 0u64;
    loop {
        let eof = fill(&mut reader, &mut buf, &mut filled)?;
        lens.clear();
        let used = cutter.cut_block(&buf[..filled], eof, &mut lens);
        let mut pos = 0;
        for &len in &lens {
            let chunk = &buf[pos..pos + len as usize];
            f(offset, chunk).map_err(std::io::Error::other)?;
            pos += len as usize;
            offset += u64::from(len);
        }
        buf.copy_within(used..filled, 0);
        filled -= used;
        if eof && filled == 0 {
            return Ok(offset);
        }
    }
}

/// Fills `buf[filled..]` from `reader`; true at end of input.
fn fill<R: Read>(reader: &mut R, buf: &mut [u8], filled: &mut usize) -> std::io::Result<bool> {
    while *filled < buf.len() {
        match reader.read(&mut buf[*filled..]) {
            Ok(0) => return Ok(true),
            Ok(n) => *filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(false)
}

/// Chunks and hashes a stream on the caller's thread; `sink` receives each chunk with its id
/// (to store it, for example).
pub fn file_manifest<R: Read>(
    reader: R,
    params: ChunkerParams,
    mut sink: impl FnMut(ChunkRef, &[u8]) -> Result<(), Error>,
) -> Result<FileManifest, Error> {
    let mut chunks = Vec::new();
    for_each_chunk(reader, params, |_, bytes| {
        let r = ChunkRef {
            id: ChunkId::of(bytes),
            len: bytes.len() as u32,
        };
        chunks.push(r);
        sink(r, bytes)
    })
    .map_err(unwrap_sink_error)?;
    Ok(FileManifest {
        chunks: chunks.into(),
    })
}

/// Bytes read per block of [`file_manifest_pipelined`] at least: enough for each half of a
/// block cut on its own thread to hold many chunks at the default sizes (the parallel cut's
/// threshold, [`Cutter::parallel_threshold`]).
const PIPELINE_BLOCK: usize = 4 << 20;

/// Like [`file_manifest`], but reading and cutting run on a second thread while this thread
/// hashes and feeds the sink; each full block is cut by two threads at the default sizes
/// ([`Cutter::cut_block_parallel`], the same cuts): one thread cutting could not keep up with
/// the hashing's reading (FastCDC runs at ~1.3 GB/s with the reading on the machine of
/// docs/benchmarks.md, BLAKE3 at several times that). Three blocks of [`PIPELINE_BLOCK`] circulate between the threads and are
/// reused, so memory stays at three blocks and no block is allocated or zeroed per message.
pub fn file_manifest_pipelined<R: Read + Send>(
    reader: R,
    params: ChunkerParams,
    sink: impl FnMut(ChunkRef, &[u8]) -> Result<(), Error>,
) -> Result<FileManifest, Error> {
    file_manifest_resynced(reader, params, None, sink)
}

/// A block cut: its bytes, the lengths of the chunks that tile its start, and the ids of those
/// whose id is already known (empty when none is).
type Cuts = (Vec<u8>, Vec<u32>, Vec<Option<ChunkId>>);

/// Like [`file_manifest_pipelined`] (the same manifest), given what the file held when it was
/// last read: where `before`'s chunks are found again they are hashed rather than cut
/// ([`resync`]), so a large file changed in a few places is scanned at BLAKE3's speed, not
/// FastCDC's. `before` is only a guess, checked chunk by chunk.
pub fn file_manifest_resynced<R: Read + Send>(
    mut reader: R,
    params: ChunkerParams,
    before: Option<&FileManifest>,
    mut sink: impl FnMut(ChunkRef, &[u8]) -> Result<(), Error>,
) -> Result<FileManifest, Error> {
    let cutter = Cutter::new(params);
    let block_len = params.block_len().max(PIPELINE_BLOCK);
    let threshold = cutter.parallel_threshold();
    let mut resync = before
        .filter(|m| !m.chunks.is_empty())
        .map(|m| resync::Resync::new(cutter, m));
    // Full blocks go to the hasher with the chunk lengths that tile their first `used` bytes;
    // emptied blocks come back to the reader.
    let (full_tx, full_rx) = mpsc::sync_channel::<std::io::Result<Cuts>>(1);
    let (free_tx, free_rx) = mpsc::channel::<Vec<u8>>();
    for _ in 0..2 {
        let _ = free_tx.send(vec![0u8; block_len]);
    }
    std::thread::scope(|s| {
        s.spawn(move || {
            let mut buf = vec![0u8; block_len];
            let mut filled = 0;
            let mut offset = 0u64;
            loop {
                let eof = match fill(&mut reader, &mut buf, &mut filled) {
                    Ok(eof) => eof,
                    Err(e) => {
                        let _ = full_tx.send(Err(e));
                        return;
                    }
                };
                let (mut lens, mut ids) = (Vec::new(), Vec::new());
                let used = match resync.as_mut() {
                    Some(r) => {
                        r.cut_block(&buf[..filled], offset, eof, &mut lens, &mut ids, threshold)
                    }
                    None => cutter.cut_block_parallel(&buf[..filled], eof, &mut lens, threshold),
                };
                offset += used as u64;
                // The hasher drops its receiver on a sink error: stop then.
                let Ok(mut next) = free_rx.recv() else { return };
                next[..filled - used].copy_from_slice(&buf[used..filled]);
                let done = eof && filled == used;
                filled -= used;
                if full_tx
                    .send(Ok((std::mem::replace(&mut buf, next), lens, ids)))
                    .is_err()
                    || done
                {
                    return;
                }
            }
        });
        hash_blocks(full_rx, free_tx, &mut sink)
    })
}

/// The hashing side of [`file_manifest_pipelined`]. It owns both channel ends, so when it
/// returns (at the end, or early on a sink error) the reader sees them closed and stops.
fn hash_blocks(
    full_rx: mpsc::Receiver<std::io::Result<Cuts>>,
    free_tx: mpsc::Sender<Vec<u8>>,
    sink: &mut impl FnMut(ChunkRef, &[u8]) -> Result<(), Error>,
) -> Result<FileManifest, Error> {
    let mut chunks = Vec::new();
    for msg in full_rx {
        let (block, lens, ids) = msg.map_err(Error::io("<input>"))?;
        let mut pos = 0;
        for (i, len) in lens.into_iter().enumerate() {
            let bytes = &block[pos..pos + len as usize];
            pos += len as usize;
            let known = ids.get(i).copied().flatten();
            let r = ChunkRef {
                id: known.unwrap_or_else(|| ChunkId::of(bytes)),
                len,
            };
            chunks.push(r);
            sink(r, bytes)?;
        }
        let _ = free_tx.send(block);
    }
    Ok(FileManifest {
        chunks: chunks.into(),
    })
}

fn unwrap_sink_error(e: std::io::Error) -> Error {
    match e.downcast::<Error>() {
        Ok(inner) => inner,
        Err(e) => Error::Io {
            path: "<input>".into(),
            source: e,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn small() -> ChunkerParams {
        ChunkerParams::new(256, 1024, 4096).unwrap()
    }

    use crate::testdata::pseudo_random;

    /// Reads a few bytes at a time, to exercise block refills at odd places.
    struct Dribble<'a>(&'a [u8], usize);
    impl Read for Dribble<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = self.1.min(buf.len()).min(self.0.len());
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    #[test]
    fn params_are_validated() {
        assert!(ChunkerParams::new(16 << 10, 64 << 10, 256 << 10).is_ok());
        assert!(ChunkerParams::new(1001, 2048, 8192).is_err(), "odd");
        assert!(ChunkerParams::new(4096, 2048, 8192).is_err(), "min > avg");
        assert!(
            ChunkerParams::new(2, 2048, 8192).is_err(),
            "min below fastcdc's bound"
        );
    }

    #[test]
    fn empty_input_has_no_chunks() {
        assert!(chunk_bytes(&[], small()).chunks.is_empty());
        let m = file_manifest(&[][..], small(), |_, _| Ok(())).unwrap();
        assert!(m.chunks.is_empty());
        let m = file_manifest_pipelined(&[][..], small(), |_, _| Ok(())).unwrap();
        assert!(m.chunks.is_empty());
    }

    #[test]
    fn sink_errors_come_back_unchanged() {
        // Many blocks, so the pipelined reader is still producing when the sink fails.
        let data = pseudo_random(20 << 20, 1);
        let err = file_manifest(&data[..], small(), |_, _| {
            Err(Error::Invalid("full".into()))
        });
        assert!(matches!(err, Err(Error::Invalid(m)) if m == "full"));
        let err = file_manifest_pipelined(&data[..], small(), |_, _| {
            Err(Error::Invalid("full".into()))
        });
        assert!(matches!(err, Err(Error::Invalid(m)) if m == "full"));
        let mut n = 0;
        let err = file_manifest_pipelined(&data[..], small(), |_, _| {
            n += 1;
            if n == 3000 {
                Err(Error::Invalid("late".into()))
            } else {
                Ok(())
            }
        });
        assert!(matches!(err, Err(Error::Invalid(m)) if m == "late"));
    }

    /// Large inputs at the default sizes take the two-thread path for real, in memory and
    /// streamed (every full block of the pipeline is cut on two threads), with any read sizes.
    #[test]
    fn parallel_matches_serial_at_default_sizes() {
        for seed in [1, 2, 3] {
            let data = pseudo_random(27 << 20, seed);
            let p = ChunkerParams::default();
            assert!(
                PIPELINE_BLOCK >= Cutter::new(p).parallel_threshold(),
                "a full block of the pipeline is cut on two threads"
            );
            let serial = chunk_bytes(&data, p);
            assert_eq!(chunk_bytes_parallel(&data, p), serial, "seed {seed}");
            let step = [(1 << 20) + 7, 4 << 20, 333_333][seed as usize - 1];
            let piped = file_manifest_pipelined(Dribble(&data, step), p, |_, _| Ok(())).unwrap();
            assert_eq!(piped, serial, "seed {seed}, streamed {step} bytes a read");
        }
        // Small chunks: many per half-block, the parallel cut's resynchronisation every block.
        let data = pseudo_random(13 << 20, 4);
        let piped =
            file_manifest_pipelined(Dribble(&data, 65_537), small(), |_, _| Ok(())).unwrap();
        assert_eq!(piped, chunk_bytes(&data, small()));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Streaming (with any read sizes), pipelined and in-memory chunking agree, and the
        /// chunks tile the input within the size bounds.
        #[test]
        fn streaming_matches_in_memory(len in 0usize..200_000, seed: u64, step in 1usize..5000) {
            let data = pseudo_random(len, seed);
            let p = small();
            let whole = chunk_bytes(&data, p);
            let streamed = file_manifest(Dribble(&data, step), p, |_, _| Ok(())).unwrap();
            let piped = file_manifest_pipelined(Dribble(&data, step), p, |_, _| Ok(())).unwrap();
            prop_assert_eq!(&whole, &streamed);
            prop_assert_eq!(&whole, &piped);
            prop_assert_eq!(whole.size(), len as u64);
            let n = whole.chunks.len();
            for (i, c) in whole.chunks.iter().enumerate() {
                prop_assert!(c.len <= p.max());
                prop_assert!(i + 1 == n || c.len >= p.min());
            }
        }

        /// Two-thread cutting and hashing give exactly the serial result, wherever the split
        /// falls and however the input arrives.
        #[test]
        fn parallel_matches_serial(len in 0usize..600_000, seed: u64, threshold in 1usize..300_000) {
            let data = pseudo_random(len, seed);
            let p = small();
            let serial = chunk_bytes(&data, p);
            let cutter = Cutter::new(p);
            let mut lens = Vec::new();
            let used = cutter.cut_block_parallel(&data, true, &mut lens, threshold);
            prop_assert_eq!(used, len);
            prop_assert_eq!(&hash_chunks(&data, &lens)[..], &serial.chunks[..]);
            // Not at end of input: the uncut tail must match the serial cutter's too.
            let (mut a, mut b) = (Vec::new(), Vec::new());
            prop_assert_eq!(cutter.cut_block_parallel(&data, false, &mut a, threshold), cutter.cut_block(&data, false, &mut b));
            prop_assert_eq!(a, b);
            prop_assert_eq!(&chunk_bytes_parallel(&data, p), &serial);
        }

        /// An edit moves only the boundaries near it: chunks well before and well after the
        /// edit are the same chunks.
        #[test]
        fn boundaries_away_from_an_edit_do_not_move(seed: u64, at in 0.3f64..0.7, del in 0usize..64, ins in proptest::collection::vec(any::<u8>(), 0..64)) {
            let data = pseudo_random(400_000, seed);
            let pos = (data.len() as f64 * at) as usize;
            let mut edited = data[..pos].to_vec();
            edited.extend_from_slice(&ins);
            edited.extend_from_slice(&data[pos + del..]);
            let p = small();
            let a = chunk_bytes(&data, p).chunks;
            let b = chunk_bytes(&edited, p).chunks;
            // Chunks ending at least one max-chunk before the edit are identical.
            let mut off = 0u64;
            for (x, y) in a.iter().zip(b.iter()) {
                if off + u64::from(x.len) + u64::from(p.max()) > pos as u64 { break; }
                prop_assert_eq!(x, y);
                off += u64::from(x.len);
            }
            // After the edit, the chunk streams resynchronise: most later chunks are shared.
            let later_a: std::collections::HashSet<_> = a.iter().map(|c| c.id).collect();
            let tail: Vec<_> = b.iter().rev().take(20).collect();
            let shared = tail.iter().filter(|c| later_a.contains(&c.id)).count();
            prop_assert!(shared >= 18, "only {shared} of the last 20 chunks survived the edit");
        }
    }
}
