//! What each command prints, from its answer read into its
//! [`answers`](crate::control::api::answers) type: one line per handler added,
//! stopped or rotated, the `bsc status` table with its notes, the `bsc files`
//! list (pure).

use super::table::{
    age, clock_error, human_bytes, human_rate, seconds_text, short_time, table, Align,
};
use crate::clock::UnixMicros;
use crate::control::api::answers::{
    Address, CapturerEntry, CapturerStopped, EntrySummary, ForwardStatus, HandlerFiles, Rotated,
    Stats, StatsEntry,
};
use crate::files::window::parse_rfc3339;
use crate::ops::hooks::ShipStatus;

/// `udp *:8500`, `tcp 10.0.0.5:9000`, `ethernet eth0 type 0x88b5` from a
/// conn_type and an `[host, port]` address.
pub fn address_text(conn_type: &str, address: &Address) -> String {
    let (host, port) = (&address.0, address.1);
    let place = match conn_type {
        "ethernet" if port == 0 => format!("{host} all types"),
        "ethernet" => format!("{host} type {port:#06x}"),
        _ if host.is_empty() => format!("*:{port}"),
        _ if host.contains(':') => format!("[{host}]:{port}"),
        _ => format!("{host}:{port}"),
    };
    if conn_type.is_empty() {
        place
    } else {
        format!("{conn_type} {place}")
    }
}

/// A handler's name, `?` if the answer had none.
fn name_or_unknown(name: &str) -> &str {
    if name.is_empty() {
        "?"
    } else {
        name
    }
}

/// `bsc add`'s output, from the 201 config entry: what is known when a handler
/// starts, the folder and the file name pattern. No file exists yet (the first
/// opens with the first unit, named at that instant), so none is named.
pub fn format_added(entry: &EntrySummary) -> String {
    let handler = &entry.handler;
    let pattern = &handler.file_name_pattern;
    // log_dir is the folder of the name rendered now; a pattern with folders
    // of its own rendered some of them: the folder is above those.
    let mut folder = std::path::Path::new(&handler.log_dir);
    for _ in 0..pattern.matches('/').count() {
        folder = folder.parent().unwrap_or(folder);
    }
    format!(
        "added {} ({}): files go to {}/ as {pattern}; the first opens with the first unit\n",
        name_or_unknown(&handler.name),
        address_text(&entry.conn_type, &entry.address),
        folder.display()
    )
}

/// `bsc stop`'s output, from the list of entries stopped.
pub fn format_stopped(entries: &[EntrySummary]) -> String {
    let mut out = String::new();
    for e in entries {
        out.push_str(&format!(
            "stopped {} ({})\n",
            name_or_unknown(&e.handler.name),
            address_text(&e.conn_type, &e.address)
        ));
    }
    out
}

/// `bsc rotate`'s output: per handler, the file closed and the next one.
pub fn format_rotated(rotated: &[Rotated]) -> String {
    let mut out = String::new();
    for r in rotated {
        let previous = match &r.previous_file {
            Some(p) => format!("closed {p}"),
            None => "no file was open".into(),
        };
        out.push_str(&format!(
            "{} ({}): {previous}; next file {}\n",
            r.name,
            address_text("", &r.address),
            r.log_file_path
        ));
    }
    out
}

/// `bsc stop-capturer`'s output.
pub fn format_capturer_stopped(answer: &CapturerStopped<EntrySummary>) -> String {
    let names: Vec<&str> = answer
        .stopped
        .iter()
        .map(|e| e.handler.name.as_str())
        .filter(|n| !n.is_empty())
        .collect();
    format!(
        "closed {}; stopped {}\n",
        address_text(&answer.conn_type, &answer.address),
        if names.is_empty() {
            "no handlers".to_string()
        } else {
            names.join(", ")
        }
    )
}

