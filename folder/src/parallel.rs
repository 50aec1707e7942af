//! Work on every core, for the folder's per-file work (reading files to scan them, writing
//! a version's files): each file is a few system calls and some hashing or compression, and
//! one thread leaves the other cores idle.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Threads at most (the calling thread is one of them).
const THREADS_MAX: usize = 4;

/// `work(0..n)` on up to [`THREADS_MAX`] threads (the caller's among them), each taking the
/// next index left; the results in index order.
pub(crate) fn map<T: Send>(n: usize, work: impl Fn(usize) -> T + Sync) -> Vec<T> {
    map_beside(n, work, || ()).0
}

/// [`map`], with `beside` run on the calling thread meanwhile: the work starts on the other
/// threads, and the caller takes its share of what is left once `beside` returns. The
/// writer renames the files written before while the next ones are written: one thread
/// renaming between the writes left the other cores idle a quarter of the time.
pub(crate) fn map_beside<T: Send, B>(
    n: usize,
    work: impl Fn(usize) -> T + Sync,
    beside: impl FnOnce() -> B,
) -> (Vec<T>, B) {
    static CORES: OnceLock<usize> = OnceLock::new();
    let cores = *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let threads = cores.min(THREADS_MAX).min(n);
    if threads <= 1 {
        let b = beside();
        return ((0..n).map(work).collect(), b);
    }
    let next = AtomicUsize::new(0);
    let take = || {
        let mut done = Vec::new();
        loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            if i >= n {
                return done;
            }
            done.push((i, work(i)));
        }
    };
    let (mut all, b) = std::thread::scope(|s| {
        let helpers: Vec<_> = (1..threads).map(|_| s.spawn(take)).collect();
        let b = beside();
        let mut all = take();
        for h in helpers {
            match h.join() {
                Ok(done) => all.extend(done),
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
        (all, b)
    });
    all.sort_unstable_by_key(|(i, _)| *i);
    (all.into_iter().map(|(_, t)| t).collect(), b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_come_in_index_order_whoever_did_the_work() {
        for n in [0, 1, 2, 7, 1000] {
            let out = map(n, |i| {
                if i % 3 == 0 {
                    std::thread::yield_now();
                }
                (i, std::thread::current().id())
            });
            assert_eq!(
                out.iter().map(|(i, _)| *i).collect::<Vec<_>>(),
                (0..n).collect::<Vec<_>>()
            );
        }
    }

    #[test]
    fn beside_runs_once_on_the_caller_and_every_index_is_done() {
        let caller = std::thread::current().id();
        for n in [0, 1, 2, 7, 1000] {
            let mut ran = 0;
            let (out, on) = map_beside(
                n,
                |i| i * 2,
                || {
                    ran += 1;
                    std::thread::current().id()
                },
            );
            assert_eq!(ran, 1);
            assert_eq!(on, caller);
            assert_eq!(out, (0..n).map(|i| i * 2).collect::<Vec<_>>());
        }
    }
}
