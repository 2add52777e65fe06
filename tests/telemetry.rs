//! Black-box tests of telemetry units (`framing`, `sequence_check`, `fecf`,
//! `pre_write_transforms`): the real binary reads a TCP peer on 127.0.0.1 that the
//! test controls (or UDP datagrams sent to 127.0.0.1), and the files must hold
//! exactly the intact units in order, the counters what the generator dropped
//! and damaged.

mod common;

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

use bsc::units::framing::testgen;

/// xorshift64: the splits, payloads and fates of units, the same every run.
fn tcp_handler(name: &str, port: u16, keys: Value) -> Value {
    let mut h = json!({"name": name, "conn_type": "tcp", "address": ["127.0.0.1", port],
                       "rotate_log": false, "file_name_pattern": format!("{name}.pcap")});
    for (k, v) in keys.as_object().unwrap() {
        h[k] = v.clone();
    }
    h
}

/// Accepts one connection and writes `data` in random splits (1 to 700 bytes,
/// now and then a pause so that bsc reads a partial unit).
fn serve(listener: &TcpListener, data: &[u8], rng: &mut Rng) -> TcpStream {
    listener.set_nonblocking(false).unwrap();
    let (mut conn, _) = listener.accept().unwrap();
    conn.set_nodelay(true).unwrap();
    let mut at = 0;
    while at < data.len() {
        let end = (at + 1 + rng.below(700) as usize).min(data.len());
        conn.write_all(&data[at..end]).unwrap();
        if rng.below(16) == 0 {
            std::thread::sleep(Duration::from_millis(2));
        }
        at = end;
    }
    conn
}

