//! `GET /<name>/data` and `bsc extract`: the records of a time window, checked
//! record for record against Wireshark's `editcap -A/-B` cut of the same files.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::*;
use serde_json::json;

/// A window's ends as bsc and editcap both read them (RFC 3339, UTC).
fn at(micros: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(micros as i128 * 1000).unwrap();
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
        t.year(),
        t.month() as u8,
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.microsecond()
    )
}

/// editcap's cut of `files` (merged in time order by mergecap) to `from..to`.
fn editcap_cut(dir: &Path, files: &[PathBuf], from: Option<i64>, to: Option<i64>) -> Vec<Record> {
    let merged = dir.join("merged.pcap");
    let cut = dir.join("cut.pcap");
    let mut m = Command::new("mergecap");
    m.arg("-F")
        .arg("nsecpcap")
        .arg("-w")
        .arg(&merged)
        .args(files);
    assert_success(&m.output().unwrap());
    let mut e = Command::new("editcap");
    e.arg("-F").arg("nsecpcap");
    if let Some(f) = from {
        e.arg("-A").arg(at(f));
    }
    if let Some(t) = to {
        e.arg("-B").arg(at(t));
    }
    assert_success(&e.arg(&merged).arg(&cut).output().unwrap());
    read_pcap(&cut).2
}

/// `GET /name/data?query` saved to a file and read back with pcap-file.
fn extract(bsc: &Bsc, dir: &Path, name: &str, query: &str) -> (u32, Vec<Record>) {
    let r = bsc.request("GET", &format!("/{name}/data?{query}"), None, b"");
    assert_eq!(
        r.status,
        200,
        "{query}: {}",
        String::from_utf8_lossy(&r.body)
    );
    assert_eq!(
        r.header("content-type"),
        Some("application/vnd.tcpdump.pcap")
    );
    let path = dir.join("answer.pcap");
    std::fs::write(&path, &r.body).unwrap();
    let (link, _, records) = read_pcap(&path);
    (link, records)
}

fn query(from: Option<i64>, to: Option<i64>) -> String {
    let mut q = Vec::new();
    if let Some(f) = from {
        q.push(format!("from={}", enc(&at(f))));
    }
    if let Some(t) = to {
        q.push(format!("to={}", enc(&at(t))));
    }
    q.join("&")
}

/// A handler rotating every minute on the driven clock, fed `groups` groups of
/// 30 datagrams 25 s of bsc's time apart: files across rotations, the last open.
fn capture(dir: &Path, name: &str, port: u16, groups: u64) -> Bsc {
    let root = dir.join("cap");
    let h = udp_handler(
        name,
        port,
        json!({"rotate_log_index": "minute", "file_name_pattern": "%Y%m%dT%H%M%S-{name}.pcap",
               "timestamp_precision": "ns"}),
    );
    let bsc = Bsc::with_config_env(dir, &config(&root, vec![h]), &[DRIVEN_CLOCK]);
    for g in 0..groups {
        let s = sender(port);
        for i in g * 30..(g + 1) * 30 {
            s.send(&seq_payload(i)).unwrap();
        }
        paced(&bsc, port, ((g + 1) * 30) as u32, 25.0);
    }
    bsc
}

