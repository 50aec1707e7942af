//! Raft RPCs and replies as bytes on the wire: postcard, a compact binary serde format (an
//! idle heartbeat is about 30 bytes where JSON took about 200). Decoding never trusts a length
//! it reads: serde allocates a sequence as its elements arrive, and the transport bounds the
//! frame before any of this runs.

use crate::types::{RaftReply, RaftRpc};

/// Bytes that are not a Raft message of this version.
#[derive(Debug, thiserror::Error)]
#[error("not a raft message: {0}")]
pub struct WireError(#[from] postcard::Error);

impl RaftRpc {
    /// This RPC's bytes.
    pub fn to_bytes(&self) -> Result<Vec<u8>, WireError> {
        Ok(postcard::to_stdvec(self)?)
    }

    /// The RPC in `bytes`; trailing bytes are refused.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, WireError> {
        whole(bytes)
    }
}

impl RaftReply {
    /// This reply's bytes.
    pub fn to_bytes(&self) -> Result<Vec<u8>, WireError> {
        Ok(postcard::to_stdvec(self)?)
    }

    /// The reply in `bytes`; trailing bytes are refused.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, WireError> {
        whole(bytes)
    }
}

fn whole<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, WireError> {
    let (value, rest) = postcard::take_from_bytes(bytes)?;
    if rest.is_empty() {
        Ok(value)
    } else {
        Err(WireError(postcard::Error::DeserializeBadEncoding))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use openraft::raft::{AppendEntriesRequest, AppendEntriesResponse, VoteRequest};
    use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId, Membership, Vote};

    use super::*;
    use crate::types::{Member, PreVoteRequest, Proposal, Request, TypeConfig};

    fn log_id(term: u64, index: u64) -> LogId<u64> {
        LogId::new(CommittedLeaderId::new(term, 7), index)
    }

    fn heartbeat() -> RaftRpc {
        RaftRpc::AppendEntries(AppendEntriesRequest::<TypeConfig> {
            vote: Vote::new_committed(3, 7),
            prev_log_id: Some(log_id(3, 41)),
            entries: vec![],
            leader_commit: Some(log_id(3, 41)),
        })
    }

    #[test]
    fn every_rpc_kind_survives_the_round_trip() {
        let members = BTreeMap::from([(
            7u64,
            Member {
                peer_id: vec![1, 2, 3],
                addresses: vec!["/ip4/10.0.0.1/tcp/4001".into()],
            },
        )]);
        let membership = Membership::new(vec![[7u64].into()], members);
        let proposal = Proposal {
            version: chorus_proto::ids::VersionId([9; 32]),
            parents: vec![chorus_proto::ids::VersionId([8; 32])],
            origin: 7,
            created_at_ms: 1_700_000_000_000,
            redo: vec![],
        };
        let rpcs = [
            heartbeat(),
            RaftRpc::AppendEntries(AppendEntriesRequest::<TypeConfig> {
                vote: Vote::new_committed(3, 7),
                prev_log_id: None,
                entries: vec![
                    Entry {
                        log_id: log_id(3, 1),
                        payload: EntryPayload::Blank,
                    },
                    Entry {
                        log_id: log_id(3, 2),
                        payload: EntryPayload::Membership(membership),
                    },
                    Entry {
                        log_id: log_id(3, 3),
                        payload: EntryPayload::Normal(Request::Accept(proposal)),
                    },
                ],
                leader_commit: None,
            }),
            RaftRpc::Vote(VoteRequest::new(Vote::new(4, 9), Some(log_id(3, 3)))),
            RaftRpc::PreVote(PreVoteRequest {
                vote: Vote::new(4, 9),
                last_log_id: Some(log_id(3, 3)),
            }),
        ];
        for rpc in rpcs {
            let bytes = rpc.to_bytes().expect("encodes");
            let back = RaftRpc::from_bytes(&bytes).expect("decodes");
            assert_eq!(format!("{back:?}"), format!("{rpc:?}"));
        }
        for reply in [
            RaftReply::AppendEntries(Ok(AppendEntriesResponse::Success)),
            RaftReply::PreVote(true),
        ] {
            let back = RaftReply::from_bytes(&reply.to_bytes().expect("encodes")).expect("decodes");
            assert_eq!(format!("{back:?}"), format!("{reply:?}"));
        }
    }

    #[test]
    fn a_heartbeat_is_a_few_dozen_bytes() {
        let bytes = heartbeat().to_bytes().expect("encodes");
        assert!(bytes.len() < 40, "{} bytes", bytes.len());
        let json = serde_json::to_vec(&heartbeat()).expect("encodes");
        assert!(json.len() > 4 * bytes.len(), "json {} bytes", json.len());
    }

    #[test]
    fn truncated_or_padded_bytes_are_refused() {
        let bytes = heartbeat().to_bytes().expect("encodes");
        for cut in 0..bytes.len() {
            assert!(RaftRpc::from_bytes(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut padded = bytes.clone();
        padded.push(0);
        assert!(RaftRpc::from_bytes(&padded).is_err());
    }
}
