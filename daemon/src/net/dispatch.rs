//! What arrives from members, handed to the node through its bounded inbound queue: chunk
//! requests (a stream each, `/chorus/chunks/1`) and the lanes members open (sync messages and
//! Raft calls, see [`super::lanes`]); what this node sends them, through the bandwidth limit
//! and its own lanes; and [`Rr`], a request-response event reduced to what the handlers (these
//! and the join protocol's) act on.

use libp2p::request_response::{self, OutboundRequestId, ResponseChannel};
use libp2p::{PeerId, Stream};

use super::handle::Inbound;
use super::lanes::{self, Lane, LaneSender, Out};
use super::task::Task;

impl Task {
    /// Hands what arrived to the node; false when its queue is full (then it is dropped) or
    /// the node stopped.
    pub(super) fn deliver(&mut self, what: Inbound) -> bool {
        self.lane_ctx.deliver(what)
    }

    /// Chunk requests: acknowledged at once (the protocol answers with messages of its own),
    /// decoded and handed to the node.
    pub(super) fn chunks_event(&mut self, e: request_response::Event<Vec<u8>, Vec<u8>>) {
        match Rr::from(e) {
            Rr::Request {
                peer,
                request,
                channel,
            } => {
                if !self.authorize(peer) {
                    return;
                }
                let b = self.swarm.behaviour_mut();
                if b.chunks.send_response(channel, Vec::new()).is_err() {
                    tracing::debug!(%peer, "a chunk request's stream closed before the ack");
                }
                self.lane_ctx
                    .deliver_sync(peer, &request, request.len() as u64 + 4);
            }
            Rr::Failed { peer, error, .. } => {
                tracing::debug!(%peer, "a chunk message was not delivered: {error}");
            }
            Rr::Response { .. } | Rr::Other => {}
        }
    }

    /// A member opened a lane to this node: it is served (a newer lane of the same kind from
    /// the same peer replaces the older, so a peer holds at most one of each); anyone else is
    /// refused.
    pub(super) fn lane_opened(&mut self, peer: PeerId, lane: Lane, stream: Stream) {
        if !self.authorize(peer) {
            return;
        }
        let served = tokio::spawn(lanes::inbound(peer, lane, stream, self.lane_ctx.clone()));
        if let Some(old) = self.lanes_in.insert((peer, lane), served.abort_handle()) {
            old.abort();
        }
    }

    /// Sends on this node's lane to `to`, opening it if needed (again, once its task ended).
    pub(super) fn send_on_lane(&mut self, to: PeerId, lane: Lane, out: Out) {
        let key = (to, lane);
        if !self.lanes_out.get(&key).is_some_and(LaneSender::is_open) {
            let started = LaneSender::start(self.control.clone(), to, lane, self.lane_ctx.clone());
            self.lanes_out.insert(key, started);
        }
        self.lanes_out[&key].send(to, out);
    }

    /// Closes the lanes of a peer that is no longer a member.
    pub(super) fn close_lanes(&mut self, peer: PeerId) {
        for lane in Lane::ALL {
            self.lanes_out.remove(&(peer, lane));
            if let Some(served) = self.lanes_in.remove(&(peer, lane)) {
                served.abort();
            }
        }
    }
}

/// A request-response event reduced to what the handlers act on.
pub(super) enum Rr {
    Request {
        peer: PeerId,
        request: Vec<u8>,
        channel: ResponseChannel<Vec<u8>>,
    },
    Response {
        request_id: OutboundRequestId,
        response: Vec<u8>,
    },
    Failed {
        peer: PeerId,
        request_id: OutboundRequestId,
        error: String,
    },
    Other,
}

impl From<request_response::Event<Vec<u8>, Vec<u8>>> for Rr {
    fn from(e: request_response::Event<Vec<u8>, Vec<u8>>) -> Self {
        use request_response::{Event, Message};
        match e {
            Event::Message {
                peer,
                message:
                    Message::Request {
                        request, channel, ..
                    },
                ..
            } => Rr::Request {
                peer,
                request,
                channel,
            },
            Event::Message {
                message:
                    Message::Response {
                        request_id,
                        response,
                    },
                ..
            } => Rr::Response {
                request_id,
                response,
            },
            Event::OutboundFailure {
                peer,
                request_id,
                error,
                ..
            } => Rr::Failed {
                peer,
                request_id,
                error: error.to_string(),
            },
            _ => Rr::Other,
        }
    }
}
