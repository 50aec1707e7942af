//! Unit tests of writing and reading past the page cache: the bytes are the ones pushed,
//! whatever the pushes' sizes and the windows they cross; all-zero blocks are holes; the
//! reader gives any range; a file system that refuses `O_DIRECT` gets the same bytes.

use std::os::unix::fs::MetadataExt;

use chorus_sync::testing::noise;
use proptest::prelude::*;

use super::{ALIGN, DirectReader, DirectWriter, WINDOW};

/// Folders to try: the temp dir (a disk here; tmpfs on some machines, which refuses
/// `O_DIRECT`) and /dev/shm (tmpfs, when there is one).
fn dirs() -> Vec<tempfile::TempDir> {
    let mut dirs = vec![tempfile::tempdir().unwrap()];
    if let Ok(d) = tempfile::tempdir_in("/dev/shm") {
        dirs.push(d);
    }
    dirs
}

/// Writes `pieces` one after another with a writer on a new file in `dir`; None when the
/// file system refuses `O_DIRECT`.
fn write(dir: &std::path::Path, pieces: &[&[u8]]) -> Option<(std::fs::File, std::path::PathBuf)> {
    let path = dir.join("f");
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)
        .unwrap();
    let mut w = DirectWriter::new(&f)?;
    for p in pieces {
        w.push(p).unwrap();
    }
    w.finish().unwrap();
    Some((f, path))
}

#[test]
fn a_file_is_the_bytes_pushed_across_windows_and_unaligned_ends() {
    let bytes = noise(1, 2 * WINDOW + 3 * ALIGN + 17);
    // Pieces of odd sizes, one larger than a window.
    let cuts = [0, 1, 4095, 4097, 70_000, WINDOW + 9_000, bytes.len()];
    let pieces: Vec<&[u8]> = cuts.windows(2).map(|w| &bytes[w[0]..w[1]]).collect();
    for d in dirs() {
        match write(d.path(), &pieces) {
            Some((_, path)) => assert_eq!(std::fs::read(path).unwrap(), bytes),
            None => eprintln!(
                "{}: O_DIRECT refused (the page cache writes it)",
                d.path().display()
            ),
        }
    }
}

#[test]
fn all_zero_blocks_are_holes_and_a_trailing_hole_keeps_the_length() {
    let data = noise(2, 100_000);
    let zeros = vec![0u8; 3 * WINDOW];
    let pieces: [&[u8]; 4] = [&data, &zeros, &data, &zeros];
    let want = [&data[..], &zeros, &data, &zeros].concat();
    let d = tempfile::tempdir().unwrap();
    let Some((_, path)) = write(d.path(), &pieces) else {
        eprintln!("SKIPPED: the temp dir's file system refuses O_DIRECT");
        return;
    };
    assert_eq!(std::fs::read(&path).unwrap(), want);
    let allocated = std::fs::metadata(&path).unwrap().blocks() * 512;
    assert!(
        allocated < 1 << 20,
        "{allocated} bytes allocated of {}",
        want.len()
    );
}

#[test]
fn the_reader_gives_any_range_and_fails_past_the_end() {
    let bytes = noise(3, WINDOW + 5 * ALIGN + 123);
    for d in dirs() {
        let path = d.path().join("g");
        std::fs::write(&path, &bytes).unwrap();
        let f = std::fs::File::open(&path).unwrap();
        let mut r = DirectReader::new(&f);
        // Forwards, backwards, across the window's end, the very last byte.
        for (off, len) in [
            (0usize, 10usize),
            (5000, 70_000),
            (WINDOW - 100, 300),
            (17, 4096),
            (bytes.len() - 1, 1),
            (0, bytes.len()),
        ] {
            let mut got = vec![0u8; len];
            r.read_exact_at(&mut got, off as u64).unwrap();
            assert_eq!(got, bytes[off..off + len], "at {off}, {len} bytes");
        }
        let mut past = vec![0u8; 10];
        assert!(r.read_exact_at(&mut past, bytes.len() as u64 - 5).is_err());
        assert!(
            r.read_exact_at(&mut past, bytes.len() as u64 + 4096)
                .is_err()
        );
    }
}

