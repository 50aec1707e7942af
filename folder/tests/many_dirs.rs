//! A share with more directories than the process may open files: a home directory or a
//! build tree has tens of thousands, and a desktop's soft limit is often 1,024. Scans and
//! writes must hold a bounded number of directory handles, not one per directory.
//! (A file of its own: the test lowers this process's open-file limit.)

mod common;

use chorus_sync::folder::Folder;
use common::*;

/// The soft limit on open files this test runs under.
const LIMIT: u64 = 1024;

fn lower_own_limit() {
    let mut l = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain libc calls on a local struct.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut l);
        l.rlim_cur = LIMIT.min(l.rlim_max);
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &l), 0);
    }
}

/// 2,000 directories (many side by side, some deep) written, scanned and rewritten under a
/// limit of 1,024 open files: nothing fails, and the scan reads back what was written.
#[test]
fn more_directories_than_open_files_are_written_and_scanned() {
    lower_own_limit();
    let s = Setup::new();
    let mut f = s.folder();
    let mut names = Vec::new();
    for i in 0..1_500 {
        names.push((format!("wide/d{i:04}"), format!("wide/d{i:04}/f.txt")));
    }
    let mut deep = String::from("deep");
    for i in 0..500 {
        deep.push_str(&format!("/{}", i % 10));
        if deep.len() > 3_000 {
            deep = format!("deep{i}");
        }
        names.push((deep.clone(), format!("{deep}/f{i}.txt")));
    }
    let mut entries: Vec<(String, chorus_chunking::Entry)> = vec![("wide".into(), dir(0o755))];
    for (d, file) in &names {
        // Every directory on the way is in the tree.
        let mut sofar = String::new();
        for part in d.split('/') {
            if !sofar.is_empty() {
                sofar.push('/');
            }
            sofar.push_str(part);
            entries.push((sofar.clone(), dir(0o755)));
        }
        entries.push((file.clone(), s.file(file.as_bytes(), 0o644)));
    }
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    entries.dedup_by(|a, b| a.0 == b.0);
    let v1 = tree(
        entries
            .iter()
            .map(|(p, e)| (p.as_str(), e.clone()))
            .collect(),
    );
    let report = scan_write(&mut f, &v1).unwrap();
    assert!(
        report.failed.is_empty(),
        "{:?}",
        &report.failed[..report.failed.len().min(3)]
    );
    assert_eq!(f.scan().unwrap(), v1);
    // Every file changed, then written again from the scan.
    let mut all = v1.clone().into_entries();
    for (_, file) in &names {
        let p = chorus_chunking::RelPath::new(file.as_str()).unwrap();
        all.insert(p, s.file(format!("{file} v2").as_bytes(), 0o644));
    }
    let v2 = chorus_chunking::TreeManifest::from_entries(all).unwrap();
    let old = f.scan().unwrap();
    let report = f.write(&old, &v2).unwrap();
    assert!(
        report.failed.is_empty(),
        "{:?}",
        &report.failed[..report.failed.len().min(3)]
    );
    assert_eq!(f.scan().unwrap(), v2);
    // A crash of this run would leave temp files anywhere: a fresh folder (a restart)
    // removes them, walking every directory, and scans it all from the disk.
    drop(f);
    let state = std::fs::read_to_string(s.state().join("folder/state.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&state).unwrap();
    let session = v["sessions"][0].as_str().unwrap().to_owned();
    let leftover = format!(".chorus-{session}abcdefgh");
    let (last_wide, deepest) = (&names[1_499].0, &names.last().unwrap().0);
    for d in [last_wide, deepest] {
        std::fs::write(s.share().join(d).join(&leftover), b"half").unwrap();
    }
    let mut f = s.folder();
    assert_eq!(f.scan().unwrap(), v2);
    for d in [last_wide, deepest] {
        assert!(!s.share().join(d).join(&leftover).exists(), "left in {d}");
    }
    let state = std::fs::read_to_string(s.state().join("folder/state.json")).unwrap();
    assert!(!state.contains(&session), "the walk was complete");
}
