//! Black-box tests of typo refusal: a handler key that is not known but is a few
//! edits from one (`max_file`) is refused with `did you mean "max_files"?` at
//! load (exit 2, one line), over the API (400 at start and at rotate) and on
//! reload (refused, nothing changes); other unknown keys stay metadata, as in AIT.

mod common;

use std::path::Path;

use common::*;
use serde_json::{json, Value};

/// Runs bsc on `file` until it exits; returns (exit code, stderr lines).
fn refused_at_start(file: &Path, dir: &Path) -> (Option<i32>, Vec<String>) {
    let mut bsc = Bsc::spawn(&["--config", file.to_str().unwrap()], dir, &[]);
    let status = bsc.wait_exit();
    (status.code(), bsc.log())
}

#[test]
fn a_config_file_with_a_typo_exits_2_naming_file_handler_key_and_the_key_meant() {
    let dir = TempDir::new("typo-json");
    let port = free_udp_port();
    let path = write_config(
        dir.path(),
        &config(
            &dir.path().join("cap"),
            vec![udp_handler("h", port, json!({"max_file": 4}))],
        ),
    );
    let (code, log) = refused_at_start(&path, dir.path());
    assert_eq!(code, Some(2), "{log:?}");
    assert_eq!(log.len(), 1, "one line: {log:?}");
    let line = &log[0];
    for part in [
        "bsc.json",
        "handler #1 (\"h\")",
        "key \"max_file\"",
        "did you mean \"max_files\"?",
    ] {
        assert!(line.contains(part), "wanted {part:?} in {line:?}");
    }
    assert!(!dir.path().join("cap").exists(), "nothing started");
    assert!(udp_port_is_free(port));
}

#[test]
fn an_ait_yaml_config_with_a_typo_exits_2_with_the_suggestion() {
    let dir = TempDir::new("typo-yaml");
    let port = free_udp_port();
    let yaml = dir.path().join("bsc.yaml");
    std::fs::write(
        &yaml,
        format!(
            "\
capture_manager:
    root_log_directory: {root}
    manager_server:
        host: 127.0.0.1
        port: {http}

handlers:
    - name: test1
      conn_type: udp
      address: ['', {port}]
      rotate_log: True
      rotate_log_idex: hour
",
            root = dir.path().join("cap").display(),
            http = free_tcp_port(),
        ),
    )
    .unwrap();
    let (code, log) = refused_at_start(&yaml, dir.path());
    assert_eq!(code, Some(2), "{log:?}");
    assert_eq!(log.len(), 1, "one line: {log:?}");
    let line = &log[0];
    for part in [
        "bsc.yaml",
        "handler #1 (\"test1\")",
        "key \"rotate_log_idex\"",
        "did you mean \"rotate_log_index\"?",
    ] {
        assert!(line.contains(part), "wanted {part:?} in {line:?}");
    }
}

