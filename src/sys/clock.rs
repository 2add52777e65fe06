//! Clocks: the monotonic clock systemd wants, and whether the kernel considers
//! the system clock synchronised (`adjtimex`).
#![allow(unsafe_code)]

/// The kernel's word on the system clock: whether it considers it
/// synchronised (NTP or similar: `STA_UNSYNC` clear, not `TIME_ERROR`) and its
/// `maxerror` in microseconds; `None` when `adjtimex` fails. One `adjtimex`
/// without changes (about 0.8 us here): the event loop calls it once a second.
pub fn kernel_clock_state() -> Option<(bool, u64)> {
    // SAFETY: all-zero is a valid timex with modes 0 (read only).
    let mut tx: libc::timex = unsafe { std::mem::zeroed() };
    // SAFETY: adjtimex reads the clock state into the struct it is given.
    let state = unsafe { libc::adjtimex(&mut tx) };
    if state < 0 {
        return None;
    }
    let synchronised = state != libc::TIME_ERROR && tx.status & libc::STA_UNSYNC == 0;
    Some((synchronised, tx.maxerror.max(0) as u64))
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

/// `CLOCK_MONOTONIC` in nanoseconds (the clock `bsc replay` paces by; read
/// through [`crate::clock::steady_nanos`]).
pub fn monotonic_nanos() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes a timespec into the struct it is given.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Sleeps until `CLOCK_MONOTONIC` reads `deadline` nanoseconds
/// (`clock_nanosleep` with `TIMER_ABSTIME`: an absolute deadline, so time
/// spent before the call does not add up). `false` when a signal handler
/// interrupted the sleep first.
pub fn sleep_until_monotonic(deadline: u64) -> bool {
    // `as _`: time_t is 32 bits on the libc crate's 32-bit musl targets (its
    // alias is deprecated there); CLOCK_MONOTONIC seconds (the uptime) fit.
    let ts = libc::timespec {
        tv_sec: (deadline / 1_000_000_000) as _,
        tv_nsec: (deadline % 1_000_000_000) as _,
    };
    // SAFETY: `ts` is a valid timespec; a null remainder is allowed with TIMER_ABSTIME.
    let rc = unsafe {
        libc::clock_nanosleep(
            libc::CLOCK_MONOTONIC,
            libc::TIMER_ABSTIME,
            &ts,
            std::ptr::null_mut(),
        )
    };
    rc != libc::EINTR
}

/// Asks the kernel to wake this thread's timed sleeps as close to their
/// deadline as it can (`PR_SET_TIMERSLACK` of 1 ns instead of the default
/// 50 us, which it may add to each sleep to batch wake-ups).
pub fn precise_wakeups() {
    // SAFETY: PR_SET_TIMERSLACK takes one integer argument and changes only
    // this thread's timer slack; a failure leaves the default, which is safe.
    unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong, 0, 0, 0) };
}
