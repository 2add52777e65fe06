//! AIT's calendar rotation rule, as pure functions of (opened-at, now).
//!
//! The rule (AIT `_should_rotate_log`, in UTC): compare the time the current file
//! was opened with now, field by field (year, month, day, hour, minute, second).
//! If a field coarser than the rotation unit differs, rotate. Otherwise rotate when
//! the unit's field of now minus that of the opening time is at least `delta`.
//!
//! [`RotationRule::is_due`] is that rule, literally. [`RotationRule::next_rotation`]
//! gives the first instant at which it holds, so the hot path compares one integer
//! per record and the event loop can sleep until the exact instant a file's period
//! ends. A test checks the two agree.

use std::fmt;
use std::str::FromStr;

use time::{Date, Month, OffsetDateTime, Time};

/// The calendar field a handler rotates on (`rotate_log_index`).
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum RotationUnit {
    Year,
    Month,
    Day,
    Hour,
    Minute,
    Second,
}

impl RotationUnit {
    /// The accepted spellings of `rotate_log_index`, as AIT lists them.
    pub const NAMES: &'static str = "year years tm_year month months tm_mon day days tm_mday \
                                     hour hours tm_hour minute minutes tm_min second seconds tm_sec";

    /// Position of this unit in (year, month, day, hour, minute, second).
    fn index(self) -> usize {
        self as usize
    }
}

impl FromStr for RotationUnit {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "year" | "years" | "tm_year" => RotationUnit::Year,
            "month" | "months" | "tm_mon" => RotationUnit::Month,
            "day" | "days" | "tm_mday" => RotationUnit::Day,
            "hour" | "hours" | "tm_hour" => RotationUnit::Hour,
            "minute" | "minutes" | "tm_min" => RotationUnit::Minute,
            "second" | "seconds" | "tm_sec" => RotationUnit::Second,
            other => {
                return Err(format!(
                    "unknown rotation unit {other:?}; expected one of: {}",
                    RotationUnit::NAMES
                ))
            }
        })
    }
}

impl fmt::Display for RotationUnit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RotationUnit::Year => "year",
            RotationUnit::Month => "month",
            RotationUnit::Day => "day",
            RotationUnit::Hour => "hour",
            RotationUnit::Minute => "minute",
            RotationUnit::Second => "second",
        })
    }
}

/// When a file is closed: every `delta` calendar `unit`s, AIT's way.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct RotationRule {
    pub unit: RotationUnit,
    /// At least 1 (checked by the config loader).
    pub delta: u32,
}

/// (year, month, day, hour, minute, second) as AIT's `time.gmtime()` tuple has them.
fn fields(t: OffsetDateTime) -> [i64; 6] {
    [
        t.year() as i64,
        u8::from(t.month()) as i64,
        t.day() as i64,
        t.hour() as i64,
        t.minute() as i64,
        t.second() as i64,
    ]
}

impl RotationRule {
    /// AIT's rule: must a file opened at `opened` be rotated at `now`?
    pub fn is_due(&self, opened: OffsetDateTime, now: OffsetDateTime) -> bool {
        let (a, b) = (fields(opened), fields(now));
        let unit = self.unit.index();
        if a[..unit] != b[..unit] {
            return true;
        }
        b[unit] - a[unit] >= self.delta as i64
    }

