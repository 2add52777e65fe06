//! Property tests of the pure parsers: no panic on arbitrary input, and round
//! trips where they exist (the fuzz targets in tests/fuzz go deeper, for longer).

use bsc::config::{Config, HandlerSpec, Origin};
use bsc::control::http::form;
use bsc::control::http::request::{parse, Parsed};
use bsc::files::pattern::Pattern;
use bsc::files::rotation::{RotationRule, RotationUnit};
use proptest::prelude::*;

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, .. ProptestConfig::default() })]

    #[test]
    fn request_framing_never_panics_and_never_overreads(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        if let Parsed::Complete(_, used) = parse(&bytes) {
            prop_assert!(used <= bytes.len());
        }
    }

    #[test]
    fn well_formed_requests_round_trip(
        method in "(GET|POST|DELETE|PUT)",
        segments in proptest::collection::vec("[a-zA-Z0-9 ./_-]{1,12}", 1..4),
        query in "[a-z0-9=&]{0,20}",
        body in proptest::collection::vec(any::<u8>(), 0..300),
        header_value in "[ -~]{0,40}",
    ) {
        let path: String = segments.iter().map(|s| format!("/{}", percent_encode(s))).collect();
        let target = if query.is_empty() { path.clone() } else { format!("{path}?{query}") };
        let mut req = format!("{method} {target} HTTP/1.1\r\nX-Any: {}\r\nContent-Length: {}\r\n\r\n", header_value.trim(), body.len()).into_bytes();
        req.extend_from_slice(&body);
        let whole = req.len();
        req.extend_from_slice(b"GET / HTTP/1.1\r\n\r\n"); // a pipelined follower
        match parse(&req) {
            Parsed::Complete(r, used) => {
                prop_assert_eq!(used, whole);
                prop_assert_eq!(&r.method, &method);
                prop_assert_eq!(r.segments(), segments);
                prop_assert_eq!(&r.query, &query);
                prop_assert_eq!(r.body, body);
            }
            other => prop_assert!(false, "{:?}", other),
        }
    }

    #[test]
    fn urlencoded_round_trips(fields in proptest::collection::btree_map("[^\u{0}]{1,10}", "[^\u{0}]{0,20}", 0..6)) {
        let body: Vec<String> = fields.iter().map(|(k, v)| format!("{}={}", percent_encode(k), percent_encode(v))).collect();
        let decoded = form::decode(Some("application/x-www-form-urlencoded"), body.join("&").as_bytes()).unwrap();
        prop_assert_eq!(decoded.len(), fields.len());
        for (k, v) in &fields {
            prop_assert_eq!(decoded.get(k).and_then(|x| x.as_str()), Some(v.as_str()));
        }
    }

    #[test]
    fn multipart_round_trips(fields in proptest::collection::btree_map("[a-z_]{1,10}", "[a-zA-Z0-9 \n.:/-]{0,40}", 1..6), lf_only in any::<bool>()) {
        let boundary = "------------------------bscPROPTEST0042";
        let eol = if lf_only { "\n" } else { "\r\n" };
        let mut body = String::new();
        for (k, v) in &fields {
            body.push_str(&format!("--{boundary}{eol}Content-Disposition: form-data; name=\"{k}\"{eol}{eol}{v}{eol}"));
        }
        body.push_str(&format!("--{boundary}--{eol}"));
        let decoded = form::decode(Some(&format!("multipart/form-data; boundary={boundary}")), body.as_bytes()).unwrap();
        for (k, v) in &fields {
            prop_assert_eq!(decoded.get(k).and_then(|x| x.as_str()), Some(v.as_str()));
        }
    }

    #[test]
    fn decoders_never_panic(ct in "[ -~]{0,60}", body in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = form::decode(Some(&ct), &body);
        let _ = form::decode(None, &body);
    }

    #[test]
    fn patterns_never_panic_and_literals_survive(text in "[ -~]{0,40}", secs in 0i64..253_402_300_799) {
        let t = time::OffsetDateTime::from_unix_timestamp(secs).unwrap();
        if let Ok(p) = Pattern::parse(&text) {
            let out = p.render(t, |_, _| Some("v".to_string())).unwrap();
            if !text.contains(['%', '{', '}']) {
                prop_assert_eq!(out, text);
            }
        }
    }

    #[test]
    fn config_validation_never_panics(json in "[ -~]{0,200}") {
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(&json) {
            if let Err(e) = Config::from_value(&v) {
                prop_assert!(!e.contains('\n'));
            }
            if let Some(obj) = v.as_object() {
                let _ = HandlerSpec::from_json(obj, Origin::Api);
            }
        }
    }

    #[test]
    fn next_rotation_is_the_first_due_instant(opened in 0i64..4_102_444_800, unit in 0usize..6, delta in 1u32..40, probe in 0f64..1.0) {
        let unit: RotationUnit = ["year", "month", "day", "hour", "minute", "second"][unit].parse().unwrap();
        let rule = RotationRule { unit, delta };
        let opened = time::OffsetDateTime::from_unix_timestamp(opened).unwrap();
        let next = rule.next_rotation(opened);
        prop_assert!(next > opened);
        prop_assert!(rule.is_due(opened, next));
        let span = (next - opened).whole_seconds();
        let before = opened + time::Duration::seconds((span as f64 * probe) as i64);
        if before < next {
            prop_assert!(!rule.is_due(opened, before));
        }
    }
}

