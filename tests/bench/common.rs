//! What the sections share: selection by environment, a bsc child that cannot
//! outlive the benchmark, CPU time and memory of a process, pinning receivers to
//! a core of their own, the generators (one `send` per datagram for small
//! datagrams, `sendmmsg` batches for large ones), the small-datagram steps (bsc
//! and the count-only receiver), the TCP space-packet stream (bsc and the C
//! framing reference), read-back of the PCAP files and cleanup on a panic (a
//! panic hook kills the children and unmounts first, in case the panic does not
//! unwind) and on Ctrl-C or SIGTERM.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pcap_file::pcap::PcapReader;

/// bsc's own default `rcvbuf_bytes` (24 MiB): what every receiver here asks for.
pub const RCVBUF: usize = bsc::config::DEFAULT_RCVBUF_BYTES;

/// `BSC_BENCH_SECTION=goals,udp,units,large,rcvbuf,extract`: only these sections (default all).
pub fn section(name: &str) -> bool {
    match std::env::var("BSC_BENCH_SECTION") {
        Ok(list) if !list.trim().is_empty() => list.split(',').any(|s| s.trim() == name),
        _ => true,
    }
}

/// `BSC_BENCH_ONLY=text`: only the rows whose label contains it.
pub fn only(label: &str) -> bool {
    std::env::var("BSC_BENCH_ONLY").map_or(true, |o| label.contains(&o))
}

/// `BSC_BENCH_RUNS=N` (1..=9, default 3): alternating runs behind each median.
pub fn runs() -> usize {
    std::env::var("BSC_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3)
        .clamp(1, 9)
}

pub fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// "met" or "missed by X%" for a value that must stay at or below `limit`.
pub fn at_most(value: f64, limit: f64) -> String {
    if value.is_nan() {
        "not measured".into()
    } else if value <= limit {
        "met".into()
    } else {
        format!("MISSED by {:.0}%", (value / limit - 1.0) * 100.0)
    }
}

/// "met" or "missed by X%" for a value that must reach at least `limit`.
pub fn at_least(value: f64, limit: f64) -> String {
    if value.is_nan() {
        "not measured".into()
    } else if value >= limit {
        "met".into()
    } else {
        format!("MISSED by {:.0}%", (1.0 - value / limit) * 100.0)
    }
}

// ---- cleanup, also on panic ----

static PIDS: Mutex<Vec<u32>> = Mutex::new(Vec::new());
static MOUNTS: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());
static DIRS: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// On a panic (which aborts): kill the bsc children, unmount our tmpfs, remove
/// our work folders, then print the panic as usual.
pub fn install_panic_hook() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        cleanup_all();
        default(info);
    }));
}

/// For a child started elsewhere: killed by the cleanup until forgotten.
pub fn register_pid(pid: u32) {
    PIDS.lock().unwrap().push(pid);
}

pub fn forget_pid(pid: u32) {
    PIDS.lock().unwrap().retain(|p| *p != pid);
}

/// Ctrl-C or SIGTERM: the same cleanup, then exit 130. The signals are blocked
/// in every thread (call this first, before any thread starts) and one thread
/// waits for them; bsc children start with an empty signal mask (std resets it).
pub fn install_signal_cleanup() {
    // SAFETY: a sigset_t built with sigemptyset/sigaddset, blocked for this
    // thread (and so for the threads it starts), then waited for in one thread.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        std::thread::spawn(move || {
            let mut sig = 0;
            libc::sigwait(&set, &mut sig);
            eprintln!("signal {sig}: cleaning up");
            cleanup_all();
            std::process::exit(130);
        });
    }
}

pub fn cleanup_all() {
    for pid in PIDS.lock().map(|v| v.clone()).unwrap_or_default() {
        // SAFETY: kill(2) on a pid this process started.
        unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
    }
    std::thread::sleep(Duration::from_millis(50));
    for dir in DIRS.lock().map(|v| v.clone()).unwrap_or_default() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    let mounts: Vec<PathBuf> = MOUNTS
        .lock()
        .map(|mut v| std::mem::take(&mut *v))
        .unwrap_or_default();
    for m in mounts {
        let _ = Command::new("umount").arg("-l").arg(&m).status();
        let _ = std::fs::remove_dir(&m);
    }
}

/// A work folder removed when dropped (and by the panic hook).
pub struct WorkDir(pub PathBuf);

impl WorkDir {
    pub fn new(path: PathBuf) -> WorkDir {
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        DIRS.lock().unwrap().push(path.clone());
        WorkDir(path)
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
        DIRS.lock().unwrap().retain(|d| d != &self.0);
    }
}

/// A tmpfs of our own, unmounted when dropped (and by the panic hook).
pub struct Tmpfs(pub PathBuf);

impl Tmpfs {
    /// Mounts a `size_mb` MB tmpfs at `path`, or None (not root, no tmpfs).
    pub fn mount(path: PathBuf, size_mb: u64) -> Option<Tmpfs> {
        std::fs::create_dir_all(&path).ok()?;
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size_mb}m,mode=0755")])
            .arg("tmpfs")
            .arg(&path)
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            let _ = std::fs::remove_dir(&path);
            return None;
        }
        MOUNTS.lock().unwrap().push(path.clone());
        Some(Tmpfs(path))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let mut mounts = MOUNTS.lock().unwrap_or_else(|e| e.into_inner());
        if !mounts.contains(&self.0) {
            return; // the panic hook has unmounted it already
        }
        let _ = Command::new("umount").arg(&self.0).status();
        let _ = std::fs::remove_dir(&self.0);
        mounts.retain(|d| d != &self.0);
    }
}

/// The file system type of `path` (from /proc/self/mounts: the longest prefix).
pub fn fs_type(path: &Path) -> String {
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let path = path.canonicalize().unwrap_or(path.to_path_buf());
    let mut best = (0, String::from("?"));
    for l in mounts.lines() {
        let f: Vec<&str> = l.split_whitespace().collect();
        if f.len() > 2 && path.starts_with(f[1]) && f[1].len() >= best.0 {
            best = (f[1].len(), f[2].to_string());
        }
    }
    best.1
}

// ---- bsc ----

/// A running bsc, killed when dropped (and by the panic hook).
pub struct Bsc {
    child: Child,
    pub pid: u32,
    pub http_port: u16,
}

