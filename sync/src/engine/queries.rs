//! What the engine tells its driver and the history operations: its numbers and versions,
//! what it holds, and the few requests made outside an event (a fetch, a refetch).

use std::sync::Arc;

use chorus_chunking::{ChunkStore, TreeManifest, VersionId, VersionNumber};
use chorus_proto::header::NodeId;

use super::{Engine, EngineError};
use crate::ctx::Ctx;
use crate::event::Action;
use crate::header::Header;
use crate::leader::Leader;
use crate::store::RedoRecord;
use crate::transfers::Fetch;

impl Engine {
    pub fn id(&self) -> NodeId {
        self.me
    }

    /// The accepted version this node last adopted, with its number.
    pub fn adopted(&self) -> (VersionId, VersionNumber) {
        let a = self.follower.s.adopted;
        (a.version, a.number)
    }

    /// Everything the engine's halves hold in memory, for a diagnosis (a stuck simulation
    /// prints it): the cluster as it sees it, the follower's pushes, the leader's candidate.
    pub fn diagnosis(&self) -> String {
        format!(
            "node {}: head {} cluster {:?}\n  follower {:?}\n  leader {:?}\n  last_shared {:?}",
            self.me,
            self.history.s.head.number,
            self.cluster,
            self.follower,
            self.leader,
            self.last_shared
        )
    }

    /// The newest committed header applied here.
    pub fn head(&self) -> (VersionId, VersionNumber) {
        let h = self.history.s.head;
        (h.version, h.number)
    }

    /// The local work displaces these changes on purpose (a redo): they ride with its pushes,
    /// and the leader puts them on the redo stack with the version that takes the work in.
    pub fn note_displaced(&mut self, entries: Vec<chorus_merge::RedoEntry>) {
        let d = &mut self.follower.s.displaced;
        d.extend(entries);
        // A push carries at most a header's bound of them (the leader refuses more): beyond
        // it, the oldest go (what they displaced is in the history, as the version before).
        while d.len() > 1
            && crate::header::encode_redo(d).len() > chorus_proto::header::MAX_REDO_BYTES / 2
        {
            let e = d.remove(0);
            tracing::warn!(path = ?e.path, "more displaced by redos than a push carries: the oldest entry is left to the history");
        }
    }

    /// Asks the other members for a version this node lacks (a conflict's stored tree that a
    /// redo needs); it arrives as an offer.
    pub fn fetch(&mut self, version: VersionId, now_ms: u64) -> Vec<Action> {
        self.now = now_ms;
        self.follower.fetch(version);
        if let Err(e) = self.follower.fetch_due(&mut ctx!(self)) {
            tracing::warn!("cannot ask for {version}: {e}");
        }
        std::mem::take(&mut self.out)
    }

    /// Asks for the chunks of `version` this node lacks again (the leader's, or while this
    /// node leads every other member's): `(missing, messages to send)`.
    pub fn refetch(
        &mut self,
        version: VersionId,
        now_ms: u64,
    ) -> Result<(usize, Vec<Action>), EngineError> {
        self.now = now_ms;
        let sources: Vec<NodeId> = match self.cluster.leader {
            Some(l) if l != self.me => vec![l],
            _ => self
                .cluster
                .voters
                .iter()
                .chain(&self.cluster.learners)
                .filter(|&&n| n != self.me)
                .copied()
                .collect(),
        };
        let n = self.transfers.refetch(&mut ctx!(self), &sources, version)?;
        Ok((n, std::mem::take(&mut self.out)))
    }

    /// The local version with unanswered changes, if any.
    pub fn work(&self) -> Option<VersionId> {
        self.follower.s.work
    }

    /// What the working folder holds as far as the engine knows.
    pub fn folder(&self) -> VersionId {
        self.follower.s.folder
    }

    /// True when this node has no unanswered local change and has adopted the newest header
    /// it knows.
    pub fn is_settled(&self) -> bool {
        self.follower.is_settled(&self.history.s.head)
    }

    /// The version both this node and `peer` are believed to hold.
    pub fn last_shared(&self, peer: NodeId) -> Option<VersionId> {
        self.last_shared.get(&peer).copied()
    }

    /// The manifest of a stored version.
    pub fn manifest(
        &self,
        id: &VersionId,
    ) -> Result<Option<std::sync::Arc<TreeManifest>>, EngineError> {
        Ok(self.store.manifest(id)?)
    }

    /// Committed headers stored here, oldest first.
    pub fn headers(&self) -> Result<Vec<Header>, EngineError> {
        Ok(self.store.headers()?)
    }

    /// The redo stack as stored here, oldest first.
    pub fn redo(&self) -> Result<Vec<RedoRecord>, EngineError> {
        Ok(self.store.redo()?)
    }

    /// Keeps a small record of the replica's under `key` in the store, durably (`None`
    /// removes it).
    pub fn save_record(
        &self,
        key: &str,
        value: Option<&impl serde::Serialize>,
    ) -> Result<(), EngineError> {
        Ok(self.store.save_record(key, value)?)
    }

    /// The record kept under `key`, if any.
    pub fn load_record<T: serde::de::DeserializeOwned>(
        &self,
        key: &str,
    ) -> Result<Option<T>, EngineError> {
        Ok(self.store.load_record(key)?)
    }

    /// Forgets a stored version, as if it had never arrived (tests of repair).
    #[cfg(feature = "test-util")]
    pub fn forget_for_tests(&mut self, id: &VersionId) -> Result<(), EngineError> {
        Ok(self
            .store
            .remove_manifests(&std::collections::BTreeSet::from([*id]))?)
    }

    /// The chunk store.
    pub fn chunks(&self) -> &Arc<dyn ChunkStore> {
        &self.chunks
    }

    /// True while this node leads with a confirmed leader half.
    pub fn is_leading(&self) -> bool {
        self.leader.as_ref().is_some_and(Leader::is_confirmed)
    }

    /// The incoming deltas still waiting for chunks, and how far their chunks have come.
    pub fn fetches(&self) -> Vec<Fetch> {
        self.transfers.fetches()
    }
}
