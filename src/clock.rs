//! Time for everything in bsc comes from here: a [`Clock`] passed to whoever needs
//! "now", so rotation, file naming and statistics can be tested at any instant
//! without sleeping.

#[cfg(test)]
use std::cell::Cell;
use std::time::{SystemTime, UNIX_EPOCH};

use time::OffsetDateTime;

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

/// Where "now" comes from: the system's real-time clock, or a value a test sets.
#[derive(Debug)]
pub enum Clock {
    /// `CLOCK_REALTIME`, what PCAP timestamps and calendar rotation are defined on.
    System,
    /// A fixed instant that only moves when a test calls [`Clock::set`].
    #[cfg(test)]
    Manual(Cell<UnixMicros>),
}

impl Clock {
    /// A manual clock starting at `t`.
    #[cfg(test)]
    pub fn manual(t: UnixMicros) -> Clock {
        Clock::Manual(Cell::new(t))
    }

    /// The current instant.
    pub fn now(&self) -> UnixMicros {
        self.now_nanos().micros()
    }

    /// The current instant at nanosecond resolution (the time a unit is read).
    pub fn now_nanos(&self) -> UnixNanos {
        match self {
            Clock::System => UnixNanos::from_duration(
                SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap_or_default(),
            ),
            #[cfg(test)]
            Clock::Manual(t) => t.get().into(),
        }
    }

    /// Moves a manual clock to `t` (no effect on the system clock).
    #[cfg(test)]
    pub fn set(&self, t: UnixMicros) {
        if let Clock::Manual(cell) = self {
            cell.set(t);
        }
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
        c.set(UnixMicros(9));
        assert_eq!(c.now(), UnixMicros(9));
    }
}
