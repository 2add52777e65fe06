//! The few direct OS calls bsc makes through libc, each wrapped in a safe function
//! with a comment on why the unsafe block is sound. Nothing else in bsc uses
//! `unsafe`.

use std::io;
use std::mem::{size_of, MaybeUninit};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// The signals bsc handles through its event loop (SIGCHLD: an `on_close` hook
/// or a `ship` command ended).
pub const HANDLED_SIGNALS: [libc::c_int; 4] =
    [libc::SIGTERM, libc::SIGINT, libc::SIGHUP, libc::SIGCHLD];

fn signal_set() -> libc::sigset_t {
    // SAFETY: sigemptyset initialises the set it is given; sigaddset only writes
    // into that initialised set, with valid signal numbers.
    unsafe {
        let mut set = MaybeUninit::<libc::sigset_t>::uninit();
        libc::sigemptyset(set.as_mut_ptr());
        let mut set = set.assume_init();
        for s in HANDLED_SIGNALS {
            libc::sigaddset(&mut set, s);
        }
        set
    }
}

/// Blocks SIGTERM, SIGINT and SIGHUP for this thread (call first thing in `main`,
/// before any thread exists, so every thread inherits it); they are then read
/// from [`SignalFd`] instead of interrupting anything.
pub fn block_handled_signals() -> io::Result<()> {
    let set = signal_set();
    // SAFETY: `set` is a valid, initialised sigset_t; a null old-set pointer is allowed.
    let rc = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
    if rc != 0 {
        return Err(io::Error::from_raw_os_error(rc));
    }
    Ok(())
}

/// Spawns a command whose signal mask is empty again (bsc blocks the signals it
/// reads from its signalfd, and children would inherit that).
pub fn spawn_with_default_signals(
    cmd: &mut std::process::Command,
) -> io::Result<std::process::Child> {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure runs in the child between fork and exec and only calls
    // sigemptyset and pthread_sigmask, which are async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            let mut set = MaybeUninit::<libc::sigset_t>::uninit();
            libc::sigemptyset(set.as_mut_ptr());
            libc::pthread_sigmask(libc::SIG_SETMASK, set.as_ptr(), std::ptr::null_mut());
            Ok(())
        });
    }
    cmd.spawn()
}

/// Spawns a `ship` or `on_close` command: as [`spawn_with_default_signals`], in a process group
/// of its own (so a timeout can kill everything it started:
/// [`kill_process_group`]) and killed if bsc dies first (`PR_SET_PDEATHSIG`).
/// That reaches the command itself only: what it started lives on after a
/// `kill -9` of bsc unless a cgroup ends it, as systemd does for the unit
/// (README, Store and forward). The file ships again after the next start.
pub fn spawn_supervised(cmd: &mut std::process::Command) -> io::Result<std::process::Child> {
    use std::os::unix::process::CommandExt;
    let parent = std::process::id() as libc::pid_t;
    cmd.process_group(0);
    // SAFETY: the closure runs in the child between fork and exec and only calls
    // prctl, getppid and _exit, which are async-signal-safe system calls.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(io::Error::last_os_error());
            }
            // bsc died before prctl took effect: do not run orphaned, and end
            // quietly (an error returned here would be reported through the
            // pipe to the dead parent, and std prints a "fatal runtime error"
            // into bsc's log when that write fails).
            if libc::getppid() != parent {
                libc::_exit(127);
            }
            Ok(())
        });
    }
    spawn_with_default_signals(cmd)
}

