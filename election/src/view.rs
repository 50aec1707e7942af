//! What this node sees of the group ([`ClusterView`]: term, leader, role, members, applied
//! index), followed from openraft's metrics and published on a watch channel.

use std::collections::BTreeSet;
use std::sync::Arc;

use openraft::{Raft, ServerState};
use tokio::sync::watch;

use crate::types::{Member, NodeId, TypeConfig};

/// Role of this node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Leader,
    Follower,
    Candidate,
    Learner,
    Shutdown,
}

/// Who leads and who is in, as this node sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterView {
    pub term: u64,
    pub leader: Option<NodeId>,
    pub role: Role,
    pub voters: BTreeSet<NodeId>,
    pub learners: BTreeSet<NodeId>,
    /// Last log index committed and applied here.
    pub applied: Option<u64>,
}

/// Follows openraft's metrics and publishes the parts a user cares about.
pub(crate) fn spawn_view(
    raft: &Raft<TypeConfig>,
    term: Arc<std::sync::atomic::AtomicU64>,
) -> watch::Receiver<ClusterView> {
    let mut metrics = raft.metrics();
    term.store(
        metrics.borrow().current_term,
        std::sync::atomic::Ordering::Relaxed,
    );
    let view_of = |m: &openraft::RaftMetrics<NodeId, Member>| {
        let membership = m.membership_config.membership();
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        let learners: BTreeSet<NodeId> = membership.learner_ids().collect();
        ClusterView {
            term: m.current_term,
            leader: m.current_leader,
            role: match m.state {
                ServerState::Leader => Role::Leader,
                ServerState::Candidate => Role::Candidate,
                ServerState::Learner => Role::Learner,
                ServerState::Follower if learners.contains(&m.id) => Role::Learner,
                ServerState::Follower => Role::Follower,
                ServerState::Shutdown => Role::Shutdown,
            },
            voters,
            learners,
            applied: m.last_applied.map(|l| l.index),
        }
    };
    let (tx, rx) = watch::channel(view_of(&metrics.borrow()));
    tokio::spawn(async move {
        while metrics.changed().await.is_ok() {
            let v = view_of(&metrics.borrow());
            term.store(v.term, std::sync::atomic::Ordering::Relaxed);
            tx.send_if_modified(|old| {
                let changed = *old != v;
                *old = v;
                changed
            });
            if tx.is_closed() {
                break;
            }
        }
    });
    rx
}
