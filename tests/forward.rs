//! Live forwarding (`forward`): the real binary records a stream and relays
//! each unit to targets written here (a UDP receiver, TCP servers) that check
//! order and bytes; a target that dies, comes back or never reads costs the
//! recording nothing.

mod common;

use std::io::Read;
use std::net::{TcpListener, TcpStream, UdpSocket};

use common::*;
use serde_json::{json, Value};

/// A CCSDS space packet of APID `apid` whose data is `i` (8 bytes) padded to
/// `6 + data_len` bytes in all.
fn packet(apid: u16, i: u64, data_len: usize) -> Vec<u8> {
    let mut p = Vec::with_capacity(6 + data_len);
    p.extend_from_slice(&(0x0800 | apid).to_be_bytes());
    p.extend_from_slice(&(0xC000 | (i as u16 & 0x3FFF)).to_be_bytes());
    p.extend_from_slice(&((data_len - 1) as u16).to_be_bytes());
    p.extend_from_slice(&i.to_be_bytes());
    p.extend((8..data_len).map(|k| (i as usize + k) as u8));
    p
}

/// `n` packets alternating APIDs 0x100 and 0x101, of lengths 14 to 1,030.
fn packets(n: u64) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| packet(0x100 + (i % 2) as u16, i, 8 + (i as usize * 37) % 1017))
        .collect()
}

/// The `/stats` forward entry of the first handler on `key` for `target`.
fn target_stats(bsc: &Bsc, key: &str, target: &str) -> Value {
    let stats = bsc.get("/stats").1;
    stats[key][0]["forward"]
        .as_array()
        .and_then(|a| a.iter().find(|t| t["target"] == target).cloned())
        .unwrap_or_else(|| panic!("no target {target} in {stats}"))
}

/// A UDP receiver on a free loopback port with room for a whole test's
/// datagrams ([`with_room`]), and its port.
fn udp_receiver() -> (UdpSocket, u16) {
    let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = with_room(&rx);
    (rx, port)
}

