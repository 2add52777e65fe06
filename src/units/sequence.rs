//! Sequence-gap accounting, sans I/O: the counters in CCSDS headers say how many
//! units went missing between two that arrived.
//!
//! [`SequenceCheck`] is the `sequence_check` config value; [`SequenceChecker`] is
//! given each unit ([`SequenceChecker::check`]) and keeps, per stream, the last count
//! and what the steps between counts showed:
//!
//! - space packets: one stream per APID, the 14-bit packet sequence count;
//! - TM transfer frames: one stream per (spacecraft, virtual channel), the 8-bit
//!   virtual channel frame count; and per spacecraft the 8-bit master channel frame
//!   count, reported apart ([`SequenceReport::master_channels`]) so that a lost frame
//!   is not counted twice in the totals.
//!
//! A step of 1 (modulo the count's range) is normal; a step of 0 is a duplicate; a
//! step of d with 1 < d <= range/2 is one gap of d - 1 missing units; a longer step
//! is a reset (the sender restarted), which counts no missing units.
//!
//! # Invariants
//!
//! - Idle units are never sequence-counted: space packets of APID 0x7FF, and TM
//!   frames whose first header pointer is 0x7FE (only idle data, CCSDS 132.0-B).
//!   An idle frame still steps its master channel, whose count includes it.
//! - At most [`MAX_STREAMS`] unit streams (and as many master channels) are
//!   tracked; units of further streams are counted as `other`, unchecked.
//! - No allocation per unit once its stream has been seen (a stream is a slot in a
//!   sorted `Vec`, found by binary search); reports allocate, units do not.

use serde::Serialize;
use serde_json::{json, Value};

use crate::units::framing::{SpacePacketHeader, TmFrameHeader};

/// The config key these values are read from (it prefixes every error).
pub const KEY: &str = "sequence_check";
/// Most streams one checker tracks (and, for TM frames, most master channels).
pub const MAX_STREAMS: usize = 256;
/// Largest `offset` of the header in a unit.
pub const MAX_OFFSET: usize = 65535;

/// Which counter to check (the `sequence_check` key).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum SequenceCheck {
    /// Space packets: per APID, the 14-bit sequence count.
    SpacePacket {
        /// Where the primary header starts in the unit.
        offset: usize,
    },
    /// TM transfer frames: per (SCID, VCID), the virtual channel frame count; per
    /// SCID, the master channel frame count.
    TmFrame {
        /// Where the frame header starts in the unit (4 when the unit kept its ASM).
        offset: usize,
    },
}

const KINDS: &str = "ccsds_space_packet, ccsds_tm_frame";

impl SequenceCheck {
    /// Reads `"ccsds_space_packet"`, `"ccsds_tm_frame"`, or an object
    /// `{"kind": ..., "offset": N}` (offset default 0).
    pub fn from_json(v: &Value) -> Result<SequenceCheck, String> {
        let (kind, offset) = match v {
            Value::String(s) => (s.as_str(), 0),
            Value::Object(o) => {
                for k in o.keys() {
                    if k != "kind" && k != "offset" {
                        return Err(format!(
                            "{KEY}.{k}: not a key of {KEY}; its keys: kind, offset"
                        ));
                    }
                }
                let kind = match o.get("kind") {
                    Some(Value::String(s)) => s.as_str(),
                    Some(other) => {
                        return Err(format!("{KEY}.kind: must be one of {KINDS}, got {other}"))
                    }
                    None => return Err(format!("{KEY}.kind: required, one of {KINDS}")),
                };
                let offset = match o.get("offset") {
                    None => 0,
                    Some(v) => {
                        let n = match v {
                            Value::Number(n) => n.as_i64(),
                            Value::String(s) => s.trim().parse().ok(),
                            _ => None,
                        }
                        .ok_or_else(|| format!("{KEY}.offset: must be a whole number, got {v}"))?;
                        if !(0..=MAX_OFFSET as i64).contains(&n) {
                            return Err(format!("{KEY}.offset: must be 0..{MAX_OFFSET}, got {n}"));
                        }
                        n as usize
                    }
                };
                (kind, offset)
            }
            other => {
                return Err(format!(
                    "{KEY}: must be one of {KINDS} or an object with \"kind\", got {other}"
                ))
            }
        };
        match kind {
            "ccsds_space_packet" => Ok(SequenceCheck::SpacePacket { offset }),
            "ccsds_tm_frame" => Ok(SequenceCheck::TmFrame { offset }),
            other => Err(format!(
                "{KEY}.kind: unknown kind {other:?}; valid: {KINDS}"
            )),
        }
    }

