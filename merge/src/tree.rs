//! Three-way merge of whole trees (DESIGN.md §6), path by path, from each path's base, ours
//! and theirs entries:
//!
//! - a change on one side wins; equal changes agree;
//! - modify beats delete (the deletion becomes a redo entry);
//! - two different files merge their content (add/add against an empty base) in the path's
//!   mode, and their permission bits merge three-way: a change on one side wins, and when both
//!   changed them differently the higher number wins and the loser's bits become a redo entry
//!   (the same for two directories);
//! - two different symlink targets, or a file against a symlink: the higher number wins;
//! - a file or symlink against a directory keeps the directory; the file becomes a redo entry,
//!   also when the clash is between a file and paths below it;
//! - a rename is a delete plus an add.
//!
//! Content comes from a [`ContentLoader`], so this module does no I/O: the daemon passes its
//! chunk store (every [`ChunkStore`] is a loader).

use std::collections::{BTreeMap, BTreeSet};

use chorus_chunking::{
    ChunkStore, Entry, FileManifest, Mode, RelPath, TreeManifest, VersionNumber,
};

use crate::mode::{MAX_TEXT_SIZE, MergeMode, ModeRules};
use crate::order::{Order, Side};
use crate::redo::{Displaced, RedoEntry, WholeContent};
use crate::text::{MergeError, merge_in_order};

/// Why content could not be loaded.
#[derive(Debug, thiserror::Error)]
#[error("cannot load content: {0}")]
pub struct LoadError(#[source] pub Box<dyn std::error::Error + Send + Sync>);

/// Loads a file's bytes from its manifest.
pub trait ContentLoader {
    fn load(&self, manifest: &FileManifest) -> Result<Vec<u8>, LoadError>;
}

impl<S: ChunkStore + ?Sized> ContentLoader for S {
    fn load(&self, manifest: &FileManifest) -> Result<Vec<u8>, LoadError> {
        let mut out = Vec::with_capacity(manifest.size() as usize);
        for c in manifest.chunks.iter() {
            let bytes = self.require(&c.id).map_err(|e| LoadError(Box::new(e)))?;
            // Never more than the manifest declares (its size bounds what is loaded).
            if bytes.len() != c.len as usize {
                return Err(LoadError(
                    format!(
                        "chunk {} is {} bytes, not the {} its reference says",
                        c.id,
                        bytes.len(),
                        c.len
                    )
                    .into(),
                ));
            }
            out.extend_from_slice(&bytes);
        }
        Ok(out)
    }
}

/// The version numbers of the two sides.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Numbers {
    pub ours: VersionNumber,
    pub theirs: VersionNumber,
}

/// A merged file's content: an existing manifest when the result equals one side, else the
/// merged bytes, which the caller chunks and stores.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum MergedContent {
    Manifest(FileManifest),
    Bytes(Vec<u8>),
}

/// One entry of a merged tree.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum MergedEntry {
    File { mode: Mode, content: MergedContent },
    Dir { mode: Mode },
    Symlink { target: String },
}

impl MergedEntry {
    fn from_entry(e: &Entry) -> MergedEntry {
        match e {
            Entry::File { mode, manifest } => MergedEntry::File {
                mode: *mode,
                content: MergedContent::Manifest(manifest.clone()),
            },
            Entry::Dir { mode } => MergedEntry::Dir { mode: *mode },
            Entry::Symlink { target } => MergedEntry::Symlink {
                target: target.clone(),
            },
        }
    }
}

/// The outcome of a tree merge.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct TreeMerge {
    /// Which side won the conflicts: every path's, and every file's content merge, follow it.
    pub order: Order,
    pub entries: BTreeMap<RelPath, MergedEntry>,
    /// What the merge displaced, each with its path.
    pub redo: Vec<RedoEntry>,
    /// The mode of every content merge that ran.
    pub modes: BTreeMap<RelPath, MergeMode>,
}

