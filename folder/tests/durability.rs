//! A write counts as done only once it is durable (issue 13, point 9: a new directory and the
//! parent of a removed entry are fsynced), and a write never overwrites or removes a change
//! made since the last scan (DESIGN §9).

mod common;

use std::path::PathBuf;
use std::sync::Arc;

use chorus_chunking::MemStore;
use chorus_folder::{DiskFolder, Share};
use chorus_sync::folder::{Folder, FolderError};
use common::*;

const CHILD: &str = "CHORUS_TEST_FSYNC_TOP";

/// Watches the write's `fsync` calls with strace (`-y` names each descriptor's path).
#[test]
fn new_directories_and_parents_of_removals_are_fsynced() {
    if let Some(top) = std::env::var_os(CHILD) {
        // The child: one write, traced.
        let (mut f, store) = child_folder(top);
        let old = f.scan().unwrap();
        let new = with(&old, "gone/x", None);
        let new = with(&new, "new", Some(dir(0o755)));
        let new = with(&new, "new/sub", Some(dir(0o700)));
        let new = with(&new, "new/sub/f", Some(file_in(&*store, b"f\n", 0o600)));
        assert!(f.write(&old, &new).unwrap().failed.is_empty());
        return;
    }
    let s = Setup::new();
    std::fs::create_dir_all(s.share().join("gone")).unwrap();
    std::fs::write(s.share().join("gone/x"), b"x\n").unwrap();
    let Some(text) = traced(
        "new_directories_and_parents_of_removals_are_fsynced",
        CHILD,
        &s,
        &["-e", "trace=fsync,fdatasync,syncfs"],
    ) else {
        return;
    };
    let synced: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("fsync(") && l.contains("= 0"))
        .filter_map(|l| Some(&l[l.find('<')? + 1..l.find('>')?]))
        .collect();
    let share = s.share();
    let has = |p: PathBuf| synced.iter().any(|s| *s == p.to_str().unwrap());
    assert!(has(share.join("new")), "the new directory: {synced:?}");
    assert!(
        has(share.join("new/sub")),
        "the new directory below it: {synced:?}"
    );
    assert!(
        has(share.clone()),
        "the parent of the new directory: {synced:?}"
    );
    assert!(
        has(share.join("gone")),
        "the parent of the removed file: {synced:?}"
    );
    let file = share.join("new/sub/.chorus-");
    assert!(
        synced.iter().any(|s| s.starts_with(file.to_str().unwrap())),
        "the file's content before its rename: {synced:?}"
    );
}

/// A save, a deletion or a new file since the last scan stops the write there; nothing the
/// user did is overwritten or removed.
#[test]
fn a_change_since_the_scan_is_never_overwritten() {
    let s = Setup::new();
    let mut f = s.folder();
    let v1 = tree(vec![
        ("a", s.file(b"a\n", 0o644)),
        ("b", s.file(b"b\n", 0o644)),
        ("c", s.file(b"c\n", 0o644)),
    ]);
    scan_write(&mut f, &v1).unwrap();
    let scanned = f.scan().unwrap();
    // Saved since the scan: a version changing it stops there.
    std::fs::write(s.share().join("b"), b"the user's save, longer\n").unwrap();
    let v2 = with(&scanned, "b", Some(s.file(b"peer\n", 0o644)));
    assert!(matches!(f.write(&scanned, &v2), Err(FolderError::Changed(p)) if p.as_str() == "b"));
    assert_eq!(
        std::fs::read(s.share().join("b")).unwrap(),
        b"the user's save, longer\n"
    );
    // Nor removed by a version that deletes it.
    let v3 = with(&scanned, "b", None);
    assert!(matches!(
        f.write(&scanned, &v3),
        Err(FolderError::Changed(_))
    ));
    assert!(s.share().join("b").exists());
    // A file deleted since the scan is not brought back by a version changing it.
    let scanned = f.scan().unwrap();
    std::fs::remove_file(s.share().join("c")).unwrap();
    let v4 = with(&scanned, "c", Some(s.file(b"C\n", 0o644)));
    assert!(matches!(
        f.write(&scanned, &v4),
        Err(FolderError::Changed(_))
    ));
    assert!(!s.share().join("c").exists());
    // A file created since the scan where the version adds one is not replaced.
    let scanned = f.scan().unwrap();
    std::fs::write(s.share().join("d"), b"mine\n").unwrap();
    let v5 = with(&scanned, "d", Some(s.file(b"theirs\n", 0o644)));
    assert!(matches!(
        f.write(&scanned, &v5),
        Err(FolderError::Changed(_))
    ));
    assert_eq!(std::fs::read(s.share().join("d")).unwrap(), b"mine\n");
    // Once scanned, the version is written over what the scan saw; no temp file is left.
    let scanned = f.scan().unwrap();
    let v6 = with(&scanned, "d", Some(s.file(b"theirs\n", 0o644)));
    assert!(f.write(&scanned, &v6).unwrap().failed.is_empty());
    assert_eq!(std::fs::read(s.share().join("d")).unwrap(), b"theirs\n");
    let leftovers = std::fs::read_dir(s.share())
        .unwrap()
        .filter(|e| {
            let n = e.as_ref().unwrap().file_name();
            let n = n.to_string_lossy();
            n.starts_with(".chorus-") && n != ".chorus-share"
        })
        .count();
    assert_eq!(leftovers, 0);
}

