//! Groups formed exactly as README.md's Quickstart forms them (`chorus init`, `chorus run`,
//! `chorus invite`, `chorus join` twice, `chorus run`), several times over: every member
//! ends up a voter, the two joiners reach each other directly, and when the first machine is
//! then killed the other two elect a leader (started by the dead leader's closed connection,
//! not by a heartbeat timeout) and go on syncing; so do the others when the joiner that leads
//! next is killed. `chorus status` names a member it cannot reach.
//!
//! Waits are liveness bounds (a stuck group fails the test), never speed assertions.

mod support;

use std::time::Duration;

use support::group::{Group, wait_until};

/// Groups formed, each then losing its first machine.
const ROUNDS: usize = 3;

fn peers(g: &Group, i: usize) -> Vec<serde_json::Value> {
    serde_json::from_str(&g.ask(i, &["peers", "--json"])).expect("peers is JSON")
}

#[test]
fn a_group_formed_the_readme_way_survives_the_loss_of_its_first_machine() {
    for round in 0..ROUNDS {
        let mut g = Group::new();
        let a = g.init(g.at("a"));
        let b = g.join(a, g.at("b"));
        let c = g.join(a, g.at("c"));
        std::fs::write(g.file(a, "hello.txt"), format!("round {round}\n")).unwrap();
        g.wait_everywhere("hello.txt", format!("round {round}\n").as_bytes());

        wait_until("three voters, every one connected to both others", || {
            (0..3).all(|i| {
                let p = peers(&g, i);
                p.len() == 2
                    && p.iter()
                        .all(|x| x["connected"] == true && x["role"] != "learner")
            })
        });

        g.kill(a);
        wait_until("the two left elect a leader", || {
            [b, c].iter().any(|&i| g.status(i)["role"] == "leader")
        });
        // They did not wait out the heartbeat timeout: the leader's connection closed, a redial
        // failed, and that started the election.
        assert!(
            [b, c]
                .iter()
                .any(|&i| g.log(i).contains("the leader's connection closed")),
            "no survivor noticed the leader's connection close:\n{}\n{}",
            g.log(b),
            g.log(c)
        );
        // Each names the machine it lost.
        let lost = g.status(b);
        assert_eq!(
            lost["unreachable"].as_array().map(Vec::len),
            Some(1),
            "{lost}"
        );
        let human = g.ask(b, &["status"]);
        assert!(human.contains("unreachable"), "{human}");
        // `chorus members` says when the lost one was last seen.
        let lost_peer = peers(&g, b)
            .into_iter()
            .find(|p| p["connected"] == false)
            .expect("the lost member is listed");
        assert!(lost_peer["last_seen_ms"].as_u64().is_some(), "{lost_peer}");
        let table = g.ask(b, &["members"]);
        assert!(
            table.contains("LAST SEEN") && table.contains(" s ago"),
            "{table}"
        );

        std::fs::write(g.file(c, "after.txt"), "after the loss\n").unwrap();
        for i in [b, c] {
            let f = g.file(i, "after.txt");
            wait_until("the edit reaches the other survivor", || {
                std::fs::read(&f).is_ok_and(|x| x == b"after the loss\n")
            });
        }

        // The first machine comes back; then the joiner that leads dies. A joiner is known to
        // the others by the addresses the membership records (TCP and QUIC), not by a token:
        // its loss too is noticed from its closed connection, not after the heartbeat timeout.
        g.restart(a);
        wait_until("all three connected again", || {
            (0..3).all(|i| peers(&g, i).iter().all(|x| x["connected"] == true))
        });
        // A leader all three agree on, in the same term for a second: the returning machine's
        // connections settle before the one that leads is killed.
        let agreed = |g: &Group| {
            let s: Vec<serde_json::Value> = (0..3).map(|i| g.status(i)).collect();
            let first = (s[0]["leader"].clone(), s[0]["term"].clone());
            (first.0.is_string()
                && s.iter()
                    .all(|x| (x["leader"].clone(), x["term"].clone()) == first))
            .then_some(first)
        };
        let mut last = None;
        wait_until("a leader all three agree on, for a second", || {
            let now = agreed(&g);
            let steady = now.is_some() && now == last;
            last = now.clone();
            if !steady {
                std::thread::sleep(std::time::Duration::from_secs(1));
            }
            steady
        });
        // The one they agree on, by its peer id (the returning machine may have won an
        // election meanwhile: then it is the one killed, and the others must notice it the same
        // way).
        let agreed_on = last.expect("an agreed leader").0;
        let leader = [a, b, c]
            .into_iter()
            .find(|&i| g.status(i)["peer_id"] == agreed_on)
            .expect("the agreed leader is one of the three");
        if leader == a {
            eprintln!("the returning machine leads; it is the one killed");
        }
        let others: Vec<usize> = [a, b, c].into_iter().filter(|&i| i != leader).collect();
        let noticed = |g: &Group| -> usize {
            others
                .iter()
                .map(|&i| g.log(i).matches("the leader's connection closed").count())
                .sum()
        };
        let before = noticed(&g);
        g.kill(leader);
        wait_until("the two left elect a leader", || {
            others.iter().any(|&i| g.status(i)["role"] == "leader")
        });
        assert!(
            noticed(&g) > before,
            "no survivor noticed the leading joiner's connection close:\n{}\n{}",
            g.log(others[0]),
            g.log(others[1])
        );
    }
}

