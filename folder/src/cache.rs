//! The scan cache: what each file looked like when it was last read, so a rescan reads only
//! what changed, and so a writer can tell whether a file changed since the scan.
//!
//! A file is known by its stamp (size, mtime, ctime, inode). A stamp cannot tell apart two
//! writes within one timestamp tick: a file read in the same tick as its last change (a
//! "racy" entry, as git calls it) is neither reused by the next scan nor believed unchanged
//! by a writer on its stamp alone: [`ScanCache::check`] asks for its content to be compared.
//! A file this process wrote is believed on its stamp when it kept the stamp of its last write
//! for a tick until its rename ([`ScanCache::remember`]): a later save cannot share that tick.

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime};

use serde::{Deserialize, Serialize};

use chorus_chunking::{ChunkerParams, FileManifest, RelPath};

/// A file changed this close before it was read may be written again within the same
/// timestamp tick without its stamp changing (coarse clocks, FAT's 2 s), so it is not trusted.
pub const RACY_WINDOW: Duration = Duration::from_secs(2);

/// A timestamp tick of a file system with sub-second timestamps is the kernel's coarse clock
/// (at most 10 ms); this leaves room for more.
pub(crate) const FINE_TICK: Duration = Duration::from_millis(50);

/// How long after its last write a file must go unwritten before its stamp alone vouches for
/// its content: a write after that lands in a later timestamp tick. A stamp without
/// sub-second digits may come from a file system that keeps whole seconds (or FAT's two).
pub(crate) fn settles_after(stamp: &Stamp) -> Duration {
    if stamp.mtime_ns % 1_000_000_000 == 0 {
        RACY_WINDOW
    } else {
        FINE_TICK
    }
}

/// Whether a file this process wrote is believed on its stamp: `wrote` is its stamp right after
/// its last write (taken at `wrote_at`, while only this process knew its temp name), `now` its
/// stamp after its rename into place, begun at `renaming_at`. It must be unchanged (size,
/// mtime, inode; the rename changes the ctime) and renamed a tick or more after that write, so
/// that any save after the rename carries a later mtime.
pub(crate) fn settled(wrote: &Stamp, wrote_at: Instant, renaming_at: Instant, now: &Stamp) -> bool {
    (wrote.size, wrote.mtime_ns, wrote.ino) == (now.size, now.mtime_ns, now.ino)
        && renaming_at.saturating_duration_since(wrote_at) >= settles_after(wrote)
}

/// What a file looked like when it was last read.
///
/// Times are nanoseconds since the epoch in an `i64` (years 1677 to 2262; one is kept for each
/// file of the share, 100k of them in the scan's table): a time beyond is held at the nearest
/// end. Two such mtimes look alike, but the ctime, which only the kernel sets (to now), still
/// tells a write apart, and a far-future mtime counts as racy, so its content is compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stamp {
    pub size: u64,
    pub mtime_ns: i64,
    pub ctime_ns: i64,
    pub ino: u64,
}

/// Seconds and nanoseconds as nanoseconds, held at the ends of `i64`.
fn nanos(secs: i64, nsec: i64) -> i64 {
    let ns = i128::from(secs) * 1_000_000_000 + i128::from(nsec);
    i64::try_from(ns).unwrap_or(if ns < 0 { i64::MIN } else { i64::MAX })
}

impl Stamp {
    /// The stamp of a `stat`.
    pub fn of(st: &rustix::fs::Stat) -> Stamp {
        Stamp {
            size: st.st_size as u64,
            mtime_ns: nanos(st.st_mtime, st.st_mtime_nsec as i64),
            ctime_ns: nanos(st.st_ctime, st.st_ctime_nsec as i64),
            ino: st.st_ino,
        }
    }

    /// The stamp of std's metadata.
    pub fn of_metadata(md: &std::fs::Metadata) -> Stamp {
        use std::os::unix::fs::MetadataExt;
        Stamp {
            size: md.len(),
            mtime_ns: nanos(md.mtime(), md.mtime_nsec()),
            ctime_ns: nanos(md.ctime(), md.ctime_nsec()),
            ino: md.ino(),
        }
    }
}

/// What is at a path on disk now, as a writer about to replace it sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnDisk {
    /// A regular file with this stamp.
    File(Stamp),
    /// A directory, symlink or special file.
    Other,
}

/// A file as the last scan saw it.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Seen {
    stamp: Stamp,
    manifest: FileManifest,
    /// False for a file changed so close to its reading that a write within the same
    /// timestamp tick could leave its stamp as it is.
    trusted: bool,
}

/// The answer of [`ScanCache::check`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Unchanged,
    Changed,
    /// Same stamp, but read within a tick of its last change: it is unchanged only if its
    /// content is still this.
    CompareContent(FileManifest),
}