/// The `/stats` entries of the handlers on `host`:`port`.
fn entries_at(bsc: &Bsc, port: u16, host: &str) -> Vec<Value> {
    bsc.get("/stats").1[format!("['{host}', {port}]")]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// The records' payloads, read with pcap-file's reader; tcpdump must read the
/// same number of records without complaint.
fn payloads(path: &Path) -> Vec<Vec<u8>> {
    let (_, _, records) = read_pcap(path);
    let (n, err) = tcpdump(path);
    assert_eq!(n, records.len(), "tcpdump of {}: {err}", path.display());
    for w in records.windows(2) {
        assert!(w[0].ts_us <= w[1].ts_us, "time stamps go back");
    }
    records.into_iter().map(|r| r.data).collect()
}

/// Gaps and missing units a stream of counts shows (modulo `range`; steps above
/// half the range would be resets, which the generators never make).
fn gaps(counts: &[u32], range: u32) -> (u64, u64) {
    let (mut gaps, mut missing) = (0, 0);
    for w in counts.windows(2) {
        let d = (w[1] + range - w[0]) % range;
        assert!(d >= 1 && d <= range / 2);
        if d > 1 {
            gaps += 1;
            missing += u64::from(d - 1);
        }
    }
    (gaps, missing)
}

#[test]
fn space_packets_in_random_splits_with_garbage_and_gaps_are_written_intact() {
    let (dir, root) = TempDir::with_root("tlm-sp");
    let (listener, port) = tcp_peer();
    let keys =
        json!({"framing": {"kind": "ccsds_space_packet"}, "sequence_check": "ccsds_space_packet"});
    let bsc = Bsc::capturing(dir.path(), &root, vec![tcp_handler("sp", port, keys)]);
    let mut rng = Rng(0x5EED_0001);
    let apids = [0x100u16, 0x101, 0x3FF];
    // Counters start just below 16383 so that every stream wraps.
    let mut next = [16_370u32, 16_000, 16_380];
    let mut sent_counts: Vec<Vec<u32>> = vec![Vec::new(); 3];
    let (mut wire, mut intact) = (Vec::new(), Vec::new());
    let (mut garbage_runs, mut garbage_bytes) = (0u64, 0u64);
    for _ in 0..900 {
        let s = rng.below(3) as usize;
        // About one unit in 12 is dropped on purpose (a run of 1 to 3).
        if rng.below(12) == 0 {
            next[s] = (next[s] + 1 + rng.below(3) as u32) % 16384;
        }
        let count = next[s];
        next[s] = (next[s] + 1) % 16384;
        let data = {
            let n = 1 + rng.below(300) as usize;
            rng.bytes(n)
        };
        let p = testgen::space_packet(apids[s], count as u16, &data);
        wire.extend_from_slice(&p);
        intact.push(p);
        sent_counts[s].push(count);
        // Garbage between units: bytes whose version bits are not 000, so that
        // no unit can start in them (one framing error per run).
        if rng.below(20) == 0 {
            let n = 1 + rng.below(40) as usize;
            wire.extend((0..n).map(|_| 0xE0 | rng.next() as u8));
            garbage_runs += 1;
            garbage_bytes += n as u64;
        }
    }
    let conn = serve(&listener, &wire, &mut rng);
    let path = root.join("sp.pcap");
    wait_until("every unit written", || {
        entries_at(&bsc, port, "127.0.0.1")
            .first()
            .is_some_and(|s| s["packets"] == intact.len())
    });
    let s = &entries_at(&bsc, port, "127.0.0.1")[0];
    assert_eq!(s["framing_errors"], garbage_runs, "{s}");
    assert_eq!(s["bytes_discarded"], garbage_bytes, "{s}");
    let (mut want_gaps, mut want_missing) = (0, 0);
    for counts in &sent_counts {
        let (g, m) = gaps(counts, 16384);
        want_gaps += g;
        want_missing += m;
    }
    assert!(want_gaps > 10, "the generator dropped units");
    let seq = &s["sequence"];
    assert_eq!(
        (seq["gaps"].as_u64(), seq["missing"].as_u64()),
        (Some(want_gaps), Some(want_missing)),
        "{s}"
    );
    assert_eq!((seq["duplicates"] == 0, seq["resets"] == 0), (true, true));
    let streams = seq["streams"].as_array().unwrap();
    assert_eq!(streams.len(), 3);
    assert_eq!(streams[0]["id"], "apid 0x100");
    assert_eq!(
        streams[0]["last_count"],
        sent_counts[0].last().copied().unwrap()
    );
    assert_eq!(streams[0]["units"], sent_counts[0].len());

    let metrics = String::from_utf8(bsc.request("GET", "/metrics", None, b"").body).unwrap();
    for line in [
        format!("bsc_framing_errors_total{{handler=\"sp\",conn_type=\"tcp\",host=\"127.0.0.1\",port=\"{port}\",address=\"['127.0.0.1', {port}]\"}} {garbage_runs}"),
        format!("bsc_bytes_discarded_total{{handler=\"sp\",conn_type=\"tcp\",host=\"127.0.0.1\",port=\"{port}\",address=\"['127.0.0.1', {port}]\"}} {garbage_bytes}"),
        format!("bsc_units_missing_total{{handler=\"sp\",conn_type=\"tcp\",host=\"127.0.0.1\",port=\"{port}\",address=\"['127.0.0.1', {port}]\",stream=\"apid 0x101\"}} {}", gaps(&sent_counts[1], 16384).1),
        format!("bsc_sequence_gaps_total{{handler=\"sp\",conn_type=\"tcp\",host=\"127.0.0.1\",port=\"{port}\",address=\"['127.0.0.1', {port}]\",stream=\"apid 0x3FF\"}} {}", gaps(&sent_counts[2], 16384).0),
        format!("bsc_crc_errors_total{{handler=\"sp\",conn_type=\"tcp\",host=\"127.0.0.1\",port=\"{port}\",address=\"['127.0.0.1', {port}]\"}} 0"),
        format!("bsc_filtered_total{{handler=\"sp\",conn_type=\"tcp\",host=\"127.0.0.1\",port=\"{port}\",address=\"['127.0.0.1', {port}]\"}} 0"),
    ] {
        assert!(metrics.contains(&line), "{line} in\n{metrics}");
    }
    promtool_accepts(&metrics);
    drop(conn);
    assert!(bsc.stop().success());
    assert!(
        payloads(&path) == intact,
        "the file holds the intact units in order"
    );
}

#[test]
fn tm_frames_with_fecf_are_checked_and_bad_ones_written_or_dropped() {
    const LEN: usize = 6 + 40 + 2;
    let (dir, root) = TempDir::with_root("tlm-tm");
    let (listener, port) = tcp_peer();
    let tm = json!({"kind": "ccsds_tm_frame", "length": LEN, "keep_sync": true});
    let bsc = Bsc::capturing(
        dir.path(),
        &root,
        vec![
            tcp_handler(
                "all",
                port,
                json!({"framing": tm, "fecf": true,
                           "sequence_check": {"kind": "ccsds_tm_frame", "offset": 4}}),
            ),
            tcp_handler(
                "good",
                port,
                json!({"framing": tm, "fecf": true, "drop_bad_frames": true}),
            ),
            // Without the ASM, only virtual channel 1.
            tcp_handler(
                "vc1",
                port,
                json!({"framing": {"kind": "ccsds_tm_frame", "length": LEN},
                           "pre_write_transforms": ["vcid:1"]}),
            ),
        ],
    );
    let mut rng = Rng(0x5EED_0002);
    let (mut mc, mut vc) = (0u32, [250u32, 10]);
    let mut good_counts: Vec<Vec<u32>> = vec![Vec::new(); 2];
    let (mut wire, mut all, mut good, mut vc1) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut bad, mut garbage_runs, mut garbage_bytes) = (0u64, 0u64, 0u64);
    for _ in 0..700 {
        let v = rng.below(2) as usize;
        if rng.below(15) == 0 {
            let skip = 1 + rng.below(2) as u32;
            vc[v] = (vc[v] + skip) % 256;
            mc = (mc + skip) % 256;
        }
        let mut f = testgen::tm_frame(42, v as u8, mc as u8, vc[v] as u8, 0, &rng.bytes(40), true);
        let damaged = rng.below(25) == 0;
        if damaged {
            f[10 + rng.below(40) as usize] ^= 1 << rng.below(8);
            bad += 1;
        } else {
            good.push(f.clone());
            good_counts[v].push(vc[v]);
        }
        if v == 1 {
            vc1.push(f[4..].to_vec());
        }
        vc[v] = (vc[v] + 1) % 256;
        mc = (mc + 1) % 256;
        wire.extend_from_slice(&f);
        all.push(f);
        // Garbage without 0x1A cannot hold (or begin) an ASM.
        if rng.below(20) == 0 {
            let n = 1 + rng.below(30) as usize;
            wire.extend((0..n).map(|_| match rng.next() as u8 {
                0x1A => 0x1B,
                b => b,
            }));
            garbage_runs += 1;
            garbage_bytes += n as u64;
        }
    }
    let conn = serve(&listener, &wire, &mut rng);
    wait_until("every frame framed", || {
        entries_at(&bsc, port, "127.0.0.1")
            .first()
            .is_some_and(|s| s["packets"] == all.len())
    });
    let stats = entries_at(&bsc, port, "127.0.0.1");
    let (s, g) = (&stats[0], &stats[1]);
    assert!(bad > 5 && garbage_runs > 5);
    for s in [s, g] {
        assert_eq!(s["crc_errors"], bad, "{s}");
        assert_eq!(s["framing_errors"], garbage_runs, "{s}");
        assert_eq!(s["bytes_discarded"], garbage_bytes, "{s}");
    }
    assert!(g.get("sequence").is_none(), "no sequence_check: {g}");
    // A frame whose FECF fails is not sequence-checked: it counts as missing.
    let (mut want_gaps, mut want_missing) = (0, 0);
    for counts in &good_counts {
        let (g, m) = gaps(counts, 256);
        want_gaps += g;
        want_missing += m;
    }
    assert_eq!(
        (
            s["sequence"]["gaps"].as_u64(),
            s["sequence"]["missing"].as_u64()
        ),
        (Some(want_gaps), Some(want_missing)),
        "{s}"
    );
    assert_eq!(stats[2]["filtered"], all.len() - vc1.len());
    promtool_accepts(&String::from_utf8(bsc.request("GET", "/metrics", None, b"").body).unwrap());
    drop(conn);
    assert!(bsc.stop().success());
    assert!(payloads(&root.join("all.pcap")) == all);
    assert!(payloads(&root.join("good.pcap")) == good);
    assert!(payloads(&root.join("vc1.pcap")) == vc1);
}

