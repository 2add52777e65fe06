//! Operations: systemd's notify protocol (readiness, watchdog, reload, stop), the
//! service unit's hardening and validity, and `make install`.

mod common;

use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use serde_json::json;

/// Messages received on a notify socket, with the time each came.
fn receive(socket: &UnixDatagram, until: impl Fn(&[String]) -> bool) -> Vec<String> {
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let start = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !until(&got) {
        assert!(
            start.elapsed() < PATIENCE,
            "notify messages so far: {got:?}"
        );
        if let Ok(n) = socket.recv(&mut buf) {
            got.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
    }
    got
}

#[test]
fn notify_protocol_ready_watchdog_reload_stop() {
    let dir = TempDir::new("notify");
    let sock_path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&sock_path).unwrap();
    let port = free_udp_port();
    let cfg = write_config(
        dir.path(),
        &json!({"capture_manager": {"root_log_directory": dir.path().join("cap"), "manager_server": {"port": free_tcp_port()}},
                "handlers": [{"name": "n", "conn_type": "udp", "address": ["127.0.0.1", port]}]}),
    );
    let mut bsc = Bsc::spawn(
        &["--config", cfg.to_str().unwrap()],
        dir.path(),
        &[
            ("NOTIFY_SOCKET", sock_path.to_str().unwrap()),
            ("WATCHDOG_USEC", "400000"),
        ],
    );
    let first = receive(&socket, |m| !m.is_empty());
    assert!(
        first[0].starts_with("READY=1\nSTATUS=capturing: 1 handler, 1 capturer, "),
        "{first:?}"
    );
    assert!(
        !udp_port_is_free(port),
        "READY=1 comes after every socket is bound"
    );

    // Watchdog pings every WATCHDOG_USEC/2 = 200 ms, from the loop.
    let start = Instant::now();
    let pings = receive(&socket, |m| {
        m.iter().filter(|x| x.starts_with("WATCHDOG=1")).count() >= 5
    });
    let per_ping = start.elapsed() / 5;
    assert!(
        per_ping >= Duration::from_millis(100) && per_ping < Duration::from_secs(2),
        "{per_ping:?}: {pings:?}"
    );
    assert!(pings.iter().all(|m| !m.starts_with("READY")));

    bsc.signal(1);
    let reload = receive(&socket, |m| m.iter().any(|x| x.starts_with("READY=1")));
    let reloading = reload
        .iter()
        .position(|m| m.starts_with("RELOADING=1\nMONOTONIC_USEC="))
        .expect("RELOADING=1");
    let ready = reload
        .iter()
        .position(|m| m.starts_with("READY=1"))
        .unwrap();
    assert!(reloading < ready, "{reload:?}");

    bsc.signal(15);
    let stop = receive(&socket, |m| m.iter().any(|x| x.starts_with("STOPPING=1")));
    assert!(!stop.is_empty());
    assert!(bsc.wait_exit().success());
}

#[test]
fn notify_socket_in_the_abstract_namespace() {
    let dir = TempDir::new("abstract");
    let name = format!("bsc-test-notify-{}", std::process::id());
    let socket =
        UnixDatagram::bind_addr(&SocketAddr::from_abstract_name(name.as_bytes()).unwrap()).unwrap();
    let cfg = write_config(
        dir.path(),
        &json!({"capture_manager": {"manager_server": {"port": free_tcp_port()}}}),
    );
    let mut bsc = Bsc::spawn(
        &["--config", cfg.to_str().unwrap()],
        dir.path(),
        &[("NOTIFY_SOCKET", &format!("@{name}"))],
    );
    let got = receive(&socket, |m| !m.is_empty());
    assert!(got[0].starts_with("READY=1"), "{got:?}");
    bsc.signal(15);
    assert!(bsc.wait_exit().success());
}

