//! Black-box tests of rotation by size, by count and on request: the real binary,
//! real datagrams, files read back by an independent reader.

mod common;

use std::path::PathBuf;

use common::*;
use serde_json::json;

/// Starts bsc with one UDP handler `h` on a free port with `extra` keys.
fn start(dir: &TempDir, extra: serde_json::Value) -> (Bsc, u16, PathBuf) {
    let port = free_udp_port();
    let root = dir.path().join("cap");
    let mut h = json!({"name": "h", "conn_type": "udp", "address": ["127.0.0.1", port]});
    for (k, v) in extra.as_object().unwrap() {
        h[k] = v.clone();
    }
    let bsc = Bsc::capturing(dir.path(), &root, vec![h]);
    (bsc, port, root)
}

/// Every file's records, files ordered by the sequence number of their first record.
fn files_in_order(root: &std::path::Path) -> Vec<(PathBuf, Vec<u64>)> {
    let mut files: Vec<(PathBuf, Vec<u64>)> = pcap_files(root)
        .into_iter()
        .map(|f| {
            (
                f.clone(),
                read_pcap(&f).2.iter().map(|r| seq_of(&r.data)).collect(),
            )
        })
        .collect();
    files.sort_by_key(|(_, seqs)| seqs.first().copied());
    files
}

/// Sends `n` datagrams of `size` bytes (sequence-numbered), pacing so that the
/// receive buffer never overflows, and waits until bsc has counted them all.
fn send_all(bsc: &Bsc, port: u16, n: u64, size: usize) {
    let tx = sender(port);
    for seq in 0..n {
        let mut p = seq.to_be_bytes().to_vec();
        p.resize(size, (seq % 251) as u8);
        tx.send(&p).unwrap();
        if seq % 500 == 499 {
            wait_until("bsc keeps up", || {
                bsc.get("/stats").1[format!("['127.0.0.1', {port}]")][0]["packets"] == seq + 1
            });
        }
    }
    wait_until("all counted", || {
        bsc.get("/stats").1[format!("['127.0.0.1', {port}]")][0]["packets"] == n
    });
}

#[test]
fn size_limit_keeps_every_file_under_it_and_loses_nothing() {
    let dir = TempDir::new("bysize");
    let (bsc, port, root) = start(&dir, json!({"rotate_max_bytes": 100000}));
    send_all(&bsc, port, 400, 1024);
    let (_, stats) = bsc.get("/stats");
    assert!(bsc.stop().success());
    let files = files_in_order(&root);
    assert_eq!(files.len(), 5, "{files:?}");
    let record = 16 + 1024;
    for (i, (f, _)) in files.iter().enumerate() {
        let len = std::fs::metadata(f).unwrap().len();
        assert!(len <= 100_000, "{} is {len} bytes", f.display());
        if i + 1 < files.len() {
            assert!(
                len > 100_000 - record,
                "{} is {len} bytes: not within one record of the limit",
                f.display()
            );
        }
        assert_eq!(tcpdump(f).0, read_pcap(f).2.len());
    }
    let all: Vec<u64> = files.iter().flat_map(|(_, s)| s.clone()).collect();
    assert_eq!(
        all,
        (0..400).collect::<Vec<_>>(),
        "every record once, in order, across files"
    );
    let mut names: Vec<&PathBuf> = files.iter().map(|(f, _)| f).collect();
    names.dedup();
    assert_eq!(names.len(), files.len());
    assert_eq!(
        stats["['127.0.0.1', ".to_string() + &port.to_string() + "]"][0]["rotations_size"],
        4
    );
}

