//! Strangers on the wire, against real daemons formed the README's way: a process without
//! the share key opens far more idle TCP connections to a member than it has file
//! descriptors (the member runs with a hard limit of 256 open files, as a small machine
//! might) and holds them past the handshake deadline. The member turns the excess away at
//! once and drops the idle handshakes after their deadline; it keeps running, keeps
//! answering its local socket, and keeps syncing with the other member throughout.

mod support;

use std::io::Read;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use chorus::config::token::JoinToken;
use support::group::{Group, LIVENESS};

/// The member's hard limit on open files.
const NOFILE: u64 = 256;
/// Idle connections the stranger opens: several times that limit.
const CONNECTIONS: usize = 1500;

/// True when the member closed this connection: its end reads EOF (or a reset) once what it
/// sent (the private network's nonce) is drained.
fn closed_by_the_member(s: &TcpStream) -> bool {
    let mut buf = [0u8; 256];
    loop {
        match (&mut &*s).read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return false,
            Err(_) => return true,
        }
    }
}

/// Raises this test process's own soft limit, so it can hold the connections.
fn raise_own_limit() -> usize {
    let mut l = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain libc calls on a local struct.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut l);
        l.rlim_cur = l.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &l);
    }
    l.rlim_cur as usize
}

#[test]
fn a_stranger_holding_idle_connections_cannot_exhaust_a_members_descriptors() {
    let own = raise_own_limit();
    let mut g = Group::new();
    let a = g.init(g.at("a"));
    g.nodes[a].nofile = Some(NOFILE);
    g.stop(a);
    g.restart(a);
    let b = g.join(a, g.at("b"));
    std::fs::write(g.file(a, "before.txt"), "before\n").unwrap();
    g.wait_everywhere("before.txt", b"before\n");

    let token = JoinToken::decode(&g.invite(a)).unwrap();
    let tcp = token
        .addresses
        .iter()
        .find_map(|m| {
            let mut ip = None;
            let mut port = None;
            for p in m.iter() {
                match p {
                    libp2p::multiaddr::Protocol::Ip4(x) => ip = Some(x),
                    libp2p::multiaddr::Protocol::Tcp(x) => port = Some(x),
                    _ => {}
                }
            }
            Some(std::net::SocketAddr::from((ip?, port?)))
        })
        .expect("the invite names a TCP address");

    // Open them all and say nothing; keep what the member has not closed.
    let want = CONNECTIONS.min(own.saturating_sub(200));
    assert!(
        want as u64 > 2 * NOFILE,
        "this test needs {} descriptors",
        2 * NOFILE
    );
    let mut held = Vec::new();
    for _ in 0..want {
        if let Ok(s) = TcpStream::connect_timeout(&tcp, Duration::from_secs(2)) {
            held.push(s);
        }
    }

    // While they are held the member lives and syncs, until it has closed every one of them
    // (the excess at once, the idle handshakes at their deadline): a liveness bound, not a
    // speed limit.
    for s in &held {
        s.set_nonblocking(true).unwrap();
    }
    let start = Instant::now();
    let mut round = 0;
    loop {
        round += 1;
        assert!(g.running(a), "the member is still running");
        let name = format!("during{round}.txt");
        let (from, text) = if round % 2 == 0 {
            (a, "from a\n")
        } else {
            (b, "from b\n")
        };
        std::fs::write(g.file(from, &name), text).unwrap();
        g.wait_everywhere(&name, text.as_bytes());
        if held.iter().all(closed_by_the_member) {
            break;
        }
        assert!(
            start.elapsed() < LIVENESS,
            "after {round} rounds the member still holds idle connections of a stranger"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    drop(held);
    std::fs::write(g.file(a, "after.txt"), "after\n").unwrap();
    g.wait_everywhere("after.txt", b"after\n");
    assert!(g.running(a) && g.running(b));
}
