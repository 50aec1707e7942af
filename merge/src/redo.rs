//! The redo stack: what a merge displaced, and how to bring it back.
//!
//! A [`RedoEntry`] names the path, the number of the version that displaced it, the number of
//! the version it came from, and what was displaced: a hunk with its context, a whole file or
//! symlink, a deletion, or permission bits. [`RedoStack::reapply`] turns an entry into a change of
//! the current tree: in place when the context still matches after later edits, otherwise the
//! displaced content is restored next to the file as `name.redo-MAJOR.MINOR`, never dropped.

use std::fmt;

use chorus_chunking::{Entry, FileManifest, Mode, RelPath, TreeManifest, VersionNumber};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::diff::split_lines;
use crate::tree::{ContentLoader, LoadError};

/// Bytes that serialize as a string when they are UTF-8, else as an array of byte values.
#[derive(Clone, PartialEq, Eq, Default, Hash)]
pub struct Bytes(pub Vec<u8>);

impl fmt::Debug for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match std::str::from_utf8(&self.0) {
            Ok(s) => fmt::Debug::fmt(s, f),
            Err(_) => write!(f, "{} bytes", self.0.len()),
        }
    }
}

#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum BytesRepr {
    Text(String),
    Raw(Vec<u8>),
}

impl Serialize for Bytes {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match std::str::from_utf8(&self.0) {
            Ok(text) => s.serialize_str(text),
            Err(_) => s.collect_seq(self.0.iter()),
        }
    }
}

impl<'de> Deserialize<'de> for Bytes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(match BytesRepr::deserialize(d)? {
            BytesRepr::Text(t) => Bytes(t.into_bytes()),
            BytesRepr::Raw(b) => Bytes(b),
        })
    }
}

/// A whole file's or symlink's content.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WholeContent {
    /// Bytes, from a content merge that was given bytes.
    Bytes(Bytes),
    /// A file by its chunks (content-addressed: the chunks are kept, no bytes are copied).
    File {
        mode: Mode,
        manifest: FileManifest,
    },
    Symlink {
        target: String,
    },
    /// The entry at `path` in the stored tree `tree`: how a large file travels in a header
    /// (by a 32-byte id instead of its chunk list). The sync engine keeps that tree, offers it
    /// to every member, and resolves it into [`WholeContent::File`] before use.
    Stored {
        tree: chorus_chunking::VersionId,
        path: RelPath,
    },
}

impl WholeContent {
    /// The content of a tree entry, None for a directory.
    pub fn of_entry(entry: &Entry) -> Option<WholeContent> {
        match entry {
            Entry::File { mode, manifest } => Some(WholeContent::File {
                mode: *mode,
                manifest: manifest.clone(),
            }),
            Entry::Symlink { target } => Some(WholeContent::Symlink {
                target: target.clone(),
            }),
            Entry::Dir { .. } => None,
        }
    }

    /// True when `entry` holds exactly this content.
    fn is_in(&self, entry: Option<&Entry>, loader: &dyn ContentLoader) -> Result<bool, LoadError> {
        Ok(match (self, entry) {
            (WholeContent::Bytes(b), Some(Entry::File { manifest, .. })) => {
                manifest.size() == b.0.len() as u64 && loader.load(manifest)? == b.0
            }
            (WholeContent::File { manifest, .. }, Some(Entry::File { manifest: m, .. })) => {
                manifest == m
            }
            (WholeContent::Symlink { target }, Some(Entry::Symlink { target: t })) => target == t,
            _ => false,
        })
    }

    fn into_content(self) -> NewContent {
        match self {
            WholeContent::Bytes(b) => NewContent::Bytes {
                bytes: b.0,
                mode: Mode::FILE,
            },
            WholeContent::File { mode, manifest } => {
                NewContent::Entry(Entry::File { mode, manifest })
            }
            WholeContent::Symlink { target } => NewContent::Entry(Entry::Symlink { target }),
            // Resolved by the caller before a reapply (see `RedoEntry::resolve`).
            WholeContent::Stored { path, .. } => NewContent::Bytes {
                bytes: format!("(the content of {path} is stored elsewhere)").into_bytes(),
                mode: chorus_chunking::Mode::FILE,
            },
        }
    }
}

