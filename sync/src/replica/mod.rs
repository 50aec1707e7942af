//! [`Replica`]: one node's sync engine and its working folder, with the rules that keep the
//! user's edits safe between the two. The engine asks for versions to be materialized; the
//! replica writes them only when that loses nothing:
//!
//! - the folder is scanned right before writing, and a change found there is versioned and
//!   pushed first (merged by the leader) instead of being overwritten; the folder itself stops
//!   at a file changed after that scan ([`FolderError::Changed`]);
//! - while paused nothing is scanned or written; the newest version waits;
//! - a version that would delete too much ([`MassDeleteGuard`]) waits for the user's confirm;
//! - a path that cannot be written is reported and retried, and stops nothing else.
//!
//! History operations (undo, redo, restore, show: `history_ops.rs`) write the tree they want
//! into the folder and let the next scan make it a version like any edit. It is sans IO but for
//! the folder it is given, so the simulation drives the same rules the daemon runs.

mod browse;
mod history_ops;
mod scan;

use std::collections::{BTreeMap, VecDeque};

use chorus_chunking::{RelPath, TreeManifest, VersionId};

use crate::engine::Engine;
use crate::event::{Action, Event};
use crate::folder::{Folder, FolderError, PathFailure};
use crate::guard::MassDeleteGuard;
use crate::step::EngineError;

pub use self::history_ops::Refusal;

/// Something the user may want to know, for the event stream and the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// A local change was versioned.
    Scanned {
        version: VersionId,
        entries: usize,
    },
    /// A version was written into the folder.
    Materialized {
        version: VersionId,
        entries: usize,
    },
    /// A version waits for `resume --confirm`: it deletes `deleting` of `files` files.
    Held {
        version: VersionId,
        deleting: usize,
        files: usize,
    },
    /// A path could not be written (it is retried with the next version and at resume).
    WriteFailed {
        path: RelPath,
        reason: String,
    },
    /// The folder cannot be used (not mounted, gone, its marker missing); nothing is scanned
    /// or written until it is back.
    Unavailable {
        reason: String,
    },
    Paused,
    Resumed,
    /// A history operation (undo, redo, restore) was carried out; `detail` is its answer.
    History {
        kind: &'static str,
        detail: serde_json::Value,
    },
}

/// A version not written yet, and why.
#[derive(Debug, Clone)]
pub struct Held {
    pub version: VersionId,
    pub tree: std::sync::Arc<TreeManifest>,
    /// Set when the mass-delete guard holds it: how many files it deletes, of how many.
    pub mass_delete: Option<(usize, usize)>,
}

/// The engine and the folder of one node.
pub struct Replica<F> {
    engine: Engine,
    folder: F,
    guard: MassDeleteGuard,
    /// Paused by the user: no scans, nothing written into the share.
    paused: bool,
    /// A version waiting to be written: while paused, or held by the mass-delete guard.
    held: Option<Held>,
    /// A version's writing stopped at a file whose change the scan then did not see (only its
    /// metadata changed): at the next tick the engine is told what the folder holds, and asks
    /// again for what to write.
    stalled: bool,
    /// Paths that could not be written, by path.
    failures: BTreeMap<RelPath, String>,
    /// Why the folder cannot be used now, if it cannot.
    unavailable: Option<String>,
    /// Where a run of undos and redos made here stands, while the share still holds what the
    /// last of them wrote.
    walk: Option<history_ops::UndoWalk>,
    queue: VecDeque<Event>,
    notices: Vec<Notice>,
    /// Messages to send that no event returned yet (a fetch a refused request started).
    outbox: Vec<Action>,
    /// A version whose writing needs chunks this node lacks (dropped as corrupt, or lost),
    /// and when to ask for them again; once they are all here it is written.
    refetching: Option<(VersionId, u64)>,
    /// Where the time of each event comes from, read as the event is handled; without it, the
    /// time the call was given. See [`set_clock`](Self::set_clock).
    clock: Option<Clock>,
}

/// A source of the time in milliseconds.
pub type Clock = Box<dyn Fn() -> u64 + Send>;

/// How often chunks a version lacks are asked for again.
const REFETCH_EVERY_MS: u64 = 2_000;