/// A file the folder wrote is believed on its stamp only when no save can share that stamp
/// (`ScanCache::remember`): a save of the same size right after the write, at any moment
/// after it, is seen by the next scan. Small files (renamed within a tick of their writing)
/// and big ones (whose `fsync` outlasts a tick), saved at once and a little later.
#[test]
fn a_save_right_after_a_write_is_seen_by_the_next_scan() {
    for (size, wait_ms) in [
        (100, 0),
        (100, 30),
        (3 << 20, 0),
        (3 << 20, 30),
        (3 << 20, 80),
    ] {
        let s = Setup::new();
        let mut f = s.folder();
        let theirs: Vec<u8> = (0..size).map(|i| (i * 7 % 251) as u8).collect();
        let v = with(&f.scan().unwrap(), "f", Some(s.file(&theirs, 0o644)));
        assert!(scan_write(&mut f, &v).unwrap().failed.is_empty());
        std::thread::sleep(std::time::Duration::from_millis(wait_ms));
        // The user's save: in place, same size, other bytes.
        let mine: Vec<u8> = theirs.iter().map(|b| b.wrapping_add(1)).collect();
        std::fs::OpenOptions::new()
            .write(true)
            .open(s.share().join("f"))
            .and_then(|mut h| std::io::Write::write_all(&mut h, &mine))
            .unwrap();
        let scanned = f.scan().unwrap();
        assert_eq!(
            scanned.get(&chorus_chunking::RelPath::new("f").unwrap()),
            Some(&file_in(&*s.store, &mine, 0o644)),
            "size {size}, saved {wait_ms} ms after the write"
        );
    }
}

/// A store that takes 60 ms to give some chunks (more than a timestamp tick), the others at
/// once; `on_slow` runs when a slow one is first asked for.
struct Slow {
    store: Arc<MemStore>,
    slow: std::collections::HashSet<chorus_chunking::ChunkId>,
    on_slow: std::sync::Mutex<Option<Box<dyn FnOnce() + Send>>>,
}

impl Slow {
    /// The share of `s` as a folder over its store, with `slow` chunks slow.
    fn folder(
        s: &Setup,
        slow: std::collections::HashSet<chorus_chunking::ChunkId>,
        on_slow: Option<Box<dyn FnOnce() + Send>>,
    ) -> DiskFolder {
        let store = Slow {
            store: s.store.clone(),
            slow,
            on_slow: std::sync::Mutex::new(on_slow),
        };
        DiskFolder::new(
            Share::Folder(s.share()),
            &s.state(),
            Arc::new(store),
            params(),
        )
        .unwrap()
    }
}

