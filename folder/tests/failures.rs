//! A path that cannot be written fails alone (issue 13, point 1): the rest of the version is
//! written, the path is reported with what to do, remembered, retried by the next write, and
//! the next scan reports the version there, so the failure never travels.

mod common;

use std::os::unix::fs::PermissionsExt;

use chorus_sync::folder::Folder;
use common::*;

/// A directory where the version has a file, kept non-empty by an ignored file; and the
/// reverse, a file where the version has a directory.
#[test]
fn kind_clashes_kept_by_unsynced_files_fail_alone_and_are_retried() {
    let s = Setup::new();
    let mut f = s.folder();
    std::fs::write(s.share().join(".chorusignore"), b"*.log\n").unwrap();
    std::fs::create_dir(s.share().join("out")).unwrap();
    std::fs::write(s.share().join("out/build.log"), b"local, ignored\n").unwrap();
    let v1 = f.scan().unwrap();
    assert!(v1.get_str("out").is_some_and(|e| e.is_dir()));
    // A peer made `out` a file, and `blocked/x` where this machine has a file `blocked`
    // that changed after the version's base... no: `blocked` is a local file the version
    // does not know, so the directory cannot be made.
    std::fs::write(s.share().join("blocked"), b"mine\n").unwrap();
    let v1 = f.scan().unwrap();
    let v2 = with(&v1, "out", Some(s.file(b"a file now\n", 0o644)));
    let v2 = with(
        &with(&v2, "blocked", None),
        "other.txt",
        Some(s.file(b"written\n", 0o644)),
    );
    let v2 = with(&v2, "blocked", Some(dir(0o755)));
    let v2 = with(&v2, "blocked/x", Some(s.file(b"x\n", 0o644)));
    // `blocked` is in v1 as a file the user has; the version turns it into a directory, so
    // it is removed (it is unchanged since the scan) and the directory made.
    let report = f.write(&v1, &v2).unwrap();
    let failed: Vec<&str> = report.failed.iter().map(|p| p.path.as_str()).collect();
    assert_eq!(failed, ["out"], "{report:?}");
    assert!(
        report.failed[0].reason.contains("move them away"),
        "{}",
        report.failed[0].reason
    );
    assert_eq!(
        std::fs::read(s.share().join("other.txt")).unwrap(),
        b"written\n"
    );
    assert_eq!(std::fs::read(s.share().join("blocked/x")).unwrap(), b"x\n");
    assert_eq!(
        std::fs::read(s.share().join("out/build.log")).unwrap(),
        b"local, ignored\n"
    );
    // The scan reports the version at `out`: nothing travels.
    let scanned = f.scan().unwrap();
    assert_eq!(scanned, v2);
    assert_eq!(f.failed().len(), 1);
    // The reverse: an ignored file where a version has a directory (and paths below it). An
    // ignored path is never written, whatever a version holds there: the local file stays,
    // and the version's entries there do not travel back as changes either.
    std::fs::write(s.share().join("cache.log"), b"ignored, local\n").unwrap();
    let v2b = with(&v2, "cache.log", Some(dir(0o755)));
    let v2b = with(&v2b, "cache.log/a", Some(s.file(b"a\n", 0o644)));
    let report = f.write(&scanned, &v2b).unwrap();
    let failed: Vec<&str> = report.failed.iter().map(|p| p.path.as_str()).collect();
    assert_eq!(failed, ["out"], "{report:?}");
    assert_eq!(
        std::fs::read(s.share().join("cache.log")).unwrap(),
        b"ignored, local\n"
    );
    assert_eq!(f.scan().unwrap(), v2b, "nor does this one travel");
    std::fs::remove_file(s.share().join("cache.log")).unwrap();
    let scanned = f.scan().unwrap();
    let report = f.write(&scanned, &v2).unwrap();
    assert_eq!(report.failed.len(), 1, "{report:?}");
    let scanned = f.scan().unwrap();
    assert_eq!(scanned, v2);
    // The user moves the ignored file away; the next write (of any version) writes `out`.
    std::fs::remove_file(s.share().join("out/build.log")).unwrap();
    let scanned = f.scan().unwrap();
    assert_eq!(
        scanned, v2,
        "an emptied directory is still the failure's disk state"
    );
    let v3 = with(&v2, "other.txt", Some(s.file(b"v3\n", 0o644)));
    let report = f.write(&scanned, &v3).unwrap();
    assert!(report.failed.is_empty(), "{report:?}");
    assert_eq!(
        std::fs::read(s.share().join("out")).unwrap(),
        b"a file now\n"
    );
    assert!(f.failed().is_empty());
    assert_eq!(f.scan().unwrap(), v3);
}

