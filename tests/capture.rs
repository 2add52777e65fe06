//! Black-box tests of the capture appliance: the real binary, real UDP datagrams on
//! loopback, files read back by pcap-file's reader and by tcpdump.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::json;

#[test]
fn ten_thousand_datagrams_arrive_whole_and_in_order() {
    let (dir, root) = TempDir::with_root("10k");
    let port = free_udp_port();
    let bsc = Bsc::capturing(
        dir.path(),
        &root,
        vec![udp_handler(
            "tlm",
            port,
            json!({"file_name_pattern": "tlm.pcap"}),
        )],
    );
    let tx = sender(port);
    for seq in 0..10_000u64 {
        tx.send(&seq_payload(seq)).unwrap();
        if seq % 1000 == 999 {
            // Stay far below the socket buffer even on a slow box.
            let want = seq as usize + 1;
            wait_until(&format!("{want} records on disk"), || {
                count_records(&root.join("tlm.pcap")) >= want
            });
        }
    }
    let path = root.join("tlm.pcap");
    wait_until("10000 records on disk", || count_records(&path) >= 10_000);
    assert!(bsc.stop().success());

    let (link, snaplen, records) = read_pcap(&path);
    assert_eq!((link, snaplen), (147, 65535));
    assert_eq!(records.len(), 10_000);
    for (i, r) in records.iter().enumerate() {
        assert_eq!(r.data, seq_payload(i as u64), "record {i}");
        assert_eq!(r.orig_len as usize, r.data.len());
    }
    assert!(
        records.windows(2).all(|w| w[0].ts_us <= w[1].ts_us),
        "timestamps go forward"
    );
    let (n, stderr) = tcpdump(&path);
    assert_eq!(n, 10_000, "{stderr}");
    assert!(
        stderr.contains("link-type 147") && stderr.contains("snapshot length 65535"),
        "{stderr}"
    );
    assert!(!stderr.contains("truncated"), "{stderr}");
}

#[test]
fn two_handlers_on_one_port_write_two_files_with_the_same_records() {
    let (dir, root) = TempDir::with_root("two");
    let port = free_udp_port();
    let bsc = Bsc::capturing(
        dir.path(),
        &root,
        vec![
            udp_handler("a", port, json!({"rotate_log": false})),
            udp_handler("b", port, json!({"path": "b-dir"})),
        ],
    );
    let tx = sender(port);
    for seq in 0..100 {
        tx.send(&seq_payload(seq)).unwrap();
    }
    wait_until("both files have 100 records", || {
        let files = pcap_files(&root);
        files.len() == 2 && files.iter().all(|f| count_records(f) == 100)
    });
    assert!(bsc.stop().success());
    let files = pcap_files(&root);
    assert!(files[0].to_str().unwrap().ends_with("-a.pcap"), "{files:?}");
    assert!(
        files[1].parent().unwrap().ends_with("b-dir")
            && files[1].to_str().unwrap().ends_with("-b.pcap"),
        "{files:?}"
    );
    let (_, _, a) = read_pcap(&files[0]);
    let (_, _, b) = read_pcap(&files[1]);
    assert_eq!(a.len(), 100);
    assert_eq!(a, b, "same records, same timestamps");
}

