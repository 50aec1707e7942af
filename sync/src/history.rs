//! [`History`]: the accepted versions as this node has applied them. Committed headers arrive
//! from Raft in log order; each moves the head, records which pushed versions it included (so
//! a retried push is answered rather than merged twice), and files the redo entries its merge
//! made. New headers and redo records are written with the engine's state in one transaction.

use std::collections::BTreeMap;

use chorus_chunking::VersionId;
use chorus_proto::header::AcceptedHeader;
use serde::{Deserialize, Serialize};

use crate::header::Header;
use crate::store::{AcceptedRef, RedoRecord, StoreError, SyncStore};

/// How many pushed-version inclusions are remembered for answering retried pushes.
pub const INCLUDED_KEPT: usize = 4096;

/// What the history remembers across restarts (besides the headers themselves).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryState {
    /// The newest committed header applied here.
    pub head: AcceptedRef,
    /// Pushed versions known to be included in a committed header, with that header's MAJOR
    /// (bounded to the most recent [`INCLUDED_KEPT`]).
    #[serde(with = "pairs")]
    pub included: BTreeMap<VersionId, u64>,
    /// Next redo entry key.
    pub redo_seq: u64,
}

/// A map with keys JSON cannot take (ids) as a list of pairs.
mod pairs {
    use std::collections::BTreeMap;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer, K: Serialize, V: Serialize>(
        m: &BTreeMap<K, V>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.collect_seq(m.iter())
    }

    pub fn deserialize<'de, D, K, V>(d: D) -> Result<BTreeMap<K, V>, D::Error>
    where
        D: Deserializer<'de>,
        K: Deserialize<'de> + Ord,
        V: Deserialize<'de>,
    {
        Ok(Vec::<(K, V)>::deserialize(d)?.into_iter().collect())
    }
}

impl HistoryState {
    /// Nothing accepted yet.
    pub fn fresh() -> Self {
        HistoryState {
            head: AcceptedRef::zero(),
            included: BTreeMap::new(),
            redo_seq: 0,
        }
    }

    /// Records that `version` is included in the header numbered `major`: a pushed version
    /// keeps the first header that included it; an accepted version's own tree (`accepted`)
    /// the newest, since a tree can be accepted again (an undo, a restore). Forgets the oldest
    /// records beyond the bound.
    pub fn include(&mut self, version: VersionId, major: u64, accepted: bool) {
        let at = self.included.entry(version).or_insert(major);
        if accepted {
            *at = (*at).max(major);
        }
        if self.included.len() > INCLUDED_KEPT {
            let cutoff = self.included.values().copied().min().unwrap_or(0);
            self.included.retain(|_, m| *m > cutoff);
        }
    }
}

/// The applied history of one node.
pub(crate) struct History {
    pub s: HistoryState,
    /// Headers applied since the last commit to the store.
    pub new_headers: Vec<Header>,
    pub new_redo: Vec<RedoRecord>,
}

impl History {
    pub fn new(s: HistoryState) -> Self {
        History {
            s,
            new_headers: Vec::new(),
            new_redo: Vec::new(),
        }
    }

    /// The headers of `headers` not applied yet, oldest first (Raft may hand the same header
    /// over more than once).
    pub fn unseen(
        &self,
        store: &SyncStore,
        mut headers: Vec<AcceptedHeader>,
    ) -> Result<Vec<AcceptedHeader>, StoreError> {
        let last = store
            .last_major()?
            .max(self.new_headers.last().map_or(0, |h| h.number.major));
        headers.sort_by_key(|h| h.number.major);
        headers.retain(|h| h.number.major > last);
        headers.dedup_by_key(|h| h.number.major);
        Ok(headers)
    }

    /// Applies one committed header (newer than every applied one).
    pub fn apply(&mut self, h: &AcceptedHeader) -> Header {
        let hd = Header::from_accepted(h);
        let major = hd.number.major;
        for entry in &hd.redo {
            self.new_redo.push(RedoRecord {
                seq: self.s.redo_seq,
                major,
                entry: entry.clone(),
            });
            self.s.redo_seq += 1;
        }
        self.s.include(hd.version, major, true);
        for parent in &hd.parents {
            self.s.include(*parent, major, false);
        }
        if major > self.s.head.number.major {
            self.s.head = AcceptedRef {
                version: hd.version,
                number: hd.number,
            };
        }
        self.new_headers.push(hd.clone());
        hd
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn included_versions_stay_bounded() {
        let mut s = HistoryState::fresh();
        for i in 0..(INCLUDED_KEPT as u64 + 10) {
            let mut id = [0u8; 32];
            id[..8].copy_from_slice(&i.to_le_bytes());
            s.include(VersionId(id), i + 1, false);
        }
        assert!(s.included.len() <= INCLUDED_KEPT);
    }
}
