//! The socket's [`Snapshot`]: the worker's view of the replica joined with what Raft and the
//! network know now (role, term, leader, members, connections, bytes), composed on the async
//! side, so the socket never reaches into the engine, Raft or the network task itself; and the
//! events that differ between two snapshots (`/v1/events`).

use std::sync::Arc;

use chorus_chunking::{VersionId, VersionNumber};
use chorus_election::{ElectionNode, Role};
use chorus_proto::header::NodeId;
use libp2p::PeerId;
use tokio::sync::watch;

use super::NodeError;
use super::view::WorkerView;
use crate::api::{Event, Peer, Snapshot, Status, Traffic, Transfer, VersionRef};
use crate::net::{self, NetHandle};

fn role_name(role: Role) -> &'static str {
    match role {
        Role::Leader => "leader",
        Role::Follower => "follower",
        Role::Candidate => "candidate",
        Role::Learner => "learner",
        Role::Shutdown => "stopped",
    }
}

fn version_ref((version, number): (VersionId, VersionNumber)) -> VersionRef {
    VersionRef {
        number: number.to_string(),
        version: version.to_string(),
    }
}

/// Composes snapshots.
pub struct Composer {
    pub election: Arc<ElectionNode>,
    pub net: NetHandle,
    pub view: watch::Receiver<WorkerView>,
    /// The share's path, as shown.
    pub share: String,
    pub retention: chorus_sync::Retention,
    /// The newest redo entry the user has looked at (`chorus conflicts`), kept in a file of
    /// the state dir so a restart does not show them again.
    pub seen: Seen,
}

/// Which redo entries the user has seen: the newest SEQ, in memory and in a file.
pub struct Seen {
    upto: std::sync::atomic::AtomicU64,
    file: std::path::PathBuf,
}

impl Seen {
    /// Reads the state dir's record (none yet: nothing seen).
    pub fn load(state_dir: &std::path::Path) -> Seen {
        let file = state_dir.join("conflicts-seen");
        let upto = std::fs::read_to_string(&file)
            .ok()
            .and_then(|t| t.trim().parse().ok())
            .unwrap_or(0);
        Seen {
            upto: upto.into(),
            file,
        }
    }

