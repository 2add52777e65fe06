//! Section `goals` (issue 25): the four rows of the table, each against
//! its reference in the same run, on a tmpfs of our own, every receiver pinned to
//! a core of its own (the last CPU this process may use; the generator, the TCP
//! server and the benchmark on the others):
//!
//! - TCP framed 256 B: a stream of 1,048,576 space packets of 256 bytes
//!   (`common::run_tcp`), taken by the C framing reference (tcp_reference.c:
//!   256 KiB reads, packets cut by their length field, header + packet appended
//!   to a 1 MiB buffer written when full) and by bsc with `framing:
//!   ccsds_space_packet` and `sequence_check` (one record per packet). CPU per
//!   packet; goal at most 1.2x.
//! - UDP 1 KiB and UDP 64 B at the generator's maximum (`common::generate`, one
//!   sender thread): the count-only `recvmmsg` receiver against bsc with 1
//!   handler. CPU per datagram written; goals at most 1.2x and 1.0x.
//! - 1,000 idle handlers + 1 active, 64 B at the generator's maximum, against the
//!   same run's 1 handler alone (the UDP 64 B row's bsc step); `/stats` is not
//!   fetched during any step. Goal at most 1.1x.
//! - The same UDP bsc steps against the writing reference (`writing base`:
//!   each datagram appended behind a record header to a 1 MiB buffer written
//!   when full, one clock reading per batch), and against the stamping
//!   reference (`stamping base`: the same, each record stamped with the
//!   kernel's receive time of its datagram, `SO_TIMESTAMPNS`, as bsc's records
//!   are): a receiver that only counts does one copy less than any recorder.
//!
//! CPU is read the same way for bsc and the C reference (/proc/PID/schedstat of
//! the pinned process, from the start of the traffic until everything is
//! written), and for the count-only receiver from its thread's CPU clock (the
//! same clock). Each run takes every step once, the order reversed every other
//! run; the ratio is the median of the runs' bsc/reference ratios, the spread
//! their lowest and highest. Loss is counted from the files; the goal rows hold
//! only with no loss at the generator's maximum and every TCP check passing.

use std::path::{Path, PathBuf};

use crate::common::{
    self, Pinning, SmallOutcome, SmallStep, StatsProbe, TcpOutcome, TcpReceiver, Tmpfs, WorkDir,
};

const TMPFS_MB: u64 = 2048;

/// The steps of one run.
#[derive(Clone, Copy, PartialEq)]
enum Step {
    TcpReference,
    TcpBsc,
    CountOnly(usize),
    Writing(usize),
    Stamping(usize),
    OneHandler(usize),
    IdlePlusOne,
}

/// One row of the table: its runs' reference and bsc figures.
struct Row {
    label: &'static str,
    reference: &'static str,
    bsc: &'static str,
    unit: &'static str,
    goal: f64,
    refs: Vec<f64>,
    bscs: Vec<f64>,
}

impl Row {
    fn new(
        label: &'static str,
        reference: &'static str,
        bsc: &'static str,
        unit: &'static str,
        goal: f64,
    ) -> Row {
        Row {
            label,
            reference,
            bsc,
            unit,
            goal,
            refs: Vec::new(),
            bscs: Vec::new(),
        }
    }

    fn ratios(&self) -> Vec<f64> {
        self.refs
            .iter()
            .zip(&self.bscs)
            .map(|(r, b)| b / r)
            .collect()
    }
}

const TCP: usize = 0;
const UDP_1K: usize = 1;
const UDP_64: usize = 2;
const IDLE: usize = 3;
const UDP_1K_W: usize = 4;
const UDP_64_W: usize = 5;
const UDP_1K_S: usize = 6;
const UDP_64_S: usize = 7;

