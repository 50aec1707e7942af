//! The leader half: every push (the leader's own local versions too) is rebuilt from its
//! delta, then fast-forwarded or merged three-way into the *tip* (the newest version the
//! leader means to commit) with chorus-merge, where the higher version number wins a conflict.
//! A snapshot of the tip, the *candidate*, is offered to every member as a delta against what
//! it last shared; once a majority of voters, the leader included, hold it durably (Stored),
//! its header is proposed through Raft. When the header commits, each pusher whose version it
//! includes is answered: Accepted when the version is the one pushed, else Merged with the
//! changes as a delta against the pushed version. One candidate is in flight at a time; pushes
//! that arrive meanwhile are merged into the tip and go with the next one. A member that is
//! behind gets the head offered again (catch-up), with a backoff.

use std::collections::{BTreeMap, BTreeSet};

use chorus_chunking::{
    ChunkRef, ChunkStore, Entry, FileManifest, TreeManifest, VersionId, VersionNumber,
};
use chorus_merge::redo::{Displaced, WholeContent};
use chorus_merge::{ContentLoader, Numbers, RedoEntry, merge_trees};
use chorus_proto::header::{MAX_PARENTS, MAX_REDO_BYTES, NodeId, Proposal};
use chorus_proto::{self as proto, Body, RejectReason};

use super::engine::{Engine, EngineError};
use super::event::Action;
use super::header::{Header, encode_redo};
use super::store::AcceptedRef;
use super::transfer::Received;

/// Longest wait between two catch-up offers to an unresponsive member, in offer retries.
const MAX_BACKOFF_SHIFT: u32 = 5;

/// A pusher waiting for the commit that includes its version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Waiter {
    peer: NodeId,
    pushed: VersionId,
    /// The tip sequence number at which the pushed version was included.
    seq: u64,
}

/// The tip snapshot being replicated and proposed.
#[derive(Debug, Clone)]
pub(super) struct Candidate {
    version: VersionId,
    seq: u64,
    parents: Vec<VersionId>,
    origin: NodeId,
    redo: Vec<RedoEntry>,
    /// Members that hold it durably (the leader from the start).
    stored: BTreeSet<NodeId>,
    proposed_at: Option<u64>,
}

/// An offer in flight to one member.
#[derive(Debug, Clone, Copy)]
struct OfferSent {
    target: VersionId,
    at: u64,
    attempts: u32,
}

/// The leader's volatile state; it starts over at every leadership.
pub(super) struct LeaderState {
    /// Set once the driver confirmed the leadership (all earlier headers applied).
    pub confirmed: bool,
    tip: AcceptedRef,
    tip_origin: NodeId,
    /// Pushed versions merged into the tip since the head, with their tip sequence number.
    merged: Vec<(VersionId, u64)>,
    /// What the merges since the last candidate displaced.
    redo: Vec<RedoEntry>,
    seq: u64,
    waiters: Vec<Waiter>,
    candidate: Option<Candidate>,
    offers: BTreeMap<NodeId, OfferSent>,
}

impl LeaderState {
    pub(super) fn new(me: NodeId, head: AcceptedRef) -> Self {
        LeaderState {
            confirmed: false,
            tip: head,
            tip_origin: me,
            merged: Vec::new(),
            redo: Vec::new(),
            seq: 0,
            waiters: Vec::new(),
            candidate: None,
            offers: BTreeMap::new(),
        }
    }

    /// Starts over from `head`: nothing merged, nothing waiting (pushers retry).
    fn reset(&mut self, head: AcceptedRef) {
        self.tip = head;
        self.merged.clear();
        self.redo.clear();
        self.waiters.clear();
        self.candidate = None;
        self.offers.clear();
    }
}

impl Engine {
    pub(super) fn on_leader_confirmed(&mut self) -> Result<(), EngineError> {
        if self.cluster.leader != Some(self.me) {
            return Ok(());
        }
        let head = self.p.head;
        let me = self.me;
        let l = self
            .leader
            .get_or_insert_with(|| LeaderState::new(me, head));
        if !l.confirmed {
            l.confirmed = true;
            l.reset(head);
            if self.p.work.is_some() {
                // This node's own unanswered changes go into its first tip.
                self.push_work()?;
            }
        }
        Ok(())
    }

