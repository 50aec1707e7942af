//! `chorus completions SHELL` and `chorus man`: shell completions (clap_complete) and man
//! pages (clap_mangen) generated from the same clap definitions the command parses with, so
//! they never disagree with it. Both print on stdout, to be redirected where the shell or
//! `man` looks (README.md says where); `chorus man --dir DIR` writes a page per subcommand.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

#[derive(clap::Args)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    shell: clap_complete::Shell,
}

#[derive(clap::Args)]
pub struct ManArgs {
    /// Write chorus.1 and a page per subcommand (chorus-init.1, ...) into this folder instead
    /// of printing chorus.1.
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
}

/// The completion script for `args.shell`, on stdout.
pub fn completions(args: CompletionsArgs, mut cmd: clap::Command) -> anyhow::Result<ExitCode> {
    let mut out = Vec::new();
    clap_complete::generate(args.shell, &mut cmd, "chorus", &mut out);
    let _ = std::io::stdout().write_all(&out);
    Ok(ExitCode::SUCCESS)
}

/// The man page (roff) on stdout, or every page in `--dir`.
pub fn man(args: ManArgs, cmd: clap::Command) -> anyhow::Result<ExitCode> {
    match args.dir {
        Some(dir) => {
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            clap_mangen::generate_to(cmd, &dir)
                .with_context(|| format!("cannot write the man pages into {}", dir.display()))?;
            eprintln!(
                "chorus: wrote the man pages into {} (`man -l {}/chorus.1` shows one)",
                dir.display(),
                dir.display()
            );
        }
        None => {
            let mut out = Vec::new();
            clap_mangen::Man::new(cmd).render(&mut out)?;
            let _ = std::io::stdout().write_all(&out);
        }
    }
    Ok(ExitCode::SUCCESS)
}
