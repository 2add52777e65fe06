//! One handler's keys read, refused, shown and rendered.

use super::*;
use serde_json::json;
use std::path::{Path, PathBuf};
use time::OffsetDateTime;

fn spec(v: Value) -> Result<HandlerSpec, FieldError> {
    HandlerSpec::from_json(v.as_object().unwrap(), Origin::ConfigFile)
}

fn api(v: Value) -> Result<HandlerSpec, FieldError> {
    HandlerSpec::from_json(v.as_object().unwrap(), Origin::Api)
}

#[test]
fn ship_keys_read_back_and_hostile_values_are_refused() {
    let base = json!({"name": "h", "conn_type": "udp", "address": ["127.0.0.1", 9000]});
    let with = |pairs: &[(&str, Value)]| {
        let mut o = base.clone();
        for (k, v) in pairs {
            o[*k] = v.clone();
        }
        o
    };
    let s = spec(with(&[("ship", json!(["/bin/up", "--to", "s3://b/"]))])).unwrap();
    assert_eq!(
        s.ship,
        Some(ShipSpec {
            argv: vec!["/bin/up".into(), "--to".into(), "s3://b/".into()],
            timeout_s: 300.0,
            retry_max_s: 600.0,
            delete_after: false,
        })
    );
    let s = spec(with(&[
        ("ship", json!(["up"])),
        ("ship_timeout_s", json!(30)),
        ("ship_retry_max_s", json!("2.5")),
        ("delete_after_ship", json!(true)),
    ]))
    .unwrap();
    let ship = s.ship.clone().unwrap();
    assert_eq!(
        (ship.timeout_s, ship.retry_max_s, ship.delete_after),
        (30.0, 2.5, true)
    );
    // What GET / shows reads back as the same handler.
    let back = spec(Value::Object(s.to_json())).unwrap();
    assert_eq!(back.ship, s.ship);
    assert_eq!(spec(base.clone()).unwrap().ship, None);
    let long: Vec<String> = (0..65).map(|i| format!("a{i}")).collect();
    for (pairs, want) in [
        (
            vec![("ship", json!([]))],
            "ship: must be a command as a list",
        ),
        (
            vec![("ship", json!(""))],
            "ship: must be a command as a list",
        ),
        (
            vec![("ship", json!("/bin/up"))],
            "ship: must be a command as a list",
        ),
        (
            vec![("ship", json!([""]))],
            "ship: every element must be a non-empty string",
        ),
        (
            vec![("ship", json!(["up", 3]))],
            "ship: every element must be a non-empty string",
        ),
        (
            vec![("ship", json!(["up", null]))],
            "ship: every element must be a non-empty string",
        ),
        (
            vec![("ship", json!(["up", ["x"]]))],
            "ship: every element must be a non-empty string",
        ),
        (
            vec![("ship", json!({"a": 1}))],
            "ship: must be a command as a list",
        ),
        (
            vec![("ship", json!(long))],
            "ship: must be a command as a list",
        ),
        (
            vec![("ship", json!(["up\nrm"]))],
            "ship: contains the control character",
        ),
        (
            vec![("ship", json!(["up\u{0}"]))],
            "ship: contains the control character",
        ),
        (
            vec![("ship", json!(["up"])), ("ship_timeout_s", json!(0))],
            "ship_timeout_s: must be a number of seconds from 1 to 86400",
        ),
        (
            vec![("ship", json!(["up"])), ("ship_timeout_s", json!(-5))],
            "ship_timeout_s: must be a number",
        ),
        (
            vec![("ship", json!(["up"])), ("ship_timeout_s", json!(1e300))],
            "ship_timeout_s: must be a number",
        ),
        (
            vec![("ship", json!(["up"])), ("ship_timeout_s", json!("nan"))],
            "ship_timeout_s: must be a number",
        ),
        (
            vec![("ship", json!(["up"])), ("ship_retry_max_s", json!(0))],
            "ship_retry_max_s: must be a number",
        ),
        (
            vec![
                ("ship", json!(["up"])),
                ("ship_retry_max_s", json!(18446744073709551615u64)),
            ],
            "ship_retry_max_s: must be a number",
        ),
        (
            vec![("ship", json!(["up"])), ("ship_retry_max_s", json!([1]))],
            "ship_retry_max_s: must be a number",
        ),
        (
            vec![
                ("ship", json!(["up"])),
                ("delete_after_ship", json!("yes please")),
            ],
            "delete_after_ship: must be true or false",
        ),
        (
            vec![("ship_timeout_s", json!(5))],
            "ship_timeout_s: only applies with ship",
        ),
        (
            vec![("delete_after_ship", json!(true))],
            "delete_after_ship: only applies with ship",
        ),
    ] {
        let e = spec(with(&pairs)).unwrap_err().to_string();
        assert!(e.starts_with(want), "{pairs:?}: {e}");
    }
    // Config file only: refused over the API, each key.
    for k in [
        "ship",
        "ship_timeout_s",
        "ship_retry_max_s",
        "delete_after_ship",
    ] {
        let v = if k == "ship" {
            json!(["/bin/true"])
        } else {
            json!(1)
        };
        let mut o = base.clone();
        o[k] = v;
        let e = api(o).unwrap_err().to_string();
        assert!(
            e.starts_with(&format!(
                "{k}: store and forward can only be configured in the config file"
            )),
            "{e}"
        );
    }
    // Typos of the new keys are typos, not metadata.
    for (typo, meant) in [
        ("shp", None),
        ("ship_timeout", Some("ship_timeout_s")),
        ("ship_retry_max", Some("ship_retry_max_s")),
        ("delete_afer_ship", Some("delete_after_ship")),
        ("hsip", Some("ship")),
    ] {
        assert_eq!(typos::suggestion(typo, &HANDLER_KEYS), meant, "{typo}");
    }
}

