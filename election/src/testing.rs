//! An in-memory cluster of [`ElectionNode`]s over [`MemNet`], each with its own state dir:
//! what the tests and the failover benchmark drive. Nodes can be killed (shut down and made
//! unreachable) and restarted from their state dir.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::ElectionConfig;
use crate::memnet::MemNet;
use crate::node::{ElectionNode, ProposeError, Role};
use crate::types::{Member, NodeId, Proposal, VersionId, VersionNumber};

/// A cluster on one machine.
pub struct Cluster {
    pub net: MemNet,
    pub config: ElectionConfig,
    root: PathBuf,
    nodes: BTreeMap<NodeId, Option<ElectionNode>>,
}

/// The member record of test node `id`.
pub fn member(id: NodeId) -> Member {
    Member {
        peer_id: format!("peer-{id}").into_bytes(),
        addresses: vec![format!("/memory/{id}")],
    }
}

impl Cluster {
    /// Starts `n` nodes with ids 1..=n under `root`: node 1 initializes, the others join
    /// through it, and the call returns once all are members.
    pub async fn start(n: u64, seed: u64, config: ElectionConfig, root: PathBuf) -> Cluster {
        let mut c = Cluster {
            net: MemNet::new(seed),
            config,
            root,
            nodes: BTreeMap::new(),
        };
        for id in 1..=n {
            c.open(id).await;
        }
        c.node(1)
            .initialize(member(1))
            .await
            .expect("initialize node 1");
        c.wait_leader(Duration::from_secs(5))
            .await
            .expect("a leader");
        for id in 2..=n {
            c.join(id).await;
        }
        c
    }

    async fn open(&mut self, id: NodeId) {
        let dir = self.root.join(format!("node-{id}"));
        // A node just shut down may still hold its database for a moment on a loaded machine
        // (openraft's tasks drop their handles after the core stops): try again for a while.
        let deadline = Instant::now() + Duration::from_secs(30);
        let node = loop {
            match ElectionNode::open(&dir, id, self.config, self.net.transport(id)).await {
                Ok(node) => break node,
                Err(e) if Instant::now() < deadline && e.to_string().contains("already open") => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => panic!("open node: {e:?}"),
            }
        };
        self.net.register(&node);
        self.nodes.insert(id, Some(node));
    }

