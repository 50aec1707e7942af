//! Admission: only members (the allow list) get a request answered. A peer that is not one has
//! [`JOIN_GRACE`] to present a valid invite on `/chorus/join/1`, else it is disconnected and
//! blocked, as is any non-member that sends a sync or Raft request. Also the join protocol
//! itself: a request carries an invite code (good at the member that issued it, which answers
//! with a voucher) or a voucher (good at every member, [`super::invite`]); an accepted one is
//! answered with the members this node knows. And the answers to this node's own joins.

use std::time::{Duration, Instant};

use libp2p::request_response;
use libp2p::{Multiaddr, PeerId};
use tokio::sync::oneshot;

use super::book::peer_of;
use super::dispatch::Rr;
use super::handle::{Inbound, JoinAccepted};
use super::invite::{Code, Voucher, check_voucher, now_ms, vouch};
use super::task::Task;

/// How long a peer that is not a member may stay connected without a valid invite.
const JOIN_GRACE: Duration = Duration::from_secs(10);

/// A join request on the wire.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct JoinRequest {
    /// The invite code, hex.
    #[serde(default)]
    code: Option<String>,
    /// A voucher from the member that issued the code.
    #[serde(default)]
    voucher: Option<Voucher>,
    /// Where the joiner listens.
    addrs: Vec<String>,
}

/// The answer to a join: the members this node knows, so the joiner can present its invite
/// to whichever of them leads, and the voucher when this node issued the code.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct JoinAnswer {
    members: Vec<String>,
    #[serde(default)]
    voucher: Option<Voucher>,
}

impl Task {
    /// Lets these peers connect (they joined the membership).
    ///
    /// The addresses mDNS heard for a new member before it was one go into the book, where
    /// the members' redial (at the next tick, and at every one after while it is not
    /// connected) dials them: mDNS reports a peer once, when first heard (later answers only
    /// renew it), and that report was passed over while the peer was a stranger. Two members
    /// that each heard the other on the LAN before their memberships said so never dialled
    /// each other.
    pub(super) fn allow(&mut self, peers: Vec<PeerId>) {
        for p in peers {
            self.swarm.behaviour_mut().block.unblock_peer(p);
            self.strangers.remove(&p);
            self.allowed.insert(p);
            for a in self.heard.remove(&p).unwrap_or_default() {
                self.learn(p, a);
            }
        }
        self.links_allowed_changed();
    }

    /// Refuses these peers from now on, and drops their connections.
    pub(super) fn disallow(&mut self, peers: Vec<PeerId>) {
        for p in peers {
            self.allowed.remove(&p);
            self.quic_members.remove(&p);
            self.relayed_last.remove(&p);
            self.reported.remove(&p);
            self.better_tried.remove(&p);
            self.refuse(p);
            self.close_lanes(p);
        }
        self.swarm
            .behaviour_mut()
            .gate
            .set_members(&self.quic_members);
        self.links_allowed_changed();
    }

    /// Disconnects and blocks a peer that may not talk to this node.
    pub(super) fn refuse(&mut self, peer: PeerId) {
        self.strangers.remove(&peer);
        self.swarm.behaviour_mut().block.block_peer(peer);
        let _ = self.swarm.disconnect_peer_id(peer);
    }

    /// True when `peer` may send requests; otherwise it is refused: disconnected, blocked, and
    /// its request left unanswered (dropping the channel closes the stream).
    pub(super) fn authorize(&mut self, peer: PeerId) -> bool {
        if self.allowed.contains(&peer) {
            return true;
        }
        self.refuse(peer);
        false
    }

    /// A peer connected: if it is not a member, its grace to present an invite starts.
    pub(super) fn admit_connection(&mut self, peer: PeerId) {
        if !self.allowed.contains(&peer) {
            self.strangers
                .entry(peer)
                .or_insert_with(|| Instant::now() + JOIN_GRACE);
        }
    }

    /// Refuses the strangers whose grace is over.
    pub(super) fn expire_strangers(&mut self, now: Instant) {
        let expired: Vec<PeerId> = self
            .strangers
            .iter()
            .filter(|(_, until)| **until <= now)
            .map(|(p, _)| *p)
            .collect();
        for p in expired {
            tracing::info!(%p, "disconnected a peer that is not a member and showed no invite");
            self.refuse(p);
        }
    }

