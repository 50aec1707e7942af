//! The side-by-side benchmark of issue 8: chorus against rsync, Syncthing and Unison on
//! loopback, every scenario for every tool in the same run, bytes counted by nftables for all
//! of them alike, figures the median of several runs with min and max, written into
//! docs/benchmarks.md with PNG plots. The `bench` binary parses options and calls [`run`].
//!
//! - [`stats`]: median/min/max and percentiles;
//! - [`nft`]: byte counters on loopback by TCP and UDP port;
//! - [`procs`]: processes, their peak RSS, a tiny HTTP client;
//! - [`data`]: the data sets and tree snapshots;
//! - [`tools`]: chorus, rsync, Syncthing and Unison behind one interface;
//! - [`two_party`]: a change in folder A until folder B holds it, for every tool and run;
//! - [`scenarios`] and [`latency`]: what is measured; [`results`]: the raw figures;
//! - [`report`] and [`plot`]: the Markdown region and the PNGs.

pub mod data;
pub mod latency;
pub mod nft;
pub mod plot;
pub mod procs;
pub mod report;
pub mod results;
pub mod scenarios;
pub mod stats;
pub mod tools;
pub mod two_party;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use results::Results;
use tools::Tool;
use two_party::Ctx;

/// Every scenario, in the order they run.
pub const SCENARIOS: &[&str] = &[
    "update",
    "release",
    "latency",
    "initial-tree",
    "big-file",
    "scale",
    "huge-file",
];

/// What to run.
#[derive(Debug, Clone)]
pub struct Options {
    /// Smaller data and one run: a smoke test of the whole suite.
    pub quick: bool,
    /// The scenarios to run (all when empty).
    pub scenarios: Vec<String>,
    /// Runs per figure (3 by default, 1 with quick).
    pub runs: Option<usize>,
    /// Runs of the long scenarios, 100k files and the 4 GiB file (1 by default: they alone
    /// would take most of the time budget).
    pub long_runs: Option<usize>,
    /// The chorus binary; built with cargo when not given.
    pub chorus: Option<PathBuf>,
    /// Where data and scratch folders go.
    pub work: PathBuf,
    /// Write docs/benchmarks.md and docs/plots (the default for a full run of every scenario).
    pub write_docs: bool,
    /// Only the tools whose names contain one of these (case-insensitive); all when empty.
    pub tools: Vec<String>,
    /// Keep the folders and logs of a failed run (in the work dir) to look into.
    pub keep_failed: bool,
    /// Render these saved results.json files (later ones replacing the scenarios they
    /// measured) instead of measuring.
    pub render: Vec<PathBuf>,
}

/// The repository root (this crate's parent).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("integration-tests sits in the workspace root")
        .to_path_buf()
}

fn first_line(program: &str, arg: &str) -> String {
    Command::new(program)
        .arg(arg)
        .output()
        .ok()
        .map(|o| {
            let mut t = String::from_utf8_lossy(&o.stdout).into_owned();
            t.push_str(&String::from_utf8_lossy(&o.stderr));
            t.lines().next().unwrap_or("").trim().to_owned()
        })
        .unwrap_or_default()
}

/// "built from commit X" (with "and uncommitted changes" when the daemon's sources differ), as
/// of now.
fn source_state() -> String {
    let git = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .current_dir(repo_root())
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_default()
    };
    let head = git(&["rev-parse", "--short", "HEAD"]);
    let dirty = !git(&[
        "status",
        "--porcelain",
        "--",
        "daemon",
        "chunking",
        "merge",
        "election",
        "proto",
    ])
    .is_empty();
    let time = git(&["log", "-1", "--format=%cd", "--date=format-local:%H:%M UTC"]);
    format!(
        "built from commit {head} ({time}){}",
        if dirty {
            " and the uncommitted changes then in the working tree"
        } else {
            ""
        }
    )
}

