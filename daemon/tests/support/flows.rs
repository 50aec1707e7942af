//! A group of real `chorus` processes formed as a user forms one (`init`, `invite`, `join`,
//! `run PATH`), on folders or documents, with the CLI helpers the user-flow tests drive it with.

use super::procs::chorus;

use std::path::{Path, PathBuf};
use std::process::{Child, Output, Stdio};
use std::time::{Duration, Instant};

pub const LIVENESS: Duration = Duration::from_secs(90);

/// One machine: a share path (folder or document), its daemon, its log.
pub struct Node {
    pub path: PathBuf,
    pub log: PathBuf,
    pub child: Option<Child>,
}

pub struct Group {
    pub root: tempfile::TempDir,
    pub nodes: Vec<Node>,
}

impl Drop for Group {
    fn drop(&mut self) {
        for n in &mut self.nodes {
            if let Some(mut c) = n.child.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
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

/// Runs `chorus ARGS` to completion.
pub fn cli(args: &[&str]) -> Output {
    chorus().args(args).output().expect("run chorus")
}

/// Runs `chorus ARGS`, which must succeed; its stdout.
pub fn ok(args: &[&str]) -> String {
    let out = cli(args);
    assert!(
        out.status.success(),
        "chorus {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < LIVENESS, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub fn read(p: &Path) -> Option<String> {
    std::fs::read_to_string(p).ok()
}

impl Group {
    pub fn new() -> Group {
        Group {
            root: tempfile::tempdir().unwrap(),
            nodes: Vec::new(),
        }
    }

    pub fn at(&self, name: &str) -> PathBuf {
        self.root.path().join(name)
    }

    /// `chorus init` on `path` (a folder name, or a file that exists) and starts it.
    pub fn init(&mut self, path: PathBuf) -> usize {
        ok(&["init", path.to_str().unwrap()]);
        self.start(path)
    }

    /// `chorus join TOKEN path` with a token from node `via`, and starts it.
    pub fn join(&mut self, via: usize, path: PathBuf) -> usize {
        let token = self.invite(via);
        ok(&["join", &token, path.to_str().unwrap()]);
        self.start(path)
    }

    pub fn invite(&self, via: usize) -> String {
        let out = ok(&["invite", "--folder", self.nodes[via].path.to_str().unwrap()]);
        let token = out.lines().next().unwrap().trim().to_owned();
        assert!(token.starts_with("chorus1"), "{out}");
        token
    }

    pub fn start(&mut self, path: PathBuf) -> usize {
        let log = self
            .root
            .path()
            .join(format!("log{}.txt", self.nodes.len()));
        self.nodes.push(Node {
            path,
            log,
            child: None,
        });
        let i = self.nodes.len() - 1;
        self.restart(i);
        i
    }

    pub fn restart(&mut self, i: usize) {
        let n = &mut self.nodes[i];
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&n.log)
            .unwrap();
        let child = chorus()
            .arg("run")
            .arg(&n.path)
            .arg("--no-mdns")
            .env("RUST_LOG", "chorus=info")
            .stdout(Stdio::from(file.try_clone().unwrap()))
            .stderr(Stdio::from(file))
            .spawn()
            .unwrap();
        n.child = Some(child);
        let p = n.path.to_str().unwrap().to_owned();
        wait_until("the daemon's socket", || {
            cli(&["status", "--folder", &p]).status.success()
        });
    }

    pub fn kill9(&mut self, i: usize) {
        if let Some(mut c) = self.nodes[i].child.take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }

    pub fn path(&self, i: usize) -> &str {
        self.nodes[i].path.to_str().unwrap()
    }

    pub fn file(&self, i: usize, rel: &str) -> PathBuf {
        self.nodes[i].path.join(rel)
    }

    /// `chorus CMD ARGS --folder NODE`.
    pub fn ask(&self, i: usize, args: &[&str]) -> String {
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["--folder", self.path(i)]);
        ok(&all)
    }

    pub fn status(&self, i: usize) -> serde_json::Value {
        serde_json::from_str(&self.ask(i, &["status", "--json"])).unwrap()
    }

    /// Every node holds `text` in `rel`.
    pub fn wait_everywhere(&self, rel: &str, text: Option<&str>) {
        for i in 0..self.nodes.len() {
            let f = self.file(i, rel);
            wait_until(&format!("{rel} = {text:?} on node {i}"), || {
                read(&f).as_deref() == text
            });
        }
    }

    /// Every node is settled on one head, and stays so for a second (the status is a snapshot
    /// published a few times a second, and the watcher waits a little before scanning, so one
    /// look right after an edit can still show the state before it).
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

    /// The head number on node `i`.
    pub fn head(&self, i: usize) -> String {
        self.status(i)["head"]["number"]
            .as_str()
            .unwrap()
            .to_owned()
    }
}
