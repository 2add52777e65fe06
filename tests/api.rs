//! Black-box tests of the management API: the real binary, real HTTP over TCP on
//! loopback (curl where the point is what curl sends), real datagrams and files.

mod common;

use std::io::{BufReader, Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use common::*;
use serde_json::{json, Value};

/// A bsc with a root directory and no handlers.
fn empty_bsc(dir: &TempDir) -> Bsc {
    Bsc::with_config(
        dir.path(),
        &json!({"capture_manager": {"root_log_directory": dir.path().join("cap")}}),
    )
}

/// Runs curl against bsc; returns (status, body as JSON).
fn curl(bsc: &Bsc, args: &[&str], path: &str) -> (u16, Value) {
    let url = format!("http://127.0.0.1:{}{path}", bsc.http_port);
    let out = Command::new("curl")
        .args(["-sS", "-w", "\n%{http_code}"])
        .args(args)
        .arg(&url)
        .output()
        .expect("curl is installed");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, code) = text.rsplit_once('\n').unwrap();
    (
        code.parse().unwrap(),
        serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body:?}")),
    )
}

#[test]
fn ait_workflow_with_curl_form_and_the_shapes_ait_answers_with() {
    let dir = TempDir::new("ait");
    let bsc = empty_bsc(&dir);
    let root = dir.path().join("cap");
    let (p2, p3) = (free_udp_port(), free_udp_port());

    // reference/03: curl --form port=... --form conn_type=udp (multipart).
    let (status, entry) = curl(
        &bsc,
        &[
            "-X",
            "POST",
            "--form",
            &format!("port={p2}"),
            "--form",
            "conn_type=udp",
        ],
        "/h2/start",
    );
    assert_eq!(status, 201, "{entry}");
    assert_eq!(entry["conn_type"], "udp");
    assert_eq!(entry["address"], json!(["", p2]));
    assert_eq!(entry["handler"]["name"], "h2");
    assert_eq!(entry["handler"]["rotate_log"], true);
    assert_eq!(entry["handler"]["log_dir"], root.to_str().unwrap());
    assert_eq!(
        entry["handler"]["_validated_log_dir_root"],
        root.to_str().unwrap()
    );
    assert_eq!(entry["handler"]["pre_write_transforms"], json!([]));
    assert!(entry["log_file_path"]
        .as_str()
        .unwrap()
        .ends_with("-h2.pcap"));

    // reference/13: with loc; then two handlers on the same address.
    let port3 = format!("port={p3}");
    let on_p3 = [
        "-X",
        "POST",
        "--form",
        "loc=127.0.0.1",
        "--form",
        &port3,
        "--form",
        "conn_type=udp",
    ];
    for name in ["h3", "h3b"] {
        let (status, _) = curl(&bsc, &on_p3, &format!("/{name}/start"));
        assert_eq!(status, 201);
    }
    // The same name on the same address again is a conflict, not a second writer.
    let (status, err) = curl(&bsc, &on_p3, "/h3/start");
    assert_eq!(status, 409, "{err}");
    assert!(err["error"].as_str().unwrap().contains("h3"), "{err}");

    let (status, all) = bsc.get("/");
    assert_eq!(status, 200);
    let keys: Vec<&String> = all.as_object().unwrap().keys().collect();
    let k2 = format!("['', {p2}]");
    let k3 = format!("['127.0.0.1', {p3}]");
    assert_eq!(keys.len(), 2);
    assert!(keys.contains(&&k2) && keys.contains(&&k3), "{keys:?}");
    assert_eq!(
        all[&k3]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["handler"]["name"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ["h3", "h3b"]
    );

    // Traffic, then AIT's stats fields and bsc's numeric ones.
    let tx = sender(p3);
    for i in 0..3 {
        tx.send(format!("hello{i}").as_bytes()).unwrap();
    }
    wait_until("3 reads on h3", || {
        bsc.get("/stats").1[&k3][0]["reads"] == 3
    });
    let (_, stats) = bsc.get("/stats");
    let s = &stats[&k3][1];
    assert_eq!(s["name"], "h3b");
    assert_eq!(s["data_read_length"], "18 bytes");
    assert!(
        s["approx_data_rate"]
            .as_str()
            .unwrap()
            .ends_with(" bytes/second"),
        "{s}"
    );
    assert_eq!(
        (
            s["packets"].as_u64(),
            s["bytes"].as_u64(),
            s["files_opened"].as_u64()
        ),
        (Some(3), Some(18), Some(1))
    );
    assert!(s["rate_bytes_per_s"].as_f64().unwrap() > 0.0);
    assert_eq!(s["current_file_bytes"], 24 + 3 * (16 + 6));
    assert!(s["last_packet_at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(
        (s["write_errors"].as_u64(), s["truncated"].as_u64()),
        (Some(0), Some(0))
    );
    assert_eq!(s["local_address"], format!("127.0.0.1:{p3}"));
    // A handler with no traffic: zeros, no division by zero (AIT answered 500).
    let idle = &stats[&k2][0];
    assert_eq!(
        (idle["reads"].as_u64(), idle["approx_data_rate"].as_str()),
        (Some(0), Some("0.0 bytes/second"))
    );
    assert_eq!(idle["current_file"], Value::Null);
    let h3_file = s["current_file"].as_str().unwrap().to_string();
    let (_, _, records) = read_pcap(std::path::Path::new(&h3_file));
    assert_eq!(
        records.iter().map(|r| r.data.clone()).collect::<Vec<_>>(),
        [b"hello0", b"hello1", b"hello2"]
    );

    // Rotate: the answer names the new file, which exists at once.
    let (status, rotated) = bsc.form("POST", "/h3b/rotate", "");
    assert_eq!(status, 200, "{rotated}");
    let new_file = rotated[0]["log_file_path"].as_str().unwrap();
    assert!(std::path::Path::new(new_file).exists());
    assert_eq!(
        rotated[0]["previous_file"],
        h3_file.replace("-h3.pcap", "-h3b.pcap")
    );

    // Stop h3: only h3 goes, the capturer stays for h3b; the answer lists it.
    let (status, stopped) = bsc.form("DELETE", "/h3/stop", "");
    assert_eq!(status, 200);
    assert_eq!(stopped.as_array().unwrap().len(), 1);
    assert_eq!(stopped[0]["handler"]["name"], "h3");
    assert_eq!(
        bsc.get("/h3/config"),
        (200, json!([])),
        "AIT answers [] for an unknown name"
    );
    assert!(!udp_port_is_free(p3));
    // Stopping the last handler of an address frees its port at once.
    assert_eq!(bsc.form("DELETE", "/h3b/stop", "").0, 200);
    assert!(udp_port_is_free(p3));
    assert_eq!(bsc.form("DELETE", "/h3b/stop", "").0, 404);
    assert!(bsc.stop().success());
}

#[test]
fn the_exact_body_of_ait_bsc_create_handler_creates_a_working_handler() {
    let dir = TempDir::new("aitcli");
    let bsc = empty_bsc(&dir);
    let port = free_udp_port();
    // reference/54: what ait-bsc-create-handler sends (requests' data=vars(args)).
    let (status, entry) = curl(
        &bsc,
        &[
            "-X",
            "POST",
            "-d",
            "name=cli1",
            "-d",
            "loc=127.0.0.1",
            "-d",
            &format!("port={port}"),
            "-d",
            "conn_type=udp",
            "-d",
            "service_host=127.0.0.1",
            "-d",
            "service_port=28080",
            "-d",
            "rotate_log=True",
            "-d",
            "rotate_log_index=day",
            "-d",
            "rotate_log_delta=1",
            "--data-urlencode",
            "file_name_pattern=%Y-%m-%d-%H-%M-%S-{name}.pcap",
        ],
        "/cli1/start",
    );
    assert_eq!(status, 201, "{entry}");
    let handler = &entry["handler"];
    assert_eq!(
        (
            handler["rotate_log"].as_bool(),
            handler["rotate_log_index"].as_str()
        ),
        (Some(true), Some("day"))
    );
    assert!(
        handler.get("service_host").is_none() && handler.get("service_port").is_none(),
        "not stored: {handler}"
    );
    sender(port).send(b"from ait").unwrap();
    wait_until("a file with the record", || {
        pcap_files(&dir.path().join("cap"))
            .first()
            .is_some_and(|f| count_records(f) == 1)
    });
    let f = &pcap_files(&dir.path().join("cap"))[0];
    assert!(f
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .ends_with("-cli1.pcap"));
    assert_eq!(read_pcap(f).2[0].data, b"from ait");
    assert_eq!(tcpdump(f).0, 1);
}

#[test]
fn json_bodies_query_strings_metadata_and_rotation_with_metadata() {
    let dir = TempDir::new("json");
    let bsc = empty_bsc(&dir);
    let port = free_udp_port();
    let body = json!({"port": port, "loc": "127.0.0.1", "conn_type": "udp", "path": "passes/{sat}",
                      "file_name_pattern": "{name}-{pass}.pcap", "sat": "aqua", "pass": 0, "rotate_log": false,
                      "pre_write_transforms": ["identity"]});
    let r = bsc.request(
        "POST",
        "/tlm/start",
        Some("application/json"),
        body.to_string().as_bytes(),
    );
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.header("content-type"), Some("application/json"));
    let entry = r.json();
    assert_eq!(entry["handler"]["sat"], "aqua");
    assert_eq!(entry["handler"]["pass"], 0);
    assert_eq!(
        entry["handler"]["pre_write_transforms"],
        json!(["identity"])
    );
    let root = dir.path().join("cap");
    assert_eq!(
        entry["log_file_path"],
        root.join("passes/aqua/tlm-0.pcap").to_str().unwrap()
    );

    let tx = sender(port);
    tx.send(b"pass0").unwrap();
    wait_until("record in pass 0", || {
        count_records(&root.join("passes/aqua/tlm-0.pcap")) == 1
    });
    // A new pass: metadata in the rotate request names the next file.
    let (status, rotated) = bsc.form("POST", "/tlm/rotate", "pass=1234");
    assert_eq!(status, 200, "{rotated}");
    assert_eq!(
        rotated[0]["log_file_path"],
        root.join("passes/aqua/tlm-1234.pcap").to_str().unwrap()
    );
    tx.send(b"pass1234").unwrap();
    wait_until("record in pass 1234", || {
        count_records(&root.join("passes/aqua/tlm-1234.pcap")) == 1
    });
    assert_eq!(bsc.get("/tlm/config").1[0]["handler"]["pass"], "1234");
    // Metadata that would move the file, or a handler setting: refused, nothing changes.
    assert_eq!(bsc.form("POST", "/tlm/rotate", "pass=../../etc").0, 400);
    assert_eq!(bsc.form("POST", "/tlm/rotate", "path=elsewhere").0, 400);
    assert_eq!(bsc.form("POST", "/nobody/rotate", "").0, 404);
    assert_eq!(
        bsc.get("/tlm/config").1[0]["log_file_path"],
        root.join("passes/aqua/tlm-1234.pcap").to_str().unwrap()
    );

    // Fields in the query string work too (AIT refused them).
    let p2 = free_udp_port();
    assert_eq!(
        bsc.request(
            "POST",
            &format!("/q/start?port={p2}&conn_type=udp"),
            None,
            b""
        )
        .status,
        201
    );
    assert!(!udp_port_is_free(p2));
}

#[test]
fn every_bad_request_gets_a_clear_json_error_and_bsc_keeps_running() {
    let dir = TempDir::new("errors");
    let bsc = empty_bsc(&dir);
    let port = free_udp_port();
    let occupied = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let busy = occupied.local_addr().unwrap().port();
    assert_eq!(
        bsc.form(
            "POST",
            "/ok/start",
            &format!("port={port}&conn_type=udp&file_name_pattern=same.pcap")
        )
        .0,
        201
    );
    let local = free_udp_port();
    assert_eq!(
        bsc.form(
            "POST",
            "/local/start",
            &format!("loc=127.0.0.1&port={local}&conn_type=udp")
        )
        .0,
        201
    );

    let cases: Vec<(&str, &str, String, u16, &str)> = vec![
        ("POST", "/b1/start", "conn_type=udp".into(), 400, "port"),
        (
            "POST",
            "/b2/start",
            format!("port={port}"),
            400,
            "conn_type",
        ),
        ("POST", "/b3/start", "".into(), 400, "conn_type"),
        (
            "POST",
            "/b4/start",
            "port=abc&conn_type=udp".into(),
            400,
            "port: must be a whole number",
        ),
        (
            "POST",
            "/b5/start",
            "port=70000&conn_type=udp".into(),
            400,
            "port: 70000 is out of range",
        ),
        (
            "POST",
            "/b6/start",
            "port=-1&conn_type=udp".into(),
            400,
            "port: -1 is out of range",
        ),
        (
            "POST",
            "/b7/start",
            "port=1&conn_type=bogus".into(),
            400,
            "conn_type: \"bogus\" is not one of",
        ),
        (
            "POST",
            "/b8/start",
            format!("port={port}&conn_type=udp&path=../escape"),
            400,
            "path",
        ),
        (
            "POST",
            "/b9/start",
            format!("port={port}&conn_type=udp&path=/etc"),
            400,
            "absolute",
        ),
        (
            "POST",
            "/b10/start",
            format!("port={port}&conn_type=udp&file_name_pattern=/tmp/x.pcap"),
            400,
            "absolute",
        ),
        (
            "POST",
            "/b11/start",
            format!("port={port}&conn_type=udp&file_name_pattern=..%2F..%2Fx.pcap"),
            400,
            "..",
        ),
        (
            "POST",
            "/b12/start",
            format!("port={port}&conn_type=udp&log_dir_path=/tmp/x"),
            400,
            "log_dir_path",
        ),
        (
            "POST",
            "/b13/start",
            format!("port={port}&conn_type=udp&rotate_log_index=fortnight"),
            400,
            "rotate_log_index",
        ),
        (
            "POST",
            "/b14/start",
            format!("port={port}&conn_type=udp&file_name_pattern=%25Q"),
            400,
            "%Q",
        ),
        (
            "POST",
            "/b15/start",
            format!("port={port}&conn_type=udp&path={}", "a".repeat(300)),
            400,
            "255",
        ),
        (
            "POST",
            "/bad%2Fname/start",
            format!("port={port}&conn_type=udp"),
            400,
            "handler name",
        ),
        (
            "POST",
            "/ok/start",
            format!("port={port}&conn_type=udp&path=other"),
            409,
            "already captures",
        ),
        (
            "POST",
            "/twin/start",
            format!("port={port}&conn_type=udp&file_name_pattern=same.pcap"),
            409,
            "already writes",
        ),
        (
            "POST",
            "/busy/start",
            format!("port={busy}&conn_type=udp"),
            409,
            "in use",
        ),
        (
            "POST",
            "/tcp/start",
            format!("loc=127.0.0.1&port={local}&conn_type=tcp"),
            409,
            "already captured as udp",
        ),
        (
            "POST",
            "/tcp2/start",
            format!("port={port}&conn_type=tcp"),
            400,
            "loc: tcp needs a host",
        ),
        (
            "POST",
            "/eth/start",
            "loc=nosuchif0&port=0&conn_type=ethernet".into(),
            400,
            "no network interface named \"nosuchif0\"",
        ),
        (
            "DELETE",
            "/nobody/stop",
            "".into(),
            404,
            "no handler named \"nobody\" (running: local, ok)",
        ),
        ("POST", "/nobody/rotate", "".into(), 404, "nobody"),
        ("GET", "/nothing/here/at/all", "".into(), 404, "no route"),
        ("GET", "/ok/start", "".into(), 405, "use POST"),
        ("POST", "/ok/stop", "".into(), 405, "use DELETE"),
        ("DELETE", "/stats", "".into(), 405, "use GET"),
    ];
    for (method, path, body, want, needle) in cases {
        let r = bsc.request(
            method,
            path,
            Some("application/x-www-form-urlencoded"),
            body.as_bytes(),
        );
        assert_eq!(
            r.status,
            want,
            "{method} {path} {body}: {}",
            String::from_utf8_lossy(&r.body)
        );
        assert_eq!(r.header("content-type"), Some("application/json"), "{path}");
        let msg = r.json()["error"]
            .as_str()
            .unwrap_or_else(|| panic!("{path}: no error field"))
            .to_string();
        assert!(
            msg.contains(needle),
            "{method} {path} {body}: wanted {needle:?} in {msg:?}"
        );
        if want == 405 {
            assert!(r.header("allow").is_some(), "{path}: Allow header");
        }
    }
    // An unsupported body type: 415.
    let r = bsc.request("POST", "/x/start", Some("text/xml"), b"<port>1</port>");
    assert_eq!(
        (r.status, r.json()["error"].as_str().is_some()),
        (415, true)
    );
    // Nothing above was created, and nothing escaped the root.
    let (_, all) = bsc.get("/");
    assert_eq!(
        all.as_object()
            .unwrap()
            .values()
            .map(|v| v.as_array().unwrap().len())
            .sum::<usize>(),
        2
    );
    assert!(!dir.path().join("escape").exists());
    assert_eq!(bsc.get("/health").0, 200);
    drop(occupied);
}

#[test]
fn health_and_prometheus_metrics() {
    let dir = TempDir::new("metrics");
    let bsc = empty_bsc(&dir);
    let port = free_udp_port();
    assert_eq!(
        bsc.form("POST", "/m1/start", &format!("port={port}&conn_type=udp"))
            .0,
        201
    );
    sender(port).send(b"x").unwrap();
    wait_until("a packet counted", || {
        bsc.get("/stats").1[format!("['', {port}]")][0]["packets"] == 1
    });
    let (status, health) = bsc.get("/health");
    assert_eq!(status, 200);
    assert_eq!(health["status"], "ok");
    assert_eq!(
        (health["handlers"].as_u64(), health["capturers"].as_u64()),
        (Some(1), Some(1))
    );
    assert!(health["uptime_s"].is_u64());

    let r = bsc.request("GET", "/metrics", None, b"");
    assert_eq!(r.status, 200);
    assert!(r
        .header("content-type")
        .unwrap()
        .starts_with("text/plain; version=0.0.4"));
    let text = String::from_utf8(r.body).unwrap();
    assert!(
        text.contains(&format!(
            "bsc_packets_total{{handler=\"m1\",conn_type=\"udp\",host=\"\",port=\"{port}\",address=\"['', {port}]\"}} 1"
        )),
        "{text}"
    );
    assert!(text.contains("# TYPE bsc_bytes_total counter"));
    assert!(text.contains("process_resident_memory_bytes "));
    // promtool (Debian's prometheus package; make test installs it) is the judge.
    promtool_accepts(&text);
}

#[test]
fn a_token_guards_every_route_and_open_exposure_needs_one() {
    let dir = TempDir::new("token");
    let port = free_tcp_port();
    let bsc = Bsc::with_config(
        dir.path(),
        &json!({"capture_manager": {"root_log_directory": dir.path().join("cap"),
                 "manager_server": {"host": "127.0.0.1", "port": port, "token": "s3cret"}}}),
    );
    let r = bsc.request("GET", "/health", None, b"");
    assert_eq!(
        (r.status, r.header("www-authenticate")),
        (401, Some("Bearer"))
    );
    let ask = |auth: &str| {
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        write!(
            s,
            "GET /stats HTTP/1.1\r\nAuthorization: {auth}\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        read_response(&mut BufReader::new(s)).unwrap().status
    };
    assert_eq!(ask("Bearer s3cret"), 200);
    assert_eq!(ask("bearer s3cret"), 200);
    assert_eq!(ask("Bearer s3creT"), 401);
    assert_eq!(ask("Basic s3cret"), 401);
    drop(bsc);

    // All interfaces without a token: refused at start-up, with the reason.
    let wide = json!({"capture_manager": {"root_log_directory": dir.path().join("cap"),
                       "manager_server": {"host": "0.0.0.0", "port": free_tcp_port()}}});
    let cfg = write_config(dir.path(), &wide);
    let mut refused = Bsc::spawn(&["--config", cfg.to_str().unwrap()], dir.path(), &[]);
    assert_eq!(refused.wait_exit().code(), Some(2));
    assert!(
        refused
            .log()
            .iter()
            .any(|l| l.contains("without a token") && l.contains("allow_unauthenticated")),
        "{:?}",
        refused.log()
    );
    // ...unless the operator says the network is trusted (only loopback is used here).
    let mut trusted = wide.clone();
    trusted["capture_manager"]["manager_server"]["allow_unauthenticated"] = json!(true);
    let bsc = Bsc::with_config(dir.path(), &trusted);
    assert_eq!(bsc.get("/health").0, 200);
    drop(bsc);

    // The API port taken: exit 2 naming the address.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let p = taken.local_addr().unwrap().port();
    let cfg = write_config(
        dir.path(),
        &json!({"capture_manager": {"manager_server": {"host": "127.0.0.1", "port": p}}}),
    );
    let mut clash = Bsc::spawn(&["--config", cfg.to_str().unwrap()], dir.path(), &[]);
    assert_eq!(clash.wait_exit().code(), Some(2));
    assert!(
        clash
            .log()
            .iter()
            .any(|l| l.contains(&format!("cannot bind the management API on 127.0.0.1:{p}"))),
        "{:?}",
        clash.log()
    );
}

#[test]
fn framing_limits_pipelining_and_connection_limits() {
    let dir = TempDir::new("limits");
    let bsc = empty_bsc(&dir);
    let port = bsc.http_port;
    let raw = |bytes: &[u8]| {
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(PATIENCE)).unwrap();
        s.write_all(bytes).unwrap();
        read_response(&mut BufReader::new(s)).unwrap()
    };
    // A 9 KiB head, a 70 KiB body, no length, chunked, garbage.
    let big_head = format!("GET / HTTP/1.1\r\nX-Big: {}\r\n\r\n", "a".repeat(9 * 1024));
    assert_eq!(raw(big_head.as_bytes()).status, 431);
    let mut big_body = format!(
        "POST /x/start HTTP/1.1\r\nContent-Length: {}\r\n\r\n",
        70 * 1024
    )
    .into_bytes();
    big_body.extend(vec![b'a'; 70 * 1024]);
    let r = raw(&big_body);
    assert_eq!(
        (r.status, r.json()["error"].as_str().is_some()),
        (413, true)
    );
    // No length: no body (RFC 9112 section 6.3), so the request reaches the route.
    let r = raw(b"POST /x/start HTTP/1.1\r\n\r\n");
    assert_eq!(r.status, 400, "{:?}", r.json());
    assert!(r.json()["error"].as_str().unwrap().contains("conn_type"));
    assert_eq!(
        raw(b"POST /x/start HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n").status,
        501
    );
    assert_eq!(raw(b"NOT HTTP AT ALL\r\n\r\n").status, 400);

    // 100 pipelined requests on one connection: 100 answers, in order.
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut burst = Vec::new();
    for i in 0..100 {
        let path = if i % 2 == 0 { "/health" } else { "/nope" };
        burst.extend_from_slice(
            format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").as_bytes(),
        );
    }
    s.write_all(&burst).unwrap();
    let mut reader = BufReader::new(s);
    for i in 0..100 {
        let r = read_response(&mut reader).unwrap_or_else(|| panic!("answer {i}"));
        assert_eq!(r.status, if i % 2 == 0 { 200 } else { 404 }, "answer {i}");
    }

    drop(reader);

    // 64 connections are served; a 65th gets 503; the 64 still work.
    wait_until("only the probes' own connection open", || {
        bsc.get("/health").1["http_connections"] == 1
    });
    let connect = || {
        let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(PATIENCE)).unwrap();
        s
    };
    let mut open: Vec<TcpStream> = (0..63).map(|_| connect()).collect();
    let mut probe = connect();
    wait_until("64 connections accepted", || {
        write!(probe, "GET /health HTTP/1.1\r\n\r\n").unwrap();
        let r = read_response(&mut BufReader::new(probe.try_clone().unwrap())).unwrap();
        r.json()["http_connections"] == 64
    });
    open.push(probe);
    let extra = raw(b"GET /health HTTP/1.1\r\n\r\n");
    assert_eq!(extra.status, 503);
    assert!(extra.json()["error"]
        .as_str()
        .unwrap()
        .contains("too many connections"));
    for s in &mut open {
        write!(s, "GET /health HTTP/1.1\r\n\r\n").unwrap();
        assert_eq!(
            read_response(&mut BufReader::new(s.try_clone().unwrap()))
                .unwrap()
                .status,
            200
        );
    }
    drop(open);
    wait_until("connections released", || {
        bsc.get("/health").1["http_connections"] == 1
    });
}