/// A displaced hunk of lines: the winner's text (`kept`) stands in the merged file between
/// `before` and `after` (up to three lines each), starting at line `line` (0-based); the
/// loser's text for the same region was `displaced`.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct HunkRedo {
    pub line: usize,
    pub before: Bytes,
    pub kept: Bytes,
    pub displaced: Bytes,
    pub after: Bytes,
    /// The common ancestor's text of the region, when the merge knew it: a redo then
    /// re-applies only what the displaced side changed from it (entries made without it put
    /// the displaced text back whole).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base: Option<Bytes>,
}

impl HunkRedo {
    /// Puts the displaced text back into `current` where `before + kept + after` still stands
    /// (the occurrence nearest to the original line when there are several); None when the
    /// context is gone.
    pub fn reapply_to(&self, current: &[u8]) -> Option<Vec<u8>> {
        let cur: Vec<&[u8]> = split_lines(current).collect();
        let before: Vec<&[u8]> = split_lines(&self.before.0).collect();
        let kept: Vec<&[u8]> = split_lines(&self.kept.0).collect();
        let after: Vec<&[u8]> = split_lines(&self.after.0).collect();
        if before.is_empty() && kept.is_empty() && after.is_empty() {
            // Nothing to anchor on: only an empty file still matches.
            return current.is_empty().then(|| self.displaced.0.clone());
        }
        let at = self.anchor(&cur, &before, &kept, &after)?;
        let start = at;
        let mut out = Vec::with_capacity(current.len() + self.displaced.0.len());
        for l in &cur[..start] {
            out.extend_from_slice(l);
        }
        out.extend_from_slice(&self.displaced.0);
        for l in &cur[start + kept.len()..] {
            out.extend_from_slice(l);
        }
        Some(out)
    }

    /// Re-applies the displaced change to `current` as a merge: where `before + kept + after`
    /// still stands, the region becomes the three-way merge of the base region, what stands
    /// there (`kept`) and the displaced text, the displaced side winning where both changed the
    /// same lines. Lines the displaced change did not change keep what stands now. Returns the
    /// new bytes and what the redo displaced in turn (hunks of `kept`); None when the context
    /// is gone.
    pub fn redo_in(&self, current: &[u8]) -> Option<(Vec<u8>, Vec<HunkRedo>)> {
        let Some(base) = &self.base else {
            return self.reapply_to(current).map(|b| (b, Vec::new()));
        };
        let cur: Vec<&[u8]> = split_lines(current).collect();
        let before: Vec<&[u8]> = split_lines(&self.before.0).collect();
        let kept: Vec<&[u8]> = split_lines(&self.kept.0).collect();
        let after: Vec<&[u8]> = split_lines(&self.after.0).collect();
        let at = self.anchor(&cur, &before, &kept, &after)?;
        let start = at;
        // The displaced side must win where both changed the same lines: it gets the higher
        // number for this merge (the entries it makes are numbered by the caller).
        let m = crate::text::merge_lines_fine(&base.0, &self.kept.0, &self.displaced.0).ok()?;
        let region = m.result.0;
        let mut out = Vec::with_capacity(current.len() + region.len());
        for l in &cur[..start] {
            out.extend_from_slice(l);
        }
        let region_line = start;
        out.extend_from_slice(&region);
        for l in &cur[start + kept.len()..] {
            out.extend_from_slice(l);
        }
        let displaced = m
            .redo
            .into_iter()
            .filter_map(|e| match e.what {
                Displaced::Hunk(mut h) => {
                    h.line += region_line;
                    Some(h)
                }
                _ => None,
            })
            .collect();
        Some((out, displaced))
    }

