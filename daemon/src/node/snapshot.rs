//! What the driver publishes for the local socket: a [`Snapshot`] built from the engine, Raft's
//! view and the network handle between two events of the loop, so the socket never reaches
//! into them itself.

use std::collections::BTreeMap;
use std::sync::Arc;

use chorus_chunking::{VersionId, VersionNumber};
use chorus_election::{NodeId, Role};
use chorus_merge::Displaced;
use chorus_merge::redo::WholeContent;

use super::{Driver, NodeError};
use crate::api::{
    Conflict, Event, HeldVersion, Peer, Snapshot, Status, Traffic, Transfer, Version, VersionRef,
};

/// The accepted history as the socket serves it, read from the store when the head moves.
#[derive(Clone)]
pub(super) struct History {
    versions: Arc<Vec<Version>>,
    conflicts: Arc<Vec<Conflict>>,
    numbers: BTreeMap<VersionId, VersionNumber>,
}

fn role_name(role: Role) -> &'static str {
    match role {
        Role::Leader => "leader",
        Role::Follower => "follower",
        Role::Candidate => "candidate",
        Role::Learner => "learner",
        Role::Shutdown => "stopped",
    }
}

fn displaced_name(d: &Displaced) -> &'static str {
    match d {
        Displaced::Hunk(_) => "hunk",
        Displaced::Whole { .. } => "whole",
        Displaced::Deletion { .. } => "deletion",
        Displaced::Mode { .. } => "mode",
    }
}

fn version_ref((version, number): (VersionId, VersionNumber)) -> VersionRef {
    VersionRef {
        number: number.to_string(),
        version: version.to_string(),
    }
}

/// What changed between two snapshots, as `/v1/events` reports it: newly accepted versions,
/// a new leader or role, peers that connected or went away, new redo entries.
pub(super) fn events_between(old: &Snapshot, new: &Snapshot, at_ms: u64) -> Vec<Event> {
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
    }
    out
}

impl Driver {
    /// The node's state now.
    pub(super) async fn snapshot(&mut self) -> Result<Snapshot, NodeError> {
        let head = self.engine.head();
        // Origins are named from the membership: a change of it rereads the history too.
        let key = (head.1, self.peers.len());
        let history = match &self.history {
            Some((at, h)) if *at == key => h.clone(),
            _ => {
                let h = self.read_history()?;
                self.history = Some((key, h.clone()));
                h
            }
        };
        let view = self.election.view();
        let me = self.engine.id();
        let connected = self.net.connected().await?;
        let members = self.election.members();
        let peer_name = |id: NodeId| self.peers.get(&id).map(|p| p.to_string());
        let stats = self.net.peer_stats();
        let peers: Vec<Peer> = members
            .iter()
            .filter(|(id, _)| **id != me)
            .map(|(id, m)| {
                let peer = self.peers.get(id);
                let role = if view.leader == Some(*id) {
                    "leader"
                } else if view.voters.contains(id) {
                    "voter"
                } else {
                    "learner"
                };
                let last_shared = self.engine.last_shared(*id);
                let st = peer.and_then(|p| stats.get(p)).copied().unwrap_or_default();
                Peer {
                    peer_id: peer.map_or_else(|| format!("node {id}"), |p| p.to_string()),
                    addresses: m.addresses.clone(),
                    connected: peer.is_some_and(|p| connected.contains(p)),
                    role: role.to_owned(),
                    last_shared: last_shared.map(|v| v.to_string()),
                    last_shared_number: last_shared
                        .and_then(|v| history.numbers.get(&v))
                        .map(|n| n.to_string()),
                    bytes_sent: st.sent,
                    bytes_received: st.received,
                    rtt_ms: st.rtt.map(|d| d.as_secs_f64() * 1000.0),
                }
            })
            .collect();
        let (sync_sent, sync_received) = self.net.bytes();
        let (raft_sent, raft_received) = self.net.raft_bytes();
        let status = Status {
            peer_id: self.net.local_peer_id().to_string(),
            role: role_name(view.role).to_owned(),
            term: view.term,
            leader: view.leader.and_then(peer_name),
            head: version_ref(head),
            adopted: version_ref(self.engine.adopted()),
            pending_local: self.engine.work().map(|v| v.to_string()),
            settled: self.engine.is_settled(),
            peers_connected: peers.iter().filter(|p| p.connected).count(),
            peers: peers.len(),
            traffic: Traffic {
                sync_sent,
                sync_received,
                raft_sent,
                raft_received,
            },
            share: self.share.path().display().to_string(),
            paused: self.paused,
            transfers: self
                .engine
                .fetches()
                .into_iter()
                .map(|f| Transfer {
                    peer: peer_name(f.from).unwrap_or_else(|| format!("node {}", f.from)),
                    version: f.target.to_string(),
                    chunks: f.chunks,
                    received: f.received,
                })
                .collect(),
            held: self.held.as_ref().map(|h| HeldVersion {
                version: h.version.to_string(),
                reason: if h.mass_delete.is_some() {
                    "mass-delete"
                } else {
                    "paused"
                }
                .to_owned(),
                deleting: h.mass_delete.map(|(d, _)| d),
                files: h.mass_delete.map(|(_, f)| f),
            }),
        };
        Ok(Snapshot {
            status,
            peers,
            versions: history.versions,
            conflicts: history.conflicts,
            accepted: head.1.major,
        })
    }