    /// True when this node leads, confirmed, and holds the tip's content.
    pub(super) fn leader_ready(&self) -> Result<bool, EngineError> {
        match &self.leader {
            Some(l) if l.confirmed => Ok(self.store.has_manifest(&l.tip.version)?),
            _ => Ok(false),
        }
    }

    pub(super) fn on_push(&mut self, from: NodeId, push: proto::Push) -> Result<(), EngineError> {
        if self.cluster.leader != Some(self.me) {
            let leader_peer_id = self
                .cluster
                .leader
                .and_then(|l| self.cluster.peer_ids.get(&l).cloned())
                .unwrap_or_default();
            self.send(
                from,
                Body::NotLeader(proto::NotLeader {
                    leader_peer_id,
                    leader_addrs: Vec::new(),
                }),
            );
            return Ok(());
        }
        if !self.leader_ready()? {
            self.send(
                from,
                Body::Rejected(proto::Rejected {
                    reason: RejectReason::Busy as i32,
                    detail: "the leader is catching up; retry shortly".into(),
                }),
            );
            return Ok(());
        }
        let (Some(number), Some(delta)) = (push.number, push.delta) else {
            return Ok(());
        };
        let kind = super::transfer::Incoming::Push {
            number: VersionNumber::from_proto(&number),
            before: push
                .pushed_before
                .iter()
                .filter_map(|v| VersionId::from_proto(v).ok())
                .collect(),
        };
        if let Some(rx) = self.receive_delta(from, kind.clone(), delta, true)? {
            self.delivered(from, kind, rx)?;
        }
        Ok(())
    }

    pub(super) fn leader_on_pushed(
        &mut self,
        from: NodeId,
        number: VersionNumber,
        before: &[VersionId],
        rx: Received,
    ) -> Result<(), EngineError> {
        self.p.last_shared.insert(from, rx.target);
        if !self.leader_ready()? {
            return Ok(()); // the pusher retries
        }
        self.leader_take(
            from,
            rx.base,
            rx.sent_base,
            rx.target,
            number,
            rx.tree,
            before,
        )
    }

