//! Regression tests from the second red-team pass (2026-12-02): each doc says
//! the defect it caught (all fixed but the one marked `ignore`, a known gap
//! the README names), and the combinations that held up. Root is needed (tmpfs
//! mounts).

mod common;
use bsc::framing::testgen;

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use serde_json::json;

/// A tiny tmpfs mounted on `at` (here: the state folder `<root>/.bsc`, so that
/// only the journal runs out of room while captures go on).
struct Mount(PathBuf);

impl Mount {
    fn new(at: &Path, kib: u32) -> Mount {
        std::fs::create_dir_all(at).unwrap();
        let out = Command::new("mount")
            // bsc's alone (0700): a state folder others may write is refused.
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={kib}k,mode=0700"),
                "tmpfs",
            ])
            .arg(at)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "mount: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Mount(at.to_path_buf())
    }

    /// Fills it up (a file `filler`) until the disk says no.
    fn fill(&self) {
        let mut f = std::fs::File::create(self.0.join("filler")).unwrap();
        let chunk = vec![0u8; 4096];
        for _ in 0..100_000 {
            if f.write_all(&chunk).is_err() {
                break;
            }
        }
        // And the last bytes of a page.
        for _ in 0..4096 {
            if f.write_all(&[0]).is_err() {
                break;
            }
        }
    }

    fn unfill(&self) {
        let _ = std::fs::remove_file(self.0.join("filler"));
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).output();
    }
}

fn send_n(port: u16, from: u64, n: u64) {
    let s = sender(port);
    for i in from..from + n {
        s.send(&seq_payload(i)).unwrap();
        std::thread::sleep(Duration::from_millis(40));
    }
}

/// Sends units one by one until bsc logs that the journal is behind (bounded).
fn until_behind(bsc: &Bsc, port: u16, from: &mut u64) {
    let s = sender(port);
    let deadline = Instant::now() + Duration::from_secs(20);
    while bsc.log_matching("cannot append to").is_empty() {
        assert!(Instant::now() < deadline, "the journal never fell behind");
        s.send(&seq_payload(*from)).unwrap();
        *from += 1;
        std::thread::sleep(Duration::from_millis(40));
    }
}

