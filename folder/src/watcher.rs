//! The file watcher: inotify tells the loop that the share changed (the watches themselves are
//! kept by `watch_tree`), and a [`Debounce`] decides when to scan: once the share has been
//! quiet for the debounce delay, or at the latest [`MAX_DELAY_FACTOR`] delays after the first
//! change of a burst (so a file written without pause for minutes is still synced meanwhile).
//! A burst whose writers have all closed their files ([`Writers`]: a save, an append, a
//! rename into place) is complete as far as the kernel can tell: it is scanned after a fifth of
//! the delay ([`SETTLE_DIVISOR`]) instead of the whole delay.
//! The periodic full rescan, for what a watcher cannot see (network filesystems, an overflowed
//! event queue), is the loop's.

use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use inotify::{EventMask, Inotify};
use rustix::event::{PollFd, PollFlags};

use crate::focus::MAX_FOCUS_PATHS;
use crate::share::Share;
use crate::watch_tree::{self, WatchTree};

/// A burst of changes is scanned at the latest this many debounce delays after it began.
pub const MAX_DELAY_FACTOR: u32 = 20;
/// A burst whose files were all closed by their writers is scanned once quiet for the delay
/// divided by this (20 ms of the default 100 ms).
pub const SETTLE_DIVISOR: u32 = 5;
/// A file written and not closed for this long no longer counts as being written: its writer
/// holds it open and idle (a log, a database), or it was never going to be closed (a hard
/// link, a symlink made). Bursts after it are not held to the whole delay for it.
const WRITER_IDLE: Duration = Duration::from_secs(2);

/// When to scan, given when changes were seen and whether a file is still being written.
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

    /// When the pending burst should be scanned, if there is one: `writing` is true while a
    /// file of it may still be being written (its writer has not closed it, or the watcher
    /// cannot tell), and the burst then waits the whole delay.
    pub fn due(&self, writing: bool) -> Option<Instant> {
        let quiet = if writing {
            self.delay
        } else {
            self.delay / SETTLE_DIVISOR
        };
        self.burst
            .map(|(first, last)| (last + quiet).min(first + self.delay * MAX_DELAY_FACTOR))
    }

    /// The burst was scanned.
    pub fn scanned(&mut self) {
        self.burst = None;
    }
}

/// The files of the share written and not yet closed, as the watcher's events tell: a write
/// (or a new file) opens an entry, the writer's close (or the file's removal, or a rename
/// onto or off the path) ends it. Entries idle for [`WRITER_IDLE`] are forgotten; beyond
/// [`MAX_FOCUS_PATHS`] entries it forgets them all and says "writing" for [`WRITER_IDLE`].
#[derive(Debug, Default)]
pub struct Writers {
    open: HashMap<PathBuf, Instant>,
    /// When it had too many to follow: a file may be being written that is not in `open`.
    lost: Option<Instant>,
}

impl Writers {
    /// Takes in what an event on `path` says (its `mask`), at `now`.
    pub fn heard(&mut self, path: &Path, mask: EventMask, now: Instant) {
        if mask.contains(EventMask::ISDIR) {
            return;
        }
        if mask.intersects(
            EventMask::CLOSE_WRITE
                | EventMask::DELETE
                | EventMask::MOVED_FROM
                | EventMask::MOVED_TO,
        ) {
            self.open.remove(path);
        } else if mask.intersects(EventMask::MODIFY | EventMask::CREATE) {
            if self.open.len() >= MAX_FOCUS_PATHS && !self.open.contains_key(path) {
                self.lose(now);
            }
            self.open.insert(path.to_path_buf(), now);
        }
    }

    /// Events were lost: any file may be being written (until [`WRITER_IDLE`] from `now`).
    pub fn lose(&mut self, now: Instant) {
        self.open.clear();
        self.lost = Some(now);
    }