#[test]
fn telemetry_keys_read_back_and_errors_name_the_key() {
    let base = json!({"name": "h", "conn_type": "tcp", "address": ["127.0.0.1", 9000]});
    let with = |k: &str, v: Value| {
        let mut o = base.clone();
        o[k] = v;
        o
    };
    let s = spec(json!({
        "name": "h", "conn_type": "tcp", "address": ["127.0.0.1", 9000],
        "framing": {"kind": "ccsds_tm_frame", "length": 1115, "keep_sync": true},
        "sequence_check": {"kind": "ccsds_tm_frame", "offset": 4},
        "fecf": true, "drop_bad_frames": true,
        "pre_write_transforms": "strip:4, vcid:0,3, identity_transform",
    }))
    .unwrap();
    assert_eq!(
        s.framing,
        Framing::TmFrame {
            length: 1115,
            keep_sync: true
        }
    );
    assert_eq!(s.sequence_check, Some(SequenceCheck::TmFrame { offset: 4 }));
    assert!(s.fecf && s.drop_bad_frames);
    let forms: Vec<String> = s
        .pre_write_transforms
        .iter()
        .map(|t| t.to_string())
        .collect();
    assert_eq!(forms, ["strip:4", "vcid:0,3", "identity"]);
    assert_eq!(spec(Value::Object(s.to_json())).unwrap(), s);

    for (obj, key, says) in [
        (
            with("framing", json!({"kind": "ccsds_tm_frame"})),
            "framing.length",
            "required",
        ),
        (
            with("framing", json!({"kind": "fixed", "length": 0})),
            "framing.length",
            "",
        ),
        (with("framing", json!("hdlc")), "framing", "unknown framing"),
        (
            with("sequence_check", json!("tm")),
            "sequence_check.kind",
            "valid",
        ),
        (with("fecf", json!(true)), "fecf", "TM frames"),
        (
            with("drop_bad_frames", json!(true)),
            "drop_bad_frames",
            "fecf",
        ),
        (
            with("pre_write_transforms", json!(["rot13"])),
            "pre_write_transforms",
            "strip:N",
        ),
        (
            with("pre_write_transforms", json!("apid:0x800")),
            "pre_write_transforms",
            "0..2047",
        ),
    ] {
        let e = spec(obj.clone()).unwrap_err();
        assert_eq!(e.key, key, "{obj}: {e}");
        assert!(e.message.contains(says), "{obj}: {e}");
    }
    let mut eth = json!({"name": "h", "conn_type": "ethernet", "address": ["lo", 0]});
    eth["framing"] = json!("kiss");
    assert_eq!(spec(eth).unwrap_err().key, "framing");
    assert_eq!(
        typos::suggestion("sequence_chek", &HANDLER_KEYS),
        Some("sequence_check")
    );
}

