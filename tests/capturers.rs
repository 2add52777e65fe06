//! Black-box tests of `GET /capturers` and `DELETE /capturers`.

mod common;

use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

use common::*;
use serde_json::{json, Value};

fn capturer<'a>(list: &'a Value, key: &str) -> &'a Value {
    list.as_array()
        .unwrap()
        .iter()
        .find(|c| c["key"] == key)
        .unwrap_or_else(|| panic!("no capturer {key} in {list}"))
}

#[test]
fn deleting_a_capturer_stops_its_handlers_and_frees_its_port() {
    let (dir, root) = TempDir::with_root("delcap");
    let (p1, p2) = (free_udp_port(), free_udp_port());
    let h = |name: &str, port: u16| json!({"name": name, "conn_type": "udp", "address": ["", port], "rotate_log": false, "file_name_pattern": format!("{name}.pcap")});
    let bsc = Bsc::capturing(dir.path(), &root, vec![h("a", p1), h("b", p1), h("c", p2)]);
    let (status, list) = bsc.get("/capturers");
    assert_eq!(status, 200);
    let first = capturer(&list, &format!("['', {p1}]"));
    assert_eq!(first["address"], json!(["", p1]));
    assert_eq!(
        (first["conn_type"].as_str(), first["state"].as_str()),
        (Some("udp"), Some("listening"))
    );
    assert_eq!(first["local_address"], format!("0.0.0.0:{p1}"));
    assert_eq!(first["handlers"], json!(["a", "b"]));
    assert!(first["rcvbuf_granted"].as_u64().unwrap() > 0);

    for (port, n) in [(p1, 3u64), (p2, 2)] {
        for i in 0..n {
            sender(port).send(&seq_payload(i)).unwrap();
        }
    }
    wait_until("records written", || {
        count_records(&root.join("a.pcap")) == 3 && count_records(&root.join("c.pcap")) == 2
    });

    let (status, stopped) = bsc.form(
        "DELETE",
        "/capturers",
        &format!("loc=&port={p1}&conn_type=udp"),
    );
    assert_eq!(status, 200, "{stopped}");
    assert_eq!(stopped["key"], format!("['', {p1}]"));
    let names: Vec<&str> = stopped["stopped"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["handler"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["a", "b"]);
    // The port is free the moment the answer is in.
    assert!(std::net::UdpSocket::bind(("0.0.0.0", p1)).is_ok());
    bsc.wait_log("handler a: closed");
    bsc.wait_log("handler b: closed");
    for f in ["a.pcap", "b.pcap"] {
        assert_eq!(read_pcap(&root.join(f)).2.len(), 3);
        assert_eq!(tcpdump(&root.join(f)).0, 3);
    }
    // The other capturer goes on.
    sender(p2).send(&seq_payload(9)).unwrap();
    wait_until("c keeps capturing", || {
        count_records(&root.join("c.pcap")) == 3
    });
    assert_eq!(bsc.get("/capturers").1.as_array().unwrap().len(), 1);

    // Again: 404 naming what was looked for and what exists. JSON and query bodies work too.
    let r = bsc.request(
        "DELETE",
        "/capturers",
        Some("application/json"),
        json!({"loc": "", "port": p1}).to_string().as_bytes(),
    );
    assert_eq!(r.status, 404);
    let msg = r.json()["error"].as_str().unwrap().to_string();
    assert!(
        msg.contains(&format!("no capturer at ['', {p1}]")) && msg.contains(&format!("['', {p2}]")),
        "{msg}"
    );
    assert_eq!(
        bsc.request(
            "DELETE",
            &format!("/capturers?port={p2}&conn_type=tcp"),
            None,
            b""
        )
        .status,
        404
    );
    assert_eq!(bsc.request("DELETE", "/capturers", None, b"").status, 400);
    assert_eq!(bsc.request("POST", "/capturers", None, b"").status, 405);
    assert_eq!(
        bsc.request("DELETE", &format!("/capturers?port={p2}"), None, b"")
            .status,
        200
    );
    assert!(bsc.stop().success());
}

/// A listener whose accept queue is full, so a new connection attempt stays in
/// SYN_SENT (connecting) until the queue is drained.
fn full_listener() -> (OwnedFd, u16, Vec<TcpStream>) {
    // SAFETY: plain socket calls on a fresh fd with valid arguments.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        assert!(fd >= 0);
        let owned = OwnedFd::from_raw_fd(fd);
        let mut addr: libc::sockaddr_in = std::mem::zeroed();
        addr.sin_family = libc::AF_INET as u16;
        addr.sin_addr.s_addr = u32::from(Ipv4Addr::LOCALHOST).to_be();
        let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
        assert_eq!(
            libc::bind(fd, (&addr as *const libc::sockaddr_in).cast(), len),
            0
        );
        assert_eq!(libc::listen(fd, 0), 0);
        let mut bound: libc::sockaddr_in = std::mem::zeroed();
        let mut blen = len;
        libc::getsockname(fd, (&mut bound as *mut libc::sockaddr_in).cast(), &mut blen);
        let port = u16::from_be(bound.sin_port);
        let mut fillers = Vec::new();
        for _ in 0..8 {
            match TcpStream::connect_timeout(
                &SocketAddrV4::new(Ipv4Addr::LOCALHOST, port).into(),
                Duration::from_millis(300),
            ) {
                Ok(s) => fillers.push(s),
                Err(_) => break,
            }
        }
        (owned, port, fillers)
    }
}