    /// Takes the pushed version `target` (built on `base`, after the pusher's earlier pushes
    /// `before`) into the tip.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn leader_take(
        &mut self,
        from: NodeId,
        base: VersionId,
        sent_base: Option<TreeManifest>,
        target: VersionId,
        number: VersionNumber,
        tree: TreeManifest,
        before: &[VersionId],
    ) -> Result<(), EngineError> {
        // The newest of the pusher's earlier pushes this leader has taken is the base to merge
        // on: the answer to it was lost, and on the older base its changes would meet
        // themselves as rivals (duplicated text, or a whole file displaced by its own past).
        let (base, sent_base, base_at) = match self.newest_taken(before)? {
            Some((v, at)) => (v, None, Some(at)),
            None => (base, sent_base, self.p.included.get(&base).copied()),
        };
        // Already committed: answer at once against the head. Unless the push was built on a
        // version accepted at or after that commit: then it is not a retry but a change back
        // to an earlier tree (an undo, a restore), and it is taken like any other.
        if let Some(&at) = self.p.included.get(&target)
            && base_at.is_none_or(|b| b < at)
        {
            return self.answer(from, target);
        }
        let Some(l) = self.leader.as_mut() else {
            return Ok(());
        };
        // Already in the tip: wait for its commit.
        let included = l
            .merged
            .iter()
            .find(|(v, _)| *v == target)
            .map(|(_, s)| *s)
            .or((l.tip.version == target).then_some(l.seq));
        if let Some(seq) = included {
            let w = Waiter {
                peer: from,
                pushed: target,
                seq,
            };
            if !l.waiters.contains(&w) {
                l.waiters.push(w);
            }
            return Ok(());
        }
        if l.merged.len() >= MAX_PARENTS - 1 {
            if from != self.me {
                self.send(
                    from,
                    Body::Rejected(proto::Rejected {
                        reason: RejectReason::Busy as i32,
                        detail: "too many changes wait for the next commit; retry shortly".into(),
                    }),
                );
            }
            return Ok(());
        }
        let tip = l.tip;
        tracing::debug!(me = self.me, from, ?target, ?base, tip = ?tip.version, "take");
        let (new_tip, redo) = if base == tip.version {
            (
                AcceptedRef {
                    version: target,
                    number,
                },
                Vec::new(),
            )
        } else {
            let base_tree = match sent_base {
                Some(t) => t,
                None => self.require_tree(base)?,
            };
            let ours = self.require_tree(tip.version)?;
            let m = merge_trees(
                &base_tree,
                &ours,
                &tree,
                Numbers {
                    ours: tip.number,
                    theirs: number,
                },
                &self.cfg.rules,
                &Loader(&*self.chunks),
            )
            .map_err(|e| EngineError::Merge(e.to_string()))?;
            let redo: Vec<RedoEntry> = m
                .redo
                .iter()
                .map(|e| compact(e, number, &ours, &tree))
                .collect();
            let merged = m
                .into_manifest(|_, bytes| self.cut_and_store(bytes))
                .map_err(|e| EngineError::Merge(e.to_string()))?;
            self.chunks.sync()?;
            let id = self.store.put_manifest(&merged)?;
            (
                AcceptedRef {
                    version: id,
                    number: tip.number.max(number),
                },
                redo,
            )
        };
        let Some(l) = self.leader.as_mut() else {
            return Ok(());
        };
        l.seq += 1;
        l.tip = new_tip;
        l.tip_origin = from;
        l.redo.extend(redo);
        l.merged.push((target, l.seq));
        l.waiters.push(Waiter {
            peer: from,
            pushed: target,
            seq: l.seq,
        });
        Ok(())
    }

    /// The newest of `versions` that this leader has taken (committed, or in the tip) and
    /// holds, with when: the MAJOR that included it, or `u64::MAX` while it waits in the tip.
    fn newest_taken(
        &self,
        versions: &[VersionId],
    ) -> Result<Option<(VersionId, u64)>, EngineError> {
        let Some(l) = self.leader.as_ref() else {
            return Ok(None);
        };
        for v in versions.iter().rev() {
            let in_tip = l.tip.version == *v || l.merged.iter().any(|(m, _)| m == v);
            let at = match self.p.included.get(v) {
                Some(&at) => Some(at),
                None => in_tip.then_some(u64::MAX),
            };
            if let Some(at) = at
                && self.store.has_manifest(v)?
            {
                return Ok(Some((*v, at)));
            }
        }
        Ok(None)
    }

    /// Cuts merged bytes into chunks and stores them.
    fn cut_and_store(&self, bytes: &[u8]) -> Result<FileManifest, chorus_merge::tree::LoadError> {
        let lens = (self.cfg.cutter)(bytes);
        let total: u64 = lens.iter().map(|&l| u64::from(l)).sum();
        if total != bytes.len() as u64 || lens.contains(&0) {
            return Err(chorus_merge::tree::LoadError(
                format!(
                    "the chunker cut {} bytes into pieces adding up to {total}",
                    bytes.len()
                )
                .into(),
            ));
        }
        let mut chunks = Vec::with_capacity(lens.len());
        let mut pos = 0usize;
        for len in lens {
            let piece = &bytes[pos..pos + len as usize];
            pos += len as usize;
            let id = chorus_chunking::ChunkId::of(piece);
            self.chunks
                .put(&id, piece)
                .map_err(|e| chorus_merge::tree::LoadError(Box::new(e)))?;
            chunks.push(ChunkRef { id, len });
        }
        Ok(FileManifest { chunks })
    }

    /// Answers a pusher whose version the head includes.
    fn answer(&mut self, to: NodeId, pushed: VersionId) -> Result<(), EngineError> {
        let head = self.p.head;
        if to == self.me {
            return self.on_outcome(pushed, head.version, head.number);
        }
        if head.version == pushed {
            self.send(
                to,
                Body::Accepted(proto::Accepted {
                    version: Some(pushed.to_proto()),
                    number: Some(head.number.to_proto()),
                }),
            );
            Ok(())
        } else {
            self.send_merged(to, pushed, head.version, head.number, false)
        }
    }

    pub(super) fn on_stored(&mut self, from: NodeId, version: VersionId) {
        self.p.last_shared.insert(from, version);
        if let Some(l) = self.leader.as_mut() {
            if l.offers.get(&from).is_some_and(|o| o.target == version) {
                l.offers.remove(&from);
            }
            if let Some(c) = l.candidate.as_mut()
                && c.version == version
            {
                c.stored.insert(from);
            }
        }
    }

    pub(super) fn on_propose_failed(&mut self, version: VersionId) {
        if let Some(c) = self.leader.as_mut().and_then(|l| l.candidate.as_mut())
            && c.version == version
        {
            c.proposed_at = None;
        }
    }

    pub(super) fn leader_on_committed(&mut self, hd: &Header) -> Result<(), EngineError> {
        let head = self.p.head;
        let Some(l) = self.leader.as_mut() else {
            return Ok(());
        };
        if !l.confirmed {
            return Ok(());
        }
        match l.candidate.take() {
            Some(c) if c.version == hd.version => {
                if l.tip.version == hd.version {
                    // The tip is now an accepted version: merges against it use its number.
                    l.tip.number = hd.number;
                }
                let (done, waiting): (Vec<Waiter>, Vec<Waiter>) =
                    l.waiters.iter().partition(|w| w.seq <= c.seq);
                l.waiters = waiting;
                l.merged.retain(|(_, s)| *s > c.seq);
                l.offers.clear();
                for v in &c.stored {
                    self.p.last_shared.insert(*v, hd.version);
                }
                for w in done {
                    self.answer(w.peer, w.pushed)?;
                }
            }
            other => {
                // A header this leader did not propose: start over from it. Pushers retry.
                l.candidate = other;
                if l.merged.is_empty() && l.candidate.is_none() {
                    l.tip = head;
                } else {
                    tracing::info!(number = %hd.number, "a header committed under this leader that it did not propose; starting over from it");
                    l.reset(head);
                }
            }
        }
        Ok(())
    }

    /// Picks the candidate, offers it, proposes it once a majority holds it, and catches up
    /// members that are behind.
    pub(super) fn leader_drive(&mut self) -> Result<(), EngineError> {
        let confirmed = self.leader.as_ref().is_some_and(|l| l.confirmed);
        if !confirmed {
            return Ok(());
        }
        if !self.leader_ready()? {
            let head = self.p.head.version;
            self.want(head);
            return Ok(());
        }
        let head = self.p.head;
        let me = self.me;
        let Some(l) = self.leader.as_mut() else {
            return Ok(());
        };
        // A tip that merged pushes is committed even when its tree equals the head (the
        // merge kept ours everywhere): the header records the pushes and what they displaced.
        let need_new = match &l.candidate {
            None => l.tip.version != head.version || !l.merged.is_empty(),
            Some(c) => c.proposed_at.is_none() && (c.version != l.tip.version || c.seq != l.seq),
        };
        if need_new {
            let mut redo = l.candidate.take().map(|c| c.redo).unwrap_or_default();
            redo.append(&mut l.redo);
            let mut parents = vec![head.version];
            for (v, _) in &l.merged {
                if !parents.contains(v) && *v != l.tip.version {
                    parents.push(*v);
                }
            }
            parents.truncate(MAX_PARENTS);
            l.candidate = Some(Candidate {
                version: l.tip.version,
                seq: l.seq,
                parents,
                origin: l.tip_origin,
                redo,
                stored: BTreeSet::from([me]),
                proposed_at: None,
            });
        }
        if need_new && let Some(c) = l.candidate.as_mut() {
            // Members known to hold it need no offer.
            for (m, v) in &self.p.last_shared {
                if *v == c.version {
                    c.stored.insert(*m);
                }
            }
        }
        let target = match &l.candidate {
            Some(c) => c.version,
            None => head.version,
        };
        // Offers: the candidate to everyone who lacks it; else the head to whoever is behind.
        let others: Vec<NodeId> = self.cluster.others(me).collect();
        let mut to_offer = Vec::new();
        let Some(l) = self.leader.as_mut() else {
            return Ok(());
        };
        for m in others {
            let has = match &l.candidate {
                Some(c) => c.stored.contains(&m),
                // Nothing accepted yet: nothing to catch up on.
                None if head.number.major == 0 => true,
                None => self.p.last_shared.get(&m) == Some(&target),
            };
            if has {
                continue;
            }
            let due = match l.offers.get(&m) {
                Some(o) if o.target == target => {
                    let wait = self
                        .cfg
                        .offer_retry_ms
                        .saturating_mul(1 << o.attempts.min(MAX_BACKOFF_SHIFT));
                    self.now.saturating_sub(o.at) >= wait
                }
                _ => true,
            };
            if due {
                let attempts = l
                    .offers
                    .get(&m)
                    .filter(|o| o.target == target)
                    .map_or(0, |o| o.attempts + 1);
                l.offers.insert(
                    m,
                    OfferSent {
                        target,
                        at: self.now,
                        attempts,
                    },
                );
                to_offer.push((m, attempts > 0));
            }
        }
        // Propose once a majority of voters hold the candidate.
        let voters = &self.cluster.voters;
        let mut proposal = None;
        if let Some(c) = l.candidate.as_mut() {
            let holders = c.stored.iter().filter(|v| voters.contains(v)).count();
            let due = match c.proposed_at {
                None => true,
                Some(at) => self.now.saturating_sub(at) >= self.cfg.propose_retry_ms,
            };
            if !voters.is_empty() && holders * 2 > voters.len() && due {
                c.proposed_at = Some(self.now);
                proposal = Some(proposal_of(c, self.now));
            }
        }
        for (m, lean) in to_offer {
            let base = match self.p.last_shared.get(&m) {
                Some(v) if self.store.has_manifest(v)? => *v,
                _ => TreeManifest::empty().version_id(),
            };
            self.send_offer(m, base, target, lean)?;
        }
        if let Some(p) = proposal {
            self.out.push(Action::Propose(p));
        }
        Ok(())
    }
}

