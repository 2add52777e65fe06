//! `bsc replay`'s tests (tests/replay.rs, tests/replay_control.rs): pcap
//! files written with pcap-file's writer, a UDP receiver noting what arrived
//! and when, and running the command.

use std::fs::File;
use std::net::UdpSocket;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};
use pcap_file::{DataLink, TsResolution};

/// A record to write: its time in ns since the epoch and its bytes.
pub struct Rec {
    pub ts_ns: u64,
    pub data: Vec<u8>,
    pub orig_len: Option<u32>,
}

pub fn rec(ts_ns: u64, data: Vec<u8>) -> Rec {
    Rec {
        ts_ns,
        data,
        orig_len: None,
    }
}

pub const T0: u64 = 1_796_637_600_000_000_000; // 2026-12-07T10:00:00Z

/// Writes a classic pcap file with pcap-file's writer.
pub fn write_pcap(path: &Path, link: u32, nano: bool, records: &[Rec]) {
    let header = PcapHeader {
        datalink: DataLink::from(link),
        ts_resolution: if nano {
            TsResolution::NanoSecond
        } else {
            TsResolution::MicroSecond
        },
        ..PcapHeader::default()
    };
    let mut w = PcapWriter::with_header(File::create(path).unwrap(), header).unwrap();
    for r in records {
        let len = r.data.len() as u32;
        let p = PcapPacket::new(
            Duration::from_nanos(r.ts_ns),
            r.orig_len.unwrap_or(len),
            &r.data,
        );
        w.write_packet(&p).unwrap();
    }
}

/// Payload `i`: its number and some filler, 24 bytes.
pub fn numbered(i: u64) -> Vec<u8> {
    let mut v = i.to_be_bytes().to_vec();
    v.extend_from_slice(b"telemetry frame.");
    v
}

/// `n` records `gap_ns` apart from T0.
pub fn evenly(n: u64, gap_ns: u64) -> Vec<Rec> {
    (0..n).map(|i| rec(T0 + i * gap_ns, numbered(i))).collect()
}

/// What a receiver got: each datagram and when it arrived.
pub type Arrivals = Arc<Mutex<Vec<(Instant, Vec<u8>)>>>;

/// A UDP receiver noting each datagram and when it arrived.
pub struct UdpReceiver {
    pub port: u16,
    got: Arrivals,
}

impl UdpReceiver {
    pub fn start() -> UdpReceiver {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = socket.local_addr().unwrap().port();
        socket
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let got = Arc::new(Mutex::new(Vec::new()));
        let sink = got.clone();
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 65536];
            // Bounded: stops once the test dropped its side or after 120 s.
            let until = Instant::now() + Duration::from_secs(120);
            while Instant::now() < until && Arc::strong_count(&sink) > 1 {
                if let Ok(n) = socket.recv(&mut buf) {
                    sink.lock()
                        .unwrap()
                        .push((Instant::now(), buf[..n].to_vec()));
                }
            }
        });
        UdpReceiver { port, got }
    }

    pub fn url(&self) -> String {
        format!("udp://127.0.0.1:{}", self.port)
    }

    pub fn count(&self) -> usize {
        self.got.lock().unwrap().len()
    }

    pub fn payloads(&self) -> Vec<Vec<u8>> {
        self.got
            .lock()
            .unwrap()
            .iter()
            .map(|(_, d)| d.clone())
            .collect()
    }

    pub fn times(&self) -> Vec<Instant> {
        self.got.lock().unwrap().iter().map(|(t, _)| *t).collect()
    }
}

pub fn bsc() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_bsc"));
    c.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c
}

pub fn replay(args: &[&str]) -> Output {
    bsc().arg("replay").args(args).output().unwrap()
}

pub fn spawn_replay(args: &[&str]) -> Child {
    bsc().arg("replay").args(args).spawn().unwrap()
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

pub fn kill(child: &Child, signal: &str) {
    let ok = Command::new("kill")
        .args([&format!("-{signal}"), &child.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
}

/// The number after `word` in `text` ("sent 12 records").
pub fn number_after(text: &str, word: &str) -> u64 {
    let at = text
        .find(word)
        .unwrap_or_else(|| panic!("no {word:?} in {text}"))
        + word.len();
    text[at..]
        .trim_start()
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

pub fn path_str(p: &Path) -> &str {
    p.to_str().unwrap()
}
