//! Differential test against `git merge-file -p --diff-algorithm=histogram ours base theirs`:
//! whenever git merges cleanly, the `lines` merge must give the same bytes, and be clean too.
//! Triples are generated from a seeded generator (small line alphabets, so lines repeat; files
//! without a final newline; CRLF; empty files) and from real text (this crate's sources and
//! the end of an editing trace).

mod support;

use support::Rng;

use std::path::Path;
use std::process::Command;

use chorus_chunking::VersionNumber;
use chorus_merge::{MergeMode, merge};

/// A random edit of `base`: a few line deletions, insertions and replacements.
fn edit(rng: &mut Rng, base: &[String], pool: &[String]) -> Vec<String> {
    let mut out = base.to_vec();
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(out.len() + 1);
        match rng.below(3) {
            0 if !out.is_empty() && at < out.len() => {
                let n = 1 + rng.below(3).min(out.len() - at - 1);
                out.drain(at..at + n);
            }
            1 if at < out.len() => {
                out[at] = pool[rng.below(pool.len())].clone();
            }
            _ => {
                for _ in 0..1 + rng.below(3) {
                    out.insert(at, pool[rng.below(pool.len())].clone());
                }
            }
        }
    }
    out
}

/// Lines joined with `eol`, the last one terminated only when `final_eol`.
fn join(lines: &[String], eol: &str, final_eol: bool) -> Vec<u8> {
    let mut s = lines.join(eol);
    if final_eol && !lines.is_empty() {
        s.push_str(eol);
    }
    s.into_bytes()
}

struct Triple {
    base: Vec<u8>,
    ours: Vec<u8>,
    theirs: Vec<u8>,
}

fn generated(rng: &mut Rng, count: usize) -> Vec<Triple> {
    let mut out = Vec::with_capacity(count);
    for _ in 0..count {
        let alphabet = 2 + rng.below(8);
        let pool: Vec<String> = (0..alphabet)
            .map(|i| format!("line {}", (b'a' + i as u8) as char))
            .collect();
        let mut base: Vec<String> = (0..rng.below(12))
            .map(|_| pool[rng.below(pool.len())].clone())
            .collect();
        if rng.chance(5) {
            base.clear();
        }
        let ours = edit(rng, &base, &pool);
        let theirs = edit(rng, &base, &pool);
        let eol = if rng.chance(15) { "\r\n" } else { "\n" };
        // Each file may lack its final newline independently.
        let fe = |rng: &mut Rng| !rng.chance(15);
        let (fb, fo, ft) = (fe(rng), fe(rng), fe(rng));
        let mut t = Triple {
            base: join(&base, eol, fb),
            ours: join(&ours, eol, fo),
            theirs: join(&theirs, eol, ft),
        };
        if rng.chance(3) {
            t.ours.clear();
        }
        out.push(t);
    }
    out
}

fn real(rng: &mut Rng, text: &str, count: usize) -> Vec<Triple> {
    let lines: Vec<String> = text.lines().map(str::to_owned).collect();
    let mut out = Vec::with_capacity(count);
    for _ in 0..count {
        let start = rng.below(lines.len().saturating_sub(60));
        let base: Vec<String> = lines[start..(start + 60).min(lines.len())].to_vec();
        let pool: Vec<String> = (0..20)
            .map(|_| lines[rng.below(lines.len())].clone())
            .collect();
        let ours = edit(rng, &base, &pool);
        let theirs = edit(rng, &base, &pool);
        out.push(Triple {
            base: join(&base, "\n", true),
            ours: join(&ours, "\n", true),
            theirs: join(&theirs, "\n", true),
        });
    }
    out
}