#[test]
fn windows_match_editcaps_cut_across_rotations_the_open_file_and_a_restart() {
    let dir = TempDir::new("extract-windows");
    let port = free_udp_port();
    let bsc = capture(dir.path(), "tlm", port, 6);
    let root = dir.path().join("cap");
    let files = pcap_files(&root);
    assert!(files.len() >= 3, "rotations made {files:?}");
    let all: Vec<Record> = files.iter().flat_map(|f| records_so_far(f)).collect();
    assert_eq!(all.len(), 180);
    let ts = |i: usize| (all[i].ts_ns / 1000) as i64;
    let windows = [
        (None, None),
        (Some(ts(10)), Some(ts(20))),      // inside one file
        (Some(ts(15)), Some(ts(95))),      // across rotations
        (Some(ts(40) + 1), Some(ts(179))), // ends inside the open file
        (Some(ts(170)), None),             // the open file, open end
        (None, Some(ts(31))),              // open start
        (Some(ts(29)), Some(ts(29))),      // empty
        (Some(ts(179) + 1_000_000), None), // after everything
    ];
    let check = |bsc: &Bsc| {
        for (from, to) in windows {
            let (link, got) = extract(bsc, dir.path(), "tlm", &query(from, to));
            assert_eq!(link, 147, "user0");
            let want = editcap_cut(dir.path(), &files, from, to);
            assert_eq!(got, want, "window {from:?}..{to:?}");
        }
    };
    check(&bsc);
    // Unix seconds with a fraction say the same.
    let (_, by_secs) = extract(
        &bsc,
        dir.path(),
        "tlm",
        &format!(
            "from={}.{:06}&to={}.{:06}",
            ts(15) / 1_000_000,
            ts(15) % 1_000_000,
            ts(95) / 1_000_000,
            ts(95) % 1_000_000
        ),
    );
    assert_eq!(
        by_secs,
        editcap_cut(dir.path(), &files, Some(ts(15)), Some(ts(95)))
    );
    // After a restart the files come from the journal.
    bsc.stop();
    let bsc = Bsc::with_config_env(
        dir.path(),
        &config(
            &root,
            vec![udp_handler(
                "tlm",
                port,
                json!({"rotate_log_index": "minute", "file_name_pattern": "%Y%m%dT%H%M%S-{name}.pcap", "timestamp_precision": "ns"}),
            )],
        ),
        &[DRIVEN_CLOCK],
    );
    check(&bsc);
    // The client says the same, from the server and from the files.
    let out = dir.path().join("client.pcap");
    let (from, to) = (at(ts(15)), at(ts(95)));
    let o = Command::new(env!("CARGO_BIN_EXE_bsc"))
        .args(["extract", "tlm", "--from", &from, "--to", &to, "-o"])
        .arg(&out)
        .args(["--server", &format!("127.0.0.1:{}", bsc.http_port)])
        .output()
        .unwrap();
    assert_success(&o);
    let want = editcap_cut(dir.path(), &files, Some(ts(15)), Some(ts(95)));
    assert_eq!(read_pcap(&out).2, want);
    let out = dir.path().join("client-local.pcap");
    let o = Command::new(env!("CARGO_BIN_EXE_bsc"))
        .args(["extract", "--from", &from, "--to", &to, "-o"])
        .arg(&out)
        .args(files.iter().rev())
        .output()
        .unwrap();
    assert_success(&o);
    assert_eq!(read_pcap(&out).2, want, "local files, given out of order");
    // To a pipe: stdout.
    let o = Command::new(env!("CARGO_BIN_EXE_bsc"))
        .args(["extract", "--from", &from, "--to", &to])
        .args(&files)
        .output()
        .unwrap();
    assert_success(&o);
    std::fs::write(&out, &o.stdout).unwrap();
    assert_eq!(read_pcap(&out).2, want);
    // A stopped handler's files are still in the journal.
    assert_eq!(bsc.request("DELETE", "/tlm/stop", None, b"").status, 200);
    let (_, got) = extract(&bsc, dir.path(), "tlm", &query(Some(ts(15)), Some(ts(95))));
    assert_eq!(got, want, "stopped handler");
    bsc.stop();
}

/// A space packet of APID `apid` carrying `seq`.
fn space_packet(apid: u16, seq: u64) -> Vec<u8> {
    let mut p = vec![(apid >> 8) as u8 & 0x07, apid as u8, 0xC0, 0, 0, 7];
    p.extend_from_slice(&seq.to_be_bytes());
    p
}

#[test]
fn filters_keep_the_asked_apids_of_the_window() {
    let dir = TempDir::new("extract-filters");
    let port = free_udp_port();
    let root = dir.path().join("cap");
    let bsc = Bsc::capturing(dir.path(), &root, vec![udp_handler("sp", port, json!({}))]);
    let s = sender(port);
    for i in 0..60u64 {
        s.send(&space_packet(0x100 + (i % 3) as u16, i)).unwrap();
    }
    wait_until("60 records written", || {
        pcap_files(&root)
            .iter()
            .map(|f| records_so_far(f).len())
            .sum::<usize>()
            == 60
    });
    let r = bsc.request("GET", "/sp/data?apid=0x100,258", None, b"");
    assert_eq!(r.status, 200);
    let path = dir.path().join("a.pcap");
    std::fs::write(&path, &r.body).unwrap();
    let got: Vec<u64> = read_pcap(&path)
        .2
        .iter()
        .map(|r| u64::from_be_bytes(r.data[6..14].try_into().unwrap()))
        .collect();
    let want: Vec<u64> = (0..60).filter(|i| i % 3 != 1).collect();
    assert_eq!(got, want);
    // Not a TM frame of VC 7: nothing (and a valid empty pcap).
    let r = bsc.request("GET", "/sp/data?vcid=7", None, b"");
    std::fs::write(&path, &r.body).unwrap();
    assert_eq!(read_pcap(&path).2.len(), 0);
    bsc.stop();
}

