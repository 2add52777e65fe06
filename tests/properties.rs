//! Property tests of the pure parsers: no panic on arbitrary input, and round
//! trips where they exist (the fuzz targets in tests/fuzz go deeper, for longer).

use bsc::config::{Config, HandlerSpec, Origin};
use bsc::http::form;
use bsc::http::request::{parse, Parsed};
use bsc::pattern::Pattern;
use bsc::rotation::{RotationRule, RotationUnit};
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
