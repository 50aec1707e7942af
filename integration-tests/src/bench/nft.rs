//! Bytes on the wire, counted the same way for every tool: nftables counters on loopback, by
//! TCP and UDP port (chorus and Syncthing speak QUIC as well as TCP). Each packet leaving
//! through `lo` is counted once, at the output hook, as IP bytes (IP and TCP or UDP headers
//! included; loopback carries TCP segments of up to 64 KiB, so headers are a small share; a
//! QUIC packet is at most about 1.4 KB, so its headers are a few percent).
//!
//! For every listening port P of a session there are two rules, in this order, each ending the
//! chain's evaluation for the packets it counts so none is counted twice: first
//! `th dport P` (a packet addressed to P's listener), then `th sport P` (a packet from P's
//! listener to a dialer's ephemeral port). With two parties A and B, bytes from A to B are
//! `to[B] + from[A]` and bytes from B to A are `to[A] + from[B]`, whoever dialed whom, and
//! also when a dialer binds its own listening port (libp2p's port reuse).

use std::collections::BTreeMap;
use std::process::Command;

const TABLE: &str = "chorus_bench";

/// Bytes counted for one port: addressed to its listener, and sent by it to dialers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PortBytes {
    pub to: u64,
    pub from: u64,
}

/// The nft table of one session; dropping it removes the table.
pub struct Counters {
    ports: Vec<u16>,
}