    /// The value [`SequenceCheck::from_json`] reads back to `self`.
    pub fn to_json(&self) -> Value {
        match *self {
            SequenceCheck::SpacePacket { offset: 0 } => json!("ccsds_space_packet"),
            SequenceCheck::TmFrame { offset: 0 } => json!("ccsds_tm_frame"),
            SequenceCheck::SpacePacket { offset } => {
                json!({"kind": "ccsds_space_packet", "offset": offset})
            }
            SequenceCheck::TmFrame { offset } => {
                json!({"kind": "ccsds_tm_frame", "offset": offset})
            }
        }
    }
}

/// What one unit showed about its stream.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Observation {
    /// The first unit of its stream: nothing to compare with.
    First,
    /// The count went up by one.
    InSequence,
    /// `missing` units were skipped (one gap).
    Gap { missing: u32 },
    /// The same count again.
    Duplicate,
    /// A jump longer than half the range: the sender restarted.
    Reset,
    /// An idle packet or frame: not counted.
    Idle,
    /// Too short to hold the header.
    Short,
    /// A stream beyond [`MAX_STREAMS`]: counted as `other`, not checked.
    Untracked,
}

/// What a step from count `last` to count `now` is, for counts modulo `range`.
pub fn classify(last: u16, now: u16, range: u32) -> Observation {
    let d = (u32::from(now) + range - u32::from(last)) % range;
    match d {
        0 => Observation::Duplicate,
        1 => Observation::InSequence,
        d if d <= range / 2 => Observation::Gap { missing: d - 1 },
        _ => Observation::Reset,
    }
}

/// One stream's state: its key and what its steps showed.
#[derive(Clone, Debug)]
struct Stream {
    /// APID, or `scid << 3 | vcid`, or (master channels) `scid`.
    key: u16,
    units: u64,
    gaps: u64,
    missing: u64,
    duplicates: u64,
    resets: u64,
    last: u16,
}

/// Totals over all unit streams (master channels are in their own entries).
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct SequenceTotals {
    /// Units given to the checker (all of them, short and idle included).
    pub units: u64,
    pub gaps: u64,
    pub missing: u64,
    pub duplicates: u64,
    pub resets: u64,
    /// Units too short for the header.
    pub short: u64,
    /// Idle packets or frames.
    pub idle: u64,
    /// Units of streams beyond [`MAX_STREAMS`].
    pub other: u64,
}

/// One stream in a report.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct StreamReport {
    /// `"apid 0x123"`, `"scid 42 vc 3"`, or for a master channel `"scid 42"`.
    pub id: String,
    pub units: u64,
    pub gaps: u64,
    pub missing: u64,
    pub duplicates: u64,
    pub resets: u64,
    pub last_count: u16,
}

/// A checker's totals and streams, for the API (streams in order of their ids).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SequenceReport {
    #[serde(flatten)]
    pub totals: SequenceTotals,
    pub streams: Vec<StreamReport>,
    /// TM frames only: the master channel count of each spacecraft.
    pub master_channels: Vec<StreamReport>,
}

/// The sequence state of one handler (or connection): every stream's last count.
#[derive(Clone, Debug)]
pub struct SequenceChecker {
    check: SequenceCheck,
    /// Sorted by key; at most MAX_STREAMS.
    streams: Vec<Stream>,
    /// TM frames: per SCID, sorted; at most MAX_STREAMS.
    masters: Vec<Stream>,
    totals: SequenceTotals,
}

/// Steps the stream of `key` in `table` to `count`; `None` if untracked (full).
#[inline(always)]
fn observe(table: &mut Vec<Stream>, key: u16, count: u16, range: u32) -> Option<Observation> {
    let i = match table.binary_search_by_key(&key, |s| s.key) {
        Ok(i) => i,
        Err(i) => {
            if table.len() >= MAX_STREAMS {
                return None;
            }
            table.insert(
                i,
                Stream {
                    key,
                    units: 1,
                    gaps: 0,
                    missing: 0,
                    duplicates: 0,
                    resets: 0,
                    last: count,
                },
            );
            return Some(Observation::First);
        }
    };
    let s = &mut table[i];
    let seen = classify(s.last, count, range);
    s.units += 1;
    s.last = count;
    match seen {
        Observation::Gap { missing } => {
            s.gaps += 1;
            s.missing += u64::from(missing);
        }
        Observation::Duplicate => s.duplicates += 1,
        Observation::Reset => s.resets += 1,
        _ => {}
    }
    Some(seen)
}

