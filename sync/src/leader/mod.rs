//! [`Leader`]: the half a node runs while it leads. Every push (the leader's own local
//! versions too) is rebuilt from its delta, then fast-forwarded or merged three-way into the
//! *tip* (the newest version the leader means to commit), where the higher version number wins
//! a conflict. A snapshot of the tip, the *candidate* (`drive.rs`), is offered to every member
//! as a delta against what it last shared; once a majority of voters, the leader included,
//! hold it durably (Stored), its header is proposed through Raft. When the header commits,
//! each pusher whose version it includes is answered. One candidate is in flight at a time;
//! pushes that arrive meanwhile are merged into the tip and go with the next one. A member that
//! is behind gets the head offered again (catch-up), with a backoff.

mod drive;
mod merge;

use std::collections::{BTreeMap, BTreeSet};

use chorus_chunking::{TreeManifest, VersionId, VersionNumber};
use chorus_merge::RedoEntry;
use chorus_proto::RejectReason;
use chorus_proto::header::{AcceptedHeader, MAX_PARENTS, NodeId};
use chorus_proto::message::Message;

pub use self::merge::Loader;
use crate::ctx::Ctx;
use crate::step::{EngineError, Step};
use crate::store::AcceptedRef;

/// Most redo entries one push may add on purpose (a redo displaces few hunks).
const MAX_DISPLACED_PER_PUSH: usize = 64;

/// A pusher waiting for the commit that includes its version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Waiter {
    peer: NodeId,
    pushed: VersionId,
    /// The tip sequence number at which the pushed version was included.
    seq: u64,
}

/// A redo entry waiting for a header, and the pushed version whose merge displaced it: the
/// entry is owed to the log as long as no header carries it, once a header that includes
/// that push has committed (its pusher is answered then, and will not push it again).
#[derive(Debug, Clone)]
struct Owed {
    push: VersionId,
    entry: RedoEntry,
    /// A header that includes `push` has committed.
    committed: bool,
}

impl Owed {
    fn new(push: VersionId, entry: RedoEntry) -> Self {
        Owed {
            push,
            entry,
            committed: false,
        }
    }
}

/// The entries of `owed`, as a header carries them.
fn entries(owed: &[Owed]) -> Vec<RedoEntry> {
    owed.iter().map(|o| o.entry.clone()).collect()
}

/// The numbers of the changes in the tip: the head it grew from, and each push since.
#[derive(Debug, Clone)]
struct TipNumbers {
    head: VersionNumber,
    taken: Vec<(NodeId, VersionNumber)>,
}

impl TipNumbers {
    fn at(head: VersionNumber) -> Self {
        TipNumbers {
            head,
            taken: Vec::new(),
        }
    }

    /// The number a merge gives the tip's side against a push from `from` numbered `number`.
    /// The tip's own number unless the two tie: a tie means the tip's number is that pusher's
    /// (a number's MINOR is a node's rank), and the push builds on that earlier push of its
    /// own, so the tip's side of a conflict is someone else's change: the highest number of
    /// the others (the head's, or another node's push). A conflict's redo entry then names
    /// the node whose change it displaced.
    fn against(&self, from: NodeId, number: VersionNumber, tip: VersionNumber) -> VersionNumber {
        if number != tip {
            return tip;
        }
        self.taken
            .iter()
            .filter(|(f, _)| *f != from)
            .map(|(_, n)| *n)
            .chain((self.head != number).then_some(self.head))
            .filter(|n| *n < number)
            .max()
            .unwrap_or(tip)
    }
}

/// The tip snapshot being replicated and proposed.
#[derive(Debug, Clone)]
struct Candidate {
    version: VersionId,
    seq: u64,
    parents: Vec<VersionId>,
    /// The MAJOR of the head it was built on (0: none yet): the log refuses it on any other.
    on: u64,
    origin: NodeId,
    redo: Vec<Owed>,
    /// Members that hold it durably (the leader from the start).
    stored: BTreeSet<NodeId>,
    /// Trees holding displaced files its redo entries name, and who holds each: a
    /// majority must, as for the candidate, before the header is proposed.
    extras: BTreeMap<VersionId, BTreeSet<NodeId>>,
    proposed_at: Option<u64>,
}

impl Candidate {
    /// True when `hd` is this candidate as proposed: the same tree, built on the same head,
    /// taking in the same pushes and carrying the same redo entries. A header with the same
    /// tree alone may be an earlier proposal that a timeout reported failed while Raft carried
    /// it on: answering this candidate's pushers on it would drop what their pushes
    /// displaced (their redo entries travel only in this candidate's header).
    fn proposed_as(&self, hd: &AcceptedHeader) -> bool {
        self.version == hd.version
            && self.parents == hd.parents
            && crate::header::encode_redo(&entries(&self.redo)) == hd.redo
    }
}

