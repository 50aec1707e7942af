//! `chorus demo`: three nodes on this machine, in temporary folders, with loopback peers. It
//! shows a share being made and joined, a file reaching every node, concurrent edits made
//! while two nodes are paused (one that merges cleanly and one that conflicts), the merged
//! result on every node, the versions, the redo entry the conflict left, and `chorus redo`
//! bringing the displaced line back. Everything is removed at the end (unless `--keep`).
//!
//! The nodes are real `chorus run` processes (this executable); the demo talks to them through
//! their sockets, as the CLI does.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use chorus::api::{Conflict, Status, Version, client};
use serde_json::json;

use super::conflicts;
use super::query::{self, short};

#[derive(clap::Args)]
pub struct Args {
    /// Keep the three folders (and print where they are) instead of removing them.
    #[arg(long)]
    keep: bool,
}

/// How long any one step may take before the demo gives up (and says where the logs are).
const STEP: Duration = Duration::from_secs(60);

struct Node {
    name: &'static str,
    folder: PathBuf,
    child: Option<Child>,
}

impl Node {
    fn state(&self) -> PathBuf {
        self.folder.join(chorus_chunking::STATE_DIR)
    }

    fn file(&self, name: &str) -> PathBuf {
        self.folder.join(name)
    }
}

struct Demo {
    nodes: Vec<Node>,
    root: PathBuf,
    keep: bool,
}

