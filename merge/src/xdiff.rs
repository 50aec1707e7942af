//! A line diff that behaves like git's: the histogram algorithm (JGit's, as git runs it, over
//! the whole file without trimming the common ends) followed by git's slider compaction
//! without the indent heuristic, which is what `git merge-file --diff-algorithm=histogram`
//! runs. Clean `lines` merges must equal git's byte for byte, and where a hunk lands decides
//! whether two hunks touch, so the diff has to place hunks exactly as git does; imara-diff's
//! histogram is a different (faster) variant that places some hunks elsewhere.
//!
//! Tokens are interned line ids. Where every common line of a region occurs more than 64
//! times git falls back to its Myers diff; this falls back to imara-diff's Myers there.

use imara_diff::{Algorithm, Diff, Token};

/// Occurrence count above which a line is not used as an anchor.
const MAX_CHAIN: u32 = 64;

/// Changed-line flags of both files, as git's histogram diff and compaction leave them.
pub(crate) fn diff(a: &[u32], b: &[u32], num_tokens: u32) -> (Vec<bool>, Vec<bool>) {
    let mut h = Histogram {
        a,
        b,
        changed_a: vec![false; a.len()],
        changed_b: vec![false; b.len()],
        first: vec![0; num_tokens as usize],
        count: vec![0; num_tokens as usize],
        stamp: vec![0; num_tokens as usize],
        region: 0,
    };
    let mut todo = vec![(1usize, a.len(), 1usize, b.len())];
    while let Some((l1, c1, l2, c2)) = todo.pop() {
        h.region(l1, c1, l2, c2, &mut todo);
    }
    let Histogram {
        mut changed_a,
        mut changed_b,
        ..
    } = h;
    compact(a, &mut changed_a, b, &mut changed_b);
    compact(b, &mut changed_b, a, &mut changed_a);
    (changed_a, changed_b)
}

struct Histogram<'a> {
    a: &'a [u32],
    b: &'a [u32],
    changed_a: Vec<bool>,
    changed_b: Vec<bool>,
    /// Per token, for the current region: its first occurrence in A (1-based) and its count.
    first: Vec<usize>,
    count: Vec<u32>,
    /// The region the two arrays above belong to.
    stamp: Vec<u32>,
    region: u32,
}

/// The longest common run found, in 1-based lines; `begin1 == 0` when none.
#[derive(Default)]
struct Lcs {
    begin1: usize,
    end1: usize,
    begin2: usize,
    end2: usize,
}

