//! Shared helpers of the folder tests: real directories, a real (in-memory) chunk store,
//! trees built as a peer would send them, and running a test body as an unprivileged user.

#![allow(dead_code)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chorus_chunking::chunker::chunk_bytes;
use chorus_chunking::{ChunkStore, ChunkerParams, Entry, MemStore, Mode, RelPath, TreeManifest};
use chorus_folder::{DiskFolder, Share};
use chorus_sync::folder::Folder;

/// Small chunks, so small files have several.
pub fn params() -> ChunkerParams {
    ChunkerParams::new(256, 1024, 4096).unwrap()
}

/// A share folder (with its marker) and a state dir beside it, both removed at the end.
pub struct Setup {
    pub top: tempfile::TempDir,
    pub store: Arc<MemStore>,
}

impl Setup {
    pub fn new() -> Setup {
        let top = tempfile::tempdir().unwrap();
        std::fs::create_dir(top.path().join("share")).unwrap();
        std::fs::create_dir(top.path().join("state")).unwrap();
        chorus_folder::marker::create(&top.path().join("share")).unwrap();
        Setup {
            top,
            store: Arc::new(MemStore::new()),
        }
    }

    pub fn share(&self) -> PathBuf {
        self.top.path().join("share")
    }

    pub fn state(&self) -> PathBuf {
        self.top.path().join("state")
    }

    pub fn outside(&self) -> PathBuf {
        let p = self.top.path().join("outside");
        std::fs::create_dir_all(&p).unwrap();
        p
    }

    /// A DiskFolder on the share.
    pub fn folder(&self) -> DiskFolder {
        DiskFolder::new(
            Share::Folder(self.share()),
            &self.state(),
            self.store.clone(),
            params(),
        )
        .unwrap()
    }

    /// Bytes stored as a file manifest.
    pub fn file(&self, bytes: &[u8], mode: u32) -> Entry {
        file_in(&*self.store, bytes, mode)
    }
}

pub fn file_in(store: &dyn ChunkStore, bytes: &[u8], mode: u32) -> Entry {
    let manifest = chunk_bytes(bytes, params());
    let mut at = 0;
    for c in manifest.chunks.iter() {
        store.put(&c.id, &bytes[at..at + c.len as usize]).unwrap();
        at += c.len as usize;
    }
    Entry::File {
        mode: Mode::new(mode).unwrap(),
        manifest,
    }
}

pub fn dir(mode: u32) -> Entry {
    Entry::Dir {
        mode: Mode::new(mode).unwrap(),
    }
}

pub fn link(target: &str) -> Entry {
    Entry::symlink(target).unwrap()
}

pub fn tree(entries: Vec<(&str, Entry)>) -> TreeManifest {
    TreeManifest::from_entries(
        entries
            .into_iter()
            .map(|(p, e)| (RelPath::new(p).unwrap(), e)),
    )
    .unwrap()
}

/// `tree` with one entry set (or removed).
pub fn with(t: &TreeManifest, path: &str, e: Option<Entry>) -> TreeManifest {
    let mut m = t.clone().into_entries();
    let p = RelPath::new(path).unwrap();
    match e {
        Some(e) => m.insert(p, e),
        None => m.remove(&p),
    };
    TreeManifest::from_entries(m).unwrap()
}

pub fn mode_of(p: &Path) -> u32 {
    std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
}

/// Scans, then writes `new` over what the scan found; the write's report.
pub fn scan_write(
    f: &mut DiskFolder,
    new: &TreeManifest,
) -> Result<chorus_sync::folder::WriteReport, chorus_sync::folder::FolderError> {
    let old = f.scan().unwrap();
    f.write(&old, new)
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    (unsafe { libc::geteuid() }) == 0
}

const AS_NOBODY: &str = "CHORUS_TEST_AS_NOBODY";

/// Runs `body` as a user that file permissions bind: directly when this process is not
/// root, else in a child process of this test binary (the test `name`) running as `nobody`.
/// Returns false (after saying SKIPPED) when that cannot be arranged.
pub fn as_unprivileged(name: &str, body: impl FnOnce()) -> bool {
    if std::env::var_os(AS_NOBODY).is_some() || !is_root() {
        body();
        return true;
    }
    use std::os::unix::process::CommandExt;
    let exe = std::env::current_exe().unwrap();
    let out = std::process::Command::new(exe)
        .args([name, "--exact", "--nocapture", "--test-threads=1"])
        .env(AS_NOBODY, "1")
        .env("TMPDIR", "/tmp")
        .uid(65534)
        .gid(65534)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success()
        && stderr.contains("Permission denied")
        && !stdout.contains("running 1 test")
    {
        eprintln!("SKIPPED {name}: cannot run the test binary as nobody: {stderr}");
        return false;
    }
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "{name} as nobody failed:\n{stdout}\n{stderr}"
    );
    true
}
