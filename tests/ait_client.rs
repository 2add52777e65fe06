//! AIT's own client commands against bsc: `ait-bsc-create-handler` and
//! `ait-bsc-stop-handler` from the `ait-core` package (PyPI), installed by
//! `tests/deps.sh` into `target/ait-venv`.
//!
//! The console scripts import the whole `ait.core` package first, which needs a
//! full AIT configuration (and a leap-second file that expires); the commands
//! themselves are self-contained scripts (argparse + requests), so the test runs
//! those script files with the virtual environment's Python: the same code, the
//! same request bodies.

mod common;

use std::process::Command;

use common::*;
use serde_json::json;

#[test]
fn aits_create_and_stop_commands_drive_bsc() {
    let (dir, root) = TempDir::with_root("aitclient");
    let bsc = Bsc::capturing(dir.path(), &root, vec![]);
    let port = free_udp_port();
    let service = bsc.http_port.to_string();
    let (python, create) = ait_script("ait_bsc_create_handler");
    let out = Command::new(&python)
        .arg(&create)
        .args(["aitc", "127.0.0.1", &port.to_string(), "udp"])
        .args(["--service-host", "127.0.0.1", "--service-port", &service])
        .args([
            "--rotate-log-index",
            "hour",
            "--file-name-pattern",
            "%Y-{name}.pcap",
        ])
        .output()
        .unwrap();
    assert_success(&out);
    let (_, entries) = bsc.get("/aitc/config");
    let entry = &entries[0];
    assert_eq!(entry["conn_type"], "udp", "{entries}");
    assert_eq!(entry["address"], json!(["127.0.0.1", port]));
    assert_eq!(entry["handler"]["rotate_log_index"], "hour");
    for i in 0..5u64 {
        sender(port).send(&seq_payload(i)).unwrap();
    }
    wait_until("5 datagrams captured", || {
        bsc.get("/stats").1[format!("['127.0.0.1', {port}]")][0]["packets"].as_u64() == Some(5)
    });
    let (_, stop) = ait_script("ait_bsc_stop_handler");
    let out = Command::new(&python)
        .arg(&stop)
        .args([
            "aitc",
            "--service-host",
            "127.0.0.1",
            "--service-port",
            &service,
        ])
        .output()
        .unwrap();
    assert_success(&out);
    assert_eq!(bsc.get("/aitc/config").1, json!([]));
    assert!(udp_port_is_free(port));
    assert!(bsc.stop().success());
    let files = pcap_files(&root);
    assert_eq!(files.len(), 1, "{files:?}");
    let (records, stderr) = tcpdump(&files[0]);
    assert_eq!(records, 5, "{stderr}");
}
