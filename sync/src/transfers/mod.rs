//! [`Transfers`]: deltas out and in. Outgoing: Push (follower to leader), Offer (leader to
//! member, or any holder to a node that asked with Want) and Merged (leader to pusher), each
//! remembered per (peer, target) so a NeedBase can be answered by resending with the base's
//! manifest (or against the empty tree). Incoming: a delta is applied and verified by
//! chorus-chunking; when chunks are missing the receiver asks for exactly those (NeedChunks),
//! in windows of bounded bytes with the next window asked while one arrives
//! ([`window`](self::window)), keeps the delta, and applies it again once every window has
//! arrived. Chunks already received stay stored, so a transfer cut off half way resumes
//! without resending them.

use std::collections::{BTreeMap, HashMap, HashSet};

use chorus_chunking::delta::{EncodeOptions, Prepared, encode};
use chorus_chunking::fetch::ChunksWriter;
use chorus_chunking::{ChunkId, TreeManifest, VersionId, VersionNumber};
use chorus_merge::RedoEntry;
use chorus_proto::RejectReason;
use chorus_proto::header::NodeId;
use chorus_proto::message::{ChunkRun, Delta, Message};

use crate::ctx::Ctx;
use crate::step::EngineError;

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
/// Bytes per millisecond (1 MB/s) a chunk answer is assumed to travel at, at least, when
/// telling whether the peer that asked is still fetching: offers are not sent again meanwhile.
const SLOWEST_LINK: u64 = 1_000;
/// Chunk sends remembered for that, all peers together.
const SENT_KEPT: usize = 1 << 20;
/// Bytes of chunks asked for at a time: two windows are on their way at once and the next is
/// asked for as soon as one has arrived, so a large transfer streams in bounded memory without
/// waiting for the sender's retry timer, and the sender is not idle while the receiver stores
/// a window. 8 MiB a round trip is 80 MB/s at 100 ms with one window; 32 MiB windows cost
/// 50 MB more of peak RSS on each side for no speed on a LAN (1 GiB between two local nodes:
/// 119 MB -> 69 MB on the receiver, 12-15 s either way).
const FETCH_WINDOW_BYTES: u64 = 8 << 20;
/// Chunks per window, whatever their size: a version of many small files (100,000 of ~600
/// bytes) must not take thousands of round trips.
const FETCH_WINDOW_CHUNKS: std::ops::RangeInclusive<u64> = 128..=8192;

/// What an incoming delta is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming {
    Push {
        number: VersionNumber,
        /// What the pusher pushed before, oldest first.
        before: Vec<VersionId>,
        /// What the push displaces on purpose (a redo).
        displaced: Vec<RedoEntry>,
    },
    Merged {
        pushed: VersionId,
        number: VersionNumber,
    },
    /// An offer; `extra` ones are held but never become what this node shares with the sender.
    Offer { extra: bool },
}

impl Incoming {
    fn slot(&self) -> u8 {
        match self {
            Incoming::Push { .. } => 0,
            Incoming::Merged { .. } => 1,
            Incoming::Offer { .. } => 2,
        }
    }
}

/// What an outgoing delta was.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Outgoing {
    Push {
        base: VersionId,
        number: VersionNumber,
        before: Vec<VersionId>,
        displaced: Vec<RedoEntry>,
    },
    Offer {
        extra: bool,
    },
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
    pub tree: std::sync::Arc<TreeManifest>,
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

/// Bytes a second a retry assumes a delta travels at, to its receiver's check included: a
/// slow uplink's megabyte. A retry of a push or an offer waits its interval plus this long for
/// the delta's bytes; a version of 100k new files (~7 MB) was offered again a second after the
/// first offer, while the member still read and checked it (and on a slow link, again and
/// again behind it).
const TRANSIT_BYTES_PER_SEC: u64 = 1 << 20;

/// How long a delta of `bytes` is given to arrive and be read before it is sent again.
pub(crate) fn transit_ms(bytes: u64) -> u64 {
    bytes.saturating_mul(1000) / TRANSIT_BYTES_PER_SEC
}

/// True when `now` is less than `within_ms` past the time `times` holds for `key`.
fn before(
    times: &HashMap<(NodeId, VersionId), u64>,
    key: (NodeId, VersionId),
    now: u64,
    within_ms: u64,
) -> bool {
    times
        .get(&key)
        .is_some_and(|&until| now < until.saturating_add(within_ms))
}