pub fn section() {
    let pid = std::process::id();
    let tmpfs = Tmpfs::mount(
        PathBuf::from(format!("/tmp/bsc-bench-goals-{pid}")),
        TMPFS_MB,
    );
    let work = WorkDir::new(match &tmpfs {
        Some(t) => t.0.join("w"),
        None => std::env::temp_dir().join(format!("bsc-bench-goals-{pid}")),
    });
    let runs = common::runs();
    let pin = Pinning::detect();
    println!(
        "\n== goals: the table of issue 25, {runs} alternating run(s) per median, files in {} ({}), {} ==",
        work.0.display(),
        common::fs_type(&work.0),
        match &pin {
            Some(p) => format!(
                "receivers pinned to CPU {}, generator and TCP server on CPU {:?}",
                p.receiver, p.load
            ),
            None => "not pinned (fewer than 2 CPUs allowed)".to_string(),
        }
    );
    let mut rows = [
        Row::new(
            "tcp framed 256 B",
            "C framing reference",
            "framing+sequence_check",
            "ns/packet",
            1.2,
        ),
        Row::new(
            "udp 1 KiB at max",
            "count-only recvmmsg",
            "bsc 1 handler",
            "us/dgram",
            1.2,
        ),
        Row::new(
            "udp 64 B at max",
            "count-only recvmmsg",
            "bsc 1 handler",
            "us/dgram",
            1.0,
        ),
        Row::new(
            "1000 idle+1, 64 B at max",
            "bsc 1 handler alone",
            "bsc 1000 idle+1",
            "us/dgram",
            1.1,
        ),
        Row::new(
            "udp 1 KiB, writing base",
            "writing recvmmsg",
            "bsc 1 handler",
            "us/dgram",
            1.2,
        ),
        Row::new(
            "udp 64 B, writing base",
            "writing recvmmsg",
            "bsc 1 handler",
            "us/dgram",
            1.0,
        ),
        Row::new(
            "udp 1 KiB, stamping base",
            "stamping recvmmsg",
            "bsc 1 handler",
            "us/dgram",
            1.2,
        ),
        Row::new(
            "udp 64 B, stamping base",
            "stamping recvmmsg",
            "bsc 1 handler",
            "us/dgram",
            1.0,
        ),
    ];
    let wanted: Vec<bool> = rows.iter().map(|r| common::only(r.label)).collect();
    let mut steps = Vec::new();
    if wanted[TCP] {
        steps.extend([Step::TcpReference, Step::TcpBsc]);
    }
    if wanted[UDP_1K] {
        steps.push(Step::CountOnly(1024));
    }
    if wanted[UDP_1K_W] {
        steps.push(Step::Writing(1024));
    }
    if wanted[UDP_1K_S] {
        steps.push(Step::Stamping(1024));
    }
    if wanted[UDP_1K] || wanted[UDP_1K_W] || wanted[UDP_1K_S] {
        steps.push(Step::OneHandler(1024));
    }
    if wanted[UDP_64] {
        steps.push(Step::CountOnly(64));
    }
    if wanted[UDP_64_W] {
        steps.push(Step::Writing(64));
    }
    if wanted[UDP_64_S] {
        steps.push(Step::Stamping(64));
    }
    if wanted[UDP_64] || wanted[UDP_64_W] || wanted[UDP_64_S] || wanted[IDLE] {
        steps.push(Step::OneHandler(64));
    }
    if wanted[IDLE] {
        steps.push(Step::IdlePlusOne);
    }
    if steps.is_empty() {
        return;
    }
    let reference = if wanted[TCP] {
        match common::build_tcp_reference(&work.0) {
            Ok(path) => Some(path),
            Err(e) => {
                println!("TCP row not measured: {e}");
                steps.retain(|s| !matches!(s, Step::TcpReference | Step::TcpBsc));
                None
            }
        }
    } else {
        None
    };
    let block = reference.as_ref().map(|_| common::stream_block());
    println!(
        "{:>3} {:<26} {:<22} {:>9} {:>10} {:>9} {:>10} {:>8}  check",
        "run", "row", "receiver", "count", "rate/s", "cpu ms", "cpu/unit", "lost"
    );
    let (mut lost, mut sent) = (0u64, 0u64);
    let mut tcp_problems = Vec::new();
    for run in 0..runs {
        let mut order = steps.clone();
        if run % 2 == 1 {
            order.reverse();
        }
        let mut one_64 = None;
        let mut idle_64 = None;
        for step in order {
            match step {
                Step::TcpReference | Step::TcpBsc => {
                    let (receiver, label) = match step {
                        Step::TcpReference => (
                            TcpReceiver::Reference(reference.as_deref().unwrap()),
                            "C framing reference",
                        ),
                        _ => (
                            TcpReceiver::Bsc {
                                framing: true,
                                seq: true,
                            },
                            "bsc framing+seq",
                        ),
                    };
                    let o =
                        common::run_tcp(&work.0, block.as_ref().unwrap(), &receiver, pin.as_ref());
                    print_tcp(run, rows[TCP].label, label, &o);
                    if !o.ok() {
                        tcp_problems.push(format!("run {} {label}: {}", run + 1, o.check));
                    }
                    if step == Step::TcpReference {
                        rows[TCP].refs.push(o.ns_per_packet());
                    } else {
                        rows[TCP].bscs.push(o.ns_per_packet());
                    }
                }
                Step::CountOnly(size) => {
                    let o = common::run_count_only(size, pin.as_ref());
                    let row = if size == 64 { UDP_64 } else { UDP_1K };
                    print_udp(run, rows[row].label, "count-only", &o);
                    rows[row].refs.push(o.cpu_us_per());
                }
                Step::Writing(size) | Step::Stamping(size) => {
                    let stamped = matches!(step, Step::Stamping(_));
                    let o = common::run_writing_reference(&work.0, size, stamped, pin.as_ref());
                    let (row, name) = match (size, stamped) {
                        (64, false) => (UDP_64_W, "writing reference"),
                        (_, false) => (UDP_1K_W, "writing reference"),
                        (64, true) => (UDP_64_S, "stamping reference"),
                        (_, true) => (UDP_1K_S, "stamping reference"),
                    };
                    print_udp(run, rows[row].label, name, &o);
                    rows[row].refs.push(o.cpu_us_per());
                }
                Step::OneHandler(_) | Step::IdlePlusOne => {
                    let (size, idle, label) = match step {
                        Step::OneHandler(size) => (size, 0, "bsc 1 handler"),
                        _ => (64, 1000, "bsc 1000 idle+1"),
                    };
                    let o = small_step(&work.0, size, idle, pin.as_ref());
                    let row = match (size, idle) {
                        (64, 0) => UDP_64,
                        (64, _) => IDLE,
                        _ => UDP_1K,
                    };
                    print_udp(run, rows[row].label, label, &o);
                    lost += o.lost();
                    sent += o.sent;
                    match (size, idle) {
                        (64, 0) => one_64 = Some(o.cpu_us_per()),
                        (64, _) => idle_64 = Some(o.cpu_us_per()),
                        _ => {
                            if wanted[UDP_1K] {
                                rows[UDP_1K].bscs.push(o.cpu_us_per());
                            }
                            if wanted[UDP_1K_W] {
                                rows[UDP_1K_W].bscs.push(o.cpu_us_per());
                            }
                            if wanted[UDP_1K_S] {
                                rows[UDP_1K_S].bscs.push(o.cpu_us_per());
                            }
                        }
                    }
                }
            }
        }
        if wanted[UDP_64] {
            rows[UDP_64].bscs.extend(one_64);
        }
        if wanted[UDP_64_W] {
            rows[UDP_64_W].bscs.extend(one_64);
        }
        if wanted[UDP_64_S] {
            rows[UDP_64_S].bscs.extend(one_64);
        }
        if let (Some(one), Some(idle)) = (one_64, idle_64) {
            rows[IDLE].refs.push(one);
            rows[IDLE].bscs.push(idle);
        }
    }
    print_table(&rows, &wanted, runs);
    if sent > 0 {
        println!(
            "  no loss at the generator's maximum (every bsc step above, counted from the files): {lost} of {sent} datagrams lost: {}",
            if lost == 0 { "met" } else { "MISSED" }
        );
    }
    if reference.is_some() {
        println!(
            "  TCP checks (one record per packet in both files, /stats counts every packet, 0 missing): {}",
            if tcp_problems.is_empty() {
                "met".to_string()
            } else {
                format!("MISSED: {}", tcp_problems.join("; "))
            }
        );
    }
    drop(work);
    drop(tmpfs);
}