#[test]
fn stalled_and_hostile_clients_cannot_hold_the_server() {
    let dir = TempDir::new("hostile");
    let bsc = Bsc::with_config_env(
        dir.path(),
        &json!({"capture_manager": {"root_log_directory": dir.path().join("cap")}}),
        &[DRIVEN_CLOCK],
    );
    let port = bsc.http_port;

    // Half a head, then silence: others are served meanwhile; 10 s of bsc's
    // clock after its first byte the stalled connection gets a 408 and is
    // closed, not before.
    let mut stalled = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stalled.write_all(b"GET /stats HTTP/1.1\r\nHost: ").unwrap();
    assert_eq!(bsc.get("/health").0, 200);
    for _ in 0..9 {
        advance_clock(port, 1.0);
    }
    // Another request: the turn that moved the clock (and swept) is over.
    assert_eq!(bsc.get("/health").0, 200);
    stalled.set_nonblocking(true).unwrap();
    let mut byte = [0u8; 1];
    assert_eq!(
        stalled.read(&mut byte).map_err(|e| e.kind()).unwrap_err(),
        std::io::ErrorKind::WouldBlock,
        "nothing for the stalled request 9 s after its first byte"
    );
    stalled.set_nonblocking(false).unwrap();
    advance_clock(port, 1.5);
    stalled.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut answer = String::new();
    stalled.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");

    // A client that sends many requests and never reads the answers.
    let mut greedy = TcpStream::connect(("127.0.0.1", port)).unwrap();
    greedy
        .set_write_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let req = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".repeat(1000);
    for _ in 0..50 {
        if greedy.write_all(&req).is_err() {
            break; // bsc stopped reading: that is the point
        }
    }
    assert_eq!(
        bsc.get("/health").0,
        200,
        "the server answers others meanwhile"
    );

    // 1,000 connections of random bytes, a few at a time.
    let mut seed = 0x2545F4914F6CDD1Du64;
    for round in 0..100 {
        let conns: Vec<TcpStream> = (0..10)
            .map(|_| {
                let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
                let junk: Vec<u8> = (0..(seed % 3000) as usize + 1)
                    .map(|_| {
                        seed ^= seed << 13;
                        seed ^= seed >> 7;
                        seed ^= seed << 17;
                        seed as u8
                    })
                    .collect();
                let _ = s.write_all(&junk);
                s
            })
            .collect();
        drop(conns);
        if round % 25 == 0 {
            assert_eq!(bsc.get("/health").0, 200);
        }
    }
    drop(greedy);
    let (status, health) = bsc.get("/health");
    assert_eq!((status, health["status"].as_str()), (200, Some("ok")));
    assert!(bsc.stop().success(), "exits cleanly after the abuse");
}