#[test]
fn ait_defaults() {
    let s = spec(json!({"name": "h1", "conn_type": "udp", "address": ["", 8500]})).unwrap();
    assert_eq!(s.file_name_pattern.source(), DEFAULT_FILE_NAME_PATTERN);
    assert_eq!(
        s.rotation,
        Some(RotationRule {
            unit: RotationUnit::Day,
            delta: 1
        })
    );
    assert_eq!(s.path, None);
    assert!(s.pre_write_transforms.is_empty());
    assert_eq!(s.rcvbuf_bytes, DEFAULT_RCVBUF_BYTES);
    assert_eq!(s.address.python_repr(), "['', 8500]");
}

#[test]
fn metadata_is_kept_and_usable_in_patterns() {
    let s = spec(json!({"name": "tlm", "conn_type": "udp", "address": ["127.0.0.1", 8500],
        "path": "{mission}/%j", "file_name_pattern": "{name}-{pass}.pcap", "mission": "ait", "pass": 7,
        "rotate_log": "False"}))
    .unwrap();
    assert_eq!(
        s.metadata,
        vec![
            ("mission".to_string(), json!("ait")),
            ("pass".to_string(), json!(7))
        ]
    );
    assert_eq!(s.rotation, None);
    let t = time::Date::from_calendar_date(2026, time::Month::November, 28)
        .unwrap()
        .midnight()
        .assume_utc();
    assert_eq!(
        s.file_path(Path::new("/r"), t, 1).unwrap().full(),
        PathBuf::from("/r/ait/332/tlm-7.pcap")
    );
}

#[test]
fn each_bad_key_is_named() {
    let base = json!({"name": "h", "conn_type": "udp", "address": ["", 8500]});
    let with = |k: &str, v: Value| {
        let mut o = base.clone();
        o[k] = v;
        o
    };
    let cases = [
        (with("name", json!("a/b")), "name", "'/'"),
        (with("name", json!("a..b")), "name", ".."),
        (with("name", json!("x".repeat(65))), "name", "1 to 64"),
        (with("name", json!(5)), "name", "must be a string"),
        (with("conn_type", json!("bogus")), "conn_type", "not one of"),
        (with("address", json!(["", 70000])), "address", "0..65535"),
        (with("address", json!(["", 0])), "address", "port 0"),
        (with("address", json!(["", -1])), "address", "0..65535"),
        (with("address", json!("8500")), "address", "must be a list"),
        (with("address", json!(["a b", 1])), "address", "' '"),
        (
            with("rotate_log", json!("yes")),
            "rotate_log",
            "true or false",
        ),
        (
            with("rotate_log_index", json!("fortnight")),
            "rotate_log_index",
            "fortnight",
        ),
        (
            with("rotate_log_delta", json!(0)),
            "rotate_log_delta",
            "1 to",
        ),
        (
            with("pre_write_transforms", json!(["gzip"])),
            "pre_write_transforms",
            "unknown transform",
        ),
        (
            with("file_name_pattern", json!("%Q.pcap")),
            "file_name_pattern",
            "%Q",
        ),
        (
            with("file_name_pattern", json!("{satellite}.pcap")),
            "file_name_pattern",
            "{satellite}",
        ),
        (
            with("file_name_pattern", json!("../x.pcap")),
            "file_name_pattern",
            "..",
        ),
        (with("path", json!("{x}")), "path", "no key"),
        (with("log_dir", json!("/tmp")), "log_dir", "set by bsc"),
        (with("flags", json!([1])), "flags", "string or a number"),
        (with("rcvbuf_bytes", json!(12)), "rcvbuf_bytes", "4096"),
    ];
    for (v, key, needle) in cases {
        let e = spec(v.clone()).unwrap_err();
        assert_eq!(e.key, key, "{v}");
        assert!(e.message.contains(needle), "{v}: {e}");
    }
    let e = spec(json!({"conn_type": "udp", "address": ["", 1]})).unwrap_err();
    assert_eq!(
        (e.key.as_str(), e.message.as_str()),
        ("name", "is required")
    );
    let e = spec(json!({"name": "a", "conn_type": "udp", "address": ["", 1], "file_name_pattern": "{sat}.pcap", "sat": "../x"})).unwrap_err();
    assert_eq!(e.key, "sat");
}

