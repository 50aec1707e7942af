//! The share marker, `.chorus-share` at a folder share's root, as Syncthing keeps `.stfolder`.
//!
//! An unmounted disk leaves an empty mount point, and a folder moved or deleted leaves
//! nothing: without a marker both look like a share whose files were all deleted. With it,
//! a folder without its marker is not the share: nothing is scanned or written until it is
//! back. `chorus init` and `chorus join` make it; a share that never had one (made by an
//! older chorus) gets it on its first scan, unless its folder is empty (then the user is
//! asked, since an empty folder is what an unmounted disk looks like). A document share
//! has none: its document's directory plays that part.

use std::io::{self, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::path::Path;

pub use chorus_chunking::SHARE_MARKER as MARKER;
use rustix::fs::{FileType, Mode, OFlags};

use crate::confined as c;

const TEXT: &[u8] =
    b"This folder is kept in sync by chorus. Leave this file here: without it chorus \
takes the folder for missing (a disk that is not mounted) and neither scans nor writes it.\n";

/// Makes the marker in the folder `root` (nothing if it is there).
pub fn create(root: &Path) -> io::Result<()> {
    let fd = c::open_root(root)?;
    create_at(fd.as_fd())
}

/// Makes the marker in the open root directory.
pub(crate) fn create_at(root: BorrowedFd<'_>) -> io::Result<()> {
    match rustix::fs::openat(
        root,
        MARKER,
        OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o644),
    ) {
        Ok(fd) => {
            let mut f = std::fs::File::from(fd);
            f.write_all(TEXT)?;
            f.sync_all()?;
            c::fsync(root)
        }
        Err(rustix::io::Errno::EXIST) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// True when the marker is in the open root directory, as a regular file.
pub(crate) fn present(root: BorrowedFd<'_>) -> io::Result<bool> {
    Ok(c::stat_at(root, MARKER)?.is_some_and(|st| c::kind(&st) == FileType::RegularFile))
}