    /// Where `before + kept + after` stands in `cur` (the occurrence nearest to the original
    /// line). When the whole context no longer stands (an
    /// edit next to it since), a shorter context is tried, down to `kept` alone, as long as it
    /// stands in exactly one place. Returns the index of the first line of `kept` in `cur`.
    fn anchor(
        &self,
        cur: &[&[u8]],
        before: &[&[u8]],
        kept: &[&[u8]],
        after: &[&[u8]],
    ) -> Option<usize> {
        let full = before.len().max(after.len());
        for k in (0..=full).rev() {
            let b = &before[before.len().saturating_sub(k)..];
            let a = &after[..k.min(after.len())];
            let needle: Vec<&[u8]> = b.iter().chain(kept).chain(a).copied().collect();
            if needle.is_empty() {
                return cur.is_empty().then_some(0);
            }
            let Some(last) = cur.len().checked_sub(needle.len()) else {
                continue;
            };
            let found: Vec<usize> = (0..=last)
                .filter(|&i| cur[i..i + needle.len()] == needle[..])
                .collect();
            let pick = if k == full {
                found
                    .iter()
                    .copied()
                    .min_by_key(|&i| (i + b.len()).abs_diff(self.line))
            } else if found.len() == 1 && !kept.is_empty() {
                Some(found[0])
            } else {
                None
            };
            if let Some(i) = pick {
                return Some(i + b.len());
            }
        }
        None
    }

    /// The text restored beside the file when the context is gone: the displaced text in its
    /// context.
    pub fn in_context(&self) -> Vec<u8> {
        [&self.before.0[..], &self.displaced.0, &self.after.0].concat()
    }
}

/// What a merge displaced.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Displaced {
    /// A hunk of lines, with context (lines mode).
    Hunk(HunkRedo),
    /// A whole file or symlink; `kept` is what the winner put at the path (None when it put a
    /// directory there).
    Whole {
        content: WholeContent,
        kept: Option<WholeContent>,
    },
    /// A deletion that lost to a modification; `kept` is the modified content that stayed.
    Deletion { kept: WholeContent },
    /// Permission bits of a file or directory that lost to the other side's.
    Mode { mode: Mode },
}

/// One displaced change.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct RedoEntry {
    /// The file; None from a content merge, which does not know its path.
    pub path: Option<RelPath>,
    /// The number of the version whose change won.
    pub displaced_by: VersionNumber,
    /// The number of the version whose change was displaced.
    pub displaced_from: VersionNumber,
    pub what: Displaced,
}

/// New content for a path, as bytes (to be chunked by the caller) or as a ready entry.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum NewContent {
    Bytes { bytes: Vec<u8>, mode: Mode },
    Entry(Entry),
}

/// The change that reapplies an entry.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Change {
    Write { path: RelPath, content: NewContent },
    Remove { path: RelPath },
}

/// The outcome of a reapply: the change, and whether it went in place or beside the file.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Reapplied {
    pub change: Change,
    pub in_place: bool,
    /// What the redo displaced in turn (lines both it and what stood there changed): they go
    /// on the redo stack like any displaced change.
    pub displaced: Vec<RedoEntry>,
}

/// Why an entry could not be reapplied.
#[derive(Debug, thiserror::Error)]
pub enum RedoError {
    #[error("no redo entry number {0}")]
    NoSuchEntry(usize),
    #[error("the redo entry has no path")]
    NoPath,
    #[error(
        "{path} changed since the deletion was displaced; deleting it now would lose those changes"
    )]
    Changed { path: RelPath },
    #[error("{path} is not a file any more")]
    NotAFile { path: RelPath },
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error("no free name beside {0} for the restored content")]
    NoName(RelPath),
    #[error("the displaced content is in version {0}, which is not stored here yet")]
    Unresolved(chorus_chunking::VersionId),
}

/// The displaced changes of a share, oldest first.
#[derive(Clone, PartialEq, Eq, Debug, Default, Serialize, Deserialize)]
pub struct RedoStack {
    entries: Vec<RedoEntry>,
}

impl RedoStack {
    pub fn new() -> Self {
        RedoStack::default()
    }

    pub fn push(&mut self, entry: RedoEntry) {
        self.entries.push(entry);
    }

    pub fn extend(&mut self, entries: impl IntoIterator<Item = RedoEntry>) {
        self.entries.extend(entries);
    }

