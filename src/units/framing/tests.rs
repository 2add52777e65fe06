//! The framer's behaviour, kind by kind: units, counters, resynchronization,
//! split-independence; KISS; the CCSDS headers and the CRC.

use super::testgen::*;
use super::*;
use serde_json::{json, Value};

fn framing(v: Value) -> Framing {
    Framing::from_json(&v).unwrap()
}

/// Units handed out, with their KISS ports.
type Units = Vec<(Vec<u8>, Option<u8>)>;

/// Frames `chunks` one push each: the units and the stats.
fn run(f: &Framing, chunks: &[&[u8]]) -> (Units, FramingStats) {
    let mut fr = Framer::new(f);
    let mut units = Vec::new();
    for c in chunks {
        fr.push(c, &mut |u| units.push((u.data.to_vec(), u.kiss_port)));
    }
    (units, fr.stats())
}

fn data_of(units: &Units) -> Vec<Vec<u8>> {
    units.iter().map(|u| u.0.clone()).collect()
}

/// Every way of cutting `stream` once and twice gives what one push gives.
fn assert_split_independent(f: &Framing, stream: &[u8]) -> (Vec<Vec<u8>>, FramingStats) {
    let (whole, stats) = run(f, &[stream]);
    for i in 0..=stream.len() {
        let (a, s) = run(f, &[&stream[..i], &stream[i..]]);
        assert_eq!(a, whole, "split at {i}");
        assert_eq!(s, stats, "split at {i}");
    }
    let step = (stream.len() / 40).max(1);
    for i in (0..=stream.len()).step_by(step) {
        for j in (i..=stream.len()).step_by(step) {
            let (a, s) = run(f, &[&stream[..i], &stream[i..j], &stream[j..]]);
            assert_eq!((a, s), (whole.clone(), stats), "splits at {i}, {j}");
        }
    }
    let bytes: Vec<&[u8]> = stream.chunks(1).collect();
    assert_eq!(run(f, &bytes), (whole.clone(), stats), "byte by byte");
    (data_of(&whole), stats)
}

fn sp() -> Framing {
    framing(json!({"kind": "ccsds_space_packet"}))
}

#[test]
fn sync_markers_from_hex() {
    assert_eq!(SyncMarker::from_hex("1acffc1d").unwrap().as_bytes(), &ASM);
    assert_eq!(
        SyncMarker::from_hex("0X1ACFFC1D").unwrap().to_hex(),
        "1ACFFC1D"
    );
    assert_eq!(
        SyncMarker::from_hex("0102030405060708")
            .unwrap()
            .as_bytes()
            .len(),
        8
    );
    assert!(SyncMarker::from_hex("+1").is_none());
    assert!(SyncMarker::new(&[]).is_none());
    assert_eq!(
        Framing::TmFrame {
            length: 10,
            keep_sync: true
        }
        .max_unit_len(),
        Some(14)
    );
    assert_eq!(sp().max_unit_len(), Some(65542));
    assert_eq!(Framing::None.max_unit_len(), None);
}

// --- none -------------------------------------------------------------

#[test]
fn no_framing_passes_each_read_through() {
    let (units, stats) = run(&Framing::None, &[b"abc", b"", b"de"]);
    assert_eq!(data_of(&units), vec![b"abc".to_vec(), b"de".to_vec()]);
    assert_eq!(stats.units, 2);
    let mut fr = Framer::new(&Framing::None);
    let mut n = 0;
    fr.units_in_datagram(b"", &mut |u| {
        assert!(u.data.is_empty());
        n += 1
    });
    assert_eq!(n, 1, "an empty datagram is still a record without framing");
}

// --- space packets ----------------------------------------------------

#[test]
fn space_packets_whole_several_and_split_everywhere() {
    let a = space_packet(0x100, 1, b"hello");
    let b = space_packet(0x101, 16383, &[0xC0; 1]);
    let c = space_packet(0x7FF, 0, &[7; 300]);
    let stream = [a.clone(), b.clone(), c.clone()].concat();
    let (units, stats) = assert_split_independent(&sp(), &stream);
    assert_eq!(units, vec![a, b, c]);
    assert_eq!(
        stats,
        FramingStats {
            units: 3,
            framing_errors: 0,
            bytes_discarded: 0
        }
    );
}

