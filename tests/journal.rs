//! The journal (`<root>/.bsc/files.jsonl`) when the disk under it fills up
//! (a torn line, the journal behind memory, a crash meanwhile) and when a line
//! in it is damaged, black-box: the real binary, loopback datagrams, a small
//! tmpfs under the state folder. Root is needed (tmpfs mounts).
//!
//! Most come from the red-team passes: each doc says the defect its test
//! caught; all are fixed but the one marked `ignore`, a known gap the README
//! names.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

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

/// README "Store and forward": "every closed file is shipped at least once".
/// On a full disk an append to the journal can be partial; the next line is
/// appended behind the torn one, so both are unreadable at the next start: a
/// `closed` line lost takes its file off the ship queue for good (and an
/// `opened` line lost orphans the next file's `closed` line too). Now a failed
/// append is cut back and the journal is written anew from memory once the disk
/// has room: logged once each way, and nothing is unreadable at the next start.
#[test]
fn a_torn_journal_line_on_a_full_disk_loses_no_waiting_file() {
    let dir = TempDir::new("review-torn");
    let fs = SmallFs::new(dir.path(), 1);
    let root = fs.0.join("root");
    let (ship, down, shipped) = ship_unless_down(dir.path());
    let port = free_udp_port();
    let keys = json!({"rotate_max_packets": 1, "file_name_pattern": "{name}-{seq}.pcap", "ship_retry_max_s": 1, "ship": ship});
    let cfg = config(&root, vec![udp_handler("h", port, keys)]);
    let bsc = Bsc::with_config_env(dir.path(), &cfg, &[DRIVEN_CLOCK]);
    let jlen = || std::fs::metadata(journal_of(&root)).map_or(0, |m| m.len());
    send_paced(port, 0, 2, Duration::from_millis(60));
    wait_until("two files journaled", || {
        pcap_files(&root).len() == 2 && closed_lines(&root) == 2
    });
    let l2 = jlen();
    send_paced(port, 0, 1, Duration::from_millis(60));
    wait_until("a third file journaled", || closed_lines(&root) == 3);
    let l3 = jlen();
    let per = l3 - l2;
    assert!(l3 < 4096, "the journal fits one page ({l3})");
    // Each file journals its `opened` line (before it is created) and its
    // `closed` line. Room on the disk for exactly the files (one page each)
    // created before the journal needs its next page, so that the append
    // that needs it fails: the `closed` line of the last file that fits, or
    // the `opened` line of the next.
    let text = std::fs::read_to_string(journal_of(&root)).unwrap();
    let opened_len = text.lines().rev().nth(1).unwrap().len() as u64 + 1;
    let room = 4096 - l3;
    let m = room / per + u64::from(room % per >= opened_len);
    let filler = fs.0.join("filler");
    let size = fs.free() - m * 4096;
    std::fs::write(&filler, vec![0u8; size as usize]).unwrap();
    assert_eq!(fs.free(), m * 4096);
    send_paced(port, 0, m + 2, Duration::from_millis(60));
    wait_until("the journal append to fail", || {
        !bsc.log_matching("cannot append to").is_empty()
    });
    std::fs::remove_file(&filler).unwrap();
    // Written anew at the next tick of bsc's clock (or the next append).
    wait_advancing(bsc.http_port, 1.0, "the journal caught up", || {
        !bsc.log_matching("has every entry again").is_empty()
    });
    let before = pcap_files(&root).len();
    send_paced(port, 0, 2, Duration::from_millis(60));
    wait_until("two more files", || pcap_files(&root).len() == before + 2);
    let (_, log) = bsc.stop_with_log();
    let count = |needle: &str| log.iter().filter(|l| l.contains(needle)).count();
    assert_eq!(count("cannot append to"), 1, "logged once while behind");
    assert_eq!(
        count("has every entry again"),
        1,
        "logged once when caught up"
    );
    let files = pcap_files(&root);
    std::fs::remove_file(&down).unwrap();
    let bsc = Bsc::with_config(dir.path(), &cfg);
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline && lines_of(&shipped).len() < files.len() {
        std::thread::sleep(Duration::from_millis(100));
    }
    let got = lines_of(&shipped);
    let missing: Vec<_> = files
        .iter()
        .filter(|f| !got.iter().any(|g| Path::new(g) == f.as_path()))
        .collect();
    let skipped = bsc.log_matching("skipping an unreadable line");
    bsc.stop();
    assert!(
        missing.is_empty() && skipped.is_empty(),
        "closed files never shipped: {missing:?}; journal lines skipped: {skipped:?}"
    );
}

