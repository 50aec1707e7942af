//! Unison, as a client syncing folder 0 with folder 1 through a `unison -socket PORT` server
//! on loopback; `-batch -auto -times`, each side with its own HOME for its archives.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

use super::{Session, Tool};
use crate::bench::procs::{RssWatch, free_port, run_watched, spawn_logged, stop, wait_until};

pub struct Unison;

struct UnisonSession {
    dir: PathBuf,
    from: PathBuf,
    to: PathBuf,
    port: u16,
    server: Option<Child>,
    watch: RssWatch,
}

impl Tool for Unison {
    fn name(&self) -> String {
        "Unison".into()
    }
    fn is_daemon(&self) -> bool {
        false
    }
    fn open(&self, dir: &Path, folders: &[PathBuf]) -> Result<Box<dyn Session>, String> {
        let [from, to] = folders else {
            return Err("Unison syncs two folders".into());
        };
        let port = free_port();
        let home = dir.join("server-home");
        std::fs::create_dir_all(&home).map_err(|e| e.to_string())?;
        std::fs::create_dir_all(dir.join("client-home")).map_err(|e| e.to_string())?;
        let server = spawn_logged(
            Command::new("unison")
                .args(["-socket", &port.to_string()])
                .env("HOME", &home)
                .current_dir(&home),
            &dir.join("server.log"),
        )?;
        wait_until(
            "unison -socket listens",
            Duration::from_secs(10),
            Duration::from_millis(10),
            || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok(),
        )?;
        let watch = RssWatch::start();
        watch.add(server.id());
        Ok(Box::new(UnisonSession {
            dir: dir.to_path_buf(),
            from: from.clone(),
            to: to.clone(),
            port,
            server: Some(server),
            watch,
        }))
    }
}

impl Session for UnisonSession {
    fn ports(&self) -> Vec<Option<u16>> {
        vec![None, Some(self.port)]
    }
    fn sync(&mut self) -> Result<(), String> {
        let log = self.dir.join("client.log");
        let code = run_watched(
            Command::new("unison")
                .arg(&self.from)
                .arg(format!(
                    "socket://127.0.0.1:{}/{}",
                    self.port,
                    self.to.display()
                ))
                .args([
                    "-batch",
                    "-auto",
                    "-times",
                    "-ui",
                    "text",
                    "-confirmbigdel=false",
                ])
                .env("HOME", self.dir.join("client-home")),
            &log,
            &self.watch,
        )?;
        // 0: everything synced; 1: some files skipped (the comparison of trees tells).
        if (0..=1).contains(&code) {
            Ok(())
        } else {
            Err(format!("unison exited with {code}; see {}", log.display()))
        }
    }
    fn close(mut self: Box<Self>) -> u64 {
        let peak = self.watch.peak();
        if let Some(d) = self.server.take() {
            stop(d, Duration::from_secs(5));
        }
        peak
    }
}