    /// True while a file may still be being written (idle ones forgotten as of `now`).
    pub fn writing(&mut self, now: Instant) -> bool {
        let busy = |at: &Instant| now.saturating_duration_since(*at) < WRITER_IDLE;
        self.open.retain(|_, at| busy(at));
        self.lost = self.lost.filter(busy);
        self.lost.is_some() || !self.open.is_empty()
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
    /// Closed on drop: the watcher's thread hears it and ends.
    stop: Option<OwnedFd>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for FolderWatcher {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// After each read of what the kernel queued, the watcher waits this long before the next:
/// the events of a burst (a version of 100,000 files written here is half a million) queue up
/// meanwhile and are read together, instead of waking the watcher's thread for each one, which
/// cost the writing thread as much as the writing. Far below the debounce delay.
const GATHER: Duration = Duration::from_millis(10);
/// Bytes read from the kernel at once (each event is 16 bytes and its name).
const READ_BUFFER: usize = 64 * 1024;
/// Reads of the kernel's queue before what they said is passed on.
const READS_AT_ONCE: usize = 16;

/// Watches the share; every relevant change calls `on_change` with what changed and whether a
/// file of the share may still be being written ([`Writers`]), on the watcher's own thread (it
/// should only pass them on, for example on a channel). The share and
/// the state dir must be named by canonical paths, as inotify names what changed. A share the
/// kernel cannot watch (inotify limits) is an error that says how to raise them; the loop then
/// falls back on its periodic rescan.
pub fn watch(
    share: &Share,
    state_dir: &Path,
    on_change: impl Fn(Change, bool) + Send + 'static,
) -> Result<FolderWatcher, String> {
    let root = share.watch_root().to_path_buf();
    let cannot = |e: std::io::Error| {
        let raise = if watch_tree::out_of_watches(&e) {
            " On Linux, raise fs.inotify.max_user_watches (sysctl) for large folders"
        } else {
            ""
        };
        format!(
            "cannot watch {} ({e}); changes are picked up by the periodic rescan only.{raise}",
            root.display()
        )
    };
    let inotify = Inotify::init().map_err(|e| {
        format!(
            "cannot start the file watcher ({e}); changes are picked up by the periodic rescan \
             only. On Linux, raise fs.inotify.max_user_instances (sysctl) if there are too many"
        )
    })?;
    let recursive = matches!(share, Share::Folder(_));
    let mut tree = WatchTree::new(inotify, root.clone(), state_dir.to_path_buf(), recursive);
    tree.add(&root).map_err(cannot)?;
    tracing::debug!(directories = tree.len(), "watching");
    let (stop_rx, stop) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
        .map_err(|e| format!("cannot start the file watcher: {e}"))?;
    let share = share.clone();
    let state = state_dir.to_path_buf();
    let thread = std::thread::Builder::new()
        .name("chorus-watch".into())
        .spawn(move || run(tree, &share, &state, &stop_rx, &on_change))
        .map_err(|e| format!("cannot start the file watcher: {e}"))?;
    Ok(FolderWatcher {
        stop: Some(stop),
        thread: Some(thread),
    })
}

/// The watcher's thread: waits for events (or the stop), reads all that are queued, passes
/// on what changed, and gathers the next burst for [`GATHER`].
fn run(
    mut tree: WatchTree,
    share: &Share,
    state: &Path,
    stop: &OwnedFd,
    on_change: &dyn Fn(Change, bool),
) {
    let mut buffer = vec![0u8; READ_BUFFER];
    let mut writers = Writers::default();
    let mut out_of_watches = false;
    loop {
        let mut fds = [
            PollFd::new(tree.inotify(), PollFlags::IN),
            PollFd::new(stop, PollFlags::IN),
        ];
        match rustix::event::poll(&mut fds, None) {
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => {
                tracing::warn!(
                    "the file watcher stopped ({e}); changes are picked up by the periodic rescan only"
                );
                on_change(Change::Unknown, true);
                return;
            }
        }
        if !fds[1].revents().is_empty() {
            return;
        }
        // Distinct paths, in the order first heard: a file written makes several events.
        let mut paths = Vec::new();
        let mut heard = std::collections::HashSet::new();
        let mut unknown = false;
        // Everything queued (at most READS_AT_ONCE buffers, so that a program writing without
        // pause is still passed on), then on.
        for _ in 0..READS_AT_ONCE {
            let events = match tree.inotify().read_events(&mut buffer) {
                Ok(events) => events,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    tracing::warn!(
                        "the file watcher stopped ({e}); changes are picked up by the periodic rescan only"
                    );
                    on_change(Change::Unknown, true);
                    return;
                }
            };
            let events: Vec<_> = events.map(|e| e.to_owned()).collect();
            let now = Instant::now();
            for ev in events {
                match said(&mut tree, &ev) {
                    Said::Path(p) if !share.concerns(&p, state) => {}
                    // More paths than a focused scan takes: it is a full scan anyway.
                    Said::Path(p) if unknown => writers.heard(&p, ev.mask, now),
                    Said::Path(p) => {
                        writers.heard(&p, ev.mask, now);
                        if heard.insert(p.clone()) {
                            paths.push(p);
                            if paths.len() > MAX_FOCUS_PATHS {
                                unknown = true;
                                paths = Vec::new();
                                heard = std::collections::HashSet::new();
                            }
                        }
                    }
                    // Events were lost (the queue overflowed): a writer may be at work.
                    Said::Unknown => {
                        unknown = true;
                        writers.lose(now);
                    }
                    Said::Nothing => {}
                    Said::OutOfWatches => {
                        unknown = true;
                        if !std::mem::replace(&mut out_of_watches, true) {
                            tracing::warn!(
                                "a new directory of {} cannot be watched: changes in it are picked up by the periodic rescan only. On Linux, raise fs.inotify.max_user_watches (sysctl) for large folders",
                                share.watch_root().display()
                            );
                        }
                    }
                }
            }
        }
        let writing = writers.writing(Instant::now());
        if unknown {
            on_change(Change::Unknown, writing);
        } else if !paths.is_empty() {
            on_change(Change::Paths(paths), writing);
        }
        std::thread::sleep(GATHER);
    }
}

/// What one event says.
enum Said {
    Path(PathBuf),
    /// Something changed, what cannot be said (the queue overflowed, the share's directory
    /// itself moved or went).
    Unknown,
    /// A directory appeared and cannot be watched; it is reported by the caller as unknown.
    OutOfWatches,
    Nothing,
}

/// Reads one event: keeps the watches in step with directories that appear and go, and names
/// the path that changed.
fn said(tree: &mut WatchTree, ev: &inotify::EventOwned) -> Said {
    let mask = ev.mask;
    if mask.contains(EventMask::Q_OVERFLOW) {
        return Said::Unknown;
    }
    if mask.contains(EventMask::IGNORED) {
        let root = tree.is_root(&ev.wd);
        tree.dropped(&ev.wd);
        return if root { Said::Unknown } else { Said::Nothing };
    }
    let Some(path) = tree.path(&ev.wd, ev.name.as_deref()) else {
        // A watch just forgotten (its directory moved away): the move itself was heard.
        return Said::Nothing;
    };
    if mask.intersects(EventMask::DELETE_SELF | EventMask::MOVE_SELF | EventMask::UNMOUNT) {
        // Heard also by the parent's watch, unless this is the share's own directory.
        return if tree.is_root(&ev.wd) {
            Said::Unknown
        } else {
            Said::Nothing
        };
    }
    if mask.contains(EventMask::ISDIR) {
        if mask.intersects(EventMask::MOVED_FROM | EventMask::DELETE) {
            tree.forget(&path);
        } else if mask.intersects(EventMask::CREATE | EventMask::MOVED_TO)
            && let Err(e) = tree.add(&path)
            && watch_tree::out_of_watches(&e)
        {
            return Said::OutOfWatches;
        }
    }
    Said::Path(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_is_scanned_once_quiet_or_after_the_cap() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut d = Debounce::new(ms(100));
        assert_eq!(d.due(true), None);
        d.changed(t0);
        assert_eq!(d.due(true), Some(t0 + ms(100)));
        d.changed(t0 + ms(80));
        assert_eq!(d.due(true), Some(t0 + ms(180)));
        // Its writers closed their files: a fifth of the delay.
        assert_eq!(d.due(false), Some(t0 + ms(100)));
        // Changes without pause: the cap, 20 delays after the first, whatever the writers.
        for i in 0..100 {
            d.changed(t0 + ms(50 * i));
        }
        assert_eq!(d.due(true), Some(t0 + ms(2000)));
        assert_eq!(d.due(false), Some(t0 + ms(2000)));
        d.scanned();
        assert_eq!(d.due(false), None);
    }

    #[test]
    fn writers_are_followed_from_a_write_to_its_close() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let (a, b) = (Path::new("/s/a"), Path::new("/s/b"));
        let mut w = Writers::default();
        assert!(!w.writing(t0));
        w.heard(a, EventMask::CREATE, t0);
        w.heard(a, EventMask::MODIFY, t0);
        w.heard(b, EventMask::MODIFY, t0);
        assert!(w.writing(t0));
        w.heard(a, EventMask::CLOSE_WRITE, t0);
        assert!(w.writing(t0), "b is still open");
        // Renamed over or away, removed: no writer of that path is left to wait for.
        w.heard(b, EventMask::MOVED_FROM, t0);
        assert!(!w.writing(t0));
        w.heard(b, EventMask::MODIFY, t0);
        w.heard(b, EventMask::DELETE, t0);
        assert!(!w.writing(t0));
        // A directory made is no file being written; a file's attributes change none.
        w.heard(a, EventMask::CREATE | EventMask::ISDIR, t0);
        w.heard(b, EventMask::ATTRIB, t0);
        assert!(!w.writing(t0));
        // A file left open and idle stops holding bursts back.
        w.heard(a, EventMask::MODIFY, t0);
        assert!(w.writing(t0 + ms(1900)));
        assert!(!w.writing(t0 + WRITER_IDLE));
        // Too many to follow: "writing" until they would have gone idle.
        for i in 0..=MAX_FOCUS_PATHS {
            w.heard(&PathBuf::from(format!("/s/f{i}")), EventMask::MODIFY, t0);
        }
        assert!(w.open.len() < MAX_FOCUS_PATHS);
        for i in 0..=MAX_FOCUS_PATHS {
            w.heard(
                &PathBuf::from(format!("/s/f{i}")),
                EventMask::CLOSE_WRITE,
                t0,
            );
        }
        assert!(w.writing(t0), "some writers were forgotten");
        assert!(!w.writing(t0 + WRITER_IDLE));
    }

    /// A file written and closed is told done; one still open, not (what the debounce waits
    /// for).
    #[test]
    fn the_watcher_says_whether_a_file_is_still_open_for_writing() {
        use std::io::Write;
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().canonicalize().unwrap();
        let state = root.join(".chorus");
        std::fs::create_dir_all(&state).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let _w = watch(&Share::Folder(root.clone()), &state, move |c, writing| {
            let _ = tx.send((c, writing));
        })
        .unwrap();
        // Once `want` was heard and the watcher is quiet: whether a file is being written, as
        // it said last (a write and its close can come in two gatherings).
        let writing_when = |want: &Path| {
            let mut last = loop {
                let (c, writing) = rx.recv_timeout(Duration::from_secs(5)).expect("heard");
                if matches!(&c, Change::Paths(p) if p.iter().any(|p| p == want)) {
                    break writing;
                }
            };
            while let Ok((_, writing)) = rx.recv_timeout(Duration::from_millis(300)) {
                last = writing;
            }
            last
        };
        std::fs::write(root.join("saved.txt"), "saved").unwrap();
        assert!(!writing_when(&root.join("saved.txt")), "written and closed");
        let mut open = std::fs::File::create(root.join("open.log")).unwrap();
        open.write_all(b"first line\n").unwrap();
        assert!(writing_when(&root.join("open.log")), "still open");
        // Written again just before (an entry idle for 2 s is forgotten, on a loaded machine).
        open.write_all(b"second line\n").unwrap();
        std::fs::write(root.join("other.txt"), "other").unwrap();
        assert!(
            writing_when(&root.join("other.txt")),
            "open.log is still open"
        );
        drop(open);
        assert!(!writing_when(&root.join("open.log")), "closed now");
    }

    /// A share in a temp dir (canonical, as the daemon names it), its state dir inside it,
    /// watched; what the watcher heard arrives on the channel.
    fn watched() -> (
        tempfile::TempDir,
        PathBuf,
        FolderWatcher,
        std::sync::mpsc::Receiver<Change>,
    ) {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().canonicalize().unwrap();
        let state = root.join(".chorus");
        std::fs::create_dir_all(state.join("chunks")).unwrap();
        std::fs::create_dir(root.join("old")).unwrap();
        std::fs::create_dir(root.join("old/deep")).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let w = watch(&Share::Folder(root.clone()), &state, move |c, _| {
            let _ = tx.send(c);
        })
        .unwrap();
        (tmp, root, w, rx)
    }

    /// Waits until `want` was heard (or fails after a few seconds), gathering what was.
    fn hear(rx: &std::sync::mpsc::Receiver<Change>, want: &Path) -> Vec<PathBuf> {
        hear_where(rx, want, |p| p == want)
    }

    /// Waits until `want` was heard, or a directory above it below `root`: a directory heard
    /// stands for everything below it (a file made in a new directory before the watcher
    /// watches it is found by the scan of that directory).
    /// Takes what was heard so far, until nothing comes for a while: what is heard next is
    /// about what is done next.
    fn quiet(rx: &std::sync::mpsc::Receiver<Change>) {
        while rx.recv_timeout(Duration::from_millis(300)).is_ok() {}
    }

    fn hear_below(rx: &std::sync::mpsc::Receiver<Change>, root: &Path, want: &Path) {
        hear_where(rx, want, |p| p != root && want.starts_with(p));
    }

    fn hear_where(
        rx: &std::sync::mpsc::Receiver<Change>,
        want: &Path,
        covers: impl Fn(&Path) -> bool,
    ) -> Vec<PathBuf> {
        let until = Instant::now() + Duration::from_secs(5);
        let mut heard: Vec<PathBuf> = Vec::new();
        while !heard.iter().any(|p| covers(p)) {
            let left = until.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(Change::Paths(p)) => heard.extend(p),
                Ok(Change::Unknown) => panic!("the watcher lost track"),
                Err(_) => panic!("{} was not heard; heard {heard:?}", want.display()),
            }
        }
        heard
    }