impl Histogram<'_> {
    /// Line `l` (1-based) of A and of B.
    fn la(&self, l: usize) -> u32 {
        self.a[l - 1]
    }

    fn lb(&self, l: usize) -> u32 {
        self.b[l - 1]
    }

    /// Diffs lines `l1..l1+c1` of A against `l2..l2+c2` of B; pushes the sub-regions left.
    fn region(
        &mut self,
        l1: usize,
        c1: usize,
        l2: usize,
        c2: usize,
        todo: &mut Vec<(usize, usize, usize, usize)>,
    ) {
        if c1 == 0 && c2 == 0 {
            return;
        }
        if c1 == 0 {
            self.changed_b[l2 - 1..l2 - 1 + c2].fill(true);
            return;
        }
        if c2 == 0 {
            self.changed_a[l1 - 1..l1 - 1 + c1].fill(true);
            return;
        }
        match self.find_lcs(l1, c1, l2, c2) {
            None => self.fall_back(l1, c1, l2, c2),
            Some(lcs) if lcs.begin1 == 0 && lcs.begin2 == 0 => {
                self.changed_a[l1 - 1..l1 - 1 + c1].fill(true);
                self.changed_b[l2 - 1..l2 - 1 + c2].fill(true);
            }
            Some(lcs) => {
                let (end_a, end_b) = (l1 + c1 - 1, l2 + c2 - 1);
                todo.push((
                    lcs.end1 + 1,
                    end_a - lcs.end1,
                    lcs.end2 + 1,
                    end_b - lcs.end2,
                ));
                todo.push((l1, lcs.begin1 - l1, l2, lcs.begin2 - l2));
            }
        }
    }

    /// The anchor of a region: the longest common run through the least frequent lines.
    /// None when every common line is too frequent (the caller falls back to Myers).
    fn find_lcs(&mut self, l1: usize, c1: usize, l2: usize, c2: usize) -> Option<Lcs> {
        self.region = self.region.wrapping_add(1);
        if self.region == 0 {
            self.stamp.fill(0);
            self.region = 1;
        }
        let end_a = l1 + c1 - 1;
        let end_b = l2 + c2 - 1;
        // Scan A backwards: each line's first occurrence, the next occurrence after each line.
        let mut next = vec![0usize; c1];
        for ptr in (l1..=end_a).rev() {
            let t = self.la(ptr) as usize;
            if self.stamp[t] == self.region {
                next[ptr - l1] = self.first[t];
                self.first[t] = ptr;
                self.count[t] = self.count[t].saturating_add(1);
            } else {
                self.stamp[t] = self.region;
                self.first[t] = ptr;
                self.count[t] = 1;
            }
        }
        let cnt = |h: &Self, l: usize| h.count[h.la(l) as usize];
        let mut lcs = Lcs::default();
        let mut best = MAX_CHAIN + 1;
        let mut has_common = false;
        let mut b_ptr = l2;
        while b_ptr <= end_b {
            let mut b_next = b_ptr + 1;
            let t = self.lb(b_ptr) as usize;
            if self.stamp[t] == self.region {
                let rec_cnt = self.count[t];
                has_common = true;
                if rec_cnt <= best {
                    let mut a_s = self.first[t];
                    loop {
                        let np = next[a_s - l1];
                        let (mut as_, mut bs) = (a_s, b_ptr);
                        let (mut ae, mut be) = (a_s, b_ptr);
                        let mut rc = rec_cnt;
                        while l1 < as_ && l2 < bs && self.la(as_ - 1) == self.lb(bs - 1) {
                            as_ -= 1;
                            bs -= 1;
                            if rc > 1 {
                                rc = rc.min(cnt(self, as_));
                            }
                        }
                        while ae < end_a && be < end_b && self.la(ae + 1) == self.lb(be + 1) {
                            ae += 1;
                            be += 1;
                            if rc > 1 {
                                rc = rc.min(cnt(self, ae));
                            }
                        }
                        if b_next <= be {
                            b_next = be + 1;
                        }
                        if lcs.end1 - lcs.begin1 < ae - as_ || rc < best {
                            lcs = Lcs {
                                begin1: as_,
                                end1: ae,
                                begin2: bs,
                                end2: be,
                            };
                            best = rc;
                        }
                        if np == 0 {
                            break;
                        }
                        let mut np = np;
                        while np != 0 && np <= ae {
                            np = next[np - l1];
                        }
                        if np == 0 {
                            break;
                        }
                        a_s = np;
                    }
                }
            }
            b_ptr = b_next;
        }
        if has_common && MAX_CHAIN < best {
            None
        } else {
            Some(lcs)
        }
    }

    /// Myers over a region whose common lines are all too frequent for the histogram.
    fn fall_back(&mut self, l1: usize, c1: usize, l2: usize, c2: usize) {
        let before: Vec<Token> = self.a[l1 - 1..l1 - 1 + c1]
            .iter()
            .map(|&t| Token(t))
            .collect();
        let after: Vec<Token> = self.b[l2 - 1..l2 - 1 + c2]
            .iter()
            .map(|&t| Token(t))
            .collect();
        let mut d = Diff::default();
        d.compute_with(Algorithm::Myers, &before, &after, self.stamp.len() as u32);
        for i in 0..c1 {
            self.changed_a[l1 - 1 + i] = d.is_removed(i as u32);
        }
        for j in 0..c2 {
            self.changed_b[l2 - 1 + j] = d.is_added(j as u32);
        }
    }
}

/// A group of changed lines `start..end` (empty: above the unchanged line `start`).
#[derive(Clone, Copy)]
struct Group {
    start: usize,
    end: usize,
}

/// One file's lines and change flags, for sliding groups.
struct Side<'a> {
    recs: &'a [u32],
    changed: &'a mut [bool],
}

