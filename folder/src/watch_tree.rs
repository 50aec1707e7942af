//! The directories of a share under inotify watches: their one owner. It maps each watch
//! descriptor to the directory it watches (so an event names a path), adds the watches of a
//! directory that appears (with everything below it), and drops those of one that goes.
//!
//! The state directory is never watched: the daemon's own chunk store and database change
//! with every chunk it receives, and each of those writes would be an event to wake for and
//! throw away. Symlinks are never followed; a directory that cannot be watched (unreadable,
//! gone meanwhile) is left to the scans, which report it.

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsStr;
use std::io;
use std::path::{Path, PathBuf};

use inotify::{Inotify, WatchDescriptor, WatchMask};

/// What the watches ask to hear: every change of an entry's content, metadata or name, and a
/// watched directory's own removal or move. Opening, reading and closing without writing are
/// not asked for (a scan does all three to every file it reads).
pub(crate) fn mask() -> WatchMask {
    WatchMask::ATTRIB
        | WatchMask::CREATE
        | WatchMask::DELETE
        | WatchMask::CLOSE_WRITE
        | WatchMask::MODIFY
        | WatchMask::MOVED_FROM
        | WatchMask::MOVED_TO
        | WatchMask::DELETE_SELF
        | WatchMask::MOVE_SELF
        | WatchMask::ONLYDIR
        | WatchMask::DONT_FOLLOW
        | WatchMask::EXCL_UNLINK
}

/// The kernel has no room for another watch (`fs.inotify.max_user_watches`) or its memory.
pub(crate) fn out_of_watches(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOSPC | libc::ENOMEM))
}

/// The watched directories of one inotify instance.
pub(crate) struct WatchTree {
    inotify: Inotify,
    by_wd: HashMap<WatchDescriptor, PathBuf>,
    /// Sorted, so the watches at and below a directory are one range.
    by_path: BTreeMap<PathBuf, WatchDescriptor>,
    /// The share's directory (a document's: its directory).
    root: PathBuf,
    /// Never watched, nor anything below it.
    skip: PathBuf,
    /// Directories below the root are watched too (a folder share; a document's directory
    /// is watched alone).
    recursive: bool,
}

impl WatchTree {
    pub(crate) fn new(inotify: Inotify, root: PathBuf, skip: PathBuf, recursive: bool) -> Self {
        WatchTree {
            inotify,
            by_wd: HashMap::new(),
            by_path: BTreeMap::new(),
            root,
            skip,
            recursive,
        }
    }

    pub(crate) fn inotify(&mut self) -> &mut Inotify {
        &mut self.inotify
    }

    /// How many directories are watched.
    pub(crate) fn len(&self) -> usize {
        self.by_wd.len()
    }

    /// The watch is on the share's own directory.
    pub(crate) fn is_root(&self, wd: &WatchDescriptor) -> bool {
        self.by_wd.get(wd) == Some(&self.root)
    }

    /// Watches `top` and, when recursive, every directory below it. Running out of watches
    /// is an error, and so is a share's directory that cannot be watched; any other directory
    /// that cannot be watched or listed is skipped (gone meanwhile, unreadable: the scans say).
    pub(crate) fn add(&mut self, top: &Path) -> io::Result<()> {
        let mut todo = vec![top.to_path_buf()];
        while let Some(dir) = todo.pop() {
            if dir != self.root && dir.starts_with(&self.skip) {
                continue;
            }
            match self.inotify.watches().add(&dir, mask()) {
                Ok(wd) => {
                    if let Some(old) = self.by_wd.insert(wd.clone(), dir.clone())
                        && old != dir
                    {
                        // The same directory, met under a new name (moved): the old name goes.
                        self.by_path.remove(&old);
                    }
                    self.by_path.insert(dir.clone(), wd);
                }
                Err(e) if out_of_watches(&e) => return Err(e),
                Err(e) if dir == self.root => return Err(e),
                Err(_) => continue,
            }
            if !self.recursive {
                break;
            }
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                // The entry's own type: a symlink to a directory is not followed.
                if entry.file_type().is_ok_and(|t| t.is_dir()) {
                    todo.push(entry.path());
                }
            }
        }
        Ok(())
    }

    /// Stops watching `dir` and everything below it (moved away or removed).
    pub(crate) fn forget(&mut self, dir: &Path) {
        let below: Vec<(PathBuf, WatchDescriptor)> = self
            .by_path
            .range(dir.to_path_buf()..)
            .take_while(|(p, _)| p.starts_with(dir))
            .map(|(p, wd)| (p.clone(), wd.clone()))
            .collect();
        for (path, wd) in below {
            self.by_path.remove(&path);
            self.by_wd.remove(&wd);
            // Gone already when the directory was removed; the kernel says so with
            // IN_IGNORED, which then finds nothing to drop.
            let _ = self.inotify.watches().remove(wd);
        }
    }

    /// The kernel dropped a watch (its directory was removed, or its file system unmounted).
    pub(crate) fn dropped(&mut self, wd: &WatchDescriptor) {
        if let Some(path) = self.by_wd.remove(wd)
            && self.by_path.get(&path) == Some(wd)
        {
            self.by_path.remove(&path);
        }
    }

    /// The path an event on `wd` names (`name` in the watched directory, or the directory).
    pub(crate) fn path(&self, wd: &WatchDescriptor, name: Option<&OsStr>) -> Option<PathBuf> {
        let dir = self.by_wd.get(wd)?;
        Some(match name {
            Some(n) => dir.join(n),
            None => dir.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_directory_is_watched_but_the_state_dir_and_what_links_lead_to() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().canonicalize().unwrap();
        for d in ["a/b/c", "d", ".chorus/chunks/x", "outside/y"] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        std::os::unix::fs::symlink(root.join("outside"), root.join("d/link")).unwrap();
        let share = root.join("share");
        std::fs::create_dir(&share).unwrap();
        for d in ["a", "d"] {
            std::fs::rename(root.join(d), share.join(d)).unwrap();
        }
        std::fs::rename(root.join(".chorus"), share.join(".chorus")).unwrap();
        let mut tree = WatchTree::new(
            Inotify::init().unwrap(),
            share.clone(),
            share.join(".chorus"),
            true,
        );
        tree.add(&share).unwrap();
        let watched: Vec<&Path> = tree.by_path.keys().map(PathBuf::as_path).collect();
        let want: Vec<PathBuf> = ["", "a", "a/b", "a/b/c", "d"]
            .iter()
            .map(|d| {
                if d.is_empty() {
                    share.clone()
                } else {
                    share.join(d)
                }
            })
            .collect();
        assert_eq!(
            watched,
            want.iter().map(PathBuf::as_path).collect::<Vec<_>>()
        );
        // A subtree forgotten is every watch at and below it, and nothing beside it.
        tree.forget(&share.join("a"));
        assert_eq!(tree.len(), 2);
        assert!(tree.by_path.contains_key(&share.join("d")));
        // A document's directory is watched alone.
        let mut one = WatchTree::new(
            Inotify::init().unwrap(),
            share.clone(),
            root.join("st"),
            false,
        );
        one.add(&share).unwrap();
        assert_eq!(one.len(), 1);
    }
}
