//! The accepted-version chain: what applying the Raft log produces.
//!
//! Applying an accept appends a header to the chain and numbers it: MAJOR is its position,
//! MINOR the origin node's rank (ranks are given in the order nodes first appear in the
//! membership, so they never change). Re-proposing the head (same version, parents and redo
//! entries, built on the header before it: a leader retrying a proposal that did commit)
//! returns the head's number instead of a second entry; the same version with other parents
//! is a new entry (a merge whose result equals the head still records which pushes it took in,
//! and what it displaced), and so is one that looks like the head but is built on it. An `AcceptOnNumber` (what
//! [`ElectionNode::propose_on`](crate::ElectionNode::propose_on) writes) names the head it was built
//! on by its number: one built on any other head (a proposal reported failed by a timeout that
//! Raft still carried, after a newer header committed) is refused, numberless, and appends
//! nothing: committed, its tree would drop what the headers since it brought, or, when those
//! headers kept its tree, record its pushes and redo entries again. The entries of earlier builds
//! keep their rules, so their logs replay to the same chain: an `AcceptOnHead` is refused when
//! its first parent is not the head's version (parent-less ones, as tests and benchmarks make,
//! are appended as they come), an `Accept` never. The state is small,
//! so a snapshot is all of it: the head header, the membership and the ranks; version content
//! never travels here. Snapshots are persisted in the same redb database as the log.

use std::collections::{BTreeMap, VecDeque};
use std::io::Cursor;
use std::sync::{Arc, RwLock};

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{
    AnyError, Entry, EntryPayload, LogId, RaftSnapshotBuilder, SnapshotMeta, StorageError,
    StorageIOError, StoredMembership,
};
use redb::{Database, TableDefinition};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use chorus_proto::header::{Placement, Rule, placement};

use crate::types::{
    AcceptedHeader, Member, NodeId, Proposal, Request, Response, TypeConfig, VersionNumber,
};

const SNAPSHOT: TableDefinition<&str, &[u8]> = TableDefinition::new("raft_snapshot");
const CURRENT: &str = "current";

/// How many recent headers each node keeps in memory for lookups.
const RECENT: usize = 1024;

type Result<T> = std::result::Result<T, StorageError<NodeId>>;

/// The replicated state.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Chain {
    pub last_applied: Option<LogId<NodeId>>,
    pub membership: StoredMembership<NodeId, Member>,
    /// MINOR of each node that has ever been a member.
    pub ranks: BTreeMap<NodeId, u32>,
    /// Accepted versions so far: the head's MAJOR.
    pub len: u64,
    pub head: Option<AcceptedHeader>,
    /// The last headers, newest last (not in snapshots).
    #[serde(skip)]
    pub recent: VecDeque<AcceptedHeader>,
}

impl Chain {
    fn rank_of(&mut self, node: NodeId) -> u32 {
        let next = self.ranks.len() as u32;
        *self.ranks.entry(node).or_insert(next)
    }

    fn apply(&mut self, entry: &Entry<TypeConfig>) -> Response {
        self.last_applied = Some(entry.log_id);
        match &entry.payload {
            EntryPayload::Blank => Response::default(),
            EntryPayload::Membership(m) => {
                self.membership = StoredMembership::new(Some(entry.log_id), m.clone());
                let mut ids: Vec<NodeId> = m.nodes().map(|(id, _)| *id).collect();
                ids.sort_unstable();
                for id in ids {
                    self.rank_of(id);
                }
                Response::default()
            }
            EntryPayload::Normal(Request::Accept(p)) => self.accept(p, Rule::Any),
            EntryPayload::Normal(Request::AcceptOnHead(p)) => self.accept(p, Rule::FirstParent),
            EntryPayload::Normal(Request::AcceptOnNumber { proposal, head }) => {
                self.accept(proposal, Rule::Head(*head))
            }
        }
    }

    /// Appends `p` as the next header and numbers it, unless it is the head again (answered
    /// with the head's number) or, under its entry's `rule`, built on an older head (refused):
    /// see [`placement`].
    fn accept(&mut self, p: &Proposal, rule: Rule) -> Response {
        match placement(self.head.as_ref(), p, rule) {
            Placement::Again(number) => {
                return Response {
                    number: Some(number),
                };
            }
            Placement::Refused => {
                tracing::info!(
                    version = ?p.version,
                    built_on = ?p.parents.first(),
                    head = ?self.head.as_ref().map(|h| h.version),
                    "a header built on an older head is refused; its leader merges again"
                );
                return Response { number: None };
            }
            Placement::Next => {}
        }
        self.len += 1;
        let number = VersionNumber {
            major: self.len,
            minor: self.rank_of(p.origin),
        };
        let header = AcceptedHeader {
            version: p.version,
            parents: p.parents.clone(),
            number,
            origin: p.origin,
            created_at_ms: p.created_at_ms,
            redo: p.redo.clone(),
        };
        self.recent.push_back(header.clone());
        if self.recent.len() > RECENT {
            self.recent.pop_front();
        }
        self.head = Some(header);
        Response {
            number: Some(number),
        }
    }
}

