//! The CLI has the habits its users have, checked with real processes on a group formed the
//! README's way: results on stdout and advice on stderr (`TOKEN=$(chorus invite)` is exactly
//! the token; every `--json` is pure JSON); client commands find the share from any folder
//! inside it, as git finds its repository; `chorus status --watch` writes plain lines when
//! piped; shell completions and man pages come from the clap definitions.

mod support;

use std::io::{BufRead, BufReader};
use std::process::Stdio;

use support::group::{Group, cli_in, ok, ok_in, wait_until};
use support::procs::chorus;

/// All of `out` parses as one JSON value.
fn pure_json(what: &str, out: &str) -> serde_json::Value {
    serde_json::from_str(out)
        .unwrap_or_else(|e| panic!("{what}: stdout is not pure JSON ({e}):\n{out}"))
}

#[test]
fn stdout_holds_the_result_and_stderr_the_advice() {
    let mut g = Group::new();
    let a = g.init(g.at("a"));

    // Exactly the token, as `TOKEN=$(chorus invite)` takes it, from inside the share.
    let out = cli_in(Some(&g.nodes[a].path), &["invite"]);
    assert!(out.status.success());
    let stdout = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    let token = stdout.strip_suffix('\n').unwrap_or(&stdout);
    assert!(
        token.starts_with("chorus1") && !token.contains(char::is_whitespace),
        "stdout of `chorus invite` is not just the token: {stdout:?}"
    );
    assert!(
        stderr.contains("chorus join"),
        "the advice is on stderr: {stderr:?}"
    );
    // That token, whole, is what `chorus join` takes.
    let b_path = g.at("b");
    let out = cli_in(None, &["join", token, b_path.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "join with $(chorus invite): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.stdout.is_empty(),
        "join's messages are advice: {:?}",
        out.stdout
    );
    let b = g.start(b_path, Vec::new());
    std::fs::write(g.file(a, "x.txt"), "x\n").unwrap();
    g.wait_everywhere("x.txt", b"x\n");
    g.wait_converged();

    // Every --json is one JSON value and nothing else.
    for args in [
        &["status", "--json"][..],
        &["peers", "--json"],
        &["log", "--json"],
        &["conflicts", "--json"],
        &["invite", "--json"],
    ] {
        let v = pure_json(&format!("{args:?}"), &g.ask(b, args));
        assert!(!v.is_null(), "{args:?}");
    }
    let head = g.head(a);
    let shown = pure_json(
        "show --json",
        &g.ask(a, &["show", &head, "x.txt", "--json"]),
    );
    assert_eq!(shown["text"], "x\n");
    let listed = pure_json("ls --json", &g.ask(a, &["ls", &head, "--json"]));
    assert_eq!(listed["entries"][0]["path"], "x.txt");
    let paused = pure_json("pause --json", &g.ask(b, &["pause", "--json"]));
    assert_eq!(paused["paused"], true);
    pure_json("resume --json", &g.ask(b, &["resume", "--json"]));
    // `chorus init` says what to do next, on stderr.
    let out = cli_in(None, &["init", g.at("c").to_str().unwrap()]);
    assert!(out.status.success() && out.stdout.is_empty(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("chorus run"));
}

#[test]
fn client_commands_find_the_share_from_any_folder_inside_it() {
    let mut g = Group::new();
    let a = g.init(g.at("share"));
    let deep = g.file(a, "docs/notes/2025");
    std::fs::create_dir_all(&deep).unwrap();
    let share = std::fs::canonicalize(&g.nodes[a].path).unwrap();
    let share_of = |s: serde_json::Value| s["share"].as_str().unwrap().to_owned();

    // From a subfolder, from the state dir itself, and with --folder naming a subfolder.
    for dir in [deep.clone(), g.file(a, ".chorus"), g.nodes[a].path.clone()] {
        let s = pure_json("status", &ok_in(Some(&dir), &["status", "--json"]));
        assert_eq!(
            share_of(s),
            share.to_str().unwrap(),
            "from {}",
            dir.display()
        );
    }
    let s = pure_json(
        "status --folder",
        &ok(&["status", "--json", "--folder", deep.to_str().unwrap()]),
    );
    assert_eq!(share_of(s), share.to_str().unwrap());
    // --state-dir still names the daemon directly.
    let state = g.file(a, ".chorus");
    ok(&["status", "--state-dir", state.to_str().unwrap()]);
    // A path that is not in a share: a one-line error that says what to do.
    let outside = tempfile::tempdir().unwrap();
    let out = cli_in(Some(outside.path()), &["status"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no chorus share here") && err.contains("--folder"),
        "{err}"
    );

    // A document share is found from the folder it sits in and by its own path.
    let doc = g.at("notes.md");
    std::fs::write(&doc, "hello\n").unwrap();
    g.init(doc.clone());
    let s = pure_json(
        "doc status",
        &ok_in(Some(g.root.path()), &["status", "--json"]),
    );
    assert_eq!(
        share_of(s),
        std::fs::canonicalize(&doc).unwrap().to_str().unwrap()
    );
    let s = pure_json(
        "doc status --folder",
        &ok(&["status", "--json", "--folder", doc.to_str().unwrap()]),
    );
    assert_eq!(
        share_of(s),
        std::fs::canonicalize(&doc).unwrap().to_str().unwrap()
    );
}

#[test]
fn status_watch_writes_plain_lines_when_piped() {
    let mut g = Group::new();
    let a = g.init(g.at("a"));
    g.wait_converged();
    let mut child = chorus()
        .args(["status", "--watch", "--folder", g.path(a)])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok).take(3) {
            let _ = tx.send(line);
        }
    });
    let mut lines = Vec::new();
    while lines.len() < 3 {
        match rx.recv_timeout(support::group::LIVENESS) {
            Ok(l) => lines.push(l),
            Err(_) => break,
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(lines.len(), 3, "three lines, one a second: {lines:?}");
    for l in &lines {
        assert!(
            !l.contains('\x1b') && !l.contains('\r'),
            "no cursor codes: {l:?}"
        );
        assert!(l.contains("head") && l.contains("in sync"), "{l:?}");
    }

    // Going away when the reader does (`| head -1`): the command ends by itself.
    let mut child = chorus()
        .args(["status", "--watch", "--folder", g.path(a)])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert!(first.contains("head"), "{first:?}");
    wait_until("status --watch to end once its reader is gone", || {
        child.try_wait().unwrap().is_some()
    });
}

#[test]
fn completions_and_man_pages_come_from_the_command_definitions() {
    let bash = ok(&["completions", "bash"]);
    assert!(
        bash.contains("complete -F") && bash.contains("_chorus"),
        "{bash}"
    );
    for word in ["invite", "conflicts", "ls", "--listen", "--state-dir"] {
        assert!(bash.contains(word), "bash completion lacks {word}");
    }
    let zsh = ok(&["completions", "zsh"]);
    assert!(
        zsh.starts_with("#compdef chorus"),
        "{}",
        &zsh[..80.min(zsh.len())]
    );
    assert!(ok(&["completions", "fish"]).contains("complete -c chorus"));
    let out = cli_in(None, &["completions", "tcsh-or-so"]);
    assert_eq!(out.status.code(), Some(2));

    let man = ok(&["man"]);
    assert!(
        man.starts_with(".ie") || man.contains(".TH chorus"),
        "{}",
        &man[..200.min(man.len())]
    );
    for word in ["chorus\\-invite", "chorus\\-ls", "chorus\\-completions"] {
        assert!(man.contains(word), "the man page lacks {word}");
    }
    let dir = tempfile::tempdir().unwrap();
    let out = cli_in(None, &["man", "--dir", dir.path().to_str().unwrap()]);
    assert!(out.status.success() && out.stdout.is_empty(), "{out:?}");
    for page in [
        "chorus.1",
        "chorus-run.1",
        "chorus-ls.1",
        "chorus-conflicts.1",
    ] {
        let text = std::fs::read_to_string(dir.path().join(page))
            .unwrap_or_else(|e| panic!("{page}: {e}"));
        assert!(text.contains(".TH"), "{page}");
    }
    let run = std::fs::read_to_string(dir.path().join("chorus-run.1")).unwrap();
    assert!(run.contains("listen"), "chorus-run.1 documents --listen");
}
