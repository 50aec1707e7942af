//! `chorus status`, `chorus peers` and `chorus log`: clients of the running daemon's local
//! socket. Each prints a readable table, or with `--json` the socket's JSON as it is, on
//! stdout (the share-finding options are `socket`'s, the formatting `format`'s).

use std::io::Write;
use std::process::ExitCode;

use chorus::api::{Peer, Status, Version, client};

pub use super::format::{short, size, table, utc};
pub use super::socket::Args;

/// Fetches `path`; prints it raw with `--json`, else decoded and shown by `table`.
fn query<T: serde::de::DeserializeOwned>(
    args: &Args,
    path: &str,
    table: impl FnOnce(T) -> String,
) -> anyhow::Result<ExitCode> {
    let dir = args.state_dir()?;
    let text = if args.json {
        String::from_utf8_lossy(&client::get(&dir, path)?).into_owned()
    } else {
        table(client::get_json(&dir, path)?)
    };
    // A closed pipe (`chorus log | head`) is not an error worth a message.
    let _ = std::io::stdout().write_all(text.as_bytes());
    Ok(ExitCode::SUCCESS)
}

/// `chorus status`: the socket's view, once or (`--watch`) live.
#[derive(clap::Args)]
pub struct StatusArgs {
    #[command(flatten)]
    at: Args,
    /// Keep showing it until interrupted: on a terminal, one updating line with a progress
    /// bar per version being fetched; otherwise (piped) a plain line per second.
    #[arg(long, conflicts_with = "json")]
    watch: bool,
}

pub fn status(args: StatusArgs) -> anyhow::Result<ExitCode> {
    if args.watch {
        return super::status_watch::run(&args.at);
    }
    let args = args.at;
    query(&args, "/v1/status", |s: Status| {
        let mut out = String::new();
        let mut row = |k: &str, v: String| out.push_str(&format!("{k:<9} {v}\n"));
        row("share", s.share);
        row("peer", s.peer_id);
        row("role", format!("{} (term {})", s.role, s.term));
        row("leader", s.leader.unwrap_or_else(|| "none known".into()));
        row(
            "head",
            format!("{} {}", s.head.number, short(&s.head.version)),
        );
        row(
            "folder",
            format!("{} {}", s.adopted.number, short(&s.adopted.version)),
        );
        row(
            "local",
            match (&s.pending_local, s.settled) {
                (Some(v), _) => format!("changes waiting for the leader ({})", short(v)),
                (None, true) => "in sync".into(),
                (None, false) => "catching up".into(),
            },
        );
        for t in &s.transfers {
            row(
                "fetching",
                format!(
                    "version {} from {}: {} of {} chunks",
                    short(&t.version),
                    t.peer,
                    t.received,
                    t.chunks
                ),
            );
        }
        if s.paused {
            row(
                "paused",
                "yes: nothing is scanned or written; `chorus resume`".into(),
            );
        }
        if let Some(h) = &s.held {
            row(
                "held",
                match (h.deleting, h.files) {
                    (Some(d), Some(f)) => format!(
                        "version {} deletes {d} of {f} files: `chorus resume --confirm` writes it",
                        short(&h.version)
                    ),
                    _ => format!("version {} waits until `chorus resume`", short(&h.version)),
                },
            );
        }
        row(
            "peers",
            format!("{} ({} connected)", s.peers, s.peers_connected),
        );
        row(
            "reachable",
            match s.reachability.as_str() {
                "public" => format!(
                    "yes, at {} (a member dialled it back)",
                    s.public_addrs.join(", ")
                ),
                "reachable" => "yes: members dial it directly".into(),
                "behind-nat" => {
                    "no: behind a NAT or firewall; members reach it through relays and hole punches"
                        .into()
                }
                _ => "not known yet".into(),
            },
        );
        if !s.displaced_here.is_empty() {
            let seqs: Vec<String> = s.displaced_here.iter().map(u64::to_string).collect();
            row(
                "displaced",
                format!(
                    "{} of your changes lost to a merge (redo {}): `chorus conflicts` shows them, `chorus redo SEQ` brings one back",
                    seqs.len(),
                    seqs.join(", ")
                ),
            );
        }
        if !s.unreachable.is_empty() {
            let ids: Vec<&str> = s
                .unreachable
                .iter()
                .map(|p| &p[p.len().saturating_sub(8)..])
                .collect();
            row(
                "unreachable",
                format!(
                    "{}: not connected now; `chorus peers` shows where they were seen",
                    ids.join(", ")
                ),
            );
        }
        let t = s.traffic;
        row(
            "sync",
            format!(
                "{} sent, {} received",
                size(t.sync_sent),
                size(t.sync_received)
            ),
        );
        row(
            "raft",
            format!(
                "{} sent, {} received",
                size(t.raft_sent),
                size(t.raft_received)
            ),
        );
        out
    })
}