    #[test]
    fn changes_anywhere_below_are_heard_and_the_state_dir_is_not_watched() {
        let (_tmp, root, _w, rx) = watched();
        std::fs::write(root.join("a.txt"), "a").unwrap();
        hear(&rx, &root.join("a.txt"));
        std::fs::write(root.join("old/deep/b.txt"), "b").unwrap();
        hear(&rx, &root.join("old/deep/b.txt"));
        // The daemon's own store: not a change of the share, and not even heard.
        std::fs::write(root.join(".chorus/chunks/pack"), "x").unwrap();
        std::fs::write(root.join("c.txt"), "c").unwrap();
        let heard = hear(&rx, &root.join("c.txt"));
        assert!(
            heard.iter().all(|p| !p.starts_with(root.join(".chorus"))),
            "{heard:?}"
        );
    }

    #[test]
    fn a_directory_made_or_moved_in_is_watched_with_everything_below_it() {
        let (tmp, root, _w, rx) = watched();
        // Made and filled at once: the directory itself is heard (a scan of it covers what
        // was made before its watch), and a file made in it right after: itself, or its
        // directory when that was made before the watcher watched it.
        std::fs::create_dir_all(root.join("new/sub")).unwrap();
        hear(&rx, &root.join("new"));
        quiet(&rx);
        std::fs::write(root.join("new/sub/f.txt"), "f").unwrap();
        hear_below(&rx, &root, &root.join("new/sub/f.txt"));
        // Moved within the share: heard under its new name, not its old one.
        std::fs::rename(root.join("old"), root.join("renamed")).unwrap();
        hear(&rx, &root.join("renamed"));
        std::fs::write(root.join("renamed/deep/g.txt"), "g").unwrap();
        let heard = hear(&rx, &root.join("renamed/deep/g.txt"));
        assert!(!heard.contains(&root.join("old/deep/g.txt")), "{heard:?}");
        // Moved in from outside the share, with a tree below it.
        let outside = tmp
            .path()
            .join("../outside-".to_owned() + &std::process::id().to_string());
        let outside = std::path::absolute(outside).unwrap();
        std::fs::create_dir_all(outside.join("x/y")).unwrap();
        std::fs::rename(&outside, root.join("came")).unwrap();
        hear(&rx, &root.join("came"));
        std::fs::write(root.join("came/x/y/h.txt"), "h").unwrap();
        hear(&rx, &root.join("came/x/y/h.txt"));
        // Moved out: what happens to it there is not the share's.
        std::fs::rename(root.join("came"), &outside).unwrap();
        hear(&rx, &root.join("came"));
        std::fs::write(outside.join("x/y/i.txt"), "i").unwrap();
        std::fs::write(root.join("j.txt"), "j").unwrap();
        let heard = hear(&rx, &root.join("j.txt"));
        assert!(
            heard
                .iter()
                .all(|p| p.starts_with(&root) && !p.ends_with("i.txt")),
            "{heard:?}"
        );
        std::fs::remove_dir_all(&outside).unwrap();
    }

