//! Undo, redo, restore, show and list: what the user asks of the share's history.
//!
//! None of them touches history: each writes the tree it wants into the folder and lets the
//! next scan make it a local version, pushed and merged like any edit, so every other node gets
//! it and it can itself be undone. Before writing, the folder is scanned and a change found on
//! disk is versioned first, so nothing the user saved is overwritten unrecorded.

use chorus_chunking::chunker::chunk_bytes;
use chorus_chunking::{ChunkerParams, Entry, RelPath, TreeManifest, VersionId, VersionNumber};
use chorus_merge::reapply::{Change, NewContent, reapply, reapply_beside};
use serde_json::{Value, json};

use super::{Notice, Replica};
use crate::event::{Action, Event};
use crate::folder::{Folder, FolderError};
use crate::leader::Loader;

/// Why a request was refused, as an HTTP status and a message for the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub status: u16,
    pub message: String,
}

impl Refusal {
    /// 409: the request does not fit the node's state now.
    pub fn conflict(message: impl Into<String>) -> Self {
        Refusal {
            status: 409,
            message: message.into(),
        }
    }

    /// 400: the request names something that does not exist or is malformed.
    pub fn bad(message: impl Into<String>) -> Self {
        Refusal {
            status: 400,
            message: message.into(),
        }
    }

    /// 500: the node failed carrying it out.
    pub fn failed(e: impl std::fmt::Display) -> Self {
        Refusal {
            status: 500,
            message: e.to_string(),
        }
    }
}

/// Where a run of undos stands: it started at the accepted version numbered MAJOR `top`, the
/// share now holds the tree of MAJOR `at`, and the last undo or redo left the folder holding
/// `wrote` (the walk goes on only while it still does).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(super) struct UndoWalk {
    pub top: u64,
    pub at: u64,
    pub wrote: VersionId,
}

/// Where the undo walk is kept in the store.
pub(super) const UNDO_WALK_KEY: &str = "undo_walk";

/// An answer, and the messages and proposals it set off.
pub type Answer = Result<(Value, Vec<Action>), Refusal>;

/// Where a document share's one file sits in its tree.
const DOCUMENT_PATH: &str = "document";

impl<F: Folder> Replica<F> {
    /// The folder as it is on disk, with any change not versioned yet handed to the engine
    /// first. Refused while paused (the user asked for the share to be left alone).
    fn settled_disk(&mut self, now: u64, out: &mut Vec<Action>) -> Result<TreeManifest, Refusal> {
        if self.paused {
            return Err(Refusal::conflict(
                "paused: `chorus resume` first, then undo, redo or restore",
            ));
        }
        let Some(tree) = self.read().map_err(Refusal::failed)? else {
            return Err(Refusal::conflict(self.unavailable.clone().unwrap_or_else(
                || "the folder is being written; run the command again".into(),
            )));
        };
        if tree.version_id() != self.engine.folder() {
            out.extend(
                self.handle(now, Event::Local(tree.clone()))
                    .map_err(Refusal::failed)?,
            );
        }
        if self.engine.work().is_some() {
            // Written over now, changes the group has not taken in would be kept nowhere: the
            // version that holds them would be superseded before it was ever sent.
            self.outbox.append(out);
            return Err(Refusal::conflict(
                "the share has changes the group has not accepted yet (they are being sent, or wait for a leader): run the command again once `chorus status` shows settled",
            ));
        }
        Ok(tree)
    }

    /// Writes `target` over `disk` and versions it; how many paths changed.
    fn write_tree(
        &mut self,
        now: u64,
        disk: &TreeManifest,
        target: &TreeManifest,
        out: &mut Vec<Action>,
    ) -> Result<usize, Refusal> {
        let changed = disk
            .iter()
            .filter(|(p, e)| target.get(p) != Some(*e))
            .count()
            + target.iter().filter(|(p, _)| disk.get(p).is_none()).count();
        let written = self.write(disk, target);
        // Whatever was written, and a save that stopped the writing, are versioned now.
        out.extend(self.scan(now).map_err(Refusal::failed)?);
        match written {
            Ok(()) => Ok(changed),
            Err(FolderError::Changed(path)) => Err(Refusal::conflict(format!(
                "{path} changed while this was being written; that change is versioned first: run the command again"
            ))),
            Err(e) => Err(Refusal::failed(e)),
        }
    }

