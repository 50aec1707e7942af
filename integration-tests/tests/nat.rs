//! Members behind NATs, set up the README's way (`init`, `invite`, `join`, `run`): one member on
//! a public segment, one behind each of two NAT routers (nftables masquerade, new connections
//! from outside dropped). The two NATed members cannot dial each other; they must still sync,
//! through the public member's relay (or directly, should a hole punch work), and each says how
//! it reaches the other. A stranger on the public segment (another share's key) gets nothing.
//! A machine joins with a NATed member's token, through the relay.
//! Needs root; skipped (with a message) otherwise.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use chorus_integration_tests::cluster::chorus_bin;
use chorus_integration_tests::needs_root;
use chorus_integration_tests::netns::{Lab, Nat};

/// The public member, the two routers and the stranger are hosts 0..4 on the bridge.
const PUBLIC: usize = 0;
const ROUTER_A: usize = 1;
const ROUTER_B: usize = 2;
const STRANGER: usize = 3;

struct Site {
    lab: Lab,
    /// Each daemon's process, by folder name.
    pids: std::cell::RefCell<Vec<(String, u32)>>,
    /// The host behind NAT A, and the host A's daemon runs on now (it may start on the public
    /// segment and move behind its NAT later, as a laptop goes home).
    a_nat: usize,
    a_at: std::cell::Cell<usize>,
    /// The host behind NAT B.
    b_nat: usize,
    bin: PathBuf,
    _root: tempfile::TempDir,
    dir: PathBuf,
}

impl Drop for Site {
    /// `NAT_KEEP_LOGS=DIR` keeps the daemons' logs there.
    fn drop(&mut self) {
        if let Ok(d) = std::env::var("NAT_KEEP_LOGS") {
            let d = std::path::Path::new(&d).join(self.dir.file_name().unwrap_or_default());
            let _ = std::fs::create_dir_all(&d);
            for n in ["public", "a", "b", "stranger"] {
                let _ = std::fs::copy(
                    self.dir.join(format!("{n}.log")),
                    d.join(format!("{n}.log")),
                );
            }
        }
    }
}

impl Site {
    fn folder(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn cli(&self, args: &[&str]) -> Output {
        Command::new(&self.bin)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run chorus")
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        assert!(
            out.status.success(),
            "chorus {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// `chorus run FOLDER` inside host `host`'s namespace, its output in `FOLDER.log`.
    fn run(&self, host: usize, name: &str) {
        let folder = self.folder(name);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(format!("{name}.log")))
            .unwrap();
        let mut cmd = self.lab.command(host, &self.bin);
        cmd.arg("run")
            .arg(&folder)
            .args(["--debounce-ms", "50"])
            .env(
                "RUST_LOG",
                "chorus=debug,libp2p_relay=info,libp2p_dcutr=debug,libp2p_swarm=debug",
            )
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log));
        let pid = self.lab.spawn(cmd).expect("start chorus run");
        self.pids.borrow_mut().push((name.to_owned(), pid));
        self.wait(
            &format!("{name}'s daemon answers"),
            Duration::from_secs(30),
            || self.query(name, "status").is_some(),
        );
    }

    /// Sends `sig` (`-STOP`, `-CONT`, `-KILL`) to `name`'s daemon.
    fn signal(&self, name: &str, sig: &str) {
        let pids = self.pids.borrow();
        let (_, pid) = pids
            .iter()
            .find(|(n, _)| n == name)
            .expect("a daemon of that name");
        let _ = Command::new("kill").args([sig, &pid.to_string()]).output();
    }

    /// Stops `name`'s daemon with `sig` (`-KILL` for a crash, `-TERM` for a clean stop) and
    /// waits until it is gone.
    fn stop(&self, name: &str, sig: &str) {
        self.signal(name, sig);
        let pid = {
            let mut pids = self.pids.borrow_mut();
            let i = pids
                .iter()
                .position(|(n, _)| n == name)
                .expect("a daemon of that name");
            pids.remove(i).1
        };
        assert!(
            self.lab.wait_exit(pid, Duration::from_secs(30)),
            "{name}'s daemon outlived {sig}"
        );
    }

