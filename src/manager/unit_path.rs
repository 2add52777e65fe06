//! A handler's telemetry path, sans I/O: what it reads in, which units it writes.
//!
//! [`UnitPath`] holds, for one handler, the [`Framer`] of its connection, its
//! [`SequenceChecker`], the FECF check and the `pre_write_transforms`, and the
//! counters they keep. [`UnitPath::feed`] takes one read (tcp) or one datagram
//! and calls back once per unit in order: with the bytes to write, or with `None`
//! when the unit is not written (filtered out, or a bad frame dropped).
//!
//! Per unit, in this order: framing (a unit is a slice of the read or of the
//! framer's buffer) → FECF (TM frames with `fecf`: a failing frame counts one
//! `crc_errors`; it is dropped with `drop_bad_frames`, and never
//! sequence-checked, as its header cannot be trusted) → sequence check → the
//! transforms (a sub-slice, or filtered out: `filtered`).
//!
//! # Invariants
//!
//! - no allocation and no copy per unit (the framer's KISS decoding aside): what
//!   is written is a sub-slice of the unit;
//! - the framing state is this handler's and this connection's: a connection's end
//!   drops the partial unit ([`UnitPath::connection_ended`]); the sequence state
//!   goes on across connections (a restarted sender shows as a reset);
//! - a handler without framing, sequence check, FECF or transforms other than
//!   `identity` has no `UnitPath` at all ([`UnitPath::needed`]): its reads are
//!   written as they come, as before.

use crate::config::HandlerSpec;
use crate::units::framing::{fecf_ok, Framer, Framing, FramingStats, ASM};
use crate::units::sequence::{SequenceCheck, SequenceChecker, SequenceReport};
use crate::units::transform::{apply_all, Transform};

/// One handler's units: framing, checks, transforms and their counters.
#[derive(Debug)]
pub struct UnitPath {
    framer: Framer,
    checker: Option<SequenceChecker>,
    /// With `fecf`: where the TM frame starts in the unit (after a kept ASM).
    fecf_at: Option<usize>,
    drop_bad_frames: bool,
    transforms: Vec<Transform>,
    crc_errors: u64,
    filtered: u64,
}

impl UnitPath {
    /// Whether `spec` asks for anything beyond writing each read as it comes.
    pub fn needed(spec: &HandlerSpec) -> bool {
        spec.framing != Framing::None
            || spec.sequence_check.is_some()
            || spec.fecf
            || spec
                .pre_write_transforms
                .iter()
                .any(|t| *t != Transform::Identity)
    }

    /// The path `spec` asks for.
    pub fn new(spec: &HandlerSpec) -> UnitPath {
        let fecf_at = spec
            .fecf
            .then(|| match (&spec.framing, spec.sequence_check) {
                (
                    Framing::TmFrame {
                        keep_sync: true, ..
                    },
                    _,
                ) => ASM.len(),
                (Framing::TmFrame { .. }, _) => 0,
                (_, Some(SequenceCheck::TmFrame { offset })) => offset,
                _ => 0,
            });
        UnitPath {
            framer: Framer::new(&spec.framing),
            checker: spec.sequence_check.map(SequenceChecker::new),
            fecf_at,
            drop_bad_frames: spec.drop_bad_frames,
            transforms: spec
                .pre_write_transforms
                .iter()
                .filter(|t| **t != Transform::Identity)
                .cloned()
                .collect(),
            crc_errors: 0,
            filtered: 0,
        }
    }