/// Builds the chorus binary in release mode and returns its path.
fn build_chorus() -> Result<PathBuf, String> {
    let root = repo_root();
    eprintln!("bench: cargo build --release -p chorus");
    let ok = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["build", "--release", "-p", "chorus"])
        .current_dir(&root)
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        return Err("`cargo build --release -p chorus` failed: fix the build, or pass --chorus PATH to a chorus binary".into());
    }
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| root.join("target"));
    let bin = target.join("release/chorus");
    if bin.is_file() {
        Ok(bin)
    } else {
        Err(format!(
            "{} is missing after the build; pass --chorus PATH",
            bin.display()
        ))
    }
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|v| v.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        })
        .map(|kib| format!("{:.0} GiB RAM", kib as f64 / 1048576.0))
        .unwrap_or_default();
    format!("{cores} cores ({cpu}), {mem}")
}

/// Runs the benchmark; the report goes to docs/benchmarks.md or stdout.
pub fn run(opts: Options) -> Result<(), String> {
    if !crate::is_root() {
        return Err("the benchmark counts bytes with nftables and installs missing tools with apt-get: run it as root".into());
    }
    let started = Instant::now();
    let missing = tools::ensure_installed(&[
        ("rsync", "rsync"),
        ("syncthing", "syncthing"),
        ("unison", "unison"),
        ("nft", "nftables"),
        ("diff", "diffutils"),
        ("zstd", "zstd"),
        (
            plot::font_path().unwrap_or("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"),
            "fonts-dejavu-core",
        ),
    ]);
    for m in &missing {
        eprintln!("bench: {m}");
    }
    if !tools::installed("nft") {
        return Err(
            "nft (nftables) is required to count bytes: apt-get install -y nftables".into(),
        );
    }
    // The source the chorus binary is built from: taken before the build, as the tree may move
    // on during a long run.
    let commit = source_state();
    let chorus_bin = match &opts.chorus {
        Some(p) => p.clone(),
        None => build_chorus()?,
    };
    let chorus = tools::chorus::Chorus::new(chorus_bin.clone());
    let detection = chorus.detection();
    let mut available: Vec<Box<dyn Tool>> = vec![Box::new(chorus)];
    let mut unavailable = Vec::new();
    let wanted = |name: &str| {
        opts.tools.is_empty()
            || opts
                .tools
                .iter()
                .any(|t| name.to_lowercase().contains(&t.to_lowercase()))
    };
    if !wanted("chorus") {
        available.clear();
    }
    let mut add = |prog: &str, tool: Box<dyn Tool>| {
        if !wanted(&tool.name()) {
        } else if tools::installed(prog) {
            available.push(tool);
        } else {
            unavailable.push((
                tool.name(),
                format!("{prog} is not installed and apt-get could not install it"),
            ));
        }
    };
    add(
        "rsync",
        Box::new(tools::rsync::Rsync {
            label: "rsync --no-whole-file",
            options: &["--no-whole-file"],
            only: None,
        }),
    );
    add(
        "rsync",
        Box::new(tools::rsync::Rsync {
            label: "rsync -z",
            options: &["--no-whole-file", "-z"],
            // Issue 8 asks for it on the source-tree update, where compression matters.
            only: Some(&["update", "release"]),
        }),
    );
    add("syncthing", Box::new(tools::syncthing::Syncthing));
    add("unison", Box::new(tools::unison::Unison));

    std::fs::create_dir_all(&opts.work)
        .map_err(|e| format!("cannot create {}: {e}", opts.work.display()))?;
    let runs = opts.runs.unwrap_or(if opts.quick { 1 } else { 3 }).max(1);
    let ctx = Ctx {
        work: opts.work.clone(),
        runs,
        quick: opts.quick,
        keep_failed: opts.keep_failed,
        long_runs: opts.long_runs.unwrap_or(1).max(1),
        tools: available,
        unavailable,
    };
    let chosen: Vec<&str> = if opts.scenarios.is_empty() {
        SCENARIOS.to_vec()
    } else {
        opts.scenarios.iter().map(String::as_str).collect()
    };
    let mut results = Results::default();
    for name in &chosen {
        let t = Instant::now();
        let outcome = match *name {
            "update" => scenarios::update(&ctx, &mut results),
            "release" => scenarios::release(&ctx, &mut results),
            "latency" => latency::latency(&ctx, &mut results),
            "initial-tree" => scenarios::initial_tree(&ctx, &mut results),
            "big-file" => scenarios::big(&ctx, &mut results),
            "scale" => scenarios::scale(&ctx, &mut results),
            "huge-file" => scenarios::huge(&ctx, &mut results),
            other => Err(format!(
                "no scenario {other}; the scenarios are {}",
                SCENARIOS.join(", ")
            )),
        };
        if let Err(e) = outcome {
            eprintln!("bench: scenario {name} could not run: {e}");
            results
                .notes
                .push(format!("Scenario {name} could not run: {e}"));
        }
        eprintln!("bench: {name} took {:.0} s", t.elapsed().as_secs_f64());
        // What is measured so far survives a run stopped later (render it with --render).
        if let Ok(json) = serde_json::to_string(&results) {
            let _ = std::fs::write(opts.work.join("results.json"), json);
        }
    }

    // Deleted last, so that no tool's run follows a deletion (a bench stopped before leaves
    // the trash for the next one's end).
    ctx.empty_trash();
    let date = Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    let meta = vec![
        format!("Run on {date}, {}, chorus {commit} (release build){}; {runs} run(s) per figure ({} for the long scenarios, 100k files and the 4 GiB file, which take 10 min or more a run), shown as median (min–max); the whole run took {:.0} min.",
            machine(),
            if opts.quick { ", QUICK mode (reduced sizes)" } else { "" },
            ctx.long_runs,
            started.elapsed().as_secs_f64() / 60.0),
        format!("Versions: {}; {}; {}.", first_line("rsync", "--version"), first_line("syncthing", "--version"), first_line("unison", "-version")),
        "Bytes: nftables counters on `lo` by TCP and UDP port (chorus and Syncthing can speak QUIC), at the output hook, so every packet is counted once, as IP bytes (headers included), for every tool alike and never from a tool's own report. A → B is from the side that changed to the other. Every connection of a session is counted from just before the change until every daemon says it is done (and until its ports have been quiet for 300 ms, at most 2 s more; a phase of few paths: the benchmark's own check of the whole tree comes after the counters are read, and is waited for and counted to the end if the tree is not right yet), control traffic included: for chorus that includes its Raft heartbeats (one per follower every 2 s since issue 15, every 50 ms before; its idle rate is in the latency table), for rsync and Unison the whole connection of the command.".into(),
        "Time: from the moment the change is on disk (daemons) or the command starts (rsync, Unison) until the other folder holds exactly the expected bytes (the folder is polled by size, then checked by BLAKE3; the pause between polls is four times the last walk of the tree, at least 5 ms, so the time is exact to within a pause: milliseconds for a source tree, about a second for 100k files; a change of at most 64 paths is timed by looking at those paths every 5 ms, each hashed when it looks new and has the right size, and the whole tree checked once the tool is done (a tree not right then is timed by whole-tree polls from there, which begin once the tool's ports are quiet, up to 2 s later), so it is exact to 5 ms at any size). Each tool's run of a two-party scenario starts once the staged data and the runs before are written back (`sync`, then under 64 MiB dirty), so a tool that fsyncs does not wait behind another's writes.".into(),
        "Peak RSS: the largest process of the tool (its daemons, servers and clients, and their children) over the whole scenario, setup included: `VmHWM` from `/proc`, sampled every 20 ms and once more before a daemon is stopped.".into(),
        format!("chorus: `chorus run` per folder with explicit loopback peers, state dirs outside the folders, change detection: {detection}; two nodes in two-party scenarios (A started the cluster), three for latency."),
        "Syncthing: one `syncthing serve` per folder, watcher on with its 1 s minimum delay, rescans hourly, discovery, relays, NAT and low priority off, explicit `tcp://127.0.0.1:PORT` addresses. rsync: a client pushing over TCP to `rsync --daemon` (`-a --delete`, delta transfer; `-z` adds compression). Unison: `unison A socket://127.0.0.1:PORT/B -batch -auto -times` against `unison -socket PORT`.".into(),
    ];

    results.meta = meta;
    let saved = opts.work.join("results.json");
    match serde_json::to_string_pretty(&results) {
        Ok(json) => {
            if let Err(e) = std::fs::write(&saved, json) {
                eprintln!("bench: cannot save {}: {e}", saved.display());
            } else {
                eprintln!(
                    "bench: raw figures in {} (render them again with --render)",
                    saved.display()
                );
            }
        }
        Err(e) => eprintln!("bench: cannot serialize the results: {e}"),
    }
    publish(&results, &opts)
}