/// Deltas waiting for chunks, and deltas sent.
#[derive(Default)]
pub(crate) struct Transfers {
    /// Deltas checked and resolved, waiting for their chunks.
    incoming: HashMap<(NodeId, u8), (Incoming, Prepared)>,
    outgoing: HashMap<(NodeId, VersionId), Outgoing>,
    fetches: HashMap<(NodeId, u8), Fetch>,
    /// When each chunk was last sent to each peer.
    sent_chunks: HashMap<(NodeId, ChunkId), u64>,
    /// The chunks each incoming delta lacks: asked for, arrived, still to ask for.
    windows: HashMap<(NodeId, u8), Windows>,
    /// Every chunk an incoming delta lacked when it arrived: those that came since are stored
    /// but named by no manifest until the delta completes, so garbage collection must keep
    /// them (a transfer of hours would otherwise lose what it fetched at every collection).
    fetching: HashMap<(NodeId, u8), HashSet<ChunkId>>,
    /// Until when each peer is taken to be fetching the chunks of each version: its last ask,
    /// plus the time the chunks sent in answer take at [`SLOWEST_LINK`].
    asking: HashMap<(NodeId, VersionId), u64>,
    /// When each incoming delta last moved: a window asked for, or chunks of it arrived.
    progress: HashMap<(NodeId, u8), u64>,
    /// Until when each peer's last offer of each version may still be on its way: sent, plus
    /// the time its bytes are given ([`transit_ms`]).
    offered: HashMap<(NodeId, VersionId), u64>,
}

mod incoming;
mod window;

use window::Windows;

impl Transfers {
    /// The incoming deltas still waiting for chunks, and how far their chunks have come.
    pub fn fetches(&self) -> Vec<Fetch> {
        let mut v: Vec<Fetch> = self.fetches.values().copied().collect();
        v.sort_by_key(|f| (f.from, f.target));
        v
    }

    /// The delta from `base` to `target`. A `lean` one carries no literals, only the chunks'
    /// ids: the receiver asks for what it lacks, and chunks sent recently are not sent again.
    fn encode(
        ctx: &Ctx<'_>,
        base: VersionId,
        target: VersionId,
        include_base: bool,
        lean: bool,
    ) -> Result<Delta, EngineError> {
        let b = ctx.tree(base)?;
        let t = ctx.tree(target)?;
        let mut opts = EncodeOptions {
            include_base_manifest: include_base,
            ..ctx.cfg.encode.clone()
        };
        if lean {
            opts.literal_budget = 0;
        }
        let wire = encode(&b, &t, ctx.chunks, &opts)?.0;
        Ok(Delta {
            base,
            target,
            wire: Box::new(wire),
        })
    }

    fn remember(&mut self, to: NodeId, target: VersionId, what: Outgoing) {
        if self.outgoing.len() >= OUTGOING_KEPT {
            self.outgoing.clear();
        }
        self.outgoing.insert((to, target), what);
    }

    /// Pushes `target` (built on `base`, after the pushes `before`) to the leader `to`; returns
    /// the delta's size, which sets how long its retry waits ([`transit_ms`]).
    #[allow(clippy::too_many_arguments)]
    pub fn send_push(
        &mut self,
        ctx: &mut Ctx<'_>,
        to: NodeId,
        base: VersionId,
        target: VersionId,
        number: VersionNumber,
        before: Vec<VersionId>,
        displaced: Vec<RedoEntry>,
        include_base: bool,
    ) -> Result<u64, EngineError> {
        let delta = Self::encode(ctx, base, target, include_base, false)?;
        let bytes = prost::Message::encoded_len(&delta.wire) as u64;
        let encoded = crate::header::encode_redo(&displaced);
        self.remember(
            to,
            target,
            Outgoing::Push {
                base,
                number,
                before: before.clone(),
                displaced,
            },
        );
        ctx.send(
            to,
            Message::Push {
                number,
                delta,
                before,
                displaced: encoded,
            },
        );
        Ok(bytes)
    }

    /// Offers `target` to `to` and returns the delta's size ([`transit_ms`]); a retry is `lean`
    /// (the first offer's literals may still be on their way over a slow or limited link). An
    /// `extra` version is not the share as members hold it (a stored tree of a conflict's
    /// losing side).
    pub fn send_offer(
        &mut self,
        ctx: &mut Ctx<'_>,
        to: NodeId,
        base: VersionId,
        target: VersionId,
        lean: bool,
        extra: bool,
    ) -> Result<u64, EngineError> {
        tracing::debug!(me = ctx.me, to, ?target, ?base, lean, extra, "offer");
        let delta = Self::encode(ctx, base, target, false, lean)?;
        let bytes = prost::Message::encoded_len(&delta.wire) as u64;
        self.remember(to, target, Outgoing::Offer { extra });
        if self.offered.len() >= OUTGOING_KEPT {
            self.offered.clear();
        }
        self.offered
            .insert((to, target), ctx.now.saturating_add(transit_ms(bytes)));
        ctx.send(to, Message::Offer { delta, extra });
        Ok(bytes)
    }

