//! The chaos run: a randomized, seeded schedule of edits on every node (text edits, binary
//! files, creates, deletes, renames, directory moves, and insertions into one file all nodes
//! share) interleaved with faults (SIGKILL and restart, cut and healed links, packet loss),
//! for a bounded time; then every fault is healed and the run asserts that every node holds
//! the same tree on the same head, and that no edit was lost: each line ever written (and not
//! deliberately deleted since) is in the final tree, in a redo entry, or in a version of the
//! history (a stale save can overwrite another node's line; the line is then in history).
//!
//! `CHORUS_CHAOS_SEED` replays a schedule (the seed is printed); `CHORUS_CHAOS_SECS` sets the
//! length (default 60 s of chaos; the manual long run is 1800). Needs root; says SKIPPED
//! otherwise.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use chorus_integration_tests::cluster::{Cluster, Wiring};
use chorus_integration_tests::needs_root;

const NODES: usize = 3;

/// SplitMix64: small, seedable, good enough to pick actions.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

/// What the run believes each node's own files hold: path -> tokens. Only node `i` ever
/// touches `n{i}/`, so these never conflict; `shared.txt` is everyone's.
#[derive(Default)]
struct Own {
    files: BTreeMap<String, Vec<String>>,
    /// Permission bits set with chmod, by path (the others keep what they were created with).
    modes: BTreeMap<String, u32>,
    dirs: u32,
}

struct Chaos {
    rng: Rng,
    c: Cluster,
    own: Vec<Own>,
    /// Every token written, and the tokens deliberately deleted since.
    written: BTreeSet<String>,
    deleted: BTreeSet<String>,
    next_token: u64,
    seed: u64,
    log: Vec<String>,
    faults: usize,
    /// Nodes this run stopped (kill -9) and has not restarted: any other node found not
    /// running exited by itself, which is a failure, never a fault it survived.
    stopped: BTreeSet<usize>,
}

impl Chaos {
    fn token(&mut self) -> String {
        self.next_token += 1;
        let t = format!("tok-{:x}-{}", self.seed, self.next_token);
        self.written.insert(t.clone());
        t
    }

    fn path(&self, i: usize, rel: &str) -> std::path::PathBuf {
        self.c.node(i).folder.join(rel)
    }