impl Bsc {
    /// Writes `dir/bsc.json` with these handlers and the root `dir`, starts bsc
    /// and waits (at most 20 s) until `/health` counts every handler.
    pub fn start(dir: &Path, handlers: Vec<serde_json::Value>) -> Bsc {
        let http_port = free_tcp_port();
        let n = handlers.len();
        let config = serde_json::json!({
            "capture_manager": {"root_log_directory": dir, "manager_server": {"host": "127.0.0.1", "port": http_port}},
            "handlers": handlers
        });
        let cfg = dir.join("bsc.json");
        std::fs::write(&cfg, config.to_string()).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_bsc"))
            .args(["--config", cfg.to_str().unwrap(), "--log-level", "warn"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_sink())
            .spawn()
            .expect("start bsc");
        let pid = child.id();
        PIDS.lock().unwrap().push(pid);
        drop(wait_http(http_port, n, &mut child));
        Bsc {
            child,
            pid,
            http_port,
        }
    }

    pub fn cpu_ns(&self) -> u64 {
        cpu_ns(self.pid)
    }

    /// `GET /stats` as JSON (Null if bsc does not answer in 5 s).
    pub fn stats(&self) -> serde_json::Value {
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.http_port)) else {
            return serde_json::Value::Null;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
        // HTTP/1.0: /stats comes in pieces, chunked for HTTP/1.1 (which this
        // reader does not decode), to the connection's end for 1.0.
        let _ = s.write_all(b"GET /stats HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n");
        let mut answer = String::new();
        let _ = std::io::Read::read_to_string(&mut s, &mut answer);
        answer
            .split_once("\r\n\r\n")
            .and_then(|(_, body)| serde_json::from_str(body).ok())
            .unwrap_or(serde_json::Value::Null)
    }
}

impl Drop for Bsc {
    fn drop(&mut self) {
        // SAFETY: kill(2) on the child this struct started.
        unsafe { libc::kill(self.pid as libc::pid_t, libc::SIGTERM) };
        reap_within(
            &mut self.child,
            Duration::from_secs(5),
            Duration::from_millis(10),
        );
        PIDS.lock().unwrap().retain(|p| *p != self.pid);
    }
}

/// Waits up to `within` (looking every `poll`) for `child` to exit; kills it then.
fn reap_within(child: &mut Child, within: Duration, poll: Duration) {
    let deadline = Instant::now() + within;
    while child.try_wait().ok().flatten().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break;
        }
        std::thread::sleep(poll);
    }
}

/// Every `"sequence"` object in `/stats` (one per sequence-checked handler):
/// (units, missing, gaps, duplicates) summed.
pub fn sequence_totals(stats: &serde_json::Value) -> Option<(u64, u64, u64, u64)> {
    fn walk(v: &serde_json::Value, acc: &mut Option<(u64, u64, u64, u64)>) {
        match v {
            serde_json::Value::Object(m) => {
                if let Some(s) = m.get("sequence").filter(|s| s.is_object()) {
                    let g = |k: &str| s.get(k).and_then(|x| x.as_u64()).unwrap_or(0);
                    let a = acc.get_or_insert((0, 0, 0, 0));
                    a.0 += g("units");
                    a.1 += g("missing");
                    a.2 += g("gaps");
                    a.3 += g("duplicates");
                }
                for (k, x) in m {
                    if k != "sequence" {
                        walk(x, acc);
                    }
                }
            }
            serde_json::Value::Array(a) => a.iter().for_each(|x| walk(x, acc)),
            _ => {}
        }
    }
    let mut acc = None;
    walk(stats, &mut acc);
    acc
}

/// Waits until the files stop growing for 300 ms (at most 20 s).
pub fn settle(files: &[PathBuf]) {
    let total = || {
        files
            .iter()
            .map(|f| std::fs::metadata(f).map_or(0, |m| m.len()))
            .sum::<u64>()
    };
    let mut last = u64::MAX;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        std::thread::sleep(Duration::from_millis(300));
        let now = total();
        if now == last || Instant::now() > deadline {
            break;
        }
        last = now;
    }
}

/// `n` distinct free UDP ports on 127.0.0.1 (held together while chosen).
pub fn free_udp_ports(n: usize) -> Vec<u16> {
    let held: Vec<UdpSocket> = (0..n)
        .map(|_| UdpSocket::bind("127.0.0.1:0").unwrap())
        .collect();
    held.iter()
        .map(|s| s.local_addr().unwrap().port())
        .collect()
}

pub fn udp_handler(name: &str, port: u16) -> serde_json::Value {
    serde_json::json!({"name": name, "conn_type": "udp", "address": ["127.0.0.1", port],
                       "rotate_log": false, "file_name_pattern": "{name}.pcap"})
}

/// Asks for `bytes` with SO_RCVBUFFORCE (root), else SO_RCVBUF, as bsc does;
/// returns what the kernel granted (twice the request, for its bookkeeping).
pub fn set_rcvbuf(fd: i32, bytes: usize) -> usize {
    let v = bytes as libc::c_int;
    let len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: a valid socket fd and a c_int option value of the size passed.
    unsafe {
        let p = (&v as *const libc::c_int).cast();
        if libc::setsockopt(fd, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, p, len) != 0 {
            libc::setsockopt(fd, libc::SOL_SOCKET, libc::SO_RCVBUF, p, len);
        }
        let mut got: libc::c_int = 0;
        let mut l = len;
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&mut got as *mut libc::c_int).cast(),
            &mut l,
        );
        got as usize
    }
}

// ---- the generator ----

/// What each datagram carries besides its sequence number.
#[derive(Clone, Copy, PartialEq)]
pub enum Payload {
    /// Sequence number (u64, big-endian) in bytes 0..8.
    Plain,
    /// A CCSDS space packet: APIDs 0x100-0x103 in turn, each with its own correct
    /// 14-bit count, length field = size - 7; sequence number in bytes 6..14.
    SpacePacket,
}

pub const APIDS: u64 = 4;

impl Payload {
    pub fn seq_offset(self) -> usize {
        match self {
            Payload::Plain => 0,
            Payload::SpacePacket => 6,
        }
    }

    fn fill(self, buf: &mut [u8], seq: u64) {
        let o = self.seq_offset();
        buf[o..o + 8].copy_from_slice(&seq.to_be_bytes());
        if self == Payload::SpacePacket {
            let apid = 0x100 + (seq % APIDS) as u16;
            let count = ((seq / APIDS) & 0x3FFF) as u16;
            buf[0..2].copy_from_slice(&apid.to_be_bytes());
            buf[2..4].copy_from_slice(&(0xC000 | count).to_be_bytes());
            let len = (buf.len() - 7) as u16;
            buf[4..6].copy_from_slice(&len.to_be_bytes());
        }
    }
}

