//! `chorus ls VERSION [PATH]`: what an accepted version holds, as `ls -l` shows a folder: kind
//! and exec bit, size, path (a symlink with its target). One level by default, everything
//! below PATH with `--recursive`; `--json` prints the socket's answer (`GET /v1/tree`).

use std::io::Write;
use std::process::ExitCode;

use chorus::api::client;
use serde_json::Value;

use super::control::encode_query_value;
use super::query;

#[derive(clap::Args)]
pub struct LsArgs {
    #[command(flatten)]
    at: query::Args,
    /// The version: MAJOR.MINOR as `chorus log` shows it, or a version id (a unique prefix).
    version: String,
    /// A folder or file in the share [default: the share's root].
    #[arg(default_value = "")]
    path: String,
    /// List everything below PATH, not only its entries.
    #[arg(short = 'R', long)]
    recursive: bool,
}

pub fn run(args: LsArgs) -> anyhow::Result<ExitCode> {
    let mut request = format!(
        "/v1/tree?version={}&path={}",
        encode_query_value(&args.version),
        encode_query_value(&args.path)
    );
    if args.recursive {
        request.push_str("&recursive=true");
    }
    let answer = client::get(&args.at.state_dir()?, &request)?;
    let text = if args.at.json {
        String::from_utf8_lossy(&answer).into_owned()
    } else {
        listing(&serde_json::from_slice(&answer)?)
    };
    // A closed pipe (`| head`) is not an error worth a message.
    let _ = std::io::stdout().write_all(text.as_bytes());
    Ok(ExitCode::SUCCESS)
}

/// `MODE SIZE PATH` lines: `d` a directory, `-` a file, `l` a symlink, then `x` for an
/// executable file; sizes right-aligned, in bytes.
fn listing(answer: &Value) -> String {
    let entries = answer["entries"].as_array().cloned().unwrap_or_default();
    if entries.is_empty() {
        return format!(
            "version {} holds nothing here\n",
            answer["version"].as_str().unwrap_or("?")
        );
    }
    let rows: Vec<(String, String, String)> = entries
        .iter()
        .map(|e| {
            let path = e["path"].as_str().unwrap_or("?");
            match e["kind"].as_str() {
                Some("dir") => (perms('d', e), "-".to_owned(), format!("{path}/")),
                Some("symlink") => (
                    "lrwxrwxrwx".to_owned(),
                    "-".to_owned(),
                    format!("{path} -> {}", e["target"].as_str().unwrap_or("?")),
                ),
                _ => (
                    perms('-', e),
                    e["size"].as_u64().map_or("?".into(), |n| n.to_string()),
                    path.to_owned(),
                ),
            }
        })
        .collect();
    let width = rows.iter().map(|(_, s, _)| s.len()).max().unwrap_or(1);
    rows.into_iter()
        .map(|(mode, size, path)| format!("{mode}  {size:>width$}  {path}\n"))
        .collect()
}

/// `ls -l`'s permission column for an entry: from its `mode` (octal), or from its exec bit
/// when the daemon gave none.
fn perms(kind: char, e: &Value) -> String {
    let bits = e["mode"]
        .as_str()
        .and_then(|m| u32::from_str_radix(m, 8).ok())
        .unwrap_or(match (kind, e["exec"].as_bool()) {
            ('d', _) | (_, Some(true)) => 0o755,
            _ => 0o644,
        });
    let mut out = String::from(kind);
    for shift in [6, 3, 0] {
        let b = (bits >> shift) & 7;
        out.push(if b & 4 != 0 { 'r' } else { '-' });
        out.push(if b & 2 != 0 { 'w' } else { '-' });
        out.push(if b & 1 != 0 { 'x' } else { '-' });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listing_shows_kind_exec_size_and_path() {
        let answer = serde_json::json!({"version": "3.0", "entries": [
            {"path": "bin", "kind": "dir"},
            {"path": "bin/run.sh", "kind": "file", "size": 1234, "mode": "0750", "exec": true},
            {"path": "notes.md", "kind": "file", "size": 5, "mode": "0600", "exec": false},
            {"path": "latest", "kind": "symlink", "target": "notes.md"},
        ]});
        assert_eq!(
            listing(&answer),
            "drwxr-xr-x     -  bin/\n-rwxr-x---  1234  bin/run.sh\n-rw-------     5  notes.md\nlrwxrwxrwx     -  latest -> notes.md\n"
        );
    }
}