/// Sends SIGKILL to every process of the process group `pgid` (a ship command
/// started by [`spawn_supervised`] and whatever it started).
pub fn kill_process_group(pgid: u32) -> io::Result<()> {
    let Ok(pgid) = libc::pid_t::try_from(pgid) else {
        return Err(io::Error::other("not a process id"));
    };
    if pgid <= 1 {
        return Err(io::Error::other("not a process group bsc started"));
    }
    // SAFETY: kill takes plain integers; a negative pid names a process group.
    if unsafe { libc::kill(-pgid, libc::SIGKILL) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Whether the child `pid` has ended, without reaping it: while it stays a
/// zombie its pid (and so its process group's id) cannot be given to another
/// process, so [`kill_process_group`] may still be sent safely before the child
/// is reaped (`waitid` with `WNOWAIT`).
pub fn has_exited(pid: u32) -> bool {
    // `id_t` is u32 on every Linux target.
    #[allow(clippy::unnecessary_cast)]
    let pid = pid as libc::id_t;
    let mut info = MaybeUninit::<libc::siginfo_t>::zeroed();
    // SAFETY: waitid fills `info`, a zeroed buffer of its type; WNOWAIT leaves
    // the child waitable, WNOHANG makes it return at once.
    let rc = unsafe {
        libc::waitid(
            libc::P_PID,
            pid,
            info.as_mut_ptr(),
            libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
        )
    };
    // SAFETY: zeroed and, on success, filled: si_pid stays 0 while the child runs.
    rc == 0 && unsafe { info.assume_init().si_pid() } != 0
}

/// Makes reads of `fd` return `WouldBlock` instead of waiting (a child's
/// standard error, read while the loop runs).
pub fn set_nonblocking(fd: RawFd) -> io::Result<()> {
    // SAFETY: fcntl on an open fd with plain integer flags.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    // SAFETY: as above.
    if flags < 0 || unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
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

/// Free and total bytes of the file system holding `path` (for the disk budget).
pub fn disk_space(path: &std::path::Path) -> io::Result<(u64, u64)> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path has a NUL byte"))?;
    let mut st = MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `c` is a valid C string; statvfs fills the struct it is given.
    if unsafe { libc::statvfs(c.as_ptr(), st.as_mut_ptr()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: statvfs succeeded, so the struct is initialised.
    let st = unsafe { st.assume_init() };
    // fsblkcnt_t and f_frsize are 32-bit on some targets (armv7).
    #[allow(clippy::unnecessary_cast)]
    let (frsize, avail, blocks) = (st.f_frsize as u64, st.f_bavail as u64, st.f_blocks as u64);
    Ok((avail * frsize, blocks * frsize))
}

/// Raises the soft limit on open files to the hard limit (each capture socket,
/// file and connection is one). Returns the new soft limit.
/// The open-file limit (`RLIMIT_NOFILE`, soft).
pub fn open_file_limit() -> io::Result<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes the struct it is given.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(io::Error::last_os_error());
    }
    #[allow(clippy::unnecessary_cast)] // rlim_t is 32-bit on some targets
    Ok(lim.rlim_cur as u64)
}

/// File descriptors this process has open (`/proc/self/fd`, less the one
/// reading it).
pub fn open_fds() -> io::Result<u64> {
    Ok(std::fs::read_dir("/proc/self/fd")?
        .count()
        .saturating_sub(1) as u64)
}

pub fn raise_open_file_limit() -> io::Result<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit read and write the struct they are given.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return Err(io::Error::last_os_error());
        }
        if lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                return Err(io::Error::last_os_error());
            }
        }
    }
    #[allow(clippy::unnecessary_cast)] // rlim_t is 32-bit on some targets
    Ok(lim.rlim_cur as u64)
}

/// Whether the kernel considers the system clock synchronised (NTP or similar):
/// `adjtimex` without changes, `STA_UNSYNC` clear.
pub fn clock_synchronised() -> bool {
    // SAFETY: all-zero is a valid timex with modes 0 (read only).
    let mut tx: libc::timex = unsafe { std::mem::zeroed() };
    // SAFETY: adjtimex reads the clock state into the struct it is given.
    let state = unsafe { libc::adjtimex(&mut tx) };
    state >= 0 && state != libc::TIME_ERROR && tx.status & libc::STA_UNSYNC == 0
}

/// A non-blocking signalfd for the handled signals.
pub struct SignalFd(OwnedFd);