#[test]
fn count_limit_gives_files_of_exactly_that_many_records() {
    let dir = TempDir::new("bycount");
    let (bsc, port, root) = start(
        &dir,
        json!({"rotate_max_packets": 1000, "file_name_pattern": "{name}-{seq}.pcap"}),
    );
    send_all(&bsc, port, 5500, 32);
    assert!(bsc.stop().success());
    let files = files_in_order(&root);
    let counts: Vec<usize> = files.iter().map(|(_, s)| s.len()).collect();
    assert_eq!(counts, [1000, 1000, 1000, 1000, 1000, 500]);
    let names: Vec<String> = files
        .iter()
        .map(|(f, _)| f.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        [
            "h-0001.pcap",
            "h-0002.pcap",
            "h-0003.pcap",
            "h-0004.pcap",
            "h-0005.pcap",
            "h-0006.pcap"
        ]
    );
    let all: Vec<u64> = files.iter().flat_map(|(_, s)| s.clone()).collect();
    assert_eq!(all, (0..5500).collect::<Vec<_>>());
}

#[test]
fn a_file_full_by_count_is_final_at_once_not_at_the_next_unit() {
    use std::os::unix::fs::PermissionsExt;
    let dir = TempDir::new("countfinal");
    let (bsc, port, root) = start(
        &dir,
        json!({"rotate_max_packets": 3, "file_name_pattern": "{name}-{seq}.pcap"}),
    );
    send_all(&bsc, port, 3, 32);
    let first = root.join("h-0001.pcap");
    // No fourth unit comes: the file is closed (read-only, journaled) anyway.
    wait_until("h-0001.pcap closed", || {
        std::fs::metadata(&first).is_ok_and(|m| m.permissions().mode() & 0o777 == 0o440)
    });
    assert_eq!(count_records(&first), 3);
    // The log line comes just after the file is made read-only, through a pipe.
    bsc.wait_log("closed");
    assert_eq!(bsc.log_matching("closed").len(), 1, "{:?}", bsc.log());
    assert!(!root.join("h-0002.pcap").exists());
    assert!(bsc.stop().success());
}

#[test]
fn forced_rotations_within_a_second_give_distinct_files() {
    let dir = TempDir::new("forced");
    let (bsc, port, root) = start(&dir, json!({}));
    let tx = sender(port);
    let mut rotated_to = Vec::new();
    for seq in 0..3u64 {
        tx.send(&seq_payload(seq)).unwrap();
        wait_until("counted", || {
            bsc.get("/stats").1[format!("['127.0.0.1', {port}]")][0]["packets"] == seq + 1
        });
        if seq < 2 {
            let (status, r) = bsc.form("POST", "/h/rotate", "");
            assert_eq!(status, 200, "{r}");
            rotated_to.push(r[0]["log_file_path"].as_str().unwrap().to_string());
        }
    }
    let (_, stats) = bsc.get("/stats");
    assert!(bsc.stop().success());
    let files = files_in_order(&root);
    assert_eq!(files.len(), 3, "{files:?}");
    for (i, (f, seqs)) in files.iter().enumerate() {
        assert_eq!(
            seqs,
            &[i as u64],
            "{}: one record each, none appended into another",
            f.display()
        );
    }
    assert_ne!(rotated_to[0], rotated_to[1]);
    assert_eq!(
        stats[format!("['127.0.0.1', {port}]")][0]["rotations_forced"],
        2
    );
}

#[test]
fn a_size_limit_below_one_datagram_puts_each_alone() {
    let dir = TempDir::new("tiny");
    let (bsc, port, root) = start(&dir, json!({"rotate_max_bytes": "100B"}));
    send_all(&bsc, port, 20, 500);
    assert!(bsc.stop().success());
    let files = files_in_order(&root);
    assert_eq!(files.len(), 20);
    for (i, (f, seqs)) in files.iter().enumerate() {
        assert_eq!(seqs, &[i as u64], "{}", f.display());
        assert_eq!(read_pcap(f).2[0].data.len(), 500, "whole datagram");
    }
}

