//! Accepted-version headers as the engine keeps them: the log's header with its redo entries
//! decoded.

use chorus_chunking::{VersionId, VersionNumber};
use chorus_merge::RedoEntry;
use chorus_proto::header::{AcceptedHeader, NodeId};
use serde::{Deserialize, Serialize};

/// A committed header: which version became accepted, with which number, from which parents,
/// and what its merges displaced.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    pub version: VersionId,
    /// The previous head first, then the pushed versions merged into this one.
    pub parents: Vec<VersionId>,
    pub number: VersionNumber,
    pub origin: NodeId,
    pub created_at_ms: u64,
    pub redo: Vec<RedoEntry>,
}

impl Header {
    /// The header from the log. Redo bytes that do not decode (a leader of another build)
    /// become no entries and a warning; the version itself is still accepted.
    pub fn from_accepted(h: &AcceptedHeader) -> Header {
        let redo = decode_redo(&h.redo).unwrap_or_else(|e| {
            tracing::warn!(number = %h.number, "redo entries of a header do not decode: {e}");
            Vec::new()
        });
        Header {
            version: h.version,
            parents: h.parents.clone(),
            number: h.number,
            origin: h.origin,
            created_at_ms: h.created_at_ms,
            redo,
        }
    }

    /// True when `version` is this header's version or one it merged.
    pub fn includes(&self, version: &VersionId) -> bool {
        self.version == *version || self.parents.contains(version)
    }
}

/// Redo entries as a header carries them: JSON.
pub fn encode_redo(entries: &[RedoEntry]) -> Vec<u8> {
    if entries.is_empty() {
        return Vec::new();
    }
    serde_json::to_vec(entries).unwrap_or_default()
}

/// The inverse of [`encode_redo`].
pub fn decode_redo(bytes: &[u8]) -> Result<Vec<RedoEntry>, serde_json::Error> {
    if bytes.is_empty() {
        return Ok(Vec::new());
    }
    serde_json::from_slice(bytes)
}
