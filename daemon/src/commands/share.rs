//! `chorus init [PATH]` starts a new share; `chorus join TOKEN [PATH]` sets this machine up to
//! join one. Both write the share's state dir (identity, `config.toml`) and say what to run
//! next, on stderr (they print no result to use in a script); neither starts the daemon.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use chorus::config::token::JoinToken;
use chorus::config::{CONFIG_FILE, Config, ShareKind, default_state_dir, free_port};
use chorus::node::peer_id;

#[derive(clap::Args)]
pub struct InitArgs {
    /// The folder to share (created when missing), or an existing file to share as a document
    /// (merged character by character) [default: .]
    path: Option<PathBuf>,
    /// State dir; default PATH/.chorus, or .NAME.chorus beside a document.
    #[arg(long)]
    state_dir: Option<PathBuf>,
}

#[derive(clap::Args)]
pub struct JoinArgs {
    /// The token `chorus invite` printed on a member.
    token: String,
    /// Where the share goes here: a folder (created when missing), or for a document share
    /// the file's path [default: . for a folder]
    path: Option<PathBuf>,
    /// State dir; default PATH/.chorus, or .NAME.chorus beside a document.
    #[arg(long)]
    state_dir: Option<PathBuf>,
}

/// A config listening on one TCP port picked now and kept, so peers find this node again
/// after a restart.
fn with_fixed_port(mut cfg: Config) -> anyhow::Result<Config> {
    let port = free_port().context("cannot find a free TCP port to listen on")?;
    cfg.listen = vec![format!("/ip4/0.0.0.0/tcp/{port}")];
    Ok(cfg)
}

pub fn init(args: InitArgs) -> anyhow::Result<ExitCode> {
    let path = args.path.unwrap_or_else(|| PathBuf::from("."));
    let kind = if path.is_file() {
        ShareKind::Document
    } else if path.exists() && !path.is_dir() {
        bail!(
            "{} is neither a folder nor a regular file; chorus shares one or the other",
            path.display()
        );
    } else {
        std::fs::create_dir_all(&path)
            .with_context(|| format!("cannot create the folder {}", path.display()))?;
        ShareKind::Folder
    };
    let state_dir = args
        .state_dir
        .unwrap_or_else(|| default_state_dir(&path, kind));
    let cfg = with_fixed_port(Config::new_share(kind))?;
    cfg.create(&state_dir.join(CONFIG_FILE))?;
    if kind == ShareKind::Folder {
        chorus_folder::marker::create(&path)
            .with_context(|| format!("cannot create the share marker in {}", path.display()))?;
    }
    let me = peer_id(&state_dir)?;
    eprintln!(
        "chorus: a new {} share in {} (share {}, this node {me})",
        match kind {
            ShareKind::Folder => "folder",
            ShareKind::Document => "document",
        },
        path.display(),
        cfg.share_id
    );
    eprintln!("  start it:             chorus run {}", path.display());
    eprintln!(
        "  then invite machines: chorus invite --folder {}",
        path.display()
    );
    Ok(ExitCode::SUCCESS)
}

pub fn join(args: JoinArgs) -> anyhow::Result<ExitCode> {
    let token = JoinToken::decode(&args.token)?;
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    if token.expires_at_ms <= now_ms {
        bail!(
            "this token's invite expired {} min ago: run `chorus invite` on a member for a new one",
            (now_ms - token.expires_at_ms) / 60_000
        );
    }
    let path = match (args.path, token.kind) {
        (Some(p), _) => p,
        (None, ShareKind::Folder) => PathBuf::from("."),
        (None, ShareKind::Document) => bail!(
            "this token is for a document share: name the file it goes to, e.g. `chorus join TOKEN notes.md`"
        ),
    };
    match token.kind {
        ShareKind::Folder => {
            if path.exists() && !path.is_dir() {
                bail!(
                    "{} is a file, but this token is for a folder share: give a folder",
                    path.display()
                );
            }
            std::fs::create_dir_all(&path)
                .with_context(|| format!("cannot create the folder {}", path.display()))?;
        }
        ShareKind::Document => {
            if path.is_dir() {
                bail!(
                    "{} is a folder, but this token is for a document share: give a file's path",
                    path.display()
                );
            }
        }
    }
    let state_dir = args
        .state_dir
        .unwrap_or_else(|| default_state_dir(&path, token.kind));
    let config_path = state_dir.join(CONFIG_FILE);
    if config_path.exists() {
        return rejoin(&token, &path, &state_dir);
    }
    let cfg = with_fixed_port(Config {
        share_id: hex::encode(token.share_id),
        secret: hex::encode(token.secret),
        invite: hex::encode(token.invite),
        kind: token.kind,
        peers: token.addresses.iter().map(|a| a.to_string()).collect(),
        bootstrap: false,
        ..Config::default()
    })?;
    cfg.create(&state_dir.join(CONFIG_FILE))?;
    if token.kind == ShareKind::Folder {
        chorus_folder::marker::create(&path)
            .with_context(|| format!("cannot create the share marker in {}", path.display()))?;
    }
    let me = peer_id(&state_dir)?;
    eprintln!(
        "chorus: {} is set up to join share {} through {} (this node {me})",
        path.display(),
        cfg.share_id,
        token.inviter
    );
    eprintln!("  start it: chorus run {}", path.display());
    Ok(ExitCode::SUCCESS)
}

/// `chorus join` where the share is set up already (a machine removed by `chorus rekey` and
/// invited again): the config takes the token's secret, invite and inviter; the Raft state of
/// the old membership goes, so the node enters as a new member; the folder, history store and
/// identity stay.
fn rejoin(token: &JoinToken, path: &Path, state_dir: &Path) -> anyhow::Result<ExitCode> {
    let config_path = state_dir.join(CONFIG_FILE);
    let mut cfg = Config::load(&config_path)?;
    if cfg.share_id != hex::encode(token.share_id) {
        bail!(
            "{} is set up for another share ({}): give this one its own folder, or --state-dir",
            state_dir.display(),
            cfg.share_id
        );
    }
    if chorus::api::client::get(state_dir, "/v1/status").is_ok() {
        bail!("the daemon of this share is running: stop it first, then join again");
    }
    cfg.secret = hex::encode(token.secret);
    cfg.invite = hex::encode(token.invite);
    cfg.peers = token.addresses.iter().map(|a| a.to_string()).collect();
    cfg.bootstrap = false;
    cfg.save(&config_path)?;
    let raft = state_dir.join("raft");
    if raft.exists() {
        std::fs::remove_dir_all(&raft)
            .with_context(|| format!("cannot reset the membership state in {}", raft.display()))?;
    }
    eprintln!(
        "chorus: {} is set up to rejoin share {} through {} with the new token",
        path.display(),
        cfg.share_id,
        token.inviter
    );
    eprintln!("  start it: chorus run {}", path.display());
    Ok(ExitCode::SUCCESS)
}