// ---------------------------------------------------------------------------
// Telemetry units: framing and sequence accounting (src/units/framing/, src/units/sequence.rs)

use bsc::units::framing::testgen;

use bsc::units::framing::{fecf_ok, Framer, Framing, FramingStats};
use bsc::units::sequence::{SequenceCheck, SequenceChecker};

const TM_DATA: usize = 24;
const FIXED_LEN: usize = 16;

/// Framing kinds under test, and how each wraps a payload into a unit on the wire
/// (returning the wire bytes and the unit the framer should hand out).
fn kind(i: usize) -> Framing {
    let v = match i {
        0 => serde_json::json!({"kind": "ccsds_space_packet"}),
        1 => serde_json::json!({"kind": "ccsds_tm_frame", "length": 6 + TM_DATA + 2}),
        2 => serde_json::json!({"kind": "fixed", "length": FIXED_LEN, "sync": "FAF320"}),
        3 => serde_json::json!({"kind": "fixed", "length": FIXED_LEN}),
        4 => {
            serde_json::json!({"kind": "length", "size": 2, "adjustment": 2, "max_length": 200, "sync": "EB90", "keep_sync": true})
        }
        5 => {
            serde_json::json!({"kind": "length", "offset": 1, "size": 3, "endian": "little", "adjustment": 4, "max_length": 200})
        }
        _ => serde_json::json!({"kind": "kiss"}),
    };
    Framing::from_json(&v).unwrap()
}
const KINDS: usize = 7;

fn wire_unit(kind: usize, n: usize, payload: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let mut p = payload.to_vec();
    match kind {
        0 => {
            let u =
                testgen::space_packet([0x10, 0x123, 0x7FE][n % 3], (16380 + n as u16) % 16384, &p);
            (u.clone(), u)
        }
        1 => {
            p.resize(TM_DATA, 0x1A);
            let f = testgen::tm_frame(42, (n % 8) as u8, n as u8, n as u8, 0, &p, true);
            (f.clone(), f[4..].to_vec())
        }
        2 | 3 => {
            p.resize(FIXED_LEN, 0xFA);
            let sync: &[u8] = if kind == 2 { &[0xFA, 0xF3, 0x20] } else { &[] };
            ([sync, &p].concat(), p)
        }
        4 => {
            let u = [&[0xEB, 0x90][..], &(p.len() as u16).to_be_bytes(), &p].concat();
            (u.clone(), u)
        }
        5 => {
            let len = (p.len() as u32).to_le_bytes();
            let u = [&[0x55][..], &len[..3], &p].concat();
            (u.clone(), u)
        }
        _ => (testgen::kiss_frame((n % 16) as u8, &p), p),
    }
}

fn frame_chunks(f: &Framing, chunks: &[&[u8]]) -> (Vec<Vec<u8>>, FramingStats) {
    let mut framer = Framer::new(f);
    let mut out = Vec::new();
    for c in chunks {
        framer.push(c, &mut |u| out.push(u.data.to_vec()));
    }
    (out, framer.stats())
}

