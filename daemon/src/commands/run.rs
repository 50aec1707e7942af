//! `chorus run [PATH]`: the daemon, in the foreground, on a folder or a document; and `chorus
//! id`: prints a state dir's PeerId (creating its identity).
//!
//! Settings come from the share's `config.toml` (written by `chorus init` or `chorus join`);
//! options given here override it, both resolved in one place (`config::resolve`). Without a config file, `--secret` (or CHORUS_SECRET) and
//! `--peer`/`--init`/`--join` describe the share on the command line instead, as scripts and
//! tests do.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use chorus::config::resolve::{Overrides, resolve};
use chorus::config::{
    CONFIG_FILE, Config, ConfigError, ShareKind, Timing, address, default_state_dir, parse_secret,
};
use chorus::node::{NodeConfig, Share, peer_id, run as run_node, stop_signal};
use libp2p::Multiaddr;

#[derive(clap::Args)]
pub struct Args {
    /// The folder, or the one file (a document share), to keep in sync [default: .]
    path: Option<PathBuf>,
    /// The same as PATH.
    #[arg(long, conflicts_with = "path", hide = true)]
    folder: Option<PathBuf>,
    /// State dir (identity, Raft log, store, socket); default PATH/.chorus for a folder and
    /// .NAME.chorus beside a document.
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// The config file; default STATE_DIR/config.toml.
    #[arg(long)]
    config: Option<PathBuf>,
    /// The share secret, 64 hex digits, for a share without a config file (or the
    /// CHORUS_SECRET environment variable, which keeps it out of the process list).
    #[arg(long)]
    secret: Option<String>,
    /// Address to listen on (repeatable): a multiaddr (/ip4/0.0.0.0/tcp/7000), IP:PORT
    /// (127.0.0.1:7000, [::1]:7000) or a bare port (7000: every IPv4 interface); replaces the
    /// config's `listen`.
    #[arg(long, value_name = "ADDRESS", value_parser = address::parse_listen)]
    listen: Vec<Multiaddr>,
    /// A peer to dial, as /ip4/ADDR/tcp/PORT/p2p/PEER_ID (repeatable); added to the config's.
    #[arg(long, value_name = "MULTIADDR", value_parser = address::parse_peer)]
    peer: Vec<Multiaddr>,
    /// Make a new cluster here and add the --peer nodes as members (what `chorus init` records
    /// as `bootstrap = true`).
    #[arg(long, conflicts_with = "join")]
    init: bool,
    /// Join with this invite code (32 hex digits, `invite` in `chorus invite --json` on a
    /// member); `chorus join TOKEN` records the token's in the config instead.
    #[arg(long, value_name = "CODE")]
    join: Option<String>,
    /// Full rescan period in milliseconds; overrides the config's `rescan_secs`.
    #[arg(long)]
    scan_ms: Option<u64>,
    /// Watcher debounce in milliseconds; overrides the config's `debounce_ms`.
    #[arg(long)]
    debounce_ms: Option<u64>,
    /// Merge text character by character, as a document share does.
    #[arg(long)]
    single_document: bool,
    /// Sync bytes sent per second, all peers together (0: no limit); overrides the config's
    /// `bandwidth_limit`.
    #[arg(long)]
    bandwidth_limit: Option<u64>,
    /// Raft timing; overrides the config's `timing` (`auto`: from the round trip measured in
    /// earlier runs; `lan`; `wan` for round trips of ~100 ms and more).
    #[arg(long, value_enum)]
    timing: Option<Timing>,
    /// Do not discover peers on the LAN with mDNS.
    #[arg(long)]
    no_mdns: bool,
    /// Never hold a version that deletes many files (the mass-delete guard is off).
    #[arg(long)]
    no_delete_guard: bool,
}

#[derive(clap::Args)]
pub struct IdArgs {
    /// The state dir whose identity to print (created when missing).
    #[arg(long)]
    state_dir: PathBuf,
}

pub fn id(args: IdArgs) -> anyhow::Result<ExitCode> {
    println!("{}", peer_id(&args.state_dir)?);
    Ok(ExitCode::SUCCESS)
}

/// The secret from `--secret` or CHORUS_SECRET, if either is set.
pub fn secret_arg(arg: Option<String>) -> anyhow::Result<Option<[u8; 32]>> {
    arg.or_else(|| std::env::var("CHORUS_SECRET").ok())
        .map(|h| parse_secret(&h).map_err(anyhow::Error::msg))
        .transpose()
}

