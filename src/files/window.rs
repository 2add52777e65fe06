//! The time window of an extract or a replay, pure: its ends read from text
//! (RFC 3339 or Unix seconds: bsc's one reader of times, [`parse_time`], and
//! of its own RFC 3339 times, [`parse_rfc3339`]), whether a record's instant is in it, and the record headers
//! of a bsc file read from a byte slice, so the reader that walks a file
//! (`control::api::extract`, `bsc extract FILE`) only moves bytes.
//!
//! A window holds the instants `from <= t < to`; a missing end is open. Its
//! ends are whole nanoseconds within what a pcap record can say (0 to
//! 2^32 - 1 seconds after 1970).

use crate::clock::{UnixMicros, UnixNanos};
use crate::files::pcap::{Precision, RECORD_HEADER_LEN, SNAPLEN};

/// The last instant a pcap record header can say (`u32` seconds).
const MAX_SECS: i64 = u32::MAX as i64;

/// The instants an extract keeps: `from <= t < to`, either end open.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Window {
    pub from: Option<UnixNanos>,
    pub to: Option<UnixNanos>,
}

impl Window {
    /// The window between two ends read by [`parse_time`]; refused when
    /// `from` is after `to` (an equal pair is a valid, empty window).
    pub fn new(from: Option<UnixNanos>, to: Option<UnixNanos>) -> Result<Window, String> {
        if let (Some(f), Some(t)) = (from, to) {
            if f > t {
                return Err("from is after to; give from <= to".into());
            }
        }
        Ok(Window { from, to })
    }

    /// Whether the instant `t` is in the window.
    pub fn contains(&self, t: UnixNanos) -> bool {
        self.from.is_none_or(|f| f <= t) && self.to.is_none_or(|e| t < e)
    }

    /// Whether records between `first` and `last` (inclusive, either unknown)
    /// may hold one in the window.
    pub fn overlaps(&self, first: Option<UnixNanos>, last: Option<UnixNanos>) -> bool {
        let ends_before = matches!((last, self.from), (Some(l), Some(f)) if l < f);
        let starts_after = matches!((first, self.to), (Some(s), Some(e)) if s >= e);
        !ends_before && !starts_after
    }
}

/// Reads an instant: RFC 3339 (`2026-12-07T14:00:00Z`, `...T14:00:00.5+01:00`,
/// up to nine fraction digits) or Unix seconds with an optional fraction
/// (`1796652000`, `1796652000.25`). Refuses anything else, and instants a pcap
/// record cannot hold (before 1970, after 2106-02-07T06:28:15Z).
pub fn parse_time(text: &str) -> Result<UnixNanos, String> {
    let t = text.trim();
    let at = if t.bytes().all(|b| b.is_ascii_digit() || b == b'.') && !t.is_empty() {
        unix_seconds(t)
    } else {
        rfc3339(t).and_then(|(secs, frac)| Some(UnixNanos(secs.checked_mul(1_000_000_000)? + frac)))
    }
    .ok_or_else(|| {
        format!(
            "{text:?} is not a time; give RFC 3339 (2026-12-07T14:00:00Z, \
             2026-12-07T14:00:00.5+01:00) or Unix seconds (1796652000.5)"
        )
    })?;
    if !(0..=MAX_SECS * 1_000_000_000 + 999_999_999).contains(&at.0) {
        return Err(format!(
            "{text:?} is outside what a pcap record can hold (1970-01-01T00:00:00Z to 2106-02-07T06:28:15Z)"
        ));
    }
    Ok(at)
}

/// Nanoseconds from a fraction's digits (`"5"` is half a second); `None` past nine.
fn fraction(digits: &str) -> Option<i64> {
    if digits.len() > 9 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if digits.is_empty() {
        return Some(0);
    }
    format!("{digits:0<9}").parse().ok()
}

/// `SECONDS[.FRACTION]`, seconds since 1970.
fn unix_seconds(t: &str) -> Option<UnixNanos> {
    let (secs, frac) = t.split_once('.').unwrap_or((t, ""));
    if secs.is_empty() || secs.len() > 12 {
        return None;
    }
    let secs: i64 = secs.parse().ok()?;
    Some(UnixNanos(
        secs.checked_mul(1_000_000_000)? + fraction(frac)?,
    ))
}

/// RFC 3339 text (as [`parse_time`] reads it) to an instant, whatever its
/// year (bsc's own times, `2026-11-28T10:00:00.000123Z`, read back by the
/// client; the driven clock's `set`); a fraction past the microsecond is cut.
pub fn parse_rfc3339(text: &str) -> Option<UnixMicros> {
    let (secs, frac) = rfc3339(text)?;
    Some(UnixMicros(secs.checked_mul(1_000_000)? + frac / 1000))
}

