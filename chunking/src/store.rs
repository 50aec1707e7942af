//! Content-addressed chunk storage.
//!
//! [`ChunkStore`] is what the delta code and the daemon need: has, get (verified), put, sync.
//! [`DiskStore`] keeps one zstd-compressed file per chunk under `xx/<hex id>`, written to a
//! temp file and renamed into place, so a reader never sees a torn chunk and a kill -9 never
//! leaves one; [`ChunkStore::sync`] makes everything put so far durable (file and directory
//! fsyncs), batched so that storing a large file does not pay one fsync per chunk. Every read
//! is checked against the id; a chunk that fails the check is reported as corrupt and removed,
//! so it can be fetched again. [`MemStore`] is the same contract in memory.

use std::collections::{BTreeSet, HashMap};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

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

    /// The chunk's bytes, or an error naming it when absent.
    fn require(&self, id: &ChunkId) -> Result<Vec<u8>, Error> {
        self.get(id)?
            .ok_or_else(|| Error::Invalid(format!("chunk {id} is not in the store")))
    }
}

/// Chunks in memory: for tests, and for tools that need no persistence.
#[derive(Default)]
pub struct MemStore {
    chunks: Mutex<HashMap<ChunkId, Vec<u8>>>,
}

impl MemStore {
    pub fn new() -> Self {
        Self::default()
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
        self.lock().entry(*id).or_insert_with(|| bytes.to_vec());
        Ok(())
    }

    fn sync(&self) -> Result<(), Error> {
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

/// Above this many pending files, [`DiskStore::sync`] flushes the whole filesystem at once.
const SYNCFS_ABOVE: usize = 16;

/// Format byte in front of every stored chunk file.
const RAW: u8 = 0;
const ZSTD: u8 = 1;

/// Chunks on disk, one compressed file each.
pub struct DiskStore {
    root: PathBuf,
    tmp: PathBuf,
    level: i32,
    /// Files renamed into place but not yet fsynced.
    pending: Mutex<BTreeSet<PathBuf>>,
    /// Fan-out directories known to exist (256 at most), so a put does not mkdir each time.
    made_dirs: Mutex<std::collections::HashSet<PathBuf>>,
    counter: AtomicU64,
}

impl DiskStore {
    /// Opens (creating if needed) a store rooted at `root`. Leftover temp files from a crash
    /// are removed.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self, Error> {
        let root = root.into();
        let tmp = root.join("tmp");
        fs::create_dir_all(&tmp).map_err(Error::io(&tmp))?;
        for e in fs::read_dir(&tmp).map_err(Error::io(&tmp))? {
            let p = e.map_err(Error::io(&tmp))?.path();
            let _ = fs::remove_file(&p);
        }
        Ok(DiskStore {
            root,
            tmp,
            level: 3,
            pending: Mutex::new(BTreeSet::new()),
            made_dirs: Mutex::new(std::collections::HashSet::new()),
            counter: AtomicU64::new(0),
        })
    }

    /// The store's directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path_of(&self, id: &ChunkId) -> PathBuf {
        let hex = id.to_string();
        self.root.join(&hex[..2]).join(hex)
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, BTreeSet<PathBuf>> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn decode(id: &ChunkId, stored: &[u8]) -> Option<Vec<u8>> {
        let (&tag, body) = stored.split_first()?;
        let bytes = match tag {
            RAW => body.to_vec(),
            // Chunks are at most 16 MiB (fastcdc's bound); refuse to inflate beyond that.
            ZSTD => zstd::bulk::decompress(body, 16 << 20).ok()?,
            _ => return None,
        };
        (ChunkId::of(&bytes) == *id).then_some(bytes)
    }
}

impl ChunkStore for DiskStore {
    fn contains(&self, id: &ChunkId) -> Result<bool, Error> {
        Ok(self.path_of(id).is_file())
    }

