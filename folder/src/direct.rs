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
//! Not every file system takes `O_DIRECT` (tmpfs refused it before Linux 6.6; some want larger blocks):
//! a file whose flag is refused, or whose first direct write is, is written through the page
//! cache as before, by the same calls.

use std::os::unix::fs::FileExt;

use rustix::fs::OFlags;

/// The alignment of direct transfers: offsets, lengths and memory (every common device's
/// logical block divides it).
const ALIGN: usize = 4096;
/// Each of a direct writer's two buffers, and a direct reader's window: 12 MiB for a big file
/// being written (a 4 GiB file's sync stays within its memory goal, < 100 MB).
const WINDOW: usize = 4 << 20;
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
/// written in whole aligned blocks by a thread of its own (the next buffer fills meanwhile);
/// all-zero blocks are left as holes; the last partial block goes through the page cache at
/// [`finish`](Self::finish).
pub(crate) struct DirectWriter<'f> {
    f: &'f std::fs::File,
    buf: Aligned,
    /// Where the buffer's first byte goes in the file (a multiple of [`ALIGN`]).
    at: u64,
    filled: usize,
    /// The second buffer, until it is first handed over.
    spare: Option<Aligned>,
    /// The thread writing full buffers; None once it is done with.
    blocks: Option<Blocks>,
}

/// The writing thread: full buffers go to it, empty ones come back.
struct Blocks {
    full: std::sync::mpsc::SyncSender<(Aligned, u64, usize)>,
    empty: std::sync::mpsc::Receiver<Aligned>,
    thread: std::thread::JoinHandle<std::io::Result<Written>>,
}

/// What the writing thread did: where its bytes end, and whether it still writes past the
/// page cache.
struct Written {
    to: u64,
    direct: bool,
}

