//! What the sections share: selection by environment, a bsc child that cannot
//! outlive the benchmark, a `sendmmsg` generator, read-back of the PCAP files and
//! cleanup on a panic (a panic hook kills the children and unmounts first, in
//! case the panic does not unwind) and on Ctrl-C or SIGTERM.

use std::fs::File;
use std::io::Write;
use std::net::{TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pcap_file::pcap::PcapReader;

/// bsc's own default `rcvbuf_bytes` (24 MiB): what every receiver here asks for.
pub const RCVBUF: usize = bsc::config::DEFAULT_RCVBUF_BYTES;

/// `BSC_BENCH_SECTION=udp,units,large,rcvbuf`: only these sections (default all).
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
        let http_port = crate::free_tcp_port();
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
            .stderr(crate::log_sink())
            .spawn()
            .expect("start bsc");
        let pid = child.id();
        PIDS.lock().unwrap().push(pid);
        drop(crate::wait_http(http_port, n, &mut child));
        Bsc {
            child,
            pid,
            http_port,
        }
    }

    pub fn cpu_ns(&self) -> u64 {
        crate::cpu_ns(self.pid)
    }

    /// `GET /stats` as JSON (Null if bsc does not answer in 5 s).
    pub fn stats(&self) -> serde_json::Value {
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.http_port)) else {
            return serde_json::Value::Null;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
        let _ = s.write_all(b"GET /stats HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
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
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.child.try_wait().ok().flatten().is_none() {
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        PIDS.lock().unwrap().retain(|p| *p != self.pid);
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
    let mut iovs: Vec<libc::iovec> = bufs
        .iter_mut()
        .map(|b| libc::iovec {
            iov_base: b.as_mut_ptr().cast(),
            iov_len: b.len(),
        })
        .collect();
    // SAFETY: all-zero mmsghdrs, pointed at the iovecs and addresses below.
    let mut msgs: Vec<libc::mmsghdr> = (0..batch).map(|_| unsafe { std::mem::zeroed() }).collect();
    for (m, iov) in msgs.iter_mut().zip(iovs.iter_mut()) {
        m.msg_hdr.msg_iov = iov;
        m.msg_hdr.msg_iovlen = 1;
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