/// A member that comes back on another port (a laptop on another network, a port changed in
/// `config.toml`) is recorded at its new address in the membership every member keeps, so a
/// member that starts later dials it there, without a new invite.
#[test]
fn a_member_that_moves_is_recorded_at_its_new_address() {
    let mut g = Group::new();
    let a = g.init(g.at("a"));
    let b = g.join(a, g.at("b"));
    let c = g.join(a, g.at("c"));
    g.wait_converged();
    let b_id = g.status(b)["peer_id"].as_str().unwrap().to_owned();
    g.stop(b);
    let port = support::procs::free_port();
    g.set_config(b, "listen", &format!("[\"/ip4/127.0.0.1/tcp/{port}\"]"));
    g.restart(b);
    let at_new_port = |i: usize| {
        peers(&g, i).iter().any(|p| {
            p["peer_id"] == b_id.as_str()
                && p["addresses"].as_array().is_some_and(|a| {
                    a.iter().any(|x| {
                        x.as_str()
                            .is_some_and(|x| x.contains(&format!("/tcp/{port}")))
                    })
                })
        })
    };
    wait_until("the membership records b's new port, on a and on c", || {
        at_new_port(a) && at_new_port(c)
    });
    // And with it, a member that restarts finds b and syncs with it.
    g.stop(c);
    std::fs::write(g.file(b, "moved.txt"), "from the new port\n").unwrap();
    g.restart(c);
    g.wait_everywhere("moved.txt", b"from the new port\n");
}

/// `timing = "auto"` (the default): a running daemon records the slowest voter's round trip in
/// its state dir, and at its next start Raft runs with the timing for it; a round trip of a
/// WAN (700 ms, as if recorded on a slow path) gives a longer heartbeat and election timeout,
/// and the group goes on syncing.
#[test]
fn raft_timing_follows_the_round_trip_measured() {
    let mut g = Group::new();
    let a = g.init(g.at("a"));
    let b = g.join(a, g.at("b"));
    g.wait_converged();
    let recorded = g.file(b, ".chorus/round-trip");
    wait_until("b records its round trip to the other voter", || {
        std::fs::read_to_string(&recorded).is_ok_and(|t| t.trim().parse::<u64>().is_ok())
    });
    std::fs::write(&recorded, "700\n").unwrap();
    g.restart(b);
    wait_until("b starts with the timing for 700 ms", || {
        g.log(b)
            .contains("round_trip_ms=700 heartbeat_ms=2800 election_timeout_ms=7000-8000")
    });
    std::fs::write(g.file(a, "after.txt"), "slow timing\n").unwrap();
    g.wait_everywhere("after.txt", b"slow timing\n");
}

