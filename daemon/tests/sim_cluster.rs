//! Sync engines over a simulated network, with real Raft (chorus-election over its in-memory
//! transport): every node edits at random while messages are dropped, delayed (so reordered),
//! a node is partitioned away and another crashes and restarts from its stores. After healing,
//! every node must hold the same tree and head number, and every edit ever made must be in the
//! final tree (once), in an accepted version of history, or in a redo entry.
//!
//! Each run prints its seed; rerun one with `CHORUS_SEED=<seed>`. `CHORUS_SIM_SEEDS=<n>` runs
//! n fresh seeds (default 200), `CHORUS_SIM_PARALLEL=<k>` k clusters at a time (default 16:
//! they mostly wait on Raft's timers, so 200 seeds take about 50 s on two cores). Fault decisions and edits follow the
//! seed; thread scheduling and Raft's timers add real-time interleaving, so a failing seed
//! reproduces the same faults and edits, not always the same interleaving.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chorus_chunking::chunker::chunk_bytes;
use chorus_chunking::{
    ChunkStore, ChunkerParams, Entry, FileManifest, MemStore, RelPath, TreeManifest, VersionId,
};
use chorus_election::memnet::LinkFaults;
use chorus_election::testing::Cluster;
use chorus_election::types::Request;
use chorus_election::{ElectionConfig, NodeId, Proposal, Role};
use chorus_merge::ModeRules;
use chorus_proto::Body;
use chorus_proto::message::Message;
use chorus_sync::{Action, ClusterInfo, Engine, EngineConfig, Event, SyncStore};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::mpsc;

const NODES: u64 = 3;
const FILES: usize = 3;

/// One node of the simulation: its engine (None while crashed), its stores, its folder.
struct Sim {
    engine: Option<Engine>,
    stores: Option<(SyncStore, Arc<dyn ChunkStore>)>,
    chunks: Arc<MemStore>,
    folder: TreeManifest,
    info: Option<ClusterInfo>,
    fed_major: u64,
    confirmed_term: Option<u64>,
    next_tick: u64,
}

struct Msg {
    at: u64,
    from: NodeId,
    to: NodeId,
    body: Body,
}

/// The sync messages' network: seeded drops and delays, partitions.
struct Router {
    rng: StdRng,
    queue: VecDeque<Msg>,
    drop: f64,
    groups: Vec<BTreeSet<NodeId>>,
}

impl Router {
    fn separated(&self, a: NodeId, b: NodeId) -> bool {
        let g = |n| self.groups.iter().position(|g| g.contains(&n));
        !self.groups.is_empty() && g(a) != g(b)
    }

    fn send(&mut self, now: u64, from: NodeId, to: NodeId, body: Body) {
        if self.separated(from, to) || self.rng.gen_bool(self.drop) {
            return;
        }
        let at = now + self.rng.gen_range(0..25);
        self.queue.push_back(Msg { at, from, to, body });
    }

    fn due(&mut self, now: u64) -> Vec<Msg> {
        let (due, later): (Vec<Msg>, Vec<Msg>) = self.queue.drain(..).partition(|m| m.at <= now);
        self.queue = later.into();
        due
    }
}

fn engine_config() -> EngineConfig {
    let mut cfg = EngineConfig::new(ModeRules::new(false), ChunkerParams::default());
    cfg.push_retry_ms = 400;
    cfg.offer_retry_ms = 200;
    cfg.propose_retry_ms = 600;
    cfg.want_retry_ms = 200;
    cfg
}

fn text_tree(files: &BTreeMap<String, String>, store: &dyn ChunkStore) -> TreeManifest {
    TreeManifest::from_entries(files.iter().map(|(path, text)| {
        let manifest: FileManifest = chunk_bytes(text.as_bytes(), ChunkerParams::default());
        let mut pos = 0usize;
        for c in &manifest.chunks {
            let piece = &text.as_bytes()[pos..pos + c.len as usize];
            store.put(&c.id, piece).unwrap();
            pos += c.len as usize;
        }
        (
            RelPath::new(path.clone()).unwrap(),
            Entry::File {
                mode: chorus_chunking::Mode::FILE,
                manifest,
            },
        )
    }))
    .unwrap()
}

