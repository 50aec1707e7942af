//! Benchmarks of chorus-merge, printed as tables (`cargo bench -p chorus-merge`):
//! trace replays against diamond-types and a plain `String`; merging two 1 MiB texts with 10k
//! scattered edits per side; per-merge time against `git merge-file` on the same triples.
//! Every figure is the best of several runs, in milliseconds or microseconds.

#[path = "../tests/support/mod.rs"]
mod support;

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

fn plain_string(trace: &Trace) -> usize {
    let mut s = trace.start_content.clone();
    let byte = |s: &str, pos: usize| s.char_indices().nth(pos).map_or(s.len(), |(i, _)| i);
    for txn in &trace.txns {
        for Patch(pos, del, ins) in &txn.patches {
            let start = byte(&s, *pos);
            if *del > 0 {
                let end = start + byte(&s[start..], *del);
                s.replace_range(start..end, "");
            }
            s.insert_str(start, ins);
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
    println!("| concurrent trace | txns | chorus WOOT (replicas per agent + fresh merge) |");
    println!("|---|---:|---:|");
    for name in ["friendsforever", "clownschool"] {
        let trace = support::load_trace(name);
        let woot = best(5, || replay_concurrent(&trace).map(|r| r.merged.len()));
        println!("| {name} | {} | {:.1} |", trace.txns.len(), ms(woot));
    }
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
}
