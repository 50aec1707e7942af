//! Merge modes (`lines`, `chars`, `whole`), chosen per path from configured globs, else
//! sniffed from the content: a NUL byte, invalid UTF-8 or more than 8 MiB means `whole`; a
//! single-document share means `chars`; any other text means `lines`.

use std::fmt;
use std::str::FromStr;

use chorus_chunking::RelPath;
use serde::{Deserialize, Serialize};

/// How the content of one file is merged.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MergeMode {
    /// Line-granular; where both sides changed the same region, the higher number wins and
    /// the other side's hunk goes on the redo stack. Equals `git merge-file` when clean.
    Lines,
    /// Character-granular; every insertion of both sides is kept; never a conflict.
    Chars,
    /// The higher-numbered file wins; the other goes on the redo stack.
    Whole,
}

/// Files larger than this are merged whole.
pub const MAX_TEXT_SIZE: usize = 8 << 20;

impl MergeMode {
    /// The mode for these contents (base, ours, theirs) when no glob decides.
    pub fn sniff(contents: &[&[u8]], single_document: bool) -> MergeMode {
        let binary = |c: &&[u8]| {
            c.len() > MAX_TEXT_SIZE || c.contains(&0) || std::str::from_utf8(c).is_err()
        };
        if contents.iter().any(binary) {
            MergeMode::Whole
        } else if single_document {
            MergeMode::Chars
        } else {
            MergeMode::Lines
        }
    }
}

impl fmt::Display for MergeMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MergeMode::Lines => "lines",
            MergeMode::Chars => "chars",
            MergeMode::Whole => "whole",
        })
    }
}

/// A merge mode that is not one of `lines`, `chars`, `whole`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown merge mode {0:?}: expected lines, chars or whole")]
pub struct UnknownMode(pub String);

impl FromStr for MergeMode {
    type Err = UnknownMode;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "lines" => Ok(MergeMode::Lines),
            "chars" => Ok(MergeMode::Chars),
            "whole" => Ok(MergeMode::Whole),
            _ => Err(UnknownMode(s.to_owned())),
        }
    }
}

/// A path glob: `*` matches within one component, `**` across components, `?` one character
/// other than `/`. A pattern without `/` matches the file name at any depth (as in
/// `.gitignore`); one with `/` matches the whole path.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Glob {
    pattern: Vec<char>,
    anchored: bool,
}

/// A glob that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad glob {0:?}: it must be non-empty and must not start with '/'")]
pub struct BadGlob(pub String);

impl Glob {
    pub fn new(pattern: &str) -> Result<Glob, BadGlob> {
        if pattern.is_empty() || pattern.starts_with('/') {
            return Err(BadGlob(pattern.to_owned()));
        }
        Ok(Glob {
            pattern: pattern.chars().collect(),
            anchored: pattern.contains('/'),
        })
    }

    pub fn matches(&self, path: &RelPath) -> bool {
        let subject = if self.anchored {
            path.as_str()
        } else {
            path.file_name()
        };
        let s: Vec<char> = subject.chars().collect();
        glob_match(&self.pattern, &s)
    }
}

fn glob_match(p: &[char], s: &[char]) -> bool {
    match p.split_first() {
        None => s.is_empty(),
        Some(('*', rest)) if rest.first() == Some(&'*') => {
            // `**`, and `**/` which may also match no directory at all.
            let rest = &rest[1..];
            if let Some(after) = rest.strip_prefix(&['/'])
                && glob_match(after, s)
            {
                return true;
            }
            (0..=s.len()).any(|i| glob_match(rest, &s[i..]))
        }
        Some(('*', rest)) => {
            let stop = s.iter().position(|&c| c == '/').unwrap_or(s.len());
            (0..=stop).any(|i| glob_match(rest, &s[i..]))
        }
        Some(('?', rest)) => s.first().is_some_and(|&c| c != '/') && glob_match(rest, &s[1..]),
        Some((c, rest)) => s.first() == Some(c) && glob_match(rest, &s[1..]),
    }
}

