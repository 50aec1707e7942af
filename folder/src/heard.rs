//! [`Heard`]: the changes the file watcher heard and no scan has looked at yet, gathered on the
//! watcher's thread; their one owner. Whoever scans takes them: the daemon's worker when a
//! burst has settled, the [`DiskFolder`](crate::disk::DiskFolder) right before it writes a
//! version (so the check that nothing changed since the last scan looks at just those paths).
//! The worker is woken once per gathering, not sent a message per event: while it writes a version of 100,000 files it hears its own writes (five
//! events a file), and a message for each, queued until it was done, grew the daemon by
//! ~180 MB. Gathered, a burst costs at most [`MAX_FOCUS_PATHS`] distinct paths; beyond that it
//! is "scan it all", as a focus that wide is no cheaper. With them, whether a file may still be
//! being written ([`Heard::writing`]): the worker's debounce waits its whole delay only then.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Mutex;

use crate::focus::MAX_FOCUS_PATHS;
use crate::watcher::Change;

/// Changes heard and not scanned yet.
#[derive(Default)]
pub struct Heard {
    state: Mutex<Gathered>,
}

#[derive(Default)]
struct Gathered {
    /// A wake-up is on its way to the worker.
    waking: bool,
    /// Too much, or the watcher could not say what: everything may have changed.
    unknown: bool,
    /// What the watcher said last: a file of the share may still be being written.
    writing: bool,
    paths: BTreeSet<PathBuf>,
}

impl Gathered {
    fn gather(&mut self, change: Change) {
        match change {
            Change::Paths(paths) if !self.unknown => {
                self.paths.extend(paths);
                if self.paths.len() > MAX_FOCUS_PATHS {
                    self.unknown = true;
                    self.paths = BTreeSet::new();
                }
            }
            Change::Paths(_) => {}
            Change::Unknown => {
                self.unknown = true;
                self.paths = BTreeSet::new();
            }
        }
    }
}

impl Heard {
    fn lock(&self) -> std::sync::MutexGuard<'_, Gathered> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds a change, with whether a file may still be being written as the watcher heard
    /// it; true when the worker has to be woken (no wake-up is on its way).
    pub fn add(&self, change: Change, writing: bool) -> bool {
        let mut g = self.lock();
        g.gather(change);
        g.writing = writing;
        !std::mem::replace(&mut g.waking, true)
    }

    /// True while a file heard may still be being written: its writer has not closed it, or
    /// the watcher could not say what changed (then nothing tells that the writers are done).
    pub fn writing(&self) -> bool {
        let g = self.lock();
        g.writing || g.unknown
    }

    /// The worker got its wake-up: the next change wakes it again (so it knows when the
    /// latest change of a burst came).
    pub fn woken(&self) {
        self.lock().waking = false;
    }

    /// What to scan: the paths heard since the last take, or everything
    /// ([`Change::Unknown`]).
    pub fn take(&self) -> Change {
        let mut g = self.lock();
        let paths = std::mem::take(&mut g.paths);
        if std::mem::take(&mut g.unknown) {
            Change::Unknown
        } else {
            Change::Paths(paths.into_iter().collect())
        }
    }

    /// Gives back what a scan took and could not look at (the folder was unavailable): the
    /// next scan takes it again. Wakes no one (the scan that failed is retried).
    pub fn requeue(&self, change: Change) {
        self.lock().gather(change);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths(from: usize, n: usize) -> Change {
        Change::Paths(
            (from..from + n)
                .map(|i| PathBuf::from(format!("/s/f{i}")))
                .collect(),
        )
    }

    #[test]
    fn a_burst_wakes_the_worker_once_and_is_taken_whole() {
        let h = Heard::default();
        assert_eq!(h.take(), Change::Paths(Vec::new()));
        assert!(
            h.add(paths(0, 2), false),
            "the first change wakes the worker"
        );
        assert!(!h.add(paths(2, 3), false), "later ones join it");
        // The same paths heard again (a file's create, write and rename) count once.
        assert!(!h.add(paths(0, 5), false));
        h.woken();
        assert!(
            h.add(paths(5, 1), false),
            "once woken, the next change wakes it again"
        );
        match h.take() {
            Change::Paths(p) => assert_eq!(p.len(), 6),
            other => panic!("{other:?}"),
        }
        assert_eq!(h.take(), Change::Paths(Vec::new()));
    }

    #[test]
    fn it_tells_what_the_watcher_last_said_of_writers() {
        let h = Heard::default();
        assert!(!h.writing());
        h.add(paths(0, 1), true);
        assert!(h.writing(), "a file written and not closed");
        h.add(paths(0, 1), false);
        assert!(!h.writing(), "closed since");
    }

    #[test]
    fn a_burst_beyond_the_focus_bound_is_a_full_scan_and_holds_no_paths() {
        let h = Heard::default();
        for i in 0..100 {
            h.add(paths(i * 100, MAX_FOCUS_PATHS / 50), false);
        }
        assert!(h.lock().paths.is_empty());
        assert_eq!(h.take(), Change::Unknown);
        assert_eq!(h.take(), Change::Paths(Vec::new()), "taken");
        h.add(Change::Unknown, false);
        assert!(h.writing(), "lost track: its writers may be writing");
        h.add(paths(0, 1), false);
        assert_eq!(h.take(), Change::Unknown);
    }
}