pub struct Blast {
    /// Datagrams sent (their sequence numbers are below `next_seq`).
    pub sent: u64,
    pub next_seq: u64,
    pub secs: f64,
    /// The rate asked for (datagrams/s), None: as fast as the senders can.
    pub asked: Option<f64>,
}

impl Blast {
    pub fn rate(&self) -> f64 {
        self.sent as f64 / self.secs.max(1e-9)
    }
}

/// Sends `size`-byte datagrams to the ports in turn (datagram `seq` to port
/// `seq % ports.len()`), from `senders` threads, each with `sendmmsg` batches of up
/// to 2 MiB (at most 64 datagrams), at `rate` datagrams/s in all (None: as fast
/// as they can). Stops after `step` or `max_count` datagrams, whichever is first.
pub fn blast(
    ports: &[u16],
    size: usize,
    payload: Payload,
    rate: Option<f64>,
    senders: usize,
    step: Duration,
    max_count: u64,
) -> Blast {
    let next = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let threads: Vec<_> = (0..senders.max(1))
        .map(|_| {
            let ports = ports.to_vec();
            let next = next.clone();
            let per_thread = rate.map(|r| r / senders.max(1) as f64);
            std::thread::spawn(move || {
                send_loop(
                    &ports, size, payload, per_thread, start, step, max_count, &next,
                )
            })
        })
        .collect();
    let sent: u64 = threads.into_iter().map(|t| t.join().unwrap()).sum();
    Blast {
        sent,
        next_seq: next.load(Ordering::Relaxed).min(max_count),
        secs: start.elapsed().as_secs_f64(),
        asked: rate,
    }
}

#[allow(clippy::too_many_arguments)]
fn send_loop(
    ports: &[u16],
    size: usize,
    payload: Payload,
    rate: Option<f64>,
    start: Instant,
    step: Duration,
    max_count: u64,
    next: &AtomicU64,
) -> u64 {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let fd = sock.as_raw_fd();
    let sndbuf: libc::c_int = 8 << 20;
    // SAFETY: a valid socket and a c_int option value of the size passed.
    unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_SNDBUFFORCE,
            (&sndbuf as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
    let batch = ((2 << 20) / size).clamp(1, 64);
    let size = size.max(payload.seq_offset() + 8);
    let mut bufs: Vec<Vec<u8>> = (0..batch).map(|_| vec![0x5au8; size]).collect();
    let mut addrs: Vec<libc::sockaddr_in> = ports
        .iter()
        .map(|p| libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: p.to_be(),
            sin_addr: libc::in_addr {
                s_addr: u32::from(std::net::Ipv4Addr::LOCALHOST).to_be(),
            },
            sin_zero: [0; 8],
        })
        .collect();
    let mut iovs = iovecs(&mut bufs);
    // Pointed at the addresses below.
    let mut msgs = mmsghdrs(&mut iovs);
    for m in msgs.iter_mut() {
        m.msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    }
    let mut sent = 0u64;
    loop {
        let elapsed = start.elapsed();
        if elapsed >= step {
            break;
        }
        let mut n = batch as u64;
        if let Some(r) = rate {
            let due = ((r * elapsed.as_secs_f64()) as u64).saturating_sub(sent);
            if due == 0 {
                std::thread::sleep(Duration::from_micros(50));
                continue;
            }
            n = n.min(due);
        }
        let first = next.fetch_add(n, Ordering::Relaxed);
        if first >= max_count {
            break;
        }
        let n = n.min(max_count - first) as usize;
        for i in 0..n {
            let seq = first + i as u64;
            payload.fill(&mut bufs[i], seq);
            msgs[i].msg_hdr.msg_name =
                (&mut addrs[(seq % ports.len() as u64) as usize] as *mut libc::sockaddr_in).cast();
        }
        let mut off = 0;
        while off < n {
            // SAFETY: msgs[off..n] point at live buffers and addresses.
            let r = unsafe { libc::sendmmsg(fd, msgs[off..].as_mut_ptr(), (n - off) as u32, 0) };
            if r <= 0 {
                break;
            }
            off += r as usize;
        }
        sent += off as u64;
    }
    sent
}

// ---- reading the files back ----

pub struct ReadBack {
    /// Distinct sequence numbers (below the limit) found.
    pub distinct: u64,
    pub records: u64,
    pub bytes: u64,
}

/// Reads the PCAP files with pcap-file: distinct sequence numbers (at `offset`,
/// below `limit`), records and record bytes.
pub fn read_back(files: &[PathBuf], offset: usize, limit: u64) -> ReadBack {
    let mut seen = vec![false; limit as usize];
    let mut out = ReadBack {
        distinct: 0,
        records: 0,
        bytes: 0,
    };
    for path in files {
        let Ok(f) = File::open(path) else { continue };
        let mut reader = PcapReader::new(std::io::BufReader::with_capacity(1 << 20, f))
            .expect("a valid pcap file");
        while let Some(p) = reader.next_raw_packet() {
            let p = p.expect("no torn records");
            out.records += 1;
            out.bytes += p.data.len() as u64;
            let Some(b) = p.data.get(offset..offset + 8) else {
                continue;
            };
            let seq = u64::from_be_bytes(b.try_into().unwrap());
            if let Some(s) = seen.get_mut(seq as usize) {
                if !*s {
                    *s = true;
                    out.distinct += 1;
                }
            }
        }
    }
    out
}

/// One bsc UDP step: `active` handlers (each with the keys of `extra` added) on
/// as many ports plus `idle` handlers nobody sends to; the generator at `rate`.
pub struct UdpStep<'a> {
    pub root: &'a Path,
    pub size: usize,
    pub active: usize,
    pub idle: usize,
    pub rate: Option<f64>,
    pub payload: Payload,
    pub extra: serde_json::Value,
    pub senders: usize,
    pub step: Duration,
    pub max_count: u64,
}

pub struct StepOutcome {
    pub blast: Blast,
    pub written: u64,
    pub cpu_ns: u64,
    pub stats: serde_json::Value,
}

impl StepOutcome {
    pub fn lost(&self) -> u64 {
        self.blast.sent.saturating_sub(self.written)
    }
    pub fn loss_pct(&self) -> f64 {
        100.0 * self.lost() as f64 / self.blast.sent.max(1) as f64
    }
    pub fn cpu_us_per(&self) -> f64 {
        self.cpu_ns as f64 / 1000.0 / self.written.max(1) as f64
    }
}

