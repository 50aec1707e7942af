//! `chorus run`: runs a node on a folder until the process is stopped, and `chorus id`: prints
//! a state dir's PeerId (creating its identity), which explicit peers name in `/p2p/<id>`.
//!
//! Minimal by design: the full CLI (init with a config file, the watcher) is the CLI issue's; a
//! running node serves its state on the local socket (`chorus::api`). A node started with `--init` makes a one-node cluster and adds every `--peer`
//! as a member; the others are started with `--peer` pointing at it (and at each other).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use chorus::node::{NodeConfig, peer_id, run as run_node};
use chorus_chunking::ChunkerParams;
use chorus_election::ElectionConfig;
use chorus_merge::ModeRules;
use libp2p::Multiaddr;

#[derive(clap::Args)]
pub struct Args {
    /// The folder to keep in sync.
    #[arg(long)]
    folder: PathBuf,
    /// State dir (identity, Raft log, store); default FOLDER/.chorus.
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// The share secret, 64 hex digits (or the CHORUS_SECRET environment variable, which keeps
    /// it out of the process list).
    #[arg(long)]
    secret: Option<String>,
    /// Address to listen on (repeatable).
    #[arg(long, default_value = "/ip4/0.0.0.0/tcp/0")]
    listen: Vec<Multiaddr>,
    /// A peer, as /ip4/ADDR/tcp/PORT/p2p/PEER_ID (repeatable).
    #[arg(long)]
    peer: Vec<Multiaddr>,
    /// Make a new cluster here and add the peers as members.
    #[arg(long, conflicts_with = "join")]
    init: bool,
    /// Join the share with this invite (64 hex digits, from `chorus invite` on a member),
    /// presented to the peers.
    #[arg(long)]
    join: Option<String>,
    /// Rescan the folder this often, in milliseconds.
    #[arg(long, default_value_t = 500)]
    scan_ms: u64,
    /// Merge text character by character (a share that is one document).
    #[arg(long)]
    single_document: bool,
    /// Do not discover peers on the LAN with mDNS.
    #[arg(long)]
    no_mdns: bool,
}

#[derive(clap::Args)]
pub struct InviteArgs {
    /// The joiner's PeerId (it prints it with `chorus id`).
    #[arg(long)]
    peer: libp2p::PeerId,
    /// The share secret, 64 hex digits (or the CHORUS_SECRET environment variable).
    #[arg(long)]
    secret: Option<String>,
}

/// `chorus invite --peer ID`: the invite that lets that peer join.
pub fn invite(args: InviteArgs) -> anyhow::Result<ExitCode> {
    let secret = secret_of(args.secret)?;
    println!(
        "{}",
        hex::encode(chorus::net::invite_for(&secret, &args.peer))
    );
    Ok(ExitCode::SUCCESS)
}

fn secret_of(arg: Option<String>) -> anyhow::Result<[u8; 32]> {
    let Some(hexed) = arg.or_else(|| std::env::var("CHORUS_SECRET").ok()) else {
        bail!("no share secret: pass --secret or set CHORUS_SECRET (64 hex digits)");
    };
    let mut secret = [0u8; 32];
    hex::decode_to_slice(hexed.trim(), &mut secret)
        .context("the secret must be 64 hex digits (32 bytes)")?;
    Ok(secret)
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

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let secret = secret_of(args.secret)?;
    let join = match args.join {
        Some(h) => {
            let mut inv = [0u8; 32];
            hex::decode_to_slice(h.trim(), &mut inv)
                .context("the invite must be 64 hex digits, as `chorus invite` prints it")?;
            Some(inv)
        }
        None => None,
    };
    if !args.folder.is_dir() {
        bail!(
            "{} is not a directory; create the folder to share first",
            args.folder.display()
        );
    }
    let state_dir = args
        .state_dir
        .unwrap_or_else(|| args.folder.join(chorus_chunking::STATE_DIR));
    let cfg = NodeConfig {
        folder: args.folder,
        state_dir,
        secret,
        listen: args.listen,
        peers: args.peer,
        init: args.init,
        join,
        election: ElectionConfig::lan(),
        chunker: ChunkerParams::default(),
        rules: ModeRules::new(args.single_document),
        scan_every: Duration::from_millis(args.scan_ms.max(50)),
        mdns: !args.no_mdns,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    // Runs until the process is stopped (SIGTERM, SIGINT or SIGKILL end it; everything
    // accepted is durable before it is acknowledged).
    rt.block_on(run_node(cfg, std::future::pending()))?;
    Ok(ExitCode::SUCCESS)
}
