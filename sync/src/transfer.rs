//! Deltas out and in. Outgoing: Push (follower to leader), Offer (leader to member, or any
//! holder to a node that asked with Want) and Merged (leader to pusher), each remembered per
//! (peer, target) so a NeedBase can be answered by resending with the base's manifest (or
//! against the empty tree). Incoming: a delta is applied and verified by chorus-chunking; when
//! chunks are missing the receiver asks for exactly those (NeedChunks), keeps the delta, and
//! applies it again once the Chunks arrive. Chunks already received stay stored, so a transfer
//! cut off half way resumes without resending them.

use std::collections::{HashMap, HashSet};

use chorus_chunking::delta::{ApplyError, EncodeOptions, apply, encode};
use chorus_chunking::fetch::{chunks_messages, receive_chunks};
use chorus_chunking::{ChunkId, TreeManifest, VersionId, VersionNumber};
use chorus_proto::header::NodeId;
use chorus_proto::{self as proto, Body, RejectReason};

use super::engine::{Engine, EngineError};

/// Most chunk bytes sent in answer to one NeedChunks; the rest is asked for again when the
/// receiver retries (every chunk that arrived stays stored there).
const MAX_CHUNK_ANSWER: usize = 64 << 20;
/// Chunk bytes per Chunks message: small enough that the buffers of a frame come from the
/// allocator's reuse rather than fresh pages (16 MiB frames spent a fifth of the sender's time
/// zeroing pages), large enough to amortise the per-message cost.
const CHUNKS_FRAME: usize = 2 << 20;
/// Chunks read per batch while answering.
const CHUNK_BATCH: usize = 256;
/// Outgoing deltas remembered for NeedBase answers.
const OUTGOING_KEPT: usize = 1024;
/// A chunk sent to a peer is not sent to it again within this long: a NeedChunks repeated
/// while the first answer is still on its way (a slow link, a bandwidth limit) would otherwise
/// send the same bytes twice. Lost chunks are sent again after it.
const RESEND_AFTER_MS: u64 = 15_000;
/// Chunk sends remembered for that, all peers together.
const SENT_KEPT: usize = 1 << 20;
/// Bytes of chunks asked for at a time: the next window is asked for as soon as this one has
/// arrived, so a large transfer streams in bounded memory with one round trip per window
/// instead of waiting for the sender's retry timer. 8 MiB a round trip is 80 MB/s at 100 ms;
/// 32 MiB cost 50 MB more of peak RSS on each side for no speed on a LAN (1 GiB between two
/// local nodes: 119 MB -> 69 MB on the receiver, 12-15 s either way).
const FETCH_WINDOW_BYTES: u64 = 8 << 20;
/// Chunks per window, whatever their size: every window re-applies the whole delta, so a
/// version of many small files (100,000 of ~600 bytes) must not take thousands of windows.
const FETCH_WINDOW_CHUNKS: std::ops::RangeInclusive<u64> = 128..=8192;

/// What an incoming delta is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming {
    Push {
        number: VersionNumber,
        /// What the pusher pushed before, oldest first ([`proto::Push::pushed_before`]).
        before: Vec<VersionId>,
    },
    Merged {
        pushed: VersionId,
        number: VersionNumber,
    },
    Offer,
}

impl Incoming {
    fn slot(&self) -> u8 {
        match self {
            Incoming::Push { .. } => 0,
            Incoming::Merged { .. } => 1,
            Incoming::Offer => 2,
        }
    }
}

/// What an outgoing delta was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Outgoing {
    Push {
        base: VersionId,
        number: VersionNumber,
    },
    Offer,
    Merged {
        pushed: VersionId,
        number: VersionNumber,
    },
}

/// A delta applied and verified.
#[derive(Debug, Clone)]
pub struct Received {
    pub base: VersionId,
    /// The base as the sender sent it, when this node did not hold it.
    pub sent_base: Option<TreeManifest>,
    pub target: VersionId,
    pub tree: TreeManifest,
}

