//! Bounded zstd decompression for peer-supplied bytes (delta literals and `Chunks` messages).
//!
//! Nothing is allocated from a size the peer merely declares: output grows as zstd actually
//! produces it, and stops with an error one byte past a cap fixed before decompression starts.
//! The cap itself is bounded by the bytes received, through [`MAX_RATIO`], the most output
//! the zstd format can encode per input byte, and so is the decoder's window ([`window_log`]).

/// Largest dictionary of one fetched run, in bytes: the encoder's largest for a literal.
pub const MAX_RUN_DICTIONARY: usize = 4 << 20;
/// Most chunks one fetched run's dictionary may name.
pub const MAX_DICTIONARY_CHUNKS: usize = 4096;

use zstd::zstd_safe::{DCtx, DParameter, InBuffer, OutBuffer};

/// Largest zstd window a literal may use (and a receiver accepts): 128 MiB.
pub(crate) const MAX_WINDOW_LOG: u32 = 27;

/// The most bytes one byte of a valid zstd frame can decompress to. A block yields at most
/// 128 KiB and costs at least 4 bytes (a 3-byte header and the one byte an RLE block repeats;
/// a compressed block needs more), so no frame, with or without a prefix, exceeds 32768x.
///
/// A smaller ratio would refuse honest data: all-zero input gets within 0.2% of this bound
/// (measured with zstd 1.5.7 at levels 3 and 19, with `zstd::bulk` and with the delta
/// encoder's parameters: 1 MiB of zeros -> 46-50 bytes, ratio ~21,000x; 16 MiB -> 526-531
/// bytes, ~31,700x; 64 MiB -> 2,062-2,067 bytes, ~32,500x (`zeros_stay_within_the_ratio`
/// checks these); 256 MiB -> 8,206-8,211 bytes, ~32,700x).
/// So this bound never refuses a valid frame; what it buys is that a declared size beyond it is
/// refused before anything is allocated, and that the cap and the window follow the bytes
/// received instead of the peer's word (10 bytes can no longer claim 256 MiB).
pub(crate) const MAX_RATIO: usize = 32 << 10;

/// Initial output buffer, and the smallest growth step.
const GROW_MIN: usize = 16 << 10;

/// The most `compressed_len` bytes of zstd can decompress to.
pub(crate) fn ratio_cap(compressed_len: usize) -> usize {
    compressed_len.saturating_mul(MAX_RATIO)
}

/// The window log for `span` bytes (output plus prefix): the smallest power of two holding
/// them, within `10..=MAX_WINDOW_LOG`. It is exactly the formula of the delta encoder
/// (`zstd_compress`), so honest literals always fit; a `Chunks` chunk compressed with a known
/// size (`zstd::bulk::compress`) has a window no larger than its size, so it fits too.
pub(crate) fn window_log(span: usize) -> u32 {
    let span = span.max(1 << 10);
    (usize::BITS - (span - 1).leading_zeros()).clamp(10, MAX_WINDOW_LOG)
}

/// Why a bounded decompression failed.
#[derive(Debug)]
pub(crate) enum Inflate {
    /// The frame decompresses to more than the cap (at least `cap + 1` bytes).
    TooLarge { cap: usize },
    /// Not one valid, complete zstd frame (or its window exceeds the limit).
    Bad(String),
}

impl std::fmt::Display for Inflate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Inflate::TooLarge { cap } => write!(f, "it decompresses to more than {cap} bytes"),
            Inflate::Bad(s) => f.write_str(s),
        }
    }
}

/// Decompresses exactly one zstd frame `data`, primed with `prefix`, into at most `cap`
/// bytes, with a window of at most `1 << window_log_max` bytes. The output buffer starts
/// small and at most doubles, never past `cap + 1`, so what is allocated stays within twice
/// what was produced (plus 16 KiB) and within `cap + 1`.
pub(crate) fn decompress_bounded(
    data: &[u8],
    prefix: &[u8],
    cap: usize,
    window_log_max: u32,
) -> Result<Vec<u8>, Inflate> {
    if prefix.is_empty() {
        return crate::squeeze::with_dctx(|d| inflate(d, data, cap, window_log_max));
    }
    crate::squeeze::with_dctx_prefixed(prefix, |d, prefix| {
        d.ref_prefix(prefix).map_err(bad)?;
        inflate(d, data, cap, window_log_max)
    })
}

fn bad(code: usize) -> Inflate {
    Inflate::Bad(zstd::zstd_safe::get_error_name(code).to_string())
}

