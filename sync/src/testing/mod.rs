//! Test equipment (feature `test-util`): a [`World`] of replicas on in-memory stores and
//! folders, a network the test steps and a scripted Raft log, so protocol tests, hostile-peer
//! tests and simulations drive the very code the daemon runs, sans IO. The product compiles
//! without it.

mod folder;
mod world;

pub use folder::MemFolder;
pub use world::{Envelope, Log, ScriptedLog, World, WorldNode};
