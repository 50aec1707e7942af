//! chorus-sync: the sync engine of DESIGN.md §4–§7, sans IO (no tokio, no libp2p).
//!
//! [`Engine`] is a state machine in the manner of quinn-proto: the driver feeds it [`Event`]s
//! (a local version was made, a message arrived, a timer fired, the cluster changed, headers
//! were committed) and carries out the [`Action`]s it returns (send a message, propose a header
//! through Raft, materialize a version); [`Engine::poll_timeout`] says when it next needs a
//! tick. The engine never touches the network, a clock or Raft; it does touch its own storage,
//! synchronously: version manifests, headers, redo entries and its protocol state in a redb
//! database ([`SyncStore`]), chunks in a chorus-chunking
//! [`ChunkStore`](chorus_chunking::ChunkStore). Every write is committed before the event
//! returns, so an action that acknowledges durability (`Stored`) is only ever emitted for data
//! already on disk.
//!
//! - [`engine`]: the dispatcher, routing each event to the part that owns its state:
//! - [`follower`]: local versions, pushes, answers, adoption (every node);
//! - [`leader`]: merges into the tip, replication before commit, proposals, answers;
//! - [`transfers`]: deltas out and in, NeedBase / NeedChunks repair, fetch windows;
//! - [`history`]: committed headers applied, what they included, redo records;
//! - [`gc`]: history retention and chunk garbage collection;
//! - [`store`]: the redb store and the engine's persisted state;
//! - [`config`], [`event`], [`header`]: settings, what goes in and out, headers as kept here;
//! - [`folder`]: what the driver needs of a working folder;
//! - [`replica`]: the engine and a folder together, with the rules that keep the user's edits
//!   safe between them (scan before writing, pause, the mass-delete [`guard`]), and history
//!   operations (undo, redo, restore);
//! - [`feed`]: the bridge from Raft to the engine.

pub mod config;
mod ctx;
pub mod engine;
pub mod event;
pub mod feed;
pub mod folder;
pub mod follower;
pub mod gc;
pub mod guard;
pub mod header;
pub mod history;
pub mod leader;
pub mod replica;
mod step;
pub mod store;
#[cfg(feature = "test-util")]
pub mod testing;
pub mod transfers;

pub use config::{Cutter, EngineConfig};
pub use engine::Engine;
pub use event::{Action, ClusterInfo, Event};
pub use feed::{RaftFeed, RaftView};
pub use gc::{GcReport, Retention};
pub use guard::MassDeleteGuard;
pub use header::Header;
pub use replica::{Notice, Refusal, Replica};
pub use step::EngineError;
pub use store::{StoreError, SyncStore};
pub use transfers::Fetch;
