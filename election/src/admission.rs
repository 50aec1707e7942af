//! Admission of Raft RPCs and their replies: what a peer sends is checked against who sent it
//! and bounded before openraft sees it.
//!
//! openraft trusts its peers. A node that holds the share secret is not trusted that far:
//! - **Who**: an RPC names its sender (the vote's leader id); it must be the node whose
//!   authenticated libp2p identity delivered it, and that node must be in the membership this
//!   node knows (a node with no membership yet, a fresh joiner, accepts its first leader).
//! - **Terms and indices**: openraft computes `term + 1` and `index + 1`; a forged
//!   `u64::MAX` would wrap and panic the node, and because a vote is persisted, panic it at
//!   every start. Every term must lie within [`MAX_TERM_STEP`] of this node's current term
//!   and below [`MAX_TERM`]; every log index below [`MAX_INDEX`]. Replies are held to the same
//!   bounds, so a forged `HigherVote` cannot plant such a term either.
//! - **Snapshots**: a chunk's offset plus its length must stay within [`MAX_SNAPSHOT_BYTES`]
//!   (openraft writes a chunk at its offset into a growing buffer).
//!
//! A refused RPC gets no answer; the sender sees a timeout, as if the frame were lost.

use openraft::{LogId, Vote};

use openraft::raft::VoteRequest;

use crate::types::{NodeId, PreVoteRequest, RaftReply, RaftRpc, TypeConfig};

/// No term ever goes above this; half of `u64`, so `term + 1` can never wrap.
pub const MAX_TERM: u64 = u64::MAX / 2;
/// How far above this node's current term a peer may name a term. An honest node cut off
/// from the group raises its term by one per election timeout (150 ms at the fastest), so
/// 2^32 is over 20 years alone; a hostile member needs 2^31 accepted messages to carry the
/// group from 0 to [`MAX_TERM`] (where no election could follow: docs/security.md).
pub const MAX_TERM_STEP: u64 = 1 << 32;
/// No log index goes above this (a log of 2^62 headers is never written).
pub const MAX_INDEX: u64 = u64::MAX / 4;
/// The largest snapshot accepted. A snapshot holds the head header, the membership and the
/// ranks (kilobytes for any real group); this leaves room for thousands of members.
pub const MAX_SNAPSHOT_BYTES: u64 = 16 << 20;

/// Why an RPC or a reply was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("the RPC names node {claimed} as its sender but came from node {from}")]
    Impostor { from: NodeId, claimed: NodeId },
    #[error("node {0} is not in this node's membership")]
    NotMember(NodeId),
    #[error("term {term} is out of bounds (current term {current})")]
    Term { term: u64, current: u64 },
    #[error("log index {0} is out of bounds")]
    Index(u64),
    #[error("a snapshot chunk at {offset} of {len} bytes exceeds {MAX_SNAPSHOT_BYTES} bytes")]
    Snapshot { offset: u64, len: u64 },
}

/// What a check needs to know about this node.
#[derive(Debug, Clone, Default)]
pub struct Local {
    /// Its current term.
    pub term: u64,
    /// The members (voters and learners) of the membership it knows; empty before any.
    pub members: std::collections::BTreeSet<NodeId>,
}

impl Local {
    /// Reads what the checks need from openraft's metrics.
    pub fn of(raft: &openraft::Raft<TypeConfig>) -> Self {
        let m = raft.metrics();
        let m = m.borrow();
        Local {
            term: m.current_term,
            members: m
                .membership_config
                .membership()
                .nodes()
                .map(|(id, _)| *id)
                .collect(),
        }
    }

    fn term(&self, term: u64) -> Result<(), Refused> {
        let ceiling = self.term.saturating_add(MAX_TERM_STEP).min(MAX_TERM);
        if term > ceiling {
            return Err(Refused::Term {
                term,
                current: self.term,
            });
        }
        Ok(())
    }

    fn vote(&self, v: &Vote<NodeId>) -> Result<(), Refused> {
        self.term(v.leader_id.term)
    }

    fn log_id(&self, l: &Option<LogId<NodeId>>) -> Result<(), Refused> {
        if let Some(l) = l {
            self.term(l.leader_id.term)?;
            if l.index > MAX_INDEX {
                return Err(Refused::Index(l.index));
            }
        }
        Ok(())
    }

    /// The sender named in the RPC is `from`, and `from` is a member (or there is no
    /// membership yet).
    fn sender(&self, from: NodeId, v: &Vote<NodeId>) -> Result<(), Refused> {
        let claimed = v.leader_id.node_id;
        if claimed != from {
            return Err(Refused::Impostor { from, claimed });
        }
        if !self.members.is_empty() && !self.members.contains(&from) {
            return Err(Refused::NotMember(from));
        }
        Ok(())
    }
}

/// Checks an RPC that node `from` (authenticated by the transport) sent to this node.
pub fn check_rpc(local: &Local, from: NodeId, rpc: &RaftRpc) -> Result<(), Refused> {
    match rpc {
        RaftRpc::AppendEntries(r) => {
            local.sender(from, &r.vote)?;
            local.vote(&r.vote)?;
            local.log_id(&r.prev_log_id)?;
            local.log_id(&r.leader_commit)?;
            for e in &r.entries {
                local.log_id(&Some(e.log_id))?;
            }
        }
        // A pre-vote names its candidate and its log as a vote does.
        RaftRpc::Vote(VoteRequest {
            vote, last_log_id, ..
        })
        | RaftRpc::PreVote(PreVoteRequest { vote, last_log_id }) => {
            local.sender(from, vote)?;
            local.vote(vote)?;
            local.log_id(last_log_id)?;
        }
        RaftRpc::InstallSnapshot(r) => {
            local.sender(from, &r.vote)?;
            local.vote(&r.vote)?;
            local.log_id(&r.meta.last_log_id)?;
            local.log_id(r.meta.last_membership.log_id())?;
            let len = r.data.len() as u64;
            if r.offset.saturating_add(len) > MAX_SNAPSHOT_BYTES {
                return Err(Refused::Snapshot {
                    offset: r.offset,
                    len,
                });
            }
        }
    }
    Ok(())
}

