//! The C allocator, told how a long-running daemon uses it (glibc only; elsewhere these do
//! nothing).
//!
//! - At most two arenas: glibc gives each thread that allocates at once an arena of its own
//!   and keeps what is freed in it: a daemon that decodes a 100k-file version on one thread
//!   and writes it on another held ~70 MB more at its peak than with two arenas (a 100k-file
//!   join: 341–354 MiB against 281 MiB with `MALLOC_ARENA_MAX=2`).
//! - A fixed mmap threshold of 4 MiB: glibc raises it each time a large block is freed (up
//!   to 32 MiB), so after a few decoded deltas or manifests of a 100k-file version such
//!   buffers are carved from the heap, which then stays as large as their peak and
//!   fragments. A 100k-file join peaked at 158–168 MiB of RSS on each side; with the
//!   threshold fixed (the 2 MiB frames of a transfer still reuse heap memory rather than take
//!   fresh, zeroed pages), 128–138 MiB, no slower (docs/benchmarks.md).
//! - After a long piece of work, freed pages are handed back to the system, so the next piece
//!   does not stack on top of them.
//!
//! A setting made in the environment (`MALLOC_MMAP_THRESHOLD_`, `MALLOC_ARENA_MAX`, or any
//! `glibc.malloc` tunable in `GLIBC_TUNABLES`) is left as it is.

use std::time::Duration;

/// Work at least this long may have freed much: the heap is trimmed after it.
pub const TRIM_AFTER: Duration = Duration::from_millis(250);

/// Buffers this large or larger are mapped on their own and returned when freed.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MMAP_THRESHOLD: libc::c_int = 4 << 20;
/// Arenas, all threads together.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const ARENAS: libc::c_int = 2;

/// Applies the settings the environment leaves open: call before any thread starts.
pub fn tune() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let tunables = std::env::var("GLIBC_TUNABLES").unwrap_or_default();
        let tuned = |name: &str| tunables.contains(&format!("glibc.malloc.{name}"));
        if std::env::var_os("MALLOC_MMAP_THRESHOLD_").is_none() && !tuned("mmap_threshold") {
            // SAFETY: mallopt only changes allocator parameters; no other thread runs yet.
            unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD) };
        }
        if std::env::var_os("MALLOC_ARENA_MAX").is_none() && !tuned("arena_max") {
            // SAFETY: as above.
            unsafe { libc::mallopt(libc::M_ARENA_MAX, ARENAS) };
        }
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