/// `bsc status`: one row per handler from `GET /stats`, in the order of the
/// sockets in `GET /capturers` (which also gives each row its conn_type and, for
/// TCP, the connection's state), then a line per handler that needs attention.
pub fn status_table(stats: &Stats, capturers: &[CapturerEntry], now: UnixMicros) -> String {
    // Address keys in the order the sockets were opened, then any /stats has
    // that /capturers did not (a change between the two requests).
    let mut keys: Vec<&str> = capturers.iter().map(|c| c.key.as_str()).collect();
    for k in stats.keys() {
        if !keys.contains(&k.as_str()) {
            keys.push(k);
        }
    }
    let mut rows = Vec::new();
    let mut notes = Vec::new();
    let mut any_restored = false;
    for key in keys {
        let cap = capturers.iter().find(|c| c.key == key);
        let Some(entries) = stats.get(key) else {
            continue;
        };
        let address = match cap {
            Some(c) => address_text(&c.conn_type, &c.address),
            None => key.to_string(),
        };
        for e in entries {
            // Not in the config file: saved over the API before the last start.
            any_restored |= e.origin == "restored";
            rows.push(status_row(e, cap, &address, now, &mut notes));
        }
    }
    if rows.is_empty() {
        return "no handlers (add one with: bsc add NAME LOC PORT udp)\n".into();
    }
    use Align::{Left, Right};
    let mut out = table(
        &[
            ("HANDLER", Left),
            ("ADDRESS", Left),
            ("STATE", Left),
            ("PACKETS", Right),
            ("RATE", Right),
            ("LAST PACKET", Right),
            ("LOST", Right),
            ("DROPS", Right),
            ("MISSING", Right),
            ("SIZE", Right),
            ("FILE", Left),
        ],
        &rows,
    );
    if any_restored {
        notes.push(
            "(restored): added over the API before bsc last started, restored from ROOT/.bsc/handlers.json, not in the config file; `bsc stop NAME` removes it for good".into(),
        );
    }
    if !notes.is_empty() {
        out.push('\n');
        for n in notes {
            out.push_str(&n);
            out.push('\n');
        }
    }
    out
}

/// One handler's row of `bsc status` (`cap`: its socket, if `/capturers`
/// listed it); its notes go to `notes`.
fn status_row(
    e: &StatsEntry,
    cap: Option<&CapturerEntry>,
    address: &str,
    now: UnixMicros,
    notes: &mut Vec<String>,
) -> Vec<String> {
    let name = &*e.name;
    if let Some(reason) = &e.degraded_reason {
        notes.push(format!("{name}: degraded: {reason}"));
    }
    let state = socket_state(e, cap, notes);
    if let Some(note) = e.ship.as_ref().and_then(|s| ship_note(name, s)) {
        notes.push(note);
    }
    notes.extend(
        e.forward
            .iter()
            .flatten()
            .filter_map(|t| forward_note(name, t)),
    );
    let file = e.current_file.as_deref();
    vec![
        if e.origin == "restored" {
            format!("{name} (restored)")
        } else {
            name.to_string()
        },
        address.to_string(),
        state,
        e.packets.to_string(),
        human_rate(e.rate_bytes_per_s),
        age(e.last_packet_at.as_deref().and_then(parse_rfc3339), now),
        e.records_lost.to_string(),
        e.kernel_drops.to_string(),
        // Telemetry units the sequence counters say never arrived.
        e.sequence
            .as_ref()
            .map_or_else(|| "-".into(), |s| s.totals.missing.to_string()),
        if file.is_some() {
            human_bytes(e.current_file_bytes)
        } else {
            "-".into()
        },
        file.unwrap_or("(none open)").to_string(),
    ]
}

