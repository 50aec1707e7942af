//! [`World`]: nodes ([`Replica`]s on in-memory stores and [`MemFolder`]s) on a network the
//! test controls, with Raft played by a [`Log`]. Messages wait in one queue until delivered
//! (all of them, one at a time, or dropped); proposals wait until the log commits them. A
//! test can step it message by message (the first seed's worked example) or let it run until
//! nothing moves, cut a node off and heal it, crash and reopen one, and look at every folder.
//!
//! The log is scripted by default ([`ScriptedLog`]: a proposal commits when the test says so,
//! numbered as chorus-election numbers it); a simulation can plug in real Raft instead.
//!
//! What a test does by hand beyond this (one message at a time, a deaf node, a node's own
//! timer, a member the test speaks for) is in `hand.rs`; reading text shares in `text.rs`.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

use chorus_chunking::{ChunkStore, MemStore, TreeManifest};
use chorus_proto::header::{AcceptedHeader, NodeId, Placement, Proposal, Rule, placement};
use chorus_proto::ids::VersionNumber;
use chorus_proto::message::Message;

use super::folder::MemFolder;
use crate::event::{Action, ClusterInfo, Event};
use crate::guard::MassDeleteGuard;
use crate::replica::Replica;
use crate::{Engine, EngineConfig, SyncStore};

/// A message on its way.
#[derive(Debug, Clone)]
pub struct Envelope {
    pub from: NodeId,
    pub to: NodeId,
    pub message: Message,
}

/// Raft as the world sees it: proposals in, committed headers out.
pub trait Log {
    /// The leader proposes `p`, built on the head numbered `head` (its MAJOR).
    fn propose(&mut self, p: Proposal, head: u64);
    /// Commits what was proposed; returns the headers committed now, in order.
    fn commit(&mut self, ranks: &BTreeMap<NodeId, u32>) -> Vec<AcceptedHeader>;
    /// Every header committed so far.
    fn headers(&self) -> &[AcceptedHeader];
}

/// A log that commits every proposal when asked, numbering it as chorus-election does (the
/// next MAJOR, the origin's rank as MINOR) and placing it by the same rule
/// ([`placement`](chorus_proto::header::placement), as for what current builds propose): the
/// head proposed again as it was is not appended, a proposal built on an older head is refused.
#[derive(Debug, Default)]
pub struct ScriptedLog {
    pending: Vec<(Proposal, u64)>,
    log: Vec<AcceptedHeader>,
    /// The head proposals are placed on: the last header committed through the log (one
    /// [`append`](Self::append)ed is a hostile leader's, which the honest leader never
    /// applied and so cannot build on).
    head: Option<AcceptedHeader>,
}

impl Log for ScriptedLog {
    fn propose(&mut self, p: Proposal, head: u64) {
        self.pending.push((p, head));
    }

    fn commit(&mut self, ranks: &BTreeMap<NodeId, u32>) -> Vec<AcceptedHeader> {
        let mut out = Vec::new();
        for (p, on) in std::mem::take(&mut self.pending) {
            if placement(self.head.as_ref(), &p, Rule::Head(on)) != Placement::Next {
                continue;
            }
            let h = AcceptedHeader {
                version: p.version,
                parents: p.parents,
                number: VersionNumber::new(self.log.len() as u64 + 1, ranks[&p.origin]),
                origin: p.origin,
                created_at_ms: p.created_at_ms,
                redo: p.redo,
            };
            self.head = Some(h.clone());
            self.log.push(h.clone());
            out.push(h);
        }
        out
    }

    fn headers(&self) -> &[AcceptedHeader] {
        &self.log
    }
}

impl ScriptedLog {
    /// The proposals not committed yet, oldest first.
    pub fn pending(&self) -> Vec<Proposal> {
        self.pending.iter().map(|(p, _)| p.clone()).collect()
    }

