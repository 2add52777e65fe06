//! Large datagrams, written from the receive slots they arrived in (one
//! gathering `writev` per handler per batch): every record byte-exact, read back
//! with pcap-file's reader and counted by tcpdump, for 60,000-byte datagrams
//! and for batches that mix every size from 0 to 65,507 bytes (the largest UDP
//! payload over IPv4), with several handlers on one socket (plain, with
//! synthesized IP/UDP headers, with a transform that keeps a sub-slice) and
//! rotations in the middle of batches.

mod common;

use std::net::UdpSocket;
use std::path::Path;

use common::*;
use serde_json::json;

/// Largest UDP payload over IPv4.
const MAX_UDP: usize = 65_507;

/// A payload of `len` bytes that carries `seq` (in its first 8 bytes when it
/// has room) and bytes that differ from record to record.
fn payload(seq: u64, len: usize) -> Vec<u8> {
    let mut state = seq.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut p: Vec<u8> = (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    let n = len.min(8);
    p[..n].copy_from_slice(&seq.to_be_bytes()[..n]);
    p
}

fn start(dir: &Path, port: u16, handlers: serde_json::Value) -> Bsc {
    let root = dir.join("cap");
    let mut hs = Vec::new();
    for (name, extra) in handlers.as_object().unwrap() {
        let mut h = json!({
            "name": name, "conn_type": "udp", "address": ["127.0.0.1", port],
            "rcvbuf_bytes": 64 << 20,
        });
        for (k, v) in extra.as_object().unwrap() {
            h[k] = v.clone();
        }
        hs.push(h);
    }
    Bsc::with_config(
        dir,
        &json!({"capture_manager": {"root_log_directory": root}, "handlers": hs}),
    )
}

/// Every record of the files whose names start with `prefix`, in name order
/// (`x-9` before `x-10`).
fn records_of(root: &Path, prefix: &str) -> Vec<Record> {
    let mut files: Vec<_> = pcap_files(root)
        .into_iter()
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with(prefix))
        .collect();
    assert!(
        !files.is_empty(),
        "no {prefix}* files in {}",
        root.display()
    );
    files.sort_by_key(|p| (p.as_os_str().len(), p.clone()));
    let mut all = Vec::new();
    let mut seen = 0;
    for f in &files {
        let (_, snaplen, records) = read_pcap(f);
        assert_eq!(snaplen, 65535);
        let (n, stderr) = tcpdump(f);
        assert_eq!(n, records.len(), "tcpdump on {}: {stderr}", f.display());
        seen += records.len();
        all.extend(records);
    }
    assert_eq!(seen, all.len());
    all
}

/// Records so far in the files under `root` whose names start with `prefix`.
fn records_under(root: &Path, prefix: &str) -> usize {
    pcap_files(root)
        .iter()
        .filter(|f| f.file_name().unwrap().to_string_lossy().starts_with(prefix))
        .map(|f| count_records(f))
        .sum()
}

/// Sends `sizes` as datagrams in bursts of 64 (a batch's worth), waiting after
/// each burst until `root` holds every record sent so far under `prefix`.
fn send_in_bursts(tx: &UdpSocket, root: &Path, prefix: &str, sizes: &[usize]) {
    for (burst, chunk) in sizes.chunks(64).enumerate() {
        for (i, &len) in chunk.iter().enumerate() {
            tx.send(&payload((burst * 64 + i) as u64, len)).unwrap();
        }
        let want = burst * 64 + chunk.len();
        wait_until(&format!("{want} records under {prefix}"), || {
            records_under(root, prefix) >= want
        });
    }
}

