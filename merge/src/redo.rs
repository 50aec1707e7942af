//! The redo stack: what a merge displaced, and how to bring it back.
//!
//! A [`RedoEntry`] names the path, the number of the version that displaced it, the number of
//! the version it came from, and what was displaced: a hunk with its context, a whole file or
//! symlink, a deletion, or permission bits. [`RedoStack::reapply`] ([`crate::reapply`]) turns
//! an entry into a change of the current tree.

use std::fmt;

use chorus_chunking::{Entry, FileManifest, Mode, RelPath, VersionNumber};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

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
