//! A share's configuration, `.chorus/config.toml`, and where a share keeps its state.
//!
//! `chorus init` and `chorus join` write the file (mode 0600: it holds the share secret);
//! `chorus run` reads it, and its command-line options override it. Every key has a default,
//! so a file may name only what differs. Unknown keys are refused (a typo should not silently
//! mean "default").

pub mod address;
pub mod discover;
pub mod resolve;
pub mod token;

use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use chorus_merge::{MergeMode, ModeRules};
use serde::{Deserialize, Serialize};

/// The config file's name inside the state dir.
pub const CONFIG_FILE: &str = "config.toml";

/// The tree path a document share keeps its one file under, whatever the file is called on
/// each machine.
pub use chorus_folder::DOCUMENT_PATH;

/// Why a config could not be read or written; each says what to do.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(
        "no chorus share here (no {0}): start one with `chorus init PATH`, or join one with `chorus join TOKEN PATH`"
    )]
    Missing(PathBuf),
    #[error("{path}: {message}; fix the file (every key is documented in README.md)")]
    Invalid { path: PathBuf, message: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0} is already a chorus share (it has a {CONFIG_FILE}); run it with `chorus run`")]
    Exists(PathBuf),
}

/// `config.toml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Names the share (32 hex digits); join tokens carry it so a node cannot be pointed at
    /// the wrong share's state.
    pub share_id: String,
    /// The share secret, 64 hex digits: the key of the private network.
    pub secret: String,
    /// The invite code from the join token (32 hex digits; `chorus join` writes it): presented
    /// to the members until this node is one. Empty on the machine that made the share.
    pub invite: String,
    /// `folder` or `document` (one file, merged character by character).
    pub kind: ShareKind,
    /// Addresses to listen on: libp2p multiaddrs, or `IP:PORT`, `[IPV6]:PORT` or a bare port
    /// (see [`address::parse_listen`]). `chorus init` and `chorus join` pick a free TCP port
    /// once, so peers find this node at the same address after a restart.
    pub listen: Vec<String>,
    /// Peers to dial, `/ip4/ADDR/tcp/PORT/p2p/PEER_ID`; a joiner gets its inviter's here.
    pub peers: Vec<String>,
    /// This node started the share: on its first run it makes a one-node cluster.
    pub bootstrap: bool,
    /// Find peers on the local network with mDNS.
    pub mdns: bool,
    /// Raft timing: `lan` (2 s heartbeats, 4-5 s election timeout: a dead daemon is replaced
    /// in well under a second, a silently vanished machine in about 5 s) or `wan` (2 s, 6-8 s:
    /// round trips up to ~700 ms are not taken for a dead leader).
    pub timing: Timing,
    /// How long the watcher waits after a change for the folder to settle before scanning.
    pub debounce_ms: u64,
    /// A full rescan (cheap: unchanged files are not read) runs this often, in case the
    /// watcher missed something (e.g. on a network filesystem).
    pub rescan_secs: u64,
    /// Sync bytes sent per second, all peers together; 0 means no limit.
    pub bandwidth_limit: u64,
    /// Serve as a relay for the members of this share (circuit relay v2), so members behind
    /// NATs reach each other through this node when they cannot directly. Only members can use
    /// it: the share's key guards the listener. Worth leaving on where this machine has a
    /// public address; `false` turns it off.
    pub relay: bool,
    /// What the relay carries per circuit (one pair of members) at most, in MiB, before it
    /// closes the circuit (the pair connects again, directly if a hole punch works by then).
    pub relay_circuit_mib: u64,
    /// Listen on QUIC (UDP) beside TCP, at the same port numbers. Members use either; QUIC
    /// connections are admitted only from members' keys (TCP's are behind the share's key).
    /// `false` leaves UDP alone.
    pub quic: bool,
    /// Serve the web page (`chorus ui`) from the start at this address: `IP:PORT` or a bare
    /// port (on 127.0.0.1). Empty: only when `chorus ui` asks, on 127.0.0.1 at a random port.
    /// An address off loopback needs `ui_token` too.
    pub ui_listen: String,
    /// The web page's token (at least 32 letters, digits, `-` or `_`); empty: a random one
    /// each time the daemon starts, which `chorus ui` prints.
    pub ui_token: String,
    /// A version that would delete more than this fraction of the files here...
    pub mass_delete_fraction: f64,
    /// ...or more than this many files, is held until `chorus resume --confirm`.
    pub mass_delete_files: u64,
    /// A voter the leader has not seen for this many seconds (default 259200, three days) is
    /// made a learner, so a lost machine stops counting toward the quorum; it is a voter
    /// again once back. 0: never.
    pub demote_after_secs: u64,
    /// History kept on this node: at least the last this many accepted versions...
    pub keep_versions: usize,
    /// ...and every accepted version younger than this many days. Older ones (their chunks,
    /// unless a kept version shares them) are collected; `chorus log` shows the oldest kept.
    pub keep_days: u64,
    /// Merge modes by path, `[[merge]]` tables checked in order (the first match wins);
    /// a path no rule names is sniffed (text: `lines`, binary or over 8 MiB: `whole`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub merge: Vec<MergeRule>,
}

