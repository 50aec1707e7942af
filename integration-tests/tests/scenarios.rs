//! Cluster scenarios with real `chorus` processes, each in its own network namespace: a leader
//! cut off from the majority; lossy, delayed, flapping links; SIGKILL of the leader during a
//! push, of a follower during materialization (no reader ever sees a torn file), of every node
//! in turn; a node offline for a long time while the others edit; a full disk; members found by
//! mDNS alone, also when they could not connect at first; members relayed while their direct
//! path was down going direct once it is up, and members on QUIC alone while their TCP was
//! dropped moving to TCP once it passes. Each ends with every node holding the same tree on
//! the same head, every edit in it.
//!
//! Needs root (network namespaces, nftables, tmpfs); each test says SKIPPED otherwise. Waits
//! are liveness bounds, never speed assertions. A failing test prints the nodes' logs.

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use chorus_integration_tests::cluster::{Cluster, Wiring};
use chorus_integration_tests::needs_root;
use chorus_integration_tests::netns::{Lab, LabError};

const CONVERGE: Duration = Duration::from_secs(120);

fn write(c: &Cluster, i: usize, rel: &str, text: impl AsRef<[u8]>) {
    let p = c.node(i).folder.join(rel);
    if let Some(d) = p.parent() {
        std::fs::create_dir_all(d).unwrap();
    }
    std::fs::write(p, text).unwrap();
}

/// Writes through a temp file and a rename, so the node's scan never sees it half written.
fn write_atomic(c: &Cluster, i: usize, rel: &str, bytes: &[u8]) {
    let p = c.node(i).folder.join(rel);
    let tmp = c.node(i).folder.join(format!(".{rel}.writing"));
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, &p).unwrap();
}

