//! Work the daemon does for its own sake rather than for a change just made (the periodic full
//! rescan, which looks for what the watcher may have missed), run at a low priority so that it
//! does not compete with the user's programs: on a thread of its own whose CPU priority is 10
//! nice levels lower (at most 19) and whose disk I/O is at the lowest best-effort level (7, as
//! `ionice -c2 -n7`; the BFQ scheduler gives that level the smallest share, others weigh
//! classes only). The threads it starts to read and hash files inherit both, and what the
//! work goes on to do (a rescan that finds a change handles it) runs there too.
//!
//! The worker waits for it as for any scan, so what a scan sees and does is unchanged; a scan
//! for a change the watcher reported keeps the worker's own priority, so an edit goes out as
//! soon as before. A thread for the purpose, rather than the worker lowering its priority and
//! raising it again: Linux lets a thread lower its own CPU priority but not raise it back
//! without privileges (`RLIMIT_NICE`). Best-effort I/O, not the idle class: idle I/O can wait
//! without end behind a busy disk, and the worker would wait with it.

/// Nice levels added to the thread's (the result is at most 19).
const NICE_ADDED: i32 = 10;
/// The I/O priority set: best effort (class 2), its lowest level (7).
const IO_PRIORITY: i32 = (IOPRIO_CLASS_BE << IOPRIO_CLASS_SHIFT) | 7;

const IOPRIO_CLASS_SHIFT: i32 = 13;
const IOPRIO_CLASS_BE: i32 = 2;
const IOPRIO_CLASS_IDLE: i32 = 3;
const IOPRIO_WHO_PROCESS: i32 = 1;
/// `who` for the calling thread.
#[cfg(target_os = "linux")]
const THIS_THREAD: libc::c_long = 0;

/// Runs `work` on a thread named `name` at low priority and returns what it returns; on the
/// calling thread, as it is, when no thread can be had. A panic in `work` is the caller's.
pub fn run<T: Send>(name: &str, work: impl FnOnce() -> T + Send) -> T {
    let slot = std::sync::Mutex::new(Some(work));
    let take = || {
        slot.lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
    };
    std::thread::scope(|s| {
        let spawned = std::thread::Builder::new()
            .name(name.into())
            .spawn_scoped(s, || {
                lower();
                take().map(|work| work())
            });
        let done = match spawned {
            Ok(thread) => thread
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
            Err(e) => {
                tracing::debug!(error = %e, "no thread for low-priority work: it runs on the worker");
                None
            }
        };
        done.unwrap_or_else(|| take().expect("the work ran nowhere yet")())
    })
}

/// Lowers the calling thread's CPU and I/O priority (Linux applies both to the one thread).
/// A failure leaves the priority as it was: the work runs anyway.
fn lower() {
    match rustix::process::getpriority_process(None) {
        Ok(nice) => {
            let lower = (nice + NICE_ADDED).min(19);
            if lower > nice
                && let Err(e) = rustix::process::setpriority_process(None, lower)
            {
                tracing::debug!(error = %e, "the CPU priority stays as it was");
            }
        }
        Err(e) => tracing::debug!(error = %e, "the CPU priority stays as it was"),
    }
    if io_priority().is_some_and(|p| p >> IOPRIO_CLASS_SHIFT == IOPRIO_CLASS_IDLE) {
        return; // lower already
    }
    if let Err(e) = set_io_priority(IO_PRIORITY) {
        tracing::debug!(error = %e, "the I/O priority stays as it was");
    }
}

/// The calling thread's I/O priority (class and level, as `ioprio_get` gives them).
#[cfg(target_os = "linux")]
fn io_priority() -> Option<i32> {
    // SAFETY: ioprio_get takes two integers and reads nothing from memory.
    let got = unsafe {
        libc::syscall(
            libc::SYS_ioprio_get,
            libc::c_long::from(IOPRIO_WHO_PROCESS),
            THIS_THREAD,
        )
    };
    (got >= 0).then_some(got as i32)
}

#[cfg(not(target_os = "linux"))]
fn io_priority() -> Option<i32> {
    None
}

#[cfg(target_os = "linux")]
fn set_io_priority(priority: i32) -> std::io::Result<()> {
    // SAFETY: ioprio_set takes three integers and touches no memory of ours.
    let r = unsafe {
        libc::syscall(
            libc::SYS_ioprio_set,
            libc::c_long::from(IOPRIO_WHO_PROCESS),
            THIS_THREAD,
            libc::c_long::from(priority),
        )
    };
    if r < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(())
    }
}

#[cfg(not(target_os = "linux"))]
fn set_io_priority(_priority: i32) -> std::io::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nice() -> i32 {
        rustix::process::getpriority_process(None).unwrap()
    }

    #[test]
    fn the_work_runs_at_low_priority_and_the_threads_it_starts_too_and_the_caller_keeps_its_own() {
        let (nice_before, io_before) = std::thread::spawn(|| (nice(), io_priority()))
            .join()
            .unwrap();
        let (caller_nice, caller_io) = (nice(), io_priority());
        let (name, inside, started) = run("chorus-test-low", || {
            let started = std::thread::spawn(|| (nice(), io_priority()))
                .join()
                .unwrap();
            let name = std::thread::current().name().map(String::from);
            (name, (nice(), io_priority()), started)
        });
        assert_eq!(name.as_deref(), Some("chorus-test-low"));
        assert_eq!(inside.0, (nice_before + NICE_ADDED).min(19));
        if cfg!(target_os = "linux") {
            // The idle class is lower still, and kept.
            let idle = io_before.is_some_and(|p| p >> IOPRIO_CLASS_SHIFT == IOPRIO_CLASS_IDLE);
            let expected = if idle { io_before } else { Some(IO_PRIORITY) };
            assert_eq!(inside.1, expected, "before: {io_before:?}");
        }
        assert_eq!(
            started, inside,
            "a thread the work starts inherits its priority"
        );
        assert_eq!((nice(), io_priority()), (caller_nice, caller_io));
    }

    #[test]
    fn what_the_work_returns_and_its_panic_reach_the_caller() {
        assert_eq!(run("chorus-test-low", || 7), 7);
        let panicked = std::panic::catch_unwind(|| run("chorus-test-low", || panic!("boom")));
        assert!(panicked.is_err());
    }
}
