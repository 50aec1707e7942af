//! The leader's candidate: picking the tip to commit next, offering it to every member that
//! lacks it, proposing its header once a majority of voters hold it, and catching up members
//! that are behind the head.

use std::collections::{BTreeMap, BTreeSet};

use chorus_chunking::{TreeManifest, VersionId};
use chorus_proto::header::{MAX_PARENTS, MAX_REDO_BYTES, NodeId, Proposal};

use super::{Candidate, Leader, OfferSent, Owed, entries};
use crate::ctx::Ctx;
use crate::event::Action;
use crate::header::encode_redo;
use crate::step::{EngineError, Step};
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
        // The stored trees of the candidate's redo entries go to everyone too, against nothing.
        let mut to_offer: Vec<(NodeId, VersionId, bool, bool)> = Vec::new();
        // The offers still wanted: the others are forgotten below.
        let mut live: Vec<(NodeId, VersionId)> = Vec::new();
        for m in ctx.cluster.others(ctx.me).collect::<Vec<_>>() {
            let has = match &self.candidate {
                Some(c) => c.stored.contains(&m),
                // Nothing accepted yet: nothing to catch up on.
                None if head.number.major == 0 => true,
                None => last_shared.get(&m) == Some(&target),
            };
            let mut wanted: Vec<(VersionId, bool)> = Vec::new();
            if !has {
                wanted.push((target, false));
            }
            if let Some(c) = &self.candidate {
                for (e, holders) in &c.extras {
                    if !holders.contains(&m) {
                        wanted.push((*e, true));
                    }
                }
            }
            for (v, extra) in wanted {
                live.push((m, v));
                let previous = self.offers.get(&(m, v)).copied();
                let due = previous.is_none_or(|o| ctx.now >= o.at.saturating_add(backoff(ctx, &o)));
                // A member fetching the chunks of the last offer has it: no retry while it asks.
                if let Some(o) = previous
                    && due
                    && transfers.fetching_from_here(m, v, ctx.now, ctx.cfg.offer_retry_ms)
                {
                    // Looked at again one backoff from now (not at every tick meanwhile).
                    self.offers.insert((m, v), OfferSent { at: ctx.now, ..o });
                    continue;
                }
                if due {
                    let attempts = previous.map_or(0, |o| o.attempts + 1);
                    self.offers.insert(
                        (m, v),
                        OfferSent {
                            at: ctx.now,
                            attempts,
                            bytes: 0,
                        },
                    );
                    to_offer.push((m, v, attempts > 0, extra));
                }
            }
        }
        // An offer no longer wanted (a member gone, a version superseded or stored) would keep
        // its retry time in `deadline`, past and never renewed: the node would tick without
        // pause.
        self.offers.retain(|k, _| live.contains(k));
        // Propose once a majority of voters hold the candidate and each of its stored trees.
        let voters = &ctx.cluster.voters;
        let majority = |holders: &BTreeSet<NodeId>| {
            !voters.is_empty()
                && holders.iter().filter(|v| voters.contains(v)).count() * 2 > voters.len()
        };
        let mut proposal = None;
        let mut on = 0;
        if let Some(c) = self.candidate.as_mut() {
            on = c.on;
            let due = c
                .proposed_at
                .is_none_or(|at| ctx.now.saturating_sub(at) >= ctx.cfg.propose_retry_ms);
            if due && majority(&c.stored) && c.extras.values().all(majority) {
                c.proposed_at = Some(ctx.now);
                let (p, rest) = proposal_of(c, ctx.now);
                // Entries beyond one header's bound wait for the next header (never dropped),
                // and so do the stored trees they name.
                for t in rest.iter().flat_map(|o| o.entry.stored_trees()) {
                    if !self.extras.contains(&t) {
                        self.extras.push(t);
                    }
                }
                self.redo.splice(0..0, rest);
                proposal = Some(p);
            }
        }
        for (m, v, lean, extra) in to_offer {
            let base = match last_shared.get(&m) {
                Some(b) if !extra && ctx.holds(b)? => *b,
                _ => TreeManifest::empty().version_id(),
            };
            let bytes = transfers.send_offer(ctx, m, base, v, lean && !extra, extra)?;
            if let Some(o) = self.offers.get_mut(&(m, v)) {
                o.bytes = bytes;
            }
        }
        if let Some(p) = proposal {
            tracing::debug!(version = ?p.version, "proposed");
            ctx.out.push(Action::Propose {
                proposal: p,
                head: on,
            });
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
            None => {
                self.tip.version != head.version || !self.merged.is_empty() || !self.redo.is_empty()
            }
            // A candidate that only carries redo entries (the head's tree, naming the head
            // alone) is proposed again as it is: renewed to a new tree, it would pass for a
            // header built on the head after it commits late (the tree is the same), and
            // carry its entries twice.
            Some(c) if c.version == head.version && c.parents == [head.version] => false,
            Some(c) => {
                c.proposed_at.is_none() && (c.version != self.tip.version || c.seq != self.seq)
            }
        };
        if !need_new {
            return;
        }
        let (mut redo, mut extras) = self
            .candidate
            .take()
            .map(|c| (c.redo, c.extras.into_keys().collect::<Vec<_>>()))
            .unwrap_or_default();
        redo.append(&mut self.redo);
        extras.append(&mut self.extras);
        let extras = extras
            .into_iter()
            .map(|e| (e, BTreeSet::from([me])))
            .collect();
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
            on: head.number.major,
            origin: self.tip_origin,
            redo,
            stored,
            extras,
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
/// 2^[`MAX_BACKOFF_SHIFT`] times, plus the time its delta is given to arrive.
fn backoff_ms(retry_ms: u64, o: &OfferSent) -> u64 {
    retry_ms
        .saturating_mul(1 << o.attempts.min(MAX_BACKOFF_SHIFT))
        .saturating_add(crate::transfers::transit_ms(o.bytes))
}

/// The header proposal of a candidate, with as many of its redo entries as fit the header's
/// bound; the rest are returned, for the next header.
fn proposal_of(c: &mut Candidate, now: u64) -> (Proposal, Vec<Owed>) {
    // An entry no header can hold would keep every later header waiting: merges make their
    // entries small (large sides by reference), so only a push's own claim can be one.
    c.redo.retain(|o| {
        let fits = encode_redo(std::slice::from_ref(&o.entry)).len() <= MAX_REDO_BYTES;
        if !fits {
            tracing::error!(path = ?o.entry.path, "a redo entry larger than a header holds is left out");
        }
        fits
    });
    let all = entries(&c.redo);
    let mut kept = all.len();
    let mut redo = encode_redo(&all);
    while redo.len() > MAX_REDO_BYTES && kept > 0 {
        kept /= 2;
        redo = encode_redo(&all[..kept]);
    }
    let rest = c.redo.split_off(kept);
    if !rest.is_empty() {
        tracing::info!(
            later = rest.len(),
            "more displaced changes than one header holds; the rest go with the next"
        );
    }
    (
        Proposal {
            version: c.version,
            parents: c.parents.clone(),
            origin: c.origin,
            created_at_ms: now,
            redo,
        },
        rest,
    )
}
