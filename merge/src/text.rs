//! Three-way merge of one file's content: `merge(base, ours, theirs, numbers, mode)`.
//!
//! Both sides are diffed against the base (histogram), the kept hunks become WOOT operations
//! of two sites (the lower-numbered side is site 2, the higher site 3, the base site 1), and
//! the integrated sequence is read out.
//!
//! - `lines`: hunks of the two sides that overlap or touch in the base form a group (git's rule
//!   for a conflict). A group where both sides end up with the same text is clean; otherwise the
//!   higher number's hunks win and the other side's version of the region becomes a redo entry
//!   with three lines of context. Without conflicts the result is `git merge-file`'s.
//! - `chars`: every hunk of both sides is kept (identical hunks once); deletions are
//!   idempotent and insertions into the same gap are ordered by id, so by version number.
//! - `whole`: the higher number's file wins; the other file becomes a redo entry.
//!
//! Everything depends on the sides only through (content, number), which makes the merge
//! symmetric: swapping the sides together with their numbers gives the same bytes.

use chorus_chunking::VersionNumber;
use serde::{Deserialize, Serialize};

use crate::diff::{Hunk, LineTokens, char_hunks, line_hunks, per_line_replacements};
use crate::mode::MergeMode;
use crate::order::{Order, Side};
use crate::redo::{Bytes, Displaced, HunkRedo, RedoEntry, WholeContent};
use crate::woot::{Anchor, Doc, ElemId, Op, Site, Token, WootError};

/// Lines of context kept around a displaced hunk.
pub const CONTEXT_LINES: usize = 3;

/// What a content merge produced.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct MergeOutcome {
    /// The mode actually used (`chars` on text that is not UTF-8 falls back to `whole`).
    pub mode: MergeMode,
    /// The merged content.
    pub result: Bytes,
    /// What the merge displaced, one entry per conflict resolved by order. Their `path` is
    /// None: a content merge does not know the file's path.
    pub redo: Vec<RedoEntry>,
}

impl MergeOutcome {
    /// Number of conflicts resolved by version order (0 when clean), as `git merge-file`
    /// counts conflicts.
    pub fn conflicts(&self) -> usize {
        self.redo.len()
    }

    pub fn is_clean(&self) -> bool {
        self.redo.is_empty()
    }

    /// The exit status of `chorus merge-file`: the number of conflicts resolved by order,
    /// capped at 127 as `git merge-file` caps it.
    pub fn exit_code(&self) -> u8 {
        self.conflicts().min(127) as u8
    }

    /// The redo entries as pretty JSON, for `chorus merge-file --redo FILE`.
    pub fn redo_json(&self) -> String {
        // Plain data with string keys: serializing cannot fail.
        serde_json::to_string_pretty(&self.redo).unwrap_or_else(|_| "[]".to_owned())
    }
}

/// `chorus merge-file` without the I/O: merges in `mode`, or in the sniffed mode (as for a
/// folder share) when None. Arguments in the order of `git merge-file`: ours, base, theirs.
pub fn merge_file(
    ours: &[u8],
    base: &[u8],
    theirs: &[u8],
    mode: Option<MergeMode>,
    ours_number: VersionNumber,
    theirs_number: VersionNumber,
) -> Result<MergeOutcome, MergeError> {
    let mode = mode.unwrap_or_else(|| MergeMode::sniff(&[base, ours, theirs], false));
    merge(base, ours, theirs, ours_number, theirs_number, mode)
}

/// Why a content merge failed. It cannot fail on any input; this reports a broken invariant
/// of the sequence engine instead of panicking.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MergeError {
    #[error("sequence engine: {0}")]
    Engine(#[from] WootError),
}

const BASE_SITE: Site = site(1);
const LOW_SITE: Site = site(2);
const HIGH_SITE: Site = site(3);

const fn site(n: u32) -> Site {
    match Site::new(n) {
        Some(s) => s,
        None => panic!("site 0"),
    }
}