/// Deltas waiting for chunks, and deltas sent.
#[derive(Default)]
pub struct Transfers {
    incoming: HashMap<(NodeId, u8), (Incoming, proto::Delta)>,
    outgoing: HashMap<(NodeId, VersionId), Outgoing>,
    fetches: HashMap<(NodeId, u8), Fetch>,
    /// When each chunk was last sent to each peer.
    sent_chunks: HashMap<(NodeId, ChunkId), u64>,
    /// The chunks of the window asked for last, per incoming delta, not arrived yet.
    asked: HashMap<(NodeId, u8), HashSet<ChunkId>>,
}

/// How far the chunks of an incoming delta have arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fetch {
    /// Who sends them.
    pub from: NodeId,
    /// The version they are for.
    pub target: VersionId,
    /// Chunks the delta lacked when it arrived, and how many of them have come since.
    pub chunks: usize,
    pub received: usize,
}

impl Engine {
    /// The incoming deltas still waiting for chunks, and how far their chunks have come.
    pub fn fetches(&self) -> Vec<Fetch> {
        let mut v: Vec<Fetch> = self.transfers.fetches.values().copied().collect();
        v.sort_by_key(|f| (f.from, f.target));
        v
    }

    /// The delta from `base` to `target`. A `lean` one carries no literals, only the chunks'
    /// ids: the receiver asks for what it lacks, and chunks sent recently are not sent again.
    fn encode_delta(
        &self,
        base: VersionId,
        target: VersionId,
        include_base: bool,
        lean: bool,
    ) -> Result<proto::Delta, EngineError> {
        let b = self.require_tree(base)?;
        let t = self.require_tree(target)?;
        let mut opts = EncodeOptions {
            include_base_manifest: include_base,
            ..self.cfg.encode.clone()
        };
        if lean {
            opts.literal_budget = 0;
        }
        Ok(encode(&b, &t, &*self.chunks, &opts)?.0)
    }

    fn remember(&mut self, to: NodeId, target: VersionId, what: Outgoing) {
        if self.transfers.outgoing.len() >= OUTGOING_KEPT {
            self.transfers.outgoing.clear();
        }
        self.transfers.outgoing.insert((to, target), what);
    }

    pub(super) fn send_push(
        &mut self,
        to: NodeId,
        base: VersionId,
        target: VersionId,
        number: VersionNumber,
        include_base: bool,
    ) -> Result<(), EngineError> {
        let delta = self.encode_delta(base, target, include_base, false)?;
        self.remember(to, target, Outgoing::Push { base, number });
        let pushed_before = self
            .pushed_before(target)
            .into_iter()
            .map(VersionId::to_proto)
            .collect();
        self.send(
            to,
            Body::Push(proto::Push {
                number: Some(number.to_proto()),
                delta: Some(delta),
                pushed_before,
            }),
        );
        Ok(())
    }

    /// Offers `target` to `to`; a retry is `lean` (the first offer's literals may still be on
    /// their way over a slow or limited link).
    pub(super) fn send_offer(
        &mut self,
        to: NodeId,
        base: VersionId,
        target: VersionId,
        lean: bool,
    ) -> Result<(), EngineError> {
        let delta = self.encode_delta(base, target, false, lean)?;
        self.remember(to, target, Outgoing::Offer);
        self.send(to, Body::Offer(proto::Offer { delta: Some(delta) }));
        Ok(())
    }

    pub(super) fn send_merged(
        &mut self,
        to: NodeId,
        pushed: VersionId,
        result: VersionId,
        number: VersionNumber,
        include_base: bool,
    ) -> Result<(), EngineError> {
        let delta = self.encode_delta(pushed, result, include_base, false)?;
        self.remember(to, result, Outgoing::Merged { pushed, number });
        self.send(
            to,
            Body::Merged(proto::Merged {
                pushed: Some(pushed.to_proto()),
                number: Some(number.to_proto()),
                delta: Some(delta),
            }),
        );
        Ok(())
    }

    fn reject(&mut self, to: NodeId, reason: RejectReason, detail: String) {
        tracing::warn!(peer = to, ?reason, "refused a message: {detail}");
        self.send(
            to,
            Body::Rejected(proto::Rejected {
                reason: reason as i32,
                detail,
            }),
        );
    }

