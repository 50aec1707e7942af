//! Browsing history without changing anything: a file as it was in an accepted version
//! (`chorus show`) and what a version holds at a path (`chorus ls`).

use chorus_chunking::Entry;
use chorus_merge::ContentLoader;
use serde_json::{Value, json};

use super::Replica;
use super::history_ops::Refusal;
use crate::folder::Folder;
use crate::leader::Loader;

impl<F: Folder> Replica<F> {
    /// A file as it was in an accepted version: its text, or its bytes in hex.
    pub fn show(&self, spec: &str, path: &str, document: bool) -> Result<Value, Refusal> {
        let rel = self.tree_path(document, path)?;
        let (number, entry) = self.entry_at(spec, &rel)?;
        let Some(Entry::File { manifest, .. }) = entry else {
            return Err(Refusal::bad(format!(
                "{rel} is not a file in version {number}"
            )));
        };
        let bytes = self.bytes_of(&rel, number, &manifest)?;
        Ok(match String::from_utf8(bytes) {
            Ok(text) => {
                json!({"version": number.to_string(), "path": rel.to_string(), "text": text})
            }
            Err(e) => {
                json!({"version": number.to_string(), "path": rel.to_string(), "hex": hex_of(&e.into_bytes())})
            }
        })
    }

    /// One file in two accepted versions, for a diff: `{"path", "from", "to"}` (the versions'
    /// numbers) and `{"old", "new"}`, each side's text,
    /// `""` where the path is absent (the diff adds or removes it whole) and `null` where it is
    /// not a text file (binary, a directory, a symlink).
    pub fn texts(
        &self,
        from: &str,
        to: &str,
        path: &str,
        document: bool,
    ) -> Result<Value, Refusal> {
        let rel = self.tree_path(document, path)?;
        let (mut sides, mut numbers) = (Vec::with_capacity(2), Vec::with_capacity(2));
        for spec in [from, to] {
            let (number, entry) = self.entry_at(spec, &rel)?;
            numbers.push(number.to_string());
            sides.push(match entry {
                None => Some(String::new()),
                Some(Entry::File { manifest, .. }) => {
                    String::from_utf8(self.bytes_of(&rel, number, &manifest)?).ok()
                }
                Some(_) => None,
            });
        }
        Ok(json!({
            "path": rel.to_string(),
            "from": numbers[0],
            "to": numbers[1],
            "old": sides[0],
            "new": sides[1],
        }))
    }

    /// The entry at `rel` in the accepted version `spec`, with the version's number.
    fn entry_at(
        &self,
        spec: &str,
        rel: &chorus_chunking::RelPath,
    ) -> Result<(chorus_chunking::VersionNumber, Option<Entry>), Refusal> {
        let (version, number) = self.find_version(spec)?;
        let tree = self.tree_of(&version, number)?;
        Ok((number, tree.get(rel).cloned()))
    }

    /// A file's bytes from the chunk store, up to 16 MiB.
    fn bytes_of(
        &self,
        rel: &chorus_chunking::RelPath,
        number: chorus_chunking::VersionNumber,
        manifest: &chorus_chunking::FileManifest,
    ) -> Result<Vec<u8>, Refusal> {
        const MAX: u64 = 16 << 20;
        if manifest.size() > MAX {
            return Err(Refusal::conflict(format!(
                "{rel} is {} bytes in version {number}, more than this shows (16 MiB); restore it instead",
                manifest.size()
            )));
        }
        Loader(&**self.engine.chunks())
            .load(manifest)
            .map_err(Refusal::failed)
    }