/// A failure the user resolves by changing the path makes the disk count again.
#[test]
fn a_failed_path_changed_on_disk_is_a_local_change_again() {
    let s = Setup::new();
    let mut f = s.folder();
    let too_long = "y".repeat(260);
    let v1 = tree(vec![
        (too_long.as_str(), s.file(b"x\n", 0o644)),
        ("a", s.file(b"a\n", 0o644)),
    ]);
    let report = scan_write(&mut f, &v1).unwrap();
    assert_eq!(report.failed.len(), 1);
    assert_eq!(f.scan().unwrap(), v1);
    // The user edits `a` (a normal change) : reported as such, the overlay stays.
    std::fs::write(s.share().join("a"), b"edited\n").unwrap();
    let t = f.scan().unwrap();
    assert_eq!(t.get_str(&too_long), v1.get_str(&too_long));
    assert_ne!(t.get_str("a"), v1.get_str("a"));
}

/// Leftover temp files of a crashed run are removed at the next start, by the session their
/// names carry; a user's file named like a temp file is never touched.
#[test]
fn leftovers_of_a_crash_are_removed_and_nothing_else() {
    let s = Setup::new();
    let f1 = s.folder();
    drop(f1);
    // What a crash of that run would leave: find its session in the state.
    let state = std::fs::read_to_string(s.state().join("folder/state.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&state).unwrap();
    let session = v["sessions"][0].as_str().unwrap().to_owned();
    std::fs::create_dir_all(s.share().join("d/e")).unwrap();
    let leftover = format!(".chorus-{session}abcdefgh");
    std::fs::write(s.share().join(&leftover), b"half").unwrap();
    std::fs::write(s.share().join("d/e").join(&leftover), b"half").unwrap();
    std::os::unix::fs::symlink(
        "x",
        s.share()
            .join("d")
            .join(format!(".chorus-{session}zzzzzzzz")),
    )
    .unwrap();
    // Look-alikes: another session, the old naming, a longer name.
    let others = [
        ".chorus-aaaaaaaabbbbbbbb".to_owned(),
        ".x.chorus-tmp".to_owned(),
        format!(".chorus-{session}abcdefgh.txt"),
        format!("chorus-{session}abcdefgh"),
    ];
    for o in &others {
        std::fs::write(s.share().join(o), b"a user's file").unwrap();
    }
    let mut f2 = s.folder();
    let t = f2.scan().unwrap();
    assert!(!s.share().join(&leftover).exists());
    assert!(!s.share().join("d/e").join(&leftover).exists());
    assert!(
        std::fs::symlink_metadata(
            s.share()
                .join("d")
                .join(format!(".chorus-{session}zzzzzzzz"))
        )
        .is_err()
    );
    for o in &others {
        assert_eq!(
            std::fs::read(s.share().join(o)).unwrap(),
            b"a user's file",
            "{o}"
        );
        assert!(t.get_str(o).is_some(), "{o} is synced like any file");
    }
    // The session is forgotten once its leftovers are gone.
    let state = std::fs::read_to_string(s.state().join("folder/state.json")).unwrap();
    assert!(!state.contains(&session));
}

/// A full disk (a 1 MiB tmpfs) stops the writing, not the caller, and says so; the paths not
/// written are reported and kept as the version has them.
#[test]
fn a_full_disk_stops_writing_and_says_so() {
    if !is_root() {
        eprintln!("SKIPPED a_full_disk_stops_writing_and_says_so: mounting a tmpfs needs root");
        return;
    }
    let s = Setup::new();
    let share = s.share();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
        .arg(&share)
        .status();
    if !mounted.is_ok_and(|st| st.success()) {
        eprintln!("SKIPPED a_full_disk_stops_writing_and_says_so: cannot mount a tmpfs here");
        return;
    }
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(&self.0).status();
        }
    }
    let _unmount = Unmount(share.clone());
    chorus_folder::marker::create(&share).unwrap();
    // The state dir where it is by default, inside the share: on the same full disk.
    let state = share.join(".chorus");
    std::fs::create_dir(&state).unwrap();
    let mut f = chorus_folder::DiskFolder::new(
        chorus_folder::Share::Folder(share.clone()),
        &state,
        s.store.clone(),
        params(),
    )
    .unwrap();
    let big: Vec<u8> = (0..3u32 << 20)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    let v1 = tree(vec![
        ("a-small.txt", s.file(b"fits\n", 0o644)),
        ("b-big.bin", s.file(&big, 0o644)),
        ("c-after.txt", s.file(b"after\n", 0o644)),
    ]);
    let report = scan_write(&mut f, &v1).unwrap();
    let failed: Vec<&str> = report.failed.iter().map(|p| p.path.as_str()).collect();
    assert_eq!(failed, ["b-big.bin", "c-after.txt"], "{report:?}");
    assert!(
        report.failed[0].reason.contains("disk is full"),
        "{}",
        report.failed[0].reason
    );
    assert!(
        report.failed[1].reason.contains("disk is full"),
        "{}",
        report.failed[1].reason
    );
    assert_eq!(std::fs::read(share.join("a-small.txt")).unwrap(), b"fits\n");
    // No half-written temp file eats the space.
    let names: Vec<String> = std::fs::read_dir(&share)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names.len(),
        3,
        "the marker, the state dir, a-small.txt: {names:?}"
    );
    assert_eq!(f.scan().unwrap(), v1, "the failures do not travel");
}