    /// Drops the pending proposals `which` picks: Raft lost them (their leader's term ended
    /// before they committed).
    pub fn lose(&mut self, which: impl Fn(&Proposal) -> bool) {
        self.pending.retain(|(p, _)| !which(p));
    }

    /// Appends `h` as committed although nobody proposed it (as a hostile leader could commit
    /// a header); later commits are numbered after it.
    pub fn append(&mut self, h: AcceptedHeader) {
        self.log.push(h);
    }
}

/// One node of the world.
pub struct WorldNode {
    pub replica: Replica<MemFolder>,
    pub chunks: Arc<MemStore>,
}

/// Nodes, a network and a log.
pub struct World<L: Log = ScriptedLog> {
    pub nodes: BTreeMap<NodeId, WorldNode>,
    /// Messages sent and not yet delivered, oldest first.
    pub net: VecDeque<Envelope>,
    pub log: L,
    pub cluster: ClusterInfo,
    pub cfg: EngineConfig,
    /// The clock every node is fed (milliseconds).
    pub now: u64,
    /// Nodes cut off: what they send or are sent is lost, commits wait until they heal.
    cut: BTreeSet<NodeId>,
    /// Deaf nodes: what they are sent is lost, commits wait, what they send arrives.
    pub(super) deaf: BTreeSet<NodeId>,
    /// Commits a cut or deaf node has not heard of yet.
    missed: BTreeMap<NodeId, Vec<AcceptedHeader>>,
    /// How far each node's clock runs ahead of `now` (its own timer fired alone).
    pub(super) skew: BTreeMap<NodeId, u64>,
    /// Members without a replica that the test speaks for: what they are sent, kept.
    pub(super) puppets: BTreeMap<NodeId, Vec<Envelope>>,
}

impl World<ScriptedLog> {
    /// Nodes `ids` (each a voter, ranked in this order), the first leading and confirmed.
    pub fn new(ids: &[NodeId], cfg: EngineConfig) -> Self {
        World::with_log(ids, cfg, ScriptedLog::default())
    }
}

impl<L: Log> World<L> {
    /// As [`World::new`], with another log.
    pub fn with_log(ids: &[NodeId], cfg: EngineConfig, log: L) -> Self {
        let cluster = ClusterInfo {
            leader: ids.first().copied(),
            voters: ids.iter().copied().collect(),
            learners: BTreeSet::new(),
            ranks: ids
                .iter()
                .enumerate()
                .map(|(i, id)| (*id, i as u32))
                .collect(),
            peer_ids: BTreeMap::new(),
        };
        let mut w = World {
            nodes: BTreeMap::new(),
            net: VecDeque::new(),
            log,
            cluster,
            cfg,
            now: 1,
            cut: BTreeSet::new(),
            deaf: BTreeSet::new(),
            missed: BTreeMap::new(),
            skew: BTreeMap::new(),
            puppets: BTreeMap::new(),
        };
        for &id in ids {
            let chunks = Arc::new(MemStore::new());
            let node = w.open(id, SyncStore::in_memory().expect("a memory store"), chunks);
            w.nodes.insert(id, node);
        }
        for &id in ids {
            w.feed(id, Event::Cluster(w.cluster.clone()));
        }
        if let Some(&leader) = ids.first() {
            w.feed(leader, Event::LeaderConfirmed);
        }
        w
    }

    fn open(&self, id: NodeId, store: SyncStore, chunks: Arc<MemStore>) -> WorldNode {
        let engine = Engine::open(
            id,
            self.cfg.clone(),
            store,
            chunks.clone() as Arc<dyn ChunkStore>,
        )
        .expect("an engine");
        let folder = MemFolder::new(chunks.clone(), self.cfg.cutter.clone());
        WorldNode {
            replica: Replica::new(engine, folder, MassDeleteGuard::off()),
            chunks,
        }
    }

    /// The replica of node `id`.
    pub fn node(&self, id: NodeId) -> &Replica<MemFolder> {
        &self.nodes[&id].replica
    }

