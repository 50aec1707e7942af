//! A cluster of real `chorus run` processes, each in its own network namespace of a [`Lab`],
//! for the scenarios and the chaos run: start, SIGKILL and restart nodes, cut and heal links,
//! make them lossy, partition the cluster, and, when wired through relays, delay every link.
//!
//! Wiring: [`Wiring::Direct`] has the nodes dial each other on the lab's bridge.
//! [`Wiring::Relayed`] puts a [`Relay`] in the root namespace in front of every node and
//! blocks direct traffic between hosts (nftables), so every byte between two nodes crosses a
//! relay, which delays it and can cut the link (the kernel here has no `netem`).
//!
//! The nodes are configured on the command line (`--secret`, `--init`, `--peer`), node 0
//! making the cluster with every other node as a member. Their folders and state dirs live in
//! a temporary directory; their logs are printed when a test fails. The `chorus` binary is the
//! one cargo built next to the test ([`chorus_bin`]).

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::netns::{Lab, LabError};
use crate::relay::Relay;

/// The port every node listens on inside its namespace.
pub const PORT: u16 = 7447;
const SECRET: &str = "5151515151515151515151515151515151515151515151515151515151515151";

/// Why the cluster could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error(transparent)]
    Lab(#[from] LabError),
    #[error("{0}")]
    Setup(String),
}

/// The `chorus` binary: `CHORUS_BIN`, or `chorus` in the target directory of this test (cargo
/// builds it for `cargo test --workspace`).
pub fn chorus_bin() -> Result<PathBuf, ClusterError> {
    if let Ok(p) = std::env::var("CHORUS_BIN") {
        return Ok(PathBuf::from(p));
    }
    let exe = std::env::current_exe().map_err(|e| ClusterError::Setup(e.to_string()))?;
    // target/<profile>/deps/<test> -> target/<profile>/chorus
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .map(|d| d.join("chorus"))
        .filter(|p| p.is_file());
    bin.ok_or_else(|| {
        ClusterError::Setup(
            "no chorus binary next to this test: run `cargo build -p chorus` (or the whole \
             workspace's tests), or set CHORUS_BIN"
                .into(),
        )
    })
}

/// How the nodes reach each other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wiring {
    Direct,
    /// Through a relay per node, which delays each direction by this much.
    Relayed {
        delay: Duration,
    },
}

/// One node: its dirs, identity, process.
pub struct Node {
    pub folder: PathBuf,
    pub state: PathBuf,
    pub log: PathBuf,
    pub peer_id: String,
    child: Option<Child>,
}

/// The cluster. Dropping it kills every node and removes the lab and the directories.
pub struct Cluster {
    // Field order is drop order: processes and relays go before the lab.
    nodes: Vec<Node>,
    relays: Vec<Relay>,
    lab: Lab,
    bin: PathBuf,
    root: tempfile::TempDir,
    /// More `chorus run` options for every node (`--timing wan`, say).
    pub run_args: Vec<String>,
    /// Give the nodes each other's PeerIds with a wrong port and turn mDNS on: only mDNS can
    /// tell them where the others are.
    pub mdns_only: bool,
    /// Give node 0 the others' PeerIds with a wrong port: only they can dial it, so every link
    /// to it is one they dialled (they hold relay reservations there).
    pub first_dials_nobody: bool,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for n in &mut self.nodes {
            if let Some(mut c) = n.child.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
        if std::thread::panicking() {
            for (i, n) in self.nodes.iter().enumerate() {
                let log = std::fs::read_to_string(&n.log).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(60).collect();
                eprintln!("==== node {i} ({}) ====", n.log.display());
                for l in tail.iter().rev() {
                    eprintln!("{l}");
                }
            }
        }
    }
}