/// A read-only directory fails the paths in it, alone (needs a user permissions bind).
#[test]
fn a_read_only_directory_fails_alone() {
    as_unprivileged("a_read_only_directory_fails_alone", || {
        let s = Setup::new();
        let mut f = s.folder();
        let v1 = tree(vec![
            ("ro", dir(0o755)),
            ("ro/a", s.file(b"a\n", 0o644)),
            ("rw", s.file(b"1\n", 0o644)),
        ]);
        assert!(scan_write(&mut f, &v1).unwrap().failed.is_empty());
        std::fs::set_permissions(s.share().join("ro"), std::fs::Permissions::from_mode(0o555))
            .unwrap();
        let scanned = f.scan().unwrap();
        let v2 = with(
            &with(&scanned, "ro/a", Some(s.file(b"A\n", 0o644))),
            "rw",
            Some(s.file(b"2\n", 0o644)),
        );
        let v2 = with(&v2, "ro", Some(dir(0o555)));
        let report = f.write(&scanned, &v2).unwrap();
        let failed: Vec<&str> = report.failed.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(failed, ["ro/a"], "{report:?}");
        assert!(
            report.failed[0].reason.contains("permission denied"),
            "{}",
            report.failed[0].reason
        );
        assert_eq!(std::fs::read(s.share().join("rw")).unwrap(), b"2\n");
        assert_eq!(f.scan().unwrap(), v2);
        // A version that turns the read-only directory into a file: what is in it cannot be
        // removed, so neither can it; both fail, and the scan still reports the version.
        let scanned = f.scan().unwrap();
        let v3 = with(
            &with(&scanned, "ro/a", None),
            "ro",
            Some(s.file(b"now a file\n", 0o644)),
        );
        let report = f.write(&scanned, &v3).unwrap();
        let mut failed: Vec<&str> = report.failed.iter().map(|p| p.path.as_str()).collect();
        failed.sort();
        assert_eq!(failed, ["ro", "ro/a"], "{report:?}");
        assert_eq!(f.scan().unwrap(), v3);
        std::fs::set_permissions(s.share().join("ro"), std::fs::Permissions::from_mode(0o755))
            .unwrap();
    });
}