#[derive(Serialize, Deserialize)]
struct StoredSnapshot {
    meta: SnapshotMeta<NodeId, Member>,
    data: Vec<u8>,
}

/// The state machine. Clones share state.
#[derive(Clone)]
pub struct StateMachine {
    chain: Arc<RwLock<Chain>>,
    db: Arc<Database>,
    head_tx: Arc<watch::Sender<Option<AcceptedHeader>>>,
    snapshots_built: Arc<std::sync::atomic::AtomicU64>,
}

impl StateMachine {
    /// Opens the state machine, restoring the last persisted snapshot; the log entries after
    /// it are re-applied by openraft.
    pub fn open(db: Arc<Database>) -> Result<Self> {
        let txn = db.begin_write().map_err(|e| sm_err(&e))?;
        txn.open_table(SNAPSHOT).map_err(|e| sm_err(&e))?;
        txn.commit().map_err(|e| sm_err(&e))?;
        let mut chain = Chain::default();
        if let Some(s) = load_snapshot(&db)? {
            chain = serde_json::from_slice(&s.data).map_err(|e| sm_err(&e))?;
            if let Some(h) = &chain.head {
                chain.recent.push_back(h.clone());
            }
        }
        let (head_tx, _) = watch::channel(chain.head.clone());
        Ok(StateMachine {
            chain: Arc::new(RwLock::new(chain)),
            db,
            head_tx: Arc::new(head_tx),
            snapshots_built: Arc::new(Default::default()),
        })
    }

    /// A copy of the chain as applied here so far.
    pub fn chain(&self) -> Chain {
        self.read().clone()
    }

    /// The recent headers applied here after MAJOR `major`, oldest first, cloning only those.
    pub fn headers_after(&self, major: u64) -> Vec<AcceptedHeader> {
        let c = self.read();
        let skip = c.recent.partition_point(|h| h.number.major <= major);
        c.recent.iter().skip(skip).cloned().collect()
    }

    /// The head as applied here (not linearizable by itself).
    pub fn head(&self) -> Option<AcceptedHeader> {
        self.read().head.clone()
    }

    /// The rank (MINOR) of every node that has ever been a member, as applied here.
    pub fn ranks(&self) -> BTreeMap<NodeId, u32> {
        self.read().ranks.clone()
    }

    /// The members (voters and learners) with their records, as applied here.
    pub fn members(&self) -> BTreeMap<NodeId, Member> {
        self.read()
            .membership
            .membership()
            .nodes()
            .map(|(id, m)| (*id, m.clone()))
            .collect()
    }

