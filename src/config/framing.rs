//! The `framing` key: its value read into a [`Framing`] by the config's field
//! reader ([`Fields`], every error naming `framing.<key>`), and written back.
//! The unit layer (`crate::units::framing`) only knows the value; reading it is config's.

use std::ops::RangeInclusive;

use serde_json::{json, Map, Value};

use super::fields::{boolean, field_err, FieldError, Fields};
use crate::units::framing::{
    Endian, Framing, LengthField, SyncMarker, DEFAULT_MAX_LENGTH, MAX_FIXED_LEN,
    MAX_SPACE_PACKET_LEN, MAX_UNIT_LEN,
};

/// The config key these values are read from (it prefixes every error).
pub const KEY: &str = "framing";

const KINDS: &str = "none, ccsds_space_packet, ccsds_tm_frame, fixed, length, kiss";

/// A whole number in `range` (a JSON number or a decimal string); `None` in
/// `default` makes the key required for `kind`.
fn int(
    f: &Fields,
    kind: &str,
    key: &str,
    range: RangeInclusive<i64>,
    default: Option<i64>,
) -> Result<i64, FieldError> {
    let n = f.read(key, |v| {
        let n = match v {
            Value::Number(n) => n.as_i64(),
            Value::String(s) => s.trim().parse().ok(),
            _ => None,
        }
        .ok_or_else(|| format!("must be a whole number, got {v}"))?;
        match range.contains(&n) {
            true => Ok(n),
            false => Err(format!(
                "must be {}..{}, got {n}",
                range.start(),
                range.end()
            )),
        }
    })?;
    n.or(default)
        .ok_or_else(|| f.error(key, format!("required for kind {kind}")))
}

/// `sync`: 1 to 8 bytes in hex.
fn sync(f: &Fields) -> Result<Option<SyncMarker>, FieldError> {
    f.read("sync", |v| {
        v.as_str()
            .and_then(SyncMarker::from_hex)
            .ok_or_else(|| format!("must be 1 to 8 bytes in hex, like \"1ACFFC1D\", got {v}"))
    })
}

/// `keep_sync`: only with a sync marker.
fn keep_sync(f: &Fields, has_sync: bool) -> Result<bool, FieldError> {
    let keep = f
        .read("keep_sync", |v| {
            boolean(v).ok_or_else(|| format!("must be true or false, got {v}"))
        })?
        .unwrap_or(false);
    if keep && !has_sync {
        return Err(f.error("keep_sync", "needs a sync marker (set \"sync\")"));
    }
    Ok(keep)
}

/// Refuses a key that is not `kind` or one of `known`.
fn only(f: &Fields, kind: &str, known: &[&str]) -> Result<(), FieldError> {
    match f.keys().find(|k| *k != "kind" && !known.contains(k)) {
        None => Ok(()),
        Some(k) => {
            let valid = match known.is_empty() {
                true => "none".to_string(),
                false => known.join(", "),
            };
            Err(f.error(k, format!("not a key of kind {kind}; its keys: {valid}")))
        }
    }
}

/// The keys of kind `length`: where the length field is, how to read it, which
/// totals are believable, and an optional sync marker.
fn length_field(f: &Fields, kind: &str) -> Result<LengthField, FieldError> {
    only(
        f,
        kind,
        &[
            "offset",
            "size",
            "endian",
            "adjustment",
            "max_length",
            "sync",
            "keep_sync",
        ],
    )?;
    let offset = int(f, kind, "offset", 0..=MAX_UNIT_LEN as i64, Some(0))? as usize;
    let size = int(f, kind, "size", 1..=4, None)? as usize;
    let endian = f
        .read("endian", |v| match v.as_str() {
            Some("big") => Ok(Endian::Big),
            Some("little") => Ok(Endian::Little),
            _ => Err(format!("must be \"big\" or \"little\", got {v}")),
        })?
        .unwrap_or(Endian::Big);
    let bound = MAX_UNIT_LEN as i64;
    let adjustment = int(f, kind, "adjustment", -bound..=bound, Some(0))?;
    let max_length = int(
        f,
        kind,
        "max_length",
        1..=bound,
        Some(DEFAULT_MAX_LENGTH as i64),
    )? as usize;
    if max_length < offset + size {
        return Err(f.error(
            "max_length",
            format!(
                "must be at least offset + size ({}) to hold the length field, got {max_length}",
                offset + size
            ),
        ));
    }
    let sync = sync(f)?;
    Ok(LengthField {
        offset,
        size,
        endian,
        adjustment,
        max_length,
        sync,
        keep_sync: keep_sync(f, sync.is_some())?,
    })
}

