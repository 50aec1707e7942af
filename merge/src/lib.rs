//! chorus-merge: the three-way merge engine of the leader. Pure: no I/O, no network.
//!
//! - [`woot`]: the WOOT sequence engine (elements with ids, tombstones, a pending pool),
//!   generic over the token and fast enough for megabyte documents.
//! - [`trace`]: real editing traces, loaded and replayed through the engine (tests, benchmarks).

pub mod trace;
pub mod woot;
