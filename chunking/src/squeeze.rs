//! zstd compression and decompression with a context kept per thread: a chunk of 64 KiB
//! compressed with a fresh context spent as long making and zeroing the context's tables as
//! compressing (the chunk store and the chunk answers compress one chunk at a time), and
//! making a decompression context for each chunk read was 15 % of a sender's time in a
//! 100k-file join (`ZSTD_createDCtx`). Frames primed with a prefix (a fetched run and the
//! chunks it replaces) use the same contexts, which forget the prefix after each frame.

use std::cell::RefCell;
use std::thread::LocalKey;

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
    let mut d = take_kept::<DCtx<'static>>();
    let out = f(&mut d);
    keep(d);
    out
}

/// Runs `f` with this thread's compression context, reset (session and parameters).
pub(crate) fn with_cctx<R>(f: impl FnOnce(&mut CCtx<'static>) -> R) -> R {
    let mut c = take_kept::<CCtx<'static>>();
    let out = f(&mut c);
    keep(c);
    out
}

/// Runs `f` with this thread's decompression context, reset, and `prefix`, which `f` may
/// reference (`ref_prefix`) for the one frame it reads: a fetched group of a 100k-file
/// update names a dictionary, and a context made for each group was a fifth of the
/// receiver's time (`ZSTD_createDCtx`). The context kept after `f` holds no reference to
/// `prefix` (see [`with_kept_prefixed`]).
pub(crate) fn with_dctx_prefixed<R>(
    prefix: &[u8],
    f: impl for<'p> FnOnce(&mut DCtx<'p>, &'p [u8]) -> R,
) -> R {
    with_kept_prefixed::<DCtx<'static>, R>(prefix, |d, p| f(d, p))
}

/// [`with_dctx_prefixed`] for compression: a fetched group of a 100k-file update is
/// compressed against its dictionary, and a context made for each was a fifth of the
/// sender's time (`ZSTD_createCCtx`).
pub(crate) fn with_cctx_prefixed<R>(
    prefix: &[u8],
    f: impl for<'p> FnOnce(&mut CCtx<'p>, &'p [u8]) -> R,
) -> R {
    with_kept_prefixed::<CCtx<'static>, R>(prefix, |c, p| f(c, p))
}

/// A zstd context kept per thread.
trait Kept: Sized + 'static {
    fn slot() -> &'static LocalKey<RefCell<Option<Self>>>;
    fn create() -> Self;
    /// Back to a fresh context's parameters, no dictionary or prefix referenced (resetting
    /// the parameters clears them: `ZSTD_CCtx_reset`, `ZSTD_DCtx_reset`); false if it could
    /// not be.
    fn clear(&mut self) -> bool;
    fn size(&self) -> usize;
}

/// [`Kept`] for a zstd context type kept in `$slot` (both kinds have the same methods).
macro_rules! kept {
    ($ctx:ident, $slot:ident) => {
        impl Kept for $ctx<'static> {
            fn slot() -> &'static LocalKey<RefCell<Option<Self>>> {
                &$slot
            }
            fn create() -> Self {
                $ctx::create()
            }
            fn clear(&mut self) -> bool {
                self.reset(ResetDirective::SessionAndParameters).is_ok()
            }
            fn size(&self) -> usize {
                self.sizeof()
            }
        }
    };
}
kept!(DCtx, DCTX);
kept!(CCtx, CCTX);

/// Runs `f` with this thread's context of kind `C` (a new one if there is none, or if it is
/// in use further up this thread's stack), cleared, and `prefix`. Its two callers give it
/// only closures generic over the prefix's lifetime, which cannot keep the reference past
/// their call.
fn with_kept_prefixed<C: Kept, R>(prefix: &[u8], f: impl FnOnce(&mut C, &'static [u8]) -> R) -> R {
    let mut c = take_kept::<C>();
    // SAFETY: `f` cannot keep the reference (its callers' closures are generic over its
    // lifetime), so after `f` the context is its only holder, and `keep` clears it from the
    // context before the context is kept. A context that cannot be cleared, or that `f`
    // unwinds through, is freed with the reference unread.
    let prefix: &'static [u8] = unsafe { &*std::ptr::from_ref(prefix) };
    let out = f(&mut c, prefix);
    keep(c);
    out
}

/// This thread's context of kind `C`, cleared: the one kept, or a new one if there is none
/// (or it is in use further up this thread's stack).
fn take_kept<C: Kept>() -> C {
    let mut c = C::slot()
        .with(|cell| cell.try_borrow_mut().ok().and_then(|mut slot| slot.take()))
        .unwrap_or_else(C::create);
    c.clear();
    c
}

/// Keeps `c` for this thread's next use once cleared (nothing referenced, no parameters
/// left); one that cannot be cleared, or has grown past [`KEPT_CONTEXT_BYTES`], is freed.
fn keep<C: Kept>(mut c: C) {
    if c.clear() && c.size() <= KEPT_CONTEXT_BYTES {
        C::slot().with(|cell| {
            if let Ok(mut slot) = cell.try_borrow_mut() {
                *slot = Some(c);
            }
        });
    }
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
    use super::{CCTX, DCTX, compress, decompress, with_cctx_prefixed, with_dctx_prefixed};
    use zstd::zstd_safe::CCtx;

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

    /// A context is kept with no prefix referenced, whatever `f` did with it: compressed
    /// from as it was kept, without a reset, the bytes are what a fresh context makes; and a
    /// frame that needs the prefix does not read with the kept decompression context.
    #[test]
    fn a_kept_context_holds_no_prefix_after_its_use() {
        let prefix: Vec<u8> = (0..20_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        let mut raw = prefix[..15_000].to_vec();
        raw[100..104].copy_from_slice(b"edit");
        with_cctx_prefixed(&prefix, |c, p| c.ref_prefix(p).unwrap());
        let mut kept = CCTX.with(|cell| cell.borrow_mut().take()).expect("kept");
        let mut from_kept = Vec::with_capacity(zstd::zstd_safe::compress_bound(raw.len()));
        kept.compress2(&mut from_kept, &raw).unwrap();
        let mut fresh = Vec::with_capacity(zstd::zstd_safe::compress_bound(raw.len()));
        CCtx::create().compress2(&mut fresh, &raw).unwrap();
        assert_eq!(from_kept, fresh);

        let mut primed = CCtx::create();
        primed.ref_prefix(&prefix).unwrap();
        let mut needs = Vec::with_capacity(zstd::zstd_safe::compress_bound(raw.len()));
        primed.compress2(&mut needs, &raw).unwrap();
        assert!(needs.len() < raw.len() / 4, "{} bytes", needs.len());
        with_dctx_prefixed(&prefix, |d, p| d.ref_prefix(p).unwrap());
        let mut kept = DCTX.with(|cell| cell.borrow_mut().take()).expect("kept");
        let mut out = Vec::with_capacity(raw.len());
        assert!(kept.decompress(&mut out, &needs).is_err());
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
