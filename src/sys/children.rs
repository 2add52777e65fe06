//! The commands bsc starts (`on_close` hooks, `ship` commands): their signal
//! mask made empty again, a process group of their own that a timeout kills
//! whole, death with bsc, and whether one ended without reaping it.
#![allow(unsafe_code)]

use std::io;
use std::mem::MaybeUninit;
use std::os::fd::RawFd;

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