    /// The first instant at or after `opened` at which [`Self::is_due`] holds: the
    /// start of the unit `delta` steps on, or the start of the next coarser unit if
    /// that comes first (daily with delta 2 from the 31st: the 1st of next month).
    pub fn next_rotation(&self, opened: OffsetDateTime) -> OffsetDateTime {
        let d = self.delta as i64;
        let date = opened.date();
        let year = date.year();
        let midnight = |date: Date| date.with_time(Time::MIDNIGHT).assume_utc();
        let new_year = |y: i64| {
            // Years past time's range (+9999) never come: saturate.
            let y = y.min(9999) as i32;
            Date::from_calendar_date(y, Month::January, 1)
                .map_or(OffsetDateTime::UNIX_EPOCH, midnight)
        };
        let first_of_next_month = || {
            let (y, m) = if date.month() == Month::December {
                (year as i64 + 1, Month::January)
            } else {
                (year as i64, date.month().next())
            };
            if y > 9999 {
                return new_year(y);
            }
            Date::from_calendar_date(y as i32, m, 1).map_or_else(|_| new_year(y), midnight)
        };
        let day_start = midnight(date);
        let hour_start = day_start + time::Duration::hours(opened.hour() as i64);
        let minute_start = hour_start + time::Duration::minutes(opened.minute() as i64);
        match self.unit {
            RotationUnit::Year => new_year(year as i64 + d),
            RotationUnit::Month => {
                let m = u8::from(date.month()) as i64 + d;
                if m <= 12 {
                    let month = Month::try_from(m as u8).unwrap_or(Month::December);
                    Date::from_calendar_date(year, month, 1)
                        .map_or_else(|_| new_year(year as i64 + 1), midnight)
                } else {
                    new_year(year as i64 + 1)
                }
            }
            RotationUnit::Day => {
                let target = date.day() as i64 + d;
                if target <= date.month().length(year) as i64 {
                    day_start + time::Duration::days(d)
                } else {
                    first_of_next_month()
                }
            }
            RotationUnit::Hour => {
                if opened.hour() as i64 + d <= 23 {
                    hour_start + time::Duration::hours(d)
                } else {
                    day_start + time::Duration::days(1)
                }
            }
            RotationUnit::Minute => {
                if opened.minute() as i64 + d <= 59 {
                    minute_start + time::Duration::minutes(d)
                } else {
                    hour_start + time::Duration::hours(1)
                }
            }
            RotationUnit::Second => {
                let second_start = minute_start + time::Duration::seconds(opened.second() as i64);
                if opened.second() as i64 + d <= 59 {
                    second_start + time::Duration::seconds(d)
                } else {
                    minute_start + time::Duration::minutes(1)
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::Duration;

    /// `dt(2026, 11, 28, 10, 59, 59)`: a UTC calendar instant.
    fn dt(y: i32, mo: u8, d: u8, h: u8, mi: u8, s: u8) -> OffsetDateTime {
        Date::from_calendar_date(y, Month::try_from(mo).unwrap(), d)
            .unwrap()
            .with_hms(h, mi, s)
            .unwrap()
            .assume_utc()
    }

    fn rule(unit: &str, delta: u32) -> RotationRule {
        RotationRule {
            unit: unit.parse().unwrap(),
            delta,
        }
    }

    #[test]
    fn parses_every_ait_spelling_and_rejects_others() {
        for (names, unit) in [
            ("year years tm_year", RotationUnit::Year),
            ("month months tm_mon", RotationUnit::Month),
            ("day days tm_mday", RotationUnit::Day),
            ("hour hours tm_hour", RotationUnit::Hour),
            ("minute minutes tm_min", RotationUnit::Minute),
            ("second seconds tm_sec", RotationUnit::Second),
        ] {
            for n in names.split(' ') {
                assert_eq!(n.parse::<RotationUnit>(), Ok(unit), "{n}");
            }
        }
        let err = "fortnight".parse::<RotationUnit>().unwrap_err();
        assert!(
            err.contains("fortnight") && err.contains("tm_hour"),
            "{err}"
        );
        assert!("Day".parse::<RotationUnit>().is_err());
    }

    #[test]
    fn hourly_rotates_at_the_top_of_the_hour() {
        let r = rule("hour", 1);
        let opened = dt(2026, 11, 28, 10, 59, 59);
        assert!(!r.is_due(opened, opened));
        assert!(r.is_due(opened, dt(2026, 11, 28, 11, 0, 0)));
        assert_eq!(r.next_rotation(opened), dt(2026, 11, 28, 11, 0, 0));
        assert!(!r.is_due(dt(2026, 11, 28, 10, 0, 0), dt(2026, 11, 28, 10, 59, 59)));
    }

    #[test]
    fn ait_month_delta_two() {
        // AIT's own test: no rotation after one day, rotation after 62 days.
        let r = rule("months", 2);
        let opened = dt(2026, 1, 15, 0, 0, 0);
        assert!(!r.is_due(opened, dt(2026, 1, 16, 0, 0, 0)));
        assert!(!r.is_due(opened, dt(2026, 2, 28, 23, 59, 59)));
        assert!(r.is_due(opened, dt(2026, 3, 18, 0, 0, 0))); // 62 days later
        assert_eq!(r.next_rotation(opened), dt(2026, 3, 1, 0, 0, 0));
        // From November, two months on is past December: the year change comes first.
        assert_eq!(
            r.next_rotation(dt(2026, 11, 3, 4, 5, 6)),
            dt(2027, 1, 1, 0, 0, 0)
        );
    }

    #[test]
    fn daily_rotates_at_every_month_and_year_change() {
        let r = rule("day", 1);
        assert!(r.is_due(dt(2026, 1, 31, 23, 0, 0), dt(2026, 2, 1, 0, 0, 0)));
        assert!(r.is_due(dt(2026, 12, 31, 23, 59, 59), dt(2027, 1, 1, 0, 0, 0)));
        // Same day number in another month still rotates (a coarser field differs).
        assert!(r.is_due(dt(2026, 1, 5, 0, 0, 0), dt(2026, 2, 5, 0, 0, 0)));
        assert!(!r.is_due(dt(2026, 1, 5, 0, 0, 0), dt(2026, 1, 5, 23, 59, 59)));
    }

    #[test]
    fn daily_delta_two_from_the_third_and_from_month_end() {
        let r = rule("day", 2);
        let opened = dt(2026, 3, 3, 12, 0, 0);
        assert!(!r.is_due(opened, dt(2026, 3, 4, 23, 59, 59)));
        assert!(r.is_due(opened, dt(2026, 3, 5, 0, 0, 0)));
        assert_eq!(r.next_rotation(opened), dt(2026, 3, 5, 0, 0, 0));
        assert_eq!(
            r.next_rotation(dt(2026, 3, 30, 1, 0, 0)),
            dt(2026, 4, 1, 0, 0, 0)
        );
        assert_eq!(
            r.next_rotation(dt(2024, 2, 28, 1, 0, 0)),
            dt(2024, 3, 1, 0, 0, 0)
        );
        assert_eq!(
            r.next_rotation(dt(2024, 2, 27, 1, 0, 0)),
            dt(2024, 2, 29, 0, 0, 0)
        );
    }

    #[test]
    fn seconds_minutes_and_years() {
        assert_eq!(
            rule("second", 1).next_rotation(dt(2026, 11, 28, 10, 0, 5)),
            dt(2026, 11, 28, 10, 0, 6)
        );
        assert_eq!(
            rule("second", 10).next_rotation(dt(2026, 11, 28, 10, 0, 55)),
            dt(2026, 11, 28, 10, 1, 0)
        );
        assert_eq!(
            rule("minute", 15).next_rotation(dt(2026, 11, 28, 23, 50, 0)),
            dt(2026, 11, 29, 0, 0, 0)
        );
        assert_eq!(
            rule("tm_year", 1).next_rotation(dt(2026, 11, 28, 0, 0, 0)),
            dt(2027, 1, 1, 0, 0, 0)
        );
        assert_eq!(
            rule("hour", 6).next_rotation(dt(2026, 12, 31, 20, 0, 0)),
            dt(2027, 1, 1, 0, 0, 0)
        );
        assert!(!rule("year", 1).is_due(dt(2026, 1, 1, 0, 0, 0), dt(2026, 12, 31, 23, 59, 59)));
    }

    #[test]
    fn a_clock_that_goes_back_within_the_unit_does_not_rotate() {
        let r = rule("hour", 1);
        assert!(!r.is_due(dt(2026, 11, 28, 10, 30, 0), dt(2026, 11, 28, 10, 10, 0)));
        // ...but one that goes back across a day does, as AIT's rule says.
        assert!(r.is_due(dt(2026, 11, 28, 10, 30, 0), dt(2026, 11, 27, 10, 30, 0)));
    }

    /// `next_rotation` is exactly the first instant where `is_due` holds, for every
    /// unit and several deltas, from opening times spread over awkward dates.
    #[test]
    fn next_rotation_agrees_with_the_rule() {
        let starts = [
            dt(2024, 2, 28, 23, 59, 58),
            dt(2024, 2, 29, 12, 30, 30),
            dt(2026, 1, 31, 0, 0, 0),
            dt(2026, 11, 28, 10, 59, 59),
            dt(2026, 12, 31, 23, 59, 59),
            dt(2027, 6, 30, 22, 45, 1),
        ];
        let units = ["year", "month", "day", "hour", "minute", "second"];
        for unit in units {
            for delta in [1, 2, 3, 7, 13, 25, 61] {
                let r = rule(unit, delta);
                for &opened in &starts {
                    let next = r.next_rotation(opened);
                    assert!(next > opened, "{unit}/{delta} from {opened}");
                    assert!(
                        r.is_due(opened, next),
                        "{unit}/{delta} from {opened}: due at {next}"
                    );
                    let just_before = next - Duration::SECOND;
                    if just_before >= opened {
                        assert!(
                            !r.is_due(opened, just_before),
                            "{unit}/{delta} from {opened}: early at {just_before}"
                        );
                    }
                    // Sample the interval: never due before `next`.
                    let span = (next - opened).whole_seconds().max(1);
                    for k in 0..50 {
                        let t = opened + Duration::seconds(span * k / 50);
                        if t < next {
                            assert!(
                                !r.is_due(opened, t),
                                "{unit}/{delta} from {opened}: due at {t} < {next}"
                            );
                        }
                    }
                }
            }
        }
    }
}