/// One `[[merge]]` table: the paths `path` matches (a glob: `*` within a name, `**` across
/// folders, `?` one character; without a `/` it matches the name in any folder) merge in
/// `mode`: `lines`, `chars` or `whole` (the higher-numbered side wins, the other goes on the
/// redo stack).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MergeRule {
    pub path: String,
    pub mode: String,
}

/// Makes the state dir (and its parents) if needed, and makes it private (0700) whatever the
/// umask: it holds the share secret, the node key and every version.
pub fn create_state_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
}

/// Raft timing: from the round trips measured (`auto`), or fixed by the kind of network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Timing {
    /// From the slowest round trip to a voter measured in earlier runs (the LAN timing until
    /// there is one): see `ElectionConfig::for_round_trip`.
    #[default]
    Auto,
    Lan,
    Wan,
}

/// What a share holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ShareKind {
    #[default]
    Folder,
    Document,
}

/// The least a relay circuit may carry, in MiB: two of the largest frames (16 MiB), so a frame
/// that starts late in one circuit still fits; less, and a large transfer through the relay
/// could stall on one frame for good.
pub const MIN_RELAY_CIRCUIT_MIB: u64 = 32;
/// The most (1 TiB): beyond it the bound means nothing.
pub const MAX_RELAY_CIRCUIT_MIB: u64 = 1 << 20;

impl Default for Config {
    fn default() -> Self {
        Config {
            share_id: String::new(),
            secret: String::new(),
            invite: String::new(),
            kind: ShareKind::Folder,
            listen: vec!["/ip4/0.0.0.0/tcp/0".into()],
            peers: Vec::new(),
            bootstrap: false,
            mdns: true,
            timing: Timing::Auto,
            debounce_ms: 100,
            rescan_secs: 600,
            bandwidth_limit: 0,
            relay: true,
            relay_circuit_mib: 1024,
            quic: true,
            ui_listen: String::new(),
            ui_token: String::new(),
            mass_delete_fraction: 0.5,
            mass_delete_files: 1000,
            demote_after_secs: 3 * 24 * 3600,
            keep_versions: 100,
            keep_days: 30,
            merge: Vec::new(),
        }
    }
}

impl Config {
    /// A new share's config: a random share id and secret.
    pub fn new_share(kind: ShareKind) -> Config {
        Config {
            share_id: hex::encode(rand::random::<[u8; 16]>()),
            secret: hex::encode(rand::random::<[u8; 32]>()),
            kind,
            bootstrap: true,
            ..Config::default()
        }
    }

