//! What a benchmark run measured, kept as the raw figure of every run so the report can show
//! the median with the min and max. Saved as JSON after a run, so a report can be rendered
//! again without measuring again.

use serde::{Deserialize, Serialize};

/// One tool in one measured phase: a figure per run.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ToolRow {
    pub tool: String,
    /// Bytes from the changed side to the other, and back.
    pub fwd: Vec<f64>,
    pub back: Vec<f64>,
    /// Seconds from the change until the other side holds it.
    pub secs: Vec<f64>,
    /// Why a run failed, or why the tool was not run.
    pub failures: Vec<String>,
}

/// A measured phase of a scenario: a table row per tool.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PhaseResult {
    pub key: String,
    pub title: String,
    pub rows: Vec<ToolRow>,
}

/// Peak RSS of a tool over a whole scenario (the largest process), per run, in bytes.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RssRow {
    pub scenario: String,
    pub tool: String,
    pub values: Vec<f64>,
    pub failures: Vec<String>,
}

/// Edit-to-visible latency of a daemon, per run, plus every sample for the distribution.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct LatencyRow {
    pub tool: String,
    pub p50_ms: Vec<f64>,
    pub p99_ms: Vec<f64>,
    pub samples_ms: Vec<f64>,
    /// RSS (bytes) of the largest node idle with a small folder, and bytes per second on the
    /// wire between idle nodes right after the group formed ...
    pub idle_rss: Vec<f64>,
    pub idle_bps: Vec<f64>,
    /// ... and in the steady state, from 90 s after the start (absent from older runs).
    #[serde(default)]
    pub idle_bps_steady: Vec<f64>,
    pub failures: Vec<String>,
}

/// Everything one run of the benchmark measured.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Results {
    pub phases: Vec<PhaseResult>,
    pub rss: Vec<RssRow>,
    pub latency: Vec<LatencyRow>,
    /// Facts about the run (data sizes, settings), one line each.
    pub notes: Vec<String>,
    /// How the run was made (machine, versions, methods), one line each.
    #[serde(default)]
    pub meta: Vec<String>,
}

impl Results {
    /// Takes in a later run of some scenarios: its phases, RSS rows and latency rows replace
    /// those of the same scenarios here; its notes are added, and its first meta line is kept
    /// as where the re-measured figures come from.
    pub fn merge(&mut self, later: Results) {
        let scenarios: Vec<String> = later.rss.iter().map(|r| r.scenario.clone()).collect();
        self.rss.retain(|r| !scenarios.contains(&r.scenario));
        self.rss.extend(later.rss);
        for p in later.phases {
            match self.phases.iter().position(|q| q.key == p.key) {
                Some(i) => self.phases[i] = p,
                None => self.phases.push(p),
            }
        }
        if !later.latency.is_empty() {
            self.latency = later.latency;
        }
        for n in later.notes {
            if !self.notes.contains(&n) {
                self.notes.push(n);
            }
        }
        if let Some(m) = later.meta.first() {
            let names = scenarios.iter().fold(Vec::new(), |mut v, s| {
                if !v.contains(s) {
                    v.push(s.clone());
                }
                v
            });
            self.meta.push(format!(
                "Re-measured in a later run ({}): {m}",
                names.join(", ")
            ));
        }
    }

    pub fn phase(&mut self, key: &str, title: &str) -> &mut PhaseResult {
        if let Some(i) = self.phases.iter().position(|p| p.key == key) {
            return &mut self.phases[i];
        }
        self.phases.push(PhaseResult {
            key: key.into(),
            title: title.into(),
            rows: Vec::new(),
        });
        self.phases.last_mut().expect("just pushed")
    }

    pub fn rss_row(&mut self, scenario: &str, tool: &str) -> &mut RssRow {
        if let Some(i) = self
            .rss
            .iter()
            .position(|r| r.scenario == scenario && r.tool == tool)
        {
            return &mut self.rss[i];
        }
        self.rss.push(RssRow {
            scenario: scenario.into(),
            tool: tool.into(),
            ..Default::default()
        });
        self.rss.last_mut().expect("just pushed")
    }

    pub fn latency_row(&mut self, tool: &str) -> &mut LatencyRow {
        if let Some(i) = self.latency.iter().position(|r| r.tool == tool) {
            return &mut self.latency[i];
        }
        self.latency.push(LatencyRow {
            tool: tool.into(),
            ..Default::default()
        });
        self.latency.last_mut().expect("just pushed")
    }
}

impl PhaseResult {
    pub fn row(&mut self, tool: &str) -> &mut ToolRow {
        if let Some(i) = self.rows.iter().position(|r| r.tool == tool) {
            return &mut self.rows[i];
        }
        self.rows.push(ToolRow {
            tool: tool.into(),
            ..Default::default()
        });
        self.rows.last_mut().expect("just pushed")
    }
}