fn cut<'a>(stream: &'a [u8], cuts: &[usize]) -> Vec<&'a [u8]> {
    let mut at: Vec<usize> = cuts.iter().map(|c| c % (stream.len() + 1)).collect();
    at.sort_unstable();
    let mut chunks = Vec::new();
    let mut prev = 0;
    for a in at {
        chunks.push(&stream[prev..a]);
        prev = a;
    }
    chunks.push(&stream[prev..]);
    chunks
}

/// A count sequence with drops and duplicates, and what a checker must report.
struct Model {
    counts: Vec<u16>,
    gaps: u64,
    missing: u64,
    duplicates: u64,
}

fn model(start: u32, range: u32, fate: &[u8]) -> Model {
    // fate per unit: 0 = dropped, 1 = kept, 2 = kept twice.
    let mut m = Model {
        counts: Vec::new(),
        gaps: 0,
        missing: 0,
        duplicates: 0,
    };
    let (mut seen, mut run) = (false, 0u64);
    for (i, &f) in fate.iter().enumerate() {
        let count = ((start + i as u32) % range) as u16;
        if f == 0 {
            run += 1;
            continue;
        }
        if seen && run > 0 {
            m.gaps += 1;
            m.missing += run;
        }
        seen = true;
        run = 0;
        m.counts.push(count);
        if f == 2 {
            m.counts.push(count);
            m.duplicates += 1;
        }
    }
    m
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, .. ProptestConfig::default() })]

    #[test]
    fn every_split_of_a_stream_yields_the_same_units(
        k in 0..KINDS,
        payloads in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 1..40), 0..10),
        garbage in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..12), 10),
        dirty in any::<bool>(),
        cuts in proptest::collection::vec(any::<usize>(), 0..12),
    ) {
        let f = kind(k);
        let mut stream = Vec::new();
        let mut expected = Vec::new();
        for (n, p) in payloads.iter().enumerate() {
            if dirty {
                stream.extend_from_slice(&garbage[n]);
            }
            let (wire, unit) = wire_unit(k, n, p);
            stream.extend_from_slice(&wire);
            expected.push(unit);
        }
        let (whole, stats) = frame_chunks(&f, &[&stream]);
        if !dirty {
            prop_assert_eq!(&whole, &expected);
            prop_assert_eq!(stats, FramingStats { units: expected.len() as u64, framing_errors: 0, bytes_discarded: 0 });
            if k == 1 {
                prop_assert!(whole.iter().all(|u| fecf_ok(u)));
            }
            // The same stream as one datagram gives the same units.
            let mut framer = Framer::new(&f);
            let mut from_datagram = Vec::new();
            framer.units_in_datagram(&stream, &mut |u| from_datagram.push(u.data.to_vec()));
            prop_assert_eq!(&from_datagram, &expected);
        }
        let chunks = cut(&stream, &cuts);
        let (split, split_stats) = frame_chunks(&f, &chunks);
        prop_assert_eq!(split, whole);
        prop_assert_eq!(split_stats, stats);
        // A reconnect drops the partial unit and counts its bytes as discarded.
        let mut framer = Framer::new(&f);
        for c in &chunks {
            framer.push(c, &mut |_| {});
        }
        let (held, discarded) = (framer.buffered() as u64, framer.stats().bytes_discarded);
        prop_assert!(held + discarded <= stream.len() as u64);
        framer.reset();
        prop_assert_eq!((framer.buffered(), framer.stats().bytes_discarded), (0, discarded + held));
    }

    #[test]
    fn framers_never_panic_on_arbitrary_bytes(k in 0..KINDS, bytes in proptest::collection::vec(any::<u8>(), 0..600), cuts in proptest::collection::vec(any::<usize>(), 0..6)) {
        let f = kind(k);
        let (whole, stats) = frame_chunks(&f, &[&bytes]);
        let (split, split_stats) = frame_chunks(&f, &cut(&bytes, &cuts));
        prop_assert_eq!(split, whole);
        prop_assert_eq!(split_stats, stats);
        prop_assert!(stats.bytes_discarded <= bytes.len() as u64);
    }

    #[test]
    fn space_packet_sequence_counts_match_a_model(
        streams in proptest::collection::vec((0u16..0x7FF, 0u32..16384, proptest::collection::vec(prop_oneof![1 => Just(0u8), 6 => Just(1u8), 1 => Just(2u8)], 1..300)), 1..5),
        order in proptest::collection::vec(any::<u8>(), 0..2000),
    ) {
        let mut apids: Vec<u16> = streams.iter().map(|s| s.0).collect();
        apids.sort_unstable();
        apids.dedup();
        prop_assume!(apids.len() == streams.len());
        let models: Vec<Model> = streams.iter().map(|(_, start, fate)| model(*start, 16384, fate)).collect();
        // Interleave the streams in a random order, each in its own order.
        let mut next = vec![0usize; streams.len()];
        let mut checker = SequenceChecker::new(SequenceCheck::SpacePacket { offset: 0 });
        let mut o = order.iter().cycle();
        loop {
            let open: Vec<usize> = (0..streams.len()).filter(|&i| next[i] < models[i].counts.len()).collect();
            if open.is_empty() { break; }
            let i = open[*o.next().unwrap_or(&0) as usize % open.len()];
            checker.check(&testgen::space_packet(streams[i].0, models[i].counts[next[i]], b"x"));
            next[i] += 1;
        }
        let r = checker.report();
        prop_assert_eq!(r.totals.gaps, models.iter().map(|m| m.gaps).sum::<u64>());
        prop_assert_eq!(r.totals.missing, models.iter().map(|m| m.missing).sum::<u64>());
        prop_assert_eq!(r.totals.duplicates, models.iter().map(|m| m.duplicates).sum::<u64>());
        prop_assert_eq!(r.totals.resets, 0);
        let tracked = models.iter().filter(|m| !m.counts.is_empty()).count();
        prop_assert_eq!(r.streams.len(), tracked);
        for ((apid, _, _), m) in streams.iter().zip(&models) {
            if let Some(last) = m.counts.last() {
                let s = r.streams.iter().find(|s| s.id == format!("apid 0x{apid:03X}")).unwrap();
                prop_assert_eq!((s.gaps, s.missing, s.duplicates, s.last_count), (m.gaps, m.missing, m.duplicates, *last));
                prop_assert_eq!(s.units, m.counts.len() as u64);
            }
        }
    }

    #[test]
    fn tm_virtual_channel_counts_match_a_model(
        start in 0u32..256,
        before in proptest::collection::vec(prop_oneof![1 => Just(0u8), 5 => Just(1u8), 1 => Just(2u8)], 1..120),
        after in proptest::collection::vec(prop_oneof![1 => Just(0u8), 5 => Just(1u8), 1 => Just(2u8)], 0..120),
        jump in 129u32..256,
    ) {
        // One VC whose sender restarts once: `before`, then `after` counting on from
        // a count `jump` (> 128) past the last one sent. Drop runs stay below 128,
        // so each is a gap; the restart is one reset.
        let first = model(start, 256, &before);
        let restart = (start + before.len() as u32 - 1 + jump) % 256;
        let mut after = after;
        if let Some(f) = after.first_mut() {
            *f = (*f).max(1); // the restarted sender's first frame arrives
        }
        let second = model(restart, 256, &after);
        let mut checker = SequenceChecker::new(SequenceCheck::TmFrame { offset: 4 });
        let counts: Vec<u16> = first.counts.iter().chain(&second.counts).copied().collect();
        for (mc, &c) in counts.iter().enumerate() {
            checker.check(&testgen::tm_frame(9, 2, mc as u8, c as u8, 0, &[0; 4], true));
        }
        // The step into the restart is a reset only if something came before it
        // and the last frame before the restart arrived (else it may look like a gap).
        let last_arrived = before.last() != Some(&0);
        prop_assume!(last_arrived || first.counts.is_empty() || after.is_empty());
        let resets = u64::from(!first.counts.is_empty() && !after.is_empty());
        let t = checker.totals();
        prop_assert_eq!(
            (t.gaps, t.missing, t.duplicates, t.resets),
            (first.gaps + second.gaps, first.missing + second.missing, first.duplicates + second.duplicates, resets)
        );
        let r = checker.report();
        prop_assert_eq!(r.streams.len(), usize::from(!counts.is_empty()));
        if !counts.is_empty() {
            let m = &r.master_channels[0];
            prop_assert_eq!((m.gaps, m.resets, m.units), (0, 0, counts.len() as u64));
        }
    }
}