/// Gives `rx` a receive buffer that holds a whole test's datagrams
/// (`SO_RCVBUFFORCE`: the tests run as root) and a read timeout; returns its
/// port.
fn with_room(rx: &UdpSocket) -> u16 {
    rx.set_read_timeout(Some(PATIENCE)).unwrap();
    let size: libc::c_int = 64 << 20;
    // SAFETY: a valid socket and a c_int option of the size given.
    let rc = unsafe {
        libc::setsockopt(
            std::os::fd::AsRawFd::as_raw_fd(rx),
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            (&size as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "SO_RCVBUFFORCE: {}", std::io::Error::last_os_error());
    rx.local_addr().unwrap().port()
}

/// Reads from `conn` until `want` bytes came or the peer closed.
fn read_stream(conn: &mut TcpStream, want: usize) -> Vec<u8> {
    conn.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 65536];
    while got.len() < want {
        match conn.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    got
}

/// Cuts a `tcp+len://` stream into its units (a cut last one left out).
fn length_prefixed(stream: &[u8]) -> Vec<Vec<u8>> {
    let mut units = Vec::new();
    let mut at = 0;
    while at + 4 <= stream.len() {
        let len = u32::from_be_bytes(stream[at..at + 4].try_into().unwrap()) as usize;
        if at + 4 + len > stream.len() {
            break;
        }
        units.push(stream[at + 4..at + 4 + len].to_vec());
        at += 4 + len;
    }
    units
}

#[test]
fn one_tcp_source_fans_out_to_udp_and_tcp_targets_byte_exact_and_in_order() {
    let (dir, root) = TempDir::with_root("fwd-fan");
    let (source, source_port) = tcp_peer();
    let (udp_rx, udp_port) = udp_receiver();
    let (plain, plain_port) = tcp_peer();
    let (framed, framed_port) = tcp_peer();
    let udp = format!("udp://127.0.0.1:{udp_port}");
    let tcp = format!("tcp://127.0.0.1:{plain_port}");
    let tcp_len = format!("tcp+len://127.0.0.1:{framed_port}");
    let bsc = Bsc::capturing(
        dir.path(),
        &root,
        vec![json!({
            "name": "modem", "conn_type": "tcp", "address": ["127.0.0.1", source_port],
            "rotate_log": false, "file_name_pattern": "modem.pcap",
            "framing": {"kind": "ccsds_space_packet"},
            "forward": [udp, tcp, {"to": tcp_len, "filter": "apid:0x101"}],
        })],
    );
    let sent = packets(3000);
    let stream: Vec<u8> = sent.concat();
    let (mut conn, _) = source.accept().unwrap();
    let (mut plain_conn, _) = plain.accept().unwrap();
    let (mut framed_conn, _) = framed.accept().unwrap();
    // Sent in pieces that do not follow unit boundaries.
    for piece in stream.chunks(1000) {
        std::io::Write::write_all(&mut conn, piece).unwrap();
    }
    // The UDP receiver reads while the rest is checked.
    let n = sent.len();
    let udp_reader = std::thread::spawn(move || {
        let mut got = Vec::new();
        let mut buf = [0u8; 2048];
        while got.len() < n {
            match udp_rx.recv(&mut buf) {
                Ok(k) => got.push(buf[..k].to_vec()),
                Err(_) => break,
            }
        }
        got
    });
    let plain_got = read_stream(&mut plain_conn, stream.len());
    assert!(
        plain_got == stream,
        "tcp:// gets the units back to back, exactly ({} of {} bytes)",
        plain_got.len(),
        stream.len()
    );
    let odd: Vec<Vec<u8>> = sent.iter().filter(|p| p[1] == 0x01).cloned().collect();
    let framed_want: usize = odd.iter().map(|p| 4 + p.len()).sum();
    let framed_got = length_prefixed(&read_stream(&mut framed_conn, framed_want));
    assert!(
        framed_got == odd,
        "tcp+len:// with apid:0x101 gets those units, each behind its length ({} of {})",
        framed_got.len(),
        odd.len()
    );
    let udp_got = udp_reader.join().unwrap();
    assert!(
        udp_got == sent,
        "udp:// gets one datagram per unit, in order ({} of {})",
        udp_got.len(),
        sent.len()
    );

    let key = format!("['127.0.0.1', {source_port}]");
    wait_until("the counters caught up", || {
        target_stats(&bsc, &key, &tcp)["units_sent"] == json!(n)
    });
    for (target, units, bytes) in [
        (&udp, n, stream.len()),
        (&tcp, n, stream.len()),
        (&tcp_len, odd.len(), framed_want - 4 * odd.len()),
    ] {
        let s = target_stats(&bsc, &key, target);
        assert_eq!(s["units_sent"], json!(units), "{s}");
        assert_eq!(s["bytes_sent"], json!(bytes), "{s}");
        assert_eq!(s["units_dropped"], 0, "{s}");
        assert_eq!(s["last_error"], Value::Null, "{s}");
        let state = if target == &udp { "ready" } else { "connected" };
        assert_eq!(s["state"], state, "{s}");
    }
    // `GET /` shows the key as given.
    let (_, entries) = bsc.get("/");
    assert_eq!(
        entries[&key][0]["handler"]["forward"],
        json!([udp, tcp, {"to": tcp_len, "filter": "apid:0x101"}])
    );
    drop(conn);
    assert!(bsc.stop().success());
    assert!(
        payloads_of(&root.join("modem.pcap")) == sent,
        "the recording has every unit"
    );
}

/// Sends datagrams `from..to` ([`seq_payload`]) to 127.0.0.1:`port` in bursts
/// the handler keeps up with, waiting until it counted them all.
fn send_units(bsc: &Bsc, port: u16, from: u64, to: u64) {
    let s = sender(port);
    let before = stats_of(bsc, port)["packets"].as_u64().unwrap();
    for i in from..to {
        s.send(&seq_payload(i)).unwrap();
        let counted = before + i - from + 1;
        if i % 500 == 499 || i + 1 == to {
            wait_until("the handler keeps up", || {
                stats_of(bsc, port)["packets"].as_u64() >= Some(counted)
            });
        }
    }
}

/// The `/stats` forward entry of the handler on 127.0.0.1:`port`, target 0.
fn first_target(bsc: &Bsc, port: u16) -> Value {
    stats_of(bsc, port)["forward"][0].clone()
}

/// Sent + dropped + queued: every unit a target was offered, by bsc's count.
fn accounted(t: &Value) -> u64 {
    ["units_sent", "units_dropped", "queued_units"]
        .iter()
        .map(|k| t[k].as_u64().unwrap())
        .sum()
}

#[test]
fn a_tcp_target_killed_and_restarted_mid_stream_resumes_with_whole_units() {
    let (dir, root) = TempDir::with_root("fwd-restart");
    let port = free_udp_port();
    let (listener, target_port) = tcp_peer();
    let bsc = Bsc::capturing_driven(
        dir.path(),
        &root,
        vec![udp_handler(
            "tm",
            port,
            json!({"rotate_log": false, "file_name_pattern": "tm.pcap",
                   "forward": [format!("tcp+len://127.0.0.1:{target_port}")]}),
        )],
    );
    let (mut first, _) = listener.accept().unwrap();
    send_units(&bsc, port, 0, 1000);
    let want: usize = (0..1000).map(|i| 4 + seq_payload(i).len()).sum();
    let got = length_prefixed(&read_stream(&mut first, want));
    assert!(got == (0..1000).map(seq_payload).collect::<Vec<_>>());

    // The consumer dies; units keep coming.
    drop(first);
    drop(listener);
    send_units(&bsc, port, 1000, 2000);
    wait_until("bsc notices the target is gone", || {
        first_target(&bsc, port)["state"] != "connected"
    });
    send_units(&bsc, port, 2000, 2500);
    let down = first_target(&bsc, port);
    assert!(down["last_error"].is_string(), "{down}");

    // It comes back on the same port: bsc reconnects after its back-off.
    let listener = TcpListener::bind(("127.0.0.1", target_port)).unwrap();
    let accepting = std::thread::spawn(move || listener.accept().unwrap().0);
    wait_advancing(bsc.http_port, 0.5, "reconnected", || {
        first_target(&bsc, port)["state"] == "connected"
    });
    let mut second = accepting.join().unwrap();
    send_units(&bsc, port, 2500, 3000);
    wait_until("every unit offered is sent or dropped", || {
        first_target(&bsc, port)["queued_units"] == 0
    });
    let t = first_target(&bsc, port);
    assert_eq!(accounted(&t), 3000, "{t}");
    assert!(bsc.stop().success());
    // What the second connection carried: whole units from its first byte,
    // in order, every one after the restart among them.
    let stream = read_stream(&mut second, usize::MAX);
    let units = length_prefixed(&stream);
    let whole: usize = units.iter().map(|u| 4 + u.len()).sum();
    assert_eq!(whole, stream.len(), "no half unit on the wire");
    let seqs: Vec<u64> = units.iter().map(|u| seq_of(u)).collect();
    for (u, &s) in units.iter().zip(&seqs) {
        assert!(*u == seq_payload(s), "unit {s} byte-exact");
    }
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "in order");
    assert!(
        (2500..3000).all(|s| seqs.contains(&s)),
        "the units after the restart all arrived"
    );
    assert_eq!(
        count_records(&root.join("tm.pcap")),
        3000,
        "the recording is complete"
    );
}

#[test]
fn a_target_that_never_reads_costs_capture_nothing_and_its_drops_are_counted() {
    let (dir, root) = TempDir::with_root("fwd-stall");
    let port = free_udp_port();
    let (listener, target_port) = tcp_peer();
    let (udp_rx, udp_port) = udp_receiver();
    let bsc = Bsc::capturing(
        dir.path(),
        &root,
        vec![udp_handler(
            "tm",
            port,
            json!({"rotate_log": false, "file_name_pattern": "tm.pcap",
                   "forward": [format!("tcp://127.0.0.1:{target_port}"), format!("udp://127.0.0.1:{udp_port}")],
                   "forward_queue_bytes": "64KiB"}),
        )],
    );
    // Accepted, never read: the kernel's buffers fill, then bsc's queue.
    let (_stalled, _) = listener.accept().unwrap();
    let n: u64 = 40_000;
    let s = sender(port);
    let big = vec![0x5Au8; 1000];
    for i in 0..n {
        let mut p = i.to_be_bytes().to_vec();
        p.extend_from_slice(&big);
        s.send(&p).unwrap();
        if i % 500 == 499 {
            wait_until("the handler keeps up", || {
                stats_of(&bsc, port)["packets"].as_u64() >= Some(i + 1)
            });
        }
    }
    wait_until("all counted", || stats_of(&bsc, port)["packets"] == n);
    let stalled = first_target(&bsc, port);
    assert!(stalled["units_dropped"].as_u64().unwrap() > 0, "{stalled}");
    assert!(
        stalled["queued_bytes"].as_u64().unwrap() <= 64 * 1024,
        "{stalled}"
    );
    assert_eq!(accounted(&stalled), n, "{stalled}");
    assert_eq!(stalled["state"], "connected");
    // The other target got everything: one slow consumer does not hold it up.
    let other = stats_of(&bsc, port)["forward"][1].clone();
    assert_eq!(
        (
            other["units_sent"].as_u64(),
            other["units_dropped"].as_u64()
        ),
        (Some(n), Some(0)),
        "{other}"
    );
    let mut buf = [0u8; 2048];
    for i in 0..n {
        let k = udp_rx.recv(&mut buf).unwrap();
        assert_eq!(u64::from_be_bytes(buf[..8].try_into().unwrap()), i);
        assert_eq!(k, 1008);
    }
    let stats = stats_of(&bsc, port);
    assert_eq!(
        (
            stats["records_lost"].as_u64(),
            stats["kernel_drops"].as_u64()
        ),
        (Some(0), Some(0)),
        "{stats}"
    );
    // Memory stays bounded: the queue's 64 KiB, not the 40 MB offered.
    let metrics = bsc.metrics();
    let rss: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("process_resident_memory_bytes "))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no resident memory in {metrics}"));
    assert!(rss < 64e6, "resident memory {rss}");
    assert!(bsc.stop().success());
    assert_eq!(
        count_records(&root.join("tm.pcap")),
        n as usize,
        "capture lossless"
    );
}