impl<'f> DirectWriter<'f> {
    /// A writer for `f`, just created (its bytes go from offset 0), or None when its file
    /// system refuses `O_DIRECT` (or no thread can be had).
    pub(crate) fn new(f: &'f std::fs::File) -> Option<Self> {
        let theirs = f.try_clone().ok()?;
        set_direct(f, true).ok()?;
        let (full, full_rx) = std::sync::mpsc::sync_channel::<(Aligned, u64, usize)>(1);
        let (empty_tx, empty) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("chorus-write".into())
            .spawn(move || {
                let mut w = Written {
                    to: 0,
                    direct: true,
                };
                for (buf, at, len) in full_rx {
                    write_blocks(&theirs, &buf.get()[..len], at, &mut w)?;
                    // The writer may have stopped taking buffers back (it is finishing).
                    let _ = empty_tx.send(buf);
                }
                Ok(w)
            });
        let Ok(thread) = thread else {
            let _ = set_direct(f, false);
            return None;
        };
        Some(DirectWriter {
            f,
            buf: Aligned::new(WINDOW),
            at: 0,
            filled: 0,
            spare: Some(Aligned::new(WINDOW)),
            blocks: Some(Blocks {
                full,
                empty,
                thread,
            }),
        })
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

    /// Appends `len` bytes of `from` at `off`, copied from the reader's window into the
    /// buffer. A failed read ([`PushError::Read`]: `from` is shorter than that) and a failed
    /// write of what was handed before ([`PushError::Write`]) are told apart.
    pub(crate) fn push_from(
        &mut self,
        from: &mut DirectReader<'_>,
        mut off: u64,
        mut len: u64,
    ) -> Result<(), PushError> {
        while len > 0 {
            if self.filled == WINDOW {
                self.flush().map_err(PushError::Write)?;
            }
            let n = usize::try_from(len)
                .unwrap_or(usize::MAX)
                .min(WINDOW - self.filled);
            let filled = self.filled;
            from.read_exact_at(&mut self.buf.buf()[filled..filled + n], off)
                .map_err(PushError::Read)?;
            self.filled += n;
            off += n as u64;
            len -= n as u64;
        }
        Ok(())
    }

    /// Hands the buffer's whole blocks to the writing thread and goes on with the partial
    /// one in the other buffer.
    fn flush(&mut self) -> std::io::Result<()> {
        let whole = self.filled / ALIGN * ALIGN;
        if whole == 0 {
            return Ok(());
        }
        let blocks = self.blocks.as_ref().expect("flushed before it is finished");
        let next = match self.spare.take() {
            Some(b) => Some(b),
            None => blocks.empty.recv().ok(),
        };
        // No buffer back: the thread stopped at an error, which `finish` (or this) returns.
        let Some(mut next) = next else {
            return Err(self.stopped());
        };
        next.buf()[..self.filled - whole].copy_from_slice(&self.buf.get()[whole..self.filled]);
        let full = std::mem::replace(&mut self.buf, next);
        if blocks.full.send((full, self.at, whole)).is_err() {
            return Err(self.stopped());
        }
        self.filled -= whole;
        self.at += whole as u64;
        Ok(())
    }

    /// The error the writing thread stopped at.
    fn stopped(&mut self) -> std::io::Error {
        match self.join() {
            Err(e) => e,
            Ok(_) => std::io::Error::other("the writing thread stopped"),
        }
    }

    /// Waits for the writing thread to write what it was handed.
    fn join(&mut self) -> std::io::Result<Written> {
        let Some(Blocks { full, thread, .. }) = self.blocks.take() else {
            return Err(std::io::Error::other("the writing thread stopped"));
        };
        drop(full);
        thread
            .join()
            .unwrap_or_else(|_| Err(std::io::Error::other("the writing thread panicked")))
    }

    /// Writes what is left and sets the file's length to all that was pushed (a trailing
    /// hole included).
    pub(crate) fn finish(mut self) -> std::io::Result<()> {
        self.flush()?;
        let mut w = self.join()?;
        if w.direct {
            set_direct(self.f, false)?;
        }
        let end = self.at + self.filled as u64;
        let tail = &self.buf.get()[..self.filled];
        if !tail.is_empty() && !is_zero(tail) {
            self.f.write_all_at(tail, self.at)?;
            w.to = end;
        }
        if w.to < end {
            self.f.set_len(end)?;
        }
        Ok(())
    }
}

impl Drop for DirectWriter<'_> {
    /// A writer dropped unfinished (the write failed, or starts over) waits for its thread,
    /// so that nothing it was handed lands after the caller goes on with the file, and gives
    /// the file back without `O_DIRECT`.
    fn drop(&mut self) {
        if self.blocks.is_some() {
            let _ = self.join();
            let _ = set_direct(self.f, false);
        }
    }
}

/// Why [`DirectWriter::push_from`] failed.
#[derive(Debug)]
pub(crate) enum PushError {
    /// Reading the old file (it is shorter than its chunks say: it changed).
    Read(std::io::Error),
    /// Writing the new one (a full disk, an I/O error).
    Write(std::io::Error),
}

