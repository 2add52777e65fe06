//! The benchmark's TCP framing reference (tests/bench/tcp_reference.c, the
//! measuring stick of `make bench`'s goals table) cuts a stream exactly as bsc's
//! `framing: ccsds_space_packet` must: one pcap record per space packet, whatever
//! the packets' sizes and wherever the stream's reads end. Compiled with the
//! machine's cc by the benchmark's own code (tests/bench/common.rs).

#[allow(dead_code)]
#[path = "bench/common.rs"]
mod common;

use std::io::Write;
use std::time::Duration;

use pcap_file::pcap::PcapReader;

/// A space packet of `len` bytes (7..=65542): its length field says `len - 7`,
/// its payload carries `n`.
fn space_packet(n: u32, len: usize) -> Vec<u8> {
    let mut p = vec![0u8; len];
    p[0..2].copy_from_slice(&(0x100u16 + (n % 4) as u16).to_be_bytes());
    p[2..4].copy_from_slice(&(0xC000u16 | (n / 4) as u16 & 0x3FFF).to_be_bytes());
    p[4..6].copy_from_slice(&((len - 7) as u16).to_be_bytes());
    for (i, b) in p[6..].iter_mut().enumerate() {
        *b = (n as usize * 31 + i) as u8;
    }
    p
}

#[test]
fn c_framing_reference_writes_one_record_per_space_packet() {
    let dir = common::WorkDir::new(
        std::env::temp_dir().join(format!("bsc-test-tcp-reference-{}", std::process::id())),
    );
    let bin = common::build_tcp_reference(&dir.0).expect("the reference compiles");
    // Sizes from the smallest packet (7 bytes) to the largest (65,542), and
    // runs of 256-byte packets as the benchmark sends them.
    let mut packets: Vec<Vec<u8>> = Vec::new();
    for n in 0..2000u32 {
        let len = match n % 5 {
            0 => 7,
            1 => 256,
            2 => 7 + (n as usize * 97) % 3000,
            3 => 256,
            _ => 6 + 1 + (n as usize * 7919) % 500,
        };
        packets.push(space_packet(n, len));
    }
    packets.insert(1000, space_packet(2000, 65542));
    let stream: Vec<u8> = packets.concat();

    let (listener, port) = common::tcp_peer();
    let file = dir.0.join("ref.pcap");
    let reference = common::Reference::start(&bin, port, &file);
    let mut conn = common::accept_within(&listener, "the reference");
    conn.set_nonblocking(false).unwrap();
    conn.set_nodelay(true).unwrap();
    // Pieces of 1 to 300,000 bytes with a pause after each of the first 300, so
    // that reads end inside headers and packets alike.
    let mut at = 0;
    let mut piece = 0usize;
    while at < stream.len() && piece < 10_000 {
        let len = [1, 5, 6, 7, 255, 4099, 300_000][piece % 7].min(stream.len() - at);
        conn.write_all(&stream[at..at + len]).unwrap();
        at += len;
        piece += 1;
        if piece < 300 {
            std::thread::sleep(Duration::from_micros(300));
        }
    }
    assert_eq!(at, stream.len(), "the whole stream was sent");
    drop(conn);
    assert_eq!(
        reference.wait_done(Duration::from_secs(20)),
        Some(packets.len() as u64),
        "the reference counts one record per packet"
    );
    drop(reference);

    let mut reader = PcapReader::new(std::fs::File::open(&file).unwrap()).unwrap();
    assert_eq!(u32::from(reader.header().datalink), 147);
    let mut records = 0;
    while let Some(p) = reader.next_raw_packet() {
        let p = p.expect("no torn record");
        assert!(records < packets.len(), "more records than packets");
        assert_eq!(p.orig_len as usize, p.data.len());
        assert!(
            p.data[..] == packets[records][..],
            "record {records} is packet {records}"
        );
        records += 1;
    }
    assert_eq!(records, packets.len(), "one record per packet");
}
