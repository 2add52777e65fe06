//! The manager driven in unit tests: with a socket where the capture path is
//! the subject, without one (units fed in, time passed in, events and files
//! checked) for rotation, naming, retention and the ship queue.

use super::*;
use crate::clock::Clock;
use serde_json::json;

fn spec(name: &str, port: u16, extra: serde_json::Value) -> HandlerSpec {
    let mut v = json!({"name": name, "conn_type": "udp", "address": ["127.0.0.1", port]});
    for (k, x) in extra.as_object().unwrap() {
        v[k] = x.clone();
    }
    HandlerSpec::from_json(v.as_object().unwrap(), Origin::ConfigFile).unwrap()
}

fn free_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Drains until `n` more units were handed to handlers (datagrams on loopback
/// can take a moment to be readable).
fn drain_until(m: &mut Manager, registry: &Registry, cid: CapturerId, clock: &Clock, packets: u64) {
    for _ in 0..1000 {
        m.drain(cid, registry, Instant::now(), || clock.now_nanos());
        if m.handlers().map(|(_, h)| h.stats().packets).max() >= Some(packets) {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    panic!("datagrams never arrived");
}

#[test]
fn a_manual_clock_drives_naming_and_rotation() {
    let root = std::env::temp_dir().join(format!("bsc-manager-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let poll = mio::Poll::new().unwrap();
    let clock = Clock::manual(UnixMicros(1_795_860_000_000_000)); // 2026-11-28T10:00:00Z
    let mut m = Manager::new(&root, &StorageConfig::default());
    let port = free_port();
    let hid = m
        .add_handler(
            spec(
                "h",
                port,
                json!({"rotate_log_index": "minute", "file_name_pattern": "%H%M-{name}.pcap", "timestamps": "read"}),
            ),
            poll.registry(),
            clock.now(),
            Instant::now(),
        )
        .unwrap();
    // Same name on the same address, and another conn_type there, are refused.
    assert!(matches!(
        m.add_handler(
            spec("h", port, json!({"path": "x"})),
            poll.registry(),
            clock.now(),
            Instant::now()
        ),
        Err(AddError::Conflict(_))
    ));
    assert!(matches!(
        m.add_handler(
            spec("g", port, json!({"file_name_pattern": "%H%M-h.pcap"})),
            poll.registry(),
            clock.now(),
            Instant::now()
        ),
        Err(AddError::Conflict(_))
    ));
    let cid = m
        .capturer_at(&Address {
            host: "127.0.0.1".into(),
            port,
        })
        .unwrap();
    let tx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    tx.send_to(b"one", ("127.0.0.1", port)).unwrap();
    drain_until(&mut m, poll.registry(), cid, &clock, 1);
    m.flush_dirty();
    assert_eq!(m.next_deadline(), Some(UnixMicros(1_795_860_060_000_000)));
    clock.set(UnixMicros(1_795_860_059_000_000));
    m.expire(clock.now());
    assert_eq!(
        m.handler(hid).log_file_path(m.storage(), clock.now()),
        root.join("1000-h.pcap")
    );
    clock.set(UnixMicros(1_795_860_061_000_000));
    m.expire(clock.now());
    assert_eq!(m.next_deadline(), None);
    assert_eq!(
        m.handler(hid).log_file_path(m.storage(), clock.now()),
        root.join("1001-h.pcap"),
        "closed: shows the next name"
    );
    tx.send_to(b"two", ("127.0.0.1", port)).unwrap();
    drain_until(&mut m, poll.registry(), cid, &clock, 2);
    m.flush_dirty();
    assert!(root.join("1000-h.pcap").exists() && root.join("1001-h.pcap").exists());
    // Removing the last handler closes the socket: the port is free at once.
    m.remove_handler(hid, poll.registry(), clock.now());
    assert!(m.capturers().is_empty());
    assert!(std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok());
    std::fs::remove_dir_all(&root).unwrap();
}

/// 2026-11-28T10:00:00Z, and `s` seconds after it.
const T0: i64 = 1_795_860_000_000_000;

fn at(s: i64) -> UnixMicros {
    UnixMicros(T0 + s * 1_000_000)
}

/// A root folder of its own, removed afterwards.
struct Root(PathBuf);

impl Root {
    fn new(tag: &str) -> Root {
        let p = std::env::temp_dir().join(format!("bsc-middle-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        Root(p)
    }
}

impl Drop for Root {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl Manager {
    /// A handler with no capturer: a unit test feeds it units ([`Manager::feed`]).
    fn add_detached(&mut self, spec: HandlerSpec, now: UnixMicros) -> HandlerId {
        self.start_handler(spec, None, now)
    }

    /// One unit for `hid`, read at `t`, written at once (as at the end of a
    /// drain's batch).
    fn feed(&mut self, hid: HandlerId, data: &[u8], t: UnixMicros) {
        let unit = Unit {
            data,
            orig_len: data.len(),
            read_at: t.into(),
            kernel_at: None,
            peer: sys::Peer::Unknown,
            stream: false,
        };
        let mut cx = Cx {
            files: &mut self.storage,
            now: t,
            closed: self.forward.outbox(),
            clock: self.clock,
        };
        let mut gather = pending::Gather::copying();
        self.handlers.deliver(hid, &unit, &mut gather, &mut cx);
        self.handlers.flush(hid, &mut gather, &mut cx);
        self.flush_dirty();
    }

    /// The closed files the journal lists for `hid`, by name.
    fn closed_names(&self, hid: HandlerId) -> Vec<String> {
        self.files_of(hid)
            .iter()
            .map(|f| f.path.file_name().unwrap().to_string_lossy().into_owned())
            .collect()
    }
}

/// The payloads of the records in the capture file at `path`.
fn payloads(path: &Path) -> Vec<Vec<u8>> {
    let mut r = pcap_file::pcap::PcapReader::new(std::fs::File::open(path).unwrap()).unwrap();
    let mut out = Vec::new();
    while let Some(p) = r.next_packet() {
        out.push(p.unwrap().data.into_owned());
    }
    out
}

#[test]
fn rotation_timers_naming_and_retention_across_a_crash_and_a_forced_rotation() {
    let root = Root::new("rotate");
    let spec = || {
        spec(
            "h",
            9,
            json!({"rotate_log_index": "minute", "file_name_pattern": "{name}-%H%M.pcap", "max_files": 2}),
        )
    };
    let mut m = Manager::new(&root.0, &StorageConfig::default());
    let hid = m.add_detached(spec(), at(0));
    m.feed(hid, b"a", at(0));
    m.feed(hid, b"b", at(30));
    assert_eq!(
        m.next_deadline(),
        Some(at(60)),
        "the file's period ends at 10:01"
    );
    m.expire(at(59));
    assert!(m.forward.outbox().is_empty(), "not before its period ends");
    m.expire(at(60));
    // The close is an event the manager holds for on_close and the shipper.
    let closed: Vec<PathBuf> = m.forward.outbox().iter().map(|f| f.path.clone()).collect();
    assert_eq!(closed, [root.0.join("h-1000.pcap")]);
    m.dispatch_closed();
    assert!(m.forward.outbox().is_empty());
    for minute in 1..=3 {
        m.feed(hid, &[b'0' + minute as u8], at(60 * minute + 1));
        m.expire(at(60 * minute + 60));
    }
    m.feed(hid, b"e", at(241));
    // max_files 2, the open file included: one closed file is kept.
    assert_eq!(m.closed_names(hid), ["h-1003.pcap"]);
    assert!(!root.0.join("h-1000.pcap").exists() && !root.0.join("h-1002.pcap").exists());
    assert_eq!(m.handler(hid).stats().files_deleted, 3);
    assert_eq!(payloads(&root.0.join("h-1003.pcap")), [b"3"]);
    // A crash: no close. The next run resumes the file of this minute.
    drop(m);
    let mut m = Manager::new(&root.0, &StorageConfig::default());
    let hid = m.add_detached(spec(), at(245));
    assert_eq!(
        m.handler(hid).current_file(),
        Some(root.0.join("h-1004.pcap").as_path()),
        "resumed at start"
    );
    m.feed(hid, b"f", at(246));
    assert_eq!(payloads(&root.0.join("h-1004.pcap")), [b"e", b"f"]);
    // A forced rotation in the same minute never reuses a name.
    let rotated = m.rotate("h", &Map::new(), at(250)).unwrap();
    assert_eq!(
        rotated[0].previous.as_deref(),
        Some(root.0.join("h-1004.pcap").as_path())
    );
    assert_eq!(rotated[0].path, root.0.join("h-1004-1.pcap"));
    m.feed(hid, b"g", at(251));
    m.close_all(at(252), &Instant::now);
    assert_eq!(payloads(&root.0.join("h-1004-1.pcap")), [b"g"]);
    // Both closed files are final.
    for name in ["h-1004.pcap", "h-1004-1.pcap"] {
        let mode = std::fs::metadata(root.0.join(name)).unwrap().permissions();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode) & 0o222,
            0,
            "{name}"
        );
    }
}

#[test]
fn max_age_retention_follows_the_time_passed_in() {
    let root = Root::new("max-age");
    let mut m = Manager::new(&root.0, &StorageConfig::default());
    let hid = m.add_detached(
        spec(
            "h",
            9,
            json!({"rotate_log_index": "minute", "file_name_pattern": "%H%M.pcap", "max_age": "1h"}),
        ),
        at(0),
    );
    m.feed(hid, b"a", at(0));
    m.expire(at(60));
    m.feed(hid, b"b", at(60));
    m.expire(at(120));
    assert_eq!(m.closed_names(hid), ["1000.pcap", "1001.pcap"]);
    // An hour after the first close, not more: both stay.
    m.tick(at(60 + 3600));
    assert_eq!(m.closed_names(hid), ["1000.pcap", "1001.pcap"]);
    // A second more: the first is older than an hour.
    m.tick(at(61 + 3600));
    assert_eq!(m.closed_names(hid), ["1001.pcap"]);
    assert!(!root.0.join("1000.pcap").exists());
    m.tick(at(121 + 3600));
    assert!(m.closed_names(hid).is_empty());
    assert_eq!(m.handler(hid).stats().files_deleted, 2);
}

#[test]
fn files_waiting_to_ship_are_spared_by_retention_until_shipped_once_each() {
    let root = Root::new("ship");
    let shipped = root.0.join("shipped.txt");
    let script = format!("cat \"$BSC_FILE\" >> {}", shipped.display());
    let mut m = Manager::new(&root.0, &StorageConfig::default());
    let hid = m.add_detached(
        spec(
            "h",
            9,
            json!({"rotate_log_index": "minute", "file_name_pattern": "%H%M.pcap", "max_files": 1,
                   "ship": ["sh", "-c", script]}),
        ),
        at(0),
    );
    // The shipper not run yet: three files close, none shipped.
    for minute in 0..3 {
        m.feed(hid, &[b'a' + minute as u8], at(60 * minute));
        m.expire(at(60 * minute + 60));
    }
    m.dispatch_closed();
    let key = m.handler(hid).journal_key();
    assert_eq!(m.storage().queues().backlog(&key).files, 3);
    m.tick(at(181));
    assert_eq!(
        m.closed_names(hid),
        ["1000.pcap", "1001.pcap", "1002.pcap"],
        "retention spares files waiting to ship"
    );
    let mut expected = Vec::new();
    for name in ["1000.pcap", "1001.pcap", "1002.pcap"] {
        expected.extend(std::fs::read(root.0.join(name)).unwrap());
    }
    // Ship: oldest first, one at a time, until nothing waits (bounded).
    let started = Instant::now();
    while m.storage().queues().backlog(&key).files > 0 {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(20),
            "never shipped"
        );
        m.reap_hooks(at(182));
        m.ship(Instant::now(), at(182));
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    assert_eq!(m.ship_statuses(at(183))[0].1.shipped, 3);
    // Each file's bytes arrived once, in order; once shipped, retention
    // applies (max_files 1, no file open: the newest closed one stays).
    assert_eq!(std::fs::read(&shipped).unwrap(), expected);
    m.tick(at(184));
    assert_eq!(m.closed_names(hid), ["1002.pcap"]);
    // A restart does not ship them again.
    m.close_all(at(185), &Instant::now);
    drop(m);
    let m = Manager::new(&root.0, &StorageConfig::default());
    assert_eq!(m.storage().queues().backlog(&key).files, 0);
}
