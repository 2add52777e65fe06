//! Section `forward` (issue 27): what live forwarding costs capture, each row
//! against plain capture (bsc with 1 handler, no `forward`) in the same run,
//! alternating runs, at the same generator pace, on a tmpfs of our own, bsc
//! pinned to a core of its own as in the goals section. CPU per datagram
//! written; the UDP rows' goal is at most 1.6x with no capture loss (counted
//! from the files) and every datagram forwarded:
//!
//! - UDP 64 B and 1 KiB at the generator's maximum to a UDP target on
//!   loopback (a count-only `recvmmsg` receiver on the load CPUs). Two things
//!   make this base unfair to bsc on a 2-CPU machine: the loopback delivers
//!   into the target's socket inside bsc's send call (bsc's core pays the
//!   consumer's receive), and the target's thread shares the generator's CPU,
//!   so the forwarding step's generator is slower than the plain step's
//!   (fewer datagrams per batch costs more per datagram).
//! - The same at a fixed pace in both steps (64 B at 400,000/s, 1 KiB at
//!   250,000/s: rates one core can both receive and send): the same offered
//!   load, forwarding the only difference.
//! - The same at the generator's maximum to a target across a link: a veth
//!   pair (MTU 1,500) into a namespace of the benchmark's own, its receive
//!   work steered to the load CPUs (RPS), as a consumer on another machine
//!   would do it: bsc's core pays its send only.
//! - UDP 64 B at the maximum, forwarded to a TCP target that accepts and never
//!   reads (its queue fills, then units are dropped and counted). Goal: costs
//!   capture nothing measurable, read as at most 1.1x, with no capture loss.
//!
//! Since bsc sends nothing while capture is behind (the recording comes
//! first), the table gives the share of the datagrams written that bsc sent
//! (its `units_sent`), and a row under its goal that did not send them all is
//! not judged. The target may not keep up: what it received and what its
//! socket dropped are shown beside, and together must account for every
//! datagram bsc sent.

use std::net::{Ipv4Addr, TcpListener, UdpSocket};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::common::{self, Pinning, SmallOutcome, SmallStep, StatsProbe, Tmpfs, WorkDir};
use crate::veth::Veth;

const TMPFS_MB: u64 = 2048;

/// What a step forwards to.
#[derive(Clone, Copy, PartialEq)]
enum Target {
    None,
    /// A UDP receiver on loopback: the kernel delivers into it in bsc's
    /// own send call, so bsc's CPU pays the consumer's receive too.
    Udp,
    /// A UDP receiver across a veth pair in a namespace of the benchmark's
    /// own, its receive work steered to the load CPUs: bsc's CPU pays its
    /// send, as with a consumer on another machine.
    UdpLink,
    StalledTcp,
}

impl Target {
    fn is_udp(self) -> bool {
        matches!(self, Target::Udp | Target::UdpLink)
    }
}

/// The far end of the forward section's link: its namespace and address.
struct Link {
    veth: Veth,
    far: Ipv4Addr,
    /// `net.core.netdev_max_backlog` before the link raised it.
    backlog_was: Option<String>,
}

/// The per-CPU backlog: with the link's receive work steered to the load
/// CPUs, their backlog also holds the link's packets, and at Linux's
/// default (1,000) it dropped some of the generator's loopback datagrams
/// before they reached bsc's socket (`/proc/net/softnet_stat`).
const BACKLOG: &str = "/proc/sys/net/core/netdev_max_backlog";

impl Link {
    /// A veth pair at Ethernet's MTU (1,500), the far end's receive work on
    /// the load CPUs (`None`: no second CPU to steer it to).
    fn new(pin: Option<&Pinning>) -> Link {
        let veth = Veth::new();
        veth.set_mtu(1500);
        let (_, far) = veth.address();
        if let Some(p) = pin {
            veth.steer_far_receive(p.load.iter().map(|c| 1u64 << c).sum());
        }
        let backlog_was = std::fs::read_to_string(BACKLOG).ok();
        let backlog = backlog_was
            .as_deref()
            .and_then(|b| b.trim().parse::<u32>().ok());
        if backlog.is_some_and(|b| b < 10_000) {
            let _ = std::fs::write(BACKLOG, "10000");
        }
        Link {
            veth,
            far,
            backlog_was,
        }
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        if let Some(was) = &self.backlog_was {
            let _ = std::fs::write(BACKLOG, was);
        }
    }
}

