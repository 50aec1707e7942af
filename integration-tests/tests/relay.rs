//! The counting relay: it carries bytes both ways exactly, counts them, delays them, and cuts
//! and heals. No root needed.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use chorus_integration_tests::relay::Relay;

/// A server that answers every connection with the bytes it received, reversed, after the
/// client closes its side.
fn reversing_server() -> std::net::SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    thread::spawn(move || {
        for s in l.incoming().flatten() {
            thread::spawn(move || {
                let mut s = s;
                let mut got = Vec::new();
                let _ = s.read_to_end(&mut got);
                got.reverse();
                let _ = s.write_all(&got);
            });
        }
    });
    addr
}

fn exchange(addr: std::net::SocketAddr, payload: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.write_all(payload)?;
    s.shutdown(Shutdown::Write)?;
    let mut back = Vec::new();
    s.read_to_end(&mut back)?;
    Ok(back)
}

#[test]
fn carries_and_counts_bytes_exactly() {
    let relay = Relay::start("127.0.0.1:0".parse().unwrap(), reversing_server()).unwrap();
    let payload: Vec<u8> = (0..1_000_000u32).map(|i| (i * 31 % 251) as u8).collect();
    let back = exchange(relay.addr(), &payload).unwrap();
    let mut expected = payload.clone();
    expected.reverse();
    assert_eq!(back, expected);
    let back = exchange(relay.addr(), b"chorus").unwrap();
    assert_eq!(back, b"surohc");
    // The writer thread may still be finishing its count of the reply; it has been delivered.
    let deadline = Instant::now() + Duration::from_secs(5);
    while relay.bytes() != (1_000_006, 1_000_006) && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(relay.bytes(), (1_000_006, 1_000_006));
    assert_eq!(relay.connections(), 2);
}

#[test]
fn delays_delivery_by_at_least_the_delay() {
    let relay = Relay::start("127.0.0.1:0".parse().unwrap(), reversing_server()).unwrap();
    relay.set_delay(Duration::from_millis(150));
    let t = Instant::now();
    let back = exchange(relay.addr(), b"abc").unwrap();
    assert_eq!(back, b"cba");
    // A lower bound only: it holds however slow the machine is (data crosses the relay twice).
    assert!(
        t.elapsed() >= Duration::from_millis(300),
        "{:?}",
        t.elapsed()
    );
}

#[test]
fn a_cut_closes_and_refuses_until_healed() {
    let relay = Relay::start("127.0.0.1:0".parse().unwrap(), reversing_server()).unwrap();
    let mut open = TcpStream::connect(relay.addr()).unwrap();
    open.write_all(b"half a message").unwrap();
    relay.cut();
    let mut buf = Vec::new();
    open.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    // The open connection is closed: EOF or a reset, never the server's answer.
    let r = open.read_to_end(&mut buf);
    assert!(r.is_err() || buf.is_empty(), "{r:?} {buf:?}");
    // New connections are accepted and closed at once.
    let refused = exchange(relay.addr(), b"xyz");
    assert!(refused.map(|b| b.is_empty()).unwrap_or(true));
    relay.heal();
    assert_eq!(exchange(relay.addr(), b"xyz").unwrap(), b"zyx");
}
