//! The status page (`GET /ui`) in a real browser: headless Chromium loads it
//! from a running bsc with one busy and one silent UDP handler, and the DOM it
//! renders is checked (a row per handler, a sparkline that moves for the busy
//! one, the silent one marked silent); screenshots go to `target/ui.png` and
//! `target/ui-phone.png`. At laptop sizes (1280x800, 1400x1000), with 40-character
//! names and a TCP peer that refuses, the page's `?layout=1` boxes show every
//! cell inside the window (screenshots `target/ui-1280.png` and
//! `target/ui-1400.png`, copied to `docs/` by hand). Also `/series` against
//! `/stats` and its ten minutes on bsc's (driven) clock, and the token rule:
//! `/ui` is the one route served without it.

mod common;

use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

/// Runs headless Chromium on `url` with `args` (a fresh profile each time,
/// nothing but loopback), killed after a minute; its stdout.
fn browse(profile: &Path, args: &[&str], url: &str) -> String {
    let flags = [&["--disable-quic", "--hide-scrollbars"][..], args].concat();
    let out = headless_chromium(profile, &flags, url);
    assert!(
        out.status.success(),
        "chromium failed on {url}: {:?}",
        out.status
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The rendered DOM of `url`, after the page's scripts ran for a few
/// (virtual) seconds.
fn dump_dom(profile: &Path, url: &str) -> String {
    browse(profile, &["--virtual-time-budget=3000", "--dump-dom"], url)
}

/// A screenshot of `url` at `width`×`height` into `out`; checks it is a PNG.
fn screenshot(profile: &Path, url: &str, out: &Path, width: u32, height: u32) {
    let _ = std::fs::remove_file(out);
    browse(
        profile,
        &[
            "--virtual-time-budget=3000",
            &format!("--screenshot={}", out.display()),
            &format!("--window-size={width},{height}"),
        ],
        url,
    );
    let png = std::fs::read(out).unwrap_or_else(|e| panic!("no screenshot {}: {e}", out.display()));
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 5000,
        "{} is no real screenshot",
        out.display()
    );
}

/// The `<tr>` of handler `name` in a dumped DOM, up to the next row.
fn row<'a>(dom: &'a str, name: &str) -> &'a str {
    let start = dom
        .find(&format!("<tr data-handler=\"{name}\""))
        .unwrap_or_else(|| panic!("no row for {name} in the page:\n{dom}"));
    let rest = &dom[start..];
    let end = rest[1..].find("<tr").map_or(rest.len(), |e| e + 1);
    &rest[..end]
}

/// The value of the first `attr="..."` in `html`.
fn attr<'a>(html: &'a str, attr: &str) -> Option<&'a str> {
    let key = format!(" {attr}=\"");
    let start = html.find(&key)? + key.len();
    Some(&html[start..start + html[start..].find('"')?])
}

/// The packets sparkline of a row: its `data-flat` and how many distinct
/// heights its polyline has.
fn packets_sparkline(row: &str) -> (String, usize) {
    let svg = &row[row
        .find("data-series=\"packets\"")
        .unwrap_or_else(|| panic!("no packets sparkline in {row}"))..];
    let svg = &svg[..svg.find("</svg>").unwrap()];
    let flat = attr(svg, "data-flat").unwrap().to_string();
    let points = attr(svg, "points").unwrap();
    let mut ys: Vec<&str> = points
        .split_whitespace()
        .map(|p| p.split_once(',').unwrap().1)
        .collect();
    assert_eq!(ys.len(), 600, "one point per second of 10 minutes");
    ys.sort_unstable();
    ys.dedup();
    (flat, ys.len())
}

/// Sends datagrams to 127.0.0.1:`port` at about 200 a second until `stop` is set
/// (at most 60 s); the number sent.
fn send_until(port: u16, stop: Arc<AtomicBool>) -> JoinHandle<u64> {
    std::thread::spawn(move || {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        let start = Instant::now();
        let mut sent = 0u64;
        while !stop.load(Ordering::SeqCst) && start.elapsed() < Duration::from_secs(60) {
            s.send_to(&seq_payload(sent), ("127.0.0.1", port)).unwrap();
            sent += 1;
            std::thread::sleep(Duration::from_millis(5));
        }
        sent
    })
}

fn target_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn entry_named<'a>(stats: &'a Value, name: &str) -> &'a Value {
    stats
        .as_object()
        .unwrap()
        .values()
        .flat_map(|v| v.as_array().unwrap())
        .find(|e| e["name"] == name)
        .unwrap_or_else(|| panic!("no {name} in /stats: {stats}"))
}

