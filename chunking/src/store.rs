//! Content-addressed chunk storage.
//!
//! [`ChunkStore`] is what the delta code and the daemon need: has, get (verified), put, sync.
//! [`DiskStore`] appends zstd-compressed chunks to pack files and finds them through an index
//! in an embedded ACID database (redb); [`ChunkStore::sync`] makes everything put so far
//! durable (the packs fsynced first, then the index committed), so storing a large file does
//! not pay one fsync per chunk, and a kill -9 never leaves an indexed chunk torn. Every read is
//! checked against the id; a chunk that fails the check is reported as corrupt and removed, so
//! it can be fetched again.
//! [`MemStore`] is the same contract in memory.

use std::collections::HashMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use redb::{ReadableTable, TableDefinition};

use crate::Error;
use crate::ids::ChunkId;

/// Where chunk bytes live.
pub trait ChunkStore: Send + Sync {
    /// True when the chunk is stored.
    fn contains(&self, id: &ChunkId) -> Result<bool, Error>;
    /// The chunk's bytes, verified against `id`; `None` when absent.
    fn get(&self, id: &ChunkId) -> Result<Option<Vec<u8>>, Error>;
    /// Stores `bytes` under `id`. The caller computed `id` from `bytes`; a wrong id is caught
    /// on read.
    fn put(&self, id: &ChunkId, bytes: &[u8]) -> Result<(), Error>;
    /// Makes every chunk put so far durable.
    fn sync(&self) -> Result<(), Error>;
    /// Removes a chunk (garbage collection). Absent chunks are not an error.
    fn remove(&self, id: &ChunkId) -> Result<(), Error>;
    /// Every stored chunk id.
    fn ids(&self) -> Result<Vec<ChunkId>, Error>;

    /// Reclaims the space of removed chunks and returns the bytes freed. A store whose
    /// `remove` frees space at once (like [`MemStore`]) has nothing left to do.
    fn compact(&self) -> Result<u64, Error> {
        Ok(0)
    }

    /// Which of `ids` are not stored (in the order given). Stores answer a batch in one go.
    fn missing(&self, ids: &[ChunkId]) -> Result<Vec<ChunkId>, Error> {
        let mut out = Vec::new();
        for id in ids {
            if !self.contains(id)? {
                out.push(*id);
            }
        }
        Ok(out)
    }

    /// The chunk's length, `None` when absent: what a reference naming the chunk must say
    /// (a reference whose length lies would make a reader write or load far more, or less,
    /// than its manifest declares). Stores answer it without reading the chunk when they can.
    fn len_of(&self, id: &ChunkId) -> Result<Option<u32>, Error> {
        Ok(self.get(id)?.map(|b| b.len() as u32))
    }

    /// [`len_of`](Self::len_of) of each of `ids`, in the order given. Stores answer a batch in
    /// one go.
    fn lens_of(&self, ids: &[ChunkId]) -> Result<Vec<Option<u32>>, Error> {
        ids.iter().map(|id| self.len_of(id)).collect()
    }

    /// The chunk's bytes, or an error naming it when absent.
    fn require(&self, id: &ChunkId) -> Result<Vec<u8>, Error> {
        self.get(id)?.ok_or(Error::Missing { id: *id })
    }

    /// The chunk as it travels, verified against `id`: zstd-compressed when that is smaller.
    /// A store that keeps chunks compressed gives the frame it keeps instead of making one.
    fn get_packed(&self, id: &ChunkId) -> Result<Option<Packed>, Error> {
        match self.get(id)? {
            Some(bytes) => Packed::of(bytes).map(Some),
            None => Ok(None),
        }
    }

    /// [`get_packed`](Self::get_packed) and the chunk's bytes, from one read: a store that
    /// keeps the frame gives the bytes it decompressed to check it.
    fn get_packed_and_bytes(&self, id: &ChunkId) -> Result<Option<(Packed, Vec<u8>)>, Error> {
        match self.get(id)? {
            Some(bytes) => Ok(Some((Packed::of(bytes.clone())?, bytes))),
            None => Ok(None),
        }
    }

    /// Stores `bytes` under `id`, as [`put`](Self::put), when they arrived as the zstd
    /// `frame` (which the caller decompressed to `bytes` and checked against `id`): a store
    /// that keeps chunks compressed keeps that frame rather than compress them again.
    fn put_framed(&self, id: &ChunkId, bytes: &[u8], frame: &[u8]) -> Result<(), Error> {
        let _ = frame;
        self.put(id, bytes)
    }

    /// Stores `bytes` under `id`, as [`put`](Self::put), when they arrived uncompressed: the
    /// sender's store found that compressing them does not make them smaller (pseudo-random or
    /// already compressed data), so a store that compresses keeps them as they are rather
    /// than try again. A sender that lies about it costs this store no more than the bytes it
    /// sent.
    fn put_raw(&self, id: &ChunkId, bytes: &[u8]) -> Result<(), Error> {
        self.put(id, bytes)
    }
}

/// A chunk as it is kept and sent: its bytes, or a zstd frame of them when that is smaller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packed {
    /// `data` is a zstd frame (stating its content size); otherwise the bytes themselves.
    pub zstd: bool,
    pub data: Vec<u8>,
    /// The chunk's length.
    pub len: usize,
}

/// The zstd level chunks are compressed at, in stores and on the wire.
pub const CHUNK_LEVEL: i32 = 3;

impl Packed {
    /// `bytes` compressed at [`CHUNK_LEVEL`] if that makes them smaller.
    pub fn of(bytes: Vec<u8>) -> Result<Packed, Error> {
        let len = bytes.len();
        let compressed =
            crate::squeeze::compress(&bytes, CHUNK_LEVEL).map_err(Error::io("<zstd>"))?;
        Ok(if compressed.len() < len {
            Packed {
                zstd: true,
                data: compressed,
                len,
            }
        } else {
            Packed {
                zstd: false,
                data: bytes,
                len,
            }
        })
    }
}

/// True when `frame` may be kept as the record of a chunk of `len` bytes: smaller than them,
/// and stating their length as its content size (what a read sizes its output by).
fn keepable_frame(frame: &[u8], len: usize) -> bool {
    frame.len() < len
        && matches!(zstd::zstd_safe::get_frame_content_size(frame), Ok(Some(n)) if n == len as u64)
}

/// Chunks in memory: for tests, and for tools that need no persistence. It keeps the
/// contract's durability too, for tests of what a crash loses: [`MemStore::crash`] drops what
/// was put since the last [`ChunkStore::sync`], and [`MemStore::syncs`] counts the syncs.
#[derive(Default)]
pub struct MemStore {
    chunks: Mutex<HashMap<ChunkId, Vec<u8>>>,
    /// Put and not synced since.
    unsynced: Mutex<std::collections::HashSet<ChunkId>>,
    syncs: std::sync::atomic::AtomicUsize,
}

