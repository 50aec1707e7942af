//! chorus as a user runs it, with real processes: `chorus init`, `chorus invite`, `chorus join`
//! twice, `chorus run PATH`; edits on every node appear on all; undo, redo and restore
//! round-trip; conflicting edits give one merged result everywhere and a redo entry that
//! `chorus redo` brings back, on any member (a small binary file's losing side too, on the
//! member that never held it); the socket is mode 0600; the mass-delete guard holds and releases;
//! `[[merge]]` rules in config.toml choose how a path merges; a document share merges
//! concurrent typing character by character; a node killed with
//! SIGKILL and restarted keeps an edit made while it was down; bad input gets a one-line error;
//! a file no member can take is named in the log once; a file moved, or saved through a temp
//! file, is renamed on the other members rather than written again; the whole rescan runs at
//! low priority.
//!
//! Waits are liveness bounds (a stuck cluster fails the test), not speed assertions. Each
//! process's output is kept and printed when a test fails.

mod support;

use support::group::{Group, cli_in, ok, read, wait_until};

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

#[test]
fn init_invite_join_edit_undo_redo_restore_conflict_and_restart() {
    let mut g = Group::new();
    let a = g.init(g.at("a"));
    let b = g.join(a, g.at("b"));
    let c = g.join(a, g.at("c"));

    // The socket is private to its user.
    let sock = g.file(a, ".chorus/api.sock");
    assert_eq!(
        std::fs::metadata(&sock).unwrap().permissions().mode() & 0o777,
        0o600
    );

    // Edits on each node appear on all.
    for (i, name) in [(a, "from-a.txt"), (b, "from-b.txt"), (c, "sub/from-c.txt")] {
        std::fs::create_dir_all(g.file(i, name).parent().unwrap()).unwrap();
        std::fs::write(g.file(i, name), format!("written on {i}\n")).unwrap();
    }
    for (i, name) in [(a, "from-a.txt"), (b, "from-b.txt"), (c, "sub/from-c.txt")] {
        g.wait_everywhere(name, format!("written on {i}\n").as_bytes());
    }
    g.wait_converged();

    // Undo on c takes back the newest version everywhere; redo brings it back; restore of an
    // older version too, then of one path.
    std::fs::write(g.file(b, "undo-me.txt"), "new\n").unwrap();
    g.wait_everywhere("undo-me.txt", b"new\n");
    g.wait_converged();
    let undone = g.ask(c, &["undo"]);
    assert!(undone.starts_with("undid version"), "{undone}");
    g.wait_missing_everywhere("undo-me.txt");
    g.wait_converged();
    g.ask(c, &["redo"]);
    g.wait_everywhere("undo-me.txt", b"new\n");
    g.wait_converged();
    // Restore a whole version, then one path of another.
    let with_undo_me = g.head(a);
    std::fs::remove_file(g.file(a, "undo-me.txt")).unwrap();
    std::fs::write(g.file(a, "later.txt"), "later\n").unwrap();
    g.wait_everywhere("later.txt", b"later\n");
    g.wait_missing_everywhere("undo-me.txt");
    g.wait_converged();
    let with_later = g.head(a);
    // `chorus show` prints a file of an earlier version.
    assert_eq!(g.ask(c, &["show", &with_undo_me, "undo-me.txt"]), "new\n");
    g.ask(b, &["restore", &with_undo_me]);
    g.wait_everywhere("undo-me.txt", b"new\n");
    g.wait_missing_everywhere("later.txt");
    g.wait_converged();
    g.ask(c, &["restore", &with_later, "later.txt"]);
    g.wait_everywhere("later.txt", b"later\n");
    g.wait_everywhere("undo-me.txt", b"new\n");
    g.wait_converged();

    // A conflict: b edits the same line while paused, a edits it too; b resumes.
    std::fs::write(g.file(a, "t.txt"), "one\ntwo\nthree\n").unwrap();
    g.wait_everywhere("t.txt", b"one\ntwo\nthree\n");
    g.wait_converged();
    g.ask(b, &["pause"]);
    assert_eq!(g.status(b)["paused"], true);
    std::fs::write(g.file(b, "t.txt"), "one\nTWO from b\nthree\n").unwrap();
    std::fs::write(g.file(a, "t.txt"), "one\nTWO from a\nthree\n").unwrap();
    wait_until("a's edit to be accepted", || {
        read(&g.file(c, "t.txt")).as_deref() == Some("one\nTWO from a\nthree\n")
    });
    g.ask(b, &["resume"]);
    let (va, vb) = ("one\nTWO from a\nthree\n", "one\nTWO from b\nthree\n");
    // One of the two wins everywhere (the higher-numbered); the other is a redo entry.
    wait_until("one merged t.txt everywhere, and a redo entry", || {
        let t: Vec<_> = [a, b, c]
            .iter()
            .map(|&i| read(&g.file(i, "t.txt")))
            .collect();
        t.iter().all(|x| *x == t[0])
            && (t[0].as_deref() == Some(va) || t[0].as_deref() == Some(vb))
            && g.ask(c, &["conflicts", "--json"]).contains("t.txt")
    });
    g.wait_converged();
    let merged = read(&g.file(a, "t.txt")).unwrap();
    let conflicts: Vec<serde_json::Value> =
        serde_json::from_str(&g.ask(c, &["conflicts", "--json"])).unwrap();
    let entry = conflicts.last().expect("a redo entry");
    assert_eq!(entry["path"], "t.txt");
    let loser = if merged == va { vb } else { va };
    let said = g.ask(c, &["redo", &entry["seq"].to_string()]);
    assert!(said.contains("in place"), "{said}");
    g.wait_everywhere("t.txt", loser.as_bytes());
    g.wait_converged();
    // With the file gone, the same entry comes back beside where it was, saying why.
    std::fs::remove_file(g.file(c, "t.txt")).unwrap();
    g.wait_missing_everywhere("t.txt");
    g.wait_converged();
    let said = g.ask(c, &["redo", &entry["seq"].to_string()]);
    assert!(said.contains("because the file is gone"), "{said}");
    let beside = format!("t.txt.redo-{}", entry["displaced_from"].as_str().unwrap());
    wait_until("the redo beside the deleted file everywhere", || {
        [a, b, c].iter().all(|&i| {
            read(&g.file(i, &beside)).is_some_and(|t| t.contains(loser.lines().nth(1).unwrap()))
        })
    });
    g.wait_converged();

    // Per-peer figures: bytes both ways, and a round trip once a ping has gone.
    wait_until("per-peer bytes and round trips", || {
        let peers: Vec<serde_json::Value> =
            serde_json::from_str(&g.ask(a, &["peers", "--json"])).unwrap();
        peers.len() == 2
            && peers.iter().all(|p| {
                p["bytes_sent"].as_u64() > Some(0)
                    && p["bytes_received"].as_u64() > Some(0)
                    && p["rtt_ms"].as_f64().is_some()
            })
    });

    // kill -9 of b; an edit made while it is down is synced after the restart.
    g.kill(b);
    std::fs::write(g.file(b, "offline.txt"), "written while down\n").unwrap();
    std::fs::write(g.file(a, "online.txt"), "written meanwhile\n").unwrap();
    g.restart(b);
    g.wait_everywhere("offline.txt", b"written while down\n");
    g.wait_everywhere("online.txt", b"written meanwhile\n");
    g.wait_converged();
}

