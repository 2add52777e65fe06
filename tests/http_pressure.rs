//! Black-box tests of the management server under pressure, and of how it frames
//! a request without a body: the real binary, real HTTP over TCP on loopback.
//!
//! Sockets that connect and send nothing, a flood of connections, clients that
//! pipeline large answers and never read or read slowly: an authorized client is
//! still served, the log stays short, every answer arrives whole, and bsc's
//! memory stays bounded (per connection and for all of them together).

mod common;

use std::io::{BufReader, ErrorKind, Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bsc::control::http::body::PIECE;
use bsc::control::http::server::{MAX_CONNECTIONS, OUTPUT_LOW_WATER, READ_AHEAD};
use common::*;
use serde_json::{json, Value};

#[allow(dead_code)] // the space packets only
use bsc::units::framing::testgen;

/// A `manager_server` section on a free loopback port, with an optional token.
fn server_section(token: Option<&str>) -> Value {
    let mut server = json!({"host": "127.0.0.1", "port": free_tcp_port()});
    if let Some(t) = token {
        server["token"] = json!(t);
    }
    server
}

/// `GET /health` on a new connection; `None` when refused (503) or cut off.
fn health(port: u16, token: Option<&str>) -> Option<Value> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(2 * PATIENCE)).unwrap();
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    write!(
        s,
        "GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}Connection: close\r\n\r\n"
    )
    .ok()?;
    let r = read_response(&mut BufReader::new(s))?;
    (r.status == 200).then(|| r.json())
}

