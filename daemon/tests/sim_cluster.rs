//! Replicas (the engine and the folder layer the daemon runs, on in-memory stores and
//! folders) over a simulated network, with real Raft (chorus-election over its in-memory
//! transport) bridged by the daemon's own [`RaftFeed`]: every node edits at random while
//! messages are dropped, delayed (so reordered), a node is partitioned away and another crashes
//! and restarts from its stores. An edit lands on disk first and is scanned a moment later, as
//! the watcher's debounce does, so versions are written into folders that changed since their
//! scan and the folder's never-overwrite rule is exercised. After healing, every node must hold
//! the same tree and head number, every header must be built on the one before it, and every
//! edit ever made must be in the final tree (once) or in a redo entry (edits only add lines, so
//! only a conflict displaces one). Some proposals are reported failed at once while Raft goes
//! on with them (and may commit them), as a proposer's timeout does on a loaded machine.
//!
//! Each run prints its seed; rerun one with `CHORUS_SEED=<seed>` (with `CHORUS_SIM_SEEDS=<n>`, n
//! times at once). `CHORUS_SIM_SEEDS=<n>` alone runs n fresh seeds (default 200),
//! `CHORUS_SIM_PARALLEL=<k>` k clusters at a time (default 16: they mostly wait on Raft's timers,
//! so 200 seeds take about 50 s on two cores). Fault decisions and edits follow the seed; thread
//! scheduling and Raft's timers add real-time interleaving, so a failing seed reproduces the same
//! faults and edits, not always the same interleaving. A run that loses an edit prints its trace
//! (edits, scans, writes, proposals, commits, leaders, faults) and every version that held the
//! edit; `CHORUS_SIM_TRACE=1` prints the trace of every run. `CHORUS_SIM_ONCE=1` also checks
//! that no displaced change is on the redo stack twice.

mod sim;

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chorus_chunking::MemStore;
use chorus_election::memnet::LinkFaults;
use chorus_election::testing::Cluster;
use chorus_election::{AcceptedHeader, ElectionConfig};
use chorus_sync::testing::MemFolder;
use chorus_sync::{RaftFeed, SyncStore};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::mpsc;

use sim::{NODES, Router, Run, Sim, Trace, engine_config, files_of, replica, short};

