//! [`RaftFeed`]: the bridge from Raft to the engine, sans IO. The driver calls
//! [`RaftFeed::poll`] whenever Raft's view or its applied head changed (the daemon waits on
//! chorus-election's subscriptions; a simulation calls it as it steps) and feeds the events it
//! returns: the cluster as it is now when it changed, the headers applied since the last poll.
//! A new leadership is confirmed (a linearizable read, done by the driver) before the engine
//! hears of it, so a leader never merges on a head older than the log's.

use chorus_proto::header::AcceptedHeader;

use crate::event::{ClusterInfo, Event};

/// What Raft says now.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RaftView {
    pub term: u64,
    /// True while this node is Raft's leader.
    pub leading: bool,
    pub cluster: ClusterInfo,
}

/// Follows Raft for one engine.
#[derive(Debug, Default)]
pub struct RaftFeed {
    info: Option<ClusterInfo>,
    /// The newest MAJOR handed to the engine.
    fed_major: u64,
    confirmed_term: Option<u64>,
    confirming: Option<u64>,
}

impl RaftFeed {
    pub fn new() -> Self {
        Self::default()
    }

    /// The events for the engine given Raft's `view` now; `headers_after(major)` returns the
    /// headers applied here after MAJOR `major`, oldest first.
    pub fn poll(
        &mut self,
        view: &RaftView,
        headers_after: impl FnOnce(u64) -> Vec<AcceptedHeader>,
    ) -> Vec<Event> {
        let mut out = self.cluster(view);
        out.extend(self.headers(headers_after));
        if !view.leading {
            self.confirmed_term = None;
        }
        out
    }

    /// The term whose leadership the driver should confirm now, with a linearizable read, and
    /// report with [`confirmed`](Self::confirmed); `None` when there is none or one is under
    /// way.
    pub fn confirm_due(&mut self, view: &RaftView) -> Option<u64> {
        if view.leading
            && self.confirmed_term != Some(view.term)
            && self.confirming != Some(view.term)
        {
            self.confirming = Some(view.term);
            return Some(view.term);
        }
        None
    }

    /// The outcome of confirming `term`: when it holds and this node still leads in it, the
    /// cluster as it is now if the engine has not heard it yet (it learns that it leads before
    /// it hears the leadership confirmed, else it would drop the confirmation), the headers
    /// applied meanwhile, then [`Event::LeaderConfirmed`].
    pub fn confirmed(
        &mut self,
        term: u64,
        ok: bool,
        view: &RaftView,
        headers_after: impl FnOnce(u64) -> Vec<AcceptedHeader>,
    ) -> Vec<Event> {
        if self.confirming == Some(term) {
            self.confirming = None;
        }
        if !(ok && view.leading && view.term == term) {
            return Vec::new();
        }
        let mut out = self.cluster(view);
        out.extend(self.headers(headers_after));
        self.confirmed_term = Some(term);
        out.push(Event::LeaderConfirmed);
        out
    }

    /// The cluster event for `view`, when it differs from the last one fed.
    fn cluster(&mut self, view: &RaftView) -> Vec<Event> {
        if self.info.as_ref() == Some(&view.cluster) {
            return Vec::new();
        }
        self.info = Some(view.cluster.clone());
        vec![Event::Cluster(view.cluster.clone())]
    }

    fn headers(&mut self, headers_after: impl FnOnce(u64) -> Vec<AcceptedHeader>) -> Vec<Event> {
        let new: Vec<AcceptedHeader> = headers_after(self.fed_major)
            .into_iter()
            .filter(|h| h.number.major > self.fed_major)
            .collect();
        match new.last() {
            Some(last) => {
                self.fed_major = last.number.major;
                vec![Event::Committed(new)]
            }
            None => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use chorus_chunking::{VersionId, VersionNumber};

    use super::*;

    fn header(major: u64) -> AcceptedHeader {
        AcceptedHeader {
            version: VersionId([major as u8; 32]),
            parents: vec![],
            number: VersionNumber::new(major, 0),
            origin: 1,
            created_at_ms: 0,
            redo: vec![],
        }
    }

    #[test]
    fn headers_are_fed_once_and_leadership_after_confirmation() {
        let mut f = RaftFeed::new();
        let mut view = RaftView::default();
        view.cluster.leader = Some(1);
        let ev = f.poll(&view, |after| {
            (after + 1..=2).map(header).collect::<Vec<_>>()
        });
        assert!(matches!(ev[0], Event::Cluster(_)));
        assert!(matches!(&ev[1], Event::Committed(h) if h.len() == 2));
        assert!(f.poll(&view, |_| vec![header(1), header(2)]).is_empty());
        view.leading = true;
        view.term = 3;
        assert_eq!(f.confirm_due(&view), Some(3));
        assert_eq!(f.confirm_due(&view), None, "one confirmation at a time");
        let ev = f.confirmed(3, true, &view, |_| vec![header(3)]);
        assert!(matches!(&ev[0], Event::Committed(h) if h[0].number.major == 3));
        assert!(matches!(ev[1], Event::LeaderConfirmed));
        assert_eq!(f.confirm_due(&view), None, "confirmed for this term");
        view.term = 4;
        assert_eq!(f.confirm_due(&view), Some(4));
        assert!(f.confirmed(4, false, &view, |_| vec![]).is_empty());
    }

    /// The leadership began between the driver's poll and its confirmation: the poll fed a
    /// cluster without a leader, the confirmation saw this node lead. The engine hears that
    /// it leads before it hears the confirmation (a simulation stalled for good when the
    /// confirmation came first: the engine dropped it, and the feed never confirmed again).
    #[test]
    fn a_confirmation_tells_the_engine_it_leads_first() {
        let mut f = RaftFeed::new();
        let mut view = RaftView {
            term: 9,
            ..RaftView::default()
        };
        assert!(
            matches!(&f.poll(&view, |_| vec![])[..], [Event::Cluster(c)] if c.leader.is_none())
        );
        view.leading = true;
        view.cluster.leader = Some(3);
        assert_eq!(f.confirm_due(&view), Some(9));
        let ev = f.confirmed(9, true, &view, |_| vec![]);
        assert!(
            matches!(&ev[..], [Event::Cluster(c), Event::LeaderConfirmed] if c.leader == Some(3)),
            "{ev:?}"
        );
        assert!(f.poll(&view, |_| vec![]).is_empty(), "fed once");
    }
}
