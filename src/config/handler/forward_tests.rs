//! The `forward` and `forward_queue_bytes` keys read, refused, shown, saved
//! and read back, from the config file and the API's fields.

use super::*;
use serde_json::json;

fn udp(extra: Value) -> Result<HandlerSpec, FieldError> {
    let mut h = json!({"name": "h", "conn_type": "udp", "address": ["", 9000]});
    for (k, v) in extra.as_object().unwrap() {
        h[k] = v.clone();
    }
    HandlerSpec::from_json(h.as_object().unwrap(), Origin::ConfigFile)
}

fn shown(s: &HandlerSpec, key: &str) -> Shown {
    s.shown().find(|(k, _)| *k == key).unwrap().1
}

#[test]
fn targets_read_back_through_the_state_file_and_show_as_given() {
    let given = json!(["udp://127.0.0.1:9100", {"to": "tcp+len://[::1]:7000", "filter": "apid:0x100,0x101"}]);
    let s = udp(json!({"forward": given, "forward_queue_bytes": "16MiB"})).unwrap();
    assert_eq!(s.forward.len(), 2);
    assert_eq!(s.forward_queue_bytes, 16 << 20);
    assert_eq!(shown(&s, "forward"), Shown::Set(given));
    let back = HandlerSpec::from_json(&s.to_json(), Origin::Api).unwrap();
    assert_eq!(back.forward, s.forward);
    assert_eq!(back.forward_queue_bytes, s.forward_queue_bytes);

    let none = udp(json!({})).unwrap();
    assert!(none.forward.is_empty());
    assert_eq!(shown(&none, "forward"), Shown::Unset(json!([])));
    assert_eq!(
        shown(&none, "forward_queue_bytes"),
        Shown::Unset(json!(4194304))
    );
    assert!(!none.to_json().contains_key("forward"));
    assert!(!none.to_json().contains_key("forward_queue_bytes"));
}

#[test]
fn api_fields_take_one_string_json_text_or_the_field_repeated() {
    let start = |forward: Value| {
        let mut f = Map::new();
        f.insert("conn_type".into(), json!("udp"));
        f.insert("port".into(), json!("9000"));
        f.insert("forward".into(), forward);
        HandlerSpec::from_api_fields("h", f)
    };
    let urls = |s: HandlerSpec| -> Vec<String> { s.forward.iter().map(|t| t.url()).collect() };
    let want = ["udp://127.0.0.1:1", "tcp://127.0.0.1:2"];
    assert_eq!(
        urls(start(json!("udp://127.0.0.1:1,tcp://127.0.0.1:2")).unwrap()),
        want
    );
    assert_eq!(urls(start(json!(want)).unwrap()), want);
    assert_eq!(
        urls(
            start(json!(
                r#"[{"to": "udp://127.0.0.1:1", "filter": "vcid:1"}, "tcp://127.0.0.1:2"]"#
            ))
            .unwrap()
        ),
        want
    );
    let e = start(json!("ftp://127.0.0.1:1")).unwrap_err();
    assert_eq!(e.key, "forward");
    assert!(e.message.contains("unknown scheme \"ftp\""), "{e}");
}

#[test]
fn hostile_targets_are_refused_with_the_reason() {
    for (forward, says) in [
        (json!(["gopher://a:1"]), "unknown scheme"),
        (json!(["udp://a;b:1"]), "has ';'"),
        (json!(["udp://a:0"]), "port 0"),
        (json!(["udp://a:65536"]), "1..65535"),
        (json!(["udp://127.0.0.1:9000"]), "own capture socket"),
        (json!(["udp://localhost:9000"]), "own capture socket"),
        (json!(["udp://127.0.0.9:9000"]), "own capture socket"),
        (json!(["udp://0.0.0.0:9000"]), "own capture socket"),
        (json!({"to": "udp://a:1"}), "list of targets"),
        (
            json!([{"to": "udp://a:1", "filter": "tail:2"}]),
            "apid:... or vcid:",
        ),
        (json!(["udp://a:1\u{0}"]), "control"),
        (json!(["udp://a:1", "udp://a:1"]), "twice"),
    ] {
        let e = udp(json!({ "forward": forward })).unwrap_err();
        assert!(
            e.key == "forward" && e.message.contains(says),
            "{forward}: {e}"
        );
    }
    // Another port of the same host, a TCP target on the port, or another
    // machine's port is no loop.
    assert!(udp(
        json!({"forward": ["udp://127.0.0.1:9001", "tcp://127.0.0.1:9000", "udp://192.0.2.1:9000"]})
    )
    .is_ok());
    // A raw capture sees what bsc sends: an ethernet handler cannot forward.
    let eth = json!({"name": "e", "conn_type": "ethernet", "address": ["lo", 2048], "forward": ["udp://127.0.0.1:9"]});
    let e = HandlerSpec::from_json(eth.as_object().unwrap(), Origin::ConfigFile).unwrap_err();
    assert!(
        e.key == "forward" && e.message.contains("ethernet handler cannot forward"),
        "{e}"
    );
    for (bytes, says) in [
        (json!(1000), "64 KiB to 1 GiB"),
        (json!("2GiB"), "64 KiB to 1 GiB"),
        (json!("lots"), ""),
    ] {
        let e = udp(json!({"forward": ["udp://a:1"], "forward_queue_bytes": bytes})).unwrap_err();
        assert!(
            e.key == "forward_queue_bytes" && e.message.contains(says),
            "{e}"
        );
    }
    let e = udp(json!({"forward_queue_bytes": "1MiB"})).unwrap_err();
    assert!(e.message.contains("only applies with forward"), "{e}");
}