#[test]
fn kiss_frames_with_escaped_bytes_are_unescaped() {
    let (dir, root) = TempDir::with_root("tlm-kiss");
    let (listener, port) = tcp_peer();
    let bsc = Bsc::capturing(
        dir.path(),
        &root,
        vec![tcp_handler("kiss", port, json!({"framing": "kiss"}))],
    );
    let mut rng = Rng(0x5EED_0003);
    let (mut wire, mut want) = (Vec::new(), Vec::new());
    for i in 0..400 {
        let mut data = {
            let n = 1 + rng.below(200) as usize;
            rng.bytes(n)
        };
        // Every frame holds bytes that must be escaped.
        data[0] = 0xC0;
        let last = data.len() - 1;
        data[last / 2] = 0xDB;
        wire.extend(testgen::kiss_frame((i % 3) as u8, &data));
        want.push(data);
    }
    let conn = serve(&listener, &wire, &mut rng);
    wait_until("every frame written", || {
        entries_at(&bsc, port, "127.0.0.1")
            .first()
            .is_some_and(|s| s["packets"] == want.len())
    });
    let s = &entries_at(&bsc, port, "127.0.0.1")[0];
    assert_eq!(
        (s["framing_errors"] == 0, s["bytes_discarded"] == 0),
        (true, true),
        "{s}"
    );
    drop(conn);
    assert!(bsc.stop().success());
    assert!(payloads(&root.join("kiss.pcap")) == want);
}

