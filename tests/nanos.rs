//! Black-box tests of `timestamp_precision`: nanosecond files beside microsecond
//! ones, read back with pcap-file's reader, tcpdump and (when installed) tshark.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;
use serde_json::json;

const DATAGRAMS: usize = 50;

/// The first four bytes of a file.
fn magic(path: &Path) -> [u8; 4] {
    std::fs::read(path).unwrap()[..4].try_into().unwrap()
}

/// The fractional digits of the timestamps tcpdump prints, one entry a record.
fn tcpdump_fractions(path: &Path, precision: &str) -> Vec<String> {
    let out = Command::new("tcpdump")
        .args(["-n", &format!("--time-stamp-precision={precision}"), "-r"])
        .arg(path)
        .output()
        .expect("tcpdump is needed: apt-get install tcpdump (make test installs it)");
    assert_success(&out);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.starts_with(char::is_whitespace))
        .map(|l| {
            // 10:00:00.123456789 ...
            let time = l.split_whitespace().next().unwrap();
            time.split('.').nth(1).unwrap_or("").to_string()
        })
        .collect()
}

#[test]
fn nanosecond_and_microsecond_files_of_the_same_datagrams() {
    let (dir, root) = TempDir::with_root("nanos");
    let port = free_udp_port();
    let bsc = Bsc::with_config(
        dir.path(),
        &json!({"capture_manager": {"root_log_directory": &root}, "handlers": [
            {"name": "ns", "conn_type": "udp", "address": ["127.0.0.1", port], "timestamp_precision": "ns", "file_name_pattern": "ns.pcap"},
            {"name": "us", "conn_type": "udp", "address": ["127.0.0.1", port], "timestamp_precision": "us", "file_name_pattern": "us.pcap"},
        ]}),
    );
    // The applied keys say which precision each handler writes.
    let (status, all) = bsc.get("/");
    assert_eq!(status, 200);
    let entries = all.as_object().unwrap().values().next().unwrap();
    let precision_of = |name: &str| {
        entries
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["handler"]["name"] == name)
            .map(|e| e["handler"]["timestamp_precision"].clone())
    };
    assert_eq!(precision_of("ns"), Some(json!("ns")), "{all}");
    assert_eq!(precision_of("us"), Some(json!("us")), "{all}");

    let s = sender(port);
    for i in 0..DATAGRAMS {
        s.send(format!("datagram {i:02}").as_bytes()).unwrap();
        std::thread::sleep(std::time::Duration::from_micros(137));
    }
    let (ns_path, us_path) = (root.join("ns.pcap"), root.join("us.pcap"));
    wait_until("all datagrams in both files", || {
        count_records(&ns_path) == DATAGRAMS && count_records(&us_path) == DATAGRAMS
    });
    assert!(bsc.stop().success());

    // The nanosecond magic in the host's byte order, as libpcap writes it.
    assert_eq!(magic(&ns_path), 0xa1b2_3c4d_u32.to_ne_bytes());
    assert_eq!(magic(&us_path), 0xa1b2_c3d4_u32.to_ne_bytes());
    if cfg!(target_endian = "little") {
        assert_eq!(magic(&ns_path), [0x4d, 0x3c, 0xb2, 0xa1]);
    }

    let (_, _, ns) = read_pcap(&ns_path);
    let (_, _, us) = read_pcap(&us_path);
    assert_eq!(ns.len(), DATAGRAMS);
    assert_eq!(us.len(), DATAGRAMS);
    assert!(
        ns.iter().any(|r| r.ts_ns % 1000 != 0),
        "no sub-microsecond digits in {:?}",
        ns.iter().map(|r| r.ts_ns).collect::<Vec<_>>()
    );
    for (n, u) in ns.iter().zip(&us) {
        assert_eq!(n.data, u.data);
        // The same kernel receive time, truncated to the microsecond.
        assert_eq!(u.ts_ns % 1000, 0);
        assert_eq!(n.ts_ns / 1000, u.ts_us, "{} vs {}", n.ts_ns, u.ts_us);
    }

    // tcpdump reads both: nine digits from the nanosecond file, and the
    // microsecond file's six (printed as nine, ending in 000).
    let ns_digits = tcpdump_fractions(&ns_path, "nano");
    assert_eq!(ns_digits.len(), DATAGRAMS);
    assert!(ns_digits.iter().all(|d| d.len() == 9), "{ns_digits:?}");
    assert!(
        ns_digits.iter().any(|d| !d.ends_with("000")),
        "{ns_digits:?}"
    );
    let us_digits = tcpdump_fractions(&us_path, "micro");
    assert_eq!(us_digits.len(), DATAGRAMS);
    assert!(us_digits.iter().all(|d| d.len() == 6), "{us_digits:?}");
    let (records, stderr) = tcpdump(&us_path);
    assert_eq!(records, DATAGRAMS, "{stderr}");
    for (n, u) in ns_digits.iter().zip(&us_digits) {
        assert_eq!(&n[..6], u, "tcpdump: {n} vs {u}");
    }

    // tshark, when installed (it is not needed to run the tests).
    match Command::new("tshark")
        .args(["-r"])
        .arg(&ns_path)
        .args(["-T", "fields", "-e", "frame.time_epoch"])
        .output()
    {
        Ok(out) => {
            assert_success(&out);
            let text = String::from_utf8_lossy(&out.stdout);
            let times: Vec<&str> = text.lines().collect();
            assert_eq!(times.len(), DATAGRAMS, "{text}");
            for (t, r) in times.iter().zip(&ns) {
                let frac = t.split('.').nth(1).unwrap_or("");
                assert_eq!(frac.len(), 9, "{t}");
                assert_eq!(
                    frac.parse::<u64>().unwrap(),
                    r.ts_ns % 1_000_000_000,
                    "tshark {t}"
                );
            }
        }
        Err(_) => {
            println!("note: tshark is not installed; its check of the nanosecond file is skipped")
        }
    }
}

