//! zstd compression with a context kept per thread: a chunk of 64 KiB compressed with a fresh
//! context spent as long making and zeroing the context's tables as compressing (the chunk
//! store and the chunk answers compress one chunk at a time).

use std::cell::RefCell;

use zstd::bulk::Compressor;

thread_local! {
    /// This thread's compressor and the level it was made for.
    static COMPRESSOR: RefCell<Option<(i32, Compressor<'static>)>> = const { RefCell::new(None) };
}

/// `bytes` compressed as one zstd frame at `level` (what `zstd::bulk::compress` gives).
pub(crate) fn compress(bytes: &[u8], level: i32) -> std::io::Result<Vec<u8>> {
    COMPRESSOR.with(|cell| {
        let mut slot = cell.borrow_mut();
        let (_, c) = match &mut *slot {
            Some(kept) if kept.0 == level => kept,
            other => other.insert((level, Compressor::new(level)?)),
        };
        c.compress(bytes)
    })
}

#[cfg(test)]
mod tests {
    use super::compress;

    #[test]
    fn the_kept_context_gives_what_a_fresh_one_gives() {
        let text: Vec<u8> = (0..200_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect();
        for level in [3, 1, 3] {
            for part in [&text[..], &text[..1000], &[][..]] {
                let kept = compress(part, level).unwrap();
                assert_eq!(kept, zstd::bulk::compress(part, level).unwrap());
                assert_eq!(zstd::bulk::decompress(&kept, part.len()).unwrap(), part);
            }
        }
    }
}