    /// What a redo entry displaced, as text, when it is text and short.
    fn preview(&self, what: &Displaced) -> Option<String> {
        const MAX: usize = 64 << 10;
        let bytes = match what {
            Displaced::Hunk(h) => h.displaced.0.clone(),
            Displaced::Whole {
                content: WholeContent::Bytes(b),
                ..
            } => b.0.clone(),
            Displaced::Whole {
                content: WholeContent::File { manifest, .. },
                ..
            } if manifest.size() as usize <= MAX => {
                use chorus_merge::ContentLoader;
                chorus_sync::leader::Loader(&*self.chunks)
                    .load(manifest)
                    .ok()?
            }
            _ => return None,
        };
        if bytes.len() > MAX {
            return None;
        }
        String::from_utf8(bytes).ok()
    }

    /// Versions and the redo stack from the store.
    fn read_history(&self) -> Result<History, NodeError> {
        let headers = self.engine.headers()?;
        let numbers = headers.iter().map(|h| (h.version, h.number)).collect();
        let versions = headers
            .iter()
            .map(|h| Version {
                number: h.number.to_string(),
                version: h.version.to_string(),
                origin: self.peers.get(&h.origin).map(|p| p.to_string()),
                origin_node: h.origin,
                created_at_ms: h.created_at_ms,
                // A merge either names the pushes it merged or displaced something (a merge
                // whose result is the pushed tree lists no second parent, but has redo entries).
                kind: if h.parents.len() > 1 || !h.redo.is_empty() {
                    "merge"
                } else {
                    "fast-forward"
                }
                .to_owned(),
                parents: h.parents.iter().map(|p| p.to_string()).collect(),
                displaced: h.redo.len(),
            })
            .collect();
        let conflicts = self
            .engine
            .redo()?
            .into_iter()
            .map(|r| Conflict {
                seq: r.seq,
                accepted_major: r.major,
                path: r.entry.path.as_ref().map(|p| p.to_string()),
                displaced_by: r.entry.displaced_by.to_string(),
                displaced_from: r.entry.displaced_from.to_string(),
                what: displaced_name(&r.entry.what).to_owned(),
                preview: self.preview(&r.entry.what),
            })
            .collect();
        Ok(History {
            versions: Arc::new(versions),
            conflicts: Arc::new(conflicts),
            numbers,
        })
    }
}
