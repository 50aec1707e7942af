//! Which files a version moves: a file it removes whose content a file it writes has (an
//! editor's temp file renamed over the file it saves, a file moved or renamed in the share)
//! is renamed there by the writer (`Writer::move_file` in `write.rs`, which checks both ends)
//! rather than removed and written again.

use std::collections::{HashMap, HashSet};

use chorus_chunking::{Difference, Entry, FileManifest, Mode, RelPath};

/// Files of at least this size are moved rather than written again when the version removes
/// a file with their content: below it, writing costs about what the checks do.
const MOVE_MIN: u64 = 64 << 10;

/// A file the version writes that a removed file may be moved to.
pub(crate) struct Target<'d> {
    pub path: &'d RelPath,
    pub manifest: &'d FileManifest,
    pub mode: Mode,
}

/// The files a version writes (new or changed, not replacing another kind), by content, for
/// the files it removes to be moved to. Each target takes one file.
#[derive(Default)]
pub(crate) struct Moves<'d> {
    by_content: HashMap<&'d FileManifest, Vec<Target<'d>>>,
    /// The files removed, to their content in the old tree.
    removed: HashMap<&'d RelPath, &'d FileManifest>,
}

impl<'d> Moves<'d> {
    pub(crate) fn of(differences: &'d [Difference<'d>]) -> Self {
        let mut moves = Moves::default();
        for d in differences {
            if let (Some(Entry::File { manifest, .. }), None) = (d.old, d.new)
                && manifest.size() >= MOVE_MIN
            {
                moves.removed.insert(d.path, manifest);
            }
        }
        // A version that removes no file (an initial sync of 100k files) looks no further.
        if moves.removed.is_empty() {
            return moves;
        }
        let contents: HashSet<&FileManifest> = moves.removed.values().copied().collect();
        for d in differences {
            if let (None | Some(Entry::File { .. }), Some(Entry::File { mode, manifest })) =
                (d.old, d.new)
                && contents.contains(manifest)
            {
                moves.put_back(Target {
                    path: d.path,
                    manifest,
                    mode: *mode,
                });
            }
        }
        moves
    }

    /// A target for the removed file `path`, whose content the scan saw as `seen` (the content
    /// the disk is checked to hold): one with that very content.
    pub(crate) fn take(&mut self, path: &RelPath, seen: &FileManifest) -> Option<Target<'d>> {
        if self.removed.get(path).is_none_or(|m| *m != seen) {
            return None;
        }
        self.by_content.get_mut(seen)?.pop()
    }

    /// A target to offer (again, when [`take`](Self::take) gave it and the move did not
    /// happen).
    pub(crate) fn put_back(&mut self, to: Target<'d>) {
        self.by_content.entry(to.manifest).or_default().push(to);
    }
}
