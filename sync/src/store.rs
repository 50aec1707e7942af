//! The engine's metadata in redb, an embedded ACID store: version manifests, committed
//! headers, redo entries and the engine's protocol state. Chunks live in a chorus-chunking
//! chunk store beside it.
//!
//! Every write commits before it returns (redb fsyncs at commit with its default durability),
//! and every manifest read back is checked against the id it is stored under.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;

use chorus_chunking::{TreeManifest, VersionId, VersionNumber};
use chorus_merge::RedoEntry;
use prost::Message;
use redb::{Database, ReadableTable, ReadableTableMetadata, TableDefinition};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::header::Header;

/// Bytes of the store's pages redb keeps in memory: its default (1 GiB) let a daemon grow by
/// every manifest it read or wrote (a version of 100,000 files is ~10 MB), several hundred MB
/// on a large share; the OS caches the file anyway.
const CACHE_BYTES: usize = 32 << 20;

/// Manifests as they were first stored, one value per version: read only to move them into
/// [`PARTS`] when a store of that layout is opened.
const VERSIONS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("versions");
/// Each stored manifest's id and encoded length: whether a version is stored, and which, is
/// asked here. redb keeps a value inside its B-tree leaf, so asking the table of whole
/// manifests for an id (present or not) read a neighbouring manifest whole, ~6 MB at 100k
/// files, and inserting one rewrote that neighbour too.
const VERSION_INDEX: TableDefinition<&[u8], u64> = TableDefinition::new("version_index");
/// A manifest's encoding in pieces of at most [`PART_BYTES`], keyed by (id, piece number).
const PARTS: TableDefinition<(&[u8], u32), &[u8]> = TableDefinition::new("manifest_parts");
const PART_BYTES: usize = 64 << 10;
const HEADERS: TableDefinition<u64, &[u8]> = TableDefinition::new("headers");
const REDO: TableDefinition<u64, &[u8]> = TableDefinition::new("redo");
const STATE: TableDefinition<&str, &[u8]> = TableDefinition::new("state");
const ENGINE_KEY: &str = "engine";

/// Why the store failed. Each says where; the remedy is usually the disk (space, permissions)
/// or, for corruption, restoring the state dir from a peer (`chorus join` again).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open the sync store {}: {source}; is another chorus running on this state dir? Else check its disk (space, permissions)", path.display())]
    Open {
        path: std::path::PathBuf,
        #[source]
        source: Box<redb::Error>,
    },
    #[error("cannot create the sync store {}: {source}; check the state dir's permissions", path.display())]
    Create {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("sync store: {0}; check the state dir's disk (space, permissions)")]
    Db(#[source] Box<redb::Error>),
    #[error("sync store: cannot encode a record: {0}")]
    Encode(#[from] serde_json::Error),
    #[error(
        "sync store is corrupt: {0}; move the state dir away and join the share again to rebuild it"
    )]
    Corrupt(String),
}

fn db<E: Into<redb::Error>>(e: E) -> StoreError {
    StoreError::Db(Box::new(e.into()))
}

/// A version that the log accepted, with its number (`0.0` and the empty tree before any).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AcceptedRef {
    pub version: VersionId,
    pub number: VersionNumber,
}

impl AcceptedRef {
    /// Nothing accepted: the empty tree, numbered 0.0.
    pub fn zero() -> Self {
        AcceptedRef {
            version: TreeManifest::empty().version_id(),
            number: VersionNumber::default(),
        }
    }
}

/// A redo entry as stored: which accepted version's merge displaced it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RedoRecord {
    pub seq: u64,
    /// MAJOR of the header that carried it.
    pub major: u64,
    pub entry: RedoEntry,
}

/// How many decoded manifests [`SyncStore`] keeps, and at most how many entries they hold
/// together: one change reads the same two or three versions several times (the delta's
/// base and target, the leader's merge, the old tree a write starts from), and decoding and
/// verifying a version of 100k files takes ~50 ms each time.
const RECENT_KEPT: usize = 3;
const RECENT_ENTRIES: usize = 300_000;

/// The redb database. Cheap to share behind a reference; one engine owns it at a time.
pub struct SyncStore {
    db: Database,
    /// The manifests read last, newest first, verified against their ids when read.
    recent: std::sync::Mutex<std::collections::VecDeque<Arc<TreeManifest>>>,
}