static STEP_NO: AtomicU64 = AtomicU64::new(0);

pub fn run_udp_step(s: &UdpStep) -> StepOutcome {
    let dir = WorkDir::new(
        s.root
            .join(format!("step{}", STEP_NO.fetch_add(1, Ordering::Relaxed))),
    );
    let all = free_udp_ports(s.active + s.idle);
    let (ports, idle_ports) = all.split_at(s.active);
    let mut handlers: Vec<serde_json::Value> = ports
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let mut h = udp_handler(&format!("a{i}"), *p);
            if let (Some(h), Some(extra)) = (h.as_object_mut(), s.extra.as_object()) {
                h.extend(extra.clone());
            }
            h
        })
        .collect();
    for (i, p) in idle_ports.iter().enumerate() {
        handlers.push(udp_handler(&format!("idle{i}"), *p));
    }
    let bsc = Bsc::start(&dir.0, handlers);
    let files: Vec<PathBuf> = (0..s.active)
        .map(|i| dir.0.join(format!("a{i}.pcap")))
        .collect();
    let cpu0 = bsc.cpu_ns();
    let blast = blast(
        ports,
        s.size,
        s.payload,
        s.rate,
        s.senders,
        s.step,
        s.max_count,
    );
    settle(&files);
    let cpu_ns = bsc.cpu_ns().saturating_sub(cpu0);
    let stats = bsc.stats();
    drop(bsc);
    let rb = read_back(&files, s.payload.seq_offset(), blast.next_seq);
    StepOutcome {
        blast,
        written: rb.distinct,
        cpu_ns,
        stats,
    }
}

// ---- measuring a process ----

/// CPU time of `pid`'s main thread (bsc and the references have one thread):
/// the first field of /proc/PID/schedstat, in ns.
pub fn cpu_ns(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/schedstat"))
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(0)
}

/// CPU time of the calling thread, in ns (the same clock as /proc/PID/schedstat).
pub fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the timespec it is given.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// (user, system) clock ticks the process has used (/proc/PID/stat fields 14, 15).
pub fn user_system_ticks(pid: u32) -> (u64, u64) {
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

pub fn peak_rss_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

pub fn free_tcp_port() -> u16 {
    tcp_peer().1
}

/// A listening socket on a free port of 127.0.0.1, and that port.
pub fn tcp_peer() -> (TcpListener, u16) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    (listener, port)
}

/// The first connection to `listener` within 10 s (`who` names the peer in
/// the failure).
pub fn accept_within(listener: &TcpListener, who: &str) -> TcpStream {
    listener.set_nonblocking(true).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match listener.accept() {
            Ok((c, _)) => return c,
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            Err(e) => panic!("{who} did not connect: {e}"),
        }
    }
}

/// An iovec over each buffer.
pub fn iovecs<B: AsMut<[u8]>>(bufs: &mut [B]) -> Vec<libc::iovec> {
    bufs.iter_mut()
        .map(|b| {
            let b = b.as_mut();
            libc::iovec {
                iov_base: b.as_mut_ptr().cast(),
                iov_len: b.len(),
            }
        })
        .collect()
}

/// One message header per iovec, each pointed at its iovec alone (no address,
/// no control data).
pub fn mmsghdrs(iovs: &mut [libc::iovec]) -> Vec<libc::mmsghdr> {
    // SAFETY: an all-zero mmsghdr is a valid value (null pointers, zero lengths).
    let mut msgs: Vec<libc::mmsghdr> = (0..iovs.len())
        .map(|_| unsafe { std::mem::zeroed() })
        .collect();
    for (m, iov) in msgs.iter_mut().zip(iovs.iter_mut()) {
        m.msg_hdr.msg_iov = iov;
        m.msg_hdr.msg_iovlen = 1;
    }
    msgs
}

/// Where bsc's stderr goes: `BSC_BENCH_LOG=file` keeps its log lines.
pub fn log_sink() -> Stdio {
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

/// Connects to bsc's API once it answers with every handler running (at most
/// 20 s); stops the benchmark if bsc exits instead.
pub fn wait_http(port: u16, handlers: usize, child: &mut Child) -> TcpStream {
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

// ---- pinning ----

/// Where a pinned step runs: the receiver (bsc, a reference, the counter) alone
/// on the last CPU this process may use, the load (generator, TCP server, the
/// benchmark itself) on the others.
pub struct Pinning {
    pub receiver: usize,
    pub load: Vec<usize>,
}

impl Pinning {
    /// None when this process may use fewer than 2 CPUs.
    pub fn detect() -> Option<Pinning> {
        let mut cpus = allowed_cpus()?;
        let receiver = cpus.pop()?;
        (!cpus.is_empty()).then_some(Pinning {
            receiver,
            load: cpus,
        })
    }

    /// Pins `pid`'s main thread (bsc and the references have one) to the receiver CPU.
    pub fn receiver(&self, pid: u32) {
        set_cpus(pid, &[self.receiver]);
    }
}

fn allowed_cpus() -> Option<Vec<usize>> {
    // SAFETY: a zeroed cpu_set_t filled by sched_getaffinity for this thread,
    // then only read with CPU_ISSET below CPU_SETSIZE.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return None;
        }
        Some(
            (0..libc::CPU_SETSIZE as usize)
                .filter(|c| libc::CPU_ISSET(*c, &set))
                .collect(),
        )
    }
}

/// Pins thread `tid` (0: the calling thread) to `cpus`; false if refused.
fn set_cpus(tid: u32, cpus: &[usize]) -> bool {
    // SAFETY: a zeroed cpu_set_t with CPU_SET below CPU_SETSIZE, passed with its size.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        for &c in cpus.iter().filter(|c| **c < libc::CPU_SETSIZE as usize) {
            libc::CPU_SET(c, &mut set);
        }
        libc::sched_setaffinity(
            tid as libc::pid_t,
            std::mem::size_of::<libc::cpu_set_t>(),
            &set,
        ) == 0
    }
}

/// Runs `f` with the calling thread on `cpus` (None: where it is), then puts
/// the thread back on the CPUs it had.
pub fn on_cpus<T>(cpus: Option<&[usize]>, f: impl FnOnce() -> T) -> T {
    let before = cpus.and_then(|c| allowed_cpus().filter(|_| set_cpus(0, c)));
    let out = f();
    if let Some(b) = before {
        set_cpus(0, &b);
    }
    out
}

// ---- small datagrams: the udp and goals sections ----