/// git's merge of one triple: (clean, output).
fn git_merge(dir: &Path, i: usize, t: &Triple) -> (bool, Vec<u8>) {
    let name = |what: &str| dir.join(format!("{i}.{what}"));
    std::fs::write(name("base"), &t.base).unwrap();
    std::fs::write(name("ours"), &t.ours).unwrap();
    std::fs::write(name("theirs"), &t.theirs).unwrap();
    let out = Command::new("git")
        .args(["merge-file", "-p", "--diff-algorithm=histogram"])
        .arg(name("ours"))
        .arg(name("base"))
        .arg(name("theirs"))
        .output()
        .expect("git must be installed for the merge oracle test");
    let code = out.status.code().expect("git merge-file was killed");
    assert!(
        code >= 0,
        "git merge-file failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (code == 0, out.stdout)
}

/// Compares every triple with git (two threads); returns (clean in git, conflicting in git).
fn check(label: &str, triples: &[Triple]) -> (usize, usize) {
    let dir = tempfile::tempdir().unwrap();
    let (n1, n2) = (VersionNumber::new(4, 1), VersionNumber::new(4, 2));
    let results: Vec<(bool, bool)> = std::thread::scope(|s| {
        let halves: Vec<_> = triples
            .chunks(triples.len().div_ceil(2).max(1))
            .enumerate()
            .map(|(h, chunk)| {
                let dir = dir.path();
                s.spawn(move || {
                    chunk
                        .iter()
                        .enumerate()
                        .map(|(k, t)| {
                            let i = h * 1_000_000 + k;
                            let (clean, expected) = git_merge(dir, i, t);
                            let ours = merge(&t.base, &t.ours, &t.theirs, n1, n2, MergeMode::Lines).unwrap();
                            if clean {
                                assert!(
                                    ours.result.0 == expected && ours.is_clean(),
                                    "{label} #{i}: differs from git merge-file\nbase:\n{:?}\nours:\n{:?}\ntheirs:\n{:?}\ngit:\n{:?}\nchorus:\n{:?} ({} conflicts)",
                                    String::from_utf8_lossy(&t.base),
                                    String::from_utf8_lossy(&t.ours),
                                    String::from_utf8_lossy(&t.theirs),
                                    String::from_utf8_lossy(&expected),
                                    String::from_utf8_lossy(&ours.result.0),
                                    ours.conflicts()
                                );
                            }
                            (clean, ours.is_clean())
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        halves.into_iter().flat_map(|h| h.join().unwrap()).collect()
    });
    let clean = results.iter().filter(|r| r.0).count();
    let disagree = results.iter().filter(|r| !r.0 && r.1).count();
    eprintln!(
        "{label}: {} triples, {clean} clean in git, {disagree} clean here but not in git",
        results.len()
    );
    (clean, results.len() - clean)
}

#[test]
fn generated_triples_match_git_when_clean() {
    let mut rng = Rng(0x5eed_0001);
    let triples = generated(&mut rng, 3000);
    let (clean, conflicting) = check("generated", &triples);
    // The generator must exercise both outcomes, or the test proves little.
    assert!(
        clean > 500 && conflicting > 200,
        "clean {clean}, conflicting {conflicting}"
    );
}

/// Long files over two or three distinct lines: the histogram's anchors occur dozens of times,
/// and past 64 occurrences git falls back to Myers.
fn repetitive(rng: &mut Rng, count: usize) -> Vec<Triple> {
    let mut out = Vec::with_capacity(count);
    for _ in 0..count {
        let pool: Vec<String> = (0..2 + rng.below(2)).map(|i| format!("r{i}")).collect();
        // Mostly one line, so that it occurs more than 64 times; sometimes only that line,
        // so that git's histogram finds no anchor occurring at most 64 times.
        let only = rng.chance(30);
        let base: Vec<String> = (0..40 + rng.below(120))
            .map(|_| {
                if only || rng.chance(90) {
                    pool[0].clone()
                } else {
                    pool[rng.below(pool.len())].clone()
                }
            })
            .collect();
        let ours = edit(rng, &base, &pool);
        let theirs = edit(rng, &base, &pool);
        out.push(Triple {
            base: join(&base, "\n", true),
            ours: join(&ours, "\n", true),
            theirs: join(&theirs, "\n", true),
        });
    }
    out
}

#[test]
fn repetitive_triples_match_git_when_clean() {
    let mut rng = Rng(0x5eed_0003);
    let triples = repetitive(&mut rng, 600);
    let (clean, _) = check("repetitive", &triples);
    assert!(clean > 50, "clean {clean}");
}

#[test]
fn real_text_matches_git_when_clean() {
    let mut rng = Rng(0x5eed_0002);
    let mut triples = real(&mut rng, include_str!("../src/text.rs"), 300);
    triples.extend(real(&mut rng, include_str!("../src/woot/tree.rs"), 300));
    let paper = support::load_trace("automerge-paper").end_content;
    triples.extend(real(&mut rng, &paper, 400));
    let (clean, _) = check("real text", &triples);
    assert!(clean > 300, "clean {clean}");
}