    pub fn node_mut(&mut self, id: NodeId) -> &mut Replica<MemFolder> {
        &mut self
            .nodes
            .get_mut(&id)
            .expect("a node of the world")
            .replica
    }

    /// Node `id`'s folder.
    pub fn folder(&self, id: NodeId) -> &MemFolder {
        self.node(id).folder()
    }

    /// The clock node `id` is fed for its next event: the world's, one millisecond on, plus
    /// how far the node's own runs ahead.
    pub(super) fn clock(&mut self, id: NodeId) -> u64 {
        self.now += 1;
        self.now + self.skew.get(&id).copied().unwrap_or(0)
    }

    /// Feeds node `id` an event; what it sends goes on the network, what it proposes to the
    /// log.
    pub fn feed(&mut self, id: NodeId, event: Event) {
        let now = self.clock(id);
        let out = self
            .node_mut(id)
            .handle(now, event)
            .expect("the node handles the event");
        self.out(id, out);
    }

    pub(super) fn out(&mut self, id: NodeId, actions: Vec<Action>) {
        for a in actions {
            match a {
                Action::Send { to, message } => {
                    if !self.cut.contains(&id)
                        && !self.cut.contains(&to)
                        && !self.deaf.contains(&to)
                    {
                        self.net.push_back(Envelope {
                            from: id,
                            to,
                            message,
                        });
                    }
                }
                Action::Propose { proposal, head } => self.log.propose(proposal, head),
                Action::Materialize { .. } => unreachable!("the replica writes versions"),
            }
        }
    }

    /// The user writes `bytes` at `path` on node `id`, and the node scans.
    pub fn edit(&mut self, id: NodeId, path: &str, bytes: &[u8]) {
        self.node_mut(id).folder_mut().write_file(path, bytes);
        self.scan(id);
    }

    /// The user removes `path` on node `id`, and the node scans.
    pub fn remove(&mut self, id: NodeId, path: &str) {
        self.node_mut(id).folder_mut().remove(path);
        self.scan(id);
    }

    /// Node `id` scans its folder.
    pub fn scan(&mut self, id: NodeId) {
        let now = self.clock(id);
        let out = self.node_mut(id).scan(now).expect("the scan is handled");
        self.out(id, out);
    }

    /// Node `id` scans its folder, and reading it takes `ms` (a large share): the world's clock
    /// has moved on by then.
    pub fn scan_taking(&mut self, id: NodeId, ms: u64) {
        let start = self.clock(id);
        let node = self.node_mut(id);
        // The node's clock reads the time the reading ended, for this scan only.
        node.set_clock(Some(Box::new(move || start + ms)));
        let out = node.scan(start).expect("the scan is handled");
        node.set_clock(None);
        self.now += ms;
        self.out(id, out);
    }

    /// Runs a user request on node `id` (undo, redo, restore: see [`Replica`]'s methods).
    pub fn request<T>(
        &mut self,
        id: NodeId,
        f: impl FnOnce(&mut Replica<MemFolder>, u64) -> Result<(T, Vec<Action>), crate::Refusal>,
    ) -> Result<T, crate::Refusal> {
        let now = self.clock(id);
        let result = f(self.node_mut(id), now);
        let pending = self.node_mut(id).take_outbox();
        self.out(id, pending);
        let (answer, out) = result?;
        self.out(id, out);
        Ok(answer)
    }

    /// Delivers the oldest message in flight (to a puppet's mailbox if it goes to one); false
    /// when there is none.
    pub fn deliver_one(&mut self) -> bool {
        let Some(e) = self.net.pop_front() else {
            return false;
        };
        if let Some(mail) = self.puppets.get_mut(&e.to) {
            mail.push(e);
        } else if self.nodes.contains_key(&e.to) {
            self.feed(
                e.to,
                Event::Message {
                    from: e.from,
                    message: e.message,
                },
            );
        }
        true
    }