fn wait_file(c: &Cluster, i: usize, rel: &str, text: &[u8]) {
    let start = Instant::now();
    let p = c.node(i).folder.join(rel);
    while std::fs::read(&p).ok().as_deref() != Some(text) {
        assert!(
            start.elapsed() < CONVERGE,
            "{rel} never reached node {i} with the expected content"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn head(c: &Cluster, i: usize) -> serde_json::Value {
    c.status(i).map(|s| s["head"].clone()).unwrap_or_default()
}

#[test]
fn a_leader_cut_off_from_the_majority_loses_nothing() {
    if !needs_root("a_leader_cut_off_from_the_majority_loses_nothing") {
        return;
    }
    let mut c = Cluster::new(3, Wiring::Direct).expect("a cluster");
    c.start_all(CONVERGE);
    let old = c.wait_leader(&[0, 1, 2], CONVERGE);
    let majority: Vec<usize> = (0..3).filter(|&i| i != old).collect();
    let at_cut = head(&c, old);
    c.lab().cut(old).unwrap();

    // The minority keeps versioning its edits but commits nothing.
    write(&c, old, "minority.txt", "written on the cut-off leader\n");
    // The majority elects a new leader and goes on.
    c.wait_leader(&majority, CONVERGE);
    write(
        &c,
        majority[0],
        "majority.txt",
        "written on the majority side\n",
    );
    wait_file(
        &c,
        majority[1],
        "majority.txt",
        b"written on the majority side\n",
    );
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        head(&c, old),
        at_cut,
        "the old leader accepted nothing while cut off"
    );
    assert!(c.status(old).unwrap()["pending_local"].is_string());
    assert!(!c.node(majority[0]).folder.join("minority.txt").exists());

    c.lab().heal(old).unwrap();
    c.wait_converged(&[0, 1, 2], CONVERGE);
    for i in 0..3 {
        wait_file(&c, i, "minority.txt", b"written on the cut-off leader\n");
        wait_file(&c, i, "majority.txt", b"written on the majority side\n");
    }
}

#[test]
fn mdns_finds_members_whose_addresses_are_unknown() {
    if !needs_root("mdns_finds_members_whose_addresses_are_unknown") {
        return;
    }
    let mut c = Cluster::new(3, Wiring::Direct).expect("a cluster");
    c.mdns_only = true;
    c.start_all(CONVERGE);
    write(&c, 1, "found.txt", "found by mDNS\n");
    for i in 0..3 {
        wait_file(&c, i, "found.txt", b"found by mDNS\n");
    }
}

/// How node `from` reaches node `to` (`chorus peers`): the path and its address.
fn path(c: &Cluster, from: usize, to: usize) -> Option<(String, String)> {
    let peers = c.query(from, "peers")?;
    let to = &c.node(to).peer_id;
    peers.as_array()?.iter().find_map(|p| {
        (p["peer_id"].as_str() == Some(to.as_str())).then(|| {
            Some((
                p["path"].as_str()?.to_owned(),
                p["path_addr"].as_str()?.to_owned(),
            ))
        })?
    })
}

/// `from` reaches `to` directly: dialled, or a hole punched from a relayed connection; never
/// through another node.
fn direct(c: &Cluster, from: usize, to: usize) -> bool {
    path(c, from, to).is_some_and(|(kind, addr)| {
        (kind == "direct" || kind == "hole-punched") && !addr.contains("/p2p-circuit")
    })
}

/// Waits until nodes 1 and 2 reach each other directly both ways, over `transport` when
/// given (`"/tcp/"`, `"/quic-v1"`), at most `within` (a liveness bound): how long it took.
fn wait_direct(c: &Cluster, transport: Option<&str>, within: Duration) -> Duration {
    let start = Instant::now();
    let on = |from, to| {
        direct(c, from, to)
            && path(c, from, to).is_some_and(|(_, addr)| addr.contains(transport.unwrap_or("")))
    };
    while !on(1, 2) || !on(2, 1) {
        assert!(
            start.elapsed() < within,
            "1 and 2 did not connect directly ({}) within {within:?} of being able to: 1 to 2 {:?}, 2 to 1 {:?}",
            transport.unwrap_or("any transport"),
            path(c, 1, 2),
            path(c, 2, 1)
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    start.elapsed()
}

/// One of the lab's ways to drop what a host receives from some addresses.
type Wall = fn(&Lab, usize, &[Ipv4Addr]) -> Result<(), LabError>;

/// Puts `wall` up between nodes 1 and 2 (each drops that from the other), or takes it down.
fn between_followers(c: &Cluster, wall: Wall, up: bool) {
    let (a1, a2) = (c.lab().host(1).addr, c.lab().host(2).addr);
    let (from1, from2) = if up {
        (vec![a2], vec![a1])
    } else {
        (vec![], vec![])
    };
    wall(c.lab(), 1, &from1).unwrap();
    wall(c.lab(), 2, &from2).unwrap();
}

/// An edit on node `i` reaches all three nodes.
fn crosses(c: &Cluster, i: usize, rel: &str, text: &str) {
    write(c, i, rel, text);
    for j in 0..3 {
        wait_file(c, j, rel, text.as_bytes());
    }
}

/// Two members whose direct path is down reach each other through the third's relay; once it
/// is up again they connect directly within about half a minute. A hole punch is tried only
/// when the relayed connection opens, so before, they stayed on the third machine's link for
/// good; and when they had crossed dials through the relay twice, four relayed connections
/// filled the per-peer limit and refused every direct one (`daemon/tests/relay_slots.rs`).
#[test]
fn members_relayed_while_their_direct_path_was_down_go_direct_once_it_is_up() {
    if !needs_root("members_relayed_while_their_direct_path_was_down_go_direct_once_it_is_up") {
        return;
    }
    let mut c = Cluster::new(3, Wiring::Direct).expect("a cluster");
    c.first_dials_nobody = true;
    between_followers(&c, Lab::set_blocked, true);
    c.start_all(CONVERGE);
    for (from, to) in [(1, 2), (2, 1)] {
        let p = path(&c, from, to);
        assert!(
            p.as_ref().is_some_and(|(kind, _)| kind == "relayed"),
            "{from} reaches {to} {p:?} while their direct path is down"
        );
    }
    between_followers(&c, Lab::set_blocked, false);
    let took = wait_direct(&c, None, Duration::from_secs(100));
    eprintln!("direct {took:?} after the path came up");
    crosses(&c, 2, "direct.txt", "across the direct path\n");
}

/// Two members that could reach each other over QUIC alone while the group formed (a firewall
/// that dropped their TCP) move to TCP once it passes: a daemon that dies resets its TCP
/// connections at once, so a new leader is elected within a second, while a QUIC connection
/// only times out. The TCP dial went once, when the QUIC connection opened, so before they
/// stayed on QUIC for good.
#[test]
fn members_on_quic_alone_while_tcp_was_dropped_move_to_tcp_once_it_passes() {
    if !needs_root("members_on_quic_alone_while_tcp_was_dropped_move_to_tcp_once_it_passes") {
        return;
    }
    let mut c = Cluster::new(3, Wiring::Direct).expect("a cluster");
    c.first_dials_nobody = true;
    between_followers(&c, Lab::set_blocked_tcp, true);
    c.start_all(CONVERGE);
    let took = wait_direct(&c, Some("/quic-v1"), Duration::from_secs(120));
    eprintln!("on QUIC {took:?} after the group formed");
    // The TCP dial made when the QUIC connection opened gives up (its 10 s handshake timeout)
    // before TCP passes: only a later dial can find it.
    std::thread::sleep(Duration::from_secs(15));
    between_followers(&c, Lab::set_blocked_tcp, false);
    let took = wait_direct(&c, Some("/tcp/"), Duration::from_secs(100));
    eprintln!("on TCP {took:?} after it passed");
    crosses(&c, 1, "tcp.txt", "over TCP\n");
}

/// Two members that heard each other over mDNS while they could not connect (a firewall that
/// passes mDNS, a dial that lost a race with the other's membership) connect directly once they
/// can: mDNS names a peer once, when first heard, so they must go on dialling the addresses it
/// gave, and the addresses the leader records for them reach every member.
#[test]
fn members_found_by_mdns_that_could_not_connect_at_first_connect_directly_later() {
    if !needs_root("members_found_by_mdns_that_could_not_connect_at_first_connect_directly_later") {
        return;
    }
    let mut c = Cluster::new(3, Wiring::Direct).expect("a cluster");
    c.mdns_only = true;
    between_followers(&c, Lab::set_blocked_but_mdns, true);
    for i in 0..3 {
        c.start(i);
    }
    // Every node a member, each of 1 and 2 connected to 0 only.
    let start = Instant::now();
    while !(0..3).all(|i| c.status(i).is_some_and(|s| s["peers"] == 2))
        || c.status(0).is_none_or(|s| s["peers_connected"] != 2)
    {
        assert!(start.elapsed() < CONVERGE, "the group did not form");
        std::thread::sleep(Duration::from_millis(250));
    }
    // Their dials of each other fail meanwhile; then the firewall lets them through.
    std::thread::sleep(Duration::from_secs(5));
    between_followers(&c, Lab::set_blocked_but_mdns, false);
    wait_direct(&c, None, Duration::from_secs(90));
    crosses(&c, 1, "found.txt", "found by mDNS\n");
}

#[test]
fn a_minority_partition_of_five_merges_back() {
    if !needs_root("a_minority_partition_of_five_merges_back") {
        return;
    }
    let mut c = Cluster::new(5, Wiring::Direct).expect("a cluster");
    c.start_all(CONVERGE);
    write(&c, 0, "shared.txt", "one\ntwo\nthree\nfour\nfive\n");
    c.wait_converged(&[0, 1, 2, 3, 4], CONVERGE);
    c.partition(&[&[0, 1], &[2, 3, 4]]).unwrap();
    // Both sides edit the same file in different places, and add files of their own.
    write(&c, 0, "shared.txt", "ONE\ntwo\nthree\nfour\nfive\n");
    write(&c, 1, "left.txt", "left\n");
    write(&c, 3, "shared.txt", "one\ntwo\nthree\nfour\nFIVE\n");
    write(&c, 4, "right.txt", "right\n");
    c.wait_leader(&[2, 3, 4], CONVERGE);
    wait_file(&c, 2, "right.txt", b"right\n");
    c.heal_partition().unwrap();
    c.wait_converged(&[0, 1, 2, 3, 4], CONVERGE);
    for i in 0..5 {
        wait_file(&c, i, "shared.txt", b"ONE\ntwo\nthree\nfour\nFIVE\n");
        wait_file(&c, i, "left.txt", b"left\n");
        wait_file(&c, i, "right.txt", b"right\n");
    }
}

#[test]
fn lossy_delayed_flapping_links_still_converge() {
    if !needs_root("lossy_delayed_flapping_links_still_converge") {
        return;
    }
    // Every link through a relay that delays each direction by 200 ms; WAN timing, as a user
    // on such links would configure.
    let mut c = Cluster::new(
        3,
        Wiring::Relayed {
            delay: Duration::from_millis(200),
        },
    )
    .expect("a cluster");
    c.run_args = vec!["--timing".into(), "wan".into()];
    c.start_all(CONVERGE);
    for i in 0..3 {
        c.lab().set_loss(i, 20).unwrap();
    }
    // Node 2's link flaps while everyone edits.
    let stop = Arc::new(AtomicBool::new(false));
    let c = Arc::new(c);
    let flapper = {
        let (c, stop) = (c.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                c.relay(2).cut();
                std::thread::sleep(Duration::from_millis(1500));
                c.relay(2).heal();
                std::thread::sleep(Duration::from_millis(2500));
            }
            c.relay(2).heal();
        })
    };
    for round in 0..3 {
        for i in 0..3 {
            write(
                &c,
                i,
                &format!("n{i}/r{round}.txt"),
                format!("node {i} round {round}\n"),
            );
        }
        std::thread::sleep(Duration::from_secs(3));
    }
    stop.store(true, Ordering::SeqCst);
    flapper.join().unwrap();
    for i in 0..3 {
        c.lab().set_loss(i, 0).unwrap();
    }
    c.wait_converged(&[0, 1, 2], Duration::from_secs(240));
    for i in 0..3 {
        for round in 0..3 {
            for j in 0..3 {
                let want = format!("node {j} round {round}\n");
                wait_file(&c, i, &format!("n{j}/r{round}.txt"), want.as_bytes());
            }
        }
    }
}

#[test]
fn sigkill_of_the_leader_during_a_push_and_of_every_node_in_turn() {
    if !needs_root("sigkill_of_the_leader_during_a_push_and_of_every_node_in_turn") {
        return;
    }
    let mut c = Cluster::new(3, Wiring::Direct).expect("a cluster");
    c.start_all(CONVERGE);
    let leader = c.wait_leader(&[0, 1, 2], CONVERGE);
    let pusher = (leader + 1) % 3;
    // A large file: its push takes a while; the leader dies while it is under way.
    let big: Vec<u8> = (0..24u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    write(&c, pusher, "big.bin", &big);
    std::thread::sleep(Duration::from_millis(300));
    c.kill(leader);
    c.wait_leader(
        &(0..3).filter(|&i| i != leader).collect::<Vec<_>>(),
        CONVERGE,
    );
    c.start(leader);
    c.wait_converged(&[0, 1, 2], CONVERGE);
    for i in 0..3 {
        wait_file(&c, i, "big.bin", &big);
    }

    // Every node in turn: killed, an edit made elsewhere and one on its own folder while it is
    // down, restarted.
    for victim in 0..3 {
        c.kill(victim);
        let other = (victim + 1) % 3;
        write(
            &c,
            other,
            &format!("while-{victim}-down.txt"),
            "meanwhile\n",
        );
        write(
            &c,
            victim,
            &format!("by-{victim}-while-down.txt"),
            "offline edit\n",
        );
        c.start(victim);
        c.wait_converged(&[0, 1, 2], CONVERGE);
        for i in 0..3 {
            wait_file(&c, i, &format!("while-{victim}-down.txt"), b"meanwhile\n");
            wait_file(
                &c,
                i,
                &format!("by-{victim}-while-down.txt"),
                b"offline edit\n",
            );
        }
    }
}

#[test]
fn no_reader_sees_a_torn_file_when_a_follower_is_killed_while_writing() {
    if !needs_root("no_reader_sees_a_torn_file_when_a_follower_is_killed_while_writing") {
        return;
    }
    let mut c = Cluster::new(3, Wiring::Direct).expect("a cluster");
    c.start_all(CONVERGE);
    let leader = c.wait_leader(&[0, 1, 2], CONVERGE);
    let follower = (leader + 1) % 3;
    let a = vec![b'a'; 8 << 20];
    let b = vec![b'b'; 8 << 20];
    write_atomic(&c, leader, "f.bin", &a);
    wait_file(&c, follower, "f.bin", &a);
    // A reader on the follower checks every read is all one version, while the leader
    // alternates versions and the follower is killed and restarted mid-way.
    let stop = Arc::new(AtomicBool::new(false));
    let path = c.node(follower).folder.join("f.bin");
    let reader = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut reads = 0u64;
            while !stop.load(Ordering::SeqCst) {
                if let Ok(bytes) = std::fs::read(&path) {
                    let first = bytes.first().copied();
                    assert!(
                        bytes.len() == 8 << 20 && bytes.iter().all(|&x| Some(x) == first),
                        "a torn read: {} bytes, mixed content",
                        bytes.len()
                    );
                    reads += 1;
                }
            }
            reads
        })
    };
    for round in 0..6 {
        write_atomic(&c, leader, "f.bin", if round % 2 == 0 { &b } else { &a });
        std::thread::sleep(Duration::from_millis(400 + 150 * round as u64));
        if round == 2 {
            c.kill(follower);
            c.start(follower);
        }
    }
    write_atomic(&c, leader, "f.bin", &b);
    c.wait_converged(&[0, 1, 2], CONVERGE);
    stop.store(true, Ordering::SeqCst);
    let reads = reader.join().expect("no torn read");
    eprintln!("{reads} whole reads, none torn");
    assert!(reads > 0);
    wait_file(&c, follower, "f.bin", &b);
}

