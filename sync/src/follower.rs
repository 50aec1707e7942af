//! [`Follower`]: the half every node runs, the leader too (it pushes to itself, in process).
//!
//! A scan of the working folder becomes a local version; the newest local version is pushed to
//! the leader as a delta against `base`, a version the leader holds and the local work descends
//! from; an answer (Accepted, Merged, or a committed header that names the pushed version)
//! moves `base` forward, and once no local change is left unanswered the node adopts the newest
//! accepted version and materializes it. A node with unanswered local changes never adopts over
//! them: it pushes them and lets the leader merge.

use chorus_chunking::{TreeManifest, VersionId, VersionNumber};
use chorus_merge::RedoEntry;
use chorus_proto::header::NodeId;
use chorus_proto::message::Message;
use serde::{Deserialize, Serialize};

use crate::ctx::Ctx;
use crate::event::Action;
use crate::step::{EngineError, Step};
use crate::store::AcceptedRef;
use crate::transfers::Transfers;

/// How many pushed versions are remembered per adoption.
const LINEAGE_KEPT: usize = 64;

/// What the follower remembers across restarts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FollowerState {
    /// The accepted version this node last adopted (the working folder was synced to it).
    pub adopted: AcceptedRef,
    /// What the working folder holds, as far as the engine knows (the last local version, or
    /// the last version it asked to materialize).
    pub folder: VersionId,
    /// The newest local version with changes the leader has not answered; None when clean.
    pub work: Option<VersionId>,
    /// The base of the next push: a version the leader holds that `work` descends from.
    pub base: VersionId,
    /// Versions pushed since the last adoption, oldest first: only answers about these move
    /// `base` or adopt, so a stale or duplicated answer can never rebase newer work.
    pub lineage: Vec<VersionId>,
    /// What the local work displaces on purpose (a redo over lines that changed since): it
    /// rides with the pushes until the work is answered, for the leader's redo stack.
    #[serde(default)]
    pub displaced: Vec<RedoEntry>,
}

impl FollowerState {
    /// A node with nothing: the empty tree, accepted as 0.0.
    pub fn fresh() -> Self {
        let empty = TreeManifest::empty().version_id();
        FollowerState {
            adopted: AcceptedRef::zero(),
            folder: empty,
            work: None,
            base: empty,
            lineage: Vec::new(),
            displaced: Vec::new(),
        }
    }
}

/// A push sent and not yet answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct InFlight {
    target: VersionId,
    to: NodeId,
    sent_at: u64,
    /// The delta's size: a retry also waits for it to have arrived.
    bytes: u64,
}

impl InFlight {
    /// When it is pushed again if unanswered.
    fn retry_at(&self, cfg: &crate::EngineConfig) -> u64 {
        self.sent_at
            .saturating_add(cfg.push_retry_ms)
            .saturating_add(crate::transfers::transit_ms(self.bytes))
    }
}

/// The follower half of one node.
#[derive(Debug)]
pub(crate) struct Follower {
    pub s: FollowerState,
    inflight: Option<InFlight>,
    /// When local work last could not be pushed (no leader or no rank yet): it is tried again
    /// when the cluster changes, and at the latest a push retry interval later.
    stuck_since: Option<u64>,
    want_sent: Option<(VersionId, u64)>,
    /// The accepted version the driver was asked to materialize, adopted once it confirms.
    materializing: Option<AcceptedRef>,
    /// Versions this node must hold that are not the head (the stored trees of redo entries),
    /// with when each was last asked for.
    fetching: std::collections::BTreeMap<VersionId, u64>,
}

impl Follower {
    pub fn new(s: FollowerState) -> Self {
        Follower {
            s,
            inflight: None,
            stuck_since: None,
            fetching: Default::default(),
            want_sent: None,
            materializing: None,
        }
    }

    /// True when no local change waits for an answer and the folder holds the adopted
    /// version, which is at least `head`.
    pub fn is_settled(&self, head: &AcceptedRef) -> bool {
        self.s.work.is_none()
            && self.inflight.is_none()
            && self.materializing.is_none()
            && self.s.adopted.number.major >= head.number.major
            && self.s.folder == self.s.adopted.version
    }

