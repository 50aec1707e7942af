//! What `GET /v1/conflicts` says of a displaced change besides its preview: the text that won
//! (`kept`), a hunk's context and line, sizes and kinds for whole files, the permission bits; enough
//! for `chorus conflicts SEQ` to show the displaced change as a diff against what won.

use chorus_chunking::FileManifest;
use chorus_merge::Displaced;
use chorus_merge::redo::WholeContent;
use serde::{Deserialize, Serialize};

/// The largest text shown (kept or displaced), as for the preview.
pub const MAX_TEXT: usize = 64 << 10;

/// The details of a displaced change; each field is left out where it does not apply.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConflictDetail {
    /// What won, as text, when it is text of at most 64 KiB: for a hunk, the winner's lines
    /// that stand where the displaced ones were; for a whole file or a deletion, the winner's
    /// file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kept: Option<String>,
    /// A hunk's context: up to three lines before and after it in the merged file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
    /// A hunk's first line in the merged file (counted from 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
    /// A whole file's or symlink's displaced kind (`file`, `symlink`) and size in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub displaced_kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub displaced_size: Option<u64>,
    /// What won at the path of a whole file or a deletion: `file`, `symlink` or `dir`, and a
    /// file's size in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kept_kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kept_size: Option<u64>,
    /// For `mode`: the permission bits the displaced change set, in octal (the winner kept
    /// others).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
}

impl ConflictDetail {
    /// The details of `what`; `load` reads a file's bytes (None when it cannot).
    pub fn of(what: &Displaced, load: impl Fn(&FileManifest) -> Option<Vec<u8>>) -> Self {
        let text = |bytes: Vec<u8>| {
            (bytes.len() <= MAX_TEXT)
                .then(|| String::from_utf8(bytes).ok())
                .flatten()
        };
        let content_text = |c: &WholeContent| match c {
            WholeContent::Bytes(b) => text(b.0.clone()),
            WholeContent::File { manifest, .. } if manifest.size() as usize <= MAX_TEXT => {
                load(manifest).and_then(text)
            }
            _ => None,
        };
        let kind_size = |c: &WholeContent| match c {
            WholeContent::Bytes(b) => ("file", Some(b.0.len() as u64)),
            WholeContent::File { manifest, .. } => ("file", Some(manifest.size())),
            WholeContent::Symlink { .. } => ("symlink", None),
            // Not resolved: the stored tree is still being fetched here.
            WholeContent::Stored { .. } => ("file", None),
        };
        match what {
            Displaced::Hunk(h) => ConflictDetail {
                kept: text(h.kept.0.clone()),
                before: text(h.before.0.clone()),
                after: text(h.after.0.clone()),
                line: Some(h.line + 1),
                ..Default::default()
            },
            Displaced::Whole { content, kept } => {
                let (displaced_kind, displaced_size) = kind_size(content);
                let (kept_kind, kept_size) = kept.as_ref().map_or(("dir", None), kind_size);
                ConflictDetail {
                    kept: kept.as_ref().and_then(content_text),
                    displaced_kind: Some(displaced_kind.into()),
                    displaced_size,
                    kept_kind: Some(kept_kind.into()),
                    kept_size,
                    ..Default::default()
                }
            }
            Displaced::Deletion { kept } => {
                let (kept_kind, kept_size) = kind_size(kept);
                ConflictDetail {
                    kept: content_text(kept),
                    kept_kind: Some(kept_kind.into()),
                    kept_size,
                    ..Default::default()
                }
            }
            Displaced::Mode { mode } => ConflictDetail {
                mode: Some(format!("{:04o}", mode.bits())),
                ..Default::default()
            },
        }
    }
}