/// A row's STATE: the handler's, and for TCP its connection's (or a socket
/// error); a connection that is not up, or the error, gets a note.
fn socket_state(e: &StatsEntry, cap: Option<&CapturerEntry>, notes: &mut Vec<String>) -> String {
    let name = &*e.name;
    let conn_type = cap.map_or("", |c| &*c.conn_type);
    let socket = cap.map_or("", |c| &*c.state);
    let cap_error = cap.and_then(|c| c.error.as_deref());
    if conn_type == "tcp" || e.connected.is_some() {
        let connection = match socket {
            "" if e.connected == Some(true) => "connected",
            "" => "not connected",
            s => s,
        };
        if connection != "connected" {
            let why = cap_error.or_else(|| e.tcp_error());
            let next = cap.and_then(|c| c.next_attempt_at.as_deref());
            let mut note = format!("{name}: {connection}");
            if let Some(why) = why {
                note.push_str(&format!(": {why}"));
            }
            if let Some(next) = next {
                note.push_str(&format!(" (next attempt at {next})"));
            }
            notes.push(note);
        }
        format!("{}, {connection}", e.state)
    } else if socket == "error" {
        if let Some(why) = cap_error {
            notes.push(format!("{name}: socket error: {why}"));
        }
        format!("{}, socket error", e.state)
    } else {
        e.state.to_string()
    }
}

/// The line `bsc status` adds for a forward target that is down or dropped
/// units.
fn forward_note(name: &str, t: &ForwardStatus) -> Option<String> {
    let down = !matches!(t.state.as_str(), "ready" | "connected");
    if !down && t.units_dropped == 0 {
        return None;
    }
    let mut line = format!("{name}: forward {} {}", t.target, t.state);
    if t.units_dropped > 0 {
        line.push_str(&format!(", {} units dropped", t.units_dropped));
    }
    if let (true, Some(e)) = (down, &t.last_error) {
        line.push_str(&format!(" ({e})"));
    }
    Some(line)
}

/// The line `bsc status` adds for a handler whose files wait to ship (store and
/// forward), or that lost some before they shipped.
fn ship_note(name: &str, ship: &ShipStatus) -> Option<String> {
    let pending = ship.pending_files;
    let dropped = ship.dropped;
    if pending == 0 && dropped == 0 {
        return None;
    }
    let mut note = format!(
        "{name}: {} ({}) {} to ship",
        crate::log::count(pending, "file"),
        human_bytes(ship.pending_bytes),
        if pending == 1 { "waits" } else { "wait" }
    );
    if let Some(age) = ship.oldest_pending_age_s {
        note.push_str(&format!(", the oldest closed {}", seconds_text(age)));
    }
    if let (Some(e), Some(_)) = (&ship.last_error, &ship.next_attempt_at) {
        note.push_str(&format!("; failing: {e}"));
    }
    if let Some(next) = &ship.next_attempt_at {
        note.push_str(&format!(" (next attempt at {next})"));
    }
    if dropped > 0 {
        note.push_str(&format!(
            "; {dropped} dropped before they shipped (disk budget or deleted)"
        ));
    }
    Some(note)
}