impl Drop for Demo {
    fn drop(&mut self) {
        for n in &mut self.nodes {
            if let Some(mut c) = n.child.take() {
                // SIGTERM: each daemon stops cleanly and removes its socket.
                let _ = Command::new("kill").arg(c.id().to_string()).status();
                let deadline = Instant::now() + Duration::from_secs(5);
                while Instant::now() < deadline {
                    if let Ok(Some(_)) = c.try_wait() {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
                let _ = c.kill();
                let _ = c.wait();
            }
        }
        if self.keep {
            println!("\nThe folders are kept in {}", self.root.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.root);
        }
    }
}

fn say(text: &str) {
    use std::io::Write;
    println!("\n== {text}");
    let _ = std::io::stdout().flush();
}

fn wait_for(what: &str, mut cond: impl FnMut() -> bool) -> anyhow::Result<()> {
    let start = Instant::now();
    while !cond() {
        if start.elapsed() > STEP {
            bail!(
                "the demo timed out waiting for {what}; see the logs in the demo folder (--keep keeps it)"
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

fn read(p: &Path) -> Option<String> {
    std::fs::read_to_string(p).ok()
}

fn chorus_exe() -> anyhow::Result<PathBuf> {
    std::env::current_exe().context("cannot find the chorus executable to start the nodes with")
}

impl Demo {
    fn start(&mut self, i: usize) -> anyhow::Result<()> {
        let n = &mut self.nodes[i];
        let log = std::fs::File::create(self.root.join(format!("{}.log", n.name)))?;
        let child = Command::new(chorus_exe()?)
            .arg("run")
            .arg(&n.folder)
            .arg("--no-mdns")
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log))
            .spawn()
            .context("cannot start a node")?;
        n.child = Some(child);
        let state = n.state();
        wait_for(&format!("node {} to start", n.name), || {
            client::get(&state, "/v1/status").is_ok()
        })
    }

    fn status(&self, i: usize) -> anyhow::Result<Status> {
        Ok(client::get_json(&self.nodes[i].state(), "/v1/status")?)
    }

    fn post(
        &self,
        i: usize,
        path: &str,
        body: serde_json::Value,
    ) -> anyhow::Result<serde_json::Value> {
        let answer = client::post(&self.nodes[i].state(), path, &body, STEP)?;
        Ok(serde_json::from_slice(&answer)?)
    }

    /// Every node holds `text` in `name`.
    fn everywhere(&self, name: &str, text: &str) -> anyhow::Result<()> {
        for n in &self.nodes {
            let f = n.file(name);
            wait_for(&format!("{name} on node {}", n.name), || {
                read(&f).as_deref() == Some(text)
            })?;
        }
        Ok(())
    }

    /// Every node settled on one head, for half a second.
    fn settled(&self) -> anyhow::Result<()> {
        let mut since: Option<Instant> = None;
        wait_for("the nodes to settle", || {
            let s: Vec<_> = (0..self.nodes.len())
                .filter_map(|i| self.status(i).ok())
                .collect();
            let same =
                s.len() == self.nodes.len() && s.iter().all(|x| x.settled && x.head == s[0].head);
            if !same {
                since = None;
            } else if since.is_none() {
                since = Some(Instant::now());
            }
            since.is_some_and(|t| t.elapsed() >= Duration::from_millis(500))
        })
    }

    fn show(&self, name: &str) {
        for n in &self.nodes {
            let text = read(&n.file(name)).unwrap_or_else(|| "(missing)\n".into());
            println!("--- {} ---", n.file(name).display());
            print!("{text}");
        }
    }

    fn query_args(&self, i: usize) -> query::Args {
        query::Args {
            folder: Some(self.nodes[i].folder.clone()),
            state_dir: None,
            json: false,
        }
    }
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let root = tempfile::Builder::new()
        .prefix("chorus-demo-")
        .tempdir()
        .context("cannot make a temporary folder for the demo")?
        .keep();
    let mut demo = Demo {
        nodes: ["alice", "bob", "carol"]
            .into_iter()
            .map(|name| Node {
                name,
                folder: root.join(name),
                child: None,
            })
            .collect(),
        root: root.clone(),
        keep: args.keep,
    };
    let exe = chorus_exe()?;
    let cli = |args: &[&str]| -> anyhow::Result<()> {
        let out = Command::new(&exe).args(args).output()?;
        if !out.status.success() {
            bail!(
                "chorus {args:?}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(())
    };

    say("alice starts a share: `chorus init alice` and `chorus run alice`");
    let alice = demo.nodes[0].folder.to_string_lossy().into_owned();
    cli(&["init", &alice])?;
    demo.start(0)?;
    for i in 1..3 {
        let token = demo.post(0, "/v1/invite", json!({}))?["token"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let folder = demo.nodes[i].folder.to_string_lossy().into_owned();
        say(&format!(
            "{} joins with a token from `chorus invite` on alice: `chorus join {}… {}`",
            demo.nodes[i].name,
            &token[..20.min(token.len())],
            demo.nodes[i].name
        ));
        cli(&["join", &token, &folder])?;
        demo.start(i)?;
    }

    say("alice writes notes.txt; it reaches bob and carol");
    let v1 = "title: the plan\nwho: alice\nwhere: the office\nwhat: kickoff\nwhen: monday\n";
    std::fs::write(demo.nodes[0].file("notes.txt"), v1)?;
    demo.everywhere("notes.txt", v1)?;
    demo.settled()?;
    demo.show("notes.txt");

    say("bob and carol pause (as if offline: `chorus pause`) and all three edit notes.txt");
    for i in 1..3 {
        demo.post(i, "/v1/pause", json!({}))?;
    }
    println!(
        "alice changes `when`, bob changes `who`, carol changes `when` too (a conflict with alice)"
    );
    std::fs::write(
        demo.nodes[0].file("notes.txt"),
        "title: the plan\nwho: alice\nwhere: the office\nwhat: kickoff\nwhen: tuesday\n",
    )?;
    std::fs::write(
        demo.nodes[1].file("notes.txt"),
        "title: the plan\nwho: alice and bob\nwhere: the office\nwhat: kickoff\nwhen: monday\n",
    )?;
    std::fs::write(
        demo.nodes[2].file("notes.txt"),
        "title: the plan\nwho: alice\nwhere: the office\nwhat: kickoff\nwhen: wednesday\n",
    )?;
    let head_before = demo.status(0)?.head;
    wait_for("alice's edit to be accepted", || {
        demo.status(0)
            .is_ok_and(|s| s.head != head_before && s.settled)
    })?;

    say("bob and carol resume: the leader merges all three edits");
    for i in 1..3 {
        demo.post(i, "/v1/resume", json!({}))?;
    }
    let first_state = demo.nodes[2].state();
    wait_for("the conflict's redo entry", || {
        client::get_json::<Vec<Conflict>>(&first_state, "/v1/conflicts")
            .is_ok_and(|c| !c.is_empty())
    })?;
    wait_for("one merged notes.txt everywhere", || {
        let t: Vec<_> = demo
            .nodes
            .iter()
            .map(|n| read(&n.file("notes.txt")))
            .collect();
        t.iter().all(|x| *x == t[0]) && t[0].as_deref().is_some_and(|x| x.contains("alice and bob"))
    })?;
    demo.settled()?;
    demo.show("notes.txt");
    println!("bob's line merged cleanly; of the two `when` lines the later-numbered one won");

    say("the versions (`chorus log`)");
    query::log(demo.query_args(0))?;
    say("the redo stack (`chorus conflicts`): what the merge displaced");
    conflicts::run(conflicts::ConflictsArgs {
        at: demo.query_args(0),
        seq: None,
    })?;

    let entries: Vec<Conflict> = client::get_json(&demo.nodes[0].state(), "/v1/conflicts")?;
    let Some(entry) = entries.last() else {
        bail!("the merge displaced nothing");
    };
    say(&format!(
        "the displaced change against what won (`chorus conflicts {}`)",
        entry.seq
    ));
    conflicts::run(conflicts::ConflictsArgs {
        at: demo.query_args(0),
        seq: Some(entry.seq),
    })?;
    say(&format!(
        "carol brings the displaced line back: `chorus redo {}`",
        entry.seq
    ));
    let answer = demo.post(2, "/v1/redo", json!({"entry": entry.seq}))?;
    let redone = read(&demo.nodes[2].file("notes.txt")).unwrap_or_default();
    demo.everywhere("notes.txt", &redone)?;
    demo.settled()?;
    demo.show("notes.txt");
    if answer["in_place"] == serde_json::Value::Bool(true) {
        println!("(the displaced line went back in place)");
    }

    let versions: Vec<Version> = client::get_json(&demo.nodes[0].state(), "/v1/versions")?;
    let last = versions
        .last()
        .map(|v| short(&v.version))
        .unwrap_or_default();
    say(&format!(
        "done: {} versions, the same head {last} on all three nodes; nothing was lost",
        versions.len()
    ));
    eprintln!("Try it yourself: `chorus init ~/Shared`, `chorus run ~/Shared`, `chorus invite`.");
    drop(demo);
    Ok(ExitCode::SUCCESS)
}
