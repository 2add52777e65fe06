//! Black-box tests of the TCP, raw Ethernet and multicast sources, `record_source`
//! and kernel timestamps. Run as root (CI is): Ethernet capture happens on a veth
//! pair whose far end lives in a network namespace the test creates and removes.

mod common;

use std::io::Write;
use std::net::{TcpListener, UdpSocket};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::veth::Veth;
use common::*;
use serde_json::json;

/// Bytes of every record of a finished file, concatenated, and the records'
/// lengths.
fn stream_of(path: &Path) -> (Vec<u8>, Vec<usize>) {
    let (_, _, records) = read_pcap(path);
    let lens = records.iter().map(|r| r.data.len()).collect();
    (records.into_iter().flat_map(|r| r.data).collect(), lens)
}

/// Bytes in the whole records of a file bsc is still writing.
fn bytes_so_far(path: &Path) -> usize {
    records_so_far(path).iter().map(|r| r.data.len()).sum()
}

/// Accepts one connection and writes `data` in random-size writes.
fn serve(listener: &TcpListener, data: &[u8], rng: &mut Rng) -> std::net::TcpStream {
    listener.set_nonblocking(false).unwrap();
    let (mut conn, _) = listener.accept().unwrap();
    let mut at = 0;
    while at < data.len() {
        let n = (1 + rng.next() % 9000) as usize;
        let end = (at + n).min(data.len());
        conn.write_all(&data[at..end]).unwrap();
        at = end;
    }
    conn
}

#[test]
fn tcp_stream_is_captured_whole_across_a_peer_restart() {
    let (dir, root) = TempDir::with_root("tcp");
    let (listener, port) = tcp_peer();
    let bsc = Bsc::capturing_driven(
        dir.path(),
        &root,
        vec![
            json!({"name": "modem", "conn_type": "tcp", "address": ["127.0.0.1", port], "rotate_log": false, "file_name_pattern": "modem.pcap"}),
        ],
    );
    let mut rng = Rng(0x9E3779B97F4A7C15);
    let first = rng.bytes(1 << 20);
    let conn = serve(&listener, &first, &mut rng);
    let path = root.join("modem.pcap");
    wait_until("the first MiB on disk", || {
        bytes_so_far(&path) >= first.len()
    });
    assert_eq!(stats_of(&bsc, port)["connected"], true);

    // The peer goes away for 2 s of bsc's clock (part of the scenario), then
    // comes back; bsc's next attempt comes after its back-off.
    drop(conn);
    drop(listener);
    wait_until("bsc notices the peer is gone", || {
        stats_of(&bsc, port)["connected"] == false
    });
    for _ in 0..4 {
        advance_clock(bsc.http_port, 0.5);
    }
    let listener = TcpListener::bind(("127.0.0.1", port)).unwrap();
    let second = rng.bytes(1 << 20);
    let both: Vec<u8> = first.iter().chain(&second).copied().collect();
    // Served from a thread: its accept waits for bsc, which waits for its clock.
    let peer = std::thread::spawn(move || serve(&listener, &second, &mut rng));
    wait_advancing(bsc.http_port, 0.5, "the second MiB on disk", || {
        bytes_so_far(&path) >= both.len()
    });
    let conn = peer.join().unwrap();
    let stats = stats_of(&bsc, port);
    assert_eq!(
        (stats["connected"].as_bool(), stats["reconnects"].as_u64()),
        (Some(true), Some(1)),
        "{stats}"
    );
    assert!(
        stats["last_error"].is_null(),
        "cleared once connected again: {stats}"
    );
    bsc.wait_log("closed the connection; next attempt in");
    assert!(stats["last_connected_at"].as_str().unwrap().ends_with('Z'));
    drop(conn);
    assert!(bsc.stop().success());

    let (bytes, lens) = stream_of(&path);
    assert!(
        bytes == both,
        "the records concatenated are exactly the bytes sent ({} vs {})",
        bytes.len(),
        both.len()
    );
    assert!(
        lens.iter().all(|&n| (1..=65535).contains(&n)),
        "no empty or oversized records"
    );
    assert_eq!(tcpdump(&path).0, lens.len());
}