#[test]
fn a_reconnect_mid_unit_discards_and_counts_the_partial_unit() {
    let (dir, root) = TempDir::with_root("tlm-reconnect");
    let (listener, port) = tcp_peer();
    let keys = json!({"framing": "ccsds_space_packet", "reconnect_max_s": 1});
    let bsc = Bsc::capturing(dir.path(), &root, vec![tcp_handler("sp", port, keys)]);
    let pkts: Vec<Vec<u8>> = (0..6)
        .map(|i| testgen::space_packet(0x42, i, &[i as u8; 100]))
        .collect();
    let mut first = pkts[..3].concat();
    first.extend_from_slice(&pkts[3][..50]);
    let mut rng = Rng(0x5EED_0004);
    let conn = serve(&listener, &first, &mut rng);
    wait_until("three units", || {
        entries_at(&bsc, port, "127.0.0.1")
            .first()
            .is_some_and(|s| s["packets"] == 3)
    });
    drop(conn);
    wait_until("bsc notices the peer is gone", || {
        entries_at(&bsc, port, "127.0.0.1")[0]["connected"] == false
    });
    let s = &entries_at(&bsc, port, "127.0.0.1")[0];
    assert_eq!(
        (s["bytes_discarded"].as_u64(), s["framing_errors"].as_u64()),
        (Some(50), Some(0)),
        "{s}"
    );
    // The new connection starts with a whole unit.
    let conn = serve(&listener, &pkts[3..].concat(), &mut rng);
    wait_until("six units", || {
        entries_at(&bsc, port, "127.0.0.1")[0]["packets"] == 6
    });
    let s = &entries_at(&bsc, port, "127.0.0.1")[0];
    assert_eq!(
        (s["bytes_discarded"].as_u64(), s["framing_errors"].as_u64()),
        (Some(50), Some(0)),
        "{s}"
    );
    drop(conn);
    assert!(bsc.stop().success());
    assert!(payloads(&root.join("sp.pcap")) == pkts);
}

#[test]
fn udp_datagrams_of_one_space_packet_are_sequence_checked() {
    let (dir, root) = TempDir::with_root("tlm-udp");
    let port = free_udp_port();
    let keys = json!({"rotate_log": false, "file_name_pattern": "u.pcap", "sequence_check": "ccsds_space_packet"});
    let bsc = Bsc::capturing(dir.path(), &root, vec![udp_handler("u", port, keys)]);
    wait_until("the socket is bound", || !udp_port_is_free(port));
    let tx = sender(port);
    let counts: Vec<u32> = (16_370..16_384).chain(3..10).chain(12..20).collect();
    let mut want = Vec::new();
    for &c in &counts {
        let p = testgen::space_packet(0x7, c as u16, &[c as u8; 9]);
        tx.send(&p).unwrap();
        want.push(p);
        // Loopback never drops, but keep the kernel's queue short.
        std::thread::sleep(Duration::from_millis(1));
    }
    wait_until("every datagram", || {
        entries_at(&bsc, port, "127.0.0.1")
            .first()
            .is_some_and(|s| s["packets"] == counts.len())
    });
    let seq = entries_at(&bsc, port, "127.0.0.1")[0]["sequence"].clone();
    assert_eq!(
        (seq["gaps"].as_u64(), seq["missing"].as_u64()),
        (Some(2), Some(3 + 2)),
        "{seq}"
    );
    assert!(bsc.stop().success());
    assert!(payloads(&root.join("u.pcap")) == want);
}

