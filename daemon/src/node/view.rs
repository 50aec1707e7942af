//! [`WorkerView`]: what the worker publishes of its replica for the local socket (the history,
//! the redo stack, where the folder stands, transfers in progress), refreshed a few times a
//! second and right after each command. The async side adds what Raft and the network know
//! (`snapshot.rs`).

use std::collections::BTreeMap;
use std::sync::Arc;

use chorus_chunking::{VersionId, VersionNumber};
use chorus_merge::redo::WholeContent;
use chorus_merge::{ContentLoader, Displaced};
use chorus_proto::header::NodeId;
use chorus_sync::folder::Folder;
use chorus_sync::leader::Loader;
use chorus_sync::{Fetch, Replica};
use libp2p::PeerId;

use crate::api::{Conflict, ConflictDetail, HeldVersion, Version};

/// The replica's part of the socket's snapshot.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkerView {
    pub head: (VersionId, VersionNumber),
    pub adopted: (VersionId, VersionNumber),
    pub pending_local: Option<VersionId>,
    pub settled: bool,
    pub paused: bool,
    pub held: Option<HeldVersion>,
    pub transfers: Vec<Fetch>,
    pub last_shared: BTreeMap<NodeId, VersionId>,
    /// Paths that could not be written, with the reason.
    pub failures: Vec<(String, String)>,
    /// Why the folder cannot be used, when it cannot.
    pub unavailable: Option<String>,
    pub versions: Arc<Vec<Version>>,
    pub conflicts: Arc<Vec<Conflict>>,
    /// Accepted versions by id, for naming last-shared versions.
    pub numbers: Arc<BTreeMap<VersionId, VersionNumber>>,
    /// The head number and member count the history was read at (reread when either changes).
    read_at: Option<(VersionNumber, usize)>,
}

impl Default for WorkerView {
    /// Nothing accepted, nothing known yet.
    fn default() -> Self {
        let zero = (
            chorus_chunking::TreeManifest::empty().version_id(),
            VersionNumber::default(),
        );
        WorkerView {
            head: zero,
            adopted: zero,
            pending_local: None,
            settled: false,
            paused: false,
            held: None,
            transfers: Vec::new(),
            last_shared: BTreeMap::new(),
            failures: Vec::new(),
            unavailable: None,
            versions: Arc::default(),
            conflicts: Arc::default(),
            numbers: Arc::default(),
            read_at: None,
        }
    }
}

impl WorkerView {
    /// Brings the view up to date; true when anything changed.
    pub fn refresh<F: Folder>(
        &mut self,
        replica: &Replica<F>,
        peers: &BTreeMap<NodeId, PeerId>,
    ) -> bool {
        let before = self.clone();
        let engine = replica.engine();
        self.head = engine.head();
        self.adopted = engine.adopted();
        self.pending_local = engine.work();
        self.settled = engine.is_settled();
        self.paused = replica.is_paused();
        self.held = replica.held().map(|h| HeldVersion {
            version: h.version.to_string(),
            reason: if h.mass_delete.is_some() {
                "mass-delete"
            } else {
                "paused"
            }
            .to_owned(),
            deleting: h.mass_delete.map(|(d, _)| d),
            files: h.mass_delete.map(|(_, f)| f),
        });
        self.transfers = engine.fetches();
        self.last_shared = peers
            .keys()
            .filter_map(|id| engine.last_shared(*id).map(|v| (*id, v)))
            .collect();
        self.failures = replica
            .failures()
            .iter()
            .map(|(p, r)| (p.to_string(), r.clone()))
            .collect();
        self.unavailable = replica.unavailable().map(str::to_owned);
        let key = (self.head.1, peers.len());
        if self.read_at != Some(key) {
            match read_history(replica, peers) {
                Ok((versions, conflicts, numbers)) => {
                    self.versions = Arc::new(versions);
                    self.conflicts = Arc::new(conflicts);
                    self.numbers = Arc::new(numbers);
                    self.read_at = Some(key);
                }
                Err(e) => tracing::warn!("cannot read the history: {e}"),
            }
        }
        *self != before
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

/// What a redo entry displaced, as text, when it is text and short.
fn preview<F: Folder>(replica: &Replica<F>, what: &Displaced) -> Option<String> {
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
            Loader(&**replica.engine().chunks()).load(manifest).ok()?
        }
        _ => return None,
    };
    if bytes.len() > MAX {
        return None;
    }
    String::from_utf8(bytes).ok()
}

type History = (
    Vec<Version>,
    Vec<Conflict>,
    BTreeMap<VersionId, VersionNumber>,
);

/// Versions and the redo stack from the store.
fn read_history<F: Folder>(
    replica: &Replica<F>,
    peers: &BTreeMap<NodeId, PeerId>,
) -> Result<History, chorus_sync::EngineError> {
    let engine = replica.engine();
    let headers = engine.headers()?;
    let numbers = headers.iter().map(|h| (h.version, h.number)).collect();
    let versions = headers
        .iter()
        .map(|h| Version {
            number: h.number.to_string(),
            version: h.version.to_string(),
            origin: peers.get(&h.origin).map(|p| p.to_string()),
            origin_node: h.origin,
            created_at_ms: h.created_at_ms,
            // A merge either names the pushes it merged or displaced something (a merge whose
            // result is the pushed tree lists no second parent, but has redo entries).
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
    let conflicts = engine
        .redo()?
        .into_iter()
        .map(|r| {
            let resolved = replica
                .resolve(&r.entry)
                .unwrap_or_else(|_| r.entry.clone());
            (r, resolved)
        })
        .map(|(r, resolved)| Conflict {
            seq: r.seq,
            accepted_major: r.major,
            path: r.entry.path.as_ref().map(|p| p.to_string()),
            displaced_by: r.entry.displaced_by.to_string(),
            displaced_from: r.entry.displaced_from.to_string(),
            what: displaced_name(&r.entry.what).to_owned(),
            preview: preview(replica, &resolved.what),
            detail: ConflictDetail::of(&resolved.what, |m| {
                Loader(&**replica.engine().chunks()).load(m).ok()
            }),
        })
        .collect();
    Ok((versions, conflicts, numbers))
}
