//! [`Engine`]: the sync engine of one node, a thin dispatcher in the manner of quinn-proto's
//! `Connection`. Each event goes to the part that owns the state it concerns: the
//! [`Follower`] (local versions, pushes, adoption), the [`Leader`] (merges, replication,
//! proposals; only while this node leads), the [`Transfers`] (deltas in and out) and the
//! [`History`] (committed headers). A part never calls another: what it wants done elsewhere
//! comes back as a [`Step`], which the engine routes at once (so the order is that of direct
//! calls). Everything a handled event changed is committed to the store before `handle`
//! returns, and [`Engine::poll_timeout`] says when the engine next needs a tick.

use std::collections::BTreeMap;
use std::sync::Arc;

use chorus_chunking::{ChunkStore, TreeManifest, VersionId, VersionNumber};
use chorus_proto::header::{AcceptedHeader, NodeId};
use chorus_proto::message::Message;

use crate::config::EngineConfig;
use crate::ctx::Ctx;
use crate::event::{Action, ClusterInfo, Event};
use crate::follower::Follower;
use crate::gc::{self, GcReport, Retention};
use crate::header::Header;
use crate::history::History;
use crate::leader::{Leader, Take};
use crate::store::{Persisted, RedoRecord, StoreError, SyncStore};
use crate::transfers::{Fetch, Incoming, Received, Transfers};

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

/// How far ahead of the head applied here an answer's number may be: the leader answers once
/// a header committed, and this node may not have applied the last few yet.
const MAX_AHEAD: u64 = 1024;

/// Work one part of the engine hands to another, routed by [`Engine`].
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

/// The sync engine of one node.
pub struct Engine {
    me: NodeId,
    cfg: EngineConfig,
    store: SyncStore,
    chunks: Arc<dyn ChunkStore>,
    cluster: ClusterInfo,
    now: u64,
    out: Vec<Action>,
    follower: Follower,
    leader: Option<Leader>,
    transfers: Transfers,
    history: History,
    /// Per peer, the newest version this node believes both hold.
    last_shared: BTreeMap<NodeId, VersionId>,
    /// The state as last committed to the store.
    saved: Persisted,
}

