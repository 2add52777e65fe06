//! File path patterns: strftime codes (glibc's, C locale, UTC) and `{key}` fields.
//!
//! A pattern is parsed once, when a handler is configured, into literal text, time
//! codes and keys; an unknown code, a trailing `%`, an unbalanced brace or a key
//! that the handler does not have is an error then, never at the first packet.
//! Rendering is a single pass over the parsed pieces. As in AIT, time codes are
//! expanded before `{key}` fields, so a `%` inside a key's value stays literal.

use std::fmt::{self, Write};

use time::{OffsetDateTime, Weekday};

/// A parsed pattern, ready to render for any instant.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Pattern {
    source: String,
    pieces: Vec<Piece>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Piece {
    Literal(String),
    /// The letter after `%`.
    Time(char),
    /// A key and the width given as `{key:N}` (only `{seq}` accepts one).
    Key(String, Option<usize>),
}

/// Why a pattern could not be parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PatternError(pub String);

impl fmt::Display for PatternError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The strftime codes bsc expands (glibc semantics, C locale, UTC).
pub const TIME_CODES: &str = "aAbBcCdDeFgGhHIjklmMpPrRsSTuUVwWxXyYzZ%";

impl Pattern {
    /// Parses `source`; see the module doc for what is accepted.
    pub fn parse(source: &str) -> Result<Pattern, PatternError> {
        let mut pieces = Vec::new();
        let mut literal = String::new();
        let mut chars = source.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '%' => match chars.next() {
                    None => {
                        return Err(PatternError(format!(
                            "pattern {source:?} ends with a lone '%' (write %% for a percent sign)"
                        )))
                    }
                    Some('%') => literal.push('%'),
                    Some(code) if TIME_CODES.contains(code) => {
                        flush(&mut literal, &mut pieces);
                        pieces.push(Piece::Time(code));
                    }
                    Some(code) => {
                        return Err(PatternError(format!(
                            "pattern {source:?}: unknown time code %{code} (known: {})",
                            TIME_CODES
                                .chars()
                                .map(|c| format!("%{c}"))
                                .collect::<Vec<_>>()
                                .join(" ")
                        )))
                    }
                },
                '{' if chars.peek() == Some(&'{') => {
                    chars.next();
                    literal.push('{');
                }
                '}' if chars.peek() == Some(&'}') => {
                    chars.next();
                    literal.push('}');
                }
                '}' => {
                    return Err(PatternError(format!(
                        "pattern {source:?}: single '}}' (write }}}} for a literal brace)"
                    )))
                }
                '{' => {
                    let mut key = String::new();
                    let mut width: Option<String> = None;
                    loop {
                        match chars.next() {
                            Some('}') => break,
                            Some(':') if width.is_none() => width = Some(String::new()),
                            Some(d) if width.is_some() && d.is_ascii_digit() => {
                                if let Some(w) = width.as_mut() {
                                    w.push(d)
                                }
                            }
                            Some(k) if width.is_none() && (k.is_ascii_alphanumeric() || k == '_') => key.push(k),
                            Some(k) => {
                                return Err(PatternError(format!(
                                    "pattern {source:?}: {k:?} in a {{key}} field (keys are letters, digits and '_'; write {{{{ for a literal brace)"
                                )))
                            }
                            None => return Err(PatternError(format!("pattern {source:?}: '{{' without a closing '}}'"))),
                        }
                    }
                    if key.is_empty() {
                        return Err(PatternError(format!(
                            "pattern {source:?}: empty {{}} field (name a key, e.g. {{name}})"
                        )));
                    }
                    let width = match width {
                        None => None,
                        Some(w) => match w.parse::<usize>() {
                            Ok(n @ 1..=20) => Some(n),
                            _ => {
                                return Err(PatternError(format!(
                                    "pattern {source:?}: {{{key}:{w}}} needs a width from 1 to 20"
                                )))
                            }
                        },
                    };
                    flush(&mut literal, &mut pieces);
                    pieces.push(Piece::Key(key, width));
                }
                c => literal.push(c),
            }
        }
        flush(&mut literal, &mut pieces);
        Ok(Pattern {
            source: source.to_string(),
            pieces,
        })
    }

    /// The text the pattern was parsed from.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Every `{key}` the pattern uses, in order of appearance, with its width.
    pub fn keys(&self) -> impl Iterator<Item = (&str, Option<usize>)> {
        self.pieces.iter().filter_map(|p| match p {
            Piece::Key(k, w) => Some((k.as_str(), *w)),
            _ => None,
        })
    }

    /// The pattern expanded for instant `t` (taken as UTC), with `{key}` values from
    /// `lookup(key, width)`. A key `lookup` does not know is an error naming it.
    pub fn render(
        &self,
        t: OffsetDateTime,
        lookup: impl Fn(&str, Option<usize>) -> Option<String>,
    ) -> Result<String, PatternError> {
        let mut out = String::with_capacity(self.source.len() + 16);
        for piece in &self.pieces {
            match piece {
                Piece::Literal(s) => out.push_str(s),
                Piece::Time(code) => write_time_code(&mut out, *code, t),
                Piece::Key(k, width) => match lookup(k, *width) {
                    Some(v) => out.push_str(&v),
                    None => {
                        return Err(PatternError(format!(
                            "pattern {:?}: no key {{{k}}}",
                            self.source
                        )))
                    }
                },
            }
        }
        Ok(out)
    }
}