impl chorus_chunking::ChunkStore for Slow {
    fn contains(&self, id: &chorus_chunking::ChunkId) -> Result<bool, chorus_chunking::Error> {
        self.store.contains(id)
    }
    fn get(
        &self,
        id: &chorus_chunking::ChunkId,
    ) -> Result<Option<Vec<u8>>, chorus_chunking::Error> {
        if self.slow.contains(id) {
            let hook = self.on_slow.lock().unwrap().take();
            if let Some(hook) = hook {
                hook();
            }
            std::thread::sleep(std::time::Duration::from_millis(60));
        }
        self.store.get(id)
    }
    fn put(
        &self,
        id: &chorus_chunking::ChunkId,
        bytes: &[u8],
    ) -> Result<(), chorus_chunking::Error> {
        self.store.put(id, bytes)
    }
    fn sync(&self) -> Result<(), chorus_chunking::Error> {
        self.store.sync()
    }
    fn remove(&self, id: &chorus_chunking::ChunkId) -> Result<(), chorus_chunking::Error> {
        self.store.remove(id)
    }
    fn ids(&self) -> Result<Vec<chorus_chunking::ChunkId>, chorus_chunking::Error> {
        self.store.ids()
    }
}

/// The files of a big write are believed on their stamps by the next scan (not read again),
/// but for the last batch, renamed as soon as it was written; a save right after the write
/// is still seen, in a believed file as in one read again. Each batch of 256 files is written
/// well within a timestamp tick here, but the first file of the second batch and the third
/// batch's one file take longer (the store is slow to give their chunks): renamed as soon as
/// they are written, the first two batches would be read again (125 files here with two
/// cores, 512 with one); renamed once the next batch is written, they are believed.
#[test]
fn a_big_writes_files_are_believed_and_a_save_after_it_still_seen() {
    let s = Setup::new();
    let mut v = tree(vec![("d", dir(0o755))]);
    let mut slow = std::collections::HashSet::new();
    for i in 0..513 {
        let bytes = format!("file {i}\n").repeat(3);
        let e = s.file(bytes.as_bytes(), 0o644);
        if i == 256 || i == 512 {
            slow.extend(e.manifest().unwrap().chunks.iter().map(|c| c.id));
        }
        v = with(&v, &format!("d/f{i:03}"), Some(e));
    }
    let mut f = Slow::folder(&s, slow, None);
    assert!(scan_write(&mut f, &v).unwrap().failed.is_empty());
    // The user's saves right after: in place, same size, other bytes; one early in the write,
    // one in the last batch.
    for p in ["d/f001", "d/f512"] {
        let path = s.share().join(p);
        let mut mine = std::fs::read(&path).unwrap();
        mine[0] = b'F';
        std::fs::write(&path, &mine).unwrap();
    }
    let scanned = f.scan().unwrap();
    let read = f.last_report().files_read;
    // The first two batches believed (the last, one file, is read again).
    assert!(read <= 64, "{read} of 513 files read again");
    for p in ["d/f001", "d/f512"] {
        let on_disk = std::fs::read(s.share().join(p)).unwrap();
        assert_eq!(
            scanned.get(&chorus_chunking::RelPath::new(p).unwrap()),
            Some(&file_in(&*s.store, &on_disk, 0o644)),
            "{p}"
        );
    }
}

