//! A group of real `chorus` processes formed exactly as README.md's Quickstart forms one:
//! `chorus init PATH`, `chorus run PATH`, `chorus invite --folder PATH` (its whole stdout is
//! the token), `chorus join TOKEN PATH`, `chorus run PATH`; no test-only options, no log
//! filter unless a test sets one. Each daemon's stdout and stderr go to a log file, printed
//! when a test fails.
//!
//! Waits are liveness bounds (a stuck group fails the test), never speed assertions.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Output, Stdio};
use std::time::{Duration, Instant};

use super::procs::chorus;

/// How long anything may take before the test fails.
pub const LIVENESS: Duration = Duration::from_secs(90);

/// One machine: its share, its daemon, its log.
pub struct Node {
    pub path: PathBuf,
    pub log: PathBuf,
    pub child: Option<Child>,
    /// Environment for its daemon (e.g. `RUST_LOG`), on top of a cleared log filter.
    pub env: Vec<(String, String)>,
    /// Options for `chorus run` after PATH (none when formed the README's way).
    pub args: Vec<String>,
    /// A hard limit on its open files (`ulimit -Hn`), as a small machine would have.
    pub nofile: Option<u64>,
}

/// The text the conflict scenarios start from (`Group::with_plan`).
pub const PLAN: &str =
    "title: the plan\nwho: alice\nwhere: the office\nwhen: monday\nwhat: kickoff\n";

pub struct Group {
    pub root: tempfile::TempDir,
    pub nodes: Vec<Node>,
}

impl Drop for Group {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            self.kill(i);
        }
        if std::thread::panicking() {
            for n in &self.nodes {
                eprintln!(
                    "==== {} ====\n{}",
                    n.log.display(),
                    std::fs::read_to_string(&n.log).unwrap_or_default()
                );
            }
        }
    }
}

/// `chorus ARGS` run to completion in `dir` (or here), with no log filter set.
pub fn cli_in(dir: Option<&Path>, args: &[&str]) -> Output {
    let mut cmd = chorus();
    cmd.args(args)
        .env_remove("RUST_LOG")
        .env_remove("CHORUS_LOG");
    if let Some(d) = dir {
        cmd.current_dir(d);
    }
    cmd.output().expect("run chorus")
}

