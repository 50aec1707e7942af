//! Three real `chorus run` processes on loopback with explicit peers: a file written on one
//! node reaches the others; concurrent edits of one text file on two nodes merge; after kill -9
//! of the node that started the cluster (its first leader), the other two elect a leader and
//! keep syncing, and the killed node, restarted, catches up with nothing accepted lost. The
//! local socket and its CLI clients (`status`, `peers`, `log`, `conflicts`) report a real
//! cluster's state, merge and redo entry included.
//!
//! Waits are liveness bounds (a stuck cluster fails the test), not speed assertions. Each
//! process's output is kept in its directory and printed when the test fails.

mod support;

use support::cluster::*;

use support::procs::chorus;

use std::path::PathBuf;

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
        let stats = wait_for_status(&c.procs[o].state);
        assert_eq!(
            stats["traffic"]["sync_received"], 0,
            "outsider {o}: {stats}"
        );
        assert_eq!(
            stats["traffic"]["raft_received"], 0,
            "outsider {o}: {stats}"
        );
    }
    for o in [wrong_key, not_member] {
        let folder = &c.procs[o].folder;
        let names: Vec<_> = std::fs::read_dir(folder)
            .unwrap()
            .filter_map(Result::ok)
            .map(|e| e.file_name())
            // The outsider's own daemon marks its share; that is not received.
            .filter(|n| n != ".chorus-share")
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
    // Node 1 (which normally does not lead) issues the invite; the joiner knows only node 1:
    // node 1 names the members and vouches for the joiner, which presents the voucher to
    // the leader.
    let (code, out, _) = cli(&c.procs[1].state, &["invite", "--json", "--uses", "1"]);
    assert_eq!(code, Some(0), "{out}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let code = v["invite"].as_str().unwrap().to_owned();
    let joiner = c.outsider_with(SECRET, 1, |_| Some(code.clone()));
    // A forged invite (a code nobody issued), and the used-up one on another machine.
    let forged = c.outsider_with(SECRET, 0, |_| Some("08".repeat(16)));
    wait_for("the joiner catches up", || {
        read(&c.file(joiner)).as_deref() == Some(text)
    });
    // The invite was for one machine: a second one is refused.
    let second = c.outsider_with(SECRET, 1, |_| Some(code.clone()));
    let from_joiner = "before the join\nfrom the joiner\n";
    write(&c.file(joiner), from_joiner);
    wait_for("the joiner's edit reaches the members", || {
        (0..2).all(|i| read(&c.file(i)).as_deref() == Some(from_joiner))
    });
    for refused in [forged, second] {
        let stats = wait_for_status(&c.procs[refused].state);
        assert_eq!(stats["traffic"]["sync_received"], 0, "{stats}");
        assert_eq!(stats["traffic"]["raft_received"], 0, "{stats}");
        assert!(read(&c.file(refused)).is_none());
    }
}

/// `chorus COMMAND --state-dir STATE` (readable output): (exit code, stdout, stderr).
#[test]
fn the_local_socket_and_its_cli_clients_report_versions_peers_and_conflicts() {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};

    let mut c = Cluster::new(3);
    let states: Vec<PathBuf> = c.procs.iter().map(|p| p.state.clone()).collect();
    let (s0, s2) = (states[0].clone(), states[2].clone());

    // No daemon yet: a one-line reason that says what to do, and exit code 1; bad usage is 2.
    let (code, out, err) = cli(&s0, &["status"]);
    assert_eq!(code, Some(1), "{out}{err}");
    assert!(
        err.contains("no chorus daemon is running") && err.contains("chorus run"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert_eq!(cli(&s0, &["status", "--no-such-option"]).0, Some(2));

    for i in 0..3 {
        c.start(i);
    }
    write(&c.file(0), "one\ntwo\n");
    wait_for("the file reaches nodes 1 and 2", || {
        (1..3).all(|i| read(&c.file(i)).as_deref() == Some("one\ntwo\n"))
    });
    let socket = s0.join("api.sock");
    // A second daemon on the same state dir stops at once and says why.
    let out = chorus()
        .args(["run", "--no-mdns", "--folder"])
        .arg(&c.procs[0].folder)
        .arg("--state-dir")
        .arg(&s0)
        .env("CHORUS_SECRET", SECRET)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("another chorus daemon is already serving"),
        "{err}"
    );
    let meta = std::fs::metadata(&socket).unwrap();
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);

    // A conflict: node 2 is down while it and node 0 change the same line. Restarted, it
    // scans its edit before anything else and pushes it on the old base; the leader merges.
    c.kill(2);
    let before = get(&s0, "/v1/versions").as_array().unwrap().len();
    write(&c.file(0), "one from node 0\ntwo\n");
    wait_for("node 0's edit is accepted", || {
        let s = get(&s0, "/v1/status");
        s["settled"] == true && get(&s0, "/v1/versions").as_array().unwrap().len() > before
    });
    write(&c.file(2), "one from node 2\ntwo\n");
    c.start(2);
    wait_for("every node holds the merge and its redo entry", || {
        let same =
            (1..3).all(|i| read(&c.file(i)).is_some() && read(&c.file(i)) == read(&c.file(0)));
        same && states.iter().all(|s| {
            cli_json(s, "conflicts").is_some_and(|v| !v.as_array().unwrap().is_empty())
                && cli_json(s, "status").is_some_and(|v| {
                    v["settled"] == true && v["peers_connected"] == 2 && v["leader"].is_string()
                })
        })
    });

    let peer_of = |i: usize| c.procs[i].addr.rsplit("/p2p/").next().unwrap().to_owned();
    let status: Vec<_> = states.iter().map(|s| get(s, "/v1/status")).collect();
    for (i, s) in status.iter().enumerate() {
        assert_eq!(s["peer_id"], peer_of(i), "{s}");
        assert_eq!(s["peers"], 2, "{s}");
        assert_eq!(s["head"], s["adopted"], "{s}");
        assert!(s.get("pending_local").is_none(), "{s}");
        assert!(s["traffic"]["sync_received"].as_u64().unwrap() > 0, "{s}");
    }
    assert!(status.iter().all(|s| s["leader"] == status[0]["leader"]));
    assert!(status.iter().all(|s| s["head"] == status[0]["head"]));
    let roles: Vec<_> = status.iter().map(|s| s["role"].as_str().unwrap()).collect();
    assert_eq!(
        roles.iter().filter(|r| **r == "leader").count(),
        1,
        "{roles:?}"
    );

    // Versions: numbered in order, the newest is the head, a merge displaced what the redo
    // stack holds, and every node lists the same history.
    let versions = get(&s0, "/v1/versions");
    assert!(states.iter().all(|s| get(s, "/v1/versions") == versions));
    let versions = versions.as_array().unwrap();
    let numbers: Vec<(u64, u64)> = versions
        .iter()
        .map(|v| {
            let (a, b) = v["number"].as_str().unwrap().split_once('.').unwrap();
            (a.parse().unwrap(), b.parse().unwrap())
        })
        .collect();
    assert!(numbers.windows(2).all(|w| w[0] < w[1]), "{numbers:?}");
    assert_eq!(
        versions.last().unwrap()["number"],
        status[0]["head"]["number"]
    );
    let merge = versions
        .iter()
        .find(|v| v["kind"] == "merge" && v["displaced"].as_u64() > Some(0))
        .unwrap_or_else(|| panic!("no merge that displaced something: {versions:?}"));
    let conflicts = get(&s0, "/v1/conflicts");
    assert!(states.iter().all(|s| get(s, "/v1/conflicts") == conflicts));
    let conflicts = conflicts.as_array().unwrap();
    let displaced: u64 = versions
        .iter()
        .map(|v| v["displaced"].as_u64().unwrap())
        .sum();
    assert_eq!(displaced, conflicts.len() as u64, "{conflicts:?}");
    assert!(
        conflicts.iter().any(|e| {
            let major: u64 = merge["number"]
                .as_str()
                .unwrap()
                .split('.')
                .next()
                .unwrap()
                .parse()
                .unwrap();
            e["accepted_major"] == major && e["path"] == "doc.txt"
        }),
        "{conflicts:?} {merge}"
    );
    let origins: Vec<_> = versions.iter().map(|v| v["origin"].as_str()).collect();
    let members = [peer_of(0), peer_of(1), peer_of(2)];
    assert!(
        origins
            .iter()
            .all(|o| o.is_some_and(|o| members.iter().any(|m| m == o))),
        "{origins:?}"
    );

    // Peers: each node lists the others, connected, with the addresses they were given.
    for (i, s) in states.iter().enumerate() {
        let peers = get(s, "/v1/peers");
        let mut ids: Vec<_> = peers
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                assert_eq!(p["connected"], true, "{p}");
                assert!(
                    ["leader", "voter"].contains(&p["role"].as_str().unwrap()),
                    "{p}"
                );
                p["peer_id"].as_str().unwrap().to_owned()
            })
            .collect();
        ids.sort();
        let mut others: Vec<_> = (0..3).filter(|j| *j != i).map(peer_of).collect();
        others.sort();
        assert_eq!(ids, others);
        // The same snapshot through the CLI; what moves with the clock (when last seen, the
        // last ping) may have been refreshed between the two reads.
        let steady = |v: serde_json::Value| -> serde_json::Value {
            let mut v = v;
            for p in v.as_array_mut().unwrap() {
                let o = p.as_object_mut().unwrap();
                o.remove("last_seen_ms");
                o.remove("rtt_ms");
            }
            v
        };
        assert_eq!(steady(cli_json(s, "peers").unwrap()), steady(peers.clone()));
    }
    let peers0 = get(&s0, "/v1/peers");
    let addresses: Vec<_> = peers0
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["addresses"].as_array().unwrap().clone())
        .collect();
    // Where node 2 listens: the address it was given, or (once the leader has recorded what
    // members report) the same address without its `/p2p/` part.
    let listen = c.procs[2].addr.split("/p2p/").next().unwrap().to_owned();
    assert!(
        addresses
            .iter()
            .filter_map(|a| a.as_str())
            .any(|a| a == c.procs[2].addr || a == listen),
        "{peers0}"
    );

    // Metrics: Prometheus text with the figures the JSON has.
    let leader = roles.iter().position(|r| *r == "leader").unwrap();
    let leader_state = &states[leader];
    let metrics =
        String::from_utf8(chorus::api::client::get(leader_state, "/metrics").unwrap()).unwrap();
    assert!(
        metrics.contains("chorus_role{role=\"leader\"} 1\n"),
        "{metrics}"
    );
    let head_major = numbers.last().unwrap().0;
    assert!(
        metrics.contains(&format!("chorus_versions_accepted {head_major}\n")),
        "{metrics}"
    );
    assert!(metrics.contains("chorus_bytes_sent_total{protocol=\"sync\"} "));

    // Unknown paths and methods get JSON errors; garbage on the socket breaks nothing.
    match chorus::api::client::get(&s0, "/v1/no-such-thing") {
        Err(chorus::api::client::ClientError::Refused { status, message }) => {
            assert_eq!(status, 404);
            assert!(message.contains("/v1/no-such-thing"), "{message}");
        }
        other => panic!("expected a 404, got {other:?}"),
    }
    {
        use std::io::{Read, Write};
        let mut raw = std::os::unix::net::UnixStream::connect(&socket).unwrap();
        raw.write_all(b"\x00\xffnot http at all\r\n\r\n").unwrap();
        let mut answer = Vec::new();
        let _ = raw.read_to_end(&mut answer);
        let mut raw = std::os::unix::net::UnixStream::connect(&socket).unwrap();
        raw.write_all(b"POST /v1/status HTTP/1.1\r\nHost: chorus\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut answer = String::new();
        raw.read_to_string(&mut answer).unwrap();
        assert!(answer.starts_with("HTTP/1.1 405"), "{answer}");
    }
    assert_eq!(get(&s0, "/v1/status")["peer_id"], peer_of(0));

    // The readable tables.
    let (code, out, _) = cli(&s0, &["status"]);
    assert_eq!(code, Some(0));
    assert!(
        out.contains(&peer_of(0)) && out.contains("in sync"),
        "{out}"
    );
    let (code, out, _) = cli(&s0, &["log"]);
    assert_eq!(code, Some(0));
    assert_eq!(out.lines().count(), versions.len() + 1, "{out}");
    assert!(
        out.starts_with("NUMBER") && out.contains(" merge "),
        "{out}"
    );
    let (code, out, _) = cli(&s2, &["peers"]);
    assert_eq!(code, Some(0));
    assert!(
        out.contains(&peer_of(0)) && out.contains(&peer_of(1)),
        "{out}"
    );
    let (code, out, _) = cli(&s2, &["conflicts"]);
    assert_eq!(code, Some(0));
    assert_eq!(out.lines().count(), conflicts.len() + 1, "{out}");
}
