//! Syncthing (the Debian package), one `syncthing serve` per folder on loopback, configured for
//! its fastest fair settings: file watcher on with its 1 s minimum delay, global and local
//! discovery, relays, NAT traversal, usage reports and low priority off, every device given the
//! others' explicit `tcp://127.0.0.1:PORT` addresses and the folder shared by all from the start.
//! Ready when every device is connected to all others and every folder is idle.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

use super::{Session, Tool};
use crate::bench::procs::{RssWatch, free_port, http, proc_kib, spawn_logged, stop, wait_until};

const API_KEY: &str = "chorus-bench-api-key";
const FOLDER_ID: &str = "bench";

pub struct Syncthing;

struct Device {
    id: String,
    port: u16,
    gui: u16,
    child: Option<Child>,
}

struct SyncthingSession {
    devices: Vec<Device>,
    watch: RssWatch,
}

impl Drop for Device {
    fn drop(&mut self) {
        if let Some(c) = self.child.take() {
            stop(c, Duration::from_secs(5));
        }
    }
}

fn device_id(home: &Path) -> Result<String, String> {
    let out = Command::new("syncthing")
        .args(["generate", &format!("--home={}", home.display())])
        .output()
        .map_err(|e| format!("cannot run syncthing: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "syncthing generate failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let out = Command::new("syncthing")
        .args([
            "serve",
            &format!("--home={}", home.display()),
            "--device-id",
        ])
        .output()
        .map_err(|e| format!("cannot run syncthing: {e}"))?;
    let id = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    if id.len() < 50 {
        return Err(format!("syncthing --device-id printed {id:?}"));
    }
    Ok(id)
}

/// The config.xml of device `me` among `devices`, sharing `folder`.
fn config(me: usize, devices: &[Device], folder: &Path) -> String {
    let folder_devices: String = devices
        .iter()
        .map(|d| {
            format!(
                "        <device id=\"{}\" introducedBy=\"\"></device>\n",
                d.id
            )
        })
        .collect();
    let device_entries: String = devices
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let addr = if i == me {
                "dynamic".to_owned()
            } else {
                format!("tcp://127.0.0.1:{}", d.port)
            };
            format!(
                "    <device id=\"{}\" name=\"n{i}\" compression=\"metadata\" introducer=\"false\">\n        <address>{addr}</address>\n        <autoAcceptFolders>false</autoAcceptFolders>\n    </device>\n",
                d.id
            )
        })
        .collect();
    format!(
        r#"<configuration version="36">
    <folder id="{FOLDER_ID}" label="bench" path="{path}" type="sendreceive" rescanIntervalS="3600" fsWatcherEnabled="true" fsWatcherDelayS="1" ignorePerms="false" autoNormalize="true">
        <filesystemType>basic</filesystemType>
{folder_devices}        <minDiskFree unit="%">0</minDiskFree>
    </folder>
{device_entries}    <gui enabled="true" tls="false">
        <address>127.0.0.1:{gui}</address>
        <apikey>{API_KEY}</apikey>
    </gui>
    <options>
        <listenAddress>tcp://127.0.0.1:{port}</listenAddress>
        <globalAnnounceEnabled>false</globalAnnounceEnabled>
        <localAnnounceEnabled>false</localAnnounceEnabled>
        <relaysEnabled>false</relaysEnabled>
        <natEnabled>false</natEnabled>
        <urAccepted>-1</urAccepted>
        <autoUpgradeIntervalH>0</autoUpgradeIntervalH>
        <startBrowser>false</startBrowser>
        <crashReportingEnabled>false</crashReportingEnabled>
        <reconnectionIntervalS>1</reconnectionIntervalS>
        <setLowPriority>false</setLowPriority>
        <minHomeDiskFree unit="%">0</minHomeDiskFree>
    </options>
</configuration>
"#,
        path = folder.display(),
        gui = devices[me].gui,
        port = devices[me].port,
    )
}

impl SyncthingSession {
    fn get(&self, d: &Device, path: &str) -> Option<serde_json::Value> {
        serde_json::from_str(&http(d.gui, "GET", path, API_KEY).ok()?).ok()
    }

    fn all_connected(&self) -> bool {
        self.devices.iter().all(|d| {
            let Some(c) = self.get(d, "/rest/system/connections") else {
                return false;
            };
            self.devices
                .iter()
                .filter(|o| o.id != d.id)
                .all(|o| c["connections"][&o.id]["connected"] == true)
        })
    }

    /// Every folder idle with nothing left to pull.
    fn all_idle(&self) -> bool {
        self.devices.iter().all(|d| {
            self.get(d, &format!("/rest/db/status?folder={FOLDER_ID}"))
                .is_some_and(|s| s["state"] == "idle" && s["needTotalItems"] == 0)
        })
    }
}

impl Tool for Syncthing {
    fn name(&self) -> String {
        "Syncthing".into()
    }
    fn is_daemon(&self) -> bool {
        true
    }
    fn open(&self, dir: &Path, folders: &[PathBuf]) -> Result<Box<dyn Session>, String> {
        let mut devices = Vec::new();
        for i in 0..folders.len() {
            let home = dir.join(format!("home{i}"));
            devices.push(Device {
                id: device_id(&home)?,
                port: free_port(),
                gui: free_port(),
                child: None,
            });
        }
        for (i, folder) in folders.iter().enumerate() {
            let home = dir.join(format!("home{i}"));
            std::fs::write(home.join("config.xml"), config(i, &devices, folder))
                .map_err(|e| e.to_string())?;
            std::fs::create_dir_all(folder.join(".stfolder")).map_err(|e| e.to_string())?;
            let child = spawn_logged(
                Command::new("syncthing")
                    .arg("serve")
                    .arg(format!("--home={}", home.display()))
                    .args(["--no-browser", "--no-restart", "--no-upgrade"])
                    .arg(format!("--gui-address=http://127.0.0.1:{}", devices[i].gui))
                    .env("STNODEFAULTFOLDER", "1")
                    .env("STNOUPGRADE", "1"),
                &dir.join(format!("node{i}.log")),
            )?;
            devices[i].child = Some(child);
        }
        let watch = RssWatch::start();
        for d in &devices {
            if let Some(c) = &d.child {
                watch.add(c.id());
            }
        }
        let s = SyncthingSession { devices, watch };
        wait_until(
            "Syncthing devices connect",
            Duration::from_secs(60),
            Duration::from_millis(100),
            || s.all_connected(),
        )
        .and_then(|()| {
            wait_until(
                "Syncthing folders become idle",
                Duration::from_secs(60),
                Duration::from_millis(100),
                || s.all_idle(),
            )
        })
        .map_err(|e| format!("{e}; see the logs in {}", dir.display()))?;
        Ok(Box::new(s))
    }
}

impl Session for SyncthingSession {
    fn ports(&self) -> Vec<Option<u16>> {
        self.devices.iter().map(|d| Some(d.port)).collect()
    }
    fn sync(&mut self) -> Result<(), String> {
        Ok(())
    }
    fn settle(&mut self) {
        let _ = wait_until(
            "Syncthing settles",
            Duration::from_secs(30),
            Duration::from_millis(50),
            || self.all_idle(),
        );
    }
    fn rss_now(&self) -> Vec<u64> {
        self.devices
            .iter()
            .filter_map(|d| proc_kib(d.child.as_ref()?.id(), "VmRSS"))
            .collect()
    }
    fn close(mut self: Box<Self>) -> u64 {
        let peak = self.watch.peak();
        for c in self.devices.iter_mut().filter_map(|d| d.child.take()) {
            stop(c, Duration::from_secs(10));
        }
        peak
    }
}
