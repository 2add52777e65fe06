//! `make bench`: how many datagrams a release bsc captures, and at what CPU cost.
//!
//! For 64-byte and 1024-byte datagrams, a generator on loopback sends sequence-
//! numbered datagrams at increasing rates (up to its own maximum) for a fixed time
//! to a fresh bsc with one handler. Loss is counted from the PCAP file (distinct
//! sequence numbers read back with pcap-file's reader), never from bsc's counters.
//! CPU time is bsc's own (from /proc/PID/schedstat), divided by records written.
//! In the same run, a count-only receiver (a blocking `recv` loop with the same
//! receive buffer) measures the ceiling one socket gives on this machine.
//!
//! Bounded: every step sends for at most `STEP` and at most `MAX_PER_STEP`
//! datagrams, only to 127.0.0.1; the whole run takes about a minute.

use std::fs::File;
use std::net::UdpSocket;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use pcap_file::pcap::PcapReader;

const STEP: Duration = Duration::from_secs(2);
const MAX_PER_STEP: u64 = 2_000_000;
const RATES: [Option<u64>; 5] = [
    Some(10_000),
    Some(50_000),
    Some(100_000),
    Some(200_000),
    None,
];
const SIZES: [usize; 2] = [64, 1024];
const RCVBUF: usize = 8 << 20;

