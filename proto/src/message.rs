//! The sync messages as types: a decoded [`Body`] is parsed once into a [`Message`] whose ids
//! and numbers are the shared id types and whose required fields are present, so the engine
//! never re-checks a field. [`Message::into_body`] is the way back to the wire.

use crate::ids::{ChunkId, IdError, VersionId, VersionNumber};
use crate::{Body, RejectReason, v1};

/// A delta with its two ends parsed: build `target` from `base` with `wire` (chorus-chunking
/// applies it and verifies every chunk and the target's id).
#[derive(Debug, Clone, PartialEq)]
pub struct Delta {
    pub base: VersionId,
    pub target: VersionId,
    /// Boxed: a message holding a delta is otherwise several times the size of every other.
    pub wire: Box<v1::Delta>,
}

impl Delta {
    /// Parses a wire delta's ends.
    pub fn parse(wire: v1::Delta) -> Result<Delta, ParseError> {
        let base = id(wire.base.as_ref(), "Delta.base")?;
        let target = id(wire.target.as_ref(), "Delta.target")?;
        Ok(Delta {
            base,
            target,
            wire: Box::new(wire),
        })
    }
}

/// A run of a NeedChunks' ids (`count` of them from `first`) and the chunks the asker holds
/// that they replace: the answer may compress the run against them. Decoding checked that
/// runs lie within the ids, in order, without overlap.
#[derive(Debug, Clone, PartialEq)]
pub struct ChunkRun {
    pub first: u32,
    pub count: u32,
    pub dictionary: Vec<ChunkId>,
}

impl ChunkRun {
    fn from_proto(r: &v1::ChunkRun) -> Result<ChunkRun, ParseError> {
        Ok(ChunkRun {
            first: r.first,
            count: r.count,
            dictionary: r
                .dictionary
                .iter()
                .map(ChunkId::from_proto)
                .collect::<Result<_, _>>()?,
        })
    }

    fn into_proto(self) -> v1::ChunkRun {
        v1::ChunkRun {
            first: self.first,
            count: self.count,
            dictionary: self.dictionary.into_iter().map(ChunkId::to_proto).collect(),
        }
    }

    /// Its place in the ids.
    pub fn range(&self) -> std::ops::Range<usize> {
        self.first as usize..self.first as usize + self.count as usize
    }
}

/// One sync message (DESIGN.md §4), parsed.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    /// Follower to leader: the pushed version `delta.target`, built on `delta.base`, after the
    /// pusher's earlier pushes `before` (oldest first). `number` is what the pusher believes it
    /// to be; only the leader numbers versions.
    Push {
        number: VersionNumber,
        delta: Delta,
        before: Vec<VersionId>,
        /// What the push displaces on purpose (a redo), encoded redo entries; usually empty.
        displaced: Vec<u8>,
    },
    /// Leader to pusher: `version` is accepted as is, numbered `number`.
    Accepted {
        version: VersionId,
        number: VersionNumber,
    },
    /// Leader to pusher: `pushed` was merged into the accepted `delta.target`.
    Merged {
        pushed: VersionId,
        number: VersionNumber,
        delta: Delta,
    },
    /// Receiver to sender: resend the delta to `target` with the manifest of `base`.
    NeedBase { base: VersionId, target: VersionId },
    /// Receiver to sender: send these chunks of `target`; `runs` of them may come compressed
    /// against chunks the receiver holds.
    NeedChunks {
        target: VersionId,
        ids: Vec<ChunkId>,
        runs: Vec<ChunkRun>,
    },
    /// Chunk bytes (each checked against its id by the receiver).
    Chunks(v1::Chunks),
    /// "I do not lead": who does, as PeerId bytes, when known.
    NotLeader { leader: Option<Vec<u8>> },
    /// A message was refused, and why.
    Rejected {
        reason: RejectReason,
        detail: String,
    },
    /// "Hold `delta.target` durably" (replication before commit, catch-up, or a Want's answer).
    /// An `extra` version is held but is not what the members share (never a delta base).
    Offer { delta: Delta, extra: bool },
    /// "I hold `version` durably."
    Stored { version: VersionId },
    /// "Send me `want`, as a delta against `have`."
    Want { want: VersionId, have: VersionId },
}

