//! The checks a [`DiskFolder`] makes before it touches the share: its marker is there (or
//! is made, for a share from before markers), and the temp files a crashed run left are
//! removed, by the session tag their names carry.

use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

use chorus_sync::folder::FolderError;

use crate::confined as c;
use crate::disk::{DiskFolder, unavailable};
use crate::marker::{self, MARKER};
use crate::share::Share;

impl DiskFolder {
    pub(crate) fn check_marker(&mut self, root: &Path, fd: &OwnedFd) -> Result<(), FolderError> {
        let io = |e: std::io::Error| unavailable(format!("{}: {e}", root.display()));
        if marker::present(fd.as_fd()).map_err(io)? {
            if !self.state.marked {
                self.state.marked = true;
                if let Err(e) = self.save() {
                    tracing::warn!("{e}");
                }
            }
            return Ok(());
        }
        let hint = format!(
            "if its disk is not mounted, mount it; if the folder is right as it is, \
             create the marker: touch {}",
            root.join(MARKER).display()
        );
        if self.state.marked {
            return Err(unavailable(format!(
                "{} has lost its marker {MARKER}, so it may not be the share any more: {hint}",
                root.display()
            )));
        }
        // A share from before markers: it gets one, unless its folder is empty (which is
        // what an unmounted disk looks like).
        let names = c::list(fd.as_fd()).map_err(io)?;
        let state_dir_name = self.state_dir_rel.as_ref().map(|r| r.as_str().as_bytes());
        let content = names
            .iter()
            .any(|n| n != chorus_chunking::STATE_DIR.as_bytes() && Some(&n[..]) != state_dir_name);
        if !content {
            return Err(unavailable(format!(
                "{} is empty and has no marker {MARKER}: {hint}",
                root.display()
            )));
        }
        marker::create_at(fd.as_fd()).map_err(io)?;
        self.state.marked = true;
        if let Err(e) = self.save() {
            tracing::warn!("{e}");
        }
        Ok(())
    }

    /// Removes the temp files of earlier runs, then forgets their sessions.
    pub(crate) fn remove_leftovers(&mut self, root: &OwnedFd) -> Result<(), FolderError> {
        let stale: Vec<String> = self
            .state
            .sessions
            .iter()
            .filter(|s| **s != self.session)
            .cloned()
            .collect();
        if stale.is_empty() {
            self.leftovers_removed = true;
            return Ok(());
        }
        let recursive = matches!(self.share, Share::Folder(_));
        let mut complete = true;
        let mut removed = 0usize;
        c::open_dir_beneath(root.as_fd(), "").map_err(|e| unavailable(e.to_string()))?;
        // Paths, each opened when its turn comes: a handle per directory waiting would run
        // out of open files in a share of thousands of directories side by side.
        let mut stack = vec![String::new()];
        while let Some(rel) = stack.pop() {
            let dir = match c::open_dir_beneath(root.as_fd(), &rel) {
                Ok(d) => d,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(_) => {
                    complete = false;
                    continue;
                }
            };
            let Ok(names) = c::list(dir.as_fd()) else {
                complete = false;
                continue;
            };
            for name in names {
                let Some(n) = c::utf8(&name) else { continue };
                let Ok(Some(st)) = c::stat_at(dir.as_fd(), n) else {
                    continue;
                };
                let kind = c::kind(&st);
                if kind == rustix::fs::FileType::Directory {
                    if recursive && self.state_dir_id != Some((st.st_dev, st.st_ino)) {
                        stack.push(if rel.is_empty() {
                            n.to_owned()
                        } else {
                            format!("{rel}/{n}")
                        });
                    }
                } else if stale.iter().any(|s| c::is_temp_of(&name, s)) {
                    match c::unlink_at(dir.as_fd(), n) {
                        Ok(()) => removed += 1,
                        Err(_) => complete = false,
                    }
                }
            }
        }
        if removed > 0 {
            tracing::info!(
                removed,
                "removed half-written files a crash left in the folder"
            );
        }
        if complete {
            self.state.sessions.retain(|s| *s == self.session);
            if let Err(e) = self.save() {
                tracing::warn!("{e}");
            }
        }
        self.leftovers_removed = true;
        Ok(())
    }
}
