//! Two promises of the everyday path, through real processes formed the README's way: a
//! `chorus pause` outlives a restart of the daemon (the share stays untouched until
//! `chorus resume`), and `chorus log` says (on stderr, under its table) how far back the
//! history kept here reaches, as config.toml's `keep_versions` and `keep_days` set it.

mod support;

use std::time::Duration;

use support::group::{Group, wait_until};

#[test]
fn a_pause_outlives_a_restart() {
    let mut g = Group::new();
    let a = g.init(g.at("a"));
    let b = g.join(a, g.at("b"));
    std::fs::write(g.file(a, "one.txt"), "one\n").unwrap();
    g.wait_everywhere("one.txt", b"one\n");

    g.ask(b, &["pause"]);
    g.stop(b);
    g.restart(b);
    assert_eq!(g.status(b)["paused"], true, "paused after the restart");
    let head = g.head(a);
    std::fs::write(g.file(a, "two.txt"), "two\n").unwrap();
    // The other member has it; the paused one is left alone.
    wait_until("the leader accepts the edit", || {
        let s = g.status(a);
        s["head"]["number"] != head.as_str() && s["settled"] == true
    });
    std::thread::sleep(Duration::from_secs(2));
    assert!(!g.file(b, "two.txt").exists(), "a paused share was written");

    g.ask(b, &["resume"]);
    g.wait_everywhere("two.txt", b"two\n");
    g.stop(b);
    g.restart(b);
    assert_eq!(
        g.status(b)["paused"],
        false,
        "a resume outlives a restart too"
    );
}

#[test]
fn the_log_says_how_far_back_history_reaches() {
    let mut g = Group::new();
    let a = g.init(g.at("a"));
    g.stop(a);
    g.set_config(a, "keep_versions", "7");
    g.set_config(a, "keep_days", "2");
    g.restart(a);
    std::fs::write(g.file(a, "x.txt"), "x\n").unwrap();
    // Under the table, on stderr (stdout is the table alone).
    let footer = || {
        let out = support::group::cli_in(None, &["log", "--folder", g.path(a)]);
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    wait_until("a version", || footer().contains("history kept here"));
    let log = footer();
    assert!(
        log.contains("the last 7 versions and all of the last 2 days"),
        "{log}"
    );
    assert_eq!(g.status(a)["retention"]["keep_versions"], 7);
}
