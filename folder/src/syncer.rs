//! A write's file-system flushes (`syncfs`), on a thread of their own. A full batch of temp
//! files asks for one when it starts to wait for its renames (a timestamp tick at least), and
//! the files after it are written while the file system flushes: on a fresh join of 100k
//! small files the flushes were 2.4 s of a 5.3 s write, all of it spent waiting.
//!
//! A flush covers what was written before it started, so every ask made while one runs is
//! answered by the next: a ticket is done once a flush that started after it was handed out
//! has ended. A flush that fails fails every ticket not yet covered, and every later one: the
//! file system reports a write-back error once, so a later flush succeeding does not vouch
//! for files written before it.
//!
//! Without a thread (none could be started) a ticket is flushed on the caller, when it waits.

use std::io;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

/// What flushes: `syncfs` on the share in the daemon, anything in the tests.
type Flush = Box<dyn FnMut() -> io::Result<()> + Send>;

/// Flushes on a thread of its own, asked for by ticket; stopped (after the flush under way)
/// when dropped.
pub(crate) struct Syncer {
    shared: Arc<Shared>,
    /// The flush, until the thread takes it (or none could be started: the caller keeps it).
    flush: Option<Flush>,
    thread: Option<JoinHandle<()>>,
    /// A thread was tried (once: without one, flushes run on the caller).
    tried: bool,
}

/// A flush asked for; [`Syncer::wait`] tells when it is done and how it went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Ticket(u64);

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    /// Signalled when a ticket is handed out, a flush ends, or the syncer stops.
    changed: Condvar,
}

#[derive(Default)]
struct State {
    /// The last ticket handed out.
    asked: u64,
    /// Every ticket up to this one is answered (by a flush that started after it).
    answered: u64,
    /// The first ticket a failed flush answered, with its error: it and every later one fail.
    failed: Option<(u64, io::ErrorKind, String)>,
    stop: bool,
}

impl State {
    /// Records a flush that covered every ticket up to `upto`.
    fn answer(&mut self, upto: u64, flushed: io::Result<()>) {
        if let Err(e) = flushed
            && self.failed.is_none()
        {
            self.failed = Some((self.answered + 1, e.kind(), e.to_string()));
        }
        self.answered = self.answered.max(upto);
    }

    fn outcome(&self, t: Ticket) -> io::Result<()> {
        match &self.failed {
            Some((from, kind, why)) if *from <= t.0 => Err(io::Error::new(*kind, why.clone())),
            _ => Ok(()),
        }
    }
}

impl Syncer {
    /// A syncer whose flushes run `flush`. No thread is started until a flush is asked for.
    pub(crate) fn new(flush: impl FnMut() -> io::Result<()> + Send + 'static) -> Self {
        Syncer {
            shared: Arc::default(),
            flush: Some(Box::new(flush)),
            thread: None,
            tried: false,
        }
    }

    /// Asks for a flush of everything written so far; it starts at once unless one is under
    /// way (then the next one covers it). Without a thread it runs at [`wait`](Self::wait).
    pub(crate) fn ask(&mut self) -> Ticket {
        let ticket = self.hand_out();
        if !self.tried {
            self.tried = true;
            if let Some(flush) = self.flush.take() {
                self.start(flush);
            }
        }
        ticket
    }

    fn hand_out(&self) -> Ticket {
        let ticket = {
            let mut s = self.lock();
            s.asked += 1;
            Ticket(s.asked)
        };
        self.shared.changed.notify_all();
        ticket
    }

    /// True when [`wait`](Self::wait) for `t` would not wait for the flush thread: `t` is
    /// answered, or flushes run on the caller (no thread could be started).
    pub(crate) fn is_done(&self, t: Ticket) -> bool {
        self.flush.is_some() || self.lock().answered >= t.0
    }

    /// Waits until a flush that started after `t` was handed out has ended: `Ok` when every
    /// flush up to it succeeded.
    pub(crate) fn wait(&mut self, t: Ticket) -> io::Result<()> {
        if let Some(flush) = self.flush.as_mut() {
            // No thread: flushed here, for every ticket handed out so far.
            let mut s = lock(&self.shared);
            if s.answered < t.0 {
                let upto = s.asked;
                s.answer(upto, flush());
            }
            return s.outcome(t);
        }
        let mut s = self.lock();
        while s.answered < t.0 {
            s = self
                .shared
                .changed
                .wait(s)
                .unwrap_or_else(|poisoned| poisoned.into_inner());
        }
        s.outcome(t)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        lock(&self.shared)
    }