/// `bsc files`: per handler of that name, its files, oldest first, the open one last.
pub fn file_list(answer: &[HandlerFiles]) -> String {
    let mut out = String::new();
    for (i, h) in answer.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        out.push_str(&format!("{} ({})\n", h.name, address_text("", &h.address)));
        if h.files.is_empty() {
            out.push_str("  no files yet\n");
            continue;
        }
        let rows: Vec<Vec<String>> = h
            .files
            .iter()
            .map(|f| {
                vec![
                    f.state.to_string(),
                    human_bytes(f.bytes),
                    f.records.map_or("?".into(), |n| n.to_string()),
                    short_time(f.first_record_at.as_deref()),
                    short_time(f.last_record_at.as_deref()),
                    // An older bsc does not say.
                    if f.clock.is_empty() { "?" } else { &f.clock }.to_string(),
                    clock_error(f.clock_max_error_us),
                    f.path.clone(),
                ]
            })
            .collect();
        use Align::{Left, Right};
        let t = table(
            &[
                ("STATE", Left),
                ("SIZE", Right),
                ("RECORDS", Right),
                ("FIRST RECORD (UTC)", Left),
                ("LAST RECORD (UTC)", Left),
                ("CLOCK", Left),
                ("MAX ERROR", Right),
                ("PATH", Left),
            ],
            &rows,
        );
        for line in t.lines() {
            out.push_str("  ");
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::api::answers::ReadFields;
    use crate::control::client::{read, read_list, read_stats};
    use serde_json::{json, Value};

    /// An answer's JSON read into its type, as the client reads it.
    fn typed<T: ReadFields>(v: Value) -> T {
        read(v, "h:1").unwrap()
    }

    /// An answer's JSON list read, as the client reads it.
    fn typed_list<T: ReadFields>(v: Value) -> Vec<T> {
        read_list(v, "h:1").unwrap()
    }

    #[test]
    fn addresses() {
        assert_eq!(address_text("udp", &("".into(), 8500)), "udp *:8500");
        assert_eq!(
            address_text("tcp", &("10.0.0.5".into(), 9000)),
            "tcp 10.0.0.5:9000"
        );
        assert_eq!(address_text("udp", &("::".into(), 8500)), "udp [::]:8500");
        assert_eq!(
            address_text("ethernet", &("eth0".into(), 0x88b5)),
            "ethernet eth0 type 0x88b5"
        );
        assert_eq!(
            address_text("ethernet", &("eth0".into(), 0)),
            "ethernet eth0 all types"
        );
        assert_eq!(address_text("", &("127.0.0.1".into(), 1)), "127.0.0.1:1");
    }

    /// `bsc status`'s table from the JSON of `/stats` and `/capturers`.
    fn status(stats: &Value, capturers: &Value, now: UnixMicros) -> String {
        status_table(
            &read_stats(stats.clone(), "h:1").unwrap(),
            &typed_list::<CapturerEntry>(capturers.clone()),
            now,
        )
    }

    fn stats_fixture() -> (Value, Value) {
        let stats = json!({
            "['', 8500]": [
                {"name": "tlm", "packets": 1234, "rate_bytes_per_s": 1500.0,
                 "last_packet_at": "2026-11-28T09:59:57.000000Z",
                 "current_file": "/data/2026-11-28-tlm.pcap", "current_file_bytes": 2_500_000,
                 "records_lost": 0, "kernel_drops": 7, "state": "ok",
                 "sequence": {"gaps": 3, "missing": 12}},
                {"name": "tlm-copy", "packets": 0, "rate_bytes_per_s": 0.0, "last_packet_at": null,
                 "current_file": null, "current_file_bytes": 0,
                 "records_lost": 3, "kernel_drops": 7, "state": "degraded",
                 "degraded_reason": "cannot write: no space left on device"}
            ],
            "['10.0.0.5', 9000]": [
                {"name": "ground", "packets": 10, "rate_bytes_per_s": 0.0,
                 "last_packet_at": "2026-11-28T08:00:00.000000Z",
                 "current_file": "/data/ground.pcap", "current_file_bytes": 512,
                 "records_lost": 0, "kernel_drops": 0, "state": "ok",
                 "connected": false, "reconnects": 4, "last_error": "connection refused",
                 "last_connected_at": null}
            ]
        });
        // Opened in this order: tcp first.
        let capturers = json!([
            {"address": ["10.0.0.5", 9000], "key": "['10.0.0.5', 9000]", "conn_type": "tcp",
             "state": "backoff", "next_attempt_at": "2026-11-28T10:00:02.000000Z",
             "error": "connection refused", "handlers": ["ground"]},
            {"address": ["", 8500], "key": "['', 8500]", "conn_type": "udp",
             "local_address": "0.0.0.0:8500", "state": "listening", "handlers": ["tlm", "tlm-copy"]}
        ]);
        (stats, capturers)
    }

    #[test]
    fn status_table_reads_at_a_glance() {
        let (stats, capturers) = stats_fixture();
        let now = UnixMicros(1_795_860_000_000_000);
        let out = status(&stats, &capturers, now);
        let want = "\
HANDLER   ADDRESS            STATE        PACKETS        RATE  LAST PACKET  LOST  DROPS  MISSING      SIZE  FILE
ground    tcp 10.0.0.5:9000  ok, backoff       10       0 B/s       2h ago     0      0        -     512 B  /data/ground.pcap
tlm       udp *:8500         ok              1234  1.46 KiB/s       3s ago     0      7       12  2.38 MiB  /data/2026-11-28-tlm.pcap
tlm-copy  udp *:8500         degraded           0       0 B/s        never     3      7        -         -  (none open)

ground: backoff: connection refused (next attempt at 2026-11-28T10:00:02.000000Z)
tlm-copy: degraded: cannot write: no space left on device
";
        assert_eq!(out, want, "\n{out}");
    }

    #[test]
    fn status_shows_a_ship_backlog() {
        let (mut stats, capturers) = stats_fixture();
        stats["['', 8500]"][0]["ship"] = json!({"pending_files": 12, "pending_bytes": 3_400_000,
            "oldest_pending_age_s": 330, "shipped": 4, "failures": 9, "dropped": 0,
            "last_error": "exit status: 1", "next_attempt_at": "2026-11-28T10:00:40.000000Z",
            "running": false});
        stats["['', 8500]"][1]["ship"] = json!({"pending_files": 0, "pending_bytes": 0,
            "oldest_pending_age_s": null, "shipped": 4, "failures": 0, "dropped": 0,
            "last_error": null, "next_attempt_at": null, "running": false});
        let out = status(&stats, &capturers, UnixMicros(1_795_860_000_000_000));
        assert!(
            out.contains("tlm: 12 files (3.24 MiB) wait to ship, the oldest closed 5m ago; failing: exit status: 1 (next attempt at 2026-11-28T10:00:40.000000Z)\n"),
            "{out}"
        );
        assert!(
            !out.contains("tlm-copy: 0 files"),
            "nothing waits: no line\n{out}"
        );
        stats["['', 8500]"][1]["ship"]["dropped"] = json!(2);
        let out = status(&stats, &capturers, UnixMicros(1_795_860_000_000_000));
        assert!(
            out.contains("tlm-copy: 0 files (0 B) wait to ship; 2 dropped"),
            "{out}"
        );
    }

    #[test]
    fn status_shows_a_forward_target_down_or_dropping() {
        let (mut stats, capturers) = stats_fixture();
        stats["['', 8500]"][0]["forward"] = json!([
            {"target": "udp://127.0.0.1:9100", "state": "ready", "units_sent": 9, "bytes_sent": 90,
             "units_dropped": 0, "queued_units": 0, "queued_bytes": 0, "last_error": null},
            {"target": "tcp+len://10.0.0.5:7000", "state": "backoff", "units_sent": 0, "bytes_sent": 0,
             "units_dropped": 4096, "queued_units": 10, "queued_bytes": 4000, "last_error": "connect to 10.0.0.5:7000: Connection refused"},
        ]);
        stats["['', 8500]"][1]["forward"] = json!([
            {"target": "tcp://10.0.0.6:7000", "state": "connected", "units_dropped": 3, "last_error": null},
        ]);
        let out = status(&stats, &capturers, UnixMicros(1_795_860_000_000_000));
        assert!(
            out.contains("tlm: forward tcp+len://10.0.0.5:7000 backoff, 4096 units dropped (connect to 10.0.0.5:7000: Connection refused)\n"),
            "{out}"
        );
        assert!(
            out.contains("tlm-copy: forward tcp://10.0.0.6:7000 connected, 3 units dropped\n"),
            "{out}"
        );
        assert!(
            !out.contains("udp://127.0.0.1:9100"),
            "a target that is well: no line\n{out}"
        );
    }

    #[test]
    fn status_without_capturers_still_shows_tcp_state() {
        let (stats, _) = stats_fixture();
        let out = status(&stats, &json!([]), UnixMicros(1_795_860_000_000_000));
        assert!(out.contains("ok, not connected"), "{out}");
        assert!(
            out.contains("ground: not connected: connection refused"),
            "{out}"
        );
        assert!(out.contains("['', 8500]"), "{out}");
    }

    #[test]
    fn empty_bsc_says_so() {
        assert_eq!(
            status(&json!({}), &json!([]), UnixMicros(0)),
            "no handlers (add one with: bsc add NAME LOC PORT udp)\n"
        );
    }

    #[test]
    fn file_list_per_handler() {
        let answer = json!([
            {"name": "tlm", "address": ["", 8500], "files": [
                {"path": "/data/a.pcap", "bytes": 1_000_024, "records": 1000,
                 "first_record_at": "2026-11-28T09:00:00.000001Z", "last_record_at": "2026-11-28T09:59:59.999999Z",
                 "state": "closed", "clock": "synchronized", "clock_max_error_us": 12_500},
                {"path": "/data/old.pcap", "bytes": 24, "records": null,
                 "first_record_at": null, "last_record_at": null, "state": "closed"},
                {"path": "/data/b.pcap", "bytes": 5000, "records": 12,
                 "first_record_at": "2026-11-28T10:00:00.000000Z", "last_record_at": "2026-11-28T10:00:03.000000Z",
                 "state": "open", "clock": "unsynchronized", "clock_max_error_us": 16_000_000}
            ]},
            {"name": "tlm", "address": ["127.0.0.1", 8600], "files": []}
        ]);
        let want = "\
tlm (*:8500)
  STATE        SIZE  RECORDS  FIRST RECORD (UTC)   LAST RECORD (UTC)    CLOCK           MAX ERROR  PATH
  closed  976.6 KiB     1000  2026-11-28 09:00:00  2026-11-28 09:59:59  synchronized      12.5 ms  /data/a.pcap
  closed       24 B        ?  -                    -                    ?                       -  /data/old.pcap
  open     4.88 KiB       12  2026-11-28 10:00:00  2026-11-28 10:00:03  unsynchronized     16.0 s  /data/b.pcap

tlm (127.0.0.1:8600)
  no files yet
";
        let out = file_list(&typed_list::<HandlerFiles>(answer));
        assert_eq!(out, want, "\n{out}");
    }

    #[test]
    fn one_line_summaries() {
        let entry = json!({"handler": {"name": "tlm", "log_dir": "/data",
                           "file_name_pattern": "%Y-%m-%d-{name}.pcap"},
                           "log_file_path": "/data/2026-12-07-tlm.pcap",
                           "conn_type": "udp", "address": ["127.0.0.1", 8500]});
        assert_eq!(
            format_added(&typed(entry.clone())),
            "added tlm (udp 127.0.0.1:8500): files go to /data/ as %Y-%m-%d-{name}.pcap; the first opens with the first unit\n"
        );
        let nested = json!({"handler": {"name": "vc", "log_dir": "/data/vc1/2026/341",
                            "file_name_pattern": "%Y/%j/{name}.pcap"},
                            "conn_type": "tcp", "address": ["10.0.0.5", 9000]});
        assert_eq!(
            format_added(&typed(nested)),
            "added vc (tcp 10.0.0.5:9000): files go to /data/vc1/ as %Y/%j/{name}.pcap; the first opens with the first unit\n"
        );
        assert_eq!(
            format_stopped(&typed_list::<EntrySummary>(json!([entry]))),
            "stopped tlm (udp 127.0.0.1:8500)\n"
        );
        assert_eq!(
            format_rotated(&typed_list::<Rotated>(json!([{"name": "tlm", "address": ["", 8500],
                "previous_file": "/d/1.pcap", "log_file_path": "/d/2.pcap"},
                {"name": "tlm", "address": ["", 8501], "previous_file": null, "log_file_path": "/d/3.pcap"}]))),
            "tlm (*:8500): closed /d/1.pcap; next file /d/2.pcap\ntlm (*:8501): no file was open; next file /d/3.pcap\n"
        );
        assert_eq!(
            format_capturer_stopped(&typed(json!({"address": ["", 8500], "key": "['', 8500]",
                "conn_type": "udp", "stopped": [entry]}))),
            "closed udp *:8500; stopped tlm\n"
        );
        assert_eq!(
            format_capturer_stopped(&typed(
                json!({"address": ["", 1], "conn_type": "udp", "stopped": []})
            )),
            "closed udp *:1; stopped no handlers\n"
        );
    }
}
