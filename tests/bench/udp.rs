//! `make bench`: how many datagrams a release bsc captures, at what CPU cost, and
//! how fast it answers HTTP meanwhile, against receivers written here and measured
//! in the same run. Loopback (127.0.0.1) only; every step is bounded in time and
//! datagrams. Eight sections, each on its own with `BSC_BENCH_SECTION`:
//!
//! - `goals` (goals.rs, issue 25): the table, each row against its
//!   reference in the same run, alternating runs, medians and spread, receivers
//!   pinned to a core of their own: framed TCP 256 B against a C framing
//!   reference (tcp_reference.c, compiled with the machine's cc), UDP 1 KiB and
//!   64 B at the generator's maximum against the count-only receiver, 1,000 idle
//!   handlers + 1 against 1 handler alone; a verdict per goal.
//! - `udp` (this file): for 64-byte and 1024-byte datagrams, a count-only
//!   `recvmmsg` receiver at the generator's maximum rate (the ceiling one socket
//!   gives on this machine, which also measures that maximum), then a fresh bsc
//!   with 1 handler, with 10 handlers on 10 ports, and with 1,000 idle handlers
//!   plus one active, at 50% and 100% of the maximum. CPU is bsc's own
//!   (/proc/PID/schedstat) per datagram written, and its ratio to the ceiling
//!   receiver's (thread CPU time per datagram). With 1 and 10 handlers `/stats`
//!   is fetched every 20 ms on a keep-alive connection during each step (p50/p99);
//!   with 1,000 idle handlers it is not (a 1,000-entry document every 20 ms would
//!   be most of the row's CPU), but 50 times after the step, on a line of its own:
//!   bsc's CPU per answer, the document's size, p50/p99.
//! - `forward` (forward.rs, issue 27): live forwarding against plain capture in
//!   alternating runs: UDP 64 B and 1 KiB forwarded to one UDP target on
//!   loopback at the generator's maximum and at a fixed pace in both steps, and
//!   across a veth link into a namespace of its own (goal at most 1.6x the CPU
//!   per datagram, no capture loss, every datagram forwarded), and 64 B
//!   forwarded to a TCP target that never reads (goal: nothing measurable, read
//!   as at most 1.1x). Needs root and `ip` for the link rows.
//! - `units` (units.rs, issue 14): a TCP stream of CCSDS space packets from a
//!   local server at its maximum rate, bsc with `framing: ccsds_space_packet`
//!   (with and without `sequence_check`) against the same stream unframed; UDP
//!   datagrams that are each one space packet, with and without `sequence_check`.
//!   CPU per space packet; the UDP ratios against the 1.2x target; the TCP
//!   framed/plain ratio for information only (it counts records: plain capture
//!   writes one per read).
//! - `large` (large.rs, issue 17): 8,000 B and 60,000 B datagrams, on a tmpfs of
//!   our own and on the disk (/var/tmp): a reference receiver (recvmmsg + one
//!   writev per batch into a pcap file) against bsc: Gbit/s offered and captured,
//!   loss, bytes per CPU second, bsc's ratio (target 0.8x), no loss at 60% of the
//!   reference's capacity, and 1 vs 10 handlers vs 1,000 idle + 1 at that rate in
//!   alternating runs (targets 1.15x and 1.1x).
//! - `replay` (replay.rs, issue 26): `bsc replay` of 10,000 records recorded
//!   at 1 kHz with jitter, at `--speed 1` to a UDP receiver that notes each
//!   arrival: the send-time error relative to the first record (p50, p99, max,
//!   against 2 ms at p99); and the same file at `--speed max`.
//! - `extract` (extract.rs, issue 26): the first record and the whole answer of
//!   a one-minute window out of 24 one-hour files of 100 MB (target 1 s), the
//!   first time (no index yet) and again (indexed).
//! - `rcvbuf` (large.rs): how many 1,024 B, 8,000 B and 60,000 B datagrams the
//!   receive buffer bsc asks for by default holds, counted by filling a socket.
//!
//! Loss is always counted from the PCAP files (distinct sequence numbers in the
//! payloads, read back with pcap-file), never from bsc's own counters.
//!
//! Environment:
//! - `BSC_BENCH_SECTION=goals,udp,forward,units,large,rcvbuf,replay,extract`: only these sections
//!   (default all).
//! - `BSC_BENCH_ONLY=text`: only the rows whose label contains `text` (goals:
//!   `tcp`, `udp 1 KiB`, `udp 64 B`, `1000 idle`).
//! - `BSC_BENCH_RUNS=N` (default 3): alternating runs behind each median
//!   (goals, units and large sections).
//! - `CC`: the C compiler for the goals section's TCP reference (default `cc`).
//! - `BSC_BENCH_FS=tmpfs|disk`: only this file system in the large section.
//! - `BSC_BENCH_SENDERS=N` (default 1): generator threads in the large section.
//! - `BSC_BENCH_LOG=file`: keep bsc's log lines.
//!
//! The whole run takes about five minutes (2 cores), plus the build.

