//! Browsing history from the CLI and the socket, with real processes on a group formed the
//! README's way: `chorus ls VERSION [PATH]` (and `GET /v1/tree`) lists what a version held;
//! `chorus conflicts` previews each displaced change, and `chorus conflicts SEQ` shows one as
//! a diff against what won (a hunk in its context; a binary file by its sizes); the node whose
//! change lost is told (status, log line, a `displaced` event on `GET /v1/events`).

mod support;

use support::group::{Group, PLAN, cli_in, wait_until};

fn lines_with<'a>(text: &'a str, words: &[&str]) -> Vec<&'a str> {
    text.lines()
        .filter(|l| words.iter().all(|w| l.contains(w)))
        .collect()
}

#[test]
fn ls_lists_what_a_version_held() {
    let mut g = Group::new();
    let a = g.init(g.at("a"));
    let b = g.join(a, g.at("b"));
    std::fs::write(g.file(a, "notes.txt"), "first\n").unwrap();
    g.wait_everywhere("notes.txt", b"first\n");
    g.wait_converged();
    let first = g.head(a);

    std::fs::create_dir_all(g.file(a, "docs/guide")).unwrap();
    std::fs::create_dir_all(g.file(a, "bin")).unwrap();
    std::fs::write(g.file(a, "docs/guide/intro.md"), "# intro\n").unwrap();
    std::fs::write(g.file(a, "bin/run.sh"), "#!/bin/sh\necho hi\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        g.file(a, "bin/run.sh"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    std::os::unix::fs::symlink("notes.txt", g.file(a, "latest")).unwrap();
    g.wait_everywhere("docs/guide/intro.md", b"# intro\n");
    g.wait_everywhere("bin/run.sh", b"#!/bin/sh\necho hi\n");
    wait_until("the symlink on b", || g.file(b, "latest").is_symlink());
    g.wait_converged();
    let head = g.head(b);

    // The root, one level, as `ls -l` would: directories, an executable, a link.
    let root = g.ask(b, &["ls", &head]);
    assert_eq!(lines_with(&root, &["drwx", "docs/"]).len(), 1, "{root}");
    assert_eq!(lines_with(&root, &["drwx", "bin/"]).len(), 1, "{root}");
    assert_eq!(
        lines_with(&root, &["-rw-", " 6 ", "notes.txt"]).len(),
        1,
        "{root}"
    );
    assert_eq!(
        lines_with(&root, &["lrwxrwxrwx", "latest -> notes.txt"]).len(),
        1,
        "{root}"
    );
    assert!(!root.contains("intro.md"), "one level only:\n{root}");
    // A folder, a file, everything below with -R.
    let bin = g.ask(b, &["ls", &head, "bin"]);
    assert_eq!(
        lines_with(&bin, &["-x", " 18 ", "bin/run.sh"]).len(),
        1,
        "{bin}"
    );
    let one = g.ask(b, &["ls", &head, "bin/run.sh"]);
    assert_eq!(one.lines().count(), 1, "{one}");
    let all = g.ask(b, &["ls", &head, "-R"]);
    assert!(
        all.contains("docs/guide/intro.md") && all.contains("bin/run.sh"),
        "{all}"
    );
    let docs = g.ask(b, &["ls", &head, "docs", "--recursive"]);
    assert!(
        docs.contains("docs/guide/") && docs.contains("docs/guide/intro.md"),
        "{docs}"
    );
    assert!(!docs.contains("run.sh"), "{docs}");
    // An older version held less.
    let then = g.ask(b, &["ls", &first]);
    assert_eq!(then.lines().count(), 1, "{then}");
    assert!(then.contains("notes.txt"), "{then}");

    // --json, and the socket endpoint behind it.
    let json: serde_json::Value =
        serde_json::from_str(&g.ask(b, &["ls", &head, "bin", "--json"])).unwrap();
    assert_eq!(json["version"], head.as_str());
    assert_eq!(
        json["entries"],
        serde_json::json!([{"path": "bin/run.sh", "kind": "file", "size": 18, "mode": "0755", "exec": true}])
    );
    let state = g.file(b, ".chorus");
    let raw =
        chorus::api::client::get(&state, &format!("/v1/tree?version={head}&path=docs")).unwrap();
    let tree: serde_json::Value = serde_json::from_slice(&raw).unwrap();
    assert_eq!(tree["entries"][0]["path"], "docs/guide");
    assert_eq!(tree["entries"][0]["kind"], "dir");

    // What is not there: a one-line error.
    let out = cli_in(None, &["ls", &head, "nope", "--folder", g.path(b)]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("nope is not in version"), "{err}");
    let out = cli_in(None, &["ls", "99.0", "--folder", g.path(b)]);
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn conflicts_preview_each_displaced_change_and_show_it_against_what_won() {
    let (g, a, b) = Group::with_plan();
    let base = PLAN;

    // b is offline (paused) while both change the same line and the same binary file.
    let (ours, theirs) = (
        base.replace("monday", "tuesday"),
        base.replace("monday", "wednesday"),
    );
    g.concurrent_edits(
        a,
        b,
        &[
            ("notes.txt", ours.as_bytes()),
            ("data.bin", &[0xffu8; 1000]),
        ],
        &[
            ("notes.txt", theirs.as_bytes()),
            ("data.bin", &[0xfeu8; 2000]),
        ],
    );
    // Both nodes' event streams (`GET /v1/events`), read from before the merge.
    let (tx, displaced_events) = std::sync::mpsc::channel();
    for i in [a, b] {
        let (tx, state) = (tx.clone(), g.file(i, ".chorus"));
        std::thread::spawn(move || {
            let _ = chorus::api::client::events(&state, |ev| {
                ev.kind != "displaced" || tx.send((i, ev.detail)).is_ok()
            });
        });
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
    g.ask(b, &["resume"]);
    let entries = |i: usize| -> Vec<serde_json::Value> {
        serde_json::from_str(&g.ask(i, &["conflicts", "--json"])).unwrap()
    };
    wait_until("two redo entries", || entries(a).len() >= 2);
    g.wait_converged();

    let merged = std::fs::read_to_string(g.file(a, "notes.txt")).unwrap();
    let (won, lost) = if merged.contains("when: tuesday") {
        ("tuesday", "wednesday")
    } else {
        ("wednesday", "tuesday")
    };
    let all = entries(a);
    let hunk = all
        .iter()
        .find(|e| e["what"] == "hunk")
        .expect("a hunk entry");
    let whole = all
        .iter()
        .find(|e| e["what"] == "whole")
        .expect("a whole entry");
    assert_eq!(hunk["kept"], format!("when: {won}\n"), "{hunk}");
    assert_eq!(hunk["preview"], format!("when: {lost}\n"), "{hunk}");

    // The node whose change lost is told, once, until the user looks (`--json` is for
    // scripts and does not count as looking).
    let (loser, winner) = if lost == "wednesday" { (b, a) } else { (a, b) };
    let hunk_seq = hunk["seq"].as_u64().unwrap();
    wait_until("the loser's status names the displaced change", || {
        g.status(loser)["displaced_here"]
            .as_array()
            .is_some_and(|s| s.iter().any(|x| x.as_u64() == Some(hunk_seq)))
    });
    let human = g.ask(loser, &["status"]);
    assert!(human.contains("lost to a merge"), "{human}");
    wait_until("the loser's log says it", || {
        g.log(loser).contains("was displaced by")
    });
    let mut told = Vec::new();
    wait_until("a displaced event on the loser's stream", || {
        told.extend(displaced_events.try_iter());
        told.iter()
            .any(|(i, d)| *i == loser && d["seq"].as_u64() == Some(hunk_seq))
    });
    assert!(
        told.iter()
            .all(|(i, d)| *i == loser || d["seq"].as_u64() != Some(hunk_seq)),
        "only the loser is told: {told:?}"
    );
    g.ask(loser, &["conflicts"]);
    assert!(
        g.status(loser)["displaced_here"].as_array().is_none(),
        "seen: {}",
        g.status(loser)
    );
    assert!(
        !g.status(winner)["displaced_here"]
            .as_array()
            .is_some_and(|s| s.iter().any(|x| x.as_u64() == Some(hunk_seq))),
        "the winner is not told it lost"
    );

    // The table shows the displaced text.
    let table = g.ask(a, &["conflicts"]);
    assert!(table.lines().next().unwrap().contains("PREVIEW"), "{table}");
    let row = lines_with(&table, &["hunk", "notes.txt"]);
    assert!(
        row.len() == 1 && row[0].contains(&format!("when: {lost}")),
        "{table}"
    );
    let row = lines_with(&table, &["whole", "data.bin"]);
    assert!(row.len() == 1 && row[0].contains("bytes"), "{table}");

    // One hunk against what won, in its context.
    let seq = hunk["seq"].to_string();
    let out = cli_in(None, &["conflicts", &seq, "--folder", g.path(a)]);
    assert!(out.status.success());
    let shown = String::from_utf8(out.stdout).unwrap();
    let hint = String::from_utf8(out.stderr).unwrap();
    let diff: Vec<&str> = shown.lines().skip_while(|l| !l.starts_with("@@")).collect();
    assert_eq!(
        diff,
        [
            "@@ -1,5 +1,5 @@",
            " title: the plan",
            " who: alice",
            " where: the office",
            &format!("-when: {won}"),
            &format!("+when: {lost}"),
            " what: kickoff",
        ][..],
        "{shown}"
    );
    assert!(
        shown.contains("--- notes.txt") && shown.contains("+++ notes.txt"),
        "{shown}"
    );
    assert!(hint.contains(&format!("chorus redo {seq}")), "{hint}");
    // A binary file by its sizes.
    let seq = whole["seq"].to_string();
    let shown = g.ask(a, &["conflicts", &seq]);
    let (won_size, lost_size) = if std::fs::read(g.file(a, "data.bin")).unwrap().len() == 1000 {
        (1000, 2000)
    } else {
        (2000, 1000)
    };
    assert!(
        shown.contains(&format!("what won: a file of {won_size} bytes"))
            && shown.contains(&format!("displaced: a file of {lost_size} bytes")),
        "{shown}"
    );
    // --json with SEQ: that entry alone; an unknown SEQ: a one-line error.
    let one: serde_json::Value =
        serde_json::from_str(&g.ask(a, &["conflicts", &seq, "--json"])).unwrap();
    assert_eq!(one["seq"], whole["seq"]);
    let out = cli_in(None, &["conflicts", "9999", "--folder", g.path(a)]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no redo entry 9999"));
}

#[test]
fn undo_walks_back_redo_forward_and_history_leaves_ignored_files_alone() {
    let mut g = Group::new();
    let a = g.init(g.at("a"));
    let b = g.join(a, g.at("b"));
    let read = |g: &Group, i: usize, p: &str| std::fs::read_to_string(g.file(i, p)).ok();

    // A file the group shares, then made private on a by a rule; output only a ever had.
    std::fs::write(g.file(a, "secret.env"), "KEY=shared once\n").unwrap();
    g.wait_everywhere("secret.env", b"KEY=shared once\n");
    g.wait_converged();
    let before_rules = g.head(a);
    std::fs::write(g.file(a, ".chorusignore"), "secret.env\nbuild/\n").unwrap();
    g.wait_everywhere(".chorusignore", b"secret.env\nbuild/\n");
    g.wait_converged();
    std::fs::write(g.file(a, "secret.env"), "KEY=only on a\n").unwrap();
    std::fs::create_dir(g.file(a, "build")).unwrap();
    std::fs::write(g.file(a, "build/out.o"), "local output\n").unwrap();

    // Three edits, then `chorus undo` three times on b (not where they were made): each goes
    // one version further back, on every node; `chorus redo` three times comes forward again.
    for word in ["one\n", "two\n", "three\n"] {
        std::fs::write(g.file(a, "f.txt"), word).unwrap();
        g.wait_everywhere("f.txt", word.as_bytes());
        g.wait_converged();
    }
    for expect in ["two\n", "one\n"] {
        g.ask(b, &["undo"]);
        g.wait_everywhere("f.txt", expect.as_bytes());
        g.wait_converged();
        // A restart of b's daemon in the middle of the walk does not end it.
        if expect == "two\n" {
            g.restart(b);
            g.wait_converged();
        }
    }
    g.ask(b, &["undo"]);
    wait_until("f.txt gone everywhere", || {
        read(&g, a, "f.txt").is_none() && read(&g, b, "f.txt").is_none()
    });
    g.wait_converged();
    for expect in ["one\n", "two\n", "three\n"] {
        g.ask(b, &["redo"]);
        g.wait_everywhere("f.txt", expect.as_bytes());
        g.wait_converged();
    }

    // Back to a version from before the rules: the rules stay, the ignored paths keep what
    // each machine has, and nothing private reaches b, then or after an undo.
    g.ask(a, &["restore", &before_rules]);
    wait_until("f.txt gone everywhere after the restore", || {
        read(&g, a, "f.txt").is_none() && read(&g, b, "f.txt").is_none()
    });
    g.wait_converged();
    g.ask(a, &["undo"]);
    g.wait_everywhere("f.txt", b"three\n");
    g.wait_converged();
    // A rescan's worth of time for anything that would leak.
    std::thread::sleep(std::time::Duration::from_secs(2));
    g.wait_converged();
    for i in [a, b] {
        assert_eq!(
            read(&g, i, ".chorusignore").as_deref(),
            Some("secret.env\nbuild/\n"),
            "history never switches a rule off (node {i})"
        );
    }
    assert_eq!(
        read(&g, a, "secret.env").as_deref(),
        Some("KEY=only on a\n")
    );
    assert_eq!(
        read(&g, a, "build/out.o").as_deref(),
        Some("local output\n")
    );
    assert_eq!(
        read(&g, b, "secret.env").as_deref(),
        Some("KEY=shared once\n"),
        "an ignore rule stops syncing a path; it deletes or changes it nowhere"
    );
    assert!(!g.file(b, "build").exists(), "a's ignored output reached b");
}

#[test]
fn a_sparse_file_stays_sparse_on_the_other_machines() {
    use std::os::unix::fs::MetadataExt;
    let mut g = Group::new();
    let a = g.init(g.at("a"));
    let b = g.join(a, g.at("b"));
    // 256 MiB of which 4 KiB are data at the start and at the end, as `truncate` and a
    // database's preallocation leave them.
    const SIZE: u64 = 256 << 20;
    {
        use std::io::{Seek, SeekFrom, Write};
        let mut f = std::fs::File::create(g.file(a, "disk.img")).unwrap();
        f.write_all(&[7u8; 4096]).unwrap();
        f.set_len(SIZE).unwrap();
        f.seek(SeekFrom::Start(SIZE - 4096)).unwrap();
        f.write_all(&[9u8; 4096]).unwrap();
    }
    let on_a = std::fs::metadata(g.file(a, "disk.img")).unwrap();
    if on_a.blocks() * 512 >= SIZE / 2 {
        eprintln!("SKIPPED: this filesystem does not keep holes, so sparseness cannot be seen");
        return;
    }
    wait_until("disk.img whole on b", || {
        std::fs::metadata(g.file(b, "disk.img")).is_ok_and(|m| m.len() == SIZE)
    });
    g.wait_converged();
    // The copy's bytes, a MiB at a time (no 256 MiB buffer in the test); `middle`: 4 KiB of
    // 5s at the middle too.
    let check = |middle: bool| {
        let mut copy = std::fs::File::open(g.file(b, "disk.img")).unwrap();
        let mut block = vec![0u8; 1 << 20];
        let mut at = 0u64;
        while at < SIZE {
            use std::io::Read;
            let n = copy.read(&mut block).unwrap();
            assert!(n > 0, "b's copy ends early, at {at}");
            for (i, &x) in block[..n].iter().enumerate() {
                let off = at + i as u64;
                let want = if off < 4096 {
                    7
                } else if off >= SIZE - 4096 {
                    9
                } else if middle && (SIZE / 2..SIZE / 2 + 4096).contains(&off) {
                    5
                } else {
                    0
                };
                assert_eq!(x, want, "byte {off} of b's copy");
            }
            at += n as u64;
        }
        let on_b = std::fs::metadata(g.file(b, "disk.img")).unwrap();
        assert!(
            on_b.blocks() * 512 < 16 << 20,
            "b's copy of a 256 MiB file with {} KiB of data takes {} bytes on disk",
            if middle { 12 } else { 8 },
            on_b.blocks() * 512
        );
    };
    check(false);

    // Written in place in its middle, as a database does: b's new copy takes the chunks it
    // shares with its old one from that file (a big file's, read and written past the page
    // cache), and stays byte for byte what a has, holes and all.
    {
        use std::os::unix::fs::FileExt;
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(g.file(a, "disk.img"))
            .unwrap();
        f.write_all_at(&[5u8; 4096], SIZE / 2).unwrap();
    }
    wait_until("the middle of disk.img on b", || {
        use std::os::unix::fs::FileExt;
        let mut at = [0u8; 1];
        std::fs::File::open(g.file(b, "disk.img"))
            .and_then(|f| f.read_exact_at(&mut at, SIZE / 2))
            .is_ok_and(|()| at[0] == 5)
    });
    g.wait_converged();
    check(true);
}

/// A save made while the machine cannot reach a leader (the other machine of a two-machine
/// group is stopped), then `chorus restore` and `chorus undo`: written over at once, the save
/// would be in no version the group ever sees. Both are refused, saying why and what to do, and
/// the save stays; once the other machine is back the save reaches it, and the restore works.
#[test]
fn restore_and_undo_wait_for_a_save_no_leader_has_taken() {
    let mut g = Group::new();
    let a = g.init(g.at("a"));
    let b = g.join(a, g.at("b"));
    std::fs::write(g.file(a, "f.txt"), "one\n").unwrap();
    g.wait_everywhere("f.txt", b"one\n");
    g.wait_converged();
    let first = g.head(a);
    std::fs::write(g.file(a, "f.txt"), "two\n").unwrap();
    g.wait_everywhere("f.txt", b"two\n");
    g.wait_converged();
    g.stop(a);
    std::fs::write(g.file(b, "g.txt"), "saved while a is down\n").unwrap();
    for args in [vec!["restore", first.as_str()], vec!["undo"]] {
        let mut all = args.clone();
        all.extend(["--folder", g.path(b)]);
        let out = cli_in(None, &all);
        let said = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && said.contains("not accepted") && said.contains("settled"),
            "`chorus {}` is refused while the save is not accepted: {said}",
            args[0]
        );
    }
    assert_eq!(
        std::fs::read_to_string(g.file(b, "g.txt")).unwrap(),
        "saved while a is down\n"
    );
    g.restart(a);
    g.wait_everywhere("g.txt", b"saved while a is down\n");
    g.wait_converged();
    let with_save = g.head(a);
    g.ask(b, &["restore", &first]);
    g.wait_everywhere("f.txt", b"one\n");
    g.wait_missing_everywhere("g.txt");
    g.wait_converged();
    // The save is in the history the group shares.
    assert_eq!(
        g.ask(a, &["show", &with_save, "g.txt"]),
        "saved while a is down\n"
    );
}
