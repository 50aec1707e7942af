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
    let _w = watch(&Share::Folder(share.clone()), &s.state(), move |c| {
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