/// A path made absolute and free of symlinks (the watcher compares inotify's canonical paths
/// with it); a document that does not exist yet is resolved through its directory.
fn canonical(path: &Path) -> anyhow::Result<PathBuf> {
    if let Ok(p) = path.canonicalize() {
        return Ok(p);
    }
    let name = path
        .file_name()
        .with_context(|| format!("{} names no file", path.display()))?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let dir = dir
        .canonicalize()
        .with_context(|| format!("{} does not exist; create it first", dir.display()))?;
    Ok(dir.join(name))
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let path = args
        .path
        .clone()
        .or(args.folder.clone())
        .unwrap_or_else(|| PathBuf::from("."));
    let guessed = if path.is_dir() {
        ShareKind::Folder
    } else {
        ShareKind::Document
    };
    let state_dir = args
        .state_dir
        .clone()
        .unwrap_or_else(|| default_state_dir(&path, guessed));
    let config_path = args
        .config
        .clone()
        .unwrap_or_else(|| state_dir.join(CONFIG_FILE));
    let secret = secret_arg(args.secret.clone())?;
    let (cfg, from_file) = match Config::load(&config_path) {
        Ok(c) => (c, true),
        Err(ConfigError::Missing(_)) if secret.is_some() => (Config::default(), false),
        Err(ConfigError::Missing(_)) if !path.exists() => bail!(
            "{} does not exist: create the folder, or start a share there with `chorus init {}`",
            path.display(),
            path.display()
        ),
        Err(e) => return Err(e.into()),
    };
    let secret = match secret {
        Some(s) => s,
        None => cfg.secret_bytes().map_err(anyhow::Error::msg)?,
    };
    let kind = if from_file { cfg.kind } else { guessed };
    match kind {
        ShareKind::Folder if !path.is_dir() => bail!(
            "{} is not a directory; create the folder to share first",
            path.display()
        ),
        ShareKind::Document if path.is_dir() => bail!(
            "{} is a directory, but this share is a document: give the file's path",
            path.display()
        ),
        _ => {}
    }
    chorus::config::create_state_dir(&state_dir)
        .with_context(|| format!("cannot create the state dir {}", state_dir.display()))?;
    let share_path = canonical(&path)?;
    let state_dir = canonical(&state_dir)?;
    let share = match kind {
        ShareKind::Folder => Share::Folder(share_path),
        ShareKind::Document => Share::Document(share_path),
    };
    let share_id = {
        let mut id = [0u8; 16];
        // A share without a config file has no id; tokens then carry zeros.
        let _ = hex::decode_to_slice(&cfg.share_id, &mut id);
        id
    };
    let overrides = Overrides {
        listen: args.listen.clone(),
        peers: args.peer.clone(),
        init: args.init,
        join: args.join.clone(),
        scan_ms: args.scan_ms,
        debounce_ms: args.debounce_ms,
        single_document: args.single_document,
        bandwidth_limit: args.bandwidth_limit,
        timing: args.timing,
        no_mdns: args.no_mdns,
        no_delete_guard: args.no_delete_guard,
    };
    let settings = resolve(&cfg, from_file, kind, &overrides)
        .map_err(|e| anyhow::anyhow!("{}: {e}", config_path.display()))?;
    // Said once start-up has passed its checks (the socket is ours, the ports are free, the
    // network listens), so a busy port or a second daemon is the only thing printed.
    let keeping = format!(
        "chorus: keeping {} in sync ({} share; state in {}); `chorus status` tells how it goes",
        share.path().display(),
        match kind {
            ShareKind::Folder => "folder",
            ShareKind::Document => "document",
        },
        state_dir.display()
    );
    let started = move |me: libp2p::PeerId, addrs: &[Multiaddr]| {
        for a in addrs {
            eprintln!("chorus: peer {me} listening on {a}/p2p/{me}");
        }
        eprintln!("{keeping}");
    };
    let node = NodeConfig {
        started: Some(Box::new(started)),
        share,
        share_id,
        state_dir,
        secret,
        settings,
        watch: true,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    // Runs until SIGINT or SIGTERM (a clean stop) or SIGKILL (everything accepted is durable
    // before it is acknowledged, so nothing is lost either way).
    rt.block_on(run_node(node, stop_signal()))?;
    eprintln!("chorus: stopped");
    Ok(ExitCode::SUCCESS)
}
