//! A lab of hosts in network namespaces (`ip netns`), joined by veth pairs to one bridge in the
//! root namespace, with addresses 10.231.N.1, .2, ... (N differs per lab). Each lab has its own
//! bridge and subnet, so labs run side by side without seeing each other. With
//! [`Lab::enable_gateway`] the bridge gets 10.231.N.254, so processes of the root namespace (a
//! relay) reach the hosts and the hosts reach them.
//!
//! NAT: [`Lab::add_nat_site`] puts a host behind another one acting as its NAT router (cone or
//! symmetric).
//!
//! Faults: [`Lab::cut`] takes a host's link down (and [`Lab::heal`] brings it back);
//! [`Lab::set_loss`] drops a share of the packets a host receives (nftables `numgen random`);
//! [`Lab::set_blocked`] drops what a host receives from given addresses (partitions).
//! Delay is not available here: the kernel of this machine kind is built without `sch_netem`,
//! so delayed links need a userspace relay.
//!
//! Names carry the pid of the process that made them; a lab removes leftovers of processes that
//! no longer exist before it starts, and removes its own namespaces, links and processes when
//! dropped, whether the test passed or panicked.

use std::net::Ipv4Addr;
use std::process::{Child, Command, Output, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

/// Prefix of every namespace a lab creates.
const NS_PREFIX: &str = "chorus-lab-";

/// Why a lab could not be set up or changed.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    #[error("network namespaces need root; run as root (CI does)")]
    NotRoot,
    #[error("`{command}` failed: {stderr}")]
    Command { command: String, stderr: String },
    #[error("cannot run `{command}`: {source}; is iproute2 (and nftables) installed?")]
    Spawn {
        command: String,
        #[source]
        source: std::io::Error,
    },
}

/// One host of a lab.
#[derive(Debug, Clone)]
pub struct Host {
    pub index: usize,
    /// Its network namespace.
    pub netns: String,
    /// Its address on the lab's bridge.
    pub addr: Ipv4Addr,
    /// The root-namespace end of its veth pair (cut and heal act on it).
    veth: String,
}

/// How a NAT router ([`Lab::add_nat_site`]) maps a private host's connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nat {
    /// Linux's plain masquerade: the source port is kept where it is free, so the same local
    /// port appears at the same public port to every peer (hole punching can work).
    Cone,
    /// A random public port per connection: a peer cannot predict it, so no hole punch.
    Symmetric,
}

/// A set of hosts on one bridge. Dropping it removes everything it made.
pub struct Lab {
    /// The third octet of this lab's addresses.
    subnet: u8,
    /// `<pid>-<lab number>`, in every namespace name, and its hex form in link names.
    base: String,
    tag: String,
    bridge: String,
    hosts: Vec<Host>,
    children: Mutex<Vec<Child>>,
}

static LABS: AtomicU32 = AtomicU32::new(0);

impl Lab {
    /// Creates `n` hosts (at most 250).
    pub fn new(n: usize) -> Result<Lab, LabError> {
        if !crate::is_root() {
            return Err(LabError::NotRoot);
        }
        assert!(n <= 250, "a lab has at most 250 hosts");
        remove_stale()?;
        let pid = std::process::id();
        let seq = LABS.fetch_add(1, Ordering::Relaxed);
        // Interface names are limited to 15 bytes: pid and lab number in hex.
        let tag = format!("{pid:x}{seq:x}");
        let subnet = ((pid as usize).wrapping_mul(7).wrapping_add(seq as usize) % 250) as u8;
        let mut lab = Lab {
            subnet,
            base: format!("{pid}-{seq}"),
            tag: tag.clone(),
            bridge: format!("chb{tag}"),
            hosts: Vec::new(),
            children: Mutex::new(Vec::new()),
        };
        ip(&["link", "add", &lab.bridge, "type", "bridge"])?;
        ip(&["link", "set", &lab.bridge, "up"])?;
        for index in 0..n {
            let host = Host {
                index,
                netns: format!("{NS_PREFIX}{pid}-{seq}-{index}"),
                addr: Ipv4Addr::new(10, 231, subnet, index as u8 + 1),
                veth: format!("chv{tag}-{index}"),
            };
            let peer = format!("chp{tag}-{index}");
            ip(&["netns", "add", &host.netns])?;
            lab.hosts.push(host.clone());
            ip(&[
                "link", "add", &host.veth, "type", "veth", "peer", "name", &peer,
            ])?;
            ip(&["link", "set", &host.veth, "master", &lab.bridge])?;
            ip(&["link", "set", &host.veth, "up"])?;
            host_side(&host, &peer)?;
        }
        Ok(lab)
    }