struct Row {
    label: &'static str,
    size: usize,
    /// The generator's pace in both steps (`None`: its maximum).
    rate: Option<u64>,
    target: Target,
    goal: f64,
    plain: Vec<f64>,
    forwarding: Vec<f64>,
    /// Per forwarding step to a UDP target: the share of the datagrams written
    /// that bsc sent it (`units_sent`; bsc sends nothing while capture is
    /// behind).
    shares: Vec<f64>,
}

pub fn section() {
    let pid = std::process::id();
    let tmpfs = Tmpfs::mount(
        PathBuf::from(format!("/tmp/bsc-bench-forward-{pid}")),
        TMPFS_MB,
    );
    let work = WorkDir::new(match &tmpfs {
        Some(t) => t.0.join("w"),
        None => std::env::temp_dir().join(format!("bsc-bench-forward-{pid}")),
    });
    let runs = common::runs();
    let pin = Pinning::detect();
    println!(
        "\n== forward: live forwarding against plain capture, {runs} alternating run(s) per median, files in {} ({}) ==",
        work.0.display(),
        common::fs_type(&work.0)
    );
    let mut rows: Vec<Row> = [
        ("udp 64 B -> 1 udp target", 64, None, Target::Udp, 1.6),
        ("udp 1 KiB -> 1 udp target", 1024, None, Target::Udp, 1.6),
        (
            "udp 64 B 400k/s -> udp target",
            64,
            Some(400_000),
            Target::Udp,
            1.6,
        ),
        (
            "udp 1 KiB 250k/s -> udp target",
            1024,
            Some(250_000),
            Target::Udp,
            1.6,
        ),
        (
            "udp 64 B -> udp across a link",
            64,
            None,
            Target::UdpLink,
            1.6,
        ),
        (
            "udp 1 KiB -> udp across a link",
            1024,
            None,
            Target::UdpLink,
            1.6,
        ),
        ("udp 64 B -> stalled tcp", 64, None, Target::StalledTcp, 1.1),
    ]
    .into_iter()
    .filter(|r| common::only(r.0))
    .map(|(label, size, rate, target, goal)| Row {
        label,
        size,
        rate,
        target,
        goal,
        plain: Vec::new(),
        forwarding: Vec::new(),
        shares: Vec::new(),
    })
    .collect();
    // The link, when a row uses it (set up once, removed at the end).
    let link = rows
        .iter()
        .any(|r| r.target == Target::UdpLink)
        .then(|| Link::new(pin.as_ref()));
    println!(
        "{:>3} {:<30} {:<11} {:>9} {:>8} {:>7} {:>9} {:>6} {:>9} {:>8} {:>9} {:>8} {:>7} {:>7}",
        "run",
        "row",
        "bsc",
        "written",
        "rate/s",
        "cpu ms",
        "cpu/unit",
        "lost",
        "sent",
        "dropped",
        "arrived",
        "tgt drop",
        "k drops",
        "backlog"
    );
    let (mut lost, mut sent, mut short, mut astray) = (0u64, 0u64, Vec::new(), Vec::new());
    for run in 0..runs {
        for row in rows.iter_mut() {
            let mut order = [Target::None, row.target];
            if run % 2 == 1 {
                order.reverse();
            }
            for target in order {
                let backlog_before = backlog_drops();
                let (o, arrived) = step(
                    &work.0,
                    row.size,
                    row.rate,
                    target,
                    link.as_ref(),
                    pin.as_ref(),
                );
                let name = if target == Target::None {
                    "plain"
                } else {
                    "forwarding"
                };
                let (bsc_sent, _, _) = o.forward.unwrap_or_default();
                let count = |n: Option<u64>| n.map_or("-".to_string(), |n| n.to_string());
                println!(
                    "{:>3} {:<30} {:<11} {:>9} {:>8.0} {:>7.1} {:>9} {:>6} {:>9} {:>8} {:>9} {:>8} {:>7} {:>7}",
                    run + 1,
                    row.label,
                    name,
                    o.written,
                    o.offered,
                    o.cpu_ns as f64 / 1e6,
                    format!("{:.3} us", o.cpu_us_per()),
                    o.lost(),
                    count(o.forward.map(|f| f.0)),
                    count(o.forward.map(|f| f.1)),
                    count(arrived.map(|a| a.received)),
                    count(arrived.map(|a| a.dropped)),
                    count(o.forward.map(|f| f.2)),
                    backlog_drops() - backlog_before,
                );
                lost += o.lost();
                sent += o.sent;
                if let (true, Some(a)) = (target.is_udp(), arrived) {
                    if bsc_sent < o.written {
                        short.push(format!("run {} {}", run + 1, row.label));
                    }
                    if a.received + a.dropped < bsc_sent {
                        astray.push(format!("run {} {}", run + 1, row.label));
                    }
                    row.shares.push(bsc_sent as f64 / o.written.max(1) as f64);
                }
                match target {
                    Target::None => row.plain.push(o.cpu_us_per()),
                    _ => row.forwarding.push(o.cpu_us_per()),
                }
            }
        }
    }
    drop(link);
    println!("\nforward (issue 27): medians of {runs} alternating run(s); ratio = median of the runs' forwarding/plain ratios");
    println!(
        "{:<30} {:>10} {:>12} {:>6} {:>13} {:>7}  {:>13}  verdict",
        "row", "plain us", "forward us", "ratio", "spread", "goal", "bsc sent"
    );
    for row in &rows {
        let ratios: Vec<f64> = row
            .plain
            .iter()
            .zip(&row.forwarding)
            .map(|(p, f)| f / p)
            .collect();
        let ratio = common::median(ratios.clone());
        let lo = ratios.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = ratios.iter().copied().fold(0.0, f64::max);
        // The ratio means "forwarding every unit" only when every unit went.
        let to_target = match row.shares.is_empty() {
            true => "-".to_string(),
            false => format!(
                "{:.0}-{:.0}%",
                100.0 * row.shares.iter().copied().fold(1.0, f64::min),
                100.0 * row.shares.iter().copied().fold(0.0, f64::max)
            ),
        };
        // Met only if every unit went: a core that forwards part of them
        // (capture came first) costs less than the goal's cost.
        let all_sent = row.shares.iter().all(|&s| s >= 1.0);
        let verdict = match (ratio <= row.goal, all_sent) {
            (true, false) => "NOT JUDGED: bsc did not send every unit".into(),
            _ => common::at_most(ratio, row.goal),
        };
        println!(
            "{:<30} {:>10.3} {:>12.3} {:>5.2}x {:>13} {:>6}x  {:>13}  {verdict}",
            row.label,
            common::median(row.plain.clone()),
            common::median(row.forwarding.clone()),
            ratio,
            format!("{lo:.2}-{hi:.2}x"),
            format!("<={:.1}", row.goal),
            to_target,
        );
    }
    if sent > 0 {
        println!(
            "  no capture loss (every step above, counted from the files): {lost} of {sent} datagrams lost: {}",
            if lost == 0 { "met" } else { "MISSED" }
        );
        println!(
            "  bsc sent every datagram it wrote to the UDP target: {}",
            if short.is_empty() {
                "met".to_string()
            } else {
                format!("MISSED: {}", short.join("; "))
            }
        );
        println!(
            "  each datagram bsc sent reached the target's socket (received, or dropped there for room): {}",
            if astray.is_empty() {
                "yes".to_string()
            } else {
                format!("NO: {}", astray.join("; "))
            }
        );
    }
    drop(work);
    drop(tmpfs);
}

