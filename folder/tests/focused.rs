//! A scan the watcher starts looks only at the paths it names (and the directories on the way
//! to them), taking the rest from what the folder last knew. Whatever the user does to the
//! share (files written, changed, removed; directories made, removed whole, renamed; a file
//! turned into a directory and back; a symlink; an ignore file), told the paths the watcher
//! names, a focused scan gives exactly the tree a full scan of the same disk gives.

mod common;

use std::path::{Path, PathBuf};

use chorus_folder::{DiskFolder, Share};
use chorus_sync::folder::Folder;
use common::*;
use proptest::prelude::*;

/// One thing a user does, on paths built from a few names.
#[derive(Debug, Clone)]
enum Op {
    Write(String, u8),
    Remove(String),
    MakeDir(String),
    RemoveAll(String),
    Rename(String, String),
    Symlink(String),
    Ignore(String),
}

fn path() -> impl Strategy<Value = String> {
    let part = prop::sample::select(vec!["a", "b", "x.txt", "y.txt"]);
    prop::collection::vec(part, 1..=3).prop_map(|v| v.join("/"))
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (path(), any::<u8>()).prop_map(|(p, b)| Op::Write(p, b)),
        2 => path().prop_map(Op::Remove),
        2 => path().prop_map(Op::MakeDir),
        1 => path().prop_map(Op::RemoveAll),
        2 => (path(), path()).prop_map(|(a, b)| Op::Rename(a, b)),
        1 => path().prop_map(Op::Symlink),
        1 => path().prop_map(Op::Ignore),
    ]
}

/// Does `op` in `share` (what fails, as on a real disk, does nothing) and returns the paths
/// the watcher names for it: where the change really happened (through a symlink, inotify
/// reports the directory the link points to).
fn apply(share: &Path, op: &Op) -> Vec<PathBuf> {
    let resolved = |p: PathBuf| match (
        p.parent().and_then(|d| std::fs::canonicalize(d).ok()),
        p.file_name(),
    ) {
        (Some(d), Some(n)) => d.join(n),
        _ => p,
    };
    // A rename can replace the very symlink its source was reached through (`y.txt/b` moved
    // onto `y.txt`): inotify names the directory the source left, as it was before the move.
    let before: Vec<PathBuf> = match op {
        Op::Rename(a, b) => vec![resolved(share.join(a)), resolved(share.join(b))],
        _ => Vec::new(),
    };
    let mut named: Vec<PathBuf> = apply_at(share, op).into_iter().map(resolved).collect();
    named.extend(before);
    named
}

fn apply_at(share: &Path, op: &Op) -> Vec<PathBuf> {
    let at = |p: &str| share.join(p);
    let parent = |p: &str| {
        if let Some(d) = at(p).parent() {
            let _ = std::fs::create_dir_all(d);
        }
    };
    match op {
        Op::Write(p, b) => {
            parent(p);
            let ok = std::fs::write(at(p), vec![*b; 10 + *b as usize]).is_ok();
            // Directories made on the way are named too (the watcher sees them created).
            let mut named = vec![at(p)];
            // Written through a symlink: the file it points to changed.
            named.extend(std::fs::canonicalize(at(p)).ok());
            if ok {
                let mut d = at(p);
                while d.pop() && d != share {
                    named.push(d.clone());
                }
            }
            named
        }
        Op::Remove(p) => {
            let _ = std::fs::remove_file(at(p));
            vec![at(p)]
        }
        Op::MakeDir(p) => {
            let _ = std::fs::create_dir(at(p));
            vec![at(p)]
        }
        Op::RemoveAll(p) => {
            let _ = std::fs::remove_dir_all(at(p));
            vec![at(p)]
        }
        Op::Rename(a, b) => {
            if !at(b).starts_with(at(a)) {
                let _ = std::fs::rename(at(a), at(b));
            }
            vec![at(a), at(b)]
        }
        Op::Symlink(p) => {
            let _ = std::os::unix::fs::symlink("x.txt", at(p));
            vec![at(p)]
        }
        Op::Ignore(p) => {
            let dir = at(p)
                .parent()
                .map(Path::to_path_buf)
                .unwrap_or(share.into());
            let rule = at(p).file_name().unwrap().to_string_lossy().into_owned();
            let _ = std::fs::write(dir.join(".chorusignore"), format!("{rule}\n"));
            vec![dir.join(".chorusignore")]
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(150))]

    #[test]
    fn a_focused_scan_gives_what_a_full_scan_gives(
        before in prop::collection::vec(op(), 0..8),
        rounds in prop::collection::vec(prop::collection::vec(op(), 1..6), 1..4),
    ) {
        let s = Setup::new();
        let share = std::fs::canonicalize(s.share()).unwrap();
        let mut focused = DiskFolder::new(Share::Folder(share.clone()), &s.state(), s.store.clone(), params()).unwrap();
        let full_state = s.top.path().join("full-state");
        std::fs::create_dir(&full_state).unwrap();
        let mut full = DiskFolder::new(Share::Folder(share.clone()), &full_state, s.store.clone(), params()).unwrap();
        for op in &before {
            apply(&share, op);
        }
        focused.scan().unwrap();
        full.scan().unwrap();
        for round in &rounds {
            let mut named = Vec::new();
            for op in round {
                named.extend(apply(&share, op));
            }
            let got = focused.scan_paths(&named).unwrap();
            let want = full.scan().unwrap();
            prop_assert_eq!(
                got.entries(), want.entries(),
                "after {:?} then {:?}", before, rounds
            );
            for p in ["a/x.txt", "b", "y.txt", "a/b/x.txt"] {
                let p = chorus_chunking::RelPath::new(p).unwrap();
                prop_assert_eq!(focused.is_ignored(&p), full.is_ignored(&p));
            }
        }
    }
}
