//! The scenarios of issue 8 (and the measured part of issue 6), each run for every tool in
//! the same run, several times, with bytes counted by nftables on loopback ports and time
//! taken from the change until the destination holds exactly the expected bytes.
//!
//! Two-party scenarios make changes in folder A and wait for folder B; a daemon's time starts
//! once the change is on disk, a one-shot tool's when its command starts. The three-node
//! latency scenario edits a follower and watches a third node.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::data::{self, Snapshot};
use super::nft::{self, Counters};
use super::results::Results;
use super::stats::percentile;
use super::tools::Tool;

/// What every scenario needs: where to work, how many runs, the tools.
pub struct Ctx {
    pub work: PathBuf,
    pub runs: usize,
    pub quick: bool,
    pub keep_failed: bool,
    pub tools: Vec<Box<dyn Tool>>,
    /// Tools that cannot run here, and why.
    pub unavailable: Vec<(String, String)>,
}

impl Ctx {
    fn data(&self) -> PathBuf {
        self.work.join("data")
    }
    fn scratch(&self, scenario: &str, tool: &str) -> PathBuf {
        let d = self
            .work
            .join("runs")
            .join(scenario)
            .join(tool.replace([' ', '/'], "_"));
        let _ = std::fs::remove_dir_all(&d);
        d
    }
    fn note_unavailable(&self, results: &mut Results, keys: &[(&str, &str)], scenario: &str) {
        for (tool, why) in &self.unavailable {
            for (key, title) in keys {
                results
                    .phase(key, title)
                    .row(tool)
                    .failures
                    .push(format!("not run: {why}"));
            }
            results
                .rss_row(scenario, tool)
                .failures
                .push(format!("not run: {why}"));
        }
    }
}

type Apply = Box<dyn Fn(&Path, &Path) -> Result<(), String>>;
type Stage = Box<dyn Fn(&Path) -> Result<(), String>>;

/// One change of a two-party scenario and what B must hold after it.
struct Phase {
    key: &'static str,
    title: String,
    /// Makes the change in A (the first argument), from the run's stage dir.
    apply: Apply,
    expect: Snapshot,
    /// Recorded in the report (otherwise it only sets the scene).
    measured: bool,
}

/// A two-party scenario.
struct Spec {
    scenario: &'static str,
    /// Fills a run's stage dir before the tool starts (untimed).
    stage: Stage,
    phases: Vec<Phase>,
    /// The longest a phase may take before the tool is declared stuck.
    limit: Duration,
    /// Only daemons (the 4 GiB RSS scenario is chorus only).
    only: Option<&'static str>,
}

fn log(msg: impl AsRef<str>) {
    eprintln!("bench: {}", msg.as_ref());
}

/// Polls until `dir` holds `expect`; the time from `t0` to the start of the successful poll.
fn wait_match(dir: &Path, expect: &Snapshot, t0: Instant, limit: Duration) -> Result<f64, String> {
    let poll = if expect.files.len() > 20_000 || expect.total_bytes() > 512 << 20 {
        Duration::from_millis(50)
    } else {
        Duration::from_millis(5)
    };
    loop {
        let at = Instant::now();
        if data::matches(dir, expect) {
            return Ok((at - t0).as_secs_f64());
        }
        if t0.elapsed() > limit {
            return Err(format!("did not finish within {} s", limit.as_secs()));
        }
        std::thread::sleep(poll);
    }
}

