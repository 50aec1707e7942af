//! The watcher hears changes, not looks: a scan opens and lists every directory and reads
//! files, and none of that may come back as a change (it did, and every scan started the next
//! one: a share of 100k files kept a core busy while nothing changed). A file written is heard,
//! by its path.

mod common;

use std::sync::mpsc;
use std::time::Duration;

use chorus_folder::Share;
use chorus_folder::watcher::{Change, watch};
use chorus_sync::folder::Folder;
use common::*;

#[test]
fn a_scan_is_not_heard_as_a_change_and_a_write_is() {
    let s = Setup::new();
    let share = std::fs::canonicalize(s.share()).unwrap();
    for d in ["a", "b", "a/c"] {
        std::fs::create_dir(share.join(d)).unwrap();
        std::fs::write(share.join(d).join("f.txt"), d).unwrap();
    }
    let mut folder = s.folder();
    folder.scan().unwrap();
    let (tx, rx) = mpsc::channel();
    let _w = watch(&Share::Folder(share.clone()), &s.state(), move |c, _| {
        let _ = tx.send(c);
    })
    .unwrap();

    // Scans, full and focused, and reading every file.
    for _ in 0..3 {
        folder.scan().unwrap();
        folder
            .scan_paths(&[share.join("a"), share.join("b")])
            .unwrap();
        for d in ["a", "b", "a/c"] {
            std::fs::read(share.join(d).join("f.txt")).unwrap();
        }
    }
    let heard: Vec<Change> = rx
        .recv_timeout(Duration::from_millis(500))
        .into_iter()
        .collect();
    assert!(heard.is_empty(), "looking was heard as a change: {heard:?}");

    std::fs::write(share.join("a/c/new.txt"), "new").unwrap();
    let change = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("a write is heard");
    assert!(
        matches!(&change, Change::Paths(p) if p.contains(&share.join("a/c/new.txt"))),
        "{change:?}"
    );
}

/// The check before a version is written looks at what the watcher heard, not the whole share
/// (a whole scan of 100k files took 0.5 s per incoming change). It trusts what it knows only
/// after a whole scan in this run, scans everything when the watcher could not say what
/// changed, keeps what it could not look at for the next scan, and a save the watcher has not
/// reported yet is still never written over.
#[test]
fn the_check_before_a_write_reads_only_what_the_watcher_heard() {
    use chorus_folder::heard::Heard;
    use chorus_sync::folder::FolderError;

    let s = Setup::new();
    let share = std::fs::canonicalize(s.share()).unwrap();
    std::fs::write(share.join("a.txt"), "a").unwrap();
    std::fs::write(share.join("b.txt"), "b").unwrap();
    let mut folder = s.folder();
    let heard = std::sync::Arc::new(Heard::default());
    folder.hear(heard.clone());

    // No whole scan yet in this run: what it last knew may be old.
    let first = folder.scan_before_write(chorus_chunking::TreeManifest::empty().version_id());
    let t0 = first.unwrap().expect("the first check reads the share");
    assert!(t0.get_str("a.txt").is_some());
    assert_eq!(folder.scan_before_write(t0.version_id()).unwrap(), None);
    let elsewhere = chorus_chunking::TreeManifest::empty().version_id();
    assert_eq!(
        folder.scan_before_write(elsewhere).unwrap().as_ref(),
        Some(&t0),
        "the engine expects another tree: read it all"
    );

    // A change heard: its path is read (and taken).
    std::fs::write(share.join("a.txt"), "a, edited").unwrap();
    heard.add(Change::Paths(vec![share.join("a.txt")]), false);
    let t1 = folder.scan_before_write(t0.version_id()).unwrap().unwrap();
    assert_ne!(t1.get_str("a.txt"), t0.get_str("a.txt"));
    assert_eq!(
        heard.take(),
        Change::Paths(Vec::new()),
        "taken by the check"
    );

    // The watcher could not say what: everything is read.
    std::fs::write(share.join("b.txt"), "b, edited").unwrap();
    heard.add(Change::Unknown, false);
    let t2 = folder.scan_before_write(t1.version_id()).unwrap().unwrap();
    assert_ne!(t2.get_str("b.txt"), t1.get_str("b.txt"));

    // A save not heard yet: the check trusts what it knows, the write still refuses it.
    std::fs::write(share.join("a.txt"), "a, saved just now").unwrap();
    assert_eq!(folder.scan_before_write(t2.version_id()).unwrap(), None);
    let theirs = with(&t2, "a.txt", Some(s.file(b"theirs", 0o644)));
    match folder.write(&t2, &theirs) {
        Err(FolderError::Changed(p)) => assert_eq!(p.as_str(), "a.txt"),
        other => panic!("wrote over an unscanned save: {other:?}"),
    }
    assert_eq!(
        std::fs::read(share.join("a.txt")).unwrap(),
        b"a, saved just now"
    );

    // The share cannot be read: what was heard waits for the next scan.
    std::fs::remove_file(share.join(chorus_folder::marker::MARKER)).unwrap();
    heard.add(Change::Paths(vec![share.join("b.txt")]), false);
    assert!(matches!(
        folder.scan_before_write(t2.version_id()),
        Err(FolderError::Unavailable(_))
    ));
    assert_eq!(heard.take(), Change::Paths(vec![share.join("b.txt")]));
}