#[test]
fn bad_targets_are_refused_at_every_entry_point_and_bsc_keeps_running() {
    let (dir, root) = TempDir::with_root("fwd-bad");
    let port = free_udp_port();
    let bad: Vec<(Value, &str)> = vec![
        (json!(["http://127.0.0.1:80"]), "unknown scheme \"http\""),
        (json!(["udp://bad;host:9"]), "has ';'"),
        (json!(["tcp://127.0.0.1:0"]), "port 0"),
        (
            json!([format!("udp://127.0.0.1:{port}")]),
            "own capture socket",
        ),
        (
            json!([{"to": "udp://127.0.0.1:9", "filter": "apid:0x999"}]),
            "0..2047",
        ),
        (json!(5), "list of targets"),
    ];
    // The config file: refused before anything starts.
    for (forward, says) in &bad {
        let cfg = config(
            &root,
            vec![udp_handler("h", port, json!({ "forward": forward }))],
        );
        let path = write_config(dir.path(), &cfg);
        let (code, text) = bsc_check(dir.path(), &path);
        assert_eq!(code, Some(2), "{forward}: {text}");
        assert!(
            text.contains("key \"forward\"") && text.contains(says),
            "{forward}: {text}"
        );
    }
    let good = format!("udp://127.0.0.1:{}", free_udp_port());
    let bsc = Bsc::capturing(
        dir.path(),
        &root,
        vec![udp_handler("h", port, json!({"forward": [good]}))],
    );
    // The API: each form of the field, a clear 400.
    let api_port = free_udp_port();
    for (body, says) in [
        (
            format!("conn_type=udp&port={api_port}&forward=http%3A%2F%2Fa%3A1"),
            "unknown scheme",
        ),
        (
            format!(
                "conn_type=udp&port={api_port}&forward=udp%3A%2F%2Fa%3A1&forward=udp%3A%2F%2Fa%3A0"
            ),
            "port 0",
        ),
        (
            format!("conn_type=udp&port={api_port}&forward=%5B%7B%22to%22%3A5%7D%5D"),
            "needs \"to\"",
        ),
        (
            format!("conn_type=udp&port={api_port}&forward=%5B1%2C"),
            "not valid JSON",
        ),
        (
            format!("conn_type=udp&port={api_port}&forward=udp%3A%2F%2F127.0.0.1%3A{api_port}"),
            "own capture socket",
        ),
        (
            format!("conn_type=udp&port={api_port}&forward_queue_bytes=1MiB"),
            "only applies with forward",
        ),
    ] {
        let (status, answer) = bsc.form("POST", "/a/start", &body);
        assert_eq!(status, 400, "{body}: {answer}");
        assert!(
            answer["error"].as_str().unwrap().contains(says),
            "{body}: {answer}"
        );
    }
    let (status, answer) = bsc.form("POST", "/a/start", &format!("conn_type=udp&port={api_port}&forward=udp%3A%2F%2F127.0.0.1%3A9%20tcp%2Blen%3A%2F%2F127.0.0.1%3A9"));
    assert_eq!(status, 201, "{answer}");

    // A reload with a bad target changes nothing.
    let cfg = config(
        &root,
        vec![udp_handler(
            "h",
            port,
            json!({"forward": ["udp://127.0.0.1:0"]}),
        )],
    );
    write_config(dir.path(), &cfg);
    bsc.signal(1);
    bsc.wait_log("reload refused");
    send(&bsc, port, 0);
    assert_eq!(stats_of(&bsc, port)["forward"][0]["target"], good.as_str());
    assert!(bsc.stop().success());
}

