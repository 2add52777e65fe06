//! Reading a config object's keys: [`Fields`] knows the key it reads and names it
//! in every error, so no caller repeats it; the value parsers below it (whole
//! numbers, booleans, sizes, ages) are plain functions over one JSON value.
//!
//! Absent and `null` are the same everywhere: the key is not given, its default
//! applies. Numbers may come as JSON numbers or as decimal strings (what a form
//! sends).

use std::fmt;
use std::ops::{Bound, Range, RangeBounds, RangeInclusive};
use std::str::FromStr;
use std::time::Duration;

use serde_json::{Map, Value};

use super::choices::{self, Names};
use super::typos;

/// A key that is wrong, and why. `key` is the key as the operator wrote it
/// (`max_files`), or dotted for a section (`capture_manager.persist`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    pub key: String,
    pub message: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

pub(crate) fn field_err(key: &str, message: impl Into<String>) -> FieldError {
    FieldError {
        key: key.to_string(),
        message: message.into(),
    }
}

/// Reads the keys of one JSON object (a handler, or a section such as
/// `capture_manager`); every error it returns names the key it was reading.
pub struct Fields<'a> {
    obj: &'a Map<String, Value>,
    /// The section's dotted name, put before each key in errors ("" for a handler).
    section: &'a str,
}

impl<'a> Fields<'a> {
    /// A handler's keys: errors name the bare key (`max_files`).
    pub fn new(obj: &'a Map<String, Value>) -> Fields<'a> {
        Fields { obj, section: "" }
    }

    /// A section's keys: errors name `section.key`.
    pub fn section(obj: &'a Map<String, Value>, section: &'a str) -> Fields<'a> {
        Fields { obj, section }
    }

    /// The error for `key`, named as the operator wrote it.
    pub fn error(&self, key: &str, message: impl Into<String>) -> FieldError {
        match self.section {
            "" => field_err(key, message),
            section => field_err(&format!("{section}.{key}"), message),
        }
    }

    /// Refuses a key that is not in `known` (a section has no metadata).
    pub fn only(&self, known: &[&str]) -> Result<(), FieldError> {
        match self.obj.keys().find(|k| !known.contains(&k.as_str())) {
            Some(k) => Err(field_err(
                self.section,
                match typos::suggestion(k, known) {
                    Some(meant) => format!(
                        "unknown key {k:?}; {} (known: {})",
                        typos::did_you_mean(meant),
                        known.join(", ")
                    ),
                    None => format!("unknown key {k:?} (known: {})", known.join(", ")),
                },
            )),
            None => Ok(()),
        }
    }