#[test]
fn the_status_page_in_a_browser_shows_a_busy_and_a_silent_link() {
    let dir = TempDir::new("ui");
    let (busy_port, quiet_port) = (free_udp_port(), free_udp_port());
    let bsc = Bsc::with_config_env(
        dir.path(),
        &json!({"capture_manager": {"root_log_directory": dir.path().join("cap")},
                "handlers": [
                    {"name": "busy", "conn_type": "udp", "address": ["127.0.0.1", busy_port], "rotate_log": false, "file_name_pattern": "busy.pcap"},
                    {"name": "quiet", "conn_type": "udp", "address": ["127.0.0.1", quiet_port], "rotate_log": false, "file_name_pattern": "quiet.pcap"}]}),
        &[DRIVEN_CLOCK],
    );
    let stop = Arc::new(AtomicBool::new(false));
    let sender = send_until(busy_port, stop.clone());
    // A few seconds of traffic, and quiet older than the 2 s silence threshold
    // (seconds of bsc's clock, which moves faster than the wall meanwhile).
    wait_advancing(
        bsc.http_port,
        0.1,
        "busy has 3 s of traffic and bsc is 3 s old",
        || {
            let (_, stats) = bsc.get("/stats");
            let (_, health) = bsc.get("/health");
            entry_named(&stats, "busy")["packets"].as_u64() >= Some(500)
                && health["uptime_s"].as_u64() >= Some(3)
        },
    );

    let url = format!("http://127.0.0.1:{}/ui?silent_s=2", bsc.http_port);
    let profile = TempDir::new("ui-chromium");
    let dom = dump_dom(profile.path(), &url);
    let busy = row(&dom, "busy");
    let quiet = row(&dom, "quiet");
    assert_eq!(dom.matches("<tr data-handler=").count(), 2, "{dom}");
    assert_eq!(attr(busy, "data-silent"), Some("false"), "{busy}");
    assert_eq!(attr(quiet, "data-silent"), Some("true"), "{quiet}");
    assert!(
        quiet.contains("SILENT"),
        "silence is written, not only coloured: {quiet}"
    );
    let (flat, heights) = packets_sparkline(busy);
    assert_eq!(flat, "false", "{busy}");
    assert!(
        heights > 1,
        "the busy sparkline has {heights} height(s): {busy}"
    );
    assert_eq!(packets_sparkline(quiet), ("true".into(), 1), "{quiet}");
    assert!(
        busy.contains("busy.pcap"),
        "the current file is shown: {busy}"
    );
    assert!(dom.contains("Disk free"), "{dom}");

    let target = target_dir();
    screenshot(profile.path(), &url, &target.join("ui.png"), 1200, 800);
    screenshot(profile.path(), &url, &target.join("ui-phone.png"), 390, 844);

    // /series counts what /stats counts, second by second.
    stop.store(true, Ordering::SeqCst);
    let sent = sender.join().unwrap();
    wait_until("bsc has every datagram", || {
        entry_named(&bsc.get("/stats").1, "busy")["packets"].as_u64() == Some(sent)
    });
    let (status, series) = bsc.get("/series");
    assert_eq!(status, 200);
    assert_eq!(series["step_s"], 1);
    assert!(
        series["now"].as_i64().unwrap() > 1_577_836_800,
        "{}",
        series["now"]
    );
    let handlers = series["handlers"].as_array().unwrap();
    let names: Vec<&str> = handlers
        .iter()
        .map(|h| h["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["busy", "quiet"]);
    assert_eq!(handlers[0]["address"], json!(["127.0.0.1", busy_port]));
    let stats = bsc.get("/stats").1;
    for h in handlers {
        let st = entry_named(&stats, h["name"].as_str().unwrap());
        for key in ["packets", "bytes"] {
            let values = h[key].as_array().unwrap();
            assert_eq!(values.len(), 600);
            let sum: u64 = values.iter().map(|v| v.as_u64().unwrap()).sum();
            assert_eq!(sum, st[key].as_u64().unwrap(), "{} {key}", h["name"]);
        }
    }
    let busy_seconds = handlers[0]["packets"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|v| v.as_u64() > Some(0))
        .count();
    assert!(
        busy_seconds >= 3,
        "traffic spread over {busy_seconds} seconds"
    );

    let (_, health) = bsc.get("/health");
    let disk = &health["disk"];
    assert!(
        disk["free_bytes"].as_u64().unwrap() <= disk["total_bytes"].as_u64().unwrap(),
        "{disk}"
    );
    assert_eq!(
        (&disk["budget_bytes"], &disk["full"]),
        (&Value::Null, &json!(false)),
        "{disk}"
    );
}

#[test]
fn the_series_holds_the_last_ten_minutes_of_bsc_s_clock() {
    let dir = TempDir::new("series");
    let port = free_udp_port();
    let bsc = Bsc::with_config_env(
        dir.path(),
        &json!({"capture_manager": {"root_log_directory": dir.path().join("cap")},
                "handlers": [{"name": "s", "conn_type": "udp", "address": ["127.0.0.1", port]}]}),
        &[DRIVEN_CLOCK],
    );
    let packets = |bsc: &Bsc| -> Vec<u64> {
        let (status, series) = bsc.get("/series");
        assert_eq!(status, 200);
        let values = series["handlers"][0]["packets"].as_array().unwrap();
        values.iter().map(|v| v.as_u64().unwrap()).collect()
    };
    // One unit at 08:00:00 and a bit, one two seconds later.
    set_clock(bsc.http_port, "2031-05-06T08:00:00.000Z");
    send(&bsc, port, 0);
    advance_clock(bsc.http_port, 2.0);
    send(&bsc, port, 1);
    let now = packets(&bsc);
    assert_eq!(now.len(), 600);
    assert_eq!(now.iter().sum::<u64>(), 2, "{now:?}");
    // At 08:09:59 the first is in the oldest second; a second later it is gone
    // from the series, not from /stats.
    set_clock(bsc.http_port, "2031-05-06T08:09:59.900Z");
    let last_second = packets(&bsc);
    assert_eq!(
        last_second[0], 1,
        "08:00:00 is the oldest of the 600 seconds"
    );
    assert_eq!(last_second.iter().sum::<u64>(), 2);
    set_clock(bsc.http_port, "2031-05-06T08:10:00.100Z");
    let after = packets(&bsc);
    assert_eq!(after.len(), 600);
    assert_eq!(after.iter().sum::<u64>(), 1, "{after:?}");
    assert_eq!(entry_named(&bsc.get("/stats").1, "s")["packets"], 2);
    assert!(bsc.stop().success());
}

#[test]
fn with_a_token_only_the_page_is_served_without_it() {
    let dir = TempDir::new("ui-token");
    let port = free_tcp_port();
    let bsc = Bsc::with_config(
        dir.path(),
        &json!({"capture_manager": {"root_log_directory": dir.path().join("cap"),
                 "min_free_bytes": 1024,
                 "manager_server": {"host": "127.0.0.1", "port": port, "token": "s3cret"}}}),
    );
    let page = bsc.request("GET", "/ui", None, b"");
    assert_eq!(page.status, 200);
    assert_eq!(
        page.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    assert!(
        page.body.len() < 50 * 1024,
        "the page is {} bytes",
        page.body.len()
    );
    let html = String::from_utf8(page.body).unwrap();
    assert!(html.contains("sessionStorage") && html.contains("Authorization"));
    assert!(
        !html.contains("src=\"http") && !html.contains("href=\"http") && !html.contains("@import"),
        "the page loads nothing from elsewhere"
    );
    for (method, path) in [
        ("GET", "/stats"),
        ("GET", "/series"),
        ("GET", "/health"),
        ("POST", "/ui"),
        ("GET", "/ui/x"),
    ] {
        let r = bsc.request(method, path, None, b"");
        assert_eq!(r.status, 401, "{method} {path} without the token");
    }
    let with_token = |path: &str| {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        std::io::Write::write_all(
            &mut s,
            format!(
                "GET {path} HTTP/1.1\r\nAuthorization: Bearer s3cret\r\nConnection: close\r\n\r\n"
            )
            .as_bytes(),
        )
        .unwrap();
        let r = read_response(&mut std::io::BufReader::new(s)).unwrap();
        (r.status, r.json())
    };
    let (status, health) = with_token("/health");
    assert_eq!(status, 200);
    assert_eq!(health["disk"]["budget_bytes"], 1024, "{health}");
    assert_eq!(with_token("/series").0, 200);

    // In the browser, without a token in the tab, the page asks for one.
    let profile = TempDir::new("ui-token-chromium");
    let dom = dump_dom(profile.path(), &format!("http://127.0.0.1:{port}/ui"));
    assert!(dom.contains("token needed"), "{dom}");
    assert!(!dom.contains("<tr data-handler="), "{dom}");
}

/// The text of `<pre id="layout">` in a dumped DOM, as the page wrote it.
fn layout_of(dom: &str) -> Value {
    let start = dom
        .find("<pre id=\"layout\" hidden=\"\">")
        .map(|i| i + "<pre id=\"layout\" hidden=\"\">".len())
        .unwrap_or_else(|| panic!("no layout in the page:\n{dom}"));
    let text = &dom[start..start + dom[start..].find("</pre>").unwrap()];
    let text = text
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&nbsp;", "\u{a0}")
        .replace("&amp;", "&");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("layout {text:?}: {e}"))
}

#[test]
fn every_column_fits_a_laptop_window_with_long_names_and_a_refusing_peer() {
    let dir = TempDir::new("ui-laptop");
    let udp_port = free_udp_port();
    // Nothing listens there: bsc keeps trying, and shows connect's error.
    let refusing = free_tcp_port();
    let udp_name = "ground-station-alpha-vc1-tm-frames-prime";
    let tcp_name = "ground-station-alpha-modem-tcp-stream-ab";
    assert_eq!((udp_name.len(), tcp_name.len()), (40, 40));
    let bsc = Bsc::with_config_env(
        dir.path(),
        &json!({"capture_manager": {"root_log_directory": dir.path().join("cap")},
                "handlers": [
                    {"name": udp_name, "conn_type": "udp", "address": ["127.0.0.1", udp_port],
                     "path": "station-alpha/virtual-channel-1/%Y/%j",
                     "file_name_pattern": "%Y-%m-%d-%H-%M-%S-{name}.pcap"},
                    {"name": tcp_name, "conn_type": "tcp", "address": ["127.0.0.1", refusing]}]}),
        &[DRIVEN_CLOCK],
    );
    let stop = Arc::new(AtomicBool::new(false));
    let traffic = send_until(udp_port, stop.clone());
    wait_advancing(
        bsc.http_port,
        0.1,
        "traffic written, the peer refused, bsc 3 s old",
        || {
            let (_, caps) = bsc.get("/capturers");
            let (_, stats) = bsc.get("/stats");
            let (_, health) = bsc.get("/health");
            caps.as_array()
                .unwrap()
                .iter()
                .any(|c| c["error"].is_string())
                && entry_named(&stats, udp_name)["packets"].as_u64() >= Some(300)
                && health["uptime_s"].as_u64() >= Some(3)
        },
    );

    let url = format!("http://127.0.0.1:{}/ui?silent_s=1&layout=1", bsc.http_port);
    let profile = TempDir::new("ui-laptop-chromium");
    for (width, height) in [(1280u32, 800u32), (1400, 1000)] {
        let size = format!("--window-size={width},{height}");
        let dom = browse(
            profile.path(),
            &["--virtual-time-budget=3000", &size, "--dump-dom"],
            &url,
        );
        // The busy link is fine; the refusing one is silent, its mark whole.
        assert_eq!(attr(row(&dom, udp_name), "data-silent"), Some("false"));
        assert!(row(&dom, tcp_name).contains("SILENT"), "{dom}");
        assert!(
            row(&dom, tcp_name).contains("TCP backing off"),
            "{}",
            row(&dom, tcp_name)
        );
        let layout = layout_of(&dom);
        let width_px = i64::from(width);
        assert_eq!(layout["window_width"], width, "{layout}");
        assert!(
            layout["page_width"].as_i64() <= Some(width_px),
            "the page scrolls sideways at {width} px: {layout}"
        );
        let cells = layout["cells"].as_array().unwrap();
        assert_eq!(cells.len(), 18, "9 columns of 2 rows: {layout}");
        for c in cells {
            let (content, cell) = (&c["content"], &c["cell"]);
            let inside =
                |b: &Value| b["left"].as_i64() >= Some(0) && b["right"].as_i64() <= Some(width_px);
            assert!(
                inside(cell) && inside(content),
                "at {width}x{height}, {} of {} is not inside the window: {c}",
                c["column"],
                c["handler"]
            );
            assert!(
                content["left"].as_i64() >= cell["left"].as_i64()
                    && content["right"].as_i64() <= cell["right"].as_i64()
                    && c["clipped"] == false,
                "at {width}x{height}, {} of {} sticks out of its cell: {c}",
                c["column"],
                c["handler"]
            );
        }
        // Long texts are shortened or wrapped, the whole text on hover.
        let tcp_row = row(&dom, tcp_name);
        let (_, caps) = bsc.get("/capturers");
        let error = caps
            .as_array()
            .unwrap()
            .iter()
            .find_map(|c| c["error"].as_str())
            .unwrap()
            .to_string();
        assert!(
            tcp_row.contains(&format!("title=\"{error}")),
            "the peer's whole error is on hover: {tcp_row}"
        );
        let shot = target_dir().join(format!("ui-{width}.png"));
        screenshot(profile.path(), &url, &shot, width, height);
    }
    stop.store(true, Ordering::SeqCst);
    traffic.join().unwrap();
}