/// `chorus ARGS`, which must succeed: its stdout.
pub fn ok_in(dir: Option<&Path>, args: &[&str]) -> String {
    let out = cli_in(dir, args);
    assert!(
        out.status.success(),
        "chorus {args:?} failed:\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("stdout is UTF-8")
}

pub fn ok(args: &[&str]) -> String {
    ok_in(None, args)
}

/// The text of the file at `p`, if it can be read.
pub fn read(p: &Path) -> Option<String> {
    std::fs::read_to_string(p).ok()
}

/// Waits until `cond` holds, failing the test after [`LIVENESS`].
pub fn wait_until(what: &str, cond: impl FnMut() -> bool) {
    wait_until_telling(what, cond, String::new);
}

/// [`wait_until`], the failure saying also what `state` tells then (what the folder holds, what
/// a daemon says), so a timeout shows how far things got.
pub fn wait_until_telling(what: &str, mut cond: impl FnMut() -> bool, state: impl Fn() -> String) {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < LIVENESS,
            "timed out waiting for {what}{}",
            Some(state())
                .filter(|s| !s.is_empty())
                .map_or(String::new(), |s| format!("; {s}"))
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

impl Group {
    pub fn new() -> Group {
        Group {
            root: tempfile::tempdir().expect("a temp dir"),
            nodes: Vec::new(),
        }
    }

    /// A path in the group's temp dir.
    pub fn at(&self, name: &str) -> PathBuf {
        self.root.path().join(name)
    }

    /// `chorus init PATH` (a folder name, or a file that exists), and its daemon started.
    pub fn init(&mut self, path: PathBuf) -> usize {
        ok(&["init", path.to_str().unwrap()]);
        self.start(path, Vec::new())
    }

    /// `chorus join TOKEN PATH` with a token from node `via`, and its daemon started.
    pub fn join(&mut self, via: usize, path: PathBuf) -> usize {
        self.join_with(via, path, Vec::new())
    }

    /// As [`Group::join`], its daemon run with `env`.
    pub fn join_with(&mut self, via: usize, path: PathBuf, env: Vec<(String, String)>) -> usize {
        let token = self.invite(via);
        ok(&["join", &token, path.to_str().unwrap()]);
        self.start(path, env)
    }

    /// `chorus invite --folder PATH`: all of its stdout is the token.
    pub fn invite(&self, via: usize) -> String {
        let out = ok(&["invite", "--folder", self.path(via)]);
        let token = out.trim_end_matches('\n');
        assert!(
            token.starts_with("chorus1") && !token.contains(char::is_whitespace),
            "`chorus invite` printed more than the token on stdout: {out:?}"
        );
        token.to_owned()
    }

    /// Adds a node for `path` and starts its daemon with `env`.
    pub fn start(&mut self, path: PathBuf, env: Vec<(String, String)>) -> usize {
        self.start_with(path, env, &[])
    }

    /// Adds a node for `path` and starts its daemon with `env` and `chorus run PATH ARGS`.
    pub fn start_with(
        &mut self,
        path: PathBuf,
        env: Vec<(String, String)>,
        args: &[&str],
    ) -> usize {
        let log = self.at(&format!("log{}.txt", self.nodes.len()));
        self.nodes.push(Node {
            path,
            log,
            child: None,
            env,
            args: args.iter().map(|a| (*a).to_owned()).collect(),
            nofile: None,
        });
        let i = self.nodes.len() - 1;
        self.restart(i);
        i
    }

    /// `chorus run PATH`, logging to the node's log file; waits until its socket answers.
    pub fn restart(&mut self, i: usize) {
        // A daemon still running is stopped first (a second one would be refused).
        self.stop(i);
        let n = &mut self.nodes[i];
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&n.log)
            .unwrap();
        let mut cmd = chorus();
        cmd.arg("run")
            .arg(&n.path)
            .args(&n.args)
            .env_remove("RUST_LOG")
            .env_remove("CHORUS_LOG")
            .envs(n.env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::from(file.try_clone().unwrap()))
            .stderr(Stdio::from(file));
        if let Some(limit) = n.nofile {
            use std::os::unix::process::CommandExt;
            let l = libc::rlimit {
                rlim_cur: limit as libc::rlim_t,
                rlim_max: limit as libc::rlim_t,
            };
            // SAFETY: setrlimit is async-signal-safe and touches only the child.
            unsafe {
                cmd.pre_exec(move || {
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &l) == 0 {
                        Ok(())
                    } else {
                        Err(std::io::Error::last_os_error())
                    }
                });
            }
        }
        n.child = Some(cmd.spawn().expect("start chorus run"));
        let p = n.path.to_str().unwrap().to_owned();
        wait_until("the daemon's socket", || {
            cli_in(None, &["status", "--folder", &p]).status.success()
        });
    }

    /// Stops node `i` with SIGTERM (a clean stop), or SIGKILL if it does not stop.
    pub fn stop(&mut self, i: usize) {
        if let Some(mut c) = self.nodes[i].child.take() {
            sigterm(c.id());
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(10) {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// True while node `i`'s daemon runs: one that exited by itself (not stopped or killed
    /// by the test) is a failure.
    pub fn running(&mut self, i: usize) -> bool {
        self.nodes[i]
            .child
            .as_mut()
            .is_some_and(|c| c.try_wait().unwrap().is_none())
    }

    /// Sets `key = value` in node `i`'s config.toml (the key must be there: `chorus init` and
    /// `chorus join` write every key); takes effect at the daemon's next start.
    pub fn set_config(&self, i: usize, key: &str, value: &str) {
        let path = self.file(i, ".chorus/config.toml");
        let text = std::fs::read_to_string(&path).unwrap();
        let mut found = false;
        let text: String = text
            .lines()
            .map(|l| {
                if l.split('=').next().map(str::trim) == Some(key) {
                    found = true;
                    format!("{key} = {value}\n")
                } else {
                    format!("{l}\n")
                }
            })
            .collect();
        assert!(found, "{key} is not in {}", path.display());
        std::fs::write(&path, text).unwrap();
    }

    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.nodes[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn path(&self, i: usize) -> &str {
        self.nodes[i].path.to_str().unwrap()
    }

    pub fn file(&self, i: usize, rel: &str) -> PathBuf {
        self.nodes[i].path.join(rel)
    }

    /// `chorus ARGS --folder NODE`, which must succeed: its stdout.
    pub fn ask(&self, i: usize, args: &[&str]) -> String {
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["--folder", self.path(i)]);
        ok(&all)
    }

    pub fn status(&self, i: usize) -> serde_json::Value {
        serde_json::from_str(&self.ask(i, &["status", "--json"])).expect("status is JSON")
    }

    /// No node holds anything at `rel`.
    pub fn wait_missing_everywhere(&self, rel: &str) {
        for i in 0..self.nodes.len() {
            let f = self.file(i, rel);
            wait_until(&format!("{rel} gone on node {i}"), || !f.exists());
        }
    }

    /// Every node holds `bytes` at `rel`.
    pub fn wait_everywhere(&self, rel: &str, bytes: &[u8]) {
        for i in 0..self.nodes.len() {
            let f = self.file(i, rel);
            wait_until(&format!("{rel} on node {i}"), || {
                std::fs::read(&f).is_ok_and(|b| b == bytes)
            });
        }
    }

    /// Every node settled on one head, for a second running.
    pub fn wait_converged(&self) {
        let mut since: Option<Instant> = None;
        wait_until("one settled head everywhere", || {
            let s: Vec<_> = (0..self.nodes.len()).map(|i| self.status(i)).collect();
            let same = s
                .iter()
                .all(|x| x["settled"] == true && x["head"] == s[0]["head"]);
            match (same, since) {
                (false, _) => since = None,
                (true, None) => since = Some(Instant::now()),
                (true, Some(_)) => {}
            }
            since.is_some_and(|t| t.elapsed() >= Duration::from_secs(1))
        });
    }

    /// The conflict scenarios' start: `a` initialised, `b` joined with its invite, both
    /// holding [`PLAN`] as `notes.txt` and 100 zero bytes as `data.bin`.
    pub fn with_plan() -> (Group, usize, usize) {
        let mut g = Group::new();
        let a = g.init(g.at("a"));
        let b = g.join(a, g.at("b"));
        std::fs::write(g.file(a, "notes.txt"), PLAN).unwrap();
        std::fs::write(g.file(a, "data.bin"), [0u8; 100]).unwrap();
        g.wait_everywhere("notes.txt", PLAN.as_bytes());
        g.wait_everywhere("data.bin", &[0u8; 100]);
        g.wait_converged();
        (g, a, b)
    }

    /// Concurrent edits, the way a user makes them with one machine offline: node `b` is
    /// paused (`chorus pause`), `ours` are written on `a` and accepted, then `theirs` on `b`.
    /// The caller resumes `b` (`chorus resume`), and the merge happens then.
    pub fn concurrent_edits(
        &self,
        a: usize,
        b: usize,
        ours: &[(&str, &[u8])],
        theirs: &[(&str, &[u8])],
    ) {
        self.ask(b, &["pause"]);
        let head = self.head(a);
        for (rel, bytes) in ours {
            std::fs::write(self.file(a, rel), bytes).unwrap();
        }
        wait_until("a's edit accepted", || {
            let s = self.status(a);
            s["head"]["number"] != head.as_str() && s["settled"] == true
        });
        for (rel, bytes) in theirs {
            std::fs::write(self.file(b, rel), bytes).unwrap();
        }
    }

    /// The head's number on node `i`, as `chorus log` shows it.
    pub fn head(&self, i: usize) -> String {
        self.status(i)["head"]["number"]
            .as_str()
            .expect("a head number")
            .to_owned()
    }

    /// Node `i`'s log so far.
    pub fn log(&self, i: usize) -> String {
        std::fs::read_to_string(&self.nodes[i].log).unwrap_or_default()
    }
}

/// SIGTERM to a child process, through `kill(1)` (no libc in the tests).
fn sigterm(pid: u32) {
    let _ = std::process::Command::new("kill")
        .arg(pid.to_string())
        .status();
}