#[test]
fn apid_transforms_split_one_stream_into_files_and_strip_tail_cut() {
    let (dir, root) = TempDir::with_root("tlm-split");
    let (listener, port) = tcp_peer();
    let sp = json!("ccsds_space_packet");
    let bsc = Bsc::capturing(
        dir.path(),
        &root,
        vec![
            tcp_handler(
                "a100",
                port,
                json!({"framing": sp, "pre_write_transforms": ["apid:0x100"]}),
            ),
            tcp_handler(
                "a101",
                port,
                json!({"framing": sp, "pre_write_transforms": ["apid:0x101", "strip:6", "tail:2"]}),
            ),
        ],
    );
    let mut rng = Rng(0x5EED_0005);
    let (mut wire, mut a100, mut a101) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..300u16 {
        let apid = [0x100, 0x101, 0x102][rng.below(3) as usize];
        let data = {
            let n = 3 + rng.below(100) as usize;
            rng.bytes(n)
        };
        let p = testgen::space_packet(apid, i, &data);
        match apid {
            0x100 => a100.push(p.clone()),
            0x101 => a101.push(data[..data.len() - 2].to_vec()),
            _ => {}
        }
        wire.extend(p);
    }
    let conn = serve(&listener, &wire, &mut rng);
    // `packets` counts records; a filtered unit is counted as `filtered` only.
    wait_until("every unit framed", || {
        entries_at(&bsc, port, "127.0.0.1").iter().all(|s| {
            s["packets"].as_u64().unwrap_or(0) + s["filtered"].as_u64().unwrap_or(0) == 300
        })
    });
    let stats = entries_at(&bsc, port, "127.0.0.1");
    assert_eq!(stats[0]["filtered"], 300 - a100.len());
    assert_eq!(stats[1]["filtered"], 300 - a101.len());
    assert_eq!(stats[0]["packets"], a100.len());
    assert_eq!(stats[1]["packets"], a101.len());
    let (_, all) = bsc.get("/");
    let entry = &all[format!("['127.0.0.1', {port}]")][1]["handler"];
    assert_eq!(
        entry["pre_write_transforms"],
        json!(["apid:0x101", "strip:6", "tail:2"])
    );
    assert_eq!(entry["framing"]["kind"], "ccsds_space_packet");
    assert_eq!(entry["sequence_check"], Value::Null);
    drop(conn);
    assert!(bsc.stop().success());
    assert!(payloads(&root.join("a100.pcap")) == a100);
    assert!(payloads(&root.join("a101.pcap")) == a101);
}

#[test]
fn bad_telemetry_keys_are_refused_naming_the_key() {
    let dir = TempDir::new("tlm-bad");
    let bsc = Bsc::with_config(
        dir.path(),
        &json!({"capture_manager": {"root_log_directory": dir.path().join("cap")}}),
    );
    let port = free_tcp_port();
    for (body, says) in [
        (
            format!(
                "conn_type=tcp&loc=127.0.0.1&port={port}&framing=%7B%22kind%22%3A%22fixed%22%7D"
            ),
            "framing.length",
        ),
        (
            format!("conn_type=tcp&loc=127.0.0.1&port={port}&pre_write_transforms=rot13"),
            "strip:N",
        ),
        (format!("conn_type=udp&port={port}&fecf=true"), "fecf"),
    ] {
        let (status, answer) = bsc.form("POST", "/x/start", &body);
        assert_eq!(status, 400, "{body}: {answer}");
        assert!(answer.to_string().contains(says), "{body}: {answer}");
    }
}

#[test]
fn a_udp_datagram_carries_several_units_and_never_half_of_one() {
    let (dir, root) = TempDir::with_root("tlm-udp-framed");
    let port = free_udp_port();
    let keys = json!({"rotate_log": false, "file_name_pattern": "u.pcap", "framing": "ccsds_space_packet"});
    let bsc = Bsc::capturing(dir.path(), &root, vec![udp_handler("u", port, keys)]);
    wait_until("the socket is bound", || !udp_port_is_free(port));
    let tx = sender(port);
    let pkts: Vec<Vec<u8>> = (0..5)
        .map(|i| testgen::space_packet(0x10, i, &[i as u8; 30]))
        .collect();
    // Three whole units; then one whole and the first 20 bytes of the next, which
    // the following datagram does not complete.
    tx.send(&pkts[..3].concat()).unwrap();
    let mut second = pkts[3].clone();
    second.extend_from_slice(&pkts[4][..20]);
    tx.send(&second).unwrap();
    tx.send(&pkts[4][20..]).unwrap();
    tx.send(&pkts[4]).unwrap();
    wait_until("five units", || {
        entries_at(&bsc, port, "127.0.0.1")
            .first()
            .is_some_and(|s| s["packets"] == 5 && s["bytes_discarded"] == 20 + 16)
    });
    let s = &entries_at(&bsc, port, "127.0.0.1")[0];
    assert_eq!(s["framing_errors"], 2, "{s}");
    assert!(bsc.stop().success());
    assert!(payloads(&root.join("u.pcap")) == pkts);
}

