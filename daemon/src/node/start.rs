//! Start-up: the local socket first (a second daemon on the same state dir stops there), the
//! identity, the network, Raft, joining or founding the group, the stores, the folder and its
//! watcher, and the worker thread that owns the engine and the folder. Nothing here depends on
//! what the folder holds: a folder that cannot be read is reported by the worker, never a
//! reason not to start.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chorus_chunking::{ChunkStore, DiskStore};
use chorus_election::{ElectionNode, Member, node_id_of};
use chorus_folder::DiskFolder;
use chorus_proto::Limits;
use chorus_sync::{Engine, EngineConfig, Replica, SyncStore};
use libp2p::{Multiaddr, PeerId};
use tokio::sync::{broadcast, mpsc, watch};

use super::view::WorkerView;
use super::worker::{self, Input, PeerMessage, Worker};
use super::{NodeConfig, NodeError, membership};
use crate::api;
use crate::net::peer_of;
use crate::net::{self, Inbound, NetConfig, NetHandle, RaftTransport};
use chorus_folder::heard::Heard;

/// A node that has started: what its event loop works with.
pub(super) struct Started {
    pub election: Arc<ElectionNode>,
    pub net: NetHandle,
    pub inbound: mpsc::Receiver<Inbound>,
    pub api: ApiGuard,
    pub listener: tokio::net::UnixListener,
    /// The worker's inputs: control (never dropped) and peer messages (bounded).
    pub control: mpsc::UnboundedSender<Input>,
    pub messages: mpsc::Sender<PeerMessage>,
    pub worker: std::thread::JoinHandle<()>,
    pub view: watch::Receiver<WorkerView>,
    pub events: broadcast::Sender<api::Event>,
    /// Keeps the watcher running (it stops when dropped).
    pub watcher: Option<chorus_folder::watcher::FolderWatcher>,
}

