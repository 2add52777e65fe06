//! `bsc replay`: records of pcap files sent to real UDP and TCP receivers on
//! loopback, which note what arrived and when: bytes and order exact, the
//! pace at speed 1 (a generous bound; the figure is a bench row), `--speed N`
//! and `max`, `--loop`, Ctrl-C's summary, pause and resume without a burst,
//! receivers that go away, and hostile arguments.

mod common;

use std::fs::File;
use std::io::Read;
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{wait_until, TempDir};
use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};
use pcap_file::{DataLink, TsResolution};

/// A record to write: its time in ns since the epoch and its bytes.
struct Rec {
    ts_ns: u64,
    data: Vec<u8>,
    orig_len: Option<u32>,
}

fn rec(ts_ns: u64, data: Vec<u8>) -> Rec {
    Rec {
        ts_ns,
        data,
        orig_len: None,
    }
}

const T0: u64 = 1_796_637_600_000_000_000; // 2026-12-07T10:00:00Z

/// Writes a classic pcap file with pcap-file's writer.
fn write_pcap(path: &Path, link: u32, nano: bool, records: &[Rec]) {
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
fn numbered(i: u64) -> Vec<u8> {
    let mut v = i.to_be_bytes().to_vec();
    v.extend_from_slice(b"telemetry frame.");
    v
}

/// `n` records `gap_ns` apart from T0.
fn evenly(n: u64, gap_ns: u64) -> Vec<Rec> {
    (0..n).map(|i| rec(T0 + i * gap_ns, numbered(i))).collect()
}

/// What a receiver got: each datagram and when it arrived.
type Arrivals = Arc<Mutex<Vec<(Instant, Vec<u8>)>>>;

/// A UDP receiver noting each datagram and when it arrived.
struct UdpReceiver {
    port: u16,
    got: Arrivals,
}

impl UdpReceiver {
    fn start() -> UdpReceiver {
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

    fn url(&self) -> String {
        format!("udp://127.0.0.1:{}", self.port)
    }

    fn count(&self) -> usize {
        self.got.lock().unwrap().len()
    }

    fn payloads(&self) -> Vec<Vec<u8>> {
        self.got
            .lock()
            .unwrap()
            .iter()
            .map(|(_, d)| d.clone())
            .collect()
    }

    fn times(&self) -> Vec<Instant> {
        self.got.lock().unwrap().iter().map(|(t, _)| *t).collect()
    }
}

fn bsc() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_bsc"));
    c.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c
}

fn replay(args: &[&str]) -> Output {
    bsc().arg("replay").args(args).output().unwrap()
}

fn spawn_replay(args: &[&str]) -> Child {
    bsc().arg("replay").args(args).spawn().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn kill(child: &Child, signal: &str) {
    let ok = Command::new("kill")
        .args([&format!("-{signal}"), &child.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
}

/// The number after `word` in `text` ("sent 12 records").
fn number_after(text: &str, word: &str) -> u64 {
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

fn path_str(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn files_are_merged_by_time_and_each_payload_arrives_whole_in_order() {
    let dir = TempDir::new("replay-merge");
    // Even records in a microsecond USER0 file, odd ones in a nanosecond
    // raw-IPv4 file with bsc's synthesized headers, one Ethernet frame.
    let (even, odd, eth) = (
        dir.0.join("even.pcap"),
        dir.0.join("odd.pcap"),
        dir.0.join("eth.pcap"),
    );
    let all = evenly(200, 1_000_000);
    let even_recs: Vec<Rec> = all
        .iter()
        .step_by(2)
        .map(|r| rec(r.ts_ns, r.data.clone()))
        .collect();
    let odd_recs: Vec<Rec> = all
        .iter()
        .skip(1)
        .step_by(2)
        .map(|r| {
            let mut packet = Vec::new();
            let (src, dst): (SocketAddr, SocketAddr) = (
                "10.1.1.1:4000".parse().unwrap(),
                "10.1.1.2:8500".parse().unwrap(),
            );
            bsc::files::ipudp::write_headers(&mut packet, src, dst, &r.data);
            packet.extend_from_slice(&r.data);
            rec(r.ts_ns, packet)
        })
        .collect();
    write_pcap(&even, 147, false, &even_recs);
    write_pcap(&odd, 228, true, &odd_recs);
    let mut frame = vec![0u8; 12];
    frame.extend_from_slice(&0x88b5u16.to_be_bytes());
    frame.extend_from_slice(b"after the last");
    write_pcap(&eth, 1, false, &[rec(T0 + 500_000_000, frame)]);
    let rx = UdpReceiver::start();
    // Given in an order that is not the time order.
    let out = replay(&[
        path_str(&eth),
        path_str(&odd),
        path_str(&even),
        "--to",
        &rx.url(),
        "--speed",
        "5",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert_eq!(number_after(&stdout, "sent"), 201, "{stdout}");
    wait_until("201 datagrams", || rx.count() >= 201);
    let mut want: Vec<Vec<u8>> = all.into_iter().map(|r| r.data).collect();
    want.push(b"after the last".to_vec());
    assert_eq!(rx.payloads(), want);
}

#[test]
fn tcp_gets_the_payloads_back_to_back() {
    let dir = TempDir::new("replay-tcp");
    let file = dir.0.join("tlm.pcap");
    let records: Vec<Rec> = (0..1000u64)
        .map(|i| rec(T0 + i * 1000, numbered(i).repeat(1 + (i % 7) as usize)))
        .collect();
    write_pcap(&file, 147, true, &records);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let reader = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let mut all = Vec::new();
        conn.read_to_end(&mut all).unwrap();
        all
    });
    let out = replay(&[
        path_str(&file),
        "--to",
        &format!("tcp://127.0.0.1:{port}"),
        "--speed=max",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let want: Vec<u8> = records.iter().flat_map(|r| r.data.clone()).collect();
    assert_eq!(reader.join().unwrap(), want);
    assert!(text(&out.stdout).contains(&format!("sent 1000 records ({} bytes)", want.len())));
}

/// Send-time errors relative to the first record: (arrival - first arrival) -
/// (stamp - first stamp), in ms, sorted by size.
fn pacing_errors_ms(times: &[Instant], stamps: &[u64], speed: f64) -> Vec<f64> {
    let mut errors: Vec<f64> = times
        .iter()
        .zip(stamps)
        .map(|(t, s)| {
            let arrived = t.duration_since(times[0]).as_secs_f64();
            let due = (s - stamps[0]) as f64 / 1e9 / speed;
            ((arrived - due) * 1000.0).abs()
        })
        .collect();
    errors.sort_by(f64::total_cmp);
    errors
}

/// 1 kHz with up to +-300 us of jitter, deterministic.
fn jittered(n: u64) -> Vec<Rec> {
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    (0..n)
        .map(|i| {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            let jitter = (rng % 600_000) as i64 - 300_000;
            rec(
                (T0 as i64 + i as i64 * 1_000_000 + jitter) as u64,
                numbered(i),
            )
        })
        .collect()
}

#[test]
fn records_go_at_their_recorded_pace() {
    let dir = TempDir::new("replay-pace");
    let file = dir.0.join("1khz.pcap");
    let records = jittered(10_000);
    write_pcap(&file, 147, true, &records);
    let rx = UdpReceiver::start();
    let out = replay(&[path_str(&file), "--to", &rx.url()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    wait_until("10,000 datagrams", || rx.count() >= 10_000);
    let stamps: Vec<u64> = records.iter().map(|r| r.ts_ns).collect();
    let errors = pacing_errors_ms(&rx.times(), &stamps, 1.0);
    let p99 = errors[(errors.len() - 1) * 99 / 100];
    println!(
        "pacing at speed 1, 10,000 records at 1 kHz: error p99 {p99:.3} ms, max {:.3} ms; {}",
        errors[errors.len() - 1],
        text(&out.stdout)
    );
    // The 2 ms is a bench figure on a quiet machine; here, loaded, 20.
    assert!(p99 < 20.0, "p99 {p99} ms");
    assert_eq!(rx.payloads()[9_999], numbered(9_999));
}

#[test]
fn speed_n_divides_the_spacing_and_max_does_not_wait() {
    let dir = TempDir::new("replay-speed");
    let file = dir.0.join("slow.pcap");
    // 2 s of record: 201 records 10 ms apart.
    let records = evenly(201, 10_000_000);
    write_pcap(&file, 147, false, &records);
    let stamps: Vec<u64> = records.iter().map(|r| r.ts_ns).collect();
    let rx = UdpReceiver::start();
    let started = Instant::now();
    let out = replay(&[path_str(&file), "--to", &rx.url(), "--speed", "8"]);
    let took = started.elapsed();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    wait_until("201 datagrams", || rx.count() >= 201);
    let times = rx.times();
    let span = times[200].duration_since(times[0]);
    // 250 ms of schedule: never faster, and far from the 2 s of speed 1.
    assert!(span >= Duration::from_millis(249), "{span:?}");
    assert!(took < Duration::from_millis(1500), "{took:?}");
    let errors = pacing_errors_ms(&times, &stamps, 8.0);
    assert!(errors[errors.len() * 9 / 10] < 20.0, "{errors:?}");
    // max: no waiting at all.
    let rx = UdpReceiver::start();
    let started = Instant::now();
    let out = replay(&[path_str(&file), "--to", &rx.url(), "--speed", "max"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(started.elapsed() < Duration::from_millis(1500));
    // (What arrives at max depends on the receiver keeping up: not asserted.)
    assert!(text(&out.stdout).contains("sent 201 records"));
    assert!(text(&out.stdout).contains("at max speed"));
}

#[test]
fn loop_starts_again_one_mean_spacing_after_the_last_record() {
    let dir = TempDir::new("replay-loop");
    let file = dir.0.join("five.pcap");
    write_pcap(&file, 147, false, &evenly(5, 100_000_000));
    let rx = UdpReceiver::start();
    let child = spawn_replay(&[path_str(&file), "--loop", "--to", &rx.url()]);
    wait_until("12 datagrams", || rx.count() >= 12);
    kill(&child, "INT");
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("stopped by Ctrl-C"), "{stdout}");
    assert!(stdout.contains("3 passes"), "{stdout}");
    let payloads = rx.payloads();
    let want: Vec<Vec<u8>> = (0..payloads.len() as u64)
        .map(|i| numbered(i % 5))
        .collect();
    assert_eq!(payloads, want);
    assert_eq!(number_after(&stdout, "sent"), payloads.len() as u64);
    // Last of pass one to first of pass two: the mean spacing, 100 ms.
    let times = rx.times();
    let gap = times[5].duration_since(times[4]);
    assert!(
        gap >= Duration::from_millis(95) && gap < Duration::from_millis(300),
        "{gap:?}"
    );
    let pass = times[10].duration_since(times[5]);
    assert!(pass >= Duration::from_millis(495), "{pass:?}");
}

#[test]
fn ctrl_c_stops_with_a_summary_of_what_went() {
    let dir = TempDir::new("replay-int");
    let file = dir.0.join("long.pcap");
    write_pcap(&file, 147, false, &evenly(1000, 10_000_000));
    let rx = UdpReceiver::start();
    let child = spawn_replay(&[path_str(&file), "--to", &rx.url()]);
    wait_until("20 datagrams", || rx.count() >= 20);
    kill(&child, "INT");
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130));
    let stdout = text(&out.stdout);
    let sent = number_after(&stdout, "sent");
    assert!((20..1000).contains(&sent), "{stdout}");
    assert!(stdout.contains("lag behind schedule p50"), "{stdout}");
    assert!(
        stdout.contains("stopped by Ctrl-C (SIGINT) before the end"),
        "{stdout}"
    );
    wait_until("every datagram sent to arrive", || {
        rx.count() as u64 >= sent
    });
    assert_eq!(rx.count() as u64, sent);
    // SIGTERM too.
    let child = spawn_replay(&[path_str(&file), "--to", &rx.url()]);
    wait_until("more datagrams", || rx.count() as u64 >= sent + 5);
    kill(&child, "TERM");
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130));
    assert!(text(&out.stdout).contains("stopped by SIGTERM"));
}

fn state_of(child: &Child) -> char {
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", child.id())).unwrap_or_default();
    stat.rsplit(')')
        .next()
        .and_then(|s| s.trim().chars().next())
        .unwrap_or('?')
}

#[test]
fn a_pause_resumes_without_a_burst() {
    let dir = TempDir::new("replay-pause");
    let file = dir.0.join("paced.pcap");
    // 3 s of record at 100 Hz.
    write_pcap(&file, 147, false, &evenly(300, 10_000_000));
    let rx = UdpReceiver::start();
    let child = spawn_replay(&[path_str(&file), "--to", &rx.url()]);
    wait_until("50 datagrams", || rx.count() >= 50);
    kill(&child, "TSTP");
    wait_until("the replay to stop", || state_of(&child) == 'T');
    let stopped_with = rx.count();
    // The pause itself: a second in which nothing may arrive.
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(rx.count(), stopped_with);
    let resumed = Instant::now();
    kill(&child, "CONT");
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("replay: paused 1."), "{stdout}");
    wait_until("300 datagrams", || rx.count() >= 300);
    let after: Vec<Instant> = rx.times().into_iter().filter(|t| *t >= resumed).collect();
    // A burst would send the second's 100 records at once; paced, 50 ms
    // holds 5 or 6 (generous for a loaded machine).
    let most = after
        .iter()
        .map(|t| {
            after
                .iter()
                .filter(|u| **u >= *t && u.duration_since(*t) < Duration::from_millis(50))
                .count()
        })
        .max()
        .unwrap();
    assert!(most <= 20, "{most} records within 50 ms after resuming");
    // SIGSTOP from elsewhere, then SIGCONT: no burst either.
    let rx = UdpReceiver::start();
    let child = spawn_replay(&[path_str(&file), "--to", &rx.url()]);
    wait_until("50 datagrams", || rx.count() >= 50);
    kill(&child, "STOP");
    wait_until("the replay to stop", || state_of(&child) == 'T');
    std::thread::sleep(Duration::from_secs(1));
    let resumed = Instant::now();
    kill(&child, "CONT");
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    wait_until("300 datagrams", || rx.count() >= 300);
    let soon = rx
        .times()
        .iter()
        .filter(|t| **t >= resumed && t.duration_since(resumed) < Duration::from_millis(50))
        .count();
    assert!(soon <= 20, "{soon} records within 50 ms after SIGCONT");
}

#[test]
fn records_that_cannot_go_are_skipped_and_counted() {
    let dir = TempDir::new("replay-skip");
    let file = dir.0.join("mixed.pcap");
    let mut records = evenly(3, 1000);
    records.push(rec(T0 + 5000, vec![7u8; 65_535])); // over a datagram
    let mut cut = rec(T0 + 6000, numbered(9));
    cut.orig_len = Some(100); // the capture kept 24 of 100 bytes
    records.push(cut);
    write_pcap(&file, 147, false, &records);
    let other = dir.0.join("sll.pcap");
    write_pcap(&other, 113, false, &[rec(T0 + 7000, vec![0; 20])]);
    let rx = UdpReceiver::start();
    let out = replay(&[
        path_str(&file),
        path_str(&other),
        "--to",
        &rx.url(),
        "--speed",
        "max",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("sent 3 records"), "{stdout}");
    assert!(
        stdout.contains("skipped 3: 1 too large for a datagram, 1 of a link type with no payload to take, 1 cut short by the capture's snaplen"),
        "{stdout}"
    );
    // Over TCP the large one goes.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let reader = std::thread::spawn(move || {
        let (mut c, _) = listener.accept().unwrap();
        let mut all = Vec::new();
        c.read_to_end(&mut all).unwrap();
        all.len()
    });
    let out = replay(&[
        path_str(&file),
        "--to",
        &format!("tcp://127.0.0.1:{port}"),
        "--speed",
        "max",
    ]);
    assert!(
        text(&out.stdout).contains("sent 4 records"),
        "{}",
        text(&out.stdout)
    );
    assert_eq!(reader.join().unwrap(), 3 * 24 + 65_535);
}

#[test]
fn receivers_that_go_away() {
    let dir = TempDir::new("replay-gone");
    let file = dir.0.join("tlm.pcap");
    write_pcap(&file, 147, false, &evenly(50, 1000));
    // UDP with nothing listening: refusals counted, the replay goes on.
    let port = common::free_udp_port();
    let out = replay(&[
        path_str(&file),
        "--to",
        &format!("udp://127.0.0.1:{port}"),
        "--speed",
        "10",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(number_after(&stdout, "refused") >= 1, "{stdout}");
    // TCP: refused at connect.
    let port = common::free_tcp_port();
    let out = replay(&[path_str(&file), "--to", &format!("tcp://127.0.0.1:{port}")]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("connection refused (is the receiver listening?)"),
        "{}",
        text(&out.stderr)
    );
    // TCP: the receiver takes a little, then resets the connection.
    let long = dir.0.join("long.pcap");
    write_pcap(&long, 147, false, &evenly(2000, 5_000_000));
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let peer = std::thread::spawn(move || {
        let (mut c, _) = listener.accept().unwrap();
        let mut some = [0u8; 240];
        c.read_exact(&mut some).unwrap();
        // Linger 0: close sends a reset.
        reset_on_close(&c);
        drop(c);
    });
    let out = replay(&[path_str(&long), "--to", &format!("tcp://127.0.0.1:{port}")]);
    peer.join().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("went away"), "{stderr}");
    assert!(text(&out.stdout).contains("failed before the end"));
    assert!(number_after(&text(&out.stdout), "sent") >= 10);
}

/// SO_LINGER of zero, so closing `c` sends a reset (std's `set_linger` is
/// unstable).
fn reset_on_close(c: &std::net::TcpStream) {
    use std::os::fd::AsRawFd;
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: a valid socket fd and a linger struct of the size given.
    let rc = unsafe {
        libc::setsockopt(
            c.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0);
}

#[test]
fn hostile_arguments_get_clear_errors() {
    let dir = TempDir::new("replay-hostile");
    let good = dir.0.join("good.pcap");
    write_pcap(&good, 147, false, &evenly(3, 1000));
    let g = path_str(&good);
    let cases: &[(&[&str], i32, &str)] = &[
        (&[g], 2, "give the target"),
        (&[g, "--to", "127.0.0.1:9000"], 2, "neither a target"),
        (&[g, "--to", "udp://127.0.0.1:0"], 2, "1..65535"),
        (&[g, "--to", "udp://127.0.0.1:99999"], 2, "1..65535"),
        (&[g, "--to", "ftp://127.0.0.1:21"], 2, "not udp or tcp"),
        (&[g, "--to", "udp://"], 2, "port is missing"),
        (
            &[g, "--to", "udp://a:1", "--to", "tcp://b:2"],
            2,
            "two targets",
        ),
        (
            &[g, "--to", "udp://127.0.0.1:9", "--to", "1", "--to", "2"],
            2,
            "two window ends",
        ),
        (
            &[g, "--to", "udp://127.0.0.1:9", "--speed", "0"],
            2,
            "--speed \"0\"",
        ),
        (
            &[g, "--to", "udp://127.0.0.1:9", "--speed", "-1"],
            2,
            "--speed \"-1\"",
        ),
        (
            &[g, "--to", "udp://127.0.0.1:9", "--speed", "NaN"],
            2,
            "--speed \"NaN\"",
        ),
        (
            &[g, "--to", "udp://127.0.0.1:9", "--speed", "inf"],
            2,
            "--speed \"inf\"",
        ),
        (
            &[g, "--to", "udp://127.0.0.1:9", "--from", "noon"],
            2,
            "--from: \"noon\" is not a time",
        ),
        (&["--to", "udp://127.0.0.1:9"], 2, "give the pcap files"),
        (
            &[g, "--name", "tlm", "--to", "udp://127.0.0.1:9"],
            2,
            "not both",
        ),
        (
            &["/no/such.pcap", "--to", "udp://127.0.0.1:9"],
            1,
            "/no/such.pcap: cannot open",
        ),
    ];
    for (args, code, needle) in cases {
        let out = replay(args);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(*code), "{args:?}: {stderr}");
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
        assert!(out.stdout.is_empty() || *code != 2, "{args:?}");
    }
    // A file that is not pcap, an empty one, a folder: refused before anything is sent.
    let text_file = dir.0.join("notes.txt");
    std::fs::write(&text_file, "hello, this is not a capture at all").unwrap();
    let empty = dir.0.join("empty.pcap");
    std::fs::write(&empty, "").unwrap();
    let rx = UdpReceiver::start();
    for (bad, needle) in [
        (path_str(&text_file), "not a classic pcap file"),
        (path_str(&empty), "shorter than a pcap header"),
        (path_str(dir.path()), "a folder"),
    ] {
        let out = replay(&[g, bad, "--to", &rx.url()]);
        assert_eq!(out.status.code(), Some(1));
        assert!(text(&out.stderr).contains(needle), "{}", text(&out.stderr));
    }
    // A truncated file: what came before the cut goes, then a clear error.
    let whole = dir.0.join("whole.pcap");
    write_pcap(&whole, 147, false, &evenly(10, 1000));
    let bytes = std::fs::read(&whole).unwrap();
    let cut = dir.0.join("cut.pcap");
    std::fs::write(&cut, &bytes[..bytes.len() - 5]).unwrap();
    let out = replay(&[path_str(&cut), "--to", &rx.url(), "--speed", "max"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("cut.pcap: record 10 is cut short"),
        "{}",
        text(&out.stderr)
    );
    let stdout = text(&out.stdout);
    assert!(stdout.contains("sent 9 records"), "{stdout}");
    assert!(stdout.contains("failed before the end"), "{stdout}");
    wait_until("the 9 records before the cut", || rx.count() >= 9);
}

/// A peer answering one `GET` with `body` in chunks of odd sizes (as bsc's
/// large answers come); returns the request's head.
fn serve_chunked_once(body: Vec<u8>) -> (u16, std::thread::JoinHandle<String>) {
    use std::io::{BufRead, BufReader, Write};
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let peer = std::thread::spawn(move || {
        let (conn, _) = listener.accept().unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let mut reader = BufReader::new(conn.try_clone().unwrap());
        let mut head = String::new();
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap() == 0 || line == "\r\n" {
                break;
            }
            head.push_str(&line);
        }
        let mut out = conn;
        out.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: application/vnd.tcpdump.pcap\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n")
            .unwrap();
        for piece in body.chunks(1000 + 7) {
            write!(out, "{:x}\r\n", piece.len()).unwrap();
            out.write_all(piece).unwrap();
            out.write_all(b"\r\n").unwrap();
        }
        out.write_all(b"0\r\n\r\n").unwrap();
        head
    });
    (port, peer)
}

#[test]
fn name_reads_a_window_from_bscs_data_route_as_a_stream() {
    let dir = TempDir::new("replay-name");
    let file = dir.0.join("window.pcap");
    write_pcap(&file, 147, true, &evenly(500, 100_000));
    let (port, peer) = serve_chunked_once(std::fs::read(&file).unwrap());
    let rx = UdpReceiver::start();
    let server = format!("127.0.0.1:{port}");
    let out = replay(&[
        "--name",
        "tlm",
        "--from",
        "2026-12-07T10:00:00Z",
        "--to",
        "1796637660.5",
        "--to",
        &rx.url(),
        "--server",
        &server,
        "--token",
        "s3cret",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let head = peer.join().unwrap();
    assert!(
        head.starts_with(
            "GET /tlm/data?from=2026-12-07T10%3A00%3A00Z&to=1796637660.5 HTTP/1.1\r\n"
        ),
        "{head}"
    );
    assert!(head.contains("Authorization: Bearer s3cret\r\n"), "{head}");
    assert!(text(&out.stdout).contains("sent 500 records"));
    wait_until("500 datagrams", || rx.count() >= 500);
    assert_eq!(rx.payloads(), (0..500).map(numbered).collect::<Vec<_>>());
}

#[test]
fn name_gets_bscs_refusal_or_says_bsc_is_not_reachable() {
    let (dir, root) = TempDir::with_root("replay-name-refused");
    let bsc = common::Bsc::with_config(dir.path(), &common::config(&root, vec![]));
    let server = format!("127.0.0.1:{}", bsc.http_port);
    let out = replay(&[
        "--name",
        "nosuch",
        "--to",
        "udp://127.0.0.1:9",
        "--server",
        &server,
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("refused (404)"),
        "{}",
        text(&out.stderr)
    );
    assert!(out.stdout.is_empty());
    let free = common::free_tcp_port();
    let out = replay(&[
        "--name",
        "tlm",
        "--to",
        "udp://127.0.0.1:9",
        "--server",
        &format!("127.0.0.1:{free}"),
    ]);
    assert_eq!(out.status.code(), Some(3));
    assert!(
        text(&out.stderr).contains("cannot reach bsc"),
        "{}",
        text(&out.stderr)
    );
    // A bad window is refused before bsc is asked.
    let out = replay(&[
        "--name",
        "tlm",
        "--from",
        "soon",
        "--to",
        "udp://127.0.0.1:9",
        "--server",
        &server,
    ]);
    assert_eq!(out.status.code(), Some(2));
    drop(bsc);
}

#[test]
fn a_window_on_files_sends_only_the_records_inside_it() {
    let dir = TempDir::new("replay-window");
    let file = dir.0.join("minute.pcap");
    // One record a second from 10:00:00.
    write_pcap(&file, 147, false, &evenly(60, 1_000_000_000));
    let rx = UdpReceiver::start();
    let out = replay(&[
        path_str(&file),
        "--from=2026-12-07T10:00:10Z",
        "--to",
        &rx.url(),
        "--to=2026-12-07T12:00:13+02:00",
        "--speed",
        "100",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    // 10:00:10 up to but not including 10:00:13.
    wait_until("3 datagrams", || rx.count() >= 3);
    assert!(
        text(&out.stdout).contains("sent 3 records"),
        "{}",
        text(&out.stdout)
    );
    assert_eq!(rx.payloads(), (10..13).map(numbered).collect::<Vec<_>>());
}

#[test]
fn a_terminal_gets_a_progress_line() {
    let dir = TempDir::new("replay-tty");
    let file = dir.0.join("tlm.pcap");
    write_pcap(&file, 147, false, &evenly(40, 20_000_000));
    let rx = UdpReceiver::start();
    // `script` runs the replay on a pseudo-terminal.
    let line = format!(
        "{} replay {} --to {}",
        env!("CARGO_BIN_EXE_bsc"),
        path_str(&file),
        rx.url()
    );
    let out = Command::new("script")
        .args(["-qec", &line, "/dev/null"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let seen = text(&out.stdout);
    assert!(seen.contains("\rbsc replay: sent "), "{seen:?}");
    assert!(seen.contains("record time 2026-12-07T10:00:00"), "{seen:?}");
    assert!(seen.contains("replay: sent 40 records"), "{seen:?}");
    // Without a terminal, no progress line.
    let out = replay(&[path_str(&file), "--to", &rx.url(), "--speed", "10"]);
    assert!(
        !text(&out.stderr).contains("bsc replay: sent"),
        "{}",
        text(&out.stderr)
    );
}