    /// What an accepted version holds at `path` (the share's root when empty), as `ls` shows
    /// a folder: a directory's entries (everything below it with `recursive`), or the one
    /// entry a file's path names. Each entry has its path, kind, and for a file its size and
    /// exec bit, for a symlink its target.
    pub fn list(
        &self,
        spec: &str,
        path: &str,
        recursive: bool,
        document: bool,
    ) -> Result<Value, Refusal> {
        let (version, number) = self.find_version(spec)?;
        let tree = self.tree_of(&version, number)?;
        let at = if document || !path.trim_matches('/').is_empty() {
            Some(self.tree_path(document, path)?)
        } else {
            None
        };
        let mut listed: std::collections::BTreeMap<String, Value> = Default::default();
        match at.as_ref().map(|p| (p, tree.get(p))) {
            // A file or a symlink: that one entry, as `ls FILE` shows it.
            Some((p, Some(e))) if !e.is_dir() => {
                listed.insert(p.to_string(), entry_json(p.as_str(), Some(e)));
            }
            _ => {
                let prefix = at.as_ref().map(|p| format!("{p}/")).unwrap_or_default();
                for (q, e) in tree.iter() {
                    let Some(rest) = q.as_str().strip_prefix(prefix.as_str()) else {
                        continue;
                    };
                    match rest.split_once('/') {
                        // Below a child directory: that directory, unless all is listed.
                        Some((child, _)) if !recursive => {
                            let dir = format!("{prefix}{child}");
                            listed
                                .entry(dir.clone())
                                .or_insert_with(|| entry_json(&dir, None));
                        }
                        _ => {
                            listed.insert(q.to_string(), entry_json(q.as_str(), Some(e)));
                        }
                    }
                }
                if let Some(p) = &at
                    && listed.is_empty()
                    && tree.get(p).is_none()
                {
                    return Err(Refusal::bad(format!("{p} is not in version {number}")));
                }
            }
        }
        Ok(json!({
            "version": number.to_string(),
            "path": at.map(|p| p.to_string()),
            "entries": listed.into_values().collect::<Vec<_>>(),
        }))
    }
}

impl<F: Folder> Replica<F> {
    /// What an accepted version changed: each path it added, changed or removed against the
    /// version before it (its first parent, the previous head). Against nothing, everything is
    /// added; a first parent no longer kept here says so (`against` is then absent).
    pub fn changes(&self, spec: &str) -> Result<Value, Refusal> {
        let (version, number) = self.find_version(spec)?;
        let tree = self.tree_of(&version, number)?;
        let headers = self.engine.headers().map_err(Refusal::failed)?;
        let parent = headers
            .iter()
            .find(|h| h.version == version)
            .and_then(|h| h.parents.first().copied());
        let before = match parent {
            Some(p) => self.engine.manifest(&p).map_err(Refusal::failed)?,
            None => Some(Default::default()),
        };
        let Some(before) = before else {
            return Ok(json!({
                "version": number.to_string(),
                "changes": [],
                "note": "the version before it is no longer kept here",
            }));
        };
        let against = parent.and_then(|p| headers.iter().find(|h| h.version == p));
        let mut changes: Vec<(&chorus_chunking::RelPath, &str)> = tree
            .iter()
            .filter_map(|(p, e)| match before.get(p) {
                None => Some((p, "added")),
                Some(b) if b != e => Some((p, "changed")),
                Some(_) => None,
            })
            .chain(
                before
                    .iter()
                    .filter(|(p, _)| tree.get(p).is_none())
                    .map(|(p, _)| (p, "removed")),
            )
            .collect();
        changes.sort();
        let changes: Vec<Value> = changes
            .into_iter()
            .map(|(p, c)| json!({"path": p.to_string(), "change": c}))
            .collect();
        Ok(json!({
            "version": number.to_string(),
            "against": against.map(|h| h.number.to_string()),
            "changes": changes,
        }))
    }
}

/// One entry of a listing; `None` is a directory the tree implies but does not name.
fn entry_json(path: &str, entry: Option<&Entry>) -> Value {
    match entry {
        None => json!({"path": path, "kind": "dir"}),
        Some(Entry::Dir { mode }) => {
            json!({"path": path, "kind": "dir", "mode": format!("{:04o}", mode.bits())})
        }
        Some(Entry::File { mode, manifest }) => json!({
            "path": path,
            "kind": "file",
            "size": manifest.size(),
            "mode": format!("{:04o}", mode.bits()),
            "exec": mode.bits() & 0o111 != 0,
        }),
        Some(Entry::Symlink { target }) => {
            json!({"path": path, "kind": "symlink", "target": target})
        }
    }
}

fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