/// Each small-datagram step sends for this long, at most `SMALL_MAX` datagrams.
pub const SMALL_STEP: Duration = Duration::from_secs(2);
pub const SMALL_MAX: u64 = 2_000_000;
/// `/stats` answers fetched, back to back, to measure what one costs (`StatsProbe::After`).
const STATS_POLLS: usize = 50;

/// Sends `size`-byte datagrams (sequence number in bytes 0..8) to the ports in
/// turn for `SMALL_STEP`, at `rate` datagrams/s in all (None: as fast as it can),
/// from the calling thread, one `send` per datagram on a connected socket per
/// port: the small-datagram sections' generator, whose maximum is "the
/// generator's maximum" of their rows. Returns (sent, achieved rate).
pub fn generate(ports: &[u16], size: usize, rate: Option<u64>) -> (u64, f64) {
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
    while sent < SMALL_MAX {
        let elapsed = start.elapsed();
        if elapsed >= SMALL_STEP {
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

/// One small-datagram step's figures (bsc or the count-only receiver).
pub struct SmallOutcome {
    pub offered: f64,
    pub sent: u64,
    pub written: u64,
    pub cpu_ns: u64,
    /// Share of the CPU time spent in user space (the rest is the kernel's).
    pub user_share: Option<f64>,
    pub peak_rss_kb: u64,
    /// `/stats` latencies during the step (`StatsProbe::During`).
    pub http: Vec<Duration>,
    /// What `/stats` answers cost after the step (`StatsProbe::After`).
    pub stats_cost: Option<StatsCost>,
    /// Units bsc's forward targets sent and dropped, summed over every
    /// handler's targets, and the datagrams bsc's capture sockets dropped
    /// (`kernel_drops`) (`/stats` after the step; `None`: none forwards).
    pub forward: Option<(u64, u64, u64)>,
}

impl SmallOutcome {
    pub fn cpu_us_per(&self) -> f64 {
        self.cpu_ns as f64 / 1000.0 / self.written.max(1) as f64
    }
    pub fn lost(&self) -> u64 {
        self.sent.saturating_sub(self.written)
    }
}

/// `/stats` fetched back to back on one keep-alive connection, bsc otherwise idle.
pub struct StatsCost {
    pub answers: usize,
    /// bsc's CPU time over all the answers.
    pub cpu_ns: u64,
    /// The size of the last answer's body.
    pub bytes: usize,
    pub latency: Vec<Duration>,
}

/// What happens with `/stats` in a small step.
#[derive(Clone, Copy, PartialEq)]
pub enum StatsProbe {
    /// Never fetched.
    Off,
    /// Every 20 ms on a keep-alive connection while the generator sends: its
    /// latency under load (its cost counts in the step's CPU).
    During,
    /// Not during the measured window: `STATS_POLLS` answers once the files
    /// have settled and the CPU has been read, for what one answer costs.
    After,
}

/// A fresh bsc with `active` handlers on as many ports plus `idle` handlers
/// nobody sends to, fed by `generate` at `rate`.
pub struct SmallStep<'a> {
    pub root: &'a Path,
    pub size: usize,
    pub active: usize,
    pub idle: usize,
    pub rate: Option<u64>,
    pub stats: StatsProbe,
    pub pin: Option<&'a Pinning>,
}

pub fn run_small_step(s: &SmallStep) -> SmallOutcome {
    run_small_step_with(s, &serde_json::json!({}))
}

/// [`run_small_step`] with the keys of `extra` added to each active handler
/// (the forward section's targets).
pub fn run_small_step_with(s: &SmallStep, extra: &serde_json::Value) -> SmallOutcome {
    let dir = WorkDir::new(
        s.root
            .join(format!("small{}", STEP_NO.fetch_add(1, Ordering::Relaxed))),
    );
    let all = free_udp_ports(s.active + s.idle);
    let (ports, idle_ports) = all.split_at(s.active);
    let mut handlers: Vec<serde_json::Value> = ports
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let mut h = udp_handler(&format!("a{i}"), *p);
            for (k, v) in extra.as_object().into_iter().flatten() {
                h[k] = v.clone();
            }
            h
        })
        .collect();
    for (i, p) in idle_ports.iter().enumerate() {
        handlers.push(udp_handler(&format!("idle{i}"), *p));
    }
    let bsc = Bsc::start(&dir.0, handlers);
    if let Some(p) = s.pin {
        p.receiver(bsc.pid);
    }
    let files: Vec<PathBuf> = (0..s.active)
        .map(|i| dir.0.join(format!("a{i}.pcap")))
        .collect();
    let cpu_before = bsc.cpu_ns();
    let ticks_before = user_system_ticks(bsc.pid);
    let stop = Arc::new(AtomicBool::new(false));
    let prober = (s.stats == StatsProbe::During).then(|| {
        let stop = stop.clone();
        let conn = TcpStream::connect(("127.0.0.1", bsc.http_port)).unwrap();
        std::thread::spawn(move || probe_http(conn, &stop))
    });
    let (sent, offered) = on_cpus(s.pin.map(|p| &p.load[..]), || {
        generate(ports, s.size, s.rate)
    });
    // Settle: until every file stops growing (bsc has drained its sockets).
    settle(&files);
    stop.store(true, Ordering::Relaxed);
    let http = prober.map_or(Vec::new(), |p| p.join().unwrap());
    let cpu_ns = bsc.cpu_ns().saturating_sub(cpu_before);
    let ticks = user_system_ticks(bsc.pid);
    let (user, system) = (ticks.0 - ticks_before.0, ticks.1 - ticks_before.1);
    let user_share = (user + system > 0).then(|| user as f64 / (user + system) as f64);
    let stats_cost = (s.stats == StatsProbe::After).then(|| stats_cost(&bsc));
    let peak_rss_kb = peak_rss_kb(bsc.pid);
    let forward = extra.get("forward").map(|_| forward_counts(&bsc.stats()));
    drop(bsc);
    let written = read_back(&files, 0, sent).distinct;
    SmallOutcome {
        offered,
        sent,
        written,
        cpu_ns,
        user_share,
        peak_rss_kb,
        http,
        stats_cost,
        forward,
    }
}