#[test]
fn api_paths_are_confined() {
    let base =
        |k: &str, v: &str| json!({"name": "h", "conn_type": "udp", "address": ["", 8500], k: v});
    assert!(api(base("path", "sub/dir")).is_ok());
    assert!(api(base("path", "../escape"))
        .unwrap_err()
        .message
        .contains(".."));
    assert!(api(base("path", "/etc"))
        .unwrap_err()
        .message
        .contains("absolute"));
    assert!(api(base("file_name_pattern", "/etc/x.pcap"))
        .unwrap_err()
        .message
        .contains("absolute"));
    assert!(api(base("path", &"a".repeat(256)))
        .unwrap_err()
        .message
        .contains("255"));
    assert!(spec(base("path", "/data/bsc")).is_ok());
}

#[test]
fn rendered_paths_cannot_leave_their_base_whatever_the_metadata() {
    let t = OffsetDateTime::UNIX_EPOCH;
    let root = Path::new("/r");
    let with = |fields: Value| {
        let mut o = json!({"name": "h", "conn_type": "udp", "address": ["", 8500]});
        for (k, v) in fields.as_object().unwrap() {
            o[k] = v.clone();
        }
        api(o).unwrap()
    };
    let h = with(json!({"path": "{a}/tmp/esc", "a": "x"}));
    assert_eq!(
        h.file_path(root, t, 1).unwrap().full(),
        PathBuf::from("/r/x/tmp/esc/1970-01-01-00-00-00-h.pcap")
    );
    for (pattern_key, pattern, value) in [
        ("path", "{a}/tmp/esc", ""),
        ("path", ".{a}.", ""),
        ("path", "x/{a}", "."),
        ("file_name_pattern", "{a}", ""),
        ("file_name_pattern", ".{a}.", ""),
        ("file_name_pattern", "{a}{a}", &"y".repeat(200)),
        ("path", "{a}", ".bsc"),
    ] {
        let h = with(json!({pattern_key: pattern, "a": "x"}));
        let changed = h.with_metadata(json!({"a": value}).as_object().unwrap());
        let refused = match changed {
            Err(_) => true,
            Ok(h) => h.file_path(root, t, 1).is_err(),
        };
        assert!(refused, "{pattern_key}={pattern:?} with a={value:?}");
    }
    // Control characters and too many keys are refused in rotate too.
    assert!(h
        .with_metadata(json!({"a": "x\n<0>kernel"}).as_object().unwrap())
        .is_err());
    let many: Map<String, Value> = (0..64).map(|i| (format!("k{i}"), json!("v"))).collect();
    assert!(h
        .with_metadata(&many)
        .unwrap_err()
        .message
        .contains("at most 64"));
    // From the config file an absolute path keeps its literal folders as base.
    let c = spec(json!({"name": "h", "conn_type": "udp", "address": ["", 1], "path": "/data/{m}/%Y", "m": "vc0", "file_name_pattern": "f.pcap"})).unwrap();
    let p = c.file_path(root, t, 1).unwrap();
    assert_eq!(
        (p.base(), p.full()),
        (Path::new("/data"), PathBuf::from("/data/vc0/1970/f.pcap"))
    );
    let c = spec(json!({"name": "h", "conn_type": "udp", "address": ["", 1], "path": "/data/{m}", "m": "", "file_name_pattern": "f.pcap"})).unwrap();
    assert!(c.file_path(root, t, 1).is_err());
    assert!(spec(json!({"name": "h", "conn_type": "udp", "address": ["", 1], "file_name_pattern": "a\tb.pcap"})).is_err());
}

