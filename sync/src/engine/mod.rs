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

use chorus_chunking::{ChunkStore, VersionId};
use chorus_proto::header::{AcceptedHeader, NodeId};
use chorus_proto::message::Message;

use crate::config::EngineConfig;
use crate::ctx::Ctx;
use crate::event::{Action, ClusterInfo, Event};
use crate::follower::Follower;
use crate::gc::{self, GcReport, Retention};
use crate::history::History;
use crate::leader::{Leader, Take};
use crate::step::{EngineError, Step};
use serde::{Deserialize, Serialize};

use crate::follower::FollowerState;
use crate::history::HistoryState;
use crate::store::SyncStore;
use crate::transfers::Transfers;

/// How far ahead of the head applied here an answer's number may be: the leader answers once
/// a header committed, and this node may not have applied the last few yet.
const MAX_AHEAD: u64 = 1024;

/// What the engine must remember across restarts: each part's own state, and what it believes
/// every peer holds. Stored as one record (flat JSON, as one struct).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Persisted {
    #[serde(flatten)]
    pub follower: FollowerState,
    #[serde(flatten)]
    pub history: HistoryState,
    /// Per peer, the newest version this node believes both hold: the base of deltas to it.
    pub last_shared: BTreeMap<NodeId, VersionId>,
}

impl Persisted {
    /// A node with nothing: the empty tree, accepted as 0.0.
    pub fn fresh() -> Self {
        Persisted {
            follower: FollowerState::fresh(),
            history: HistoryState::fresh(),
            last_shared: BTreeMap::new(),
        }
    }
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
    /// What each peer may still have this node encode for it (Want and NeedBase answers).
    budgets: budget::Budgets,
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

mod budget;
mod inbox;
mod queries;

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
            budgets: Default::default(),
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
                let id = self.store.put_and_keep(Arc::new(tree))?;
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
        let arriving = self
            .transfers
            .receiving(head.version, self.now, self.cfg.want_retry_ms);
        self.follower.settle(&mut ctx!(self), head, arriving)?;
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
}