    /// Starts node `id` (new or restarted from its state dir) and adds it through the
    /// leader, retrying across leader changes.
    pub async fn join(&mut self, id: NodeId) -> Role {
        if !matches!(self.nodes.get(&id), Some(Some(_))) {
            self.open(id).await;
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let leader = self
                .wait_leader(Duration::from_secs(5))
                .await
                .expect("a leader");
            match self.node(leader).add_member(id, member(id)).await {
                Ok(role) => return role,
                Err(e) if Instant::now() < deadline => {
                    tracing::info!("join {id} via {leader}: {e}; retrying");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => panic!("node {id} could not join: {e}"),
            }
        }
    }

    /// The running node `id`.
    pub fn node(&self, id: NodeId) -> &ElectionNode {
        self.nodes
            .get(&id)
            .and_then(Option::as_ref)
            .unwrap_or_else(|| panic!("node {id} is not running"))
    }

    /// Ids of running nodes.
    pub fn running(&self) -> Vec<NodeId> {
        self.nodes
            .iter()
            .filter(|(_, n)| n.is_some())
            .map(|(id, _)| *id)
            .collect()
    }

    /// Kills node `id`: shut down and unreachable. Its state dir stays.
    pub async fn kill(&mut self, id: NodeId) {
        if let Some(node) = self.crash(id) {
            node.shutdown().await;
        }
    }

    /// Crashes node `id` at once: unreachable and out of the cluster's view. The caller shuts
    /// the returned node down when convenient (before restarting it); until then it lingers,
    /// like a process whose death the others only learn from silence.
    pub fn crash(&mut self, id: NodeId) -> Option<ElectionNode> {
        self.net.unregister(id);
        self.nodes.get_mut(&id).and_then(Option::take)
    }

    /// Restarts a killed node from its state dir.
    pub async fn restart(&mut self, id: NodeId) {
        self.open(id).await;
    }

    /// Waits until one running node leads and every running node that knows a leader in
    /// that term agrees. Returns the leader.
    pub async fn wait_leader(&self, timeout: Duration) -> Option<NodeId> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            let views: Vec<_> = self
                .running()
                .into_iter()
                .map(|id| (id, self.node(id).view()))
                .collect();
            if let Some((leader, lv)) = views.iter().find(|(_, v)| v.role == Role::Leader) {
                let agreed = views
                    .iter()
                    .filter(|(_, v)| v.term == lv.term)
                    .all(|(_, v)| v.leader == Some(*leader));
                if agreed {
                    return Some(*leader);
                }
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        None
    }

    /// Proposes `p` on whoever leads, following NotLeader answers, until `timeout`, placed by
    /// its first parent ([`ElectionNode::propose`]).
    pub async fn propose(
        &self,
        p: Proposal,
        timeout: Duration,
    ) -> Result<VersionNumber, ProposeError> {
        self.propose_with(p, None, timeout).await
    }

    /// As [`propose`](Self::propose), built on the head numbered `head`
    /// ([`ElectionNode::propose_on`], what the daemon writes).
    pub async fn propose_on(
        &self,
        p: Proposal,
        head: u64,
        timeout: Duration,
    ) -> Result<VersionNumber, ProposeError> {
        self.propose_with(p, Some(head), timeout).await
    }

    async fn propose_with(
        &self,
        p: Proposal,
        head: Option<u64>,
        timeout: Duration,
    ) -> Result<VersionNumber, ProposeError> {
        let deadline = Instant::now() + timeout;
        loop {
            let Some(leader) = self
                .wait_leader(deadline.saturating_duration_since(Instant::now()))
                .await
            else {
                return Err(ProposeError::NotLeader { leader: None });
            };
            let left = deadline.saturating_duration_since(Instant::now());
            let node = self.node(leader);
            let proposed = async {
                match head {
                    Some(head) => node.propose_on(p.clone(), head).await,
                    None => node.propose(p.clone()).await,
                }
            };
            match tokio::time::timeout(left, proposed).await {
                Ok(Ok(n)) => return Ok(n),
                Ok(Err(ProposeError::NotLeader { .. })) if Instant::now() < deadline => continue,
                Ok(Err(e)) => return Err(e),
                Err(_) => return Err(ProposeError::NotLeader { leader: None }),
            }
        }
    }

    /// Waits until every running node has applied a head with `major`.
    pub async fn wait_applied(&self, major: u64, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.running().iter().all(|&id| {
                self.node(id)
                    .local_head()
                    .is_some_and(|h| h.number.major >= major)
            }) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        false
    }

    /// Waits until every running node's log ends at the same index (a steady state: no node
    /// lags behind, so the next election needs one round).
    pub async fn wait_converged(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            let last: Vec<Option<u64>> = self
                .running()
                .iter()
                .map(|&id| self.node(id).raft().metrics().borrow().last_log_index)
                .collect();
            let applied: Vec<Option<u64>> = self
                .running()
                .iter()
                .map(|&id| self.node(id).view().applied)
                .collect();
            if last.windows(2).all(|w| w[0] == w[1]) && applied == last {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        false
    }

    /// Shuts every node down.
    pub async fn shutdown(mut self) {
        for id in self.running() {
            self.kill(id).await;
        }
    }
}

/// A proposal for test version `n` from `origin`.
pub fn proposal(n: u64, origin: NodeId) -> Proposal {
    let mut version = [0u8; 32];
    version[..8].copy_from_slice(&n.to_le_bytes());
    version[8..16].copy_from_slice(&origin.to_le_bytes());
    Proposal {
        version: VersionId(version),
        parents: vec![],
        origin,
        created_at_ms: n,
        redo: vec![],
    }
}

/// The seed for a test: `CHORUS_SEED` if set, else fresh; printed so a failure can be rerun.
pub fn seed(test: &str) -> u64 {
    let seed = std::env::var("CHORUS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    eprintln!("{test}: seed {seed} (rerun with CHORUS_SEED={seed})");
    seed
}
