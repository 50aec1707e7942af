//! chorus: one `chorus run` process per folder on loopback, node 0 starting the cluster with
//! `--init` and every node given every other as `--peer`, state dirs outside the folders.
//! Ready when every node is connected to all others and settled on the same head.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

use super::{Session, Tool};
use crate::bench::procs::{RssWatch, free_port, proc_kib, spawn_logged, stop, wait_until};

const SECRET: &str = "5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e";

pub struct Chorus {
    pub bin: PathBuf,
    /// Extra `chorus run` options (the scan period when the build has no watcher).
    pub run_args: Vec<String>,
}

struct Node {
    state: PathBuf,
    port: u16,
    child: Option<Child>,
}

struct ChorusSession {
    bin: PathBuf,
    nodes: Vec<Node>,
    watch: RssWatch,
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(c) = self.child.take() {
            stop(c, Duration::from_secs(2));
        }
    }
}

impl Chorus {
    /// How this build detects changes: `--debounce-ms` in `chorus run --help` means a file
    /// watcher (use its defaults); otherwise scan every 100 ms.
    pub fn new(bin: PathBuf) -> Chorus {
        let help = Command::new(&bin)
            .args(["run", "--help"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        let run_args = if help.contains("--debounce-ms") {
            Vec::new()
        } else {
            vec!["--scan-ms".into(), "100".into()]
        };
        Chorus { bin, run_args }
    }

    /// How changes are detected, for the report.
    pub fn detection(&self) -> String {
        if self.run_args.is_empty() {
            "file watcher, default debounce".into()
        } else {
            format!("no watcher in this build: `{}`", self.run_args.join(" "))
        }
    }

    fn peer_id(&self, state: &Path) -> Result<String, String> {
        let out = Command::new(&self.bin)
            .args(["id", "--state-dir"])
            .arg(state)
            .output()
            .map_err(|e| format!("cannot run {}: {e}", self.bin.display()))?;
        if !out.status.success() {
            return Err(format!(
                "chorus id failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }
}

fn status(bin: &Path, state: &Path) -> Option<serde_json::Value> {
    let out = Command::new(bin)
        .args(["status", "--json", "--state-dir"])
        .arg(state)
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    serde_json::from_slice(&out.stdout).ok()
}

impl ChorusSession {
    /// Every node connected to all others, settled, on one head.
    fn all_settled(&self) -> bool {
        let n = self.nodes.len() as u64;
        let mut head = None;
        for node in &self.nodes {
            let Some(s) = status(&self.bin, &node.state) else {
                return false;
            };
            if s["settled"] != true || s["peers_connected"].as_u64() != Some(n - 1) {
                return false;
            }
            let h = s["head"]["version"].clone();
            if head.get_or_insert_with(|| h.clone()) != &h {
                return false;
            }
        }
        true
    }
}

impl Tool for Chorus {
    fn name(&self) -> String {
        "chorus".into()
    }
    fn is_daemon(&self) -> bool {
        true
    }
    fn open(&self, dir: &Path, folders: &[PathBuf]) -> Result<Box<dyn Session>, String> {
        let mut nodes = Vec::new();
        let mut addrs = Vec::new();
        for i in 0..folders.len() {
            let state = dir.join(format!("state{i}"));
            let id = self.peer_id(&state)?;
            let port = free_port();
            addrs.push(format!("/ip4/127.0.0.1/tcp/{port}/p2p/{id}"));
            nodes.push(Node {
                state,
                port,
                child: None,
            });
        }
        for (i, folder) in folders.iter().enumerate() {
            let mut cmd = Command::new(&self.bin);
            cmd.arg("run")
                .arg("--folder")
                .arg(folder)
                .arg("--state-dir")
                .arg(&nodes[i].state)
                .args(["--listen", &format!("/ip4/127.0.0.1/tcp/{}", nodes[i].port)])
                .arg("--no-mdns")
                .args(&self.run_args)
                .env("CHORUS_SECRET", SECRET)
                .env("CHORUS_LOG", "warn");
            for (j, a) in addrs.iter().enumerate() {
                if j != i {
                    cmd.args(["--peer", a]);
                }
            }
            if i == 0 {
                cmd.arg("--init");
            }
            nodes[i].child = Some(spawn_logged(&mut cmd, &dir.join(format!("node{i}.log")))?);
        }
        let watch = RssWatch::start();
        for n in &nodes {
            if let Some(c) = &n.child {
                watch.add(c.id());
            }
        }
        let s = ChorusSession {
            bin: self.bin.clone(),
            nodes,
            watch,
        };
        wait_until(
            "chorus nodes connect and settle",
            Duration::from_secs(60),
            Duration::from_millis(50),
            || s.all_settled(),
        )
        .map_err(|e| format!("{e}; see the node logs in {}", dir.display()))?;
        Ok(Box::new(s))
    }
}

impl Session for ChorusSession {
    fn ports(&self) -> Vec<Option<u16>> {
        self.nodes.iter().map(|n| Some(n.port)).collect()
    }
    fn sync(&mut self) -> Result<(), String> {
        Ok(())
    }
    fn settle(&mut self) {
        let _ = wait_until(
            "chorus settles",
            Duration::from_secs(30),
            Duration::from_millis(20),
            || self.all_settled(),
        );
    }
    fn rss_now(&self) -> Vec<u64> {
        self.nodes
            .iter()
            .filter_map(|n| proc_kib(n.child.as_ref()?.id(), "VmRSS"))
            .collect()
    }
    fn close(mut self: Box<Self>) -> u64 {
        let peak = self.watch.peak();
        for c in self.nodes.iter_mut().filter_map(|n| n.child.take()) {
            stop(c, Duration::from_secs(5));
        }
        peak
    }
}
