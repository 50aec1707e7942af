//! What arrives on the sync, chunk and Raft protocols, handed to the node through its bounded
//! inbound queue; and [`Rr`], a request-response event reduced to what the handlers (these and
//! the join protocol's) act on.

use chorus_election::{RaftReply, RaftRpc};
use chorus_proto::decode_frame;
use libp2p::PeerId;
use libp2p::request_response::{self, OutboundRequestId, ResponseChannel};
use tokio::sync::{mpsc, oneshot};

use super::handle::{Inbound, with_stats};
use super::task::Task;

/// Raft RPCs being served at once.
const MAX_RAFT_IN_FLIGHT: usize = 256;

impl Task {
    /// Hands what arrived to the node; false when its queue is full (then it is dropped) or
    /// the node stopped.
    pub(super) fn deliver(&mut self, what: Inbound) -> bool {
        match self.inbound.try_send(what) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.inbound_dropped += 1;
                if self.inbound_dropped.is_power_of_two() {
                    tracing::warn!(
                        dropped = self.inbound_dropped,
                        "the node is behind; messages from peers were dropped"
                    );
                }
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }

    /// Sync and chunk requests: acknowledged at once (the protocol answers with messages of
    /// its own), decoded and handed to the node.
    pub(super) fn sync_event(&mut self, e: request_response::Event<Vec<u8>, Vec<u8>>) {
        match Rr::from(e) {
            Rr::Request {
                peer,
                request,
                channel,
            } => {
                if !self.authorize(peer) {
                    return;
                }
                let len = request.len() as u64 + 4;
                with_stats(&self.stats, peer, |s| s.received += len);
                let b = self.swarm.behaviour_mut();
                if b.sync.send_response(channel, Vec::new()).is_err() {
                    tracing::debug!(%peer, "a sync request's stream closed before the ack");
                }
                match decode_frame(&request, &self.limits) {
                    Ok(env) => {
                        if let Some(body) = env.body {
                            self.deliver(Inbound::Sync { from: peer, body });
                        }
                    }
                    Err(e) => tracing::warn!(%peer, "dropped a sync frame: {e}"),
                }
            }
            Rr::Failed { peer, error, .. } => {
                tracing::debug!(%peer, "a sync message was not delivered: {error}");
            }
            Rr::Response { .. } | Rr::Other => {}
        }
    }

    /// Raft RPCs from members, answered when the node replies; and the answers to ours.
    pub(super) fn raft_event(&mut self, e: request_response::Event<Vec<u8>, Vec<u8>>) {
        match Rr::from(e) {
            Rr::Request {
                peer,
                request,
                channel,
            } => {
                if !self.authorize(peer) {
                    return;
                }
                if self.replies.len() >= MAX_RAFT_IN_FLIGHT {
                    // Dropped unanswered: the sender times out, as on a lost frame.
                    tracing::debug!(%peer, "too many raft rpcs in flight; one was dropped");
                    return;
                }
                let rpc = match RaftRpc::from_bytes(&request) {
                    Ok(r) => r,
                    Err(e) => {
                        tracing::warn!(%peer, "dropped a raft frame: {e}");
                        return;
                    }
                };
                let (reply, rx) = oneshot::channel();
                if !self.deliver(Inbound::Raft {
                    from: peer,
                    rpc: Box::new(rpc),
                    reply,
                }) {
                    return;
                }
                self.replies.push(Box::pin(async move {
                    let bytes = rx.await.ok().and_then(|r: RaftReply| r.to_bytes().ok());
                    (channel, bytes)
                }));
            }
            Rr::Response {
                request_id,
                response,
            } => {
                if let Some(tx) = self.raft_calls.remove(&request_id) {
                    let _ = tx.send(Ok(response));
                }
            }
            Rr::Failed {
                request_id, error, ..
            } => {
                if let Some(tx) = self.raft_calls.remove(&request_id) {
                    let _ = tx.send(Err(error));
                }
            }
            Rr::Other => {}
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