impl MemStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// What a kill -9 of the process that owns the store would leave: the chunks put since the
    /// last sync are gone.
    pub fn crash(&self) {
        let lost = std::mem::take(&mut *self.unsynced.lock().unwrap_or_else(|e| e.into_inner()));
        let mut map = self.lock();
        for id in lost {
            map.remove(&id);
        }
    }

    /// How many times the store was synced.
    pub fn syncs(&self) -> usize {
        self.syncs.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Number of stored chunks.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ChunkId, Vec<u8>>> {
        // A panic while holding the lock cannot leave the map half-updated.
        self.chunks.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl ChunkStore for MemStore {
    fn contains(&self, id: &ChunkId) -> Result<bool, Error> {
        Ok(self.lock().contains_key(id))
    }

    fn len_of(&self, id: &ChunkId) -> Result<Option<u32>, Error> {
        Ok(self.lock().get(id).map(|b| b.len() as u32))
    }

    fn get(&self, id: &ChunkId) -> Result<Option<Vec<u8>>, Error> {
        let mut map = self.lock();
        match map.get(id) {
            Some(b) if ChunkId::of(b) == *id => Ok(Some(b.clone())),
            Some(_) => {
                map.remove(id);
                Err(Error::Corrupt { id: *id })
            }
            None => Ok(None),
        }
    }

    fn put(&self, id: &ChunkId, bytes: &[u8]) -> Result<(), Error> {
        let mut map = self.lock();
        if !map.contains_key(id) {
            map.insert(*id, bytes.to_vec());
            self.unsynced
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(*id);
        }
        Ok(())
    }

    fn sync(&self) -> Result<(), Error> {
        self.unsynced
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
        self.syncs
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }

    fn remove(&self, id: &ChunkId) -> Result<(), Error> {
        self.lock().remove(id);
        Ok(())
    }

    fn ids(&self) -> Result<Vec<ChunkId>, Error> {
        Ok(self.lock().keys().copied().collect())
    }
}

/// Format byte of every stored chunk.
const RAW: u8 = 0;
const ZSTD: u8 = 1;

/// Chunk id -> where its record is: pack number (u32 LE), offset (u64 LE), length (u32 LE).
const INDEX: TableDefinition<&[u8; 32], &[u8; 16]> = TableDefinition::new("chunk_index");

/// A pack is closed and a new one started beyond this size.
const PACK_MAX: u64 = 256 << 20;

/// Bytes of the index's pages redb keeps in memory. Its default (1 GiB) let a daemon grow by
/// every page it ever touched; 100,000 chunks are ~5 MB of index, and the OS caches the file.
/// 16 → 4 → 2 MiB each took a 100k-file sync's RSS down (by 12–18, then ~3 MiB) for the same
/// CPU (docs/benchmarks.md).
const INDEX_CACHE: usize = 2 << 20;

/// Index entries buffered before a commit. Chunk ids are random, so a commit of n entries
/// rewrites about n of the index's leaf pages (all of them once n passes their number), and
/// pages freed by a commit that is not durable stay allocated until a durable one: storing
/// 100,000 chunks in commits of 1,024 wrote ~280 MB of index pages and left a 270 MB file
/// for ~5 MB of entries. The buffer costs ~80 bytes an entry.
const BATCH_ENTRIES: usize = 16 << 10;

/// Bytes appended to a pack between two requests that the kernel start writing them back:
/// a large file stored (by a scan, or a fetch) reaches the disk while it is being stored, so
/// the [`ChunkStore::sync`] that makes it durable finds little left to write, rather than
/// all of it at once (the materializer does the same for the files it writes).
const WRITEBACK_EVERY: u64 = 8 << 20;

/// The largest chunk a record may hold (fastcdc's bound).
const MAX_CHUNK: u64 = 16 << 20;

/// Lookups a read makes for a record whose pack is gone before it reports the pack lost: each
/// one past the first means a compaction finished between the read's lookup and its open.
const RELOOKUPS: usize = 4;

/// Bytes in front of every record: the chunk id, the format byte, the payload length.
const RECORD_HEADER: usize = 32 + 1 + 4;

/// A record read back and checked against its id: its body as stored (the chunk's bytes, or a
/// zstd frame of them) and, for a frame, the bytes it inflated to. A raw body is the chunk
/// itself, handed on without a copy.
struct Checked {
    zstd: bool,
    body: Vec<u8>,
    inflated: Option<Vec<u8>>,
}

impl Checked {
    /// The chunk's bytes.
    fn bytes(self) -> Vec<u8> {
        self.inflated.unwrap_or(self.body)
    }

    /// The record as it is kept and sent, and the chunk's bytes.
    fn both(self) -> (Packed, Vec<u8>) {
        match self.inflated {
            Some(bytes) => {
                let len = bytes.len();
                let packed = Packed {
                    zstd: self.zstd,
                    data: self.body,
                    len,
                };
                (packed, bytes)
            }
            None => {
                let bytes = self.body.clone();
                (self.packed(), bytes)
            }
        }
    }

    /// The record as it is kept and sent.
    fn packed(self) -> Packed {
        let len = self.inflated.as_ref().map_or(self.body.len(), Vec::len);
        Packed {
            zstd: self.zstd,
            data: self.body,
            len,
        }
    }
}

/// Where a record lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Location {
    pack: u32,
    offset: u64,
    len: u32,
}

impl Location {
    fn encode(self) -> [u8; 16] {
        let mut b = [0u8; 16];
        b[..4].copy_from_slice(&self.pack.to_le_bytes());
        b[4..12].copy_from_slice(&self.offset.to_le_bytes());
        b[12..].copy_from_slice(&self.len.to_le_bytes());
        b
    }

    fn decode(b: &[u8; 16]) -> Location {
        let u32_at = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let mut off = [0u8; 8];
        off.copy_from_slice(&b[4..12]);
        Location {
            pack: u32_at(0),
            offset: u64::from_le_bytes(off),
            len: u32_at(12),
        }
    }
}

/// The pack being appended to, and what was appended since the last commit.
struct Writer {
    pack: u32,
    file: fs::File,
    size: u64,
    /// Appended records whose index entries are not committed yet.
    pending: HashMap<ChunkId, Location>,
    /// Packs written to since the last sync (their data must reach the disk first).
    unsynced: Vec<u32>,
    /// Where in the current pack the kernel was last asked to start writing back.
    handed: u64,
}

/// Chunks on disk: records appended to pack files (`packs/NNNNNNNN.pack`), found through an
/// index in an embedded ACID database (`index.redb`, redb).
///
/// A put appends one record (id, format, length, zstd-compressed bytes) to the current pack
/// and buffers its index entry; entries are committed in batches. [`ChunkStore::sync`] first
/// fsyncs the packs written to, then commits the index durably, so a committed index entry
/// never points at bytes that are not on disk. A record cut short by a crash is never indexed,
/// and every read checks the record's id, length and content hash, so a reader never gets a
/// torn chunk. Reads are positional (`pread`), so readers never wait for the writer. Appending
/// to a file is what makes this fast: on the development machine, a database write of each
/// 64 KiB chunk ran at 130 MB/s and a file per chunk cost 0.6 ms of metadata work each.
///
/// [`ChunkStore::remove`] drops a chunk from the index; [`ChunkStore::compact`] then reclaims
/// the space of packs that are mostly garbage.
pub struct DiskStore {
    root: PathBuf,
    /// The index as of its last write, for lookups ([`locate`](Self::locate)): a read
    /// transaction and its table opened for each lookup was a sixth of a scan of 100k new
    /// files. Every write to the index drops it once committed (a chunk removed must not be
    /// found, nor one indexed missed), and the next lookup opens it again. (Declared before
    /// `index`, so that it is dropped before the database closes.)
    snapshot: Mutex<Option<Arc<IndexTable>>>,
    index: redb::Database,
    writer: Mutex<Writer>,
    readers: Mutex<HashMap<u32, Arc<fs::File>>>,
    level: i32,
}

/// The index, read as of one transaction.
type IndexTable = redb::ReadOnlyTable<&'static [u8; 32], &'static [u8; 16]>;

impl DiskStore {
    /// Opens (creating if needed) the store in directory `root`. Appends always go to a new
    /// pack, never after the tail of a pack a crash may have cut short.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self, Error> {
        let root = root.into();
        let packs = root.join("packs");
        for dir in [&root, &packs] {
            private_dir(dir).map_err(Error::io(dir))?;
        }
        let path = root.join("index.redb");
        private_file(&path).map_err(Error::io(&path))?;
        let index = redb::Database::builder()
            .set_cache_size(INDEX_CACHE)
            .create(&path)
            .map_err(|e| store_err(&path, e))?;
        let txn = index.begin_write().map_err(|e| store_err(&path, e))?;
        txn.open_table(INDEX).map_err(|e| store_err(&path, e))?;
        txn.commit().map_err(|e| store_err(&path, e))?;
        let mut last = 0u32;
        for e in fs::read_dir(&packs).map_err(Error::io(&packs))? {
            let name = e.map_err(Error::io(&packs))?.file_name();
            if let Some(n) = name
                .to_str()
                .and_then(|n| n.strip_suffix(".pack"))
                .and_then(|n| n.parse::<u32>().ok())
            {
                last = last.max(n);
            }
        }
        let store = DiskStore {
            writer: Mutex::new(Self::new_pack(&packs, last + 1)?),
            root,
            index,
            readers: Mutex::new(HashMap::new()),
            snapshot: Mutex::new(None),
            level: CHUNK_LEVEL,
        };
        Ok(store)
    }

    /// The store's directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn pack_path(&self, pack: u32) -> PathBuf {
        self.root.join("packs").join(format!("{pack:08}.pack"))
    }

    fn new_pack(packs: &Path, pack: u32) -> Result<Writer, Error> {
        let path = packs.join(format!("{pack:08}.pack"));
        let file = fs::OpenOptions::new()
            .create_new(true)
            .append(true)
            .mode(0o600)
            .open(&path)
            .map_err(Error::io(&path))?;
        file.set_permissions(fs::Permissions::from_mode(0o600))
            .map_err(Error::io(&path))?;
        Ok(Writer {
            pack,
            file,
            size: 0,
            pending: HashMap::new(),
            unsynced: vec![pack],
            handed: 0,
        })
    }

    fn err(&self, e: impl std::fmt::Display) -> Error {
        store_err(&self.root, e)
    }

    fn writer(&self) -> std::sync::MutexGuard<'_, Writer> {
        self.writer.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Pack `pack`, opened once and kept; `None` when it no longer exists (compaction deleted
    /// it). The file is opened under the readers' lock, which compaction also holds while it
    /// forgets and deletes a pack: a handle is never kept to a deleted pack.
    fn reader(&self, pack: u32) -> Result<Option<Arc<fs::File>>, Error> {
        let mut readers = self.readers.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(f) = readers.get(&pack) {
            return Ok(Some(f.clone()));
        }
        let path = self.pack_path(pack);
        let f = match fs::File::open(&path) {
            Ok(f) => Arc::new(f),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io(&path)(e)),
        };
        readers.insert(pack, f.clone());
        Ok(Some(f))
    }

    /// The pack holding `id`'s record, and where in it, from `loc` (a lookup's answer): a
    /// pack deleted since the lookup means compaction moved the record, so `id` is looked up
    /// again. `None` when `id` is no longer stored. A handle once returned reads the pack
    /// even if it is deleted meanwhile.
    fn open_record(
        &self,
        id: &ChunkId,
        mut loc: Location,
    ) -> Result<Option<(Arc<fs::File>, Location)>, Error> {
        // Each new location is one more compaction run between a lookup and its read.
        for _ in 0..RELOOKUPS {
            if let Some(file) = self.reader(loc.pack)? {
                return Ok(Some((file, loc)));
            }
            match self.locate(id)? {
                None => return Ok(None),
                Some(moved) if moved != loc => loc = moved,
                // Still indexed in a pack that is gone: lost, not moved.
                Some(_) => break,
            }
        }
        let path = self.pack_path(loc.pack);
        Err(Error::io(&path)(std::io::ErrorKind::NotFound.into()))
    }

    /// Where `id` is stored, if it is.
    fn locate(&self, id: &ChunkId) -> Result<Option<Location>, Error> {
        if let Some(loc) = self.writer().pending.get(id) {
            return Ok(Some(*loc));
        }
        let table = self.index_table()?;
        Ok(table
            .get(&id.0)
            .map_err(|e| self.err(e))?
            .map(|v| Location::decode(v.value())))
    }

    /// [`locate`](Self::locate) of each of `ids`, in the order given: the buffered entries,
    /// then the index in one read transaction.
    fn locate_all(&self, ids: &[ChunkId]) -> Result<Vec<Option<Location>>, Error> {
        let pending: Vec<Option<Location>> = {
            let w = self.writer();
            ids.iter().map(|id| w.pending.get(id).copied()).collect()
        };
        let table = self.index_table()?;
        let mut out = Vec::with_capacity(ids.len());
        for (id, p) in ids.iter().zip(pending) {
            out.push(match p {
                Some(loc) => Some(loc),
                None => table
                    .get(&id.0)
                    .map_err(|e| self.err(e))?
                    .map(|v| Location::decode(v.value())),
            });
        }
        Ok(out)
    }

    /// The index as of its last write ([`snapshot`](Self::snapshot)). A lookup that found
    /// nothing in the writer's pending entries reads it after: an entry leaves them only in
    /// a commit, which holds the writer and drops the snapshot before it lets go.
    fn index_table(&self) -> Result<Arc<IndexTable>, Error> {
        let mut kept = self.snapshot.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(table) = &*kept {
            return Ok(table.clone());
        }
        let txn = self.index.begin_read().map_err(|e| self.err(e))?;
        let table = Arc::new(txn.open_table(INDEX).map_err(|e| self.err(e))?);
        *kept = Some(table.clone());
        Ok(table)
    }

    /// The index was written: lookups from now on read it anew.
    fn index_written(&self) {
        *self.snapshot.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// Commits the buffered index entries; with `durable`, after fsyncing the packs.
    fn commit(&self, w: &mut Writer, durable: bool) -> Result<(), Error> {
        if durable {
            for pack in w.unsynced.drain(..) {
                let path = self.pack_path(pack);
                fs::File::open(&path)
                    .and_then(|f| f.sync_data())
                    .map_err(Error::io(&path))?;
            }
            w.unsynced.push(w.pack);
            let packs = self.root.join("packs");
            fs::File::open(&packs)
                .and_then(|d| d.sync_all())
                .map_err(Error::io(&packs))?;
        }
        let mut txn = self.index.begin_write().map_err(|e| self.err(e))?;
        if !durable {
            txn.set_durability(redb::Durability::None);
        }
        {
            let mut table = txn.open_table(INDEX).map_err(|e| self.err(e))?;
            for (id, loc) in &w.pending {
                table
                    .insert(&id.0, &loc.encode())
                    .map_err(|e| self.err(e))?;
            }
        }
        let committed = txn.commit().map_err(|e| self.err(e));
        self.index_written();
        committed?;
        w.pending.clear();
        Ok(())
    }

    /// Appends a record for `id`; with `replace`, even if it is already stored (compaction
    /// moves records).
    fn append(&self, id: &ChunkId, bytes: &[u8], replace: bool) -> Result<(), Error> {
        let compressed = crate::squeeze::compress(bytes, self.level).map_err(|e| self.err(e))?;
        if compressed.len() < bytes.len() {
            self.append_body(id, ZSTD, &compressed, replace)
        } else {
            self.append_body(id, RAW, bytes, replace)
        }
    }

    /// Appends a record of `id` with its `tag` and `body`, as [`append`](Self::append).
    fn append_body(&self, id: &ChunkId, tag: u8, body: &[u8], replace: bool) -> Result<(), Error> {
        let mut head = [0u8; RECORD_HEADER];
        head[..32].copy_from_slice(&id.0);
        head[32] = tag;
        head[33..].copy_from_slice(&(body.len() as u32).to_le_bytes());
        let record_len = RECORD_HEADER + body.len();

        let mut w = self.writer();
        if !replace && w.pending.contains_key(id) {
            return Ok(());
        }
        if w.size + record_len as u64 > PACK_MAX && w.size > 0 {
            let next = Self::new_pack(&self.root.join("packs"), w.pack + 1)?;
            let mut unsynced = std::mem::take(&mut w.unsynced);
            let pending = std::mem::take(&mut w.pending);
            *w = next;
            unsynced.push(w.pack);
            w.unsynced = unsynced;
            w.pending = pending;
        }
        let offset = w.size;
        let path = self.pack_path(w.pack);
        if let Err(e) = write_both(&mut w.file, &head, body) {
            // Part of the record may be in the pack (a full disk): the next one goes after
            // it, where the file now ends, so its location is right (this one is never
            // indexed, and its bytes are reclaimed with the pack).
            if let Ok(m) = w.file.metadata() {
                w.size = m.len();
            }
            return Err(Error::io(&path)(e));
        }
        w.size += record_len as u64;
        if w.size - w.handed >= WRITEBACK_EVERY {
            start_writeback(&w.file, w.handed, w.size - w.handed);
            w.handed = w.size;
        }
        let pack = w.pack;
        w.pending.insert(
            *id,
            Location {
                pack,
                offset,
                len: record_len as u32,
            },
        );
        if w.pending.len() >= BATCH_ENTRIES {
            self.commit(&mut w, false)?;
        }
        Ok(())
    }

    /// The length of the chunk `id` whose record is at `loc`: from the record's header (a raw
    /// record's length, a frame's stated content size), else by reading it.
    fn len_at(&self, id: &ChunkId, loc: Location) -> Result<Option<u32>, Error> {
        let Some((file, loc)) = self.open_record(id, loc)? else {
            return Ok(None);
        };
        let mut head = [0u8; RECORD_HEADER + 18];
        let n = (loc.len as usize).min(head.len());
        if std::os::unix::fs::FileExt::read_exact_at(&*file, &mut head[..n], loc.offset).is_ok()
            && n > RECORD_HEADER
            && head[..32] == id.0
        {
            let len = u32::from_le_bytes([head[33], head[34], head[35], head[36]]);
            match head[32] {
                RAW => return Ok(Some(len)),
                ZSTD => {
                    if let Ok(Some(size)) =
                        zstd::zstd_safe::get_frame_content_size(&head[RECORD_HEADER..n])
                        && size <= MAX_CHUNK
                    {
                        return Ok(Some(size as u32));
                    }
                }
                _ => {}
            }
        }
        Ok(self.checked(id)?.map(|c| c.bytes().len() as u32))
    }

    /// Reads and checks the record at `loc`: its header must name `id`, and its bytes must
    /// decompress to content that hashes to `id`. Its header and its body are read in one
    /// call into buffers of their own, so the body is never copied out of the record.
    fn read_checked(file: &fs::File, id: &ChunkId, loc: Location) -> Option<Checked> {
        let body_len = (loc.len as usize).checked_sub(RECORD_HEADER)?;
        let mut head = [0u8; RECORD_HEADER];
        let mut body = vec![0u8; body_len];
        read_both_at(file, &mut head, &mut body, loc.offset).ok()?;
        check_record(id, &head, body)
    }

    /// The record of `id` and its bytes; a record that does not check out is dropped (and
    /// fetched again by whoever needs it).
    fn checked(&self, id: &ChunkId) -> Result<Option<Checked>, Error> {
        match self.locate(id)? {
            Some(loc) => self.checked_from(id, loc),
            None => Ok(None),
        }
    }

    /// [`checked`](Self::checked), the record looked up at `loc`, which may have moved since.
    /// A record that does not check out is dropped only if the chunk is still indexed there:
    /// a location since replaced (the chunk moved, or stored again) is not what the index
    /// holds, so the chunk is read where the index now says.
    fn checked_from(&self, id: &ChunkId, mut loc: Location) -> Result<Option<Checked>, Error> {
        for _ in 0..RELOOKUPS {
            let Some((file, at)) = self.open_record(id, loc)? else {
                return Ok(None);
            };
            if let Some(both) = Self::read_checked(&file, id, at) {
                return Ok(Some(both));
            }
            match self.locate(id)? {
                None => return Ok(None),
                Some(now) if now != at => loc = now,
                Some(_) => {
                    tracing::warn!(chunk = %id, store = %self.root.display(), "corrupt chunk dropped; it will be fetched again");
                    self.remove(id)?;
                    return Err(Error::Corrupt { id: *id });
                }
            }
        }
        Err(Error::io(self.pack_path(loc.pack))(std::io::Error::other(
            "the chunk kept moving while it was read",
        )))
    }

    /// Reclaims the space of removed chunks: every closed pack in which less than half the
    /// bytes are still indexed has its live records copied to the current pack, and is deleted
    /// once the index pointing at the copies is durable. Returns the bytes freed. Safe to run
    /// while others read and write: a read holding an old location reads the old pack if it
    /// opened it before the pack was deleted, and otherwise looks the chunk up again
    /// ([`open_record`](Self::open_record)).
    fn compact_packs(&self) -> Result<u64, Error> {
        // The entries still buffered go into the index first, and the pack being appended to
        // is read under the same lock: every record in an older pack is then in the index read
        // below. (A pack closed while its entries were buffered counted as all garbage: it was
        // deleted, and its chunks lost.)
        let current = {
            let mut w = self.writer();
            if !w.pending.is_empty() {
                self.commit(&mut w, false)?;
            }
            w.pack
        };
        // Live bytes per pack, from the index.
        let mut live: HashMap<u32, (u64, Vec<(ChunkId, Location)>)> = HashMap::new();
        {
            let txn = self.index.begin_read().map_err(|e| self.err(e))?;
            let table = txn.open_table(INDEX).map_err(|e| self.err(e))?;
            for item in table.iter().map_err(|e| self.err(e))? {
                let (k, v) = item.map_err(|e| self.err(e))?;
                let loc = Location::decode(v.value());
                let e = live.entry(loc.pack).or_default();
                e.0 += u64::from(loc.len);
                e.1.push((ChunkId(*k.value()), loc));
            }
        }
        let packs = self.root.join("packs");
        let mut victims = Vec::new();
        for e in fs::read_dir(&packs).map_err(Error::io(&packs))? {
            let e = e.map_err(Error::io(&packs))?;
            let Some(pack) = e
                .file_name()
                .to_str()
                .and_then(|n| n.strip_suffix(".pack"))
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            if pack >= current {
                continue;
            }
            let size = e.metadata().map_err(Error::io(e.path()))?.len();
            let used = live.get(&pack).map_or(0, |l| l.0);
            if used * 2 < size {
                victims.push((pack, size - used));
            }
        }
        let mut freed = 0;
        for (pack, garbage) in victims {
            for (id, loc) in live.remove(&pack).map(|l| l.1).unwrap_or_default() {
                // A record that no longer checks out is dropped rather than copied; one that
                // does is copied as it is kept (a raw chunk is not compressed on the way).
                let record = self.open_record(&id, loc)?;
                if let Some(c) = record.and_then(|(file, at)| Self::read_checked(&file, &id, at)) {
                    self.append_body(&id, if c.zstd { ZSTD } else { RAW }, &c.body, true)?;
                }
            }
            self.sync()?;
            // Forgotten and deleted under the readers' lock: a read that looked a record up
            // in this pack either opened it before (and reads its own handle) or finds it gone
            // and looks the record up again, now in its new place.
            let mut readers = self.readers.lock().unwrap_or_else(|e| e.into_inner());
            let kept = readers.remove(&pack);
            let path = self.pack_path(pack);
            fs::remove_file(&path).map_err(Error::io(&path))?;
            drop(readers);
            // The last handle closed frees the pack's blocks: outside the lock every read takes.
            drop(kept);
            freed += garbage;
        }
        Ok(freed)
    }

    /// Overwrites a stored record's bytes (tests use it to simulate disk corruption).
    #[cfg(test)]
    fn damage(&self, id: &ChunkId, f: impl FnOnce(&mut Vec<u8>)) {
        use std::os::unix::fs::FileExt;
        self.sync().unwrap();
        let loc = self.locate(id).unwrap().unwrap();
        let path = self.pack_path(loc.pack);
        let mut record = vec![0u8; loc.len as usize];
        fs::File::open(&path)
            .unwrap()
            .read_exact_at(&mut record, loc.offset)
            .unwrap();
        f(&mut record);
        record.resize(loc.len as usize, 0);
        fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .write_all_at(&record, loc.offset)
            .unwrap();
    }
}

