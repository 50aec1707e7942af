//! Two-way diffs for the merges: line hunks placed exactly as git's histogram diff places them
//! ([`crate::xdiff`]), and character hunks found by refining line hunks with imara-diff's
//! Myers, so a megabyte text never runs a character-level diff over the whole file.

use std::ops::Range;

use imara_diff::{Algorithm, Diff, Interner, NoSliderHeuristic, Token};

/// A change: the `before` range of the old sequence becomes the `after` range of the new one.
#[derive(Clone, PartialEq, Eq, Debug)]
pub(crate) struct Hunk {
    pub before: Range<usize>,
    pub after: Range<usize>,
}

/// Splits bytes into lines, each with its terminator (`\n`; a `\r` before it stays in the
/// line); the last line may have none.
pub(crate) fn split_lines(data: &[u8]) -> impl Iterator<Item = &[u8]> {
    imara_diff::sources::byte_lines(data)
}

/// Interned lines of the three files of a merge.
pub(crate) struct LineTokens<'a> {
    pub interner: Interner<&'a [u8]>,
    pub base: Vec<Token>,
    pub ours: Vec<Token>,
    pub theirs: Vec<Token>,
}

impl<'a> LineTokens<'a> {
    pub fn new(base: &'a [u8], ours: &'a [u8], theirs: &'a [u8]) -> Self {
        let estimate = (base.len() + ours.len() + theirs.len()) / 32 + 16;
        let mut interner = Interner::new(estimate);
        let mut tokens = |data: &'a [u8]| {
            split_lines(data)
                .map(|l| interner.intern(l))
                .collect::<Vec<_>>()
        };
        let base = tokens(base);
        let ours = tokens(ours);
        let theirs = tokens(theirs);
        LineTokens {
            interner,
            base,
            ours,
            theirs,
        }
    }

    /// The bytes of a token sequence.
    pub fn bytes(&self, tokens: &[Token]) -> Vec<u8> {
        let mut out = Vec::new();
        for &t in tokens {
            out.extend_from_slice(self.interner[t]);
        }
        out
    }
}

/// Line hunks from `before` to `after`, placed as `git merge-file --diff-algorithm=histogram`
/// places them (see [`crate::xdiff`]).
/// `hunks` with every replacement of n lines by n lines cut into one hunk per line that
/// differs, so a fine merge pairs a changed line with the line it replaced and never takes a
/// base line back over a line only the other side changed.
pub(crate) fn per_line_replacements(
    hunks: Vec<Hunk>,
    before: &[Token],
    after: &[Token],
) -> Vec<Hunk> {
    let mut out = Vec::with_capacity(hunks.len());
    for h in hunks {
        if h.before.len() != h.after.len() || h.before.len() < 2 {
            out.push(h);
            continue;
        }
        out.extend(
            h.before
                .zip(h.after)
                .filter(|&(i, j)| before[i] != after[j])
                .map(|(i, j)| Hunk {
                    before: i..i + 1,
                    after: j..j + 1,
                }),
        );
    }
    out
}

pub(crate) fn line_hunks(before: &[Token], after: &[Token], num_tokens: u32) -> Vec<Hunk> {
    let a: Vec<u32> = before.iter().map(|t| t.0).collect();
    let b: Vec<u32> = after.iter().map(|t| t.0).collect();
    let (ca, cb) = crate::xdiff::diff(&a, &b, num_tokens);
    let mut out = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        if ca.get(i) == Some(&true) || cb.get(j) == Some(&true) {
            let (si, sj) = (i, j);
            while ca.get(i) == Some(&true) {
                i += 1;
            }
            while cb.get(j) == Some(&true) {
                j += 1;
            }
            out.push(Hunk {
                before: si..i,
                after: sj..j,
            });
        } else {
            i += 1;
            j += 1;
        }
    }
    out
}

/// Line hunks larger than this (in characters, either side) are not refined to characters.
const REFINE_LIMIT: usize = 1 << 16;

/// Character hunks from `before` to `after`, in char indices into the two strings' chars.
pub(crate) fn char_hunks(before: &str, after: &str) -> Vec<Hunk> {
    let b_lines: Vec<&str> = before.split_inclusive('\n').collect();
    let a_lines: Vec<&str> = after.split_inclusive('\n').collect();
    let mut interner = Interner::new(b_lines.len() + a_lines.len() + 1);
    let bt: Vec<Token> = b_lines.iter().map(|l| interner.intern(*l)).collect();
    let at: Vec<Token> = a_lines.iter().map(|l| interner.intern(*l)).collect();
    let starts = |lines: &[&str]| {
        let mut v = Vec::with_capacity(lines.len() + 1);
        let mut n = 0;
        v.push(0);
        for l in lines {
            n += l.chars().count();
            v.push(n);
        }
        v
    };
    let (b_start, a_start) = (starts(&b_lines), starts(&a_lines));
    let b_chars: Vec<char> = before.chars().collect();
    let a_chars: Vec<char> = after.chars().collect();
    let mut out = Vec::new();
    // One character interner and one diff for all the line hunks.
    let mut ci: Interner<char> = Interner::new(256);
    let (mut bc, mut ac): (Vec<Token>, Vec<Token>) = (Vec::new(), Vec::new());
    let mut diff = Diff::default();
    for h in line_hunks(&bt, &at, interner.num_tokens()) {
        let before = b_start[h.before.start]..b_start[h.before.end];
        let after = a_start[h.after.start]..a_start[h.after.end];
        if before.is_empty() || after.is_empty() || before.len().max(after.len()) > REFINE_LIMIT {
            out.push(Hunk { before, after });
            continue;
        }
        bc.clear();
        bc.extend(b_chars[before.clone()].iter().map(|&c| ci.intern(c)));
        ac.clear();
        ac.extend(a_chars[after.clone()].iter().map(|&c| ci.intern(c)));
        diff.compute_with(Algorithm::Myers, &bc, &ac, ci.num_tokens());
        diff.postprocess_with(&bc, &ac, NoSliderHeuristic);
        out.extend(diff.hunks().map(|c| Hunk {
            before: before.start + c.before.start as usize..before.start + c.before.end as usize,
            after: after.start + c.after.start as usize..after.start + c.after.end as usize,
        }));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn apply(before: &[char], after: &[char], hunks: &[Hunk]) -> Vec<char> {
        let mut out = Vec::new();
        let mut at = 0;
        for h in hunks {
            out.extend_from_slice(&before[at..h.before.start]);
            out.extend_from_slice(&after[h.after.clone()]);
            at = h.before.end;
        }
        out.extend_from_slice(&before[at..]);
        out
    }

    #[test]
    fn char_hunks_rebuild_the_new_text() {
        for (a, b) in [
            (
                "hello world\nsecond line\n",
                "hello brave world\nsecond lime\nthird\n",
            ),
            ("", "new"),
            ("old", ""),
            ("héllo\n", "hallo\n"),
            ("a\nb\nc", "a\nB\nc\n"),
        ] {
            let (ac, bc): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
            let hunks = char_hunks(a, b);
            assert_eq!(apply(&ac, &bc, &hunks), bc, "{a:?} -> {b:?}");
        }
        let h = char_hunks("hello world\n", "hello brave world\n");
        assert_eq!(
            h,
            vec![Hunk {
                before: 6..6,
                after: 6..12
            }]
        );
    }

    #[test]
    fn lines_keep_their_terminators() {
        let lines: Vec<&[u8]> = split_lines(b"a\r\nb\nc").collect();
        assert_eq!(lines, [&b"a\r\n"[..], b"b\n", b"c"]);
    }
}
