//! `chorus conflicts [SEQ]`: the redo stack, newest first, with a preview of each displaced
//! change; with SEQ, that change as a diff against what won (for a hunk, the winner's lines
//! against the displaced ones in their context; for a whole file, a unified diff when both
//! sides are short text, else their kinds and sizes). `--json` prints the socket's JSON (the
//! one entry with SEQ) and nothing else on stdout. What a person was shown (not `--json`)
//! counts as seen: `chorus status` no longer points at it.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;
use chorus::api::{Conflict, client};

use super::query::{self, table};
use chorus::api::diff;

#[derive(clap::Args)]
pub struct ConflictsArgs {
    #[command(flatten)]
    pub at: query::Args,
    /// Show this entry (SEQ in the table) as a diff against what won.
    pub seq: Option<u64>,
}

/// The longest preview in the table, in characters.
const PREVIEW_CHARS: usize = 48;

pub fn run(args: ConflictsArgs) -> anyhow::Result<ExitCode> {
    let dir = args.at.state_dir()?;
    let raw = client::get(&dir, "/v1/conflicts")?;
    let entries: Vec<Conflict> =
        serde_json::from_slice(&raw).context("the daemon's /v1/conflicts is not a list")?;
    // What a person is shown counts as seen: `chorus status` stops pointing at it (`--json`,
    // for scripts, does not).
    let shown = match args.at.json {
        true => None,
        false => args.seq.or(entries.iter().map(|c| c.seq).max()),
    };
    let text = match args.seq {
        None if args.at.json => String::from_utf8_lossy(&raw).into_owned(),
        None => list(entries),
        Some(seq) => {
            let Some(c) = entries.into_iter().find(|c| c.seq == seq) else {
                anyhow::bail!("no redo entry {seq}: `chorus conflicts` lists them");
            };
            if args.at.json {
                format!("{}\n", serde_json::to_string_pretty(&c)?)
            } else {
                eprintln!("chorus: `chorus redo {seq}` brings this change back");
                detail(&c)
            }
        }
    };
    // A closed pipe (`| head`) is not an error worth a message.
    let _ = std::io::stdout().write_all(text.as_bytes());
    if let Some(upto) = shown {
        let _ = client::post(
            &dir,
            "/v1/conflicts/seen",
            &serde_json::json!({ "upto": upto }),
            std::time::Duration::from_secs(5),
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// The table, newest first.
fn list(entries: Vec<Conflict>) -> String {
    if entries.is_empty() {
        return "no conflicts: the redo stack is empty\n".into();
    }
    let rows = entries
        .into_iter()
        .rev()
        .map(|c| {
            let preview = preview(&c);
            vec![
                c.seq.to_string(),
                c.accepted_major.to_string(),
                c.what,
                c.path.unwrap_or_else(|| "-".into()),
                c.displaced_from,
                c.displaced_by,
                preview,
            ]
        })
        .collect();
    table(
        &["SEQ", "IN", "WHAT", "PATH", "DISPLACED", "BY", "PREVIEW"],
        rows,
    )
}

/// A few words of the displaced change: its first line of text, or what it was.
fn preview(c: &Conflict) -> String {
    let d = &c.detail;
    match (c.what.as_str(), &c.preview) {
        ("deletion", _) => "(deleted the file)".into(),
        ("mode", _) => match &d.mode {
            Some(m) => format!("(set its permissions to {m})"),
            None => "(its permissions)".into(),
        },
        ("hunk", Some(t)) if t.is_empty() => "(deleted lines)".into(),
        (_, Some(t)) if looks_binary(t) => format!("(not text: {} bytes)", t.len()),
        (_, Some(t)) => first_line(t),
        (_, None) => match (d.displaced_kind.as_deref(), d.displaced_size) {
            (Some("symlink"), _) => "(a symlink)".into(),
            (_, Some(n)) => format!("(not shown: {n} bytes, not text or too long)"),
            _ => "(not shown: not text, or too long)".into(),
        },
    }
}

/// Valid UTF-8 that is not text all the same: control characters other than tabs and line
/// ends (a NUL, a run of 0x01 bytes).
fn looks_binary(text: &str) -> bool {
    text.chars()
        .any(|c| c.is_control() && !matches!(c, '\t' | '\n' | '\r'))
}

/// The first non-blank line, cut to [`PREVIEW_CHARS`], and how many lines follow.
fn first_line(text: &str) -> String {
    if text.is_empty() {
        return "(empty)".into();
    }
    let lines: Vec<&str> = text.lines().collect();
    let first = lines
        .iter()
        .find(|l| !l.trim().is_empty())
        .copied()
        .unwrap_or("");
    let clean: String = first
        .trim()
        .chars()
        .map(|ch| if ch.is_control() { ' ' } else { ch })
        .collect();
    let mut shown: String = clean.chars().take(PREVIEW_CHARS).collect();
    if clean.chars().count() > PREVIEW_CHARS {
        shown.push('…');
    }
    match lines.len() {
        0 | 1 => shown,
        n => format!("{shown} (+{} lines)", n - 1),
    }
}

/// One entry: what it was, then the diff from what won to what was displaced.
fn detail(c: &Conflict) -> String {
    let d = &c.detail;
    let path = c.path.clone().unwrap_or_else(|| "(path unknown)".into());
    let mut out = format!(
        "entry {}: {} of {path}, displaced by the merge of version {}: change {} lost to change {}\n",
        c.seq,
        match c.what.as_str() {
            "hunk" => "a hunk",
            "whole" => "the whole file",
            "deletion" => "the deletion",
            "mode" => "the permission bits",
            other => other,
        },
        c.accepted_major,
        c.displaced_from,
        c.displaced_by
    );
    let header = format!(
        "--- {path}\t(what won: {})\n+++ {path}\t(displaced: {})\n",
        c.displaced_by, c.displaced_from
    );
    let kind_size = |kind: Option<&str>, size: Option<u64>| match (kind, size) {
        (Some("dir"), _) => "a directory".to_owned(),
        (Some("symlink"), _) => "a symlink".to_owned(),
        (_, Some(n)) => format!("a file of {n} bytes"),
        _ => "content not shown".to_owned(),
    };
    match c.what.as_str() {
        "hunk" => match (&d.kept, &c.preview) {
            (Some(kept), Some(displaced)) => {
                let before = d.before.clone().unwrap_or_default();
                let after = d.after.clone().unwrap_or_default();
                let first = d
                    .line
                    .unwrap_or(1)
                    .saturating_sub(before.lines().count())
                    .max(1);
                let old = format!("{before}{kept}{after}");
                let new = format!("{before}{displaced}{after}");
                diff_or_sizes(&mut out, &header, &old, &new, first);
            }
            _ => out.push_str("the hunk's text is not shown (not text, or over 64 KiB)\n"),
        },
        "whole" => match (&d.kept, &c.preview) {
            (Some(kept), Some(displaced)) => diff_or_sizes(&mut out, &header, kept, displaced, 1),
            _ => out.push_str(&format!(
                "what won: {}\ndisplaced: {}\n",
                kind_size(d.kept_kind.as_deref(), d.kept_size),
                kind_size(d.displaced_kind.as_deref(), d.displaced_size)
            )),
        },
        "deletion" => {
            out.push_str(
                "the displaced change deleted the file; what won changed it and kept it\n",
            );
            match &d.kept {
                Some(kept) => diff_or_sizes(&mut out, &header, kept, "", 1),
                None => out.push_str(&format!(
                    "what won: {}\n",
                    kind_size(d.kept_kind.as_deref(), d.kept_size)
                )),
            }
        }
        "mode" => out.push_str(&match &d.mode {
            Some(m) => {
                format!("the displaced change set the permissions to {m}; what won kept others\n")
            }
            None => "the displaced change set the permissions otherwise\n".into(),
        }),
        _ => {}
    }
    out
}

/// A unified diff from `old` to `new` under `header`, or their sizes when they are not text
/// or too long to diff.
fn diff_or_sizes(out: &mut String, header: &str, old: &str, new: &str, first_line: usize) {
    if looks_binary(old) || looks_binary(new) {
        out.push_str(&format!(
            "not text: what won is {} bytes, the displaced content {} bytes\n",
            old.len(),
            new.len()
        ));
        return;
    }
    match diff::unified(old, new, first_line) {
        Some(d) if d.is_empty() => out.push_str("(no difference in the text: the same lines)\n"),
        Some(d) => {
            out.push_str(header);
            out.push_str(&d);
        }
        None => out.push_str(&format!(
            "too long to diff here: what won is {} bytes, the displaced text {} bytes\n",
            old.len(),
            new.len()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn previews_are_one_short_line() {
        assert_eq!(first_line("hello\nworld\n"), "hello (+1 lines)");
        assert_eq!(first_line("\n  x\ty  \n"), "x y (+1 lines)");
        let long = "a".repeat(100);
        assert_eq!(first_line(&long), format!("{}…", "a".repeat(PREVIEW_CHARS)));
        assert_eq!(first_line(""), "(empty)");
        assert!(looks_binary("\u{1}\u{1}") && !looks_binary("a\tb\r\n"));
    }
}
