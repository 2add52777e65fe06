//! Section `units` (issue 14): what framing and sequence checks of CCSDS space
//! packets cost, against the same traffic captured plain.
//!
//! TCP: bsc connects (conn_type tcp) to a server of ours on 127.0.0.1 that, once
//! accepted, writes `TCP_PACKETS` valid 256-byte space packets (APIDs 0x100-0x103
//! in turn, each with its own correct 14-bit count) in 1 MiB writes, as fast as
//! bsc takes them (at most `TCP_TIME`), then closes. Rows: `framing: none` (one
//! record per read), `framing: ccsds_space_packet` (one record per packet: the
//! record count must equal the packets sent, each 256 bytes), and the framing with
//! `sequence_check` (`/stats` must count every packet and 0 missing). CPU per
//! space packet is bsc's CPU time over the packets the stream carried, for every
//! row, so the plain row's figure is what the same bytes cost without framing.
//!
//! UDP: each datagram one space packet (64 B and 1024 B), at `UDP_RATE`, with and
//! without `sequence_check`; CPU per datagram. Every comparison alternates its
//! configurations `BSC_BENCH_RUNS` times and compares medians (target 1.2x).

use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::common::{self, Bsc, Payload, Tmpfs, UdpStep, WorkDir};

const PACKET: usize = 256;
/// 1 Mi packets: 256 MiB per TCP step.
const TCP_PACKETS: u64 = 1 << 20;
const TCP_TIME: Duration = Duration::from_secs(15);
const UDP_SIZES: [usize; 2] = [64, 1024];
const UDP_RATE: f64 = 100_000.0;
const UDP_STEP: Duration = Duration::from_secs(2);
const TARGET: f64 = 1.2;

pub fn section() {
    // On a tmpfs of our own, so that the disk's writeback does not blur what the
    // framing costs (the large section measures the disk); else the temp folder.
    let pid = std::process::id();
    let tmpfs = Tmpfs::mount(PathBuf::from(format!("/tmp/bsc-bench-units-{pid}")), 512);
    let work = WorkDir::new(match &tmpfs {
        Some(t) => t.0.join("w"),
        None => std::env::temp_dir().join(format!("bsc-bench-units-{pid}")),
    });
    let runs = common::runs();
    println!(
        "\n== units: CCSDS space packets (issue 14), {runs} alternating run(s) per median, files in {} ({}) ==",
        work.0.display(),
        common::fs_type(&work.0)
    );
    tcp(&work.0, runs);
    udp(&work.0, runs);
    drop(work);
    drop(tmpfs);
}

struct TcpOutcome {
    packets: u64,
    records: u64,
    record_bytes: u64,
    secs: f64,
    cpu_ns: u64,
    check: String,
}

/// The 16 MiB the server writes over and over: 4 APIDs x 16,384 packets, so each
/// APID's count runs 0..=16383 once and goes on seamlessly in the next copy.
fn stream_block() -> Vec<u8> {
    let n = APID_COUNT * 16384;
    let mut b = Vec::with_capacity(n * PACKET);
    for i in 0..n {
        let apid = 0x100 + (i % APID_COUNT) as u16;
        let count = ((i / APID_COUNT) & 0x3FFF) as u16;
        b.extend_from_slice(&apid.to_be_bytes());
        b.extend_from_slice(&(0xC000 | count).to_be_bytes());
        b.extend_from_slice(&((PACKET - 7) as u16).to_be_bytes());
        b.extend_from_slice(&(i as u64).to_be_bytes());
        b.resize(b.len() + PACKET - 14, 0xA5);
    }
    b
}

const APID_COUNT: usize = common::APIDS as usize;

