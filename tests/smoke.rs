//! The deployment smoke test: start on a config, capture 1,000 UDP datagrams,
//! answer `/stats` over HTTP, rotate, stop on SIGTERM with status 0, and leave files
//! tcpdump reads. By default it tests this build; `make cross-test` runs it against
//! the ARM binaries under qemu-user with `BSC_SMOKE_BIN` and `BSC_SMOKE_RUNNER`.

mod common;

use common::*;
use serde_json::json;

#[test]
fn smoke() {
    let bin =
        std::env::var("BSC_SMOKE_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_bsc").to_string());
    let runner = std::env::var("BSC_SMOKE_RUNNER").ok();
    let mut program: Vec<&str> = runner.iter().map(String::as_str).collect();
    program.push(&bin);
    eprintln!("smoke test of {}", program.join(" "));

    let (dir, root) = TempDir::with_root("smoke");
    let (port, http_port) = (free_udp_port(), free_tcp_port());
    let cfg = write_config(
        dir.path(),
        &json!({"capture_manager": {"root_log_directory": root, "manager_server": {"host": "127.0.0.1", "port": http_port}},
                "handlers": [{"name": "tlm", "conn_type": "udp", "address": ["127.0.0.1", port], "file_name_pattern": "{name}-{seq}.pcap"}]}),
    );
    let mut bsc = Bsc::spawn_program(
        &program,
        &["--config", cfg.to_str().unwrap()],
        dir.path(),
        &[],
    );
    bsc.http_port = http_port;
    bsc.wait_log("running:");

    let tx = sender(port);
    for seq in 0..1000u64 {
        tx.send(&seq_payload(seq)).unwrap();
        if seq % 100 == 99 {
            wait_until("bsc keeps up", || {
                bsc.get("/stats").1[format!("['127.0.0.1', {port}]")][0]["packets"] == seq + 1
            });
        }
    }
    let (status, stats) = bsc.get("/stats");
    assert_eq!(status, 200);
    assert_eq!(stats[format!("['127.0.0.1', {port}]")][0]["reads"], 1000);
    let (status, rotated) = bsc.form("POST", "/tlm/rotate", "");
    assert_eq!(status, 200, "{rotated}");
    tx.send(&seq_payload(1000)).unwrap();
    wait_until("the record after the rotation", || {
        count_records(&root.join("tlm-0002.pcap")) == 1
    });
    let status = bsc.stop();
    assert_eq!(status.code(), Some(0), "{:?}", bsc_log_tail(&dir));
    assert_eq!(tcpdump(&root.join("tlm-0001.pcap")).0, 1000);
    assert_eq!(tcpdump(&root.join("tlm-0002.pcap")).0, 1);
    let seqs: Vec<u64> = read_pcap(&root.join("tlm-0001.pcap"))
        .2
        .iter()
        .map(|r| seq_of(&r.data))
        .collect();
    assert_eq!(seqs, (0..1000).collect::<Vec<_>>());
}

fn bsc_log_tail(dir: &TempDir) -> String {
    format!(
        "files in {}: {:?}",
        dir.path().display(),
        pcap_files(dir.path())
    )
}