/// Names of 900 files in three directories, every 150th (from the 7th) too long for the
/// file system (a component over 255 bytes), the rest ordinary.
fn many_names() -> (Vec<String>, Vec<String>) {
    let mut ok = Vec::new();
    let mut too_long = Vec::new();
    for i in 0..900 {
        if i % 150 == 7 {
            too_long.push(format!("d{}/{}{i}", i % 3, "x".repeat(256 + i / 150)));
        } else {
            ok.push(format!("d{}/f{i:04}.txt", i % 3));
        }
    }
    (ok, too_long)
}

/// Among many files, written on several threads and in several batches, the paths that
/// cannot be written fail alone wherever they fall among the others: every other file is
/// written, no temp file is left, and the failures do not travel.
#[test]
fn among_many_files_the_ones_that_cannot_be_written_fail_alone() {
    let s = Setup::new();
    let mut f = s.folder();
    let (ok, too_long) = many_names();
    let content = |p: &str| format!("content of {}\n", &p[..p.len().min(12)]);
    let mut entries: Vec<(&str, chorus_chunking::Entry)> =
        ["d0", "d1", "d2"].map(|d| (d, dir(0o755))).into();
    for p in ok.iter().chain(&too_long) {
        entries.push((p.as_str(), s.file(content(p).as_bytes(), 0o644)));
    }
    let v1 = tree(entries);
    let report = scan_write(&mut f, &v1).unwrap();
    let mut failed: Vec<&str> = report.failed.iter().map(|p| p.path.as_str()).collect();
    failed.sort();
    let mut want: Vec<&str> = too_long.iter().map(String::as_str).collect();
    want.sort();
    assert_eq!(failed, want);
    for p in &ok {
        assert_eq!(
            std::fs::read_to_string(s.share().join(p)).unwrap(),
            content(p),
            "{p}"
        );
    }
    for d in ["", "d0", "d1", "d2"] {
        let names: Vec<String> = std::fs::read_dir(s.share().join(d))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(".chorus-") && n != ".chorus-share")
            .collect();
        assert!(names.is_empty(), "temp files left in {d:?}: {names:?}");
    }
    assert_eq!(f.scan().unwrap(), v1, "the failures do not travel");
}

/// A file this daemon cannot read (a root-owned 0600 file left by `sudo cp`, a `chmod 000`):
/// a version that changes or removes it fails there alone; the paths around it (before and
/// after it in the tree's order) are written. Before, the writer took it for a change no scan
/// had versioned yet and stopped the whole version at it, on every try, for good.
#[test]
fn an_unreadable_file_a_version_changes_fails_alone() {
    as_unprivileged("an_unreadable_file_a_version_changes_fails_alone", || {
        let s = Setup::new();
        let mut f = s.folder();
        let v1 = tree(vec![
            ("a.txt", s.file(b"a1\n", 0o644)),
            ("secret.txt", s.file(b"s1\n", 0o644)),
            ("z.txt", s.file(b"z1\n", 0o644)),
        ]);
        assert!(scan_write(&mut f, &v1).unwrap().failed.is_empty());
        let secret = s.share().join("secret.txt");
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o000)).unwrap();
        let scanned = f.scan().unwrap();
        // A peer changes all three.
        let v2 = with(
            &with(
                &with(&scanned, "a.txt", Some(s.file(b"a2\n", 0o644))),
                "secret.txt",
                Some(s.file(b"s2\n", 0o644)),
            ),
            "z.txt",
            Some(s.file(b"z2\n", 0o644)),
        );
        let report = f.write(&scanned, &v2).unwrap();
        let failed: Vec<&str> = report.failed.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(failed, ["secret.txt"], "{report:?}");
        assert!(
            report.failed[0].reason.contains("cannot be read"),
            "{}",
            report.failed[0].reason
        );
        assert_eq!(std::fs::read(s.share().join("a.txt")).unwrap(), b"a2\n");
        assert_eq!(std::fs::read(s.share().join("z.txt")).unwrap(), b"z2\n");
        // And one that removes it, with a change beside.
        let scanned = f.scan().unwrap();
        let v3 = with(
            &with(&scanned, "secret.txt", None),
            "z.txt",
            Some(s.file(b"z3\n", 0o644)),
        );
        let report = f.write(&scanned, &v3).unwrap();
        let failed: Vec<&str> = report.failed.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(failed, ["secret.txt"], "{report:?}");
        assert!(secret.exists(), "what cannot be read is not removed");
        assert_eq!(std::fs::read(s.share().join("z.txt")).unwrap(), b"z3\n");
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o644)).unwrap();
    });
}

