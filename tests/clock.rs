//! The clock's word on every file (issue 26): whether the system clock was
//! synchronised the whole time a file was open and the largest max error the
//! kernel gave it, in `GET /<name>/files`, `bsc files`, the journal (after a
//! restart, after a crash) and `/metrics`.
//!
//! The kernel's answer is injected: bsc runs with an `LD_PRELOAD` shim
//! (`tests/shims/adjtimex.c`, compiled here with `cc`) that answers
//! `adjtimex` from a file the test rewrites, and counts the calls. One test
//! runs without it and compares bsc's word with a probe's own `adjtimex`.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

/// The injected kernel: the shim, the file it answers from, the call count.
struct Kernel {
    shim: String,
    answer: PathBuf,
    calls: PathBuf,
}

impl Kernel {
    /// Compiles the shim into `dir`; the kernel says `first`.
    fn new(dir: &Path, first: &str) -> Kernel {
        let shim = dir.join("adjtimex-shim.so");
        let out = Command::new("cc")
            .args(["-shared", "-fPIC", "-O2", "-Wall", "-o"])
            .arg(&shim)
            .arg(repo().join("tests/shims/adjtimex.c"))
            .output()
            .expect("cc is needed to build the adjtimex shim (tests/deps.sh installs gcc)");
        assert_success(&out);
        let k = Kernel {
            shim: shim.to_str().unwrap().to_string(),
            answer: dir.join("adjtimex-answer"),
            calls: dir.join("adjtimex-calls"),
        };
        k.say(first);
        k
    }

    /// What `adjtimex` answers from now on (`sync N`, `unsync N`, anything
    /// else: it fails). Replaced whole, so no call reads half of it.
    fn say(&self, answer: &str) {
        let tmp = self.answer.with_extension("tmp");
        std::fs::write(&tmp, answer).unwrap();
        std::fs::rename(&tmp, &self.answer).unwrap();
    }

    /// The environment that starts bsc on this kernel.
    fn env(&self) -> [(&str, &str); 3] {
        [
            ("LD_PRELOAD", self.shim.as_str()),
            ("BSC_TEST_ADJTIMEX", self.answer.to_str().unwrap()),
            ("BSC_TEST_ADJTIMEX_CALLS", self.calls.to_str().unwrap()),
        ]
    }

    /// `adjtimex` calls so far.
    fn calls(&self) -> u64 {
        std::fs::metadata(&self.calls).map_or(0, |m| m.len())
    }
}

/// `bsc_clock_max_error_seconds` in `/metrics`, if written.
fn max_error_metric(bsc: &Bsc) -> Option<f64> {
    bsc.metrics()
        .lines()
        .find_map(|l| l.strip_prefix("bsc_clock_max_error_seconds "))
        .map(|v| v.parse().unwrap())
}

/// Has the kernel say `answer` and moves bsc's driven clock until its
/// once-a-second reading took it in (`/metrics` shows `max_error`).
fn kernel_says(bsc: &Bsc, k: &Kernel, answer: &str, max_error: Option<f64>) {
    k.say(answer);
    wait_advancing(bsc.http_port, 1.0, answer, || {
        max_error_metric(bsc) == max_error
    });
}

/// (clock, clock_max_error_us) of each file `GET /tlm/files` lists, and
/// whether it is open.
fn words(bsc: &Bsc) -> Vec<(String, Value, bool)> {
    let (status, body) = bsc.get("/tlm/files");
    assert_eq!(status, 200, "{body}");
    body[0]["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["clock"].as_str().unwrap().to_string(),
                f["clock_max_error_us"].clone(),
                f["state"] == "open",
            )
        })
        .collect()
}

fn word(clock: &str, max_error_us: Value, open: bool) -> (String, Value, bool) {
    (clock.to_string(), max_error_us, open)
}

/// The `X-Bsc-Clock` header of `GET /tlm/data` (every record of tlm).
fn extract_clock(bsc: &Bsc) -> String {
    let r = bsc.request("GET", "/tlm/data", None, b"");
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    r.header("x-bsc-clock").expect("X-Bsc-Clock").to_string()
}

fn rotate(bsc: &Bsc) {
    let (status, body) = bsc.form("POST", "/tlm/rotate", "");
    assert_eq!(status, 200, "{body}");
}

