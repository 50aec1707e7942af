//! A share's settings resolved in one place: the config file's values, each overridden by the
//! command line where one is given, into what the node runs with. `chorus run` reads the file
//! and the options and hands both to [`resolve`]; the precedence is tested here, not in a
//! process.

use std::net::SocketAddr;
use std::time::Duration;

use chorus_chunking::ChunkerParams;
use chorus_election::ElectionConfig;
use chorus_merge::ModeRules;
use chorus_sync::{MassDeleteGuard, Retention};
use libp2p::Multiaddr;

use super::{Config, ShareKind, Timing, address, parse_invite};
use crate::net::Code;

/// What `chorus run`'s options say; `None`, `false` or empty means "as the file says".
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// Replaces the file's `listen` when not empty.
    pub listen: Vec<Multiaddr>,
    /// Added to the file's `peers`.
    pub peers: Vec<Multiaddr>,
    /// Makes a new cluster here, as `bootstrap = true` does.
    pub init: bool,
    /// An invite code to join with (32 hex digits), instead of the file's `invite`.
    pub join: Option<String>,
    /// Full rescan period in milliseconds (at least 50), instead of `rescan_secs`.
    pub scan_ms: Option<u64>,
    pub debounce_ms: Option<u64>,
    /// Text merges by `chars` even in a folder share.
    pub single_document: bool,
    pub bandwidth_limit: Option<u64>,
    pub timing: Option<Timing>,
    pub no_mdns: bool,
    pub no_delete_guard: bool,
}

/// What the node runs with, but for where the share and its state are and the secret.
#[derive(Debug, Clone)]
pub struct Settings {
    pub listen: Vec<Multiaddr>,
    /// Explicit peers, `/ip4/.../tcp/.../p2p/<peer id>`: dialled, allowed to connect, and added
    /// as members by the node that initializes the cluster.
    pub peers: Vec<Multiaddr>,
    /// Start a one-node cluster here (once; a node with Raft state resumes instead).
    pub init: bool,
    /// Join with this invite code (from a join token): presented to the explicit peers (the
    /// inviter first) until the leader adds this node to the membership.
    pub join: Option<Code>,
    pub election: ElectionConfig,
    /// `timing = "auto"`: the node replaces `election` with the timing for the round trip it
    /// measured in earlier runs (see `node::round_trip`).
    pub timing_auto: bool,
    pub chunker: ChunkerParams,
    pub rules: ModeRules,
    /// A full rescan runs this often (the watcher covers changes in between).
    pub rescan_every: Duration,
    /// How long the folder must be quiet after a change before it is scanned.
    pub debounce: Duration,
    pub mdns: bool,
    /// When a version deletes too much to write without asking.
    pub guard: MassDeleteGuard,
    /// Sync bytes sent per second, all peers together; `None`: no limit.
    pub bandwidth_limit: Option<u64>,
    /// Serve as a relay for the members.
    pub relay: bool,
    /// What the relay carries per circuit at most, in bytes.
    pub relay_circuit_bytes: u64,
    /// Listen on QUIC beside TCP.
    pub quic: bool,
    /// The web page's address and token, as configured.
    pub ui: UiSettings,
    /// A voter unseen this long is made a learner by the leader; `None`: never.
    pub demote_after: Option<Duration>,
    /// How much history this node keeps.
    pub retention: Retention,
}

/// Where the web page is served and with what token, as config.toml says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UiSettings {
    /// Serve from the start here; `None`: only when `chorus ui` asks, on 127.0.0.1:0.
    pub listen: Option<SocketAddr>,
    /// A fixed token; `None`: a random one per start.
    pub token: Option<String>,
}

/// The fewest characters a configured `ui_token` has (a random one has 43).
pub const MIN_UI_TOKEN: usize = 32;

/// `ui_listen` and `ui_token` checked: an address off loopback only with a token, a token
/// long enough and made of characters a URL carries as they are.
fn ui_settings(file: &Config) -> Result<UiSettings, String> {
    let listen = match file.ui_listen.trim() {
        "" => None,
        s => Some(match s.parse::<u16>() {
            Ok(port) => SocketAddr::from(([127, 0, 0, 1], port)),
            Err(_) => s.parse::<SocketAddr>().map_err(|e| {
                format!("ui_listen `{s}`: {e}; give IP:PORT (e.g. 127.0.0.1:8384) or a port")
            })?,
        }),
    };
    let token = match file.ui_token.trim() {
        "" => None,
        t if t.len() < MIN_UI_TOKEN
            || !t
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') =>
        {
            return Err(format!(
                "ui_token must be at least {MIN_UI_TOKEN} letters, digits, `-` or `_` (e.g. the output of `openssl rand -hex 24`)"
            ));
        }
        t => Some(t.to_owned()),
    };
    if let Some(addr) = listen
        && !addr.ip().is_loopback()
        && token.is_none()
    {
        return Err(format!(
            "ui_listen {addr} is not a loopback address: anyone who reaches it could try the page, so set ui_token too (at least {MIN_UI_TOKEN} characters), or listen on 127.0.0.1"
        ));
    }
    Ok(UiSettings { listen, token })
}

