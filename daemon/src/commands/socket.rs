//! Which running daemon a socket client asks: the options every client command takes.

use std::path::PathBuf;

/// Which daemon to ask: the share found from `--folder` (default: the current directory) by
/// walking up to the nearest state dir, as git finds its repository; or `--state-dir`.
#[derive(clap::Args)]
pub struct Args {
    /// The share (folder or document) or any folder inside it [default: the current
    /// directory]; the nearest share at or above it is asked.
    #[arg(long)]
    pub folder: Option<PathBuf>,
    /// The daemon's state dir, when it is not where the share keeps it (as `chorus run
    /// --state-dir`).
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
    /// Print the socket's JSON answer as it is.
    #[arg(long)]
    pub json: bool,
}

impl Args {
    /// The state dir of the daemon to ask.
    pub fn state_dir(&self) -> anyhow::Result<PathBuf> {
        if let Some(dir) = &self.state_dir {
            return Ok(dir.clone());
        }
        let start = self.folder.clone().unwrap_or_else(|| PathBuf::from("."));
        Ok(chorus::config::discover::find_state_dir(&start)?)
    }
}
