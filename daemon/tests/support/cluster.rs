//! A cluster of real `chorus run` processes on loopback, formed with explicit peers and a
//! shared secret (`--init`, `--peer`), and the helpers its tests read it with: files, status,
//! the CLI and the socket's JSON.

use super::procs::{chorus, free_port, peer_id};

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

pub const LIVENESS: Duration = Duration::from_secs(90);
pub const SECRET: &str = "0707070707070707070707070707070707070707070707070707070707070707";

pub struct Proc {
    pub folder: PathBuf,
    pub state: PathBuf,
    pub log: PathBuf,
    pub addr: String,
    pub child: Option<Child>,
}

pub struct Cluster {
    pub _root: tempfile::TempDir,
    pub procs: Vec<Proc>,
    pub members: usize,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for p in &mut self.procs {
            if let Some(mut c) = p.child.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
        if std::thread::panicking() {
            for p in &self.procs {
                eprintln!(
                    "==== {} ====\n{}",
                    p.log.display(),
                    std::fs::read_to_string(&p.log).unwrap_or_default()
                );
            }
        }
    }
}

impl Cluster {
    pub fn new(n: usize) -> Cluster {
        let root = tempfile::tempdir().unwrap();
        let procs = (0..n)
            .map(|i| {
                let dir = root.path().join(format!("node{i}"));
                let (folder, state) = (dir.join("folder"), dir.join("state"));
                std::fs::create_dir_all(&folder).unwrap();
                let peer = peer_id(&state);
                Proc {
                    folder,
                    state,
                    log: dir.join("log.txt"),
                    addr: format!("/ip4/127.0.0.1/tcp/{}/p2p/{peer}", free_port()),
                    child: None,
                }
            })
            .collect();
        Cluster {
            _root: root,
            procs,
            members: n,
        }
    }

    /// Adds a process that is not a member: it knows node 0's address, and `secret`.
    pub fn outsider(&mut self, secret: &str) -> usize {
        self.outsider_with(secret, 0, |_| None)
    }

    /// Like [`Cluster::outsider`], knowing node `via` (not node 0), with `--join INVITE` when
    /// `invite(peer id)` gives one.
    pub fn outsider_with(
        &mut self,
        secret: &str,
        via: usize,
        invite: impl Fn(&str) -> Option<String>,
    ) -> usize {
        let i = self.procs.len();
        let dir = self._root.path().join(format!("outsider{i}"));
        let (folder, state) = (dir.join("folder"), dir.join("state"));
        std::fs::create_dir_all(&folder).unwrap();
        let peer = peer_id(&state);
        let addr = format!("/ip4/127.0.0.1/tcp/{}/p2p/{peer}", free_port());
        let listen = addr.split("/p2p/").next().unwrap().to_owned();
        let log = dir.join("log.txt");
        let file = std::fs::File::create(&log).unwrap();
        let mut cmd = chorus();
        cmd.arg("run")
            .arg("--folder")
            .arg(&folder)
            .arg("--state-dir")
            .arg(&state)
            .args(["--listen", &listen, "--scan-ms", "100", "--no-mdns"])
            .args(["--peer", &self.procs[via].addr])
            .env("CHORUS_SECRET", secret)
            .stdout(Stdio::from(file.try_clone().unwrap()))
            .stderr(Stdio::from(file));
        if let Some(inv) = invite(&peer) {
            cmd.args(["--join", &inv]);
        }
        let child = cmd.spawn().unwrap();
        self.procs.push(Proc {
            folder,
            state,
            log,
            addr,
            child: Some(child),
        });
        i
    }

    pub fn start(&mut self, i: usize) {
        let p = &self.procs[i];
        let listen = p.addr.split("/p2p/").next().unwrap().to_owned();
        let mut cmd = chorus();
        cmd.arg("run")
            .arg("--folder")
            .arg(&p.folder)
            .arg("--state-dir")
            .arg(&p.state)
            .args(["--listen", &listen, "--scan-ms", "100", "--no-mdns"])
            .env("CHORUS_SECRET", SECRET)
            .env("CHORUS_LOG", "chorus=info,warn");
        for (j, other) in self.procs.iter().enumerate().take(self.members) {
            if j != i {
                cmd.args(["--peer", &other.addr]);
            }
        }
        if i == 0 {
            cmd.arg("--init");
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&p.log)
            .unwrap();
        cmd.stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log));
        self.procs[i].child = Some(cmd.spawn().unwrap());
    }

    pub fn kill(&mut self, i: usize) {
        let mut c = self.procs[i].child.take().unwrap();
        c.kill().unwrap(); // SIGKILL
        c.wait().unwrap();
    }

    pub fn file(&self, i: usize) -> PathBuf {
        self.procs[i].folder.join("doc.txt")
    }
}

pub fn read(path: &Path) -> Option<String> {
    std::fs::read_to_string(path).ok()
}

/// Waits until `ok` holds, or fails the test with `what`.
pub fn wait_for(what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + LIVENESS;
    while !ok() {
        assert!(Instant::now() < deadline, "no progress: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `chorus status --json` of the daemon on `state`, once it answers on its socket.
pub fn wait_for_status(state: &Path) -> serde_json::Value {
    let mut status = None;
    wait_for("the daemon answers on its socket", || {
        status = cli_json(state, "status");
        status.is_some()
    });
    status.unwrap_or_default()
}

/// `chorus COMMAND --json --state-dir STATE`, parsed; None when it fails (no daemon yet).
pub fn cli_json(state: &Path, command: &str) -> Option<serde_json::Value> {
    let out = chorus()
        .args([command, "--json", "--state-dir"])
        .arg(state)
        .output()
        .unwrap();
    if !out.status.success() {
        return None;
    }
    Some(serde_json::from_slice(&out.stdout).unwrap())
}

pub fn write(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp-edit");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

pub fn cli(state: &Path, args: &[&str]) -> (Option<i32>, String, String) {
    let out = chorus()
        .args(args)
        .arg("--state-dir")
        .arg(state)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

/// One GET on a node's socket through the library's client: the parsed JSON.
pub fn get(state: &Path, path: &str) -> serde_json::Value {
    serde_json::from_slice(&chorus::api::client::get(state, path).unwrap()).unwrap()
}