#[test]
fn whole_units_are_slices_of_the_input() {
    let a = space_packet(0x100, 1, b"hello");
    let stream = [a.clone(), a.clone()].concat();
    let mut fr = Framer::new(&sp());
    let range = stream.as_ptr_range();
    let mut n = 0;
    fr.push(&stream, &mut |u| {
        assert!(range.contains(&u.data.as_ptr()), "not copied");
        n += 1;
    });
    assert_eq!(n, 2);
    // A split unit comes from the buffer, and the one after it from the input.
    let mut fr = Framer::new(&sp());
    fr.push(&stream[..3], &mut |_| panic!("incomplete"));
    assert_eq!(fr.buffered(), 3);
    let rest = &stream[3..];
    let r = rest.as_ptr_range();
    let mut from_input = Vec::new();
    fr.push(rest, &mut |u| from_input.push(r.contains(&u.data.as_ptr())));
    assert_eq!(from_input, vec![false, true]);
    assert_eq!(fr.buffered(), 0);
    assert!(fr.buf.capacity() <= 65542, "bounded: {}", fr.buf.capacity());
}

#[test]
fn space_packets_resynchronize_after_garbage() {
    let a = space_packet(0x100, 1, b"first");
    let b = space_packet(0x100, 2, b"second");
    // 0xE0.. has version bits 111: not a packet; each garbage byte is dropped.
    let garbage = [0xE0, 0xFF, 0x20, 0x41];
    let stream = [a.clone(), garbage.to_vec(), b.clone()].concat();
    let (units, stats) = assert_split_independent(&sp(), &stream);
    assert_eq!(units, vec![a, b]);
    assert_eq!(stats.framing_errors, 1, "one run of garbage, one error");
    assert_eq!(stats.bytes_discarded, 4);
}

#[test]
fn space_packets_over_max_length_are_skipped() {
    let f = framing(json!({"kind": "ccsds_space_packet", "max_length": 20}));
    let big = space_packet(0x10, 5, &[0x55; 30]);
    let ok = space_packet(0x10, 6, &[0x66; 10]);
    let stream = [big.clone(), ok.clone()].concat();
    let (units, stats) = assert_split_independent(&f, &stream);
    // The big packet's bytes are dropped one by one until the next good header.
    assert_eq!(units, vec![ok]);
    assert_eq!(stats.framing_errors, 1);
    assert_eq!(stats.bytes_discarded, big.len() as u64);
}

#[test]
fn reset_drops_a_partial_unit() {
    let a = space_packet(0x100, 1, b"hello");
    let mut fr = Framer::new(&sp());
    fr.push(&a[..8], &mut |_| panic!("incomplete"));
    fr.reset();
    assert_eq!(fr.buffered(), 0);
    let mut units = Vec::new();
    fr.push(&a, &mut |u| units.push(u.data.to_vec()));
    assert_eq!(units, vec![a]);
    assert_eq!(
        fr.stats(),
        FramingStats {
            units: 1,
            framing_errors: 0,
            bytes_discarded: 8
        }
    );
}

// --- TM frames --------------------------------------------------------

fn tm(len: usize, keep: bool) -> Framing {
    framing(json!({"kind": "ccsds_tm_frame", "length": len, "keep_sync": keep}))
}

#[test]
fn tm_frames_after_the_asm() {
    let f1 = tm_frame(42, 3, 0, 0, 0, &[1; 20], true);
    let f2 = tm_frame(42, 3, 1, 1, 0, &ASM.repeat(5), true); // the ASM inside data
    let stream = [f1.clone(), f2.clone()].concat();
    let (units, stats) = assert_split_independent(&tm(28, false), &stream);
    assert_eq!(units, vec![f1[4..].to_vec(), f2[4..].to_vec()]);
    assert!(units.iter().all(|u| fecf_ok(u)));
    assert_eq!(stats.framing_errors, 0);
    let (units, _) = run(&tm(28, true), &[&stream]);
    assert_eq!(data_of(&units), vec![f1, f2]);
}