#[test]
fn rotation_by_second_splits_without_loss_and_closes_idle_files() {
    let (dir, root) = TempDir::with_root("rot");
    let port = free_udp_port();
    let keys =
        json!({"rotate_log_index": "second", "file_name_pattern": "%Y%m%dT%H%M%S-{name}.pcap"});
    let bsc = Bsc::capturing_driven(dir.path(), &root, vec![udp_handler("r", port, keys)]);
    // 3.5 s of bsc's clock, a datagram every 0.1 s of it.
    let mut sent = 0u64;
    while sent < 35 {
        send(&bsc, port, sent);
        sent += 1;
        advance_clock(bsc.http_port, 0.1);
    }
    // The last file is closed by the timer although no datagram follows: the
    // clock moves on in steps of 0.1 s (at most 2 s) until it is, so the close
    // is judged against its period's end, not against how far one step went.
    let files_written = || pcap_files(&root);
    let all_closed = || {
        let files = files_written();
        files.iter().all(|f| {
            !bsc.log_matching(&format!("closed {}", f.display()))
                .is_empty()
        }) && !files.is_empty()
    };
    for _ in 0..20 {
        advance_clock(bsc.http_port, 0.1);
        if all_closed() {
            break;
        }
    }
    wait_until("every file closed", all_closed);
    let files = files_written();
    assert!(files.len() >= 3, "{files:?}");
    let mut all = Vec::new();
    for f in &files {
        let (_, _, records) = read_pcap(f);
        assert!(!records.is_empty(), "no empty files: {}", f.display());
        // Every record in a file belongs to the second the file is named for.
        let name = f.file_name().unwrap().to_str().unwrap();
        for r in &records {
            let secs = (r.ts_us / 1_000_000) as i64;
            let out = std::process::Command::new("date")
                .args(["-u", "-d", &format!("@{secs}"), "+%Y%m%dT%H%M%S"])
                .output()
                .unwrap();
            let stamp = String::from_utf8_lossy(&out.stdout).trim().to_string();
            assert!(name.starts_with(&stamp), "{name} holds a record of {stamp}");
        }
        // Closed within a second of its period's end.
        let closed = bsc.log_matching(&format!("closed {}", f.display()));
        let period_end = (records[0].ts_us / 1_000_000 + 1) as f64;
        let late = log_time(&closed[0]) - period_end;
        assert!(
            (0.0..1.0).contains(&late),
            "{name} closed {late:.3}s after its period"
        );
        all.extend(records);
    }
    let seqs: Vec<u64> = all.iter().map(|r| seq_of(&r.data)).collect();
    assert_eq!(
        seqs,
        (0..sent).collect::<Vec<_>>(),
        "every datagram once, in order, across files"
    );
    assert!(bsc.stop().success());
}