fn bsc_files(bsc: &Bsc, json: bool) -> String {
    let server = format!("127.0.0.1:{}", bsc.http_port);
    let mut args = vec!["files", "tlm", "--server", &server];
    if json {
        args.push("--json");
    }
    let out = Command::new(env!("CARGO_BIN_EXE_bsc"))
        .args(&args)
        .env_remove("BSC_SERVER")
        .env_remove("BSC_TOKEN")
        .output()
        .unwrap();
    assert_success(&out);
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn files_made_while_the_clock_was_unsynchronized_say_so() {
    let dir = TempDir::new("clock-files");
    let root = dir.path().join("cap");
    let k = Kernel::new(dir.path(), "sync 400");
    let port = free_udp_port();
    let config = config(
        &root,
        vec![udp_handler(
            "tlm",
            port,
            json!({"file_name_pattern": "{name}.pcap", "rotate_log": false}),
        )],
    );
    let mut env = k.env().to_vec();
    env.push(DRIVEN_CLOCK);
    let bsc = Bsc::with_config_env(dir.path(), &config, &env);
    assert_eq!(max_error_metric(&bsc), Some(0.0004), "read at start");
    assert_eq!(bsc.get("/health").1["clock_synchronized"], true);

    // A rotation opens the next file at once, with the reading of that moment.
    // A: synchronised all the time; its max error the largest seen.
    send(&bsc, port, 0);
    assert_eq!(words(&bsc), [word("synchronized", json!(400), true)]);
    kernel_says(&bsc, &k, "sync 900", Some(0.0009));
    rotate(&bsc);
    // B: unsynchronised for a while, synchronised again before it closed.
    send(&bsc, port, 1);
    kernel_says(&bsc, &k, "unsync 16000000", Some(16.0));
    let health = bsc.get("/health").1;
    assert_eq!(health["clock_synchronized"], false, "{health}");
    let metrics = bsc.metrics();
    promtool_accepts(&metrics);
    assert!(
        metrics.lines().any(|l| l == "bsc_clock_synchronized 0"),
        "{metrics}"
    );
    assert!(metrics.contains("# HELP bsc_clock_max_error_seconds "));
    assert!(metrics.contains("# TYPE bsc_clock_max_error_seconds gauge"));
    kernel_says(&bsc, &k, "sync 300", Some(0.0003));
    assert_eq!(bsc.get("/health").1["clock_synchronized"], true);
    rotate(&bsc);
    // C: synchronised at its opening, then not.
    kernel_says(&bsc, &k, "unsync 16000000", Some(16.0));
    send(&bsc, port, 2);
    rotate(&bsc);
    // D: opened and closed while unsynchronised.
    send(&bsc, port, 3);
    kernel_says(&bsc, &k, "no answer", None);
    let metrics = bsc.metrics();
    promtool_accepts(&metrics);
    assert!(
        metrics.lines().any(|l| l == "bsc_clock_synchronized 0"),
        "{metrics}"
    );
    rotate(&bsc);
    // E: opened while adjtimex failed: bsc cannot tell, even once it can
    // read the kernel again.
    send(&bsc, port, 4);
    kernel_says(&bsc, &k, "sync 200", Some(0.0002));
    let unsync = || word("unsynchronized", json!(16_000_000), false);
    let want = [
        word("synchronized", json!(900), false),
        unsync(),
        unsync(),
        unsync(),
        word("unknown", json!(200), true),
    ];
    assert_eq!(words(&bsc), want);
    // The extract answer says the same of the files it reads.
    assert_eq!(
        extract_clock(&bsc),
        "unsynchronized; files=5; unsynchronized=3; unknown=1; max_error_us=16000000"
    );

    // bsc files: the table and --json.
    let table = bsc_files(&bsc, false);
    let rows: Vec<Vec<&str>> = table
        .lines()
        .skip(2)
        .map(|l| l.split_whitespace().collect())
        .collect();
    let clock_columns: Vec<(&str, &str, &str)> = rows.iter().map(|r| (r[0], r[8], r[9])).collect();
    let unsync_row = ("closed", "unsynchronized", "16.0");
    assert_eq!(
        clock_columns,
        [
            ("closed", "synchronized", "900"),
            unsync_row,
            unsync_row,
            unsync_row,
            ("open", "unknown", "200"),
        ],
        "{table}"
    );
    assert!(
        table.contains("CLOCK") && table.contains("MAX ERROR"),
        "{table}"
    );
    let listed: Value = serde_json::from_str(&bsc_files(&bsc, true)).unwrap();
    assert_eq!(listed[0]["files"][1]["clock"], "unsynchronized");
    assert_eq!(listed[0]["files"][1]["clock_max_error_us"], 16_000_000);

    // A restart: the words come back from the journal; E, closed at the
    // stop, stays unknown.
    assert!(bsc.stop().success());
    let bsc = Bsc::with_config_env(dir.path(), &config, &env);
    let mut closed = want.clone();
    closed[4].2 = false;
    assert_eq!(words(&bsc), closed);
    assert_eq!(
        extract_clock(&bsc),
        "unsynchronized; files=5; unsynchronized=3; unknown=1; max_error_us=16000000",
        "from the journal"
    );

    // F: a crash leaves it open; after the restart bsc cannot vouch for it.
    sender(port).send(&seq_payload(5)).unwrap();
    wait_until("F opened", || words(&bsc).len() == 6);
    assert_eq!(words(&bsc)[5], word("synchronized", json!(200), true));
    drop(bsc); // SIGKILL
    let bsc = Bsc::with_config_env(dir.path(), &config, &env);
    let after = words(&bsc);
    assert_eq!(after.len(), 6, "{after:?}");
    assert_eq!(after[5].0, "unknown", "{after:?}");
    assert_eq!(&after[..5], &closed[..]);
    let journal = std::fs::read_to_string(journal_of(&root)).unwrap();
    assert!(
        journal.contains(r#""clock":{"synchronized":false,"max_error_us":16000000}"#),
        "{journal}"
    );
    assert!(bsc.stop().success());
}

#[test]
fn adjtimex_is_asked_once_a_second_not_per_datagram() {
    let dir = TempDir::new("clock-rate");
    let root = dir.path().join("cap");
    let k = Kernel::new(dir.path(), "sync 100");
    let port = free_udp_port();
    let started = Instant::now();
    let bsc = Bsc::with_config_env(
        dir.path(),
        &config(&root, vec![udp_handler("tlm", port, json!({}))]),
        &k.env(),
    );
    // A steady stream for about two seconds (bounded in count and time).
    let tx = sender(port);
    let mut sent = 0u64;
    let stream = Instant::now();
    while sent < 20_000 && stream.elapsed() < Duration::from_secs(2) {
        tx.send(&seq_payload(sent)).unwrap();
        sent += 1;
        if sent.is_multiple_of(100) {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    wait_until("every datagram counted or lost", || {
        let s = stats_of(&bsc, port);
        s["packets"].as_u64().unwrap() + s["kernel_drops"].as_u64().unwrap() >= sent
    });
    // It keeps reading: twice more within a few seconds.
    let before = k.calls();
    wait_until("two more readings", || k.calls() >= before + 2);
    let calls = k.calls();
    let elapsed = started.elapsed().as_secs();
    eprintln!("{calls} adjtimex calls in {elapsed} s, {sent} datagrams");
    assert!(
        calls <= elapsed + 2,
        "{calls} adjtimex calls in {elapsed} s ({sent} datagrams)"
    );
    assert!(bsc.stop().success());
}

/// What a probe of our own reads from `adjtimex`: `sync N`, `unsync N` or
/// `fail`.
fn probe(dir: &Path) -> String {
    let src = dir.join("probe.c");
    std::fs::write(
        &src,
        r#"#include <stdio.h>
#include <sys/timex.h>
int main(void) {
    struct timex t = {0};
    int s = adjtimex(&t);
    if (s < 0) { puts("fail"); return 0; }
    printf("%s %ld\n", (s == TIME_ERROR || (t.status & STA_UNSYNC)) ? "unsync" : "sync", t.maxerror);
    return 0;
}
"#,
    )
    .unwrap();
    let exe = dir.join("probe");
    assert_success(
        &Command::new("cc")
            .arg("-o")
            .arg(&exe)
            .arg(&src)
            .output()
            .unwrap(),
    );
    let out = Command::new(&exe).output().unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

#[test]
fn a_real_run_says_what_the_kernel_says() {
    let dir = TempDir::new("clock-real");
    let root = dir.path().join("cap");
    let port = free_udp_port();
    let before = probe(dir.path());
    let bsc = Bsc::capturing(
        dir.path(),
        &root,
        vec![udp_handler(
            "tlm",
            port,
            json!({"file_name_pattern": "{name}.pcap"}),
        )],
    );
    send(&bsc, port, 0);
    let listed = words(&bsc);
    let health = bsc.get("/health").1;
    let max_error = max_error_metric(&bsc);
    let after = probe(dir.path());
    eprintln!("the kernel said {before:?} then {after:?}; bsc: {listed:?}");
    let state = |p: &str| p.split(' ').next().unwrap().to_string();
    if state(&before) != state(&after) {
        // The machine's clock changed state meanwhile: nothing to compare.
        return;
    }
    let (clock, max_error_us, _) = &listed[0];
    match state(&before).as_str() {
        "sync" => {
            assert_eq!(clock, "synchronized");
            assert_eq!(health["clock_synchronized"], true);
        }
        "unsync" => {
            assert_eq!(clock, "unsynchronized");
            assert_eq!(health["clock_synchronized"], false);
        }
        _ => {
            assert_eq!(clock, "unknown");
            assert_eq!(max_error, None);
        }
    }
    if state(&before) != "fail" {
        // The kernel's maxerror moves (it grows between NTP updates, up to
        // 16 s): when the probe read the same before and after, bsc read it too.
        let us = max_error_us.as_u64().expect("a max error");
        assert!(us <= 16_000_000, "{us}");
        if before == after {
            let probe_us: u64 = before.split(' ').nth(1).unwrap().parse().unwrap();
            assert_eq!(us, probe_us);
            assert_eq!(max_error, Some(probe_us as f64 / 1e6));
        }
    }
    assert!(bsc.stop().success());
}
