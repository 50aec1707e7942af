//! The file watcher: inotify (through `notify`) tells the loop that the share changed, and a
//! [`Debounce`] decides when to scan: once the share has been quiet for the debounce delay, or
//! at the latest [`MAX_DELAY_FACTOR`] delays after the first change of a burst (so a file
//! written without pause for minutes is still synced meanwhile). The periodic full rescan, for
//! what a watcher cannot see (network filesystems, an overflowed event queue), is the loop's.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use notify::{RecursiveMode, Watcher};

use crate::share::Share;

/// A burst of changes is scanned at the latest this many debounce delays after it began.
pub const MAX_DELAY_FACTOR: u32 = 20;

/// When to scan, given when changes were seen.
#[derive(Debug, Clone)]
pub struct Debounce {
    delay: Duration,
    /// First and latest change of the burst not scanned yet.
    burst: Option<(Instant, Instant)>,
}

impl Debounce {
    pub fn new(delay: Duration) -> Self {
        Debounce { delay, burst: None }
    }

    /// A change was seen at `now`.
    pub fn changed(&mut self, now: Instant) {
        self.burst = Some(match self.burst {
            Some((first, _)) => (first, now),
            None => (now, now),
        });
    }

    /// When the pending burst should be scanned, if there is one.
    pub fn due(&self) -> Option<Instant> {
        self.burst
            .map(|(first, last)| (last + self.delay).min(first + self.delay * MAX_DELAY_FACTOR))
    }

    /// The burst was scanned.
    pub fn scanned(&mut self) {
        self.burst = None;
    }
}

/// What the watcher saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// These paths (absolute) changed: created, modified, removed, or renamed from or to.
    Paths(Vec<PathBuf>),
    /// Something changed, the watcher cannot say what (its queue overflowed): scan it all.
    Unknown,
}

/// A running watcher; it stops when dropped.
pub struct FolderWatcher {
    _inner: notify::RecommendedWatcher,
}

/// Watches the share; every relevant change calls `on_change` with what changed (on the
/// watcher's own thread; it should only pass it on, for example on a channel). The share and the state dir must be named by canonical paths, as
/// inotify names what changed. A share the kernel cannot watch (inotify limits) is an error that
/// says how to raise them; the loop then falls back on its periodic rescan.
pub fn watch(
    share: &Share,
    state_dir: &Path,
    on_change: impl Fn(Change) + Send + 'static,
) -> Result<FolderWatcher, String> {
    let filter_share = share.clone();
    let state: PathBuf = state_dir.to_owned();
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        let change = match res {
            Ok(ev) if ev.need_rescan() => Change::Unknown,
            // Opening, reading and closing without writing change nothing, and a scan does all
            // three to every directory it lists: heard as changes, each scan would start the
            // next one.
            Ok(ev) if ev.kind.is_access() => return,
            Ok(ev) => {
                let paths: Vec<PathBuf> = ev
                    .paths
                    .into_iter()
                    .filter(|p| filter_share.concerns(p, &state))
                    .collect();
                if paths.is_empty() {
                    return;
                }
                Change::Paths(paths)
            }
            // The queue overflowed or the watch broke: scan to be sure.
            Err(_) => Change::Unknown,
        };
        on_change(change);
    })
    .map_err(|e| format!("cannot start the file watcher: {e}"))?;
    let mode = match share {
        Share::Folder(_) => RecursiveMode::Recursive,
        Share::Document(_) => RecursiveMode::NonRecursive,
    };
    watcher.watch(share.watch_root(), mode).map_err(|e| {
        format!(
            "cannot watch {} ({e}); changes are picked up by the periodic rescan only. \
             On Linux, raise fs.inotify.max_user_watches (sysctl) for large folders",
            share.watch_root().display()
        )
    })?;
    Ok(FolderWatcher { _inner: watcher })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_is_scanned_once_quiet_or_after_the_cap() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut d = Debounce::new(ms(100));
        assert_eq!(d.due(), None);
        d.changed(t0);
        assert_eq!(d.due(), Some(t0 + ms(100)));
        d.changed(t0 + ms(80));
        assert_eq!(d.due(), Some(t0 + ms(180)));
        // Changes without pause: the cap, 20 delays after the first.
        for i in 0..100 {
            d.changed(t0 + ms(50 * i));
        }
        assert_eq!(d.due(), Some(t0 + ms(2000)));
        d.scanned();
        assert_eq!(d.due(), None);
    }
}