/// An offer in flight to one member (keyed by member and version).
#[derive(Debug, Clone, Copy)]
struct OfferSent {
    at: u64,
    attempts: u32,
    /// The delta's size: its retry also waits for it to have arrived.
    bytes: u64,
}

/// A push to take into the tip: the pushed version `target` (its manifest `tree`), built on
/// `base` (whose manifest came with the push, `sent_base`, when this node lacked it), after the
/// pusher's earlier pushes `before`.
pub(crate) struct Take {
    pub from: NodeId,
    pub base: VersionId,
    pub sent_base: Option<TreeManifest>,
    pub target: VersionId,
    pub number: VersionNumber,
    pub tree: std::sync::Arc<TreeManifest>,
    pub before: Vec<VersionId>,
    /// What the push displaces on purpose (a redo), for the redo stack.
    pub displaced: Vec<RedoEntry>,
}

/// The leader's volatile state; it starts over at every leadership.
#[derive(Debug)]
pub(crate) struct Leader {
    /// Set once the driver confirmed the leadership (all earlier headers applied).
    confirmed: bool,
    tip: AcceptedRef,
    tip_origin: NodeId,
    /// Pushed versions merged into the tip since the head, with their tip sequence number.
    merged: Vec<(VersionId, u64)>,
    /// Who pushed what number into the tip since it last was a committed head, and that
    /// head's number: what a conflict names as the tip's side when a push ties with the tip.
    numbers: TipNumbers,
    /// What the merges since the last candidate displaced, and the entries of a proposed
    /// candidate beyond one header's bound (they go with the next header).
    redo: Vec<Owed>,
    /// Stored trees those entries name.
    extras: Vec<VersionId>,
    seq: u64,
    waiters: Vec<Waiter>,
    candidate: Option<Candidate>,
    offers: BTreeMap<(NodeId, VersionId), OfferSent>,
}

impl Leader {
    pub fn new(me: NodeId, head: AcceptedRef) -> Self {
        Leader {
            confirmed: false,
            tip: head,
            tip_origin: me,
            merged: Vec::new(),
            numbers: TipNumbers::at(head.number),
            redo: Vec::new(),
            extras: Vec::new(),
            seq: 0,
            waiters: Vec::new(),
            candidate: None,
            offers: BTreeMap::new(),
        }
    }

    /// Starts over from `head`: nothing merged, nothing waiting (pushers retry).
    fn reset(&mut self, head: AcceptedRef) {
        self.tip = head;
        self.numbers = TipNumbers::at(head.number);
        self.merged.clear();
        self.redo.clear();
        self.extras.clear();
        self.waiters.clear();
        self.candidate = None;
        self.offers.clear();
    }

    pub fn is_confirmed(&self) -> bool {
        self.confirmed
    }

    /// The driver confirmed the leadership: start from `head`. True the first time.
    pub fn confirm(&mut self, head: AcceptedRef) -> bool {
        if self.confirmed {
            return false;
        }
        self.confirmed = true;
        self.reset(head);
        true
    }

    /// True when confirmed and holding the tip's content.
    pub fn ready(&self, ctx: &Ctx<'_>) -> Result<bool, EngineError> {
        Ok(self.confirmed && ctx.holds(&self.tip.version)?)
    }

    /// Versions the leader half still needs (its tip, candidate, merged pushes and the trees
    /// its redo entries name).
    pub fn versions(&self) -> Vec<VersionId> {
        let mut out = vec![self.tip.version];
        out.extend(self.candidate.as_ref().map(|c| c.version));
        out.extend(self.merged.iter().map(|(v, _)| *v));
        out.extend(self.extras.iter().copied());
        if let Some(c) = &self.candidate {
            out.extend(c.extras.keys().copied());
        }
        out
    }

    /// True for a stored tree of the candidate's redo entries (not a version members share).
    pub fn is_extra(&self, v: &VersionId) -> bool {
        self.extras.contains(v)
            || self
                .candidate
                .as_ref()
                .is_some_and(|c| c.extras.contains_key(v))
    }

    /// True for the candidate being replicated.
    pub fn is_candidate(&self, v: &VersionId) -> bool {
        self.candidate.as_ref().is_some_and(|c| c.version == *v)
    }