impl Cluster {
    /// `n` nodes in a lab, none started yet.
    pub fn new(n: usize, wiring: Wiring) -> Result<Cluster, ClusterError> {
        let bin = chorus_bin()?;
        let lab = Lab::new(n)?;
        let root = tempfile::tempdir().map_err(|e| ClusterError::Setup(e.to_string()))?;
        let mut relays = Vec::new();
        if let Wiring::Relayed { delay } = wiring {
            lab.enable_gateway()?;
            for i in 0..n {
                let target = SocketAddr::from((lab.host(i).addr, PORT));
                let relay = Relay::start(SocketAddr::from((lab.gateway(), 0)), target)
                    .map_err(|e| ClusterError::Setup(format!("relay: {e}")))?;
                relay.set_delay(delay);
                relays.push(relay);
            }
            // Hosts hear each other only through the relays.
            let all: Vec<Ipv4Addr> = lab.hosts().iter().map(|h| h.addr).collect();
            for i in 0..n {
                let others: Vec<Ipv4Addr> = all
                    .iter()
                    .copied()
                    .filter(|a| *a != lab.host(i).addr)
                    .collect();
                lab.set_blocked(i, &others)?;
            }
        }
        let mut nodes = Vec::new();
        for i in 0..n {
            let dir = root.path().join(format!("n{i}"));
            let (folder, state) = (dir.join("folder"), dir.join("state"));
            std::fs::create_dir_all(&folder).map_err(|e| ClusterError::Setup(e.to_string()))?;
            let out = Command::new(&bin)
                .args(["id", "--state-dir"])
                .arg(&state)
                .output()
                .map_err(|e| ClusterError::Setup(format!("chorus id: {e}")))?;
            let peer_id = String::from_utf8_lossy(&out.stdout).trim().to_owned();
            nodes.push(Node {
                folder,
                state,
                log: dir.join("log.txt"),
                peer_id,
                child: None,
            });
        }
        Ok(Cluster {
            nodes,
            relays,
            lab,
            bin,
            root,
            run_args: Vec::new(),
            mdns_only: false,
            first_dials_nobody: false,
        })
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    pub fn lab(&self) -> &Lab {
        &self.lab
    }

    pub fn node(&self, i: usize) -> &Node {
        &self.nodes[i]
    }

    /// The relay in front of node `i` (relayed wiring only).
    pub fn relay(&self, i: usize) -> &Relay {
        &self.relays[i]
    }

    /// Where the others dial node `i`.
    /// Node `i`'s PeerId at port 1, where nothing listens.
    fn dead_addr_of(&self, i: usize) -> String {
        let peer = &self.nodes[i].peer_id;
        format!("/ip4/{}/tcp/1/p2p/{peer}", self.lab.host(i).addr)
    }

    fn addr_of(&self, i: usize) -> String {
        let peer = &self.nodes[i].peer_id;
        if self.mdns_only {
            self.dead_addr_of(i)
        } else if self.relays.is_empty() {
            format!("/ip4/{}/tcp/{PORT}/p2p/{peer}", self.lab.host(i).addr)
        } else {
            let a = self.relays[i].addr();
            format!("/ip4/{}/tcp/{}/p2p/{peer}", a.ip(), a.port())
        }
    }

    /// Starts (or restarts) node `i`. Node 0 makes the cluster, with every other node as a
    /// member; every node knows every other's address.
    pub fn start(&mut self, i: usize) {
        let mut cmd = self.lab.command(i, &self.bin);
        let n = &self.nodes[i];
        cmd.arg("run")
            .arg(&n.folder)
            .arg("--state-dir")
            .arg(&n.state)
            .args(["--listen", &format!("/ip4/0.0.0.0/tcp/{PORT}")])
            .args(["--debounce-ms", "50"])
            .env("CHORUS_SECRET", SECRET)
            // CHORUS_TEST_LOG replaces the daemons' log filter (e.g. `chorus=debug` to replay a
            // chaos seed with the engine's reasoning in the logs).
            .env(
                "RUST_LOG",
                std::env::var("CHORUS_TEST_LOG").unwrap_or_else(|_| "chorus=info".to_owned()),
            );
        for j in (0..self.nodes.len()).filter(|&j| j != i) {
            let addr = if i == 0 && self.first_dials_nobody {
                self.dead_addr_of(j)
            } else {
                self.addr_of(j)
            };
            cmd.args(["--peer", &addr]);
        }
        if i == 0 {
            cmd.arg("--init");
        }
        if !self.mdns_only {
            cmd.arg("--no-mdns");
        }
        cmd.args(&self.run_args);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.nodes[i].log)
            .expect("a log file");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone().expect("a log file")))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("start chorus");
        self.nodes[i].child = Some(child);
    }

    /// Starts every node and waits until all are members and settled.
    pub fn start_all(&mut self, within: Duration) {
        for i in 0..self.nodes.len() {
            self.start(i);
        }
        let all: Vec<usize> = (0..self.nodes.len()).collect();
        let start = Instant::now();
        let others = self.nodes.len() as u64 - 1;
        while !all.iter().all(|&i| {
            self.status(i)
                .is_some_and(|s| s["peers"] == others && s["peers_connected"] == others)
        }) {
            if start.elapsed() >= within {
                let seen: Vec<String> = all
                    .iter()
                    .map(|&i| {
                        let s = self.status(i).unwrap_or_default();
                        format!(
                            "node {i}: role {} peers {} connected {}",
                            s["role"], s["peers"], s["peers_connected"]
                        )
                    })
                    .collect();
                panic!(
                    "the nodes did not all become members within {within:?}:\n{}",
                    seen.join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        self.wait_converged(&all, within);
    }

    /// SIGKILL.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.nodes[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn is_running(&self, i: usize) -> bool {
        self.nodes[i].child.is_some()
    }

    /// Node `i`'s `/v1/status`, when its daemon answers.
    pub fn status(&self, i: usize) -> Option<serde_json::Value> {
        let out = Command::new(&self.bin)
            .args(["status", "--json", "--state-dir"])
            .arg(&self.nodes[i].state)
            .output()
            .ok()?;
        if !out.status.success() {
            return None;
        }
        serde_json::from_slice(&out.stdout).ok()
    }

    /// Another `GET` of node `i`'s socket, through the CLI (`log`, `conflicts`, `peers`).
    pub fn query(&self, i: usize, what: &str) -> Option<serde_json::Value> {
        let out = Command::new(&self.bin)
            .args([what, "--json", "--state-dir"])
            .arg(&self.nodes[i].state)
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| serde_json::from_slice(&out.stdout).ok())
            .flatten()
    }

    /// The running node that says it leads, if exactly one among `among` does.
    pub fn leader(&self, among: &[usize]) -> Option<usize> {
        let leaders: Vec<usize> = among
            .iter()
            .copied()
            .filter(|&i| self.is_running(i))
            .filter(|&i| self.status(i).is_some_and(|s| s["role"] == "leader"))
            .collect();
        (leaders.len() == 1).then(|| leaders[0])
    }

    /// Waits until one of `among` leads.
    pub fn wait_leader(&self, among: &[usize], within: Duration) -> usize {
        let start = Instant::now();
        loop {
            if let Some(l) = self.leader(among) {
                return l;
            }
            assert!(
                start.elapsed() < within,
                "no leader among {among:?} within {within:?}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Every file under node `i`'s folder (relative path -> bytes), temp files left out.
    pub fn tree(&self, i: usize) -> BTreeMap<String, Vec<u8>> {
        tree(&self.nodes[i].folder)
    }

    /// Waits until `nodes` hold the same tree, are settled on the same head, and stay so for
    /// two seconds (one look can catch a node before its watcher fired).
    pub fn wait_converged(&self, nodes: &[usize], within: Duration) {
        let start = Instant::now();
        let mut since: Option<Instant> = None;
        loop {
            let same = self.converged(nodes);
            match (same, since) {
                (false, _) => since = None,
                (true, None) => since = Some(Instant::now()),
                (true, Some(t)) if t.elapsed() >= Duration::from_secs(2) => return,
                _ => {}
            }
            if start.elapsed() > within {
                let heads: Vec<_> = nodes
                    .iter()
                    .map(|&i| {
                        self.status(i)
                            .map(|s| (s["head"].clone(), s["settled"].clone()))
                    })
                    .collect();
                panic!("nodes {nodes:?} did not converge within {within:?}: {heads:?}");
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    fn converged(&self, nodes: &[usize]) -> bool {
        let statuses: Vec<_> = nodes.iter().map(|&i| self.status(i)).collect();
        let Some(Some(first)) = statuses.first() else {
            return false;
        };
        let heads_agree = statuses.iter().all(|s| {
            s.as_ref()
                .is_some_and(|s| s["settled"] == true && s["head"] == first["head"])
        });
        heads_agree && {
            let t0 = self.tree(nodes[0]);
            nodes[1..].iter().all(|&i| self.tree(i) == t0)
        }
    }

    /// Cuts the cluster into groups: a node hears only nodes of its own group.
    pub fn partition(&self, groups: &[&[usize]]) -> Result<(), LabError> {
        for g in groups {
            for &i in *g {
                let blocked: Vec<Ipv4Addr> = (0..self.nodes.len())
                    .filter(|j| !g.contains(j))
                    .map(|j| self.lab.host(j).addr)
                    .collect();
                self.lab.set_blocked(i, &blocked)?;
            }
        }
        Ok(())
    }

    /// Lifts every partition (direct wiring).
    pub fn heal_partition(&self) -> Result<(), LabError> {
        for i in 0..self.nodes.len() {
            self.lab.set_blocked(i, &[])?;
        }
        Ok(())
    }

    /// Where the nodes live (for scenario files of their own).
    pub fn root(&self) -> &Path {
        self.root.path()
    }
}

/// Every file under `root` (relative path -> bytes); a file that vanishes while walking is
/// left out, as are the materializer's temp files.
pub fn tree(root: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            let Ok(ft) = e.file_type() else { continue };
            let name = e.file_name().to_string_lossy().into_owned();
            if name.ends_with(".chorus-tmp") {
                continue;
            }
            let rel = p
                .strip_prefix(root)
                .map(|r| r.to_string_lossy().into_owned())
                .unwrap_or_default();
            if ft.is_dir() {
                out.insert(format!("{rel}/"), Vec::new());
                stack.push(p);
            } else if ft.is_symlink() {
                if let Ok(t) = std::fs::read_link(&p) {
                    out.insert(rel, format!("-> {}", t.display()).into_bytes());
                }
            } else if let Ok(bytes) = std::fs::read(&p) {
                out.insert(rel, bytes);
            }
        }
    }
    out
}