    #[test]
    fn a_symlinked_directory_is_not_followed() {
        let (tmp, root, _w, rx) = watched();
        let elsewhere = tmp
            .path()
            .join("../elsewhere-".to_owned() + &std::process::id().to_string());
        let elsewhere = std::path::absolute(elsewhere).unwrap();
        std::fs::create_dir_all(&elsewhere).unwrap();
        std::os::unix::fs::symlink(&elsewhere, root.join("link")).unwrap();
        hear(&rx, &root.join("link"));
        std::fs::write(elsewhere.join("k.txt"), "k").unwrap();
        std::fs::write(root.join("l.txt"), "l").unwrap();
        let heard = hear(&rx, &root.join("l.txt"));
        assert!(!heard.iter().any(|p| p.ends_with("k.txt")), "{heard:?}");
        std::fs::remove_dir_all(&elsewhere).unwrap();
    }

    #[test]
    fn a_burst_is_heard_in_few_gatherings_and_dropping_the_watcher_stops_it() {
        let (_tmp, root, w, rx) = watched();
        for i in 0..2000 {
            std::fs::write(root.join(format!("f{i}")), "x").unwrap();
        }
        let mut gatherings = 0;
        let mut heard = std::collections::BTreeSet::new();
        while heard.len() < 2000 {
            match rx
                .recv_timeout(Duration::from_secs(5))
                .expect("the burst is heard")
            {
                Change::Paths(p) => heard.extend(p),
                Change::Unknown => panic!("the watcher lost track"),
            }
            gatherings += 1;
        }
        // Two thousand files, five events each: read a few gatherings at a time, not one
        // wake-up per event.
        assert!(gatherings < 2000, "{gatherings} gatherings");
        let thread = w.thread.as_ref().map(|t| t.thread().id());
        assert!(thread.is_some());
        drop(w);
        // The thread is gone (joined) and the channel's sender with it.
        assert!(matches!(
            rx.recv_timeout(Duration::from_secs(5)),
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected)
        ));
    }
}