/// Merges `ours` and `theirs`, both edited from `base`, in `mode`. On a conflict the side
/// with the higher number wins and the other's change becomes a redo entry.
pub fn merge(
    base: &[u8],
    ours: &[u8],
    theirs: &[u8],
    ours_number: VersionNumber,
    theirs_number: VersionNumber,
    mode: MergeMode,
) -> Result<MergeOutcome, MergeError> {
    let order = Order::new(ours_number, theirs_number, ours, theirs);
    merge_in_order(base, ours, theirs, &order, mode)
}

/// [`merge`] with the winner already chosen: a file merged inside a tree merge follows the
/// tree's order, so what a whole-file redo entry records as the loser is the side the file
/// did not keep (with equal numbers, the file's own tie-break could pick the other side).
pub(crate) fn merge_in_order(
    base: &[u8],
    ours: &[u8],
    theirs: &[u8],
    order: &Order,
    mode: MergeMode,
) -> Result<MergeOutcome, MergeError> {
    let clean = |result: &[u8]| MergeOutcome {
        mode,
        result: Bytes(result.to_vec()),
        redo: Vec::new(),
    };
    if ours == theirs || theirs == base {
        return Ok(clean(ours));
    }
    if ours == base {
        return Ok(clean(theirs));
    }
    match mode {
        MergeMode::Whole => Ok(merge_whole(ours, theirs, order)),
        MergeMode::Lines => merge_lines(base, ours, theirs, order, Adjacent::Conflict),
        MergeMode::Chars => match (
            std::str::from_utf8(base),
            std::str::from_utf8(ours),
            std::str::from_utf8(theirs),
        ) {
            (Ok(b), Ok(o), Ok(t)) => merge_chars(b, o, t, order),
            _ => Ok(merge_whole(ours, theirs, order)),
        },
    }
}

fn merge_whole(ours: &[u8], theirs: &[u8], order: &Order) -> MergeOutcome {
    let (win, lose) = match order.winner {
        Side::Ours => (ours, theirs),
        Side::Theirs => (theirs, ours),
    };
    MergeOutcome {
        mode: MergeMode::Whole,
        result: Bytes(win.to_vec()),
        redo: vec![RedoEntry {
            path: None,
            displaced_by: order.high(),
            displaced_from: order.low(),
            what: Displaced::Whole {
                content: WholeContent::Bytes(Bytes(lose.to_vec())),
                kept: Some(WholeContent::Bytes(Bytes(win.to_vec()))),
            },
        }],
    }
}

/// A hunk tagged with its side.
struct SideHunk {
    side: Side,
    hunk: Hunk,
}

/// The text one side gives the base region `lo..hi`, from its hunks inside the region.
fn side_version<T: Copy>(
    base: &[T],
    side: &[T],
    hunks: &[&SideHunk],
    who: Side,
    lo: usize,
    hi: usize,
) -> Vec<T> {
    let mut out = Vec::new();
    let mut at = lo;
    for h in hunks.iter().filter(|h| h.side == who) {
        out.extend_from_slice(&base[at..h.hunk.before.start]);
        out.extend_from_slice(&side[h.hunk.after.clone()]);
        at = h.hunk.before.end;
    }
    out.extend_from_slice(&base[at..hi]);
    out
}

/// Whether changes to adjacent lines (hunks that touch without overlapping) conflict, as
/// they do in `git merge-file`, or combine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Adjacent {
    Conflict,
    Combine,
}

/// A line merge in which only overlapping changes conflict: changes to adjacent lines combine.
/// A redo re-applies a displaced change this way, so it changes exactly the lines that change
/// changed and nothing beside them. `theirs` wins what conflicts.
pub(crate) fn merge_lines_fine(
    base: &[u8],
    ours: &[u8],
    theirs: &[u8],
) -> Result<MergeOutcome, MergeError> {
    let order = Order::new(
        VersionNumber::new(0, 0),
        VersionNumber::new(1, 0),
        ours,
        theirs,
    );
    merge_lines(base, ours, theirs, &order, Adjacent::Combine)
}

