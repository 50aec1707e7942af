//! chorus-integration-tests: real processes on real (virtual) networks.
//!
//! - [`netns`]: a lab of hosts, each in its own network namespace on a private bridge, whose
//!   links can be cut and healed and made lossy; everything is removed when the lab is dropped,
//!   and leftovers of a crashed run are removed when the next lab starts.
//! - [`relay`]: a TCP relay that counts the bytes it carries and can delay, cut and heal a link.
//! - [`cluster`]: real `chorus` processes in a lab: started, killed, restarted, partitioned,
//!   their links lossy, delayed (through relays) or flapping; waits for convergence.
//! - [`bench`]: the side-by-side benchmark of chorus, rsync, Syncthing and Unison (the `bench`
//!   binary), which writes the figures and plots of docs/benchmarks.md.
//!
//! Network namespaces need root. Tests call [`needs_root`] first, which says clearly when a
//! test is skipped; CI runs as root, so there they run.

pub mod bench;
pub mod cluster;
pub mod netns;
pub mod relay;

/// True when this process runs as root.
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|euid| euid == "0"))
        })
        .unwrap_or(false)
}

/// For tests that need root: true when they can run; otherwise prints why `test` is skipped.
pub fn needs_root(test: &str) -> bool {
    if is_root() {
        return true;
    }
    eprintln!("SKIPPED {test}: network namespaces need root (run the tests as root; CI does)");
    false
}
