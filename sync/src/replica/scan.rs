//! Reading the folder: a scan (all of it, or the paths the watcher named) handed to the
//! engine as a local change, and what a folder that cannot be read means for the replica.

use chorus_chunking::TreeManifest;

use super::{Notice, Replica};
use crate::event::{Action, Event};
use crate::folder::{Folder, FolderError};
use crate::step::EngineError;

impl<F: Folder> Replica<F> {
    /// Scans the folder (unless paused) and hands a change to the engine (timed once the
    /// folder has been read, when the replica has a clock: see [`Replica::set_clock`]).
    pub fn scan(&mut self, now: u64) -> Result<Vec<Action>, EngineError> {
        self.scan_with(now, None)
    }

    /// As [`scan`](Self::scan), looking at the paths the watcher said `changed` (see
    /// [`Folder::scan_paths`]).
    pub fn scan_paths(
        &mut self,
        now: u64,
        changed: &[std::path::PathBuf],
    ) -> Result<Vec<Action>, EngineError> {
        self.scan_with(now, Some(changed))
    }

    fn scan_with(
        &mut self,
        now: u64,
        changed: Option<&[std::path::PathBuf]>,
    ) -> Result<Vec<Action>, EngineError> {
        if self.paused {
            return Ok(Vec::new());
        }
        let read = match changed {
            Some(paths) => self.read_via(|f| f.scan_paths(paths)),
            None => self.read(),
        };
        let Some(tree) = read? else {
            return Ok(Vec::new());
        };
        if tree.version_id() != self.engine.folder() {
            self.notices.push(Notice::Scanned {
                version: tree.version_id(),
                entries: tree.len(),
            });
            return self.handle(now, Event::Local(tree));
        }
        Ok(Vec::new())
    }

    /// The folder as it is now, its chunks stored; `None` while it cannot be read (reported
    /// once).
    pub(super) fn read(&mut self) -> Result<Option<TreeManifest>, EngineError> {
        self.read_via(F::scan)
    }

    /// The folder right before a version is written over it: `Ok(Some(None))` when it still
    /// holds what the engine last knew (see [`Folder::scan_before_write`]).
    pub(super) fn read_before_write(
        &mut self,
    ) -> Result<Option<Option<TreeManifest>>, EngineError> {
        let expected = self.engine.folder();
        self.read_via(|f| f.scan_before_write(expected))
    }

    fn read_via<T>(
        &mut self,
        scan: impl FnOnce(&mut F) -> Result<T, FolderError>,
    ) -> Result<Option<T>, EngineError> {
        match scan(&mut self.folder) {
            Ok(tree) => {
                self.unavailable = None;
                Ok(Some(tree))
            }
            Err(FolderError::Unavailable(reason)) => {
                if self.unavailable.as_deref() != Some(reason.as_str()) {
                    tracing::warn!("{reason}");
                    self.notices.push(Notice::Unavailable {
                        reason: reason.clone(),
                    });
                }
                self.unavailable = Some(reason);
                Ok(None)
            }
            Err(FolderError::Chunks(e)) => Err(e.into()),
            Err(FolderError::Changed(path)) => {
                // Not a scan's answer; read it as "try again shortly".
                tracing::debug!(%path, "the folder changed while it was scanned");
                self.stalled = true;
                Ok(None)
            }
        }
    }
}