impl Side<'_> {
    fn n(&self) -> usize {
        self.recs.len()
    }

    /// Change flag with the sentinels git keeps before the first and after the last line.
    fn ch(&self, i: isize) -> bool {
        i >= 0 && (i as usize) < self.changed.len() && self.changed[i as usize]
    }

    fn init(&self) -> Group {
        let mut g = Group { start: 0, end: 0 };
        while self.ch(g.end as isize) {
            g.end += 1;
        }
        g
    }

    fn next(&self, g: &mut Group) -> bool {
        if g.end == self.n() {
            return false;
        }
        g.start = g.end + 1;
        g.end = g.start;
        while self.ch(g.end as isize) {
            g.end += 1;
        }
        true
    }

    fn previous(&self, g: &mut Group) -> bool {
        if g.start == 0 {
            return false;
        }
        g.end = g.start - 1;
        g.start = g.end;
        while self.ch(g.start as isize - 1) {
            g.start -= 1;
        }
        true
    }

    fn slide_down(&mut self, g: &mut Group) -> bool {
        if g.end < self.n() && self.recs[g.start] == self.recs[g.end] {
            self.changed[g.start] = false;
            g.start += 1;
            self.changed[g.end] = true;
            g.end += 1;
            while self.ch(g.end as isize) {
                g.end += 1;
            }
            true
        } else {
            false
        }
    }

    fn slide_up(&mut self, g: &mut Group) -> bool {
        if g.start > 0 && self.recs[g.start - 1] == self.recs[g.end - 1] {
            g.start -= 1;
            self.changed[g.start] = true;
            g.end -= 1;
            self.changed[g.end] = false;
            while self.ch(g.start as isize - 1) {
                g.start -= 1;
            }
            true
        } else {
            false
        }
    }
}

/// git's `xdl_change_compact` without the indent heuristic: slide every group of changes as
/// far down as it goes (merging groups it bumps into), then back up to line up with a change in
/// the other file when it can. The other file's groups are only walked, never changed.
fn compact(recs: &[u32], changed: &mut [bool], other_recs: &[u32], other_changed: &mut [bool]) {
    let mut x = Side { recs, changed };
    let o = Side {
        recs: other_recs,
        changed: other_changed,
    };
    let mut g = x.init();
    let mut go = o.init();
    loop {
        if g.end != g.start {
            let mut earliest_end;
            let mut end_matching_other;
            loop {
                let groupsize = g.end - g.start;
                end_matching_other = None;
                while x.slide_up(&mut g) {
                    o.previous(&mut go);
                }
                earliest_end = g.end;
                if go.end > go.start {
                    end_matching_other = Some(g.end);
                }
                while x.slide_down(&mut g) {
                    o.next(&mut go);
                    if go.end > go.start {
                        end_matching_other = Some(g.end);
                    }
                }
                if groupsize == g.end - g.start {
                    break;
                }
            }
            if g.end != earliest_end && end_matching_other.is_some() {
                while go.end == go.start {
                    if !x.slide_up(&mut g) || !o.previous(&mut go) {
                        break;
                    }
                }
            }
        }
        if !x.next(&mut g) {
            break;
        }
        o.next(&mut go);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hunks(a: &[u32], b: &[u32]) -> Vec<(usize, usize, usize, usize)> {
        let n = a.iter().chain(b).max().map_or(0, |m| m + 1);
        let (ca, cb) = diff(a, b, n);
        let mut out = Vec::new();
        let (mut i, mut j) = (0, 0);
        while i < a.len() || j < b.len() {
            if (i < a.len() && ca[i]) || (j < b.len() && cb[j]) {
                let (si, sj) = (i, j);
                while i < a.len() && ca[i] {
                    i += 1;
                }
                while j < b.len() && cb[j] {
                    j += 1;
                }
                out.push((si, i, sj, j));
            } else {
                i += 1;
                j += 1;
            }
        }
        out
    }

    #[test]
    fn places_hunks_as_git_does() {
        // b a a b a a a a a a  ->  b a a a b a a a a a
        // git: insert an `a` after line 3, delete the last line.
        let a = [1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        let b = [1, 0, 0, 0, 1, 0, 0, 0, 0, 0];
        assert_eq!(hunks(&a, &b), vec![(3, 3, 3, 4), (9, 10, 10, 10)]);
        // b a a b a a a a a a  ->  b a a b a b a a a a a a: two lines inserted after line 5.
        let b = [1, 0, 0, 1, 0, 1, 0, 0, 0, 0, 0, 0];
        assert_eq!(hunks(&a, &b), vec![(5, 5, 5, 7)]);
    }

    #[test]
    fn edge_cases() {
        assert_eq!(hunks(&[], &[]), vec![]);
        assert_eq!(hunks(&[], &[1, 2]), vec![(0, 0, 0, 2)]);
        assert_eq!(hunks(&[1, 2], &[]), vec![(0, 2, 0, 0)]);
        assert_eq!(hunks(&[1, 2, 3], &[1, 2, 3]), vec![]);
        assert_eq!(hunks(&[1, 2, 3], &[4, 5]), vec![(0, 3, 0, 2)]);
    }
}