impl<F: Folder> Replica<F> {
    pub fn new(engine: Engine, folder: F, guard: MassDeleteGuard) -> Self {
        // A run of undos goes on after a restart (a store that cannot say starts a new one).
        let walk = engine
            .load_record(history_ops::UNDO_WALK_KEY)
            .ok()
            .flatten();
        Replica {
            engine,
            folder,
            guard,
            paused: false,
            held: None,
            stalled: false,
            failures: BTreeMap::new(),
            unavailable: None,
            walk,
            queue: VecDeque::new(),
            notices: Vec::new(),
            outbox: Vec::new(),
            refetching: None,
            clock: None,
        }
    }

    /// Times each event when it is handled, not when the call that brought it began: a scan
    /// of a large share, or a version of 100k files written, takes seconds, and what follows
    /// was timed from before it (a leader's offer already older than its retry period went out
    /// twice). The daemon gives its wall clock; a simulation none (each call's time stands).
    pub fn set_clock(&mut self, clock: Option<Clock>) {
        self.clock = clock;
    }

    /// The time to handle an event at: the clock's now, else `given`.
    fn time(&self, given: u64) -> u64 {
        self.clock.as_ref().map_or(given, |c| c())
    }

    /// Takes the replica apart (a simulated crash reopens the engine on its stores).
    pub fn into_parts(self) -> (Engine, F) {
        (self.engine, self.folder)
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The engine, for what only it does (history retention).
    pub fn engine_mut(&mut self) -> &mut Engine {
        &mut self.engine
    }

    pub fn folder(&self) -> &F {
        &self.folder
    }

    pub fn folder_mut(&mut self) -> &mut F {
        &mut self.folder
    }

    pub fn is_paused(&self) -> bool {
        self.paused
    }

    pub fn held(&self) -> Option<&Held> {
        self.held.as_ref()
    }

    /// Paths that could not be written, with the reason.
    pub fn failures(&self) -> &BTreeMap<RelPath, String> {
        &self.failures
    }

    /// Why the folder cannot be used now, if it cannot.
    pub fn unavailable(&self) -> Option<&str> {
        self.unavailable.as_deref()
    }

    /// What must go out that no event returned (after a refused request).
    pub fn take_outbox(&mut self) -> Vec<Action> {
        std::mem::take(&mut self.outbox)
    }

    /// What happened since the last call.
    pub fn take_notices(&mut self) -> Vec<Notice> {
        std::mem::take(&mut self.notices)
    }

    /// Feeds an event at `now` and returns what must go out (messages, proposals); versions
    /// to write are written here.
    pub fn handle(&mut self, now: u64, event: Event) -> Result<Vec<Action>, EngineError> {
        self.queue.push_back(event);
        self.drain(now)
    }

    /// Time passed: retries due now, and a stopped writing tried again.
    pub fn tick(&mut self, now: u64) -> Result<Vec<Action>, EngineError> {
        if let Some((version, at)) = self.refetching
            && now >= at
        {
            let (missing, out) = self.engine.refetch(version, now)?;
            self.outbox.extend(out);
            if missing == 0 {
                // Every chunk is back (durably: some may have come in with the windows of a
                // delta still on its way, which leave them unsynced): what the engine wants
                // written is asked for again.
                self.engine.chunks().sync()?;
                tracing::info!(?version, "the missing chunks arrived; writing the version");
                self.refetching = None;
                self.stalled = true;
            } else {
                self.refetching = Some((version, now + REFETCH_EVERY_MS));
            }
        }
        if std::mem::take(&mut self.stalled) {
            if self.paused {
                self.stalled = true;
            } else if let Some(tree) = self.read()? {
                self.queue.push_back(Event::Local(tree));
            }
        }
        self.handle(now, Event::Tick)
    }

    /// When the replica next needs a [`tick`](Self::tick), on the clock it is fed.
    pub fn poll_timeout(&self) -> Option<u64> {
        if self.stalled {
            return Some(0);
        }
        if let Some((_, at)) = self.refetching {
            return Some(self.engine.poll_timeout().map_or(at, |t| t.min(at)));
        }
        self.engine.poll_timeout()
    }

    /// Feeds the queued events and carries out what they ask of the folder.
    fn drain(&mut self, now: u64) -> Result<Vec<Action>, EngineError> {
        let mut out = std::mem::take(&mut self.outbox);
        while let Some(ev) = self.queue.pop_front() {
            let now = self.time(now);
            for action in self.engine.handle(now, ev)? {
                match action {
                    Action::Materialize { version, tree } => {
                        self.materialize(version, tree, false)?
                    }
                    other => out.push(other),
                }
            }
        }
        Ok(out)
    }

    /// Writes `version` into the folder, unless paused (then it waits), the folder changed
    /// since it was last scanned (then the change is scanned and pushed first), or the version
    /// deletes too much and `confirmed` is not set (then it waits for `resume --confirm`).
    fn materialize(
        &mut self,
        version: VersionId,
        tree: std::sync::Arc<TreeManifest>,
        confirmed: bool,
    ) -> Result<(), EngineError> {
        if self.paused {
            self.held = Some(Held {
                version,
                tree,
                mass_delete: None,
            });
            return Ok(());
        }
        // Never overwrite what changed since the last scan: scan it as a local edit.
        let in_folder = self.engine.folder();
        let Some(now_on_disk) = self.read_before_write()? else {
            // The folder cannot be read now: write nothing; the version waits for the next
            // scan that works (it is asked for again then).
            self.stalled = self.unavailable.is_none();
            return Ok(());
        };
        if let Some(now_on_disk) = now_on_disk
            && now_on_disk.version_id() != in_folder
        {
            tracing::debug!(?version, on_disk = ?now_on_disk.version_id(), "local edits first");
            self.queue.push_back(Event::Local(now_on_disk));
            return Ok(());
        }
        let old = self.engine.manifest(&in_folder)?.unwrap_or_default();
        if !confirmed && let Some((deleting, of)) = self.guard.trips(&old, &tree) {
            tracing::warn!(
                deleting,
                of,
                "a version that deletes {deleting} of {of} files is held: `chorus resume --confirm` writes it"
            );
            self.notices.push(Notice::Held {
                version,
                deleting,
                files: of,
            });
            self.held = Some(Held {
                version,
                tree,
                mass_delete: Some((deleting, of)),
            });
            return Ok(());
        }
        self.held = None;
        tracing::debug!(?version, from = ?in_folder, "materialize");
        let started = std::time::Instant::now();
        match self.write(&old, &tree) {
            Ok(()) => {
                let ms = started.elapsed().as_millis() as u64;
                tracing::debug!(?version, entries = tree.len(), ms, "materialized");
            }
            Err(FolderError::Changed(path)) => {
                // A save landed while the version was written: it is scanned and pushed, and
                // the version (or a newer one merging that save) is written afterwards.
                tracing::info!(path = %chorus_proto::shown(path.as_str()), ?version, "a file changed while a version was being written; its change goes first");
                match self.read()? {
                    Some(t) if t.version_id() != in_folder => {
                        self.queue.push_back(Event::Local(t));
                    }
                    _ => self.stalled = true,
                }
                return Ok(());
            }
            Err(FolderError::Unavailable(_)) => return Ok(()),
            Err(FolderError::Chunks(e)) => return self.lacks_chunks(version, e),
        }
        self.notices.push(Notice::Materialized {
            version,
            entries: tree.len(),
        });
        self.queue.push_back(Event::Materialized { version });
        Ok(())
    }

    /// Writing `version` stopped at a chunk this node lacks: a corrupt one the store dropped,
    /// or one lost. It is fetched again from the leader (or the other members), and the
    /// version written once everything is here; any other store failure is the engine's.
    fn lacks_chunks(
        &mut self,
        version: VersionId,
        e: chorus_chunking::Error,
    ) -> Result<(), EngineError> {
        use chorus_chunking::Error as E;
        let (E::Missing { id } | E::Corrupt { id }) = e else {
            return Err(e.into());
        };
        tracing::warn!(chunk = %id, ?version, "a chunk this version needs is missing or corrupt here; fetching it again");
        if self.refetching.map(|(v, _)| v) != Some(version) {
            self.refetching = Some((version, 0));
        }
        Ok(())
    }

    /// Writes `new` over `old` through the folder, keeping account of the paths that failed.
    fn write(&mut self, old: &TreeManifest, new: &TreeManifest) -> Result<(), FolderError> {
        let report = match self.folder.write(old, new) {
            Err(FolderError::Unavailable(reason)) => {
                if self.unavailable.as_deref() != Some(reason.as_str()) {
                    tracing::warn!("{reason}");
                    self.notices.push(Notice::Unavailable {
                        reason: reason.clone(),
                    });
                }
                self.unavailable = Some(reason.clone());
                return Err(FolderError::Unavailable(reason));
            }
            other => other?,
        };
        let failed: BTreeMap<RelPath, String> = report
            .failed
            .into_iter()
            .map(|PathFailure { path, reason }| (path, reason))
            .collect();
        for (path, reason) in &failed {
            if self.failures.get(path) != Some(reason) {
                tracing::warn!(
                    path = %chorus_proto::shown(path.as_str()),
                    "cannot write this path: {}",
                    chorus_proto::shown(reason)
                );
                self.notices.push(Notice::WriteFailed {
                    path: path.clone(),
                    reason: reason.clone(),
                });
            }
        }
        self.failures = failed;
        Ok(())
    }

    /// Stops scanning and writing (Raft and storage go on).
    pub fn pause(&mut self) {
        if !self.paused {
            self.paused = true;
            self.notices.push(Notice::Paused);
        }
    }

    /// Scans and writes again: local edits made meanwhile are versioned first, then the
    /// version held is written (`confirm` also releases one the mass-delete guard holds), and
    /// paths that failed are tried again. Returns the version released, if any.
    pub fn resume(
        &mut self,
        now: u64,
        confirm: bool,
    ) -> Result<(Option<VersionId>, Vec<Action>), Refusal> {
        if std::mem::replace(&mut self.paused, false) {
            self.notices.push(Notice::Resumed);
        }
        let Some(held) = self.held.take() else {
            let mut out = self.retry_failures(now).map_err(Refusal::failed)?;
            out.extend(self.scan(now).map_err(Refusal::failed)?);
            return Ok((None, out));
        };
        if let Some((deleting, files)) = held.mass_delete
            && !confirm
        {
            self.held = Some(held);
            return Err(Refusal::conflict(format!(
                "a version that deletes {deleting} of the {files} files here is held; \
                 `chorus resume --confirm` writes it (its files stay in history: `chorus restore`)"
            )));
        }
        let released = held.version;
        self.materialize(held.version, held.tree, confirm)
            .map_err(Refusal::failed)?;
        let mut out = self.drain(now).map_err(Refusal::failed)?;
        out.extend(self.scan(now).map_err(Refusal::failed)?);
        Ok((Some(released), out))
    }

    /// At start, after the first scan: the paths the folder could not write before the
    /// restart (it remembers them) are written again, now that space or permissions may have
    /// come back. Before any scan the folder has seen none of its files, and a write never
    /// replaces a file it has not seen: such a path would stay unwritten.
    pub fn retry_after_restart(&mut self, now: u64) -> Result<Vec<Action>, EngineError> {
        if self.paused {
            return Ok(Vec::new());
        }
        self.retry_writes(now)
    }

    /// Writes the paths that failed again (the folder holds the version otherwise).
    fn retry_failures(&mut self, now: u64) -> Result<Vec<Action>, EngineError> {
        if self.failures.is_empty() {
            return Ok(Vec::new());
        }
        self.retry_writes(now)
    }

    fn retry_writes(&mut self, now: u64) -> Result<Vec<Action>, EngineError> {
        let version = self.engine.folder();
        let Some(tree) = self.engine.manifest(&version)? else {
            return Ok(Vec::new());
        };
        // The folder knows what it could not write: writing the version over itself retries
        // exactly those paths.
        match self.write(&tree, &tree) {
            Ok(()) | Err(FolderError::Unavailable(_)) | Err(FolderError::Changed(_)) => {}
            Err(FolderError::Chunks(e)) => self.lacks_chunks(version, e)?,
        }
        self.drain(now)
    }
}