/// Starts everything but the event loop.
pub(super) async fn start(mut cfg: NodeConfig) -> Result<Started, NodeError> {
    std::fs::create_dir_all(&cfg.state_dir).map_err(|source| NodeError::StateDir {
        path: cfg.state_dir.clone(),
        source,
    })?;
    // The socket first: a second daemon on this state dir stops here, with a clear error.
    let listener = api::server::bind(&cfg.state_dir)?;
    // Stops serving (and removes the socket) however the node stops.
    let api = ApiGuard {
        task: None,
        ui: None,
        socket: api::socket_path(&cfg.state_dir),
    };
    check_ports_free(&cfg.settings.listen)?;
    let keypair = net::load_or_create_keypair(&cfg.state_dir.join("identity.key"))?;
    let me_peer = keypair.public().to_peer_id();
    let me = node_id_of(&me_peer.to_bytes());
    let explicit: Vec<(PeerId, Multiaddr)> = cfg
        .settings
        .peers
        .iter()
        .map(|a| {
            peer_of(a).map(|p| (p, a.clone())).ok_or_else(|| {
                NodeError::Config(format!("peer address {a} must end with /p2p/<peer id>"))
            })
        })
        .collect::<Result<_, _>>()?;
    raise_fd_limit();
    let (net, inbound) = net::spawn(NetConfig {
        keypair,
        secret: cfg.secret,
        invites: Some(cfg.state_dir.join("invites.json")),
        listen: cfg.settings.listen.clone(),
        explicit_peers: cfg.settings.peers.clone(),
        allowed: explicit.iter().map(|(p, _)| *p).collect(),
        mdns: cfg.settings.mdns,
        limits: Limits::default(),
        request_timeout: Duration::from_secs(10),
        bandwidth_limit: cfg.settings.bandwidth_limit,
        relay: cfg.settings.relay,
        relay_circuit_bytes: cfg.settings.relay_circuit_bytes,
        quic: cfg.settings.quic,
    })?;
    if cfg.settings.timing_auto
        && let Some(rtt) = super::round_trip::load(&cfg.state_dir)
    {
        let t = chorus_election::ElectionConfig::for_round_trip(rtt);
        tracing::info!(
            round_trip_ms = rtt,
            heartbeat_ms = t.heartbeat_ms,
            election_timeout_ms = %format!("{}-{}", t.election_timeout_min_ms, t.election_timeout_max_ms),
            "Raft timing for the slowest voter's round trip measured before"
        );
        cfg.settings.election = t;
    }
    let election = Arc::new(
        ElectionNode::open(
            &cfg.state_dir.join("raft"),
            me,
            cfg.settings.election,
            Arc::new(RaftTransport::new(net.clone())),
        )
        .await?,
    );
    let listen = loop {
        // Its own listeners: circuits through other members' relays come and go.
        let addrs: Vec<Multiaddr> = net
            .listen_addrs()
            .await?
            .into_iter()
            .filter(|a| {
                !a.iter()
                    .any(|p| matches!(p, libp2p::multiaddr::Protocol::P2pCircuit))
            })
            .collect();
        if !addrs.is_empty() || cfg.settings.listen.is_empty() {
            break addrs;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    if let Some(started) = cfg.started.take() {
        started(me_peer, &listen);
    }
    if cfg.settings.init && !election.is_initialized().await? {
        let member = Member {
            peer_id: me_peer.to_bytes(),
            addresses: listen.iter().map(|a| a.to_string()).collect(),
        };
        election.initialize(member).await?;
    }
    if cfg.settings.init {
        membership::add_explicit_peers(election.clone(), explicit);
    }
    if let Some(code) = cfg.settings.join {
        let targets = cfg.settings.peers.iter().filter_map(peer_of).collect();
        membership::join(election.clone(), net.clone(), targets, code, listen.clone());
    }

    let (control, control_rx) = mpsc::unbounded_channel();
    let (messages, messages_rx) = mpsc::channel(worker::MESSAGES_QUEUED);
    // The watcher before the first scan, so no change falls between the two.
    let heard = Arc::new(Heard::default());
    let watcher = if cfg.watch {
        let tx = control.clone();
        let heard = heard.clone();
        match chorus_folder::watcher::watch(&cfg.share, &cfg.state_dir, move |change, writing| {
            if heard.add(change, writing) {
                let _ = tx.send(Input::FolderChanged);
            }
        }) {
            Ok(w) => Some(w),
            Err(e) => {
                tracing::warn!("{e}");
                None
            }
        }
    } else {
        None
    };
    let chunks: Arc<dyn ChunkStore> = Arc::new(DiskStore::open(cfg.state_dir.join("chunks"))?);
    let engine = Engine::open(
        me,
        EngineConfig::new(cfg.settings.rules, cfg.settings.chunker),
        SyncStore::open(&cfg.state_dir.join("sync.redb"))?,
        chunks.clone(),
    )?;
    let document = matches!(cfg.share, chorus_folder::Share::Document(_));
    // A share that has never synced anything gets its marker at once (`chorus init` and
    // `chorus join` make it too); one that has keeps refusing to scan without it, as an
    // unmounted disk looks exactly like a share whose files were all deleted.
    if let chorus_folder::Share::Folder(root) = &cfg.share
        && engine.adopted().1.major == 0
        && engine.work().is_none()
        && root.is_dir()
        && let Err(e) = chorus_folder::marker::create(root)
    {
        tracing::warn!("cannot mark {} as a share: {e}", root.display());
    }
    let mut folder = DiskFolder::new(cfg.share, &cfg.state_dir, chunks, cfg.settings.chunker)?;
    if watcher.is_some() {
        folder.hear(heard.clone());
    }
    // Paused from the first answer the socket gives, before the worker has published.
    let mut first_view = WorkerView::default();
    first_view.paused = cfg.state_dir.join(worker::PAUSE_MARKER).exists();
    let (view_tx, view) = watch::channel(first_view);
    let (events, _) = broadcast::channel(1024);
    let mut replica = Replica::new(engine, folder, cfg.settings.guard);
    // Each event timed when it is handled (after a long scan or write, not before it).
    replica.set_clock(Some(Box::new(worker::now_ms)));
    let worker = worker::spawn(
        Worker {
            replica,
            document,
            chunker: cfg.settings.chunker,
            net: net.clone(),
            election: election.clone(),
            runtime: tokio::runtime::Handle::current(),
            control: control.clone(),
            view: view_tx,
            events: events.clone(),
            debounce: cfg.settings.debounce,
            rescan_every: cfg.settings.rescan_every,
            retention: cfg.settings.retention,
            pause_marker: cfg.state_dir.join(worker::PAUSE_MARKER),
            heard,
            peers: Default::default(),
        },
        control_rx,
        messages_rx,
    )
    .map_err(NodeError::Thread)?;
    Ok(Started {
        election,
        net,
        inbound,
        api,
        listener,
        control,
        messages,
        worker,
        view,
        events,
        watcher,
    })
}

/// Refuses a fixed TCP port that something else holds. libp2p binds with SO_REUSEPORT, so two
/// daemons given the same port would both "listen" and split the connections between them;
/// a plain bind (without it) tells.
fn check_ports_free(listen: &[Multiaddr]) -> Result<(), NodeError> {
    use libp2p::multiaddr::Protocol;
    for addr in listen {
        let mut ip = None;
        let mut port = None;
        for p in addr.iter() {
            match p {
                Protocol::Ip4(a) => ip = Some(std::net::IpAddr::V4(a)),
                Protocol::Ip6(a) => ip = Some(std::net::IpAddr::V6(a)),
                Protocol::Tcp(p) => port = Some(p),
                _ => {}
            }
        }
        if let (Some(ip), Some(port)) = (ip, port)
            && port != 0
            && let Err(e) = std::net::TcpListener::bind((ip, port))
            && e.kind() == std::io::ErrorKind::AddrInUse
        {
            return Err(NodeError::Config(format!(
                "port {port} is in use (another chorus share, or another program): pick another in the `listen` of config.toml, or pass --listen /ip4/0.0.0.0/tcp/PORT"
            )));
        }
    }
    Ok(())
}

/// Aborts the socket's task (once it serves) and removes the socket file when the node stops.
pub(super) struct ApiGuard {
    pub task: Option<tokio::task::JoinHandle<()>>,
    /// The web page's server, stopped with the socket's.
    pub ui: Option<std::sync::Arc<api::ui::Launcher>>,
    pub socket: PathBuf,
}

impl Drop for ApiGuard {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
        if let Some(ui) = self.ui.take() {
            ui.stop();
        }
        let _ = std::fs::remove_file(&self.socket);
    }
}

/// Raises the soft limit on open files to the hard limit: a share of many files and peers
/// needs more than the usual 1,024, and the network's connection limits keep strangers well
/// below either.
fn raise_fd_limit() {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut l = getrlimit(Resource::Nofile);
    if l.current < l.maximum {
        l.current = l.maximum;
        if let Err(e) = setrlimit(Resource::Nofile, l) {
            tracing::debug!("cannot raise the open-file limit: {e}");
        }
    }
}
