//! Signals: SIGTERM, SIGINT, SIGHUP and SIGCHLD blocked for the whole process
//! and read from a `signalfd` the event loop polls (no handler code runs, no
//! call is interrupted by them).
#![allow(unsafe_code)]

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

/// Signals caught by [`catch_signals`] and not yet taken: bit `n` for signal `n`.
static CAUGHT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

extern "C" fn note_signal(signal: libc::c_int) {
    // An atomic or is async-signal-safe; signals below 32 only (checked in catch_signals).
    CAUGHT.fetch_or(1 << signal, std::sync::atomic::Ordering::SeqCst);
}

/// For a command that is not the event loop (`bsc replay`): these signals no
/// longer do their default (end or stop the process) but are noted, for
/// [`take_caught`]; a blocking call they interrupt returns `EINTR` (no
/// `SA_RESTART`), so a sleep or a write ends at once.
pub fn catch_signals(signals: &[libc::c_int]) -> io::Result<()> {
    for &s in signals {
        if !(1..32).contains(&s) {
            return Err(io::Error::other(format!("signal {s} is not below 32")));
        }
        // SAFETY: an all-zero sigaction is valid (empty mask, no flags); the
        // handler only does an atomic or, which is async-signal-safe.
        let rc = unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = note_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(s, &action, std::ptr::null_mut())
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// The signals noted since the last call (bit `n` for signal `n`), cleared.
pub fn take_caught() -> u32 {
    CAUGHT.swap(0, std::sync::atomic::Ordering::SeqCst)
}

/// Stops this process as job control does (`SIGSTOP`, which cannot be
/// caught); returns once something sends `SIGCONT`.
pub fn stop_self() {
    // SAFETY: raise only sends a signal to this thread.
    unsafe { libc::raise(libc::SIGSTOP) };
}