pub fn peers(args: Args) -> anyhow::Result<ExitCode> {
    query(&args, "/v1/peers", |peers: Vec<Peer>| {
        if peers.is_empty() {
            return "no other members\n".into();
        }
        let rows = peers
            .into_iter()
            .map(|p| {
                vec![
                    p.peer_id,
                    p.role,
                    match (p.connected, p.connections) {
                        (false, _) => "no".into(),
                        (true, 0 | 1) => "yes".into(),
                        (true, n) => format!("yes ({n})"),
                    },
                    p.path.unwrap_or_else(|| "-".into()),
                    seen(p.connected, p.last_seen_ms),
                    p.rtt_ms
                        .map_or_else(|| "-".into(), |ms| format!("{ms:.1} ms")),
                    p.last_shared_number
                        .or_else(|| p.last_shared.as_deref().map(short))
                        .unwrap_or_else(|| "-".into()),
                    size(p.bytes_sent),
                    size(p.bytes_received),
                    p.addresses.join(" "),
                ]
            })
            .collect();
        table(
            &[
                "PEER",
                "ROLE",
                "CONNECTED",
                "PATH",
                "LAST SEEN",
                "RTT",
                "SHARED",
                "SENT",
                "RECEIVED",
                "ADDRESSES",
            ],
            rows,
        )
    })
}

/// When a member was last seen, as `chorus peers` says it: `now`, `5 min ago`, or `not since
/// start` (this daemon's).
fn seen(connected: bool, last_seen_ms: Option<u64>) -> String {
    if connected {
        return "now".into();
    }
    let Some(at) = last_seen_ms else {
        return "not since start".into();
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    match now.saturating_sub(at) / 1000 {
        s if s < 120 => format!("{s} s ago"),
        s if s < 7200 => format!("{} min ago", s / 60),
        s if s < 2 * 86400 => format!("{} h ago", s / 3600),
        s => format!("{} days ago", s / 86400),
    }
}

pub fn log(args: Args) -> anyhow::Result<ExitCode> {
    // How far back the history reaches, said under the table.
    let retention = args
        .state_dir()
        .ok()
        .and_then(|dir| client::get_json::<Status>(&dir, "/v1/status").ok())
        .and_then(|s| s.retention);
    query(&args, "/v1/versions", |versions: Vec<Version>| {
        if versions.is_empty() {
            return "no accepted version yet\n".into();
        }
        let oldest = versions
            .first()
            .map(|v| format!("{} of {}", v.number, utc(v.created_at_ms)));
        let rows = versions
            .into_iter()
            .rev()
            .map(|v| {
                vec![
                    v.number,
                    short(&v.version),
                    utc(v.created_at_ms),
                    v.kind,
                    v.displaced.to_string(),
                    v.origin
                        .unwrap_or_else(|| format!("node {}", v.origin_node)),
                ]
            })
            .collect();
        let table = table(
            &[
                "NUMBER",
                "VERSION",
                "TIME (UTC)",
                "KIND",
                "DISPLACED",
                "ORIGIN",
            ],
            rows,
        );
        // On stderr, as advice: stdout stays the table alone (`chorus log | wc -l`).
        if let (Some(r), Some(oldest)) = (retention, oldest) {
            eprintln!(
                "chorus: history kept here: the last {} versions and all of the last {} days \
                 (config.toml keep_versions, keep_days); the oldest is {oldest}",
                r.keep_versions, r.keep_days
            );
        }
        table
    })
}