async fn run(seed: u64) {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("CHORUS_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_test_writer()
        .try_init();
    eprintln!("sim_cluster: seed {seed} (rerun with CHORUS_SEED={seed})");
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::start(
        NODES,
        seed,
        ElectionConfig::eager(),
        dir.path().to_path_buf(),
    )
    .await;
    cluster.net.set_default_faults(LinkFaults {
        drop: 0.02,
        delay_ms: (0, 10),
    });
    let sims = (1..=NODES)
        .map(|id| {
            let chunks = Arc::new(MemStore::new());
            let folder = MemFolder::new(chunks.clone(), engine_config().cutter);
            let store = SyncStore::in_memory().unwrap();
            (
                id,
                Sim {
                    replica: Some(replica(id, store, chunks.clone(), folder)),
                    down: None,
                    chunks,
                    feed: RaftFeed::new(),
                    next_tick: 0,
                    scan_at: None,
                },
            )
        })
        .collect();
    let (tx, rx) = mpsc::unbounded_channel();
    let mut rng = StdRng::seed_from_u64(seed);
    let router = Router {
        rng: StdRng::seed_from_u64(rng.r#gen()),
        queue: VecDeque::new(),
        drop: 0.05,
        groups: Vec::new(),
    };
    let mut r = Run {
        seed,
        rng,
        cluster,
        sims,
        router,
        start: Instant::now(),
        proposals: tx,
        results: rx,
        late: (StdRng::seed_from_u64(seed ^ LATE_SALT), 0.2),
        tokens: Vec::new(),
        in_flight: 0,
        trace: Trace::default(),
        _dir: dir,
    };

    // Faults at seeded times (ms into the edit phase): a partition, then a crash and restart.
    let alone = r.rng.gen_range(1..=NODES);
    let crashed = r.rng.gen_range(1..=NODES);
    let partition_at = r.rng.gen_range(400..900);
    let crash_at = r.rng.gen_range(1500..2000);
    let (mut partitioned, mut healed, mut down, mut up) = (false, false, false, false);
    let edits_end = 2800;
    let mut next_edit = 0;
    loop {
        let t = r.now();
        if t >= edits_end {
            break;
        }
        if t >= next_edit {
            r.edit();
            next_edit = t + r.rng.gen_range(10..80);
        }
        if !partitioned && t >= partition_at {
            partitioned = true;
            r.partition(alone);
        }
        if partitioned && !healed && t >= partition_at + 700 {
            healed = true;
            r.heal();
        }
        if !down && t >= crash_at {
            down = true;
            r.crash(crashed).await;
        }
        if down && !up && t >= crash_at + 500 {
            up = true;
            r.restart(crashed).await;
        }
        r.step().await;
    }
    if !up {
        r.restart(crashed).await;
    }
    r.heal();
    r.router.drop = 0.0;
    r.cluster.net.set_default_faults(LinkFaults::default());

    // Liveness bound, not a speed assertion: a run that has not converged long after the
    // faults stopped is stuck.
    let deadline = Instant::now() + Duration::from_secs(60);
    let (leader, raft_head, final_id, number) = loop {
        converge(&mut r, seed, deadline).await;
        // Same tree and number everywhere, and on disk as the engines say.
        let (final_id, number) = r.sims[&1].engine().adopted();
        let (leader, raft_head) = read_head(&r.cluster, seed).await;
        // A proposal its proposer was told had failed (timed out) may still commit after the
        // engines looked settled: then they have that header to take in, and the run goes on.
        if raft_head.number.major > number.major && Instant::now() < deadline {
            eprintln!(
                "seed {seed}: Raft's head {} is past the engines' {number}; stepping on",
                raft_head.number
            );
            r.step().await;
            continue;
        }
        break (leader, raft_head, final_id, number);
    };
    assert_eq!(
        raft_head.version, final_id,
        "seed {seed}: the log's head is the tree"
    );
    assert_eq!(raft_head.number.major, number.major, "seed {seed}");
    let sim1 = &r.sims[&1];
    let final_files = files_of(&sim1.disk(), &*sim1.chunks);
    for (id, sim) in &r.sims {
        assert_eq!(
            sim.disk().version_id(),
            final_id,
            "seed {seed}: node {id} differs"
        );
        assert_eq!(
            files_of(&sim.disk(), &*sim.chunks),
            final_files,
            "seed {seed}"
        );
    }

    // Every edit is in the final tree or in a redo entry.
    let engine = r.sims[&leader].engine();
    // Redo entries: hunks as text, whole files (large hunks travel so) loaded by their chunks
    // from whichever node holds them.
    let mut redo = String::new();
    for sim in r.sims.values() {
        for rec in sim.engine().redo().unwrap() {
            redo.push_str(&serde_json::to_string(&rec.entry).unwrap());
            let files: Vec<&chorus_merge::redo::WholeContent> = match &rec.entry.what {
                chorus_merge::Displaced::Whole { content, kept } => {
                    std::iter::once(content).chain(kept.as_ref()).collect()
                }
                chorus_merge::Displaced::Deletion { kept } => vec![kept],
                _ => Vec::new(),
            };
            for f in files {
                if let chorus_merge::redo::WholeContent::File { manifest, .. } = f {
                    redo.push_str(&String::from_utf8_lossy(&r.bytes_of(manifest)));
                }
            }
        }
    }
    // Each displaced change is on the redo stack once. Asked for with CHORUS_SIM_ONCE=1: it
    // passed 2,200 seeds after the fix of a member pushing back a version it had just written
    // (two runs of ~1,800 had failed it before), too few to rule out another, rarer way.
    if std::env::var_os("CHORUS_SIM_ONCE").is_some() {
        let mut seen = std::collections::BTreeSet::new();
        for rec in engine.redo().unwrap() {
            let entry = serde_json::to_string(&rec.entry).unwrap();
            assert!(
                seen.insert(entry.clone()),
                "seed {seed}: a redo entry is on the stack twice: {entry}"
            );
        }
    }
    // Every header is built on the one before it: a header built on an older head would
    // make a tree without what the headers between brought.
    let headers = engine.headers().unwrap();
    for w in headers.windows(2) {
        if w[1].number.major == w[0].number.major + 1 {
            assert_eq!(
                w[1].parents.first(),
                Some(&w[0].version),
                "seed {seed}: header {} is not built on header {}",
                w[1].number,
                w[0].number
            );
        }
    }
    let tree_text: String = final_files.values().cloned().collect();
    let mut in_tree = 0;
    for t in &r.tokens {
        let line = format!("{t}\n");
        // Whole lines: a token is never the tail of another (they end in distinct numbers).
        let copies = tree_text.lines().filter(|l| *l == t.as_str()).count();
        assert!(
            copies <= 1,
            "seed {seed}: edit {t} is in the final tree {copies} times (merged against itself)"
        );
        if tree_text.contains(&line) {
            in_tree += 1;
        } else if !redo.contains(t.as_str()) {
            // Edits only add lines: one missing from the tree was displaced by a conflict,
            // and its redo entry holds it. Found only in history, it was dropped unrecorded.
            report_lost(&r, t);
            panic!(
                "seed {seed}: edit {t} is lost ({})",
                if accepted_text(&r, leader).contains(&line) {
                    "an accepted version held it; the tree dropped it with no redo entry"
                } else {
                    "in no accepted version and no redo entry"
                }
            );
        }
    }
    if std::env::var_os("CHORUS_SIM_TRACE").is_some() {
        for l in &r.trace.lines {
            eprintln!("  {l}");
        }
    }
    eprintln!(
        "sim_cluster: seed {seed}: {} edits, {in_tree} in the final tree, head {number}, {} redo bytes",
        r.tokens.len(),
        redo.len()
    );
    r.cluster.shutdown().await;
}

/// Steps the run until every node is settled on the same adopted head, its disk written; panics
/// (printing each engine's state) when that has not happened by `deadline`.
async fn converge(r: &mut Run, seed: u64, deadline: Instant) {
    while !r.converged() {
        if Instant::now() >= deadline {
            for (id, sim) in &r.sims {
                if let Some(rep) = &sim.replica {
                    eprintln!("seed {seed}: {}", rep.engine().diagnosis());
                    eprintln!("  feed {:?} raft {:?}", sim.feed, r.view(*id));
                }
            }
            eprintln!(
                "seed {seed}: in flight {} queued {}",
                r.in_flight,
                r.router.queue.len()
            );
        }
        assert!(
            Instant::now() < deadline,
            "seed {seed}: no convergence; states: {:?}",
            r.sims
                .iter()
                .map(|(id, s)| (
                    id,
                    s.replica.as_ref().map(|r| {
                        let e = r.engine();
                        (e.adopted(), e.head(), e.work(), e.is_settled())
                    })
                ))
                .collect::<Vec<_>>()
        );
        r.step().await;
    }
}

/// The leader and the head of the Raft log, read linearizably. That read needs a majority's
/// acknowledgement in time; under load (many seeds at once on two cores) that can take a few
/// tries.
async fn read_head(cluster: &Cluster, seed: u64) -> (u64, AcceptedHeader) {
    let mut tries = 0;
    loop {
        let leader = cluster.wait_leader(Duration::from_secs(5)).await.unwrap();
        match cluster.node(leader).read_head().await {
            Ok(head) => return (leader, head.expect("a head after the edits")),
            Err(e) if tries < 20 => {
                tries += 1;
                eprintln!("seed {seed}: read_head: {e}; retrying");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("seed {seed}: no linearizable read of the head: {e}"),
        }
    }
}

/// The text of every accepted version in the history of node `of`, each read from whichever
/// node holds its tree: where a lost edit may still be found.
fn accepted_text(r: &Run, of: u64) -> String {
    let mut text = String::new();
    for h in r.sims[&of].engine().headers().unwrap() {
        for sim in r.sims.values() {
            if let Some(tree) = sim.engine().manifest(&h.version).unwrap() {
                for t in files_of(&tree, &*sim.chunks).values() {
                    text.push_str(t);
                }
                break;
            }
        }
    }
    text
}

/// Prints the run's story and every version, on any node, that held the lost edit `token`.
fn report_lost(r: &Run, token: &str) {
    eprintln!("seed {}: the trace of the run:", r.seed);
    for l in &r.trace.lines {
        eprintln!("  {l}");
    }
    let line = format!("{token}\n");
    for v in &r.trace.versions {
        for (id, sim) in &r.sims {
            let Ok(Some(tree)) = sim.engine().manifest(v) else {
                continue;
            };
            // Chunks from whichever node holds them (a manifest may outlive its chunks here).
            let held: Vec<String> = tree
                .iter()
                .filter(|(_, e)| {
                    e.manifest()
                        .is_some_and(|m| String::from_utf8_lossy(&r.bytes_of(m)).contains(&line))
                })
                .map(|(p, _)| p.as_str().to_owned())
                .collect();
            eprintln!(
                "  version {} (manifest on n{id}): {token} in {held:?}",
                short(v)
            );
            break;
        }
    }
    for (id, sim) in &r.sims {
        let on_disk = files_of(&sim.disk(), &*sim.chunks)
            .values()
            .any(|t| t.contains(&line));
        eprintln!("  n{id}: on disk {on_disk}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_edits_converge_under_drops_partitions_and_crashes() {
    let count: Option<usize> = std::env::var("CHORUS_SIM_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok());
    let seeds: Vec<u64> = match std::env::var("CHORUS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        // One seed, once, or `CHORUS_SIM_SEEDS` times (its interleavings differ).
        Some(s) => vec![s; count.unwrap_or(1)],
        None => (0..count.unwrap_or(DEFAULT_SEEDS))
            .map(|_| rand::random())
            .collect(),
    };
    // The clusters spend most of their time waiting on Raft timers, so several run at once.
    let parallel = std::env::var("CHORUS_SIM_PARALLEL")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(DEFAULT_PARALLEL)
        .max(1);
    for batch in seeds.chunks(parallel) {
        let tasks: Vec<_> = batch
            .iter()
            .map(|&seed| (seed, tokio::spawn(run(seed))))
            .collect();
        for (seed, task) in tasks {
            if let Err(e) = task.await {
                panic!("seed {seed} failed (rerun with CHORUS_SEED={seed}): {e}");
            }
        }
    }
}

/// Mixed into the seed for the stream that picks proposals reported failed early.
const LATE_SALT: u64 = 0x6c61_7465;

/// Seeds per test run, and how many run at once: the CI-sized run.
const DEFAULT_SEEDS: usize = 200;
const DEFAULT_PARALLEL: usize = 16;
