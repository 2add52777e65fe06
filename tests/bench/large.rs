//! Section `large` (issue 17): 8,000 B and 60,000 B datagrams, bsc against a
//! reference receiver that writes, on a tmpfs of our own and on the disk.
//!
//! The reference receiver is a thread of this process: blocking `recvmmsg` (flags
//! 0: it waits for full batches) into 64 slots of 64 KiB on a socket with bsc's
//! default receive buffer (`rcvbuf_bytes`, 24 MiB asked, SO_RCVBUFFORCE), and per
//! batch one `writev` of (16-byte pcap record header, payload) pairs into a pcap
//! file (24-byte global header first, link type 147, one clock_gettime per batch)
//! in the same folder bsc's root would be in. Its CPU is the thread's CPU time;
//! its loss what it wrote against what was sent.
//!
//! Per file system and size, alternating `BSC_BENCH_RUNS` times: the reference at
//! the generator's maximum, whose median captured bytes per CPU second is its
//! capacity, and bsc with 1 handler at the generator's maximum (target: its median
//! bytes per CPU second at least 0.8x the reference's; a single short step on a
//! fresh disk file can be off by 3x, hence medians); then, alternating
//! `BSC_BENCH_RUNS` times again, bsc with 1 handler,
//! with 10 handlers on 10 ports and with 1,000 idle handlers + 1, each at 60% of
//! the reference's capacity in all (target: no loss; medians of CPU per datagram
//! within 1.15x and 1.1x of one handler's). Each paced step sends for at most
//! `LARGE_STEP` and `LARGE_MAX_BYTES`, each step at the maximum for `MAX_STEP`
//! (at most `MAX_SENT_BYTES`, most of it dropped); its files are deleted once
//! read back, so the tmpfs (`TMPFS_MB`) never fills.
//!
//! Section `rcvbuf`: fills a socket with bsc's default receive buffer without
//! reading it and counts what it holds, with the kernel's charge per datagram
//! (rx_queue in /proc/net/udp, the skb true size).

use std::fs::File;
use std::io::Write;
use std::net::UdpSocket;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::common::{self, Payload, StepOutcome, Tmpfs, UdpStep, WorkDir, RCVBUF};

const SIZES: [usize; 2] = [8000, 60000];
const LARGE_STEP: Duration = Duration::from_millis(1500);
/// The steps at the generator's maximum: shorter, and bounded by what is sent
/// more loosely, since most of it is dropped (the receivers take 10-30%); what
/// is written stays below what a receiver can take in `MAX_STEP` (about 1.5 GB
/// at 2.5 GB per CPU second).
const MAX_STEP: Duration = Duration::from_millis(600);
const MAX_SENT_BYTES: u64 = 3 << 30;
const LARGE_MAX_BYTES: u64 = 512 << 20;
const TMPFS_MB: u64 = 2048;
const SLOTS: usize = 64;
const SLOT: usize = 64 << 10;
const SHARE: f64 = 0.6;