#[test]
fn numbers_from_forms() {
    let s = spec(json!({"name": "h", "conn_type": "udp", "address": ["", "8500"], "rotate_log_delta": "3", "pre_write_transforms": "identity, identity"})).unwrap();
    assert_eq!(s.address.port, 8500);
    assert_eq!(s.rotate_log_delta, 3);
    assert_eq!(s.pre_write_transforms.len(), 2);
}

#[test]
fn source_options_apply_to_their_conn_type_only() {
    let base = |ct: &str, host: &str, k: &str, v: Value| json!({"name": "h", "conn_type": ct, "address": [host, 7], k: v});
    let s = spec(base("tcp", "10.0.0.1", "connect_timeout_s", json!(2.5))).unwrap();
    assert_eq!(
        (s.connect_timeout, s.reconnect_max),
        (Duration::from_millis(2500), Duration::from_secs(30))
    );
    assert_eq!(
        spec(base("udp", "", "connect_timeout_s", json!(2)))
            .unwrap_err()
            .message,
        "only applies to tcp handlers, not udp"
    );
    assert_eq!(
        spec(base("ethernet", "eth0", "direction", json!("in")))
            .unwrap()
            .direction,
        Direction::In
    );
    assert!(spec(base("ethernet", "eth0", "direction", json!("out")))
        .unwrap_err()
        .message
        .contains("both, in"));
    assert!(spec(base("udp", "", "direction", json!("in"))).is_err());
    assert!(spec(base("udp", "239.1.2.3", "interface", json!("lo"))).is_ok());
    assert!(spec(base("udp", "127.0.0.1", "interface", json!("lo")))
        .unwrap_err()
        .message
        .contains("multicast"));
    assert!(
        spec(base("udp", "", "record_source", json!("True")))
            .unwrap()
            .record_source
    );
    assert_eq!(
        spec(base("udp", "", "timestamps", json!("read")))
            .unwrap()
            .timestamps,
        Timestamps::Read
    );
    assert_eq!(
        spec(base("ethernet", "eth0", "timestamps", json!(null)))
            .unwrap()
            .timestamps,
        Timestamps::Kernel
    );
    assert!(spec(base("tcp", "h", "timestamps", json!("kernel"))).is_err());
    // timestamp_precision: every kind of source, `us` by default.
    for (kind, host) in [("udp", ""), ("tcp", "h"), ("ethernet", "eth0")] {
        let ns = spec(base(kind, host, "timestamp_precision", json!("ns"))).unwrap();
        assert_eq!(ns.timestamp_precision, Precision::Nano);
        assert_eq!(ns.to_json()["timestamp_precision"], json!("ns"));
        let us = spec(base(kind, host, "timestamp_precision", json!(null))).unwrap();
        assert_eq!(us.timestamp_precision, Precision::Micro);
        assert_eq!(us.to_json()["timestamp_precision"], json!("us"));
    }
    let e = spec(base("udp", "", "timestamp_precision", json!("ms"))).unwrap_err();
    assert!(e.message.contains("us, ns"), "{}", e.message);
    assert!(spec(base("tcp", "10.0.0.1", "reconnect_max_s", json!(0.1)))
        .unwrap_err()
        .message
        .contains("0.5"));
}