/// A file larger than a version may hold (a sparse 65 GiB disk image made with `truncate`):
/// the scan leaves it out, reported, without reading it, rather than put it in a version every
/// member refuses at every try (which stopped this node's syncing, or the whole group's when
/// it led); one that was synced small and grew keeps what was known of it; a version that
/// changes it fails there alone, and the paths beside it are written.
#[test]
fn a_file_larger_than_a_version_may_hold_stays_out_and_fails_alone() {
    let s = Setup::new();
    let mut f = s.folder();
    let v1 = tree(vec![
        ("disk.img", s.file(b"small at first\n", 0o644)),
        ("notes.txt", s.file(b"n1\n", 0o644)),
    ]);
    assert!(scan_write(&mut f, &v1).unwrap().failed.is_empty());
    let huge = 65u64 << 30;
    std::fs::OpenOptions::new()
        .write(true)
        .open(s.share().join("disk.img"))
        .unwrap()
        .set_len(huge)
        .unwrap();
    std::fs::File::create(s.share().join("new.img"))
        .unwrap()
        .set_len(huge)
        .unwrap();
    let scanned = f.scan().unwrap();
    assert!(f.last_report().bytes_read < 1 << 20, "not read");
    assert_eq!(scanned.get_str("new.img"), None, "a new one stays out");
    assert_eq!(
        scanned.get_str("disk.img"),
        v1.get_str("disk.img"),
        "a grown one keeps what was known of it"
    );
    let unknown: Vec<&str> = f
        .last_report()
        .unknown
        .iter()
        .map(|(p, _)| p.as_str())
        .collect();
    assert_eq!(unknown, ["disk.img", "new.img"]);
    // A peer's version changes it and the file beside it.
    let v2 = with(
        &with(&scanned, "disk.img", Some(s.file(b"a peer's\n", 0o644))),
        "notes.txt",
        Some(s.file(b"n2\n", 0o644)),
    );
    let report = f.write(&scanned, &v2).unwrap();
    let failed: Vec<&str> = report.failed.iter().map(|p| p.path.as_str()).collect();
    assert_eq!(failed, ["disk.img"], "{report:?}");
    assert_eq!(std::fs::read(s.share().join("notes.txt")).unwrap(), b"n2\n");
    assert_eq!(
        std::fs::metadata(s.share().join("disk.img")).unwrap().len(),
        huge,
        "left as it is"
    );
}

