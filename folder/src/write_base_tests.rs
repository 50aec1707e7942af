//! Unit tests of a big file written over one the scan trusts: the chunks the two share come
//! from the old file, the others from the store. Staged with a chunk store that lacks the
//! shared chunks, so a write that took them from anywhere but the old file fails.

use std::os::fd::AsFd;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::time::{Duration, SystemTime};

use chorus_chunking::chunker::chunk_bytes;
use chorus_chunking::{ChunkStore, ChunkerParams, Entry, MemStore, Mode, RelPath, TreeManifest};

use chorus_sync::testing::noise;

use crate::cache::{ScanCache, Stamp};
use crate::confined as c;
use crate::write::{Ctx, Stop, write_tree};

fn params() -> ChunkerParams {
    ChunkerParams::new(4096, 16384, 65536).unwrap()
}

/// The entry of `bytes`; its chunks are put in `store` unless `old` has them too.
fn entry(store: &MemStore, bytes: &[u8], old: Option<&Entry>) -> Entry {
    let m = chunk_bytes(bytes, params());
    let shared = |id| {
        old.and_then(Entry::manifest)
            .is_some_and(|o| o.chunks.iter().any(|c| c.id == id))
    };
    let mut at = 0;
    for ch in m.chunks.iter() {
        if !shared(ch.id) {
            store.put(&ch.id, &bytes[at..at + ch.len as usize]).unwrap();
        }
        at += ch.len as usize;
    }
    Entry::File {
        mode: Mode::FILE,
        manifest: m,
    }
}

fn one(e: Entry) -> TreeManifest {
    TreeManifest::from_entries([(RelPath::new("f").unwrap(), e)]).unwrap()
}

struct Setup {
    dir: tempfile::TempDir,
    store: MemStore,
    cache: ScanCache,
    session: String,
}

impl Setup {
    /// `old` on disk as `f`, read by a scan `read_after` its last change.
    fn new(old: &[u8], read_after: Duration) -> (Setup, Entry) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, old).unwrap();
        Self::with_file(dir, old, read_after)
    }

    /// What is in `dir` as `f`, which a scan read as `old` (other bytes under the same
    /// stamp, when they differ) `read_after` its last change.
    fn with_file(dir: tempfile::TempDir, old: &[u8], read_after: Duration) -> (Setup, Entry) {
        let store = MemStore::new();
        let old_entry = entry(&store, old, None);
        let now = Stamp::of_metadata(&std::fs::symlink_metadata(dir.path().join("f")).unwrap());
        let read_at =
            SystemTime::UNIX_EPOCH + Duration::from_nanos(now.mtime_ns as u64) + read_after;
        let mut cache = ScanCache::new();
        cache.pretend(
            RelPath::new("f").unwrap(),
            now,
            old_entry.manifest().unwrap().clone(),
            read_at,
        );
        let setup = Setup {
            dir,
            // The store starts empty: what the new file shares with the old is not in it.
            store: MemStore::new(),
            cache,
            session: c::random_tag(c::SESSION_LEN),
        };
        (setup, old_entry)
    }

    /// An empty folder, an empty store and a scan cache that knows nothing.
    fn empty() -> Setup {
        Setup {
            dir: tempfile::tempdir().unwrap(),
            store: MemStore::new(),
            cache: ScanCache::new(),
            session: c::random_tag(c::SESSION_LEN),
        }
    }

    fn write(&self, old: &Entry, new: &Entry) -> Option<Stop> {
        self.write_trees(&one(old.clone()), &one(new.clone()))
    }

    fn write_trees(&self, old: &TreeManifest, new: &TreeManifest) -> Option<Stop> {
        let root = c::open_root(self.dir.path()).unwrap();
        let ctx = Ctx {
            root: root.as_fd(),
            chunks: &self.store,
            params: params(),
            session: &self.session,
            cache: &self.cache,
            cache_key: None,
        };
        write_tree(&ctx, old, new).1
    }

    fn read(&self) -> Vec<u8> {
        std::fs::read(self.dir.path().join("f")).unwrap()
    }
}

/// `old` on disk, read by a scan `read_after` its last change, and a version with a line
/// inserted in its middle written over it (the store lacking the chunks the two share): the
/// set-up, the new bytes and how the write ended.
fn write_inserted(old: &[u8], read_after: Duration) -> (Setup, Vec<u8>, Option<Stop>) {
    let (s, old_entry) = Setup::new(old, read_after);
    let new = inserted(old);
    let new_entry = entry(&s.store, &new, Some(&old_entry));
    let stop = s.write(&old_entry, &new_entry);
    (s, new, stop)
}

