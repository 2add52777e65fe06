//! Black-box tests of AIT's `bsc.yaml`, unchanged but for its root and ports: the real
//! binary reads it, captures real UDP datagrams on loopback into files that
//! tcpdump reads back; a YAML syntax error stops it with the file's line:column.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

/// AIT's `bsc.yaml` as its documentation shows it, with the root, the two capture
/// ports and the management API (host and port) filled in.
fn ait_bsc_yaml(root: &Path, http_port: u16, port1: u16, port2: u16) -> String {
    format!(
        "\
capture_manager:
    root_log_directory: {root}          # change in test
    manager_server:
        host: 127.0.0.1
        port: {http_port}

handlers:
    - name: test1
      conn_type: udp
      address: ['', {port1}]
      rotate_log: True
      rotate_log_index: day
      rotate_log_delta: 1
      file_name_pattern: '%Y-%m-%d-%H-%M-%S-{{name}}.pcap'

    - name: test2
      conn_type: udp
      address: ['', {port2}]
      path: additional_dir/test/%j
      rotate_log: False
      pre_write_transforms:
          - identity_transform
",
        root = root.display()
    )
}

/// The `.pcap` files under `root` whose names end with `-{name}.pcap`.
fn files_of(root: &Path, name: &str) -> Vec<PathBuf> {
    let suffix = format!("-{name}.pcap");
    pcap_files(root)
        .into_iter()
        .filter(|p| p.to_string_lossy().ends_with(&suffix))
        .collect()
}

fn records_of(root: &Path, name: &str) -> usize {
    files_of(root, name).iter().map(|f| count_records(f)).sum()
}

#[test]
fn ait_bsc_yaml_captures_udp_into_files_tcpdump_reads() {
    let (dir, root) = TempDir::with_root("yaml-run");
    let (port1, port2, http_port) = (free_udp_port(), free_udp_port(), free_tcp_port());
    assert_ne!(port1, port2);
    std::fs::write(
        dir.path().join("bsc.yaml"),
        ait_bsc_yaml(&root, http_port, port1, port2),
    )
    .unwrap();
    let mut bsc = Bsc::start(&["--config", "bsc.yaml"], dir.path());
    bsc.http_port = http_port;

    // The API is where the YAML said, and shows the handlers as configured.
    let (status, all) = bsc.get("/");
    assert_eq!(status, 200);
    let entry = &all[format!("['', {port1}]")][0];
    assert_eq!(entry["handler"]["name"], "test1");
    assert_eq!(entry["handler"]["rotate_log"], true);
    let entry = &all[format!("['', {port2}]")][0];
    assert_eq!(entry["handler"]["name"], "test2");
    assert_eq!(entry["handler"]["rotate_log"], false);

    const N: u64 = 200;
    let (tx1, tx2) = (sender(port1), sender(port2));
    for seq in 0..N {
        tx1.send(&seq_payload(seq)).unwrap();
        tx2.send(&seq_payload(N + seq)).unwrap();
    }
    wait_until("every datagram on disk", || {
        records_of(&root, "test1") >= N as usize && records_of(&root, "test2") >= N as usize
    });
    assert!(bsc.stop().success());

    // test1 rotates daily: a run across midnight may leave two files.
    let mut got = Vec::new();
    for f in files_of(&root, "test1") {
        assert_eq!(
            f.parent().unwrap(),
            root,
            "test1 has no path: {}",
            f.display()
        );
        let (link, _, records) = read_pcap(&f);
        assert_eq!(link, 147);
        assert_eq!(
            tcpdump(&f).0,
            records.len(),
            "tcpdump reads {}",
            f.display()
        );
        got.extend(records.into_iter().map(|r| r.data));
    }
    assert_eq!(got, (0..N).map(seq_payload).collect::<Vec<_>>());

    // test2 does not rotate: one file, in additional_dir/test/<day of year>/.
    let files = files_of(&root, "test2");
    assert_eq!(files.len(), 1, "{files:?}");
    let folder = files[0].parent().unwrap();
    assert_eq!(folder.parent().unwrap(), root.join("additional_dir/test"));
    let day = folder.file_name().unwrap().to_str().unwrap();
    assert!(
        day.len() == 3 && day.bytes().all(|b| b.is_ascii_digit()),
        "%j gives a 3-digit day of the year: {day}"
    );
    let (_, _, records) = read_pcap(&files[0]);
    let (n, stderr) = tcpdump(&files[0]);
    assert_eq!(n, N as usize, "tcpdump: {stderr}");
    let got: Vec<_> = records.into_iter().map(|r| r.data).collect();
    assert_eq!(got, (N..2 * N).map(seq_payload).collect::<Vec<_>>());
}

