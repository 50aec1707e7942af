//! One line per failed path: what went wrong, and what the user can do about it.

use std::io;

/// The reason given to every path not tried once the disk is full.
pub const DISK_FULL: &str =
    "not written: the disk is full; free some space and it is written with the next version";

/// True for the errors that mean no more space (or quota).
pub fn is_disk_full(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOSPC | libc::EDQUOT))
}

/// What to tell the user about an error writing one path.
pub fn reason(e: &io::Error) -> String {
    let what = match e.raw_os_error() {
        Some(libc::ENAMETOOLONG) => {
            "its name is longer than this file system allows (255 bytes per name): rename it on another machine"
        }
        Some(libc::EACCES | libc::EPERM) => {
            "permission denied: make its directory writable (chmod u+w) or check who owns it"
        }
        Some(libc::EROFS) => "the file system is read-only: remount it writable",
        Some(libc::ENOSPC) => "the disk is full: free some space",
        Some(libc::EDQUOT) => "the disk quota is used up: free some space or raise the quota",
        Some(libc::EIO) => "an I/O error: check the disk (dmesg) and its cable",
        Some(libc::ELOOP | libc::ENOTDIR) => {
            "a directory on its way is a symlink or a file on this machine, and chorus never writes through one: move it away"
        }
        Some(libc::EISDIR) => "a directory is in its place: move it away",
        Some(libc::EEXIST) => "something else appeared in its place: it is scanned first",
        _ => "check the folder's permissions and free space",
    };
    format!("{what} ({e}); chorus tries again with the next version")
}
