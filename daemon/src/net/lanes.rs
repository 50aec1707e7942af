//! Lanes: one long-lived stream per member, direction and kind, for the small messages that
//! make up most of the traffic (sync messages, Raft calls and their replies).
//!
//! A stream per message, as request-response opens, costs its opening (the protocol
//! negotiation), a close each way and the acknowledgements of each: about 1 KB on the wire for
//! a message of a few dozen bytes, and a round trip before the first byte of it. A lane pays
//! that once; every message after it is one frame, one segment.
//!
//! Two kinds ([`Lane`]): `/chorus/sync/2` carries the sync protocol's one-way messages
//! (chorus-proto envelopes); `/chorus/raft/5` carries Raft calls and, back on the same stream,
//! their replies. The node that opened a lane writes messages and calls on it; the other end
//! writes only the replies to those calls. The bulky chunk transfers keep a stream per request
//! (`/chorus/chunks/1`), so a lane never waits behind megabytes of data.
//!
//! A frame ([`Frame`]) is a 4-byte big-endian length of what follows, a tag (0 message, 1 call,
//! 2 reply), for a call or a reply the caller's 8-byte call id, then the bytes. The length is
//! checked against the lane's bound before anything is allocated and the buffer grows only as
//! bytes arrive. A frame the lane does not carry (a call on a sync lane, a message or a call
//! written back on a lane this node opened, an unknown tag, one over the bound) closes the
//! lane: the calls waiting on it fail at once, and the next message opens a new one.

use std::collections::HashMap;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use chorus_election::{RaftReply, RaftRpc};
use chorus_proto::{Limits, decode_frame};
use futures::stream::{BoxStream, FuturesUnordered};
use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, StreamExt};
use libp2p::{PeerId, Stream, StreamProtocol};
use tokio::sync::{mpsc, oneshot};

use super::codec::Counters;
use super::handle::{Inbound, SharedStats, with_stats};

/// Raft frames are small (headers only); this bounds a hostile one.
pub(super) const MAX_RAFT_FRAME: usize = 4 << 20;
/// What waits for a lane's stream (while it opens, or behind a large message), in frames and
/// in bytes; past either a message is dropped (the sync protocol asks again) and a call fails
/// at once.
const QUEUE: usize = 1024;
const QUEUE_BYTES: usize = 64 << 20;
/// Raft calls served at once on one lane; more are left unanswered (their caller times out,
/// as on a lost frame).
const MAX_CALLS_SERVED: usize = 256;
/// Bytes of a frame before its payload: the tag and a call id.
const HEAD: usize = 9;

/// The two kinds of lane.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum Lane {
    Sync,
    Raft,
}

impl Lane {
    pub(super) const ALL: [Lane; 2] = [Lane::Sync, Lane::Raft];

    pub(super) fn protocol(self) -> StreamProtocol {
        match self {
            Lane::Sync => StreamProtocol::new("/chorus/sync/2"),
            Lane::Raft => StreamProtocol::new("/chorus/raft/5"),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Lane::Sync => "sync",
            Lane::Raft => "raft",
        }
    }
}

/// One frame on a lane.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Frame {
    Message(Vec<u8>),
    Call(u64, Vec<u8>),
    Reply(u64, Vec<u8>),
}

impl Frame {
    /// The frame's bytes, length prefix included: the header goes in front of the payload
    /// where it lies (a delta of 100k files is a payload of ~8 MB, which a copy held twice).
    pub(super) fn encode(self) -> Vec<u8> {
        let (tag, id, mut bytes) = match self {
            Frame::Message(b) => (0u8, None, b),
            Frame::Call(id, b) => (1, Some(id), b),
            Frame::Reply(id, b) => (2, Some(id), b),
        };
        let len = 1 + if id.is_some() { 8 } else { 0 } + bytes.len();
        let mut head = Vec::with_capacity(HEAD + 4);
        // Payloads are bounded far below 4 GiB (the frame limits) before they get here.
        head.extend_from_slice(&(len as u32).to_be_bytes());
        head.push(tag);
        if let Some(id) = id {
            head.extend_from_slice(&id.to_be_bytes());
        }
        // Exactly: a payload's Vec is full, and growing it by the usual doubling would hold
        // twice its size.
        bytes.reserve_exact(head.len());
        bytes.splice(0..0, head);
        bytes
    }