    /// Tells `to` that its `pushed` version was merged into the accepted `result`.
    pub fn send_merged(
        &mut self,
        ctx: &mut Ctx<'_>,
        to: NodeId,
        pushed: VersionId,
        result: VersionId,
        number: VersionNumber,
        include_base: bool,
    ) -> Result<(), EngineError> {
        let delta = Self::encode(ctx, pushed, result, include_base, false)?;
        self.remember(to, result, Outgoing::Merged { pushed, number });
        ctx.send(
            to,
            Message::Merged {
                pushed,
                number,
                delta,
            },
        );
        Ok(())
    }

    /// `from` lacks `base`: the delta to `target` goes again with the base's manifest (or, for
    /// an offer, against the empty tree, forgetting what `from` was thought to share).
    pub fn on_need_base(
        &mut self,
        ctx: &mut Ctx<'_>,
        last_shared: &mut BTreeMap<NodeId, VersionId>,
        from: NodeId,
        base: VersionId,
        target: VersionId,
    ) -> Result<(), EngineError> {
        // The offer did not serve: a Want of it is answered again (an offer sent below starts
        // a new window).
        self.offered.remove(&(from, target));
        let answered = self.resend(ctx, last_shared, from, base, target);
        if let Err(EngineError::Missing(gone)) = answered {
            // Collected here since it was sent: a clean refusal; the asker's own retry (a new
            // push, a Want of the head) goes from what both still hold.
            self.outgoing.remove(&(from, target));
            reject(
                ctx,
                from,
                RejectReason::UnsupportedVersion,
                format!("version {gone} is no longer kept here; ask again from the head"),
            );
            return Ok(());
        }
        answered
    }

    fn resend(
        &mut self,
        ctx: &mut Ctx<'_>,
        last_shared: &mut BTreeMap<NodeId, VersionId>,
        from: NodeId,
        base: VersionId,
        target: VersionId,
    ) -> Result<(), EngineError> {
        match self.outgoing.get(&(from, target)).cloned() {
            Some(Outgoing::Push {
                base: b,
                number,
                before,
                displaced,
            }) if b == base => {
                self.send_push(ctx, from, base, target, number, before, displaced, true)?;
                Ok(())
            }
            Some(Outgoing::Offer { extra }) => {
                if !extra {
                    last_shared.remove(&from);
                }
                let empty = TreeManifest::empty().version_id();
                self.send_offer(ctx, from, empty, target, false, extra)?;
                Ok(())
            }
            Some(Outgoing::Merged { pushed, number }) if pushed == base => {
                self.send_merged(ctx, from, pushed, target, number, true)
            }
            _ => Ok(()),
        }
    }

    /// Whether an incoming delta to `version` asked for chunks within the last `within_ms`:
    /// the version is on its way, and asking for it again would only have it sent again.
    pub fn receiving(&self, version: VersionId, now: u64, within_ms: u64) -> bool {
        self.fetches.iter().any(|(key, f)| {
            f.target == version
                && self
                    .progress
                    .get(key)
                    .is_some_and(|&at| now.saturating_sub(at) < within_ms)
        })
    }

    /// Whether an offer of `version` sent to `peer` may still be on its way or being read: it
    /// went out less than the time its bytes are given to arrive ([`transit_ms`]) plus
    /// `within_ms` ago. Sending it again would send the whole delta twice.
    pub fn offered_lately(
        &self,
        peer: NodeId,
        version: VersionId,
        now: u64,
        within_ms: u64,
    ) -> bool {
        before(&self.offered, (peer, version), now, within_ms)
    }

    /// `peer` stored `version`: an offer of it is no longer on its way.
    pub fn stored_at(&mut self, peer: NodeId, version: VersionId) {
        self.offered.remove(&(peer, version));
    }

    /// Whether `peer` is fetching the chunks of `version` from this node: it asked for some
    /// within the last `within_ms`, or the chunks sent in answer may still be on their way.
    /// It holds a delta to `version`, so offering it again (a retry) would only send the
    /// whole delta again. A transfer that stalls stops asking, and the retries resume.
    pub fn fetching_from_here(
        &self,
        peer: NodeId,
        version: VersionId,
        now: u64,
        within_ms: u64,
    ) -> bool {
        before(&self.asking, (peer, version), now, within_ms)
    }