    /// Applies a delta from `from`. `None` when it could not be applied yet: the sender was
    /// asked for the base or the chunks (when `ask`), or told why it was refused.
    pub(super) fn receive_delta(
        &mut self,
        from: NodeId,
        kind: Incoming,
        delta: proto::Delta,
        ask: bool,
    ) -> Result<Option<Received>, EngineError> {
        let Some(Ok(base)) = delta.base.as_ref().map(VersionId::from_proto) else {
            self.reject(
                from,
                RejectReason::Malformed,
                "a delta without a base".into(),
            );
            return Ok(None);
        };
        let held = self.store.manifest(&base)?;
        match apply(&delta, held.as_ref(), &*self.chunks, &self.cfg.apply_limits) {
            Ok(a) => {
                self.transfers.incoming.remove(&(from, kind.slot()));
                self.transfers.fetches.remove(&(from, kind.slot()));
                self.transfers.asked.remove(&(from, kind.slot()));
                self.store.put_manifest(&a.tree)?;
                let sent_base = match (&held, &delta.base_manifest) {
                    (None, Some(m)) => TreeManifest::from_proto(m).ok(),
                    _ => None,
                };
                Ok(Some(Received {
                    base,
                    sent_base,
                    target: a.target,
                    tree: a.tree,
                }))
            }
            Err(ApplyError::NeedBase { base, target }) => {
                tracing::debug!(me = self.me, from, ?base, ?target, "need base");
                if ask {
                    self.send(
                        from,
                        Body::NeedBase(proto::NeedBase {
                            base: Some(base.to_proto()),
                            target: Some(target.to_proto()),
                        }),
                    );
                }
                Ok(None)
            }
            Err(ApplyError::NeedChunks { target, ids, bytes }) => {
                tracing::debug!(
                    me = self.me,
                    from,
                    ?target,
                    n = ids.len(),
                    ask,
                    "need chunks"
                );
                let fetch = self
                    .transfers
                    .fetches
                    .entry((from, kind.slot()))
                    .or_insert(Fetch {
                        from,
                        target,
                        chunks: ids.len(),
                        received: 0,
                    });
                if fetch.target != target {
                    *fetch = Fetch {
                        from,
                        target,
                        chunks: ids.len(),
                        received: 0,
                    };
                }
                fetch.chunks = fetch.chunks.max(ids.len());
                fetch.received = fetch.chunks - ids.len();
                let slot = kind.slot();
                self.transfers.incoming.insert((from, slot), (kind, delta));
                if ask {
                    let window: Vec<ChunkId> = ids
                        .iter()
                        .take(window_len(ids.len(), bytes))
                        .copied()
                        .collect();
                    self.send(
                        from,
                        Body::NeedChunks(proto::NeedChunks {
                            target: Some(target.to_proto()),
                            ids: window.iter().map(|id| id.to_proto()).collect(),
                        }),
                    );
                    self.transfers
                        .asked
                        .insert((from, slot), window.into_iter().collect());
                }
                Ok(None)
            }
            Err(ApplyError::Store(e)) => Err(e.into()),
            Err(e @ (ApplyError::BaseMismatch { .. } | ApplyError::TargetMismatch { .. })) => {
                self.reject(from, RejectReason::HashMismatch, e.to_string());
                Ok(None)
            }
            Err(e) => {
                self.reject(from, RejectReason::Malformed, e.to_string());
                Ok(None)
            }
        }
    }

    pub(super) fn on_need_base(
        &mut self,
        from: NodeId,
        n: proto::NeedBase,
    ) -> Result<(), EngineError> {
        let (Some(Ok(base)), Some(Ok(target))) = (
            n.base.as_ref().map(VersionId::from_proto),
            n.target.as_ref().map(VersionId::from_proto),
        ) else {
            return Ok(());
        };
        match self.transfers.outgoing.get(&(from, target)).copied() {
            Some(Outgoing::Push { base: b, number }) if b == base => {
                self.send_push(from, base, target, number, true)
            }
            Some(Outgoing::Offer) => {
                self.p.last_shared.remove(&from);
                self.send_offer(from, TreeManifest::empty().version_id(), target, false)
            }
            Some(Outgoing::Merged { pushed, number }) if pushed == base => {
                self.send_merged(from, pushed, target, number, true)
            }
            _ => Ok(()),
        }
    }

