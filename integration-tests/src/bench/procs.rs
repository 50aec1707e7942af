//! Processes of the tools under test: spawning them with their output in a log file, their
//! peak memory (`VmHWM` of each process and its descendants, sampled from `/proc`), stopping
//! them, and a minimal HTTP/1.1 client for Syncthing's REST API.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A TCP port free on loopback right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("binding 127.0.0.1:0 works on any machine with loopback")
}

/// Spawns `cmd` with stdout and stderr appended to `log`.
pub fn spawn_logged(cmd: &mut Command, log: &Path) -> Result<Child, String> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(|e| format!("cannot open {}: {e}", log.display()))?;
    let err = file
        .try_clone()
        .map_err(|e| format!("cannot open {}: {e}", log.display()))?;
    cmd.stdin(Stdio::null())
        .stdout(Stdio::from(file))
        .stderr(Stdio::from(err))
        .spawn()
        .map_err(|e| format!("cannot start {:?}: {e}", cmd.get_program()))
}

/// A `/proc/PID/status` field in bytes (`VmHWM`, `VmRSS`), None once the process is gone.
pub fn proc_kib(pid: u32, field: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .map(|kib| kib * 1024)
}

/// The peak RSS of a set of processes and all their descendants, sampled from `VmHWM` every
/// 20 ms by a background thread (`ru_maxrss` is no use here: it keeps the RSS of the forking
/// parent across exec). HWM never decreases, so a sample shortly before a process exits holds
/// its peak up to then.
pub struct RssWatch {
    roots: Arc<Mutex<Vec<u32>>>,
    peak: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// Parent of every process now: pid -> ppid.
fn parents() -> Vec<(u32, u32)> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            // pid (comm) state ppid ...: comm may hold spaces and parentheses.
            let after = &stat[stat.rfind(')')? + 1..];
            let ppid = after.split_whitespace().nth(1)?.parse().ok()?;
            Some((pid, ppid))
        })
        .collect()
}

/// The largest `VmHWM` among `roots` and their descendants now.
fn sample(roots: &[u32]) -> u64 {
    let mut all: Vec<u32> = roots.to_vec();
    let tree = parents();
    let mut i = 0;
    while i < all.len() {
        let p = all[i];
        all.extend(tree.iter().filter(|(_, pp)| *pp == p).map(|(c, _)| *c));
        i += 1;
    }
    all.iter()
        .filter_map(|p| proc_kib(*p, "VmHWM"))
        .max()
        .unwrap_or(0)
}

impl RssWatch {
    pub fn start() -> RssWatch {
        let roots = Arc::new(Mutex::new(Vec::new()));
        let peak = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (r, p, s) = (roots.clone(), peak.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                let now = r.lock().map(|v| v.clone()).unwrap_or_default();
                if !now.is_empty() {
                    p.fetch_max(sample(&now), Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        RssWatch {
            roots,
            peak,
            stop,
            thread: Some(thread),
        }
    }

    /// Watches `pid` and its descendants too.
    pub fn add(&self, pid: u32) {
        if let Ok(mut v) = self.roots.lock() {
            v.push(pid);
        }
    }

    /// Samples now (call before stopping processes) and returns the peak so far, in bytes.
    pub fn peak(&self) -> u64 {
        let now = self.roots.lock().map(|v| v.clone()).unwrap_or_default();
        self.peak.fetch_max(sample(&now), Ordering::Relaxed);
        self.peak.load(Ordering::Relaxed)
    }
}

impl Drop for RssWatch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Asks `child` to stop (SIGTERM, then SIGKILL after `grace`) and reaps it.
pub fn stop(mut child: Child, grace: Duration) {
    // SAFETY: signalling a child we own and have not reaped.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    let deadline = Instant::now() + grace;
    loop {
        match child.try_wait() {
            Ok(Some(_)) | Err(_) => return,
            Ok(None) => {}
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs `cmd` to completion, output to `log`, its memory watched by `watch`; its exit code.
pub fn run_watched(cmd: &mut Command, log: &Path, watch: &RssWatch) -> Result<i32, String> {
    let mut child = spawn_logged(cmd, log)?;
    watch.add(child.id());
    let status = child
        .wait()
        .map_err(|e| format!("waiting for {:?}: {e}", cmd.get_program()))?;
    Ok(status.code().unwrap_or(-1))
}

/// Polls `ok` every `every` until it is true (Ok) or `limit` passes (Err naming `what`).
pub fn wait_until(
    what: &str,
    limit: Duration,
    every: Duration,
    mut ok: impl FnMut() -> bool,
) -> Result<(), String> {
    let deadline = Instant::now() + limit;
    while !ok() {
        if Instant::now() > deadline {
            return Err(format!("{what}: not done after {} s", limit.as_secs()));
        }
        std::thread::sleep(every);
    }
    Ok(())
}

/// One HTTP/1.1 request to 127.0.0.1:`port` with an `X-API-Key` header; the response body when
/// the status is 2xx.
pub fn http(port: u16, method: &str, path: &str, api_key: &str) -> Result<String, String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(600)))
        .map_err(|e| e.to_string())?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nX-API-Key: {api_key}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&buf);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let code = head.split_whitespace().nth(1).unwrap_or("");
    if !code.starts_with('2') {
        return Err(format!("{method} {path}: HTTP {code}"));
    }
    // Chunked bodies are short JSON here; strip the chunk sizes if present.
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        let mut out = String::new();
        let mut rest = body;
        while let Some((size, tail)) = rest.split_once("\r\n") {
            let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
            if n == 0 || tail.len() < n {
                break;
            }
            out.push_str(&tail[..n]);
            rest = tail[n..].trim_start_matches("\r\n");
        }
        return Ok(out);
    }
    Ok(body.to_owned())
}