fn run_tcp(root: &Path, block: &[u8], framing: bool, seq: bool) -> TcpOutcome {
    let dir = WorkDir::new(root.join(format!("tcp-{framing}-{seq}")));
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut h = serde_json::json!({"name": "t", "conn_type": "tcp", "address": ["127.0.0.1", port],
                                   "rotate_log": false, "file_name_pattern": "{name}.pcap"});
    if framing {
        h["framing"] = serde_json::json!({"kind": "ccsds_space_packet"});
    }
    if seq {
        h["sequence_check"] = serde_json::json!("ccsds_space_packet");
    }
    let bsc = Bsc::start(&dir.0, vec![h]);
    listener.set_nonblocking(true).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut conn = loop {
        match listener.accept() {
            Ok((c, _)) => break c,
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            Err(e) => panic!("bsc did not connect: {e}"),
        }
    };
    drop(listener); // bsc's reconnects after the close are refused
    conn.set_nonblocking(false).unwrap();
    conn.set_write_timeout(Some(Duration::from_secs(1)))
        .unwrap();
    let total = TCP_PACKETS * PACKET as u64;
    let cpu0 = bsc.cpu_ns();
    let start = Instant::now();
    let mut written = 0u64;
    while written < total {
        // Past the time bound, only finish the packet under way.
        let limit = if start.elapsed() > TCP_TIME {
            written.div_ceil(PACKET as u64) * PACKET as u64
        } else {
            total
        };
        if written >= limit {
            break;
        }
        let at = (written % block.len() as u64) as usize;
        let len = (block.len() - at)
            .min(1 << 20)
            .min((limit - written) as usize);
        match conn.write(&block[at..at + len]) {
            Ok(n) => written += n as u64,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => panic!("TCP write: {e}"),
        }
    }
    // The socket buffers hold a few MB of the 256 MiB: bsc has read nearly all.
    let secs = start.elapsed().as_secs_f64();
    let _ = conn.flush();
    drop(conn);
    let file = dir.0.join("t.pcap");
    common::settle(std::slice::from_ref(&file));
    let cpu_ns = bsc.cpu_ns().saturating_sub(cpu0);
    let stats = bsc.stats();
    drop(bsc);
    let packets = written / PACKET as u64;
    let rb = common::read_back(&[file], 6, 0);
    let mut problems = Vec::new();
    if framing {
        if rb.records != packets {
            problems.push(format!("{} records for {packets} packets", rb.records));
        }
        if rb.bytes != packets * PACKET as u64 {
            problems.push("a record is not one packet".to_string());
        }
    } else if rb.bytes != written {
        problems.push(format!("{} bytes of {written}", rb.bytes));
    }
    if seq {
        match common::sequence_totals(&stats) {
            Some((units, missing, gaps, dups)) => {
                if units != packets || missing != 0 || gaps != 0 || dups != 0 {
                    problems.push(format!(
                        "/stats sequence: units {units} missing {missing} gaps {gaps} duplicates {dups}"
                    ));
                }
            }
            None => problems.push("no sequence in /stats".to_string()),
        }
    }
    TcpOutcome {
        packets,
        records: rb.records,
        record_bytes: rb.bytes,
        secs,
        cpu_ns,
        check: if problems.is_empty() {
            if seq {
                "ok, /stats 0 missing".into()
            } else {
                "ok".into()
            }
        } else {
            problems.join("; ")
        },
    }
}

