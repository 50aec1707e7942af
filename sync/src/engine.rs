//! [`Engine`]: the event loop's state and its follower half.
//!
//! Every node runs the follower half, the leader too (it pushes to itself, in process):
//! a scan of the working folder becomes a local version; the newest local version is pushed
//! to the leader as a delta against `base`, a version the leader holds and the local work
//! descends from; an answer (Accepted, Merged, or a committed header that names the pushed
//! version) moves `base` forward, and once no local change is left unanswered the node adopts
//! the newest accepted version and materializes it. A node with unanswered local changes
//! never adopts over them: it pushes them and lets the leader merge.

use std::sync::Arc;

use chorus_chunking::{ChunkStore, TreeManifest, VersionId, VersionNumber};
use chorus_proto::header::NodeId;
use chorus_proto::{self as proto, Body};

use super::config::EngineConfig;
use super::event::{Action, ClusterInfo, Event};
use super::header::Header;
use super::leader::LeaderState;
use super::store::{AcceptedRef, Persisted, RedoRecord, StoreError, SyncStore};
use super::transfer::{Incoming, Received, Transfers};

/// How many pushed versions are remembered per adoption.
const LINEAGE_KEPT: usize = 64;

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
    #[error("merge failed: {0}")]
    Merge(String),
}

/// A push sent and not yet answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct InFlight {
    pub target: VersionId,
    pub to: NodeId,
    pub sent_at: u64,
}

/// The sync engine of one node. See the crate docs.
pub struct Engine {
    pub(super) me: NodeId,
    pub(super) cfg: EngineConfig,
    pub(super) store: SyncStore,
    pub(super) chunks: Arc<dyn ChunkStore>,
    pub(super) p: Persisted,
    saved: Persisted,
    pub(super) cluster: ClusterInfo,
    pub(super) inflight: Option<InFlight>,
    want_sent: Option<(VersionId, u64)>,
    /// The accepted version the driver was asked to materialize, adopted once it confirms.
    materializing: Option<AcceptedRef>,
    pub(super) leader: Option<LeaderState>,
    pub(super) transfers: Transfers,
    pub(super) now: u64,
    pub(super) out: Vec<Action>,
    new_headers: Vec<Header>,
    new_redo: Vec<RedoRecord>,
}

impl Engine {
    /// Opens the engine of node `me` on its stores, resuming the persisted state.
    pub fn open(
        me: NodeId,
        cfg: EngineConfig,
        store: SyncStore,
        chunks: Arc<dyn ChunkStore>,
    ) -> Result<Engine, EngineError> {
        let p = store.load_state()?.unwrap_or_else(Persisted::fresh);
        Ok(Engine {
            me,
            cfg,
            store,
            chunks,
            saved: p.clone(),
            p,
            cluster: ClusterInfo::default(),
            inflight: None,
            want_sent: None,
            materializing: None,
            leader: None,
            transfers: Transfers::default(),
            now: 0,
            out: Vec::new(),
            new_headers: Vec::new(),
            new_redo: Vec::new(),
        })
    }

    /// Gives the stores back (a simulated crash reopens an engine on them).
    pub fn into_stores(self) -> (SyncStore, Arc<dyn ChunkStore>) {
        (self.store, self.chunks)
    }

    /// Feeds one event at time `now_ms` (any monotonic millisecond clock) and returns what the
    /// driver must do. State is committed to the store before this returns.
    pub fn handle(&mut self, now_ms: u64, event: Event) -> Result<Vec<Action>, EngineError> {
        self.now = now_ms;
        match event {
            Event::Local(tree) => self.on_local(tree)?,
            Event::Materialized { version } => self.on_materialized(version)?,
            Event::Message { from, body } => self.on_message(from, body)?,
            Event::Tick => self.on_tick()?,
            Event::Cluster(info) => self.on_cluster(info)?,
            Event::LeaderConfirmed => self.on_leader_confirmed()?,
            Event::Committed(headers) => self.on_committed(headers)?,
            Event::ProposeFailed { version } => self.on_propose_failed(version),
        }
        self.settle()?;
        self.leader_drive()?;
        self.flush()?;
        Ok(std::mem::take(&mut self.out))
    }

    pub fn id(&self) -> NodeId {
        self.me
    }

    /// The accepted version this node last adopted, with its number.
    pub fn adopted(&self) -> (VersionId, VersionNumber) {
        (self.p.adopted.version, self.p.adopted.number)
    }

    /// The newest committed header applied here.
    pub fn head(&self) -> (VersionId, VersionNumber) {
        (self.p.head.version, self.p.head.number)
    }

    /// The local version with unanswered changes, if any.
    pub fn work(&self) -> Option<VersionId> {
        self.p.work
    }

