//! Reading one file into chunks: whole in memory up to a bound, streamed beyond it, read
//! again if it changes while being read. A read error is the file's own (the scan keeps what
//! it last knew of it); a chunk store error is the state dir's, and stops the scan.

use std::fs;
use std::io::{Read, Seek, SeekFrom};
use std::os::fd::AsFd;

use chorus_chunking::chunker::{
    ChunkerParams, chunk_bytes, chunk_bytes_parallel, file_manifest_resynced,
};
use chorus_chunking::{ChunkRef, ChunkStore, Error, FileManifest, RelPath};

use crate::cache::{ScanCache, Stamp};

/// Files up to this size are read whole and chunked in memory (the cut and the hashing split
/// over two cores from 4 MiB on); larger ones stream through a reader thread and a hashing
/// thread in a few blocks of memory.
const WHOLE_READ_MAX: u64 = 64 << 20;
const PARALLEL_ABOVE: usize = 4 << 20;

/// What a scan gives [`read_file`] as the hint for `path`, now `stamp`: for a file streamed
/// (the ones a hint helps), what it or the big file beside it held ([`ScanCache::hint`]).
pub(crate) fn hint(cache: &ScanCache, path: &RelPath, stamp: &Stamp) -> Option<FileManifest> {
    cache.hint(path, stamp, WHOLE_READ_MAX)
}

/// Why a file could not be read.
#[derive(Debug)]
pub(crate) enum ReadError {
    /// The file's own problem (permissions, I/O error): it stays unknown.
    File(std::io::Error),
    /// The chunk store failed.
    Store(Error),
}

/// Where chunks of a read go: the store, or nowhere (a comparison).
pub(crate) type Sink<'a> = Option<&'a dyn ChunkStore>;

/// Reads and chunks the open file `f`, whose stat said `stamp`. If it changes while being
/// read, it is read again (a few times); the stamp returned is the one its content matches,
/// or `None` for one that kept changing (never to be trusted from the cache). `hint`: what
/// the file held when last read, if known; a streamed file's chunks found again there are
/// hashed rather than cut (the same manifest, faster).
pub(crate) fn read_file(
    mut f: fs::File,
    stamp: Stamp,
    params: ChunkerParams,
    sink: Sink<'_>,
    hint: Option<&FileManifest>,
) -> Result<(Option<Stamp>, FileManifest), ReadError> {
    let mut before = stamp;
    let mut last = None;
    for _ in 0..3 {
        f.seek(SeekFrom::Start(0)).map_err(ReadError::File)?;
        let hint = last.as_ref().or(hint);
        let m = chunk_open_file(&mut f, before.size, WHOLE_READ_MAX, params, sink, hint)?;
        let st = rustix::fs::fstat(f.as_fd()).map_err(|e| ReadError::File(e.into()))?;
        let after = Stamp::of(&st);
        if after == before && m.size() == after.size {
            return Ok((Some(after), m));
        }
        before = after;
        last = Some(m);
    }
    f.seek(SeekFrom::Start(0)).map_err(ReadError::File)?;
    let hint = last.as_ref().or(hint);
    let m = chunk_open_file(&mut f, before.size, WHOLE_READ_MAX, params, sink, hint)?;
    Ok((None, m))
}

/// Chunks an open file of (about) `size` bytes. `size` is what a `stat` said; a file still
/// being written may hold more by the time it is read, so the whole read stops at `whole_max`
/// and, past it, the file is streamed from its start instead: memory stays bounded.
pub(crate) fn chunk_open_file(
    f: &mut fs::File,
    size: u64,
    whole_max: u64,
    params: ChunkerParams,
    sink: Sink<'_>,
    hint: Option<&FileManifest>,
) -> Result<FileManifest, ReadError> {
    let mut store_error = None;
    let mut put = |r: ChunkRef, bytes: &[u8]| match sink {
        Some(store) => store.put(&r.id, bytes).map_err(|e| {
            store_error = Some(e);
            Error::Invalid("the chunk store failed".into())
        }),
        None => Ok(()),
    };
    let split = |e: Error, store_error: Option<Error>| match (e, store_error) {
        (_, Some(s)) => ReadError::Store(s),
        (Error::Io { source, .. }, None) => ReadError::File(source),
        (e, None) => ReadError::File(std::io::Error::other(e)),
    };
    if size > whole_max {
        let clone = f.try_clone().map_err(ReadError::File)?;
        return file_manifest_resynced(clone, params, hint, &mut put)
            .map_err(|e| split(e, store_error.take()));
    }
    let mut data = Vec::with_capacity(size as usize);
    f.take(whole_max + 1)
        .read_to_end(&mut data)
        .map_err(ReadError::File)?;
    if data.len() as u64 > whole_max {
        drop(data);
        f.seek(SeekFrom::Start(0)).map_err(ReadError::File)?;
        let clone = f.try_clone().map_err(ReadError::File)?;
        return file_manifest_resynced(clone, params, hint, &mut put)
            .map_err(|e| split(e, store_error.take()));
    }
    let m = if data.len() >= PARALLEL_ABOVE {
        chunk_bytes_parallel(&data, params)
    } else {
        chunk_bytes(&data, params)
    };
    let mut pos = 0;
    for c in m.chunks.iter() {
        if let Some(store) = sink {
            store
                .put(&c.id, &data[pos..pos + c.len as usize])
                .map_err(ReadError::Store)?;
        }
        pos += c.len as usize;
    }
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chorus_chunking::MemStore;

    #[test]
    fn a_file_grown_past_the_whole_read_bound_since_its_stat_is_streamed_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("growing");
        let bytes: Vec<u8> = (0..300_000u32).map(|i| (i * 7 + i / 251) as u8).collect();
        fs::write(&path, &bytes).unwrap();
        let store = MemStore::new();
        let params = ChunkerParams::new(256, 1024, 4096).unwrap();
        // The stat said 100 bytes; the file holds far more than the 4 KiB read whole.
        let mut f = fs::File::open(&path).unwrap();
        let m = chunk_open_file(&mut f, 100, 4096, params, Some(&store), None).unwrap();
        assert_eq!(
            m,
            chunk_bytes(&bytes, params),
            "the whole file, not its first 4 KiB"
        );
        for c in m.chunks.iter() {
            assert!(store.get(&c.id).unwrap().is_some());
        }
    }

    /// A streamed file read with what it held before as the hint (as a scan does after an
    /// edit), with a stale hint and with another file's: the manifest is the one read without,
    /// and every chunk is stored.
    #[test]
    fn a_streamed_file_read_with_a_hint_gives_the_manifest_read_without() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big");
        let params = ChunkerParams::new(256, 1024, 4096).unwrap();
        let old = chorus_sync::testing::noise(11, 3 << 20);
        let mut new = old.clone();
        new.splice(
            1 << 20..(1 << 20) + 100,
            b"an inserted line\n".iter().copied(),
        );
        new[2 << 20] ^= 1;
        let other = chorus_sync::testing::noise(12, 3 << 20);
        fs::write(&path, &new).unwrap();
        for hint in [&old, &new, &other] {
            let hint = chunk_bytes(hint, params);
            let store = MemStore::new();
            let mut f = fs::File::open(&path).unwrap();
            let m = chunk_open_file(&mut f, 3 << 20, 4096, params, Some(&store), Some(&hint))
                .map_err(|_| "read")
                .unwrap();
            assert_eq!(m, chunk_bytes(&new, params));
            for c in m.chunks.iter() {
                assert!(store.get(&c.id).unwrap().is_some());
            }
        }
    }
}
