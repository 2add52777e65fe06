//! What an operator coming from AIT's `ait-bsc` would not expect, made visible:
//! handlers added over the API come back after a restart (AIT forgets them), so
//! `/stats` says where each handler came from (`origin`: `config`, `api`,
//! `restored`) and `bsc status` marks the restored ones. (The README's "Moving
//! from AIT" lists every difference.)

mod common;

use std::process::Command;

use common::*;
use serde_json::{json, Value};

/// `origin` of each handler in `/stats`, by name, sorted.
fn origins(stats: &Value) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = stats
        .as_object()
        .unwrap()
        .values()
        .flat_map(|v| v.as_array().unwrap())
        .map(|e| {
            (
                e["name"].as_str().unwrap().to_string(),
                e["origin"].as_str().unwrap_or("(none)").to_string(),
            )
        })
        .collect();
    out.sort();
    out
}

/// `bsc status` against the bsc on `port`: its exit status and stdout.
fn bsc_status(port: u16) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_bsc"))
        .args(["status", "--server", &format!("127.0.0.1:{port}")])
        .env_remove("BSC_SERVER")
        .env_remove("BSC_TOKEN")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn bsc_status_marks_handlers_restored_from_the_api_state() {
    let dir = TempDir::new("restored");
    let port = free_tcp_port();
    let cfg = json!({"capture_manager": {"root_log_directory": dir.path().join("cap"),
                                          "manager_server": {"host": "127.0.0.1", "port": port}},
                     "handlers": [{"name": "fromfile", "conn_type": "udp",
                                   "address": ["127.0.0.1", free_udp_port()]}]});
    let bsc = Bsc::with_config(dir.path(), &cfg);
    let body = format!("loc=127.0.0.1&port={}&conn_type=udp", free_udp_port());
    assert_eq!(bsc.form("POST", "/added/start", &body).0, 201);
    assert_eq!(
        origins(&bsc.get("/stats").1),
        [
            ("added".into(), "api".into()),
            ("fromfile".into(), "config".into())
        ]
    );
    let (ok, table) = bsc_status(port);
    assert!(ok, "{table}");
    assert!(
        !table.contains("(restored)"),
        "nothing is restored yet:\n{table}"
    );
    assert!(bsc.stop().success());

    // After a restart the API handler is back, and says so.
    let bsc = Bsc::with_config(dir.path(), &cfg);
    assert_eq!(
        origins(&bsc.get("/stats").1),
        [
            ("added".into(), "restored".into()),
            ("fromfile".into(), "config".into())
        ]
    );
    let (ok, table) = bsc_status(port);
    assert!(ok, "{table}");
    let row_of = |name: &str| {
        table
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("no row for {name}:\n{table}"))
            .to_string()
    };
    assert!(row_of("added").starts_with("added (restored) "), "{table}");
    assert!(!row_of("fromfile").contains("restored"), "{table}");
    assert!(
        table.contains("(restored): added over the API before bsc last started"),
        "the mark is explained below the table:\n{table}"
    );
    assert!(bsc.stop().success());
}

/// The page "Moving from AIT" (docs/moving-from-ait.md) names each difference
/// the issue found an AIT operator surprised by, with the key that changes it.
#[test]
fn the_docs_list_what_differs_from_ait_with_its_key() {
    let section = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/moving-from-ait.md"),
    )
    .unwrap();
    assert!(section.starts_with("# Moving from AIT\n"), "{section}");
    for needle in [
        "forgets handlers added over the API",
        "`capture_manager.persist: false`",
        "`NAME (restored)`",
        "at its first unit",
        "`log_dir` is the folder pattern",
        "AIT-Core issue 173",
        "`timestamp_precision: us`",
        "`timestamps: read`",
        "`rcvbuf_bytes`",
        "`manager_server.token`",
    ] {
        assert!(section.contains(needle), "{needle} in:\n{section}");
    }
}
