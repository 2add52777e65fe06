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