    /// The tree of an accepted version kept here.
    pub(super) fn tree_of(
        &self,
        version: &VersionId,
        number: VersionNumber,
    ) -> Result<TreeManifest, Refusal> {
        self.engine
            .manifest(version)
            .map_err(Refusal::failed)?
            .map(std::sync::Arc::unwrap_or_clone)
            .ok_or_else(|| {
                Refusal::conflict(format!(
                    "version {number} is no longer kept here (history retention removed it)"
                ))
            })
    }

    /// An accepted version by `MAJOR.MINOR` or by (a unique prefix of) its id.
    pub fn find_version(&self, spec: &str) -> Result<(VersionId, VersionNumber), Refusal> {
        let headers = self.engine.headers().map_err(Refusal::failed)?;
        let found: Vec<_> = if let Ok(n) = spec.parse::<VersionNumber>() {
            headers.iter().filter(|h| h.number == n).collect()
        } else {
            let spec = spec.to_ascii_lowercase();
            if spec.len() < 4 || !spec.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(Refusal::bad(format!(
                    "`{spec}` is neither a version number (MAJOR.MINOR, as `chorus log` shows) nor a version id (at least 4 hex digits)"
                )));
            }
            headers
                .iter()
                .filter(|h| h.version.to_string().starts_with(&spec))
                .collect()
        };
        match found.as_slice() {
            [h] => Ok((h.version, h.number)),
            [] => Err(Refusal::bad(format!(
                "no accepted version {spec} in the history kept here; see `chorus log`"
            ))),
            _ => Err(Refusal::bad(format!(
                "{spec} names more than one version; give more digits"
            ))),
        }
    }

    /// A path as the user gives it, in the tree's terms (a document share has one).
    pub(super) fn tree_path(&self, document: bool, path: &str) -> Result<RelPath, Refusal> {
        let p = if document {
            DOCUMENT_PATH
        } else {
            path.trim_matches('/')
        };
        RelPath::new(p).map_err(|e| Refusal::bad(e.to_string()))
    }

    /// Makes the share, or one path in it, what it was in an accepted version.
    pub fn restore(&mut self, now: u64, spec: &str, path: Option<&str>, document: bool) -> Answer {
        let (version, number) = self.find_version(spec)?;
        let mut out = Vec::new();
        let disk = self.settled_disk(now, &mut out)?;
        let then = self.without_ignored(self.tree_of(&version, number)?, &disk)?;
        let target = match path {
            None => then,
            Some(p) => {
                let p = self.tree_path(document, p)?;
                let under = |q: &RelPath| q.starts_with(&p);
                if !then.iter().any(|(q, _)| under(q)) && !disk.iter().any(|(q, _)| under(q)) {
                    return Err(Refusal::bad(format!(
                        "{p} is neither in version {number} nor in the share now"
                    )));
                }
                TreeManifest::from_entries(
                    disk.iter()
                        .filter(|(q, _)| !under(q))
                        .chain(then.iter().filter(|(q, _)| under(q)))
                        .map(|(q, e)| (q.clone(), e.clone())),
                )
                .map_err(|e| Refusal::conflict(format!("cannot restore {p} here: {e}")))?
            }
        };
        let changed = self.write_tree(now, &disk, &target, &mut out)?;
        let answer = json!({"restored": number.to_string(), "path": path, "changed": changed});
        self.notices.push(Notice::History {
            kind: "restored",
            detail: json!({"version": number.to_string(), "path": path, "changed": changed}),
        });
        Ok((answer, out))
    }

    /// The tree of the accepted version numbered MAJOR `major` (0: the empty tree before
    /// anything was accepted).
    fn tree_at(&self, major: u64) -> Result<(TreeManifest, VersionNumber), Refusal> {
        if major == 0 {
            return Ok((TreeManifest::empty(), VersionNumber::default()));
        }
        let headers = self.engine.headers().map_err(Refusal::failed)?;
        let h = headers
            .iter()
            .find(|h| h.number.major == major)
            .ok_or_else(|| {
                Refusal::conflict(format!(
                    "version {major}.x is no longer kept here (history retention removed it); see `chorus log`"
                ))
            })?;
        Ok((self.tree_of(&h.version, h.number)?, h.number))
    }

    /// `target` as a history operation may write it over `disk`: what this share ignores now
    /// and the ignore-rule files (`.chorusignore`) stay as `disk` has them (an ignored path is
    /// never created, changed or removed, whatever an old version held there, and going back
    /// never switches a rule off).
    fn without_ignored(
        &self,
        target: TreeManifest,
        disk: &TreeManifest,
    ) -> Result<TreeManifest, Refusal> {
        let kept_out = |p: &RelPath| self.folder.is_ignored(p) || self.folder.holds_ignore_rules(p);
        if !target.iter().chain(disk.iter()).any(|(p, _)| kept_out(p)) {
            return Ok(target);
        }
        TreeManifest::from_entries(
            target
                .into_entries()
                .into_iter()
                .filter(|(p, _)| !kept_out(p))
                .chain(
                    disk.iter()
                        .filter(|(p, _)| kept_out(p))
                        .map(|(p, e)| (p.clone(), e.clone())),
                ),
        )
        .map_err(|e| Refusal::conflict(format!("cannot leave the ignored paths as they are: {e}")))
    }

    /// Records where the run of undos stands, durably, so a restart does not end it.
    fn set_walk(&mut self, walk: Option<UndoWalk>) -> Result<(), Refusal> {
        self.walk = walk;
        self.engine
            .save_record(UNDO_WALK_KEY, walk.as_ref())
            .map_err(Refusal::failed)
    }

    /// Goes back one accepted version. Repeated, it goes further back: each undo steps from
    /// where the last one left the share (while the share still holds what it wrote; any other
    /// change starts a new walk from the newest accepted version).
    pub fn undo(&mut self, now: u64) -> Answer {
        let mut out = Vec::new();
        let disk = self.settled_disk(now, &mut out)?;
        let (top, at) = match self.walk {
            Some(w) if w.wrote == disk.version_id() => (w.top, w.at),
            _ => {
                let head = self.engine.head().1.major;
                (head, head)
            }
        };
        if at == 0 {
            return Err(Refusal::conflict(
                "nothing to undo: no accepted version before this one",
            ));
        }
        let (_, undid) = self.tree_at(at)?;
        let (then, back_to) = self.tree_at(at - 1)?;
        let target = self.without_ignored(then, &disk)?;
        let changed = self.write_tree(now, &disk, &target, &mut out)?;
        self.set_walk(Some(UndoWalk {
            top,
            at: at - 1,
            wrote: self.engine.folder(),
        }))?;
        let answer =
            json!({"undid": undid.to_string(), "back_to": back_to.to_string(), "changed": changed});
        self.notices.push(Notice::History {
            kind: "undone",
            detail: answer.clone(),
        });
        Ok((answer, out))
    }

    /// Takes back the last undo: one step forward again, while the share still holds what the
    /// last undo or redo wrote.
    pub fn redo_undo(&mut self, now: u64) -> Answer {
        let mut out = Vec::new();
        let disk = self.settled_disk(now, &mut out)?;
        let Some(w) = self.walk else {
            return Err(Refusal::conflict(
                "no undo to take back; `chorus redo ENTRY` brings back a displaced change (see `chorus conflicts`)",
            ));
        };
        if w.wrote != disk.version_id() {
            self.set_walk(None)?;
            return Err(Refusal::conflict(
                "the share changed since the last undo, so redo would overwrite that change; use `chorus restore VERSION`",
            ));
        }
        if w.at >= w.top {
            return Err(Refusal::conflict(
                "nothing to redo: every undo was taken back",
            ));
        }
        let (then, number) = self.tree_at(w.at + 1)?;
        let target = self.without_ignored(then, &disk)?;
        let changed = self.write_tree(now, &disk, &target, &mut out)?;
        self.set_walk(Some(UndoWalk {
            top: w.top,
            at: w.at + 1,
            wrote: self.engine.folder(),
        }))?;
        self.notices.push(Notice::History {
            kind: "redone",
            detail: json!({"version": number.to_string(), "changed": changed}),
        });
        Ok((
            json!({"redone": number.to_string(), "changed": changed}),
            out,
        ))
    }

    /// Brings back the change redo entry `seq` holds: in place when it still fits, beside
    /// the file otherwise; always beside the file with `beside`, leaving what won as it is.
    pub fn redo_entry(
        &mut self,
        now: u64,
        seq: u64,
        beside: bool,
        params: ChunkerParams,
    ) -> Answer {
        let records = self.engine.redo().map_err(Refusal::failed)?;
        let Some(rec) = records.into_iter().find(|r| r.seq == seq) else {
            return Err(Refusal::bad(format!(
                "no redo entry {seq}; `chorus conflicts` lists them"
            )));
        };
        let mut out = Vec::new();
        let entry = match self.resolve(&rec.entry) {
            Ok(e) => e,
            Err(tree) => {
                // Fetched from the members that hold it; the command works once it is here.
                let actions = self.engine.fetch(tree, now);
                let reachable = !actions.is_empty();
                self.outbox.extend(actions);
                return Err(Refusal::conflict(format!(
                    "redo entry {seq}: the displaced content (version {tree}) is not here yet and is being fetched from the other members; run the command again in a moment{}",
                    if reachable {
                        ""
                    } else {
                        " (no member is reachable now)"
                    }
                )));
            }
        };
        let disk = self.settled_disk(now, &mut out)?;
        let chunks = self.engine.chunks().clone();
        let re = if beside {
            reapply_beside(&entry, &disk)
        } else {
            reapply(&entry, &disk, &Loader(&*chunks))
        }
        .map_err(|e| Refusal::conflict(format!("redo entry {seq}: {e}")))?;
        let mut entries = disk.entries().clone();
        let path = match re.change {
            Change::Remove { path } => {
                entries.remove(&path);
                path
            }
            Change::Write { path, content } => {
                let entry = match content {
                    NewContent::Entry(e) => e,
                    NewContent::Bytes { bytes, mode } => {
                        let manifest = chunk_bytes(&bytes, params);
                        let mut at = 0usize;
                        for c in manifest.chunks.iter() {
                            let end = at + c.len as usize;
                            chunks
                                .put(&c.id, &bytes[at..end])
                                .map_err(Refusal::failed)?;
                            at = end;
                        }
                        chunks.sync().map_err(Refusal::failed)?;
                        Entry::File { mode, manifest }
                    }
                };
                entries.insert(path.clone(), entry);
                path
            }
        };
        let target = TreeManifest::from_entries(entries)
            .map_err(|e| Refusal::conflict(format!("redo entry {seq}: {e}")))?;
        let target = self.without_ignored(target, &disk)?;
        // What the redo displaces in turn rides with the version it makes, onto the redo stack,
        // small enough for a push to carry (large hunks as the file they displaced, by chunks).
        let displaced = chorus_merge::redo::compact(
            re.displaced,
            &disk,
            chorus_proto::header::MAX_REDO_BYTES / 4,
        );
        let count = displaced.len();
        self.engine.note_displaced(displaced);
        let changed = self.write_tree(now, &disk, &target, &mut out)?;
        let why = re.aside.map(|a| a.as_str());
        self.notices.push(Notice::History {
            kind: "redone",
            detail: json!({"entry": seq, "path": path.to_string(), "in_place": re.in_place, "beside_why": why}),
        });
        Ok((
            json!({"entry": seq, "path": path.to_string(), "in_place": re.in_place, "beside_why": why, "changed": changed, "displaced": count}),
            out,
        ))
    }

    /// The redo entry with the large files it names by stored tree looked up here; `Err` with
    /// the first tree not stored here.
    pub fn resolve(
        &self,
        entry: &chorus_merge::RedoEntry,
    ) -> Result<chorus_merge::RedoEntry, VersionId> {
        entry.resolve(|tree, path| {
            self.engine
                .manifest(tree)
                .ok()
                .flatten()
                .map(|t| t.get(path).cloned())
        })
    }
}