    /// Every entry, oldest first.
    pub fn list(&self) -> &[RedoEntry] {
        &self.entries
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Removes an entry (after its change was committed, or when the user drops it).
    pub fn remove(&mut self, index: usize) -> Option<RedoEntry> {
        (index < self.entries.len()).then(|| self.entries.remove(index))
    }

    /// The change that reapplies entry `index` to `current`. The entry stays on the stack:
    /// remove it once the change is committed.
    pub fn reapply(
        &self,
        index: usize,
        current: &TreeManifest,
        loader: &dyn ContentLoader,
    ) -> Result<Reapplied, RedoError> {
        let entry = self
            .entries
            .get(index)
            .ok_or(RedoError::NoSuchEntry(index))?;
        reapply(entry, current, loader)
    }
}

impl RedoEntry {
    /// The stored trees this entry refers to instead of carrying their content.
    pub fn stored_trees(&self) -> Vec<chorus_chunking::VersionId> {
        let contents: Vec<&WholeContent> = match &self.what {
            Displaced::Whole { content, kept } => std::iter::once(content).chain(kept).collect(),
            Displaced::Deletion { kept } => vec![kept],
            _ => Vec::new(),
        };
        contents
            .into_iter()
            .filter_map(|c| match c {
                WholeContent::Stored { tree, .. } => Some(*tree),
                _ => None,
            })
            .collect()
    }