#[test]
fn hostile_queries_get_a_4xx_naming_the_parameter_and_bsc_keeps_running() {
    let dir = TempDir::new("extract-hostile");
    let port = free_udp_port();
    let root = dir.path().join("cap");
    let bsc = Bsc::capturing(dir.path(), &root, vec![udp_handler("tlm", port, json!({}))]);
    sender(port).send(b"x").unwrap();
    for (q, status, names) in [
        ("from=yesterday", 400, "from"),
        ("to=2026-13-01T00:00:00Z", 400, "to"),
        ("from=2&to=1", 400, "from"),
        ("from=99999999999999999999999", 400, "from"),
        ("to=-5", 400, "to"),
        ("from=1e9", 400, "from"),
        ("from=1&from=2", 400, "from"),
        ("apid=0x800", 400, "apid"),
        ("apid=", 400, "apid"),
        ("apid=1,,2", 400, "apid"),
        ("vcid=8", 400, "vcid"),
        ("port=70000", 400, "port"),
        ("port=1", 404, "port"),
        ("frm=1", 400, "frm"),
        ("from=%ZZ", 400, "query string"),
    ] {
        let r = bsc.request("GET", &format!("/tlm/data?{q}"), None, b"");
        assert_eq!(
            r.status,
            status,
            "{q}: {}",
            String::from_utf8_lossy(&r.body)
        );
        let error = r.json()["error"].as_str().unwrap().to_string();
        assert!(error.contains(names), "{q}: {error}");
    }
    for path in ["/nobody/data", "/..%2F..%2Fetc/data", "/a%2Fb/data"] {
        let r = bsc.request("GET", path, None, b"");
        assert_eq!(r.status, 404, "{path}");
    }
    assert_eq!(bsc.request("POST", "/tlm/data", None, b"").status, 405);
    assert_eq!(bsc.get("/health").0, 200);
    bsc.stop();
}

#[test]
fn the_route_needs_the_token_and_a_local_host() {
    let dir = TempDir::new("extract-auth");
    let port = free_udp_port();
    let root = dir.path().join("cap");
    let mut cfg = config(&root, vec![udp_handler("tlm", port, json!({}))]);
    let http = free_tcp_port();
    cfg["capture_manager"]["manager_server"] =
        json!({"host": "127.0.0.1", "port": http, "token": "s3cret"});
    let bsc = Bsc::with_config(dir.path(), &cfg);
    let raw = |head: &str| {
        let mut s = TcpStream::connect(("127.0.0.1", http)).unwrap();
        s.write_all(
            format!("GET /tlm/data HTTP/1.1\r\nConnection: close\r\n{head}\r\n").as_bytes(),
        )
        .unwrap();
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        String::from_utf8_lossy(&out).into_owned()
    };
    assert!(raw("Host: 127.0.0.1\r\n").starts_with("HTTP/1.1 401"));
    assert!(
        raw("Host: evil.example\r\nAuthorization: Bearer s3cret\r\n").starts_with("HTTP/1.1 421")
    );
    assert!(raw(
        "Host: 127.0.0.1\r\nOrigin: http://evil.example\r\nAuthorization: Bearer s3cret\r\n"
    )
    .starts_with("HTTP/1.1 403"));
    assert!(raw("Host: 127.0.0.1\r\nAuthorization: Bearer s3cret\r\n").starts_with("HTTP/1.1 200"));
    bsc.stop();
}

#[test]
fn several_handlers_of_a_name_need_a_port() {
    let dir = TempDir::new("extract-several");
    let (p1, p2) = (free_udp_port(), free_udp_port());
    let root = dir.path().join("cap");
    let bsc = Bsc::capturing(
        dir.path(),
        &root,
        vec![
            udp_handler("tlm", p1, json!({"path": "a"})),
            udp_handler("tlm", p2, json!({"path": "b"})),
        ],
    );
    sender(p1).send(b"one").unwrap();
    sender(p2).send(b"two").unwrap();
    wait_until("both written", || {
        pcap_files(&root)
            .iter()
            .map(|f| records_so_far(f).len())
            .sum::<usize>()
            == 2
    });
    let r = bsc.request("GET", "/tlm/data", None, b"");
    assert_eq!(r.status, 409);
    assert!(r.json()["error"].as_str().unwrap().contains("port="));
    let (_, got) = extract(&bsc, dir.path(), "tlm", &format!("port={p2}"));
    assert_eq!(
        got.iter().map(|r| r.data.clone()).collect::<Vec<_>>(),
        vec![b"two".to_vec()]
    );
    bsc.stop();
}

