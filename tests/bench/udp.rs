//! `make bench`: how many datagrams a release bsc captures, at what CPU cost, and
//! how fast it answers HTTP meanwhile, against receivers written here and measured
//! in the same run. Loopback (127.0.0.1) only; every step is bounded in time and
//! datagrams. Four sections, each on its own with `BSC_BENCH_SECTION`:
//!
//! - `udp` (this file): for 64-byte and 1024-byte datagrams, a count-only
//!   `recvmmsg` receiver at the generator's maximum rate (the ceiling one socket
//!   gives on this machine, which also measures that maximum), then a fresh bsc
//!   with 1 handler, with 10 handlers on 10 ports, and with 1,000 idle handlers
//!   plus one active, at 50% and 100% of the maximum. CPU is bsc's own
//!   (/proc/PID/schedstat) per datagram written, and its ratio to the ceiling
//!   receiver's (thread CPU time per datagram). `/stats` is fetched every 20 ms on
//!   a keep-alive connection during each step: p50/p99.
//! - `units` (units.rs, issue 14): a TCP stream of CCSDS space packets from a
//!   local server at its maximum rate, bsc with `framing: ccsds_space_packet`
//!   (with and without `sequence_check`) against the same stream unframed; UDP
//!   datagrams that are each one space packet, with and without `sequence_check`.
//!   CPU per space packet and the ratios against the 1.2x target.
//! - `large` (large.rs, issue 17): 8,000 B and 60,000 B datagrams, on a tmpfs of
//!   our own and on the disk (/var/tmp): a reference receiver (recvmmsg + one
//!   writev per batch into a pcap file) against bsc: Gbit/s offered and captured,
//!   loss, bytes per CPU second, bsc's ratio (target 0.8x), no loss at 60% of the
//!   reference's capacity, and 1 vs 10 handlers vs 1,000 idle + 1 at that rate in
//!   alternating runs (targets 1.15x and 1.1x).
//! - `rcvbuf` (large.rs): how many 1,024 B, 8,000 B and 60,000 B datagrams the
//!   receive buffer bsc asks for by default holds, counted by filling a socket.
//!
//! Loss is always counted from the PCAP files (distinct sequence numbers in the
//! payloads, read back with pcap-file), never from bsc's own counters.
//!
//! Environment:
//! - `BSC_BENCH_SECTION=udp,units,large,rcvbuf`: only these sections (default all).
//! - `BSC_BENCH_ONLY=text`: only the rows whose label contains `text`.
//! - `BSC_BENCH_RUNS=N` (default 3): alternating runs behind each median
//!   (units and large sections).
//! - `BSC_BENCH_FS=tmpfs|disk`: only this file system in the large section.
//! - `BSC_BENCH_SENDERS=N` (default 1): generator threads in the large section.
//! - `BSC_BENCH_LOG=file`: keep bsc's log lines.
//!
//! The whole run takes about three and a half minutes (2 cores), plus the build.

mod common;
mod large;
mod units;

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pcap_file::pcap::PcapReader;

const STEP: Duration = Duration::from_secs(2);
const MAX_PER_STEP: u64 = 2_000_000;
const SIZES: [usize; 2] = [64, 1024];
const RCVBUF: usize = common::RCVBUF;

