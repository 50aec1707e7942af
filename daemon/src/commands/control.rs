//! Clients of the running daemon's socket that change something: `chorus invite`, `undo`,
//! `redo`, `restore`, `pause`, `resume`; and `chorus watch`, which prints its events as they
//! happen. Each prints one line saying what happened, or with `--json` the socket's answer,
//! on stdout; advice goes to stderr, so `TOKEN=$(chorus invite)` is exactly the token.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use chorus::api::client;
use serde_json::{Value, json};

use super::query::{self, short};

/// How long a request may take: a restore writes the share.
const WITHIN: Duration = Duration::from_secs(150);

fn post(
    at: &query::Args,
    path: &str,
    body: Value,
    say: impl FnOnce(&Value) -> String,
) -> anyhow::Result<ExitCode> {
    let answer = client::post(&at.state_dir()?, path, &body, WITHIN)?;
    let text = if at.json {
        String::from_utf8_lossy(&answer).into_owned()
    } else {
        let v: Value = serde_json::from_slice(&answer).unwrap_or(Value::Null);
        format!("{}\n", say(&v))
    };
    let _ = std::io::stdout().write_all(text.as_bytes());
    Ok(ExitCode::SUCCESS)
}

fn s(v: &Value, key: &str) -> String {
    match &v[key] {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

#[derive(clap::Args)]
pub struct InviteArgs {
    #[command(flatten)]
    at: query::Args,
    /// How long the invite is good for: seconds, or a number with s, m, h or d (at most 30
    /// days).
    #[arg(long, value_name = "DURATION", default_value = "24h", value_parser = parse_duration)]
    expires: u64,
    /// How many machines the invite admits (1: single-use); any number when not given.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1024))]
    uses: Option<u32>,
}

/// `90`, `90s`, `30m`, `12h`, `7d`: seconds.
fn parse_duration(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let (n, unit) = match t.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => (&t[..i], c),
        _ => (t, 's'),
    };
    let n: u64 = n
        .parse()
        .map_err(|_| format!("'{text}' is not a duration: use e.g. 90s, 30m, 12h or 7d"))?;
    let unit = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        'd' => 86400,
        _ => return Err(format!("'{text}': the unit is s, m, h or d")),
    };
    Ok(n.saturating_mul(unit))
}

/// `chorus invite`: a join token from the running daemon, with an invite code it issued.
pub fn invite(args: InviteArgs) -> anyhow::Result<ExitCode> {
    let body = json!({ "expires_secs": args.expires, "uses": args.uses });
    let answer = post(&args.at, "/v1/invite", body, |v| s(v, "token"))?;
    // Advice on stderr, so `TOKEN=$(chorus invite)` holds the token and nothing else.
    let uses = match args.uses {
        Some(1) => "one machine".to_owned(),
        Some(n) => format!("{n} machines"),
        None => "any number of machines".to_owned(),
    };
    eprintln!(
        "chorus: on the new machine: `chorus join TOKEN [FOLDER]`, then `chorus run [FOLDER]`.\n\
         chorus: the invite is good for {} and for {uses}, while this node runs to let them in.\n\
         chorus: the token holds the share secret: send it only to machines you trust.",
        shown_duration(args.expires)
    );
    Ok(answer)
}

/// `86400` as "24 h", `90` as "90 s".
fn shown_duration(secs: u64) -> String {
    match secs {
        s if s % 86400 == 0 && s >= 2 * 86400 => format!("{} days", s / 86400),
        s if s % 3600 == 0 => format!("{} h", s / 3600),
        s if s % 60 == 0 => format!("{} min", s / 60),
        s => format!("{s} s"),
    }
}

pub fn undo(at: query::Args) -> anyhow::Result<ExitCode> {
    post(&at, "/v1/undo", json!({}), |v| {
        format!(
            "undid version {}: the share is back to version {} ({} paths changed), as a new version",
            s(v, "undid"),
            s(v, "back_to"),
            s(v, "changed")
        )
    })
}

