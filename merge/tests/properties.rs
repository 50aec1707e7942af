//! Properties of the content merge over random triples, in every mode:
//! - symmetry (the deterministic transpose): `merge(base, A, B)` equals `merge(base, B, A)`
//!   byte for byte, redo entries included, when each side keeps its own number;
//! - no loss: whatever a side added relative to the base is in the result or in a redo entry.

use std::collections::HashMap;

use chorus_chunking::VersionNumber;
use chorus_merge::redo::WholeContent;
use chorus_merge::{Displaced, MergeMode, MergeOutcome, merge};
use proptest::prelude::*;

const MODES: [MergeMode; 3] = [MergeMode::Lines, MergeMode::Chars, MergeMode::Whole];

/// A random edit script applied to lines: (position, kind, new line).
fn apply(base: &[String], edits: &[(usize, u8, String)]) -> Vec<String> {
    let mut out = base.to_vec();
    for (pos, kind, line) in edits {
        let at = pos % (out.len() + 1);
        match kind % 3 {
            0 if at < out.len() => {
                out.remove(at);
            }
            1 if at < out.len() => out[at] = line.clone(),
            _ => out.insert(at, line.clone()),
        }
    }
    out
}

fn join(lines: &[String], final_newline: bool) -> Vec<u8> {
    let mut s = lines.join("\n");
    if final_newline && !lines.is_empty() {
        s.push('\n');
    }
    s.into_bytes()
}

fn line_strategy() -> impl Strategy<Value = String> {
    prop::sample::select(vec![
        "alpha",
        "beta",
        "gamma",
        "delta",
        "x",
        "",
        "héllo wörld",
        "fn main() {",
        "}",
    ])
    .prop_map(str::to_owned)
}

fn edits() -> impl Strategy<Value = Vec<(usize, u8, String)>> {
    prop::collection::vec((0usize..64, 0u8..3, line_strategy()), 0..6)
}

fn triple() -> impl Strategy<Value = (Vec<u8>, Vec<u8>, Vec<u8>)> {
    (
        prop::collection::vec(line_strategy(), 0..12),
        edits(),
        edits(),
        any::<[bool; 3]>(),
    )
        .prop_map(|(base, eo, et, fe)| {
            let ours = apply(&base, &eo);
            let theirs = apply(&base, &et);
            (join(&base, fe[0]), join(&ours, fe[1]), join(&theirs, fe[2]))
        })
}

fn number() -> impl Strategy<Value = VersionNumber> {
    (1u64..4, 0u32..3).prop_map(|(a, b)| VersionNumber::new(a, b))
}

fn counts<T: std::hash::Hash + Eq>(items: impl IntoIterator<Item = T>) -> HashMap<T, usize> {
    let mut m = HashMap::new();
    for i in items {
        *m.entry(i).or_insert(0) += 1;
    }
    m
}

fn lines(b: &[u8]) -> Vec<Vec<u8>> {
    b.split_inclusive(|&c| c == b'\n')
        .map(<[u8]>::to_vec)
        .collect()
}

/// Everything the merge kept: the result, and the displaced content of its redo entries.
fn kept_texts(m: &MergeOutcome) -> Vec<Vec<u8>> {
    let mut out = vec![m.result.0.clone()];
    for e in &m.redo {
        match &e.what {
            Displaced::Hunk(h) => out.push(h.displaced.0.clone()),
            Displaced::Whole {
                content: WholeContent::Bytes(b),
                ..
            } => out.push(b.0.clone()),
            other => panic!("a content merge displaced {other:?}"),
        }
    }
    out
}

fn check_no_loss(base: &[u8], side: &[u8], m: &MergeOutcome) -> Result<(), TestCaseError> {
    let kept = kept_texts(m);
    match m.mode {
        MergeMode::Lines | MergeMode::Whole => {
            // Lines: a side's added line may end the file without a newline and gain one in
            // the merge; compare lines without their terminators.
            let strip = |l: Vec<u8>| l.strip_suffix(b"\n").map(<[u8]>::to_vec).unwrap_or(l);
            let b = counts(lines(base).into_iter().map(strip));
            let s = counts(lines(side).into_iter().map(strip));
            let k = counts(kept.iter().flat_map(|t| lines(t)).map(strip));
            for (line, n) in &s {
                let added = n.saturating_sub(*b.get(line).unwrap_or(&0));
                prop_assert!(
                    k.get(line).copied().unwrap_or(0) >= added,
                    "line {:?} lost",
                    String::from_utf8_lossy(line)
                );
            }
        }
        MergeMode::Chars => {
            let chars = |t: &[u8]| {
                counts(
                    String::from_utf8(t.to_vec())
                        .unwrap()
                        .chars()
                        .collect::<Vec<_>>(),
                )
            };
            let (b, s, r) = (chars(base), chars(side), chars(&m.result.0));
            for (c, n) in &s {
                let added = n.saturating_sub(*b.get(c).unwrap_or(&0));
                prop_assert!(r.get(c).copied().unwrap_or(0) >= added, "char {c:?} lost");
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn merging_is_symmetric((base, a, b) in triple(), na in number(), nb in number()) {
        for mode in MODES {
            let ab = merge(&base, &a, &b, na, nb, mode).unwrap();
            let ba = merge(&base, &b, &a, nb, na, mode).unwrap();
            prop_assert_eq!(&ab, &ba, "mode {}", mode);
        }
    }

    #[test]
    fn nothing_is_lost((base, a, b) in triple(), na in number(), nb in number()) {
        for mode in MODES {
            let m = merge(&base, &a, &b, na, nb, mode).unwrap();
            check_no_loss(&base, &a, &m)?;
            check_no_loss(&base, &b, &m)?;
            if m.mode == MergeMode::Chars {
                prop_assert!(m.is_clean(), "chars never conflicts");
            }
        }
    }
}