/// The settings of a share of `kind` from `file` (read from disk when `from_file`, else the
/// defaults of a share described on the command line) and the options `args`. An error says
/// which value is wrong; the caller names the file.
pub fn resolve(
    file: &Config,
    from_file: bool,
    kind: ShareKind,
    args: &Overrides,
) -> Result<Settings, String> {
    let parse = |list: &[String], parse: fn(&str) -> Result<Multiaddr, String>| {
        list.iter().map(|a| parse(a)).collect::<Result<Vec<_>, _>>()
    };
    let listen = if args.listen.is_empty() {
        parse(&file.listen, address::parse_listen).map_err(|e| format!("listen: {e}"))?
    } else {
        args.listen.clone()
    };
    let mut peers = parse(&file.peers, address::parse_peer).map_err(|e| format!("peers: {e}"))?;
    peers.extend(args.peers.iter().cloned());
    let join = match &args.join {
        Some(code) => Some(parse_invite(code)?),
        // A node that joined with a token presents the token's invite until it is in.
        None if from_file && !file.bootstrap => file.invite_code()?,
        None => None,
    };
    let guard = if args.no_delete_guard {
        MassDeleteGuard::off()
    } else {
        MassDeleteGuard {
            max_fraction: file.mass_delete_fraction,
            max_files: file.mass_delete_files,
            ..MassDeleteGuard::default()
        }
    };
    Ok(Settings {
        listen,
        peers,
        init: args.init || file.bootstrap,
        join,
        election: match args.timing.unwrap_or(file.timing) {
            Timing::Lan | Timing::Auto => ElectionConfig::lan(),
            Timing::Wan => ElectionConfig::wan(),
        },
        timing_auto: args.timing.unwrap_or(file.timing) == Timing::Auto,
        chunker: ChunkerParams::default(),
        rules: file.mode_rules(kind == ShareKind::Document || args.single_document)?,
        rescan_every: match args.scan_ms {
            Some(ms) => Duration::from_millis(ms.max(50)),
            None => Duration::from_secs(file.rescan_secs.max(1)),
        },
        debounce: Duration::from_millis(args.debounce_ms.unwrap_or(file.debounce_ms)),
        mdns: file.mdns && !args.no_mdns,
        guard,
        bandwidth_limit: Some(args.bandwidth_limit.unwrap_or(file.bandwidth_limit))
            .filter(|&r| r > 0),
        relay: file.relay,
        relay_circuit_bytes: file
            .relay_circuit_mib
            .clamp(super::MIN_RELAY_CIRCUIT_MIB, super::MAX_RELAY_CIRCUIT_MIB)
            << 20,
        quic: file.quic,
        ui: ui_settings(file)?,
        demote_after: Some(Duration::from_secs(file.demote_after_secs)).filter(|d| !d.is_zero()),
        retention: Retention {
            keep_last: file.keep_versions,
            keep_ms: file.keep_days.saturating_mul(24 * 3600 * 1000),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chorus_merge::MergeMode;

    fn file() -> Config {
        Config {
            listen: vec!["7000".into()],
            peers: vec![
                "/ip4/10.0.0.2/tcp/7000/p2p/12D3KooWGzHjPXTX6ayDCnhvGkz4N3D6mHMAQx4CCQjhSx4yu6dR"
                    .into(),
            ],
            invite: "00112233445566778899aabbccddeeff".into(),
            bandwidth_limit: 1000,
            debounce_ms: 250,
            rescan_secs: 60,
            keep_versions: 7,
            keep_days: 2,
            demote_after_secs: 0,
            ..Config::default()
        }
    }

    #[test]
    fn the_file_gives_every_value_the_command_line_does_not() {
        let s = resolve(&file(), true, ShareKind::Folder, &Overrides::default()).unwrap();
        assert_eq!(
            s.listen,
            vec!["/ip4/0.0.0.0/tcp/7000".parse::<Multiaddr>().unwrap()]
        );
        assert_eq!(s.peers.len(), 1);
        assert_eq!(
            s.join,
            Some(parse_invite("00112233445566778899aabbccddeeff").unwrap())
        );
        assert!(!s.init);
        assert_eq!(s.bandwidth_limit, Some(1000));
        assert_eq!(s.debounce, Duration::from_millis(250));
        assert_eq!(s.rescan_every, Duration::from_secs(60));
        assert_eq!(s.demote_after, None, "0 means never");
        assert_eq!(
            (s.retention.keep_last, s.retention.keep_ms),
            (7, 2 * 86_400_000)
        );
        assert_eq!(s.election, ElectionConfig::lan());
        assert!(s.mdns);
        assert!(!s.rules.single_document());
    }

    #[test]
    fn options_override_the_file_and_peers_add_to_it() {
        let extra: Multiaddr =
            "/ip4/10.0.0.3/tcp/7000/p2p/12D3KooWGzHjPXTX6ayDCnhvGkz4N3D6mHMAQx4CCQjhSx4yu6dR"
                .parse()
                .unwrap();
        let args = Overrides {
            listen: vec!["/ip4/127.0.0.1/tcp/9000".parse().unwrap()],
            peers: vec![extra.clone()],
            join: Some("ffeeddccbbaa99887766554433221100".into()),
            scan_ms: Some(10),
            debounce_ms: Some(5),
            single_document: true,
            bandwidth_limit: Some(0),
            timing: Some(Timing::Wan),
            no_mdns: true,
            ..Overrides::default()
        };
        let s = resolve(&file(), true, ShareKind::Folder, &args).unwrap();
        assert_eq!(s.listen, args.listen);
        assert_eq!(s.peers.len(), 2);
        assert_eq!(s.peers[1], extra);
        assert_eq!(
            s.join,
            Some(parse_invite("ffeeddccbbaa99887766554433221100").unwrap())
        );
        assert_eq!(s.rescan_every, Duration::from_millis(50), "at least 50 ms");
        assert_eq!(s.debounce, Duration::from_millis(5));
        assert_eq!(
            s.bandwidth_limit, None,
            "0 on the command line lifts the file's limit"
        );
        assert_eq!(s.election, ElectionConfig::wan());
        assert!(!s.mdns);
        assert!(s.rules.single_document());
    }

    #[test]
    fn the_machine_that_made_the_share_presents_no_invite_and_a_bad_value_is_named() {
        let mut made = file();
        made.bootstrap = true;
        let s = resolve(&made, true, ShareKind::Folder, &Overrides::default()).unwrap();
        assert!(s.init);
        assert_eq!(s.join, None);
        let bad = Overrides {
            join: Some("xyz".into()),
            ..Overrides::default()
        };
        let err = resolve(&file(), true, ShareKind::Folder, &bad).unwrap_err();
        assert!(err.contains("32 hex digits"), "{err}");
        let mut rules = file();
        rules.merge = vec![super::super::MergeRule {
            path: "*.lock".into(),
            mode: "whole".into(),
        }];
        let s = resolve(&rules, true, ShareKind::Document, &Overrides::default()).unwrap();
        let at = |p: &str| {
            s.rules
                .configured(&chorus_chunking::RelPath::new(p).unwrap())
        };
        assert_eq!(at("Cargo.lock"), Some(MergeMode::Whole));
        assert!(
            s.rules.single_document(),
            "a document share merges its text by chars"
        );
    }

    #[test]
    fn the_page_listens_on_loopback_unless_an_address_and_a_token_are_given() {
        let with = |listen: &str, token: &str| {
            let mut f = file();
            f.ui_listen = listen.into();
            f.ui_token = token.into();
            resolve(&f, true, ShareKind::Folder, &Overrides::default()).map(|s| s.ui)
        };
        assert_eq!(with("", ""), Ok(UiSettings::default()));
        assert_eq!(
            with("8384", "").unwrap().listen,
            Some("127.0.0.1:8384".parse().unwrap())
        );
        assert_eq!(
            with("[::1]:8384", "").unwrap().listen,
            Some("[::1]:8384".parse().unwrap())
        );
        let long = "a".repeat(MIN_UI_TOKEN);
        let err = with("0.0.0.0:8384", "").unwrap_err();
        assert!(err.contains("ui_token"), "{err}");
        let s = with("192.168.1.5:8384", &long).unwrap();
        assert_eq!(s.token.as_deref(), Some(long.as_str()));
        for bad in ["short", &format!("{long}<script>"), &format!("{long} x")] {
            let err = with("", bad).unwrap_err();
            assert!(err.contains("at least"), "{bad}: {err}");
        }
        assert!(
            with("not an address", "")
                .unwrap_err()
                .contains("ui_listen")
        );
    }
}
