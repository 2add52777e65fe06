//! Second red-team pass: black-box tests, each failing on the defect its doc
//! names. Root is needed (tmpfs mounts).

mod common;

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
            .args(["-t", "tmpfs", "-o", &format!("size={kib}k"), "tmpfs"])
            .arg(at)
            .output()
            .unwrap();
        assert!(out.status.success(), "mount: {}", String::from_utf8_lossy(&out.stderr));
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
        order.push((f.file_name().unwrap().to_string_lossy().into_owned(), ts >= prev));
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
    let open: Vec<_> = pcap_files(&root).into_iter().filter(|f| mode(f) == 0o640).collect();
    assert_eq!(open.len(), 1, "one file open at the crash");
    bsc.signal(9);
    bsc.wait_exit();
    state.unfill();
    let bsc = Bsc::with_config(dir.path(), &cfg);
    std::thread::sleep(Duration::from_millis(1500));
    bsc.stop();
    let writable: Vec<_> = pcap_files(&root).into_iter().filter(|f| mode(f) != 0o440).collect();
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
    wait_until("3 records", || count_records(&root.join("h-0001.pcap")) == 3);
    bsc.signal(9);
    bsc.wait_exit();
    let bsc = Bsc::with_config(dir.path(), &cfg(2));
    send_n(port, 3, 1);
    std::thread::sleep(Duration::from_millis(500));
    bsc.stop();
    let counts: Vec<_> = pcap_files(&root)
        .iter()
        .map(|f| (f.file_name().unwrap().to_string_lossy().into_owned(), count_records(f)))
        .collect();
    assert_eq!(
        counts,
        vec![("h-0001.pcap".to_string(), 3), ("h-0002.pcap".to_string(), 1)],
        "a file holding 3 records with rotate_max_packets 2 was appended to"
    );
}