    /// Takes a pushed version into the tip. `included` maps pushed versions to the MAJOR of the
    /// header that included them.
    pub fn take(
        &mut self,
        ctx: &mut Ctx<'_>,
        included: &BTreeMap<VersionId, u64>,
        t: Take,
    ) -> Result<Vec<Step>, EngineError> {
        // The newest of the pusher's earlier pushes this leader has taken is the base to merge
        // on: the answer to it was lost, and on the older base its changes would meet
        // themselves as rivals (duplicated text, or a whole file displaced by its own past).
        let (base, sent_base, base_at) = match self.newest_taken(ctx, included, &t.before)? {
            Some((v, at)) => (v, None, Some(at)),
            None => (t.base, t.sent_base, included.get(&t.base).copied()),
        };
        // Already committed: answer at once against the head. Unless the push was built on a
        // version accepted at or after that commit: then it is not a retry but a change back
        // to an earlier tree (an undo, a restore), and it is taken like any other.
        if let Some(&at) = included.get(&t.target)
            && base_at.is_none_or(|b| b < at)
        {
            return Ok(vec![Step::Answer {
                to: t.from,
                pushed: t.target,
            }]);
        }
        // Already in the tip: wait for its commit.
        let in_tip = self
            .merged
            .iter()
            .find(|(v, _)| *v == t.target)
            .map(|(_, s)| *s)
            .or((self.tip.version == t.target).then_some(self.seq));
        if let Some(seq) = in_tip {
            let w = Waiter {
                peer: t.from,
                pushed: t.target,
                seq,
            };
            if !self.waiters.contains(&w) {
                self.waiters.push(w);
            }
            return Ok(Vec::new());
        }
        if self.merged.len() >= MAX_PARENTS - 1 {
            if t.from != ctx.me {
                ctx.send(
                    t.from,
                    Message::Rejected {
                        reason: RejectReason::Busy,
                        detail: "too many changes wait for the next commit; retry shortly".into(),
                    },
                );
            }
            return Ok(Vec::new());
        }
        let tip = self.tip;
        tracing::debug!(me = ctx.me, from = t.from, target = ?t.target, ?base, tip = ?tip.version, "take");
        // Trees stored for redo entries (the merge's, the push's own): this leader's once
        // nothing below failed.
        let mut extras = Vec::new();
        let (new_tip, redo) = if base == tip.version {
            (
                AcceptedRef {
                    version: t.target,
                    number: t.number,
                },
                Vec::new(),
            )
        } else {
            let base_tree = match sent_base {
                Some(tree) => std::sync::Arc::new(tree),
                None => ctx.tree(base)?,
            };
            let ours = ctx.tree(tip.version)?;
            let ours_number = self.numbers.against(t.from, t.number, tip.number);
            let m = merge::merge(ctx, &base_tree, &ours, ours_number, &t.tree, t.number)?;
            let id = ctx.store.put_and_keep(std::sync::Arc::new(m.tree))?;
            extras.extend(m.extras);
            (
                AcceptedRef {
                    version: id,
                    number: tip.number.max(t.number),
                },
                m.redo,
            )
        };
        // What the push displaces on purpose is numbered here: by the push's number, over
        // the tip's; the leader keeps only entries for paths the pushed tree holds.
        let mut displaced = Vec::new();
        for mut e in t.displaced {
            let Some(path) = e.path.as_ref() else {
                continue;
            };
            if t.tree.get(path).is_none() {
                continue;
            }
            // A stored tree it names must be here: the header waits for a majority to hold
            // each, and one nobody holds would hold every later header back.
            if e.stored_trees()
                .iter()
                .any(|tree| !ctx.holds(tree).unwrap_or(false))
            {
                tracing::info!(from = t.from, path = %path, "a pushed redo entry names a stored tree this leader lacks; left out");
                continue;
            }
            e.displaced_by = t.number;
            e.displaced_from = tip.number;
            // The file it displaced, as a merge's: by a stored tree every member receives.
            displaced.push(merge::store_sides(ctx, e, true, &mut extras)?);
            if displaced.len() == MAX_DISPLACED_PER_PUSH {
                break;
            }
        }
        if !extras.is_empty() {
            // What it stored counts as held here: durable first.
            ctx.chunks.sync()?;
        }
        // Nothing above changed this leader's state: an error leaves it as it was.
        for x in extras {
            if !self.extras.contains(&x) {
                self.extras.push(x);
            }
        }
        self.seq += 1;
        self.numbers.taken.push((t.from, t.number));
        self.redo.extend(
            displaced
                .into_iter()
                .map(|entry| Owed::new(t.target, entry)),
        );
        self.tip = new_tip;
        self.tip_origin = t.from;
        self.redo
            .extend(redo.into_iter().map(|entry| Owed::new(t.target, entry)));
        self.merged.push((t.target, self.seq));
        self.waiters.push(Waiter {
            peer: t.from,
            pushed: t.target,
            seq: self.seq,
        });
        Ok(Vec::new())
    }