#[test]
fn a_slow_reader_or_one_that_leaves_midway_does_not_stop_capture() {
    let dir = TempDir::new("extract-slow");
    let port = free_udp_port();
    let root = dir.path().join("cap");
    let bsc = Bsc::capturing(dir.path(), &root, vec![udp_handler("tlm", port, json!({}))]);
    let s = sender(port);
    let payload = vec![7u8; 1000];
    for _ in 0..4000 {
        s.send(&payload).unwrap();
    }
    wait_until("4000 records", || {
        pcap_files(&root)
            .iter()
            .map(|f| records_so_far(f).len())
            .sum::<usize>()
            == 4000
    });
    // One reads a little and stops reading; one leaves midway.
    let ask = || {
        let mut c = TcpStream::connect(("127.0.0.1", bsc.http_port)).unwrap();
        c.write_all(b"GET /tlm/data HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            .unwrap();
        let mut first = [0u8; 1024];
        c.read_exact(&mut first).unwrap();
        c
    };
    let slow = ask();
    drop(ask());
    for i in 0..100u64 {
        s.send(&seq_payload(i)).unwrap();
    }
    wait_until("100 more records", || {
        pcap_files(&root)
            .iter()
            .map(|f| records_so_far(f).len())
            .sum::<usize>()
            == 4100
    });
    assert_eq!(bsc.get("/health").0, 200);
    // The slow one still gets the whole answer: 4000 records, as asked then.
    let mut slow = slow;
    slow.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut rest = Vec::new();
    let mut buf = [0u8; 4096];
    while !rest.ends_with(b"0\r\n\r\n") {
        let n = slow.read(&mut buf).unwrap();
        assert!(n > 0, "the answer ended early");
        rest.extend_from_slice(&buf[..n]);
    }
    assert_eq!(stats_of(&bsc, port)["packets"].as_u64(), Some(4100));
    bsc.stop();
}

/// Sends `n` datagrams of `len` bytes (the sequence number first) to `port`,
/// waiting for bsc to have counted each thousand (nothing lost to the burst).
fn send_counted(bsc: &Bsc, port: u16, from: u64, n: u64, len: usize) {
    let s = sender(port);
    for i in from..from + n {
        let mut p = seq_payload(i);
        p.resize(len, 0xA5);
        s.send(&p).unwrap();
        if (i + 1) % 1000 == 0 {
            wait_until("the datagrams counted", || {
                stats_of(bsc, port)["packets"].as_u64() >= Some(i + 1)
            });
        }
    }
}

#[test]
fn windows_inside_long_files_match_with_the_index_noted_and_rebuilt() {
    let dir = TempDir::new("extract-long");
    let port = free_udp_port();
    let root = dir.path().join("cap");
    let handler = || udp_handler("tlm", port, json!({"rotate_max_bytes": "3MB"}));
    let bsc = Bsc::capturing(dir.path(), &root, vec![handler()]);
    send_counted(&bsc, port, 0, 8000, 1000);
    wait_until("8000 records written", || {
        pcap_files(&root)
            .iter()
            .map(|f| records_so_far(f).len())
            .sum::<usize>()
            == 8000
    });
    let files = pcap_files(&root);
    assert!(files.len() >= 3, "{files:?}");
    let mut all: Vec<Record> = files.iter().flat_map(|f| records_so_far(f)).collect();
    all.sort_by_key(|r| r.ts_ns);
    let ts = |i: usize| all[i].ts_us as i64;
    let windows = [
        (Some(ts(1500)), Some(ts(1560))),
        (Some(ts(2990)), Some(ts(3100))),
        (Some(ts(4000)), Some(ts(7999))),
        (Some(ts(7990)), None),
        (None, Some(ts(10))),
    ];
    let check = |bsc: &Bsc| {
        for (from, to) in windows {
            let (_, got) = extract(bsc, dir.path(), "tlm", &query(from, to));
            assert_eq!(
                got,
                editcap_cut(dir.path(), &files, from, to),
                "window {from:?}..{to:?}"
            );
        }
    };
    check(&bsc);
    bsc.stop();
    // After a restart: the first extract reads each file whole and keeps its
    // index; the second uses it.
    let bsc = Bsc::capturing(dir.path(), &root, vec![handler()]);
    check(&bsc);
    check(&bsc);
    bsc.stop();
}

#[test]
fn a_file_deleted_by_retention_midway_is_left_out_and_the_answer_stays_whole() {
    let dir = TempDir::new("extract-retention");
    let port = free_udp_port();
    let root = dir.path().join("cap");
    let bsc = Bsc::capturing(
        dir.path(),
        &root,
        vec![udp_handler(
            "tlm",
            port,
            json!({"rotate_max_bytes": "1MB", "max_files": 40}),
        )],
    );
    send_counted(&bsc, port, 0, 30_000, 1000);
    // A client whose receive buffer is small reads the first bytes, then
    // nothing while retention deletes the oldest files.
    let sock = socket_with_small_buffer(bsc.http_port);
    let mut c = sock;
    c.write_all(b"GET /tlm/data HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .unwrap();
    let mut first = [0u8; 1024];
    c.read_exact(&mut first).unwrap();
    send_counted(&bsc, port, 30_000, 45_000, 1000);
    let mut rest = first.to_vec();
    c.read_to_end(&mut rest).unwrap();
    bsc.wait_log("left out");
    let body = rest
        .split_at(rest.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4)
        .1;
    let path = dir.path().join("answer.pcap");
    std::fs::write(&path, body).unwrap();
    let seqs: Vec<u64> = read_pcap(&path).2.iter().map(|r| seq_of(&r.data)).collect();
    assert!(
        !seqs.is_empty() && seqs.len() < 30_000,
        "{} records",
        seqs.len()
    );
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "in order, none twice");
    assert_eq!(seqs[0], 0, "the first file was being read");
    assert_eq!(stats_of(&bsc, port)["packets"].as_u64(), Some(75_000));
    bsc.stop();
}

/// A connection to 127.0.0.1:`port` with a 4 KiB receive buffer.
fn socket_with_small_buffer(port: u16) -> TcpStream {
    use std::os::fd::FromRawFd;
    // SAFETY: a new socket, its descriptor owned by the TcpStream made from it.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0);
        let size: libc::c_int = 4096;
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            &size as *const _ as *const libc::c_void,
            4,
        );
        let addr = libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: port.to_be(),
            sin_addr: libc::in_addr {
                s_addr: u32::from_ne_bytes([127, 0, 0, 1]),
            },
            sin_zero: [0; 8],
        };
        assert_eq!(
            libc::connect(
                fd,
                &addr as *const _ as *const libc::sockaddr,
                std::mem::size_of_val(&addr) as u32
            ),
            0
        );
        TcpStream::from_raw_fd(fd)
    }
}