    /// The keys given, in their order.
    pub fn keys(&self) -> impl Iterator<Item = &'a str> {
        self.obj.keys().map(String::as_str)
    }

    /// The value of `key`; `None` when absent or `null`.
    pub fn get(&self, key: &str) -> Option<&'a Value> {
        self.obj.get(key).filter(|v| !v.is_null())
    }

    /// `key` read by `parse` (a value parser such as [`parse_size`]), its error
    /// named; `None` when not given.
    pub fn read<T>(
        &self,
        key: &str,
        parse: impl FnOnce(&'a Value) -> Result<T, String>,
    ) -> Result<Option<T>, FieldError> {
        self.get(key)
            .map(|v| parse(v).map_err(|m| self.error(key, m)))
            .transpose()
    }

    /// Refuses a missing `key`, saying `why` it is needed.
    pub fn require(&self, key: &str, why: &str) -> Result<(), FieldError> {
        match self.get(key) {
            Some(_) => Ok(()),
            None => Err(self.error(key, why)),
        }
    }

    /// A string read with its type's `FromStr` (whose error says what is wrong).
    pub fn parsed<T: FromStr>(&self, key: &str) -> Result<Option<T>, FieldError>
    where
        T::Err: fmt::Display,
    {
        match self.string(key)? {
            None => Ok(None),
            Some(s) => s
                .parse()
                .map(Some)
                .map_err(|e: T::Err| self.error(key, e.to_string())),
        }
    }

    /// A string.
    pub fn string(&self, key: &str) -> Result<Option<&'a str>, FieldError> {
        self.read(key, |v| match v {
            Value::String(s) => Ok(s.as_str()),
            other => Err(format!("must be a string, got {}", describe(other))),
        })
    }

    /// A boolean, as [`boolean`] reads it.
    pub fn boolean(&self, key: &str, default: bool) -> Result<bool, FieldError> {
        self.read(key, |v| {
            boolean(v).ok_or_else(|| {
                format!(
                    "must be true or false (also True/False/1/0), got {}",
                    describe(v)
                )
            })
        })
        .map(|b| b.unwrap_or(default))
    }

    /// A whole number in `range` (`1..` or `1..=64`).
    pub fn whole(
        &self,
        key: &str,
        range: impl RangeBounds<u64>,
    ) -> Result<Option<u64>, FieldError> {
        self.read(key, |v| {
            whole_number(v)
                .filter(|n| range.contains(n))
                .ok_or_else(|| format!("must be {}, got {}", whole_range(&range), describe(v)))
        })
    }

    /// A number in `range`.
    pub fn number(&self, key: &str, range: Range<f64>) -> Result<Option<f64>, FieldError> {
        self.read(key, |v| {
            v.as_f64().filter(|n| range.contains(n)).ok_or_else(|| {
                format!(
                    "must be a number from {} to {}, got {}",
                    range.start,
                    range.end,
                    describe(v)
                )
            })
        })
    }

    /// A port (or, for ethernet, a protocol) number from `min` to 65535.
    pub fn port(&self, key: &str, min: u16) -> Result<Option<u16>, FieldError> {
        self.read(key, |v| {
            let text = match v {
                Value::String(s) => s.trim().to_string(),
                other => other.to_string(),
            };
            match text.parse::<i64>() {
                Ok(p) if (i64::from(min)..=65535).contains(&p) => Ok(p as u16),
                Ok(p) => Err(format!("{p} is out of range {min}..65535")),
                Err(_) => Err(format!("must be a whole number, got {text:?}")),
            }
        })
    }

    /// A number of seconds in `range`, `default` when not given.
    pub fn seconds(
        &self,
        key: &str,
        default: f64,
        range: RangeInclusive<f64>,
    ) -> Result<Duration, FieldError> {
        self.read(key, |v| {
            let n = match v {
                Value::Number(n) => n.as_f64(),
                Value::String(s) => s.trim().parse::<f64>().ok(),
                _ => None,
            };
            n.filter(|n| range.contains(n))
                .map(Duration::from_secs_f64)
                .ok_or_else(|| {
                    format!(
                        "must be a number of seconds from {} to {}, got {}",
                        range.start(),
                        range.end(),
                        describe(v)
                    )
                })
        })
        .map(|d| d.unwrap_or_else(|| Duration::from_secs_f64(default)))
    }

    /// A size ([`parse_size`]).
    pub fn size(&self, key: &str) -> Result<Option<u64>, FieldError> {
        self.read(key, parse_size)
    }

    /// An age ([`parse_age`]).
    pub fn age(&self, key: &str) -> Result<Option<Duration>, FieldError> {
        self.read(key, parse_age)
    }

    /// One of the names in `table` (see [`choices`]), `default` when not given.
    pub fn choice<T: Copy>(
        &self,
        key: &str,
        table: &Names<T>,
        default: T,
    ) -> Result<T, FieldError> {
        let chosen = self.string(key)?.map(|s| {
            choices::parse(table, s).ok_or_else(|| {
                self.error(key, format!("{s:?} is not one of {}", choices::list(table)))
            })
        });
        Ok(chosen.transpose()?.unwrap_or(default))
    }
}

