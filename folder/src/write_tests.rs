//! Unit tests of the writer's changed-since-scan check against racy entries: a save within
//! one timestamp tick of the scan, with the same size, leaves the file's stamp as the scan
//! saw it. Staged exactly by telling the cache the scan read other content under the stamp
//! the file has now (which is what such a save looks like), rather than by racing a clock.

use std::os::fd::AsFd;
use std::time::{Duration, SystemTime};

use chorus_chunking::chunker::chunk_bytes;
use chorus_chunking::{ChunkStore, ChunkerParams, Entry, MemStore, Mode, RelPath, TreeManifest};

use crate::cache::{ScanCache, Stamp};
use crate::confined as c;
use crate::scan::{Exclude, scan_root};
use crate::write::{Ctx, Stop, write_tree};

fn params() -> ChunkerParams {
    ChunkerParams::new(256, 1024, 4096).unwrap()
}

fn file(store: &MemStore, bytes: &[u8]) -> Entry {
    let m = chunk_bytes(bytes, params());
    let mut at = 0;
    for ch in m.chunks.iter() {
        store.put(&ch.id, &bytes[at..at + ch.len as usize]).unwrap();
        at += ch.len as usize;
    }
    Entry::File {
        mode: Mode::FILE,
        manifest: m,
    }
}

fn one(path: &str, e: Entry) -> TreeManifest {
    TreeManifest::from_entries([(RelPath::new(path).unwrap(), e)]).unwrap()
}

fn stamp(p: &std::path::Path) -> Stamp {
    Stamp::of_metadata(&std::fs::symlink_metadata(p).unwrap())
}

#[test]
fn a_save_within_the_scans_tick_is_never_taken_as_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let store = MemStore::new();
    let root = c::open_root(dir.path()).unwrap();
    let f = RelPath::new("f").unwrap();
    let path = dir.path().join("f");
    // The user's save, same size as what the scan read; its stamp is what the scan saw.
    std::fs::write(&path, b"bbbb").unwrap();
    let now = stamp(&path);
    let read_at = SystemTime::UNIX_EPOCH + Duration::from_nanos(now.mtime_ns as u64);
    let scanned = file(&store, b"aaaa");
    let peer = one("f", file(&store, b"cccc"));
    let mut cache = ScanCache::new();
    cache.pretend(f.clone(), now, scanned.manifest().unwrap().clone(), read_at);
    let session = c::random_tag(c::SESSION_LEN);
    let ctx = Ctx {
        root: root.as_fd(),
        chunks: &store,
        params: params(),
        session: &session,
        cache: &cache,
        cache_key: None,
    };
    let (_, stop) = write_tree(&ctx, &one("f", scanned.clone()), &peer);
    assert!(
        matches!(stop, Some(Stop::Changed(ref p)) if *p == f),
        "{stop:?}"
    );
    assert_eq!(std::fs::read(&path).unwrap(), b"bbbb", "the save survives");

    // The scan side: the racy entry is read again, never reused.
    let mut scan_cache = cache.clone();
    let (entries, report) = scan_root(
        root.as_fd(),
        params(),
        Exclude::default(),
        &mut scan_cache,
        &store,
        None,
        &Default::default(),
    )
    .unwrap();
    assert_eq!(report.files_read, 1);
    assert_eq!(entries[0].1, file(&store, b"bbbb"));

    // Same stamp, racy, and the content really is what the scan read: the file is written.
    let mut cache = ScanCache::new();
    let bbbb = file(&store, b"bbbb");
    cache.pretend(f.clone(), now, bbbb.manifest().unwrap().clone(), read_at);
    let ctx = Ctx {
        cache: &cache,
        ..ctx
    };
    let (written, stop) = write_tree(&ctx, &one("f", bbbb), &peer);
    assert!(stop.is_none(), "{stop:?}");
    assert_eq!(written.files.len(), 1);
    assert_eq!(std::fs::read(&path).unwrap(), b"cccc");
}

#[test]
fn a_file_read_well_after_its_change_is_trusted_by_its_stamp() {
    // The contrast that makes the racy rule necessary: a trusted stamp is believed.
    let dir = tempfile::tempdir().unwrap();
    let store = MemStore::new();
    let root = c::open_root(dir.path()).unwrap();
    let path = dir.path().join("f");
    std::fs::write(&path, b"bbbb").unwrap();
    let now = stamp(&path);
    let later = SystemTime::UNIX_EPOCH
        + Duration::from_nanos(now.mtime_ns as u64)
        + Duration::from_secs(60);
    let mut cache = ScanCache::new();
    let bbbb = file(&store, b"bbbb");
    cache.pretend(
        RelPath::new("f").unwrap(),
        now,
        bbbb.manifest().unwrap().clone(),
        later,
    );
    let session = c::random_tag(c::SESSION_LEN);
    let ctx = Ctx {
        root: root.as_fd(),
        chunks: &store,
        params: params(),
        session: &session,
        cache: &cache,
        cache_key: None,
    };
    let (_, stop) = write_tree(&ctx, &one("f", bbbb), &one("f", file(&store, b"cccc")));
    assert!(stop.is_none());
    assert_eq!(std::fs::read(&path).unwrap(), b"cccc");
}
