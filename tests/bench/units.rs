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
//! The framed rows' ratio to plain is printed for information only, with no
//! target: plain capture writes one record per read (about 4,100 for the stream),
//! the framed rows one per packet (1,048,576), so the ratio counts records, not
//! what each costs. The goal for framed TCP is the `goals` section's row, against
//! the C framing reference (issue 25).
//!
//! UDP: each datagram one space packet (64 B and 1024 B), at `UDP_RATE`, with and
//! without `sequence_check`; CPU per datagram. Every comparison alternates its
//! configurations `BSC_BENCH_RUNS` times and compares medians (UDP target:
//! `sequence_check` within 1.2x of plain).

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::common::{
    self, Payload, TcpReceiver, Tmpfs, UdpStep, WorkDir, PACKET, TCP_PACKETS, TCP_TIME,
};

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

fn tcp(root: &Path, runs: usize) {
    let configs: [(&str, bool, bool); 3] = [
        ("tcp plain", false, false),
        ("tcp framing", true, false),
        ("tcp framing+seq", true, true),
    ];
    if !configs.iter().any(|c| common::only(c.0)) {
        return;
    }
    let block = common::stream_block();
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
            let receiver = TcpReceiver::Bsc {
                framing: *framing,
                seq: *seq,
            };
            let o = common::run_tcp(root, &block, &receiver, None);
            let ns = o.ns_per_packet();
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
    // Not a goal: plain capture writes one record per read (about 4,100 for
    // the stream), the framed rows one per packet, so this ratio counts records.
    println!(
        "  framed / plain, for information only: framing {:.2}x, framing+sequence_check {:.2}x (not a goal: plain writes one record per read, the framed rows one per packet, so this counts records; framed TCP's goal is the goals section's row against the C framing reference)",
        m[1] / m[0],
        m[2] / m[0]
    );
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