    /// Sends `from` the chunks of `target` it asked for that this node holds, bounded per
    /// answer, and not those sent to it recently; each of the `runs` it named compressed
    /// against the chunks it replaces (when this node holds them too).
    pub fn on_need_chunks(
        &mut self,
        ctx: &mut Ctx<'_>,
        from: NodeId,
        target: VersionId,
        asked: &[ChunkId],
        runs: &[ChunkRun],
    ) -> Result<(), EngineError> {
        // A peer fetches one delta from a sender at a time (a newer one replaces the older
        // in its slot): asking for `target` means the others are no longer being fetched.
        self.asking
            .retain(|(peer, v), _| *peer != from || *v == target);
        if self.asking.len() >= OUTGOING_KEPT {
            self.asking.clear();
        }
        // What to send, in order: pieces of consecutive ids of one run (or of none).
        let mut pieces: Vec<(Option<usize>, Vec<ChunkId>)> = Vec::new();
        let mut run = 0;
        for (i, id) in asked.iter().enumerate() {
            while runs.get(run).is_some_and(|r| r.range().end <= i) {
                run += 1;
            }
            let within = runs
                .get(run)
                .filter(|r| r.range().contains(&i))
                .map(|_| run);
            let recently = self
                .sent_chunks
                .get(&(from, *id))
                .is_some_and(|&at| ctx.now.saturating_sub(at) < RESEND_AFTER_MS);
            if recently || !ctx.chunks.contains(id)? {
                continue;
            }
            match pieces.last_mut() {
                Some((r, ids)) if *r == within => ids.push(*id),
                _ => pieces.push((within, vec![*id])),
            }
        }
        let n: usize = pieces.iter().map(|(_, ids)| ids.len()).sum();
        if self.sent_chunks.len() + n > SENT_KEPT {
            let now = ctx.now;
            self.sent_chunks
                .retain(|_, at| now.saturating_sub(*at) < RESEND_AFTER_MS);
        }
        let frame = CHUNKS_FRAME.min(ctx.cfg.limits.max_frame);
        let mut w = ChunksWriter::new(ctx.chunks, frame);
        'pieces: for (run, ids) in &pieces {
            // A batch at a time, whatever the peer asked: a run's first batch is compressed
            // against its dictionary (the start of what it replaces), the rest as stored.
            for (k, part) in ids.chunks(CHUNK_BATCH).enumerate() {
                match run {
                    Some(r) if k == 0 => w.run(part, &runs[*r].dictionary)?,
                    _ => part.iter().try_for_each(|id| w.chunk(id))?,
                }
                for msg in w.take_full() {
                    ctx.send(from, Message::Chunks(msg));
                }
                for id in part {
                    self.sent_chunks.insert((from, *id), ctx.now);
                }
                if w.sent() >= MAX_CHUNK_ANSWER {
                    break 'pieces;
                }
            }
        }
        let sent = w.sent();
        for msg in w.finish() {
            ctx.send(from, Message::Chunks(msg));
        }
        // Answers queue behind the ones before them that may still be on their way, for
        // [`RESEND_AFTER_MS`] at most (or this answer's own time at 1 MB/s, if longer): each
        // answer added its bytes at 1 MB/s, so a peer that had been sent 1 GiB was taken to
        // be fetching for 18 minutes after its last ask, and one answer lost on the way (a
        // connection closed while another stayed up) stalled the transfer that long. A peer
        // still fetching keeps asking, and ignores an offer sent again while chunks arrive
        // (on a link slower than one chunk message a second, it applies it and asks for what
        // it still lacks, which is then sent again).
        let until = self
            .asking
            .get(&(from, target))
            .map_or(ctx.now, |&u| u.max(ctx.now));
        let on_the_way = (sent as u64).div_ceil(SLOWEST_LINK);
        let until = until
            .saturating_add(on_the_way)
            .min(ctx.now.saturating_add(RESEND_AFTER_MS.max(on_the_way)));
        self.asking.insert((from, target), until);
        Ok(())
    }
}

/// Refuses a message from `to`, telling it why.
pub(crate) fn reject(ctx: &mut Ctx<'_>, to: NodeId, reason: RejectReason, detail: String) {
    tracing::warn!(
        peer = to,
        ?reason,
        "refused a message: {}",
        chorus_proto::shown(&detail)
    );
    ctx.send(to, Message::Rejected { reason, detail });
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
