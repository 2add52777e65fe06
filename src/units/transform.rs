//! `pre_write_transforms`, sans I/O: what of a unit is written. Each [`Transform`]
//! maps a unit to a sub-slice of it (no copy) or filters it out (`None`);
//! [`apply_all`] runs a handler's list in order.
//!
//! The string forms (what the config and the API carry), also [`Transform::FORMS`]:
//!
//! | form | keeps |
//! |---|---|
//! | `identity` (AIT's `identity_transform`) | the unit unchanged |
//! | `strip:N` | all but the first N bytes (filtered if nothing is left) |
//! | `tail:N` | all but the last N bytes (filtered if nothing is left) |
//! | `apid:0x100,0x101` | space packets of these APIDs (hex with `0x`, or decimal) |
//! | `vcid:0,3` | TM frames (header first, no ASM) of these virtual channels |
//!
//! A unit too short for the header a filter reads is filtered out.

use std::fmt;

use crate::units::framing::{SpacePacketHeader, TmFrameHeader};

/// Largest N of `strip:N` and `tail:N`.
pub const MAX_CUT: usize = 65535;

/// One transform of a unit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Transform {
    /// The unit unchanged.
    Identity,
    /// Drops the first N bytes.
    Strip(usize),
    /// Drops the last N bytes.
    Tail(usize),
    /// Keeps space packets of these APIDs (sorted, no repeats).
    Apids(Vec<u16>),
    /// Keeps TM frames of these virtual channels (bit n = VCID n).
    Vcids(u8),
}

impl Transform {
    /// The valid forms, for error messages.
    pub const FORMS: &'static str = "identity (or AIT's identity_transform), strip:N, tail:N \
        (N 1..65535), apid:0x100,0x101 (APIDs 0..0x7FF), vcid:0,3 (VCIDs 0..7)";

    /// Reads one transform from its string form.
    pub fn parse(text: &str) -> Result<Transform, String> {
        let t = text.trim();
        if t == "identity" || t == "identity_transform" {
            return Ok(Transform::Identity);
        }
        let Some((name, arg)) = t.split_once(':') else {
            return Err(format!("unknown transform {t:?}; valid: {}", Self::FORMS));
        };
        let arg = arg.trim();
        let cut = || -> Result<usize, String> {
            match arg.parse::<usize>() {
                Ok(n) if (1..=MAX_CUT).contains(&n) => Ok(n),
                _ => Err(format!(
                    "{t:?}: N must be a whole number 1..{MAX_CUT}; valid: {}",
                    Self::FORMS
                )),
            }
        };
        match name.trim() {
            "strip" => Ok(Transform::Strip(cut()?)),
            "tail" => Ok(Transform::Tail(cut()?)),
            "apid" => {
                let mut apids = list(t, arg, 0x7FF)?;
                apids.sort_unstable();
                apids.dedup();
                Ok(Transform::Apids(apids))
            }
            "vcid" => Ok(Transform::Vcids(
                list(t, arg, 7)?.iter().fold(0, |m, &v| m | 1 << v),
            )),
            _ => Err(format!("unknown transform {t:?}; valid: {}", Self::FORMS)),
        }
    }

    /// What of `unit` is written: a sub-slice, or `None` if it is filtered out.
    pub fn apply<'a>(&self, unit: &'a [u8]) -> Option<&'a [u8]> {
        match self {
            Transform::Identity => Some(unit),
            Transform::Strip(n) => unit.get(*n..).filter(|r| !r.is_empty()),
            Transform::Tail(n) => unit
                .len()
                .checked_sub(*n)
                .filter(|&k| k > 0)
                .map(|k| &unit[..k]),
            Transform::Apids(apids) => SpacePacketHeader::parse(unit)
                .filter(|h| apids.binary_search(&h.apid).is_ok())
                .map(|_| unit),
            Transform::Vcids(mask) => TmFrameHeader::parse(unit)
                .filter(|h| mask & (1 << h.vcid) != 0)
                .map(|_| unit),
        }
    }
}

/// A comma-separated list of numbers `0..=max`, hex (`0x..`) or decimal.
fn list(form: &str, arg: &str, max: u16) -> Result<Vec<u16>, String> {
    let bad = |what: &str| format!("{form:?}: {what}; valid: {}", Transform::FORMS);
    if arg.is_empty() {
        return Err(bad("the list is empty"));
    }
    arg.split(',')
        .map(|item| {
            let s = item.trim();
            let n = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
                Some(hex) => u16::from_str_radix(hex, 16).ok(),
                None => s.parse::<u16>().ok(),
            };
            n.filter(|&n| n <= max)
                .ok_or_else(|| bad(&format!("{s:?} is not a number 0..{max}")))
        })
        .collect()
}

