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
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
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