    /// Watches the head as it is applied.
    pub fn subscribe_head(&self) -> watch::Receiver<Option<AcceptedHeader>> {
        self.head_tx.subscribe()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Chain> {
        self.chain.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Chain> {
        self.chain.write().unwrap_or_else(|e| e.into_inner())
    }

    fn persist(&self, snap: &StoredSnapshot) -> Result<()> {
        let bytes = serde_json::to_vec(snap).map_err(|e| sm_err(&e))?;
        let txn = self.db.begin_write().map_err(|e| sm_err(&e))?;
        {
            let mut t = txn.open_table(SNAPSHOT).map_err(|e| sm_err(&e))?;
            t.insert(CURRENT, bytes.as_slice())
                .map_err(|e| sm_err(&e))?;
        }
        txn.commit().map_err(|e| sm_err(&e))?;
        Ok(())
    }
}

fn load_snapshot(db: &Database) -> Result<Option<StoredSnapshot>> {
    let txn = db.begin_read().map_err(|e| sm_err(&e))?;
    let t = txn.open_table(SNAPSHOT).map_err(|e| sm_err(&e))?;
    match t.get(CURRENT).map_err(|e| sm_err(&e))? {
        Some(v) => Ok(Some(
            serde_json::from_slice(v.value()).map_err(|e| sm_err(&e))?,
        )),
        None => Ok(None),
    }
}

fn sm_err(e: &(impl std::error::Error + 'static)) -> StorageError<NodeId> {
    StorageIOError::write_state_machine(AnyError::new(e)).into()
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>> {
        let chain = self.chain();
        let data = serde_json::to_vec(&chain).map_err(|e| sm_err(&e))?;
        let n = self
            .snapshots_built
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let snapshot_id = match chain.last_applied {
            Some(l) => format!("{}-{}-{n}", l.leader_id, l.index),
            None => format!("empty-{n}"),
        };
        let meta = SnapshotMeta {
            last_log_id: chain.last_applied,
            last_membership: chain.membership.clone(),
            snapshot_id,
        };
        self.persist(&StoredSnapshot {
            meta: meta.clone(),
            data: data.clone(),
        })?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = Self;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<NodeId>>, StoredMembership<NodeId, Member>)> {
        let c = self.read();
        Ok((c.last_applied, c.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Response>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + Send,
    {
        let (out, head) = {
            let mut c = self.write();
            let out: Vec<Response> = entries.into_iter().map(|e| c.apply(&e)).collect();
            (out, c.head.clone())
        };
        self.head_tx.send_if_modified(|h| {
            let changed = *h != head;
            *h = head;
            changed
        });
        Ok(out)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, Member>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<()> {
        let data = snapshot.into_inner();
        let mut chain: Chain = serde_json::from_slice(&data)
            .map_err(|e| StorageIOError::read_snapshot(Some(meta.signature()), &e))?;
        if let Some(h) = &chain.head {
            chain.recent.push_back(h.clone());
        }
        self.persist(&StoredSnapshot {
            meta: meta.clone(),
            data,
        })?;
        let head = chain.head.clone();
        *self.write() = chain;
        self.head_tx.send_replace(head);
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>> {
        Ok(load_snapshot(&self.db)?.map(|s| Snapshot {
            meta: s.meta,
            snapshot: Box::new(Cursor::new(s.data)),
        }))
    }
}

#[cfg(test)]
mod tests {
    use openraft::{CommittedLeaderId, LogId};

    use super::*;
    use crate::types::VersionId;

    fn header(version: u8, parent: u8, redo: &[u8]) -> Proposal {
        Proposal {
            version: VersionId([version; 32]),
            parents: vec![VersionId([parent; 32])],
            origin: 1,
            created_at_ms: 0,
            redo: redo.to_vec(),
        }
    }

    /// Applies `requests` in order as log entries 1, 2, …; the MAJOR each got, if any.
    fn apply(requests: Vec<Request>) -> Vec<Option<u64>> {
        let mut chain = Chain::default();
        requests
            .into_iter()
            .enumerate()
            .map(|(i, r)| {
                let entry = Entry {
                    log_id: LogId::new(CommittedLeaderId::new(1, 1), i as u64 + 1),
                    payload: EntryPayload::Normal(r),
                };
                chain.apply(&entry).number.map(|n| n.major)
            })
            .collect()
    }

    #[test]
    fn accept_on_head_refuses_an_older_head_and_takes_the_head_again_only_as_proposed() {
        use Request::AcceptOnHead as On;
        assert_eq!(
            apply(vec![
                On(header(1, 0, b"")),
                On(header(2, 1, b"")),
                // Built on 1, which 2 replaced.
                On(header(3, 1, b"")),
                // The head again, as proposed: its number.
                On(header(2, 1, b"")),
                // The head's tree, naming the head alone, with redo entries: a new header; the
                // same again: its number; with other entries: another new header.
                On(header(2, 2, b"r1")),
                On(header(2, 2, b"r1")),
                On(header(2, 2, b"r2")),
            ]),
            [Some(1), Some(2), None, Some(2), Some(3), Some(3), Some(4)]
        );
    }

    /// Header 3 keeps header 2's tree (a merge that kept the head everywhere took in push 9).
    /// A proposal built on header 2, committed late, names tree 2 first as one built on header
    /// 3 does: by the head's number it is refused; by its first parent it was taken.
    #[test]
    fn accept_on_number_refuses_a_proposal_built_on_the_header_before_a_same_tree_one() {
        let on = |proposal: Proposal, head: u64| Request::AcceptOnNumber { proposal, head };
        let mut keeps_tree = header(2, 2, b"");
        keeps_tree.parents.push(VersionId([9; 32]));
        assert_eq!(
            apply(vec![
                on(header(1, 0, b""), 0),
                on(header(2, 1, b""), 1),
                on(keeps_tree.clone(), 2),
                // Built on 2, committed after 3.
                on(header(4, 2, b""), 2),
                // Header 3 again, as proposed: its number.
                on(keeps_tree.clone(), 2),
                on(header(4, 2, b""), 3),
                // Carrying only redo entries: built on 4, then the same again built on that
                // one (a new header that looks like the head), then a retry of it.
                on(header(4, 4, b"r"), 4),
                on(header(4, 4, b"r"), 5),
                on(header(4, 4, b"r"), 5),
            ]),
            [
                Some(1),
                Some(2),
                Some(3),
                None,
                Some(3),
                Some(4),
                Some(5),
                Some(6),
                Some(6)
            ]
        );
        use Request::AcceptOnHead as On;
        assert_eq!(
            apply(vec![
                On(header(1, 0, b"")),
                On(header(2, 1, b"")),
                On(keeps_tree),
                On(header(4, 2, b"")),
            ]),
            [Some(1), Some(2), Some(3), Some(4)],
            "the rule of the builds before, replayed as they applied it"
        );
    }

    /// The entry of earlier builds replays as it did: any head, the head again by tree and
    /// parents alone.
    #[test]
    fn accept_replays_as_earlier_builds_applied_it() {
        use Request::Accept as Old;
        assert_eq!(
            apply(vec![
                Old(header(1, 0, b"")),
                Old(header(2, 1, b"")),
                Old(header(3, 1, b"")),
                Old(header(3, 1, b"other redo")),
            ]),
            [Some(1), Some(2), Some(3), Some(3)]
        );
    }
}