/// The configured modes of a share: globs checked in order (the first match wins), then
/// sniffing.
#[derive(Clone, Debug, Default)]
pub struct ModeRules {
    rules: Vec<(Glob, MergeMode)>,
    single_document: bool,
}

impl ModeRules {
    /// No globs; `single_document` for a share that is one document (sniffed text is `chars`).
    pub fn new(single_document: bool) -> ModeRules {
        ModeRules {
            rules: Vec::new(),
            single_document,
        }
    }

    /// Adds a rule after the existing ones.
    pub fn with(mut self, pattern: &str, mode: MergeMode) -> Result<ModeRules, BadGlob> {
        self.rules.push((Glob::new(pattern)?, mode));
        Ok(self)
    }

    /// True for a single-document share.
    pub fn single_document(&self) -> bool {
        self.single_document
    }

    /// The glob's mode for `path`, if one matches.
    pub fn configured(&self, path: &RelPath) -> Option<MergeMode> {
        self.rules
            .iter()
            .find(|(g, _)| g.matches(path))
            .map(|(_, m)| *m)
    }

    /// The mode for `path` with these contents (base, ours, theirs).
    pub fn mode_for(&self, path: &RelPath, contents: &[&[u8]]) -> MergeMode {
        self.configured(path)
            .unwrap_or_else(|| MergeMode::sniff(contents, self.single_document))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> RelPath {
        RelPath::new(s).unwrap()
    }

    #[test]
    fn sniffing() {
        assert_eq!(MergeMode::sniff(&[b"a\n", b"b\n"], false), MergeMode::Lines);
        assert_eq!(MergeMode::sniff(&[b"a\n", b"b\n"], true), MergeMode::Chars);
        assert_eq!(MergeMode::sniff(&[b"a\0", b"b\n"], false), MergeMode::Whole);
        assert_eq!(
            MergeMode::sniff(&[b"a\n", b"\xff\xfe"], true),
            MergeMode::Whole
        );
        let big = vec![b'a'; MAX_TEXT_SIZE + 1];
        assert_eq!(MergeMode::sniff(&[b"", &big], false), MergeMode::Whole);
        let limit = vec![b'a'; MAX_TEXT_SIZE];
        assert_eq!(MergeMode::sniff(&[b"", &limit], false), MergeMode::Lines);
    }

    #[test]
    fn globs() {
        let g = Glob::new("*.md").unwrap();
        assert!(g.matches(&p("notes.md")));
        assert!(g.matches(&p("a/b/notes.md")));
        assert!(!g.matches(&p("notes.mdx")));
        let g = Glob::new("docs/*.txt").unwrap();
        assert!(g.matches(&p("docs/a.txt")));
        assert!(!g.matches(&p("docs/x/a.txt")));
        assert!(!g.matches(&p("other/docs/a.txt")));
        let g = Glob::new("docs/**/*.txt").unwrap();
        assert!(g.matches(&p("docs/a.txt")));
        assert!(g.matches(&p("docs/x/y/a.txt")));
        let g = Glob::new("?.bin").unwrap();
        assert!(g.matches(&p("a.bin")) && !g.matches(&p("ab.bin")));
        assert!(Glob::new("").is_err() && Glob::new("/abs").is_err());
    }

    #[test]
    fn rules_first_match_then_sniff() {
        let rules = ModeRules::new(false)
            .with("*.lock", MergeMode::Whole)
            .unwrap()
            .with("*.md", MergeMode::Chars)
            .unwrap();
        assert_eq!(
            rules.mode_for(&p("Cargo.lock"), &[b"a\n"]),
            MergeMode::Whole
        );
        assert_eq!(
            rules.mode_for(&p("x/README.md"), &[b"a\n"]),
            MergeMode::Chars
        );
        assert_eq!(rules.mode_for(&p("main.rs"), &[b"a\n"]), MergeMode::Lines);
        assert_eq!(
            rules.mode_for(&p("img.png"), &[b"\x89PNG\0"]),
            MergeMode::Whole
        );
        assert_eq!("chars".parse::<MergeMode>(), Ok(MergeMode::Chars));
        assert!("bytes".parse::<MergeMode>().is_err());
    }
}