#[test]
fn tm_frames_skip_to_the_next_asm() {
    let f1 = tm_frame(1, 0, 0, 0, 0, &[9; 10], true);
    let f2 = tm_frame(1, 0, 1, 1, 0, &[8; 10], true);
    // Garbage with a partial ASM in it, and a frame missing its ASM.
    let mut stream = b"\x00\x1A\xCF\x11junk".to_vec();
    stream.extend_from_slice(&f1);
    stream.extend_from_slice(&f1[4..]); // no ASM: not where expected
    stream.extend_from_slice(&f2);
    let (units, stats) = assert_split_independent(&tm(18, false), &stream);
    assert_eq!(units, vec![f1[4..].to_vec(), f2[4..].to_vec()]);
    assert_eq!(stats.framing_errors, 2);
    assert_eq!(stats.bytes_discarded, 8 + 18);
}

#[test]
fn tm_frames_in_datagrams() {
    let f1 = tm_frame(1, 0, 0, 0, 0, &[9; 10], true);
    let mut fr = Framer::new(&tm(18, false));
    let mut units = Vec::new();
    let two = [f1.clone(), f1.clone()].concat();
    fr.units_in_datagram(&two, &mut |u| units.push(u.data.to_vec()));
    assert_eq!(units.len(), 2);
    // A frame cut short by the datagram's end is not continued by the next.
    fr.units_in_datagram(&f1[..10], &mut |_| panic!("incomplete"));
    fr.units_in_datagram(&f1[10..], &mut |_| panic!("no ASM"));
    assert_eq!(
        fr.stats(),
        FramingStats {
            units: 2,
            framing_errors: 2,
            bytes_discarded: f1.len() as u64
        }
    );
    assert_eq!(fr.buffered(), 0);
}

// --- fixed --------------------------------------------------------------

#[test]
fn fixed_units_without_sync() {
    let f = framing(json!({"kind": "fixed", "length": 3}));
    let (units, stats) = assert_split_independent(&f, b"abcdefgh");
    assert_eq!(units, vec![b"abc".to_vec(), b"def".to_vec()]);
    assert_eq!(stats.units, 2);
    let mut fr = Framer::new(&f);
    fr.push(b"gh", &mut |_| {});
    fr.reset();
    assert_eq!(fr.stats().bytes_discarded, 2);
}

#[test]
fn fixed_units_with_sync_and_garbage() {
    let f = framing(json!({"kind": "fixed", "length": 4, "sync": "FAF320"}));
    let mut stream = Vec::new();
    stream.extend_from_slice(b"\xFA\xF3\x20abcd");
    stream.extend_from_slice(b"\xFA\xFAxx"); // garbage with sync-like bytes
    stream.extend_from_slice(b"\xFA\xF3\x20\xFA\xF3\x20\xFA"); // the sync inside data
    stream.extend_from_slice(b"\xFA\xF3\x20efgh");
    stream.extend_from_slice(b"\xFA\xF3"); // a partial sync left at the end
    let (units, stats) = assert_split_independent(&f, &stream);
    assert_eq!(
        units,
        vec![
            b"abcd".to_vec(),
            b"\xFA\xF3\x20\xFA".to_vec(),
            b"efgh".to_vec()
        ]
    );
    assert_eq!(stats.framing_errors, 1);
    assert_eq!(stats.bytes_discarded, 4);
    let keep = framing(json!({"kind": "fixed", "length": 4, "sync": "FAF320", "keep_sync": true}));
    let (units, _) = run(&keep, &[&stream]);
    assert_eq!(units[0].0, b"\xFA\xF3\x20abcd");
}

// --- length field -------------------------------------------------------

