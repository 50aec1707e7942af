//! How Raft RPCs leave a node: a [`Transport`] trait the daemon implements over libp2p
//! request-response (`/chorus/raft/2`), and this crate's in-memory [`crate::memnet`]. Messages
//! are serde types, so any codec can carry them. Every call is bounded by openraft's deadline;
//! a peer that does not answer in time is a timeout, never a hang. What arrives, RPC or reply,
//! passes [`crate::admission`] first.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use openraft::Raft;
use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Timeout, Unreachable,
};
use openraft::network::{RPCOption, RPCTypes, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};

use crate::admission::{Local, Refused, check_reply, check_rpc};
use crate::heard::LastHeard;
use crate::log_store::Tail;
use crate::types::{Member, NodeId, TypeConfig};
pub use crate::types::{RaftReply, RaftRpc};

/// Why an RPC got no answer.
#[derive(Debug, Clone, thiserror::Error)]
#[error("peer unreachable: {0}")]
pub struct TransportError(pub String);

/// A boxed future, so the trait is object-safe.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// Carries RPCs to other nodes. Implementations deliver `rpc` to `target` (reachable at
/// `member`'s addresses) and return what its [`handle`] produced.
pub trait Transport: Send + Sync + 'static {
    fn call(
        &self,
        target: NodeId,
        member: &Member,
        rpc: RaftRpc,
    ) -> BoxFuture<Result<RaftReply, TransportError>>;
}

/// The local node as serving RPCs needs it: its Raft; for pre-votes and the lookout, when it
/// last heard its leader and how long a leader heard counts as alive (its lease).
#[derive(Clone)]
pub(crate) struct Served {
    pub raft: Raft<TypeConfig>,
    pub log: Tail,
    pub heard: LastHeard,
    pub lease: Duration,
}

impl Served {
    /// Serves one incoming RPC that node `from` (as authenticated by the transport) sent to
    /// the local node, once [`crate::admission`] admits it; a refused RPC gets no reply. A
    /// reply that shows a leader heard (or a vote granted) restarts the lookout's clock.
    pub(crate) async fn serve(&self, from: NodeId, rpc: RaftRpc) -> Result<RaftReply, Refused> {
        let raft = &self.raft;
        check_rpc(&Local::of(raft), from, &rpc)?;
        let reply = match rpc {
            RaftRpc::AppendEntries(r) => RaftReply::AppendEntries(raft.append_entries(r).await),
            RaftRpc::Vote(r) => RaftReply::Vote(raft.vote(r).await),
            RaftRpc::InstallSnapshot(r) => {
                RaftReply::InstallSnapshot(raft.install_snapshot(r).await)
            }
            RaftRpc::PreVote(r) => RaftReply::PreVote(crate::heard::answer_pre_vote(
                raft,
                &self.log,
                &self.heard,
                self.lease,
                &r,
            )),
        };
        crate::heard::note(&self.heard, &reply);
        Ok(reply)
    }
}

/// openraft's network factory over a [`Transport`].
pub(crate) struct Network {
    pub id: NodeId,
    pub transport: Arc<dyn Transport>,
    /// This node's current term, kept by the node's metrics watcher: replies are bounded
    /// against it.
    pub term: Arc<AtomicU64>,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Client;

    async fn new_client(&mut self, target: NodeId, node: &Member) -> Client {
        Client {
            id: self.id,
            target,
            member: node.clone(),
            transport: self.transport.clone(),
            term: self.term.clone(),
        }
    }
}

pub(crate) struct Client {
    id: NodeId,
    target: NodeId,
    member: Member,
    transport: Arc<dyn Transport>,
    term: Arc<AtomicU64>,
}

impl Client {
    async fn call<E: std::error::Error>(
        &self,
        rpc: RaftRpc,
        action: RPCTypes,
        option: &RPCOption,
    ) -> Result<RaftReply, RPCError<NodeId, Member, E>> {
        let ttl = option.hard_ttl();
        match tokio::time::timeout(ttl, self.transport.call(self.target, &self.member, rpc)).await {
            Ok(Ok(reply)) => {
                let local = Local {
                    term: self.term.load(Ordering::Relaxed),
                    ..Local::default()
                };
                check_reply(&local, &reply).map_err(|e| {
                    tracing::warn!(target = self.target, "refused a raft reply: {e}");
                    RPCError::Network(NetworkError::new(&e))
                })?;
                Ok(reply)
            }
            Ok(Err(e)) => Err(RPCError::Unreachable(Unreachable::new(&e))),
            Err(_) => Err(RPCError::Timeout(Timeout {
                action,
                id: self.id,
                target: self.target,
                timeout: ttl,
            })),
        }
    }

    fn mismatch<E: std::error::Error>(&self) -> RPCError<NodeId, Member, E> {
        RPCError::Network(NetworkError::new(&TransportError(
            "the reply does not match the request".into(),
        )))
    }

    fn remote<E: std::error::Error>(&self, e: E) -> RPCError<NodeId, Member, E> {
        RPCError::RemoteError(RemoteError::new_with_node(
            self.target,
            self.member.clone(),
            e,
        ))
    }
}

impl RaftNetwork<TypeConfig> for Client {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, Member, RaftError<NodeId>>> {
        match self
            .call(
                RaftRpc::AppendEntries(rpc),
                RPCTypes::AppendEntries,
                &option,
            )
            .await?
        {
            RaftReply::AppendEntries(r) => r.map_err(|e| self.remote(e)),
            _ => Err(self.mismatch()),
        }
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, Member, RaftError<NodeId, InstallSnapshotError>>,
    > {
        match self
            .call(
                RaftRpc::InstallSnapshot(rpc),
                RPCTypes::InstallSnapshot,
                &option,
            )
            .await?
        {
            RaftReply::InstallSnapshot(r) => r.map_err(|e| self.remote(e)),
            _ => Err(self.mismatch()),
        }
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, Member, RaftError<NodeId>>> {
        match self
            .call(RaftRpc::Vote(rpc), RPCTypes::Vote, &option)
            .await?
        {
            RaftReply::Vote(r) => r.map_err(|e| self.remote(e)),
            _ => Err(self.mismatch()),
        }
    }
}