fn merge_lines(
    base: &[u8],
    ours: &[u8],
    theirs: &[u8],
    order: &Order,
    adjacent: Adjacent,
) -> Result<MergeOutcome, MergeError> {
    let lt = LineTokens::new(base, ours, theirs);
    let n = lt.interner.num_tokens();
    // A fine merge pairs the lines of an n-for-n replacement one to one, so a change to one
    // of them does not carry the base's copy of its neighbours over the other side's edits.
    let hunks = |side: &[imara_diff::Token]| {
        let h = line_hunks(&lt.base, side, n);
        match adjacent {
            Adjacent::Conflict => h,
            Adjacent::Combine => per_line_replacements(h, &lt.base, side),
        }
    };
    let mut all: Vec<SideHunk> = hunks(&lt.ours)
        .into_iter()
        .map(|hunk| SideHunk {
            side: Side::Ours,
            hunk,
        })
        .chain(hunks(&lt.theirs).into_iter().map(|hunk| SideHunk {
            side: Side::Theirs,
            hunk,
        }))
        .collect();
    all.sort_by_key(|h| {
        (
            h.hunk.before.start,
            h.hunk.before.end,
            h.side == Side::Theirs,
        )
    });
    let content = |s: Side| match s {
        Side::Ours => &lt.ours[..],
        Side::Theirs => &lt.theirs[..],
    };

    // Groups of hunks that overlap or touch in the base; a group with both sides is a conflict
    // unless both sides give its region the same text.
    let mut kept: Vec<(Side, Hunk)> = Vec::new();
    struct Conflict {
        lo: usize,
        base_text: Vec<imara_diff::Token>,
        winner_text: Vec<imara_diff::Token>,
        loser_text: Vec<imara_diff::Token>,
    }
    let mut conflicts: Vec<Conflict> = Vec::new();
    let mut i = 0;
    while i < all.len() {
        let lo = all[i].hunk.before.start;
        let mut hi = all[i].hunk.before.end;
        let mut j = i + 1;
        while j < all.len() && {
            let h = &all[j].hunk.before;
            match adjacent {
                Adjacent::Conflict => h.start <= hi,
                // Overlapping, or two insertions at one point (their order is a conflict).
                Adjacent::Combine => {
                    h.start < hi || (h.start == lo && h.is_empty() && all[i].hunk.before.is_empty())
                }
            }
        } {
            hi = hi.max(all[j].hunk.before.end);
            j += 1;
        }
        let group: Vec<&SideHunk> = all[i..j].iter().collect();
        let both = group.iter().any(|h| h.side == Side::Ours)
            && group.iter().any(|h| h.side == Side::Theirs);
        if !both {
            kept.extend(group.iter().map(|h| (h.side, h.hunk.clone())));
        } else {
            let win = order.winner;
            let wt = side_version(&lt.base, content(win), &group, win, lo, hi);
            let loser = side_version(&lt.base, content(win.other()), &group, win.other(), lo, hi);
            // The winner's hunks go in either way; when the texts agree nothing is displaced.
            kept.extend(
                group
                    .iter()
                    .filter(|h| h.side == win)
                    .map(|h| (h.side, h.hunk.clone())),
            );
            if wt != loser {
                conflicts.push(Conflict {
                    lo,
                    base_text: lt.base[lo..hi].to_vec(),
                    winner_text: wt,
                    loser_text: loser,
                });
            }
        }
        i = j;
    }

    let ids = |v: &[imara_diff::Token]| v.iter().map(|t| t.0).collect::<Vec<u32>>();
    let (b32, o32, t32) = (ids(&lt.base), ids(&lt.ours), ids(&lt.theirs));
    let content32 = |s: Side| match s {
        Side::Ours => &o32[..],
        Side::Theirs => &t32[..],
    };
    let result: Vec<imara_diff::Token> = weave(&b32, &kept, content32, order)?
        .into_iter()
        .map(imara_diff::Token)
        .collect();

    // Redo entries: locate each conflict's region in the result from the kept hunks' sizes.
    let mut redo = Vec::with_capacity(conflicts.len());
    let mut shift: isize = 0;
    let mut k = 0;
    for c in &conflicts {
        while k < kept.len() && kept[k].1.before.start < c.lo {
            shift += kept[k].1.after.len() as isize - kept[k].1.before.len() as isize;
            k += 1;
        }
        let start = ((c.lo as isize + shift).max(0) as usize).min(result.len());
        let end = (start + c.winner_text.len()).min(result.len());
        let before = &result[start.saturating_sub(CONTEXT_LINES)..start];
        let after = &result[end..(end + CONTEXT_LINES).min(result.len())];
        redo.push(RedoEntry {
            path: None,
            displaced_by: order.high(),
            displaced_from: order.low(),
            what: Displaced::Hunk(HunkRedo {
                line: start,
                before: Bytes(lt.bytes(before)),
                kept: Bytes(lt.bytes(&c.winner_text)),
                displaced: Bytes(lt.bytes(&c.loser_text)),
                after: Bytes(lt.bytes(after)),
                base: Some(Bytes(lt.bytes(&c.base_text))),
            }),
        });
    }
    Ok(MergeOutcome {
        mode: MergeMode::Lines,
        result: Bytes(lt.bytes(&result)),
        redo,
    })
}