/// Renders saved results (the `results.json` of earlier runs) again: plots and report. Later
/// files replace the scenarios they measured in the earlier ones.
pub fn render(files: &[PathBuf], opts: &Options) -> Result<(), String> {
    let mut merged: Option<Results> = None;
    for file in files {
        let text = std::fs::read_to_string(file)
            .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
        let results: Results = serde_json::from_str(&text).map_err(|e| {
            format!(
                "{} is not a results.json of this benchmark: {e}",
                file.display()
            )
        })?;
        match merged.as_mut() {
            None => merged = Some(results),
            Some(m) => m.merge(results),
        }
    }
    let results = merged.ok_or("--render needs a results.json")?;
    if plot::font_path().is_none() {
        tools::ensure_installed(&[(
            "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
            "fonts-dejavu-core",
        )]);
    }
    publish(&results, opts)
}

/// Writes the plots and the report: into docs/ with `write_docs`, else into the work dir.
fn publish(results: &Results, opts: &Options) -> Result<(), String> {
    let plots_dir = if opts.write_docs {
        repo_root().join("docs/plots")
    } else {
        opts.work.join("plots")
    };
    std::fs::create_dir_all(&plots_dir).map_err(|e| e.to_string())?;
    let mut plots = Vec::new();
    match plot::init_fonts() {
        Ok(()) => {
            for p in &results.phases {
                match plot::phase(&plots_dir, &p.key, &p.title, &p.rows) {
                    Ok(f) => plots.push((p.key.clone(), f)),
                    Err(e) => eprintln!("bench: {e}"),
                }
            }
            if results.latency.iter().any(|r| !r.samples_ms.is_empty()) {
                match plot::latency(&plots_dir, &results.latency) {
                    Ok(f) => plots.push(("latency".into(), f)),
                    Err(e) => eprintln!("bench: {e}"),
                }
            }
            if !results.rss.is_empty() {
                match plot::rss(&plots_dir, &results.rss) {
                    Ok(f) => plots.push(("rss".into(), f)),
                    Err(e) => eprintln!("bench: {e}"),
                }
            }
        }
        Err(e) => eprintln!("bench: no plots: {e}"),
    }
    let mut body = report::render(results, &results.meta, &plots);
    body += &report::goals(results);
    if opts.write_docs {
        let doc_path = repo_root().join("docs/benchmarks.md");
        let doc = std::fs::read_to_string(&doc_path)
            .map_err(|e| format!("cannot read {}: {e}", doc_path.display()))?;
        let new = report::replace_region(
            &doc,
            &body,
            "## Side by side: chorus, rsync, Syncthing, Unison",
            "## Goals at a glance",
        );
        std::fs::write(&doc_path, new)
            .map_err(|e| format!("cannot write {}: {e}", doc_path.display()))?;
        eprintln!(
            "bench: wrote {} and {}",
            doc_path.display(),
            plots_dir.display()
        );
    } else {
        let out = opts.work.join("report.md");
        std::fs::write(&out, &body).map_err(|e| e.to_string())?;
        println!("{body}");
        eprintln!(
            "bench: report in {}, plots in {} (docs/benchmarks.md is written by a full run, or with --write-docs)",
            out.display(),
            plots_dir.display()
        );
    }
    Ok(())
}
