//! A big file's bytes written and read past the page cache (`O_DIRECT`), in aligned blocks
//! gathered in a buffer of our own.
//!
//! Writing a 1 GiB file through the page cache costs a gibibyte of fresh page-cache pages,
//! and on a virtual machine whose freed memory goes back to its host (free page reporting,
//! as on the machines this project is measured on) each fresh page is a fault on the host:
//! 1 GiB read into the cache took 2.9 s there, against 0.67 s read past it, and the copy of
//! a big file's unchanged chunks ran at 400 MB/s. Past the cache, the bytes go from our
//! buffer to the disk, and the old file a big edit takes its chunks from is read the same way.
//!
//! Every file system does not take `O_DIRECT` (tmpfs refuses it; some want larger blocks):
//! a file whose flag is refused, or whose first direct write is, is written through the page
//! cache as before, by the same calls.

use std::os::unix::fs::FileExt;

use rustix::fs::OFlags;

/// The alignment of direct transfers: offsets, lengths and memory (every common device's
/// logical block divides it).
const ALIGN: usize = 4096;
/// The buffer a direct writer gathers, and a direct reader reads ahead, at most.
const WINDOW: usize = 8 << 20;
/// Files at least this big are written past the page cache (3 MiB in unit tests, so that
/// their big files, 4 MiB and more, go this way and their 2 MiB ones the other).
pub(crate) const DIRECT_MIN: u64 = if cfg!(test) { 3 << 20 } else { 64 << 20 };

/// `len` bytes of memory aligned to [`ALIGN`], without `unsafe`: a vector with room to
/// start at an aligned address.
struct Aligned {
    mem: Vec<u8>,
    start: usize,
}

impl Aligned {
    fn new(len: usize) -> Self {
        let mem = vec![0u8; len + ALIGN];
        let start = mem.as_ptr().align_offset(ALIGN);
        Aligned { mem, start }
    }

    fn buf(&mut self) -> &mut [u8] {
        let len = self.mem.len() - ALIGN;
        &mut self.mem[self.start..self.start + len]
    }

    fn get(&self) -> &[u8] {
        let len = self.mem.len() - ALIGN;
        &self.mem[self.start..self.start + len]
    }
}

/// Sets or clears `O_DIRECT` on `f`.
fn set_direct(f: &std::fs::File, on: bool) -> std::io::Result<()> {
    let flags = rustix::fs::fcntl_getfl(f)?;
    let flags = if on {
        flags | OFlags::DIRECT
    } else {
        flags - OFlags::DIRECT
    };
    rustix::fs::fcntl_setfl(f, flags)?;
    Ok(())
}

/// A file written front to back past the page cache: bytes are gathered in a buffer and
/// written in whole aligned blocks; all-zero blocks are left as holes; the last partial block
/// goes through the page cache at [`finish`](Self::finish).
pub(crate) struct DirectWriter<'f> {
    f: &'f std::fs::File,
    buf: Aligned,
    /// Where the buffer's first byte goes in the file (a multiple of [`ALIGN`]).
    at: u64,
    filled: usize,
    /// Still writing past the page cache (a refused write turns it off for good).
    direct: bool,
    /// Where the bytes written so far end (short of the file's end after a trailing hole).
    written_to: u64,
}

impl<'f> DirectWriter<'f> {
    /// A writer for the empty file `f`, or None when its file system refuses `O_DIRECT`.
    pub(crate) fn new(f: &'f std::fs::File) -> Option<Self> {
        set_direct(f, true).ok()?;
        Some(DirectWriter {
            f,
            buf: Aligned::new(WINDOW),
            at: 0,
            filled: 0,
            direct: true,
            written_to: 0,
        })
    }

    /// Where the next byte goes.
    pub(crate) fn end(&self) -> u64 {
        self.at + self.filled as u64
    }

    /// Appends `bytes`.
    pub(crate) fn push(&mut self, mut bytes: &[u8]) -> std::io::Result<()> {
        while !bytes.is_empty() {
            if self.filled == WINDOW {
                self.flush()?;
            }
            let n = bytes.len().min(WINDOW - self.filled);
            self.buf.buf()[self.filled..self.filled + n].copy_from_slice(&bytes[..n]);
            self.filled += n;
            bytes = &bytes[n..];
        }
        Ok(())
    }

    /// Appends `len` bytes of `from` at `off`, read straight into the buffer.
    pub(crate) fn push_from(
        &mut self,
        from: &mut DirectReader<'_>,
        mut off: u64,
        mut len: u64,
    ) -> std::io::Result<()> {
        while len > 0 {
            if self.filled == WINDOW {
                self.flush()?;
            }
            let n = usize::try_from(len)
                .unwrap_or(usize::MAX)
                .min(WINDOW - self.filled);
            let filled = self.filled;
            from.read_exact_at(&mut self.buf.buf()[filled..filled + n], off)?;
            self.filled += n;
            off += n as u64;
            len -= n as u64;
        }
        Ok(())
    }

