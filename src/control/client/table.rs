//! Text for people: columns padded to their widest cell, sizes and rates in
//! bsc's one unit, ages and record times.

use crate::clock::UnixMicros;
use crate::files::window::parse_rfc3339;

/// A byte count for people, in bsc's one size unit ([`crate::log::size`]:
/// `512 B`, `1.50 KiB`, `23.4 MiB`).
pub fn human_bytes(n: u64) -> String {
    crate::log::size(n)
}

/// A rate for people: `0 B/s`, `850 B/s`, `1.46 KiB/s`, `35.3 MiB/s`.
pub fn human_rate(bytes_per_s: f64) -> String {
    let n = if bytes_per_s.is_finite() && bytes_per_s > 0.0 {
        bytes_per_s.round() as u64
    } else {
        0
    };
    human_bytes(n) + "/s"
}

/// `3s ago`, `4m ago`, `2h ago`, `5d ago`, or `never`.
pub fn age(then: Option<UnixMicros>, now: UnixMicros) -> String {
    let Some(then) = then else {
        return "never".into();
    };
    let s = (now.0 - then.0).max(0) / 1_000_000;
    match s {
        0..=59 => format!("{s}s ago"),
        60..=3599 => format!("{}m ago", s / 60),
        3600..=86_399 => format!("{}h ago", s / 3600),
        _ => format!("{}d ago", s / 86_400),
    }
}

/// A column's alignment.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Align {
    Left,
    Right,
}

/// Rows under a header, columns padded to their widest cell (the last one not).
pub(super) fn table(columns: &[(&str, Align)], rows: &[Vec<String>]) -> String {
    let width = |i: usize| {
        rows.iter()
            .map(|r| r[i].chars().count())
            .chain([columns[i].0.len()])
            .max()
            .unwrap_or(0)
    };
    let widths: Vec<usize> = (0..columns.len()).map(width).collect();
    let header: Vec<String> = columns.iter().map(|(h, _)| h.to_string()).collect();
    let mut out = String::new();
    for row in std::iter::once(&header).chain(rows) {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i > 0 {
                line.push_str("  ");
            }
            let pad = widths[i] - cell.chars().count();
            let last = i + 1 == row.len();
            match columns[i].1 {
                Align::Right => {
                    line.push_str(&" ".repeat(pad));
                    line.push_str(cell);
                }
                Align::Left => {
                    line.push_str(cell);
                    if !last {
                        line.push_str(&" ".repeat(pad));
                    }
                }
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// A number of seconds as a person reads it (`42s ago`, `5m ago`, `3h ago`).
pub(super) fn seconds_text(s: u64) -> String {
    match s {
        0..60 => format!("{s}s ago"),
        60..3600 => format!("{}m ago", s / 60),
        3600..86400 => format!("{}h ago", s / 3600),
        _ => format!("{}d ago", s / 86400),
    }
}

/// A clock's max error as a person reads it: `512 us`, `12.5 ms`, `16.0 s`,
/// `-` when unknown.
pub(super) fn clock_error(us: Option<u64>) -> String {
    match us {
        None => "-".into(),
        Some(us @ 0..1000) => format!("{us} us"),
        Some(us @ 1000..1_000_000) => format!("{:.1} ms", us as f64 / 1e3),
        Some(us) => format!("{:.1} s", us as f64 / 1e6),
    }
}

/// A record time as a person reads it: to the second, `-` when unknown.
pub(super) fn short_time(at: Option<&str>) -> String {
    match at.and_then(parse_rfc3339) {
        Some(t) => {
            let d = t.to_datetime();
            format!(
                "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
                d.year(),
                u8::from(d.month()),
                d.day(),
                d.hour(),
                d.minute(),
                d.second()
            )
        }
        None => "-".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_units() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(999), "999 B");
        assert_eq!(human_bytes(1536), "1.50 KiB");
        assert_eq!(human_bytes(29_628), "28.9 KiB");
        assert_eq!(human_bytes(23_400_000), "22.3 MiB");
        assert_eq!(human_bytes(1_200_000_000), "1.12 GiB");
        assert_eq!(human_rate(0.0), "0 B/s");
        assert_eq!(human_rate(f64::NAN), "0 B/s");
        assert_eq!(human_rate(850.4), "850 B/s");
        assert_eq!(human_rate(37_000_000.0), "35.3 MiB/s");
    }

    #[test]
    fn clock_errors() {
        assert_eq!(clock_error(None), "-");
        assert_eq!(clock_error(Some(0)), "0 us");
        assert_eq!(clock_error(Some(999)), "999 us");
        assert_eq!(clock_error(Some(12_500)), "12.5 ms");
        assert_eq!(clock_error(Some(16_000_000)), "16.0 s");
    }

    #[test]
    fn ages() {
        let now = UnixMicros(1_795_860_000_000_000); // 2026-11-28T10:00:00Z
        let ago = |s: i64| age(Some(now.plus_micros(-s * 1_000_000)), now);
        assert_eq!(age(None, now), "never");
        assert_eq!(ago(3), "3s ago");
        assert_eq!(ago(-5), "0s ago");
        assert_eq!(ago(125), "2m ago");
        assert_eq!(ago(7300), "2h ago");
        assert_eq!(ago(3 * 86_400 + 5), "3d ago");
    }
}