#[test]
fn a_node_offline_for_long_catches_up_and_keeps_its_own_edits() {
    if !needs_root("a_node_offline_for_long_catches_up_and_keeps_its_own_edits") {
        return;
    }
    let mut c = Cluster::new(3, Wiring::Direct).expect("a cluster");
    c.start_all(CONVERGE);
    write(&c, 0, "notes.txt", "a\nb\nc\nd\ne\nf\ng\nh\n");
    c.wait_converged(&[0, 1, 2], CONVERGE);
    c.kill(2);
    // Many versions meanwhile: files created, edited, removed, on both live nodes.
    for round in 0..12 {
        let i = round % 2;
        write(
            &c,
            i,
            &format!("dir{}/f{round}.txt", round % 3),
            format!("round {round}\n"),
        );
        if round >= 4 {
            let _ = std::fs::remove_file(c.node(i).folder.join(format!(
                "dir{}/f{}.txt",
                (round - 4) % 3,
                round - 4
            )));
        }
        std::thread::sleep(Duration::from_millis(400));
    }
    write(
        &c,
        0,
        "notes.txt",
        "a\nb\nc\nd\ne\nf\ng\nH from the others\n",
    );
    // And the offline node's own edits, made while it was down.
    write(
        &c,
        2,
        "notes.txt",
        "A from the offline node\nb\nc\nd\ne\nf\ng\nh\n",
    );
    write(&c, 2, "offline.txt", "written while down\n");
    c.wait_converged(&[0, 1], CONVERGE);
    c.start(2);
    c.wait_converged(&[0, 1, 2], CONVERGE);
    for i in 0..3 {
        wait_file(
            &c,
            i,
            "notes.txt",
            b"A from the offline node\nb\nc\nd\ne\nf\ng\nH from the others\n",
        );
        wait_file(&c, i, "offline.txt", b"written while down\n");
        for round in 8..12 {
            wait_file(
                &c,
                i,
                &format!("dir{}/f{round}.txt", round % 3),
                format!("round {round}\n").as_bytes(),
            );
        }
        assert!(!c.node(i).folder.join("dir0/f0.txt").exists());
    }
}

