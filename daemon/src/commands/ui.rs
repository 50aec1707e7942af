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
    let state_dir = args.at.state_dir()?;
    let answer = client::post(
        &state_dir,
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
        // The browser is handed a private file that redirects to the address, as Jupyter does:
        // the token on a command line would be in every user's `ps`.
        let target = match redirect_file(&state_dir, url) {
            Ok(file) => file.into_os_string(),
            Err(e) => {
                eprintln!(
                    "chorus: cannot write the page's redirect file in {} ({e}); opening the address directly",
                    state_dir.display()
                );
                url.into()
            }
        };
        match std::process::Command::new(opener)
            .arg(target)
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

/// `STATE_DIR/ui-open.html` (mode 0600, made anew): a page that sends the browser on to `url`.
fn redirect_file(state_dir: &std::path::Path, url: &str) -> std::io::Result<std::path::PathBuf> {
    use std::os::unix::fs::OpenOptionsExt;
    let path = state_dir.join("ui-open.html");
    match std::fs::remove_file(&path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)?;
    // The address holds only characters a URL carries as they are (the token is hex, or
    // letters, digits, `-` and `_`), so it goes into the attribute unescaped.
    write!(
        f,
        "<!doctype html>\n<meta charset=\"utf-8\">\n<meta http-equiv=\"refresh\" content=\"0;url={url}\">\n<title>chorus</title>\n<p><a href=\"{url}\">Open chorus</a></p>\n"
    )?;
    Ok(path)
}
