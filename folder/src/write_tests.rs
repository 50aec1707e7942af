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

/// What the writing needs for the share at `root`, the scan having left `cache`.
fn ctx<'a>(
    root: &'a std::os::fd::OwnedFd,
    store: &'a MemStore,
    session: &'a str,
    cache: &'a ScanCache,
) -> Ctx<'a> {
    Ctx {
        root: root.as_fd(),
        chunks: store,
        params: params(),
        session,
        cache,
        cache_key: None,
    }
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
    let ctx = ctx(&root, &store, &session, &cache);
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
    let ctx = ctx(&root, &store, &session, &cache);
    let (_, stop) = write_tree(&ctx, &one("f", bbbb), &one("f", file(&store, b"cccc")));
    assert!(stop.is_none());
    assert_eq!(std::fs::read(&path).unwrap(), b"cccc");
}

/// A share scanned into `cache` (its chunks stored); the tree the scan saw.
fn scanned(root: &std::os::fd::OwnedFd, store: &MemStore, cache: &mut ScanCache) -> TreeManifest {
    let (entries, _) = scan_root(
        root.as_fd(),
        params(),
        Exclude::default(),
        cache,
        store,
        None,
        &Default::default(),
    )
    .unwrap();
    TreeManifest::from_entries(entries).unwrap()
}

fn bytes(len: usize, seed: u8) -> Vec<u8> {
    chorus_sync::testing::noise(u64::from(seed), len)
}

fn ino(p: &std::path::Path) -> u64 {
    std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(p).unwrap())
}

/// `old` without the paths `gone`, with `to` as `entry`.
fn moved_to(old: &TreeManifest, gone: &[&str], to: &str, entry: Entry) -> TreeManifest {
    let kept = old
        .iter()
        .filter(|(p, _)| !gone.contains(&p.as_str()))
        .map(|(p, e)| (p.clone(), e.clone()));
    TreeManifest::from_entries(kept.chain([(RelPath::new(to).unwrap(), entry)])).unwrap()
}

/// The file at `p` held open, and its inode: while it is held, a file made after it was
/// removed cannot be given the same inode number, so an equal number means the same file.
fn held(p: &std::path::Path) -> (std::fs::File, u64) {
    (std::fs::File::open(p).unwrap(), ino(p))
}

/// A version that removes a file and has its content at another path (an editor's temp file
/// renamed over the file it saves, a file moved to a new directory): the file is renamed
/// there, with the version's mode, not written again; what a removal and a write would
/// check is checked.
#[test]
fn a_file_the_version_moves_is_renamed_not_written_again() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let store = MemStore::new();
    let root = c::open_root(dir.path()).unwrap();
    let content = bytes(300 << 10, 1);
    std::fs::create_dir(dir.path().join("a")).unwrap();
    std::fs::write(dir.path().join("a/save.tmp"), &content).unwrap();
    std::fs::write(dir.path().join("a/doc"), bytes(200 << 10, 2)).unwrap();
    let big = bytes(400 << 10, 7);
    std::fs::write(dir.path().join("a/big"), &big).unwrap();
    let (_tmp, before) = held(&dir.path().join("a/save.tmp"));
    let (_big, moved_ino) = held(&dir.path().join("a/big"));
    let mut cache = ScanCache::new();
    let old = scanned(&root, &store, &mut cache);
    let session = c::random_tag(c::SESSION_LEN);
    let ctx = ctx(&root, &store, &session, &cache);
    // The temp file renamed over the document; `big` moved to a new directory, read-only.
    let m = old
        .get_str("a/save.tmp")
        .unwrap()
        .manifest()
        .unwrap()
        .clone();
    let mb = old.get_str("a/big").unwrap().manifest().unwrap().clone();
    let new = TreeManifest::from_entries([
        (RelPath::new("a").unwrap(), Entry::dir()),
        (RelPath::new("a/doc").unwrap(), Entry::file(m)),
        (RelPath::new("b").unwrap(), Entry::dir()),
        (
            RelPath::new("b/big").unwrap(),
            Entry::File {
                mode: Mode::new(0o444).unwrap(),
                manifest: mb,
            },
        ),
    ])
    .unwrap();
    let (written, stop) = write_tree(&ctx, &old, &new);
    assert!(stop.is_none(), "{stop:?}");
    assert!(written.failed.is_empty(), "{:?}", written.failed);
    assert_eq!(std::fs::read(dir.path().join("a/doc")).unwrap(), content);
    assert_eq!(std::fs::read(dir.path().join("b/big")).unwrap(), big);
    assert_eq!(
        ino(&dir.path().join("a/doc")),
        before,
        "renamed, not written"
    );
    assert_eq!(
        ino(&dir.path().join("b/big")),
        moved_ino,
        "renamed, not written"
    );
    let mode = std::fs::metadata(dir.path().join("b/big"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o444);
    assert!(!dir.path().join("a/save.tmp").exists() && !dir.path().join("a/big").exists());
    let mut paths: Vec<&str> = written.files.stamps().map(|(p, _)| p.as_str()).collect();
    paths.sort_unstable();
    assert_eq!(paths, ["a/doc", "b/big"], "the cache learns both");
    // The next scan agrees with the version.
    let mut next = cache.clone();
    next.absorb(written.files);
    assert_eq!(scanned(&root, &store, &mut next), new);
}