fn first_ts(p: &Path) -> Option<u64> {
    read_pcap(p).2.first().map(|r| r.ts_us)
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

/// README "Rotation", "Naming": a handler's files "always sort in time order"
/// (`{seq}` 0007 after 0006), and README "Durability and the disk": a file
/// opened while the journal was behind and forgotten by a crash is found in its
/// folder, "naming goes on after it". With `{seq}` the restart instead takes
/// the journal's last seq + 1, finds that name closed and adds `-1` to it: the
/// new file `h-000N-1.pcap` sorts *before* the pre-crash files `h-000N+1...`.
#[test]
fn seq_names_after_a_crash_while_behind_keep_time_order() {
    let dir = TempDir::new("rt2-seq-behind");
    let root = dir.path().join("root");
    let state = Mount::new(&root.join(".bsc"), 64);
    let port = free_udp_port();
    let cfg = json!({
        "capture_manager": {"root_log_directory": root},
        "handlers": [{"name": "h", "conn_type": "udp", "address": ["127.0.0.1", port],
            "rotate_max_packets": 2, "file_name_pattern": "{name}-{seq}.pcap"}]
    });
    let mut bsc = Bsc::with_config(dir.path(), &cfg);
    let mut i = 0;
    send_n(port, i, 4);
    i += 4;
    wait_until("two files", || pcap_files(&root).len() == 2);
    std::thread::sleep(Duration::from_millis(300));
    state.fill();
    until_behind(&bsc, port, &mut i);
    // Files open and close while behind; the last one is left open (odd count).
    send_n(port, i, 5 + (i % 2));
    i += 5 + (i % 2);
    std::thread::sleep(Duration::from_millis(300));
    bsc.signal(9);
    bsc.wait_exit();
    let before = pcap_files(&root);
    state.unfill();
    let bsc = Bsc::with_config(dir.path(), &cfg);
    send_n(port, i, 4);
    std::thread::sleep(Duration::from_millis(500));
    bsc.stop();
    let files = pcap_files(&root);
    let mut prev = 0;
    let mut order = Vec::new();
    for f in &files {
        let ts = first_ts(f).unwrap_or(0);
        order.push((
            f.file_name().unwrap().to_string_lossy().into_owned(),
            ts >= prev,
        ));
        prev = prev.max(ts);
    }
    assert!(
        order.iter().all(|(_, ok)| *ok),
        "files by name not in time order (false = earlier data than a file sorting before it): {order:?}; before the restart: {before:?}"
    );
}

/// README "Durability and the disk" names the one loss while the journal is
/// behind: "a file opened and closed meanwhile ... is not shipped". A file
/// *opened* meanwhile and left open by a crash is worse off, and undocumented:
/// its `opened` line is gone, so the next start neither resumes nor repairs
/// it: with a time-based name it stays writable (0640, not final) for good,
/// never handed to `on_close` or `ship` (README "A closed file is final"; "a
/// file a crash left open is repaired and closed at the next start and waits to
/// ship").
#[test]
#[ignore = "known gap (README, Durability and the disk): a crash while a full disk keeps the journal behind forgets the files opened meanwhile; one still open is neither made final nor shipped"]
fn a_file_left_open_while_behind_is_made_final_and_shipped_after_restart() {
    let dir = TempDir::new("rt2-open-behind");
    let root = dir.path().join("root");
    let state = Mount::new(&root.join(".bsc"), 64);
    let shipped = dir.path().join("shipped");
    let port = free_udp_port();
    let cfg = json!({
        "capture_manager": {"root_log_directory": root},
        "handlers": [{"name": "h", "conn_type": "udp", "address": ["127.0.0.1", port],
            "rotate_max_packets": 1000, "file_name_pattern": "%Y%m%d%H%M%S-{name}.pcap",
            "ship": ["/bin/sh", "-c", format!("echo \"$1\" >> '{}'", shipped.display()), "sh"]}]
    });
    let mut bsc = Bsc::with_config(dir.path(), &cfg);
    let mut i = 0;
    send_n(port, i, 2);
    i += 2;
    std::thread::sleep(Duration::from_millis(300));
    state.fill();
    // Rotations on request until the journal falls behind; the file opened
    // last is open while it is behind.
    let deadline = Instant::now() + Duration::from_secs(20);
    while bsc.log_matching("cannot append to").is_empty() {
        assert!(Instant::now() < deadline, "the journal never fell behind");
        bsc.form("POST", "/h/rotate", "");
        std::thread::sleep(Duration::from_millis(50));
    }
    bsc.form("POST", "/h/rotate", "");
    send_n(port, i, 2);
    std::thread::sleep(Duration::from_millis(300));
    let open: Vec<_> = pcap_files(&root)
        .into_iter()
        .filter(|f| mode(f) == 0o640)
        .collect();
    assert_eq!(open.len(), 1, "one file open at the crash");
    bsc.signal(9);
    bsc.wait_exit();
    state.unfill();
    let bsc = Bsc::with_config(dir.path(), &cfg);
    std::thread::sleep(Duration::from_millis(1500));
    bsc.stop();
    let writable: Vec<_> = pcap_files(&root)
        .into_iter()
        .filter(|f| mode(f) != 0o440)
        .collect();
    let got = std::fs::read_to_string(&shipped).unwrap_or_default();
    assert!(
        writable.is_empty() && got.contains(open[0].to_str().unwrap()),
        "left open by the crash while behind: {open:?}; still not final after restart and stop: {writable:?}; shipped: {got}"
    );
}

/// README "Rotation": "`rotate_max_packets`: a file is closed once it holds
/// that many records." A file a crash left open that already holds N or more
/// records (the limit lowered while bsc was stopped, or a crash between the
/// N-th record's write and the close) is resumed by the first unit and gets
/// one more record before it is closed.
#[test]
fn a_resumed_file_already_full_by_count_gets_no_more_records() {
    let dir = TempDir::new("rt2-resume-full");
    let root = dir.path().join("root");
    let port = free_udp_port();
    let cfg = |max: u64| {
        json!({
            "capture_manager": {"root_log_directory": root},
            "handlers": [{"name": "h", "conn_type": "udp", "address": ["127.0.0.1", port],
                "rotate_max_packets": max, "file_name_pattern": "{name}-{seq}.pcap"}]
        })
    };
    let mut bsc = Bsc::with_config(dir.path(), &cfg(5));
    send_n(port, 0, 3);
    wait_until("3 records", || {
        count_records(&root.join("h-0001.pcap")) == 3
    });
    bsc.signal(9);
    bsc.wait_exit();
    let bsc = Bsc::with_config(dir.path(), &cfg(2));
    send_n(port, 3, 1);
    std::thread::sleep(Duration::from_millis(500));
    bsc.stop();
    let counts: Vec<_> = pcap_files(&root)
        .iter()
        .map(|f| {
            (
                f.file_name().unwrap().to_string_lossy().into_owned(),
                count_records(f),
            )
        })
        .collect();
    assert_eq!(
        counts,
        vec![
            ("h-0001.pcap".to_string(), 3),
            ("h-0002.pcap".to_string(), 1)
        ],
        "a file holding 3 records with rotate_max_packets 2 was appended to"
    );
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn all_records(root: &Path, prefix: &str) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for f in pcap_files(root) {
        if f.file_name().unwrap().to_string_lossy().starts_with(prefix) {
            let (_, _, recs) = read_pcap(&f);
            let (n, err) = tcpdump(&f);
            assert_eq!(n, recs.len(), "tcpdump {}: {err}", f.display());
            out.extend(recs.into_iter().map(|r| r.data));
        }
    }
    out
}

/// README "Telemetry units", "How a datagram becomes a record": one record
/// per unit, byte-exact, whatever the splits; the new write path (whole units
/// from the receive slot, split ones copied) combined with rotation by count
/// (1 and 3) and by size inside one read, and transforms. Three handlers on
/// one TCP peer.
#[test]
fn tcp_units_in_every_split_with_count_and_size_rotation_are_byte_exact() {
    use std::io::Write as _;
    use std::net::TcpListener;
    let dir = TempDir::new("rt2-tcp-splits");
    let root = dir.path().join("root");
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let h = |name: &str, keys: serde_json::Value| {
        let mut h = json!({"name": name, "conn_type": "tcp", "address": ["127.0.0.1", port],
            "rotate_log": false, "file_name_pattern": format!("{name}-{{seq:6}}.pcap"),
            "framing": "ccsds_space_packet", "sequence_check": "ccsds_space_packet"});
        for (k, v) in keys.as_object().unwrap() {
            h[k] = v.clone();
        }
        h
    };
    let cfg = json!({"capture_manager": {"root_log_directory": root}, "handlers": [
        h("one", json!({"rotate_max_packets": 1, "pre_write_transforms": ["strip:2", "tail:1"]})),
        h("three", json!({"rotate_max_packets": 3, "pre_write_transforms": ["apid:0x100"]})),
        h("size", json!({"rotate_max_bytes": 700, "rotate_max_packets": 4})),
    ]});
    let bsc = Bsc::with_config(dir.path(), &cfg);
    let mut rng = Rng(0xC0FFEE);
    let mut wire = Vec::new();
    let mut units = Vec::new();
    let mut counts = [0u16; 2];
    for _ in 0..600 {
        let a = rng.below(2) as usize;
        let len = 1 + rng.below(300) as usize;
        let data: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        let u = testgen::space_packet(0x100 + a as u16, counts[a], &data);
        counts[a] = (counts[a] + 1) % 16384;
        wire.extend_from_slice(&u);
        units.push(u);
    }
    listener.set_nonblocking(false).unwrap();
    let (mut conn, _) = listener.accept().unwrap();
    conn.set_nodelay(true).unwrap();
    // Splits: 1 byte at a time, exact unit boundaries, several units a write,
    // random cuts, in turns.
    let mut bounds = Vec::new();
    let mut at = 0;
    for u in &units {
        at += u.len();
        bounds.push(at);
    }
    let mut pos = 0;
    let mut ui = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    while pos < wire.len() {
        assert!(Instant::now() < deadline);
        let mode = (ui / 25) % 4;
        let end = match mode {
            0 => pos + 1,
            1 => bounds[ui],
            2 => bounds[(ui + 5).min(bounds.len() - 1)],
            _ => (pos + 1 + rng.below(900) as usize).min(wire.len()),
        };
        conn.write_all(&wire[pos..end]).unwrap();
        pos = end;
        while ui < bounds.len() && bounds[ui] <= pos {
            ui += 1;
        }
        if mode == 0 || rng.below(4) == 0 {
            std::thread::sleep(Duration::from_micros(300));
        }
    }
    std::thread::sleep(Duration::from_millis(800));
    drop(conn);
    std::thread::sleep(Duration::from_millis(300));
    bsc.stop();
    let one: Vec<Vec<u8>> = units.iter().map(|u| u[2..u.len() - 1].to_vec()).collect();
    let three: Vec<Vec<u8>> = units
        .iter()
        .filter(|u| u[1] == 0x00 && u[0] == 0x01)
        .cloned()
        .collect();
    let got_one = all_records(&root, "one-");
    let got_three = all_records(&root, "three-");
    let got_size = all_records(&root, "size-");
    assert_eq!(got_one.len(), one.len(), "one: records");
    assert!(got_one == one, "one: records differ");
    assert_eq!(got_three.len(), three.len(), "three: records");
    assert!(got_three == three, "three: records differ");
    assert_eq!(got_size.len(), units.len(), "size: records");
    assert!(got_size == units, "size: records differ");
    for f in pcap_files(&root) {
        let n = count_records(&f);
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        let max = if name.starts_with("one-") {
            1
        } else if name.starts_with("three-") {
            3
        } else {
            4
        };
        assert!(n >= 1 && n <= max, "{name}: {n} records");
        if name.starts_with("size-") && n > 1 {
            assert!(
                std::fs::metadata(&f).unwrap().len() <= 700,
                "{name} over 700 bytes"
            );
        }
    }
}

/// README "Store and forward": oldest first, at least once, never again once
/// journaled as shipped; across journal compaction (past ~1024 lines) and a
/// restart with the backlog waiting.
#[test]
fn a_backlog_of_1200_files_ships_oldest_first_once_across_compaction_and_restart() {
    let dir = TempDir::new("rt2-ship-compact");
    let root = dir.path().join("root");
    let down = dir.path().join("down");
    let shipped = dir.path().join("shipped");
    std::fs::write(&down, "").unwrap();
    let port = free_udp_port();
    let script = format!(
        "test -e '{}' && exit 1; echo \"$BSC_FILE\" >> '{}'",
        down.display(),
        shipped.display()
    );
    let cfg = json!({
        "capture_manager": {"root_log_directory": root},
        "handlers": [{"name": "h", "conn_type": "udp", "address": ["127.0.0.1", port],
            "rotate_max_packets": 1, "file_name_pattern": "{name}-{seq:6}.pcap",
            "ship_retry_max_s": 1, "ship": ["/bin/sh", "-c", script, "sh"]}]
    });
    let bsc = Bsc::with_config(dir.path(), &cfg);
    let s = sender(port);
    for i in 0..700u64 {
        s.send(&seq_payload(i)).unwrap();
        std::thread::sleep(Duration::from_millis(1));
    }
    wait_until("700 files", || pcap_files(&root).len() == 700);
    // Some ship, in the middle of the backlog, then down again.
    std::fs::remove_file(&down).unwrap();
    wait_until("some shipped", || {
        std::fs::read_to_string(&shipped).map_or(0, |t| t.lines().count()) >= 100
    });
    std::fs::write(&down, "").unwrap();
    for i in 700..1200u64 {
        s.send(&seq_payload(i)).unwrap();
        std::thread::sleep(Duration::from_millis(1));
    }
    wait_until("1200 files", || pcap_files(&root).len() == 1200);
    std::thread::sleep(Duration::from_millis(1500));
    let mut bsc = bsc;
    bsc.signal(9);
    bsc.wait_exit();
    std::fs::remove_file(&down).unwrap();
    let bsc = Bsc::with_config(dir.path(), &cfg);
    let deadline = Instant::now() + Duration::from_secs(120);
    let lines = || {
        std::fs::read_to_string(&shipped)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    while Instant::now() < deadline {
        let n = lines().len();
        if n >= 1200 {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_millis(500));
    bsc.stop();
    let got = lines();
    let mut seen = std::collections::HashSet::new();
    let dups: Vec<_> = got.iter().filter(|l| !seen.insert(l.as_str())).collect();
    let files: Vec<String> = pcap_files(&root)
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    let missing: Vec<_> = files
        .iter()
        .filter(|f| !seen.contains(f.as_str()))
        .collect();
    let mut sorted = got.clone();
    sorted.sort();
    sorted.dedup();
    let in_order = got.iter().collect::<Vec<_>>() == sorted.iter().collect::<Vec<_>>();
    assert!(
        dups.len() <= 1 && missing.is_empty() && in_order,
        "{} shipped of {}; twice: {dups:?}; missing: {:?}; oldest first: {in_order}",
        got.len(),
        files.len(),
        &missing[..missing.len().min(10)]
    );
}

/// The same for `rotate_max_bytes` (README "Rotation": "a file is closed when
/// the next record would take it past the limit"): a resumed file already past
/// the limit is appended to.
#[test]
fn a_resumed_file_already_full_by_size_gets_no_more_records() {
    let dir = TempDir::new("rt2-resume-size");
    let root = dir.path().join("root");
    let port = free_udp_port();
    let cfg = |max: u64| {
        json!({
            "capture_manager": {"root_log_directory": root},
            "handlers": [{"name": "h", "conn_type": "udp", "address": ["127.0.0.1", port],
                "rotate_max_bytes": max, "file_name_pattern": "{name}-{seq}.pcap"}]
        })
    };
    let mut bsc = Bsc::with_config(dir.path(), &cfg(100_000));
    send_n(port, 0, 3);
    wait_until("3 records", || {
        count_records(&root.join("h-0001.pcap")) == 3
    });
    bsc.signal(9);
    bsc.wait_exit();
    let size = std::fs::metadata(root.join("h-0001.pcap")).unwrap().len();
    let bsc = Bsc::with_config(dir.path(), &cfg(size));
    send_n(port, 3, 1);
    std::thread::sleep(Duration::from_millis(500));
    bsc.stop();
    let after = std::fs::metadata(root.join("h-0001.pcap")).unwrap().len();
    assert_eq!(
        after, size,
        "a file at rotate_max_bytes ({size}) was appended to: now {after} bytes"
    );
}
