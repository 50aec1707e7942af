//! `chorus status --watch`: the daemon's state and transfer rates, kept on screen. On a
//! terminal, a line redrawn in place with a progress bar per version being fetched; when
//! stdout is not a terminal (piped, redirected), plain lines instead, one per second: no
//! cursor movement, no bars, no colour, so `chorus status --watch | tee log` and `grep` work.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use chorus::api::{Status, Traffic, client};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::format::{short, size, utc};
use super::socket::Args;

/// How often a terminal is redrawn.
const REDRAW: Duration = Duration::from_millis(500);
/// How often a plain line is written.
const LINE_EVERY: Duration = Duration::from_secs(1);

pub fn run(at: &Args) -> anyhow::Result<ExitCode> {
    let dir = at.state_dir()?;
    if std::io::stdout().is_terminal() {
        live(&dir)
    } else {
        plain(&dir)
    }
}

/// What the status says, in a few words.
fn state(s: &Status) -> &'static str {
    if s.paused {
        "paused"
    } else if s.held.is_some() {
        "a version is held: `chorus resume --confirm`"
    } else if s.pending_local.is_some() {
        "local changes waiting for the leader"
    } else if s.settled {
        "in sync"
    } else {
        "catching up"
    }
}

/// Upload and download rates since the last look.
fn rates(s: &Status, last: &Option<(Traffic, Instant)>, now: Instant) -> String {
    let rate = |new: u64, old: u64, dt: f64| size((new.saturating_sub(old) as f64 / dt) as u64);
    match last {
        Some((t, at)) => {
            let dt = now.duration_since(*at).as_secs_f64().max(0.001);
            format!(
                "up {}/s, down {}/s",
                rate(s.traffic.sync_sent, t.sync_sent, dt),
                rate(s.traffic.sync_received, t.sync_received, dt)
            )
        }
        None => "measuring".into(),
    }
}

/// The summary line: role, head, state, peers, rates.
fn summary(s: &Status, rates: &str) -> String {
    format!(
        "{} (term {}), head {}: {}; {}/{} peers; {rates}",
        s.role,
        s.term,
        s.head.number,
        state(s),
        s.peers_connected,
        s.peers
    )
}

/// Plain lines: a timestamped summary, then one indented line per fetch. Stops quietly when
/// the reader goes away (`| head`).
fn plain(dir: &std::path::Path) -> anyhow::Result<ExitCode> {
    let mut out = std::io::stdout().lock();
    let mut last: Option<(Traffic, Instant)> = None;
    loop {
        let s: Status = client::get_json(dir, "/v1/status")?;
        let now = Instant::now();
        let wall = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let mut text = format!("{} {}\n", utc(wall), summary(&s, &rates(&s, &last, now)));
        for t in &s.transfers {
            let percent = (t.received * 100).checked_div(t.chunks).unwrap_or(100);
            text.push_str(&format!(
                "  fetching {} from {}: {} of {} chunks ({percent}%)\n",
                short(&t.version),
                short(&t.peer),
                t.received,
                t.chunks
            ));
        }
        if out
            .write_all(text.as_bytes())
            .and_then(|()| out.flush())
            .is_err()
        {
            return Ok(ExitCode::SUCCESS);
        }
        last = Some((s.traffic, now));
        std::thread::sleep(LINE_EVERY);
    }
}

/// A line redrawn in place and a bar per fetch, on the terminal that is stdout.
fn live(dir: &std::path::Path) -> anyhow::Result<ExitCode> {
    let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stdout());
    let line = multi.add(ProgressBar::new_spinner());
    line.set_style(ProgressStyle::with_template("{spinner} {msg}")?);
    let bar_style = ProgressStyle::with_template("  {msg:<40} [{bar:30}] {pos}/{len} chunks")?
        .progress_chars("=> ");
    let mut bars: HashMap<(String, String), ProgressBar> = HashMap::new();
    let mut last: Option<(Traffic, Instant)> = None;
    loop {
        let s: Status = match client::get_json(dir, "/v1/status") {
            Ok(s) => s,
            Err(e) => {
                line.abandon_with_message(e.to_string());
                return Ok(ExitCode::from(1));
            }
        };
        let now = Instant::now();
        line.set_message(summary(&s, &rates(&s, &last, now)));
        line.tick();
        let mut seen = Vec::new();
        for t in &s.transfers {
            let key = (t.peer.clone(), t.version.clone());
            let bar = bars.entry(key.clone()).or_insert_with(|| {
                let b = multi.add(ProgressBar::new(t.chunks as u64));
                b.set_style(bar_style.clone());
                b.set_message(format!("{} from {}", short(&t.version), short(&t.peer)));
                b
            });
            bar.set_length(t.chunks as u64);
            bar.set_position(t.received as u64);
            seen.push(key);
        }
        bars.retain(|k, b| {
            let keep = seen.contains(k);
            if !keep {
                b.finish_and_clear();
            }
            keep
        });
        last = Some((s.traffic, now));
        std::thread::sleep(REDRAW);
    }
}