fn senders() -> usize {
    std::env::var("BSC_BENCH_SENDERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
        .clamp(1, 4)
}

fn fs_wanted(name: &str) -> bool {
    std::env::var("BSC_BENCH_FS").map_or(true, |f| f.trim().is_empty() || f.trim() == name)
}

pub fn section() {
    let pid = std::process::id();
    let runs = common::runs();
    let senders = senders();
    println!(
        "\n== large: 8,000 B and 60,000 B datagrams (issue 17), paced steps at most {:.1} s and {} MiB, steps at the maximum {:.1} s and {} MiB sent, {senders} sender thread(s), {runs} alternating run(s) per median ==",
        LARGE_STEP.as_secs_f64(),
        LARGE_MAX_BYTES >> 20,
        MAX_STEP.as_secs_f64(),
        MAX_SENT_BYTES >> 20
    );
    let (mut verdicts, mut summary) = (Vec::new(), Vec::new());
    let mut add = |(v, s): (Vec<String>, Vec<String>)| {
        verdicts.extend(v);
        summary.extend(s);
    };
    if fs_wanted("tmpfs") {
        let path = PathBuf::from(format!("/tmp/bsc-bench-tmpfs-{pid}"));
        match Tmpfs::mount(path, TMPFS_MB) {
            Some(t) => {
                let w = WorkDir::new(t.0.join("w"));
                add(file_system("tmpfs", &w.0, runs, senders));
                drop(w);
                drop(t);
            }
            None => match Path::new("/dev/shm") {
                shm if common::fs_type(shm) == "tmpfs" => {
                    let w = WorkDir::new(shm.join(format!("bsc-bench-{pid}")));
                    add(file_system("tmpfs", &w.0, runs, senders));
                }
                _ => println!("(no tmpfs: mount failed and /dev/shm is not tmpfs)"),
            },
        }
    }
    if fs_wanted("disk") {
        let w = WorkDir::new(PathBuf::from(format!("/var/tmp/bsc-bench-large-{pid}")));
        let fs = common::fs_type(&w.0);
        add(file_system(&format!("disk/{fs}"), &w.0, runs, senders));
    }
    if !summary.is_empty() {
        println!("\nlarge: summary (medians; GB/s = captured GB per CPU second, Gb/s = captured Gbit/s at the maximum; 60% loss over all 1-handler runs; 10h/1h and idle/1h: CPU per datagram at 60%)");
        println!("{}", summary_header());
        for l in &summary {
            println!("{l}");
        }
    }
    if !verdicts.is_empty() {
        println!("\nlarge: verdicts");
        for v in verdicts {
            println!("  {v}");
        }
    }
}

/// One row's figures.
struct Row {
    asked: Option<f64>,
    size: usize,
    sent: u64,
    written: u64,
    secs: f64,
    cpu_ns: u64,
}

impl Row {
    fn from_step(o: &StepOutcome, size: usize) -> Row {
        Row {
            asked: o.blast.asked,
            size,
            sent: o.blast.sent,
            written: o.written,
            secs: o.blast.secs,
            cpu_ns: o.cpu_ns,
        }
    }
    fn gbits(&self, n: u64) -> f64 {
        n as f64 * self.size as f64 * 8.0 / 1e9 / self.secs.max(1e-9)
    }
    /// Captured bytes per CPU second.
    fn per_cpu_s(&self) -> f64 {
        self.written as f64 * self.size as f64 / (self.cpu_ns as f64 / 1e9).max(1e-9)
    }
    fn us_per(&self) -> f64 {
        self.cpu_ns as f64 / 1000.0 / self.written.max(1) as f64
    }
    fn lost(&self) -> u64 {
        self.sent.saturating_sub(self.written)
    }
}

fn header() {
    println!(
        "{:<10} {:>6} {:<22} {:>7} {:>8} {:>8} {:>7} {:>7} {:>7} {:>8} {:>9} {:>6} {:>8}",
        "fs",
        "size",
        "receiver",
        "asked",
        "offered",
        "captured",
        "sent",
        "written",
        "loss %",
        "cpu ms",
        "GB/CPU-s",
        "ratio",
        "us/dgram"
    );
}

/// `capacity`: the reference's captured bytes per CPU second (the ratio's base).
fn print_row(fs: &str, label: &str, r: &Row, capacity: Option<f64>) {
    let asked = r.asked.map_or("max".to_string(), |a| {
        format!("{:.2}", a * r.size as f64 * 8.0 / 1e9)
    });
    let short = match r.asked {
        Some(a) if r.sent as f64 / r.secs < 0.95 * a => format!(
            "  (generator reached only {:.0}% of the asked rate)",
            100.0 * r.sent as f64 / r.secs / a
        ),
        _ => String::new(),
    };
    println!(
        "{:<10} {:>6} {:<22} {:>7} {:>8.2} {:>8.2} {:>7} {:>7} {:>7.3} {:>8.1} {:>9.3} {:>6} {:>8.2}{}",
        fs,
        r.size,
        label,
        asked,
        r.gbits(r.sent),
        r.gbits(r.written),
        r.sent,
        r.written,
        100.0 * r.lost() as f64 / r.sent.max(1) as f64,
        r.cpu_ns as f64 / 1e6,
        r.per_cpu_s() / 1e9,
        capacity.map_or("-".to_string(), |c| format!("{:.2}", r.per_cpu_s() / c)),
        r.us_per(),
        short
    );
}

/// Prints the rows of one file system; returns its verdicts and summary lines.
fn file_system(fs: &str, root: &Path, runs: usize, senders: usize) -> (Vec<String>, Vec<String>) {
    println!(
        "\n-- {fs}: {} ({}) -- Gbit/s asked, offered, captured; GB = 1e9 bytes",
        root.display(),
        common::fs_type(root)
    );
    header();
    let mut verdicts = Vec::new();
    let mut summary = Vec::new();
    for size in SIZES {
        let bounds = |rate: Option<f64>| match rate {
            Some(_) => (LARGE_STEP, LARGE_MAX_BYTES / size as u64),
            None => (MAX_STEP, MAX_SENT_BYTES / size as u64),
        };
        let step = |active: usize, idle: usize, rate: Option<f64>| {
            let (step, max_count) = bounds(rate);
            let o = common::run_udp_step(&UdpStep {
                root,
                size,
                active,
                idle,
                rate,
                payload: Payload::Plain,
                extra: serde_json::json!({}),
                senders,
                step,
                max_count,
            });
            Row::from_step(&o, size)
        };
        // The reference runs in every case (its capacity sets the 60% rate),
        // alternating with bsc at the generator's maximum; medians of both.
        let (mut refs, mut maxes, mut ref_gbits, mut max_gbits) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for _ in 0..runs {
            let (dur, max_count) = bounds(None);
            let r = run_reference(root, size, senders, dur, max_count);
            print_row(fs, "reference max", &r, None);
            let c = r.per_cpu_s();
            refs.push(c);
            ref_gbits.push(r.gbits(r.written));
            if common::only("bsc 1 handler max") {
                let b = step(1, 0, None);
                print_row(fs, "bsc 1 handler max", &b, Some(c));
                maxes.push(b.per_cpu_s());
                max_gbits.push(b.gbits(b.written));
            }
        }
        let capacity = common::median(refs);
        let bsc_max = common::median(maxes.clone());
        if !maxes.is_empty() {
            let m = bsc_max;
            let ratio = m / capacity;
            verdicts.push(format!(
                "{fs} {size} B: bsc {:.3} GB per CPU-s = {ratio:.2}x the reference's {:.3} (medians; target >= 0.8x): {}",
                m / 1e9,
                capacity / 1e9,
                common::at_least(ratio, 0.8)
            ));
        }
        let rate = SHARE * capacity / size as f64;
        let configs: [(&str, usize, usize); 3] = [
            ("bsc 1 handler 60%", 1, 0),
            ("bsc 10 handlers 60%", 10, 0),
            ("bsc 1000 idle+1 60%", 1, 1000),
        ];
        let mut rows: Vec<Vec<Row>> = (0..configs.len()).map(|_| Vec::new()).collect();
        for _ in 0..runs {
            for (i, (label, active, idle)) in configs.iter().enumerate() {
                if !common::only(label) {
                    continue;
                }
                let r = step(*active, *idle, Some(rate));
                print_row(fs, label, &r, Some(capacity));
                rows[i].push(r);
            }
        }
        let med: Vec<f64> = rows
            .iter()
            .map(|v| common::median(v.iter().map(Row::us_per).collect()))
            .collect();
        // Share of the asked rate the generator reached (median per configuration).
        let reached: Vec<f64> = rows
            .iter()
            .map(|v| common::median(v.iter().map(|r| r.sent as f64 / r.secs / rate).collect()))
            .collect();
        if !rows[0].is_empty() {
            let lost: u64 = rows[0].iter().map(Row::lost).sum();
            let sent: u64 = rows[0].iter().map(|r| r.sent).sum();
            let others: Vec<String> = rows[1..]
                .iter()
                .zip(&configs[1..])
                .filter(|(v, _)| !v.is_empty())
                .map(|(v, c)| format!("{}: {} lost", c.0, v.iter().map(Row::lost).sum::<u64>()))
                .collect();
            verdicts.push(format!(
                "{fs} {size} B: no loss at 60% of the reference ({:.2} Gbit/s asked, generator reached {:.0}%), 1 handler: {lost} of {sent} lost: {}{}",
                rate * size as f64 * 8.0 / 1e9,
                reached[0] * 100.0,
                if lost == 0 { "met" } else { "MISSED" },
                if others.is_empty() { String::new() } else { format!(" ({})", others.join(", ")) }
            ));
        }
        for (i, limit) in [(1, 1.15), (2, 1.1)] {
            if rows[0].is_empty() || rows[i].is_empty() {
                continue;
            }
            let r = med[i] / med[0];
            let same_rate = (reached[i] - reached[0]).abs() < 0.05;
            verdicts.push(format!(
                "{fs} {size} B: {} medians {:.2} vs {:.2} us CPU per datagram = {r:.2}x (target <= {limit}x): {}{}",
                configs[i].0.trim_end_matches(" 60%"),
                med[i],
                med[0],
                common::at_most(r, limit),
                if same_rate {
                    String::new()
                } else {
                    format!(
                        " (not at the same rate: the generator reached {:.0}% of the asked rate here, {:.0}% for 1 handler)",
                        reached[i] * 100.0,
                        reached[0] * 100.0
                    )
                }
            ));
        }
        summary.push(summary_line(
            fs,
            size,
            capacity,
            common::median(ref_gbits),
            bsc_max,
            common::median(max_gbits),
            rate,
            &rows[0],
            med[1] / med[0],
            med[2] / med[0],
        ));
    }
    (verdicts, summary)
}

/// One line of the summary: medians of a file system's rows for one size.
#[allow(clippy::too_many_arguments)]
fn summary_line(
    fs: &str,
    size: usize,
    capacity: f64,
    ref_gbits: f64,
    bsc_max: f64,
    max_gbits: f64,
    rate: f64,
    one: &[Row],
    ten: f64,
    idle: f64,
) -> String {
    let sent: u64 = one.iter().map(|r| r.sent).sum();
    let lost: u64 = one.iter().map(Row::lost).sum();
    format!(
        "{:<10} {:>6} {:>9.3} {:>8.2} {:>9.3} {:>8.2} {:>6.2} {:>8.2} {:>9.3} {:>7.2} {:>7.2}",
        fs,
        size,
        capacity / 1e9,
        ref_gbits,
        bsc_max / 1e9,
        max_gbits,
        bsc_max / capacity,
        rate * size as f64 * 8.0 / 1e9,
        100.0 * lost as f64 / sent.max(1) as f64,
        ten,
        idle
    )
}

pub fn summary_header() -> String {
    format!(
        "{:<10} {:>6} {:>9} {:>8} {:>9} {:>8} {:>6} {:>8} {:>9} {:>7} {:>7}",
        "fs",
        "size",
        "ref GB/s",
        "ref Gb/s",
        "bsc GB/s",
        "bsc Gb/s",
        "ratio",
        "60% Gb/s",
        "60% loss%",
        "10h/1h",
        "idle/1h"
    )
}

/// The reference receiver at the generator's maximum.
fn run_reference(root: &Path, size: usize, senders: usize, step: Duration, max_count: u64) -> Row {
    let dir = WorkDir::new(root.join(format!("ref{size}")));
    let path = dir.0.join("ref.pcap");
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    common::set_rcvbuf(sock.as_raw_fd(), RCVBUF);
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let port = sock.local_addr().unwrap().port();
    let done = Arc::new(AtomicBool::new(false));
    let rx = {
        let done = done.clone();
        let path = path.clone();
        std::thread::spawn(move || reference_receiver(sock, &path, &done))
    };
    let blast = common::blast(
        &[port],
        size,
        Payload::Plain,
        None,
        senders,
        step,
        max_count,
    );
    done.store(true, Ordering::Relaxed);
    let cpu_ns = rx.join().unwrap();
    let rb = common::read_back(std::slice::from_ref(&path), 0, blast.next_seq);
    Row {
        asked: None,
        size,
        sent: blast.sent,
        written: rb.distinct,
        secs: blast.secs,
        cpu_ns,
    }
}

/// Blocking recvmmsg into 64 slots of 64 KiB; per batch one writev of (record
/// header, payload) pairs. Returns the thread's CPU time.
fn reference_receiver(sock: UdpSocket, path: &Path, done: &AtomicBool) -> u64 {
    let mut file = File::create(path).unwrap();
    file.write_all(&common::pcap_global_header()).unwrap();
    let mut bufs = vec![0u8; SLOTS * SLOT];
    let mut headers = [[0u8; 16]; SLOTS];
    let mut iovs: Vec<libc::iovec> = bufs
        .chunks_mut(SLOT)
        .map(|b| libc::iovec {
            iov_base: b.as_mut_ptr().cast(),
            iov_len: b.len(),
        })
        .collect();
    // SAFETY: all-zero mmsghdrs, then pointed at the iovecs above.
    let mut msgs: Vec<libc::mmsghdr> = (0..SLOTS).map(|_| unsafe { std::mem::zeroed() }).collect();
    for (m, iov) in msgs.iter_mut().zip(iovs.iter_mut()) {
        m.msg_hdr.msg_iov = iov;
        m.msg_hdr.msg_iovlen = 1;
    }
    let mut wiov: Vec<libc::iovec> = vec![
        libc::iovec {
            iov_base: std::ptr::null_mut(),
            iov_len: 0
        };
        2 * SLOTS
    ];
    let cpu0 = common::thread_cpu_ns();
    loop {
        // SAFETY: msgs point at live buffers of the lengths given.
        let got = unsafe {
            libc::recvmmsg(
                sock.as_raw_fd(),
                msgs.as_mut_ptr(),
                SLOTS as u32,
                0,
                std::ptr::null_mut(),
            )
        };
        if got <= 0 {
            if done.load(Ordering::Relaxed) {
                break; // the 200 ms read timeout after the sender is done
            }
            continue;
        }
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: clock_gettime writes the timespec it is given.
        unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut ts) };
        let mut total = 0usize;
        for i in 0..got as usize {
            let len = msgs[i].msg_len as usize;
            let h = &mut headers[i];
            h[0..4].copy_from_slice(&(ts.tv_sec as u32).to_ne_bytes());
            h[4..8].copy_from_slice(&((ts.tv_nsec / 1000) as u32).to_ne_bytes());
            h[8..12].copy_from_slice(&(len as u32).to_ne_bytes());
            h[12..16].copy_from_slice(&(len as u32).to_ne_bytes());
            wiov[2 * i] = libc::iovec {
                iov_base: h.as_mut_ptr().cast(),
                iov_len: 16,
            };
            wiov[2 * i + 1] = libc::iovec {
                iov_base: bufs[i * SLOT..].as_mut_ptr().cast(),
                iov_len: len,
            };
            total += 16 + len;
        }
        // SAFETY: wiov[..2 * got] point at live headers and received payloads.
        let w = unsafe { libc::writev(file.as_raw_fd(), wiov.as_ptr(), 2 * got) };
        assert_eq!(
            w,
            total as isize,
            "reference writev: {}",
            std::io::Error::last_os_error()
        );
    }
    common::thread_cpu_ns() - cpu0
}

