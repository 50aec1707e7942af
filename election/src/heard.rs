//! What a follower heard of its leader, kept where the RPCs are served: when it last heard
//! one ([`LastHeard`], which the lookout's election timer runs from), and what that makes it
//! answer a pre-vote ([`answer_pre_vote`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use openraft::raft::AppendEntriesResponse;
use openraft::{Raft, ServerState};

use crate::log_store::Tail;
use crate::types::{NodeId, PreVoteRequest, RaftReply, TypeConfig};

/// When this follower last heard its leader (an admitted AppendEntries, or a vote it granted),
/// in milliseconds since the node opened (0 for never), and the leader the daemon said is gone
/// (its connection closed and a redial failed), with when.
#[derive(Debug, Clone)]
pub(crate) struct LastHeard {
    opened: Instant,
    at_ms: Arc<AtomicU64>,
    lost: Arc<std::sync::Mutex<Option<(NodeId, u64)>>>,
}

/// A leader heard within this long after the word that it is gone was on its way before (a
/// heartbeat already queued); one heard later is back.
const LOST_GRACE_MS: u64 = 1000;

impl LastHeard {
    pub(crate) fn new() -> Self {
        LastHeard {
            opened: Instant::now(),
            at_ms: Arc::new(AtomicU64::new(0)),
            lost: Default::default(),
        }
    }

    fn ms(&self) -> u64 {
        (self.opened.elapsed().as_millis() as u64).max(1)
    }

    pub(crate) fn now(&self) {
        self.at_ms.store(self.ms(), Ordering::Relaxed);
    }

    /// The daemon's word that `leader` is gone.
    pub(crate) fn lose(&self, leader: NodeId) {
        let at = self.ms();
        *self.lost() = Some((leader, at));
    }

    /// True when the daemon said `leader` is gone and it was not heard since.
    fn has_lost(&self, leader: NodeId) -> bool {
        match *self.lost() {
            Some((l, at)) if l == leader => {
                self.at_ms.load(Ordering::Relaxed) <= at + LOST_GRACE_MS
            }
            _ => false,
        }
    }

    fn lost(&self) -> std::sync::MutexGuard<'_, Option<(NodeId, u64)>> {
        self.lost.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// How long since the leader was last heard (since the node opened, if never).
    pub(crate) fn since(&self) -> Duration {
        let at = self.at_ms.load(Ordering::Relaxed);
        self.opened
            .elapsed()
            .saturating_sub(Duration::from_millis(at))
    }

    /// True when a leader was heard within `lease`.
    fn within(&self, lease: Duration) -> bool {
        self.at_ms.load(Ordering::Relaxed) != 0 && self.since() < lease
    }
}

/// Notes that the leader was heard when `reply` answers an AppendEntries or a snapshot chunk
/// it accepted, or grants a vote (Raft's followers restart their timer then too), however the
/// RPC arrived: the daemon's network or the in-memory one.
pub(crate) fn note(heard: &LastHeard, reply: &RaftReply) {
    if matches!(
        reply,
        RaftReply::AppendEntries(Ok(AppendEntriesResponse::Success
            | AppendEntriesResponse::PartialSuccess(_)
            | AppendEntriesResponse::Conflict))
            | RaftReply::InstallSnapshot(Ok(_))
    ) || matches!(reply, RaftReply::Vote(Ok(v)) if v.vote_granted)
    {
        heard.now();
    }
}

/// Answers a pre-vote: granted when this node does not lead, does not follow a leader it
/// heard within `lease` (and still reaches: one the daemon said is gone does not count), and
/// the candidate's log is at least as long as its own. A node that campaigned itself follows
/// no one and has no lease to honour (openraft's vote check holds a lease only for a
/// committed vote too). Nothing changes here.
pub(crate) fn answer_pre_vote(
    raft: &Raft<TypeConfig>,
    log: &Tail,
    heard: &LastHeard,
    lease: Duration,
    req: &PreVoteRequest,
) -> bool {
    let (leading, leader) = {
        let m = raft.metrics();
        let m = m.borrow();
        (
            m.state == ServerState::Leader,
            m.current_leader.filter(|l| *l != m.id),
        )
    };
    let alive = leader.is_some_and(|l| heard.within(lease) && !heard.has_lost(l));
    if leading || alive {
        return false;
    }
    req.last_log_id >= log.get()
}
