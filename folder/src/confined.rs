//! Path operations confined to the share, whatever a peer or a local program put there.
//!
//! Every operation is relative to a directory handle (an open file descriptor), never to a
//! path string from the root: a directory below the share is opened with `openat2` and
//! `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS` where the kernel has it (Linux 5.6+), else one
//! component at a time with `O_NOFOLLOW | O_DIRECTORY`; files are opened with `O_NOFOLLOW`;
//! temp files are created with `O_EXCL` under short, fixed-length random names; renames,
//! removals, links and directories are made with `renameat`, `unlinkat`, `symlinkat` and
//! `mkdirat` on the same handle. A symlink anywhere on the way is an error (`ELOOP`), never a
//! way out. Only the share's root itself is opened by its path, as the user named it.

use std::ffi::OsStr;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use rustix::fs::{self as rfs, AtFlags, Dir, FileType, Mode as RMode, OFlags, ResolveFlags};

/// Flags of every directory handle: readable (for `readdir` and `fsync`), never a symlink.
const DIR_FLAGS: OFlags = OFlags::RDONLY
    .union(OFlags::DIRECTORY)
    .union(OFlags::NOFOLLOW)
    .union(OFlags::CLOEXEC);

/// Set once `openat2` turned out to be missing (an old kernel, a seccomp filter).
static NO_OPENAT2: AtomicBool = AtomicBool::new(false);

/// Opens the share's root directory, by the path the user gave (which may pass through
/// symlinks of the user's own making; nothing below it may).
pub fn open_root(path: &Path) -> io::Result<OwnedFd> {
    Ok(rfs::open(
        path,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        RMode::empty(),
    )?)
}

/// Opens the directory `rel` (`/`-separated, relative, already validated) below `root`,
/// refusing any symlink on the way and anything that would resolve outside `root`.
pub fn open_dir_beneath(root: BorrowedFd<'_>, rel: &str) -> io::Result<OwnedFd> {
    if rel.is_empty() {
        return Ok(rfs::openat(root, ".", DIR_FLAGS, RMode::empty())?);
    }
    if !NO_OPENAT2.load(Ordering::Relaxed) {
        let how = ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS;
        match rfs::openat2(root, rel, DIR_FLAGS, RMode::empty(), how) {
            Err(rustix::io::Errno::NOSYS) | Err(rustix::io::Errno::PERM) => {
                NO_OPENAT2.store(true, Ordering::Relaxed);
            }
            Err(rustix::io::Errno::AGAIN) => {} // a rename raced the lookup: walk instead
            // A path at the kernel's PATH_MAX (a share path may be 4,096 bytes): walk.
            Err(rustix::io::Errno::NAMETOOLONG) => {}
            other => return Ok(other?),
        }
    }
    let mut dir = rfs::openat(root, ".", DIR_FLAGS, RMode::empty())?;
    for name in rel.split('/') {
        dir = open_dir_at(dir.as_fd(), name)?;
    }
    Ok(dir)
}

/// Opens the directory `name` in `dir`; a symlink there is `ELOOP`, a file `ENOTDIR`.
pub fn open_dir_at(dir: BorrowedFd<'_>, name: &str) -> io::Result<OwnedFd> {
    check_name(name)?;
    Ok(rfs::openat(dir, name, DIR_FLAGS, RMode::empty())?)
}

/// Opens the regular file `name` in `dir` for reading; a symlink, fifo or device there is
/// refused without blocking.
pub fn open_file_at(dir: BorrowedFd<'_>, name: &str) -> io::Result<std::fs::File> {
    check_name(name)?;
    let fd = rfs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC,
        RMode::empty(),
    )?;
    if FileType::from_raw_mode(rfs::fstat(&fd)?.st_mode) != FileType::RegularFile {
        return Err(io::Error::other("not a regular file"));
    }
    Ok(std::fs::File::from(fd))
}

