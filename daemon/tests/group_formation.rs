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
                    && p.iter().all(|x| x["connected"] == true && x["role"] != "learner")
            })
        });

        g.kill(a);
        wait_until("the two left elect a leader", || {
            [b, c].iter().any(|&i| g.status(i)["role"] == "leader")
        });
        // Each names the machine it lost.
        let lost = g.status(b);
        assert_eq!(lost["unreachable"].as_array().map(Vec::len), Some(1), "{lost}");
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