/// A file to be moved that changed since the scan stops the writing as its removal would,
/// and a target changed since the scan is not replaced by the move: the users' bytes stay.
#[test]
fn a_move_checks_both_ends_since_the_scan() {
    let dir = tempfile::tempdir().unwrap();
    let store = MemStore::new();
    let root = c::open_root(dir.path()).unwrap();
    let content = bytes(300 << 10, 3);
    std::fs::write(dir.path().join("x"), &content).unwrap();
    std::fs::write(dir.path().join("y"), bytes(100 << 10, 4)).unwrap();
    let mut cache = ScanCache::new();
    let old = scanned(&root, &store, &mut cache);
    let session = c::random_tag(c::SESSION_LEN);
    let ctx = ctx(&root, &store, &session, &cache);
    let m = old.get_str("x").unwrap().clone();
    let new = one("y", m);
    // The target saved meanwhile: not replaced.
    let saved = bytes(100 << 10, 5);
    std::fs::write(dir.path().join("y"), &saved).unwrap();
    let (_, stop) = write_tree(&ctx, &old, &new);
    assert!(
        matches!(stop, Some(Stop::Changed(ref p)) if p.as_str() == "y"),
        "{stop:?}"
    );
    assert_eq!(std::fs::read(dir.path().join("y")).unwrap(), saved);

    // The file to move saved meanwhile: neither moved nor removed.
    let dir = tempfile::tempdir().unwrap();
    let root = c::open_root(dir.path()).unwrap();
    std::fs::write(dir.path().join("x"), &content).unwrap();
    let mut cache = ScanCache::new();
    let old = scanned(&root, &store, &mut cache);
    let ctx = Ctx {
        root: root.as_fd(),
        cache: &cache,
        ..ctx
    };
    let saved = bytes(300 << 10, 6);
    std::fs::write(dir.path().join("x"), &saved).unwrap();
    let (_, stop) = write_tree(&ctx, &old, &one("y", old.get_str("x").unwrap().clone()));
    assert!(
        matches!(stop, Some(Stop::Changed(ref p)) if p.as_str() == "x"),
        "{stop:?}"
    );
    assert_eq!(std::fs::read(dir.path().join("x")).unwrap(), saved);
    assert!(!dir.path().join("y").exists());
}

