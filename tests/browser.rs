//! A web page cannot drive the API (README, Security, A local browser): a
//! request with a foreign `Origin` is refused (403) on every route but
//! `GET /ui`, a `Host` that is not an IP address, `localhost` or a name in
//! `manager_server.allowed_hosts` is refused (421) with or without a token, and
//! answers carry `nosniff` (JSON also `no-store`). Raw requests, curl, AIT's
//! `ait-bsc-create-handler`, and headless Chromium: the status page still reads
//! the API, a page from another origin cannot start a handler, and a
//! rebinding name cannot read it. Also `bsc check` on the new key.

mod common;

use std::io::{BufReader, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use common::*;
use serde_json::{json, Value};

/// Sends `head` (request line and headers, without the empty line) and `body`
/// on a new connection to 127.0.0.1:`port`; the answer.
fn raw(port: u16, head: &str, body: &str) -> HttpResponse {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    let length = if body.is_empty() {
        String::new()
    } else {
        format!("Content-Length: {}\r\n", body.len())
    };
    write!(s, "{head}\r\n{length}Connection: close\r\n\r\n{body}").unwrap();
    read_response(&mut BufReader::new(s)).expect("a whole answer")
}

/// A config with the API on a free loopback port, these `manager_server` keys
/// added.
fn config(dir: &Path, server: Value) -> Value {
    let mut ms = json!({"host": "127.0.0.1", "port": free_tcp_port()});
    for (k, v) in server.as_object().unwrap() {
        ms[k] = v.clone();
    }
    json!({"capture_manager": {"root_log_directory": dir.join("cap"), "manager_server": ms}})
}

const FORM: &str = "application/x-www-form-urlencoded";

/// The DOM of `url` after its scripts ran for a few (virtual) seconds, in
/// headless Chromium with a fresh profile and `args`; killed after a minute.
fn dump_dom(args: &[&str], url: &str) -> String {
    let profile = TempDir::new("browser-profile");
    let flags = [&["--virtual-time-budget=3000", "--dump-dom"][..], args].concat();
    let out = headless_chromium(profile.path(), &flags, url);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn a_request_from_another_origin_is_refused_and_changes_nothing() {
    let dir = TempDir::new("origin");
    let bsc = Bsc::with_config(dir.path(), &config(dir.path(), json!({})));
    let port = bsc.http_port;
    let own = format!("127.0.0.1:{port}");
    let udp = free_udp_port();
    let form = format!("port={udp}&conn_type=udp&path=csrf");

    // The issue's request: a form POST from a page on evil.example.
    for origin in [
        "http://evil.example",
        "null",
        "http://127.0.0.1:1",
        "https://evil.example",
    ] {
        let r = raw(
            port,
            &format!("POST /csrf1/start HTTP/1.1\r\nHost: {own}\r\nOrigin: {origin}\r\nContent-Type: {FORM}"),
            &form,
        );
        assert_eq!(r.status, 403, "Origin {origin}");
        let error = r.json()["error"].as_str().unwrap().to_string();
        assert!(error.contains(origin), "{error}");
        assert_eq!(r.header("cache-control"), Some("no-store"));
        assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
    }
    assert_eq!(bsc.get("/csrf1/config").1, json!([]), "nothing was started");
    assert!(
        !dir.path().join("cap/.bsc/handlers.json").exists()
            || !std::fs::read_to_string(dir.path().join("cap/.bsc/handlers.json"))
                .unwrap()
                .contains("csrf1"),
        "nothing was persisted"
    );
    // Every route, reads included; the page itself is the exception.
    for (method, path) in [
        ("GET", "/"),
        ("GET", "/stats"),
        ("GET", "/metrics"),
        ("GET", "/health"),
        ("GET", "/capturers"),
        ("DELETE", "/capturers"),
        ("POST", "/tlm/rotate"),
        ("DELETE", "/tlm/stop"),
        ("GET", "/nowhere"),
    ] {
        let r = raw(
            port,
            &format!("{method} {path} HTTP/1.1\r\nHost: {own}\r\nOrigin: http://evil.example"),
            "",
        );
        assert_eq!(r.status, 403, "{method} {path}");
    }
    let page = raw(
        port,
        &format!("GET /ui HTTP/1.1\r\nHost: {own}\r\nOrigin: null"),
        "",
    );
    assert_eq!(page.status, 200);
    assert_eq!(page.header("x-content-type-options"), Some("nosniff"));
    assert!(
        page.header("content-security-policy")
            .is_some_and(|p| p.contains("frame-ancestors 'none'")),
        "the page cannot be framed by another site"
    );

    // The server's own origin (the status page's requests) is served.
    let r = raw(
        port,
        &format!("POST /own/start HTTP/1.1\r\nHost: {own}\r\nOrigin: http://{own}\r\nContent-Type: {FORM}"),
        &format!("port={}&conn_type=udp&path=own", free_udp_port()),
    );
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));

    // curl: with the issue's Origin refused, as usual without one.
    let curl = |extra: &[&str], name: &str| {
        let out = Command::new("curl")
            .args(["-sS", "-o", "/dev/null", "-w", "%{http_code}"])
            .args(extra)
            .args(["-H", &format!("Content-Type: {FORM}"), "-d", &form])
            .arg(format!("http://127.0.0.1:{port}/{name}/start"))
            .output()
            .expect("curl is installed");
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    assert_eq!(curl(&["-H", "Origin: http://evil.example"], "csrf2"), "403");
    assert_eq!(curl(&[], "curl"), "201");
    assert_eq!(bsc.get("/curl/config").1[0]["handler"]["name"], "curl");
    assert_eq!(bsc.get("/csrf2/config").1, json!([]));
    assert!(
        bsc.log_matching("refused POST /csrf1/start (403)").len() == 1,
        "the first refusal is logged: {:?}",
        bsc.log_matching("management API")
    );
    assert!(bsc.stop().success());
}

#[test]
fn a_host_that_is_not_this_server_is_refused_with_or_without_a_token() {
    let dir = TempDir::new("host");
    let bsc = Bsc::with_config(
        dir.path(),
        &config(
            dir.path(),
            json!({"allowed_hosts": ["bsc.station.example"]}),
        ),
    );
    let port = bsc.http_port;
    for host in [
        format!("evil.example:{port}"),
        "evil.example".to_string(),
        "localhost.evil.example".to_string(),
        "127.0.0.1.evil.example".to_string(),
    ] {
        for path in ["/stats", "/metrics", "/ui", "/health"] {
            let r = raw(port, &format!("GET {path} HTTP/1.1\r\nHost: {host}"), "");
            assert_eq!(r.status, 421, "Host {host}, {path}");
            let error = r.json()["error"].as_str().unwrap().to_string();
            assert!(
                error.contains(&host) && error.contains("manager_server.allowed_hosts"),
                "{error}"
            );
            assert_eq!(r.header("cache-control"), Some("no-store"));
            assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
        }
    }
    for host in [
        format!("127.0.0.1:{port}"),
        "127.0.0.1".to_string(),
        format!("localhost:{port}"),
        "LocalHost".to_string(),
        format!("[::1]:{port}"),
        format!("bsc.station.example:{port}"),
        "BSC.station.example".to_string(),
    ] {
        let r = raw(port, &format!("GET /stats HTTP/1.1\r\nHost: {host}"), "");
        assert_eq!(r.status, 200, "Host {host}");
        assert_eq!(r.header("cache-control"), Some("no-store"));
        assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
    }
    // HTTP/1.0 without a Host: not a browser's.
    let r = raw(port, "GET /health HTTP/1.0", "");
    assert_eq!(r.status, 200);
    // Two Hosts (which one a proxy acted on is unknown), or a port no socket has.
    let r = raw(
        port,
        &format!("GET /stats HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nHost: evil.example"),
        "",
    );
    assert_eq!(r.status, 400);
    let r = raw(port, "GET /stats HTTP/1.1\r\nHost: localhost:99999", "");
    assert_eq!(r.status, 421);
    assert!(bsc.stop().success());

    // With a token: refused all the same, the right token or not.
    let dir = TempDir::new("host-token");
    let bsc = Bsc::with_config(dir.path(), &config(dir.path(), json!({"token": "s3cret"})));
    let port = bsc.http_port;
    let r = raw(
        port,
        "GET /stats HTTP/1.1\r\nHost: evil.example\r\nAuthorization: Bearer s3cret",
        "",
    );
    assert_eq!(r.status, 421);
    let r = raw(
        port,
        &format!("GET /stats HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer s3cret\r\nOrigin: http://evil.example"),
        "",
    );
    assert_eq!(r.status, 403);
    let r = raw(
        port,
        &format!("GET /stats HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer s3cret"),
        "",
    );
    assert_eq!(r.status, 200);
    assert!(bsc.stop().success());
}

#[test]
fn aits_create_handler_and_the_bsc_client_still_work() {
    let dir = TempDir::new("origin-ait");
    let bsc = Bsc::with_config(dir.path(), &config(dir.path(), json!({})));
    let port = free_udp_port();
    let (python, script) = ait_script("ait_bsc_create_handler");
    // By name (Host: localhost:PORT) and by address.
    for (name, host) in [("aitlocal", "localhost"), ("aitaddr", "127.0.0.1")] {
        let out = Command::new(&python)
            .arg(&script)
            .args([name, "127.0.0.1", &port.to_string(), "udp"])
            .args([
                "--service-host",
                host,
                "--service-port",
                &bsc.http_port.to_string(),
            ])
            .output()
            .unwrap();
        assert_success(&out);
        assert_eq!(
            bsc.get(&format!("/{name}/config")).1[0]["handler"]["name"],
            name
        );
    }
    let out = Command::new(env!("CARGO_BIN_EXE_bsc"))
        .args([
            "--server",
            &format!("127.0.0.1:{}", bsc.http_port),
            "status",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.contains("aitlocal"), "{text}");
    assert!(bsc.stop().success());
}

/// A static web server (Python's) on a free loopback port serving `dir`,
/// stopped when dropped.
struct Site {
    child: Child,
    port: u16,
}

impl Site {
    fn serve(dir: &Path) -> Site {
        let port = free_tcp_port();
        let child = Command::new("python3")
            .args([
                "-m",
                "http.server",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
            ])
            .arg("--directory")
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 is installed");
        wait_until("the foreign site answers", || {
            TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        Site { child, port }
    }
}

impl Drop for Site {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn in_a_browser_the_status_page_works_and_a_foreign_page_cannot_drive_the_api() {
    let dir = TempDir::new("browser");
    let udp = free_udp_port();
    let mut cfg = config(dir.path(), json!({}));
    cfg["handlers"] = json!([{"name": "seen", "conn_type": "udp", "address": ["127.0.0.1", udp],
                              "rotate_log": false, "file_name_pattern": "seen.pcap"}]);
    let bsc = Bsc::with_config(dir.path(), &cfg);
    let port = bsc.http_port;

    // The status page, from bsc itself: it reads the API and shows the handler.
    let dom = dump_dom(&[], &format!("http://127.0.0.1:{port}/ui"));
    assert!(dom.contains("<tr data-handler=\"seen\""), "{dom}");

    // A page on another origin (another port of this machine) posts a form to
    // bsc and fetches from it, as a malicious site would.
    let site_dir = TempDir::new("browser-site");
    let target = format!("http://127.0.0.1:{port}");
    std::fs::write(
        site_dir.path().join("evil.html"),
        format!(
            r#"<!doctype html><title>evil</title><body><p id="out">waiting</p><script>
const body = new URLSearchParams({{port: "{}", conn_type: "udp", path: "csrf"}});
Promise.allSettled([
  fetch("{target}/csrf/start", {{method: "POST", mode: "no-cors", body}}),
  fetch("{target}/seen/rotate", {{method: "POST", mode: "no-cors"}}),
  fetch("{target}/seen/stop", {{method: "DELETE", mode: "no-cors"}}),
]).then(r => document.getElementById("out").textContent = "sent " + r.map(x => x.status).join(","));
</script></body>"#,
            free_udp_port()
        ),
    )
    .unwrap();
    let site = Site::serve(site_dir.path());
    let dom = dump_dom(&[], &format!("http://127.0.0.1:{}/evil.html", site.port));
    assert!(dom.contains("sent fulfilled"), "the page ran: {dom}");
    assert_eq!(bsc.get("/csrf/config").1, json!([]), "no handler started");
    let seen = bsc.get("/seen/config").1;
    assert_eq!(
        seen[0]["handler"]["name"], "seen",
        "the handler was not stopped: {seen}"
    );
    assert_eq!(
        bsc.log_matching("refused POST /csrf/start (403)").len(),
        1,
        "{:?}",
        bsc.log_matching("management API")
    );

    // DNS rebinding: a name the attacker points at 127.0.0.1.
    let dom = dump_dom(
        &["--host-resolver-rules=MAP rebind.example 127.0.0.1"],
        &format!("http://rebind.example:{port}/stats"),
    );
    assert!(
        dom.contains("is not this server") && !dom.contains("seen"),
        "the rebinding page reads nothing: {dom}"
    );
    drop(site);
    assert!(bsc.stop().success());
}

#[test]
fn bsc_check_knows_allowed_hosts() {
    let dir = TempDir::new("check-hosts");
    let check = |server: Value| {
        let file = write_config(dir.path(), &config(dir.path(), server));
        let out = Command::new(env!("CARGO_BIN_EXE_bsc"))
            .arg("check")
            .arg("-c")
            .arg(&file)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let (code, err) = check(json!({"allowed_hosts": ["bsc.station.example", "gs-1"]}));
    assert_eq!(code, Some(0), "{err}");
    for (value, says) in [
        (json!(["bsc.example:8080"]), "no port"),
        (json!(["bsc example"]), "not a host name"),
        (json!(["http://bsc.example"]), "not a host name"),
        (json!(["bsc\u{1b}[2J"]), "not a host name"),
        (json!([""]), "not a host name"),
        (json!([8080]), "as strings"),
        (json!("bsc.example"), "list of host names"),
    ] {
        let (code, err) = check(json!({"allowed_hosts": value}));
        assert_eq!(code, Some(2), "{value}: {err}");
        assert!(
            err.contains("capture_manager.manager_server.allowed_hosts") && err.contains(says),
            "{value}: {err}"
        );
        assert!(!err.contains('\u{1b}'), "no raw control character: {err}");
    }
    let (code, err) = check(json!({"allowed_host": ["bsc.example"]}));
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("allowed_hosts"),
        "the typo names the key meant: {err}"
    );
}
