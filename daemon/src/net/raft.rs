//! chorus-election's [`Transport`] over the network task: an RPC to a member goes as a
//! `/chorus/raft/2` request to its PeerId, dialled at its recorded addresses when needed.

use chorus_election::network::BoxFuture;
use chorus_election::{Member, NodeId, RaftReply, RaftRpc, Transport, TransportError};
use libp2p::{Multiaddr, PeerId};

use super::handle::NetHandle;

/// The Raft transport of one node.
pub struct RaftTransport {
    net: NetHandle,
}

impl RaftTransport {
    pub fn new(net: NetHandle) -> Self {
        RaftTransport { net }
    }
}

impl Transport for RaftTransport {
    fn call(
        &self,
        target: NodeId,
        member: &Member,
        rpc: RaftRpc,
    ) -> BoxFuture<Result<RaftReply, TransportError>> {
        let net = self.net.clone();
        let peer = PeerId::from_bytes(&member.peer_id);
        let addrs: Vec<Multiaddr> = member
            .addresses
            .iter()
            .filter_map(|a| a.parse().ok())
            .collect();
        Box::pin(async move {
            let peer = peer.map_err(|e| {
                TransportError(format!("member {target} has an invalid peer id: {e}"))
            })?;
            net.raft_call(peer, addrs, &rpc).await
        })
    }
}