    /// Reads one frame whose payload is at most `max` bytes; `None` at a clean end of the
    /// stream (between frames).
    pub(super) async fn read<R: AsyncRead + Unpin>(
        io: &mut R,
        max: usize,
    ) -> io::Result<Option<Frame>> {
        let mut header = [0u8; 4];
        let mut got = 0;
        while got < 4 {
            match io.read(&mut header[got..]).await? {
                0 if got == 0 => return Ok(None),
                0 => return Err(io::ErrorKind::UnexpectedEof.into()),
                n => got += n,
            }
        }
        let len = u32::from_be_bytes(header) as usize;
        if len == 0 || len > max + HEAD {
            return Err(invalid(format!(
                "a frame of {len} bytes (at most {} here)",
                max + HEAD
            )));
        }
        // Allocated as bytes arrive: a peer that declares 4 MiB and sends ten bytes costs ten.
        let mut body = Vec::with_capacity(len.min(64 << 10));
        (&mut *io).take(len as u64).read_to_end(&mut body).await?;
        if body.len() != len {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        let tag = body[0];
        if tag == 0 {
            body.remove(0);
            return Ok(Some(Frame::Message(body)));
        }
        if body.len() < HEAD {
            return Err(invalid(format!("a tag-{tag} frame of {len} bytes")));
        }
        let id = u64::from_be_bytes(body[1..HEAD].try_into().expect("eight bytes"));
        body.drain(..HEAD);
        match tag {
            1 => Ok(Some(Frame::Call(id, body))),
            2 => Ok(Some(Frame::Reply(id, body))),
            _ => Err(invalid(format!("a frame with the unknown tag {tag}"))),
        }
    }
}

fn invalid(what: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what)
}

async fn write<W: AsyncWrite + Unpin>(w: &mut W, bytes: &[u8]) -> io::Result<()> {
    w.write_all(bytes).await?;
    w.flush().await
}

/// The frames read from a stream, as a stream (so waiting for the next one can be given up
/// and resumed without losing a partly read frame).
fn frames<R: AsyncRead + Unpin + Send + 'static>(
    r: R,
    max: usize,
) -> BoxStream<'static, io::Result<Frame>> {
    futures::stream::unfold(Some(r), move |r| async move {
        let mut r = r?;
        match Frame::read(&mut r, max).await {
            Ok(Some(f)) => Some((Ok(f), Some(r))),
            Ok(None) => None,
            Err(e) => Some((Err(e), None)),
        }
    })
    .boxed()
}

/// What a lane's tasks share with the network task.
#[derive(Clone)]
pub(super) struct LaneCtx {
    pub(super) inbound: mpsc::Sender<Inbound>,
    /// What was dropped because the node was behind.
    pub(super) dropped: Arc<AtomicU64>,
    pub(super) limits: Limits,
    /// Sync frames' bytes, and Raft frames' bytes.
    pub(super) counters: Arc<Counters>,
    pub(super) raft_counters: Arc<Counters>,
    pub(super) stats: SharedStats,
    /// How long opening a lane (and dialling its peer) may take.
    pub(super) open_timeout: Duration,
}

impl LaneCtx {
    fn max(&self, lane: Lane) -> usize {
        match lane {
            Lane::Sync => self.limits.max_frame,
            Lane::Raft => MAX_RAFT_FRAME,
        }
    }

    fn counters(&self, lane: Lane) -> &Counters {
        match lane {
            Lane::Sync => &self.counters,
            Lane::Raft => &self.raft_counters,
        }
    }

    /// A sync or chunk frame of `len` bytes on the wire from `peer`: counted for the peer,
    /// decoded within the limits and handed to the node (one that does not decode is dropped).
    pub(super) fn deliver_sync(&self, peer: PeerId, frame: &[u8], len: u64) {
        with_stats(&self.stats, peer, |s| s.received += len);
        match decode_frame(frame, &self.limits) {
            Ok(env) => {
                if let Some(body) = env.body {
                    self.deliver(Inbound::Sync { from: peer, body });
                }
            }
            Err(e) => tracing::warn!(%peer, "dropped a sync frame: {e}"),
        }
    }

