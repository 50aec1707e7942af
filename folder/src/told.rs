//! What the log has said about the paths a scan could not take, so that each is said once
//! while it stays so, not at every scan (whole scans come every minute; a folder of a thousand
//! unreadable files wrote a thousand lines a minute):
//!
//! - **unreadable** paths (kept as last known): said again only once a scan that looked at the
//!   path found it readable in between (not when only why changed: the reason for a file too
//!   large names its size, which a growing log changes at every scan);
//! - **skipped** paths (a name that is not UTF-8, a FIFO or socket, a link whose target cannot
//!   be kept): said when the last scan's report did not list them, which a focused scan's
//!   report carries over from the last whole one.

use std::collections::HashSet;
use std::path::Path;

use chorus_chunking::RelPath;

use crate::focus::Focus;
use crate::scan::Skipped;

/// The unreadable paths the log has named.
#[derive(Debug, Default)]
pub(crate) struct Told {
    unreadable: HashSet<RelPath>,
}

impl Told {
    /// Warns of each path of `unknown` (a scan's unreadable paths, with why) not named since a
    /// scan found it readable; `focus` is what the scan looked at (`None`: everything).
    pub(crate) fn unreadable(&mut self, unknown: &[(RelPath, String)], focus: Option<&Focus>) {
        for (p, why) in unknown {
            if !self.unreadable.contains(p) {
                tracing::warn!(
                    path = %chorus_proto::shown(p.as_str()),
                    "cannot be read, kept as it was: {}",
                    chorus_proto::shown(why)
                );
            }
        }
        match focus {
            None => self.unreadable.clear(),
            Some(f) => self.unreadable.retain(|p| !f.covers(p)),
        }
        self.unreadable
            .extend(unknown.iter().map(|(p, _)| p.clone()));
    }

    /// Warns of each path of `found` (a scan's skipped paths) that `last` (the last scan's)
    /// did not have.
    pub(crate) fn skipped(found: &[Skipped], last: &[Skipped]) {
        let told: HashSet<&Path> = last.iter().map(|s| s.path.as_path()).collect();
        for s in found.iter().filter(|s| !told.contains(s.path.as_path())) {
            tracing::warn!(
                path = %chorus_proto::shown(&s.path.to_string_lossy()),
                "not synced: {}",
                chorus_proto::shown(&s.reason)
            );
        }
    }
}
