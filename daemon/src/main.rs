//! The `chorus` command line. Each subcommand lives in its own module under `commands/`.
//!
//! Exit codes: 0 success, 1 an error (printed as one line saying what went wrong and what to
//! do), 2 a usage error (from clap). `merge-file` follows `git merge-file` instead: the number
//! of conflicts, 255 on error.

mod commands;
mod logs;

use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

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
    /// Three nodes on this machine in temporary folders: a share made and joined, concurrent
    /// edits merged, the versions and a redo entry shown; everything removed at the end.
    Demo(commands::demo::Args),
    /// Start a new share in a folder (created when missing) or on one file (a document):
    /// writes its state dir with an identity and config.toml.
    Init(commands::share::InitArgs),
    /// Set this machine up to join a share, with the token `chorus invite` printed on a member.
    Join(commands::share::JoinArgs),
    /// Run the daemon in the foreground on a folder or a document (Ctrl-C stops it).
    Run(commands::run::Args),
    /// Print a join token for a new machine (asks the running daemon).
    Invite(commands::control::InviteArgs),
    /// How the daemon is: role, leader, head version, pending local changes, peers, traffic.
    Status(commands::query::StatusArgs),
    /// The other members: id, addresses, connected, role, last-shared version.
    #[command(visible_alias = "members")]
    Peers(commands::query::Args),
    /// Take a member out of the share (run on the leader's machine): the others refuse it.
    Remove(commands::control::RemoveArgs),
    /// New share secret (run on the leader's machine): every other machine is removed and every
    /// invite void; the machines kept are invited again.
    Rekey(commands::control::RekeyArgs),
    /// The accepted versions, newest first: number, time, merge or fast-forward, what was
    /// displaced, origin.
    Log(commands::query::Args),
    /// The redo stack: the changes merges displaced, newest first, with a preview of each;
    /// `chorus conflicts SEQ` shows one as a diff against what won.
    Conflicts(commands::conflicts::ConflictsArgs),
    /// Make the share what it was before the newest accepted version (as a new version).
    Undo(commands::query::Args),
    /// Bring back a displaced change (`chorus redo SEQ`), or take back the last undo.
    Redo(commands::control::RedoArgs),
    /// Make the share, or one path in it, what it was in an accepted version.
    Restore(commands::control::RestoreArgs),
    /// Print a file as it was in an accepted version.
    Show(commands::control::ShowArgs),
    /// List what an accepted version holds at a path, as `ls -l` does (kind, exec bit, size).
    Ls(commands::ls::LsArgs),
    /// Stop scanning and writing the share until `chorus resume`.
    Pause(commands::query::Args),
    /// Scan and write again; `--confirm` also writes a version held for deleting many files.
    Resume(commands::control::ResumeArgs),
    /// Print the daemon's events as they happen.
    Watch(commands::query::Args),
    /// Serve the web page (the group, history, conflicts and actions in a browser) and print
    /// its address with its token; `--open` opens it.
    Ui(commands::ui::UiArgs),
    /// Print the PeerId of a state dir's identity (created when missing).
    Id(commands::run::IdArgs),
    /// Encode NEW_DIR as a delta against OLD_DIR, as a sender would, apply and verify it, and
    /// report what it cost on the wire.
    Delta(commands::delta::Args),
    /// Three-way merge of one file, as the leader would merge it: prints the result (argument
    /// order as `git merge-file`) and exits with the number of conflicts resolved by version
    /// order (0 when clean; 255 on error).
    MergeFile(commands::merge_file::Args),
    /// Print the completion script for a shell (bash, zsh, fish, elvish, powershell).
    Completions(commands::completions::CompletionsArgs),
    /// Print the man page (roff), or with --dir write one per subcommand.
    Man(commands::completions::ManArgs),
}

fn main() -> ExitCode {
    chorus::node::heap::tune();
    logs::init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Demo(args) => commands::demo::run(args),
        Command::Init(args) => commands::share::init(args),
        Command::Join(args) => commands::share::join(args),
        Command::Run(args) => commands::run::run(args),
        Command::Invite(args) => commands::control::invite(args),
        Command::Status(args) => commands::query::status(args),
        Command::Peers(args) => commands::query::peers(args),
        Command::Remove(args) => commands::control::remove(args),
        Command::Rekey(args) => commands::control::rekey(args),
        Command::Log(args) => commands::query::log(args),
        Command::Conflicts(args) => commands::conflicts::run(args),
        Command::Undo(args) => commands::control::undo(args),
        Command::Redo(args) => commands::control::redo(args),
        Command::Restore(args) => commands::control::restore(args),
        Command::Show(args) => commands::control::show(args),
        Command::Ls(args) => commands::ls::run(args),
        Command::Pause(args) => commands::control::pause(args),
        Command::Resume(args) => commands::control::resume(args),
        Command::Watch(args) => commands::control::watch(args),
        Command::Ui(args) => commands::ui::run(args),
        Command::Id(args) => commands::run::id(args),
        Command::Delta(args) => commands::delta::run(args),
        Command::MergeFile(args) => commands::merge_file::run(args),
        Command::Completions(args) => commands::completions::completions(args, Cli::command()),
        Command::Man(args) => commands::completions::man(args, Cli::command()),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("chorus: {}", said_once(&e));
            ExitCode::from(1)
        }
    }
}

/// An error and its sources on one line, `outer: inner: ...`, leaving out a source whose text
/// the line already holds (many errors say their source in their own message as well).
fn said_once(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn the_command_definitions_are_consistent() {
        super::Cli::command().debug_assert();
    }

    #[test]
    fn an_error_line_names_each_source_once() {
        let disk = std::io::Error::other("No space left on device");
        let said = anyhow::Error::new(chorus::node::NodeError::StateDir {
            path: "/s/.chorus".into(),
            source: disk,
        })
        .context("cannot start the node");
        assert_eq!(
            super::said_once(&said),
            "cannot start the node: the state dir /s/.chorus: No space left on device; check its permissions and free space"
        );
        let bare = anyhow::Error::new(std::io::Error::other("inner")).context("outer");
        assert_eq!(super::said_once(&bare), "outer: inner");
    }
}