#[test]
fn a_crash_left_file_is_repaired_and_resumed_and_foreign_files_are_never_touched() {
    let dir = TempDir::new("append");
    let port = free_udp_port();
    let cfg_for = |root: &std::path::Path| {
        config(
            root,
            vec![udp_handler(
                "f",
                port,
                json!({"rotate_log": false, "file_name_pattern": "fixed.pcap"}),
            )],
        )
    };
    let root = dir.path().join("cap");
    let cfg = cfg_for(&root);
    let path = root.join("fixed.pcap");

    // Sends n datagrams from `first` on, waits for them in `watch`, then stops
    // bsc with SIGTERM, or with SIGKILL (a crash) when `crash`.
    let run =
        |cfg: &serde_json::Value, first: u64, n: u64, watch: &std::path::Path, crash: bool| {
            let mut bsc = Bsc::with_config(dir.path(), cfg);
            let tx = sender(port);
            for seq in first..first + n {
                tx.send(&seq_payload(seq)).unwrap();
            }
            wait_until("records on disk", || {
                count_records(watch) as u64 >= first + n
            });
            if crash {
                bsc.signal(9);
                bsc.wait_exit();
                return bsc.log();
            }
            let (status, log) = bsc.stop_with_log();
            assert!(status.success());
            log
        };
    run(&cfg, 0, 3, &path, true);
    // The crash also cut a record: the header of a 40-byte record and 5 bytes.
    let mut bytes = std::fs::read(&path).unwrap();
    let good_len = bytes.len();
    bytes.extend_from_slice(&[
        1, 0, 0, 0, 0, 0, 0, 0, 40, 0, 0, 0, 40, 0, 0, 0, 1, 2, 3, 4, 5,
    ]);
    std::fs::write(&path, &bytes).unwrap();
    let log = run(&cfg, 3, 2, &path, false);
    assert!(
        log.iter().any(|l| l.contains("torn last record (21 B)")),
        "{log:?}"
    );
    let (_, _, records) = read_pcap(&path);
    assert_eq!(
        records.iter().map(|r| seq_of(&r.data)).collect::<Vec<_>>(),
        [0, 1, 2, 3, 4]
    );
    assert_eq!(
        std::fs::read(&path).unwrap()[..good_len],
        bytes[..good_len],
        "old records untouched"
    );
    let (n, stderr) = tcpdump(&path);
    assert_eq!(n, 5, "{stderr}");
    // Closed by a clean stop: final. The next run writes the next name.
    run(&cfg, 0, 1, &root.join("fixed-1.pcap"), false);
    assert_eq!(read_pcap(&path).2.len(), 5);

    // A new root with files bsc did not make: one with bsc's header (as AIT
    // leaves them) is appended to; one with another link type is left alone.
    let other = dir.path().join("other");
    std::fs::create_dir_all(&other).unwrap();
    let foreign = {
        let mut h = std::fs::read(&path).unwrap()[..24].to_vec();
        h[20..24].copy_from_slice(&1u32.to_ne_bytes());
        h
    };
    std::fs::write(other.join("fixed.pcap"), &foreign).unwrap();
    let log = run(&cfg_for(&other), 0, 2, &other.join("fixed-1.pcap"), false);
    assert_eq!(
        std::fs::read(other.join("fixed.pcap")).unwrap(),
        foreign,
        "foreign file untouched"
    );
    assert!(
        log.iter()
            .any(|l| l.contains("not writing into") && l.contains("fixed-1.pcap")),
        "{log:?}"
    );
    let (link, _, records) = read_pcap(&other.join("fixed-1.pcap"));
    assert_eq!((link, records.len()), (147, 2));
    let ait = dir.path().join("ait");
    std::fs::create_dir_all(&ait).unwrap();
    std::fs::write(ait.join("fixed.pcap"), &std::fs::read(&path).unwrap()[..24]).unwrap();
    run(&cfg_for(&ait), 0, 2, &ait.join("fixed.pcap"), false);
    assert_eq!(read_pcap(&ait.join("fixed.pcap")).2.len(), 2);
}

#[test]
fn sigterm_during_traffic_exits_zero_with_every_file_valid() {
    let (dir, root) = TempDir::with_root("term");
    let port = free_udp_port();
    let bsc = Bsc::capturing(
        dir.path(),
        &root,
        vec![
            udp_handler("x", port, json!({})),
            udp_handler("y", port, json!({"rotate_log_index": "second"})),
        ],
    );
    let sender_thread = std::thread::spawn(move || {
        let tx = sender(port);
        let start = Instant::now();
        let mut seq = 0u64;
        // Bounded: at most 3 s or 300,000 datagrams; ends early when bsc is gone.
        while start.elapsed() < Duration::from_secs(3) && seq < 300_000 {
            if tx.send(&seq_payload(seq)).is_err() {
                std::thread::sleep(Duration::from_millis(1));
            }
            seq += 1;
        }
    });
    wait_until("traffic on disk", || {
        pcap_files(&root).iter().any(|f| count_records(f) > 1000)
    });
    let status = bsc.stop();
    sender_thread.join().unwrap();
    assert!(status.success(), "{status:?}");
    let files = pcap_files(&root);
    assert!(files.len() >= 2);
    for f in files {
        let (_, _, records) = read_pcap(&f);
        let seqs: Vec<u64> = records.iter().map(|r| seq_of(&r.data)).collect();
        assert!(
            seqs.windows(2).all(|w| w[0] < w[1]),
            "{}: in order",
            f.display()
        );
        for r in &records {
            assert_eq!(r.data, seq_payload(seq_of(&r.data)), "byte-exact");
        }
        let (n, stderr) = tcpdump(&f);
        assert_eq!(n, records.len(), "{stderr}");
        assert!(!stderr.contains("truncated"), "{stderr}");
    }
}

