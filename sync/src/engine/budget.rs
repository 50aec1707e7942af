//! What one peer may make this node do: the requests whose answer encodes a delta (`Want`,
//! `NeedBase`) are the expensive ones, so each peer gets a budget for them, a token bucket
//! (kept as a theoretical arrival time, GCRA): a burst of [`BURST`] answers, then one every
//! [`EVERY_MS`]. An honest member asks a few times a minute; a member that varies what it
//! asks for cannot keep the node encoding for it. On top, the same `Want` is answered at most
//! once per half retry period, whatever the budget.

use std::collections::HashMap;

use chorus_chunking::VersionId;
use chorus_proto::header::NodeId;

/// Answers a peer may have at once.
pub(crate) const BURST: u64 = 32;
/// Then one answer per this many milliseconds (eight a second).
pub(crate) const EVERY_MS: u64 = 125;
/// Peers and Wants remembered, before those with nothing left to remember are dropped.
const KEPT: usize = 4096;

/// Every peer's budget, and the Wants answered lately.
#[derive(Default)]
pub(crate) struct Budgets {
    /// Per peer, when its bucket would be full again (GCRA's theoretical arrival time).
    full_at: HashMap<NodeId, u64>,
    /// When each (peer, version) Want was last answered.
    wants: HashMap<(NodeId, VersionId), u64>,
}

impl Budgets {
    /// Whether `from` may have one more expensive answer at `now`; spends it if so.
    pub(crate) fn spend(&mut self, from: NodeId, now: u64) -> bool {
        let full_at = self.full_at.get(&from).copied().unwrap_or(0).max(now);
        if full_at - now > (BURST - 1) * EVERY_MS {
            return false;
        }
        if self.full_at.len() >= KEPT && !self.full_at.contains_key(&from) {
            self.full_at.retain(|_, at| *at > now);
        }
        self.full_at.insert(from, full_at + EVERY_MS);
        true
    }

    /// Whether the Want of `want` by `from` may be answered at `now` (not answered within
    /// `gap`, and within the peer's budget); records the answer if so.
    pub(crate) fn want(&mut self, from: NodeId, want: VersionId, now: u64, gap: u64) -> bool {
        if self
            .wants
            .get(&(from, want))
            .is_some_and(|&at| now.saturating_sub(at) < gap)
        {
            return false;
        }
        if !self.spend(from, now) {
            return false;
        }
        if self.wants.len() >= KEPT {
            self.wants.retain(|_, at| now.saturating_sub(*at) < gap);
        }
        self.wants.insert((from, want), now);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_a_steady_rate_per_peer() {
        let mut b = Budgets::default();
        let now = 1_000_000;
        let burst = (0..100).filter(|_| b.spend(7, now)).count() as u64;
        assert_eq!(burst, BURST);
        assert!(b.spend(8, now), "another peer has its own budget");
        // A second later: eight more.
        let later = (0..100).filter(|_| b.spend(7, now + 1000)).count() as u64;
        assert_eq!(later, 1000 / EVERY_MS);
        // Quiet for long enough, the whole burst is back.
        let rested = (0..100)
            .filter(|_| b.spend(7, now + 1000 + BURST * EVERY_MS))
            .count() as u64;
        assert_eq!(rested, BURST);
    }

    #[test]
    fn the_same_want_is_answered_once_per_gap_and_varied_wants_meet_the_budget() {
        let mut b = Budgets::default();
        let v = |i: u8| VersionId([i; 32]);
        assert!(b.want(1, v(1), 10, 500));
        assert!(!b.want(1, v(1), 400, 500));
        assert!(b.want(1, v(1), 510, 500));
        let varied = (0..=255u8).filter(|&i| b.want(2, v(i), 10, 500)).count() as u64;
        assert_eq!(varied, BURST);
    }

    #[test]
    fn memory_stays_bounded_under_many_peers() {
        let mut b = Budgets::default();
        for peer in 0..(KEPT as u64 * 3) {
            b.spend(peer, peer * EVERY_MS * BURST);
        }
        assert!(b.full_at.len() <= KEPT + 1);
    }
}
