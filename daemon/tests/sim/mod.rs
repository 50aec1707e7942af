//! The simulation's parts: nodes ([`Sim`]: a replica on in-memory stores and folder, and its
//! bridge from Raft), the sync messages' network ([`Router`]: seeded drops, delays and
//! partitions) and one run of it ([`Run`]: stepping, edits, faults, convergence).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chorus_chunking::{ChunkStore, ChunkerParams, MemStore, TreeManifest, VersionId};
use chorus_election::testing::Cluster;
use chorus_election::types::Request;
use chorus_election::{NodeId, Proposal};
use chorus_merge::ModeRules;
use chorus_proto::Body;
use chorus_proto::message::Message;
use chorus_sync::testing::MemFolder;
use chorus_sync::{
    Action, Engine, EngineConfig, Event, MassDeleteGuard, Notice, RaftFeed, RaftView, Replica,
    SyncStore,
};
use rand::Rng;
use rand::rngs::StdRng;
use tokio::sync::mpsc;

pub const NODES: u64 = 3;
pub const FILES: usize = 3;

/// One node of the simulation: its replica (None while crashed), its stores and folder while
/// crashed (the disk outlives the daemon), its chunks, its bridge from Raft.
pub struct Sim {
    pub replica: Option<Replica<MemFolder>>,
    pub down: Option<(SyncStore, Arc<dyn ChunkStore>, MemFolder)>,
    pub chunks: Arc<MemStore>,
    pub feed: RaftFeed,
    pub next_tick: u64,
    /// When the folder is scanned next: an edit lands on disk and is scanned a moment later.
    pub scan_at: Option<u64>,
}

impl Sim {
    pub fn replica(&self) -> &Replica<MemFolder> {
        self.replica.as_ref().expect("a running node")
    }

    pub fn engine(&self) -> &Engine {
        self.replica().engine()
    }

    /// What the node's disk holds.
    pub fn disk(&self) -> TreeManifest {
        self.replica().folder().disk()
    }
}

pub struct Msg {
    pub at: u64,
    pub from: NodeId,
    pub to: NodeId,
    pub body: Body,
}

/// The sync messages' network: seeded drops and delays, partitions.
pub struct Router {
    pub rng: StdRng,
    pub queue: VecDeque<Msg>,
    pub drop: f64,
    pub groups: Vec<BTreeSet<NodeId>>,
}

impl Router {
    pub fn separated(&self, a: NodeId, b: NodeId) -> bool {
        let g = |n| self.groups.iter().position(|g| g.contains(&n));
        !self.groups.is_empty() && g(a) != g(b)
    }

    pub fn send(&mut self, now: u64, from: NodeId, to: NodeId, body: Body) {
        if self.separated(from, to) || self.rng.gen_bool(self.drop) {
            return;
        }
        let at = now + self.rng.gen_range(0..25);
        self.queue.push_back(Msg { at, from, to, body });
    }

    pub fn due(&mut self, now: u64) -> Vec<Msg> {
        let (due, later): (Vec<Msg>, Vec<Msg>) = self.queue.drain(..).partition(|m| m.at <= now);
        self.queue = later.into();
        due
    }
}

pub fn engine_config() -> EngineConfig {
    let mut cfg = EngineConfig::new(ModeRules::new(false), ChunkerParams::default());
    cfg.push_retry_ms = 400;
    cfg.offer_retry_ms = 200;
    cfg.propose_retry_ms = 600;
    cfg.want_retry_ms = 200;
    cfg
}

pub fn replica(
    id: NodeId,
    store: SyncStore,
    chunks: Arc<dyn ChunkStore>,
    folder: MemFolder,
) -> Replica<MemFolder> {
    let engine = Engine::open(id, engine_config(), store, chunks).expect("an engine");
    Replica::new(engine, folder, MassDeleteGuard::off())
}

/// What the trace follows of an engine: adopted version and number, work, folder.
type State = (
    (VersionId, chorus_chunking::VersionNumber),
    Option<VersionId>,
    VersionId,
);

fn state(e: &Engine) -> State {
    (e.adopted(), e.work(), e.folder())
}