/// `units_sent` and `units_dropped` summed over every forward target of
/// every handler in a `/stats` answer, and `kernel_drops` over the handlers.
fn forward_counts(stats: &serde_json::Value) -> (u64, u64, u64) {
    let handlers = stats
        .as_object()
        .into_iter()
        .flat_map(|o| o.values())
        .filter_map(serde_json::Value::as_array)
        .flatten();
    let n = |v: &serde_json::Value, k: &str| v[k].as_u64().unwrap_or(0);
    handlers.fold((0, 0, 0), |(s, d, k), h| {
        let targets = h["forward"].as_array().into_iter().flatten();
        let (ts, td) = targets.fold((0, 0), |(s, d), t| {
            (s + n(t, "units_sent"), d + n(t, "units_dropped"))
        });
        (s + ts, d + td, k + n(h, "kernel_drops"))
    })
}

/// `STATS_POLLS` `/stats` answers back to back (at most 10 s): bsc's CPU over them.
fn stats_cost(bsc: &Bsc) -> StatsCost {
    let conn = TcpStream::connect(("127.0.0.1", bsc.http_port)).unwrap();
    let mut client = KeepAlive::new(conn);
    let deadline = Instant::now() + Duration::from_secs(10);
    let cpu0 = bsc.cpu_ns();
    let (mut latency, mut bytes) = (Vec::new(), 0);
    while latency.len() < STATS_POLLS && Instant::now() < deadline {
        let t = Instant::now();
        match client.get_stats() {
            Some(n) => bytes = n,
            None => break,
        }
        latency.push(t.elapsed());
    }
    StatsCost {
        answers: latency.len(),
        cpu_ns: bsc.cpu_ns().saturating_sub(cpu0),
        bytes,
        latency,
    }
}

/// A keep-alive HTTP connection to bsc's API.
struct KeepAlive {
    writer: TcpStream,
    reader: BufReader<TcpStream>,
}

impl KeepAlive {
    fn new(stream: TcpStream) -> KeepAlive {
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        KeepAlive {
            writer: stream.try_clone().unwrap(),
            reader: BufReader::new(stream),
        }
    }

    /// `GET /stats`: the body's length (whole or chunked), None if the
    /// connection failed.
    fn get_stats(&mut self) -> Option<usize> {
        self.writer
            .write_all(b"GET /stats HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            .ok()?;
        let mut len = 0usize;
        let mut chunked = false;
        let mut line = String::new();
        loop {
            line.clear();
            if self.reader.read_line(&mut line).unwrap_or(0) == 0 {
                return None;
            }
            let lower = line.to_ascii_lowercase();
            if let Some(v) = lower.strip_prefix("content-length:") {
                len = v.trim().parse().unwrap_or(0);
            }
            if lower.starts_with("transfer-encoding:") && lower.contains("chunked") {
                chunked = true;
            }
            if line == "\r\n" {
                break;
            }
        }
        if !chunked {
            let mut body = vec![0; len];
            self.reader.read_exact(&mut body).ok()?;
            return Some(len);
        }
        // An answer in pieces: chunks until the last (size 0), no trailers.
        loop {
            line.clear();
            self.reader.read_line(&mut line).ok()?;
            let size = usize::from_str_radix(line.trim(), 16).ok()?;
            let mut chunk = vec![0; size + 2];
            self.reader.read_exact(&mut chunk).ok()?;
            if size == 0 {
                return Some(len);
            }
            len += size;
        }
    }
}

/// `GET /stats` every 20 ms on one keep-alive connection; the latency of each.
fn probe_http(stream: TcpStream, stop: &AtomicBool) -> Vec<Duration> {
    let mut client = KeepAlive::new(stream);
    let mut out = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        let t = Instant::now();
        if client.get_stats().is_none() {
            break;
        }
        out.push(t.elapsed());
        std::thread::sleep(Duration::from_millis(20));
    }
    out
}

/// The count-only receiver: a blocking `recvmmsg` loop (64 slots) that only
/// counts, pinned to the receiver CPU, at the generator's maximum.
pub fn run_count_only(size: usize, pin: Option<&Pinning>) -> SmallOutcome {
    run_small_reference(size, pin, false, |_, _, _| {})
}

/// The writing reference for small datagrams, the least a recorder does: the
/// same loop, each datagram appended behind a 16-byte pcap record header to a
/// 1 MiB buffer of its own, written to `dir/ref-SIZE.pcap` when the next record
/// would not fit (as the C framing reference does for TCP). `written` is the
/// records in the file, read back. `stamped`: the stamping reference, each
/// record stamped with its datagram's receive time from the kernel
/// (`SO_TIMESTAMPNS`, as bsc's records are) instead of one clock reading per
/// batch.
pub fn run_writing_reference(
    dir: &Path,
    size: usize,
    stamped: bool,
    pin: Option<&Pinning>,
) -> SmallOutcome {
    const BUF: usize = 1 << 20;
    let path = dir.join(format!("ref-{size}.pcap"));
    let mut file = File::create(&path).unwrap();
    let mut out: Vec<u8> = Vec::with_capacity(BUF);
    out.extend_from_slice(&pcap_global_header());
    let o = run_small_reference(size, pin, stamped, move |msgs, bufs, done| {
        let mut batch_ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        if !stamped {
            // SAFETY: clock_gettime writes the timespec it is given.
            unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut batch_ts) };
        }
        for (m, b) in msgs.iter().zip(bufs) {
            let ts = if stamped {
                kernel_time(m).unwrap_or(batch_ts)
            } else {
                batch_ts
            };
            let d = &b[..m.msg_len as usize];
            if out.len() + 16 + d.len() > BUF {
                file.write_all(&out).unwrap();
                out.clear();
            }
            out.extend_from_slice(&(ts.tv_sec as u32).to_ne_bytes());
            out.extend_from_slice(&((ts.tv_nsec / 1000) as u32).to_ne_bytes());
            out.extend_from_slice(&(d.len() as u32).to_ne_bytes());
            out.extend_from_slice(&(d.len() as u32).to_ne_bytes());
            out.extend_from_slice(d);
        }
        if done {
            file.write_all(&out).unwrap();
        }
    });
    let rb = read_back(std::slice::from_ref(&path), 0, o.sent);
    assert_eq!(
        rb.records, o.written,
        "the writing reference wrote every datagram it read"
    );
    let _ = std::fs::remove_file(&path);
    o
}