#[test]
fn bsc_check_reads_ait_bsc_yaml_and_yaml_content_under_any_name() {
    let (dir, root) = TempDir::with_root("yaml-check");
    let text = ait_bsc_yaml(&root, free_tcp_port(), 8500, 8501);
    // `.yaml`, `.yml`, and a name that says nothing: the content decides.
    for name in ["bsc.yaml", "bsc.yml", "bsc.conf"] {
        std::fs::write(dir.path().join(name), &text).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_bsc"))
            .args(["check", "--config", name])
            .current_dir(dir.path())
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{name}: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let lines: Vec<&str> = stdout.lines().collect();
        assert_eq!(
            lines[0],
            format!("{name}: ok, 2 handlers, root {}", root.display())
        );
        assert!(
            lines[1].starts_with(&format!("test1 udp ['', 8500] {}/", root.display())),
            "{stdout}"
        );
        assert!(lines[1].ends_with("-test1.pcap"), "{stdout}");
        assert!(
            lines[2].starts_with(&format!(
                "test2 udp ['', 8501] {}/additional_dir/test/",
                root.display()
            )),
            "{stdout}"
        );
        // Checking starts nothing.
        assert!(!root.exists());
    }
}

#[test]
fn a_yaml_syntax_error_exits_2_naming_line_and_column() {
    let (dir, root) = TempDir::with_root("yaml-bad");
    let port = free_udp_port();
    // Line 10 (`address`) is indented one space less than its handler's other keys.
    let text = ait_bsc_yaml(&root, free_tcp_port(), port, free_udp_port()).replace(
        &format!("      address: ['', {port}]"),
        &format!("     address: ['', {port}]"),
    );
    assert_eq!(text.lines().nth(9).unwrap().find('a'), Some(5));
    std::fs::write(dir.path().join("bsc.yaml"), text).unwrap();
    let wanted = "bsc.yaml:10:6: invalid YAML: did not find expected '-' indicator";

    let mut bsc = Bsc::spawn(&["--config", "bsc.yaml"], dir.path(), &[]);
    assert_eq!(bsc.wait_exit().code(), Some(2));
    let log = bsc.log();
    assert_eq!(log.len(), 1, "one line: {log:?}");
    assert!(log[0].contains(wanted), "{log:?}");
    assert!(!root.exists(), "nothing half-started");
    assert!(udp_port_is_free(port));

    let out = Command::new(env!("CARGO_BIN_EXE_bsc"))
        .args(["check", "--config", "bsc.yaml"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(wanted), "{stderr}");
}

#[test]
fn a_yaml_file_with_a_byte_order_mark_is_read_and_deep_nesting_is_refused_quickly() {
    let dir = TempDir::new("yamlbom");
    let bom = dir.path().join("bom.yaml");
    std::fs::write(
        &bom,
        format!(
            "\u{feff}capture_manager:\n  root_log_directory: {}\nhandlers: []\n",
            dir.path().join("cap").display()
        ),
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_bsc"))
        .args(["check", "--config", bom.to_str().unwrap()])
        .output()
        .unwrap();
    assert_success(&out);
    let deep = dir.path().join("deep.yaml");
    std::fs::write(&deep, format!("a: {}\n", "[".repeat(100_000))).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_bsc"))
        .args(["check", "--config", deep.to_str().unwrap()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("deep.yaml:1:68: invalid YAML: lists or maps nested deeper than 64"),
        "{err}"
    );
}

#[test]
fn a_key_given_twice_is_refused_with_both_lines_at_load_reload_and_over_the_api() {
    let (dir, root) = TempDir::with_root("dupkeys");
    let http_port = free_tcp_port();
    let port = free_udp_port();
    let good = ait_bsc_yaml(&root, http_port, port, free_udp_port()).replace(
        "      rotate_log_delta: 1\n",
        "      rotate_log_delta: 1\n      max_files: 2\n",
    );
    // Line 15 gives max_files again, after line 14.
    let twice = good.replace(
        "      file_name_pattern: '%Y",
        "      max_files: 5\n      file_name_pattern: '%Y",
    );
    assert_eq!(twice.lines().nth(13), Some("      max_files: 2"));
    assert_eq!(twice.lines().nth(14), Some("      max_files: 5"));
    std::fs::write(dir.path().join("twice.yaml"), &twice).unwrap();
    let wanted =
        "twice.yaml:15:7: invalid YAML: key handlers[0].max_files is given twice (lines 14 and 15); keep one";

    // At load: bsc and bsc check exit 2 with the key and both lines.
    let mut bsc = Bsc::spawn(&["--config", "twice.yaml"], dir.path(), &[]);
    assert_eq!(bsc.wait_exit().code(), Some(2));
    assert!(
        bsc.log().iter().any(|l| l.contains(wanted)),
        "{:?}",
        bsc.log()
    );
    assert!(!root.exists(), "nothing started");
    let (code, out) = bsc_check(dir.path(), "twice.yaml");
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains(wanted), "{out}");

    // JSON, at another level.
    std::fs::write(
        dir.path().join("twice.json"),
        "{\"capture_manager\": {\"root_log_directory\": \"/tmp\",\n  \"manager_server\": {\"port\": 1},\n  \"root_log_directory\": \"/var\"},\n \"handlers\": []}\n",
    )
    .unwrap();
    let (code, out) = bsc_check(dir.path(), "twice.json");
    assert_eq!(code, Some(2), "{out}");
    assert!(
        out.contains(
            "twice.json:3:22: invalid JSON: key capture_manager.root_log_directory is given twice (lines 1 and 3)"
        ),
        "{out}"
    );
    let mut bsc = Bsc::spawn(&["--config", "twice.json"], dir.path(), &[]);
    assert_eq!(bsc.wait_exit().code(), Some(2));

    // At reload: refused and logged, the running config kept.
    std::fs::write(dir.path().join("bsc.yaml"), &good).unwrap();
    let mut bsc = Bsc::start(&["--config", "bsc.yaml"], dir.path());
    bsc.http_port = http_port;
    assert_eq!(bsc.get("/test1/config").1[0]["handler"]["max_files"], 2);
    std::fs::write(dir.path().join("bsc.yaml"), twice.replace("twice", "bsc")).unwrap();
    bsc.signal(1);
    let line = bsc.wait_log("reload refused");
    assert!(
        line.contains("bsc.yaml:15:7: invalid YAML: key handlers[0].max_files is given twice (lines 14 and 15)"),
        "{line}"
    );
    assert_eq!(bsc.get("/test1/config").1[0]["handler"]["max_files"], 2);
    sender(port).send(&seq_payload(1)).unwrap();
    wait_until("capture goes on", || records_of(&root, "test1") == 1);

    // Over the API: a JSON body with a field twice is a 400 naming it.
    let free = free_udp_port();
    let r = bsc.request(
        "POST",
        "/dup/start",
        Some("application/json"),
        format!(
            "{{\"loc\": \"127.0.0.1\", \"port\": {free},\n \"conn_type\": \"udp\", \"port\": 1}}"
        )
        .as_bytes(),
    );
    assert_eq!(r.status, 400, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(
        r.json()["error"],
        "invalid JSON body: key port is given twice (lines 1 and 2); keep one"
    );
    assert_eq!(bsc.get("/dup/config").1, serde_json::json!([]));
    assert!(bsc.stop().success());
}