impl fmt::Display for Transform {
    /// The canonical string form ([`Transform::parse`] reads it back).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Transform::Identity => write!(f, "identity"),
            Transform::Strip(n) => write!(f, "strip:{n}"),
            Transform::Tail(n) => write!(f, "tail:{n}"),
            Transform::Apids(apids) => {
                let items: Vec<String> = apids.iter().map(|a| format!("0x{a:03X}")).collect();
                write!(f, "apid:{}", items.join(","))
            }
            Transform::Vcids(mask) => {
                let items: Vec<String> = (0..8)
                    .filter(|v| mask & (1 << v) != 0)
                    .map(|v| v.to_string())
                    .collect();
                write!(f, "vcid:{}", items.join(","))
            }
        }
    }
}

/// Runs `transforms` in order over `unit`; `None` once one filters it out.
pub fn apply_all<'a>(transforms: &[Transform], unit: &'a [u8]) -> Option<&'a [u8]> {
    transforms.iter().try_fold(unit, |u, t| t.apply(u))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::units::framing::testgen::{space_packet, tm_frame};

    fn t(s: &str) -> Transform {
        Transform::parse(s).unwrap()
    }

    #[test]
    fn parses_every_form() {
        assert_eq!(t("identity"), Transform::Identity);
        assert_eq!(t("identity_transform"), Transform::Identity);
        assert_eq!(t("strip:4"), Transform::Strip(4));
        assert_eq!(t(" tail: 2 "), Transform::Tail(2));
        assert_eq!(
            t("apid:0x101,0x100,256"),
            Transform::Apids(vec![0x100, 0x101])
        );
        assert_eq!(t("apid:0x7FF"), Transform::Apids(vec![0x7FF]));
        assert_eq!(t("vcid:0,3"), Transform::Vcids(0b1001));
        for s in [
            "identity",
            "strip:4",
            "tail:2",
            "apid:0x100,0x101",
            "vcid:0,3,7",
        ] {
            assert_eq!(t(s).to_string(), s);
            assert_eq!(t(&t(s).to_string()), t(s));
        }
    }

    #[test]
    fn errors_list_the_valid_forms() {
        let e = |s: &str| Transform::parse(s).unwrap_err();
        for bad in ["rot13", "strip", "apid", "chop:3", ""] {
            let msg = e(bad);
            assert!(msg.starts_with("unknown transform"), "{bad}: {msg}");
            assert!(msg.contains("strip:N, tail:N"), "{msg}");
        }
        assert!(e("strip:0")
            .starts_with("\"strip:0\": N must be a whole number 1..65535; valid: identity"));
        assert!(e("tail:65536").starts_with("\"tail:65536\": N must be"));
        assert!(e("strip:-1").starts_with("\"strip:-1\": N must be"));
        assert!(e("apid:0x800").starts_with("\"apid:0x800\": \"0x800\" is not a number 0..2047"));
        assert!(e("apid:1,,2").contains("\"\" is not a number"));
        assert!(e("apid:").contains("the list is empty"));
        assert!(e("vcid:8").starts_with("\"vcid:8\": \"8\" is not a number 0..7"));
        assert!(e("vcid:x").contains("valid: identity"));
    }

    #[test]
    fn strip_and_tail_return_sub_slices() {
        let unit = b"\x1A\xCF\xFC\x1Dframe\xAB\xCD";
        let s = t("strip:4").apply(unit).unwrap();
        assert_eq!(s, b"frame\xAB\xCD");
        assert!(std::ptr::eq(s.as_ptr(), unit[4..].as_ptr()), "no copy");
        assert_eq!(t("tail:2").apply(unit).unwrap(), b"\x1A\xCF\xFC\x1Dframe");
        assert_eq!(
            apply_all(&[t("strip:4"), t("tail:2")], unit),
            Some(&b"frame"[..])
        );
        assert_eq!(t("strip:10").apply(unit), Some(&b"\xCD"[..]));
        assert_eq!(t("strip:11").apply(unit), None, "nothing left");
        assert_eq!(t("strip:12").apply(unit), None);
        assert_eq!(t("tail:11").apply(unit), None);
        assert_eq!(t("identity").apply(b""), Some(&b""[..]));
        assert_eq!(apply_all(&[], unit), Some(&unit[..]));
    }

    #[test]
    fn apid_and_vcid_filters() {
        let keep = t("apid:0x100,0x101");
        assert!(keep.apply(&space_packet(0x100, 1, b"x")).is_some());
        assert!(keep.apply(&space_packet(0x101, 1, b"x")).is_some());
        assert!(keep.apply(&space_packet(0x102, 1, b"x")).is_none());
        assert!(
            keep.apply(&space_packet(0x100, 1, b"x")[..5]).is_none(),
            "short"
        );
        let vc = t("vcid:0,3");
        for (v, kept) in [(0, true), (1, false), (3, true), (7, false)] {
            let f = tm_frame(42, v, 0, 0, 0, b"data", false);
            assert_eq!(vc.apply(&f).is_some(), kept, "vcid {v}");
        }
        // With the ASM kept, strip it first.
        let f = tm_frame(42, 3, 0, 0, 0, b"data", true);
        assert_eq!(apply_all(&[t("strip:4"), vc.clone()], &f), Some(&f[4..]));
        assert_eq!(apply_all(&[vc, t("strip:4")], b"tiny"), None);
    }
}