#[test]
fn log_level_and_journald_prefixes() {
    let dir = TempDir::new("loglevel");
    let http_port = free_tcp_port();
    let cfg = write_config(
        dir.path(),
        &json!({"capture_manager": {"root_log_directory": dir.path().join("cap"), "manager_server": {"port": http_port}}}),
    );
    // warn: bsc runs (it answers) but the info line "running" is not written.
    let mut quiet = Bsc::spawn(
        &["--config", cfg.to_str().unwrap(), "--log-level", "warn"],
        dir.path(),
        &[],
    );
    wait_until("bsc answers", || {
        std::net::TcpStream::connect(("127.0.0.1", http_port)).is_ok()
            && http_request(http_port, "GET", "/health", None, b"").status == 200
    });
    quiet.signal(15);
    assert!(quiet.wait_exit().success());
    assert!(
        quiet.log().iter().all(|l| !l.contains("running:")),
        "{:?}",
        quiet.log()
    );
    // Under journald (JOURNAL_STREAM names stderr) lines carry syslog priorities.
    use std::os::unix::fs::MetadataExt;
    let (mut reader, writer) = std::io::pipe().unwrap();
    let meta = std::fs::File::from(std::os::fd::OwnedFd::from(writer.try_clone().unwrap()))
        .metadata()
        .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_bsc"))
        .args(["--config", cfg.to_str().unwrap()])
        .env("JOURNAL_STREAM", format!("{}:{}", meta.dev(), meta.ino()))
        .stderr(writer)
        .spawn()
        .unwrap();
    let mut seen = String::new();
    let mut buf = [0u8; 4096];
    while !seen.contains("running:") {
        let n = std::io::Read::read(&mut reader, &mut buf).unwrap();
        assert!(n > 0, "{seen}");
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    assert!(
        seen.lines()
            .any(|l| l.starts_with("<6>bsc ") && l.contains("running:")),
        "{seen}"
    );
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(child.wait().unwrap().success());

    // A bad level is refused.
    let out = Command::new(env!("CARGO_BIN_EXE_bsc"))
        .args(["--log-level", "loud"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("use error, warn, info or debug"));
}

fn make(args: &[&str]) -> std::process::Output {
    Command::new("make")
        .arg("-s")
        .arg("-C")
        .arg(env!("CARGO_MANIFEST_DIR"))
        .args(args)
        .output()
        .expect("make is installed")
}

#[test]
fn make_install_lays_out_the_files_and_keeps_an_existing_config() {
    let dir = TempDir::new("install");
    let dest = dir.path().join("root");
    let bin = format!("BIN={}", env!("CARGO_BIN_EXE_bsc"));
    let destdir = format!("DESTDIR={}", dest.display());
    let out = make(&["install", &bin, &destdir]);
    assert_success(&out);
    for f in [
        "usr/bin/bsc",
        "lib/systemd/system/bsc.service",
        "etc/bsc/bsc.json",
        "usr/lib/sysctl.d/60-bsc.conf",
        "usr/lib/sysusers.d/bsc.conf",
        "usr/share/doc/bsc/README.md",
        "usr/share/man/man8/bsc.8.gz",
    ] {
        assert!(dest.join(f).is_file(), "{f} installed");
    }
    let man = Command::new("man")
        .arg("-l")
        .arg(dest.join("usr/share/man/man8/bsc.8.gz"))
        .output()
        .expect("man is installed (tests/deps.sh)");
    assert!(
        man.status.success() && String::from_utf8_lossy(&man.stdout).contains("BSC(8)"),
        "the installed page reads: {}",
        String::from_utf8_lossy(&man.stderr)
    );
    let status = Command::new(dest.join("usr/bin/bsc"))
        .arg("check")
        .arg("--config")
        .arg(dest.join("etc/bsc/bsc.json"))
        .status()
        .unwrap();
    assert!(status.success(), "the default config is valid");
    let unit = std::fs::read_to_string(dest.join("lib/systemd/system/bsc.service")).unwrap();
    assert!(unit.contains("ExecStart=/usr/bin/bsc --config /etc/bsc/bsc.json"));

    // An operator's config survives a reinstall and an uninstall.
    std::fs::write(dest.join("etc/bsc/bsc.json"), "{\"handlers\": []}").unwrap();
    assert!(make(&["install", &bin, &destdir]).status.success());
    assert_eq!(
        std::fs::read_to_string(dest.join("etc/bsc/bsc.json")).unwrap(),
        "{\"handlers\": []}"
    );
    assert!(make(&["uninstall", &destdir]).status.success());
    for f in [
        "usr/bin/bsc",
        "lib/systemd/system/bsc.service",
        "usr/lib/sysusers.d/bsc.conf",
        "usr/share/man/man8/bsc.8.gz",
    ] {
        assert!(!dest.join(f).exists(), "{f} uninstalled");
    }
    assert!(dest.join("etc/bsc/bsc.json").exists());

    // PREFIX moves the binary and the unit follows.
    let local = dir.path().join("local");
    assert!(make(&[
        "install",
        &bin,
        &format!("DESTDIR={}", local.display()),
        "PREFIX=/usr/local"
    ])
    .status
    .success());
    let unit = std::fs::read_to_string(local.join("lib/systemd/system/bsc.service")).unwrap();
    assert!(
        unit.contains("ExecStart=/usr/local/bin/bsc --config /etc/bsc/bsc.json"),
        "{unit}"
    );
}

#[test]
fn the_unit_is_hardened_and_valid() {
    let unit = Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd/bsc.service");
    let out = Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--no-pager"])
        .arg(&unit)
        .output()
        .expect("systemd-analyze is needed: apt-get install systemd (make test installs it)");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    let exposure: f64 = text
        .lines()
        .find_map(|l| l.split("Overall exposure level for bsc.service: ").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no exposure in: {text}"));
    assert!(exposure <= 2.0, "exposure {exposure}: {text}");

    // verify wants the ExecStart binary to exist: point a copy at this build.
    let dir = TempDir::new("verify");
    let copy = dir.path().join("bsc.service");
    let text = std::fs::read_to_string(&unit)
        .unwrap()
        .replace("/usr/bin/bsc", env!("CARGO_BIN_EXE_bsc"));
    std::fs::write(&copy, text).unwrap();
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&copy)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stderr.trim().is_empty(),
        "verify: {stderr}"
    );
}

#[test]
fn the_example_alerting_rules_pass_promtool() {
    let rules = Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd/bsc-alerts.yml");
    let out = Command::new("promtool")
        .args(["check", "rules"])
        .arg(&rules)
        .output()
        .expect("promtool is needed: apt-get install prometheus (make test installs it)");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("SUCCESS: 13 rules found"), "{text}");
    // Every metric the rules use is one bsc exports (names from src/control/api/metrics.rs).
    let api = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("src/control/api/metrics.rs"),
    )
    .unwrap();
    let yml = std::fs::read_to_string(&rules).unwrap();
    for word in yml.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
        if word.starts_with("bsc_") {
            assert!(
                api.contains(&format!("\"{word}")) || api.contains(&format!("{word}{{")),
                "{word} is not a metric bsc exports"
            );
        }
    }
}
