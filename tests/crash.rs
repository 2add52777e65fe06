//! Black-box tests of what a crash (`kill -9`, a power cut) may leave, and what
//! bsc makes of it at the next start: no file is left outside the journal,
//! retention, the disk budget or `GET /<name>/files`; names never repeat.
//!
//! The crash windows inside opening a file are hit exactly with the test
//! builds' `BSC_DEBUG_CRASH` hook (compiled only with debug assertions; it
//! aborts bsc at the named point, as `kill -9` would stop it there).

mod common;

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

fn config(root: &Path, port: u16, extra: Value) -> Value {
    let mut h = json!({"name": "ret", "conn_type": "udp", "address": ["127.0.0.1", port],
                       "file_name_pattern": "{name}-{seq}.pcap"});
    for (k, v) in extra.as_object().unwrap() {
        h[k] = v.clone();
    }
    json!({"capture_manager": {"root_log_directory": root}, "handlers": [h]})
}

/// How the crash hook stops bsc (`abort`).
const SIGABRT: i32 = 6;

fn packets(bsc: &Bsc, port: u16) -> u64 {
    bsc.get("/stats").1[format!("['127.0.0.1', {port}]")][0]["packets"]
        .as_u64()
        .unwrap_or(0)
}

/// Sends datagrams `from..from + n`, each once bsc counted the one before (so
/// none waits in the socket when the test goes on).
fn send_counted(bsc: &Bsc, port: u16, from: u64, n: u64) {
    let tx = sender(port);
    let base = packets(bsc, port);
    for i in 0..n {
        tx.send(&seq_payload(from + i)).unwrap();
        wait_until("the datagram counted", || packets(bsc, port) > base + i);
    }
}

