//! The incoming side of [`Transfers`]: a delta checked and resolved once, then built and
//! verified, or parked (resolved, not as it came) while the chunks it lacks are fetched in
//! windows (NeedChunks, Chunks, the next window; two on their way at once) and finished once
//! all have arrived; the chunks and bases such a fetch holds live through garbage collection;
//! and a version whose chunks this node lost is fetched again.

use std::collections::HashSet;

use chorus_chunking::delta::{ApplyError, Finish, Prepare, Prepared, prepare};
use chorus_chunking::fetch::{MAX_RUN_DICTIONARY, receive_chunks};
use chorus_chunking::{ChunkId, VersionId};
use chorus_proto::header::NodeId;
use chorus_proto::message::{Delta, Message};
use chorus_proto::{RejectReason, v1};

use super::{
    FETCH_WINDOW_CHUNKS, Fetch, Incoming, Received, Transfers, Windows, reject, window_len,
};
use crate::ctx::Ctx;
use crate::step::EngineError;

impl Transfers {
    /// The versions incoming transfers still need: the bases of deltas waiting for chunks.
    /// (Deltas sent are remembered for a NeedBase answer, but do not hold their versions: one
    /// collected since is refused cleanly, and the asker starts again from what both hold.)
    pub fn versions(&self) -> Vec<VersionId> {
        self.incoming.values().map(|(_, p)| p.base()).collect()
    }

    /// Asks `sources` for a window of the chunks of `version` this node lacks (a chunk the
    /// store dropped as corrupt, or lost): they are stored as they come, and the version can
    /// be written again. Returns how many are missing.
    pub fn refetch(
        &mut self,
        ctx: &mut Ctx<'_>,
        sources: &[NodeId],
        version: VersionId,
    ) -> Result<usize, EngineError> {
        let tree = ctx.tree(version)?;
        let mut ids: Vec<ChunkId> = tree.chunks().map(|c| c.id).collect();
        ids.sort();
        ids.dedup();
        let missing = ctx.chunks.missing(&ids)?;
        if !missing.is_empty() {
            let window: Vec<ChunkId> = missing
                .iter()
                .take(*FETCH_WINDOW_CHUNKS.end() as usize)
                .copied()
                .collect();
            for &s in sources {
                ctx.send(
                    s,
                    Message::NeedChunks {
                        target: version,
                        ids: window.clone(),
                        runs: Vec::new(),
                    },
                );
            }
        }
        Ok(missing.len())
    }

    /// Whether `delta` is an offer of the version whose chunks are arriving from `from` now
    /// (one came within the offer retry period): a retry sent before the sender could know.
    /// Applying it again would decode the whole delta and ask for its windows from the start;
    /// once the chunks stop coming, an offer is applied again (what was lost is asked anew).
    fn same_offer_arriving(
        &self,
        ctx: &Ctx<'_>,
        from: NodeId,
        kind: &Incoming,
        delta: &Delta,
    ) -> bool {
        let slot = kind.slot();
        matches!(kind, Incoming::Offer { .. })
            && self
                .incoming
                .get(&(from, slot))
                .is_some_and(|(k, p)| k == kind && p.target() == delta.target)
            && self
                .progress
                .get(&(from, slot))
                .is_some_and(|&at| ctx.now.saturating_sub(at) < ctx.cfg.offer_retry_ms)
    }

    /// Forgets how far the chunks of the delta in `slot` from `from` have come.
    fn forget(&mut self, from: NodeId, slot: u8) {
        self.progress.remove(&(from, slot));
        self.fetches.remove(&(from, slot));
        self.windows.remove(&(from, slot));
        self.fetching.remove(&(from, slot));
    }

    /// The chunks incoming deltas are fetching (arrived or not): live for garbage collection.
    pub fn fetching_chunks(&self) -> HashSet<ChunkId> {
        self.fetching.values().flatten().copied().collect()
    }

    /// Applies a delta from `from`. `None` when it could not be applied yet: the sender was
    /// asked for the base or the chunks, or told why it was refused.
    pub fn receive(
        &mut self,
        ctx: &mut Ctx<'_>,
        from: NodeId,
        kind: Incoming,
        delta: Delta,
    ) -> Result<Option<Received>, EngineError> {
        if self.same_offer_arriving(ctx, from, &kind, &delta) {
            tracing::debug!(me = ctx.me, from, target = ?delta.target, "the offer is on its way already");
            return Ok(None);
        }
        let held = ctx.store.manifest(&delta.base)?;
        match prepare(*delta.wire, held.as_deref(), &ctx.cfg.apply_limits) {
            Ok(Prepare::Ready(p)) => self.finish(ctx, from, kind, p),
            Ok(Prepare::NeedBase { base, target }) => {
                tracing::debug!(me = ctx.me, from, ?base, ?target, "need base");
                ctx.send(from, Message::NeedBase { base, target });
                Ok(None)
            }
            Err(e) => self.refuse(ctx, from, e),
        }
    }

