//! Black-box tests of the promises bsc makes about its files: every path confined
//! to its base, one writer per file, a closed file is final, names never reused,
//! retention and hooks once per file — each across sequences of operations
//! (start, rotate with metadata, reload, restart, restore), with hostile values at
//! every entry point. Each test is named after the defect it guards against.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::*;
use serde_json::{json, Value};

/// A form body with every value percent-encoded.
fn form(fields: &[(&str, &str)]) -> String {
    fields
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// Every file (not folder) below `dir`, recursively.
fn files_below(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() && !p.is_symlink() {
                out.extend(files_below(&p));
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// The `/stats` entry of the handler at 127.0.0.1:`port`.
/// Sends `payload` to 127.0.0.1:`port` and waits until the handler there counted
/// `packets` units in all.
fn send_and_wait(bsc: &Bsc, port: u16, payload: &[u8], packets: u64) {
    sender(port).send(payload).unwrap();
    wait_until(&format!("{packets} packets on port {port}"), || {
        stats_of(bsc, port)["packets"].as_u64() >= Some(packets)
    });
}

/// `POST /<name>/start` of a UDP handler on 127.0.0.1:`port` with `extra` fields.
fn start_udp(bsc: &Bsc, name: &str, port: u16, extra: &[(&str, &str)]) -> (u16, Value) {
    let port = port.to_string();
    let mut fields = vec![
        ("loc", "127.0.0.1"),
        ("port", port.as_str()),
        ("conn_type", "udp"),
    ];
    fields.extend_from_slice(extra);
    bsc.form("POST", &format!("/{name}/start"), &form(&fields))
}

/// Starts bsc on `root` with no config handlers (API only).
fn api_only(dir: &Path, root: &Path) -> Bsc {
    Bsc::capturing(dir, root, vec![])
}

#[test]
fn rotate_metadata_can_never_move_files_outside_the_root() {
    let (dir, root) = TempDir::with_root("escape");
    let outside = dir.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    let bsc = api_only(dir.path(), &root);
    let port = free_udp_port();
    // `{a}/<abs path>`: with a=x inside the root; with an empty a it would be
    // the absolute folder `outside`.
    let escape = format!("{{a}}{}", outside.display());
    let (status, body) = start_udp(
        &bsc,
        "esc",
        port,
        &[
            ("path", &escape),
            ("a", "x"),
            ("file_name_pattern", "f.pcap"),
        ],
    );
    assert_eq!(status, 201, "{body}");
    assert!(body["log_file_path"]
        .as_str()
        .unwrap()
        .starts_with(root.to_str().unwrap()));
    for hostile in ["", ".", "..", "/", "x/y", "a\nb"] {
        let (status, body) = bsc.form("POST", "/esc/rotate", &form(&[("a", hostile)]));
        assert_eq!(status, 400, "a={hostile:?}: {body}");
        assert!(body["error"].is_string());
    }
    // `.{a}.` renders `..` with an empty value: refused at start and at rotate.
    let port2 = free_udp_port();
    let (status, _) = start_udp(&bsc, "dots", port2, &[("path", ".{a}."), ("a", "")]);
    assert_eq!(status, 400);
    send_and_wait(&bsc, port, b"inside", 1);
    let (status, _) = bsc.form("POST", "/esc/rotate", &form(&[("a", "y")]));
    assert_eq!(status, 200);
    send_and_wait(&bsc, port, b"inside too", 2);
    assert!(bsc.stop().success());
    assert!(
        files_below(&outside).is_empty(),
        "{:?}",
        files_below(&outside)
    );
    let inside = files_below(&root.join("x")).len() + files_below(&root.join("y")).len();
    assert_eq!(inside, 2);

    // The same spec restored from the state file with the empty value is refused
    // at start-up (logged), and bsc runs.
    let state = root.join(".bsc/handlers.json");
    let mut saved: Vec<Value> = serde_json::from_slice(&std::fs::read(&state).unwrap()).unwrap();
    saved[0]["a"] = json!("");
    saved.push(json!({"name": "up", "conn_type": "udp", "address": ["127.0.0.1", free_udp_port()], "path": "../up"}));
    saved.push(json!({"name": "ctl", "conn_type": "udp", "address": ["127.0.0.1", free_udp_port()], "file_name_pattern": "a\nb.pcap"}));
    std::fs::write(&state, serde_json::to_vec(&saved).unwrap()).unwrap();
    let bsc = api_only(dir.path(), &root);
    let (_, all) = bsc.get("/");
    assert_eq!(all.as_object().unwrap().len(), 0, "{all}");
    for name in ["esc", "up", "ctl"] {
        assert!(
            bsc.log().iter().any(|l| l.contains(&format!(
                "handler {name}: saved over the API but cannot be restored"
            ))),
            "restore of {name} not reported: {:?}",
            bsc.log()
        );
    }
    assert!(bsc.stop().success());
    assert!(files_below(&outside).is_empty());
}

#[test]
fn a_symlink_inside_the_root_never_leads_a_write_outside() {
    let (dir, root) = TempDir::with_root("symlink");
    let outside = dir.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::create_dir_all(&root).unwrap();
    std::os::unix::fs::symlink(&outside, root.join("link")).unwrap();
    // A valid pcap file outside, that a link inside the root names.
    std::fs::write(outside.join("t.pcap"), b"keep me").unwrap();
    std::os::unix::fs::symlink(outside.join("t.pcap"), root.join("t.pcap")).unwrap();
    let port = free_udp_port();
    let port2 = free_udp_port();
    let bsc = Bsc::capturing(
        dir.path(),
        &root,
        vec![
            json!({"name": "l", "conn_type": "udp", "address": ["127.0.0.1", port], "path": "link", "file_name_pattern": "x.pcap"}),
            json!({"name": "t", "conn_type": "udp", "address": ["127.0.0.1", port2], "file_name_pattern": "t.pcap"}),
        ],
    );
    send_and_wait(&bsc, port, b"one", 1);
    send_and_wait(&bsc, port2, b"two", 1);
    wait_until("the link refused", || {
        stats_of(&bsc, port)["write_errors"].as_u64() >= Some(1)
    });
    let t = stats_of(&bsc, port2);
    assert!(bsc.stop().success());
    assert_eq!(files_below(&outside), vec![outside.join("t.pcap")]);
    assert_eq!(std::fs::read(outside.join("t.pcap")).unwrap(), b"keep me");
    // The file-name link is skipped for the next name instead.
    assert_eq!(t["write_errors"], 0, "{t}");
    assert_eq!(read_pcap(&root.join("t-1.pcap")).2[0].data, b"two");
}

#[test]
fn hostile_names_never_reach_the_journal_or_delete_anything() {
    let (dir, root) = TempDir::with_root("journal");
    let victim = dir.path().join("victim.txt");
    std::fs::write(&victim, b"precious").unwrap();
    let bsc = api_only(dir.path(), &root);
    let port = free_udp_port();
    let key = format!("h@['127.0.0.1', {port}]");
    for (field, value) in [
        (
            "file_name_pattern",
            format!("x\n+{key}\t{}", victim.display()),
        ),
        ("file_name_pattern", "tab\there.pcap".to_string()),
        ("path", "a\rb".to_string()),
        ("mission", "x\u{7f}".to_string()),
        ("mission", "esc\u{1b}[2J".to_string()),
    ] {
        let (status, body) = start_udp(&bsc, "h", port, &[(field, &value)]);
        assert_eq!(status, 400, "{field}={value:?}: {body}");
        assert!(body["error"].as_str().unwrap().contains(field), "{body}");
    }
    // A legitimate handler with retention, then a restart: the journal is JSON
    // lines, and nothing but bsc's own files is deleted.
    let (status, body) = start_udp(
        &bsc,
        "h",
        port,
        &[
            ("file_name_pattern", "h.pcap"),
            ("rotate_max_packets", "1"),
            ("max_files", "1"),
        ],
    );
    assert_eq!(status, 201, "{body}");
    for i in 0..4u64 {
        send_and_wait(&bsc, port, &seq_payload(i), i + 1);
    }
    assert!(bsc.stop().success());
    let journal = std::fs::read_to_string(root.join(".bsc/files.jsonl")).unwrap();
    for line in journal.lines() {
        serde_json::from_str::<Value>(line).unwrap_or_else(|e| panic!("{line:?}: {e}"));
    }
    let bsc = api_only(dir.path(), &root);
    send_and_wait(&bsc, port, &seq_payload(9), 1);
    assert!(bsc.stop().success());
    assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
    // A config file with such a name stops start-up (exit 2, naming the key).
    let path = write_config(
        dir.path(),
        &config(
            &root,
            vec![
                json!({"name": "c", "conn_type": "udp", "address": ["127.0.0.1", free_udp_port()], "file_name_pattern": "a\nb.pcap"}),
            ],
        ),
    );
    let out = Command::new(env!("CARGO_BIN_EXE_bsc"))
        .args(["--config", path.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("file_name_pattern") && err.contains("control"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
}

#[test]
fn the_state_folder_is_never_a_capture_target() {
    let (dir, root) = TempDir::with_root("statefolder");
    let bsc = api_only(dir.path(), &root);
    let port = free_udp_port();
    let start = |fields: &[(&str, &str)]| {
        let mut all = vec![("loc", "127.0.0.1"), ("conn_type", "udp")];
        let p = port.to_string();
        all.push(("port", &p));
        all.extend_from_slice(fields);
        bsc.form("POST", "/s/start", &form(&all))
    };
    for fields in [
        vec![("path", ".bsc"), ("file_name_pattern", "handlers.json.tmp")],
        vec![("path", ".bsc/x")],
        vec![("file_name_pattern", ".bsc")],
    ] {
        let (status, body) = start(&fields);
        assert_eq!(status, 400, "{fields:?}: {body}");
        assert!(body["error"].as_str().unwrap().contains(".bsc"), "{body}");
    }
    let (status, _) = start(&[("path", "{where}"), ("where", "ok")]);
    assert_eq!(status, 201);
    let (status, body) = bsc.form("POST", "/s/rotate", &form(&[("where", ".bsc")]));
    assert_eq!(status, 400, "{body}");
    send_and_wait(&bsc, port, b"x", 1);
    assert!(bsc.stop().success());
    // The state file is intact: the handler comes back.
    let bsc = api_only(dir.path(), &root);
    assert_eq!(bsc.get("/s/config").1.as_array().unwrap().len(), 1);
    assert!(bsc.stop().success());
}

#[test]
fn two_handlers_never_write_one_file() {
    let (dir, root) = TempDir::with_root("onewriter");
    let bsc = api_only(dir.path(), &root);
    let (p1, p2, p3) = (free_udp_port(), free_udp_port(), free_udp_port());
    let start = |name: &str, port: u16, extra: &[(&str, &str)]| {
        let p = port.to_string();
        let mut all = vec![
            ("loc", "127.0.0.1"),
            ("conn_type", "udp"),
            ("port", p.as_str()),
        ];
        all.extend_from_slice(extra);
        bsc.form("POST", &format!("/{name}/start"), &form(&all)).0
    };
    assert_eq!(
        start("h1", p1, &[("file_name_pattern", "{m}.pcap"), ("m", "a")]),
        201
    );
    assert_eq!(start("h2", p2, &[("file_name_pattern", "b.pcap")]), 201);
    send_and_wait(&bsc, p1, b"h1-a", 1);
    send_and_wait(&bsc, p2, b"h2-b", 1);
    // Rotating h1 onto h2's file is a conflict; nothing changes.
    let (status, body) = bsc.form("POST", "/h1/rotate", &form(&[("m", "b")]));
    assert_eq!(status, 409, "{body}");
    // A third handler onto either file too.
    assert_eq!(start("h3", p3, &[("file_name_pattern", "b.pcap")]), 409);
    assert_eq!(start("h3", p3, &[("file_name_pattern", "a.pcap")]), 409);
    send_and_wait(&bsc, p1, b"h1-a", 2);
    send_and_wait(&bsc, p2, b"h2-b", 2);
    // Once h2 stops, h1 may take the name b; b.pcap is final, so h1 gets b-1.
    assert_eq!(bsc.request("DELETE", "/h2/stop", None, b"").status, 200);
    let (status, body) = bsc.form("POST", "/h1/rotate", &form(&[("m", "b")]));
    assert_eq!(status, 200, "{body}");
    assert!(
        body[0]["log_file_path"]
            .as_str()
            .unwrap()
            .ends_with("/b-1.pcap"),
        "{body}"
    );
    send_and_wait(&bsc, p1, b"h1-b", 3);
    assert!(bsc.stop().success());
    let data = |f: &str| payloads_of(&root.join(f));
    assert_eq!(data("a.pcap"), [b"h1-a", b"h1-a"]);
    assert_eq!(data("b.pcap"), [b"h2-b", b"h2-b"]);
    assert_eq!(data("b-1.pcap"), [b"h1-b"]);
}

/// The files a hook log lists, one line each.
fn hook_lines(log: &Path) -> Vec<String> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn a_reload_never_reopens_a_closed_file_and_hooks_run_once_per_file() {
    let (dir, root) = TempDir::with_root("reload-seq");
    let hooks = dir.path().join("hooks.log");
    let port = free_udp_port();
    let handler = |max_bytes: &str| {
        json!({"name": "payload", "conn_type": "udp", "address": ["127.0.0.1", port],
               "file_name_pattern": "payload-{seq:6}.pcap", "rotate_max_packets": 2,
               "rotate_max_bytes": max_bytes, "max_files": 4,
               "on_close": ["/bin/sh", "-c", format!("echo \"$1\" >> {}", hooks.display()), "hook"]})
    };
    let bsc = Bsc::capturing(dir.path(), &root, vec![handler("1MiB")]);
    let mut sent = 0u64;
    for _ in 0..5 {
        send_and_wait(&bsc, port, &seq_payload(sent), sent + 1);
        sent += 1;
    }
    // Change one key and reload, in the middle of the series.
    let cfg = write_config(dir.path(), &{
        let mut c = config(&root, vec![handler("2MiB")]);
        c["capture_manager"]["manager_server"] =
            json!({"host": "127.0.0.1", "port": bsc.http_port});
        c
    });
    assert!(cfg.exists());
    bsc.signal(1);
    bsc.wait_log("reload:");
    for _ in 0..7 {
        let before = stats_of(&bsc, port)["packets"].as_u64().unwrap();
        send_and_wait(&bsc, port, &seq_payload(sent), before + 1);
        sent += 1;
    }
    assert!(bsc.stop().success());
    // Files: payload-000001 ... in order, no -N suffix, at most 4 kept, each the
    // next datagrams in order; the kept ones are the newest.
    let files = pcap_files(&root);
    let names: Vec<String> = files
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert!(names.len() <= 4, "{names:?}");
    assert!(
        names
            .iter()
            .all(|n| !n.contains("-1.") && n.starts_with("payload-")),
        "{names:?}"
    );
    let seqs: Vec<u64> = files
        .iter()
        .flat_map(|f| read_pcap(f).2)
        .map(|r| seq_of(&r.data))
        .collect();
    let mut expected: Vec<u64> = (0..sent).collect();
    expected.drain(..expected.len() - seqs.len());
    assert_eq!(seqs, expected, "{names:?}");
    // Every closed file went to on_close exactly once, all distinct.
    wait_until("hooks finished", || hook_lines(&hooks).len() as u64 >= 7);
    let lines = hook_lines(&hooks);
    let mut unique = lines.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), lines.len(), "a hook ran twice: {lines:?}");
    let numbers: Vec<u64> = lines
        .iter()
        .map(|l| {
            l.rsplit('-')
                .next()
                .unwrap()
                .trim_end_matches(".pcap")
                .parse()
                .unwrap()
        })
        .collect();
    let mut sorted = numbers.clone();
    sorted.sort();
    assert_eq!(numbers, sorted, "closed in name order: {lines:?}");
    assert!(numbers.windows(2).all(|w| w[1] == w[0] + 1), "{lines:?}");
}

#[test]
fn names_are_never_reused_so_name_order_is_time_order() {
    let (dir, root) = TempDir::with_root("noreuse");
    let port = free_udp_port();
    let spec = json!({"name": "ret", "conn_type": "udp", "address": ["127.0.0.1", port],
                      "file_name_pattern": "x-ret.pcap", "rotate_max_packets": 2, "max_files": 3});
    let bsc = Bsc::capturing(dir.path(), &root, vec![spec.clone()]);
    for i in 0..12u64 {
        send_and_wait(&bsc, port, &seq_payload(i), i + 1);
    }
    assert!(bsc.stop().success());
    // A restart goes on with the next number too.
    let bsc = Bsc::capturing(dir.path(), &root, vec![spec]);
    for i in 12..16u64 {
        send_and_wait(&bsc, port, &seq_payload(i), i - 11);
    }
    assert!(bsc.stop().success());
    let mut by_number: Vec<(u32, Vec<u64>)> = pcap_files(&root)
        .iter()
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            let n = name
                .strip_prefix("x-ret-")
                .map_or(0, |r| r.trim_end_matches(".pcap").parse().unwrap());
            (n, read_pcap(p).2.iter().map(|r| seq_of(&r.data)).collect())
        })
        .collect();
    by_number.sort();
    assert_eq!(
        by_number,
        vec![(5, vec![10, 11]), (6, vec![12, 13]), (7, vec![14, 15])],
        "suffixes go on after the highest, never back to a freed name"
    );
}

#[test]
fn kill_9_then_restart_resumes_only_the_file_left_open() {
    let (dir, root) = TempDir::with_root("kill9-final");
    let port = free_udp_port();
    let spec = json!({"name": "k", "conn_type": "udp", "address": ["127.0.0.1", port],
                      "file_name_pattern": "k-%Y.pcap", "rotate_max_packets": 3});
    let mut bsc = Bsc::capturing(dir.path(), &root, vec![spec.clone()]);
    for i in 0..4u64 {
        send_and_wait(&bsc, port, &seq_payload(i), i + 1);
    }
    bsc.signal(9);
    bsc.wait_exit();
    let year = time_year();
    let (first, open) = (
        root.join(format!("k-{year}.pcap")),
        root.join(format!("k-{year}-1.pcap")),
    );
    assert_eq!(
        std::fs::metadata(&first).unwrap().permissions().mode() & 0o222,
        0,
        "closed: read-only"
    );
    assert_ne!(
        std::fs::metadata(&open).unwrap().permissions().mode() & 0o200,
        0,
        "left open"
    );
    let bsc = Bsc::capturing(dir.path(), &root, vec![spec]);
    for i in 4..6u64 {
        send_and_wait(&bsc, port, &seq_payload(i), i - 3);
    }
    assert!(bsc.stop().success());
    let seqs = |p: &Path| -> Vec<u64> { read_pcap(p).2.iter().map(|r| seq_of(&r.data)).collect() };
    assert_eq!(seqs(&first), [0, 1, 2]);
    assert_eq!(
        seqs(&open),
        [3, 4, 5],
        "the file a crash left open is resumed"
    );
    assert_eq!(pcap_files(&root).len(), 2);
}

fn time_year() -> String {
    let out = Command::new("date").args(["-u", "+%Y"]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn a_deleted_root_is_noticed_and_capture_resumes() {
    let (dir, root) = TempDir::with_root("rmroot");
    let port = free_udp_port();
    let bsc = Bsc::capturing(
        dir.path(),
        &root,
        vec![
            json!({"name": "d", "conn_type": "udp", "address": ["127.0.0.1", port], "path": "sub", "file_name_pattern": "d.pcap"}),
        ],
    );
    send_and_wait(&bsc, port, b"before", 1);
    std::fs::remove_dir_all(&root).unwrap();
    wait_until("the deletion noticed", || {
        stats_of(&bsc, port)["files_vanished"].as_u64() >= Some(1)
    });
    let s = stats_of(&bsc, port);
    assert_eq!(s["state"], "degraded", "{s}");
    assert!(!bsc.log_matching("was deleted while open").is_empty());
    send_and_wait(&bsc, port, b"after", 2);
    // A new file (folders made again), under the next name: names never repeat.
    let next = root.join("sub/d-1.pcap");
    wait_until("a new file", || count_records(&next) == 1);
    assert_eq!(stats_of(&bsc, port)["state"], "ok");
    assert!(bsc.stop().success());
    assert_eq!(read_pcap(&next).2[0].data, b"after");
    // The journal was made again too: a restart goes on after d-1.
    let journal = std::fs::read_to_string(root.join(".bsc/files.jsonl")).unwrap();
    assert!(journal.contains("d-1.pcap"), "{journal}");
}

#[test]
fn handlers_that_could_never_write_are_refused_up_front() {
    let (dir, root) = TempDir::with_root("neverwrite");
    let bsc = api_only(dir.path(), &root);
    let port = free_udp_port();
    let p = port.to_string();
    let long = "m".repeat(251);
    for fields in [
        vec![("file_name_pattern", ".")],
        vec![("file_name_pattern", "..")],
        vec![("file_name_pattern", "a/")],
        vec![("path", "a//b")],
        vec![("file_name_pattern", "{m}.pcap"), ("m", long.as_str())],
        // Fits, but its -N variants would not.
        vec![("file_name_pattern", "{m}"), ("m", &long[..250])],
        vec![
            (
                "path",
                "{m}/{m}/{m}/{m}/{m}/{m}/{m}/{m}/{m}/{m}/{m}/{m}/{m}/{m}/{m}/{m}/{m}",
            ),
            ("m", long.as_str()),
        ],
    ] {
        let mut all = vec![
            ("loc", "127.0.0.1"),
            ("conn_type", "udp"),
            ("port", p.as_str()),
        ];
        all.extend_from_slice(&fields);
        let (status, body) = bsc.form("POST", "/n/start", &form(&all));
        assert_eq!(status, 400, "{fields:?}: {body}");
    }
    assert_eq!(bsc.get("/n/config").1, json!([]));
    // A rotate whose metadata would make a name too long: 400, never 500, and the
    // handler keeps its file.
    let (status, _) = bsc.form(
        "POST",
        "/n/start",
        &form(&[
            ("loc", "127.0.0.1"),
            ("conn_type", "udp"),
            ("port", &p),
            ("file_name_pattern", "{m}.pcap"),
            ("m", "short"),
        ]),
    );
    assert_eq!(status, 201);
    let (status, body) = bsc.form("POST", "/n/rotate", &form(&[("m", &long)]));
    assert_eq!(status, 400, "{body}");
    assert!(body["error"].as_str().unwrap().contains("255"), "{body}");
    send_and_wait(&bsc, port, b"still", 1);
    assert!(bsc.stop().success());
    assert_eq!(read_pcap(&root.join("short.pcap")).2.len(), 1);
}

/// Lines in a file (0 if it does not exist yet).
fn lines_in(path: &Path) -> usize {
    std::fs::read(path).map_or(0, |b| b.iter().filter(|&&c| c == b'\n').count())
}

#[test]
fn each_new_file_costs_the_same_however_many_came_before() {
    // Counted, not timed: the file-system calls bsc makes (strace) for 300 new
    // files after 300 came before, and for 300 new files after 2,400 came before.
    assert!(
        Command::new("strace").arg("-V").output().is_ok(),
        "strace is needed: apt-get install strace (make test installs it)"
    );
    let dir = TempDir::new("manyfiles");
    let fs = SmallFs::new(dir.path(), 256);
    let root = fs.0.join("cap");
    let port = free_udp_port();
    let http = free_tcp_port();
    let cfg = write_config(
        dir.path(),
        &json!({"capture_manager": {"root_log_directory": root, "manager_server": {"host": "127.0.0.1", "port": http}},
                "handlers": [{"name": "f", "conn_type": "udp", "address": ["127.0.0.1", port], "file_name_pattern": "fixed.pcap", "rotate_max_packets": 1}]}),
    );
    let trace = dir.path().join("trace.log");
    let mut bsc = Bsc::spawn_program(
        &[
            "strace",
            "-f",
            "-qq",
            "-e",
            "trace=%file",
            "-o",
            trace.to_str().unwrap(),
            env!("CARGO_BIN_EXE_bsc"),
        ],
        &["--config", cfg.to_str().unwrap()],
        dir.path(),
        &[],
    );
    bsc.wait_log("running:");
    bsc.http_port = http;
    let tx = sender(port);
    let mut sent = 0u64;
    let mut send = |n: u64, bsc: &Bsc| {
        for _ in 0..n {
            tx.send(&seq_payload(sent)).unwrap();
            sent += 1;
            if sent.is_multiple_of(100) {
                let want = sent;
                wait_until("the files opened", || {
                    stats_of(bsc, port)["files_opened"].as_u64() >= Some(want)
                });
            }
        }
    };
    send(300, &bsc);
    let a0 = lines_in(&trace);
    send(300, &bsc);
    let early = lines_in(&trace) - a0;
    send(1800, &bsc);
    let b0 = lines_in(&trace);
    send(300, &bsc);
    let late = lines_in(&trace) - b0;
    // SIGTERM to bsc itself (strace's child); strace exits with it.
    let strace = bsc.pid();
    let children =
        std::fs::read_to_string(format!("/proc/{strace}/task/{strace}/children")).unwrap();
    let traced = children
        .split_whitespace()
        .next()
        .expect("bsc runs under strace");
    assert!(Command::new("kill")
        .args(["-TERM", traced])
        .status()
        .unwrap()
        .success());
    assert!(bsc.wait_exit().success());
    eprintln!("file-system calls for 300 files: early {early}, late {late}");
    assert!(
        late <= early + early / 2 + 300,
        "the cost of a new file grows with the files before it: {early} calls early, {late} late"
    );
    assert_eq!(pcap_files(&root).len(), 2700);
    assert_eq!(read_pcap(&root.join("fixed-2699.pcap")).2.len(), 1);
}

#[test]
fn metadata_is_bounded_and_cannot_forge_log_lines() {
    let (dir, root) = TempDir::with_root("metabound");
    let bsc = api_only(dir.path(), &root);
    let port = free_udp_port();
    let p = port.to_string();
    let (status, _) = bsc.form(
        "POST",
        "/m/start",
        &form(&[("loc", "127.0.0.1"), ("conn_type", "udp"), ("port", &p)]),
    );
    assert_eq!(status, 201);
    let keys: Vec<(String, String)> = (0..65)
        .map(|i| (format!("k{i}"), "v".to_string()))
        .collect();
    let body = keys
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&");
    let (status, answer) = bsc.form("POST", "/m/rotate", &body);
    assert_eq!(status, 400, "{answer}");
    assert!(answer["error"].as_str().unwrap().contains("64"), "{answer}");
    let (status, _) = bsc.form("POST", "/m/rotate", &form(&[("k", &"v".repeat(256))]));
    assert_eq!(status, 400);
    let (status, _) = bsc.form("POST", "/m/rotate", &form(&[("k", "x\n<0>kernel: forged")]));
    assert_eq!(status, 400);
    // Many rotates with 64 keys each keep the state file small.
    for round in 0..20 {
        let body = (0..64)
            .map(|i| format!("k{i}=round{round}"))
            .collect::<Vec<_>>()
            .join("&");
        assert_eq!(bsc.form("POST", "/m/rotate", &body).0, 200);
    }
    let state = std::fs::metadata(root.join(".bsc/handlers.json"))
        .unwrap()
        .len();
    assert!(state < 64 * 1024, "state file {state} bytes");
    let (_, log) = bsc.stop_with_log();
    assert!(
        log.iter()
            .all(|l| !l.contains("<0>") || l.contains("\\n<0>")),
        "{log:?}"
    );
}

/// Resident memory of a process, in bytes.
fn rss(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: u64 = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap()
        .parse()
        .unwrap();
    kb * 1024
}

#[test]
fn memory_returns_after_a_burst_of_large_datagrams() {
    let dir = TempDir::new("burst");
    let fs = SmallFs::new(dir.path(), 512);
    let root = fs.0.join("cap");
    let port = free_udp_port();
    let handlers = (0..5)
        .map(|i| json!({"name": format!("b{i}"), "conn_type": "udp", "address": ["127.0.0.1", port], "file_name_pattern": format!("b{i}.pcap")}))
        .collect();
    let bsc = Bsc::capturing_driven(dir.path(), &root, handlers);
    // A small warm-up, so the idle level includes what any first use allocates
    // (the once-a-second work too: three ticks of bsc's clock).
    send_and_wait(&bsc, port, &[1u8; 100], 1);
    for _ in 0..3 {
        advance_clock(bsc.http_port, 1.0);
    }
    let before = rss(bsc.pid());
    let tx = sender(port);
    let big = vec![0x5au8; 65_000];
    let mut sent = 1u64;
    for chunk in 0..14 {
        for _ in 0..50 {
            tx.send(&big).unwrap();
        }
        sent += 50;
        // Bounded: wait for this chunk (the 24 MiB buffer holds about 350).
        let want = sent;
        wait_until(&format!("chunk {chunk}"), || {
            stats_of(&bsc, port)["packets"].as_u64() >= Some(want)
        });
    }
    let peak = rss(bsc.pid());
    let mut after = peak;
    wait_until("memory given back", || {
        after = rss(bsc.pid());
        after <= before + 1024 * 1024
    });
    assert!(bsc.stop().success());
    eprintln!("rss before {before}, peak {peak}, after {after}");
    assert_eq!(count_records(&root.join("b4.pcap")) as u64, sent);
}

#[test]
fn an_unwritable_root_stops_start_up_and_check() {
    let (dir, root) = TempDir::with_root("unwritable");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755)).unwrap();
    let cfg = write_config(
        dir.path(),
        &json!({"capture_manager": {"root_log_directory": root, "manager_server": {"host": "127.0.0.1", "port": free_tcp_port()}},
                "handlers": [{"name": "u", "conn_type": "udp", "address": ["127.0.0.1", free_udp_port()]}]}),
    );
    std::fs::set_permissions(&cfg, std::fs::Permissions::from_mode(0o644)).unwrap();
    // A copy of the binary nobody can run (the checkout's folder may be private).
    let bin = dir.path().join("bsc");
    std::fs::copy(env!("CARGO_BIN_EXE_bsc"), &bin).unwrap();
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    // Runs bsc as nobody; one that starts anyway is stopped, and the test fails.
    let nobody = |args: &[&str]| {
        // A copy just written can be "busy" for a moment: another test
        // thread forking meanwhile holds its write descriptor (ETXTBSY).
        let mut tries = 0;
        let child = loop {
            match Command::new(&bin)
                .args(args)
                .current_dir(dir.path())
                .uid(65534)
                .gid(65534)
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
            {
                Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) && tries < 100 => {
                    tries += 1;
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                other => break other.unwrap(),
            }
        };
        let pid = child.id().to_string();
        let start = std::time::Instant::now();
        while Path::new(&format!("/proc/{pid}/stat")).exists()
            && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .unwrap_or_default()
                .contains(") Z")
        {
            if start.elapsed() > PATIENCE {
                let _ = Command::new("kill").args(["-9", &pid]).status();
                panic!("bsc {args:?} kept running as uid 65534 with an unwritable root");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        child.wait_with_output().unwrap()
    };
    for args in [
        vec!["--config", cfg.to_str().unwrap()],
        vec!["check", "--config", cfg.to_str().unwrap()],
    ] {
        let out = nobody(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(
            err.contains("cannot write") && err.contains("uid 65534"),
            "{err}"
        );
        assert!(!err.contains("READY"), "{err}");
    }
}

#[test]
fn files_lists_what_bsc_made_with_records_and_times_across_a_restart() {
    let (dir, root) = TempDir::with_root("files");
    let port = free_udp_port();
    let spec = json!({"name": "f", "conn_type": "udp", "address": ["127.0.0.1", port],
                      "file_name_pattern": "f-{seq}.pcap", "rotate_max_packets": 2});
    let bsc = Bsc::capturing(dir.path(), &root, vec![spec.clone()]);
    for i in 0..5u64 {
        send_and_wait(&bsc, port, &seq_payload(i), i + 1);
    }
    let (status, body) = bsc.get("/f/files");
    assert_eq!(status, 200, "{body}");
    let files = body[0]["files"].as_array().unwrap().clone();
    let summary: Vec<(String, u64, String)> = files
        .iter()
        .map(|f| {
            let name = Path::new(f["path"].as_str().unwrap())
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned();
            (
                name,
                f["records"].as_u64().unwrap(),
                f["state"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("f-0001.pcap".to_string(), 2, "closed".to_string()),
            ("f-0002.pcap".to_string(), 2, "closed".to_string()),
            ("f-0003.pcap".to_string(), 1, "open".to_string()),
        ]
    );
    for f in &files {
        assert!(f["first_record_at"].as_str().unwrap() <= f["last_record_at"].as_str().unwrap());
        assert_eq!(
            f["bytes"].as_u64().unwrap(),
            std::fs::metadata(f["path"].as_str().unwrap())
                .unwrap()
                .len()
        );
    }
    assert_eq!(bsc.get("/nosuch/files").0, 404);
    assert!(bsc.stop().success());
    // After a restart the journal still knows them all, closed, with their records.
    let bsc = Bsc::capturing(dir.path(), &root, vec![spec]);
    let (_, body) = bsc.get("/f/files");
    let records: Vec<u64> = body[0]["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["records"].as_u64().unwrap())
        .collect();
    assert_eq!(records, [2, 2, 1]);
    assert!(body[0]["files"]
        .as_array()
        .unwrap()
        .iter()
        .all(|f| f["state"] == "closed"));
    assert!(bsc.stop().success());
}

/// Runs `bsc check` and `bsc --config` on `cfg`; both must exit 2 with `needle`.
fn refused_at_load(dir: &Path, cfg: &Path, needle: &str) {
    for args in [vec!["check", "--config"], vec!["--config"]] {
        let mut bsc = Bsc::spawn(
            &[args.clone(), vec![cfg.to_str().unwrap()]].concat(),
            dir,
            &[],
        );
        assert_eq!(bsc.wait_exit().code(), Some(2), "{args:?}: {:?}", bsc.log());
        assert!(
            bsc.log().iter().any(|l| l.contains(needle)),
            "{:?}",
            bsc.log()
        );
    }
}

#[test]
fn a_config_path_through_dotdot_or_a_linked_root_never_reaches_the_state_folder() {
    let (dir, root) = TempDir::with_root("dotdot");
    std::fs::create_dir_all(root.join("x")).unwrap();
    let handler = |path: String| {
        json!({"name": "a", "conn_type": "udp", "address": ["127.0.0.1", free_udp_port()],
               "path": path, "file_name_pattern": "handlers.json.tmp", "rotate_log": false})
    };
    let cfg = write_config(
        dir.path(),
        &config(
            &root,
            vec![handler(format!("{}/x/../.bsc", root.display()))],
        ),
    );
    refused_at_load(dir.path(), &cfg, "not a plain absolute path");
    // The root named through a link: the state folder is found under its real name.
    let link = dir.path().join("rootlink");
    std::os::unix::fs::symlink(&root, &link).unwrap();
    let cfg = write_config(
        dir.path(),
        &config(&link, vec![handler(format!("{}/.bsc", root.display()))]),
    );
    refused_at_load(dir.path(), &cfg, "state folder");
}

#[test]
fn two_names_for_one_folder_never_give_one_file_two_writers() {
    let (dir, root) = TempDir::with_root("alias");
    std::fs::create_dir_all(root.join("sub")).unwrap();
    let alias = dir.path().join("alias");
    std::os::unix::fs::symlink(&root, &alias).unwrap();
    let (pa, pb) = (free_udp_port(), free_udp_port());
    // A config handler writes alias/sub/f.pcap: the same file as root/sub/f.pcap.
    let bsc = Bsc::capturing(
        dir.path(),
        &root,
        vec![
            json!({"name": "a", "conn_type": "udp", "address": ["127.0.0.1", pa],
                        "path": format!("{}/sub", alias.display()), "file_name_pattern": "f.pcap", "rotate_log": false}),
        ],
    );
    send_and_wait(&bsc, pa, b"from a", 1);
    let (status, body) = start_udp(
        &bsc,
        "b",
        pb,
        &[
            ("path", "sub"),
            ("file_name_pattern", "f.pcap"),
            ("rotate_log", "false"),
        ],
    );
    assert_eq!(status, 201, "{body}");
    send_and_wait(&bsc, pb, b"from b", 1);
    send_and_wait(&bsc, pa, b"from a", 2);
    assert!(bsc.stop().success());
    let data = |f: &str| payloads_of(&root.join(f));
    assert_eq!(data("sub/f.pcap"), [b"from a", b"from a"]);
    assert_eq!(data("sub/f-1.pcap"), [b"from b"]);
}

#[test]
fn hooks_still_waiting_at_shutdown_run_after_the_restart_once_each() {
    let (dir, root) = TempDir::with_root("hookqueue");
    let log = dir.path().join("hooks.log");
    let hook = json!([
        "/bin/sh",
        "-c",
        format!("sleep 1; echo \"$1\" >> {}", log.display()),
        "hook"
    ]);
    let ports: Vec<u16> = (0..3).map(|_| free_udp_port()).collect();
    let handlers: Vec<Value> = ports
        .iter()
        .enumerate()
        .map(|(i, p)| json!({"name": format!("h{i}"), "conn_type": "udp", "address": ["127.0.0.1", p], "on_close": hook}))
        .collect();
    let mut cfg = config(&root, handlers);
    cfg["capture_manager"]["on_close_max_running"] = json!(1);
    let bsc = Bsc::with_config(dir.path(), &cfg);
    for &p in &ports {
        send_and_wait(&bsc, p, b"x", 1);
    }
    let (_, lines) = bsc.stop_with_log();
    assert!(
        lines.iter().any(|l| l.contains("run after the next start")),
        "{lines:?}"
    );
    // A hook bsc starts (again) has written its line once its process is gone;
    // two ticks of bsc's clock have started any it would start.
    let settled = |bsc: &Bsc| {
        for _ in 0..2 {
            advance_clock(bsc.http_port, 1.0);
        }
        wait_until("no hook running", || {
            let pgrep = Command::new("pgrep")
                .arg("-f")
                .arg(log.display().to_string())
                .output()
                .unwrap();
            String::from_utf8_lossy(&pgrep.stdout).trim().is_empty()
        });
    };
    let bsc = Bsc::with_config_env(dir.path(), &cfg, &[DRIVEN_CLOCK]);
    wait_until("every hook ran", || hook_lines(&log).len() >= 3);
    settled(&bsc);
    assert!(bsc.stop().success());
    // More restarts run nothing again.
    for _ in 0..2 {
        let bsc = Bsc::with_config_env(dir.path(), &cfg, &[DRIVEN_CLOCK]);
        settled(&bsc);
        assert!(bsc.stop().success());
    }
    let mut ran = hook_lines(&log);
    ran.sort();
    let before = ran.len();
    ran.dedup();
    assert_eq!(
        (before, ran.len()),
        (3, 3),
        "each file's hook once: {ran:?}"
    );
}

#[test]
fn a_hook_that_makes_a_file_writable_again_does_not_make_it_open_again() {
    let (dir, root) = TempDir::with_root("rewritable");
    let log = dir.path().join("hooks.log");
    let hook = json!([
        "/bin/sh",
        "-c",
        format!("chmod 0644 \"$1\"; echo \"$1\" >> {}", log.display()),
        "hook"
    ]);
    let spec = |name: &str, port: u16| json!({"name": name, "conn_type": "udp", "address": ["127.0.0.1", port], "file_name_pattern": "fixed.pcap", "rotate_log": false, "on_close": hook});
    let (pa, pb) = (free_udp_port(), free_udp_port());
    let bsc = Bsc::capturing(dir.path(), &root, vec![spec("a", pa)]);
    send_and_wait(&bsc, pa, b"a", 1);
    // Renamed and moved by a reload: a new key lands on the same name.
    let mut cfg = config(&root, vec![spec("b", pb)]);
    cfg["capture_manager"]["manager_server"] = json!({"host": "127.0.0.1", "port": bsc.http_port});
    write_config(dir.path(), &cfg);
    bsc.signal(1);
    bsc.wait_log("reload:");
    wait_until("a's hook ran", || hook_lines(&log).len() == 1);
    send_and_wait(&bsc, pb, b"b", 1);
    assert!(bsc.stop().success());
    wait_until("b's hook ran", || hook_lines(&log).len() == 2);
    let data = |f: &str| payloads_of(&root.join(f));
    assert_eq!(data("fixed.pcap"), [b"a"]);
    assert_eq!(data("fixed-1.pcap"), [b"b"]);
    let lines = hook_lines(&log);
    assert_ne!(lines[0], lines[1], "{lines:?}");
}

#[test]
fn a_handler_moved_to_another_address_goes_on_after_its_highest_file() {
    let (dir, root) = TempDir::with_root("moved");
    let bsc = api_only(dir.path(), &root);
    let start = |port: u16| {
        start_udp(
            &bsc,
            "n",
            port,
            &[
                ("file_name_pattern", "{name}-{seq}.pcap"),
                ("max_files", "1"),
            ],
        )
        .0
    };
    let pa = free_udp_port();
    assert_eq!(start(pa), 201);
    for i in 0..3u64 {
        send_and_wait(&bsc, pa, &seq_payload(i), i + 1);
        assert_eq!(bsc.form("POST", "/n/rotate", "").0, 200);
    }
    assert_eq!(bsc.request("DELETE", "/n/stop", None, b"").status, 200);
    let pb = free_udp_port();
    assert_eq!(start(pb), 201);
    send_and_wait(&bsc, pb, b"moved", 1);
    let (_, stats) = bsc.get("/stats");
    let current = stats[format!("['127.0.0.1', {pb}]")][0]["current_file"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(current.ends_with("/n-0005.pcap"), "{current}");
    assert!(bsc.stop().success());
}

#[test]
fn retention_never_deletes_a_file_put_under_the_name_of_one_bsc_closed() {
    let (dir, root) = TempDir::with_root("replaced");
    let port = free_udp_port();
    let bsc = Bsc::capturing(
        dir.path(),
        &root,
        vec![
            json!({"name": "r", "conn_type": "udp", "address": ["127.0.0.1", port], "file_name_pattern": "{seq}.pcap", "rotate_log": false, "max_files": 2}),
        ],
    );
    send_and_wait(&bsc, port, b"1", 1);
    assert_eq!(bsc.form("POST", "/r/rotate", "").0, 200);
    let first = root.join("0001.pcap");
    std::fs::remove_file(&first).unwrap();
    std::fs::write(&first, b"precious").unwrap();
    for i in 2..4u64 {
        send_and_wait(&bsc, port, b"n", i);
        assert_eq!(bsc.form("POST", "/r/rotate", "").0, 200);
    }
    assert!(bsc.stop().success());
    assert_eq!(std::fs::read(&first).unwrap(), b"precious");
}

#[test]
fn a_hard_link_into_the_root_is_never_written_through() {
    let (dir, root) = TempDir::with_root("hardlink");
    let out = dir.path().join("out");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::create_dir_all(&out).unwrap();
    // A file outside with bsc's own header, hard-linked into the root.
    let mut header = vec![0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0];
    header.extend_from_slice(&[0; 8]);
    header.extend_from_slice(&65535u32.to_le_bytes());
    header.extend_from_slice(&147u32.to_le_bytes());
    std::fs::write(out.join("hl.pcap"), &header).unwrap();
    std::fs::hard_link(out.join("hl.pcap"), root.join("hl.pcap")).unwrap();
    let port = free_udp_port();
    let bsc = Bsc::capturing(
        dir.path(),
        &root,
        vec![
            json!({"name": "s", "conn_type": "udp", "address": ["127.0.0.1", port], "file_name_pattern": "hl.pcap", "rotate_log": false}),
        ],
    );
    send_and_wait(&bsc, port, b"x", 1);
    assert!(bsc.stop().success());
    assert_eq!(
        std::fs::read(out.join("hl.pcap")).unwrap(),
        header,
        "outside file untouched"
    );
    assert_eq!(read_pcap(&root.join("hl-1.pcap")).2.len(), 1);
}

#[test]
fn a_file_a_crash_left_open_is_made_final_even_if_its_handler_is_gone() {
    let (dir, root) = TempDir::with_root("orphan");
    let port = free_udp_port();
    let mut bsc = Bsc::capturing(
        dir.path(),
        &root,
        vec![
            json!({"name": "o", "conn_type": "udp", "address": ["127.0.0.1", port], "file_name_pattern": "o.pcap"}),
        ],
    );
    send_and_wait(&bsc, port, b"x", 1);
    bsc.signal(9);
    bsc.wait_exit();
    let file = root.join("o.pcap");
    let mut bytes = std::fs::read(&file).unwrap();
    bytes.extend_from_slice(&[9, 9, 9]);
    std::fs::write(&file, &bytes).unwrap();
    assert_ne!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o200,
        0
    );
    let bsc = Bsc::capturing(dir.path(), &root, vec![]);
    assert!(bsc.stop().success());
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o222,
        0,
        "final"
    );
    assert_eq!(read_pcap(&file).2.len(), 1, "torn tail cut");
}

#[test]
fn forged_journal_entries_outside_the_root_are_never_acted_on() {
    let (dir, root) = TempDir::with_root("forged");
    let out = dir.path().join("out");
    std::fs::create_dir_all(root.join(".bsc")).unwrap();
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("v_del.pcap"), b"KEEP ME").unwrap();
    std::fs::write(out.join("v_hook.txt"), b"KEEP ME TOO").unwrap();
    let port = free_udp_port();
    let log = dir.path().join("hooks.log");
    let key = format!("tlm@['127.0.0.1', {port}]");
    let lines = [
        json!({"opened": {"key": key, "path": out.join("v_del.pcap"), "trusted": out, "unnumbered": out.join("v_del.pcap"), "n": 0, "seq": 0, "created": true}}),
        json!({"closed": {"path": out.join("v_del.pcap"), "records": 1}}),
        json!({"opened": {"key": key, "path": out.join("v_hook.txt"), "trusted": "/", "unnumbered": out.join("v_hook.txt"), "n": 0, "seq": 0, "created": false}}),
        json!({"closed": {"path": out.join("v_hook.txt"), "records": 1, "hook": true}}),
        json!({"opened": {"key": key, "path": root.join(".bsc/handlers.json"), "trusted": root, "unnumbered": root.join(".bsc/handlers.json"), "n": 0, "seq": 0, "created": true}}),
        json!({"closed": {"path": root.join(".bsc/handlers.json"), "records": 1, "hook": true}}),
    ];
    let mut text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    text.push_str("\u{ff}not utf-8 at all\n"); // a damaged line among good ones
    let mut bytes = text.into_bytes();
    bytes.extend_from_slice(b"\xff\xfe\n");
    std::fs::write(root.join(".bsc/files.jsonl"), bytes).unwrap();
    let bsc = Bsc::capturing(
        dir.path(),
        &root,
        vec![
            json!({"name": "tlm", "conn_type": "udp", "address": ["127.0.0.1", port],
            "file_name_pattern": "{seq}.pcap", "rotate_log": false, "max_files": 1,
            "on_close": ["/bin/sh", "-c", format!("echo \"$BSC_FILE\" >> {}", log.display()), "hook"]}),
        ],
    );
    assert!(
        !bsc.log_matching("entries that name files outside the root")
            .is_empty(),
        "{:?}",
        bsc.log()
    );
    for i in 1..4u64 {
        send_and_wait(&bsc, port, b"x", i);
        assert_eq!(bsc.form("POST", "/tlm/rotate", "").0, 200);
    }
    assert!(bsc.stop().success());
    assert_eq!(std::fs::read(out.join("v_del.pcap")).unwrap(), b"KEEP ME");
    assert_eq!(
        std::fs::read(out.join("v_hook.txt")).unwrap(),
        b"KEEP ME TOO"
    );
    let hooked = hook_lines(&log);
    assert!(
        hooked
            .iter()
            .all(|l| l.starts_with(root.to_str().unwrap()) && !l.contains(".bsc")),
        "{hooked:?}"
    );
}

#[test]
fn links_planted_in_the_state_folder_are_never_written_through() {
    let (dir, root) = TempDir::with_root("statelinks");
    let out = dir.path().join("out");
    std::fs::create_dir_all(root.join(".bsc")).unwrap();
    std::fs::create_dir_all(&out).unwrap();
    for (link, target) in [
        ("files.jsonl.tmp", "p1.txt"),
        ("handlers.json.tmp", "p2.txt"),
    ] {
        std::fs::write(out.join(target), b"PRECIOUS").unwrap();
        std::os::unix::fs::symlink(out.join(target), root.join(".bsc").join(link)).unwrap();
    }
    let bsc = api_only(dir.path(), &root);
    let port = free_udp_port();
    let (status, _) = start_udp(&bsc, "s", port, &[]);
    assert_eq!(status, 201);
    send_and_wait(&bsc, port, b"x", 1);
    assert!(bsc.stop().success());
    // A link in place of a state file itself stops start-up (and is left alone).
    std::fs::write(out.join("p3.txt"), b"PRECIOUS").unwrap();
    let journal = root.join(".bsc/files.jsonl");
    std::fs::remove_file(&journal).unwrap();
    std::os::unix::fs::symlink(out.join("p3.txt"), &journal).unwrap();
    let cfg = write_config(dir.path(), &config(&root, vec![]));
    let mut bsc = Bsc::spawn(&["--config", cfg.to_str().unwrap()], dir.path(), &[]);
    assert_eq!(bsc.wait_exit().code(), Some(2), "{:?}", bsc.log());
    assert!(
        bsc.log()
            .iter()
            .any(|l| l.contains("files.jsonl is a symbolic link, not a regular file")),
        "{:?}",
        bsc.log()
    );
    for target in ["p1.txt", "p2.txt", "p3.txt"] {
        assert_eq!(
            std::fs::read(out.join(target)).unwrap(),
            b"PRECIOUS",
            "{target}"
        );
    }
    // A state folder that is itself a link stops start-up.
    let root2 = dir.path().join("root2");
    std::fs::create_dir_all(&root2).unwrap();
    std::os::unix::fs::symlink(&out, root2.join(".bsc")).unwrap();
    let cfg = write_config(dir.path(), &config(&root2, vec![]));
    let mut bsc = Bsc::spawn(&["--config", cfg.to_str().unwrap()], dir.path(), &[]);
    assert_eq!(bsc.wait_exit().code(), Some(2), "{:?}", bsc.log());
    assert!(
        bsc.log()
            .iter()
            .any(|l| l.contains("is a symlink or not a folder")),
        "{:?}",
        bsc.log()
    );
}

#[test]
fn seq_goes_on_when_a_name_comes_back_to_an_earlier_address() {
    let (dir, root) = TempDir::with_root("seqback");
    let bsc = api_only(dir.path(), &root);
    let (pa, pb) = (free_udp_port(), free_udp_port());
    let mut names = Vec::new();
    for port in [pa, pb, pa] {
        let (status, _) = start_udp(
            &bsc,
            "s",
            port,
            &[("file_name_pattern", "{name}-{seq}.pcap")],
        );
        assert_eq!(status, 201);
        send_and_wait(&bsc, port, b"x", 1);
        let (_, r) = bsc.form("POST", "/s/rotate", "");
        names.push(
            r[0]["previous_file"]
                .as_str()
                .unwrap()
                .rsplit('/')
                .next()
                .unwrap()
                .to_string(),
        );
        send_and_wait(&bsc, port, b"y", 2);
        assert_eq!(bsc.request("DELETE", "/s/stop", None, b"").status, 200);
    }
    assert!(bsc.stop().success());
    let mut files: Vec<String> = pcap_files(&root)
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(
        files,
        [
            "s-0001.pcap",
            "s-0002.pcap",
            "s-0003.pcap",
            "s-0004.pcap",
            "s-0005.pcap",
            "s-0006.pcap"
        ],
        "{names:?}"
    );
}

#[test]
fn a_reload_that_changes_a_handler_keeps_its_socket_and_loses_nothing() {
    let (dir, root) = TempDir::with_root("reloadloss");
    let port = free_udp_port();
    let cfg_with = |v: u64, http: Option<u16>| {
        let mut c = config(
            &root,
            vec![
                json!({"name": "chg", "conn_type": "udp", "address": ["127.0.0.1", port], "file_name_pattern": "{name}-{seq}.pcap", "v": v}),
            ],
        );
        if let Some(h) = http {
            c["capture_manager"]["manager_server"] = json!({"host": "127.0.0.1", "port": h});
        }
        c
    };
    let bsc = Bsc::with_config(dir.path(), &cfg_with(0, None));
    let tx = sender(port);
    let mut sent = 0u64;
    for round in 1..=10u64 {
        for _ in 0..200 {
            tx.send(&seq_payload(sent)).unwrap();
            sent += 1;
        }
        write_config(dir.path(), &cfg_with(round, Some(bsc.http_port)));
        bsc.signal(1);
        for _ in 0..200 {
            tx.send(&seq_payload(sent)).unwrap();
            sent += 1;
        }
        wait_until("the reload applied", || {
            bsc.log_matching("reload:").len() as u64 >= round
        });
    }
    wait_until("every datagram on disk", || {
        pcap_files(&root)
            .iter()
            .map(|p| count_records(p) as u64)
            .sum::<u64>()
            >= sent
    });
    assert!(bsc.stop().success());
    let mut seqs: Vec<u64> = pcap_files(&root)
        .iter()
        .flat_map(|p| read_pcap(p).2)
        .map(|r| seq_of(&r.data))
        .collect();
    seqs.sort();
    assert_eq!(seqs, (0..sent).collect::<Vec<_>>());
}

#[test]
fn a_config_folder_linked_into_the_state_folder_stops_start_up() {
    let (dir, root) = TempDir::with_root("linkstate");
    std::fs::create_dir_all(root.join(".bsc")).unwrap();
    let link = dir.path().join("lnk");
    std::os::unix::fs::symlink(root.join(".bsc"), &link).unwrap();
    let cfg = write_config(
        dir.path(),
        &config(
            &root,
            vec![
                json!({"name": "a", "conn_type": "udp", "address": ["127.0.0.1", free_udp_port()], "path": link}),
            ],
        ),
    );
    refused_at_load(dir.path(), &cfg, "leads into bsc's state folder");
}