#[test]
fn capture_loses_nothing_while_the_api_is_hammered() {
    let (dir, root) = TempDir::with_root("hammer");
    let port = free_udp_port();
    let bsc = Bsc::capturing(
        dir.path(),
        &root,
        vec![
            json!({"name": "tlm", "conn_type": "udp", "address": ["127.0.0.1", port], "rotate_log": false, "file_name_pattern": "tlm.pcap"}),
        ],
    );
    const N: u64 = 20_000;
    let traffic = std::thread::spawn(move || {
        let tx = sender(port);
        for seq in 0..N {
            tx.send(&seq_payload(seq)).unwrap();
            if seq % 200 == 0 {
                std::thread::sleep(Duration::from_millis(2));
            }
        }
    });
    let http_port = bsc.http_port;
    let mut seed = 7u64;
    let mut n = 0;
    while !traffic.is_finished() && n < 5_000 {
        n += 1;
        match n % 5 {
            0 => assert_eq!(
                http_request(http_port, "GET", "/stats", None, b"").status,
                200
            ),
            1 => assert_eq!(
                http_request(
                    http_port,
                    "POST",
                    "/x/start",
                    Some("application/x-www-form-urlencoded"),
                    b"port=abc"
                )
                .status,
                400
            ),
            2 => assert_eq!(
                http_request(http_port, "GET", "/metrics", None, b"").status,
                200
            ),
            3 => {
                let mut s = TcpStream::connect(("127.0.0.1", http_port)).unwrap();
                seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
                let _ = s.write_all(&seed.to_le_bytes().repeat(50));
            }
            _ => assert_eq!(http_request(http_port, "GET", "/", None, b"").status, 200),
        }
    }
    traffic.join().unwrap();
    let path = root.join("tlm.pcap");
    wait_until("every datagram on disk", || {
        count_records(&path) as u64 >= N
    });
    assert!(bsc.stop().success());
    let (_, _, records) = read_pcap(&path);
    let seqs: Vec<u64> = records.iter().map(|r| seq_of(&r.data)).collect();
    assert_eq!(
        seqs,
        (0..N).collect::<Vec<_>>(),
        "no loss, no reordering ({n} API requests meanwhile)"
    );
}

