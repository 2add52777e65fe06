//! Files and folders reached without following links: every path below a
//! trusted base is opened one component at a time through folder descriptors
//! (`openat` with `O_NOFOLLOW`), and entries are created, linked, renamed,
//! removed and described (`fstatat` with `AT_SYMLINK_NOFOLLOW`) relative to
//! them; and the `flock` that keeps one bsc per root.
#![allow(unsafe_code)]

use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// Opens the folder `base/dirs[0]/dirs[1]/...`, creating missing folders (mode
/// 0750) when `create` is set. `base` is trusted (the root, or a folder the config
/// file names) and may itself be reached through symlinks; below it no symlink is
/// followed (`O_NOFOLLOW` on every component), so a link planted inside the root
/// cannot lead a capture file out of it. Components must be plain names (no `/`,
/// not `.` or `..`): the caller checked them.
pub fn open_dir_beneath(
    base: &std::path::Path,
    dirs: &[&str],
    create: bool,
) -> io::Result<OwnedFd> {
    if create {
        std::fs::create_dir_all(base)?;
    }
    let mut fd = std::fs::File::open(base)?;
    if !fd.metadata()?.is_dir() {
        return Err(io::Error::other(format!(
            "{} is not a folder",
            base.display()
        )));
    }
    let mut dir: OwnedFd = fd.into();
    for name in dirs {
        let c = cstring(name)?;
        let flags = libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC;
        // SAFETY: `dir` is an open folder fd owned here; `c` is NUL-terminated.
        let mut raw = unsafe { libc::openat(dir.as_raw_fd(), c.as_ptr(), flags) };
        if raw < 0 && create && io::Error::last_os_error().kind() == io::ErrorKind::NotFound {
            // SAFETY: as above; mkdirat only creates the entry.
            let rc = unsafe { libc::mkdirat(dir.as_raw_fd(), c.as_ptr(), 0o750) };
            if rc != 0 && io::Error::last_os_error().kind() != io::ErrorKind::AlreadyExists {
                return Err(io::Error::last_os_error());
            }
            // SAFETY: as above.
            raw = unsafe { libc::openat(dir.as_raw_fd(), c.as_ptr(), flags) };
        }
        if raw < 0 {
            let e = io::Error::last_os_error();
            return Err(match e.raw_os_error() {
                Some(libc::ELOOP) | Some(libc::ENOTDIR) => io::Error::other(format!(
                    "{name:?} is a symlink or not a folder; bsc follows no links below its root"
                )),
                _ => e,
            });
        }
        // SAFETY: `raw` is a new fd that nothing else owns.
        fd = unsafe { std::fs::File::from_raw_fd(raw) };
        dir = fd.into();
    }
    Ok(dir)
}

/// How [`open_file_at`] opens a file.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum OpenMode {
    /// Create a new file (mode 0640); fail with `AlreadyExists` if the name is taken.
    CreateNew,
    /// Open an existing file for reading and appending.
    Existing,
    /// Open an existing file for reading only (a final one).
    Read,
}