#[test]
fn to_json_round_trips() {
    for v in [
        json!({"name": "a", "conn_type": "udp", "address": ["127.0.0.1", 9], "path": "x/%j", "file_name_pattern": "{name}-{seq:6}.pcap",
               "rotate_log": false, "rotate_log_index": "hours", "rotate_max_bytes": "1MB", "max_files": 3, "max_age": "2d",
               "record_source": true, "timestamps": "read", "fsync_interval_s": 0, "pass": 7, "sat": "aqua"}),
        json!({"name": "b", "conn_type": "tcp", "address": ["10.0.0.1", 7000], "connect_timeout_s": 1.5, "reconnect_max_s": 10}),
        json!({"name": "c", "conn_type": "ethernet", "address": ["eth1", 0x88b5], "direction": "in", "max_bytes": "1GiB"}),
    ] {
        let a = spec(v).unwrap();
        let b = HandlerSpec::from_json(&a.to_json(), Origin::ConfigFile).unwrap();
        assert_eq!(a, b);
    }
}

#[test]
fn size_limits_and_seq_widths() {
    let s = spec(json!({"name": "h", "conn_type": "udp", "address": ["", 1], "rotate_max_bytes": "1MiB", "rotate_max_packets": 1000, "file_name_pattern": "{name}-{seq:6}.pcap"})).unwrap();
    assert_eq!(
        (s.rotate_max_bytes, s.rotate_max_packets),
        (Some(1 << 20), Some(1000))
    );
    let t = time::Date::from_calendar_date(2026, time::Month::November, 28)
        .unwrap()
        .midnight()
        .assume_utc();
    assert_eq!(
        s.file_path(Path::new("/r"), t, 12).unwrap().full(),
        PathBuf::from("/r/h-000012.pcap")
    );
    let e =
        spec(json!({"name": "h", "conn_type": "udp", "address": ["", 1], "rotate_max_packets": 0}))
            .unwrap_err();
    assert_eq!(e.key, "rotate_max_packets");
    let e = spec(json!({"name": "h", "conn_type": "udp", "address": ["", 1], "file_name_pattern": "{name:3}.pcap"})).unwrap_err();
    assert!(e.message.contains("only {seq} takes a width"), "{e}");
    let e =
        spec(json!({"name": "h", "conn_type": "udp", "address": ["", 1], "seq": 5})).unwrap_err();
    assert_eq!(e.key, "seq");
}