    /// Writes the buffer's whole blocks, all-zero ones as holes, and keeps the partial one.
    fn flush(&mut self) -> std::io::Result<()> {
        let whole = self.filled / ALIGN * ALIGN;
        let mut i = 0;
        while i < whole {
            // A run of blocks that are not all zeros, written at once.
            let data = self.buf.get();
            if is_zero(&data[i..i + ALIGN]) {
                i += ALIGN;
                continue;
            }
            let mut j = i + ALIGN;
            while j < whole && !is_zero(&data[j..j + ALIGN]) {
                j += ALIGN;
            }
            self.write(i, j)?;
            i = j;
        }
        let rest = self.filled - whole;
        self.buf.buf().copy_within(whole..self.filled, 0);
        self.filled = rest;
        self.at += whole as u64;
        Ok(())
    }

    /// Writes `from..to` of the buffer at its place in the file.
    fn write(&mut self, from: usize, to: usize) -> std::io::Result<()> {
        let at = self.at + from as u64;
        if self.direct {
            match self.f.write_at(&self.buf.get()[from..to], at) {
                Ok(n) if n == to - from => {
                    self.written_to = at + n as u64;
                    return Ok(());
                }
                // A short direct write: the rest goes through the page cache.
                Ok(n) => return self.write_cached(from + n, to),
                // Refused (a block size it does not take): the page cache from here on.
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {}
                Err(e) => return Err(e),
            }
        }
        self.write_cached(from, to)
    }

    fn write_cached(&mut self, from: usize, to: usize) -> std::io::Result<()> {
        if self.direct {
            set_direct(self.f, false)?;
            self.direct = false;
        }
        let at = self.at + from as u64;
        self.f.write_all_at(&self.buf.get()[from..to], at)?;
        self.written_to = at + (to - from) as u64;
        Ok(())
    }

    /// Writes what is left and sets the file's length to all that was pushed (a trailing
    /// hole included).
    pub(crate) fn finish(mut self) -> std::io::Result<()> {
        self.flush()?;
        let end = self.end();
        if self.filled > 0 && !is_zero(&self.buf.get()[..self.filled]) {
            self.write_cached(0, self.filled)?;
        } else if self.direct {
            set_direct(self.f, false)?;
        }
        if self.written_to < end {
            self.f.set_len(end)?;
        }
        Ok(())
    }
}

/// The file a big edit takes its unchanged chunks from, read past the page cache through a
/// window of aligned blocks (the chunks come in the file's order, most of them from one
/// window); through the page cache when its file system refuses `O_DIRECT`.
pub(crate) struct DirectReader<'f> {
    f: &'f std::fs::File,
    buf: Aligned,
    /// Where the window starts in the file, and how many of its bytes were read.
    at: u64,
    len: usize,
    direct: bool,
}

impl<'f> DirectReader<'f> {
    pub(crate) fn new(f: &'f std::fs::File) -> Self {
        let direct = set_direct(f, true).is_ok();
        DirectReader {
            f,
            buf: Aligned::new(if direct { WINDOW } else { 0 }),
            at: 0,
            len: 0,
            direct,
        }
    }

    /// Fills `dst` with the file's bytes at `off`; fails past its end.
    pub(crate) fn read_exact_at(
        &mut self,
        mut dst: &mut [u8],
        mut off: u64,
    ) -> std::io::Result<()> {
        if !self.direct {
            return self.f.read_exact_at(dst, off);
        }
        while !dst.is_empty() {
            if off < self.at || off >= self.at + self.len as u64 {
                self.at = off / ALIGN as u64 * ALIGN as u64;
                self.len = 0;
                match self.f.read_at(self.buf.buf(), self.at) {
                    Ok(0) => return Err(std::io::ErrorKind::UnexpectedEof.into()),
                    Ok(n) => self.len = n,
                    Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                        // Refused after all: the page cache from here on.
                        set_direct(self.f, false)?;
                        self.direct = false;
                        return self.f.read_exact_at(dst, off);
                    }
                    Err(e) => return Err(e),
                }
                if off >= self.at + self.len as u64 {
                    return Err(std::io::ErrorKind::UnexpectedEof.into());
                }
            }
            let from = (off - self.at) as usize;
            let n = dst.len().min(self.len - from);
            dst[..n].copy_from_slice(&self.buf.get()[from..from + n]);
            dst = &mut dst[n..];
            off += n as u64;
        }
        Ok(())
    }
}

/// True when every byte of `b` is zero (stops within 64 bytes of the first that is not).
fn is_zero(b: &[u8]) -> bool {
    b.chunks(64)
        .all(|c| c.iter().fold(0u8, |acc, &x| acc | x) == 0)
}

#[cfg(test)]
#[path = "direct_tests.rs"]
mod tests;