/// A folder on tmpfs (`/dev/shm`), removed when dropped.
struct ShmDir(PathBuf);

impl Drop for ShmDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A `/proc/<pid>/status` field in kB (`VmRSS`).
fn status_kb(pid: i32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[test]
fn a_1_gib_extract_to_a_slow_reader_keeps_memory_capture_and_health() {
    let dir = TempDir::new("extract-gib");
    let shm = ShmDir(PathBuf::from(format!(
        "/dev/shm/bsc-extract-gib-{}",
        std::process::id()
    )));
    let root = shm.0.join("cap");
    let (big, live) = (free_udp_port(), free_udp_port());
    let bsc = Bsc::capturing(
        dir.path(),
        &root,
        vec![
            udp_handler("big", big, json!({"rotate_max_bytes": "256MB"})),
            udp_handler(
                "live",
                live,
                json!({"rotate_log": false, "file_name_pattern": "live.pcap"}),
            ),
        ],
    );
    // 1 GiB of 60,000-byte records, sent in counted batches (nothing lost).
    const RECORDS: u64 = (1 << 30) / 60_016 + 1;
    let s = sender(big);
    let mut payload = vec![0x5Au8; 60_000];
    for i in 0..RECORDS {
        payload[..8].copy_from_slice(&i.to_be_bytes());
        s.send(&payload).unwrap();
        if (i + 1) % 200 == 0 || i + 1 == RECORDS {
            wait_until("the batch counted", || {
                stats_of(&bsc, big)["packets"].as_u64() >= Some(i + 1)
            });
        }
    }
    wait_until("1 GiB written", || {
        pcap_files(&root)
            .iter()
            .map(|f| std::fs::metadata(f).unwrap().len())
            .sum::<u64>()
            >= 1 << 30
    });
    let before_kb = status_kb(bsc.pid(), "VmRSS");
    // The slow reader: 64 KiB at a time, about 100 MB/s at most.
    let http = bsc.http_port;
    let reader = std::thread::spawn(move || {
        let mut c = TcpStream::connect(("127.0.0.1", http)).unwrap();
        c.write_all(b"GET /big/data HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
            .unwrap();
        let mut buf = vec![0u8; 64 * 1024];
        let mut total = 0u64;
        loop {
            let n = c.read(&mut buf).unwrap();
            if n == 0 {
                return total;
            }
            total += n as u64;
            std::thread::sleep(Duration::from_micros(600));
        }
    });
    // Meanwhile: a paced generator on the other handler, /health polled, RSS watched.
    const LIVE: u64 = 100_000;
    let generator = std::thread::spawn(move || {
        let tx = sender(live);
        for seq in 0..LIVE {
            tx.send(&seq_payload(seq)).unwrap();
            if seq % 200 == 0 {
                std::thread::sleep(Duration::from_millis(2));
            }
        }
    });
    let (mut peak_kb, mut slowest, mut polls) = (before_kb, Duration::ZERO, 0);
    while !reader.is_finished() {
        let t = std::time::Instant::now();
        assert_eq!(bsc.get("/health").0, 200);
        slowest = slowest.max(t.elapsed());
        polls += 1;
        peak_kb = peak_kb.max(status_kb(bsc.pid(), "VmRSS"));
        std::thread::sleep(Duration::from_millis(50));
    }
    let got = reader.join().unwrap();
    generator.join().unwrap();
    assert!(got > 1 << 30, "the whole answer came: {got} bytes");
    wait_until("every live datagram counted", || {
        stats_of(&bsc, live)["packets"].as_u64() == Some(LIVE)
    });
    wait_until("every live datagram on disk", || {
        count_records(&root.join("live.pcap")) as u64 == LIVE
    });
    let seqs: Vec<u64> = read_pcap(&root.join("live.pcap"))
        .2
        .iter()
        .map(|r| seq_of(&r.data))
        .collect();
    assert_eq!(
        seqs,
        (0..LIVE).collect::<Vec<_>>(),
        "capture lost nothing meanwhile"
    );
    eprintln!(
        "1 GiB extract: RSS {before_kb} kB before, {peak_kb} kB at most; /health at most {slowest:?} over {polls} polls"
    );
    assert!(
        peak_kb < before_kb + 8 * 1024,
        "RSS grew from {before_kb} kB to {peak_kb} kB"
    );
    // Generous for a loaded machine; the figure is in docs/performance.md.
    assert!(
        slowest < Duration::from_millis(250),
        "/health took {slowest:?}"
    );
    bsc.stop();
}

#[test]
fn the_client_tells_names_from_files_and_refuses_bad_arguments() {
    let dir = TempDir::new("extract-client");
    let port = free_udp_port();
    let root = dir.path().join("cap");
    let bsc = Bsc::capturing(dir.path(), &root, vec![udp_handler("tlm", port, json!({}))]);
    sender(port).send(b"one").unwrap();
    wait_until("written", || {
        pcap_files(&root)
            .iter()
            .any(|f| records_so_far(f).len() == 1)
    });
    let file = pcap_files(&root)[0].clone();
    std::fs::copy(&file, dir.path().join("tlm")).unwrap();
    let server = format!("127.0.0.1:{}", bsc.http_port);
    let run = |args: &[&str]| {
        let o = Command::new(env!("CARGO_BIN_EXE_bsc"))
            .args(args)
            .args(["--server", &server])
            .current_dir(dir.path())
            .output()
            .unwrap();
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
            o.stdout,
        )
    };
    for (args, code, says) in [
        (&["extract", "tlm", "--from", "yesterday"][..], 2, "--from"),
        (
            &["extract", "tlm", "--from", "2", "--to", "1"],
            2,
            "from is after to",
        ),
        (&["extract", "tlm", "--apid", "0x800"], 2, "--apid"),
        (&["extract", "nobody", "other"], 2, "./nobody"),
        (&["extract", "nobody", "tlm"], 2, "not both"),
        (&["extract", "./tlm", "--port", "1"], 2, "--port"),
        (
            &["extract", "nobody", "-o", "x.pcap"],
            1,
            "no handler named",
        ),
        (&["extract", "./missing.pcap"], 2, "missing.pcap"),
        (&["extract"], 2, "NAME"),
    ] {
        let (got, stderr, _) = run(args);
        assert_eq!(got, Some(code), "{args:?}: {stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
    assert!(
        !dir.path().join("x.pcap").exists(),
        "no pcap left after a refusal"
    );
    // `tlm` names the file here; --name asks the server; both say "one".
    for args in [&["extract", "tlm"][..], &["extract", "--name", "tlm"]] {
        let (code, stderr, stdout) = run(args);
        assert_eq!(code, Some(0), "{args:?}: {stderr}");
        let out = dir.path().join("out.pcap");
        std::fs::write(&out, stdout).unwrap();
        assert_eq!(payloads_of(&out), vec![b"one".to_vec()], "{args:?}");
    }
    // -o never writes over a file: not the input, not bsc's own open capture
    // file (both keep every byte), and a failed extract leaves them be.
    let before = std::fs::read(&file).unwrap();
    let input = file.to_str().unwrap();
    for args in [
        &["extract", input, "-o", input][..],
        &["extract", "--name", "tlm", "-o", input],
        &["extract", "./tlm", "-o", "tlm"],
    ] {
        let (code, stderr, _) = run(args);
        assert_eq!(code, Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains("exists already"), "{args:?}: {stderr}");
    }
    assert_eq!(std::fs::read(&file).unwrap(), before, "the capture file");
    assert_eq!(std::fs::read(dir.path().join("tlm")).unwrap(), before);
    // A device is written to, and never removed when the extract fails.
    let (code, stderr, _) = run(&["extract", "./tlm", "-o", "/dev/null"]);
    assert_eq!(code, Some(0), "{stderr}");
    let (code, stderr, _) = run(&["extract", "nobody", "-o", "/dev/null"]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(std::path::Path::new("/dev/null").exists());
    // No server: exit 3.
    let o = Command::new(env!("CARGO_BIN_EXE_bsc"))
        .args([
            "extract",
            "--name",
            "tlm",
            "--server",
            &format!("127.0.0.1:{}", free_tcp_port()),
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(3));
    // A missing file named without a `/` reads as a handler NAME: with no bsc
    // to ask, the error says no such file is here either.
    let o = Command::new(env!("CARGO_BIN_EXE_bsc"))
        .args(["extract", "missing.pcap", "--server"])
        .arg(format!("127.0.0.1:{}", free_tcp_port()))
        .current_dir(dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains("no file is named \"missing.pcap\" here"),
        "{stderr}"
    );
    // A terminal on stdout gets no pcap bytes.
    let o = Command::new("script")
        .args([
            "-qec",
            &format!("{} extract ./tlm", env!("CARGO_BIN_EXE_bsc")),
            "/dev/null",
        ])
        .current_dir(dir.path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("stdout is a terminal"), "{text}");
    bsc.stop();
}

/// Answers one request on a free loopback port with `answer`, then closes.
fn answer_once(answer: Vec<u8>) -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") && s.read(&mut byte).unwrap_or(0) == 1 {
            head.push(byte[0]);
        }
        let _ = s.write_all(&answer);
    });
    port
}

#[test]
fn an_answer_cut_short_or_not_a_pcap_is_an_error_and_leaves_no_file() {
    let dir = TempDir::new("extract-cut");
    let header = pcap_header_bytes();
    // A chunked answer whose connection closes inside the body.
    let mut cut = b"HTTP/1.1 200 OK\r\nContent-Type: application/vnd.tcpdump.pcap\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    cut.extend_from_slice(format!("{:x}\r\n", header.len() + 10).as_bytes());
    cut.extend_from_slice(&header);
    cut.extend_from_slice(&[0u8; 4]);
    let html =
        b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 5\r\n\r\nhello".to_vec();
    for (answer, says) in [
        (cut, "before the answer's body ended"),
        (html, "not a pcap"),
    ] {
        let port = answer_once(answer);
        let out = dir.path().join("w.pcap");
        let o = Command::new(env!("CARGO_BIN_EXE_bsc"))
            .args(["extract", "--name", "tlm", "-o", out.to_str().unwrap()])
            .args(["--server", &format!("127.0.0.1:{port}")])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(3), "{stderr}");
        assert!(stderr.contains(says), "{stderr}");
        assert!(!out.exists(), "no partial pcap left: {stderr}");
    }
}