/// `chorus peers --json` on node `i`, as (PeerId, role) pairs.
fn roles(g: &Group, i: usize) -> Vec<(String, String)> {
    peers(g, i)
        .iter()
        .map(|p| {
            (
                p["peer_id"].as_str().unwrap().to_owned(),
                p["role"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[test]
fn a_voter_long_gone_becomes_a_learner_and_a_removed_member_is_shut_out() {
    let mut g = Group::new();
    let a = g.init(g.at("a"));
    // The leader demotes voters unseen for 3 s (the default is three days).
    g.stop(a);
    g.set_config(a, "demote_after_secs", "3");
    g.restart(a);
    wait_until("the first machine leads", || {
        g.status(a)["role"] == "leader"
    });
    let b = g.join(a, g.at("b"));
    let c = g.join(a, g.at("c"));
    wait_until("three voters", || {
        let r = roles(&g, a);
        r.len() == 2 && r.iter().all(|(_, role)| role == "voter")
    });
    let c_id = g.status(c)["peer_id"].as_str().unwrap().to_owned();

    // c is gone for longer than the limit: a learner, so it no longer counts toward quorum.
    g.kill(c);
    wait_until("the lost voter is a learner", || {
        roles(&g, a).contains(&(c_id.clone(), "learner".to_owned()))
    });
    // Back, it is a voter again.
    g.restart(c);
    wait_until("the returning member is a voter again", || {
        roles(&g, a).contains(&(c_id.clone(), "voter".to_owned()))
    });

    // Removing is the leader's: another member says where to run it.
    let tail = &c_id[c_id.len() - 8..];
    let out = support::group::cli_in(None, &["remove", tail, "--folder", g.path(b)]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("leader"), "{err}");
    let said = g.ask(a, &["remove", tail]);
    assert!(said.contains(&c_id), "{said}");
    wait_until("the removed member is gone from the others' lists", || {
        roles(&g, a).len() == 1 && roles(&g, b).len() == 1
    });
    // What the group writes now does not reach it.
    std::fs::write(g.file(a, "after.txt"), "members only\n").unwrap();
    let f = g.file(b, "after.txt");
    wait_until("the remaining member gets the edit", || {
        std::fs::read(&f).is_ok_and(|x| x == b"members only\n")
    });
    std::thread::sleep(std::time::Duration::from_secs(2));
    assert!(
        !g.file(c, "after.txt").exists(),
        "the removed member got the edit"
    );
}

/// Invites as users make them: `chorus invite --uses 1` admits one machine, the next one
/// with the same token is kept out; a token past its `--expires` is refused by `chorus join`,
/// and a machine set up before its token expired and started after is kept out by the member
/// that issued it. A machine kept out receives nothing and keeps running.
#[test]
fn invites_expire_and_a_single_use_one_admits_one_machine() {
    let mut g = Group::new();
    let a = g.init(g.at("a"));
    let invite = |args: &[&str]| {
        let mut all = vec!["invite", "--folder", g.path(a)];
        all.extend_from_slice(args);
        support::group::ok(&all).trim().to_owned()
    };
    let once = invite(&["--uses", "1"]);
    let short = invite(&["--expires", "1s"]);
    let brief = invite(&["--expires", "3s"]);
    // d is set up while `brief` is good, and started once it has expired.
    support::group::ok(&["join", &brief, g.at("d").to_str().unwrap()]);
    std::thread::sleep(std::time::Duration::from_millis(3500));
    std::fs::write(g.file(a, "shared.txt"), "for members\n").unwrap();

    support::group::ok(&["join", &once, g.at("b").to_str().unwrap()]);
    let b = g.start(g.at("b"), Vec::new());
    g.wait_everywhere("shared.txt", b"for members\n");
    wait_until("b is a member", || peers(&g, a).len() == 1);

    support::group::ok(&["join", &once, g.at("c").to_str().unwrap()]);
    let c = g.start(g.at("c"), Vec::new());
    // An expired token is refused at `chorus join`, with what to do.
    let out = support::group::cli_in(None, &["join", &short, g.at("e").to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("expired") && err.contains("chorus invite"),
        "{err}"
    );
    let d = g.start(g.at("d"), Vec::new());
    // Long enough for several join attempts (one a second).
    std::thread::sleep(std::time::Duration::from_secs(5));
    for kept_out in [c, d] {
        assert!(
            g.running(kept_out),
            "a refused joiner's daemon keeps running"
        );
        let s = g.status(kept_out);
        assert_eq!(s["traffic"]["sync_received"], 0, "{s}");
        assert!(!g.file(kept_out, "shared.txt").exists());
    }
    assert_eq!(peers(&g, a).len(), 1, "only b joined");
    let _ = b;
}

/// `chorus rekey` on the leader: every other machine is removed and every invite void; the
/// machine invited again rejoins with the new token and syncs, the one not invited gets
/// nothing more, and the old token admits nobody.
#[test]
fn rekey_shuts_out_every_machine_not_invited_again() {
    let mut g = Group::new();
    let a = g.init(g.at("a"));
    let old_token = g.invite(a);
    let b = g.join(a, g.at("b"));
    let c = g.join(a, g.at("c"));
    std::fs::write(g.file(a, "before.txt"), "before\n").unwrap();
    g.wait_everywhere("before.txt", b"before\n");
    wait_until("three voters", || {
        let r = roles(&g, a);
        r.len() == 2 && r.iter().all(|(_, role)| role == "voter")
    });
    // Without --yes it only says what it would do.
    let out = support::group::cli_in(None, &["rekey", "--folder", g.path(a)]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("--yes"), "{err}");

    let mut leader = a;
    wait_until("a leader", || {
        match [a, b, c]
            .into_iter()
            .find(|&i| g.status(i)["role"] == "leader")
        {
            Some(l) => {
                leader = l;
                true
            }
            None => false,
        }
    });
    let (keep, gone) = match leader {
        l if l == a => (b, c),
        l if l == b => (c, a),
        _ => (a, b),
    };
    let said = support::group::ok(&["rekey", "--yes", "--folder", g.path(leader)]);
    assert!(said.contains("removed 2 machines"), "{said}");
    g.stop(leader);
    g.restart(leader);
    wait_until("the leader leads alone", || {
        g.status(leader)["role"] == "leader"
    });

    // The machine kept is invited again and rejoins.
    g.stop(keep);
    let token = g.invite(leader);
    support::group::ok(&["join", &token, g.path(keep)]);
    g.restart(keep);
    std::fs::write(g.file(leader, "after.txt"), "after the rekey\n").unwrap();
    let f = g.file(keep, "after.txt");
    wait_until("the rejoined machine gets the new edit", || {
        std::fs::read(&f).is_ok_and(|x| x == b"after the rekey\n")
    });
    // The old token admits nobody, and the machine not invited again gets nothing more.
    support::group::ok(&["join", &old_token, g.at("d").to_str().unwrap()]);
    let d = g.start(g.at("d"), Vec::new());
    std::thread::sleep(std::time::Duration::from_secs(3));
    for out in [gone, d] {
        assert!(g.running(out), "a shut-out machine's daemon keeps running");
        assert!(!g.file(out, "after.txt").exists());
    }
    assert_eq!(roles(&g, leader).len(), 1, "{:?}", roles(&g, leader));
}

/// Established TCP connections of process `pid` (in a group of two, all are to the other),
/// from its own view of the network: the `/proc/PID/net/tcp{,6}` rows in state 01 whose
/// inode (the tenth column) is one of the sockets among its open files. A daemon that exited
/// has none.
fn established(pid: u32) -> usize {
    let inodes: std::collections::HashSet<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| {
            d.filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
                .filter_map(|l| {
                    let l = l.to_string_lossy().into_owned();
                    Some(l.strip_prefix("socket:[")?.strip_suffix(']')?.to_owned())
                })
                .collect()
        })
        .unwrap_or_default();
    ["tcp", "tcp6"]
        .iter()
        .filter_map(|t| std::fs::read_to_string(format!("/proc/{pid}/net/{t}")).ok())
        .map(|table| {
            table
                .lines()
                .skip(1)
                .map(|l| l.split_whitespace().collect::<Vec<_>>())
                .filter(|c| {
                    c.get(3) == Some(&"01") && c.get(9).is_some_and(|i| inodes.contains(*i))
                })
                .count()
        })
        .sum()
}

/// Two members formed the README's way end up with one TCP connection between them: the
/// joiner dials its token's addresses as one dial, and so does mDNS (each address was a dial
/// of its own, and libp2p spread the lanes over those connections, so all of them stayed,
/// each pinged every 15 s: three or four, for good). AutoNAT's dial-backs, a few seconds after
/// the join, still open one each; the lanes are open by then, so they carry none and close
/// after 60 s idle. `chorus peers` counts the connections. An edit still goes both ways.
#[test]
fn two_members_settle_on_one_connection_and_peers_counts_them() {
    let mut g = Group::new();
    let a = g.init(g.at("a"));
    let b = g.join(a, g.at("b"));
    let started = std::time::Instant::now();
    std::fs::write(g.file(a, "one.txt"), "from a\n").unwrap();
    g.wait_everywhere("one.txt", b"from a\n");

    let pid = |g: &Group, i: usize| g.nodes[i].child.as_ref().expect("running").id();
    let counted = |g: &Group, i: usize| peers(g, i).first().map(|p| p["connections"].clone());
    // A protocol bound, not a speed: an idle connection closes 60 s after its last stream
    // (the dial-backs come within ~10 s of the join).
    let by = started + Duration::from_secs(100);
    let mut seen = Vec::new();
    loop {
        let now = (
            established(pid(&g, a)),
            established(pid(&g, b)),
            counted(&g, a),
            counted(&g, b),
        );
        if seen.last() != Some(&now) {
            eprintln!("sockets of a, of b; connections `chorus peers` counts on a, on b: {now:?}");
            seen.push(now.clone());
        }
        if now == (1, 1, Some(1.into()), Some(1.into())) {
            break;
        }
        assert!(
            std::time::Instant::now() < by,
            "still more than one connection 100 s after the join: {seen:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(g.ask(a, &["peers"]).contains("yes"));

    std::fs::write(g.file(b, "two.txt"), "from b\n").unwrap();
    g.wait_everywhere("two.txt", b"from b\n");
}