impl Framing {
    /// Reads the `framing` value: `"none"`, a kind's name for kinds without
    /// parameters (`"kiss"`, `"ccsds_space_packet"`), an object with `"kind"`, or
    /// that object as JSON text (as an HTTP form sends it).
    pub fn from_json(v: &Value) -> Result<Framing, FieldError> {
        let obj = match v {
            Value::Null => return Ok(Framing::None),
            Value::String(s) if s.trim_start().starts_with('{') => {
                let parsed = super::duplicates::read_json(s)
                    .map_err(|e| field_err(KEY, format!("not valid JSON: {e}")))?;
                return Framing::from_json(&parsed);
            }
            Value::String(s) => {
                return match s.as_str() {
                    "none" => Ok(Framing::None),
                    "kiss" | "ccsds_space_packet" => {
                        let mut o = Map::new();
                        o.insert("kind".into(), Value::String(s.clone()));
                        Framing::from_json(&Value::Object(o))
                    }
                    other => Err(field_err(
                        KEY,
                        format!(
                            "unknown framing {other:?}; valid: \"none\", \"kiss\", \
                             \"ccsds_space_packet\" or an object with \"kind\" (one of {KINDS})"
                        ),
                    )),
                }
            }
            Value::Object(o) => o,
            other => {
                return Err(field_err(
                    KEY,
                    format!("must be \"none\" or an object with \"kind\", got {other}"),
                ))
            }
        };
        let f = Fields::section(obj, KEY);
        let kind = f
            .read("kind", |v| match v {
                Value::String(s) => Ok(s.as_str()),
                other => Err(format!("must be one of {KINDS}, got {other}")),
            })?
            .ok_or_else(|| f.error("kind", format!("required, one of {KINDS}")))?;
        let fixed_len = 1..=MAX_FIXED_LEN as i64;
        let int = |key, range, default| int(&f, kind, key, range, default);
        match kind {
            "none" => {
                only(&f, kind, &[])?;
                Ok(Framing::None)
            }
            "ccsds_space_packet" => {
                only(&f, kind, &["max_length"])?;
                let max = int(
                    "max_length",
                    7..=MAX_SPACE_PACKET_LEN as i64,
                    Some(MAX_SPACE_PACKET_LEN as i64),
                )?;
                Ok(Framing::SpacePacket {
                    max_length: max as usize,
                })
            }
            "ccsds_tm_frame" => {
                only(&f, kind, &["length", "keep_sync"])?;
                Ok(Framing::TmFrame {
                    length: int("length", fixed_len, None)? as usize,
                    keep_sync: keep_sync(&f, true)?,
                })
            }
            "fixed" => {
                only(&f, kind, &["length", "sync", "keep_sync"])?;
                let sync = sync(&f)?;
                Ok(Framing::Fixed {
                    length: int("length", fixed_len, None)? as usize,
                    sync,
                    keep_sync: keep_sync(&f, sync.is_some())?,
                })
            }
            "length" => length_field(&f, kind).map(Framing::Length),
            "kiss" => {
                only(&f, kind, &["max_length"])?;
                let max = int(
                    "max_length",
                    1..=MAX_UNIT_LEN as i64,
                    Some(DEFAULT_MAX_LENGTH as i64),
                )?;
                Ok(Framing::Kiss {
                    max_length: max as usize,
                })
            }
            other => Err(f.error("kind", format!("unknown kind {other:?}; valid: {KINDS}"))),
        }
    }

