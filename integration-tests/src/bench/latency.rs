//! Edit-to-visible latency (issue 6's measured part): three nodes of a daemon on loopback, a
//! one-line append on node 1, timed until the bytes are on disk on node 2, many edits per run;
//! also each daemon's RSS and traffic while idle: once right after the group formed (its
//! start-up included: address exchanges, AutoNAT probes) and once in its steady state.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::nft::{self, Counters};
use super::results::Results;
use super::stats::percentile;
use super::tools::Tool;
use super::two_party::{Ctx, log};

/// Scenario 2: a one-line append on node 1 until it is on disk on node 2, three nodes, daemons
/// only; also each daemon's idle RSS and idle traffic.
pub fn latency(ctx: &Ctx, results: &mut Results) -> Result<(), String> {
    let edits = if ctx.quick { 10 } else { 50 };
    for (tool, why) in &ctx.unavailable {
        results
            .latency_row(tool)
            .failures
            .push(format!("not run: {why}"));
    }
    for run in 0..ctx.runs {
        for tool in ctx.tools.iter().filter(|t| t.is_daemon()) {
            let name = tool.name();
            log(format!("latency run {}/{}: {name}", run + 1, ctx.runs));
            let dir = ctx.scratch("latency", &name);
            match latency_session(tool.as_ref(), &dir, edits) {
                Ok(m) => {
                    let row = results.latency_row(&name);
                    let p50 = percentile(&m.samples, 50.0).unwrap_or(f64::NAN);
                    let p99 = percentile(&m.samples, 99.0).unwrap_or(f64::NAN);
                    log(format!(
                        "  p50 {p50:.0} ms, p99 {p99:.0} ms, idle {:.1} MiB, {:.0} B/s (steady {:.0} B/s)",
                        m.idle_rss as f64 / 1048576.0,
                        m.idle_bps,
                        m.idle_bps_steady
                    ));
                    row.p50_ms.push(p50);
                    row.p99_ms.push(p99);
                    row.samples_ms.extend(m.samples);
                    row.idle_rss.push(m.idle_rss as f64);
                    row.idle_bps.push(m.idle_bps);
                    row.idle_bps_steady.push(m.idle_bps_steady);
                    results.rss_row("latency", &name).values.push(m.peak as f64);
                }
                Err(e) => {
                    log(format!("  {name} failed: {e}"));
                    results
                        .latency_row(&name)
                        .failures
                        .push(format!("run {}: {e}", run + 1));
                }
            }
            ctx.discard(&dir);
        }
    }
    for tool in ctx
        .tools
        .iter()
        .filter(|t| !t.is_daemon() && t.runs_in("latency"))
    {
        results.latency_row(&tool.name()).failures.push(
            "not a daemon: it syncs only when run, so there is no edit-to-visible latency".into(),
        );
    }
    Ok(())
}

/// How long a group is watched idle, its traffic counted.
const IDLE_WINDOW: Duration = Duration::from_secs(30);
/// The steady idle window starts this long after the daemons were started: past the start-up
/// (chorus: AutoNAT's probes and their dial-backs, whose connections close after 60 s idle).
const STEADY_AFTER: Duration = Duration::from_secs(90);

struct LatencyRun {
    samples: Vec<f64>,
    idle_rss: u64,
    idle_bps: f64,
    idle_bps_steady: f64,
    peak: u64,
}

fn latency_session(tool: &dyn Tool, dir: &Path, edits: usize) -> Result<LatencyRun, String> {
    let folders: Vec<PathBuf> = (0..3).map(|i| dir.join(format!("n{i}"))).collect();
    for f in &folders {
        std::fs::create_dir_all(f).map_err(|e| e.to_string())?;
    }
    std::fs::create_dir_all(dir.join("tool")).map_err(|e| e.to_string())?;
    let started = Instant::now();
    let mut session = tool.open(&dir.join("tool"), &folders)?;
    let result = (|| {
        let ports: Vec<u16> = session.ports().into_iter().flatten().collect();
        let counters = Counters::start(&ports)?;
        let file = "notes.txt";
        let mut content = b"notes\n".to_vec();
        std::fs::write(folders[0].join(file), &content).map_err(|e| e.to_string())?;
        let limit = Duration::from_secs(60);
        for f in &folders[1..] {
            let p = f.join(file);
            super::procs::wait_until(
                "the first file reaches every node",
                limit,
                Duration::from_millis(10),
                || std::fs::read(&p).is_ok_and(|c| c == content),
            )?;
        }
        session.settle();
        std::thread::sleep(Duration::from_secs(1));
        let idle_rss = session.rss_now().into_iter().max().unwrap_or(0);
        // Long enough to hold several of the slowest heartbeats (chorus: one a follower every
        // 1.5 s) and libp2p's pings (every 15 s), so the rate is not an accident of the window.
        let before = counters.read()?;
        std::thread::sleep(IDLE_WINDOW);
        let idle_bps = nft::total(&before, &counters.read()?) as f64 / IDLE_WINDOW.as_secs_f64();
        let mut samples = Vec::new();
        for k in 0..edits {
            let line = format!("edit {k}: one line appended on node 1\n");
            content.extend_from_slice(line.as_bytes());
            {
                use std::io::Write;
                let mut f = std::fs::OpenOptions::new()
                    .append(true)
                    .open(folders[1].join(file))
                    .map_err(|e| e.to_string())?;
                f.write_all(line.as_bytes()).map_err(|e| e.to_string())?;
            }
            let t0 = Instant::now();
            let target = folders[2].join(file);
            let mut seen = None;
            while t0.elapsed() < limit {
                let at = Instant::now();
                if std::fs::read(&target).is_ok_and(|c| c == content) {
                    seen = Some(at - t0);
                    break;
                }
                std::thread::sleep(Duration::from_millis(2));
            }
            let Some(d) = seen else {
                return Err(format!(
                    "edit {k} did not reach node 2 within {} s",
                    limit.as_secs()
                ));
            };
            samples.push(d.as_secs_f64() * 1e3);
            // Every node holds it before the next edit.
            let p0 = folders[0].join(file);
            super::procs::wait_until(
                "an edit reaches node 0",
                limit,
                Duration::from_millis(5),
                || std::fs::read(&p0).is_ok_and(|c| c == content),
            )?;
            session.settle();
            std::thread::sleep(Duration::from_millis(100));
        }
        // The steady state: the same window again, well after the start (the edits are long
        // settled by then).
        std::thread::sleep(STEADY_AFTER.saturating_sub(started.elapsed()));
        session.settle();
        let before = counters.read()?;
        std::thread::sleep(IDLE_WINDOW);
        let idle_bps_steady =
            nft::total(&before, &counters.read()?) as f64 / IDLE_WINDOW.as_secs_f64();
        Ok((samples, idle_rss, idle_bps, idle_bps_steady))
    })();
    let peak = session.close();
    let (samples, idle_rss, idle_bps, idle_bps_steady) = result?;
    Ok(LatencyRun {
        samples,
        idle_rss,
        idle_bps,
        idle_bps_steady,
        peak,
    })
}