pub fn files_of(tree: &TreeManifest, store: &dyn ChunkStore) -> BTreeMap<String, String> {
    tree.iter()
        .filter_map(|(p, e)| {
            let m = e.manifest()?;
            let mut bytes = Vec::new();
            for c in m.chunks.iter() {
                bytes.extend(store.get(&c.id).unwrap().expect("chunk of a held version"));
            }
            Some((p.as_str().to_owned(), String::from_utf8(bytes).unwrap()))
        })
        .collect()
}

pub struct Run {
    pub seed: u64,
    pub rng: StdRng,
    pub cluster: Cluster,
    pub sims: BTreeMap<NodeId, Sim>,
    pub router: Router,
    pub start: Instant,
    pub proposals: mpsc::UnboundedSender<Outcome>,
    pub results: mpsc::UnboundedReceiver<Outcome>,
    /// Which proposals are reported failed at once while they go on in Raft (and may still
    /// commit), as a proposer's timeout does on a loaded machine: seeded apart from the edits
    /// (how many proposals a run makes depends on timing), and the share of them.
    pub late: (StdRng, f64),
    pub tokens: Vec<String>,
    /// Proposals handed to Raft whose outcome is not known yet: one may still commit (an old
    /// leader's, after a new one took over), so nothing has converged while any is out.
    pub in_flight: usize,
    /// What happened, in order, for the report of a failed run: edits, scans, writes,
    /// proposals and their outcomes, commits, leaders, faults.
    pub trace: Trace,
    pub _dir: tempfile::TempDir,
}

/// What comes back of a proposal: the node and version, what the node is told (`Some(false)`:
/// it failed), and whether the proposal's call returned (after its timeout, Raft may still
/// commit it: convergence is checked long after).
pub struct Outcome {
    pub node: NodeId,
    pub version: VersionId,
    pub told: Option<bool>,
    pub done: bool,
}

/// A run's story, kept in memory and printed only when the run fails.
#[derive(Default)]
pub struct Trace {
    pub lines: Vec<String>,
    /// Every version the run saw named (scanned, written, proposed, committed).
    pub versions: BTreeSet<VersionId>,
}

impl Trace {
    pub fn note(&mut self, now: u64, line: String) {
        self.lines.push(format!("{now:>5} {line}"));
    }

    pub fn saw(&mut self, v: VersionId) -> String {
        self.versions.insert(v);
        short(&v)
    }
}

/// A version's first six hex digits, as the trace names it.
pub fn short(v: &VersionId) -> String {
    v.to_string()[..6].to_owned()
}

impl Run {
    /// A file's bytes, each chunk from whichever node holds it (none left out: a chunk no
    /// node holds reads as nothing).
    pub fn bytes_of(&self, m: &chorus_chunking::FileManifest) -> Vec<u8> {
        m.chunks
            .iter()
            .flat_map(|c| {
                self.sims
                    .values()
                    .find_map(|s| s.chunks.get(&c.id).ok().flatten())
                    .unwrap_or_default()
            })
            .collect()
    }

    pub fn now(&self) -> u64 {
        self.start.elapsed().as_millis() as u64 + 1
    }

    /// Runs `f` on node `id`'s replica (if it is up) and carries out what it returns.
    pub fn on(
        &mut self,
        id: NodeId,
        f: impl FnOnce(&mut Replica<MemFolder>, u64) -> Result<Vec<Action>, chorus_sync::EngineError>,
    ) {
        let now = self.now();
        let seed = self.seed;
        let Some(replica) = self.sims.get_mut(&id).unwrap().replica.as_mut() else {
            return;
        };
        let before = state(replica.engine());
        let mut actions = f(replica, now).unwrap_or_else(|e| panic!("seed {seed}: node {id}: {e}"));
        actions.extend(replica.take_outbox());
        let after = state(replica.engine());
        let notices = replica.take_notices();
        for n in notices {
            let line = match n {
                Notice::Scanned { version, .. } => {
                    format!("n{id} scanned {}", self.trace.saw(version))
                }
                Notice::Materialized { version, .. } => {
                    format!("n{id} wrote {}", self.trace.saw(version))
                }
                other => format!("n{id} {other:?}"),
            };
            self.trace.note(now, line);
        }
        if before != after {
            let line = format!(
                "n{id} adopted {} {} work {} folder {}",
                self.trace.saw(after.0.0),
                after.0.1,
                after.1.map_or("-".into(), |w| self.trace.saw(w)),
                self.trace.saw(after.2),
            );
            self.trace.note(now, line);
        }
        for a in actions {
            match a {
                Action::Send { to, message } => self.router.send(now, id, to, message.into_body()),
                Action::Propose { proposal, head } => self.propose(id, proposal, head),
                Action::Materialize { .. } => unreachable!("the replica writes versions"),
            }
        }
    }

