//! The accepted-version header: the one thing the Raft log orders (DESIGN.md §7). A leader
//! proposes a [`Proposal`] (a version it holds on a majority, not yet numbered); applying it
//! gives an [`AcceptedHeader`] with its number. Content never rides here, only ids, so a header
//! stays far below the size openraft can ship within one heartbeat.

use serde::{Deserialize, Serialize};

use crate::ids::{VersionId, VersionNumber};

/// A node's Raft id: the first 8 bytes of BLAKE3 of its libp2p PeerId bytes.
pub type NodeId = u64;

/// Derives a node's Raft id from its PeerId bytes. Deterministic on every machine; two peers
/// whose ids collide cannot both be members (a join is refused).
pub fn node_id_of(peer_id: &[u8]) -> NodeId {
    let h = blake3::hash(peer_id);
    let mut b = [0u8; 8];
    b.copy_from_slice(&h.as_bytes()[..8]);
    u64::from_le_bytes(b)
}

/// Largest opaque redo payload a header may carry: headers must stay small, because openraft
/// times AppendEntries out after one heartbeat interval.
pub const MAX_REDO_BYTES: usize = 64 << 10;

/// Largest number of parents a header may name.
pub const MAX_PARENTS: usize = 16;

/// What the leader proposes: a version it holds on a majority, not yet numbered.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proposal {
    pub version: VersionId,
    /// The previous head first, then the pushed versions merged into this one.
    pub parents: Vec<VersionId>,
    /// The node whose change this is; its rank becomes the MINOR.
    pub origin: NodeId,
    /// Unix milliseconds at the origin.
    pub created_at_ms: u64,
    /// What the merge displaced, encoded by the sync engine (redo entries); opaque here.
    pub redo: Vec<u8>,
}

/// A committed header: a proposal with the number the log gave it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AcceptedHeader {
    pub version: VersionId,
    pub parents: Vec<VersionId>,
    pub number: VersionNumber,
    pub origin: NodeId,
    pub created_at_ms: u64,
    pub redo: Vec<u8>,
}

impl AcceptedHeader {
    /// True when `version` is this header's version or one it merged.
    pub fn includes(&self, version: &VersionId) -> bool {
        self.version == *version || self.parents.contains(version)
    }
}

/// Where the log puts a proposal, given its head: the rule chorus-election's state machine
/// applies (and the sync engine's test log with it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placement {
    /// The head proposed again: answered with the head's number, nothing appended.
    Again(VersionNumber),
    /// Appended as the next header.
    Next,
    /// Refused: built on a head that another header has replaced since.
    Refused,
}

/// The rule a log entry places its proposal by: each kind of entry keeps its rule for good, so
/// a log replays to the same chain whichever build wrote it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rule {
    /// Appended whatever the head (what the earliest builds wrote).
    Any,
    /// Appended only if its first parent is the head's version (what builds before the head's
    /// number was named wrote). A tree id does not tell two headers with the same tree apart.
    FirstParent,
    /// Appended only if built on the head numbered this MAJOR (0: no head yet), its first
    /// parent the head's version; the head again, built on the header before it, is a retry
    /// (answered with the head's number). What current builds propose.
    Head(u64),
}