#[derive(clap::Args)]
pub struct RedoArgs {
    #[command(flatten)]
    at: query::Args,
    /// The redo entry (SEQ in `chorus conflicts`) to bring back; without it, take back the
    /// last `chorus undo`.
    entry: Option<u64>,
    /// Put the displaced change next to its file (NAME.redo-MAJOR.MINOR) even where it would
    /// fit in place, leaving what won as it is.
    #[arg(long, requires = "entry")]
    beside: bool,
}

pub fn redo(args: RedoArgs) -> anyhow::Result<ExitCode> {
    let body = match args.entry {
        Some(e) if args.beside => json!({"entry": e, "beside": true}),
        Some(e) => json!({"entry": e}),
        None => json!({}),
    };
    post(&args.at, "/v1/redo", body, |v| match v.get("entry") {
        Some(_) => format!(
            "brought back entry {} in {} ({})",
            s(v, "entry"),
            s(v, "path"),
            if v["in_place"] == Value::Bool(true) {
                "in place".to_owned()
            } else {
                format!(
                    "beside the file, as NAME.redo-MAJOR.MINOR, {}",
                    match v["beside_why"].as_str() {
                        Some("asked") => "as asked",
                        Some("context-changed") => "because the text around it changed since",
                        Some("file-changed") => "because the file changed since",
                        Some("file-gone") => "because the file is gone",
                        Some("not-a-file") => "because a folder is at its path now",
                        _ => "leaving what is there as it is",
                    }
                )
            }
        ),
        None => format!(
            "took back the undo: the share is at {} again",
            short(&s(v, "redone"))
        ),
    })
}

#[derive(clap::Args)]
pub struct RestoreArgs {
    #[command(flatten)]
    at: query::Args,
    /// The version: MAJOR.MINOR as `chorus log` shows it, or a version id (a unique prefix).
    version: String,
    /// Only this path (a file, or a directory with everything under it), relative to the share.
    path: Option<String>,
}

pub fn restore(args: RestoreArgs) -> anyhow::Result<ExitCode> {
    let body = json!({"version": args.version, "path": args.path});
    post(&args.at, "/v1/restore", body, |v| {
        format!(
            "restored {} from version {} ({} paths changed), as a new version",
            match &v["path"] {
                Value::String(p) => p.clone(),
                _ => "the share".into(),
            },
            s(v, "restored"),
            s(v, "changed")
        )
    })
}

#[derive(clap::Args)]
pub struct RekeyArgs {
    #[command(flatten)]
    at: query::Args,
    /// Go ahead: every other machine leaves the share until it is invited again.
    #[arg(long)]
    yes: bool,
}

/// `chorus rekey`, on the leader's machine: every other member is removed, every invite this
/// node issued is void, and `config.toml` gets a new secret, which the daemon uses from its
/// next start. Machines kept are invited again and rejoin with the new token.
pub fn rekey(args: RekeyArgs) -> anyhow::Result<ExitCode> {
    let state = args.at.state_dir()?;
    let path = state.join(chorus::config::CONFIG_FILE);
    let mut cfg = chorus::config::Config::load(&path)?;
    if !args.yes {
        anyhow::bail!(
            "`chorus rekey` removes every other machine from the share and makes a new secret; each machine you keep is then invited again. `chorus rekey --yes` goes ahead"
        );
    }
    let answer = client::post(&state, "/v1/members/evict-all", &json!({}), WITHIN)?;
    let v: Value = serde_json::from_slice(&answer).unwrap_or(Value::Null);
    let removed = v["removed"].as_array().map_or(0, Vec::len);
    cfg.secret = hex::encode(rand::random::<[u8; 32]>());
    cfg.invite.clear();
    cfg.save(&path)?;
    if args.at.json {
        println!("{}", json!({ "removed": v["removed"], "config": path }));
    } else {
        println!(
            "removed {removed} machines from the share and wrote a new secret to {}",
            path.display()
        );
    }
    eprintln!(
        "chorus: restart this daemon (stop it, then `chorus run`) to use the new secret; then, for each\n\
         chorus: machine you keep: `chorus invite` here, and on it: stop its daemon, `chorus join TOKEN PATH`, `chorus run PATH`."
    );
    Ok(ExitCode::SUCCESS)
}

