//! Time for everything in bsc comes from here: a [`Clock`] the event loop owns
//! and reads, handing [`Now`] (the calendar and the monotonic clock, read
//! together) to whatever decides by time, so rotation, file naming, timers and
//! statistics can be tested at any instant without sleeping. Nothing below the
//! loop reads a clock (`.ci/now-check` proves it); the kernel's receive times
//! become [`UnixNanos`] here too ([`UnixNanos::from_kernel`]).
//!
//! Builds with debug assertions (the test builds) have a driven clock for
//! black-box tests: started with `BSC_DEBUG_CLOCK=1`, bsc's clock is the
//! system's plus an offset that `POST /debug/clock` moves (`advance=SECONDS`
//! or `set=RFC3339`, see `api/debug.rs`). The offset moves the wall clock, the
//! monotonic instants the loop hands out (timers, back-offs, grace periods;
//! never backwards) and the kernel's receive times alike. Release builds have
//! neither the variable nor the route: the offset is the constant zero.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use time::OffsetDateTime;

pub mod kernel;
pub use kernel::{ClockOnFiles, ClockWord, CLOCK_HEADER};

/// An instant as microseconds since the Unix epoch, UTC (the resolution of a PCAP
/// record timestamp).
#[derive(
    Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(transparent)]
pub struct UnixMicros(pub i64);

impl UnixMicros {
    /// Whole seconds since the epoch (floor, so instants before 1970 stay ordered).
    pub fn secs(self) -> i64 {
        self.0.div_euclid(1_000_000)
    }

    /// Microseconds past the whole second, 0..1_000_000.
    pub fn subsec_micros(self) -> u32 {
        self.0.rem_euclid(1_000_000) as u32
    }

    /// The calendar view of this instant, in UTC.
    pub fn to_datetime(self) -> OffsetDateTime {
        // Every i64 microsecond count maps into time's range (+-9999 years is
        // about +-3.2e17 us, i64 allows +-9.2e18), but clamp rather than trust it.
        OffsetDateTime::from_unix_timestamp_nanos(self.0 as i128 * 1000)
            .unwrap_or(OffsetDateTime::UNIX_EPOCH)
    }

    /// The instant a calendar time denotes.
    pub fn from_datetime(t: OffsetDateTime) -> UnixMicros {
        UnixMicros((t.unix_timestamp_nanos() / 1000) as i64)
    }

    /// `self` plus a number of microseconds, saturating.
    pub fn plus_micros(self, us: i64) -> UnixMicros {
        UnixMicros(self.0.saturating_add(us))
    }

    /// RFC 3339 text in UTC with microseconds, e.g. `2026-11-28T10:00:00.000123Z`.
    pub fn to_rfc3339(self) -> String {
        let t = self.to_datetime();
        format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second(),
            self.subsec_micros()
        )
    }
}

/// An instant as nanoseconds since the Unix epoch, UTC: the time a unit was
/// received or read, at the resolution of a nanosecond PCAP file. Everything else
/// in bsc (rotation, naming, statistics) works on its [`UnixMicros`].
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UnixNanos(pub i64);

impl UnixNanos {
    /// From a time since the epoch (the kernel's receive time), saturating.
    pub fn from_duration(d: std::time::Duration) -> UnixNanos {
        UnixNanos(d.as_nanos().min(i64::MAX as u128) as i64)
    }

    /// The microsecond instant (floor): what a microsecond file records.
    pub fn micros(self) -> UnixMicros {
        UnixMicros(self.0.div_euclid(1000))
    }

    /// Whole seconds since the epoch (floor).
    pub fn secs(self) -> i64 {
        self.0.div_euclid(1_000_000_000)
    }

    /// Nanoseconds past the whole second, 0..1_000_000_000.
    pub fn subsec_nanos(self) -> u32 {
        self.0.rem_euclid(1_000_000_000) as u32
    }
}

impl From<UnixMicros> for UnixNanos {
    fn from(t: UnixMicros) -> UnixNanos {
        UnixNanos(t.0.saturating_mul(1000))
    }
}

/// What the loop reads: the calendar and the monotonic clock, taken together.
#[derive(Copy, Clone, Debug)]
pub struct Now {
    /// The wall clock: PCAP timestamps, calendar rotation, names, statistics.
    pub wall: UnixMicros,
    /// The monotonic clock: timers, back-offs, timeouts, grace periods, rates.
    pub mono: Instant,
}

impl Now {
    /// The monotonic instant at which the wall clock reads `at` (`mono` if
    /// that has passed): how the loop sleeps until a calendar deadline.
    pub fn instant_at(self, at: UnixMicros) -> Instant {
        self.mono + Duration::from_micros(at.0.saturating_sub(self.wall.0).max(0) as u64)
    }
}