/// Opens the plain file `name` in the folder `dir`, never through a symlink.
pub fn open_file_at(dir: &OwnedFd, name: &str, mode: OpenMode) -> io::Result<std::fs::File> {
    let c = cstring(name)?;
    let flags = libc::O_NOFOLLOW
        | libc::O_CLOEXEC
        | match mode {
            OpenMode::CreateNew => libc::O_WRONLY | libc::O_APPEND | libc::O_CREAT | libc::O_EXCL,
            OpenMode::Existing => libc::O_RDWR | libc::O_APPEND,
            OpenMode::Read => libc::O_RDONLY,
        };
    // SAFETY: `dir` is an open folder fd; `c` is NUL-terminated; the mode argument
    // is read only with O_CREAT.
    let raw = unsafe { libc::openat(dir.as_raw_fd(), c.as_ptr(), flags, 0o640 as libc::c_uint) };
    if raw < 0 {
        // ELOOP: `name` is a symlink (the caller says so in its own words).
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `raw` is a new fd that nothing else owns.
    Ok(unsafe { std::fs::File::from_raw_fd(raw) })
}

/// Opens `name` in the folder `dir` with `flags` (`O_NOFOLLOW`, `O_NONBLOCK` and
/// `O_CLOEXEC` added: never through a symlink, never blocking on a FIFO) and,
/// with `O_CREAT`, `mode`.
pub fn open_at(
    dir: &OwnedFd,
    name: &str,
    flags: libc::c_int,
    mode: u32,
) -> io::Result<std::fs::File> {
    let c = cstring(name)?;
    let flags = flags | libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC;
    // SAFETY: `dir` is an open folder fd; `c` is NUL-terminated; the mode argument
    // is read only with O_CREAT.
    let raw = unsafe { libc::openat(dir.as_raw_fd(), c.as_ptr(), flags, mode as libc::c_uint) };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `raw` is a new fd that nothing else owns.
    Ok(unsafe { std::fs::File::from_raw_fd(raw) })
}

/// Opens the folder `name` in the folder `dir` (never through a symlink),
/// first making it with `mode` if `create` is set and it does not exist.
pub fn open_subdir(dir: &OwnedFd, name: &str, create: Option<u32>) -> io::Result<OwnedFd> {
    let c = cstring(name)?;
    if let Some(mode) = create {
        // SAFETY: `dir` is an open folder fd; `c` is NUL-terminated.
        let rc = unsafe { libc::mkdirat(dir.as_raw_fd(), c.as_ptr(), mode as libc::mode_t) };
        if rc != 0 && io::Error::last_os_error().kind() != io::ErrorKind::AlreadyExists {
            return Err(io::Error::last_os_error());
        }
    }
    let f = open_at(dir, name, libc::O_RDONLY | libc::O_DIRECTORY, 0)?;
    Ok(f.into())
}

/// What `fstatat` says of one folder entry, links not followed.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct EntryStat {
    /// Device and inode.
    pub id: (u64, u64),
    pub size: u64,
    /// Type and permission bits (`st_mode`).
    pub mode: u32,
    pub uid: u32,
}

impl EntryStat {
    /// A regular file (not a link, a folder, a device...).
    // `mode_t` is u32 on Linux, but not on every libc.
    #[allow(clippy::unnecessary_cast)]
    pub fn is_file(&self) -> bool {
        self.mode & libc::S_IFMT as u32 == libc::S_IFREG as u32
    }

    /// A symbolic link.
    #[allow(clippy::unnecessary_cast)]
    pub fn is_link(&self) -> bool {
        self.mode & libc::S_IFMT as u32 == libc::S_IFLNK as u32
    }
}