#[test]
fn sighup_applies_the_difference_and_keeps_unchanged_files_open() {
    let dir = TempDir::new("hup");
    let (pa, pb, pc) = (free_udp_port(), free_udp_port(), free_udp_port());
    let root = dir.path().join("cap");
    let keep = udp_handler(
        "keep",
        pa,
        json!({"rotate_log": false, "file_name_pattern": "keep.pcap"}),
    );
    let bsc = Bsc::capturing(
        dir.path(),
        &root,
        vec![
            keep.clone(),
            udp_handler("gone", pb, json!({"file_name_pattern": "gone.pcap"})),
        ],
    );
    sender(pa).send(&seq_payload(0)).unwrap();
    sender(pb).send(&seq_payload(0)).unwrap();
    wait_until("first records", || {
        count_records(&root.join("keep.pcap")) == 1 && count_records(&root.join("gone.pcap")) == 1
    });
    assert!(!udp_port_is_free(pb));

    write_config(
        dir.path(),
        &config(
            &root,
            vec![
                keep,
                udp_handler("new", pc, json!({"file_name_pattern": "new.pcap"})),
            ],
        ),
    );
    bsc.signal(1);
    bsc.wait_log("reload: 1 handler stopped, 1 started, 0 failed, 2 running");
    wait_until("the removed handler's port is free", || {
        udp_port_is_free(pb)
    });
    sender(pa).send(&seq_payload(1)).unwrap();
    sender(pc).send(&seq_payload(7)).unwrap();
    wait_until("records after reload", || {
        count_records(&root.join("keep.pcap")) == 2 && count_records(&root.join("new.pcap")) == 1
    });
    assert!(
        bsc.log_matching("handler keep: closed").is_empty(),
        "unchanged handler kept its file open"
    );
    assert_eq!(bsc.log_matching("handler keep: opened").len(), 1);
    assert_eq!(bsc.log_matching("handler gone: closed").len(), 1);

    // A broken config on SIGHUP changes nothing and bsc keeps running.
    std::fs::write(dir.path().join("bsc.json"), "{ not json").unwrap();
    bsc.signal(1);
    bsc.wait_log("reload refused");
    sender(pa).send(&seq_payload(2)).unwrap();
    wait_until("capture goes on", || {
        count_records(&root.join("keep.pcap")) == 3
    });
    assert!(bsc.stop().success());
}