fn merge_chars(
    base: &str,
    ours: &str,
    theirs: &str,
    order: &Order,
) -> Result<MergeOutcome, MergeError> {
    let b: Vec<char> = base.chars().collect();
    let o: Vec<char> = ours.chars().collect();
    let t: Vec<char> = theirs.chars().collect();
    let oh = char_hunks(base, ours);
    let th = char_hunks(base, theirs);
    // A hunk both sides made identically is kept once.
    let by_range: std::collections::HashMap<(usize, usize), &Hunk> = oh
        .iter()
        .map(|h| ((h.before.start, h.before.end), h))
        .collect();
    let same = |h: &Hunk| {
        by_range
            .get(&(h.before.start, h.before.end))
            .is_some_and(|k| o[k.after.clone()] == t[h.after.clone()])
    };
    let theirs_kept: Vec<Hunk> = th.into_iter().filter(|h| !same(h)).collect();
    let mut kept: Vec<(Side, Hunk)> = oh.into_iter().map(|h| (Side::Ours, h)).collect();
    kept.extend(theirs_kept.into_iter().map(|h| (Side::Theirs, h)));
    let content = |s: Side| match s {
        Side::Ours => &o[..],
        Side::Theirs => &t[..],
    };
    let result = weave(&b, &kept, content, order)?;
    Ok(MergeOutcome {
        mode: MergeMode::Chars,
        result: Bytes(result.into_iter().collect::<String>().into_bytes()),
        redo: Vec::new(),
    })
}