/// A small binary file (a few chunks) loses a conflict, and `chorus redo` is run on the member
/// that neither led nor wrote the losing side: the one that never held its chunks. The loser
/// comes back on every member. Before, the redo entry named the loser's chunks by list alone,
/// and the redo there failed ("chunk … is not in the store") however long it waited.
#[test]
fn a_small_binary_files_losing_side_comes_back_by_redo_on_a_member_that_never_held_it() {
    let mut g = Group::new();
    let a = g.init(g.at("a"));
    let b = g.join(a, g.at("b"));
    let c = g.join(a, g.at("c"));
    // Pseudo-random bytes: binary, a few chunks.
    let binary = |seed: u64| chorus_sync::testing::noise(seed, 60_000);
    std::fs::write(g.file(a, "photo.raw"), binary(1)).unwrap();
    g.wait_everywhere("photo.raw", &binary(1));
    g.wait_converged();
    let leader = |g: &Group| {
        [a, b, c]
            .into_iter()
            .find(|&i| g.status(i)["role"] == "leader")
    };
    let led_before = leader(&g);
    // b is paused while c changes the file and b changes it too; then b resumes.
    let (c_side, b_side) = (binary(2), binary(3));
    g.concurrent_edits(c, b, &[("photo.raw", &c_side)], &[("photo.raw", &b_side)]);
    g.ask(b, &["resume"]);
    wait_until("one photo.raw everywhere, and a redo entry", || {
        let t: Vec<_> = [a, b, c]
            .iter()
            .map(|&i| std::fs::read(g.file(i, "photo.raw")).ok())
            .collect();
        t.iter().all(|x| *x == t[0])
            && (t[0].as_deref() == Some(&c_side[..]) || t[0].as_deref() == Some(&b_side[..]))
            && g.ask(a, &["conflicts", "--json"]).contains("photo.raw")
    });
    g.wait_converged();
    let kept = std::fs::read(g.file(a, "photo.raw")).unwrap();
    let (loser, author) = if kept == c_side {
        (&b_side, b)
    } else {
        (&c_side, c)
    };
    // The member that never held the loser's chunks: neither its author nor a leader (should
    // leadership have moved meanwhile, any member but the author).
    let led_after = leader(&g);
    let third = [a, b, c]
        .into_iter()
        .find(|&i| i != author && Some(i) != led_before && Some(i) != led_after)
        .or_else(|| {
            eprintln!(
                "leadership moved during the conflict: the redo runs on a member that may hold the loser's chunks"
            );
            [a, b, c].into_iter().find(|&i| i != author)
        })
        .unwrap();
    let conflicts: Vec<serde_json::Value> =
        serde_json::from_str(&g.ask(third, &["conflicts", "--json"])).unwrap();
    let entry = conflicts.last().expect("a redo entry");
    assert_eq!(entry["path"], "photo.raw");
    g.ask(third, &["redo", &entry["seq"].to_string()]);
    g.wait_everywhere("photo.raw", loser);
    g.wait_converged();
}