    /// The entry with every stored reference replaced by the content `lookup` finds (the
    /// entry at that path of that tree); `Err(tree)` for the first tree not found.
    pub fn resolve(
        &self,
        lookup: impl Fn(&chorus_chunking::VersionId, &RelPath) -> Option<Option<Entry>>,
    ) -> Result<RedoEntry, chorus_chunking::VersionId> {
        let fix = |c: &WholeContent| -> Result<WholeContent, chorus_chunking::VersionId> {
            match c {
                WholeContent::Stored { tree, path } => match lookup(tree, path) {
                    Some(Some(e)) => Ok(WholeContent::of_entry(&e).unwrap_or(c.clone())),
                    _ => Err(*tree),
                },
                other => Ok(other.clone()),
            }
        };
        let what = match &self.what {
            Displaced::Whole { content, kept } => Displaced::Whole {
                content: fix(content)?,
                kept: kept.as_ref().map(fix).transpose()?,
            },
            Displaced::Deletion { kept } => Displaced::Deletion { kept: fix(kept)? },
            other => other.clone(),
        };
        Ok(RedoEntry {
            what,
            ..self.clone()
        })
    }
}

/// The change that reapplies `entry` to the tree `current`.
pub fn reapply(
    entry: &RedoEntry,
    current: &TreeManifest,
    loader: &dyn ContentLoader,
) -> Result<Reapplied, RedoError> {
    if let Some(tree) = entry.stored_trees().first() {
        return Err(RedoError::Unresolved(*tree));
    }
    let path = entry.path.clone().ok_or(RedoError::NoPath)?;
    let now = current.get(&path);
    let in_place = |change| {
        Ok(Reapplied {
            change,
            in_place: true,
            displaced: Vec::new(),
        })
    };
    match &entry.what {
        Displaced::Hunk(h) => {
            let Some(Entry::File { mode, manifest }) = now else {
                return beside(
                    &path,
                    entry.displaced_from,
                    current,
                    NewContent::Bytes {
                        bytes: h.in_context(),
                        mode: Mode::FILE,
                    },
                );
            };
            let bytes = loader.load(manifest)?;
            match h.redo_in(&bytes) {
                Some((bytes, displaced)) => Ok(Reapplied {
                    change: Change::Write {
                        path: path.clone(),
                        content: NewContent::Bytes { bytes, mode: *mode },
                    },
                    in_place: true,
                    displaced: displaced
                        .into_iter()
                        .map(|h| RedoEntry {
                            path: Some(path.clone()),
                            displaced_by: entry.displaced_from,
                            displaced_from: entry.displaced_by,
                            what: Displaced::Hunk(h),
                        })
                        .collect(),
                }),
                None => beside(
                    &path,
                    entry.displaced_from,
                    current,
                    NewContent::Bytes {
                        bytes: h.in_context(),
                        mode: Mode::FILE,
                    },
                ),
            }
        }
        Displaced::Whole { content, kept } => {
            let unchanged = match kept {
                Some(k) => k.is_in(now, loader)?,
                None => false,
            };
            if now.is_none() && parent_free(&path, current) || unchanged {
                in_place(Change::Write {
                    path,
                    content: content.clone().into_content(),
                })
            } else {
                beside(
                    &path,
                    entry.displaced_from,
                    current,
                    content.clone().into_content(),
                )
            }
        }
        Displaced::Deletion { kept } => {
            // Already gone, or still as the merge left it: the deletion can be redone.
            if now.is_none() || kept.is_in(now, loader)? {
                in_place(Change::Remove { path })
            } else {
                Err(RedoError::Changed { path })
            }
        }
        Displaced::Mode { mode } => match now {
            Some(Entry::File { manifest, .. }) => in_place(Change::Write {
                path,
                content: NewContent::Entry(Entry::File {
                    mode: *mode,
                    manifest: manifest.clone(),
                }),
            }),
            Some(Entry::Dir { .. }) => in_place(Change::Write {
                path,
                content: NewContent::Entry(Entry::Dir { mode: *mode }),
            }),
            _ => Err(RedoError::NotAFile { path }),
        },
    }
}

/// True when no ancestor of `path` is a file or symlink in `tree`.
fn parent_free(path: &RelPath, tree: &TreeManifest) -> bool {
    path.ancestors()
        .all(|a| matches!(tree.get_str(a), None | Some(Entry::Dir { .. })))
}

/// Restores content next to `path` as `name.redo-MAJOR.MINOR` (or `…-2`, `…-3` when taken).
fn beside(
    path: &RelPath,
    number: VersionNumber,
    tree: &TreeManifest,
    content: NewContent,
) -> Result<Reapplied, RedoError> {
    let stem = format!("{}.redo-{number}", path.as_str());
    for i in 1..1000 {
        let name = if i == 1 {
            stem.clone()
        } else {
            format!("{stem}-{i}")
        };
        let Ok(candidate) = RelPath::new(name) else {
            break;
        };
        if tree.get(&candidate).is_none() && parent_free(&candidate, tree) {
            return Ok(Reapplied {
                change: Change::Write {
                    path: candidate,
                    content,
                },
                in_place: false,
                displaced: Vec::new(),
            });
        }
    }
    Err(RedoError::NoName(path.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hunk() -> HunkRedo {
        HunkRedo {
            line: 1,
            before: Bytes(b"a\n".to_vec()),
            kept: Bytes(b"B2\n".to_vec()),
            displaced: Bytes(b"B1\n".to_vec()),
            after: Bytes(b"c\n".to_vec()),
            base: None,
        }
    }

    #[test]
    fn a_hunk_reapplies_after_later_edits_elsewhere() {
        let h = hunk();
        assert_eq!(h.reapply_to(b"a\nB2\nc\n").unwrap(), b"a\nB1\nc\n");
        assert_eq!(
            h.reapply_to(b"new top\na\nB2\nc\nnew end\n").unwrap(),
            b"new top\na\nB1\nc\nnew end\n"
        );
        // Two matches: the one nearest the original line is used.
        assert_eq!(
            h.reapply_to(b"x\na\nB2\nc\nx\nx\nx\nx\na\nB2\nc\n")
                .unwrap(),
            b"x\na\nB1\nc\nx\nx\nx\nx\na\nB2\nc\n"
        );
        assert!(h.reapply_to(b"a\nB3\nc\n").is_none());
        assert_eq!(h.in_context(), b"a\nB1\nc\n");
    }

    #[test]
    fn bytes_serialize_as_text_when_they_can() {
        let json = serde_json::to_string(&Bytes(b"hi\n".to_vec())).unwrap();
        assert_eq!(json, r#""hi\n""#);
        let json = serde_json::to_string(&Bytes(vec![0xff, 1])).unwrap();
        assert_eq!(json, "[255,1]");
        for b in [Bytes(b"hi".to_vec()), Bytes(vec![0xff, 1])] {
            let back: Bytes = serde_json::from_str(&serde_json::to_string(&b).unwrap()).unwrap();
            assert_eq!(back, b);
        }
    }

    #[test]
    fn entries_round_trip_through_json() {
        let e = RedoEntry {
            path: Some(RelPath::new("notes.md").unwrap()),
            displaced_by: VersionNumber::new(7, 3),
            displaced_from: VersionNumber::new(7, 2),
            what: Displaced::Hunk(hunk()),
        };
        let json = serde_json::to_string(&e).unwrap();
        assert_eq!(serde_json::from_str::<RedoEntry>(&json).unwrap(), e);
    }
}
