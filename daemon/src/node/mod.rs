//! One running node: the sync engine, Raft and the network in one event loop.
//!
//! The loop feeds the engine what happens (sync messages, committed headers, leadership,
//! membership, timer ticks, scans of the share) and carries out its actions (send over libp2p,
//! propose through Raft, materialize into the folder). Raft RPCs are served on their own tasks.
//! The share is scanned when the watcher (`watcher.rs`) reports a change and the debounce delay
//! has passed, and fully on a long timer; before a version is materialized the share is scanned
//! again, and local edits found then are pushed instead of overwritten. A version that would
//! delete too much is held (`guard.rs`) until the user confirms. Requests from the local socket
//! (pause, resume, undo, redo, restore, invite: `user.rs`) are carried out between two events.
//! Five times a second the loop publishes a snapshot of its state (`snapshot.rs`), which the
//! socket serves, and the events that happened since, which `/v1/events` streams.

mod snapshot;
mod user;

use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chorus_chunking::{
    ChunkStore, ChunkerParams, DiskStore, TreeManifest, VersionId, VersionNumber,
};
use chorus_election::{ElectionConfig, ElectionNode, Member, NodeId, Role, node_id_of};
use chorus_folder::scan::ScanCache;
use chorus_merge::ModeRules;
use chorus_proto::Limits;
use libp2p::{Multiaddr, PeerId};
use tokio::sync::{broadcast, mpsc, watch};

use crate::api::Command;
use crate::net::{self, Inbound, NetConfig, NetHandle, RaftTransport};
pub use chorus_folder::{MassDeleteGuard, Share};
use chorus_folder::{materialize, watcher};
use chorus_sync::{Action, ClusterInfo, Engine, EngineConfig, Event, Retention, SyncStore};

/// How long a new leader's confirming read may take before it is tried again.
const CONFIRM_WITHIN: Duration = Duration::from_secs(10);

/// How often history retention runs.
const GC_EVERY: Duration = Duration::from_secs(600);

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
    pub listen: Vec<Multiaddr>,
    /// Explicit peers, `/ip4/.../tcp/.../p2p/<peer id>`: dialled, allowed to connect, and added
    /// as members by the node that initializes the cluster.
    pub peers: Vec<Multiaddr>,
    /// Start a one-node cluster here (once; a node with Raft state resumes instead).
    pub init: bool,
    /// Join with this invite (made for this node's PeerId with the share secret): presented to
    /// the explicit peers until one that leads adds this node to the membership.
    pub join: Option<JoinWith>,
    pub election: ElectionConfig,
    pub chunker: ChunkerParams,
    pub rules: ModeRules,
    /// A full rescan runs this often (the watcher covers changes in between).
    pub rescan_every: Duration,
    /// Watch the share for changes (inotify); scan this long after the last change.
    pub watch: bool,
    pub debounce: Duration,
    pub mdns: bool,
    /// When a version deletes too much to write without asking.
    pub guard: MassDeleteGuard,
    /// Sync bytes sent per second, all peers together; `None` for no limit.
    pub bandwidth_limit: Option<u64>,
}

/// How a joining node proves it was invited.
#[derive(Debug, Clone, Copy)]
pub enum JoinWith {
    /// An invite made for this node's PeerId by a member (`chorus invite --peer`).
    Invite([u8; 32]),
    /// The share secret (from a join token): the node makes its own invite.
    Secret,
}

