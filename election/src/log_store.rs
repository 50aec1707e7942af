//! The durable Raft log and vote, in redb (an embedded ACID store).
//!
//! Every write that openraft must be able to rely on after a crash commits with immediate
//! durability (redb fsyncs before `commit` returns): the vote before `save_vote` returns,
//! appended entries before the flush callback fires, truncation and purge before they return.
//! Writes run on tokio's blocking pool so a slow disk never stalls the Raft core's timers.

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{AnyError, Entry, LogId, RaftLogReader, StorageError, StorageIOError, Vote};
use redb::{Database, ReadableTable, TableDefinition};

use crate::types::{NodeId, TypeConfig};

pub(crate) const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("raft_log");
pub(crate) const META: TableDefinition<&str, &[u8]> = TableDefinition::new("raft_meta");

const VOTE: &str = "vote";
const LAST_PURGED: &str = "last_purged";
const COMMITTED: &str = "committed";

type Result<T> = std::result::Result<T, StorageError<NodeId>>;

/// The log store. Cheap to clone: clones share the database.
#[derive(Clone)]
pub struct LogStore {
    db: Arc<Database>,
    /// Durable commits so far (each is one redb commit with fsync), for benchmarks.
    syncs: Arc<AtomicU64>,
    tail: Tail,
}

/// Where the log ends, as written: what a pre-vote compares. Kept apart from the database so
/// the lookout holds no handle on it (a node's shutdown waits for those to go).
#[derive(Clone, Debug, Default)]
pub(crate) struct Tail(Arc<std::sync::Mutex<Option<LogId<NodeId>>>>);

impl Tail {
    pub(crate) fn get(&self) -> Option<LogId<NodeId>> {
        *self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn set(&self, last: Option<LogId<NodeId>>) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = last;
    }
}

impl LogStore {
    pub fn new(db: Arc<Database>) -> Result<Self> {
        let txn = db.begin_write().map_err(write_err)?;
        txn.open_table(LOG).map_err(write_err)?;
        txn.open_table(META).map_err(write_err)?;
        txn.commit().map_err(write_err)?;
        let store = LogStore {
            db,
            syncs: Arc::new(AtomicU64::new(0)),
            tail: Tail::default(),
        };
        store.tail.set(store.log_state()?.last_log_id);
        Ok(store)
    }

    /// Where the log ends, kept up to date as entries are written, truncated and purged.
    pub(crate) fn tail(&self) -> Tail {
        self.tail.clone()
    }

    /// The last purged entry and the last entry, as stored.
    fn log_state(&self) -> Result<LogState<TypeConfig>> {
        let last_purged: Option<LogId<NodeId>> = self.get_meta(LAST_PURGED)?;
        let txn = self.db.begin_read().map_err(|e| read_err(&e))?;
        let table = txn.open_table(LOG).map_err(|e| read_err(&e))?;
        let last = match table.last().map_err(|e| read_err(&e))? {
            Some((_, v)) => {
                let e: Entry<TypeConfig> =
                    serde_json::from_slice(v.value()).map_err(|e| read_err(&e))?;
                Some(e.log_id)
            }
            None => last_purged,
        };
        Ok(LogState {
            last_purged_log_id: last_purged,
            last_log_id: last,
        })
    }

    /// Live handles on the database (this store, its clones, the state machine's).
    pub(crate) fn db_handles(&self) -> usize {
        Arc::strong_count(&self.db)
    }

    /// Durable commits made so far.
    pub fn durable_commits(&self) -> u64 {
        self.syncs.load(Ordering::Relaxed)
    }

    fn get_meta<T: serde::de::DeserializeOwned>(&self, key: &str) -> Result<Option<T>> {
        let txn = self.db.begin_read().map_err(|e| read_err(&e))?;
        let table = txn.open_table(META).map_err(|e| read_err(&e))?;
        match table.get(key).map_err(|e| read_err(&e))? {
            Some(v) => Ok(Some(
                serde_json::from_slice(v.value()).map_err(|e| read_err(&e))?,
            )),
            None => Ok(None),
        }
    }

    /// Runs `f` in a write transaction on the blocking pool and commits it durably.
    async fn write<F>(&self, durable: bool, f: F) -> Result<()>
    where
        F: FnOnce(&redb::WriteTransaction) -> std::result::Result<(), AnyError> + Send + 'static,
    {
        let db = self.db.clone();
        let syncs = self.syncs.clone();
        tokio::task::spawn_blocking(move || {
            let mut txn = db.begin_write().map_err(|e| AnyError::new(&e))?;
            if !durable {
                txn.set_durability(redb::Durability::Eventual);
            }
            f(&txn)?;
            txn.commit().map_err(|e| AnyError::new(&e))?;
            if durable {
                syncs.fetch_add(1, Ordering::Relaxed);
            }
            Ok::<_, AnyError>(())
        })
        .await
        .map_err(|e| StorageIOError::write(&e))?
        .map_err(|e| StorageIOError::write(e).into())
    }
}