    /// Builds the version of a delta from `from` checked already: it is complete, or it waits
    /// for the chunks it lacks (asked for in windows).
    fn finish(
        &mut self,
        ctx: &mut Ctx<'_>,
        from: NodeId,
        kind: Incoming,
        prepared: Prepared,
    ) -> Result<Option<Received>, EngineError> {
        let slot = kind.slot();
        let base = prepared.base();
        match prepared.finish(ctx.chunks) {
            Ok(Finish::Applied(a)) => {
                self.incoming.remove(&(from, slot));
                self.forget(from, slot);
                // Kept decoded: the version is adopted and written next.
                let tree = std::sync::Arc::new(a.tree);
                ctx.store.put_and_keep(tree.clone())?;
                Ok(Some(Received {
                    base,
                    sent_base: a.sent_base,
                    target: a.target,
                    tree,
                }))
            }
            Ok(Finish::NeedChunks {
                prepared,
                ids,
                bytes,
            }) => {
                let target = prepared.target();
                tracing::debug!(me = ctx.me, from, ?target, n = ids.len(), "need chunks");
                let fetch = self.fetches.entry((from, slot)).or_insert(Fetch {
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
                    self.fetching.remove(&(from, slot));
                }
                self.fetching
                    .entry((from, slot))
                    .or_default()
                    .extend(ids.iter().copied());
                fetch.chunks = fetch.chunks.max(ids.len());
                fetch.received = fetch.chunks - ids.len();
                let len = window_len(ids.len(), bytes);
                // Each run of a changed file's missing chunks with the base chunks it
                // replaces: the sender compresses it against them.
                let runs = prepared.fetch_runs(ids, ctx.chunks, MAX_RUN_DICTIONARY)?;
                self.incoming.insert((from, slot), (kind, prepared));
                let windows = self
                    .windows
                    .entry((from, slot))
                    .insert_entry(Windows::new(target, runs, len))
                    .into_mut();
                for (ids, runs) in windows.ask() {
                    ctx.send(from, Message::NeedChunks { target, ids, runs });
                }
                self.progress.insert((from, slot), ctx.now);
                Ok(None)
            }
            Err(e) => self.refuse(ctx, from, e),
        }
    }

    /// Tells `from` why its delta was refused; a store failure is this node's own.
    fn refuse(
        &mut self,
        ctx: &mut Ctx<'_>,
        from: NodeId,
        e: ApplyError,
    ) -> Result<Option<Received>, EngineError> {
        match e {
            ApplyError::Store(e) => Err(e.into()),
            e @ (ApplyError::BaseMismatch { .. } | ApplyError::TargetMismatch { .. }) => {
                reject(ctx, from, RejectReason::HashMismatch, e.to_string());
                Ok(None)
            }
            e => {
                reject(ctx, from, RejectReason::Malformed, e.to_string());
                Ok(None)
            }
        }
    }

    /// Stores the chunks `from` sent, asks for the next windows of each of its deltas, and
    /// applies again each delta whose windows have all arrived (which completes it, or asks
    /// for what is still missing). Returns the deltas completed.
    pub fn on_chunks(
        &mut self,
        ctx: &mut Ctx<'_>,
        from: NodeId,
        c: v1::Chunks,
    ) -> Result<Vec<(Incoming, Received)>, EngineError> {
        let got = match receive_chunks(&c, ctx.chunks, ctx.cfg.limits.max_chunk_len as usize) {
            Ok(got) => got,
            Err(e @ chorus_chunking::Error::Io { .. }) => return Err(e.into()),
            Err(e) => {
                reject(ctx, from, RejectReason::HashMismatch, e.to_string());
                return Ok(Vec::new());
            }
        };
        let waiting: Vec<u8> = self
            .incoming
            .keys()
            .filter(|(peer, _)| *peer == from)
            .map(|(_, slot)| *slot)
            .collect();
        // Chunks some delta's windows were waiting for: made durable by `apply` before it
        // returns that delta's version, not here, so a transfer syncs the store once rather
        // than once per message (a 1 GiB file synced it 512 times, once per 2 MiB message,
        // and the receiver mostly waited for it). Any other chunk is synced at once.
        let mut awaited = HashSet::new();
        let mut done = Vec::new();
        for slot in waiting {
            if let Some(windows) = self.windows.get_mut(&(from, slot)) {
                let taken = windows.arrived(&got);
                if let Some(f) = self.fetches.get_mut(&(from, slot)) {
                    f.received = (f.received + taken.len()).min(f.chunks);
                }
                awaited.extend(taken);
                if !windows.done() {
                    let target = windows.target;
                    for (ids, runs) in windows.ask() {
                        ctx.send(from, Message::NeedChunks { target, ids, runs });
                    }
                    // Chunks arrived: the delta is on its way (whether or not a window was
                    // asked for just now).
                    self.progress.insert((from, slot), ctx.now);
                    continue;
                }
            }
            // Every window arrived: their queue (an id per chunk fetched, ~3 MB for a 100k-file
            // join) goes before the version is built. Chunks still missing get windows anew.
            tracing::debug!(from, slot, "every window arrived");
            self.windows.remove(&(from, slot));
            // Taken, not copied (a version of 100,000 files is a delta of ~10 MB), and not
            // checked again: one still missing chunks goes back in.
            let Some((kind, prepared)) = self.incoming.remove(&(from, slot)) else {
                continue;
            };
            match self.finish(ctx, from, kind.clone(), prepared)? {
                Some(rx) => done.push((kind, rx)),
                // Not to be completed from here (its base was asked for, or it was refused):
                // the next delta from `from` starts again.
                None if !self.incoming.contains_key(&(from, slot)) => self.forget(from, slot),
                None => {}
            }
        }
        if got.iter().any(|id| !awaited.contains(id)) {
            ctx.chunks.sync()?;
        }
        Ok(done)
    }
}
