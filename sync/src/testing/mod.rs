//! Test equipment (feature `test-util`): a [`World`] of replicas on in-memory stores and
//! folders, a network the test steps and a scripted Raft log, so protocol tests, hostile-peer
//! tests and simulations drive the very code the daemon runs, sans IO. The product compiles
//! without it.
//!
//! - `world.rs`: the [`World`], its network and the [`Log`];
//! - `hand.rs`: what a test does by hand (one message at a time, a deaf node, one node's timer,
//!   a member the test speaks for);
//! - `text.rs`: text shares ([`letters`], a file's text, a one-file tree);
//! - `folder.rs`: the [`MemFolder`].

mod folder;
mod hand;
mod text;
mod world;

pub use folder::MemFolder;
pub use text::letters;
pub use world::{Envelope, Log, ScriptedLog, World, WorldNode};

/// Random-looking bytes (a xorshift stream), incompressible like most real payloads; the same
/// for the same seed.
pub fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// A folder share's config with small chunks (256 B to 4 KiB, 1 KiB on average), so a file of
/// a few hundred KiB has hundreds of them and transfers run in several windows.
pub fn small_chunks() -> crate::EngineConfig {
    crate::EngineConfig::new(
        chorus_merge::ModeRules::new(false),
        chorus_chunking::ChunkerParams::new(256, 1024, 4096).expect("valid chunk sizes"),
    )
}