    /// Hands what arrived to the node; false when its queue is full (then it is dropped) or
    /// the node stopped.
    pub(super) fn deliver(&self, what: Inbound) -> bool {
        match self.inbound.try_send(what) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                let dropped = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                if dropped.is_power_of_two() {
                    tracing::warn!(
                        dropped,
                        "the node is behind; messages from peers were dropped"
                    );
                }
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }
}

/// What the network task gives a lane to send.
pub(super) enum Out {
    Message(Vec<u8>),
    Call {
        request: Vec<u8>,
        reply: oneshot::Sender<Result<Vec<u8>, String>>,
    },
}

impl Out {
    fn len(&self) -> usize {
        match self {
            Out::Message(b) => b.len(),
            Out::Call { request, .. } => request.len(),
        }
    }

    /// Tells a call's caller it failed; a message is dropped (the sync protocol retries).
    pub(super) fn fail(self, peer: PeerId, why: &str) {
        match self {
            Out::Message(_) => tracing::debug!(%peer, "a sync message was not delivered: {why}"),
            Out::Call { reply, .. } => {
                let _ = reply.send(Err(why.to_owned()));
            }
        }
    }
}

/// This node's lane to one member as the network task holds it: what it is given to send,
/// and how many bytes of it wait.
pub(super) struct LaneSender {
    tx: mpsc::Sender<Out>,
    queued: Arc<AtomicUsize>,
}

impl LaneSender {
    /// Starts the lane's task (the stream opens when the first message is due).
    pub(super) fn start(
        control: libp2p_stream::Control,
        peer: PeerId,
        lane: Lane,
        ctx: LaneCtx,
    ) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        let queued = Arc::new(AtomicUsize::new(0));
        tokio::spawn(outbound(control, peer, lane, ctx, rx, queued.clone()));
        LaneSender { tx, queued }
    }

    /// False once the lane's task ended.
    pub(super) fn is_open(&self) -> bool {
        !self.tx.is_closed()
    }

    /// Queues `out` for the lane, or fails it when too much waits already.
    pub(super) fn send(&self, peer: PeerId, out: Out) {
        let len = out.len();
        if self.queued.load(Ordering::Relaxed).saturating_add(len) > QUEUE_BYTES {
            out.fail(peer, "too much is waiting for the lane");
            return;
        }
        self.queued.fetch_add(len, Ordering::Relaxed);
        if let Err(e) = self.tx.try_send(out) {
            self.queued.fetch_sub(len, Ordering::Relaxed);
            let out = match e {
                mpsc::error::TrySendError::Full(o) | mpsc::error::TrySendError::Closed(o) => o,
            };
            out.fail(peer, "too much is waiting for the lane");
        }
    }
}