/// Packets the CPUs' backlogs dropped since boot (`/proc/net/softnet_stat`,
/// second column, summed): loss before any socket, shown per step (the
/// `backlog` column) so that it is not mistaken for bsc's.
fn backlog_drops() -> u64 {
    let stat = std::fs::read_to_string("/proc/net/softnet_stat").unwrap_or_default();
    stat.lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        .filter_map(|d| u64::from_str_radix(d, 16).ok())
        .sum()
}

/// What the UDP target got: datagrams received, and those its socket had
/// no room for (the kernel's count; the receiver shares the generator's CPU).
#[derive(Clone, Copy)]
struct Arrived {
    received: u64,
    dropped: u64,
}

/// Receives on `sink` (`recvmmsg`, 64 at a time) until `stop` is set and
/// the socket is quiet; counts only.
fn count_datagrams(sink: &UdpSocket, stop: &AtomicBool) -> Arrived {
    const N: usize = 64;
    let mut bufs = vec![[0u8; 2048]; N];
    let mut iovs = common::iovecs(&mut bufs);
    let mut msgs = common::mmsghdrs(&mut iovs);
    let mut received = 0u64;
    loop {
        // SAFETY: msgs point at live buffers of the lengths given.
        let got = unsafe {
            libc::recvmmsg(
                sink.as_raw_fd(),
                msgs.as_mut_ptr(),
                N as u32,
                0,
                std::ptr::null_mut(),
            )
        };
        if got > 0 {
            received += got as u64;
        } else if stop.load(Ordering::Relaxed) {
            break; // the 200 ms read timeout after the step
        }
    }
    let mut info = [0u32; 16];
    let mut len = std::mem::size_of_val(&info) as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `info`.
    let rc = unsafe {
        libc::getsockopt(
            sink.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_MEMINFO,
            info.as_mut_ptr().cast(),
            &mut len,
        )
    };
    let dropped = match rc {
        0 => u64::from(info[libc::SK_MEMINFO_DROPS as usize]),
        _ => 0,
    };
    Arrived { received, dropped }
}