    /// Takes the messages in flight out of the network (to inspect, drop or deliver by hand).
    pub fn take_sent(&mut self) -> Vec<Envelope> {
        self.net.drain(..).collect()
    }

    /// Delivers one message now, whoever sent it (a hostile one too).
    pub fn deliver(&mut self, e: Envelope) {
        self.feed(
            e.to,
            Event::Message {
                from: e.from,
                message: e.message,
            },
        );
    }

    /// Commits what was proposed, and every node that is neither cut off nor deaf hears of it
    /// (after the commits it missed while deaf).
    pub fn commit(&mut self) -> usize {
        let headers = self.log.commit(&self.cluster.ranks);
        let n = headers.len();
        if n > 0 {
            let ids: Vec<NodeId> = self.nodes.keys().copied().collect();
            for id in ids {
                if self.cut.contains(&id) || self.deaf.contains(&id) {
                    self.missed.entry(id).or_default().extend(headers.clone());
                } else {
                    let mut heard = self.missed.remove(&id).unwrap_or_default();
                    heard.extend(headers.clone());
                    self.feed(id, Event::Committed(heard));
                }
            }
        }
        n
    }

    /// Time passes: every node gets a tick.
    pub fn tick(&mut self, ms: u64) {
        self.now += ms;
        let ids: Vec<NodeId> = self.nodes.keys().copied().collect();
        for id in ids {
            let now = self.now + self.skew.get(&id).copied().unwrap_or(0);
            let out = self.node_mut(id).tick(now).expect("the tick is handled");
            self.out(id, out);
        }
    }

    /// Delivers and commits until nothing moves (or `max_steps` pass); ticks through retries
    /// while something waits on time. True when every node is settled.
    pub fn run(&mut self, max_steps: usize) -> bool {
        for _ in 0..max_steps {
            if self.deliver_one() {
                continue;
            }
            if self.commit() > 0 {
                continue;
            }
            if self.settled() {
                return true;
            }
            self.tick(self.cfg.push_retry_ms.max(self.cfg.offer_retry_ms));
        }
        self.settled()
    }

    /// True when every node that is not cut off holds the head and has nothing pending.
    pub fn settled(&self) -> bool {
        self.nodes
            .iter()
            .filter(|(id, _)| !self.cut.contains(id))
            .all(|(_, n)| n.replica.engine().is_settled())
    }

    /// Cuts node `id` off: its messages and the commits it should hear are lost until it heals.
    pub fn cut_off(&mut self, id: NodeId) {
        self.cut.insert(id);
        self.net.retain(|e| e.from != id && e.to != id);
    }

    /// Brings node `id` back: it hears the commits it missed (unless it is deaf still).
    pub fn heal(&mut self, id: NodeId) {
        self.cut.remove(&id);
        if self.deaf.contains(&id) {
            return;
        }
        if let Some(missed) = self.missed.remove(&id) {
            self.feed(id, Event::Committed(missed));
        }
    }

    /// Node `id` crashes and restarts from its stores (its folder stays as it is on disk).
    pub fn restart(&mut self, id: NodeId) {
        let WorldNode { replica, chunks } = self.nodes.remove(&id).expect("a node of the world");
        let (engine, folder) = replica.into_parts();
        let (store, _) = engine.into_stores();
        let mut node = self.open(id, store, chunks);
        *node.replica.folder_mut() = folder;
        self.nodes.insert(id, node);
        self.feed(id, Event::Cluster(self.cluster.clone()));
        let headers = self.log.headers().to_vec();
        self.feed(id, Event::Committed(headers));
        if self.cluster.leader == Some(id) {
            self.feed(id, Event::LeaderConfirmed);
        }
        self.scan(id);
    }

    /// The head's number on node `id`.
    pub fn head(&self, id: NodeId) -> VersionNumber {
        self.node(id).engine().head().1
    }

    /// The tree node `id`'s folder holds.
    pub fn tree(&self, id: NodeId) -> TreeManifest {
        self.folder(id).disk()
    }
}