#[test]
fn a_unit_growing_past_max_length_shows_while_the_connection_stays_open() {
    let (dir, root) = TempDir::with_root("tlm-endless");
    let kiss = TcpListener::bind("127.0.0.1:0").unwrap();
    let sp = TcpListener::bind("127.0.0.1:0").unwrap();
    let (kiss_port, sp_port) = (
        kiss.local_addr().unwrap().port(),
        sp.local_addr().unwrap().port(),
    );
    let bsc = Bsc::capturing(
        dir.path(),
        &root,
        vec![
            tcp_handler("kiss", kiss_port, json!({"framing": "kiss"})),
            tcp_handler(
                "sp",
                sp_port,
                json!({"framing": {"kind": "ccsds_space_packet", "max_length": 1000}}),
            ),
        ],
    );
    let mut rng = Rng(0x5EED_0010);
    // 3 MB, no FEND: a KISS frame that never ends.
    let endless: Vec<u8> = rng.bytes(3 << 20).iter().map(|b| b & 0x7F).collect();
    let mut kiss_wire = testgen::kiss_frame(0, b"first");
    kiss_wire.extend_from_slice(&[0xC0, 0x00]);
    kiss_wire.extend_from_slice(&endless);
    // A space packet that announces 65542 bytes, past max_length 1000, and
    // idle fill after it that starts no packet (version bits 111).
    let mut sp_wire = testgen::space_packet(0x42, 0, b"first");
    sp_wire.extend_from_slice(&[0x00, 0x42, 0xC0, 0x01, 0xFF, 0xFF]);
    sp_wire.extend(std::iter::repeat_n(0xE0, 200_000));
    let kiss_conn = serve(&kiss, &kiss_wire, &mut rng);
    let sp_conn = serve(&sp, &sp_wire, &mut rng);
    // Both connections stay open: the damage shows now, not at a disconnect.
    for (port, wire_len) in [(kiss_port, kiss_wire.len()), (sp_port, sp_wire.len())] {
        wait_until("the damage counted while connected", || {
            let s = &entries_at(&bsc, port, "127.0.0.1")[0];
            s["connected"] == true
                && s["packets"] == 1
                && s["framing_errors"] == 1
                && s["bytes_discarded"].as_u64().unwrap() + 70_000 >= wire_len as u64 - 16
        });
    }
    // A whole frame after the damage is captured.
    let mut kiss_conn = kiss_conn;
    kiss_conn
        .write_all(&[&[0xC0][..], &testgen::kiss_frame(0, b"after")].concat())
        .unwrap();
    wait_until("the next frame", || {
        entries_at(&bsc, kiss_port, "127.0.0.1")[0]["packets"] == 2
    });
    let s = &entries_at(&bsc, kiss_port, "127.0.0.1")[0];
    assert_eq!(s["framing_errors"], 1, "{s}");
    assert_eq!(
        s["bytes_discarded"].as_u64(),
        Some(1 + endless.len() as u64),
        "{s}"
    );
    drop((kiss_conn, sp_conn));
    assert!(bsc.stop().success());
    assert!(payloads(&root.join("kiss.pcap")) == [b"first".to_vec(), b"after".to_vec()]);
}

