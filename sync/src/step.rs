//! What the parts of the engine hand back to it: [`Step`], work for another part, routed by
//! the engine at once, and [`EngineError`], why the engine stopped. A leaf: the parts
//! (follower, leader, transfers, history, gc) and the context import these, never the engine.

use chorus_chunking::{VersionId, VersionNumber};
use chorus_proto::header::NodeId;

use crate::store::StoreError;

/// Why the engine stopped. These are local failures (storage); a peer's bad input never ends
/// here, it is answered with `Rejected` and logged. The driver should stop the engine and
/// report the error.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("chunk store: {0}; check the state dir's disk (space, permissions)")]
    Chunks(#[from] chorus_chunking::Error),
    #[error(
        "version {0} is needed but its manifest is not stored here; the state dir lost data, join the share again"
    )]
    Missing(VersionId),
    #[error("merge failed")]
    Merge(#[source] chorus_merge::tree::TreeMergeError),
}

/// Work one part of the engine hands to another, routed by [`crate::Engine`].
#[derive(Debug)]
pub(crate) enum Step {
    /// This node's own push, for its own leader half.
    PushToSelf {
        base: VersionId,
        target: VersionId,
        number: VersionNumber,
        before: Vec<VersionId>,
        displaced: Vec<chorus_merge::RedoEntry>,
    },
    /// The head includes `pushed`: tell its pusher.
    Answer { to: NodeId, pushed: VersionId },
    /// Ask for a version this node lacks.
    Want(VersionId),
}
