//! [`ElectionNode`]: what the daemon drives. It opens a node from its state dir, initializes a
//! one-node cluster, adds members (learners first, promoted to voters while there are fewer
//! than `max_voters`), proposes headers and learns their numbers, and watches who leads.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;

use openraft::error::{ClientWriteError, RaftError};
use openraft::{ChangeMembers, Raft, ServerState};
use tokio::sync::{mpsc, watch};

use crate::admission::Refused;
use crate::config::ElectionConfig;
use crate::heard::LastHeard;
use crate::log_store::LogStore;
use crate::lookout::{self, Lookout, Timing};
use crate::network::{Network, RaftReply, RaftRpc, Served, Transport};
use crate::state_machine::StateMachine;
use crate::types::{
    AcceptedHeader, MAX_PARENTS, MAX_REDO_BYTES, Member, NodeId, Proposal, Request, TypeConfig,
    VersionNumber,
};
use crate::view::spawn_view;
pub use crate::view::{ClusterView, Role};
use crate::{ElectionError, Source};

/// How long [`ElectionNode::add_member`] waits for a new learner to catch up.
pub const CATCH_UP_WITHIN: std::time::Duration = std::time::Duration::from_secs(10);

/// Why a proposal or a linearizable read did not go through.
#[derive(Debug, thiserror::Error)]
pub enum ProposeError {
    /// Only the leader proposes; `leader` is who it is, when known.
    #[error("not the leader; the leader is {}", leader.as_ref().map_or("unknown".to_string(), |(id, m)| format!("{id} ({m})")))]
    NotLeader { leader: Option<(NodeId, Member)> },
    /// Leadership could not be confirmed with a majority just now (a slow or cut-off
    /// majority); retry.
    #[error("could not confirm leadership with a majority: {0}; retry")]
    NoQuorum(#[source] Source),
    /// The header breaks a size bound.
    #[error("header too large: {0}")]
    TooLarge(String),
    /// A header committed since this one was built: it names an older head first, and is
    /// refused (the leader merges its changes on the new head and proposes again).
    #[error("a newer header committed since this one was built on the head it names")]
    Superseded,
    /// Raft stopped (storage failure or shutdown).
    #[error("raft stopped: {0}")]
    Fatal(#[source] Source),
}

/// A running Raft node.
pub struct ElectionNode {
    id: NodeId,
    config: ElectionConfig,
    raft: Raft<TypeConfig>,
    sm: StateMachine,
    log: LogStore,
    view: watch::Receiver<ClusterView>,
    /// What serving RPCs needs (when the leader was last heard, for the lookout and pre-votes).
    served: Served,
    /// Tells the lookout a leader is gone.
    lost: mpsc::UnboundedSender<NodeId>,
    /// False while the daemon says this node reaches fewer than a majority of the voters: it
    /// does not campaign then ([`ElectionNode::set_reach`]).
    reach: Arc<std::sync::atomic::AtomicBool>,
}

impl ElectionNode {
    /// Opens (or creates) the node stored in `state_dir/raft.redb`. A node with state resumes
    /// with its vote and log; nothing here ever re-initializes it.
    pub async fn open(
        state_dir: &Path,
        id: NodeId,
        config: ElectionConfig,
        transport: Arc<dyn Transport>,
    ) -> Result<Self, ElectionError> {
        let storage = |source: Source| ElectionError::Storage {
            path: state_dir.to_owned(),
            source,
        };
        std::fs::create_dir_all(state_dir).map_err(|e| storage(e.into()))?;
        let (log, sm) = crate::log_store::open(state_dir)
            .await
            .map_err(|e| storage(e.into()))?;
        let term = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let raft = Raft::new(
            id,
            config.to_openraft()?,
            Network {
                id,
                transport: transport.clone(),
                term: term.clone(),
            },
            log.clone(),
            sm.clone(),
        )
        .await
        .map_err(|e| ElectionError::Fatal(e.into()))?;
        let view = spawn_view(&raft, term);
        let heard = LastHeard::new();
        let (lost, lost_rx) = mpsc::unbounded_channel();
        let ms = std::time::Duration::from_millis;
        let reach = Arc::new(std::sync::atomic::AtomicBool::new(true));
        lookout::spawn(Lookout {
            me: id,
            raft: raft.clone(),
            log: log.tail(),
            view: view.clone(),
            heard: heard.clone(),
            timing: Timing {
                election_timeout: (
                    ms(config.election_timeout_min_ms),
                    ms(config.election_timeout_max_ms),
                ),
                ask_within: ms(config.heartbeat_ms),
            },
            lost: lost_rx,
            reach: reach.clone(),
            transport,
        });
        let served = Served {
            raft: raft.clone(),
            log: log.tail(),
            heard,
            lease: ms(config.election_timeout_max_ms),
        };
        Ok(ElectionNode {
            id,
            config,
            raft,
            sm,
            log,
            view,
            served,
            lost,
            reach,
        })
    }

    pub fn id(&self) -> NodeId {
        self.id
    }

    /// What serving this node's RPCs needs (for transports that serve them themselves).
    #[cfg(any(test, feature = "test-util"))]
    pub(crate) fn served(&self) -> Served {
        self.served.clone()
    }

    /// The openraft handle, for serving RPCs and metrics.
    pub fn raft(&self) -> &Raft<TypeConfig> {
        &self.raft
    }

    /// Serves an RPC that node `from` sent (as the transport authenticated it), once
    /// [`crate::admission`] admits it. A refused RPC is answered by silence.
    pub async fn handle(&self, from: NodeId, rpc: RaftRpc) -> Result<RaftReply, Refused> {
        self.served.serve(from, rpc).await
    }

    /// The daemon's word that `leader` is gone: its last connection closed and a fresh dial
    /// failed. While it is still this node's leader, a voter campaigns at once (see
    /// [`crate::lookout`]) instead of waiting out the heartbeat timeout.
    pub fn leader_lost(&self, leader: NodeId) {
        if self.view().leader == Some(leader) {
            self.served.heard.lose(leader);
        }
        let _ = self.lost.send(leader);
    }

    /// The daemon's word on whether this node reaches a majority of the voters (over any
    /// connection, direct or relayed). While it does not, the lookout (which keeps the
    /// election timer) does not campaign: a member the others cannot reach would only raise
    /// the term without end, and, elected, could not lead. A leader is not affected.
    pub fn set_reach(&self, reaches_majority: bool) {
        self.reach
            .store(reaches_majority, std::sync::atomic::Ordering::Relaxed);
    }

    /// True when this node has a log or a membership already.
    pub async fn is_initialized(&self) -> Result<bool, ElectionError> {
        self.raft
            .is_initialized()
            .await
            .map_err(|e| ElectionError::Fatal(e.into()))
    }

    /// Makes this node a one-node cluster (`chorus init`). Refused when it has state.
    pub async fn initialize(&self, me: Member) -> Result<(), ElectionError> {
        if self.is_initialized().await? {
            return Err(ElectionError::AlreadyInitialized);
        }
        let members = std::collections::BTreeMap::from([(self.id, me)]);
        self.raft
            .initialize(members)
            .await
            .map_err(|e| ElectionError::Fatal(e.into()))
    }

    /// Adds a node: first as a learner (waits up to [`CATCH_UP_WITHIN`] for it to catch up),
    /// then as a voter while there are fewer than `max_voters`. Must be called on the leader.
    /// A node id already used by another PeerId is refused. A learner that has not caught up
    /// in time stays a learner (an error says so; the leader's keeper promotes it later).
    pub async fn add_member(&self, id: NodeId, member: Member) -> Result<Role, ElectionError> {
        let current = self.raft.metrics().borrow().membership_config.clone();
        if let Some(existing) = current.membership().get_node(&id)
            && existing.peer_id != member.peer_id
        {
            return Err(ElectionError::IdCollision(id));
        }
        let added = self
            .raft
            .add_learner(id, member, false)
            .await
            .map_err(write_err)?;
        // openraft's own blocking wait has no end: a leader that steps down meanwhile, or a
        // learner that never answers, would hold the caller for good (and whoever adds the
        // next member behind it). Wait a bounded time; callers retry.
        let caught_up = self
            .raft
            .wait(Some(CATCH_UP_WITHIN))
            .metrics(
                |m| {
                    m.state != ServerState::Leader
                        || m.replication
                            .as_ref()
                            .and_then(|r| r.get(&id))
                            .is_some_and(|matched| matched.as_ref() >= Some(&added.log_id))
                },
                "the new learner catches up",
            )
            .await;
        match caught_up {
            Ok(m) if m.state != ServerState::Leader => {
                return Err(ElectionError::NotLeader(m.current_leader));
            }
            Ok(_) => {}
            Err(e) => {
                return Err(ElectionError::Membership(
                    format!(
                        "node {id} is a learner but has not caught up ({e}); it becomes a voter once it does"
                    )
                    .into(),
                ));
            }
        }
        if self.voters().len() >= self.config.max_voters {
            return Ok(Role::Learner);
        }
        self.raft
            .change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([id])), false)
            .await
            .map_err(write_err)?;
        Ok(Role::Follower)
    }

