//! Writing is confined to the share whatever a peer or a local program put there (issue 14,
//! hole 1): no symlink is ever followed, temp files are exclusive, nothing is written,
//! replaced or removed outside the share.

mod common;

use std::os::unix::fs::symlink;

use chorus_sync::folder::Folder;
use common::*;

/// The attack of issue 14: a version holding a symlink named like a temp file of the old
/// naming, next to a file it writes, made the materializer write through the link.
#[test]
fn a_symlink_named_like_a_temp_file_is_never_written_through() {
    let s = Setup::new();
    let victim = s.outside().join("authorized_keys");
    std::fs::write(&victim, b"ssh-ed25519 mine\n").unwrap();
    let mut f = s.folder();
    let target = victim.to_str().unwrap();
    // The old naming, and names shaped like this run's (any session) temp names.
    let v1 = tree(vec![
        (".x.chorus-tmp", link(target)),
        (".chorus-aaaaaaaaaaaaaaaa", link(target)),
        (".chorus-", link(target)),
        ("x", s.file(b"ssh-ed25519 attacker\n", 0o644)),
    ]);
    let report = scan_write(&mut f, &v1).unwrap();
    assert!(report.failed.is_empty(), "{report:?}");
    assert_eq!(std::fs::read(&victim).unwrap(), b"ssh-ed25519 mine\n");
    // The links are links, the file a file of the share.
    assert!(
        s.share()
            .join(".x.chorus-tmp")
            .symlink_metadata()
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert_eq!(
        std::fs::read(s.share().join("x")).unwrap(),
        b"ssh-ed25519 attacker\n"
    );
    // Changing x again, with the links in place, still writes only x.
    let v2 = with(&v1, "x", Some(s.file(b"changed\n", 0o600)));
    assert!(f.write(&v1, &v2).unwrap().failed.is_empty());
    assert_eq!(std::fs::read(&victim).unwrap(), b"ssh-ed25519 mine\n");
    assert_eq!(
        mode_of(&victim) & 0o777,
        0o644,
        "the victim's mode untouched"
    );
    // And the scan takes the peer's temp-named links as the ordinary entries they are.
    let back = f.scan().unwrap();
    assert_eq!(back, v2);
}

/// A local program replaces a directory with a symlink out of the share between the scan
/// and the write: nothing is written through it; the paths below are reported.
#[test]
fn a_directory_swapped_for_a_symlink_after_the_scan_is_not_followed() {
    let s = Setup::new();
    let outside = s.outside();
    std::fs::write(outside.join("f"), b"outside\n").unwrap();
    let mut f = s.folder();
    let v1 = tree(vec![("d", dir(0o755)), ("d/f", s.file(b"inside\n", 0o644))]);
    scan_write(&mut f, &v1).unwrap();
    let scanned = f.scan().unwrap();
    assert_eq!(scanned, v1);
    // Swap d for a link to the outside directory.
    std::fs::rename(s.share().join("d"), s.top.path().join("moved")).unwrap();
    symlink(&outside, s.share().join("d")).unwrap();
    let v2 = with(
        &with(&v1, "d/f", Some(s.file(b"peer\n", 0o644))),
        "d/g",
        Some(s.file(b"new\n", 0o644)),
    );
    let report = f.write(&scanned, &v2).unwrap();
    let failed: Vec<&str> = report.failed.iter().map(|p| p.path.as_str()).collect();
    assert_eq!(failed, ["d/f", "d/g"], "{report:?}");
    assert!(
        report.failed[0].reason.contains("symlink"),
        "{}",
        report.failed[0].reason
    );
    assert_eq!(std::fs::read(outside.join("f")).unwrap(), b"outside\n");
    assert!(!outside.join("g").exists());
    // A version that removes d/f removes nothing outside either.
    let v3 = with(&v1, "d/f", None);
    f.write(&v2, &v3).unwrap();
    assert_eq!(std::fs::read(outside.join("f")).unwrap(), b"outside\n");
}

/// Links with absolute and `..` targets are written as links, never followed, and a version
/// that turns such a link into a directory removes the link, not its target.
#[test]
fn absolute_and_parent_link_targets_stay_links() {
    let s = Setup::new();
    let outside = s.outside();
    std::fs::write(outside.join("secret"), b"keep\n").unwrap();
    let mut f = s.folder();
    let v1 = tree(vec![
        ("abs", link(outside.to_str().unwrap())),
        ("up", link("../outside")),
        ("deep", link("../../../../../../../../etc")),
    ]);
    assert!(scan_write(&mut f, &v1).unwrap().failed.is_empty());
    assert_eq!(f.scan().unwrap(), v1);
    // abs and up become directories with files in them.
    let v2 = tree(vec![
        ("abs", dir(0o755)),
        ("abs/secret", s.file(b"overwritten\n", 0o644)),
        ("up", dir(0o755)),
        ("up/secret", s.file(b"overwritten\n", 0o644)),
        ("deep", link("../../../../../../../../etc")),
    ]);
    let report = f.write(&v1, &v2).unwrap();
    assert!(report.failed.is_empty(), "{report:?}");
    assert_eq!(std::fs::read(outside.join("secret")).unwrap(), b"keep\n");
    assert!(s.share().join("abs").symlink_metadata().unwrap().is_dir());
    assert_eq!(
        std::fs::read(s.share().join("up/secret")).unwrap(),
        b"overwritten\n"
    );
    // A local link planted where the version has a directory is reported, not entered.
    std::fs::remove_dir_all(s.share().join("up")).unwrap();
    symlink(&outside, s.share().join("up")).unwrap();
    let scanned = f.scan().unwrap();
    let v3 = with(&scanned, "up", Some(dir(0o755)));
    let v3 = with(&v3, "up/new", Some(s.file(b"x\n", 0o644)));
    let report = f.write(&scanned, &v3);
    // The link changed since the scan? No: the scan saw it; the version replaces it.
    let report = report.unwrap();
    assert!(report.failed.is_empty(), "{report:?}");
    assert!(!outside.join("new").exists());
    assert!(s.share().join("up").symlink_metadata().unwrap().is_dir());
}

/// Temp names are short and fixed-length, so a 252-byte name (legal) is written; a 300-byte
/// component from a peer fails alone.
#[test]
fn long_names_fit_and_too_long_names_fail_alone() {
    let s = Setup::new();
    let mut f = s.folder();
    let long = "長".repeat(84); // 252 bytes
    assert_eq!(long.len(), 252);
    let too_long = "x".repeat(300);
    let v1 = tree(vec![
        ("a.txt", s.file(b"a\n", 0o644)),
        (long.as_str(), s.file(b"long name\n", 0o644)),
        (too_long.as_str(), s.file(b"never\n", 0o644)),
        ("z", dir(0o755)),
        ("z/after.txt", s.file(b"z\n", 0o644)),
    ]);
    let report = scan_write(&mut f, &v1).unwrap();
    assert_eq!(report.failed.len(), 1, "{report:?}");
    assert_eq!(report.failed[0].path.as_str(), too_long);
    assert!(
        report.failed[0].reason.contains("name is longer"),
        "{}",
        report.failed[0].reason
    );
    assert_eq!(
        std::fs::read(s.share().join(&long)).unwrap(),
        b"long name\n"
    );
    assert_eq!(
        std::fs::read(s.share().join("z/after.txt")).unwrap(),
        b"z\n"
    );
    // The next scan reports the version there: the failure does not travel as a deletion;
    // nor after a restart, which remembers it.
    assert_eq!(f.scan().unwrap(), v1);
    drop(f);
    let mut f = s.folder();
    assert_eq!(f.scan().unwrap(), v1);
    assert_eq!(f.failed().len(), 1);
    // A directory component over 255 bytes: the directory and everything below it fail,
    // the rest is written.
    let long_dir = format!("{}/inner/f", "d".repeat(300));
    let v2 = with(&v1, &long_dir, Some(s.file(b"deep\n", 0o644)));
    let v2 = with(&v2, "z/after2.txt", Some(s.file(b"z2\n", 0o644)));
    let report = f.write(&v1, &v2).unwrap();
    let mut failed: Vec<&str> = report.failed.iter().map(|p| p.path.as_str()).collect();
    failed.sort();
    let mut want = vec![long_dir.as_str(), too_long.as_str()];
    want.sort();
    assert_eq!(failed, want, "{report:?}");
    assert_eq!(
        std::fs::read(s.share().join("z/after2.txt")).unwrap(),
        b"z2\n"
    );
    assert_eq!(f.scan().unwrap(), v2);
    // No temp file is left anywhere.
    let names: Vec<String> = std::fs::read_dir(s.share())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        names
            .iter()
            .all(|n| !n.starts_with(".chorus-") || n == ".chorus-share"),
        "{names:?}"
    );
}