/// Remembers file manifests by path and stamp.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ScanCache {
    params: Option<ChunkerParams>,
    files: HashMap<RelPath, Seen>,
}

impl ScanCache {
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of files known.
    pub fn len(&self) -> usize {
        self.files.len()
    }

    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// The chunk sizes the cached manifests were cut with.
    pub fn params(&self) -> Option<ChunkerParams> {
        self.params
    }

    /// Forgets every file when the chunk sizes changed: their manifests were cut otherwise.
    pub(crate) fn use_params(&mut self, params: ChunkerParams) {
        if self.params != Some(params) {
            self.files.clear();
            self.params = Some(params);
        }
    }

    /// The manifest of `path` when its stamp is `stamp` and it can be trusted.
    pub(crate) fn reuse(&self, path: &RelPath, stamp: &Stamp) -> Option<&FileManifest> {
        self.files
            .get(path)
            .filter(|s| s.trusted && s.stamp == *stamp)
            .map(|s| &s.manifest)
    }

    /// The manifest the last scan read at `path` under this very stamp, and whether the stamp
    /// alone vouches for it (false: read within a tick of its last change, so the file may
    /// hold other bytes under the same stamp).
    pub(crate) fn seen(&self, path: &RelPath, stamp: &Stamp) -> Option<(&FileManifest, bool)> {
        self.files
            .get(path)
            .filter(|s| s.stamp == *stamp)
            .map(|s| (&s.manifest, s.trusted))
    }

    /// What `path` held when last read or written, whatever its stamp now, for a file of more
    /// than `big` bytes read again to find its unchanged chunks by (`crate::read::hint`). A
    /// path not known yet is given the file of more than `big` bytes beside it whose name
    /// shares the longest start with its own (then the nearest in size): an editor's temp file
    /// (`big.bin.tmp`, `.big.bin.swp`) or a copy holds mostly what the file it comes from does.
    /// The hint is a guess the cut checks chunk by chunk.
    pub(crate) fn hint(&self, path: &RelPath, stamp: &Stamp, big: u64) -> Option<FileManifest> {
        if stamp.size <= big {
            return None;
        }
        if let Some(s) = self.files.get(path) {
            return Some(s.manifest.clone());
        }
        fn parent(p: &RelPath) -> Option<&str> {
            p.as_str().rsplit_once('/').map(|(d, _)| d)
        }
        let name = path.file_name().trim_start_matches('.');
        self.files
            .iter()
            .filter(|(p, s)| s.stamp.size > big && parent(p) == parent(path))
            .max_by_key(|(p, s)| {
                let other = p.file_name().trim_start_matches('.');
                let shared = name
                    .bytes()
                    .zip(other.bytes())
                    .take_while(|(a, b)| a == b)
                    .count();
                (shared, std::cmp::Reverse(s.stamp.size.abs_diff(stamp.size)))
            })
            .map(|(_, s)| s.manifest.clone())
    }

    /// Records a file just read, whose reading started at `read_at`.
    pub(crate) fn read(
        &mut self,
        path: RelPath,
        stamp: Stamp,
        manifest: FileManifest,
        read_at: SystemTime,
    ) {
        let trusted = !is_racy(&stamp, read_at);
        self.files.insert(
            path,
            Seen {
                stamp,
                manifest,
                trusted,
            },
        );
    }

    /// Takes in what a write remembered ([`remember`](Self::remember) into a table of its
    /// own), its entries winning over this table's for the same path. The larger table is
    /// kept and the smaller added to it: a version of 100k files written into an empty
    /// table costs no second table of 100k entries (nor a list of them beside this one) at
    /// the end of the write, the peak of a join.
    pub(crate) fn absorb(&mut self, written: ScanCache) {
        let mut written = written.files;
        if self.files.len() < written.len() {
            std::mem::swap(&mut self.files, &mut written);
            // `written` holds this table's entries now: kept where the write left none.
            for (path, seen) in written {
                self.files.entry(path).or_insert(seen);
            }
        } else {
            self.files.extend(written);
        }
    }

    /// The paths known and their stamps, in no order.
    pub(crate) fn stamps(&self) -> impl Iterator<Item = (&RelPath, &Stamp)> {
        self.files.iter().map(|(p, s)| (p, &s.stamp))
    }

    /// Keeps only the paths `keep` says, after a scan.
    pub(crate) fn retain(&mut self, keep: impl Fn(&RelPath) -> bool) {
        self.files.retain(|p, _| keep(p));
    }

    /// The path and manifest the table holds for `path`, as held.
    #[cfg(test)]
    pub(crate) fn held(&self, path: &RelPath) -> Option<(&RelPath, &FileManifest)> {
        self.files
            .get_key_value(path)
            .map(|(p, s)| (p, &s.manifest))
    }

