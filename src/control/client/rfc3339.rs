//! bsc's RFC 3339 UTC text back to an instant (the client reads the times of
//! `/stats` and `/<name>/files`).

use crate::clock::UnixMicros;

/// bsc's RFC 3339 UTC text (`2026-11-28T10:00:00.000123Z`) back to an instant.
pub fn parse_rfc3339(s: &str) -> Option<UnixMicros> {
    let s = s.strip_suffix('Z')?;
    let (date, clock) = s.split_once('T')?;
    let mut d = date.splitn(3, '-').map(|p| p.parse::<i32>().ok());
    let (year, month, day) = (d.next()??, d.next()??, d.next()??);
    let (hms, frac) = clock.split_once('.').unwrap_or((clock, ""));
    let mut t = hms.splitn(3, ':').map(|p| p.parse::<u8>().ok());
    let (h, m, sec) = (t.next()??, t.next()??, t.next()??);
    let date = time::Date::from_calendar_date(
        year,
        time::Month::try_from(u8::try_from(month).ok()?).ok()?,
        u8::try_from(day).ok()?,
    )
    .ok()?;
    let at = date.with_hms(h, m, sec).ok()?.assume_utc();
    let micros: i64 = if frac.is_empty() {
        0
    } else {
        if !frac.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        format!("{frac:0<6}")[..6].parse().ok()?
    };
    Some(UnixMicros::from_datetime(at).plus_micros(micros))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_read_back() {
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
        for bad in [
            "",
            "2026-11-28",
            "2026-13-01T00:00:00Z",
            "2026-11-28T10:00:00.x1Z",
            "2026-11-28T10:00:00+01:00",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
        // Round trip with bsc's own writer.
        assert_eq!(
            parse_rfc3339(&now.plus_micros(42).to_rfc3339()),
            Some(now.plus_micros(42))
        );
    }
}