/// Lends the engine's context to one of its parts (a macro, so the parts' fields stay
/// borrowable beside it).
macro_rules! ctx {
    ($e:ident) => {
        Ctx {
            me: $e.me,
            now: $e.now,
            cfg: &$e.cfg,
            store: &$e.store,
            chunks: &*$e.chunks,
            cluster: &$e.cluster,
            out: &mut $e.out,
        }
    };
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
            cluster: ClusterInfo::default(),
            now: 0,
            out: Vec::new(),
            follower: Follower::new(p.follower.clone()),
            leader: None,
            transfers: Transfers::default(),
            history: History::new(p.history.clone()),
            last_shared: p.last_shared.clone(),
            saved: p,
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
            Event::Local(tree) => {
                let id = self.store.put_manifest(&tree)?;
                let steps = self
                    .follower
                    .on_local(&mut ctx!(self), &mut self.transfers, id)?;
                self.run(steps)?;
            }
            Event::Materialized { version } => {
                self.follower.on_materialized(&mut ctx!(self), version)?
            }
            Event::Message { from, message } => self.on_message(from, message)?,
            Event::Tick => {
                let steps = self
                    .follower
                    .on_tick(&mut ctx!(self), &mut self.transfers)?;
                self.run(steps)?;
            }
            Event::Cluster(info) => self.on_cluster(info)?,
            Event::LeaderConfirmed => self.on_leader_confirmed()?,
            Event::Committed(headers) => self.on_committed(headers)?,
            Event::ProposeFailed { version } => {
                if let Some(l) = self.leader.as_mut() {
                    l.on_propose_failed(version);
                }
            }
        }
        let head = self.history.s.head;
        self.follower.settle(&mut ctx!(self), head)?;
        self.follower.fetch_due(&mut ctx!(self))?;
        if let Some(l) = self.leader.as_mut() {
            let steps = l.drive(
                &mut ctx!(self),
                &mut self.transfers,
                head,
                &self.last_shared,
            )?;
            self.run(steps)?;
        }
        self.flush()?;
        Ok(std::mem::take(&mut self.out))
    }

    /// When the engine next needs an [`Event::Tick`] (a push, offer, proposal or Want to
    /// retry), on the clock `handle` is fed; `None` when nothing waits on time.
    pub fn poll_timeout(&self) -> Option<u64> {
        let follower = self.follower.deadline(&self.cfg, &self.history.s.head);
        let leader = self.leader.as_ref().and_then(|l| l.deadline(&self.cfg));
        follower.into_iter().chain(leader).min()
    }

    /// Routes the steps the parts handed back, each before the next (as direct calls would).
    fn run(&mut self, steps: Vec<Step>) -> Result<(), EngineError> {
        for step in steps {
            let more = match step {
                Step::PushToSelf {
                    base,
                    target,
                    number,
                    before,
                    displaced,
                } => {
                    let ready = match &self.leader {
                        Some(l) => l.ready(&ctx!(self))?,
                        None => false,
                    };
                    if !ready {
                        continue;
                    }
                    let tree = ctx!(self).tree(target)?;
                    self.take(Take {
                        from: self.me,
                        base,
                        sent_base: None,
                        target,
                        number,
                        tree,
                        before,
                        displaced,
                    })?
                }
                Step::Answer { to, pushed } => self.answer(to, pushed)?,
                Step::Want(version) => {
                    self.follower.want(&mut ctx!(self), version);
                    Vec::new()
                }
            };
            self.run(more)?;
        }
        Ok(())
    }

    /// Hands a push to the leader half.
    fn take(&mut self, t: Take) -> Result<Vec<Step>, EngineError> {
        match self.leader.as_mut() {
            Some(l) => l.take(&mut ctx!(self), &self.history.s.included, t),
            None => Ok(Vec::new()),
        }
    }

    /// Answers a pusher whose version the head includes.
    fn answer(&mut self, to: NodeId, pushed: VersionId) -> Result<Vec<Step>, EngineError> {
        let head = self.history.s.head;
        if to == self.me {
            return self.follower.on_outcome(
                &mut ctx!(self),
                &mut self.transfers,
                pushed,
                head.version,
                head.number,
            );
        }
        if head.version == pushed {
            ctx!(self).send(
                to,
                Message::Accepted {
                    version: pushed,
                    number: head.number,
                },
            );
        } else {
            self.transfers.send_merged(
                &mut ctx!(self),
                to,
                pushed,
                head.version,
                head.number,
                false,
            )?;
        }
        Ok(Vec::new())
    }

    fn on_cluster(&mut self, info: ClusterInfo) -> Result<(), EngineError> {
        let leader_changed = self.cluster.leader != info.leader;
        self.cluster = info;
        if self.cluster.leader != Some(self.me) {
            self.leader = None;
        } else if self.leader.is_none() {
            self.leader = Some(Leader::new(self.me, self.history.s.head));
        }
        let steps =
            self.follower
                .on_cluster(&mut ctx!(self), &mut self.transfers, leader_changed)?;
        self.run(steps)
    }

    fn on_leader_confirmed(&mut self) -> Result<(), EngineError> {
        if self.cluster.leader != Some(self.me) {
            return Ok(());
        }
        let head = self.history.s.head;
        let me = self.me;
        let l = self.leader.get_or_insert_with(|| Leader::new(me, head));
        if l.confirm(head) && self.follower.s.work.is_some() {
            // This node's own unanswered changes go into its first tip.
            let steps = self
                .follower
                .push_work(&mut ctx!(self), &mut self.transfers)?;
            self.run(steps)?;
        }
        Ok(())
    }

    fn on_committed(&mut self, headers: Vec<AcceptedHeader>) -> Result<(), EngineError> {
        for h in self.history.unseen(&self.store, headers)? {
            let hd = self.history.apply(&h);
            // Both sides of a conflict are kept on every node: the trees holding large
            // displaced files are fetched if they did not arrive before the commit.
            for e in &hd.redo {
                for tree in e.stored_trees() {
                    if !self.store.has_manifest(&tree)? {
                        self.follower.fetch(tree);
                    }
                }
            }
            // A header naming a pushed version answers that push, even if the reply was lost.
            if let Some(pushed) = self.follower.answered_by(|v| hd.includes(v)) {
                let steps = self.follower.on_outcome(
                    &mut ctx!(self),
                    &mut self.transfers,
                    pushed,
                    hd.version,
                    hd.number,
                )?;
                self.run(steps)?;
            }
            if let Some(l) = self.leader.as_mut() {
                let steps = l.on_committed(&h, self.history.s.head, &mut self.last_shared);
                self.run(steps)?;
            }
        }
        Ok(())
    }

    fn on_message(&mut self, from: NodeId, message: Message) -> Result<(), EngineError> {
        if !self.cluster.is_member(from) {
            tracing::debug!(
                from,
                msg = message.name(),
                "ignored a message from a non-member"
            );
            return Ok(());
        }
        match message {
            Message::Push {
                number,
                delta,
                before,
                displaced,
            } => {
                // Entries that do not decode are dropped; the push itself still counts.
                let displaced = crate::header::decode_redo(&displaced).unwrap_or_default();
                self.on_push(from, number, delta, before, displaced)
            }
            Message::Accepted { version, number } => {
                if !self.answer_is_plausible(from, number) {
                    return Ok(());
                }
                if self.store.has_manifest(&version)? {
                    let steps = self.follower.on_outcome(
                        &mut ctx!(self),
                        &mut self.transfers,
                        version,
                        version,
                        number,
                    )?;
                    self.run(steps)?;
                }
                Ok(())
            }
            Message::Merged {
                pushed,
                number,
                delta,
            } => {
                if !self.follower.awaits(&pushed) || !self.answer_is_plausible(from, number) {
                    return Ok(()); // an answer this node does not wait for
                }
                self.receive(from, Incoming::Merged { pushed, number }, delta)
            }
            Message::NeedBase { base, target } => self.transfers.on_need_base(
                &mut ctx!(self),
                &mut self.last_shared,
                from,
                base,
                target,
            ),
            Message::NeedChunks { ids, .. } => {
                self.transfers.on_need_chunks(&mut ctx!(self), from, &ids)
            }
            Message::Chunks(c) => {
                let done = self.transfers.on_chunks(&mut ctx!(self), from, c)?;
                for (kind, rx) in done {
                    self.delivered(from, kind, rx)?;
                }
                Ok(())
            }
            Message::NotLeader { .. } => {
                self.follower.on_not_leader(from);
                Ok(())
            }
            Message::Rejected { reason, detail } => {
                tracing::info!(from, ?reason, %detail, "a peer refused a message");
                Ok(())
            }
            Message::Offer { delta, extra } => self.receive(from, Incoming::Offer { extra }, delta),
            Message::Stored { version } => {
                // Only what members share is a delta base; a conflict's stored tree is not.
                let extra = self.leader.as_ref().is_some_and(|l| l.is_extra(&version));
                if !extra && self.history.s.included.contains_key(&version)
                    || self
                        .leader
                        .as_ref()
                        .is_some_and(|l| l.is_candidate(&version))
                {
                    self.last_shared.insert(from, version);
                }
                if let Some(l) = self.leader.as_mut() {
                    l.on_stored(from, version);
                }
                Ok(())
            }
            Message::Want { want, have } => self.on_want(from, want, have),
        }
    }

    fn on_push(
        &mut self,
        from: NodeId,
        number: VersionNumber,
        delta: chorus_proto::message::Delta,
        before: Vec<VersionId>,
        displaced: Vec<chorus_merge::RedoEntry>,
    ) -> Result<(), EngineError> {
        if self.cluster.leader != Some(self.me) {
            let leader = self
                .cluster
                .leader
                .and_then(|l| self.cluster.peer_ids.get(&l).cloned());
            ctx!(self).send(from, Message::NotLeader { leader });
            return Ok(());
        }
        let ready = match &self.leader {
            Some(l) => l.ready(&ctx!(self))?,
            None => false,
        };
        if !ready {
            ctx!(self).send(
                from,
                Message::Rejected {
                    reason: chorus_proto::RejectReason::Busy,
                    detail: "the leader is catching up; retry shortly".into(),
                },
            );
            return Ok(());
        }
        // Numbers are the leader's to give, never the sender's: MINOR is the sender's rank,
        // MAJOR at most the next accepted version's (a member claiming a huge number would
        // otherwise win every conflict).
        let Some(&rank) = self.cluster.ranks.get(&from) else {
            return Ok(());
        };
        let next = self.history.s.head.number.major + 1;
        let number = VersionNumber::new(number.major.clamp(1, next), rank);
        self.receive(
            from,
            Incoming::Push {
                number,
                before,
                displaced,
            },
            delta,
        )
    }

    /// An answer to a push counts only from the leader, and only with a number the chain can
    /// have reached: a forged `Accepted{v, u64::MAX}` would otherwise stop this node from
    /// ever adopting again.
    fn answer_is_plausible(&self, from: NodeId, number: VersionNumber) -> bool {
        let ok = self.cluster.leader == Some(from)
            && number.major <= self.history.s.head.number.major + MAX_AHEAD;
        if !ok {
            tracing::info!(from, %number, "ignored an answer to a push that did not come from the leader or names an impossible number");
        }
        ok
    }

    /// Applies a delta, and delivers it once it is complete.
    fn receive(
        &mut self,
        from: NodeId,
        kind: Incoming,
        delta: chorus_proto::message::Delta,
    ) -> Result<(), EngineError> {
        if let Some(rx) = self
            .transfers
            .receive(&mut ctx!(self), from, kind.clone(), delta)?
        {
            self.delivered(from, kind, rx)?;
        }
        Ok(())
    }

    /// A delta received in full (at once, or after its missing chunks arrived).
    fn delivered(&mut self, from: NodeId, kind: Incoming, rx: Received) -> Result<(), EngineError> {
        let steps = match kind {
            Incoming::Push {
                number,
                before,
                displaced,
            } => {
                self.last_shared.insert(from, rx.target);
                let ready = match &self.leader {
                    Some(l) => l.ready(&ctx!(self))?,
                    None => false,
                };
                if !ready {
                    return Ok(()); // the pusher retries
                }
                self.take(Take {
                    from,
                    base: rx.base,
                    sent_base: rx.sent_base,
                    target: rx.target,
                    number,
                    tree: rx.tree,
                    before,
                    displaced,
                })?
            }
            Incoming::Merged { pushed, number } => self.follower.on_outcome(
                &mut ctx!(self),
                &mut self.transfers,
                pushed,
                rx.target,
                number,
            )?,
            Incoming::Offer { extra } => {
                if !extra {
                    self.last_shared.insert(from, rx.target);
                }
                ctx!(self).send(from, Message::Stored { version: rx.target });
                Vec::new()
            }
        };
        self.run(steps)
    }

    fn on_want(
        &mut self,
        from: NodeId,
        want: VersionId,
        have: VersionId,
    ) -> Result<(), EngineError> {
        if !self.store.has_manifest(&want)? {
            return Ok(());
        }
        // An accepted version goes as a delta against what the asker holds; anything else (a
        // conflict's stored tree) as an extra, against nothing.
        let accepted = self.history.s.included.contains_key(&want);
        let base = if accepted && self.store.has_manifest(&have)? {
            have
        } else {
            TreeManifest::empty().version_id()
        };
        self.transfers
            .send_offer(&mut ctx!(self), from, base, want, false, !accepted)
    }

    fn flush(&mut self) -> Result<(), EngineError> {
        let p = Persisted {
            follower: self.follower.s.clone(),
            history: self.history.s.clone(),
            last_shared: self.last_shared.clone(),
        };
        let h = &mut self.history;
        if h.new_headers.is_empty() && h.new_redo.is_empty() && p == self.saved {
            return Ok(());
        }
        self.store.commit_headers(&h.new_headers, &h.new_redo, &p)?;
        h.new_headers.clear();
        h.new_redo.clear();
        self.saved = p;
        Ok(())
    }

    /// Removes what `retention` does not keep. `now_ms` is wall-clock Unix milliseconds (the
    /// headers' `created_at_ms` clock). Run it between events, never between a scan that put
    /// chunks and the [`Event::Local`] that names them.
    pub fn collect_garbage(
        &mut self,
        now_ms: u64,
        retention: &Retention,
    ) -> Result<GcReport, EngineError> {
        let mut needed = self.follower.versions();
        needed.push(self.history.s.head.version);
        needed.extend(self.last_shared.values().copied());
        if let Some(l) = &self.leader {
            needed.extend(l.versions());
        }
        needed.extend(self.transfers.versions());
        let fetching = self.transfers.fetching_chunks();
        gc::collect(
            &self.store,
            &*self.chunks,
            needed,
            &fetching,
            now_ms,
            retention,
        )
    }

    // ---- what the driver and the socket read ------------------------------------------------

    pub fn id(&self) -> NodeId {
        self.me
    }

    /// The accepted version this node last adopted, with its number.
    pub fn adopted(&self) -> (VersionId, VersionNumber) {
        let a = self.follower.s.adopted;
        (a.version, a.number)
    }

    /// The newest committed header applied here.
    pub fn head(&self) -> (VersionId, VersionNumber) {
        let h = self.history.s.head;
        (h.version, h.number)
    }

    /// The local work displaces these changes on purpose (a redo): they ride with its pushes,
    /// and the leader puts them on the redo stack with the version that takes the work in.
    pub fn note_displaced(&mut self, entries: Vec<chorus_merge::RedoEntry>) {
        self.follower.s.displaced.extend(entries);
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
