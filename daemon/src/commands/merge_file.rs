//! `chorus merge-file OURS BASE THEIRS`: one three-way content merge, for inspection and
//! scripting. Where both sides changed the same region, the higher version number wins and the
//! other side's hunk becomes a redo entry (written as JSON with `--redo FILE`).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use chorus_chunking::VersionNumber;
use chorus_merge::{MergeMode, merge_file};

#[derive(clap::Args)]
pub struct Args {
    /// lines, chars or whole; sniffed from the content when absent.
    #[arg(long)]
    mode: Option<MergeMode>,
    /// Our side's version number (MAJOR.MINOR).
    #[arg(long, default_value = "0.1")]
    ours_number: VersionNumber,
    /// Their side's version number; by default theirs is higher and wins conflicts, as the
    /// first seed's "choose the other side".
    #[arg(long, default_value = "0.2")]
    theirs_number: VersionNumber,
    /// Write the redo entries (what the merge displaced) to this file as JSON.
    #[arg(long)]
    redo: Option<PathBuf>,
    ours: PathBuf,
    base: PathBuf,
    theirs: PathBuf,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    match merge(&args) {
        Ok(code) => Ok(ExitCode::from(code)),
        Err(e) => {
            eprintln!("chorus: {e:#}");
            Ok(ExitCode::from(255))
        }
    }
}

fn merge(args: &Args) -> anyhow::Result<u8> {
    let read =
        |p: &PathBuf| std::fs::read(p).with_context(|| format!("cannot read {}", p.display()));
    let (ours, base, theirs) = (read(&args.ours)?, read(&args.base)?, read(&args.theirs)?);
    if args.ours_number == args.theirs_number {
        anyhow::bail!(
            "--ours-number and --theirs-number are both {}; give the sides different numbers so one can win",
            args.ours_number
        );
    }
    let outcome = merge_file(
        &ours,
        &base,
        &theirs,
        args.mode,
        args.ours_number,
        args.theirs_number,
    )?;
    if let Some(path) = &args.redo {
        std::fs::write(path, outcome.redo_json())
            .with_context(|| format!("cannot write the redo entries to {}", path.display()))?;
    }
    let mut out = std::io::stdout().lock();
    out.write_all(&outcome.result.0)
        .context("cannot write the result to stdout")?;
    out.flush().context("cannot write the result to stdout")?;
    Ok(outcome.exit_code())
}