/// Where a proposal goes on top of `head`.
///
/// Under [`Rule::Head`] it is appended when built on the head (the number it names is the
/// head's, and its first parent the head's version); the head again, as proposed (same tree,
/// parents and redo entries, built on the header before it), is answered with the head's
/// number (a retry of a proposal that did commit); anything else is refused: committed, it
/// would drop what the headers since it was built brought, or record its pushes and redo
/// entries a second time. Only the head's number tells a proposal built on the head from one
/// built on the header before it when that header kept its predecessor's tree (a merge that
/// kept the head everywhere, or one that only carries redo entries): both name the same tree
/// first.
///
/// The rules of earlier builds' entries: the head again (same tree and parents; under
/// [`Rule::FirstParent`] the same redo entries too) is answered with its number; otherwise
/// [`Rule::FirstParent`] refuses a proposal whose first parent is not the head's version and
/// [`Rule::Any`] appends. A proposal that names no parent passes either first-parent test.
pub fn placement(head: Option<&AcceptedHeader>, p: &Proposal, rule: Rule) -> Placement {
    let Some(h) = head else {
        return match rule {
            Rule::Head(n) if n != 0 => Placement::Refused,
            _ => Placement::Next,
        };
    };
    let same = h.version == p.version && h.parents == p.parents;
    let first_parent_is_head = p.parents.first().is_none_or(|first| *first == h.version);
    match rule {
        Rule::Head(n) if n == h.number.major && first_parent_is_head => Placement::Next,
        Rule::Head(n) if n.checked_add(1) == Some(h.number.major) && same && h.redo == p.redo => {
            Placement::Again(h.number)
        }
        Rule::Head(_) => Placement::Refused,
        Rule::Any if same => Placement::Again(h.number),
        Rule::Any => Placement::Next,
        Rule::FirstParent if same && h.redo == p.redo => Placement::Again(h.number),
        Rule::FirstParent if !first_parent_is_head => Placement::Refused,
        Rule::FirstParent => Placement::Next,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(version: u8, first_parent: u8, major: u64) -> AcceptedHeader {
        AcceptedHeader {
            version: VersionId([version; 32]),
            parents: vec![VersionId([first_parent; 32])],
            number: VersionNumber::new(major, 0),
            origin: 1,
            created_at_ms: 0,
            redo: Vec::new(),
        }
    }

    fn proposal(version: u8, parents: &[u8]) -> Proposal {
        Proposal {
            version: VersionId([version; 32]),
            parents: parents.iter().map(|p| VersionId([*p; 32])).collect(),
            origin: 1,
            created_at_ms: 0,
            redo: Vec::new(),
        }
    }

    /// Header 5 kept the tree of header 4 (tree 7) and took in a push (tree 8). A proposal
    /// built on header 4 names tree 7 first, as one built on header 5 does: the first-parent
    /// rule takes both, the head's number only the one built on the head.
    #[test]
    fn only_the_heads_number_tells_a_proposal_built_on_the_header_before_a_same_tree_one() {
        let mut head = header(7, 7, 5);
        head.parents.push(VersionId([8; 32]));
        let stale = proposal(9, &[7]);
        assert_eq!(
            placement(Some(&head), &stale, Rule::FirstParent),
            Placement::Next
        );
        assert_eq!(
            placement(Some(&head), &stale, Rule::Head(4)),
            Placement::Refused
        );
        assert_eq!(
            placement(Some(&head), &stale, Rule::Head(5)),
            Placement::Next
        );
        // Built on another tree, whatever number it names.
        assert_eq!(
            placement(Some(&head), &proposal(9, &[6]), Rule::Head(5)),
            Placement::Refused
        );
        // The head again, as proposed on the header before it: its number (a retry of a
        // proposal that did commit).
        let again = proposal(7, &[7, 8]);
        assert_eq!(
            placement(Some(&head), &again, Rule::Head(4)),
            Placement::Again(head.number)
        );
        // The head again, built on the head: a new header that looks like it (the log would
        // otherwise answer it with the head's number, and its leader propose it for ever).
        assert_eq!(
            placement(Some(&head), &again, Rule::Head(5)),
            Placement::Next
        );
        assert_eq!(
            placement(Some(&head), &again, Rule::Head(3)),
            Placement::Refused
        );
        // No head yet: only a proposal built on none.
        assert_eq!(placement(None, &stale, Rule::Head(0)), Placement::Next);
        assert_eq!(placement(None, &stale, Rule::Head(3)), Placement::Refused);
        assert_eq!(placement(None, &stale, Rule::FirstParent), Placement::Next);
        assert_eq!(placement(Some(&head), &stale, Rule::Any), Placement::Next);
    }

    #[test]
    fn node_ids_are_deterministic_and_spread() {
        assert_eq!(node_id_of(b"peer-a"), node_id_of(b"peer-a"));
        assert_ne!(node_id_of(b"peer-a"), node_id_of(b"peer-b"));
    }
}