fn nft(script: &str) -> Result<String, String> {
    let out = Command::new("nft")
        .args(["-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(script.as_bytes())?;
            c.wait_with_output()
        })
        .map_err(|e| format!("cannot run nft ({e}): install nftables (apt-get install -y nftables) and run as root"))?;
    if !out.status.success() {
        return Err(format!(
            "nft failed: {}; the benchmark needs root and nftables",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The nft script that (re)creates the table with counters for `ports`.
pub fn script(ports: &[u16]) -> String {
    let mut s = format!(
        "table inet {TABLE}\ndelete table inet {TABLE}\ntable inet {TABLE} {{\n  chain count {{\n    type filter hook output priority 0; policy accept;\n"
    );
    for p in ports {
        s += &format!(
            "    oifname \"lo\" meta l4proto {{ tcp, udp }} th dport {p} counter accept comment \"to:{p}\"\n"
        );
    }
    for p in ports {
        s += &format!(
            "    oifname \"lo\" meta l4proto {{ tcp, udp }} th sport {p} counter accept comment \"from:{p}\"\n"
        );
    }
    s += "  }\n}\n";
    s
}

/// Parses `nft list table` output: port -> bytes, from the rules' comments and counters.
pub fn parse(listing: &str) -> BTreeMap<u16, PortBytes> {
    let mut out: BTreeMap<u16, PortBytes> = BTreeMap::new();
    for line in listing.lines() {
        let Some(bytes) = line
            .split_once(" bytes ")
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .and_then(|b| b.parse::<u64>().ok())
        else {
            continue;
        };
        let Some(comment) = line
            .split_once("comment \"")
            .and_then(|(_, rest)| rest.split('"').next())
        else {
            continue;
        };
        let Some((kind, port)) = comment.split_once(':') else {
            continue;
        };
        let Ok(port) = port.parse::<u16>() else {
            continue;
        };
        let e = out.entry(port).or_default();
        match kind {
            "to" => e.to += bytes,
            "from" => e.from += bytes,
            _ => {}
        }
    }
    out
}

impl Counters {
    /// Starts counting the traffic of `ports` (replacing any earlier table of the benchmark).
    pub fn start(ports: &[u16]) -> Result<Counters, String> {
        nft(&script(ports))?;
        Ok(Counters {
            ports: ports.to_vec(),
        })
    }

    /// The counts once the ports have been quiet for `quiet` (read every 50 ms; at most
    /// `max` is waited): a tool's trailing packets (acknowledgements, a connection's close,
    /// an index sent after the tool says it is idle) are counted with the phase that caused
    /// them.
    pub fn read_quiet(
        &self,
        quiet: std::time::Duration,
        max: std::time::Duration,
    ) -> Result<BTreeMap<u16, PortBytes>, String> {
        let start = std::time::Instant::now();
        let mut last = self.read()?;
        let mut since = std::time::Instant::now();
        while since.elapsed() < quiet && start.elapsed() < max {
            std::thread::sleep(std::time::Duration::from_millis(50));
            let now = self.read()?;
            if now != last {
                last = now;
                since = std::time::Instant::now();
            }
        }
        Ok(last)
    }

    /// The counts so far.
    pub fn read(&self) -> Result<BTreeMap<u16, PortBytes>, String> {
        let listing = nft_list()?;
        let mut m = parse(&listing);
        for p in &self.ports {
            m.entry(*p).or_default();
        }
        Ok(m)
    }
}

fn nft_list() -> Result<String, String> {
    let out = Command::new("nft")
        .args(["list", "table", "inet", TABLE])
        .output()
        .map_err(|e| format!("cannot run nft: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "nft list failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

impl Drop for Counters {
    fn drop(&mut self) {
        let _ = Command::new("nft")
            .args(["delete", "table", "inet", TABLE])
            .output();
    }
}

/// Bytes between two parties from the counts at two moments: (A to B, B to A). `a` and `b`
/// are their listening ports (None for a party that only dials, like an rsync client).
pub fn directions(
    before: &BTreeMap<u16, PortBytes>,
    after: &BTreeMap<u16, PortBytes>,
    a: Option<u16>,
    b: Option<u16>,
) -> (u64, u64) {
    let delta = |p: Option<u16>| -> PortBytes {
        let Some(p) = p else {
            return PortBytes::default();
        };
        let x = after.get(&p).copied().unwrap_or_default();
        let y = before.get(&p).copied().unwrap_or_default();
        PortBytes {
            to: x.to.saturating_sub(y.to),
            from: x.from.saturating_sub(y.from),
        }
    };
    let (da, db) = (delta(a), delta(b));
    (db.to + da.from, da.to + db.from)
}

/// All bytes counted between two moments, over every port.
pub fn total(before: &BTreeMap<u16, PortBytes>, after: &BTreeMap<u16, PortBytes>) -> u64 {
    after
        .iter()
        .map(|(p, x)| {
            let y = before.get(p).copied().unwrap_or_default();
            x.to.saturating_sub(y.to) + x.from.saturating_sub(y.from)
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    const LISTING: &str = r#"table inet chorus_bench {
	chain count {
		type filter hook output priority filter; policy accept;
		oifname "lo" tcp dport 4001 counter packets 12 bytes 3456 accept comment "to:4001"
		oifname "lo" tcp dport 4002 counter packets 3 bytes 200 accept comment "to:4002"
		oifname "lo" tcp sport 4001 counter packets 0 bytes 0 accept comment "from:4001"
		oifname "lo" tcp sport 4002 counter packets 7 bytes 9000 accept comment "from:4002"
	}
}
"#;

    #[test]
    fn parses_counters_by_port_and_kind() {
        let m = parse(LISTING);
        assert_eq!(m[&4001], PortBytes { to: 3456, from: 0 });
        assert_eq!(
            m[&4002],
            PortBytes {
                to: 200,
                from: 9000
            }
        );
        assert_eq!(m.len(), 2);
    }

    #[test]
    fn directions_and_totals() {
        let before = BTreeMap::new();
        let after = parse(LISTING);
        // A = 4001, B = 4002: A->B = to[B] + from[A]; B->A = to[A] + from[B].
        assert_eq!(
            directions(&before, &after, Some(4001), Some(4002)),
            (200, 3456 + 9000)
        );
        // A dials only (rsync client): A->B = to[B], B->A = from[B].
        assert_eq!(directions(&before, &after, None, Some(4002)), (200, 9000));
        assert_eq!(total(&before, &after), 3456 + 200 + 9000);
        assert_eq!(total(&after, &after), 0);
    }

    #[test]
    fn script_counts_each_port_both_ways() {
        let s = script(&[5, 6]);
        assert!(s.contains("th dport 5 counter accept comment \"to:5\""));
        assert!(s.contains("th sport 6 counter accept comment \"from:6\""));
        // Every "to" rule comes before every "from" rule.
        assert!(s.find("to:6").unwrap() < s.find("from:5").unwrap());
    }
}