    /// On the leader: promotes learners that replicate to voters while there are fewer than
    /// `max_voters`, all in one change (a one-voter group with two learners goes straight to
    /// three voters, never through an even two). A promotion that failed when the learner was
    /// added (another change was in progress, the leader changed) is completed here; the
    /// daemon calls this periodically. Returns the nodes promoted.
    pub async fn promote_learners(
        &self,
        eligible: impl Fn(NodeId) -> bool,
    ) -> Result<BTreeSet<NodeId>, ElectionError> {
        let (candidates, voters) = {
            let m = self.raft.metrics();
            let m = m.borrow();
            if m.state != ServerState::Leader {
                return Ok(BTreeSet::new());
            }
            let membership = m.membership_config.membership();
            let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
            // Only learners the leader has reached: a learner that never answered would
            // otherwise become a voter that can block the quorum.
            let reached: BTreeSet<NodeId> = m
                .replication
                .as_ref()
                .map(|r| {
                    r.iter()
                        .filter(|(_, matched)| matched.is_some())
                        .map(|(id, _)| *id)
                        .collect()
                })
                .unwrap_or_default();
            let learners: Vec<NodeId> = membership
                .learner_ids()
                .filter(|id| reached.contains(id) && eligible(*id))
                .collect();
            (learners, voters)
        };
        let room = self.config.max_voters.saturating_sub(voters.len());
        let promote: BTreeSet<NodeId> = candidates.into_iter().take(room).collect();
        if promote.is_empty() {
            return Ok(promote);
        }
        self.raft
            .change_membership(ChangeMembers::AddVoterIds(promote.clone()), false)
            .await
            .map_err(write_err)?;
        Ok(promote)
    }