    /// The newest of `versions` that this leader has taken (committed, or in the tip) and
    /// holds, with when: the MAJOR that included it, or `u64::MAX` while it waits in the tip.
    fn newest_taken(
        &self,
        ctx: &Ctx<'_>,
        included: &BTreeMap<VersionId, u64>,
        versions: &[VersionId],
    ) -> Result<Option<(VersionId, u64)>, EngineError> {
        for v in versions.iter().rev() {
            let in_tip = self.tip.version == *v || self.merged.iter().any(|(m, _)| m == v);
            let at = match included.get(v) {
                Some(&at) => Some(at),
                None => in_tip.then_some(u64::MAX),
            };
            if let Some(at) = at
                && ctx.holds(v)?
            {
                return Ok(Some((*v, at)));
            }
        }
        Ok(None)
    }

    /// `from` holds `version` durably.
    pub fn on_stored(&mut self, from: NodeId, version: VersionId) {
        tracing::debug!(from, ?version, "a member stored a version");
        self.offers.remove(&(from, version));
        if let Some(c) = self.candidate.as_mut() {
            if c.version == version {
                c.stored.insert(from);
            }
            if let Some(holders) = c.extras.get_mut(&version) {
                holders.insert(from);
            }
        }
    }

    /// The redo entries of the candidate and those waiting that are still owed after `hd`:
    /// displaced by pushes it (or an earlier header) includes, and not among those it carries.
    fn still_owed(&self, hd: &AcceptedHeader) -> Vec<Owed> {
        let mut carried = crate::header::decode_redo(&hd.redo).unwrap_or_default();
        let mut owed = Vec::new();
        for o in self
            .candidate
            .iter()
            .flat_map(|c| c.redo.iter())
            .chain(self.redo.iter())
        {
            if !(o.committed || hd.includes(&o.push)) {
                continue; // its push is not in yet: merged again, it is displaced again
            }
            // Each entry the header carries settles one owed entry (equal ones are distinct).
            match carried.iter().position(|e| *e == o.entry) {
                Some(i) => {
                    carried.swap_remove(i);
                }
                None => owed.push(Owed {
                    committed: true,
                    ..o.clone()
                }),
            }
        }
        owed
    }

    /// A proposal did not commit: it is proposed again.
    pub fn on_propose_failed(&mut self, version: VersionId) {
        if let Some(c) = self.candidate.as_mut()
            && c.version == version
        {
            c.proposed_at = None;
        }
    }

    /// A header committed (`head` is the head after it). Answers the pushers its candidate
    /// included; members that stored the candidate now share it (`last_shared`).
    pub fn on_committed(
        &mut self,
        hd: &AcceptedHeader,
        head: AcceptedRef,
        last_shared: &mut BTreeMap<NodeId, VersionId>,
    ) -> Vec<Step> {
        if !self.confirmed {
            return Vec::new();
        }
        match self.candidate.take() {
            Some(c) if c.proposed_as(hd) => {
                if self.tip.version == hd.version {
                    // The tip is now an accepted version: merges against it use its number.
                    self.tip.number = hd.number;
                    self.numbers = TipNumbers::at(hd.number);
                }
                let (done, waiting): (Vec<Waiter>, Vec<Waiter>) =
                    self.waiters.iter().partition(|w| w.seq <= c.seq);
                self.waiters = waiting;
                self.merged.retain(|(_, s)| *s > c.seq);
                // Offers of the version now accepted keep their times: a member still fetching
                // one is not sent the whole delta again because it was committed meanwhile
                // (a joiner, not yet a voter, got a 100k-file version twice).
                self.offers.retain(|(_, v), _| *v == hd.version);
                // What waits for the next header is owed whatever header commits next, once
                // its push is in.
                for o in &mut self.redo {
                    o.committed |= hd.includes(&o.push);
                }
                for v in &c.stored {
                    last_shared.insert(*v, hd.version);
                }
                done.into_iter()
                    .map(|w| Step::Answer {
                        to: w.peer,
                        pushed: w.pushed,
                    })
                    .collect()
            }
            other => {
                // A header this leader did not propose (or an earlier proposal of its own,
                // from before the candidate took in more pushes: the same tree, but not their
                // record or what they displaced): start over from it. Pushers retry; those the
                // header named are answered at once, the others merged again. What the pushes
                // it named displaced and it does not carry (entries beyond an earlier header's
                // bound) is still owed, and goes with the next header.
                self.candidate = other;
                if self.merged.is_empty() && self.candidate.is_none() {
                    self.tip = head;
                    self.numbers = TipNumbers::at(head.number);
                } else {
                    tracing::info!(number = %hd.number, "a header committed under this leader that it did not propose; starting over from it");
                    let owed = self.still_owed(hd);
                    self.reset(head);
                    for o in &owed {
                        for t in o.entry.stored_trees() {
                            if !self.extras.contains(&t) {
                                self.extras.push(t);
                            }
                        }
                    }
                    self.redo = owed;
                }
                Vec::new()
            }
        }
    }
}