/// "a whole number from 1 to 64", "a whole number, at least 1".
fn whole_range(range: &impl RangeBounds<u64>) -> String {
    let start = match range.start_bound() {
        Bound::Included(&n) => n,
        Bound::Excluded(&n) => n + 1,
        Bound::Unbounded => 0,
    };
    match range.end_bound() {
        Bound::Included(&end) => format!("a whole number from {start} to {end}"),
        Bound::Excluded(&end) => format!("a whole number from {start} to {}", end - 1),
        Bound::Unbounded => format!("a whole number, at least {start}"),
    }
}

/// Reads an unsigned whole number given as a JSON number or a decimal string.
pub fn whole_number(v: &Value) -> Option<u64> {
    match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// Reads a boolean as JSON or as one of `true/false/True/False/1/0`.
pub fn boolean(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::Number(n) => match n.as_u64() {
            Some(1) => Some(true),
            Some(0) => Some(false),
            _ => None,
        },
        Value::String(s) => match s.as_str() {
            "true" | "True" | "1" => Some(true),
            "false" | "False" | "0" => Some(false),
            _ => None,
        },
        _ => None,
    }
}

/// A value as an error shows it: its JSON, cut at 60 bytes.
pub fn describe(v: &Value) -> String {
    let s = v.to_string();
    if s.len() > 60 {
        let cut = (0..=57).rev().find(|&i| s.is_char_boundary(i)).unwrap_or(0);
        format!("{}...", &s[..cut])
    } else {
        s
    }
}

/// Parses an age: a number of seconds, or a number with a unit `s`, `m`, `h`,
/// `d` or `w` (`"30d"`, `"12h"`).
pub fn parse_age(v: &Value) -> Result<Duration, String> {
    let text = match v {
        Value::Number(n) => {
            return n
                .as_f64()
                .filter(|s| *s > 0.0)
                .map(Duration::from_secs_f64)
                .ok_or_else(|| format!("must be a positive number of seconds, got {n}"))
        }
        Value::String(s) => s.trim(),
        other => {
            return Err(format!(
                "must be an age such as \"30d\" or \"12h\", got {}",
                describe(other)
            ))
        }
    };
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let unit: f64 = match text[split..].trim() {
        "" | "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        "d" => 86_400.0,
        "w" => 604_800.0,
        other => {
            return Err(format!(
                "{text:?}: unknown unit {other:?}; use s, m, h, d or w"
            ))
        }
    };
    match text[..split].parse::<f64>() {
        Ok(n) if n > 0.0 && n * unit < 1e10 => Ok(Duration::from_secs_f64(n * unit)),
        _ => Err(format!(
            "{text:?} is not an age; write a positive number with s, m, h, d or w"
        )),
    }
}

