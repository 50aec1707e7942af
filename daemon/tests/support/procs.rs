//! Running `chorus` as a real process, shared by the process tests and the wire benchmark
//! (which includes this file by path).

#![allow(dead_code)]

use std::path::Path;
use std::process::Command;

/// The `chorus` binary of this build.
pub fn chorus() -> Command {
    Command::new(env!("CARGO_BIN_EXE_chorus"))
}

/// A TCP port free on loopback right now.
///
/// The listener is closed before a daemon binds the port, so the kernel may hand the same port
/// out again; tests run in parallel in one process, and two nodes given the same port made one
/// of them stop at start ("port is in use"). Ports this process handed out are never given
/// twice.
pub fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free loopback port");
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
}

/// The PeerId of the identity in `state` (created when missing), from `chorus id`.
pub fn peer_id(state: &Path) -> String {
    let out = chorus()
        .args(["id", "--state-dir"])
        .arg(state)
        .output()
        .expect("run chorus id");
    assert!(
        out.status.success(),
        "chorus id: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .expect("a PeerId is ASCII")
        .trim()
        .to_owned()
}