/// Another share's state inside this one (a share made inside it): a version that holds it
/// (from a build that synced it) does not write it, one that lacks it does not remove what a
/// share made here keeps there, and a scan does not take it in.
#[test]
fn another_shares_state_inside_the_share_is_never_written_removed_or_scanned() {
    let s = Setup::new();
    let mut f = s.folder();
    let v1 = tree(vec![
        ("inner", dir(0o755)),
        ("inner/.chorus", dir(0o700)),
        (
            "inner/.chorus/identity.key",
            s.file(b"someone else's key\n", 0o600),
        ),
        ("inner/.chorus-share", s.file(b"marker\n", 0o644)),
        ("inner/a.txt", s.file(b"a\n", 0o644)),
    ]);
    let report = scan_write(&mut f, &v1).unwrap();
    assert!(report.failed.is_empty(), "{report:?}");
    assert!(!s.share().join("inner/.chorus").exists(), "not written");
    assert!(
        !s.share().join("inner/.chorus-share").exists(),
        "not written"
    );
    assert_eq!(
        std::fs::read(s.share().join("inner/a.txt")).unwrap(),
        b"a\n"
    );
    // A share made here keeps its state there; a version without it removes nothing of it.
    std::fs::create_dir(s.share().join("inner/.chorus")).unwrap();
    std::fs::write(s.share().join("inner/.chorus/identity.key"), b"mine\n").unwrap();
    let scanned = f.scan().unwrap();
    assert_eq!(scanned.get_str("inner/.chorus"), None, "not scanned");
    assert_eq!(scanned.get_str("inner/.chorus/identity.key"), None);
    let report = f
        .write(&v1, &with(&v1, "inner/.chorus/identity.key", None))
        .unwrap();
    assert!(report.failed.is_empty(), "{report:?}");
    assert_eq!(
        std::fs::read(s.share().join("inner/.chorus/identity.key")).unwrap(),
        b"mine\n"
    );
}

/// A disk mounted on a folder inside the share (a USB drive on `Shared/photos`), then
/// unplugged: the empty folder left behind is not the files deleted. What was known below it is
/// kept, before and after a restart, and said; once the user removes the folder, that is a
/// deletion like any other.
#[test]
fn an_unmounted_disk_inside_the_share_is_not_a_deletion() {
    if !is_root() {
        eprintln!(
            "SKIPPED an_unmounted_disk_inside_the_share_is_not_a_deletion: mounting a tmpfs needs root"
        );
        return;
    }
    let s = Setup::new();
    let mut f = s.folder();
    let v1 = tree(vec![
        ("notes.txt", s.file(b"n\n", 0o644)),
        ("photos", dir(0o755)),
    ]);
    assert!(scan_write(&mut f, &v1).unwrap().failed.is_empty());
    let photos = s.share().join("photos");
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
        .arg(&photos)
        .status();
    if !mounted.is_ok_and(|st| st.success()) {
        eprintln!(
            "SKIPPED an_unmounted_disk_inside_the_share_is_not_a_deletion: cannot mount a tmpfs here"
        );
        return;
    }
    std::fs::write(photos.join("a.jpg"), b"photo a").unwrap();
    std::fs::write(photos.join("b.jpg"), b"photo b").unwrap();
    let with_photos = f.scan().unwrap();
    assert!(with_photos.get_str("photos/a.jpg").is_some());
    f.write(&with_photos, &with_photos).unwrap();
    let unmounted = std::process::Command::new("umount").arg(&photos).status();
    assert!(unmounted.is_ok_and(|st| st.success()));
    let t = f.scan().unwrap();
    assert_eq!(t, with_photos, "what was on the disk is kept, not deleted");
    assert!(
        f.last_report()
            .unknown
            .iter()
            .any(|(p, why)| p.as_str() == "photos" && why.contains("mounted")),
        "{:?}",
        f.last_report().unknown
    );
    // After a restart too.
    drop(f);
    let mut f = s.folder();
    assert_eq!(f.scan().unwrap(), with_photos, "after a restart");
    // The user removes the folder: a deletion.
    std::fs::remove_dir(&photos).unwrap();
    let t = f.scan().unwrap();
    assert_eq!(t.get_str("photos"), None);
    assert_eq!(t.get_str("photos/a.jpg"), None);
}