/// Where "now" comes from: the system's clocks, or a value a test sets.
#[derive(Debug)]
pub enum Clock {
    /// `CLOCK_REALTIME` (what PCAP timestamps and calendar rotation are defined
    /// on) and `CLOCK_MONOTONIC`; plus the driven offset in test builds.
    System,
    /// A fixed instant that only moves when a test calls [`Clock::set`]; its
    /// monotonic clock follows the wall clock from where it started.
    #[cfg(test)]
    Manual {
        wall: std::cell::Cell<UnixMicros>,
        start: UnixMicros,
        anchor: Instant,
    },
}

impl Clock {
    /// A manual clock starting at `t`.
    #[cfg(test)]
    pub fn manual(t: UnixMicros) -> Clock {
        Clock::Manual {
            wall: std::cell::Cell::new(t),
            start: t,
            anchor: Instant::now(),
        }
    }

    /// Both clocks, now.
    pub fn read(&self) -> Now {
        match self {
            Clock::System => Now {
                wall: self.now(),
                mono: monotonic(),
            },
            #[cfg(test)]
            Clock::Manual {
                wall,
                start,
                anchor,
            } => Now {
                wall: wall.get(),
                mono: *anchor + Duration::from_micros((wall.get().0 - start.0).max(0) as u64),
            },
        }
    }

    /// The current instant.
    pub fn now(&self) -> UnixMicros {
        self.now_nanos().micros()
    }

    /// The current instant at nanosecond resolution (the time a unit is read).
    pub fn now_nanos(&self) -> UnixNanos {
        match self {
            Clock::System => {
                let real = UnixNanos::from_duration(
                    SystemTime::now()
                        .duration_since(UNIX_EPOCH)
                        .unwrap_or_default(),
                );
                UnixNanos(real.0.saturating_add(offset().wall_nanos))
            }
            #[cfg(test)]
            Clock::Manual { wall, .. } => wall.get().into(),
        }
    }

    /// Moves a manual clock to `t` (no effect on the system clock).
    #[cfg(test)]
    pub fn set(&self, t: UnixMicros) {
        if let Clock::Manual { wall, .. } = self {
            wall.set(t);
        }
    }
}

/// The monotonic clock (with the driven offset in test builds), for the one
/// caller that is not below the loop: the `bsc` client's answer deadline.
pub fn monotonic() -> Instant {
    Instant::now() + Duration::from_nanos(offset().mono_nanos)
}

/// `CLOCK_MONOTONIC` in nanoseconds, without the driven offset: the clock
/// `bsc replay` (a client command, not below the loop) paces its records by,
/// the one [`crate::sys::sleep_until_monotonic`] sleeps on.
pub fn steady_nanos() -> u64 {
    crate::sys::monotonic_nanos()
}

impl UnixNanos {
    /// A kernel receive time (`SO_TIMESTAMPNS`, `CLOCK_REALTIME`) as bsc's
    /// clock reads it: with the driven offset in test builds, so a record
    /// falls in the period the clock is in.
    pub fn from_kernel(d: Duration) -> UnixNanos {
        UnixNanos(
            UnixNanos::from_duration(d)
                .0
                .saturating_add(offset().wall_nanos),
        )
    }
}

/// How far a driven clock is ahead of the system's clocks.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct Offset {
    /// Added to the wall clock (negative after a `set` to the past).
    pub wall_nanos: i64,
    /// Added to the monotonic clock: only ever grows.
    pub mono_nanos: u64,
}

impl Offset {
    /// Both clocks `by` later.
    pub fn advance(self, by: Duration) -> Offset {
        let by = by.as_nanos().min(i64::MAX as u128) as i64;
        Offset {
            wall_nanos: self.wall_nanos.saturating_add(by),
            mono_nanos: self.mono_nanos.saturating_add(by as u64),
        }
    }

    /// The wall clock reading `to` when it reads `now`; the monotonic clock
    /// moves as far forward (not at all for a time in the past).
    pub fn set(self, now: UnixNanos, to: UnixNanos) -> Offset {
        let delta = to.0.saturating_sub(now.0);
        Offset {
            wall_nanos: self.wall_nanos.saturating_add(delta),
            mono_nanos: self.mono_nanos.saturating_add(delta.max(0) as u64),
        }
    }
}

/// The offset in effect: always zero in release builds.
#[cfg(not(debug_assertions))]
fn offset() -> Offset {
    Offset::default()
}

#[cfg(debug_assertions)]
pub use driven::{drive_from_env, driven, move_to};

#[cfg(debug_assertions)]
use driven::offset;