#[test]
fn reads_units_log_words_and_master_channel_metrics_say_what_happened() {
    let (dir, root) = TempDir::with_root("tlm-words");
    let (listener, tcp_port) = tcp_peer();
    let udp_port = free_udp_port();
    let bsc = Bsc::capturing(
        dir.path(),
        &root,
        vec![
            json!({"name": "u", "conn_type": "udp", "address": ["127.0.0.1", udp_port],
                        "rotate_log": false, "file_name_pattern": "u.pcap",
                        "framing": "ccsds_space_packet"}),
            tcp_handler(
                "tm",
                tcp_port,
                json!({"framing": {"kind": "ccsds_tm_frame", "length": 1100},
                           "sequence_check": "ccsds_tm_frame"}),
            ),
        ],
    );
    // reads count reads (7 datagrams), packets the units in them (21).
    wait_until("the socket is bound", || !udp_port_is_free(udp_port));
    let tx = sender(udp_port);
    for d in 0..7u16 {
        let three: Vec<u8> = (0..3)
            .flat_map(|i| testgen::space_packet(0x10, d * 3 + i, &[i as u8; 30]))
            .collect();
        tx.send(&three).unwrap();
    }
    wait_until("21 units", || {
        entries_at(&bsc, udp_port, "127.0.0.1")[0]["packets"] == 21
    });
    let s = &entries_at(&bsc, udp_port, "127.0.0.1")[0];
    assert_eq!(
        (&s["reads"], &s["data_read_length"]),
        (&json!(7), &json!(format!("{} bytes", 7 * 3 * 36))),
        "{s}"
    );

    // TM frames with master channel counts 0, 1, 3: one frame missing.
    let frames: Vec<u8> = [0u8, 1, 3]
        .iter()
        .flat_map(|&mc| testgen::tm_frame(42, mc % 2, mc, mc, 0, &[mc; 1092], true))
        .collect();
    let mut rng = Rng(0x5EED_0011);
    let conn = serve(&listener, &frames, &mut rng);
    // The peer is named once.
    let line = bsc.wait_log(&format!("capturer tcp 127.0.0.1:{tcp_port}: connected"));
    assert!(!line.contains(" to 127.0.0.1"), "{line}");
    wait_until("three frames", || {
        entries_at(&bsc, tcp_port, "127.0.0.1")[0]["packets"] == 3
    });
    let master = &entries_at(&bsc, tcp_port, "127.0.0.1")[0]["sequence"]["master_channels"][0];
    assert_eq!(
        (&master["id"], &master["missing"]),
        (&json!("scid 42"), &json!(1)),
        "{master}"
    );
    let metrics = String::from_utf8(bsc.request("GET", "/metrics", None, b"").body).unwrap();
    promtool_accepts(&metrics);
    for (name, value) in [
        ("bsc_master_channel_frames_total", 3),
        ("bsc_master_channel_gaps_total", 1),
        ("bsc_master_channel_frames_missing_total", 1),
        ("bsc_master_channel_duplicates_total", 0),
        ("bsc_master_channel_resets_total", 0),
    ] {
        let series = metrics
            .lines()
            .find(|l| l.starts_with(&format!("{name}{{handler=\"tm\"")))
            .unwrap_or_else(|| panic!("{name} in:\n{metrics}"));
        assert!(
            series.ends_with(&format!(",stream=\"scid 42\"}} {value}")),
            "{series}"
        );
    }

    // A closed file: its records counted as a noun agrees, its size in KiB.
    let (code, _) = bsc.form("POST", "/tm/rotate", "");
    assert_eq!(code, 200);
    let size = 24 + 3 * (16 + 1100);
    assert_eq!(std::fs::metadata(root.join("tm.pcap")).unwrap().len(), size);
    bsc.wait_log(&format!(
        "handler tm: closed {} (3 records, 3.29 KiB)",
        root.join("tm.pcap").display()
    ));
    drop(conn);
    let (status, log) = bsc.stop_with_log();
    assert!(status.success());
    let u = log
        .iter()
        .find(|l| l.contains("handler u: closed"))
        .expect("u closed at stop");
    assert!(u.ends_with("(21 records, 1.09 KiB)"), "{u}");
}

