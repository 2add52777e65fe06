//! Clocks: the monotonic clock systemd wants, and whether the kernel considers
//! the system clock synchronised (`adjtimex`).
#![allow(unsafe_code)]

/// Whether the kernel considers the system clock synchronised (NTP or similar):
/// `adjtimex` without changes, `STA_UNSYNC` clear.
pub fn clock_synchronised() -> bool {
    // SAFETY: all-zero is a valid timex with modes 0 (read only).
    let mut tx: libc::timex = unsafe { std::mem::zeroed() };
    // SAFETY: adjtimex reads the clock state into the struct it is given.
    let state = unsafe { libc::adjtimex(&mut tx) };
    state >= 0 && state != libc::TIME_ERROR && tx.status & libc::STA_UNSYNC == 0
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