#[test]
fn sixty_thousand_byte_datagrams_are_written_byte_exact_by_three_handlers() {
    let (dir, root) = TempDir::with_root("large60k");
    let port = free_udp_port();
    let bsc = start(
        dir.path(),
        port,
        json!({
            "plain": {"file_name_pattern": "plain-{seq}.pcap", "rotate_max_packets": 100},
            "src": {"file_name_pattern": "src-{seq}.pcap", "record_source": true,
                    "rotate_max_packets": 37},
            "strip": {"file_name_pattern": "strip.pcap", "pre_write_transforms": ["strip:8", "tail:2"]},
        }),
    );
    let tx = sender(port);
    let sizes = vec![60_000; 640];
    send_in_bursts(&tx, &root, "plain", &sizes);
    wait_until("every handler has every record", || {
        ["src", "strip"]
            .iter()
            .all(|p| records_under(&root, p) >= sizes.len())
    });
    let (_, stats) = bsc.get("/stats");
    assert!(bsc.stop().success());
    let handlers = stats[format!("['127.0.0.1', {port}]")].as_array().unwrap();
    assert_eq!(handlers.len(), 3, "{stats}");
    for s in handlers {
        assert_eq!(s["records_lost"], 0, "{s}");
        assert_eq!(s["packets"], sizes.len(), "{s}");
    }

    let plain = records_of(&root, "plain");
    let src = records_of(&root, "src");
    let strip = records_of(&root, "strip");
    assert_eq!(pcap_files(&root).len(), 7 + 18 + 1, "rotations by count");
    for (seq, &len) in sizes.iter().enumerate() {
        let want = payload(seq as u64, len);
        assert_eq!(plain[seq].data, want, "plain record {seq}");
        assert_eq!(plain[seq].orig_len as usize, len);
        // 20-byte IPv4 and 8-byte UDP headers, then the datagram.
        let r = &src[seq];
        assert_eq!(r.data.len(), 28 + len, "src record {seq}");
        assert_eq!(&r.data[28..], &want[..], "src record {seq}");
        assert_eq!(
            u16::from_be_bytes([r.data[2], r.data[3]]) as usize,
            28 + len
        );
        assert_eq!(strip[seq].data, &want[8..len - 2], "strip record {seq}");
    }
}

#[test]
fn batches_mixing_every_size_from_0_to_65507_bytes_are_written_byte_exact() {
    let (dir, root) = TempDir::with_root("largemix");
    let port = free_udp_port();
    let bsc = start(
        dir.path(),
        port,
        json!({
            "mix": {"file_name_pattern": "mix-{seq}.pcap", "rotate_max_bytes": 3_000_000},
            "src": {"file_name_pattern": "src.pcap", "record_source": true},
        }),
    );
    // The edges (empty, around a record header, around pages and slots, the
    // largest), then lengths spread over the whole range in a shuffled order.
    let mut sizes = vec![
        0, 1, 7, 8, 15, 16, 17, 63, 64, 65, 1471, 1472, 4095, 4096, 4097, 8000, 32768, 60_000,
        65_506, MAX_UDP, 0, MAX_UDP, 1, MAX_UDP,
    ];
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    while sizes.len() < 512 {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let len = match state % 4 {
            0 => (state >> 8) as usize % 64,
            1 => (state >> 8) as usize % 2048,
            _ => (state >> 8) as usize % (MAX_UDP + 1),
        };
        sizes.push(len);
    }
    let tx = sender(port);
    send_in_bursts(&tx, &root, "mix", &sizes);
    wait_until("src has every record", || {
        count_records(&root.join("src.pcap")) >= sizes.len()
    });
    assert!(bsc.stop().success());

    let mix = records_of(&root, "mix");
    let src = records_of(&root, "src");
    assert!(
        pcap_files(&root).len() > 3,
        "rotate_max_bytes cut the series in the middle of batches"
    );
    assert_eq!(mix.len(), sizes.len());
    for (seq, &len) in sizes.iter().enumerate() {
        let want = payload(seq as u64, len);
        assert_eq!(mix[seq].data.len(), len, "record {seq}");
        assert_eq!(mix[seq].data, want, "record {seq} ({len} bytes)");
        assert_eq!(mix[seq].orig_len as usize, len);
        assert_eq!(&src[seq].data[28..], &want[..], "src record {seq}");
    }
}
