//! The mass-delete guard: a version that would delete most of the files in a share (a wiped
//! disk, an unmounted drive, a mistaken `rm -r` on another machine) is not written until the
//! user says so with `chorus resume --confirm`. Its content stays in history either way.

use chorus_chunking::{Entry, TreeManifest};

/// When a version deletes too much.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MassDeleteGuard {
    /// More than this fraction of the files here...
    pub max_fraction: f64,
    /// ...or more than this many files.
    pub max_files: u64,
    /// The fraction rule applies from this many deleted files on, so removing two of the
    /// three files of a small share is not held.
    pub min_files: u64,
}

impl Default for MassDeleteGuard {
    fn default() -> Self {
        MassDeleteGuard {
            max_fraction: 0.5,
            max_files: 1000,
            min_files: 10,
        }
    }
}

impl MassDeleteGuard {
    /// Never holds anything.
    pub fn off() -> Self {
        MassDeleteGuard {
            max_fraction: 1.0,
            max_files: u64::MAX,
            min_files: u64::MAX,
        }
    }

    /// `Some((deleted, files))` when going from `old` to `new` deletes too many of `old`'s
    /// files (and symlinks).
    pub fn trips(&self, old: &TreeManifest, new: &TreeManifest) -> Option<(usize, usize)> {
        let is_file = |e: &Entry| !e.is_dir();
        let files = old.iter().filter(|(_, e)| is_file(e)).count();
        // One walk of both trees: a lookup of every old path in the new tree was a tenth of a
        // 100k-file share's work per change.
        let deleted = old
            .differences(new)
            .iter()
            .filter(|d| d.old.is_some_and(is_file) && d.new.is_none_or(|n| !is_file(n)))
            .count();
        let too_many = deleted as u64 > self.max_files;
        let too_much =
            deleted as u64 >= self.min_files && deleted as f64 > self.max_fraction * files as f64;
        (too_many || too_much).then_some((deleted, files))
    }
}

#[cfg(test)]
mod tests {
    use chorus_chunking::{FileManifest, RelPath};

    use super::*;

    fn tree(n: usize) -> TreeManifest {
        TreeManifest::from_entries((0..n).map(|i| {
            (
                RelPath::new(format!("d/f{i}")).unwrap(),
                Entry::file(FileManifest::default()),
            )
        }))
        .unwrap()
    }

    #[test]
    fn holds_most_or_many_deletions_and_lets_small_ones_through() {
        let g = MassDeleteGuard::default();
        assert_eq!(g.trips(&tree(20), &tree(5)), Some((15, 20)));
        assert_eq!(g.trips(&tree(20), &tree(10)), None, "exactly half");
        assert_eq!(g.trips(&tree(3), &tree(1)), None, "below min_files");
        assert_eq!(g.trips(&tree(5000), &tree(3999)), Some((1001, 5000)));
        assert_eq!(g.trips(&tree(5000), &tree(4000)), None);
        assert_eq!(g.trips(&tree(0), &tree(0)), None);
        assert_eq!(MassDeleteGuard::off().trips(&tree(20), &tree(0)), None);
    }
}