/// Why a tree merge failed.
#[derive(Debug, thiserror::Error)]
pub enum TreeMergeError {
    #[error("{path}: {source}")]
    Load {
        path: RelPath,
        #[source]
        source: LoadError,
    },
    #[error("{path}: {source}")]
    Merge {
        path: RelPath,
        #[source]
        source: MergeError,
    },
    #[error("merged tree: {0}")]
    Invalid(#[from] chorus_chunking::Error),
}

impl TreeMerge {
    /// The merged tree, with merged bytes turned into manifests by `chunk` (which stores them).
    pub fn into_manifest(
        self,
        mut chunk: impl FnMut(&RelPath, &[u8]) -> Result<FileManifest, LoadError>,
    ) -> Result<TreeManifest, TreeMergeError> {
        let mut out = Vec::with_capacity(self.entries.len());
        for (path, e) in self.entries {
            let entry = match e {
                MergedEntry::File {
                    mode,
                    content: MergedContent::Manifest(manifest),
                } => Entry::File { mode, manifest },
                MergedEntry::File {
                    mode,
                    content: MergedContent::Bytes(bytes),
                } => {
                    let manifest = chunk(&path, &bytes).map_err(|source| TreeMergeError::Load {
                        path: path.clone(),
                        source,
                    })?;
                    Entry::File { mode, manifest }
                }
                MergedEntry::Dir { mode } => Entry::Dir { mode },
                MergedEntry::Symlink { target } => Entry::Symlink { target },
            };
            out.push((path, entry));
        }
        Ok(TreeManifest::from_entries(out)?)
    }
}

/// Where a merged entry came from, to know who displaced it in a file/directory clash.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Origin {
    One(Side),
    Both,
}

struct Merger<'a> {
    order: Order,
    rules: &'a ModeRules,
    loader: &'a dyn ContentLoader,
    entries: BTreeMap<RelPath, (MergedEntry, Origin)>,
    redo: Vec<RedoEntry>,
    modes: BTreeMap<RelPath, MergeMode>,
}

/// Merges the trees `ours` and `theirs`, both edited from `base`.
pub fn merge_trees(
    base: &TreeManifest,
    ours: &TreeManifest,
    theirs: &TreeManifest,
    numbers: Numbers,
    rules: &ModeRules,
    loader: &dyn ContentLoader,
) -> Result<TreeMerge, TreeMergeError> {
    // Equal numbers fall back to comparing the trees' ids, which is symmetric too.
    let order = Order::new(
        numbers.ours,
        numbers.theirs,
        ours.version_id().as_bytes(),
        theirs.version_id().as_bytes(),
    );
    merge_trees_ordered(base, ours, theirs, order, rules, loader)
}

/// [`merge_trees`] with the sides already ordered (see [`Order::favouring`]). One order
/// decides every conflict of the merge, the content of each file included.
pub fn merge_trees_ordered(
    base: &TreeManifest,
    ours: &TreeManifest,
    theirs: &TreeManifest,
    order: Order,
    rules: &ModeRules,
    loader: &dyn ContentLoader,
) -> Result<TreeMerge, TreeMergeError> {
    let mut m = Merger {
        order,
        rules,
        loader,
        entries: BTreeMap::new(),
        redo: Vec::new(),
        modes: BTreeMap::new(),
    };
    let paths: BTreeSet<&RelPath> = base
        .entries()
        .keys()
        .chain(ours.entries().keys())
        .chain(theirs.entries().keys())
        .collect();
    for path in paths {
        m.path(path, base.get(path), ours.get(path), theirs.get(path))?;
    }
    m.fix_structure();
    Ok(TreeMerge {
        order,
        entries: m.entries.into_iter().map(|(p, (e, _))| (p, e)).collect(),
        redo: m.redo,
        modes: m.modes,
    })
}

