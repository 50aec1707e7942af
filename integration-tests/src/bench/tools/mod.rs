//! The tools compared, behind one interface: a session keeps one folder per party in sync,
//! either by itself (daemons: chorus, Syncthing) or when asked (one-shot tools: rsync, Unison,
//! which sync folder 0 to folder 1 over a TCP connection to a server on loopback).

pub mod chorus;
pub mod rsync;
pub mod syncthing;
pub mod unison;

use std::path::{Path, PathBuf};
use std::process::Command;

/// One tool as the scenarios see it.
pub trait Tool {
    /// The name in tables and plots.
    fn name(&self) -> String;
    /// Whether it syncs by itself, watching the folders.
    fn is_daemon(&self) -> bool;
    /// Whether it takes part in `scenario` (all of them unless it says otherwise).
    fn runs_in(&self, _scenario: &str) -> bool {
        true
    }
    /// Starts a session over `folders` (folder 0 is where changes are made in two-party
    /// scenarios), with its own files under `dir`. Daemons return once connected and idle.
    fn open(&self, dir: &Path, folders: &[PathBuf]) -> Result<Box<dyn Session>, String>;
}

/// A running session of a tool.
pub trait Session {
    /// The TCP port each party listens on (None: it only dials), for the byte counters.
    fn ports(&self) -> Vec<Option<u16>>;
    /// One-shot tools sync folder 0 to folder 1 now and return when done; daemons do nothing.
    fn sync(&mut self) -> Result<(), String>;
    /// Daemons: wait until every party says it has nothing left to do (bounded).
    fn settle(&mut self) {}
    /// Resident memory (bytes) of each running daemon process now.
    fn rss_now(&self) -> Vec<u64> {
        Vec::new()
    }
    /// Stops everything; the peak RSS (bytes) of the largest process of the session.
    fn close(self: Box<Self>) -> u64;
}

/// Whether `program` can be run.
pub fn installed(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success() || !o.stdout.is_empty() || !o.stderr.is_empty())
}

/// Installs the Debian packages that provide missing programs (as root, with apt-get).
/// Returns one line per package that is still missing afterwards.
pub fn ensure_installed(wanted: &[(&str, &str)]) -> Vec<String> {
    let missing: Vec<&str> = wanted
        .iter()
        .filter(|(prog, _)| !installed(prog) && !Path::new(prog).exists())
        .map(|(_, pkg)| *pkg)
        .collect();
    if missing.is_empty() {
        return Vec::new();
    }
    eprintln!("bench: installing {}", missing.join(" "));
    let install = |pkgs: &[&str]| {
        Command::new("apt-get")
            .args(["install", "-y", "-q"])
            .args(pkgs)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .is_ok_and(|s| s.success())
    };
    if !install(&missing) {
        let _ = Command::new("apt-get").args(["update", "-q"]).status();
        install(&missing);
    }
    wanted
        .iter()
        .filter(|(prog, _)| !installed(prog) && !Path::new(prog).exists())
        .map(|(prog, pkg)| {
            format!("{prog} is missing and `apt-get install -y {pkg}` failed (run the benchmark as root on Debian, or install {pkg})")
        })
        .collect()
}
