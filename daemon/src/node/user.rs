//! What the user asks of a running node through the local socket: pause and resume, undo and
//! redo, restore, invite.
//!
//! Undo, redo and restore never touch history: each writes the tree it wants into the share
//! and lets the next scan make it a local version, pushed and merged like any edit, so every
//! other node gets it and it can itself be undone. Before writing, the share is scanned and a
//! change found on disk is versioned first, so nothing the user saved is overwritten unrecorded.

use chorus_chunking::chunker::chunk_bytes;
use chorus_chunking::{Entry, RelPath, TreeManifest, VersionId, VersionNumber};
use chorus_merge::redo::{Change, NewContent, reapply};
use serde_json::{Value, json};

use super::{Driver, Event};
use crate::api::{Refusal, Request};
use crate::config::ShareKind;
use crate::config::token::JoinToken;
use chorus_folder::materialize::MaterializeError;

type Answer = Result<Value, Refusal>;

fn failed(e: impl std::fmt::Display) -> Refusal {
    Refusal::failed(e.to_string())
}

impl Driver {
    /// Carries out one request from the socket.
    pub(super) async fn command(&mut self, request: Request) -> Answer {
        match request {
            Request::Pause => {
                self.paused = true;
                self.emit("paused", json!({}));
                Ok(json!({"paused": true}))
            }
            Request::Resume { confirm } => self.resume(confirm),
            Request::Undo => self.undo(),
            Request::Redo { entry: Some(seq) } => self.redo_entry(seq),
            Request::Redo { entry: None } => self.redo_undo(),
            Request::Restore { version, path } => self.restore(&version, path.as_deref()),
            Request::Invite => self.invite().await,
            Request::Show { version, path } => self.show(&version, &path),
        }
    }

    fn resume(&mut self, confirm: bool) -> Answer {
        let was_paused = std::mem::replace(&mut self.paused, false);
        if was_paused {
            self.emit("resumed", json!({}));
        }
        let Some(held) = self.held.take() else {
            self.scan().map_err(failed)?;
            return Ok(json!({"paused": false}));
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
        let released = held.version.to_string();
        self.materialize(held.version, held.tree, confirm)
            .and_then(|()| self.drain())
            .map_err(failed)?;
        self.scan().map_err(failed)?;
        Ok(json!({"paused": false, "released": released}))
    }

    /// The share as it is on disk, with any change not versioned yet handed to the engine
    /// first. Refused while paused (the user asked for the share to be left alone).
    fn settled_disk(&mut self) -> Result<TreeManifest, Refusal> {
        if self.paused {
            return Err(Refusal::conflict(
                "paused: `chorus resume` first, then undo, redo or restore",
            ));
        }
        let tree = self.read_share().map_err(failed)?;
        if tree.version_id() != self.engine.folder() {
            self.feed(Event::Local(tree.clone())).map_err(failed)?;
        }
        Ok(tree)
    }

    /// Writes `target` over `disk` and versions it.
    fn write_tree(&mut self, disk: &TreeManifest, target: &TreeManifest) -> Result<usize, Refusal> {
        let changed = disk
            .iter()
            .filter(|(p, e)| target.get(p) != Some(*e))
            .count()
            + target.iter().filter(|(p, _)| disk.get(p).is_none()).count();
        let written = self.write_share(disk, target);
        // Whatever was written, and a save that stopped the writing, are versioned now.
        self.scan().map_err(failed)?;
        match written {
            Ok(()) => Ok(changed),
            Err(super::NodeError::Materialize(MaterializeError::Changed(path))) => {
                Err(Refusal::conflict(format!(
                    "{path} changed while this was being written; that change is versioned first: run the command again"
                )))
            }
            Err(e) => Err(failed(e)),
        }
    }

    /// The tree of an accepted version kept here.
    fn tree_of(&self, version: &VersionId, number: VersionNumber) -> Result<TreeManifest, Refusal> {
        self.engine
            .manifest(version)
            .map_err(failed)?
            .ok_or_else(|| {
                Refusal::conflict(format!(
                    "version {number} is no longer kept here (history retention removed it)"
                ))
            })
    }

    /// An accepted version by `MAJOR.MINOR` or by (a unique prefix of) its id.
    fn find_version(&self, spec: &str) -> Result<(VersionId, VersionNumber), Refusal> {
        let headers = self.engine.headers().map_err(failed)?;
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

    fn restore(&mut self, spec: &str, path: Option<&str>) -> Answer {
        let (version, number) = self.find_version(spec)?;
        let then = self.tree_of(&version, number)?;
        let disk = self.settled_disk()?;
        let target = match path {
            None => then,
            Some(p) => {
                let p = match self.share_kind() {
                    ShareKind::Document => chorus_folder::DOCUMENT_PATH.to_owned(),
                    ShareKind::Folder => p.trim_matches('/').to_owned(),
                };
                let p = RelPath::new(&p).map_err(|e| Refusal::bad(e.to_string()))?;
                let under = |q: &RelPath| q == &p || q.as_str().starts_with(&format!("{p}/"));
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
        let changed = self.write_tree(&disk, &target)?;
        self.emit(
            "restored",
            json!({"version": number.to_string(), "path": path, "changed": changed}),
        );
        Ok(json!({"restored": number.to_string(), "path": path, "changed": changed}))
    }

    fn share_kind(&self) -> ShareKind {
        match self.share {
            super::Share::Folder(_) => ShareKind::Folder,
            super::Share::Document(_) => ShareKind::Document,
        }
    }

    /// Goes back one accepted version: the head's first parent, or, right after an undo, the
    /// parent of the version that undo went back to.
    fn undo(&mut self) -> Answer {
        let disk = self.settled_disk()?;
        let headers = self.engine.headers().map_err(failed)?;
        let from = match self.undos.last() {
            Some((_, back_to)) if *back_to == disk.version_id() => *back_to,
            _ => self.engine.head().0,
        };
        let Some(h) = headers.iter().rev().find(|h| h.version == from) else {
            return Err(Refusal::conflict(
                "nothing to undo: no accepted version yet, or it is no longer kept here",
            ));
        };
        let Some(parent) = h.parents.first().copied() else {
            return Err(Refusal::conflict(
                "nothing to undo: this is the first version",
            ));
        };
        let parent_number = headers
            .iter()
            .find(|p| p.version == parent)
            .map_or_else(VersionNumber::default, |p| p.number);
        let target = if parent == TreeManifest::empty().version_id() {
            TreeManifest::empty()
        } else {
            self.tree_of(&parent, parent_number)?
        };
        let changed = self.write_tree(&disk, &target)?;
        self.undos.push((from, parent));
        self.emit(
            "undone",
            json!({"undid": h.number.to_string(), "back_to": parent_number.to_string(), "changed": changed}),
        );
        Ok(
            json!({"undid": h.number.to_string(), "back_to": parent_number.to_string(), "changed": changed}),
        )
    }

    /// Takes back the last undo, if the share is still where that undo left it.
    fn redo_undo(&mut self) -> Answer {
        let disk = self.settled_disk()?;
        let Some(&(undone, back_to)) = self.undos.last() else {
            return Err(Refusal::conflict(
                "no undo to take back; `chorus redo ENTRY` brings back a displaced change (see `chorus conflicts`)",
            ));
        };
        if back_to != disk.version_id() {
            self.undos.clear();
            return Err(Refusal::conflict(
                "the share changed since the last undo, so redo would overwrite that change; use `chorus restore VERSION`",
            ));
        }
        let target = self
            .engine
            .manifest(&undone)
            .map_err(failed)?
            .ok_or_else(|| Refusal::conflict("the undone version is no longer kept here"))?;
        let changed = self.write_tree(&disk, &target)?;
        self.undos.pop();
        self.emit(
            "redone",
            json!({"version": undone.to_string(), "changed": changed}),
        );
        Ok(json!({"redone": undone.to_string(), "changed": changed}))
    }

    /// Brings back the change redo entry `seq` holds.
    fn redo_entry(&mut self, seq: u64) -> Answer {
        let records = self.engine.redo().map_err(failed)?;
        let Some(rec) = records.into_iter().find(|r| r.seq == seq) else {
            return Err(Refusal::bad(format!(
                "no redo entry {seq}; `chorus conflicts` lists them"
            )));
        };
        let disk = self.settled_disk()?;
        let loader = chorus_sync::leader::Loader(&**self.engine.chunks());
        let re = reapply(&rec.entry, &disk, &loader)
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
                        let manifest = chunk_bytes(&bytes, self.chunker);
                        let mut at = 0usize;
                        for c in &manifest.chunks {
                            let end = at + c.len as usize;
                            self.chunks.put(&c.id, &bytes[at..end]).map_err(failed)?;
                            at = end;
                        }
                        self.chunks.sync().map_err(failed)?;
                        Entry::File { mode, manifest }
                    }
                };
                entries.insert(path.clone(), entry);
                path
            }
        };
        let target = TreeManifest::from_entries(entries)
            .map_err(|e| Refusal::conflict(format!("redo entry {seq}: {e}")))?;
        let changed = self.write_tree(&disk, &target)?;
        self.emit(
            "redone",
            json!({"entry": seq, "path": path.to_string(), "in_place": re.in_place}),
        );
        Ok(
            json!({"entry": seq, "path": path.to_string(), "in_place": re.in_place, "changed": changed}),
        )
    }