    fn write_own(&self, i: usize, rel: &str) {
        let tokens = &self.own[i].files[rel];
        let p = self.path(i, rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        if rel.ends_with(".bin") {
            // Binary: the tokens between runs of bytes that are not text.
            let mut bytes = Vec::new();
            for (k, t) in tokens.iter().enumerate() {
                bytes.extend((0..64u8).map(|b| b.wrapping_mul(k as u8 + 7) | 0x80));
                bytes.extend_from_slice(t.as_bytes());
                bytes.push(0);
            }
            std::fs::write(p, bytes).unwrap();
        } else {
            std::fs::write(
                p,
                tokens.iter().map(|t| format!("{t}\n")).collect::<String>(),
            )
            .unwrap();
        }
    }

    fn edit(&mut self) {
        let i = self.rng.below(NODES);
        let files: Vec<String> = self.own[i].files.keys().cloned().collect();
        let what = self.rng.below(100);
        if what < 25 || files.is_empty() {
            // Create a text or binary file, maybe in a directory of its own.
            let dir = if self.rng.chance(40) {
                format!("n{i}/d{}/", self.own[i].dirs)
            } else {
                format!("n{i}/")
            };
            let ext = if self.rng.chance(25) { "bin" } else { "txt" };
            // Some names are as long as Linux allows (78 CJK characters, 234 bytes, and more).
            let long = if self.rng.chance(15) {
                "長".repeat(78)
            } else {
                String::new()
            };
            let rel = format!("{dir}{long}f{}.{ext}", self.next_token);
            let t = self.token();
            self.own[i].files.insert(rel.clone(), vec![t.clone()]);
            self.write_own(i, &rel);
            self.log.push(format!("edit n{i}: create {rel} with {t}"));
        } else if what < 55 {
            let rel = files[self.rng.below(files.len())].clone();
            let t = self.token();
            self.own[i].files.get_mut(&rel).unwrap().push(t.clone());
            self.write_own(i, &rel);
            self.log.push(format!("edit n{i}: append {t} to {rel}"));
        } else if what < 80 {
            // A line inserted into the shared file, as this node sees it now.
            let p = self.path(i, "shared.txt");
            let mut lines: Vec<String> = std::fs::read_to_string(&p)
                .unwrap_or_default()
                .lines()
                .map(str::to_owned)
                .collect();
            let at = self.rng.below(lines.len() + 1);
            let t = self.token();
            lines.insert(at, t.clone());
            std::fs::write(
                &p,
                lines.iter().map(|l| format!("{l}\n")).collect::<String>(),
            )
            .unwrap();
            self.log
                .push(format!("edit n{i}: insert {t} into shared.txt at {at}"));
        } else if what < 84 {
            // Permissions: a private file, or an executable one.
            let rel = files[self.rng.below(files.len())].clone();
            let mode = if self.rng.chance(50) { 0o600 } else { 0o755 };
            use std::os::unix::fs::PermissionsExt;
            let _ =
                std::fs::set_permissions(self.path(i, &rel), std::fs::Permissions::from_mode(mode));
            self.own[i].modes.insert(rel.clone(), mode);
            self.log.push(format!("edit n{i}: chmod {mode:o} {rel}"));
        } else if what < 86 {
            // A large binary file two nodes write at once: one side wins, the other goes on
            // the redo stack; neither may stop a daemon.
            let j = (i + 1) % NODES;
            let t = self.token();
            // Not counted as a live token: the losing side is kept by reference, not shown.
            self.written.remove(&t);
            for (k, node) in [i, j].into_iter().enumerate() {
                let mut bytes = vec![0u8; 3 << 20];
                for (n, b) in bytes.iter_mut().enumerate() {
                    *b = (n as u64 ^ self.next_token ^ (k as u64 * 0x5bd1_e995)) as u8 | 1;
                }
                bytes.extend_from_slice(t.as_bytes());
                let _ = std::fs::write(self.path(node, "big-shared.bin"), bytes);
            }
            self.log.push(format!(
                "edit n{i} and n{j}: write big-shared.bin at once ({t})"
            ));
        } else if what < 88 {
            let rel = files[self.rng.below(files.len())].clone();
            let tokens = self.own[i].files.remove(&rel).unwrap();
            self.own[i].modes.remove(&rel);
            self.deleted.extend(tokens);
            let _ = std::fs::remove_file(self.path(i, &rel));
            self.log.push(format!("edit n{i}: delete {rel}"));
        } else if what < 96 {
            let rel = files[self.rng.below(files.len())].clone();
            let (stem, ext) = rel.rsplit_once('.').unwrap();
            // The name keeps its length: a rename replaces the previous rename's suffix, so a
            // name already as long as Linux allows stays within its 255 bytes.
            let stem = stem.split_once("-r").map_or(stem, |(base, _)| base);
            let to = format!("{stem}-r{}.{ext}", self.next_token);
            let tokens = self.own[i].files.remove(&rel).unwrap();
            self.own[i].files.insert(to.clone(), tokens);
            if let Some(m) = self.own[i].modes.remove(&rel) {
                self.own[i].modes.insert(to.clone(), m);
            }
            let _ = std::fs::rename(self.path(i, &rel), self.path(i, &to));
            self.log.push(format!("edit n{i}: rename {rel} -> {to}"));
        } else {
            // Move a whole directory of this node's.
            let from = format!("n{i}/d{}/", self.own[i].dirs);
            self.own[i].dirs += 1;
            let to = format!("n{i}/d{}/", self.own[i].dirs);
            let moved: Vec<String> = files
                .iter()
                .filter(|f| f.starts_with(&from))
                .cloned()
                .collect();
            if moved.is_empty() {
                return;
            }
            for f in moved {
                let tokens = self.own[i].files.remove(&f).unwrap();
                self.own[i].files.insert(f.replacen(&from, &to, 1), tokens);
                if let Some(m) = self.own[i].modes.remove(&f) {
                    self.own[i].modes.insert(f.replacen(&from, &to, 1), m);
                }
            }
            let _ = std::fs::rename(self.path(i, &from), self.path(i, &to));
            self.log.push(format!("edit n{i}: move {from} -> {to}"));
        }
    }

    fn fault(&mut self) {
        self.faults += 1;
        let i = self.rng.below(NODES);
        match self.rng.below(6) {
            0 | 1 => {
                if self.c.is_running(i) {
                    self.c.kill(i);
                    self.stopped.insert(i);
                    self.log.push(format!("fault: kill -9 n{i}"));
                } else {
                    self.c.start(i);
                    self.stopped.remove(&i);
                    self.log.push(format!("fault: restart n{i}"));
                }
            }
            2 => {
                let _ = self.c.lab().cut(i);
                self.log.push(format!("fault: cut n{i}"));
            }
            3 => {
                let _ = self.c.lab().heal(i);
                self.log.push(format!("fault: heal n{i}"));
            }
            4 => {
                let p = 10 + self.rng.below(25) as u8;
                let _ = self.c.lab().set_loss(i, p);
                self.log.push(format!("fault: {p}% loss at n{i}"));
            }
            _ => {
                let _ = self.c.lab().set_loss(i, 0);
                self.log.push(format!("fault: no loss at n{i}"));
            }
        }
    }

    /// Every node this run did not stop is running.
    fn check_alive(&mut self) {
        for i in 0..NODES {
            if !self.stopped.contains(&i) && !self.c.is_running(i) {
                let log = std::fs::read_to_string(&self.c.node(i).log).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(20).collect();
                eprintln!(
                    "chaos schedule (seed {}):\n{}",
                    self.seed,
                    self.log.join("\n")
                );
                panic!(
                    "the daemon of n{i} exited by itself (seed {}); its last lines:\n{}",
                    self.seed,
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                );
            }
        }
    }

    fn heal_everything(&mut self) {
        for i in 0..NODES {
            let _ = self.c.lab().heal(i);
            let _ = self.c.lab().set_loss(i, 0);
            if !self.c.is_running(i) {
                self.c.start(i);
            }
        }
        self.stopped.clear();
    }
}

#[test]
fn chaos_loses_no_edit() {
    if !needs_root("chaos_loses_no_edit") {
        return;
    }
    let seed = std::env::var("CHORUS_CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
        });
    let secs: u64 = std::env::var("CHORUS_CHAOS_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    eprintln!("chaos: seed {seed} for {secs} s (CHORUS_CHAOS_SEED={seed} replays the schedule)");
    let mut c = Cluster::new(NODES, Wiring::Direct).expect("a cluster");
    // Deletions here are one file at a time, but a node offline for long can come back with
    // many at once; the guard would rightly hold them and wait for a human.
    c.run_args = vec!["--no-delete-guard".into()];
    c.start_all(Duration::from_secs(120));
    let mut ch = Chaos {
        rng: Rng(seed),
        c,
        own: (0..NODES).map(|_| Own::default()).collect(),
        written: BTreeSet::new(),
        deleted: BTreeSet::new(),
        next_token: 0,
        seed,
        log: Vec::new(),
        faults: 0,
        stopped: BTreeSet::new(),
    };
    let end = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < end {
        if ch.rng.chance(85) {
            ch.edit();
        } else {
            ch.fault();
        }
        std::thread::sleep(Duration::from_millis(50 + ch.rng.below(350) as u64));
        ch.check_alive();
    }
    ch.check_alive();
    ch.heal_everything();
    let all: Vec<usize> = (0..NODES).collect();
    let converged = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        ch.c.wait_converged(&all, Duration::from_secs(300))
    }));
    if converged.is_err() {
        eprintln!("chaos schedule (seed {seed}):\n{}", ch.log.join("\n"));
        panic!("no convergence after healing; seed {seed}");
    }

    ch.check_alive();
    // Permissions travelled: every file chmod-ed keeps those bits on every node.
    use std::os::unix::fs::PermissionsExt;
    for (i, own) in ch.own.iter().enumerate() {
        for (rel, mode) in &own.modes {
            if !own.files.contains_key(rel) {
                continue;
            }
            for n in 0..NODES {
                let got = std::fs::metadata(ch.c.node(n).folder.join(rel))
                    .map(|m| m.permissions().mode() & 0o777);
                assert_eq!(
                    got.ok(),
                    Some(*mode),
                    "n{i}'s {rel} on node {n} (seed {seed})"
                );
            }
        }
    }
    // Every live token is somewhere: the final tree, a redo entry, or history.
    let final_text: String =
        ch.c.tree(0)
            .values()
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .collect::<Vec<_>>()
            .join("\n");
    let previews: String =
        ch.c.query(0, "conflicts")
            .and_then(|v| v.as_array().cloned())
            .unwrap_or_default()
            .iter()
            .filter_map(|e| e["preview"].as_str().map(str::to_owned))
            .collect::<Vec<_>>()
            .join("\n");
    let live: Vec<&String> = ch.written.difference(&ch.deleted).collect();
    let mut missing: Vec<&String> = live
        .iter()
        .copied()
        .filter(|t| !final_text.contains(t.as_str()) && !previews.contains(t.as_str()))
        .collect();
    let in_tree = live.len() - missing.len();
    let mut in_history = 0;
    if !missing.is_empty() {
        let versions =
            ch.c.query(0, "log")
                .and_then(|v| v.as_array().cloned())
                .unwrap_or_default();
        for v in versions {
            let number = v["number"].as_str().unwrap_or_default().to_owned();
            let text = show(&ch.c, &number, "shared.txt");
            let before = missing.len();
            missing.retain(|t| !text.contains(t.as_str()));
            in_history += before - missing.len();
            if missing.is_empty() {
                break;
            }
        }
    }
    // Tokens the final tree holds more than once (a push merged against its own past did
    // that before pushes named their predecessors): reported, not a loss.
    let doubled = live
        .iter()
        .filter(|t| {
            final_text
                .match_indices(t.as_str())
                .filter(|(at, _)| {
                    // The whole token, not the prefix of a longer one.
                    !final_text[at + t.len()..].starts_with(|c: char| c.is_ascii_digit())
                })
                .count()
                > 1
        })
        .count();
    // Saves that landed while a version was being written into the same file (each stopped
    // that writing and was pushed first; before that check, such a save was overwritten).
    let stopped: usize = (0..NODES)
        .map(|i| {
            std::fs::read_to_string(&ch.c.node(i).log)
                .unwrap_or_default()
                .matches("changed while a version was being written")
                .count()
        })
        .sum();
    eprintln!(
        "chaos: seed {seed}: {} edits ({} tokens, {} deliberately deleted), {} faults; \
         {in_tree} tokens in the final tree or a redo entry, {in_history} only in history, {} lost; \
         {stopped} saves landed during a materialization, {doubled} tokens doubled",
        ch.log.len() - ch.faults,
        ch.written.len(),
        ch.deleted.len(),
        ch.faults,
        missing.len()
    );
    if !missing.is_empty() {
        eprintln!("chaos schedule (seed {seed}):\n{}", ch.log.join("\n"));
        for t in &missing {
            let wrote = ch
                .log
                .iter()
                .find(|l| l.split_whitespace().any(|w| w == t.as_str()));
            eprintln!("lost {t}: {}", wrote.map_or("?", String::as_str));
        }
    }
    assert!(missing.is_empty(), "lost edits {missing:?} (seed {seed})");
}

/// A file of an accepted version on node 0, as text ("" when it is not there).
fn show(c: &Cluster, version: &str, path: &str) -> String {
    let out = std::process::Command::new(chorus_integration_tests::cluster::chorus_bin().unwrap())
        .args(["show", version, path, "--state-dir"])
        .arg(&c.node(0).state)
        .output()
        .expect("run chorus show");
    String::from_utf8_lossy(&out.stdout).into_owned()
}