impl Merger<'_> {
    fn put(&mut self, path: &RelPath, e: &Entry, origin: Origin) {
        self.entries
            .insert(path.clone(), (MergedEntry::from_entry(e), origin));
    }

    fn displaced(&mut self, path: &RelPath, by: Side, what: Displaced) {
        self.redo.push(RedoEntry {
            path: Some(path.clone()),
            displaced_by: self.order.number(by),
            displaced_from: self.order.number(by.other()),
            what,
        });
    }

    fn path(
        &mut self,
        path: &RelPath,
        b: Option<&Entry>,
        o: Option<&Entry>,
        t: Option<&Entry>,
    ) -> Result<(), TreeMergeError> {
        if o == t {
            if let Some(e) = o {
                self.put(path, e, Origin::Both);
            }
            return Ok(());
        }
        if o == b {
            if let Some(e) = t {
                self.put(path, e, Origin::One(Side::Theirs));
            }
            return Ok(());
        }
        if t == b {
            if let Some(e) = o {
                self.put(path, e, Origin::One(Side::Ours));
            }
            return Ok(());
        }
        match (o, t) {
            (Some(o), Some(t)) => self.both(path, b, o, t),
            (Some(kept), None) | (None, Some(kept)) => {
                // Modify beats delete.
                let side = if o.is_some() {
                    Side::Ours
                } else {
                    Side::Theirs
                };
                self.put(path, kept, Origin::One(side));
                if let Some(kept) = WholeContent::of_entry(kept) {
                    self.displaced(path, side, Displaced::Deletion { kept });
                }
                Ok(())
            }
            (None, None) => Ok(()),
        }
    }

    fn both(
        &mut self,
        path: &RelPath,
        b: Option<&Entry>,
        o: &Entry,
        t: &Entry,
    ) -> Result<(), TreeMergeError> {
        match (o, t) {
            (
                Entry::File {
                    mode: eo,
                    manifest: mo,
                },
                Entry::File {
                    mode: et,
                    manifest: mt,
                },
            ) => {
                let (bm, be) = match b {
                    Some(Entry::File { mode, manifest }) => (Some(manifest), Some(*mode)),
                    _ => (None, None),
                };
                let mode = self.mode(path, be, *eo, *et);
                let content = if mo == mt || bm == Some(mt) {
                    MergedContent::Manifest(mo.clone())
                } else if bm == Some(mo) {
                    MergedContent::Manifest(mt.clone())
                } else {
                    self.content(path, bm, mo, mt, mode)?
                };
                self.entries.insert(
                    path.clone(),
                    (MergedEntry::File { mode, content }, Origin::Both),
                );
                Ok(())
            }
            (Entry::Dir { mode: mo }, Entry::Dir { mode: mt }) => {
                let base = match b {
                    Some(Entry::Dir { mode }) => Some(*mode),
                    _ => None,
                };
                let mode = self.mode(path, base, *mo, *mt);
                self.entries
                    .insert(path.clone(), (MergedEntry::Dir { mode }, Origin::Both));
                Ok(())
            }
            (Entry::Symlink { target: a }, Entry::Symlink { target: c }) => {
                let bt = match b {
                    Some(Entry::Symlink { target }) => Some(target),
                    _ => None,
                };
                if bt == Some(a) {
                    self.put(path, t, Origin::One(Side::Theirs));
                } else if bt == Some(c) {
                    self.put(path, o, Origin::One(Side::Ours));
                } else {
                    self.by_order(path, o, t);
                }
                Ok(())
            }
            (dir @ Entry::Dir { .. }, other) | (other, dir @ Entry::Dir { .. }) => {
                // The directory stays; the file or symlink goes on the redo stack.
                let dir_side = if o.is_dir() { Side::Ours } else { Side::Theirs };
                self.put(path, dir, Origin::One(dir_side));
                if let Some(content) = WholeContent::of_entry(other) {
                    self.displaced(
                        path,
                        dir_side,
                        Displaced::Whole {
                            content,
                            kept: None,
                        },
                    );
                }
                Ok(())
            }
            _ => {
                // A file against a symlink.
                self.by_order(path, o, t);
                Ok(())
            }
        }
    }

    /// Permission bits, three-way: a change on one side wins; both changed differently, the
    /// higher number wins and the loser's bits go on the redo stack.
    fn mode(&mut self, path: &RelPath, base: Option<Mode>, ours: Mode, theirs: Mode) -> Mode {
        if ours == theirs || base == Some(theirs) {
            ours
        } else if base == Some(ours) {
            theirs
        } else {
            let win = self.order.winner;
            let (w, l) = if win == Side::Ours {
                (ours, theirs)
            } else {
                (theirs, ours)
            };
            self.displaced(path, win, Displaced::Mode { mode: l });
            w
        }
    }

    /// The winner's entry stays; the loser's becomes a whole redo entry.
    fn by_order(&mut self, path: &RelPath, o: &Entry, t: &Entry) {
        let win = self.order.winner;
        let (w, l) = if win == Side::Ours { (o, t) } else { (t, o) };
        self.put(path, w, Origin::One(win));
        if let Some(content) = WholeContent::of_entry(l) {
            self.displaced(
                path,
                win,
                Displaced::Whole {
                    content,
                    kept: WholeContent::of_entry(w),
                },
            );
        }
    }

    fn content(
        &mut self,
        path: &RelPath,
        bm: Option<&FileManifest>,
        mo: &FileManifest,
        mt: &FileManifest,
        mode: Mode,
    ) -> Result<MergedContent, TreeMergeError> {
        let too_big = |m: &FileManifest| m.size() > MAX_TEXT_SIZE as u64;
        let configured = self.rules.configured(path);
        let win = self.order.winner;
        let (w, l) = if win == Side::Ours {
            (mo, mt)
        } else {
            (mt, mo)
        };
        // What a whole-file displacement records: both sides as manifests, not bytes.
        let whole = || {
            let file = |m: &FileManifest| WholeContent::File {
                mode,
                manifest: m.clone(),
            };
            Displaced::Whole {
                content: file(l),
                kept: Some(file(w)),
            }
        };
        if configured == Some(MergeMode::Whole)
            || too_big(mo)
            || too_big(mt)
            || bm.is_some_and(too_big)
        {
            // Whole without loading a byte: the manifests are the content.
            self.displaced(path, win, whole());
            self.modes.insert(path.clone(), MergeMode::Whole);
            return Ok(MergedContent::Manifest(w.clone()));
        }
        let load = |m: &FileManifest| {
            self.loader.load(m).map_err(|source| TreeMergeError::Load {
                path: path.clone(),
                source,
            })
        };
        let base = match bm {
            Some(m) => load(m)?,
            None => Vec::new(),
        };
        let (ours, theirs) = (load(mo)?, load(mt)?);
        let mode = configured.unwrap_or_else(|| {
            MergeMode::sniff(&[&base, &ours, &theirs], self.rules.single_document())
        });
        let out = merge_in_order(&base, &ours, &theirs, &self.order, mode).map_err(|source| {
            TreeMergeError::Merge {
                path: path.clone(),
                source,
            }
        })?;
        self.modes.insert(path.clone(), out.mode);
        for mut e in out.redo {
            e.path = Some(path.clone());
            // Whole content from a tree is better kept as manifests than as bytes.
            if let Displaced::Whole {
                content: WholeContent::Bytes(_),
                ..
            } = &e.what
            {
                e.what = whole();
            }
            self.redo.push(e);
        }
        let result = out.result.0;
        Ok(if result == ours {
            MergedContent::Manifest(mo.clone())
        } else if result == theirs {
            MergedContent::Manifest(mt.clone())
        } else {
            MergedContent::Bytes(result)
        })
    }

    /// A file or symlink with paths below it becomes a directory; it goes on the redo stack,
    /// displaced by the side that put paths below it.
    fn fix_structure(&mut self) {
        let mut clashes: Vec<RelPath> = Vec::new();
        for path in self.entries.keys() {
            for anc in path.ancestors() {
                if let Some((e, _)) = self.entries.get(anc)
                    && !matches!(e, MergedEntry::Dir { .. })
                    && let Ok(anc) = RelPath::new(anc)
                {
                    clashes.push(anc);
                }
            }
        }
        clashes.sort();
        clashes.dedup();
        for path in clashes {
            let dir = MergedEntry::Dir { mode: Mode::DIR };
            let Some((e, origin)) = self.entries.insert(path.clone(), (dir, Origin::Both)) else {
                continue;
            };
            let by = match origin {
                Origin::One(side) => side.other(),
                Origin::Both => self.order.winner,
            };
            let content = match e {
                MergedEntry::File {
                    mode,
                    content: MergedContent::Manifest(manifest),
                } => WholeContent::File { mode, manifest },
                MergedEntry::File {
                    content: MergedContent::Bytes(b),
                    ..
                } => WholeContent::Bytes(crate::redo::Bytes(b)),
                MergedEntry::Symlink { target } => WholeContent::Symlink { target },
                MergedEntry::Dir { .. } => continue,
            };
            self.displaced(
                &path,
                by,
                Displaced::Whole {
                    content,
                    kept: None,
                },
            );
        }
    }
}