    /// The versions the follower still needs (for history retention).
    pub fn versions(&self) -> Vec<VersionId> {
        let mut v = vec![self.s.adopted.version, self.s.folder, self.s.base];
        v.extend(self.s.work);
        v.extend(self.s.lineage.iter().copied());
        v
    }

    /// The working folder was scanned into `tree` (stored by the caller as `id`).
    pub fn on_local(
        &mut self,
        ctx: &mut Ctx<'_>,
        transfers: &mut Transfers,
        id: VersionId,
    ) -> Result<Vec<Step>, EngineError> {
        // Whatever was being materialized did not happen: the folder holds this.
        self.materializing = None;
        if id == self.s.folder {
            return Ok(Vec::new());
        }
        self.s.folder = id;
        if self.s.lineage.is_empty() && id == self.s.base {
            // Back to where it started before anything was pushed: nothing to send.
            self.s.work = None;
            return Ok(Vec::new());
        }
        self.s.work = Some(id);
        if self.inflight.is_none() {
            return self.push_work(ctx, transfers);
        }
        Ok(Vec::new())
    }

    /// Pushes the newest local version to the leader with base `base` (the same base on every
    /// retry until an answer moves it: the protocol is idempotent). A push to this node itself
    /// comes back as a [`Step::PushToSelf`] for the engine to hand to the leader half.
    pub fn push_work(
        &mut self,
        ctx: &mut Ctx<'_>,
        transfers: &mut Transfers,
    ) -> Result<Vec<Step>, EngineError> {
        self.stuck_since = None;
        let Some(work) = self.s.work else {
            return Ok(Vec::new());
        };
        let (Some(leader), Some(&rank)) = (ctx.cluster.leader, ctx.cluster.ranks.get(&ctx.me))
        else {
            self.stuck_since = Some(ctx.now);
            return Ok(Vec::new());
        };
        let number = VersionNumber::new(self.s.adopted.number.major + 1, rank);
        let base = self.s.base;
        self.inflight = Some(InFlight {
            target: work,
            to: leader,
            sent_at: ctx.now,
            bytes: 0,
        });
        if !self.s.lineage.contains(&work) {
            self.s.lineage.push(work);
            if self.s.lineage.len() > LINEAGE_KEPT {
                self.s.lineage.remove(0);
            }
        }
        tracing::debug!(me = ctx.me, to = leader, ?work, ?base, %number, "push");
        let before = self.pushed_before(work);
        let displaced = self.s.displaced.clone();
        if leader == ctx.me {
            return Ok(vec![Step::PushToSelf {
                base,
                target: work,
                number,
                before,
                displaced,
            }]);
        }
        let bytes =
            transfers.send_push(ctx, leader, base, work, number, before, displaced, false)?;
        if let Some(f) = &mut self.inflight {
            f.bytes = bytes;
        }
        Ok(Vec::new())
    }

    /// What this node pushed since its base before `target`, oldest first: the states its
    /// folder passed through, which a push names so that a leader that took one of them
    /// merges on it (the answer may have been lost on the way here).
    pub fn pushed_before(&self, target: VersionId) -> Vec<VersionId> {
        let before: Vec<VersionId> = self
            .s
            .lineage
            .iter()
            .copied()
            .filter(|v| *v != target)
            .collect();
        let skip = before.len().saturating_sub(chorus_proto::MAX_PUSHED_BEFORE);
        before[skip..].to_vec()
    }

    /// True when `pushed` is one of this node's unanswered pushes.
    pub fn awaits(&self, pushed: &VersionId) -> bool {
        self.s.lineage.contains(pushed)
    }

    /// The newest of this node's pushes that `includes` covers, if any.
    pub fn answered_by(&self, includes: impl Fn(&VersionId) -> bool) -> Option<VersionId> {
        self.s.lineage.iter().rev().find(|v| includes(v)).copied()
    }

