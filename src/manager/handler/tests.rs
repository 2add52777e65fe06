use super::*;
use crate::config::{HandlerSpec, Origin};
use pcap_file::pcap::PcapReader;
use serde_json::json;
use std::fs::File;

fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("bsc-handler-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

/// A handler driven without sockets: the storage it is lent and the
/// files it closed (its events), as the manager keeps them.
struct Rig {
    h: Handler,
    files: Storage,
    closed: Vec<ClosedFile>,
    /// The clock's word the manager would lend (synchronised unless a test
    /// says otherwise).
    clock: ClockWord,
}

impl Rig {
    /// Runs `op` on the handler with the storage lent at `now`.
    fn with<R>(&mut self, now: UnixMicros, op: impl FnOnce(&mut Handler, &mut Cx) -> R) -> R {
        let mut cx = Cx {
            files: &mut self.files,
            now,
            closed: &mut self.closed,
            clock: self.clock,
        };
        op(&mut self.h, &mut cx)
    }

    /// A unit read at `ts` with no kernel time and no peer.
    fn record_plain(&mut self, ts: UnixMicros, data: &[u8], orig_len: usize) -> Recorded {
        let unit = Unit {
            data,
            orig_len,
            read_at: ts.into(),
            kernel_at: None,
            peer: Peer::Unknown,
            stream: false,
        };
        self.with(ts, |h, cx| {
            let mut gather = Gather::copying();
            let r = h.record(&unit, &mut gather, cx);
            // Outside a batch the records are copied: written by `flush`.
            debug_assert!(gather.is_empty() || h.pending.own_len() > 0);
            r
        })
    }

    fn flush(&mut self) {
        self.with(UnixMicros(T0), |h, cx| h.flush(cx));
    }

    fn close_if_due(&mut self, now: UnixMicros) -> bool {
        self.with(now, |h, cx| h.close_if_due(cx))
    }

    fn rotate_now(&mut self, now: UnixMicros) -> Result<Option<UnixMicros>, String> {
        self.with(now, |h, cx| h.rotate_now(cx))
    }

    fn log_file_path(&self, now: UnixMicros) -> PathBuf {
        self.h.log_file_path(&self.files, now)
    }

    /// The once-a-second upkeep, with the clock's word [`Rig::clock`].
    fn maintain(&mut self, now: UnixMicros) {
        self.with(now, |h, cx| h.maintain(cx));
    }

    /// Stops the handler as the manager does: flushed, its file closed.
    fn close(mut self) {
        self.with(UnixMicros(T0), |h, cx| h.close(cx));
    }
}

impl std::ops::Deref for Rig {
    type Target = Handler;
    fn deref(&self) -> &Handler {
        &self.h
    }
}

fn handler(root: &Path, extra: serde_json::Value) -> Rig {
    let mut v = json!({"name": "t", "conn_type": "udp", "address": ["", 9]});
    for (k, x) in extra.as_object().unwrap() {
        v[k] = x.clone();
    }
    let spec = HandlerSpec::from_json(v.as_object().unwrap(), Origin::ConfigFile).unwrap();
    let mut files = Storage::open(root);
    let mut closed = Vec::new();
    let mut cx = Cx {
        files: &mut files,
        now: UnixMicros(T0),
        closed: &mut closed,
        clock: SYNC,
    };
    let h = Handler::new(spec, root, None, &mut cx);
    Rig {
        h,
        files,
        closed,
        clock: SYNC,
    }
}

fn payloads(path: &Path) -> Vec<Vec<u8>> {
    let mut r = PcapReader::new(File::open(path).unwrap()).unwrap();
    let mut out = Vec::new();
    while let Some(p) = r.next_packet() {
        out.push(p.unwrap().data.into_owned());
    }
    out
}

const T0: i64 = 1_795_860_000_000_000; // 2026-11-28T10:00:00Z

const SYNC: ClockWord = ClockWord {
    synchronized: Some(true),
    max_error_us: Some(400),
};
const UNSYNC: ClockWord = ClockWord {
    synchronized: Some(false),
    max_error_us: Some(16_000_000),
};

#[test]
fn hourly_rotation_by_record_time_and_by_timer() {
    let root = temp_dir("hourly");
    let mut h = handler(
        &root,
        json!({"rotate_log_index": "hour", "file_name_pattern": "%H-%M-%S.pcap"}),
    );
    assert_eq!(h.log_file_path(UnixMicros(T0)), root.join("10-00-00.pcap"));
    let r = h.record_plain(UnixMicros(T0 + 1_000), b"a", 1);
    assert_eq!(
        r,
        Recorded {
            needs_flush: true,
            rotate_at: Some(UnixMicros(T0 + 3_600_000_000))
        }
    );
    assert!(!h.record_plain(UnixMicros(T0 + 2_000), b"b", 1).needs_flush);
    h.flush();
    // 10:59:59.9 still goes to the first file; 11:00:00 opens the next.
    h.record_plain(UnixMicros(T0 + 3_599_900_000), b"c", 1);
    let r = h.record_plain(UnixMicros(T0 + 3_600_000_000), b"d", 1);
    assert_eq!(r.rotate_at, Some(UnixMicros(T0 + 7_200_000_000)));
    h.flush();
    assert_eq!(payloads(&root.join("10-00-00.pcap")), [b"a", b"b", b"c"]);
    assert_eq!(payloads(&root.join("11-00-00.pcap")), [b"d"]);
    // The timer closes an idle file once its period is over, not before.
    assert!(!h.close_if_due(UnixMicros(T0 + 7_199_000_000)));
    assert!(h.close_if_due(UnixMicros(T0 + 7_200_000_000)));
    assert!(h.h.file.is_none());
    assert_eq!(
        h.log_file_path(UnixMicros(T0 + 7_300_000_000)),
        root.join("12-01-40.pcap")
    );
    assert_eq!(
        (h.stats.packets, h.stats.files_opened, h.stats.records_lost),
        (4, 2, 0)
    );
    std::fs::remove_dir_all(root).unwrap();
}

#[test]
fn a_clock_stepped_back_across_a_day_rotates_as_ait_does() {
    let root = temp_dir("stepback");
    let mut h = handler(
        &root,
        json!({"rotate_log_index": "hour", "file_name_pattern": "%d-%H.pcap"}),
    );
    h.record_plain(UnixMicros(T0), b"a", 1);
    h.record_plain(UnixMicros(T0 - 60_000_000), b"b", 1); // one minute back, same day: same file
    h.record_plain(UnixMicros(T0 - 86_400_000_000), b"c", 1); // a day back: new file
    h.flush();
    h.close();
    assert_eq!(payloads(&root.join("28-10.pcap")), [b"a", b"b"]);
    assert_eq!(payloads(&root.join("27-10.pcap")), [b"c"]);
    std::fs::remove_dir_all(root).unwrap();
}

#[test]
fn rotate_log_false_keeps_one_file() {
    let root = temp_dir("norotate");
    let mut h = handler(
        &root,
        json!({"rotate_log": false, "file_name_pattern": "one.pcap"}),
    );
    assert_eq!(h.record_plain(UnixMicros(T0), b"a", 1).rotate_at, None);
    h.record_plain(UnixMicros(T0 + 400 * 86_400_000_000), b"b", 1);
    h.close(); // closing flushes
    assert_eq!(payloads(&root.join("one.pcap")), [b"a", b"b"]);
    std::fs::remove_dir_all(root).unwrap();
}

#[test]
fn an_unopenable_file_counts_losses_and_retries_after_a_second() {
    let root = temp_dir("blocked");
    std::fs::create_dir_all(&root).unwrap();
    // A plain file where the handler's folder should be.
    std::fs::write(root.join("sub"), b"x").unwrap();
    let mut h = handler(&root, json!({"path": "sub", "file_name_pattern": "f.pcap"}));
    h.record_plain(UnixMicros(T0), b"a", 1);
    h.record_plain(UnixMicros(T0 + 500_000), b"b", 1);
    assert_eq!((h.stats.write_errors, h.stats.records_lost), (1, 2));
    std::fs::remove_file(root.join("sub")).unwrap();
    h.record_plain(UnixMicros(T0 + 900_000), b"c", 1); // still inside the back-off
    h.record_plain(UnixMicros(T0 + 1_000_000), b"d", 1);
    h.flush();
    assert_eq!((h.stats.write_errors, h.stats.records_lost), (1, 3));
    assert_eq!(payloads(&root.join("sub/f.pcap")), [b"d"]);
    std::fs::remove_dir_all(root).unwrap();
}

#[test]
fn count_and_size_limits_rotate_into_new_names() {
    let root = temp_dir("limits");
    let mut h = handler(
        &root,
        json!({"rotate_max_packets": 3, "file_name_pattern": "x.pcap"}),
    );
    for i in 0..7u8 {
        h.record_plain(UnixMicros(T0 + i as i64), &[i; 10], 10);
    }
    h.flush();
    assert_eq!(payloads(&root.join("x.pcap")).len(), 3);
    assert_eq!(payloads(&root.join("x-1.pcap")).len(), 3);
    assert_eq!(payloads(&root.join("x-2.pcap")), [[6u8; 10]]);
    assert_eq!(h.stats.rotations_count, 2);

    // 24-byte header + two 26-byte records = 76: two records per file.
    let root2 = temp_dir("size");
    let mut h = handler(
        &root2,
        json!({"rotate_max_bytes": 76, "file_name_pattern": "{name}-{seq}.pcap"}),
    );
    for i in 0..5u8 {
        h.record_plain(UnixMicros(T0), &[i; 10], 10);
    }
    h.flush();
    let sizes: Vec<u64> = (1..=3)
        .map(|n| {
            std::fs::metadata(root2.join(format!("t-{n:04}.pcap")))
                .unwrap()
                .len()
        })
        .collect();
    assert_eq!(sizes, [76, 76, 50]);
    assert_eq!(h.stats.rotations_size, 2);

    // A limit below one record: each record alone, none lost.
    let mut h = handler(
        &root2,
        json!({"name": "tiny", "rotate_max_bytes": 10, "file_name_pattern": "{name}-{seq}.pcap"}),
    );
    for i in 0..3u8 {
        h.record_plain(UnixMicros(T0), &[i; 40], 40);
    }
    h.flush();
    for n in 1..=3 {
        assert_eq!(payloads(&root2.join(format!("tiny-{n:04}.pcap"))).len(), 1);
    }
    h.close();
    std::fs::remove_dir_all(root).unwrap();
    std::fs::remove_dir_all(root2).unwrap();
}

#[test]
fn forced_rotations_and_restarts_never_reopen_a_closed_file() {
    let root = temp_dir("forced");
    let mut h = handler(&root, json!({"file_name_pattern": "%H%M%S.pcap"}));
    h.record_plain(UnixMicros(T0), b"a", 1);
    h.rotate_now(UnixMicros(T0 + 100)).unwrap();
    h.record_plain(UnixMicros(T0 + 200), b"b", 1);
    h.rotate_now(UnixMicros(T0 + 300)).unwrap();
    h.record_plain(UnixMicros(T0 + 400), b"c", 1);
    assert_eq!(h.stats.rotations_forced, 2);
    h.close();
    assert_eq!(payloads(&root.join("100000.pcap")), [b"a"]);
    assert_eq!(payloads(&root.join("100000-1.pcap")), [b"b"]);
    assert_eq!(payloads(&root.join("100000-2.pcap")), [b"c"]);
    // A new run in the same second: the closed files are final, numbering
    // goes on after the last.
    let mut h = handler(&root, json!({"file_name_pattern": "%H%M%S.pcap"}));
    assert_eq!(
        h.log_file_path(UnixMicros(T0 + 500)),
        root.join("100000-3.pcap")
    );
    h.record_plain(UnixMicros(T0 + 500), b"d", 1);
    h.close();
    assert_eq!(payloads(&root.join("100000.pcap")), [b"a"]);
    assert_eq!(payloads(&root.join("100000-3.pcap")), [b"d"]);
    std::fs::remove_dir_all(root).unwrap();
}

#[test]
fn a_file_left_open_by_a_crash_is_resumed_or_closed() {
    let root = temp_dir("crash");
    let mut h = handler(&root, json!({"file_name_pattern": "%H.pcap"}));
    h.record_plain(UnixMicros(T0), b"a", 1);
    h.flush();
    // A crash: the handler vanishes without closing its file.
    drop(h); // no close: its file stays as a crash leaves it
    let mut bytes = std::fs::read(root.join("10.pcap")).unwrap();
    bytes.extend_from_slice(&[1, 2, 3]); // a torn record
    std::fs::write(root.join("10.pcap"), &bytes).unwrap();
    // Same hour: the next run repairs and appends to it.
    let mut h = handler(&root, json!({"file_name_pattern": "%H.pcap"}));
    h.record_plain(UnixMicros(T0 + 1_000), b"b", 1);
    h.flush();
    drop(h); // no close: its file stays as a crash leaves it
    assert_eq!(payloads(&root.join("10.pcap")), [b"a", b"b"]);
    // Next hour: the leftover is repaired, closed and final; the unit goes to
    // the hour's file.
    let mut h = handler(&root, json!({"file_name_pattern": "%H.pcap"}));
    h.record_plain(UnixMicros(T0 + 3_600_000_000), b"c", 1);
    let closed = std::mem::take(&mut h.closed);
    assert_eq!(closed.len(), 1, "handed to on_close once");
    assert_eq!(closed[0].path, root.join("10.pcap"));
    h.close();
    assert_eq!(payloads(&root.join("10.pcap")), [b"a", b"b"]);
    assert_eq!(payloads(&root.join("11.pcap")), [b"c"]);
    let mode = std::fs::metadata(root.join("10.pcap"))
        .unwrap()
        .permissions();
    assert!(std::os::unix::fs::PermissionsExt::mode(&mode) & 0o200 == 0);
    std::fs::remove_dir_all(root).unwrap();
}

#[test]
fn each_file_keeps_the_clocks_word_while_it_was_open() {
    let root = temp_dir("clock");
    let mut h = handler(&root, json!({"file_name_pattern": "%H%M%S.pcap"}));
    h.record_plain(UnixMicros(T0), b"a", 1);
    h.maintain(UnixMicros(T0 + 1_000_000));
    let open = |h: &Rig| h.open_file(UnixMicros(T0)).unwrap().span.clock;
    assert_eq!(open(&h), SYNC);
    // Unsynchronised for one reading: the file says so for good.
    h.clock = UNSYNC;
    h.maintain(UnixMicros(T0 + 2_000_000));
    h.clock = SYNC;
    h.maintain(UnixMicros(T0 + 3_000_000));
    assert_eq!(open(&h), UNSYNC);
    h.rotate_now(UnixMicros(T0 + 3_000_100)).unwrap();
    // The next file starts with the clock's word at its opening.
    h.record_plain(UnixMicros(T0 + 3_000_200), b"b", 1);
    assert_eq!(open(&h), SYNC);
    let key = h.journal_key();
    h.close();
    let rig_files = |s: &Storage| -> Vec<ClockWord> {
        s.naming()
            .files(&key)
            .iter()
            .map(|f| f.span.clock)
            .collect()
    };
    // Journaled: a new run reads the same words back.
    let words = rig_files(&Storage::open(&root));
    assert_eq!(words, [UNSYNC, SYNC]);
    std::fs::remove_dir_all(root).unwrap();
}

#[test]
fn a_file_resumed_after_a_crash_has_an_unknown_clock() {
    let root = temp_dir("clock-crash");
    let mut h = handler(&root, json!({"file_name_pattern": "%H.pcap"}));
    h.record_plain(UnixMicros(T0), b"a", 1);
    h.flush();
    let key = h.journal_key();
    drop(h); // a crash: the file stays open
    let mut h = handler(&root, json!({"file_name_pattern": "%H.pcap"}));
    h.record_plain(UnixMicros(T0 + 1_000), b"b", 1);
    h.maintain(UnixMicros(T0 + 1_000_000));
    h.close();
    let s = Storage::open(&root);
    let files = s.naming().files(&key);
    assert_eq!(files.len(), 1);
    assert_eq!(
        files[0].span.clock.state(),
        "unknown",
        "bsc did not watch it all"
    );
    assert_eq!(
        files[0].span.clock.max_error_us,
        Some(400),
        "what it saw is kept"
    );
    // A crash leftover closed at start is unknown too.
    let mut h = handler(&root, json!({"file_name_pattern": "%H.pcap"}));
    h.record_plain(UnixMicros(T0 + 3_600_000_000), b"c", 1);
    h.flush();
    drop(h);
    let h = handler(&root, json!({"file_name_pattern": "%H.pcap"}));
    // 10.pcap closed before, 11.pcap left open: the new run is at T0 (hour
    // 10), so 11.pcap is closed as it is.
    let files = h.files.naming().files(&key);
    assert_eq!(files.len(), 2, "{files:?}");
    assert!(files[1].span.clock.is_unknown());
    std::fs::remove_dir_all(root).unwrap();
}