    /// The value [`Framing::from_json`] reads back to `self` (defaults written out).
    pub fn to_json(&self) -> Value {
        match self {
            Framing::None => json!("none"),
            Framing::SpacePacket { max_length } => {
                json!({"kind": "ccsds_space_packet", "max_length": max_length})
            }
            Framing::TmFrame { length, keep_sync } => {
                json!({"kind": "ccsds_tm_frame", "length": length, "keep_sync": keep_sync})
            }
            Framing::Fixed {
                length,
                sync,
                keep_sync,
            } => {
                let mut v = json!({"kind": "fixed", "length": length, "keep_sync": keep_sync});
                if let Some(s) = sync {
                    v["sync"] = json!(s.to_hex());
                }
                v
            }
            Framing::Length(f) => {
                let mut v = json!({
                    "kind": "length",
                    "offset": f.offset,
                    "size": f.size,
                    "endian": match f.endian { Endian::Big => "big", Endian::Little => "little" },
                    "adjustment": f.adjustment,
                    "max_length": f.max_length,
                    "keep_sync": f.keep_sync,
                });
                if let Some(s) = f.sync {
                    v["sync"] = json!(s.to_hex());
                }
                v
            }
            Framing::Kiss { max_length } => json!({"kind": "kiss", "max_length": max_length}),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framing(v: Value) -> Framing {
        Framing::from_json(&v).unwrap()
    }

    fn sp() -> Framing {
        framing(json!({"kind": "ccsds_space_packet"}))
    }

    #[test]
    fn parses_every_kind_with_defaults() {
        assert_eq!(Framing::from_json(&json!("none")), Ok(Framing::None));
        assert_eq!(Framing::from_json(&Value::Null), Ok(Framing::None));
        assert_eq!(Framing::default(), Framing::None);
        assert_eq!(sp(), Framing::SpacePacket { max_length: 65542 });
        assert_eq!(framing(json!("ccsds_space_packet")), sp());
        assert_eq!(framing(json!("kiss")), Framing::Kiss { max_length: 65535 });
        assert_eq!(
            framing(json!({"kind": "ccsds_tm_frame", "length": 1115})),
            Framing::TmFrame {
                length: 1115,
                keep_sync: false
            }
        );
        assert_eq!(
            framing(json!({"kind": "fixed", "length": 256, "sync": "FAF320"})),
            Framing::Fixed {
                length: 256,
                sync: SyncMarker::new(&[0xFA, 0xF3, 0x20]),
                keep_sync: false
            }
        );
        assert_eq!(
            framing(json!({"kind": "fixed", "length": "256"})),
            Framing::Fixed {
                length: 256,
                sync: None,
                keep_sync: false
            }
        );
        let l = framing(
            json!({"kind": "length", "offset": 0, "size": 2, "endian": "little",
            "adjustment": -2, "max_length": 1000, "sync": "0xeb90", "keep_sync": true}),
        );
        assert_eq!(
            l,
            Framing::Length(LengthField {
                offset: 0,
                size: 2,
                endian: Endian::Little,
                adjustment: -2,
                max_length: 1000,
                sync: SyncMarker::new(&[0xEB, 0x90]),
                keep_sync: true
            })
        );
        let d = framing(json!({"kind": "length", "size": 1}));
        assert_eq!(
            d,
            Framing::Length(LengthField {
                offset: 0,
                size: 1,
                endian: Endian::Big,
                adjustment: 0,
                max_length: 65535,
                sync: None,
                keep_sync: false
            })
        );
        // As JSON text, as a form field carries it.
        assert_eq!(
            framing(json!("{\"kind\": \"kiss\", \"max_length\": 300}")),
            Framing::Kiss { max_length: 300 }
        );
    }

    #[test]
    fn to_json_round_trips() {
        for v in [
            json!("none"),
            json!({"kind": "ccsds_space_packet", "max_length": 4096}),
            json!({"kind": "ccsds_tm_frame", "length": 1115, "keep_sync": true}),
            json!({"kind": "fixed", "length": 256, "sync": "FAF320"}),
            json!({"kind": "fixed", "length": 10}),
            json!({"kind": "length", "offset": 3, "size": 4, "endian": "little", "adjustment": -9, "sync": "EB90"}),
            json!({"kind": "kiss"}),
        ] {
            let f = framing(v);
            assert_eq!(framing(f.to_json()), f);
        }
    }

    #[test]
    fn every_bad_value_names_its_key() {
        let err = |v: Value| Framing::from_json(&v).unwrap_err().to_string();
        assert_eq!(
            err(json!({"kind": "fixed", "length": 0})),
            "framing.length: must be 1..65535, got 0"
        );
        assert_eq!(
            err(json!({"kind": "ccsds_tm_frame", "length": 65536})),
            "framing.length: must be 1..65535, got 65536"
        );
        assert_eq!(
            err(json!({"kind": "ccsds_tm_frame"})),
            "framing.length: required for kind ccsds_tm_frame"
        );
        assert!(err(json!({"kind": "fixed", "length": "ten"}))
            .starts_with("framing.length: must be a whole number"));
        assert!(err(json!({"kind": "fixed", "length": 1.5}))
            .starts_with("framing.length: must be a whole number"));
        assert!(err(json!({"kind": "lenght"}))
            .starts_with("framing.kind: unknown kind \"lenght\"; valid: none, "));
        assert!(err(json!({"length": 3})).starts_with("framing.kind: required"));
        assert!(err(json!({"kind": 3})).starts_with("framing.kind: must be one of"));
        assert!(err(json!("hdlc")).starts_with("framing: unknown framing \"hdlc\""));
        assert!(err(json!(7)).starts_with("framing: must be"));
        assert!(err(json!("{oops")).starts_with("framing: not valid JSON"));
        assert_eq!(
            err(json!({"kind": "fixed", "length": 4, "lenght": 3})),
            "framing.lenght: not a key of kind fixed; its keys: length, sync, keep_sync"
        );
        assert!(err(json!({"kind": "kiss", "sync": "C0"}))
            .starts_with("framing.sync: not a key of kind kiss"));
        assert!(err(json!({"kind": "none", "length": 1}))
            .starts_with("framing.length: not a key of kind none; its keys: none"));
        for bad in ["", "F", "XYZW", "001122334455667788", "0x"] {
            assert!(
                err(json!({"kind": "fixed", "length": 4, "sync": bad}))
                    .starts_with("framing.sync: must be 1 to 8 bytes in hex"),
                "{bad}"
            );
        }
        assert!(err(json!({"kind": "fixed", "length": 4, "sync": 7})).starts_with("framing.sync:"));
        assert_eq!(
            err(json!({"kind": "fixed", "length": 4, "keep_sync": true})),
            "framing.keep_sync: needs a sync marker (set \"sync\")"
        );
        assert!(
            err(json!({"kind": "ccsds_tm_frame", "length": 4, "keep_sync": "maybe"}))
                .starts_with("framing.keep_sync: must be true or false")
        );
        assert_eq!(
            err(json!({"kind": "length", "size": 5})),
            "framing.size: must be 1..4, got 5"
        );
        assert_eq!(
            err(json!({"kind": "length", "size": 0})),
            "framing.size: must be 1..4, got 0"
        );
        assert_eq!(
            err(json!({"kind": "length"})),
            "framing.size: required for kind length"
        );
        assert_eq!(
            err(json!({"kind": "length", "size": 2, "offset": -1})),
            "framing.offset: must be 0..1048576, got -1"
        );
        assert_eq!(
            err(json!({"kind": "length", "size": 2, "endian": "middle"})),
            "framing.endian: must be \"big\" or \"little\", got \"middle\""
        );
        assert_eq!(
            err(json!({"kind": "length", "size": 2, "adjustment": 2000000})),
            "framing.adjustment: must be -1048576..1048576, got 2000000"
        );
        assert_eq!(
            err(json!({"kind": "length", "size": 2, "max_length": 0})),
            "framing.max_length: must be 1..1048576, got 0"
        );
        assert_eq!(
            err(json!({"kind": "length", "size": 2, "offset": 4, "max_length": 5})),
            "framing.max_length: must be at least offset + size (6) to hold the length field, got 5"
        );
        assert_eq!(
            err(json!({"kind": "ccsds_space_packet", "max_length": 6})),
            "framing.max_length: must be 7..65542, got 6"
        );
        assert_eq!(
            err(json!({"kind": "kiss", "max_length": 0})),
            "framing.max_length: must be 1..1048576, got 0"
        );
    }
}