/// One TCP source, a handler that cuts it into space packets and one that
/// records each read as it is, the peer writing megabytes at once: the plain
/// handler's records are the reads, each at most 65535 bytes and none cut
/// short, while the framed one has every packet whole (a stream whose every
/// handler frames is read in larger pieces than a record).
#[test]
fn a_framed_and_a_plain_handler_of_one_tcp_source_each_get_every_byte() {
    let (dir, root) = TempDir::with_root("tcp-mixed");
    let (listener, port) = tcp_peer();
    let h = |name: &str, framed: bool| {
        let mut h = json!({"name": name, "conn_type": "tcp", "address": ["127.0.0.1", port],
                           "rotate_log": false, "file_name_pattern": format!("{name}.pcap")});
        if framed {
            h["framing"] = json!("ccsds_space_packet");
        }
        h
    };
    let bsc = Bsc::capturing(
        dir.path(),
        &root,
        vec![h("framed", true), h("plain", false)],
    );
    let mut rng = Rng(0x5EED_F00D);
    let mut wire = Vec::new();
    let mut packets = Vec::new();
    for i in 0..400u16 {
        let len = 1 + (rng.next() % 40_000) as usize;
        let data: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        let p = bsc::units::framing::testgen::space_packet(0x100, i, &data);
        wire.extend_from_slice(&p);
        packets.push(p);
    }
    listener.set_nonblocking(false).unwrap();
    let (mut conn, _) = listener.accept().unwrap();
    for chunk in wire.chunks(4 << 20) {
        conn.write_all(chunk).unwrap();
    }
    let (plain, framed) = (root.join("plain.pcap"), root.join("framed.pcap"));
    wait_until("every byte in both files", || {
        bytes_so_far(&plain) == wire.len() && bytes_so_far(&framed) == wire.len()
    });
    let stats = |name: &str| {
        bsc.get("/stats").1[format!("['127.0.0.1', {port}]")]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == name)
            .cloned()
            .unwrap()
    };
    assert_eq!(stats("plain")["truncated"], 0, "{}", stats("plain"));
    assert_eq!(stats("framed")["truncated"], 0, "{}", stats("framed"));
    drop(conn);
    assert!(bsc.stop().success());
    let (bytes, lens) = stream_of(&plain);
    assert!(bytes == wire, "the plain records are the stream");
    assert!(
        lens.iter().all(|&n| (1..=65535).contains(&n)),
        "no plain record longer than a read may be: {:?}",
        lens.iter().max()
    );
    let (_, _, records) = read_pcap(&framed);
    assert_eq!(records.len(), packets.len());
    assert!(
        records.iter().zip(&packets).all(|(r, p)| r.data == *p),
        "one record per packet, byte-exact"
    );
}