/// A line inserted in the middle of a file.
fn inserted(old: &[u8]) -> Vec<u8> {
    let mid = old.len() / 2;
    [&old[..mid], b"one line inserted\n", &old[mid..]].concat()
}

#[test]
fn a_big_file_takes_the_chunks_it_shares_with_the_trusted_old_file_from_it() {
    let old = noise(7, 4 << 20);
    let (s, new, stop) = write_inserted(&old, Duration::from_secs(60));
    assert!(
        s.store.len() <= 3,
        "only the chunks around the insertion are stored: {}",
        s.store.len()
    );
    assert!(stop.is_none(), "{stop:?}");
    assert_eq!(s.read(), new);
}

#[test]
fn an_old_file_read_within_its_tick_is_checked_chunk_by_chunk() {
    // The scan read the file in the tick of its last change: its stamp does not vouch for
    // its content, so each chunk taken from it is read and checked against its id.
    // Through the page cache (2 MiB) and past it (4 MiB, `direct::DIRECT_MIN`).
    for size in [2 << 20, 4 << 20] {
        let (s, new, stop) = write_inserted(&noise(8, size), Duration::ZERO);
        assert!(stop.is_none(), "{stop:?}");
        assert_eq!(s.read(), new);
    }
}

#[test]
fn a_save_within_the_scans_tick_is_never_copied_from() {
    // What the scan read was `old`; the user saved other bytes of the same size within the
    // same tick, so the file's stamp is still the one the scan saw. No chunk of the save
    // passes the check, the store lacks them: the write stops and the save stays.
    let old = noise(12, 2 << 20);
    let mut saved = old.clone();
    for b in &mut saved {
        *b = b.wrapping_add(1);
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("f"), &saved).unwrap();
    let (s, old_entry) = Setup::with_file(dir, &old, Duration::ZERO);
    let new = inserted(&old);
    let new_entry = entry(&s.store, &new, Some(&old_entry));
    let stop = s.write(&old_entry, &new_entry);
    assert!(matches!(stop, Some(Stop::Chunks(_))), "{stop:?}");
    assert_eq!(s.read(), saved, "the save stays");

    // With every chunk in the store, the check before the rename finds the save.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("f"), &saved).unwrap();
    let (s, old_entry) = Setup::with_file(dir, &old, Duration::ZERO);
    let new_entry = entry(&s.store, &new, None);
    let stop = s.write(&old_entry, &new_entry);
    assert!(matches!(stop, Some(Stop::Changed(_))), "{stop:?}");
    assert_eq!(s.read(), saved, "the save stays");
}

/// A trusted old file that turns out to hold other bytes, and fewer, than the chunks the scan
/// saw in it under the same stamp: written past the page cache, its copy fails part way, after
/// two of the writer's buffers were handed to the disk, and the file is written again from the
/// store, byte for byte (what the first try handed over lands before the second begins).
#[test]
fn a_trusted_old_file_shorter_than_its_chunks_is_written_again_from_the_store() {
    let old = noise(13, 12 << 20);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("f"), noise(14, 10 << 20)).unwrap();
    let (s, old_entry) = Setup::with_file(dir, &old, Duration::from_secs(60));
    let new = inserted(&old);
    let new_entry = entry(&s.store, &new, None);
    let stop = s.write(&old_entry, &new_entry);
    assert!(stop.is_none(), "{stop:?}");
    assert_eq!(s.read(), new);
}

#[test]
fn an_old_file_changed_since_the_scan_is_never_copied_from() {
    for size in [2 << 20, 4 << 20] {
        changed_since_the_scan(size);
    }
}

fn changed_since_the_scan(size: usize) {
    let old = noise(9, size);
    let (s, old_entry) = Setup::new(&old, Duration::from_secs(60));
    // The user's save, after the scan: same size, other bytes.
    let mut saved = old.clone();
    saved[..4096].fill(b'x');
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(s.dir.path().join("f"))
        .unwrap();
    f.write_all_at(&saved[..4096], 0).unwrap();
    let later = SystemTime::now() + Duration::from_secs(5);
    f.set_times(std::fs::FileTimes::new().set_modified(later))
        .unwrap();
    drop(f);
    let new = inserted(&old);
    let new_entry = entry(&s.store, &new, Some(&old_entry));
    let stop = s.write(&old_entry, &new_entry);
    assert!(stop.is_some(), "the save is not written over");
    assert_eq!(s.read(), saved, "the save stays");
}