    /// The host `name`'s daemon runs on.
    fn host_of(&self, name: &str) -> usize {
        match name {
            "public" => PUBLIC,
            "a" => self.a_at.get(),
            // A machine that joins later, on the public segment.
            "c" => STRANGER,
            _ => self.b_nat,
        }
    }

    /// Bytes host `host` received and sent on its link so far.
    fn link_bytes(&self, host: usize) -> u64 {
        ["rx_bytes", "tx_bytes"]
            .iter()
            .map(|c| {
                let out = self
                    .lab
                    .command(host, "cat")
                    .arg(format!("/sys/class/net/eth0/statistics/{c}"))
                    .output()
                    .expect("read the link's counters");
                String::from_utf8_lossy(&out.stdout)
                    .trim()
                    .parse::<u64>()
                    .unwrap()
            })
            .sum()
    }

    /// True when every member in `names` holds `rel` with exactly `bytes`.
    fn holds(&self, names: &[&str], rel: &str, bytes: &[u8]) -> bool {
        names
            .iter()
            .all(|n| std::fs::read(self.folder(n).join(rel)).ok().as_deref() == Some(bytes))
    }

    fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.join(format!("{name}.log"))).unwrap_or_default()
    }

    fn query(&self, name: &str, what: &str) -> Option<serde_json::Value> {
        let folder = self.folder(name);
        let out = self.cli(&[what, "--json", "--folder", folder.to_str().unwrap()]);
        out.status
            .success()
            .then(|| serde_json::from_slice(&out.stdout).ok())
            .flatten()
    }

    fn peer_id(&self, name: &str) -> String {
        let state = self.folder(name).join(".chorus");
        self.ok(&["id", "--state-dir", state.to_str().unwrap()])
    }

    /// How `name` reaches the member `peer`: its `/v1/peers` entry.
    fn path_to(&self, name: &str, peer: &str) -> Option<(String, String)> {
        let peers = self.query(name, "peers")?;
        let p = peers.as_array()?.iter().find(|p| p["peer_id"] == peer)?;
        Some((
            p["path"].as_str()?.to_owned(),
            p["path_addr"].as_str()?.to_owned(),
        ))
    }

    fn wait(&self, what: &str, within: Duration, mut cond: impl FnMut() -> bool) {
        let start = Instant::now();
        while !cond() {
            if start.elapsed() > within {
                for name in ["public", "a", "b", "stranger"] {
                    let log = self.log(name);
                    let tail: Vec<&str> = log.lines().rev().take(40).collect();
                    eprintln!("==== {name} ====");
                    for l in tail.iter().rev() {
                        eprintln!("{l}");
                    }
                }
                panic!("{what}: not within {within:?}");
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// The lab: the public member, two NAT routers (site A behind a cone NAT, site B behind `nat_b`)
/// and a stranger; the share made on the public member and joined from both sites.
fn group(nat_b: Nat) -> Site {
    group_with(nat_b, None, false)
}

/// As [`group`], the public member's `relay_circuit_mib` set first when given; with
/// `a_outside`, A's daemon starts on the public segment (the stranger's host) instead of
/// behind its NAT ([`nated_leader`] moves it there).
fn group_with(nat_b: Nat, relay_circuit_mib: Option<u64>, a_outside: bool) -> Site {
    let mut lab = Lab::new(4).expect("a lab");
    let a = lab.add_nat_site(ROUTER_A, Nat::Cone).expect("site A");
    let b = lab.add_nat_site(ROUTER_B, nat_b).expect("site B");
    let root = tempfile::tempdir().unwrap();
    let site = Site {
        lab,
        pids: Default::default(),
        a_nat: a,
        a_at: std::cell::Cell::new(if a_outside { STRANGER } else { a }),
        b_nat: b,
        bin: chorus_bin().expect("the chorus binary"),
        dir: root.path().to_owned(),
        _root: root,
    };
    let public = site.folder("public");
    let started = Instant::now();
    site.ok(&["init", public.to_str().unwrap()]);
    if let Some(mib) = relay_circuit_mib {
        let path = public.join(".chorus/config.toml");
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("relay_circuit_mib = 1024"), "{text}");
        let text = text.replace(
            "relay_circuit_mib = 1024",
            &format!("relay_circuit_mib = {mib}"),
        );
        std::fs::write(&path, text).unwrap();
    }
    site.run(PUBLIC, "public");
    for name in ["a", "b"] {
        let token = site.ok(&["invite", "--folder", public.to_str().unwrap()]);
        let folder = site.folder(name);
        site.ok(&["join", &token, folder.to_str().unwrap()]);
        site.run(site.host_of(name), name);
    }
    site.wait(
        "all three are members, each connected to the other two",
        Duration::from_secs(60),
        || {
            ["public", "a", "b"].iter().all(|n| {
                site.query(n, "status")
                    .is_some_and(|s| s["peers"] == 2 && s["peers_connected"] == 2)
            })
        },
    );
    eprintln!(
        "{nat_b:?}: init, two invites and joins, three daemons, all connected: {:?}",
        started.elapsed()
    );
    site
}

/// `len` pseudo-random bytes (xorshift): incompressible, and unlike anything a member holds.
fn noise(len: usize) -> Vec<u8> {
    noise_from(0x9E37_79B9_7F4A_7C15, len)
}

/// [`noise`] from another seed (not zero).
fn noise_from(seed: u64, len: usize) -> Vec<u8> {
    let mut x: u64 = seed;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn write(path: &Path, bytes: &[u8]) {
    std::fs::write(path, bytes).unwrap();
}

/// Makes B (behind its NAT) the leader and moves A behind its NAT, so that the leader reaches
/// A only through the public member's relay (the case); returns the leader's name.
/// With pre-votes a member that cannot reach a majority raises no term, so a NATed member is
/// not elected while the relay between the NATed members is down: A starts on the public
/// segment (`group_with(.., true)`), where B reaches it directly; the leader is crashed and
/// run again until B is elected in its place, and then A goes home behind NAT A, as a laptop
/// does (its daemon stopped and run there; B and the public member keep the majority).
fn nated_leader(site: &Site) -> &'static str {
    // The leader all three agree on (same term, same leader, and it says it leads), if any.
    let agreed = |names: &[&str]| -> Option<String> {
        let st: Vec<serde_json::Value> = names
            .iter()
            .map(|n| site.query(n, "status"))
            .collect::<Option<_>>()?;
        let leader = st[0]["leader"].as_str()?.to_owned();
        let same = st
            .iter()
            .all(|s| s["leader"] == leader.as_str() && s["term"] == st[0]["term"]);
        let leads = names
            .iter()
            .zip(&st)
            .any(|(n, s)| s["role"] == "leader" && site.peer_id(n) == leader);
        (same && leads).then_some(leader)
    };
    let all = ["public", "a", "b"];
    let name_of = |id: &str| all.into_iter().find(|n| site.peer_id(n) == id);
    let mut leader = None;
    // A liveness bound: after a crash the connections and the election start again; under
    // load that has taken over a minute.
    let within = Duration::from_secs(150);
    site.wait("all three agree on a leader", within, || {
        leader = agreed(&all);
        leader.is_some()
    });
    if site.a_at.get() == site.a_nat {
        if leader.as_deref().and_then(name_of) == Some("b") {
            return "b";
        }
        // Called again after the leadership moved: A comes back to the public segment first.
        site.stop("a", "-TERM");
        site.a_at.set(STRANGER);
        site.run(STRANGER, "a");
        site.wait("all three agree on a leader", within, || {
            leader = agreed(&all);
            leader.is_some()
        });
    }
    // B wins such an election about one time in three alone, less under a loaded test run
    // (once not in ten rounds): twenty rounds.
    for round in 0..20 {
        let now = name_of(leader.as_deref().unwrap()).unwrap();
        if now == "b" {
            break;
        }
        eprintln!("round {round}: {now} leads; crashing it for 3 s");
        site.stop(now, "-KILL");
        let others: Vec<&str> = all.into_iter().filter(|n| *n != now).collect();
        site.wait("the other two elect one of them", within, || {
            agreed(&others).is_some()
        });
        std::thread::sleep(Duration::from_secs(3));
        site.run(site.host_of(now), now);
        site.wait("all three agree on a leader", within, || {
            leader = agreed(&all);
            leader.is_some()
        });
    }
    let id = leader.expect("a leader");
    assert_eq!(name_of(&id), Some("b"), "B was elected within 20 rounds");
    // A goes home, behind NAT A.
    site.stop("a", "-TERM");
    site.a_at.set(site.a_nat);
    site.run(site.a_nat, "a");
    site.wait("all three agree on B, A behind its NAT", within, || {
        agreed(&all).as_deref() == Some(id.as_str())
    });
    "b"
}

/// Both NATed members' edits reach each other (and the public member).
fn edits_cross(site: &Site) {
    write(
        &site.folder("a").join("from-a.txt"),
        b"written behind NAT A\n",
    );
    write(
        &site.folder("b").join("from-b.txt"),
        b"written behind NAT B\n",
    );
    site.wait(
        "each NATed member's file on the other",
        Duration::from_secs(60),
        || {
            let all = ["public", "a", "b"];
            site.holds(&all, "from-a.txt", b"written behind NAT A\n")
                && site.holds(&all, "from-b.txt", b"written behind NAT B\n")
        },
    );
}

#[test]
fn members_behind_a_symmetric_nat_sync_through_a_members_relay() {
    if !needs_root("members_behind_a_symmetric_nat_sync_through_a_members_relay") {
        return;
    }
    let site = group(Nat::Symmetric);
    let (a, b, public) = (site.peer_id("a"), site.peer_id("b"), site.peer_id("public"));
    // A's connection to B can only go through the public member's relay.
    let (path, addr) = site.path_to("a", &b).expect("A is connected to B");
    assert_eq!(path, "relayed", "A reaches B at {addr}");
    assert!(
        addr.contains(&format!("/p2p/{public}/p2p-circuit")),
        "through the public member: {addr}"
    );
    assert_eq!(site.path_to("a", &public).unwrap().0, "direct");
    assert_eq!(site.path_to("b", &a).unwrap().0, "relayed");
    edits_cross(&site);
    // Each knows whether members can dial it: the NATed ones asked the public member to dial
    // them back (AutoNAT) and it could not; the public member was dialled by both.
    let reach = |n: &str| {
        site.query(n, "status")
            .and_then(|s| s["reachability"].as_str().map(str::to_owned))
            .unwrap_or_default()
    };
    for n in ["a", "b"] {
        site.wait(
            &format!("{n} knows it is behind a NAT"),
            Duration::from_secs(60),
            || reach(n) == "behind-nat",
        );
    }
    let public_reach = reach("public");
    eprintln!("reachability: public member {public_reach}, NATed members behind-nat");
    assert!(
        public_reach == "public" || public_reach == "reachable",
        "the public member: {public_reach}"
    );
    assert!(
        site.log("public").contains("relaying between two members"),
        "the public member relayed"
    );

    // A stranger on the public segment (its own share, its own key) dials the public member and
    // the circuit to A: the share's key turns it away before any protocol runs.
    let stranger = site.folder("stranger");
    site.ok(&["init", stranger.to_str().unwrap()]);
    let config =
        std::fs::read_to_string(site.folder("public").join(".chorus/config.toml")).unwrap();
    let port: u16 = config
        .split("/tcp/")
        .nth(1)
        .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|p| p.parse().ok())
        .expect("the public member's port in its config");
    let public_addr = format!(
        "/ip4/{}/tcp/{port}/p2p/{public}",
        site.lab.host(PUBLIC).addr
    );
    let circuit = format!("{public_addr}/p2p-circuit/p2p/{a}");
    let log = std::fs::File::create(site.dir.join("stranger.log")).unwrap();
    let mut cmd = site.lab.command(STRANGER, &site.bin);
    cmd.arg("run")
        .arg(&stranger)
        .args(["--peer", &public_addr, "--peer", &circuit])
        .env("RUST_LOG", "chorus=debug")
        .stdout(Stdio::from(log.try_clone().unwrap()))
        .stderr(Stdio::from(log));
    site.lab.spawn(cmd).expect("start the stranger");
    std::thread::sleep(Duration::from_secs(8));
    let stranger_id = site.peer_id("stranger");
    for n in ["public", "a"] {
        assert!(
            !site.log(n).contains(&stranger_id),
            "{n} heard of the stranger"
        );
        let peers = site.query(n, "peers").unwrap();
        assert!(
            !peers.to_string().contains(&stranger_id),
            "the stranger is among {n}'s peers"
        );
    }
    assert_eq!(
        site.query("stranger", "status").unwrap()["peers_connected"],
        0
    );
}

#[test]
fn members_behind_cone_nats_punch_a_hole_and_sync_without_the_relay() {
    if !needs_root("members_behind_cone_nats_punch_a_hole_and_sync_without_the_relay") {
        return;
    }
    let site = group(Nat::Cone);
    let (a, b) = (site.peer_id("a"), site.peer_id("b"));
    // Both NATs keep ports: DCUtR turns the relayed connection into a direct one, and the
    // relayed one is closed, so bulk traffic never takes the relay.
    for (from, to) in [("a", &b), ("b", &a)] {
        site.wait(
            &format!("{from} reaches the other NATed member by a hole punch"),
            Duration::from_secs(30),
            || {
                site.path_to(from, to)
                    .is_some_and(|(p, addr)| p == "hole-punched" && !addr.contains("/p2p-circuit"))
            },
        );
    }
    eprintln!(
        "hole-punched paths: a->b {:?}, b->a {:?}",
        site.path_to("a", &b),
        site.path_to("b", &a)
    );
    edits_cross(&site);
    // With the public member (the relay, and the leader) frozen, the two elect one of them and
    // sync over the punched connection.
    let signal = |sig: &str| site.signal("public", sig);
    signal("-STOP");
    write(
        &site.folder("a").join("while-public-frozen.txt"),
        b"direct\n",
    );
    let frozen = Instant::now();
    let crossed = (|| {
        while frozen.elapsed() < Duration::from_secs(60) {
            if site.holds(&["b"], "while-public-frozen.txt", b"direct\n") {
                return true;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        false
    })();
    eprintln!(
        "with the relay frozen, an edit crossed in {:?}",
        frozen.elapsed()
    );
    signal("-CONT");
    assert!(
        crossed,
        "an edit crossed the punched connection with the relay frozen"
    );
}

/// The stranding case: the public member comes back after a crash and a NATed member
/// may be elected; that leader must reach the other NATed member (through the public member's
/// relay) and take its edits. Bytes of the edit cross the relay, counted on its link.
#[test]
fn a_member_behind_nat_that_leads_reaches_the_other_through_the_relay() {
    if !needs_root("a_member_behind_nat_that_leads_reaches_the_other_through_the_relay") {
        return;
    }
    let site = group_with(Nat::Symmetric, None, true);
    let leader = nated_leader(&site);

    let other = if leader == "a" { "b" } else { "a" };
    eprintln!("{leader} (behind NAT) leads");
    let started = Instant::now();
    site.wait(
        "the other NATed member connected to the leader",
        Duration::from_secs(60),
        || site.path_to(other, &site.peer_id(leader)).is_some(),
    );
    eprintln!(
        "{other} reached the leader in {:?}: {:?}",
        started.elapsed(),
        site.path_to(other, &site.peer_id(leader))
    );
    // An edit on the other NATed member reaches the leader and the public member.
    let before = site.link_bytes(PUBLIC);
    let big = noise(2 << 20);
    write(&site.folder(other).join("big.bin"), &big);
    site.wait(
        "the edit of a NATed member reaches everyone through a NATed leader",
        Duration::from_secs(90),
        || site.holds(&["public", "a", "b"], "big.bin", &big),
    );
    let carried = site.link_bytes(PUBLIC) - before;

    eprintln!(
        "public member's link: {carried} bytes for a {} byte file (relay in and out, plus its own copy)",
        big.len()
    );
    // Its own copy is one file's worth; relaying the push to the leader is two more.
    assert!(
        carried >= 2 * big.len() as u64,
        "the push crossed the relay: {carried} bytes on the relay's link"
    );
}

/// A NATed member's public address changes (its router gets a new one, as a laptop moving
/// networks): its connections die, and it is found again without a new invite: it dials the
/// public member again and the other NATed member reaches it through the relay; edits cross.
#[test]
fn a_member_whose_public_address_changes_is_found_again() {
    if !needs_root("a_member_whose_public_address_changes_is_found_again") {
        return;
    }
    let mut site = group(Nat::Symmetric);
    let (a, b) = (site.peer_id("a"), site.peer_id("b"));
    edits_cross(&site);
    let moved = Instant::now();
    let new = site
        .lab
        .readdress(ROUTER_B, 200)
        .expect("a new address for B's router");
    write(&site.folder("b").join("after-the-move.txt"), b"moved\n");
    site.wait(
        "B's edit after its address changed reaches everyone",
        Duration::from_secs(90),
        || site.holds(&["public", "a"], "after-the-move.txt", b"moved\n"),
    );
    let crossed = moved.elapsed();
    site.wait("A reaches B again", Duration::from_secs(60), || {
        site.path_to("a", &b).is_some()
    });
    // The old connection is dead (pings find it out within about 20 s); the new one is from
    // the new address.
    site.wait(
        "the public member reaches B at its new address",
        Duration::from_secs(60),
        || {
            site.path_to("public", &b)
                .is_some_and(|(_, addr)| addr.contains(&new.to_string()))
        },
    );
    let (path, addr) = site.path_to("public", &b).unwrap();
    eprintln!(
        "B's router moved to {new}; edits crossed {crossed:?} after; the public member reaches B {path} at {addr} {:?} after",
        moved.elapsed()
    );
    // B's own view, waited for as A's was: taken at one instant it could fall between a
    // relayed connection closing and its replacement (a full run of the suite saw it so once).
    site.wait("B reaches A again", Duration::from_secs(60), || {
        site.path_to("b", &a).is_some()
    });
}

/// A machine joins with the token of a member behind a NAT, which nobody can dial: the token
/// carries the circuit through the public member's relay, and the joiner reaches the inviter
/// through it. Before, the joiner filed that address under the relay's id (the first `/p2p/`
/// in it) and its dial was refused as one to the wrong peer: it could never join.
#[test]
fn a_machine_joins_with_the_token_of_a_member_behind_a_nat() {
    if !needs_root("a_machine_joins_with_the_token_of_a_member_behind_a_nat") {
        return;
    }
    let site = group(Nat::Symmetric);
    let a_folder = site.folder("a");
    // A's token names its circuit once it holds a reservation at the public member.
    let mut token = String::new();
    site.wait(
        "A's invite carries a circuit through the relay",
        Duration::from_secs(30),
        || {
            let out = site.ok(&["invite", "--json", "--folder", a_folder.to_str().unwrap()]);
            let v: serde_json::Value = serde_json::from_str(&out).unwrap();
            let circuit = v["addresses"].as_array().is_some_and(|a| {
                a.iter()
                    .any(|x| x.as_str().is_some_and(|x| x.contains("/p2p-circuit")))
            });
            token = v["token"].as_str().unwrap_or_default().to_owned();
            circuit
        },
    );
    let c = site.folder("c");
    site.ok(&["join", &token, c.to_str().unwrap()]);
    site.run(STRANGER, "c");
    site.wait(
        "C is a member, connected to all three",
        Duration::from_secs(90),
        || {
            site.query("c", "status")
                .is_some_and(|s| s["peers"] == 3 && s["peers_connected"] == 3)
        },
    );
    write(
        &c.join("from-c.txt"),
        b"joined through a NATed member's invite\n",
    );
    site.wait("C's file on every member", Duration::from_secs(60), || {
        site.holds(
            &["public", "a", "b", "c"],
            "from-c.txt",
            b"joined through a NATed member's invite\n",
        )
    });
}

/// The relay member's bytes stay within its limits: with `relay_circuit_mib = 32` (the least
/// allowed), a 96 MiB file pushed by one NATed member to the other, which leads (a symmetric
/// NAT: relayed), makes the relay close the circuit at the limit; the file still arrives whole,
/// and what crossed the relay's link is reported (the relay bounds each circuit).
#[test]
fn the_relay_closes_circuits_at_their_limit_and_the_transfer_goes_on() {
    if !needs_root("the_relay_closes_circuits_at_their_limit_and_the_transfer_goes_on") {
        return;
    }
    let site = group_with(Nat::Symmetric, Some(32), true);
    let opened = |s: &Site| {
        s.log("public")
            .matches("relaying between two members")
            .count()
    };
    let at_limit = |s: &Site| s.log("public").matches("reached its byte limit").count();
    // A push to a NATed leader from the other NATed member crosses the relay. When the
    // leadership moves while the file is on its way, the file goes around the relay: then
    // again, with a NATed leader and a new file, until one reaches the relay's limit (at most
    // four files).
    let mut attempt = 0u64;
    let (carried, circuits, started) = loop {
        let leader = nated_leader(&site);
        let other = if leader == "a" { "b" } else { "a" };
        site.wait(
            "the other NATed member reaches the leader",
            Duration::from_secs(60),
            || {
                site.path_to(other, &site.peer_id(leader))
                    .is_some_and(|(p, _)| p == "relayed")
            },
        );
        let (opened_before, before, limit_before) =
            (opened(&site), site.link_bytes(PUBLIC), at_limit(&site));
        // Incompressible and unlike anything held: every byte crosses.
        let data = noise_from(0x9E37_79B9_7F4A_7C15 + attempt, 96 << 20);
        let name = format!("big{attempt}.bin");
        let started = Instant::now();
        write(&site.folder(other).join(&name), &data);
        site.wait(
            "the 96 MiB file reaches the NATed leader through the relay",
            Duration::from_secs(600),
            || site.holds(&[leader], &name, &data),
        );
        // Only a file that went through a circuit tells about the limit. When the leadership
        // moved to the public member while the file was on its way (it went directly then,
        // and the NATed members took it from the public one), or moved back and forth so the
        // public member no longer leads by now (one CI run: 12 s, no circuit opened), the
        // file went around the relay: try again with a NATed leader and a new file.
        if at_limit(&site) > limit_before || attempt == 3 {
            break (
                site.link_bytes(PUBLIC) - before,
                (opened(&site) - opened_before) as u64,
                started,
            );
        }
        let roles: Vec<String> = ["public", "a", "b"]
            .iter()
            .map(|n| {
                let s = site.query(n, "status");
                let role = s
                    .as_ref()
                    .and_then(|s| s["role"].as_str().map(str::to_owned));
                let term = s.as_ref().and_then(|s| s["term"].as_u64());
                format!(
                    "{n}: {} term {}",
                    role.as_deref().unwrap_or("?"),
                    term.map_or("?".into(), |t| t.to_string())
                )
            })
            .collect();
        eprintln!(
            "attempt {attempt}: {name} reached {leader} in {:?} without reaching the relay's limit ({} circuits opened); now {}; again",
            started.elapsed(),
            opened(&site) - opened_before,
            roles.join(", ")
        );
        attempt += 1;
    };
    if std::env::var("NAT_DEBUG").is_ok() || at_limit(&site) == 0 {
        for n in ["public", "a", "b"] {
            eprintln!(
                "== {n}: {:?}",
                site.query(n, "status")
                    .map(|s| (s["role"].clone(), s["term"].clone()))
            );
            for l in site
                .log(n)
                .lines()
                .filter(|l| l.contains("circuit") || l.contains("leader") || l.contains("campaign"))
            {
                eprintln!("{n}: {}", &l[..l.len().min(260)]);
            }
        }
    }
    eprintln!(
        "96 MiB through a relay with 32 MiB circuits: {:?}, {} MB on the relay's link, {circuits} circuits opened, {} closed at the limit",
        started.elapsed(),
        carried / 1_000_000,
        at_limit(&site)
    );
    // At least one circuit reached the limit and was closed; the pair then connects again
    // through a new circuit, or the leadership moves to the public member (the closed circuit
    // was the leader's connection to the other), and the rest goes directly.
    assert!(
        at_limit(&site) >= 1,
        "the relay closed a circuit at 32 MiB (96 MiB crossed)"
    );
    // What crossed the relay's link is reported, not bounded here: besides the circuits (each
    // at most the limit each way, which the relay enforces and `at_limit` shows), it holds the
    // relay member's own fetches of the file, which start again when the leadership moves
    // (270–420 MB in most runs, once 870 MB: docs/benchmarks.md).
}
