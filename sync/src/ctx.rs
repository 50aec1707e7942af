//! What every part of the engine works with while it handles one event: the node's identity
//! and settings, its stores, the clock, who leads and who is in, and the actions going out.
//! The [`Engine`](crate::Engine) lends it to the part it routes an event to; the parts never
//! reach into each other.

use chorus_chunking::{ChunkStore, TreeManifest, VersionId};
use chorus_proto::header::NodeId;
use chorus_proto::message::Message;

use crate::config::EngineConfig;
use crate::event::{Action, ClusterInfo};
use crate::step::EngineError;
use crate::store::SyncStore;

/// The borrowed context of one event.
pub(crate) struct Ctx<'a> {
    pub me: NodeId,
    /// The engine's clock: any monotonic milliseconds.
    pub now: u64,
    pub cfg: &'a EngineConfig,
    pub store: &'a SyncStore,
    pub chunks: &'a dyn ChunkStore,
    pub cluster: &'a ClusterInfo,
    pub out: &'a mut Vec<Action>,
}

impl Ctx<'_> {
    /// Queues a message to a peer.
    pub fn send(&mut self, to: NodeId, message: Message) {
        self.out.push(Action::Send { to, message });
    }

    /// The manifest of a version this node must hold.
    pub fn tree(&self, id: VersionId) -> Result<std::sync::Arc<TreeManifest>, EngineError> {
        self.store.manifest(&id)?.ok_or(EngineError::Missing(id))
    }

    /// True when the manifest of `id` is stored here.
    pub fn holds(&self, id: &VersionId) -> Result<bool, EngineError> {
        Ok(self.store.has_manifest(id)?)
    }
}