/// A small-datagram reference receiver: a thread pinned to the receiver CPU
/// runs a blocking `recvmmsg` loop (64 slots) and hands each batch (the
/// messages and their slots) to `on_batch` (then an empty one with `done` once
/// the sender is done; the count-only receiver does nothing with them), while
/// the generator sends at its maximum from the load CPUs. CPU from the
/// thread's own clock.
fn run_small_reference(
    size: usize,
    pin: Option<&Pinning>,
    stamped: bool,
    mut on_batch: impl FnMut(&[libc::mmsghdr], &[[u8; 2048]], bool) + Send + 'static,
) -> SmallOutcome {
    let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
    set_rcvbuf(rx.as_raw_fd(), RCVBUF);
    rx.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let port = rx.local_addr().unwrap().port();
    let receiver = pin.map(|p| p.receiver);
    let thread = std::thread::spawn(move || {
        if let Some(cpu) = receiver {
            set_cpus(0, &[cpu]);
        }
        const N: usize = 64;
        let mut bufs = vec![[0u8; 2048]; N];
        let mut iovs = iovecs(&mut bufs);
        let mut msgs = mmsghdrs(&mut iovs);
        // Room for one timestamp per datagram (the stamping reference).
        let mut controls = vec![[0u64; 8]; N];
        if stamped {
            let on: libc::c_int = 1;
            // SAFETY: setsockopt reads one c_int.
            unsafe {
                libc::setsockopt(
                    rx.as_raw_fd(),
                    libc::SOL_SOCKET,
                    libc::SO_TIMESTAMPNS,
                    (&on as *const libc::c_int).cast(),
                    std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                );
            }
        }
        let cpu0 = thread_cpu_ns();
        let mut n = 0u64;
        loop {
            if stamped {
                // The kernel says how much of each control buffer it used.
                for (m, c) in msgs.iter_mut().zip(controls.iter_mut()) {
                    m.msg_hdr.msg_control = c.as_mut_ptr().cast();
                    m.msg_hdr.msg_controllen = std::mem::size_of_val(c) as _;
                }
            }
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
            on_batch(&msgs[..got as usize], &bufs[..got as usize], false);
        }
        on_batch(&[], &[], true);
        (n, thread_cpu_ns() - cpu0)
    });
    let (sent, offered) = on_cpus(pin.map(|p| &p.load[..]), || generate(&[port], size, None));
    let (written, cpu_ns) = thread.join().unwrap();
    SmallOutcome {
        offered,
        sent,
        written,
        cpu_ns,
        user_share: None,
        peak_rss_kb: 0,
        http: Vec::new(),
        stats_cost: None,
        forward: None,
    }
}

/// The kernel's receive time of one received message (`SO_TIMESTAMPNS`), if
/// the kernel attached it.
fn kernel_time(m: &libc::mmsghdr) -> Option<libc::timespec> {
    // SAFETY: the kernel filled the message's control buffer within
    // msg_controllen; CMSG_FIRSTHDR/NXTHDR stay inside it; the payload is
    // read unaligned.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&m.msg_hdr);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_TIMESTAMPNS {
                return Some(std::ptr::read_unaligned(libc::CMSG_DATA(c).cast()));
            }
            c = libc::CMSG_NXTHDR(&m.msg_hdr, c);
        }
    }
    None
}

/// The 24-byte global header of a classic microsecond pcap file, link type
/// 147 (USER0, what bsc writes for plain UDP), snaplen 65535, native order.
pub fn pcap_global_header() -> Vec<u8> {
    let mut h = Vec::with_capacity(24);
    h.extend_from_slice(&0xa1b2_c3d4u32.to_ne_bytes());
    h.extend_from_slice(&2u16.to_ne_bytes());
    h.extend_from_slice(&4u16.to_ne_bytes());
    h.extend_from_slice(&0i32.to_ne_bytes());
    h.extend_from_slice(&0u32.to_ne_bytes());
    h.extend_from_slice(&65535u32.to_ne_bytes());
    h.extend_from_slice(&147u32.to_ne_bytes());
    h
}

// ---- a TCP stream of space packets: the units and goals sections ----

/// Each TCP step: `TCP_PACKETS` space packets of `PACKET` bytes (256 MiB), at most `TCP_TIME`.
pub const PACKET: usize = 256;
pub const TCP_PACKETS: u64 = 1 << 20;
pub const TCP_TIME: Duration = Duration::from_secs(15);

/// The 16 MiB the server writes over and over: 4 APIDs x 16,384 packets, so each
/// APID's count runs 0..=16383 once and goes on seamlessly in the next copy.
pub fn stream_block() -> Vec<u8> {
    let n = APIDS as usize * 16384;
    let mut b = Vec::with_capacity(n * PACKET);
    for i in 0..n {
        let apid = 0x100 + (i as u64 % APIDS) as u16;
        let count = ((i as u64 / APIDS) & 0x3FFF) as u16;
        b.extend_from_slice(&apid.to_be_bytes());
        b.extend_from_slice(&(0xC000 | count).to_be_bytes());
        b.extend_from_slice(&((PACKET - 7) as u16).to_be_bytes());
        b.extend_from_slice(&(i as u64).to_be_bytes());
        b.resize(b.len() + PACKET - 14, 0xA5);
    }
    b
}

/// Who takes the TCP stream.
pub enum TcpReceiver<'a> {
    /// bsc (conn_type tcp), with `framing: ccsds_space_packet` and `sequence_check` or without.
    Bsc { framing: bool, seq: bool },
    /// The framing reference (tests/bench/tcp_reference.c), compiled at this path.
    Reference(&'a Path),
}

pub struct TcpOutcome {
    pub packets: u64,
    pub records: u64,
    pub record_bytes: u64,
    pub secs: f64,
    pub cpu_ns: u64,
    /// "ok..." or what was wrong with the file or `/stats`.
    pub check: String,
}

impl TcpOutcome {
    pub fn ok(&self) -> bool {
        self.check.starts_with("ok")
    }
    pub fn ns_per_packet(&self) -> f64 {
        self.cpu_ns as f64 / self.packets.max(1) as f64
    }
}

/// The C framing reference, running: killed when dropped (and by the panic hook).
pub struct Reference {
    child: Child,
    done: std::sync::mpsc::Receiver<String>,
}