    pub(crate) fn forget(&mut self, path: &RelPath) {
        self.files.remove(path);
    }

    /// Makes room for `more` files at once: a write makes room for every file it is to write
    /// before it writes them (the pages are taken as entries land), where a table grown step
    /// by step holds its old and new buckets together at each step (~22 MB at the last one
    /// for 100k files).
    pub(crate) fn reserve(&mut self, more: usize) {
        self.files.reserve(more);
    }

    /// Records a file this process just wrote, as it is on disk now, so a writer knows it.
    /// `settled`: the writer saw the file keep the size, mtime and inode it had after its last
    /// write until it was renamed into place, at least a tick ([`settles_after`]) later, so a
    /// save after the rename shows in the stamp and a scan need not read it back. Otherwise
    /// (a save within the tick of the write would leave the same stamp) the next scan reads
    /// it again. Only for content whose manifest is known to be what was written.
    pub fn remember(
        &mut self,
        path: RelPath,
        stamp: &Stamp,
        manifest: FileManifest,
        settled: bool,
    ) {
        if stamp.size == manifest.size() {
            self.files.insert(
                path,
                Seen {
                    stamp: *stamp,
                    manifest,
                    trusted: settled,
                },
            );
        }
    }

    /// Whether `path` holds what the last scan saw there, `now` being what is there now
    /// (`None`: nothing). A writer about to replace or remove a file asks this right before
    /// doing so, and leaves alone a file changed since.
    pub fn check(&self, path: &RelPath, now: Option<&OnDisk>) -> Verdict {
        match (self.files.get(path), now) {
            (None, None) => Verdict::Unchanged,
            (Some(seen), Some(OnDisk::File(stamp))) if seen.stamp == *stamp => {
                if seen.trusted {
                    Verdict::Unchanged
                } else {
                    Verdict::CompareContent(seen.manifest.clone())
                }
            }
            (None, Some(OnDisk::Other)) => Verdict::Unchanged,
            _ => Verdict::Changed,
        }
    }

    /// True when the last scan saw no file at `path` (something else may have been there).
    pub(crate) fn saw_no_file(&self, path: &RelPath) -> bool {
        !self.files.contains_key(path)
    }

    /// [`check`](Self::check) for a caller that cannot compare content: a racy file counts as
    /// changed.
    pub fn unchanged(&self, path: &RelPath, now: Option<&OnDisk>) -> bool {
        self.check(path, now) == Verdict::Unchanged
    }
}

/// True when a file with `stamp`, read at `read_at`, may have been changed again within the
/// same tick without its stamp showing it.
pub(crate) fn is_racy(stamp: &Stamp, read_at: SystemTime) -> bool {
    let at = read_at
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i128);
    i128::from(stamp.mtime_ns) >= at - RACY_WINDOW.as_nanos() as i128
        || i128::from(stamp.ctime_ns) >= at - RACY_WINDOW.as_nanos() as i128
}

