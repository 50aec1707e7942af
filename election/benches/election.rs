//! Election figures for docs/benchmarks.md, printed as markdown tables:
//!
//! 1. Failover: the leader of a 3-node in-memory cluster in a steady state (every log equal) is
//!    killed; time until a new leader has committed a header. 20 trials, median and max, with
//!    the config used. The survivors are told the leader is gone, as the daemon tells them
//!    when its connections close and a redial fails; `-- --silent` leaves them to notice alone
//!    (a machine that vanished).
//! 2. Header commits on 3 in-process nodes with durable (fsync'd) redb storage: throughput and
//!    latency at several concurrencies, and durable commits per header.
//!
//! `cargo bench -p chorus-election --bench election` (`-- --quick` for fewer trials;
//! `-- --wan` for the WAN config, `-- --eager` for the in-memory tests' 50 ms heartbeats).

use std::time::{Duration, Instant};

use chorus_election::ElectionConfig;
use chorus_election::testing::{Cluster, proposal};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let quick = args.iter().any(|a| a == "--quick");
    let mut config = if args.iter().any(|a| a == "--wan") {
        ElectionConfig::wan()
    } else if args.iter().any(|a| a == "--eager") {
        ElectionConfig::eager()
    } else {
        ElectionConfig::lan()
    };
    // `--timing HEARTBEAT,MIN,MAX` (ms) to compare settings.
    if let Some(t) = args
        .iter()
        .position(|a| a == "--timing")
        .and_then(|i| args.get(i + 1))
    {
        let v: Vec<u64> = t.split(',').filter_map(|x| x.parse().ok()).collect();
        if let [h, lo, hi] = v[..] {
            config.heartbeat_ms = h;
            config.election_timeout_min_ms = lo;
            config.election_timeout_max_ms = hi;
        }
    }
    let failover_only = args.iter().any(|a| a == "--failover-only");
    let silent = args.iter().any(|a| a == "--silent");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    rt.block_on(async {
        failover(config, if quick { 5 } else { 20 }, silent).await;
        if !failover_only {
            throughput(config, if quick { 300 } else { 2000 }).await;
        }
    });
}

async fn failover(config: ElectionConfig, trials: usize, silent: bool) {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut c = Cluster::start(3, 7, config, dir.path().to_path_buf()).await;
    let mut next = 1u64;
    c.propose(proposal(next, 1), Duration::from_secs(5))
        .await
        .expect("first commit");
    let mut times = Vec::new();
    for _ in 0..trials {
        let leader = c
            .wait_leader(Duration::from_secs(5))
            .await
            .expect("a leader");
        next += 1;
        let t = Instant::now();
        let dead = c.crash(leader);
        if !silent {
            for id in c.running() {
                c.node(id).leader_lost(leader);
            }
        }
        let n = c
            .propose(proposal(next, 1), Duration::from_secs(10))
            .await
            .expect("a commit after failover");
        times.push(t.elapsed());
        assert_eq!(n.major, next);
        if let Some(dead) = dead {
            dead.shutdown().await;
        }
        c.restart(leader).await;
        assert!(
            c.wait_applied(next, Duration::from_secs(10)).await,
            "the restarted node caught up"
        );
    }
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!("## Failover: leader killed → a new leader commits a header\n");
    println!(
        "3 nodes in memory, heartbeat {} ms, election timeout {}–{} ms, {} trials, {}.\n",
        config.heartbeat_ms,
        config.election_timeout_min_ms,
        config.election_timeout_max_ms,
        trials,
        if silent {
            "the survivors left to notice alone"
        } else {
            "the survivors told the leader is gone"
        }
    );
    println!("| min | median | p90 | max |");
    println!("|---:|---:|---:|---:|");
    println!(
        "| {:.0} ms | {:.0} ms | {:.0} ms | {:.0} ms |\n",
        ms(times[0]),
        ms(times[times.len() / 2]),
        ms(times[times.len() * 9 / 10]),
        ms(times[times.len() - 1])
    );
    c.shutdown().await;
}

async fn throughput(config: ElectionConfig, headers: u64) {
    println!("## Header commits, 3 in-process nodes, durable storage (redb, fsync per commit)\n");
    println!(
        "| concurrent proposers | headers | headers/s | p50 latency | p99 latency | durable commits per header (leader) | (all nodes) |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|");
    for concurrency in [1u64, 16, 64] {
        let dir = tempfile::tempdir().expect("temp dir");
        let c = std::sync::Arc::new(Cluster::start(3, 11, config, dir.path().to_path_buf()).await);
        let leader = c
            .wait_leader(Duration::from_secs(5))
            .await
            .expect("a leader");
        let commits_before: Vec<u64> = c
            .running()
            .iter()
            .map(|&id| c.node(id).durable_commits())
            .collect();
        let leader_before = c.node(leader).durable_commits();
        let per_task = headers / concurrency;
        let t = Instant::now();
        let mut tasks = Vec::new();
        for task in 0..concurrency {
            let c = c.clone();
            tasks.push(tokio::spawn(async move {
                let mut lat = Vec::new();
                for i in 0..per_task {
                    let s = Instant::now();
                    c.node(leader)
                        .propose(proposal(task * 1_000_000 + i, 1))
                        .await
                        .expect("commit");
                    lat.push(s.elapsed());
                }
                lat
            }));
        }
        let mut lat = Vec::new();
        for task in tasks {
            lat.extend(task.await.expect("proposer task"));
        }
        let elapsed = t.elapsed();
        let n = lat.len() as f64;
        lat.sort();
        let all: u64 = c
            .running()
            .iter()
            .zip(&commits_before)
            .map(|(&id, b)| c.node(id).durable_commits() - b)
            .sum();
        let leader_commits = c.node(leader).durable_commits() - leader_before;
        println!(
            "| {concurrency} | {} | {:.0} | {:.2} ms | {:.2} ms | {:.2} | {:.2} |",
            lat.len(),
            n / elapsed.as_secs_f64(),
            lat[lat.len() / 2].as_secs_f64() * 1e3,
            lat[lat.len() * 99 / 100].as_secs_f64() * 1e3,
            leader_commits as f64 / n,
            all as f64 / n
        );
        if let Ok(c) = std::sync::Arc::try_unwrap(c) {
            c.shutdown().await;
        }
    }
    println!();
}
