//! The engine's inbox: a message from a peer, parsed once into [`Message`], routed to the
//! half that owns what it concerns (pushes to the leader, answers and offers to the follower,
//! chunk traffic to the transfers), after the checks that decide whether it counts at all
//! (from a member; an answer only from the leader, with a number the chain can have reached).

use chorus_chunking::{TreeManifest, VersionId, VersionNumber};
use chorus_proto::header::NodeId;
use chorus_proto::message::Message;

use super::{Engine, EngineError, MAX_AHEAD};
use crate::ctx::Ctx;
use crate::leader::Take;
use crate::transfers::{Incoming, Received};

impl Engine {
    pub(super) fn on_message(&mut self, from: NodeId, message: Message) -> Result<(), EngineError> {
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
            // Each answer encodes a delta again: within the peer's budget only (it asks again).
            Message::NeedBase { .. } if !self.budgets.spend(from, self.now) => Ok(()),
            Message::NeedBase { base, target } => self.transfers.on_need_base(
                &mut ctx!(self),
                &mut self.last_shared,
                from,
                base,
                target,
            ),
            Message::NeedChunks { target, ids, runs } => {
                self.transfers
                    .on_need_chunks(&mut ctx!(self), from, target, &ids, &runs)
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
                tracing::info!(from, ?reason, detail = %chorus_proto::shown(&detail), "a peer refused a message");
                Ok(())
            }
            Message::Offer { delta, extra } => self.receive(from, Incoming::Offer { extra }, delta),
            Message::Stored { version } => {
                // The offer arrived: a later Want of it (the member lost it since) is answered.
                self.transfers.stored_at(from, version);
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
                tracing::debug!(to = from, version = ?rx.target, "stored; the leader is told");
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
        // An offer of it sent lately is still on its way or being read (a joiner learns the
        // head before the offer of it arrives, and asks): not the whole delta again. Once that
        // offer is taken to be lost, a Want has it sent again.
        if self
            .transfers
            .offered_lately(from, want, self.now, self.cfg.want_retry_ms / 2)
        {
            return Ok(());
        }
        // The same Want at most once per half retry period, and within the peer's budget.
        if !self
            .budgets
            .want(from, want, self.now, self.cfg.want_retry_ms / 2)
        {
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
            .send_offer(&mut ctx!(self), from, base, want, false, !accepted)?;
        Ok(())
    }
}