/// bsc with 1 handler (plus `idle` idle ones) at the generator's maximum, no `/stats`.
fn small_step(root: &Path, size: usize, idle: usize, pin: Option<&Pinning>) -> SmallOutcome {
    common::run_small_step(&SmallStep {
        root,
        size,
        active: 1,
        idle,
        rate: None,
        stats: StatsProbe::Off,
        pin,
    })
}

fn print_tcp(run: usize, row: &str, receiver: &str, o: &TcpOutcome) {
    println!(
        "{:>3} {:<26} {:<22} {:>9} {:>10.0} {:>9.1} {:>10} {:>8}  {}",
        run + 1,
        row,
        receiver,
        o.packets,
        o.packets as f64 / o.secs.max(1e-9),
        o.cpu_ns as f64 / 1e6,
        format!("{:.1} ns", o.ns_per_packet()),
        "-",
        o.check
    );
}

fn print_udp(run: usize, row: &str, receiver: &str, o: &SmallOutcome) {
    println!(
        "{:>3} {:<26} {:<22} {:>9} {:>10.0} {:>9.1} {:>10} {:>8}  {}",
        run + 1,
        row,
        receiver,
        o.written,
        o.offered,
        o.cpu_ns as f64 / 1e6,
        format!("{:.3} us", o.cpu_us_per()),
        o.lost(),
        if o.lost() == 0 { "ok" } else { "lost some" }
    );
}

fn print_table(rows: &[Row], wanted: &[bool], runs: usize) {
    println!(
        "\ngoals (issue 25): medians of {runs} alternating run(s); ratio = median of the runs' bsc/reference ratios, spread = their lowest-highest"
    );
    println!(
        "{:<26} {:<21} {:>10} {:<23} {:>10} {:<9} {:>6} {:>13} {:>7}  verdict",
        "row", "reference", "median", "bsc", "median", "unit", "ratio", "spread", "goal"
    );
    for (row, want) in rows.iter().zip(wanted) {
        if !want {
            continue;
        }
        let ratios = row.ratios();
        let ratio = common::median(ratios.clone());
        let spread = match (
            ratios.iter().copied().reduce(f64::min),
            ratios.iter().copied().reduce(f64::max),
        ) {
            (Some(lo), Some(hi)) => format!("{lo:.2}-{hi:.2}x"),
            _ => "-".to_string(),
        };
        let digits = if row.unit == "ns/packet" { 1 } else { 3 };
        println!(
            "{:<26} {:<21} {:>10.digits$} {:<23} {:>10.digits$} {:<9} {:>5.2}x {:>13} {:>6}x  {}",
            row.label,
            row.reference,
            common::median(row.refs.clone()),
            row.bsc,
            common::median(row.bscs.clone()),
            row.unit,
            ratio,
            spread,
            format!("<={:.1}", row.goal),
            common::at_most(ratio, row.goal)
        );
    }
}