#[test]
fn bad_configs_exit_2_with_a_precise_message() {
    let dir = TempDir::new("bad");
    let port = free_udp_port();
    let occupied = std::net::UdpSocket::bind(("127.0.0.1", 0)).unwrap();
    let busy = occupied.local_addr().unwrap().port();
    let h = |extra: serde_json::Value| {
        config(&dir.path().join("cap"), vec![udp_handler("h", port, extra)])
    };
    let cases: Vec<(String, &str)> = vec![
        ("{\n  \"handlers\": [\n    {\"name\": \"a\",}\n  ]\n}".into(), "bsc.json:3:18: invalid JSON"),
        (h(json!({"rotate_log_index": "fortnight"})).to_string(), "handler #1 (\"h\"): key \"rotate_log_index\": unknown rotation unit \"fortnight\""),
        (h(json!({"file_name_pattern": "%Q-{name}.pcap"})).to_string(), "key \"file_name_pattern\": pattern \"%Q-{name}.pcap\": unknown time code %Q"),
        (h(json!({"file_name_pattern": "{pass}.pcap"})).to_string(), "uses {pass} but the handler has no key \"pass\""),
        (h(json!({"name": "../etc"})).to_string(), "key \"name\""),
        (h(json!({"address": ["127.0.0.1", 70000]})).to_string(), "key \"address\": second element must be a port/protocol number 0..65535, got 70000"),
        (h(json!({"conn_type": "serial"})).to_string(), "key \"conn_type\": \"serial\" is not one of udp, tcp, ethernet"),
        (h(json!({"rotate_log_delta": 0})).to_string(), "key \"rotate_log_delta\": must be a whole number from 1 to 1000000, got 0"),
        (h(json!({"pre_write_transforms": ["rot13"]})).to_string(), "unknown transform \"rot13\""),
        (json!({"handlers": [udp_handler("d", port, json!({})), udp_handler("d", port, json!({}))]}).to_string(), "handler \"d\" appears twice"),
        (json!({"capture_manager": {"root_dir": "/x"}}).to_string(), "capture_manager: unknown key \"root_dir\""),
        (
            json!({"capture_manager": {"manager_server": {"port": free_tcp_port()}},
                   "handlers": [udp_handler("ok", port, json!({})), udp_handler("busy", busy, json!({}))]})
            .to_string(),
            "handler \"busy\": cannot bind udp 127.0.0.1",
        ),
    ];
    for (text, needle) in cases {
        let path = dir.path().join("bsc.json");
        std::fs::write(&path, &text).unwrap();
        let mut bsc = Bsc::spawn(&["--config", path.to_str().unwrap()], dir.path(), &[]);
        let status = bsc.wait_exit();
        assert_eq!(status.code(), Some(2), "{text}");
        let log = bsc.log();
        assert_eq!(
            log.len(),
            if needle.contains("cannot bind") { 3 } else { 1 },
            "{log:?}"
        );
        let last = log.last().unwrap();
        assert!(
            last.contains(needle),
            "{text}\nwanted {needle:?} in {last:?}"
        );
        assert!(last.contains("bsc.json"), "names the file: {last}");
        // Nothing half-started: no capture folder, and the good handler's port is free again.
        assert!(!dir.path().join("cap").exists());
        assert!(udp_port_is_free(port));
    }
    drop(occupied);

    // A YAML syntax error names its line; a missing file says so.
    let yaml = dir.path().join("bsc.yaml");
    std::fs::write(&yaml, "capture_manager: [\n").unwrap();
    for (file, needle) in [
        (yaml.clone(), "invalid YAML"),
        (dir.path().join("missing.json"), "cannot read"),
    ] {
        let mut bsc = Bsc::spawn(&["--config", file.to_str().unwrap()], dir.path(), &[]);
        assert_eq!(bsc.wait_exit().code(), Some(2));
        assert!(bsc.log()[0].contains(needle), "{:?}", bsc.log());
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_bsc"))
            .args(["check", "--config", file.to_str().unwrap()])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2));
    }
}

