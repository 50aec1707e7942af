//! [`Focus`]: what a scan that the watcher started needs to look at. The watcher names the
//! paths that changed; a focused scan lists the directories on the way to them (their routes)
//! and walks each named path and everything below it, and takes the rest of the tree from what
//! the folder last knew. The periodic full rescan catches what a watcher cannot see.

use std::collections::BTreeSet;
use std::ops::Bound::{Excluded, Included};
use std::path::Path;

use chorus_chunking::RelPath;

use crate::ignore_file::IGNORE_FILE;

/// Beyond this many changed paths a focused scan is no cheaper than a full one.
pub const MAX_FOCUS_PATHS: usize = 4096;

/// The changed paths of a share, relative to its root.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Focus {
    /// No path below another one.
    paths: BTreeSet<String>,
}

impl Focus {
    /// The focus on `changed` (absolute paths) below the share's `root`; `None` when only a
    /// full scan will do: the root itself changed, an ignore file changed (its rules reach
    /// paths the watcher did not name), or too many paths changed.
    pub fn of(root: &Path, changed: impl IntoIterator<Item = impl AsRef<Path>>) -> Option<Focus> {
        let mut paths = BTreeSet::new();
        for p in changed {
            let rel = p.as_ref().strip_prefix(root).ok()?;
            let rel = rel.to_str()?;
            if rel.is_empty() || rel.split('/').any(|c| c == IGNORE_FILE) {
                return None;
            }
            // A name that is not a valid path (the scan reports it as skipped) is looked at
            // through its parent.
            let rel = match RelPath::new(rel) {
                Ok(r) => r.as_str().to_owned(),
                Err(_) => match rel.rsplit_once('/') {
                    Some((parent, _)) => RelPath::new(parent).ok()?.as_str().to_owned(),
                    None => return None,
                },
            };
            paths.insert(rel);
            if paths.len() > MAX_FOCUS_PATHS {
                return None;
            }
        }
        let mut f = Focus::default();
        for p in paths {
            if !f.covers_str(&p) {
                f.paths.insert(p);
            }
        }
        Some(f)
    }

    pub fn is_empty(&self) -> bool {
        self.paths.is_empty()
    }

    /// True when `path` is a changed path or lies below one: a focused scan walks it.
    pub fn covers(&self, path: &RelPath) -> bool {
        self.covers_str(path.as_str())
    }

    /// As [`covers`](Self::covers), for a path as a string (`""` is the root).
    pub fn covers_str(&self, path: &str) -> bool {
        // A path that covers `path` is `path` or a prefix of it, so not after it: a path
        // before every changed one (most of the share, for a scan of a few paths) is not
        // covered. Asked for every path the folder knows after each focused scan.
        match self.paths.first() {
            Some(first) if first.as_str() <= path => {}
            _ => return false,
        }
        self.paths.contains(path)
            || path
                .bytes()
                .enumerate()
                .any(|(i, b)| b == b'/' && self.paths.contains(&path[..i]))
    }

    /// True when `dir` is a proper ancestor of a changed path: a focused scan lists it.
    pub fn leads_to(&self, dir: &RelPath) -> bool {
        let from = format!("{}/", dir.as_str());
        let to = format!("{}0", dir.as_str()); // '0' follows '/'
        self.paths
            .range::<str, _>((Included(from.as_str()), Excluded(to.as_str())))
            .next()
            .is_some()
    }

    /// Every directory on the way to a changed path (its proper ancestors).
    pub fn routes(&self) -> BTreeSet<String> {
        self.paths
            .iter()
            .flat_map(|p| ancestors(p).map(str::to_owned).collect::<Vec<_>>())
            .collect()
    }
}

/// The proper ancestors of `path`, nearest first.
fn ancestors(path: &str) -> impl Iterator<Item = &str> {
    path.char_indices()
        .filter(|&(_, c)| c == '/')
        .map(move |(i, _)| &path[..i])
        .rev()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rel(s: &str) -> RelPath {
        RelPath::new(s).unwrap()
    }

    #[test]
    fn a_focus_covers_its_paths_and_below_and_leads_through_their_parents() {
        let root = Path::new("/share");
        let f = Focus::of(root, ["/share/a/b/c.txt", "/share/a/b/c.txt", "/share/d"]).unwrap();
        assert!(f.covers(&rel("a/b/c.txt")));
        assert!(f.covers(&rel("d/e/f")));
        assert!(!f.covers(&rel("a/b")));
        assert!(!f.covers(&rel("a/b/c.txt2")));
        assert!(f.leads_to(&rel("a")) && f.leads_to(&rel("a/b")));
        assert!(!f.leads_to(&rel("d")) && !f.leads_to(&rel("a/b/c.txt")));
        assert_eq!(f.routes(), ["a", "a/b"].map(String::from).into());
    }

    /// The cover test is what "is it a changed path or below one" says, for names that sort
    /// between a directory and its contents ('-' and '.' come before '/') and before or after
    /// every changed path.
    #[test]
    fn covers_is_being_a_changed_path_or_below_one() {
        let root = Path::new("/s");
        let f = Focus::of(root, ["/s/b", "/s/b-x/y", "/s/é/z"]).unwrap();
        let by_definition = |p: &str| {
            f.paths
                .iter()
                .any(|c| p == c || (p.starts_with(c.as_str()) && p.as_bytes()[c.len()] == b'/'))
        };
        for p in [
            "a", "a/b", "b", "b/c", "b/c/d", "b-x", "b-x/y", "b-x/y/z", "b-x/yy", "b.x", "b.x/y",
            "b0", "bb/c", "c", "é", "é/z", "é/z/w", "é/zz", "ê/z",
        ] {
            assert_eq!(f.covers_str(p), by_definition(p), "{p}");
        }
    }

    #[test]
    fn a_path_below_another_is_folded_into_it() {
        let f = Focus::of(Path::new("/s"), ["/s/a/b", "/s/a", "/s/a/c"]).unwrap();
        assert_eq!(f.paths, ["a".to_owned()].into());
        assert!(f.routes().is_empty());
    }

    #[test]
    fn the_root_an_ignore_file_or_too_many_paths_need_a_full_scan() {
        let root = Path::new("/s");
        assert_eq!(Focus::of(root, ["/s"]), None);
        assert_eq!(Focus::of(root, ["/s/x/.chorusignore"]), None);
        assert_eq!(Focus::of(root, ["/elsewhere/x"]), None);
        let many: Vec<String> = (0..=MAX_FOCUS_PATHS).map(|i| format!("/s/f{i}")).collect();
        assert_eq!(Focus::of(root, many), None);
    }
}