impl SyncStore {
    /// Opens (or creates) the store at `path`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        // Private (0600) whatever the umask: it holds every version and the redo stack.
        {
            use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
            let f = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o600)
                .open(path)
                .and_then(|f| {
                    f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
                    Ok(f)
                });
            if let Err(source) = f {
                return Err(StoreError::Create {
                    path: path.to_owned(),
                    source,
                });
            }
        }
        let database = Database::builder()
            .set_cache_size(CACHE_BYTES)
            .create(path)
            .map_err(|e| StoreError::Open {
                path: path.to_owned(),
                source: Box::new(e.into()),
            })?;
        Self::init(database)
    }

    /// A store in memory (tests, simulations): the same redb, without a file.
    pub fn in_memory() -> Result<Self, StoreError> {
        let database = Database::builder()
            .create_with_backend(redb::backends::InMemoryBackend::new())
            .map_err(db)?;
        Self::init(database)
    }

    fn init(database: Database) -> Result<Self, StoreError> {
        let txn = database.begin_write().map_err(db_err)?;
        move_whole_manifests(&txn)?;
        txn.open_table(VERSION_INDEX).map_err(db)?;
        txn.open_table(PARTS).map_err(db)?;
        txn.open_table(HEADERS).map_err(db)?;
        txn.open_table(REDO).map_err(db)?;
        txn.open_table(STATE).map_err(db)?;
        txn.commit().map_err(db)?;
        Ok(SyncStore {
            db: database,
            recent: Default::default(),
        })
    }

    /// Stores a manifest under its VersionId (a no-op when present).
    pub fn put_manifest(&self, tree: &TreeManifest) -> Result<VersionId, StoreError> {
        let id = tree.version_id();
        if self.has_manifest(&id)? {
            return Ok(id);
        }
        let bytes = tree.encode_proto();
        let txn = self.db.begin_write().map_err(db_err)?;
        put_parts(&txn, &id, &bytes)?;
        txn.commit().map_err(db)?;
        Ok(id)
    }

    /// True when the manifest of `id` is stored (the empty tree always is).
    pub fn has_manifest(&self, id: &VersionId) -> Result<bool, StoreError> {
        if *id == TreeManifest::empty().version_id() {
            return Ok(true);
        }
        if self.recent().iter().any(|t| t.version_id() == *id) {
            return Ok(true);
        }
        let txn = self.db.begin_read().map_err(db)?;
        let t = txn.open_table(VERSION_INDEX).map_err(db)?;
        Ok(t.get(id.as_bytes().as_slice()).map_err(db)?.is_some())
    }

    fn recent(&self) -> std::sync::MutexGuard<'_, std::collections::VecDeque<Arc<TreeManifest>>> {
        self.recent.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The manifest of `id`, verified against it (when read from the disk; a recent one is
    /// shared as it was read).
    pub fn manifest(&self, id: &VersionId) -> Result<Option<Arc<TreeManifest>>, StoreError> {
        if *id == TreeManifest::empty().version_id() {
            return Ok(Some(Arc::new(TreeManifest::empty())));
        }
        if let Some(tree) = self.recent().iter().find(|t| t.version_id() == *id) {
            return Ok(Some(tree.clone()));
        }
        let Some(tree) = self.read_manifest(id)? else {
            return Ok(None);
        };
        let tree = Arc::new(tree);
        self.keep(tree.clone());
        Ok(Some(tree))
    }

    /// Stores a manifest, as [`put_manifest`](Self::put_manifest), and keeps it decoded as
    /// one of the recent ones: a version just made (a scan, a merge) is read next.
    pub fn put_and_keep(&self, tree: Arc<TreeManifest>) -> Result<VersionId, StoreError> {
        let id = self.put_manifest(&tree)?;
        if !self.recent().iter().any(|t| t.version_id() == id) {
            self.keep(tree);
        }
        Ok(id)
    }

    fn keep(&self, tree: Arc<TreeManifest>) {
        let mut recent = self.recent();
        recent.push_front(tree);
        let mut entries = 0;
        let keep = recent
            .iter()
            .take(RECENT_KEPT)
            .take_while(|t| {
                entries += t.len();
                entries <= RECENT_ENTRIES
            })
            .count();
        recent.truncate(keep);
    }

    fn read_manifest(&self, id: &VersionId) -> Result<Option<TreeManifest>, StoreError> {
        let txn = self.db.begin_read().map_err(db)?;
        let index = txn.open_table(VERSION_INDEX).map_err(db)?;
        let Some(len) = index.get(id.as_bytes().as_slice()).map_err(db)? else {
            return Ok(None);
        };
        let len = len.value();
        let parts = txn.open_table(PARTS).map_err(db)?;
        let key = id.as_bytes().as_slice();
        // The index's length is a hint for the buffer, bounded: the pieces decide.
        let mut bytes = Vec::with_capacity(usize::try_from(len).unwrap_or(0).min(64 << 20));
        for (n, part) in parts
            .range((key, 0)..=(key, u32::MAX))
            .map_err(db)?
            .enumerate()
        {
            let (k, v) = part.map_err(db)?;
            if k.value().1 as usize != n {
                return Err(StoreError::Corrupt(format!(
                    "manifest {id}: piece {n} missing"
                )));
            }
            bytes.extend_from_slice(v.value());
        }
        if bytes.len() as u64 != len {
            return Err(StoreError::Corrupt(format!(
                "manifest {id}: {} bytes stored of {len}",
                bytes.len()
            )));
        }
        let proto = chorus_proto::TreeManifest::decode(bytes.as_slice())
            .map_err(|e| StoreError::Corrupt(format!("manifest {id}: {e}")))?;
        let tree = TreeManifest::from_proto(&proto)
            .map_err(|e| StoreError::Corrupt(format!("manifest {id}: {e}")))?;
        if tree.version_id() != *id {
            return Err(StoreError::Corrupt(format!(
                "manifest stored as {id} hashes to {}",
                tree.version_id()
            )));
        }
        Ok(Some(tree))
    }

    /// Every stored manifest's id.
    pub fn version_ids(&self) -> Result<Vec<VersionId>, StoreError> {
        let txn = self.db.begin_read().map_err(db)?;
        let t = txn.open_table(VERSION_INDEX).map_err(db)?;
        let mut out = Vec::with_capacity(t.len().map_err(db)? as usize);
        for item in t.iter().map_err(db)? {
            let (k, _) = item.map_err(db)?;
            let bytes: [u8; 32] = k
                .value()
                .try_into()
                .map_err(|_| StoreError::Corrupt("a version key is not 32 bytes".into()))?;
            out.push(VersionId(bytes));
        }
        Ok(out)
    }

    /// Removes manifests.
    pub fn remove_manifests(&self, ids: &BTreeSet<VersionId>) -> Result<(), StoreError> {
        if ids.is_empty() {
            return Ok(());
        }
        let txn = self.db.begin_write().map_err(db_err)?;
        for id in ids {
            remove_parts(&txn, id)?;
        }
        self.recent().retain(|t| !ids.contains(&t.version_id()));
        txn.commit().map_err(db)
    }

    /// Stores committed headers with the redo entries they carry and the engine state, in one
    /// transaction.
    pub fn commit_headers(
        &self,
        headers: &[Header],
        redo: &[RedoRecord],
        state: &impl Serialize,
    ) -> Result<(), StoreError> {
        let txn = self.db.begin_write().map_err(db_err)?;
        {
            let mut t = txn.open_table(HEADERS).map_err(db)?;
            for h in headers {
                let bytes = serde_json::to_vec(h)?;
                t.insert(h.number.major, bytes.as_slice()).map_err(db)?;
            }
            let mut r = txn.open_table(REDO).map_err(db)?;
            for rec in redo {
                let bytes = serde_json::to_vec(rec)?;
                r.insert(rec.seq, bytes.as_slice()).map_err(db)?;
            }
            let mut s = txn.open_table(STATE).map_err(db)?;
            let bytes = serde_json::to_vec(state)?;
            s.insert(ENGINE_KEY, bytes.as_slice()).map_err(db)?;
        }
        txn.commit().map_err(db)
    }

    /// Stores the engine state (the engine's `Persisted` record).
    pub fn save_state(&self, state: &impl Serialize) -> Result<(), StoreError> {
        self.commit_headers(&[], &[], state)
    }

    /// The engine state, if one was saved.
    pub fn load_state<T: DeserializeOwned>(&self) -> Result<Option<T>, StoreError> {
        self.load_record(ENGINE_KEY)
    }

    /// Keeps a small record under `key` beside the engine state (what the replica must not
    /// forget at a restart, such as how far a run of undos went), or removes it (`None`).
    pub fn save_record(&self, key: &str, value: Option<&impl Serialize>) -> Result<(), StoreError> {
        assert_ne!(
            key, ENGINE_KEY,
            "the engine state is saved with its headers"
        );
        let txn = self.db.begin_write().map_err(db)?;
        {
            let mut s = txn.open_table(STATE).map_err(db)?;
            match value {
                Some(v) => {
                    let bytes = serde_json::to_vec(v)?;
                    s.insert(key, bytes.as_slice()).map_err(db)?;
                }
                None => {
                    s.remove(key).map_err(db)?;
                }
            }
        }
        txn.commit().map_err(db)
    }

    /// The record kept under `key`, if there is one.
    pub fn load_record<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, StoreError> {
        let txn = self.db.begin_read().map_err(db)?;
        let t = txn.open_table(STATE).map_err(db)?;
        match t.get(key).map_err(db)? {
            Some(v) => serde_json::from_slice(v.value())
                .map(Some)
                .map_err(|e| StoreError::Corrupt(format!("{key}: {e}"))),
            None => Ok(None),
        }
    }

    /// Committed headers, oldest first.
    pub fn headers(&self) -> Result<Vec<Header>, StoreError> {
        let txn = self.db.begin_read().map_err(db)?;
        let t = txn.open_table(HEADERS).map_err(db)?;
        let mut out = Vec::new();
        for item in t.iter().map_err(db)? {
            let (_, v) = item.map_err(db)?;
            out.push(
                serde_json::from_slice(v.value())
                    .map_err(|e| StoreError::Corrupt(format!("header: {e}")))?,
            );
        }
        Ok(out)
    }

    /// The newest header's MAJOR stored here (0 when none).
    pub fn last_major(&self) -> Result<u64, StoreError> {
        let txn = self.db.begin_read().map_err(db)?;
        let t = txn.open_table(HEADERS).map_err(db)?;
        Ok(t.last().map_err(db)?.map_or(0, |(k, _)| k.value()))
    }

    /// Redo entries, oldest first.
    pub fn redo(&self) -> Result<Vec<RedoRecord>, StoreError> {
        let txn = self.db.begin_read().map_err(db)?;
        let t = txn.open_table(REDO).map_err(db)?;
        let mut out = Vec::new();
        for item in t.iter().map_err(db)? {
            let (_, v) = item.map_err(db)?;
            out.push(
                serde_json::from_slice(v.value())
                    .map_err(|e| StoreError::Corrupt(format!("redo entry: {e}")))?,
            );
        }
        Ok(out)
    }
}