/// What is at `name` in `dir`, without following a symlink; `None` when nothing is.
pub fn stat_at(dir: BorrowedFd<'_>, name: &str) -> io::Result<Option<rfs::Stat>> {
    check_name(name)?;
    match rfs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => Ok(Some(st)),
        Err(rustix::io::Errno::NOENT) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// The kind of a stat.
pub fn kind(st: &rfs::Stat) -> FileType {
    FileType::from_raw_mode(st.st_mode)
}

/// A symlink's target.
pub fn read_link_at(dir: BorrowedFd<'_>, name: &str) -> io::Result<Vec<u8>> {
    check_name(name)?;
    Ok(rfs::readlinkat(dir, name, Vec::new())?.into_bytes())
}

/// The names in `dir` (not `.` or `..`), as bytes.
pub fn list(dir: BorrowedFd<'_>) -> io::Result<Vec<Vec<u8>>> {
    let mut out = Vec::new();
    for e in Dir::read_from(dir)? {
        let e = e?;
        let name = e.file_name().to_bytes();
        if name != b"." && name != b".." {
            out.push(name.to_vec());
        }
    }
    Ok(out)
}

/// Length of a temp file's name: short enough to fit wherever any name fits.
pub const TEMP_LEN: usize = TEMP_PREFIX.len() + SESSION_LEN + 8;
/// Every temp name starts so; the session and a random part follow.
pub const TEMP_PREFIX: &str = ".chorus-";
/// Length of a session tag (one per [`DiskFolder`](crate::DiskFolder) run).
pub const SESSION_LEN: usize = 8;

const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz234567";

/// `n` random characters from a 32-letter alphabet.
pub fn random_tag(n: usize) -> String {
    use rand::Rng;
    let mut rng = rand::thread_rng();
    (0..n)
        .map(|_| char::from(ALPHABET[rng.gen_range(0..ALPHABET.len())]))
        .collect()
}

/// A temp name of session `session`: `.chorus-SSSSSSSSRRRRRRRR`.
pub fn temp_name(session: &str) -> String {
    format!("{TEMP_PREFIX}{session}{}", random_tag(8))
}

/// True when `name` is a temp name of `session`.
pub fn is_temp_of(name: &[u8], session: &str) -> bool {
    name.len() == TEMP_LEN
        && name.starts_with(TEMP_PREFIX.as_bytes())
        && &name[TEMP_PREFIX.len()..TEMP_PREFIX.len() + SESSION_LEN] == session.as_bytes()
        && name[TEMP_PREFIX.len() + SESSION_LEN..]
            .iter()
            .all(|c| ALPHABET.contains(c))
}

/// Creates a new file in `dir` under a fresh temp name of `session`, exclusively (`O_EXCL`:
/// never an existing file or a symlink someone placed there), with the permission `bits` (less
/// the umask's).
pub fn create_temp(
    dir: BorrowedFd<'_>,
    session: &str,
    bits: u32,
) -> io::Result<(std::fs::File, String)> {
    let mut last = None;
    for _ in 0..16 {
        let name = temp_name(session);
        match rfs::openat(
            dir,
            name.as_str(),
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            RMode::from_raw_mode(bits & 0o777),
        ) {
            Ok(fd) => return Ok((std::fs::File::from(fd), name)),
            Err(rustix::io::Errno::EXIST) => last = Some(rustix::io::Errno::EXIST),
            Err(e) => return Err(e.into()),
        }
    }
    Err(last.unwrap_or(rustix::io::Errno::EXIST).into())
}

/// Makes a symlink under a fresh temp name of `session` in `dir`; returns that name.
pub fn symlink_temp(dir: BorrowedFd<'_>, target: &str, session: &str) -> io::Result<String> {
    for _ in 0..16 {
        let name = temp_name(session);
        match rfs::symlinkat(target, dir, name.as_str()) {
            Ok(()) => return Ok(name),
            Err(rustix::io::Errno::EXIST) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(rustix::io::Errno::EXIST.into())
}

/// Renames `from` to `to`, both in `dir`. With `no_replace`, fails with `EEXIST` rather than
/// replace anything that appeared at `to`.
pub fn rename_at(dir: BorrowedFd<'_>, from: &str, to: &str, no_replace: bool) -> io::Result<()> {
    check_name(to)?;
    if no_replace {
        match rfs::renameat_with(dir, from, dir, to, rfs::RenameFlags::NOREPLACE) {
            // A file system without RENAME_NOREPLACE: a link then an unlink is as exclusive.
            Err(rustix::io::Errno::INVAL) => {
                rfs::linkat(dir, from, dir, to, AtFlags::empty())?;
                return Ok(rfs::unlinkat(dir, from, AtFlags::empty())?);
            }
            other => return Ok(other?),
        }
    }
    Ok(rfs::renameat(dir, from, dir, to)?)
}

/// Renames `from` in `from_dir` to `to` in `to_dir` (both beneath the share, opened without
/// following links); with `no_replace`, fails with `EEXIST` rather than replace anything.
pub fn rename_between(
    from_dir: BorrowedFd<'_>,
    from: &str,
    to_dir: BorrowedFd<'_>,
    to: &str,
    no_replace: bool,
) -> io::Result<()> {
    check_name(from)?;
    check_name(to)?;
    let flags = if no_replace {
        rfs::RenameFlags::NOREPLACE
    } else {
        rfs::RenameFlags::empty()
    };
    match rfs::renameat_with(from_dir, from, to_dir, to, flags) {
        // A file system without RENAME_NOREPLACE: a link then an unlink is as exclusive.
        Err(rustix::io::Errno::INVAL) if no_replace => {
            rfs::linkat(from_dir, from, to_dir, to, AtFlags::empty())?;
            Ok(rfs::unlinkat(from_dir, from, AtFlags::empty())?)
        }
        other => Ok(other?),
    }
}

/// Removes the file or symlink `name` in `dir` (never what a symlink points to).
pub fn unlink_at(dir: BorrowedFd<'_>, name: &str) -> io::Result<()> {
    check_name(name)?;
    Ok(rfs::unlinkat(dir, name, AtFlags::empty())?)
}

/// Removes the empty directory `name` in `dir`.
pub fn rmdir_at(dir: BorrowedFd<'_>, name: &str) -> io::Result<()> {
    check_name(name)?;
    Ok(rfs::unlinkat(dir, name, AtFlags::REMOVEDIR)?)
}

/// Makes the directory `name` in `dir`, private until its own mode is applied.
pub fn mkdir_at(dir: BorrowedFd<'_>, name: &str) -> io::Result<()> {
    check_name(name)?;
    Ok(rfs::mkdirat(dir, name, RMode::from_raw_mode(0o700))?)
}

/// Sets the permission bits of an open file or directory.
pub fn chmod(fd: BorrowedFd<'_>, bits: u32) -> io::Result<()> {
    Ok(rfs::fchmod(fd, RMode::from_raw_mode(bits))?)
}

/// Makes an open file or directory durable.
pub fn fsync(fd: BorrowedFd<'_>) -> io::Result<()> {
    Ok(rfs::fsync(fd)?)
}

/// Flushes the whole file system that holds `fd` (and reports its write-back errors).
pub fn syncfs(fd: BorrowedFd<'_>) -> io::Result<()> {
    Ok(rfs::syncfs(fd)?)
}

/// A name must be one component: the caller validated the path, this is the last line.
fn check_name(name: &str) -> io::Result<()> {
    if name.is_empty() || name == "." || name == ".." || name.contains('/') {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{name:?} is not a single file name"),
        ));
    }
    Ok(())
}

/// A name from `readdir` as UTF-8, when it is.
pub fn utf8(name: &[u8]) -> Option<&str> {
    std::str::from_utf8(name).ok()
}

/// A name from `readdir` for messages.
pub fn display(name: &[u8]) -> std::borrow::Cow<'_, str> {
    OsStr::from_bytes(name).to_string_lossy()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn no_symlink_on_the_way_is_followed() {
        let share = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(share.path().join("a/b")).unwrap();
        symlink(outside.path(), share.path().join("a/link")).unwrap();
        symlink("..", share.path().join("a/up")).unwrap();
        let root = open_root(share.path()).unwrap();
        assert!(open_dir_beneath(root.as_fd(), "a/b").is_ok());
        for bad in ["a/link", "a/up", "a/up/a"] {
            let e = open_dir_beneath(root.as_fd(), bad).unwrap_err();
            // ELOOP for a link on the way, ENOTDIR for a last component that is a link.
            assert!(
                matches!(e.raw_os_error(), Some(libc::ELOOP | libc::ENOTDIR)),
                "{bad}: {e}"
            );
        }
        // The component-by-component walk refuses the same.
        NO_OPENAT2.store(true, Ordering::Relaxed);
        let walked = open_dir_beneath(root.as_fd(), "a/link");
        NO_OPENAT2.store(false, Ordering::Relaxed);
        assert!(matches!(
            walked.unwrap_err().raw_os_error(),
            Some(libc::ELOOP | libc::ENOTDIR)
        ));
        let a = open_dir_beneath(root.as_fd(), "a").unwrap();
        assert!(open_file_at(a.as_fd(), "link").is_err());
        assert!(open_dir_at(a.as_fd(), "../..").is_err());
    }

    /// A directory whose path is as long as a share path may be (4,096 bytes, one over the
    /// kernel's PATH_MAX) is opened by walking to it.
    #[test]
    fn a_directory_at_the_longest_share_path_is_opened() {
        let share = tempfile::tempdir().unwrap();
        let root = open_root(share.path()).unwrap();
        let mut rel = String::new();
        let mut at = open_dir_beneath(root.as_fd(), "").unwrap();
        while rel.len() < chorus_chunking::path::MAX_PATH_LEN {
            let left =
                chorus_chunking::path::MAX_PATH_LEN - rel.len() - usize::from(!rel.is_empty());
            let name = "d".repeat(left.min(200));
            mkdir_at(at.as_fd(), &name).unwrap();
            at = open_dir_at(at.as_fd(), &name).unwrap();
            if !rel.is_empty() {
                rel.push('/');
            }
            rel.push_str(&name);
        }
        assert_eq!(rel.len(), chorus_chunking::path::MAX_PATH_LEN);
        assert!(open_dir_beneath(root.as_fd(), &rel).is_ok());
    }

    #[test]
    fn temp_files_are_exclusive_and_short() {
        let share = tempfile::tempdir().unwrap();
        let root = open_root(share.path()).unwrap();
        let session = random_tag(SESSION_LEN);
        let (_, name) = create_temp(root.as_fd(), &session, 0o600).unwrap();
        assert_eq!(name.len(), TEMP_LEN);
        assert!(is_temp_of(name.as_bytes(), &session));
        assert!(!is_temp_of(name.as_bytes(), &random_tag(SESSION_LEN)));
        assert!(!is_temp_of(b".x.chorus-tmp", &session));
        let md = std::fs::symlink_metadata(share.path().join(&name)).unwrap();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&md.permissions()) & 0o777,
            0o600
        );
    }
}