fn run_two_party(ctx: &Ctx, spec: &Spec, results: &mut Results) {
    let keys: Vec<(&str, &str)> = spec
        .phases
        .iter()
        .filter(|p| p.measured)
        .map(|p| (p.key, p.title.as_str()))
        .collect();
    for p in spec.phases.iter().filter(|p| p.measured) {
        results.phase(p.key, &p.title);
    }
    if spec.only.is_none() {
        ctx.note_unavailable(results, &keys, spec.scenario);
    }
    for run in 0..ctx.runs {
        for tool in &ctx.tools {
            let name = tool.name();
            if spec.only.is_some_and(|o| o != name) {
                continue;
            }
            log(format!(
                "{} run {}/{}: {name}",
                spec.scenario,
                run + 1,
                ctx.runs
            ));
            let dir = ctx.scratch(spec.scenario, &name);
            let (a, b, stage, tdir) = (
                dir.join("a"),
                dir.join("b"),
                dir.join("stage"),
                dir.join("tool"),
            );
            let made = [&a, &b, &stage, &tdir]
                .iter()
                .try_for_each(|d| std::fs::create_dir_all(d).map_err(|e| e.to_string()))
                .and_then(|()| (spec.stage)(&stage));
            let outcome = made
                .map_err(|e| ("setup".to_owned(), e))
                .and_then(|()| one_session(tool.as_ref(), spec, &a, &b, &stage, &tdir));
            match outcome {
                Ok((figures, rss)) => {
                    for (key, fwd, back, secs) in figures {
                        let title = spec
                            .phases
                            .iter()
                            .find(|p| p.key == key)
                            .map(|p| p.title.clone())
                            .unwrap_or_default();
                        let row = results.phase(key, &title).row(&name);
                        row.fwd.push(fwd as f64);
                        row.back.push(back as f64);
                        row.secs.push(secs);
                        log(format!(
                            "  {key}: {fwd} B forward, {back} B back, {secs:.3} s"
                        ));
                    }
                    results
                        .rss_row(spec.scenario, &name)
                        .values
                        .push(rss as f64);
                    log(format!("  peak RSS {:.1} MiB", rss as f64 / 1048576.0));
                }
                Err((phase, why)) => {
                    log(format!("  {name} failed in {phase}: {why}"));
                    if ctx.keep_failed {
                        log(format!("  kept {}", dir.display()));
                        continue;
                    }
                    for (key, title) in &keys {
                        results
                            .phase(key, title)
                            .row(&name)
                            .failures
                            .push(format!("run {}: {why} ({phase})", run + 1));
                    }
                    results
                        .rss_row(spec.scenario, &name)
                        .failures
                        .push(format!("run {}: {why}", run + 1));
                }
            }
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
}

type Figures = Vec<(&'static str, u64, u64, f64)>;

/// One tool through every phase of `spec`: the measured figures and the session's peak RSS, or
/// the phase that failed and why.
fn one_session(
    tool: &dyn Tool,
    spec: &Spec,
    a: &Path,
    b: &Path,
    stage: &Path,
    tdir: &Path,
) -> Result<(Figures, u64), (String, String)> {
    let mut session = tool
        .open(tdir, &[a.to_path_buf(), b.to_path_buf()])
        .map_err(|e| ("start".to_owned(), e))?;
    let ports = session.ports();
    let listening: Vec<u16> = ports.iter().flatten().copied().collect();
    let counters = match Counters::start(&listening) {
        Ok(c) => c,
        Err(e) => {
            session.close();
            return Err(("start".into(), e));
        }
    };
    let mut figures = Vec::new();
    for phase in &spec.phases {
        let step = (|| {
            let before = counters.read()?;
            (phase.apply)(a, stage)?;
            let t0 = Instant::now();
            session.sync()?;
            let secs = wait_match(b, &phase.expect, t0, spec.limit)?;
            session.settle();
            let after = counters.read()?;
            let (fwd, back) = nft::directions(&before, &after, ports[0], ports[1]);
            Ok::<_, String>((fwd, back, secs))
        })();
        match step {
            Ok((fwd, back, secs)) => {
                if phase.measured {
                    figures.push((phase.key, fwd, back, secs));
                }
            }
            Err(e) => {
                session.close();
                return Err((phase.key.to_owned(), e));
            }
        }
    }
    let rss = session.close();
    Ok((figures, rss))
}

/// Scenario 1: two releases of tokio, old then new, plus the diff floor.
pub fn update(ctx: &Ctx, results: &mut Results) -> Result<(), String> {
    let data = ctx.data().join("update");
    let (old, new) = (data.join("old"), data.join("new"));
    if !new.is_dir() {
        let o = data::registry_crate("tokio", "1.44.0", &ctx.work)?;
        let n = data::registry_crate("tokio", "1.45.0", &ctx.work)?;
        data::release_pair(&o, &n, &old, &new)?;
    }
    let (eo, en) = (data::snapshot(&old)?, data::snapshot(&new)?);
    let changed = en
        .files
        .iter()
        .filter(|(p, v)| eo.files.get(*p) != Some(v))
        .count()
        + eo.files
            .keys()
            .filter(|p| !en.files.contains_key(*p))
            .count();
    results.notes.push(format!(
        "Source-tree update: tokio 1.44.0 ({} files, {:.1} MB) to 1.45.0 ({} files, {:.1} MB), {changed} paths changed; unchanged files keep their mtime, changed ones are a day newer.",
        eo.files.len(),
        eo.total_bytes() as f64 / 1e6,
        en.files.len(),
        en.total_bytes() as f64 / 1e6
    ));
    // The floor: the unified diff, compressed.
    let diff = std::process::Command::new("diff")
        .arg("-ruN")
        .arg(&old)
        .arg(&new)
        .output()
        .map_err(|e| format!("cannot run diff: {e}"))?;
    let floor = zstd::encode_all(&diff.stdout[..], 19).map_err(|e| e.to_string())?;
    let title = "Source-tree update, tokio 1.44.0 → 1.45.0";
    let row = results
        .phase("update", title)
        .row("diff -ruN, zstd -19 (floor)");
    row.fwd.push(floor.len() as f64);

    let (o2, n2) = (old.clone(), new.clone());
    let spec = Spec {
        scenario: "update",
        stage: Box::new(move |stage| {
            data::copy_tree(&o2, &stage.join("old"))?;
            data::copy_tree(&n2, &stage.join("new"))
        }),
        phases: vec![
            Phase {
                key: "update-setup",
                title: "tokio 1.44.0 to an empty node".into(),
                apply: Box::new(|a, stage| data::move_into(&stage.join("old"), a)),
                expect: eo,
                measured: false,
            },
            Phase {
                key: "update",
                title: title.into(),
                apply: Box::new(|a, stage| {
                    let ok = std::process::Command::new("rsync")
                        // Leave what a tool keeps in the folder (Syncthing's marker) alone.
                        .args([
                            "-a",
                            "--delete",
                            "--exclude=/.stfolder",
                            "--exclude=/.chorus",
                        ])
                        .arg(format!("{}/", stage.join("new").display()))
                        .arg(format!("{}/", a.display()))
                        .status()
                        .is_ok_and(|s| s.success());
                    if ok {
                        Ok(())
                    } else {
                        Err("local rsync of the new release failed".into())
                    }
                }),
                expect: en,
                measured: true,
            },
        ],
        limit: Duration::from_secs(120),
        only: None,
    };
    run_two_party(ctx, &spec, results);
    Ok(())
}

/// Scenario 3a: a ~50 MB, ~5k-file source tree to an empty node.
pub fn initial_tree(ctx: &Ctx, results: &mut Results) -> Result<(), String> {
    let (bytes, files) = if ctx.quick {
        (10_000_000, 1_000)
    } else {
        (50_000_000, 5_000)
    };
    let tree = ctx.data().join(format!("tree-{bytes}"));
    if !tree.is_dir() {
        let tmp = ctx.data().join("tree-partial");
        let _ = std::fs::remove_dir_all(&tmp);
        data::source_tree(&tmp, bytes, files)?;
        std::fs::rename(&tmp, &tree).map_err(|e| e.to_string())?;
    }
    let expect = data::snapshot(&tree)?;
    let title = format!(
        "Initial sync of a source tree ({} files, {:.1} MB) to an empty node",
        expect.files.len(),
        expect.total_bytes() as f64 / 1e6
    );
    results.notes.push(format!("{title}: whole crates copied from the cargo registry in name order until ~{} MB or {files} files.", bytes / 1_000_000));
    let t2 = tree.clone();
    let spec = Spec {
        scenario: "initial-tree",
        stage: Box::new(move |stage| data::copy_tree(&t2, stage)),
        phases: vec![Phase {
            key: "initial-tree",
            title,
            apply: Box::new(|a, stage| data::move_into(stage, a)),
            expect,
            measured: true,
        }],
        limit: Duration::from_secs(600),
        only: None,
    };
    run_two_party(ctx, &spec, results);
    Ok(())
}

fn big_file(ctx: &Ctx, size: u64, seed: u64) -> Result<(PathBuf, Snapshot), String> {
    let dir = ctx.data().join(format!("big-{size}"));
    let file = dir.join("big.bin");
    if !file.is_file() || std::fs::metadata(&file).map(|m| m.len()).ok() != Some(size) {
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        log(format!("writing a {} MiB file", size >> 20));
        data::random_file(&file, size, seed)?;
    }
    let snap = data::snapshot(&dir)?;
    Ok((dir, snap))
}

fn size_label(size: u64) -> String {
    if size >= 1 << 30 {
        format!("{} GiB", size >> 30)
    } else {
        format!("{} MiB", size >> 20)
    }
}

/// Scenarios 3b and 4: a 1 GiB file to an empty node, then a one-line insertion in it.
pub fn big(ctx: &Ctx, results: &mut Results) -> Result<(), String> {
    let size = if ctx.quick { 64 << 20 } else { 1 << 30 };
    let (dir, snap) = big_file(ctx, size, 1)?;
    const LINE: &[u8] = b"one line inserted by the benchmark\n";
    let (len, hash) = data::hash_with_inserted(&dir.join("big.bin"), LINE)?;
    let mut edited = snap.clone();
    edited.files.insert(PathBuf::from("big.bin"), (len, hash));
    let label = size_label(size);
    let d2 = dir.clone();
    let spec = Spec {
        scenario: "big-file",
        stage: Box::new(move |stage| data::copy_tree(&d2, stage)),
        phases: vec![
            Phase {
                key: "big-initial",
                title: format!("Initial sync of one {label} file (pseudo-random bytes)"),
                apply: Box::new(|a, stage| data::move_into(stage, a)),
                expect: snap,
                measured: true,
            },
            Phase {
                key: "big-edit",
                title: format!(
                    "A one-line insertion ({} bytes) in the middle of the {label} file",
                    LINE.len()
                ),
                apply: Box::new(|a, _| data::insert_line(&a.join("big.bin"), LINE)),
                expect: edited,
                measured: true,
            },
        ],
        limit: Duration::from_secs(600),
        only: None,
    };
    run_two_party(ctx, &spec, results);
    Ok(())
}

/// Scenario 5 (chorus only): peak RSS while syncing a 4 GiB file.
pub fn huge(ctx: &Ctx, results: &mut Results) -> Result<(), String> {
    let size = if ctx.quick { 256 << 20 } else { 4 << 30 };
    let (dir, snap) = big_file(ctx, size, 4)?;
    let d2 = dir.clone();
    let spec = Spec {
        scenario: "huge-file",
        stage: Box::new(move |stage| data::copy_tree(&d2, stage)),
        phases: vec![Phase {
            key: "huge-initial",
            title: format!(
                "Initial sync of one {} file (chorus only, for its memory)",
                size_label(size)
            ),
            apply: Box::new(|a, stage| data::move_into(stage, a)),
            expect: snap,
            measured: true,
        }],
        limit: Duration::from_secs(900),
        only: Some("chorus"),
    };
    run_two_party(ctx, &spec, results);
    // The pristine file is not needed again in this run.
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// Scenario 6: 100k small files to an empty node, then one appended line in that tree (which
/// each tool finds by its watcher or by rescanning).
pub fn scale(ctx: &Ctx, results: &mut Results) -> Result<(), String> {
    let count = if ctx.quick { 5_000 } else { 100_000 };
    let tree = ctx.data().join(format!("small-{count}"));
    if !tree.is_dir() {
        let tmp = ctx.data().join("small-partial");
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(&tmp).map_err(|e| e.to_string())?;
        data::small_files(&tmp, count, 6)?;
        std::fs::rename(&tmp, &tree).map_err(|e| e.to_string())?;
    }
    let expect = data::snapshot(&tree)?;
    let target = PathBuf::from(format!("d{:03}/f{:06}.txt", count / 2000, count / 2));
    let mut changed = expect.clone();
    const LINE: &[u8] = b"one line appended by the benchmark\n";
    {
        let mut bytes = std::fs::read(tree.join(&target)).map_err(|e| e.to_string())?;
        bytes.extend_from_slice(LINE);
        changed.files.insert(
            target.clone(),
            (bytes.len() as u64, *blake3::hash(&bytes).as_bytes()),
        );
    }
    let t2 = tree.clone();
    let spec = Spec {
        scenario: "scale",
        stage: Box::new(move |stage| data::copy_tree(&t2, stage)),
        phases: vec![
            Phase {
                key: "scale-initial",
                title: format!(
                    "Initial sync of {count} small files ({:.1} MB)",
                    expect.total_bytes() as f64 / 1e6
                ),
                apply: Box::new(|a, stage| data::move_into(stage, a)),
                expect,
                measured: true,
            },
            Phase {
                key: "scale-change",
                title: format!("One line appended to one of the {count} files (watcher or rescan)"),
                apply: Box::new(move |a, _| {
                    use std::io::Write;
                    std::fs::OpenOptions::new()
                        .append(true)
                        .open(a.join(&target))
                        .and_then(|mut f| f.write_all(LINE))
                        .map_err(|e| e.to_string())
                }),
                expect: changed,
                measured: true,
            },
        ],
        limit: Duration::from_secs(900),
        only: None,
    };
    run_two_party(ctx, &spec, results);
    Ok(())
}

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
                        "  p50 {p50:.0} ms, p99 {p99:.0} ms, idle {:.1} MiB, {:.0} B/s",
                        m.idle_rss as f64 / 1048576.0,
                        m.idle_bps
                    ));
                    row.p50_ms.push(p50);
                    row.p99_ms.push(p99);
                    row.samples_ms.extend(m.samples);
                    row.idle_rss.push(m.idle_rss as f64);
                    row.idle_bps.push(m.idle_bps);
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
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
    for tool in ctx.tools.iter().filter(|t| !t.is_daemon()) {
        results.latency_row(&tool.name()).failures.push(
            "not a daemon: it syncs only when run, so there is no edit-to-visible latency".into(),
        );
    }
    Ok(())
}

struct LatencyRun {
    samples: Vec<f64>,
    idle_rss: u64,
    idle_bps: f64,
    peak: u64,
}

fn latency_session(tool: &dyn Tool, dir: &Path, edits: usize) -> Result<LatencyRun, String> {
    let folders: Vec<PathBuf> = (0..3).map(|i| dir.join(format!("n{i}"))).collect();
    for f in &folders {
        std::fs::create_dir_all(f).map_err(|e| e.to_string())?;
    }
    std::fs::create_dir_all(dir.join("tool")).map_err(|e| e.to_string())?;
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
        let before = counters.read()?;
        std::thread::sleep(Duration::from_secs(3));
        let idle_bps = nft::total(&before, &counters.read()?) as f64 / 3.0;
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
        Ok((samples, idle_rss, idle_bps))
    })();
    let peak = session.close();
    let (samples, idle_rss, idle_bps) = result?;
    Ok(LatencyRun {
        samples,
        idle_rss,
        idle_bps,
        peak,
    })
}