impl SequenceChecker {
    pub fn new(check: SequenceCheck) -> SequenceChecker {
        SequenceChecker {
            check,
            streams: Vec::new(),
            masters: Vec::new(),
            totals: SequenceTotals::default(),
        }
    }

    pub fn sequence_check(&self) -> SequenceCheck {
        self.check
    }

    /// Accounts one unit; says what it showed (for a TM frame: about its virtual
    /// channel; the master channel is accounted too, see [`SequenceChecker::report`]).
    pub fn check(&mut self, unit: &[u8]) -> Observation {
        self.totals.units += 1;
        let seen = match self.check {
            SequenceCheck::SpacePacket { offset } => {
                match unit.get(offset..).and_then(SpacePacketHeader::parse) {
                    None => Observation::Short,
                    Some(h) if h.is_idle() => Observation::Idle,
                    Some(h) => observe(
                        &mut self.streams,
                        h.apid,
                        h.sequence_count,
                        SpacePacketHeader::COUNT_RANGE,
                    )
                    .unwrap_or(Observation::Untracked),
                }
            }
            SequenceCheck::TmFrame { offset } => {
                match unit.get(offset..).and_then(TmFrameHeader::parse) {
                    None => Observation::Short,
                    Some(h) => {
                        // Untracked master channels are not counted: the table of
                        // virtual channels fills first unless spacecraft send only idle.
                        let _ = observe(
                            &mut self.masters,
                            h.scid,
                            h.mc_count.into(),
                            TmFrameHeader::COUNT_RANGE,
                        );
                        if h.is_idle() {
                            Observation::Idle
                        } else {
                            observe(
                                &mut self.streams,
                                (h.scid << 3) | u16::from(h.vcid),
                                h.vc_count.into(),
                                TmFrameHeader::COUNT_RANGE,
                            )
                            .unwrap_or(Observation::Untracked)
                        }
                    }
                }
            }
        };
        let t = &mut self.totals;
        match seen {
            Observation::Gap { missing } => {
                t.gaps += 1;
                t.missing += u64::from(missing);
            }
            Observation::Duplicate => t.duplicates += 1,
            Observation::Reset => t.resets += 1,
            Observation::Idle => t.idle += 1,
            Observation::Short => t.short += 1,
            Observation::Untracked => t.other += 1,
            Observation::First | Observation::InSequence => {}
        }
        seen
    }

    /// The totals so far.
    pub fn totals(&self) -> SequenceTotals {
        self.totals
    }

    /// Totals and every stream (allocates: for the API, not per unit).
    pub fn report(&self) -> SequenceReport {
        let entry = |s: &Stream, id: String| StreamReport {
            id,
            units: s.units,
            gaps: s.gaps,
            missing: s.missing,
            duplicates: s.duplicates,
            resets: s.resets,
            last_count: s.last,
        };
        let tm = matches!(self.check, SequenceCheck::TmFrame { .. });
        SequenceReport {
            totals: self.totals,
            streams: self
                .streams
                .iter()
                .map(|s| {
                    let id = if tm {
                        format!("scid {} vc {}", s.key >> 3, s.key & 7)
                    } else {
                        format!("apid 0x{:03X}", s.key)
                    };
                    entry(s, id)
                })
                .collect(),
            master_channels: self
                .masters
                .iter()
                .map(|s| entry(s, format!("scid {}", s.key)))
                .collect(),
        }
    }

