//! Store and forward, black-box: the real binary, loopback datagrams, real HTTP,
//! and a ship script whose behaviour each test controls through files:
//! `fail` (a count of attempts still to fail), `down` (fail while it exists),
//! `slow` (seconds to sleep before shipping). A shipped file is copied to
//! `central/` and its name appended (O_APPEND) to `received.log`, the receiving
//! end every "exactly once" is counted at. Root is needed for the small tmpfs.

mod common;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

/// The ship script in `dir`, and the folders it uses.
struct Station {
    dir: PathBuf,
    root: PathBuf,
    script: PathBuf,
}

impl Station {
    fn new(dir: &Path, root: &Path) -> Station {
        let script = dir.join("ship.sh");
        std::fs::create_dir_all(dir.join("central")).unwrap();
        std::fs::write(
            &script,
            format!(
                r#"#!/bin/sh
d='{d}'
if [ -e "$d/fail" ]; then
  n=$(cat "$d/fail")
  if [ "$n" -gt 0 ]; then echo $((n - 1)) > "$d/fail"; echo "ship.sh: failing on purpose" >&2; exit 3; fi
fi
if [ -e "$d/down" ]; then exit 4; fi
if [ -e "$d/slow" ]; then sleep "$(cat "$d/slow")"; fi
cp "$1" "$d/central/" || exit 5
if [ -e "$d/env" ]; then env | grep '^BSC_' | sort > "$d/central/${{1##*/}}.env"; fi
echo "${{1##*/}}" >> "$d/received.log"
"#,
                d = dir.display()
            ),
        )
        .unwrap();
        Command::new("chmod")
            .arg("+x")
            .arg(&script)
            .status()
            .unwrap();
        Station {
            dir: dir.to_path_buf(),
            root: root.to_path_buf(),
            script,
        }
    }

    fn set(&self, name: &str, value: &str) {
        std::fs::write(self.dir.join(name), value).unwrap();
    }

    fn clear(&self, name: &str) {
        let _ = std::fs::remove_file(self.dir.join(name));
    }

    /// Whether no process runs the ship script now (no upload in flight).
    fn idle(&self) -> bool {
        let pgrep = Command::new("pgrep")
            .arg("-f")
            .arg(&self.script)
            .output()
            .unwrap();
        String::from_utf8_lossy(&pgrep.stdout).trim().is_empty()
    }

