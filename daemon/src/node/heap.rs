//! The C allocator, told how a long-running daemon uses it (glibc only; elsewhere these do
//! nothing). glibc gives each thread that allocates at once an arena of its own and keeps what
//! is freed in it: a daemon that decodes a 100k-file version on one thread and writes it on
//! another held ~70 MB more at its peak than with two arenas (a 100k-file join: 341–354 MiB
//! against 281 MiB with `MALLOC_ARENA_MAX=2`). After a long piece of work, freed pages are
//! handed back to the system, so the next piece does not stack on top of them.

use std::time::Duration;

/// Work at least this long may have freed much: the heap is trimmed after it.
pub const TRIM_AFTER: Duration = Duration::from_millis(250);

/// At most two arenas: call before any thread is started.
pub fn limit_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator parameter; it is called before other threads
    // allocate.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

/// Hands the heap's free pages back to the system.
pub fn trim() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free memory of the allocator's own arenas.
    unsafe {
        libc::malloc_trim(0);
    }
}
