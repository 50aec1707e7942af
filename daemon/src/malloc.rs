//! The C allocator's settings for a long-running daemon (glibc only; elsewhere nothing).
//!
//! glibc raises its mmap threshold each time a large block is freed (up to 32 MiB): after a
//! few decoded deltas or manifests of a 100k-file version have come and gone, such buffers are
//! carved from the heap, which then stays as large as their peak and fragments. Each thread
//! that allocates may also get an arena of its own (up to eight per core; the scan and the
//! writer use up to four threads each). A 100k-file join peaked at 158–168 MiB of RSS on
//! each side; with the threshold fixed at 4 MiB (the 2 MiB frames of a transfer still reuse
//! heap memory rather than take fresh, zeroed pages) and two arenas, 128–138 MiB, no slower
//! (docs/benchmarks.md). A setting made in the environment (`MALLOC_MMAP_THRESHOLD_`,
//! `MALLOC_ARENA_MAX`, or any `glibc.malloc` tunable in `GLIBC_TUNABLES`) is left as it is.

/// Buffers this large or larger are mapped on their own and returned when freed.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MMAP_THRESHOLD: libc::c_int = 4 << 20;
/// Arenas, all threads together.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const ARENAS: libc::c_int = 2;

/// Applies the settings; call before any thread starts.
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
