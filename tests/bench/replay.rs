//! Section `replay` (issue 26): how closely `bsc replay` keeps the recorded
//! pace, measured by the receiver. 10,000 records recorded at 1 kHz with up
//! to +-300 us of jitter, replayed at `--speed 1` to a UDP receiver on
//! loopback that notes each arrival (`Instant`); the error of a record is
//! its arrival after the first's less its stamp after the first's. p50, p99
//! and max of the error against the 2 ms at p99, and the lag the
//! replay itself reports. Then the same file at `--speed max`: records per
//! second the receiver got.

use std::fs::File;
use std::net::UdpSocket;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};
use pcap_file::TsResolution;

use crate::common;

const RECORDS: u64 = 10_000;
const T0: u64 = 1_796_637_600_000_000_000;

pub fn section() {
    let dir = common::WorkDir::new(
        std::env::temp_dir().join(format!("bsc-bench-replay-{}", std::process::id())),
    );
    let file = dir.0.join("1khz.pcap");
    let stamps = write_jittered(&file);
    println!("\n== replay: 10,000 records at 1 kHz with jitter, to UDP on loopback ==");
    println!(
        "{:<10} {:>9} {:>10} {:>10} {:>10}  replay's own lag",
        "speed", "received", "err p50", "err p99", "err max"
    );
    if common::only("replay speed 1") {
        let (arrivals, summary) = run(&file, "1");
        let errors = errors_ms(&arrivals, &stamps);
        let q = |p: f64| {
            errors
                .get(((errors.len().max(1) - 1) as f64 * p) as usize)
                .copied()
                .unwrap_or(f64::NAN)
        };
        println!(
            "{:<10} {:>9} {:>8.3}ms {:>8.3}ms {:>8.3}ms  {}",
            "1",
            arrivals.len(),
            q(0.5),
            q(0.99),
            q(1.0),
            summary.split("; ").nth(1).unwrap_or("-").trim()
        );
        println!(
            "goal replay pacing: send-time error p99 {:.3} ms (at most 2 ms): {}",
            q(0.99),
            common::at_most(q(0.99), 2.0)
        );
    }
    if common::only("replay max") {
        let (arrivals, summary) = run(&file, "max");
        // "... in 0.123 s, at max speed": the replay's own time.
        let secs: f64 = summary
            .split(" in ")
            .nth(1)
            .and_then(|s| s.split(' ').next())
            .and_then(|s| s.parse().ok())
            .unwrap_or(f64::NAN);
        println!(
            "{:<10} {:>9}  {:.0} records/s sent ({} in {secs:.3} s)",
            "max",
            arrivals.len(),
            RECORDS as f64 / secs,
            RECORDS
        );
    }
}

/// Writes the file; returns the stamps (ns).
fn write_jittered(path: &std::path::Path) -> Vec<u64> {
    let header = PcapHeader {
        ts_resolution: TsResolution::NanoSecond,
        datalink: pcap_file::DataLink::USER0,
        ..PcapHeader::default()
    };
    let mut w = PcapWriter::with_header(File::create(path).unwrap(), header).unwrap();
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    let mut stamps = Vec::new();
    for i in 0..RECORDS {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let ts = T0 + i * 1_000_000 + rng % 600_000 - 300_000;
        let payload = i.to_be_bytes().repeat(8);
        w.write_packet(&PcapPacket::new(Duration::from_nanos(ts), 64, &payload))
            .unwrap();
        stamps.push(ts);
    }
    stamps
}

/// Replays `file` at `speed` to a receiver of our own; its arrivals and the
/// replay's summary line.
fn run(file: &std::path::Path, speed: &str) -> (Vec<Instant>, String) {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    common::set_rcvbuf(std::os::fd::AsRawFd::as_raw_fd(&socket), common::RCVBUF);
    let _ = socket.set_read_timeout(Some(Duration::from_secs(2)));
    let port = socket.local_addr().unwrap().port();
    let receiver = std::thread::spawn(move || {
        let mut arrivals = Vec::with_capacity(RECORDS as usize);
        let mut buf = [0u8; 2048];
        // Bounded: the records, or 2 s of silence.
        while arrivals.len() < RECORDS as usize {
            match socket.recv(&mut buf) {
                Ok(_) => arrivals.push(Instant::now()),
                Err(_) => break,
            }
        }
        arrivals
    });
    let out = Command::new(env!("CARGO_BIN_EXE_bsc"))
        .arg("replay")
        .arg(file)
        .args(["--to", &format!("udp://127.0.0.1:{port}"), "--speed", speed])
        .stdin(Stdio::null())
        .output()
        .expect("run bsc replay");
    let summary = String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .unwrap_or("")
        .to_string();
    (receiver.join().unwrap(), summary)
}

/// Each record's error in ms, sorted: (arrival - first arrival) - (stamp -
/// first stamp), less the smallest such value. A record is never sent
/// early, so the smallest is the path's own delay; subtracting it keeps a
/// receiver that noticed the first datagram late (waking from idle) from
/// shifting every other record's error by that much.
fn errors_ms(arrivals: &[Instant], stamps: &[u64]) -> Vec<f64> {
    let raw: Vec<f64> = arrivals
        .iter()
        .zip(stamps)
        .map(|(t, s)| {
            let got = t.duration_since(arrivals[0]).as_secs_f64();
            let due = (s - stamps[0]) as f64 / 1e9;
            (got - due) * 1000.0
        })
        .collect();
    let floor = raw.iter().copied().fold(f64::INFINITY, f64::min);
    let mut e: Vec<f64> = raw.iter().map(|x| x - floor).collect();
    e.sort_by(f64::total_cmp);
    e
}