fn files_of(tree: &TreeManifest, store: &dyn ChunkStore) -> BTreeMap<String, String> {
    tree.iter()
        .filter_map(|(p, e)| {
            let m = e.manifest()?;
            let mut bytes = Vec::new();
            for c in &m.chunks {
                bytes.extend(store.get(&c.id).unwrap().expect("chunk of a held version"));
            }
            Some((p.as_str().to_owned(), String::from_utf8(bytes).unwrap()))
        })
        .collect()
}

struct Run {
    seed: u64,
    rng: StdRng,
    cluster: Cluster,
    sims: BTreeMap<NodeId, Sim>,
    router: Router,
    start: Instant,
    proposals: mpsc::UnboundedSender<(NodeId, VersionId, bool)>,
    results: mpsc::UnboundedReceiver<(NodeId, VersionId, bool)>,
    tokens: Vec<String>,
    _dir: tempfile::TempDir,
}

impl Run {
    fn now(&self) -> u64 {
        self.start.elapsed().as_millis() as u64 + 1
    }

    fn feed(&mut self, id: NodeId, event: Event) {
        let now = self.now();
        let sim = self.sims.get_mut(&id).unwrap();
        let Some(engine) = sim.engine.as_mut() else {
            return;
        };
        let actions = engine
            .handle(now, event)
            .unwrap_or_else(|e| panic!("seed {}: node {id}: {e}", self.seed));
        let mut proposals = Vec::new();
        let mut written = Vec::new();
        for a in actions {
            match a {
                Action::Send { to, message } => self.router.send(now, id, to, message.into_body()),
                Action::Materialize { version, tree } => {
                    sim.folder = tree;
                    written.push(version);
                }
                Action::Propose(p) => proposals.push(p),
            }
        }
        for p in proposals {
            self.propose(id, p);
        }
        for version in written {
            self.feed(id, Event::Materialized { version });
        }
    }

    fn propose(&self, id: NodeId, p: Proposal) {
        if !self.cluster.running().contains(&id) {
            return;
        }
        let raft = self.cluster.node(id).raft().clone();
        let tx = self.proposals.clone();
        let version = p.version;
        tokio::spawn(async move {
            let r = tokio::time::timeout(
                Duration::from_secs(2),
                raft.client_write(Request::Accept(p)),
            )
            .await;
            let _ = tx.send((id, version, matches!(r, Ok(Ok(_)))));
        });
    }