    fn get(&self, id: &ChunkId) -> Result<Option<Vec<u8>>, Error> {
        let path = self.path_of(id);
        let stored = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::Io { path, source: e }),
        };
        match Self::decode(id, &stored) {
            Some(bytes) => Ok(Some(bytes)),
            None => {
                tracing::warn!(chunk = %id, path = %path.display(), "corrupt chunk removed; it will be fetched again");
                let _ = fs::remove_file(&path);
                Err(Error::Corrupt { id: *id })
            }
        }
    }

    fn put(&self, id: &ChunkId, bytes: &[u8]) -> Result<(), Error> {
        let dest = self.path_of(id);
        if dest.is_file() {
            return Ok(());
        }
        let compressed = zstd::bulk::compress(bytes, self.level).map_err(Error::io(&dest))?;
        let (tag, body) = if compressed.len() < bytes.len() {
            (ZSTD, compressed.as_slice())
        } else {
            (RAW, bytes)
        };
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let tmp = self.tmp.join(format!(
            "{}-{}-{n}",
            std::process::id(),
            &id.to_string()[..16]
        ));
        let write = || -> std::io::Result<()> {
            let mut f = fs::File::create(&tmp)?;
            f.write_all(&[tag])?;
            f.write_all(body)?;
            Ok(())
        };
        write().map_err(Error::io(&tmp))?;
        if let Some(dir) = dest.parent() {
            let mut made = self.made_dirs.lock().unwrap_or_else(|e| e.into_inner());
            if !made.contains(dir) {
                fs::create_dir_all(dir).map_err(Error::io(dir))?;
                made.insert(dir.to_path_buf());
            }
        }
        fs::rename(&tmp, &dest).map_err(Error::io(&dest))?;
        self.pending().insert(dest);
        Ok(())
    }

    fn sync(&self) -> Result<(), Error> {
        let files = std::mem::take(&mut *self.pending());
        if files.is_empty() {
            return Ok(());
        }
        if files.len() > SYNCFS_ABOVE {
            // One syncfs(2) flushes every file and directory of the filesystem: far cheaper
            // than thousands of fsyncs after a large scan or transfer.
            let root = fs::File::open(&self.root).map_err(Error::io(&self.root))?;
            // SAFETY: syncfs only reads the descriptor, which `root` keeps open.
            if unsafe { libc::syncfs(std::os::fd::AsRawFd::as_raw_fd(&root)) } != 0 {
                return Err(Error::Io {
                    path: self.root.clone(),
                    source: std::io::Error::last_os_error(),
                });
            }
            return Ok(());
        }
        let mut dirs = BTreeSet::new();
        for f in &files {
            fs::File::open(f)
                .and_then(|f| f.sync_all())
                .map_err(Error::io(f))?;
            if let Some(d) = f.parent() {
                dirs.insert(d.to_path_buf());
            }
        }
        dirs.insert(self.root.clone());
        for d in dirs {
            fs::File::open(&d)
                .and_then(|f| f.sync_all())
                .map_err(Error::io(&d))?;
        }
        Ok(())
    }

    fn remove(&self, id: &ChunkId) -> Result<(), Error> {
        let path = self.path_of(id);
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::Io { path, source: e }),
        }
    }

    fn ids(&self) -> Result<Vec<ChunkId>, Error> {
        let mut out = Vec::new();
        for dir in fs::read_dir(&self.root).map_err(Error::io(&self.root))? {
            let dir = dir.map_err(Error::io(&self.root))?.path();
            if dir == self.tmp || !dir.is_dir() {
                continue;
            }
            for f in fs::read_dir(&dir).map_err(Error::io(&dir))? {
                let name = f.map_err(Error::io(&dir))?.file_name();
                if let Some(id) = name.to_str().and_then(|s| s.parse().ok()) {
                    out.push(id);
                }
            }
        }
        Ok(out)
    }
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
            }
            s.sync().unwrap();
            assert_eq!(s.ids().unwrap().len(), 3);
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
    fn a_damaged_file_on_disk_is_detected() {
        let dir = tempfile::tempdir().unwrap();
        let s = DiskStore::open(dir.path()).unwrap();
        let bytes = vec![7u8; 10_000];
        let id = ChunkId::of(&bytes);
        s.put(&id, &bytes).unwrap();
        let path = s.path_of(&id);
        let mut stored = fs::read(&path).unwrap();
        let last = stored.len() - 1;
        stored[last] ^= 0xff;
        fs::write(&path, &stored).unwrap();
        assert!(matches!(s.get(&id), Err(Error::Corrupt { .. })));
        fs::write(&path, []).unwrap();
        assert!(matches!(s.get(&id), Err(Error::Corrupt { .. })));
    }

    #[test]
    fn leftover_temp_files_are_cleared_on_open() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("tmp")).unwrap();
        fs::write(dir.path().join("tmp/123-torn"), b"half a chunk").unwrap();
        let s = DiskStore::open(dir.path()).unwrap();
        assert_eq!(fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0);
        assert!(s.ids().unwrap().is_empty());
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
}