/// README "Rotation", "Naming": a handler's files "always sort in time order"
/// (`{seq}` 0007 after 0006), and README "Durability and the disk": a file
/// opened while the journal was behind and forgotten by a crash is found in its
/// folder, "naming goes on after it". With `{seq}` the restart instead takes
/// the journal's last seq + 1, finds that name closed and adds `-1` to it: the
/// new file `h-000N-1.pcap` sorts *before* the pre-crash files `h-000N+1...`.
#[test]
fn seq_names_after_a_crash_while_behind_keep_time_order() {
    let (dir, root) = TempDir::with_root("rt2-seq-behind");
    let state = Mount::new(&root.join(".bsc"), 64);
    let port = free_udp_port();
    let cfg = config(
        &root,
        vec![
            json!({"name": "h", "conn_type": "udp", "address": ["127.0.0.1", port],
            "rotate_max_packets": 2, "file_name_pattern": "{name}-{seq}.pcap"}),
        ],
    );
    let mut bsc = Bsc::with_config(dir.path(), &cfg);
    let mut i = 0;
    send_paced(port, i, 4, Duration::from_millis(40));
    i += 4;
    wait_until("two files, both journaled closed", || {
        pcap_files(&root).len() == 2 && closed_lines(&root) == 2
    });
    state.fill();
    until_behind(&bsc, port, &mut i);
    // Files open and close while behind; the last one is left open (odd count).
    send_paced(port, i, 5 + (i % 2), Duration::from_millis(40));
    i += 5 + (i % 2);
    wait_until("every unit counted", || {
        stats_of(&bsc, port)["packets"] == i
    });
    bsc.signal(9);
    bsc.wait_exit();
    let before = pcap_files(&root);
    state.unfill();
    let bsc = Bsc::with_config(dir.path(), &cfg);
    send_paced(port, i, 4, Duration::from_millis(40));
    wait_until("4 units counted", || stats_of(&bsc, port)["packets"] == 4);
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
    let (dir, root) = TempDir::with_root("rt2-open-behind");
    let state = Mount::new(&root.join(".bsc"), 64);
    let (ship, shipped) = ship_to_list(dir.path());
    let port = free_udp_port();
    let cfg = config(
        &root,
        vec![
            json!({"name": "h", "conn_type": "udp", "address": ["127.0.0.1", port],
            "rotate_max_packets": 1000, "file_name_pattern": "%Y%m%d%H%M%S-{name}.pcap",
            "ship": ship}),
        ],
    );
    let mut bsc = Bsc::with_config(dir.path(), &cfg);
    let mut i = 0;
    send_paced(port, i, 2, Duration::from_millis(40));
    i += 2;
    wait_until("2 units counted", || stats_of(&bsc, port)["packets"] == 2);
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
    send_paced(port, i, 2, Duration::from_millis(40));
    wait_until("4 units counted", || {
        stats_of(&bsc, port)["packets"] == i + 2
    });
    let open: Vec<_> = pcap_files(&root)
        .into_iter()
        .filter(|f| mode_of(f) == 0o640)
        .collect();
    assert_eq!(open.len(), 1, "one file open at the crash");
    bsc.signal(9);
    bsc.wait_exit();
    state.unfill();
    let bsc = Bsc::with_config_env(dir.path(), &cfg, &[DRIVEN_CLOCK]);
    // Two ticks of bsc's clock: settled and shipped by then, if ever.
    for _ in 0..2 {
        advance_clock(bsc.http_port, 1.0);
    }
    bsc.stop();
    let writable: Vec<_> = pcap_files(&root)
        .into_iter()
        .filter(|f| mode_of(f) != 0o440)
        .collect();
    let got = std::fs::read_to_string(&shipped).unwrap_or_default();
    assert!(
        writable.is_empty() && got.contains(open[0].to_str().unwrap()),
        "left open by the crash while behind: {open:?}; still not final after restart and stop: {writable:?}; shipped: {got}"
    );
}

/// Bad input never crashes bsc: a journal `closed` line whose `ship` command is
/// an empty list (damage, or a hand edit) once panicked the shipper (hooks.rs
/// `command`: `argv[0]`) at every start, a crash loop under systemd. Now the
/// reader logs it once and keeps the file, not shipped.
#[test]
fn a_journal_ship_command_that_is_empty_does_not_crash_bsc() {
    let (dir, root) = TempDir::with_root("review-emptyargv");
    std::fs::create_dir_all(root.join(".bsc")).unwrap();
    let old = root.join("old.pcap");
    let mut header = Vec::new();
    header.extend(0xa1b2c3d4u32.to_le_bytes());
    header.extend(2u16.to_le_bytes());
    header.extend(4u16.to_le_bytes());
    header.extend([0u8; 8]);
    header.extend(65535u32.to_le_bytes());
    header.extend(147u32.to_le_bytes());
    std::fs::write(&old, header).unwrap();
    let key = "gone@['127.0.0.1', 1]";
    let opened: Value = json!({"opened": {"key": key, "path": old, "trusted": root,
        "unnumbered": old, "n": 0, "seq": 1, "created": true}});
    let closed: Value = json!({"closed": {"path": old, "records": 0,
        "ship": {"argv": [], "timeout_s": 300.0, "retry_max_s": 600.0}}});
    std::fs::write(journal_of(&root), format!("{opened}\n{closed}\n")).unwrap();
    let port = free_udp_port();
    let cfg = config(
        &root,
        vec![json!({"name": "h", "conn_type": "udp", "address": ["127.0.0.1", port]})],
    );
    let mut bsc = Bsc::with_config_env(dir.path(), &cfg, &[DRIVEN_CLOCK]);
    // Two ticks of bsc's clock: the shipper has looked at the file by then.
    for _ in 0..2 {
        advance_clock(bsc.http_port, 1.0);
    }
    let alive = bsc.child.try_wait().unwrap().is_none();
    let panics = bsc.log_matching("panicked");
    let refused = bsc.log_matching("will not be shipped");
    if alive {
        bsc.stop();
    }
    assert!(alive && panics.is_empty(), "bsc died: {panics:?}");
    assert_eq!(refused.len(), 1, "logged once: {refused:?}");
    assert!(refused[0].contains("old.pcap") && refused[0].contains("empty command"));
    assert!(old.exists(), "the file is kept");
}