impl SignalFd {
    pub fn new() -> io::Result<SignalFd> {
        let set = signal_set();
        // SAFETY: -1 asks for a new fd; `set` is valid; flags are valid.
        let fd = unsafe { libc::signalfd(-1, &set, libc::SFD_NONBLOCK | libc::SFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: signalfd returned a new fd that nothing else owns.
        Ok(SignalFd(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    /// The next pending signal number, or `None` when none is pending.
    pub fn read(&self) -> io::Result<Option<libc::c_int>> {
        let mut info = MaybeUninit::<libc::signalfd_siginfo>::uninit();
        let want = size_of::<libc::signalfd_siginfo>();
        // SAFETY: the buffer is `want` bytes of writable memory owned by `info`.
        let n = unsafe { libc::read(self.0.as_raw_fd(), info.as_mut_ptr().cast(), want) };
        if n < 0 {
            let e = io::Error::last_os_error();
            return if e.kind() == io::ErrorKind::WouldBlock {
                Ok(None)
            } else {
                Err(e)
            };
        }
        if n as usize != want {
            return Err(io::Error::other("short read from signalfd"));
        }
        // SAFETY: the kernel filled all `want` bytes (checked above).
        let info = unsafe { info.assume_init() };
        Ok(Some(info.ssi_signo as libc::c_int))
    }
}

impl AsRawFd for SignalFd {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }
}

fn setsockopt_int(
    fd: RawFd,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    // SAFETY: the option value is a valid c_int whose size is passed; an invalid
    // fd or option only makes the call fail.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&value as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

fn getsockopt_int(fd: RawFd, level: libc::c_int, name: libc::c_int) -> io::Result<libc::c_int> {
    let mut value: libc::c_int = 0;
    let mut len = size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: value and len point to writable memory of the sizes given.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            level,
            name,
            (&mut value as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(value)
    }
}

/// Asks for a receive buffer of `bytes`: `SO_RCVBUFFORCE` first (passes
/// `net.core.rmem_max`, needs CAP_NET_ADMIN), else `SO_RCVBUF` (capped by the
/// kernel). Returns the size the kernel granted (it reports twice the request,
/// the bookkeeping overhead included).
pub fn set_receive_buffer(fd: RawFd, bytes: usize) -> io::Result<usize> {
    let bytes = bytes.min(i32::MAX as usize / 2) as libc::c_int;
    if setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, bytes).is_err() {
        setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_RCVBUF, bytes)?;
    }
    Ok(getsockopt_int(fd, libc::SOL_SOCKET, libc::SO_RCVBUF)? as usize)
}

/// Whether stderr is the stream systemd-journald reads (`JOURNAL_STREAM` is
/// `device:inode` of it), so log lines should carry `<N>` priority prefixes.
pub fn stderr_is_journal() -> bool {
    let Ok(v) = std::env::var("JOURNAL_STREAM") else {
        return false;
    };
    let Some((dev, ino)) = v.split_once(':') else {
        return false;
    };
    let (Ok(dev), Ok(ino)) = (dev.parse::<u64>(), ino.parse::<u64>()) else {
        return false;
    };
    let mut st = MaybeUninit::<libc::stat>::uninit();
    // SAFETY: fstat writes a `struct stat` into the buffer it is given.
    if unsafe { libc::fstat(2, st.as_mut_ptr()) } != 0 {
        return false;
    }
    // SAFETY: fstat succeeded, so the struct is initialised.
    let st = unsafe { st.assume_init() };
    // dev_t and ino_t are not u64 on every target (32-bit ARM).
    #[allow(clippy::unnecessary_cast)]
    let same = st.st_dev as u64 == dev && st.st_ino as u64 == ino;
    same
}

/// `CLOCK_MONOTONIC` in microseconds (what systemd's `MONOTONIC_USEC` wants).
pub fn monotonic_micros() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes a timespec into the struct it is given.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000 + ts.tv_nsec as u64 / 1000
}

/// CPU time (user + system) this process has used.
pub fn cpu_time() -> std::time::Duration {
    let mut usage = MaybeUninit::<libc::rusage>::uninit();
    // SAFETY: getrusage fills the struct it is given; RUSAGE_SELF is valid.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr()) } != 0 {
        return std::time::Duration::ZERO;
    }
    // SAFETY: getrusage succeeded, so the struct is initialised.
    let u = unsafe { usage.assume_init() };
    let tv = |t: libc::timeval| std::time::Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(u.ru_utime) + tv(u.ru_stime)
}

/// Resident memory of this process in bytes (from /proc/self/statm), 0 if unknown.
pub fn resident_memory_bytes() -> u64 {
    // SAFETY: sysconf has no memory effects; _SC_PAGESIZE is always valid.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(0) as u64;
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .nth(1)
                .and_then(|v| v.parse::<u64>().ok())
        })
        .map_or(0, |pages| pages * page)
}