#[derive(clap::Args)]
pub struct RemoveArgs {
    #[command(flatten)]
    at: query::Args,
    /// The member: its PeerId, or enough of its end to be unique (`chorus peers` lists them).
    peer: String,
}

pub fn remove(args: RemoveArgs) -> anyhow::Result<ExitCode> {
    post(
        &args.at,
        "/v1/members/remove",
        json!({"peer": args.peer}),
        |v| {
            format!(
                "removed {} from the share: no member lets it connect now (it keeps the secret: \
                 to shut it out for good, start a new share; see docs/security.md)",
                s(v, "removed")
            )
        },
    )
}

pub fn pause(at: query::Args) -> anyhow::Result<ExitCode> {
    post(&at, "/v1/pause", json!({}), |_| {
        "paused: the share is neither scanned nor written until `chorus resume`".into()
    })
}

#[derive(clap::Args)]
pub struct ResumeArgs {
    #[command(flatten)]
    at: query::Args,
    /// Also write a version the mass-delete guard holds (see `chorus status`).
    #[arg(long)]
    confirm: bool,
}

pub fn resume(args: ResumeArgs) -> anyhow::Result<ExitCode> {
    post(
        &args.at,
        "/v1/resume",
        json!({"confirm": args.confirm}),
        |v| match v.get("released") {
            Some(r) => format!(
                "resumed; wrote the held version {}",
                short(r.as_str().unwrap_or("-"))
            ),
            None => "resumed".into(),
        },
    )
}

/// `chorus watch`: the daemon's events, one line each (or one JSON object each), until it
/// stops or the command is interrupted.
pub fn watch(at: query::Args) -> anyhow::Result<ExitCode> {
    let mut out = std::io::stdout();
    client::events(&at.state_dir()?, |ev| {
        let line = if at.json {
            serde_json::to_string(&ev).unwrap_or_default()
        } else {
            format!("{} {:<12} {}", query::utc(ev.at_ms), ev.kind, ev.detail)
        };
        writeln!(out, "{line}").is_ok() && out.flush().is_ok()
    })?;
    Ok(ExitCode::SUCCESS)
}

#[derive(clap::Args)]
pub struct ShowArgs {
    #[command(flatten)]
    at: query::Args,
    /// The version: MAJOR.MINOR as `chorus log` shows it, or a version id (a unique prefix).
    version: String,
    /// The file, relative to the share (ignored for a document share).
    #[arg(default_value = "")]
    path: String,
}

/// Percent-encodes everything but unreserved characters (RFC 3986) and `/`.
pub fn encode_query_value(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                (b as char).to_string()
            }
            b => format!("%{b:02X}"),
        })
        .collect()
}

/// `chorus show VERSION PATH`: the file as it was in that version, on stdout.
pub fn show(args: ShowArgs) -> anyhow::Result<ExitCode> {
    let path = format!(
        "/v1/file?version={}&path={}",
        encode_query_value(&args.version),
        encode_query_value(&args.path)
    );
    let answer = client::get(&args.at.state_dir()?, &path)?;
    if args.at.json {
        let _ = std::io::stdout().write_all(&answer);
        return Ok(ExitCode::SUCCESS);
    }
    let v: Value = serde_json::from_slice(&answer)?;
    let bytes = match (&v["text"], &v["hex"]) {
        (Value::String(t), _) => t.clone().into_bytes(),
        (_, Value::String(h)) => hex::decode(h)?,
        _ => anyhow::bail!("the daemon's answer holds no file"),
    };
    let _ = std::io::stdout().write_all(&bytes);
    Ok(ExitCode::SUCCESS)
}