    /// On the leader: records where members are reachable now (their addresses, as they
    /// report them), so every member, after a restart too, dials a member that moved at its new
    /// address. Only the addresses change: openraft's `SetNodes` keeps voters and learners as
    /// they are (its warning is about pointing an id at another machine; here the id is the
    /// PeerId's hash, and the address is a hint a wrong key cannot answer). Members not in the
    /// membership are left out.
    pub async fn set_addresses(
        &self,
        addresses: std::collections::BTreeMap<NodeId, Vec<String>>,
    ) -> Result<(), ElectionError> {
        let members = self.members();
        let nodes: std::collections::BTreeMap<NodeId, Member> = addresses
            .into_iter()
            .filter_map(|(id, addresses)| {
                let m = members.get(&id)?;
                (m.addresses != addresses).then(|| {
                    (
                        id,
                        Member {
                            peer_id: m.peer_id.clone(),
                            addresses,
                        },
                    )
                })
            })
            .collect();
        if nodes.is_empty() {
            return Ok(());
        }
        self.raft
            .change_membership(ChangeMembers::SetNodes(nodes), false)
            .await
            .map_err(write_err)?;
        Ok(())
    }

    /// On the leader: makes these voters learners (they keep their log and are promoted again
    /// by [`ElectionNode::promote_learners`] once they are back). Refused when it would leave
    /// no voter, or would take out this node.
    pub async fn demote_voters(&self, ids: BTreeSet<NodeId>) -> Result<(), ElectionError> {
        let voters = self.voters();
        let ids: BTreeSet<NodeId> = ids.intersection(&voters).copied().collect();
        if ids.is_empty() || ids.contains(&self.id) || ids.len() >= voters.len() {
            return Ok(());
        }
        self.raft
            .change_membership(ChangeMembers::RemoveVoters(ids), true)
            .await
            .map_err(write_err)?;
        Ok(())
    }