/// One bsc step at the generator's maximum, forwarding to `target`: its
/// outcome and, for a UDP target, what the target got.
fn step(
    root: &Path,
    size: usize,
    rate: Option<u64>,
    target: Target,
    link: Option<&Link>,
    pin: Option<&Pinning>,
) -> (SmallOutcome, Option<Arrived>) {
    let s = SmallStep {
        root,
        size,
        active: 1,
        idle: 0,
        rate,
        stats: StatsProbe::Off,
        pin,
    };
    match target {
        Target::None => (common::run_small_step(&s), None),
        Target::Udp | Target::UdpLink => {
            let sink = match (target, link) {
                (Target::UdpLink, Some(l)) => l.veth.udp_socket_far((l.far, 0).into()),
                _ => UdpSocket::bind("127.0.0.1:0").unwrap(),
            };
            let host = sink.local_addr().unwrap().ip();
            common::set_rcvbuf(sink.as_raw_fd(), 64 << 20);
            sink.set_read_timeout(Some(Duration::from_millis(200)))
                .unwrap();
            let port = sink.local_addr().unwrap().port();
            let stop = Arc::new(AtomicBool::new(false));
            let flag = stop.clone();
            // On the load CPUs, as the generator: never on bsc's core.
            let load = pin.map(|p| p.load.clone());
            let counter = std::thread::spawn(move || {
                common::on_cpus(load.as_deref(), || count_datagrams(&sink, &flag))
            });
            let extra = serde_json::json!({"forward": [format!("udp://{host}:{port}")]});
            let o = common::run_small_step_with(&s, &extra);
            stop.store(true, Ordering::Relaxed);
            let target = counter.join().unwrap();
            (o, Some(target))
        }
        Target::StalledTcp => {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let port = listener.local_addr().unwrap().port();
            // Accepts and never reads: held until the step is over.
            let holder = std::thread::spawn(move || listener.accept().map(|(c, _)| c));
            let extra = serde_json::json!({"forward": [format!("tcp://127.0.0.1:{port}")],
                                           "forward_queue_bytes": "4MiB"});
            let o = common::run_small_step_with(&s, &extra);
            drop(holder.join());
            (o, None)
        }
    }
}