fn main() {
    common::install_signal_cleanup();
    common::install_panic_hook();
    let started = Instant::now();
    let bin = env!("CARGO_BIN_EXE_bsc");
    println!(
        "bsc capture benchmark: loopback only, {} cores, load average {}",
        cores(),
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    println!(
        "binary: {} ({} bytes)",
        bin,
        std::fs::metadata(bin).map_or(0, |m| m.len())
    );
    if common::section("udp") {
        section_udp(bin);
    }
    if common::section("units") {
        units::section();
    }
    if common::section("large") {
        large::section();
    }
    if common::section("rcvbuf") {
        large::section_rcvbuf();
    }
    common::cleanup_all();
    println!("\nbenchmark took {:.0} s", started.elapsed().as_secs_f64());
}

fn section_udp(bin: &str) {
    let work = common::WorkDir::new(
        std::env::temp_dir().join(format!("bsc-bench-{}", std::process::id())),
    );
    let work = &work.0;
    println!(
        "\n== udp: small datagrams, {} s per step ==",
        STEP.as_secs()
    );
    println!(
        "{:>5} {:<22} {:>10} {:>10} {:>10} {:>8} {:>9} {:>7} {:>6} {:>9} {:>8} {:>8}",
        "size",
        "receiver",
        "offered/s",
        "sent",
        "written",
        "loss %",
        "cpu us",
        "ratio",
        "user",
        "peak RSS",
        "http p50",
        "http p99"
    );
    for size in SIZES {
        let ceiling = run_ceiling(size);
        let max_rate = ceiling.offered;
        print_row(size, "count-only", &ceiling, None);
        for (label, ports, idle) in [
            ("bsc 1 handler", 1, 0),
            ("bsc 10 handlers", 10, 0),
            ("bsc 1000 idle+1", 1, 1000),
        ] {
            for share in [0.5, 1.0] {
                // BSC_BENCH_ONLY=text runs only the rows whose label contains it.
                if std::env::var("BSC_BENCH_ONLY").is_ok_and(|only| !label.contains(&only)) {
                    continue;
                }
                let rate = if share < 1.0 {
                    Some((max_rate * share) as u64)
                } else {
                    None
                };
                let r = run_bsc(work, bin, size, ports, idle, rate);
                print_row(
                    size,
                    &format!("{label} {}%", (share * 100.0) as u32),
                    &r,
                    Some(&ceiling),
                );
            }
        }
    }
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

struct Outcome {
    offered: f64,
    sent: u64,
    written: u64,
    cpu_ns: u64,
    /// Share of the CPU time spent in user space (the rest is the kernel's).
    user_share: Option<f64>,
    peak_rss_kb: u64,
    http: Vec<Duration>,
}

fn print_row(size: usize, label: &str, r: &Outcome, ceiling: Option<&Outcome>) {
    let per = |o: &Outcome| o.cpu_ns as f64 / 1000.0 / o.written.max(1) as f64;
    let ratio = ceiling.map_or("-".to_string(), |c| format!("{:.2}", per(r) / per(c)));
    let pct = |p: f64| {
        if r.http.is_empty() {
            "-".to_string()
        } else {
            let mut v = r.http.clone();
            v.sort();
            format!(
                "{:.2}ms",
                v[((v.len() - 1) as f64 * p) as usize].as_secs_f64() * 1000.0
            )
        }
    };
    println!(
        "{:>5} {:<22} {:>10} {:>10} {:>10} {:>8.3} {:>9.3} {:>7} {:>6} {:>9} {:>8} {:>8}",
        size,
        label,
        r.offered.round() as u64,
        r.sent,
        r.written,
        100.0 * r.sent.saturating_sub(r.written) as f64 / r.sent.max(1) as f64,
        per(r),
        ratio,
        r.user_share
            .map_or("-".to_string(), |u| format!("{:.0}%", u * 100.0)),
        if r.peak_rss_kb > 0 {
            format!("{} KB", r.peak_rss_kb)
        } else {
            "-".into()
        },
        pct(0.5),
        pct(0.99)
    );
}

/// Sends for `STEP` to the ports in turn, at `rate` datagrams/s in all (`None`:
/// as fast as one thread can). Returns (sent, achieved rate).
fn generate(ports: &[u16], size: usize, rate: Option<u64>) -> (u64, f64) {
    let socks: Vec<UdpSocket> = ports
        .iter()
        .map(|p| {
            let s = UdpSocket::bind("127.0.0.1:0").unwrap();
            s.connect(("127.0.0.1", *p)).unwrap();
            s
        })
        .collect();
    let mut payload = vec![0x5au8; size.max(8)];
    let start = Instant::now();
    let mut sent = 0u64;
    while sent < MAX_PER_STEP {
        let elapsed = start.elapsed();
        if elapsed >= STEP {
            break;
        }
        if let Some(r) = rate {
            if sent >= (r as f64 * elapsed.as_secs_f64()) as u64 {
                std::thread::sleep(Duration::from_micros(100));
                continue;
            }
        }
        for _ in 0..64 {
            payload[..8].copy_from_slice(&sent.to_be_bytes());
            if socks[(sent % socks.len() as u64) as usize]
                .send(&payload)
                .is_ok()
            {
                sent += 1;
            }
        }
    }
    (sent, sent as f64 / start.elapsed().as_secs_f64())
}

/// Where bsc's stderr goes: `BSC_BENCH_LOG=file` keeps its log lines.
fn log_sink() -> Stdio {
    match std::env::var("BSC_BENCH_LOG") {
        Ok(path) => Stdio::from(
            File::options()
                .create(true)
                .append(true)
                .open(path)
                .unwrap(),
        ),
        Err(_) => Stdio::null(),
    }
}

fn free_tcp_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn run_bsc(
    work: &Path,
    bin: &str,
    size: usize,
    active: usize,
    idle: usize,
    rate: Option<u64>,
) -> Outcome {
    let dir = work.join(format!("s{size}-a{active}-i{idle}-r{}", rate.unwrap_or(0)));
    std::fs::create_dir_all(&dir).unwrap();
    // Every port at once, held together so no two can be the same.
    let held: Vec<UdpSocket> = (0..active + idle)
        .map(|_| UdpSocket::bind("127.0.0.1:0").unwrap())
        .collect();
    let all: Vec<u16> = held
        .iter()
        .map(|s| s.local_addr().unwrap().port())
        .collect();
    drop(held);
    let (ports, idle_ports) = all.split_at(active);
    let ports = ports.to_vec();
    let http_port = free_tcp_port();
    let mut handlers: Vec<serde_json::Value> = ports
        .iter()
        .enumerate()
        .map(|(i, p)| serde_json::json!({"name": format!("a{i}"), "conn_type": "udp", "address": ["127.0.0.1", p],
                                          "rotate_log": false, "file_name_pattern": "{name}.pcap"}))
        .collect();
    // Idle handlers: sockets bound to ports nobody sends to.
    for (i, p) in idle_ports.iter().enumerate() {
        handlers.push(serde_json::json!({"name": format!("idle{i}"), "conn_type": "udp", "address": ["127.0.0.1", p], "rotate_log": false, "file_name_pattern": "{name}.pcap"}));
    }
    let config = serde_json::json!({
        "capture_manager": {"root_log_directory": dir, "manager_server": {"host": "127.0.0.1", "port": http_port}},
        "handlers": handlers
    });
    let cfg = dir.join("bsc.json");
    std::fs::write(&cfg, config.to_string()).unwrap();
    let mut child = Command::new(bin)
        .args(["--config", cfg.to_str().unwrap(), "--log-level", "warn"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log_sink())
        .spawn()
        .expect("start bsc");
    common::register_pid(child.id());
    let http = wait_http(http_port, active + idle, &mut child);
    let pid = child.id();
    let cpu_before = cpu_ns(pid);
    let ticks_before = user_system_ticks(pid);
    let stop = Arc::new(AtomicBool::new(false));
    let prober = {
        let stop = stop.clone();
        std::thread::spawn(move || probe_http(http, &stop))
    };
    let (sent, offered) = generate(&ports, size, rate);
    // Settle: until every file stops growing (bsc has drained its sockets).
    let files: Vec<_> = (0..active)
        .map(|i| dir.join(format!("a{i}.pcap")))
        .collect();
    common::settle(&files);
    stop.store(true, Ordering::Relaxed);
    let http = prober.join().unwrap();
    let cpu = cpu_ns(pid).saturating_sub(cpu_before);
    let ticks = user_system_ticks(pid);
    let (user, system) = (ticks.0 - ticks_before.0, ticks.1 - ticks_before.1);
    let user_share = (user + system > 0).then(|| user as f64 / (user + system) as f64);
    let peak_rss_kb = peak_rss_kb(pid);
    let _ = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    let _ = child.wait();
    common::forget_pid(pid);
    let written = distinct_sequence_numbers(&files, sent);
    let _ = std::fs::remove_dir_all(&dir);
    Outcome {
        offered,
        sent,
        written,
        cpu_ns: cpu,
        user_share,
        peak_rss_kb,
        http,
    }
}

/// Connects to bsc's API once it answers with every handler running (at most
/// 20 s); stops the benchmark if bsc exits instead.
fn wait_http(port: u16, handlers: usize, child: &mut std::process::Child) -> TcpStream {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("bsc exited during start-up ({status}); run with BSC_BENCH_LOG=file to see why");
        }
        if let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) {
            let _ = s.write_all(b"GET /health HTTP/1.1\r\nConnection: close\r\n\r\n");
            let mut answer = String::new();
            let _ = std::io::Read::read_to_string(&mut s, &mut answer);
            if answer.contains(&format!("\"handlers\":{handlers},")) {
                return TcpStream::connect(("127.0.0.1", port)).unwrap();
            }
        }
        assert!(Instant::now() < deadline, "bsc did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `GET /stats` every 20 ms on one keep-alive connection; the latency of each.
fn probe_http(stream: TcpStream, stop: &AtomicBool) -> Vec<Duration> {
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    let mut out = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        let t = Instant::now();
        if writer
            .write_all(b"GET /stats HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            .is_err()
        {
            break;
        }
        let mut len = 0usize;
        let mut line = String::new();
        loop {
            line.clear();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return out;
            }
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                len = v.trim().parse().unwrap_or(0);
            }
            if line == "\r\n" {
                break;
            }
        }
        let mut body = vec![0; len];
        if std::io::Read::read_exact(&mut reader, &mut body).is_err() {
            break;
        }
        out.push(t.elapsed());
        std::thread::sleep(Duration::from_millis(20));
    }
    out
}

fn cpu_ns(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/schedstat"))
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(0)
}

/// (user, system) clock ticks the process has used (/proc/PID/stat fields 14, 15).
fn user_system_ticks(pid: u32) -> (u64, u64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<u64> = rest
        .split_whitespace()
        .map(|v| v.parse().unwrap_or(0))
        .collect();
    (
        f.get(11).copied().unwrap_or(0),
        f.get(12).copied().unwrap_or(0),
    )
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

/// Distinct sequence numbers below `sent` across the files, read with pcap-file.
fn distinct_sequence_numbers(files: &[std::path::PathBuf], sent: u64) -> u64 {
    let mut seen = vec![false; sent as usize];
    let mut n = 0;
    for path in files {
        let Ok(f) = File::open(path) else { continue };
        let mut reader = PcapReader::new(f).expect("a valid pcap file");
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
    }
    n
}

fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the timespec it is given.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// The ceiling: a blocking `recvmmsg` loop that only counts, with the same buffer.
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
        const N: usize = 64;
        let mut bufs = vec![[0u8; 2048]; N];
        let mut iovs: Vec<libc::iovec> = bufs
            .iter_mut()
            .map(|b| libc::iovec {
                iov_base: b.as_mut_ptr().cast(),
                iov_len: b.len(),
            })
            .collect();
        // SAFETY: all-zero mmsghdrs, then pointed at the iovecs above.
        let mut msgs: Vec<libc::mmsghdr> = (0..N).map(|_| unsafe { std::mem::zeroed() }).collect();
        for (m, iov) in msgs.iter_mut().zip(iovs.iter_mut()) {
            m.msg_hdr.msg_iov = iov;
            m.msg_hdr.msg_iovlen = 1;
        }
        let cpu0 = thread_cpu_ns();
        let mut n = 0u64;
        loop {
            // SAFETY: msgs point at live buffers of the lengths given.
            let got = unsafe {
                libc::recvmmsg(
                    rx.as_raw_fd(),
                    msgs.as_mut_ptr(),
                    N as u32,
                    0,
                    std::ptr::null_mut(),
                )
            };
            if got <= 0 {
                break; // the 300 ms read timeout: the sender is done
            }
            n += got as u64;
        }
        (n, thread_cpu_ns() - cpu0)
    });
    let (sent, offered) = generate(&[port], size, None);
    let (written, cpu_ns) = counter.join().unwrap();
    Outcome {
        offered,
        sent,
        written,
        cpu_ns,
        user_share: None,
        peak_rss_kb: 0,
        http: Vec::new(),
    }
}