/// Displaced hunks above this size travel in the header as the loser's whole file (its chunk
/// ids), not as text: headers stay far below their bound, and the chunks are kept by history
/// retention as long as the redo entry exists.
const MAX_INLINE_HUNK: usize = 2 << 10;

/// A redo entry small enough for a header: a large displaced hunk becomes the loser's whole
/// file by manifest. `theirs_number` tells which side lost.
fn compact(
    e: &RedoEntry,
    theirs_number: VersionNumber,
    ours: &TreeManifest,
    theirs: &TreeManifest,
) -> RedoEntry {
    let Displaced::Hunk(h) = &e.what else {
        return e.clone();
    };
    if h.displaced.0.len() + h.before.0.len() + h.after.0.len() <= MAX_INLINE_HUNK {
        return e.clone();
    }
    let loser = if e.displaced_from == theirs_number {
        theirs
    } else {
        ours
    };
    match e.path.as_ref().and_then(|p| loser.get(p)) {
        Some(Entry::File { mode, manifest }) => RedoEntry {
            path: e.path.clone(),
            displaced_by: e.displaced_by,
            displaced_from: e.displaced_from,
            what: Displaced::Whole {
                content: WholeContent::File {
                    mode: *mode,
                    manifest: manifest.clone(),
                },
                kept: None,
            },
        },
        _ => e.clone(),
    }
}

