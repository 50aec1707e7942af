//! The `chorus` command line. Each subcommand lives in its own module under `commands/`.
//!
//! Exit codes: 0 success, 1 an error (printed as one line saying what went wrong and what to
//! do), 2 a usage error (from clap). `merge-file` follows `git merge-file` instead: the number
//! of conflicts, 255 on error.

mod commands;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "chorus",
    version,
    about = "Keeps a folder or a document identical across a small group of machines"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Encode NEW_DIR as a delta against OLD_DIR, as a sender would, apply and verify it, and
    /// report what it cost on the wire.
    Delta(commands::delta::Args),
    /// Three-way merge of one file, as the leader would merge it: prints the result (argument
    /// order as `git merge-file`) and exits with the number of conflicts resolved by version
    /// order (0 when clean; 255 on error).
    MergeFile(commands::merge_file::Args),
    /// Run a node on a folder: sync with the peers until the process is stopped.
    Run(commands::run::Args),
    /// Print the PeerId of a state dir's identity (created when missing).
    Id(commands::run::IdArgs),
    /// Print the invite that lets a peer join (`chorus run --join INVITE`).
    Invite(commands::run::InviteArgs),
    /// Ask the running daemon how it is: role, leader, head version, pending local changes,
    /// peers, bytes on the wire.
    Status(commands::query::Args),
    /// List the other members: id, addresses, connected, role, last-shared version.
    Peers(commands::query::Args),
    /// List the accepted versions, newest first: number, time, merge or fast-forward, what
    /// was displaced, origin.
    Log(commands::query::Args),
    /// List the redo stack: the changes merges displaced, newest first.
    Conflicts(commands::query::Args),
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("CHORUS_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Delta(args) => commands::delta::run(args),
        Command::MergeFile(args) => commands::merge_file::run(args),
        Command::Run(args) => commands::run::run(args),
        Command::Id(args) => commands::run::id(args),
        Command::Invite(args) => commands::run::invite(args),
        Command::Status(args) => commands::query::status(args),
        Command::Peers(args) => commands::query::peers(args),
        Command::Log(args) => commands::query::log(args),
        Command::Conflicts(args) => commands::query::conflicts(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("chorus: {e:#}");
            ExitCode::from(1)
        }
    }
}