    pub fn feed(&mut self, id: NodeId, event: Event) {
        let now = self.now();
        match &event {
            Event::Committed(headers) => {
                for h in headers {
                    let parents: Vec<String> =
                        h.parents.iter().map(|p| self.trace.saw(*p)).collect();
                    let line = format!(
                        "n{id} committed {} {} from n{} parents {parents:?}",
                        self.trace.saw(h.version),
                        h.number,
                        h.origin
                    );
                    self.trace.note(now, line);
                }
            }
            Event::Cluster(c) => self.trace.note(now, format!("n{id} leader {:?}", c.leader)),
            Event::LeaderConfirmed => self.trace.note(now, format!("n{id} leads")),
            Event::ProposeFailed { version } => {
                let line = format!("n{id} proposal {} failed", self.trace.saw(*version));
                self.trace.note(now, line);
            }
            _ => {}
        }
        self.on(id, |r, now| r.handle(now, event));
    }

    pub fn propose(&mut self, id: NodeId, p: Proposal, head: u64) {
        if !self.cluster.running().contains(&id) {
            return;
        }
        self.in_flight += 1;
        let parents: Vec<String> = p.parents.iter().map(|v| self.trace.saw(*v)).collect();
        let line = format!(
            "n{id} proposes {} parents {parents:?}",
            self.trace.saw(p.version)
        );
        let now = self.now();
        self.trace.note(now, line);
        let raft = self.cluster.node(id).raft().clone();
        let tx = self.proposals.clone();
        let version = p.version;
        // Some proposals time out for the proposer while Raft goes on with them.
        let late = self.late.0.gen_bool(self.late.1);
        if late {
            self.trace.note(
                now,
                format!("n{id} is told its proposal failed; it goes on"),
            );
        }
        tokio::spawn(async move {
            if late {
                let _ = tx.send(Outcome {
                    node: id,
                    version,
                    told: Some(false),
                    done: false,
                });
            }
            let r = tokio::time::timeout(
                Duration::from_secs(2),
                raft.client_write(Request::AcceptOnNumber { proposal: p, head }),
            )
            .await;
            // As the daemon's worker: a proposal refused as built on an older head is not
            // reported (the newer header starts the leader over).
            let told = match r {
                Ok(Ok(w)) if w.data.number.is_none() => None,
                Ok(Ok(_)) => Some(true),
                _ => Some(false),
            };
            let _ = tx.send(Outcome {
                node: id,
                version,
                told: told.filter(|_| !late),
                done: true,
            });
        });
    }

    /// What Raft says now on node `id`, read as the daemon reads it.
    pub fn view(&self, id: NodeId) -> RaftView {
        chorus::node::raft_view(self.cluster.node(id))
    }

    /// Node `id`'s bridge from Raft, polled as the daemon polls it.
    pub fn follow(&mut self, id: NodeId) {
        let view = self.view(id);
        let node = self.cluster.node(id);
        let events = self
            .sims
            .get_mut(&id)
            .unwrap()
            .feed
            .poll(&view, |after| node.headers_after(after));
        for e in events {
            self.feed(id, e);
        }
    }