/// The record of `id` with header `head` and body `body`, if it is whole and its content is
/// `id`'s.
fn check_record(id: &ChunkId, head: &[u8; RECORD_HEADER], mut body: Vec<u8>) -> Option<Checked> {
    if head[..32] != id.0 {
        return None;
    }
    let tag = head[32];
    let len = u32::from_le_bytes([head[33], head[34], head[35], head[36]]) as usize;
    if len > body.len() {
        return None;
    }
    body.truncate(len);
    let checked = match tag {
        RAW => Checked {
            zstd: false,
            body,
            inflated: None,
        },
        // Chunks are at most 16 MiB (fastcdc's bound); refuse to inflate beyond that. The
        // output is sized by the frame's own content size when it states one (every record
        // written here does): a 16 MiB buffer for each 600-byte chunk read made every read
        // map and unmap 16 MiB, and a chunk kept (a chunk answer) kept all of it.
        ZSTD => {
            let cap = match zstd::zstd_safe::get_frame_content_size(&body) {
                Ok(Some(n)) if n <= MAX_CHUNK => n as usize,
                Ok(Some(_)) => return None,
                _ => MAX_CHUNK as usize,
            };
            let inflated = crate::squeeze::decompress(&body, cap).ok()?;
            Checked {
                zstd: true,
                body,
                inflated: Some(inflated),
            }
        }
        _ => return None,
    };
    let bytes = checked.inflated.as_deref().unwrap_or(&checked.body);
    (ChunkId::of(bytes) == *id).then_some(checked)
}