    /// One round: cluster views, headers, leadership, ticks, deliveries, proposal results.
    async fn step(&mut self) {
        for id in self.cluster.running() {
            if self.sims[&id].engine.is_none() {
                continue;
            }
            let node = self.cluster.node(id);
            let view = node.view();
            let info = ClusterInfo {
                leader: view.leader,
                voters: view.voters.clone(),
                learners: view.learners.clone(),
                ranks: node.ranks(),
                peer_ids: node
                    .members()
                    .into_iter()
                    .map(|(id, m)| (id, m.peer_id))
                    .collect(),
            };
            if self.sims[&id].info.as_ref() != Some(&info) {
                self.sims.get_mut(&id).unwrap().info = Some(info.clone());
                self.feed(id, Event::Cluster(info));
            }
            self.feed_headers(id);
            if view.role == Role::Leader && self.sims[&id].confirmed_term != Some(view.term) {
                let read = tokio::time::timeout(
                    Duration::from_millis(300),
                    self.cluster.node(id).read_head(),
                )
                .await;
                if matches!(read, Ok(Ok(_))) {
                    self.feed_headers(id);
                    self.sims.get_mut(&id).unwrap().confirmed_term = Some(view.term);
                    self.feed(id, Event::LeaderConfirmed);
                }
            }
            let now = self.now();
            if now >= self.sims[&id].next_tick {
                self.sims.get_mut(&id).unwrap().next_tick = now + 20;
                self.feed(id, Event::Tick);
            }
        }
        let now = self.now();
        for m in self.router.due(now) {
            if self.sims[&m.to].engine.is_some() {
                self.feed(
                    m.to,
                    Event::Message {
                        from: m.from,
                        message: Message::parse(m.body).expect("a well-formed message"),
                    },
                );
            }
        }
        while let Ok((id, version, ok)) = self.results.try_recv() {
            if !ok {
                self.feed(id, Event::ProposeFailed { version });
            }
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }

    fn feed_headers(&mut self, id: NodeId) {
        let fed = self.sims[&id].fed_major;
        let new: Vec<_> = self
            .cluster
            .node(id)
            .recent_headers()
            .into_iter()
            .filter(|h| h.number.major > fed)
            .collect();
        if let Some(last) = new.last() {
            self.sims.get_mut(&id).unwrap().fed_major = last.number.major;
            self.feed(id, Event::Committed(new));
        }
    }

    /// A random node adds a unique line to a random file: at its end, or inside it.
    fn edit(&mut self) {
        let running: Vec<NodeId> = self
            .sims
            .iter()
            .filter(|(_, s)| s.engine.is_some())
            .map(|(id, _)| *id)
            .collect();
        if running.is_empty() {
            return;
        }
        let id = running[self.rng.gen_range(0..running.len())];
        let token = format!("edit-{}-{}-{}", self.seed, id, self.tokens.len());
        let file = format!("f{}.txt", self.rng.gen_range(0..FILES));
        let at_end = self.rng.gen_bool(0.5);
        let pick: u64 = self.rng.r#gen();
        let sim = self.sims.get_mut(&id).unwrap();
        let mut files = files_of(&sim.folder, &*sim.chunks);
        let text = files.entry(file).or_default();
        if at_end || text.is_empty() {
            text.push_str(&format!("{token}\n"));
        } else {
            // A line inserted somewhere inside: far from the others' edits it merges cleanly.
            let lines: Vec<&str> = text.split_inclusive('\n').collect();
            let at = (pick % lines.len() as u64) as usize;
            let mut out = String::with_capacity(text.len() + token.len() + 1);
            for (i, l) in lines.iter().enumerate() {
                if i == at {
                    out.push_str(&format!("{token}\n"));
                }
                out.push_str(l);
            }
            *text = out;
        }
        let tree = text_tree(&files, &*sim.chunks);
        sim.folder = tree.clone();
        self.tokens.push(token);
        self.feed(id, Event::Local(tree));
    }

    async fn crash(&mut self, id: NodeId) {
        self.cluster.kill(id).await;
        let sim = self.sims.get_mut(&id).unwrap();
        if let Some(e) = sim.engine.take() {
            sim.stores = Some(e.into_stores());
        }
        self.router.queue.retain(|m| m.to != id);
    }

    async fn restart(&mut self, id: NodeId) {
        self.cluster.restart(id).await;
        let sim = self.sims.get_mut(&id).unwrap();
        let (store, chunks) = sim.stores.take().expect("a crashed node keeps its stores");
        sim.engine = Some(Engine::open(id, engine_config(), store, chunks).unwrap());
        sim.info = None;
        sim.fed_major = 0;
        sim.confirmed_term = None;
    }

    fn partition(&mut self, alone: NodeId) {
        let rest: Vec<NodeId> = (1..=NODES).filter(|&n| n != alone).collect();
        self.cluster.net.partition(&[&[alone], &rest]);
        self.router.groups = vec![BTreeSet::from([alone]), rest.into_iter().collect()];
    }

    fn heal(&mut self) {
        self.cluster.net.heal();
        self.router.groups.clear();
    }

    fn converged(&self) -> bool {
        let mut seen = None;
        for (id, sim) in &self.sims {
            let Some(e) = &sim.engine else { return false };
            if !e.is_settled() || sim.folder.version_id() != e.adopted().0 {
                return false;
            }
            let state = (e.adopted(), e.head());
            if e.adopted() != e.head() || seen.is_some_and(|s| s != state) {
                return false;
            }
            seen = Some(state);
            let _ = id;
        }
        self.router.queue.is_empty()
    }
}

async fn run(seed: u64) {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("CHORUS_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_test_writer()
        .try_init();
    eprintln!("sim_cluster: seed {seed} (rerun with CHORUS_SEED={seed})");
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::start(
        NODES,
        seed,
        ElectionConfig::eager(),
        dir.path().to_path_buf(),
    )
    .await;
    cluster.net.set_default_faults(LinkFaults {
        drop: 0.02,
        delay_ms: (0, 10),
    });
    let sims = (1..=NODES)
        .map(|id| {
            let chunks = Arc::new(MemStore::new());
            let engine = Engine::open(
                id,
                engine_config(),
                SyncStore::in_memory().unwrap(),
                chunks.clone() as Arc<dyn ChunkStore>,
            )
            .unwrap();
            (
                id,
                Sim {
                    engine: Some(engine),
                    stores: None,
                    chunks,
                    folder: TreeManifest::empty(),
                    info: None,
                    fed_major: 0,
                    confirmed_term: None,
                    next_tick: 0,
                },
            )
        })
        .collect();
    let (tx, rx) = mpsc::unbounded_channel();
    let mut rng = StdRng::seed_from_u64(seed);
    let router = Router {
        rng: StdRng::seed_from_u64(rng.r#gen()),
        queue: VecDeque::new(),
        drop: 0.05,
        groups: Vec::new(),
    };
    let mut r = Run {
        seed,
        rng,
        cluster,
        sims,
        router,
        start: Instant::now(),
        proposals: tx,
        results: rx,
        tokens: Vec::new(),
        _dir: dir,
    };

    // Faults at seeded times (ms into the edit phase): a partition, then a crash and restart.
    let alone = r.rng.gen_range(1..=NODES);
    let crashed = r.rng.gen_range(1..=NODES);
    let partition_at = r.rng.gen_range(400..900);
    let crash_at = r.rng.gen_range(1500..2000);
    let (mut partitioned, mut healed, mut down, mut up) = (false, false, false, false);
    let edits_end = 2800;
    let mut next_edit = 0;
    loop {
        let t = r.now();
        if t >= edits_end {
            break;
        }
        if t >= next_edit {
            r.edit();
            next_edit = t + r.rng.gen_range(10..80);
        }
        if !partitioned && t >= partition_at {
            partitioned = true;
            r.partition(alone);
        }
        if partitioned && !healed && t >= partition_at + 700 {
            healed = true;
            r.heal();
        }
        if !down && t >= crash_at {
            down = true;
            r.crash(crashed).await;
        }
        if down && !up && t >= crash_at + 500 {
            up = true;
            r.restart(crashed).await;
        }
        r.step().await;
    }
    if !up {
        r.restart(crashed).await;
    }
    r.heal();
    r.router.drop = 0.0;
    r.cluster.net.set_default_faults(LinkFaults::default());

    // Liveness bound, not a speed assertion: a run that has not converged long after the
    // faults stopped is stuck.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !r.converged() {
        assert!(
            Instant::now() < deadline,
            "seed {seed}: no convergence; states: {:?}",
            r.sims
                .iter()
                .map(|(id, s)| (
                    id,
                    s.engine
                        .as_ref()
                        .map(|e| (e.adopted(), e.head(), e.work(), e.is_settled()))
                ))
                .collect::<Vec<_>>()
        );
        r.step().await;
    }

    // Same tree and number everywhere, and on disk as the engines say.
    let (final_id, number) = r.sims[&1].engine.as_ref().unwrap().adopted();
    // A linearizable read needs a majority's acknowledgement in time; under load (many seeds at
    // once on two cores) that can take a few tries.
    let mut tries = 0;
    let (leader, raft_head) = loop {
        let leader = r.cluster.wait_leader(Duration::from_secs(5)).await.unwrap();
        match r.cluster.node(leader).read_head().await {
            Ok(head) => break (leader, head.expect("a head after the edits")),
            Err(e) if tries < 20 => {
                tries += 1;
                eprintln!("seed {seed}: read_head: {e}; retrying");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("seed {seed}: no linearizable read of the head: {e}"),
        }
    };
    assert_eq!(
        raft_head.version, final_id,
        "seed {seed}: the log's head is the tree"
    );
    assert_eq!(raft_head.number.major, number.major, "seed {seed}");
    let sim1 = &r.sims[&1];
    let final_files = files_of(&sim1.folder, &*sim1.chunks);
    for (id, sim) in &r.sims {
        assert_eq!(
            sim.folder.version_id(),
            final_id,
            "seed {seed}: node {id} differs"
        );
        assert_eq!(
            files_of(&sim.folder, &*sim.chunks),
            final_files,
            "seed {seed}"
        );
    }

    // Every edit is in the final tree, in an accepted version, or in a redo entry.
    let engine = r.sims[&leader].engine.as_ref().unwrap();
    let mut history = String::new();
    for h in engine.headers().unwrap() {
        for sim in r.sims.values() {
            let e = sim.engine.as_ref().unwrap();
            if let Some(tree) = e.manifest(&h.version).unwrap() {
                for text in files_of(&tree, &*sim.chunks).values() {
                    history.push_str(text);
                }
                break;
            }
        }
    }
    // Redo entries: hunks as text, whole files (large hunks travel so) loaded by their chunks
    // from whichever node holds them.
    let mut redo = String::new();
    for sim in r.sims.values() {
        for rec in sim.engine.as_ref().unwrap().redo().unwrap() {
            redo.push_str(&serde_json::to_string(&rec.entry).unwrap());
            let files: Vec<&chorus_merge::redo::WholeContent> = match &rec.entry.what {
                chorus_merge::Displaced::Whole { content, kept } => {
                    std::iter::once(content).chain(kept.as_ref()).collect()
                }
                chorus_merge::Displaced::Deletion { kept } => vec![kept],
                _ => Vec::new(),
            };
            for f in files {
                if let chorus_merge::redo::WholeContent::File { manifest, .. } = f {
                    for holder in r.sims.values() {
                        let bytes: Option<Vec<u8>> = manifest
                            .chunks
                            .iter()
                            .map(|c| holder.chunks.get(&c.id).unwrap())
                            .collect::<Option<Vec<Vec<u8>>>>()
                            .map(|v| v.concat());
                        if let Some(b) = bytes {
                            redo.push_str(&String::from_utf8_lossy(&b));
                            break;
                        }
                    }
                }
            }
        }
    }
    let tree_text: String = final_files.values().cloned().collect();
    let mut in_tree = 0;
    for t in &r.tokens {
        let line = format!("{t}\n");
        // Whole lines: a token is never the tail of another (they end in distinct numbers).
        let copies = tree_text.lines().filter(|l| *l == t.as_str()).count();
        assert!(
            copies <= 1,
            "seed {seed}: edit {t} is in the final tree {copies} times (merged against itself)"
        );
        if tree_text.contains(&line) {
            in_tree += 1;
        } else {
            assert!(
                history.contains(&line) || redo.contains(t.as_str()),
                "seed {seed}: edit {t} is lost"
            );
        }
    }
    eprintln!(
        "sim_cluster: seed {seed}: {} edits, {in_tree} in the final tree, head {number}, {} redo bytes",
        r.tokens.len(),
        redo.len()
    );
    r.cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_edits_converge_under_drops_partitions_and_crashes() {
    let seeds: Vec<u64> = match std::env::var("CHORUS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        Some(s) => vec![s],
        None => {
            let n = std::env::var("CHORUS_SIM_SEEDS")
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or(DEFAULT_SEEDS);
            (0..n).map(|_| rand::random()).collect()
        }
    };
    // The clusters spend most of their time waiting on Raft timers, so several run at once.
    let parallel = std::env::var("CHORUS_SIM_PARALLEL")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(DEFAULT_PARALLEL)
        .max(1);
    for batch in seeds.chunks(parallel) {
        let tasks: Vec<_> = batch
            .iter()
            .map(|&seed| (seed, tokio::spawn(run(seed))))
            .collect();
        for (seed, task) in tasks {
            if let Err(e) = task.await {
                panic!("seed {seed} failed (rerun with CHORUS_SEED={seed}): {e}");
            }
        }
    }
}

/// Seeds per test run, and how many run at once: the CI-sized run.
const DEFAULT_SEEDS: usize = 200;
const DEFAULT_PARALLEL: usize = 16;