mod common;
mod extract;
mod forward;
mod goals;
mod large;
mod replay;
mod units;
#[allow(dead_code)] // the tests' veth pair; the forward section uses part of it
#[path = "../common/veth.rs"]
mod veth;

use std::time::{Duration, Instant};

use common::{SmallOutcome, SmallStep, StatsProbe};

const SIZES: [usize; 2] = [64, 1024];

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
    if common::section("goals") {
        goals::section();
    }
    if common::section("udp") {
        section_udp();
    }
    if common::section("forward") {
        forward::section();
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
    if common::section("replay") {
        replay::section();
    }
    if common::section("extract") {
        extract::section();
    }
    common::cleanup_all();
    println!("\nbenchmark took {:.0} s", started.elapsed().as_secs_f64());
}

fn section_udp() {
    let work = common::WorkDir::new(
        std::env::temp_dir().join(format!("bsc-bench-{}", std::process::id())),
    );
    println!(
        "\n== udp: small datagrams, {} s per step ==",
        common::SMALL_STEP.as_secs()
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
        let ceiling = common::run_count_only(size, None);
        let max_rate = ceiling.offered;
        print_row(size, "count-only", &ceiling, None);
        for (label, active, idle) in [
            ("bsc 1 handler", 1, 0),
            ("bsc 10 handlers", 10, 0),
            ("bsc 1000 idle+1", 1, 1000),
        ] {
            if !common::only(label) {
                continue;
            }
            // 1,000 idle handlers: a 1,000-entry /stats document every 20 ms
            // would be most of what the row measures, so it is fetched after
            // the step instead, on a line of its own.
            let stats = if idle > 0 {
                StatsProbe::After
            } else {
                StatsProbe::During
            };
            for share in [0.5, 1.0] {
                let rate = (share < 1.0).then_some((max_rate * share) as u64);
                let r = common::run_small_step(&SmallStep {
                    root: &work.0,
                    size,
                    active,
                    idle,
                    rate,
                    stats,
                    pin: None,
                });
                print_row(
                    size,
                    &format!("{label} {}%", (share * 100.0) as u32),
                    &r,
                    Some(&ceiling),
                );
                if let Some(c) = &r.stats_cost {
                    print_stats_cost(active + idle, c);
                }
            }
        }
    }
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

fn print_row(size: usize, label: &str, r: &SmallOutcome, ceiling: Option<&SmallOutcome>) {
    let ratio = ceiling.map_or("-".to_string(), |c| {
        format!("{:.2}", r.cpu_us_per() / c.cpu_us_per())
    });
    println!(
        "{:>5} {:<22} {:>10} {:>10} {:>10} {:>8.3} {:>9.3} {:>7} {:>6} {:>9} {:>8} {:>8}",
        size,
        label,
        r.offered.round() as u64,
        r.sent,
        r.written,
        100.0 * r.sent.saturating_sub(r.written) as f64 / r.sent.max(1) as f64,
        r.cpu_us_per(),
        ratio,
        r.user_share
            .map_or("-".to_string(), |u| format!("{:.0}%", u * 100.0)),
        if r.peak_rss_kb > 0 {
            format!("{} KB", r.peak_rss_kb)
        } else {
            "-".into()
        },
        pct(&r.http, 0.5),
        pct(&r.http, 0.99)
    );
}

/// The `p` quantile of latencies as "1.23ms", "-" if there are none.
fn pct(latencies: &[Duration], p: f64) -> String {
    if latencies.is_empty() {
        return "-".to_string();
    }
    let mut v = latencies.to_vec();
    v.sort();
    format!(
        "{:.2}ms",
        v[((v.len() - 1) as f64 * p) as usize].as_secs_f64() * 1000.0
    )
}

/// The line under a `1000 idle+1` row: what a `/stats` answer costs at that many handlers.
fn print_stats_cost(handlers: usize, c: &common::StatsCost) {
    println!(
        "      /stats at {handlers} handlers, fetched after the step (not in its CPU): {} answers of {} KB, {:.0} us CPU each, latency p50 {} p99 {}",
        c.answers,
        c.bytes / 1000,
        c.cpu_ns as f64 / 1000.0 / c.answers.max(1) as f64,
        pct(&c.latency, 0.5),
        pct(&c.latency, 0.99)
    );
}