/// Reads `head` and then `body` from `file` at `at`, in one `preadv` when the file gives it
/// whole.
fn read_both_at(file: &fs::File, head: &mut [u8], body: &mut [u8], at: u64) -> std::io::Result<()> {
    use std::io::IoSliceMut;
    use std::os::unix::fs::FileExt;
    let n = loop {
        match rustix::io::preadv(
            file,
            &mut [IoSliceMut::new(head), IoSliceMut::new(body)],
            at,
        ) {
            Err(rustix::io::Errno::INTR) => continue,
            other => break other?,
        }
    };
    if n < head.len() {
        file.read_exact_at(&mut head[n..], at + n as u64)?;
    }
    let got = n.saturating_sub(head.len()).min(body.len());
    if got < body.len() {
        file.read_exact_at(&mut body[got..], at + (head.len() + got) as u64)?;
    }
    Ok(())
}

/// Asks the kernel to start writing back `len` bytes of `file` at `from`, without waiting for
/// it (`sync_file_range(SYNC_FILE_RANGE_WRITE)`); durability still comes from an fsync later
/// (for the store, [`ChunkStore::sync`]'s), which then finds less to write. A failure here
/// only means that fsync has more to do. The materializer does this for the files it writes.
pub fn start_writeback(file: &fs::File, from: u64, len: u64) {
    #[cfg(target_os = "linux")]
    // SAFETY: a plain system call on an open descriptor; no memory is handed over.
    unsafe {
        libc::sync_file_range(
            std::os::fd::AsRawFd::as_raw_fd(file),
            from as libc::off64_t,
            len as libc::off64_t,
            libc::SYNC_FILE_RANGE_WRITE,
        );
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (file, from, len);
}

/// Writes `head` and then `body` at the end of `file` (opened to append), in one `writev`
/// when the file takes it whole: the body is not copied into a record first.
fn write_both(file: &mut fs::File, head: &[u8], body: &[u8]) -> std::io::Result<()> {
    use std::io::IoSlice;
    let mut done = 0;
    while done < head.len() + body.len() {
        let n = match if done < head.len() {
            file.write_vectored(&[IoSlice::new(&head[done..]), IoSlice::new(body)])
        } else {
            file.write(&body[done - head.len()..])
        } {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            other => other?,
        };
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        done += n;
    }
    Ok(())
}

fn store_err(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::Io {
        path: path.to_path_buf(),
        source: std::io::Error::other(e.to_string()),
    }
}

impl ChunkStore for DiskStore {
    fn contains(&self, id: &ChunkId) -> Result<bool, Error> {
        Ok(self.locate(id)?.is_some())
    }

    fn missing(&self, ids: &[ChunkId]) -> Result<Vec<ChunkId>, Error> {
        Ok(ids
            .iter()
            .zip(self.locate_all(ids)?)
            .filter(|(_, loc)| loc.is_none())
            .map(|(id, _)| *id)
            .collect())
    }

    fn get(&self, id: &ChunkId) -> Result<Option<Vec<u8>>, Error> {
        Ok(self.checked(id)?.map(Checked::bytes))
    }

    /// From the record's header (a raw record's length, a frame's stated content size)
    /// without reading its body; a record that states neither is read whole.
    fn len_of(&self, id: &ChunkId) -> Result<Option<u32>, Error> {
        match self.locate(id)? {
            Some(loc) => self.len_at(id, loc),
            None => Ok(None),
        }
    }

    /// As [`len_of`](ChunkStore::len_of), the index read in one transaction.
    fn lens_of(&self, ids: &[ChunkId]) -> Result<Vec<Option<u32>>, Error> {
        ids.iter()
            .zip(self.locate_all(ids)?)
            .map(|(id, loc)| match loc {
                Some(l) => self.len_at(id, l),
                None => Ok(None),
            })
            .collect()
    }

    /// The record's own frame, once its content is checked: sending a chunk costs no
    /// compression.
    fn get_packed(&self, id: &ChunkId) -> Result<Option<Packed>, Error> {
        Ok(self.checked(id)?.map(Checked::packed))
    }

    fn get_packed_and_bytes(&self, id: &ChunkId) -> Result<Option<(Packed, Vec<u8>)>, Error> {
        Ok(self.checked(id)?.map(Checked::both))
    }

    fn put(&self, id: &ChunkId, bytes: &[u8]) -> Result<(), Error> {
        if self.contains(id)? {
            return Ok(());
        }
        self.append(id, bytes, false)
    }

    /// Keeps the frame a chunk arrived in (receiving a chunk costs no compression), when it
    /// is smaller than the chunk and states its length; otherwise compresses as [`put`].
    fn put_framed(&self, id: &ChunkId, bytes: &[u8], frame: &[u8]) -> Result<(), Error> {
        if self.contains(id)? {
            return Ok(());
        }
        if keepable_frame(frame, bytes.len()) {
            self.append_body(id, ZSTD, frame, false)
        } else {
            self.append(id, bytes, false)
        }
    }

    /// Keeps the bytes as they came: no second attempt at compressing what the sender's
    /// store could not.
    fn put_raw(&self, id: &ChunkId, bytes: &[u8]) -> Result<(), Error> {
        if self.contains(id)? {
            return Ok(());
        }
        self.append_body(id, RAW, bytes, false)
    }

    fn sync(&self) -> Result<(), Error> {
        let mut w = self.writer();
        self.commit(&mut w, true)
    }

    fn compact(&self) -> Result<u64, Error> {
        self.compact_packs()
    }

    fn remove(&self, id: &ChunkId) -> Result<(), Error> {
        self.writer().pending.remove(id);
        let mut txn = self.index.begin_write().map_err(|e| self.err(e))?;
        txn.set_durability(redb::Durability::None);
        txn.open_table(INDEX)
            .map_err(|e| self.err(e))?
            .remove(&id.0)
            .map_err(|e| self.err(e))?;
        let committed = txn.commit().map_err(|e| self.err(e));
        self.index_written();
        committed
    }

    fn ids(&self) -> Result<Vec<ChunkId>, Error> {
        let mut out: std::collections::HashSet<ChunkId> =
            self.writer().pending.keys().copied().collect();
        let txn = self.index.begin_read().map_err(|e| self.err(e))?;
        let table = txn.open_table(INDEX).map_err(|e| self.err(e))?;
        for item in table.iter().map_err(|e| self.err(e))? {
            let (k, _) = item.map_err(|e| self.err(e))?;
            out.insert(ChunkId(*k.value()));
        }
        Ok(out.into_iter().collect())
    }
}

/// Makes `dir` (and its parents) if needed, private (0700) whatever the umask.
fn private_dir(dir: &Path) -> std::io::Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
}

