//! The lookout: when a voter campaigns. openraft's own election timer is off (`enable_elect`
//! is false in [`crate::ElectionConfig::to_openraft`]); the lookout keeps the timer instead, so
//! that a campaign can be asked about before it is run:
//! - **the leader is gone**: the daemon saw the leader's last connection close and a fresh
//!   dial fail ([`crate::ElectionNode::leader_lost`]): the voters campaign at once, each after
//!   a short random wait, and again (a few times, a few hundred milliseconds apart) until a new
//!   leader is known. The first round usually splits (a voter still inside the old leader's
//!   lease refuses), but a voter that has campaigned has no lease left to honour, so the second
//!   round elects: failover in well under a second. These rounds are not asked first (a
//!   pre-vote to the dead leader waits out its deadline: failover took seconds), so a voter
//!   whose connection to a live leader closed (a link cut between those two alone) still
//!   raises its term;
//! - **no leader heard**: no AppendEntries (nor a vote it granted) for an election timeout,
//!   drawn anew from openraft's `[election_timeout_min, election_timeout_max)` for each try,
//!   after the leader lease (`election_timeout_max`, 5 s on a LAN) when it knew a leader, as
//!   openraft's own timer did: a leader that vanished silently is replaced in 5–6 s.
//!   The voter first asks the others a pre-vote ([`PreVoteRequest`], the Raft thesis §9.6):
//!   each grants it unless it leads, follows a leader it heard within its own lease
//!   (`election_timeout_max`) and was not told is gone, or holds a longer log; its state does
//!   not change. With a majority (itself included) the voter campaigns; without one it tries
//!   again after another timeout, its term untouched. So a member that cannot win never raises the
//!   group's term: one whose log is behind, one thawed after a suspend while the others still
//!   hear their leader, one whose timing is faster than its leader's heartbeats (each member
//!   takes its timing from the round trips it measured). Its higher term would otherwise make
//!   a live leader step down when it answers a heartbeat, and, with the others on a longer
//!   timeout, keep the group leaderless for good.
//!
//! A lone voter campaigns without asking, a tenth of a timeout after it starts. Neither path
//! campaigns while the daemon says this node reaches fewer than a majority of the voters
//! ([`crate::ElectionNode::set_reach`]).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use openraft::{Raft, Vote};
use rand::Rng;
use tokio::sync::{mpsc, watch};

use crate::heard::LastHeard;
use crate::log_store::Tail;
use crate::network::Transport;
use crate::types::{NodeId, PreVoteRequest, RaftReply, RaftRpc, TypeConfig};
use crate::view::{ClusterView, Role};

/// Campaign rounds after the leader is known gone.
const ROUNDS: u32 = 6;
/// The wait before the first round (a random part of it), so the voters do not all campaign
/// in the same instant.
const FIRST_WAIT_MS: std::ops::Range<u64> = 0..100;
/// The wait between rounds.
const ROUND_WAIT_MS: std::ops::Range<u64> = 150..450;
/// Campaigns tried again a round's wait apart after a granted pre-vote whose campaign did
/// not elect, before the lookout falls back on the election timeout.
const AGAIN: u32 = 3;
/// How often the lookout looks when nothing happens.
const LOOK_EVERY: Duration = Duration::from_millis(100);

/// The lookout's timing: openraft's election timeout (its maximum is the leader lease, as
/// openraft's), and how long a pre-vote's answers are waited for.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timing {
    pub election_timeout: (Duration, Duration),
    pub ask_within: Duration,
}

/// How far past the others' lease a follower that knew a leader asks, at the least: the
/// others heard that leader last a little after it did (its heartbeat reached them later).
const PAST_LEASE: Duration = Duration::from_millis(100);

impl Timing {
    /// An election timeout, drawn from `[min, max)`.
    fn draw(&self) -> Duration {
        let (lo, hi) = self.election_timeout;
        if hi > lo {
            rand::thread_rng().gen_range(lo..hi)
        } else {
            lo
        }
    }

