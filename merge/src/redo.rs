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
    /// The entry at `path` in the stored tree `tree`: how a displaced file (and a large kept
    /// one) travels in a header, by a 32-byte id instead of its chunk list. The sync engine keeps that tree, offers it
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

/// Redo entries larger than this, encoded, do not travel as they are: a header holds 64 KiB
/// of them, a push what its own redo displaced.
pub const MAX_INLINE_ENTRY: usize = 4 << 10;

impl RedoEntry {
    /// The size of the entry as it travels (JSON, as headers and pushes carry it).
    pub fn encoded_len(&self) -> usize {
        serde_json::to_vec(self).map_or(usize::MAX, |v| v.len())
    }
}

/// `entries` made small enough to travel. A hunk larger than [`MAX_INLINE_ENTRY`] encoded
/// (its context, the text that won and the common ancestor's count, not only what it
/// displaced) becomes the whole file `loser` holds at its path, by chunk list: `loser` is the
/// tree whose text the hunks displaced. When the entries together still exceed `budget`, every
/// hunk of a path becomes that one whole-file entry. Equal entries are kept once. Entries of
/// other kinds are returned as they are (their large contents are the caller's to store).
pub fn compact(
    entries: Vec<RedoEntry>,
    loser: &chorus_chunking::TreeManifest,
    budget: usize,
) -> Vec<RedoEntry> {
    let whole = |e: &RedoEntry| -> Option<RedoEntry> {
        let Displaced::Hunk(_) = &e.what else {
            return None;
        };
        match e.path.as_ref().and_then(|p| loser.get(p)) {
            Some(Entry::File { mode, manifest }) => Some(RedoEntry {
                what: Displaced::Whole {
                    content: WholeContent::File {
                        mode: *mode,
                        manifest: manifest.clone(),
                    },
                    kept: None,
                },
                ..e.clone()
            }),
            _ => None,
        }
    };
    // Equal entries come from one file's hunks made whole, next to each other.
    let mut out: Vec<RedoEntry> = Vec::with_capacity(entries.len());
    let push = |out: &mut Vec<RedoEntry>, e: RedoEntry| {
        if out.last() != Some(&e) {
            out.push(e);
        }
    };
    for e in entries {
        // Only hunks are made smaller here, so only they are measured.
        let e = if matches!(e.what, Displaced::Hunk(_)) && e.encoded_len() > MAX_INLINE_ENTRY {
            whole(&e).unwrap_or(e)
        } else {
            e
        };
        push(&mut out, e);
    }
    if budget == usize::MAX
        || out
            .iter()
            .try_fold(0usize, |n, e| n.checked_add(e.encoded_len()))
            .is_some_and(|n| n <= budget)
    {
        return out;
    }
    let mut collapsed = Vec::with_capacity(out.len());
    for e in out {
        let e = whole(&e).unwrap_or(e);
        push(&mut collapsed, e);
    }
    collapsed
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
    fn large_hunks_travel_as_the_losers_whole_file_and_many_collapse_into_one() {
        let manifest =
            chorus_chunking::chunker::chunk_bytes(b"the loser's file\n", Default::default());
        let path = RelPath::new("doc.txt").unwrap();
        let loser = chorus_chunking::TreeManifest::from_entries([(
            path.clone(),
            Entry::File {
                mode: Mode::FILE,
                manifest: manifest.clone(),
            },
        )])
        .unwrap();
        let entry = |h: HunkRedo| RedoEntry {
            path: Some(path.clone()),
            displaced_by: VersionNumber::new(3, 2),
            displaced_from: VersionNumber::new(3, 1),
            what: Displaced::Hunk(h),
        };
        let whole = entry(hunk());
        let whole = RedoEntry {
            what: Displaced::Whole {
                content: WholeContent::File {
                    mode: Mode::FILE,
                    manifest,
                },
                kept: None,
            },
            ..whole
        };
        // Small: as it is.
        assert_eq!(
            compact(vec![entry(hunk())], &loser, usize::MAX),
            vec![entry(hunk())]
        );
        // What won or the common ancestor large, what was displaced small: the whole file.
        for big in [
            HunkRedo {
                kept: Bytes(vec![b'k'; 40_000]),
                ..hunk()
            },
            HunkRedo {
                base: Some(Bytes(vec![b'b'; 40_000])),
                ..hunk()
            },
            HunkRedo {
                displaced: Bytes(vec![0xfe; 5_000]),
                ..hunk()
            },
        ] {
            assert_eq!(
                compact(vec![entry(big)], &loser, usize::MAX),
                vec![whole.clone()]
            );
        }
        // Many small hunks of one file beyond the budget: one whole-file entry.
        let many: Vec<RedoEntry> = (0..100)
            .map(|i| {
                entry(HunkRedo {
                    line: i,
                    displaced: Bytes(vec![b'd'; 1_000]),
                    ..hunk()
                })
            })
            .collect();
        assert_eq!(compact(many.clone(), &loser, 64 << 10), vec![whole]);
        assert_eq!(compact(many.clone(), &loser, usize::MAX), many);
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