fn tcp(root: &Path, runs: usize) {
    let configs: [(&str, bool, bool); 3] = [
        ("tcp plain", false, false),
        ("tcp framing", true, false),
        ("tcp framing+seq", true, true),
    ];
    if !configs.iter().any(|c| common::only(c.0)) {
        return;
    }
    let block = stream_block();
    println!(
        "TCP: {TCP_PACKETS} space packets of {PACKET} B ({} MiB) per step, at most {} s, 1 MiB writes",
        (TCP_PACKETS * PACKET as u64) >> 20,
        TCP_TIME.as_secs()
    );
    println!(
        "{:>3} {:<17} {:>9} {:>9} {:>11} {:>8} {:>9} {:>10}  check",
        "run", "receiver", "packets", "records", "rec bytes", "MB/s", "cpu ms", "ns/packet"
    );
    let mut per: Vec<Vec<f64>> = vec![Vec::new(); configs.len()];
    for run in 0..runs {
        for (i, (label, framing, seq)) in configs.iter().enumerate() {
            if !common::only(label) {
                continue;
            }
            let o = run_tcp(root, &block, *framing, *seq);
            let ns = o.cpu_ns as f64 / o.packets.max(1) as f64;
            per[i].push(ns);
            println!(
                "{:>3} {:<17} {:>9} {:>9} {:>11} {:>8.0} {:>9.1} {:>10.1}  {}",
                run + 1,
                label,
                o.packets,
                o.records,
                o.record_bytes,
                o.packets as f64 * PACKET as f64 / 1e6 / o.secs,
                o.cpu_ns as f64 / 1e6,
                ns,
                o.check
            );
        }
    }
    let m: Vec<f64> = per.into_iter().map(common::median).collect();
    println!(
        "TCP medians, ns CPU per space packet: plain {:.1}, framing {:.1}, framing+seq {:.1}",
        m[0], m[1], m[2]
    );
    for (label, v) in [("framing", m[1]), ("framing+sequence_check", m[2])] {
        let r = v / m[0];
        println!(
            "  target: TCP {label} within {TARGET}x of plain: {r:.2}x -> {}",
            common::at_most(r, TARGET)
        );
    }
}

fn udp(root: &Path, runs: usize) {
    let configs = [("udp plain", false), ("udp sequence_check", true)];
    if !configs.iter().any(|c| common::only(c.0)) {
        return;
    }
    println!(
        "UDP: each datagram one space packet, {} datagrams/s for {} s per step, 1 handler",
        UDP_RATE,
        UDP_STEP.as_secs()
    );
    println!(
        "{:>3} {:>5} {:<19} {:>9} {:>9} {:>9} {:>8} {:>8}  check",
        "run", "size", "receiver", "offered/s", "sent", "written", "loss %", "cpu us"
    );
    for size in UDP_SIZES {
        let mut per: Vec<Vec<f64>> = vec![Vec::new(); configs.len()];
        for run in 0..runs {
            for (i, (label, seq)) in configs.iter().enumerate() {
                if !common::only(label) {
                    continue;
                }
                let extra = if *seq {
                    serde_json::json!({"sequence_check": "ccsds_space_packet"})
                } else {
                    serde_json::json!({})
                };
                let o = common::run_udp_step(&UdpStep {
                    root,
                    size,
                    active: 1,
                    idle: 0,
                    rate: Some(UDP_RATE),
                    payload: Payload::SpacePacket,
                    extra,
                    senders: 1,
                    step: UDP_STEP,
                    max_count: (UDP_RATE * UDP_STEP.as_secs_f64()) as u64,
                });
                let check = if *seq {
                    match common::sequence_totals(&o.stats) {
                        Some((units, missing, gaps, dups)) => {
                            let fine = missing == 0 && gaps == 0 && dups == 0;
                            let agree = units == o.written;
                            match (o.lost(), fine && agree) {
                                (0, true) => "ok, /stats 0 missing".to_string(),
                                (lost, _) => format!(
                                    "lost {lost}; /stats units {units} missing {missing} gaps {gaps} duplicates {dups}"
                                ),
                            }
                        }
                        None => "no sequence in /stats".to_string(),
                    }
                } else if o.lost() == 0 {
                    "ok".to_string()
                } else {
                    format!("lost {}", o.lost())
                };
                per[i].push(o.cpu_us_per());
                println!(
                    "{:>3} {:>5} {:<19} {:>9.0} {:>9} {:>9} {:>8.3} {:>8.3}  {}",
                    run + 1,
                    size,
                    label,
                    o.blast.rate(),
                    o.blast.sent,
                    o.written,
                    o.loss_pct(),
                    o.cpu_us_per(),
                    check
                );
            }
        }
        let m: Vec<f64> = per.into_iter().map(common::median).collect();
        let r = m[1] / m[0];
        println!(
            "  {size} B medians, us CPU per datagram: plain {:.3}, sequence_check {:.3}; target within {TARGET}x: {r:.2}x -> {}",
            m[0],
            m[1],
            common::at_most(r, TARGET)
        );
    }
}