/// A classic microsecond pcap header (user0), as bsc writes it.
fn pcap_header_bytes() -> Vec<u8> {
    let mut h = 0xa1b2_c3d4u32.to_le_bytes().to_vec();
    h.extend_from_slice(&2u16.to_le_bytes());
    h.extend_from_slice(&4u16.to_le_bytes());
    h.extend_from_slice(&[0u8; 8]);
    h.extend_from_slice(&65535u32.to_le_bytes());
    h.extend_from_slice(&147u32.to_le_bytes());
    h
}

#[test]
fn a_clock_stepped_back_hides_no_record_open_closed_or_after_a_restart() {
    let dir = TempDir::new("extract-step-back");
    let port = free_udp_port();
    let root = dir.path().join("cap");
    let h = udp_handler("back", port, json!({"rotate_log": false}));
    let cfg = config(&root, vec![h]);
    let bsc = Bsc::with_config_env(dir.path(), &cfg, &[DRIVEN_CLOCK]);
    let t0 = set_clock(bsc.http_port, "2026-12-07T12:00:00Z");
    let s = sender(port);
    for i in 0..100 {
        s.send(&seq_payload(i)).unwrap();
    }
    paced(&bsc, port, 100, 1.0);
    // The clock steps back ten minutes (an NTP correction): the file's last
    // record is now before its first.
    set_clock(bsc.http_port, "2026-12-07T11:50:00Z");
    for i in 100..200 {
        s.send(&seq_payload(i)).unwrap();
    }
    paced(&bsc, port, 200, 1.0);
    let before = query(Some(t0 - 60_000_000), Some(t0 + 60_000_000));
    let after = query(Some(t0 - 660_000_000), Some(t0 - 540_000_000));
    let seqs = |bsc: &Bsc, q: &str| -> Vec<u64> {
        extract(bsc, dir.path(), "back", q)
            .1
            .iter()
            .map(|r| seq_of(&r.data))
            .collect()
    };
    let (first, second): (Vec<u64>, Vec<u64>) = ((0..100).collect(), (100..200).collect());
    assert_eq!(seqs(&bsc, &before), first, "open file");
    assert_eq!(seqs(&bsc, &after), second, "open file");
    assert_eq!(bsc.request("POST", "/back/rotate", None, b"").status, 200);
    assert_eq!(seqs(&bsc, &before), first, "closed file, its index");
    assert_eq!(seqs(&bsc, &after), second, "closed file, its index");
    bsc.stop();
    let bsc = Bsc::with_config_env(dir.path(), &cfg, &[DRIVEN_CLOCK]);
    assert_eq!(seqs(&bsc, &after), second, "after a restart, no index yet");
    assert_eq!(seqs(&bsc, &before), first, "after a restart");
    bsc.stop();
}