#[test]
fn a_reload_that_changes_forward_moves_the_stream_to_the_new_targets() {
    let (dir, root) = TempDir::with_root("fwd-reload");
    let port = free_udp_port();
    let (old_rx, old_port) = udp_receiver();
    let (new_rx, new_port) = udp_receiver();
    let handler = |forward: Value| {
        config(
            &root,
            vec![udp_handler(
                "tm",
                port,
                json!({"rotate_log": false, "file_name_pattern": "tm-{seq}.pcap", "forward": forward}),
            )],
        )
    };
    let bsc = Bsc::with_config(
        dir.path(),
        &handler(json!([format!("udp://127.0.0.1:{old_port}")])),
    );
    send_units(&bsc, port, 0, 100);
    write_config(
        dir.path(),
        &handler(json!([format!("udp://127.0.0.1:{new_port}")])),
    );
    bsc.signal(1);
    bsc.wait_log("reload: 1 handler stopped, 1 started, 0 failed, 1 running");
    send_units(&bsc, port, 100, 200);
    let recv_all = |rx: &UdpSocket, n: u64| -> Vec<u64> {
        let mut buf = [0u8; 2048];
        (0..n)
            .map(|_| {
                let k = rx.recv(&mut buf).unwrap();
                seq_of(&buf[..k])
            })
            .collect()
    };
    assert_eq!(recv_all(&old_rx, 100), (0..100).collect::<Vec<_>>());
    assert_eq!(recv_all(&new_rx, 100), (100..200).collect::<Vec<_>>());
    old_rx.set_nonblocking(true).unwrap();
    assert!(
        old_rx.recv(&mut [0u8; 64]).is_err(),
        "nothing more for the old target"
    );
    let (_, entries) = bsc.get("/");
    assert_eq!(
        entries[format!("['127.0.0.1', {port}]")][0]["handler"]["forward"][0],
        format!("udp://127.0.0.1:{new_port}")
    );
    // Removing the key stops forwarding, and the stats say so.
    write_config(dir.path(), &handler(Value::Null));
    bsc.signal(1);
    bsc.wait_log("reload: 1 handler stopped, 1 started, 0 failed, 1 running");
    wait_until("no forward entry", || {
        stats_of(&bsc, port).get("forward").is_none()
    });
    assert!(bsc.stop().success());
}

#[test]
fn a_target_that_is_down_shows_in_metrics_health_and_status() {
    let (dir, root) = TempDir::with_root("fwd-visible");
    let port = free_udp_port();
    let down_port = free_tcp_port();
    let (_rx, udp_port) = udp_receiver();
    let down = format!("tcp://127.0.0.1:{down_port}");
    let udp = format!("udp://127.0.0.1:{udp_port}");
    let cfg = json!({
        "capture_manager": {"root_log_directory": root, "peer_unreachable_s": 5},
        "handlers": [udp_handler("tm", port, json!({"forward": [udp, down]}))],
    });
    let bsc = Bsc::with_config_env(dir.path(), &cfg, &[DRIVEN_CLOCK]);
    send_units(&bsc, port, 0, 10);
    wait_until("the down target refused", || {
        stats_of(&bsc, port)["forward"][1]["last_error"].is_string()
    });
    assert_eq!(bsc.get("/health").1["status"], "ok", "not yet for long");
    wait_advancing(bsc.http_port, 1.0, "health degraded", || {
        bsc.get("/health").1["status"] == "degraded"
    });
    let (_, health) = bsc.get("/health");
    let reasons = health["reasons"].to_string();
    assert!(
        reasons.contains(&format!("forward {down} (handler tm): unreachable for")),
        "{health}"
    );

    let text = bsc.metrics();
    promtool_accepts(&text);
    let series = |name: &str, target: &str| -> f64 {
        text.lines()
            .find(|l| {
                l.starts_with(&format!("{name}{{")) && l.contains(&format!("target=\"{target}\""))
            })
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {name} for {target} in {text}"))
    };
    assert_eq!(series("bsc_forward_units_total", &udp), 10.0);
    assert_eq!(series("bsc_forward_connected", &udp), 1.0);
    assert_eq!(series("bsc_forward_connected", &down), 0.0);
    assert_eq!(
        series("bsc_forward_dropped_total", &down),
        0.0,
        "queued, not dropped"
    );
    assert!(text.contains("handler=\"tm\""));

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_bsc"))
        .args([
            "status",
            "--server",
            &format!("127.0.0.1:{}", bsc.http_port),
        ])
        .env_remove("BSC_SERVER")
        .env_remove("BSC_TOKEN")
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains(&format!("tm: forward {down} backoff")),
        "{said}"
    );
    assert!(bsc.stop().success());
}