/// A tmpfs mounted over a directory, unmounted (lazily, so a process still in it does not
/// stop the cleanup) when dropped; what the directory held is copied in first.
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(dir: &std::path::Path, size: &str) -> Tmpfs {
        let keep = chorus_integration_tests::cluster::tree(dir);
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status()
            .expect("run mount");
        assert!(ok.success(), "mount a tmpfs on {}", dir.display());
        for (rel, bytes) in keep {
            let p = dir.join(&rel);
            if rel.ends_with('/') {
                std::fs::create_dir_all(&p).unwrap();
            } else {
                std::fs::create_dir_all(p.parent().unwrap()).unwrap();
                std::fs::write(&p, bytes).unwrap();
            }
        }
        Tmpfs(dir.to_owned())
    }

    fn resize(&self, size: &str) {
        let ok = std::process::Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.0)
            .status()
            .expect("run mount");
        assert!(ok.success());
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

#[test]
fn a_full_disk_stops_one_node_cleanly_and_it_recovers_when_space_returns() {
    if !needs_root("a_full_disk_stops_one_node_cleanly_and_it_recovers_when_space_returns") {
        return;
    }
    let mut c = Cluster::new(3, Wiring::Direct).expect("a cluster");
    // Node 2's folder and state dir each on a small tmpfs (its log stays outside).
    let folder = Tmpfs::mount(&c.node(2).folder.clone(), "12m");
    let state = Tmpfs::mount(&c.node(2).state.clone(), "12m");
    c.start_all(CONVERGE);
    write(&c, 0, "small.txt", "fits\n");
    // An older big.bin that fits: the write that fails replaces a file, as a user's big file
    // that grows does (a daemon restarted before its first scan did not retry that write,
    // since it had not seen the file yet).
    write(&c, 0, "big.bin", vec![7u8; 1 << 20]);
    c.wait_converged(&[0, 1, 2], CONVERGE);
    // 16 MiB of incompressible bytes: neither the chunks nor the file fit in 12 MiB.
    let big: Vec<u8> = (0..16u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8 ^ (i >> 20) as u8)
        .collect();
    write(&c, 0, "big.bin", &big);
    wait_file(&c, 1, "big.bin", &big);
    // The majority goes on; node 2 says why it cannot.
    c.wait_converged(&[0, 1], CONVERGE);
    let start = Instant::now();
    loop {
        let log = std::fs::read_to_string(&c.node(2).log).unwrap_or_default();
        if let Some(line) = log.lines().find(|l| l.contains("No space left on device")) {
            eprintln!("node 2 said: {line}");
            break;
        }
        assert!(
            start.elapsed() < CONVERGE,
            "node 2 never reported the full disk"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // What it held is intact.
    assert_eq!(
        std::fs::read(c.node(2).folder.join("small.txt")).unwrap(),
        b"fits\n"
    );
    // Space returns; node 2 (restarted by its supervisor, here the test) catches up.
    folder.resize("256m");
    state.resize("256m");
    c.kill(2);
    c.start(2);
    c.wait_converged(&[0, 1, 2], CONVERGE);
    wait_file(&c, 2, "big.bin", &big);
    drop(c);
    drop((folder, state));
}
