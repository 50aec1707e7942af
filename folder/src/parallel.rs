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
    static CORES: OnceLock<usize> = OnceLock::new();
    let cores = *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let threads = cores.min(THREADS_MAX).min(n);
    if threads <= 1 {
        return (0..n).map(work).collect();
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
    let mut all = std::thread::scope(|s| {
        let helpers: Vec<_> = (1..threads).map(|_| s.spawn(take)).collect();
        let mut all = take();
        for h in helpers {
            match h.join() {
                Ok(done) => all.extend(done),
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
        all
    });
    all.sort_unstable_by_key(|(i, _)| *i);
    all.into_iter().map(|(_, t)| t).collect()
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
}