/// The `/` entries of handlers named `name` (none when it was refused).
fn running(bsc: &Bsc, name: &str) -> usize {
    let (_, all) = bsc.get("/");
    all.as_object()
        .unwrap()
        .values()
        .flat_map(|v| v.as_array().unwrap())
        .filter(|e| e["handler"]["name"] == name)
        .count()
}

#[test]
fn targets_that_lead_back_into_bsc_are_refused_at_every_entry_point() {
    let (dir, root) = TempDir::with_root("fwd-loops");
    let api = free_tcp_port();
    let (pa, pb, px, py) = (
        free_udp_port(),
        free_udp_port(),
        free_udp_port(),
        free_udp_port(),
    );
    let (_rx, free) = udp_receiver();
    let with_api = |handlers: Vec<Value>| {
        json!({"capture_manager": {"root_log_directory": root,
            "manager_server": {"host": "127.0.0.1", "port": api}}, "handlers": handlers})
    };
    let lpb = udp_handler("lpb", pb, json!({}));
    let eth = json!({"name": "ethf", "conn_type": "ethernet", "address": ["lo", 2048],
        "forward": ["udp://127.0.0.1:18994"]});
    // Each rule: the handlers, and what the refusal says.
    let bad: Vec<(Vec<Value>, String)> = vec![
        (vec![eth], "ethernet handler cannot forward".into()),
        (
            vec![
                udp_handler("lpa", pa, json!({"forward": [format!("udp://127.0.0.1:{pb}")]})),
                udp_handler("lpb", pb, json!({"forward": [format!("udp://127.0.0.1:{pa}")]})),
            ],
            format!("udp://127.0.0.1:{pb}, a target of handler \"lpa\", is the capture socket of handler \"lpb\""),
        ),
        (
            vec![udp_handler("v", pa, json!({"forward": [format!("tcp://localhost:{api}")]}))],
            format!("tcp://localhost:{api} is bsc's own management API"),
        ),
        (
            vec![udp_handler("v", pa, json!({"forward": [format!("udp://0.0.0.0:{api}")]}))],
            "own management API".into(),
        ),
        (
            vec![udp_handler(
                "d",
                pa,
                json!({"forward": [format!("udp://127.0.0.1:{free}"), format!("udp://localhost:{free}")]}),
            )],
            format!("udp://localhost:{free} is given twice (udp://127.0.0.1:{free} is the same socket)"),
        ),
    ];
    // The config file (`bsc check`, and a start): refused before anything starts.
    for (handlers, says) in &bad {
        let path = write_config(dir.path(), &with_api(handlers.clone()));
        let (code, text) = bsc_check(dir.path(), &path);
        assert_eq!(code, Some(2), "{says}: {text}");
        assert!(
            text.contains("key \"forward\"") && text.contains(says.as_str()),
            "{text}"
        );
    }

    // The API: lpb runs from the config file, fw forwards to px.
    let fw = udp_handler(
        "fw",
        py,
        json!({"forward": [format!("udp://127.0.0.1:{px}")]}),
    );
    let bsc = Bsc::with_config(dir.path(), &with_api(vec![lpb.clone(), fw.clone()]));
    assert_eq!(bsc.http_port, api);
    let url = |u: String| enc(&u);
    for (path, body, status, says) in [
        (
            "/ethf/start",
            format!("loc=lo&port=2048&conn_type=ethernet&forward={}", url("udp://127.0.0.1:18994".into())),
            400,
            "ethernet handler cannot forward".to_string(),
        ),
        (
            "/lpa/start",
            format!("conn_type=udp&port={pa}&forward={}", url(format!("udp://127.0.0.1:{pb}"))),
            409,
            "is the capture socket of handler \"lpb\"".into(),
        ),
        // Symmetric: a handler whose socket a running one forwards to.
        (
            "/lpx/start",
            format!("conn_type=udp&port={px}"),
            409,
            format!("udp://127.0.0.1:{px}, a target of handler \"fw\", is the capture socket of handler \"lpx\""),
        ),
        (
            "/vic/start",
            format!("conn_type=udp&port={pa}&forward={}", url(format!("tcp://127.0.0.1:{api}"))),
            400,
            format!("tcp://127.0.0.1:{api} is bsc's own management API (127.0.0.1:{api})"),
        ),
        (
            "/vic/start",
            format!("conn_type=udp&port={pa}&forward={}", url(format!("tcp+len://[::ffff:127.0.0.1]:{api}"))),
            400,
            "own management API".into(),
        ),
        (
            "/d/start",
            format!("conn_type=udp&port={pa}&forward={}", url(format!("udp://127.0.0.1:{free} udp://localhost:{free}"))),
            400,
            "is given twice".into(),
        ),
    ] {
        let (got, answer) = bsc.form("POST", path, &body);
        assert_eq!(got, status, "{body}: {answer}");
        assert!(answer["error"].as_str().unwrap().contains(&says), "{body}: {answer}");
    }
    for name in ["ethf", "lpa", "lpx", "vic", "d"] {
        assert_eq!(running(&bsc, name), 0, "{name} refused");
    }
    // A handler added over the API whose target is what a reload then adds.
    let (got, answer) = bsc.form(
        "POST",
        "/apifw/start",
        &format!(
            "conn_type=udp&port={pa}&forward={}",
            url(format!("udp://127.0.0.1:{free}"))
        ),
    );
    assert_eq!(got, 201, "{answer}");

    // A reload: a config with a loop is refused whole; a handler whose socket
    // a running (API) handler forwards to is not started, the rest are.
    for (handlers, says) in &bad {
        let mut all = vec![fw.clone()];
        all.extend(handlers.iter().filter(|h| h["name"] != "lpb").cloned());
        all.push(lpb.clone());
        write_config(dir.path(), &with_api(all));
        let before = bsc.log_matching("reload refused").len();
        bsc.signal(1);
        wait_until("reload refused", || {
            bsc.log_matching("reload refused").len() > before
        });
        let line = bsc.log_matching("reload refused").pop().unwrap();
        assert!(line.contains(says.as_str()), "{says}: {line}");
    }
    let fresh = udp_handler("fresh", free, json!({}));
    write_config(dir.path(), &with_api(vec![lpb, fw, fresh]));
    bsc.signal(1);
    let line = bsc.wait_log("reload: handler fresh:");
    assert!(
        line.contains(&format!("udp://127.0.0.1:{free}, a target of handler \"apifw\", is the capture socket of handler \"fresh\"")),
        "{line}"
    );
    bsc.wait_log("reload: 0 handlers stopped, 0 started, 1 failed, 3 running");
    assert_eq!(running(&bsc, "fresh"), 0);
    // Capture and forwarding go on: lpb records, fw forwards.
    send(&bsc, pb, 0);
    send(&bsc, py, 0);
    wait_until("fw forwarded", || {
        stats_of(&bsc, py)["forward"][0]["units_sent"] == 1
    });
    assert!(bsc.stop().success());
}