#[test]
fn check_prints_each_handlers_file_and_version_prints() {
    let dir = TempDir::new("check");
    let path = write_config(
        dir.path(),
        &json!({"capture_manager": {"root_log_directory": "/data/bsc"}, "handlers": [
            {"name": "tlm", "conn_type": "udp", "address": ["", 8500], "path": "vc0", "file_name_pattern": "%Y-{name}-{pass}.pcap", "pass": 12}
        ]}),
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_bsc"))
        .args(["check", "--config", path.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    let year = String::from_utf8_lossy(
        &std::process::Command::new("date")
            .args(["-u", "+%Y"])
            .output()
            .unwrap()
            .stdout,
    )
    .trim()
    .to_string();
    assert!(
        stdout.contains(&format!(
            "tlm udp ['', 8500] /data/bsc/vc0/{year}-tlm-12.pcap"
        )),
        "{stdout}"
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_bsc"))
        .arg("--version")
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("bsc {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn runs_on_built_in_defaults_and_honours_state_directory() {
    let dir = TempDir::new("defaults");
    let state = dir.path().join("state");
    let mut bsc = Bsc::spawn(
        &[],
        dir.path(),
        &[("STATE_DIRECTORY", state.to_str().unwrap())],
    );
    let line = bsc.wait_log("running:");
    assert!(
        line.contains("0 handlers") && line.contains(&format!("root {}", state.display())),
        "{line}"
    );
    bsc.signal(2);
    assert!(bsc.wait_exit().success());
}

#[test]
fn ipv6_and_all_interfaces_binds() {
    let dir = TempDir::new("v6");
    let (p6, pall) = (free_udp_port(), free_udp_port());
    let root = dir.path().join("cap");
    let bsc = Bsc::capturing(
        dir.path(),
        &root,
        vec![
            json!({"name": "six", "conn_type": "udp", "address": ["::1", p6], "file_name_pattern": "six.pcap"}),
            json!({"name": "any", "conn_type": "udp", "address": ["", pall], "file_name_pattern": "any.pcap"}),
        ],
    );
    let tx6 = std::net::UdpSocket::bind("[::1]:0").unwrap();
    tx6.send_to(b"over ipv6", ("::1", p6)).unwrap();
    sender(pall).send(b"to any").unwrap();
    wait_until("both records", || {
        count_records(&root.join("six.pcap")) == 1 && count_records(&root.join("any.pcap")) == 1
    });
    assert_eq!(read_pcap(&root.join("six.pcap")).2[0].data, b"over ipv6");
    let (_, stats) = bsc.get("/stats");
    assert_eq!(
        stats[format!("['::1', {p6}]")][0]["local_address"],
        format!("[::1]:{p6}")
    );
    assert_eq!(
        stats[format!("['', {pall}]")][0]["local_address"],
        format!("0.0.0.0:{pall}")
    );
    assert!(bsc.stop().success());
}

#[test]
fn kernel_drops_are_counted_so_loss_is_visible() {
    let (dir, root) = TempDir::with_root("drops");
    let port = free_udp_port();
    let bsc = Bsc::capturing(
        dir.path(),
        &root,
        vec![udp_handler(
            "d",
            port,
            json!({"rcvbuf_bytes": 4096, "file_name_pattern": "d.pcap"}),
        )],
    );
    // bsc cannot read while stopped: the small buffer overflows.
    bsc.signal_named("STOP");
    let tx = sender(port);
    for seq in 0..2000 {
        tx.send(&seq_payload(seq)).unwrap();
    }
    bsc.signal_named("CONT");
    // One more datagram after the overflow carries the kernel's final count,
    // sent once bsc has read what the buffer held (one drain reads it all),
    // so that it finds room.
    let key = format!("['127.0.0.1', {port}]");
    wait_until("the buffer read", || {
        bsc.get("/stats").1[&key][0]["packets"]
            .as_u64()
            .is_some_and(|p| p > 0)
    });
    tx.send(&seq_payload(2000)).unwrap();
    wait_until("the last datagram", || {
        bsc.get("/stats").1[&key][0]["packets"]
            .as_u64()
            .is_some_and(|p| p > 0)
            && count_records(&root.join("d.pcap")) > 0
            && {
                let s = &bsc.get("/stats").1[&key][0];
                s["packets"].as_u64().unwrap() + s["kernel_drops"].as_u64().unwrap() == 2001
            }
    });
    let s = bsc.get("/stats").1[&key][0].clone();
    assert!(s["kernel_drops"].as_u64().unwrap() > 0, "{s}");
    let metrics = String::from_utf8(bsc.request("GET", "/metrics", None, b"").body).unwrap();
    assert!(
        metrics.contains(&format!(
            "bsc_kernel_drops_total{{conn_type=\"udp\",host=\"127.0.0.1\",port=\"{port}\",address=\"{key}\"}} {}",
            s["kernel_drops"]
        )),
        "{metrics}"
    );
    assert!(bsc.stop().success());
    assert_eq!(
        read_pcap(&root.join("d.pcap")).2.len() as u64,
        s["packets"].as_u64().unwrap()
    );
}
