//! What a [`DiskFolder`](crate::DiskFolder) remembers across restarts, in `STATE_DIR/folder/`
//! (0700, files 0600): whether the share got its marker, the temp-name sessions whose
//! leftovers may still lie in the share, the paths that could not be written (with what the
//! version wanted there and what the disk showed), and the last tree the folder was known to
//! hold (so an unreadable subtree keeps it even on the first scan after a restart).
//!
//! Written atomically (temp file, rename) whenever it changes. The known tree is a hint: a
//! lost or unreadable copy means "nothing known", never an error. It is written by a thread of
//! its own ([`KnownSaver`]), the newest tree only, [`KNOWN_AFTER`] after it is given: encoding
//! and writing a tree of 100k files took ~60 ms of every scan on the way from a saved file to
//! the other machines, and on its own thread still a third of a two-core machine's time while
//! the change went out.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use prost::Message;
use serde::{Deserialize, Serialize};

use chorus_chunking::{Entry, RelPath, TreeManifest};

/// A path the last writes could not write.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Failed {
    /// What the version has there (None: the version removes it).
    pub want: Option<Entry>,
    /// What the disk showed there when the write failed (None: nothing).
    pub disk: Option<Entry>,
    /// One line: why, and what to do.
    pub reason: String,
}

/// The small part of the state.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct State {
    /// The share's marker was made (or found): from now on a missing marker means the folder
    /// is not there.
    pub marked: bool,
    /// Sessions whose temp files may be left in the share (the current one included).
    pub sessions: Vec<String>,
    pub failed: BTreeMap<RelPath, Failed>,
    /// Directories of the share another disk was mounted on when last scanned: one found
    /// without it is unmounted, not emptied (what was known below it is kept).
    #[serde(default)]
    pub mounts: std::collections::BTreeSet<RelPath>,
}

/// How long a known tree given to the [`KnownSaver`] waits before it is written (newer ones
/// given meanwhile replace it): a change goes out to the other machines in this time, and a
/// burst of changes is written once. Losing it to a crash loses a hint, not an edit.
const KNOWN_AFTER: std::time::Duration = std::time::Duration::from_secs(1);

/// Saves the folder's known tree off the caller's thread ([`Files::known_saver`]).
#[derive(Debug)]
pub(crate) struct KnownSaver {
    tx: Option<std::sync::mpsc::Sender<Arc<TreeManifest>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl KnownSaver {
    pub fn save(&self, tree: Arc<TreeManifest>) {
        if let Some(tx) = &self.tx {
            let _ = tx.send(tree);
        }
    }
}

impl Drop for KnownSaver {
    fn drop(&mut self) {
        self.tx = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Where the state lives.
#[derive(Debug, Clone)]
pub(crate) struct Files {
    dir: PathBuf,
}

impl Files {
    /// `STATE_DIR/folder`, made private if new.
    pub fn open(state_dir: &Path) -> std::io::Result<Files> {
        let dir = state_dir.join("folder");
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)?;
        Ok(Files { dir })
    }

    pub fn load(&self) -> std::io::Result<State> {
        match fs::read(self.dir.join("state.json")) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(State::default()),
            Err(e) => Err(e),
        }
    }

    pub fn save(&self, state: &State) -> std::io::Result<()> {
        let bytes = serde_json::to_vec_pretty(state).map_err(std::io::Error::other)?;
        self.put("state.json", &bytes, true)
    }

    /// The last known tree; empty when there is none or it cannot be read.
    pub fn known(&self) -> TreeManifest {
        fs::read(self.dir.join("known.pb"))
            .ok()
            .and_then(|b| chorus_proto::TreeManifest::decode(&b[..]).ok())
            .and_then(|p| TreeManifest::from_proto(&p).ok())
            .unwrap_or_default()
    }

    pub fn save_known(&self, tree: &TreeManifest) -> std::io::Result<()> {
        self.put("known.pb", &tree.encode_proto(), false)
    }

    /// A thread that saves the known trees it is given, [`KNOWN_AFTER`] after each (older
    /// ones given meanwhile are skipped), until it is dropped (then it saves the last one it
    /// was given at once, and ends).
    pub fn known_saver(&self) -> std::io::Result<KnownSaver> {
        let (tx, rx) = std::sync::mpsc::channel::<Arc<TreeManifest>>();
        let files = self.clone();
        let thread = std::thread::Builder::new()
            .name("chorus-known".into())
            .spawn(move || {
                while let Ok(mut tree) = rx.recv() {
                    let due = std::time::Instant::now() + KNOWN_AFTER;
                    // A timeout (due) or a disconnection (dropped: save now) ends the wait.
                    while let Ok(newer) =
                        rx.recv_timeout(due.saturating_duration_since(std::time::Instant::now()))
                    {
                        tree = newer;
                    }
                    if let Err(e) = files.save_known(&tree) {
                        tracing::warn!("cannot record the folder's last known tree: {e}");
                    }
                }
            })?;
        Ok(KnownSaver {
            tx: Some(tx),
            thread: Some(thread),
        })
    }

    /// Replaces `name` atomically; `durable` fsyncs it first.
    fn put(&self, name: &str, bytes: &[u8], durable: bool) -> std::io::Result<()> {
        let tmp = self.dir.join(format!("{name}.tmp"));
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(bytes)?;
        if durable {
            f.sync_all()?;
        }
        fs::rename(&tmp, self.dir.join(name))?;
        if durable {
            fs::File::open(&self.dir)?.sync_all()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chorus_chunking::{ChunkId, ChunkRef, FileManifest};

    fn tree(text: &str) -> Arc<TreeManifest> {
        Arc::new(
            TreeManifest::from_entries([(
                RelPath::new("a.txt").unwrap(),
                Entry::file(FileManifest {
                    chunks: vec![ChunkRef {
                        id: ChunkId::of(text.as_bytes()),
                        len: text.len() as u32,
                    }]
                    .into(),
                }),
            )])
            .unwrap(),
        )
    }

    /// A tree given is written after a while without a stop; the newest of a burst is the
    /// one written when the saver is dropped, at once.
    #[test]
    fn the_saver_writes_the_newest_tree_later_or_when_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let files = Files::open(dir.path()).unwrap();
        let saver = files.known_saver().unwrap();
        saver.save(tree("one"));
        let start = std::time::Instant::now();
        while files.known() != *tree("one") {
            assert!(start.elapsed().as_secs() < 30, "never written");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        for t in ["two", "three", "four"] {
            saver.save(tree(t));
        }
        drop(saver);
        assert_eq!(files.known(), *tree("four"));
    }
}
