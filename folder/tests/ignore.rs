//! An ignore rule stops syncing a path; it deletes it nowhere (issue 17): a file that becomes
//! ignored keeps, in what the scan reports, what was last known of it (so peers keep theirs),
//! and a version never writes, creates or removes an ignored path here.

mod common;

use chorus_sync::folder::Folder;
use common::*;

#[test]
fn a_path_that_becomes_ignored_is_not_reported_deleted_nor_ever_written() {
    let s = Setup::new();
    let mut f = s.folder();
    std::fs::write(s.share().join("secret.env"), b"KEY=1\n").unwrap();
    std::fs::create_dir(s.share().join("build")).unwrap();
    std::fs::write(s.share().join("build/out.o"), b"object\n").unwrap();
    std::fs::write(s.share().join("notes.txt"), b"notes\n").unwrap();
    let v1 = f.scan().unwrap();
    assert!(v1.get_str("secret.env").is_some() && v1.get_str("build/out.o").is_some());

    // The user ignores them, then deletes the secret locally.
    std::fs::write(s.share().join(".chorusignore"), b"secret.env\nbuild/\n").unwrap();
    std::fs::remove_file(s.share().join("secret.env")).unwrap();
    let v2 = f.scan().unwrap();
    assert_eq!(
        v2.get_str("secret.env"),
        v1.get_str("secret.env"),
        "no deletion travels for a path that became ignored"
    );
    assert_eq!(v2.get_str("build/out.o"), v1.get_str("build/out.o"));
    assert!(f.is_ignored(&chorus_chunking::RelPath::new("build/new.o").unwrap()));
    assert!(f.is_ignored(&chorus_chunking::RelPath::new("secret.env").unwrap()));
    assert!(!f.is_ignored(&chorus_chunking::RelPath::new("notes.txt").unwrap()));

    // A version from a peer that changes or removes ignored paths writes none of it.
    let v3 = with(&v2, "secret.env", Some(s.file(b"KEY=2\n", 0o600)));
    let v3 = with(&v3, "build/out.o", None);
    let v3 = with(&v3, "notes.txt", Some(s.file(b"new notes\n", 0o644)));
    let report = f.write(&v2, &v3).unwrap();
    assert!(report.failed.is_empty(), "{report:?}");
    assert!(!s.share().join("secret.env").exists(), "not recreated");
    assert_eq!(
        std::fs::read(s.share().join("build/out.o")).unwrap(),
        b"object\n",
        "not removed"
    );
    assert_eq!(
        std::fs::read(s.share().join("notes.txt")).unwrap(),
        b"new notes\n"
    );
}