    /// The voters of the membership this node knows.
    fn voters(&self) -> BTreeSet<NodeId> {
        self.raft
            .metrics()
            .borrow()
            .membership_config
            .membership()
            .voter_ids()
            .collect()
    }

    /// On the leader: every other node leaves the membership (`chorus rekey`), this one stays
    /// its one voter. Returns the nodes removed.
    pub async fn remove_all_but_self(&self) -> Result<BTreeSet<NodeId>, ElectionError> {
        let others: BTreeSet<NodeId> = {
            let m = self.raft.metrics();
            let m = m.borrow();
            m.membership_config
                .membership()
                .nodes()
                .map(|(id, _)| *id)
                .filter(|id| *id != self.id)
                .collect()
        };
        if others.is_empty() {
            return Ok(others);
        }
        let voters: BTreeSet<NodeId> = self
            .voters()
            .into_iter()
            .filter(|id| *id != self.id)
            .collect();
        if !voters.is_empty() {
            self.raft
                .change_membership(ChangeMembers::RemoveVoters(voters), false)
                .await
                .map_err(write_err)?;
        }
        self.raft
            .change_membership(ChangeMembers::RemoveNodes(others.clone()), false)
            .await
            .map_err(write_err)?;
        Ok(others)
    }

    /// Removes member `id` (voter or learner) from the membership; on the leader.
    pub async fn remove_member(&self, id: NodeId) -> Result<(), ElectionError> {
        if self.voters().contains(&id) {
            self.raft
                .change_membership(ChangeMembers::RemoveVoters(BTreeSet::from([id])), false)
                .await
                .map_err(write_err)?;
        }
        self.raft
            .change_membership(ChangeMembers::RemoveNodes(BTreeSet::from([id])), false)
            .await
            .map_err(write_err)?;
        Ok(())
    }

    /// Proposes a header built on the head numbered `head` (its MAJOR; 0 before any header).
    /// Returns its number once committed on a majority; `NotLeader` from a follower,
    /// `Superseded` when another header committed since it was built.
    pub async fn propose_on(&self, p: Proposal, head: u64) -> Result<VersionNumber, ProposeError> {
        self.write(p, |proposal| Request::AcceptOnNumber { proposal, head })
            .await
    }

    /// Proposes a header built on the head its first parent names (parent-less proposals, as
    /// tests and benchmarks make, are appended as they come). Two headers with the same tree
    /// look alike to this rule: the daemon proposes with [`propose_on`](Self::propose_on).
    pub async fn propose(&self, p: Proposal) -> Result<VersionNumber, ProposeError> {
        self.write(p, Request::AcceptOnHead).await
    }