    /// `pushed` is included in the accepted version `result`, numbered `number`.
    pub fn on_outcome(
        &mut self,
        ctx: &mut Ctx<'_>,
        transfers: &mut Transfers,
        pushed: VersionId,
        result: VersionId,
        number: VersionNumber,
    ) -> Result<Vec<Step>, EngineError> {
        let Some(pos) = self.s.lineage.iter().position(|v| *v == pushed) else {
            return Ok(Vec::new()); // stale or duplicated: the newer state already covers it
        };
        tracing::debug!(me = ctx.me, ?pushed, ?result, %number, "push answered");
        if self.inflight.is_some_and(|f| f.target == pushed) {
            self.inflight = None;
        }
        self.s.base = pushed;
        if self.s.work == Some(pushed) {
            self.s.work = None;
            self.s.lineage.clear();
            self.s.displaced.clear();
            self.inflight = None;
            if ctx.holds(&result)? && number.major >= self.s.adopted.number.major {
                self.adopt(
                    ctx,
                    AcceptedRef {
                        version: result,
                        number,
                    },
                )?;
            }
            Ok(Vec::new())
        } else {
            // Newer local changes descend from `pushed`: push them on top of it.
            self.s.lineage.drain(..=pos);
            if self.inflight.is_none() {
                return self.push_work(ctx, transfers);
            }
            Ok(Vec::new())
        }
    }

    /// Makes `a` this node's synced state. When the working folder holds something else, the
    /// driver is asked to materialize it first, and `a` is adopted once it confirms
    /// ([`Event::Materialized`](crate::Event::Materialized)); if it finds local edits instead,
    /// it reports them and they are pushed on the old base.
    fn adopt(&mut self, ctx: &mut Ctx<'_>, a: AcceptedRef) -> Result<(), EngineError> {
        // Never back to an older version while a newer one is being written: the folder would
        // hold the newer one when the older is written, and that looked like a local change
        // (the newer version, pushed back as this node's own work).
        if a.number.major < self.newest_major() {
            return Ok(());
        }
        if self.s.folder == a.version {
            self.materializing = None;
            self.s.adopted = a;
            self.s.base = a.version;
            self.s.lineage.clear();
            return Ok(());
        }
        if self.materializing == Some(a) {
            return Ok(());
        }
        let tree = ctx.tree(a.version)?;
        self.materializing = Some(a);
        ctx.out.push(Action::Materialize {
            version: a.version,
            tree,
        });
        Ok(())
    }

    /// The driver wrote `version` into the folder.
    pub fn on_materialized(
        &mut self,
        ctx: &mut Ctx<'_>,
        version: VersionId,
    ) -> Result<(), EngineError> {
        match self.materializing {
            Some(a) if a.version == version && self.s.work.is_none() => {
                self.s.folder = version;
                self.adopt(ctx, a)
            }
            _ => Ok(()), // superseded by a newer request or by local edits
        }
    }

    /// Adopts `head` when nothing local is pending, or asks for its content (unless it is
    /// `arriving`: a delta to it is fetching its chunks, and asking again would have the
    /// whole delta sent again).
    pub fn settle(
        &mut self,
        ctx: &mut Ctx<'_>,
        head: AcceptedRef,
        arriving: bool,
    ) -> Result<(), EngineError> {
        if self.s.work.is_some() || head.number.major <= self.newest_major() {
            return Ok(());
        }
        if ctx.holds(&head.version)? {
            self.adopt(ctx, head)
        } else {
            if !arriving {
                self.want(ctx, head.version);
            }
            Ok(())
        }
    }

    /// The MAJOR of the newest accepted version this node has adopted or is writing.
    fn newest_major(&self) -> u64 {
        let writing = self.materializing.map_or(0, |m| m.number.major);
        writing.max(self.s.adopted.number.major)
    }