#[test]
fn length_field_big_and_little_endian() {
    // A 2-byte length at offset 1 counting the bytes after it: total = v + 3.
    let f = framing(json!({"kind": "length", "offset": 1, "size": 2, "adjustment": 3}));
    let u1 = b"T\x00\x02hi".to_vec();
    let u2 = b"T\x00\x00".to_vec(); // total 3 = offset + size: allowed
    let (units, _) = assert_split_independent(&f, &[u1.clone(), u2.clone()].concat());
    assert_eq!(units, vec![u1, u2]);
    let le = framing(json!({"kind": "length", "size": 4, "endian": "little"}));
    let u = [6u8, 0, 0, 0, b'o', b'k'];
    let (units, _) = assert_split_independent(&le, &[u, u].concat());
    assert_eq!(units, vec![u.to_vec(), u.to_vec()]);
    // Negative adjustment: the field counts 10 more than the unit.
    let neg = framing(json!({"kind": "length", "size": 1, "adjustment": -10}));
    let (units, _) = run(&neg, &[&[13, 1, 2]]);
    assert_eq!(data_of(&units), vec![vec![13, 1, 2]]);
}

#[test]
fn length_field_out_of_bounds_resynchronizes() {
    let f = framing(json!({"kind": "length", "size": 1, "max_length": 5}));
    // 0 (< 1 and < offset + size), 9 (> max_length): each byte dropped.
    let stream = [0u8, 9, 9, 3, b'a', b'b', 2, b'c'];
    let (units, stats) = assert_split_independent(&f, &stream);
    assert_eq!(units, vec![vec![3, b'a', b'b'], vec![2, b'c']]);
    assert_eq!(stats.framing_errors, 1);
    assert_eq!(stats.bytes_discarded, 3);
    let neg = framing(json!({"kind": "length", "size": 1, "adjustment": -5}));
    let (units, stats) = run(&neg, &[&[3, 6, 1]]);
    assert_eq!(data_of(&units), vec![vec![6]]);
    assert_eq!(stats.bytes_discarded, 2, "3 - 5 and 1 - 5 are below 1");
}

#[test]
fn length_field_after_sync() {
    // EB90, then a 2-byte length (offset 0) + 2 = the unit without the sync.
    let f = framing(
        json!({"kind": "length", "offset": 0, "size": 2, "endian": "big",
        "adjustment": 2, "max_length": 100, "sync": "EB90"}),
    );
    let u1 = b"\xEB\x90\x00\x03abc".to_vec();
    let bad = b"\xEB\x90\xFF\xFFxyz".to_vec(); // 65537 > max_length
    let u2 = b"\xEB\x90\x00\x00".to_vec();
    let stream = [b"zz".to_vec(), u1.clone(), bad, u2.clone()].concat();
    let (units, stats) = assert_split_independent(&f, &stream);
    assert_eq!(units, vec![u1[2..].to_vec(), u2[2..].to_vec()]);
    assert_eq!(stats.framing_errors, 2);
    assert_eq!(stats.bytes_discarded, 2 + 7);
}

#[test]
fn partial_unit_buffer_is_bounded() {
    let f = framing(json!({"kind": "length", "size": 2, "max_length": 1000, "sync": "EB90"}));
    let mut fr = Framer::new(&f);
    let mut unit = b"\xEB\x90\x03\xE8".to_vec();
    unit.resize(1002, 7);
    for c in unit.chunks(10) {
        fr.push(c, &mut |u| assert_eq!(u.data.len(), 1000));
        assert!(fr.buffered() <= 1002);
    }
    assert_eq!(fr.stats().units, 1);
    assert!(fr.buf.capacity() <= 1002);
}

// --- KISS ----------------------------------------------------------------

fn kiss() -> Framing {
    framing(json!({"kind": "kiss"}))
}

#[test]
fn kiss_frames_unescaped_with_ports() {
    let a = kiss_frame(0, b"plain");
    let b = kiss_frame(3, &[FEND, FESC, TFEND, TFESC, 1]);
    let stream = [a.clone(), vec![FEND, FEND], b.clone()].concat();
    let (units, stats) = assert_split_independent(&kiss(), &stream);
    assert_eq!(
        units,
        vec![b"plain".to_vec(), vec![FEND, FESC, TFEND, TFESC, 1]]
    );
    assert_eq!(
        stats,
        FramingStats {
            units: 2,
            framing_errors: 0,
            bytes_discarded: 0
        }
    );
    let (units, _) = run(&kiss(), &[&stream]);
    assert_eq!(
        units.iter().map(|u| u.1).collect::<Vec<_>>(),
        vec![Some(0), Some(3)]
    );
    // Frames sharing one FEND.
    let shared = [&a[..a.len() - 1], &b[..]].concat();
    assert_eq!(run(&kiss(), &[&shared]).0.len(), 2);
}

