//! Section `forward` (issue 27): what live forwarding costs capture, each row
//! against plain capture (bsc with 1 handler, no `forward`) in the same run,
//! alternating runs, on a tmpfs of our own, bsc pinned to a core of its own as
//! in the goals section:
//!
//! - UDP 64 B and UDP 1 KiB at the generator's maximum, forwarded to one UDP
//!   target (a count-only receiver here, on the load CPUs: its CPU is not
//!   bsc's). CPU per datagram written; goal at most 1.6x, with no capture loss
//!   (counted from the files) and every datagram forwarded. Since bsc sends
//!   nothing while capture is behind (the recording comes first), the table
//!   gives the share of the datagrams written that reached the target, and a
//!   row under its goal that did not forward them all is not judged.
//! - UDP 64 B at the maximum, forwarded to a TCP target that accepts and never
//!   reads (its queue fills, then units are dropped and counted). Goal: costs
//!   capture nothing measurable, read as at most 1.1x, with no capture loss.

use std::net::{TcpListener, UdpSocket};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::common::{self, Pinning, SmallOutcome, SmallStep, StatsProbe, Tmpfs, WorkDir};

const TMPFS_MB: u64 = 2048;

/// What a step forwards to.
#[derive(Clone, Copy, PartialEq)]
enum Target {
    None,
    Udp,
    StalledTcp,
}

struct Row {
    label: &'static str,
    size: usize,
    target: Target,
    goal: f64,
    plain: Vec<f64>,
    forwarding: Vec<f64>,
    /// Per forwarding step to a UDP target: the share of the datagrams written
    /// that reached it (bsc sends nothing while capture is behind).
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
        ("udp 64 B -> 1 udp target", 64, Target::Udp, 1.6),
        ("udp 1 KiB -> 1 udp target", 1024, Target::Udp, 1.6),
        ("udp 64 B -> stalled tcp", 64, Target::StalledTcp, 1.1),
    ]
    .into_iter()
    .filter(|r| common::only(r.0))
    .map(|(label, size, target, goal)| Row {
        label,
        size,
        target,
        goal,
        plain: Vec::new(),
        forwarding: Vec::new(),
        shares: Vec::new(),
    })
    .collect();
    println!(
        "{:>3} {:<28} {:<14} {:>9} {:>10} {:>9} {:>10} {:>8} {:>10}",
        "run", "row", "bsc", "written", "rate/s", "cpu ms", "cpu/unit", "lost", "forwarded"
    );
    let (mut lost, mut sent, mut short) = (0u64, 0u64, Vec::new());
    for run in 0..runs {
        for row in rows.iter_mut() {
            let mut order = [Target::None, row.target];
            if run % 2 == 1 {
                order.reverse();
            }
            for target in order {
                let (o, forwarded) = step(&work.0, row.size, target, pin.as_ref());
                let name = if target == Target::None {
                    "plain"
                } else {
                    "forwarding"
                };
                println!(
                    "{:>3} {:<28} {:<14} {:>9} {:>10.0} {:>9.1} {:>10} {:>8} {:>10}",
                    run + 1,
                    row.label,
                    name,
                    o.written,
                    o.offered,
                    o.cpu_ns as f64 / 1e6,
                    format!("{:.3} us", o.cpu_us_per()),
                    o.lost(),
                    forwarded.map_or("-".to_string(), |f| f.to_string())
                );
                lost += o.lost();
                sent += o.sent;
                if target == Target::Udp && forwarded.is_some_and(|f| f < o.written) {
                    short.push(format!("run {} {}", run + 1, row.label));
                }
                if let (Target::Udp, Some(f)) = (target, forwarded) {
                    row.shares.push(f as f64 / o.written.max(1) as f64);
                }
                match target {
                    Target::None => row.plain.push(o.cpu_us_per()),
                    _ => row.forwarding.push(o.cpu_us_per()),
                }
            }
        }
    }
    println!("\nforward (issue 27): medians of {runs} alternating run(s); ratio = median of the runs' forwarding/plain ratios");
    println!(
        "{:<28} {:>10} {:>12} {:>6} {:>13} {:>7}  {:>13}  verdict",
        "row", "plain us", "forward us", "ratio", "spread", "goal", "to target"
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
            (true, false) => "NOT JUDGED: not every unit reached the target".into(),
            _ => common::at_most(ratio, row.goal),
        };
        println!(
            "{:<28} {:>10.3} {:>12.3} {:>5.2}x {:>13} {:>6}x  {:>13}  {verdict}",
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
            "  every datagram written also reached the UDP target: {}",
            if short.is_empty() {
                "met".to_string()
            } else {
                format!("MISSED: {}", short.join("; "))
            }
        );
    }
    drop(work);
    drop(tmpfs);
}

/// One bsc step at the generator's maximum, forwarding to `target`: its
/// outcome and, for a UDP target, how many datagrams the target received.
fn step(
    root: &Path,
    size: usize,
    target: Target,
    pin: Option<&Pinning>,
) -> (SmallOutcome, Option<u64>) {
    let s = SmallStep {
        root,
        size,
        active: 1,
        idle: 0,
        rate: None,
        stats: StatsProbe::Off,
        pin,
    };
    match target {
        Target::None => (common::run_small_step(&s), None),
        Target::Udp => {
            let sink = UdpSocket::bind("127.0.0.1:0").unwrap();
            common::set_rcvbuf(sink.as_raw_fd(), 64 << 20);
            sink.set_read_timeout(Some(Duration::from_millis(200)))
                .unwrap();
            let port = sink.local_addr().unwrap().port();
            let stop = Arc::new(AtomicBool::new(false));
            let flag = stop.clone();
            // On the load CPUs, as the generator: never on bsc's core.
            let load = pin.map(|p| p.load.clone());
            let counter = std::thread::spawn(move || {
                common::on_cpus(load.as_deref(), || {
                    let mut buf = [0u8; 2048];
                    let mut n = 0u64;
                    while !flag.load(Ordering::Relaxed) {
                        if sink.recv(&mut buf).is_ok() {
                            n += 1;
                        }
                    }
                    while sink.recv(&mut buf).is_ok() {
                        n += 1;
                    }
                    n
                })
            });
            let extra = serde_json::json!({"forward": [format!("udp://127.0.0.1:{port}")]});
            let o = common::run_small_step_with(&s, &extra);
            stop.store(true, Ordering::Relaxed);
            (o, Some(counter.join().unwrap()))
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