    /// Forgets every stream and total (a new connection need not do this: the
    /// counts go on across reconnects, and a restarted sender shows as a reset).
    pub fn clear(&mut self) {
        self.streams.clear();
        self.masters.clear();
        self.totals = SequenceTotals::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::units::framing::testgen::{space_packet, tm_frame};
    use crate::units::framing::OID_FIRST_HEADER_POINTER;

    fn sp_checker() -> SequenceChecker {
        SequenceChecker::new(SequenceCheck::SpacePacket { offset: 0 })
    }

    fn feed(c: &mut SequenceChecker, apid: u16, counts: &[u16]) -> Vec<Observation> {
        counts
            .iter()
            .map(|&n| c.check(&space_packet(apid, n, b"x")))
            .collect()
    }

    #[test]
    fn config_forms_and_errors() {
        let p = |v: Value| SequenceCheck::from_json(&v);
        assert_eq!(
            p(json!("ccsds_space_packet")),
            Ok(SequenceCheck::SpacePacket { offset: 0 })
        );
        assert_eq!(
            p(json!({"kind": "ccsds_tm_frame", "offset": 4})),
            Ok(SequenceCheck::TmFrame { offset: 4 })
        );
        for c in [
            SequenceCheck::SpacePacket { offset: 0 },
            SequenceCheck::TmFrame { offset: 0 },
            SequenceCheck::TmFrame { offset: 4 },
            SequenceCheck::SpacePacket { offset: 2 },
        ] {
            assert_eq!(p(c.to_json()), Ok(c));
        }
        assert_eq!(
            p(json!("aos")).unwrap_err(),
            "sequence_check.kind: unknown kind \"aos\"; valid: ccsds_space_packet, ccsds_tm_frame"
        );
        assert_eq!(
            p(json!({"kind": "ccsds_tm_frame", "offset": -1})).unwrap_err(),
            "sequence_check.offset: must be 0..65535, got -1"
        );
        assert!(p(json!({"kind": "ccsds_tm_frame", "offset": "x"}))
            .unwrap_err()
            .starts_with("sequence_check.offset: must be a whole number"));
        assert!(p(json!({"kind": "ccsds_tm_frame", "ofset": 4}))
            .unwrap_err()
            .starts_with("sequence_check.ofset: not a key"));
        assert!(p(json!({"offset": 4}))
            .unwrap_err()
            .starts_with("sequence_check.kind: required"));
        assert!(p(json!(3))
            .unwrap_err()
            .starts_with("sequence_check: must be"));
    }

    #[test]
    fn steps_classified() {
        use Observation::*;
        let r = 1 << 14;
        assert_eq!(classify(5, 6, r), InSequence);
        assert_eq!(classify(16383, 0, r), InSequence);
        assert_eq!(classify(5, 5, r), Duplicate);
        assert_eq!(classify(5, 8, r), Gap { missing: 2 });
        assert_eq!(classify(16382, 1, r), Gap { missing: 2 });
        assert_eq!(classify(0, 8192, r), Gap { missing: 8191 });
        assert_eq!(classify(0, 8193, r), Reset);
        assert_eq!(classify(5, 4, r), Reset, "going back is a restart");
        assert_eq!(classify(255, 0, 256), InSequence);
        assert_eq!(classify(250, 4, 256), Gap { missing: 9 });
        assert_eq!(classify(0, 128, 256), Gap { missing: 127 });
        assert_eq!(classify(0, 129, 256), Reset);
    }

    #[test]
    fn space_packets_normal_gap_duplicate_reset() {
        use Observation::*;
        let mut c = sp_checker();
        assert_eq!(
            feed(&mut c, 0x123, &[10, 11, 12, 15, 15, 16, 3, 4]),
            vec![
                First,
                InSequence,
                InSequence,
                Gap { missing: 2 },
                Duplicate,
                InSequence,
                Reset,
                InSequence
            ]
        );
        let t = c.totals();
        assert_eq!(
            (t.units, t.gaps, t.missing, t.duplicates, t.resets),
            (8, 1, 2, 1, 1)
        );
        let r = c.report();
        assert_eq!(
            r.streams,
            vec![StreamReport {
                id: "apid 0x123".into(),
                units: 8,
                gaps: 1,
                missing: 2,
                duplicates: 1,
                resets: 1,
                last_count: 4
            }]
        );
        assert!(r.master_channels.is_empty());
    }

    #[test]
    fn space_packets_wrap_at_16383_and_apids_are_apart() {
        let mut c = sp_checker();
        feed(&mut c, 1, &[16382, 16383, 0, 1]);
        feed(&mut c, 2, &[16383, 2]);
        let _ = c.check(&space_packet(1, 2, b"x"));
        let t = c.totals();
        assert_eq!((t.gaps, t.missing, t.resets), (1, 2, 0));
        let r = c.report();
        assert_eq!(r.streams.len(), 2);
        assert_eq!(
            (
                r.streams[0].units,
                r.streams[0].missing,
                r.streams[0].last_count
            ),
            (5, 0, 2)
        );
        assert_eq!(
            (r.streams[1].id.as_str(), r.streams[1].missing),
            ("apid 0x002", 2)
        );
    }

    #[test]
    fn idle_and_short_are_not_counted() {
        let mut c = sp_checker();
        feed(&mut c, 0x7FF, &[0, 0, 9]);
        assert_eq!(c.check(b"short"), Observation::Short);
        let t = c.totals();
        assert_eq!(
            (t.units, t.idle, t.short, t.gaps, t.duplicates),
            (4, 3, 1, 0, 0)
        );
        assert!(c.report().streams.is_empty());
        // The header after an offset (a kept sync marker, say).
        let mut c = SequenceChecker::new(SequenceCheck::SpacePacket { offset: 2 });
        let p = [vec![0xEB, 0x90], space_packet(5, 1, b"x")].concat();
        assert_eq!(c.check(&p), Observation::First);
        assert_eq!(c.check(&p[..7]), Observation::Short);
    }

    #[test]
    fn streams_beyond_256_are_other() {
        let mut c = sp_checker();
        for apid in 0..257u16 {
            let want = if apid < 256 {
                Observation::First
            } else {
                Observation::Untracked
            };
            assert_eq!(c.check(&space_packet(apid, 0, b"x")), want);
        }
        // The tracked ones go on being checked; the 257th never is.
        assert_eq!(c.check(&space_packet(256, 5, b"x")), Observation::Untracked);
        assert_eq!(
            c.check(&space_packet(0, 2, b"x")),
            Observation::Gap { missing: 1 }
        );
        let t = c.totals();
        assert_eq!((t.units, t.other, t.gaps), (259, 2, 1));
        assert_eq!(c.report().streams.len(), MAX_STREAMS);
        let allocated = c.streams.capacity();
        for n in 0..1000u16 {
            c.check(&space_packet(n % 256, n % 16384, b"x"));
        }
        assert_eq!(c.streams.capacity(), allocated, "no growth once seen");
        c.clear();
        assert_eq!(c.totals(), SequenceTotals::default());
    }

    fn tm_checker(offset: usize) -> SequenceChecker {
        SequenceChecker::new(SequenceCheck::TmFrame { offset })
    }

    #[test]
    fn tm_frames_per_virtual_channel_and_master_channel() {
        use Observation::*;
        let mut c = tm_checker(0);
        let f = |vc: u8, mc: u8, n: u8| tm_frame(42, vc, mc, n, 0, b"data", false);
        // Master channel counts every frame; VC 1 loses its frame 1 (MC 2).
        assert_eq!(c.check(&f(0, 0, 254)), First);
        assert_eq!(c.check(&f(1, 1, 0)), First);
        assert_eq!(c.check(&f(0, 3, 255)), InSequence);
        assert_eq!(c.check(&f(0, 4, 0)), InSequence, "VC count wraps at 255");
        assert_eq!(c.check(&f(1, 5, 2)), Gap { missing: 1 });
        let r = c.report();
        let ids: Vec<&str> = r.streams.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(ids, vec!["scid 42 vc 0", "scid 42 vc 1"]);
        assert_eq!((r.totals.gaps, r.totals.missing), (1, 1));
        assert_eq!(r.master_channels.len(), 1);
        let m = &r.master_channels[0];
        assert_eq!(
            (m.id.as_str(), m.units, m.gaps, m.missing, m.last_count),
            ("scid 42", 5, 1, 1, 5)
        );
    }

    #[test]
    fn idle_frames_step_the_master_channel_only() {
        use Observation::*;
        let mut c = tm_checker(4);
        let f = |vc: u8, mc: u8, n: u8, fhp: u16| tm_frame(7, vc, mc, n, fhp, b"d", true);
        assert_eq!(c.check(&f(0, 255, 10, 0)), First);
        assert_eq!(c.check(&f(7, 0, 99, OID_FIRST_HEADER_POINTER)), Idle);
        assert_eq!(c.check(&f(7, 1, 50, OID_FIRST_HEADER_POINTER)), Idle);
        assert_eq!(c.check(&f(0, 2, 11, 0)), InSequence);
        // VC 7 frames that are not idle are counted like any other.
        assert_eq!(c.check(&f(7, 3, 0, 0)), First);
        let r = c.report();
        assert_eq!(r.totals.idle, 2);
        assert_eq!(r.streams.len(), 2);
        assert_eq!(
            (r.master_channels[0].gaps, r.master_channels[0].units),
            (0, 5),
            "master count wraps at 255 and includes idle frames"
        );
        assert_eq!(c.check(&f(0, 4, 12, 0)[..9]), Short);
    }

    #[test]
    fn report_serializes_flat() {
        let mut c = sp_checker();
        feed(&mut c, 0x100, &[1, 3]);
        let v = serde_json::to_value(c.report()).unwrap();
        assert_eq!(v["gaps"], 1);
        assert_eq!(v["missing"], 1);
        assert_eq!(v["streams"][0]["id"], "apid 0x100");
        assert_eq!(v["streams"][0]["last_count"], 3);
        assert_eq!(v["master_channels"], json!([]));
    }
}