fn db_err(e: redb::TransactionError) -> StoreError {
    db(e)
}

/// Stores `bytes`, the encoded manifest of `id`, as its index entry and its pieces.
fn put_parts(txn: &redb::WriteTransaction, id: &VersionId, bytes: &[u8]) -> Result<(), StoreError> {
    let key = id.as_bytes().as_slice();
    let mut parts = txn.open_table(PARTS).map_err(db)?;
    for (n, piece) in bytes.chunks(PART_BYTES).enumerate() {
        let n = u32::try_from(n).map_err(|_| StoreError::Corrupt("a manifest too large".into()))?;
        parts.insert((key, n), piece).map_err(db)?;
    }
    let mut index = txn.open_table(VERSION_INDEX).map_err(db)?;
    index.insert(key, bytes.len() as u64).map_err(db)?;
    Ok(())
}

/// Removes the manifest of `id` (its index entry and its pieces), if stored.
fn remove_parts(txn: &redb::WriteTransaction, id: &VersionId) -> Result<(), StoreError> {
    let key = id.as_bytes().as_slice();
    let mut index = txn.open_table(VERSION_INDEX).map_err(db)?;
    let Some(len) = index.remove(key).map_err(db)?.map(|v| v.value()) else {
        return Ok(());
    };
    let pieces = len.div_ceil(PART_BYTES as u64);
    let mut parts = txn.open_table(PARTS).map_err(db)?;
    for n in 0..u32::try_from(pieces).unwrap_or(u32::MAX) {
        parts.remove((key, n)).map_err(db)?;
    }
    Ok(())
}