/// A save that lands while the batch holding its file waits for its renames (its files
/// written and the next ones being written) is never overwritten, and the next scan sees it:
/// the user saves `d/f010` of the first batch while the second batch's first file waits for
/// its chunk.
#[test]
fn a_save_while_its_batch_waits_for_its_renames_is_never_overwritten() {
    let s = Setup::new();
    let mut v1 = tree(vec![("d", dir(0o755))]);
    let mut v2 = v1.clone();
    let mut slow = std::collections::HashSet::new();
    for i in 0..300 {
        let p = format!("d/f{i:03}");
        v1 = with(&v1, &p, Some(s.file(format!("v1 {i}\n").as_bytes(), 0o644)));
        let e = s.file(format!("v2 {i}\n").repeat(2).as_bytes(), 0o644);
        if i == 256 {
            slow.extend(e.manifest().unwrap().chunks.iter().map(|c| c.id));
        }
        v2 = with(&v2, &p, Some(e));
    }
    let saved = s.share().join("d/f010");
    let mine = b"the user's save\n";
    let hook: Box<dyn FnOnce() + Send> = Box::new({
        let saved = saved.clone();
        move || std::fs::write(&saved, mine).unwrap()
    });
    let mut f = Slow::folder(&s, slow, Some(hook));
    assert!(scan_write(&mut f, &v1).unwrap().failed.is_empty());
    let scanned = f.scan().unwrap();
    assert_eq!(scanned, v1);
    // The write stops at the save (or, on a machine slow enough that the first batch was
    // renamed before the save, the save lands on the new file): either way it stays.
    match f.write(&scanned, &v2) {
        Err(FolderError::Changed(p)) => assert_eq!(p.as_str(), "d/f010"),
        Ok(report) => assert!(report.failed.is_empty(), "{report:?}"),
        Err(e) => panic!("{e}"),
    }
    assert_eq!(std::fs::read(&saved).unwrap(), mine);
    let after = f.scan().unwrap();
    assert_eq!(
        after.get(&chorus_chunking::RelPath::new("d/f010").unwrap()),
        Some(&file_in(&*s.store, mine, 0o644))
    );
    let leftovers = std::fs::read_dir(s.share().join("d"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with(".chorus-")
        })
        .count();
    assert_eq!(leftovers, 0, "no temp file is left");
}

const CHILD_MANY: &str = "CHORUS_TEST_FLUSH_TOP";

/// A write of many files makes them durable by `syncfs`, on a thread of its own while the
/// next files are written (`syncer.rs`). Every file must still be renamed into place only
/// after a flush that began once its content was written and ended before the rename: a
/// crash never leaves a file in place without its content. Watched with strace (`-y` names
/// each descriptor's path, `-ttt -T` times every call on every thread).
#[test]
fn many_files_are_renamed_only_after_a_flush_that_covers_them() {
    const FILES: usize = 700;
    if let Some(top) = std::env::var_os(CHILD_MANY) {
        // The child: one write of many files, traced.
        let (mut f, store) = child_folder(top);
        let old = f.scan().unwrap();
        let names: Vec<String> = (0..FILES).map(|i| format!("d{}/f{i:04}", i % 3)).collect();
        let mut entries: Vec<(&str, chorus_chunking::Entry)> = ["d0", "d1", "d2"]
            .into_iter()
            .map(|d| (d, dir(0o755)))
            .collect();
        for (i, n) in names.iter().enumerate() {
            let e = file_in(&*store, format!("file {i}\n").as_bytes(), 0o644);
            entries.push((n.as_str(), e));
        }
        assert!(f.write(&old, &tree(entries)).unwrap().failed.is_empty());
        return;
    }
    let s = Setup::new();
    let Some(text) = traced(
        "many_files_are_renamed_only_after_a_flush_that_covers_them",
        CHILD_MANY,
        &s,
        &["-ttt", "-T", "-e", "trace=syncfs,renameat2,pwrite64"],
    ) else {
        return;
    };
    let calls = traced_calls(&text);
    let flushes: Vec<&Call> = calls.iter().filter(|c| c.name == "syncfs").collect();
    let renames: Vec<&Call> = calls
        .iter()
        .filter(|c| c.name == "renameat2" && c.text.contains("\".chorus-"))
        .collect();
    assert_eq!(renames.len(), FILES, "every file renamed into place");
    for r in &renames {
        // renameat2(3</share/d0>, ".chorus-…", 3</share/d0>, "f0001", …)
        let temp = r.text.split('"').nth(1).expect("the temp file's name");
        let written = calls
            .iter()
            .filter(|c| c.name == "pwrite64" && c.text.contains(&format!("/{temp}>")))
            .map(|c| c.end)
            .max_by(f64::total_cmp)
            .unwrap_or_else(|| panic!("no write of {temp} before its rename: {}", r.text));
        assert!(
            flushes
                .iter()
                .any(|f| f.start >= written && f.end <= r.start),
            "{temp}: written until {written}, renamed at {}, and no flush between: {:?}",
            r.start,
            flushes.iter().map(|f| (f.start, f.end)).collect::<Vec<_>>()
        );
    }
    assert!(!flushes.is_empty());
}

