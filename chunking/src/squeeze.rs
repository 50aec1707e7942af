//! zstd compression and decompression with a context kept per thread: a chunk of 64 KiB
//! compressed with a fresh context spent as long making and zeroing the context's tables as
//! compressing (the chunk store and the chunk answers compress one chunk at a time), and
//! making a decompression context for each chunk read was 15 % of a sender's time in a
//! 100k-file join (`ZSTD_createDCtx`). Frames primed with a prefix (a fetched run and the
//! chunks it replaces) use the same contexts, which forget the prefix after each frame.

use std::cell::RefCell;

use zstd::bulk::{Compressor, Decompressor};
use zstd::zstd_safe::{CCtx, DCtx, ResetDirective};

thread_local! {
    /// This thread's streaming contexts, for delta literals without a prefix: a 100k-file
    /// delta carries thousands of small literals, and a context made for each was a tenth of
    /// a joiner's time (`ZSTD_createDCtx`).
    static DCTX: RefCell<Option<DCtx<'static>>> = const { RefCell::new(None) };
    static CCTX: RefCell<Option<CCtx<'static>>> = const { RefCell::new(None) };
    /// This thread's compressor and the level it was made for.
    static COMPRESSOR: RefCell<Option<(i32, Compressor<'static>)>> = const { RefCell::new(None) };
    /// This thread's decompressor.
    static DECOMPRESSOR: RefCell<Option<Decompressor<'static>>> = const { RefCell::new(None) };
}

/// A context grown past this (a literal of megabytes sizes its window to match: ~4.6 MB held
/// by a receiver after a 100k-file join) is freed after its use instead of kept; the small
/// literals that made keeping worth it leave a context well under it.
const KEPT_CONTEXT_BYTES: usize = 1 << 20;

/// Runs `f` with this thread's decompression context, reset (session and parameters).
pub(crate) fn with_dctx<R>(f: impl FnOnce(&mut DCtx<'static>) -> R) -> R {
    DCTX.with(|cell| {
        let mut slot = cell.borrow_mut();
        let d = slot.get_or_insert_with(DCtx::create);
        // Resetting a valid context cannot fail.
        let _ = d.reset(ResetDirective::SessionAndParameters);
        let out = f(d);
        if d.sizeof() > KEPT_CONTEXT_BYTES {
            *slot = None;
        }
        out
    })
}

/// Runs `f` with this thread's compression context, reset (session and parameters).
pub(crate) fn with_cctx<R>(f: impl FnOnce(&mut CCtx<'static>) -> R) -> R {
    CCTX.with(|cell| {
        let mut slot = cell.borrow_mut();
        let c = slot.get_or_insert_with(CCtx::create);
        let _ = c.reset(ResetDirective::SessionAndParameters);
        let out = f(c);
        if c.sizeof() > KEPT_CONTEXT_BYTES {
            *slot = None;
        }
        out
    })
}

/// Runs `f` with this thread's decompression context, reset, and `prefix`, which `f` may
/// reference (`ref_prefix`) for the one frame it reads: a fetched group of a 100k-file
/// update names a dictionary, and a context made for each group was a fifth of the
/// receiver's time (`ZSTD_createDCtx`). The context kept after `f` holds no reference to
/// `prefix`: the reset after `f` drops it, and a context that cannot be reset, or that `f`
/// unwinds through, is freed instead of kept.
pub(crate) fn with_dctx_prefixed<R>(
    prefix: &[u8],
    f: impl for<'p> FnOnce(&mut DCtx<'p>, &'p [u8]) -> R,
) -> R {
    let mut d = DCTX
        .with(|cell| cell.borrow_mut().take())
        .unwrap_or_else(DCtx::create);
    let _ = d.reset(ResetDirective::SessionAndParameters);
    // SAFETY: `f` is generic over the prefix's lifetime, so it cannot keep the reference past
    // its call; the context is the only holder of it after that, and the reset below removes
    // it (resetting the parameters clears any dictionary or prefix, `ZSTD_DCtx_reset`). When
    // that reset fails, or `f` unwinds, the context is freed with the reference unread.
    let prefix: &'static [u8] = unsafe { &*std::ptr::from_ref(prefix) };
    let out = f(&mut d, prefix);
    if d.reset(ResetDirective::SessionAndParameters).is_ok() && d.sizeof() <= KEPT_CONTEXT_BYTES {
        DCTX.with(|cell| *cell.borrow_mut() = Some(d));
    }
    out
}

/// [`with_dctx_prefixed`] for compression: a fetched group of a 100k-file update is
/// compressed against its dictionary, and a context made for each was a fifth of the
/// sender's time (`ZSTD_createCCtx`).
pub(crate) fn with_cctx_prefixed<R>(
    prefix: &[u8],
    f: impl for<'p> FnOnce(&mut CCtx<'p>, &'p [u8]) -> R,
) -> R {
    let mut c = CCTX
        .with(|cell| cell.borrow_mut().take())
        .unwrap_or_else(CCtx::create);
    let _ = c.reset(ResetDirective::SessionAndParameters);
    // SAFETY: as in `with_dctx_prefixed`: `f` cannot keep the reference, and the reset below
    // (`ZSTD_CCtx_reset` of the parameters) removes it from the context, which is freed
    // instead when that fails or `f` unwinds.
    let prefix: &'static [u8] = unsafe { &*std::ptr::from_ref(prefix) };
    let out = f(&mut c, prefix);
    if c.reset(ResetDirective::SessionAndParameters).is_ok() && c.sizeof() <= KEPT_CONTEXT_BYTES {
        CCTX.with(|cell| *cell.borrow_mut() = Some(c));
    }
    out
}

/// One zstd frame `bytes` decompressed into at most `capacity` bytes (what
/// `zstd::bulk::decompress` gives).
pub(crate) fn decompress(bytes: &[u8], capacity: usize) -> std::io::Result<Vec<u8>> {
    DECOMPRESSOR.with(|cell| {
        let mut slot = cell.borrow_mut();
        let d = match &mut *slot {
            Some(kept) => kept,
            other => other.insert(Decompressor::new()?),
        };
        d.decompress(bytes, capacity)
    })
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
    use super::{compress, decompress};

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
                assert_eq!(decompress(&kept, part.len()).unwrap(), part);
            }
        }
    }

    #[test]
    fn the_kept_decompressor_refuses_what_a_fresh_one_refuses_and_goes_on() {
        let text: Vec<u8> = (0..50_000u32).map(|i| (i % 97) as u8).collect();
        let frame = compress(&text, 3).unwrap();
        // Too small a capacity, then a corrupt frame: refused, and the next frame is fine.
        assert!(decompress(&frame, text.len() - 1).is_err());
        let mut bad = frame.clone();
        let n = bad.len() / 2;
        bad[n] ^= 0xff;
        assert!(decompress(&bad, text.len()).map_or(true, |out| out != text));
        assert!(decompress(&frame[..frame.len() / 2], text.len()).is_err());
        assert_eq!(decompress(&frame, text.len()).unwrap(), text);
    }
}