/// Why a body is not a well-formed message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("{0} is missing")]
    Missing(&'static str),
    #[error(transparent)]
    Id(#[from] IdError),
    #[error("{field}: unknown value {value}")]
    Unknown { field: &'static str, value: i32 },
}

fn id(v: Option<&v1::VersionId>, field: &'static str) -> Result<VersionId, ParseError> {
    Ok(VersionId::from_proto(v.ok_or(ParseError::Missing(field))?)?)
}

fn number(v: Option<&v1::VersionNumber>, field: &'static str) -> Result<VersionNumber, ParseError> {
    Ok(VersionNumber::from_proto(
        v.ok_or(ParseError::Missing(field))?,
    ))
}

fn delta(v: Option<v1::Delta>, field: &'static str) -> Result<Delta, ParseError> {
    Delta::parse(v.ok_or(ParseError::Missing(field))?)
}

impl Message {
    /// Parses a body (already bounded by [`decode_frame`](crate::decode_frame)'s limits).
    pub fn parse(body: Body) -> Result<Message, ParseError> {
        Ok(match body {
            Body::Push(p) => Message::Push {
                number: number(p.number.as_ref(), "Push.number")?,
                before: p
                    .pushed_before
                    .iter()
                    .map(VersionId::from_proto)
                    .collect::<Result<_, _>>()?,
                delta: delta(p.delta, "Push.delta")?,
                displaced: p.displaced,
            },
            Body::Accepted(a) => Message::Accepted {
                version: id(a.version.as_ref(), "Accepted.version")?,
                number: number(a.number.as_ref(), "Accepted.number")?,
            },
            Body::Merged(m) => Message::Merged {
                pushed: id(m.pushed.as_ref(), "Merged.pushed")?,
                number: number(m.number.as_ref(), "Merged.number")?,
                delta: delta(m.delta, "Merged.delta")?,
            },
            Body::NeedBase(n) => Message::NeedBase {
                base: id(n.base.as_ref(), "NeedBase.base")?,
                target: id(n.target.as_ref(), "NeedBase.target")?,
            },
            Body::NeedChunks(n) => Message::NeedChunks {
                target: id(n.target.as_ref(), "NeedChunks.target")?,
                ids: n
                    .ids
                    .iter()
                    .map(ChunkId::from_proto)
                    .collect::<Result<_, _>>()?,
                runs: n
                    .runs
                    .iter()
                    .map(ChunkRun::from_proto)
                    .collect::<Result<_, _>>()?,
            },
            Body::Chunks(c) => Message::Chunks(c),
            Body::NotLeader(n) => Message::NotLeader {
                leader: (!n.leader_peer_id.is_empty()).then_some(n.leader_peer_id),
            },
            Body::Rejected(r) => Message::Rejected {
                reason: RejectReason::try_from(r.reason).map_err(|_| ParseError::Unknown {
                    field: "Rejected.reason",
                    value: r.reason,
                })?,
                detail: r.detail,
            },
            Body::Offer(o) => Message::Offer {
                delta: delta(o.delta, "Offer.delta")?,
                extra: o.extra,
            },
            Body::Stored(s) => Message::Stored {
                version: id(s.version.as_ref(), "Stored.version")?,
            },
            Body::Want(w) => Message::Want {
                want: id(w.want.as_ref(), "Want.want")?,
                have: id(w.have.as_ref(), "Want.have")?,
            },
        })
    }

    /// The message as the wire body.
    pub fn into_body(self) -> Body {
        match self {
            Message::Push {
                number,
                delta,
                before,
                displaced,
            } => Body::Push(v1::Push {
                number: Some(number.to_proto()),
                delta: Some(*delta.wire),
                pushed_before: before.into_iter().map(VersionId::to_proto).collect(),
                displaced,
            }),
            Message::Accepted { version, number } => Body::Accepted(v1::Accepted {
                version: Some(version.to_proto()),
                number: Some(number.to_proto()),
            }),
            Message::Merged {
                pushed,
                number,
                delta,
            } => Body::Merged(v1::Merged {
                pushed: Some(pushed.to_proto()),
                number: Some(number.to_proto()),
                delta: Some(*delta.wire),
            }),
            Message::NeedBase { base, target } => Body::NeedBase(v1::NeedBase {
                base: Some(base.to_proto()),
                target: Some(target.to_proto()),
            }),
            Message::NeedChunks { target, ids, runs } => Body::NeedChunks(v1::NeedChunks {
                target: Some(target.to_proto()),
                ids: ids.into_iter().map(ChunkId::to_proto).collect(),
                runs: runs.into_iter().map(ChunkRun::into_proto).collect(),
            }),
            Message::Chunks(c) => Body::Chunks(c),
            Message::NotLeader { leader } => Body::NotLeader(v1::NotLeader {
                leader_peer_id: leader.unwrap_or_default(),
                leader_addrs: Vec::new(),
            }),
            Message::Rejected { reason, detail } => Body::Rejected(v1::Rejected {
                reason: reason as i32,
                detail,
            }),
            Message::Offer { delta, extra } => Body::Offer(v1::Offer {
                delta: Some(*delta.wire),
                extra,
            }),
            Message::Stored { version } => Body::Stored(v1::Stored {
                version: Some(version.to_proto()),
            }),
            Message::Want { want, have } => Body::Want(v1::Want {
                want: Some(want.to_proto()),
                have: Some(have.to_proto()),
            }),
        }
    }

    /// The message's name, for logs.
    pub fn name(&self) -> &'static str {
        match self {
            Message::Push { .. } => "Push",
            Message::Accepted { .. } => "Accepted",
            Message::Merged { .. } => "Merged",
            Message::NeedBase { .. } => "NeedBase",
            Message::NeedChunks { .. } => "NeedChunks",
            Message::Chunks(_) => "Chunks",
            Message::NotLeader { .. } => "NotLeader",
            Message::Rejected { .. } => "Rejected",
            Message::Offer { .. } => "Offer",
            Message::Stored { .. } => "Stored",
            Message::Want { .. } => "Want",
        }
    }

    /// True for the bulky chunk traffic (NeedChunks and Chunks), which travels on a protocol
    /// of its own so it never holds up the rest.
    pub fn is_chunk_traffic(&self) -> bool {
        matches!(self, Message::NeedChunks { .. } | Message::Chunks(_))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vid(b: u8) -> VersionId {
        VersionId([b; 32])
    }

    #[test]
    fn every_message_round_trips_through_the_wire_body() {
        let d = Delta {
            base: vid(1),
            target: vid(2),
            wire: Box::new(v1::Delta {
                base: Some(vid(1).to_proto()),
                target: Some(vid(2).to_proto()),
                ..Default::default()
            }),
        };
        let n = VersionNumber::new(7, 2);
        let all = vec![
            Message::Push {
                number: n,
                delta: d.clone(),
                before: vec![vid(3)],
                displaced: b"[]".to_vec(),
            },
            Message::Accepted {
                version: vid(4),
                number: n,
            },
            Message::Merged {
                pushed: vid(5),
                number: n,
                delta: d.clone(),
            },
            Message::NeedBase {
                base: vid(1),
                target: vid(2),
            },
            Message::NeedChunks {
                target: vid(2),
                ids: vec![ChunkId([9; 32])],
                runs: Vec::new(),
            },
            Message::NeedChunks {
                target: vid(2),
                ids: vec![ChunkId([9; 32]), ChunkId([8; 32]), ChunkId([7; 32])],
                runs: vec![ChunkRun {
                    first: 1,
                    count: 2,
                    dictionary: vec![ChunkId([6; 32])],
                }],
            },
            Message::Chunks(v1::Chunks::default()),
            Message::NotLeader { leader: None },
            Message::NotLeader {
                leader: Some(vec![1, 2, 3]),
            },
            Message::Rejected {
                reason: RejectReason::Busy,
                detail: "later".into(),
            },
            Message::Offer {
                delta: d,
                extra: true,
            },
            Message::Stored { version: vid(6) },
            Message::Want {
                want: vid(7),
                have: vid(8),
            },
        ];
        for m in all {
            assert_eq!(Message::parse(m.clone().into_body()).unwrap(), m);
        }
    }

    #[test]
    fn missing_fields_and_bad_ids_are_parse_errors() {
        assert_eq!(
            Message::parse(Body::Accepted(v1::Accepted::default())),
            Err(ParseError::Missing("Accepted.version"))
        );
        let short = v1::VersionId { hash: vec![1; 5] };
        assert!(matches!(
            Message::parse(Body::Stored(v1::Stored {
                version: Some(short)
            })),
            Err(ParseError::Id(_))
        ));
        assert!(matches!(
            Message::parse(Body::Offer(v1::Offer {
                delta: Some(v1::Delta::default()),
                extra: false,
            })),
            Err(ParseError::Missing("Delta.base"))
        ));
    }
}