#[test]
fn config_entries_show_every_key_in_effect_given_or_default() {
    let dir = TempDir::new("applied");
    let bsc = empty_bsc(&dir);
    let root = dir.path().join("cap");
    let (p1, p2, peer) = (free_udp_port(), free_udp_port(), free_tcp_port());

    // Given: several keys, as a form sends them.
    let (status, started) = bsc.form(
        "POST",
        "/given/start",
        &format!(
            "loc=127.0.0.1&port={p1}&conn_type=udp&max_files=3&max_bytes=10MB&max_age=2d\
             &fsync_interval_s=0&rotate_max_bytes=1MiB&rotate_max_packets=100&timestamps=read\
             &record_source=true&rcvbuf_bytes=65536&rotate_log_index=hour&pass=7"
        ),
    );
    assert_eq!(status, 201, "{started}");
    let (status, configs) = bsc.get("/given/config");
    assert_eq!(status, 200);
    let handler = &configs[0]["handler"];
    assert_eq!(
        &started["handler"], handler,
        "the start answer shows the same"
    );
    for (key, want) in [
        ("max_files", json!(3)),
        ("max_bytes", json!(10_000_000)),
        ("max_age", json!(172_800.0)),
        ("fsync_interval_s", json!(0.0)),
        ("rotate_max_bytes", json!(1 << 20)),
        ("rotate_max_packets", json!(100)),
        ("timestamps", json!("read")),
        ("record_source", json!(true)),
        ("rcvbuf_bytes", json!(65536)),
        ("rotate_log_index", json!("hour")),
        ("interface", Value::Null),
        ("on_close", json!([])),
        ("pass", json!("7")),
        // AIT's keys stay.
        ("name", json!("given")),
        ("rotate_log", json!(true)),
        ("pre_write_transforms", json!([])),
        ("log_dir", json!(root.to_str().unwrap())),
        ("_validated_log_dir_root", json!(root.to_str().unwrap())),
    ] {
        assert_eq!(handler.get(key), Some(&want), "{key} in {handler}");
    }

    // Not given: the defaults, and null for limits that are not set.
    assert_eq!(
        bsc.form("POST", "/plain/start", &format!("port={p2}&conn_type=udp"))
            .0,
        201
    );
    let (_, all) = bsc.get("/");
    let handler = &all[format!("['', {p2}]")][0]["handler"];
    for (key, want) in [
        ("max_files", Value::Null),
        ("max_bytes", Value::Null),
        ("max_age", Value::Null),
        ("rotate_max_bytes", Value::Null),
        ("rotate_max_packets", Value::Null),
        ("fsync_interval_s", json!(10.0)),
        ("timestamps", json!("kernel")),
        ("record_source", json!(false)),
        ("rcvbuf_bytes", json!(25_165_824)),
        ("rotate_log_index", json!("day")),
        ("rotate_log_delta", json!(1)),
        ("on_close", json!([])),
    ] {
        assert_eq!(handler.get(key), Some(&want), "{key} in {handler}");
    }
    for absent in ["connect_timeout_s", "reconnect_max_s", "direction"] {
        assert!(
            handler.get(absent).is_none(),
            "{absent} is not udp's: {handler}"
        );
    }

    // tcp: its own two keys, one given, one default (the peer need not answer).
    let (status, tcp) = bsc.form(
        "POST",
        "/peer/start",
        &format!("loc=127.0.0.1&port={peer}&conn_type=tcp&connect_timeout_s=2.5"),
    );
    assert_eq!(status, 201, "{tcp}");
    let handler = &bsc.get("/peer/config").1[0]["handler"];
    assert_eq!(handler["connect_timeout_s"], json!(2.5), "{handler}");
    assert_eq!(handler["reconnect_max_s"], json!(30.0), "{handler}");
    assert!(handler.get("timestamps").is_none() && handler.get("record_source").is_none());

    // ethernet: direction and timestamps (an EtherType nothing on lo sends).
    let (status, eth) = bsc.form(
        "POST",
        "/link/start",
        "loc=lo&port=34997&conn_type=ethernet&direction=in",
    );
    assert_eq!(status, 201, "{eth}");
    let handler = &bsc.get("/link/config").1[0]["handler"];
    assert_eq!(
        (&handler["direction"], &handler["timestamps"]),
        (&json!("in"), &json!("kernel")),
        "{handler}"
    );
    assert!(bsc.stop().success());
}

