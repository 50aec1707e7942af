//! rsync, as a client pushing folder 0 to an `rsync --daemon` module holding folder 1, over TCP
//! on loopback (so its bytes cross a counted port, as every other tool's do).

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

use super::{Session, Tool};
use crate::bench::procs::{RssWatch, free_port, run_watched, spawn_logged, stop, wait_until};

/// rsync with the given options (always `-a --delete`).
pub struct Rsync {
    pub label: &'static str,
    pub options: &'static [&'static str],
    /// The scenarios it runs in (None: all).
    pub only: Option<&'static [&'static str]>,
}

struct RsyncSession {
    dir: PathBuf,
    from: PathBuf,
    port: u16,
    options: &'static [&'static str],
    daemon: Option<Child>,
    watch: RssWatch,
}

impl Tool for Rsync {
    fn name(&self) -> String {
        self.label.to_owned()
    }
    fn is_daemon(&self) -> bool {
        false
    }
    fn runs_in(&self, scenario: &str) -> bool {
        self.only.is_none_or(|o| o.contains(&scenario))
    }
    fn open(&self, dir: &Path, folders: &[PathBuf]) -> Result<Box<dyn Session>, String> {
        let [from, to] = folders else {
            return Err("rsync syncs two folders".into());
        };
        let port = free_port();
        let conf = dir.join("rsyncd.conf");
        std::fs::write(
            &conf,
            format!(
                "use chroot = false\nuid = 0\ngid = 0\npid file = {}\n[dst]\npath = {}\nread only = false\n",
                dir.join("rsyncd.pid").display(),
                to.display()
            ),
        )
        .map_err(|e| e.to_string())?;
        let daemon = spawn_logged(
            Command::new("rsync")
                .args(["--daemon", "--no-detach", "--address", "127.0.0.1"])
                .arg(format!("--port={port}"))
                .arg(format!("--config={}", conf.display())),
            &dir.join("rsyncd.log"),
        )?;
        wait_until(
            "rsync --daemon listens",
            Duration::from_secs(10),
            Duration::from_millis(10),
            || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok(),
        )?;
        let watch = RssWatch::start();
        watch.add(daemon.id());
        Ok(Box::new(RsyncSession {
            dir: dir.to_path_buf(),
            from: from.clone(),
            port,
            options: self.options,
            daemon: Some(daemon),
            watch,
        }))
    }
}

impl Session for RsyncSession {
    fn ports(&self) -> Vec<Option<u16>> {
        vec![None, Some(self.port)]
    }
    fn sync(&mut self) -> Result<(), String> {
        let log = self.dir.join("rsync.log");
        let code = run_watched(
            Command::new("rsync")
                .args(["-a", "--delete"])
                .args(self.options)
                .arg(format!("{}/", self.from.display()))
                .arg(format!("rsync://127.0.0.1:{}/dst/", self.port)),
            &log,
            &self.watch,
        )?;
        if code == 0 {
            Ok(())
        } else {
            Err(format!("rsync exited with {code}; see {}", log.display()))
        }
    }
    fn close(mut self: Box<Self>) -> u64 {
        let peak = self.watch.peak();
        if let Some(d) = self.daemon.take() {
            stop(d, Duration::from_secs(5));
        }
        peak
    }
}