#[test]
fn bad_sizes_name_the_units() {
    let dir = TempDir::new("badsize");
    let cfg = write_config(
        dir.path(),
        &json!({"handlers": [{"name": "h", "conn_type": "udp", "address": ["", 9], "rotate_max_bytes": "10 XB"}]}),
    );
    let mut bsc = Bsc::spawn(&["--config", cfg.to_str().unwrap()], dir.path(), &[]);
    assert_eq!(bsc.wait_exit().code(), Some(2));
    let line = bsc.log().pop().unwrap();
    assert!(
        line.contains("rotate_max_bytes") && line.contains("KB") && line.contains("GiB"),
        "{line}"
    );
}

#[test]
fn a_driven_clock_rotates_by_the_calendar_and_exists_only_when_asked_for() {
    if !cfg!(debug_assertions) {
        eprintln!("skipped: BSC_DEBUG_CLOCK exists only in builds with debug assertions");
        return;
    }
    // Without the variable the route does not exist.
    let dir = TempDir::new("undriven");
    let (bsc, _, _) = start(&dir, json!({}));
    let r = bsc.request(
        "POST",
        "/debug/clock",
        Some("application/x-www-form-urlencoded"),
        b"advance=3600",
    );
    assert_eq!(r.status, 404, "{}", String::from_utf8_lossy(&r.body));
    drop(bsc);

    let dir = TempDir::new("driven");
    let port = free_udp_port();
    let root = dir.path().join("cap");
    let h = json!({"name": "h", "conn_type": "udp", "address": ["127.0.0.1", port],
                   "rotate_log_index": "hour", "file_name_pattern": "%Y%m%dT%H%M-{name}.pcap"});
    let bsc = Bsc::with_config_env(
        dir.path(),
        &json!({"capture_manager": {"root_log_directory": root}, "handlers": [h]}),
        &[DRIVEN_CLOCK],
    );
    let port_http = bsc.http_port;
    let t0 = set_clock(port_http, "2031-05-06T07:59:58Z");
    assert!(
        (1_935_820_798_000_000..1_935_820_798_500_000).contains(&t0),
        "{t0}"
    );
    let bad = bsc.form("POST", "/debug/clock", "advance=-1");
    assert_eq!(bad.0, 400, "{}", bad.1);
    // Moves past what names and timestamps hold are refused, and the clock is
    // left where it was (it was clamped silently, then set wrong, before).
    for form in [
        "set=0001-01-01T00:00:00Z",
        "set=1969-12-31T23:59:59Z",
        "set=9999-12-31T23:59:59Z",
        "advance=18446744073709551615",
        "advance=3155760001",
    ] {
        let bad = bsc.form("POST", "/debug/clock", form);
        assert_eq!(bad.0, 400, "{form}: {}", bad.1);
    }
    let still = set_clock(port_http, "2031-05-06T07:59:58Z");
    assert!(
        (1_935_820_798_000_000..1_935_820_798_500_000).contains(&still),
        "{still}: a set lands on the time asked"
    );
    send(&bsc, port, 0);
    // An hour's file, named and stamped on the driven clock; its end comes
    // with the clock, not with the wall.
    let first = root.join("20310506T0759-h.pcap");
    wait_until("the first file", || first.exists());
    assert!(advance_clock(port_http, 2.5) >= t0 + 2_500_000);
    wait_until("the hour's file closed by its timer", || {
        !bsc.log_matching(&format!("closed {}", first.display()))
            .is_empty()
    });
    send(&bsc, port, 1);
    let second = root.join("20310506T0800-h.pcap");
    wait_until("the next hour's file", || count_records(&second) == 1);
    let stamp = |f: &std::path::Path| first_record(f).unwrap().ts_us as i64;
    assert!(
        (t0..t0 + 2_000_000).contains(&stamp(&first)),
        "received at 07:59:58 and a little: {}",
        stamp(&first)
    );
    assert!(
        stamp(&second) >= t0 + 2_500_000,
        "received after 08:00:00.5: {}",
        stamp(&second)
    );
    assert!(bsc.stop().success());
}