/// Who sent a received unit.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Peer {
    /// An IP sender (UDP).
    Inet(std::net::SocketAddr),
    /// An AF_PACKET frame: its packet type (`PACKET_HOST`, `PACKET_OUTGOING`, ...).
    Packet {
        pkttype: u8,
    },
    Unknown,
}

/// What the kernel gave for one received unit.
#[derive(Copy, Clone, Debug)]
pub struct Received {
    /// Bytes placed in the buffer.
    pub len: usize,
    /// The unit's real length (larger than `len` when the buffer was too small).
    pub full_len: usize,
    pub peer: Peer,
    /// The kernel's receive time (`SO_TIMESTAMPNS`), when it gave one.
    pub kernel_time: Option<std::time::Duration>,
}

fn peer_of(addr: &libc::sockaddr_storage) -> Peer {
    use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
    match addr.ss_family as libc::c_int {
        libc::AF_INET => {
            // SAFETY: the family says the storage holds a sockaddr_in.
            let a: libc::sockaddr_in =
                unsafe { std::ptr::read((addr as *const libc::sockaddr_storage).cast()) };
            let ip = Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr));
            Peer::Inet(SocketAddr::V4(SocketAddrV4::new(
                ip,
                u16::from_be(a.sin_port),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says the storage holds a sockaddr_in6.
            let a: libc::sockaddr_in6 =
                unsafe { std::ptr::read((addr as *const libc::sockaddr_storage).cast()) };
            let ip = Ipv6Addr::from(a.sin6_addr.s6_addr);
            Peer::Inet(SocketAddr::V6(SocketAddrV6::new(
                ip,
                u16::from_be(a.sin6_port),
                a.sin6_flowinfo,
                a.sin6_scope_id,
            )))
        }
        libc::AF_PACKET => {
            // SAFETY: the family says the storage holds a sockaddr_ll.
            let a: libc::sockaddr_ll =
                unsafe { std::ptr::read((addr as *const libc::sockaddr_storage).cast()) };
            Peer::Packet {
                pkttype: a.sll_pkttype,
            }
        }
        _ => Peer::Unknown,
    }
}

/// Units one [`Batch::recv`] receives at most.
pub const BATCH: usize = 64;
/// Room for one unit: every UDP datagram and Ethernet frame fits whole.
pub const SLOT: usize = 65536;
/// Control-message room per unit: a timestamp and the drop counter.
const CONTROL_WORDS: usize = 16;

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

/// The device and inode, and the size, of the entry `name` in the folder `dir`,
/// not following a symlink (`fstatat` with `AT_SYMLINK_NOFOLLOW`).
pub fn identity_at(dir: &OwnedFd, name: &str) -> io::Result<((u64, u64), u64)> {
    stat_at(dir, name).map(|st| (st.id, st.size))
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

/// `IP_MULTICAST_ALL`: whether an IPv4 socket receives every group any socket on
/// the machine joined (Linux's default) or only its own.
pub fn set_multicast_all(fd: RawFd, on: bool) -> io::Result<()> {
    let v: libc::c_int = on as libc::c_int;
    // SAFETY: `v` is a live c_int and its size is passed.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::IPPROTO_IP,
            libc::IP_MULTICAST_ALL,
            (&v as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The effective user id (for messages).
pub fn effective_uid() -> u32 {
    // SAFETY: geteuid cannot fail and touches no memory.
    unsafe { libc::geteuid() }
}

fn cstring(s: &str) -> io::Result<std::ffi::CString> {
    std::ffi::CString::new(s).map_err(|_| io::Error::other("a name contains a NUL byte"))
}

/// Preallocated `recvmmsg` buffers: [`BATCH`] slots of [`SLOT`] bytes. They are
/// allocated zeroed, so the kernel maps pages only as units fill them: small
/// datagrams keep the resident set small.
pub struct Batch {
    data: Vec<u8>,
    iovs: Vec<libc::iovec>,
    addrs: Vec<libc::sockaddr_storage>,
    controls: Vec<[u64; CONTROL_WORDS]>,
    msgs: Vec<libc::mmsghdr>,
    received: usize,
}

/// What the kernel told about one unit of a batch, besides its bytes.
#[derive(Copy, Clone, Debug)]
pub struct UnitInfo {
    pub received: Received,
    /// The socket's drop counter (`SO_RXQ_OVFL`), when the kernel attached it.
    pub drops: Option<u32>,
}

impl Default for Batch {
    fn default() -> Self {
        Batch::new()
    }
}

impl Batch {
    pub fn new() -> Batch {
        // SAFETY: all-zero is a valid sockaddr_storage, iovec and mmsghdr; the
        // pointers in them are set before every call.
        let zero_addr: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
        let zero_msg: libc::mmsghdr = unsafe { std::mem::zeroed() };
        Batch {
            data: vec![0; BATCH * SLOT],
            iovs: vec![
                libc::iovec {
                    iov_base: std::ptr::null_mut(),
                    iov_len: 0
                };
                BATCH
            ],
            addrs: vec![zero_addr; BATCH],
            controls: vec![[0; CONTROL_WORDS]; BATCH],
            msgs: vec![zero_msg; BATCH],
            received: 0,
        }
    }

    /// One `recvmmsg(MSG_TRUNC)`: up to [`BATCH`] units from a non-blocking socket.
    /// Returns how many arrived (`WouldBlock` when none had).
    pub fn recv(&mut self, fd: RawFd) -> io::Result<usize> {
        for i in 0..BATCH {
            self.iovs[i] = libc::iovec {
                iov_base: self.data[i * SLOT..].as_mut_ptr().cast(),
                iov_len: SLOT,
            };
            let h = &mut self.msgs[i].msg_hdr;
            h.msg_name = (&mut self.addrs[i] as *mut libc::sockaddr_storage).cast();
            h.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            h.msg_iov = &mut self.iovs[i];
            h.msg_iovlen = 1;
            h.msg_control = self.controls[i].as_mut_ptr().cast();
            h.msg_controllen = (CONTROL_WORDS * 8) as _;
            h.msg_flags = 0;
            self.msgs[i].msg_len = 0;
        }
        // SAFETY: every mmsghdr points at buffers owned by `self` with the lengths
        // given; they stay valid and unaliased for the call.
        let n = unsafe {
            libc::recvmmsg(
                fd,
                self.msgs.as_mut_ptr(),
                BATCH as libc::c_uint,
                libc::MSG_TRUNC as _,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            self.received = 0;
            return Err(io::Error::last_os_error());
        }
        self.received = n as usize;
        Ok(self.received)
    }

    /// Gives the slots' memory back to the kernel (`MADV_DONTNEED`): after a burst
    /// of large units every slot is resident; the next units fault in only what
    /// they fill. The contents read as zeros afterwards, which nothing relies on.
    pub fn release(&mut self) {
        let page = 4096;
        let start = self.data.as_mut_ptr() as usize;
        let aligned = start.div_ceil(page) * page;
        let end = start + self.data.len();
        if end > aligned + page {
            let len = (end - aligned) / page * page;
            // SAFETY: [aligned, aligned+len) lies inside `self.data`, which we own
            // exclusively here; MADV_DONTNEED on private anonymous memory only
            // drops pages (they read back as zeros), it never unmaps them.
            unsafe { libc::madvise(aligned as *mut libc::c_void, len, libc::MADV_DONTNEED) };
        }
    }

    /// The slots in turn as plain buffers (for TCP reads), each borrowed for
    /// as long as the batch is.
    pub fn slots_mut(&mut self) -> std::slice::ChunksMut<'_, u8> {
        self.data.chunks_mut(SLOT)
    }

    /// Unit `i` of the last batch: its bytes and what the kernel said of it.
    pub fn unit(&self, i: usize) -> (&[u8], UnitInfo) {
        debug_assert!(i < self.received);
        let m = &self.msgs[i];
        let full_len = m.msg_len as usize;
        let len = full_len.min(SLOT);
        let mut kernel_time = None;
        let mut drops = None;
        // SAFETY: the kernel filled this message's control buffer within
        // msg_controllen; CMSG_FIRSTHDR/NXTHDR stay inside it; payloads are read
        // unaligned.
        unsafe {
            let mut cmsg = libc::CMSG_FIRSTHDR(&m.msg_hdr);
            while !cmsg.is_null() {
                if (*cmsg).cmsg_level == libc::SOL_SOCKET {
                    match (*cmsg).cmsg_type {
                        libc::SCM_TIMESTAMPNS => {
                            let ts: libc::timespec =
                                std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast());
                            if ts.tv_sec > 0 {
                                kernel_time = Some(std::time::Duration::new(
                                    ts.tv_sec as u64,
                                    ts.tv_nsec as u32,
                                ));
                            }
                        }
                        libc::SO_RXQ_OVFL => {
                            drops = Some(std::ptr::read_unaligned(
                                libc::CMSG_DATA(cmsg).cast::<u32>(),
                            ))
                        }
                        _ => {}
                    }
                }
                cmsg = libc::CMSG_NXTHDR(&m.msg_hdr, cmsg);
            }
        }
        let received = Received {
            len,
            full_len,
            peer: peer_of(&self.addrs[i]),
            kernel_time,
        };
        (
            &self.data[i * SLOT..i * SLOT + len],
            UnitInfo { received, drops },
        )
    }
}

/// Asks the kernel to attach its count of units dropped for lack of buffer space
/// (`SO_RXQ_OVFL`) to every unit received.
pub fn enable_drop_counter(fd: RawFd) -> io::Result<()> {
    setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_RXQ_OVFL, 1)
}

/// Asks the kernel to attach its receive time (`SO_TIMESTAMPNS`) to every unit.
pub fn enable_receive_timestamps(fd: RawFd) -> io::Result<()> {
    setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_TIMESTAMPNS, 1)
}

/// The index of a network interface, by name.
pub fn interface_index(name: &str) -> io::Result<u32> {
    let c = std::ffi::CString::new(name).map_err(|_| {
        io::Error::new(io::ErrorKind::InvalidInput, "interface name has a NUL byte")
    })?;
    // SAFETY: `c` is a valid NUL-terminated string for the duration of the call.
    match unsafe { libc::if_nametoindex(c.as_ptr()) } {
        0 => Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("no network interface named {name:?}"),
        )),
        i => Ok(i),
    }
}