    /// The quiet a follower that knew a leader waits for, given a drawn `timeout`: the lease
    /// (`max`), a little more, and the draw's random part, so the followers do not all ask at
    /// once.
    fn after_lease(&self, timeout: Duration) -> Duration {
        let (lo, hi) = self.election_timeout;
        hi + PAST_LEASE + timeout.saturating_sub(lo)
    }
}

/// One campaign in progress: who was lost, rounds left, when the next is due.
struct Campaign {
    lost: NodeId,
    rounds: u32,
    next: Instant,
}

/// What the lookout works with.
pub(crate) struct Lookout {
    pub me: NodeId,
    pub raft: Raft<TypeConfig>,
    pub log: Tail,
    pub view: watch::Receiver<ClusterView>,
    pub heard: LastHeard,
    pub timing: Timing,
    pub lost: mpsc::UnboundedReceiver<NodeId>,
    pub reach: Arc<std::sync::atomic::AtomicBool>,
    pub transport: Arc<dyn Transport>,
}

/// Spawns the lookout; it stops when `lost` closes (the node is dropped) or Raft shuts down.
pub(crate) fn spawn(lookout: Lookout) {
    tokio::spawn(lookout.run());
}

impl Lookout {
    async fn run(mut self) {
        let me = self.me;
        let reach = self.reach.clone();
        let may_campaign =
            move |v: &ClusterView| reach.load(Ordering::Relaxed) && may_campaign(me, v);
        let mut campaign: Option<Campaign> = None;
        // The election timeout of the next try, and when the lookout's own clock last
        // restarted (a new leader or role seen, a try made): the quiet it waits for is the
        // shorter of that and the time since the leader was last heard.
        let mut timeout = self.timing.draw();
        let mut restarted = Instant::now();
        // Quick tries left after a granted pre-vote's campaign, and the wait before the next.
        let mut again: Option<(u32, Duration)> = None;
        let mut seen = {
            let v = self.view.borrow();
            (v.term, v.leader, v.role)
        };
        loop {
            let wake = campaign
                .as_ref()
                .map_or(LOOK_EVERY, |c| {
                    c.next.saturating_duration_since(Instant::now())
                })
                .min(LOOK_EVERY);
            tokio::select! {
                gone = self.lost.recv() => {
                    let Some(gone) = gone else { return };
                    let v = self.view.borrow().clone();
                    if may_campaign(&v) && v.voters.len() > 1 && v.leader == Some(gone)
                        && campaign.is_none()
                    {
                        tracing::info!(leader = gone, "the leader is gone; campaigning");
                        campaign = Some(Campaign {
                            lost: gone,
                            rounds: ROUNDS,
                            next: Instant::now() + jitter(FIRST_WAIT_MS),
                        });
                    }
                }
                changed = self.view.changed() => if changed.is_err() { return },
                _ = tokio::time::sleep(wake) => {}
            }
            let v = self.view.borrow().clone();
            if v.role == Role::Shutdown {
                return;
            }
            if (v.term, v.leader, v.role) != seen {
                seen = (v.term, v.leader, v.role);
                restarted = Instant::now();
            }
            if let Some(c) = campaign.as_mut() {
                let elected = v.role == Role::Leader || v.leader.is_some_and(|l| l != c.lost);
                if elected || !may_campaign(&v) || c.rounds == 0 {
                    campaign = None;
                } else if Instant::now() >= c.next {
                    c.rounds -= 1;
                    c.next = Instant::now() + jitter(ROUND_WAIT_MS);
                    // Not asked: a pre-vote to the dead leader waits out its deadline, and the
                    // others may not have heard yet that it is gone (failover took seconds).
                    if self.raft.trigger().elect().await.is_err() {
                        return;
                    }
                }
                continue;
            }
            // A lone voter has no one to wait for or to ask: it waits a tenth of the timeout.
            // A follower that knew a leader waits out the leader's lease first (as openraft's
            // own timer did): the others grant a pre-vote, and their vote, only once it ran
            // out for them too.
            // A campaign a majority said it would grant, that did not elect (another
            // candidate's higher term, a split vote), is asked again after a round's wait.
            let lone = v.voters.len() == 1;
            let quiet = self.heard.since().min(restarted.elapsed());
            let knew_leader = v.leader.is_some_and(|l| l != me);
            if v.leader.is_some() {
                again = None;
            }
            // (Not while still a candidate: its campaign may yet collect its votes.)
            let soon = again.filter(|_| v.role == Role::Follower);
            let wait = if lone {
                timeout / 10
            } else if let Some((_, soon)) = soon {
                soon
            } else if knew_leader {
                self.timing.after_lease(timeout)
            } else {
                timeout
            };
            if !may_campaign(&v) || quiet < wait {
                continue;
            }
            // No leader heard for a whole election timeout: ask, then campaign.
            let waited = quiet;
            timeout = self.timing.draw();
            restarted = Instant::now();
            let tries = again.map_or(AGAIN, |(left, _)| left);
            again = None;
            match self.ask_then_elect(&v).await {
                Err(()) => return,
                Ok(true) => {
                    if tries > 0 {
                        again = Some((tries - 1, jitter(ROUND_WAIT_MS)));
                    }
                    tracing::info!(
                        leader = v.leader,
                        quiet_ms = waited.as_millis() as u64,
                        "no leader heard for an election timeout and a majority would vote for this node; campaigned"
                    );
                }
                Ok(false) => tracing::debug!(
                    quiet_ms = waited.as_millis() as u64,
                    "no leader heard, but no majority would vote for this node; not campaigning"
                ),
            }
        }
    }