#[test]
fn api_fields_become_a_handler_and_their_errors_name_the_field_sent() {
    let start = |fields: Value| {
        HandlerSpec::from_api_fields("h", fields.as_object().unwrap().clone())
            .map_err(|e| e.to_string())
    };
    let s = start(json!({"port": "8500", "conn_type": "udp", "name": "other",
                         "service_host": "127.0.0.1", "service_port": "8080", "pass": 3}))
    .unwrap();
    assert_eq!((s.name.as_str(), s.origin), ("h", Origin::Api));
    assert_eq!(
        s.address,
        Address {
            host: String::new(),
            port: 8500
        }
    );
    assert_eq!(s.metadata, vec![("pass".to_string(), json!(3))]);
    let s = start(json!({"port": 0, "conn_type": "ethernet", "loc": "eth0"})).unwrap();
    assert_eq!((s.conn_type, s.address.port), (ConnType::Ethernet, 0));
    for (fields, want) in [
        (
            json!({"port": 1}),
            "conn_type: is required (udp, tcp or ethernet)",
        ),
        (
            json!({"port": 1, "conn_type": "bogus"}),
            "conn_type: \"bogus\" is not one of udp, tcp, ethernet",
        ),
        (
            json!({"port": 1, "conn_type": 5}),
            "conn_type: must be a string, got 5",
        ),
        (json!({"conn_type": "udp"}), "port: is required"),
        (
            json!({"conn_type": "udp", "port": "abc"}),
            "port: must be a whole number, got \"abc\"",
        ),
        (
            json!({"conn_type": "udp", "port": "70000"}),
            "port: 70000 is out of range 1..65535",
        ),
        (
            json!({"conn_type": "udp", "port": "-1"}),
            "port: -1 is out of range 1..65535",
        ),
        (
            json!({"conn_type": "udp", "port": 0}),
            "port: 0 is out of range 1..65535",
        ),
        (
            json!({"conn_type": "udp", "port": 1, "loc": 7}),
            "loc: must be a string, got 7",
        ),
        (
            json!({"conn_type": "tcp", "port": 1}),
            "loc: tcp needs a host",
        ),
        (
            json!({"conn_type": "udp", "port": 1, "loc": "a b"}),
            "loc: host \"a b\" has ' '",
        ),
        (
            json!({"conn_type": "udp", "port": 1, "log_dir_path": "/x"}),
            "log_dir_path: not accepted over the API",
        ),
        (
            json!({"conn_type": "udp", "port": 1, "address": ["", 1]}),
            "address: not accepted over the API",
        ),
        (
            json!({"conn_type": "udp", "port": 1, "path": "/etc"}),
            "path: \"/etc\" is absolute",
        ),
        (
            json!({"conn_type": "udp", "port": 1, "on_close": ["/bin/true"]}),
            "on_close: commands can only be configured in the config file",
        ),
    ] {
        let e = start(fields.clone()).unwrap_err();
        assert!(e.starts_with(want), "{fields}: {e}");
    }
}

#[test]
fn typos_of_keys_are_refused_with_a_suggestion_and_metadata_is_kept() {
    let base = |k: &str| json!({"name": "h", "conn_type": "udp", "address": ["", 1], k: "4"});
    for (typo, meant) in [
        ("max_file", "max_files"),
        ("rotate_log_idex", "rotate_log_index"),
        ("rotate_max_byte", "rotate_max_bytes"),
        ("file_name_patern", "file_name_pattern"),
        ("fsync_interval", "fsync_interval_s"),
        ("conn_typ", "conn_type"),
        ("adress", "address"),
    ] {
        for e in [spec(base(typo)).unwrap_err(), api(base(typo)).unwrap_err()] {
            assert_eq!(e.key, typo);
            assert!(
                e.message.contains(&format!("did you mean \"{meant}\"?")),
                "{e}"
            );
        }
    }
    // `port` is a key over the API only.
    assert!(spec(base("prot")).is_ok());
    assert!(api(base("prot"))
        .unwrap_err()
        .message
        .contains("did you mean \"port\"?"));
    let h = spec(json!({"name": "h", "conn_type": "udp", "address": ["", 1],
        "pass": 1, "mission": "m", "station": "s", "orbit": 2, "spacecraft": "x",
        "vcid": 0, "apid": 7, "site": "a", "antenna": "b", "band": "S"}))
    .unwrap();
    assert_eq!(h.metadata.len(), 10);
    // Rotate: metadata passes, typos of handler and API keys do not.
    let fields = |v: Value| v.as_object().unwrap().clone();
    let rotated = h
        .with_metadata(&fields(
            json!({"pass": 2, "mission": "n", "station": "t", "orbit": 3}),
        ))
        .unwrap();
    assert_eq!(rotated.key_value("pass").as_deref(), Some("2"));
    for (typo, meant) in [("max_file", "max_files"), ("prot", "port"), ("lco", "loc")] {
        let e = h.with_metadata(&fields(json!({typo: "3"}))).unwrap_err();
        assert_eq!(e.key, typo);
        assert!(
            e.message.contains(&format!("did you mean \"{meant}\"?")),
            "{e}"
        );
    }
}