#[test]
fn a_udp_target_whose_host_is_not_found_degrades_health_at_once() {
    let (dir, root) = TempDir::with_root("fwd-nohost");
    let port = free_udp_port();
    let target = "udp://nonexistent.invalid:18600";
    let cfg = config(
        &root,
        vec![udp_handler("tm", port, json!({"forward": [target]}))],
    );
    let bsc = Bsc::with_config(dir.path(), &cfg);
    send_units(&bsc, port, 0, 3);
    let (_, health) = bsc.get("/health");
    assert_eq!(health["status"], "degraded", "{health}");
    assert!(
        health["reasons"]
            .to_string()
            .contains(&format!("forward {target} (handler tm): cannot send")),
        "{health}"
    );
    assert_eq!(stats_of(&bsc, port)["forward"][0]["state"], "error");
    bsc.stop();
}

/// bsc forwarding what a UDP handler records to a receiver here through a
/// 64 KiB queue (a batch's 64 units of 1,008 bytes), after a burst of `n`
/// such datagrams (each starting with its index) sent as fast as the test
/// can: every one recorded and the target's queue empty.
struct Burst {
    _dir: TempDir,
    root: std::path::PathBuf,
    bsc: Bsc,
    port: u16,
    rx: UdpSocket,
}

fn burst(tag: &str, n: u64) -> Burst {
    let (dir, root) = TempDir::with_root(tag);
    let port = free_udp_port();
    let (rx, udp_port) = udp_receiver();
    let bsc = Bsc::capturing(
        dir.path(),
        &root,
        vec![udp_handler(
            "tm",
            port,
            json!({"rotate_log": false, "file_name_pattern": "tm.pcap",
                   "forward": [format!("udp://127.0.0.1:{udp_port}")],
                   "forward_queue_bytes": "64KiB"}),
        )],
    );
    let s = sender(port);
    let body = vec![0xA5u8; 1000];
    for i in 0..n {
        let mut p = i.to_be_bytes().to_vec();
        p.extend_from_slice(&body);
        s.send(&p).unwrap();
    }
    wait_until("all recorded", || stats_of(&bsc, port)["packets"] == n);
    wait_until("the target's queue empty", || {
        first_target(&bsc, port)["queued_units"] == 0
    });
    Burst {
        _dir: dir,
        root,
        bsc,
        port,
        rx,
    }
}

/// A burst larger than a drain takes (1,024 datagrams) with a target queue
/// smaller than a drain's units: whichever way a run goes (bsc holds the
/// target's units back while capture is behind, and drops and counts what
/// its queue cannot hold), every datagram is recorded, every unit is
/// accounted for once, and what the target receives is in order.
#[test]
fn a_burst_beyond_a_drain_is_recorded_whole_and_the_target_s_share_counted() {
    // 10,000 of 1 KiB: 23 MB of bsc's 48 MiB receive buffer (2,304 bytes
    // charged a datagram), so the kernel drops none even if bsc is slow.
    let n: u64 = 10_000;
    let b = burst("fwd-burst", n);
    let t = first_target(&b.bsc, b.port);
    assert_eq!(accounted(&t), n, "{t}");
    let stats = stats_of(&b.bsc, b.port);
    assert_eq!(stats["kernel_drops"], 0, "{stats}");
    let mut buf = [0u8; 2048];
    let mut last = None;
    for _ in 0..t["units_sent"].as_u64().unwrap() {
        let k = b.rx.recv(&mut buf).unwrap();
        assert_eq!(k, 1008);
        let i = u64::from_be_bytes(buf[..8].try_into().unwrap());
        assert!(last.is_none_or(|l| i > l), "{i} after {last:?}");
        last = Some(i);
    }
    assert!(b.bsc.stop().success());
    assert_eq!(count_records(&b.root.join("tm.pcap")), n as usize);
}

#[test]
fn a_burst_the_capture_socket_has_room_for_is_forwarded_whole() {
    // 8,000 of 1 KiB: 18 MB charged, under half of bsc's 48 MiB receive
    // buffer. Capture is never at risk, so forwarding never waits for the
    // socket to run dry, and a queue that holds one batch drops nothing
    // however far bsc's drains lag.
    let n: u64 = 8_000;
    let b = burst("fwd-room", n);
    let t = first_target(&b.bsc, b.port);
    assert_eq!(
        (t["units_sent"].as_u64(), t["units_dropped"].as_u64()),
        (Some(n), Some(0)),
        "{t}"
    );
    let mut buf = [0u8; 2048];
    for i in 0..n {
        let k = b.rx.recv(&mut buf).unwrap();
        assert_eq!(k, 1008);
        assert_eq!(u64::from_be_bytes(buf[..8].try_into().unwrap()), i);
    }
    assert!(b.bsc.stop().success());
    assert_eq!(count_records(&b.root.join("tm.pcap")), n as usize);
}