#[test]
fn kiss_bad_frames_are_skipped() {
    let good = kiss_frame(0, b"ok");
    let mut stream = b"noise".to_vec(); // before the first FEND
    stream.extend_from_slice(&good);
    stream.extend_from_slice(&[FEND, 0x00, b'a', FESC, b'x', b'b', FEND]); // bad escape
    stream.extend_from_slice(&[FEND, 0x00, b'a', FESC, FEND]); // dangling escape
    stream.extend_from_slice(&[FEND, 0x01, 50, FEND]); // TX delay: not data
    stream.extend_from_slice(&[FEND, 0x00, FEND]); // empty data frame
    stream.extend_from_slice(&good);
    let (units, stats) = assert_split_independent(&kiss(), &stream);
    assert_eq!(units, vec![b"ok".to_vec(), b"ok".to_vec()]);
    assert_eq!(stats.framing_errors, 3);
    assert_eq!(stats.bytes_discarded, 5 + 5 + 3 + 2 + 1);
}

#[test]
fn kiss_frames_over_max_length_are_errors() {
    let f = framing(json!({"kind": "kiss", "max_length": 4}));
    let stream = [kiss_frame(0, b"12345"), kiss_frame(0, b"1234")].concat();
    let (units, stats) = assert_split_independent(&f, &stream);
    assert_eq!(units, vec![b"1234".to_vec()]);
    assert_eq!(stats.framing_errors, 1);
    assert_eq!(stats.bytes_discarded, 6);
    let mut fr = Framer::new(&f);
    for b in &stream {
        fr.push(&[*b], &mut |_| {});
    }
    assert!(
        fr.kiss.buf.capacity() <= 5,
        "bounded: {}",
        fr.kiss.buf.capacity()
    );
}

#[test]
fn kiss_reset_and_datagrams() {
    let a = kiss_frame(0, b"abc");
    let mut fr = Framer::new(&kiss());
    fr.push(&a[..3], &mut |_| panic!("incomplete"));
    assert_eq!(fr.buffered(), 2);
    // A datagram meanwhile leaves the stream's frame alone.
    let mut n = 0;
    fr.units_in_datagram(&a, &mut |u| {
        assert_eq!(u.data, b"abc");
        n += 1
    });
    fr.units_in_datagram(&a[..4], &mut |_| panic!("unterminated"));
    assert_eq!(n, 1);
    assert_eq!(fr.buffered(), 2);
    fr.reset();
    fr.push(&a, &mut |_| n += 1);
    assert_eq!(n, 2);
    assert_eq!(
        fr.stats(),
        FramingStats {
            units: 2,
            framing_errors: 1,
            bytes_discarded: 3 + 2
        }
    );
}

// --- damage shows while it happens ------------------------------------

/// Every kind with a small bound, a good unit of it, and the start of a unit
/// that can never be one (announced or growing past the bound), which more
/// bytes `b` then follow; the most a framer may hold for it.
fn damaged(kind: usize, b: &[u8]) -> (Framing, Vec<u8>, Vec<u8>, usize) {
    let good = b"unit data".as_slice();
    match kind {
        0 => (
            framing(json!({"kind": "ccsds_space_packet", "max_length": 64})),
            space_packet(0x10, 1, good),
            // Announces 65536 + 7 bytes; then bytes that start no packet.
            [
                &space_packet(0x10, 2, &[0; 64])[..4],
                &[0xFF, 0xFF],
                &b.iter().map(|&x| x | 0xE0).collect::<Vec<_>>()[..],
            ]
            .concat(),
            64,
        ),
        1 => (
            framing(json!({"kind": "ccsds_tm_frame", "length": 32})),
            tm_frame(42, 1, 0, 0, 0, &[7; 24], true),
            // No ASM anywhere.
            b.iter().map(|&x| x & 0x0F).collect(),
            32 + 4,
        ),
        2 => (
            framing(json!({"kind": "fixed", "length": 16, "sync": "FAF320"})),
            [&[0xFA, 0xF3, 0x20][..], &[1; 16]].concat(),
            b.iter().map(|&x| x & 0x0F).collect(),
            16 + 3,
        ),
        3 => (
            framing(json!({"kind": "length", "size": 2, "max_length": 64, "sync": "EB90"})),
            [&[0xEB, 0x90, 0, 11][..], good].concat(),
            [
                &[0xEB, 0x90, 0x40, 0][..],
                &b.iter().map(|&x| x & 0x7F).collect::<Vec<_>>(),
            ]
            .concat(),
            64 + 2,
        ),
        _ => (
            framing(json!({"kind": "kiss", "max_length": 64})),
            kiss_frame(0, good),
            // A frame that never ends.
            [
                &[FEND, 0x00][..],
                &b.iter().map(|&x| x & 0x7F).collect::<Vec<_>>(),
            ]
            .concat(),
            2 * 65,
        ),
    }
}

