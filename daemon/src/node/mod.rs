//! One running node. Start-up is `start.rs`; this file is the event loop of the async side,
//! which keeps the network, Raft and the local socket, and hands everything about the share to
//! the worker thread (`worker.rs`), which owns the sync engine and the working folder.
//!
//! The loop wakes on events only: a peer's message (parsed once and queued for the worker), a
//! change of Raft's view or of its applied head (fed through a [`RaftFeed`]: the cluster,
//! committed headers, and a leadership once a linearizable read confirmed it), a request from
//! the socket, and the snapshot timer that publishes what the socket serves.

mod background;
pub mod heap;
mod membership;
mod round_trip;
mod snapshot;
mod start;
mod view;
mod worker;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chorus_election::{ElectionNode, Member, NodeId, Role, node_id_of};
use chorus_proto::message::Message;
use chorus_sync::{ClusterInfo, RaftFeed, RaftView};
use libp2p::{Multiaddr, PeerId};
use tokio::sync::{mpsc, watch};

pub use chorus_folder::Share;
pub use chorus_sync::MassDeleteGuard;

use self::snapshot::Composer;
use self::worker::{Input, PeerMessage};
use crate::api::{self, Command, Refusal, Request};
use crate::config::resolve::Settings;
use crate::config::token::JoinToken;
use crate::net::{self, Inbound};

/// How long a new leader's confirming read may take before it is tried again.
const CONFIRM_WITHIN: Duration = Duration::from_secs(10);
/// How long after a failed confirmation it is tried again.
const CONFIRM_RETRY: Duration = Duration::from_millis(250);
/// How often the socket's snapshot is refreshed.
const SNAPSHOT_EVERY: Duration = Duration::from_millis(200);

/// How a node runs.
pub struct NodeConfig {
    /// The working folder, or the one document, kept in sync. Named by a canonical path (the
    /// watcher compares the paths inotify reports with it).
    pub share: Share,
    /// Names the share in join tokens.
    pub share_id: [u8; 16],
    /// State: identity key, Raft log, sync store, chunks.
    pub state_dir: PathBuf,
    /// The share secret (the private network's key derives from it).
    pub secret: [u8; 32],
    /// What the config file and the command line resolved to (`config::resolve`).
    pub settings: Settings,
    /// Watch the share for changes (inotify), scanning `settings.debounce` after the last.
    pub watch: bool,
    /// Called once start-up has passed its checks (the socket bound, the ports free, the
    /// network listening), with this node's PeerId and listen addresses: where `chorus run`
    /// says it is running, so that nothing says so before a refusal.
    pub started: Option<OnStarted>,
}

/// What [`NodeConfig::started`] calls.
pub type OnStarted = Box<dyn FnOnce(PeerId, &[Multiaddr]) + Send>;

