//! The machinery of two-party scenarios: a run context, phases (a change made in folder A and
//! what folder B must then hold), and the loop that takes every tool through every phase,
//! counting bytes with nftables, timing until B holds the expected bytes, and recording the
//! session's peak RSS. A daemon's time starts once the change is on disk, a one-shot tool's
//! when its command starts.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::data::{self, Snapshot};
use super::nft::{self, Counters};
use super::results::Results;
use super::tools::Tool;

/// What every scenario needs: where to work, how many runs, the tools.
pub struct Ctx {
    pub work: PathBuf,
    pub runs: usize,
    pub quick: bool,
    pub keep_failed: bool,
    /// Runs of the long scenarios (100k files, the 4 GiB file).
    pub long_runs: usize,
    pub tools: Vec<Box<dyn Tool>>,
    /// Tools that cannot run here, and why.
    pub unavailable: Vec<(String, String)>,
}

impl Ctx {
    pub fn data(&self) -> PathBuf {
        self.work.join("data")
    }
    pub fn scratch(&self, scenario: &str, tool: &str) -> PathBuf {
        let d = self
            .work
            .join("runs")
            .join(scenario)
            .join(tool.replace([' ', '/'], "_"));
        self.discard(&d);
        d
    }

    /// Moves a run's directory out of the way, to be deleted when the bench ends
    /// ([`empty_trash`](Self::empty_trash)): deleting 100k files right before the next tool
    /// creates 100k makes ext4's inode allocator scan its recently deleted inodes, and that
    /// tool pays for the one before (a run measured rsync at 12.2 s against 3.9 s so).
    pub fn discard(&self, d: &std::path::Path) {
        if !d.exists() {
            return;
        }
        let trash = self.work.join("trash");
        let _ = std::fs::create_dir_all(&trash);
        let to = trash.join(format!(
            "{}-{}",
            std::process::id(),
            TRASHED.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        if std::fs::rename(d, &to).is_err() {
            let _ = std::fs::remove_dir_all(d);
        }
    }

    /// Deletes what the runs left (see [`discard`](Self::discard)), and notes when, so that
    /// a bench started right after this one waits before its first run
    /// ([`settle_deletions`](Self::settle_deletions)).
    pub fn empty_trash(&self) {
        let trash = self.work.join("trash");
        if trash.exists() {
            let _ = std::fs::remove_dir_all(&trash);
            // Written back, the freed inodes count as recent for a minute, not six.
            let _ = std::process::Command::new("sync").status();
            let _ = std::fs::write(self.work.join(DELETED_STAMP), unix_now().to_string());
        }
    }

    /// Waits until [`DELETIONS_SETTLE`] has passed since a bench last emptied its trash in
    /// this work dir: ext4's inode allocator (on a file system without a journal, as the
    /// development machine's is) passes over inodes freed in the last minute,
    /// reading their inode-table blocks, and a tool that creates 100k files right after 200k
    /// were deleted pays for it (a 100k-file sync of 23–38 s against 11–13 s on a quiet file
    /// system, whichever tool came first after the last bench's deletions).
    pub fn settle_deletions(&self) {
        let Some(at) = std::fs::read_to_string(self.work.join(DELETED_STAMP))
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
        else {
            return;
        };
        let left = (at + DELETIONS_SETTLE.as_secs()).saturating_sub(unix_now());
        if left > 0 {
            log(format!(
                "  waiting {left} s: a bench deleted its runs here {} s ago",
                unix_now().saturating_sub(at)
            ));
            std::thread::sleep(Duration::from_secs(left));
        }
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

pub type Apply = Box<dyn Fn(&Path, &Path) -> Result<(), String>>;
pub type Stage = Box<dyn Fn(&Path) -> Result<(), String>>;

/// One change of a two-party scenario and what B must hold after it.
pub struct Phase {
    pub key: &'static str,
    pub title: String,
    /// Makes the change in A (the first argument), from the run's stage dir.
    pub apply: Apply,
    pub expect: Snapshot,
    /// Recorded in the report (otherwise it only sets the scene).
    pub measured: bool,
}

/// A two-party scenario.
pub struct Spec {
    pub scenario: &'static str,
    /// Fills a run's stage dir before the tool starts (untimed).
    pub stage: Stage,
    pub phases: Vec<Phase>,
    /// The longest a phase may take before the tool is declared stuck.
    pub limit: Duration,
    /// Only daemons (the 4 GiB RSS scenario is chorus only).
    pub only: Option<&'static str>,
    /// Runs per tool when not the context's (the 100k-file scenario, for the time budget).
    pub runs: Option<usize>,
}

pub fn log(msg: impl AsRef<str>) {
    eprintln!("bench: {}", msg.as_ref());
}

/// The most paths a phase may change and still be timed by watching those paths alone.
const FOCUS_MAX: usize = 64;

/// How often a watched file of the right size but the wrong bytes is hashed again though it
/// looks the same.
const REHASH: Duration = Duration::from_millis(100);

/// A phase's bytes are read once the tool's ports have carried nothing for this long (its
/// last acknowledgements, a closing connection, an index sent after it says it is idle)...
const QUIET: Duration = Duration::from_millis(300);
/// ...or after this, for a tool whose control traffic never pauses that long.
const QUIET_MAX: Duration = Duration::from_secs(2);

/// What one watched path looked like at a poll: its inode, size and times (`None`: absent).
type Look = Option<(u64, u64, u64, i64, i64, i64, i64)>;

fn look(path: &Path) -> Look {
    use std::os::unix::fs::MetadataExt;
    std::fs::symlink_metadata(path).ok().map(|m| {
        (
            m.dev(),
            m.ino(),
            m.size(),
            m.mtime(),
            m.mtime_nsec(),
            m.ctime(),
            m.ctime_nsec(),
        )
    })
}

/// One path the phase changed, as watched.
struct Watched {
    path: PathBuf,
    /// Its size and hash afterwards; `None` when the phase removes it.
    want: Option<(u64, [u8; 32])>,
    look: Look,
    /// When the poll first saw `look`.
    since: Instant,
    /// Whether what `look` names holds `want` (`None`: not checked yet).
    right: Option<bool>,
    /// When it was last hashed.
    hashed: Instant,
}

/// Times a phase that changed few paths since `before`: those paths alone are looked at every
/// 5 ms (metadata; a file is hashed only when it looks different and has the expected size, or
/// again every [`REHASH`] while it has that size and is wrong, for a writer that rewrites a file
/// in place within one timestamp tick). The time is when a look first saw the last of them as
/// it is now, exact to a poll for a file replaced by a rename at any size. The whole tree is
/// left for the caller to check (the flag: false) once it has read the bytes; a tree that is
/// not right then (a tool that writes in a different order) is timed by [`wait_match`] from
/// there on. With no paths to watch, or too many, the whole tree is waited for here (true).
fn wait_focused(
    dir: &Path,
    before: &Snapshot,
    expect: &Snapshot,
    t0: Instant,
    limit: Duration,
) -> Result<(f64, bool), String> {
    let mut watched: Vec<Watched> = expect
        .files
        .iter()
        .filter(|(p, v)| before.files.get(*p) != Some(*v))
        .map(|(p, v)| (p.clone(), Some(*v)))
        .chain(
            before
                .files
                .keys()
                .filter(|p| !expect.files.contains_key(*p))
                .map(|p| (p.clone(), None)),
        )
        .map(|(p, want)| Watched {
            path: dir.join(p),
            want,
            look: None,
            since: t0,
            right: None,
            hashed: t0,
        })
        .collect();
    if watched.is_empty() || watched.len() > FOCUS_MAX {
        return Ok((wait_match(dir, expect, t0, limit)?, true));
    }
    let mut first = true;
    loop {
        let at = Instant::now();
        for w in &mut watched {
            let seen = Instant::now();
            let now = look(&w.path);
            if first || now != w.look {
                w.look = now;
                w.since = seen;
                w.right = None;
            } else if w.right == Some(false)
                && w.want
                    .is_some_and(|(len, _)| now.is_some_and(|l| l.2 == len))
                && seen - w.hashed >= REHASH
            {
                // Same look, maybe new bytes: right from this look on if so.
                w.since = seen;
                w.right = None;
            }
            if w.right.is_none() {
                w.right = match (w.want, w.look) {
                    (None, l) => Some(l.is_none()),
                    (Some(_), None) => Some(false),
                    (Some((len, _)), Some(l)) if l.2 != len => Some(false),
                    (Some((_, hash)), Some(_)) => {
                        w.hashed = Instant::now();
                        let h = data::hash_file(&w.path).ok();
                        // Checked only if it did not change while being read.
                        (look(&w.path) == w.look).then_some(h == Some(hash))
                    }
                };
            }
        }
        first = false;
        if watched.iter().all(|w| w.right == Some(true)) {
            let last = watched.iter().map(|w| w.since).max().unwrap_or(at);
            return Ok(((last - t0).as_secs_f64(), false));
        }
        if t0.elapsed() > limit {
            return Err(format!("did not finish within {} s", limit.as_secs()));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Polls until `dir` holds `expect`; the time from `t0` to the start of the successful poll.
/// A poll walks the whole tree, so the pause between polls is four times the last walk (at
/// least 5 ms): the benchmark then takes at most a fifth of one core from the tools, and the
/// time is exact to within one pause (about a second for 100k files, several for a 1 GiB
/// file). A phase that changes a few paths is timed by [`wait_focused`] instead.
fn wait_match(dir: &Path, expect: &Snapshot, t0: Instant, limit: Duration) -> Result<f64, String> {
    loop {
        let at = Instant::now();
        if data::matches(dir, expect) {
            return Ok((at - t0).as_secs_f64());
        }
        if t0.elapsed() > limit {
            return Err(format!("did not finish within {} s", limit.as_secs()));
        }
        std::thread::sleep((at.elapsed() * 4).max(Duration::from_millis(5)));
    }
}

pub fn run_two_party(ctx: &Ctx, spec: &Spec, results: &mut Results) {
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
    let runs = spec.runs.unwrap_or(ctx.runs);
    for run in 0..runs {
        for tool in &ctx.tools {
            let name = tool.name();
            if spec.only.is_some_and(|o| o != name) || !tool.runs_in(spec.scenario) {
                continue;
            }
            log(format!("{} run {}/{runs}: {name}", spec.scenario, run + 1));
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
            ctx.settle_deletions();
            quiet_disk();
            let outcome = match made {
                Ok(()) => one_session(tool.as_ref(), spec, &a, &b, &stage, &tdir),
                Err(e) => Outcome {
                    figures: Vec::new(),
                    rss: None,
                    failed: Some(("setup".into(), e)),
                },
            };
            for (key, fwd, back, secs) in &outcome.figures {
                let title = spec
                    .phases
                    .iter()
                    .find(|p| p.key == *key)
                    .map(|p| p.title.clone())
                    .unwrap_or_default();
                let row = results.phase(key, &title).row(&name);
                row.fwd.push(*fwd as f64);
                row.back.push(*back as f64);
                row.secs.push(*secs);
                log(format!(
                    "  {key}: {fwd} B forward, {back} B back, {secs:.3} s"
                ));
            }
            let rss_row = results.rss_row(spec.scenario, &name);
            if let Some(rss) = outcome.rss {
                // After a failure, the peak up to then still tells how much memory it took.
                rss_row.values.push(rss as f64);
                log(format!("  peak RSS {:.1} MiB", rss as f64 / 1048576.0));
            }
            if let Some((phase, why)) = &outcome.failed {
                log(format!("  {name} failed in {phase}: {why}"));
                rss_row.failures.push(match outcome.rss {
                    Some(_) => format!("run {}: peak until it stopped: {why} ({phase})", run + 1),
                    None => format!("run {}: {why} ({phase})", run + 1),
                });
                for (key, title) in &keys {
                    if !outcome.figures.iter().any(|f| f.0 == *key) {
                        results
                            .phase(key, title)
                            .row(&name)
                            .failures
                            .push(format!("run {}: {why} ({phase})", run + 1));
                    }
                }
                if ctx.keep_failed {
                    log(format!("  kept {}", dir.display()));
                    continue;
                }
            }
            ctx.discard(&dir);
        }
    }
}

/// The file in the work dir that says when a bench last emptied its trash (Unix seconds).
const DELETED_STAMP: &str = "trash-emptied";

/// How long after a bench's deletions (written back at once) the next one's first run waits:
/// ext4 counts an inode as recently deleted for a minute after it was freed once its
/// inode-table block is clean (six while it is dirty), plus room.
const DELETIONS_SETTLE: Duration = Duration::from_secs(70);

/// Seconds since the Unix epoch.
fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Most dirty and writeback memory left when a tool starts.
const QUIET_BYTES: u64 = 64 << 20;

/// Writes back what the staging and the runs before left dirty, and waits (up to a minute)
/// until the kernel holds under [`QUIET_BYTES`] of it, untimed, so that a tool that fsyncs
/// (chorus, Syncthing) never starts behind another's writes while one that does not (rsync)
/// is unaffected. (On the development machine the disk was already quiet before every run;
/// chorus' 1 GiB runs varied as much with this as without it.)
fn quiet_disk() {
    let start = Instant::now();
    let _ = std::process::Command::new("sync").status();
    while start.elapsed() < Duration::from_secs(60) && dirty_bytes() > QUIET_BYTES {
        std::thread::sleep(Duration::from_millis(100));
    }
    log(format!(
        "  disk quiet after {:.1} s ({} MiB dirty)",
        start.elapsed().as_secs_f64(),
        dirty_bytes() >> 20
    ));
}

/// Dirty and writeback memory, from `/proc/meminfo` (0 where it cannot be read).
fn dirty_bytes() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .map(|m| {
            m.lines()
                .filter(|l| l.starts_with("Dirty:") || l.starts_with("Writeback:"))
                .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
                .sum::<u64>()
                * 1024
        })
        .unwrap_or(0)
}

/// Directories discarded so far by this process (their names in the trash).
static TRASHED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

type Figures = Vec<(&'static str, u64, u64, f64)>;

/// What one session of a tool gave: the figures of the phases it finished, its peak RSS (when
/// it started), and the phase that failed and why.
struct Outcome {
    figures: Figures,
    rss: Option<u64>,
    failed: Option<(String, String)>,
}

/// One tool through every phase of `spec`, stopping at the first phase that fails.
fn one_session(
    tool: &dyn Tool,
    spec: &Spec,
    a: &Path,
    b: &Path,
    stage: &Path,
    tdir: &Path,
) -> Outcome {
    let mut session = match tool.open(tdir, &[a.to_path_buf(), b.to_path_buf()]) {
        Ok(s) => s,
        Err(e) => {
            return Outcome {
                figures: Vec::new(),
                rss: None,
                failed: Some(("start".into(), e)),
            };
        }
    };
    let ports = session.ports();
    let listening: Vec<u16> = ports.iter().flatten().copied().collect();
    let counters = match Counters::start(&listening) {
        Ok(c) => c,
        Err(e) => {
            return Outcome {
                figures: Vec::new(),
                rss: Some(session.close()),
                failed: Some(("start".into(), e)),
            };
        }
    };
    let mut figures = Vec::new();
    let mut held: Option<&Snapshot> = None;
    for phase in &spec.phases {
        let step = (|| {
            let before = counters.read()?;
            (phase.apply)(a, stage)?;
            let t0 = Instant::now();
            session.sync()?;
            let (mut secs, whole) = match held {
                Some(held) => wait_focused(b, held, &phase.expect, t0, spec.limit)?,
                None => (wait_match(b, &phase.expect, t0, spec.limit)?, true),
            };
            session.settle();
            let mut after = counters.read_quiet(QUIET, QUIET_MAX)?;
            // The whole tree is checked after the bytes are read, so that the counted window
            // ends when the tool is done and its connections are quiet, not a walk of the
            // benchmark's later (hashing 100k files takes ~2.7 s, long enough to take in a
            // heartbeat or a ping by chance). A tree not right yet is waited for, and
            // counted, to the end (its time is then that of the first whole-tree poll that
            // finds it right, which starts once the tool has settled and its ports are quiet:
            // up to 2 s later than the tree was right, on this rare path).
            if !whole && !data::matches(b, &phase.expect) {
                secs = wait_match(b, &phase.expect, t0, spec.limit)?;
                session.settle();
                after = counters.read_quiet(QUIET, QUIET_MAX)?;
            }
            let (fwd, back) = nft::directions(&before, &after, ports[0], ports[1]);
            Ok::<_, String>((fwd, back, secs))
        })();
        held = Some(&phase.expect);
        match step {
            Ok((fwd, back, secs)) => {
                if phase.measured {
                    figures.push((phase.key, fwd, back, secs));
                }
            }
            Err(e) => {
                return Outcome {
                    figures,
                    rss: Some(session.close()),
                    failed: Some((phase.key.to_owned(), e)),
                };
            }
        }
    }
    Outcome {
        figures,
        rss: Some(session.close()),
        failed: None,
    }
}
