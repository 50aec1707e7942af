//! The network-namespace lab itself: hosts reach each other, cuts and loss take effect and are
//! undone, and nothing is left behind. Needs root; skipped (with a message) otherwise.

use std::io::{BufRead, BufReader};
use std::process::Command;

use chorus_integration_tests::needs_root;
use chorus_integration_tests::netns::Lab;

const ECHO: &str = env!("CARGO_BIN_EXE_lab-echo");

fn reaches(lab: &Lab, from: usize, to: usize) -> bool {
    let addr = format!("{}:7000", lab.host(to).addr);
    lab.command(from, ECHO)
        .args(["connect", &addr, "700"])
        .output()
        .expect("run lab-echo")
        .status
        .success()
}

/// A link that was just brought up takes a moment to carry traffic: retry for a few seconds.
fn eventually(f: impl Fn() -> bool) -> bool {
    (0..10).any(|_| {
        f() || {
            std::thread::sleep(std::time::Duration::from_millis(300));
            false
        }
    })
}

#[test]
fn hosts_reach_each_other_and_cuts_and_loss_take_effect() {
    if !needs_root("hosts_reach_each_other_and_cuts_and_loss_take_effect") {
        return;
    }
    let lab = Lab::new(3).expect("a lab of 3 hosts");
    let mut servers = Vec::new();
    for i in 0..3 {
        let mut c = lab.command(i, ECHO);
        c.args(["listen", &format!("{}:7000", lab.host(i).addr)]);
        let mut child = lab.spawn_piped(c).expect("start lab-echo");
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().expect("piped"))
            .read_line(&mut line)
            .expect("ready line");
        assert_eq!(line.trim(), "ready");
        servers.push(child);
    }
    for a in 0..3 {
        for b in 0..3 {
            if a != b {
                assert!(reaches(&lab, a, b), "{a} -> {b}");
            }
        }
    }
    lab.cut(1).unwrap();
    assert!(!reaches(&lab, 0, 1), "a cut host is unreachable");
    assert!(!reaches(&lab, 1, 2), "a cut host reaches no one");
    assert!(reaches(&lab, 0, 2), "the others still talk");
    lab.heal(1).unwrap();
    assert!(
        eventually(|| reaches(&lab, 0, 1)),
        "a healed host is reachable again"
    );

    lab.set_loss(2, 100).unwrap();
    assert!(!reaches(&lab, 0, 2), "100% loss lets nothing in");
    lab.set_loss(2, 0).unwrap();
    assert!(eventually(|| reaches(&lab, 0, 2)), "loss removed");
    for mut s in servers {
        let _ = s.kill();
        let _ = s.wait();
    }
}

/// What `ip ARGS` prints.
fn output_of(args: &[&str]) -> String {
    let out = Command::new("ip").args(args).output().expect("run ip");
    String::from_utf8(out.stdout).expect("ip prints text")
}

#[test]
fn nothing_is_left_behind() {
    if !needs_root("nothing_is_left_behind") {
        return;
    }
    let names: Vec<String>;
    {
        let lab = Lab::new(2).expect("a lab");
        names = lab.hosts().iter().map(|h| h.netns.clone()).collect();
        let mut c = lab.command(0, "sleep");
        c.arg("600");
        lab.spawn(c).expect("a process inside the lab");
    }
    let list = output_of(&["netns", "list"]);
    for n in &names {
        assert!(!list.contains(n.as_str()), "{n} survived the lab");
    }
    let pid = std::process::id();
    let links = output_of(&["-o", "link"]);
    // This process's other tests may have labs up; only links of dropped labs must be gone.
    for n in &names {
        let index = n.rsplit('-').next().unwrap();
        let seq = n.rsplit('-').nth(1).unwrap().parse::<u32>().unwrap();
        let veth = format!("chv{pid:x}{seq:x}-{index}");
        assert!(!links.contains(&veth), "{veth} survived the lab");
    }
}

#[test]
fn leftovers_of_a_dead_run_are_removed() {
    if !needs_root("leftovers_of_a_dead_run_are_removed") {
        return;
    }
    // A namespace named as if by a process that no longer exists (pids never reach this).
    let stale = "chorus-lab-4194305-0-0";
    let _ = Command::new("ip").args(["netns", "add", stale]).output();
    let _lab = Lab::new(1).expect("a lab");
    let list = output_of(&["netns", "list"]);
    assert!(!list.contains(stale), "the stale namespace was removed");
}