/// Joins an IPv4 multicast group on the interface with this index.
pub fn join_multicast_v4_index(
    fd: RawFd,
    group: std::net::Ipv4Addr,
    ifindex: u32,
) -> io::Result<()> {
    let mreq = libc::ip_mreqn {
        imr_multiaddr: libc::in_addr {
            s_addr: u32::from(group).to_be(),
        },
        imr_address: libc::in_addr { s_addr: 0 },
        imr_ifindex: ifindex as libc::c_int,
    };
    // SAFETY: mreq is a valid ip_mreqn whose size is passed.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::IPPROTO_IP,
            libc::IP_ADD_MEMBERSHIP,
            (&mreq as *const libc::ip_mreqn).cast(),
            size_of::<libc::ip_mreqn>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Linux's `PACKET_OUTGOING`: a frame this host sent.
pub const PACKET_OUTGOING: u8 = 4;

/// An AF_PACKET raw socket, non-blocking, bound to `ifindex` and an EtherType
/// (`0` = every protocol, `ETH_P_ALL`).
pub fn packet_socket(ifindex: u32, ethertype: u16) -> io::Result<OwnedFd> {
    let proto = if ethertype == 0 {
        libc::ETH_P_ALL as u16
    } else {
        ethertype
    };
    // SAFETY: plain socket(2) call with valid constants.
    let fd = unsafe {
        libc::socket(
            libc::AF_PACKET,
            libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            proto.to_be() as libc::c_int,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: socket returned a new fd that nothing else owns.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: all-zero is a valid sockaddr_ll; the fields set make it a bind address.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_protocol = proto.to_be();
    sll.sll_ifindex = ifindex as libc::c_int;
    // SAFETY: sll is a valid sockaddr_ll whose size is passed.
    let rc = unsafe {
        libc::bind(
            owned.as_raw_fd(),
            (&sll as *const libc::sockaddr_ll).cast(),
            size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(owned)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn receive_buffer_is_granted_and_reported() {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let got = set_receive_buffer(s.as_raw_fd(), 1 << 20).unwrap();
        // Either forced (2x) or capped by rmem_max; never below the default minimum.
        assert!(got >= 4096, "{got}");
    }
}