/// The driven clock of test builds: the offset lives in process-wide atomics
/// (bsc has one clock; the kernel's receive times are shifted where they are
/// read, without a clock at hand).
#[cfg(debug_assertions)]
mod driven {
    use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};

    use super::{Clock, Offset, UnixMicros};

    static DRIVEN: AtomicBool = AtomicBool::new(false);
    static WALL: AtomicI64 = AtomicI64::new(0);
    static MONO: AtomicU64 = AtomicU64::new(0);

    /// `BSC_DEBUG_CLOCK=1`: the clock may be moved from now on. Returns
    /// whether it is driven.
    pub fn drive_from_env() -> bool {
        if std::env::var_os("BSC_DEBUG_CLOCK").is_some_and(|v| v == "1") {
            DRIVEN.store(true, Ordering::Relaxed);
        }
        driven()
    }

    /// Whether bsc runs on the driven clock.
    pub fn driven() -> bool {
        DRIVEN.load(Ordering::Relaxed)
    }

    pub(super) fn offset() -> Offset {
        Offset {
            wall_nanos: WALL.load(Ordering::Relaxed),
            mono_nanos: MONO.load(Ordering::Relaxed),
        }
    }

    /// Moves the driven clock (`change` gets the offset and the clock's
    /// reading); the new reading, or `None` when the clock is not driven.
    pub fn move_to(change: impl FnOnce(Offset, UnixMicros) -> Offset) -> Option<UnixMicros> {
        if !driven() {
            return None;
        }
        let new = change(offset(), Clock::System.now());
        WALL.store(new.wall_nanos, Ordering::Relaxed);
        MONO.store(new.mono_nanos, Ordering::Relaxed);
        Some(Clock::System.now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_seconds_and_micros_also_before_epoch() {
        assert_eq!(UnixMicros(1_500_000).secs(), 1);
        assert_eq!(UnixMicros(1_500_000).subsec_micros(), 500_000);
        assert_eq!(UnixMicros(-1).secs(), -1);
        assert_eq!(UnixMicros(-1).subsec_micros(), 999_999);
    }

    #[test]
    fn nanos_split_and_truncate_to_micros() {
        let t = UnixNanos::from_duration(std::time::Duration::new(1_795_860_000, 123_456_789));
        assert_eq!(t.secs(), 1_795_860_000);
        assert_eq!(t.subsec_nanos(), 123_456_789);
        assert_eq!(t.micros(), UnixMicros(1_795_860_000_123_456));
        assert_eq!(UnixNanos::from(UnixMicros(-1)).micros(), UnixMicros(-1));
        assert_eq!(UnixNanos(-1).subsec_nanos(), 999_999_999);
        assert_eq!(UnixNanos(-1).micros(), UnixMicros(-1));
    }

    #[test]
    fn rfc3339_is_utc_with_micros() {
        let t = UnixMicros(1_795_860_000_000_123); // 2026-11-28T10:00:00.000123Z
        assert_eq!(t.to_rfc3339(), "2026-11-28T10:00:00.000123Z");
        assert_eq!(UnixMicros::from_datetime(t.to_datetime()), t);
    }

    #[test]
    fn manual_clock_moves_only_when_set() {
        let c = Clock::manual(UnixMicros(5));
        assert_eq!(c.now(), UnixMicros(5));
        let before = c.read().mono;
        c.set(UnixMicros(9));
        assert_eq!(c.now(), UnixMicros(9));
        assert_eq!(c.read().mono - before, Duration::from_micros(4));
    }

    #[test]
    fn a_calendar_deadline_becomes_a_monotonic_instant() {
        let c = Clock::manual(UnixMicros(1_000_000));
        let now = c.read();
        assert_eq!(
            now.instant_at(UnixMicros(3_500_000)) - now.mono,
            Duration::from_millis(2500)
        );
        assert_eq!(now.instant_at(UnixMicros(0)), now.mono, "past: now");
    }

    #[test]
    fn an_advance_moves_both_clocks_a_set_to_the_past_only_the_wall() {
        let o = Offset::default().advance(Duration::from_millis(1500));
        assert_eq!((o.wall_nanos, o.mono_nanos), (1_500_000_000, 1_500_000_000));
        let later = o.set(UnixNanos(10_000_000_000), UnixNanos(70_000_000_000));
        assert_eq!(
            (later.wall_nanos, later.mono_nanos),
            (61_500_000_000, 61_500_000_000)
        );
        let back = later.set(UnixNanos(70_000_000_000), UnixNanos(10_000_000_000));
        assert_eq!(
            (back.wall_nanos, back.mono_nanos),
            (1_500_000_000, 61_500_000_000),
            "the monotonic clock never goes back"
        );
    }

    #[test]
    fn without_the_variable_the_clock_is_not_driven() {
        // The unit tests never set BSC_DEBUG_CLOCK: the clock is the system's
        // and cannot be moved (in release builds the code does not exist).
        #[cfg(debug_assertions)]
        {
            assert!(!driven());
            assert_eq!(move_to(|o, _| o.advance(Duration::from_secs(60))), None);
        }
        assert_eq!(offset(), Offset::default());
        let d = Duration::new(1_795_860_000, 5);
        assert_eq!(UnixNanos::from_kernel(d), UnixNanos::from_duration(d));
    }
}