    /// Asks the other voters a pre-vote (a lone voter asks no one) and campaigns when a
    /// majority grants it and nothing changed meanwhile: no other term or leader seen, no
    /// leader heard while it asked. `Ok(true)` when it campaigned; `Err` once Raft stopped.
    async fn ask_then_elect(&self, v: &ClusterView) -> Result<bool, ()> {
        let asked = Instant::now();
        if v.voters.len() > 1 && !self.majority_would_vote(v).await {
            return Ok(false);
        }
        let now = self.view.borrow().clone();
        let heard_meanwhile = self.heard.since() < asked.elapsed();
        if (now.term, now.leader) != (v.term, v.leader) || heard_meanwhile {
            return Ok(false);
        }
        self.raft.trigger().elect().await.map_err(|_| ())?;
        Ok(true)
    }

    /// Asks every other voter a pre-vote; true when a majority, this node included, grants it.
    async fn majority_would_vote(&self, v: &ClusterView) -> bool {
        let (term, members) = {
            let m = self.raft.metrics();
            let m = m.borrow();
            let members: Vec<_> = m
                .membership_config
                .membership()
                .nodes()
                .filter(|(id, _)| **id != self.me && v.voters.contains(id))
                .map(|(id, member)| (*id, member.clone()))
                .collect();
            (m.current_term, members)
        };
        let req = PreVoteRequest {
            vote: Vote::new(term.saturating_add(1), self.me),
            last_log_id: self.log.get(),
        };
        let mut asks = tokio::task::JoinSet::new();
        for (id, member) in members {
            let call = self
                .transport
                .call(id, &member, RaftRpc::PreVote(req.clone()));
            let within = self.timing.ask_within;
            asks.spawn(async move {
                matches!(
                    tokio::time::timeout(within, call).await,
                    Ok(Ok(RaftReply::PreVote(true)))
                )
            });
        }
        let mut granted = 1;
        while let Some(answer) = asks.join_next().await {
            if answer.unwrap_or(false) {
                granted += 1;
                if 2 * granted > v.voters.len() {
                    return true;
                }
            }
        }
        2 * granted > v.voters.len()
    }
}

/// A voter that does not lead may campaign.
fn may_campaign(me: NodeId, v: &ClusterView) -> bool {
    v.voters.contains(&me) && matches!(v.role, Role::Follower | Role::Candidate)
}

fn jitter(ms: std::ops::Range<u64>) -> Duration {
    Duration::from_millis(rand::thread_rng().gen_range(ms))
}