#[test]
fn a_tcp_handler_whose_peer_is_down_connects_when_it_appears() {
    let dir = TempDir::new("tcpdown");
    let bsc = Bsc::with_config_env(
        dir.path(),
        &json!({"capture_manager": {"root_log_directory": dir.path().join("cap")}}),
        &[DRIVEN_CLOCK],
    );
    let port = free_tcp_port();
    let (status, entry) = bsc.form(
        "POST",
        "/late/start",
        &format!("loc=127.0.0.1&port={port}&conn_type=tcp&connect_timeout_s=1"),
    );
    assert_eq!(status, 201, "{entry}");
    wait_until("a failed attempt is reported", || {
        stats_of(&bsc, port)["last_error"].is_string()
    });
    let stats = stats_of(&bsc, port);
    assert_eq!(stats["connected"], false);
    assert!(
        stats["last_error"].as_str().unwrap().contains("refused"),
        "{stats}"
    );

    // bsc's next attempt comes after its back-off, on its clock.
    let listener = TcpListener::bind(("127.0.0.1", port)).unwrap();
    listener.set_nonblocking(true).unwrap();
    let mut accepted = None;
    wait_advancing(bsc.http_port, 0.5, "bsc connects", || {
        if let Ok((c, _)) = listener.accept() {
            accepted = Some(c);
        }
        accepted.is_some()
    });
    let mut conn = accepted.unwrap();
    conn.set_nonblocking(false).unwrap();
    conn.write_all(b"late but here").unwrap();
    wait_until("connected and captured", || {
        stats_of(&bsc, port)["bytes"] == 13
    });
    assert_eq!(stats_of(&bsc, port)["connected"], true);
    // Stopping the handler closes the connection.
    assert_eq!(bsc.form("DELETE", "/late/stop", "").0, 200);
    conn.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut buf = [0u8; 1];
    assert_eq!(
        std::io::Read::read(&mut conn, &mut buf).unwrap(),
        0,
        "bsc closed its end"
    );
}

/// An Ethernet frame: broadcast destination, a fixed source, `ethertype`, and a
/// payload that starts with `tag`.
fn frame(ethertype: u16, tag: u8, len: usize) -> Vec<u8> {
    let mut f = vec![0xff; 6];
    f.extend_from_slice(&[0x02, 0x00, 0x5e, 0x10, 0x20, tag]);
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend((0..len).map(|i| tag.wrapping_add(i as u8)));
    f
}

