//! Three real `chorus run` processes on loopback with explicit peers: a file written on one
//! node reaches the others; concurrent edits of one text file on two nodes merge; after kill -9
//! of the node that started the cluster (its first leader), the other two elect a leader and
//! keep syncing, and the killed node, restarted, catches up with nothing accepted lost.
//!
//! Waits are liveness bounds (a stuck cluster fails the test), not speed assertions. Each
//! process's output is kept in its directory and printed when the test fails.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const LIVENESS: Duration = Duration::from_secs(90);
const SECRET: &str = "0707070707070707070707070707070707070707070707070707070707070707";

struct Proc {
    folder: PathBuf,
    state: PathBuf,
    log: PathBuf,
    addr: String,
    child: Option<Child>,
}

struct Cluster {
    _root: tempfile::TempDir,
    procs: Vec<Proc>,
    members: usize,
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

fn chorus() -> Command {
    Command::new(env!("CARGO_BIN_EXE_chorus"))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Cluster {
    fn new(n: usize) -> Cluster {
        let root = tempfile::tempdir().unwrap();
        let procs = (0..n)
            .map(|i| {
                let dir = root.path().join(format!("node{i}"));
                let (folder, state) = (dir.join("folder"), dir.join("state"));
                std::fs::create_dir_all(&folder).unwrap();
                let out = chorus()
                    .args(["id", "--state-dir"])
                    .arg(&state)
                    .output()
                    .unwrap();
                assert!(out.status.success());
                let peer = String::from_utf8(out.stdout).unwrap().trim().to_owned();
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
    fn outsider(&mut self, secret: &str) -> usize {
        self.outsider_with(secret, 0, |_| None)
    }

    /// Like [`Cluster::outsider`], knowing node `via` (not node 0), with `--join INVITE` when
    /// `invite(peer id)` gives one.
    fn outsider_with(
        &mut self,
        secret: &str,
        via: usize,
        invite: impl Fn(&str) -> Option<String>,
    ) -> usize {
        let i = self.procs.len();
        let dir = self._root.path().join(format!("outsider{i}"));
        let (folder, state) = (dir.join("folder"), dir.join("state"));
        std::fs::create_dir_all(&folder).unwrap();
        let out = chorus()
            .args(["id", "--state-dir"])
            .arg(&state)
            .output()
            .unwrap();
        let peer = String::from_utf8(out.stdout).unwrap().trim().to_owned();
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

    fn start(&mut self, i: usize) {
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

    fn kill(&mut self, i: usize) {
        let mut c = self.procs[i].child.take().unwrap();
        c.kill().unwrap(); // SIGKILL
        c.wait().unwrap();
    }

    fn file(&self, i: usize) -> PathBuf {
        self.procs[i].folder.join("doc.txt")
    }
}

fn read(path: &Path) -> Option<String> {
    std::fs::read_to_string(path).ok()
}

/// Waits until `ok` holds, or fails the test with `what`.
fn wait_for(what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + LIVENESS;
    while !ok() {
        assert!(Instant::now() < deadline, "no progress: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn write(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp-edit");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

#[test]
fn three_processes_sync_merge_and_survive_kill_9_of_the_leader() {
    let mut c = Cluster::new(3);
    for i in 0..3 {
        c.start(i);
    }
    let text = "one\ntwo\nthree\nfour\nfive\n";
    write(&c.file(0), text);
    wait_for("the file reaches nodes 1 and 2", || {
        (1..3).all(|i| read(&c.file(i)).as_deref() == Some(text))
    });

    // Concurrent edits of different lines on two nodes merge.
    write(&c.file(1), "ONE from node 1\ntwo\nthree\nfour\nfive\n");
    write(&c.file(2), "one\ntwo\nthree\nfour\nFIVE from node 2\n");
    let merged = "ONE from node 1\ntwo\nthree\nfour\nFIVE from node 2\n";
    wait_for("both edits are everywhere", || {
        (0..3).all(|i| read(&c.file(i)).as_deref() == Some(merged))
    });

    // kill -9 of the first leader: the other two elect one and keep syncing.
    c.kill(0);
    let after = format!("{merged}six, after the failover\n");
    write(&c.file(1), &after);
    wait_for("an edit after the failover reaches node 2", || {
        read(&c.file(2)).as_deref() == Some(after.as_str())
    });

    // The killed node comes back and catches up; nothing accepted was lost.
    c.start(0);
    wait_for("the restarted node catches up", || {
        (0..3).all(|i| read(&c.file(i)).as_deref() == Some(after.as_str()))
    });

    // A follower killed right after a local save loses nothing: restarted, it pushes it.
    let saved = format!("{after}seven, saved just before a kill -9\n");
    write(&c.file(2), &saved);
    c.kill(2);
    c.start(2);
    wait_for(
        "the saved edit survives the kill and reaches everyone",
        || (0..3).all(|i| read(&c.file(i)).as_deref() == Some(saved.as_str())),
    );
}

#[test]
fn outsiders_receive_nothing() {
    let mut c = Cluster::new(2);
    c.start(0);
    c.start(1);
    let wrong_key = c.outsider("0808080808080808080808080808080808080808080808080808080808080808");
    let not_member = c.outsider(SECRET);
    let text = "members only\n";
    write(&c.file(0), text);
    wait_for("the member gets the file", || {
        read(&c.file(1)).as_deref() == Some(text)
    });
    // An outsider's own edit must not reach the members either.
    write(&c.file(not_member), "intruder\n");
    // Two full rounds went around the members while the outsiders were up and dialling.
    let second = "members only, second edit\n";
    write(&c.file(0), second);
    wait_for("the member gets the second edit", || {
        read(&c.file(1)).as_deref() == Some(second)
    });
    for o in [wrong_key, not_member] {
        // The outsider runs and reports: not one sync or Raft frame reached it.
        wait_for("the outsider writes its stats", || {
            c.procs[o].state.join("stats.json").exists()
        });
        let stats: serde_json::Value =
            serde_json::from_slice(&std::fs::read(c.procs[o].state.join("stats.json")).unwrap())
                .unwrap();
        assert_eq!(stats["sync_bytes_received"], 0, "outsider {o}: {stats}");
        assert_eq!(stats["raft_bytes_received"], 0, "outsider {o}: {stats}");
    }
    for o in [wrong_key, not_member] {
        let folder = &c.procs[o].folder;
        let names: Vec<_> = std::fs::read_dir(folder)
            .unwrap()
            .filter_map(Result::ok)
            .map(|e| e.file_name())
            .collect();
        assert!(
            o == not_member && names == ["doc.txt"] || names.is_empty(),
            "outsider {o} received {names:?}"
        );
    }
    assert_eq!(read(&c.file(not_member)).as_deref(), Some("intruder\n"));
    assert_eq!(read(&c.file(0)).as_deref(), Some(second));
    assert_eq!(read(&c.file(1)).as_deref(), Some(second));
}

#[test]
fn a_node_with_an_invite_joins_and_syncs_and_a_forged_invite_gets_nothing() {
    let mut c = Cluster::new(2);
    c.start(0);
    c.start(1);
    let text = "before the join\n";
    write(&c.file(0), text);
    wait_for("the member gets the file", || {
        read(&c.file(1)).as_deref() == Some(text)
    });
    let invite = |peer: &str| {
        let out = chorus()
            .args(["invite", "--peer", peer])
            .env("CHORUS_SECRET", SECRET)
            .output()
            .unwrap();
        assert!(out.status.success());
        Some(String::from_utf8(out.stdout).unwrap().trim().to_owned())
    };
    // The joiner knows only node 1, which normally does not lead: node 1 names the members,
    // and the joiner presents its invite to the leader too.
    let joiner = c.outsider_with(SECRET, 1, invite);
    // A forged invite: made with another secret.
    let forged = c.outsider_with(SECRET, 0, |peer| {
        let out = chorus()
            .args(["invite", "--peer", peer])
            .env(
                "CHORUS_SECRET",
                "0808080808080808080808080808080808080808080808080808080808080808",
            )
            .output()
            .unwrap();
        Some(String::from_utf8(out.stdout).unwrap().trim().to_owned())
    });
    wait_for("the joiner catches up", || {
        read(&c.file(joiner)).as_deref() == Some(text)
    });
    let from_joiner = "before the join\nfrom the joiner\n";
    write(&c.file(joiner), from_joiner);
    wait_for("the joiner's edit reaches the members", || {
        (0..2).all(|i| read(&c.file(i)).as_deref() == Some(from_joiner))
    });
    wait_for("the forged joiner writes its stats", || {
        c.procs[forged].state.join("stats.json").exists()
    });
    let stats: serde_json::Value =
        serde_json::from_slice(&std::fs::read(c.procs[forged].state.join("stats.json")).unwrap())
            .unwrap();
    assert_eq!(stats["sync_bytes_received"], 0, "{stats}");
    assert_eq!(stats["raft_bytes_received"], 0, "{stats}");
    assert!(read(&c.file(forged)).is_none());
}