/// Runs bsc with one handler at `precision` writing `h.pcap`, sends `payload`,
/// waits for its record and ends bsc: SIGKILL (a crash, the file left open and
/// writable) when `crash`, else SIGTERM. Returns bsc's log.
fn run_once(dir: &Path, port: u16, precision: &str, payload: &[u8], crash: bool) -> Vec<String> {
    let root = dir.join("cap");
    let mut bsc = Bsc::with_config(
        dir,
        &json!({"capture_manager": {"root_log_directory": &root}, "handlers": [
            {"name": "h", "conn_type": "udp", "address": ["127.0.0.1", port],
             "timestamp_precision": precision, "file_name_pattern": "h.pcap"},
        ]}),
    );
    let s = sender(port);
    wait_until("the record written", || {
        s.send(payload).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        pcap_files(&root)
            .iter()
            .any(|p| records_so_far(p).iter().any(|r| r.data == payload))
    });
    if crash {
        bsc.signal(9);
        bsc.wait_exit();
        bsc.log()
    } else {
        let (status, log) = bsc.stop_with_log();
        assert!(status.success());
        log
    }
}

#[test]
fn a_file_left_open_is_appended_to_only_at_its_own_precision() {
    for (first, then) in [("us", "ns"), ("ns", "us")] {
        let dir = TempDir::new(&format!("nanos-append-{first}"));
        let root = dir.path().join("cap");
        let port = free_udp_port();
        // A crash leaves h.pcap open and writable; a restart at the same precision
        // would append to it (the journal says so).
        run_once(dir.path(), port, first, b"first", true);
        let h = root.join("h.pcap");
        let before = std::fs::read(&h).unwrap();
        let log = run_once(dir.path(), port, then, b"second", false);
        // The left-open file is closed as it was, never appended at the other
        // precision; the new records go to a file of their own.
        let files = pcap_files(&root);
        assert_eq!(files.len(), 2, "{files:?}\n{}", log.join("\n"));
        let after = std::fs::read(&h).unwrap();
        assert_eq!(after.len(), before.len(), "{first} file grew");
        let want = |p: &str| {
            if p == "ns" {
                0xa1b2_3c4d_u32
            } else {
                0xa1b2_c3d4_u32
            }
        };
        for f in &files {
            let (_, _, records) = read_pcap(f);
            let payloads: Vec<&[u8]> = records.iter().map(|r| &r.data[..]).collect();
            let precision = if payloads.iter().all(|p| *p == b"first") {
                first
            } else {
                assert!(
                    payloads.iter().all(|p| *p == b"second"),
                    "{}: {payloads:?}",
                    f.display()
                );
                then
            };
            assert_eq!(magic(f), want(precision).to_ne_bytes(), "{}", f.display());
        }
        let mode =
            std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&h).unwrap().permissions());
        assert_eq!(mode & 0o222, 0, "the left-open {first} file was made final");
    }
}

#[test]
fn tcp_reads_are_stamped_to_the_nanosecond() {
    use std::io::Write;
    let (dir, root) = TempDir::with_root("nanos-tcp");
    let (listener, port) = tcp_peer();
    let bsc = Bsc::with_config(
        dir.path(),
        &json!({"capture_manager": {"root_log_directory": &root}, "handlers": [
            {"name": "t", "conn_type": "tcp", "address": ["127.0.0.1", port],
             "timestamp_precision": "ns", "file_name_pattern": "t.pcap"},
        ]}),
    );
    let (mut conn, _) = listener.accept().unwrap();
    let path = root.join("t.pcap");
    // One write at a time, each waited for: one read, one record.
    for i in 0..20 {
        conn.write_all(format!("read {i:02}").as_bytes()).unwrap();
        wait_until("the read recorded", || count_records(&path) == i + 1);
    }
    assert!(bsc.stop().success());
    assert_eq!(magic(&path), 0xa1b2_3c4d_u32.to_ne_bytes());
    let (_, _, records) = read_pcap(&path);
    assert_eq!(records.len(), 20);
    assert!(
        records.iter().any(|r| r.ts_ns % 1000 != 0),
        "read times with no sub-microsecond digits: {:?}",
        records.iter().map(|r| r.ts_ns).collect::<Vec<_>>()
    );
    assert!(records.windows(2).all(|w| w[0].ts_ns <= w[1].ts_ns));
}