/// The paths `GET /ret/files` lists, and their states.
fn listed(bsc: &Bsc) -> Vec<(PathBuf, String)> {
    let (status, body) = bsc.get("/ret/files");
    assert_eq!(status, 200, "{body}");
    body[0]["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                PathBuf::from(f["path"].as_str().unwrap()),
                f["state"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn names(files: &[PathBuf]) -> Vec<String> {
    files
        .iter()
        .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
        .collect()
}

fn writable(p: &Path) -> bool {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o200 != 0
}

/// Issue 21.11, as reported: `max_files: 2`, `rotate_max_packets: 10`, `{seq}`
/// names; 15 datagrams, `kill -9`, restart, 100 datagrams. `ret-0002.pcap`
/// (open at the kill, resumed after it) was never deleted by retention, not
/// even after a clean restart, and `GET /ret/files` did not list it.
#[test]
fn a_file_resumed_after_kill_9_is_under_retention_and_listed() {
    let (dir, root) = TempDir::with_root("crash-resumed");
    let port = free_udp_port();
    let cfg = config(
        &root,
        port,
        json!({"max_files": 2, "rotate_max_packets": 10}),
    );
    let mut bsc = Bsc::with_config(dir.path(), &cfg);
    send_counted(&bsc, port, 0, 15);
    wait_until("5 records in ret-0002", || {
        count_records(&root.join("ret-0002.pcap")) == 5
    });
    bsc.signal(9);
    bsc.wait_exit();

    // Resumed at once: the open file, listed before any unit comes.
    let bsc = Bsc::with_config(dir.path(), &cfg);
    let list = listed(&bsc);
    assert_eq!(
        list,
        [
            (root.join("ret-0001.pcap"), "closed".to_string()),
            (root.join("ret-0002.pcap"), "open".to_string())
        ]
    );
    send_counted(&bsc, port, 15, 100);
    // ret-0002 takes 5 more and is closed (10); ret-0003..0011 hold 10 each;
    // ret-0012, open, the last 5. Two files at most, the open one included.
    wait_until("retention keeps two files", || pcap_files(&root).len() == 2);
    assert_eq!(
        names(&pcap_files(&root)),
        ["ret-0011.pcap", "ret-0012.pcap"]
    );
    let on_disk = pcap_files(&root);
    let list: Vec<PathBuf> = listed(&bsc).into_iter().map(|(p, _)| p).collect();
    assert_eq!(list, on_disk, "every file on disk is listed");
    assert!(bsc.stop().success());

    // A clean restart changes nothing, and the next file goes on after the last.
    let bsc = Bsc::with_config(dir.path(), &cfg);
    send_counted(&bsc, port, 115, 1);
    wait_until("ret-0013 opened, ret-0011 deleted", || {
        names(&pcap_files(&root)) == ["ret-0012.pcap", "ret-0013.pcap"]
    });
    let list: Vec<PathBuf> = listed(&bsc).into_iter().map(|(p, _)| p).collect();
    assert_eq!(list, pcap_files(&root));
    assert!(bsc.stop().success());
}

/// The lines of a run's log that would blame a journal behind memory (a
/// failed append) for what a crash left.
fn behind_lines(log: &[String]) -> Vec<String> {
    log.iter()
        .filter(|l| l.contains("behind") || l.contains("cannot append"))
        .cloned()
        .collect()
}

/// Issue 21.5: `kill -9` between a new file's creation and its `opened` journal
/// line left a 24-byte writable file that was never journaled, never shipped,
/// not counted by retention, and the next start blamed a full disk. The intent
/// is journaled (and forced) before the file is created: a crash right after it
/// leaves a name that does not exist (forgotten, not used again), a crash right
/// after the creation a journaled file that is resumed, closed, listed, shipped
/// and deleted by retention like any other.
#[test]
fn a_crash_while_opening_a_file_leaves_nothing_outside_the_journal() {
    if !cfg!(debug_assertions) {
        eprintln!("skipped: BSC_DEBUG_CRASH exists only in builds with debug assertions");
        return;
    }
    let (dir, root) = TempDir::with_root("crash-opening");
    let (ship, shipped) = ship_to_list(dir.path());
    let port = free_udp_port();
    let cfg = config(
        &root,
        port,
        json!({"rotate_max_packets": 2, "max_files": 3, "ship": ship}),
    );
    let journal = root.join(".bsc/files.jsonl");
    let mut logs = Vec::new();

    // Run 1: ret-0001 and ret-0002, closed by count.
    let bsc = Bsc::with_config(dir.path(), &cfg);
    send_counted(&bsc, port, 0, 4);
    let (status, log) = bsc.stop_with_log();
    assert!(status.success());
    logs.extend(log);
    assert_eq!(
        names(&pcap_files(&root)),
        ["ret-0001.pcap", "ret-0002.pcap"]
    );

    // Run 2: stopped right after ret-0003's intent was journaled.
    let mut bsc = Bsc::with_config_env(dir.path(), &cfg, &[("BSC_DEBUG_CRASH", "intent")]);
    sender(port).send(&seq_payload(4)).unwrap();
    assert_eq!(bsc.wait_exit().signal(), Some(SIGABRT), "the hook");
    logs.extend(bsc.log());
    assert!(!root.join("ret-0003.pcap").exists());
    let text = std::fs::read_to_string(&journal).unwrap();
    assert!(text.contains("ret-0003.pcap"), "journaled first: {text}");

    // Run 3: stopped right after ret-0004 was created (its header written),
    // before anything else: ret-0003 is forgotten and its name not used again.
    let mut bsc = Bsc::with_config_env(dir.path(), &cfg, &[("BSC_DEBUG_CRASH", "created")]);
    sender(port).send(&seq_payload(5)).unwrap();
    assert_eq!(bsc.wait_exit().signal(), Some(SIGABRT), "the hook");
    logs.extend(bsc.log());
    let orphan = root.join("ret-0004.pcap");
    assert_eq!(
        std::fs::metadata(&orphan).unwrap().len(),
        24,
        "a header only"
    );
    assert!(writable(&orphan));
    let text = std::fs::read_to_string(&journal).unwrap();
    assert!(
        text.contains("ret-0004.pcap"),
        "journaled before it was created: {text}"
    );

    // Run 4: ret-0004 is bsc's like any other file: resumed, closed by count,
    // listed, shipped, and deleted by retention in its turn.
    let bsc = Bsc::with_config(dir.path(), &cfg);
    send_counted(&bsc, port, 6, 3);
    wait_until("ret-0004 closed and shipped", || {
        std::fs::read_to_string(&shipped).is_ok_and(|s| s.contains("ret-0004.pcap"))
    });
    let records: Vec<u64> = read_pcap(&orphan)
        .2
        .iter()
        .map(|r| seq_of(&r.data))
        .collect();
    assert_eq!(records, [6, 7]);
    assert!(!writable(&orphan), "final");
    wait_until("retention: three files at most", || {
        pcap_files(&root).len() == 3
    });
    let on_disk = pcap_files(&root);
    assert_eq!(
        names(&on_disk),
        ["ret-0002.pcap", "ret-0004.pcap", "ret-0005.pcap"]
    );
    let list = listed(&bsc);
    assert_eq!(
        list.iter().map(|(p, _)| p.clone()).collect::<Vec<_>>(),
        on_disk,
        "every file on disk is listed: {list:?}"
    );
    assert_eq!(list[1].1, "closed");
    send_counted(&bsc, port, 9, 4);
    wait_until("ret-0004 deleted by retention", || {
        names(&pcap_files(&root)) == ["ret-0005.pcap", "ret-0006.pcap", "ret-0007.pcap"]
    });
    let (status, log) = bsc.stop_with_log();
    assert!(status.success());
    logs.extend(log);
    let got = std::fs::read_to_string(&shipped).unwrap();
    let mut lines: Vec<String> = got.lines().map(|l| names(&[l.into()])[0].clone()).collect();
    let all = lines.len();
    lines.sort();
    lines.dedup();
    assert_eq!(lines.len(), all, "each file shipped once: {got}");
    assert_eq!(
        lines[..3],
        ["ret-0001.pcap", "ret-0002.pcap", "ret-0004.pcap"],
        "ret-0004 shipped, ret-0003 never existed: {got}"
    );
    assert_eq!(
        behind_lines(&logs),
        Vec::<String>::new(),
        "no journal was behind"
    );
    for f in pcap_files(&root) {
        let (n, stderr) = tcpdump(&f);
        assert_eq!(n, read_pcap(&f).2.len(), "{}: {stderr}", f.display());
    }
}

/// A small xorshift generator (the soak's kill points; its seed is printed).
/// The `{seq}` number of a `ret-NNNN.pcap` file.
fn seq_number(p: &Path) -> u64 {
    let name = p.file_name().unwrap().to_string_lossy();
    name.trim_start_matches("ret-")
        .trim_end_matches(".pcap")
        .parse()
        .unwrap_or_else(|_| panic!("not a {{seq}} name: {name}"))
}

/// Issue 21.11, the soak: with `max_files: 4` and a `kill -9` every few
/// seconds, a handler ended with 4 files plus one per kill. Here 12 kills at
/// random instants under steady traffic (files rotate by count 50 times a
/// second, so kills land in every step of a file's life), each restart waiting
/// for readiness: after each kill at most `max_files` + 1 files (a kill
/// between a new file's creation and the deletion it makes due); after the
/// last restart at most `max_files` (the open one included), each listed by
/// `GET /ret/files`; `{seq}` names never reused and in time order; every
/// record of every file readable by tcpdump.
#[test]
fn kill_9_at_random_points_under_traffic_leaks_no_file() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let (dir, root) = TempDir::with_root("crash-soak");
    let port = free_udp_port();
    let cfg = config(
        &root,
        port,
        json!({"max_files": 4, "rotate_max_packets": 10}),
    );
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    eprintln!("kill points from seed {seed}");
    let mut rng = Rng(seed);
    // About 500 datagrams a second, for as long as the soak runs (bounded).
    let stop = Arc::new(AtomicBool::new(false));
    let sending = stop.clone();
    let traffic = std::thread::spawn(move || {
        let tx = sender(port);
        let start = Instant::now();
        let mut n = 0u64;
        while !sending.load(Ordering::Relaxed) && start.elapsed() < Duration::from_secs(120) {
            let _ = tx.send(&seq_payload(n));
            n += 1;
            std::thread::sleep(Duration::from_millis(2));
        }
    });
    // Every name seen, with the first payload it held: a name is never given
    // to other data. Right after a kill, the file being created or written may
    // have no whole header or first record yet (the restart repairs it; the
    // files are read whole after the last restart).
    let mut first_of: std::collections::BTreeMap<u64, u64> = Default::default();
    let observe = |first_of: &mut std::collections::BTreeMap<u64, u64>| {
        for f in pcap_files(&root) {
            if let Some(r) = first_record(&f) {
                let first = *first_of.entry(seq_number(&f)).or_insert(seq_of(&r.data));
                assert_eq!(first, seq_of(&r.data), "{} reused", f.display());
            }
        }
    };
    for kill in 0..12 {
        let mut bsc = Bsc::with_config(dir.path(), &cfg);
        let grace = 50 + rng.below(1200);
        std::thread::sleep(Duration::from_millis(grace));
        bsc.signal(9);
        bsc.wait_exit();
        observe(&mut first_of);
        let files = pcap_files(&root);
        assert!(
            files.len() <= 5,
            "after kill {kill} (at {grace} ms): {:?}",
            names(&files)
        );
    }
    stop.store(true, Ordering::Relaxed);
    traffic.join().unwrap();
    // A last start: the file the last kill left is resumed (or closed), and
    // every file on disk is bsc's, listed and under retention, before any unit
    // comes and after some.
    let bsc = Bsc::with_config(dir.path(), &cfg);
    for round in 0..2 {
        if round == 1 {
            send_counted(&bsc, port, 1 << 32, 25);
        }
        let on_disk = pcap_files(&root);
        let list = listed(&bsc);
        assert_eq!(
            list.iter().map(|(p, _)| p.clone()).collect::<Vec<_>>(),
            on_disk,
            "every file on disk is listed: {list:?}"
        );
        assert!(
            on_disk.len() <= 4 && list.iter().filter(|(_, s)| s == "open").count() <= 1,
            "max_files 4, the open file included: {list:?}"
        );
    }
    assert!(bsc.stop().success());
    let on_disk = pcap_files(&root);
    assert!(
        on_disk.len() <= 4,
        "after a clean stop: {:?}",
        names(&on_disk)
    );
    observe(&mut first_of);
    // Names in time order: a higher number never holds earlier data.
    let firsts: Vec<u64> = first_of.values().copied().collect();
    assert!(
        firsts.windows(2).all(|w| w[0] < w[1]),
        "{{seq}} names out of time order: {first_of:?}"
    );
    for f in &on_disk {
        assert!(!writable(f), "{} final after the stop", f.display());
        let (n, stderr) = tcpdump(f);
        assert_eq!(n, read_pcap(f).2.len(), "{}: {stderr}", f.display());
        assert!(!stderr.contains("truncated"), "{}: {stderr}", f.display());
    }
}

/// The last window of a file's life: closed and made final (read-only), bsc
/// stopped before journaling the close. The next start took the journal's
/// word that it was still open, could not append to it (final), wrote the
/// next records to `ret-0001-1.pcap` and forgot `ret-0001.pcap` for good (no
/// retention, no file list, no ship). Now it is closed as it is at the start.
#[test]
fn a_crash_after_a_file_was_made_final_closes_it_at_the_next_start() {
    if !cfg!(debug_assertions) {
        eprintln!("skipped: BSC_DEBUG_CRASH exists only in builds with debug assertions");
        return;
    }
    let (dir, root) = TempDir::with_root("crash-final");
    let (ship, shipped) = ship_to_list(dir.path());
    let port = free_udp_port();
    let cfg = config(
        &root,
        port,
        json!({"rotate_max_packets": 2, "max_files": 2, "ship": ship}),
    );
    let mut bsc = Bsc::with_config_env(dir.path(), &cfg, &[("BSC_DEBUG_CRASH", "final")]);
    let tx = sender(port);
    tx.send(&seq_payload(0)).unwrap();
    tx.send(&seq_payload(1)).unwrap();
    assert_eq!(bsc.wait_exit().signal(), Some(SIGABRT), "the hook");
    let first = root.join("ret-0001.pcap");
    assert!(!writable(&first) && count_records(&first) == 2);

    let bsc = Bsc::with_config(dir.path(), &cfg);
    wait_until("ret-0001 shipped", || {
        std::fs::read_to_string(&shipped).is_ok_and(|s| s.contains("ret-0001.pcap"))
    });
    send_counted(&bsc, port, 2, 1);
    assert_eq!(
        names(&pcap_files(&root)),
        ["ret-0001.pcap", "ret-0002.pcap"]
    );
    let list = listed(&bsc);
    assert_eq!(
        list,
        [
            (first.clone(), "closed".to_string()),
            (root.join("ret-0002.pcap"), "open".to_string())
        ]
    );
    send_counted(&bsc, port, 3, 2);
    wait_until("ret-0001 deleted by retention", || {
        names(&pcap_files(&root)) == ["ret-0002.pcap", "ret-0003.pcap"]
    });
    let (status, log) = bsc.stop_with_log();
    assert!(status.success());
    assert_eq!(behind_lines(&log), Vec::<String>::new());
}

/// Issue 21.5 with a name from the clock: the file created right before the
/// crash is not named by the pattern any more at the restart (a new second),
/// so it is closed at once: made final, listed, shipped, and deleted by
/// retention in its turn.
#[test]
fn a_file_created_right_before_a_crash_under_a_past_name_is_closed_and_shipped() {
    if !cfg!(debug_assertions) {
        eprintln!("skipped: BSC_DEBUG_CRASH exists only in builds with debug assertions");
        return;
    }
    let (dir, root) = TempDir::with_root("crash-clock");
    let (ship, shipped) = ship_to_list(dir.path());
    let port = free_udp_port();
    let cfg = config(
        &root,
        port,
        json!({"rotate_log_index": "second", "file_name_pattern": "%H%M%S-{name}.pcap",
               "max_files": 2, "ship": ship}),
    );
    let mut bsc = Bsc::with_config_env(dir.path(), &cfg, &[("BSC_DEBUG_CRASH", "created")]);
    sender(port).send(&seq_payload(0)).unwrap();
    assert_eq!(bsc.wait_exit().signal(), Some(SIGABRT), "the hook");
    let files = pcap_files(&root);
    assert_eq!(files.len(), 1);
    let orphan = files[0].clone();
    let name = names(&files)[0].clone();
    // The restart comes in another second than the file's.
    wait_until("the next second", || {
        let now = std::process::Command::new("date")
            .args(["-u", "+%H%M%S"])
            .output()
            .unwrap();
        !name.starts_with(String::from_utf8_lossy(&now.stdout).trim())
    });
    let bsc = Bsc::with_config_env(dir.path(), &cfg, &[DRIVEN_CLOCK]);
    wait_until("the crash's file shipped", || {
        std::fs::read_to_string(&shipped).is_ok_and(|s| s.contains(&name))
    });
    assert!(!writable(&orphan), "final");
    let (_, body) = bsc.get("/ret/files");
    let entry = &body[0]["files"][0];
    assert_eq!(
        (
            entry["path"].as_str(),
            entry["state"].as_str(),
            entry["records"].as_u64()
        ),
        (orphan.to_str(), Some("closed"), Some(0)),
        "{body}"
    );
    // Retention (two files, the open one included) deletes it in its turn: a
    // datagram every half second of bsc's clock.
    let tx = sender(port);
    let mut n = 1;
    wait_until("deleted by retention", || {
        tx.send(&seq_payload(n)).unwrap();
        wait_until("the datagram counted", || {
            stats_of(&bsc, port)["packets"].as_u64() >= Some(n)
        });
        n += 1;
        advance_clock(bsc.http_port, 0.5);
        !orphan.exists()
    });
    let (status, log) = bsc.stop_with_log();
    assert!(status.success());
    assert_eq!(behind_lines(&log), Vec::<String>::new());
}

/// README "Store and forward": "every closed file is shipped at least once"
/// and "a handler removed or renamed keeps its waiting files shipping". A file
/// the handler had open when bsc was killed is, after a restart with the
/// handler renamed, was repaired and closed by `settle_left_open` with no
/// `ship`, and never shipped. The `opened` line now records the handler's ship
/// settings, and settling a gone handler's file queues it with them.
#[test]
fn a_file_left_open_by_a_crash_ships_after_its_handler_is_renamed() {
    let (dir, root) = TempDir::with_root("review-renamed");
    let shipped = dir.path().join("shipped");
    let port = free_udp_port();
    let script = format!("echo \"$BSC_FILE\" >> '{}'", shipped.display());
    let cfg = |name: &str| {
        json!({
            "capture_manager": {"root_log_directory": root},
            "handlers": [{"name": name, "conn_type": "udp", "address": ["127.0.0.1", port],
                "rotate_log": false, "file_name_pattern": "{name}-{seq}.pcap",
                "ship": ["/bin/sh", "-c", script, "sh"]}]
        })
    };
    let mut bsc = Bsc::with_config(dir.path(), &cfg("h"));
    send_paced(port, 0, 3, Duration::from_millis(60));
    let open = root.join("h-0001.pcap");
    wait_until("3 records", || count_records(&open) == 3);
    bsc.signal(9);
    bsc.wait_exit();
    let bsc = Bsc::with_config(dir.path(), &cfg("h2"));
    let deadline = Instant::now() + Duration::from_secs(8);
    let target = open.display().to_string();
    while Instant::now() < deadline && !lines_of(&shipped).contains(&target) {
        std::thread::sleep(Duration::from_millis(100));
    }
    let (_, stats) = bsc.get("/stats");
    bsc.stop();
    assert!(
        lines_of(&shipped).contains(&target),
        "{target} (closed after the crash) never shipped; stats: {stats}"
    );
}

/// README "Rotation": "`rotate_max_packets`: a file is closed once it holds
/// that many records." A file a crash left open that already holds N or more
/// records (the limit lowered while bsc was stopped, or a crash between the
/// N-th record's write and the close) is resumed by the first unit and gets
/// one more record before it is closed.
#[test]
fn a_resumed_file_already_full_by_count_gets_no_more_records() {
    let (dir, root) = TempDir::with_root("rt2-resume-full");
    let port = free_udp_port();
    let cfg = |max: u64| {
        json!({
            "capture_manager": {"root_log_directory": root},
            "handlers": [{"name": "h", "conn_type": "udp", "address": ["127.0.0.1", port],
                "rotate_max_packets": max, "file_name_pattern": "{name}-{seq}.pcap"}]
        })
    };
    let mut bsc = Bsc::with_config(dir.path(), &cfg(5));
    send_paced(port, 0, 3, Duration::from_millis(40));
    wait_until("3 records", || {
        count_records(&root.join("h-0001.pcap")) == 3
    });
    bsc.signal(9);
    bsc.wait_exit();
    let bsc = Bsc::with_config(dir.path(), &cfg(2));
    send_paced(port, 3, 1, Duration::from_millis(40));
    wait_until("the unit counted", || stats_of(&bsc, port)["packets"] == 1);
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

/// The same for `rotate_max_bytes` (README "Rotation": "a file is closed when
/// the next record would take it past the limit"): a resumed file already past
/// the limit is appended to.
#[test]
fn a_resumed_file_already_full_by_size_gets_no_more_records() {
    let (dir, root) = TempDir::with_root("rt2-resume-size");
    let port = free_udp_port();
    let cfg = |max: u64| {
        json!({
            "capture_manager": {"root_log_directory": root},
            "handlers": [{"name": "h", "conn_type": "udp", "address": ["127.0.0.1", port],
                "rotate_max_bytes": max, "file_name_pattern": "{name}-{seq}.pcap"}]
        })
    };
    let mut bsc = Bsc::with_config(dir.path(), &cfg(100_000));
    send_paced(port, 0, 3, Duration::from_millis(40));
    wait_until("3 records", || {
        count_records(&root.join("h-0001.pcap")) == 3
    });
    bsc.signal(9);
    bsc.wait_exit();
    let size = std::fs::metadata(root.join("h-0001.pcap")).unwrap().len();
    let bsc = Bsc::with_config(dir.path(), &cfg(size));
    send_paced(port, 3, 1, Duration::from_millis(40));
    wait_until("the unit counted", || stats_of(&bsc, port)["packets"] == 1);
    bsc.stop();
    let after = std::fs::metadata(root.join("h-0001.pcap")).unwrap().len();
    assert_eq!(
        after, size,
        "a file at rotate_max_bytes ({size}) was appended to: now {after} bytes"
    );
}