    /// The names the receiving end got, in order, repeats included.
    fn received(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.join("received.log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// A config with one UDP handler `h` shipping through the script, one file
    /// per datagram (closed as soon as it holds it), and `extra` keys.
    fn config(&self, port: u16, extra: Value, cm: Value) -> Value {
        let mut h = json!({"name": "h", "conn_type": "udp", "address": ["127.0.0.1", port],
            "file_name_pattern": "{name}-{seq}.pcap", "rotate_max_packets": 1,
            "ship": [self.script.to_str().unwrap()], "ship_retry_max_s": 1});
        for (k, v) in extra.as_object().unwrap() {
            h[k] = v.clone();
        }
        let mut c = json!({"root_log_directory": self.root});
        for (k, v) in cm.as_object().unwrap() {
            c[k] = v.clone();
        }
        json!({"capture_manager": c, "handlers": [h]})
    }
}

/// `h-0001.pcap` ...
fn name(seq: u64) -> String {
    format!("h-{seq:04}.pcap")
}

/// The paths the journal records as shipped.
fn journaled_shipped(root: &Path) -> HashSet<String> {
    std::fs::read_to_string(root.join(".bsc/files.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|v| v["shipped"]["path"].as_str().map(str::to_string))
        .map(|p| p.rsplit('/').next().unwrap().to_string())
        .collect()
}

#[test]
fn a_failing_ship_command_is_retried_and_every_file_arrives_once_in_order() {
    let (dir, root) = TempDir::with_root("ship-retry");
    let st = Station::new(dir.path(), &root);
    st.set("fail", "3");
    st.set("env", "");
    let port = free_udp_port();
    let bsc = Bsc::with_config_env(
        dir.path(),
        &st.config(port, json!({}), json!({})),
        &[DRIVEN_CLOCK],
    );
    assert_eq!(ship_of(&bsc, port)["pending_files"], 0, "configured: shown");
    // Five datagrams: five closed files (each full with its one record).
    for i in 0..5 {
        send(&bsc, port, i);
    }
    // The retries come after their back-off (at most 1 s of bsc's clock).
    wait_advancing(bsc.http_port, 0.5, "five files shipped", || {
        st.received().len() >= 5
    });
    let want: Vec<String> = (1..=5).map(name).collect();
    assert_eq!(st.received(), want, "once each, oldest first");
    for n in &want {
        assert_eq!(
            std::fs::read(st.dir.join("central").join(n)).unwrap(),
            std::fs::read(root.join(n)).unwrap(),
            "{n} arrived whole"
        );
    }
    let env = std::fs::read_to_string(st.dir.join("central/h-0002.pcap.env")).unwrap();
    assert!(
        env.contains("BSC_HANDLER=h\n") && env.contains("BSC_RECORDS=1\n"),
        "{env}"
    );
    assert!(env.contains(&format!(
        "BSC_FILE={}\n",
        root.join("h-0002.pcap").display()
    )));
    wait_until("stats caught up", || ship_of(&bsc, port)["shipped"] == 5);
    let ship = ship_of(&bsc, port);
    assert_eq!(ship["failures"], 3, "{ship}");
    assert_eq!(ship["pending_files"], 0, "{ship}");
    assert_eq!(ship["pending_bytes"], 0, "{ship}");
    assert_eq!(ship["oldest_pending_age_s"], Value::Null, "{ship}");
    assert_eq!(ship["next_attempt_at"], Value::Null, "{ship}");
    // A success clears the error; when the last failure was is kept.
    assert_eq!(ship["last_error"], Value::Null, "{ship}");
    assert!(
        ship["last_error_at"].as_str().unwrap().ends_with('Z'),
        "{ship}"
    );
    let text = bsc.metrics();
    promtool_accepts(&text);
    assert_eq!(metric(&text, "bsc_shipped_files_total"), 5.0);
    assert_eq!(metric(&text, "bsc_ship_failures_total"), 3.0);
    assert_eq!(metric(&text, "bsc_ship_pending_files"), 0.0);
    assert_eq!(metric(&text, "bsc_ship_dropped_total"), 0.0);
    assert_eq!(bsc.get("/health").1["status"], "ok");
    let (status, log) = bsc.stop_with_log();
    assert!(status.success());
    assert!(
        log.iter()
            .any(|l| l
                .contains("h-0001.pcap: exit status: 3: ship.sh: failing on purpose; not shipped")),
        "{log:?}"
    );
    assert!(log.iter().any(|l| l.contains("ship: handler h: shipped")));
    // A file open at shutdown (no count limit now) is closed and waits to
    // ship: after a restart it ships, and nothing shipped before ships again.
    st.set("down", "");
    let open = json!({"rotate_max_packets": 1000});
    let bsc = Bsc::with_config(dir.path(), &st.config(port, open.clone(), json!({})));
    sender(port).send(&seq_payload(5)).unwrap();
    wait_until("the sixth file open", || {
        stats_of(&bsc, port)["current_file"].is_string() && count_records(&root.join(name(6))) == 1
    });
    assert!(bsc.stop().success());
    st.clear("down");
    let bsc = Bsc::with_config(dir.path(), &st.config(port, open, json!({})));
    wait_until("the file left open at shutdown shipped", || {
        st.received().len() >= 6
    });
    let want: Vec<String> = (1..=6).map(name).collect();
    assert_eq!(st.received(), want);
    assert_eq!(count_records(&st.dir.join("central/h-0006.pcap")), 1);
    assert!(bsc.stop().success());
    assert_eq!(st.received(), want, "none twice");
}

#[test]
fn kill_9_in_the_middle_of_a_backlog_ships_the_rest_and_nothing_journaled_twice() {
    let (dir, root) = TempDir::with_root("ship-kill");
    let st = Station::new(dir.path(), &root);
    st.set("down", "");
    let port = free_udp_port();
    let cfg = st.config(port, json!({}), json!({}));
    let mut bsc = Bsc::with_config(dir.path(), &cfg);
    // A backlog of 20 closed files while the backhaul is down.
    for i in 0..20 {
        send(&bsc, port, i);
    }
    wait_until("20 waiting", || ship_of(&bsc, port)["pending_files"] == 20);
    assert!(st.received().is_empty());
    // The backhaul returns; uploads take 150 ms each. Kill bsc mid-way.
    st.set("slow", "0.15");
    st.clear("down");
    wait_until("some shipped", || st.received().len() >= 6);
    bsc.signal(9);
    let _ = bsc.wait_exit();
    let journaled = journaled_shipped(&root);
    let before_kill = st.received();
    assert!(journaled.len() >= 5, "{journaled:?}");
    // Every name the journal says shipped was received (exit 0 comes first).
    for n in &journaled {
        assert!(before_kill.contains(n), "{n} journaled but never received");
    }
    // An orphaned upload would land before its process is gone.
    wait_until("no upload left running", || st.idle());
    let bsc = Bsc::with_config(dir.path(), &cfg);
    wait_until("all 20 received", || {
        st.received().iter().collect::<HashSet<_>>().len() >= 20
    });
    // A second upload of a file would land before its process is gone.
    wait_until("nothing waiting and no upload running", || {
        ship_of(&bsc, port)["pending_files"] == 0 && st.idle()
    });
    assert!(bsc.stop().success());
    let all = st.received();
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for n in &all {
        *counts.entry(n.as_str()).or_default() += 1;
    }
    let want: Vec<String> = (1..=20).map(name).collect();
    for n in &want {
        assert!(
            counts.contains_key(n.as_str()),
            "{n} never arrived: {all:?}"
        );
    }
    // The guarantee: a file journaled as shipped never ships again; only one
    // whose exit 0 bsc had not journaled when it died may (at most the one in
    // flight: ship_max_running is 1).
    for n in &journaled {
        assert_eq!(
            counts[n.as_str()],
            1,
            "{n} journaled as shipped, shipped again: {all:?}"
        );
    }
    let twice: Vec<_> = counts.iter().filter(|(_, c)| **c > 1).collect();
    assert!(twice.len() <= 1, "{twice:?}");
    // In order, first arrivals counted.
    let mut seen = HashSet::new();
    let firsts: Vec<&String> = all.iter().filter(|n| seen.insert(n.as_str())).collect();
    let sorted = {
        let mut s = firsts.clone();
        s.sort();
        s
    };
    assert_eq!(firsts, sorted, "oldest first across the restart");
    eprintln!(
        "kill -9: {} journaled shipped, {} received before the kill, shipped twice: {twice:?}",
        journaled.len(),
        before_kill.len()
    );
}

#[test]
fn retention_never_deletes_a_file_waiting_to_ship() {
    let (dir, root) = TempDir::with_root("ship-retention");
    let st = Station::new(dir.path(), &root);
    st.set("down", "");
    let port = free_udp_port();
    let bsc = Bsc::with_config_env(
        dir.path(),
        &st.config(port, json!({"max_files": 2, "max_bytes": 200}), json!({})),
        &[DRIVEN_CLOCK],
    );
    for i in 0..8 {
        send(&bsc, port, i);
    }
    wait_until("8 waiting", || ship_of(&bsc, port)["pending_files"] == 8);
    let ship = ship_of(&bsc, port);
    assert!(ship["failures"].as_u64().unwrap() >= 1, "{ship}");
    assert!(ship["next_attempt_at"].is_string(), "{ship}");
    assert!(ship["pending_bytes"].as_u64().unwrap() > 8 * 24, "{ship}");
    // A few ticks of retention: each advance runs one in the turn that
    // answers it, before bsc reads the next request.
    for _ in 0..3 {
        advance_clock(bsc.http_port, 1.0);
    }
    assert_eq!(stats_of(&bsc, port)["files_deleted"], 0);
    for seq in 1..=8 {
        assert!(
            root.join(name(seq)).exists(),
            "{} deleted unshipped",
            name(seq)
        );
    }
    // Back up: everything ships, then retention deletes what it may.
    st.clear("down");
    wait_advancing(bsc.http_port, 0.5, "8 shipped", || st.received().len() >= 8);
    wait_until("retention caught up", || pcap_files(&root).len() <= 2);
    assert_eq!(st.received(), (1..=8).map(name).collect::<Vec<_>>());
    assert!(bsc.stop().success());
}

#[test]
fn delete_after_ship_keeps_only_what_central_storage_lacks() {
    let (dir, root) = TempDir::with_root("ship-delete");
    let st = Station::new(dir.path(), &root);
    let port = free_udp_port();
    let bsc = Bsc::with_config(
        dir.path(),
        &st.config(
            port,
            json!({"delete_after_ship": true, "rotate_max_packets": 2}),
            json!({}),
        ),
    );
    // Two records a file: two files closed, the third open.
    for i in 0..5 {
        send(&bsc, port, i);
    }
    wait_until("2 shipped", || st.received().len() >= 2);
    wait_until("2 deleted", || stats_of(&bsc, port)["files_deleted"] == 2);
    let left: Vec<_> = pcap_files(&root);
    assert_eq!(left, vec![root.join(name(3))], "only the open file");
    for seq in 1..=2 {
        assert_eq!(count_records(&st.dir.join("central").join(name(seq))), 2);
    }
    let (status, log) = bsc.stop_with_log();
    assert!(status.success());
    assert!(log.iter().any(|l| l.contains("shipped, delete_after_ship")));
}

#[test]
fn the_disk_budget_drops_waiting_files_last_and_says_so() {
    let dir = TempDir::new("ship-budget");
    let fs = SmallFs::new(dir.path(), 4);
    let root = fs.0.join("cap");
    let st = Station::new(dir.path(), &root);
    st.set("down", "");
    let port = free_udp_port();
    let bsc = Bsc::with_config_env(
        dir.path(),
        &st.config(
            port,
            json!({"rotate_max_packets": 100, "ship_retry_max_s": 60}),
            json!({"min_free_bytes": "2MiB"}),
        ),
        &[DRIVEN_CLOCK],
    );
    // 3.5 MB of 1000-byte datagrams (100 KB files) through 2 MiB of room, at
    // ~3 MB/s of bsc's clock.
    let tx = sender(port);
    let payload = vec![9u8; 1000];
    for i in 0..3500u32 {
        tx.send(&payload).unwrap();
        if i % 100 == 99 {
            paced(&bsc, port, i + 1, 0.03);
        }
    }
    wait_until("all counted", || stats_of(&bsc, port)["packets"] == 3500);
    wait_until("the budget dropped waiting files", || {
        ship_of(&bsc, port)["dropped"].as_u64() > Some(0)
    });
    let s = stats_of(&bsc, port);
    assert_eq!(s["write_errors"], 0, "the disk never filled: {s}");
    assert!(fs.free() >= 1 << 20, "free {}", fs.free());
    let dropped = s["ship"]["dropped"].as_u64().unwrap();
    let text = bsc.metrics();
    promtool_accepts(&text);
    assert_eq!(metric(&text, "bsc_ship_dropped_total"), dropped as f64);
    assert!(metric(&text, "bsc_ship_pending_files") >= 1.0);
    let (status, log) = bsc.stop_with_log();
    assert!(status.success());
    let lines: Vec<_> = log
        .iter()
        .filter(|l| l.contains("although it was not shipped yet"))
        .collect();
    assert_eq!(
        lines.len() as u64,
        dropped,
        "one error line per file: {lines:?}"
    );
    assert!(
        lines[0].contains("h-0001.pcap"),
        "the oldest first: {lines:?}"
    );
    assert!(lines[0].contains("error"), "{lines:?}");
    assert!(st.received().is_empty());
}

#[test]
fn a_timeout_kills_the_command_and_a_gone_handler_still_ships_its_files() {
    let (dir, root) = TempDir::with_root("ship-timeout");
    let st = Station::new(dir.path(), &root);
    st.set("slow", "30.4242");
    let port = free_udp_port();
    let cfg = st.config(port, json!({"ship_timeout_s": 1}), json!({}));
    let bsc = Bsc::with_config_env(dir.path(), &cfg, &[DRIVEN_CLOCK]);
    send(&bsc, port, 0);
    send(&bsc, port, 1);
    wait_advancing(bsc.http_port, 0.5, "a timeout", || {
        ship_of(&bsc, port)["failures"].as_u64() >= Some(1)
    });
    let ship = ship_of(&bsc, port);
    assert!(
        ship["last_error"]
            .as_str()
            .unwrap()
            .contains("timed out after 1 s"),
        "{ship}"
    );
    // The process group was killed: no sleep of the script is left.
    wait_until(
        "the script's sleep gone with its group, not left running",
        || {
            let pgrep = Command::new("pgrep")
                .args(["-f", "sleep 30.4242"])
                .output()
                .unwrap();
            String::from_utf8_lossy(&pgrep.stdout).trim().is_empty()
        },
    );
    assert!(st.received().is_empty());
    assert!(bsc.stop().success());
    // The handler is gone from the config (renamed): its files still ship, with
    // the command recorded when they closed.
    st.clear("slow");
    let mut renamed = cfg.clone();
    renamed["handlers"][0]["name"] = json!("g");
    renamed["handlers"][0]["file_name_pattern"] = json!("{name}-{seq}.pcap");
    let bsc = Bsc::with_config(dir.path(), &renamed);
    wait_until("h's two files shipped", || st.received().len() >= 2);
    assert_eq!(st.received(), vec![name(1), name(2)]);
    let text = bsc.metrics();
    promtool_accepts(&text);
    assert!(
        text.contains("bsc_shipped_files_total{handler=\"h\",address=\"['127.0.0.1', "),
        "{text}"
    );
    assert!(bsc.stop().success());
}

#[test]
fn ship_is_config_file_only_and_bad_values_are_refused_at_load() {
    let (dir, root) = TempDir::with_root("ship-config");
    let port = free_udp_port();
    let bsc = Bsc::capturing(dir.path(), &root, vec![]);
    let body = json!({"conn_type": "udp", "port": port, "loc": "127.0.0.1", "ship": ["/bin/true"]});
    let r = bsc.request(
        "POST",
        "/x/start",
        Some("application/json"),
        body.to_string().as_bytes(),
    );
    assert_eq!(r.status, 400);
    assert!(
        r.json()["error"]
            .as_str()
            .unwrap()
            .contains("ship: store and forward can only be configured in the config file"),
        "{}",
        r.json()
    );
    assert!(bsc.stop().success());
    for (handler, cm, want) in [
        (
            json!({"ship": []}),
            json!({}),
            "ship: must be a command as a list",
        ),
        (
            json!({"ship": ["/bin/up", ""]}),
            json!({}),
            "ship: every element must be a non-empty string",
        ),
        (
            json!({"ship_timeout_s": 3}),
            json!({}),
            "ship_timeout_s: only applies with ship",
        ),
        (
            json!({"ship": ["up"], "ship_retry_max_s": -1}),
            json!({}),
            "ship_retry_max_s: must be a number of seconds",
        ),
        (
            json!({"ship": ["up"]}),
            json!({"ship_max_running": 0}),
            "ship_max_running: must be",
        ),
        (
            json!({"ship": ["up"]}),
            json!({"ship_max_pending_age_s": 1e20}),
            "ship_max_pending_age_s: must be",
        ),
        (
            json!({"ship": ["up"], "ship_timeout": 3}),
            json!({}),
            "did you mean \"ship_timeout_s\"",
        ),
        (
            json!({"ship": ["/bin/up\u{1b}[2J"]}),
            json!({}),
            "ship: contains the control character",
        ),
    ] {
        let mut h = json!({"name": "h", "conn_type": "udp", "address": ["127.0.0.1", port]});
        for (k, v) in handler.as_object().unwrap() {
            h[k] = v.clone();
        }
        let mut c = json!({"root_log_directory": root});
        for (k, v) in cm.as_object().unwrap() {
            c[k] = v.clone();
        }
        let path = write_config(dir.path(), &json!({"capture_manager": c, "handlers": [h]}));
        let out = Command::new(env!("CARGO_BIN_EXE_bsc"))
            .args(["check", "--config", path.to_str().unwrap()])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{handler} {cm}: accepted");
        // Errors name the key (`key "ship": ...`, `capture_manager.ship_max_running: ...`).
        let ok = match want.split_once(": ") {
            Some((key, msg)) => {
                (err.contains(&format!("\"{key}\"")) || err.contains(&format!("{key}: ")))
                    && err.contains(msg)
            }
            None => err.contains(want),
        };
        assert!(ok, "{handler} {cm}: {err}");
    }
}

#[test]
fn health_degrades_when_the_oldest_waiting_file_is_too_old() {
    let (dir, root) = TempDir::with_root("ship-health");
    let st = Station::new(dir.path(), &root);
    st.set("down", "");
    let port = free_udp_port();
    let bsc = Bsc::with_config_env(
        dir.path(),
        &st.config(port, json!({}), json!({"ship_max_pending_age_s": 2})),
        &[DRIVEN_CLOCK],
    );
    send(&bsc, port, 0);
    send(&bsc, port, 1);
    assert_eq!(bsc.get("/health").1["status"], "ok");
    wait_advancing(bsc.http_port, 0.5, "degraded", || {
        bsc.get("/health").1["status"] == "degraded"
    });
    let health = bsc.get("/health").1;
    let reasons = health["reasons"].to_string();
    assert!(
        reasons.contains("ship: handler h: the oldest file waiting to ship")
            && reasons.contains("exit status: 4"),
        "{health}"
    );
    assert!(metric(&bsc.metrics(), "bsc_ship_oldest_pending_age_seconds") >= 2.0);
    st.clear("down");
    wait_advancing(bsc.http_port, 0.5, "ok again once shipped", || {
        bsc.get("/health").1["status"] == "ok"
    });
    assert!(bsc.stop().success());
}

/// The figure for the README: a backlog made by an outage at a steady rate of
/// closed files, and how long it takes to drain once the backhaul returns.
/// Scaled by default (1000 files/min, a 6 s outage, retries every second, about
/// 10 s); `BSC_SHIP_DRAIN_REAL=1` runs the real case (100 files/min, a 60 s
/// outage, the default back-off: 5 s doubling up to 600 s).
#[test]
fn a_backlog_after_an_outage_drains() {
    let real = std::env::var_os("BSC_SHIP_DRAIN_REAL").is_some();
    let (per_min, outage, extra) = if real {
        (
            100.0,
            Duration::from_secs(60),
            json!({"ship_retry_max_s": 600}),
        )
    } else {
        (
            1000.0,
            Duration::from_secs(6),
            json!({"ship_retry_max_s": 1}),
        )
    };
    let every = Duration::from_secs_f64(60.0 / per_min);
    let (dir, root) = TempDir::with_root("ship-drain");
    let st = Station::new(dir.path(), &root);
    st.set("down", "");
    let port = free_udp_port();
    let bsc = Bsc::with_config(dir.path(), &st.config(port, extra, json!({})));
    let tx = sender(port);
    let start = Instant::now();
    let mut sent = 0u64;
    let tick = |sent: &mut u64| {
        let due = start + every.mul_f64(*sent as f64);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        tx.send(&seq_payload(*sent)).unwrap();
        *sent += 1;
    };
    while start.elapsed() < outage {
        tick(&mut sent);
    }
    st.clear("down");
    let up = Instant::now();
    // Every file closed so far (all but the open one) was closed during the
    // outage; drained: all of them have arrived. Files keep closing meanwhile.
    let backlog = sent - 1;
    let at_up = ship_of(&bsc, port)["pending_files"].as_u64().unwrap();
    let mut peak = at_up;
    let drained = loop {
        tick(&mut sent);
        peak = peak.max(ship_of(&bsc, port)["pending_files"].as_u64().unwrap());
        if st.received().len() as u64 >= backlog {
            break up.elapsed();
        }
        assert!(up.elapsed() < Duration::from_secs(300), "never drained");
    };
    // And it keeps up afterwards: a second later, at most a few files wait.
    let settle = Instant::now();
    while settle.elapsed() < Duration::from_secs(1) {
        tick(&mut sent);
    }
    let after = ship_of(&bsc, port)["pending_files"].as_u64().unwrap();
    assert!(after <= 3, "{after} files still waiting after the drain");
    let received = st.received();
    let unique: HashSet<_> = received.iter().collect();
    assert_eq!(unique.len(), received.len(), "none twice");
    let mut sorted = received.clone();
    sorted.sort();
    assert_eq!(sorted, received, "in order");
    let ship = ship_of(&bsc, port);
    eprintln!(
        "drain: {per_min} files/min, outage {:?}: {at_up} files waiting when the backhaul returned (peak {peak}), drained {:.1} s later, {after} waiting 1 s after; {} shipped, {} failed attempts",
        outage,
        drained.as_secs_f64(),
        ship["shipped"],
        ship["failures"]
    );
    assert!(bsc.stop().success());
}

/// README "Store and forward": oldest first, at least once, never again once
/// journaled as shipped; across journal compaction (past ~1024 lines) and a
/// restart with the backlog waiting.
#[test]
fn a_backlog_of_1200_files_ships_oldest_first_once_across_compaction_and_restart() {
    let (dir, root) = TempDir::with_root("rt2-ship-compact");
    let (ship, down, shipped) = ship_unless_down(dir.path());
    let port = free_udp_port();
    let keys = json!({"rotate_max_packets": 1, "file_name_pattern": "{name}-{seq:6}.pcap", "ship_retry_max_s": 1, "ship": ship});
    let cfg = config(&root, vec![udp_handler("h", port, keys)]);
    let bsc = Bsc::with_config_env(dir.path(), &cfg, &[DRIVEN_CLOCK]);
    let s = sender(port);
    for i in 0..700u64 {
        s.send(&seq_payload(i)).unwrap();
        std::thread::sleep(Duration::from_millis(1));
    }
    wait_until("700 files", || pcap_files(&root).len() == 700);
    // Some ship, in the middle of the backlog, then down again.
    std::fs::remove_file(&down).unwrap();
    wait_advancing(bsc.http_port, 0.5, "some shipped", || {
        std::fs::read_to_string(&shipped).map_or(0, |t| t.lines().count()) >= 100
    });
    std::fs::write(&down, "").unwrap();
    for i in 700..1200u64 {
        s.send(&seq_payload(i)).unwrap();
        std::thread::sleep(Duration::from_millis(1));
    }
    wait_until("1200 files", || pcap_files(&root).len() == 1200);
    // Failed attempts and ticks (compaction) meanwhile: two ticks of bsc's clock.
    for _ in 0..2 {
        advance_clock(bsc.http_port, 1.0);
    }
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
    // A second upload of a file would land before its process is gone.
    wait_until("nothing waiting and no upload running", || {
        let pgrep = Command::new("pgrep")
            .arg("-f")
            .arg(shipped.display().to_string())
            .output()
            .unwrap();
        ship_of(&bsc, port)["pending_files"] == 0
            && String::from_utf8_lossy(&pgrep.stdout).trim().is_empty()
    });
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