/// A file with another name (a hard link) is not moved: a removal and a write leave the other
/// name's inode as it was, so the move must not give it the version's mode.
#[test]
fn a_file_with_another_name_is_written_not_moved() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let store = MemStore::new();
    let root = c::open_root(dir.path()).unwrap();
    let content = bytes(300 << 10, 8);
    std::fs::write(dir.path().join("x"), &content).unwrap();
    std::fs::set_permissions(dir.path().join("x"), std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::hard_link(dir.path().join("x"), dir.path().join("x.link")).unwrap();
    let mut cache = ScanCache::new();
    let old = scanned(&root, &store, &mut cache);
    let session = c::random_tag(c::SESSION_LEN);
    let ctx = ctx(&root, &store, &session, &cache);
    let m = old.get_str("x").unwrap().manifest().unwrap().clone();
    let y = Entry::File {
        mode: Mode::new(0o600).unwrap(),
        manifest: m,
    };
    let new = moved_to(&old, &["x"], "y", y);
    let (_, stop) = write_tree(&ctx, &old, &new);
    assert!(stop.is_none(), "{stop:?}");
    assert_eq!(std::fs::read(dir.path().join("y")).unwrap(), content);
    assert_ne!(ino(&dir.path().join("y")), ino(&dir.path().join("x.link")));
    let mode = |p: &str| {
        std::fs::metadata(dir.path().join(p))
            .unwrap()
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(mode("y"), 0o600);
    assert_eq!(mode("x.link"), 0o644, "the other name keeps its mode");
    assert!(!dir.path().join("x").exists());
}

/// Two removed files with the content a new path has, the first refused as a move (it has
/// another name): the second is moved there, the target not used up by the refusal.
#[test]
fn a_move_refused_leaves_its_target_to_another_file_with_that_content() {
    let dir = tempfile::tempdir().unwrap();
    let store = MemStore::new();
    let root = c::open_root(dir.path()).unwrap();
    let content = bytes(300 << 10, 9);
    // Removals go deepest and last-named first: `z-linked` is tried before `a-plain`.
    std::fs::write(dir.path().join("z-linked"), &content).unwrap();
    std::fs::hard_link(dir.path().join("z-linked"), dir.path().join("keep")).unwrap();
    std::fs::write(dir.path().join("a-plain"), &content).unwrap();
    let (_plain, plain) = held(&dir.path().join("a-plain"));
    let mut cache = ScanCache::new();
    let old = scanned(&root, &store, &mut cache);
    let session = c::random_tag(c::SESSION_LEN);
    let ctx = ctx(&root, &store, &session, &cache);
    let y = old.get_str("a-plain").unwrap().clone();
    let new = moved_to(&old, &["z-linked", "a-plain"], "y", y);
    let (_, stop) = write_tree(&ctx, &old, &new);
    assert!(stop.is_none(), "{stop:?}");
    assert_eq!(std::fs::read(dir.path().join("y")).unwrap(), content);
    assert_eq!(ino(&dir.path().join("y")), plain, "a-plain moved there");
    assert!(!dir.path().join("z-linked").exists() && !dir.path().join("a-plain").exists());
}

/// A version moving a file into a directory that is a symlink here (to outside the share, as
/// a hostile member would arrange): nothing is moved or written through the link; the file
/// ends in a real directory of the share.
#[test]
fn a_move_into_a_directory_that_is_a_link_here_stays_in_the_share() {
    let dir = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    let store = MemStore::new();
    let root = c::open_root(dir.path()).unwrap();
    let content = bytes(300 << 10, 10);
    std::fs::write(dir.path().join("x"), &content).unwrap();
    std::os::unix::fs::symlink(outside.path(), dir.path().join("out")).unwrap();
    let mut cache = ScanCache::new();
    let old = scanned(&root, &store, &mut cache);
    let session = c::random_tag(c::SESSION_LEN);
    let ctx = ctx(&root, &store, &session, &cache);
    let x = old.get_str("x").unwrap().clone();
    let new = TreeManifest::from_entries([
        (RelPath::new("out").unwrap(), Entry::dir()),
        (RelPath::new("out/y").unwrap(), x),
    ])
    .unwrap();
    let (_, stop) = write_tree(&ctx, &old, &new);
    assert!(stop.is_none(), "{stop:?}");
    assert_eq!(
        std::fs::read_dir(outside.path()).unwrap().count(),
        0,
        "nothing written through the link"
    );
    assert!(!dir.path().join("out").is_symlink());
    assert_eq!(std::fs::read(dir.path().join("out/y")).unwrap(), content);
}