#[test]
fn the_api_refuses_typos_at_start_and_rotate_and_keeps_metadata() {
    let (dir, root) = TempDir::with_root("typo-api");
    let bsc = Bsc::with_config(
        dir.path(),
        &json!({"capture_manager": {"root_log_directory": root}}),
    );
    let port = free_udp_port();

    // Start: a misspelt handler key, or a misspelt port, is a 400 that names both.
    for (body, typo, meant) in [
        (
            format!("port={port}&conn_type=udp&file_name_patern=x.pcap"),
            "file_name_patern",
            "file_name_pattern",
        ),
        (
            format!("prot={port}&port={port}&conn_type=udp"),
            "prot",
            "port",
        ),
        (
            format!("port={port}&conn_typ=udp&conn_type=udp"),
            "conn_typ",
            "conn_type",
        ),
    ] {
        let (status, answer) = bsc.form("POST", "/h/start", &body);
        assert_eq!(status, 400, "{body}: {answer}");
        let msg = answer["error"].as_str().unwrap();
        assert!(msg.starts_with(&format!("{typo}: ")), "{msg}");
        assert!(msg.contains(&format!("did you mean \"{meant}\"?")), "{msg}");
    }
    assert_eq!(bsc.get("/h/config").1, json!([]), "nothing was started");
    assert!(udp_port_is_free(port));

    // Real metadata is accepted at start...
    let (status, entry) = bsc.form(
        "POST",
        "/h/start",
        &format!(
            "loc=127.0.0.1&port={port}&conn_type=udp&pass=1&mission=demo&station=wallops&orbit=77\
             &file_name_pattern=%7Bmission%7D-%7Bpass%7D.pcap"
        ),
    );
    assert_eq!(status, 201, "{entry}");
    for (k, v) in [
        ("pass", "1"),
        ("mission", "demo"),
        ("station", "wallops"),
        ("orbit", "77"),
    ] {
        assert_eq!(entry["handler"][k], v, "{entry}");
    }
    sender(port).send(b"pass 1").unwrap();
    wait_until("the record of pass 1", || {
        count_records(&root.join("demo-1.pcap")) == 1
    });

    // ...and at rotate; a typo of a handler key at rotate is a 400, nothing changes.
    let (status, answer) = bsc.form("POST", "/h/rotate", "max_file=3");
    assert_eq!(status, 400, "{answer}");
    let msg = answer["error"].as_str().unwrap();
    assert!(msg.starts_with("max_file: "), "{msg}");
    assert!(msg.contains("did you mean \"max_files\"?"), "{msg}");
    let config = &bsc.get("/h/config").1[0];
    assert!(config["handler"].get("max_file").is_none(), "{config}");
    assert_eq!(
        config["log_file_path"],
        root.join("demo-1.pcap").to_str().unwrap()
    );

    let (status, rotated) = bsc.form(
        "POST",
        "/h/rotate",
        "pass=2&mission=demo&station=kiruna&orbit=78",
    );
    assert_eq!(status, 200, "{rotated}");
    assert_eq!(
        rotated[0]["log_file_path"],
        root.join("demo-2.pcap").to_str().unwrap()
    );
    let handler = &bsc.get("/h/config").1[0]["handler"];
    assert_eq!(
        (&handler["pass"], &handler["station"], &handler["orbit"]),
        (&json!("2"), &json!("kiruna"), &json!("78"))
    );
    sender(port).send(b"pass 2").unwrap();
    wait_until("the record of pass 2", || {
        count_records(&root.join("demo-2.pcap")) == 1
    });
    assert!(bsc.stop().success());
}

#[test]
fn a_reload_with_a_typo_is_refused_and_the_running_handler_keeps_capturing() {
    let (dir, root) = TempDir::with_root("typo-reload");
    let port = free_udp_port();
    let keep = udp_handler("keep", port, json!({"file_name_pattern": "keep.pcap"}));
    let bsc = Bsc::capturing(dir.path(), &root, vec![keep.clone()]);
    sender(port).send(&seq_payload(0)).unwrap();
    wait_until("the first record", || {
        count_records(&root.join("keep.pcap")) == 1
    });

    // The same handler with a misspelt size limit; the API section as it runs.
    let mut changed = config(
        &root,
        vec![udp_handler(
            "keep",
            port,
            json!({"file_name_pattern": "keep.pcap", "rotate_max_byte": "1MB"}),
        )],
    );
    changed["capture_manager"]["manager_server"] =
        json!({"host": "127.0.0.1", "port": bsc.http_port});
    write_config(dir.path(), &changed);
    bsc.signal(1);
    let line = bsc.wait_log("reload refused");
    assert!(
        line.contains("key \"rotate_max_byte\"")
            && line.contains("did you mean \"rotate_max_bytes\"?"),
        "{line}"
    );
    assert!(bsc.log_matching("reload: ").is_empty(), "nothing applied");

    // The handler runs as before: same file, same settings.
    sender(port).send(&seq_payload(1)).unwrap();
    wait_until("capture goes on into the same file", || {
        count_records(&root.join("keep.pcap")) == 2
    });
    let handler = &bsc.get("/keep/config").1[0]["handler"];
    assert_eq!(handler["rotate_max_bytes"], Value::Null, "{handler}");
    assert!(handler.get("rotate_max_byte").is_none(), "{handler}");
    assert_eq!(bsc.log_matching("handler keep: opened").len(), 1);
    assert!(bsc.stop().success());
}