    pub(super) fn on_need_chunks(
        &mut self,
        from: NodeId,
        n: proto::NeedChunks,
    ) -> Result<(), EngineError> {
        let mut ids = Vec::with_capacity(n.ids.len());
        for id in &n.ids {
            let Ok(id) = ChunkId::from_proto(id) else {
                return Ok(());
            };
            let recently = self
                .transfers
                .sent_chunks
                .get(&(from, id))
                .is_some_and(|&at| self.now.saturating_sub(at) < RESEND_AFTER_MS);
            if !recently && self.chunks.contains(&id)? {
                ids.push(id);
            }
        }
        if self.transfers.sent_chunks.len() + ids.len() > SENT_KEPT {
            let now = self.now;
            self.transfers
                .sent_chunks
                .retain(|_, at| now.saturating_sub(*at) < RESEND_AFTER_MS);
        }
        let mut sent = 0usize;
        for batch in ids.chunks(CHUNK_BATCH) {
            let frame = CHUNKS_FRAME.min(self.cfg.limits.max_frame);
            for msg in chunks_messages(batch, &*self.chunks, frame)? {
                sent += msg.chunks.iter().map(|c| c.data.len()).sum::<usize>();
                self.send(from, Body::Chunks(msg));
            }
            for id in batch {
                self.transfers.sent_chunks.insert((from, *id), self.now);
            }
            if sent >= MAX_CHUNK_ANSWER {
                break;
            }
        }
        Ok(())
    }

    pub(super) fn on_chunks(&mut self, from: NodeId, c: proto::Chunks) -> Result<(), EngineError> {
        if let Err(e) = receive_chunks(&c, &*self.chunks, self.cfg.limits.max_chunk_len as usize) {
            match e {
                chorus_chunking::Error::Io { .. } => return Err(e.into()),
                e => {
                    self.reject(from, RejectReason::HashMismatch, e.to_string());
                    return Ok(());
                }
            }
        }
        let got: Vec<ChunkId> = c
            .chunks
            .iter()
            .filter_map(|d| d.id.as_ref().and_then(|id| ChunkId::from_proto(id).ok()))
            .collect();
        let waiting: Vec<u8> = self
            .transfers
            .incoming
            .keys()
            .filter(|(peer, _)| *peer == from)
            .map(|(_, slot)| *slot)
            .collect();
        for slot in waiting {
            // Try the delta again once the window asked for has arrived; that asks for the
            // next window, or completes it.
            let window_done = match self.transfers.asked.get_mut(&(from, slot)) {
                Some(left) => {
                    for id in &got {
                        left.remove(id);
                    }
                    left.is_empty()
                }
                None => true,
            };
            if !window_done {
                continue;
            }
            let Some((kind, delta)) = self.transfers.incoming.get(&(from, slot)).cloned() else {
                continue;
            };
            if let Some(rx) = self.receive_delta(from, kind.clone(), delta, true)? {
                self.delivered(from, kind, rx)?;
            }
        }
        Ok(())
    }
}

/// How many of `n` missing chunks, `bytes` long together, one window asks for.
fn window_len(n: usize, bytes: u64) -> usize {
    let average = (bytes / n.max(1) as u64).max(1);
    let chunks = (FETCH_WINDOW_BYTES / average)
        .clamp(*FETCH_WINDOW_CHUNKS.start(), *FETCH_WINDOW_CHUNKS.end());
    chunks as usize
}

#[cfg(test)]
mod tests {
    use super::window_len;

    #[test]
    fn windows_are_bounded_in_bytes_and_in_chunks() {
        // 64 KiB chunks: 8 MiB is 128 of them.
        assert_eq!(window_len(10_000, 10_000 * 65_536), 128);
        // 600-byte chunks: as many as the chunk bound allows, not 8 MiB / 600 = 13,981.
        assert_eq!(window_len(100_000, 100_000 * 600), 8192);
        // 4 KiB chunks: 8 MiB of them.
        assert_eq!(window_len(5_000, 5_000 * 4096), 2048);
        // Huge chunks still come a window of at least 128 at a time.
        assert_eq!(window_len(50, 50 << 24), 128);
        assert_eq!(window_len(0, 0), 8192);
    }
}