#[test]
fn the_mass_delete_guard_holds_until_confirmed() {
    let mut g = Group::new();
    let a = g.init(g.at("a"));
    let b = g.join(a, g.at("b"));
    std::fs::create_dir(g.file(a, "many")).unwrap();
    for i in 0..30 {
        std::fs::write(g.file(a, &format!("many/f{i}")), format!("{i}\n")).unwrap();
    }
    std::fs::write(g.file(a, "keep.txt"), "kept\n").unwrap();
    g.wait_everywhere("many/f29", b"29\n");
    g.wait_converged();
    std::fs::remove_dir_all(g.file(a, "many")).unwrap();
    wait_until("the deletion to be held on b", || {
        g.status(b)["held"]["reason"] == "mass-delete"
    });
    assert_eq!(g.status(b)["held"]["deleting"], 30);
    assert!(g.file(b, "many/f0").exists(), "nothing deleted while held");
    // Plain resume does not release it; it says how.
    let out = cli_in(None, &["resume", "--folder", g.path(b)]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--confirm"));
    assert!(g.file(b, "many/f0").exists());
    g.ask(b, &["resume", "--confirm"]);
    wait_until("the deletion on b", || !g.file(b, "many").exists());
    assert_eq!(read(&g.file(b, "keep.txt")).as_deref(), Some("kept\n"));
    g.wait_converged();
}

#[test]
fn merge_rules_in_config_toml_choose_how_a_path_merges() {
    let mut g = Group::new();
    // `*.txt` merges whole on both machines (the rules apply where the merge runs: whichever
    // machine leads); `.md` files are sniffed, so they merge line by line.
    let rule = "\n[[merge]]\npath = \"*.txt\"\nmode = \"whole\"\n";
    let with_rule = |path: &Path| {
        let config = path.join(".chorus/config.toml");
        let mut text = std::fs::read_to_string(&config).unwrap();
        text.push_str(rule);
        std::fs::write(&config, text).unwrap();
    };
    let (one, two) = (g.at("one"), g.at("two"));
    std::fs::create_dir(&one).unwrap();
    ok(&["init", one.to_str().unwrap()]);
    with_rule(&one);
    let a = g.start(one, Vec::new());
    let token = g.invite(a);
    ok(&["join", &token, two.to_str().unwrap()]);
    with_rule(&two);
    let b = g.start(two, Vec::new());
    let base = "1\n2\n3\n4\n5\n";
    for name in ["data.txt", "notes.md"] {
        std::fs::write(g.file(a, name), base).unwrap();
        g.wait_everywhere(name, base.as_bytes());
    }
    g.wait_converged();
    // Both change different lines of both files while b is paused.
    g.ask(b, &["pause"]);
    let (on_b, on_a) = ("1\nTWO\n3\n4\n5\n", "1\n2\n3\nFOUR\n5\n");
    for name in ["data.txt", "notes.md"] {
        std::fs::write(g.file(b, name), on_b).unwrap();
        std::fs::write(g.file(a, name), on_a).unwrap();
    }
    wait_until("a's edits accepted", || {
        g.status(a)["head"]["version"] != g.status(b)["adopted"]["version"]
            && read(&g.file(a, "data.txt")).as_deref() == Some(on_a)
    });
    g.ask(b, &["resume"]);
    g.wait_everywhere("notes.md", b"1\nTWO\n3\nFOUR\n5\n");
    g.wait_converged();
    let data = read(&g.file(a, "data.txt")).unwrap();
    assert!(
        data == on_a || data == on_b,
        "data.txt merges whole, one side wins: {data:?}"
    );
    assert_eq!(read(&g.file(b, "data.txt")).as_deref(), Some(data.as_str()));
    let conflicts: Vec<serde_json::Value> =
        serde_json::from_str(&g.ask(a, &["conflicts", "--json"])).unwrap();
    assert!(
        conflicts.iter().any(|c| c["path"] == "data.txt"),
        "the losing data.txt is a redo entry: {conflicts:?}"
    );
    assert!(
        !conflicts.iter().any(|c| c["path"] == "notes.md"),
        "notes.md combined both edits: {conflicts:?}"
    );

    // A rule the merge cannot use stops `chorus run` with the file and the reason.
    let bad = g.at("bad");
    std::fs::create_dir(&bad).unwrap();
    ok(&["init", bad.to_str().unwrap()]);
    let config = bad.join(".chorus/config.toml");
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str("\n[[merge]]\npath = \"*.txt\"\nmode = \"newest\"\n");
    std::fs::write(&config, text).unwrap();
    let out = cli_in(None, &["run", bad.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("config.toml") && err.contains("expected lines, chars or whole"),
        "{err}"
    );
}

#[test]
fn a_document_share_merges_concurrent_typing_character_by_character() {
    let mut g = Group::new();
    std::fs::create_dir(g.at("one")).unwrap();
    std::fs::create_dir(g.at("two")).unwrap();
    let doc = g.at("one/notes.md");
    std::fs::write(&doc, "The quick brown fox\n").unwrap();
    let a = g.init(doc);
    let b = g.join(a, g.at("two/mine.md"));
    wait_until("the document on b", || {
        read(Path::new(g.path(b))).as_deref() == Some("The quick brown fox\n")
    });
    g.wait_converged();
    // Typing on both sides while b is paused: the same line, different words.
    g.ask(b, &["pause"]);
    std::fs::write(g.path(b), "The very quick brown fox\n").unwrap();
    std::fs::write(g.path(a), "The quick red fox\n").unwrap();
    wait_until("a's version accepted", || {
        g.status(a)["head"]["version"] != g.status(b)["adopted"]["version"]
    });
    g.ask(b, &["resume"]);
    for i in [a, b] {
        wait_until(&format!("the merged document on node {i}"), || {
            read(Path::new(g.path(i))).as_deref() == Some("The very quick red fox\n")
        });
    }
    g.wait_converged();
    for i in [a, b] {
        assert_eq!(
            read(Path::new(g.path(i))).as_deref(),
            Some("The very quick red fox\n"),
            "node {i}"
        );
    }
    // The state dir sits beside the document and nothing else is in the directory.
    let names: Vec<_> = std::fs::read_dir(g.at("two"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
}

#[test]
fn bad_input_gets_one_line_that_says_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n).to_str().unwrap().to_owned();
    std::fs::create_dir(dir.path().join("empty")).unwrap();
    for (args, says) in [
        (vec!["join", "chorus1abc", &p("x")], "damaged"),
        (vec!["join", "hello", &p("x")], "not a chorus join token"),
        (vec!["run", &p("empty")], "chorus init"),
        (vec!["run", &p("missing/dir")], "does not exist"),
        (vec!["status", "--folder", &p("empty")], "no chorus daemon"),
    ] {
        let out = cli_in(None, &args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
    }
    // A second `init` of a share refuses to replace it; a bad config names the file.
    ok(&["init", &p("s")]);
    let out = cli_in(None, &["init", &p("s")]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("already a chorus share"));
    std::fs::write(dir.path().join("s/.chorus/config.toml"), "secret = 1\n").unwrap();
    let out = cli_in(None, &["run", &p("s")]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("config.toml"), "{err}");
    assert_eq!(out.status.code(), Some(1));
    // A port something else holds.
    ok(&["init", &p("t")]);
    let holder = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
    let port = holder.local_addr().unwrap().port();
    let out = cli_in(
        None,
        &[
            "run",
            &p("t"),
            "--listen",
            &format!("/ip4/0.0.0.0/tcp/{port}"),
        ],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains(&format!("port {port} is in use")), "{err}");
    // Usage errors exit 2.
    assert_eq!(cli_in(None, &["restore"]).status.code(), Some(2));
}

/// Big files edited the ways users edit them reach every member whole: a line inserted in
/// place, a save through a new file renamed over the old one, an append. A member writes such
/// a file from the one it replaces (the chunks they share), whether that file was written by
/// chorus or by the user, just changed or long settled; the daemons keep running throughout.
#[test]
fn big_files_edited_in_place_and_saved_by_rename_reach_every_member_whole() {
    let mut g = Group::new();
    let a = g.init(g.at("a"));
    let b = g.join(a, g.at("b"));
    let mut big = chorus_sync::testing::noise(7, 6 << 20);
    std::fs::write(g.file(a, "big.bin"), &big).unwrap();
    g.wait_everywhere("big.bin", &big);

    // A line inserted in the middle, the file rewritten in place (same inode).
    let mid = big.len() / 2;
    big.splice(mid..mid, b"one line inserted in place\n".iter().copied());
    std::fs::write(g.file(a, "big.bin"), &big).unwrap();
    g.wait_everywhere("big.bin", &big);

    // On the other member, saved as an editor saves: a new file renamed over the old one.
    big[100..200].fill(b'x');
    let tmp = g.file(b, "big.bin.swp");
    std::fs::write(&tmp, &big).unwrap();
    std::fs::rename(&tmp, g.file(b, "big.bin")).unwrap();
    g.wait_everywhere("big.bin", &big);

    // Once everything settled, an append.
    g.wait_converged();
    std::thread::sleep(std::time::Duration::from_millis(2500));
    big.extend_from_slice(b"appended\n");
    std::fs::OpenOptions::new()
        .append(true)
        .open(g.file(a, "big.bin"))
        .and_then(|mut f| std::io::Write::write_all(&mut f, b"appended\n"))
        .unwrap();
    g.wait_everywhere("big.bin", &big);
    g.wait_converged();
    for i in [a, b] {
        assert!(g.running(i), "node {i} exited");
    }
}

/// A file moved to another directory, and a file saved through a temp file that went out
/// before it was renamed over the file it saves: the other member renames its copy too (the
/// same inode, nothing written again; before, it wrote every byte a second time) and ends
/// with exactly what the first has.
#[test]
fn a_file_moved_or_saved_through_a_temp_file_is_renamed_on_the_other_members() {
    use std::os::unix::fs::MetadataExt;
    let ino = |p: &Path| std::fs::metadata(p).map(|m| m.ino()).unwrap_or(0);
    // b's file held open: a file b made after removing it could not get its inode number.
    let held = |p: &Path| (std::fs::File::open(p).unwrap(), ino(p));
    let mut g = Group::new();
    let a = g.init(g.at("a"));
    let b = g.join(a, g.at("b"));
    let report = chorus_sync::testing::noise(11, 3 << 20);
    std::fs::create_dir(g.file(a, "drafts")).unwrap();
    std::fs::write(g.file(a, "drafts/report.bin"), &report).unwrap();
    g.wait_everywhere("drafts/report.bin", &report);
    g.wait_converged();
    let (_was, was) = held(&g.file(b, "drafts/report.bin"));
    // Renamed on a; once b has the new name and not the old, the inode b's file has.
    let renamed = |from: &str, to: &str, bytes: &[u8]| {
        std::fs::rename(g.file(a, from), g.file(a, to)).unwrap();
        g.wait_everywhere(to, bytes);
        wait_until(&format!("{from} gone on b"), || !g.file(b, from).exists());
        g.wait_converged();
        ino(&g.file(b, to))
    };

    std::fs::create_dir(g.file(a, "final")).unwrap();
    let now = renamed("drafts/report.bin", "final/report.bin", &report);
    assert_eq!(now, was, "moved on b, not written again");

    // The temp file goes out whole (the editor took its time), then replaces the file.
    let mut saved = report.clone();
    saved[1000..2000].fill(b'y');
    std::fs::write(g.file(a, "final/report.bin.tmp"), &saved).unwrap();
    g.wait_everywhere("final/report.bin.tmp", &saved);
    g.wait_converged();
    let (_tmp, tmp_on_b) = held(&g.file(b, "final/report.bin.tmp"));
    let now = renamed("final/report.bin.tmp", "final/report.bin", &saved);
    assert_eq!(now, tmp_on_b, "renamed on b");
    for i in [a, b] {
        assert!(g.running(i), "node {i} exited");
    }
}

/// The watcher's debounce waits for a burst to be quiet; once every file of it was closed by
/// its writer (a save, an append), the burst is as complete as the kernel can tell and goes
/// out after a fifth of the delay. A file still open for writing (a download, a copy under
/// way) waits the whole delay. A user who set a minute's debounce (`debounce_ms`, its
/// largest) to gather bursts sees a save reach the other member in seconds, not a minute; a
/// file they are still writing does not go out half-written meanwhile.
#[test]
fn a_save_goes_out_once_closed_and_a_file_still_open_waits_the_debounce() {
    use std::io::Write;
    let mut g = Group::new();
    let a = g.init(g.at("a"));
    let b = g.join(a, g.at("b"));
    g.wait_converged();
    g.set_config(a, "debounce_ms", "60000");
    g.restart(a);
    g.wait_converged();

    // Written and still open: nothing goes out for as long as this test looks (a fifth of
    // the delay and more).
    let mut open = std::fs::File::create(g.file(a, "download.part")).unwrap();
    open.write_all(b"the first half\n").unwrap();
    open.flush().unwrap();
    let since = std::time::Instant::now();
    while since.elapsed() < std::time::Duration::from_secs(15) {
        assert!(
            !g.file(b, "download.part").exists(),
            "a file still open went out before the debounce"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    // Closed: out well before the minute is up.
    open.write_all(b"the second half\n").unwrap();
    drop(open);
    let closed = std::time::Instant::now();
    let whole: &[u8] = b"the first half\nthe second half\n";
    while std::fs::read(g.file(b, "download.part")).ok().as_deref() != Some(whole) {
        assert!(
            closed.elapsed() < std::time::Duration::from_secs(40),
            "a closed file waited for the whole debounce; b's log:\n{}",
            g.log(b)
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    // A save (written and closed at once) on a member with a minute's debounce.
    std::fs::write(g.file(a, "notes.txt"), "saved\n").unwrap();
    let saved = std::time::Instant::now();
    while read(&g.file(b, "notes.txt")).as_deref() != Some("saved\n") {
        assert!(
            saved.elapsed() < std::time::Duration::from_secs(40),
            "a save waited for the whole debounce"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    for i in [a, b] {
        assert!(g.running(i), "node {i} exited");
    }
}

/// A share with more directories than a daemon may open files (a home directory or a build
/// tree has tens of thousands; a desktop's soft limit is often 1,024 and some hard limits are
/// no higher): both members run under a limit of 1,024, more directories than that appear
/// in one of them, and every file reaches the other; both keep running.
#[test]
fn more_directories_than_open_files_reach_every_member() {
    const NOFILE: u64 = 1024;
    let mut g = Group::new();
    let a = g.init(g.at("a"));
    let b = g.join(a, g.at("b"));
    for i in [a, b] {
        g.nodes[i].nofile = Some(NOFILE);
        g.restart(i);
    }
    std::fs::write(g.file(a, "before.txt"), "before\n").unwrap();
    g.wait_everywhere("before.txt", b"before\n");
    // Side by side in one directory, and one inside the other.
    let mut files = Vec::new();
    for i in 0..1_200 {
        files.push(format!("wide/d{i:04}/f.txt"));
    }
    let mut deep = String::from("deep");
    for i in 0..300 {
        deep.push_str(&format!("/{}", i % 10));
        files.push(format!("{deep}/f{i}.txt"));
    }
    for f in &files {
        let p = g.file(a, f);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, f.as_bytes()).unwrap();
    }
    std::fs::write(g.file(a, "after.txt"), "after\n").unwrap();
    g.wait_everywhere("after.txt", b"after\n");
    for f in &files {
        let on_b = g.file(b, f);
        wait_until(&format!("{f} on b"), || {
            std::fs::read(&on_b).is_ok_and(|got| got == f.as_bytes())
        });
    }
    for i in [a, b] {
        assert!(g.running(i), "node {i} exited:\n{}", g.log(i));
        assert!(
            !g.log(i).contains("Too many open files"),
            "node {i} ran out of open files:\n{}",
            g.log(i)
        );
    }
}

/// A release-sized update: every file of a 12 MiB tree of text edited in a few places, more
/// new bytes than one delta carries as literals (8 MiB), so the rest is fetched as chunks.
/// Those chunks come compressed against the ones they replace, as the literals are: the
/// update costs a small part of what the files themselves compress to. (Fetched chunks
/// compressed one by one, as before, cost ~1.5 MB here.) A bound on bytes, not on time.
#[test]
fn an_update_larger_than_a_deltas_literals_moves_about_what_its_edits_are() {
    let mut g = Group::new();
    let a = g.init(g.at("a"));
    let b = g.join(a, g.at("b"));
    // Text of words from a vocabulary: about 3x compressible on its own, like source code.
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let words: Vec<String> = (0..3000)
        .map(|_| {
            let n = 2 + next() % 9;
            (0..n)
                .map(|_| (b'a' + (next() % 26) as u8) as char)
                .collect()
        })
        .collect();
    let mut files: Vec<Vec<u8>> = (0..48)
        .map(|_| {
            let mut t = Vec::with_capacity(256 << 10);
            while t.len() < 256 << 10 {
                for _ in 0..1 + next() % 12 {
                    t.extend_from_slice(words[(next() % 3000) as usize].as_bytes());
                    t.push(b' ');
                }
                t.extend_from_slice(format!("{}\n", next() % 100_000).as_bytes());
            }
            t
        })
        .collect();
    std::fs::create_dir_all(g.file(a, "src")).unwrap();
    for (i, f) in files.iter().enumerate() {
        std::fs::write(g.file(a, &format!("src/f{i:02}.txt")), f).unwrap();
    }
    for (i, f) in files.iter().enumerate() {
        g.wait_everywhere(&format!("src/f{i:02}.txt"), f);
    }
    g.wait_converged();
    let sent = |i: usize| -> u64 {
        let peers: Vec<serde_json::Value> =
            serde_json::from_str(&g.ask(i, &["peers", "--json"])).unwrap();
        peers.iter().filter_map(|p| p["bytes_sent"].as_u64()).sum()
    };
    let before = sent(a) + sent(b);

    // Twelve lines inserted across each file: every chunk of the tree changes.
    let mut edited = 0usize;
    for (i, f) in files.iter_mut().enumerate() {
        for k in 0..12 {
            let at = (f.len() * k / 12..f.len())
                .find(|&p| f[p] == b'\n')
                .map_or(f.len(), |p| p + 1);
            let line = format!("inserted line {k} of file {i}\n");
            f.splice(at..at, line.bytes());
        }
        edited += f.len();
        std::fs::write(g.file(a, &format!("src/f{i:02}.txt")), &*f).unwrap();
    }
    for (i, f) in files.iter().enumerate() {
        g.wait_everywhere(&format!("src/f{i:02}.txt"), f);
    }
    g.wait_converged();
    let moved = sent(a) + sent(b) - before;
    eprintln!("the update of {edited} bytes moved {moved} bytes both ways");
    assert!(
        moved < (edited / 20) as u64,
        "the update of {edited} bytes of edited files moved {moved} bytes both ways"
    );
    for i in [a, b] {
        assert!(g.running(i), "node {i} exited");
    }
}

/// A careless user makes a share inside a share (`chorus init` on a folder, and on a document,
/// inside one a group already syncs): the inner shares' state dirs hold their identity keys,
/// share secrets and databases, and their markers say which share a folder is. None of that
/// reaches the outer group's other machines; the files beside them do.
#[test]
fn a_share_made_inside_a_share_keeps_its_keys_to_itself() {
    let mut g = Group::new();
    let a = g.init(g.at("a"));
    let b = g.join(a, g.at("b"));
    std::fs::create_dir_all(g.file(a, "inner")).unwrap();
    std::fs::create_dir_all(g.file(a, "docs")).unwrap();
    std::fs::write(g.file(a, "docs/notes.md"), "notes\n").unwrap();
    for inner in ["inner", "docs/notes.md"] {
        let path = g.file(a, inner);
        let out = cli_in(None, &["init", path.to_str().unwrap()]);
        assert!(out.status.success(), "{out:?}");
    }
    assert!(g.file(a, "inner/.chorus/identity.key").exists());
    assert!(g.file(a, "docs/.notes.md.chorus/identity.key").exists());
    std::fs::write(g.file(a, "inner/beside.txt"), "synced\n").unwrap();
    g.wait_everywhere("inner/beside.txt", b"synced\n");
    g.wait_everywhere("docs/notes.md", b"notes\n");
    g.wait_converged();
    for private in [
        "inner/.chorus",
        "inner/.chorus-share",
        "docs/.notes.md.chorus",
    ] {
        assert!(
            !g.file(b, private).exists(),
            "{private} reached the other machine"
        );
    }
    for dir in ["inner", "docs"] {
        let listed = g.ask(a, &["ls", &g.head(a), dir]);
        assert!(
            !listed.contains(".chorus")
                && listed.contains(if dir == "inner" {
                    "beside.txt"
                } else {
                    "notes.md"
                }),
            "the outer share's version of {dir}: {listed}"
        );
    }
}

/// What a share holds that no member can take (a name that is not UTF-8, a FIFO) is said in
/// the log, naming it, once, rather than left out without a word; the rest syncs as ever.
#[test]
fn what_cannot_be_synced_is_said_once_and_the_rest_syncs() {
    use std::os::unix::ffi::OsStrExt;
    let mut g = Group::new();
    // A whole scan every 300 ms besides the watcher's focused ones.
    ok(&["init", g.at("a").to_str().unwrap()]);
    let a = g.start_with(g.at("a"), Vec::new(), &["--scan-ms", "300"]);
    let b = g.join(a, g.at("b"));
    std::fs::create_dir_all(g.file(a, "odd")).unwrap();
    let latin1 = g
        .file(a, "odd")
        .join(std::ffi::OsStr::from_bytes(b"caf\xe9 menu.txt"));
    std::fs::write(&latin1, "written by an old program\n").unwrap();
    let fifo = g.file(a, "odd/a pipe");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    // Several scans, whole and focused, each finding both again.
    for k in 0..3 {
        let text = format!("round {k}\n");
        std::fs::write(g.file(a, "odd/plain.txt"), &text).unwrap();
        g.wait_everywhere("odd/plain.txt", text.as_bytes());
        std::thread::sleep(std::time::Duration::from_millis(700));
    }
    assert!(!g.file(b, "odd/a pipe").exists());
    let log = g.log(a);
    for name in ["a pipe", " menu.txt"] {
        let said = log
            .lines()
            .filter(|l| l.contains("not synced") && l.contains(name))
            .count();
        assert_eq!(said, 1, "{name:?} said {said} times:\n{log}");
    }
}

/// A path that cannot be read (here a disk mounted inside the share and unplugged: what was on
/// it is kept as it was) is named in the log once while it stays so, not at every whole scan:
/// a folder of a thousand unreadable files wrote a thousand lines a minute. Once readable again
/// and then not, it is named again. Needs root (to mount a tmpfs); SKIPPED otherwise.
#[test]
fn an_unreadable_path_is_said_once_while_it_stays_unreadable() {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!(
            "SKIPPED an_unreadable_path_is_said_once_while_it_stays_unreadable: needs root to mount a tmpfs"
        );
        return;
    }
    let mut g = Group::new();
    ok(&["init", g.at("a").to_str().unwrap()]);
    // A whole scan every 300 ms besides the watcher's focused ones.
    let a = g.start_with(g.at("a"), Vec::new(), &["--scan-ms", "300"]);
    let b = g.join(a, g.at("b"));
    let photos = g.file(a, "photos");
    std::fs::create_dir_all(&photos).unwrap();
    /// The tmpfs, unmounted when the test ends however it ends.
    struct Mount(std::path::PathBuf);
    impl Mount {
        fn mount(&self) -> bool {
            std::process::Command::new("mount")
                .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
                .arg(&self.0)
                .status()
                .is_ok_and(|s| s.success())
        }
        fn umount(&self) {
            let done = std::process::Command::new("umount")
                .arg(&self.0)
                .status()
                .is_ok_and(|s| s.success());
            assert!(done, "umount {}", self.0.display());
        }
    }
    impl Drop for Mount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount")
                .arg(&self.0)
                .stderr(std::process::Stdio::null())
                .status();
        }
    }
    let disk = Mount(photos.clone());
    if !disk.mount() {
        eprintln!(
            "SKIPPED an_unreadable_path_is_said_once_while_it_stays_unreadable: cannot mount a tmpfs here"
        );
        return;
    }
    std::fs::write(photos.join("a.jpg"), b"photo a").unwrap();
    g.wait_everywhere("photos/a.jpg", b"photo a");
    let said = |g: &Group| {
        g.log(a)
            .lines()
            .filter(|l| l.contains("cannot be read, kept as it was") && l.contains("photos"))
            .count()
    };
    disk.umount();
    wait_until("the unplugged disk named", || said(&g) >= 1);
    // Many whole scans, and edits elsewhere for focused ones.
    for k in 0..3 {
        let text = format!("round {k}\n");
        std::fs::write(g.file(a, "notes.txt"), &text).unwrap();
        g.wait_everywhere("notes.txt", text.as_bytes());
        std::thread::sleep(std::time::Duration::from_millis(700));
    }
    assert_eq!(said(&g), 1, "while unplugged:\n{}", g.log(a));
    assert_eq!(
        read(&g.file(b, "photos/a.jpg")).as_deref(),
        Some("photo a"),
        "what was on the unplugged disk is kept on the other member"
    );
    // Plugged in again and read (a new file on it reaches the other member), then unplugged
    // once more: named again, once.
    assert!(disk.mount(), "mount again");
    std::fs::write(photos.join("a.jpg"), b"photo a").unwrap();
    std::fs::write(photos.join("b.jpg"), b"photo b").unwrap();
    g.wait_everywhere("photos/b.jpg", b"photo b");
    disk.umount();
    wait_until("the disk unplugged again named again", || said(&g) >= 2);
    std::thread::sleep(std::time::Duration::from_millis(1500));
    assert_eq!(said(&g), 2, "unplugged twice:\n{}", g.log(a));
}

/// The whole rescan that looks for what the watcher missed runs at low priority, so that a
/// share of many files does not compete with the user's programs every `rescan_secs`: the
/// thread doing it has a nice value 10 higher than the daemon's and the lowest best-effort
/// I/O priority. Through the user's path: `chorus init`, `chorus run` (with whole rescans
/// every 100 ms), the daemon's threads read from `/proc` while the rescans walk 3,000 files.
#[test]
fn the_whole_rescan_runs_at_low_priority() {
    let mut g = Group::new();
    ok(&["init", g.at("a").to_str().unwrap()]);
    fill(&g.at("a"), 30, 100);
    let a = g.start_with(g.at("a"), Vec::new(), &["--scan-ms", "100"]);
    let pid = g.nodes[a].child.as_ref().unwrap().id();
    let daemon_nice = nice_of(&format!("/proc/{pid}/stat")).unwrap();
    let daemon_io = io_priority_of(i64::from(pid));
    // Best effort, level 7, unless the daemon runs in the idle class already (lower still).
    let low_io = if daemon_io >> 13 == 3 {
        daemon_io
    } else {
        (2 << 13) | 7
    };
    let low = ((daemon_nice + 10).min(19), low_io);
    // Sampled every millisecond (a rescan of 3,000 unchanged files lasts a few): a thread
    // caught before it lowered its priority is seen again lowered at a later rescan.
    let mut seen = std::collections::BTreeSet::new();
    let start = std::time::Instant::now();
    while !seen.contains(&low) {
        assert!(g.running(a), "the daemon exited:\n{}", g.log(a));
        assert!(
            start.elapsed() < std::time::Duration::from_secs(90),
            "no whole rescan at (nice, I/O priority) {low:?}; rescans seen at: {seen:?}"
        );
        for t in std::fs::read_dir(format!("/proc/{pid}/task"))
            .unwrap()
            .flatten()
        {
            let comm = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
            if comm.trim() != "chorus-rescan" {
                continue;
            }
            let Some(tid) = t.file_name().to_str().and_then(|n| n.parse::<i64>().ok()) else {
                continue;
            };
            let io = io_priority_of(tid);
            if let Some(nice) = nice_of(t.path().join("stat").to_str().unwrap()) {
                seen.insert((nice, io));
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    assert!(g.running(a));
}

/// The I/O priority (class << 13 | level) of thread or process `id`, as `ioprio_get` gives it.
fn io_priority_of(id: i64) -> i64 {
    // SAFETY: ioprio_get takes integers only (1: IOPRIO_WHO_PROCESS).
    unsafe { libc::syscall(libc::SYS_ioprio_get, 1 as libc::c_long, id as libc::c_long) }
}

/// The nice value in a `/proc/.../stat` line (its 19th field, counted after the command name,
/// which may hold spaces).
fn nice_of(stat: &str) -> Option<i32> {
    let text = std::fs::read_to_string(stat).ok()?;
    let after = &text[text.rfind(')')? + 2..];
    after.split(' ').nth(16)?.parse().ok()
}

/// A machine joins a share that already holds thousands of files, the README's way (`init`,
/// `run`, `invite`, `join`, `run`). It learns the head before the offer of it arrives and
/// asks for it; the leader answered by sending the whole version again (three copies of a
/// 100k-file version in 0.6 s). The version goes to the joiner once.
#[test]
fn a_joiner_is_sent_the_share_once() {
    let mut g = Group::new();
    ok(&["init", g.at("a").to_str().unwrap()]);
    fill(&g.at("a"), 40, 500);
    let log = vec![(
        "CHORUS_LOG".to_owned(),
        "chorus_sync::transfers=debug,warn".to_owned(),
    )];
    // b joins while a still reads its share, as when both are set up together.
    let a = g.start(g.at("a"), log);
    let b = g.join(a, g.at("b"));
    g.wait_converged();
    assert!(g.running(a) && g.running(b), "a daemon exited");
    assert_eq!(
        read(&g.file(b, "d39/f499.txt")).as_deref(),
        Some("39 499\n")
    );
    let offers = g
        .log(a)
        .lines()
        .filter(|l| l.contains("chorus_sync::transfers: offer ") && l.contains("lean=false"))
        .count();
    // A retry once an offer's time is up is lean (no literals) and not counted: a slow
    // machine may take it.
    assert_eq!(
        offers,
        1,
        "the share was offered {offers} times:\n{}",
        g.log(a)
    );
}

/// `dirs` directories of `files` small files each in `root` (`dNN/fNNN.txt`, holding "d f").
fn fill(root: &Path, dirs: usize, files: usize) {
    for d in 0..dirs {
        let dir = root.join(format!("d{d:02}"));
        std::fs::create_dir_all(&dir).unwrap();
        for f in 0..files {
            std::fs::write(dir.join(format!("f{f:03}.txt")), format!("{d} {f}\n")).unwrap();
        }
    }
}
