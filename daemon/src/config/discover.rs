//! Finding a share from inside it, the way git finds its repository: from a folder (the
//! current directory, or `--folder`), walk up to the nearest folder that holds a share's state
//! dir: a folder share's `.chorus/`, or a document share's `.NAME.chorus` beside its file.

use std::path::{Path, PathBuf};

use super::{ShareKind, default_state_dir};

/// Why no share was found; each says what to do.
#[derive(Debug, thiserror::Error)]
pub enum DiscoverError {
    #[error(
        "no chorus daemon to ask: no chorus share here ({0} and the folders above it hold no .chorus, nor a .NAME.chorus beside a document); cd into a share, or pass --folder PATH (or --state-dir DIR)"
    )]
    NotFound(PathBuf),
    #[error("{dir} holds several document shares ({names}): name one with --folder {dir}/NAME")]
    Ambiguous { dir: PathBuf, names: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The state dir of the share `start` is in (or is): `start` itself when it is a shared
/// document, else the nearest of `start` and the folders above it that holds a `.chorus`
/// directory (a folder share) or a `.NAME.chorus` directory (a document share beside it).
pub fn find_state_dir(start: &Path) -> Result<PathBuf, DiscoverError> {
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| DiscoverError::Io { path, source }
    };
    let absolute = if start.is_absolute() {
        start.to_owned()
    } else {
        std::env::current_dir().map_err(io(start))?.join(start)
    };
    // A document named directly: its state dir sits beside it (the file itself may be gone).
    if !absolute.is_dir() {
        let beside = default_state_dir(&absolute, ShareKind::Document);
        if beside.is_dir() {
            return Ok(beside);
        }
    }
    let from = absolute.canonicalize().unwrap_or(absolute);
    let first = if from.is_dir() {
        Some(from.as_path())
    } else {
        from.parent()
    };
    for dir in first.into_iter().flat_map(Path::ancestors) {
        let folder = default_state_dir(dir, ShareKind::Folder);
        if folder.is_dir() {
            return Ok(folder);
        }
        let documents = document_state_dirs(dir);
        match documents.as_slice() {
            [] => {}
            [one] => return Ok(one.clone()),
            many => {
                return Err(DiscoverError::Ambiguous {
                    dir: dir.to_owned(),
                    names: many
                        .iter()
                        .filter_map(|d| document_of(d))
                        .collect::<Vec<_>>()
                        .join(", "),
                });
            }
        }
    }
    Err(DiscoverError::NotFound(from))
}

/// The `.NAME.chorus` directories in `dir` (unreadable folders hold none).
fn document_state_dirs(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut found: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| document_of(p).is_some() && p.is_dir())
        .collect();
    found.sort();
    found
}

/// The document a `.NAME.chorus` state dir belongs to: NAME.
fn document_of(state_dir: &Path) -> Option<String> {
    let name = state_dir.file_name()?.to_str()?;
    let doc = name.strip_prefix('.')?.strip_suffix(".chorus")?;
    (!doc.is_empty()).then(|| doc.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_nearest_share_above_and_a_document_beside_it() {
        let root = tempfile::tempdir().unwrap();
        let share = root.path().join("share");
        let deep = share.join("a/b/c");
        std::fs::create_dir_all(&deep).unwrap();
        std::fs::create_dir_all(share.join(".chorus")).unwrap();
        let found = find_state_dir(&deep).unwrap();
        assert_eq!(found, share.canonicalize().unwrap().join(".chorus"));
        // From inside the state dir itself.
        assert_eq!(find_state_dir(&share.join(".chorus")).unwrap(), found);

        let docs = root.path().join("docs");
        std::fs::create_dir_all(docs.join(".notes.md.chorus")).unwrap();
        std::fs::write(docs.join("notes.md"), "x").unwrap();
        let beside = docs.canonicalize().unwrap().join(".notes.md.chorus");
        assert_eq!(find_state_dir(&docs).unwrap(), beside);
        assert_eq!(find_state_dir(&docs.join("notes.md")).unwrap(), beside);

        std::fs::create_dir_all(docs.join(".todo.txt.chorus")).unwrap();
        let err = find_state_dir(&docs).unwrap_err().to_string();
        assert!(err.contains("notes.md, todo.txt"), "{err}");

        let nowhere = tempfile::tempdir().unwrap();
        let err = find_state_dir(nowhere.path()).unwrap_err().to_string();
        assert!(err.contains("no chorus share here"), "{err}");
    }
}