/// The traced child's folder: the share and state under `top` (the parent's setup), with a
/// store of its own.
fn child_folder(top: std::ffi::OsString) -> (DiskFolder, Arc<MemStore>) {
    let top = PathBuf::from(top);
    let store = Arc::new(MemStore::new());
    let f = DiskFolder::new(
        Share::Folder(top.join("share")),
        &top.join("state"),
        store.clone(),
        params(),
    )
    .unwrap();
    (f, store)
}

/// Runs `test` of this binary again as a child under strace (`-f -y -qq` and `args`), with
/// `child` set to the setup's top directory; the trace, or `None` (the test says SKIPPED)
/// where strace is missing or ptrace is not allowed.
fn traced(test: &str, child: &str, s: &Setup, args: &[&str]) -> Option<String> {
    let strace = std::process::Command::new("strace").arg("-V").output();
    if !strace.is_ok_and(|o| o.status.success()) {
        eprintln!("SKIPPED {test}: strace is not installed");
        return None;
    }
    let trace = s.top.path().join("trace.txt");
    let out = std::process::Command::new("strace")
        .args(["-f", "-y", "-qq"])
        .args(args)
        .arg("-o")
        .arg(&trace)
        .arg(std::env::current_exe().unwrap())
        .args([test, "--exact", "--test-threads=1"])
        .env(child, s.top.path())
        .output()
        .unwrap();
    if !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("ptrace") {
        eprintln!("SKIPPED {test}: ptrace is not allowed here");
        return None;
    }
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(std::fs::read_to_string(&trace).unwrap())
}

/// One traced system call: when it began and ended, and its text (arguments and result).
struct Call {
    name: String,
    start: f64,
    end: f64,
    text: String,
}

/// The calls of an `strace -f -ttt -T` trace, a call split by another thread's (`<unfinished
/// ...>`, `<... resumed>`) joined again.
fn traced_calls(trace: &str) -> Vec<Call> {
    let mut open: std::collections::HashMap<&str, (f64, String)> = Default::default();
    let mut calls = Vec::new();
    for line in trace.lines() {
        // `1787  1796646626.244119 syncfs(…`: strace pads a short thread id with spaces.
        let Some((pid, rest)) = line.split_once(' ') else {
            continue;
        };
        let Some((ts, rest)) = rest.trim_start().split_once(' ') else {
            continue;
        };
        let Ok(ts) = ts.parse::<f64>() else { continue };
        let (start, text) = if let Some(head) = rest.strip_suffix(" <unfinished ...>") {
            open.insert(pid, (ts, head.to_owned()));
            continue;
        } else if rest.starts_with("<... ") {
            let Some((start, head)) = open.remove(pid) else {
                continue;
            };
            let tail = rest.split_once(" resumed>").map_or("", |(_, t)| t);
            (start, format!("{head}{tail}"))
        } else {
            (ts, rest.to_owned())
        };
        let Some(name) = text.split('(').next() else {
            continue;
        };
        // `= 0 <0.000123>`: the call's length, after its result.
        let took = text
            .rsplit_once('<')
            .and_then(|(_, t)| t.strip_suffix('>'))
            .and_then(|t| t.parse::<f64>().ok());
        let Some(took) = took else { continue };
        calls.push(Call {
            name: name.to_owned(),
            start,
            end: start + took,
            text: text.clone(),
        });
    }
    calls
}

/// The trace's reader takes short (padded) and long thread ids alike, and joins a call split
/// by another thread's.
#[test]
fn the_trace_reader_takes_padded_thread_ids_and_split_calls() {
    let trace = "\
1787  1796646626.100000 syncfs(3</s> <unfinished ...>
123456 1796646626.100100 renameat2(4</s/d>, \".chorus-x\", 4</s/d>, \"f\", RENAME_NOREPLACE) = 0 <0.000010>
1787  1796646626.100200 <... syncfs resumed>) = 0 <0.000300>
";
    let calls = traced_calls(trace);
    let names: Vec<&str> = calls.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["renameat2", "syncfs"]);
    let flush = &calls[1];
    assert_eq!(flush.start, 1796646626.1);
    assert!((flush.end - 1796646626.1003).abs() < 1e-6);
    assert!(calls[0].text.contains("\".chorus-x\""));
}
