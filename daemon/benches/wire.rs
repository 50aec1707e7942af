//! Bytes on the wire and time for a real source-tree update (tokio 1.44.0 -> 1.45.0, from the
//! cargo registry, or CHORUS_BENCH_OLD / CHORUS_BENCH_NEW) from one node to two others, with
//! three real `chorus run` processes on loopback, side by side with
//! `rsync --no-whole-file --checksum --stats` to two receivers in the same run (--checksum
//! because the registry gives every file one mtime, which rsync's quick check would take for
//! "unchanged"); then the time from kill -9
//! of the leader to an edit made at that moment reaching another node (failover, election,
//! push, replication to a majority, commit, materialization).
//!
//! Run with `cargo bench -p chorus --bench wire`. It prints figures and asserts nothing about
//! speed; it fails only if the cluster never converges.

#[path = "../tests/support/procs.rs"]
mod procs;

use procs::{chorus, free_port, peer_id};

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const SECRET: &str = "0909090909090909090909090909090909090909090909090909090909090909";
const LIVENESS: Duration = Duration::from_secs(120);

struct Node {
    folder: PathBuf,
    state: PathBuf,
    addr: String,
    child: Option<Child>,
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn registry_dir(name: &str) -> Option<PathBuf> {
    let home = std::env::var("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|_| std::env::var("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .ok()?;
    std::fs::read_dir(home.join("registry/src"))
        .ok()?
        .filter_map(Result::ok)
        .map(|e| e.path().join(name))
        .find(|p| p.is_dir())
}

/// Relative path -> bytes of every regular file under `root`.
fn tree(root: &Path) -> std::collections::BTreeMap<PathBuf, Vec<u8>> {
    let mut out = std::collections::BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        // The folder changes under the walk (a node is writing it): what vanished is skipped,
        // and the comparison simply fails until the node is done.
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.filter_map(Result::ok) {
            let p = e.path();
            let Ok(ft) = e.file_type() else { continue };
            // The state dir and the share marker are each machine's own, never synced.
            if p.file_name()
                .is_some_and(|n| n == ".chorus" || n == chorus_chunking::SHARE_MARKER)
            {
                continue;
            }
            if ft.is_dir() {
                stack.push(p);
            } else if ft.is_file()
                && let Ok(bytes) = std::fs::read(&p)
            {
                out.insert(p.strip_prefix(root).unwrap().to_path_buf(), bytes);
            }
        }
    }
    out
}

fn rsync(args: &[&str], from: &Path, to: &Path) -> std::process::Output {
    let out = Command::new("rsync")
        .args(args)
        .arg(format!("{}/", from.display()))
        .arg(format!("{}/", to.display()))
        .output()
        .expect("rsync runs");
    assert!(out.status.success(), "rsync failed: {out:?}");
    out
}

fn stat_field(out: &str, name: &str) -> u64 {
    out.lines()
        .find_map(|l| l.strip_prefix(name))
        .and_then(|v| v.split_whitespace().next())
        .map(|v| v.replace(',', "").parse().unwrap_or(0))
        .unwrap_or(0)
}

/// The node's `/v1/status` from its local socket (Null while it does not answer yet).
fn stats(state: &Path) -> serde_json::Value {
    chorus::api::client::get_json(state, "/v1/status").unwrap_or(serde_json::Value::Null)
}

fn wire_bytes(nodes: &[Node]) -> (u64, u64) {
    let mut sync = 0;
    let mut raft = 0;
    for n in nodes {
        let s = stats(&n.state);
        sync += s["traffic"]["sync_sent"].as_u64().unwrap_or(0);
        raft += s["traffic"]["raft_sent"].as_u64().unwrap_or(0);
    }
    (sync, raft)
}

fn wait(what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + LIVENESS;
    while !ok() {
        assert!(
            Instant::now() < deadline,
            "no progress: {what}; each node's log.txt is in its dir, `chorus status --state-dir` tells its state"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn start(nodes: &mut [Node], i: usize, init: bool) {
    let listen = nodes[i].addr.split("/p2p/").next().unwrap().to_owned();
    let mut cmd = chorus();
    cmd.arg("run")
        .arg("--folder")
        .arg(&nodes[i].folder)
        .arg("--state-dir")
        .arg(&nodes[i].state)
        .args(["--listen", &listen, "--scan-ms", "100", "--no-mdns"])
        .env("CHORUS_SECRET", SECRET)
        .env(
            "CHORUS_LOG",
            std::env::var("CHORUS_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .stdout(Stdio::null());
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(nodes[i].state.join("log.txt"))
        .unwrap();
    cmd.stderr(Stdio::from(log));
    for (j, o) in nodes.iter().enumerate() {
        if j != i {
            cmd.args(["--peer", &o.addr]);
        }
    }
    if init {
        cmd.arg("--init");
    }
    nodes[i].child = Some(cmd.spawn().unwrap());
}

fn main() {
    // `cargo bench` passes --bench; nothing to parse.
    let (Some(old), Some(new)) = (
        std::env::var("CHORUS_BENCH_OLD")
            .ok()
            .map(PathBuf::from)
            .or_else(|| registry_dir("tokio-1.44.0")),
        std::env::var("CHORUS_BENCH_NEW")
            .ok()
            .map(PathBuf::from)
            .or_else(|| registry_dir("tokio-1.45.0")),
    ) else {
        eprintln!(
            "wire: tokio-1.44.0 / tokio-1.45.0 not in the cargo registry; set CHORUS_BENCH_OLD and CHORUS_BENCH_NEW"
        );
        return;
    };
    let old_tree = tree(&old);
    let new_tree = tree(&new);
    let new_bytes: usize = new_tree.values().map(Vec::len).sum();
    println!(
        "wire: {} ({} files) -> {} ({} files, {} bytes), one node to two others",
        old.display(),
        old_tree.len(),
        new.display(),
        new_tree.len(),
        new_bytes
    );

    let root = tempfile::tempdir().unwrap();
    let root_path = root.path().to_path_buf();
    if std::env::var_os("CHORUS_BENCH_KEEP").is_some() {
        eprintln!("wire: keeping {}", root_path.display());
        std::mem::forget(root);
    }
    let root = root_path;
    let mut nodes: Vec<Node> = (0..3)
        .map(|i| {
            let dir = root.join(format!("node{i}"));
            let (folder, state) = (dir.join("folder"), dir.join("state"));
            std::fs::create_dir_all(&folder).unwrap();
            let peer = peer_id(&state);
            Node {
                folder,
                state,
                addr: format!("/ip4/127.0.0.1/tcp/{}/p2p/{peer}", free_port()),
                child: None,
            }
        })
        .collect();
    for i in 0..3 {
        start(&mut nodes, i, i == 0);
    }

    // The old release everywhere first.
    rsync(&["-a"], &old, &nodes[0].folder);
    wait("the old release reaches every node", || {
        (1..3).all(|i| tree(&nodes[i].folder) == old_tree)
    });
    std::thread::sleep(Duration::from_millis(500));

    // The update, measured.
    let (sync0, raft0) = wire_bytes(&nodes);
    let t = Instant::now();
    // --checksum: the registry gives every file the same mtime, so rsync's size+mtime quick
    // check would skip changed files of equal size.
    // The share marker is the folder's own: `--delete` must not take it (without it the daemon
    // takes the folder for an unmounted disk and stops scanning, as it should).
    rsync(
        &["-a", "--delete", "--checksum", "--exclude=/.chorus-share"],
        &new,
        &nodes[0].folder,
    );
    wait("the new release reaches every node", || {
        (1..3).all(|i| tree(&nodes[i].folder) == new_tree)
    });
    let chorus_time = t.elapsed();
    std::thread::sleep(Duration::from_millis(300)); // the socket's figures are refreshed every 200 ms
    let (sync1, raft1) = wire_bytes(&nodes);
    let chorus_bytes = sync1 - sync0;
    let raft_bytes = raft1 - raft0;

    // rsync to two receivers that hold the old release.
    let mut rsync_bytes = 0;
    let t = Instant::now();
    for k in 0..2 {
        let dst = root.join(format!("rsync{k}"));
        std::fs::create_dir_all(&dst).unwrap();
        rsync(&["-a"], &old, &dst);
        let out = rsync(
            &["-a", "--delete", "--checksum", "--no-whole-file", "--stats"],
            &new,
            &dst,
        );
        let text = String::from_utf8_lossy(&out.stdout);
        rsync_bytes +=
            stat_field(&text, "Total bytes sent:") + stat_field(&text, "Total bytes received:");
    }
    let rsync_time = t.elapsed();

    println!(
        "wire: chorus  {chorus_bytes:>10} bytes of sync/chunk frames (+ {raft_bytes} bytes of Raft frames) in {:.2} s (scan interval 100 ms included)",
        chorus_time.as_secs_f64()
    );
    println!(
        "wire: rsync   {rsync_bytes:>10} bytes (--no-whole-file --checksum, sent + received, two receivers) in {:.2} s",
        rsync_time.as_secs_f64()
    );
    println!(
        "wire: chorus / rsync = {:.3} (sync frames only), {:.3} (with Raft frames)",
        chorus_bytes as f64 / rsync_bytes as f64,
        (chorus_bytes + raft_bytes) as f64 / rsync_bytes as f64
    );

    // Failover: kill -9 the leader, edit elsewhere at once, time until a third node has it.
    let leader = (0..3)
        .find(|&i| stats(&nodes[i].state)["role"] == "leader")
        .expect("a leader");
    let (a, b) = match leader {
        0 => (1, 2),
        1 => (0, 2),
        _ => (0, 1),
    };
    let mut child = nodes[leader].child.take().unwrap();
    let file = "failover.txt";
    let t = Instant::now();
    child.kill().unwrap();
    std::fs::write(nodes[a].folder.join(file), "after the failover\n").unwrap();
    wait(
        "an edit after kill -9 of the leader reaches a third node",
        || std::fs::read(nodes[b].folder.join(file)).is_ok_and(|c| c == b"after the failover\n"),
    );
    let failover = t.elapsed();
    let _ = child.wait();
    println!(
        "wire: kill -9 of the leader -> an edit made at that moment is on a third node after {:.0} ms (election, 100 ms scan, push, replication, commit, materialization)",
        failover.as_secs_f64() * 1e3
    );
}