/// Asks until `/health` answers 200 (at most `patience`, a bounded number of
/// tries); returns its body.
fn health_eventually(port: u16, token: Option<&str>, patience: Duration) -> Value {
    let start = Instant::now();
    for _ in 0..10_000 {
        if let Some(body) = health(port, token) {
            return body;
        }
        assert!(
            start.elapsed() < patience,
            "no 200 on /health within {patience:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("no 200 on /health in 10000 tries");
}

/// What an attacker holding `sockets` connections saw.
#[derive(Default)]
struct Siege {
    /// Connections opened, the first `sockets` included.
    connects: AtomicUsize,
    /// 503 answers read.
    refused: AtomicUsize,
}

/// Holds `sockets` connections to `port` that never send a byte, reconnecting
/// each one bsc closes (refused or evicted) until `stop` (bounded by
/// `2 * PATIENCE`).
fn besiege(port: u16, sockets: usize, siege: Arc<Siege>, stop: Arc<AtomicBool>) {
    let connect = || {
        let s = TcpStream::connect(("127.0.0.1", port)).ok()?;
        s.set_nonblocking(true).unwrap();
        siege.connects.fetch_add(1, Ordering::SeqCst);
        Some(s)
    };
    let mut held: Vec<Option<TcpStream>> = (0..sockets).map(|_| connect()).collect();
    let start = Instant::now();
    let mut scratch = [0u8; 4096];
    while !stop.load(Ordering::SeqCst) && start.elapsed() < 2 * PATIENCE {
        for slot in held.iter_mut() {
            let closed = match slot {
                None => true,
                Some(s) => loop {
                    match s.read(&mut scratch) {
                        Ok(0) => break true,
                        Ok(n) => {
                            if scratch[..n].starts_with(b"HTTP/1.1 503") {
                                siege.refused.fetch_add(1, Ordering::SeqCst);
                            }
                        }
                        Err(e) if e.kind() == ErrorKind::WouldBlock => break false,
                        Err(e) if e.kind() == ErrorKind::Interrupted => {}
                        Err(_) => break true,
                    }
                },
            };
            if closed {
                *slot = connect();
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn idle_sockets_that_keep_reconnecting_cannot_lock_out_an_authorized_client() {
    let dir = TempDir::new("siege");
    let bsc = Bsc::with_config(
        dir.path(),
        &json!({"capture_manager": {"root_log_directory": dir.path().join("cap"),
                 "manager_server": server_section(Some("s3cret"))}}),
    );
    let port = bsc.http_port;
    let siege = Arc::new(Siege::default());
    let stop = Arc::new(AtomicBool::new(false));
    let attacker = {
        let (siege, stop) = (siege.clone(), stop.clone());
        std::thread::spawn(move || besiege(port, 100, siege, stop))
    };
    wait_until("the 100 sockets fill the server (some are refused)", || {
        siege.refused.load(Ordering::SeqCst) > 0
    });

    let body = health_eventually(port, Some("s3cret"), PATIENCE);
    let refused = siege.refused.load(Ordering::SeqCst);
    stop.store(true, Ordering::SeqCst);
    attacker.join().unwrap();
    assert_eq!(body["status"], "ok", "{body}");
    assert_eq!(
        body["http_connections"], MAX_CONNECTIONS,
        "answered while every slot was taken (the client took an idle socket's)"
    );
    assert!(
        refused > 0 && siege.connects.load(Ordering::SeqCst) > 100,
        "the sockets kept reconnecting meanwhile"
    );
    assert!(bsc.stop().success());
}

#[test]
fn a_flood_of_refused_connections_writes_a_few_log_lines_not_one_each() {
    let dir = TempDir::new("flood");
    let bsc = Bsc::with_config_env(
        dir.path(),
        &json!({"capture_manager": {"root_log_directory": dir.path().join("cap"),
                 "manager_server": server_section(None)}}),
        &[DRIVEN_CLOCK],
    );
    let port = bsc.http_port;
    // Every slot taken by a socket that sends nothing.
    let mut held: Vec<TcpStream> = (0..MAX_CONNECTIONS)
        .map(|_| TcpStream::connect(("127.0.0.1", port)).unwrap())
        .collect();
    // Then 300 newcomers, one after another, each kept open: the server stays
    // full, so each is refused (503) or, once a held socket is past its grace,
    // takes that socket's slot (200). One log-worthy event each.
    const NEWCOMERS: usize = 300;
    let (mut refused, mut served) = (0, 0);
    for _ in 0..NEWCOMERS {
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(PATIENCE)).unwrap();
        s.write_all(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            .unwrap();
        match read_response(&mut BufReader::new(s.try_clone().unwrap())).map(|r| r.status) {
            Some(503) => refused += 1,
            Some(200) => served += 1,
            other => panic!("newcomer got {other:?}"),
        }
        held.push(s);
    }
    assert_eq!(refused + served, NEWCOMERS);
    // The operator learns how many were left out, once the window has passed
    // on bsc's clock (the sockets closed first: a request that moves the clock
    // needs a free slot).
    drop(held);
    wait_until("the held sockets closed", || {
        let (status, health) = bsc.get("/health");
        status == 200 && health["http_connections"].as_u64() <= Some(1)
    });
    wait_advancing(port, 1.0, "the window's report", || {
        !bsc.log_matching("repeated").is_empty()
    });
    let (status, log) = bsc.stop_with_log();
    assert!(status.success());
    let lines: Vec<&String> = log
        .iter()
        .filter(|l| l.contains("management API:"))
        .collect();
    assert!(
        lines.len() <= 6,
        "{NEWCOMERS} refusals or evictions, {} lines: {lines:#?}",
        lines.len()
    );
    assert!(
        refused > 0,
        "the server was full ({served} newcomers served)"
    );
    assert!(
        lines.iter().any(|l| l.contains("refused")),
        "the first refusal is logged: {lines:#?}"
    );
}

/// A `/proc/<pid>/status` field in kB (`VmRSS`, `VmHWM`).
fn status_kb(pid: i32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

/// Bytes the kernel holds for reading on each of these client sockets, named by
/// their local port, connected to `server_port` (`/proc/net/tcp`'s rx_queue); 0
/// for a socket not listed.
fn receive_queues(local_ports: &[u16], server_port: u16) -> Vec<u64> {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
    let port_of = |addr: &str| u16::from_str_radix(addr.rsplit(':').next()?, 16).ok();
    let queues: Vec<(u16, u64)> = table
        .lines()
        .skip(1)
        .filter_map(|l| {
            let fields: Vec<&str> = l.split_whitespace().collect();
            let local = port_of(fields.get(1)?)?;
            let remote = port_of(fields.get(2)?)?;
            let rx = u64::from_str_radix(fields.get(4)?.split(':').nth(1)?, 16).ok()?;
            (remote == server_port).then_some((local, rx))
        })
        .collect();
    local_ports
        .iter()
        .map(|p| queues.iter().find(|(q, _)| q == p).map_or(0, |&(_, rx)| rx))
        .collect()
}

#[test]
fn clients_pipelining_large_answers_without_reading_cannot_grow_memory() {
    let dir = TempDir::new("pipeline");
    // 300 handlers (on 50 addresses): /metrics is about 350 KiB.
    let ports = udp_ports(50);
    let bsc = start_with(&dir, handlers_on(&ports, 300));
    let port = bsc.http_port;
    let metrics = bsc.request("GET", "/metrics", None, b"");
    assert_eq!(metrics.status, 200);
    let answer = metrics.body.len();
    assert!(answer > 256 * 1024, "/metrics is only {answer} bytes");
    let idle_kb = status_kb(bsc.pid(), "VmRSS");

    // 64 clients, each pipelining up to 2000 GET /metrics (hundreds of MiB of
    // answers each) and reading none.
    let request = b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
    let burst = request.repeat(2000);
    let mut clients = Vec::new();
    for _ in 0..MAX_CONNECTIONS {
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_nonblocking(true).unwrap();
        let mut sent = 0;
        while sent < burst.len() {
            match s.write(&burst[sent..]) {
                Ok(n) => sent += n,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => break, // WouldBlock: bsc stopped reading, as it should
            }
        }
        clients.push((s, sent));
    }
    let local: Vec<u16> = clients
        .iter()
        .map(|(s, _)| s.local_addr().unwrap().port())
        .collect();
    wait_until("bsc answered every client at least once", || {
        receive_queues(&local, port).iter().all(|&rx| rx > 0)
    });
    // Let bsc go as far as it will: until the answers it queued stop growing.
    let mut queued = 0;
    for _ in 0..50 {
        std::thread::sleep(Duration::from_millis(100));
        let now: u64 = receive_queues(&local, port).iter().sum();
        if now == queued {
            break;
        }
        queued = now;
    }
    let peak_kb = status_kb(bsc.pid(), "VmHWM");

    // A fresh connection is still answered: it takes the slot of a client
    // that reads nothing (unused for GRACE) and, a small answer, is answered
    // without waiting for the budget.
    let body = health_eventually(port, None, 2 * PATIENCE);
    assert_eq!(body["status"], "ok", "{body}");
    // What bsc may hold: per connection, one piece past the low-water mark and
    // its read-ahead (never a whole answer); plus 8 MB for the allocator.
    // (Before the bound, each connection queued 1 MiB of answers and then one
    // more: about 75 MB here.)
    let mb = |bytes: usize| bytes as f64 / (1024.0 * 1024.0);
    let bound_mb = mb(MAX_CONNECTIONS * (PIECE + OUTPUT_LOW_WATER + 2 * READ_AHEAD)) + 8.0;
    let grown_mb = mb(peak_kb.saturating_sub(idle_kb) as usize * 1024);
    assert!(
        grown_mb < bound_mb,
        "RSS grew by {grown_mb:.1} MB (at most {bound_mb:.1} MB) over {:.1} MB idle ({MAX_CONNECTIONS} clients pipelining {} KiB answers, {queued} answer bytes waiting in the kernel)",
        mb(idle_kb as usize * 1024),
        answer / 1024,
    );
    drop(clients);
    assert!(bsc.stop().success());
}

/// A connection to 127.0.0.1:`port` whose receive buffer is `rcvbuf` bytes (set
/// before connecting, so the kernel cannot absorb large answers for it).
fn connect_with_rcvbuf(port: u16, rcvbuf: i32) -> TcpStream {
    use std::os::fd::FromRawFd;
    // SAFETY: plain socket calls on a descriptor this function owns; the
    // sockaddr_in is fully initialized and its size passed with it.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
        let size = std::mem::size_of::<i32>() as libc::socklen_t;
        let set = libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&rcvbuf as *const i32).cast(),
            size,
        );
        assert_eq!(set, 0, "SO_RCVBUF: {}", std::io::Error::last_os_error());
        let mut addr: libc::sockaddr_in = std::mem::zeroed();
        addr.sin_family = libc::AF_INET as libc::sa_family_t;
        addr.sin_port = port.to_be();
        addr.sin_addr.s_addr = u32::from(std::net::Ipv4Addr::LOCALHOST).to_be();
        let connected = libc::connect(
            fd,
            (&addr as *const libc::sockaddr_in).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        );
        assert_eq!(connected, 0, "connect: {}", std::io::Error::last_os_error());
        TcpStream::from_raw_fd(fd)
    }
}

/// A client that reads slowly: a pause before each read.
struct SlowReader(TcpStream);

impl Read for SlowReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        std::thread::sleep(Duration::from_millis(2));
        self.0.read(buf)
    }
}

#[test]
fn slow_readers_pipelining_large_answers_hold_a_bounded_total() {
    let dir = TempDir::new("budget");
    // 1,000 handlers (on 50 addresses) from a config file: /metrics is about 2 MB.
    let ports = udp_ports(50);
    let bsc = start_with(&dir, handlers_on(&ports, 1000));
    let port = bsc.http_port;
    let first = bsc.request("GET", "/metrics", None, b"");
    assert_eq!(first.status, 200);
    let answer = first.body.len();
    assert!(answer > 2_000_000, "/metrics is only {answer} bytes");
    let idle_kb = status_kb(bsc.pid(), "VmRSS");

    // 64 clients with a small receive buffer, each pipelining GET /metrics and
    // reading every answer to its end slowly (16 KiB every 2 ms at most).
    const PIPELINED: usize = 10;
    let started = Instant::now();
    let deadline = started + 8 * PATIENCE;
    let peak_kb = Arc::new(AtomicUsize::new(0));
    let finished = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..MAX_CONNECTIONS)
        .map(|_| {
            std::thread::spawn(move || {
                let mut s = connect_with_rcvbuf(port, 16 * 1024);
                s.set_read_timeout(Some(4 * PATIENCE)).unwrap();
                s.write_all(&b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".repeat(PIPELINED))
                    .unwrap();
                let mut reader = BufReader::with_capacity(16 * 1024, SlowReader(s));
                let mut lengths = Vec::new();
                for _ in 0..PIPELINED {
                    assert!(
                        Instant::now() < deadline,
                        "answers still arriving after {:?}",
                        8 * PATIENCE
                    );
                    let r = read_response(&mut reader).expect("a whole answer");
                    assert_eq!(r.status, 200);
                    lengths.push(r.body.len());
                }
                lengths
            })
        })
        .collect();
    // Sample the resident size while they read (VmHWM is the peak in between).
    let pid = bsc.pid();
    let sampler = {
        let (peak_kb, finished) = (peak_kb.clone(), finished.clone());
        std::thread::spawn(move || {
            while !finished.load(Ordering::SeqCst) && Instant::now() < deadline {
                peak_kb.fetch_max(status_kb(pid, "VmRSS") as usize, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    let results: Vec<_> = clients.into_iter().map(|c| c.join()).collect();
    finished.store(true, Ordering::SeqCst);
    sampler.join().unwrap();
    let elapsed = started.elapsed();
    let hwm_kb = status_kb(pid, "VmHWM");
    let grown_mib = |kb: u64| kb.saturating_sub(idle_kb) as f64 / 1024.0;
    let (hwm, sampled) = (
        grown_mib(hwm_kb),
        grown_mib(peak_kb.load(Ordering::SeqCst) as u64),
    );
    eprintln!(
        "{} answers of {} KiB in {elapsed:.1?}: RSS grew by {hwm:.1} MiB at its peak ({sampled:.1} MiB sampled) over {:.1} MiB idle",
        MAX_CONNECTIONS * PIPELINED,
        answer / 1024,
        idle_kb as f64 / 1024.0
    );
    // Before the budget, each connection held one answer: about 138 MiB here.
    assert!(
        hwm < 16.0,
        "RSS grew by {hwm:.1} MiB (at most 16: the answer budget and a piece per connection)"
    );
    for result in results {
        let lengths = result.unwrap_or_else(|_| {
            panic!(
                "a client did not get every answer whole; bsc said: {:#?}",
                bsc.log_matching("management API")
            )
        });
        assert!(
            lengths
                .iter()
                .all(|&n| n + 10_000 > answer && n < answer + 10_000),
            "every answer is a whole /metrics: {lengths:?}"
        );
    }
    assert_eq!(health_eventually(port, None, PATIENCE)["status"], "ok");
    assert!(bsc.stop().success());
}

#[test]
fn a_post_without_content_length_has_an_empty_body_and_rotates() {
    let dir = TempDir::new("bodiless");
    let udp = free_udp_port();
    let bsc = Bsc::with_config(
        dir.path(),
        &json!({"capture_manager": {"root_log_directory": dir.path().join("cap"),
                 "manager_server": server_section(None)},
                "handlers": [{"name": "tlm", "conn_type": "udp", "address": ["127.0.0.1", udp]}]}),
    );
    sender(udp).send(&seq_payload(1)).unwrap();
    wait_until("the first file has a record", || {
        pcap_files(&dir.path().join("cap"))
            .iter()
            .any(|p| count_records(p) == 1)
    });

    // What `curl -X POST` sends: no Content-Length, no body.
    let mut s = TcpStream::connect(("127.0.0.1", bsc.http_port)).unwrap();
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    s.write_all(b"POST /tlm/rotate HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: */*\r\n\r\nGET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .unwrap();
    let mut reader = BufReader::new(s);
    let r = read_response(&mut reader).expect("an answer to the rotate");
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let rotated = r.json();
    assert_eq!(rotated[0]["name"], "tlm", "{rotated}");
    assert!(rotated[0]["previous_file"].is_string(), "{rotated}");
    let next = read_response(&mut reader).expect("the pipelined request after it");
    assert_eq!(next.status, 200, "the bytes after the head were a request");

    // curl itself.
    let out = Command::new("curl")
        .args(["-sS", "-X", "POST", "-w", "\n%{http_code}"])
        .arg(format!("http://127.0.0.1:{}/tlm/rotate", bsc.http_port))
        .output()
        .expect("curl is installed");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, code) = text.rsplit_once('\n').unwrap();
    assert_eq!(code, "200", "{body}");
    assert_eq!(
        serde_json::from_str::<Value>(body).unwrap()[0]["name"],
        "tlm"
    );
    assert!(bsc.stop().success());
}

#[test]
fn clients_without_the_token_asking_all_the_time_cannot_lock_out_one_with_it() {
    let dir = TempDir::new("unauth");
    let bsc = Bsc::with_config(
        dir.path(),
        &json!({"capture_manager": {"root_log_directory": dir.path().join("cap"),
                 "manager_server": server_section(Some("s3cret"))}}),
    );
    let port = bsc.http_port;
    let stop = Arc::new(AtomicBool::new(false));
    let busy = Arc::new(AtomicUsize::new(0));
    // MAX_CONNECTIONS clients that keep their connection busy with requests that
    // get 401, reconnecting whenever bsc closes one (bounded by 2 * PATIENCE).
    let attacker = {
        let (stop, busy) = (stop.clone(), busy.clone());
        std::thread::spawn(move || {
            let start = Instant::now();
            let connect = || {
                let s = TcpStream::connect(("127.0.0.1", port)).ok()?;
                s.set_nonblocking(true).unwrap();
                Some(s)
            };
            let mut held: Vec<Option<TcpStream>> =
                (0..MAX_CONNECTIONS).map(|_| connect()).collect();
            let mut buf = [0u8; 4096];
            while !stop.load(Ordering::SeqCst) && start.elapsed() < 2 * PATIENCE {
                for slot in held.iter_mut() {
                    let alive = match slot.as_mut() {
                        Some(s) => {
                            let sent = s
                                .write_all(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
                                .is_ok();
                            let read = match s.read(&mut buf) {
                                Ok(0) => false,
                                Ok(_) => true,
                                Err(e) => e.kind() == ErrorKind::WouldBlock,
                            };
                            sent && read
                        }
                        None => false,
                    };
                    if !alive {
                        *slot = connect();
                    }
                }
                busy.fetch_add(1, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };
    wait_until("the clients keep asking", || {
        busy.load(Ordering::SeqCst) > 10
    });
    let body = health_eventually(port, Some("s3cret"), PATIENCE);
    stop.store(true, Ordering::SeqCst);
    attacker.join().unwrap();
    assert_eq!(body["status"], "ok", "{body}");
    assert!(bsc.stop().success());
}

/// `n` UDP ports on 127.0.0.1 free at the same time (bound together, then released).
fn udp_ports(n: usize) -> Vec<u16> {
    let udp: Vec<std::net::UdpSocket> = (0..n)
        .map(|_| std::net::UdpSocket::bind("127.0.0.1:0").unwrap())
        .collect();
    udp.iter().map(|s| s.local_addr().unwrap().port()).collect()
}

/// `count` UDP handlers `h0`, `h1`, ... on these ports in turn, one file each.
fn handlers_on(ports: &[u16], count: usize) -> Vec<Value> {
    (0..count)
        .map(|i| {
            json!({"name": format!("h{i}"), "conn_type": "udp",
                   "address": ["127.0.0.1", ports[i % ports.len()]],
                   "rotate_log": false, "file_name_pattern": format!("h{i}.pcap")})
        })
        .collect()
}

/// bsc on a config file with these handlers, its captures in `<dir>/cap`,
/// its management API on a free loopback port.
fn start_with(dir: &TempDir, handlers: Vec<Value>) -> Bsc {
    Bsc::with_config(
        dir.path(),
        &json!({"capture_manager": {"root_log_directory": dir.path().join("cap"),
                 "manager_server": server_section(None)},
                "handlers": handlers}),
    )
}

/// bsc with `count` handlers from a config file on 50 UDP addresses, named
/// `prefix` and their number, padded with `x` to `name_len` characters (the
/// labels of every `/metrics` series carry the name).
fn with_handlers(dir: &TempDir, count: usize, name_len: usize, extra: Value) -> Bsc {
    let ports = udp_ports(50.min(count));
    let handlers: Vec<Value> = (0..count)
        .map(|i| {
            let mut h = json!({"name": format!("{:x<name_len$}", format!("h{i}-")),
                   "conn_type": "udp", "address": ["127.0.0.1", ports[i % ports.len()]],
                   "rotate_log": false, "file_name_pattern": format!("h{i}.pcap")});
            h.as_object_mut()
                .unwrap()
                .extend(extra.as_object().cloned().unwrap_or_default());
            h
        })
        .collect();
    start_with(dir, handlers)
}

/// `clients` threads, each on a connection with a 16 KiB receive buffer,
/// pipelining `pipelined` `GET path` and reading every answer to its end
/// slowly (16 KiB every 2 ms at most), before `deadline`; `answers` counts the
/// answers read whole. Each returns the lengths of its answers.
fn slow_pipeliners(
    port: u16,
    path: &'static str,
    clients: usize,
    pipelined: usize,
    deadline: Instant,
    answers: Arc<AtomicUsize>,
) -> Vec<std::thread::JoinHandle<Vec<usize>>> {
    (0..clients)
        .map(|_| {
            let answers = answers.clone();
            std::thread::spawn(move || {
                let mut s = connect_with_rcvbuf(port, 16 * 1024);
                s.set_read_timeout(Some(4 * PATIENCE)).unwrap();
                let request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
                s.write_all(request.repeat(pipelined).as_bytes()).unwrap();
                let mut reader = BufReader::with_capacity(16 * 1024, SlowReader(s));
                let mut lengths = Vec::new();
                for _ in 0..pipelined {
                    assert!(Instant::now() < deadline, "answers still arriving");
                    let r = read_response(&mut reader).expect("a whole answer");
                    assert_eq!(r.status, 200);
                    lengths.push(r.body.len());
                    answers.fetch_add(1, Ordering::SeqCst);
                }
                lengths
            })
        })
        .collect()
}

/// Samples the resident size of `pid` every 20 ms until `finished` (or
/// `deadline`); returns the largest seen, in kB.
fn sample_rss(
    pid: i32,
    finished: Arc<AtomicBool>,
    deadline: Instant,
) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let mut peak = 0;
        while !finished.load(Ordering::SeqCst) && Instant::now() < deadline {
            peak = peak.max(status_kb(pid, "VmRSS"));
            std::thread::sleep(Duration::from_millis(20));
        }
        peak
    })
}

#[test]
fn health_is_answered_within_a_second_while_slow_readers_pipeline_metrics() {
    let dir = TempDir::new("health-pressure");
    let bsc = with_handlers(&dir, 1000, 8, json!({}));
    let port = bsc.http_port;
    let answer = bsc.request("GET", "/metrics", None, b"").body.len();
    assert!(answer > 2_000_000, "/metrics is only {answer} bytes");

    // Every slot but one (a monitoring system's) taken by a client pipelining
    // /metrics and reading slowly: together they ask for 550 MB of answers.
    const PIPELINED: usize = 4;
    let clients = MAX_CONNECTIONS - 1;
    let deadline = Instant::now() + 8 * PATIENCE;
    let answers = Arc::new(AtomicUsize::new(0));
    let readers = slow_pipeliners(
        port,
        "/metrics",
        clients,
        PIPELINED,
        deadline,
        answers.clone(),
    );
    wait_until("every client is reading its answers", || {
        answers.load(Ordering::SeqCst) >= clients
    });
    // A monitoring system polls /health with its usual timeout of 1 s.
    let mut waits = Vec::new();
    for _ in 0..10 {
        let asked = Instant::now();
        let body = health(port, None).expect("/health answers 200");
        waits.push(asked.elapsed());
        assert_eq!(body["status"], "ok", "{body}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let read = answers.load(Ordering::SeqCst);
    assert!(
        read < clients * PIPELINED,
        "the clients were still reading while /health was asked ({read} answers read)"
    );
    let slowest = waits.iter().max().unwrap();
    assert!(
        *slowest < Duration::from_secs(1),
        "/health took {slowest:?} under pressure (all: {waits:?})"
    );
    for r in readers {
        let lengths = r.join().expect("every answer whole");
        assert!(lengths
            .iter()
            .all(|&n| n + 10_000 > answer && n < answer + 10_000));
    }
    assert!(bsc.stop().success());
}

#[test]
fn one_metrics_answer_larger_than_16_mib_comes_in_pieces_with_bounded_growth() {
    let dir = TempDir::new("huge-metrics");
    // 200 handlers with 64-character names, on one address, each checking the
    // sequence of 256 APIDs: 512 series of 200 bytes each per handler.
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let udp_port = udp.local_addr().unwrap().port();
    drop(udp);
    let handlers: Vec<Value> = (0..200)
        .map(|i| {
            json!({"name": format!("{:x<64}", format!("h{i}-")), "conn_type": "udp",
                   "address": ["127.0.0.1", udp_port], "rotate_log": false,
                   "file_name_pattern": format!("h{i}.pcap"),
                   "sequence_check": "ccsds_space_packet"})
        })
        .collect();
    let bsc = start_with(&dir, handlers);
    wait_until("the socket is bound", || !udp_port_is_free(udp_port));
    let tx = sender(udp_port);
    for apid in 0..256u16 {
        tx.send(&testgen::space_packet(apid, 1, &[0; 8])).unwrap();
        std::thread::sleep(Duration::from_millis(1));
    }
    let all_seen = || {
        let r = bsc.request("GET", "/metrics", None, b"");
        (r.status == 200 && r.body.len() > 16 << 20).then_some(r)
    };
    let mut first = None;
    wait_until("every handler counts 256 streams", || {
        first = all_seen();
        first.is_some()
    });
    let first = first.unwrap();
    let answer = first.body.len();
    let text = String::from_utf8(first.body).unwrap();
    assert_eq!(
        text.matches("bsc_sequence_gaps_total{").count(),
        200 * 256,
        "one series per handler and APID"
    );
    promtool_accepts(&text);
    drop(text);
    let idle_kb = status_kb(bsc.pid(), "VmRSS");

    // 8 clients pipelining it twice and reading slowly: 10 times the bound in
    // answers asked for at once.
    let deadline = Instant::now() + 8 * PATIENCE;
    let answers = Arc::new(AtomicUsize::new(0));
    let finished = Arc::new(AtomicBool::new(false));
    let sampler = sample_rss(bsc.pid(), finished.clone(), deadline);
    let started = Instant::now();
    let readers = slow_pipeliners(bsc.http_port, "/metrics", 8, 2, deadline, answers);
    let lengths: Vec<Vec<usize>> = readers
        .into_iter()
        .map(|r| r.join().expect("every answer whole"))
        .collect();
    finished.store(true, Ordering::SeqCst);
    let sampled_kb = sampler.join().unwrap();
    let hwm_kb = status_kb(bsc.pid(), "VmHWM");
    let grown_mib = |kb: u64| kb.saturating_sub(idle_kb) as f64 / 1024.0;
    eprintln!(
        "16 answers of {} KiB in {:.1?}: RSS grew by {:.1} MiB at its peak ({:.1} MiB sampled) over {:.1} MiB idle",
        answer / 1024,
        started.elapsed(),
        grown_mib(hwm_kb),
        grown_mib(sampled_kb),
        idle_kb as f64 / 1024.0
    );
    assert!(
        grown_mib(hwm_kb) < 16.0,
        "RSS grew by {:.1} MiB for answers of {} KiB (at most 16)",
        grown_mib(hwm_kb),
        answer / 1024
    );
    for l in lengths {
        assert!(
            l.iter()
                .all(|&n| n + 10_000 > answer && n < answer + 10_000),
            "every answer is a whole /metrics: {l:?}"
        );
    }
    assert!(bsc.stop().success());
}

/// A JSON document parsed, asserting no object in it repeats a key (serde_json
/// would keep the last silently; Python's parser is told to refuse).
fn json_without_repeated_keys(body: &[u8]) -> Value {
    let mut check = Command::new("python3")
        .args([
            "-c",
            "import json, sys\n\
             def pairs(p):\n    keys = [k for k, _ in p]\n    \
             assert len(keys) == len(set(keys)), 'a key repeats: %r' % keys\n    return dict(p)\n\
             json.load(sys.stdin, object_pairs_hook=pairs)",
        ])
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    check.stdin.take().unwrap().write_all(body).unwrap();
    let out = check.wait_with_output().unwrap();
    assert_success(&out);
    serde_json::from_slice(body).unwrap()
}

#[test]
fn answers_in_pieces_stay_valid_while_handlers_come_and_go() {
    let dir = TempDir::new("pieces-churn");
    let bsc = with_handlers(&dir, 300, 64, json!({}));
    let port = bsc.http_port;
    // One client reads every large answer slowly, twice, pipelined, while
    // another adds handlers and stops those of the config file.
    let paths = ["/", "/stats", "/series", "/capturers", "/metrics"];
    let mut s = connect_with_rcvbuf(port, 16 * 1024);
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    for path in paths.iter().chain(&paths) {
        write!(s, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").unwrap();
    }
    let (stop, changes) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicUsize::new(0)),
    );
    let churn = {
        let (stop, changes) = (stop.clone(), changes.clone());
        std::thread::spawn(move || {
            for i in 0..300 {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let form = format!("port={}&conn_type=udp", free_udp_port());
                let added = http_request(
                    port,
                    "POST",
                    &format!("/new{i}/start"),
                    Some("application/x-www-form-urlencoded"),
                    form.as_bytes(),
                );
                assert_eq!(added.status, 201);
                let name = format!("{:x<64}", format!("h{i}-"));
                let stopped = http_request(port, "DELETE", &format!("/{name}/stop"), None, b"");
                assert_eq!(stopped.status, 200);
                changes.fetch_add(2, Ordering::SeqCst);
            }
        })
    };
    let mut reader = BufReader::with_capacity(16 * 1024, SlowReader(s));
    let mut bodies = Vec::new();
    let mut during = Vec::new();
    for path in paths.iter().chain(&paths) {
        let before = changes.load(Ordering::SeqCst);
        let r = read_response(&mut reader).expect("a whole answer");
        assert_eq!(r.status, 200, "{path}");
        assert_eq!(r.header("transfer-encoding"), Some("chunked"), "{path}");
        during.push(changes.load(Ordering::SeqCst) - before);
        bodies.push((path, r.body));
    }
    stop.store(true, Ordering::SeqCst);
    churn.join().unwrap();
    assert!(
        during.iter().filter(|&&n| n > 0).count() >= 4,
        "handlers changed while the answers were read: {during:?}"
    );
    for (path, body) in bodies {
        if *path == "/metrics" {
            promtool_accepts(&String::from_utf8(body).unwrap());
            continue;
        }
        let doc = json_without_repeated_keys(&body);
        // Every handler at most once.
        let names: Vec<String> = match *path {
            "/capturers" => doc
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c["key"].to_string())
                .collect(),
            "/series" => doc["handlers"]
                .as_array()
                .unwrap()
                .iter()
                .map(|h| h["name"].to_string())
                .collect(),
            _ => doc
                .as_object()
                .unwrap()
                .iter()
                .flat_map(|(key, group)| {
                    group.as_array().unwrap().iter().map(move |e| {
                        let name = e.get("name").or_else(|| e["handler"].get("name"));
                        format!("{key} {}", name.unwrap())
                    })
                })
                .collect(),
        };
        let unique: std::collections::HashSet<&String> = names.iter().collect();
        assert_eq!(unique.len(), names.len(), "{path}: a handler listed twice");
        let least = if *path == "/capturers" { 50 } else { 200 };
        assert!(names.len() >= least, "{path}: {} entries", names.len());
    }
    assert!(bsc.stop().success());
}

#[test]
fn answers_in_pieces_reach_http_1_0_clients_and_curl_whole() {
    let dir = TempDir::new("pieces-clients");
    let bsc = with_handlers(&dir, 300, 64, json!({}));
    let port = bsc.http_port;
    let chunked = bsc.request("GET", "/stats", None, b"");
    assert_eq!(chunked.header("transfer-encoding"), Some("chunked"));
    let stats = json_without_repeated_keys(&chunked.body);
    assert_eq!(stats.as_object().unwrap().len(), 50, "50 addresses");

    // HTTP/1.0 has no chunks: the body runs to the end of the connection.
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    s.write_all(b"GET /stats HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&raw[..split]).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(head.contains("connection: close"), "{head}");
    assert!(
        !head.contains("content-length") && !head.contains("transfer-encoding"),
        "{head}"
    );
    let old = json_without_repeated_keys(&raw[split + 4..]);
    assert_eq!(old.as_object().unwrap().len(), 50);

    // Python's requests, as AIT's clients use it (from AIT's venv, tests/deps.sh).
    let python =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/ait-venv/bin/python3");
    assert!(python.exists(), "AIT's venv is needed: run tests/deps.sh");
    let out = Command::new(&python)
        .args([
            "-c",
            "import requests, sys\n\
             r = requests.get(sys.argv[1], timeout=30)\n\
             r.raise_for_status()\n\
             print(r.headers.get('Transfer-Encoding'), len(r.json()))",
            &format!("http://127.0.0.1:{port}/stats"),
        ])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "chunked 50",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // curl, over HTTP/1.1 and 1.0.
    for version in ["--http1.1", "--http1.0"] {
        let out = Command::new("curl")
            .args(["-sSf", version])
            .arg(format!("http://127.0.0.1:{port}/metrics"))
            .output()
            .expect("curl is installed");
        assert_success(&out);
        let text = String::from_utf8(out.stdout).unwrap();
        assert!(text.len() > 500_000, "{} bytes", text.len());
        assert_eq!(text.matches("bsc_packets_total{").count(), 300);
        promtool_accepts(&text);
    }
    assert!(bsc.stop().success());
}

#[test]
fn a_long_file_list_comes_in_pieces_each_file_once_while_files_close() {
    let dir = TempDir::new("file-list");
    let udp_port = free_udp_port();
    let bsc = Bsc::with_config(
        dir.path(),
        &json!({"capture_manager": {"root_log_directory": dir.path().join("cap"),
                 "manager_server": server_section(None)},
                "handlers": [{"name": "many", "conn_type": "udp",
                  "address": ["127.0.0.1", udp_port], "rotate_log": false,
                  "rotate_max_packets": 1,
                  "file_name_pattern": "{name}-{seq}-with-a-name-long-enough-to-count.pcap"}]}),
    );
    wait_until("the socket is bound", || !udp_port_is_free(udp_port));
    let tx = sender(udp_port);
    let closed = |bsc: &Bsc| {
        bsc.get("/many/files").1[0]["files"]
            .as_array()
            .unwrap()
            .len()
    };
    // One file per datagram: 800 files, a list of about 200 KB.
    for i in 0..800 {
        tx.send(&seq_payload(i)).unwrap();
        if i % 50 == 49 {
            wait_until("the files closed", || closed(&bsc) as u64 > i);
        }
    }
    wait_until("800 files listed", || closed(&bsc) >= 800);
    let before: Vec<String> = bsc.get("/many/files").1[0]["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap().to_string())
        .collect();

    // A slow reader asks for the list (about 200 KB: several pieces) while
    // files keep closing.
    let mut s = connect_with_rcvbuf(bsc.http_port, 4 * 1024);
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    s.write_all(b"GET /many/files HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let sending = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            for i in 800..5_000 {
                if stop.load(Ordering::SeqCst) {
                    return;
                }
                tx.send(&seq_payload(i)).unwrap();
                std::thread::sleep(Duration::from_millis(2));
            }
        })
    };
    let mut reader = BufReader::with_capacity(4 * 1024, SlowReader(s));
    let r = read_response(&mut reader).expect("a whole answer");
    stop.store(true, Ordering::SeqCst);
    sending.join().unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.header("transfer-encoding"), Some("chunked"));
    let doc = json_without_repeated_keys(&r.body);
    assert_eq!(doc[0]["name"], "many");
    let files = doc[0]["files"].as_array().unwrap();
    let paths: Vec<&str> = files.iter().map(|f| f["path"].as_str().unwrap()).collect();
    let unique: std::collections::HashSet<&&str> = paths.iter().collect();
    assert_eq!(unique.len(), paths.len(), "a file listed twice");
    assert!(
        before.iter().all(|p| paths.contains(&p.as_str())),
        "every file closed before the answer is in it"
    );
    let open: Vec<&Value> = files.iter().filter(|f| f["state"] == "open").collect();
    assert!(
        open.len() <= 1
            && files
                .last()
                .is_some_and(|f| open.is_empty() || f["state"] == "open")
    );
    // Files closing between pieces is what the walk resumes across (unit
    // test: storage::tests::a_long_file_list_is_walked_after_the_last_file_listed);
    // here the kernel's buffers may well take the list before one closes.
    assert!(bsc.stop().success());
}