/// Parses a size: a number of bytes, or a number with a unit: `B`, `KB`, `MB`,
/// `GB`, `TB` (powers of 1000) or `KiB`, `MiB`, `GiB`, `TiB` (powers of 1024).
pub fn parse_size(v: &Value) -> Result<u64, String> {
    const UNITS: &str = "B, KB, MB, GB, TB (x1000) or KiB, MiB, GiB, TiB (x1024)";
    let text = match v {
        Value::Number(n) => {
            return n
                .as_u64()
                .ok_or_else(|| format!("must be a whole number of bytes, got {n}"))
        }
        Value::String(s) => s.trim(),
        other => {
            return Err(format!(
                "must be a size such as 100MB or 1GiB, got {}",
                describe(other)
            ))
        }
    };
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = (&text[..split], text[split..].trim());
    let factor: u64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" | "k" => 1000,
        "mb" | "m" => 1000_u64.pow(2),
        "gb" | "g" => 1000_u64.pow(3),
        "tb" | "t" => 1000_u64.pow(4),
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        "tib" => 1 << 40,
        _ => return Err(format!("{text:?}: unknown unit {unit:?}; use {UNITS}")),
    };
    let n: f64 = number.parse().map_err(|_| {
        format!("{text:?} is not a size; write a number of bytes or a number with a unit: {UNITS}")
    })?;
    let bytes = n * factor as f64;
    if !(1.0..=u64::MAX as f64).contains(&bytes) || bytes.fract() != 0.0 {
        return Err(format!(
            "{text:?} must be a whole number of bytes, at least 1"
        ));
    }
    Ok(bytes as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn sizes() {
        for (v, want) in [
            (json!(100000), 100_000),
            (json!("100000"), 100_000),
            (json!("100MB"), 100_000_000),
            (json!("100 mb"), 100_000_000),
            (json!("1GiB"), 1 << 30),
            (json!("1.5KiB"), 1536),
            (json!("2k"), 2000),
            (json!("7B"), 7),
        ] {
            assert_eq!(parse_size(&v), Ok(want), "{v}");
        }
        for v in [
            json!("10XB"),
            json!("-5MB"),
            json!(""),
            json!("0"),
            json!("1.5B"),
            json!(true),
            json!(-1),
        ] {
            let e = parse_size(&v).unwrap_err();
            assert!(!e.is_empty(), "{v}");
        }
        assert!(parse_size(&json!("10XB")).unwrap_err().contains("KiB"));
    }

    #[test]
    fn booleans_from_forms() {
        for (v, b) in [
            ("true", true),
            ("True", true),
            ("1", true),
            ("false", false),
            ("False", false),
            ("0", false),
        ] {
            assert_eq!(boolean(&json!(v)), Some(b));
        }
        assert_eq!(boolean(&json!("TRUE")), None);
        assert_eq!(boolean(&json!(2)), None);
    }

    #[test]
    fn the_reader_names_the_key_in_every_error() {
        let obj = json!({"n": "0", "big": 70000, "b": "yes", "s": 5, "t": "1.5", "z": null,
                         "sz": "1KiB", "age": "2h", "pick": "out", "p": "-1"});
        let f = Fields::new(obj.as_object().unwrap());
        let e = f.whole("n", 1..).unwrap_err();
        assert_eq!(
            e.to_string(),
            "n: must be a whole number, at least 1, got \"0\""
        );
        assert_eq!(f.whole("big", 1..=1_000_000).unwrap(), Some(70000));
        assert_eq!(
            f.whole("big", 1..=64).unwrap_err().message,
            "must be a whole number from 1 to 64, got 70000"
        );
        assert_eq!(f.whole("absent", 1..).unwrap(), None);
        assert_eq!(f.whole("z", 1..).unwrap(), None, "null is not given");
        assert!(f
            .boolean("b", true)
            .unwrap_err()
            .message
            .contains("true or false"));
        assert!(f.boolean("absent", true).unwrap());
        assert_eq!(
            f.string("s").unwrap_err().message,
            "must be a string, got 5"
        );
        assert_eq!(
            f.seconds("t", 5.0, 0.1..=86400.0).unwrap(),
            Duration::from_millis(1500)
        );
        assert_eq!(
            f.seconds("absent", 5.0, 0.1..=86400.0).unwrap(),
            Duration::from_secs(5)
        );
        assert!(f
            .seconds("t", 5.0, 2.0..=86400.0)
            .unwrap_err()
            .message
            .contains("from 2 to 86400"));
        assert_eq!(f.size("sz").unwrap(), Some(1024));
        assert_eq!(f.age("age").unwrap(), Some(Duration::from_secs(7200)));
        let table = [("both", 1), ("in", 2)];
        assert_eq!(f.choice("absent", &table, 1).unwrap(), 1);
        assert_eq!(
            f.choice("pick", &table, 1).unwrap_err().to_string(),
            "pick: \"out\" is not one of both, in"
        );
        assert_eq!(
            f.port("p", 1).unwrap_err().message,
            "-1 is out of range 1..65535"
        );
        assert_eq!(
            f.port("big", 0).unwrap_err().message,
            "70000 is out of range 0..65535"
        );
        let section = Fields::section(obj.as_object().unwrap(), "capture_manager");
        assert_eq!(
            section.whole("n", 1..).unwrap_err().key,
            "capture_manager.n"
        );
    }
}