/// Makes `path` exist, private (0600) whatever the umask, before a database opens it.
fn private_file(path: &Path) -> std::io::Result<()> {
    let f = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)?;
    f.set_permissions(fs::Permissions::from_mode(0o600))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stores(dir: &Path) -> Vec<Box<dyn ChunkStore>> {
        vec![
            Box::new(MemStore::new()),
            Box::new(DiskStore::open(dir).unwrap()),
        ]
    }

    /// Lookups read the index as of its last write, never older: a chunk committed from the
    /// writer's pending entries is found, a chunk removed is not (and is stored again by its
    /// next put), whatever lookups came before.
    #[test]
    fn lookups_see_every_write_to_the_index() {
        let dir = tempfile::tempdir().unwrap();
        let s = DiskStore::open(dir.path()).unwrap();
        let (a, b) = (b"the first chunk".to_vec(), b"the second chunk".to_vec());
        let (ia, ib) = (ChunkId::of(&a), ChunkId::of(&b));
        s.put(&ia, &a).unwrap();
        s.sync().unwrap();
        // A lookup that reads the index (b is nowhere), then b pending, then committed.
        assert!(!s.contains(&ib).unwrap());
        s.put(&ib, &b).unwrap();
        assert!(s.contains(&ib).unwrap());
        s.sync().unwrap();
        assert!(s.contains(&ib).unwrap());
        assert_eq!(s.get(&ib).unwrap(), Some(b.clone()));
        // Removed after lookups that found it: gone, and stored again by a put.
        assert!(s.contains(&ia).unwrap());
        s.remove(&ia).unwrap();
        assert!(!s.contains(&ia).unwrap());
        assert_eq!(s.get(&ia).unwrap(), None);
        assert_eq!(s.missing(&[ia, ib]).unwrap(), vec![ia]);
        s.put(&ia, &a).unwrap();
        s.sync().unwrap();
        assert_eq!(s.get(&ia).unwrap(), Some(a));
        assert_eq!(s.missing(&[ia, ib]).unwrap(), Vec::<ChunkId>::new());
    }

    #[test]
    fn put_get_contains_remove() {
        let dir = tempfile::tempdir().unwrap();
        for s in stores(dir.path()) {
            let compressible = vec![b'a'; 100_000];
            let random: Vec<u8> = (0..5000u32)
                .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
                .collect();
            for bytes in [&compressible[..], &random[..], b""] {
                let id = ChunkId::of(bytes);
                assert!(!s.contains(&id).unwrap());
                assert_eq!(s.get(&id).unwrap(), None);
                s.put(&id, bytes).unwrap();
                s.put(&id, bytes).unwrap();
                assert!(s.contains(&id).unwrap());
                assert_eq!(s.get(&id).unwrap().as_deref(), Some(bytes));
                assert_eq!(s.len_of(&id).unwrap(), Some(bytes.len() as u32));
            }
            s.sync().unwrap();
            assert_eq!(s.ids().unwrap().len(), 3);
            // Lengths read back from the index and the records, compressed or raw.
            for bytes in [&compressible[..], &random[..], b""] {
                assert_eq!(
                    s.len_of(&ChunkId::of(bytes)).unwrap(),
                    Some(bytes.len() as u32)
                );
            }
            assert_eq!(s.len_of(&ChunkId::of(b"never stored")).unwrap(), None);
            let ids = [
                ChunkId::of(&compressible),
                ChunkId::of(b"never stored"),
                ChunkId::of(&random),
            ];
            assert_eq!(
                s.lens_of(&ids).unwrap(),
                [Some(100_000), None, Some(5000)],
                "a batch answers in order"
            );
            let id = ChunkId::of(b"");
            s.remove(&id).unwrap();
            s.remove(&id).unwrap();
            assert!(!s.contains(&id).unwrap());
        }
    }

    #[test]
    fn a_chunk_under_the_wrong_id_is_corrupt_on_read() {
        let dir = tempfile::tempdir().unwrap();
        for s in stores(dir.path()) {
            let id = ChunkId::of(b"right");
            s.put(&id, b"wrong").unwrap();
            assert!(matches!(s.get(&id), Err(Error::Corrupt { .. })));
            // It was removed so that it can be fetched again.
            assert!(!s.contains(&id).unwrap());
        }
    }

    #[test]
    fn damaged_bytes_on_disk_are_detected() {
        let dir = tempfile::tempdir().unwrap();
        let s = DiskStore::open(dir.path()).unwrap();
        let bytes = vec![7u8; 10_000];
        let id = ChunkId::of(&bytes);
        type Damage = fn(&mut Vec<u8>);
        let damages: [Damage; 4] = [
            |r| {
                let last = r.len() - 1;
                r[last] ^= 0xff;
            },
            |r| r[0] ^= 1,
            |r| r[32] = 9,
            |r| r.iter_mut().skip(RECORD_HEADER).for_each(|b| *b = 0),
        ];
        for damage in damages {
            s.put(&id, &bytes).unwrap();
            s.damage(&id, damage);
            assert!(matches!(s.get(&id), Err(Error::Corrupt { .. })));
            assert!(
                !s.contains(&id).unwrap(),
                "a corrupt chunk is dropped so it can be fetched again"
            );
            // Sending it as kept checks it the same way.
            s.put(&id, &bytes).unwrap();
            s.damage(&id, damage);
            assert!(matches!(s.get_packed(&id), Err(Error::Corrupt { .. })));
            assert!(!s.contains(&id).unwrap());
        }
        // A torn tail (the record cut short) is corrupt too.
        s.put(&id, &bytes).unwrap();
        s.sync().unwrap();
        let loc = s.locate(&id).unwrap().unwrap();
        let pack = fs::OpenOptions::new()
            .write(true)
            .open(s.pack_path(loc.pack))
            .unwrap();
        pack.set_len(loc.offset + loc.len as u64 / 2).unwrap();
        assert!(matches!(s.get(&id), Err(Error::Corrupt { .. })));
    }

    #[test]
    fn reopening_never_appends_after_an_old_tail_and_packs_rotate() {
        let dir = tempfile::tempdir().unwrap();
        let big = |i: u64| -> Vec<u8> { crate::testdata::pseudo_random(1 << 20, i) };
        {
            let s = DiskStore::open(dir.path()).unwrap();
            s.put(&ChunkId::of(&big(1)), &big(1)).unwrap();
            s.sync().unwrap();
        }
        let s = DiskStore::open(dir.path()).unwrap();
        assert_eq!(s.writer().pack, 2, "a reopened store starts a new pack");
        // Past PACK_MAX the writer moves on to another pack.
        for i in 2..(PACK_MAX >> 20) + 3 {
            s.put(&ChunkId::of(&big(i)), &big(i)).unwrap();
        }
        assert!(s.writer().pack > 2);
        s.sync().unwrap();
        for i in 1..(PACK_MAX >> 20) + 3 {
            assert_eq!(s.get(&ChunkId::of(&big(i))).unwrap(), Some(big(i)));
        }
    }

    #[test]
    fn buffered_chunks_are_readable_before_and_after_their_commit() {
        let dir = tempfile::tempdir().unwrap();
        let s = DiskStore::open(dir.path()).unwrap();
        // Enough incompressible bytes to fill several batches.
        let chunks: Vec<Vec<u8>> = (0..40u64)
            .map(|i| crate::testdata::pseudo_random(600_000, i))
            .collect();
        let ids: Vec<ChunkId> = chunks.iter().map(|c| ChunkId::of(c)).collect();
        for (id, c) in ids.iter().zip(&chunks) {
            s.put(id, c).unwrap();
            assert_eq!(s.get(id).unwrap().as_ref(), Some(c));
        }
        assert!(s.missing(&ids).unwrap().is_empty());
        assert_eq!(s.ids().unwrap().len(), 40);
        s.sync().unwrap();
        let unknown = ChunkId::of(b"never stored");
        assert_eq!(
            s.missing(&[ids[0], unknown, ids[39]]).unwrap(),
            vec![unknown]
        );
        for (id, c) in ids.iter().zip(&chunks) {
            assert_eq!(s.get(id).unwrap().as_ref(), Some(c));
        }
    }

    /// A store at `dir` holding `chunk(i)` for each of `ids` in a closed pack (compaction
    /// reclaims only closed ones), reopened, with those `removed` says removed.
    fn reopened_with_removed(
        dir: &Path,
        ids: impl Iterator<Item = u64> + Clone,
        chunk: impl Fn(u64) -> Vec<u8>,
        removed: impl Fn(u64) -> bool,
    ) -> DiskStore {
        {
            let s = DiskStore::open(dir).unwrap();
            for i in ids.clone() {
                s.put(&ChunkId::of(&chunk(i)), &chunk(i)).unwrap();
            }
            s.sync().unwrap();
        }
        let s = DiskStore::open(dir).unwrap();
        for i in ids.filter(|i| removed(*i)) {
            s.remove(&ChunkId::of(&chunk(i))).unwrap();
        }
        s
    }

    #[test]
    fn compaction_frees_removed_chunks_and_keeps_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let chunk = |i: u64| -> Vec<u8> { crate::testdata::pseudo_random(100_000, i) };
        // The first pack closed, three chunks in four removed.
        let s = reopened_with_removed(dir.path(), 0..40, chunk, |i| i % 4 != 0);
        let pack1 = s.pack_path(1);
        assert!(pack1.exists());
        let freed = s.compact().unwrap();
        assert!(freed >= 30 * 100_000, "freed {freed}");
        assert!(!pack1.exists(), "the mostly-garbage pack is gone");
        for i in 0..40 {
            let got = s.get(&ChunkId::of(&chunk(i))).unwrap();
            assert_eq!(got, (i % 4 == 0).then(|| chunk(i)), "chunk {i}");
        }
        // Nothing left to reclaim.
        assert_eq!(s.compact().unwrap(), 0);
        drop(s);
        let s = DiskStore::open(dir.path()).unwrap();
        assert_eq!(
            s.ids().unwrap().len(),
            10,
            "the moved chunks were indexed durably"
        );
    }

    /// A read that looked a chunk up just before compaction moved it and deleted its pack
    /// finds it in its new place (it reported an I/O error), and keeps no handle to the
    /// deleted pack.
    #[test]
    fn a_read_racing_compaction_finds_the_chunk_where_it_moved() {
        let dir = tempfile::tempdir().unwrap();
        let chunk = |i: u64| -> Vec<u8> { crate::testdata::pseudo_random(100_000, i) };
        let s = reopened_with_removed(dir.path(), 0..8, chunk, |i| i >= 2);
        // Two reads look chunks up; then compaction moves both and deletes their pack, and
        // one of them is removed.
        let (id, gone) = (ChunkId::of(&chunk(0)), ChunkId::of(&chunk(1)));
        let before = s.locate(&id).unwrap().unwrap();
        let gone_at = s.locate(&gone).unwrap().unwrap();
        assert_eq!((before.pack, gone_at.pack), (1, 1));
        s.compact().unwrap();
        assert!(!s.pack_path(1).exists());
        s.remove(&gone).unwrap();

        let got = s.checked_from(&id, before).unwrap().map(Checked::bytes);
        assert_eq!(
            got.map(|b| ChunkId::of(&b)),
            Some(id),
            "read where it moved"
        );
        assert_eq!(s.len_at(&id, before).unwrap(), Some(100_000));
        assert!(s.checked_from(&gone, gone_at).unwrap().is_none(), "removed");
        assert_eq!(s.len_at(&gone, gone_at).unwrap(), None);
        let kept = s.readers.lock().unwrap();
        assert!(!kept.contains_key(&1), "no handle kept to the deleted pack");
    }

    /// Reads of the very chunks compaction moves, started with it, all get them, and no
    /// handle to a deleted pack outlives them.
    #[test]
    fn reads_during_compaction_all_succeed() {
        let dir = tempfile::tempdir().unwrap();
        let chunk = |i: u64| -> Vec<u8> { crate::testdata::pseudo_random(2_000, i) };
        for round in 0..3u64 {
            let ids: Vec<u64> = (round * 4_000..round * 4_000 + 4_000).collect();
            let s = reopened_with_removed(dir.path(), ids.iter().copied(), chunk, |i| i % 4 != 0);
            // The records compaction moves: this round's, in the pack it deletes.
            let moving: Vec<u64> = ids.iter().copied().filter(|i| i % 4 == 0).collect();
            let done = std::sync::atomic::AtomicBool::new(false);
            let start = std::sync::Barrier::new(4);
            std::thread::scope(|scope| {
                for t in 0..3 {
                    let (s, moving, done, start) = (&s, &moving, &done, &start);
                    scope.spawn(move || {
                        start.wait();
                        let mut k = t;
                        while !done.load(std::sync::atomic::Ordering::Relaxed) {
                            let i = moving[k % moving.len()];
                            let id = ChunkId::of(&chunk(i));
                            let got = s.get(&id).unwrap().map(|b| ChunkId::of(&b));
                            assert_eq!(got, Some(id), "chunk {i}");
                            assert_eq!(s.len_of(&id).unwrap(), Some(2_000), "chunk {i}");
                            k += 7;
                        }
                    });
                }
                start.wait();
                assert!(s.compact().unwrap() > 0, "round {round} reclaimed nothing");
                done.store(true, std::sync::atomic::Ordering::Relaxed);
            });
            let kept = s.readers.lock().unwrap();
            for pack in kept.keys() {
                assert!(
                    s.pack_path(*pack).exists(),
                    "a handle kept to deleted pack {pack}"
                );
            }
        }
    }

    /// A pack closed while its entries still wait for a commit is not taken for garbage by
    /// compaction: it was deleted with every chunk in it.
    #[test]
    fn compaction_keeps_a_pack_whose_entries_wait_for_a_commit() {
        let dir = tempfile::tempdir().unwrap();
        let big = |i: u64| -> Vec<u8> { crate::testdata::pseudo_random(1 << 20, i) };
        let s = DiskStore::open(dir.path()).unwrap();
        // Past PACK_MAX, and no sync: the first pack is closed with its entries buffered.
        let n = (PACK_MAX >> 20) + 2;
        for i in 0..n {
            s.put(&ChunkId::of(&big(i)), &big(i)).unwrap();
        }
        assert!(s.writer().pack > 1);
        s.compact().unwrap();
        for i in 0..n {
            let id = ChunkId::of(&big(i));
            let got = s.get(&id).unwrap().map(|b| ChunkId::of(&b));
            assert_eq!(got, Some(id), "chunk {i}");
        }
    }

    /// Many small chunks stored as a scan stores them (then one sync) leave an index a few
    /// times the size of its entries, not tens of times: ids are random, so each commit
    /// rewrites most of the index's leaves.
    #[test]
    fn many_small_chunks_leave_a_small_index() {
        let dir = tempfile::tempdir().unwrap();
        let n = 60_000u32;
        {
            let s = DiskStore::open(dir.path()).unwrap();
            for i in 0..n {
                let c = i.to_le_bytes();
                s.put(&ChunkId::of(&c), &c).unwrap();
            }
            s.sync().unwrap();
            assert_eq!(s.ids().unwrap().len(), n as usize);
        }
        let index = std::fs::metadata(dir.path().join("index.redb"))
            .unwrap()
            .len();
        // ~48 bytes an entry.
        let entries = u64::from(n) * 48;
        assert!(
            index <= 8 * entries,
            "index {index} bytes for {entries} bytes of entries"
        );
    }

    #[test]
    fn synced_chunks_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let chunks: Vec<Vec<u8>> = (0..20u32).map(|i| i.to_le_bytes().repeat(3000)).collect();
        {
            let s = DiskStore::open(dir.path()).unwrap();
            for c in &chunks {
                s.put(&ChunkId::of(c), c).unwrap();
            }
            s.sync().unwrap();
        }
        let s = DiskStore::open(dir.path()).unwrap();
        assert_eq!(s.ids().unwrap().len(), 20);
        for c in &chunks {
            assert_eq!(s.get(&ChunkId::of(c)).unwrap().as_ref(), Some(c));
        }
    }

    #[test]
    fn concurrent_readers_and_writers_agree() {
        let dir = tempfile::tempdir().unwrap();
        let s = DiskStore::open(dir.path()).unwrap();
        let chunks: Vec<Vec<u8>> = (0..64u32).map(|i| i.to_le_bytes().repeat(1000)).collect();
        std::thread::scope(|scope| {
            for _ in 0..4 {
                scope.spawn(|| {
                    for c in &chunks {
                        let id = ChunkId::of(c);
                        s.put(&id, c).unwrap();
                        assert_eq!(s.get(&id).unwrap().as_ref(), Some(c));
                    }
                });
            }
        });
        s.sync().unwrap();
        assert_eq!(s.ids().unwrap().len(), 64);
    }

    /// A chunk received as a zstd frame is kept as that frame and sent on as it (no
    /// compression on either side), unless the frame is no smaller than the chunk or does not
    /// state the chunk's length (a read sizes its output by it): then it is compressed anew.
    #[test]
    fn a_received_frame_is_kept_and_sent_as_it_is() {
        let dir = tempfile::tempdir().unwrap();
        let s = DiskStore::open(dir.path()).unwrap();
        let text: Vec<u8> = (0..20_000u32)
            .flat_map(|i| format!("line {i}\n").into_bytes())
            .collect();
        let id = ChunkId::of(&text);
        // A frame of another level than the store's own: kept byte for byte.
        let frame = crate::squeeze::compress(&text, 19).unwrap();
        assert_ne!(frame, crate::squeeze::compress(&text, CHUNK_LEVEL).unwrap());
        s.put_framed(&id, &text, &frame).unwrap();
        let packed = s.get_packed(&id).unwrap().unwrap();
        assert_eq!(
            packed,
            Packed {
                zstd: true,
                data: frame.clone(),
                len: text.len()
            }
        );
        assert_eq!(s.get(&id).unwrap().unwrap(), text);

        // A frame that does not state its content size: compressed anew.
        let other: Vec<u8> = text.iter().rev().copied().collect();
        let other_id = ChunkId::of(&other);
        let mut unsized_frame = Vec::new();
        {
            let mut e = zstd::stream::Encoder::new(&mut unsized_frame, 3).unwrap();
            e.include_contentsize(false).unwrap();
            std::io::Write::write_all(&mut e, &other).unwrap();
            e.finish().unwrap();
        }
        assert!(matches!(
            zstd::zstd_safe::get_frame_content_size(&unsized_frame),
            Ok(None)
        ));
        s.put_framed(&other_id, &other, &unsized_frame).unwrap();
        let packed = s.get_packed(&other_id).unwrap().unwrap();
        assert!(packed.zstd && packed.data != unsized_frame);
        assert!(matches!(
            zstd::zstd_safe::get_frame_content_size(&packed.data),
            Ok(Some(n)) if n == other.len() as u64
        ));
        // A frame no smaller than the chunk: kept raw.
        let noise = crate::testdata::pseudo_random(4096, 7);
        let noise_id = ChunkId::of(&noise);
        let big_frame = crate::squeeze::compress(&noise, 3).unwrap();
        assert!(big_frame.len() >= noise.len());
        s.put_framed(&noise_id, &noise, &big_frame).unwrap();
        let packed = s.get_packed(&noise_id).unwrap().unwrap();
        assert_eq!((packed.zstd, &packed.data), (false, &noise));
        // A store that keeps chunks as they are compresses what it sends.
        let mem = MemStore::new();
        mem.put_framed(&id, &text, &frame).unwrap();
        let packed = mem.get_packed(&id).unwrap().unwrap();
        assert!(packed.zstd);
        assert_eq!(
            crate::squeeze::decompress(&packed.data, text.len()).unwrap(),
            text
        );
    }
}