/// `YYYY-MM-DDTHH:MM:SS[.F]` then `Z` or `±HH:MM` (`t`, `z` and a space for
/// the `T` accepted, as RFC 3339 allows), as seconds since 1970 and the
/// nanoseconds past them.
fn rfc3339(t: &str) -> Option<(i64, i64)> {
    let b = t.as_bytes();
    if b.len() < 20 || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let s = t.get(r)?;
        s.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| s.parse().ok())?
    };
    let seps = [(4, b'-'), (7, b'-'), (13, b':'), (16, b':')];
    if seps.iter().any(|&(i, c)| b[i] != c) {
        return None;
    }
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, m, s) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let rest = &t[19..];
    let (frac, zone) = match rest.strip_prefix('.') {
        Some(r) => {
            let end = r.find(|c: char| !c.is_ascii_digit()).unwrap_or(r.len());
            if end == 0 {
                return None;
            }
            (fraction(&r[..end])?, &r[end..])
        }
        None => (0, rest),
    };
    let offset_secs = match zone {
        "Z" | "z" => 0,
        _ => {
            let zb = zone.as_bytes();
            if zb.len() != 6 || zb[3] != b':' {
                return None;
            }
            let sign = match zb[0] {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let digits = |s: &str| {
                s.bytes()
                    .all(|c| c.is_ascii_digit())
                    .then(|| s.parse::<i64>().ok())?
            };
            let (oh, om) = (digits(&zone[1..3])?, digits(&zone[4..6])?);
            if oh > 23 || om > 59 {
                return None;
            }
            sign * (oh * 3600 + om * 60)
        }
    };
    let date = time::Date::from_calendar_date(
        year as i32,
        time::Month::try_from(u8::try_from(month).ok()?).ok()?,
        u8::try_from(day).ok()?,
    )
    .ok()?;
    let at = date
        .with_hms(
            u8::try_from(h).ok()?,
            u8::try_from(m).ok()?,
            u8::try_from(s).ok()?,
        )
        .ok()?
        .assume_utc();
    Some((at.unix_timestamp() - offset_secs, frac))
}

/// One record header of a bsc file (native byte order).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordHead {
    pub at: UnixNanos,
    /// Bytes of payload that follow the header.
    pub incl: usize,
    pub orig_len: usize,
}

impl RecordHead {
    /// The header at the start of `bytes`, written at `precision`; `None` if
    /// fewer than [`RECORD_HEADER_LEN`] bytes are there. `Err` for a length
    /// bsc never writes (the file is not what the journal says).
    pub fn read(bytes: &[u8], precision: Precision) -> Result<Option<RecordHead>, String> {
        let Some(h) = bytes.get(..RECORD_HEADER_LEN) else {
            return Ok(None);
        };
        let word = |i: usize| u32::from_ne_bytes([h[i], h[i + 1], h[i + 2], h[i + 3]]) as i64;
        let frac = match precision {
            Precision::Micro => word(4) * 1000,
            Precision::Nano => word(4),
        };
        let incl = word(8) as usize;
        if incl > SNAPLEN as usize || frac >= 1_000_000_000 {
            return Err(format!(
                "a record header says {incl} bytes at fraction {frac} ns, which bsc never writes"
            ));
        }
        Ok(Some(RecordHead {
            at: UnixNanos(word(0) * 1_000_000_000 + frac),
            incl,
            orig_len: word(12) as usize,
        }))
    }

