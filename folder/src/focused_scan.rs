//! Completing a focused scan: what it found where the watcher pointed, and what the folder
//! last knew everywhere else (entries, ignore rules, skipped paths).

use std::collections::HashSet;

use chorus_chunking::{Entry, RelPath};

use crate::focus::Focus;
use crate::scan::ScanReport;

/// A focused scan's `entries` completed with `disk` (what the folder last knew the disk held)
/// everywhere the scan did not look, and its `report` with the ignore rules and skipped paths
/// of the `last` full report for the rest of the share.
pub(crate) fn complete<'a>(
    focus: &Focus,
    mut entries: Vec<(RelPath, Entry)>,
    mut report: ScanReport,
    disk: impl Iterator<Item = (&'a RelPath, &'a Entry)>,
    last: &ScanReport,
) -> (Vec<(RelPath, Entry)>, ScanReport) {
    // Sets of paths asked about for every path of the share: a seeded fast hash.
    type Set<T> = HashSet<T, foldhash::fast::RandomState>;
    let found: Set<String> = report.routes.iter().map(|r| r.to_string()).collect();
    // Directories on the way to a change that are not directories any more: what was known
    // below them went with them.
    let missing: Vec<String> = focus
        .routes()
        .into_iter()
        .filter(|r| !found.contains(r))
        .collect();
    let below_missing = |p: &str| {
        missing
            .iter()
            .any(|m| p == m || (p.starts_with(m.as_str()) && p.as_bytes()[m.len()] == b'/'))
    };
    let looked_at =
        |p: &str| p.is_empty() || focus.covers_str(p) || found.contains(p) || below_missing(p);
    let have: Set<RelPath> = entries.iter().map(|(p, _)| p.clone()).collect();
    entries.extend(
        disk.filter(|(p, _)| !have.contains(*p) && !looked_at(p.as_str()))
            .map(|(p, e)| (p.clone(), e.clone())),
    );
    report.ignore_rules = last.ignore_rules.updated(&report.ignore_rules, looked_at);
    let fresh = std::mem::take(&mut report.skipped);
    // A name that is not UTF-8 is not a path `looked_at` can match: the scan's own finding of
    // it replaces the last one, so it is not listed twice.
    let found_again: HashSet<&std::path::Path> = fresh.iter().map(|s| s.path.as_path()).collect();
    let kept: Vec<_> = last
        .skipped
        .iter()
        .filter(|s| {
            !s.path.to_str().is_some_and(looked_at) && !found_again.contains(s.path.as_path())
        })
        .cloned()
        .collect();
    report.skipped = kept.into_iter().chain(fresh).collect();
    (entries, report)
}