/// [`decompress_bounded`] with a context made ready (a prefix referenced, if any).
fn inflate(
    d: &mut DCtx<'_>,
    data: &[u8],
    cap: usize,
    window_log_max: u32,
) -> Result<Vec<u8>, Inflate> {
    let err = bad;
    d.set_parameter(DParameter::WindowLogMax(window_log_max))
        .map_err(err)?;
    let limit = cap.saturating_add(1);
    let mut out: Vec<u8> = Vec::new();
    let mut input = InBuffer::around(data);
    loop {
        if out.len() == out.capacity() {
            // Full: grow by what is there already (doubling), at least GROW_MIN, never past
            // limit. Full at limit means more than `cap` bytes came out.
            let room = limit.saturating_sub(out.len()).min(out.len().max(GROW_MIN));
            if room == 0 {
                return Err(Inflate::TooLarge { cap });
            }
            out.reserve_exact(room);
        }
        let (in_before, out_before) = (input.pos(), out.len());
        let hint = {
            let mut o = OutBuffer::around_pos(&mut out, out_before);
            d.decompress_stream(&mut o, &mut input).map_err(err)?
        };
        if out.len() > cap {
            return Err(Inflate::TooLarge { cap });
        }
        if hint == 0 {
            break; // the frame is complete
        }
        let room_left = out.len() < out.capacity();
        if room_left && input.pos() == data.len() {
            return Err(Inflate::Bad("the frame is truncated".into()));
        }
        if room_left && input.pos() == in_before && out.len() == out_before {
            return Err(Inflate::Bad("the frame makes no progress".into()));
        }
    }
    if input.pos() != data.len() {
        return Err(Inflate::Bad(format!(
            "{} bytes follow the frame",
            data.len() - input.pos()
        )));
    }
    out.shrink_to_fit();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delta::encode::zstd_compress;

    #[test]
    fn zeros_stay_within_the_ratio() {
        // The most compressible input there is, at the sizes chunks and literals have. The
        // figures in MAX_RATIO's comment come from here (run with --nocapture).
        for n in [1usize << 20, 16 << 20, 64 << 20] {
            let zeros = vec![0u8; n];
            for level in [3, 19] {
                let bulk = zstd::bulk::compress(&zeros, level).unwrap();
                let delta = zstd_compress(&zeros, &[], level).unwrap();
                for (how, c) in [("bulk", &bulk), ("delta", &delta)] {
                    println!(
                        "{n} zeros, level {level}, {how}: {} bytes, ratio {}",
                        c.len(),
                        n / c.len()
                    );
                    assert!(n <= ratio_cap(c.len()), "{how} {level}: ratio exceeded");
                    let back = decompress_bounded(c, &[], n, window_log(n)).unwrap();
                    assert!(back.len() == n && back.iter().all(|&b| b == 0));
                }
            }
        }
    }

    #[test]
    fn output_beyond_the_cap_is_refused_and_the_buffer_stays_bounded() {
        let zeros = vec![0u8; 8 << 20];
        let c = zstd::bulk::compress(&zeros, 3).unwrap();
        assert!(matches!(
            decompress_bounded(&c, &[], 1 << 20, 24),
            Err(Inflate::TooLarge { cap }) if cap == 1 << 20
        ));
        // Exactly at the cap is fine.
        assert_eq!(
            decompress_bounded(&c, &[], 8 << 20, 23).unwrap().len(),
            8 << 20
        );
        // A window larger than allowed is refused.
        assert!(matches!(
            decompress_bounded(&c, &[], 8 << 20, 20),
            Err(Inflate::Bad(_))
        ));
    }

    #[test]
    fn truncated_trailing_and_garbage_frames_are_refused() {
        let text = b"hello hello hello hello hello hello".repeat(100);
        let c = zstd::bulk::compress(&text, 3).unwrap();
        assert_eq!(
            decompress_bounded(&c, &[], 1 << 20, 20).unwrap(),
            text.as_slice()
        );
        let bad = |d: &[u8]| {
            matches!(
                decompress_bounded(d, &[], 1 << 20, 20),
                Err(Inflate::Bad(_))
            )
        };
        assert!(bad(&c[..c.len() - 1]), "truncated");
        assert!(bad(&[c.as_slice(), &[0]].concat()), "trailing byte");
        assert!(bad(&[c.as_slice(), c.as_slice()].concat()), "two frames");
        assert!(bad(b"not zstd at all"), "garbage");
        assert!(bad(&[]), "empty");
    }

    #[test]
    fn a_prefix_primes_the_frame() {
        let prefix = crate::testdata::pseudo_random(100_000, 1);
        let mut raw = prefix.clone();
        raw[50_000] ^= 1;
        let c = zstd_compress(&raw, &prefix, 3).unwrap();
        assert!(c.len() < 1000, "{} bytes", c.len());
        let span = raw.len() + prefix.len();
        let back = decompress_bounded(&c, &prefix, raw.len(), window_log(span)).unwrap();
        assert_eq!(back, raw);
        assert!(decompress_bounded(&c, &[], raw.len(), window_log(span)).is_err());
    }
}
