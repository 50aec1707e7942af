//! Bringing a displaced change back (`chorus redo`): a [`RedoEntry`] turned into a change of
//! the current tree, in place when the context still matches after later edits (a hunk is
//! re-applied as a merge, so it changes only what the displaced change changed), otherwise
//! restored next to the file as `name.redo-MAJOR.MINOR`, never dropped. The entries themselves
//! are [`crate::redo`]'s.

use chorus_chunking::{Entry, Mode, RelPath, TreeManifest, VersionNumber};

use crate::diff::split_lines;
use crate::redo::{Displaced, HunkRedo, RedoEntry, RedoStack, WholeContent};
use crate::tree::{ContentLoader, LoadError};

impl WholeContent {
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
    /// Why it went beside the file (`None`: in place).
    pub aside: Option<Aside>,
    /// What the redo displaced in turn (lines both it and what stood there changed): they go
    /// on the redo stack like any displaced change.
    pub displaced: Vec<RedoEntry>,
}

/// Why a redo went beside its file rather than in place: what the user is told, so they know
/// what to compare.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Aside {
    /// `--beside` asked for it.
    Asked,
    /// The lines around the displaced hunk changed since.
    ContextChanged,
    /// The file changed since its content was displaced.
    FileChanged,
    /// The file is gone (deleted or renamed).
    FileGone,
    /// A folder is at its path now.
    NotAFile,
}

impl Aside {
    /// The word the API gives (`beside_why`).
    pub fn as_str(self) -> &'static str {
        match self {
            Aside::Asked => "asked",
            Aside::ContextChanged => "context-changed",
            Aside::FileChanged => "file-changed",
            Aside::FileGone => "file-gone",
            Aside::NotAFile => "not-a-file",
        }
    }
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
    #[error(
        "the change displaced at {path} is a deletion or a mode: it has no content to put beside the file; redo it in place"
    )]
    NothingBeside { path: RelPath },
    #[error("no free name beside {0} for the restored content")]
    NoName(RelPath),
    #[error(
        "{path} cannot come back: a file or link stands where one of its folders was; move it away and redo again"
    )]
    UnderAFile { path: RelPath },
    #[error("the displaced content is in version {0}, which is not stored here yet")]
    Unresolved(chorus_chunking::VersionId),
}

impl RedoStack {
    /// The change that reapplies entry `index` to `current`. The entry stays on the stack:
    /// remove it once the change is committed.
    pub fn reapply(
        &self,
        index: usize,
        current: &TreeManifest,
        loader: &dyn ContentLoader,
    ) -> Result<Reapplied, RedoError> {
        let entry = self
            .list()
            .get(index)
            .ok_or(RedoError::NoSuchEntry(index))?;
        reapply(entry, current, loader)
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
    // Neither in place nor beside: both would go below what is now a file.
    if !parent_free(&path, current) && !matches!(entry.what, Displaced::Deletion { .. }) {
        return Err(RedoError::UnderAFile { path });
    }
    let in_place = |change| {
        Ok(Reapplied {
            change,
            in_place: true,
            aside: None,
            displaced: Vec::new(),
        })
    };
    match &entry.what {
        Displaced::Hunk(h) => {
            // The displaced text in its context, next to the file, when it cannot go in place.
            let aside = |why| {
                beside(
                    &path,
                    entry.displaced_from,
                    current,
                    NewContent::Bytes {
                        bytes: h.in_context(),
                        mode: Mode::FILE,
                    },
                    why,
                )
            };
            let (mode, manifest) = match now {
                Some(Entry::File { mode, manifest }) => (mode, manifest),
                None => return aside(Aside::FileGone),
                Some(Entry::Symlink { .. }) => return aside(Aside::FileChanged),
                Some(Entry::Dir { .. }) => return aside(Aside::NotAFile),
            };
            let bytes = loader.load(manifest)?;
            match h.redo_in(&bytes) {
                Some((bytes, displaced)) => Ok(Reapplied {
                    change: Change::Write {
                        path: path.clone(),
                        content: NewContent::Bytes { bytes, mode: *mode },
                    },
                    in_place: true,
                    aside: None,
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
                None => aside(Aside::ContextChanged),
            }
        }
        Displaced::Whole { content, kept } => {
            let unchanged = match kept {
                Some(k) => k.is_in(now, loader)?,
                None => false,
            };
            if now.is_none() || unchanged {
                in_place(Change::Write {
                    path,
                    content: content.clone().into_content(),
                })
            } else {
                let why = match now {
                    Some(Entry::Dir { .. }) => Aside::NotAFile,
                    _ => Aside::FileChanged,
                };
                beside(
                    &path,
                    entry.displaced_from,
                    current,
                    content.clone().into_content(),
                    why,
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

/// The change that restores `entry`'s displaced content next to its file, as
/// `name.redo-MAJOR.MINOR`, leaving what won untouched: the choice a user makes who wants to
/// compare both before keeping one. A hunk comes back in its context; a whole file whole. A
/// displaced deletion or mode has no content to put beside the file.
pub fn reapply_beside(entry: &RedoEntry, current: &TreeManifest) -> Result<Reapplied, RedoError> {
    if let Some(tree) = entry.stored_trees().first() {
        return Err(RedoError::Unresolved(*tree));
    }
    let path = entry.path.clone().ok_or(RedoError::NoPath)?;
    if !parent_free(&path, current) {
        return Err(RedoError::UnderAFile { path });
    }
    let content = match &entry.what {
        Displaced::Hunk(h) => NewContent::Bytes {
            bytes: h.in_context(),
            mode: Mode::FILE,
        },
        Displaced::Whole { content, .. } => content.clone().into_content(),
        Displaced::Deletion { .. } | Displaced::Mode { .. } => {
            return Err(RedoError::NothingBeside { path });
        }
    };
    beside(&path, entry.displaced_from, current, content, Aside::Asked)
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
    why: Aside,
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
                aside: Some(why),
                displaced: Vec::new(),
            });
        }
    }
    Err(RedoError::NoName(path.clone()))
}