/// How many datagrams the receive buffer bsc asks for by default holds.
pub fn section_rcvbuf() {
    println!(
        "\n== rcvbuf: a socket with bsc's default receive buffer ({} MiB asked), filled and not read ==",
        RCVBUF >> 20
    );
    println!(
        "{:>6} {:>10} {:>8} {:>12} {:>10} {:>14} {:>16}",
        "size", "granted", "held", "charge/dgram", "held MB", "ms at 10 Gb/s", "asked for 100 ms"
    );
    for size in [1024usize, 8000, 60000] {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        let granted = common::set_rcvbuf(sock.as_raw_fd(), RCVBUF);
        let port = sock.local_addr().unwrap().port();
        let count = (granted / (size + 256)) as u64 + 1000;
        let blast = common::blast(
            &[port],
            size,
            Payload::Plain,
            None,
            1,
            Duration::from_secs(5),
            count,
        );
        let rx_queue = rx_queue(port);
        sock.set_nonblocking(true).unwrap();
        let mut buf = vec![0u8; 65536];
        let mut held = 0u64;
        while sock.recv(&mut buf).is_ok() {
            held += 1;
        }
        let charge = rx_queue.map_or(granted as f64 / held.max(1) as f64, |q| {
            q as f64 / held.max(1) as f64
        });
        // 100 ms at 10 Gbit/s is 125 MB of payload; the buffer is charged
        // `charge` per datagram; rcvbuf_bytes is half of what the kernel grants.
        let need = 125e6 / size as f64 * charge / 2.0;
        println!(
            "{:>6} {:>10} {:>8} {:>12.0} {:>10.1} {:>14.1} {:>13.0} MB{}",
            size,
            granted,
            held,
            charge,
            held as f64 * size as f64 / 1e6,
            held as f64 * size as f64 * 8.0 / 1e10 * 1000.0,
            need / 1e6,
            if blast.sent < count {
                "  (not all sent)"
            } else {
                ""
            }
        );
    }
    println!("  charge/dgram: rx_queue of /proc/net/udp over the datagrams held (the skb true size); 'asked for 100 ms': the rcvbuf_bytes (and net.core.rmem_max without CAP_NET_ADMIN) a 100 ms stall at 10 Gbit/s needs");
}

/// The socket's rx_queue (bytes charged to its receive buffer), /proc/net/udp.
fn rx_queue(port: u16) -> Option<u64> {
    let table = std::fs::read_to_string("/proc/net/udp").ok()?;
    let suffix = format!(":{port:04X}");
    table.lines().skip(1).find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        if f.get(1)?.ends_with(&suffix) {
            u64::from_str_radix(f.get(4)?.split(':').nth(1)?, 16).ok()
        } else {
            None
        }
    })
}