    pub fn upto(&self) -> u64 {
        self.upto.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Records that the entries up to `upto` were shown.
    pub fn mark(&self, upto: u64) -> std::io::Result<u64> {
        let now = self
            .upto
            .fetch_max(upto, std::sync::atomic::Ordering::Relaxed)
            .max(upto);
        std::fs::write(&self.file, format!("{now}\n"))?;
        Ok(now)
    }
}

impl Composer {
    /// The node's state now.
    pub async fn compose(&self) -> Result<Snapshot, NodeError> {
        let w = self.view.borrow().clone();
        let view = self.election.view();
        let me = self.election.id();
        let connected = self.net.connected().await?;
        let members = self.election.members();
        let peer_of = |id: NodeId| {
            members
                .get(&id)
                .and_then(|m| PeerId::from_bytes(&m.peer_id).ok())
        };
        let stats = self.net.peer_stats();
        let now_ms = super::worker::now_ms();
        let peers: Vec<Peer> = members
            .iter()
            .filter(|(id, _)| **id != me)
            .map(|(id, m)| {
                let peer = peer_of(*id);
                let role = if view.leader == Some(*id) {
                    "leader"
                } else if view.voters.contains(id) {
                    "voter"
                } else {
                    "learner"
                };
                let last_shared = w.last_shared.get(id).copied();
                let st = peer
                    .and_then(|p| stats.get(&p))
                    .cloned()
                    .unwrap_or_default();
                let is_connected = peer.is_some_and(|p| connected.contains(&p));
                Peer {
                    peer_id: peer.map_or_else(|| format!("node {id}"), |p| p.to_string()),
                    addresses: m.addresses.clone(),
                    connected: is_connected,
                    last_seen_ms: if is_connected {
                        Some(now_ms)
                    } else {
                        st.last_seen_ms
                    },
                    role: role.to_owned(),
                    last_shared: last_shared.map(|v| v.to_string()),
                    last_shared_number: last_shared
                        .and_then(|v| w.numbers.get(&v))
                        .map(|n| n.to_string()),
                    bytes_sent: st.sent,
                    bytes_received: st.received,
                    rtt_ms: st.rtt.map(|d| d.as_secs_f64() * 1000.0),
                    path: st
                        .path
                        .as_ref()
                        .filter(|_| is_connected)
                        .map(|p| p.kind.as_str().to_owned()),
                    path_addr: st
                        .path
                        .as_ref()
                        .filter(|_| is_connected)
                        .map(|p| p.addr.to_string()),
                    connections: if is_connected { st.connections } else { 0 },
                }
            })
            .collect();
        let (sync_sent, sync_received) = self.net.bytes();
        let reach = self.net.reachability();
        let (raft_sent, raft_received) = self.net.raft_bytes();
        let name = |id: NodeId| peer_of(id).map(|p| p.to_string());
        let status = Status {
            peer_id: self.net.local_peer_id().to_string(),
            role: role_name(view.role).to_owned(),
            term: view.term,
            leader: view.leader.and_then(name),
            head: version_ref(w.head),
            adopted: version_ref(w.adopted),
            pending_local: w.pending_local.map(|v| v.to_string()),
            settled: w.settled,
            peers_connected: peers.iter().filter(|p| p.connected).count(),
            unreachable: peers
                .iter()
                .filter(|p| !p.connected)
                .map(|p| p.peer_id.clone())
                .collect(),
            peers: peers.len(),
            reachability: reach.as_str().to_owned(),
            public_addrs: match &reach {
                net::Reachability::Public(addrs) => addrs.iter().map(|a| a.to_string()).collect(),
                _ => Vec::new(),
            },
            traffic: Traffic {
                sync_sent,
                sync_received,
                raft_sent,
                raft_received,
            },
            share: self.share.clone(),
            paused: w.paused,
            transfers: w
                .transfers
                .iter()
                .map(|f| Transfer {
                    peer: name(f.from).unwrap_or_else(|| format!("node {}", f.from)),
                    version: f.target.to_string(),
                    chunks: f.chunks,
                    received: f.received,
                })
                .collect(),
            held: w.held.clone(),
            retention: Some(crate::api::RetentionView {
                keep_versions: self.retention.keep_last,
                keep_days: self.retention.keep_ms / (24 * 3600 * 1000),
            }),
            displaced_here: {
                // MINOR of a change's number is the rank of the node that made it.
                let rank = self.election.ranks().get(&self.election.id()).copied();
                let seen = self.seen.upto();
                w.conflicts
                    .iter()
                    .filter(|c| c.seq > seen)
                    .filter(|c| {
                        rank.is_some_and(|r| {
                            c.displaced_from.rsplit('.').next() == Some(&r.to_string())
                        })
                    })
                    .map(|c| c.seq)
                    .collect()
            },
        };
        Ok(Snapshot {
            status,
            peers,
            versions: w.versions.clone(),
            conflicts: w.conflicts.clone(),
            accepted: w.head.1.major,
        })
    }
}

/// What changed between two snapshots, as `/v1/events` reports it: newly accepted versions,
/// a new leader or role, peers that connected or went away, new redo entries.
pub fn events_between(old: &Snapshot, new: &Snapshot, at_ms: u64) -> Vec<Event> {
    let mut out = Vec::new();
    let mut ev = |kind: &str, detail: serde_json::Value| {
        out.push(Event {
            kind: kind.to_owned(),
            at_ms,
            detail,
        })
    };
    if old.status.head != new.status.head {
        ev(
            "accepted",
            serde_json::json!({"number": new.status.head.number, "version": new.status.head.version}),
        );
    }
    if (&old.status.role, &old.status.leader, old.status.term)
        != (&new.status.role, &new.status.leader, new.status.term)
    {
        ev(
            "leader",
            serde_json::json!({"role": new.status.role, "term": new.status.term, "leader": new.status.leader}),
        );
    }
    for p in &new.peers {
        let before = old.peers.iter().find(|q| q.peer_id == p.peer_id);
        if before.is_none_or(|q| q.connected != p.connected) {
            ev(
                "peer",
                serde_json::json!({"peer_id": p.peer_id, "connected": p.connected}),
            );
        }
    }
    let known = old.conflicts.last().map(|c| c.seq);
    for c in new
        .conflicts
        .iter()
        .filter(|c| known.is_none_or(|k| c.seq > k))
    {
        ev(
            "conflict",
            serde_json::json!({"seq": c.seq, "path": c.path, "what": c.what, "displaced_from": c.displaced_from}),
        );
        if new.status.displaced_here.contains(&c.seq) {
            // Said once, on the node whose change it was.
            tracing::info!(
                "your change {} to {} was displaced by {} in a merge: `chorus conflicts {}` shows it, `chorus redo {}` brings it back",
                c.displaced_from,
                chorus_proto::shown(c.path.as_deref().unwrap_or("the share")),
                c.displaced_by,
                c.seq,
                c.seq
            );
            ev(
                "displaced",
                serde_json::json!({"seq": c.seq, "path": c.path, "displaced_by": c.displaced_by, "displaced_from": c.displaced_from}),
            );
        }
    }
    out
}