impl Reference {
    /// Starts `bin` (see `build_tcp_reference`): it connects to 127.0.0.1:`port`
    /// and writes what it cuts from the stream to `file`.
    pub fn start(bin: &Path, port: u16, file: &Path) -> Reference {
        let mut child = Command::new(bin)
            .args(["127.0.0.1", &port.to_string()])
            .arg(file)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the TCP reference");
        register_pid(child.id());
        let stdout = child.stdout.take().unwrap();
        let (tx, done) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        Reference { child, done }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The records it wrote, once it has said it is done (at most `timeout`);
    /// None if it did not (it printed why on stderr).
    pub fn wait_done(&self, timeout: Duration) -> Option<u64> {
        let line = self.done.recv_timeout(timeout).ok()?;
        line.trim().strip_prefix("done ")?.parse().ok()
    }
}

impl Drop for Reference {
    fn drop(&mut self) {
        drop(self.child.stdin.take()); // its cue to exit
        reap_within(
            &mut self.child,
            Duration::from_secs(5),
            Duration::from_millis(5),
        );
        forget_pid(self.child.id());
    }
}

/// One TCP step: a server of ours on 127.0.0.1 that, once the receiver has
/// connected, writes `TCP_PACKETS` space packets (`stream_block` over and over)
/// in 1 MiB writes, as fast as the receiver takes them (at most `TCP_TIME`), then
/// closes. CPU is the receiver's (/proc/PID/schedstat) from the connection until
/// it has written everything: bsc's files stopped growing, the reference said done.
pub fn run_tcp(
    root: &Path,
    block: &[u8],
    receiver: &TcpReceiver,
    pin: Option<&Pinning>,
) -> TcpOutcome {
    let name = match receiver {
        TcpReceiver::Bsc { framing, seq } => format!("tcp-{framing}-{seq}"),
        TcpReceiver::Reference(_) => "tcp-reference".to_string(),
    };
    let dir = WorkDir::new(root.join(name));
    let (listener, port) = tcp_peer();
    let file = dir.0.join("t.pcap");
    let (bsc, reference) = match receiver {
        TcpReceiver::Bsc { framing, seq } => {
            let mut h = serde_json::json!({"name": "t", "conn_type": "tcp", "address": ["127.0.0.1", port],
                                           "rotate_log": false, "file_name_pattern": "{name}.pcap"});
            if *framing {
                h["framing"] = serde_json::json!({"kind": "ccsds_space_packet"});
            }
            if *seq {
                h["sequence_check"] = serde_json::json!("ccsds_space_packet");
            }
            (Some(Bsc::start(&dir.0, vec![h])), None)
        }
        TcpReceiver::Reference(bin) => (None, Some(Reference::start(bin, port, &file))),
    };
    let pid = bsc
        .as_ref()
        .map_or_else(|| reference.as_ref().unwrap().pid(), |b| b.pid);
    if let Some(p) = pin {
        p.receiver(pid);
    }
    let mut conn = accept_within(&listener, "the receiver");
    drop(listener); // bsc's reconnects after the close are refused
    conn.set_nonblocking(false).unwrap();
    conn.set_write_timeout(Some(Duration::from_secs(1)))
        .unwrap();
    let total = TCP_PACKETS * PACKET as u64;
    let cpu0 = cpu_ns(pid);
    let start = Instant::now();
    let written = on_cpus(pin.map(|p| &p.load[..]), || {
        let mut written = 0u64;
        while written < total {
            // Past the time bound, only finish the packet under way; 10 s
            // later, not even that (the receiver has stopped reading).
            if start.elapsed() > TCP_TIME + Duration::from_secs(10) {
                break;
            }
            let limit = if start.elapsed() > TCP_TIME {
                written.div_ceil(PACKET as u64) * PACKET as u64
            } else {
                total
            };
            if written >= limit {
                break;
            }
            let at = (written % block.len() as u64) as usize;
            let len = (block.len() - at)
                .min(1 << 20)
                .min((limit - written) as usize);
            match conn.write(&block[at..at + len]) {
                Ok(n) => written += n as u64,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => panic!("TCP write: {e}"),
            }
        }
        written
    });
    // The socket buffers hold a few MB of the 256 MiB: the receiver has read nearly all.
    let secs = start.elapsed().as_secs_f64();
    let _ = conn.flush();
    drop(conn);
    let mut problems = Vec::new();
    let mut stats = serde_json::Value::Null;
    let cpu_ns = match (&bsc, &reference) {
        (Some(bsc), _) => {
            settle(std::slice::from_ref(&file));
            let cpu = bsc.cpu_ns().saturating_sub(cpu0);
            stats = bsc.stats();
            cpu
        }
        (None, Some(r)) => {
            if r.wait_done(Duration::from_secs(20)).is_none() {
                problems.push("the reference did not finish (see its message)".to_string());
            }
            cpu_ns(pid).saturating_sub(cpu0)
        }
        (None, None) => unreachable!("one receiver is started above"),
    };
    drop(bsc);
    drop(reference);
    let packets = written / PACKET as u64;
    let rb = read_back(&[file], 6, 0);
    let (framing, seq) = match receiver {
        TcpReceiver::Bsc { framing, seq } => (*framing, *seq),
        TcpReceiver::Reference(_) => (true, false),
    };
    if framing {
        if rb.records != packets {
            problems.push(format!("{} records for {packets} packets", rb.records));
        }
        if rb.bytes != packets * PACKET as u64 {
            problems.push("a record is not one packet".to_string());
        }
    } else if rb.bytes != written {
        problems.push(format!("{} bytes of {written}", rb.bytes));
    }
    if seq {
        match sequence_totals(&stats) {
            Some((units, missing, gaps, dups)) => {
                if units != packets || missing != 0 || gaps != 0 || dups != 0 {
                    problems.push(format!(
                        "/stats sequence: units {units} missing {missing} gaps {gaps} duplicates {dups}"
                    ));
                }
            }
            None => problems.push("no sequence in /stats".to_string()),
        }
    }
    TcpOutcome {
        packets,
        records: rb.records,
        record_bytes: rb.bytes,
        secs,
        cpu_ns,
        check: if problems.is_empty() {
            if seq {
                "ok, /stats 0 missing".into()
            } else {
                "ok".into()
            }
        } else {
            problems.join("; ")
        },
    }
}

/// Compiles tests/bench/tcp_reference.c with the machine's cc (`CC`, default
/// `cc`) at -O2 into `dir`; Err says why not.
pub fn build_tcp_reference(dir: &Path) -> Result<PathBuf, String> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/bench/tcp_reference.c");
    let out = dir.join("tcp_reference");
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".to_string());
    let result = Command::new(&cc)
        .args(["-O2", "-o"])
        .arg(&out)
        .arg(&src)
        .output();
    match result {
        Ok(o) if o.status.success() => Ok(out),
        Ok(o) => Err(format!(
            "{cc} -O2 {} failed: {}",
            src.display(),
            String::from_utf8_lossy(&o.stderr).trim()
        )),
        Err(e) => Err(format!(
            "cannot run {cc}: {e} (install a C compiler or set CC)"
        )),
    }
}
