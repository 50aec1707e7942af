//! `chorus ui`: asks the running daemon to serve its web page (on 127.0.0.1 at a random port,
//! or at `ui_listen`) and prints the address with the page's token, as Jupyter does; `--open`
//! also opens it in the default browser.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use chorus::api::client;
use serde_json::Value;

use super::query;

#[derive(clap::Args)]
pub struct UiArgs {
    #[command(flatten)]
    at: query::Args,
    /// Open the page in the default browser too (xdg-open; `open` on macOS).
    #[arg(long)]
    open: bool,
}

pub fn run(args: UiArgs) -> anyhow::Result<ExitCode> {
    let answer = client::post(
        &args.at.state_dir()?,
        "/v1/ui",
        &serde_json::json!({}),
        Duration::from_secs(10),
    )?;
    if args.at.json {
        let _ = std::io::stdout().write_all(&answer);
        return Ok(ExitCode::SUCCESS);
    }
    let v: Value = serde_json::from_slice(&answer)?;
    let url = v["url"]
        .as_str()
        .ok_or_else(|| anyhow::anyhow!("the daemon answered no address for the page"))?;
    println!("{url}");
    eprintln!(
        "chorus: the address carries the page's token: anyone with it can change the share; it lasts until the daemon stops (or set ui_token)."
    );
    if args.open {
        let opener = if cfg!(target_os = "macos") {
            "open"
        } else {
            "xdg-open"
        };
        match std::process::Command::new(opener)
            .arg(url)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
        {
            Ok(s) if s.success() => {}
            Ok(s) => eprintln!("chorus: {opener} failed ({s}): open the address above yourself"),
            Err(e) => {
                eprintln!("chorus: cannot run {opener} ({e}): open the address above yourself")
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
