//! The engine's metadata in redb, an embedded ACID store: version manifests, committed
//! headers, redo entries and the engine's protocol state. Chunks live in a chorus-chunking
//! chunk store beside it.
//!
//! Every write commits before it returns (redb fsyncs at commit with its default durability),
//! and every manifest read back is checked against the id it is stored under.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;

use chorus_chunking::{ChunkId, TreeManifest, VersionId, VersionNumber};
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
/// [`PIECES`] when a store of that layout is opened.
const VERSIONS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("versions");
/// Each stored manifest's id and encoded length: whether a version is stored, and which, is
/// asked here. redb keeps a value inside its B-tree leaf, so asking the table of whole
/// manifests for an id (present or not) read a neighbouring manifest whole, ~6 MB at 100k
/// files, and inserting one rewrote that neighbour too.
const VERSION_INDEX: TableDefinition<&[u8], u64> = TableDefinition::new("version_index");
/// Manifests as the second layout kept them, in fixed pieces keyed by (id, piece number):
/// read only to move them into [`PIECES`] when a store of that layout is opened.
const PARTS: TableDefinition<(&[u8], u32), &[u8]> = TableDefinition::new("manifest_parts");
/// Each stored manifest's pieces, in order: their ids (BLAKE3 of the piece), 32 bytes each.
const VERSION_PIECES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("version_pieces");
/// Pieces of encoded manifests by id, shared by every version that has them: a manifest is
/// cut where its bytes say (FastCDC, [`piece_params`]), so a version that changed one file of
/// 100k stores a piece or two and its list (~25 KB) instead of ~6 MB again; with a month of
/// versions kept, the store grew by that much per change.
const PIECES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("manifest_pieces");
/// How many stored manifests list each piece (a list naming it twice counts twice); a piece
/// no manifest lists is removed with its count.
const PIECE_USERS: TableDefinition<&[u8], u64> = TableDefinition::new("manifest_piece_users");
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
        move_old_layouts(&database)?;
        let txn = database.begin_write().map_err(db_err)?;
        txn.open_table(VERSION_INDEX).map_err(db)?;
        txn.open_table(VERSION_PIECES).map_err(db)?;
        txn.open_table(PIECES).map_err(db)?;
        txn.open_table(PIECE_USERS).map_err(db)?;
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
        put_pieces(&txn, &id, &bytes, bytes.len() as u64)?;
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
        let lists = txn.open_table(VERSION_PIECES).map_err(db)?;
        let Some(list) = lists.get(id.as_bytes().as_slice()).map_err(db)? else {
            return Err(StoreError::Corrupt(format!(
                "manifest {id}: its pieces are not listed"
            )));
        };
        let list = list.value();
        if list.len() % 32 != 0 {
            return Err(StoreError::Corrupt(format!(
                "manifest {id}: a list of pieces of {} bytes",
                list.len()
            )));
        }
        let pieces = txn.open_table(PIECES).map_err(db)?;
        // The index's length is a hint for the buffer, bounded: the pieces decide.
        let mut bytes = Vec::with_capacity(usize::try_from(len).unwrap_or(0).min(64 << 20));
        for (n, piece) in list.chunks_exact(32).enumerate() {
            let Some(piece) = pieces.get(piece).map_err(db)? else {
                return Err(StoreError::Corrupt(format!(
                    "manifest {id}: piece {n} missing"
                )));
            };
            bytes.extend_from_slice(piece.value());
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
            remove_pieces(&txn, id)?;
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

/// Where a manifest's encoding is cut into pieces: by its content (FastCDC), so a change
/// to one entry changes the piece around it and the rest cut as before; ~8 KiB each.
fn piece_params() -> chorus_chunking::ChunkerParams {
    chorus_chunking::ChunkerParams::new(2 << 10, 8 << 10, 64 << 10)
        .expect("the manifest pieces' bounds are valid")
}

/// Stores `bytes`, the encoded manifest of `id` (`len` bytes long as far as the index
/// says), as its index entry, its list of pieces and the pieces no stored manifest had.
fn put_pieces(
    txn: &redb::WriteTransaction,
    id: &VersionId,
    bytes: &[u8],
    len: u64,
) -> Result<(), StoreError> {
    let key = id.as_bytes().as_slice();
    let mut lists = txn.open_table(VERSION_PIECES).map_err(db)?;
    let mut index = txn.open_table(VERSION_INDEX).map_err(db)?;
    if lists.get(key).map_err(db)?.is_some() {
        // Listed already; its index entry too, unless an older build removed the version
        // (it knew only the index): the list still counts its pieces, so it is named again.
        if index.get(key).map_err(db)?.is_none() {
            index.insert(key, len).map_err(db)?;
        }
        return Ok(());
    }
    let mut pieces = txn.open_table(PIECES).map_err(db)?;
    let mut users = txn.open_table(PIECE_USERS).map_err(db)?;
    let lengths = chorus_chunking::chunker::chunk_lengths(bytes, piece_params());
    let mut list = Vec::with_capacity(lengths.len() * 32);
    let mut at = 0;
    for n in lengths {
        let piece = &bytes[at..at + n as usize];
        at += n as usize;
        let piece_id = ChunkId::of(piece);
        let piece_key = piece_id.as_bytes().as_slice();
        let count = users.get(piece_key).map_err(db)?.map_or(0, |c| c.value());
        if count == 0 {
            pieces.insert(piece_key, piece).map_err(db)?;
        }
        users.insert(piece_key, count + 1).map_err(db)?;
        list.extend_from_slice(piece_key);
    }
    lists.insert(key, list.as_slice()).map_err(db)?;
    index.insert(key, len).map_err(db)?;
    Ok(())
}

/// Removes the manifest of `id` (its index entry, its list and the pieces no other stored
/// manifest lists), if stored.
fn remove_pieces(txn: &redb::WriteTransaction, id: &VersionId) -> Result<(), StoreError> {
    let key = id.as_bytes().as_slice();
    let mut index = txn.open_table(VERSION_INDEX).map_err(db)?;
    index.remove(key).map_err(db)?;
    let mut lists = txn.open_table(VERSION_PIECES).map_err(db)?;
    let Some(list) = lists.remove(key).map_err(db)?.map(|v| v.value().to_vec()) else {
        return Ok(());
    };
    let mut pieces = txn.open_table(PIECES).map_err(db)?;
    let mut users = txn.open_table(PIECE_USERS).map_err(db)?;
    for piece_key in list.chunks_exact(32) {
        let count = users.get(piece_key).map_err(db)?.map_or(0, |c| c.value());
        if count > 1 {
            users.insert(piece_key, count - 1).map_err(db)?;
        } else {
            users.remove(piece_key).map_err(db)?;
            pieces.remove(piece_key).map_err(db)?;
        }
    }
    Ok(())
}

/// Moves the manifests of a store written in an older layout (one value per version in
/// [`VERSIONS`], or fixed pieces in [`PARTS`]) to shared pieces, one version per
/// transaction: a store of a hundred 100k-file versions is not rewritten in one (its pages
/// would all be held until the commit), and a stop midway leaves each version in one layout
/// or the other.
fn move_old_layouts(database: &Database) -> Result<(), StoreError> {
    let mut moved = 0u64;
    loop {
        let txn = database.begin_write().map_err(db_err)?;
        if !(move_whole_manifest(&txn)? || move_manifest_parts(&txn)?) {
            // Nothing to move (every open but the first of an old store): no commit, no fsync.
            txn.abort().map_err(db)?;
            break;
        }
        txn.commit().map_err(db)?;
        moved += 1;
    }
    if moved > 0 {
        tracing::info!(
            versions = moved,
            "the sync store's manifests were moved to shared pieces"
        );
    }
    Ok(())
}

/// Moves the first manifest left in [`VERSIONS`]; false when none is.
fn move_whole_manifest(txn: &redb::WriteTransaction) -> Result<bool, StoreError> {
    let mut whole = txn.open_table(VERSIONS).map_err(db)?;
    let next = whole
        .first()
        .map_err(db)?
        .map(|(k, v)| (k.value().to_vec(), v.value().to_vec()));
    let Some((key, bytes)) = next else {
        return Ok(false);
    };
    whole.remove(key.as_slice()).map_err(db)?;
    put_pieces(txn, &version_key(&key)?, &bytes, bytes.len() as u64)?;
    Ok(true)
}

/// Moves the manifest of the first key left in [`PARTS`]; false when none is. Its length
/// stays the index's: a piece missing there still reads as corruption after the move.
fn move_manifest_parts(txn: &redb::WriteTransaction) -> Result<bool, StoreError> {
    let mut parts = txn.open_table(PARTS).map_err(db)?;
    let Some(key) = parts
        .first()
        .map_err(db)?
        .map(|(k, _)| k.value().0.to_vec())
    else {
        return Ok(false);
    };
    let id = version_key(&key)?;
    let mut bytes = Vec::new();
    let mut numbers = Vec::new();
    for part in parts
        .range((key.as_slice(), 0)..=(key.as_slice(), u32::MAX))
        .map_err(db)?
    {
        let (k, v) = part.map_err(db)?;
        let n = k.value().1;
        // Pieces after a gap are left out: the length check finds the manifest short.
        if n as usize == numbers.len() {
            bytes.extend_from_slice(v.value());
        }
        numbers.push(n);
    }
    for n in numbers {
        parts.remove((key.as_slice(), n)).map_err(db)?;
    }
    let index = txn.open_table(VERSION_INDEX).map_err(db)?;
    let len = index.get(key.as_slice()).map_err(db)?.map(|l| l.value());
    drop(index);
    // Pieces of a manifest the index does not name were left by a removal: dropped.
    if let Some(len) = len {
        put_pieces(txn, &id, &bytes, len)?;
    }
    Ok(true)
}

fn version_key(key: &[u8]) -> Result<VersionId, StoreError> {
    let id: [u8; 32] = key
        .try_into()
        .map_err(|_| StoreError::Corrupt("a version key is not 32 bytes".into()))?;
    Ok(VersionId(id))
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
                    }]
                    .into(),
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
                    }]
                    .into(),
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
        assert!(big.encode_proto().len() > 3 * piece_params().max() as usize);
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
        assert_eq!(
            piece_count(&fresh),
            (1, 1),
            "only the small manifest's piece is left"
        );
    }

    /// (pieces, pieces counted) in the store.
    fn piece_count(store: &SyncStore) -> (u64, u64) {
        let txn = store.db.begin_read().unwrap();
        let pieces = txn.open_table(PIECES).unwrap().len().unwrap();
        let users = txn.open_table(PIECE_USERS).unwrap().len().unwrap();
        (pieces, users)
    }

    /// Bytes of all stored pieces.
    fn piece_bytes(store: &SyncStore) -> usize {
        let txn = store.db.begin_read().unwrap();
        let pieces = txn.open_table(PIECES).unwrap();
        pieces
            .iter()
            .unwrap()
            .map(|p| p.unwrap().1.value().len())
            .sum()
    }

    /// `tree` with the file at `i` (of [`big_tree`]'s naming) given other content.
    fn with_file_changed(tree: &TreeManifest, i: usize, text: &str) -> TreeManifest {
        let path = RelPath::new(format!("dir/file-{i:06}.txt")).unwrap();
        TreeManifest::from_entries(tree.entries().iter().map(|(p, e)| {
            let e = if *p == path {
                Entry::file(chorus_chunking::FileManifest {
                    chunks: vec![ChunkRef {
                        id: ChunkId::of(text.as_bytes()),
                        len: text.len() as u32,
                    }]
                    .into(),
                })
            } else {
                e.clone()
            };
            (p.clone(), e)
        }))
        .unwrap()
    }

    /// Two versions that differ in one file of 20,000 share all but a piece or two, each read
    /// back whole; removing one keeps the other; removing both leaves no piece.
    #[test]
    fn versions_share_the_pieces_they_have_in_common() {
        let store = SyncStore::in_memory().unwrap();
        let one = big_tree(20_000);
        let two = with_file_changed(&one, 12_345, "appended to");
        store.put_manifest(&one).unwrap();
        let (pieces_one, _) = piece_count(&store);
        let bytes_one = piece_bytes(&store);
        assert_eq!(bytes_one, one.encode_proto().len());
        assert!(pieces_one > 50, "{pieces_one} pieces");
        store.put_manifest(&two).unwrap();
        let (pieces_both, users) = piece_count(&store);
        assert_eq!(pieces_both, users);
        assert!(
            pieces_both <= pieces_one + 2,
            "{pieces_one} pieces, then {pieces_both}"
        );
        assert!(piece_bytes(&store) <= bytes_one + 2 * piece_params().max() as usize);

        let store = without_kept(store);
        store
            .remove_manifests(&BTreeSet::from([one.version_id()]))
            .unwrap();
        assert_eq!(store.manifest(&one.version_id()).unwrap(), None);
        assert_eq!(
            store.manifest(&two.version_id()).unwrap().as_deref(),
            Some(&two)
        );
        assert_eq!(piece_bytes(&store), two.encode_proto().len());
        store
            .remove_manifests(&BTreeSet::from([two.version_id()]))
            .unwrap();
        assert_eq!(piece_count(&store), (0, 0));
    }

    /// A version an older build removed (it knew only the index) while its list stayed is
    /// stored again when it comes back, not taken as present.
    #[test]
    fn a_version_whose_index_entry_went_is_stored_again() {
        let store = SyncStore::in_memory().unwrap();
        let big = big_tree(3_000);
        store.put_manifest(&big).unwrap();
        let store = without_kept(store);
        let txn = store.db.begin_write().unwrap();
        txn.open_table(VERSION_INDEX)
            .unwrap()
            .remove(big.version_id().as_bytes().as_slice())
            .unwrap();
        txn.commit().unwrap();
        assert!(!store.has_manifest(&big.version_id()).unwrap());
        store.put_manifest(&big).unwrap();
        assert!(store.has_manifest(&big.version_id()).unwrap());
        let store = without_kept(store);
        assert_eq!(
            store.manifest(&big.version_id()).unwrap().as_deref(),
            Some(&big)
        );
        store
            .remove_manifests(&BTreeSet::from([big.version_id()]))
            .unwrap();
        assert_eq!(piece_count(&store), (0, 0));
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(12))]
        /// Any order of storing and removing versions that share most of their entries
        /// reads every stored one back whole, counts each piece by the lists that name it,
        /// and keeps no piece no stored version lists.
        #[test]
        fn pieces_are_counted_by_the_versions_that_list_them(
            edits in proptest::collection::vec((0usize..3_000, 0u32..4), 1..6),
            steps in proptest::collection::vec((0usize..6, proptest::bool::ANY), 1..24),
        ) {
            let base = big_tree(3_000);
            let mut trees = vec![base.clone()];
            for (i, (file, n)) in edits.iter().enumerate() {
                let prev = trees[i].clone();
                trees.push(with_file_changed(&prev, *file, &format!("edit {n} {i}")));
            }
            let store = SyncStore::in_memory().unwrap();
            let mut stored = BTreeSet::new();
            for (t, put) in steps {
                let tree = &trees[t % trees.len()];
                if put {
                    store.put_manifest(tree).unwrap();
                    stored.insert(tree.version_id());
                } else {
                    store.remove_manifests(&BTreeSet::from([tree.version_id()])).unwrap();
                    stored.remove(&tree.version_id());
                }
            }
            let store = without_kept(store);
            let txn = store.db.begin_read().unwrap();
            let lists = txn.open_table(VERSION_PIECES).unwrap();
            let mut named: BTreeMap<Vec<u8>, u64> = BTreeMap::new();
            for item in lists.iter().unwrap() {
                let (_, list) = item.unwrap();
                for p in list.value().chunks_exact(32) {
                    *named.entry(p.to_vec()).or_default() += 1;
                }
            }
            let users = txn.open_table(PIECE_USERS).unwrap();
            let counted: BTreeMap<Vec<u8>, u64> = users
                .iter()
                .unwrap()
                .map(|i| { let (k, v) = i.unwrap(); (k.value().to_vec(), v.value()) })
                .collect();
            proptest::prop_assert_eq!(&named, &counted);
            let pieces = txn.open_table(PIECES).unwrap();
            proptest::prop_assert_eq!(pieces.len().unwrap(), counted.len() as u64);
            drop((lists, users, pieces, txn));
            let mut ids = store.version_ids().unwrap();
            ids.sort();
            proptest::prop_assert_eq!(ids, stored.iter().copied().collect::<Vec<_>>());
            for tree in &trees {
                let read = store.manifest(&tree.version_id()).unwrap();
                if stored.contains(&tree.version_id()) {
                    proptest::prop_assert_eq!(read.as_deref(), Some(tree));
                } else {
                    proptest::prop_assert!(read.is_none());
                }
            }
        }
    }

    /// A piece gone from the disk is corruption, not a shorter manifest.
    #[test]
    fn a_missing_piece_is_corrupt() {
        let store = SyncStore::in_memory().unwrap();
        let big = big_tree(5_000);
        store.put_manifest(&big).unwrap();
        let txn = store.db.begin_write().unwrap();
        {
            let lists = txn.open_table(VERSION_PIECES).unwrap();
            let list = lists
                .get(big.version_id().as_bytes().as_slice())
                .unwrap()
                .unwrap()
                .value()
                .to_vec();
            let mut pieces = txn.open_table(PIECES).unwrap();
            pieces.remove(&list[32..64]).unwrap();
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

    /// A store written when manifests were kept in fixed pieces is moved to shared pieces
    /// when opened: each reads as before, one with a piece gone still reads as corrupt, and
    /// pieces of a manifest the index no longer named are dropped.
    #[test]
    fn a_store_of_fixed_parts_is_moved_to_shared_pieces_on_open() {
        const PART_BYTES: usize = 64 << 10;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sync.redb");
        let (small, big, broken, orphan) = (
            tree(b"old"),
            big_tree(3_000),
            big_tree(4_000),
            tree(b"removed"),
        );
        {
            let db = Database::create(&path).unwrap();
            let txn = db.begin_write().unwrap();
            {
                let mut parts = txn.open_table(PARTS).unwrap();
                let mut index = txn.open_table(VERSION_INDEX).unwrap();
                for m in [&small, &big, &broken, &orphan] {
                    let bytes = m.encode_proto();
                    let key = m.version_id();
                    let key = key.as_bytes().as_slice();
                    for (n, piece) in bytes.chunks(PART_BYTES).enumerate() {
                        if *m == broken && n == 1 {
                            continue;
                        }
                        parts.insert((key, n as u32), piece).unwrap();
                    }
                    if *m != orphan {
                        index.insert(key, bytes.len() as u64).unwrap();
                    }
                }
            }
            txn.commit().unwrap();
        }
        let store = SyncStore::open(&path).unwrap();
        for m in [&small, &big] {
            assert!(store.has_manifest(&m.version_id()).unwrap());
            assert_eq!(store.manifest(&m.version_id()).unwrap().as_deref(), Some(m));
        }
        assert!(matches!(
            store.manifest(&broken.version_id()),
            Err(StoreError::Corrupt(_))
        ));
        assert!(!store.has_manifest(&orphan.version_id()).unwrap());
        let txn = store.db.begin_read().unwrap();
        assert_eq!(txn.open_table(PARTS).unwrap().len().unwrap(), 0);
        drop(txn);
        // Opened again: nothing left to move, the same reads.
        drop(store);
        let store = SyncStore::open(&path).unwrap();
        assert_eq!(
            store.manifest(&big.version_id()).unwrap().as_deref(),
            Some(&big)
        );
    }

    #[test]
    fn a_manifest_under_the_wrong_id_is_corrupt() {
        let store = SyncStore::in_memory().unwrap();
        let (a, b) = (tree(b"a"), tree(b"b"));
        let bytes = b.to_proto().encode_to_vec();
        let txn = store.db.begin_write().unwrap();
        put_pieces(&txn, &a.version_id(), &bytes, bytes.len() as u64).unwrap();
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
