//! The leader's candidate: picking the tip to commit next, offering it to every member that
//! lacks it, proposing its header once a majority of voters hold it, and catching up members
//! that are behind the head.

use std::collections::{BTreeMap, BTreeSet};

use chorus_chunking::{TreeManifest, VersionId};
use chorus_proto::header::{MAX_PARENTS, MAX_REDO_BYTES, NodeId, Proposal};

use super::{Candidate, Leader, OfferSent};
use crate::ctx::Ctx;
use crate::engine::{EngineError, Step};
use crate::event::Action;
use crate::header::encode_redo;
use crate::store::AcceptedRef;
use crate::transfers::Transfers;

/// Longest wait between two catch-up offers to an unresponsive member, in offer retries.
const MAX_BACKOFF_SHIFT: u32 = 5;

impl Leader {
    /// Picks the candidate, offers it, proposes it once a majority holds it, and catches up
    /// members that are behind.
    pub fn drive(
        &mut self,
        ctx: &mut Ctx<'_>,
        transfers: &mut Transfers,
        head: AcceptedRef,
        last_shared: &BTreeMap<NodeId, VersionId>,
    ) -> Result<Vec<Step>, EngineError> {
        if !self.confirmed {
            return Ok(Vec::new());
        }
        if !self.ready(ctx)? {
            return Ok(vec![Step::Want(head.version)]);
        }
        self.renew_candidate(ctx.me, head, last_shared);
        let target = match &self.candidate {
            Some(c) => c.version,
            None => head.version,
        };
        // Offers: the candidate to everyone who lacks it; else the head to whoever is behind.
        let mut to_offer = Vec::new();
        for m in ctx.cluster.others(ctx.me).collect::<Vec<_>>() {
            let has = match &self.candidate {
                Some(c) => c.stored.contains(&m),
                // Nothing accepted yet: nothing to catch up on.
                None if head.number.major == 0 => true,
                None => last_shared.get(&m) == Some(&target),
            };
            if has {
                continue;
            }
            let previous = self.offers.get(&m).filter(|o| o.target == target).copied();
            let due = previous.is_none_or(|o| ctx.now >= o.at.saturating_add(backoff(ctx, &o)));
            if due {
                let attempts = previous.map_or(0, |o| o.attempts + 1);
                self.offers.insert(
                    m,
                    OfferSent {
                        target,
                        at: ctx.now,
                        attempts,
                    },
                );
                to_offer.push((m, attempts > 0));
            }
        }
        // Propose once a majority of voters hold the candidate.
        let voters = &ctx.cluster.voters;
        let mut proposal = None;
        if let Some(c) = self.candidate.as_mut() {
            let holders = c.stored.iter().filter(|v| voters.contains(v)).count();
            let due = c
                .proposed_at
                .is_none_or(|at| ctx.now.saturating_sub(at) >= ctx.cfg.propose_retry_ms);
            if !voters.is_empty() && holders * 2 > voters.len() && due {
                c.proposed_at = Some(ctx.now);
                proposal = Some(proposal_of(c, ctx.now));
            }
        }
        for (m, lean) in to_offer {
            let base = match last_shared.get(&m) {
                Some(v) if ctx.holds(v)? => *v,
                _ => TreeManifest::empty().version_id(),
            };
            transfers.send_offer(ctx, m, base, target, lean)?;
        }
        if let Some(p) = proposal {
            ctx.out.push(Action::Propose(p));
        }
        Ok(Vec::new())
    }

    /// Makes the tip the candidate when the last one is settled or superseded and not yet
    /// proposed. A tip that merged pushes is committed even when its tree equals the head (the
    /// merge kept ours everywhere): the header records the pushes and what they displaced.
    fn renew_candidate(
        &mut self,
        me: NodeId,
        head: AcceptedRef,
        last_shared: &BTreeMap<NodeId, VersionId>,
    ) {
        let need_new = match &self.candidate {
            None => self.tip.version != head.version || !self.merged.is_empty(),
            Some(c) => {
                c.proposed_at.is_none() && (c.version != self.tip.version || c.seq != self.seq)
            }
        };
        if !need_new {
            return;
        }
        let mut redo = self.candidate.take().map(|c| c.redo).unwrap_or_default();
        redo.append(&mut self.redo);
        let mut parents = vec![head.version];
        for (v, _) in &self.merged {
            if !parents.contains(v) && *v != self.tip.version {
                parents.push(*v);
            }
        }
        parents.truncate(MAX_PARENTS);
        let mut stored = BTreeSet::from([me]);
        // Members known to hold it need no offer.
        for (m, v) in last_shared {
            if *v == self.tip.version {
                stored.insert(*m);
            }
        }
        self.candidate = Some(Candidate {
            version: self.tip.version,
            seq: self.seq,
            parents,
            origin: self.tip_origin,
            redo,
            stored,
            proposed_at: None,
        });
    }

    /// When this half next needs a [`Tick`](crate::Event::Tick): an offer or a proposal to
    /// retry.
    pub fn deadline(&self, cfg: &crate::EngineConfig) -> Option<u64> {
        if !self.confirmed {
            return None;
        }
        let offers = self
            .offers
            .values()
            .map(|o| o.at.saturating_add(backoff_ms(cfg.offer_retry_ms, o)));
        let propose = self
            .candidate
            .as_ref()
            .and_then(|c| c.proposed_at)
            .map(|at| at.saturating_add(cfg.propose_retry_ms));
        offers.chain(propose).min()
    }
}

fn backoff(ctx: &Ctx<'_>, o: &OfferSent) -> u64 {
    backoff_ms(ctx.cfg.offer_retry_ms, o)
}

/// How long after an offer it is sent again: the retry interval, doubled per attempt up to
/// 2^[`MAX_BACKOFF_SHIFT`] times.
fn backoff_ms(retry_ms: u64, o: &OfferSent) -> u64 {
    retry_ms.saturating_mul(1 << o.attempts.min(MAX_BACKOFF_SHIFT))
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