fn read_err(e: &(impl std::error::Error + 'static)) -> StorageError<NodeId> {
    StorageIOError::read(e).into()
}

fn write_err(e: impl std::error::Error + 'static) -> StorageError<NodeId> {
    StorageIOError::write(&e).into()
}

fn to_json<T: serde::Serialize>(v: &T) -> std::result::Result<Vec<u8>, AnyError> {
    serde_json::to_vec(v).map_err(|e| AnyError::new(&e))
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<TypeConfig>>> {
        let txn = self.db.begin_read().map_err(|e| read_err(&e))?;
        let table = txn.open_table(LOG).map_err(|e| read_err(&e))?;
        let bounds = (
            clone_bound(range.start_bound()),
            clone_bound(range.end_bound()),
        );
        let mut out = Vec::new();
        for item in table.range::<u64>(bounds).map_err(|e| read_err(&e))? {
            let (_, v) = item.map_err(|e| read_err(&e))?;
            out.push(serde_json::from_slice(v.value()).map_err(|e| read_err(&e))?);
        }
        Ok(out)
    }
}

fn clone_bound(b: Bound<&u64>) -> Bound<u64> {
    match b {
        Bound::Included(x) => Bound::Included(*x),
        Bound::Excluded(x) => Bound::Excluded(*x),
        Bound::Unbounded => Bound::Unbounded,
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>> {
        self.log_state()
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<()> {
        let bytes = to_json(vote).map_err(StorageIOError::write_vote)?;
        self.write(true, move |txn| {
            let mut t = txn.open_table(META).map_err(|e| AnyError::new(&e))?;
            t.insert(VOTE, bytes.as_slice())
                .map_err(|e| AnyError::new(&e))?;
            Ok(())
        })
        .await
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>> {
        self.get_meta(VOTE)
    }

    async fn save_committed(&mut self, committed: Option<LogId<NodeId>>) -> Result<()> {
        // Not fsynced: a lost committed index is re-learned from the leader.
        let bytes = to_json(&committed).map_err(StorageIOError::write)?;
        self.write(false, move |txn| {
            let mut t = txn.open_table(META).map_err(|e| AnyError::new(&e))?;
            t.insert(COMMITTED, bytes.as_slice())
                .map_err(|e| AnyError::new(&e))?;
            Ok(())
        })
        .await
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<NodeId>>> {
        Ok(self.get_meta::<Option<LogId<NodeId>>>(COMMITTED)?.flatten())
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> Result<()>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + Send,
    {
        let mut rows = Vec::new();
        let mut last = None;
        for e in entries {
            last = Some(e.log_id);
            rows.push((
                e.log_id.index,
                to_json(&e).map_err(StorageIOError::write_logs)?,
            ));
        }
        let res = self
            .write(true, move |txn| {
                let mut t = txn.open_table(LOG).map_err(|e| AnyError::new(&e))?;
                for (i, bytes) in &rows {
                    t.insert(*i, bytes.as_slice())
                        .map_err(|e| AnyError::new(&e))?;
                }
                Ok(())
            })
            .await;
        // The callback fires only once the entries are durable.
        match &res {
            Ok(()) => {
                if last.is_some() {
                    self.tail.set(last);
                }
                callback.log_io_completed(Ok(()))
            }
            Err(e) => callback.log_io_completed(Err(std::io::Error::other(e.to_string()))),
        }
        res
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> Result<()> {
        self.write(true, move |txn| {
            let mut t = txn.open_table(LOG).map_err(|e| AnyError::new(&e))?;
            t.retain_in(log_id.index.., |_, _| false)
                .map_err(|e| AnyError::new(&e))?;
            Ok(())
        })
        .await?;
        self.tail.set(self.log_state()?.last_log_id);
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> Result<()> {
        let bytes = to_json(&log_id).map_err(StorageIOError::write_logs)?;
        // The purge mark and the deletion commit together, so there is never a hole.
        self.write(true, move |txn| {
            let mut m = txn.open_table(META).map_err(|e| AnyError::new(&e))?;
            m.insert(LAST_PURGED, bytes.as_slice())
                .map_err(|e| AnyError::new(&e))?;
            let mut t = txn.open_table(LOG).map_err(|e| AnyError::new(&e))?;
            t.retain_in(..=log_id.index, |_, _| false)
                .map_err(|e| AnyError::new(&e))?;
            Ok(())
        })
        .await?;
        self.tail.set(self.log_state()?.last_log_id);
        Ok(())
    }
}

/// Opens the log store and state machine kept in `dir/raft.redb`.
pub async fn open(dir: &std::path::Path) -> Result<(LogStore, crate::state_machine::StateMachine)> {
    let path = dir.join("raft.redb");
    {
        // Private (0600) whatever the umask: it holds the membership and every header.
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(write_err)?;
        f.set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(write_err)?;
    }
    // redb's default cache (1 GiB) would grow with every page touched; the log's entries are
    // small and the OS caches the file.
    let db = Arc::new(
        Database::builder()
            .set_cache_size(8 << 20)
            .create(&path)
            .map_err(write_err)?,
    );
    Ok((
        LogStore::new(db.clone())?,
        crate::state_machine::StateMachine::open(db)?,
    ))
}