#[test]
fn holes_of_the_old_file_stay_holes() {
    // Past the page cache (8 MiB) and through it (2.75 MiB).
    for size in [8 << 20, 11 << 18] {
        holes_stay_holes(size);
    }
}

fn holes_stay_holes(size: usize) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f");
    let mut old = vec![0u8; size];
    old[..1 << 20].copy_from_slice(&noise(10, 1 << 20));
    let n = old.len();
    old[n - (1 << 20)..].copy_from_slice(&noise(11, 1 << 20));
    {
        let f = std::fs::File::create(&path).unwrap();
        f.write_all_at(&old[..1 << 20], 0).unwrap();
        f.write_all_at(&old[n - (1 << 20)..], (n - (1 << 20)) as u64)
            .unwrap();
    }
    let bound = (2 << 20) + (size as u64 - (2 << 20)) / 2;
    assert!(std::fs::metadata(&path).unwrap().blocks() * 512 < bound);
    let (s, old_entry) = Setup::with_file(dir, &old, Duration::from_secs(60));
    let mut new = old.clone();
    new[100..110].copy_from_slice(b"0123456789");
    let new_entry = entry(&s.store, &new, Some(&old_entry));
    assert!(s.write(&old_entry, &new_entry).is_none());
    assert_eq!(s.read(), new);
    let allocated = std::fs::metadata(&path).unwrap().blocks() * 512;
    assert!(allocated < bound, "{allocated} bytes allocated");
}

/// A new file of many chunks is written from the store read ahead of its writes (on a thread
/// of its own): byte for byte, and a chunk the store lacks stops the write with that chunk's
/// error, no file left behind and no thread left waiting.
#[test]
fn a_file_of_many_chunks_is_written_from_chunks_read_ahead() {
    let s = Setup::empty();
    let bytes = noise(11, 4 << 20);
    let new = entry(&s.store, &bytes, None);
    let chunks = new.manifest().unwrap().chunks.len();
    assert!(
        chunks >= 3 * crate::write_files::READ_AHEAD_MIN,
        "{chunks} chunks"
    );
    let empty = TreeManifest::from_entries([]).unwrap();
    let stop = s.write_trees(&empty, &one(new.clone()));
    assert!(stop.is_none(), "{stop:?}");
    assert_eq!(s.read(), bytes);

    // The same file again under another name, one chunk in the middle gone from the store.
    let lost = new.manifest().unwrap().chunks[chunks / 2].id;
    s.store.remove(&lost).unwrap();
    let with_g = TreeManifest::from_entries([
        (RelPath::new("f").unwrap(), new.clone()),
        (RelPath::new("g").unwrap(), new.clone()),
    ])
    .unwrap();
    let stop = s.write_trees(&one(new.clone()), &with_g);
    assert!(
        matches!(stop, Some(Stop::Chunks(chorus_chunking::Error::Missing { id })) if id == lost),
        "{stop:?}"
    );
    assert!(
        !s.dir.path().join("g").exists(),
        "no file is left half written"
    );
    let names: Vec<_> = std::fs::read_dir(s.dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["f"], "no temp file is left either");
}

/// A manifest from a member that lies about its chunks' lengths (each says it is 1 byte; the
/// delta that carries one is refused, so this is a second line of defence): the read-ahead
/// stops at the first chunk whose bytes are longer than that, so what it holds is never sized
/// by the lie, and the file fails alone: nothing is written past what the manifest declares,
/// no temp file is left, and the writing goes on (no stop).
#[test]
fn a_manifest_that_lies_about_lengths_fails_alone() {
    let s = Setup::empty();
    let bytes = noise(12, 2 << 20);
    let honest = entry(&s.store, &bytes, None);
    let chunks = &honest.manifest().unwrap().chunks;
    assert!(
        chunks.len() >= crate::write_files::READ_AHEAD_MIN,
        "{}",
        chunks.len()
    );
    let lying: Vec<chorus_chunking::ChunkRef> = chunks
        .iter()
        .map(|c| chorus_chunking::ChunkRef { id: c.id, len: 1 })
        .collect();
    let lie = Entry::File {
        mode: Mode::FILE,
        manifest: chorus_chunking::FileManifest {
            chunks: lying.into(),
        },
    };
    let stop = s.write_trees(&TreeManifest::from_entries([]).unwrap(), &one(lie));
    assert!(stop.is_none(), "{stop:?}");
    let names: Vec<_> = std::fs::read_dir(s.dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(names.is_empty(), "nothing written: {names:?}");
}
