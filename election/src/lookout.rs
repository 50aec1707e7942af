//! The lookout: a follower's watch on its leader, so failover does not wait on heartbeats.
//!
//! Heartbeats are slow (an idle group sends about one a second and a half per follower), so
//! openraft's own election timer would notice a dead leader only seconds later. The lookout
//! campaigns sooner on evidence:
//! - **the leader is gone**: the daemon saw the leader's last connection close and a fresh
//!   dial fail ([`crate::ElectionNode::leader_lost`]): the voters campaign at once, each after
//!   a short random wait, and again (a few times, a few hundred milliseconds apart) until a new
//!   leader is known. The first round usually splits (a voter still inside the old leader's
//!   lease refuses), but a voter that has campaigned has no lease left to honour, so the second
//!   round elects: failover in well under a second;
//! - **the leader is silent**: no AppendEntries for the whole leader lease (openraft's
//!   `election_timeout_max`) and a little more: one campaign round, instead of openraft's
//!   lease plus a random election timeout.
//!
//! openraft's timer stays on underneath, for whatever the lookout misses. Neither campaigns
//! while the daemon says this node reaches fewer than a majority of the voters
//! ([`crate::ElectionNode::set_reach`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use openraft::Raft;
use openraft::raft::AppendEntriesResponse;
use rand::Rng;
use tokio::sync::{mpsc, watch};

use crate::types::{NodeId, RaftReply, TypeConfig};
use crate::view::{ClusterView, Role};

/// Campaign rounds after the leader is known gone.
const ROUNDS: u32 = 6;
/// The wait before the first round (a random part of it), so the voters do not all campaign
/// in the same instant.
const FIRST_WAIT_MS: std::ops::Range<u64> = 0..100;
/// The wait between rounds.
const ROUND_WAIT_MS: std::ops::Range<u64> = 150..450;
/// How often the lookout looks when nothing happens.
const LOOK_EVERY: Duration = Duration::from_millis(100);

/// When this follower last heard its leader (an admitted AppendEntries), in milliseconds
/// since the node opened.
#[derive(Debug, Clone)]
pub(crate) struct LastHeard {
    opened: Instant,
    at_ms: Arc<AtomicU64>,
}

impl LastHeard {
    pub(crate) fn new() -> Self {
        LastHeard {
            opened: Instant::now(),
            at_ms: Arc::new(AtomicU64::new(0)),
        }
    }

    pub(crate) fn now(&self) {
        let ms = self.opened.elapsed().as_millis() as u64;
        self.at_ms.store(ms.max(1), Ordering::Relaxed);
    }

    fn since(&self) -> Duration {
        let at = self.at_ms.load(Ordering::Relaxed);
        self.opened
            .elapsed()
            .saturating_sub(Duration::from_millis(at))
    }
}

/// Notes that the leader was heard when `reply` answers an AppendEntries or a snapshot chunk
/// it accepted (however the RPC arrived: the daemon's network or the in-memory one).
pub(crate) fn note(heard: &LastHeard, reply: &RaftReply) {
    if matches!(
        reply,
        RaftReply::AppendEntries(Ok(AppendEntriesResponse::Success
            | AppendEntriesResponse::PartialSuccess(_)
            | AppendEntriesResponse::Conflict))
            | RaftReply::InstallSnapshot(Ok(_))
    ) {
        heard.now();
    }
}

/// One campaign in progress: who was lost, rounds left, when the next is due.
struct Campaign {
    lost: NodeId,
    rounds: u32,
    next: Instant,
}

/// Spawns the lookout of node `me`; it stops when `lost` closes (the node is dropped).
pub(crate) fn spawn(
    me: NodeId,
    raft: Raft<TypeConfig>,
    mut view: watch::Receiver<ClusterView>,
    heard: LastHeard,
    lease: Duration,
    mut lost: mpsc::UnboundedReceiver<NodeId>,
    reach: Arc<std::sync::atomic::AtomicBool>,
) {
    let may_campaign =
        move |me: NodeId, v: &ClusterView| reach.load(Ordering::Relaxed) && may_campaign(me, v);
    tokio::spawn(async move {
        let mut campaign: Option<Campaign> = None;
        // The (term, leader) a silence campaign was already run for: one per leader.
        let mut silence_tried: Option<(u64, NodeId)> = None;
        let silent_after = lease + Duration::from_millis(100);
        loop {
            let wake = campaign
                .as_ref()
                .map_or(LOOK_EVERY, |c| {
                    c.next.saturating_duration_since(Instant::now())
                })
                .min(LOOK_EVERY);
            tokio::select! {
                gone = lost.recv() => {
                    let Some(gone) = gone else { return };
                    let v = view.borrow().clone();
                    if may_campaign(me, &v) && v.leader == Some(gone) && campaign.is_none() {
                        tracing::info!(leader = gone, "the leader is gone; campaigning");
                        campaign = Some(Campaign {
                            lost: gone,
                            rounds: ROUNDS,
                            next: Instant::now() + jitter(FIRST_WAIT_MS),
                        });
                    }
                }
                changed = view.changed() => if changed.is_err() { return },
                _ = tokio::time::sleep(wake) => {}
            }
            let v = view.borrow().clone();
            if v.role == Role::Shutdown {
                return;
            }
            let silent_leader = v.leader.filter(|l| {
                *l != me
                    && campaign.is_none()
                    && may_campaign(me, &v)
                    && silence_tried != Some((v.term, *l))
                    && heard.since() > silent_after
            });
            if let Some(leader) = silent_leader {
                tracing::info!(
                    leader,
                    silent_ms = heard.since().as_millis() as u64,
                    "the leader is silent; campaigning"
                );
                silence_tried = Some((v.term, leader));
                campaign = Some(Campaign {
                    lost: leader,
                    rounds: 1,
                    next: Instant::now() + jitter(0..200),
                });
            }
            let Some(c) = campaign.as_mut() else { continue };
            let elected = v.role == Role::Leader || v.leader.is_some_and(|l| l != c.lost);
            if elected || !may_campaign(me, &v) || c.rounds == 0 {
                campaign = None;
                continue;
            }
            if Instant::now() < c.next {
                continue;
            }
            c.rounds -= 1;
            c.next = Instant::now() + jitter(ROUND_WAIT_MS);
            if raft.trigger().elect().await.is_err() {
                return;
            }
        }
    });
}

/// A voter that does not lead may campaign.
fn may_campaign(me: NodeId, v: &ClusterView) -> bool {
    v.voters.contains(&me)
        && v.voters.len() > 1
        && matches!(v.role, Role::Follower | Role::Candidate)
}

fn jitter(ms: std::ops::Range<u64>) -> Duration {
    Duration::from_millis(rand::thread_rng().gen_range(ms))
}
