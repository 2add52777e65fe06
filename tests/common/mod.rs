//! Shared helpers for the black-box tests: start the real `bsc` binary, wait for
//! conditions with generous timeouts, and read its files back with readers that
//! are not bsc's writer (pcap-file's reader and tcpdump).
#![allow(dead_code)] // each test file uses its own subset

pub mod replay;
pub mod veth;

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::net::UdpSocket;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pcap_file::pcap::PcapReader;
use serde_json::{json, Value};

/// How long any wait may take before a test fails (generous: CI is a loaded 2-core box).
pub const PATIENCE: Duration = Duration::from_secs(30);

/// A folder removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::SeqCst);
        let p = std::env::temp_dir().join(format!("bsc-test-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }

    /// A fresh folder and the capture root in it, `<folder>/cap` (not made:
    /// bsc makes it).
    pub fn with_root(tag: &str) -> (TempDir, PathBuf) {
        let dir = TempDir::new(tag);
        let root = dir.0.join("cap");
        (dir, root)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Polls `cond` until it holds or [`PATIENCE`] runs out; panics with `what` then.
pub fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        if start.elapsed() > PATIENCE {
            panic!("timed out after {PATIENCE:?} waiting for: {what}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A free UDP port on 127.0.0.1 (bound and released; good enough on a test box).
pub fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A free TCP port on 127.0.0.1.
pub fn free_tcp_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running bsc process whose stderr lines are collected.
pub struct Bsc {
    pub child: Child,
    log: Arc<Mutex<Log>>,
    /// The test's end of bsc's stderr pipe (owned by the reader thread; open
    /// while `Log::ended` is false).
    stderr_fd: i32,
    /// Reads stderr until bsc exits (and its end of the pipe closes).
    reader: Option<std::thread::JoinHandle<()>>,
    /// Port of its management API (when started through [`Bsc::with_config`]).
    pub http_port: u16,
}

impl Bsc {
    /// Starts `bsc` with these arguments in `cwd` and waits for its "running" line.
    pub fn start(args: &[&str], cwd: &Path) -> Bsc {
        let bsc = Bsc::spawn(args, cwd, &[]);
        bsc.wait_log("running:");
        bsc
    }

    /// Starts `bsc` without waiting for anything.
    pub fn spawn(args: &[&str], cwd: &Path, env: &[(&str, &str)]) -> Bsc {
        Bsc::spawn_program(&[env!("CARGO_BIN_EXE_bsc")], args, cwd, env)
    }

    /// Starts `program[0] program[1..] args` (a runner such as qemu may come first).
    pub fn spawn_program(program: &[&str], args: &[&str], cwd: &Path, env: &[(&str, &str)]) -> Bsc {
        let mut cmd = Command::new(program[0]);
        cmd.args(&program[1..])
            .args(args)
            .current_dir(cwd)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd.env_remove("STATE_DIRECTORY")
            .env_remove("JOURNAL_STREAM");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("start bsc");
        let log = Arc::new(Mutex::new(Log::default()));
        let stderr = child.stderr.take().unwrap();
        let stderr_fd = stderr.as_raw_fd();
        let sink = log.clone();
        let reader = std::thread::spawn(move || Log::collect(stderr, &sink));
        Bsc {
            child,
            log,
            stderr_fd,
            reader: Some(reader),
            http_port: 8080,
        }
    }

    /// Starts bsc on a config file written from `json`, its management API on a
    /// free loopback port unless the config names one.
    pub fn with_config(dir: &Path, json: &serde_json::Value) -> Bsc {
        Bsc::with_config_env(dir, json, &[])
    }

    /// Starts bsc in `dir` on [`config`]`(root, handlers)`.
    pub fn capturing(dir: &Path, root: &Path, handlers: Vec<Value>) -> Bsc {
        Bsc::with_config(dir, &config(root, handlers))
    }

    /// [`Bsc::capturing`] on the driven clock ([`DRIVEN_CLOCK`]).
    pub fn capturing_driven(dir: &Path, root: &Path, handlers: Vec<Value>) -> Bsc {
        Bsc::with_config_env(dir, &config(root, handlers), &[DRIVEN_CLOCK])
    }

    /// [`Bsc::with_config`] with these environment variables set.
    pub fn with_config_env(dir: &Path, json: &serde_json::Value, env: &[(&str, &str)]) -> Bsc {
        let mut json = json.clone();
        let port = match json.pointer("/capture_manager/manager_server/port") {
            Some(p) => p.as_u64().unwrap() as u16,
            None => {
                let port = free_tcp_port();
                let cm = json
                    .as_object_mut()
                    .unwrap()
                    .entry("capture_manager")
                    .or_insert(serde_json::json!({}));
                cm["manager_server"] = serde_json::json!({"host": "127.0.0.1", "port": port});
                port
            }
        };
        let path = write_config(dir, &json);
        let mut bsc = Bsc::spawn(&["--config", path.to_str().unwrap()], dir, env);
        bsc.wait_log("running:");
        bsc.http_port = port;
        bsc
    }

    /// One request to its management API, on a new connection.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        content_type: Option<&str>,
        body: &[u8],
    ) -> HttpResponse {
        http_request(self.http_port, method, path, content_type, body)
    }

    /// `GET path`, expecting JSON.
    pub fn get(&self, path: &str) -> (u16, serde_json::Value) {
        let r = self.request("GET", path, None, b"");
        (r.status, r.json())
    }

    /// A request with an urlencoded form body, expecting JSON.
    pub fn form(&self, method: &str, path: &str, body: &str) -> (u16, serde_json::Value) {
        let r = self.request(
            method,
            path,
            Some("application/x-www-form-urlencoded"),
            body.as_bytes(),
        );
        (r.status, r.json())
    }

    /// `GET /metrics`, expecting 200: the text.
    pub fn metrics(&self) -> String {
        let r = self.request("GET", "/metrics", None, b"");
        assert_eq!(r.status, 200);
        String::from_utf8(r.body).unwrap()
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Every stderr line bsc has written so far: waits (briefly) until the
    /// reader has taken in everything the pipe holds, so a line bsc wrote
    /// before something the test saw (a file made read-only, an answer) is
    /// there even when the reader thread lags on a busy machine.
    pub fn log(&self) -> Vec<String> {
        let start = Instant::now();
        loop {
            let log = self.log.lock().unwrap();
            if log.ended || pipe_holds(self.stderr_fd) == 0 || start.elapsed() > PATIENCE {
                return log.lines.clone();
            }
            drop(log);
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Lines containing `needle`.
    pub fn log_matching(&self, needle: &str) -> Vec<String> {
        self.log()
            .into_iter()
            .filter(|l| l.contains(needle))
            .collect()
    }

    /// Waits until a stderr line contains `needle`, and returns it.
    pub fn wait_log(&self, needle: &str) -> String {
        let start = Instant::now();
        loop {
            if let Some(line) = self.log().into_iter().find(|l| l.contains(needle)) {
                return line;
            }
            if start.elapsed() > PATIENCE {
                panic!("timed out after {PATIENCE:?} waiting for a log line with {needle:?}; log: {:?}", self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends a signal.
    pub fn signal(&self, sig: i32) {
        // SAFETY-free: `kill` from the shell keeps tests free of unsafe code.
        let name = match sig {
            15 => "TERM",
            1 => "HUP",
            2 => "INT",
            9 => "KILL",
            _ => panic!("signal {sig}"),
        };
        let ok = Command::new("kill")
            .args([&format!("-{name}"), &self.pid().to_string()])
            .status()
            .unwrap();
        assert!(ok.success());
    }

    /// Sends a signal by name (`STOP`, `CONT`, ...).
    pub fn signal_named(&self, name: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{name}"), &self.pid().to_string()])
            .status()
            .unwrap();
        assert!(ok.success());
    }

    /// Sends SIGTERM and waits for the exit.
    pub fn stop(mut self) -> ExitStatus {
        self.signal(15);
        self.wait_exit()
    }

    /// Sends SIGTERM, waits for the exit, and returns the status and every log line.
    pub fn stop_with_log(mut self) -> (ExitStatus, Vec<String>) {
        self.signal(15);
        let status = self.wait_exit();
        (status, self.log())
    }

    /// Waits (at most [`PATIENCE`]) for the process to exit.
    pub fn wait_exit(&mut self) -> ExitStatus {
        let mut status = None;
        wait_until("bsc to exit", || {
            status = self.child.try_wait().unwrap();
            status.is_some()
        });
        // Every line bsc wrote is collected once the reader sees the pipe close.
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
        status.unwrap()
    }
}

/// What bsc wrote on stderr, line by line.
#[derive(Default)]
struct Log {
    lines: Vec<String>,
    /// Bytes of a line not ended yet.
    partial: Vec<u8>,
    /// The pipe is closed (bsc and everything it started exited).
    ended: bool,
}

impl Log {
    /// Reads the pipe until it closes. Each read happens under the lock, once
    /// `poll` says there is something to read, so whoever holds the lock and
    /// finds the pipe empty has every byte written so far in `lines`.
    fn collect(mut stderr: std::process::ChildStderr, log: &Mutex<Log>) {
        use std::io::Read;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let mut pfd = libc::pollfd {
                fd: stderr.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd, the fd open (owned by `stderr`).
            if unsafe { libc::poll(&mut pfd, 1, -1) } <= 0 {
                continue; // interrupted: the read below must not block
            }
            let mut log = log.lock().unwrap();
            match stderr.read(&mut buf) {
                Ok(n) if n > 0 => {
                    log.partial.extend_from_slice(&buf[..n]);
                    while let Some(i) = log.partial.iter().position(|&b| b == b'\n') {
                        let line: Vec<u8> = log.partial.drain(..=i).collect();
                        let line = String::from_utf8_lossy(&line[..i]).into_owned();
                        log.lines.push(line);
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                _ => {
                    if !log.partial.is_empty() {
                        let rest = String::from_utf8_lossy(&log.partial).into_owned();
                        log.lines.push(rest);
                        log.partial.clear();
                    }
                    log.ended = true;
                    return;
                }
            }
        }
    }
}

/// Bytes waiting in a pipe (`FIONREAD`).
fn pipe_holds(fd: i32) -> i32 {
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int; a bad fd only makes it fail.
    let rc = unsafe { libc::ioctl(fd, libc::FIONREAD, &mut n) };
    if rc == 0 {
        n
    } else {
        0
    }
}

impl Drop for Bsc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Asserts that a command exited 0; shows its stderr if not.
pub fn assert_success(out: &std::process::Output) {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A config document: the capture root `root` and these handlers.
pub fn config(root: &Path, handlers: Vec<Value>) -> Value {
    json!({"capture_manager": {"root_log_directory": root}, "handlers": handlers})
}

/// A UDP handler `name` on 127.0.0.1:`port`, with the keys of `extra` added
/// (or replacing these).
pub fn udp_handler(name: &str, port: u16, extra: Value) -> Value {
    let mut h = json!({"name": name, "conn_type": "udp", "address": ["127.0.0.1", port]});
    for (k, v) in extra.as_object().unwrap() {
        h[k] = v.clone();
    }
    h
}

/// A `ship` command that fails while `<dir>/down` exists (made here: it starts
/// down) and otherwise appends the path it is handed (`$BSC_FILE`) to
/// `<dir>/shipped`: (the command, `down`, `shipped`).
pub fn ship_unless_down(dir: &Path) -> (Value, PathBuf, PathBuf) {
    let down = dir.join("down");
    let shipped = dir.join("shipped");
    std::fs::write(&down, "").unwrap();
    let script = format!(
        "test -e '{}' && exit 1; echo \"$BSC_FILE\" >> '{}'",
        down.display(),
        shipped.display()
    );
    (json!(["/bin/sh", "-c", script, "sh"]), down, shipped)
}

/// The repository (where Cargo.toml is).
pub fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// `bsc check --config config` run in `dir`: its exit code and what it wrote
/// (stdout, then stderr).
pub fn bsc_check(dir: &Path, config: impl AsRef<std::ffi::OsStr>) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_bsc"))
        .args(["check", "--config"])
        .arg(config)
        .current_dir(dir)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), text)
}

/// The value of the first sample of `name` (a series with labels) in a
/// `/metrics` answer.
pub fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(&format!("{name}{{")))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {text}"))
}

/// A listening TCP peer on a free port of 127.0.0.1, and that port.
pub fn tcp_peer() -> (std::net::TcpListener, u16) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    (listener, port)
}

/// Headless Chromium's path, or a failure that says how to get it.
pub fn chromium() -> PathBuf {
    let out = Command::new("sh")
        .args(["-c", "command -v chromium || command -v chromium-browser"])
        .output()
        .unwrap();
    let path = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(
        out.status.success() && !path.is_empty(),
        "headless Chromium is needed: apt-get install chromium (tests/deps.sh installs it)"
    );
    PathBuf::from(path)
}

/// Headless Chromium on `url` with a fresh profile in `profile`, nothing but
/// loopback, then `flags`; killed after a minute. What it printed.
pub fn headless_chromium(profile: &Path, flags: &[&str], url: &str) -> std::process::Output {
    let mut child = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(flags)
        .arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start chromium");
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromium did not finish within 60 s on {url}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

/// A `ship` command that appends the path it is handed (`$1`) to
/// `<dir>/shipped`: (the command, `shipped`).
pub fn ship_to_list(dir: &Path) -> (Value, PathBuf) {
    let shipped = dir.join("shipped");
    let script = format!("echo \"$1\" >> '{}'", shipped.display());
    (json!(["/bin/sh", "-c", script, "sh"]), shipped)
}

/// bsc's journal under the capture root `root`.
pub fn journal_of(root: &Path) -> PathBuf {
    root.join(".bsc/files.jsonl")
}

/// The `closed` lines of the journal under `root`: files bsc has closed and
/// journaled as closed.
pub fn closed_lines(root: &Path) -> usize {
    std::fs::read_to_string(journal_of(root))
        .unwrap_or_default()
        .lines()
        .filter(|l| l.starts_with("{\"closed\""))
        .count()
}

/// The lines of a text file (none if it does not exist yet).
pub fn lines_of(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

/// The permission bits of `path` itself (a link is not followed).
pub fn mode_of(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::symlink_metadata(path)
        .unwrap()
        .permissions()
        .mode()
        & 0o7777
}

/// Percent-encodes everything but the unreserved characters (RFC 3986).
pub fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Deterministic pseudo-random numbers (xorshift64): the same seed, the same test.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A number below `n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

/// Writes `json` as `bsc.json` in `dir`.
pub fn write_config(dir: &Path, json: &serde_json::Value) -> PathBuf {
    let path = dir.join("bsc.json");
    std::fs::write(&path, serde_json::to_vec_pretty(json).unwrap()).unwrap();
    path
}

/// A tmpfs of `mib` MiB mounted on a fresh folder, unmounted when dropped.
pub struct SmallFs(pub PathBuf);

impl SmallFs {
    pub fn new(dir: &Path, mib: u32) -> SmallFs {
        let mnt = dir.join("small");
        std::fs::create_dir_all(&mnt).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
            .arg(&mnt)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "mount (needs root): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        SmallFs(mnt)
    }

    pub fn free(&self) -> u64 {
        let out = Command::new("df")
            .args(["-B1", "--output=avail"])
            .arg(&self.0)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .nth(1)
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).output();
    }
}

/// A record as an independent reader sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub ts_us: u64,
    /// The timestamp to the nanosecond (a microsecond file's times 1000).
    pub ts_ns: u64,
    pub orig_len: u32,
    pub data: Vec<u8>,
}

/// A whole PCAP file read with pcap-file's reader: (link type, snaplen, records).
/// Panics if any record is torn or malformed.
pub fn read_pcap(path: &Path) -> (u32, u32, Vec<Record>) {
    let mut r = PcapReader::new(File::open(path).unwrap())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let h = r.header();
    let mut out = Vec::new();
    while let Some(p) = r.next_packet() {
        let p = p.unwrap_or_else(|e| panic!("{}: record {}: {e}", path.display(), out.len()));
        out.push(Record {
            ts_us: p.timestamp.as_micros() as u64,
            ts_ns: p.timestamp.as_nanos() as u64,
            orig_len: p.orig_len,
            data: p.data.into_owned(),
        });
    }
    (h.datalink.into(), h.snaplen, out)
}

/// The whole records a file holds so far: for polling a file bsc is still
/// writing, where a reader can meet the last record half copied (the kernel
/// grows a file page by page within one write). Stops at a torn or malformed
/// tail; empty if the file or its header is not there yet. Check a finished
/// file with [`read_pcap`], which tolerates nothing.
pub fn records_so_far(path: &Path) -> Vec<Record> {
    let Ok(f) = File::open(path) else {
        return Vec::new();
    };
    let Ok(mut r) = PcapReader::new(f) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    while let Some(Ok(p)) = r.next_packet() {
        out.push(Record {
            ts_us: p.timestamp.as_micros() as u64,
            ts_ns: p.timestamp.as_nanos() as u64,
            orig_len: p.orig_len,
            data: p.data.into_owned(),
        });
    }
    out
}

/// The payloads of a whole PCAP file's records ([`read_pcap`]).
pub fn payloads_of(path: &Path) -> Vec<Vec<u8>> {
    read_pcap(path).2.into_iter().map(|r| r.data).collect()
}

/// The first record of a file, if it has a whole header and a whole first
/// record yet (a file a `kill -9` caught being created or written may not).
pub fn first_record(path: &Path) -> Option<Record> {
    let mut r = PcapReader::new(File::open(path).ok()?).ok()?;
    let p = r.next_packet()?.ok()?;
    Some(Record {
        ts_us: p.timestamp.as_micros() as u64,
        ts_ns: p.timestamp.as_nanos() as u64,
        orig_len: p.orig_len,
        data: p.data.into_owned(),
    })
}

/// Records in a file, or 0 if it does not exist or is not readable yet.
pub fn count_records(path: &Path) -> usize {
    let Ok(f) = File::open(path) else { return 0 };
    let Ok(mut r) = PcapReader::new(f) else {
        return 0;
    };
    let mut n = 0;
    while let Some(Ok(_)) = r.next_raw_packet() {
        n += 1;
    }
    n
}

/// Asserts that promtool (`promtool check metrics`) accepts a /metrics answer.
pub fn promtool_accepts(text: &str) {
    use std::io::Write;
    let mut check = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool is needed: apt-get install prometheus (make test installs it)");
    check
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = check.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// What tcpdump makes of a file: (records it printed, its stderr).
pub fn tcpdump(path: &Path) -> (usize, String) {
    let out = Command::new("tcpdump")
        .args(["-n", "-r"])
        .arg(path)
        .output()
        .expect("tcpdump is needed: apt-get install tcpdump (make test installs it)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let records = stdout
        .lines()
        .filter(|l| !l.starts_with(char::is_whitespace))
        .count();
    (records, String::from_utf8_lossy(&out.stderr).into_owned())
}

/// Every `.pcap` file under `dir`, sorted by name; not those in bsc's state
/// folder `.bsc` (hard links of closed files waiting for a hook or to ship).
pub fn pcap_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.file_name().is_some_and(|n| n == ".bsc") {
            continue;
        }
        if p.is_dir() {
            out.extend(pcap_files(&p));
        } else if p.extension().is_some_and(|x| x == "pcap") {
            out.push(p);
        }
    }
    out.sort();
    out
}

/// A payload carrying sequence number `seq`: 8 bytes big-endian, then `seq % 97`
/// bytes of a pattern derived from it, so lengths and contents vary.
pub fn seq_payload(seq: u64) -> Vec<u8> {
    let mut p = seq.to_be_bytes().to_vec();
    p.extend((0..seq % 97).map(|i| (seq as u8).wrapping_mul(31).wrapping_add(i as u8)));
    p
}

/// The sequence number in a payload made by [`seq_payload`].
pub fn seq_of(payload: &[u8]) -> u64 {
    u64::from_be_bytes(payload[..8].try_into().unwrap())
}

/// A UDP socket for sending to 127.0.0.1:`port`.
pub fn sender(port: u16) -> UdpSocket {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.connect(("127.0.0.1", port)).unwrap();
    s
}

/// Sends datagrams `from..from + n` ([`seq_payload`]) to 127.0.0.1:`port`,
/// `gap` apart.
pub fn send_paced(port: u16, from: u64, n: u64, gap: Duration) {
    let s = sender(port);
    for i in from..from + n {
        s.send(&seq_payload(i)).unwrap();
        std::thread::sleep(gap);
    }
}

/// Whether another program could bind this UDP port on 127.0.0.1 right now.
pub fn udp_port_is_free(port: u16) -> bool {
    UdpSocket::bind(("127.0.0.1", port)).is_ok()
}

/// The UTC instant at the start of a bsc log line (`2026-11-28T08:32:01.001342Z ...`),
/// as seconds since the epoch.
pub fn log_time(line: &str) -> f64 {
    let ts = line.split_whitespace().next().unwrap();
    let out = Command::new("date")
        .args(["-u", "-d", ts, "+%s.%N"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

/// An HTTP response as a client sees it.
#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    /// Header names lower-cased.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
}

/// Sends one request on a new connection to 127.0.0.1:`port` and reads the answer.
pub fn http_request(
    port: u16,
    method: &str,
    path: &str,
    content_type: Option<&str>,
    body: &[u8],
) -> HttpResponse {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n");
    if let Some(ct) = content_type {
        req.push_str(&format!("Content-Type: {ct}\r\n"));
    }
    if !body.is_empty() || method == "POST" {
        req.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    req.push_str("\r\n");
    let mut bytes = req.into_bytes();
    bytes.extend_from_slice(body);
    std::io::Write::write_all(&mut s, &bytes).unwrap();
    let mut reader = BufReader::new(s);
    read_response(&mut reader).expect("a whole response")
}

/// Reads one response (framed by Content-Length, or chunked) from a stream.
pub fn read_response(reader: &mut impl BufRead) -> Option<HttpResponse> {
    let mut line = String::new();
    if reader.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let status: u16 = line.split_whitespace().nth(1)?.parse().ok()?;
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        reader.read_line(&mut h).ok()?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (k, v) = h.split_once(':')?;
        headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
    }
    let chunked = headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"));
    let body = if chunked {
        read_chunked(reader)?
    } else {
        let len: usize = headers
            .iter()
            .find(|(k, _)| k == "content-length")
            .map_or(0, |(_, v)| v.parse().unwrap());
        let mut body = vec![0; len];
        std::io::Read::read_exact(reader, &mut body).ok()?;
        body
    };
    Some(HttpResponse {
        status,
        headers,
        body,
    })
}

/// Reads a chunked body to its last chunk (bounded: at most 1 GiB of chunks).
fn read_chunked(reader: &mut impl BufRead) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    while body.len() < 1 << 30 {
        let mut line = String::new();
        reader.read_line(&mut line).ok()?;
        let size = usize::from_str_radix(line.trim().split(';').next()?, 16).ok()?;
        let mut rest = vec![0; size + 2];
        std::io::Read::read_exact(reader, &mut rest).ok()?;
        assert_eq!(&rest[size..], b"\r\n", "a chunk ends where its size says");
        if size == 0 {
            return Some(body);
        }
        body.extend_from_slice(&rest[..size]);
    }
    None
}

/// The `/stats` entry of the (first) handler on 127.0.0.1:`port`.
pub fn stats_of(bsc: &Bsc, port: u16) -> serde_json::Value {
    bsc.get("/stats").1[format!("['127.0.0.1', {port}]")][0].clone()
}

/// The `ship` block of that handler's `/stats` entry.
pub fn ship_of(bsc: &Bsc, port: u16) -> serde_json::Value {
    stats_of(bsc, port)["ship"].clone()
}

/// Sends datagram `i` ([`seq_payload`]) to 127.0.0.1:`port` and waits until
/// the handler there counted `i + 1`.
pub fn send(bsc: &Bsc, port: u16, i: u64) {
    sender(port).send(&seq_payload(i)).unwrap();
    wait_until(&format!("{} packets", i + 1), || {
        stats_of(bsc, port)["packets"].as_u64() >= Some(i + 1)
    });
}

/// AIT's script `name`.py in the virtual environment tests/deps.sh makes, and
/// its Python.
pub fn ait_script(name: &str) -> (PathBuf, PathBuf) {
    let python = ait_python();
    let venv = python
        .parent()
        .and_then(Path::parent)
        .unwrap()
        .to_path_buf();
    let out = Command::new("find")
        .arg(&venv)
        .args(["-name", &format!("{name}.py"), "-path", "*ait/core/bin/*"])
        .output()
        .unwrap();
    let found = String::from_utf8_lossy(&out.stdout);
    let script = found.lines().next().unwrap_or_else(|| {
        panic!(
            "{name}.py not found in {}: reinstall with tests/deps.sh",
            venv.display()
        )
    });
    (python, PathBuf::from(script))
}

/// The Python of the virtual environment `tests/deps.sh` installs ait-core
/// into (`target/ait-venv`).
pub fn ait_python() -> PathBuf {
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/ait-venv");
    let python = venv.join("bin/python3");
    assert!(
        python.exists(),
        "AIT's client is needed: run `bash tests/deps.sh` (make test does), which installs ait-core into {}",
        venv.display()
    );
    python
}

/// The environment that starts a test build of bsc on its driven clock: the
/// system's clocks plus an offset that [`advance_clock`] and [`set_clock`]
/// move (wall clock, timers and the kernel's receive times alike). Pass it to
/// [`Bsc::with_config_env`]. Only test builds (debug assertions) know it.
pub const DRIVEN_CLOCK: (&str, &str) = ("BSC_DEBUG_CLOCK", "1");

/// Moves the driven clock of the bsc whose API is on `port` `secs` forward
/// (`POST /debug/clock advance=SECS`). Timers that came due (rotation,
/// back-offs, the once-a-second tick) run in the turn of bsc's loop that
/// answered, just after the answer is written: wait for what they do. Returns
/// bsc's new time in microseconds since the epoch.
pub fn advance_clock(port: u16, secs: f64) -> i64 {
    move_clock(port, &format!("advance={secs:.6}"))
}

/// Polls `cond` like [`wait_until`], moving the driven clock of the bsc on
/// `port` `step` seconds forward after each poll that finds it false: for
/// what happens after a back-off, a timeout or a period of bsc's clock.
pub fn wait_advancing(port: u16, step: f64, what: &str, mut cond: impl FnMut() -> bool) {
    wait_until(what, || {
        cond() || {
            advance_clock(port, step);
            false
        }
    });
}

/// Paces a sender by bsc's driven clock: waits until the (first) handler on
/// 127.0.0.1:`port` counted `sent` units, then moves the clock `secs` forward,
/// as if the sender had paused that long (the once-a-second work, such as the
/// disk budget's look at the free space, comes with the clock).
pub fn paced(bsc: &Bsc, port: u16, sent: u32, secs: f64) {
    wait_until(&format!("{sent} units counted"), || {
        stats_of(bsc, port)["packets"].as_u64() >= Some(u64::from(sent))
    });
    advance_clock(bsc.http_port, secs);
}

/// Sets the driven clock of the bsc on `port` to `rfc3339` (UTC, `...Z`): the
/// monotonic clock moves as far forward (not back). Returns bsc's new time in
/// microseconds since the epoch.
pub fn set_clock(port: u16, rfc3339: &str) -> i64 {
    move_clock(port, &format!("set={rfc3339}"))
}

fn move_clock(port: u16, form: &str) -> i64 {
    if !cfg!(debug_assertions) {
        panic!("the driven clock exists only in test builds (debug assertions): run the tests without --release");
    }
    let r = http_request(
        port,
        "POST",
        "/debug/clock",
        Some("application/x-www-form-urlencoded"),
        form.as_bytes(),
    );
    assert_eq!(
        r.status,
        200,
        "POST /debug/clock {form}: {}",
        String::from_utf8_lossy(&r.body)
    );
    r.json()["unix_micros"].as_i64().unwrap()
}
