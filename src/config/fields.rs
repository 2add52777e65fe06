//! Reading JSON values as the config means them: whole numbers, booleans, sizes,
//! ages; and the error that names the key.

use std::fmt;
use std::time::Duration;

use serde_json::Value;

/// A handler key that is wrong, and why.
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

/// Reads an unsigned whole number given as a JSON number or a decimal string.
pub(crate) fn whole_number(v: &Value) -> Option<u64> {
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

pub(crate) fn describe(v: &Value) -> String {
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
}
