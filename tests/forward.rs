//! Live forwarding (`forward`): the real binary records a stream and relays
//! each unit to targets written here (a UDP receiver, TCP servers) that check
//! order and bytes; a target that dies, comes back or never reads costs the
//! recording nothing.

mod common;

use std::io::Read;
use std::net::{TcpStream, UdpSocket};

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

/// A UDP receiver on a free loopback port with a receive buffer that holds a
/// whole test's datagrams (`SO_RCVBUFFORCE`: the tests run as root), and its port.
fn udp_receiver() -> (UdpSocket, u16) {
    let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
    rx.set_read_timeout(Some(PATIENCE)).unwrap();
    let size: libc::c_int = 64 << 20;
    // SAFETY: a valid socket and a c_int option of the size given.
    let rc = unsafe {
        libc::setsockopt(
            std::os::fd::AsRawFd::as_raw_fd(&rx),
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            (&size as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "SO_RCVBUFFORCE: {}", std::io::Error::last_os_error());
    let port = rx.local_addr().unwrap().port();
    (rx, port)
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