/// bsc recording a TCP source of space packets (`framing`, into
/// `modem.pcap`) that forwards to `forward`, connected to a peer here: bsc,
/// the peer's end of the connection, and the source's port.
fn framed_modem(dir: &TempDir, root: &std::path::Path, forward: Value) -> (Bsc, TcpStream, u16) {
    let (source, source_port) = tcp_peer();
    let bsc = Bsc::capturing(
        dir.path(),
        root,
        vec![json!({
            "name": "modem", "conn_type": "tcp", "address": ["127.0.0.1", source_port],
            "rotate_log": false, "file_name_pattern": "modem.pcap",
            "framing": {"kind": "ccsds_space_packet"},
            "forward": forward,
        })],
    );
    let (conn, _) = source.accept().unwrap();
    (bsc, conn, source_port)
}

/// Writes `units` to `conn` in one piece (one read of bsc's takes a run of
/// them, so runs of one length go out offloaded) and returns them.
fn write_units(conn: &mut TcpStream, units: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
    std::io::Write::write_all(conn, &units.concat()).unwrap();
    units
}

#[test]
fn units_cross_a_smaller_or_shrinking_mtu_whole_and_in_order() {
    let (dir, root) = TempDir::with_root("fwd-mtu");
    let veth = common::veth::Veth::new();
    let (_, far) = veth.address();
    let rx = veth.udp_socket_far((far, 0).into());
    let rx_port = with_room(&rx);
    let url = format!("udp://{far}:{rx_port}");
    let (bsc, mut conn, source_port) = framed_modem(&dir, &root, json!([url]));
    // Runs of one length (64 B, 2,000 B), a shorter one ending a run, lengths
    // that change every unit, and units larger than the link's MTU (sent
    // in IP fragments, as one datagram each).
    let phase = |from: u64| -> Vec<Vec<u8>> {
        let mut lens = vec![58; 100];
        lens.extend([1994; 30]);
        lens.extend([1000, 9494, 9494, 58, 58, 20]);
        lens.extend((0..40).map(|k| 8 + k * 37));
        lens.iter()
            .enumerate()
            .map(|(k, &n)| packet(0x100, from + k as u64, n))
            .collect()
    };
    let mut sent = write_units(&mut conn, phase(0));
    let receive = |units: &[Vec<u8>]| {
        let mut buf = vec![0u8; 10_000];
        for (k, want) in units.iter().enumerate() {
            let n = rx.recv(&mut buf).unwrap_or_else(|e| {
                panic!("unit {k}: {e}; {}; {:?}", bsc.get("/stats").1, bsc.log())
            });
            assert!(
                buf[..n] == want[..],
                "unit {k} of {} bytes: got {n} bytes, unit {}; {:?}",
                want.len(),
                u64::from_be_bytes(buf[6..14].try_into().unwrap()),
                bsc.log_matching("forward")
            );
        }
    };
    receive(&sent);
    // The link's MTU shrinks under the open target: the kernel refuses a run
    // of 2,000-byte units as one message (EMSGSIZE; EINVAL before Linux 6.x),
    // and bsc sends them again, one per call, runs now cut to the new MTU;
    // none is lost.
    veth.set_mtu(1500);
    let again = write_units(&mut conn, phase(sent.len() as u64));
    receive(&again);
    sent.extend(again);
    bsc.wait_log("runs of units up to 1472 bytes from now on");
    let key = format!("['127.0.0.1', {source_port}]");
    let t = target_stats(&bsc, &key, &url);
    assert_eq!(t["units_sent"], json!(sent.len()), "{t}");
    assert_eq!(t["units_dropped"], 0, "{t}");
    assert_eq!(t["state"], "ready", "{t}");
    drop(conn);
    assert!(bsc.stop().success());
    assert_eq!(count_records(&root.join("modem.pcap")), sent.len());
}

/// AIT's inbound UDP stream as ait-core builds it from `inbound-streams` (a
/// `PortInputStream`: gevent's `DatagramServer` handing each datagram to the
/// stream's handlers), one handler printing what it is given as hex, a line
/// per datagram. It says `ready` once it listens, and ends after the seconds
/// it is given (the test kills it sooner).
const AIT_INBOUND: &str = r#"
import sys, time, gevent, zmq.green as zmq
from ait.core.server.stream import PortInputStream
from ait.core.server.handler import Handler

class Print(Handler):
    def handle(self, data):
        print(bytes(data).hex(), flush=True)
        return data

port, secs = int(sys.argv[1]), float(sys.argv[2])
stream = PortInputStream("bsc_in", [port], [Print()], zmq_args={"zmq_context": zmq.Context()})
stream.start()
print("ready", flush=True)
end = time.time() + secs
while time.time() < end:
    gevent.sleep(0.05)
"#;