/// The chunk store as a merge's content loader.
pub struct Loader<'a>(pub &'a dyn ChunkStore);

impl ContentLoader for Loader<'_> {
    fn load(&self, manifest: &FileManifest) -> Result<Vec<u8>, chorus_merge::tree::LoadError> {
        self.0.load(manifest)
    }
}

/// The header proposal of a candidate. Redo entries beyond the header bound stay out of the
/// header (logged): the displaced content is still in history, in the pushed version.
fn proposal_of(c: &Candidate, now: u64) -> Proposal {
    let mut redo = encode_redo(&c.redo);
    let mut kept = c.redo.len();
    while redo.len() > MAX_REDO_BYTES && kept > 0 {
        kept /= 2;
        redo = encode_redo(&c.redo[..kept]);
    }
    if kept < c.redo.len() {
        tracing::warn!(
            dropped = c.redo.len() - kept,
            "redo entries exceed the header bound; the displaced changes remain in the pushed versions' history"
        );
    }
    Proposal {
        version: c.version,
        parents: c.parents.clone(),
        origin: c.origin,
        created_at_ms: now,
        redo,
    }
}

impl Engine {
    /// Versions the leader half still needs (its tip and candidate).
    pub(super) fn leader_versions(&self) -> Vec<VersionId> {
        let Some(l) = &self.leader else {
            return Vec::new();
        };
        let mut out = vec![l.tip.version];
        out.extend(l.candidate.as_ref().map(|c| c.version));
        out.extend(l.merged.iter().map(|(v, _)| *v));
        out
    }
}