proptest::proptest! {
    /// A unit that cannot be one is a framing error as soon as it shows,
    /// while the stream goes on (no reset, no end), and is never held past
    /// the bound: in every framing mode, however the stream is cut.
    #[test]
    fn a_unit_past_its_bound_is_an_error_at_once(
        kind in 0..5usize,
        tail in proptest::collection::vec(proptest::prelude::any::<u8>(), 200..3000),
        cuts in proptest::collection::vec(1..400usize, 1..20),
    ) {
        let (f, good, bad, bound) = damaged(kind, &tail);
        let stream = [good.clone(), bad].concat();
        let mut fr = Framer::new(&f);
        let mut units = 0;
        let mut at = 0;
        for c in cuts.iter().cycle() {
            if at == stream.len() {
                break;
            }
            let end = (at + c).min(stream.len());
            fr.push(&stream[at..end], &mut |_| units += 1);
            at = end;
            proptest::prop_assert!(fr.buffered() <= bound, "holds {} > {bound}", fr.buffered());
            if at > good.len() + bound {
                proptest::prop_assert!(fr.stats().framing_errors >= 1, "no error after {at} bytes");
            }
        }
        proptest::prop_assert_eq!(units, 1, "the good unit, and no other");
        let st = fr.stats();
        proptest::prop_assert!(st.framing_errors >= 1);
        proptest::prop_assert!(
            st.bytes_discarded + fr.buffered() as u64 >= (stream.len() - good.len() - bound) as u64,
            "discarded as it comes: {st:?}"
        );
    }
}

// --- headers and CRC ----------------------------------------------------

#[test]
fn crc_check_value_and_fecf() {
    assert_eq!(crc16_ccitt(b"123456789"), 0x29B1);
    assert_eq!(crc16_ccitt(b""), 0xFFFF);
    let f = tm_frame(42, 3, 7, 9, 0, b"payload", false);
    assert!(fecf_ok(&f));
    let mut bad = f.clone();
    bad[8] ^= 1;
    assert!(!fecf_ok(&bad));
    assert!(
        !fecf_ok(&[0xFF, 0xFF]),
        "too short to hold data and an FECF"
    );
    assert!(!fecf_ok(&[]));
}

#[test]
fn header_fields() {
    let p = space_packet(0x123, 0x3ABC, b"x");
    let h = SpacePacketHeader::parse(&p).unwrap();
    assert_eq!(
        (h.version, h.apid, h.sequence_count, h.sequence_flags),
        (0, 0x123, 0x3ABC, 3)
    );
    assert_eq!(h.total_len(), p.len());
    assert!(!h.is_idle());
    assert!(SpacePacketHeader::parse(&p[..5]).is_none());
    let f = tm_frame(0x3FF, 7, 200, 100, OID_FIRST_HEADER_POINTER, b"", false);
    let h = TmFrameHeader::parse(&f).unwrap();
    assert_eq!(
        (h.version, h.scid, h.vcid, h.mc_count, h.vc_count),
        (0, 0x3FF, 7, 200, 100)
    );
    assert!(h.is_idle());
    assert!(TmFrameHeader::parse(&f[..5]).is_none());
}
