//! Shared by the integration tests and the benchmark: where the editing traces live and how
//! to read one (the library itself does no I/O), and a seeded generator.

#![allow(dead_code)]

use std::path::PathBuf;

use chorus_merge::trace::Trace;

/// The traces folder: `$CHORUS_TRACES`, else `merge/data/traces` in this repository (the
/// traces are vendored there with their attribution, so a fresh clone has all it needs).
pub fn traces_dir() -> PathBuf {
    match std::env::var_os("CHORUS_TRACES") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/data/traces")),
    }
}

/// Reads `<name>.json.gz` from the traces folder, panicking with where it looked.
pub fn load_trace(name: &str) -> Trace {
    let path = traces_dir().join(format!("{name}.json.gz"));
    let bytes = std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "cannot read the editing trace {} ({e}); the traces are looked for in \
             $CHORUS_TRACES or else in merge/data/traces",
            path.display()
        )
    });
    Trace::from_gzip(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// splitmix64: a small deterministic generator, so every run uses the same inputs.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    /// True `percent` times in a hundred.
    pub fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }
}