/// Chunks that alternate between two places of the old file (a sparse image's data and its
/// first zero chunk, which every zero chunk after it names) read the blocks they need at each
/// turn, not a whole window: what was read stays a few times the bytes asked for.
#[test]
fn reads_that_jump_back_and_forth_read_only_what_they_need() {
    let bytes = noise(6, 3 * WINDOW);
    let d = tempfile::tempdir().unwrap();
    let path = d.path().join("j");
    std::fs::write(&path, &bytes).unwrap();
    let f = std::fs::File::open(&path).unwrap();
    f.sync_all().unwrap();
    rustix::fs::fadvise(&f, 0, None, rustix::fs::Advice::DontNeed).unwrap();
    let mut r = DirectReader::new(&f);
    if !r.direct {
        eprintln!("SKIPPED: the temp dir's file system refuses O_DIRECT, or keeps its pages");
        return;
    }
    let (mut asked, mut read) = (0u64, 0u64);
    let mut got = vec![0u8; 65_536];
    for i in 0..64u64 {
        for off in [100, WINDOW as u64 + 70_000 * i] {
            let before = (r.at, r.len);
            r.read_exact_at(&mut got, off).unwrap();
            assert_eq!(got, bytes[off as usize..off as usize + got.len()]);
            asked += got.len() as u64;
            if (r.at, r.len) != before {
                read += r.len as u64;
            }
        }
    }
    assert!(read <= 3 * asked, "{read} bytes read for {asked} asked");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Any pieces, some all zeros, read back whole and in ranges through a reader.
    #[test]
    fn what_is_written_reads_back(
        sizes in proptest::collection::vec((0usize..300_000, any::<bool>()), 1..40),
        seed in any::<u64>(),
    ) {
        let pieces: Vec<Vec<u8>> = sizes
            .iter()
            .enumerate()
            .map(|(i, &(n, zero))| if zero { vec![0; n] } else { noise(seed ^ i as u64, n) })
            .collect();
        let want = pieces.concat();
        let refs: Vec<&[u8]> = pieces.iter().map(Vec::as_slice).collect();
        let d = tempfile::tempdir().unwrap();
        if let Some((f, path)) = write(d.path(), &refs) {
            prop_assert_eq!(std::fs::read(&path).unwrap(), want.clone());
            let mut r = DirectReader::new(&f);
            let mut at = 0usize;
            for p in &pieces {
                let mut got = vec![0u8; p.len()];
                r.read_exact_at(&mut got, at as u64).unwrap();
                prop_assert!(got == *p, "the piece at {}", at);
                at += p.len();
            }
        }
    }
}

/// A write that fails (here: a file open for reading only) is returned by a later push or by
/// `finish`, and nothing waits for ever; a writer dropped unfinished waits for its thread.
#[test]
fn a_failed_write_is_returned_and_nothing_hangs() {
    let d = tempfile::tempdir().unwrap();
    let path = d.path().join("ro");
    std::fs::write(&path, b"").unwrap();
    let f = std::fs::File::open(&path).unwrap();
    let Some(mut w) = DirectWriter::new(&f) else {
        eprintln!("SKIPPED: the temp dir's file system refuses O_DIRECT");
        return;
    };
    let bytes = noise(4, WINDOW);
    let mut failed = false;
    for _ in 0..4 {
        if w.push(&bytes).is_err() {
            failed = true;
            break;
        }
    }
    assert!(failed || w.finish().is_err(), "the failed write is told");

    let f = std::fs::File::open(&path).unwrap();
    let mut w = DirectWriter::new(&f).unwrap();
    w.push(&bytes).unwrap();
    w.push(&bytes[..100]).unwrap();
    drop(w);
}

/// The reader goes past the page cache only for a file mostly not in it: one just written is
/// cached; the same file after its pages are dropped is not.
#[test]
fn a_file_mostly_in_the_page_cache_is_read_from_it() {
    let d = tempfile::tempdir().unwrap();
    let path = d.path().join("c");
    std::fs::write(&path, noise(5, 4 << 20)).unwrap();
    let f = std::fs::File::open(&path).unwrap();
    if !super::mostly_cached(&f) {
        eprintln!("SKIPPED: the kernel does not tell what is cached (cachestat, Linux 6.5)");
        return;
    }
    assert!(!DirectReader::new(&f).direct, "read from the page cache");
    f.sync_all().unwrap();
    rustix::fs::fadvise(&f, 0, None, rustix::fs::Advice::DontNeed).unwrap();
    if super::mostly_cached(&f) {
        eprintln!("SKIPPED: this file system keeps its pages (tmpfs)");
        return;
    }
    assert!(DirectReader::new(&f).direct, "read past the page cache");
}