/// The lane this node opens to `peer`: opened when the first message is due, and again after
/// it closed; it ends when the network task drops its sender. `queued` counts the bytes
/// waiting in `queue`.
async fn outbound(
    mut control: libp2p_stream::Control,
    peer: PeerId,
    lane: Lane,
    ctx: LaneCtx,
    mut queue: mpsc::Receiver<Out>,
    queued: Arc<AtomicUsize>,
) {
    let max = ctx.max(lane);
    let mut next_id = 0u64;
    let took = |out: &Out| {
        queued.fetch_sub(out.len(), Ordering::Relaxed);
    };
    while let Some(first) = queue.recv().await {
        took(&first);
        let opened =
            tokio::time::timeout(ctx.open_timeout, control.open_stream(peer, lane.protocol()))
                .await;
        let stream = match opened {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                first.fail(peer, &format!("cannot open the {} lane: {e}", lane.name()));
                continue;
            }
            Err(_) => {
                first.fail(
                    peer,
                    &format!("the {} lane did not open in time", lane.name()),
                );
                continue;
            }
        };
        let (r, mut w) = stream.split();
        let mut replies = frames(r, max);
        let mut pending: HashMap<u64, oneshot::Sender<Result<Vec<u8>, String>>> = HashMap::new();
        let mut next = Some(first);
        let why = loop {
            if let Some(out) = next.take() {
                let frame = match out {
                    Out::Message(bytes) => Frame::Message(bytes),
                    Out::Call { request, reply } => {
                        next_id += 1;
                        // Calls whose callers gave up (timed out) are forgotten here.
                        pending.retain(|_, tx| !tx.is_closed());
                        pending.insert(next_id, reply);
                        Frame::Call(next_id, request)
                    }
                };
                let bytes = frame.encode();
                if let Err(e) = write(&mut w, &bytes).await {
                    break e.to_string();
                }
                let sent = bytes.len() as u64;
                ctx.counters(lane).sent.fetch_add(sent, Ordering::Relaxed);
                tracing::trace!(%peer, lane = lane.name(), bytes = sent, "frame sent");
            }
            tokio::select! {
                out = queue.recv() => match out {
                    Some(out) => {
                        took(&out);
                        next = Some(out);
                    }
                    None => break "this node stopped using it".to_owned(),
                },
                frame = replies.next() => match frame {
                    Some(Ok(Frame::Reply(id, bytes))) => {
                        let got = 4 + HEAD as u64 + bytes.len() as u64;
                        ctx.counters(lane).received.fetch_add(got, Ordering::Relaxed);
                        // A reply to a call given up on finds no one.
                        if let Some(tx) = pending.remove(&id) {
                            let _ = tx.send(Ok(bytes));
                        }
                    }
                    Some(Ok(_)) => break "the peer wrote a message or a call back".to_owned(),
                    Some(Err(e)) => break e.to_string(),
                    None => break "the peer closed it".to_owned(),
                },
            }
        };
        tracing::debug!(%peer, lane = lane.name(), "a lane closed: {why}");
        for (_, tx) in pending.drain() {
            let _ = tx.send(Err(format!("the {} lane closed: {why}", lane.name())));
        }
        if queue.is_closed() && queue.is_empty() {
            return;
        }
    }
}

/// A lane `peer` opened to this node (the network task checked it is a member): its messages
/// go to the node, its calls too, and their replies back on it.
pub(super) async fn inbound(peer: PeerId, lane: Lane, stream: Stream, ctx: LaneCtx) {
    let max = ctx.max(lane);
    let (r, mut w) = stream.split();
    let mut frames = frames(r, max);
    let mut serving = FuturesUnordered::new();
    let why = loop {
        tokio::select! {
            frame = frames.next() => match frame {
                Some(Ok(Frame::Message(bytes))) if lane == Lane::Sync => {
                    let len = 4 + 1 + bytes.len() as u64;
                    ctx.counters.received.fetch_add(len, Ordering::Relaxed);
                    ctx.deliver_sync(peer, &bytes, len);
                }
                Some(Ok(Frame::Call(id, bytes))) if lane == Lane::Raft => {
                    let len = 4 + HEAD as u64 + bytes.len() as u64;
                    ctx.raft_counters.received.fetch_add(len, Ordering::Relaxed);
                    if serving.len() >= MAX_CALLS_SERVED {
                        tracing::debug!(%peer, "too many raft calls in flight; one was dropped");
                        continue;
                    }
                    let rpc = match RaftRpc::from_bytes(&bytes) {
                        Ok(r) => r,
                        Err(e) => {
                            tracing::warn!(%peer, "dropped a raft frame: {e}");
                            continue;
                        }
                    };
                    let (reply, rx) = oneshot::channel::<RaftReply>();
                    if !ctx.deliver(Inbound::Raft { from: peer, rpc: Box::new(rpc), reply }) {
                        continue;
                    }
                    serving.push(async move {
                        (id, rx.await.ok().and_then(|r| r.to_bytes().ok()))
                    });
                }
                Some(Ok(f)) => break format!("a frame this lane does not carry ({})", tag_name(&f)),
                Some(Err(e)) => break e.to_string(),
                None => break "the peer closed it".to_owned(),
            },
            Some((id, reply)) = serving.next(), if !serving.is_empty() => {
                // A call the node did not answer (it stopped) is left for its caller to time out.
                if let Some(bytes) = reply {
                    let frame = Frame::Reply(id, bytes).encode();
                    if let Err(e) = write(&mut w, &frame).await {
                        break e.to_string();
                    }
                    ctx.raft_counters.sent.fetch_add(frame.len() as u64, Ordering::Relaxed);
                }
            }
        }
    };
    tracing::debug!(%peer, lane = lane.name(), "a lane from a peer closed: {why}");
}

