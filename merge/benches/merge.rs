//! Benchmarks of chorus-merge, printed as tables (`cargo bench -p chorus-merge`):
//! trace replays against diamond-types and a plain `String`; merging two 1 MiB texts with 10k
//! scattered edits per side; per-merge time against `git merge-file` on the same triples.
//! Every figure is the best of several runs, in milliseconds or microseconds.

#[path = "../tests/support/mod.rs"]
mod support;

use support::Rng;

use std::hint::black_box;
use std::time::{Duration, Instant};

use chorus_merge::trace::{Patch, Trace, replay_concurrent, replay_sequential};

/// Best time of `runs` runs of `f`.
fn best<R>(runs: usize, mut f: impl FnMut() -> R) -> Duration {
    (0..runs)
        .map(|_| {
            let t = Instant::now();
            black_box(f());
            t.elapsed()
        })
        .min()
        .unwrap_or_default()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn diamond(trace: &Trace) -> usize {
    let mut doc = diamond_types::list::ListCRDT::new();
    let agent = doc.get_or_create_agent_id("bench");
    if !trace.start_content.is_empty() {
        doc.insert(agent, 0, &trace.start_content);
    }
    for txn in &trace.txns {
        for Patch(pos, del, ins) in &txn.patches {
            if *del > 0 {
                doc.delete(agent, *pos..*pos + *del);
            }
            if !ins.is_empty() {
                doc.insert(agent, *pos, ins);
            }
        }
    }
    doc.len()
}

/// A concurrent trace through diamond-types: every transaction is added to the op log at its
/// parents' versions, then the tip is checked out. Returns the final text.
fn diamond_concurrent(trace: &Trace) -> String {
    let mut oplog = diamond_types::list::OpLog::new();
    let agents: Vec<_> = (0..trace.num_agents.unwrap_or(1))
        .map(|a| oplog.get_or_create_agent_id(&format!("agent{a}")))
        .collect();
    // The version after each transaction (its last operation, or its parents' when empty).
    let mut versions: Vec<Vec<usize>> = Vec::with_capacity(trace.txns.len());
    for txn in &trace.txns {
        let mut version: Vec<usize> = txn
            .parents
            .iter()
            .flat_map(|&p| versions[p].iter().copied())
            .collect();
        version.sort_unstable();
        version.dedup();
        let agent = agents[txn.agent as usize];
        for Patch(pos, del, ins) in &txn.patches {
            if *del > 0 {
                version = vec![oplog.add_delete_at(agent, &version, *pos..*pos + *del)];
            }
            if !ins.is_empty() {
                version = vec![oplog.add_insert_at(agent, &version, *pos, ins)];
            }
        }
        versions.push(version);
    }
    oplog.checkout_tip().content().to_string()
}

fn plain_string(trace: &Trace) -> usize {
    let mut s = trace.start_content.clone();
    // Positions are code points: on ASCII text they are byte offsets, else convert.
    let mut ascii = s.is_ascii();
    let byte = |s: &str, ascii: bool, pos: usize| {
        if ascii {
            pos.min(s.len())
        } else {
            s.char_indices().nth(pos).map_or(s.len(), |(i, _)| i)
        }
    };
    for txn in &trace.txns {
        for Patch(pos, del, ins) in &txn.patches {
            let start = byte(&s, ascii, *pos);
            if *del > 0 {
                let end = start + byte(&s[start..], ascii, *del);
                s.replace_range(start..end, "");
            }
            s.insert_str(start, ins);
            ascii &= ins.is_ascii();
        }
    }
    s.len()
}

fn traces() {
    println!("## Trace replays (best of 5, ms)\n");
    println!("| trace | patches | chorus WOOT | diamond-types | String | WOOT / diamond |");
    println!("|---|---:|---:|---:|---:|---:|");
    for name in ["automerge-paper", "seph-blog1", "rustcode"] {
        let trace = support::load_trace(name);
        let woot = best(5, || replay_sequential(&trace).map(|s| s.len()));
        let dt = best(5, || diamond(&trace));
        let st = best(3, || plain_string(&trace));
        println!(
            "| {name} | {} | {:.1} | {:.1} | {:.1} | {:.2}x |",
            trace.patch_count(),
            ms(woot),
            ms(dt),
            ms(st),
            woot.as_secs_f64() / dt.as_secs_f64()
        );
    }
    println!();
    println!(
        "| concurrent trace | txns | chorus WOOT (replicas per agent + fresh merge) | diamond-types (op log + checkout) |"
    );
    println!("|---|---:|---:|---:|");
    for name in ["friendsforever", "clownschool"] {
        let trace = support::load_trace(name);
        assert!(
            diamond_concurrent(&trace) == trace.end_content,
            "diamond-types replay of {name} differs"
        );
        let woot = best(5, || replay_concurrent(&trace).map(|r| r.merged.len()));
        let dt = best(5, || diamond_concurrent(&trace).len());
        println!(
            "| {name} | {} | {:.1} | {:.1} |",
            trace.txns.len(),
            ms(woot),
            ms(dt)
        );
    }
    println!();
}

const WORDS: [&str; 16] = [
    "merge", "leader", "chunk", "version", "tree", "share", "node", "redo", "the", "of", "and",
    "sync", "delta", "raft", "file", "order",
];

/// About `size` bytes of text in lines of 6 to 14 words.
fn text(rng: &mut Rng, size: usize) -> String {
    let mut s = String::with_capacity(size + 128);
    while s.len() < size {
        for w in 0..6 + rng.below(9) {
            if w > 0 {
                s.push(' ');
            }
            s.push_str(WORDS[rng.below(WORDS.len())]);
        }
        s.push('\n');
    }
    s
}

/// `n` scattered edits of `base` (insert a word, delete a few characters, replace one).
fn scatter(rng: &mut Rng, base: &str, n: usize) -> String {
    let mut at: Vec<usize> = (0..n).map(|_| rng.below(base.len())).collect();
    at.sort_unstable();
    at.dedup();
    let mut out = String::with_capacity(base.len() + n * 8);
    let mut prev = 0;
    for pos in at {
        if pos < prev {
            continue;
        }
        out.push_str(&base[prev..pos]);
        prev = pos;
        match rng.below(3) {
            0 => {
                out.push_str(WORDS[rng.below(WORDS.len())]);
                out.push(' ');
            }
            1 => prev = (pos + 1 + rng.below(5)).min(base.len()),
            _ => {
                out.push('#');
                prev = pos + 1;
            }
        }
    }
    out.push_str(&base[prev..]);
    out
}

/// `git merge-file -p --diff-algorithm=histogram` on files in `dir`; returns the exit code.
fn git_merge_file(dir: &std::path::Path, base: &[u8], ours: &[u8], theirs: &[u8]) -> i32 {
    std::fs::write(dir.join("base"), base).unwrap();
    std::fs::write(dir.join("ours"), ours).unwrap();
    std::fs::write(dir.join("theirs"), theirs).unwrap();
    std::process::Command::new("git")
        .args(["merge-file", "-p", "--diff-algorithm=histogram"])
        .arg(dir.join("ours"))
        .arg(dir.join("base"))
        .arg(dir.join("theirs"))
        .stdout(std::process::Stdio::null())
        .status()
        .map_or(-1, |s| s.code().unwrap_or(-1))
}

fn big_merges() {
    use chorus_chunking::VersionNumber;
    use chorus_merge::{MergeMode, merge};

    let mut rng = Rng(42);
    let base = text(&mut rng, 1 << 20);
    let ours = scatter(&mut rng, &base, 10_000);
    let theirs = scatter(&mut rng, &base, 10_000);
    let (n1, n2) = (VersionNumber::new(9, 1), VersionNumber::new(9, 2));
    let dir = tempfile::tempdir().unwrap();
    println!("## Merging two 1 MiB texts with 10k scattered edits per side (best of 5, ms)\n");
    println!(
        "base {} bytes, {} lines; ours {} bytes; theirs {} bytes\n",
        base.len(),
        base.lines().count(),
        ours.len(),
        theirs.len()
    );
    println!("| merge | time | conflicts |");
    println!("|---|---:|---:|");
    for mode in [MergeMode::Lines, MergeMode::Chars, MergeMode::Whole] {
        let m = merge(
            base.as_bytes(),
            ours.as_bytes(),
            theirs.as_bytes(),
            n1,
            n2,
            mode,
        )
        .unwrap();
        let t = best(5, || {
            merge(
                base.as_bytes(),
                ours.as_bytes(),
                theirs.as_bytes(),
                n1,
                n2,
                mode,
            )
        });
        println!("| chorus {mode} | {:.1} | {} |", ms(t), m.conflicts());
    }
    let mut code = 0;
    let t = best(5, || {
        code = git_merge_file(
            dir.path(),
            base.as_bytes(),
            ours.as_bytes(),
            theirs.as_bytes(),
        );
    });
    println!(
        "| git merge-file (process, files on tmpfs or disk) | {:.1} | {code} |",
        ms(t)
    );
    println!();
}

fn small_merges() {
    use chorus_chunking::VersionNumber;
    use chorus_merge::{MergeMode, merge};

    // Triples like the oracle test's: a 60-line window of real text, a few line edits a side.
    let paper = support::load_trace("automerge-paper").end_content;
    let lines: Vec<&str> = paper.lines().collect();
    let mut rng = Rng(7);
    let mut triples = Vec::new();
    for _ in 0..300 {
        let start = rng.below(lines.len() - 60);
        let base: Vec<&str> = lines[start..start + 60].to_vec();
        let side = |rng: &mut Rng| {
            let mut v = base.clone();
            for _ in 0..3 {
                let at = rng.below(v.len());
                match rng.below(3) {
                    0 => {
                        v.remove(at);
                    }
                    1 => v[at] = lines[rng.below(lines.len())],
                    _ => v.insert(at, lines[rng.below(lines.len())]),
                }
            }
            (v.join("\n") + "\n").into_bytes()
        };
        let ours = side(&mut rng);
        let theirs = side(&mut rng);
        triples.push(((base.join("\n") + "\n").into_bytes(), ours, theirs));
    }
    let (n1, n2) = (VersionNumber::new(9, 1), VersionNumber::new(9, 2));
    let ours_t = best(3, || {
        for (b, o, t) in &triples {
            black_box(merge(b, o, t, n1, n2, MergeMode::Lines).unwrap());
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let git_t = best(1, || {
        for (b, o, t) in &triples {
            git_merge_file(dir.path(), b, o, t);
        }
    });
    // git's own time without process start-up: the same number of `git merge-file` runs on
    // empty files measures the start-up alone.
    let empty_t = best(1, || {
        for _ in &triples {
            git_merge_file(dir.path(), b"", b"", b"");
        }
    });
    let per = |d: Duration| d.as_secs_f64() * 1e6 / triples.len() as f64;
    println!(
        "## Per-merge time on {} real-text triples (60 lines, 3 line edits a side; us per merge)\n",
        triples.len()
    );
    println!("| merge | us per merge |");
    println!("|---|---:|");
    println!("| chorus lines (in process) | {:.1} |", per(ours_t));
    println!(
        "| git merge-file (one process per merge, incl. writing 3 files) | {:.1} |",
        per(git_t)
    );
    println!(
        "| git merge-file on empty files (process start-up alone) | {:.1} |",
        per(empty_t)
    );
    println!();
}

fn main() {
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let wanted = |s: &str| filter.is_empty() || filter.iter().any(|f| s.contains(f.as_str()));
    if wanted("traces") {
        traces();
    }
    if wanted("big") {
        big_merges();
    }
    if wanted("small") {
        small_merges();
    }
}