fn main() {
    // `cargo bench` passes --bench; nothing to parse.
    let work = std::env::temp_dir().join(format!("bsc-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).unwrap();
    println!(
        "bsc UDP capture benchmark: {} s per step, loopback only, {} cores",
        STEP.as_secs(),
        cores()
    );
    println!(
        "{:>6} {:>9} {:>10} {:>10} {:>10} {:>8} {:>11} {:>9}",
        "size", "receiver", "offered/s", "sent", "written", "loss %", "cpu us/dgm", "peak RSS"
    );
    for size in SIZES {
        for rate in RATES {
            let r = run_bsc(&work, size, rate);
            println!(
                "{:>6} {:>9} {:>10} {:>10} {:>10} {:>8.3} {:>11.3} {:>6} KB",
                size,
                "bsc",
                r.offered.round() as u64,
                r.sent,
                r.written,
                loss(r.sent, r.written),
                r.cpu_ns as f64 / 1000.0 / r.written.max(1) as f64,
                r.peak_rss_kb
            );
        }
        let c = run_ceiling(size);
        println!(
            "{:>6} {:>9} {:>10} {:>10} {:>10} {:>8.3} {:>11} {:>9}",
            size,
            "count-only",
            c.offered.round() as u64,
            c.sent,
            c.written,
            loss(c.sent, c.written),
            "-",
            "-"
        );
    }
    let _ = std::fs::remove_dir_all(&work);
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

fn loss(sent: u64, got: u64) -> f64 {
    100.0 * sent.saturating_sub(got) as f64 / sent.max(1) as f64
}

struct Outcome {
    offered: f64,
    sent: u64,
    written: u64,
    cpu_ns: u64,
    peak_rss_kb: u64,
}

/// Sends for `STEP` at `rate` datagrams/s (`None`: as fast as possible).
/// Returns (sent, achieved rate).
fn generate(port: u16, size: usize, rate: Option<u64>) -> (u64, f64) {
    let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
    tx.connect(("127.0.0.1", port)).unwrap();
    let mut payload = vec![0x5au8; size.max(8)];
    let start = Instant::now();
    let mut sent = 0u64;
    while sent < MAX_PER_STEP {
        let elapsed = start.elapsed();
        if elapsed >= STEP {
            break;
        }
        if let Some(r) = rate {
            let due = (r as f64 * elapsed.as_secs_f64()) as u64;
            if sent >= due {
                std::thread::sleep(Duration::from_micros(100));
                continue;
            }
        }
        // A burst of up to 64, then re-check the clock.
        for _ in 0..64 {
            payload[..8].copy_from_slice(&sent.to_be_bytes());
            if tx.send(&payload).is_ok() {
                sent += 1;
            }
        }
    }
    (sent, sent as f64 / start.elapsed().as_secs_f64())
}

fn bsc_binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_bsc"))
}

fn free_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn run_bsc(work: &Path, size: usize, rate: Option<u64>) -> Outcome {
    let dir = work.join(format!("s{size}-r{}", rate.unwrap_or(0)));
    std::fs::create_dir_all(&dir).unwrap();
    let port = free_port();
    let config = serde_json::json!({
        "capture_manager": {"root_log_directory": dir},
        "handlers": [{"name": "bench", "conn_type": "udp", "address": ["127.0.0.1", port],
                      "rotate_log": false, "file_name_pattern": "bench.pcap", "rcvbuf_bytes": RCVBUF}]
    });
    let cfg = dir.join("bsc.json");
    std::fs::write(&cfg, config.to_string()).unwrap();
    let mut child = Command::new(bsc_binary())
        .args(["--config", cfg.to_str().unwrap()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start bsc");
    wait_bound(port);
    let pid = child.id();
    let cpu_before = cpu_ns(pid);
    let (sent, offered) = generate(port, size, rate);
    let file = dir.join("bench.pcap");
    // Settle: wait until the file stops growing (bsc has drained its socket).
    let mut last = u64::MAX;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        std::thread::sleep(Duration::from_millis(300));
        let len = std::fs::metadata(&file).map_or(0, |m| m.len());
        if len == last || Instant::now() > deadline {
            break;
        }
        last = len;
    }
    let cpu = cpu_ns(pid).saturating_sub(cpu_before);
    let peak_rss_kb = peak_rss_kb(pid);
    stop(&mut child);
    let written = distinct_sequence_numbers(&file, sent);
    let _ = std::fs::remove_dir_all(&dir);
    Outcome {
        offered,
        sent,
        written,
        cpu_ns: cpu,
        peak_rss_kb,
    }
}

/// Waits until bsc has bound the port (another bind fails), at most 10 s.
fn wait_bound(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while UdpSocket::bind(("127.0.0.1", port)).is_ok() {
        assert!(Instant::now() < deadline, "bsc did not bind port {port}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn stop(child: &mut Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
}

/// Nanoseconds of CPU the process has used (first field of /proc/PID/schedstat).
fn cpu_ns(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/schedstat"))
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(0)
}

fn peak_rss_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Distinct sequence numbers below `sent` in the file, read with pcap-file.
fn distinct_sequence_numbers(path: &Path, sent: u64) -> u64 {
    let Ok(f) = File::open(path) else { return 0 };
    let mut reader = PcapReader::new(f).expect("a valid pcap file");
    let mut seen = vec![false; sent as usize];
    let mut n = 0;
    while let Some(p) = reader.next_raw_packet() {
        let p = p.expect("no torn records");
        let seq = u64::from_be_bytes(p.data[..8].try_into().unwrap());
        if let Some(s) = seen.get_mut(seq as usize) {
            if !*s {
                *s = true;
                n += 1;
            }
        }
    }
    n
}

/// The ceiling: a blocking receiver that only counts, with the same buffer.
fn run_ceiling(size: usize) -> Outcome {
    let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
    let bytes = RCVBUF as libc::c_int;
    // SAFETY: a valid socket fd and a c_int option value of the size passed.
    unsafe {
        let p = (&bytes as *const libc::c_int).cast();
        let len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        if libc::setsockopt(
            rx.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            p,
            len,
        ) != 0
        {
            libc::setsockopt(rx.as_raw_fd(), libc::SOL_SOCKET, libc::SO_RCVBUF, p, len);
        }
    }
    rx.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let port = rx.local_addr().unwrap().port();
    let counter = std::thread::spawn(move || {
        let mut buf = vec![0u8; 65536];
        let mut n = 0u64;
        while rx.recv(&mut buf).is_ok() {
            n += 1;
        }
        n
    });
    let (sent, offered) = generate(port, size, None);
    let written = counter.join().unwrap();
    Outcome {
        offered,
        sent,
        written,
        cpu_ns: 0,
        peak_rss_kb: 0,
    }
}
