//! chorus-sync: the sync engine of DESIGN.md §4–§7, sans IO (no tokio, no libp2p).
//!
//! [`Engine`] is a state machine in the manner of quinn-proto: the driver feeds it [`Event`]s
//! (a local version was made, a message arrived, a timer fired, the cluster changed, headers
//! were committed) and carries out the [`Action`]s it returns (send a message, propose a header
//! through Raft, materialize a version). The engine never touches the network, a clock or
//! Raft; it does touch its own storage, synchronously: version manifests, headers, redo entries
//! and its protocol state in a redb database ([`SyncStore`]), chunks in a chorus-chunking
//! [`ChunkStore`](chorus_chunking::ChunkStore). Every write is committed before the event
//! returns, so an action that acknowledges durability (`Stored`) is only ever emitted for data
//! already on disk.
//!
//! - [`config`]: timeouts, merge modes, how merged bytes are cut into chunks.
//! - [`event`]: what goes in and what comes out.
//! - [`header`]: accepted-version headers and the numbers of the two crates.
//! - [`store`]: the redb store and the engine's persisted state.
//! - [`engine`]: the engine; its follower half (local versions, pushes, adoption) lives there.
//! - [`leader`]: the leader half (merge, replication before commit, answers, catch-up).
//! - [`transfer`]: deltas out and in, NeedBase / NeedChunks repair.
//! - [`gc`]: history retention and chunk garbage collection.

pub mod config;
pub mod engine;
pub mod event;
pub mod folder;
pub mod gc;
pub mod header;
pub mod leader;
pub mod store;
pub mod transfer;

pub use config::{Cutter, EngineConfig};
pub use engine::{Engine, EngineError};
pub use event::{Action, ClusterInfo, Event};
pub use gc::{GcReport, Retention};
pub use header::Header;
pub use store::{StoreError, SyncStore};
