//! Metadata: every key of a handler that is not a handler key, usable as
//! `{key}` in patterns; and the control characters no value may hold.

use serde_json::{Map, Value};

use super::keys::HANDLER_KEYS;
use crate::config::fields::{describe, field_err, FieldError};

/// Keys bsc sets itself; they cannot be configured.
const RESERVED_KEYS: [(&str, &str); 3] = [
    (
        "log_dir",
        "is set by bsc and cannot be configured (use root_log_directory and path)",
    ),
    (
        "_validated_log_dir_root",
        "is set by bsc and cannot be configured (use root_log_directory)",
    ),
    (
        "seq",
        "is bsc's file counter ({seq} in patterns) and cannot be set",
    ),
];

/// Validates one metadata key and value (any key that is not a handler key).
pub fn metadata_entry(key: &str, value: &Value) -> Result<(String, Value), FieldError> {
    if let Some((_, why)) = RESERVED_KEYS.iter().find(|(k, _)| *k == key) {
        return Err(field_err(key, *why));
    }
    if key.is_empty()
        || key.len() > 64
        || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    {
        return Err(field_err(
            key,
            "is not a valid metadata key (letters, digits and '_', at most 64)",
        ));
    }
    match value {
        Value::String(s) if s.len() > MAX_METADATA_VALUE => Err(field_err(
            key,
            format!("metadata values are at most {MAX_METADATA_VALUE} bytes"),
        )),
        Value::String(s) if s.chars().any(char::is_control) => Err(field_err(
            key,
            "contains a control character; metadata values may not",
        )),
        Value::String(_) | Value::Number(_) => Ok((key.to_string(), value.clone())),
        other => Err(field_err(
            key,
            format!(
                "is not a handler key ({}) and metadata must be a string or a number, got {}",
                HANDLER_KEYS.join(", "),
                describe(other)
            ),
        )),
    }
}

/// Most metadata keys one handler may carry.
pub const MAX_METADATA_KEYS: usize = 64;
/// Longest metadata value, in bytes.
pub const MAX_METADATA_VALUE: usize = 255;

/// Refuses a control character (below U+0020, and U+007F..U+009F) anywhere in
/// a handler's values, naming the key: such values would reach file names, log
/// lines and state files.
pub(super) fn refuse_control_characters(obj: &Map<String, Value>) -> Result<(), FieldError> {
    fn find(v: &Value) -> Option<char> {
        match v {
            Value::String(s) => s.chars().find(|c| c.is_control()),
            Value::Array(a) => a.iter().find_map(find),
            Value::Object(m) => m
                .keys()
                .find_map(|k| k.chars().find(|c| c.is_control()))
                .or_else(|| m.values().find_map(find)),
            _ => None,
        }
    }
    for (key, value) in obj {
        if let Some(c) = key.chars().find(|c| c.is_control()).or_else(|| find(value)) {
            return Err(field_err(
                &key.escape_debug().to_string(),
                format!(
                    "contains the control character {}; names, patterns and values may not",
                    c.escape_unicode()
                ),
            ));
        }
    }
    Ok(())
}

/// Text of a metadata value as Python's `str.format` would write it.
pub fn metadata_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}