    /// Reads and checks `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(ConfigError::Missing(path.to_owned()));
            }
            Err(source) => {
                return Err(ConfigError::Io {
                    path: path.to_owned(),
                    source,
                });
            }
        };
        let invalid = |message: String| ConfigError::Invalid {
            path: path.to_owned(),
            message,
        };
        let cfg: Config = toml::from_str(&text).map_err(|e| invalid(e.message().to_owned()))?;
        cfg.check().map_err(invalid)?;
        Ok(cfg)
    }

    /// Checks what serde cannot: the secret's form, addresses, bounds.
    pub fn check(&self) -> Result<(), String> {
        self.secret_bytes()?;
        self.invite_code()?;
        for a in &self.listen {
            address::parse_listen(a).map_err(|e| format!("listen: {e}"))?;
        }
        for a in &self.peers {
            address::parse_peer(a).map_err(|e| format!("peers: {e}"))?;
        }
        if !(self.mass_delete_fraction > 0.0 && self.mass_delete_fraction <= 1.0) {
            return Err(format!(
                "mass_delete_fraction must be in (0, 1], not {}",
                self.mass_delete_fraction
            ));
        }
        if !(MIN_RELAY_CIRCUIT_MIB..=MAX_RELAY_CIRCUIT_MIB).contains(&self.relay_circuit_mib) {
            return Err(format!(
                "relay_circuit_mib must be from {MIN_RELAY_CIRCUIT_MIB} (two of the largest messages, so a transfer through the relay always moves on) to {MAX_RELAY_CIRCUIT_MIB}, not {}",
                self.relay_circuit_mib
            ));
        }
        if self.debounce_ms > 60_000 {
            return Err("debounce_ms above 60000 would leave changes unsynced for minutes".into());
        }
        self.mode_rules(false)?;
        Ok(())
    }

    /// The `[[merge]]` rules as the merge applies them; `single_document` for a share that is
    /// one document (a path no rule names that sniffs as text merges by `chars`).
    pub fn mode_rules(&self, single_document: bool) -> Result<ModeRules, String> {
        self.merge
            .iter()
            .try_fold(ModeRules::new(single_document), |rules, r| {
                let mode = r
                    .mode
                    .parse::<MergeMode>()
                    .map_err(|e| format!("merge: {e}"))?;
                rules.with(&r.path, mode).map_err(|e| format!("merge: {e}"))
            })
    }

    /// The invite code as bytes, if there is one.
    pub fn invite_code(&self) -> Result<Option<[u8; 16]>, String> {
        if self.invite.trim().is_empty() {
            return Ok(None);
        }
        parse_invite(&self.invite).map(Some)
    }

    /// The secret as bytes.
    pub fn secret_bytes(&self) -> Result<[u8; 32], String> {
        parse_secret(&self.secret)
    }

    /// Replaces the file at `path` (a private temp file renamed over it).
    pub fn save(&self, path: &Path) -> Result<(), ConfigError> {
        let tmp = path.with_extension("toml.tmp");
        let _ = std::fs::remove_file(&tmp);
        self.create(&tmp)?;
        std::fs::rename(&tmp, path).map_err(|source| ConfigError::Io {
            path: path.to_owned(),
            source,
        })
    }

    /// Writes the file (mode 0600: it holds the secret); refuses to replace an existing one.
    pub fn create(&self, path: &Path) -> Result<(), ConfigError> {
        let io = |source| ConfigError::Io {
            path: path.to_owned(),
            source,
        };
        if let Some(dir) = path.parent() {
            create_state_dir(dir).map_err(io)?;
        }
        let text = toml::to_string(self).map_err(|e| ConfigError::Invalid {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| {
                if e.kind() == std::io::ErrorKind::AlreadyExists {
                    ConfigError::Exists(path.to_owned())
                } else {
                    io(e)
                }
            })?;
        use std::io::Write;
        f.write_all(HEADER.as_bytes())
            .and_then(|()| f.write_all(text.as_bytes()))
            .and_then(|()| f.sync_all())
            .map_err(io)
    }
}

const HEADER: &str = "# chorus share configuration; every key is documented in README.md.\n\
                      # Keep this file private: it holds the share secret.\n";

/// An invite code: 32 hex digits.
pub fn parse_invite(hexed: &str) -> Result<[u8; 16], String> {
    let mut code = [0u8; 16];
    hex::decode_to_slice(hexed.trim(), &mut code).map_err(|_| {
        "the invite code must be 32 hex digits, as `chorus invite --json` prints it".to_owned()
    })?;
    Ok(code)
}

/// 64 hex digits into 32 bytes.
pub fn parse_secret(hexed: &str) -> Result<[u8; 32], String> {
    let mut secret = [0u8; 32];
    hex::decode_to_slice(hexed.trim(), &mut secret)
        .map_err(|_| "the secret must be 64 hex digits (32 bytes)".to_owned())?;
    Ok(secret)
}

/// Where a share at `path` keeps its state by default: `FOLDER/.chorus` for a folder, and
/// `DIR/.NAME.chorus` beside a document `DIR/NAME`.
pub fn default_state_dir(path: &Path, kind: ShareKind) -> PathBuf {
    match kind {
        ShareKind::Folder => path.join(chorus_chunking::STATE_DIR),
        ShareKind::Document => {
            let name = path
                .file_name()
                .map_or_else(|| "document".into(), |n| n.to_string_lossy().into_owned());
            path.parent()
                .unwrap_or(Path::new("."))
                .join(format!(".{name}.chorus"))
        }
    }
}

/// The state dir of the share at `path` as the CLI finds it: `PATH/.chorus` for a directory,
/// and beside the file for anything else (a document, which need not exist yet).
pub fn state_dir_for(path: &Path) -> PathBuf {
    let kind = if path.is_dir() {
        ShareKind::Folder
    } else {
        ShareKind::Document
    };
    default_state_dir(path, kind)
}

