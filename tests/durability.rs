//! Black-box tests that do the damage: kill -9 under load, a file system that
//! fills up, retention, the disk budget, persistence across restarts, and
//! `on_close` hooks. Root is needed for the small tmpfs (CI runs as root).

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use serde_json::json;

#[test]
fn kill_9_under_load_loses_nothing_that_was_reported() {
    let (dir, root) = TempDir::with_root("kill9");
    let port = free_udp_port();
    let cfg = config(
        &root,
        vec![udp_handler(
            "k",
            port,
            json!({"rotate_log": false, "file_name_pattern": "k.pcap"}),
        )],
    );
    let mut bsc = Bsc::with_config(dir.path(), &cfg);
    // 50k datagrams/s for at most 3 s (150k at most), paced in 1 ms slices.
    let sender_thread = std::thread::spawn(move || {
        let tx = sender(port);
        let start = Instant::now();
        let mut seq = 0u64;
        while start.elapsed() < Duration::from_secs(3) && seq < 150_000 {
            let due = (start.elapsed().as_secs_f64() * 50_000.0) as u64;
            while seq < due {
                let _ = tx.send(&seq_payload(seq));
                seq += 1;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    });
    // Killed under load, once a good part of it has been reported.
    let mut reported = 0;
    wait_until("30,000 datagrams reported", || {
        reported = stats_of(&bsc, port)["packets"].as_u64().unwrap();
        reported >= 30_000
    });
    bsc.signal(9);
    bsc.wait_exit();
    sender_thread.join().unwrap();
    let path = root.join("k.pcap");
    let (_, _, records) = read_pcap(&path);
    assert!(
        records.len() as u64 >= reported,
        "{} records on disk, /stats said {reported}",
        records.len()
    );
    let (n, stderr) = tcpdump(&path);
    assert_eq!(n, records.len(), "{stderr}");
    assert!(!stderr.contains("truncated"), "{stderr}");

    // Restart onto the same file: appended to, nothing torn.
    let bsc = Bsc::with_config(dir.path(), &cfg);
    sender(port).send(&seq_payload(999_999)).unwrap();
    wait_until("the appended record", || {
        count_records(&path) == records.len() + 1
    });
    assert!(bsc.stop().success());
    let (n, stderr) = tcpdump(&path);
    assert_eq!(n, records.len() + 1, "{stderr}");
    assert!(!stderr.contains("truncated"), "{stderr}");
}

#[test]
fn a_full_disk_degrades_and_capture_resumes_when_space_returns() {
    let dir = TempDir::new("fullfs");
    let fs = SmallFs::new(dir.path(), 4);
    let root = fs.0.join("cap");
    let port = free_udp_port();
    let bsc = Bsc::capturing(
        dir.path(),
        &root,
        vec![udp_handler(
            "f",
            port,
            json!({"rotate_max_bytes": "256KiB", "file_name_pattern": "{name}-{seq}.pcap"}),
        )],
    );
    // Leave about 1 MiB, then send until the disk is full and writes fail (at
    // most 20,000 datagrams of 1000 bytes, 20 MB, through 1 MiB of room).
    let filler = fs.0.join("filler");
    std::fs::write(&filler, vec![0u8; (fs.free() - (1 << 20)) as usize]).unwrap();
    let tx = sender(port);
    let payload = vec![7u8; 1000];
    let mut sent = 0u64;
    let mut seen_degraded = false;
    while sent < 20_000 && !seen_degraded {
        for _ in 0..200 {
            tx.send(&payload).unwrap();
            sent += 1;
        }
        std::thread::sleep(Duration::from_millis(20));
        let (status, health) = bsc.get("/health");
        assert_eq!(status, 200);
        seen_degraded = health["status"] == "degraded";
    }
    assert!(
        seen_degraded,
        "no degraded state after {sent} datagrams into a full file system"
    );
    wait_until("all counted", || stats_of(&bsc, port)["packets"] == sent);
    let s = stats_of(&bsc, port);
    let lost = s["records_lost"].as_u64().unwrap();
    assert!(lost > 0 && s["write_errors"].as_u64().unwrap() > 0, "{s}");
    let on_disk: u64 = pcap_files(&root)
        .iter()
        .map(|f| count_records(f) as u64)
        .sum();
    assert_eq!(
        on_disk + lost,
        sent,
        "every datagram is on disk or counted as lost"
    );
    // Every file is still a valid pcap.
    for f in pcap_files(&root) {
        let (n, stderr) = tcpdump(&f);
        assert!(
            !stderr.contains("truncated") && n == read_pcap(&f).2.len(),
            "{}: {stderr}",
            f.display()
        );
    }

    // Space comes back: within 2 s of the next datagrams, writing resumes.
    std::fs::remove_file(&filler).unwrap();
    let freed = Instant::now();
    let before: usize = pcap_files(&root).iter().map(|f| count_records(f)).sum();
    wait_until("capture resumes", || {
        tx.send(&payload).unwrap();
        std::thread::sleep(Duration::from_millis(20));
        let now: usize = pcap_files(&root).iter().map(|f| count_records(f)).sum();
        now > before && stats_of(&bsc, port)["state"] == "ok"
    });
    assert!(
        freed.elapsed() < Duration::from_secs(2),
        "resumed after {:?}",
        freed.elapsed()
    );
    assert_eq!(bsc.get("/health").1["status"], "ok");
    assert!(bsc.stop().success());
    for f in pcap_files(&root) {
        assert!(!tcpdump(&f).1.contains("truncated"), "{}", f.display());
    }
}

#[test]
fn max_files_keeps_the_newest_and_never_touches_foreign_files() {
    let (dir, root) = TempDir::with_root("maxfiles");
    std::fs::create_dir_all(&root).unwrap();
    let foreign = root.join("operator-notes.pcap");
    std::fs::write(&foreign, b"not bsc's").unwrap();
    let port = free_udp_port();
    let keys = json!({"rotate_log_index": "second", "max_files": 3, "file_name_pattern": "%H%M%S-{name}.pcap"});
    let bsc = Bsc::capturing_driven(dir.path(), &root, vec![udp_handler("r", port, keys)]);
    // 10 s of bsc's clock, a datagram every 0.1 s of it (each counted before
    // the clock moves on: loopback may deliver a datagram late).
    let mut sent = 0u64;
    while sent < 100 {
        send(&bsc, port, sent);
        sent += 1;
        advance_clock(bsc.http_port, 0.1);
    }
    wait_until("every datagram counted", || {
        stats_of(&bsc, port)["packets"] == sent
    });
    wait_until("retention settles", || pcap_files(&root).len() == 4);
    let s = stats_of(&bsc, port);
    let (opened, deleted) = (
        s["files_opened"].as_u64().unwrap(),
        s["files_deleted"].as_u64().unwrap(),
    );
    assert!(deleted >= 6 && opened - deleted == 3, "{s}");
    assert!(bsc.stop().success());
    // The three kept are the newest: together they hold an unbroken run of the
    // last datagrams sent, up to the very last.
    let files: Vec<PathBuf> = pcap_files(&root)
        .into_iter()
        .filter(|f| *f != foreign)
        .collect();
    assert_eq!(files.len(), 3, "{files:?}");
    let mut kept: Vec<u64> = files
        .iter()
        .flat_map(|f| read_pcap(f).2.into_iter().map(|r| seq_of(&r.data)))
        .collect();
    kept.sort_unstable();
    let first = kept[0];
    assert_eq!(kept, (first..sent).collect::<Vec<_>>(), "kept {files:?}");
    assert_eq!(
        std::fs::read(&foreign).unwrap(),
        b"not bsc's",
        "an operator's file is never touched"
    );
}

#[test]
fn max_age_deletes_a_closed_file_once_it_is_older_on_bsc_s_clock() {
    let (dir, root) = TempDir::with_root("maxage");
    let port = free_udp_port();
    let keys =
        json!({"rotate_max_packets": 1, "max_age": 60, "file_name_pattern": "{name}-{seq}.pcap"});
    let bsc = Bsc::capturing_driven(dir.path(), &root, vec![udp_handler("a", port, keys)]);
    let file = |seq: u32| root.join(format!("a-{seq:04}.pcap"));
    // Two files closed now, a third 50 s later (one record each).
    send(&bsc, port, 0);
    send(&bsc, port, 1);
    advance_clock(bsc.http_port, 50.0);
    send(&bsc, port, 2);
    assert!((1..=3).all(|seq| file(seq).exists()));
    // 20 s later the first two are 70 s old, the third 20 s: each advance runs
    // a tick (retention) before bsc reads the next request.
    advance_clock(bsc.http_port, 20.0);
    wait_until("the two older files deleted", || {
        !file(1).exists() && !file(2).exists()
    });
    assert!(file(3).exists(), "20 s old, under max_age");
    assert_eq!(stats_of(&bsc, port)["files_deleted"], 2);
    advance_clock(bsc.http_port, 45.0);
    wait_until("the third deleted at 65 s", || !file(3).exists());
    assert_eq!(stats_of(&bsc, port)["files_deleted"], 3);
    let (status, log) = bsc.stop_with_log();
    assert!(status.success());
    assert_eq!(
        log.iter()
            .filter(|l| l.contains("deleted") && l.contains("retention"))
            .count(),
        3,
        "{log:?}"
    );
}

#[test]
fn the_disk_budget_keeps_a_small_file_system_from_filling() {
    let dir = TempDir::new("budget");
    let fs = SmallFs::new(dir.path(), 4);
    let root = fs.0.join("cap");
    let port = free_udp_port();
    let bsc = Bsc::with_config_env(
        dir.path(),
        &json!({"capture_manager": {"root_log_directory": root, "min_free_bytes": "1MiB"},
                "handlers": [udp_handler("b", port, json!({"rotate_max_bytes": "200KiB", "file_name_pattern": "{name}-{seq}.pcap"}))]}),
        &[DRIVEN_CLOCK],
    );
    // 8 MiB through a 4 MiB file system, at ~2 MiB/s of bsc's clock.
    let tx = sender(port);
    let payload = vec![1u8; 1000];
    let mut min_free = u64::MAX;
    for i in 0..8000u32 {
        tx.send(&payload).unwrap();
        if i % 100 == 99 {
            paced(&bsc, port, i + 1, 0.05);
            min_free = min_free.min(fs.free());
        }
    }
    wait_until("all counted", || stats_of(&bsc, port)["packets"] == 8000);
    let s = stats_of(&bsc, port);
    assert_eq!(s["write_errors"], 0, "the disk never filled: {s}");
    assert!(s["files_deleted"].as_u64().unwrap() > 0, "{s}");
    assert!(min_free > 512 * 1024, "free space fell to {min_free}");
    assert!(bsc.stop().success());
}

#[test]
fn handlers_added_over_the_api_survive_restarts() {
    let (dir, root) = TempDir::with_root("persist");
    let cfg = json!({"capture_manager": {"root_log_directory": root, "manager_server": {"port": free_tcp_port()}}});
    let ports = [free_udp_port(), free_udp_port(), free_udp_port()];
    let bsc = Bsc::with_config(dir.path(), &cfg);
    for (i, port) in ports.iter().enumerate() {
        let body = format!("loc=127.0.0.1&port={port}&conn_type=udp&rotate_log_index=hour&pass={i}&file_name_pattern=%7Bname%7D-%7Bpass%7D.pcap");
        assert_eq!(bsc.form("POST", &format!("/p{i}/start"), &body).0, 201);
    }
    let before = bsc.get("/").1;
    assert!(bsc.stop().success());

    let bsc = Bsc::with_config(dir.path(), &cfg);
    assert_eq!(bsc.get("/").1, before, "same names, addresses and options");
    assert_eq!(bsc.form("DELETE", "/p1/stop", "").0, 200);
    assert!(bsc.stop().success());

    let bsc = Bsc::with_config(dir.path(), &cfg);
    let after = bsc.get("/").1;
    let mut names: Vec<&str> = after
        .as_object()
        .unwrap()
        .values()
        .flat_map(|v| v.as_array().unwrap())
        .map(|e| e["handler"]["name"].as_str().unwrap())
        .collect();
    names.sort_unstable();
    assert_eq!(names, ["p0", "p2"], "the stopped one stays gone");
    sender(ports[2]).send(b"still capturing").unwrap();
    wait_until("restored handler captures", || {
        count_records(&root.join("p2-2.pcap")) == 1
    });
    assert!(bsc.stop().success());

    // A corrupt state file is moved aside; bsc starts anyway.
    std::fs::write(root.join(".bsc/handlers.json"), "[{").unwrap();
    let bsc = Bsc::with_config(dir.path(), &cfg);
    assert_eq!(bsc.get("/").1, json!({}));
    bsc.wait_log("is unreadable");
    assert!(bsc.stop().success());
}

#[test]
fn on_close_runs_once_per_file_with_its_environment_without_delaying_capture() {
    let (dir, root) = TempDir::with_root("onclose");
    let out = dir.path().join("hook-out");
    std::fs::create_dir_all(&out).unwrap();
    let hook = dir.path().join("hook.sh");
    std::fs::write(
        &hook,
        format!("#!/bin/sh\nsleep 2\nenv | grep '^BSC_' | sort > {}/\"$(basename \"$1\")\".env\necho \"$1\" >> {}/calls\n", out.display(), out.display()),
    )
    .unwrap();
    Command::new("chmod").arg("+x").arg(&hook).status().unwrap();
    let port = free_udp_port();
    let bsc = Bsc::with_config(
        dir.path(),
        &json!({"capture_manager": {"root_log_directory": root, "on_close_max_running": 1},
                "handlers": [udp_handler("h", port, json!({"rotate_max_packets": 2, "file_name_pattern": "{name}-{seq}.pcap", "on_close": [hook.to_str().unwrap()]}))]}),
    );
    let tx = sender(port);
    let start = Instant::now();
    for i in 0..6u64 {
        tx.send(&seq_payload(i)).unwrap();
        // Capture keeps pace while the (slow) hooks run one at a time.
        wait_until("captured at once", || {
            stats_of(&bsc, port)["packets"] == i + 1
        });
    }
    wait_until("two files closed, their records on disk", || {
        count_records(&root.join("h-0003.pcap")) == 2
    });
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "capture was not held up by the hooks: {:?}",
        start.elapsed()
    );
    wait_until("both hooks ran (2 s each, one at a time)", || {
        std::fs::read_to_string(out.join("calls")).is_ok_and(|c| c.lines().count() == 2)
    });
    let env = std::fs::read_to_string(out.join("h-0001.pcap.env")).unwrap();
    let f1 = root.join("h-0001.pcap");
    assert!(
        env.contains("BSC_HANDLER=h\n") && env.contains(&format!("BSC_FILE={}\n", f1.display())),
        "{env}"
    );
    assert!(
        env.contains("BSC_RECORDS=2\n")
            && env.contains(&format!(
                "BSC_BYTES={}\n",
                std::fs::metadata(&f1).unwrap().len()
            )),
        "{env}"
    );
    assert!(
        env.contains("BSC_FIRST_TS=20") && env.contains("BSC_LAST_TS=20"),
        "{env}"
    );
    let (status, log) = bsc.stop_with_log();
    assert!(status.success());
    assert!(
        log.iter()
            .any(|l| l.contains("on_close:") && l.contains("h-0001.pcap: done")),
        "{log:?}"
    );
    let calls = std::fs::read_to_string(out.join("calls")).unwrap();
    assert_eq!(
        calls.lines().filter(|l| l.ends_with("h-0001.pcap")).count(),
        1,
        "once per file: {calls}"
    );
}

#[test]
fn the_disk_budget_takes_a_file_waiting_for_its_hook_only_when_nothing_else_is_left_and_says_so() {
    let dir = TempDir::new("budget-hook");
    let fs = SmallFs::new(dir.path(), 4);
    let root = fs.0.join("cap");
    let port = free_udp_port();
    // Every hook waits (bounded) while `hold` exists: all closed files are held.
    let hook = dir.path().join("hook.sh");
    std::fs::write(
        &hook,
        format!(
            "#!/bin/sh\ni=0\nwhile [ -e '{d}/hold' ] && [ $i -lt 600 ]; do sleep 0.05; i=$((i + 1)); done\nexit 0\n",
            d = dir.path().display()
        ),
    )
    .unwrap();
    assert!(Command::new("chmod")
        .arg("+x")
        .arg(&hook)
        .status()
        .unwrap()
        .success());
    std::fs::write(dir.path().join("hold"), b"").unwrap();
    let bsc = Bsc::with_config_env(
        dir.path(),
        &json!({"capture_manager": {"root_log_directory": root, "min_free_bytes": "1MiB"},
                "handlers": [udp_handler("b", port, json!({"rotate_max_bytes": "200KiB", "file_name_pattern": "{name}-{seq}.pcap", "on_close": [hook]}))]}),
        &[DRIVEN_CLOCK],
    );
    // 8 MiB through a 4 MiB file system, at ~2 MiB/s of bsc's clock.
    let tx = sender(port);
    let payload = vec![1u8; 1000];
    for i in 0..8000u32 {
        tx.send(&payload).unwrap();
        if i % 100 == 99 {
            paced(&bsc, port, i + 1, 0.05);
        }
    }
    wait_until("all counted", || stats_of(&bsc, port)["packets"] == 8000);
    let s = stats_of(&bsc, port);
    assert_eq!(s["write_errors"], 0, "the disk never filled: {s}");
    let not_run = s["hooks_not_run"].as_u64().unwrap();
    assert!(not_run > 0, "{s}");
    assert!(s["files_deleted"].as_u64().unwrap() >= not_run, "{s}");
    std::fs::remove_file(dir.path().join("hold")).unwrap();
    let (status, log) = bsc.stop_with_log();
    assert!(status.success());
    let said = log
        .iter()
        .filter(|l| l.contains("disk budget: deleting") && l.contains("although its on_close hook"))
        .count();
    assert_eq!(said as u64, not_run, "each one logged: {log:?}");
    assert!(
        !log.iter()
            .any(|l| l.contains("refused") || l.contains("no record")),
        "{log:?}"
    );
}