    /// Takes one read of a byte stream (`stream`) or one datagram; calls `out`
    /// once per unit with the unit and what of it to write (`None`: nothing).
    pub fn feed(&mut self, data: &[u8], stream: bool, out: &mut impl FnMut(&[u8], Option<&[u8]>)) {
        let UnitPath {
            framer,
            checker,
            fecf_at,
            drop_bad_frames,
            transforms,
            crc_errors,
            filtered,
        } = self;
        let mut each = |unit: crate::units::framing::Unit<'_>| {
            let unit = unit.data;
            let mut check = true;
            if let Some(at) = *fecf_at {
                if !unit.get(at..).is_some_and(fecf_ok) {
                    *crc_errors += 1;
                    if *drop_bad_frames {
                        return out(unit, None);
                    }
                    check = false;
                }
            }
            if let (Some(c), true) = (checker.as_mut(), check) {
                c.check(unit);
            }
            match apply_all(transforms, unit) {
                Some(kept) => out(unit, Some(kept)),
                None => {
                    *filtered += 1;
                    out(unit, None)
                }
            }
        };
        if stream {
            framer.push(data, &mut each);
        } else {
            framer.units_in_datagram(data, &mut each);
        }
    }

    /// The connection ended: the partial unit is dropped (and counted).
    pub fn connection_ended(&mut self) {
        self.framer.reset();
    }

    /// The framer's counters.
    pub fn framing(&self) -> FramingStats {
        self.framer.stats()
    }

    /// TM frames whose FECF failed.
    pub fn crc_errors(&self) -> u64 {
        self.crc_errors
    }

    /// Units a transform filtered out.
    pub fn filtered(&self) -> u64 {
        self.filtered
    }

    /// The sequence accounting, with `sequence_check` (allocates: for the API).
    pub fn sequence(&self) -> Option<SequenceReport> {
        self.checker.as_ref().map(SequenceChecker::report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Origin;
    use crate::units::framing::testgen::{space_packet, tm_frame};
    use serde_json::json;

    fn path(keys: serde_json::Value) -> UnitPath {
        let mut obj = json!({"name": "h", "conn_type": "tcp", "address": ["127.0.0.1", 9]});
        for (k, v) in keys.as_object().unwrap() {
            obj[k] = v.clone();
        }
        let spec = HandlerSpec::from_json(obj.as_object().unwrap(), Origin::ConfigFile).unwrap();
        assert!(UnitPath::needed(&spec));
        UnitPath::new(&spec)
    }

    fn run(p: &mut UnitPath, reads: &[&[u8]], stream: bool) -> (Vec<Vec<u8>>, usize) {
        let (mut written, mut units) = (Vec::new(), 0);
        for r in reads {
            p.feed(r, stream, &mut |_, w| {
                units += 1;
                if let Some(w) = w {
                    written.push(w.to_vec());
                }
            });
        }
        (written, units)
    }

    #[test]
    fn space_packets_framed_checked_filtered_and_cut() {
        let mut p = path(json!({
            "framing": "ccsds_space_packet",
            "sequence_check": "ccsds_space_packet",
            "pre_write_transforms": ["apid:0x100", "strip:6"],
        }));
        let mut bytes = Vec::new();
        for (apid, count) in [(0x100, 16383), (0x101, 0), (0x100, 0), (0x100, 3)] {
            bytes.extend(space_packet(apid, count, &[count as u8; 5]));
        }
        let (a, b) = bytes.split_at(9);
        let (written, units) = run(&mut p, &[a, b], true);
        assert_eq!(units, 4);
        assert_eq!(written, [vec![0xFF; 5], vec![0; 5], vec![3; 5]]);
        assert_eq!(p.filtered(), 1);
        let seq = p.sequence().unwrap();
        assert_eq!((seq.totals.gaps, seq.totals.missing), (1, 2));
        assert_eq!(seq.streams.len(), 2);
    }

    #[test]
    fn bad_fecf_is_counted_written_or_dropped_and_not_sequence_checked() {
        let good = |vc| tm_frame(42, 1, vc, vc, 0, &[7; 10], true);
        let mut bad = good(1);
        bad[12] ^= 0xFF;
        let stream = [good(0), bad, good(2)].concat();
        for (drop, want) in [(false, 3), (true, 2)] {
            let mut p = path(json!({
                "framing": {"kind": "ccsds_tm_frame", "length": 18, "keep_sync": true},
                "sequence_check": {"kind": "ccsds_tm_frame", "offset": 4},
                "fecf": true,
                "drop_bad_frames": drop,
            }));
            let (written, _) = run(&mut p, &[&stream], true);
            assert_eq!(written.len(), want);
            assert_eq!(p.crc_errors(), 1);
            let seq = p.sequence().unwrap();
            assert_eq!((seq.totals.gaps, seq.totals.missing), (1, 1));
        }
    }

    #[test]
    fn a_partial_unit_is_dropped_at_the_connection_end() {
        let mut p = path(json!({"framing": "ccsds_space_packet"}));
        let pkt = space_packet(5, 1, &[1; 20]);
        let (written, _) = run(&mut p, &[&pkt[..10]], true);
        assert!(written.is_empty());
        p.connection_ended();
        let (written, _) = run(&mut p, &[&pkt], true);
        assert_eq!(written, [pkt]);
        assert_eq!(p.framing().bytes_discarded, 10);
    }

    #[test]
    fn datagrams_each_one_unit_are_sequence_checked() {
        let mut p = path(json!({"conn_type": "udp", "sequence_check": "ccsds_space_packet"}));
        let a = space_packet(5, 1, &[1]);
        let b = space_packet(5, 4, &[1]);
        let (written, _) = run(&mut p, &[&a, &b], false);
        assert_eq!(written.len(), 2);
        assert_eq!(p.sequence().unwrap().totals.missing, 2);
    }
}
