//! What a test of the [`World`] does by hand, for protocol tests that go answer by answer: let
//! everything in flight settle without time passing, take the next message and check where it
//! goes, commit to some nodes only, make a node deaf (it sends, it hears nothing), let one
//! node's timer fire alone, and speak for a member that has no replica (a hostile one), keeping
//! what the others send it.

use chorus_proto::header::{AcceptedHeader, NodeId};
use chorus_proto::message::Message;

use super::world::{Envelope, Log, World};
use crate::event::Event;

impl<L: Log> World<L> {
    /// Delivers and commits until nothing is in flight, without letting time pass: no retry
    /// fires, so only what the protocol does of itself, answer for answer, happens. Returns the
    /// messages delivered and commits made; fails after a million (a protocol that never
    /// quiets down).
    pub fn quiesce(&mut self) -> usize {
        let mut steps = 0;
        loop {
            assert!(steps < 1_000_000, "still busy after {steps} steps");
            // A message first; a commit only once none is in flight.
            if !self.deliver_one() && self.commit() == 0 {
                return steps;
            }
            steps += 1;
        }
    }

    /// Takes the oldest message in flight out of the network; it must go from `from` to `to`
    /// (the test fails naming what is there otherwise).
    pub fn take(&mut self, from: NodeId, to: NodeId) -> Message {
        let Some(e) = self.net.pop_front() else {
            panic!("expected a message {from} -> {to}, none is in flight");
        };
        assert_eq!(
            (e.from, e.to),
            (from, to),
            "unexpected {} {} -> {}",
            e.message.name(),
            e.from,
            e.to
        );
        e.message
    }

    /// Commits what was proposed, but only the nodes `ids` hear of it now; the headers are
    /// returned, for the test to feed the others when it wants
    /// (`feed(id, Event::Committed(..))`).
    pub fn commit_to(&mut self, ids: &[NodeId]) -> Vec<AcceptedHeader> {
        let headers = self.log.commit(&self.cluster.ranks);
        if !headers.is_empty() {
            for &id in ids {
                self.feed(id, Event::Committed(headers.clone()));
            }
        }
        headers
    }

    /// Node `id` goes deaf: every message to it (in flight or sent later) is lost and it hears
    /// no commit, while what it sends still arrives, as when a link drops one direction or the
    /// node restarts and misses its answers.
    pub fn deafen(&mut self, id: NodeId) {
        self.deaf.insert(id);
        self.net.retain(|e| e.to != id);
    }

    /// Node `id` hears again. The commits it missed reach it with the next commit, before it, as
    /// Raft's next append brings a lagging follower's missing entries.
    pub fn hear(&mut self, id: NodeId) {
        self.deaf.remove(&id);
    }

    /// Node `id`'s own timer fires `ms` from now: its clock runs `ms` further ahead of the
    /// world's from now on (the other nodes' clocks do not move), and it gets a tick.
    pub fn tick_one(&mut self, id: NodeId, ms: u64) {
        *self.skew.entry(id).or_default() += ms;
        let now = self.clock(id);
        let out = self.node_mut(id).tick(now).expect("the tick is handled");
        self.out(id, out);
    }

    /// Member `id` keeps its place in the cluster (voter, rank) but loses its replica: the test
    /// speaks for it ([`deliver`](World::deliver) an envelope from it), and what the others send
    /// it waits in its mailbox ([`take_mail`](World::take_mail)) instead of being delivered.
    pub fn puppet(&mut self, id: NodeId) {
        self.nodes.remove(&id);
        self.puppets.entry(id).or_default();
    }

    /// What puppet `id` was sent and not taken yet, oldest first.
    pub fn mail(&self, id: NodeId) -> &[Envelope] {
        &self.puppets[&id]
    }

    /// Takes what puppet `id` was sent, oldest first.
    pub fn take_mail(&mut self, id: NodeId) -> Vec<Envelope> {
        std::mem::take(self.puppets.get_mut(&id).expect("a puppet of the world"))
    }
}