#[test]
fn a_clock_stepped_back_then_forward_hides_no_record_after_a_restart() {
    let dir = TempDir::new("extract-step-back-forth");
    let port = free_udp_port();
    let root = dir.path().join("cap");
    let h = udp_handler("t4", port, json!({"rotate_log": false}));
    let cfg = config(&root, vec![h]);
    let bsc = Bsc::with_config_env(dir.path(), &cfg, &[DRIVEN_CLOCK]);
    let s = sender(port);
    // 12:00, then back to 11:00, then forward to 12:30: the file's first and
    // last records (12:00, 12:30) do not bound the ones at 11:00.
    let mut sent = 0;
    for at in [
        "2026-04-01T12:00:00Z",
        "2026-04-01T11:00:00Z",
        "2026-04-01T12:30:00Z",
    ] {
        set_clock(bsc.http_port, at);
        for i in sent..sent + 5 {
            s.send(&seq_payload(i)).unwrap();
        }
        sent += 5;
        paced(&bsc, port, sent as u32, 1.0);
    }
    let at_eleven = "from=2026-04-01T11%3A00%3A00Z&to=2026-04-01T11%3A10%3A00Z";
    let seqs = |bsc: &Bsc| -> Vec<u64> {
        extract(bsc, dir.path(), "t4", at_eleven)
            .1
            .iter()
            .map(|r| seq_of(&r.data))
            .collect()
    };
    let want: Vec<u64> = (5..10).collect();
    assert_eq!(seqs(&bsc), want, "open file");
    bsc.stop();
    // Closed at the stop; after the restart it has no index: its journaled
    // least and most record times say it may hold 11:00.
    let bsc = Bsc::with_config_env(dir.path(), &cfg, &[DRIVEN_CLOCK]);
    assert_eq!(seqs(&bsc), want, "after a restart");
    let journal = std::fs::read_to_string(journal_of(&root)).unwrap();
    assert!(journal.contains("\"earliest\":"), "{journal}");
    bsc.stop();
}