#[test]
fn ethernet_frames_are_captured_exactly_with_protocol_and_direction_filters() {
    let veth = Veth::new();
    let (dir, root) = TempDir::with_root("eth");
    let (p1, p2) = (0x88b5u16, 0x88b6u16);
    let bsc = Bsc::capturing(
        dir.path(),
        &root,
        vec![
            json!({"name": "all", "conn_type": "ethernet", "address": [veth.host, 0], "file_name_pattern": "all.pcap"}),
            json!({"name": "inonly", "conn_type": "ethernet", "address": [veth.host, 0], "direction": "in", "file_name_pattern": "in.pcap"}),
            json!({"name": "only", "conn_type": "ethernet", "address": [veth.host, p1], "file_name_pattern": "only.pcap"}),
        ],
    );
    let incoming = vec![frame(p1, 1, 100), frame(p2, 2, 46), frame(p1, 3, 9000)];
    Veth::send(Some(&veth.ns), &veth.far, &incoming);
    let outgoing = vec![frame(p1, 4, 64)];
    Veth::send(None, &veth.host, &outgoing);

    let ours = |path: &PathBuf| -> Vec<Vec<u8>> {
        if !path.exists() {
            return Vec::new();
        }
        read_pcap(path)
            .2
            .into_iter()
            .map(|r| r.data)
            .filter(|d| d.len() > 13 && [p1, p2].contains(&u16::from_be_bytes([d[12], d[13]])))
            .collect()
    };
    let all: Vec<Vec<u8>> = incoming.iter().chain(&outgoing).cloned().collect();
    wait_until("every frame captured", || {
        ours(&root.join("all.pcap")).len() == 4
            && ours(&root.join("in.pcap")).len() == 3
            && ours(&root.join("only.pcap")).len() == 2
    });
    assert!(bsc.stop().success());

    assert_eq!(
        ours(&root.join("all.pcap")),
        all,
        "exact frames, both directions"
    );
    assert_eq!(
        ours(&root.join("in.pcap")),
        incoming,
        "direction in drops the outgoing frame"
    );
    // The kernel hands outgoing frames only to all-protocol sockets, so a socket
    // bound to one EtherType sees that EtherType's incoming frames.
    let only: Vec<Vec<u8>> = incoming
        .iter()
        .filter(|f| u16::from_be_bytes([f[12], f[13]]) == p1)
        .cloned()
        .collect();
    assert_eq!(
        ours(&root.join("only.pcap")),
        only,
        "the protocol filter keeps its EtherType"
    );
    let (link, _, records) = read_pcap(&root.join("all.pcap"));
    assert_eq!(link, 1);
    let jumbo = records
        .iter()
        .find(|r| r.data.len() == 9014)
        .expect("the jumbo frame");
    assert_eq!(jumbo.orig_len, 9014);
    let (n, stderr) = tcpdump(&root.join("all.pcap"));
    assert!(n >= 4 && stderr.contains("link-type EN10MB"), "{stderr}");
    let text = String::from_utf8(
        Command::new("tcpdump")
            .args(["-n", "-e", "-r"])
            .arg(root.join("only.pcap"))
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    assert!(
        text.contains("02:00:5e:10:20:01 > ff:ff:ff:ff:ff:ff, ethertype Unknown (0x88b5)"),
        "{text}"
    );
}

#[test]
fn ethernet_on_a_missing_interface_is_a_clear_error() {
    let dir = TempDir::new("noif");
    let cfg = write_config(
        dir.path(),
        &json!({"capture_manager": {"manager_server": {"port": free_tcp_port()}},
        "handlers": [{"name": "e", "conn_type": "ethernet", "address": ["nosuchif9", 0]}]}),
    );
    let mut bsc = Bsc::spawn(&["--config", cfg.to_str().unwrap()], dir.path(), &[]);
    assert_eq!(bsc.wait_exit().code(), Some(2));
    assert!(
        bsc.log().iter().any(|l| l.contains("handler \"e\"")
            && l.contains("no network interface named \"nosuchif9\"")),
        "{:?}",
        bsc.log()
    );
}

#[test]
fn a_multicast_group_on_loopback_is_joined() {
    let (dir, root) = TempDir::with_root("mcast");
    let port = free_udp_port();
    let group = "239.255.77.1";
    let bsc = Bsc::capturing(
        dir.path(),
        &root,
        vec![
            json!({"name": "mc", "conn_type": "udp", "address": [group, port], "interface": "lo", "file_name_pattern": "mc.pcap"}),
        ],
    );
    let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
    multicast_out_of_loopback(&tx);
    let start = Instant::now();
    // Datagrams sent before the join completes are lost; keep sending until one lands.
    let path = root.join("mc.pcap");
    wait_until("a multicast datagram captured", || {
        tx.send_to(b"to the group", (group, port)).unwrap();
        count_records(&path) > 0
    });
    assert!(start.elapsed() < PATIENCE);
    assert!(bsc.stop().success());
    assert!(read_pcap(&path).2.iter().all(|r| r.data == b"to the group"));
}

/// Sends from `tx` out of the loopback interface (for multicast groups).
fn multicast_out_of_loopback(tx: &UdpSocket) {
    let lo = libc::in_addr {
        s_addr: u32::from(std::net::Ipv4Addr::LOCALHOST).to_be(),
    };
    // SAFETY: a valid socket and an in_addr option value of the size passed.
    let rc = unsafe {
        libc::setsockopt(
            tx.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_MULTICAST_IF,
            (&lo as *const libc::in_addr).cast(),
            std::mem::size_of::<libc::in_addr>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0);
}

#[test]
fn multicast_handlers_bind_their_group_so_groups_share_a_port_and_unicast_stays_out() {
    let (dir, root) = TempDir::with_root("mcast2");
    let port = free_udp_port();
    let (g1, g2) = ("239.255.77.11", "239.255.77.12");
    let bsc = Bsc::capturing(
        dir.path(),
        &root,
        vec![
            json!({"name": "one", "conn_type": "udp", "address": [g1, port], "interface": "lo", "file_name_pattern": "one.pcap"}),
            json!({"name": "two", "conn_type": "udp", "address": [g2, port], "interface": "lo", "file_name_pattern": "two.pcap"}),
        ],
    );
    let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
    multicast_out_of_loopback(&tx);
    let (one, two) = (root.join("one.pcap"), root.join("two.pcap"));
    wait_until("both groups captured", || {
        tx.send_to(b"group one", (g1, port)).unwrap();
        tx.send_to(b"group two", (g2, port)).unwrap();
        tx.send_to(b"unicast", ("127.0.0.1", port)).unwrap();
        count_records(&one) > 2 && count_records(&two) > 2
    });
    assert!(bsc.stop().success());
    assert!(read_pcap(&one).2.iter().all(|r| r.data == b"group one"));
    assert!(read_pcap(&two).2.iter().all(|r| r.data == b"group two"));
}

#[test]
fn record_source_shows_who_sent_each_datagram() {
    let (dir, root) = TempDir::with_root("source");
    let port = free_udp_port();
    let bsc = Bsc::capturing(
        dir.path(),
        &root,
        vec![
            json!({"name": "src", "conn_type": "udp", "address": ["127.0.0.1", port], "record_source": true, "file_name_pattern": "src.pcap"}),
            json!({"name": "raw", "conn_type": "udp", "address": ["127.0.0.1", port], "file_name_pattern": "raw.pcap"}),
        ],
    );
    let a = UdpSocket::bind("127.0.0.1:0").unwrap();
    let b = UdpSocket::bind("127.0.0.1:0").unwrap();
    a.send_to(b"from a", ("127.0.0.1", port)).unwrap();
    b.send_to(b"from b!", ("127.0.0.1", port)).unwrap();
    let path = root.join("src.pcap");
    wait_until("two records", || {
        count_records(&path) == 2 && count_records(&root.join("raw.pcap")) == 2
    });
    assert!(bsc.stop().success());
    let (link, _, records) = read_pcap(&path);
    assert_eq!(link, 228);
    assert_eq!(&records[0].data[28..], b"from a");
    assert_eq!(
        read_pcap(&root.join("raw.pcap")).2[0].data,
        b"from a",
        "the plain handler keeps AIT's raw payload"
    );
    let out = Command::new("tcpdump")
        .args(["-n", "-r"])
        .arg(&path)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let (pa, pb) = (
        a.local_addr().unwrap().port(),
        b.local_addr().unwrap().port(),
    );
    assert!(
        text.contains(&format!("127.0.0.1.{pa} > 127.0.0.1.{port}: UDP, length 6")),
        "{text}"
    );
    assert!(
        text.contains(&format!("127.0.0.1.{pb} > 127.0.0.1.{port}: UDP, length 7")),
        "{text}"
    );
}

#[test]
fn kernel_timestamps_are_the_arrival_time_not_the_reading_time() {
    let (dir, root) = TempDir::with_root("kts");
    let port = free_udp_port();
    let bsc = Bsc::capturing(
        dir.path(),
        &root,
        vec![
            json!({"name": "kernel", "conn_type": "udp", "address": ["127.0.0.1", port], "file_name_pattern": "kernel.pcap"}),
            json!({"name": "read", "conn_type": "udp", "address": ["127.0.0.1", port], "timestamps": "read", "file_name_pattern": "read.pcap"}),
        ],
    );
    // bsc is stopped while the datagram arrives, and reads it 1.5 s later.
    bsc.signal_named("STOP");
    let sent_at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as u64;
    sender(port).send(b"when?").unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    bsc.signal_named("CONT");
    wait_until("both records", || {
        count_records(&root.join("kernel.pcap")) == 1 && count_records(&root.join("read.pcap")) == 1
    });
    assert!(bsc.stop().success());
    let kernel = read_pcap(&root.join("kernel.pcap")).2[0].ts_us;
    let read = read_pcap(&root.join("read.pcap")).2[0].ts_us;
    assert!(
        kernel.abs_diff(sent_at) < 500_000,
        "kernel time {kernel} vs sent {sent_at}"
    );
    assert!(
        read >= sent_at + 1_400_000,
        "read time {read} vs sent {sent_at}"
    );
}
