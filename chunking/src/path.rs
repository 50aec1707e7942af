//! Validated share-relative paths. A [`RelPath`] is relative, `/`-separated UTF-8 with no
//! empty, `.` or `..` component, no NUL, no leading or trailing `/`, and never inside the state
//! dir: a path from a peer or from disk is checked once, here, before it touches anything.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// The state directory at a share's root; never synced.
pub const STATE_DIR: &str = ".chorus";

/// The marker file at a share's root, which says the folder is there (not an empty mount
/// point); never synced.
pub const SHARE_MARKER: &str = ".chorus-share";

/// Longest path accepted, in bytes.
pub const MAX_PATH_LEN: usize = 4096;

/// A share's state dir by its name: `.chorus` (a folder share's) or `.NAME.chorus` (the one
/// beside a document share's document).
pub fn is_state_dir_name(name: &str) -> bool {
    name == STATE_DIR
        || (name.len() > STATE_DIR.len() + 1 && name.starts_with('.') && name.ends_with(STATE_DIR))
}

/// Why a path was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("empty path")]
    Empty,
    #[error("path {0:?} is absolute; share paths are relative")]
    Absolute(String),
    #[error("path {0:?} has an empty, '.' or '..' component")]
    BadComponent(String),
    #[error("path {0:?} contains a NUL byte")]
    Nul(String),
    #[error(
        "path {0:?} is inside a share's state dir ({STATE_DIR}, or .NAME{STATE_DIR} beside a document), never synced"
    )]
    StateDir(String),
    #[error("path {0:?} is the share marker {SHARE_MARKER}, which every machine keeps its own")]
    Marker(String),
    #[error("path of {0} bytes is longer than {MAX_PATH_LEN}")]
    TooLong(usize),
    #[error("file name {0:?} is not valid UTF-8")]
    NotUtf8(String),
}

/// A validated share-relative path. Ordered by bytes, which is the manifest's order.
///
/// Shared, not copied, when cloned: the scan's table, the tree and the sets built while
/// scanning each hold every path of the share (100k of them), one string among them.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RelPath(Arc<str>);

impl RelPath {
    /// Validates `s` as a share path.
    pub fn new(s: impl Into<String>) -> Result<Self, PathError> {
        let s = s.into();
        if s.is_empty() {
            return Err(PathError::Empty);
        }
        if s.len() > MAX_PATH_LEN {
            return Err(PathError::TooLong(s.len()));
        }
        if s.contains('\0') {
            return Err(PathError::Nul(s));
        }
        if s.starts_with('/') {
            return Err(PathError::Absolute(s));
        }
        if s.split('/').any(|c| c.is_empty() || c == "." || c == "..") {
            return Err(PathError::BadComponent(s));
        }
        if s.split('/').next() == Some(STATE_DIR) {
            return Err(PathError::StateDir(s));
        }
        if s.split('/').next() == Some(SHARE_MARKER) {
            return Err(PathError::Marker(s));
        }
        Ok(RelPath(s.into()))
    }

    /// True for another share's state below the root (a share made inside this one): its
    /// state dir (`.chorus`, or `.NAME.chorus` beside a document), what is in it, or its
    /// marker. Such paths are valid (a tree an earlier build made may hold them), but a scan
    /// never takes them in and a write never creates, replaces or removes them: they hold that
    /// share's keys and databases.
    pub fn is_share_state(&self) -> bool {
        self.0
            .split('/')
            .any(|c| is_state_dir_name(c) || c == SHARE_MARKER)
    }

    /// The path as a `/`-separated string.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The parent directory, `None` at the top level.
    pub fn parent(&self) -> Option<RelPath> {
        self.0.rsplit_once('/').map(|(p, _)| RelPath(p.into()))
    }

    /// Every proper ancestor, nearest first.
    pub fn ancestors(&self) -> impl Iterator<Item = &str> {
        let s: &str = &self.0;
        s.char_indices()
            .filter(|&(_, c)| c == '/')
            .map(move |(i, _)| &s[..i])
            .rev()
    }

    /// The last component.
    pub fn file_name(&self) -> &str {
        self.0.rsplit('/').next().unwrap_or(&self.0)
    }

    /// `self/name`, validated.
    pub fn join(&self, name: &str) -> Result<RelPath, PathError> {
        RelPath::new(format!("{}/{name}", self.0))
    }

    /// True when `self` is `other` or lies below it.
    pub fn starts_with(&self, other: &RelPath) -> bool {
        self.0 == other.0
            || (self.0.starts_with(&*other.0)
                && self.0.as_bytes().get(other.0.len()) == Some(&b'/'))
    }

    /// The path below a share root on this machine.
    pub fn to_fs_path(&self, root: &std::path::Path) -> std::path::PathBuf {
        root.join(&*self.0)
    }
}

impl TryFrom<String> for RelPath {
    type Error = PathError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        RelPath::new(s)
    }
}

impl From<RelPath> for String {
    fn from(p: RelPath) -> String {
        p.0.as_ref().to_owned()
    }
}

impl fmt::Display for RelPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for RelPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl std::borrow::Borrow<str> for RelPath {
    fn borrow(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_normal_paths() {
        for p in ["a", "a/b.txt", "dir/sub/file", ".hidden", "..a", "a..b"] {
            assert!(RelPath::new(p).is_ok(), "{p}");
        }
    }

    #[test]
    fn refuses_escapes_and_state_dir() {
        for p in [
            "",
            "/etc/passwd",
            "../x",
            "a/../b",
            "a/./b",
            "a//b",
            "a/",
            "./a",
            ".chorus",
            ".chorus/api.sock",
            ".chorus-share",
            "a\0b",
        ] {
            assert!(RelPath::new(p).is_err(), "{p:?}");
        }
        // A share inside the share: valid paths (trees may hold them), its state at any depth.
        for p in [
            "inner/.chorus/identity.key",
            "inner/.chorus",
            "docs/.notes.md.chorus/raft.redb",
            "inner/.chorus-share",
        ] {
            assert!(RelPath::new(p).unwrap().is_share_state(), "{p:?}");
        }
        // Names that only look alike are not.
        for p in [
            "a.chorus",
            "x/.chorus.bak",
            "notes.chorus",
            "y/chorus",
            ".hidden/x",
        ] {
            assert!(!RelPath::new(p).unwrap().is_share_state(), "{p:?}");
        }
        assert!(matches!(
            RelPath::new("x".repeat(5000)),
            Err(PathError::TooLong(5000))
        ));
    }

    #[test]
    fn ancestors_and_prefixes() {
        let p = RelPath::new("a/b/c").unwrap();
        assert_eq!(p.ancestors().collect::<Vec<_>>(), ["a/b", "a"]);
        assert_eq!(p.parent().unwrap().as_str(), "a/b");
        assert_eq!(p.file_name(), "c");
        assert!(p.starts_with(&RelPath::new("a/b").unwrap()));
        assert!(!p.starts_with(&RelPath::new("a/bc").unwrap()));
        assert!(
            !RelPath::new("a/bc")
                .unwrap()
                .starts_with(&RelPath::new("a/b").unwrap())
        );
    }
}
