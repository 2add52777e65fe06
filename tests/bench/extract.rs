//! Section `extract` (issue 26): how soon the first record of a one-minute
//! window arrives from `GET /<name>/data` out of 24 one-hour files of 100 MB
//! each (target: within 1 s).
//!
//! The files are made here, fast, on tmpfs (`/dev/shm`): bsc's pcap files
//! (user0, microseconds) of 1,000-byte records spread evenly over their hour,
//! written read-only and journaled as closed files of a handler `ex`, as bsc
//! itself would have left them before a restart. The window is 12:30 to 12:31
//! of the day's thirteenth file. Rows: `cold`, the first extract after the
//! start (the file has no index yet: it is read from its start, and its index
//! kept as it is read), and `indexed`, the same window again (read from the
//! block before the window); each: time to the first record's bytes, time to
//! the whole answer, records. The folder is removed at the end.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::common::{self, Bsc};

const FILES: i64 = 24;
const FILE_BYTES: u64 = 100_000_000;
const PAYLOAD: usize = 1000;
/// 2026-12-07T00:00:00Z.
const DAY: i64 = 1_796_601_600;

pub fn section() {
    let work = common::WorkDir::new(PathBuf::from(format!(
        "/dev/shm/bsc-bench-extract-{}",
        std::process::id()
    )));
    println!(
        "\n== extract: the first record of a one-minute window out of {FILES} one-hour files of 100 MB (issue 26), files in {} ({}) ==",
        work.0.display(),
        common::fs_type(&work.0)
    );
    let port = common::free_udp_ports(1)[0];
    let made = Instant::now();
    make_files(&work.0, port);
    println!(
        "made {FILES} files in {:.1} s",
        made.elapsed().as_secs_f64()
    );
    let bsc = Bsc::start(
        &work.0,
        vec![
            serde_json::json!({"name": "ex", "conn_type": "udp", "address": ["127.0.0.1", port],
                                "file_name_pattern": "%Y%m%dT%H-{name}.pcap"}),
        ],
    );
    let from = DAY + 12 * 3600 + 30 * 60;
    let query = format!("from={from}&to={}", from + 60);
    println!(
        "{:<10} {:>14} {:>14} {:>10}",
        "row", "first record", "whole answer", "records"
    );
    let mut verdict = Duration::ZERO;
    for row in ["cold", "indexed"] {
        let (first, whole, records) = extract(bsc.http_port, &query);
        println!(
            "{row:<10} {:>11.1} ms {:>11.1} ms {records:>10}",
            first.as_secs_f64() * 1e3,
            whole.as_secs_f64() * 1e3
        );
        verdict = verdict.max(first);
    }
    println!(
        "extract first record within 1 s: {} (slowest {:.1} ms)",
        if verdict < Duration::from_secs(1) {
            "met"
        } else {
            "MISSED"
        },
        verdict.as_secs_f64() * 1e3
    );
    drop(bsc);
    drop(work);
}

/// Writes the files and their journal (`opened` and `closed` lines).
fn make_files(root: &Path, port: u16) {
    let state = root.join(".bsc");
    std::fs::create_dir_all(&state).unwrap();
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o700)).unwrap();
    let key = format!("ex@['127.0.0.1', {port}]");
    let per_file = (FILE_BYTES - 24) / (16 + PAYLOAD as u64);
    let gap_us = 3_600_000_000 / per_file as i64;
    let mut journal = String::new();
    let mut buf = Vec::with_capacity(1 << 20);
    let payload = vec![0x5Au8; PAYLOAD];
    for h in 0..FILES {
        let start_s = DAY + h * 3600;
        let t = time::OffsetDateTime::from_unix_timestamp(start_s).unwrap();
        let path = root.join(format!(
            "{:04}{:02}{:02}T{:02}-ex.pcap",
            t.year(),
            t.month() as u8,
            t.day(),
            t.hour()
        ));
        let mut f = std::fs::File::create(&path).unwrap();
        buf.clear();
        buf.extend_from_slice(&common::pcap_global_header());
        let (mut first, mut last) = (0i64, 0i64);
        for i in 0..per_file as i64 {
            let us = start_s * 1_000_000 + i * gap_us;
            if i == 0 {
                first = us;
            }
            last = us;
            buf.extend_from_slice(&((us / 1_000_000) as u32).to_ne_bytes());
            buf.extend_from_slice(&((us % 1_000_000) as u32).to_ne_bytes());
            buf.extend_from_slice(&(PAYLOAD as u32).to_ne_bytes());
            buf.extend_from_slice(&(PAYLOAD as u32).to_ne_bytes());
            buf.extend_from_slice(&payload);
            if buf.len() >= 1 << 20 {
                f.write_all(&buf).unwrap();
                buf.clear();
            }
        }
        f.write_all(&buf).unwrap();
        drop(f);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o440)).unwrap();
        let opened = serde_json::json!({"opened": {"key": key, "path": path, "trusted": root,
            "unnumbered": path, "n": 0, "seq": h, "created": true}});
        let closed = serde_json::json!({"closed": {"path": path, "records": per_file,
            "first_ts": first, "last_ts": last}});
        journal.push_str(&format!("{opened}\n{closed}\n"));
    }
    let jpath = state.join("files.jsonl");
    std::fs::write(&jpath, journal).unwrap();
    std::fs::set_permissions(&jpath, std::fs::Permissions::from_mode(0o600)).unwrap();
}

/// One extract: time to the first record's bytes, to the end, and the records.
fn extract(http_port: u16, query: &str) -> (Duration, Duration, u64) {
    let started = Instant::now();
    let mut s = TcpStream::connect(("127.0.0.1", http_port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(format!("GET /ex/data?{query} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").as_bytes())
        .unwrap();
    let mut got = Vec::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut first = None;
    loop {
        let n = s.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
        if first.is_none() {
            if let Some(i) = got.windows(4).position(|w| w == b"\r\n\r\n") {
                if got.len() >= i + 4 + 24 + 16 {
                    first = Some(started.elapsed());
                }
            }
        }
    }
    let whole = started.elapsed();
    let body = got.len() - got.windows(4).position(|w| w == b"\r\n\r\n").unwrap() - 4;
    let records = (body as u64 - 24) / (16 + PAYLOAD as u64);
    (first.unwrap_or(whole), whole, records)
}
