//! Where `chorus` logs go and what they show: stderr, through `tracing`, one line per thing the
//! user should know (chorus at INFO, libraries at WARN), colours only on a terminal.
//!
//! openraft reports the ordinary weather of a cluster (a heartbeat that timed out under load, a
//! vote request to a peer that is restarting, a replication stream retried) as WARN and ERROR;
//! none of it needs the user, and chorus says what does (a leader lost, a node unreachable) in
//! its own words. So openraft is heard only when asked for at debug level: `RUST_LOG=debug`, or
//! a directive that names it (`RUST_LOG=warn,openraft=info`).

use std::io::IsTerminal;

/// The filter used when neither `CHORUS_LOG` nor `RUST_LOG` says otherwise.
pub const DEFAULT_FILTER: &str = "warn,chorus=info";

/// The filter directives: `CHORUS_LOG`, else `RUST_LOG`, else [`DEFAULT_FILTER`]; openraft
/// is silenced unless they ask for it by name or for everything at debug or trace.
pub fn filter_spec(chorus_log: Option<&str>, rust_log: Option<&str>) -> String {
    let given = [chorus_log, rust_log]
        .into_iter()
        .flatten()
        .map(str::trim)
        .find(|s| !s.is_empty())
        .unwrap_or(DEFAULT_FILTER);
    let names_openraft = given.contains("openraft");
    // A bare level is the level of everything not named otherwise.
    let everything_verbose = given
        .split(',')
        .map(|d| d.trim().to_ascii_lowercase())
        .any(|d| d == "debug" || d == "trace");
    if names_openraft || everything_verbose {
        given.to_owned()
    } else {
        format!("{given},openraft=off")
    }
}

/// True when log lines may carry colour codes: stderr is a terminal and `NO_COLOR` is not set
/// (https://no-color.org).
pub fn colour(no_color: Option<&str>) -> bool {
    std::io::stderr().is_terminal() && no_color.is_none_or(str::is_empty)
}

/// Sends log lines to stderr, filtered as [`filter_spec`] says.
pub fn init() {
    let var = |name| std::env::var(name).ok();
    let spec = filter_spec(var("CHORUS_LOG").as_deref(), var("RUST_LOG").as_deref());
    let filter = tracing_subscriber::EnvFilter::try_new(&spec).unwrap_or_else(|e| {
        eprintln!("chorus: ignoring the log filter `{spec}` ({e}); using `{DEFAULT_FILTER}`");
        tracing_subscriber::EnvFilter::new(filter_spec(None, None))
    });
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour(var("NO_COLOR").as_deref()))
        .with_writer(std::io::stderr)
        .init();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openraft_is_heard_only_when_asked_for() {
        assert_eq!(filter_spec(None, None), "warn,chorus=info,openraft=off");
        assert_eq!(filter_spec(None, Some("info")), "info,openraft=off");
        assert_eq!(
            filter_spec(None, Some("chorus=debug")),
            "chorus=debug,openraft=off"
        );
        assert_eq!(filter_spec(None, Some("debug")), "debug");
        assert_eq!(
            filter_spec(None, Some("warn,openraft=info")),
            "warn,openraft=info"
        );
        // CHORUS_LOG wins over RUST_LOG; an empty one counts as unset.
        assert_eq!(filter_spec(Some("trace"), Some("warn")), "trace");
        assert_eq!(filter_spec(Some(" "), Some("error")), "error,openraft=off");
    }
}