/// Integrates the base and the kept hunks of both sides through WOOT and reads the result.
/// Each side's hunks are the operations its site would have sent: a deletion of the base
/// range, and an insertion after the base element before it (cp) and before the first element
/// of the range (cn), as a local edit names its neighbours.
fn weave<'a, T: Token + 'a>(
    base: &[T],
    kept: &[(Side, Hunk)],
    content: impl Fn(Side) -> &'a [T],
    order: &Order,
) -> Result<Vec<T>, MergeError> {
    let mut doc: Doc<T> = Doc::new();
    if !base.is_empty() {
        doc.insert(BASE_SITE, 0, base)?;
    }
    let base_elem = |i: usize| {
        Anchor::Elem(ElemId {
            site: BASE_SITE,
            clock: i as u32,
        })
    };
    // Lower number first: the integration order does not change the result, but a fixed one
    // keeps even the engine's work symmetric.
    for side in [order.loser(), order.winner] {
        let site = if side == order.winner {
            HIGH_SITE
        } else {
            LOW_SITE
        };
        let mut clock = 0u32;
        for (_, h) in kept.iter().filter(|(s, _)| *s == side) {
            if !h.before.is_empty() {
                doc.apply(Op::Delete {
                    target: ElemId {
                        site: BASE_SITE,
                        clock: h.before.start as u32,
                    },
                    len: h.before.len() as u32,
                })?;
            }
            if !h.after.is_empty() {
                let cp = if h.before.start == 0 {
                    Anchor::Begin
                } else {
                    base_elem(h.before.start - 1)
                };
                let cn = if h.before.start < base.len() {
                    base_elem(h.before.start)
                } else {
                    Anchor::End
                };
                let values = content(side)[h.after.clone()].to_vec();
                let len = values.len() as u32;
                doc.apply(Op::Insert {
                    id: ElemId { site, clock },
                    cp,
                    cn,
                    values,
                })?;
                clock = clock.checked_add(len).ok_or(WootError::ClockOverflow)?;
            }
        }
    }
    Ok(doc.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(major: u64, minor: u32) -> VersionNumber {
        VersionNumber::new(major, minor)
    }

    fn lines(base: &str, ours: &str, theirs: &str) -> MergeOutcome {
        merge(
            base.as_bytes(),
            ours.as_bytes(),
            theirs.as_bytes(),
            n(7, 1),
            n(7, 2),
            MergeMode::Lines,
        )
        .unwrap()
    }

    #[test]
    fn a_fine_merge_pairs_replaced_lines_one_to_one() {
        // What stands changed two lines; the change being re-applied changed the first only:
        // the second keeps what stands, and only the first line is displaced.
        let m = merge_lines_fine(b"l1\nl2\n", b"B1\nB2\n", b"A1\nl2\n").unwrap();
        assert_eq!(m.result.0, b"A1\nB2\n");
        assert_eq!(m.redo.len(), 1);
        match &m.redo[0].what {
            Displaced::Hunk(h) => assert_eq!(
                (h.kept.0.as_slice(), h.displaced.0.as_slice()),
                (&b"A1\n"[..], &b"B1\n"[..])
            ),
            other => panic!("{other:?}"),
        }
        // A replacement of a different length cannot be paired: the region conflicts whole.
        let m = merge_lines_fine(b"l1\nl2\n", b"B1\nB2\nB3\n", b"A1\nl2\n").unwrap();
        assert_eq!(m.result.0, b"A1\nl2\n");
    }

    #[test]
    fn separate_changes_combine() {
        let m = lines("a\nb\nc\nd\ne\n", "A\nb\nc\nd\ne\n", "a\nb\nc\nd\nE\n");
        assert_eq!(m.result.0, b"A\nb\nc\nd\nE\n");
        assert!(m.is_clean());
    }

    #[test]
    fn a_conflict_goes_to_the_higher_number_and_the_other_hunk_to_redo() {
        let m = lines("a\nb\nc\n", "a\nB1\nc\n", "a\nB2\nc\n");
        assert_eq!(m.result.0, b"a\nB2\nc\n");
        assert_eq!(m.conflicts(), 1);
        let Displaced::Hunk(h) = &m.redo[0].what else {
            panic!("{:?}", m.redo)
        };
        assert_eq!(
            (
                h.before.0.as_slice(),
                h.kept.0.as_slice(),
                h.displaced.0.as_slice(),
                h.after.0.as_slice()
            ),
            (&b"a\n"[..], &b"B2\n"[..], &b"B1\n"[..], &b"c\n"[..])
        );
        assert_eq!(
            (m.redo[0].displaced_by, m.redo[0].displaced_from),
            (n(7, 2), n(7, 1))
        );
        // The same merge with the sides swapped (each keeping its number) is identical.
        let swapped = merge(
            b"a\nb\nc\n",
            b"a\nB2\nc\n",
            b"a\nB1\nc\n",
            n(7, 2),
            n(7, 1),
            MergeMode::Lines,
        )
        .unwrap();
        assert_eq!(swapped, m);
    }

    #[test]
    fn identical_changes_agree() {
        let m = lines("a\nb\nc\n", "a\nX\nc\n", "a\nX\nc\n");
        assert_eq!(m.result.0, b"a\nX\nc\n");
        let m = lines("a\nb\nc\nd\n", "a\nX\nc\nY\n", "a\nX\nc\nd\n");
        assert_eq!(m.result.0, b"a\nX\nc\nY\n");
        assert!(m.is_clean());
    }

    #[test]
    fn chars_keep_every_insertion_ordered_by_number() {
        let m = merge(
            b"hello world",
            b"hello brave world",
            b"hello new world",
            n(3, 1),
            n(3, 2),
            MergeMode::Chars,
        )
        .unwrap();
        assert_eq!(
            std::str::from_utf8(&m.result.0).unwrap(),
            "hello brave new world"
        );
        assert!(m.is_clean());
        let m = merge(
            b"hello world",
            b"hello brave world",
            b"hello new world",
            n(3, 2),
            n(3, 1),
            MergeMode::Chars,
        )
        .unwrap();
        assert_eq!(
            std::str::from_utf8(&m.result.0).unwrap(),
            "hello new brave world"
        );
        // Deleting the same text on both sides deletes it once; other edits survive.
        let m = merge(
            "abc déf ghi".as_bytes(),
            "abc ghi".as_bytes(),
            "abc déf ghi!".as_bytes(),
            n(1, 1),
            n(1, 2),
            MergeMode::Chars,
        )
        .unwrap();
        assert_eq!(std::str::from_utf8(&m.result.0).unwrap(), "abc ghi!");
    }

    #[test]
    fn the_first_seeds_example() {
        // Alice (leader) and Bob share AaBbCcDd; Alice makes AaBbEeDd, Bob AaBbCcDdFf.
        let m = merge(
            b"AaBbCcDd",
            b"AaBbEeDd",
            b"AaBbCcDdFf",
            n(2, 0),
            n(2, 1),
            MergeMode::Chars,
        )
        .unwrap();
        assert_eq!(m.result.0, b"AaBbEeDdFf");
        // Bob missed the reply and pushes AaBbCGcDdFf, still based on AaBbCcDd: "up to b, then
        // Ee, then G, then from D".
        let m = merge(
            b"AaBbCcDd",
            b"AaBbEeDdFf",
            b"AaBbCGcDdFf",
            n(3, 0),
            n(3, 1),
            MergeMode::Chars,
        )
        .unwrap();
        assert_eq!(m.result.0, b"AaBbEeGDdFf");
        assert!(m.is_clean());
    }

    #[test]
    fn whole_takes_the_higher_number() {
        let m = merge(
            b"\0base",
            b"\0ours",
            b"\0theirs",
            n(5, 0),
            n(4, 9),
            MergeMode::Whole,
        )
        .unwrap();
        assert_eq!(m.result.0, b"\0ours");
        assert_eq!(m.conflicts(), 1);
        let Displaced::Whole {
            content: WholeContent::Bytes(b),
            ..
        } = &m.redo[0].what
        else {
            panic!()
        };
        assert_eq!(b.0, b"\0theirs");
        // Chars on bytes that are not UTF-8 falls back to whole.
        let m = merge(
            b"\xff",
            b"\xfe",
            b"\xfd",
            n(1, 1),
            n(1, 2),
            MergeMode::Chars,
        )
        .unwrap();
        assert_eq!(
            (m.mode, m.result.0.as_slice()),
            (MergeMode::Whole, &b"\xfd"[..])
        );
    }

    #[test]
    fn merge_file_sniffs_and_reports_like_git() {
        let m = merge_file(
            b"a\nB1\nc\n",
            b"a\nb\nc\n",
            b"a\nB2\nc\n",
            None,
            n(7, 1),
            n(7, 2),
        )
        .unwrap();
        assert_eq!((m.mode, m.exit_code()), (MergeMode::Lines, 1));
        let json: serde_json::Value = serde_json::from_str(&m.redo_json()).unwrap();
        assert_eq!(
            json[0]["displaced_by"],
            serde_json::json!({"major": 7, "minor": 2})
        );
        assert_eq!(json[0]["what"]["hunk"]["displaced"], "B1\n");
        let m = merge_file(b"\0o", b"\0b", b"\0t", None, n(7, 1), n(7, 2)).unwrap();
        assert_eq!(
            (m.mode, m.exit_code(), m.result.0.as_slice()),
            (MergeMode::Whole, 1, &b"\0t"[..])
        );
        let clean = merge_file(
            b"x\n",
            b"x\n",
            b"y\n",
            Some(MergeMode::Chars),
            n(1, 0),
            n(1, 1),
        )
        .unwrap();
        assert_eq!((clean.exit_code(), clean.redo_json().as_str()), (0, "[]"));
    }

    #[test]
    fn one_sided_changes_pass_through() {
        for mode in [MergeMode::Lines, MergeMode::Chars, MergeMode::Whole] {
            let m = merge(b"x\n", b"x\n", b"y\n", n(1, 1), n(1, 2), mode).unwrap();
            assert_eq!(m.result.0, b"y\n");
            assert!(m.is_clean());
        }
    }
}