    /// One round: Raft's view and headers, leadership, scans, ticks, deliveries, proposal
    /// results.
    pub async fn step(&mut self) {
        for id in self.cluster.running() {
            if self.sims[&id].replica.is_none() {
                continue;
            }
            self.follow(id);
            let view = self.view(id);
            if let Some(term) = self.sims.get_mut(&id).unwrap().feed.confirm_due(&view) {
                let read = tokio::time::timeout(
                    Duration::from_millis(300),
                    self.cluster.node(id).read_head(),
                )
                .await;
                let view = self.view(id);
                let node = self.cluster.node(id);
                let events = self.sims.get_mut(&id).unwrap().feed.confirmed(
                    term,
                    matches!(read, Ok(Ok(_))),
                    &view,
                    |after| node.headers_after(after),
                );
                for e in events {
                    self.feed(id, e);
                }
            }
            let now = self.now();
            if self.sims[&id].scan_at.is_some_and(|at| now >= at) {
                self.sims.get_mut(&id).unwrap().scan_at = None;
                self.on(id, |r, now| r.scan(now));
            }
            if now >= self.sims[&id].next_tick {
                self.sims.get_mut(&id).unwrap().next_tick = now + 20;
                self.on(id, |r, now| r.tick(now));
            }
        }
        let now = self.now();
        for m in self.router.due(now) {
            if self.sims[&m.to].replica.is_some() {
                self.feed(
                    m.to,
                    Event::Message {
                        from: m.from,
                        message: Message::parse(m.body).expect("a well-formed message"),
                    },
                );
            }
        }
        while let Ok(o) = self.results.try_recv() {
            if o.done {
                self.in_flight -= 1;
            }
            if o.told == Some(false) {
                self.feed(o.node, Event::ProposeFailed { version: o.version });
            }
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }

    /// A random node adds a unique line to a random file (at its end, or inside it) on disk;
    /// the node scans it a moment later.
    pub fn edit(&mut self) {
        let running: Vec<NodeId> = self
            .sims
            .iter()
            .filter(|(_, s)| s.replica.is_some())
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
        let scan_in = self.rng.gen_range(0..30);
        let now = self.now();
        let sim = self.sims.get_mut(&id).unwrap();
        let folder = sim.replica.as_mut().unwrap().folder_mut();
        let text = folder
            .read(&file)
            .map(|b| String::from_utf8(b).expect("text"))
            .unwrap_or_default();
        let text = if at_end || text.is_empty() {
            format!("{text}{token}\n")
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
            out
        };
        folder.write_file(&file, text.as_bytes());
        sim.scan_at.get_or_insert(now + scan_in);
        self.trace.note(
            now,
            format!("n{id} edits {file}: {token} (at end: {at_end})"),
        );
        self.tokens.push(token);
    }

    pub async fn crash(&mut self, id: NodeId) {
        let now = self.now();
        self.trace.note(now, format!("n{id} crashes"));
        self.cluster.kill(id).await;
        let sim = self.sims.get_mut(&id).unwrap();
        if let Some(r) = sim.replica.take() {
            let (engine, folder) = r.into_parts();
            let (store, chunks) = engine.into_stores();
            sim.down = Some((store, chunks, folder));
        }
        self.router.queue.retain(|m| m.to != id);
    }

    pub async fn restart(&mut self, id: NodeId) {
        let now = self.now();
        self.trace.note(now, format!("n{id} restarts"));
        self.cluster.restart(id).await;
        let sim = self.sims.get_mut(&id).unwrap();
        let (store, chunks, folder) = sim.down.take().expect("a crashed node keeps its stores");
        sim.replica = Some(replica(id, store, chunks, folder));
        sim.feed = RaftFeed::new();
        // What changed on disk while it was down is found by the first scan.
        sim.scan_at = Some(0);
    }

    pub fn partition(&mut self, alone: NodeId) {
        let now = self.now();
        self.trace.note(now, format!("n{alone} partitioned away"));
        let rest: Vec<NodeId> = (1..=NODES).filter(|&n| n != alone).collect();
        self.cluster.net.partition(&[&[alone], &rest]);
        self.router.groups = vec![BTreeSet::from([alone]), rest.into_iter().collect()];
    }

    pub fn heal(&mut self) {
        let now = self.now();
        self.trace.note(now, "healed".into());
        self.cluster.net.heal();
        self.router.groups.clear();
    }

    pub fn converged(&self) -> bool {
        let mut seen = None;
        for sim in self.sims.values() {
            let Some(r) = &sim.replica else { return false };
            let e = r.engine();
            if sim.scan_at.is_some() || !e.is_settled() || sim.disk().version_id() != e.adopted().0
            {
                return false;
            }
            let state = (e.adopted(), e.head());
            if e.adopted() != e.head() || seen.is_some_and(|s| s != state) {
                return false;
            }
            seen = Some(state);
        }
        self.router.queue.is_empty() && self.in_flight == 0
    }
}
