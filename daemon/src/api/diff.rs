//! A small unified line diff for showing a displaced change against what won (`chorus
//! conflicts SEQ`): longest common subsequence over lines, hunks with three lines of context,
//! in the format of `diff -u`. Meant for short texts; callers bound the sizes.

/// Lines of context around each change.
const CONTEXT: usize = 3;
/// Above this many line pairs (`old lines × new lines`) no diff is computed.
pub const MAX_CELLS: usize = 4_000_000;

/// One line of a diff.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op<'a> {
    Same(&'a str),
    Removed(&'a str),
    Added(&'a str),
}

/// Lines with their endings kept, so a missing final newline is seen.
fn lines(text: &str) -> Vec<&str> {
    text.split_inclusive('\n').collect()
}

/// The edit script from `old` to `new` (None when they are too long to compare this way).
fn script<'a>(old: &[&'a str], new: &[&'a str]) -> Option<Vec<Op<'a>>> {
    let (n, m) = (old.len(), new.len());
    if n.saturating_mul(m) > MAX_CELLS {
        return None;
    }
    // lcs[i][j]: the longest common subsequence of old[i..] and new[j..].
    let mut lcs = vec![0u32; (n + 1) * (m + 1)];
    let at = |i: usize, j: usize| i * (m + 1) + j;
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            lcs[at(i, j)] = if old[i] == new[j] {
                lcs[at(i + 1, j + 1)] + 1
            } else {
                lcs[at(i + 1, j)].max(lcs[at(i, j + 1)])
            };
        }
    }
    let (mut i, mut j) = (0, 0);
    let mut ops = Vec::with_capacity(n + m);
    while i < n || j < m {
        if i < n && j < m && old[i] == new[j] {
            ops.push(Op::Same(old[i]));
            i += 1;
            j += 1;
        } else if i < n && (j == m || lcs[at(i + 1, j)] >= lcs[at(i, j + 1)]) {
            // Removals before additions, as `diff -u` shows a replaced line.
            ops.push(Op::Removed(old[i]));
            i += 1;
        } else {
            ops.push(Op::Added(new[j]));
            j += 1;
        }
    }
    Some(ops)
}

/// A line as a diff shows it: its marker, its text, and a note when it has no newline.
fn show(marker: char, line: &str, out: &mut String) {
    out.push(marker);
    out.push_str(line);
    if !line.ends_with('\n') {
        out.push_str("\n\\ No newline at end of file\n");
    }
}

/// The hunks of a unified diff from `old` to `new` (no `---`/`+++` header), each line of
/// `old` counted from `first_line`; None when the texts are too long to compare; empty when
/// they are equal.
pub fn unified(old: &str, new: &str, first_line: usize) -> Option<String> {
    let (a, b) = (lines(old), lines(new));
    let ops = script(&a, &b)?;
    let changed: Vec<usize> = (0..ops.len())
        .filter(|&k| !matches!(ops[k], Op::Same(_)))
        .collect();
    let mut out = String::new();
    let mut k = 0;
    while k < changed.len() {
        // A hunk: a run of changes no more than 2 × CONTEXT same lines apart, with context.
        let first = changed[k];
        while k + 1 < changed.len() && changed[k + 1] - changed[k] <= 2 * CONTEXT {
            k += 1;
        }
        out.push_str(&hunk(&ops, first, changed[k], first_line));
        k += 1;
    }
    Some(out)
}

/// The hunk of the changes from `ops[first]` to `ops[last]`, with context around them.
fn hunk(ops: &[Op<'_>], first: usize, last: usize, first_line: usize) -> String {
    let from = first.saturating_sub(CONTEXT);
    let to = (last + CONTEXT + 1).min(ops.len());
    // Line numbers where the hunk starts, in old and in new.
    let (mut old_at, mut new_at) = (first_line, first_line);
    for op in &ops[..from] {
        match op {
            Op::Same(_) => {
                old_at += 1;
                new_at += 1;
            }
            Op::Removed(_) => old_at += 1,
            Op::Added(_) => new_at += 1,
        }
    }
    let mut body = String::new();
    let (mut old_len, mut new_len) = (0, 0);
    for op in &ops[from..to] {
        match op {
            Op::Same(l) => {
                show(' ', l, &mut body);
                old_len += 1;
                new_len += 1;
            }
            Op::Removed(l) => {
                show('-', l, &mut body);
                old_len += 1;
            }
            Op::Added(l) => {
                show('+', l, &mut body);
                new_len += 1;
            }
        }
    }
    // As `diff -u`: an empty side's start is the line before it.
    let start = |at: usize, len: usize| if len == 0 { at.saturating_sub(1) } else { at };
    format!(
        "@@ -{},{old_len} +{},{new_len} @@\n{body}",
        start(old_at, old_len),
        start(new_at, new_len)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_changed_line_in_context() {
        let old = "a\nb\nc\nd\ne\nf\ng\nh\n";
        let new = "a\nb\nc\nD\ne\nf\ng\nh\n";
        assert_eq!(
            unified(old, new, 1).unwrap(),
            "@@ -1,7 +1,7 @@\n a\n b\n c\n-d\n+D\n e\n f\n g\n"
        );
    }

    #[test]
    fn far_apart_changes_make_two_hunks_and_equal_texts_none() {
        let line = |i: usize| match i {
            2 => "two\n".to_owned(),
            17 => "seventeen\n".to_owned(),
            i => format!("{i}\n"),
        };
        let old: String = (0..20).map(|i| format!("{i}\n")).collect();
        let new: String = (0..20).map(line).collect();
        let d = unified(&old, &new, 1).unwrap();
        assert_eq!(d.matches("@@ -").count(), 2, "{d}");
        assert!(
            d.contains("-2\n+two\n") && d.contains("-17\n+seventeen\n"),
            "{d}"
        );
        assert_eq!(unified(&old, &old, 1).unwrap(), "");
    }

    #[test]
    fn insertions_deletions_and_a_missing_newline() {
        assert_eq!(unified("", "x\n", 1).unwrap(), "@@ -0,0 +1,1 @@\n+x\n");
        assert_eq!(
            unified("x\ny", "x\n", 1).unwrap(),
            "@@ -1,2 +1,1 @@\n x\n-y\n\\ No newline at end of file\n"
        );
    }
}