    /// Asks for a version this node lacks: from the leader, or from everyone when it leads.
    pub fn want(&mut self, ctx: &mut Ctx<'_>, version: VersionId) {
        if let Some((v, at)) = self.want_sent
            && v == version
            && ctx.now.saturating_sub(at) < ctx.cfg.want_retry_ms
        {
            return;
        }
        let targets: Vec<NodeId> = match ctx.cluster.leader {
            Some(l) if l != ctx.me => vec![l],
            _ => ctx.cluster.others(ctx.me).collect(),
        };
        let have = self.s.adopted.version;
        for t in targets {
            ctx.send(
                t,
                Message::Want {
                    want: version,
                    have,
                },
            );
        }
        self.want_sent = Some((version, ctx.now));
    }

    /// Asks for `version` (not the head: a stored tree a redo entry names) until it is here.
    pub fn fetch(&mut self, version: VersionId) {
        self.fetching.entry(version).or_insert(0);
    }

    /// Asks the members for the versions being fetched that are still missing, once per
    /// retry interval; forgets those that arrived.
    pub fn fetch_due(&mut self, ctx: &mut Ctx<'_>) -> Result<(), EngineError> {
        let mut arrived = Vec::new();
        for (v, at) in self.fetching.iter_mut() {
            if ctx.holds(v)? {
                arrived.push(*v);
                continue;
            }
            if *at != 0 && ctx.now.saturating_sub(*at) < ctx.cfg.want_retry_ms {
                continue;
            }
            *at = ctx.now.max(1);
            let targets: Vec<NodeId> = match ctx.cluster.leader {
                Some(l) if l != ctx.me => vec![l],
                _ => ctx.cluster.others(ctx.me).collect(),
            };
            for t in targets {
                ctx.send(
                    t,
                    Message::Want {
                        want: *v,
                        have: TreeManifest::empty().version_id(),
                    },
                );
            }
        }
        for v in arrived {
            self.fetching.remove(&v);
        }
        Ok(())
    }

    /// Retries an unanswered push once its retry interval has passed.
    pub fn on_tick(
        &mut self,
        ctx: &mut Ctx<'_>,
        transfers: &mut Transfers,
    ) -> Result<Vec<Step>, EngineError> {
        let due = match self.inflight {
            None => self.s.work.is_some(),
            Some(f) => ctx.now >= f.retry_at(ctx.cfg),
        };
        if due {
            return self.push_work(ctx, transfers);
        }
        Ok(Vec::new())
    }

    /// The cluster changed: local work goes at once to a new leader (with the same base), or
    /// to the leader that just became known.
    pub fn on_cluster(
        &mut self,
        ctx: &mut Ctx<'_>,
        transfers: &mut Transfers,
        leader_changed: bool,
    ) -> Result<Vec<Step>, EngineError> {
        let stuck = self.inflight.is_none() && self.stuck_since.is_some();
        if self.s.work.is_some() && (leader_changed || stuck) {
            return self.push_work(ctx, transfers);
        }
        Ok(Vec::new())
    }

    /// `from` says it does not lead: if the push in flight went there, retry at the next
    /// tick, to whoever leads by then.
    pub fn on_not_leader(&mut self, from: NodeId) {
        if let Some(f) = &mut self.inflight
            && f.to == from
        {
            f.sent_at = 0;
            f.bytes = 0;
        }
    }

    /// When this half next needs a [`Tick`](crate::Event::Tick): a push to retry, or a Want
    /// to repeat while the version it asked for has not come.
    pub fn deadline(&self, cfg: &crate::EngineConfig, head: &AcceptedRef) -> Option<u64> {
        let push = match (self.inflight, self.stuck_since) {
            (Some(f), _) => Some(f.retry_at(cfg)),
            (None, Some(at)) if self.s.work.is_some() => Some(at.saturating_add(cfg.push_retry_ms)),
            _ => None,
        };
        let want = self
            .want_sent
            .filter(|_| self.s.work.is_none() && head.number.major > self.s.adopted.number.major)
            .map(|(_, at)| at.saturating_add(cfg.want_retry_ms));
        let fetch = self
            .fetching
            .values()
            .map(|at| at.saturating_add(cfg.want_retry_ms))
            .min();
        push.into_iter().chain(want).chain(fetch).min()
    }
}
