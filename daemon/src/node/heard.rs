//! [`Heard`]: what the file watcher heard and the worker has not taken yet, gathered on the
//! watcher's thread. The worker is woken once per gathering, not sent a message per event: while
//! it writes a version of 100,000 files it hears its own writes (five events a file), and a
//! message for each, queued until it was done, grew the daemon by ~180 MB. Gathered, a burst
//! costs at most [`MAX_FOCUS_PATHS`] paths; beyond that it is "scan it all", as a full focus is
//! no cheaper.

use std::path::PathBuf;
use std::sync::Mutex;

use chorus_folder::focus::MAX_FOCUS_PATHS;
use chorus_folder::watcher::Change;

/// Changes heard since the worker last took them.
#[derive(Default)]
pub struct Heard {
    state: Mutex<Gathered>,
}

#[derive(Default)]
struct Gathered {
    /// Something was heard that the worker has not taken.
    any: bool,
    /// Too much, or the watcher could not say what: everything may have changed.
    unknown: bool,
    paths: Vec<PathBuf>,
}

impl Heard {
    /// Adds a change; true when the worker has to be woken (nothing was waiting before).
    pub fn add(&self, change: Change) -> bool {
        let mut g = self.state.lock().unwrap_or_else(|e| e.into_inner());
        match change {
            Change::Paths(paths) if !g.unknown => {
                g.paths.extend(paths);
                if g.paths.len() > MAX_FOCUS_PATHS {
                    g.unknown = true;
                    g.paths = Vec::new();
                }
            }
            Change::Paths(_) => {}
            Change::Unknown => {
                g.unknown = true;
                g.paths = Vec::new();
            }
        }
        !std::mem::replace(&mut g.any, true)
    }

    /// What was heard since the last take, if anything.
    pub fn take(&self) -> Option<Change> {
        let mut g = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let g = std::mem::take(&mut *g);
        if !g.any {
            None
        } else if g.unknown {
            Some(Change::Unknown)
        } else {
            Some(Change::Paths(g.paths))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths(n: usize) -> Change {
        Change::Paths((0..n).map(|i| PathBuf::from(format!("/s/f{i}"))).collect())
    }

    #[test]
    fn a_burst_wakes_the_worker_once_and_is_taken_whole() {
        let h = Heard::default();
        assert!(h.take().is_none());
        assert!(h.add(paths(2)), "the first change wakes the worker");
        assert!(!h.add(paths(3)), "later ones join it");
        match h.take() {
            Some(Change::Paths(p)) => assert_eq!(p.len(), 5),
            other => panic!("{other:?}"),
        }
        assert!(h.take().is_none());
        assert!(
            h.add(paths(1)),
            "after a take, the next change wakes it again"
        );
    }

    #[test]
    fn a_burst_beyond_the_focus_bound_is_a_full_scan_and_holds_no_paths() {
        let h = Heard::default();
        for _ in 0..1000 {
            h.add(paths(MAX_FOCUS_PATHS / 100));
        }
        assert!(h.state.lock().unwrap().paths.is_empty());
        assert!(matches!(h.take(), Some(Change::Unknown)));
        h.add(Change::Unknown);
        h.add(paths(1));
        assert!(matches!(h.take(), Some(Change::Unknown)));
    }
}