    /// Checks a join request from `peer`: `Some(voucher to give)` when its code is one this
    /// node issued and may still be used (the voucher), or its voucher is good (`None` to
    /// give); `None` when it is refused (logged, with why).
    fn admit_join(&mut self, peer: PeerId, r: &JoinRequest) -> Option<Option<Voucher>> {
        let now = now_ms();
        let mut why = "no invite code or voucher".to_owned();
        if let Some(code) = &r.code {
            let code = hex::decode(code).unwrap_or_default();
            match self.invites.redeem(&code, &peer, now) {
                Ok(()) => return Some(vouch(&self.keypair, &self.secret, &peer, now)),
                Err(e) => why = e.to_string(),
            }
        }
        if let Some(v) = &r.voucher {
            let local = *self.swarm.local_peer_id();
            if check_voucher(
                v,
                &self.secret,
                &peer,
                |p| *p != peer && (*p == local || self.allowed.contains(p)),
                now,
            ) {
                return Some(None);
            }
            why = "a voucher this node does not take (expired, or not a member's)".to_owned();
        }
        tracing::info!(%peer, "refused a join: {why}");
        None
    }

    /// Presents an invite code and/or voucher to `to`; `reply` gets what it answered, or
    /// `None`.
    pub(super) fn send_join(
        &mut self,
        to: PeerId,
        code: Option<Code>,
        voucher: Option<Voucher>,
        addrs: Vec<Multiaddr>,
        reply: oneshot::Sender<Option<JoinAccepted>>,
    ) {
        let req = JoinRequest {
            code: code.map(hex::encode),
            voucher,
            addrs: addrs.iter().map(|a| a.to_string()).collect(),
        };
        match serde_json::to_vec(&req) {
            Ok(bytes) => {
                let id = self.swarm.behaviour_mut().join.send_request(&to, bytes);
                self.joins.insert(id, reply);
            }
            Err(_) => {
                let _ = reply.send(None);
            }
        }
    }

    /// Join requests (from anyone, checked against the invite) and the answers to ours.
    pub(super) fn join_event(&mut self, e: request_response::Event<Vec<u8>, Vec<u8>>) {
        match Rr::from(e) {
            Rr::Request {
                peer,
                request,
                channel,
            } => {
                let req: Option<JoinRequest> = serde_json::from_slice(&request).ok();
                let Some((req, voucher)) = req.and_then(|r| {
                    let v = self.admit_join(peer, &r)?;
                    Some((r, v))
                }) else {
                    self.refuse(peer);
                    return;
                };
                self.allowed.insert(peer);
                self.strangers.remove(&peer);
                let addrs: Vec<Multiaddr> = req
                    .addrs
                    .iter()
                    .take(8)
                    .filter_map(|a| a.parse().ok())
                    .collect();
                for a in &addrs {
                    self.learn(peer, a.clone());
                }
                let members: Vec<String> = self
                    .allowed
                    .iter()
                    .filter(|p| **p != peer)
                    .flat_map(|p| {
                        self.book.get(p).into_iter().flatten().map(move |a| {
                            if peer_of(a).is_some() {
                                a.to_string()
                            } else {
                                format!("{a}/p2p/{p}")
                            }
                        })
                    })
                    .take(64)
                    .collect();
                let answer =
                    serde_json::to_vec(&JoinAnswer { members, voucher }).unwrap_or_default();
                let _ = self
                    .swarm
                    .behaviour_mut()
                    .join
                    .send_response(channel, answer);
                self.deliver(Inbound::Join { from: peer, addrs });
            }
            Rr::Response {
                request_id,
                response,
            } => {
                if let Some(tx) = self.joins.remove(&request_id) {
                    let accepted = serde_json::from_slice::<JoinAnswer>(&response)
                        .ok()
                        .map(|a| JoinAccepted {
                            members: a
                                .members
                                .iter()
                                .take(64)
                                .filter_map(|m| m.parse().ok())
                                .collect(),
                            voucher: a.voucher,
                        });
                    let _ = tx.send(accepted);
                }
            }
            Rr::Failed { request_id, .. } => {
                if let Some(tx) = self.joins.remove(&request_id) {
                    let _ = tx.send(None);
                }
            }
            Rr::Other => {}
        }
    }
}
