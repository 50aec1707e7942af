//! An in-memory network for tests and benchmarks: every node's RPCs go through one router that
//! injects faults per link from a seeded RNG: drops (the call never answers, so the caller
//! times out), delays (uniform in a range, which also reorders), partitions, and crashed nodes
//! (unregistered: calls to them fail at once, like a refused connection). The fault decisions
//! are reproducible from the seed; tokio's scheduling adds the rest of the interleaving.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::network::{BoxFuture, RaftReply, RaftRpc, Served, Transport, TransportError};
use crate::node::ElectionNode;
use crate::types::{Member, NodeId};

/// Faults on one direction of a link.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LinkFaults {
    /// Probability that a request or its reply is lost.
    pub drop: f64,
    /// One-way delay, uniform in this range, in milliseconds.
    pub delay_ms: (u64, u64),
}

impl Default for LinkFaults {
    fn default() -> Self {
        LinkFaults {
            drop: 0.0,
            delay_ms: (0, 1),
        }
    }
}

struct State {
    /// Each reachable node, as serving its RPCs needs it.
    nodes: HashMap<NodeId, Served>,
    links: HashMap<(NodeId, NodeId), LinkFaults>,
    default: LinkFaults,
    /// Nodes in different groups cannot talk; empty means no partition.
    groups: Vec<HashSet<NodeId>>,
    rng: StdRng,
    delivered: u64,
    dropped: u64,
}

impl State {
    fn separated(&self, a: NodeId, b: NodeId) -> bool {
        if self.groups.is_empty() {
            return false;
        }
        let group = |n| self.groups.iter().position(|g| g.contains(&n));
        group(a) != group(b)
    }

    /// Decides one hop: `None` if it is lost, else its delay.
    fn hop(&mut self, from: NodeId, to: NodeId) -> Option<Duration> {
        if self.separated(from, to) {
            self.dropped += 1;
            return None;
        }
        let f = *self.links.get(&(from, to)).unwrap_or(&self.default);
        if f.drop > 0.0 && self.rng.gen_bool(f.drop.min(1.0)) {
            self.dropped += 1;
            return None;
        }
        let (lo, hi) = f.delay_ms;
        let ms = if hi > lo {
            self.rng.gen_range(lo..hi)
        } else {
            lo
        };
        Some(Duration::from_millis(ms))
    }
}

/// The router. Clones share it.
#[derive(Clone)]
pub struct MemNet {
    state: Arc<Mutex<State>>,
    seed: u64,
}

impl MemNet {
    /// A network whose fault decisions follow `seed`.
    pub fn new(seed: u64) -> Self {
        MemNet {
            state: Arc::new(Mutex::new(State {
                nodes: HashMap::new(),
                links: HashMap::new(),
                default: LinkFaults::default(),
                groups: Vec::new(),
                rng: StdRng::seed_from_u64(seed),
                delivered: 0,
                dropped: 0,
            })),
            seed,
        }
    }

    pub fn seed(&self) -> u64 {
        self.seed
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The transport node `from` sends through.
    pub fn transport(&self, from: NodeId) -> Arc<dyn Transport> {
        Arc::new(Endpoint {
            net: self.clone(),
            from,
        })
    }

    /// Makes a node reachable (after start or restart).
    pub fn register(&self, node: &ElectionNode) {
        self.lock().nodes.insert(node.id(), node.served());
    }

    /// Makes a node unreachable (crashed).
    pub fn unregister(&self, id: NodeId) {
        self.lock().nodes.remove(&id);
    }

    /// Splits the nodes into groups that cannot reach each other.
    pub fn partition(&self, groups: &[&[NodeId]]) {
        self.lock().groups = groups.iter().map(|g| g.iter().copied().collect()).collect();
    }

    /// Removes any partition.
    pub fn heal(&self) {
        self.lock().groups.clear();
    }

    /// Faults on every link without its own setting.
    pub fn set_default_faults(&self, f: LinkFaults) {
        self.lock().default = f;
    }

    /// Faults on the link from `a` to `b`.
    pub fn set_link(&self, a: NodeId, b: NodeId, f: LinkFaults) {
        self.lock().links.insert((a, b), f);
    }

    /// (delivered, dropped) messages so far.
    pub fn counters(&self) -> (u64, u64) {
        let s = self.lock();
        (s.delivered, s.dropped)
    }
}

struct Endpoint {
    net: MemNet,
    from: NodeId,
}

impl Transport for Endpoint {
    fn call(
        &self,
        target: NodeId,
        _member: &Member,
        rpc: RaftRpc,
    ) -> BoxFuture<Result<RaftReply, TransportError>> {
        let net = self.net.clone();
        let from = self.from;
        Box::pin(async move {
            let (served, there) = {
                let mut s = net.lock();
                // A crashed node sends nothing.
                if !s.nodes.contains_key(&from) {
                    return Err(TransportError(format!("node {from} is down")));
                }
                let Some(served) = s.nodes.get(&target).cloned() else {
                    return Err(TransportError(format!("node {target} is down")));
                };
                (served, s.hop(from, target))
            };
            // A lost message never answers: the caller's deadline decides.
            let Some(delay) = there else {
                return std::future::pending().await;
            };
            tokio::time::sleep(delay).await;
            // Admission applies here as on the wire: the sender is who it says it is.
            let reply = match served.serve(from, rpc).await {
                Ok(r) => r,
                Err(_) => return std::future::pending().await,
            };
            let back = {
                let mut s = net.lock();
                // The sender may have crashed meanwhile; its reply then goes nowhere.
                if !s.nodes.contains_key(&from) {
                    None
                } else {
                    s.hop(target, from)
                }
            };
            let Some(delay) = back else {
                return std::future::pending().await;
            };
            tokio::time::sleep(delay).await;
            net.lock().delivered += 1;
            Ok(reply)
        })
    }
}