    /// The whole record's length, header included.
    pub fn record_len(&self) -> usize {
        RECORD_HEADER_LEN + self.incl
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const AT: i64 = 1_796_652_000; // 2026-12-07T14:00:00Z

    fn secs(s: i64) -> UnixNanos {
        UnixNanos(s * 1_000_000_000)
    }

    #[test]
    fn times_in_both_forms() {
        assert_eq!(parse_time("1796652000"), Ok(secs(AT)));
        assert_eq!(
            parse_time("1796652000.25"),
            Ok(UnixNanos(secs(AT).0 + 250_000_000))
        );
        assert_eq!(parse_time("1796652000."), Ok(secs(AT)));
        assert_eq!(parse_time("2026-12-07T14:00:00Z"), Ok(secs(AT)));
        assert_eq!(parse_time("2026-12-07t14:00:00z"), Ok(secs(AT)));
        assert_eq!(parse_time("2026-12-07 14:00:00Z"), Ok(secs(AT)));
        assert_eq!(parse_time("2026-12-07T15:00:00+01:00"), Ok(secs(AT)));
        assert_eq!(parse_time("2026-12-07T15:30:00+01:30"), Ok(secs(AT)));
        assert_eq!(parse_time("2026-12-07T12:30:00-01:30"), Ok(secs(AT)));
        assert_eq!(
            parse_time("2026-12-07T14:00:00.000000001Z"),
            Ok(UnixNanos(secs(AT).0 + 1))
        );
        assert_eq!(parse_time("0"), Ok(UnixNanos(0)));
        assert_eq!(
            parse_time("4294967295.999999999"),
            Ok(UnixNanos(4_294_967_295_999_999_999))
        );
    }

    #[test]
    fn hostile_times_are_refused() {
        for bad in [
            "",
            " ",
            ".",
            ".5",
            "-1",
            "1e9",
            "0x10",
            "1796652000.1234567891",
            "99999999999999999999",
            "4294967296",
            "2026-12-07",
            "2026-12-07T14:40:00",
            "2026-13-07T14:40:00Z",
            "2026-02-30T14:40:00Z",
            "2026-12-07T24:00:00Z",
            "2026-12-07T14:40:00.Z",
            "2026-12-07T14:40:00+1:00",
            "2026-12-07T14:40:00+24:00",
            "1969-12-31T23:59:59Z",
            "2106-02-07T06:28:16Z",
            "2026-12-07T14:40:00Zjunk",
            "２０２６-12-07T14:40:00Z",
            "2026-12-07T14:40:00.1.2Z",
        ] {
            assert!(parse_time(bad).is_err(), "{bad:?} accepted");
        }
        assert!(parse_time("nope").unwrap_err().contains("RFC 3339"));
    }

    #[test]
    fn bsc_times_read_back_whatever_the_year() {
        let now = UnixMicros(1_795_860_000_000_000); // 2026-11-28T10:00:00Z
        assert_eq!(
            parse_rfc3339("2026-11-28T10:00:00.000123Z"),
            Some(now.plus_micros(123))
        );
        assert_eq!(parse_rfc3339("2026-11-28T10:00:00Z"), Some(now));
        assert_eq!(
            parse_rfc3339("2026-11-28T10:00:00.5Z"),
            Some(now.plus_micros(500_000))
        );
        assert_eq!(
            parse_rfc3339("2026-11-28T11:00:00.000000999+01:00"),
            Some(now)
        );
        for bad in [
            "",
            "2026-11-28",
            "2026-13-01T00:00:00Z",
            "2026-11-28T10:00:00.x1Z",
            "2026-11-28T10:00:00",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
        // Round trip with bsc's own writer, before 1970 and after 2106 too.
        for at in [
            now.plus_micros(42),
            UnixMicros(-1),
            UnixMicros(5_000_000_000_000_000),
        ] {
            assert_eq!(parse_rfc3339(&at.to_rfc3339()), Some(at));
        }
        assert_eq!(
            parse_rfc3339("0001-01-01T00:00:00Z"),
            Some(UnixMicros(-62_135_596_800_000_000))
        );
    }

    #[test]
    fn window_ends() {
        let w = Window::new(Some(secs(10)), Some(secs(20))).unwrap();
        assert!(
            w.contains(secs(10)) && !w.contains(secs(20)) && !w.contains(UnixNanos(secs(10).0 - 1))
        );
        assert!(Window::new(Some(secs(2)), Some(secs(1))).is_err());
        let empty = Window::new(Some(secs(5)), Some(secs(5))).unwrap();
        assert!(!empty.contains(secs(5)));
        assert!(Window::default().contains(UnixNanos(0)));
        assert!(w.overlaps(Some(secs(0)), Some(secs(10))));
        assert!(!w.overlaps(Some(secs(0)), Some(UnixNanos(secs(10).0 - 1))));
        assert!(!w.overlaps(Some(secs(20)), Some(secs(30))));
        assert!(w.overlaps(None, None));
    }

    #[test]
    fn record_heads_read_back() {
        let mut out = Vec::new();
        let at = UnixNanos(secs(AT).0 + 123_456_789);
        crate::files::pcap::encode_record(&mut out, Precision::Nano, at, b"abc", 5);
        let h = RecordHead::read(&out, Precision::Nano).unwrap().unwrap();
        assert_eq!(
            h,
            RecordHead {
                at,
                incl: 3,
                orig_len: 5
            }
        );
        assert_eq!(h.record_len(), out.len());
        assert_eq!(RecordHead::read(&out[..15], Precision::Nano), Ok(None));
        out.clear();
        crate::files::pcap::encode_record(&mut out, Precision::Micro, at, b"", 0);
        let h = RecordHead::read(&out, Precision::Micro).unwrap().unwrap();
        assert_eq!(h.at, UnixNanos(secs(AT).0 + 123_456_000));
        out[8..12].copy_from_slice(&70_000u32.to_ne_bytes());
        assert!(RecordHead::read(&out, Precision::Micro).is_err());
    }

    proptest::proptest! {
        #[test]
        fn any_text_is_a_time_or_an_error(text in ".{0,40}") {
            let _ = parse_time(&text);
        }

        #[test]
        fn both_forms_read_back(nanos in 0i64..=MAX_SECS * 1_000_000_000 + 999_999_999, offset_min in -1439i64..=1439) {
            let (s, n) = (nanos / 1_000_000_000, nanos % 1_000_000_000);
            proptest::prop_assert_eq!(parse_time(&format!("{s}.{n:09}")), Ok(UnixNanos(nanos)));
            let local = time::OffsetDateTime::from_unix_timestamp(s + offset_min * 60).unwrap();
            let sign = if offset_min < 0 { '-' } else { '+' };
            let text = format!(
                "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{n:09}{sign}{:02}:{:02}",
                local.year(), local.month() as u8, local.day(), local.hour(), local.minute(), local.second(),
                offset_min.abs() / 60, offset_min.abs() % 60
            );
            proptest::prop_assert_eq!(parse_time(&text), Ok(UnixNanos(nanos)), "{}", text);
        }
    }
}