    pub fn hosts(&self) -> &[Host] {
        &self.hosts
    }

    pub fn host(&self, i: usize) -> &Host {
        &self.hosts[i]
    }

    /// A command that runs `program` inside host `i`'s namespace.
    pub fn command(&self, i: usize, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.hosts[i].netns]).arg(program);
        c
    }

    /// Starts a process; the lab kills it (SIGKILL) when dropped, if it still runs.
    pub fn spawn(&self, mut command: Command) -> std::io::Result<u32> {
        let child = command.stdin(Stdio::null()).spawn()?;
        let pid = child.id();
        self.children().push(child);
        Ok(pid)
    }

    /// Waits up to `within` for the process `pid` (started with [`Lab::spawn`]) to exit, and
    /// reaps it; false if it still runs.
    pub fn wait_exit(&self, pid: u32, within: Duration) -> bool {
        let until = std::time::Instant::now() + within;
        loop {
            let mut children = self.children();
            let Some(i) = children.iter().position(|c| c.id() == pid) else {
                return true;
            };
            if let Ok(Some(_)) = children[i].try_wait() {
                // Exited: `wait` returns at once with the status `try_wait` saw.
                let _ = children.remove(i).wait();
                return true;
            }
            drop(children);
            if std::time::Instant::now() >= until {
                return false;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Starts a process with its stdout piped and returns it; the lab still kills it on drop
    /// if the caller has not (the caller owns the `Child`).
    pub fn spawn_piped(&self, mut command: Command) -> std::io::Result<Child> {
        command.stdin(Stdio::null()).stdout(Stdio::piped()).spawn()
    }

    /// Puts a new host behind host `router`, which becomes its NAT router: a private link
    /// (192.168.K.0/24, the host at .2, the router at .1), the router forwarding and
    /// masquerading what the host sends to the bridge, and dropping what comes from the bridge
    /// for the private side unless it answers a connection from inside, and any new connection
    /// to the router itself, silently as home routers do (nftables). The hosts
    /// on the bridge have no route to the private side: they cannot dial the new host. Returns
    /// the new host's index.
    pub fn add_nat_site(&mut self, router: usize, nat: Nat) -> Result<usize, LabError> {
        let index = self.hosts.len();
        let k = index as u8;
        let host = Host {
            index,
            netns: format!("{NS_PREFIX}{}-{index}", self.base),
            addr: Ipv4Addr::new(192, 168, k, 2),
            veth: format!("chn{}-{index}", self.tag),
        };
        let peer = format!("chs{}-{index}", self.tag);
        let r = self.hosts[router].netns.clone();
        ip(&["netns", "add", &host.netns])?;
        self.hosts.push(host.clone());
        ip(&[
            "link", "add", &host.veth, "type", "veth", "peer", "name", &peer,
        ])?;
        let lan = format!("lan{index}");
        ip(&["link", "set", &host.veth, "netns", &r])?;
        ip(&["-n", &r, "link", "set", &host.veth, "name", &lan])?;
        ip(&[
            "-n",
            &r,
            "addr",
            "add",
            &format!("192.168.{k}.1/24"),
            "dev",
            &lan,
        ])?;
        ip(&["-n", &r, "link", "set", &lan, "up"])?;
        host_side(&host, &peer)?;
        ip(&[
            "-n",
            &host.netns,
            "route",
            "add",
            "default",
            "via",
            &format!("192.168.{k}.1"),
        ])?;
        run(Command::new("ip").args([
            "netns",
            "exec",
            &r,
            "sysctl",
            "-qw",
            "net.ipv4.ip_forward=1",
        ]))?;
        let masquerade = match nat {
            Nat::Cone => "masquerade",
            // A new public port for every connection: what a symmetric NAT does.
            Nat::Symmetric => "masquerade fully-random",
        };
        let rules = format!(
            "table ip chorus_nat_{k} {{\n\
               chain masq {{ type nat hook postrouting priority srcnat; \
                 oifname \"eth0\" ip saddr 192.168.{k}.0/24 {masquerade}; }}\n\
               chain inward {{ type filter hook forward priority 0; \
                 iifname \"eth0\" oifname \"{lan}\" ct state established,related accept; \
                 iifname \"eth0\" oifname \"{lan}\" drop; }}\n\
               chain stealth {{ type filter hook input priority 0; \
                 iifname \"eth0\" ct state new drop; }}\n\
             }}\n"
        );
        let mut nft = Command::new("ip");
        nft.args(["netns", "exec", &r, "nft", "-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let command = format!("{nft:?}");
        let mut child = nft.spawn().map_err(|source| LabError::Spawn {
            command: command.clone(),
            source,
        })?;
        use std::io::Write;
        child
            .stdin
            .take()
            .expect("piped")
            .write_all(rules.as_bytes())
            .map_err(|source| LabError::Spawn {
                command: command.clone(),
                source,
            })?;
        let out = child.wait_with_output().map_err(|source| LabError::Spawn {
            command: command.clone(),
            source,
        })?;
        if !out.status.success() {
            return Err(LabError::Command {
                command: format!("{command} <<< {rules}"),
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
        Ok(index)
    }

    /// The bridge's address (10.231.N.254), assigned by [`Lab::enable_gateway`].
    pub fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, 231, self.subnet, 254)
    }

    /// Gives the bridge [`Lab::gateway`], so the root namespace and the hosts reach each other.
    pub fn enable_gateway(&self) -> Result<(), LabError> {
        ip(&[
            "addr",
            "add",
            &format!("{}/24", self.gateway()),
            "dev",
            &self.bridge,
        ])
    }

    /// Drops every packet host `i` receives from these addresses (an empty list lifts it).
    pub fn set_blocked(&self, i: usize, from: &[Ipv4Addr]) -> Result<(), LabError> {
        self.block(i, from, &[])
    }

    /// Drops what host `i` receives from these addresses except multicast DNS (UDP port 5353):
    /// the hosts hear each other's mDNS answers but cannot connect, as behind a host firewall
    /// that passes mDNS (an empty list lifts it).
    pub fn set_blocked_but_mdns(&self, i: usize, from: &[Ipv4Addr]) -> Result<(), LabError> {
        self.block(i, from, &["th", "dport", "!=", "5353"])
    }

    /// Drops the TCP packets host `i` receives from these addresses (UDP, QUIC among it,
    /// passes), as a firewall that lets only some protocols through (an empty list lifts it).
    pub fn set_blocked_tcp(&self, i: usize, from: &[Ipv4Addr]) -> Result<(), LabError> {
        self.block(i, from, &["meta", "l4proto", "tcp"])
    }

    /// One rule: drop what comes from `from` and matches `matching`.
    fn block(&self, i: usize, from: &[Ipv4Addr], matching: &[&str]) -> Result<(), LabError> {
        let ns = &self.hosts[i].netns;
        let nft = |args: &[&str]| {
            run(Command::new("ip")
                .args(["netns", "exec", ns, "nft"])
                .args(args))
            .map(drop)
        };
        let _ = nft(&["delete", "table", "inet", "chorus_block"]);
        if from.is_empty() {
            return Ok(());
        }
        nft(&["add", "table", "inet", "chorus_block"])?;
        nft(&[
            "add",
            "chain",
            "inet",
            "chorus_block",
            "in",
            "{ type filter hook input priority -10; }",
        ])?;
        let set: Vec<String> = from.iter().map(|a| a.to_string()).collect();
        let set = format!("{{ {} }}", set.join(", "));
        let mut rule = vec![
            "add",
            "rule",
            "inet",
            "chorus_block",
            "in",
            "ip",
            "saddr",
            set.as_str(),
        ];
        rule.extend_from_slice(matching);
        rule.push("drop");
        nft(&rule)
    }

    /// Takes host `i`'s link down: nothing reaches it or leaves it.
    pub fn cut(&self, i: usize) -> Result<(), LabError> {
        ip(&["link", "set", &self.hosts[i].veth, "down"])
    }

    /// Brings host `i`'s link back.
    pub fn heal(&self, i: usize) -> Result<(), LabError> {
        ip(&["link", "set", &self.hosts[i].veth, "up"])
    }

    /// Gives host `i` another address on the bridge (the last octet `last`), as when a
    /// router gets a new public address: the old one is removed, so connections through it
    /// die (a NAT forgets what it mapped to it). Returns the new address.
    pub fn readdress(&mut self, i: usize, last: u8) -> Result<Ipv4Addr, LabError> {
        let new = Ipv4Addr::new(10, 231, self.subnet, last);
        let ns = self.hosts[i].netns.clone();
        let (old, new_cidr) = (format!("{}/24", self.hosts[i].addr), format!("{new}/24"));
        // In this order: deleting a primary address deletes its secondaries with it.
        ip(&["-n", &ns, "addr", "del", &old, "dev", "eth0"])?;
        ip(&["-n", &ns, "addr", "add", &new_cidr, "dev", "eth0"])?;
        self.hosts[i].addr = new;
        Ok(new)
    }

    /// Drops `percent` of the packets host `i` receives (0 removes the rule).
    pub fn set_loss(&self, i: usize, percent: u8) -> Result<(), LabError> {
        let ns = &self.hosts[i].netns;
        // Start from no rules, so calls do not stack.
        let _ = run(Command::new("ip").args([
            "netns",
            "exec",
            ns,
            "nft",
            "delete",
            "table",
            "inet",
            "chorus_lab",
        ]));
        if percent == 0 {
            return Ok(());
        }
        let nft = |args: &[&str]| {
            run(Command::new("ip")
                .args(["netns", "exec", ns, "nft"])
                .args(args))
            .map(drop)
        };
        nft(&["add", "table", "inet", "chorus_lab"])?;
        nft(&[
            "add",
            "chain",
            "inet",
            "chorus_lab",
            "in",
            "{ type filter hook input priority 0; }",
        ])?;
        if percent >= 100 {
            return nft(&["add", "rule", "inet", "chorus_lab", "in", "drop"]);
        }
        nft(&[
            "add",
            "rule",
            "inet",
            "chorus_lab",
            "in",
            "numgen",
            "random",
            "mod",
            "100",
            "<",
            &percent.to_string(),
            "drop",
        ])
    }

    fn children(&self) -> std::sync::MutexGuard<'_, Vec<Child>> {
        self.children.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for mut c in self.children().drain(..) {
            let _ = c.kill();
            let _ = c.wait();
        }
        // Processes started inside a namespace by other means die with it only if killed:
        // kill whatever still runs there, then remove the namespace (which removes the veth
        // pair), then the bridge.
        for h in &self.hosts {
            let _ = run(Command::new("ip").args(["netns", "pids", &h.netns])).map(|pids| {
                for pid in pids.split_whitespace() {
                    let _ = Command::new("kill").args(["-9", pid]).output();
                }
            });
            if let Err(e) = ip(&["netns", "del", &h.netns]) {
                eprintln!("lab cleanup: {e}");
            }
            let _ = ip(&["link", "del", &h.veth]);
        }
        if let Err(e) = ip(&["link", "del", &self.bridge]) {
            eprintln!("lab cleanup: {e}");
        }
    }
}

/// Removes namespaces, links and bridges left by lab processes that no longer exist.
fn remove_stale() -> Result<(), LabError> {
    let list = run(Command::new("ip").args(["netns", "list"]))?;
    for name in list.lines().filter_map(|l| l.split_whitespace().next()) {
        let Some(rest) = name.strip_prefix(NS_PREFIX) else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if std::path::Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        let _ = ip(&["netns", "del", name]);
        let tag = format!("{pid:x}");
        let links = run(Command::new("ip").args(["-o", "link", "show"]))?;
        for link in links.lines().filter_map(|l| l.split(':').nth(1)) {
            let link = link.trim().split('@').next().unwrap_or_default();
            if ["chb", "chv", "chp", "chn", "chs"]
                .iter()
                .any(|p| link.starts_with(&format!("{p}{tag}")))
            {
                let _ = ip(&["link", "del", link]);
            }
        }
    }
    Ok(())
}

/// Moves the veth end `peer` into `host`'s namespace as `eth0` with the host's address, and
/// brings it and loopback up.
fn host_side(host: &Host, peer: &str) -> Result<(), LabError> {
    let ns = &host.netns;
    ip(&["link", "set", peer, "netns", ns])?;
    ip(&["-n", ns, "link", "set", "lo", "up"])?;
    ip(&["-n", ns, "link", "set", peer, "name", "eth0"])?;
    let addr = format!("{}/24", host.addr);
    ip(&["-n", ns, "addr", "add", &addr, "dev", "eth0"])?;
    ip(&["-n", ns, "link", "set", "eth0", "up"])
}

fn ip(args: &[&str]) -> Result<(), LabError> {
    run(Command::new("ip").args(args)).map(drop)
}

/// Runs a command to completion; its stdout, or an error with its stderr.
fn run(c: &mut Command) -> Result<String, LabError> {
    let command = format!("{c:?}").replace('"', "");
    let out: Output = c
        .stdin(Stdio::null())
        .output()
        .map_err(|source| LabError::Spawn {
            command: command.clone(),
            source,
        })?;
    if !out.status.success() {
        return Err(LabError::Command {
            command,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