/// [`EntryStat`] of `name` in the folder `dir` (a symlink is described, never followed).
pub fn stat_at(dir: &OwnedFd, name: &str) -> io::Result<EntryStat> {
    let c = cstring(name)?;
    let mut st = MaybeUninit::<libc::stat>::uninit();
    // SAFETY: `dir` is an open folder fd, `c` is NUL-terminated and `st` is a
    // buffer of the size fstatat fills.
    let rc = unsafe {
        libc::fstatat(
            dir.as_raw_fd(),
            c.as_ptr(),
            st.as_mut_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fstatat succeeded, so it filled `st`.
    let st = unsafe { st.assume_init() };
    #[allow(clippy::unnecessary_cast)]
    Ok(EntryStat {
        id: (st.st_dev as u64, st.st_ino as u64),
        size: st.st_size as u64,
        mode: st.st_mode as u32,
        uid: st.st_uid as u32,
    })
}

/// [`EntryStat`] of an open file or folder (`fstat`).
pub fn stat_fd(fd: &impl AsRawFd) -> io::Result<EntryStat> {
    let mut st = MaybeUninit::<libc::stat>::uninit();
    // SAFETY: `fd` is open and `st` is a buffer of the size fstat fills.
    if unsafe { libc::fstat(fd.as_raw_fd(), st.as_mut_ptr()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fstat succeeded, so it filled `st`.
    let st = unsafe { st.assume_init() };
    #[allow(clippy::unnecessary_cast)]
    Ok(EntryStat {
        id: (st.st_dev as u64, st.st_ino as u64),
        size: st.st_size as u64,
        mode: st.st_mode as u32,
        uid: st.st_uid as u32,
    })
}

/// The device and inode, and the size, of the entry `name` in the folder `dir`,
/// not following a symlink (`fstatat` with `AT_SYMLINK_NOFOLLOW`).
pub fn identity_at(dir: &OwnedFd, name: &str) -> io::Result<((u64, u64), u64)> {
    stat_at(dir, name).map(|st| (st.id, st.size))
}

/// Makes `to` in the folder `to_dir` a hard link to the entry `from` in the
/// folder `from_dir` (a symlink itself is linked, never its target).
pub fn link_at(from_dir: &OwnedFd, from: &str, to_dir: &OwnedFd, to: &str) -> io::Result<()> {
    let (a, b) = (cstring(from)?, cstring(to)?);
    // SAFETY: both fds are open folders and both names NUL-terminated; flags 0
    // does not follow a symlink.
    let rc = unsafe {
        libc::linkat(
            from_dir.as_raw_fd(),
            a.as_ptr(),
            to_dir.as_raw_fd(),
            b.as_ptr(),
            0,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Renames `from` to `to`, both in the folder `dir`.
pub fn rename_at(dir: &OwnedFd, from: &str, to: &str) -> io::Result<()> {
    let (a, b) = (cstring(from)?, cstring(to)?);
    // SAFETY: `dir` is an open folder fd; both names are NUL-terminated.
    let rc = unsafe { libc::renameat(dir.as_raw_fd(), a.as_ptr(), dir.as_raw_fd(), b.as_ptr()) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Removes the plain file `name` from the folder `dir` (never a folder; a symlink
/// itself, not its target).
pub fn unlink_at(dir: &OwnedFd, name: &str) -> io::Result<()> {
    let c = cstring(name)?;
    // SAFETY: `dir` is an open folder fd; `c` is NUL-terminated; flags 0 removes a
    // non-folder entry only.
    if unsafe { libc::unlinkat(dir.as_raw_fd(), c.as_ptr(), 0) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Removes the empty folder `name` from the folder `dir` (`unlinkat` with
/// `AT_REMOVEDIR`: a symlink there is not a folder and stays).
pub fn remove_dir_at(dir: &OwnedFd, name: &str) -> io::Result<()> {
    let c = cstring(name)?;
    // SAFETY: `dir` is an open folder fd; `c` is NUL-terminated.
    if unsafe { libc::unlinkat(dir.as_raw_fd(), c.as_ptr(), libc::AT_REMOVEDIR) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Whether the effective user may create files in `dir` (`faccessat` with
/// `AT_EACCESS`: the check the kernel makes for this process, root included).
pub fn can_write_dir(dir: &std::path::Path) -> io::Result<()> {
    let c = cstring(&dir.to_string_lossy())?;
    // SAFETY: `c` is NUL-terminated; faccessat only reads it.
    let rc = unsafe {
        libc::faccessat(
            libc::AT_FDCWD,
            c.as_ptr(),
            libc::W_OK | libc::X_OK,
            libc::AT_EACCESS,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Takes an exclusive `flock` on `file` without waiting: `Ok(false)` when another
/// process holds it. The kernel releases it when the last descriptor closes
/// (the process ends, `kill -9` included).
pub fn try_lock_exclusive(file: &std::fs::File) -> io::Result<bool> {
    // SAFETY: flock takes an open fd and flags.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
        return Ok(true);
    }
    let e = io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
        return Ok(false);
    }
    Err(e)
}

fn cstring(s: &str) -> io::Result<std::ffi::CString> {
    std::ffi::CString::new(s).map_err(|_| io::Error::other("a name contains a NUL byte"))
}