/// Checks a reply to an RPC this node sent: its terms and indices are bounded as a request's.
pub fn check_reply(local: &Local, reply: &RaftReply) -> Result<(), Refused> {
    use openraft::raft::AppendEntriesResponse as A;
    match reply {
        RaftReply::AppendEntries(Ok(A::HigherVote(v))) => local.vote(v),
        RaftReply::AppendEntries(Ok(A::PartialSuccess(l))) => local.log_id(l),
        RaftReply::AppendEntries(_) => Ok(()),
        RaftReply::Vote(Ok(v)) => {
            local.vote(&v.vote)?;
            local.log_id(&v.last_log_id)
        }
        RaftReply::Vote(Err(_)) => Ok(()),
        RaftReply::InstallSnapshot(Ok(r)) => local.vote(&r.vote),
        RaftReply::InstallSnapshot(Err(_)) => Ok(()),
        RaftReply::PreVote(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::raft::{AppendEntriesRequest, VoteRequest};
    use openraft::{CommittedLeaderId, LeaderId};

    fn local() -> Local {
        Local {
            term: 7,
            members: [1, 2, 3].into(),
        }
    }

    fn vote(term: u64, node: NodeId) -> Vote<NodeId> {
        Vote {
            leader_id: LeaderId::new(term, node),
            committed: false,
        }
    }

    fn append(from: NodeId, term: u64) -> RaftRpc {
        RaftRpc::AppendEntries(AppendEntriesRequest {
            vote: vote(term, from),
            prev_log_id: None,
            entries: vec![],
            leader_commit: None,
        })
    }

    #[test]
    fn an_honest_heartbeat_passes() {
        assert_eq!(check_rpc(&local(), 2, &append(2, 8)), Ok(()));
        // A node with no membership yet accepts its first leader.
        assert_eq!(check_rpc(&Local::default(), 9, &append(9, 1)), Ok(()));
    }

    #[test]
    fn an_rpc_in_another_nodes_name_is_refused() {
        assert_eq!(
            check_rpc(&local(), 3, &append(2, 8)),
            Err(Refused::Impostor {
                from: 3,
                claimed: 2
            })
        );
        assert_eq!(
            check_rpc(&local(), 9, &append(9, 8)),
            Err(Refused::NotMember(9))
        );
    }

    #[test]
    fn terms_that_would_wrap_or_leap_are_refused() {
        for term in [u64::MAX, MAX_TERM + 1, 7 + MAX_TERM_STEP + 1] {
            assert!(matches!(
                check_rpc(&local(), 2, &append(2, term)),
                Err(Refused::Term { .. })
            ));
        }
        assert_eq!(
            check_rpc(&local(), 2, &append(2, 7 + MAX_TERM_STEP)),
            Ok(())
        );
        let v = RaftRpc::Vote(VoteRequest {
            vote: vote(8, 2),
            last_log_id: Some(LogId::new(CommittedLeaderId::new(u64::MAX, 2), 1)),
        });
        assert!(matches!(
            check_rpc(&local(), 2, &v),
            Err(Refused::Term { .. })
        ));
        let v = RaftRpc::Vote(VoteRequest {
            vote: vote(8, 2),
            last_log_id: Some(LogId::new(CommittedLeaderId::new(7, 2), u64::MAX)),
        });
        assert_eq!(check_rpc(&local(), 2, &v), Err(Refused::Index(u64::MAX)));
    }

    #[test]
    fn a_pre_vote_is_held_to_a_votes_rules() {
        let pre = |from, term, last: Option<LogId<NodeId>>| {
            RaftRpc::PreVote(PreVoteRequest {
                vote: vote(term, from),
                last_log_id: last,
            })
        };
        assert_eq!(check_rpc(&local(), 2, &pre(2, 8, None)), Ok(()));
        assert_eq!(
            check_rpc(&local(), 3, &pre(2, 8, None)),
            Err(Refused::Impostor {
                from: 3,
                claimed: 2
            })
        );
        assert_eq!(
            check_rpc(&local(), 9, &pre(9, 8, None)),
            Err(Refused::NotMember(9))
        );
        assert!(matches!(
            check_rpc(&local(), 2, &pre(2, u64::MAX, None)),
            Err(Refused::Term { .. })
        ));
        let far = Some(LogId::new(CommittedLeaderId::new(7, 2), u64::MAX));
        assert_eq!(
            check_rpc(&local(), 2, &pre(2, 8, far)),
            Err(Refused::Index(u64::MAX))
        );
    }

    #[test]
    fn a_forged_higher_vote_in_a_reply_is_refused() {
        let r = RaftReply::AppendEntries(Ok(openraft::raft::AppendEntriesResponse::HigherVote(
            vote(u64::MAX, 2),
        )));
        assert!(matches!(
            check_reply(&local(), &r),
            Err(Refused::Term { .. })
        ));
        let r = RaftReply::AppendEntries(Ok(openraft::raft::AppendEntriesResponse::HigherVote(
            vote(9, 2),
        )));
        assert_eq!(check_reply(&local(), &r), Ok(()));
    }
}
