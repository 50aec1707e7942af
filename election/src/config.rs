//! Election timing and membership limits: LAN defaults, WAN settings, and eager timing for
//! in-memory tests.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// How a node elects and replicates. All times in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ElectionConfig {
    /// Leader heartbeat interval. openraft also times AppendEntries out after this long, which
    /// is why log entries stay small (headers only; content moves over the sync protocol).
    pub heartbeat_ms: u64,
    /// Election timeout, drawn uniformly from [min, max) per term.
    pub election_timeout_min_ms: u64,
    pub election_timeout_max_ms: u64,
    /// Deadline for receiving one snapshot chunk.
    pub install_snapshot_timeout_ms: u64,
    /// Voters at most; nodes that join beyond this stay learners.
    pub max_voters: usize,
    /// Build a snapshot once this many entries were applied since the last one.
    pub snapshot_every: u64,
}

impl ElectionConfig {
    /// A LAN: a heartbeat every 2 s, election timeout 4–5 s. An idle group is nearly silent
    /// (a heartbeat is one request-response round of about a kilobyte of IP traffic, most of it
    /// TCP, yamux and noise framing); log entries still replicate at once, heartbeats only say
    /// "still here". Failover does not wait on them: a daemon that dies closes its
    /// connections, and the followers campaign as soon as a redial fails (well under a
    /// second); a machine that vanishes silently is noticed once the leader lease (the election
    /// timeout's maximum) runs out, about 5 s (see `lookout`).
    pub const fn lan() -> Self {
        ElectionConfig {
            heartbeat_ms: 2000,
            election_timeout_min_ms: 4000,
            election_timeout_max_ms: 5000,
            install_snapshot_timeout_ms: 10_000,
            max_voters: 5,
            snapshot_every: 1000,
        }
    }

    /// Eager timing for in-memory clusters (tests, simulations, benchmarks), where no
    /// connection closes to say a node is gone: heartbeat 50 ms, election 150–300 ms.
    #[cfg(any(test, feature = "test-util"))]
    pub const fn eager() -> Self {
        ElectionConfig {
            heartbeat_ms: 50,
            election_timeout_min_ms: 150,
            election_timeout_max_ms: 300,
            install_snapshot_timeout_ms: 10_000,
            max_voters: 5,
            snapshot_every: 1000,
        }
    }

    /// A WAN with round trips up to ~700 ms (openraft gives an AppendEntries one heartbeat
    /// interval): heartbeat 2 s, election 6–8 s, snapshot chunks allowed 60 s. A slow or lossy
    /// link is not mistaken for a dead leader; a leader whose daemon dies is still replaced at
    /// once (its connections close), a silent one after about 8 s.
    pub const fn wan() -> Self {
        ElectionConfig {
            heartbeat_ms: 2000,
            election_timeout_min_ms: 6000,
            election_timeout_max_ms: 8000,
            install_snapshot_timeout_ms: 60_000,
            max_voters: 5,
            snapshot_every: 1000,
        }
    }

    /// Timing for a group whose slowest path to a voter has round trip `rtt_ms` (measured),
    /// within bounds: the LAN timing at 0, 2 s and 4.3-5.3 s at 150 ms, about the WAN timing at
    /// 700 ms, and at most a 10 s heartbeat and a 31 s election timeout. openraft gives an AppendEntries one
    /// heartbeat interval, so the heartbeat stays at least four round trips; the election
    /// timeout at least two heartbeats and two round trips, so a slow path is never taken for
    /// a dead leader, and a LAN group keeps the LAN timing.
    pub fn for_round_trip(rtt_ms: u64) -> Self {
        let lan = Self::lan();
        let rtt = rtt_ms.min(5_000);
        let heartbeat = (4 * rtt).clamp(lan.heartbeat_ms, 10_000);
        let min = (2 * heartbeat + 2 * rtt).clamp(lan.election_timeout_min_ms, 30_000);
        let max = (min + rtt.max(1_000)).min(31_000);
        ElectionConfig {
            heartbeat_ms: heartbeat,
            election_timeout_min_ms: min,
            election_timeout_max_ms: max,
            install_snapshot_timeout_ms: (20 * rtt).clamp(lan.install_snapshot_timeout_ms, 60_000),
            ..lan
        }
    }

    /// The openraft config, validated.
    pub fn to_openraft(&self) -> Result<Arc<openraft::Config>, crate::ElectionError> {
        let c = openraft::Config {
            cluster_name: "chorus".into(),
            heartbeat_interval: self.heartbeat_ms,
            election_timeout_min: self.election_timeout_min_ms,
            election_timeout_max: self.election_timeout_max_ms,
            install_snapshot_timeout: self.install_snapshot_timeout_ms,
            snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(self.snapshot_every),
            max_in_snapshot_log_to_keep: self.snapshot_every,
            // The lookout keeps the election timer, and asks a pre-vote before a campaign.
            enable_elect: false,
            ..Default::default()
        };
        if self.max_voters == 0 {
            return Err(crate::ElectionError::Config(
                "max_voters must be at least 1".into(),
            ));
        }
        c.validate()
            .map(Arc::new)
            .map_err(|e| crate::ElectionError::Config(e.into()))
    }
}

impl Default for ElectionConfig {
    fn default() -> Self {
        Self::lan()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timing_follows_the_round_trip_within_bounds() {
        assert_eq!(ElectionConfig::for_round_trip(0), ElectionConfig::lan());
        assert_eq!(ElectionConfig::for_round_trip(150), {
            let mut c = ElectionConfig::lan();
            c.election_timeout_min_ms = 4300;
            c.election_timeout_max_ms = 5300;
            c
        });
        let wan = ElectionConfig::for_round_trip(700);
        assert!(
            (6000..=8000).contains(&wan.election_timeout_min_ms),
            "{wan:?}"
        );
        let mut last = ElectionConfig::for_round_trip(0);
        for rtt in (0..20_000).step_by(50) {
            let c = ElectionConfig::for_round_trip(rtt);
            assert!(c.to_openraft().is_ok(), "{rtt}: {c:?}");
            assert!(c.heartbeat_ms >= 4 * rtt.min(2_500), "{rtt}: {c:?}");
            assert!(
                c.election_timeout_min_ms >= 2 * c.heartbeat_ms,
                "{rtt}: {c:?}"
            );
            assert!(c.election_timeout_max_ms > c.election_timeout_min_ms);
            assert!(c.heartbeat_ms <= 10_000 && c.election_timeout_max_ms <= 31_000);
            assert!(c.heartbeat_ms >= last.heartbeat_ms);
            assert!(c.election_timeout_min_ms >= last.election_timeout_min_ms);
            last = c;
        }
    }
}