#[test]
fn aits_own_inbound_udp_stream_gets_each_unit_whole_and_in_order() {
    use std::io::BufRead;
    let (dir, root) = TempDir::with_root("fwd-ait");
    // The least configuration ait-core imports with.
    let config = dir.path().join("config.yaml");
    std::fs::write(&config, "default:\n  server:\n    plugins: []\n").unwrap();
    let ait_port = free_udp_port();
    let mut ait = std::process::Command::new(ait_python())
        .args(["-c", AIT_INBOUND, &ait_port.to_string()])
        .arg(PATIENCE.as_secs().to_string())
        .env("AIT_CONFIG", &config)
        .env("AIT_ROOT", dir.path())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let (lines_tx, lines) = std::sync::mpsc::channel();
    let out = ait.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    let next = || {
        lines
            .recv_timeout(PATIENCE)
            .expect("a line from AIT's stream")
    };
    assert_eq!(next(), "ready");
    let target = format!("udp://127.0.0.1:{ait_port}");
    let (bsc, mut conn, source_port) = framed_modem(&dir, &root, json!([target]));
    // In pieces that AIT's socket (the kernel's default buffer) holds whole.
    let sent = packets(400);
    for piece in sent.chunks(40) {
        std::io::Write::write_all(&mut conn, &piece.concat()).unwrap();
        for want in piece {
            let hex: String = want.iter().map(|b| format!("{b:02x}")).collect();
            assert_eq!(next(), hex, "AIT's stream got the units in order, whole");
        }
    }
    let key = format!("['127.0.0.1', {source_port}]");
    let t = target_stats(&bsc, &key, &target);
    assert_eq!(
        (t["units_sent"].clone(), t["units_dropped"].clone()),
        (json!(400), json!(0)),
        "{t}"
    );
    let _ = ait.kill();
    let _ = ait.wait();
    drop(conn);
    assert!(bsc.stop().success());
    assert_eq!(count_records(&root.join("modem.pcap")), sent.len());
}

/// A consumer behind a router whose far link has a smaller MTU (1,280): the
/// first datagram too large for it is refused on the way (ICMP
/// "fragmentation needed"), and the kernel reports that error with bsc's
/// next send, which then sends nothing. bsc sends that unit again (the
/// kernel now cuts it into fragments at the MTU it learned): the refused
/// datagram is the only one lost, and bsc drops none.
#[test]
fn a_path_mtu_learned_from_a_router_costs_only_the_datagram_it_refused() {
    let (dir, root) = TempDir::with_root("fwd-pmtu");
    let path = common::veth::Routed::new(1280);
    let rx = common::veth::udp_socket_in(&path.far, (path.far_addr, 0).into());
    let rx_port = with_room(&rx);
    let port = free_udp_port();
    let bsc = Bsc::capturing(
        dir.path(),
        &root,
        vec![udp_handler(
            "p",
            port,
            json!({"rotate_log": false, "file_name_pattern": "p.pcap",
                   "forward": [format!("udp://{}:{rx_port}", path.far_addr)]}),
        )],
    );
    // One at a time (each sent before the next comes), lengths changing
    // every unit (no runs), each over the far link's MTU.
    let n: u64 = 200;
    let s = sender(port);
    for i in 0..n {
        let mut p = i.to_be_bytes().to_vec();
        p.resize(1400 + (i % 7) as usize, i as u8);
        s.send(&p).unwrap();
        wait_until("the unit sent or dropped", || {
            let t = first_target(&bsc, port);
            t["units_sent"].as_u64().unwrap() + t["units_dropped"].as_u64().unwrap() > i
        });
    }
    let mut got = Vec::new();
    let mut buf = [0u8; 2048];
    while got.last() != Some(&(n - 1)) {
        let k = rx.recv(&mut buf).expect("the last unit arrives");
        let i = u64::from_be_bytes(buf[..8].try_into().unwrap());
        assert_eq!(k, 1400 + (i % 7) as usize, "unit {i} whole");
        got.push(i);
    }
    let t = first_target(&bsc, port);
    assert_eq!(t["units_dropped"], 0, "{t}");
    assert!(
        !bsc.log_matching("Message too long").is_empty(),
        "the router's refusal reached bsc's socket"
    );
    let lost: Vec<u64> = (0..n).filter(|i| !got.contains(i)).collect();
    assert!(
        lost.len() <= 1,
        "lost on the way: {lost:?} (only the refused one may be)"
    );
    assert!(got.windows(2).all(|w| w[0] < w[1]), "in order: {got:?}");
    assert!(bsc.stop().success());
    assert_eq!(count_records(&root.join("p.pcap")), n as usize);
}

/// A UDP target with no consumer: each datagram draws an ICMP "port
/// unreachable" that the kernel reports with the next send. `/stats` keeps
/// saying so while it lasts (a send that works after a refusal does not
/// clear it), and clears it once a consumer is there.
#[test]
fn a_udp_target_nobody_listens_on_shows_as_refusing_until_one_does() {
    let (dir, root) = TempDir::with_root("fwd-refused");
    let port = free_udp_port();
    let gone = free_udp_port();
    let target = format!("udp://127.0.0.1:{gone}");
    let bsc = Bsc::capturing(
        dir.path(),
        &root,
        vec![udp_handler(
            "tm",
            port,
            json!({"rotate_log": false, "file_name_pattern": "tm.pcap", "forward": [target]}),
        )],
    );
    for i in 0..5 {
        send(&bsc, port, i);
    }
    let t = first_target(&bsc, port);
    assert_eq!(t["state"], "error", "{t}");
    assert!(
        t["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("refused")),
        "{t}"
    );
    assert_eq!(accounted(&t), 5, "{t}");
    let rx = UdpSocket::bind(("127.0.0.1", gone)).unwrap();
    with_room(&rx);
    send(&bsc, port, 5);
    send(&bsc, port, 6);
    let t = first_target(&bsc, port);
    assert_eq!(
        (t["state"].clone(), t["last_error"].clone()),
        (json!("ready"), Value::Null),
        "{t}"
    );
    let mut buf = [0u8; 64];
    let k = rx.recv(&mut buf).unwrap();
    assert_eq!(&buf[..k], &seq_payload(5)[..]);
    assert!(bsc.stop().success());
}