fn flush(literal: &mut String, pieces: &mut Vec<Piece>) {
    if !literal.is_empty() {
        pieces.push(Piece::Literal(std::mem::take(literal)));
    }
}

const DAYS: [&str; 7] = [
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
];
const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];

/// Appends what glibc's `strftime` writes for `%code` at UTC instant `t`, C locale.
fn write_time_code(out: &mut String, code: char, t: OffsetDateTime) {
    let t = t.to_offset(time::UtcOffset::UTC);
    let wd = t.weekday().number_days_from_sunday() as usize; // 0 = Sunday
    let month = u8::from(t.month()) as usize; // 1..=12
    let hour12 = match t.hour() % 12 {
        0 => 12,
        h => h,
    };
    let am_pm = if t.hour() < 12 { "AM" } else { "PM" };
    // `write!` into a String cannot fail.
    let _ = match code {
        'a' => write!(out, "{}", &DAYS[wd][..3]),
        'A' => write!(out, "{}", DAYS[wd]),
        'b' | 'h' => write!(out, "{}", &MONTHS[month - 1][..3]),
        'B' => write!(out, "{}", MONTHS[month - 1]),
        'c' => write!(
            out,
            "{} {} {:>2} {:02}:{:02}:{:02} {}",
            &DAYS[wd][..3],
            &MONTHS[month - 1][..3],
            t.day(),
            t.hour(),
            t.minute(),
            t.second(),
            t.year()
        ),
        'C' => write!(out, "{:02}", t.year().div_euclid(100)),
        'd' => write!(out, "{:02}", t.day()),
        'D' | 'x' => write!(
            out,
            "{:02}/{:02}/{:02}",
            month,
            t.day(),
            t.year().rem_euclid(100)
        ),
        'e' => write!(out, "{:>2}", t.day()),
        'F' => write!(out, "{}-{:02}-{:02}", t.year(), month, t.day()),
        'g' => write!(out, "{:02}", t.to_iso_week_date().0.rem_euclid(100)),
        'G' => write!(out, "{}", t.to_iso_week_date().0),
        'H' => write!(out, "{:02}", t.hour()),
        'I' => write!(out, "{:02}", hour12),
        'j' => write!(out, "{:03}", t.ordinal()),
        'k' => write!(out, "{:>2}", t.hour()),
        'l' => write!(out, "{:>2}", hour12),
        'm' => write!(out, "{:02}", month),
        'M' => write!(out, "{:02}", t.minute()),
        'p' => write!(out, "{am_pm}"),
        'P' => write!(out, "{}", am_pm.to_ascii_lowercase()),
        'r' => write!(
            out,
            "{:02}:{:02}:{:02} {am_pm}",
            hour12,
            t.minute(),
            t.second()
        ),
        'R' => write!(out, "{:02}:{:02}", t.hour(), t.minute()),
        's' => write!(out, "{}", t.unix_timestamp()),
        'S' => write!(out, "{:02}", t.second()),
        'T' | 'X' => write!(out, "{:02}:{:02}:{:02}", t.hour(), t.minute(), t.second()),
        'u' => write!(out, "{}", t.weekday().number_from_monday()),
        'U' => write!(out, "{:02}", t.sunday_based_week()),
        'V' => write!(out, "{:02}", t.iso_week()),
        'w' => write!(
            out,
            "{}",
            if t.weekday() == Weekday::Sunday {
                0
            } else {
                wd
            }
        ),
        'W' => write!(out, "{:02}", t.monday_based_week()),
        'y' => write!(out, "{:02}", t.year().rem_euclid(100)),
        'Y' => write!(out, "{}", t.year()),
        'z' => write!(out, "+0000"),
        'Z' => write!(out, "GMT"),
        '%' => write!(out, "%"),
        // `parse` only admits codes listed in TIME_CODES, all handled above.
        _ => Ok(()),
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::{Date, Month};

    fn dt(y: i32, mo: u8, d: u8, h: u8, mi: u8, s: u8) -> OffsetDateTime {
        Date::from_calendar_date(y, Month::try_from(mo).unwrap(), d)
            .unwrap()
            .with_hms(h, mi, s)
            .unwrap()
            .assume_utc()
    }

    fn render(p: &str, t: OffsetDateTime) -> String {
        Pattern::parse(p)
            .unwrap()
            .render(t, |k, w| match (k, w) {
                ("name", None) => Some("tlm".into()),
                ("pass", None) => Some("1234".into()),
                ("pct", None) => Some("50%d".into()),
                ("seq", w) => Some(format!("{:0w$}", 7, w = w.unwrap_or(4))),
                _ => None,
            })
            .unwrap()
    }

    #[test]
    fn ait_default_pattern() {
        assert_eq!(
            render("%Y-%m-%d-%H-%M-%S-{name}.pcap", dt(2026, 11, 28, 6, 56, 16)),
            "2026-11-28-06-56-16-tlm.pcap"
        );
    }

    /// Expected values are what Python's `time.strftime(code, time.gmtime(t))` gives
    /// on glibc for Saturday 2026-11-28 06:05:04 UTC (unix 1795845904).
    #[test]
    fn every_code_matches_glibc() {
        let t = dt(2026, 11, 28, 6, 5, 4);
        let cases = [
            ("%a", "Sat"),
            ("%A", "Saturday"),
            ("%b", "Nov"),
            ("%h", "Nov"),
            ("%B", "November"),
            ("%c", "Sat Nov 28 06:05:04 2026"),
            ("%C", "20"),
            ("%d", "28"),
            ("%D", "11/28/26"),
            ("%e", "28"),
            ("%F", "2026-11-28"),
            ("%g", "26"),
            ("%G", "2026"),
            ("%H", "06"),
            ("%I", "06"),
            ("%j", "332"),
            ("%k", " 6"),
            ("%l", " 6"),
            ("%m", "11"),
            ("%M", "05"),
            ("%p", "AM"),
            ("%P", "am"),
            ("%r", "06:05:04 AM"),
            ("%R", "06:05"),
            ("%s", "1795845904"),
            ("%S", "04"),
            ("%T", "06:05:04"),
            ("%u", "6"),
            ("%U", "47"),
            ("%V", "48"),
            ("%w", "6"),
            ("%W", "47"),
            ("%x", "11/28/26"),
            ("%X", "06:05:04"),
            ("%y", "26"),
            ("%Y", "2026"),
            ("%z", "+0000"),
            ("%Z", "GMT"),
            ("%%", "%"),
        ];
        for (code, want) in cases {
            assert_eq!(render(code, t), want, "{code}");
        }
    }

    #[test]
    fn weekday_and_week_edges() {
        // Sunday: %w is 0 (the time crate's own formatter says 7), %u is 7.
        let sunday = dt(2026, 11, 29, 0, 0, 0);
        assert_eq!(render("%w %u %a", sunday), "0 7 Sun");
        // 2027-01-01 is a Friday in ISO week 53 of 2026.
        let t = dt(2027, 1, 1, 12, 0, 0);
        assert_eq!(render("%G-%V %g %U %W %j", t), "2026-53 26 00 00 001");
        assert_eq!(
            render("%e|%k|%l|%I|%p", dt(2026, 1, 5, 0, 0, 0)),
            " 5| 0|12|12|AM"
        );
        assert_eq!(render("%I %p", dt(2026, 1, 5, 12, 0, 0)), "12 PM");
        assert_eq!(render("%I %p", dt(2026, 1, 5, 23, 0, 0)), "11 PM");
    }

    #[test]
    fn keys_braces_and_order_of_expansion() {
        let t = dt(2026, 11, 28, 6, 5, 4);
        assert_eq!(render("{{literal}}-{name}", t), "{literal}-tlm");
        assert_eq!(render("pass{pass}/%j", t), "pass1234/332");
        // A key's value is not strftime-expanded.
        assert_eq!(render("{pct}", t), "50%d");
        let p = Pattern::parse("%Y/{name}-{pass}-{name}").unwrap();
        assert_eq!(
            p.keys().map(|(k, _)| k).collect::<Vec<_>>(),
            ["name", "pass", "name"]
        );
    }

    #[test]
    fn rejects_bad_patterns_with_a_reason() {
        for (p, needle) in [
            ("%Q", "unknown time code %Q"),
            ("abc%", "lone '%'"),
            ("%n", "unknown time code %n"),
            ("{name", "without a closing"),
            ("name}", "single '}'"),
            ("{}", "empty {} field"),
            ("{na-me}", "in a {key} field"),
            ("{0}", ""),
            ("{seq:0}", "width from 1 to 20"),
            ("{seq:x}", "in a {key} field"),
            ("{seq:}", "width from 1 to 20"),
        ] {
            match Pattern::parse(p) {
                Err(e) => assert!(e.0.contains(needle), "{p}: {e}"),
                Ok(_) if p == "{0}" => {} // a digit-only key parses; lookup decides
                Ok(_) => panic!("{p} should be rejected"),
            }
        }
    }

    #[test]
    fn widths() {
        let t = dt(2026, 1, 1, 0, 0, 0);
        assert_eq!(render("{name}-{seq}", t), "tlm-0007");
        assert_eq!(render("{seq:6}|{seq:1}", t), "000007|7");
        let p = Pattern::parse("{seq:6}").unwrap();
        assert_eq!(p.keys().collect::<Vec<_>>(), [("seq", Some(6))]);
    }

    #[test]
    fn missing_key_is_an_error_at_render() {
        let p = Pattern::parse("{satellite}.pcap").unwrap();
        let e = p.render(dt(2026, 1, 1, 0, 0, 0), |_, _| None).unwrap_err();
        assert!(e.0.contains("{satellite}"), "{e}");
    }
}