/// Why a node stopped.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error(transparent)]
    Net(#[from] net::NetError),
    #[error("raft: {0}")]
    Election(#[from] chorus_election::ElectionError),
    #[error(transparent)]
    Engine(#[from] chorus_sync::EngineError),
    #[error(transparent)]
    Store(#[from] chorus_sync::StoreError),
    #[error("chunk store: {0}")]
    Chunks(#[from] chorus_chunking::Error),
    #[error("cannot write the folder: {0}")]
    Materialize(#[from] materialize::MaterializeError),
    #[error(transparent)]
    Api(#[from] crate::api::server::ServeError),
    #[error("{0}")]
    Config(String),
}

/// The PeerId of the identity in `state_dir` (created when missing).
pub fn peer_id(state_dir: &std::path::Path) -> Result<PeerId, NodeError> {
    Ok(
        net::load_or_create_keypair(&state_dir.join("identity.key"))?
            .public()
            .to_peer_id(),
    )
}

fn peer_of(addr: &Multiaddr) -> Option<PeerId> {
    addr.iter().find_map(|p| match p {
        libp2p::multiaddr::Protocol::P2p(id) => Some(id),
        _ => None,
    })
}

struct Driver {
    share: Share,
    share_id: [u8; 16],
    secret: [u8; 32],
    engine: Engine,
    election: Arc<ElectionNode>,
    net: NetHandle,
    chunks: Arc<dyn ChunkStore>,
    chunker: ChunkerParams,
    cache: ScanCache,
    peers: BTreeMap<NodeId, PeerId>,
    info: Option<ClusterInfo>,
    fed_major: u64,
    confirmed_term: Option<u64>,
    /// The term whose leadership a linearizable read is confirming now (on its own task, so a
    /// slow link does not stall the loop), and where its outcome arrives.
    confirming: Option<u64>,
    confirmations: mpsc::UnboundedSender<(u64, bool)>,
    proposals: mpsc::UnboundedSender<(VersionId, bool)>,
    queue: VecDeque<Event>,
    /// The history the socket serves, and the head number and member count it was read at
    /// (reread when either changes or retention ran).
    history: Option<((VersionNumber, usize), snapshot::History)>,
    /// Paused by the user: no scans, nothing written into the share.
    paused: bool,
    guard: MassDeleteGuard,
    /// A version waiting to be written: while paused, or held by the mass-delete guard.
    held: Option<Held>,
    /// A version's writing stopped at a file that had changed, but the scan found no new
    /// content (only its metadata changed): on the next tick the engine is told the folder
    /// still holds its version, and asks again for what to write.
    stalled: bool,
    /// Undos made here, newest last: (the version undone, the version its tree went back to).
    undos: Vec<(VersionId, VersionId)>,
    /// What `/v1/events` streams.
    events: broadcast::Sender<crate::api::Event>,
}

/// A version the driver did not write yet, and why.
#[derive(Debug, Clone)]
struct Held {
    version: VersionId,
    tree: TreeManifest,
    /// Set when the mass-delete guard holds it: how many files it deletes, of how many.
    mass_delete: Option<(usize, usize)>,
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

/// Runs a node until `shutdown` resolves.
pub async fn run(
    cfg: NodeConfig,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), NodeError> {
    std::fs::create_dir_all(&cfg.state_dir)
        .map_err(|e| NodeError::Config(format!("{}: {e}", cfg.state_dir.display())))?;
    // The socket first: a second daemon on this state dir stops here, with a clear error.
    let listener = crate::api::server::bind(&cfg.state_dir)?;
    // Stops serving (and removes the socket) however this function returns.
    let mut api = ApiGuard {
        task: None,
        socket: crate::api::socket_path(&cfg.state_dir),
    };
    check_ports_free(&cfg.listen)?;
    let keypair = net::load_or_create_keypair(&cfg.state_dir.join("identity.key"))?;
    let me_peer = keypair.public().to_peer_id();
    let me = node_id_of(&me_peer.to_bytes());
    let explicit: Vec<(PeerId, Multiaddr)> = cfg
        .peers
        .iter()
        .map(|a| {
            peer_of(a).map(|p| (p, a.clone())).ok_or_else(|| {
                NodeError::Config(format!("peer address {a} must end with /p2p/<peer id>"))
            })
        })
        .collect::<Result<_, _>>()?;
    let (net, mut inbound) = net::spawn(NetConfig {
        keypair,
        secret: cfg.secret,
        listen: cfg.listen.clone(),
        explicit_peers: cfg.peers.clone(),
        allowed: explicit.iter().map(|(p, _)| *p).collect(),
        mdns: cfg.mdns,
        limits: Limits::default(),
        request_timeout: Duration::from_secs(10),
        bandwidth_limit: cfg.bandwidth_limit,
    })?;
    let election = Arc::new(
        ElectionNode::open(
            &cfg.state_dir.join("raft"),
            me,
            cfg.election,
            Arc::new(RaftTransport::new(net.clone())),
        )
        .await?,
    );
    let listen = loop {
        let addrs = net.listen_addrs().await?;
        if !addrs.is_empty() || cfg.listen.is_empty() {
            break addrs;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    for a in &listen {
        println!("chorus: peer {me_peer} listening on {a}/p2p/{me_peer}");
    }
    if cfg.init && !election.is_initialized().await? {
        let member = Member {
            peer_id: me_peer.to_bytes(),
            addresses: listen.iter().map(|a| a.to_string()).collect(),
        };
        election.initialize(member).await?;
    }
    if cfg.init {
        // Add the explicit peers as members (retried until each is in).
        let election = election.clone();
        tokio::spawn(async move {
            for (peer, addr) in explicit {
                let id = node_id_of(&peer.to_bytes());
                let member = Member {
                    peer_id: peer.to_bytes(),
                    addresses: vec![addr.to_string()],
                };
                loop {
                    if election.view().voters.contains(&id)
                        || election.view().learners.contains(&id)
                    {
                        break;
                    }
                    if election.view().leader == Some(election.id()) {
                        match election.add_member(id, member.clone()).await {
                            Ok(_) => break,
                            Err(e) => {
                                tracing::debug!(%peer, "adding a member failed (retrying): {e}")
                            }
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        });
    }

    if let Some(with) = cfg.join {
        let invite = match with {
            JoinWith::Invite(invite) => invite,
            JoinWith::Secret => net::invite_for(&cfg.secret, &me_peer),
        };
        let election = election.clone();
        let net = net.clone();
        let mut targets: Vec<PeerId> = cfg.peers.iter().filter_map(peer_of).collect();
        let addrs = listen.clone();
        tokio::spawn(async move {
            loop {
                let view = election.view();
                if view.voters.contains(&me) || view.learners.contains(&me) {
                    break;
                }
                // Every member that accepts the invite names the members it knows: one of
                // them leads, and only the leader adds members.
                let mut learnt = Vec::new();
                for p in &targets {
                    match net.join(*p, invite, addrs.clone()).await {
                        Ok(Some(members)) => learnt.extend(members),
                        _ => tracing::debug!(%p, "join not accepted (yet)"),
                    }
                }
                for m in learnt {
                    if let Some(p) = peer_of(&m)
                        && p != me_peer
                        && !targets.contains(&p)
                    {
                        net.allow(vec![p]);
                        net.add_address(p, m);
                        targets.push(p);
                    }
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
    }

    let leftovers = cfg.share.remove_leftovers()?;
    if leftovers > 0 {
        tracing::info!(
            leftovers,
            "removed half-written files a crash left in the folder"
        );
    }
    // The watcher before the first scan, so no change falls between the two.
    let (changed, mut changes) = mpsc::channel(1);
    let _watcher = if cfg.watch {
        match watcher::watch(&cfg.share, &cfg.state_dir, move || {
            let _ = changed.try_send(());
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
    let mut ecfg = EngineConfig::new(cfg.rules, cfg.chunker);
    ecfg.push_retry_ms = 2_000;
    let engine = Engine::open(
        me,
        ecfg,
        SyncStore::open(&cfg.state_dir.join("sync.redb"))?,
        chunks.clone(),
    )?;
    let (ptx, mut prx) = mpsc::unbounded_channel();
    let (ctx, mut crx) = mpsc::unbounded_channel::<(u64, bool)>();
    let (events, _) = broadcast::channel(1024);
    let mut d = Driver {
        share: cfg.share,
        share_id: cfg.share_id,
        secret: cfg.secret,
        engine,
        election: election.clone(),
        net,
        chunks,
        chunker: cfg.chunker,
        cache: ScanCache::new(),
        peers: BTreeMap::new(),
        info: None,
        fed_major: 0,
        confirmed_term: None,
        confirming: None,
        confirmations: ctx,
        proposals: ptx,
        queue: VecDeque::new(),
        history: None,
        paused: false,
        guard: cfg.guard,
        held: None,
        stalled: false,
        undos: Vec::new(),
        events: events.clone(),
    };
    // The local socket answers from the snapshots the loop publishes, and queues commands.
    let mut last = d.snapshot().await?;
    let (snapshots, snapshots_rx) = watch::channel(last.clone());
    let (commands_tx, mut commands) = mpsc::channel::<Command>(16);
    api.task = Some(tokio::spawn(crate::api::server::serve(
        listener,
        crate::api::server::Channels {
            snapshots: snapshots_rx,
            commands: commands_tx,
            events,
        },
    )));
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut debounce = watcher::Debounce::new(cfg.debounce);
    // The first scan at once; then on changes, and fully every `rescan_every`.
    d.scan()?;
    let mut next_rescan = Instant::now() + cfg.rescan_every;
    let mut next_snapshot = Instant::now();
    let mut next_gc = Instant::now() + GC_EVERY;
    tokio::pin!(shutdown);
    loop {
        let scan_due = debounce.due().map(tokio::time::Instant::from_std);
        tokio::select! {
            msg = inbound.recv() => match msg {
                Some(Inbound::Sync { from, body }) => {
                    let peer = from;
                    let from = node_id_of(&from.to_bytes());
                    match chorus_proto::message::Message::parse(body) {
                        Ok(message) => d.feed(Event::Message { from, message })?,
                        Err(e) => tracing::warn!(%peer, "dropped a malformed sync message: {e}"),
                    }
                }
                Some(Inbound::Join { from, addrs }) => {
                    // The leader adds a joiner with a valid invite; it becomes a learner, then a
                    // voter while there are fewer than five.
                    if election.view().leader == Some(election.id()) {
                        let e = election.clone();
                        let member = Member {
                            peer_id: from.to_bytes(),
                            addresses: addrs.iter().map(|a| a.to_string()).collect(),
                        };
                        tokio::spawn(async move {
                            let id = node_id_of(&member.peer_id);
                            if let Err(err) = e.add_member(id, member).await {
                                tracing::info!(%from, "adding a joiner failed (it retries): {err}");
                            }
                        });
                    }
                }
                Some(Inbound::Raft { rpc, reply, .. }) => {
                    let e = election.clone();
                    tokio::spawn(async move {
                        let _ = reply.send(e.handle(*rpc).await);
                    });
                }
                None => return Err(NodeError::Net(net::NetError::Stopped)),
            },
            Some((version, ok)) = prx.recv() => {
                if !ok {
                    d.feed(Event::ProposeFailed { version })?;
                }
            }
            Some((term, ok)) = crx.recv() => d.confirmed(term, ok)?,
            Some(()) = changes.recv() => debounce.changed(Instant::now()),
            () = async { if let Some(at) = scan_due { tokio::time::sleep_until(at).await } }, if scan_due.is_some() => {
                debounce.scanned();
                d.scan()?;
            }
            Some(cmd) = commands.recv() => {
                let answer = d.command(cmd.request).await;
                // What the command changed is visible to the next query at once.
                snapshots.send_replace(d.snapshot().await?);
                let _ = cmd.reply.send(answer);
            }
            _ = tick.tick() => {
                d.refresh().await?;
                if std::mem::take(&mut d.stalled) {
                    d.materialize_again()?;
                }
                d.feed(Event::Tick)?;
                if Instant::now() >= next_rescan {
                    d.scan()?;
                    next_rescan = Instant::now() + cfg.rescan_every;
                }
                if Instant::now() >= next_gc {
                    // History retention: between events, never between a scan and its Local.
                    let now = d.now();
                    match d.engine.collect_garbage(now, &Retention::default()) {
                        Ok(r) => tracing::info!(?r, "history retention"),
                        Err(e) => tracing::warn!("history retention failed: {e}"),
                    }
                    next_gc = Instant::now() + GC_EVERY;
                    d.history = None;
                }
                if Instant::now() >= next_snapshot {
                    let snap = d.snapshot().await?;
                    for ev in snapshot::events_between(&last, &snap, d.now()) {
                        let _ = d.events.send(ev);
                    }
                    snapshots.send_replace(snap.clone());
                    last = snap;
                    next_snapshot = Instant::now() + Duration::from_millis(200);
                }
            }
            () = &mut shutdown => break,
        }
    }
    drop(d);
    if let Ok(e) = Arc::try_unwrap(election) {
        e.shutdown().await;
    }
    Ok(())
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
struct ApiGuard {
    task: Option<tokio::task::JoinHandle<()>>,
    socket: PathBuf,
}

impl Drop for ApiGuard {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
        let _ = std::fs::remove_file(&self.socket);
    }
}

impl Driver {
    /// Unix milliseconds: the engine's retry timers tolerate a clock step (they saturate),
    /// and headers carry wall-clock creation times for history retention.
    fn now(&self) -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_millis() as u64)
    }

    /// Feeds an event and carries out the actions, and those of the events they cause.
    fn feed(&mut self, event: Event) -> Result<(), NodeError> {
        self.queue.push_back(event);
        self.drain()
    }

    /// Feeds the queued events.
    fn drain(&mut self) -> Result<(), NodeError> {
        while let Some(ev) = self.queue.pop_front() {
            let now = self.now();
            for action in self.engine.handle(now, ev)? {
                self.act(action)?;
            }
        }
        Ok(())
    }

    fn act(&mut self, action: Action) -> Result<(), NodeError> {
        match action {
            Action::Send { to, message } => {
                if let Some(peer) = self.peers.get(&to) {
                    self.net.send(*peer, message.into_body());
                }
            }
            Action::Propose(p) => {
                let election = self.election.clone();
                let tx = self.proposals.clone();
                let version = p.version;
                tokio::spawn(async move {
                    let ok = matches!(
                        tokio::time::timeout(Duration::from_secs(5), election.propose(p)).await,
                        Ok(Ok(_))
                    );
                    let _ = tx.send((version, ok));
                });
            }
            Action::Materialize { version, tree } => self.materialize(version, tree, false)?,
        }
        Ok(())
    }

    /// Writes `version` into the share, unless paused (then it waits), the share changed since
    /// it was last scanned (then the change is scanned and pushed first), or the version
    /// deletes too much and `confirmed` is not set (then it waits for `resume --confirm`).
    fn materialize(
        &mut self,
        version: VersionId,
        tree: TreeManifest,
        confirmed: bool,
    ) -> Result<(), NodeError> {
        if self.paused {
            self.held = Some(Held {
                version,
                tree,
                mass_delete: None,
            });
            return Ok(());
        }
        // Never overwrite what changed since the last scan: scan it as a local edit.
        let in_folder = self.engine.folder();
        let now_on_disk = self.read_share()?;
        if now_on_disk.version_id() != in_folder {
            tracing::debug!(?version, on_disk = ?now_on_disk.version_id(), "local edits first");
            self.queue.push_back(Event::Local(now_on_disk));
            return Ok(());
        }
        let old = self
            .engine
            .manifest(&in_folder)?
            .unwrap_or_else(TreeManifest::empty);
        if !confirmed && let Some((deleting, of)) = self.guard.trips(&old, &tree) {
            tracing::warn!(
                deleting,
                of,
                "a version that deletes {deleting} of {of} files is held: `chorus resume --confirm` writes it"
            );
            self.emit(
                "held",
                serde_json::json!({"version": version.to_string(), "deleting": deleting, "files": of}),
            );
            self.held = Some(Held {
                version,
                tree,
                mass_delete: Some((deleting, of)),
            });
            return Ok(());
        }
        self.held = None;
        tracing::debug!(?version, from = ?in_folder, "materialize");
        match self.write_share(&old, &tree) {
            Ok(()) => {}
            Err(NodeError::Materialize(materialize::MaterializeError::Changed(path))) => {
                // A save landed while the version was written: it is scanned and pushed, and
                // the version (or a newer one merging that save) is written afterwards.
                tracing::info!(%path, ?version, "a file changed while a version was being written; its change goes first");
                let now_on_disk = self.read_share()?;
                if now_on_disk.version_id() == in_folder {
                    self.stalled = true;
                } else {
                    self.queue.push_back(Event::Local(now_on_disk));
                }
                return Ok(());
            }
            Err(e) => return Err(e),
        }
        self.emit(
            "materialized",
            serde_json::json!({"version": version.to_string(), "entries": tree.len()}),
        );
        self.queue.push_back(Event::Materialized { version });
        Ok(())
    }

    /// Writes `new` over `old` in the share, and tells the scan cache what was written, so the
    /// next scan does not read it all back.
    fn write_share(&mut self, old: &TreeManifest, new: &TreeManifest) -> Result<(), NodeError> {
        for (path, md) in self
            .share
            .materialize(old, new, &*self.chunks, &self.cache)?
        {
            if let Some(chorus_chunking::Entry::File { manifest, .. }) = new.get(&path) {
                self.cache.remember(path, &md, manifest.clone());
            }
        }
        Ok(())
    }

    /// The share as it is on disk now, its new chunks durable.
    fn read_share(&mut self) -> Result<TreeManifest, NodeError> {
        let (tree, _) = self
            .share
            .scan(self.chunker, &mut self.cache, &*self.chunks)?;
        self.chunks.sync()?;
        Ok(tree)
    }

    /// Tells the engine what the folder holds even when it is what it already knows, which
    /// ends a stopped materialization: the engine then asks for the newest version again.
    fn materialize_again(&mut self) -> Result<(), NodeError> {
        if self.paused {
            self.stalled = true;
            return Ok(());
        }
        let tree = self.read_share()?;
        self.feed(Event::Local(tree))
    }

    /// Scans the share (unless paused) and feeds what changed.
    fn scan(&mut self) -> Result<(), NodeError> {
        if self.paused {
            return Ok(());
        }
        let tree = self.read_share()?;
        if tree.version_id() != self.engine.folder() {
            self.emit(
                "scanned",
                serde_json::json!({"version": tree.version_id().to_string(), "entries": tree.len()}),
            );
            self.feed(Event::Local(tree))?;
        }
        Ok(())
    }

    /// Puts an event on the `/v1/events` feed (no one listening is fine).
    fn emit(&self, kind: &str, detail: serde_json::Value) {
        let _ = self.events.send(crate::api::Event {
            kind: kind.to_owned(),
            at_ms: self.now(),
            detail,
        });
    }

    /// Membership, leadership and committed headers from Raft.
    async fn refresh(&mut self) -> Result<(), NodeError> {
        let view = self.election.view();
        let members = self.election.members();
        self.peers = members
            .iter()
            .filter_map(|(id, m)| PeerId::from_bytes(&m.peer_id).ok().map(|p| (*id, p)))
            .collect();
        let info = ClusterInfo {
            leader: view.leader,
            voters: view.voters.clone(),
            learners: view.learners.clone(),
            ranks: self.election.ranks(),
            peer_ids: members
                .iter()
                .map(|(id, m)| (*id, m.peer_id.clone()))
                .collect(),
        };
        if self.info.as_ref() != Some(&info) {
            self.net.allow(self.peers.values().copied().collect());
            for (id, m) in &members {
                if let Some(p) = self.peers.get(id) {
                    for a in m.addresses.iter().filter_map(|a| a.parse().ok()) {
                        self.net.add_address(*p, a);
                    }
                }
            }
            self.info = Some(info.clone());
            self.feed(Event::Cluster(info))?;
        }
        self.feed_headers()?;
        if view.role == Role::Leader
            && self.confirmed_term != Some(view.term)
            && self.confirming != Some(view.term)
        {
            // A linearizable read proves the leadership and that every earlier header is
            // applied; it takes a heartbeat round, which on a WAN is most of a second.
            self.confirming = Some(view.term);
            let (election, tx, term) =
                (self.election.clone(), self.confirmations.clone(), view.term);
            tokio::spawn(async move {
                let read = tokio::time::timeout(CONFIRM_WITHIN, election.read_head()).await;
                if let Ok(Err(e)) = &read {
                    tracing::debug!(term, "confirming the leadership failed: {e}");
                }
                let _ = tx.send((term, matches!(read, Ok(Ok(_)))));
            });
        }
        Ok(())
    }

    /// The outcome of a leadership confirmation for `term`.
    fn confirmed(&mut self, term: u64, ok: bool) -> Result<(), NodeError> {
        self.confirming = None;
        let view = self.election.view();
        if ok && view.role == Role::Leader && view.term == term {
            self.feed_headers()?;
            self.confirmed_term = Some(term);
            self.feed(Event::LeaderConfirmed)?;
        }
        Ok(())
    }

    fn feed_headers(&mut self) -> Result<(), NodeError> {
        let fed = self.fed_major;
        let new: Vec<_> = self
            .election
            .recent_headers()
            .into_iter()
            .filter(|h| h.number.major > fed)
            .collect();
        if let Some(last) = new.last() {
            self.fed_major = last.number.major;
            self.feed(Event::Committed(new))?;
        }
        Ok(())
    }
}
