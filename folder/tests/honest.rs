//! What the folder says is what it knows (issue 13, points 2, 3, 7, 9; issue 17's sparse
//! files): permissions round trip, unreadable subtrees are never deletions, an unmounted share
//! is unavailable, a document share keeps its document, the state dir is never synced, and
//! sparse files stay sparse.

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};

use chorus_sync::folder::{Folder, FolderError};
use common::*;

#[test]
fn permission_bits_round_trip_whatever_the_umask() {
    let s = Setup::new();
    let mut a = s.folder();
    // Made on "another machine": a private file, a private directory, an executable, a
    // read-only directory (written into before it is closed), a file nobody may read.
    let v1 = tree(vec![
        (".env", s.file(b"KEY=secret\n", 0o600)),
        ("keys", dir(0o700)),
        ("keys/id", s.file(b"id\n", 0o600)),
        ("run.sh", s.file(b"#!/bin/sh\n", 0o755)),
        ("ro", dir(0o555)),
        ("ro/fixed", s.file(b"fixed\n", 0o444)),
        ("locked", s.file(b"locked\n", 0o000)),
        ("group", s.file(b"g\n", 0o640)),
    ]);
    // SAFETY: umask has no preconditions; a permissive umask must not widen anything.
    let before = unsafe { libc::umask(0o000) };
    let report = scan_write(&mut a, &v1);
    unsafe { libc::umask(before) };
    assert!(report.unwrap().failed.is_empty());
    for (p, m) in [
        (".env", 0o600),
        ("keys", 0o700),
        ("keys/id", 0o600),
        ("run.sh", 0o755),
        ("ro", 0o555),
        ("ro/fixed", 0o444),
        ("locked", 0o000),
        ("group", 0o640),
    ] {
        assert_eq!(mode_of(&s.share().join(p)), m, "{p}");
    }
    assert_eq!(a.scan().unwrap(), v1, "the scan reads the same bits back");
    // A chmod here is a change of the tree, and a changed mode from a peer is applied.
    std::fs::set_permissions(
        s.share().join("group"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    let scanned = a.scan().unwrap();
    assert_eq!(
        scanned
            .get_str("group")
            .and_then(|e| e.mode())
            .map(|m| m.bits()),
        Some(0o600)
    );
    let v2 = with(&scanned, "keys", Some(dir(0o750)));
    let v2 = with(&v2, "run.sh", Some(s.file(b"#!/bin/sh\n", 0o700)));
    assert!(a.write(&scanned, &v2).unwrap().failed.is_empty());
    assert_eq!(mode_of(&s.share().join("keys")), 0o750);
    assert_eq!(mode_of(&s.share().join("run.sh")), 0o700);
    assert_eq!(a.scan().unwrap(), v2);
    // A strict umask takes nothing away either (files are made with their bits, less the
    // umask's, and given the rest after).
    let v3 = with(&v2, "shared", Some(s.file(b"for all\n", 0o666)));
    let v3 = with(&v3, "tool", Some(s.file(b"#!/bin/sh\n", 0o775)));
    let v3 = with(&v3, "ro/also", Some(s.file(b"x\n", 0o444)));
    std::fs::set_permissions(s.share().join("ro"), std::fs::Permissions::from_mode(0o755)).unwrap();
    let v2 = a.scan().unwrap();
    let v3 = with(&v3, "ro", Some(dir(0o755)));
    // SAFETY: as above.
    let before = unsafe { libc::umask(0o077) };
    let report = a.write(&v2, &v3);
    unsafe { libc::umask(before) };
    assert!(report.unwrap().failed.is_empty());
    for (p, m) in [("shared", 0o666), ("tool", 0o775), ("ro/also", 0o444)] {
        assert_eq!(mode_of(&s.share().join(p)), m, "{p}");
    }
    assert_eq!(a.scan().unwrap(), v3);
}

#[test]
fn the_state_dir_and_its_databases_are_private() {
    // The chunk store's own directory and packs; the redb files are made the same way.
    let top = tempfile::tempdir().unwrap();
    // SAFETY: as above.
    let before = unsafe { libc::umask(0o000) };
    let store = chorus_chunking::DiskStore::open(top.path().join("state/chunks"));
    unsafe { libc::umask(before) };
    let store = store.unwrap();
    use chorus_chunking::ChunkStore;
    store
        .put(&chorus_chunking::ChunkId::of(b"x"), b"x")
        .unwrap();
    store.sync().unwrap();
    assert_eq!(mode_of(&top.path().join("state/chunks")), 0o700);
    assert_eq!(mode_of(&top.path().join("state/chunks/packs")), 0o700);
    assert_eq!(mode_of(&top.path().join("state/chunks/index.redb")), 0o600);
    for e in std::fs::read_dir(top.path().join("state/chunks/packs")).unwrap() {
        assert_eq!(mode_of(&e.unwrap().path()), 0o600);
    }
    // The sync engine's database.
    let before = unsafe { libc::umask(0o000) };
    let db = chorus_sync::SyncStore::open(&top.path().join("state/sync.redb"));
    unsafe { libc::umask(before) };
    drop(db.unwrap());
    assert_eq!(mode_of(&top.path().join("state/sync.redb")), 0o600);
    // The folder's own state.
    let s = Setup::new();
    let _f = s.folder();
    assert_eq!(mode_of(&s.state().join("folder")), 0o700);
    assert_eq!(mode_of(&s.state().join("folder/state.json")), 0o600);
}

/// Sparse files stay sparse: all-zero chunks are written as holes.
#[test]
fn sparse_files_are_written_sparse() {
    let s = Setup::new();
    let mut f = s.folder();
    let mut bytes = vec![0u8; 8 << 20];
    bytes[..5].copy_from_slice(b"start");
    let n = bytes.len();
    bytes[n / 2..n / 2 + 6].copy_from_slice(b"middle");
    let v1 = tree(vec![
        ("disk.img", s.file(&bytes, 0o644)),
        ("zeros", s.file(&vec![0u8; 1 << 20], 0o644)),
    ]);
    assert!(scan_write(&mut f, &v1).unwrap().failed.is_empty());
    for (p, want) in [("disk.img", &bytes), ("zeros", &vec![0u8; 1 << 20])] {
        let path = s.share().join(p);
        assert_eq!(&std::fs::read(&path).unwrap(), want, "{p}");
        let md = std::fs::metadata(&path).unwrap();
        let allocated = md.blocks() * 512;
        assert!(
            allocated < md.len() / 8,
            "{p}: {allocated} bytes allocated for {}",
            md.len()
        );
    }
    assert_eq!(f.scan().unwrap(), v1);
}

/// An unreadable file or directory keeps what the folder knew there; one unreadable file
/// never fails the scan. Runs as an unprivileged user (as nobody when this is root, since
/// chmod 000 does not stop root).
#[test]
fn unreadable_content_is_never_a_deletion() {
    as_unprivileged("unreadable_content_is_never_a_deletion", || {
        let s = Setup::new();
        let mut f = s.folder();
        let v1 = tree(vec![
            ("a.txt", s.file(b"a\n", 0o644)),
            ("private", dir(0o755)),
            ("private/x", s.file(b"x\n", 0o644)),
            ("private/sub", dir(0o755)),
            ("private/sub/y", s.file(b"y\n", 0o644)),
            ("secret.txt", s.file(b"s\n", 0o644)),
        ]);
        scan_write(&mut f, &v1).unwrap();
        assert_eq!(f.scan().unwrap(), v1);
        // Written since the last scan, then made unreadable: the scan cannot read it.
        std::fs::write(s.share().join("secret.txt"), b"changed\n").unwrap();
        let chmod = |p: &str, m: u32| {
            std::fs::set_permissions(s.share().join(p), std::fs::Permissions::from_mode(m)).unwrap()
        };
        chmod("secret.txt", 0o000);
        chmod("private", 0o000);
        std::fs::write(s.share().join("b.txt"), b"new\n").unwrap();
        let t = f.scan().unwrap();
        for p in ["private/x", "private/sub", "private/sub/y", "secret.txt"] {
            assert_eq!(t.get_str(p), v1.get_str(p), "{p} is kept as it was known");
        }
        assert_eq!(
            t.get_str("private")
                .and_then(|e| e.mode())
                .map(|m| m.bits()),
            Some(0)
        );
        assert!(t.get_str("b.txt").is_some(), "the rest of the scan goes on");
        let unknown: Vec<&str> = f
            .last_report()
            .unknown
            .iter()
            .map(|(p, _)| p.as_str())
            .collect();
        assert_eq!(unknown.len(), 2, "{unknown:?}");
        // After a restart too: the folder remembers what it knew.
        drop(f);
        let mut f = s.folder();
        let t2 = f.scan().unwrap();
        assert_eq!(t2.get_str("private/sub/y"), v1.get_str("private/sub/y"));
        assert_eq!(t2.get_str("secret.txt"), v1.get_str("secret.txt"));
        chmod("private", 0o755);
        chmod("secret.txt", 0o644);
        let t3 = f.scan().unwrap();
        assert_eq!(t3.get_str("secret.txt"), Some(&s.file(b"changed\n", 0o644)));
    });
}

/// A share whose disk is not mounted (its marker gone, or its folder empty or missing) is
/// unavailable: nothing is scanned as deleted, nothing written.
#[test]
fn a_share_without_its_marker_is_unavailable() {
    let s = Setup::new();
    let mut f = s.folder();
    let v1 = tree(vec![("a", s.file(b"a\n", 0o644))]);
    scan_write(&mut f, &v1).unwrap();
    // The disk is "unmounted": what remains is an empty mount point.
    std::fs::remove_file(s.share().join("a")).unwrap();
    std::fs::remove_file(s.share().join(".chorus-share")).unwrap();
    let e = f.scan().unwrap_err();
    let FolderError::Unavailable(why) = &e else {
        panic!("{e:?}")
    };
    assert!(why.contains("mount") && why.contains("touch"), "{why}");
    assert!(matches!(
        f.write(&v1, &tree(vec![])),
        Err(FolderError::Unavailable(_))
    ));
    // The folder is gone altogether.
    std::fs::remove_dir(s.share()).unwrap();
    assert!(matches!(f.scan(), Err(FolderError::Unavailable(_))));
    // Back, with its marker: scanned again.
    std::fs::create_dir(s.share()).unwrap();
    chorus_folder::marker::create(&s.share()).unwrap();
    assert!(f.scan().unwrap().is_empty());
}

/// A share from before markers gets one on its first scan, unless its folder is empty.
#[test]
fn an_older_share_gets_its_marker_unless_empty() {
    let s = Setup::new();
    std::fs::remove_file(s.share().join(".chorus-share")).unwrap();
    let mut f = s.folder();
    assert!(
        matches!(f.scan(), Err(FolderError::Unavailable(_))),
        "empty: asked"
    );
    std::fs::write(s.share().join("a"), b"a\n").unwrap();
    assert_eq!(f.scan().unwrap().len(), 1);
    assert!(s.share().join(".chorus-share").is_file());
}

/// A document share never writes a version's document that is not a regular file over the
/// user's file; a missing document is a deletion only if its directory is there.
#[test]
fn a_document_share_keeps_its_document() {
    let s = Setup::new();
    let doc = s.share().join("notes.md");
    std::fs::write(&doc, b"mine\n").unwrap();
    let mut f = chorus_folder::DiskFolder::new(
        chorus_folder::Share::Document(doc.clone()),
        &s.state(),
        s.store.clone(),
        params(),
    )
    .unwrap();
    let t = f.scan().unwrap();
    assert_eq!(t, tree(vec![("document", s.file(b"mine\n", 0o644))]));
    for bad in [
        tree(vec![
            ("document", dir(0o755)),
            ("document/x", s.file(b"x\n", 0o644)),
        ]),
        tree(vec![("document", link("/etc/passwd"))]),
    ] {
        let report = f.write(&t, &bad).unwrap();
        assert_eq!(report.failed.len(), 1, "{report:?}");
        assert!(
            report.failed[0].reason.contains("not a file"),
            "{}",
            report.failed[0].reason
        );
        assert_eq!(std::fs::read(&doc).unwrap(), b"mine\n");
        assert!(std::fs::symlink_metadata(&doc).unwrap().is_file());
    }
    // A good version is written, under this machine's name for the document.
    let good = tree(vec![
        ("document", s.file(b"theirs\n", 0o600)),
        ("stray", s.file(b"no\n", 0o644)),
    ]);
    let t = f.scan().unwrap();
    assert!(f.write(&t, &good).unwrap().failed.is_empty());
    assert_eq!(std::fs::read(&doc).unwrap(), b"theirs\n");
    assert_eq!(mode_of(&doc), 0o600);
    assert!(!s.share().join("stray").exists() && !s.share().join("document").exists());
    // The document deleted: a deletion. Its directory gone: unavailable, not a deletion.
    std::fs::remove_file(&doc).unwrap();
    assert!(f.scan().unwrap().is_empty());
    std::fs::write(&doc, b"back\n").unwrap();
    f.scan().unwrap();
    let moved = s.top.path().join("moved");
    std::fs::rename(s.share(), &moved).unwrap();
    assert!(matches!(f.scan(), Err(FolderError::Unavailable(_))));
}

/// A state dir placed inside the share under another name is neither scanned nor written.
#[test]
fn a_state_dir_inside_the_share_under_another_name_is_never_synced() {
    let s = Setup::new();
    let state = s.share().join("mystate");
    std::fs::create_dir(&state).unwrap();
    std::fs::write(state.join("config.toml"), b"secret = \"x\"\n").unwrap();
    let mut f = chorus_folder::DiskFolder::new(
        chorus_folder::Share::Folder(s.share()),
        &state,
        s.store.clone(),
        params(),
    )
    .unwrap();
    std::fs::write(s.share().join("a"), b"a\n").unwrap();
    let t = f.scan().unwrap();
    let paths: Vec<&str> = t.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(paths, ["a"]);
    // A peer whose share has a folder of that name: it is not written over the state.
    let peer = with(&t, "mystate", Some(dir(0o755)));
    let peer = with(&peer, "mystate/config.toml", Some(s.file(b"evil\n", 0o644)));
    let report = f.write(&t, &peer).unwrap();
    assert_eq!(report.failed.len(), 2, "{report:?}");
    assert_eq!(
        std::fs::read(state.join("config.toml")).unwrap(),
        b"secret = \"x\"\n"
    );
    assert_eq!(f.scan().unwrap(), peer, "and the refusal does not travel");
}

/// Among many files read on several threads, the ones that cannot be read keep what the
/// folder knew of them, wherever they fall; the others are read as they are now.
#[test]
fn among_many_files_the_unreadable_ones_keep_what_was_known() {
    as_unprivileged(
        "among_many_files_the_unreadable_ones_keep_what_was_known",
        || {
            let s = Setup::new();
            let mut f = s.folder();
            let names: Vec<String> = (0..900)
                .map(|i| format!("d{}/f{i:04}.txt", i % 3))
                .collect();
            let mut entries: Vec<(&str, chorus_chunking::Entry)> =
                ["d0", "d1", "d2"].map(|d| (d, dir(0o755))).into();
            for p in &names {
                entries.push((p.as_str(), s.file(format!("{p} v1\n").as_bytes(), 0o644)));
            }
            let v1 = tree(entries);
            scan_write(&mut f, &v1).unwrap();
            assert_eq!(f.scan().unwrap(), v1);
            // Every file changed; every 97th then made unreadable.
            let unreadable: Vec<&String> = names.iter().skip(5).step_by(97).collect();
            for p in &names {
                std::fs::write(s.share().join(p), format!("{p} v2\n")).unwrap();
            }
            for p in &unreadable {
                std::fs::set_permissions(s.share().join(p), std::fs::Permissions::from_mode(0o000))
                    .unwrap();
            }
            let t = f.scan().unwrap();
            for p in &names {
                let want = if unreadable.contains(&p) {
                    v1.get_str(p).cloned()
                } else {
                    Some(s.file(format!("{p} v2\n").as_bytes(), 0o644))
                };
                assert_eq!(t.get_str(p), want.as_ref(), "{p}");
            }
            let mut unknown: Vec<&str> = f
                .last_report()
                .unknown
                .iter()
                .map(|(p, _)| p.as_str())
                .collect();
            unknown.sort();
            let mut want: Vec<&str> = unreadable.iter().map(|p| p.as_str()).collect();
            want.sort();
            assert_eq!(unknown, want);
            for p in &unreadable {
                std::fs::set_permissions(s.share().join(p), std::fs::Permissions::from_mode(0o644))
                    .unwrap();
            }
        },
    );
}

#[test]
fn a_file_dated_past_2262_is_still_seen_to_change() {
    use std::time::{Duration, SystemTime};
    // A stamp keeps nanoseconds in an i64, so both dates below are held at its end and look
    // alike; the size and inode stay too. Only the ctime, or reading the file again, can tell.
    let s = Setup::new();
    let mut a = s.folder();
    let p = s.share().join("far.txt");
    let write_dated = |bytes: &[u8], years: u64| {
        std::fs::write(&p, bytes).unwrap();
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(years * 365 * 86_400);
        std::fs::File::options()
            .write(true)
            .open(&p)
            .unwrap()
            .set_times(std::fs::FileTimes::new().set_modified(at))
            .unwrap();
    };
    write_dated(b"first\n", 400);
    let v1 = a.scan().unwrap();
    let mode = mode_of(&p);
    assert_eq!(v1, tree(vec![("far.txt", s.file(b"first\n", mode))]));
    write_dated(b"other\n", 450);
    let v2 = a.scan().unwrap();
    assert_eq!(v2, tree(vec![("far.txt", s.file(b"other\n", mode))]));
}