fn tag_name(f: &Frame) -> &'static str {
    match f {
        Frame::Message(_) => "a message",
        Frame::Call(..) => "a call",
        Frame::Reply(..) => "a reply",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(mut wire: &[u8], max: usize) -> Vec<io::Result<Option<Frame>>> {
        futures::executor::block_on(async {
            let mut out = Vec::new();
            loop {
                let r = Frame::read(&mut wire, max).await;
                let end = !matches!(r, Ok(Some(_)));
                out.push(r);
                if end {
                    return out;
                }
            }
        })
    }

    /// What waits for a lane is bounded in bytes: with the stream not open yet (its peer is
    /// not connected), calls past the bound fail at once instead of piling up.
    #[tokio::test]
    async fn what_waits_for_a_lane_is_bounded_in_bytes() {
        let (inbound, _rx) = mpsc::channel(1);
        let ctx = LaneCtx {
            inbound,
            dropped: Arc::default(),
            limits: Limits::default(),
            counters: Arc::default(),
            raft_counters: Arc::default(),
            stats: SharedStats::default(),
            open_timeout: Duration::from_secs(60),
        };
        // A control whose behaviour no swarm runs: the lane never opens.
        let control = libp2p_stream::Behaviour::new().new_control();
        let peer = PeerId::random();
        let lane = LaneSender::start(control, peer, Lane::Raft, ctx);
        let call = |len: usize| {
            let (reply, rx) = oneshot::channel();
            lane.send(
                peer,
                Out::Call {
                    request: vec![0; len],
                    reply,
                },
            );
            rx
        };
        // These fit whether or not the lane's task has taken the first yet (it waits for the
        // stream with it): QUEUE_BYTES - 3 bytes in all. The next 8 bytes go past the bound
        // either way, and fail at once.
        let mut waiting = vec![call(1)];
        for _ in 0..4 {
            waiting.push(call(QUEUE_BYTES / 4 - 1));
        }
        let mut refused = call(8);
        let failed = tokio::time::timeout(Duration::from_secs(5), &mut refused)
            .await
            .expect("answered at once");
        assert!(matches!(failed, Ok(Err(_))), "{failed:?}");
        for rx in &mut waiting {
            assert!(rx.try_recv().is_err(), "still waiting");
        }
    }

    #[test]
    fn frames_round_trip_one_after_another() {
        let frames = [
            Frame::Message(b"hello".to_vec()),
            Frame::Call(7, vec![1, 2, 3]),
            Frame::Reply(u64::MAX, Vec::new()),
            Frame::Message(Vec::new()),
        ];
        let wire: Vec<u8> = frames.iter().cloned().flat_map(Frame::encode).collect();
        let got = read_all(&wire, 16);
        assert_eq!(got.len(), frames.len() + 1);
        for (f, r) in frames.iter().zip(&got) {
            assert_eq!(r.as_ref().unwrap().as_ref(), Some(f));
        }
        assert!(matches!(got.last(), Some(Ok(None))), "a clean end");
    }

    #[test]
    fn malformed_frames_are_errors_not_allocations() {
        let bad: &[&[u8]] = &[
            // declares 1 GiB
            &[0x40, 0, 0, 0, 0, 1, 2],
            // empty
            &[0, 0, 0, 0],
            // a call too short for its id
            &[0, 0, 0, 3, 1, 0, 0],
            // an unknown tag
            &[0, 0, 0, 9, 3, 0, 0, 0, 0, 0, 0, 0, 1],
            // cut in its length
            &[0, 0],
            // cut in its body
            &[0, 0, 0, 5, 0, b'a'],
            // a payload one byte over the bound of 16
            &[0, 0, 0, 26, 1, 0, 0, 0, 0, 0, 0, 0, 1],
        ];
        for wire in bad {
            let got = read_all(wire, 16);
            assert!(
                matches!(got.last(), Some(Err(_))),
                "{wire:?} read as {got:?}"
            );
        }
        // The largest payload allowed reads.
        let ok = Frame::Call(1, vec![0; 16]).encode();
        assert!(matches!(read_all(&ok, 16)[0], Ok(Some(Frame::Call(1, _)))));
    }
}