#[test]
fn a_tcp_capturer_goes_connecting_connected_backoff() {
    let dir = TempDir::new("tcpstate");
    let bsc = Bsc::with_config(
        dir.path(),
        &json!({"capture_manager": {"root_log_directory": dir.path().join("cap")}}),
    );
    let (listener, port, fillers) = full_listener();
    let (status, r) = bsc.form(
        "POST",
        "/link/start",
        &format!("loc=127.0.0.1&port={port}&conn_type=tcp&connect_timeout_s=20"),
    );
    assert_eq!(status, 201, "{r}");
    let key = format!("['127.0.0.1', {port}]");
    let state = |bsc: &Bsc| {
        capturer(&bsc.get("/capturers").1, &key)["state"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(state(&bsc), "connecting");

    // Make room: the kernel retries bsc's SYN and the connection completes.
    drop(fillers);
    let std_listener = unsafe { TcpListener::from_raw_fd(listener.as_raw_fd()) };
    std::mem::forget(listener); // now owned by std_listener
    std_listener.set_nonblocking(true).unwrap();
    let mut accepted = Vec::new();
    wait_until("connected", || {
        while let Ok((s, _)) = std_listener.accept() {
            accepted.push(s);
        }
        state(&bsc) == "connected"
    });
    let entry = capturer(&bsc.get("/capturers").1, &key).clone();
    assert!(
        entry["local_address"]
            .as_str()
            .unwrap()
            .starts_with("127.0.0.1:"),
        "{entry}"
    );
    assert_eq!(entry["handlers"], json!(["link"]));

    // The peer goes away: back-off, with the next attempt's time.
    drop(accepted);
    drop(std_listener);
    wait_until("backoff", || state(&bsc) == "backoff");
    let entry = capturer(&bsc.get("/capturers").1, &key).clone();
    assert!(
        entry["next_attempt_at"].as_str().unwrap().ends_with('Z'),
        "{entry}"
    );
    assert!(entry["error"].is_string(), "{entry}");
    assert!(bsc.stop().success());
}

/// A capturer deleted while a flood keeps it in the loop's queue of sockets
/// to read (a drain that used up its budget comes back on the next turn): the
/// queued turn finds the capturer gone and bsc goes on, round after round.
#[test]
fn deleting_a_flooded_capturer_again_and_again_leaves_bsc_running() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let (dir, root) = TempDir::with_root("delflood");
    let port = free_udp_port();
    let bsc = Bsc::capturing(
        dir.path(),
        &root,
        vec![
            json!({"name": "f", "conn_type": "udp", "address": ["127.0.0.1", port], "rotate_log": false}),
        ],
    );
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let flood = std::thread::spawn(move || {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let t0 = std::time::Instant::now();
        let mut i = 0u64;
        while !flag.load(Ordering::Relaxed) && t0.elapsed() < Duration::from_secs(60) {
            let _ = s.send_to(&seq_payload(i), ("127.0.0.1", port));
            i += 1;
        }
    });
    let form = format!("loc=127.0.0.1&port={port}&conn_type=udp");
    for round in 0..20 {
        wait_until("the flood recorded", || {
            stats_of(&bsc, port)["packets"].as_u64() > Some(0)
        });
        let (status, body) = bsc.form("DELETE", "/capturers", &form);
        assert_eq!(status, 200, "round {round}: {body}");
        let (status, body) = bsc.form("POST", "/f/start", &form);
        assert_eq!(status, 201, "round {round}: {body}");
    }
    stop.store(true, Ordering::Relaxed);
    flood.join().unwrap();
    assert_eq!(bsc.get("/health").0, 200);
    assert!(bsc.stop().success());
}