#[test]
fn the_man_page_names_every_transform_bsc_accepts() {
    let dir = TempDir::new("tlm-man");
    let cfg = write_config(
        dir.path(),
        &json!({"handlers": [{"name": "a", "conn_type": "udp", "address": ["", 1],
                              "pre_write_transforms": ["bogus"]}]}),
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_bsc"))
        .args(["check", "--config", cfg.to_str().unwrap()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    let valid = err.split("valid: ").nth(1).expect("the valid forms");
    // `identity (or AIT's identity_transform), strip:N, ...`: each form's name.
    let names: Vec<&str> = valid
        .split(", ")
        .filter_map(|form| form.split([':', ' ']).next())
        .filter(|n| n.chars().all(|c| c.is_ascii_lowercase() || c == '_') && !n.is_empty())
        .collect();
    assert!(names.len() >= 5, "{names:?} from {err}");
    let man =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/systemd/bsc.8")).unwrap();
    let section = &man[man.find(".B pre_write_transforms").unwrap()..];
    let section = &section[..section.find("\n.TP").unwrap()];
    for name in names {
        assert!(
            section.contains(name),
            "bsc.8 pre_write_transforms lacks {name}:\n{section}"
        );
    }
}

fn all_records(root: &Path, prefix: &str) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for f in pcap_files(root) {
        if f.file_name().unwrap().to_string_lossy().starts_with(prefix) {
            let (_, _, recs) = read_pcap(&f);
            let (n, err) = tcpdump(&f);
            assert_eq!(n, recs.len(), "tcpdump {}: {err}", f.display());
            out.extend(recs.into_iter().map(|r| r.data));
        }
    }
    out
}

/// README "Telemetry units", "How a datagram becomes a record": one record
/// per unit, byte-exact, whatever the splits; the new write path (whole units
/// from the receive slot, split ones copied) combined with rotation by count
/// (1 and 3) and by size inside one read, and transforms. Three handlers on
/// one TCP peer.
#[test]
fn tcp_units_in_every_split_with_count_and_size_rotation_are_byte_exact() {
    let (dir, root) = TempDir::with_root("rt2-tcp-splits");
    let (listener, port) = tcp_peer();
    let h = |name: &str, keys: Value| {
        let mut h = json!({"name": name, "conn_type": "tcp", "address": ["127.0.0.1", port],
            "rotate_log": false, "file_name_pattern": format!("{name}-{{seq:6}}.pcap"),
            "framing": "ccsds_space_packet", "sequence_check": "ccsds_space_packet"});
        for (k, v) in keys.as_object().unwrap() {
            h[k] = v.clone();
        }
        h
    };
    let cfg = config(
        &root,
        vec![
            h(
                "one",
                json!({"rotate_max_packets": 1, "pre_write_transforms": ["strip:2", "tail:1"]}),
            ),
            h(
                "three",
                json!({"rotate_max_packets": 3, "pre_write_transforms": ["apid:0x100"]}),
            ),
            h(
                "size",
                json!({"rotate_max_bytes": 700, "rotate_max_packets": 4}),
            ),
        ],
    );
    let bsc = Bsc::with_config(dir.path(), &cfg);
    let mut rng = Rng(0xC0FFEE);
    let mut wire = Vec::new();
    let mut units = Vec::new();
    let mut counts = [0u16; 2];
    for _ in 0..600 {
        let a = rng.below(2) as usize;
        let len = 1 + rng.below(300) as usize;
        let data: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        let u = testgen::space_packet(0x100 + a as u16, counts[a], &data);
        counts[a] = (counts[a] + 1) % 16384;
        wire.extend_from_slice(&u);
        units.push(u);
    }
    listener.set_nonblocking(false).unwrap();
    let (mut conn, _) = listener.accept().unwrap();
    conn.set_nodelay(true).unwrap();
    // Splits: 1 byte at a time, exact unit boundaries, several units a write,
    // random cuts, in turns.
    let mut bounds = Vec::new();
    let mut at = 0;
    for u in &units {
        at += u.len();
        bounds.push(at);
    }
    let mut pos = 0;
    let mut ui = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    while pos < wire.len() {
        assert!(Instant::now() < deadline);
        let mode = (ui / 25) % 4;
        let end = match mode {
            0 => pos + 1,
            1 => bounds[ui],
            2 => bounds[(ui + 5).min(bounds.len() - 1)],
            _ => (pos + 1 + rng.below(900) as usize).min(wire.len()),
        };
        conn.write_all(&wire[pos..end]).unwrap();
        pos = end;
        while ui < bounds.len() && bounds[ui] <= pos {
            ui += 1;
        }
        if mode == 0 || rng.below(4) == 0 {
            std::thread::sleep(Duration::from_micros(300));
        }
    }
    wait_until("every unit in its own file of \"one\"", || {
        pcap_files(&root)
            .iter()
            .filter(|f| f.file_name().unwrap().to_string_lossy().starts_with("one-"))
            .count()
            == units.len()
    });
    drop(conn);
    wait_until("the end of the connection seen", || {
        stats_of(&bsc, port)["connected"] == false
    });
    bsc.stop();
    let one: Vec<Vec<u8>> = units.iter().map(|u| u[2..u.len() - 1].to_vec()).collect();
    let three: Vec<Vec<u8>> = units
        .iter()
        .filter(|u| u[1] == 0x00 && u[0] == 0x01)
        .cloned()
        .collect();
    let got_one = all_records(&root, "one-");
    let got_three = all_records(&root, "three-");
    let got_size = all_records(&root, "size-");
    assert_eq!(got_one.len(), one.len(), "one: records");
    assert!(got_one == one, "one: records differ");
    assert_eq!(got_three.len(), three.len(), "three: records");
    assert!(got_three == three, "three: records differ");
    assert_eq!(got_size.len(), units.len(), "size: records");
    assert!(got_size == units, "size: records differ");
    for f in pcap_files(&root) {
        let n = count_records(&f);
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        let max = if name.starts_with("one-") {
            1
        } else if name.starts_with("three-") {
            3
        } else {
            4
        };
        assert!(n >= 1 && n <= max, "{name}: {n} records");
        if name.starts_with("size-") && n > 1 {
            assert!(
                std::fs::metadata(&f).unwrap().len() <= 700,
                "{name} over 700 bytes"
            );
        }
    }
}
