//! Deterministic test data: incompressible bytes from a seed, for tests and benchmarks across
//! the workspace (a xorshift generator: fast, and the same bytes on every machine).

/// `len` pseudo-random bytes determined by `seed`.
pub fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = vec![0u8; len];
    for chunk in out.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn same_seed_same_bytes_other_seed_other_bytes() {
        assert_eq!(super::pseudo_random(1000, 1), super::pseudo_random(1000, 1));
        assert_ne!(super::pseudo_random(1000, 1), super::pseudo_random(1000, 2));
        assert_eq!(super::pseudo_random(13, 5).len(), 13);
    }
}