    /// What the working folder holds as far as the engine knows.
    pub fn folder(&self) -> VersionId {
        self.p.folder
    }

    /// True when this node has no unanswered local change and has adopted the newest header
    /// it knows.
    pub fn is_settled(&self) -> bool {
        self.p.work.is_none()
            && self.inflight.is_none()
            && self.materializing.is_none()
            && self.p.adopted.number.major >= self.p.head.number.major
            && self.p.folder == self.p.adopted.version
    }

    /// The version both this node and `peer` are believed to hold.
    pub fn last_shared(&self, peer: NodeId) -> Option<VersionId> {
        self.p.last_shared.get(&peer).copied()
    }

    /// The manifest of a stored version.
    pub fn manifest(&self, id: &VersionId) -> Result<Option<TreeManifest>, EngineError> {
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

    /// The chunk store.
    pub fn chunks(&self) -> &Arc<dyn ChunkStore> {
        &self.chunks
    }

    /// True while this node leads with a confirmed, ready leader half.
    pub fn is_leading(&self) -> bool {
        self.leader.as_ref().is_some_and(|l| l.confirmed)
    }

    pub(super) fn send(&mut self, to: NodeId, body: Body) {
        self.out.push(Action::Send { to, body });
    }

    pub(super) fn require_tree(&self, id: VersionId) -> Result<TreeManifest, EngineError> {
        self.store.manifest(&id)?.ok_or(EngineError::Missing(id))
    }

    fn flush(&mut self) -> Result<(), EngineError> {
        if self.new_headers.is_empty() && self.new_redo.is_empty() && self.p == self.saved {
            return Ok(());
        }
        self.store
            .commit_headers(&self.new_headers, &self.new_redo, &self.p)?;
        self.new_headers.clear();
        self.new_redo.clear();
        self.saved = self.p.clone();
        Ok(())
    }

    // ---- the follower half -------------------------------------------------------------

    fn on_local(&mut self, tree: TreeManifest) -> Result<(), EngineError> {
        let id = self.store.put_manifest(&tree)?;
        // Whatever was being materialized did not happen: the folder holds this.
        self.materializing = None;
        if id == self.p.folder {
            return Ok(());
        }
        self.p.folder = id;
        if self.p.lineage.is_empty() && id == self.p.base {
            // Back to where it started before anything was pushed: nothing to send.
            self.p.work = None;
            return Ok(());
        }
        self.p.work = Some(id);
        if self.inflight.is_none() {
            self.push_work()?;
        }
        Ok(())
    }

    /// Pushes the newest local version to the leader with base `base` (the same base on every
    /// retry until an answer moves it: the protocol is idempotent).
    pub(super) fn push_work(&mut self) -> Result<(), EngineError> {
        let Some(work) = self.p.work else {
            return Ok(());
        };
        let Some(leader) = self.cluster.leader else {
            return Ok(());
        };
        let Some(&rank) = self.cluster.ranks.get(&self.me) else {
            return Ok(());
        };
        let number = VersionNumber::new(self.p.adopted.number.major + 1, rank);
        let base = self.p.base;
        self.inflight = Some(InFlight {
            target: work,
            to: leader,
            sent_at: self.now,
        });
        if !self.p.lineage.contains(&work) {
            self.p.lineage.push(work);
            if self.p.lineage.len() > LINEAGE_KEPT {
                self.p.lineage.remove(0);
            }
        }
        tracing::debug!(me = self.me, to = leader, ?work, ?base, %number, "push");
        if leader == self.me {
            if self.leader_ready()? {
                let tree = self.require_tree(work)?;
                let before = self.pushed_before(work);
                self.leader_take(self.me, base, None, work, number, tree, &before)?;
            }
        } else {
            self.send_push(leader, base, work, number, false)?;
        }
        Ok(())
    }

    /// What this node pushed since its base before `target`, oldest first: the states its
    /// folder passed through, which a push names so that a leader that took one of them
    /// merges on it (the answer may have been lost on the way here).
    pub(super) fn pushed_before(&self, target: VersionId) -> Vec<VersionId> {
        let before: Vec<VersionId> = self
            .p
            .lineage
            .iter()
            .copied()
            .filter(|v| *v != target)
            .collect();
        let skip = before.len().saturating_sub(chorus_proto::MAX_PUSHED_BEFORE);
        before[skip..].to_vec()
    }

    /// `pushed` is included in the accepted version `result`, numbered `number`.
    pub(super) fn on_outcome(
        &mut self,
        pushed: VersionId,
        result: VersionId,
        number: VersionNumber,
    ) -> Result<(), EngineError> {
        let Some(pos) = self.p.lineage.iter().position(|v| *v == pushed) else {
            return Ok(()); // stale or duplicated: the newer state already covers it
        };
        tracing::debug!(me = self.me, ?pushed, ?result, %number, "push answered");
        if self.inflight.is_some_and(|f| f.target == pushed) {
            self.inflight = None;
        }
        self.p.base = pushed;
        if self.p.work == Some(pushed) {
            self.p.work = None;
            self.p.lineage.clear();
            self.inflight = None;
            if self.store.has_manifest(&result)? && number.major >= self.p.adopted.number.major {
                self.adopt(AcceptedRef {
                    version: result,
                    number,
                })?;
            }
        } else {
            // Newer local changes descend from `pushed`: push them on top of it.
            self.p.lineage.drain(..=pos);
            if self.inflight.is_none() {
                self.push_work()?;
            }
        }
        Ok(())
    }

    /// Makes `a` this node's synced state. When the working folder holds something else, the
    /// driver is asked to materialize it first, and `a` is adopted once it confirms
    /// ([`Event::Materialized`]); if it finds local edits instead, it reports them
    /// ([`Event::Local`]) and they are pushed on the old base.
    fn adopt(&mut self, a: AcceptedRef) -> Result<(), EngineError> {
        if self.p.folder == a.version {
            self.materializing = None;
            self.p.adopted = a;
            self.p.base = a.version;
            self.p.lineage.clear();
            return Ok(());
        }
        if self.materializing == Some(a) {
            return Ok(());
        }
        let tree = self.require_tree(a.version)?;
        self.materializing = Some(a);
        self.out.push(Action::Materialize {
            version: a.version,
            tree,
        });
        Ok(())
    }

    fn on_materialized(&mut self, version: VersionId) -> Result<(), EngineError> {
        match self.materializing {
            Some(a) if a.version == version && self.p.work.is_none() => {
                self.p.folder = version;
                self.adopt(a)
            }
            _ => Ok(()), // superseded by a newer request or by local edits
        }
    }

    /// Adopts the newest header when nothing local is pending, or asks for its content.
    fn settle(&mut self) -> Result<(), EngineError> {
        if self.p.work.is_some() {
            return Ok(());
        }
        let head = self.p.head;
        if head.number.major <= self.p.adopted.number.major {
            return Ok(());
        }
        if self.store.has_manifest(&head.version)? {
            self.adopt(head)
        } else {
            self.want(head.version);
            Ok(())
        }
    }

    /// Asks for a version this node lacks: from the leader, or from everyone when it leads.
    pub(super) fn want(&mut self, version: VersionId) {
        if let Some((v, at)) = self.want_sent
            && v == version
            && self.now.saturating_sub(at) < self.cfg.want_retry_ms
        {
            return;
        }
        let targets: Vec<NodeId> = match self.cluster.leader {
            Some(l) if l != self.me => vec![l],
            _ => self.cluster.others(self.me).collect(),
        };
        let have = self.p.adopted.version;
        for t in targets {
            self.send(
                t,
                Body::Want(proto::Want {
                    want: Some(version.to_proto()),
                    have: Some(have.to_proto()),
                }),
            );
        }
        self.want_sent = Some((version, self.now));
    }

    fn on_tick(&mut self) -> Result<(), EngineError> {
        let due = match self.inflight {
            None => self.p.work.is_some(),
            Some(f) => self.now.saturating_sub(f.sent_at) >= self.cfg.push_retry_ms,
        };
        if due {
            self.push_work()?;
        }
        Ok(())
    }

    fn on_cluster(&mut self, info: ClusterInfo) -> Result<(), EngineError> {
        let old_leader = self.cluster.leader;
        self.cluster = info;
        if self.cluster.leader != Some(self.me) {
            self.leader = None;
        } else if self.leader.is_none() {
            self.leader = Some(LeaderState::new(self.me, self.p.head));
        }
        if old_leader != self.cluster.leader && self.p.work.is_some() {
            // Re-target at once: the same base, to whoever leads now.
            self.push_work()?;
        }
        Ok(())
    }

    fn on_committed(
        &mut self,
        headers: Vec<chorus_proto::header::AcceptedHeader>,
    ) -> Result<(), EngineError> {
        let mut last = self
            .store
            .last_major()?
            .max(self.new_headers.last().map_or(0, |h| h.number.major));
        let mut headers = headers;
        headers.sort_by_key(|h| h.number.major);
        for h in headers {
            if h.number.major <= last {
                continue;
            }
            let hd = Header::from_accepted(&h);
            let major = hd.number.major;
            for entry in &hd.redo {
                self.new_redo.push(RedoRecord {
                    seq: self.p.redo_seq,
                    major,
                    entry: entry.clone(),
                });
                self.p.redo_seq += 1;
            }
            self.p.include(hd.version, major, true);
            for parent in &hd.parents {
                self.p.include(*parent, major, false);
            }
            if major > self.p.head.number.major {
                self.p.head = AcceptedRef {
                    version: hd.version,
                    number: hd.number,
                };
            }
            last = major;
            self.new_headers.push(hd.clone());
            // A header naming a pushed version answers that push, even if the reply was lost.
            let answered = self
                .p
                .lineage
                .iter()
                .rev()
                .find(|v| hd.includes(v))
                .copied();
            if let Some(pushed) = answered {
                self.on_outcome(pushed, hd.version, hd.number)?;
            }
            self.leader_on_committed(&hd)?;
        }
        Ok(())
    }

    fn on_message(&mut self, from: NodeId, body: Body) -> Result<(), EngineError> {
        if !self.cluster.is_member(from) {
            tracing::debug!(
                from,
                msg = body.name(),
                "ignored a message from a non-member"
            );
            return Ok(());
        }
        match body {
            Body::Push(p) => self.on_push(from, p),
            Body::Accepted(a) => {
                let (Some(v), Some(n)) = (a.version, a.number) else {
                    return Ok(());
                };
                let Ok(v) = VersionId::from_proto(&v) else {
                    return Ok(());
                };
                if self.store.has_manifest(&v)? {
                    self.on_outcome(v, v, VersionNumber::from_proto(&n))?;
                }
                Ok(())
            }
            Body::Merged(m) => {
                let (Some(pushed), Some(n), Some(delta)) = (m.pushed, m.number, m.delta) else {
                    return Ok(());
                };
                let Ok(pushed) = VersionId::from_proto(&pushed) else {
                    return Ok(());
                };
                if !self.p.lineage.contains(&pushed) {
                    return Ok(()); // an answer this node no longer waits for
                }
                let kind = Incoming::Merged {
                    pushed,
                    number: VersionNumber::from_proto(&n),
                };
                if let Some(rx) = self.receive_delta(from, kind.clone(), delta, true)? {
                    self.delivered(from, kind, rx)?;
                }
                Ok(())
            }
            Body::NeedBase(n) => self.on_need_base(from, n),
            Body::NeedChunks(n) => self.on_need_chunks(from, n),
            Body::Chunks(c) => self.on_chunks(from, c),
            Body::NotLeader(_) => {
                if let Some(f) = &mut self.inflight
                    && f.to == from
                {
                    // Retry at the next tick, to whoever leads by then.
                    f.sent_at = 0;
                }
                Ok(())
            }
            Body::Rejected(r) => {
                tracing::info!(from, reason = r.reason, detail = %r.detail, "a peer refused a message");
                Ok(())
            }
            Body::Offer(o) => {
                let Some(delta) = o.delta else {
                    return Ok(());
                };
                if let Some(rx) = self.receive_delta(from, Incoming::Offer, delta, true)? {
                    self.delivered(from, Incoming::Offer, rx)?;
                }
                Ok(())
            }
            Body::Stored(s) => {
                let Some(Ok(v)) = s.version.as_ref().map(VersionId::from_proto) else {
                    return Ok(());
                };
                self.on_stored(from, v);
                Ok(())
            }
            Body::Want(w) => self.on_want(from, w),
        }
    }

    /// A delta received in full (at once, or after its missing chunks arrived).
    pub(super) fn delivered(
        &mut self,
        from: NodeId,
        kind: Incoming,
        rx: Received,
    ) -> Result<(), EngineError> {
        match kind {
            Incoming::Push { number, before } => self.leader_on_pushed(from, number, &before, rx),
            Incoming::Merged { pushed, number } => self.on_outcome(pushed, rx.target, number),
            Incoming::Offer => {
                self.p.last_shared.insert(from, rx.target);
                self.send(
                    from,
                    Body::Stored(proto::Stored {
                        version: Some(rx.target.to_proto()),
                    }),
                );
                Ok(())
            }
        }
    }

    fn on_want(&mut self, from: NodeId, w: proto::Want) -> Result<(), EngineError> {
        let (Some(Ok(want)), Some(Ok(have))) = (
            w.want.as_ref().map(VersionId::from_proto),
            w.have.as_ref().map(VersionId::from_proto),
        ) else {
            return Ok(());
        };
        if !self.store.has_manifest(&want)? {
            return Ok(());
        }
        let base = if self.store.has_manifest(&have)? {
            have
        } else {
            TreeManifest::empty().version_id()
        };
        self.send_offer(from, base, want, false)
    }
}
