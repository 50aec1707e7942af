//! Groups formed exactly as README.md's Quickstart forms them (`chorus init`, `chorus run`,
//! `chorus invite`, `chorus join` twice, `chorus run`), several times over: every member
//! ends up a voter, the two joiners reach each other directly, and when the first machine is
//! then killed the other two elect a leader and go on syncing. `chorus status` names a
//! member it cannot reach.
//!
//! Waits are liveness bounds (a stuck group fails the test), never speed assertions.

mod support;

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
        // Each names the machine it lost.
        let lost = g.status(b);
        assert_eq!(
            lost["unreachable"].as_array().map(Vec::len),
            Some(1),
            "{lost}"
        );
        let human = g.ask(b, &["status"]);
        assert!(human.contains("unreachable"), "{human}");

        std::fs::write(g.file(c, "after.txt"), "after the loss\n").unwrap();
        for i in [b, c] {
            let f = g.file(i, "after.txt");
            wait_until("the edit reaches the other survivor", || {
                std::fs::read(&f).is_ok_and(|x| x == b"after the loss\n")
            });
        }
    }
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