    /// Writes `p` to the log as the entry `request` makes of it, if a header may hold it.
    async fn write(
        &self,
        p: Proposal,
        request: impl FnOnce(Proposal) -> Request,
    ) -> Result<VersionNumber, ProposeError> {
        if p.redo.len() > MAX_REDO_BYTES || p.parents.len() > MAX_PARENTS {
            return Err(ProposeError::TooLarge(format!(
                "{} redo bytes (max {MAX_REDO_BYTES}), {} parents (max {MAX_PARENTS})",
                p.redo.len(),
                p.parents.len()
            )));
        }
        match self.raft.client_write(request(p)).await {
            Ok(resp) => resp.data.number.ok_or(ProposeError::Superseded),
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
                Err(ProposeError::NotLeader {
                    leader: f.leader_id.zip(f.leader_node),
                })
            }
            Err(e) => Err(ProposeError::Fatal(e.into())),
        }
    }

    /// The head, read linearizably: only the leader answers, after confirming with a quorum
    /// that it still leads and applying everything committed before the read.
    pub async fn read_head(&self) -> Result<Option<AcceptedHeader>, ProposeError> {
        match self.raft.ensure_linearizable().await {
            Ok(_) => Ok(self.sm.head()),
            Err(RaftError::APIError(openraft::error::CheckIsLeaderError::ForwardToLeader(f))) => {
                Err(ProposeError::NotLeader {
                    leader: f.leader_id.zip(f.leader_node),
                })
            }
            Err(RaftError::APIError(openraft::error::CheckIsLeaderError::QuorumNotEnough(q))) => {
                Err(ProposeError::NoQuorum(q.into()))
            }
            Err(e) => Err(ProposeError::Fatal(e.into())),
        }
    }

    /// The head as applied on this node (may lag the leader).
    pub fn local_head(&self) -> Option<AcceptedHeader> {
        self.sm.head()
    }

    /// Recent accepted headers as applied on this node, oldest first.
    pub fn recent_headers(&self) -> Vec<AcceptedHeader> {
        self.sm.headers_after(0)
    }

    /// The headers applied on this node after MAJOR `major`, oldest first (of the recent ones
    /// kept in memory).
    pub fn headers_after(&self, major: u64) -> Vec<AcceptedHeader> {
        self.sm.headers_after(major)
    }

    /// The rank (MINOR) of every node that has ever been a member, as applied here: a local
    /// version built on accepted MAJOR `m` is numbered `(m+1).rank`.
    pub fn ranks(&self) -> std::collections::BTreeMap<NodeId, u32> {
        self.sm.ranks()
    }

    /// The members (voters and learners) with their records, as applied here.
    pub fn members(&self) -> std::collections::BTreeMap<NodeId, Member> {
        self.sm.members()
    }

    /// Watches the head as it is applied here.
    pub fn subscribe_head(&self) -> watch::Receiver<Option<AcceptedHeader>> {
        self.sm.subscribe_head()
    }

    /// Watches term, leader and membership.
    pub fn subscribe(&self) -> watch::Receiver<ClusterView> {
        self.view.clone()
    }

    /// The current view.
    pub fn view(&self) -> ClusterView {
        self.view.borrow().clone()
    }

    /// Durable storage commits so far (one fsync'd redb commit each).
    pub fn durable_commits(&self) -> u64 {
        self.log.durable_commits()
    }

    /// Stops Raft and waits until its tasks have released the database, so the state dir can
    /// be opened again at once.
    pub async fn shutdown(self) {
        let _ = self.raft.shutdown().await;
        drop(self.raft);
        // Replication tasks and in-flight storage calls hold clones for a moment after the
        // core stops; this node's own two (log and state machine) are all that should remain.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while self.log.db_handles() > 2 && std::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        if self.log.db_handles() > 2 {
            tracing::warn!(
                handles = self.log.db_handles(),
                "raft storage still in use after shutdown"
            );
        }
    }
}

fn write_err(e: RaftError<NodeId, ClientWriteError<NodeId, Member>>) -> ElectionError {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => {
            ElectionError::NotLeader(f.leader_id)
        }
        e => ElectionError::Membership(e.into()),
    }
}