    /// A file as it was in an accepted version: its text, or its bytes in hex.
    fn show(&self, spec: &str, path: &str) -> Answer {
        const MAX: u64 = 16 << 20;
        let (version, number) = self.find_version(spec)?;
        let tree = self.tree_of(&version, number)?;
        let path = match self.share_kind() {
            ShareKind::Document => chorus_folder::DOCUMENT_PATH,
            ShareKind::Folder => path.trim_matches('/'),
        };
        let rel = RelPath::new(path).map_err(|e| Refusal::bad(e.to_string()))?;
        let Some(Entry::File { manifest, .. }) = tree.get(&rel) else {
            return Err(Refusal::bad(format!(
                "{rel} is not a file in version {number}"
            )));
        };
        if manifest.size() > MAX {
            return Err(Refusal::conflict(format!(
                "{rel} is {} bytes in version {number}, more than this shows (16 MiB); restore it instead",
                manifest.size()
            )));
        }
        use chorus_merge::ContentLoader;
        let bytes = chorus_sync::leader::Loader(&**self.engine.chunks())
            .load(manifest)
            .map_err(failed)?;
        Ok(match String::from_utf8(bytes) {
            Ok(text) => {
                json!({"version": number.to_string(), "path": rel.to_string(), "text": text})
            }
            Err(e) => {
                json!({"version": number.to_string(), "path": rel.to_string(), "hex": hex::encode(e.into_bytes())})
            }
        })
    }

    async fn invite(&mut self) -> Answer {
        let me = self.net.local_peer_id();
        let addresses = self
            .net
            .listen_addrs()
            .await
            .map_err(failed)?
            .into_iter()
            .map(|a| a.with(libp2p::multiaddr::Protocol::P2p(me)))
            .collect::<Vec<_>>();
        let token = JoinToken {
            share_id: self.share_id,
            secret: self.secret,
            kind: self.share_kind(),
            inviter: me,
            addresses: addresses.clone(),
        };
        Ok(json!({
            "token": token.encode(),
            "addresses": addresses.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
        }))
    }
}