/// The kind of share an existing path is: a regular file is a document, anything else a
/// folder.
pub fn kind_of(path: &Path) -> ShareKind {
    if path.is_file() {
        ShareKind::Document
    } else {
        ShareKind::Folder
    }
}

/// A TCP port free on every interface right now (taken once at init, then kept).
pub fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("0.0.0.0:0")?
        .local_addr()?
        .port())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_share_round_trips_through_the_file_and_defaults_fill_gaps() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s/config.toml");
        let cfg = Config::new_share(ShareKind::Folder);
        cfg.create(&path).unwrap();
        assert_eq!(Config::load(&path).unwrap(), cfg);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let state = std::fs::metadata(dir.path().join("s")).unwrap();
        assert_eq!(
            state.permissions().mode() & 0o777,
            0o700,
            "the state dir is private"
        );
        assert!(matches!(cfg.create(&path), Err(ConfigError::Exists(_))));

        let short = dir.path().join("short.toml");
        std::fs::write(&short, format!("secret = \"{}\"\n", "ab".repeat(32))).unwrap();
        let c = Config::load(&short).unwrap();
        assert_eq!(c.debounce_ms, 100);
        assert_eq!(c.mass_delete_files, 1000);
    }

    #[test]
    fn bad_files_get_a_reason() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        for (text, says) in [
            ("secret = \"12\"\n", "64 hex digits"),
            ("secrte = 1\n", "unknown field"),
            (
                &format!("secret = \"{}\"\nlisten = [\"nope\"]\n", "ab".repeat(32)),
                "/ip4/0.0.0.0/tcp/7000",
            ),
            (
                &format!(
                    "secret = \"{}\"\nmass_delete_fraction = 2.0\n",
                    "ab".repeat(32)
                ),
                "mass_delete_fraction",
            ),
            (
                &format!("secret = \"{}\"\nrelay_circuit_mib = 1\n", "ab".repeat(32)),
                "relay_circuit_mib must be from 32",
            ),
            (
                &format!(
                    "secret = \"{}\"\n[[merge]]\npath = \"*.lock\"\nmode = \"newest\"\n",
                    "ab".repeat(32)
                ),
                "expected lines, chars or whole",
            ),
            (
                &format!(
                    "secret = \"{}\"\n[[merge]]\npath = \"/abs\"\nmode = \"whole\"\n",
                    "ab".repeat(32)
                ),
                "must not start with '/'",
            ),
        ] {
            std::fs::write(&path, text).unwrap();
            let err = Config::load(&path).unwrap_err().to_string();
            assert!(err.contains(says), "{text}: {err}");
        }
        assert!(matches!(
            Config::load(&dir.path().join("none.toml")),
            Err(ConfigError::Missing(_))
        ));
    }

    #[test]
    fn merge_rules_are_read_in_order_and_survive_a_save() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        let text = format!(
            "secret = \"{}\"\n\n[[merge]]\npath = \"docs/**\"\nmode = \"chars\"\n\n\
             [[merge]]\npath = \"*.lock\"\nmode = \"whole\"\n\n\
             [[merge]]\npath = \"**\"\nmode = \"lines\"\n",
            "ab".repeat(32)
        );
        std::fs::write(&path, text).unwrap();
        let cfg = Config::load(&path).unwrap();
        let rules = cfg.mode_rules(false).unwrap();
        let at = |p: &str| rules.configured(&chorus_chunking::RelPath::new(p).unwrap());
        assert_eq!(
            at("docs/a/Cargo.lock"),
            Some(MergeMode::Chars),
            "first match wins"
        );
        assert_eq!(at("src/Cargo.lock"), Some(MergeMode::Whole));
        assert_eq!(at("src/main.rs"), Some(MergeMode::Lines));
        let again = dir.path().join("again.toml");
        cfg.save(&again).unwrap();
        assert_eq!(Config::load(&again).unwrap(), cfg);
        assert!(
            Config::default()
                .mode_rules(true)
                .unwrap()
                .single_document(),
            "no rules: every path is sniffed"
        );
    }

    #[test]
    fn state_dirs_sit_in_a_folder_or_beside_a_document() {
        assert_eq!(
            default_state_dir(Path::new("/a/share"), ShareKind::Folder),
            Path::new("/a/share/.chorus")
        );
        assert_eq!(
            default_state_dir(Path::new("/a/notes.md"), ShareKind::Document),
            Path::new("/a/.notes.md.chorus")
        );
    }
}
