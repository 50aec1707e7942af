//! Raft timing that follows the round trips measured (`timing = "auto"`, the default): while
//! the daemon runs it samples the slowest voter's ping round trip every 10 s and keeps the
//! median of the last 30 samples (5 min; a spike, such as a path saturated by a large transfer,
//! does not count) in the state dir, and at the next start Raft runs with the timing for it
//! (`ElectionConfig::for_round_trip`: the LAN timing on a LAN, 2 s and 4.3-5.3 s at 150 ms,
//! about the WAN timing at 700 ms). openraft fixes its timing when it starts, so a change takes
//! effect then.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chorus_election::{ElectionNode, node_id_of};

use crate::net::NetHandle;

/// The file in the state dir: the round trip, in milliseconds, as text.
const FILE: &str = "round-trip";
/// How often the slowest voter's round trip is sampled.
const SAMPLE_EVERY: Duration = Duration::from_secs(10);
/// Samples the median is taken over.
const SAMPLES: usize = 30;

/// The round trip recorded in `state_dir` by an earlier run, if any.
pub fn load(state_dir: &Path) -> Option<u64> {
    std::fs::read_to_string(state_dir.join(FILE))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Samples the slowest voter's round trip and records the median in `state_dir` when it moved
/// by more than a quarter (or was never recorded).
pub fn record(state_dir: PathBuf, election: Arc<ElectionNode>, net: NetHandle) {
    tokio::spawn(async move {
        let mut recorded = load(&state_dir);
        let mut samples: VecDeque<u64> = VecDeque::new();
        let mut tick = tokio::time::interval(SAMPLE_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let voters = election.view().voters;
            let slowest = net
                .peer_stats()
                .iter()
                .filter(|(p, _)| voters.contains(&node_id_of(&p.to_bytes())))
                .filter_map(|(_, s)| s.rtt)
                .max();
            let Some(slowest) = slowest else { continue };
            if samples.len() == SAMPLES {
                samples.pop_front();
            }
            samples.push_back(slowest.as_millis() as u64);
            let median = median(&samples);
            let moved = recorded.is_none_or(|r| median.abs_diff(r) * 4 > r.max(20));
            if moved {
                let path = state_dir.join(FILE);
                let tmp = state_dir.join(format!("{FILE}.tmp"));
                let written = std::fs::write(&tmp, format!("{median}\n"))
                    .and_then(|()| std::fs::rename(&tmp, &path));
                match written {
                    Ok(()) => {
                        tracing::debug!(
                            round_trip_ms = median,
                            "recorded the slowest voter's round trip"
                        );
                        recorded = Some(median);
                    }
                    Err(e) => {
                        tracing::warn!(path = %path.display(), "cannot record the round trip ({e}); Raft keeps its timing")
                    }
                }
            }
        }
    });
}

fn median(samples: &VecDeque<u64>) -> u64 {
    let mut v: Vec<u64> = samples.iter().copied().collect();
    v.sort_unstable();
    v[v.len() / 2]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spike_does_not_move_the_median() {
        let mut s: VecDeque<u64> = [3, 4, 3, 5, 4].into_iter().collect();
        assert_eq!(median(&s), 4);
        s.push_back(2500);
        assert_eq!(median(&s), 4);
    }

    #[test]
    fn a_recorded_round_trip_is_read_back() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(load(dir.path()), None);
        std::fs::write(dir.path().join(FILE), "312\n").unwrap();
        assert_eq!(load(dir.path()), Some(312));
    }
}
