//! The values of handler keys that need more than the field reader: names,
//! path patterns (confined over the API), transforms, commands.

use std::path::{Component, Path};

use serde_json::Value;

use super::Origin;
use super::MAX_NAME_LEN;
use crate::config::address::{validate_host, Address};
use crate::config::duplicates::read_json;
use crate::config::fields::{describe, field_err, FieldError};
use crate::files::pattern::Pattern;
use crate::units::sequence::SequenceCheck;
use crate::units::transform::Transform;

/// Checks a handler name: letters, digits, `-`, `_`, `.`; 1 to 64 characters; no `..`.
pub fn validate_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        return Err(format!(
            "must be 1 to {MAX_NAME_LEN} characters, got {}",
            name.len()
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        return Err(format!(
            "{name:?} has {c:?}; a name may use letters, digits, '-', '_' and '.' only"
        ));
    }
    if name.contains("..") {
        return Err(format!("{name:?} contains \"..\""));
    }
    Ok(())
}

/// A path pattern from REST must stay under the root: relative, no `..`, no `//`-tricks.
pub(super) fn confined(s: &str) -> Result<(), String> {
    if s.len() > 255 {
        return Err(format!("is {} bytes long; at most 255", s.len()));
    }
    let p = Path::new(s);
    if p.is_absolute() {
        return Err(format!(
            "{s:?} is absolute; over the API it must be relative to the root directory"
        ));
    }
    if p.components().any(|c| matches!(c, Component::ParentDir)) || s.contains("..") {
        return Err(format!(
            "{s:?} contains \"..\"; it must stay inside the root directory"
        ));
    }
    Ok(())
}

/// `path`: a folder pattern; over the API confined to the root.
pub(super) fn path_pattern(p: &str, origin: Origin) -> Result<Pattern, String> {
    if origin == Origin::Api {
        confined(p)?;
    }
    if p.contains('\0') {
        return Err("contains a NUL byte".into());
    }
    Pattern::parse(p).map_err(|e| e.0)
}

/// `file_name_pattern`: names a file; over the API confined to the root.
pub(super) fn file_pattern(p: &str, origin: Origin) -> Result<Pattern, String> {
    if p.is_empty() || p.ends_with('/') {
        return Err("must name a file".into());
    }
    if p.contains('\0') {
        return Err("contains a NUL byte".into());
    }
    confined(p).or_else(|e| {
        // From the config file an absolute file pattern is odd but AIT allows
        // joining it; `..` is refused everywhere.
        if origin == Origin::ConfigFile && !p.contains("..") && p.len() <= 255 {
            Ok(())
        } else {
            Err(e)
        }
    })?;
    Pattern::parse(p).map_err(|e| e.0)
}

/// `pre_write_transforms`: a list of transforms in their string forms, or (from a
/// form) one string of them separated by commas (`apid:0x100,0x101, strip:4`: an
/// item without `:` that is not a transform's name goes on the list before it).
pub(super) fn transforms(v: &Value) -> Result<Vec<Transform>, String> {
    match v {
        Value::Array(items) => items
            .iter()
            .map(|v| match v {
                Value::String(s) => Transform::parse(s),
                other => Err(format!(
                    "unknown transform {}; valid: {}",
                    describe(other),
                    Transform::FORMS
                )),
            })
            .collect(),
        Value::String(s) => {
            let mut forms: Vec<String> = Vec::new();
            for item in s.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                let starts_one = item.contains(':') || Transform::parse(item).is_ok();
                match forms.last_mut() {
                    Some(last) if !starts_one => {
                        last.push(',');
                        last.push_str(item);
                    }
                    _ => forms.push(item.to_string()),
                }
            }
            forms.iter().map(|f| Transform::parse(f)).collect()
        }
        other => Err(format!(
            "must be a list of transforms ({}), got {}",
            Transform::FORMS,
            describe(other)
        )),
    }
}

/// An error of a nested value's own parser (`framing.length: ...`), named by the
/// key it gives, or by `key` when it gives none.
pub(super) fn nested_err(key: &str, message: String) -> FieldError {
    match message.split_once(": ") {
        Some((k, m)) if k == key || k.starts_with(&format!("{key}.")) => field_err(k, m),
        _ => field_err(key, message),
    }
}

/// `on_close` and `ship`: a command as a list of strings, program first.
pub(super) fn command(v: &Value) -> Result<Vec<String>, String> {
    match v {
        Value::Array(items) if !items.is_empty() && items.len() <= 64 => items
            .iter()
            .map(|i| match i {
                Value::String(s) if !s.is_empty() && !s.contains('\0') => Ok(s.clone()),
                other => Err(format!(
                    "every element must be a non-empty string, got {}",
                    describe(other)
                )),
            })
            .collect(),
        other => Err(format!(
            "must be a command as a list of strings (program first, no shell), got {}",
            describe(other)
        )),
    }
}

/// `sequence_check`: `"none"`, a kind, an object with `"kind"`, or (from a
/// form) that object as JSON text.
pub(super) fn sequence_check(key: &str, v: &Value) -> Result<Option<SequenceCheck>, FieldError> {
    let check = |v| SequenceCheck::from_json(v).map_err(|m| nested_err(key, m));
    match v {
        Value::String(s) if s == "none" => Ok(None),
        Value::String(s) if s.trim_start().starts_with('{') => {
            let v = read_json(s).map_err(|e| field_err(key, format!("not valid JSON: {e}")))?;
            check(&v).map(Some)
        }
        v => check(v).map(Some),
    }
}

/// `interface`: a name or an IPv4 address, given only with a multicast group.
pub(super) fn multicast_interface(interface: &str, address: &Address) -> Result<String, String> {
    validate_host(interface)?;
    match address.host.parse::<std::net::IpAddr>() {
        Ok(ip) if ip.is_multicast() => Ok(interface.to_string()),
        _ => Err("only applies when the address is a multicast group".into()),
    }
}