#[cfg(test)]
impl ScanCache {
    /// Pretends the last scan read `manifest` at `path` with this stamp, at `read_at`.
    pub(crate) fn pretend(
        &mut self,
        path: RelPath,
        stamp: Stamp,
        manifest: FileManifest,
        read_at: SystemTime,
    ) {
        self.read(path, stamp, manifest, read_at);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a write remembered wins over what the table knew for the same path, the rest of
    /// the table stays, whichever of the two is larger (the larger one is kept).
    #[test]
    fn a_write_absorbed_wins_where_it_wrote_and_the_rest_is_kept() {
        let stamp = |n: u64| Stamp {
            size: 1,
            mtime_ns: n as i64,
            ctime_ns: n as i64,
            ino: n,
        };
        let m = |n: u8| FileManifest {
            chunks: vec![chorus_chunking::ChunkRef {
                id: chorus_chunking::ChunkId([n; 32]),
                len: 1,
            }]
            .into(),
        };
        let path = |i: usize| RelPath::new(format!("f{i}")).unwrap();
        // The table knows `known` paths, the write wrote `wrote` (the first two in both).
        for (known, wrote) in [(5, 2), (2, 5)] {
            let mut table = ScanCache::new();
            for i in 0..known {
                table.remember(path(i), &stamp(1), m(1), true);
            }
            let mut written = ScanCache::new();
            for i in 0..wrote {
                written.remember(path(i), &stamp(2), m(2), false);
            }
            table.absorb(written);
            assert_eq!(table.len(), known.max(wrote));
            for i in 0..known.max(wrote) {
                let expected = if i < wrote {
                    (m(2), false)
                } else {
                    (m(1), true)
                };
                let s = if i < wrote { stamp(2) } else { stamp(1) };
                let got = table.seen(&path(i), &s).map(|(m, t)| (m.clone(), t));
                assert_eq!(got, Some(expected), "f{i} ({known} known, {wrote} written)");
            }
        }
    }

    /// A big file is hinted with what it held; a new one with the big file beside it whose
    /// name it shares most of, never with one elsewhere or for a small file.
    #[test]
    fn a_new_big_file_is_hinted_with_its_nearest_named_neighbour() {
        let big = |size: u64| Stamp {
            size,
            mtime_ns: 1,
            ctime_ns: 1,
            ino: 1,
        };
        let m = |n: u8| FileManifest {
            chunks: vec![chorus_chunking::ChunkRef {
                id: chorus_chunking::ChunkId([n; 32]),
                len: 1,
            }]
            .into(),
        };
        let mut cache = ScanCache::new();
        let at = SystemTime::UNIX_EPOCH;
        let path = |p: &str| RelPath::new(p).unwrap();
        cache.read(path("d/movie.mkv"), big(100 << 20), m(1), at);
        cache.read(path("d/notes.bin"), big(90 << 20), m(2), at);
        cache.read(path("e/movie.mkv.part"), big(100 << 20), m(3), at);
        cache.read(path("d/small"), big(1 << 20), m(4), at);
        let hint = |p: &str, size: u64| cache.hint(&path(p), &big(size), 64 << 20);
        assert_eq!(hint("d/notes.bin", 100 << 20), Some(m(2)), "its own");
        assert_eq!(hint("d/movie.mkv.tmp", 100 << 20), Some(m(1)));
        assert_eq!(hint("d/.movie.mkv.swp", 100 << 20), Some(m(1)));
        assert_eq!(hint("d/other", 91 << 20), Some(m(2)), "the nearest size");
        assert_eq!(
            hint("f/movie.mkv", 100 << 20),
            None,
            "not from another directory"
        );
        assert_eq!(
            hint("d/movie.mkv.tmp", 1 << 20),
            None,
            "read whole: no hint"
        );
    }

    fn stamp(mtime_ns: i64) -> Stamp {
        Stamp {
            size: 10,
            mtime_ns,
            ctime_ns: mtime_ns,
            ino: 7,
        }
    }

    #[test]
    fn times_beyond_an_i64_of_nanoseconds_are_held_at_its_ends_and_a_far_mtime_is_racy() {
        assert_eq!(nanos(1_700_000_000, 5), 1_700_000_000_000_000_005);
        assert_eq!(nanos(-1, 999_999_999), -1);
        assert_eq!(nanos(10_000_000_000, 0), i64::MAX);
        assert_eq!(nanos(-10_000_000_000, 0), i64::MIN);
        let far = Stamp {
            mtime_ns: i64::MAX,
            ctime_ns: nanos(1_700_000_000, 0),
            ..stamp(0)
        };
        assert!(is_racy(&far, SystemTime::now()), "its content is compared");
    }

    #[test]
    fn a_written_file_is_believed_only_when_renamed_a_tick_after_its_last_write_unchanged() {
        let wrote = stamp(1_700_000_000_123_456_789);
        let at = Instant::now();
        let renamed = Stamp {
            ctime_ns: wrote.ctime_ns + 60_000_000,
            ..wrote
        };
        let ms = Duration::from_millis;
        assert!(settled(&wrote, at, at + ms(60), &renamed));
        // Renamed within a tick of its last write: a save just after could share its mtime.
        assert!(!settled(&wrote, at, at + ms(5), &renamed));
        // Written again, grown, or another file by the time of the rename's stat.
        for now in [
            Stamp {
                mtime_ns: wrote.mtime_ns + 1,
                ..renamed
            },
            Stamp {
                size: 11,
                ..renamed
            },
            Stamp { ino: 8, ..renamed },
        ] {
            assert!(!settled(&wrote, at, at + ms(60), &now), "{now:?}");
        }
        // Whole-second timestamps (FAT keeps two): the full window.
        let coarse = stamp(1_700_000_000_000_000_000);
        assert!(!settled(&coarse, at, at + ms(1500), &coarse));
        assert!(settled(&coarse, at, at + RACY_WINDOW, &coarse));
    }

    #[test]
    fn a_written_file_not_settled_is_read_again_by_the_next_scan() {
        let path = RelPath::new("f").unwrap();
        let m = FileManifest::default();
        let s = Stamp {
            size: 0,
            ..stamp(5)
        };
        let mut cache = ScanCache::new();
        cache.remember(path.clone(), &s, m.clone(), false);
        assert!(cache.reuse(&path, &s).is_none());
        assert_eq!(
            cache.check(&path, Some(&OnDisk::File(s))),
            Verdict::CompareContent(m.clone())
        );
        cache.remember(path.clone(), &s, m.clone(), true);
        assert_eq!(cache.reuse(&path, &s), Some(&m));
    }
}