/// Moves the manifests of a store written before they were kept in pieces out of
/// [`VERSIONS`], one at a time, in the transaction that opens the store.
fn move_whole_manifests(txn: &redb::WriteTransaction) -> Result<(), StoreError> {
    let mut whole = txn.open_table(VERSIONS).map_err(db)?;
    let mut moved = 0u64;
    loop {
        let next = whole
            .first()
            .map_err(db)?
            .map(|(k, v)| (k.value().to_vec(), v.value().to_vec()));
        let Some((key, bytes)) = next else { break };
        whole.remove(key.as_slice()).map_err(db)?;
        let id: [u8; 32] = key
            .as_slice()
            .try_into()
            .map_err(|_| StoreError::Corrupt("a version key is not 32 bytes".into()))?;
        put_parts(txn, &VersionId(id), &bytes)?;
        moved += 1;
    }
    if moved > 0 {
        tracing::info!(
            versions = moved,
            "the sync store's manifests were moved to the layout in pieces"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use chorus_chunking::{ChunkId, ChunkRef, Entry, RelPath};

    use super::*;

    fn tree(text: &[u8]) -> TreeManifest {
        TreeManifest::from_entries([(
            RelPath::new("a.txt").unwrap(),
            Entry::File {
                mode: chorus_chunking::Mode::FILE,
                manifest: chorus_chunking::FileManifest {
                    chunks: vec![ChunkRef {
                        id: ChunkId::of(text),
                        len: text.len() as u32,
                    }],
                },
            },
        )])
        .unwrap()
    }

    #[test]
    fn state_and_manifests_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sync.redb");
        let t = tree(b"hello");
        let state = BTreeMap::from([(42u64, t.version_id())]);
        {
            let store = SyncStore::open(&path).unwrap();
            assert_eq!(
                store.load_state::<BTreeMap<u64, VersionId>>().unwrap(),
                None
            );
            store.put_manifest(&t).unwrap();
            store.save_state(&state).unwrap();
        }
        let store = SyncStore::open(&path).unwrap();
        assert_eq!(store.load_state().unwrap(), Some(state));
        assert_eq!(
            store.manifest(&t.version_id()).unwrap().as_deref(),
            Some(&t)
        );
        assert!(
            store
                .has_manifest(&TreeManifest::empty().version_id())
                .unwrap()
        );
        store
            .remove_manifests(&BTreeSet::from([t.version_id()]))
            .unwrap();
        assert_eq!(store.manifest(&t.version_id()).unwrap(), None);
    }

    /// The same store with none of its manifests kept decoded: reads go to the disk.
    fn without_kept(store: SyncStore) -> SyncStore {
        SyncStore {
            db: store.db,
            recent: Default::default(),
        }
    }

    fn big_tree(files: usize) -> TreeManifest {
        TreeManifest::from_entries((0..files).map(|i| {
            let text = format!("file {i}");
            (
                RelPath::new(format!("dir/file-{i:06}.txt")).unwrap(),
                Entry::file(chorus_chunking::FileManifest {
                    chunks: vec![ChunkRef {
                        id: ChunkId::of(text.as_bytes()),
                        len: text.len() as u32,
                    }],
                }),
            )
        }))
        .unwrap()
    }

    /// A manifest larger than a piece is stored in pieces, read back whole, and removed with
    /// all of them.
    #[test]
    fn a_large_manifest_is_kept_in_pieces() {
        let store = SyncStore::in_memory().unwrap();
        let (small, big) = (tree(b"x"), big_tree(5_000));
        assert!(big.encode_proto().len() > 3 * PART_BYTES);
        store.put_manifest(&small).unwrap();
        store.put_manifest(&big).unwrap();
        let fresh = without_kept(store);
        assert!(fresh.has_manifest(&big.version_id()).unwrap());
        assert_eq!(
            fresh.manifest(&big.version_id()).unwrap().as_deref(),
            Some(&big)
        );
        let mut ids = fresh.version_ids().unwrap();
        ids.sort();
        let mut want = vec![small.version_id(), big.version_id()];
        want.sort();
        assert_eq!(ids, want);
        fresh
            .remove_manifests(&BTreeSet::from([big.version_id()]))
            .unwrap();
        assert!(!fresh.has_manifest(&big.version_id()).unwrap());
        let txn = fresh.db.begin_read().unwrap();
        let parts = txn.open_table(PARTS).unwrap();
        assert_eq!(
            parts.len().unwrap(),
            1,
            "only the small manifest's piece is left"
        );
    }

    /// A piece gone from the disk is corruption, not a shorter manifest.
    #[test]
    fn a_missing_piece_is_corrupt() {
        let store = SyncStore::in_memory().unwrap();
        let big = big_tree(5_000);
        store.put_manifest(&big).unwrap();
        let txn = store.db.begin_write().unwrap();
        {
            let mut parts = txn.open_table(PARTS).unwrap();
            parts
                .remove((big.version_id().as_bytes().as_slice(), 1))
                .unwrap();
        }
        txn.commit().unwrap();
        let fresh = without_kept(store);
        assert!(matches!(
            fresh.manifest(&big.version_id()),
            Err(StoreError::Corrupt(_))
        ));
    }

    /// A store written when each manifest was one value is moved to pieces when opened, and
    /// reads as before.
    #[test]
    fn a_store_of_whole_manifests_is_moved_to_pieces_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sync.redb");
        let (small, big) = (tree(b"old"), big_tree(3_000));
        {
            let db = Database::create(&path).unwrap();
            let txn = db.begin_write().unwrap();
            {
                let mut t = txn.open_table(VERSIONS).unwrap();
                for m in [&small, &big] {
                    t.insert(
                        m.version_id().as_bytes().as_slice(),
                        m.encode_proto().as_slice(),
                    )
                    .unwrap();
                }
            }
            txn.commit().unwrap();
        }
        let store = SyncStore::open(&path).unwrap();
        for m in [&small, &big] {
            assert!(store.has_manifest(&m.version_id()).unwrap());
            assert_eq!(store.manifest(&m.version_id()).unwrap().as_deref(), Some(m));
        }
        let txn = store.db.begin_read().unwrap();
        assert_eq!(txn.open_table(VERSIONS).unwrap().len().unwrap(), 0);
    }

    #[test]
    fn a_manifest_under_the_wrong_id_is_corrupt() {
        let store = SyncStore::in_memory().unwrap();
        let (a, b) = (tree(b"a"), tree(b"b"));
        let bytes = b.to_proto().encode_to_vec();
        let txn = store.db.begin_write().unwrap();
        put_parts(&txn, &a.version_id(), &bytes).unwrap();
        txn.commit().unwrap();
        assert!(matches!(
            store.manifest(&a.version_id()),
            Err(StoreError::Corrupt(_))
        ));
    }

    /// Read versions are kept decoded, shared, a few at a time; a removed one is never
    /// served from them.
    #[test]
    fn recent_manifests_are_shared_and_forgotten_when_removed() {
        let store = SyncStore::in_memory().unwrap();
        let trees: Vec<TreeManifest> = (0..5).map(|i| tree(format!("v{i}").as_bytes())).collect();
        for t in &trees {
            store.put_manifest(t).unwrap();
        }
        let a = store.manifest(&trees[0].version_id()).unwrap().unwrap();
        let again = store.manifest(&trees[0].version_id()).unwrap().unwrap();
        assert!(Arc::ptr_eq(&a, &again), "read once, shared after");
        for t in &trees[1..] {
            store.manifest(&t.version_id()).unwrap().unwrap();
        }
        assert_eq!(store.recent().len(), RECENT_KEPT);
        let evicted = store.manifest(&trees[0].version_id()).unwrap().unwrap();
        assert!(!Arc::ptr_eq(&a, &evicted), "read again from the store");
        assert_eq!(*evicted, trees[0]);

        store
            .remove_manifests(&BTreeSet::from([trees[0].version_id()]))
            .unwrap();
        assert_eq!(store.manifest(&trees[0].version_id()).unwrap(), None);
    }
}