    /// Starts the thread that flushes; without one, the caller keeps `flush`.
    fn start(&mut self, mut flush: Flush) {
        let shared = Arc::clone(&self.shared);
        let (give, take) = std::sync::mpsc::sync_channel::<Flush>(1);
        let spawned = std::thread::Builder::new()
            .name("chorus-syncfs".into())
            .spawn(move || {
                let Ok(mut flush) = take.recv() else { return };
                loop {
                    let (upto, failed) = {
                        let mut s = lock(&shared);
                        while !s.stop && s.answered >= s.asked {
                            s = shared
                                .changed
                                .wait(s)
                                .unwrap_or_else(|poisoned| poisoned.into_inner());
                        }
                        if s.stop {
                            return;
                        }
                        (s.asked, s.failed.is_some())
                    };
                    // A flush that failed answers the rest without flushing again. One that
                    // panics fails, so no writer waits for an answer that never comes.
                    let flushed = if failed {
                        Ok(())
                    } else {
                        std::panic::catch_unwind(std::panic::AssertUnwindSafe(&mut flush))
                            .unwrap_or_else(|_| Err(io::Error::other("the flush panicked")))
                    };
                    lock(&shared).answer(upto, flushed);
                    shared.changed.notify_all();
                }
            });
        match spawned {
            Ok(handle) => {
                // The thread is alive to receive it (it waits for nothing else first).
                if let Err(back) = give.send(flush) {
                    flush = back.0;
                    self.flush = Some(flush);
                }
                self.thread = Some(handle);
            }
            Err(e) => {
                tracing::debug!(error = %e, "no thread for the flushes: they run on the writer");
                self.flush = Some(flush);
            }
        }
    }
}

fn lock(shared: &Shared) -> MutexGuard<'_, State> {
    shared
        .state
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Drop for Syncer {
    fn drop(&mut self) {
        lock(&self.shared).stop = true;
        self.shared.changed.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::mpsc;

    /// A flush that waits for the test's go, counting the flushes that started.
    fn gated() -> (Syncer, mpsc::Sender<io::Result<()>>, Arc<AtomicUsize>) {
        let (go, gate) = mpsc::channel::<io::Result<()>>();
        let started = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&started);
        let syncer = Syncer::new(move || {
            counted.fetch_add(1, Ordering::SeqCst);
            gate.recv().unwrap_or(Ok(()))
        });
        (syncer, go, started)
    }

    fn until(what: impl Fn() -> bool) {
        while !what() {
            std::thread::yield_now();
        }
    }

    #[test]
    fn asks_made_while_a_flush_runs_share_the_next_one() {
        let (mut s, go, started) = gated();
        let first = s.ask();
        until(|| started.load(Ordering::SeqCst) == 1);
        // Written after the first flush started: it does not cover them.
        let second = s.ask();
        let third = s.ask();
        assert!(!s.is_done(first));
        go.send(Ok(())).unwrap();
        assert!(s.wait(first).is_ok());
        assert!(
            !s.is_done(second),
            "a flush that started before it does not answer it"
        );
        until(|| started.load(Ordering::SeqCst) == 2);
        go.send(Ok(())).unwrap();
        assert!(s.wait(third).is_ok());
        assert!(s.is_done(second));
        assert_eq!(
            started.load(Ordering::SeqCst),
            2,
            "one flush for the two asks"
        );
    }

    #[test]
    fn a_failed_flush_fails_what_it_answered_and_everything_after() {
        let (mut s, go, started) = gated();
        let first = s.ask();
        go.send(Ok(())).unwrap();
        assert!(s.wait(first).is_ok());
        let second = s.ask();
        go.send(Err(io::Error::other("write-back failed"))).unwrap();
        let e = s.wait(second).unwrap_err();
        assert!(e.to_string().contains("write-back failed"), "{e}");
        // A later flush would succeed, but the error was reported once: no vouching after it.
        let third = s.ask();
        go.send(Ok(())).unwrap();
        assert!(s.wait(third).is_err());
        assert!(
            s.wait(first).is_ok(),
            "what an earlier flush covered stays good"
        );
        assert_eq!(
            started.load(Ordering::SeqCst),
            2,
            "no flush after the failed one"
        );
    }

    #[test]
    fn without_a_thread_the_caller_flushes_when_it_waits() {
        let flushes = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&flushes);
        let mut s = Syncer::new(move || {
            counted.fetch_add(1, Ordering::SeqCst);
            Ok(())
        });
        // Handed out as when no thread could be started: the caller keeps the flush.
        let first = s.hand_out();
        let second = s.hand_out();
        assert!(s.is_done(first), "waiting would not wait for a thread");
        assert!(s.wait(first).is_ok());
        assert!(s.wait(second).is_ok());
        assert_eq!(
            flushes.load(Ordering::SeqCst),
            1,
            "one flush answers every ticket handed out before it"
        );
    }

    #[test]
    fn a_flush_that_panics_fails_its_tickets_instead_of_leaving_them_unanswered() {
        let mut s = Syncer::new(|| panic!("a flush that panics"));
        let t = s.ask();
        let e = s.wait(t).unwrap_err();
        assert!(e.to_string().contains("panicked"), "{e}");
        let later = s.ask();
        assert!(s.wait(later).is_err());
    }

    #[test]
    fn dropped_while_a_flush_runs_it_stops_after_that_flush() {
        let (mut s, go, started) = gated();
        s.ask();
        until(|| started.load(Ordering::SeqCst) == 1);
        s.ask();
        go.send(Ok(())).unwrap();
        drop(go); // a second flush, if one started before the stop, ends at once
        drop(s); // returns: the thread is joined
        assert!(started.load(Ordering::SeqCst) <= 2);
    }
}