/// Why a node stopped.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error(transparent)]
    Net(#[from] net::NetError),
    #[error("raft")]
    Election(#[from] chorus_election::ElectionError),
    #[error(transparent)]
    Engine(#[from] chorus_sync::EngineError),
    #[error(transparent)]
    Store(#[from] chorus_sync::StoreError),
    #[error("chunk store")]
    Chunks(#[from] chorus_chunking::Error),
    #[error(transparent)]
    Api(#[from] crate::api::server::ServeError),
    #[error("{0}")]
    Config(String),
    #[error("the state dir {}: {source}; check its permissions and free space", path.display())]
    StateDir {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Folder(#[from] chorus_sync::folder::FolderError),
    #[error("cannot start the worker thread: {0}")]
    Thread(#[source] std::io::Error),
}

/// The PeerId of the identity in `state_dir` (created when missing).
pub fn peer_id(state_dir: &std::path::Path) -> Result<PeerId, NodeError> {
    Ok(
        net::load_or_create_keypair(&state_dir.join("identity.key"))?
            .public()
            .to_peer_id(),
    )
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM: the daemon then stops cleanly (Raft shut down, the
/// socket removed). Everything accepted is durable before it is acknowledged, so a SIGKILL
/// loses nothing either; it only leaves the socket file, which the next start replaces.
pub async fn stop_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = term => {}
    }
}

/// What Raft says now, as the engine's feed reads it (the simulation reads it so too).
pub fn raft_view(election: &ElectionNode) -> RaftView {
    let view = election.view();
    let members = election.members();
    RaftView {
        term: view.term,
        leading: view.role == Role::Leader,
        cluster: ClusterInfo {
            leader: view.leader,
            voters: view.voters.clone(),
            learners: view.learners.clone(),
            ranks: election.ranks(),
            peer_ids: members
                .iter()
                .map(|(id, m)| (*id, m.peer_id.clone()))
                .collect(),
        },
    }
}

/// Runs a node until `shutdown` resolves.
pub async fn run(
    cfg: NodeConfig,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), NodeError> {
    let share_id = cfg.share_id;
    let secret = cfg.secret;
    let kind = match cfg.share {
        Share::Folder(_) => crate::config::ShareKind::Folder,
        Share::Document(_) => crate::config::ShareKind::Document,
    };
    let share_path = cfg.share.path().display().to_string();
    let cfg_demote_after = cfg.settings.demote_after;
    let cfg_timing_auto = cfg.settings.timing_auto;
    let retention = cfg.settings.retention;
    let state_dir = cfg.state_dir.clone();
    let ui = Arc::new(api::ui::Launcher::new(cfg.settings.ui.clone()));
    let start::Started {
        election,
        net,
        mut inbound,
        mut api,
        listener,
        control,
        messages,
        worker,
        view,
        events,
        watcher,
    } = start::start(cfg).await?;
    let composer = Arc::new(Composer {
        election: election.clone(),
        net: net.clone(),
        view,
        share: share_path,
        retention,
        seen: snapshot::Seen::load(&state_dir),
    });
    // The local socket answers from the snapshots the loop publishes, and queues commands.
    let mut last = composer.compose().await?;
    let (snapshots, snapshots_rx) = watch::channel(last.clone());
    let snapshots = Arc::new(snapshots);
    let (commands_tx, mut commands) = mpsc::channel::<Command>(16);
    let channels = api::server::Channels {
        snapshots: snapshots_rx,
        commands: commands_tx,
        events: events.clone(),
        ui: ui.clone(),
    };
    api.ui = Some(ui.clone());
    if ui.configured()
        && let Err(e) = ui.start(channels.clone())
    {
        // The share syncs without its page; `chorus ui` tries again and says why.
        tracing::warn!("{e}");
    }
    api.task = Some(tokio::spawn(api::server::serve(listener, channels)));
    let mut feed = RaftFeed::new();
    let mut raft_changes = election.subscribe();
    let mut head_changes = election.subscribe_head();
    let mut links = net.links();
    let mut reaches: Option<bool> = None;
    let (confirmations, mut confirmed) = mpsc::unbounded_channel::<(u64, bool)>();
    let mut dropped: u64 = 0;
    let mut snapshot_timer = tokio::time::interval(SNAPSHOT_EVERY);
    snapshot_timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The membership (with the addresses the leader recorded) this node last acted on.
    let mut members_seen: Option<(ClusterInfo, BTreeMap<NodeId, Member>)> = None;
    membership::keep(election.clone(), net.clone(), cfg_demote_after);
    if cfg_timing_auto {
        round_trip::record(state_dir.clone(), election.clone(), net.clone());
    }
    // Raft as it is at start.
    let follow =
        |feed: &mut RaftFeed,
         members_seen: &mut Option<(ClusterInfo, BTreeMap<NodeId, Member>)>| {
            let v = raft_view(&election);
            let evs = feed.poll(&v, |after| election.headers_after(after));
            // Addresses count as a change: the leader records a member's new ones (a laptop on
            // another network, a LAN address heard by mDNS), and the others dial it there.
            let members = election.members();
            if members_seen
                .as_ref()
                .is_none_or(|(cluster, seen)| *cluster != v.cluster || *seen != members)
            {
                // Members may talk to this node, and are dialled at the addresses they recorded.
                let peers: Vec<PeerId> = members
                    .values()
                    .filter_map(|m| PeerId::from_bytes(&m.peer_id).ok())
                    .collect();
                // A member that left the membership (`chorus remove`) is refused from now on.
                let gone: Vec<PeerId> = members_seen
                    .iter()
                    .flat_map(|(c, _)| c.peer_ids.values())
                    .filter_map(|b| PeerId::from_bytes(b).ok())
                    .filter(|p| !peers.contains(p))
                    .collect();
                if !gone.is_empty() {
                    net.disallow(gone);
                }
                if members.contains_key(&election.id()) {
                    net.set_quic_members(peers.clone());
                }
                net.allow(peers);
                for m in members.values() {
                    if let Ok(p) = PeerId::from_bytes(&m.peer_id) {
                        for a in m.addresses.iter().filter_map(|a| a.parse().ok()) {
                            net.add_address(p, a);
                        }
                    }
                }
                *members_seen = Some((v.cluster.clone(), members));
            }
            if !evs.is_empty() {
                let _ = control.send(Input::Raft(evs));
            }
            if let Some(term) = feed.confirm_due(&v) {
                // A linearizable read proves the leadership and that every earlier header is
                // applied; it takes a heartbeat round, which on a WAN is most of a second.
                let (e, tx) = (election.clone(), confirmations.clone());
                tokio::spawn(async move {
                    let read = tokio::time::timeout(CONFIRM_WITHIN, e.read_head()).await;
                    if let Ok(Err(err)) = &read {
                        tracing::debug!(term, "confirming the leadership failed: {err}");
                        // Without a majority a read fails at once; it is tried again, not spun.
                        tokio::time::sleep(CONFIRM_RETRY).await;
                    }
                    let _ = tx.send((term, matches!(read, Ok(Ok(_)))));
                });
            }
        };
    follow(&mut feed, &mut members_seen);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            msg = inbound.recv() => match msg {
                Some(Inbound::Sync { from, body }) => match Message::parse(body) {
                    Ok(message) => {
                        let from = node_id_of(&from.to_bytes());
                        if messages.try_send(PeerMessage { from, message }).is_err() {
                            // The worker is behind: the protocol retries what matters.
                            dropped += 1;
                            tracing::debug!(dropped, "the worker is busy; a sync message was dropped");
                        }
                    }
                    Err(e) => tracing::warn!(peer = %from, "dropped a malformed sync message: {}", chorus_proto::shown(&e.to_string())),
                },
                Some(Inbound::Join { from, addrs }) => membership::on_join(&election, from, addrs),
                Some(Inbound::Raft { from, rpc, reply }) => {
                    let e = election.clone();
                    tokio::spawn(async move {
                        // The sender is the authenticated PeerId, not what the RPC claims.
                        match e.handle(node_id_of(&from.to_bytes()), *rpc).await {
                            Ok(r) => {
                                let _ = reply.send(r);
                            }
                            Err(refused) => tracing::warn!(peer = %from, "refused a raft rpc: {refused}"),
                        }
                    });
                }
                // If it led, the followers campaign now rather than after the heartbeat timeout.
                Some(Inbound::Gone { peer }) => {
                    let id = node_id_of(&peer.to_bytes());
                    if election.view().leader == Some(id) {
                        tracing::info!(%peer, "the leader's connection closed and it cannot be dialled; electing another");
                        election.leader_lost(id);
                    }
                }
                None => return Err(NodeError::Net(net::NetError::Stopped)),
            },
            Ok(()) = raft_changes.changed() => {
                follow(&mut feed, &mut members_seen);
                membership::update_reach(&election, &links.borrow(), &mut reaches);
            }
            Ok(()) = links.changed() => {
                membership::update_reach(&election, &links.borrow_and_update(), &mut reaches);
            }
            Ok(()) = head_changes.changed() => follow(&mut feed, &mut members_seen),
            Some((term, ok)) = confirmed.recv() => {
                let v = raft_view(&election);
                let evs = feed.confirmed(term, ok, &v, |after| election.headers_after(after));
                if !evs.is_empty() {
                    let _ = control.send(Input::Raft(evs));
                }
                // A failed confirmation is tried again while this node leads.
                follow(&mut feed, &mut members_seen);
            }
            Some(cmd) = commands.recv() => {
                let control = control.clone();
                let (composer, snapshots) = (composer.clone(), snapshots.clone());
                let invite = (share_id, secret, kind, net.clone());
                let election = election.clone();
                tokio::spawn(async move {
                    let answer = match cmd.request {
                        Request::Invite { expires_secs, uses } => make_invite(invite, expires_secs, uses).await,
                        Request::ConflictsSeen { upto } => composer
                            .seen
                            .mark(upto)
                            .map(|now| serde_json::json!({ "seen": now }))
                            .map_err(|e| Refusal::failed(format!("cannot record what was seen: {e}"))),
                        Request::EvictAll => {
                            let net = invite.3.clone();
                            match membership::evict_all(&election, net.local_peer_id()).await {
                                Ok(removed) => {
                                    net.clear_invites();
                                    Ok(serde_json::json!({ "removed": removed }))
                                }
                                Err(e) if e.starts_with("removing") => Err(Refusal::failed(e)),
                                Err(e) => Err(Refusal::conflict(e)),
                            }
                        }
                        Request::Remove { peer } => {
                            let me = invite.3.local_peer_id();
                            match membership::remove(&election, me, &peer).await {
                                Ok(removed) => Ok(serde_json::json!({ "removed": removed })),
                                Err(e) if e.starts_with("removing") => Err(Refusal::failed(e)),
                                Err(e) => Err(Refusal::conflict(e)),
                            }
                        }
                        request => ask_worker(&control, request).await,
                    };
                    // What the command changed is visible to the next query at once.
                    if let Ok(s) = composer.compose().await {
                        snapshots.send_replace(s);
                    }
                    let _ = cmd.reply.send(answer);
                });
            }
            _ = snapshot_timer.tick() => {
                let snap = composer.compose().await?;
                for ev in snapshot::events_between(&last, &snap, worker::now_ms()) {
                    let _ = events.send(ev);
                }
                snapshots.send_replace(snap.clone());
                last = snap;
            }
            () = &mut shutdown => break,
        }
    }
    drop(watcher);
    drop(control);
    drop(messages);
    // The worker finishes what it is doing (a write, a commit) and stops.
    let _ = tokio::task::spawn_blocking(move || worker.join()).await;
    if let Ok(e) = Arc::try_unwrap(election) {
        e.shutdown().await;
    }
    Ok(())
}

/// Hands a request to the worker and waits for its answer.
async fn ask_worker(
    control: &mpsc::UnboundedSender<Input>,
    request: Request,
) -> Result<serde_json::Value, Refusal> {
    let (reply, rx) = tokio::sync::oneshot::channel();
    control
        .send(Input::Command { request, reply })
        .map_err(|_| Refusal::failed("the node is stopping"))?;
    rx.await
        .unwrap_or_else(|_| Err(Refusal::failed("the node is stopping")))
}

/// A join token for a new machine: the share, its secret, and where this node listens.
async fn make_invite(
    (share_id, secret, kind, net): ([u8; 16], [u8; 32], crate::config::ShareKind, net::NetHandle),
    expires_secs: Option<u64>,
    uses: Option<u32>,
) -> Result<serde_json::Value, Refusal> {
    let me = net.local_peer_id();
    let ttl = expires_secs.map_or(net::invite::DEFAULT_TTL, Duration::from_secs);
    let uses = uses.unwrap_or(net::invite::MAX_USES);
    let (code, expires_at_ms) = net.issue_invite(ttl, uses).await.map_err(Refusal::bad)?;
    let addresses = net
        .listen_addrs()
        .await
        .map_err(Refusal::failed)?
        .into_iter()
        .map(|a| {
            // A circuit listen address may end with this node's id already.
            if a.iter().last() == Some(libp2p::multiaddr::Protocol::P2p(me)) {
                a
            } else {
                a.with(libp2p::multiaddr::Protocol::P2p(me))
            }
        })
        .collect::<Vec<_>>();
    let token = JoinToken {
        share_id,
        secret,
        kind,
        inviter: me,
        addresses: addresses.clone(),
        invite: code,
        expires_at_ms,
    };
    Ok(serde_json::json!({
        "token": token.encode(),
        "addresses": addresses.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
        "invite": hex::encode(code),
        "expires_at_ms": expires_at_ms,
        "uses": uses,
    }))
}