#[test]
fn health_says_why_it_is_degraded_and_the_metrics_carry_health() {
    let dir = TempDir::new("healthwhy");
    let dead = free_tcp_port(); // nobody listens: the peer stays unreachable
    let udp = free_udp_port();
    let bsc = Bsc::with_config_env(
        dir.path(),
        &json!({"capture_manager": {"root_log_directory": dir.path().join("cap"), "peer_unreachable_s": 1},
                "handlers": [
                    {"name": "t", "conn_type": "tcp", "address": ["127.0.0.1", dead], "reconnect_max_s": 0.5},
                    {"name": "u", "conn_type": "udp", "address": ["127.0.0.1", udp]}]}),
        &[DRIVEN_CLOCK],
    );
    let mut health = json!(null);
    wait_advancing(
        bsc.http_port,
        0.25,
        "health degraded by the unreachable peer",
        || {
            health = bsc.get("/health").1;
            health["status"] == "degraded"
        },
    );
    let reasons = health["reasons"].as_array().unwrap();
    assert!(
        reasons.iter().any(|r| r
            .as_str()
            .unwrap()
            .starts_with(&format!("tcp 127.0.0.1:{dead}: peer unreachable for"))),
        "{health}"
    );
    let text = String::from_utf8(bsc.request("GET", "/metrics", None, b"").body).unwrap();
    let tcp = format!(
        "conn_type=\"tcp\",host=\"127.0.0.1\",port=\"{dead}\",address=\"['127.0.0.1', {dead}]\""
    );
    for line in [
        format!("bsc_capturer_connected{{{tcp}}} 0"),
        format!("bsc_build_info{{version=\"{}\"}} 1", env!("CARGO_PKG_VERSION")),
        format!("bsc_handler_up{{handler=\"u\",conn_type=\"udp\",host=\"127.0.0.1\",port=\"{udp}\",address=\"['127.0.0.1', {udp}]\"}} 1"),
    ] {
        assert!(text.lines().any(|l| l == line), "{line} in:\n{text}");
    }
    for name in [
        "bsc_reconnects_total{",
        "bsc_disk_free_bytes ",
        "bsc_disk_full 0",
        "bsc_clock_synchronized ",
        "bsc_open_fds ",
        "bsc_max_fds ",
    ] {
        assert!(text.contains(name), "{name} in:\n{text}");
    }
    assert!(!text.contains("bsc_uptime_seconds"), "{text}");
    assert!(
        !text.contains(&format!("bsc_kernel_drops_total{{{tcp}}}")),
        "no kernel drops for tcp"
    );
    // The peer keeps refusing: its warning is written once per 10 s, not per
    // try. Three seconds of bsc's clock in steps of the longest back-off (an
    // attempt each), then the window's end: its line counts the tries left out.
    for _ in 0..6 {
        advance_clock(bsc.http_port, 0.5);
    }
    advance_clock(bsc.http_port, 10.0);
    let prefix = format!("capturer tcp 127.0.0.1:{dead}:");
    let window_end = |l: &String| l.contains("in the last 10 s");
    wait_until("the line that ends the window", || {
        bsc.log_matching(&prefix).iter().any(window_end)
    });
    let lines = bsc.log_matching(&prefix);
    let warned = lines.iter().position(window_end).unwrap();
    assert!(warned <= 2, "{warned} lines: {:?}", bsc.log());
    assert!(bsc.stop().success());
}