/// Writes `bytes`, whole aligned blocks, at `at`: runs of blocks that are not all zeros at
/// once, all-zero ones left as holes; through the page cache once a direct write is refused.
fn write_blocks(f: &std::fs::File, bytes: &[u8], at: u64, w: &mut Written) -> std::io::Result<()> {
    let mut i = 0;
    while i < bytes.len() {
        if is_zero(&bytes[i..i + ALIGN]) {
            i += ALIGN;
            continue;
        }
        let mut j = i + ALIGN;
        while j < bytes.len() && !is_zero(&bytes[j..j + ALIGN]) {
            j += ALIGN;
        }
        let run = &bytes[i..j];
        let run_at = at + i as u64;
        let mut done = 0;
        if w.direct {
            match f.write_at(run, run_at) {
                Ok(n) => done = n,
                // Refused (a block size it does not take): the page cache from here on.
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {}
                Err(e) => return Err(e),
            }
            if done < run.len() {
                // Refused, or short (the rest would not be aligned): through the page cache.
                set_direct(f, false)?;
                w.direct = false;
            }
        }
        f.write_all_at(&run[done..], run_at + done as u64)?;
        w.to = run_at + run.len() as u64;
        i = j;
    }
    Ok(())
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
    /// A reader of `f`: past the page cache unless most of it is cached already (read from
    /// there, 0.2 s a GiB here against 0.67 s from the disk), or its file system refuses.
    pub(crate) fn new(f: &'f std::fs::File) -> Self {
        let direct = !mostly_cached(f) && set_direct(f, true).is_ok();
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
                // Going on from the window's end: a whole window ahead. Elsewhere (a chunk
                // out of order, a duplicate's first place): just the blocks this read needs,
                // so that a file whose chunks alternate between two places does not read a
                // whole window at each turn.
                let onward = off == self.at + self.len as u64;
                self.at = off / ALIGN as u64 * ALIGN as u64;
                self.len = 0;
                let want = if onward {
                    WINDOW
                } else {
                    let end = off.saturating_add(dst.len() as u64);
                    usize::try_from((end - self.at).div_ceil(ALIGN as u64) * ALIGN as u64)
                        .unwrap_or(WINDOW)
                        .min(WINDOW)
                };
                match self.f.read_at(&mut self.buf.buf()[..want], self.at) {
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

/// True when the kernel says at least half of `f`'s pages are in the page cache
/// (`cachestat`, Linux 6.5 and later; false when it cannot say).
fn mostly_cached(f: &std::fs::File) -> bool {
    #[cfg(all(
        target_os = "linux",
        any(
            target_arch = "x86_64",
            target_arch = "aarch64",
            target_arch = "riscv64"
        )
    ))]
    {
        use std::os::fd::AsRawFd;
        /// `cachestat`'s number on these architectures (the unified table; not MIPS's or
        /// Alpha's).
        const SYS_CACHESTAT: libc::c_long = 451;
        #[repr(C)]
        struct Range {
            off: u64,
            len: u64,
        }
        #[repr(C)]
        #[derive(Default)]
        struct Counts {
            cache: u64,
            dirty: u64,
            writeback: u64,
            evicted: u64,
            recently_evicted: u64,
        }
        let Ok(st) = rustix::fs::fstat(f) else {
            return false;
        };
        let pages = (st.st_size as u64).div_ceil(rustix::param::page_size() as u64);
        // The whole file (a length of 0 reaches its end).
        let range = Range { off: 0, len: 0 };
        let mut counts = Counts::default();
        // SAFETY: the kernel reads `range` and writes `counts`, both live and of the layouts
        // it expects (`struct cachestat_range`, `struct cachestat`), during the call only.
        let r = unsafe {
            libc::syscall(
                SYS_CACHESTAT,
                f.as_raw_fd(),
                &raw const range,
                &raw mut counts,
                0u32,
            )
        };
        r == 0 && pages > 0 && counts.cache * 2 >= pages
    }
    #[cfg(not(all(
        target_os = "linux",
        any(
            target_arch = "x86_64",
            target_arch = "aarch64",
            target_arch = "riscv64"
        )
    )))]
    {
        let _ = f;
        false
    }
}

/// True when every byte of `b` is zero (stops within 64 bytes of the first that is not).
pub(crate) fn is_zero(b: &[u8]) -> bool {
    b.chunks(64)
        .all(|c| c.iter().fold(0u8, |acc, &x| acc | x) == 0)
}

/// Closes `f` on a thread of its own (freeing a big file's blocks takes a while); here when
/// no thread can be had.
pub(crate) fn close_later(f: std::fs::File) {
    let _ = std::thread::Builder::new()
        .name("chorus-close".into())
        .spawn(move || drop(f));
}

#[cfg(test)]
#[path = "direct_tests.rs"]
mod tests;
